/*
 * provider_runcomfy.c speaks RunComfy's model API (../shared/API.md):
 * submit to /v1/models/{model}, then /v1/requests/{id}/status (in_queue,
 * in_progress, completed, cancelled), /result once completed (succeeded or
 * completed with output.image or output.images, or failed; HTTP 400 with
 * error_code 400005 while not ready), and /cancel for queued requests. Errors may come as HTTP 200 with a top-level
 * error_code; the codes map to the HTTP statuses they stand for.
 */
#include "sb_provider.h"
#include "sb_jw.h"
#include "sb_store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>


static char *request_url(const struct sb_api *p, const char *id, const char *what)
{
    char *esc = sb_url_escape(id);
    char *u = sb_concat(p->base, "/v1/requests/", esc, "/", what, NULL);
    free(esc);
    return u;
}

static char *rc_submit_url(const struct sb_api *p, const char *model)
{
    return sb_concat(p->base, "/v1/models/", model, NULL);
}

static char *rc_submit_body(const struct sb_manifest *m, const struct sb_jobspec *j, char *const *urls)
{
    (void)m;
    struct sb_buf b;
    if (sb_jw_open_object(&b, j->params) != SB_OK)
        return NULL;
    sb_buf_puts(&b, "\"prompt\":");
    sb_jw_str(&b, j->prompt ? j->prompt : "");
    sb_buf_puts(&b, ",\"image\":");
    sb_jw_str_array(&b, urls, j->n_images);
    sb_buf_append(&b, "}", 1);
    return b.data;
}

static int rc_parse_submit(const cJSON *j, char **id, char *err, size_t errlen)
{
    if (!j)
        return sb_seterr(err, errlen, "submit answer is not a JSON object");
    const char *v = sb_json_str(j, "request_id");
    int rc = SB_OK;
    if (!v || strlen(v) > 256)
        rc = sb_seterr(err, errlen, "submit answer has no request_id");
    else
        *id = sb_strdup(v);
    return rc;
}

static char *rc_poll_url(const struct sb_api *p, const char *id)
{
    return request_url(p, id, "status");
}

static char *rc_result_url(const struct sb_api *p, const char *id)
{
    return request_url(p, id, "result");
}

static char *rc_cancel_url(const struct sb_api *p, const char *id)
{
    return request_url(p, id, "cancel");
}

/*
 * RunComfy's status and result calls share one vocabulary (its CLI's poll.rs
 * and integration tests). "completed" and "succeeded" both mean finished: with
 * an output it is a success, without one the result must still be fetched.
 */
static const struct sb_status_word rc_words[] = {
    {"in_queue", SB_PRED_RUNNING, NULL},
    {"in_progress", SB_PRED_RUNNING, NULL},
    {"queued", SB_PRED_RUNNING, NULL},
    {"running", SB_PRED_RUNNING, NULL},
    {"completed", SB_PRED_SUCCEEDED, NULL},
    {"succeeded", SB_PRED_SUCCEEDED, NULL},
    {"failed", SB_PRED_FAILED, SB_EK_REJECTED},
    {"error", SB_PRED_FAILED, SB_EK_REJECTED},
    {"timeout", SB_PRED_FAILED, SB_EK_TIMEOUT},
    {"cancelled", SB_PRED_CANCELLED, NULL},
    {"canceled", SB_PRED_CANCELLED, NULL},
    {NULL, SB_PRED_RUNNING, NULL},
};

/* Reads a status or a result answer: both carry "status". */
/* An ISO 8601 time in UTC ("2026-11-21T00:00:09Z", seconds' fractions allowed): seconds since the epoch, or -1. */
static double iso_seconds(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!rest)
        return -1;
    double frac = 0;
    if (*rest == '.') {
        char *end;
        frac = strtod(rest, &end);
        rest = end;
    }
    if (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0)
        return -1;
    return (double)timegm(&tm) + frac;
}

static int rc_parse_poll(const cJSON *j, struct sb_poll_result *out, char *err, size_t errlen)
{
    sb_poll_result_init(out);
    if (!j)
        return sb_seterr(err, errlen, "answer is not a JSON object");
    if (sb_poll_read_status(j, rc_words, out) != SB_OK)
        return sb_seterr(err, errlen, "answer has no status");
    if (out->state == SB_PRED_RUNNING) {
        const cJSON *qp = cJSON_GetObjectItemCaseSensitive(j, "queue_position");
        if (cJSON_IsNumber(qp) && qp->valuedouble >= 0 && qp->valuedouble < 1e9)
            out->queue_position = (int)qp->valuedouble;
    } else if (out->state == SB_PRED_SUCCEEDED) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(j, "output");
        const cJSON *one = cJSON_GetObjectItemCaseSensitive(o, "image");
        const cJSON *many = cJSON_GetObjectItemCaseSensitive(o, "images");
        sb_poll_take_outputs(out, cJSON_IsString(one) || cJSON_IsArray(one) ? one : many, NULL);
        if (out->n_outputs == 0)
            out->state = SB_PRED_READY; /* the status call's "completed", or a result without output yet */
        /* From its creation to its end, as the provider timed it: what polls are timed from. */
        double from = iso_seconds(sb_json_str(j, "created_at")), to = iso_seconds(sb_json_str(j, "finished_at"));
        if (from > 0 && to >= from && to - from < 86400)
            out->predict_time = to - from;
    } else if (out->state == SB_PRED_FAILED) {
        sb_poll_take_error(out, j);
    }
    return SB_OK;
}

static int rc_parse_cancel(const cJSON *j)
{
    if (!j)
        return SB_EINVAL;
    const char *o = sb_json_str(j, "outcome");
    const char *st = sb_json_str(j, "status");
    int rc = SB_EINVAL;
    if (o && !strcmp(o, "cancelled"))
        rc = 1;
    else if (o && !strcmp(o, "not_cancellable"))
        rc = 0;
    else if (st && (!strcmp(st, "cancelled") || !strcmp(st, "canceled")))
        rc = 1;
    return rc;
}

