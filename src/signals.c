/*
 * signals.c catches the signals that stop a run while the engine's loop is not
 * there to handle them. Before the loop a stop only sets a flag: the check
 * stops reading local files, main says what happened and exits 75, and if the
 * flag was set after the check the engine stops its run as soon as it starts.
 * The loop's own uv_signal handlers replace these when they start; when the
 * loop closes (and libuv puts back the default action) the engine catches
 * them again, so that a stop then lets the final results be written.
 */
#include "sb_signals.h"

#include "sb_common.h"

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_caught;
static int64_t g_caught_ms; /* when (CLOCK_MONOTONIC), written before g_caught */
static int g_recorded, g_ignored_int, g_ignored_hup;

/* Milliseconds of CLOCK_MONOTONIC; clock_gettime is async-signal-safe. */
int64_t sb_signals_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int sb_signals_again(int first, int64_t first_ms, int signum)
{
    return signum == first && sb_signals_now_ms() - first_ms < SB_SIGNAL_SAME_MS;
}

int64_t sb_signals_caught_ms(void)
{
    return g_caught_ms;
}

void sb_signals_exit_now(void)
{
    static const char msg[] = "\nseedbatch: second signal: exiting now; run again to resume\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(SB_EXIT_TEMPFAIL);
}

static void on_early_signal(int signum)
{
    if (g_caught) {
        if (sb_signals_again(g_caught, g_caught_ms, signum))
            return; /* the same stop delivered twice (timeout(1) signals the process and its group) */
        sb_signals_exit_now();
    }
    g_caught_ms = sb_signals_now_ms();
    g_caught = signum;
}

static int ignored_at_start(int signum)
{
    struct sigaction sa;
    return sigaction(signum, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN;
}

/* Which of SIGINT and SIGHUP the process started with ignored, read once before any is caught. */
static void record(void)
{
    if (g_recorded)
        return;
    g_ignored_int = ignored_at_start(SIGINT);
    g_ignored_hup = ignored_at_start(SIGHUP);
    g_recorded = 1;
}

void sb_signals_catch(int already, int64_t already_ms)
{
    /*
     * nohup starts a process with SIGHUP ignored, and a shell starts a script's
     * background job with SIGINT ignored: those stay ignored. Whatever is caught
     * is unblocked too, so that a mask inherited with it blocked does not leave
     * the run deaf to its stop.
     */
    record();
    if (already) {
        g_caught_ms = already_ms;
        g_caught = already;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_early_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigset_t caught;
    sigemptyset(&caught);
    static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        if (!sb_signals_stop_on(sigs[i]))
            continue;
        sigaction(sigs[i], &sa, NULL);
        sigaddset(&caught, sigs[i]);
    }
    sigprocmask(SIG_UNBLOCK, &caught, NULL);
}

int sb_signals_stop_on(int signum)
{
    record();
    switch (signum) {
    case SIGTERM: return 1;
    case SIGINT: return !g_ignored_int;
    case SIGHUP: return !g_ignored_hup;
    default: return 0;
    }
}

int sb_signals_caught(void)
{
    return g_caught;
}

const char *sb_signals_verb(int signum)
{
    return signum == SIGINT ? "interrupted" : signum == SIGHUP ? "hung up" : "terminated";
}
