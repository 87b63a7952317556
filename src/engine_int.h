/*
 * engine_int.h: what the engine's files share (libuv's internal.h is the model):
 * the structs of a run, a batch (engine), a job, an upload and a call, and the
 * functions one file calls in another. Not an interface: sb_engine.h is.
 */
#ifndef SB_ENGINE_INT_H
#define SB_ENGINE_INT_H

#include "sb_engine.h"
#include "sb_jw.h"
#include "sb_download.h"
#include "sb_log.h"
#include "sb_loop.h"
#include "sb_plan.h"
#include "sb_provider.h"
#include "sb_ratelimit.h"
#include "sb_report.h"
#include "sb_results.h"
#include "sb_signals.h"
#include "sb_store.h"
#include "sb_timing.h"
#include "sb_sync.h"

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
#define POLL_WAIT_MS 10000     /* a poll this late past its due time goes before uploads and submits */

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
    enum want want;         /* set by set_want only */
    int active;             /* holds a concurrency slot */
    int queued;             /* in a dispatch queue */
    int inflight;           /* an API call is under way (job_call_begun, _ended, _dropped) */
    int64_t due;            /* the next action waits until then (monotonic ms) */
    int wq_pos;             /* 1 + its place in the engine's wake queue, 0 when not in it */
    int tries;              /* attempts of the current call */
    char **urls;            /* reference image URLs */
    int uploads_left;
    int64_t poll_every;
    int submitted_here;     /* its prediction was made in this run: its time is a sample */
    double running_s;       /* seconds after the submit a poll (as sent) last found it running, 0: none */
    double done_s;          /* ... and the first that found it finished, 0: none yet */
    int64_t poll_sent_mono; /* when its last poll went out */
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
    struct sb_ratelimit rl[SB_NPROVIDERS];   /* one request budget per provider */
    int proven[SB_NPROVIDERS];               /* an API call to that provider has succeeded: the key works */
    int reached[SB_NPROVIDERS];              /* an API call to that provider got an answer in this run */
    int64_t unanswered_since[SB_NPROVIDERS]; /* the first of the calls in a row that got no answer; 0: none */
    int64_t limited_at[SB_NPROVIDERS];       /* when a call last waited for the rate limit, or was refused 429 */
    int unanswered_calls[SB_NPROVIDERS];
    uv_timer_t tick, grace;
    uv_signal_t sigint, sigterm, sighup;
    int stopping, auth_abort, unreachable;
    int interrupted;               /* the signal that stopped the run, or 0 */
    int64_t signal_ms;             /* when it came (sb_signals_now_ms) */
    int tty;                       /* the progress line is drawn (a terminal, not --quiet) */
    int cols;                      /* the terminal's width (SIGWINCH re-reads it) */
    uv_signal_t sigwinch;
    char pline[512];               /* the progress line as drawn last */
    size_t pline_len;              /* 0: none on the screen */
    double rate;                   /* jobs finished a second, smoothed */
    int64_t rate_at;               /* when it was last updated */
    long rate_done;
    int rate_n;
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
    struct sb_timing timing;             /* processing time learned (and kept in the state) */
    int timing_dirty;                    /* learned more since it was written */
    int64_t timing_saved;                /* when it was last written (monotonic ms) */
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

static inline int64_t mono_ms(void)
{
    return (int64_t)(uv_hrtime() / 1000000);
}

static inline double price(const struct engine *e)
{
    return e->m->price_per_image;
}

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

/* What a call got, as its verdict needs it: no engine, no side effects. */
struct call_answer {
    CURLcode rc;                        /* the transfer's result */
    int sent;                           /* the request went out */
    long status;                        /* HTTP status, 0 when none */
    const char *errbuf;                 /* libcurl's words on a failed transfer, or NULL */
    const cJSON *body;                  /* the answer as JSON, or NULL */
    const struct sb_provider_ops *ops;  /* reads the provider's error bodies */
};
/* What the answer means: ok, retry, fail (with its kind) or abort. A pure function (tested with a table). */
void call_verdict(const struct call_answer *a, struct outcome *oc);

