/*
 * results.c writes results.jsonl from the manifest (prompt, images, order)
 * and each job's row (state, outputs, error, cost), atomically.
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

static char *line_for(const struct sb_manifest *m, const struct sb_jobspec *j, const struct sb_jobrow *r)
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
    cJSON_AddStringToObject(o, "prompt", j->prompt);
    cJSON *imgs = cJSON_CreateArray();
    for (int i = 0; i < j->n_images; i++)
        cJSON_AddItemToArray(imgs, cJSON_CreateString(j->images[i].spec));
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

int sb_results_write(const struct sb_manifest *m, sb_row_fn row_of, void *ud, char *err, size_t errlen)
{
    if (sb_mkdirs(m->output_dir, err, errlen) != SB_OK)
        return SB_EIO;
    char *path = sb_asprintf("%s/results.jsonl", m->output_dir);
    char *tmp = sb_asprintf("%s/.results.jsonl.tmp", m->output_dir);
    int rc = SB_EIO, fd = -1;
    unlink(tmp);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        sb_seterr(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    for (int i = 0; i < m->n_jobs; i++) {
        char *line = line_for(m, &m->jobs[i], row_of(ud, i));
        sb_buf_puts(&b, line);
        sb_buf_puts(&b, "\n");
        free(line);
        if (b.len > (1 << 20)) {
            if (write_all(fd, b.data, b.len) != 0)
                break;
            sb_buf_reset(&b);
        }
    }
    int bad = (b.len && write_all(fd, b.data, b.len) != 0) || fsync(fd) != 0;
    int e = errno;
    sb_buf_free(&b);
    if (bad || close(fd) != 0) {
        fd = -1;
        sb_seterr(err, errlen, "cannot write %s: %s", tmp, strerror(bad ? e : errno));
        unlink(tmp);
        goto out;
    }
    fd = -1;
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
    if (fd >= 0)
        close(fd);
    free(path);
    free(tmp);
    return rc;
}

struct rows {
    struct sb_jobrow *rows;
    int *have;
};

static const struct sb_jobrow *row_at(void *ud, int i)
{
    struct rows *r = ud;
    return r->have[i] ? &r->rows[i] : NULL;
}

int sb_results_from_store(const struct sb_manifest *m, struct sb_store *st, char *err, size_t errlen)
{
    struct rows r = {sb_calloc((size_t)m->n_jobs, sizeof *r.rows), sb_calloc((size_t)m->n_jobs, sizeof(int))};
    for (int i = 0; i < m->n_jobs; i++) {
        if (st && sb_store_get_job(st, m->jobs[i].id, &r.rows[i]) == SB_OK) {
            /* A row for another version of the job does not describe this one. */
            if (strcmp(r.rows[i].fingerprint, m->jobs[i].fingerprint) == 0)
                r.have[i] = 1;
            else
                sb_jobrow_clear(&r.rows[i]);
        }
    }
    int rc = sb_results_write(m, row_at, &r, err, errlen);
    for (int i = 0; i < m->n_jobs; i++)
        if (r.have[i])
            sb_jobrow_clear(&r.rows[i]);
    free(r.rows);
    free(r.have);
    return rc;
}
