/*
 * loop.c glues libcurl's multi interface to libuv. CURLMOPT_SOCKETFUNCTION
 * starts or re-arms the uv_poll_t of a socket; CURLMOPT_TIMERFUNCTION drives
 * one uv_timer. After every socket event and timer expiry,
 * curl_multi_socket_action runs and then the finished transfers are drained,
 * copying handle and result out of each message before the handle is removed.
 * Callbacks from libcurl never call back into libcurl.
 *
 * A connection's socket keeps one uv_poll from its opening to its closing
 * (CURLOPT_OPENSOCKETFUNCTION / CURLOPT_CLOSESOCKETFUNCTION), not one per
 * transfer: libcurl sends REMOVE each time a transfer leaves a kept-alive
 * connection and IN again when the next one takes it, and closing and making
 * a uv_poll each time cost about ten syscalls per request. On REMOVE the
 * poll stays armed as it was; should an idle connection wake it (the server
 * closed it), it is stopped then. Sockets libcurl opens itself (the
 * resolver's) get the plain treatment: their uv_poll closes on REMOVE.
 */
#include "sb_loop.h"
#include "sb_checks.h"
#include "sb_log.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define EASY_POOL 256
#define ORIGINS 8

struct sock_ctx;

/* A "scheme://authority" libcurl has parsed, kept to skip its URL parser (see sb_loop_url). */
struct origin {
    char *text;
    size_t len;
    CURLU *uh;
};

struct sb_loop {
    uv_loop_t *uv;
    CURLM *multi;
    uv_timer_t timer;
    int active;
    /* Finished easy handles kept for reuse: creating one per request costs big buffers. */
    CURL *pool[EASY_POOL];
    int npool;
    /* The uv_poll of each socket, by descriptor. */
    struct sock_ctx **socks;
    size_t nsocks;
    struct sb_loop_counts counts;
    struct origin origins[ORIGINS];
    int norigins;
};

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sb_loop *loop;
    int want;                      /* UV_READABLE/UV_WRITABLE libcurl asked for; 0 after REMOVE */
    int armed;                     /* what the uv_poll is started with; 0 when stopped */
    int owned;                     /* opened by open_socket: kept until close_socket */
};

static void check_done(struct sb_loop *l)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(l->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        struct sb_req *r = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
        curl_multi_remove_handle(l->multi, easy);
        l->active--;
        r->active = 0;
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &r->status);
        curl_off_t up = 0;
        long reqsize = 0;
        curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &reqsize);
        curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &up);
        r->sent |= reqsize > 0 || up > 0; /* already set when a resend was stopped */
        if (r->too_big && rc == CURLE_WRITE_ERROR)
            rc = CURLE_FILESIZE_EXCEEDED;
        r->done(r, rc);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *c = sb_container_of(h, struct sock_ctx, poll);
    struct sb_loop *l = c->loop;
    if (!c->want) {
        /* A kept-alive connection no transfer is using woke up: libcurl finds it dead
         * when it next looks; until then, stop listening to it. */
        uv_poll_stop(&c->poll);
        c->armed = 0;
        l->counts.idle_wakeups++;
        return;
    }
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    else {
        if (events & UV_READABLE)
            flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE)
            flags |= CURL_CSELECT_OUT;
    }
    curl_multi_socket_action(l->multi, c->fd, flags, &running);
    check_done(l);
}

static void on_timeout(uv_timer_t *t)
{
    struct sb_loop *l = sb_container_of(t, struct sb_loop, timer);
    int running;
    curl_multi_socket_action(l->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(l);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct sb_loop *l = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&l->timer);
    else
        uv_timer_start(&l->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static void free_sock(uv_handle_t *h)
{
    free(sb_container_of((uv_poll_t *)h, struct sock_ctx, poll));
}

static struct sock_ctx *sock_get(struct sb_loop *l, curl_socket_t fd)
{
    return fd >= 0 && (size_t)fd < l->nsocks ? l->socks[fd] : NULL;
}

/* Closes the uv_poll of fd (freed in its close callback) and forgets it. */
static void sock_close(struct sb_loop *l, curl_socket_t fd)
{
    struct sock_ctx *c = sock_get(l, fd);
    if (!c)
        return;
    l->socks[fd] = NULL;
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, free_sock);
}

static struct sock_ctx *sock_new(struct sb_loop *l, curl_socket_t fd, int owned)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= l->nsocks) {
        size_t n = l->nsocks ? l->nsocks : 64;
        while (n <= (size_t)fd)
            n *= 2;
        struct sock_ctx **t = realloc(l->socks, n * sizeof *t);
        if (!t)
            return NULL;
        memset(t + l->nsocks, 0, (n - l->nsocks) * sizeof *t);
        l->socks = t;
        l->nsocks = n;
    }
    sock_close(l, fd); /* a descriptor closed behind our back and now reused */
    struct sock_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = fd;
    c->loop = l;
    c->owned = owned;
    if (uv_poll_init_socket(l->uv, &c->poll, fd) != 0) {
        free(c);
        return NULL;
    }
    l->socks[fd] = c;
    return c;
}

