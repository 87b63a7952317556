/*
 * mockapi: the test double of both providers' APIs, as ../shared/API.md
 * describes them, on libmicrohttpd. It serves Atlas Cloud (upload, submit,
 * poll, with both documented answer shapes) and RunComfy (submit, status,
 * result, cancel), real PNG/JPEG outputs, and injects faults on request. It
 * counts everything it sees and serves the counts on GET /_mock/stats.
 *
 *   mockapi [--port N] [--port-file F] [--key K] [--latency MS] [--rate-limit R]
 *           [--retry-after S [--retry-after-date]] [--fault EP:KIND:P]... [--slow-ms MS] [--fail-rate P]
 *           [--early-404 MS] [--outputs N] [--expire-after MS] [--seed N]
 *           [--threads N] [--no-variants] [--tls-cert PEM --tls-key PEM]
 *           [--output-redirect file|gopher|loop|ok] [--idle-timeout S]
 *           [--public-origin URL] [--dialect FEATURE[,FEATURE...]] [--echo-auth]
 *
 *   EP:   upload submit poll download rc_submit rc_status rc_result rc_cancel any
 *   KIND: 400 401 402 403 404 429 429ra 500 502 503 504 drop slow truncate garbage
 *         lost (submit accepted, answer dropped) err200 (HTTP 200 carrying an error)
 *         huge (an endless chunked body) 422 (a validation answer with a detail array)
 *         cut (an output's first half with no length given, then a clean close: HTTP/1.0 style)
 *   P:    a probability (0.2), or #N for the first N matching requests
 *
 * --idle-timeout closes a connection idle for S seconds (default 120).
 * --public-origin: the scheme://host:port its output, upload and status URLs name,
 * for a proxy in front of it (default: its own address).
 * --dialect turns on answers the providers' own clients handle (../shared/API.md,
 * "What the providers' own clients show"), each chosen at random per answer:
 *   case      status words in upper or title case
 *   words     the wider vocabulary (Atlas created/queued/success/error, RunComfy canceled)
 *   unknown   a status word no table lists while queued (warming_up, preparing)
 *   verdict   Atlas failed predictions answered HTTP 500 with the verdict in the body
 *   errobj    error as an object {message, code}
 *   nonurl    Atlas outputs carry entries that are no URL ("" and null) beside the URLs
 *   notready  RunComfy's result before the end answered 400 with error_code 400005
 *   completed RunComfy's result answered "completed" (with its output) instead of "succeeded"
 *   detail    RunComfy's validation errors as 422 with a detail array
 *   stuck     every prediction answers "completed" with no output, forever
 *   nsfw      Atlas withholds the first output of every prediction (has_nsfw_contents),
 *             all of it when it makes one
 *   all       every one of them but stuck and nsfw, each in about half the answers (a feature
 *             named on its own is spoken in every answer it can be)
 * A prompt containing "mock:fail" always fails; "mock:expire" makes its outputs 404;
 * "mock:timeout" fails with the status timeout; "mock:nsfw" has every output withheld
 * by the content filter (Atlas: has_nsfw_contents), "mock:nsfw1" its first only;
 * "mock:stuck" answers "completed" with no output forever (both RunComfy calls).
 * Control (no key): GET /_mock/stats; POST /_mock/predictions/ID/phase/queued|running|done;
 * POST /_mock/faults/clear ends every --fault.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "mockimg.h"
#include "sb_common.h"

#define MAX_BODY (60u * 1024 * 1024)
#define ATLAS_MAX_BODY (50u * 1024 * 1024)
#define MAX_FAULTS 32

enum ep { EP_UPLOAD, EP_SUBMIT, EP_POLL, EP_DOWNLOAD, EP_RC_SUBMIT, EP_RC_STATUS, EP_RC_RESULT,
          EP_RC_CANCEL, EP_FILES, EP_CONTROL, EP_OTHER, EP_N, EP_ANY = 100 };
static const char *ep_names[EP_N] = {"upload", "submit", "poll", "download", "rc_submit", "rc_status",
                                     "rc_result", "rc_cancel", "files", "control", "other"};

enum dialect { D_CASE = 1, D_WORDS = 2, D_UNKNOWN = 4, D_VERDICT = 8, D_ERROBJ = 16, D_NONURL = 32,
               D_NOTREADY = 64, D_COMPLETED = 128, D_DETAIL = 256, D_STUCK = 512, D_NSFW = 1024 };
static const char *dialect_names[] = {"case", "words", "unknown", "verdict", "errobj", "nonurl", "notready",
                                      "completed", "detail", "stuck", "nsfw"};

enum kind { K_400, K_401, K_402, K_403, K_404, K_429, K_429RA, K_500, K_502, K_503, K_504, K_DROP,
            K_SLOW, K_TRUNCATE, K_GARBAGE, K_LOST, K_ERR200, K_HUGE, K_422, K_CUT, K_N };
static const char *kind_names[K_N] = {"400", "401", "402", "403", "404", "429", "429ra", "500", "502", "503",
                                      "504", "drop", "slow", "truncate", "garbage", "lost", "err200", "huge", "422", "cut"};
static const int kind_status[K_N] = {400, 401, 402, 403, 404, 429, 429, 500, 502, 503, 504, 0, 0, 0, 200, 0, 200, 200, 422, 200};

struct fault {
    int ep;
    enum kind kind;
    double prob;      /* when first_n is 0 */
    long first_n;     /* #N: the first N matching requests */
    long seen;
};

struct pred {
    char id[40];
    int runcomfy;
    int64_t created_ms;
    int n_outputs;
    char format[8];
    int fail;
    int expire;
    int timeout_fail;  /* fails with the status "timeout" */
    int nsfw;          /* 1: every output withheld; 2: the first one only */
    int stuck;         /* "completed" with no output, forever */
    long calls;        /* polls, status and result calls for it */
    int64_t call_ms[32]; /* when the first of them came, after its creation */
    int cancelled;
    int forced;        /* phase set through /_mock/predictions/ID/phase/NAME, or -1 */
    int64_t done_ms;   /* when it finished (for output expiry) */
};

static struct {
    const char *key;
    int64_t latency_ms, slow_ms, early404_ms, expire_after_ms;
    double rate_limit, fail_rate;
    int64_t epoch_ms;   /* the wall clock (ms since the epoch) when now_ms() was 0 */
    int retry_after, retry_after_date, outputs, variants;
    unsigned dialect;            /* D_* features of --dialect */
    int echo_auth;               /* 401 answers repeat the Authorization header they refused */
    unsigned dialect_mixed;      /* ... those that came with "all": spoken in about half the answers */
    const char *scheme;          /* http, or https with --tls-cert/--tls-key */
    char origin[128];            /* scheme://host:port of the URLs it hands out (--public-origin) */
    const char *output_redirect; /* outputs listed behind /_mock/redirect/MODE/... */
    struct fault faults[MAX_FAULTS];
    int nfaults;
    unsigned port;
    uint64_t rng;

    pthread_mutex_t mu;
    struct sb_map *preds;        /* id -> struct pred */
    struct sb_map *bodies;       /* sha256 of submit body -> count */
    struct sb_map *uploads;      /* sha256 -> struct upload */
    long requests[EP_N];
    long faults_by_kind[K_N];
    long api_requests, refused_rate, unauthorized, submissions, duplicate_submissions;
    long foreign_agents, accept_encoding; /* requests without seedbatch's User-Agent; asking for compression */
    long absolute_form;                   /* requests whose target was a whole URL, as sent through a proxy */
    long uploads_total, predictions, cancelled, downloads_with_auth, expired_downloads, redirects;
    long billed_images;    /* outputs of the predictions made that do not fail: what the provider bills */
    long withheld_downloads;     /* outputs the content filter withheld, fetched all the same */
    long counter[EP_N];          /* per endpoint: picks the answer variant */
    long connections;            /* TCP connections accepted */
    char *dup_prompts[32];       /* prompts of duplicate submissions, for diagnosis */
    char *image_urls[64];        /* reference image URLs of the first submissions */
    int n_image_urls;
    int n_dup_prompts;
    int64_t *win;                /* timestamps of API requests in the last second (ring) */
    size_t win_head, win_len, win_cap, peak_1s;
    int64_t *acc;                /* accepted API requests, for the rate limit */
    size_t acc_head, acc_len, acc_cap;
} g = {.key = "test-key", .variants = 1, .retry_after = 1, .rng = 88172645463325252ULL, .scheme = "http"};

