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

void sb_log_setup(enum sb_log_format fmt, enum sb_log_level min_level);
void sb_log(enum sb_log_level lvl, const char *fmt, ...) SB_PRINTF(2, 3);
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