/* RunComfy's error codes, as the HTTP statuses they stand for. */
static int code_status(long code)
{
    switch (code) {
    case 400002: return 402;  /* insufficient balance */
    case 400004: return 401;  /* token or account problem */
    case 403001: return 403;  /* permission denied */
    case 404001: return 404;  /* not found, or an expired request id */
    case 400001: return 400;  /* bad model id */
    case 400005: return SB_HTTP_NOT_READY; /* the result asked for before the request finished */
    default:
        if (code >= 400 && code < 600)
            return (int)code;
        if (code >= 400000 && code < 600000)
            return (int)(code / 1000);
        return 0;
    }
}

static int rc_error_info(const cJSON *j, char *msg, size_t msglen, char *code, size_t codelen,
                         int *status)
{
    msg[0] = code[0] = '\0';
    *status = 0;
    if (!j)
        return SB_EINVAL;
    sb_error_text(j, msg, msglen);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "error_code");
    long n = 0;
    /* Numbers are doubles: one out of range would make the conversion undefined. */
    if (cJSON_IsNumber(c) && c->valuedouble >= 0 && c->valuedouble < 1e9)
        n = (long)c->valuedouble;
    else if (cJSON_IsString(c))
        n = strtol(c->valuestring, NULL, 10);
    int is_error = c && !cJSON_IsNull(c);
    if (is_error) {
        if (cJSON_IsString(c))
            sb_strlcpy(code, c->valuestring, codelen);
        else if (cJSON_IsNumber(c))
            snprintf(code, codelen, "%.0f", c->valuedouble);
        *status = code_status(n);
    }
    return is_error ? SB_ERR : SB_OK;
}

/* Its model (../shared/API.md): Seedream 5 Lite edit. */
#define RC_EDIT "bytedance/seedream-5/lite/edit"

static const char *rc_resolutions[] = {
    "2K", "3K",
    "2048x2048 (1:1)", "2304x1728 (4:3)", "1728x2304 (3:4)", "2848x1600 (16:9)",
    "1600x2848 (9:16)", "2496x1664 (3:2)", "1664x2496 (2:3)", "3136x1344 (21:9)",
    "3072x3072 (1:1)", "3456x2592 (4:3)", "2592x3456 (3:4)", "4096x2304 (16:9)",
    "2304x4096 (9:16)", "2496x3744 (2:3)", "3744x2496 (3:2)", "4704x2016 (21:9)", NULL};
static const char *jpeg_png[] = {"jpeg", "png", NULL};
static const char *standard_fast[] = {"standard", "fast", NULL};
static const char *auto_disabled[] = {"auto", "disabled", NULL};

static void rc_describe_model(const char *model, struct sb_model_info *out)
{
    out->known = sb_in_list(model, sb_provider_runcomfy.models);
    out->images_field = "image";
}

static void rc_check_params(struct sb_check *c, const char *model, const struct sb_model_info *mi,
                            const cJSON *params, int n_images, int *max_images, int *implied)
{
    (void)n_images;
    if (!mi->known)
        return;
    static const char *known[] = {"resolution", "sequential_image_generation", "max_images",
                                  "output_format", "optimize_prompt_options", NULL};
    sb_check_enum(c, params, "resolution", rc_resolutions);
    sb_check_enum(c, params, "sequential_image_generation", auto_disabled);
    sb_check_enum(c, params, "output_format", jpeg_png);
    sb_check_enum(c, params, "optimize_prompt_options", standard_fast);
    const cJSON *sig = cJSON_GetObjectItemCaseSensitive(params, "sequential_image_generation");
    int is_auto = cJSON_IsString(sig) && strcmp(sig->valuestring, "auto") == 0;
    int given = sb_check_int(c, params, "max_images", 1, 15, max_images);
    if (given && !is_auto)
        sb_check_report(c, 0, "max_images", "max_images is ignored by the API without "
                        "sequential_image_generation: auto (one image is made)");
    if (!is_auto)
        *max_images = 1;
    else if (!given && !cJSON_GetObjectItemCaseSensitive(params, "max_images"))
        *max_images = 15, *implied = 1; /* auto with no max_images lets the API make up to 15: budgeted so */
    sb_check_unknown(c, params, model, known);
}

const struct sb_provider_ops sb_provider_runcomfy = {
    .name = "runcomfy",
    .title = "RunComfy",
    /* RunComfy's own tools name it differently: its MCP server RUNCOMFY_API_KEY, its CLI RUNCOMFY_TOKEN. */
    .key_envs = (const char *const[]){"RUNCOMFY_API_TOKEN", "RUNCOMFY_API_KEY", "RUNCOMFY_TOKEN", NULL},
    .base_env = "RUNCOMFY_BASE_URL",
    .default_base = "https://model-api.runcomfy.net",
    .has_upload = 0,
    .upload_url = NULL,
    .parse_upload = NULL,
    .submit_url = rc_submit_url,
    .submit_body = rc_submit_body,
    .parse_submit = rc_parse_submit,
    .poll_url = rc_poll_url,
    .result_url = rc_result_url,
    .parse_poll = rc_parse_poll,
    .cancel_url = rc_cancel_url,
    .parse_cancel = rc_parse_cancel,
    .error_info = rc_error_info,
    /* 404001: no request with that id (any more). */
    .gone_codes = (const char *const[]){"404001", NULL},
    .models = (const char *const[]){RC_EDIT, NULL},
    .default_price = 0.028,
    .describe_model = rc_describe_model,
    .check_params = rc_check_params,
};
