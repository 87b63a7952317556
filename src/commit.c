/*
 * commit.c owns the group commit: rows marked dirty in a loop turn (and the
 * ledger's charges, and upload cache entries) are written into one transaction,
 * whose COMMIT, with the fsync of outputs made final, runs on libuv's
 * threadpool. Submits whose intent is in a commit are sent when it returns.
 * A state that cannot be written, or a full disk, stops the run.
 */
#include "engine_int.h"

/*
 * The output directory or the state has no room (ENOSPC, EDQUOT) or turned
 * read-only: nothing more is submitted, transfers under way end or are left, the
 * state is kept, and the run exits 75. No job fails for it: a prediction paid for
 * keeps its committed state, and the next run (once there is room) downloads it.
 */
void storage_full(struct engine *e, const char *where, int err)
{
    if (!e->storage_stop) {
        e->storage_stop = err;
        snprintf(e->storage_where, sizeof e->storage_where, "%s", where);
        sb_error("%s: %s: stopping: nothing more is submitted; what was paid for is kept for the next run",
                 where, strerror(err));
    }
    if (!e->run->stopping)
        stop_run(e->run, 0);
    else
        e->run->stopping = 1;
}

/* Marks the job's row for the next commit. */
void save(struct engine *e, struct job *j)
{
    if (j->dirty)
        return;
    e->n_dirty++;
    j->dirty = 1;
    j->dirty_from = j->saved;
    j->dirty_next = e->dirty_head;
    e->dirty_head = j;
}

/*
 * Appends the charges learned since the last commit to the ledger, in the
 * transaction of the rows that learned them. A prediction charged already (by an
 * earlier run that stopped before the job's own row said so) is not charged again.
 */
static int write_charges(struct engine *e, int rc)
{
    for (struct pcharge *p = e->charges, *n; p; p = n) {
        n = p->next;
        int added = rc == SB_OK ? sb_store_add_charge(e->st, &p->c) : 1;
        if (added < 0)
            rc = added == SB_EFULL ? SB_EFULL : SB_EIO;
        else if (added == 0 && !p->c.flagged)
            e->spent -= p->c.cost;
        free(p->job_id);
        free(p->fingerprint);
        free(p->prediction_id);
        free(p);
    }
    e->charges = NULL;
    e->charges_tail = &e->charges;
    return rc;
}

/* Writes every dirty row into the open transaction; a failure stops the run. */
int write_dirty(struct engine *e)
{
    int rc = SB_OK;
    /* What was learned of the processing time: with the rows, every 2 s at most, and at the end. */
    int timing = e->timing_dirty && (e->finished || mono_ms() - e->timing_saved >= 2000);
    if (!e->dirty_head && !e->up_dirty_head && !e->charges && !timing)
        return SB_OK;
    if (sb_store_begin(e->st) != SB_OK)
        rc = SB_EIO;
    rc = write_charges(e, rc);
    if (timing && rc == SB_OK) {
        int trc = sb_store_put_timing(e->st, sb_provider_name(e->m->provider), e->m->model, &e->timing);
        if (trc != SB_OK)
            rc = trc == SB_EFULL ? SB_EFULL : SB_EIO;
        e->timing_dirty = 0;
        e->timing_saved = mono_ms();
    }
    for (struct job *j = e->dirty_head, *n; j; j = n) {
        n = j->dirty_next;
        j->dirty = 0;
        j->dirty_next = NULL;
        int src = rc == SB_OK ? sb_store_save_job(e->st, &j->row, j->dirty_from) : SB_OK;
        if (src != SB_OK)
            rc = src == SB_EFULL ? SB_EFULL : SB_EIO;
        e->rows_written++;
        j->saved = j->row.state;
        if (j->row.seq < e->res_lo)
            e->res_lo = j->row.seq;
        if (j->row.seq > e->res_hi)
            e->res_hi = j->row.seq;
        e->count[j->dirty_from]--;
        e->count[j->row.state]++;
    }
    e->dirty_head = NULL;
    e->n_dirty = 0;
    for (struct upload *u = e->up_dirty_head, *n; u; u = n) {
        n = u->dirty_next;
        u->dirty = 0;
        if (rc == SB_OK && (u->url ? sb_store_put_upload(e->st, u->sha, u->url, (int64_t)u->file->size)
                                   : sb_store_drop_upload(e->st, u->sha)) != SB_OK)
            rc = SB_EIO;
    }
    e->up_dirty_head = NULL;
    if (rc != SB_OK && !e->fatal) {
        e->fatal = 1;
        e->run->stopping = 1;
        snprintf(e->err, sizeof e->err, "cannot write the state database %s", e->state_path);
        if (rc == SB_EFULL)
            storage_full(e, e->state_path, ENOSPC);
    }
    return rc;
}