static curl_socket_t open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct sb_loop *l = clientp;
    (void)purpose;
    curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
    if (fd < 0)
        return CURL_SOCKET_BAD;
    if (!sock_new(l, fd, 1)) {
        close(fd);
        return CURL_SOCKET_BAD;
    }
    l->counts.sockets++;
    return fd;
}

static int close_socket(void *clientp, curl_socket_t fd)
{
    sock_close(clientp, fd);
    return close(fd);
}

static int socket_cb(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
    struct sb_loop *l = userp;
    struct sock_ctx *c = sock_get(l, s);
    (void)easy, (void)socketp;
    if (action == CURL_POLL_REMOVE) {
        if (c && c->owned)
            c->want = 0; /* stays armed: the next transfer on it most likely wants the same */
        else
            sock_close(l, s);
        return 0;
    }
    if (!c && !(c = sock_new(l, s, 0)))
        return -1;
    int events = 0;
    if (action == CURL_POLL_IN || action == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (action == CURL_POLL_OUT || action == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    c->want = events;
    if (c->armed != events) {
        if (uv_poll_start(&c->poll, events, on_poll) != 0)
            return -1;
        c->armed = events;
    }
    return 0;
}

struct sb_loop *sb_loop_new(uv_loop_t *uv, long max_connects)
{
    struct sb_loop *l = sb_calloc(1, sizeof *l);
    l->uv = uv;
    l->multi = curl_multi_init();
    if (!l->multi) {
        free(l);
        return NULL;
    }
    uv_timer_init(uv, &l->timer);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
    curl_multi_setopt(l->multi, CURLMOPT_MAXCONNECTS, max_connects);
    curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    return l;
}

void sb_loop_cap_connections(struct sb_loop *l, long n)
{
    curl_multi_setopt(l->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, n);
}

uv_loop_t *sb_loop_uv(struct sb_loop *l)
{
    return l->uv;
}

int sb_loop_active(const struct sb_loop *l)
{
    return l->active;
}

void sb_loop_counts(const struct sb_loop *l, struct sb_loop_counts *c)
{
    *c = l->counts;
}

void sb_loop_free(struct sb_loop *l)
{
    if (!l)
        return;
    /* The multi handle closes its sockets, their uv_polls with them (close_socket). */
    curl_multi_cleanup(l->multi);
    for (size_t fd = 0; fd < l->nsocks; fd++)
        sock_close(l, (curl_socket_t)fd);
    free(l->socks);
    while (l->npool)
        curl_easy_cleanup(l->pool[--l->npool]);
    for (int i = 0; i < l->norigins; i++) {
        free(l->origins[i].text);
        curl_url_cleanup(l->origins[i].uh);
    }
    uv_timer_stop(&l->timer);
    uv_close((uv_handle_t *)&l->timer, NULL);
    uv_run(l->uv, UV_RUN_NOWAIT); /* run the close callbacks */
    free(l);
}

static int g_debug;

void sb_loop_set_debug(int on)
{
    g_debug = on;
}

/*
 * CURLOPT_VERBOSE alone would print "Authorization: Bearer <key>": this
 * callback logs header lines and notes itself and redacts that header and
 * the proxy's (sb_log redacts credentials in URLs).
 */
static int on_debug(CURL *easy, curl_infotype type, char *data, size_t size, void *ud)
{
    (void)easy, (void)ud;
    if (type != CURLINFO_TEXT && type != CURLINFO_HEADER_IN && type != CURLINFO_HEADER_OUT)
        return 0;
    const char *dir = type == CURLINFO_HEADER_OUT ? "> " : type == CURLINFO_HEADER_IN ? "< " : "* ";
    while (size) {
        const char *nl = memchr(data, '\n', size);
        size_t n = nl ? (size_t)(nl - data) + 1 : size, len = n;
        while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'))
            len--;
        /* Authorization and Proxy-Authorization: the name, not the value. */
        const char *colon = memchr(data, ':', len);
        size_t name = colon ? (size_t)(colon - data) : 0;
        if (name >= 13 && strncasecmp(colon - 13, "Authorization", 13) == 0)
            sb_debug("curl %s%.*s: [redacted]", dir, (int)name, data);
        else if (len)
            sb_debug("curl %s%.*s", dir, (int)(len > 1000 ? 1000 : len), data);
        data += n;
        size -= n;
    }
    return 0;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct sb_req *r = ud;
    size_t len = size * n;
    if (r->sink)
        return r->sink(r, p, len) == 0 ? len : 0;
    if (sb_buf_append(&r->body, p, len) != SB_OK) {
        /* The cap holds also for chunked bodies, which CURLOPT_MAXFILESIZE does not stop. */
        r->too_big = 1;
        return 0;
    }
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct sb_req *r = ud;
    size_t len = size * n;
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        const char *v = p + 12;
        while (*v == ' ' || *v == '\t')
            v++;
        if (isdigit((unsigned char)*v)) {
            long s = strtol(v, NULL, 10);
            r->retry_after_ms = (s > 3600 ? 3600 : s) * 1000;
        } else {
            /* An HTTP date (libcurl reads them); one that cannot be read means "a while". */
            char d[64];
            size_t dn = len - (size_t)(v - p) < sizeof d ? len - (size_t)(v - p) : sizeof d - 1;
            memcpy(d, v, dn);
            while (dn && (d[dn - 1] == '\r' || d[dn - 1] == '\n' || d[dn - 1] == ' '))
                dn--;
            d[dn] = '\0';
            time_t t = curl_getdate(d, NULL);
            int64_t ms = t == (time_t)-1 ? 5000 : ((int64_t)t * 1000 - sb_now_ms());
            r->retry_after_ms = ms < 0 ? 0 : ms > 3600000 ? 3600000 : ms;
        }
    }
    return len;
}

/*
 * Called each time the request is about to go out: more than once when
 * libcurl 7.88 sent it again by itself, as it does when a reused connection
 * dies before any answer byte (Curl_retry_request).
 */
static int on_prereq(void *ud, char *ip, char *local_ip, int port, int local_port)
{
    struct sb_req *r = ud;
    (void)ip, (void)local_ip, (void)port, (void)local_port;
    if (r->send_once && r->attempts >= 1) {
        r->sent = 1; /* the first send died unanswered: it may have been taken */
        r->resend_stopped = 1;
        return CURL_PREREQFUNC_ABORT;
    }
    r->attempts++;
    return CURL_PREREQFUNC_OK;
}

/*
 * Whether the environment names a proxy (or proxy exceptions) for libcurl. When it
 * names none, seedbatch tells libcurl so once per handle: otherwise libcurl looks
 * the variables up again for every request (about 1% of a run's CPU).
 */
static int proxy_env(void)
{
    static const char *vars[] = {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                                 "ALL_PROXY", "no_proxy", "NO_PROXY", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return 1;
    }
    return 0;
}

/*
 * An easy handle from the pool, or a new one with the options every request
 * shares. Pooled handles keep those options: setting them again for each
 * request (after curl_easy_reset) cost more than the request's own work.
 */
static CURL *easy_get(struct sb_loop *l)
{
    if (l->npool)
        return l->pool[--l->npool];
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, l);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_socket);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, l);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    /* No CURLOPT_ACCEPT_ENCODING: answers are small JSON and images are compressed
       already, and asking for gzip cost about 5% of the run's CPU (libcurl sets up
       its decoders for every transfer). */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    if (!proxy_env()) {
        curl_easy_setopt(e, CURLOPT_PROXY, "");   /* "": no proxy, without looking */
        curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    }
    if (g_debug) {
        curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, on_debug);
        curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
    }
    /* As the curl tool does: CURL_CA_BUNDLE, else SSL_CERT_FILE, else libcurl's default. */
    const char *ca = getenv("CURL_CA_BUNDLE");
    if (!ca || !*ca)
        ca = getenv("SSL_CERT_FILE");
    if (ca && *ca)
        curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    return e;
}

