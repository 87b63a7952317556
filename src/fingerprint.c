/*
 * fingerprint.c computes what identifies a job's work: SHA-256 over a
 * canonical JSON array of provider, model, prompt, params with keys sorted at
 * every level, and each image's content hash (local) or URL. Two jobs with
 * the same fingerprint would buy the same images.
 */
#include "sb_manifest.h"

#include <stdlib.h>
#include <string.h>

static int cmp_items(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

/* Sorts an object's members by key, recursively, in place. */
static void sort_keys(cJSON *v)
{
    size_t n = 0;
    for (cJSON *it = v->child; it; it = it->next) {
        sort_keys(it);
        n++;
    }
    if (!cJSON_IsObject(v) || n < 2)
        return;
    cJSON **items = sb_malloc(n * sizeof *items);
    size_t i = 0;
    for (cJSON *it = v->child; it; it = it->next)
        items[i++] = it;
    qsort(items, n, sizeof *items, cmp_items);
    for (i = 0; i < n; i++) {
        items[i]->prev = i ? items[i - 1] : items[n - 1]; /* cJSON: child->prev is the tail */
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    }
    v->child = items[0];
    free(items);
}

char *sb_canonical_json(const cJSON *v)
{
    cJSON *copy = cJSON_Duplicate(v, 1);
    sort_keys(copy);
    char *s = cJSON_PrintUnformatted(copy);
    cJSON_Delete(copy);
    return s;
}

void sb_fingerprint(enum sb_provider p, const char *model, const char *prompt,
                    const cJSON *params, const struct sb_image_ref *images, int n_images,
                    char hex[65])
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateString("seedbatch-job/1"));
    cJSON_AddItemToArray(a, cJSON_CreateString(sb_provider_name(p)));
    cJSON_AddItemToArray(a, cJSON_CreateString(model));
    cJSON_AddItemToArray(a, cJSON_CreateString(prompt ? prompt : ""));
    cJSON_AddItemToArray(a, params ? cJSON_Duplicate(params, 1) : cJSON_CreateObject());
    cJSON *imgs = cJSON_CreateArray();
    for (int i = 0; i < n_images; i++) {
        const struct sb_image_ref *r = &images[i];
        char *tok;
        if (r->file && r->file->sha256[0])
            tok = sb_asprintf("sha256:%s", r->file->sha256);
        else if (r->file)
            tok = sb_asprintf("file:%s", r->file->path);
        else
            tok = sb_asprintf("url:%s", r->url ? r->url : r->spec);
        cJSON_AddItemToArray(imgs, cJSON_CreateString(tok));
        free(tok);
    }
    cJSON_AddItemToArray(a, imgs);
    char *s = sb_canonical_json(a);
    sb_sha256_hex(s, strlen(s), hex);
    free(s);
    cJSON_Delete(a);
}
