/*
 * The run's request budget: a token bucket shared by every API call (uploads,
 * submits, polls), filled at 98% of the configured rate. It holds one token and
 * what a timer firing up to 2 ms late owes the next call, so no 1 s window sees
 * more than the configured rate (a server counting in a sliding window refuses
 * the call past it). A 429 halves the rate (at most once a second) and pauses all
 * calls for its Retry-After; the rate then grows back by a tenth of the
 * ceiling per calm second. The ceiling is the configured rate; a run with no
 * configured rate (0, unlimited) has none until its first 429, and from then
 * on the rate it was making calls at when the API refused one.
 */
#ifndef SB_RATELIMIT_H
#define SB_RATELIMIT_H

#include <stdint.h>

struct sb_ratelimit {
    double base;            /* configured requests per second; 0 = unlimited */
    double ceiling;         /* what the rate grows back to; 0 = no limit (yet) */
    double rate;            /* current */
    double tokens;
    int64_t last_ms;        /* last refill */
    int64_t last_cut_ms;    /* last 429 that cut the rate */
    int64_t paused_until;   /* Retry-After: nothing before this */
    int64_t win_start;      /* while unlimited: calls counted per 1 s window */
    int win_calls, prev_calls;
};

void sb_rl_init(struct sb_ratelimit *rl, double rate, int64_t now);
/* Takes a token: 0 when the call may go now, else milliseconds to wait. */
int64_t sb_rl_take(struct sb_ratelimit *rl, int64_t now);
/* A 429 arrived; retry_after_ms < 0 when the answer gave none. */
void sb_rl_on_429(struct sb_ratelimit *rl, int64_t now, int64_t retry_after_ms);

#endif
