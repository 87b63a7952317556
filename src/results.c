/*
 * results.c writes results.jsonl from each job's row (state, outputs, error,
 * cost) and what the manifest said of the job (prompt, images, order), one
 * job at a time, atomically.
 */
#include "sb_results.h"
#include "sb_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cJSON *json_array_text(const char *text)
{
    cJSON *a = text ? cJSON_Parse(text) : NULL;
    if (!cJSON_IsArray(a)) {
        cJSON_Delete(a);
        a = cJSON_CreateArray();
    }
    return a;
}

static void add_time(cJSON *o, const char *key, int64_t ms)
{
    if (ms > 0) {
        char iso[32];
        sb_iso8601(ms, iso);
        cJSON_AddStringToObject(o, key, iso);
    } else {
        cJSON_AddNullToObject(o, key);
    }
}

/* What results.jsonl says of a job besides its row. */
struct jobtext {
    const char *id, *prompt, *invalid;
    const char **images;
    int n_images;
};

static char *line_for(const struct sb_manifest *m, const struct jobtext *j, const struct sb_jobrow *r)
{
    cJSON *o = cJSON_CreateObject();
    enum sb_job_state st = r ? r->state : SB_JOB_PENDING;
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "status", sb_job_status_name(st));
    cJSON_AddItemToObject(o, "outputs", json_array_text(r ? r->outputs : NULL));
    cJSON_AddItemToObject(o, "output_urls", json_array_text(r ? r->output_urls : NULL));
    if (r && r->prediction_id)
        cJSON_AddStringToObject(o, "prediction_id", r->prediction_id);
    else
        cJSON_AddNullToObject(o, "prediction_id");
    cJSON_AddStringToObject(o, "provider", sb_provider_name(m->provider));
    cJSON_AddStringToObject(o, "model", m->model);
    if (j->prompt)
        cJSON_AddStringToObject(o, "prompt", j->prompt);
    else
        cJSON_AddNullToObject(o, "prompt");
    cJSON *imgs = cJSON_CreateArray();
    for (int i = 0; i < j->n_images; i++)
        cJSON_AddItemToArray(imgs, cJSON_CreateString(j->images[i]));
    cJSON_AddItemToObject(o, "images", imgs);
    cJSON_AddNumberToObject(o, "attempts", r ? r->attempts : 0);
    cJSON_AddBoolToObject(o, "possible_duplicate", r && r->possible_duplicate);
    add_time(o, "submitted_at", r ? r->submitted_at : 0);
    add_time(o, "finished_at", r && (st == SB_JOB_SUCCEEDED || st == SB_JOB_FAILED || st == SB_JOB_CANCELLED)
                                   ? r->finished_at : 0);
    if (r && r->predict_time >= 0)
        cJSON_AddNumberToObject(o, "predict_time_s", r->predict_time);
    else
        cJSON_AddNullToObject(o, "predict_time_s");
    cJSON_AddNumberToObject(o, "cost_usd", r ? r->cost : 0);
    if (r && st == SB_JOB_FAILED && r->error_kind) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kind", r->error_kind);
        if (r->error_http)
            cJSON_AddNumberToObject(e, "http_status", r->error_http);
        else
            cJSON_AddNullToObject(e, "http_status");
        if (r->error_code)
            cJSON_AddStringToObject(e, "code", r->error_code);
        else
            cJSON_AddNullToObject(e, "code");
        cJSON_AddStringToObject(e, "message", r->error_message ? r->error_message : "");
        cJSON_AddItemToObject(o, "error", e);
    } else if (j->invalid && (!r || st == SB_JOB_FAILED)) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kind", SB_EK_INVALID_INPUT);
        cJSON_AddNullToObject(e, "http_status");
        cJSON_AddNullToObject(e, "code");
        cJSON_AddStringToObject(e, "message", j->invalid);
        cJSON_AddItemToObject(o, "error", e);
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
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
};

static void put_line(struct writer *w, const struct jobtext *j, const struct sb_jobrow *r)
{
    char *line = line_for(w->m, j, r);
    sb_buf_puts(&w->b, line);
    sb_buf_puts(&w->b, "\n");
    free(line);
    if (w->b.len > (64 << 10)) {
        if (!w->failed && write_all(w->fd, w->b.data, w->b.len) != 0)
            w->failed = errno ? errno : EIO;
        sb_buf_reset(&w->b);
    }
}

/* A row of the state, with what the manifest said of the job kept in it. */
static int row_line(const struct sb_jobrow *r, void *ud)
{
    struct writer *w = ud;
    cJSON *spec = r->spec ? cJSON_Parse(r->spec) : NULL;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(spec, "prompt");
    const cJSON *inv = cJSON_GetObjectItemCaseSensitive(spec, "invalid");
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(spec, "images"), *im;
    const char *names[SB_MAX_REF_IMAGES];
    struct jobtext j = {r->id, cJSON_IsString(p) ? p->valuestring : NULL,
                        cJSON_IsString(inv) ? inv->valuestring : NULL, names, 0};
    cJSON_ArrayForEach(im, imgs) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(im, "spec");
        if (cJSON_IsString(sp) && j.n_images < SB_MAX_REF_IMAGES)
            names[j.n_images++] = sp->valuestring;
    }
    put_line(w, &j, r);
    cJSON_Delete(spec);
    return w->failed;
}

/* A job of the manifest, with its row when the state has one for this version of it. */
static int manifest_line(const struct sb_manifest *m, const struct sb_jobspec *js, int index, void *ud)
{
    struct writer *w = ud;
    struct sb_jobrow row;
    (void)m, (void)index;
    int have = w->st && sb_store_get_job(w->st, js->id, &row) == SB_OK;
    if (have && strcmp(row.fingerprint, js->fingerprint) != 0) {
        /* A row for another version of the job does not describe this one. */
        sb_jobrow_clear(&row);
        have = 0;
    }
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
static int write_results(struct sb_manifest *m, struct sb_store *st, int synced, char *err, size_t errlen)
{
    if (sb_mkdirs(m->output_dir, err, errlen) != SB_OK)
        return SB_EIO;
    char *path = sb_asprintf("%s/results.jsonl", m->output_dir);
    char *tmp = sb_asprintf("%s/.results.jsonl.tmp", m->output_dir);
    int rc = SB_EIO;
    struct writer w = {m, st, -1, {0}, 0};
    unlink(tmp);
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (w.fd < 0) {
        sb_seterr(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    sb_buf_init(&w.b, SIZE_MAX / 2);
    char rerr[SB_ERRLEN] = "";
    int read_rc = synced ? sb_store_each_manifest_job(st, row_line, &w)
                         : sb_manifest_each_job(m, manifest_line, &w, rerr, sizeof rerr);
    int bad = w.failed || (w.b.len && write_all(w.fd, w.b.data, w.b.len) != 0) || fsync(w.fd) != 0;
    int e = w.failed ? w.failed : errno;
    sb_buf_free(&w.b);
    if (bad || close(w.fd) != 0) {
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
    rc = SB_OK;
out:
    if (w.fd >= 0)
        close(w.fd);
    free(path);
    free(tmp);
    return rc;
}

int sb_results_write(struct sb_manifest *m, struct sb_store *st, char *err, size_t errlen)
{
    return write_results(m, st, 1, err, errlen);
}

int sb_results_from_store(struct sb_manifest *m, struct sb_store *st, char *err, size_t errlen)
{
    return write_results(m, st, 0, err, errlen);
}
