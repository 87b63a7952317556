/*
 * checks.c holds what the runner knows of each model's params and of the
 * providers' input-image limits, and checks jobs against them. Unknown params
 * pass through with a warning: the APIs evolve faster than this table.
 */
#include "sb_checks.h"
#include "sb_common.h"
#include "sb_provider.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define ATLAS_EDIT_SEQ "bytedance/seedream-v5.0-lite/edit-sequential"
#define ATLAS_EDIT "bytedance/seedream-v5.0-lite/edit"
#define RC_EDIT "bytedance/seedream-5/lite/edit"

static const char *atlas_sizes[] = {
    "2048*2048", "2304*1728", "1728*2304", "2848*1600", "1600*2848", "2496*1664",
    "1664*2496", "3136*1344", "3072*3072", "3456*2592", "2592*3456", "4096*2304",
    "2304*4096", "2496*3744", "3744*2496", "4704*2016", NULL};

static const char *rc_resolutions[] = {
    "2K", "3K",
    "2048x2048 (1:1)", "2304x1728 (4:3)", "1728x2304 (3:4)", "2848x1600 (16:9)",
    "1600x2848 (9:16)", "2496x1664 (3:2)", "1664x2496 (2:3)", "3136x1344 (21:9)",
    "3072x3072 (1:1)", "3456x2592 (4:3)", "2592x3456 (3:4)", "4096x2304 (16:9)",
    "2304x4096 (9:16)", "2496x3744 (2:3)", "3744x2496 (3:2)", "4704x2016 (21:9)", NULL};

static const char *jpeg_png[] = {"jpeg", "png", NULL};
static const char *standard_fast[] = {"standard", "fast", NULL};
static const char *auto_disabled[] = {"auto", "disabled", NULL};

const char *sb_provider_name(enum sb_provider p)
{
    return (unsigned)p < SB_NPROVIDERS ? sb_providers[p]->name : "unknown";
}

int sb_provider_parse(const char *s, enum sb_provider *out)
{
    for (int p = 0; p < SB_NPROVIDERS; p++) {
        if (strcmp(s, sb_providers[p]->name) == 0) {
            *out = (enum sb_provider)p;
            return SB_OK;
        }
    }
    return SB_EINVAL;
}

void sb_model_lookup(enum sb_provider p, const char *model, struct sb_model_info *out)
{
    memset(out, 0, sizeof *out);
    if (p == SB_PROVIDER_ATLAS) {
        out->default_price = 0.032;
        out->known = strcmp(model, ATLAS_EDIT_SEQ) == 0 || strcmp(model, ATLAS_EDIT) == 0;
        size_t n = strlen(model);
        /* Atlas's single-output /edit models take one `image` string. */
        out->images_as_string = n >= 5 && strcmp(model + n - 5, "/edit") == 0;
        out->images_field = out->images_as_string ? "image" : "images";
    } else {
        out->default_price = 0.028;
        out->known = strcmp(model, RC_EDIT) == 0;
        out->images_field = "image";
    }
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

static char *list_text(const char *const *list)
{
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    for (int i = 0; list[i]; i++)
        sb_buf_printf(&b, "%s\"%s\"", i ? ", " : "", list[i]);
    return b.data;
}

struct ctx {
    sb_check_report_fn report;
    void *ud;
    int errors;
};

static void SB_PRINTF(4, 5) report(struct ctx *c, int is_error, const char *key, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (is_error)
        c->errors++;
    c->report(c->ud, is_error, key, msg);
}

static void check_enum(struct ctx *c, const cJSON *params, const char *key, const char *const *list)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    if (!v)
        return;
    if (!cJSON_IsString(v) || !in_list(v->valuestring, list)) {
        char *l = list_text(list);
        report(c, 1, key, "%s must be one of %s", key, l);
        free(l);
    }
}

/* Reads an integer param in [lo, hi]; returns 1 if present and valid. */
static int check_int(struct ctx *c, const cJSON *params, const char *key, int lo, int hi, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    if (!v)
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi) {
        report(c, 1, key, "%s must be an integer from %d to %d", key, lo, hi);
        return 0;
    }
    *out = (int)d;
    return 1;
}

/*
 * Atlas's single-output /edit takes any size "W*H" with each side 1024 to 4096
 * in steps of 64 (its ComfyUI node's widget), not only edit-sequential's presets.
 */
