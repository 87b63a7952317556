/*
 * outputs.c fetches a finished prediction's outputs into .part files, has them
 * made final (fsync, rename) on the commit's worker, and marks the job
 * succeeded, or failed once download_patience is spent. It also removes the
 * outputs of changed jobs' earlier versions and writes results.jsonl.
 */
#include "engine_int.h"

/* Jobs whose outputs the worker made durable: succeeded (committed with the next commit). */
void finalized(struct engine *e, struct job *list)
{
    while (list) {
        struct job *j = list;
        list = j->fin_next;
        j->fin_next = NULL;
        for (int k = 0; k < j->n_out; k++) {
            if (j->dl[k].received && j->dl[k].d.final_name)
                j->outputs[k] = sb_strdup(j->dl[k].d.final_name);
            j->dl[k].received = 0;
            sb_download_cleanup(&j->dl[k].d);
        }
        if (j->fin_failed && sb_errno_storage(j->fin_errno)) {
            /* No room for it: its committed state has the next run download it again. */
            storage_full(e, e->m->output_dir, j->fin_errno);
            release(e, j);
            continue;
        }
        if (j->fin_failed) {
            charge_outputs(e, j, j->n_out); /* the prediction was made and billed */
            job_failed(e, j, SB_EK_SERVER, 0, NULL, j->fin_error);
            continue;
        }
        free(j->row.outputs);
        j->row.outputs = str_array(j->outputs, j->n_out);
        for (int k = 0; k < j->n_out; k++)
            e->bytes_written += (int64_t)j->dl[k].d.total;
        charge_outputs(e, j, j->n_out);
        e->images_written += j->n_out;
        clear_error(j);
        set_state(e, j, SB_JOB_SUCCEEDED);
        set_want(j, W_NONE);
        e->jobs_done_run++;
        release(e, j);
        sb_debug("job %s: %d output%s written", j->row.id, j->n_out, SB_S(j->n_out));
    }
}

/*
 * The prediction was made (and billed) but an output could not be fetched: the
 * job fails with the error its downloads set, and counts its cost.
 */
static void downloads_failed(struct engine *e, struct job *j)
{
    for (int k = 0; k < j->n_out; k++) {
        if (j->dl[k].received) {
            sb_download_abort(&j->dl[k].d);
            sb_download_cleanup(&j->dl[k].d);
            j->dl[k].received = 0;
        }
    }
    charge_outputs(e, j, j->n_out);
    job_failed(e, j, j->row.error_kind ? j->row.error_kind : SB_EK_SERVER, j->row.error_http, NULL,
               j->row.error_message ? j->row.error_message : "download failed");
}

static void download_done(struct sb_download *d)
{
    struct dlslot *s = sb_container_of(d, struct dlslot, d);
    struct job *j = s->job;
    struct engine *e = j->call.e;
    s->running = 0;
    if (!d->failed) {
        s->received = 1; /* kept open: the worker fsyncs and renames it */
    } else {
        if (sb_errno_storage(d->write_errno)) {
            /* No room for it: the run stops, and the next one downloads what was paid for. */
            storage_full(e, e->m->output_dir, d->write_errno);
            sb_debug("job %s: output %d: %s; left for the next run", j->row.id, s->k + 1, d->error);
        } else if (d->retryable) {
            /*
             * Paid for: tried again for limits.download_patience, not bought again; after
             * a 404, 410 or 403 (a CDN's 404 right after "completed", an expired
             * signature) the prediction is polled for fresh URLs first.
             */
            int64_t now = mono_ms();
            int gone = d->http_status == 404 || d->http_status == 410 || d->http_status == 403;
            if (!j->dl_fail_since)
                j->dl_fail_since = now;
            if (e->run->stopping) {
                sb_debug("job %s: output %d: %s; left for the next run", j->row.id, s->k + 1, d->error);
            } else if (now - j->dl_fail_since < e->m->limits.download_patience_ms && gone) {
                /* The URL may have expired or not be there yet: the prediction gives fresh ones. */
                j->repoll = 1;
                sb_debug("job %s: output %d: %s; polling for fresh URLs", j->row.id, s->k + 1, d->error);
            } else if (now - j->dl_fail_since < e->m->limits.download_patience_ms) {
                /* A 5xx, a dropped connection, a body cut short: the same URL again, after back-off. */
                set_due(e, j, now + backoff(j->tries, -1));
                sb_debug("job %s: output %d: %s; retrying", j->row.id, s->k + 1, d->error);
            } else if (j->want == W_DOWNLOAD) {
                char msg[sizeof d->error + 96];
                snprintf(msg, sizeof msg, "%s (still after %llds of tries)", d->error,
                         (long long)((now - j->dl_fail_since) / 1000));
                set_want(j, W_FINISHING);
                set_error(e, j, SB_EK_SERVER, (int)d->http_status, NULL, msg);
            }
        } else if (j->want == W_DOWNLOAD) {
            set_want(j, W_FINISHING); /* the others still running finish first */
            set_error(e, j, SB_EK_SERVER, (int)d->http_status, NULL, d->error);
        }
        sb_download_cleanup(d);
    }
    for (int k = 0; k < j->n_out; k++) {
        if (j->dl[k].running) {
            dispatch(e);
            return;
        }
    }
    int complete = 1;
    for (int k = 0; k < j->n_out; k++)
        complete &= j->outputs[k] != NULL || j->dl[k].received;
    if (j->want == W_FINISHING) {
        downloads_failed(e, j);
    } else if (complete) {
        set_want(j, W_FINISHING);
        j->fin_failed = 0;
        j->fin_next = e->finalize_pending;
        e->finalize_pending = j;
    } else if (j->want == W_DOWNLOAD && e->run->stopping) {
        release(e, j); /* its state stays what was committed: outputs not written are fetched again */
    } else if (j->want == W_DOWNLOAD && j->repoll) {
        j->repoll = 0;
        set_want(j, W_POLL);
        j->fetch_result = e->api.ops->result_url != NULL;
        set_due(e, j, mono_ms() + 1000 + backoff(++j->dl_rounds, -1));
    } else if (j->want == W_DOWNLOAD) {
        set_due(e, j, j->due); /* a retry waits for the others to end: look again */
    }
    dispatch(e);
}

