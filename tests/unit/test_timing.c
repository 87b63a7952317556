/* The learned processing time: prior, samples, quantiles, ageing, and its text in the state. */
#include "sb_timing.h"
#include "sb_common.h"
#include "t.h"

#include <math.h>

int main(void)
{
    struct sb_timing t, u;
    sb_timing_prior(&t);
    /* The prior: 2 to 3 s an image (the bins holding them: 1.91 to 3.19 s), nothing learned. */
    CHECK(sb_timing_quantile(&t, 0.05) >= 1.9 && sb_timing_quantile(&t, 0.05) <= 2.1);
    CHECK(sb_timing_quantile(&t, 0.5) >= 2.3 && sb_timing_quantile(&t, 0.5) <= 2.7);
    CHECK(sb_timing_quantile(&t, 0.95) >= 2.9 && sb_timing_quantile(&t, 0.95) <= 3.2);
    CHECK(t.samples == 0);
    CHECK(sb_timing_cdf(&t, 1.0) == 0);
    CHECK(sb_timing_cdf(&t, 10.0) == 1);

    /* A provider that takes 6 s: after 50 samples the prior hardly counts. */
    for (int i = 0; i < 50; i++)
        sb_timing_add(&t, 6.0);
    CHECK(t.samples > 44 && t.samples < 45); /* each older one weighs 0.5% less */
    double q90 = sb_timing_quantile(&t, 0.9), q50 = sb_timing_quantile(&t, 0.5);
    CHECK(q50 > 5.5 && q50 <= 6.6);
    CHECK(q90 >= 6.0 && q90 <= 6.6);  /* the bin holding 6 s ends within 10% of it */
    CHECK(sb_timing_cdf(&t, 6.6) > 0.95);
    CHECK(sb_timing_cdf(&t, 3.0) < 0.05);
    /* Quantiles grow with q; at least q is done by the q-quantile. */
    for (double q = 0.05; q < 1; q += 0.05) {
        CHECK(sb_timing_quantile(&t, q) <= sb_timing_quantile(&t, q + 0.05) + 1e-9);
        CHECK(sb_timing_cdf(&t, sb_timing_quantile(&t, q)) >= q - 1e-9);
    }
    /* A few samples push the prior aside: after 5 at 4.5 s, the 60% mark is past 4.5 s. */
    {
        struct sb_timing f;
        sb_timing_prior(&f);
        for (int i = 0; i < 5; i++)
            sb_timing_add(&f, 4.5);
        CHECK(sb_timing_quantile(&f, 0.6) >= 4.5 && sb_timing_quantile(&f, 0.6) < 4.8);
        CHECK(sb_timing_quantile(&f, 0.1) >= 4.5); /* the prior weighs under a tenth */
    }
    /* It follows a change: 300 samples of 1 s later, 1 s is the median. */
    for (int i = 0; i < 300; i++)
        sb_timing_add(&t, 1.0);
    CHECK(sb_timing_quantile(&t, 0.5) < 1.2);
    /* Nonsense is not learned; extremes land in the end bins. */
    u = t;
    sb_timing_add(&t, -1);
    sb_timing_add(&t, NAN);
    CHECK(t.total == u.total);
    sb_timing_add(&t, 1e9);
    CHECK(sb_timing_quantile(&t, 0.9999) > 1000);
    sb_timing_add(&t, 0);
    CHECK(sb_timing_quantile(&t, 0.0001) < 0.3);

    /* In the state and back. */
    char *text = sb_timing_encode(&t);
    CHECK(text != NULL);
    CHECK_INT(sb_timing_decode(text, &u), SB_OK);
    CHECK(fabs(sb_timing_quantile(&u, 0.5) - sb_timing_quantile(&t, 0.5)) < 1e-3);
    CHECK(fabs(u.samples - t.samples) < 1e-3);
    free(text);
    const char *bad[] = {NULL, "", "[]", "{}", "{\"w\":[1,2],\"samples\":1,\"prior\":0,\"edge0\":0.05,\"ratio\":1.04}",
                         "{\"w\":\"x\",\"samples\":1,\"edge0\":0.05,\"ratio\":1.04}", "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK_INT(sb_timing_decode(bad[i], &u), SB_EINVAL);
    /* Bins of another layout are not read as these. */
    text = sb_timing_encode(&t);
    char *p = strstr(text, "\"ratio\":1.04");
    CHECK(p != NULL);
    if (p)
        p[10] = '2';
    CHECK_INT(sb_timing_decode(text, &u), SB_EINVAL);
    free(text);

    /* Ageing: a week halves what was learned, toward the prior, not toward nothing. */
    sb_timing_prior(&t);
    for (int i = 0; i < 100; i++)
        sb_timing_add(&t, 8.0);
    double before = t.samples;
    int64_t week = 7LL * 24 * 3600 * 1000;
    sb_timing_age(&t, t.updated_at + week);
    CHECK(fabs(t.samples - before / 2) < 0.01);
    CHECK(sb_timing_quantile(&t, 0.5) > 7);  /* still mostly the 8 s learned */
    sb_timing_age(&t, t.updated_at + 20 * week);
    CHECK(sb_timing_quantile(&t, 0.5) < 3);  /* months later, the prior again */
    CHECK(t.total > 1.9 && t.total < 2.1);
    CHECK(t.prior > 1.9);
    return t_done("test_timing");
}
