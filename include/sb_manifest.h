/*
 * The manifest: a YAML file describing a batch of edit jobs (SPEC section 1).
 * sb_manifest_load parses it, expands foreach entries, checks every job and
 * every reference image, and computes each job's fingerprint. It keeps the
 * configuration and the counts, not the jobs: sb_manifest_each_job reads them
 * again one at a time (a batch of 100,000 jobs is never in memory at once);
 * the store keeps what the engine needs of each.
 */
#ifndef SB_MANIFEST_H
#define SB_MANIFEST_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "sb_checks.h"
#include "sb_common.h"

/*
 * A manifest is read as a stream (its jobs one at a time), so its size costs time,
 * not memory: the cap is generous. What libyaml holds whole is one value, and it
 * holds it before seedbatch sees it: the text read while no event comes out is
 * capped (SB_YAML_MAX_VALUE_INPUT; as much as the whole file could hold when files
 * were capped at 32 MiB, so that long comments stay fine), then the value itself
 * (SB_YAML_MAX_SCALAR).
 */
#define SB_MANIFEST_MAX_BYTES (1024u * 1024 * 1024)
#define SB_MANIFEST_MAX_TEXT "1 GiB"
#define SB_YAML_MAX_VALUE_INPUT (32u * 1024 * 1024)
#define SB_YAML_MAX_DEPTH 64
#define SB_YAML_MAX_SCALAR (1u * 1024 * 1024)
#define SB_YAML_ALIAS_BUDGET 10000 /* expanded nodes, or 10x the document's events */

enum sb_upload_mode { SB_UPLOAD_PROVIDER, SB_UPLOAD_URL_PREFIX, SB_UPLOAD_NONE };

struct sb_limits {
    int concurrency;          /* predictions submitted and not yet finished */
    double requests_per_second; /* all API calls together; 0 = unlimited */
    int max_attempts;         /* per HTTP call */
    int64_t poll_interval_ms;
    int64_t job_timeout_ms;
    double max_cost;          /* USD; < 0 when unset */
    int64_t unreachable_ms;   /* no answer from the API this long stops the run (exit 75) */
    int64_t submit_timeout_ms; /* a submit waits this long for its answer (a pause of the process not counted) */
    int64_t download_patience_ms; /* outputs that fail to download are tried again (fresh URLs) this long */
    int poll_interval_given;  /* poll_interval set in the manifest: polls follow it, not the learned timing */
};

struct sb_media {
    enum sb_upload_mode upload;
    char *url_prefix;         /* with SB_UPLOAD_URL_PREFIX */
    char *root;               /* directory local paths are relative to for url_prefix */
    int64_t upload_ttl_ms;    /* a cached upload older than this is uploaded again */
};

/* One reference image of a job. Exactly one of file and url is set. */
struct sb_image_ref {
    char *spec;                     /* as written, after foreach templates */
    const struct sb_localfile *file; /* local file, shared with other jobs */
    char *url;                      /* remote URL, or url_prefix + relative path */
};

struct sb_jobspec {
    char *id;
    int id_given;             /* set in the manifest, not derived from the fingerprint */
    char *prompt;
    cJSON *params;            /* defaults merged with the job's params */
    struct sb_image_ref *images;
    int n_images;
    int images_requested;     /* outputs asked for: the cost quote counts these */
    int line, column;         /* where the job is written */
    char fingerprint[65];
    char *invalid;            /* why the job cannot run (a bad image), or NULL */
    char *output_name;        /* its outputs' path under output_dir without ".{ext}", {k} for the
                                 output's number (output_name); NULL: "<id>_{k}" */
};

struct sb_manifest {
    char *path;               /* as given */
    char *dir;                /* the manifest's directory */
    int version;
    enum sb_provider provider;
    char *model;
    struct sb_model_info model_info;
    char *output_dir;         /* resolved against dir */
    char *output_name;        /* the manifest's output_name, as written; NULL for the default */
    char *api_key_file;       /* resolved against dir, or NULL */
    struct sb_limits limits;
    struct sb_media media;
    double price_per_image;
    int n_jobs;               /* valid jobs, foreach expanded */
    int n_invalid;            /* of which with an unusable reference image */
    long images_requested;    /* outputs asked for by all jobs together */
    struct sb_map *files;     /* local path -> struct sb_localfile */
    int files_read;           /* of which read and hashed by this load, */
    int files_known;          /* ... and known unchanged from the state (sb_load_opts.cache_open) */
    struct sb_msource *src;   /* private: how to read the jobs again */
};

