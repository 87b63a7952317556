/*
 * scheduler.c decides what runs next, once per loop turn (pump): pending jobs
 * taken into work in manifest order while slots and the budget allow, calls
 * dispatched to the rate limiter (uploads and submits first, polls as they fall due), jobs whose
 * due time came looked at, and the wake timer set for the next one.
 */
#include "engine_int.h"

/* Takes a pending job into work: resolves its image URLs, waits for uploads. */
static int activate(struct engine *e, struct job *j)
{
    double need = j->spec->images_requested * price(e);
    if (over_budget(e, need)) {
        if (!e->cost_stop)
            cost_warning(e);
        e->cost_stop = 1;
        return -1;
    }
    hold(e, j);
    j->reserved = need;
    e->reserved += need;
    j->tries = 0;
    resolve_images(e, j);
    return 0;
}

/* An API call to this provider is under way, in any of the run's manifests. */
static int api_inflight(const struct engine *self)
{
    for (int k = 0; k < self->run->n; k++) {
        const struct engine *e = self->run->engines[k];
        if (e->m->provider != self->m->provider)
            continue;
        for (int i = 0; i < e->n_active; i++)
            if (e->active[i]->inflight)
                return 1;
        for (const struct upload *u = e->uploads_all; u; u = u->all_next)
            if (u->state == UP_RUNNING)
                return 1;
        if (e->send_head || e->sending)
            return 1;
    }
    return 0;
}

/* Transfers of this engine under way (the loop is shared with the run's other manifests). */
static int engine_transfers(const struct engine *e)
{
    for (int i = 0; i < e->n_active; i++) {
        const struct job *j = e->active[i];
        if (j->inflight)
            return 1;
        for (int k = 0; j->dl && k < j->n_out; k++)
            if (j->dl[k].running)
                return 1;
    }
    for (const struct upload *u = e->uploads_all; u; u = u->all_next)
        if (u->state == UP_RUNNING)
            return 1;
    return 0;
}

static void on_wake(uv_timer_t *t)
{
    pump(sb_container_of(t, struct engine, wake));
}

/*
 * Where every completion handler (an upload, submit, poll or download ended, a
 * commit returned) ends once it has done its own work: the scheduler runs, at
 * once. (Deferring it to the end of the loop turn, once for all the turn's
 * handlers, was measured: requests started a turn later, and the timing of a
 * stop changed; see docs/benchmarks.md.)
 */
void dispatch(struct engine *e)
{
    pump(e);
}

#define PEND_WINDOW 256

static int take_pending(const struct sb_jobrow *r, void *ud)
{
    struct engine *e = ud;
    row_copy(&e->pend[e->n_pend++], r);
    e->pend_after = r->seq;
    return 0;
}

/*
 * The next pending job's row, read from the state a window at a time, or
 * NULL: none left, or a commit has the database (the commit's end pumps again).
 */
struct sb_jobrow *next_pending(struct engine *e)
{
    if (e->pend_pos < e->n_pend)
        return &e->pend[e->pend_pos];
    if (e->pend_done || e->commit_inflight)
        return NULL;
    for (int i = 0; i < e->n_pend; i++)
        sb_jobrow_clear(&e->pend[i]);
    e->n_pend = e->pend_pos = 0;
    if (!e->pend)
        e->pend = sb_calloc(PEND_WINDOW, sizeof *e->pend);
    if (write_dirty(e) != SB_OK ||
        sb_store_each_pending(e->st, e->pend_after, PEND_WINDOW, take_pending, e) != SB_OK) {
        e->pend_done = 1;
        if (!e->fatal) {
            e->fatal = 1;
            e->run->stopping = 1;
            snprintf(e->err, sizeof e->err, "cannot read the state database %s", e->state_path);
        }
        return NULL;
    }
    if (e->n_pend < PEND_WINDOW)
        e->pend_done = 1;
    return e->n_pend ? &e->pend[0] : NULL;
}

/*
 * What a job in work needs now that its due time has come (or on a look at
 * every job): its call queued or its downloads started, or a failure once it
 * has run past job_timeout. A job not ready yet goes back in the wake queue.
 */
static void look_at(struct engine *e, struct job *j, int64_t now, int from_wq)
{
    if (!j->active || j->inflight || j->queued)
        return; /* its call's end, or its release, decides what comes next */
    /*
     * Counted from the submit, whatever the polls said, but only once a poll of this
     * run was answered: a run resumed long after the last one stopped looks first (a
     * prediction that has finished meanwhile is downloaded).
     */
    if (j->want == W_POLL && j->polled && j->submitted_mono && !j->dl &&
        now - j->submitted_mono > e->m->limits.job_timeout_ms) {
        char msg[200] = "the prediction was still running at job_timeout";
        if (j->last_status[0])
            snprintf(msg, sizeof msg, "the prediction was still running at job_timeout (its last status: \"%s\"%s)",
                     j->last_status, j->last_ready ? ", with no output listed" : "");
        job_failed(e, j, SB_EK_TIMEOUT, 0, NULL, msg);
        return;
    }
    if (e->run->stopping)
        return;
    if (j->want == W_SUBMIT || j->want == W_POLL) {
        if (j->due <= now) {
            enqueue_job(e, j);
            *(from_wq ? &e->queued_on_time : &e->queued_by_scan) += 1;
        } else {
            set_due(e, j, j->due);
        }
    } else if (j->want == W_DOWNLOAD) {
        int running = 0;
        for (int k = 0; k < j->n_out; k++)
            running |= j->dl ? j->dl[k].running : 0;
        if (running)
            return; /* download_done looks again */
        if (j->due <= now)
            start_downloads_kept(e, j);
        else
            set_due(e, j, j->due);
    }
}

