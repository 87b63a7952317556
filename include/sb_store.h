/*
 * The persistent queue: one SQLite database (WAL) per output directory,
 * holding every job's state, fingerprint, attempts, prediction id, outputs,
 * error and cost, the charge ledger (every prediction that may have been billed,
 * append-only), the cache of uploaded files keyed by content hash, and the
 * record of local files already hashed, keyed by device and inode.
 * A job's state changes through sb_jobrow_set_state, on a job in work (the engine's
 * set_state) or on a row; rows are written by sb_store_save_job.
 */
#ifndef SB_STORE_H
#define SB_STORE_H

#include <stdint.h>

#include "sb_checks.h"
#include "sb_common.h"

#define SB_SCHEMA_VERSION 8

/* A job's life (SPEC section 4). Stored by name. */
enum sb_job_state {
    SB_JOB_PENDING = 0,   /* queued: nothing sent yet */
    SB_JOB_UPLOADING,     /* waiting for its local files to be uploaded */
    SB_JOB_SUBMITTING,    /* submit intent committed; the request may be in flight */
    SB_JOB_RUNNING,       /* prediction id known: polled, never resubmitted */
    SB_JOB_DOWNLOADING,   /* prediction done; outputs being fetched */
    SB_JOB_SUCCEEDED,     /* every output is on disk under its final name */
    SB_JOB_FAILED,        /* gave up: error kind and message say why */
    SB_JOB_CANCELLED,     /* cancelled by the user */
    SB_JOB_NSTATES
};

/* Error kinds of results.jsonl (SPEC section 3). */
#define SB_EK_INVALID_INPUT "invalid_input"
#define SB_EK_REJECTED "rejected"
#define SB_EK_TIMEOUT "timeout"
#define SB_EK_NETWORK "network"
#define SB_EK_SERVER "server"
#define SB_EK_RATE_LIMITED "rate_limited"
#define SB_EK_AUTH "auth"
#define SB_EK_QUOTA "quota"

const char *sb_job_state_name(enum sb_job_state s);
int sb_job_state_parse(const char *s, enum sb_job_state *out);
/* Whether a job may go from one state to another (staying is no change). */
int sb_job_transition_ok(enum sb_job_state from, enum sb_job_state to);
/* The SPEC's result status for a state: in-flight states read as "running". */
const char *sb_job_status_name(enum sb_job_state s);

struct sb_job_error {
    const char *kind;     /* one of SB_EK_* */
    int http_status;      /* 0 when none */
    const char *code;     /* provider's error code, or NULL */
    const char *message;
};

/* A job's row, as read back. Strings are owned by the row; free with sb_jobrow_clear. */
struct sb_jobrow {
    char *id;
    int64_t seq;
    char fingerprint[65];
    enum sb_job_state state;
    int in_manifest;
    int images_requested;
    int attempts;
    char *prediction_id;
    int possible_duplicate;
    char *outputs;        /* JSON array of file names, or NULL */
    char *output_urls;    /* JSON array, or NULL */
    char *error_kind, *error_code, *error_message;
    int error_http;
    int64_t submitted_at, finished_at; /* ms, 0 when unset */
    double predict_time;  /* seconds, < 0 when unknown */
    double cost;
    char *spec;           /* the job as sb_jobspec_json wrote it, or NULL */
    int64_t rowid;        /* where the row is: saves find it without the id index */
    int uncertain_submits; /* submits that reached the provider with no prediction id known: maybe billed */
    /* Read from the charge ledger, never saved: */
    int charged;          /* its current prediction has its charge in the ledger */
    double total_cost;    /* what every version of it cost (flagged charges aside), USD */
};
void sb_jobrow_clear(struct sb_jobrow *r);
/*
 * The one way a job's state changes, in memory (the engine's set_state) or on a row
 * read from the state (startup recovery, --retry-failed): checks
 * the change against the table of allowed ones (an illegal one is a bug: an assertion
 * in debug builds, else logged and not made, SB_EINVAL), sets finished_at on entering
 * a final state (clears it on leaving one), and logs old -> new (debug) as it happens.
 */
int sb_jobrow_set_state(struct sb_jobrow *r, enum sb_job_state to);
/*
 * Whether a failed job's prediction may still be at the provider with its outputs:
 * it has an id and failed on the way to them (its polls or downloads met network,
 * server or rate-limit trouble), not because the provider refused it, no longer
 * knows it (400, 404, 404001) or let its outputs expire (404, 410). --retry-failed
 * polls such a job again instead of submitting (and paying for) it again.
 */
