/*
 * plan.c compares a manifest with its state database to tell what a run
 * would do (the dry-run plan and cost quote) and where a batch stands (status).
 * It only reads: neither command changes the state.
 */
#include "sb_plan.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LISTED 100

/* The state a run would start this job from, and whether it would submit it. */
static enum sb_job_state effective_state(const struct sb_jobspec *j, const struct sb_jobrow *row,
                                         int have_row, const char *retry_failed, int *submit)
{
    *submit = 0;
    if (j->invalid)
        return SB_JOB_FAILED;
    if (!have_row || strcmp(row->fingerprint, j->fingerprint) != 0) {
        *submit = 1;
        return SB_JOB_PENDING;
    }
    if (row->state == SB_JOB_FAILED && retry_failed &&
        (!*retry_failed || (row->error_kind && strcmp(row->error_kind, retry_failed) == 0))) {
        *submit = 1;
        return SB_JOB_PENDING;
    }
    if (row->state == SB_JOB_PENDING || row->state == SB_JOB_UPLOADING ||
        (row->state == SB_JOB_SUBMITTING && !row->prediction_id))
        *submit = 1;
    return row->state;
}

struct removed_ctx {
    struct sb_map *ids;
    int removed;
    FILE *out;
};

static int count_removed(const struct sb_jobrow *r, void *ud)
{
    struct removed_ctx *c = ud;
    if (!sb_map_get(c->ids, r->id)) {
        if (c->out && c->removed < MAX_LISTED)
            fprintf(c->out, "  removed from the manifest: %s (%s)\n", r->id, sb_job_status_name(r->state));
        c->removed++;
    }
    return 0;
}

static int removed_jobs(const struct sb_manifest *m, struct sb_store *st, FILE *out)
{
    if (!st)
        return 0;
    struct removed_ctx c = {sb_map_new(), 0, out};
    for (int i = 0; i < m->n_jobs; i++)
        sb_map_put(c.ids, m->jobs[i].id, &m->jobs[i]);
    sb_store_each_job(st, count_removed, &c);
    sb_map_free(c.ids, NULL);
    return c.removed;
}

void sb_plan_compute(const struct sb_manifest *m, struct sb_store *st, const char *retry_failed,
                     struct sb_plan *p)
{
    memset(p, 0, sizeof *p);
    p->jobs = m->n_jobs;
    struct sb_map *files = sb_map_new(), *need = sb_map_new();
    for (int i = 0; i < m->n_jobs; i++) {
        const struct sb_jobspec *j = &m->jobs[i];
        struct sb_jobrow row;
        int have = st && sb_store_get_job(st, j->id, &row) == SB_OK;
        int submit;
        enum sb_job_state s = effective_state(j, &row, have, retry_failed, &submit);
        p->counts[s]++;
        if (j->invalid)
            p->invalid++;
        if (have && strcmp(row.fingerprint, j->fingerprint) != 0)
            p->changed++;
        if (have && strcmp(row.fingerprint, j->fingerprint) == 0)
            p->spent += row.cost;
        if (submit) {
            p->to_submit++;
            p->images_requested += j->images_requested;
        } else if (s == SB_JOB_SUBMITTING || s == SB_JOB_RUNNING || s == SB_JOB_DOWNLOADING) {
            p->to_resume++;
        }
        for (int k = 0; k < j->n_images; k++) {
            const struct sb_image_ref *r = &j->images[k];
            p->image_refs++;
            if (!r->file) {
                p->remote_refs++;
                continue;
            }
            p->local_refs++;
            if (!sb_map_get(files, r->file->path)) {
                sb_map_put(files, r->file->path, (void *)r->file);
                p->distinct_files++;
            }
            if (submit && !j->invalid && m->media.upload == SB_UPLOAD_PROVIDER &&
                r->file->sha256[0] && !sb_map_get(need, r->file->sha256)) {
                char *url = st ? sb_store_upload_url(st, r->file->sha256, m->media.upload_ttl_ms) : NULL;
                if (!url) {
                    sb_map_put(need, r->file->sha256, (void *)r->file);
                    p->uploads_needed++;
                }
                free(url);
            }
        }
        if (have)
            sb_jobrow_clear(&row);
    }
    p->quote = (double)p->images_requested * m->price_per_image;
    p->removed = removed_jobs(m, st, NULL);
    sb_map_free(files, NULL);
    sb_map_free(need, NULL);
}

