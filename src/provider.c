/*
 * provider.c holds what every provider shares: the table of providers, finding
 * the key (the environment, or api_key_file with its checks) and the base URL,
 * redaction of the key from any text, strict JSON parsing of answers.
 */
#include "sb_provider.h"
#include "sb_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

void sb_poll_result_clear(struct sb_poll_result *r)
{
    for (int i = 0; i < r->n_outputs; i++)
        free(r->outputs[i]);
    free(r->outputs);
    free(r->error);
    free(r->error_code);
    memset(r, 0, sizeof *r);
}

void sb_poll_result_init(struct sb_poll_result *r)
{
    memset(r, 0, sizeof *r);
    r->predict_time = -1;
    r->queue_position = -1;
}

const struct sb_status_word *sb_status_lookup(const struct sb_status_word *table, const char *word)
{
    for (; table->word; table++)
        if (strcasecmp(table->word, word) == 0)
            return table;
    return NULL;
}

int sb_poll_read_status(const cJSON *o, const struct sb_status_word *table, struct sb_poll_result *r)
{
    const char *st = sb_json_str(o, "status");
    if (!st)
        return SB_EINVAL;
    sb_strlcpy(r->status, st, sizeof r->status);
    const struct sb_status_word *w = sb_status_lookup(table, st);
    r->state = w ? w->state : SB_PRED_RUNNING;
    r->kind = w ? w->kind : NULL;
    r->unknown_status = !w;
    return SB_OK;
}

static int is_http_url(const cJSON *v)
{
    return cJSON_IsString(v) &&
           (strncmp(v->valuestring, "http://", 7) == 0 || strncmp(v->valuestring, "https://", 8) == 0);
}

void sb_poll_take_outputs(struct sb_poll_result *r, const cJSON *outputs, const cJSON *nsfw)
{
    const cJSON *it;
    int k = 0;
    if (cJSON_IsArray(nsfw))
        cJSON_ArrayForEach(it, nsfw) r->withheld += cJSON_IsTrue(it);
    if (cJSON_IsString(outputs)) {
        if (!cJSON_IsTrue(cJSON_GetArrayItem(nsfw, 0)) && sb_poll_add_output(r, outputs) != SB_OK)
            r->skipped++;
        return;
    }
    cJSON_ArrayForEach(it, outputs) {
        /* A flagged entry is withheld (counted above), whatever it holds. */
        if (!cJSON_IsTrue(cJSON_GetArrayItem(nsfw, k)) && (!is_http_url(it) || sb_poll_add_output(r, it) != SB_OK))
            r->skipped++;
        k++;
    }
}

/* Appends text to a bounded buffer, with a separator when it is not the first. */
static void join(char *msg, size_t len, const char *sep, const char *text)
{
    size_t n = strlen(msg);
    if (n + 1 >= len)
        return;
    snprintf(msg + n, len - n, "%s%s", n ? sep : "", text);
}

/* The text of an error that is a string or an object naming its message. */
static const char *message_of(const cJSON *v)
{
    static const char *keys[] = {"message", "msg", "error_message", "error", "detail", "reason"};
    if (cJSON_IsString(v) && v->valuestring[0])
        return v->valuestring;
    for (size_t i = 0; cJSON_IsObject(v) && i < SB_ARRAY_LEN(keys); i++) {
        const char *t = sb_json_str(v, keys[i]);
        if (t)
            return t;
    }
    return NULL;
}