struct upload {
    unsigned char *data;
    size_t len;
    char type[64];
};

/* Per-request state, kept across the access handler's calls. */
struct conn {
    enum ep ep;
    struct sb_buf body;
    int too_big;
    struct MHD_PostProcessor *pp;
    struct sb_buf file;
    int got_file;
    int delayed;               /* a slow answer's delay has been scheduled */
    int pending_fault;         /* the fault to apply when it resumes */
    struct MHD_Connection *mc;
};

/* Connections waiting for a slow answer's delay to pass. */
struct sleeper {
    struct MHD_Connection *mc;
    int64_t wake_ms;
    struct sleeper *next;
};
static pthread_mutex_t sleep_mu = PTHREAD_MUTEX_INITIALIZER;
static struct sleeper *sleepers;

static void iso_ms(int64_t ms, char out[48]);

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double rnd(void)
{
    g.rng ^= g.rng << 13;
    g.rng ^= g.rng >> 7;
    g.rng ^= g.rng << 17;
    return (double)(g.rng >> 11) / (double)(1ULL << 53);
}

static void ring_push(int64_t **r, size_t *head, size_t *len, size_t *cap, int64_t v)
{
    if (*len == *cap) {
        size_t ncap = *cap ? *cap * 2 : 1024;
        int64_t *n = sb_malloc(ncap * sizeof *n);
        for (size_t i = 0; i < *len; i++)
            n[i] = (*r)[(*head + i) % *cap];
        free(*r);
        *r = n;
        *head = 0;
        *cap = ncap;
    }
    (*r)[(*head + *len) % *cap] = v;
    (*len)++;
}

static void ring_expire(int64_t *r, size_t *head, size_t *len, size_t cap, int64_t before)
{
    while (*len && r[*head] <= before) {
        *head = (*head + 1) % cap;
        (*len)--;
    }
}

/* Retry-After: seconds, or with --retry-after-date the HTTP-date that many seconds from now. */
static void retry_after_value(char *buf, size_t n)
{
    if (!g.retry_after_date) {
        snprintf(buf, n, "%d", g.retry_after);
        return;
    }
    time_t t = time(NULL) + g.retry_after;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* Records an API request; returns 1 when the server-side rate limit refuses it. Holds g.mu. */
static int count_api_request(int64_t t)
{
    g.api_requests++;
    ring_expire(g.win, &g.win_head, &g.win_len, g.win_cap, t - 1000);
    ring_push(&g.win, &g.win_head, &g.win_len, &g.win_cap, t);
    if (g.win_len > g.peak_1s)
        g.peak_1s = g.win_len;
    if (g.rate_limit <= 0)
        return 0;
    ring_expire(g.acc, &g.acc_head, &g.acc_len, g.acc_cap, t - 1000);
    if ((double)g.acc_len >= g.rate_limit) {
        g.refused_rate++;
        return 1;
    }
    ring_push(&g.acc, &g.acc_head, &g.acc_len, &g.acc_cap, t);
    return 0;
}

static void rand_id(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i + 1 < n; i++)
        out[i] = hex[(int)(rnd() * 16) & 15];
    out[n - 1] = '\0';
}

/* ---- responses ---- */

static enum MHD_Result send_body(struct MHD_Connection *c, unsigned status, const char *type,
                                 const void *data, size_t len, const char *retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    char rid[25];
    pthread_mutex_lock(&g.mu);
    rand_id(rid, sizeof rid);
    pthread_mutex_unlock(&g.mu);
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "X-Request-ID", rid);
    if (retry_after)
        MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    enum MHD_Result r = send_body(c, status, "application/json", s, strlen(s), NULL);
    free(s);
    return r;
}

/* An error in the provider's own shape. */
static enum MHD_Result send_error(struct MHD_Connection *c, int runcomfy, unsigned status, long code,
                                  const char *msg, const char *retry_after)
{
    cJSON *j = cJSON_CreateObject();
    if (runcomfy) {
        cJSON_AddNumberToObject(j, "error_code", (double)code);
        cJSON_AddStringToObject(j, "error_message", msg);
    } else {
        cJSON_AddNumberToObject(j, "code", (double)status);
        cJSON_AddStringToObject(j, "msg", msg);
        char rid[25];
        pthread_mutex_lock(&g.mu);
        rand_id(rid, sizeof rid);
        pthread_mutex_unlock(&g.mu);
        cJSON_AddStringToObject(j, "request_id", rid);
        cJSON_AddNullToObject(j, "data");
    }
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    enum MHD_Result r = send_body(c, status, "application/json", s, strlen(s), retry_after);
    free(s);
    return r;
}

/* A validation error as a 422 with a detail array of {loc, msg, type} (RunComfy's, FastAPI's shape). */
static enum MHD_Result send_detail(struct MHD_Connection *c, const char *field, const char *msg)
{
    cJSON *j = cJSON_CreateObject(), *d = cJSON_CreateArray(), *e = cJSON_CreateObject();
    cJSON *loc = cJSON_CreateArray();
    cJSON_AddItemToArray(loc, cJSON_CreateString("body"));
    cJSON_AddItemToArray(loc, cJSON_CreateString(field));
    cJSON_AddItemToObject(e, "loc", loc);
    cJSON_AddStringToObject(e, "msg", msg);
    cJSON_AddStringToObject(e, "type", "value_error");
    cJSON_AddItemToArray(d, e);
    cJSON_AddItemToObject(j, "detail", d);
    return send_json(c, 422, j);
}

struct trunc {
    char *data;
    size_t len;
};

static ssize_t trunc_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct trunc *t = cls;
    size_t half = t->len / 2;
    if (pos >= half)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = half - (size_t)pos < max ? half - (size_t)pos : max;
    memcpy(buf, t->data + pos, n);
    return (ssize_t)n;
}

static void trunc_free(void *cls)
{
    struct trunc *t = cls;
    free(t->data);
    free(t);
}

/* Announces the whole length, sends half, then closes the connection. */
static enum MHD_Result send_truncated(struct MHD_Connection *c, const char *data, size_t len)
{
    struct trunc *t = sb_malloc(sizeof *t);
    t->data = sb_malloc(len ? len : 1); /* binary: images carry NUL bytes */
    memcpy(t->data, data, len);
    t->len = len;
    struct MHD_Response *r = MHD_create_response_from_callback(len, 4096, trunc_reader, t, trunc_free);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

static ssize_t half_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct trunc *t = cls;
    size_t half = t->len / 2;
    if (pos >= half)
        return MHD_CONTENT_READER_END_OF_STREAM; /* a clean end: nothing says it is short */
    size_t n = half - (size_t)pos < max ? half - (size_t)pos : max;
    memcpy(buf, t->data + pos, n);
    return (ssize_t)n;
}

/* Sends the first half with no Content-Length as an HTTP/1.0 server would, then closes cleanly. */
static enum MHD_Result send_cut(struct MHD_Connection *c, const char *data, size_t len, const char *type)
{
    struct trunc *t = sb_malloc(sizeof *t);
    t->data = sb_malloc(len ? len : 1);
    memcpy(t->data, data, len);
    t->len = len;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, half_reader, t, trunc_free);
    MHD_set_response_options(r, MHD_RF_HTTP_1_0_SERVER, MHD_RO_END);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* An endless chunked body (up to 3 GB): the client must cap it itself. */
static ssize_t huge_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    if (pos >= 3ULL << 30)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (pos == 0 && max > 8) {
        memcpy(buf, "{\"data\":\"", 9);
        memset(buf + 9, 'x', max - 9);
        return (ssize_t)max;
    }
    memset(buf, 'x', max);
    return (ssize_t)max;
}

static enum MHD_Result send_huge(struct MHD_Connection *c)
{
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, huge_reader, NULL, NULL);
    MHD_add_response_header(r, "Content-Type", "application/json");
    enum MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