/*
 * A run stopping with submits waiting for another try: those none of whose
 * tries may have created a prediction (not flagged possible_duplicate) go back
 * to pending, so that the next run submits them unflagged; so do jobs still
 * gathering uploads (nothing billable was sent for them).
 */
void unsend(struct engine *e)
{
    while (e->q_submit)
        dequeue_job(&e->q_submit, &e->q_submit_tail);
    for (int i = 0; i < e->n_active; i++) {
        struct job *j = e->active[i];
        if ((j->want == W_SUBMIT && !j->inflight && j->row.state == SB_JOB_SUBMITTING &&
             !j->row.prediction_id && !j->row.possible_duplicate) ||
            (j->row.state == SB_JOB_UPLOADING && !j->inflight)) {
            set_state(e, j, SB_JOB_PENDING);
            release(e, j);
            i--;
        }
    }
}

/* Starts whatever may start now, commits the turn, and sets the next wake-up. */
void pump(struct engine *e)
{
    if (e->finished)
        return;
    int64_t now = mono_ms(), next = INT64_MAX;

    struct sb_jobrow *row;
    while (!e->run->stopping && !e->cost_stop && e->slots_used < e->m->limits.concurrency &&
           (row = next_pending(e))) {
        if (over_budget(e, row->images_requested * price(e))) {
            /* What the jobs in work hold may come back (a prediction that fails costs nothing):
               the next job waits for them. With nothing held, the cap is reached. */
            if (!budget_held(e)) {
                cost_warning(e);
                e->cost_stop = 1;
            }
            break;
        }
        e->pend_pos++;
        struct job *j = job_new(e, row);
        if (!j->spec || j->spec->invalid) {
            job_failed(e, j, SB_EK_INVALID_INPUT, 0, NULL,
                       j->spec ? j->spec->invalid : "the state database holds no usable copy of this job");
            continue;
        }
        if (activate(e, j) != 0) {
            retire(e, j); /* still pending in the state */
            break;
        }
    }

    if (e->scan_all) {
        e->scan_all = 0;
        for (int i = 0; i < e->n_active; i++) {
            struct job *j = e->active[i];
            look_at(e, j, now, 0);
            if (i < e->n_active && e->active[i] != j)
                i--; /* it left the list: another job took its place */
        }
    } else {
        struct job *j;
        while ((j = wq_pop_due(e, now)))
            look_at(e, j, now, 1);
    }
    if (e->n_wq && e->wq[0]->due < next)
        next = e->wq[0]->due;
    for (struct upload *u = e->uploads_all; u && !e->run->stopping; u = u->all_next) {
        if (u->state != UP_IDLE || u->queued || u->n_waiters == 0)
            continue;
        if (u->due <= now)
            enqueue_upload(e, u);
        else if (u->due < next)
            next = u->due;
    }

    while (!e->run->stopping && (e->q_up || e->q_submit || e->q_poll)) {
        /* Until one call has succeeded, one at a time: a wrong key costs a single request. */
        if (!e->run->proven[e->m->provider] && api_inflight(e)) {
            /* The call under way may belong to another manifest: look again shortly. */
            if (now + 20 < next)
                next = now + 20;
            break;
        }
        int64_t wait = sb_rl_take(&e->run->rl[e->m->provider], now);
        if (wait > 0) {
            e->run->limited_at[e->m->provider] = now;
            if (now + wait < next)
                next = now + wait;
            break;
        }
        /*
         * Whose turn it is. Uploads, then submits, keep the pipeline full; a poll goes
         * when neither waits, or when it has waited POLL_WAIT_MS past its due time
         * (each poll frees a slot for the next submit, and none starves). Filling the
         * pipeline first leaves the polls of the jobs still processing for the end of
         * the batch, when there is nothing left to submit: the makespan under a rate
         * limit comes within one processing time of the calls' bound.
         */
        int poll_first = e->q_poll && now - e->q_poll->due >= POLL_WAIT_MS;
        if (e->q_up && !poll_first) {
            struct upload *u = e->q_up;
            e->q_up = u->qnext;
            if (!e->q_up)
                e->q_up_tail = NULL;
            u->queued = 0;
            start_upload(e, u);
        } else if (e->q_submit && !poll_first) {
            struct job *j = dequeue_job(&e->q_submit, &e->q_submit_tail);
            if (over_budget(e, 0)) {
                /* Submits that may have been billed unseen took the room: this one waits for a later run. */
                if (!e->cost_stop)
                    cost_warning(e);
                e->cost_stop = 1;
                set_state(e, j, SB_JOB_PENDING);
                release(e, j);
                continue;
            }
            begin_submit(e, j);
        } else if (e->q_poll) {
            start_poll(e, dequeue_job(&e->q_poll, &e->q_poll_tail));
        }
    }
    flush(e);

    int quiet = !engine_transfers(e) && !e->commit_inflight && !e->sending &&
                !e->finalize_pending && !e->finalizing;
    int idle = e->slots_used == 0 && quiet;
    sweep(e);
    int nothing_left = (e->pend_done && e->pend_pos >= e->n_pend) || e->run->stopping || e->cost_stop;
    if (e->run->stopping && quiet)
        idle = 1;
    if (idle && nothing_left) {
        if (e->run->stopping)
            unsend(e);
        finish(e);
        return;
    }
    if (next != INT64_MAX)
        uv_timer_start(&e->wake, on_wake, (uint64_t)(next > now ? next - now : 0), 0);
}

void count_states(struct engine *e, int counts[SB_JOB_NSTATES])
{
    memcpy(counts, e->count, sizeof e->count);
}
