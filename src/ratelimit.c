/*
 * ratelimit.c is the token bucket with additive increase and multiplicative
 * decrease described in sb_ratelimit.h.
 */
#include "sb_ratelimit.h"

#define CALM_MS 5000      /* no growth until this long after the last cut */

void sb_rl_init(struct sb_ratelimit *rl, double rate, int64_t now)
{
    rl->base = rate;
    rl->rate = rate;
    rl->tokens = 1;
    rl->last_ms = now;
    rl->last_cut_ms = 0;
    rl->paused_until = 0;
}

static void refill(struct sb_ratelimit *rl, int64_t now)
{
    double dt = (double)(now - rl->last_ms) / 1000.0;
    if (dt <= 0)
        return;
    if (rl->rate < rl->base && now - rl->last_cut_ms > CALM_MS) {
        rl->rate += rl->base * 0.1 * dt;
        if (rl->rate > rl->base)
            rl->rate = rl->base;
    }
    rl->tokens += dt * rl->rate;
    if (rl->tokens > 1)
        rl->tokens = 1;
    rl->last_ms = now;
}

int64_t sb_rl_take(struct sb_ratelimit *rl, int64_t now)
{
    if (now < rl->paused_until)
        return rl->paused_until - now;
    if (rl->base <= 0)
        return 0;
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
    if (rl->base <= 0 || now - rl->last_cut_ms < 1000)
        return;
    refill(rl, now);
    rl->rate /= 2;
    if (rl->rate < rl->base / 64)
        rl->rate = rl->base / 64;
    if (rl->tokens > 0)
        rl->tokens = 0;
    rl->last_cut_ms = now;
}