/* job.c */
void set_state(struct engine *e, struct job *j, enum sb_job_state to);
void set_want(struct job *j, enum want w);
void set_error(struct engine *e, struct job *j, const char *kind, int http, const char *code, const char *msg);
void clear_error(struct job *j);
char *str_array(char *const *v, int n);
void retire(struct engine *e, struct job *j);
void set_due(struct engine *e, struct job *j, int64_t due);
struct job *wq_pop_due(struct engine *e, int64_t now);
void job_free(struct engine *e, struct job *j);
void sweep(struct engine *e);
struct job *job_new(struct engine *e, struct sb_jobrow *row);
void release(struct engine *e, struct job *j);
void hold(struct engine *e, struct job *j);
void job_failed(struct engine *e, struct job *j, const char *kind, int http, const char *code, const char *msg);
void enqueue_job(struct engine *e, struct job *j);
struct job *dequeue_job(struct job **head, struct job **tail);
void enqueue_upload(struct engine *e, struct upload *u);
int64_t backoff(int tries, int64_t retry_after);
void row_copy(struct sb_jobrow *c, const struct sb_jobrow *r);

/* scheduler.c */
struct sb_jobrow *next_pending(struct engine *e);
void unsend(struct engine *e);
void pump(struct engine *e);
void dispatch(struct engine *e);
void count_states(struct engine *e, int counts[SB_JOB_NSTATES]);

/* budget.c */
int over_budget(const struct engine *e, double need);
int budget_held(const struct engine *e);
double budget(const struct engine *e);
void charge(struct engine *e, struct job *j, const char *pred, int images, int flagged, const char *note);
void charge_outputs(struct engine *e, struct job *j, int n);
void upper_bound(char *buf, size_t len, double spent, double flagged_cost, long flagged);
void cost_warning(const struct engine *e);

/* calls.c */
void count_unsent(struct engine *e, const struct sb_req *r, enum call_kind kind);
const cJSON *answer(struct sb_req *r);
void classify(struct engine *e, struct sb_req *r, CURLcode rc, struct outcome *oc);
void auth_abort(struct engine *e, const struct outcome *oc);
int64_t no_answer(struct engine *e, const struct outcome *oc);
struct job *job_call_ended(struct sb_req *r, CURLcode rc, struct outcome *oc);
void pause_began(struct engine *e, int64_t before, int64_t now, const char *cause);
/* The only writers of j->inflight: a job's call is under way, */
void job_call_begun(struct job *j);
/* ... or given up before its answer (the request freed). */
void job_call_dropped(struct job *j);

/* upload.c */
void start_upload(struct engine *e, struct upload *u);
void resolve_images(struct engine *e, struct job *j);
int reupload_stale(struct engine *e, struct job *j, const struct outcome *oc);
void cached_upload_free(void *p);
void remember_upload(const char *sha, const char *url, int64_t made_at, void *ud);
void forget_cached_uploads(struct engine *e, const struct sb_jobrow *r);

/* predict.c */
void begin_submit(struct engine *e, struct job *j);
void submit_failed(struct engine *e, struct job *j, struct outcome *o, int64_t ra);
int job_request(struct engine *e, struct job *j, char *url, const char *post, sb_req_done_fn done);
void start_poll(struct engine *e, struct job *j);

/* outputs.c */
void finalized(struct engine *e, struct job *list);
void start_downloads(struct engine *e, struct job *j, char *const *urls, int n);
void start_downloads_kept(struct engine *e, struct job *j);
void remove_replaced_outputs(struct engine *e);
int write_results(struct engine *e);
void write_report(struct engine *e);

/* commit.c */
void storage_full(struct engine *e, const char *where, int err);
void save(struct engine *e, struct job *j);
int write_dirty(struct engine *e);
void flush(struct engine *e);
void flush_sync(struct engine *e);

/* progress.c */
void on_tick(uv_timer_t *t);
/* The progress line's terminal: its width (and SIGWINCH), log lines drawn around it. */
void progress_start(struct run *r);
void progress_end(struct run *r);

/* resume.c */
int engine_open(struct run *r, struct engine *e);

/* engine.c */
void stop_run(struct run *r, int signum);
void finish(struct engine *e);
void engine_close(struct engine *e);
void run_init(struct run *r, int n, long max_connects);
int run_open(struct run *r, struct sb_manifest **ms, const struct sb_engine_opts *o, int *opened);
void run_shutdown(struct run *r, int opened);
int exit_rank(int rc);

#endif
