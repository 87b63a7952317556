/*
 * checks.c checks jobs before anything is sent: what every job needs (a prompt,
 * 1 to 14 reference images, no reserved param), then the model's params through
 * its provider's check_params (each provider file holds its models and their
 * params, with the helpers here), image URLs, and local reference images. Unknown
 * params pass through with a warning: the APIs evolve faster than these tables.
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
    const struct sb_provider_ops *ops = sb_providers[p];
    memset(out, 0, sizeof *out);
    out->default_price = ops->default_price;
    ops->describe_model(model, out);
}

int sb_in_list(const char *s, const char *const *list)
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

void sb_check_report(struct sb_check *c, int is_error, const char *key, const char *fmt, ...)
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

void sb_check_enum(struct sb_check *c, const cJSON *params, const char *key, const char *const *list)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    if (!v)
        return;
    if (!cJSON_IsString(v) || !sb_in_list(v->valuestring, list)) {
        char *l = list_text(list);
        sb_check_report(c, 1, key, "%s must be one of %s", key, l);
        free(l);
    }
}

int sb_check_int(struct sb_check *c, const cJSON *params, const char *key, int lo, int hi, int *out)
{
    if (c->expects)
        c->expects(c, key, SB_PARAM_NUMBER);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, key);
    if (!v)
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    if (!isfinite(d) || d != floor(d) || d < lo || d > hi) {
        sb_check_report(c, 1, key, "%s must be an integer from %d to %d", key, lo, hi);
        return 0;
    }
    *out = (int)d;
    return 1;
}

int sb_check_flag(struct sb_check *c, const cJSON *params, const char *key)
{
    if (c->expects)
        c->expects(c, key, SB_PARAM_BOOL);
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(params, key));
}

static void no_report(void *ud, int is_error, const char *key, const char *msg)
{
    (void)ud, (void)is_error, (void)key, (void)msg;
}

static void note_type(struct sb_check *c, const char *key, int type)
{
    if (strcmp(key, c->asked) == 0)
        c->answer = type;
}

int sb_param_type(enum sb_provider p, const char *model, const char *key)
{
    struct sb_model_info mi;
    sb_model_lookup(p, model, &mi);
    struct sb_check c = {no_report, NULL, 0, note_type, key, SB_PARAM_ANY};
    cJSON *none = cJSON_CreateObject();
    int max_images = 1, implied = 0;
    sb_providers[p]->check_params(&c, model, &mi, none, 1, &max_images, &implied);
    cJSON_Delete(none);
    return c.answer == SB_PARAM_ANY && !mi.known ? SB_PARAM_UNCHECKED : c.answer;
}

void sb_check_unknown(struct sb_check *c, const cJSON *params, const char *model, const char *const *known)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, params) {
        if (sb_in_list(it->string, known))
            continue;
        const char *near = sb_closest(it->string, known);
        if (near)
            sb_check_report(c, 0, it->string, "param %s is not known for %s: did you mean %s? "
                            "(passed through unchecked)", it->string, model, near);
        else
            sb_check_report(c, 0, it->string, "param %s is not known for %s: passed through unchecked",
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
    struct sb_check c = {rep, ud, 0, NULL, NULL, 0};
    struct sb_model_info mi;
    sb_model_lookup(p, model, &mi);
    *images_requested = 1;

    if (!prompt || !*prompt)
        sb_check_report(&c, 1, NULL, "prompt is required and must not be empty");
    else if (count_words(prompt) > 600)
        sb_check_report(&c, 0, NULL, "prompt has %d words; the providers recommend at most 600",
                        count_words(prompt));
    if (n_images < 1 || n_images > SB_MAX_REF_IMAGES)
        sb_check_report(&c, 1, NULL, "a job needs 1 to %d reference images, this one has %d", SB_MAX_REF_IMAGES,
                        n_images);
    static const char *reserved[] = {"prompt", "model", "images", "image", NULL};
    for (int i = 0; reserved[i]; i++) {
        if (cJSON_GetObjectItemCaseSensitive(params, reserved[i]))
            sb_check_report(&c, 1, reserved[i], "%s cannot be a param: it is set from the job's %s",
                            reserved[i], strcmp(reserved[i], "prompt") == 0 ? "prompt" :
                            strcmp(reserved[i], "model") == 0 ? "manifest's model" : "images list");
    }
    int max_images = 1, implied = 0;
    sb_providers[p]->check_params(&c, model, &mi, params, n_images, &max_images, &implied);
    if (!mi.known)
        return c.errors;
    if (!implied && n_images + max_images > SB_MAX_TOTAL_IMAGES)
        sb_check_report(&c, 1, "max_images", "%d reference image%s + max_images %d is over %d",
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