/* GET /_mock/redirect/MODE/ID/K.EXT: file, gopher, loop, or ok (to the real output). */
static enum MHD_Result handle_redirect(struct MHD_Connection *c, const char *rest)
{
    char loc[512];
    if (strncmp(rest, "file/", 5) == 0)
        snprintf(loc, sizeof loc, "file:///etc/passwd");
    else if (strncmp(rest, "gopher/", 7) == 0)
        snprintf(loc, sizeof loc, "gopher://127.0.0.1:%u/", g.port);
    else if (strncmp(rest, "loop/", 5) == 0)
        snprintf(loc, sizeof loc, "%s/_mock/redirect/%s", g.origin, rest);
    else if (strncmp(rest, "ok/", 3) == 0)
        snprintf(loc, sizeof loc, "%s/outputs/%s", g.origin, rest + 3);
    else
        return send_body(c, 404, "text/plain", "no such mode\n", 13, NULL);
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Location", loc);
    enum MHD_Result ret = MHD_queue_response(c, 302, r);
    MHD_destroy_response(r);
    pthread_mutex_lock(&g.mu);
    g.redirects++;
    pthread_mutex_unlock(&g.mu);
    return ret;
}

/* ---- faults ---- */

static int fault_matches(const struct fault *f, enum ep ep)
{
    if (f->ep == EP_ANY)
        return ep != EP_DOWNLOAD && ep != EP_FILES && ep != EP_CONTROL && ep != EP_OTHER;
    return f->ep == (int)ep;
}

/* Picks the fault (other than slow) this request gets, or -1; sets *slow. Holds g.mu. */
static int pick_fault(enum ep ep, int *slow)
{
    int chosen = -1;
    *slow = 0;
    for (int i = 0; i < g.nfaults; i++) {
        struct fault *f = &g.faults[i];
        if (!fault_matches(f, ep))
            continue;
        if (chosen >= 0 && f->kind != K_SLOW)
            continue; /* this request already has its fault: leave the others for later ones */
        int hit;
        if (f->first_n)
            hit = f->seen++ < f->first_n;
        else
            hit = rnd() < f->prob;
        if (!hit)
            continue;
        if (f->kind == K_SLOW)
            *slow = 1;
        else if (chosen < 0)
            chosen = (int)f->kind;
    }
    if (chosen >= 0)
        g.faults_by_kind[chosen]++;
    if (*slow)
        g.faults_by_kind[K_SLOW]++;
    return chosen;
}

/* ---- handlers ---- */

struct calls_ud {
    cJSON *each;   /* id -> {"n": calls, "ms": [when each of the first came]} */
    long max;
};

static void add_calls(const char *id, void *val, void *ud)
{
    struct pred *p = val;
    struct calls_ud *cu = ud;
    cJSON *o = cJSON_CreateObject(), *ms = cJSON_CreateArray();
    cJSON_AddNumberToObject(o, "n", (double)p->calls);
    for (long i = 0; i < p->calls && i < (long)(sizeof p->call_ms / sizeof *p->call_ms); i++)
        cJSON_AddItemToArray(ms, cJSON_CreateNumber((double)p->call_ms[i]));
    cJSON_AddItemToObject(o, "ms", ms);
    cJSON_AddItemToObject(cu->each, id, o);
    if (p->calls > cu->max)
        cu->max = p->calls;
}

static enum MHD_Result handle_stats(struct MHD_Connection *c)
{
    cJSON *j = cJSON_CreateObject(), *req = cJSON_CreateObject(), *fk = cJSON_CreateObject();
    pthread_mutex_lock(&g.mu);
    for (int i = 0; i < EP_N; i++)
        cJSON_AddNumberToObject(req, ep_names[i], (double)g.requests[i]);
    for (int i = 0; i < K_N; i++)
        cJSON_AddNumberToObject(fk, kind_names[i], (double)g.faults_by_kind[i]);
    cJSON_AddItemToObject(j, "requests", req);
    cJSON_AddItemToObject(j, "faults", fk);
    cJSON_AddNumberToObject(j, "api_requests", (double)g.api_requests);
    cJSON_AddNumberToObject(j, "refused_rate", (double)g.refused_rate);
    cJSON_AddNumberToObject(j, "unauthorized", (double)g.unauthorized);
    cJSON_AddNumberToObject(j, "submissions", (double)g.submissions);
    cJSON_AddNumberToObject(j, "distinct_submissions", (double)sb_map_count(g.bodies));
    cJSON_AddNumberToObject(j, "duplicate_submissions", (double)g.duplicate_submissions);
    cJSON *dp = cJSON_CreateArray();
    for (int i = 0; i < g.n_dup_prompts; i++)
        cJSON_AddItemToArray(dp, cJSON_CreateString(g.dup_prompts[i]));
    cJSON_AddItemToObject(j, "duplicate_prompts", dp);
    cJSON *iu = cJSON_CreateArray();
    for (int i = 0; i < g.n_image_urls; i++)
        cJSON_AddItemToArray(iu, cJSON_CreateString(g.image_urls[i]));
    cJSON_AddItemToObject(j, "image_urls", iu);
    cJSON_AddNumberToObject(j, "uploads", (double)g.uploads_total);
    cJSON_AddNumberToObject(j, "distinct_uploads", (double)sb_map_count(g.uploads));
    cJSON_AddNumberToObject(j, "predictions", (double)g.predictions);
    cJSON_AddNumberToObject(j, "billed_images", (double)g.billed_images);
    cJSON_AddNumberToObject(j, "cancelled", (double)g.cancelled);
    cJSON_AddNumberToObject(j, "downloads_with_auth", (double)g.downloads_with_auth);
    cJSON_AddNumberToObject(j, "expired_downloads", (double)g.expired_downloads);
    cJSON_AddNumberToObject(j, "redirects", (double)g.redirects);
    cJSON_AddNumberToObject(j, "peak_requests_1s", (double)g.peak_1s);
    cJSON_AddNumberToObject(j, "connections", (double)g.connections);
    cJSON_AddNumberToObject(j, "foreign_agents", (double)g.foreign_agents);
    cJSON_AddNumberToObject(j, "accept_encoding", (double)g.accept_encoding);
    cJSON_AddNumberToObject(j, "absolute_form", (double)g.absolute_form);
    cJSON_AddNumberToObject(j, "withheld_downloads", (double)g.withheld_downloads);
    struct calls_ud cu = {cJSON_CreateObject(), 0};
    sb_map_each(g.preds, add_calls, &cu);
    cJSON_AddNumberToObject(j, "max_prediction_calls", (double)cu.max);
    cJSON_AddItemToObject(j, "prediction_calls", cu.each);
    pthread_mutex_unlock(&g.mu);
    return send_json(c, 200, j);
}

/* POST /_mock/predictions/ID/phase/queued|running|done: tests move a prediction on at will. */
static enum MHD_Result handle_force(struct MHD_Connection *c, const char *rest)
{
    static const char *names[] = {"queued", "running", "done"};
    const char *slash = strstr(rest, "/phase/");
    if (!slash)
        return send_body(c, 400, "text/plain", "bad path\n", 9, NULL);
    char id[40];
    snprintf(id, sizeof id, "%.*s", (int)(slash - rest), rest);
    int phase = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(slash + 7, names[i]) == 0)
            phase = i;
    pthread_mutex_lock(&g.mu);
    struct pred *p = sb_map_get(g.preds, id);
    if (p && phase >= 0) {
        p->forced = phase;
        if (phase == 2)
            p->done_ms = now_ms();
    }
    pthread_mutex_unlock(&g.mu);
    if (!p || phase < 0)
        return send_body(c, 404, "text/plain", "no such prediction or phase\n", 28, NULL);
    return send_body(c, 200, "text/plain", "ok\n", 3, NULL);
}

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                                 const char *content_type, const char *encoding, const char *data,
                                 uint64_t off, size_t size)
{
    struct conn *cn = cls;
    (void)kind, (void)filename, (void)encoding, (void)off, (void)content_type;
    if (strcmp(key, "file") != 0)
        return MHD_YES;
    cn->got_file = 1;
    if (size && sb_buf_append(&cn->file, data, size) != SB_OK)
        cn->too_big = 1;
    return MHD_YES;
}

