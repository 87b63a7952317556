/* The progress line: never wider than the terminal, fields giving way in their order. */
#include "sb_progressline.h"
#include "t.h"

static size_t line(const struct sb_progress_in *in, int width, char *out)
{
    size_t n = sb_progress_line(in, width, out, 512);
    CHECK(n == strlen(out));
    CHECK((int)n <= (width > 1 ? width - 1 : 0));
    return n;
}

int main(void)
{
    char out[512], d[32];
    struct sb_progress_in in = {10000, 3700, 3650, 50, 128, 12, 4.8, 3725, 118.4, NULL};

    /* Wide: every field, in reading order. */
    line(&in, 200, out);
    CHECK_STR(out, "[#######-------------] 37% 3700/10000, 3650 ok, 50 failed, 128 running (12 queued) | ETA 1h02m "
                   "| $118.40 | 4.8 req/s");
    /* Narrower: the rate goes first, then the provider's queue, then the bar. */
    line(&in, 110, out);
    CHECK_STR(out, "[#######-------------] 37% 3700/10000, 3650 ok, 50 failed, 128 running (12 queued) | ETA 1h02m "
                   "| $118.40");
    line(&in, 80, out);
    CHECK_STR(out, "37% 3700/10000, 3650 ok, 50 failed, 128 running | ETA 1h02m | $118.40");
    /* 60 columns: the count running gives way, then the ETA, then the spend. */
    line(&in, 60, out);
    CHECK_STR(out, "37% 3700/10000, 3650 ok, 50 failed | ETA 1h02m | $118.40");
    line(&in, 55, out);
    CHECK_STR(out, "37% 3700/10000, 3650 ok, 50 failed | $118.40");
    line(&in, 44, out);
    CHECK_STR(out, "37% 3700/10000, 3650 ok, 50 failed");
    /* Narrower than the counts: cut at the width. */
    line(&in, 20, out);
    CHECK_STR(out, "37% 3700/10000, 365");
    line(&in, 1, out);
    CHECK_STR(out, "");
    line(&in, 0, out);
    CHECK_STR(out, "");

    /* The run's condition stays before the ETA and the spend. */
    in.condition = "API unreachable, retrying in 8s";
    line(&in, 80, out);
    CHECK_STR(out, "37% 3700/10000, 3650 ok, 50 failed | API unreachable, retrying in 8s | $118.40");
    line(&in, 70, out);
    CHECK_STR(out, "37% 3700/10000, 3650 ok, 50 failed | API unreachable, retrying in 8s");
    line(&in, 200, out);
    CHECK_HAS(out, "128 running (12 queued) | API unreachable, retrying in 8s | ETA 1h02m");

    /* ETA unknown; nothing done; all done. */
    struct sb_progress_in first = {120, 0, 0, 0, 0, 0, 0, -1, 0, NULL};
    line(&first, 90, out);
    CHECK_STR(out, "[--------------------] 0% 0/120, 0 ok, 0 failed, 0 running | ETA -- | $0.00 | 0.0 req/s");
    struct sb_progress_in all = {4, 4, 3, 1, 0, 0, 2.5, 0, 0.29, NULL};
    line(&all, 100, out);
    CHECK_HAS(out, "[####################] 100% 4/4, 3 ok, 1 failed");
    struct sb_progress_in none = {0, 0, 0, 0, 0, 0, 0, -1, 0, NULL};
    line(&none, 80, out);
    CHECK_HAS(out, "100% 0/0");

    /* Durations as a person reads them. */
    sb_progress_duration(0, d, sizeof d); CHECK_STR(d, "0s");
    sb_progress_duration(37.4, d, sizeof d); CHECK_STR(d, "37s");
    sb_progress_duration(245, d, sizeof d); CHECK_STR(d, "4m05s");
    sb_progress_duration(3725, d, sizeof d); CHECK_STR(d, "1h02m");
    sb_progress_duration(3 * 86400 + 4 * 3600 + 5, d, sizeof d); CHECK_STR(d, "3d04h");
    sb_progress_duration(1e12, d, sizeof d); CHECK_STR(d, "99d00h");
    sb_progress_duration(-5, d, sizeof d); CHECK_STR(d, "0s");

    /* Every width from 0 to 200 on a busy line: never wider, never wrapping. */
    in.condition = "stopping: finishing 4 transfers";
    for (int w = 0; w <= 200; w++)
        line(&in, w, out);
    return t_done("test_progressline");
}
