/*
 * plan.c compares a manifest with its state database to tell what a run
 * would do (the dry-run plan and cost quote) and where a batch stands (status).
 * It only reads: neither command changes the state.
 */
#include "sb_plan.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>

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
        if (sb_jobrow_repollable(row))
            return SB_JOB_RUNNING; /* polled again, not paid for again */
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

struct plan_ctx {
    unsigned flags;
    struct sb_plan *p;
    struct sb_store *st;
    const char *retry_failed;
    struct sb_map *files, *need, *ids;
    int failures;
};

static int plan_job(const struct sb_manifest *m, const struct sb_jobspec *j, int index, void *ud)
{
    struct plan_ctx *c = ud;
    struct sb_plan *p = c->p;
    struct sb_jobrow row;
    int have = c->st && sb_store_get_job(c->st, j->id, &row) == SB_OK;
    int submit;
    enum sb_job_state s = effective_state(j, &row, have, c->retry_failed, &submit);
    (void)index;
    sb_map_put(c->ids, j->id, (void *)1);
    p->counts[s]++;
    if (j->invalid)
        p->invalid++;
    if (have && strcmp(row.fingerprint, j->fingerprint) != 0)
        p->changed++;
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
        if (!sb_map_get(c->files, r->file->path)) {
            sb_map_put(c->files, r->file->path, (void *)r->file);
            p->distinct_files++;
        }
        if (submit && !j->invalid && m->media.upload == SB_UPLOAD_PROVIDER &&
            r->file->sha256[0] && !sb_map_get(c->need, r->file->sha256)) {
            char *url = c->st ? sb_store_upload_url(c->st, r->file->sha256, m->media.upload_ttl_ms) : NULL;
            if (!url) {
                sb_map_put(c->need, r->file->sha256, (void *)r->file);
                p->uploads_needed++;
            }
            free(url);
        }
    }
    if (p->n_listed < MAX_LISTED) {
        char *line;
        if (j->invalid)
            line = sb_asprintf("  job %s: will fail: %s\n", j->id, j->invalid);
        else
            line = sb_asprintf("  job %s: %d reference image%s -> up to %d output%s\n", j->id, j->n_images,
                               SB_S(j->n_images), j->images_requested, SB_S(j->images_requested));
        sb_buf_puts(&p->listing, line);
        free(line);
        p->n_listed++;
    }
    const char *kind = NULL, *msg = NULL;
    if (j->invalid) {
        kind = SB_EK_INVALID_INPUT;
        msg = j->invalid;
    } else if (have && row.state == SB_JOB_FAILED && strcmp(row.fingerprint, j->fingerprint) == 0) {
        kind = row.error_kind ? row.error_kind : "unknown";
        msg = row.error_message ? row.error_message : "";
        p->repollable += sb_jobrow_repollable(&row);
    }
    if (kind) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(p->by_kind, kind);
        if (n)
            cJSON_SetNumberValue((cJSON *)n, n->valuedouble + 1);
        else
            cJSON_AddNumberToObject(p->by_kind, kind, 1);
    }
    if (kind && (c->flags & SB_PLAN_FAILED)) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "id", j->id);
        cJSON_AddStringToObject(f, "kind", kind);
        cJSON_AddStringToObject(f, "message", msg);
        int from_row = !j->invalid;
        if (from_row && row.error_http)
            cJSON_AddNumberToObject(f, "http_status", row.error_http);
        else
            cJSON_AddNullToObject(f, "http_status");
        if (from_row && row.error_code)
            cJSON_AddStringToObject(f, "code", row.error_code);
        else
            cJSON_AddNullToObject(f, "code");
        cJSON_AddNumberToObject(f, "attempts", from_row ? row.attempts : 0);
        cJSON_AddBoolToObject(f, "repollable", from_row && sb_jobrow_repollable(&row));
        cJSON_AddItemToArray(p->failed, f);
    }
    if (kind && c->failures++ < MAX_LISTED) {
        char *line = sb_asprintf("    %s: %s: %s\n", j->id, kind, msg);
        sb_buf_puts(&p->failures, line);
        free(line);
    }
    p->n_failures = c->failures;
    if (have)
        sb_jobrow_clear(&row);
    return 0;
}