static enum MHD_Result handle_upload(struct MHD_Connection *c, struct conn *cn, int fault)
{
    if (!cn->got_file)
        return send_error(c, 0, 400, 400, "multipart part named file is required", NULL);
    if (cn->too_big)
        return send_error(c, 0, 413, 413, "file too large", NULL);
    char sha[65];
    sb_sha256_hex(cn->file.data ? cn->file.data : "", cn->file.len, sha);
    long variant;
    pthread_mutex_lock(&g.mu);
    g.uploads_total++;
    variant = g.counter[EP_UPLOAD]++;
    if (!sb_map_get(g.uploads, sha)) {
        struct upload *u = sb_calloc(1, sizeof *u);
        u->data = sb_malloc(cn->file.len + 1);
        memcpy(u->data, cn->file.data ? cn->file.data : "", cn->file.len);
        u->len = cn->file.len;
        sb_map_put(g.uploads, sha, u);
    }
    pthread_mutex_unlock(&g.mu);
    char url[512];
    snprintf(url, sizeof url, "%s/files/%s", g.origin, sha);
    cJSON *j = cJSON_CreateObject(), *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "code", 200);
    cJSON_AddStringToObject(j, "message", "success");
    int v = g.variants ? (int)(variant % 3) : 0;
    cJSON_AddStringToObject(d, v == 2 ? "url" : "download_url", url);
    cJSON_AddStringToObject(d, v == 0 ? "file_name" : "filename", sha);
    cJSON_AddStringToObject(d, v == 1 ? "type" : "content_type", "image/*");
    cJSON_AddNumberToObject(d, "size", (double)cn->file.len);
    cJSON_AddItemToObject(j, "data", d);
    if (fault == K_GARBAGE) {
        cJSON_Delete(j);
        return send_body(c, 200, "application/json", "{\"code\":200,\"data\":{\"download_u", 31, NULL);
    }
    return send_json(c, 200, j);
}

/* Outputs requested by a submit's params: --outputs, else max_images (RunComfy: with auto). */
static int outputs_for(const cJSON *params, int runcomfy)
{
    if (g.outputs > 0)
        return g.outputs;
    const cJSON *mi = cJSON_GetObjectItemCaseSensitive(params, "max_images");
    if (runcomfy) {
        const cJSON *sig = cJSON_GetObjectItemCaseSensitive(params, "sequential_image_generation");
        if (!cJSON_IsString(sig) || strcmp(sig->valuestring, "auto") != 0)
            return 1;
    }
    if (cJSON_IsNumber(mi) && mi->valuedouble >= 1 && mi->valuedouble <= 15)
        return (int)mi->valuedouble;
    return 1;
}

/* Checks that an image URL naming this server's /files/ was uploaded. */
static int image_ok(const char *url)
{
    char prefix[192];
    snprintf(prefix, sizeof prefix, "%s/files/", g.origin);
    if (strncmp(url, prefix, strlen(prefix)) != 0)
        return strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0;
    pthread_mutex_lock(&g.mu);
    int ok = sb_map_get(g.uploads, url + strlen(prefix)) != NULL;
    pthread_mutex_unlock(&g.mu);
    return ok;
}

static struct pred *new_prediction(const cJSON *params, int runcomfy, const char *body, size_t len)
{
    struct pred *p = sb_calloc(1, sizeof *p);
    p->runcomfy = runcomfy;
    p->created_ms = now_ms();
    p->forced = -1;
    p->n_outputs = outputs_for(params, runcomfy);
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(params, "output_format");
    snprintf(p->format, sizeof p->format, "%s",
             cJSON_IsString(of) && strcmp(of->valuestring, "png") == 0 ? "png" :
             cJSON_IsString(of) ? "jpeg" : runcomfy ? "png" : "jpeg");
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(params, "prompt");
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(params, runcomfy ? "image" : "images"), *it;
    if (!imgs)
        imgs = cJSON_GetObjectItemCaseSensitive(params, "image");
    const char *prompt = cJSON_IsString(pr) ? pr->valuestring : "";
    char sha[65];
    sb_sha256_hex(body, len, sha);
    pthread_mutex_lock(&g.mu);
    rand_id(p->id, 25);
    p->fail = strstr(prompt, "mock:fail") != NULL || (g.fail_rate > 0 && rnd() < g.fail_rate);
    p->expire = strstr(prompt, "mock:expire") != NULL;
    p->timeout_fail = strstr(prompt, "mock:timeout") != NULL;
    p->fail |= p->timeout_fail;
    p->nsfw = strstr(prompt, "mock:nsfw1") ? 2 : strstr(prompt, "mock:nsfw") ? 1 : 0;
    p->stuck = strstr(prompt, "mock:stuck") != NULL || (g.dialect & D_STUCK);
    if (!p->nsfw && !runcomfy && (g.dialect & D_NSFW))
        p->nsfw = p->n_outputs > 1 ? 2 : 1;
    sb_map_put(g.preds, p->id, p);
    if (cJSON_IsString(imgs) && g.n_image_urls < 64)
        g.image_urls[g.n_image_urls++] = sb_strdup(imgs->valuestring);
    cJSON_ArrayForEach(it, imgs) {
        if (cJSON_IsString(it) && g.n_image_urls < 64)
            g.image_urls[g.n_image_urls++] = sb_strdup(it->valuestring);
    }
    g.submissions++;
    g.predictions++;
    if (!p->fail)
        g.billed_images += p->n_outputs;
    long n = (long)(intptr_t)sb_map_get(g.bodies, sha);
    if (n) {
        g.duplicate_submissions++;
        if (g.n_dup_prompts < 32)
            g.dup_prompts[g.n_dup_prompts++] = sb_strdup(prompt);
    }
    sb_map_put(g.bodies, sha, (void *)(intptr_t)(n + 1));
    pthread_mutex_unlock(&g.mu);
    return p;
}

static enum MHD_Result handle_submit(struct MHD_Connection *c, struct conn *cn, int fault)
{
    if (cn->too_big)
        return send_error(c, 0, 413, 413, "request body over 50 MB", NULL);
    cJSON *root = cJSON_ParseWithLength(cn->body.data ? cn->body.data : "", cn->body.len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return send_error(c, 0, 400, 400, "request body is not a JSON object", NULL);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "input");
    if (!cJSON_IsObject(params))
        params = root;
    enum MHD_Result r;
    int seq = cJSON_IsString(model) && strcmp(model->valuestring, "bytedance/seedream-v5.0-lite/edit-sequential") == 0;
    int single = cJSON_IsString(model) && strcmp(model->valuestring, "bytedance/seedream-v5.0-lite/edit") == 0;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(params, "prompt");
    if (!seq && !single) {
        r = send_error(c, 0, 404, 404, "model not found", NULL);
        goto out;
    }
    if (!cJSON_IsString(prompt) || !*prompt->valuestring) {
        r = send_error(c, 0, 400, 400, "prompt is required", NULL);
        goto out;
    }
    if (seq) {
        const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(params, "images"), *it;
        int n = cJSON_GetArraySize(imgs);
        if (!cJSON_IsArray(imgs) || n < 1 || n > 14) {
            r = send_error(c, 0, 400, 400, "images must be an array of 1 to 14 URLs", NULL);
            goto out;
        }
        cJSON_ArrayForEach(it, imgs) {
            if (!cJSON_IsString(it) || !image_ok(it->valuestring)) {
                r = send_error(c, 0, 400, 400, "an image URL is not accessible", NULL);
                goto out;
            }
        }
    } else {
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(params, "image");
        if (!cJSON_IsString(img) || !image_ok(img->valuestring)) {
            r = send_error(c, 0, 400, 400, "image must be one accessible URL", NULL);
            goto out;
        }
    }
    struct pred *p = new_prediction(params, 0, cn->body.data, cn->body.len);
    if (fault == K_LOST) {
        r = MHD_NO; /* accepted and billed, but the answer never arrives */
        goto out;
    }
    cJSON *j = cJSON_CreateObject(), *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "id", p->id);
    cJSON_AddStringToObject(d, "status", "starting");
    cJSON_AddStringToObject(d, "model", model->valuestring);
    pthread_mutex_lock(&g.mu);
    long v = g.counter[EP_SUBMIT]++;
    pthread_mutex_unlock(&g.mu);
    if (g.variants && v % 2) {
        cJSON_Delete(j);
        j = d; /* the flat shape some guides read */
    } else {
        cJSON_AddNumberToObject(j, "code", 200);
        cJSON_AddItemToObject(j, "data", d);
    }
    if (fault == K_GARBAGE) {
        cJSON_Delete(j);
        r = send_body(c, 200, "application/json", "{\"code\":200,\"data\":{\"id\":", 24, NULL);
    } else if (fault == K_TRUNCATE) {
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        r = send_truncated(c, s, strlen(s));
        free(s);
    } else {
        r = send_json(c, 200, j);
    }