static void check_free_size(struct ctx *c, const cJSON *params)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, "size");
    if (!v)
        return;
    int w = 0, h = 0, end = 0;
    int ok = cJSON_IsString(v) && sscanf(v->valuestring, "%5d*%5d%n", &w, &h, &end) == 2 &&
             v->valuestring[end] == '\0' && strspn(v->valuestring, "0123456789*") == (size_t)end;
    ok = ok && w >= 1024 && w <= 4096 && h >= 1024 && h <= 4096 && w % 64 == 0 && h % 64 == 0;
    if (!ok)
        report(c, 1, "size", "size must be \"W*H\" with each side from 1024 to 4096 in steps of 64 "
               "(e.g. \"2048*1536\")");
}

static void warn_unknown(struct ctx *c, const cJSON *params, const char *model, const char *const *known)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, params) {
        if (!in_list(it->string, known))
            report(c, 0, it->string, "param %s is not known for %s: passed through unchecked",
                   it->string, model);
    }
}

static int count_words(const char *s)
{
    int n = 0, in = 0;
    for (; *s; s++) {
        if (isspace((unsigned char)*s))
            in = 0;
        else if (!in)
            in = 1, n++;
    }
    return n;
}

int sb_check_job_params(enum sb_provider p, const char *model, const char *prompt,
                        const cJSON *params, int n_images, int *images_requested,
                        sb_check_report_fn rep, void *ud)
{
    struct ctx c = {rep, ud, 0};
    struct sb_model_info mi;
    sb_model_lookup(p, model, &mi);
    *images_requested = 1;

    if (!prompt || !*prompt)
        report(&c, 1, NULL, "prompt is required and must not be empty");
    else if (count_words(prompt) > 600)
        report(&c, 0, NULL, "prompt has %d words; the providers recommend at most 600", count_words(prompt));
    if (n_images < 1 || n_images > SB_MAX_REF_IMAGES)
        report(&c, 1, NULL, "a job needs 1 to %d reference images, this one has %d", SB_MAX_REF_IMAGES, n_images);
    static const char *reserved[] = {"prompt", "model", "images", "image", NULL};
    for (int i = 0; reserved[i]; i++) {
        if (cJSON_GetObjectItemCaseSensitive(params, reserved[i]))
            report(&c, 1, reserved[i], "%s cannot be a param: it is set from the job's %s",
                   reserved[i], strcmp(reserved[i], "prompt") == 0 ? "prompt" :
                   strcmp(reserved[i], "model") == 0 ? "manifest's model" : "images list");
    }
    if (p == SB_PROVIDER_ATLAS) {
        /* Either makes an answer a polling runner cannot use: refused for every Atlas model. */
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, "enable_base64_output")))
            report(&c, 1, "enable_base64_output", "enable_base64_output: true makes the outputs base64 text in "
                   "the answer instead of URLs to download; seedbatch downloads every output itself: remove it");
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, "enable_sync_mode")))
            report(&c, 1, "enable_sync_mode", "enable_sync_mode: true makes the submit wait for the images with no "
                   "prediction id until then, so an answer lost on the way cannot be found again and a retry "
                   "pays twice; seedbatch polls instead: remove it");
    }
    if (!mi.known)
        return c.errors;

    int max_images = 1, implied = 0;
    if (p == SB_PROVIDER_ATLAS && mi.images_as_string) {
        static const char *known[] = {"size", "output_format", "optimize_prompt_options", "enable_base64_output",
                                      "enable_sync_mode", NULL};
        if (n_images > 1)
            report(&c, 1, NULL, "%s takes exactly one reference image, this job has %d", model, n_images);
        check_free_size(&c, params);
        check_enum(&c, params, "output_format", jpeg_png);
        warn_unknown(&c, params, model, known);
    } else if (p == SB_PROVIDER_ATLAS) {
        static const char *known[] = {"size", "max_images", "output_format", "optimize_prompt_options",
                                      "enable_base64_output", "enable_sync_mode", NULL};
        check_enum(&c, params, "size", atlas_sizes);
        check_enum(&c, params, "output_format", jpeg_png);
        check_int(&c, params, "max_images", 1, 15, &max_images);
        warn_unknown(&c, params, model, known);
    } else {
        static const char *known[] = {"resolution", "sequential_image_generation", "max_images",
                                      "output_format", "optimize_prompt_options", NULL};
        check_enum(&c, params, "resolution", rc_resolutions);
        check_enum(&c, params, "sequential_image_generation", auto_disabled);
        check_enum(&c, params, "output_format", jpeg_png);
        check_enum(&c, params, "optimize_prompt_options", standard_fast);
        const cJSON *sig = cJSON_GetObjectItemCaseSensitive(params, "sequential_image_generation");
        int is_auto = cJSON_IsString(sig) && strcmp(sig->valuestring, "auto") == 0;
        int given = check_int(&c, params, "max_images", 1, 15, &max_images);
        if (given && !is_auto)
            report(&c, 0, "max_images", "max_images is ignored by the API without sequential_image_generation: "
                   "auto (one image is made)");
        if (!is_auto)
            max_images = 1;
        else if (!given && !cJSON_GetObjectItemCaseSensitive(params, "max_images"))
            max_images = 15, implied = 1; /* auto with no max_images lets the API make up to 15: budgeted so */
        warn_unknown(&c, params, model, known);
    }
    if (p == SB_PROVIDER_ATLAS) {
        const cJSON *opo = cJSON_GetObjectItemCaseSensitive(params, "optimize_prompt_options");
        if (opo) {
            const cJSON *mode = cJSON_IsObject(opo) ? cJSON_GetObjectItemCaseSensitive(opo, "mode") : NULL;
            if (!cJSON_IsString(mode) || !in_list(mode->valuestring, standard_fast))
                report(&c, 1, "optimize_prompt_options",
                       "optimize_prompt_options must be {mode: standard} or {mode: fast}");
        }
    }
    if (!implied && n_images + max_images > SB_MAX_TOTAL_IMAGES)
        report(&c, 1, "max_images", "%d reference image%s + max_images %d is over %d",
               n_images, SB_S(n_images), max_images, SB_MAX_TOTAL_IMAGES);
    *images_requested = max_images;
    return c.errors;
}

