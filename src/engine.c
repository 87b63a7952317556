/*
 * engine.c runs a command's manifests on one loop: it opens each manifest's
 * batch (resume.c), starts the periodic tick and the signal handlers, runs the
 * loop until every batch has finished, then reports each batch and decides the
 * exit code. Stopping (a signal, an auth refusal, a full disk) and the order of
 * shutdown live here too; cancel.c holds `seedbatch cancel`.
 *
 * Each job moves pending -> uploading -> submitting -> running -> downloading
 * -> succeeded | failed. At most `concurrency` jobs are active at once. Every
 * API call (upload, submit, poll) waits for a token of the shared rate limiter;
 * the three kinds take turns, so polls cannot starve submits nor submits polls.
 * Local files are uploaded once per content hash (single flight), and cached
 * in the state with a TTL.
 *
 * Crash safety: a job's submit intent (state submitting) is committed before
 * its submit request is sent. State changes mark their job dirty; at the end of
 * each loop turn the dirty rows are written in one transaction and its COMMIT
 * (the fsync) runs on libuv's threadpool, so the disk never stalls transfers.
 * Changes made while a commit runs join the next one (group commit), and a
 * submit starts only when the commit holding its intent has returned. The
 * prediction id is committed with the first commit after its answer. After a
 * crash, a job with an id is polled, and a job in submitting without one is
 * submitted again, flagged possible_duplicate.
 *
 * The engine's files share engine_int.h: job.c (a job's lifecycle, its state
 * and the wake queue), scheduler.c (what starts next), budget.c (the spend and
 * max_cost), calls.c (what an API answer means), upload.c, predict.c (submits
 * and polls), outputs.c (downloads, outputs made final, results.jsonl),
 * commit.c (the group commit), progress.c (the periodic tick), resume.c
 * (opening a batch: lock, probes, crash recovery, --retry-failed), cancel.c.
 */
#include "engine_int.h"

/* Grace is over: abandon transfers still under way. Their jobs keep their states. */
static void stop_now(uv_timer_t *t)
{
    struct run *r = sb_container_of(t, struct run, grace);
    for (int k = 0; k < r->n; k++) {
        struct engine *e = r->engines[k];
        for (int i = 0; i < e->n_active; i++) {
            struct job *j = e->active[i];
            if (j->inflight)
                job_call_dropped(j);
            for (int d = 0; d < j->n_out && j->dl; d++) {
                if (j->dl[d].running) {
                    sb_download_abort(&j->dl[d].d);
                    sb_download_cleanup(&j->dl[d].d);
                    j->dl[d].running = 0;
                }
            }
        }
        for (struct upload *u = e->uploads_all; u; u = u->all_next) {
            if (u->state == UP_RUNNING) {
                sb_req_cleanup(&u->call.req);
                u->state = UP_IDLE;
            }
        }
        while (e->n_active)
            release(e, e->active[0]);
    }
    for (int k = 0; k < r->n; k++)
        pump(r->engines[k]);
}

/*
 * Stops the run: nothing new starts, transfers under way get GRACE_MS to end,
 * then the state is committed and results written (exit 75). Called for a
 * signal in the loop, for one caught before the loop started, or (signum 0)
 * for a full disk.
 */
void stop_run(struct run *r, int signum)
{
    r->interrupted = signum;
    r->stopping = 1;
    if (signum)
        sb_warn("%s: finishing transfers under way (at most %ds), then saving; run the same command to resume",
                sb_signals_verb(signum), GRACE_MS / 1000);
    uv_timer_start(&r->grace, stop_now, GRACE_MS, 0);
    for (int k = 0; k < r->n; k++) {
        struct engine *e = r->engines[k];
        unsend(e);
        for (int i = 0; i < e->n_active; i++) {
            struct job *j = e->active[i];
            if (!j->inflight && j->want != W_DOWNLOAD && j->want != W_FINISHING)
                release(e, j), i--;
        }
    }
    for (int k = 0; k < r->n; k++)
        pump(r->engines[k]);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct run *r = s->data;
    if (r->interrupted) {
        if (sb_signals_again(r->interrupted, r->signal_ms, signum)) {
            sb_debug("%s again within a second: the same stop", strsignal(signum));
            return;
        }
        sb_signals_exit_now();
    }
    r->signal_ms = sb_signals_now_ms();
    stop_run(r, signum);
}

static int all_finished(const struct run *r)
{
    for (int k = 0; k < r->n; k++)
        if (!r->engines[k]->finished)
            return 0;
    return 1;
}

