/*
 * The signals that stop a run (SIGTERM, and SIGINT and SIGHUP unless the process
 * started with them ignored), caught from the start of the process until the
 * engine's loop takes them over, so that a stop asked for while the manifests
 * are checked or the state is synced ends the run as a stop in the loop does.
 */
#ifndef SB_SIGNALS_H
#define SB_SIGNALS_H

/* Records which signals stop a run, catches them into a flag and unblocks them.
   A second signal exits at once (75). */
void sb_signals_catch_early(void);
/* Whether signum stops a run: SIGTERM always, SIGINT and SIGHUP unless ignored at start. */
int sb_signals_stop_on(int signum);
/* The first stopping signal caught before the loop took over, or 0. */
int sb_signals_caught(void);

#endif