int sb_jobrow_repollable(const struct sb_jobrow *r);
/* The message of a job whose prediction the provider no longer knows (it cannot be polled again). */
#define SB_GONE_MSG "the prediction is no longer known to the provider (expired?)"
/* What `run` and `status` say of such jobs: a %d, how many, then SB_REPOLL_HINT_ARGS(how many). */
#define SB_REPOLL_HINT \
    "%d of the failed jobs %s a prediction the provider may still hold: run --retry-failed polls %s " \
    "again, at no new charge"
/* The arguments after the count for SB_REPOLL_HINT. */
#define SB_REPOLL_HINT_ARGS(n) SB_ONE(n, "has", "have"), SB_ONE(n, "it", "them")

struct sb_store;

/* Opens (creating and migrating) the state database. readonly never creates or writes. */
int sb_store_open(const char *path, int readonly, struct sb_store **out, char *err, size_t errlen);
void sb_store_close(struct sb_store *st);
/* Default state path of an output directory: <output_dir>/.seedbatch/state.db */
char *sb_store_default_path(const char *output_dir);
/*
 * Takes the state's lock (<path>.lock, flock), held by whoever writes for the
 * state: a run, cancel, results. *fd keeps it until closed. SB_EBUSY when another
 * process holds it; SB_EIO when it cannot be taken at all, with err saying why.
 */
int sb_store_lock(const char *path, int *fd, char *err, size_t errlen);

/*
 * One manifest's jobs brought into the queue, in one transaction (sync.c walks the
 * manifest and calls these): begin, each job in order, each local file read, end.
 * Any failure rolls everything back (sb_store_sync_abort, which end does itself).
 */
struct sb_store_sync;
enum sb_sync_outcome { SB_SYNC_ADDED, SB_SYNC_KEPT, SB_SYNC_CHANGED };
int sb_store_sync_begin(struct sb_store *st, struct sb_store_sync **out, char *err, size_t errlen);
/* Adds, keeps or re-queues (a new fingerprint) one job at its place seq; *failed_now is 1 when
 * it fails now as invalid input (it did not before). */
int sb_store_sync_job(struct sb_store_sync *x, const struct sb_kept_job *j, int64_t seq,
                      enum sb_sync_outcome *how, int *failed_now, char *err, size_t errlen);
/* Records a local file read and hashed (or marks one still in use seen), for the next run. */
int sb_store_sync_file(struct sb_store_sync *x, const struct sb_localfile *f);
/* Flags the jobs no longer in the manifest (their ids in *removed_ids), records the sync, commits. */
int sb_store_sync_end(struct sb_store_sync *x, const char *manifest, int n_jobs, int added, int changed,
                      char ***removed_ids, int *removed, char *err, size_t errlen);
void sb_store_sync_abort(struct sb_store_sync *x);

/*
 * An sb_file_lookup_fn over the local files earlier runs recorded (ud is the store):
 * their hash and image header, when device, inode, size, mtime and ctime all match.
 * 0 in a state without the table (an older schema opened read-only).
 */
int sb_store_file_lookup(void *ud, const struct sb_filestamp *s, char sha256[65], struct sb_imageinfo *info);

/*
 * The one place a job's row is written: every field of r, its state included.
 * `from` is the state the caller holds; a change is logged as old -> new.
 * Inside sb_store_begin/commit the write joins the open transaction.
 */
int sb_store_save_job(struct sb_store *st, const struct sb_jobrow *r, enum sb_job_state from);

/*
 * Reads the job, sets its state and error (cleared when e is NULL), saves it. SB_ENOENT when absent.
 * Not a change through the table: the sync uses it when a job's new version starts over
 * (pending, or failed on an unusable image), and the tests to set up a state.
 */
int sb_store_transition(struct sb_store *st, const char *id, enum sb_job_state to,
                        const struct sb_job_error *e);

/*
 * Opens a write transaction unless one is open; commit ends it. The engine
 * writes rows on the loop and runs the commit (its fsync) on a worker thread;
 * nothing else may use the store while a commit runs.
 */
int sb_store_begin(struct sb_store *st);
int sb_store_commit(struct sb_store *st, char *err, size_t errlen);
int sb_store_in_transaction(const struct sb_store *st);

/* Reads one job; SB_ENOENT when absent. */
int sb_store_get_job(struct sb_store *st, const char *id, struct sb_jobrow *out);
/*
 * The row of this version of a job (st may be NULL): 1 with out filled when the state has
 * the job with this fingerprint, else 0 (a row for another version does not describe it).
 */
int sb_store_get_version(struct sb_store *st, const char *id, const char *fingerprint, struct sb_jobrow *out);
/* Calls fn for every job in manifest order (removed ones last). Stops when fn returns non-zero. */
int sb_store_each_job(struct sb_store *st, int (*fn)(const struct sb_jobrow *r, void *ud), void *ud);