/*
 * libcurl 7.88 parses every request's URL and prints it back out (curl_url_set,
 * then curl_url_get with a 15-field aprintf): about 14,000 instructions a request,
 * 7% of a run. Given a parsed handle it takes a copy instead. The handle is made
 * from the origin's, parsed once by libcurl (kept per loop), with the path set as
 * is: done only when the path is plain (sb_url_plain_origin), where libcurl's
 * parser would keep it unchanged.
 * The text stays set with CURLOPT_URL: libcurl reports it and follows redirects from it.
 */
CURLU *sb_loop_url(struct sb_loop *l, const char *url)
{
    size_t len = sb_url_plain_origin(url);
    if (!len)
        return NULL;
    const char *path = url + len;
    struct origin *o = NULL;
    for (int i = 0; i < l->norigins && !o; i++)
        if (l->origins[i].len == len && memcmp(l->origins[i].text, url, len) == 0)
            o = &l->origins[i];
    if (!o) {
        if (l->norigins == ORIGINS)
            return NULL;
        CURLU *uh = curl_url();
        char *text = sb_strndup(url, len);
        /* The flags libcurl parses a request's URL with (url.c, parseurlandfillconn). */
        if (!uh || curl_url_set(uh, CURLUPART_URL, text, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
            curl_url_cleanup(uh);
            free(text);
            return NULL;
        }
        o = &l->origins[l->norigins++];
        *o = (struct origin){text, len, uh};
    }
    CURLU *uh = curl_url_dup(o->uh);
    if (uh && curl_url_set(uh, CURLUPART_PATH, path, 0) != CURLUE_OK) {
        curl_url_cleanup(uh);
        return NULL;
    }
    return uh;
}

int sb_req_init(struct sb_req *r, struct sb_loop *l, const char *url, const struct sb_http_opts *o)
{
    sb_req_cleanup(r);
    r->loop = l;
    r->easy = easy_get(l);
    if (!r->easy)
        return SB_ENOMEM;
    sb_buf_init(&r->body, o->max_body);
    r->retry_after_ms = -1;
    r->status = 0;
    r->sent = 0;
    r->too_big = 0;
    r->attempts = 0;
    r->send_once = 0;
    r->resend_stopped = 0;
    r->errbuf[0] = '\0';
    CURL *e = r->easy;
    /* What an earlier request on this handle may have set: no body, no headers, a GET. */
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, (char *)NULL);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(e, CURLOPT_URL, url);
    r->uh = sb_loop_url(l, url);
    curl_easy_setopt(e, CURLOPT_CURLU, r->uh);
    l->counts.requests++;
    l->counts.urls_parsed += r->uh != NULL;
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_PREREQDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, o->follow_redirects ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, o->low_speed_limit);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, o->low_speed_time_s);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)o->max_body);
    /* In the request's own header list rather than CURLOPT_USERAGENT: libcurl
       7.88 prints that one into a header line first and then into the request,
       a character at a time each (about 2.5% of a run's instructions). */
    sb_req_header(r, "User-Agent: seedbatch/" SB_VERSION);
    return SB_OK;
}

