/*
 * store.c owns the SQLite state database: opening it in WAL mode with a busy
 * timeout, creating and migrating the schema, the rows a manifest's sync writes
 * (sync.c walks the manifest), the single job-state transition function, the charge
 * ledger, the upload cache, and the record of local files already hashed (looked up
 * while manifests load).
 * Writes that belong together share one transaction (BEGIN IMMEDIATE, so the
 * busy handler applies).
 */
#include "sb_store.h"
#include "sb_log.h"
#include "sb_provider.h"
#include "sb_timing.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/file.h>

#include <sqlite3.h>

struct sb_store {
    sqlite3 *db;
    char *path;
    int readonly;
    sqlite3_stmt *get_job;
    sqlite3_stmt *save_job;
    sqlite3_stmt *add_charge; /* prepared at the first charge */
    sqlite3_stmt *get_file;   /* prepared at the first lookup; */
    int no_files;             /* ... or there is no files table (an older schema, read-only) */
    int in_tx;
    long commits;
};

static const char *state_names[SB_JOB_NSTATES] = {
    "pending", "uploading", "submitting", "running", "downloading", "succeeded", "failed", "cancelled"};

const char *sb_job_state_name(enum sb_job_state s)
{
    return (unsigned)s < SB_JOB_NSTATES ? state_names[s] : "invalid";
}

int sb_job_state_parse(const char *s, enum sb_job_state *out)
{
    for (int i = 0; i < SB_JOB_NSTATES; i++) {
        if (strcmp(s, state_names[i]) == 0) {
            *out = (enum sb_job_state)i;
            return SB_OK;
        }
    }
    return SB_EINVAL;
}

#define TO(s) (1u << SB_JOB_##s)
/*
 * The changes a job's state may make (docs/architecture.md draws them). Every
 * state may end in failed or cancelled before it is final; a final one goes back
 * only by --retry-failed (or a changed job, which starts over as pending).
 */
static const unsigned transitions[SB_JOB_NSTATES] = {
    [SB_JOB_PENDING] = TO(UPLOADING) | TO(SUBMITTING) | TO(FAILED) | TO(CANCELLED),
    /* back to pending: uploads done again at the next start, or a run stopped before its submit */
    [SB_JOB_UPLOADING] = TO(SUBMITTING) | TO(PENDING) | TO(FAILED) | TO(CANCELLED),
    /* back to pending: nothing sent (stopped, refused, over budget), or in flight at a crash;
       back to uploading: the provider refused upload URLs an earlier run made (uploaded again) */
    [SB_JOB_SUBMITTING] = TO(RUNNING) | TO(PENDING) | TO(UPLOADING) | TO(FAILED) | TO(CANCELLED),
    /* back to pending: the provider no longer knows the prediction */
    [SB_JOB_RUNNING] = TO(DOWNLOADING) | TO(PENDING) | TO(FAILED) | TO(CANCELLED),
    [SB_JOB_DOWNLOADING] = TO(SUCCEEDED) | TO(PENDING) | TO(FAILED) | TO(CANCELLED),
    [SB_JOB_SUCCEEDED] = 0,
    /* --retry-failed: polled again (running) or submitted again (pending) */
    [SB_JOB_FAILED] = TO(RUNNING) | TO(PENDING),
    [SB_JOB_CANCELLED] = TO(PENDING),
};
#undef TO

int sb_job_transition_ok(enum sb_job_state from, enum sb_job_state to)
{
    if ((unsigned)from >= SB_JOB_NSTATES || (unsigned)to >= SB_JOB_NSTATES)
        return 0;
    return from == to || (transitions[from] & 1u << to) != 0;
}

int sb_jobrow_set_state(struct sb_jobrow *r, enum sb_job_state to)
{
    enum sb_job_state from = r->state;
    if (!sb_job_transition_ok(from, to)) {
        sb_error("job %s: %s -> %s is not a change a job makes (a bug): not made", r->id, sb_job_state_name(from),
                 sb_job_state_name(to));
        assert(!"illegal job state change");
        return SB_EINVAL;
    }
    if (from == to)
        return SB_OK;
    r->state = to;
    if (to == SB_JOB_SUCCEEDED || to == SB_JOB_FAILED || to == SB_JOB_CANCELLED)
        r->finished_at = sb_now_ms();
    else if (from == SB_JOB_FAILED || from == SB_JOB_CANCELLED)
        r->finished_at = 0;
    sb_debug("job %s: %s -> %s%s%s", r->id, sb_job_state_name(from), sb_job_state_name(to),
             r->error_message && to == SB_JOB_FAILED ? ": " : "",
             r->error_message && to == SB_JOB_FAILED ? r->error_message : "");
    return SB_OK;
}

const char *sb_job_status_name(enum sb_job_state s)
{
    switch (s) {
    case SB_JOB_PENDING: return "pending";
    case SB_JOB_SUCCEEDED: return "succeeded";
    case SB_JOB_FAILED: return "failed";
    case SB_JOB_CANCELLED: return "cancelled";
    default: return "running";
    }
}

/*
 * The charge ledger: one row per prediction that may have been billed, appended
 * in the transaction that learns of it and never changed or removed (triggers
 * refuse it), so that a job edited, removed, retried or cancelled keeps what it
 * cost. A prediction with outputs is charged once per job and prediction id (the
 * unique index; NULLs differ). A flagged row is a submit that reached the provider
 * with no prediction id ever seen: maybe billed, maybe not. A NULL cost (a flagged
 * row older than the ledger, whose price the state did not know) is valued at the
 * manifest's price by whoever reads it.
 */
#define CHARGES_TABLE                                                                              \
    "CREATE TABLE charges(seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, job_id TEXT NOT NULL,"     \
    "  fingerprint TEXT NOT NULL, prediction_id TEXT, images INTEGER NOT NULL, price REAL,"        \
    "  cost REAL, flagged INTEGER NOT NULL, note TEXT NOT NULL);"                                   \
    "CREATE UNIQUE INDEX charges_job ON charges(job_id, prediction_id);"

/*
 * What a state from before the ledger knew, as ledger rows: each job's recorded
 * cost (its current version's), and its submits that may have been billed unseen
 * (counted since schema 6; before it, a possible_duplicate job had at least one).
 */
#define CHARGES_FROM_JOBS                                                                          \
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) "             \
    "SELECT coalesce(finished_at, submitted_at, updated_at), id, fingerprint, prediction_id,"      \
    " CASE WHEN json_valid(output_urls) THEN json_array_length(output_urls) ELSE 0 END,"           \
    " CASE WHEN json_valid(output_urls) AND json_array_length(output_urls) > 0"                    \
    "  THEN cost / json_array_length(output_urls) END, cost, 0, 'recorded before the ledger'"      \
    " FROM jobs WHERE cost > 0 "                                                                   \
    "UNION ALL SELECT updated_at, id, fingerprint, NULL, images_requested, NULL, NULL, 1,"         \
    " 'a submit with no answer or id, recorded before the ledger'"                                 \
    " FROM jobs JOIN n ON n.i <= max(uncertain_submits, possible_duplicate)"