int sb_plan_compute(struct sb_manifest *m, struct sb_store *st, const char *retry_failed, unsigned flags,
                    struct sb_plan *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->by_kind = cJSON_CreateObject();
    p->failed = cJSON_CreateArray();
    sb_buf_init(&p->listing, 1 << 20);
    sb_buf_init(&p->failures, 1 << 20);
    p->jobs = m->n_jobs;
    struct plan_ctx c = {flags, p, st, retry_failed, sb_map_new(), sb_map_new(), sb_map_new(), 0};
    int rc = sb_manifest_each_job(m, plan_job, &c, err, errlen);
    p->quote = (double)p->images_requested * m->price_per_image;
    if (rc == SB_OK && st && sb_store_spend(st, m->price_per_image, &p->spend) != SB_OK)
        rc = sb_seterr(err, errlen, "cannot read the charges of the state");
    if (rc == SB_OK && st) {
        struct removed_ctx rcx = {c.ids, 0, NULL};
        sb_store_each_job(st, count_removed, &rcx);
        p->removed = rcx.removed;
    }
    p->ids = c.ids;
    sb_map_free(c.files, NULL);
    sb_map_free(c.need, NULL);
    return rc;
}

void sb_plan_clear(struct sb_plan *p)
{
    sb_buf_free(&p->listing);
    sb_buf_free(&p->failures);
    sb_map_free(p->ids, NULL);
    p->ids = NULL;
    cJSON_Delete(p->by_kind);
    cJSON_Delete(p->failed);
    p->by_kind = p->failed = NULL;
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
        fprintf(out, "  %d job%s changed since the last run and will run again\n", p->changed, SB_S(p->changed));
    if (p->removed)
        fprintf(out, "  %d job%s in the state %s no longer in the manifest\n", p->removed, SB_S(p->removed),
                SB_ONE(p->removed, "is", "are"));
    fprintf(out, "  reference images: %d (%d local in %d distinct files, %d remote URLs); uploads needed: %d\n",
            p->image_refs, p->local_refs, p->distinct_files, p->remote_refs, p->uploads_needed);
    fprintf(out, "  limits: concurrency %d, %g requests/s%s, %d attempts per call, poll every %lldms, "
            "job timeout %llds\n", m->limits.concurrency, m->limits.requests_per_second,
            m->limits.requests_per_second == 0 ? " (unlimited)" : "", m->limits.max_attempts,
            (long long)m->limits.poll_interval_ms, (long long)(m->limits.job_timeout_ms / 1000));
    fprintf(out, "  cost quote: %ld image%s x $%.4f = $%.2f", p->images_requested, SB_S(p->images_requested),
            m->price_per_image, p->quote);
    if (p->spend.flagged)
        fprintf(out, " (already spent: $%.2f, up to $%.2f if the %ld flagged submission%s %s billed)",
                p->spend.spent, p->spend.spent + p->spend.flagged_cost, p->spend.flagged, SB_S(p->spend.flagged),
                SB_ONE(p->spend.flagged, "was", "were"));
    else if (p->spend.charges)
        fprintf(out, " (already spent: $%.2f)", p->spend.spent);
    fprintf(out, "\n");
    if (m->limits.max_cost >= 0) {
        double left = m->limits.max_cost - p->spend.spent - p->spend.flagged_cost;
        if (p->quote > left + 1e-9)
            fprintf(out, "  max_cost $%.2f: the run would stop submitting before the quote is reached ($%.2f of it "
                    "left)\n", m->limits.max_cost, left > 0 ? left : 0);
        else
            fprintf(out, "  max_cost $%.2f: within budget\n", m->limits.max_cost);
    }
    if (p->listing.len)
        fwrite(p->listing.data, 1, p->listing.len, out);
    if (m->n_jobs > p->n_listed)
        fprintf(out, "  ... and %d more job%s\n", m->n_jobs - p->n_listed, SB_S(m->n_jobs - p->n_listed));
}