void finish(struct engine *e)
{
    e->finished = 1;
    uv_timer_stop(&e->wake);
    uv_timer_stop(&e->commit_timer);
    flush_sync(e);
    struct run *r = e->run;
    if (all_finished(r)) {
        uv_timer_stop(&r->tick);
        uv_timer_stop(&r->grace);
        uv_signal_stop(&r->sigint);
        uv_signal_stop(&r->sigterm);
        uv_signal_stop(&r->sighup);
        /* libuv put back the default actions: a stop now must not cut the results short. */
        sb_signals_catch(r->interrupted, r->signal_ms);
    }
}

static void close_cb(uv_handle_t *h)
{
    (void)h;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, close_cb);
}

static int count_repollable(const struct sb_jobrow *r, void *ud)
{
    *(int *)ud += r->in_manifest && sb_jobrow_repollable(r);
    return 0;
}

/* The summary line and the batch's exit code. */
static int engine_report(struct engine *e)
{
    struct sb_manifest *m = e->m;
    write_results(e);
    write_report(e);
    int c[SB_JOB_NSTATES];
    count_states(e, c);
    double el = (double)(mono_ms() - e->run->started) / 1000.0;
    long api = e->calls[CALL_SUBMIT] + e->calls[CALL_POLL];
    char unreached[64] = "", maybe[128];
    if (e->unreached)
        snprintf(unreached, sizeof unreached, ", %ld more that reached no server", e->unreached);
    upper_bound(maybe, sizeof maybe, e->spent, e->flagged_cost, e->flagged);
    sb_info("%s: %d job%s: %d succeeded, %d failed, %d pending, %d running, %d cancelled; %ld image%s written; "
            "%.1fs; spend $%.2f%s, $%.2f of it in this run; API calls: %ld submit%s, %ld poll%s, %ld upload%s (%.2f per job besides uploads)%s; "
            "%ld state commit%s",
            m->path, m->n_jobs, SB_S(m->n_jobs), c[SB_JOB_SUCCEEDED], c[SB_JOB_FAILED], c[SB_JOB_PENDING],
            c[SB_JOB_UPLOADING] + c[SB_JOB_SUBMITTING] + c[SB_JOB_RUNNING] + c[SB_JOB_DOWNLOADING],
            c[SB_JOB_CANCELLED], e->images_written, SB_S(e->images_written), el, e->spent, maybe,
            e->spent - e->spent_before, e->calls[CALL_SUBMIT],
            SB_S(e->calls[CALL_SUBMIT]), e->calls[CALL_POLL], SB_S(e->calls[CALL_POLL]), e->calls[CALL_UPLOAD],
            SB_S(e->calls[CALL_UPLOAD]), e->jobs_done_run ? (double)api / (double)e->jobs_done_run : 0.0, unreached,
            e->commits, SB_S(e->commits));
    int repoll = 0;
    if (c[SB_JOB_FAILED])
        sb_store_each_in_states(e->st, 1u << SB_JOB_FAILED, count_repollable, &repoll);
    if (repoll)
        sb_warn("%s: " SB_REPOLL_HINT, m->path, repoll, SB_REPOLL_HINT_ARGS(repoll));
    int live = 0;
    for (struct job *j = e->live; j; j = j->live_next)
        live++;
    sb_debug("jobs held at the end: %d (%d in work)", live, e->n_active);
    sb_debug("state: %ld commits (their fsync on a worker thread), %.2f ms on average, %.2f ms at most; "
             "%ld job rows written", e->commits, e->commits ? e->commit_ms / (double)e->commits : 0.0,
             e->commit_ms_max, e->rows_written);
    if (e->storage_stop) {
        int left = m->n_jobs - c[SB_JOB_SUCCEEDED] - c[SB_JOB_FAILED] - c[SB_JOB_CANCELLED];
        /* Outputs as large as this run's were, else about 3 MB (a 2048x2048 JPEG). */
        double each = e->images_written ? (double)e->bytes_written / (double)e->images_written : 3e6;
        double per_job = m->n_jobs ? (double)m->images_requested / (double)m->n_jobs : 1;
        sb_error("%s: %s: stopped with %d job%s unfinished, whose outputs need about %.0f MB: free the space, then "
                 "run the same command again; what was paid for is downloaded, nothing is submitted twice",
                 m->path, e->storage_where, left, SB_S(left), (double)left * per_job * each / 1e6 + 0.5);
        return SB_EXIT_TEMPFAIL;
    }
    if (e->fatal) {
        sb_error("%s", e->err);
        return SB_EXIT_FAILED;
    }
    if (e->run->auth_abort)
        return SB_EXIT_AUTH;
    if (e->run->interrupted || e->run->unreachable)
        return SB_EXIT_TEMPFAIL;
    if (e->cost_stop && c[SB_JOB_PENDING] > 0) {
        int counts[SB_JOB_NSTATES];
        long images = 0;
        sb_store_counts(e->st, counts, &images);
        sb_error("%s: stopped by %s $%.2f: spent $%.2f%s; %d job%s left unsubmitted would cost up to $%.2f more "
                 "(%ld image%s at $%.4f); raise max_cost in the manifest, or run with --max-cost USD", m->path,
                 e->run->max_cost >= 0 ? "--max-cost" : "max_cost", budget(e), e->spent, maybe,
                 counts[SB_JOB_PENDING], SB_S(counts[SB_JOB_PENDING]), (double)images * price(e), images,
                 SB_S(images), price(e));
        return SB_EXIT_COST;
    }
    return c[SB_JOB_SUCCEEDED] == m->n_jobs ? SB_EXIT_OK : SB_EXIT_FAILED;
}