/* Each entry migrates from schema version i to i + 1. */
static const char *migrations[] = {
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE batches("
    "  id INTEGER PRIMARY KEY, manifest TEXT NOT NULL, synced_at INTEGER NOT NULL,"
    "  jobs INTEGER NOT NULL, added INTEGER NOT NULL, changed INTEGER NOT NULL,"
    "  removed INTEGER NOT NULL);"
    "CREATE TABLE jobs("
    "  id TEXT PRIMARY KEY, seq INTEGER NOT NULL, fingerprint TEXT NOT NULL,"
    "  state TEXT NOT NULL, in_manifest INTEGER NOT NULL DEFAULT 1,"
    "  images_requested INTEGER NOT NULL DEFAULT 1, attempts INTEGER NOT NULL DEFAULT 0,"
    "  prediction_id TEXT, submit_intent_at INTEGER, possible_duplicate INTEGER NOT NULL DEFAULT 0,"
    "  outputs TEXT, output_urls TEXT,"
    "  error_kind TEXT, error_http INTEGER, error_code TEXT, error_message TEXT,"
    "  submitted_at INTEGER, finished_at INTEGER, predict_time REAL, cost REAL NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE INDEX jobs_state ON jobs(state);"
    "CREATE TABLE uploads(sha256 TEXT PRIMARY KEY, url TEXT NOT NULL, size INTEGER,"
    "  uploaded_at INTEGER NOT NULL);",
    /* 2: what the engine and results need of each job, so the manifest's jobs are not held in memory. */
    "ALTER TABLE jobs ADD COLUMN spec TEXT;"
    "CREATE INDEX jobs_order ON jobs(in_manifest, seq);",
    /* 3: no query uses the index on state (jobs_order serves them all), and every state
     * change paid for keeping it. */
    "DROP INDEX jobs_state;",
    /* 4: local files read by earlier runs, so that an unchanged file is not read and hashed
     * again (a catalogue of large photos took minutes to hash at every resume and status). */
    "CREATE TABLE files(dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,"
    "  mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,"
    "  format INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,"
    "  seen_at INTEGER NOT NULL, PRIMARY KEY(dev, ino)) WITHOUT ROWID;",
    /* 5: the outputs of a job's earlier versions, removed once the changed job has its own
     * (a partial index on a column the row updates of a run never set: they never touch it). */
    "ALTER TABLE jobs ADD COLUMN replaced_outputs TEXT;"
    "CREATE INDEX jobs_replaced ON jobs(replaced_outputs) WHERE replaced_outputs IS NOT NULL;",
    /* 6: submits that reached the provider and may have been billed without a prediction id
     * known (an answer lost, a 5xx, a 2xx without an id): counted against max_cost, kept when
     * the job changes. */
    "ALTER TABLE jobs ADD COLUMN uncertain_submits INTEGER NOT NULL DEFAULT 0;",
    /* 7: the charge ledger (see CHARGES_TABLE), filled with what the jobs' rows knew. */
    CHARGES_TABLE
    "INSERT INTO charges(at, job_id, fingerprint, prediction_id, images, price, cost, flagged, note) "
    CHARGES_FROM_JOBS ";"
    "CREATE TRIGGER charges_no_update BEFORE UPDATE ON charges"
    "  BEGIN SELECT RAISE(ABORT, 'the charge ledger is append-only'); END;"
    "CREATE TRIGGER charges_no_delete BEFORE DELETE ON charges"
    "  BEGIN SELECT RAISE(ABORT, 'the charge ledger is append-only'); END;",
    /* 8: what runs learned of each provider's and model's processing time (sb_timing.h). */
    "CREATE TABLE IF NOT EXISTS timings(provider TEXT NOT NULL, model TEXT NOT NULL, hist TEXT NOT NULL,"
    "  updated_at INTEGER NOT NULL, PRIMARY KEY(provider, model));",
};

/* The oldest schema a read-only open can read (3 only dropped an index). */
#define READABLE_FROM 2

#define ROW_COLUMNS                                                                         \
    "id, seq, fingerprint, state, in_manifest, images_requested, attempts, prediction_id,"  \
    " possible_duplicate, outputs, output_urls, error_kind, error_http, error_code,"        \
    " error_message, submitted_at, finished_at, predict_time, cost, spec, rowid, uncertain_submits," \
    " EXISTS(SELECT 1 FROM charges c WHERE c.job_id = jobs.id AND c.prediction_id = jobs.prediction_id)," \
    " (SELECT total(cost) FROM charges c WHERE c.job_id = jobs.id AND c.flagged = 0)"

/* The first column of a one-row query, or -1. */
static int64_t query_int(struct sb_store *st, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

static int exec(struct sb_store *st, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sb_seterr(err, errlen, "%s: %s", st->path, msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return SB_EIO;
    }
    return SB_OK;
}

/* The schema's version, 0 when there is none (no meta table); SB_EIO when the file cannot be read as a database. */
static int schema_version(struct sb_store *st, int *out)
{
    sqlite3_stmt *s;
    *out = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key='schema_version'", -1, &s, NULL) != SQLITE_OK)
        return (sqlite3_errcode(st->db) & 0xff) == SQLITE_ERROR ? SB_OK : SB_EIO; /* no meta table: none */
    if (sqlite3_step(s) == SQLITE_ROW)
        *out = atoi((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return SB_OK;
}

/* What moving a state away costs, said wherever one is refused. */
#define MOVED_AWAY " (the state is damaged, or not seedbatch's; moved away, the batch starts afresh and every " \
                   "job in it is paid for again)"

/* Brings the schema up to date (a state being created has none yet). */
static int migrate(struct sb_store *st, char *err, size_t errlen)
{
    int v;
    schema_version(st, &v);
    int target = (int)SB_ARRAY_LEN(migrations);
    if (v > target)
        return sb_seterr(err, errlen, "%s was written by a newer seedbatch (schema %d, this one knows %d)",
                         st->path, v, target);
    if (v == target || st->readonly)
        return v == target || v == 0 || v >= READABLE_FROM
                   ? SB_OK
                   : sb_seterr(err, errlen, "%s needs a migration: run seedbatch run first", st->path);
    if (exec(st, "BEGIN IMMEDIATE", err, errlen) != SB_OK)
        return SB_EIO;
    for (int i = v; i < target; i++) {
        if (exec(st, migrations[i], err, errlen) != SB_OK)
            goto fail;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO meta VALUES('schema_version','%d')", target);
    if (exec(st, sql, err, errlen) != SB_OK || exec(st, "COMMIT", err, errlen) != SB_OK)
        goto fail;
    return SB_OK;
fail:
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return SB_EIO;
}

char *sb_store_default_path(const char *output_dir)
{
    return sb_asprintf("%s/.seedbatch/state.db", output_dir);
}

/* Whether the last error was a full disk or a read-only filesystem: it can succeed later. */
static int storage_full(struct sb_store *st)
{
    int c = sqlite3_errcode(st->db) & 0xff;
    return c == SQLITE_FULL || c == SQLITE_READONLY ||
           (c == SQLITE_IOERR && sb_errno_storage(sqlite3_system_errno(st->db)));
}

static int open_db(const char *path, int readonly, int create, struct sb_store **out, char *err, size_t errlen);

/*
 * A new state is made under a temporary name and renamed into place with its
 * schema: a state file that exists has one, so one without it is refused.
 */
static int create_state(const char *path, char *err, size_t errlen)
{
    char *tmp = sb_asprintf("%s.new", path), *dir = sb_dirname(path);
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < SB_ARRAY_LEN(sfx); i++) {
        char *f = sb_asprintf("%s%s", tmp, sfx[i]);
        unlink(f); /* left by a run killed while it made the state */
        free(f);
    }
    struct sb_store *st = NULL;
    int rc = open_db(tmp, 0, 1, &st, err, errlen), full = rc == SB_EFULL;
    sb_store_close(st);
    int dfd = -1;
    size_t tl = strlen(tmp);
    if (rc != SB_OK && strncmp(err, tmp, tl) == 0) {
        /* Named as the state it was to be: the temporary name means nothing to a reader. */
        char *m = sb_asprintf("%s%s", path, err + tl);
        sb_strlcpy(err, m, errlen);
        free(m);
    }
    if (rc != SB_OK)
        unlink(tmp);
    if (rc == SB_OK && rename(tmp, path) != 0) {
        full = sb_errno_storage(errno);
        rc = sb_seterr(err, errlen, "cannot make the state %s: %s", path, strerror(errno));
    }
    if (rc == SB_OK && (dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(tmp);
    free(dir);
    return rc == SB_OK ? SB_OK : full ? SB_EFULL : SB_EIO;
}

int sb_store_open(const char *path, int readonly, struct sb_store **out, char *err, size_t errlen)
{
    *out = NULL;
    if (readonly && access(path, F_OK) != 0)
        return SB_ENOENT;
    if (!readonly) {
        char *dir = sb_dirname(path);
        int rc = sb_mkdirs(dir, err, errlen);
        free(dir);
        if (rc != SB_OK)
            return rc;
        if (access(path, F_OK) != 0 && errno == ENOENT && (rc = create_state(path, err, errlen)) != SB_OK)
            return rc;
    }
    return open_db(path, readonly, 0, out, err, errlen);
}

static int open_db(const char *path, int readonly, int create, struct sb_store **out, char *err, size_t errlen)
{
    struct sb_store *st = sb_calloc(1, sizeof *st);
    st->path = sb_strdup(path);
    st->readonly = readonly;
    int flags = readonly ? SQLITE_OPEN_READONLY : create ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                                                         : SQLITE_OPEN_READWRITE;
    if (sqlite3_open_v2(path, &st->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        sb_seterr(err, errlen, "cannot open state database %s: %s", path,
                  st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 5000);
    sqlite3_extended_result_codes(st->db, 1);
    /*
     * Only a state being created may have no schema: an existing file without one
     * (emptied, truncated to nothing, another program's database) is refused before
     * anything is written to it, or every job would be queued and paid for again.
     */
    int v = 0;
    if (!create && schema_version(st, &v) != SB_OK) {
        sb_seterr(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
        goto fail;
    }
    if (!create && v == 0) {
        sb_seterr(err, errlen, "%s: not a seedbatch state: it holds no schema (an empty file, or another "
                  "program's database)" MOVED_AWAY, path);
        sb_store_close(st);
        return SB_EIO;
    }
    /* A state being made keeps a rollback journal: once committed, its one file is whole. */
    if (!readonly && ((!create && exec(st, "PRAGMA journal_mode=WAL", err, errlen) != SB_OK) ||
                      exec(st, "PRAGMA synchronous=FULL", err, errlen) != SB_OK))
        goto fail;
    if (exec(st, "PRAGMA foreign_keys=ON", err, errlen) != SB_OK)
        goto fail;
    if (migrate(st, err, errlen) != SB_OK)
        goto fail;
    /* An older state read as it is (status, --dry-run): its jobs as the current schema reads them. */
    if (readonly && v < 6 &&
        exec(st, "CREATE TEMP VIEW jobs AS SELECT *, 0 AS uncertain_submits FROM main.jobs", err, errlen) != SB_OK)
        goto fail;
    if (readonly && v < 7 &&
        exec(st, "CREATE TEMP VIEW charges(at, job_id, fingerprint, prediction_id, images, price, cost, flagged,"
             " note) AS " CHARGES_FROM_JOBS, err, errlen) != SB_OK)
        goto fail;
    if (sqlite3_prepare_v2(st->db,
            "SELECT " ROW_COLUMNS
            " FROM jobs WHERE id=?", -1, &st->get_job, NULL) != SQLITE_OK ||
        (!readonly && sqlite3_prepare_v2(st->db,
            "UPDATE jobs SET state=?2, attempts=?3, prediction_id=?4, possible_duplicate=?5, outputs=?6,"
            " output_urls=?7, error_kind=?8, error_http=?9, error_code=?10, error_message=?11,"
            " submitted_at=?12, finished_at=?13, predict_time=?14, cost=?15, updated_at=?16,"
            " uncertain_submits=?18 WHERE rowid=?17 AND id=?1", -1, &st->save_job, NULL) != SQLITE_OK)) {
        sb_seterr(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
        goto fail;
    }
    *out = st;
    return SB_OK;
fail:
    if (st->db && ((sqlite3_errcode(st->db) & 0xff) == SQLITE_NOTADB ||
                   (sqlite3_errcode(st->db) & 0xff) == SQLITE_CORRUPT)) {
        /* What to do about it, and what it costs. */
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, MOVED_AWAY);
    }
    int full = st->db && storage_full(st);
    sb_store_close(st);
    return full ? SB_EFULL : SB_EIO;
}

void sb_store_close(struct sb_store *st)
{
    if (!st)
        return;
    sqlite3_finalize(st->get_job);
    sqlite3_finalize(st->save_job);
    sqlite3_finalize(st->get_file);
    sqlite3_finalize(st->add_charge);
    if (st->db && sqlite3_close(st->db) != SQLITE_OK)
        sb_error("closing %s: %s", st->path, sqlite3_errmsg(st->db));
    free(st->path);
    free(st);
}

static char *col_text(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t ? sb_strdup((const char *)t) : NULL;
}

static void read_row(sqlite3_stmt *s, struct sb_jobrow *r)
{
    memset(r, 0, sizeof *r);
    r->id = col_text(s, 0);
    r->seq = sqlite3_column_int64(s, 1);
    const unsigned char *fp = sqlite3_column_text(s, 2);
    sb_strlcpy(r->fingerprint, fp ? (const char *)fp : "", sizeof r->fingerprint);
    const unsigned char *state = sqlite3_column_text(s, 3);
    if (!state || sb_job_state_parse((const char *)state, &r->state) != SB_OK)
        r->state = SB_JOB_PENDING;
    r->in_manifest = sqlite3_column_int(s, 4);
    r->images_requested = sqlite3_column_int(s, 5);
    r->attempts = sqlite3_column_int(s, 6);
    r->prediction_id = col_text(s, 7);
    r->possible_duplicate = sqlite3_column_int(s, 8);
    r->outputs = col_text(s, 9);
    r->output_urls = col_text(s, 10);
    r->error_kind = col_text(s, 11);
    r->error_http = sqlite3_column_int(s, 12);
    r->error_code = col_text(s, 13);
    r->error_message = col_text(s, 14);
    r->submitted_at = sqlite3_column_int64(s, 15);
    r->finished_at = sqlite3_column_int64(s, 16);
    r->predict_time = sqlite3_column_type(s, 17) == SQLITE_NULL ? -1 : sqlite3_column_double(s, 17);
    r->cost = sqlite3_column_double(s, 18);
    r->spec = col_text(s, 19);
    r->rowid = sqlite3_column_int64(s, 20);
    r->uncertain_submits = sqlite3_column_int(s, 21);
    r->charged = sqlite3_column_int(s, 22);
    r->total_cost = sqlite3_column_double(s, 23);
}

void sb_jobrow_clear(struct sb_jobrow *r)
{
    free(r->id);
    free(r->prediction_id);
    free(r->outputs);
    free(r->output_urls);
    free(r->error_kind);
    free(r->error_code);
    free(r->error_message);
    free(r->spec);
    memset(r, 0, sizeof *r);
}

int sb_store_get_version(struct sb_store *st, const char *id, const char *fingerprint, struct sb_jobrow *out)
{
    if (!st || sb_store_get_job(st, id, out) != SB_OK)
        return 0;
    if (strcmp(out->fingerprint, fingerprint) != 0) {
        sb_jobrow_clear(out);
        return 0;
    }
    return 1;
}

int sb_store_get_job(struct sb_store *st, const char *id, struct sb_jobrow *out)
{
    sqlite3_stmt *s = st->get_job;
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        read_row(s, out);
        sqlite3_reset(s);
        return SB_OK;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return SB_ENOENT;
    sb_error("reading job %s from %s: %s", id, st->path, sqlite3_errmsg(st->db));
    return SB_EIO;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static void bind_ms_or_null(sqlite3_stmt *s, int i, int64_t v)
{
    if (v > 0)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

int sb_store_save_job(struct sb_store *st, const struct sb_jobrow *r, enum sb_job_state from)
{
    sqlite3_stmt *s = st->save_job;
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, sb_job_state_name(r->state), -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, r->attempts);
    bind_text_or_null(s, 4, r->prediction_id);
    sqlite3_bind_int(s, 5, r->possible_duplicate);
    bind_text_or_null(s, 6, r->outputs);
    bind_text_or_null(s, 7, r->output_urls);
    bind_text_or_null(s, 8, r->error_kind);
    if (r->error_http)
        sqlite3_bind_int(s, 9, r->error_http);
    else
        sqlite3_bind_null(s, 9);
    bind_text_or_null(s, 10, r->error_code);
    bind_text_or_null(s, 11, r->error_message);
    bind_ms_or_null(s, 12, r->submitted_at);
    bind_ms_or_null(s, 13, r->finished_at);
    if (r->predict_time >= 0)
        sqlite3_bind_double(s, 14, r->predict_time);
    else
        sqlite3_bind_null(s, 14);
    sqlite3_bind_double(s, 15, r->cost);
    sqlite3_bind_int64(s, 16, sb_now_ms());
    sqlite3_bind_int64(s, 17, r->rowid);
    sqlite3_bind_int(s, 18, r->uncertain_submits);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        sb_error("job %s: cannot record %s -> %s in %s: %s", r->id, sb_job_state_name(from),
                 sb_job_state_name(r->state), st->path, sqlite3_errmsg(st->db));
        return storage_full(st) ? SB_EFULL : SB_EIO;
    }
    if (sqlite3_changes(st->db) == 0)
        return SB_ENOENT;
    return SB_OK;
}

int sb_store_transition(struct sb_store *st, const char *id, enum sb_job_state to,
                        const struct sb_job_error *e)
{
    struct sb_jobrow row;
    int rc = sb_store_get_job(st, id, &row);
    if (rc != SB_OK)
        return rc;
    enum sb_job_state from = row.state;
    row.state = to;
    sb_freep(&row.error_kind);
    sb_freep(&row.error_code);
    sb_freep(&row.error_message);
    row.error_http = 0;
    if (e) {
        row.error_kind = e->kind ? sb_strdup(e->kind) : NULL;
        row.error_code = e->code ? sb_strdup(e->code) : NULL;
        row.error_message = e->message ? sb_strdup(e->message) : NULL;
        row.error_http = e->http_status;
    }
    if (to == SB_JOB_SUCCEEDED || to == SB_JOB_FAILED || to == SB_JOB_CANCELLED)
        row.finished_at = sb_now_ms();
    else
        row.finished_at = 0;
    rc = sb_store_save_job(st, &row, from);
    sb_jobrow_clear(&row);
    return rc;
}

int sb_store_begin(struct sb_store *st)
{
    if (st->in_tx)
        return SB_OK;
    /* A commit that failed (out of memory, say) leaves its transaction open when its
     * rollback failed too: that rollback is tried again, or nothing could begin. */
    if (!sqlite3_get_autocommit(st->db))
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        sb_error("%s: cannot begin a transaction: %s", st->path, sqlite3_errmsg(st->db));
        return SB_EIO;
    }
    st->in_tx = 1;
    return SB_OK;
}

int sb_store_commit(struct sb_store *st, char *err, size_t errlen)
{
    if (!st->in_tx)
        return SB_OK;
    st->in_tx = 0;
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        sb_seterr(err, errlen, "%s: cannot commit: %s", st->path, sqlite3_errmsg(st->db));
        int full = storage_full(st);
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return full ? SB_EFULL : SB_EIO;
    }
    st->commits++;
    return SB_OK;
}

int sb_store_in_transaction(const struct sb_store *st)
{
    return st->in_tx;
}

/*
 * A changed job's outputs so far join those of its versions before (a job may change
 * twice before it succeeds); text that is not a JSON array leaves the list as it was.
 */
#define REPLACED_OUTPUTS                                                                          \
    "CASE WHEN outputs IS NULL OR json_valid(outputs)=0 OR json_type(outputs)<>'array'"             \
    "   OR json_array_length(outputs)=0 THEN replaced_outputs"                                       \
    " WHEN replaced_outputs IS NULL OR json_valid(replaced_outputs)=0"                              \
    "   OR json_type(replaced_outputs)<>'array' THEN outputs"                                        \
    " ELSE (SELECT json_group_array(value) FROM (SELECT value FROM json_each(replaced_outputs)"     \
    "   UNION SELECT value FROM json_each(outputs))) END"

/*
 * A recorded file no run has looked at for this long is forgotten: files replaced
 * (new inodes) or deleted would otherwise pile up in a state cron runs for years. A
 * file in use is marked seen at most once a day.
 */
#define FILES_KEPT_MS (30LL * 24 * 3600 * 1000)
#define FILES_SEEN_EVERY_MS (24LL * 3600 * 1000)

struct sb_store_sync {
    struct sb_store *st;
    sqlite3_stmt *ins, *keep, *reset;
    sqlite3_stmt *put_file, *seen_file;
    int64_t now;
    int fresh;          /* the state held no job when the sync began: every job is new */
};

void sb_store_sync_abort(struct sb_store_sync *x)
{
    if (!x)
        return;
    sqlite3_finalize(x->ins);
    sqlite3_finalize(x->keep);
    sqlite3_finalize(x->reset);
    sqlite3_finalize(x->put_file);
    sqlite3_finalize(x->seen_file);
    sqlite3_exec(x->st->db, "ROLLBACK", NULL, NULL, NULL);
    free(x);
}

int sb_store_sync_begin(struct sb_store *st, struct sb_store_sync **out, char *err, size_t errlen)
{
    *out = NULL;
    if (exec(st, "BEGIN IMMEDIATE", err, errlen) != SB_OK)
        return SB_EIO;
    struct sb_store_sync *x = sb_calloc(1, sizeof *x);
    x->st = st;
    x->now = sb_now_ms();
    char seen[160];
    snprintf(seen, sizeof seen, "UPDATE files SET seen_at=?3 WHERE dev=?1 AND ino=?2 AND seen_at<?3-%lld",
             FILES_SEEN_EVERY_MS);
    /* Jobs still marked 2 when the sync ends have left the manifest. */
    if (exec(st, "UPDATE jobs SET in_manifest=2 WHERE in_manifest=1", err, errlen) != SB_OK)
        goto fail;
    if (sqlite3_prepare_v2(st->db,
            "INSERT INTO jobs(id, seq, fingerprint, state, images_requested, created_at, updated_at, spec)"
            " VALUES(?1, ?2, ?3, 'pending', ?4, ?6, ?6, ?5)", -1, &x->ins, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
            "UPDATE jobs SET seq=?2, in_manifest=1, images_requested=?4, spec=?5 WHERE id=?1",
            -1, &x->keep, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
            "UPDATE jobs SET seq=?2, in_manifest=1, fingerprint=?3, images_requested=?4, spec=?5, attempts=0,"
            " prediction_id=NULL, submit_intent_at=NULL, possible_duplicate=0, outputs=NULL,"
            " replaced_outputs=" REPLACED_OUTPUTS ","
            " output_urls=NULL, submitted_at=NULL, predict_time=NULL, cost=0 WHERE id=?1",
            -1, &x->reset, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO files(dev, ino, seen_at, size, mtime_ns, ctime_ns,"
                           " sha256, format, width, height) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)", -1,
                           &x->put_file, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db, seen, -1, &x->seen_file, NULL) != SQLITE_OK) {
        sb_seterr(err, errlen, "%s: %s", st->path, sqlite3_errmsg(st->db));
        goto fail;
    }
    /* Ids are unique within a manifest: in a state without jobs, none needs looking up. */
    x->fresh = query_int(st, "SELECT NOT EXISTS(SELECT 1 FROM jobs)") == 1;
    *out = x;
    return SB_OK;
fail:
    sb_store_sync_abort(x);
    return SB_EIO;
}

int sb_store_sync_job(struct sb_store_sync *x, const struct sb_kept_job *j, int64_t seq,
                      enum sb_sync_outcome *how, int *failed_now, char *err, size_t errlen)
{
    struct sb_store *st = x->st;
    struct sb_jobrow row;
    memset(&row, 0, sizeof row);
    *failed_now = 0;
    int g = x->fresh ? SB_ENOENT : sb_store_get_job(st, j->id, &row);
    sqlite3_stmt *s;
    int need_pending = 0;
    if (g == SB_ENOENT) {
        s = x->ins;
        *how = SB_SYNC_ADDED;
    } else if (g != SB_OK) {
        return sb_seterr(err, errlen, "%s: cannot read job %s", st->path, j->id);
    } else if (strcmp(row.fingerprint, j->fingerprint) == 0) {
        s = x->keep;
        *how = SB_SYNC_KEPT;
    } else {
        if (row.prediction_id && (row.state == SB_JOB_RUNNING || row.state == SB_JOB_DOWNLOADING))
            sb_warn("job %s changed while its prediction %s was running: it is queued again",
                    j->id, row.prediction_id);
        s = x->reset;
        need_pending = 1;
        *how = SB_SYNC_CHANGED;
    }
    int was_failed_invalid = g == SB_OK && row.state == SB_JOB_FAILED && row.error_kind &&
                             strcmp(row.error_kind, SB_EK_INVALID_INPUT) == 0 && !need_pending;
    sb_jobrow_clear(&row);
    /* The three statements number their parameters alike: ?1 id, ?2 seq, ?3 fingerprint,
     * ?4 images requested, ?5 spec, ?6 now (each uses what it needs). */
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, j->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, seq);
    sqlite3_bind_text(s, 3, j->fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, j->images_requested);
    sqlite3_bind_text(s, 5, j->spec, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s) >= 6)
        sqlite3_bind_int64(s, 6, x->now);
    int step = sqlite3_step(s);
    if (step != SQLITE_DONE)
        return sb_seterr(err, errlen, "%s: job %s: %s", st->path, j->id, sqlite3_errmsg(st->db));
    int trc = SB_OK;
    if (j->invalid) {
        if (!was_failed_invalid) {
            struct sb_job_error e = {SB_EK_INVALID_INPUT, 0, NULL, j->invalid};
            trc = sb_store_transition(st, j->id, SB_JOB_FAILED, &e);
            *failed_now = 1;
        }
    } else if (need_pending || was_failed_invalid) {
        trc = sb_store_transition(st, j->id, SB_JOB_PENDING, NULL);
    }
    if (trc != SB_OK)
        return sb_seterr(err, errlen, "%s: cannot update job %s", st->path, j->id);
    return SB_OK;
}

int sb_store_sync_file(struct sb_store_sync *x, const struct sb_localfile *f)
{
    if (!f->to_remember && !f->known)
        return SB_OK;
    sqlite3_stmt *q = f->to_remember ? x->put_file : x->seen_file;
    sqlite3_bind_int64(q, 1, f->stamp.dev);
    sqlite3_bind_int64(q, 2, f->stamp.ino);
    sqlite3_bind_int64(q, 3, x->now);
    if (f->to_remember) {
        sqlite3_bind_int64(q, 4, f->stamp.size);
        sqlite3_bind_int64(q, 5, f->stamp.mtime_ns);
        sqlite3_bind_int64(q, 6, f->stamp.ctime_ns);
        sqlite3_bind_text(q, 7, f->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_int(q, 8, (int)f->info.format);
        sqlite3_bind_int(q, 9, f->info.width);
        sqlite3_bind_int(q, 10, f->info.height);
    }
    int rc = sqlite3_step(q) == SQLITE_DONE ? SB_OK : SB_EIO;
    sqlite3_reset(q);
    return rc;
}

int sb_store_sync_end(struct sb_store_sync *x, const char *manifest, int n_jobs, int added, int changed,
                      char ***removed_ids, int *removed, char *err, size_t errlen)
{
    struct sb_store *st = x->st;
    sqlite3_stmt *gone = NULL, *batch = NULL;
    int rc = SB_EIO;
    char sql[160];
    *removed_ids = NULL;
    *removed = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT id FROM jobs WHERE in_manifest=2 ORDER BY seq", -1, &gone,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(st->db,
            "INSERT INTO batches(manifest, synced_at, jobs, added, changed, removed) VALUES(?,?,?,?,?,?)",
            -1, &batch, NULL) != SQLITE_OK) {
        sb_seterr(err, errlen, "%s: %s", st->path, sqlite3_errmsg(st->db));
        goto out;
    }
    /* Jobs that left the manifest stay in the state, flagged, and are reported. */
    while (sqlite3_step(gone) == SQLITE_ROW) {
        *removed_ids = sb_realloc(*removed_ids, (size_t)(*removed + 1) * sizeof(char *));
        (*removed_ids)[(*removed)++] = sb_strdup((const char *)sqlite3_column_text(gone, 0));
    }
    snprintf(sql, sizeof sql, "UPDATE jobs SET in_manifest=0, seq=seq+%d WHERE in_manifest=2", n_jobs);
    if (exec(st, sql, err, errlen) != SB_OK)
        goto out;
    sqlite3_bind_text(batch, 1, manifest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(batch, 2, x->now);
    sqlite3_bind_int(batch, 3, n_jobs);
    sqlite3_bind_int(batch, 4, added);
    sqlite3_bind_int(batch, 5, changed);
    sqlite3_bind_int(batch, 6, *removed);
    if (sqlite3_step(batch) != SQLITE_DONE) {
        sb_seterr(err, errlen, "%s: %s", st->path, sqlite3_errmsg(st->db));
        goto out;
    }
    snprintf(sql, sizeof sql, "DELETE FROM files WHERE seen_at<%lld", (long long)(x->now - FILES_KEPT_MS));
    if (exec(st, sql, err, errlen) != SB_OK || exec(st, "COMMIT", err, errlen) != SB_OK)
        goto out;
    rc = SB_OK;
out:
    sqlite3_finalize(gone);
    sqlite3_finalize(batch);
    if (rc == SB_OK) {
        sqlite3_finalize(x->ins);
        sqlite3_finalize(x->keep);
        sqlite3_finalize(x->reset);
        sqlite3_finalize(x->put_file);
        sqlite3_finalize(x->seen_file);
        free(x);
    } else {
        sb_store_sync_abort(x);
    }
    return rc;
}

int sb_store_file_lookup(void *ud, const struct sb_filestamp *s, char sha256[65], struct sb_imageinfo *info)
{
    struct sb_store *st = ud;
    if (st->no_files)
        return 0;
    if (!st->get_file && sqlite3_prepare_v2(st->db,
            "SELECT sha256, format, width, height FROM files"
            " WHERE dev=? AND ino=? AND size=? AND mtime_ns=? AND ctime_ns=?", -1, &st->get_file, NULL) != SQLITE_OK) {
        st->no_files = 1;
        return 0;
    }
    sqlite3_stmt *q = st->get_file;
    sqlite3_bind_int64(q, 1, s->dev);
    sqlite3_bind_int64(q, 2, s->ino);
    sqlite3_bind_int64(q, 3, s->size);
    sqlite3_bind_int64(q, 4, s->mtime_ns);
    sqlite3_bind_int64(q, 5, s->ctime_ns);
    int found = 0;
    if (sqlite3_step(q) == SQLITE_ROW) {
        const char *sha = (const char *)sqlite3_column_text(q, 0);
        int fmt = sqlite3_column_int(q, 1);
        /* A damaged row is no answer: the file is read instead. */
        if (sha && strlen(sha) == 64 && strspn(sha, "0123456789abcdef") == 64 && fmt > SB_IMG_UNKNOWN &&
            fmt <= SB_IMG_GIF) {
            memcpy(sha256, sha, 65);
            info->format = (enum sb_image_format)fmt;
            info->width = sqlite3_column_int(q, 2);
            info->height = sqlite3_column_int(q, 3);
            found = 1;
        }
    }
    sqlite3_reset(q);
    return found;
}

static int each_row(struct sb_store *st, const char *sql, int64_t a, int64_t b,
                    int (*fn)(const struct sb_jobrow *r, void *ud), void *ud)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK) {
        sb_error("%s: %s", st->path, sqlite3_errmsg(st->db));
        return SB_EIO;
    }
    if (sqlite3_bind_parameter_count(s) >= 1)
        sqlite3_bind_int64(s, 1, a);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, b);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct sb_jobrow r;
        read_row(s, &r);
        stop = fn(&r, ud);
        sb_jobrow_clear(&r);
    }
    if (!stop && rc != SQLITE_DONE) {
        sb_error("%s: %s", st->path, sqlite3_errmsg(st->db));
        sqlite3_finalize(s);
        return SB_EIO;
    }
    sqlite3_finalize(s);
    return SB_OK;
}

int sb_store_each_job(struct sb_store *st, int (*fn)(const struct sb_jobrow *r, void *ud), void *ud)
{
    return each_row(st, "SELECT " ROW_COLUMNS " FROM jobs ORDER BY in_manifest DESC, seq", 0, 0, fn, ud);
}

int sb_store_each_manifest_job(struct sb_store *st, int (*fn)(const struct sb_jobrow *r, void *ud), void *ud)
{
    return each_row(st, "SELECT " ROW_COLUMNS " FROM jobs WHERE in_manifest=1 ORDER BY seq", 0, 0, fn, ud);
}

int sb_store_each_manifest_range(struct sb_store *st, int64_t from, int64_t to,
                                 int (*fn)(const struct sb_jobrow *r, void *ud), void *ud)
{
    return each_row(st, "SELECT " ROW_COLUMNS " FROM jobs WHERE in_manifest=1 AND seq>=?1 AND seq<?2 ORDER BY seq",
                    from, to, fn, ud);
}

int sb_store_each_pending(struct sb_store *st, int64_t after_seq, int limit,
                          int (*fn)(const struct sb_jobrow *r, void *ud), void *ud)
{
    return each_row(st, "SELECT " ROW_COLUMNS " FROM jobs WHERE in_manifest=1 AND seq>?1 AND state='pending'"
                    " ORDER BY seq LIMIT ?2", after_seq, limit, fn, ud);
}

int sb_store_each_in_states(struct sb_store *st, unsigned states,
                            int (*fn)(const struct sb_jobrow *r, void *ud), void *ud)
{
    struct sb_buf sql;
    sb_buf_init(&sql, 4096);
    sb_buf_puts(&sql, "SELECT " ROW_COLUMNS " FROM jobs WHERE in_manifest=1 AND state IN (''");
    for (int i = 0; i < SB_JOB_NSTATES; i++)
        if (states & 1u << i)
            sb_buf_printf(&sql, ",'%s'", sb_job_state_name((enum sb_job_state)i));
    sb_buf_puts(&sql, ") ORDER BY seq");
    int rc = each_row(st, sql.data, 0, 0, fn, ud);
    sb_buf_free(&sql);
    return rc;
}

int sb_store_each_replaced(struct sb_store *st,
                           void (*fn)(const char *id, const char *outputs, const char *replaced, void *ud), void *ud)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "SELECT id, outputs, replaced_outputs FROM jobs"
                           " WHERE replaced_outputs IS NOT NULL AND state='succeeded'", -1, &s, NULL) != SQLITE_OK) {
        sb_error("%s: %s", st->path, sqlite3_errmsg(st->db));
        return SB_EIO;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        fn((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
           (const char *)sqlite3_column_text(s, 2), ud);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        sb_error("%s: %s", st->path, sqlite3_errmsg(st->db));
        return SB_EIO;
    }
    char err[SB_ERRLEN];
    if (exec(st, "UPDATE jobs SET replaced_outputs=NULL WHERE replaced_outputs IS NOT NULL AND state='succeeded'",
             err, sizeof err) != SB_OK) {
        sb_error("%s", err);
        return SB_EIO;
    }
    return SB_OK;
}

