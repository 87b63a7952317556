/*
 * engine.c takes a manifest's jobs from pending to every output on disk.
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
 */
#include "sb_engine.h"
#include "sb_jw.h"
#include "sb_download.h"
#include "sb_log.h"
#include "sb_loop.h"
#include "sb_provider.h"
#include "sb_ratelimit.h"
#include "sb_results.h"
#include "sb_signals.h"
#include "sb_store.h"
#include "sb_plan.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_API_BODY (4u << 20)
#define MAX_OUTPUT_BYTES (100u << 20)
#define POLL_CAP_MS 15000
#define EARLY_404_MS 30000
#define GRACE_MS 5000
#define RESULTS_EVERY_MS 10000
#define COMMIT_GAP_MS 5        /* between the starts of two commits, unless ... */
#define COMMIT_GROUP 256       /* ... this many rows wait */
#define BACKOFF_BASE_MS 1000
#define BACKOFF_CAP_MS 60000
#define SHARED_STATE "%s and %s would share the state %s: give them different output_dir"
/* No call answered for this long, when none of the run has been yet: the run stops. */
#define NO_ANSWER_FIRST_MS 20000
/*
 * A job calls again before its back-off delay only right after a state change
 * (the status call said finished: the result is fetched at once), and at most
 * this many times in a row; then even such an answer waits its back-off.
 */
#define MAX_FAST_CALLS 3

enum call_kind { CALL_UPLOAD, CALL_SUBMIT, CALL_POLL, CALL_NKINDS };

/* What an active job waits for next. */
enum want { W_NONE, W_UPLOADS, W_SUBMIT, W_POLL, W_DOWNLOAD, W_FINISHING };

struct engine;
struct job;
struct upload;

struct call {
    struct sb_req req;
    enum call_kind kind;
    struct engine *e;
    struct job *job;
    struct upload *up;
};

struct dlslot {
    struct sb_download d;
    struct job *job;
    int k;                  /* output index from 0 */
    int running;
    int received;           /* every byte is in its .part file, awaiting finalization */
};

/*
 * A job in work. Only jobs in work have one (at most about the concurrency):
 * the others are rows of the state, read in windows when their turn comes.
 */
struct job {
    struct sb_jobspec *spec;  /* owned; NULL when the state's copy is unusable */
    struct sb_jobrow row;
    struct job *live_prev, *live_next; /* every job the engine holds */
    int retired;            /* done with: freed once nothing refers to it */
    struct job *grave_next;
    enum want want;
    int active;             /* holds a concurrency slot */
    int queued;             /* in a dispatch queue */
    int inflight;           /* an API call is under way */
    int64_t due;            /* the next action waits until then (monotonic ms) */
    int wq_pos;             /* 1 + its place in the engine's wake queue, 0 when not in it */
    int tries;              /* attempts of the current call */
    char **urls;            /* reference image URLs */
    int uploads_left;
    int64_t poll_every;
    int64_t submitted_mono; /* when the prediction id arrived (monotonic ms) */
    int polled;             /* a poll of this run was answered: job_timeout may end it now */
    int fetch_result;       /* the next poll reads the result (providers with a result call) */
    int fast;               /* calls in a row made ahead of the back-off (after a state change) */
    int reuploaded;         /* its uploads were made again after a submit refused stale URLs */
    int64_t dl_fail_since;  /* its first failed download (monotonic ms), 0 when none failed */
    int repoll;             /* a download failed: poll for fresh URLs once the others end */
    int dl_rounds;          /* polls for fresh URLs so far (their back-off) */
    int retrying;           /* --retry-failed polls its prediction again: resubmitted if the provider lost it */
    int64_t sent_mono;      /* when its submit went out (monotonic ms), 0 when none is */
    int64_t paused_at_send; /* the run's paused time then */
    char last_status[48];   /* the provider's last status word for it, for the timeout's message */
    int last_ready;         /* ... and that word said finished, with no output listed */
    int queue_position;     /* place in the provider's queue, -1 when unknown */
    double reserved;        /* cost held against max_cost */
    struct call call;
    struct job *qnext;
    struct job *send_next;  /* submits waiting for the commit of their intent */
    int dirty;              /* its row awaits the next commit */
    enum sb_job_state saved; /* the state its row has in the database */
    enum sb_job_state dirty_from;
    struct job *dirty_next;
    struct dlslot *dl;
    int n_out;
    char **outputs;         /* final file names, NULL until written */
    struct job *fin_next;   /* in a finalization batch */
    int fin_failed;
    int fin_errno;          /* why making an output final failed (ENOSPC, ...), or 0 */
    char fin_error[256];
};

struct upload {
    char sha[65];
    const struct sb_localfile *file;
    enum { UP_IDLE, UP_RUNNING, UP_DONE, UP_FAILED } state;
    char *url;
    int64_t made_at;        /* when the provider gave the URL (ms since the epoch) */
    int earlier;            /* the URL is from an earlier run's cache */
    struct job **waiters;
    int n_waiters;
    int tries;
    int queued;
    int64_t due;
    struct call call;
    struct upload *qnext;
    struct upload *all_next;
    int dirty;              /* its URL (or, with none, that it is forgotten) awaits the next commit */
    struct upload *dirty_next;
};

/* An upload an earlier run made, as the state's cache keeps it. */
struct cached_upload {
    char *url;
    int64_t made_at;        /* ms since the epoch */
};

/* What the manifests of one invocation share: the loop, HTTP, signals, progress, budgets. */
struct run {
    uv_loop_t uv;
    struct sb_loop *http;
    struct sb_ratelimit rl[2];   /* one request budget per provider */
    int proven[2];               /* an API call to that provider has succeeded: the key works */
    int reached[2];              /* an API call to that provider got an answer in this run */
    int64_t unanswered_since[2]; /* the first of the calls in a row that got no answer; 0: none */
    int unanswered_calls[2];
    uv_timer_t tick, grace;
    uv_signal_t sigint, sigterm, sighup;
    int stopping, auth_abort, unreachable;
    int interrupted;               /* the signal that stopped the run, or 0 */
    int tty;
    int64_t started, last_log;
    int64_t last_tick;             /* when the tick last ran (monotonic ms) */
    int64_t paused;                /* time the process was stopped (SIGSTOP, a suspend), as the tick saw it */
    struct sb_map *unknown_words;  /* "provider status" words not in a table, logged once a run */
    struct engine **engines;
    int n;
    double max_cost;               /* --max-cost: the run's manifests together; < 0 when not given */
};

/* A charge learned in this loop turn, written with the next commit. */
struct pcharge {
    struct sb_charge c;
    struct job *job;         /* its job, held until written (a prediction's charge), or NULL */
    char *job_id, *fingerprint, *prediction_id;
    struct pcharge *next;
};

/* One manifest's batch: its jobs, state database, provider and counters. */
struct engine {
    struct run *run;
    struct sb_manifest *m;
    const struct sb_engine_opts *o;
    struct sb_store *st;
    struct sb_api api;
    struct job *live;                    /* every struct job of this engine */
    struct job *grave;                   /* retired jobs awaiting their last write */
    struct sb_jobrow *pend;              /* a window of pending rows, in manifest order */
    int n_pend, pend_pos;
    int64_t pend_after;                  /* the last position read */
    int pend_done;                       /* no pending row left after pend_after */
    int count[SB_JOB_NSTATES];           /* jobs per state, as in the state database */
    struct job **active;
    /*
     * Jobs waiting for their due time, earliest first (a binary heap on due): the
     * scheduler looks only at those whose time has come, not at every job in work
     * each time a call ends. scan_all asks for one look at every job instead (at
     * start, and from the periodic tick as a safety net).
     */
    struct job **wq;
    int n_wq, cap_wq;
    int scan_all;
    long queued_on_time, queued_by_scan; /* calls queued from the heap / by a look at all */
    int n_active, cap_active;
    int slots_used;
    struct job *q_submit, *q_submit_tail, *q_poll, *q_poll_tail;
    struct upload *q_up, *q_up_tail;
    struct upload *uploads_all;
    struct sb_map *uploads;
    struct sb_map *cached_uploads;        /* sha256 -> struct cached_upload from earlier runs, within the TTL */
    struct sb_map *retry_repoll;          /* ids --retry-failed polls again rather than submitting */
    struct job *send_head, *send_tail;   /* submits for the next commit */
    struct job *sending;                 /* submits whose commit is running */
    struct job *dirty_head;
    struct upload *up_dirty_head;
    uv_work_t commit_work;
    int commit_inflight, commit_rc;
    uint64_t commit_started;       /* uv_now() when the last commit began */
    struct sb_results_cache *res_cache;
    int64_t res_lo, res_hi;        /* seqs of the rows written since results.jsonl was */
    uv_timer_t commit_timer;       /* a commit held back to make the group bigger */
    int n_dirty;
    double commit_last_ms;
    char commit_err[SB_ERRLEN];
    int rr;
    uv_timer_t wake;
    int cost_stop, fatal, finished;
    int storage_stop;                    /* no room for outputs or the state: the errno, or 0 */
    char storage_where[512];
    int64_t bytes_written;               /* of the outputs made final in this run */
    struct job *finalize_pending;        /* received outputs for the next worker trip */
    struct job *finalizing;              /* ... and those on the worker now */
    /*
     * The state's spend from its charge ledger (every run, job and version), what
     * its flagged charges would add if they were billed, and what the jobs in work
     * hold against max_cost. Charges learned in this loop turn wait in `charges`
     * for the commit that writes them with the job rows that learned them.
     */
    double spent, flagged_cost, reserved;
    double spent_before;                 /* ... of the spend, what earlier runs had recorded */
    long flagged;                        /* flagged charges */
    struct pcharge *charges, **charges_tail;
    double ema_ms;
    int samples;
    long calls[CALL_NKINDS];
    long unreached;                /* calls that ended before going out: no server reached */
    long images_written, jobs_done_run;
    int not_cancellable;     /* cancel: requests already being processed */
    int cancel_failed;       /* cancel: calls that failed (no answer, or an error) */
    long commits;            /* state commits, and their cost */
    long rows_written;       /* job rows written into them */
    double commit_ms, commit_ms_max;
    int64_t last_results;
    int outdir_fd;
    int replaced_removed;          /* outputs of changed jobs' earlier versions removed */
    int folds_case;                /* the output directory takes SKU-1 and sku-1 for one name */
    char *state_real;              /* the state's path with its directory resolved (realpath) */
    int dirsync_unsupported;       /* its filesystem cannot fsync a directory (EINVAL): 1 found, 2 told */
    int lock_fd;
    char *state_path;
    char err[SB_ERRLEN];
};

static int64_t mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000);
}

static double price(const struct engine *e)
{
    return e->m->price_per_image;
}

/*
 * What the batch may have cost so far, and holds for the jobs in work: the spend
 * known, every submit that may have been billed unseen (its answer lost, a 5xx, a
 * 2xx without an id) counted as billed, and the worst case of the jobs in work.
 */
static double committed(const struct engine *e)
{
    return e->spent + e->flagged_cost + e->reserved;
}

/* What the run's manifests together may have cost: --max-cost bounds that. */
static double run_committed(const struct run *r)
{
    double sum = 0;
    for (int i = 0; i < r->n; i++)
        if (r->engines[i] && r->engines[i]->st)
            sum += committed(r->engines[i]);
    return sum;
}

