/*
 * results.c writes results.jsonl from each job's row (state, outputs, error,
 * cost) and what the manifest said of the job (prompt, images, order), one
 * job at a time, atomically.
 */
#include "sb_results.h"
#include "sb_jw.h"
#include "sb_log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * A line is written straight into the output buffer (sb_jw.h): building a cJSON
 * tree per job and printing it cost more than the rest of the file's writing.
 */

/* ,"key": for a literal key that needs no escaping, in one append. */
#define put_key(b, key) sb_buf_append((b), ",\"" key "\":", sizeof(",\"" key "\":") - 1)

/* Whether s is ["...","..."] as seedbatch writes lists of strings: no spaces, every
   string closed, escapes well formed, no raw control character. */
static int plain_string_array(const char *s)
{
    if (*s++ != '[')
        return 0;
    if (*s == ']')
        return s[1] == '\0';
    for (;;) {
        if (*s++ != '"')
            return 0;
        while (*s != '"') {
            unsigned char c = (unsigned char)*s++;
            if (c < 0x20)
                return 0; /* a control character, or the end */
            if (c != '\\')
                continue;
            c = (unsigned char)*s++;
            if (c == 'u') {
                for (int i = 0; i < 4; i++, s++)
                    if (!isxdigit((unsigned char)*s))
                        return 0;
            } else if (!strchr("\"\\/bfnrt", c) || c == 0) {
                return 0;
            }
        }
        s++;
        if (*s == ']')
            return s[1] == '\0';
        if (*s++ != ',')
            return 0;
    }
}

/* A JSON array kept as text in the state, as it is when it is one, else []. */
static void put_array_text(struct sb_buf *b, const char *text)
{
    if (text && plain_string_array(text)) {
        sb_buf_puts(b, text);
        return;
    }
    /* Nothing may follow the array, and no control character (a line break among them)
       may be in it: the line must stay one JSON object. */
    for (const char *p = text; p && *p; p++) {
        if ((unsigned char)*p < 0x20) {
            text = NULL;
            break;
        }
    }
    cJSON *a = text ? cJSON_ParseWithOpts(text, NULL, 1) : NULL;
    sb_buf_puts(b, cJSON_IsArray(a) ? text : "[]");
    cJSON_Delete(a);
}

static void put_time(struct sb_buf *b, int64_t ms)
{
    if (ms > 0) {
        char iso[32];
        sb_iso8601(ms, iso);
        sb_jw_str(b, iso);
    } else {
        sb_buf_puts(b, "null");
    }
}

static void put_error(struct sb_buf *b, const char *kind, int http, const char *code, const char *msg)
{
    sb_buf_puts(b, "{\"kind\":");
    sb_jw_str(b, kind);
    sb_buf_puts(b, ",\"http_status\":");
    if (http)
        sb_jw_num(b, http);
    else
        sb_buf_puts(b, "null");
    put_key(b, "code");
    sb_jw_str(b, code);
    put_key(b, "message");
    sb_jw_str(b, msg ? msg : "");
    sb_buf_puts(b, "}");
}

/* What results.jsonl says of a job besides its row. */
struct jobtext {
    const char *id, *prompt, *invalid;
    const char **images;
    int n_images;
};

static void line_for(struct sb_buf *b, const struct sb_manifest *m, const struct jobtext *j,
                     const struct sb_jobrow *r)
{
    enum sb_job_state st = r ? r->state : SB_JOB_PENDING;
    sb_buf_puts(b, "{\"id\":");
    sb_jw_str(b, j->id);
    put_key(b, "status");
    sb_jw_str(b, sb_job_status_name(st));
    put_key(b, "outputs");
    put_array_text(b, r ? r->outputs : NULL);
    put_key(b, "output_urls");
    put_array_text(b, r ? r->output_urls : NULL);
    put_key(b, "prediction_id");
    sb_jw_str(b, r ? r->prediction_id : NULL);
    put_key(b, "provider");
    sb_jw_str(b, sb_provider_name(m->provider));
    put_key(b, "model");
    sb_jw_str(b, m->model);
    put_key(b, "prompt");
    sb_jw_str(b, j->prompt);
    put_key(b, "images");
    sb_buf_puts(b, "[");
    for (int i = 0; i < j->n_images; i++) {
        if (i)
            sb_buf_puts(b, ",");
        sb_jw_str(b, j->images[i]);
    }
    sb_buf_puts(b, "]");
    put_key(b, "attempts");
    sb_jw_num(b, r ? r->attempts : 0);
    put_key(b, "possible_duplicate");
    sb_buf_puts(b, r && r->possible_duplicate ? "true" : "false");
    put_key(b, "submitted_at");
    put_time(b, r ? r->submitted_at : 0);
    put_key(b, "finished_at");
    put_time(b, r && (st == SB_JOB_SUCCEEDED || st == SB_JOB_FAILED || st == SB_JOB_CANCELLED) ? r->finished_at : 0);
    put_key(b, "predict_time_s");
    if (r && r->predict_time >= 0)
        sb_jw_num(b, r->predict_time);
    else
        sb_buf_puts(b, "null");
    put_key(b, "cost_usd");
    sb_jw_num(b, r ? r->cost : 0);
    /* What every version of the job cost: its edits and retries paid for too. */
    put_key(b, "total_cost_usd");
    sb_jw_num(b, r ? r->total_cost : 0);
    put_key(b, "error");
    if (r && st == SB_JOB_FAILED && r->error_kind)
        put_error(b, r->error_kind, r->error_http, r->error_code, r->error_message);
    else if (j->invalid && (!r || st == SB_JOB_FAILED))
        put_error(b, SB_EK_INVALID_INPUT, 0, NULL, j->invalid);
    else
        sb_buf_puts(b, "null");
    sb_buf_puts(b, "}\n");
}