/* Output k's path under output_dir without its extension: the template with {k} filled, or <id>_<k>. */
static char *out_stem(const char *tmpl, const char *id, int k)
{
    char num[16];
    snprintf(num, sizeof num, "%d", k + 1);
    if (!tmpl)
        return sb_concat(id, "_", num, NULL);
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    for (const char *p = tmpl; *p;) {
        if (strncmp(p, "{k}", 3) == 0) {
            sb_buf_puts(&b, num);
            p += 3;
        } else {
            sb_buf_append(&b, p++, 1);
        }
    }
    return b.data;
}

/* Starts the downloads of the outputs not yet written, from the output URLs the poll gave. */
void start_downloads(struct engine *e, struct job *j, char *const *urls, int n)
{
    if (!j->dl) {
        j->n_out = n;
        j->dl = sb_calloc((size_t)(n ? n : 1), sizeof *j->dl);
        j->outputs = sb_calloc((size_t)(n ? n : 1), sizeof *j->outputs);
        for (int k = 0; k < n; k++)
            j->dl[k].d.fd = -1;
    }
    j->tries++;
    j->call.e = e;
    int started = 0;
    const char *tmpl = j->spec ? j->spec->output_name : NULL; /* output_name, or NULL for <id>_{k} */
    for (int k = 0; k < n && k < j->n_out; k++) {
        if (j->outputs[k] || j->dl[k].running || j->dl[k].received)
            continue;
        struct dlslot *s = &j->dl[k];
        s->job = j;
        s->k = k;
        s->d.fd = -1;
        char *stem = out_stem(tmpl, j->row.id, k);
        s->running = 1;
        int rc = urls[k] ? sb_download_start(&s->d, e->run->http, urls[k], e->outdir_fd, e->m->output_dir, stem,
                                             MAX_OUTPUT_BYTES, download_done) : SB_EINVAL;
        free(stem);
        if (rc != SB_OK) {
            s->running = 0;
            int full = urls[k] && sb_errno_storage(s->d.write_errno);
            if (full)
                storage_full(e, e->m->output_dir, s->d.write_errno); /* stops the run: left for the next */
            if (urls[k] && (full || (s->d.retryable && (j->tries < e->m->limits.max_attempts || e->run->stopping)))) {
                /* Out of open files for now: try again once some are closed, or in the next run. */
                sb_debug("job %s: output %d: %s; retrying", j->row.id, k + 1, s->d.error);
                sb_download_cleanup(&s->d);
                if (!e->run->stopping) {
                    set_due(e, j, mono_ms() + backoff(j->tries, -1));
                } else {
                    int any = started;
                    for (int i = 0; i < j->n_out; i++)
                        any |= j->dl[i].running;
                    if (!any)
                        release(e, j); /* its committed state has it downloaded again */
                }
                if (!started)
                    return;
                break;
            }
            set_error(e, j, SB_EK_SERVER, 0, NULL, s->d.error[0] ? s->d.error : "bad output URL");
            sb_download_cleanup(&s->d);
            set_want(j, W_FINISHING);
            break;
        }
        started++;
    }
    if (n == 0)
        job_failed(e, j, SB_EK_SERVER, 0, NULL, "the prediction finished without outputs");
    else if (!started && j->want == W_FINISHING) {
        int any = 0;
        for (int k = 0; k < j->n_out; k++)
            any |= j->dl[k].running;
        if (!any)
            downloads_failed(e, j);
    }
}