int sb_jobrow_repollable(const struct sb_jobrow *r)
{
    if (r->state != SB_JOB_FAILED || !r->prediction_id || !*r->prediction_id || !r->error_kind)
        return 0;
    if (strcmp(r->error_kind, SB_EK_NETWORK) != 0 && strcmp(r->error_kind, SB_EK_SERVER) != 0 &&
        strcmp(r->error_kind, SB_EK_RATE_LIMITED) != 0)
        return 0;
    if (r->error_message && strncmp(r->error_message, SB_GONE_MSG, strlen(SB_GONE_MSG)) == 0)
        return 0;
    /* Its outputs were listed: the prediction completed; a URL that failed gives way to a fresh one. */
    if (r->output_urls)
        return 1;
    if (r->error_http == 400 || r->error_http == 404 || r->error_http == 410)
        return 0;
    /* A row does not say its provider: a code any of them gives for "no such prediction". */
    return !sb_provider_gone_code(NULL, r->error_code);
}

int sb_store_case_twins(struct sb_store *st, char **a, char **b, int *groups)
{
    sqlite3_stmt *s;
    *a = *b = NULL;
    *groups = 0;
    /* One row a group, in manifest order, by the outputs' path without {k} and the
       extension: the job's output_name ("out" in its spec) or its id. SQLite's lower()
       folds ASCII letters only, which is all an id may hold (and all a slug holds). */
    if (sqlite3_prepare_v2(st->db,
                           "SELECT group_concat(id, '/') FROM"
                           " (SELECT id, seq, lower(coalesce(CASE WHEN json_valid(spec) THEN"
                           " json_extract(spec, '$.out') END, id || '_{k}')) AS path"
                           " FROM jobs WHERE in_manifest=1 ORDER BY seq)"
                           " GROUP BY path HAVING count(*) > 1 ORDER BY min(seq)",
                           -1, &s, NULL) != SQLITE_OK) {
        sb_error("%s: cannot read the job ids: %s", st->path, sqlite3_errmsg(st->db));
        return SB_EIO;
    }
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *ids = (const char *)sqlite3_column_text(s, 0);
        const char *slash = ids ? strchr(ids, '/') : NULL;
        if (slash && !*a) {
            *a = sb_strndup(ids, (size_t)(slash - ids));
            *b = sb_strndup(slash + 1, strcspn(slash + 1, "/"));
        }
        ++*groups;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        sb_error("%s: cannot read the job ids: %s", st->path, sqlite3_errmsg(st->db));
        sb_freep(a);
        sb_freep(b);
        *groups = 0;
        return SB_EIO;
    }
    return SB_OK;
}

