/*
 * log.c writes log lines to stderr in the chosen format. JSON lines are built
 * with cJSON so any message text is escaped correctly.
 */
#include "sb_log.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

static enum sb_log_format g_fmt = SB_LOG_TEXT;
static enum sb_log_level g_min = SB_LOG_INFO;
static unsigned g_warnings;
static int g_stamp;        /* text lines start with the time: stderr is no terminal */
static sb_log_around_fn g_around;
static void *g_around_ud;

static const char *level_name[] = {"debug", "info", "warning", "error"};

void sb_log_setup(enum sb_log_format fmt, enum sb_log_level min_level)
{
    g_fmt = fmt;
    g_min = min_level;
    g_stamp = !isatty(STDERR_FILENO);
}

enum sb_log_format sb_log_format_of(void)
{
    return g_fmt;
}

int sb_log_enabled(enum sb_log_level lvl)
{
    return lvl >= g_min;
}

void sb_log_around(sb_log_around_fn fn, void *ud)
{
    g_around = fn;
    g_around_ud = ud;
}

unsigned sb_log_warnings(void)
{
    return g_warnings;
}

static char *g_secrets[8];

void sb_log_secret(const char *secret)
{
    if (!secret || strlen(secret) < 4)
        return;
    for (size_t i = 0; i < SB_ARRAY_LEN(g_secrets); i++) {
        if (g_secrets[i] && strcmp(g_secrets[i], secret) == 0)
            return;
        if (!g_secrets[i]) {
            g_secrets[i] = sb_strdup(secret);
            return;
        }
    }
}

void sb_log_forget(void)
{
    for (size_t i = 0; i < SB_ARRAY_LEN(g_secrets); i++) {
        if (g_secrets[i])
            memset(g_secrets[i], 0, strlen(g_secrets[i]));
        sb_freep(&g_secrets[i]);
    }
}

/* Replaces every secret in s (a NUL-terminated buffer of size n) with "[redacted]". */
static void redact_secrets(char *s, size_t n)
{
    static const char mark[] = "[redacted]";
    for (size_t i = 0; i < SB_ARRAY_LEN(g_secrets) && g_secrets[i]; i++) {
        size_t klen = strlen(g_secrets[i]);
        char *hit = s;
        while ((hit = strstr(hit, g_secrets[i]))) {
            size_t tail = strlen(hit + klen);
            size_t room = n - (size_t)(hit - s) - 1; /* bytes from hit to the buffer's last */
            size_t m = sizeof mark - 1 < room ? sizeof mark - 1 : room;
            size_t keep = tail < room - m ? tail : room - m;
            memmove(hit + m, hit + klen, keep);
            memcpy(hit, mark, m);
            hit[m + keep] = '\0';
            hit += m;
        }
    }
}

/* Lines held back (sb_log_hold), up to a cap; over it the rest are dropped and noted. */
static struct {
    int on, over;
    unsigned warnings_before;
    struct sb_buf lines;
} g_hold;

void sb_log_hold(void)
{
    g_hold.on = 1;
    g_hold.over = 0;
    g_hold.warnings_before = g_warnings;
    sb_buf_init(&g_hold.lines, 256u << 10);
}

int sb_log_release(int write)
{
    int complete = !g_hold.over;
    if (write && complete && g_hold.lines.len)
        fwrite(g_hold.lines.data, 1, g_hold.lines.len, stderr);
    if (!write || !complete)
        g_warnings = g_hold.warnings_before; /* dropped: the caller does it again */
    sb_buf_free(&g_hold.lines);
    g_hold.on = g_hold.over = 0;
    return complete ? 0 : -1;
}

static void put_line(const char *line, size_t len)
{
    if (!g_hold.on) {
        /* A progress line on the terminal is cleared first and drawn again after. */
        if (g_around)
            g_around(g_around_ud, 0);
        fwrite(line, 1, len, stderr);
        if (g_around)
            g_around(g_around_ud, 1);
    }
    else if (sb_buf_append(&g_hold.lines, line, len) != SB_OK)
        g_hold.over = 1;
}

