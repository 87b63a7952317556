/* results: results.jsonl from the state; a rewrite during a run remakes only the changed lines. */
#include "sb_results.h"
#include "sb_log.h"
#include "sb_sync.h"
#include "t.h"
#include "t_jobs.h"

#include <sys/stat.h>
#include <unistd.h>

#define N_JOBS 700 /* three strides of lines and a part of one */

static char *dir;

static char *slurp(const char *path)
{
    char *data = NULL, err[SB_ERRLEN];
    size_t len;
    if (sb_read_file(path, 64 << 20, &data, &len, err, sizeof err) != SB_OK)
        return NULL;
    return data;
}

static ino_t inode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_ino : 0;
}

/* A row changed as a run would change it: finished, with outputs and a cost. */
static void finish_job(struct sb_store *st, int seq)
{
    char id[32];
    snprintf(id, sizeof id, "j%d", seq);
    struct sb_jobrow r;
    CHECK_INT(sb_store_get_job(st, id, &r), SB_OK);
    r.state = SB_JOB_SUCCEEDED;
    free(r.outputs);
    r.outputs = sb_asprintf("[\"%s_1.png\", \"%s_2.png\"]", id, id);
    free(r.prediction_id);
    r.prediction_id = sb_asprintf("pred-%d", seq);
    r.attempts = 2;
    r.cost = 0.064;
    r.submitted_at = 1795000000000LL + seq;
    r.finished_at = 1795000009000LL + seq;
    CHECK_INT(sb_store_begin(st), SB_OK);
    CHECK_INT(sb_store_save_job(st, &r, SB_JOB_PENDING), SB_OK);
    char err[SB_ERRLEN];
    CHECK_INT(sb_store_commit(st, err, sizeof err), SB_OK);
    sb_jobrow_clear(&r);
}

/* Sets a job's stored outputs text as it stands (a state written by any version, or damaged). */
static void set_outputs(struct sb_store *st, const char *id, const char *text)
{
    struct sb_jobrow r;
    char err[SB_ERRLEN];
    CHECK_INT(sb_store_get_job(st, id, &r), SB_OK);
    free(r.outputs);
    r.outputs = sb_strdup(text);
    r.state = SB_JOB_SUCCEEDED;
    CHECK_INT(sb_store_begin(st), SB_OK);
    CHECK_INT(sb_store_save_job(st, &r, r.state), SB_OK);
    CHECK_INT(sb_store_commit(st, err, sizeof err), SB_OK);
    sb_jobrow_clear(&r);
}

/* The file as a write from scratch makes it, elsewhere (the file in place is left alone). */
static char *from_scratch(struct sb_manifest *m, struct sb_store *st)
{
    char err[SB_ERRLEN], path[600];
    char *out = m->output_dir;
    m->output_dir = sb_asprintf("%s/scratch", dir);
    snprintf(path, sizeof path, "%s/results.jsonl", m->output_dir);
    CHECK_INT(sb_results_write(m, st, NULL, 0, -1, err, sizeof err), SB_OK);
    free(m->output_dir);
    m->output_dir = out;
    return slurp(path);
}

