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

#include <stdint.h>


/* Records which signals stop a run, catches them into a flag and unblocks them.
   A second signal exits at once (75); already, if not 0, counts as the first, caught at already_ms. */
void sb_signals_catch(int already, int64_t already_ms);
/* Whether signum stops a run: SIGTERM always, SIGINT and SIGHUP unless ignored at start. */
int sb_signals_stop_on(int signum);
/* The first stopping signal caught while no loop handled them, or 0. */
int sb_signals_caught(void);
/* CLOCK_MONOTONIC in ms (async-signal-safe). */
int64_t sb_signals_now_ms(void);
/* When the first was caught (sb_signals_now_ms). */
int64_t sb_signals_caught_ms(void);
/*
 * Whether signum is the first stop (first, caught at first_ms) delivered again: the
 * same signal within SB_SIGNAL_SAME_MS. timeout(1) sends its SIGTERM to the process
 * and to its group, so it arrives twice within milliseconds: one stop, not two.
 */
#define SB_SIGNAL_SAME_MS 1000
int sb_signals_again(int first, int64_t first_ms, int signum);
/* A second stop: says so and exits 75 at once (async-signal-safe; committed state is consistent). */
void sb_signals_exit_now(void);
/* What a stopping signal did, for messages: "interrupted", "hung up" or "terminated". */
const char *sb_signals_verb(int signum);

#endif
