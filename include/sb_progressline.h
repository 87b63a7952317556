/*
 * The progress line of a run on a terminal, composed to fit its width: the
 * fields a person reads first stay, the others give way in a fixed order.
 */
#ifndef SB_PROGRESSLINE_H
#define SB_PROGRESSLINE_H

#include <stddef.h>

struct sb_progress_in {
    int total, done;          /* jobs, and those final (succeeded, failed, cancelled) */
    int ok, failed;
    int running;              /* submitted and not final: never a job not yet sent */
    int queued;               /* of those, waiting in the provider's queue */
    double rps;               /* API calls a second */
    double eta_s;             /* seconds left, < 0 when not known yet */
    double spent;             /* USD */
    const char *condition;    /* what is not normal ("API unreachable, retrying in 8s"), or NULL */
};

/*
 * Writes the line into out (NUL-terminated), at most width - 1 characters so that
 * the terminal never wraps it: "[####------] 37% 3700/10000, 3650 ok, 50 failed,
 * 128 running | API unreachable, retrying in 8s | ETA 1h02m | $12.34 | 4.8 req/s".
 * Gives way first the request rate, then the provider's queue, the bar, the count
 * running, the ETA, the spend; then cuts the rest. Returns its length.
 */
size_t sb_progress_line(const struct sb_progress_in *in, int width, char *out, size_t outlen);

/* A duration as a person reads it: "37s", "4m05s", "1h02m", "3d04h". */
void sb_progress_duration(double s, char *out, size_t outlen);

#endif