void sb_plan_print(FILE *out, const struct sb_manifest *m, const struct sb_plan *p, const char *state_path)
{
    fprintf(out, "plan for %s\n", m->path);
    fprintf(out, "  provider %s, model %s\n", sb_provider_name(m->provider), m->model);
    fprintf(out, "  output_dir %s\n  state %s\n", m->output_dir, state_path);
    fprintf(out, "  jobs: %d in the manifest; %d to submit, %d to resume, %d already succeeded, "
            "%d failed (%d on a bad image), %d cancelled\n", p->jobs, p->to_submit, p->to_resume,
            p->counts[SB_JOB_SUCCEEDED], p->counts[SB_JOB_FAILED], p->invalid, p->counts[SB_JOB_CANCELLED]);
    if (p->changed)
        fprintf(out, "  %d jobs changed since the last run and will run again\n", p->changed);
    if (p->removed)
        fprintf(out, "  %d jobs in the state are no longer in the manifest\n", p->removed);
    fprintf(out, "  reference images: %d (%d local in %d distinct files, %d remote URLs); uploads needed: %d\n",
            p->image_refs, p->local_refs, p->distinct_files, p->remote_refs, p->uploads_needed);
    fprintf(out, "  limits: concurrency %d, %g requests/s%s, %d attempts per call, poll every %lldms, "
            "job timeout %llds\n", m->limits.concurrency, m->limits.requests_per_second,
            m->limits.requests_per_second == 0 ? " (unlimited)" : "", m->limits.max_attempts,
            (long long)m->limits.poll_interval_ms, (long long)(m->limits.job_timeout_ms / 1000));
    fprintf(out, "  cost quote: %ld images x $%.4f = $%.2f", p->images_requested, m->price_per_image, p->quote);
    if (p->spent > 0)
        fprintf(out, " (already spent: $%.2f)", p->spent);
    fprintf(out, "\n");
    if (m->limits.max_cost >= 0) {
        if (p->quote + p->spent > m->limits.max_cost)
            fprintf(out, "  max_cost $%.2f: the run would stop submitting before the quote is reached\n",
                    m->limits.max_cost);
        else
            fprintf(out, "  max_cost $%.2f: within budget\n", m->limits.max_cost);
    }
    int listed = 0;
    for (int i = 0; i < m->n_jobs && listed < MAX_LISTED; i++, listed++) {
        const struct sb_jobspec *j = &m->jobs[i];
        if (j->invalid)
            fprintf(out, "  job %s: will fail: %s\n", j->id, j->invalid);
        else
            fprintf(out, "  job %s: %d reference image%s -> up to %d output%s\n", j->id, j->n_images,
                    j->n_images == 1 ? "" : "s", j->images_requested, j->images_requested == 1 ? "" : "s");
    }
    if (m->n_jobs > listed)
        fprintf(out, "  ... and %d more jobs\n", m->n_jobs - listed);
}

void sb_status_print(FILE *out, const struct sb_manifest *m, struct sb_store *st, const char *state_path)
{
    struct sb_plan p;
    sb_plan_compute(m, st, NULL, &p);
    fprintf(out, "status of %s\n", m->path);
    fprintf(out, "  state %s%s\n", state_path, st ? "" : " (no run yet)");
    fprintf(out, "  jobs: %d", p.jobs);
    for (int s = 0; s < SB_JOB_NSTATES; s++)
        fprintf(out, ", %s %d", sb_job_state_name((enum sb_job_state)s), p.counts[s]);
    fprintf(out, "\n  spent: $%.2f; still to submit: %d jobs, quote $%.2f\n", p.spent, p.to_submit, p.quote);
    int listed = 0, failed = 0;
    for (int i = 0; i < m->n_jobs; i++) {
        const struct sb_jobspec *j = &m->jobs[i];
        const char *kind = NULL, *msg = NULL;
        struct sb_jobrow row;
        int have = st && sb_store_get_job(st, j->id, &row) == SB_OK;
        if (j->invalid) {
            kind = SB_EK_INVALID_INPUT;
            msg = j->invalid;
        } else if (have && row.state == SB_JOB_FAILED && strcmp(row.fingerprint, j->fingerprint) == 0) {
            kind = row.error_kind ? row.error_kind : "unknown";
            msg = row.error_message ? row.error_message : "";
        }
        if (kind) {
            if (failed++ == 0)
                fprintf(out, "  failures:\n");
            if (listed++ < MAX_LISTED)
                fprintf(out, "    %s: %s: %s\n", j->id, kind, msg);
        }
        if (have)
            sb_jobrow_clear(&row);
    }
    if (listed > MAX_LISTED)
        fprintf(out, "    ... and %d more\n", listed - MAX_LISTED);
    removed_jobs(m, st, out);
}