int sb_store_counts(struct sb_store *st, int counts[SB_JOB_NSTATES], long *pending_images)
{
    sqlite3_stmt *s;
    memset(counts, 0, SB_JOB_NSTATES * sizeof *counts);
    *pending_images = 0;
    if (sqlite3_prepare_v2(st->db, "SELECT state, count(*), total(images_requested) FROM jobs WHERE in_manifest=1"
                           " GROUP BY state", -1, &s, NULL) != SQLITE_OK)
        return SB_EIO;
    while (sqlite3_step(s) == SQLITE_ROW) {
        enum sb_job_state js;
        const unsigned char *name = sqlite3_column_text(s, 0);
        if (name && sb_job_state_parse((const char *)name, &js) == SB_OK) {
            counts[js] += sqlite3_column_int(s, 1);
            if (js == SB_JOB_PENDING)
                *pending_images += (long)sqlite3_column_double(s, 2);
        }
    }
    sqlite3_finalize(s);
    return SB_OK;
}

int sb_store_add_charge(struct sb_store *st, const struct sb_charge *c)
{
    if (!st->add_charge &&
        sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO charges(at, job_id, fingerprint, prediction_id, images,"
                           " price, cost, flagged, note) VALUES(?,?,?,?,?,?,?,?,?)", -1, &st->add_charge,
                           NULL) != SQLITE_OK)
        return SB_EIO;
    sqlite3_stmt *s = st->add_charge;
    sqlite3_bind_int64(s, 1, c->at);
    sqlite3_bind_text(s, 2, c->job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, c->fingerprint, -1, SQLITE_STATIC);
    bind_text_or_null(s, 4, c->prediction_id);
    sqlite3_bind_int(s, 5, c->images);
    sqlite3_bind_double(s, 6, c->price);
    sqlite3_bind_double(s, 7, c->cost);
    sqlite3_bind_int(s, 8, c->flagged);
    sqlite3_bind_text(s, 9, c->note ? c->note : "", -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int added = sqlite3_changes(st->db) > 0;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_DONE)
        return storage_full(st) ? SB_EFULL : SB_EIO;
    return added;
}