int main(void)
{
    sb_log_setup(SB_LOG_TEXT, SB_LOG_WARN);
    dir = t_tmpdir();
    struct sb_buf text;
    sb_buf_init(&text, 1 << 24);
    sb_buf_puts(&text, "version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n"
                       "output_dir: out\njobs:\n");
    for (int i = 0; i < N_JOBS; i++)
        sb_buf_printf(&text, "  - {id: j%d, prompt: \"job \\\"%d\\\"\\t\", images: [\"http://127.0.0.1/in/%d.jpg\"]}\n",
                      i, i, i);
    char err[SB_ERRLEN], db[512], path[512];
    struct sb_manifest *m = NULL;
    CHECK_INT(sb_manifest_parse("m.yaml", dir, text.data, text.len, &m, err, sizeof err), SB_OK);
    sb_buf_free(&text);
    if (!m)
        return t_done("results");
    snprintf(db, sizeof db, "%s/out/.seedbatch/state.db", dir);
    snprintf(path, sizeof path, "%s/out/results.jsonl", dir);
    struct sb_store *st = NULL;
    CHECK_INT(sb_store_open(db, 0, &st, err, sizeof err), SB_OK);
    struct sb_sync_report rep;
    CHECK_INT(sb_sync(st, m, &rep, err, sizeof err), SB_OK);
    sb_sync_report_clear(&rep);

    /* The first write makes every line. */
    struct sb_results_cache *c = sb_results_cache_new();
    CHECK_INT(sb_results_write(m, st, c, INT64_MAX, -1, err, sizeof err), SB_OK);
    char *first = slurp(path);
    int lines = 0;
    for (const char *p = first; p && *p; p++)
        lines += *p == '\n';
    CHECK_INT(lines, N_JOBS);
    CHECK_HAS(first, "{\"id\":\"j0\",\"status\":\"pending\"");

    /* Nothing changed: the file in place is left as it is. */
    ino_t ino = inode(path);
    CHECK_INT(sb_results_write(m, st, c, INT64_MAX, -1, err, sizeof err), SB_OK);
    CHECK(inode(path) == ino);

    /* Rows in the middle, at a stride's edges, the first and the last: each rewrite, made
     * from the one before, equals a full write. */
    int changes[][2] = {{300, 301}, {255, 256}, {0, 0}, {699, 699}, {511, 512}, {100, 610}};
    for (size_t k = 0; k < sizeof changes / sizeof changes[0]; k++) {
        for (int s = changes[k][0]; s <= changes[k][1]; s++)
            finish_job(st, s);
        CHECK_INT(sb_results_write(m, st, c, changes[k][0], changes[k][1], err, sizeof err), SB_OK);
        CHECK(inode(path) != ino);
        ino = inode(path);
        char *inc = slurp(path), *full = from_scratch(m, st);
        CHECK(inc && full && strcmp(inc, full) == 0);
        char want[64];
        snprintf(want, sizeof want, "\"prediction_id\":\"pred-%d\"", changes[k][1]);
        CHECK_HAS(inc, want);
        free(inc);
        free(full);
    }

    /* A file replaced behind its back (another inode) is not trusted: everything is made again. */
    char *copy = slurp(path);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    fputs(copy, f);
    fputs("junk\n", f);
    fclose(f);
    free(copy);
    CHECK_INT(rename(tmp, path), 0);
    finish_job(st, 650);
    CHECK_INT(sb_results_write(m, st, c, 650, 650, err, sizeof err), SB_OK);
    char *inc = slurp(path), *full = from_scratch(m, st);
    CHECK(inc && full && strcmp(inc, full) == 0);
    CHECK(inc && !strstr(inc, "junk"));
    free(inc);
    free(full);

    /* Nor one edited in place (same inode, another size). */
    f = fopen(path, "a");
    fputs("junk\n", f);
    fclose(f);
    finish_job(st, 660);
    CHECK_INT(sb_results_write(m, st, c, 660, 660, err, sizeof err), SB_OK);
    inc = slurp(path);
    full = from_scratch(m, st);
    CHECK(inc && full && strcmp(inc, full) == 0);
    CHECK(inc && !strstr(inc, "junk"));
    free(inc);
    free(full);

    /* Stored lists of outputs go out as they are when they are JSON arrays, else as []:
       every line stays one JSON object. */
    static const char *texts[][2] = {
        {"[\"j1_1.png\",\"j1_2.png\"]", "[\"j1_1.png\",\"j1_2.png\"]"},
        {"[\"q\\\"uo\\\\te\\u00e9\\n\"]", "[\"q\\\"uo\\\\te\\u00e9\\n\"]"},
        {"[ \"a\" , \"b\" ]", "[ \"a\" , \"b\" ]"},
        {"[1,2]", "[1,2]"},
        {"[]", "[]"},
        {"[\"a\"", "[]"},
        {"garbage", "[]"},
        {"[\"a\\q\"]", "[]"},
        {"[\"a\"]x", "[]"},
        {"[\"a\x01\"]", "[]"},
        {"[\n\"a\"\n]", "[]"},
        {"", "[]"},
    };
    int nt = (int)(sizeof texts / sizeof *texts);
    for (int i = 0; i < nt; i++) {
        char id[16];
        snprintf(id, sizeof id, "j%d", i + 1);
        set_outputs(st, id, texts[i][0]);
    }
    char *all = from_scratch(m, st);
    for (int i = 0; i < nt; i++) {
        char want[200];
        snprintf(want, sizeof want, "{\"id\":\"j%d\",\"status\":\"succeeded\",\"outputs\":%s,", i + 1, texts[i][1]);
        CHECK_HAS(all, want);
    }
    free(all);

    sb_results_cache_free(c);
    free(first);
    sb_store_close(st);
    t_manifest_free(m);
    CHECK_INT(t_rmdir(dir), 0);
    return t_done("results");
}
