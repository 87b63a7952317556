/* store: schema and migrations, sync (keep, re-queue, report removed), transitions, upload cache. */
#include "sb_store.h"
#include "sb_timing.h"
#include "sb_sync.h"
#include "sb_log.h"
#include "t.h"
#include "t_jobs.h"

#include <sqlite3.h>
#include <unistd.h>

static char *dir;

/* A manifest from text; keep_jobs as a run loads it (its checked jobs kept for the sync). */
static struct sb_manifest *manifest_keep(const char *text, int keep_jobs)
{
    char err[SB_ERRLEN];
    struct sb_manifest *m = NULL;
    struct sb_load_opts o = {.keep_jobs = keep_jobs};
    if (sb_manifest_parse_with("m.yaml", dir, text, strlen(text), &o, &m, err, sizeof err) != SB_OK)
        fprintf(stderr, "manifest refused: %s\n", err);
    return m;
}

static struct sb_manifest *manifest(const char *text)
{
    return manifest_keep(text, 0);
}

/* One integer from an SQL query on the database file, through a separate connection. */
static long long q(const char *db, const char *sql)
{
    sqlite3 *h;
    sqlite3_stmt *s;
    long long v = -1;
    if (sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        return -2;
    if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

static char *qs(const char *db, const char *sql)
{
    sqlite3 *h;
    sqlite3_stmt *s;
    char *v = NULL;
    sqlite3_open_v2(db, &h, SQLITE_OPEN_READONLY, NULL);
    if (sqlite3_prepare_v2(h, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
        sqlite3_column_text(s, 0))
        v = sb_strdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

#define HEAD "version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n"

/* The jobs of a state, every column that comes from the manifest, as one text. */
static char *rows(const char *db)
{
    return qs(db, "SELECT group_concat(id || '|' || seq || '|' || fingerprint || '|' || state || '|' ||"
                  " images_requested || '|' || spec || '|' || ifnull(error_kind, '') || '|' ||"
                  " ifnull(error_message, ''), char(10)) FROM (SELECT * FROM jobs ORDER BY seq)");
}

static int count_kept(const struct sb_kept_job *k, int index, void *ud)
{
    (void)k, (void)index;
    ++*(int *)ud;
    return 0;
}

/* A run syncs the jobs its checking reading kept; the rows must be those a second reading makes. */
static void test_kept(void)
{
    static const char *text = HEAD "defaults: {output_format: png}\njobs:\n"
        "  - {id: a, prompt: \"say \\\"hi\\\"\\ttab\", images: [a.png]}\n"
        "  - {prompt: no id, images: [a.png, \"https://x.example/c.png\"], params: {max_images: 3}}\n"
        "  - {id: bad, prompt: four, images: [tiny.png]}\n"
        "  - foreach: \"*.png\"\n    id: \"f-{stem}\"\n    prompt: \"{name}\"\n    images: [\"{path}\"]\n";
    char db[2][600], err[SB_ERRLEN];
    char *got[2];
    for (int keep = 0; keep < 2; keep++) {
        struct sb_manifest *m = manifest_keep(text, keep);
        CHECK(m != NULL);
        if (!m)
            return;
        CHECK_INT(m->n_jobs, 5);
        int n = 0;
        CHECK_INT(sb_manifest_each_kept(m, count_kept, &n, err, sizeof err), keep ? SB_OK : SB_ENOENT);
        CHECK_INT(n, keep ? 5 : 0);
        snprintf(db[keep], sizeof db[keep], "%s/kept%d/state.db", dir, keep);
        struct sb_store *st = NULL;
        struct sb_sync_report r;
        CHECK_INT(sb_store_open(db[keep], 0, &st, err, sizeof err), SB_OK);
        CHECK_INT(sb_sync(st, m, &r, err, sizeof err), SB_OK);
        CHECK_INT(r.added, 5);
        CHECK_INT(r.invalid, 2);
        sb_sync_report_clear(&r);
        /* Synced again from the kept jobs: nothing changes. */
        CHECK_INT(sb_sync(st, m, &r, err, sizeof err), SB_OK);
        CHECK_INT(r.kept, 5);
        CHECK_INT(r.added + r.changed, 0);
        sb_sync_report_clear(&r);
        sb_store_close(st);
        sb_manifest_free(m);
        got[keep] = rows(db[keep]);
    }
    CHECK(got[0] && strlen(got[0]) > 100);
    CHECK_STR(got[1], got[0]);
    free(got[0]);
    free(got[1]);
}

/* Which failed jobs --retry-failed polls again rather than submitting again. */
static void test_repollable(void)
{
    struct {
        enum sb_job_state state;
        const char *id, *kind, *code;
        int http, want;
    } cases[] = {
        {SB_JOB_FAILED, "p1", SB_EK_NETWORK, NULL, 0, 1},        /* polls or downloads cut off */
        {SB_JOB_FAILED, "p1", SB_EK_SERVER, NULL, 503, 1},
        {SB_JOB_FAILED, "p1", SB_EK_SERVER, NULL, 0, 1},         /* outputs not written (disk) */
        {SB_JOB_FAILED, "p1", SB_EK_RATE_LIMITED, NULL, 429, 1},
        {SB_JOB_FAILED, "p1", SB_EK_SERVER, NULL, 404, 0},       /* no longer known, or expired */
        {SB_JOB_FAILED, "p1", SB_EK_SERVER, NULL, 410, 0},
        {SB_JOB_FAILED, "p1", SB_EK_SERVER, NULL, 400, 0},
        {SB_JOB_FAILED, "p1", SB_EK_SERVER, "404001", 200, 0},
        {SB_JOB_FAILED, "p1", SB_EK_REJECTED, "1039", 0, 0},     /* the provider failed it */
        {SB_JOB_FAILED, "p1", SB_EK_TIMEOUT, NULL, 0, 0},        /* still running at job_timeout */
        {SB_JOB_FAILED, "p1", SB_EK_INVALID_INPUT, NULL, 422, 0},
        {SB_JOB_FAILED, NULL, SB_EK_NETWORK, NULL, 0, 0},        /* no prediction was made */
        {SB_JOB_FAILED, "", SB_EK_NETWORK, NULL, 0, 0},
        {SB_JOB_FAILED, "p1", NULL, NULL, 0, 0},
        {SB_JOB_CANCELLED, "p1", SB_EK_NETWORK, NULL, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sb_jobrow r;
        memset(&r, 0, sizeof r);
        r.state = cases[i].state;
        r.prediction_id = (char *)cases[i].id;
        r.error_kind = (char *)cases[i].kind;
        r.error_code = (char *)cases[i].code;
        r.error_http = cases[i].http;
        CHECK_INT(sb_jobrow_repollable(&r), cases[i].want);
    }
}

struct replaced_seen {
    int n;
    char last[256];
};

static void note_replaced(const char *id, const char *outputs, const char *replaced, void *ud)
{
    struct replaced_seen *s = ud;
    s->n++;
    snprintf(s->last, sizeof s->last, "%s %s %s", id, outputs ? outputs : "NULL", replaced ? replaced : "NULL");
}

/* The table of allowed state changes, and the one function that makes them. */
static void test_transitions(void)
{
    const enum sb_job_state P = SB_JOB_PENDING, S = SB_JOB_SUBMITTING, R = SB_JOB_RUNNING, D = SB_JOB_DOWNLOADING,
                            OK = SB_JOB_SUCCEEDED, F = SB_JOB_FAILED;
    static const char *want[SB_JOB_NSTATES] = {
        /* to:  P U S R D OK F C      from: */
        "11100011", /* pending */
        "11100011", /* uploading */
        "11110011", /* submitting */
        "10011011", /* running */
        "10001111", /* downloading */
        "00000100", /* succeeded */
        "10010010", /* failed */
        "10000001", /* cancelled */
    };
    for (int from = 0; from < SB_JOB_NSTATES; from++)
        for (int to = 0; to < SB_JOB_NSTATES; to++)
            if (sb_job_transition_ok((enum sb_job_state)from, (enum sb_job_state)to) != (want[from][to] == '1')) {
                CHECK(!"transition table");
                fprintf(stderr, "  %s -> %s\n", sb_job_state_name((enum sb_job_state)from),
                        sb_job_state_name((enum sb_job_state)to));
            }
    CHECK(!sb_job_transition_ok(SB_JOB_NSTATES, P));
    CHECK(sb_job_transition_ok(P, P)); /* staying is no change */
    struct sb_jobrow r;
    memset(&r, 0, sizeof r);
    r.id = "t";
    CHECK_INT(sb_jobrow_set_state(&r, S), SB_OK);
    CHECK_INT(r.state, S);
    CHECK_INT(r.finished_at, 0);
    CHECK_INT(sb_jobrow_set_state(&r, R), SB_OK);
    CHECK_INT(sb_jobrow_set_state(&r, F), SB_OK);
    CHECK(r.finished_at > 0); /* entering a final state */
    CHECK_INT(sb_jobrow_set_state(&r, R), SB_OK); /* --retry-failed polls it again */
    CHECK_INT(r.finished_at, 0);
    CHECK_INT(sb_jobrow_set_state(&r, D), SB_OK);
    CHECK_INT(sb_jobrow_set_state(&r, OK), SB_OK);
    CHECK(r.finished_at > 0);
}

int main(void)
{
    test_transitions();
    sb_log_setup(SB_LOG_TEXT, SB_LOG_WARN);
    test_repollable();
    dir = t_tmpdir();
    t_image("png", 32, 32, dir, "a.png");
    t_image("png", 10, 10, dir, "tiny.png");
    char db[512], err[SB_ERRLEN];
    snprintf(db, sizeof db, "%s/out/.seedbatch/state.db", dir);

    struct sb_store *st = NULL;
    CHECK_INT(sb_store_open(db, 1, &st, err, sizeof err), SB_ENOENT); /* read-only never creates */
    CHECK(access(db, F_OK) != 0);
    CHECK_INT(sb_store_open(db, 0, &st, err, sizeof err), SB_OK);
    CHECK_INT(q(db, "SELECT value FROM meta WHERE key='schema_version'"), SB_SCHEMA_VERSION);
    /* The timing a run learned, per provider and model: nothing yet, then what was put. */
    {
        struct sb_timing t, back;
        struct sb_store *ts = NULL;
        CHECK_INT(sb_store_open(db, 0, &ts, err, sizeof err), SB_OK);
        CHECK_INT(sb_store_get_timing(ts, "atlascloud", "m1", &back), SB_ENOENT);
        sb_timing_prior(&t);
        for (int i = 0; i < 20; i++)
            sb_timing_add(&t, 4.0);
        CHECK_INT(sb_store_put_timing(ts, "atlascloud", "m1", &t), SB_OK);
        CHECK_INT(sb_store_get_timing(ts, "atlascloud", "m1", &back), SB_OK);
        CHECK(back.samples > 19 && back.samples < 20);
        CHECK(back.updated_at == t.updated_at);
        CHECK_INT(sb_store_get_timing(ts, "runcomfy", "m1", &back), SB_ENOENT);
        CHECK_INT(sb_store_put_timing(ts, "atlascloud", "m1", &t), SB_OK); /* replaced, one row */
        CHECK_INT(q(db, "SELECT count(*) FROM timings"), 1);
        sb_store_close(ts);
        sqlite3 *h;
        sqlite3_open(db, &h);
        sqlite3_exec(h, "UPDATE timings SET hist='garbage'", NULL, NULL, NULL);
        sqlite3_close(h);
        CHECK_INT(sb_store_open(db, 1, &ts, err, sizeof err), SB_OK);
        CHECK_INT(sb_store_get_timing(ts, "atlascloud", "m1", &back), SB_ENOENT); /* unreadable: none */
        sb_store_close(ts);
    }
    char *mode = qs(db, "PRAGMA journal_mode");
    CHECK_STR(mode, "wal");
    free(mode);

    struct sb_manifest *m1 = manifest(HEAD "jobs:\n"
        "  - {id: a, prompt: one, images: [a.png]}\n"
        "  - {id: b, prompt: two, images: [a.png], params: {max_images: 3}}\n"
        "  - {id: c, prompt: three, images: [\"https://x.example/c.png\"]}\n"
        "  - {id: bad, prompt: four, images: [tiny.png]}\n");
    struct sb_sync_report r;
    CHECK_INT(sb_sync(st, m1, &r, err, sizeof err), SB_OK);
    CHECK_INT(r.added, 4);
    CHECK_INT(r.kept, 0);
    CHECK_INT(r.invalid, 1);
    CHECK_INT(r.removed, 0);
    sb_sync_report_clear(&r);
    CHECK_INT(q(db, "SELECT count(*) FROM jobs WHERE state='pending'"), 3);
    CHECK_INT(q(db, "SELECT images_requested FROM jobs WHERE id='b'"), 3);
    CHECK_INT(q(db, "SELECT seq FROM jobs WHERE id='c'"), 2);
    char *kind = qs(db, "SELECT error_kind FROM jobs WHERE id='bad' AND state='failed'");
    CHECK_STR(kind, "invalid_input");
    free(kind);
    char *msg = qs(db, "SELECT error_message FROM jobs WHERE id='bad'");
    CHECK_HAS(msg, "tiny.png: 10x10 pixels");
    free(msg);
    CHECK_INT(q(db, "SELECT count(*) FROM batches"), 1);

    /* Local files: a.png was written just now, so it is not recorded (another write in the
     * same clock tick could keep its stamp); one steady enough is, and found by its stamp. */
    CHECK_INT(q(db, "SELECT count(*) FROM files"), 0);
    char apath[600];
    snprintf(apath, sizeof apath, "%s/a.png", dir);
    struct sb_localfile *af = sb_map_get(m1->files, apath);
    CHECK(af != NULL && !af->known && !af->to_remember && af->stamp.ino > 0);
    struct sb_localfile *tf = NULL;
    if (af) {
        af->to_remember = 1;
        snprintf(apath, sizeof apath, "%s/tiny.png", dir);
        tf = sb_map_get(m1->files, apath);
        CHECK(tf != NULL && tf->problem != NULL && !tf->to_remember);
        CHECK_INT(sb_sync(st, m1, &r, err, sizeof err), SB_OK);
        sb_sync_report_clear(&r);
        CHECK_INT(q(db, "SELECT count(*) FROM files"), 1);
        char sqlq[256];
        snprintf(sqlq, sizeof sqlq, "SELECT count(*) FROM files WHERE ino=%lld AND size=%lld AND width=32"
                 " AND height=32 AND format=%d", (long long)af->stamp.ino, (long long)af->stamp.size, SB_IMG_PNG);
        CHECK_INT(q(db, sqlq), 1);
        char sha[65] = "";
        struct sb_imageinfo info = {SB_IMG_UNKNOWN, 0, 0};
        CHECK_INT(sb_store_file_lookup(st, &af->stamp, sha, &info), 1);
        CHECK_STR(sha, af->sha256);
        CHECK_INT(info.format, SB_IMG_PNG);
        CHECK_INT(info.width, 32);
        struct sb_filestamp other = af->stamp;
        other.ctime_ns++; /* written since: not the same file any more */
        CHECK_INT(sb_store_file_lookup(st, &other, sha, &info), 0);
        other = af->stamp;
        other.size++;
        CHECK_INT(sb_store_file_lookup(st, &other, sha, &info), 0);
        other = af->stamp;
        other.ino++;
        CHECK_INT(sb_store_file_lookup(st, &other, sha, &info), 0);
        /* A damaged row is not an answer. */
        sqlite3 *hh;
        sqlite3_open(db, &hh);
        sqlite3_exec(hh, "UPDATE files SET sha256='xyz'", NULL, NULL, NULL);
        sqlite3_close(hh);
        CHECK_INT(sb_store_file_lookup(st, &af->stamp, sha, &info), 0);
        CHECK_INT(sb_sync(st, m1, &r, err, sizeof err), SB_OK); /* recorded again */
        sb_sync_report_clear(&r);
        CHECK_INT(sb_store_file_lookup(st, &af->stamp, sha, &info), 1);
        af->to_remember = 0;

        /* A file found by its stamp is marked seen at most once a day; a row not seen for
         * 30 days is forgotten. */
        af->known = 1;
        long long day = 24LL * 3600 * 1000, now = (long long)sb_now_ms();
        snprintf(sqlq, sizeof sqlq, "INSERT INTO files VALUES(1, 2, 3, 4, 5, '%s', 1, 20, 20, %lld)", af->sha256,
                 now - 31 * day);
        sqlite3_open(db, &hh);
        sqlite3_exec(hh, sqlq, NULL, NULL, NULL);
        snprintf(sqlq, sizeof sqlq, "UPDATE files SET seen_at=%lld WHERE ino=%lld", now - 29 * day,
                 (long long)af->stamp.ino);
        sqlite3_exec(hh, sqlq, NULL, NULL, NULL);
        sqlite3_close(hh);
        CHECK_INT(q(db, "SELECT count(*) FROM files"), 2);
        CHECK_INT(sb_sync(st, m1, &r, err, sizeof err), SB_OK);
        sb_sync_report_clear(&r);
        CHECK_INT(q(db, "SELECT count(*) FROM files"), 1); /* the old one forgotten */
        CHECK(q(db, "SELECT seen_at FROM files") >= now);    /* a.png seen now */
        sqlite3_open(db, &hh);
        snprintf(sqlq, sizeof sqlq, "UPDATE files SET seen_at=%lld", now - day / 2);
        sqlite3_exec(hh, sqlq, NULL, NULL, NULL);
        sqlite3_close(hh);
        CHECK_INT(sb_sync(st, m1, &r, err, sizeof err), SB_OK);
        sb_sync_report_clear(&r);
        CHECK_INT(q(db, "SELECT seen_at FROM files"), now - day / 2); /* seen within a day: not written */
        af->known = 0;
    }

    /* Progress recorded by a run survives an unchanged re-sync. */
    struct sb_job_error e = {SB_EK_REJECTED, 0, "1039", "moderation"};
    CHECK_INT(sb_store_transition(st, "a", SB_JOB_SUCCEEDED, NULL), SB_OK);
    CHECK_INT(sb_store_transition(st, "c", SB_JOB_FAILED, &e), SB_OK);
    CHECK_INT(sb_store_transition(st, "nope", SB_JOB_FAILED, &e), SB_ENOENT);
    CHECK(q(db, "SELECT finished_at FROM jobs WHERE id='a'") > 0);
    CHECK_INT(sb_sync(st, m1, &r, err, sizeof err), SB_OK);
    CHECK_INT(r.added, 0);
    CHECK_INT(r.kept, 4);
    CHECK_INT(r.invalid, 0); /* already failed for the same reason */
    sb_sync_report_clear(&r);
    struct sb_jobrow row;
    CHECK_INT(sb_store_get_job(st, "a", &row), SB_OK);
    CHECK_INT(row.state, SB_JOB_SUCCEEDED);
    sb_jobrow_clear(&row);
    CHECK_INT(sb_store_get_job(st, "c", &row), SB_OK);
    CHECK_INT(row.state, SB_JOB_FAILED);
    CHECK_STR(row.error_kind, "rejected");
    CHECK_STR(row.error_code, "1039");
    CHECK_STR(row.error_message, "moderation");
    sb_jobrow_clear(&row);

    /* a had outputs, and a list from an earlier version not yet removed (the run that made
     * them stopped before its end): the change joins the two. */
    sqlite3 *h0;
    sqlite3_open(db, &h0);
    sqlite3_exec(h0, "UPDATE jobs SET outputs='[\"a_1.png\",\"a_2.png\"]', replaced_outputs='[\"a_2.png\",\"a_3.jpg\"]'"
                 " WHERE id='a'", NULL, NULL, NULL);
    sqlite3_close(h0);

    /* Edit: a's prompt changes (re-queued), c leaves, d arrives; order follows the manifest. */
    struct sb_manifest *m2 = manifest(HEAD "jobs:\n"
        "  - {id: d, prompt: new, images: [a.png]}\n"
        "  - {id: a, prompt: \"one, but changed\", images: [a.png]}\n"
        "  - {id: b, prompt: two, images: [a.png], params: {max_images: 3}}\n"
        "  - {id: bad, prompt: four, images: [tiny.png]}\n");
    CHECK_INT(sb_sync(st, m2, &r, err, sizeof err), SB_OK);
    CHECK_INT(r.added, 1);
    CHECK_INT(r.changed, 1);
    CHECK_INT(r.kept, 2);
    CHECK_INT(r.removed, 1);
    if (r.removed == 1)
        CHECK_STR(r.removed_ids[0], "c");
    sb_sync_report_clear(&r);
    CHECK_INT(sb_store_get_job(st, "a", &row), SB_OK);
    CHECK_INT(row.state, SB_JOB_PENDING);
    CHECK(row.error_kind == NULL);
    CHECK(row.outputs == NULL);
    {
        char *joined = qs(db, "SELECT group_concat(value) FROM (SELECT value FROM"
                              " json_each((SELECT replaced_outputs FROM jobs WHERE id='a')) ORDER BY value)");
        CHECK_STR(joined, "a_1.png,a_2.png,a_3.jpg");
        free(joined);
        CHECK_INT(q(db, "SELECT count(*) FROM jobs WHERE replaced_outputs IS NOT NULL"), 1); /* b was kept */
        /* Listed (and forgotten) only once the job has succeeded. */
        struct replaced_seen seen = {0, ""};
        CHECK_INT(sb_store_each_replaced(st, note_replaced, &seen), SB_OK);
        CHECK_INT(seen.n, 0);
        CHECK_INT(q(db, "SELECT count(*) FROM jobs WHERE replaced_outputs IS NOT NULL"), 1);
        sqlite3_open(db, &h0);
        sqlite3_exec(h0, "UPDATE jobs SET state='succeeded', outputs='[\"a_1.jpg\"]' WHERE id='a'", NULL, NULL, NULL);
        sqlite3_close(h0);
        CHECK_INT(sb_store_each_replaced(st, note_replaced, &seen), SB_OK);
        CHECK_INT(seen.n, 1);
        CHECK_STR(seen.last, "a [\"a_1.jpg\"] [\"a_1.png\",\"a_2.png\",\"a_3.jpg\"]");
        CHECK_INT(q(db, "SELECT count(*) FROM jobs WHERE replaced_outputs IS NOT NULL"), 0);
        sqlite3_open(db, &h0);
        sqlite3_exec(h0, "UPDATE jobs SET state='pending', outputs=NULL WHERE id='a'", NULL, NULL, NULL);
        sqlite3_close(h0);
    }
    CHECK_STR(row.fingerprint, t_jobs(m2)[1].fingerprint);
    CHECK_INT(row.seq, 1);
    sb_jobrow_clear(&row);
    CHECK_INT(q(db, "SELECT in_manifest FROM jobs WHERE id='c'"), 0);
    CHECK_INT(q(db, "SELECT count(*) FROM jobs"), 5);
    CHECK_INT(q(db, "SELECT seq FROM jobs WHERE id='d'"), 0);

    /* A job that returns to the manifest unchanged keeps its state. */
    CHECK_INT(sb_sync(st, m1, &r, err, sizeof err), SB_OK);
    CHECK_INT(q(db, "SELECT in_manifest FROM jobs WHERE id='c'"), 1);
    CHECK_INT(sb_store_get_job(st, "c", &row), SB_OK);
    CHECK_INT(row.state, SB_JOB_FAILED);
    sb_jobrow_clear(&row);
    sb_sync_report_clear(&r);

    /* Upload cache, keyed by content hash, with a TTL. */
    const char *sha = t_jobs(m1)[0].images[0].file->sha256;
    CHECK(sb_store_upload_url(st, sha, 1000) == NULL);
    CHECK_INT(sb_store_put_upload(st, sha, "https://u.example/1", 141), SB_OK);
    char *url = sb_store_upload_url(st, sha, 60000);
    CHECK_STR(url, "https://u.example/1");
    free(url);
    sb_store_close(st);

    /* A cached URL older than the TTL is not used. */
    sqlite3 *h;
    sqlite3_open(db, &h);
    sqlite3_exec(h, "UPDATE uploads SET uploaded_at = uploaded_at - 7200000", NULL, NULL, NULL);
    sqlite3_close(h);
    CHECK_INT(sb_store_open(db, 0, &st, err, sizeof err), SB_OK);
    CHECK(sb_store_upload_url(st, sha, 3600000) == NULL);
    sb_store_close(st);
    CHECK_INT(q(db, "SELECT count(*) FROM jobs"), 5); /* state persisted across open/close */
    char *ic = qs(db, "PRAGMA integrity_check");
    CHECK_STR(ic, "ok");
    free(ic);

    /* A database from a newer schema is refused, not clobbered. */
    sqlite3_open(db, &h);
    sqlite3_exec(h, "UPDATE meta SET value='99' WHERE key='schema_version'", NULL, NULL, NULL);
    sqlite3_close(h);
    CHECK(sb_store_open(db, 0, &st, err, sizeof err) != SB_OK);
    CHECK_HAS(err, "newer seedbatch (schema 99");
    CHECK_INT(q(db, "SELECT value FROM meta WHERE key='schema_version'"), 99);

    /* Read-only opening of an existing database works and writes nothing. */
    sqlite3_open(db, &h);
    char ver[128];
    snprintf(ver, sizeof ver, "UPDATE meta SET value='%d' WHERE key='schema_version'", SB_SCHEMA_VERSION);
    sqlite3_exec(h, ver, NULL, NULL, NULL);
    sqlite3_close(h);
    CHECK_INT(sb_store_open(db, 1, &st, err, sizeof err), SB_OK);
    CHECK_INT(sb_store_get_job(st, "b", &row), SB_OK);
    CHECK_INT(row.images_requested, 3);
    /* The job as the engine needs it is kept in the state. */
    CHECK_HAS(row.spec, "\"prompt\":\"two\"");
    CHECK_HAS(row.spec, "\"max_images\":3");
    sb_jobrow_clear(&row);
    sb_store_close(st);

    /* Schema 2 (with its index on state) is still readable, and a writable open migrates it. */
    sqlite3_open(db, &h);
    sqlite3_exec(h, "UPDATE meta SET value='2' WHERE key='schema_version'; CREATE INDEX jobs_state ON jobs(state);"
                 "DROP TABLE files; DROP INDEX jobs_replaced; ALTER TABLE jobs DROP COLUMN replaced_outputs;"
                 "ALTER TABLE jobs DROP COLUMN uncertain_submits; DROP TABLE charges; DROP TABLE timings;"
                 /* What an older state knew of costs: a job's cost, a possible duplicate. */
                 "UPDATE jobs SET cost=0.064, prediction_id='p-b', output_urls='[\"https://x/1\",\"https://x/2\"]',"
                 " finished_at=5000 WHERE id='b';"
                 "UPDATE jobs SET possible_duplicate=1 WHERE id='a'",
                 NULL, NULL, NULL);
    CHECK_INT(q(db, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name='replaced_outputs'"), 0);
    sqlite3_close(h);
    CHECK_INT(sb_store_open(db, 1, &st, err, sizeof err), SB_OK);
    CHECK_INT(sb_store_get_job(st, "b", &row), SB_OK);
    /* Read as it is, it shows the ledger its rows imply. */
    CHECK_INT(row.charged, 1);
    CHECK(row.total_cost > 0.0639 && row.total_cost < 0.0641);
    sb_jobrow_clear(&row);
    struct sb_spend sp;
    CHECK_INT(sb_store_spend(st, 0.03, &sp), SB_OK);
    CHECK(sp.spent > 0.0639 && sp.spent < 0.0641);
    CHECK_INT(sp.flagged, 1);
    CHECK_INT(sp.charges, 2);
    CHECK_INT(sp.images, 2);
    /* The flagged charge is valued at the reader's price: job a asks for 1 image. */
    CHECK(sp.flagged_cost > 0.0299 && sp.flagged_cost < 0.0301);
    /* Without the files table (schema 4) a lookup finds nothing, and says so again. */
    struct sb_filestamp fs = {1, 2, 3, 4, 5};
    char fsha[65] = "";
    struct sb_imageinfo finfo = {SB_IMG_UNKNOWN, 0, 0};
    CHECK_INT(sb_store_file_lookup(st, &fs, fsha, &finfo), 0);
    CHECK_INT(sb_store_file_lookup(st, &fs, fsha, &finfo), 0);
    sb_store_close(st);
    CHECK_INT(q(db, "SELECT count(*) FROM sqlite_master WHERE name='jobs_state'"), 1);
    CHECK_INT(sb_store_open(db, 0, &st, err, sizeof err), SB_OK);
    CHECK_INT(q(db, "SELECT value FROM meta WHERE key='schema_version'"), SB_SCHEMA_VERSION);
    CHECK_INT(q(db, "SELECT count(*) FROM sqlite_master WHERE name='files'"), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM sqlite_master WHERE name='timings'"), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM sqlite_master WHERE name='jobs_state'"), 0);
    CHECK_INT(q(db, "SELECT count(*) FROM sqlite_master WHERE name='jobs_order'"), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name='replaced_outputs'"), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM sqlite_master WHERE name='jobs_replaced'"), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM pragma_table_info('jobs') WHERE name='uncertain_submits'"), 1);
    /* The migration keeps what the older state knew, as ledger rows. */
    CHECK_INT(q(db, "SELECT count(*) FROM charges"), 2);
    CHECK_INT(q(db, "SELECT count(*) FROM charges WHERE job_id='b' AND prediction_id='p-b' AND images=2"
                    " AND abs(price - 0.032) < 1e-9 AND abs(cost - 0.064) < 1e-9 AND flagged=0 AND at=5000"), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM charges WHERE job_id='a' AND prediction_id IS NULL AND flagged=1"
                    " AND cost IS NULL AND images=1"), 1);
    /* The ledger is append-only. */
    CHECK(sqlite3_open(db, &h) == SQLITE_OK);
    CHECK(sqlite3_exec(h, "UPDATE charges SET cost=0", NULL, NULL, NULL) == SQLITE_CONSTRAINT);
    CHECK(sqlite3_exec(h, "DELETE FROM charges", NULL, NULL, NULL) == SQLITE_CONSTRAINT);
    sqlite3_close(h);
    CHECK_INT(q(db, "SELECT count(*) FROM charges"), 2);
    /* One charge per job and prediction: the same again is not added. */
    struct sb_charge ch = {1, "b", "f", "p-b", 2, 0.032, 0.064, 0, "outputs made"};
    CHECK_INT(sb_store_add_charge(st, &ch), 0);
    ch.prediction_id = "p-b2";
    CHECK_INT(sb_store_add_charge(st, &ch), 1);
    ch.prediction_id = NULL;
    ch.flagged = 1;
    CHECK_INT(sb_store_add_charge(st, &ch), 1);
    CHECK_INT(sb_store_add_charge(st, &ch), 1);
    CHECK_INT(q(db, "SELECT count(*) FROM charges"), 5);
    CHECK_INT(sb_store_spend(st, 0.05, &sp), SB_OK);
    CHECK(sp.spent > 0.1279 && sp.spent < 0.1281);
    CHECK_INT(sp.flagged, 3);
    CHECK(sp.flagged_cost > 0.1779 && sp.flagged_cost < 0.1781); /* 0.064 x 2 + 1 image at 0.05 */

    /* A save finds its row by rowid and id together: a row that is not where it was read
     * from (rowid stale) changes nothing. */
    CHECK_INT(sb_store_get_job(st, "b", &row), SB_OK);
    CHECK(row.rowid > 0);
    row.rowid = q(db, "SELECT rowid FROM jobs WHERE id='a'");
    row.attempts = 77;
    CHECK_INT(sb_store_save_job(st, &row, row.state), SB_ENOENT);
    CHECK_INT(q(db, "SELECT count(*) FROM jobs WHERE attempts=77"), 0);
    sb_jobrow_clear(&row);
    sb_store_close(st);

    /* Lists that are not JSON arrays (a damaged row) neither stop the sync nor join. */
    CHECK_INT(sb_store_open(db, 0, &st, err, sizeof err), SB_OK);
    sqlite3_open(db, &h);
    sqlite3_exec(h, "UPDATE jobs SET outputs='not json', replaced_outputs=NULL WHERE id='a';"
                 "UPDATE jobs SET outputs='[\"b_1.png\"]', replaced_outputs='{\"x\":1}' WHERE id='b'",
                 NULL, NULL, NULL);
    sqlite3_close(h);
    struct sb_manifest *m3 = manifest(HEAD "jobs:\n"
        "  - {id: a, prompt: \"one, changed twice\", images: [a.png]}\n"
        "  - {id: b, prompt: \"two, changed\", images: [a.png], params: {max_images: 3}}\n");
    CHECK_INT(sb_sync(st, m3, &r, err, sizeof err), SB_OK);
    CHECK_INT(r.changed, 2);
    sb_sync_report_clear(&r);
    CHECK_INT(q(db, "SELECT count(*) FROM jobs WHERE id='a' AND replaced_outputs IS NULL"), 1);
    char *blist = qs(db, "SELECT replaced_outputs FROM jobs WHERE id='b'");
    CHECK_STR(blist, "[\"b_1.png\"]");
    free(blist);
    sb_store_close(st);
    t_manifest_free(m3);

    /* Unwritable location: a clear error. */
    CHECK(sb_store_open("/proc/nonexistent/state.db", 0, &st, err, sizeof err) != SB_OK);
    CHECK_HAS(err, "/proc/nonexistent");

    test_kept();

    t_manifest_free(m1);
    t_manifest_free(m2);
    CHECK_INT(t_rmdir(dir), 0);
    return t_done("store");
}