out:
    cJSON_Delete(root);
    return r;
}

/* Where a prediction stands now: 0 queued, 1 processing, 2 done (failed or succeeded), 3 cancelled. */
static int pred_phase(struct pred *p, int64_t t)
{
    if (p->cancelled)
        return 3;
    if (p->forced >= 0)
        return p->forced;
    int64_t el = t - p->created_ms;
    if (el >= g.latency_ms) {
        if (!p->done_ms)
            p->done_ms = p->created_ms + g.latency_ms;
        return 2;
    }
    return el < g.latency_ms / 2 ? 0 : 1;
}

static cJSON *output_urls(const struct pred *p)
{
    cJSON *a = cJSON_CreateArray();
    for (int k = 1; k <= p->n_outputs; k++) {
        char url[512];
        const char *ext = strcmp(p->format, "png") == 0 ? "png" : "jpeg";
        if (g.output_redirect)
            snprintf(url, sizeof url, "%s/_mock/redirect/%s/%s/%d.%s", g.origin,
                     g.output_redirect, p->id, k, ext);
        else
            snprintf(url, sizeof url, "%s/outputs/%s/%d.%s", g.origin, p->id, k, ext);
        cJSON_AddItemToArray(a, cJSON_CreateString(url));
    }
    return a;
}

static struct pred *find_pred(const char *id)
{
    pthread_mutex_lock(&g.mu);
    struct pred *p = sb_map_get(g.preds, id);
    pthread_mutex_unlock(&g.mu);
    return p;
}

/*
 * Whether this answer speaks dialect feature f: always when it was named, for
 * about half the answers when it came with "all" (a mix of every variant).
 */
static int coin(unsigned f)
{
    if (!(g.dialect & f))
        return 0;
    if (!(g.dialect_mixed & f))
        return 1;
    pthread_mutex_lock(&g.mu);
    int heads = rnd() < 0.5;
    pthread_mutex_unlock(&g.mu);
    return heads;
}

/* One of n words, at random when the wider vocabulary is on, else the first. */
static const char *pick(const char *const *words, int n)
{
    if (!(g.dialect & D_WORDS))
        return words[0];
    pthread_mutex_lock(&g.mu);
    /* Named alone, the wider vocabulary answers its other words; mixed in, any of them. */
    if (!(g.dialect_mixed & D_WORDS) && n > 1) {
        int i = 1 + (int)(rnd() * (n - 1)) % (n - 1);
        pthread_mutex_unlock(&g.mu);
        return words[i];
    }
    int i = (int)(rnd() * n) % n;
    pthread_mutex_unlock(&g.mu);
    return words[i];
}

/* A status word as the answer gives it: with "case", in upper or title case at times. */
static void add_status(cJSON *o, const char *word)
{
    char w[48];
    snprintf(w, sizeof w, "%s", word);
    if (coin(D_CASE)) {
        int upper = coin(D_CASE);
        for (char *c = w; *c; c++)
            if (upper || c == w)
                *c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
    }
    cJSON_AddStringToObject(o, "status", w);
}

/* Counts a poll, status or result call for the prediction, and when it came. */
static void count_call(struct pred *p, int64_t t)
{
    pthread_mutex_lock(&g.mu);
    if (p->calls < (long)(sizeof p->call_ms / sizeof *p->call_ms))
        p->call_ms[p->calls] = t - p->created_ms;
    p->calls++;
    pthread_mutex_unlock(&g.mu);
}

/* A failed prediction's error: a string beside error_code, or (errobj) an object. */
static void add_failure(cJSON *d, const struct pred *p)
{
    const char *msg = p->timeout_fail ? "generation timed out" : "The request was rejected by content moderation";
    if (coin(D_ERROBJ)) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "message", msg);
        cJSON_AddNumberToObject(e, "code", p->timeout_fail ? 1504 : 1039);
        cJSON_AddItemToObject(d, "error", e);
    } else {
        cJSON_AddStringToObject(d, "error", msg);
        cJSON_AddNumberToObject(d, "error_code", p->timeout_fail ? 1504 : 1039);
    }
}

static enum MHD_Result handle_poll(struct MHD_Connection *c, const char *id, int fault)
{
    static const char *queued[] = {"starting", "created", "queued"}, *done[] = {"completed", "succeeded", "success"},
                      *failed[] = {"failed", "error"};
    struct pred *p = find_pred(id);
    int64_t t = now_ms();
    if (!p || p->runcomfy)
        return send_error(c, 0, 404, 404, "prediction not found", NULL);
    count_call(p, t);
    if (t - p->created_ms < g.early404_ms)
        return send_error(c, 0, 404, 404, "prediction not found", NULL);
    cJSON *j = cJSON_CreateObject(), *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "code", 200);
    cJSON_AddStringToObject(d, "id", p->id);
    pthread_mutex_lock(&g.mu);
    long v = g.counter[EP_POLL]++;
    int phase = pred_phase(p, t);
    pthread_mutex_unlock(&g.mu);
    unsigned status = 200;
    if (phase == 0 || phase == 1) {
        add_status(d, phase == 1 ? "processing" : coin(D_UNKNOWN) ? "warming_up" : pick(queued, 3));
        cJSON_AddItemToObject(d, "outputs", cJSON_CreateArray());
    } else if (p->stuck) {
        add_status(d, "completed");
        cJSON_AddItemToObject(d, "outputs", cJSON_CreateArray());
    } else if (p->fail) {
        add_status(d, p->timeout_fail ? "timeout" : pick(failed, 2));
        add_failure(d, p);
        if (coin(D_VERDICT)) {
            /* The verdict in an error answer, as Atlas's MCP client reads it (readTerminalTaskStatus). */
            status = 500;
            cJSON_ReplaceItemInObject(j, "code", cJSON_CreateNumber(500));
            cJSON_AddStringToObject(j, "message", "prediction failed");
        }
    } else if (p->nsfw == 1) {
        add_status(d, "completed");
        cJSON_AddItemToObject(d, "outputs", cJSON_CreateArray());
        cJSON *flags = cJSON_CreateArray();
        for (int k = 0; k < p->n_outputs; k++)
            cJSON_AddItemToArray(flags, cJSON_CreateTrue());
        cJSON_AddItemToObject(d, "has_nsfw_contents", flags);
    } else {
        add_status(d, g.dialect & D_WORDS ? pick(done, 3) : g.variants && v % 2 ? "succeeded" : "completed");
        cJSON *urls = output_urls(p);
        int shape = g.variants ? (int)(v % 3) : 0;
        if (p->nsfw == 2) {
            /* The first output flagged: its URL is listed, and must not be fetched. */
            cJSON *flags = cJSON_CreateArray();
            for (int k = 0; k < p->n_outputs; k++)
                cJSON_AddItemToArray(flags, cJSON_CreateBool(k == 0));
            cJSON_AddItemToObject(d, "has_nsfw_contents", flags);
            shape = 0;
        }
        if (coin(D_NONURL)) {
            cJSON_AddItemToArray(urls, cJSON_CreateString(""));
            cJSON_AddItemToArray(urls, cJSON_CreateNull());
            shape = shape == 2 ? 0 : shape;
        }
        if (shape == 1) {
            cJSON_AddItemToObject(d, "output", urls);
        } else if (shape == 2 && p->n_outputs == 1) {
            cJSON_AddStringToObject(d, "output", cJSON_GetArrayItem(urls, 0)->valuestring);
            cJSON_Delete(urls);
        } else {
            cJSON_AddItemToObject(d, "outputs", urls);
        }
        cJSON *m = cJSON_CreateObject();
        cJSON_AddNumberToObject(m, "predict_time", (double)(p->done_ms - p->created_ms) / 1000.0);
        cJSON_AddItemToObject(d, "metrics", m);
        cJSON_AddNullToObject(d, "error");
    }
    cJSON_AddItemToObject(j, "data", d);
    if (fault == K_GARBAGE) {
        cJSON_Delete(j);
        return send_body(c, 200, "application/json", "<html>502 Bad Gateway</html>", 28, NULL);
    }
    if (fault == K_TRUNCATE) {
        char *s = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        enum MHD_Result r = send_truncated(c, s, strlen(s));
        free(s);
        return r;
    }
    return send_json(c, status, j);
}

