/*
 * provider_atlas.c speaks Atlas Cloud's API (../shared/API.md): uploadMedia,
 * generateImage and prediction polling. Answers come enveloped as
 * {"code","data":{...}} or flat; uploads name their URL download_url or url;
 * polls list outputs as "outputs" or "output" (a string or a list), with
 * has_nsfw_contents flagging withheld ones. Errors carry their text in msg,
 * message or error (a string or an object).
 */
#include "sb_provider.h"
#include "sb_jw.h"
#include "sb_store.h"

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

/*
 * Atlas's status words, as its own MCP server and ComfyUI nodes read them.
 * "pending" and "running" are not in those clients; they are read as running,
 * as any other word would be, but listed so that they are not logged as unknown.
 */
static const struct sb_status_word atlas_words[] = {
    {"created", SB_PRED_RUNNING, NULL},
    {"queued", SB_PRED_RUNNING, NULL},
    {"starting", SB_PRED_RUNNING, NULL},
    {"processing", SB_PRED_RUNNING, NULL},
    {"pending", SB_PRED_RUNNING, NULL},
    {"running", SB_PRED_RUNNING, NULL},
    {"completed", SB_PRED_SUCCEEDED, NULL},
    {"succeeded", SB_PRED_SUCCEEDED, NULL},
    {"success", SB_PRED_SUCCEEDED, NULL},
    {"failed", SB_PRED_FAILED, SB_EK_REJECTED},
    {"error", SB_PRED_FAILED, SB_EK_REJECTED},
    {"timeout", SB_PRED_FAILED, SB_EK_TIMEOUT},
    {"canceled", SB_PRED_CANCELLED, NULL},
    {"cancelled", SB_PRED_CANCELLED, NULL},
    {NULL, SB_PRED_RUNNING, NULL},
};

/*
 * A finished prediction lists its outputs as "outputs" or "output" (a string
 * or a list); has_nsfw_contents flags the ones the content filter withheld. One
 * that lists none is read as still running (the job's timeout bounds that),
 * unless the filter withheld them all: then it failed.
 */
static int atlas_parse_poll(const cJSON *j, struct sb_poll_result *out, char *err, size_t errlen)
{
    sb_poll_result_init(out);
    if (!j)
        return sb_seterr(err, errlen, "poll answer is not a JSON object");
    const cJSON *d = payload(j);
    if (sb_poll_read_status(d, atlas_words, out) != SB_OK)
        return sb_seterr(err, errlen, "poll answer has no status");
    if (out->state == SB_PRED_SUCCEEDED) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(d, "outputs");
        if (!o || cJSON_IsNull(o) || (cJSON_IsArray(o) && cJSON_GetArraySize(o) == 0)) {
            const cJSON *alt = cJSON_GetObjectItemCaseSensitive(d, "output");
            if (alt)
                o = alt;
        }
        sb_poll_take_outputs(out, o, cJSON_GetObjectItemCaseSensitive(d, "has_nsfw_contents"));
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(d, "metrics");
        const cJSON *pt = cJSON_GetObjectItemCaseSensitive(m, "predict_time");
        if (cJSON_IsNumber(pt) && pt->valuedouble >= 0 && pt->valuedouble < 1e7)
            out->predict_time = pt->valuedouble;
        if (out->n_outputs == 0 && out->withheld > 0) {
            out->state = SB_PRED_FAILED;
            out->kind = SB_EK_REJECTED;
            out->error = sb_asprintf("prediction %s, but its %d output%s %s withheld by the content filter "
                                     "(has_nsfw_contents)", out->status, out->withheld, SB_S(out->withheld),
                                     SB_ONE(out->withheld, "was", "were"));
        } else if (out->n_outputs == 0) {
            out->state = SB_PRED_READY; /* no output listed yet */
        }
    } else if (out->state == SB_PRED_FAILED) {
        sb_poll_take_error(out, d);
    }
    return SB_OK;
}

static int atlas_error_info(const cJSON *j, char *msg, size_t msglen, char *code, size_t codelen,
                            int *status)
{
    msg[0] = code[0] = '\0';
    *status = 0;
    if (!j)
        return SB_EINVAL;
    sb_error_text(j, msg, msglen);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "code");
    if (cJSON_IsNumber(c) && c->valuedouble != 200)
        snprintf(code, codelen, "%.0f", c->valuedouble);
    int is_error = cJSON_IsNumber(c) && c->valuedouble != 200 && c->valuedouble != 0;
    if (is_error && c->valuedouble >= 400 && c->valuedouble < 600)
        *status = (int)c->valuedouble;
    return is_error ? SB_ERR : SB_OK;
}

/* Its models (../shared/API.md): Seedream 5.0 Lite edit-sequential, and edit (one output). */
#define ATLAS_EDIT_SEQ "bytedance/seedream-v5.0-lite/edit-sequential"
#define ATLAS_EDIT "bytedance/seedream-v5.0-lite/edit"

static const char *atlas_sizes[] = {
    "2048*2048", "2304*1728", "1728*2304", "2848*1600", "1600*2848", "2496*1664",
    "1664*2496", "3136*1344", "3072*3072", "3456*2592", "2592*3456", "4096*2304",
    "2304*4096", "2496*3744", "3744*2496", "4704*2016", NULL};