/* A charge's cost: as recorded, or (unknown when recorded) its images at the reader's price. */
#define CHARGE_COST "coalesce(cost, images * ?1)"

int sb_store_spend(struct sb_store *st, double price, struct sb_spend *out)
{
    sqlite3_stmt *s;
    memset(out, 0, sizeof *out);
    if (sqlite3_prepare_v2(st->db, "SELECT total(CASE WHEN flagged = 0 THEN " CHARGE_COST " END),"
                           " total(CASE WHEN flagged THEN " CHARGE_COST " END), total(flagged != 0), count(*),"
                           " total(CASE WHEN flagged = 0 THEN images END) FROM charges", -1, &s, NULL) != SQLITE_OK)
        return SB_EIO;
    sqlite3_bind_double(s, 1, price);
    int rc = sqlite3_step(s) == SQLITE_ROW ? SB_OK : SB_EIO;
    if (rc == SB_OK) {
        out->spent = sqlite3_column_double(s, 0);
        out->flagged_cost = sqlite3_column_double(s, 1);
        out->flagged = (long)sqlite3_column_double(s, 2);
        out->charges = sqlite3_column_int64(s, 3);
        out->images = (long)sqlite3_column_double(s, 4);
    }
    sqlite3_finalize(s);
    return rc;
}