static enum MHD_Result handle_rc_submit(struct MHD_Connection *c, struct conn *cn, const char *model, int fault)
{
    if (strcmp(model, "bytedance/seedream-5/lite/edit") != 0)
        return send_error(c, 1, 400, 400001, "bad model id", NULL);
    cJSON *root = cJSON_ParseWithLength(cn->body.data ? cn->body.data : "", cn->body.len);
    enum MHD_Result r;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(root, "prompt");
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(root, "image"), *it;
    int n = cJSON_GetArraySize(imgs), ok = cJSON_IsArray(imgs) && n >= 1 && n <= 14;
    cJSON_ArrayForEach(it, imgs) ok &= cJSON_IsString(it) && image_ok(it->valuestring);
    if (!cJSON_IsObject(root) || !cJSON_IsString(prompt) || !ok) {
        r = coin(D_DETAIL) ? send_detail(c, !cJSON_IsString(prompt) ? "prompt" : "image",
                                          "prompt and image (1 to 14 accessible URLs) are required")
                           : send_error(c, 1, 400, 400000, "prompt and image (1 to 14 URLs) are required", NULL);
        goto out;
    }
    struct pred *p = new_prediction(root, 1, cn->body.data, cn->body.len);
    if (fault == K_LOST) {
        r = MHD_NO;
        goto out;
    }
    char base[256], buf[512];
    snprintf(base, sizeof base, "%s/v1/requests/%s", g.origin, p->id);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "request_id", p->id);
    snprintf(buf, sizeof buf, "%s/status", base);
    cJSON_AddStringToObject(j, "status_url", buf);
    snprintf(buf, sizeof buf, "%s/result", base);
    cJSON_AddStringToObject(j, "result_url", buf);
    snprintf(buf, sizeof buf, "%s/cancel", base);
    cJSON_AddStringToObject(j, "cancel_url", buf);
    if (fault == K_GARBAGE) {
        cJSON_Delete(j);
        r = send_body(c, 200, "application/json", "{\"request_id\":", 14, NULL);
    } else {
        r = send_json(c, 200, j);
    }
out:
    cJSON_Delete(root);
    return r;
}

static enum MHD_Result handle_rc_request(struct MHD_Connection *c, enum ep ep, const char *id, int fault)
{
    static const char *cancelled[] = {"cancelled", "canceled"};
    struct pred *p = find_pred(id);
    if (!p || !p->runcomfy)
        return send_error(c, 1, 404, 404001, "request not found or expired", NULL);
    int64_t t = now_ms();
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "request_id", p->id);
    pthread_mutex_lock(&g.mu);
    int phase = pred_phase(p, t);
    long v = g.counter[EP_RC_RESULT]++;
    if (ep == EP_RC_CANCEL) {
        const char *outcome = "not_cancellable";
        if (phase == 0) {
            p->cancelled = 1;
            g.cancelled++;
            outcome = "cancelled";
            phase = 3;
        }
        pthread_mutex_unlock(&g.mu);
        static const char *st[] = {"in_queue", "in_progress", "completed", "cancelled"};
        cJSON_AddStringToObject(j, "status", st[phase]);
        cJSON_AddStringToObject(j, "outcome", outcome);
        return send_json(c, 202, j);
    }
    pthread_mutex_unlock(&g.mu);
    count_call(p, t);
    if (ep == EP_RC_STATUS) {
        const char *st[] = {coin(D_UNKNOWN) ? "preparing" : "in_queue", "in_progress", "completed",
                            pick(cancelled, 2)};
        add_status(j, st[phase]);
        if (phase == 0) {
            cJSON_AddNumberToObject(j, "queue_position", 1);
            cJSON_AddNullToObject(j, "instance_id");
        } else if (phase == 1) {
            cJSON_AddStringToObject(j, "instance_id", "i-mock");
        }
    } else {
        /* An unfinished request's result answers its state: words the status call gives, new ones too. */
        const char *st[] = {coin(D_UNKNOWN) ? "preparing" : "in_queue", "in_progress", NULL, pick(cancelled, 2)};
        if ((phase == 0 || phase == 1) && coin(D_NOTREADY)) {
            /* A result asked for too early: 400 with error_code 400005 (RunComfy's CLI keeps polling). */
            cJSON_Delete(j);
            return send_error(c, 1, 400, 400005, "Request is not completed yet", NULL);
        }
        if (phase != 2) {
            add_status(j, st[phase]);
        } else if (p->stuck) {
            add_status(j, "completed");
            cJSON_AddItemToObject(j, "output", cJSON_CreateObject());
        } else if (p->fail) {
            add_status(j, p->timeout_fail ? "timeout" : "failed");
            add_failure(j, p);
        } else {
            add_status(j, coin(D_COMPLETED) ? "completed" : "succeeded");
            cJSON *o = cJSON_CreateObject();
            cJSON *urls = output_urls(p);
            if (p->n_outputs == 1 && g.variants && v % 2) {
                cJSON_AddStringToObject(o, "image", cJSON_GetArrayItem(urls, 0)->valuestring);
                cJSON_Delete(urls);
            } else {
                cJSON_AddItemToObject(o, "images", urls);
            }
            cJSON_AddItemToObject(j, "output", o);
            /* As RunComfy times it: its creation and its end (the mock's clock is since its start). */
            char at[48];
            iso_ms(g.epoch_ms + p->created_ms, at);
            cJSON_AddStringToObject(j, "created_at", at);
            iso_ms(g.epoch_ms + p->done_ms, at);
            cJSON_AddStringToObject(j, "finished_at", at);
        }
    }
    if (fault == K_GARBAGE) {
        cJSON_Delete(j);
        return send_body(c, 200, "application/json", "not json at all", 15, NULL);
    }
    return send_json(c, 200, j);
}

static enum MHD_Result handle_download(struct MHD_Connection *c, const char *rest, int fault)
{
    char id[40];
    int k = 0;
    const char *slash = strchr(rest, '/');
    if (!slash || (size_t)(slash - rest) >= sizeof id)
        return send_body(c, 404, "text/plain", "not found\n", 10, NULL);
    memcpy(id, rest, (size_t)(slash - rest));
    id[slash - rest] = '\0';
    k = atoi(slash + 1);
    struct pred *p = find_pred(id);
    int64_t t = now_ms();
    pthread_mutex_lock(&g.mu);
    int phase = p ? pred_phase(p, t) : -1;
    pthread_mutex_unlock(&g.mu);
    if (!p || k < 1 || k > p->n_outputs || phase != 2 || p->fail || p->stuck)
        return send_body(c, 404, "text/plain", "not found\n", 10, NULL);
    if (p->nsfw == 1 || (p->nsfw == 2 && k == 1)) {
        pthread_mutex_lock(&g.mu);
        g.withheld_downloads++;
        pthread_mutex_unlock(&g.mu);
    }
    if (p->expire || (g.expire_after_ms > 0 && t - p->done_ms > g.expire_after_ms)) {
        pthread_mutex_lock(&g.mu);
        g.expired_downloads++;
        pthread_mutex_unlock(&g.mu);
        return send_body(c, 404, "application/xml", "<Error><Code>NoSuchKey</Code></Error>", 37, NULL);
    }
    size_t len;
    unsigned char *img = mockimg_make(p->id, k, p->format, &len);
    if (!img)
        return send_body(c, 500, "text/plain", "encoder failed\n", 15, NULL);
    enum MHD_Result r;
    if (fault == K_TRUNCATE) {
        r = send_truncated(c, (const char *)img, len);
    } else if (fault == K_CUT) {
        r = send_cut(c, (const char *)img, len, strcmp(p->format, "png") == 0 ? "image/png" : "image/jpeg");
    } else {
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, img, MHD_RESPMEM_MUST_COPY);
        MHD_add_response_header(resp, "Content-Type", strcmp(p->format, "png") == 0 ? "image/png" : "image/jpeg");
        r = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
    }
    free(img);
    return r;
}

