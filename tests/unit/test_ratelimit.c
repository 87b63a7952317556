/* ratelimit: the run's request budget, on a simulated clock. */
#include "sb_ratelimit.h"
#include "t.h"

/*
 * Calls as fast as the bucket lets them through from t0 for ms milliseconds,
 * one look a millisecond; stores each call's time in at (at most cap) and
 * returns how many went.
 */
static int drive(struct sb_ratelimit *rl, int64_t t0, int64_t ms, int64_t *at, int cap)
{
    int n = 0;
    for (int64_t t = t0; t < t0 + ms; t++)
        if (sb_rl_take(rl, t) == 0) {
            if (n < cap)
                at[n] = t;
            n++;
        }
    return n;
}

/* The most calls in any 1 s window of a sorted list of call times. */
static int peak_1s(const int64_t *at, int n)
{
    int best = 0;
    for (int i = 0, j = 0; i < n; i++) {
        while (at[i] - at[j] >= 1000)
            j++;
        if (i - j + 1 > best)
            best = i - j + 1;
    }
    return best;
}

static int64_t at[200000];

/* A configured rate: 98% of it overall, never more than it in any 1 s window. */
static void test_configured(void)
{
    struct sb_ratelimit rl;
    sb_rl_init(&rl, 8, 100000);
    int n = drive(&rl, 100000, 10000, at, 200000);
    CHECK(n >= 78 && n <= 79);
    CHECK(peak_1s(at, n) <= 8);
    /* 60 a second, looked at every 17 ms as a loop whose timers round up would: no call lost. */
    sb_rl_init(&rl, 60, 200000);
    n = 0;
    for (int64_t t = 200000; t < 260000; t += 17)
        n += sb_rl_take(&rl, t) == 0;
    CHECK(n >= 3450 && n <= 3530); /* 58.8 a second, not 60 * 16.67 / 17 less the fractions */
    sb_rl_init(&rl, 60, 300000);
    n = drive(&rl, 300000, 60000, at, 200000);
    CHECK(n >= 3520 && n <= 3530);
    CHECK(peak_1s(at, n) <= 60);
    /* A wait is given in milliseconds until the next token. */
    sb_rl_take(&rl, 110000);
    int64_t w = sb_rl_take(&rl, 110000);
    CHECK(w > 0 && w <= 126);
}

/* 429: half the rate, at most one cut a second; Retry-After pauses every call; regain after calm. */
static void test_429(void)
{
    struct sb_ratelimit rl;
    sb_rl_init(&rl, 20, 100000);        /* spent at 19.6 a second */
    drive(&rl, 100000, 2000, at, 200000);
    sb_rl_on_429(&rl, 102000, -1);
    CHECK(rl.rate == 9.8);
    sb_rl_on_429(&rl, 102500, -1);
    CHECK(rl.rate == 9.8);              /* within a second of the last cut */
    sb_rl_on_429(&rl, 103100, 5000);
    CHECK(rl.rate == 4.9);
    CHECK_INT(sb_rl_take(&rl, 104000), 4100);   /* paused until 108100 */
    CHECK_INT(sb_rl_take(&rl, 108099), 1);
    for (int i = 0; i < 10; i++)
        sb_rl_on_429(&rl, 110000 + 1000 * i, -1);
    CHECK(rl.rate >= 19.6 / 64 && rl.rate < 0.31);   /* floor: 1/64 of the ceiling */
    /* Calm for 5 s, then a tenth of the ceiling a second: back at 19.6 some 10 s later. */
    int n = drive(&rl, 119000, 30000, at, 200000);
    CHECK(rl.rate == 19.6);
    CHECK(n > 300 && n < 500);
    CHECK(peak_1s(at, n) <= 20);
}

/* Unlimited: no wait at all until a 429, then the rate it was going at is its ceiling, halved. */
static void test_unlimited(void)
{
    struct sb_ratelimit rl;
    sb_rl_init(&rl, 0, 100000);
    int n = 0;
    for (int64_t t = 100000; t < 102000; t++)
        for (int k = 0; k < 3; k++)     /* 3 calls a millisecond: 3,000 a second */
            if (sb_rl_take(&rl, t) == 0)
                n++;
    CHECK_INT(n, 6000);
    /* 40 calls a second for the next 1.5 s, then the API refuses one. */
    for (int64_t t = 102000; t < 103500; t += 25)
        CHECK_INT(sb_rl_take(&rl, t), 0);
    sb_rl_on_429(&rl, 103500, -1);
    CHECK(rl.ceiling == 40);
    CHECK(rl.rate == 20);
    CHECK(sb_rl_take(&rl, 103500) > 0);
    n = drive(&rl, 103500, 5000, at, 200000);
    CHECK(n >= 98 && n <= 101);
    CHECK(peak_1s(at, n) <= 21);
    /* It grows back to the ceiling, never past it. */
    n = drive(&rl, 108500, 30000, at, 200000);
    CHECK(rl.rate == 40);
    CHECK(peak_1s(at, n) <= 41);
    /* A 429 long after a burst, the windows empty: ceiling of one call a second at least. */
    struct sb_ratelimit r2;
    sb_rl_init(&r2, 0, 100000);
    CHECK_INT(sb_rl_take(&r2, 100000), 0);
    sb_rl_on_429(&r2, 105000, 2000);
    CHECK(r2.ceiling == 1);
    CHECK_INT(sb_rl_take(&r2, 105000), 2000);
}

int main(void)
{
    test_configured();
    test_429();
    test_unlimited();
    return t_done("test_ratelimit");
}
