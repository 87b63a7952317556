/*
 * progress.c owns the periodic tick: the progress line on a TTY or a log line
 * every 30 s, results.jsonl every 10 s, the submits' deadlines, a process
 * pause (SIGSTOP, a suspend) left out of every clock, and a look at every job
 * as a safety net.
 */
#include "engine_int.h"

/*
 * The process was stopped (Ctrl-Z, SIGSTOP, a suspended laptop) when the tick
 * comes much later than it should: that time is left out of submit deadlines.
 * It runs before any socket is read after the pause, so an answer that arrived
 * meanwhile is read, not given up on.
 */
static void note_pause(struct run *r, int64_t now)
{
    int64_t every = r->tty ? 250 : 1000, late = now - r->last_tick - every;
    if (r->last_tick && late > 2000) {
        r->paused += late;
        sb_info("the process was paused for %.1fs: answers that came meanwhile are read now; submit deadlines "
                "leave the pause out", (double)late / 1000.0);
    }
    r->last_tick = now;
}

/* Submits with no answer after limits.submit_timeout (pauses left out): given up on, counted as maybe billed. */
static void submit_deadlines(struct engine *e, int64_t now)
{
    for (int i = 0; i < e->n_active; i++) {
        struct job *j = e->active[i];
        if (!j->inflight || j->call.kind != CALL_SUBMIT || !j->sent_mono ||
            now - j->sent_mono - (e->run->paused - j->paused_at_send) <= e->m->limits.submit_timeout_ms)
            continue;
        struct outcome oc;
        memset(&oc, 0, sizeof oc);
        oc.v = V_RETRY;
        oc.kind = SB_EK_NETWORK;
        oc.lost = 1;
        snprintf(oc.msg, sizeof oc.msg, "no answer to the submit within limits.submit_timeout (%llds)",
                 (long long)(e->m->limits.submit_timeout_ms / 1000));
        job_call_dropped(j);
        submit_failed(e, j, &oc, -1);
        if (i < e->n_active && e->active[i] != j)
            i--; /* it left the list */
    }
}

void on_tick(uv_timer_t *t)
{
    struct run *r = sb_container_of(t, struct run, tick);
    int64_t now = mono_ms();
    note_pause(r, now);
    for (int k = 0; k < r->n; k++)
        if (!r->engines[k]->finished)
            submit_deadlines(r->engines[k], now);
    int total = 0, done = 0, ok = 0, failed = 0, running = 0, queued = 0;
    long calls = 0, done_run = 0;
    double spent = 0;
    for (int k = 0; k < r->n; k++) {
        struct engine *e = r->engines[k];
        if (now - e->last_results >= RESULTS_EVERY_MS && write_results(e) == 0)
            e->last_results = now;
        int c[SB_JOB_NSTATES];
        count_states(e, c);
        total += e->m->n_jobs;
        done += c[SB_JOB_SUCCEEDED] + c[SB_JOB_FAILED] + c[SB_JOB_CANCELLED];
        ok += c[SB_JOB_SUCCEEDED];
        failed += c[SB_JOB_FAILED];
        running += c[SB_JOB_UPLOADING] + c[SB_JOB_SUBMITTING] + c[SB_JOB_RUNNING] + c[SB_JOB_DOWNLOADING];
        for (int i = 0; i < e->n_active; i++)
            queued += e->active[i]->queue_position > 0;
        calls += e->calls[0] + e->calls[1] + e->calls[2];
        done_run += e->jobs_done_run;
        spent += e->spent;
    }
    /* A safety net against a missed wake-up: look at every job of every unfinished manifest. */
    for (int k = 0; k < r->n; k++) {
        if (!r->engines[k]->finished) {
            r->engines[k]->scan_all = 1;
            pump(r->engines[k]);
        }
    }
    double el = (double)(now - r->started) / 1000.0;
    double rps = el > 0 ? (double)calls / el : 0;
    char eta[32] = "--", inq[48] = "";
    if (done_run > 0 && el > 0)
        snprintf(eta, sizeof eta, "%.0fs", (double)(total - done) * el / (double)done_run);
    if (queued)
        snprintf(inq, sizeof inq, " (%d queued at the provider)", queued);
    if (r->tty) {
        fprintf(stderr, "\r\033[K%d/%d done, %d succeeded, %d failed, %d running%s, %.1f req/s, ETA %s, $%.2f",
                done, total, ok, failed, running, inq, rps, eta, spent);
        fflush(stderr);
    } else if (now - r->last_log >= 30000) {
        r->last_log = now;
        sb_info("progress: %d/%d done, %d succeeded, %d failed, %d running%s, %.1f req/s, ETA %s, $%.2f",
                done, total, ok, failed, running, inq, rps, eta, spent);
    }
}