/* The same from the output URLs kept in the row (a retry, or a run resuming downloads). */
void start_downloads_kept(struct engine *e, struct job *j)
{
    cJSON *a = cJSON_Parse(j->row.output_urls ? j->row.output_urls : "[]");
    int n = cJSON_GetArraySize(a);
    char **urls = sb_calloc((size_t)(n ? n : 1), sizeof *urls);
    for (int k = 0; k < n; k++) {
        const cJSON *u = cJSON_GetArrayItem(a, k);
        urls[k] = cJSON_IsString(u) ? u->valuestring : NULL;
    }
    start_downloads(e, j, urls, n);
    free(urls);
    cJSON_Delete(a);
}

/*
 * Whether name can be an output's path as seedbatch writes them: relative, no part
 * empty or starting with a dot, ending in an image extension. Nothing else is ever
 * removed, whatever a damaged state says.
 */
static int is_output_path(const char *name)
{
    if (!name[0] || name[0] == '/')
        return 0;
    for (const char *p = name; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || p[0] == '.')
            return 0;
        p += n + (p[n] == '/');
    }
    const char *dot = strrchr(name, '.');
    static const char *exts[] = {".png", ".jpeg", ".jpg", ".webp", NULL};
    return dot && !strchr(dot, '/') && sb_in_list(dot, exts);
}

/* Removes an output at path under the folder open as dirfd, no link followed on the way. */
static int unlink_output(int dirfd, const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return unlinkat(dirfd, path, 0);
    char *dir = sb_strndup(path, (size_t)(slash - path));
    int fd = sb_openat_dir(dirfd, dir, 0);
    free(dir);
    if (fd < 0)
        return -1;
    int rc = unlinkat(fd, slash + 1, 0);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static int in_list(const cJSON *list, const char *name)
{
    const cJSON *x;
    cJSON_ArrayForEach(x, list)
        if (cJSON_IsString(x) && strcmp(x->valuestring, name) == 0)
            return 1;
    return 0;
}

static void remove_replaced(const char *id, const char *outputs, const char *replaced, void *ud)
{
    struct engine *e = ud;
    cJSON *now = outputs ? cJSON_ParseWithOpts(outputs, NULL, 1) : NULL;
    cJSON *old = replaced ? cJSON_ParseWithOpts(replaced, NULL, 1) : NULL;
    const cJSON *x;
    cJSON_ArrayForEach(x, old) {
        if (!cJSON_IsString(x) || !is_output_path(x->valuestring) || in_list(now, x->valuestring))
            continue;
        if (unlink_output(e->outdir_fd, x->valuestring) == 0) {
            e->replaced_removed++;
            sb_debug("job %s: removed %s/%s, an output of its earlier version", id, e->m->output_dir,
                     x->valuestring);
        } else if (errno != ENOENT) {
            sb_warn("job %s: cannot remove %s/%s, an output of its earlier version: %s", id, e->m->output_dir,
                    x->valuestring, strerror(errno));
        }
    }
    cJSON_Delete(now);
    cJSON_Delete(old);
}

/*
 * A job whose manifest entry changed replaces its outputs as a whole once its new ones
 * are in place: an earlier version's files its new outputs did not overwrite (it made
 * fewer images, or another format) are removed, so that the directory holds what
 * results.jsonl lists. Until the changed job succeeds they stay. (A power cut right
 * after may bring a removed file back: it is no output of the job's, as results.jsonl says.)
 */
void remove_replaced_outputs(struct engine *e)
{
    if (e->fatal || sb_store_in_transaction(e->st))
        return;
    sb_store_each_replaced(e->st, remove_replaced, e);
    if (e->replaced_removed)
        sb_info("%s: %d output%s of earlier versions of changed jobs removed", e->m->path, e->replaced_removed,
                SB_S(e->replaced_removed));
}

/* results.jsonl from the state; not while a commit has the database. Returns 0 when written. */
int write_results(struct engine *e)
{
    char err[SB_ERRLEN];
    if (e->commit_inflight || !e->st)
        return -1;
    write_dirty(e);
    if (sb_results_write(e->m, e->st, e->res_cache, e->res_lo, e->res_hi, err, sizeof err) != SB_OK) {
        sb_error("results.jsonl: %s", err);
    } else {
        e->res_lo = INT64_MAX;
        e->res_hi = -1;
    }
    return 0;
}

/* report.html from the state, at the end of a run (not while a commit has the database). */
void write_report(struct engine *e)
{
    char err[SB_ERRLEN];
    if (e->commit_inflight || !e->st || e->fatal)
        return;
    if (sb_report_write(e->m, e->st, 1, NULL, err, sizeof err) != SB_OK)
        sb_error("report.html: %s", err);
    else
        sb_debug("%s/report.html written", e->m->output_dir);
}
