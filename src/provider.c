/*
 * provider.c holds what every provider shares: finding the key and the base
 * URL, redaction of the key from any text, strict JSON parsing of answers.
 */
#include "sb_provider.h"
#include "sb_jr.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void sb_poll_result_clear(struct sb_poll_result *r)
{
    for (int i = 0; i < r->n_outputs; i++)
        free(r->outputs[i]);
    free(r->outputs);
    free(r->error);
    free(r->error_code);
    memset(r, 0, sizeof *r);
}

cJSON *sb_json_parse(const char *body, size_t len)
{
    const char *end = NULL;
    if (!body || !len)
        return NULL;
    /* Plain answers (all the engine sees in a run) in one allocation; the rest through cJSON. */
    cJSON *j = sb_jr_tree(body, len);
    /* require_null_terminated: trailing garbage is an error, not ignored. */
    if (!j)
        j = cJSON_ParseWithLengthOpts(body, len + 1, &end, 1);
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
    if (!cJSON_IsString(v) || (strncmp(v->valuestring, "http://", 7) != 0 &&
                               strncmp(v->valuestring, "https://", 8) != 0))
        return SB_EINVAL;
    if (r->n_outputs >= 64)
        return SB_ETOOBIG;
    r->outputs = sb_realloc(r->outputs, (size_t)(r->n_outputs + 1) * sizeof *r->outputs);
    r->outputs[r->n_outputs++] = sb_strdup(v->valuestring);
    return SB_OK;
}

int sb_api_open(const struct sb_manifest *m, struct sb_api *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->ops = m->provider == SB_PROVIDER_RUNCOMFY ? &sb_provider_runcomfy : &sb_provider_atlas;
    const char *base = getenv(p->ops->base_env);
    if (!base || !*base)
        base = p->ops->default_base;
    if (strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return sb_seterr(err, errlen, "%s must be an http(s) URL", p->ops->base_env);
    p->base = sb_strdup(base);
    size_t n = strlen(p->base);
    while (n && p->base[n - 1] == '/')
        p->base[--n] = '\0';
    char *key = NULL;
    if (m->api_key_file) {
        if (sb_manifest_read_keyfile(m, &key, err, errlen) != SB_OK)
            return SB_ERR;
    } else {
        const char *k = getenv(p->ops->key_env);
        if (k)
            key = sb_strdup(k);
    }
    if (!key || !*key) {
        free(key);
        return sb_seterr(err, errlen, "no API key: set %s or api_key_file in the manifest", p->ops->key_env);
    }
    if (strpbrk(key, "\r\n")) {
        free(key);
        return sb_seterr(err, errlen, "the API key contains a line break");
    }
    p->key = key;
    p->auth_header = sb_asprintf("Authorization: Bearer %s", key);
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