int sb_status_print(FILE *out, struct sb_manifest *m, struct sb_store *st, const char *state_path,
                    int *exit_code, char *err, size_t errlen)
{
    struct sb_plan p;
    if (sb_plan_compute(m, st, NULL, 0, &p, err, errlen) != SB_OK) {
        sb_plan_clear(&p);
        return SB_ERR;
    }
    fprintf(out, "status of %s\n", m->path);
    fprintf(out, "  state %s%s\n", state_path, st ? "" : " (no run yet)");
    fprintf(out, "  jobs: %d", p.jobs);
    for (int s = 0; s < SB_JOB_NSTATES; s++)
        fprintf(out, ", %s %d", sb_job_state_name((enum sb_job_state)s), p.counts[s]);
    char maybe[128];
    sb_spend_upper_bound(maybe, sizeof maybe, &p.spend);
    fprintf(out, "\n  spent: $%.2f in %ld charge%s%s; still to submit: %d job%s, quote $%.2f\n", p.spend.spent,
            p.spend.charges, SB_S(p.spend.charges), maybe, p.to_submit, SB_S(p.to_submit), p.quote);
    if (m->limits.max_cost >= 0)
        fprintf(out, "  max_cost $%.2f: $%.2f left\n", m->limits.max_cost,
                m->limits.max_cost - p.spend.spent - p.spend.flagged_cost > 0
                    ? m->limits.max_cost - p.spend.spent - p.spend.flagged_cost
                    : 0.0);
    if (p.n_failures) {
        fprintf(out, "  failures:\n");
        fwrite(p.failures.data, 1, p.failures.len, out);
    }
    if (p.n_failures > MAX_LISTED)
        fprintf(out, "    ... and %d more\n", p.n_failures - MAX_LISTED);
    if (p.repollable)
        fprintf(out, "  " SB_REPOLL_HINT "\n", p.repollable, SB_REPOLL_HINT_ARGS(p.repollable));
    if (st) {
        struct removed_ctx rc = {p.ids, 0, out};
        sb_store_each_job(st, count_removed, &rc);
    }
    *exit_code = sb_status_exit(&p);
    sb_plan_clear(&p);
    return SB_OK;
}

int sb_status_exit(const struct sb_plan *p)
{
    return p->counts[SB_JOB_SUCCEEDED] == p->jobs ? SB_EXIT_OK : SB_EXIT_FAILED;
}

int sb_status_json(FILE *out, struct sb_manifest *m, struct sb_store *st, const char *state_path,
                   int *exit_code, char *err, size_t errlen)
{
    struct sb_plan p;
    if (sb_plan_compute(m, st, NULL, SB_PLAN_FAILED, &p, err, errlen) != SB_OK) {
        sb_plan_clear(&p);
        return SB_ERR;
    }
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "manifest", m->path);
    cJSON_AddStringToObject(d, "state", state_path);
    cJSON_AddBoolToObject(d, "has_run", st != NULL);
    cJSON_AddStringToObject(d, "provider", sb_provider_name(m->provider));
    cJSON_AddStringToObject(d, "model", m->model);
    cJSON_AddNumberToObject(d, "jobs", p.jobs);
    cJSON *counts = cJSON_AddObjectToObject(d, "counts");
    for (int s = 0; s < SB_JOB_NSTATES; s++)
        cJSON_AddNumberToObject(counts, sb_job_state_name((enum sb_job_state)s), p.counts[s]);
    cJSON_AddBoolToObject(d, "finished", p.counts[SB_JOB_SUCCEEDED] + p.counts[SB_JOB_FAILED] +
                                             p.counts[SB_JOB_CANCELLED] == p.jobs);
    cJSON_AddNumberToObject(d, "to_submit", p.to_submit);
    cJSON_AddNumberToObject(d, "quote_usd", round(p.quote * 1e4) / 1e4);
    cJSON *spend = cJSON_AddObjectToObject(d, "spend");
    cJSON_AddNumberToObject(spend, "spent_usd", round(p.spend.spent * 1e4) / 1e4);
    cJSON_AddNumberToObject(spend, "charges", (double)p.spend.charges);
    cJSON_AddNumberToObject(spend, "images", (double)p.spend.images);
    cJSON_AddNumberToObject(spend, "flagged", (double)p.spend.flagged);
    cJSON_AddNumberToObject(spend, "up_to_usd", round((p.spend.spent + p.spend.flagged_cost) * 1e4) / 1e4);
    if (m->limits.max_cost >= 0) {
        double left = m->limits.max_cost - p.spend.spent - p.spend.flagged_cost;
        cJSON_AddNumberToObject(spend, "max_cost_usd", m->limits.max_cost);
        cJSON_AddNumberToObject(spend, "left_usd", round((left > 0 ? left : 0) * 1e4) / 1e4);
    } else {
        cJSON_AddNullToObject(spend, "max_cost_usd");
        cJSON_AddNullToObject(spend, "left_usd");
    }
    cJSON_AddItemToObject(d, "failures_by_kind", p.by_kind);
    cJSON_AddItemToObject(d, "failed", p.failed);
    p.by_kind = p.failed = NULL;
    cJSON_AddNumberToObject(d, "repollable", p.repollable);
    cJSON_AddNumberToObject(d, "removed", p.removed);
    char *text = cJSON_PrintUnformatted(d);
    cJSON_Delete(d);
    int rc = SB_OK;
    *exit_code = sb_status_exit(&p);
    if (!text || fprintf(out, "%s\n", text) < 0)
        rc = sb_seterr(err, errlen, "cannot write the status of %s", m->path);
    free(text);
    sb_plan_clear(&p);
    return rc;
}

