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
    SB_PRED_RUNNING,    /* queued or processing */
    SB_PRED_READY,      /* finished: its result must be fetched (RunComfy's status call) */
    SB_PRED_SUCCEEDED,  /* outputs are listed */
    SB_PRED_FAILED,     /* the provider failed or refused it */
    SB_PRED_CANCELLED   /* cancelled remotely */
};

struct sb_poll_result {
    enum sb_pred_state state;
    char **outputs;        /* output URLs when succeeded */
    int n_outputs;
    double predict_time;   /* seconds, < 0 when not given */
    int queue_position;    /* place in the provider's queue, -1 when not given */
    char *error;           /* provider's message when failed */
    char *error_code;      /* provider's code when failed, or NULL */
};
void sb_poll_result_clear(struct sb_poll_result *r);

struct sb_api;

/*
 * The parse_* and error_info functions read an answer's body as sb_json_parse
 * gives it, parsed once for all of them: NULL when it is not a JSON object.
 */
struct sb_provider_ops {
    const char *name;
    const char *key_env;       /* environment variable holding the key */
    const char *base_env;      /* environment variable overriding the base URL */
    const char *default_base;
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
     * stands for (its code mapped), or 0 when unknown.
     */
    int (*error_info)(const cJSON *answer, char *msg, size_t msglen, char *code, size_t codelen,
                      int *status);
};

struct sb_api {
    const struct sb_provider_ops *ops;
    char *base;                /* base URL, no trailing slash */
    char *auth_header;         /* "Authorization: Bearer ..." (never logged) */
    char *key;                 /* for redaction of echoed text */
};

extern const struct sb_provider_ops sb_provider_atlas;
extern const struct sb_provider_ops sb_provider_runcomfy;

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

#endif
