/*
 * What differs between the hosted APIs, behind one small table of functions
 * (as redis keeps ae_epoll.c behind ae.c): where each call goes, the request
 * bodies, and how to read each answer. The engine knows nothing else of a
 * provider. Parsers accept every documented variant of an answer.
 */
#ifndef SB_PROVIDER_H
#define SB_PROVIDER_H

#include <stddef.h>

#include "sb_manifest.h"

enum sb_pred_state {
    SB_PRED_RUNNING,    /* queued or processing, or a status word not in the provider's table */
    SB_PRED_READY,      /* finished but no outputs listed: they are read from the result call */
    SB_PRED_SUCCEEDED,  /* outputs are listed */
    SB_PRED_FAILED,     /* the provider failed or refused it */
    SB_PRED_CANCELLED   /* cancelled remotely */
};

/*
 * One word of a provider's status vocabulary and what it stands for. A
 * provider's table lists every word its own clients handle; words are matched
 * case-insensitively, and a word not listed means the prediction is still
 * running (the engine logs it once per run and keeps polling with back-off).
 */
struct sb_status_word {
    const char *word;
    enum sb_pred_state state;
    const char *kind;      /* for SB_PRED_FAILED: the error kind it gives the job (SB_EK_*) */
};
/* The entry of a NULL-terminated table for a word, or NULL when the word is not listed. */
const struct sb_status_word *sb_status_lookup(const struct sb_status_word *table, const char *word);

struct sb_poll_result {
    enum sb_pred_state state;
    char status[48];       /* the status word as the answer gave it (cut short), "" when none */
    int unknown_status;    /* the word is not in the provider's table: read as running */
    char **outputs;        /* output URLs when succeeded */
    int n_outputs;
    int withheld;          /* outputs the provider's content filter withheld */
    int skipped;           /* output entries that were no http(s) URL, passed over */
    double predict_time;   /* seconds, < 0 when not given */
    int queue_position;    /* place in the provider's queue, -1 when not given */
    const char *kind;      /* when failed: the error kind (SB_EK_REJECTED, SB_EK_TIMEOUT) */
    char *error;           /* provider's message when failed */
    char *error_code;      /* provider's code when failed, or NULL */
};
void sb_poll_result_clear(struct sb_poll_result *r);
/* Starts a poll result: nothing known, no times or places given. */
void sb_poll_result_init(struct sb_poll_result *r);

struct sb_api;

/* A local file as one multipart part. */
struct sb_upload_form {
    const char *field;       /* the form field's name */
    const char *filename;    /* as the provider is told it (points into the file's path) */
    const char *type;        /* the content type */
};

/*
 * The parse_* and error_info functions read an answer's body as sb_json_parse
 * gives it, parsed once for all of them: NULL when it is not a JSON object.
 */
struct sb_provider_ops {
    const char *name;          /* as the manifest names it */
    const char *title;         /* as people write it, in messages */
    /* Environment variables holding the key, in the order they are read (NULL-terminated). */
    const char *const *key_envs;
    const char *base_env;      /* environment variable overriding the base URL */
    const char *default_base;
    /* Appended to a base URL given as a bare host (no path, or "/"), or NULL. */
    const char *base_path;
    int wrong_path_status;     /* the status the API gives a wrong URL path, when it reads like another (0) */
    int has_upload;
    char *(*upload_url)(const struct sb_api *p);
    int (*parse_upload)(const cJSON *answer, char **url, char *err, size_t errlen);
    char *(*submit_url)(const struct sb_api *p, const char *model);
    char *(*submit_body)(const struct sb_manifest *m, const struct sb_jobspec *j, char *const *image_urls);
    int (*parse_submit)(const cJSON *answer, char **id, char *err, size_t errlen);
    char *(*poll_url)(const struct sb_api *p, const char *id);
    /* Where a finished prediction's outputs are read, when that is another call (else NULL). */
    char *(*result_url)(const struct sb_api *p, const char *id);
    /* Reads a poll or result answer. */
    int (*parse_poll)(const cJSON *answer, struct sb_poll_result *out, char *err, size_t errlen);
    /* Cancelling a queued prediction (NULL when the provider cannot). */
    char *(*cancel_url)(const struct sb_api *p, const char *id);
    /* 1 cancelled, 0 not cancellable any more, SB_EINVAL unreadable. */
    int (*parse_cancel)(const cJSON *answer);
    /*
     * The message and code of an error answer (any status), or of a 200 that
     * carries one: returns SB_ERR then, with *status the HTTP status the error
     * stands for (its code mapped), or 0 when unknown. A code that says the
     * result is not ready yet maps to SB_HTTP_NOT_READY.
     */
    int (*error_info)(const cJSON *answer, char *msg, size_t msglen, char *code, size_t codelen,
                      int *status);
    /* Error codes that say the provider no longer knows a prediction, beside HTTP 404 (NULL-terminated, or NULL). */
    const char *const *gone_codes;
    /* The multipart form of an upload (has_upload): field name, file name, content type. */
    void (*upload_form)(const struct sb_localfile *f, struct sb_upload_form *out);