/* Whether need more would pass the manifest's max_cost, or the run's --max-cost. */
static int over_budget(const struct engine *e, double need)
{
    const struct run *r = e->run;
    if (r->max_cost >= 0)
        return run_committed(r) + need > r->max_cost + 1e-9;
    return e->m->limits.max_cost >= 0 && committed(e) + need > e->m->limits.max_cost + 1e-9;
}

/* Whether jobs in work hold part of the budget that binds (with --max-cost, the run's). */
static int budget_held(const struct engine *e)
{
    const struct run *r = e->run;
    if (r->max_cost < 0)
        return e->reserved > 1e-9;
    for (int i = 0; i < r->n; i++)
        if (r->engines[i] && r->engines[i]->reserved > 1e-9)
            return 1;
    return 0;
}

/* The cap that binds: --max-cost for the run, else the manifest's max_cost. */
static double budget(const struct engine *e)
{
    return e->run->max_cost >= 0 ? e->run->max_cost : e->m->limits.max_cost;
}

/*
 * Calls are counted as they start. One that ended before it went out (the connection
 * refused, the name unresolved, the connect timed out: libcurl never got to send it)
 * reached no server and cost nothing: the summary counts it apart.
 */
static void count_unsent(struct engine *e, const struct sb_req *r, enum call_kind kind)
{
    if (r->attempts == 0) {
        e->calls[kind]--;
        e->unreached++;
    }
}

/* ---- persistence ---- */

static void stop_run(struct run *r, int signum);

/*
 * The output directory or the state has no room (ENOSPC, EDQUOT) or turned
 * read-only: nothing more is submitted, transfers under way end or are left, the
 * state is kept, and the run exits 75. No job fails for it: a prediction paid for
 * keeps its committed state, and the next run (once there is room) downloads it.
 */