size_t sb_url_plain_origin(const char *url)
{
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : strncmp(url, "https://", 8) == 0 ? url + 8 : NULL;
    if (!p)
        return 0;
    const char *path = strchr(p, '/');
    if (!path || path == p)
        return 0;
    for (const char *c = path; *c; c++) {
        unsigned char u = (unsigned char)*c;
        if (!sb_url_unreserved(u) && u != '/')
            return 0;
        if (u == '/' && c[1] == '.' && (c[2] == '/' || !c[2] || (c[2] == '.' && (c[3] == '/' || !c[3]))))
            return 0;
    }
    return (size_t)(path - url);
}

/*
 * The origin of the last URL found valid: a manifest's image URLs mostly share
 * one, and a URL on it with a plain path is valid without libcurl parsing it
 * (about 6,000 instructions a job).
 */
static char valid_origin[256];
static size_t valid_origin_len;

int sb_check_url(const char *url, char *why, size_t whylen)
{
    size_t origin = sb_url_plain_origin(url);
    if (origin && origin == valid_origin_len && memcmp(url, valid_origin, origin) == 0)
        return SB_OK;
    int rc = SB_EINVAL;
    char *scheme = NULL, *host = NULL;
    CURLU *u = curl_url();
    if (!u)
        return sb_seterr(why, whylen, "out of memory");
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
        sb_seterr(why, whylen, "not a valid URL: %s", url);
        goto out;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        sb_seterr(why, whylen, "only http and https URLs are allowed: %s", url);
        goto out;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        sb_seterr(why, whylen, "URL has no host: %s", url);
        goto out;
    }
    rc = SB_OK;
    if (origin && origin < sizeof valid_origin) {
        memcpy(valid_origin, url, origin);
        valid_origin_len = origin;
    }
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return rc;
}