/* Lines between two recorded offsets: a rewrite copies or remakes whole strides. */
#define RES_STRIDE 256

struct sb_results_cache {
    int valid;
    dev_t dev;
    ino_t ino;
    off_t size;
    int64_t n;                     /* lines */
    int64_t *off;                  /* n / RES_STRIDE + 1 entries */
};

struct sb_results_cache *sb_results_cache_new(void)
{
    return sb_calloc(1, sizeof(struct sb_results_cache));
}

void sb_results_cache_free(struct sb_results_cache *c)
{
    if (c)
        free(c->off);
    free(c);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

struct writer {
    const struct sb_manifest *m;
    struct sb_store *st;
    int fd;
    struct sb_buf b;
    int failed;
    int64_t written;               /* bytes already in the file */
    int64_t line;                  /* index of the next line */
    int64_t *off;                  /* when set: off[k] = where line k * RES_STRIDE starts */
};

static void put_line(struct writer *w, const struct jobtext *j, const struct sb_jobrow *r)
{
    if (w->off && w->line % RES_STRIDE == 0)
        w->off[w->line / RES_STRIDE] = w->written + (int64_t)w->b.len;
    w->line++;
    line_for(&w->b, w->m, j, r);
    if (w->b.len > (64 << 10)) {
        if (!w->failed && write_all(w->fd, w->b.data, w->b.len) != 0)
            w->failed = errno ? errno : EIO;
        w->written += (int64_t)w->b.len;
        sb_buf_reset(&w->b);
    }
}

/* A row of the state, with what the manifest said of the job kept in it. */
static int row_line(const struct sb_jobrow *r, void *ud)
{
    struct writer *w = ud;
    struct sb_spec_text t;
    sb_jobspec_text(r->spec, &t);
    struct jobtext j = {r->id, t.prompt, t.invalid, (const char **)t.images, t.n_images};
    put_line(w, &j, r);
    sb_spec_text_clear(&t);
    return w->failed;
}

/* A job of the manifest, with its row when the state has one for this version of it. */
static int manifest_line(const struct sb_manifest *m, const struct sb_jobspec *js, int index, void *ud)
{
    struct writer *w = ud;
    struct sb_jobrow row;
    (void)m, (void)index;
    int have = sb_store_get_version(w->st, js->id, js->fingerprint, &row);
    const char *names[SB_MAX_REF_IMAGES];
    struct jobtext j = {js->id, js->prompt, js->invalid, names, 0};
    for (int k = 0; k < js->n_images && k < SB_MAX_REF_IMAGES; k++)
        names[j.n_images++] = js->images[k].spec;
    put_line(w, &j, have ? &row : NULL);
    if (have)
        sb_jobrow_clear(&row);
    return w->failed;
}

/*
 * Writes results.jsonl: from the state's rows when synced is set (the state
 * was brought in line with the manifest by this run), else from the manifest
 * read again, each job with its row if the state has one.
 */
/* Copies len bytes at from in fd in to the end of fd out. */
static int copy_bytes(int in, int out, off_t from, off_t len)
{
    while (len > 0) {
        ssize_t n = copy_file_range(in, &from, out, NULL, (size_t)len, 0);
        if (n < 0 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP)) {
            char buf[64 << 10];
            n = pread(in, buf, (size_t)(len < (off_t)sizeof buf ? len : (off_t)sizeof buf), from);
            if (n > 0 && write_all(out, buf, (size_t)n) != 0)
                return -1;
            from += n > 0 ? n : 0;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        len -= n;
    }
    return 0;
}

/*
 * The lines to remake, [*a, *b), when the file the cache describes is still
 * the one in place and only lines lo..hi changed since: whole strides around
 * them. Returns the old file open, or -1 (write everything).
 */
static int reusable(const struct sb_results_cache *c, const char *path, int64_t n, int64_t lo, int64_t hi,
                    int64_t *a, int64_t *b)
{
    struct stat st;
    if (!c || !c->valid || c->n != n)
        return -1;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || st.st_dev != c->dev || st.st_ino != c->ino || st.st_size != c->size) {
        close(fd);
        return -1;
    }
    if (lo > hi) {
        *a = *b = 0;
    } else {
        *a = lo < 0 ? 0 : lo / RES_STRIDE * RES_STRIDE;
        *b = (hi / RES_STRIDE + 1) * RES_STRIDE;
        if (*b > n)
            *b = n;
    }
    return fd;
}