/*
 * Called for each job in manifest order, index from 0. The job and all it
 * points to live only during the call. Non-zero stops the reading.
 */
typedef int (*sb_job_fn)(const struct sb_manifest *m, const struct sb_jobspec *j, int index, void *ud);

/*
 * Loads and checks a manifest. Every problem is logged as it is found (file,
 * line, column and job); err receives a one-line summary. Returns 0, or a
 * negative code when the manifest is invalid. Bad images do not make it
 * invalid: they mark their job ->invalid.
 */
int sb_manifest_load(const char *path, struct sb_manifest **out, char *err, size_t errlen);

/* How a command has its manifests loaded; all zero (or NULL): every file read, no job kept. */
struct sb_load_opts {
    /*
     * Local files already read and recorded (by an earlier run, in the state): opened
     * for a manifest at its first local file (its output_dir known by then), looked up
     * for each file (a match of device, inode, size, mtime and ctime skips reading and
     * hashing it), closed when loading ends. cache_open returns NULL for none.
     */
    void *(*cache_open)(const struct sb_manifest *m, void *ud);
    sb_file_lookup_fn cache_lookup;
    void (*cache_close)(void *cache);
    void *ud;
    /* Keep the checked jobs for the sync into the state (sb_manifest_each_kept): a run. */
    int keep_jobs;
};
int sb_manifest_load_with(const char *path, const struct sb_load_opts *o, struct sb_manifest **out, char *err,
                          size_t errlen);
void sb_manifest_free(struct sb_manifest *m);

/* Loads from memory (for tests and fuzzing); dir resolves relative paths. */
int sb_manifest_parse(const char *name, const char *dir, const char *text, size_t len,
                      struct sb_manifest **out, char *err, size_t errlen);
int sb_manifest_parse_with(const char *name, const char *dir, const char *text, size_t len,
                           const struct sb_load_opts *o, struct sb_manifest **out, char *err, size_t errlen);

/*
 * Reads the jobs of a loaded manifest again, in order. Fails (and says so in
 * err) when the file is no longer the text that was checked, or fn stopped;
 * what fn was given before the failure is to be discarded (the store's sync
 * rolls its transaction back).
 */
int sb_manifest_each_job(struct sb_manifest *m, sb_job_fn fn, void *ud, char *err, size_t errlen);

/* struct sb_kept_job (sb_common.h): what the store keeps of a job, as the checking reading left it. */
typedef int (*sb_kept_fn)(const struct sb_kept_job *k, int index, void *ud);

/*
 * The jobs as the checking reading kept them, in order, without reading the
 * manifest again (it wrote them to an unnamed temporary file as it checked them).
 * SB_ENOENT when it kept none (the temporary file could not be made or written):
 * read the jobs with sb_manifest_each_job then. Each call reads them from the start.
 */
int sb_manifest_each_kept(struct sb_manifest *m, sb_kept_fn fn, void *ud, char *err, size_t errlen);

/* Frees what a job spec owns. */
void sb_jobspec_clear(struct sb_jobspec *j);
/* What the engine and results need of a job, as JSON for the store (newly allocated). */
char *sb_jobspec_json(const struct sb_jobspec *j);
/* The reverse, into j (cleared on error); local files are found in m->files. */
int sb_jobspec_from_json(struct sb_manifest *m, const char *id, const char *json, struct sb_jobspec *j);

/* What results.jsonl shows of a job, from the spec kept in the state. */
struct sb_spec_text {
    char *prompt, *invalid;        /* NULL when absent (or not strings) */
    char *images[SB_MAX_REF_IMAGES];
    int n_images;
};
/* Reads them from a spec (NULL or damaged: what can be read, as cJSON reads it). */
void sb_jobspec_text(const char *json, struct sb_spec_text *t);
void sb_spec_text_clear(struct sb_spec_text *t);


/* Canonical JSON (keys sorted at every level), newly allocated. */
char *sb_canonical_json(const cJSON *v);
/* The job fingerprint (SPEC section 1). */
void sb_fingerprint(enum sb_provider p, const char *model, const char *prompt,
                    const cJSON *params, const struct sb_image_ref *images, int n_images,
                    char hex[65]);

#endif