/* Ends every transfer of the engine: before the loop (and its handle pool) goes. */
static void engine_drop_requests(struct engine *e)
{
    for (struct job *j = e->live; j; j = j->live_next) {
        sb_req_cleanup(&j->call.req);
        for (int k = 0; j->dl && k < j->n_out; k++)
            sb_download_cleanup(&j->dl[k].d);
    }
    for (struct upload *u = e->uploads_all; u; u = u->all_next)
        sb_req_cleanup(&u->call.req);
}

void engine_close(struct engine *e)
{
    while (e->live)
        job_free(e, e->live);
    for (int i = 0; e->pend && i < e->n_pend; i++)
        sb_jobrow_clear(&e->pend[i]);
    free(e->pend);
    free(e->active);
    free(e->wq);
    sb_results_cache_free(e->res_cache);
    e->res_cache = NULL;
    for (struct upload *u = e->uploads_all, *n; u; u = n) {
        n = u->all_next;
        sb_req_cleanup(&u->call.req);
        free(u->url);
        free(u->waiters);
        free(u);
    }
    sb_map_free(e->uploads, NULL);
    sb_map_free(e->cached_uploads, cached_upload_free);
    sb_map_free(e->retry_repoll, NULL);
    if (e->outdir_fd >= 0)
        close(e->outdir_fd);
    sb_store_close(e->st);
    if (e->lock_fd >= 0)
        close(e->lock_fd);
    sb_api_close(&e->api);
    free(e->state_path);
    free(e->state_real);
}

/*
 * Open files: a job in work holds a connection (libcurl keeps up to two a job
 * in its cache) and, while downloading, an output file. Raises the soft limit
 * to the hard one; if that still gives fewer than about three a job, runs
 * fewer jobs at once rather than failing them on "Too many open files".
 * Returns the most connections libcurl may hold, 0 for no cap, or -1 when
 * the manifests' own files (a state each) would not fit with one job each.
 */
#define FD_RESERVE 48   /* the loop's own, stdio, libcurl's, slack */

#define FD_PER_MANIFEST 8 /* its state, WAL and shared memory, lock, output directory, results */

static long fit_open_files(struct sb_manifest **ms, int n)
{
    long total = 0;
    for (int i = 0; i < n; i++)
        total += ms[i]->limits.concurrency;
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0)
        return 0;
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < lim.rlim_max) {
        struct rlimit up = {lim.rlim_max, lim.rlim_max};
        if (up.rlim_cur == RLIM_INFINITY || up.rlim_cur > (rlim_t)1 << 20)
            up.rlim_cur = (rlim_t)1 << 20;
        if (up.rlim_cur > lim.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0) {
            sb_debug("open files: the limit raised from %ld to %ld", (long)lim.rlim_cur, (long)up.rlim_cur);
            lim.rlim_cur = up.rlim_cur;
        }
    }
    if (lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur > (rlim_t)1 << 30)
        return 0;
    long reserve = FD_RESERVE + (long)FD_PER_MANIFEST * n;
    if (reserve + 3L * n > (long)lim.rlim_cur) {
        sb_error("%d manifests need about %ld open files and this process may have %ld (ulimit -n): "
                 "run them a few at a time, or raise the limit", n, reserve + 3L * n, (long)lim.rlim_cur);
        return -1;
    }
    long avail = (long)lim.rlim_cur - reserve;
    if (avail < 24)
        avail = 24;
    long fit = avail / 3;
    if (total > fit) {
        sb_warn("a concurrency of %ld needs about %ld open files and this process may have %ld "
                "(ulimit -n): running at most %ld jobs at once", total, 3 * total + reserve,
                (long)lim.rlim_cur, fit);
        for (int i = 0; i < n; i++) {
            long c = (long)ms[i]->limits.concurrency * fit / total;
            ms[i]->limits.concurrency = c > 0 ? (int)c : 1;
        }
    }
    return avail * 2 / 3;
}

