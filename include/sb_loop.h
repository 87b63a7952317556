/*
 * HTTP on one libuv loop: libcurl's multi interface driven by uv_poll (one
 * per socket) and one uv_timer, as curl's multi-uv example does it. A request
 * is a struct sb_req embedded in its owner's struct; its done callback runs
 * from the loop, outside any libcurl callback, once the transfer has ended.
 */
#ifndef SB_LOOP_H
#define SB_LOOP_H

#include <stdint.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <uv.h>

#include "sb_common.h"

struct sb_loop;
struct sb_req;

typedef void (*sb_req_done_fn)(struct sb_req *r, CURLcode rc);
/* Receives body bytes instead of the capped buffer (downloads). Returns 0 to go on. */
typedef int (*sb_req_sink_fn)(struct sb_req *r, const char *p, size_t n);

struct sb_req {
    CURL *easy;
    struct sb_loop *loop;
    struct sb_buf body;            /* the answer, capped (unless a sink takes it) */
    cJSON *json;                   /* the answer parsed by the owner, freed with the request */
    int json_read;                 /* the owner has parsed it (json may be NULL) */
    sb_req_sink_fn sink;
    long status;                   /* HTTP status, 0 when none arrived */
    int64_t retry_after_ms;        /* from a Retry-After header, -1 when absent */
    int sent;                      /* the request went out (its answer may be lost) */
    int attempts;                  /* times it went out: libcurl resends on its own when a
                                      reused connection dies before answering */
    int too_big;                   /* the body passed its cap: aborted */
    int send_once;                 /* never let libcurl send it again by itself (a submit: each send may
                                      be billed): such a resend is stopped, and the call ends as lost */
    int resend_stopped;            /* ... it was: a kept-alive connection died, not the API */
    char errbuf[CURL_ERROR_SIZE];
    struct curl_slist *headers;    /* owned */
    curl_mime *mime;               /* owned */
    char *post;                    /* owned request body */
    CURLU *uh;                     /* owned: the URL parsed, when seedbatch could do it cheaply */
    sb_req_done_fn done;
    int active;
};

struct sb_http_opts {
    long connect_timeout_ms;
    long timeout_ms;               /* whole transfer */
    long low_speed_limit;          /* bytes/s ... */
    long low_speed_time_s;         /* ... for this long, or the transfer is aborted */
    size_t max_body;               /* cap of the in-memory answer */
    int follow_redirects;          /* http(s) only, at most 5 */
};

struct sb_loop *sb_loop_new(uv_loop_t *uv, long max_connects);
/* At most n connections open at once; transfers beyond wait for one (open files are finite). */
void sb_loop_cap_connections(struct sb_loop *l, long n);
/* Stops every transfer without calling their done callbacks, then frees. */
void sb_loop_free(struct sb_loop *l);
uv_loop_t *sb_loop_uv(struct sb_loop *l);
/* Transfers under way. */
int sb_loop_active(const struct sb_loop *l);

/* What the loop has seen since it began (the debug report prints it; tests read it there). */
struct sb_loop_counts {
    long sockets;                  /* connections opened */
    long idle_wakeups;             /* kept-alive connections that woke while no transfer used them */
    long requests;                 /* transfers prepared */
    long urls_parsed;              /* of which libcurl was given the URL parsed (sb_loop_url) */
};
void sb_loop_counts(const struct sb_loop *l, struct sb_loop_counts *c);

/*
 * Debug tracing of every transfer (headers and libcurl's notes) to the log,
 * with the Authorization header's value replaced by [redacted]. Off by default.
 */
void sb_loop_set_debug(int on);

/*
 * The parsed form of url for CURLOPT_CURLU (the caller frees it), or NULL when
 * libcurl must parse the text itself: see loop.c.
 */
CURLU *sb_loop_url(struct sb_loop *l, const char *url);
/* Prepares r for a new transfer of url (keeping nothing of an earlier one). */
int sb_req_init(struct sb_req *r, struct sb_loop *l, const char *url, const struct sb_http_opts *o);
/* Sets a JSON body (taken over) and makes it a POST. */
void sb_req_json(struct sb_req *r, char *json);
void sb_req_header(struct sb_req *r, const char *h);
int sb_req_start(struct sb_req *r, sb_req_done_fn done);
/* Stops a transfer without calling done. */
void sb_req_abort(struct sb_req *r);
/* Frees what the request owns (after done, or instead of starting it). */
void sb_req_cleanup(struct sb_req *r);

#endif
