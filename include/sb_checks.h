/*
 * Local checks made before anything is sent: the known params of the known
 * models (../shared/API.md), remote image URLs, and local reference images
 * (format by content, size, dimensions, aspect ratio).
 */
#ifndef SB_CHECKS_H
#define SB_CHECKS_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "sb_common.h"
#include "sb_imageinfo.h"

/* The providers, each with its file behind sb_provider_ops (sb_providers[] in provider.c). */
enum sb_provider { SB_PROVIDER_ATLAS = 0, SB_PROVIDER_RUNCOMFY = 1, SB_NPROVIDERS };

#define SB_MAX_REF_IMAGES 14
#define SB_MAX_TOTAL_IMAGES 15          /* reference images + outputs */
#define SB_MAX_IMAGE_BYTES (10u * 1024 * 1024) /* a reference image must be under this */
#define SB_MIN_IMAGE_SIDE 15            /* width and height must be over 14 px */
#define SB_MAX_ASPECT 16                /* 1:16 .. 16:1 */

/* What the runner needs to know of a model. */
struct sb_model_info {
    int known;                /* params of this model are checked */
    const char *images_field; /* "images" or "image" */
    int images_as_string;     /* Atlas /edit takes one URL string */
    double default_price;     /* USD per output image */
};

const char *sb_provider_name(enum sb_provider p);
int sb_provider_parse(const char *s, enum sb_provider *out);
void sb_model_lookup(enum sb_provider p, const char *model, struct sb_model_info *out);

/*
 * Called for each problem found: is_error says whether it refuses the
 * manifest (else it is a warning); key names the param (NULL for the job).
 */
typedef void (*sb_check_report_fn)(void *ud, int is_error, const char *key, const char *msg);

/*
 * Checks a job's merged params, prompt and reference image count against the
 * model. Sets *images_requested to the outputs the job asks for. Returns the
 * number of errors reported.
 */
int sb_check_job_params(enum sb_provider p, const char *model, const char *prompt,
                        const cJSON *params, int n_images, int *images_requested,
                        sb_check_report_fn report, void *ud);

/* For the provider files' check_params: a check in progress and its helpers. */
struct sb_check {
    sb_check_report_fn report;
    void *ud;
    int errors;
    /* Told the type each checked param wants (SB_PARAM_*), when set: sb_param_type asks. */
    void (*expects)(struct sb_check *c, const char *key, int type);
    const char *asked;
    int answer;
};
enum { SB_PARAM_ANY = 0, SB_PARAM_NUMBER = 1, SB_PARAM_BOOL = 2, SB_PARAM_UNCHECKED = 3 };
/*
 * The type a model wants for a param: a number, a boolean, anything (a string, or a
 * param it does not know), or SB_PARAM_UNCHECKED for a model seedbatch does not know.
 */
int sb_param_type(enum sb_provider p, const char *model, const char *key);
/* A boolean param: whether it is present and true. */
int sb_check_flag(struct sb_check *c, const cJSON *params, const char *key);
void SB_PRINTF(4, 5) sb_check_report(struct sb_check *c, int is_error, const char *key, const char *fmt, ...);
/* Whether s is in a NULL-terminated list. */
int sb_in_list(const char *s, const char *const *list);
/* A string param, when present, must be one of list. */
void sb_check_enum(struct sb_check *c, const cJSON *params, const char *key, const char *const *list);
/* An integer param in [lo, hi]: 1 (and *out) when present and valid. */
int sb_check_int(struct sb_check *c, const cJSON *params, const char *key, int lo, int hi, int *out);
/* Warns of each param not in known (NULL-terminated): passed through unchecked. */
void sb_check_unknown(struct sb_check *c, const cJSON *params, const char *model, const char *const *known);

/*
 * The length of url's origin ("http://host:port", "https://...") when the rest is a
 * plain path: letters, digits and "-._~/", no "." or ".." segment, no query or
 * fragment, which libcurl's parser keeps as it is. 0 otherwise.
 */
size_t sb_url_plain_origin(const char *url);
/* A remote image must be an http(s) URL with a host. Returns 0 or fills why. */
int sb_check_url(const char *url, char *why, size_t whylen);

/*
 * What identifies a file's content without reading it: device, inode, size, and the
 * modification and change times in nanoseconds. Writing a file changes its ctime,
 * which no program can set back, so a stamp that still matches means the bytes
 * hashed last time.
 */
struct sb_filestamp {
    int64_t dev, ino, size, mtime_ns, ctime_ns;
};

/* A local reference image, read once and shared by every job that names it. */
struct sb_localfile {
    char *path;               /* as opened */
    char sha256[65];          /* content hash, "" when unreadable */
    size_t size;
    struct sb_imageinfo info;
    char *problem;            /* why it cannot be used, or NULL */
    struct sb_filestamp stamp;
    int known;                /* hash and header taken from an earlier run's record */
    int to_remember;          /* read now, usable, and steady: worth recording for the next run */
};

/*
 * Looks a stamp up among the files earlier runs read; 1 (sha256 and info filled) when
 * one with the very same stamp is known, else 0.
 */
typedef int (*sb_file_lookup_fn)(void *ud, const struct sb_filestamp *s, char sha256[65], struct sb_imageinfo *info);

/*
 * Opens a checked file for reading, if it is still the file that was checked (same
 * device, inode, size and mtime): the descriptor, or -1 with why it is not (gone,
 * or changed since).
 */
int sb_localfile_open_same(const struct sb_localfile *f, char *why, size_t whylen);

/*
 * Reads, hashes and checks one local image. Never fails: problems go in ->problem.
 * With lookup, a file whose stamp is known is opened and checked but not read.
 */
struct sb_localfile *sb_localfile_load(const char *path, sb_file_lookup_fn lookup, void *ud);
void sb_localfile_free(struct sb_localfile *f);

#endif
