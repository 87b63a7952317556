/*
 * The run's request budget: a token bucket shared by every API call (uploads,
 * submits, polls). It holds at most one token, so no 1 s window sees more than
 * rate + 1 calls. A 429 halves the rate (at most once a second) and pauses all
 * calls for its Retry-After; the rate then grows back by a tenth of the
 * configured rate per calm second.
 */
#ifndef SB_RATELIMIT_H
#define SB_RATELIMIT_H

#include <stdint.h>

struct sb_ratelimit {
    double base;            /* configured requests per second; 0 = unlimited */
    double rate;            /* current */
    double tokens;
    int64_t last_ms;        /* last refill */
    int64_t last_cut_ms;    /* last 429 that cut the rate */
    int64_t paused_until;   /* Retry-After: nothing before this */
};

void sb_rl_init(struct sb_ratelimit *rl, double rate, int64_t now);
/* Takes a token: 0 when the call may go now, else milliseconds to wait. */
int64_t sb_rl_take(struct sb_ratelimit *rl, int64_t now);
/* A 429 arrived; retry_after_ms < 0 when the answer gave none. */
void sb_rl_on_429(struct sb_ratelimit *rl, int64_t now, int64_t retry_after_ms);

#endif