int sb_store_each_charge(struct sb_store *st, double price, int (*fn)(const struct sb_charge *c, void *ud), void *ud)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "SELECT at, job_id, fingerprint, prediction_id, images, coalesce(price, ?1), "
                           CHARGE_COST ", flagged, note FROM charges ORDER BY at, rowid", -1, &s, NULL) != SQLITE_OK)
        return SB_EIO;
    sqlite3_bind_double(s, 1, price);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct sb_charge c = {
            .at = sqlite3_column_int64(s, 0),
            .job_id = (const char *)sqlite3_column_text(s, 1),
            .fingerprint = (const char *)sqlite3_column_text(s, 2),
            .prediction_id = (const char *)sqlite3_column_text(s, 3),
            .images = sqlite3_column_int(s, 4),
            .price = sqlite3_column_double(s, 5),
            .cost = sqlite3_column_double(s, 6),
            .flagged = sqlite3_column_int(s, 7),
            .note = (const char *)sqlite3_column_text(s, 8),
        };
        if (fn(&c, ud))
            break;
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SB_OK : SB_EIO;
}

char *sb_store_upload_url(struct sb_store *st, const char *sha256, int64_t ttl_ms)
{
    sqlite3_stmt *s;
    char *url = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT url FROM uploads WHERE sha256=? AND uploaded_at>=?",
                           -1, &s, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(s, 1, sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, sb_now_ms() - ttl_ms);
    if (sqlite3_step(s) == SQLITE_ROW)
        url = col_text(s, 0);
    sqlite3_finalize(s);
    return url;
}

