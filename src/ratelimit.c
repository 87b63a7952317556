/*
 * ratelimit.c is the token bucket with additive increase and multiplicative
 * decrease described in sb_ratelimit.h.
 */
#include "sb_ratelimit.h"

#include <string.h>

#define CALM_MS 5000      /* no growth until this long after the last cut */
/*
 * What the bucket holds at most: one call, and what a timer firing up to LATE_MS late
 * owes the next one (without it a 60/s budget ran at 58.8/s: each wait, rounded up
 * to whole milliseconds, lost the fraction).
 */
#define LATE_MS 2.0
#define TOKEN_CAP(rl) (1.0 + (rl)->rate * LATE_MS / 1000.0)
/*
 * The share of the configured rate spent: a server counting calls in a sliding 1 s
 * window refuses the 61st of a 60/s limit; the bucket lets at most 1.12 + 59.4 through
 * in a window, and the rest is margin for the calls' arrival jitter.
 */
#define RATE_SHARE 0.98

void sb_rl_init(struct sb_ratelimit *rl, double rate, int64_t now)
{
    memset(rl, 0, sizeof *rl);
    rl->base = rate > 0 ? rate * RATE_SHARE : 0;
    rl->ceiling = rl->base;
    rl->rate = rl->base;
    rl->tokens = 1;
    rl->last_ms = now;
    rl->win_start = now;
}

static void refill(struct sb_ratelimit *rl, int64_t now)
{
    double dt = (double)(now - rl->last_ms) / 1000.0;
    if (dt <= 0)
        return;
    if (rl->rate < rl->ceiling && now - rl->last_cut_ms > CALM_MS) {
        rl->rate += rl->ceiling * 0.1 * dt;
        if (rl->rate > rl->ceiling)
            rl->rate = rl->ceiling;
    }
    rl->tokens += dt * rl->rate;
    if (rl->tokens > TOKEN_CAP(rl))
        rl->tokens = TOKEN_CAP(rl);
    rl->last_ms = now;
}

/* Counts a call of an unlimited run in its 1 s window. */
static void count_call(struct sb_ratelimit *rl, int64_t now)
{
    if (now - rl->win_start >= 1000) {
        rl->prev_calls = now - rl->win_start < 2000 ? rl->win_calls : 0;
        rl->win_start = now;
        rl->win_calls = 0;
    }
    rl->win_calls++;
}

int64_t sb_rl_take(struct sb_ratelimit *rl, int64_t now)
{
    if (now < rl->paused_until)
        return rl->paused_until - now;
    if (rl->ceiling <= 0) {
        count_call(rl, now);
        return 0;
    }
    refill(rl, now);
    if (rl->tokens >= 1) {
        rl->tokens -= 1;
        return 0;
    }
    int64_t wait = (int64_t)((1 - rl->tokens) / rl->rate * 1000.0) + 1;
    return wait > 0 ? wait : 1;
}

void sb_rl_on_429(struct sb_ratelimit *rl, int64_t now, int64_t retry_after_ms)
{
    if (retry_after_ms > 0 && now + retry_after_ms > rl->paused_until)
        rl->paused_until = now + retry_after_ms;
    if (rl->ceiling <= 0) {
        /*
         * An unlimited run has met the API's limit: from now on its ceiling is
         * the rate it was making calls at (the busier of this 1 s window and
         * the last), halved below.
         */
        int64_t age = now - rl->win_start;
        int cur = age < 1000 ? rl->win_calls : 0;
        int prev = age < 1000 ? rl->prev_calls : age < 2000 ? rl->win_calls : 0;
        int seen = cur > prev ? cur : prev;
        rl->ceiling = seen > 1 ? seen : 1;
        rl->rate = rl->ceiling;
        rl->tokens = 0;
        rl->last_ms = now;
        rl->last_cut_ms = 0;
    }
    if (now - rl->last_cut_ms < 1000)
        return;
    refill(rl, now);
    rl->rate /= 2;
    if (rl->rate < rl->ceiling / 64)
        rl->rate = rl->ceiling / 64;
    if (rl->tokens > 0)
        rl->tokens = 0;
    rl->last_cut_ms = now;
}
