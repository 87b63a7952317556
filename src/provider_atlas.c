/*
 * provider_atlas.c speaks Atlas Cloud's API (../shared/API.md): uploadMedia,
 * generateImage and prediction polling. Answers come enveloped as
 * {"code","data":{...}} or flat; uploads name their URL download_url or url;
 * polls list outputs as "outputs" or "output" (a string or a list). Errors
 * carry their text in msg, message or error.
 */
#include "sb_provider.h"
#include "sb_jw.h"

#include <stdlib.h>
#include <string.h>

/* The object holding an answer's fields: data when it is an object, else the root. */
static const cJSON *payload(const cJSON *root)
{
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");
    return cJSON_IsObject(d) ? d : root;
}

static char *atlas_upload_url(const struct sb_api *p)
{
    return sb_asprintf("%s/model/uploadMedia", p->base);
}

static int atlas_parse_upload(const cJSON *j, char **url, char *err, size_t errlen)
{
    if (!j)
        return sb_seterr(err, errlen, "upload answer is not a JSON object");
    const cJSON *d = payload(j);
    const char *u = sb_json_str(d, "download_url");
    if (!u)
        u = sb_json_str(d, "url");
    int rc = SB_OK;
    if (!u || (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0))
        rc = sb_seterr(err, errlen, "upload answer has no http(s) download_url");
    else
        *url = sb_strdup(u);
    return rc;
}

static char *atlas_submit_url(const struct sb_api *p, const char *model)
{
    (void)model;
    return sb_concat(p->base, "/model/generateImage", NULL);
}

static char *atlas_submit_body(const struct sb_manifest *m, const struct sb_jobspec *j, char *const *urls)
{
    struct sb_buf b;
    if (sb_jw_open_object(&b, j->params) != SB_OK)
        return NULL;
    sb_buf_puts(&b, "\"model\":");
    sb_jw_str(&b, m->model);
    sb_buf_puts(&b, ",\"prompt\":");
    sb_jw_str(&b, j->prompt ? j->prompt : "");
    sb_buf_append(&b, ",", 1);
    if (m->model_info.images_as_string) {
        sb_buf_puts(&b, "\"image\":");
        sb_jw_str(&b, urls[0]);
    } else {
        sb_jw_str(&b, m->model_info.images_field);
        sb_buf_append(&b, ":", 1);
        sb_jw_str_array(&b, urls, j->n_images);
    }
    sb_buf_append(&b, "}", 1);
    return b.data;
}

static int atlas_parse_submit(const cJSON *j, char **id, char *err, size_t errlen)
{
    if (!j)
        return sb_seterr(err, errlen, "submit answer is not a JSON object");
    const char *v = sb_json_str(payload(j), "id");
    int rc = SB_OK;
    if (!v || strlen(v) > 256)
        rc = sb_seterr(err, errlen, "submit answer has no prediction id");
    else
        *id = sb_strdup(v);
    return rc;
}

static char *atlas_poll_url(const struct sb_api *p, const char *id)
{
    char *esc = sb_url_escape(id);
    char *u = sb_concat(p->base, "/model/prediction/", esc, NULL);
    free(esc);
    return u;
}

static int atlas_parse_poll(const cJSON *j, struct sb_poll_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->predict_time = -1;
    out->queue_position = -1;
    if (!j)
        return sb_seterr(err, errlen, "poll answer is not a JSON object");
    const cJSON *d = payload(j);
    const char *st = sb_json_str(d, "status");
    int rc = SB_OK;
    if (!st) {
        rc = sb_seterr(err, errlen, "poll answer has no status");
    } else if (!strcmp(st, "starting") || !strcmp(st, "processing") || !strcmp(st, "queued") ||
               !strcmp(st, "pending") || !strcmp(st, "running")) {
        out->state = SB_PRED_RUNNING;
    } else if (!strcmp(st, "completed") || !strcmp(st, "succeeded")) {
        out->state = SB_PRED_SUCCEEDED;
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(d, "outputs");
        if (!o || cJSON_IsNull(o) || (cJSON_IsArray(o) && cJSON_GetArraySize(o) == 0)) {
            const cJSON *alt = cJSON_GetObjectItemCaseSensitive(d, "output");
            if (alt)
                o = alt;
        }
        const cJSON *it;
        if (cJSON_IsString(o)) {
            rc = sb_poll_add_output(out, o);
        } else if (cJSON_IsArray(o)) {
            cJSON_ArrayForEach(it, o) if (rc == SB_OK) rc = sb_poll_add_output(out, it);
        }
        if (rc != SB_OK || out->n_outputs == 0)
            rc = sb_seterr(err, errlen, "prediction %s without usable output URLs", st);
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(d, "metrics");
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(m, "predict_time");
        if (cJSON_IsNumber(pt) && pt->valuedouble >= 0 && pt->valuedouble < 1e7)
            out->predict_time = pt->valuedouble;
    } else if (!strcmp(st, "failed") || !strcmp(st, "timeout") || !strcmp(st, "canceled") ||
               !strcmp(st, "cancelled")) {
        out->state = SB_PRED_FAILED;
        const char *e = sb_json_str(d, "error");
        out->error = sb_asprintf("prediction %s%s%s", st, e ? ": " : "", e ? e : "");
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(d, "error_code");
        if (cJSON_IsNumber(code))
            out->error_code = sb_asprintf("%.0f", code->valuedouble);
        else if (cJSON_IsString(code) && code->valuestring[0])
            out->error_code = sb_strndup(code->valuestring, 64);
    } else {
        rc = sb_seterr(err, errlen, "poll answer has an unknown status \"%.40s\"", st);
    }
    if (rc != SB_OK)
        sb_poll_result_clear(out);
    return rc;
}

static int atlas_error_info(const cJSON *j, char *msg, size_t msglen, char *code, size_t codelen,
                            int *status)
{
    msg[0] = code[0] = '\0';
    *status = 0;
    if (!j)
        return SB_EINVAL;
    const char *t = sb_json_str(j, "msg");
    if (!t)
        t = sb_json_str(j, "message");
    if (!t)
        t = sb_json_str(j, "error");
    if (t)
        sb_strlcpy(msg, t, msglen);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "code");
    if (cJSON_IsNumber(c) && c->valuedouble != 200)
        snprintf(code, codelen, "%.0f", c->valuedouble);
    int is_error = cJSON_IsNumber(c) && c->valuedouble != 200 && c->valuedouble != 0;
    if (is_error && c->valuedouble >= 400 && c->valuedouble < 600)
        *status = (int)c->valuedouble;
    return is_error ? SB_ERR : SB_OK;
}

const struct sb_provider_ops sb_provider_atlas = {
    .name = "atlascloud",
    .key_env = "ATLASCLOUD_API_KEY",
    .base_env = "ATLASCLOUD_BASE_URL",
    .default_base = "https://api.atlascloud.ai/api/v1",
    .wrong_path_status = 401,
    .has_upload = 1,
    .upload_url = atlas_upload_url,
    .parse_upload = atlas_parse_upload,
    .submit_url = atlas_submit_url,
    .submit_body = atlas_submit_body,
    .parse_submit = atlas_parse_submit,
    .poll_url = atlas_poll_url,
    .result_url = NULL,
    .parse_poll = atlas_parse_poll,
    .cancel_url = NULL,
    .parse_cancel = NULL,
    .error_info = atlas_error_info,
};