/* The same for the jobs of the manifest only, in its order. */
/* The manifest's jobs with from <= seq < to, in manifest order. */
int sb_store_each_manifest_range(struct sb_store *st, int64_t from, int64_t to,
                                 int (*fn)(const struct sb_jobrow *r, void *ud), void *ud);
int sb_store_each_manifest_job(struct sb_store *st, int (*fn)(const struct sb_jobrow *r, void *ud), void *ud);
/* Up to limit pending jobs of the manifest after position after_seq, in order. */
int sb_store_each_pending(struct sb_store *st, int64_t after_seq, int limit,
                          int (*fn)(const struct sb_jobrow *r, void *ud), void *ud);
/* The manifest's jobs in any of the states (a mask of 1u << state), in order: one look. */
int sb_store_each_in_states(struct sb_store *st, unsigned states,
                            int (*fn)(const struct sb_jobrow *r, void *ud), void *ud);
/*
 * Succeeded jobs that changed since an earlier version of theirs had outputs: calls fn
 * with the id, the outputs (JSON arrays) and those of the earlier versions, then forgets
 * the earlier ones (outside a transaction; committed at once).
 */
int sb_store_each_replaced(struct sb_store *st,
                           void (*fn)(const char *id, const char *outputs, const char *replaced, void *ud), void *ud);
/*
 * Jobs of the manifest whose ids differ only in case (ASCII: ids are), for an output
 * directory that does not tell such names apart: the first two of the first such
 * group in manifest order into *a and *b (newly allocated), the number of groups
 * into *groups (0: none, and *a and *b NULL).
 */
int sb_store_case_twins(struct sb_store *st, char **a, char **b, int *groups);
/* Jobs of the manifest per state, and the outputs its pending jobs ask for at most. */
int sb_store_counts(struct sb_store *st, int counts[SB_JOB_NSTATES], long *pending_images);

/* One row of the charge ledger: a prediction that may have been billed. */
struct sb_charge {
    int64_t at;                /* when it was learned, ms since the epoch */
    const char *job_id;
    const char *fingerprint;   /* of the job's version that made it */
    const char *prediction_id; /* NULL: a submit whose prediction id was never seen */
    int images;                /* outputs made (flagged: the most the submit asked for) */
    double price;              /* USD per image */
    double cost;               /* USD */
    int flagged;               /* a possible duplicate: maybe billed, maybe not */
    const char *note;          /* how it was learned */
};
/*
 * Appends a charge (inside sb_store_begin/commit it joins the open transaction).
 * 1 when added, 0 when the job's prediction already has its charge, else an error.
 */
int sb_store_add_charge(struct sb_store *st, const struct sb_charge *c);

/* The state's total spend from its ledger, every job and version of it. */
struct sb_spend {
    double spent;        /* charges for predictions known to have been made, USD */
    double flagged_cost; /* ... and what the flagged ones would add if they were billed */
    long flagged;        /* flagged charges */
    long charges;        /* every charge */
    long images;         /* images made by the charged predictions */
};
/* price values a charge recorded without one (flagged, older than the ledger). */
int sb_store_spend(struct sb_store *st, double price, struct sb_spend *out);
/* Calls fn for every charge, oldest first; fn returns non-zero to stop. */
int sb_store_each_charge(struct sb_store *st, double price, int (*fn)(const struct sb_charge *c, void *ud), void *ud);

/* The cached upload URL of a file's content if younger than ttl_ms (newly allocated), else NULL. */
char *sb_store_upload_url(struct sb_store *st, const char *sha256, int64_t ttl_ms);
int sb_store_put_upload(struct sb_store *st, const char *sha256, const char *url, int64_t size);
/* Calls fn for every cached upload younger than ttl_ms, with when it was made (ms since the epoch). */
int sb_store_each_upload(struct sb_store *st, int64_t ttl_ms,
                         void (*fn)(const char *sha256, const char *url, int64_t uploaded_at, void *ud), void *ud);
/* Forgets a file's cached upload (its URL went stale): the next job that needs it uploads it again. */
int sb_store_drop_upload(struct sb_store *st, const char *sha256);

/* What runs learned of a provider's and model's processing time: SB_ENOENT when nothing
   (or an older schema). put joins an open transaction. */
struct sb_timing;
int sb_store_get_timing(struct sb_store *st, const char *provider, const char *model, struct sb_timing *t);
int sb_store_put_timing(struct sb_store *st, const char *provider, const char *model, const struct sb_timing *t);

#endif