int sb_store_put_upload(struct sb_store *st, const char *sha256, const char *url, int64_t size)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO uploads VALUES(?,?,?,?)", -1, &s, NULL) != SQLITE_OK)
        return SB_EIO;
    sqlite3_bind_text(s, 1, sha256, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, url, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, size);
    sqlite3_bind_int64(s, 4, sb_now_ms());
    int rc = sqlite3_step(s) == SQLITE_DONE ? SB_OK : SB_EIO;
    if (rc != SB_OK)
        sb_error("%s: cannot record upload: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    return rc;
}

int sb_store_each_upload(struct sb_store *st, int64_t ttl_ms,
                         void (*fn)(const char *sha256, const char *url, int64_t uploaded_at, void *ud), void *ud)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "SELECT sha256, url, uploaded_at FROM uploads WHERE uploaded_at>=?", -1, &s,
                           NULL) != SQLITE_OK)
        return SB_EIO;
    sqlite3_bind_int64(s, 1, sb_now_ms() - ttl_ms);
    while (sqlite3_step(s) == SQLITE_ROW)
        fn((const char *)sqlite3_column_text(s, 0), (const char *)sqlite3_column_text(s, 1),
           sqlite3_column_int64(s, 2), ud);
    sqlite3_finalize(s);
    return SB_OK;
}