static enum ep classify(const char *url, const char *method, const char **arg)
{
    int post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
    *arg = NULL;
    if (strncmp(url, "/_mock/", 7) == 0)
        return EP_CONTROL;
    if (get && strncmp(url, "/outputs/", 9) == 0)
        return *arg = url + 9, EP_DOWNLOAD;
    if (get && strncmp(url, "/files/", 7) == 0)
        return *arg = url + 7, EP_FILES;
    if (post && strcmp(url, "/api/v1/model/uploadMedia") == 0)
        return EP_UPLOAD;
    if (post && strcmp(url, "/api/v1/model/generateImage") == 0)
        return EP_SUBMIT;
    if (get && strncmp(url, "/api/v1/model/prediction/", 25) == 0 && url[25] && !strchr(url + 25, '/'))
        return *arg = url + 25, EP_POLL;
    if (post && strncmp(url, "/v1/models/", 11) == 0 && url[11])
        return *arg = url + 11, EP_RC_SUBMIT;
    if (strncmp(url, "/v1/requests/", 13) == 0) {
        const char *s = strchr(url + 13, '/');
        *arg = url + 13;
        if (s && get && strcmp(s, "/status") == 0)
            return EP_RC_STATUS;
        if (s && get && strcmp(s, "/result") == 0)
            return EP_RC_RESULT;
        if (s && post && strcmp(s, "/cancel") == 0)
            return EP_RC_CANCEL;
    }
    return EP_OTHER;
}

static void sleep_until(struct MHD_Connection *mc, int64_t wake)
{
    struct sleeper *s = sb_malloc(sizeof *s);
    s->mc = mc;
    s->wake_ms = wake;
    pthread_mutex_lock(&sleep_mu);
    s->next = sleepers;
    sleepers = s;
    pthread_mutex_unlock(&sleep_mu);
}

static void *waker(void *arg)
{
    (void)arg;
    for (;;) {
        usleep(2000);
        int64_t t = now_ms();
        pthread_mutex_lock(&sleep_mu);
        struct sleeper **pp = &sleepers;
        while (*pp) {
            struct sleeper *s = *pp;
            if (s->wake_ms <= t) {
                *pp = s->next;
                MHD_resume_connection(s->mc);
                free(s);
            } else {
                pp = &s->next;
            }
        }
        pthread_mutex_unlock(&sleep_mu);
    }
    return NULL;
}

/*
 * A request target that is a whole URL (what a client sends through an HTTP
 * proxy) stands for its path, as an origin server must take it (RFC 9112,
 * 3.2.2): the mock can then be the proxy in front of itself.
 */
static const char *origin_form(const char *url)
{
    const char *p = strncmp(url, "http://", 7) == 0 ? url + 7 : strncmp(url, "https://", 8) == 0 ? url + 8 : NULL;
    if (!p)
        return url;
    const char *path = strchr(p, '/');
    return path ? path : "/";
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size,
                                  void **con_cls)
{
    (void)cls, (void)version;
    struct conn *cn = *con_cls;
    const char *arg;
    const char *target = url;
    url = origin_form(url);
    if (!cn) {
        if (url != target) {
            pthread_mutex_lock(&g.mu);
            g.absolute_form++;
            pthread_mutex_unlock(&g.mu);
        }
        cn = sb_calloc(1, sizeof *cn);
        cn->mc = c;
        cn->ep = classify(url, method, &arg);
        sb_buf_init(&cn->body, MAX_BODY);
        sb_buf_init(&cn->file, ATLAS_MAX_BODY);
        if (cn->ep == EP_UPLOAD)
            cn->pp = MHD_create_post_processor(c, 64 * 1024, post_iter, cn);
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->pp) {
            if (MHD_post_process(cn->pp, upload_data, *upload_size) != MHD_YES)
                cn->too_big = cn->too_big || cn->file.len >= cn->file.max;
        } else if (sb_buf_append(&cn->body, upload_data, *upload_size) != SB_OK ||
                   cn->body.len > ATLAS_MAX_BODY) {
            cn->too_big = 1;
            sb_buf_reset(&cn->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    enum ep ep = classify(url, method, &arg);
    if (ep == EP_CONTROL) {
        if (strcmp(url, "/_mock/stats") == 0)
            return handle_stats(c);
        if (strncmp(url, "/_mock/predictions/", 19) == 0)
            return handle_force(c, url + 19);
        if (strncmp(url, "/_mock/redirect/", 16) == 0)
            return handle_redirect(c, url + 16);
        if (strcmp(url, "/_mock/faults/clear") == 0) {
            pthread_mutex_lock(&g.mu);
            g.nfaults = 0; /* the faults given on the command line are over */
            pthread_mutex_unlock(&g.mu);
            return send_body(c, 200, "text/plain", "ok\n", 3, NULL);
        }
        return send_body(c, 200, "text/plain", "ok\n", 3, NULL);
    }
    if (ep == EP_FILES) {
        pthread_mutex_lock(&g.mu);
        g.requests[ep]++;
        struct upload *u = sb_map_get(g.uploads, arg);
        pthread_mutex_unlock(&g.mu);
        if (!u)
            return send_body(c, 404, "text/plain", "not found\n", 10, NULL);
        return send_body(c, 200, "application/octet-stream", u->data, u->len, NULL);
    }
    int runcomfy = ep == EP_RC_SUBMIT || ep == EP_RC_STATUS || ep == EP_RC_RESULT || ep == EP_RC_CANCEL ||
                   strncmp(url, "/v1/", 4) == 0;
    int fault = -1, slow = 0, refused = 0;
    if (!cn->delayed) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        char want[512];
        snprintf(want, sizeof want, "Bearer %s", g.key);
        int authed = auth && strcmp(auth, want) == 0;
        const char *agent = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "User-Agent");
        const char *type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
        int json_body = type && strcmp(type, "application/json") == 0;
        pthread_mutex_lock(&g.mu);
        g.requests[ep]++;
        g.foreign_agents += !agent || strncmp(agent, "seedbatch/", 10) != 0;
        g.accept_encoding += MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Accept-Encoding") != NULL;
        if (ep == EP_DOWNLOAD) {
            if (auth)
                g.downloads_with_auth++;
        } else if (!authed) {
            g.unauthorized++;
        } else {
            refused = count_api_request(now_ms());
        }
        if (ep == EP_DOWNLOAD || (authed && !refused))
            fault = pick_fault(ep, &slow);
        pthread_mutex_unlock(&g.mu);
        /* Atlas answers 401 for a wrong path too; unauthorised requests never reach a handler. */
        if (ep != EP_DOWNLOAD && !authed) {
            char msg[600];
            /* --echo-auth: the answer repeats the header it refused, as some gateways do. */
            snprintf(msg, sizeof msg, "unauthorized%s%.500s", g.echo_auth && auth ? ": got Authorization: " : "",
                     g.echo_auth && auth ? auth : "");
            return send_error(c, runcomfy, 401, runcomfy ? 400004 : 401, msg, NULL);
        }
        /* Both APIs read a submit's body as JSON only when it says it is. */
        if ((ep == EP_SUBMIT || ep == EP_RC_SUBMIT) && !json_body)
            return send_error(c, runcomfy, 400, 400, "Content-Type must be application/json", NULL);
        if (refused) {
            char ra[64];
            retry_after_value(ra, sizeof ra);
            return send_error(c, runcomfy, 429, 429, "too many requests", g.rate_limit > 0 && g.retry_after > 0 ? ra : NULL);
        }
        if (slow) {
            /* Answer later: the handler runs again once the waker resumes the connection. */
            cn->delayed = 1;
            cn->pending_fault = fault;
            MHD_suspend_connection(c);
            sleep_until(c, now_ms() + g.slow_ms);
            return MHD_YES;
        }
    } else {
        fault = cn->pending_fault;
    }
    if (ep == EP_OTHER)
        return send_error(c, runcomfy, runcomfy ? 404 : 401, runcomfy ? 404001 : 401,
                          runcomfy ? "not found" : "unauthorized", NULL);
    if (fault >= 0) {
        switch ((enum kind)fault) {
        case K_DROP:
            return MHD_NO;
        case K_429RA: {
            char ra[64];
            retry_after_value(ra, sizeof ra);
            return send_error(c, runcomfy, 429, 429, "too many requests", ra);
        }
        case K_ERR200:
            return send_error(c, 1, 200, runcomfy ? 400004 : 500, "token or account problem", NULL);
        case K_HUGE:
            return send_huge(c);
        case K_422:
            return send_detail(c, "image", "injected: URL must be https");
        case K_400: case K_401: case K_402: case K_403: case K_404: case K_429:
        case K_500: case K_502: case K_503: case K_504: {
            long code = kind_status[fault];
            if (runcomfy)
                code = fault == K_402 ? 400002 : fault == K_403 ? 403001 : fault == K_404 ? 404001 :
                       fault == K_401 ? 400004 : code * 1000;
            return send_error(c, runcomfy, (unsigned)kind_status[fault], code,
                              fault == K_402 ? "insufficient balance" : "injected fault", NULL);
        }
        default:
            break; /* garbage, truncate and lost are shaped by the handler */
        }
    }
    switch (ep) {
    case EP_UPLOAD: return handle_upload(c, cn, fault);
    case EP_SUBMIT: return handle_submit(c, cn, fault);
    case EP_POLL: return handle_poll(c, arg, fault);
    case EP_RC_SUBMIT: return handle_rc_submit(c, cn, arg, fault);
    case EP_RC_STATUS: case EP_RC_RESULT: case EP_RC_CANCEL: {
        char id[64];
        const char *s = strchr(arg, '/');
        snprintf(id, sizeof id, "%.*s", (int)(s - arg), arg);
        return handle_rc_request(c, ep, id, fault);
    }
    case EP_DOWNLOAD: return handle_download(c, arg, fault);
    default: return MHD_NO;
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    struct conn *cn = *con_cls;
    if (!cn)
        return;
    if (cn->pp)
        MHD_destroy_post_processor(cn->pp);
    sb_buf_free(&cn->body);
    sb_buf_free(&cn->file);
    free(cn);
    *con_cls = NULL;
}

static int parse_fault(const char *spec)
{
    char ep[32], kind[32], p[32];
    if (g.nfaults >= MAX_FAULTS || sscanf(spec, "%31[^:]:%31[^:]:%31s", ep, kind, p) != 3)
        return -1;
    struct fault *f = &g.faults[g.nfaults];
    memset(f, 0, sizeof *f);
    f->ep = -1;
    if (strcmp(ep, "any") == 0)
        f->ep = EP_ANY;
    for (int i = 0; i < EP_N; i++)
        if (strcmp(ep, ep_names[i]) == 0)
            f->ep = i;
    f->kind = K_N;
    for (int i = 0; i < K_N; i++)
        if (strcmp(kind, kind_names[i]) == 0)
            f->kind = (enum kind)i;
    if (f->ep < 0 || f->kind == K_N)
        return -1;
    if (p[0] == '#')
        f->first_n = atol(p + 1);
    else
        f->prob = atof(p);
    g.nfaults++;
    return 0;
}

/* --dialect case,words,...: the features named, "all" for every one but stuck. */
static int parse_dialect(const char *list)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *w = strtok_r(buf, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        unsigned f = 0;
        if (strcmp(w, "all") == 0)
            f = g.dialect_mixed = (D_NSFW << 1) - 1 - D_STUCK - D_NSFW;
        for (size_t i = 0; i < sizeof dialect_names / sizeof *dialect_names; i++)
            if (strcmp(w, dialect_names[i]) == 0)
                f = 1u << i;
        if (!f)
            return -1;
        g.dialect |= f;
    }
    return 0;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    (void)cls, (void)c, (void)socket_context;
    if (code != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    pthread_mutex_lock(&g.mu);
    g.connections++;
    pthread_mutex_unlock(&g.mu);
}

/* A time on the mock's clock as ISO 8601 UTC with milliseconds. */
static void iso_ms(int64_t ms, char out[48])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 48, "%s.%03dZ", base, (int)(ms % 1000));
}

