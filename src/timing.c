/*
 * timing.c keeps the histogram of processing times (sb_timing.h). Bin i covers
 * [E * R^i, E * R^(i+1)) seconds, E = 0.05 and R = 1.04; the first bin takes
 * anything shorter, the last anything longer.
 */
#include "sb_timing.h"
#include "sb_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define EDGE0 0.05
#define RATIO 1.04
#define DECAY 0.995                 /* each new sample: the others weigh this much */
#define PRIOR_WEIGHT 2.0            /* the prior weighs as two samples ... */
#define PRIOR_FADE 0.6              /* ... and this much less with each sample learned */
#define HALF_LIFE_MS (7LL * 24 * 3600 * 1000)

static double edge(int i)
{
    return EDGE0 * pow(RATIO, i);
}

static int bin_of(double s)
{
    if (!(s > EDGE0))
        return 0;
    int i = (int)floor(log(s / EDGE0) / log(RATIO));
    return i < 0 ? 0 : i >= SB_TIMING_BINS ? SB_TIMING_BINS - 1 : i;
}

/* The prior's share of bin i: 2 to 3 s, evenly over the bins holding them. */
static double prior_share(int i)
{
    int lo = bin_of(2.0), hi = bin_of(3.0 - 1e-9);
    return i >= lo && i <= hi ? 1.0 / (hi - lo + 1) : 0;
}

/* Bin i's weight, the prior's part included. */
static double weight(const struct sb_timing *t, int i)
{
    return t->w[i] + t->prior * prior_share(i);
}

static void sum(struct sb_timing *t)
{
    t->total = t->prior;
    for (int i = 0; i < SB_TIMING_BINS; i++)
        t->total += t->w[i];
}

void sb_timing_prior(struct sb_timing *t)
{
    memset(t, 0, sizeof *t);
    t->prior = PRIOR_WEIGHT;
    sum(t);
}

void sb_timing_add(struct sb_timing *t, double seconds)
{
    if (!isfinite(seconds) || seconds < 0)
        return;
    for (int i = 0; i < SB_TIMING_BINS; i++)
        t->w[i] *= DECAY;
    t->w[bin_of(seconds)] += 1.0;
    t->prior *= PRIOR_FADE;
    t->samples = t->samples * DECAY + 1.0;
    sum(t);
    t->updated_at = sb_now_ms();
}

double sb_timing_cdf(const struct sb_timing *t, double seconds)
{
    if (t->total <= 0)
        return 0;
    int b = bin_of(seconds);
    double below = 0;
    for (int i = 0; i < b; i++)
        below += weight(t, i);
    double lo = b == 0 ? 0 : edge(b), hi = edge(b + 1);
    double frac = seconds <= lo ? 0 : seconds >= hi ? 1 : (seconds - lo) / (hi - lo);
    double c = (below + weight(t, b) * frac) / t->total;
    return c > 1 - 1e-12 ? 1 : c;
}

double sb_timing_quantile(const struct sb_timing *t, double q)
{
    if (t->total <= 0)
        return 2.5;
    double want = q * t->total, acc = 0;
    for (int i = 0; i < SB_TIMING_BINS; i++) {
        double w = weight(t, i);
        if (w <= 0)
            continue;
        if (acc + w >= want)
            return edge(i + 1); /* the end of the bin: at least that share is done by then */
        acc += w;
    }
    for (int i = SB_TIMING_BINS - 1; i >= 0; i--)
        if (weight(t, i) > 0)
            return edge(i + 1);
    return 2.5;
}

void sb_timing_age(struct sb_timing *t, int64_t now_ms)
{
    if (t->updated_at <= 0 || now_ms <= t->updated_at)
        return;
    double f = pow(0.5, (double)(now_ms - t->updated_at) / (double)HALF_LIFE_MS);
    /* What decays gives way to the prior, never to nothing. */
    for (int i = 0; i < SB_TIMING_BINS; i++)
        t->w[i] *= f;
    t->prior = t->prior * f + PRIOR_WEIGHT * (1 - f);
    t->samples *= f;
    sum(t);
    t->updated_at = now_ms;
}

char *sb_timing_encode(const struct sb_timing *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *w = cJSON_AddArrayToObject(o, "w");
    for (int i = 0; i < SB_TIMING_BINS; i++)
        cJSON_AddItemToArray(w, cJSON_CreateNumber(round(t->w[i] * 1e6) / 1e6));
    cJSON_AddNumberToObject(o, "prior", round(t->prior * 1e6) / 1e6);
    cJSON_AddNumberToObject(o, "samples", round(t->samples * 1e6) / 1e6);
    cJSON_AddNumberToObject(o, "edge0", EDGE0);
    cJSON_AddNumberToObject(o, "ratio", RATIO);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

int sb_timing_decode(const char *text, struct sb_timing *t)
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "w");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(o, "samples");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, "prior");
    const cJSON *e0 = cJSON_GetObjectItemCaseSensitive(o, "edge0");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "ratio");
    int ok = cJSON_IsArray(w) && cJSON_GetArraySize(w) == SB_TIMING_BINS && cJSON_IsNumber(n) &&
             cJSON_IsNumber(p) && cJSON_IsNumber(e0) && e0->valuedouble == EDGE0 && cJSON_IsNumber(r) &&
             r->valuedouble == RATIO;
    struct sb_timing x;
    memset(&x, 0, sizeof x);
    for (int i = 0; ok && i < SB_TIMING_BINS; i++) {
        const cJSON *v = cJSON_GetArrayItem(w, i);
        ok = cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 && v->valuedouble < 1e9;
        if (ok)
            x.w[i] = v->valuedouble;
    }
    ok = ok && isfinite(n->valuedouble) && n->valuedouble >= 0 && isfinite(p->valuedouble) &&
         p->valuedouble >= 0 && p->valuedouble <= PRIOR_WEIGHT;
    if (ok) {
        x.samples = n->valuedouble;
        x.prior = p->valuedouble;
        sum(&x);
        ok = x.total > 0;
    }
    cJSON_Delete(o);
    if (!ok)
        return SB_EINVAL;
    *t = x;
    return SB_OK;
}
