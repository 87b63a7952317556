/*
 * What a run learns of a provider's processing time, per model, and keeps in the
 * state for the next run: a histogram of seconds per output image on log-spaced
 * bins (4% apart, from 0.05 s to about 50 min), each new sample weighing a little
 * more than the last (older ones decay), and whole histograms decaying with age
 * between runs. Polls are timed from its quantiles (predict.c).
 */
#ifndef SB_TIMING_H
#define SB_TIMING_H

#include <stdint.h>

#define SB_TIMING_BINS 280

struct sb_timing {
    double w[SB_TIMING_BINS];  /* weight of each bin: the samples learned */
    double prior;              /* the prior's weight (2 to 3 s, spread over its bins) */
    double total;              /* the sum of both */
    double samples;            /* decayed count of samples learned (the prior is not one) */
    int64_t updated_at;        /* ms since the epoch */
};

/* The prior for a first run: 2 to 3 s per image (the providers' own figures), weighing as
   two samples, and 40% less with each sample learned. */
void sb_timing_prior(struct sb_timing *t);
/* Learns one sample (seconds per image); older samples decay (a half-life of about 140). */
void sb_timing_add(struct sb_timing *t, double seconds);
/* The fraction of the weight at or below seconds. */
double sb_timing_cdf(const struct sb_timing *t, double seconds);
/* The q-quantile in seconds (0 < q < 1): the end of the bin where the share q is reached,
   so that at least q of the predictions learned were done by then. */
double sb_timing_quantile(const struct sb_timing *t, double q);
/* Ages a kept histogram to now: its weights halve every 7 days (the prior stays beneath). */
void sb_timing_age(struct sb_timing *t, int64_t now_ms);
/* As text for the state (JSON), newly allocated; and back (SB_EINVAL on anything else). */
char *sb_timing_encode(const struct sb_timing *t);
int sb_timing_decode(const char *text, struct sb_timing *t);

#endif
