/*
 * Log lines on stderr, as text or one JSON object per line. Messages never
 * carry secrets: callers log ids, paths and states, never headers or keys, and
 * the keys in use are redacted from every line besides.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include "sb_common.h"

enum sb_log_level { SB_LOG_DEBUG, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR };
enum sb_log_format { SB_LOG_TEXT, SB_LOG_JSON };

/* Sets the format and the least level logged. Text lines carry the time (ISO 8601, UTC)
   when stderr is not a terminal (a log file, cron's mail). */
void sb_log_setup(enum sb_log_format fmt, enum sb_log_level min_level);
enum sb_log_format sb_log_format_of(void);
/* Whether a line of this level is written. */
int sb_log_enabled(enum sb_log_level lvl);
void sb_log(enum sb_log_level lvl, const char *fmt, ...) SB_PRINTF(2, 3);

/* What a line is about, for JSON logs (docs/operations.md, "Logs"): unset fields are left out. */
struct sb_log_fields {
    const char *event;      /* "job_failed", "pause", "progress", "summary", "stop", ... */
    const char *manifest;
    const char *job;
    const char *state;
    const char *kind;       /* an error kind */
    int http_status;        /* 0: none */
    int attempt;            /* 0: none */
};
void sb_log_event(enum sb_log_level lvl, const struct sb_log_fields *f, const char *fmt, ...) SB_PRINTF(3, 4);

/* Called around each line written (after 0, before 1): the progress line clears itself and
   is drawn again. NULL for none. */
typedef void (*sb_log_around_fn)(void *ud, int after);
void sb_log_around(sb_log_around_fn fn, void *ud);
/* Holds log lines back instead of writing them (a reading that may be thrown away),
   until sb_log_release writes them (write) or drops them, warnings uncounted. When the
   held text passed its cap (256 KiB) it drops them all and returns -1. */
void sb_log_hold(void);
int sb_log_release(int write);
/*
 * A secret (an API key) no log line may show: from now on every line has it
 * replaced with "[redacted]", whatever text brought it (a server echoing the
 * request, a header in --debug). Up to 8 are kept; sb_log_forget drops them all.
 */
void sb_log_secret(const char *secret);
void sb_log_forget(void);
/* Number of warnings logged so far (validate reports it). */
unsigned sb_log_warnings(void);

#define sb_debug(...) sb_log(SB_LOG_DEBUG, __VA_ARGS__)
#define sb_info(...) sb_log(SB_LOG_INFO, __VA_ARGS__)
#define sb_warn(...) sb_log(SB_LOG_WARN, __VA_ARGS__)
#define sb_error(...) sb_log(SB_LOG_ERROR, __VA_ARGS__)

#endif