static const char *jpeg_png[] = {"jpeg", "png", NULL};
static const char *standard_fast[] = {"standard", "fast", NULL};

static void atlas_describe_model(const char *model, struct sb_model_info *out)
{
    out->known = sb_in_list(model, sb_provider_atlas.models);
    size_t n = strlen(model);
    /* Atlas's single-output /edit models take one `image` string. */
    out->images_as_string = n >= 5 && strcmp(model + n - 5, "/edit") == 0;
    out->images_field = out->images_as_string ? "image" : "images";
}

/*
 * Atlas's single-output /edit takes any size "W*H" with each side 1024 to 4096
 * in steps of 64 (its ComfyUI node's widget), not only edit-sequential's presets.
 */
static void check_free_size(struct sb_check *c, const cJSON *params)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, "size");
    if (!v)
        return;
    int w = 0, h = 0, end = 0;
    int ok = cJSON_IsString(v) && sscanf(v->valuestring, "%5d*%5d%n", &w, &h, &end) == 2 &&
             v->valuestring[end] == '\0' && strspn(v->valuestring, "0123456789*") == (size_t)end;
    ok = ok && w >= 1024 && w <= 4096 && h >= 1024 && h <= 4096 && w % 64 == 0 && h % 64 == 0;
    if (!ok)
        sb_check_report(c, 1, "size", "size must be \"W*H\" with each side from 1024 to 4096 in steps of 64 "
               "(e.g. \"2048*1536\")");
}

static void atlas_check_params(struct sb_check *c, const char *model, const struct sb_model_info *mi,
                               const cJSON *params, int n_images, int *max_images, int *implied)
{
    (void)implied;
    /* Either makes an answer a polling runner cannot use: refused for every Atlas model. */
    if (sb_check_flag(c, params, "enable_base64_output"))
        sb_check_report(c, 1, "enable_base64_output", "enable_base64_output: true makes the outputs base64 text "
                        "in the answer instead of URLs to download; seedbatch downloads every output itself: "
                        "remove it");
    if (sb_check_flag(c, params, "enable_sync_mode"))
        sb_check_report(c, 1, "enable_sync_mode", "enable_sync_mode: true makes the submit wait for the images "
                        "with no prediction id until then, so an answer lost on the way cannot be found again "
                        "and a retry pays twice; seedbatch polls instead: remove it");
    if (!mi->known)
        return;
    if (mi->images_as_string) {
        static const char *known[] = {"size", "output_format", "optimize_prompt_options", "enable_base64_output",
                                      "enable_sync_mode", NULL};
        if (n_images > 1)
            sb_check_report(c, 1, NULL, "%s takes exactly one reference image, this job has %d", model, n_images);
        check_free_size(c, params);
        sb_check_enum(c, params, "output_format", jpeg_png);
        sb_check_unknown(c, params, model, known);
    } else {
        static const char *known[] = {"size", "max_images", "output_format", "optimize_prompt_options",
                                      "enable_base64_output", "enable_sync_mode", NULL};
        sb_check_enum(c, params, "size", atlas_sizes);
        sb_check_enum(c, params, "output_format", jpeg_png);
        sb_check_int(c, params, "max_images", 1, 15, max_images);
        sb_check_unknown(c, params, model, known);
    }
    const cJSON *opo = cJSON_GetObjectItemCaseSensitive(params, "optimize_prompt_options");
    if (opo) {
        const cJSON *mode = cJSON_IsObject(opo) ? cJSON_GetObjectItemCaseSensitive(opo, "mode") : NULL;
        if (!cJSON_IsString(mode) || !sb_in_list(mode->valuestring, standard_fast))
            sb_check_report(c, 1, "optimize_prompt_options",
                            "optimize_prompt_options must be {mode: standard} or {mode: fast}");
    }
}

/* uploadMedia takes the file as the multipart field "file", typed by its content. */
static void atlas_upload_form(const struct sb_localfile *f, struct sb_upload_form *out)
{
    static const char *types[] = {"application/octet-stream", "image/jpeg", "image/png", "image/webp",
                                  "image/bmp", "image/tiff", "image/gif"};
    const char *base = strrchr(f->path, '/');
    out->field = "file";
    out->filename = base ? base + 1 : f->path;
    out->type = (unsigned)f->info.format < sizeof types / sizeof *types ? types[f->info.format] : types[0];
}

const struct sb_provider_ops sb_provider_atlas = {
    .name = "atlascloud",
    .title = "Atlas Cloud",
    .key_envs = (const char *const[]){"ATLASCLOUD_API_KEY", NULL},
    .base_env = "ATLASCLOUD_BASE_URL",
    .default_base = "https://api.atlascloud.ai/api/v1",
    .base_path = "/api/v1",
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
    .upload_form = atlas_upload_form,
    .models = (const char *const[]){ATLAS_EDIT_SEQ, ATLAS_EDIT, NULL},
    .default_price = 0.032,
    .describe_model = atlas_describe_model,
    .check_params = atlas_check_params,
};