/* Starts (or drops, when the run is failing) submits whose intent is committed. */
static void send_submits(struct engine *e, struct job *list)
{
    while (list) {
        struct job *j = list;
        list = j->send_next;
        j->send_next = NULL;
        if ((e->run->auth_abort || e->run->stopping) && !e->fatal) {
            /*
             * Known not sent: nothing can have been created, so back to pending. A stop
             * starts nothing new: a submit whose intent committed after it began (the
             * commit can outlast the grace period on a loaded machine) is not sent, else
             * its answer could be abandoned and the job resubmitted, flagged, next run.
             */
            job_call_dropped(j);
            set_state(e, j, SB_JOB_PENDING);
            release(e, j);
        } else if (e->fatal || sb_req_start(&j->call.req, j->call.req.done) != SB_OK) {
            /* Not sent: the intent stays committed and a later run resubmits, flagged. */
            job_call_dropped(j);
            e->scan_all = 1;
        } else {
            e->calls[CALL_SUBMIT]++; /* counted when sent: the run's summary counts calls made */
            j->sent_mono = mono_ms();
            j->paused_at_send = e->run->paused;
        }
    }
}

/* On a worker thread: the commit and its fsync. The loop leaves the store alone meanwhile. */
static void commit_work(uv_work_t *w)
{
    struct engine *e = sb_container_of(w, struct engine, commit_work);
    /* Outputs first: fsync and rename each, then one fsync of the directory for all. */
    int renamed = 0;
    for (struct job *j = e->finalizing; j; j = j->fin_next) {
        for (int k = 0; k < j->n_out; k++) {
            struct sb_download *d = &j->dl[k].d;
            if (!j->dl[k].received)
                continue;
            if (sb_download_finish(d) != 0) {
                if (!j->fin_failed) {
                    sb_strlcpy(j->fin_error, d->error, sizeof j->fin_error);
                    j->fin_errno = d->write_errno;
                }
                j->fin_failed = 1;
            } else {
                renamed++;
            }
        }
    }
    /*
     * Some filesystems cannot fsync a directory at all (EINVAL: VirtualBox shared
     * folders, some FUSE and network filesystems). The renames are then as durable
     * as that filesystem makes them; failing every paid job for it would help no
     * one. Any other error fails the jobs of this group.
     */
    if (renamed && e->dirsync_unsupported == 0 && fsync(e->outdir_fd) != 0) {
        if (errno == EINVAL) {
            e->dirsync_unsupported = 1;
        } else {
            int err = errno;
            for (struct job *j = e->finalizing; j; j = j->fin_next) {
                if (!j->fin_failed) {
                    snprintf(j->fin_error, sizeof j->fin_error, "fsync of the output directory failed: %s",
                             strerror(err));
                    j->fin_errno = err;
                }
                j->fin_failed = 1;
            }
        }
    }
    uint64_t t0 = uv_hrtime();
    e->commit_rc = sb_store_in_transaction(e->st) ? sb_store_commit(e->st, e->commit_err, sizeof e->commit_err)
                                                  : SB_OK;
    e->commit_last_ms = (double)(uv_hrtime() - t0) / 1e6;
}

