/*
 * The signals that stop a run (SIGTERM, and SIGINT and SIGHUP unless the process
 * started with them ignored), caught into a flag while the engine's loop is not
 * there to handle them: from the start of the process until the loop takes them
 * over, so that a stop asked for while the manifests are checked or the state is
 * synced ends the run as a stop in the loop does; and again once the loop has
 * closed, so that the final results are written whole.
 */
#ifndef SB_SIGNALS_H
#define SB_SIGNALS_H

/* Records which signals stop a run, catches them into a flag and unblocks them.
   A second signal exits at once (75); already, if not 0, counts as the first. */
void sb_signals_catch(int already);
/* Whether signum stops a run: SIGTERM always, SIGINT and SIGHUP unless ignored at start. */
int sb_signals_stop_on(int signum);
/* The first stopping signal caught while no loop handled them, or 0. */
int sb_signals_caught(void);
/* A second stop: says so and exits 75 at once (async-signal-safe; committed state is consistent). */
void sb_signals_exit_now(void);
/* What a stopping signal did, for messages: "interrupted", "hung up" or "terminated". */
const char *sb_signals_verb(int signum);

#endif