/*
 * libuv starts its worker threads (4 by default) at the first queued work, each
 * with an 8 MiB stack and, once it allocates, its own reserve of the allocator's.
 * A run queues one commit at a time for each manifest, so that many threads are
 * enough: with one manifest this keeps about 120 MB of address space and three
 * idle threads out of the process (a run under `ulimit -v 200000` failed its
 * commits with "out of memory"). A UV_THREADPOOL_SIZE of the user's is kept.
 */
static void size_thread_pool(int manifests)
{
    const char *set = getenv("UV_THREADPOOL_SIZE");
    if (set && *set)
        return;
    char n[8];
    snprintf(n, sizeof n, "%d", manifests < 1 ? 1 : manifests > 4 ? 4 : manifests);
    setenv("UV_THREADPOOL_SIZE", n, 1);
}

/* The loop and HTTP a run's manifests share. */
void run_init(struct run *r, int n, long max_connects)
{
    size_thread_pool(n);
    memset(r, 0, sizeof *r);
    r->n = n;
    r->engines = sb_calloc((size_t)n, sizeof *r->engines);
    uv_loop_init(&r->uv);
    r->http = sb_loop_new(&r->uv, max_connects);
    r->unknown_words = sb_map_new();
    r->started = r->last_log = r->last_tick = mono_ms();
    r->max_cost = -1;
}

/* Opens each manifest's batch in turn; *opened counts those to close. Returns an exit code. */
int run_open(struct run *r, struct sb_manifest **ms, const struct sb_engine_opts *o, int *opened)
{
    int rc = SB_EXIT_OK;
    for (int i = 0; i < r->n && rc == SB_EXIT_OK; i++) {
        struct engine *e = sb_calloc(1, sizeof *e);
        e->m = ms[i];
        e->o = o;
        r->engines[i] = e;
        *opened = i + 1;
        rc = engine_open(r, e);
    }
    return rc;
}

/* Shutdown: transfers, then handles, then the loop itself (which must close cleanly). */
void run_shutdown(struct run *r, int opened)
{
    for (int i = 0; i < opened; i++) {
        engine_drop_requests(r->engines[i]);
        sb_debug("%s: scheduler: %ld calls queued at their due time, %ld by a look at every job",
                 r->engines[i]->m->path, r->engines[i]->queued_on_time, r->engines[i]->queued_by_scan);
    }
    struct sb_loop_counts lc;
    sb_loop_counts(r->http, &lc);
    sb_debug("connections: %ld opened, %ld woke while idle", lc.sockets, lc.idle_wakeups);
    sb_debug("requests: %ld, %ld of them with the URL handed to libcurl parsed", lc.requests, lc.urls_parsed);
    sb_loop_free(r->http);
    sb_map_free(r->unknown_words, NULL);
    r->unknown_words = NULL;
    uv_walk(&r->uv, walk_close, NULL);
    while (uv_run(&r->uv, UV_RUN_DEFAULT))
        ;
    if (uv_loop_close(&r->uv) != 0)
        sb_error("internal: the event loop did not close cleanly");
}

/* Worse outcomes win: interrupted, then auth, usage, max_cost, failures. */
int exit_rank(int rc)
{
    switch (rc) {
    case SB_EXIT_TEMPFAIL: return 6;
    case SB_EXIT_AUTH: return 5;
    case SB_EXIT_USAGE: return 4;
    case SB_EXIT_COST: return 3;
    case SB_EXIT_FAILED: return 2;
    default: return 0;
    }
}

/* The strictest positive request rate among the manifests of one provider (0 if all are unlimited). */
static double provider_rate(struct sb_manifest **ms, int n, enum sb_provider p)
{
    double rate = 0;
    for (int i = 0; i < n; i++) {
        double r = ms[i]->limits.requests_per_second;
        if (ms[i]->provider == p && r > 0 && (rate == 0 || r < rate))
            rate = r;
    }
    return rate;
}

