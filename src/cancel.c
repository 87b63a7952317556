/*
 * cancel.c is `seedbatch cancel`: jobs not submitted become cancelled without
 * a call; predictions still queued at a provider that has a cancel call are
 * cancelled there; the rest are left to finish and are downloaded by the next
 * run.
 */
#include "engine_int.h"

static void cancel_done(struct sb_req *rq, CURLcode rc)
{
    struct outcome oc;
    struct job *j = job_call_ended(rq, rc, &oc);
    struct engine *e = j->call.e;
    int outcome = oc.v == V_OK ? e->api.ops->parse_cancel(answer(rq)) : SB_EINVAL;
    if (outcome == 1) {
        set_error(e, j, "cancelled", 0, NULL, "cancelled by seedbatch cancel");
        set_state(e, j, SB_JOB_CANCELLED);
        e->jobs_done_run++;
        sb_info("job %s: cancelled at the provider", j->row.id);
    } else if (outcome == 0) {
        e->not_cancellable++;
        sb_warn("job %s: already being processed: it cannot be cancelled; the next run downloads it", j->row.id);
    } else {
        e->fatal = 1;
        e->cancel_failed++;
        sb_error("job %s: cancel failed: %s", j->row.id, oc.msg[0] ? oc.msg : "unreadable answer");
    }
    sb_req_cleanup(rq);
}

/*
 * Whether a cancel call or a commit is still under way. The loop does not empty
 * by itself when they end: a kept-alive connection stays armed after its
 * transfer, until the server closes it (often a minute or two later).
 */
static int cancel_pending(const struct run *r, int opened)
{
    if (sb_loop_active(r->http))
        return 1;
    for (int i = 0; i < opened; i++)
        if (r->engines[i]->commit_inflight)
            return 1;
    return 0;
}

/*
 * seedbatch cancel: jobs not yet sent are cancelled without a call; requests
 * still queued at a provider that can cancel are cancelled there. What cannot
 * be cancelled (already processing, or a provider without a cancel call) is
 * left to finish and is downloaded by the next run.
 */
int sb_engine_cancel(struct sb_manifest **ms, int n, const struct sb_engine_opts *o)
{
    struct run run, *r = &run;
    int opened = 0;
    run_init(r, n, 16);
    int rc = run_open(r, ms, o, &opened);
    for (int i = 0; i < opened && rc == SB_EXIT_OK; i++) {
        struct engine *e = r->engines[i];
        int local = 0, remote = 0, kept = 0;
        /* Jobs not sent yet, a window at a time: none of them needs a call. */
        struct sb_jobrow *row;
        while ((row = next_pending(e))) {
            e->pend_pos++;
            struct job *j = job_new(e, row);
            if (j->row.possible_duplicate)
                sb_warn("job %s: its last submit may have reached the provider; without an id it "
                        "cannot be cancelled there", j->row.id);
            set_error(e, j, "cancelled", 0, NULL, "cancelled before it was submitted");
            set_state(e, j, SB_JOB_CANCELLED);
            release(e, j);
            local++;
            if (e->pend_pos == e->n_pend) {
                write_dirty(e);
                sweep(e);
            }
        }
        for (int k = 0; k < e->n_active; k++) {
            struct job *j = e->active[k];
            enum sb_job_state st = j->row.state;
            if ((st == SB_JOB_RUNNING || st == SB_JOB_SUBMITTING) && j->row.prediction_id) {
                if (!e->api.ops->cancel_url) {
                    kept++;
                    continue;
                }
                if (job_request(e, j, e->api.ops->cancel_url(&e->api, j->row.prediction_id), "{}",
                                cancel_done) == SB_OK)
                    remote++;
            }
        }
        if (kept)
            sb_warn("%s: %d job%s already submitted to %s cannot be cancelled (it has no cancel call); "
                    "the next run downloads %s outputs", e->m->path, kept, SB_S(kept), e->api.ops->name,
                    SB_ONE(kept, "its", "their"));
        sb_info("%s: %d job%s cancelled before submission, %d cancel request%s sent", e->m->path, local,
                SB_S(local), remote, SB_S(remote));
    }
    while (cancel_pending(r, opened) && uv_run(&r->uv, UV_RUN_ONCE))
        ;
    run_shutdown(r, opened);
    int worst = rc;
    for (int i = 0; i < opened; i++) {
        struct engine *e = r->engines[i];
        if (rc == SB_EXIT_OK) {
            flush_sync(e);
            write_results(e);
            flush_sync(e);
            int c[SB_JOB_NSTATES];
            count_states(e, c);
            sb_info("%s: %d cancelled, %d still processing at the provider", e->m->path, c[SB_JOB_CANCELLED],
                    e->not_cancellable);
            if (e->cancel_failed)
                sb_error("%s: %d cancel request%s failed (above): %s as %s; run cancel "
                         "again, or run to finish %s", e->m->path, e->cancel_failed, SB_S(e->cancel_failed),
                         SB_ONE(e->cancel_failed, "that job is", "those jobs are"),
                         SB_ONE(e->cancel_failed, "it was", "they were"), SB_ONE(e->cancel_failed, "it", "them"));
            if (e->fatal && exit_rank(SB_EXIT_FAILED) > exit_rank(worst))
                worst = SB_EXIT_FAILED;
        }
        engine_close(e);
        free(e);
    }
    free(r->engines);
    return worst;
}
