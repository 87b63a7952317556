/*
 * The plan: what a run of a manifest would do given what its state database
 * already holds. `run --dry-run` prints it with the cost quote; `status`
 * prints the per-state counts, spend and failures.
 */
#ifndef SB_PLAN_H
#define SB_PLAN_H

#include <stdio.h>

#include "sb_manifest.h"
#include "sb_store.h"

struct sb_plan {
    int jobs;
    int counts[SB_JOB_NSTATES]; /* jobs per state, as a run would start from */
    int to_submit;              /* jobs a run would submit (and pay for) */
    int to_resume;              /* jobs with a prediction to poll or outputs to fetch */
    int invalid;                /* failing at once on a bad reference image */
    int changed;                /* in the state with another fingerprint: re-queued */
    int removed;                /* in the state, gone from the manifest */
    long images_requested;      /* outputs the jobs to submit ask for */
    double quote;               /* images_requested x price_per_image, USD */
    struct sb_spend spend;      /* the state's charge ledger: every job and version of it */
    int image_refs, local_refs, remote_refs, distinct_files, uploads_needed;
    struct sb_buf listing;      /* the first jobs, one line each */
    int n_listed;
    struct sb_buf failures;     /* the first failures, one line each */
    int n_failures;
    int repollable;             /* failed jobs whose prediction --retry-failed polls again */
    struct sb_map *ids;         /* the manifest's job ids */
    cJSON *by_kind;             /* failed jobs per error kind: {"rejected": 2, ...} */
    cJSON *failed;              /* with SB_PLAN_FAILED: every failed job, [{id, kind, message, ...}] */
};

#define SB_PLAN_FAILED 1u       /* collect every failed job in p->failed */

/*
 * Computes the plan. st may be NULL (no state yet). retry_failed is NULL (no
 * retry), "" (every failed job) or an error kind.
 */
int sb_plan_compute(struct sb_manifest *m, struct sb_store *st, const char *retry_failed, unsigned flags,
                    struct sb_plan *p, char *err, size_t errlen);
void sb_plan_clear(struct sb_plan *p);
void sb_plan_print(FILE *out, const struct sb_manifest *m, const struct sb_plan *p,
                   const char *state_path);
/*
 * status: counts, spend, failures with reasons and removed jobs. Each sets *exit_code
 * (sb_status_exit) and returns SB_OK, or fails with err.
 */
int sb_status_print(FILE *out, struct sb_manifest *m, struct sb_store *st, const char *state_path,
                    int *exit_code, char *err, size_t errlen);
/* status --json: one JSON document on one line (docs/operations.md, "status --json"). */
int sb_status_json(FILE *out, struct sb_manifest *m, struct sb_store *st, const char *state_path,
                   int *exit_code, char *err, size_t errlen);
/* status --failed: every failed job, one line each: "ID<TAB>KIND<TAB>MESSAGE". */
int sb_status_failed(FILE *out, struct sb_manifest *m, struct sb_store *st, int *exit_code, char *err,
                     size_t errlen);
/*
 * What status exits with for a plan: 0 every job succeeded, 1 any failed, was
 * cancelled or is not finished.
 */
int sb_status_exit(const struct sb_plan *p);

/* " (up to $Y if the N flagged submissions were billed)", or "" with none flagged. */
void sb_spend_upper_bound(char *buf, size_t len, const struct sb_spend *s);
/*
 * Writes the state's charge ledger as CSV (RFC 4180, CRLF), one row per charge,
 * with a header row first when header is set. st may be NULL (no state yet).
 */
int sb_charges_csv(FILE *out, const struct sb_manifest *m, struct sb_store *st, int header);

#endif