static int write_results(struct sb_manifest *m, struct sb_store *st, int synced, struct sb_results_cache *c,
                         int64_t lo, int64_t hi, char *err, size_t errlen)
{
    if (sb_mkdirs(m->output_dir, err, errlen) != SB_OK)
        return SB_EIO;
    char *path = sb_asprintf("%s/results.jsonl", m->output_dir);
    char *tmp = sb_asprintf("%s/.results.jsonl.tmp", m->output_dir);
    int rc = SB_EIO, old = -1;
    int64_t n = m->n_jobs, a = 0, b = n;
    struct writer w = {m, st, -1, {0}, 0, 0, 0, NULL};
    if (synced)
        old = reusable(c, path, n, lo, hi, &a, &b);
    if (old >= 0 && a == b) {
        /* Nothing changed since the file in place was written. */
        close(old);
        free(path);
        free(tmp);
        return SB_OK;
    }
    if (c) {
        w.off = sb_calloc((size_t)(n / RES_STRIDE + 1), sizeof *w.off);
        if (old >= 0)
            memcpy(w.off, c->off, (size_t)(a / RES_STRIDE) * sizeof *w.off);
    }
    unlink(tmp);
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        sb_seterr(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    sb_buf_init(&w.b, SIZE_MAX / 2);
    char rerr[SB_ERRLEN] = "";
    int read_rc, bad = 0;
    off_t old_b = 0;
    if (old >= 0) {
        /* The lines before a and from b on are the old file's bytes. */
        off_t old_a = c->off[a / RES_STRIDE];
        old_b = b < n ? c->off[b / RES_STRIDE] : c->size;
        bad = copy_bytes(old, w.fd, 0, old_a) != 0;
        w.written = old_a;
        w.line = a;
        read_rc = sb_store_each_manifest_range(st, a, b, row_line, &w);
        if (w.line != b)
            read_rc = SB_ERR; /* the state is not what the file was made from */
    } else {
        read_rc = synced ? sb_store_each_manifest_job(st, row_line, &w)
                         : sb_manifest_each_job(m, manifest_line, &w, rerr, sizeof rerr);
    }
    bad = bad || w.failed || (w.b.len && write_all(w.fd, w.b.data, w.b.len) != 0);
    w.written += (int64_t)w.b.len;
    int64_t delta = w.written - (int64_t)old_b;
    if (old >= 0 && !bad)
        bad = copy_bytes(old, w.fd, old_b, c->size - old_b) != 0;
    bad = bad || fsync(w.fd) != 0;
    int e = w.failed ? w.failed : errno;
    sb_buf_free(&w.b);
    struct stat tst;
    if (bad || fstat(w.fd, &tst) != 0 || close(w.fd) != 0) {
        w.fd = -1;
        sb_seterr(err, errlen, "cannot write %s: %s", tmp, strerror(bad ? e : errno));
        unlink(tmp);
        goto out;
    }
    w.fd = -1;
    if (read_rc != SB_OK) {
        sb_seterr(err, errlen, "%s", rerr[0] ? rerr : "cannot read the state database");
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        sb_seterr(err, errlen, "cannot rename %s into place: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    int dfd = open(m->output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if (c) {
        if (old >= 0)
            for (int64_t k = (b + RES_STRIDE - 1) / RES_STRIDE; k <= n / RES_STRIDE; k++)
                if (k * RES_STRIDE < n)
                    w.off[k] = c->off[k] + delta;
        free(c->off);
        c->off = w.off;
        w.off = NULL;
        c->n = n;
        c->dev = tst.st_dev;
        c->ino = tst.st_ino;
        c->size = tst.st_size;
        c->valid = 1;
    }
    rc = SB_OK;
out:
    if (rc != SB_OK && c)
        c->valid = 0;
    free(w.off);
    if (old >= 0)
        close(old);
    if (w.fd >= 0)
        close(w.fd);
    free(path);
    free(tmp);
    return rc;
}

int sb_results_write(struct sb_manifest *m, struct sb_store *st, struct sb_results_cache *c, int64_t lo,
                     int64_t hi, char *err, size_t errlen)
{
    return write_results(m, st, 1, c, lo, hi, err, errlen);
}

int sb_results_from_store(struct sb_manifest *m, struct sb_store *st, char *err, size_t errlen)
{
    return write_results(m, st, 0, NULL, 1, 0, err, errlen);
}