int main(int argc, char **argv)
{
    unsigned idle_timeout = 120;
    {
        struct timespec wall;
        clock_gettime(CLOCK_REALTIME, &wall);
        g.epoch_ms = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000 - now_ms();
    }
    unsigned port = 0;
    int threads = 2;
    const char *port_file = NULL, *tls_cert = NULL, *tls_key = NULL, *public_origin = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name) (strcmp(a, name) == 0 && v && (++i, 1))
        if (OPT("--port")) port = (unsigned)atoi(v);
        else if (OPT("--port-file")) port_file = v;
        else if (OPT("--key")) g.key = v;
        else if (OPT("--latency")) g.latency_ms = atoll(v);
        else if (OPT("--rate-limit")) g.rate_limit = atof(v);
        else if (OPT("--retry-after")) g.retry_after = atoi(v);
        else if (strcmp(a, "--retry-after-date") == 0) g.retry_after_date = 1;
        else if (OPT("--slow-ms")) g.slow_ms = atoll(v);
        else if (OPT("--fail-rate")) g.fail_rate = atof(v);
        else if (OPT("--early-404")) g.early404_ms = atoll(v);
        else if (OPT("--outputs")) g.outputs = atoi(v);
        else if (OPT("--expire-after")) g.expire_after_ms = atoll(v);
        else if (OPT("--seed")) g.rng = strtoull(v, NULL, 10) * 2654435761ULL + 1;
        else if (OPT("--threads")) threads = atoi(v);
        else if (OPT("--tls-cert")) tls_cert = v;
        else if (OPT("--tls-key")) tls_key = v;
        else if (OPT("--output-redirect")) g.output_redirect = v;
        else if (OPT("--idle-timeout")) idle_timeout = (unsigned)atoi(v);
        else if (OPT("--public-origin")) public_origin = v;
        else if (OPT("--fault")) {
            if (parse_fault(v) != 0) {
                fprintf(stderr, "mockapi: bad --fault %s (EP:KIND:P)\n", v);
                return 2;
            }
        } else if (OPT("--dialect")) {
            if (parse_dialect(v) != 0) {
                fprintf(stderr, "mockapi: bad --dialect %s\n", v);
                return 2;
            }
        } else if (strcmp(a, "--no-variants") == 0) g.variants = 0;
        else if (strcmp(a, "--echo-auth") == 0) g.echo_auth = 1;
        else {
            fprintf(stderr, "mockapi: unknown or incomplete option %s\n", a);
            return 2;
        }
#undef OPT
    }
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&g.mu, NULL);
    g.preds = sb_map_new();
    g.bodies = sb_map_new();
    g.uploads = sb_map_new();
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* threads started below inherit the mask */
    char *cert_pem = NULL, *key_pem = NULL;
    size_t pem_len;
    char perr[SB_ERRLEN];
    if (tls_cert && tls_key) {
        if (sb_read_file(tls_cert, 1 << 20, &cert_pem, &pem_len, perr, sizeof perr) != SB_OK ||
            sb_read_file(tls_key, 1 << 20, &key_pem, &pem_len, perr, sizeof perr) != SB_OK) {
            fprintf(stderr, "mockapi: %s\n", perr);
            return 1;
        }
        g.scheme = "https";
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (cert_pem)
        flags |= MHD_USE_TLS;
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, on_request, NULL,
        MHD_OPTION_HTTPS_MEM_CERT, cert_pem ? cert_pem : "",
        MHD_OPTION_HTTPS_MEM_KEY, key_pem ? key_pem : "",
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(threads > 0 ? threads : 1),
        MHD_OPTION_CONNECTION_LIMIT, 8192u,
        MHD_OPTION_CONNECTION_TIMEOUT, idle_timeout,
        MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mockapi: cannot listen on 127.0.0.1:%u: %s\n", port, strerror(errno));
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    g.port = info ? info->port : port;
    if (public_origin)
        snprintf(g.origin, sizeof g.origin, "%s", public_origin);
    else
        snprintf(g.origin, sizeof g.origin, "%s://127.0.0.1:%u", g.scheme, g.port);
    pthread_t tid;
    pthread_create(&tid, NULL, waker, NULL);
    printf("mockapi listening on %s://127.0.0.1:%u\n", g.scheme, g.port);
    fflush(stdout);
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%u\n", g.port) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
            fprintf(stderr, "mockapi: cannot write %s\n", port_file);
            return 1;
        }
    }
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
