/*
 * fingerprint.c computes what identifies a job's work: SHA-256 over a
 * canonical JSON array of provider, model, prompt, params with keys sorted at
 * every level, and each image's content hash (local) or URL. Two jobs with
 * the same fingerprint would buy the same images.
 */
#include "sb_manifest.h"
#include "sb_jw.h"

#include <stdlib.h>
#include <string.h>

char *sb_canonical_json(const cJSON *v)
{
    return sb_jw_print(v, 1);
}

/* The canonical text is written directly (sb_jw.h), keys sorted as it is written:
   the same bytes as sorting a copy of the tree and printing it with cJSON. */
void sb_fingerprint(enum sb_provider p, const char *model, const char *prompt,
                    const cJSON *params, const struct sb_image_ref *images, int n_images,
                    char hex[65])
{
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    sb_buf_puts(&b, "[\"seedbatch-job/1\",");
    sb_jw_str(&b, sb_provider_name(p));
    sb_buf_append(&b, ",", 1);
    sb_jw_str(&b, model ? model : "");
    sb_buf_append(&b, ",", 1);
    sb_jw_str(&b, prompt ? prompt : "");
    sb_buf_append(&b, ",", 1);
    if (params)
        sb_jw_value(&b, params, 1);
    else
        sb_buf_puts(&b, "{}");
    sb_buf_append(&b, ",[", 2);
    for (int i = 0; i < n_images; i++) {
        const struct sb_image_ref *r = &images[i];
        sb_buf_puts(&b, i ? ",\"" : "\"");
        if (r->file && r->file->sha256[0]) {
            sb_buf_puts(&b, "sha256:");
            sb_jw_chars(&b, r->file->sha256);
        } else if (r->file) {
            sb_buf_puts(&b, "file:");
            sb_jw_chars(&b, r->file->path);
        } else {
            sb_buf_puts(&b, "url:");
            sb_jw_chars(&b, r->url ? r->url : r->spec);
        }
        sb_buf_append(&b, "\"", 1);
    }
    sb_buf_append(&b, "]]", 2);
    sb_sha256_hex(b.data, b.len, hex);
    sb_buf_free(&b);
}