static void stamp_of(const struct stat *st, struct sb_filestamp *s)
{
    s->dev = (int64_t)st->st_dev;
    s->ino = (int64_t)st->st_ino;
    s->size = (int64_t)st->st_size;
    s->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
    s->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

int sb_localfile_open_same(const struct sb_localfile *f, char *why, size_t whylen)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO put in its place must not block */
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, whylen, "it cannot be read any more (%s)", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct sb_filestamp s;
    stamp_of(&st, &s);
    /* Not the ctime: a backup or a chmod sets it and leaves the bytes as they were. */
    if (s.dev != f->stamp.dev || s.ino != f->stamp.ino || s.size != f->stamp.size ||
        s.mtime_ns != f->stamp.mtime_ns) {
        snprintf(why, whylen, "it changed after the manifest was checked; run again to check it anew");
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * A file written within this long before it was hashed is not recorded: a second
 * write in the same tick of the filesystem's clock (2 s on FAT) could leave the
 * stamp as it was with other bytes behind it.
 */
#define STEADY_NS (3 * 1000000000LL)

/*
 * Why a local path that cannot be opened may not be what its writer meant: a shell
 * would have expanded ~ and $VARIABLES, which a manifest takes as written, and a
 * space at either end of a name is easy to miss. "" when nothing stands out.
 */
static const char *path_hint(const char *path)
{
    size_t n = strlen(path);
    if (strncmp(path, "~/", 2) == 0 || strstr(path, "/~/") || strcmp(path, "~") == 0)
        return " (~ is taken as written, not as the home directory: give the path in full, or relative to "
               "the manifest)";
    if (strchr(path, '$'))
        return " ($ is taken as written: environment variables are not expanded in manifests)";
    for (size_t i = 0; i < n; i++) {
        int starts = (i == 0 || path[i - 1] == '/') && path[i] == ' ';
        int ends = path[i] == ' ' && (i + 1 == n || path[i + 1] == '/');
        if (starts || ends)
            return " (a name in the path begins or ends with a space)";
    }
    return "";
}

struct sb_localfile *sb_localfile_load(const char *path, sb_file_lookup_fn lookup, void *ud)
{
    struct sb_localfile *f = sb_calloc(1, sizeof *f);
    f->path = sb_strdup(path);
    char err[SB_ERRLEN];
    char *data = NULL;
    size_t len = 0;
    int fd;
    struct stat st;
    int rc = sb_open_file(path, SB_MAX_IMAGE_BYTES - 1, &fd, &st, err, sizeof err);
    if (rc == SB_ETOOBIG) {
        f->problem = sb_asprintf("%s: %lld bytes; reference images must be under %u bytes (10 MiB)",
                                 path, (long long)st.st_size, SB_MAX_IMAGE_BYTES);
        return f;
    }
    if (rc != SB_OK) {
        f->problem = sb_asprintf("cannot read %s%s", err, path_hint(path));
        return f;
    }
    stamp_of(&st, &f->stamp);
    if (lookup && lookup(ud, &f->stamp, f->sha256, &f->info) == 1) {
        close(fd);
        f->known = 1;
        f->size = (size_t)st.st_size;
        goto dimensions;
    }
    rc = sb_read_open_file(fd, path, (size_t)st.st_size, &data, &len, err, sizeof err);
    struct stat after;
    int steady = rc == SB_OK && fstat(fd, &after) == 0;
    close(fd);
    if (rc != SB_OK) {
        f->problem = sb_asprintf("cannot read %s", err);
        return f;
    }
    f->size = len;
    sb_sha256_hex(data, len, f->sha256);
    if (sb_image_probe((unsigned char *)data, len, &f->info) != SB_OK) {
        if (f->info.format == SB_IMG_UNKNOWN)
            f->problem = sb_asprintf("%s: not an image of a supported format (JPEG, PNG, WEBP, BMP, TIFF, GIF)", path);
        else
            f->problem = sb_asprintf("%s: %s header is damaged or unreadable", path,
                                     sb_image_format_name(f->info.format));
        free(data);
        return f;
    }
    free(data);
    if (steady) {
        struct sb_filestamp s2;
        struct timespec now;
        stamp_of(&after, &s2);
        clock_gettime(CLOCK_REALTIME, &now);
        int64_t now_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
        int64_t changed = f->stamp.ctime_ns > f->stamp.mtime_ns ? f->stamp.ctime_ns : f->stamp.mtime_ns;
        f->to_remember = memcmp(&s2, &f->stamp, sizeof s2) == 0 && f->stamp.size == (int64_t)len &&
                         now_ns - changed >= STEADY_NS;
    }
dimensions:;
    int w = f->info.width, h = f->info.height;
    int lo = w < h ? w : h, hi = w < h ? h : w;
    if (lo < SB_MIN_IMAGE_SIDE)
        f->problem = sb_asprintf("%s: %dx%d pixels; width and height must be over 14", path, w, h);
    else if ((long long)hi > (long long)lo * SB_MAX_ASPECT)
        f->problem = sb_asprintf("%s: %dx%d pixels; aspect ratio must be within 1:16 to 16:1", path, w, h);
    if (f->problem)
        f->to_remember = 0;
    return f;
}

void sb_localfile_free(struct sb_localfile *f)
{
    if (!f)
        return;
    free(f->path);
    free(f->problem);
    free(f);
}
