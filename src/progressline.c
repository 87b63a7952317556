/*
 * progressline.c composes the progress line (sb_progressline.h): segments in
 * reading order, each with its rank in the order they give way; the line is the
 * longest that fits, cut at the width as a last resort.
 */
#include "sb_progressline.h"

#include <stdio.h>
#include <string.h>

void sb_progress_duration(double s, char *out, size_t outlen)
{
    long t = s < 0 ? 0 : s > 99 * 86400.0 ? 99 * 86400L : (long)(s + 0.5);
    if (t < 60)
        snprintf(out, outlen, "%lds", t);
    else if (t < 3600)
        snprintf(out, outlen, "%ldm%02lds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(out, outlen, "%ldh%02ldm", t / 3600, t % 3600 / 60);
    else
        snprintf(out, outlen, "%ldd%02ldh", t / 86400, t % 86400 / 3600);
}

enum { SEG_BAR, SEG_COUNTS, SEG_RUNNING, SEG_QUEUED, SEG_COND, SEG_ETA, SEG_SPEND, SEG_RPS, NSEG };

/* The order segments give way in (the counts and the condition never do). */
static const int give_way[] = {SEG_RPS, SEG_QUEUED, SEG_BAR, SEG_RUNNING, SEG_ETA, SEG_SPEND};

size_t sb_progress_line(const struct sb_progress_in *in, int width, char *out, size_t outlen)
{
    char seg[NSEG][160];
    int on[NSEG];
    int pct = in->total > 0 ? (int)((long)in->done * 100 / in->total) : 100;
    for (int i = 0; i < NSEG; i++) {
        seg[i][0] = '\0';
        on[i] = 1;
    }
    char bar[24];
    int filled = in->total > 0 ? (int)((long)in->done * 20 / in->total) : 20;
    for (int i = 0; i < 20; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[20] = '\0';
    snprintf(seg[SEG_BAR], sizeof seg[0], "[%s] ", bar);
    snprintf(seg[SEG_COUNTS], sizeof seg[0], "%d%% %d/%d, %d ok, %d failed", pct, in->done, in->total, in->ok,
             in->failed);
    snprintf(seg[SEG_RUNNING], sizeof seg[0], ", %d running", in->running);
    if (in->queued > 0)
        snprintf(seg[SEG_QUEUED], sizeof seg[0], " (%d queued)", in->queued);
    if (in->condition && *in->condition)
        snprintf(seg[SEG_COND], sizeof seg[0], " | %s", in->condition);
    char d[32] = "--";
    if (in->eta_s >= 0)
        sb_progress_duration(in->eta_s, d, sizeof d);
    snprintf(seg[SEG_ETA], sizeof seg[0], " | ETA %s", d);
    snprintf(seg[SEG_SPEND], sizeof seg[0], " | $%.2f", in->spent);
    snprintf(seg[SEG_RPS], sizeof seg[0], " | %.1f req/s", in->rps);

    size_t max = width > 1 ? (size_t)width - 1 : 0;
    if (max >= outlen)
        max = outlen - 1;
    char line[NSEG * 160];
    size_t len = 0;
    for (size_t drop = 0;; drop++) {
        len = 0;
        line[0] = '\0';
        for (int i = 0; i < NSEG; i++) {
            if (!on[i])
                continue;
            size_t n = strlen(seg[i]);
            memcpy(line + len, seg[i], n + 1);
            len += n;
        }
        if (len <= max || drop == sizeof give_way / sizeof *give_way)
            break;
        on[give_way[drop]] = 0;
    }
    if (len > max)
        len = max; /* the last resort: cut */
    memcpy(out, line, len);
    out[len] = '\0';
    return len;
}