    /* Its models (checks.c asks): those it knows (NULL-terminated), the price per output image, */
    const char *const *models;
    double default_price;
    /* what it knows of one (out->known, the images field; zeroed before), */
    void (*describe_model)(const char *model, struct sb_model_info *out);
    /*
     * and the check of a job's params, for any model (rules for every model of the
     * provider, then a known model's params): reports through c, sets *max_images to
     * the outputs asked for, and *implied when that is the API's own maximum, not asked.
     */
    void (*check_params)(struct sb_check *c, const char *model, const struct sb_model_info *mi,
                         const cJSON *params, int n_images, int *max_images, int *implied);
};

/* HTTP 425 Too Early: what a provider's "not ready yet" code stands for (RunComfy's 400005). */
#define SB_HTTP_NOT_READY 425

struct sb_api {
    const struct sb_provider_ops *ops;
    char *base;                /* base URL, no trailing slash */
    char *auth_header;         /* "Authorization: Bearer ..." (never logged) */
    char *key;                 /* for redaction of echoed text */
};

extern const struct sb_provider_ops sb_provider_atlas;
extern const struct sb_provider_ops sb_provider_runcomfy;
/* Each provider's ops, by enum sb_provider. */
extern const struct sb_provider_ops *const sb_providers[SB_NPROVIDERS];

/* The key in api_key_file (blanks and line ends around it dropped), newly allocated into
 * *key; refuses a file readable by group or others, and one that holds no key. */
int sb_api_read_keyfile(const struct sb_manifest *m, char **key, char *err, size_t errlen);
/* The same checks, the key read and dropped (validate); SB_OK when there is no api_key_file. */
int sb_api_check_keyfile(const struct sb_manifest *m, char *err, size_t errlen);

/* Whether an error code says the provider no longer knows the prediction: ops's, or any provider's (NULL). */
int sb_provider_gone_code(const struct sb_provider_ops *ops, const char *code);

/*
 * Sets up the provider of a manifest: base URL from the environment, key from
 * the environment or the manifest's api_key_file. Fails with a message naming
 * what to set, never the key.
 */
int sb_api_open(const struct sb_manifest *m, struct sb_api *p, char *err, size_t errlen);
void sb_api_close(struct sb_api *p);
/* Replaces every occurrence of the key in s with "[redacted]" (in place, s is reallocated). */
char *sb_redact(const struct sb_api *p, char *s);

/* Parses an API answer: an object, no trailing garbage, within cJSON's limits. */
cJSON *sb_json_parse(const char *body, size_t len);
/* A non-empty string member, or NULL. */
const char *sb_json_str(const cJSON *o, const char *key);
/* Appends an http(s) output URL to a poll result (at most 64). */
int sb_poll_add_output(struct sb_poll_result *r, const cJSON *v);
/*
 * Reads a status word through the provider's table into r (state, status,
 * unknown_status, kind). Returns SB_EINVAL when the answer has no status word.
 */
int sb_poll_read_status(const cJSON *o, const struct sb_status_word *table, struct sb_poll_result *r);
/*
 * Lists an answer's outputs: a URL string, or an array of them. An entry that
 * is no http(s) URL is passed over (counted in r->skipped), never discarding
 * the others; an entry whose flag in nsfw (has_nsfw_contents, may be NULL) is
 * true is withheld (counted in r->withheld).
 */
void sb_poll_take_outputs(struct sb_poll_result *r, const cJSON *outputs, const cJSON *nsfw);
/* The provider's failure message and code: error as a string or an object ({message, code}). */
void sb_poll_take_error(struct sb_poll_result *r, const cJSON *o);
/*
 * The readable text of an error answer: msg, message, error_message, error (a
 * string or an object) or detail (a string, or an array of {loc, msg} as 422
 * answers give it, joined). "" when none.
 */
void sb_error_text(const cJSON *o, char *msg, size_t len);

#endif