int sb_engine_run(struct sb_manifest **ms, int n, const struct sb_engine_opts *o)
{
    struct run run, *r = &run;
    int rc = SB_EXIT_OK, opened = 0;

    /* Each manifest needs its own state: two sharing one would fight over it. */
    for (int i = 0; i < n && rc == SB_EXIT_OK; i++) {
        char *a = o->state_path ? sb_strdup(o->state_path) : sb_store_default_path(ms[i]->output_dir);
        for (int k = 0; k < i; k++) {
            char *b = sb_store_default_path(ms[k]->output_dir);
            if (strcmp(a, b) == 0) {
                sb_error(SHARED_STATE, ms[k]->path, ms[i]->path, a);
                rc = SB_EXIT_USAGE;
            }
            free(b);
        }
        free(a);
    }
    long conn_cap = rc == SB_EXIT_OK ? fit_open_files(ms, n) : 0;
    if (conn_cap < 0) {
        rc = SB_EXIT_USAGE;
        conn_cap = 0;
    }
    long conns = 8;
    for (int i = 0; i < n; i++)
        conns += (long)ms[i]->limits.concurrency * 2;
    if (conn_cap > 0 && conns > conn_cap)
        conns = conn_cap;
    run_init(r, n, conns);
    r->max_cost = o->max_cost;
    if (conn_cap > 0)
        sb_loop_cap_connections(r->http, conn_cap);
    for (int p = 0; p < SB_NPROVIDERS; p++)
        sb_rl_init(&r->rl[p], provider_rate(ms, n, (enum sb_provider)p), r->started);
    srand((unsigned)(sb_now_ms() ^ getpid()));
    /* --quiet draws nothing: the line is information, and cron's mail is for trouble only. */
    r->tty = (o->progress == SB_PROGRESS_ALWAYS || (o->progress == SB_PROGRESS_AUTO && isatty(2))) &&
             sb_log_enabled(SB_LOG_INFO);

    if (rc == SB_EXIT_OK)
        rc = run_open(r, ms, o, &opened);
    if (rc == SB_EXIT_OK) {
        uv_timer_init(&r->uv, &r->tick);
        uv_timer_init(&r->uv, &r->grace);
        uv_signal_init(&r->uv, &r->sigint);
        uv_signal_init(&r->uv, &r->sigterm);
        uv_signal_init(&r->uv, &r->sighup);
        r->sigint.data = r->sigterm.data = r->sighup.data = r;
        /*
         * SIGHUP (the terminal closed) stops the run as SIGTERM does, unless
         * the run was started ignoring it (nohup); SIGINT likewise (a script's
         * background job). main's sb_signals_catch, at the start of the run,
         * unblocked them: a mask inherited with them blocked would leave the
         * run deaf to its stop.
         */
        static const int stops[] = {SIGTERM, SIGINT, SIGHUP};
        uv_signal_t *watchers[] = {&r->sigterm, &r->sigint, &r->sighup};
        for (int i = 0; i < 3; i++)
            if (sb_signals_stop_on(stops[i]))
                uv_signal_start(watchers[i], on_signal, stops[i]);
        /* A stop asked for while the state was synced, before the watchers above. */
        int early = sb_signals_caught();
        if (early) {
            r->signal_ms = sb_signals_caught_ms();
            stop_run(r, early);
        }
        progress_start(r);
        uv_timer_start(&r->tick, on_tick, 250, r->tty ? 250 : 1000);
        for (int i = 0; i < n; i++)
            pump(r->engines[i]);
        while (!all_finished(r) && uv_run(&r->uv, UV_RUN_ONCE))
            ;
        for (int i = 0; i < n; i++)
            if (!r->engines[i]->finished)
                finish(r->engines[i]);
        progress_end(r);
    }

    run_shutdown(r, opened);

    int worst = rc;
    for (int i = 0; i < opened; i++) {
        struct engine *e = r->engines[i];
        if (rc == SB_EXIT_OK) {
            flush_sync(e); /* writes made by callbacks that ran while the loop drained */
            remove_replaced_outputs(e);
            int erc = engine_report(e);
            if (exit_rank(erc) > exit_rank(worst))
                worst = erc;
        }
        engine_close(e);
        free(e);
    }
    free(r->engines);
    if (!r->interrupted && sb_signals_caught())
        sb_warn("%s after the run had ended: its results were written first", sb_signals_verb(sb_signals_caught()));
    return worst;
}
