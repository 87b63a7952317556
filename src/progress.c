/*
 * progress.c owns the periodic tick: the progress line on a TTY or a log line
 * every 30 s, results.jsonl every 10 s, the submits' deadlines, a process
 * pause (SIGSTOP, a suspend) left out of every clock, and a look at every job
 * as a safety net.
 */
#include "engine_int.h"
#include "sb_progressline.h"

#include <math.h>
#include <sys/ioctl.h>

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

/* The terminal's width, re-read on SIGWINCH: 80 when it cannot be read. */
static void read_width(struct run *r)
{
    struct winsize ws;
    r->cols = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
}

static void on_winch(uv_signal_t *s, int signum)
{
    (void)signum;
    struct run *r = s->data;
    read_width(r);
    if (r->pline_len) {
        /* The line drawn for the old width may now wrap: clear what it took, draw it anew. */
        fputs("\r\033[J", stderr);
        r->pline_len = 0;
    }
}

/* Around each log line: the progress line is cleared before it and drawn again after it. */
static void around_log(void *ud, int after)
{
    struct run *r = ud;
    if (!r->pline_len)
        return;
    fputs(after ? "" : "\r\033[K", stderr);
    if (after)
        fputs(r->pline, stderr);
    fflush(stderr);
}

void progress_start(struct run *r)
{
    if (!r->tty)
        return;
    read_width(r);
    uv_signal_init(&r->uv, &r->sigwinch);
    r->sigwinch.data = r;
    uv_signal_start(&r->sigwinch, on_winch, SIGWINCH);
    sb_log_around(around_log, r);
}

void progress_end(struct run *r)
{
    if (!r->tty)
        return;
    sb_log_around(NULL, NULL);
    uv_signal_stop(&r->sigwinch);
    if (r->pline_len)
        fputs("\r\033[K", stderr);
    r->pline_len = 0;
    fflush(stderr);
}

/* What is not normal about the run now, for the line: "" when nothing. */
static void condition(struct run *r, int64_t now, int transfers, char *out, size_t len)
{
    out[0] = '\0';
    if (r->stopping) {
        snprintf(out, len, "stopping: finishing %d transfer%s", transfers, SB_S(transfers));
        return;
    }
    for (int p = 0; p < SB_NPROVIDERS; p++) {
        int64_t left = r->rl[p].paused_until - now;
        if (r->unanswered_since[p] && left > 0) {
            snprintf(out, len, "API unreachable, retrying in %llds", (long long)((left + 999) / 1000));
            return;
        }
        if (r->unanswered_since[p] && now - r->unanswered_since[p] >= 5000) {
            snprintf(out, len, "API not answering for %llds", (long long)((now - r->unanswered_since[p]) / 1000));
            return;
        }
        if (left > 0) {
            snprintf(out, len, "paused %llds: rate limited", (long long)((left + 999) / 1000));
            return;
        }
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
    int total = 0, done = 0, ok = 0, failed = 0, running = 0, queued = 0, transfers = 0;
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
        for (int i = 0; i < e->n_active; i++) {
            struct job *j = e->active[i];
            /* Running: the provider has it (an id) or its submit is on the way; not a job waiting to be sent. */
            int sent = j->row.prediction_id || (j->inflight && j->call.kind == CALL_SUBMIT);
            running += sent && j->row.state != SB_JOB_SUCCEEDED && j->row.state != SB_JOB_FAILED &&
                       j->row.state != SB_JOB_CANCELLED;
            queued += j->queue_position > 0;
            transfers += j->inflight;
            for (int d = 0; d < j->n_out && j->dl; d++)
                transfers += j->dl[d].running;
        }
        for (struct upload *u = e->uploads_all; u; u = u->all_next)
            transfers += u->state == UP_RUNNING;
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
    /*
     * The finishing rate, smoothed over about 30 s (an exponential average of each
     * tick's), so that the ETA neither jumps with each answer nor trusts the first few.
     */
    double dt = (double)(now - r->rate_at) / 1000.0;
    if (r->rate_at && dt > 0) {
        double inst = (double)(done_run - r->rate_done) / dt;
        double a = 1.0 - exp(-dt / 30.0);
        r->rate = r->rate_n ? r->rate + a * (inst - r->rate) : inst;
        r->rate_n++;
    }
    r->rate_at = now;
    r->rate_done = done_run;
    double el = (double)(now - r->started) / 1000.0;
    struct sb_progress_in in = {total, done, ok, failed, running, queued, el > 0 ? (double)calls / el : 0, -1,
                                spent, NULL};
    /* Known once a few jobs finished and some seconds passed; else "--". */
    if (done_run >= 3 && el >= 5 && r->rate > 1e-9)
        in.eta_s = (double)(total - done) / r->rate;
    char cond[96];
    condition(r, now, transfers, cond, sizeof cond);
    in.condition = cond;
    if (r->tty) {
        r->pline_len = sb_progress_line(&in, r->cols, r->pline, sizeof r->pline);
        fprintf(stderr, "\r\033[K%s", r->pline);
        fflush(stderr);
    } else if (now - r->last_log >= 30000) {
        r->last_log = now;
        char eta[32] = "--";
        if (in.eta_s >= 0)
            sb_progress_duration(in.eta_s, eta, sizeof eta);
        struct sb_log_fields f = {.event = "progress"};
        char inq[48] = "";
        if (queued)
            snprintf(inq, sizeof inq, " (%d queued at the provider)", queued);
        sb_log_event(SB_LOG_INFO, &f, "progress: %d/%d done, %d succeeded, %d failed, %d running%s, %.1f req/s, "
                     "ETA %s, $%.2f%s%s", done, total, ok, failed, running, inq, in.rps, eta, spent,
                     cond[0] ? "; " : "", cond);
    }
}