void sb_req_header(struct sb_req *r, const char *h)
{
    r->headers = curl_slist_append(r->headers, h);
}

void sb_req_json(struct sb_req *r, char *json)
{
    free(r->post);
    r->post = json;
    sb_req_header(r, "Content-Type: application/json");
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->post);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(r->post));
}

int sb_req_start(struct sb_req *r, sb_req_done_fn done)
{
    r->done = done;
    if (r->headers)
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    if (r->mime)
        curl_easy_setopt(r->easy, CURLOPT_MIMEPOST, r->mime);
    if (curl_multi_add_handle(r->loop->multi, r->easy) != CURLM_OK)
        return SB_ERR;
    r->active = 1;
    r->loop->active++;
    return SB_OK;
}

void sb_req_abort(struct sb_req *r)
{
    if (r->active) {
        curl_multi_remove_handle(r->loop->multi, r->easy);
        r->active = 0;
        r->loop->active--;
    }
}

void sb_req_cleanup(struct sb_req *r)
{
    sb_req_abort(r);
    if (r->easy) {
        if (r->uh)
            curl_easy_setopt(r->easy, CURLOPT_CURLU, (CURLU *)NULL);
        if (r->loop && r->loop->npool < EASY_POOL)
            r->loop->pool[r->loop->npool++] = r->easy;
        else
            curl_easy_cleanup(r->easy);
    }
    r->easy = NULL;
    curl_url_cleanup(r->uh);
    r->uh = NULL;
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    curl_mime_free(r->mime);
    r->mime = NULL;
    sb_freep(&r->post);
    sb_buf_free(&r->body);
    cJSON_Delete(r->json);
    r->json = NULL;
    r->json_read = 0;
}