static void commit_done(uv_work_t *w, int status)
{
    struct engine *e = sb_container_of(w, struct engine, commit_work);
    e->commit_inflight = 0;
    if (e->dirsync_unsupported == 1) {
        e->dirsync_unsupported = 2;
        sb_warn("%s: its filesystem cannot fsync a directory (Invalid argument): outputs are renamed "
                "into place without that", e->m->output_dir);
    }
    e->commits++;
    e->commit_ms += e->commit_last_ms;
    if (e->commit_last_ms > e->commit_ms_max)
        e->commit_ms_max = e->commit_last_ms;
    if (status != 0 || e->commit_rc != SB_OK) {
        sb_strlcpy(e->err, status ? "the state commit was cancelled" : e->commit_err, sizeof e->err);
        e->fatal = 1;
        e->run->stopping = 1;
        if (e->commit_rc == SB_EFULL)
            storage_full(e, e->state_path, ENOSPC);
    }
    struct job *list = e->sending;
    e->sending = NULL;
    send_submits(e, list);
    list = e->finalizing;
    e->finalizing = NULL;
    finalized(e, list);
    dispatch(e);
}

/*
 * The state cannot be written: outputs received but not yet made final are
 * left (their .part files removed), their jobs keep the state last committed,
 * and the next run downloads them again.
 */
static void drop_finalizing(struct engine *e)
{
    while (e->finalize_pending) {
        struct job *j = e->finalize_pending;
        e->finalize_pending = j->fin_next;
        j->fin_next = NULL;
        for (int k = 0; k < j->n_out; k++) {
            if (j->dl[k].received) {
                sb_download_abort(&j->dl[k].d);
                sb_download_cleanup(&j->dl[k].d);
                j->dl[k].received = 0;
            }
        }
        release(e, j);
    }
}

static void on_commit_timer(uv_timer_t *t)
{
    flush(sb_container_of(t, struct engine, commit_timer));
}

void flush(struct engine *e)
{
    if (e->commit_inflight || e->fatal) {
        if (e->fatal) {
            send_submits(e, e->send_head);
            e->send_head = e->send_tail = NULL;
            drop_finalizing(e);
        }
        return;
    }
    /*
     * Commits begin at most every COMMIT_GAP_MS unless many rows wait: on a
     * disk whose fsync is that slow this changes nothing, on a fast one it
     * makes groups of some size instead of a commit per answer.
     */
    uint64_t now = uv_now(&e->run->uv);
    if (e->commits && e->n_dirty < COMMIT_GROUP && now - e->commit_started < COMMIT_GAP_MS &&
        (e->dirty_head || e->up_dirty_head || e->finalize_pending || e->send_head)) {
        if (!uv_is_active((uv_handle_t *)&e->commit_timer))
            uv_timer_start(&e->commit_timer, on_commit_timer, COMMIT_GAP_MS - (now - e->commit_started), 0);
        return;
    }
    uv_timer_stop(&e->commit_timer);
    if (write_dirty(e) != SB_OK || (!sb_store_in_transaction(e->st) && !e->finalize_pending)) {
        send_submits(e, e->send_head); /* nothing to wait for (or failing: dropped) */
        e->send_head = e->send_tail = NULL;
        return;
    }
    e->sending = e->send_head;
    e->send_head = e->send_tail = NULL;
    e->finalizing = e->finalize_pending;
    e->finalize_pending = NULL;
    e->commit_inflight = 1;
    e->commit_started = now;
    if (uv_queue_work(&e->run->uv, &e->commit_work, commit_work, commit_done) != 0) {
        e->commit_inflight = 0;
        e->commit_rc = sb_store_commit(e->st, e->commit_err, sizeof e->commit_err);
        commit_done(&e->commit_work, 0);
    }
}

/* Commits what is left, on the loop thread: for the end of the run. */
void flush_sync(struct engine *e)
{
    if (e->commit_inflight)
        return;
    write_dirty(e);
    if (sb_store_in_transaction(e->st) && sb_store_commit(e->st, e->err, sizeof e->err) != SB_OK)
        e->fatal = 1;
}