void sb_error_text(const cJSON *o, char *msg, size_t len)
{
    static const char *keys[] = {"msg", "message", "error_message", "error"};
    msg[0] = '\0';
    for (size_t i = 0; i < SB_ARRAY_LEN(keys); i++) {
        const char *t = message_of(cJSON_GetObjectItemCaseSensitive(o, keys[i]));
        if (t) {
            sb_strlcpy(msg, t, len);
            return;
        }
    }
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "detail"), *it;
    const cJSON *list = cJSON_IsArray(d) ? d : NULL;
    if (cJSON_IsString(d) && d->valuestring[0]) {
        sb_strlcpy(msg, d->valuestring, len);
        return;
    }
    /* A validation answer (422): [{"loc":["body","image",0],"msg":"...","type":"..."}, ...]. */
    cJSON_ArrayForEach(it, list) {
        const char *t = message_of(it);
        if (!t)
            continue;
        char where[128] = "", one[512];
        const cJSON *loc = cJSON_GetObjectItemCaseSensitive(it, "loc"), *part;
        if (!cJSON_IsArray(loc))
            loc = NULL;
        cJSON_ArrayForEach(part, loc) {
            char p[64];
            if (cJSON_IsString(part) && strcmp(part->valuestring, "body") != 0)
                snprintf(p, sizeof p, "%s", part->valuestring);
            else if (cJSON_IsNumber(part))
                snprintf(p, sizeof p, "%.0f", part->valuedouble);
            else
                continue;
            join(where, sizeof where, ".", p);
        }
        snprintf(one, sizeof one, "%s%s%s", where, where[0] ? ": " : "", t);
        join(msg, len, "; ", one);
    }
}

void sb_poll_take_error(struct sb_poll_result *r, const cJSON *o)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(o, "error");
    const char *msg = message_of(e);
    if (!msg)
        msg = sb_json_str(o, "error_message");
    r->error = sb_asprintf("prediction %s%s%s", r->status[0] ? r->status : "failed", msg ? ": " : "",
                           msg ? msg : "");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(o, "error_code");
    if (!code && cJSON_IsObject(e))
        code = cJSON_GetObjectItemCaseSensitive(e, "code");
    if (cJSON_IsNumber(code) && code->valuedouble > -1e15 && code->valuedouble < 1e15)
        r->error_code = sb_asprintf("%.0f", code->valuedouble);
    else if (cJSON_IsString(code) && code->valuestring[0])
        r->error_code = sb_strndup(code->valuestring, 64);
}