int sb_store_drop_upload(struct sb_store *st, const char *sha256)
{
    sqlite3_stmt *s;
    if (sqlite3_prepare_v2(st->db, "DELETE FROM uploads WHERE sha256=?", -1, &s, NULL) != SQLITE_OK)
        return SB_EIO;
    sqlite3_bind_text(s, 1, sha256, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s) == SQLITE_DONE ? SB_OK : SB_EIO;
    if (rc != SB_OK)
        sb_error("%s: cannot forget an upload: %s", st->path, sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    return rc;
}

int sb_store_lock(const char *path, int *fd, char *err, size_t errlen)
{
    char *lock = sb_asprintf("%s.lock", path);
    int rc = SB_OK;
    *fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (*fd < 0) {
        sb_seterr(err, errlen, "cannot open lock file %s: %s", lock, strerror(errno));
        rc = SB_EIO;
    } else if (flock(*fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK) {
            sb_seterr(err, errlen, "%s is in use (lock %s is held)", path, lock);
            rc = SB_EBUSY;
        } else {
            /* ENOLCK, EOPNOTSUPP: a network or FUSE filesystem without locks. No writer can be safe there. */
            sb_seterr(err, errlen, "cannot lock %s: %s; its filesystem may not support locks: keep the state "
                      "on a local disk (--state PATH)", lock, strerror(errno));
            rc = SB_EIO;
        }
        close(*fd);
        *fd = -1;
    }
    free(lock);
    return rc;
}

int sb_store_get_timing(struct sb_store *st, const char *provider, const char *model, struct sb_timing *t)
{
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(st->db, "SELECT hist, updated_at FROM timings WHERE provider=? AND model=?", -1, &q,
                           NULL) != SQLITE_OK)
        return SB_ENOENT; /* an older schema, read-only */
    sqlite3_bind_text(q, 1, provider, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 2, model, -1, SQLITE_STATIC);
    int rc = SB_ENOENT;
    if (sqlite3_step(q) == SQLITE_ROW &&
        sb_timing_decode((const char *)sqlite3_column_text(q, 0), t) == SB_OK) {
        t->updated_at = sqlite3_column_int64(q, 1);
        rc = SB_OK;
    }
    sqlite3_finalize(q);
    return rc;
}

int sb_store_put_timing(struct sb_store *st, const char *provider, const char *model, const struct sb_timing *t)
{
    sqlite3_stmt *q;
    char *hist = sb_timing_encode(t);
    int rc = SB_EIO;
    if (hist && sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO timings(provider, model, hist, updated_at)"
                                   " VALUES(?,?,?,?)", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_text(q, 1, provider, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 2, model, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, hist, -1, SQLITE_STATIC);
        sqlite3_bind_int64(q, 4, t->updated_at > 0 ? t->updated_at : sb_now_ms());
        rc = sqlite3_step(q) == SQLITE_DONE ? SB_OK : storage_full(st) ? SB_EFULL : SB_EIO;
        sqlite3_finalize(q);
    }
    free(hist);
    return rc;
}