/*
 * Credentials in a URL ("http://user:password@proxy:3128", which libcurl's
 * notes repeat from http_proxy) are copied as "[redacted]@". Returns out.
 */
static char *redact_userinfo(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    while (*in && o + 1 < outlen) {
        if (strncmp(in, "://", 3) != 0) {
            out[o++] = *in++;
            continue;
        }
        size_t end = 3 + strcspn(in + 3, "/?#'\" <>\t\r\n");
        const char *at = NULL; /* the last '@' before the path ends the credentials */
        for (size_t i = 3; i < end; i++)
            if (in[i] == '@')
                at = in + i;
        const char *copy = at ? "://[redacted]" : "://";
        for (; *copy && o + 1 < outlen; copy++)
            out[o++] = *copy;
        in = at ? at : in + 3;
    }
    out[o] = '\0';
    return out;
}

/* The time of a log line: ISO 8601, UTC, with milliseconds. */
static void log_time(char ts[40])
{
    int64_t now = sb_now_ms();
    sb_iso8601(now, ts);
    size_t n = strlen(ts);
    if (n && ts[n - 1] == 'Z')
        snprintf(ts + n - 1, 40 - (n - 1), ".%03dZ", (int)(now % 1000 + 1000) % 1000);
}

static void vlog(enum sb_log_level lvl, const struct sb_log_fields *f, const char *fmt, va_list ap)
{
    if (lvl == SB_LOG_WARN)
        g_warnings++;
    if (lvl < g_min)
        return;
    char raw[2048], msg[2048 + 64];
    vsnprintf(raw, sizeof raw, fmt, ap);
    redact_secrets(raw, sizeof raw);
    redact_userinfo(raw, msg, sizeof msg);
    struct sb_buf line;
    sb_buf_init(&line, 64u << 10);
    if (g_fmt == SB_LOG_JSON) {
        char ts[40];
        log_time(ts);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "time", ts);
        cJSON_AddStringToObject(o, "level", level_name[lvl]);
        cJSON_AddStringToObject(o, "msg", msg);
        if (f) {
            if (f->event)
                cJSON_AddStringToObject(o, "event", f->event);
            if (f->manifest)
                cJSON_AddStringToObject(o, "manifest", f->manifest);
            if (f->job)
                cJSON_AddStringToObject(o, "job", f->job);
            if (f->state)
                cJSON_AddStringToObject(o, "state", f->state);
            if (f->kind)
                cJSON_AddStringToObject(o, "kind", f->kind);
            if (f->http_status)
                cJSON_AddNumberToObject(o, "http_status", f->http_status);
            if (f->attempt)
                cJSON_AddNumberToObject(o, "attempt", f->attempt);
        }
        char *s = cJSON_PrintUnformatted(o);
        sb_buf_puts(&line, s ? s : "{}");
        free(s);
        cJSON_Delete(o);
    } else {
        if (g_stamp) {
            char ts[40];
            log_time(ts);
            sb_buf_puts(&line, ts);
            sb_buf_puts(&line, " ");
        }
        sb_buf_puts(&line, "seedbatch: ");
        if (lvl != SB_LOG_INFO) {
            sb_buf_puts(&line, level_name[lvl]);
            sb_buf_puts(&line, ": ");
        }
        sb_buf_puts(&line, msg);
    }
    sb_buf_append(&line, "\n", 1);
    put_line(line.data, line.len);
    sb_buf_free(&line);
}

void sb_log(enum sb_log_level lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(lvl, NULL, fmt, ap);
    va_end(ap);
}

void sb_log_event(enum sb_log_level lvl, const struct sb_log_fields *f, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(lvl, f, fmt, ap);
    va_end(ap);
}