cJSON *sb_json_parse(const char *body, size_t len)
{
    const char *end = NULL;
    if (!body || !len)
        return NULL;
    /* require_null_terminated: trailing garbage is an error, not ignored. */
    cJSON *j = cJSON_ParseWithLengthOpts(body, len + 1, &end, 1);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

const char *sb_json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

int sb_poll_add_output(struct sb_poll_result *r, const cJSON *v)
{
    if (!is_http_url(v))
        return SB_EINVAL;
    if (r->n_outputs >= 64)
        return SB_ETOOBIG;
    r->outputs = sb_realloc(r->outputs, (size_t)(r->n_outputs + 1) * sizeof *r->outputs);
    r->outputs[r->n_outputs++] = sb_strdup(v->valuestring);
    return SB_OK;
}

const struct sb_provider_ops *const sb_providers[SB_NPROVIDERS] = {
    [SB_PROVIDER_ATLAS] = &sb_provider_atlas,
    [SB_PROVIDER_RUNCOMFY] = &sb_provider_runcomfy,
};

int sb_provider_gone_code(const struct sb_provider_ops *ops, const char *code)
{
    if (!code || !*code)
        return 0;
    for (int p = 0; p < SB_NPROVIDERS; p++) {
        const struct sb_provider_ops *o = ops ? ops : sb_providers[p];
        for (const char *const *g = o->gone_codes; g && *g; g++)
            if (strcmp(*g, code) == 0)
                return 1;
        if (ops)
            break;
    }
    return 0;
}

int sb_api_open(const struct sb_manifest *m, struct sb_api *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->ops = sb_providers[m->provider];
    const char *base = getenv(p->ops->base_env);
    if (!base || !*base)
        base = p->ops->default_base;
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return sb_seterr(err, errlen, "%s must be an http(s) URL", p->ops->base_env);
    p->base = sb_strdup(base);
    size_t n = strlen(p->base);
    while (n && p->base[n - 1] == '/')
        p->base[--n] = '\0';
    /* A bare host (as some of the provider's own tools take it) gets the API's path. */
    const char *host = strstr(p->base, "://") + 3;
    if (p->ops->base_path && !strchr(host, '/')) {
        char *full = sb_concat(p->base, p->ops->base_path, NULL);
        free(p->base);
        p->base = full;
    }
    char *key = NULL;
    const char *from = NULL;
    if (m->api_key_file) {
        if (sb_api_read_keyfile(m, &key, err, errlen) != SB_OK)
            return SB_ERR;
    } else {
        for (int i = 0; p->ops->key_envs[i] && !key; i++) {
            const char *k = getenv(p->ops->key_envs[i]);
            if (k && *k)
                key = sb_strdup(k), from = p->ops->key_envs[i];
        }
    }
    if (!key || !*key) {
        free(key);
        char names[160] = "";
        for (int i = 0; p->ops->key_envs[i]; i++)
            join(names, sizeof names, i == 1 ? " (or " : ", ", p->ops->key_envs[i]);
        return sb_seterr(err, errlen, "no API key: set %s%s or api_key_file in the manifest", names,
                         p->ops->key_envs[1] ? ")" : "");
    }
    if (strpbrk(key, "\r\n")) {
        free(key);
        return sb_seterr(err, errlen, "the API key in %s contains a line break", from ? from : "api_key_file");
    }
    p->key = key;
    p->auth_header = sb_asprintf("Authorization: Bearer %s", key);
    sb_log_secret(key);
    return SB_OK;
}

void sb_api_close(struct sb_api *p)
{
    free(p->base);
    if (p->auth_header)
        memset(p->auth_header, 0, strlen(p->auth_header));
    if (p->key)
        memset(p->key, 0, strlen(p->key));
    free(p->auth_header);
    free(p->key);
    memset(p, 0, sizeof *p);
}

char *sb_redact(const struct sb_api *p, char *s)
{
    if (!s || !p->key || strlen(p->key) < 4)
        return s;
    char *hit;
    while ((hit = strstr(s, p->key))) {
        char *n = sb_asprintf("%.*s[redacted]%s", (int)(hit - s), s, hit + strlen(p->key));
        free(s);
        s = n;
    }
    return s;
}

int sb_api_read_keyfile(const struct sb_manifest *m, char **key, char *err, size_t errlen)
{
    struct stat st;
    *key = NULL;
    if (stat(m->api_key_file, &st) != 0)
        return sb_seterr(err, errlen, "api_key_file %s: %s", m->api_key_file, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return sb_seterr(err, errlen, "api_key_file %s is not a regular file", m->api_key_file);
    if (st.st_mode & 077)
        return sb_seterr(err, errlen, "api_key_file %s is readable by group or others (mode %03o): "
                         "run chmod 600 on it", m->api_key_file, (unsigned)(st.st_mode & 0777));
    char *data = NULL, rerr[SB_ERRLEN];
    size_t len = 0, from = 0;
    if (sb_read_file(m->api_key_file, 4096, &data, &len, rerr, sizeof rerr) != SB_OK)
        return sb_seterr(err, errlen, "api_key_file: %s", rerr);
#define BLANK(c) ((c) == ' ' || (c) == '\t' || (c) == '\r' || (c) == '\n')
    while (from < len && BLANK(data[from]))
        from++;
    while (len > from && BLANK(data[len - 1]))
        len--;
#undef BLANK
    if (from < len)
        *key = sb_strndup(data + from, len - from);
    free(data);
    if (!*key)
        return sb_seterr(err, errlen, "api_key_file %s is empty: put the API key in it", m->api_key_file);
    if (strpbrk(*key, "\r\n")) {
        sb_freep(key);
        return sb_seterr(err, errlen, "api_key_file %s holds more than one line: put the API key alone in it, "
                         "on one line", m->api_key_file);
    }
    return SB_OK;
}

int sb_api_check_keyfile(const struct sb_manifest *m, char *err, size_t errlen)
{
    char *key = NULL;
    int rc = m->api_key_file ? sb_api_read_keyfile(m, &key, err, errlen) : SB_OK;
    free(key);
    return rc;
}