int sb_status_failed(FILE *out, struct sb_manifest *m, struct sb_store *st, int *exit_code, char *err,
                     size_t errlen)
{
    struct sb_plan p;
    if (sb_plan_compute(m, st, NULL, SB_PLAN_FAILED, &p, err, errlen) != SB_OK) {
        sb_plan_clear(&p);
        return SB_ERR;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, p.failed) {
        /* One line a job: tabs and line ends in a message become spaces. */
        char *msg = sb_strdup(cJSON_GetObjectItemCaseSensitive(f, "message")->valuestring);
        for (char *c = msg; *c; c++)
            if (*c == '\t' || *c == '\n' || *c == '\r')
                *c = ' ';
        fprintf(out, "%s\t%s\t%s\n", cJSON_GetObjectItemCaseSensitive(f, "id")->valuestring,
                cJSON_GetObjectItemCaseSensitive(f, "kind")->valuestring, msg);
        free(msg);
    }
    *exit_code = sb_status_exit(&p);
    sb_plan_clear(&p);
    return SB_OK;
}

void sb_spend_upper_bound(char *buf, size_t len, const struct sb_spend *s)
{
    buf[0] = 0;
    if (s->flagged)
        snprintf(buf, len, " (up to $%.2f if the %ld flagged submission%s %s billed)",
                 s->spent + s->flagged_cost, s->flagged, SB_S(s->flagged), SB_ONE(s->flagged, "was", "were"));
}

/* One text field of a CSV row, quoted by libcsv (RFC 4180), then the separator. */
static void csv_text(FILE *out, const char *v, const char *sep)
{
    csv_fwrite(out, v ? v : "", v ? strlen(v) : 0);
    fputs(sep, out);
}

struct csv_ctx {
    FILE *out;
    const char *manifest;
};

static int csv_row(const struct sb_charge *c, void *ud)
{
    struct csv_ctx *x = ud;
    char when[32];
    sb_iso8601(c->at, when);
    fprintf(x->out, "%s,", when);
    csv_text(x->out, x->manifest, ",");
    csv_text(x->out, c->job_id, ",");
    csv_text(x->out, c->prediction_id, ",");
    csv_text(x->out, c->fingerprint, ",");
    fprintf(x->out, "%d,%.4f,%.4f,%d,", c->images, c->price, c->cost, c->flagged);
    csv_text(x->out, c->note, "\r\n");
    return ferror(x->out) != 0;
}

int sb_charges_csv(FILE *out, const struct sb_manifest *m, struct sb_store *st, int header)
{
    if (header)
        fputs("time,manifest,job_id,prediction_id,fingerprint,images,price_usd,cost_usd,flagged,note\r\n", out);
    struct csv_ctx x = {out, m->path};
    if (st && sb_store_each_charge(st, m->price_per_image, csv_row, &x) != SB_OK)
        return SB_EIO;
    return fflush(out) == 0 && !ferror(out) ? SB_OK : SB_EIO;
}