static void storage_full(struct engine *e, const char *where, int err)
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
static void save(struct engine *e, struct job *j)
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
static int write_dirty(struct engine *e)
{
    int rc = SB_OK;
    if (!e->dirty_head && !e->up_dirty_head && !e->charges)
        return SB_OK;
    if (sb_store_begin(e->st) != SB_OK)
        rc = SB_EIO;
    rc = write_charges(e, rc);
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

/*
 * Every job state change: updates the row and marks it for the next commit.
 * running -> downloading is written too: it carries the prediction's charge.
 */
static void set_state(struct engine *e, struct job *j, enum sb_job_state to)
{
    j->row.state = to;
    if (to == SB_JOB_SUCCEEDED || to == SB_JOB_FAILED || to == SB_JOB_CANCELLED)
        j->row.finished_at = sb_now_ms();
    save(e, j);
}

/*
 * Records a charge of the job's current version for the next commit: a prediction
 * (pred) that made images, or (flagged) a submit that reached the provider with no
 * id seen, counted as billed for the most images it asked for.
 */
static void charge(struct engine *e, struct job *j, const char *pred, int images, int flagged, const char *note)
{
    struct pcharge *p = sb_calloc(1, sizeof *p);
    p->job_id = sb_strdup(j->row.id);
    p->fingerprint = sb_strdup(j->row.fingerprint);
    p->prediction_id = pred ? sb_strdup(pred) : NULL;
    p->c = (struct sb_charge){sb_now_ms(), p->job_id, p->fingerprint, p->prediction_id, images, price(e),
                              images * price(e), flagged, note};
    if (!e->charges_tail)
        e->charges_tail = &e->charges;
    *e->charges_tail = p;
    e->charges_tail = &p->next;
    if (flagged) {
        e->flagged++;
        e->flagged_cost += p->c.cost;
    } else {
        e->spent += p->c.cost;
    }
    save(e, j);
}

/*
 * The job's prediction is done with n outputs: it is charged (once, whatever
 * becomes of the downloads), and what was held for it against max_cost is let go.
 */
static void charge_outputs(struct engine *e, struct job *j, int n)
{
    if (j->row.charged)
        return;
    j->row.charged = 1;
    j->row.cost += n * price(e);
    j->row.total_cost += n * price(e);
    charge(e, j, j->row.prediction_id, n, 0, "outputs made");
    e->reserved -= j->reserved;
    j->reserved = 0;
}

/* Sets the job's error; kind, code and msg may be the job's own current ones. */
static void set_error(struct engine *e, struct job *j, const char *kind, int http, const char *code, const char *msg)
{
    char *k = sb_strdup(kind);
    char *c = code && *code ? sb_strdup(code) : NULL;
    char *m = sb_redact(&e->api, sb_strdup(msg ? msg : ""));
    sb_freep(&j->row.error_kind);
    sb_freep(&j->row.error_code);
    sb_freep(&j->row.error_message);
    j->row.error_kind = k;
    j->row.error_http = http;
    j->row.error_code = c;
    j->row.error_message = m;
}

static void clear_error(struct job *j)
{
    sb_freep(&j->row.error_kind);
    sb_freep(&j->row.error_code);
    sb_freep(&j->row.error_message);
    j->row.error_http = 0;
}

/* A JSON array of strings, as the state keeps output names and URLs. */
static char *str_array(char *const *v, int n)
{
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    sb_jw_str_array(&b, v, n);
    return b.data;
}

static void pump(struct engine *e);

static void release(struct engine *e, struct job *j);

/* Starts (or drops, when the run is failing) submits whose intent is committed. */
static void send_submits(struct engine *e, struct job *list)
{
    while (list) {
        struct job *j = list;
        list = j->send_next;
        j->send_next = NULL;
        if (e->run->auth_abort && !e->fatal) {
            /* Known not sent: nothing can have been created, so back to pending. */
            sb_req_cleanup(&j->call.req);
            j->inflight = 0;
            set_state(e, j, SB_JOB_PENDING);
            release(e, j);
        } else if (e->fatal || sb_req_start(&j->call.req, j->call.req.done) != SB_OK) {
            /* Not sent: the intent stays committed and a later run resubmits, flagged. */
            sb_req_cleanup(&j->call.req);
            j->inflight = 0;
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

static void job_failed(struct engine *e, struct job *j, const char *kind, int http, const char *code, const char *msg);

/* Jobs whose outputs the worker made durable: succeeded (committed with the next commit). */
static void finalized(struct engine *e, struct job *list)
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
        j->want = W_NONE;
        e->jobs_done_run++;
        release(e, j);
        sb_debug("job %s: %d output%s written", j->row.id, j->n_out, SB_S(j->n_out));
    }
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
    pump(e);
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

/*
 * Group commit: writes the dirty rows and hands the commit to the threadpool,
 * unless one is running (then the next one picks them up). Submits waiting
 * for their intent go out when that commit returns.
 */
static void flush(struct engine *e);

static void on_commit_timer(uv_timer_t *t)
{
    flush(sb_container_of(t, struct engine, commit_timer));
}

static void flush(struct engine *e)
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
static void flush_sync(struct engine *e)
{
    if (e->commit_inflight)
        return;
    write_dirty(e);
    if (sb_store_in_transaction(e->st) && sb_store_commit(e->st, e->err, sizeof e->err) != SB_OK)
        e->fatal = 1;
}

/* ---- slots and finishing ---- */

/* The job needs nothing more of the engine: it goes once its row is written and no call refers to it. */
static void retire(struct engine *e, struct job *j)
{
    if (j->retired)
        return;
    j->retired = 1;
    j->grave_next = e->grave;
    e->grave = j;
}

/* ---- the wake queue: a binary heap of jobs on their due time ---- */

static void wq_put(struct engine *e, int i, struct job *j)
{
    e->wq[i] = j;
    j->wq_pos = i + 1;
}

static void wq_up(struct engine *e, int i)
{
    struct job *j = e->wq[i];
    while (i > 0 && e->wq[(i - 1) / 2]->due > j->due) {
        wq_put(e, i, e->wq[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    wq_put(e, i, j);
}

static void wq_down(struct engine *e, int i)
{
    struct job *j = e->wq[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= e->n_wq)
            break;
        if (c + 1 < e->n_wq && e->wq[c + 1]->due < e->wq[c]->due)
            c++;
        if (e->wq[c]->due >= j->due)
            break;
        wq_put(e, i, e->wq[c]);
        i = c;
    }
    wq_put(e, i, j);
}

static void wq_remove(struct engine *e, struct job *j)
{
    if (!j->wq_pos)
        return;
    int i = j->wq_pos - 1;
    j->wq_pos = 0;
    struct job *last = e->wq[--e->n_wq];
    if (i == e->n_wq)
        return;
    wq_put(e, i, last);
    wq_up(e, i);
    wq_down(e, last->wq_pos - 1);
}

/* The job's next action waits until due: the scheduler looks at it then. */
static void set_due(struct engine *e, struct job *j, int64_t due)
{
    wq_remove(e, j);
    j->due = due;
    if (e->n_wq == e->cap_wq) {
        e->cap_wq = e->cap_wq ? e->cap_wq * 2 : 64;
        e->wq = sb_realloc(e->wq, (size_t)e->cap_wq * sizeof *e->wq);
    }
    wq_put(e, e->n_wq++, j);
    wq_up(e, e->n_wq - 1);
}

static struct job *wq_pop_due(struct engine *e, int64_t now)
{
    if (e->n_wq == 0 || e->wq[0]->due > now)
        return NULL;
    struct job *j = e->wq[0];
    wq_remove(e, j);
    return j;
}

static void job_free(struct engine *e, struct job *j)
{
    wq_remove(e, j);
    if (j->live_prev)
        j->live_prev->live_next = j->live_next;
    else
        e->live = j->live_next;
    if (j->live_next)
        j->live_next->live_prev = j->live_prev;
    sb_req_cleanup(&j->call.req);
    for (int k = 0; j->dl && k < j->n_out; k++) {
        sb_download_cleanup(&j->dl[k].d);
        free(j->outputs[k]);
    }
    free(j->dl);
    free(j->outputs);
    for (int k = 0; j->urls && j->spec && k < j->spec->n_images; k++)
        free(j->urls[k]);
    free(j->urls);
    if (j->spec) {
        /* An upload may still list it as waiting. */
        for (int k = 0; k < j->spec->n_images; k++) {
            const struct sb_image_ref *ref = &j->spec->images[k];
            struct upload *u = ref->file ? sb_map_get(e->uploads, ref->file->sha256) : NULL;
            for (int w = 0; u && w < u->n_waiters; w++)
                if (u->waiters[w] == j)
                    u->waiters[w--] = u->waiters[--u->n_waiters];
        }
        sb_jobspec_clear(j->spec);
        free(j->spec);
    }
    sb_jobrow_clear(&j->row);
    free(j);
}

/* Frees retired jobs whose rows are written and that no transfer or list refers to. */
static void sweep(struct engine *e)
{
    struct job **pp = &e->grave;
    while (*pp) {
        struct job *j = *pp;
        int busy = j->active || j->dirty || j->inflight || j->queued;
        for (int k = 0; j->dl && k < j->n_out && !busy; k++)
            busy = j->dl[k].running || j->dl[k].received;
        if (busy) {
            pp = &j->grave_next;
            continue;
        }
        *pp = j->grave_next;
        job_free(e, j);
    }
}

/* A job for a row of the state (taken over), in work from now on. */
static struct job *job_new(struct engine *e, struct sb_jobrow *row)
{
    struct job *j = sb_calloc(1, sizeof *j);
    j->row = *row;
    j->saved = row->state;
    memset(row, 0, sizeof *row);
    j->call.e = e;
    j->queue_position = -1;
    j->spec = sb_calloc(1, sizeof *j->spec);
    if (sb_jobspec_from_json(e->m, j->row.id, j->row.spec, j->spec) != SB_OK) {
        free(j->spec);
        j->spec = NULL;
    }
    j->live_next = e->live;
    if (e->live)
        e->live->live_prev = j;
    e->live = j;
    return j;
}

static void release(struct engine *e, struct job *j)
{
    retire(e, j);
    if (!j->active)
        return;
    j->active = 0;
    e->slots_used--;
    e->reserved -= j->reserved;
    j->reserved = 0;
    for (int i = 0; i < e->n_active; i++) {
        if (e->active[i] == j) {
            e->active[i] = e->active[--e->n_active];
            break;
        }
    }
}

static void hold(struct engine *e, struct job *j)
{
    if (j->active)
        return;
    j->active = 1;
    e->slots_used++;
    if (e->n_active == e->cap_active) {
        e->cap_active = e->cap_active ? e->cap_active * 2 : 64;
        e->active = sb_realloc(e->active, (size_t)e->cap_active * sizeof *e->active);
    }
    e->active[e->n_active++] = j;
}

static void job_failed(struct engine *e, struct job *j, const char *kind, int http, const char *code, const char *msg)
{
    set_error(e, j, kind, http, code, msg);
    set_state(e, j, SB_JOB_FAILED);
    sb_warn("job %s failed (%s): %s", j->row.id, j->row.error_kind, j->row.error_message);
    j->want = W_NONE;
    e->jobs_done_run++;
    release(e, j);
}

/* ---- queues ---- */

static void enqueue_job(struct engine *e, struct job *j)
{
    if (j->queued)
        return;
    j->queued = 1;
    j->qnext = NULL;
    struct job **head = j->want == W_SUBMIT ? &e->q_submit : &e->q_poll;
    struct job **tail = j->want == W_SUBMIT ? &e->q_submit_tail : &e->q_poll_tail;
    if (*tail)
        (*tail)->qnext = j;
    else
        *head = j;
    *tail = j;
}

static struct job *dequeue_job(struct job **head, struct job **tail)
{
    struct job *j = *head;
    if (j) {
        *head = j->qnext;
        if (!*head)
            *tail = NULL;
        j->queued = 0;
    }
    return j;
}

static void enqueue_upload(struct engine *e, struct upload *u)
{
    if (u->queued)
        return;
    u->queued = 1;
    u->qnext = NULL;
    if (e->q_up_tail)
        e->q_up_tail->qnext = u;
    else
        e->q_up = u;
    e->q_up_tail = u;
}

/* Full-jitter exponential backoff, or the server's Retry-After. */
static int64_t backoff(int tries, int64_t retry_after)
{
    if (retry_after >= 0)
        return retry_after;
    int64_t cap = BACKOFF_BASE_MS << (tries > 6 ? 6 : tries - 1 < 0 ? 0 : tries - 1);
    if (cap > BACKOFF_CAP_MS)
        cap = BACKOFF_CAP_MS;
    return (int64_t)((double)rand() / RAND_MAX * (double)cap);
}

/* ---- classifying answers ---- */

enum verdict { V_OK, V_RETRY, V_FAIL, V_ABORT };

struct outcome {
    enum verdict v;
    const char *kind;
    int http;
    char code[64];
    char msg[512];
    int lost;              /* the request went out and its answer is unknown */
    int unreached;         /* it did not: no connection, or none that took the request */
    int not_ready;         /* the provider said the result is not ready yet (RunComfy 400005) */
};

/* The answer parsed as JSON, once for all its readers (NULL when it is not an object). */
static const cJSON *answer(struct sb_req *r)
{
    if (!r->json_read) {
        r->json = sb_json_parse(r->body.data, r->body.len);
        r->json_read = 1;
    }
    return r->json;
}

static int64_t no_answer(struct engine *e, const struct outcome *oc);

/*
 * Whether an error answer's body still carries the provider's verdict on the
 * prediction ({"code":500,"data":{"status":"failed","error":...}}, as Atlas
 * answers a failed prediction): then the outcome is that failure, not retried.
 */
static int final_verdict(struct engine *e, struct sb_req *r, struct outcome *oc)
{
    struct sb_poll_result pr;
    char err[64];
    if (!answer(r) || e->api.ops->parse_poll(answer(r), &pr, err, sizeof err) != SB_OK)
        return 0;
    int final = pr.state == SB_PRED_FAILED || pr.state == SB_PRED_CANCELLED;
    if (final) {
        oc->v = V_FAIL;
        oc->kind = pr.kind ? pr.kind : SB_EK_REJECTED;
        snprintf(oc->msg, sizeof oc->msg, "HTTP %ld: %s", r->status,
                 pr.error ? pr.error : "the provider cancelled the prediction");
        if (pr.error_code)
            sb_strlcpy(oc->code, pr.error_code, sizeof oc->code);
    }
    sb_poll_result_clear(&pr);
    return final;
}

/*
 * What a server said passes the redactor before anything shows or keeps it: an
 * answer may echo the request, Authorization header and all.
 */
static void redact_outcome(struct engine *e, struct outcome *oc)
{
    char *t = sb_redact(&e->api, sb_strdup(oc->msg));
    sb_strlcpy(oc->msg, t, sizeof oc->msg);
    free(t);
    t = sb_redact(&e->api, sb_strdup(oc->code));
    sb_strlcpy(oc->code, t, sizeof oc->code);
    free(t);
}

static void classify_answer(struct engine *e, struct sb_req *r, CURLcode rc, struct outcome *oc);

/* Reads a call's outcome (see classify_answer), its texts redacted. */
static void classify(struct engine *e, struct sb_req *r, CURLcode rc, struct outcome *oc)
{
    classify_answer(e, r, rc, oc);
    redact_outcome(e, oc);
}

static void classify_answer(struct engine *e, struct sb_req *r, CURLcode rc, struct outcome *oc)
{
    memset(oc, 0, sizeof *oc);
    if (rc != CURLE_OK) {
        oc->v = V_RETRY;
        oc->kind = SB_EK_NETWORK;
        oc->lost = r->sent;
        snprintf(oc->msg, sizeof oc->msg, "%s%s%s", curl_easy_strerror(rc), r->errbuf[0] ? ": " : "", r->errbuf);
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
            rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT)
            oc->v = V_FAIL;
        if (rc == CURLE_FILESIZE_EXCEEDED)
            oc->kind = SB_EK_SERVER;
        oc->unreached = oc->v == V_RETRY && !r->sent;
        redact_outcome(e, oc);
        /* Sent and never answered: still an attempt (it may have been taken). A kept-alive
         * connection the server had closed says nothing of the API: no pause for it. */
        if (oc->v == V_RETRY && r->sent && r->status == 0 && !r->resend_stopped)
            no_answer(e, oc);
        return;
    }
    int p = e->m->provider;
    e->run->reached[p] = 1;
    e->run->unanswered_since[p] = 0;
    e->run->unanswered_calls[p] = 0;
    long s = r->status;
    char emsg[300] = "", ecode[64] = "";
    int hint = 0;
    int carried = e->api.ops->error_info(answer(r), emsg, sizeof emsg, ecode, sizeof ecode,
                                         &hint) == SB_ERR;
    oc->http = (int)s;
    sb_strlcpy(oc->code, ecode, sizeof oc->code);
    if (carried && hint && (s < 300 || s == 400 || s == 404))
        s = hint; /* the provider's code says more than the status (or is the only error sign) */
    else if (s >= 200 && s < 300 && carried)
        s = 500;
    if (s >= 200 && s < 300) {
        oc->v = V_OK;
        e->run->proven[e->m->provider] = 1;
        return;
    }
    snprintf(oc->msg, sizeof oc->msg, "HTTP %ld%s%s", r->status, emsg[0] ? ": " : "", emsg);
    if (s == 401 || s == 403 || s == 451) {
        oc->v = V_ABORT;
        oc->kind = SB_EK_AUTH;
    } else if (s == 402) {
        oc->v = V_ABORT;
        oc->kind = SB_EK_QUOTA;
    } else if (s == 429) {
        oc->v = V_RETRY;
        oc->kind = SB_EK_RATE_LIMITED;
        sb_rl_on_429(&e->run->rl[e->m->provider], mono_ms(), r->retry_after_ms);
    } else if (s == SB_HTTP_NOT_READY) {
        oc->v = V_RETRY;
        oc->kind = SB_EK_SERVER;
        oc->not_ready = 1;
    } else if (s >= 500 && final_verdict(e, r, oc)) {
        /* The body names a final status: a decision of the provider's, not a fault to retry. */
    } else if (s >= 500 || s < 200 || (s >= 300 && s < 400) || s == 408) {
        oc->v = V_RETRY;
        oc->kind = SB_EK_SERVER;
        /*
         * An API's 500, or a gateway's answer (502, 504; a CDN's 520 and 524),
         * says something failed or did not answer in time, not that the request
         * was never taken: a submit answered so may have been accepted, as when
         * its answer is lost on the way. (503 and 429 say it was not.)
         */
        oc->lost = s == 500 || s == 502 || s == 504 || s == 520 || s == 524;
    } else {
        oc->v = V_FAIL;
        oc->kind = SB_EK_INVALID_INPUT;
    }
}

/* 401/402/403: stop everything that would send, keep the state, exit 3. */
static void unsend(struct engine *e);

static void auth_abort(struct engine *e, const struct outcome *oc)
{
    const struct sb_provider_ops *ops = e->api.ops;
    if (!e->run->auth_abort && oc->http == ops->wrong_path_status && strcmp(e->api.base, ops->default_base) != 0)
        /* A base URL set by hand is the likelier cause (one without its /api/v1, say). */
        sb_error("the API refused the key (%s): stopping; the state is kept. %s is set to %s, and a wrong "
                 "path there is answered %d too: check it, then the key or balance, and run again",
                 oc->msg, ops->base_env, e->api.base, ops->wrong_path_status);
    else if (!e->run->auth_abort)
        sb_error("the API refused the key (%s): stopping; the state is kept, fix the key or balance "
                 "and run again", oc->msg);
    e->run->auth_abort = 1;
    e->run->stopping = 1;
    unsend(e); /* what sent nothing billable goes back to pending */
}

/*
 * A call got no answer: no server took it, or one took it and never answered
 * (a hung API, a dropped connection). Until a call is answered, the provider's
 * calls go one at a time, each after a pause of about half the time gone since
 * the first unanswered one (1 to 30 s), so that an API that takes requests and
 * drops them is sent a few, not a stream; when none has been answered for
 * limits.unreachable_timeout (at most NO_ANSWER_FIRST_MS if none was in this
 * run), the run stops and exits 75, every job as it was, rather than failing
 * them one by one while the network or the API is down. Returns the pause, or
 * -1 when the run stops.
 */
static int64_t no_answer(struct engine *e, const struct outcome *oc)
{
    struct run *run = e->run;
    int p = e->m->provider;
    int64_t now = mono_ms();
    if (!run->unanswered_since[p])
        run->unanswered_since[p] = now;
    run->unanswered_calls[p]++;
    run->proven[p] = 0;
    int64_t limit = e->m->limits.unreachable_ms;
    if (!run->reached[p] && limit > NO_ANSWER_FIRST_MS)
        limit = NO_ANSWER_FIRST_MS;
    if (run->stopping)
        return -1;
    if (now - run->unanswered_since[p] >= limit && run->unanswered_calls[p] >= 3) {
        sb_error("cannot reach the API at %s: %s (no answer for %llds): stopping; nothing is lost, "
                 "run again to resume", e->api.base, oc->msg,
                 (long long)((now - run->unanswered_since[p]) / 1000));
        run->unreachable = 1;
        run->stopping = 1;
        return -1;
    }
    int64_t gap = (now - run->unanswered_since[p]) / 2;
    gap = gap < 1000 ? 1000 : gap > 30000 ? 30000 : gap;
    int64_t pause = gap / 2 + (int64_t)((double)rand() / RAND_MAX * (double)(gap / 2));
    if (run->rl[p].paused_until < now + pause)
        run->rl[p].paused_until = now + pause;
    return pause;
}

/* ---- uploads ---- */

static void upload_done(struct sb_req *r, CURLcode rc);

static void upload_settled(struct engine *e, struct upload *u, const struct outcome *oc);

/* An upload's file, read by libcurl through these from the descriptor opened for it. */
struct upload_src {
    int fd;
    curl_off_t off;
};

static size_t upload_read(char *buf, size_t size, size_t n, void *arg)
{
    struct upload_src *s = arg;
    ssize_t got = pread(s->fd, buf, size * n, (off_t)s->off);
    if (got < 0)
        return CURL_READFUNC_ABORT;
    s->off += got;
    return (size_t)got;
}

static int upload_seek(void *arg, curl_off_t offset, int origin)
{
    struct upload_src *s = arg;
    if (origin != SEEK_SET || offset < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    s->off = offset;
    return CURL_SEEKFUNC_OK;
}

static void upload_src_free(void *arg)
{
    struct upload_src *s = arg;
    close(s->fd);
    free(s);
}

static void start_upload(struct engine *e, struct upload *u)
{
    struct sb_http_opts o = {10000, 120000, 1000, 30, MAX_API_BODY, 0};
    /*
     * The file as it was checked, or none: one removed or rewritten since fails
     * its jobs at once (invalid_input), rather than as a network error after
     * every attempt, or with other bytes under the checked file's hash.
     */
    char why[256];
    int fd = sb_localfile_open_same(u->file, why, sizeof why);
    if (fd < 0) {
        struct outcome oc;
        memset(&oc, 0, sizeof oc);
        oc.v = V_FAIL;
        oc.kind = SB_EK_INVALID_INPUT;
        snprintf(oc.msg, sizeof oc.msg, "%s", why);
        u->state = UP_FAILED;
        upload_settled(e, u, &oc);
        return;
    }
    char *url = e->api.ops->upload_url(&e->api);
    struct call *c = &u->call;
    c->kind = CALL_UPLOAD;
    c->e = e;
    c->up = u;
    c->job = NULL;
    if (sb_req_init(&c->req, e->run->http, url, &o) != SB_OK) {
        close(fd);
        free(url);
        return;
    }
    free(url);
    sb_req_header(&c->req, e->api.auth_header);
    c->req.mime = curl_mime_init(c->req.easy);
    curl_mimepart *part = curl_mime_addpart(c->req.mime);
    curl_mime_name(part, "file");
    struct upload_src *src = sb_malloc(sizeof *src);
    src->fd = fd;
    src->off = 0;
    /* Streamed from disk; the descriptor is closed with the part. */
    curl_mime_data_cb(part, (curl_off_t)u->file->stamp.size, upload_read, upload_seek, upload_src_free, src);
    const char *base = strrchr(u->file->path, '/');
    curl_mime_filename(part, base ? base + 1 : u->file->path);
    static const char *types[] = {"application/octet-stream", "image/jpeg", "image/png", "image/webp",
                                  "image/bmp", "image/tiff", "image/gif"};
    curl_mime_type(part, types[u->file->info.format]);
    u->state = UP_RUNNING;
    u->tries++;
    e->calls[CALL_UPLOAD]++;
    if (sb_req_start(&c->req, upload_done) != SB_OK)
        u->state = UP_IDLE;
}

/* Gives every job waiting for this upload its URL, or its failure. */
static void upload_settled(struct engine *e, struct upload *u, const struct outcome *oc)
{
    for (int i = 0; i < u->n_waiters; i++) {
        struct job *j = u->waiters[i];
        if (j->row.state != SB_JOB_UPLOADING)
            continue;
        if (u->state == UP_FAILED) {
            char msg[700];
            snprintf(msg, sizeof msg, "upload of %s failed: %s", u->file->path, oc->msg);
            job_failed(e, j, oc->kind, oc->http, oc->code[0] ? oc->code : NULL, msg);
            continue;
        }
        for (int k = 0; k < j->spec->n_images; k++) {
            const struct sb_image_ref *ref = &j->spec->images[k];
            if (!j->urls[k] && ref->file && strcmp(ref->file->sha256, u->sha) == 0) {
                j->urls[k] = sb_strdup(u->url);
                j->uploads_left--;
            }
        }
        if (j->uploads_left == 0) {
            j->want = W_SUBMIT;
            set_due(e, j, 0);
        }
    }
    free(u->waiters);
    u->waiters = NULL;
    u->n_waiters = 0;
}

/* Marks the upload's cache row (its URL, or that it is forgotten) for the next commit. */
static void upload_dirty(struct engine *e, struct upload *u)
{
    if (u->dirty)
        return;
    u->dirty = 1;
    u->dirty_next = e->up_dirty_head;
    e->up_dirty_head = u;
}

/* The upload's URL is stale (past media.upload_ttl, or refused): the next job that needs it uploads it again. */
static void forget_upload(struct engine *e, struct upload *u)
{
    sb_freep(&u->url);
    u->state = UP_IDLE;
    u->tries = 0;
    u->earlier = 0;
    upload_dirty(e, u);
}

static void upload_done(struct sb_req *r, CURLcode rc)
{
    struct call *c = sb_container_of(r, struct call, req);
    struct engine *e = c->e;
    struct upload *u = c->up;
    struct outcome oc;
    count_unsent(e, r, CALL_UPLOAD);
    classify(e, r, rc, &oc);
    if (oc.v == V_OK) {
        char *url = NULL;
        if (e->api.ops->parse_upload(answer(r), &url, oc.msg, sizeof oc.msg) == SB_OK) {
            u->url = url;
            u->state = UP_DONE;
            u->made_at = sb_now_ms();
            u->earlier = 0;
            upload_dirty(e, u);
            sb_debug("uploaded %s", u->file->path);
            upload_settled(e, u, &oc);
            sb_req_cleanup(r);
            pump(e);
            return;
        }
        oc.v = V_RETRY;
        oc.kind = SB_EK_SERVER;
    }
    sb_req_cleanup(r);
    if (oc.v == V_ABORT) {
        auth_abort(e, &oc);
        u->state = UP_IDLE;
    } else if (oc.v == V_RETRY && oc.unreached) {
        int64_t wait = no_answer(e, &oc); /* -1: the run stops */
        u->tries--; /* it reached no server: not an attempt */
        u->state = UP_IDLE;
        u->due = mono_ms() + (wait > 0 ? wait : 0);
        sb_debug("upload of %s: %s; trying again", u->file->path, oc.msg);
    } else if (oc.v == V_RETRY && u->tries < e->m->limits.max_attempts && !e->run->stopping) {
        u->state = UP_IDLE;
        u->due = mono_ms() + backoff(u->tries, r->retry_after_ms);
        sb_debug("upload of %s: %s; retrying", u->file->path, oc.msg);
    } else if (e->run->stopping) {
        u->state = UP_IDLE;
    } else {
        u->state = UP_FAILED;
        upload_settled(e, u, &oc);
    }
    pump(e);
}

/* ---- submitting ---- */

static void submit_done(struct sb_req *r, CURLcode rc);
static void submit_failed(struct engine *e, struct job *j, struct outcome *o, int64_t ra);
static void resolve_images(struct engine *e, struct job *j);
static int reupload_stale(struct engine *e, struct job *j, const struct outcome *oc);

/* Commits the intent now; the request goes out after this turn's commit. */
static void begin_submit(struct engine *e, struct job *j)
{
    /*
     * No whole-transfer timeout and no low-speed abort in libcurl: a submit waits
     * for its first byte up to limits.submit_timeout, which the tick judges with the
     * process's pauses left out (a libcurl timer firing after a SIGCONT would abort
     * it before the answer waiting in the socket is read, and a retry pays twice).
     */
    struct sb_http_opts o = {10000, 0, 0, 0, MAX_API_BODY, 0};
    char *url = e->api.ops->submit_url(&e->api, e->m->model);
    char *body = e->api.ops->submit_body(e->m, j->spec, j->urls);
    struct call *c = &j->call;
    c->kind = CALL_SUBMIT;
    c->e = e;
    c->job = j;
    if (sb_req_init(&c->req, e->run->http, url, &o) != SB_OK) {
        free(url);
        free(body);
        return;
    }
    free(url);
    sb_req_header(&c->req, e->api.auth_header);
    /*
     * On a reused connection that dies before any answer byte, libcurl 7.88
     * sends the request again by itself (Curl_retry_request; the opt-out
     * CURLOPT_FORBID_RETRY_ON_REUSE only exists from 8.16): the first may have
     * been billed. send_once stops that resend: the call ends as lost, counted
     * as possibly billed, and any further send waits for the budget's word.
     */
    c->req.send_once = 1;
    sb_req_json(&c->req, body);
    c->req.done = submit_done;
    j->tries++;
    j->row.attempts++;
    j->inflight = 1;
    set_state(e, j, SB_JOB_SUBMITTING);
    j->send_next = NULL;
    if (e->send_tail)
        e->send_tail->send_next = j;
    else
        e->send_head = j;
    e->send_tail = j;
}

static int64_t first_poll_delay(const struct engine *e)
{
    int64_t d = e->m->limits.poll_interval_ms;
    if (e->samples > 0 && e->ema_ms > d)
        d = (int64_t)e->ema_ms;
    return d;
}

/* A job's API call has ended: the job is no longer in flight; the answer is classified. */
static struct job *job_call_ended(struct sb_req *r, CURLcode rc, struct outcome *oc)
{
    struct call *c = sb_container_of(r, struct call, req);
    c->job->inflight = 0;
    c->job->sent_mono = 0;
    classify(c->e, r, rc, oc);
    return c->job;
}

/*
 * Submits of the job that reached the provider and may have made a billed
 * prediction whose id was never seen: the job is flagged possible_duplicate,
 * and each is a flagged charge, counted as billed against max_cost.
 */
static void uncertain_submits(struct engine *e, struct job *j, int n, const char *why)
{
    j->row.possible_duplicate = 1;
    j->row.uncertain_submits += n;
    for (int i = 0; i < n; i++)
        charge(e, j, NULL, j->spec ? j->spec->images_requested : j->row.images_requested, 1, why);
}

static void submit_done(struct sb_req *r, CURLcode rc)
{
    struct outcome oc;
    struct job *j = job_call_ended(r, rc, &oc);
    struct engine *e = j->call.e;
    count_unsent(e, r, CALL_SUBMIT);
    if (r->attempts > 1) {
        /* libcurl sent it again after a connection died: the first may have been accepted. */
        e->calls[CALL_SUBMIT] += r->attempts - 1;
        sb_warn("job %s: the submit was sent %d times (a connection died before answering); "
                "flagged possible_duplicate", j->row.id, r->attempts);
        uncertain_submits(e, j, r->attempts - 1, "sent again after a connection died: the first may have been taken");
    }
    /*
     * A 2xx says the provider took the submit: one whose id cannot be read (no id, a
     * body cut short) may have made a billed prediction that no poll can find. It is
     * never sent again by this run: only --retry-failed submits it again.
     */
    int accepted = r->status >= 200 && r->status < 300 && (oc.v == V_OK || rc != CURLE_OK);
    if (accepted) {
        char *id = NULL;
        if (oc.v == V_OK && e->api.ops->parse_submit(answer(r), &id, oc.msg, sizeof oc.msg) == SB_OK) {
            free(j->row.prediction_id);
            j->row.prediction_id = id;
            j->row.charged = 0;
            j->row.submitted_at = sb_now_ms();
            j->submitted_mono = mono_ms();
            j->tries = 0;
            clear_error(j);
            set_state(e, j, SB_JOB_RUNNING);
            j->want = W_POLL;
            j->poll_every = e->m->limits.poll_interval_ms;
            set_due(e, j, mono_ms() + first_poll_delay(e));
            /* Once the typical processing time is known, the first look goes straight to the result. */
            j->fetch_result = e->api.ops->result_url && e->samples > 0;
            sb_req_cleanup(r);
            pump(e);
            return;
        }
        char msg[sizeof oc.msg + 256];
        snprintf(msg, sizeof msg, "the provider accepted the submit (HTTP %ld) but its answer had no id (%s): it "
                 "may have been billed; check the provider's history (--retry-failed submits it again and may "
                 "pay twice)", r->status, oc.msg[0] ? oc.msg : "unreadable");
        uncertain_submits(e, j, 1, "accepted with no prediction id in the answer");
        sb_req_cleanup(r);
        job_failed(e, j, SB_EK_SERVER, (int)r->status, NULL, msg);
        pump(e);
        return;
    }
    int64_t ra = r->retry_after_ms;
    sb_req_cleanup(r);
    submit_failed(e, j, &oc, ra);
}

/* A submit that got no id: retried, waited for, or failed, as its outcome says. */
static void submit_failed(struct engine *e, struct job *j, struct outcome *o, int64_t ra)
{
    struct outcome oc = *o;
    if (oc.v == V_RETRY && oc.lost) {
        /* Sent, and no answer says whether it was taken. */
        uncertain_submits(e, j, 1, "the answer to the submit was lost");
        sb_warn("job %s: the submit's answer was lost (%s): it may have been billed; flagged possible_duplicate "
                "and counted against max_cost", j->row.id, oc.msg);
    }
    if (oc.v == V_ABORT) {
        /* Refused: nothing was created. The job waits in pending for the next run. */
        auth_abort(e, &oc);
        set_state(e, j, SB_JOB_PENDING);
        release(e, j);
    } else if (oc.v == V_RETRY && oc.unreached) {
        int64_t wait = no_answer(e, &oc);
        j->tries--; /* it reached no server: not an attempt */
        if (j->row.attempts > 0)
            j->row.attempts--;
        if (wait >= 0) {
            sb_debug("job %s: submit: %s; trying again", j->row.id, oc.msg);
            j->want = W_SUBMIT;
            set_due(e, j, mono_ms() + wait);
        } else {
            set_state(e, j, SB_JOB_PENDING); /* nothing was sent */
            release(e, j);
        }
    } else if (oc.v == V_RETRY && j->tries < e->m->limits.max_attempts) {
        sb_debug("job %s: submit: %s; retrying", j->row.id, oc.msg);
        if (e->run->stopping) {
            release(e, j); /* stays submitting: the next run resubmits it, flagged */
        } else {
            j->want = W_SUBMIT;
            set_due(e, j, mono_ms() + backoff(j->tries, ra));
        }
    } else if (oc.v == V_FAIL && !e->run->stopping && reupload_stale(e, j, &oc)) {
        /* uploading again, then submitted once more */
    } else {
        job_failed(e, j, oc.kind, oc.http, oc.code[0] ? oc.code : NULL, oc.msg);
    }
    pump(e);
}

/* ---- polling ---- */

static void poll_done(struct sb_req *r, CURLcode rc);

/* Sends a short API request for a job (a poll, a result, a cancel); url is taken over. */
static int job_request(struct engine *e, struct job *j, char *url, const char *post, sb_req_done_fn done)
{
    struct sb_http_opts o = {10000, 30000, 100, 30, MAX_API_BODY, 0};
    struct call *c = &j->call;
    c->kind = CALL_POLL;
    c->e = e;
    c->job = j;
    int ok = sb_req_init(&c->req, e->run->http, url, &o) == SB_OK;
    free(url);
    if (!ok)
        return SB_ENOMEM;
    sb_req_header(&c->req, e->api.auth_header);
    if (post)
        sb_req_json(&c->req, sb_strdup(post));
    j->inflight = 1;
    if (sb_req_start(&c->req, done) != SB_OK) {
        j->inflight = 0;
        sb_req_cleanup(&c->req);
        return SB_ERR;
    }
    return SB_OK;
}

static void start_poll(struct engine *e, struct job *j)
{
    char *url = j->fetch_result ? e->api.ops->result_url(&e->api, j->row.prediction_id)
                                : e->api.ops->poll_url(&e->api, j->row.prediction_id);
    j->tries++;
    e->calls[CALL_POLL]++;
    job_request(e, j, url, NULL, poll_done);
}

static void start_downloads(struct engine *e, struct job *j, char *const *urls, int n);
static void start_downloads_kept(struct engine *e, struct job *j);

/* The prediction is still running, or its answer brought nothing new: the next look waits its back-off. */
static void keep_polling(struct engine *e, struct job *j, int64_t now)
{
    j->fast = 0;
    set_due(e, j, now + j->poll_every);
    j->poll_every = (int64_t)((double)j->poll_every * 1.5);
    if (j->poll_every > POLL_CAP_MS)
        j->poll_every = POLL_CAP_MS;
}

/* A status word the provider's table does not know: read as running, and said once a run. */
static void unknown_status(struct engine *e, struct job *j, const char *word)
{
    char key[96];
    snprintf(key, sizeof key, "%s %s", e->api.ops->name, word);
    for (char *c = key; *c; c++)
        *c = (char)tolower((unsigned char)*c); /* words are read case-insensitively: said once in any case */
    if (sb_map_get(e->run->unknown_words, key))
        return;
    sb_map_put(e->run->unknown_words, key, (void *)1);
    char *w = sb_redact(&e->api, sb_strdup(word));
    sb_warn("job %s: %s answered the status \"%s\", which seedbatch does not know: read as still running "
            "(job_timeout bounds it); said once a run", j->row.id, e->api.ops->name, w);
    free(w);
}

/*
 * --retry-failed polled a prediction again to download its outputs, and the
 * provider no longer has it: only now is the job submitted (and paid for) again.
 */
static void resubmit_gone(struct engine *e, struct job *j)
{
    sb_warn("job %s: the provider no longer has its prediction %s: it has no outputs to give, so the job is "
            "submitted again", j->row.id, j->row.prediction_id);
    sb_freep(&j->row.prediction_id);
    sb_freep(&j->row.output_urls);
    j->row.submitted_at = 0;
    j->submitted_mono = 0;
    j->polled = j->fetch_result = j->retrying = 0;
    j->tries = 0;
    set_state(e, j, SB_JOB_PENDING);
    resolve_images(e, j);
}

/* A poll or result answer that reads: what the prediction's state means for the job. */
static void poll_read(struct engine *e, struct job *j, struct sb_poll_result *pr, int64_t now)
{
    int was_result = j->fetch_result;
    sb_strlcpy(j->last_status, pr->status, sizeof j->last_status);
    j->last_ready = pr->state == SB_PRED_READY;
    if (pr->unknown_status)
        unknown_status(e, j, pr->status);
    if (pr->state == SB_PRED_RUNNING) {
        j->fetch_result = 0;
        j->queue_position = pr->queue_position;
        keep_polling(e, j, now);
    } else if (pr->state == SB_PRED_READY) {
        /*
         * Finished, and no outputs listed. After the status call's "completed" the
         * result is fetched at once; the result call answering so (or a provider
         * without one) says nothing new: asked again after the back-off.
         */
        j->queue_position = -1;
        if (e->api.ops->result_url && !was_result && j->fast < MAX_FAST_CALLS) {
            j->fetch_result = 1;
            j->fast++;
            set_due(e, j, 0);
        } else {
            j->fetch_result = e->api.ops->result_url != NULL;
            keep_polling(e, j, now);
        }
    } else if (pr->state == SB_PRED_CANCELLED) {
        set_error(e, j, "cancelled", 0, NULL, "the request was cancelled at the provider");
        set_state(e, j, SB_JOB_CANCELLED);
        j->want = W_NONE;
        e->jobs_done_run++;
        release(e, j);
    } else if (pr->state == SB_PRED_FAILED) {
        job_failed(e, j, pr->kind ? pr->kind : SB_EK_REJECTED, 0, pr->error_code, pr->error);
    } else {
        if (pr->withheld)
            sb_warn("job %s: %d output%s withheld by the provider's content filter (has_nsfw_contents); "
                    "the other %d %s downloaded", j->row.id, pr->withheld, SB_S(pr->withheld), pr->n_outputs,
                    SB_ONE(pr->n_outputs, "is", "are"));
        if (pr->skipped)
            sb_warn("job %s: %d output entr%s of the answer %s no http(s) URL: passed over", j->row.id,
                    pr->skipped, SB_ONE(pr->skipped, "y", "ies"), SB_ONE(pr->skipped, "is", "are"));
        double sample = pr->predict_time >= 0 ? pr->predict_time * 1000.0 : (double)(now - j->submitted_mono);
        e->ema_ms = e->samples ? 0.8 * e->ema_ms + 0.2 * sample : sample;
        e->samples++;
        j->row.predict_time = pr->predict_time;
        free(j->row.output_urls);
        j->row.output_urls = str_array(pr->outputs, pr->n_outputs);
        set_state(e, j, SB_JOB_DOWNLOADING);
        charge_outputs(e, j, pr->n_outputs);
        j->want = W_DOWNLOAD;
        set_due(e, j, 0);
        start_downloads(e, j, pr->outputs, pr->n_outputs);
    }
}

static void poll_done(struct sb_req *r, CURLcode rc)
{
    struct outcome oc;
    struct job *j = job_call_ended(r, rc, &oc);
    struct engine *e = j->call.e;
    count_unsent(e, r, CALL_POLL);
    int64_t now = mono_ms();
    if (oc.v != V_RETRY || !oc.unreached)
        j->polled = 1;
    /*
     * Not ready yet: a prediction created moments ago may not be visible (400/404),
     * and RunComfy answers a result asked for too early 400 with error_code 400005
     * (at any age). Both mean still running.
     */
    if (oc.not_ready || (oc.v == V_FAIL && (r->status == 404 || r->status == 400) && j->submitted_mono &&
                         now - j->submitted_mono < EARLY_404_MS)) {
        j->tries = 0;
        keep_polling(e, j, now);
        sb_req_cleanup(r);
        pump(e);
        return;
    }
    if (oc.v == V_OK) {
        struct sb_poll_result pr;
        if (e->api.ops->parse_poll(answer(r), &pr, oc.msg, sizeof oc.msg) == SB_OK) {
            j->tries = 0;
            poll_read(e, j, &pr, now);
            sb_poll_result_clear(&pr);
            sb_req_cleanup(r);
            pump(e);
            return;
        }
        oc.v = V_RETRY;
        oc.kind = SB_EK_SERVER;
    }
    int64_t ra = r->retry_after_ms;
    sb_req_cleanup(r);
    j->fast = 0;
    if (oc.v == V_ABORT) {
        auth_abort(e, &oc);
    } else if (oc.v == V_RETRY && oc.unreached) {
        int64_t wait = no_answer(e, &oc); /* -1: the run stops, and the next one polls it */
        j->tries--; /* it reached no server: not an attempt */
        set_due(e, j, now + (wait > 0 ? wait : 0));
    } else if (oc.v == V_RETRY && j->tries < e->m->limits.max_attempts) {
        set_due(e, j, now + backoff(j->tries, ra));
    } else if (oc.v == V_FAIL && (r->status == 404 || r->status == 400 || atoi(oc.code) == 404001)) {
        if (j->retrying && !e->run->stopping)
            resubmit_gone(e, j);
        else
            job_failed(e, j, SB_EK_SERVER, oc.http, oc.code, SB_GONE_MSG);
    } else {
        job_failed(e, j, oc.kind, oc.http, oc.code[0] ? oc.code : NULL, oc.msg);
    }
    pump(e);
}

/* ---- downloading ---- */

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
                j->want = W_FINISHING;
                set_error(e, j, SB_EK_SERVER, (int)d->http_status, NULL, msg);
            }
        } else if (j->want == W_DOWNLOAD) {
            j->want = W_FINISHING; /* the others still running finish first */
            set_error(e, j, SB_EK_SERVER, (int)d->http_status, NULL, d->error);
        }
        sb_download_cleanup(d);
    }
    for (int k = 0; k < j->n_out; k++) {
        if (j->dl[k].running) {
            pump(e);
            return;
        }
    }
    int complete = 1;
    for (int k = 0; k < j->n_out; k++)
        complete &= j->outputs[k] != NULL || j->dl[k].received;
    if (j->want == W_FINISHING) {
        downloads_failed(e, j);
    } else if (complete) {
        j->want = W_FINISHING;
        j->fin_failed = 0;
        j->fin_next = e->finalize_pending;
        e->finalize_pending = j;
    } else if (j->want == W_DOWNLOAD && e->run->stopping) {
        release(e, j); /* its state stays what was committed: outputs not written are fetched again */
    } else if (j->want == W_DOWNLOAD && j->repoll) {
        j->repoll = 0;
        j->want = W_POLL;
        j->fetch_result = e->api.ops->result_url != NULL;
        set_due(e, j, mono_ms() + 1000 + backoff(++j->dl_rounds, -1));
    } else if (j->want == W_DOWNLOAD) {
        set_due(e, j, j->due); /* a retry waits for the others to end: look again */
    }
    pump(e);
}

/* Starts the downloads of the outputs not yet written, from the output URLs the poll gave. */
static void start_downloads(struct engine *e, struct job *j, char *const *urls, int n)
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
    for (int k = 0; k < n && k < j->n_out; k++) {
        if (j->outputs[k] || j->dl[k].running || j->dl[k].received)
            continue;
        struct dlslot *s = &j->dl[k];
        s->job = j;
        s->k = k;
        s->d.fd = -1;
        char stem[200];
        snprintf(stem, sizeof stem, "%s_%d", j->row.id, k + 1);
        s->running = 1;
        if (!urls[k] ||
            sb_download_start(&s->d, e->run->http, urls[k], e->outdir_fd, e->m->output_dir, stem,
                              MAX_OUTPUT_BYTES, download_done) != SB_OK) {
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
            j->want = W_FINISHING;
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
static void start_downloads_kept(struct engine *e, struct job *j)
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

/* ---- activation ---- */

/* " (up to $Y if the N flagged submissions were billed)", or "" with none flagged. */
static void upper_bound(char *buf, size_t len, double spent, double flagged_cost, long flagged)
{
    struct sb_spend sp = {.spent = spent, .flagged_cost = flagged_cost, .flagged = flagged};
    sb_spend_upper_bound(buf, len, &sp);
}

static void cost_warning(const struct engine *e)
{
    char maybe[128];
    upper_bound(maybe, sizeof maybe, e->spent, e->flagged_cost, e->flagged);
    sb_warn("%s $%.2f reached (spent $%.2f%s, $%.2f held for the jobs in work): no new submissions",
            e->run->max_cost >= 0 ? "--max-cost" : "max_cost", budget(e), e->spent, maybe, e->reserved);
}

/*
 * Gives the job the URL of each of its reference images, or lists it as waiting
 * for the image's upload; then it waits for its uploads or goes to submit. An
 * upload older than media.upload_ttl (made in an earlier run, or in this one if
 * it has run that long) is made again: the provider keeps uploads for a while only.
 */
static void resolve_images(struct engine *e, struct job *j)
{
    int64_t wall = sb_now_ms();
    if (!j->urls)
        j->urls = sb_calloc((size_t)j->spec->n_images, sizeof *j->urls);
    j->uploads_left = 0;
    for (int k = 0; k < j->spec->n_images; k++) {
        const struct sb_image_ref *ref = &j->spec->images[k];
        if (j->urls[k])
            continue;
        if (ref->url) {
            j->urls[k] = sb_strdup(ref->url);
            continue;
        }
        struct upload *u = sb_map_get(e->uploads, ref->file->sha256);
        if (!u) {
            u = sb_calloc(1, sizeof *u);
            memcpy(u->sha, ref->file->sha256, sizeof u->sha);
            u->file = ref->file;
            u->all_next = e->uploads_all;
            e->uploads_all = u;
            sb_map_put(e->uploads, u->sha, u);
            const struct cached_upload *cached = sb_map_get(e->cached_uploads, u->sha);
            if (cached) {
                u->url = sb_strdup(cached->url);
                u->made_at = cached->made_at;
                u->earlier = 1;
                u->state = UP_DONE;
            }
        }
        if (u->state == UP_DONE && wall - u->made_at > e->m->media.upload_ttl_ms) {
            sb_debug("%s: its upload is older than media.upload_ttl: uploading it again", u->file->path);
            forget_upload(e, u);
        }
        if (u->state == UP_DONE) {
            j->urls[k] = sb_strdup(u->url);
            continue;
        }
        j->uploads_left++;
        int listed = 0;
        for (int w = 0; w < u->n_waiters; w++)
            listed |= u->waiters[w] == j;
        if (!listed) {
            u->waiters = sb_realloc(u->waiters, (size_t)(u->n_waiters + 1) * sizeof *u->waiters);
            u->waiters[u->n_waiters++] = j;
        }
        if (u->state == UP_FAILED)
            u->state = UP_IDLE, u->tries = 0;
        if (u->state == UP_IDLE)
            u->due = 0;
    }
    if (j->uploads_left) {
        j->want = W_UPLOADS;
        set_state(e, j, SB_JOB_UPLOADING);
    } else {
        j->want = W_SUBMIT;
        set_due(e, j, 0);
    }
}

/*
 * A submit refused as a bad request (400, 422) may have named upload URLs the
 * provider no longer serves: uploads are temporary, and a cached one from an
 * earlier run (or one replaced since the job took it) may be gone. Such URLs are
 * dropped, the files uploaded again and the job submitted once more: a refused
 * submit created nothing. Returns 1 when the job goes round again so.
 */
static int reupload_stale(struct engine *e, struct job *j, const struct outcome *oc)
{
    if (j->reuploaded || !j->spec || (oc->http != 400 && oc->http != 422))
        return 0;
    int stale = 0;
    for (int k = 0; k < j->spec->n_images; k++) {
        const struct sb_image_ref *ref = &j->spec->images[k];
        struct upload *u = ref->file ? sb_map_get(e->uploads, ref->file->sha256) : NULL;
        if (!u || !j->urls[k] || (!u->earlier && u->url && strcmp(u->url, j->urls[k]) == 0))
            continue;
        if (u->earlier)
            forget_upload(e, u);
        sb_freep(&j->urls[k]);
        stale++;
    }
    if (!stale)
        return 0;
    sb_warn("job %s: the submit was refused (%s); %d of its reference images used upload URLs of an earlier "
            "run, which the provider may have let go: uploading %s again and submitting once more", j->row.id,
            oc->msg, stale, SB_ONE(stale, "it", "them"));
    j->reuploaded = 1;
    j->tries = 0;
    resolve_images(e, j);
    return 1;
}


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

/* ---- the scheduler ---- */

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

static void finish(struct engine *e);

#define PEND_WINDOW 256

/* A deep copy of a row. */
static void row_copy(struct sb_jobrow *c, const struct sb_jobrow *r)
{
    *c = *r;
    c->id = r->id ? sb_strdup(r->id) : NULL;
    c->prediction_id = r->prediction_id ? sb_strdup(r->prediction_id) : NULL;
    c->outputs = r->outputs ? sb_strdup(r->outputs) : NULL;
    c->output_urls = r->output_urls ? sb_strdup(r->output_urls) : NULL;
    c->error_kind = r->error_kind ? sb_strdup(r->error_kind) : NULL;
    c->error_code = r->error_code ? sb_strdup(r->error_code) : NULL;
    c->error_message = r->error_message ? sb_strdup(r->error_message) : NULL;
    c->spec = r->spec ? sb_strdup(r->spec) : NULL;
}

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
static struct sb_jobrow *next_pending(struct engine *e)
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
static void unsend(struct engine *e)
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
static void pump(struct engine *e)
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
            if (now + wait < next)
                next = now + wait;
            break;
        }
        for (int tries = 0; tries < 3; tries++) {
            int k = e->rr++ % 3;
            if (k == 0 && e->q_up) {
                struct upload *u = e->q_up;
                e->q_up = u->qnext;
                if (!e->q_up)
                    e->q_up_tail = NULL;
                u->queued = 0;
                start_upload(e, u);
                break;
            }
            if (k == 1 && e->q_submit) {
                struct job *j = dequeue_job(&e->q_submit, &e->q_submit_tail);
                if (over_budget(e, 0)) {
                    /* Submits that may have been billed unseen took the room: this one waits for a later run. */
                    if (!e->cost_stop)
                        cost_warning(e);
                    e->cost_stop = 1;
                    set_state(e, j, SB_JOB_PENDING);
                    release(e, j);
                    break;
                }
                begin_submit(e, j);
                break;
            }
            if (k == 2 && e->q_poll) {
                start_poll(e, dequeue_job(&e->q_poll, &e->q_poll_tail));
                break;
            }
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

/* ---- operator view ---- */

static void count_states(struct engine *e, int counts[SB_JOB_NSTATES])
{
    memcpy(counts, e->count, sizeof e->count);
}

/* ---- outputs of the earlier versions of changed jobs ---- */

/* Whether name is one of job id's output names, <id>_<k>.<ext>: nothing else is ever removed. */
static int is_output_name(const char *id, const char *name)
{
    size_t n = strlen(id), digits = 0, ext = 0;
    if (strncmp(name, id, n) != 0 || name[n] != '_')
        return 0;
    const char *p = name + n + 1;
    while (p[digits] >= '0' && p[digits] <= '9')
        digits++;
    if (!digits || p[digits] != '.')
        return 0;
    p += digits + 1;
    while (p[ext] >= 'a' && p[ext] <= 'z')
        ext++;
    return ext >= 1 && ext <= 4 && p[ext] == '\0';
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
        if (!cJSON_IsString(x) || !is_output_name(id, x->valuestring) || in_list(now, x->valuestring))
            continue;
        if (unlinkat(e->outdir_fd, x->valuestring, 0) == 0) {
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
static void remove_replaced_outputs(struct engine *e)
{
    if (e->fatal || sb_store_in_transaction(e->st))
        return;
    sb_store_each_replaced(e->st, remove_replaced, e);
    if (e->replaced_removed)
        sb_info("%s: %d output%s of earlier versions of changed jobs removed", e->m->path, e->replaced_removed,
                SB_S(e->replaced_removed));
}

/* results.jsonl from the state; not while a commit has the database. Returns 0 when written. */
static int write_results(struct engine *e)
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

/* Every 250 ms: results.jsonl every 10 s, and the progress line (or a log line every 30 s). */
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
        sb_req_cleanup(&j->call.req);
        j->inflight = 0;
        j->sent_mono = 0;
        submit_failed(e, j, &oc, -1);
        if (i < e->n_active && e->active[i] != j)
            i--; /* it left the list */
    }
}

static void on_tick(uv_timer_t *t)
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

/* ---- signals and shutdown ---- */

/* Grace is over: abandon transfers still under way. Their jobs keep their states. */
static void stop_now(uv_timer_t *t)
{
    struct run *r = sb_container_of(t, struct run, grace);
    for (int k = 0; k < r->n; k++) {
        struct engine *e = r->engines[k];
        for (int i = 0; i < e->n_active; i++) {
            struct job *j = e->active[i];
            if (j->inflight) {
                sb_req_cleanup(&j->call.req);
                j->inflight = 0;
            }
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
static void stop_run(struct run *r, int signum)
{
    r->interrupted = signum;
    r->stopping = 1;
    if (r->tty)
        fprintf(stderr, "\n");
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
    if (r->interrupted)
        sb_signals_exit_now();
    stop_run(r, signum);
}

static int all_finished(const struct run *r)
{
    for (int k = 0; k < r->n; k++)
        if (!r->engines[k]->finished)
            return 0;
    return 1;
}

static void finish(struct engine *e)
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
        sb_signals_catch(r->interrupted);
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

/* ---- setup ---- */

/*
 * Whether the directory's filesystem takes names that differ only in case for one
 * file (FAT, exFAT, most SMB shares): there jobs SKU-1 and sku-1 would write the same
 * output files. Found by writing a mark into a file and reading it back under the
 * name in capitals (a file of its own of that name would not hold the mark; its
 * mere existence would not tell, and FUSE keeps looked-up names after an unlink).
 * 0 when it cannot be told: the run's own writes then say what is wrong.
 */
static int dir_folds_case(int dirfd)
{
    static const char lower[] = ".seedbatch-case-probe", upper[] = ".SEEDBATCH-CASE-PROBE";
    char mark[48], back[48];
    int n = snprintf(mark, sizeof mark, "%ld %llu", (long)getpid(), (unsigned long long)uv_hrtime());
    unlinkat(dirfd, lower, 0);   /* left by a run that was killed here */
    int fd = openat(dirfd, lower, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    int wrote = write(fd, mark, (size_t)n) == n;
    close(fd);
    int folds = 0;
    fd = wrote ? openat(dirfd, upper, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (fd >= 0) {
        folds = read(fd, back, sizeof back) == n && memcmp(back, mark, (size_t)n) == 0;
        close(fd);
    }
    unlinkat(dirfd, lower, 0);
    return folds;
}

/*
 * Whether an earlier manifest of this run has the same state, reached by another
 * path (a symbolic link, "..", or letters in another case where the filesystem
 * folds it): its lock would read as another run's. Returns an exit code.
 */
static int shares_state(struct run *r, struct engine *e)
{
    for (int i = 0; i < r->n && r->engines[i] != e; i++) {
        struct engine *o = r->engines[i];
        if (o->state_real && (e->folds_case ? strcasecmp(o->state_real, e->state_real)
                                            : strcmp(o->state_real, e->state_real)) == 0) {
            sb_error(SHARED_STATE, o->m->path, e->m->path, e->state_real);
            return SB_EXIT_USAGE;
        }
    }
    return SB_EXIT_OK;
}

/* On an output directory that folds case: jobs whose ids differ only in case are refused. */
static int case_twins(struct engine *e)
{
    char *a, *b;
    int groups;
    if (sb_store_case_twins(e->st, &a, &b, &groups) != SB_OK)
        return SB_EXIT_FAILED;
    if (!groups)
        return SB_EXIT_OK;
    char more[64] = "";
    if (groups > 1)
        snprintf(more, sizeof more, " (and %d more such group%s)", groups - 1, SB_S(groups - 1));
    sb_error("%s: jobs %s and %s would write the same output files%s: %s is on a filesystem that does "
             "not tell upper from lower case in names (such as FAT, exFAT or an SMB share); give them ids "
             "that differ in more than case; nothing was sent",
             e->m->path, a, b, more, e->m->output_dir);
    free(a);
    free(b);
    return SB_EXIT_USAGE;
}

/*
 * Storage before money: the output directory takes a file (made, written,
 * fsynced, removed) before anything is submitted. A read-only one is refused
 * (exit 2); a full one stops the run before it starts (exit 75).
 */
static int probe_writable(struct engine *e)
{
    static const char name[] = ".seedbatch-write-probe";
    unlinkat(e->outdir_fd, name, 0); /* left by a run killed here */
    int err = 0, fd = openat(e->outdir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = errno;
    } else {
        if (write(fd, "seedbatch\n", 10) != 10)
            err = errno ? errno : EIO;
        else if (fsync(fd) != 0)
            err = errno;
        close(fd);
        unlinkat(e->outdir_fd, name, 0);
    }
    if (!err)
        return SB_EXIT_OK;
    if (err == ENOSPC || err == EDQUOT) {
        sb_error("%s: output_dir %s has no room (%s): nothing was sent; free some space and run again",
                 e->m->path, e->m->output_dir, strerror(err));
        return SB_EXIT_TEMPFAIL;
    }
    sb_error("%s: output_dir %s cannot be written (%s): nothing was sent", e->m->path, e->m->output_dir,
             strerror(err));
    return SB_EXIT_USAGE;
}

static int take_lock(struct engine *e)
{
    char err[SB_ERRLEN];
    int rc = sb_store_lock(e->state_path, &e->lock_fd, err, sizeof err);
    if (rc == SB_EBUSY) {
        sb_error("another seedbatch run is using %s (lock %s.lock is held); wait for it to finish, "
                 "or run again later to resume", e->state_path, e->state_path);
        return SB_EXIT_TEMPFAIL;
    }
    if (rc != SB_OK) {
        sb_error("%s", err);
        return SB_EXIT_USAGE;
    }
    return SB_EXIT_OK;
}

struct idlist {
    char **ids;
    int n;
    const char *retry;     /* error kind to retry, "" for all */
};

static int collect_id(const struct sb_jobrow *r, void *ud)
{
    struct idlist *l = ud;
    if (l->retry && *l->retry && (!r->error_kind || strcmp(r->error_kind, l->retry) != 0))
        return 0;
    if (l->retry && r->error_kind && strcmp(r->error_kind, SB_EK_INVALID_INPUT) == 0) {
        /* A bad reference image fails again at once: nothing to retry. */
        cJSON *spec = r->spec ? cJSON_Parse(r->spec) : NULL;
        int invalid = cJSON_GetObjectItemCaseSensitive(spec, "invalid") != NULL;
        cJSON_Delete(spec);
        if (invalid)
            return 0;
    }
    if ((l->n & (l->n - 1)) == 0)
        l->ids = sb_realloc(l->ids, (size_t)(l->n ? l->n * 2 : 1) * sizeof *l->ids);
    l->ids[l->n++] = sb_strdup(r->id);
    return 0;
}

/* Rewrites the rows of the listed jobs through fn, directly (before the loop runs). */
static void each_listed(struct engine *e, struct idlist *l, void (*fn)(struct engine *, struct sb_jobrow *))
{
    for (int i = 0; i < l->n; i++) {
        struct sb_jobrow r;
        if (sb_store_get_job(e->st, l->ids[i], &r) == SB_OK) {
            enum sb_job_state from = r.state;
            fn(e, &r);
            if (sb_store_begin(e->st) != SB_OK || sb_store_save_job(e->st, &r, from) != SB_OK) {
                e->fatal = 1;
                snprintf(e->err, sizeof e->err, "cannot write the state database %s", e->state_path);
            }
            sb_jobrow_clear(&r);
        }
        free(l->ids[i]);
    }
    free(l->ids);
    memset(l, 0, sizeof *l);
}

static void cached_upload_free(void *p)
{
    struct cached_upload *c = p;
    if (c)
        free(c->url);
    free(c);
}

static void remember_upload(const char *sha, const char *url, int64_t made_at, void *ud)
{
    struct cached_upload *c = sb_malloc(sizeof *c);
    c->url = sb_strdup(url);
    c->made_at = made_at;
    cached_upload_free(sb_map_put(ud, sha, c));
}

/*
 * A job --retry-failed submits again uploads its local files again: the URLs an
 * earlier run cached may be gone at the provider (its failure may even be that).
 */
static void forget_cached_uploads(struct engine *e, const struct sb_jobrow *r)
{
    struct sb_jobspec js;
    memset(&js, 0, sizeof js);
    if (!r->spec || sb_jobspec_from_json(e->m, r->id, r->spec, &js) != SB_OK)
        return;
    for (int k = 0; k < js.n_images; k++) {
        const struct sb_localfile *f = js.images[k].file;
        if (f && sb_map_get(e->cached_uploads, f->sha256)) {
            cached_upload_free(sb_map_put(e->cached_uploads, f->sha256, NULL));
            if (sb_store_drop_upload(e->st, f->sha256) != SB_OK)
                e->fatal = 1;
        }
    }
    sb_jobspec_clear(&js);
}

/*
 * --retry-failed: a job whose prediction may still be at the provider is polled
 * again (running, its id kept); any other is submitted again (pending).
 */
static void requeue(struct engine *e, struct sb_jobrow *r)
{
    int repoll = sb_jobrow_repollable(r);
    /* A prediction polled again keeps its one charge in the ledger (charged stays set). */
    sb_freep(&r->error_kind);
    sb_freep(&r->error_code);
    sb_freep(&r->error_message);
    r->error_http = 0;
    sb_freep(&r->outputs);
    sb_freep(&r->output_urls);
    r->finished_at = 0;
    if (repoll) {
        r->state = SB_JOB_RUNNING;
        sb_map_put(e->retry_repoll, r->id, (void *)1);
        sb_info("job %s: its prediction %s is polled again, not submitted again", r->id, r->prediction_id);
        return;
    }
    sb_freep(&r->prediction_id);
    forget_cached_uploads(e, r);
    if (r->uncertain_submits)
        sb_warn("job %s: %d earlier submit%s of it reached the provider with no prediction id seen and may have "
                "been billed: submitting it again may pay twice", r->id, r->uncertain_submits,
                SB_S(r->uncertain_submits));
    /* possible_duplicate stays: a submit of it that lost its answer may have been billed. */
    r->submitted_at = 0;
    r->state = SB_JOB_PENDING;
}

static void unupload(struct engine *e, struct sb_jobrow *r)
{
    (void)e;
    r->state = SB_JOB_PENDING;
}

static void resubmit_flagged(struct engine *e, struct sb_jobrow *r)
{
    /* Its submit may have reached the provider: a flagged charge, and sent again flagged. */
    struct sb_charge c = {sb_now_ms(), r->id, r->fingerprint, NULL, r->images_requested, price(e),
                          r->images_requested * price(e), 1, "in flight when a run stopped"};
    if (sb_store_begin(e->st) != SB_OK || sb_store_add_charge(e->st, &c) < 0) {
        e->fatal = 1;
        snprintf(e->err, sizeof e->err, "cannot write the state database %s", e->state_path);
    }
    r->possible_duplicate = 1;
    r->uncertain_submits++;
    r->state = SB_JOB_PENDING;
    sb_info("job %s: its submit was in flight when the last run stopped: submitting again "
            "(flagged possible_duplicate)", r->id);
}

/* A job the last run left with a prediction: polled or downloaded, never submitted again. */
static int resume_job(const struct sb_jobrow *r, void *ud)
{
    struct engine *e = ud;
    if (!r->prediction_id && r->state != SB_JOB_DOWNLOADING)
        return 0;
    struct sb_jobrow copy;
    row_copy(&copy, r);
    struct job *j = job_new(e, &copy);
    hold(e, j);
    /* Its prediction's charge, once in the ledger, is in the spend: nothing more is held for it. */
    if (!j->row.charged)
        j->reserved = (j->spec ? j->spec->images_requested : j->row.images_requested) * price(e);
    e->reserved += j->reserved;
    set_due(e, j, 0);
    if (j->row.state == SB_JOB_DOWNLOADING) {
        j->want = W_DOWNLOAD;
        return 0;
    }
    j->want = W_POLL;
    j->poll_every = e->m->limits.poll_interval_ms;
    j->retrying = sb_map_get(e->retry_repoll, j->row.id) != NULL;
    j->submitted_mono = mono_ms() - (sb_now_ms() - j->row.submitted_at);
    if (j->row.state != SB_JOB_RUNNING)
        set_state(e, j, SB_JOB_RUNNING);
    return 0;
}

/*
 * Puts each job where the state left it: requeued when --retry-failed asks,
 * resumable ones taken into work, the rest read later in windows when their
 * turn comes. Only the jobs in work are held in memory.
 */
struct startup {
    struct engine *e;
    struct idlist uploading;       /* back to pending: their uploads are done again or cached */
    struct idlist unsent;          /* submitting without an id: submitted again, flagged */
};

static int sort_left(const struct sb_jobrow *r, void *ud)
{
    struct startup *su = ud;
    if (r->state == SB_JOB_UPLOADING)
        return collect_id(r, &su->uploading);
    if (r->state == SB_JOB_SUBMITTING && !r->prediction_id)
        return collect_id(r, &su->unsent);
    return resume_job(r, su->e);
}

static void load_jobs(struct engine *e)
{
    const char *rf = e->o->retry_failed;
    struct idlist l = {NULL, 0, NULL};
    if (rf) {
        l.retry = rf;
        if (strcmp(rf, "cancelled") == 0) {
            l.retry = NULL;
            sb_store_each_in_states(e->st, 1u << SB_JOB_CANCELLED, collect_id, &l);
        } else {
            sb_store_each_in_states(e->st, 1u << SB_JOB_FAILED, collect_id, &l);
        }
        each_listed(e, &l, requeue);
    }
    /* One look over the jobs the last run left in work: rows to rewrite are listed
     * (and rewritten after the look), jobs with a prediction are taken up again. */
    struct startup su = {e, {NULL, 0, NULL}, {NULL, 0, NULL}};
    sb_store_each_in_states(e->st, 1u << SB_JOB_UPLOADING | 1u << SB_JOB_SUBMITTING | 1u << SB_JOB_RUNNING |
                            1u << SB_JOB_DOWNLOADING, sort_left, &su);
    each_listed(e, &su.uploading, unupload);
    each_listed(e, &su.unsent, resubmit_flagged);
    long pending_images;
    struct sb_spend sp = {0};
    if (sb_store_counts(e->st, e->count, &pending_images) != SB_OK || sb_store_spend(e->st, price(e), &sp) != SB_OK) {
        e->fatal = 1;
        snprintf(e->err, sizeof e->err, "cannot read the state database %s", e->state_path);
    }
    e->spent = e->spent_before = sp.spent;
    e->flagged = sp.flagged;
    e->flagged_cost = sp.flagged_cost;
    e->pend_after = -1;
}


/* Opens one manifest's batch: key, directories, lock, state, sync. Returns an exit code. */
static int engine_open(struct run *r, struct engine *e)
{
    struct sb_manifest *m = e->m;
    char err[SB_ERRLEN];
    e->run = r;
    e->lock_fd = -1;
    e->res_cache = sb_results_cache_new();
    e->res_lo = INT64_MAX;
    e->res_hi = -1;
    e->outdir_fd = -1;
    if (sb_api_open(m, &e->api, err, sizeof err) != SB_OK) {
        sb_error("%s: %s", m->path, err);
        return SB_EXIT_USAGE;
    }
    e->state_path = e->o->state_path ? sb_strdup(e->o->state_path) : sb_store_default_path(m);
    char *sdir = sb_dirname(e->state_path);
    /* Named with the manifest and which directory it is: a path alone can read like another file's. */
    const char *which = "output_dir";
    int mk = sb_mkdirs(m->output_dir, err, sizeof err) == SB_OK;
    if (mk) {
        which = "state";
        mk = sb_mkdirs(sdir, err, sizeof err) == SB_OK;
    }
    char *sreal = mk ? realpath(sdir, NULL) : NULL;
    free(sdir);
    if (!mk) {
        sb_error("%s: %s: %s", m->path, which, err);
        return SB_EXIT_FAILED;
    }
    e->outdir_fd = open(m->output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (e->outdir_fd < 0 || !sreal) {
        sb_error("cannot open %s: %s", e->outdir_fd < 0 ? m->output_dir : e->state_path, strerror(errno));
        free(sreal);
        return SB_EXIT_FAILED;
    }
    e->folds_case = dir_folds_case(e->outdir_fd);
    const char *base = strrchr(e->state_path, '/');
    e->state_real = sb_asprintf("%s/%s", sreal, base ? base + 1 : e->state_path);
    free(sreal);
    int rc = shares_state(r, e);
    if (rc == SB_EXIT_OK)
        rc = take_lock(e);
    if (rc == SB_EXIT_OK)
        rc = probe_writable(e);
    if (rc != SB_EXIT_OK)
        return rc;
    if ((rc = sb_store_open(e->state_path, 0, &e->st, err, sizeof err)) != SB_OK) {
        sb_error("%s", err);
        if (rc == SB_EFULL)
            sb_error("%s: the state has no room: nothing was sent; free some space and run again", m->path);
        return rc == SB_EFULL ? SB_EXIT_TEMPFAIL : SB_EXIT_FAILED;
    }
    struct sb_sync_report rep;
    if (sb_store_sync(e->st, m, &rep, err, sizeof err) != SB_OK) {
        sb_error("%s", err);
        return SB_EXIT_FAILED;
    }
    if (rep.added || rep.changed || rep.removed)
        sb_info("%s: %d new job%s, %d changed, %d unchanged, %d no longer in the manifest",
                m->path, rep.added, SB_S(rep.added), rep.changed, rep.kept, rep.removed);
    for (int i = 0; i < rep.removed && i < 20; i++)
        sb_info("job %s is no longer in the manifest; its state is kept", rep.removed_ids[i]);
    /* Said here, once: these jobs never reach the loop, whose failures are logged as they come. */
    for (int i = 0; i < rep.invalid && i < SB_SYNC_SHOWN; i++)
        sb_warn("%s: %s; it fails (%s) and the other jobs run", m->path, rep.invalid_why[i], SB_EK_INVALID_INPUT);
    if (rep.invalid > SB_SYNC_SHOWN)
        sb_warn("%s: %d more job%s with an unusable reference image fail%s the same way: `seedbatch validate %s` "
                "lists them all", m->path, rep.invalid - SB_SYNC_SHOWN, SB_S(rep.invalid - SB_SYNC_SHOWN),
                SB_ONE(rep.invalid - SB_SYNC_SHOWN, "s", ""), m->path);
    sb_sync_report_clear(&rep);
    if (e->folds_case && (rc = case_twins(e)) != SB_EXIT_OK)
        return rc;
    e->uploads = sb_map_new();
    e->cached_uploads = sb_map_new();
    e->retry_repoll = sb_map_new();
    sb_store_each_upload(e->st, m->media.upload_ttl_ms, remember_upload, e->cached_uploads);
    e->last_results = mono_ms();
    e->scan_all = 1;
    load_jobs(e);
    uv_timer_init(&r->uv, &e->wake);
    uv_timer_init(&r->uv, &e->commit_timer);
    return SB_EXIT_OK;
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

static void engine_close(struct engine *e)
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
static void run_init(struct run *r, int n, long max_connects)
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
static int run_open(struct run *r, struct sb_manifest **ms, const struct sb_engine_opts *o, int *opened)
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
static void run_shutdown(struct run *r, int opened)
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
static int exit_rank(int rc)
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
        char *a = o->state_path ? sb_strdup(o->state_path) : sb_store_default_path(ms[i]);
        for (int k = 0; k < i; k++) {
            char *b = sb_store_default_path(ms[k]);
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
    for (int p = 0; p < 2; p++)
        sb_rl_init(&r->rl[p], provider_rate(ms, n, (enum sb_provider)p), r->started);
    srand((unsigned)(sb_now_ms() ^ getpid()));
    r->tty = o->progress == SB_PROGRESS_ALWAYS || (o->progress == SB_PROGRESS_AUTO && isatty(2));

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
        if (early)
            stop_run(r, early);
        uv_timer_start(&r->tick, on_tick, 250, r->tty ? 250 : 1000);
        for (int i = 0; i < n; i++)
            pump(r->engines[i]);
        while (!all_finished(r) && uv_run(&r->uv, UV_RUN_ONCE))
            ;
        for (int i = 0; i < n; i++)
            if (!r->engines[i]->finished)
                finish(r->engines[i]);
        if (r->tty)
            fprintf(stderr, "\r\033[K");
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

/* ---- cancel ---- */

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
