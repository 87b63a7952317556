/*
 * util.c owns the small pieces every module shares: allocation that exits on
 * out-of-memory, the capped growable buffer, the string hash map, SHA-256
 * through OpenSSL's EVP interface, and path, time and duration helpers.
 */
#include "sb_common.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <pthread.h>

/*
 * A failure no caller can get past (no memory left): the run stops at once, as a
 * kill would stop it. What the state has committed is consistent, and the same
 * command resumes. _exit, not abort: the message says what happened, and cron and
 * systemd see a failed run (1) rather than a crash; nor exit, which would run exit
 * handlers while other threads may still be using what they free.
 */
static void stop_now(const char *what)
{
    fprintf(stderr, "seedbatch: %s; stopped: the state keeps what was committed, run the same command "
            "again to resume\n", what);
    _exit(SB_EXIT_FAILED);
}

static void oom(size_t n)
{
    char what[64];
    snprintf(what, sizeof what, "out of memory (allocating %zu bytes)", n);
    stop_now(what);
}

void *sb_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *sb_calloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        oom(n * m);
    return p;
}

void *sb_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *sb_strdup(const char *s)
{
    return sb_strndup(s, strlen(s));
}

char *sb_strndup(const char *s, size_t n)
{
    n = strnlen(s, n); /* like POSIX strndup: never reads past the string's end */
    char *p = sb_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void sb_strlcpy(char *dst, const char *s, size_t n)
{
    size_t len = strnlen(s, n - 1);
    memcpy(dst, s, len);
    dst[len] = '\0';
}

char *sb_concat(const char *s, ...)
{
    va_list ap;
    size_t n = 0;
    va_start(ap, s);
    for (const char *p = s; p; p = va_arg(ap, const char *))
        n += strlen(p);
    va_end(ap);
    char *out = sb_malloc(n + 1), *o = out;
    va_start(ap, s);
    for (const char *p = s; p; p = va_arg(ap, const char *)) {
        size_t k = strlen(p);
        memcpy(o, p, k);
        o += k;
    }
    va_end(ap);
    *o = '\0';
    return out;
}

char *sb_url_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = sb_malloc(3 * strlen(s) + 1), *o = out;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (sb_url_unreserved(c))
            *o++ = (char)c;
        else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

char *sb_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = sb_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int sb_errno_storage(int err)
{
    return err == ENOSPC || err == EDQUOT || err == EROFS;
}

int sb_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SB_ERR;
}

/* ---- capped buffer ---- */

void sb_buf_init(struct sb_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

int sb_buf_append(struct sb_buf *b, const void *p, size_t n)
{
    if (n > b->max || b->len > b->max - n)
        return SB_ETOOBIG;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->data = sb_realloc(b->data, cap);
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SB_OK;
}

int sb_buf_puts(struct sb_buf *b, const char *s)
{
    return sb_buf_append(b, s, strlen(s));
}

int sb_buf_printf(struct sb_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return SB_EINVAL;
    if ((size_t)n < sizeof small)
        return sb_buf_append(b, small, (size_t)n);
    char *big = sb_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = sb_buf_append(b, big, (size_t)n);
    free(big);
    return rc;
}

void sb_buf_reset(struct sb_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void sb_buf_free(struct sb_buf *b)
{
    sb_freep(&b->data);
    b->len = b->cap = 0;
}

/* ---- hash map (FNV-1a, linear probing, load factor <= 1/2) ---- */

struct sb_map_entry {
    char *key;
    void *val;
    uint64_t hash;
};

struct sb_map {
    struct sb_map_entry *slots;
    size_t nslots;
    size_t count;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

struct sb_map *sb_map_new(void)
{
    struct sb_map *m = sb_calloc(1, sizeof *m);
    m->nslots = 16;
    m->slots = sb_calloc(m->nslots, sizeof *m->slots);
    return m;
}

static struct sb_map_entry *map_find(const struct sb_map *m, const char *key, uint64_t h)
{
    size_t i = (size_t)h & (m->nslots - 1);
    for (;;) {
        struct sb_map_entry *e = &m->slots[i];
        if (!e->key || (e->hash == h && strcmp(e->key, key) == 0))
            return e;
        i = (i + 1) & (m->nslots - 1);
    }
}

void *sb_map_get(const struct sb_map *m, const char *key)
{
    struct sb_map_entry *e = map_find(m, key, fnv1a(key));
    return e->key ? e->val : NULL;
}

static void map_grow(struct sb_map *m)
{
    struct sb_map_entry *old = m->slots;
    size_t oldn = m->nslots;
    m->nslots *= 2;
    m->slots = sb_calloc(m->nslots, sizeof *m->slots);
    for (size_t i = 0; i < oldn; i++) {
        if (old[i].key)
            *map_find(m, old[i].key, old[i].hash) = old[i];
    }
    free(old);
}

void *sb_map_put(struct sb_map *m, const char *key, void *val)
{
    uint64_t h = fnv1a(key);
    struct sb_map_entry *e = map_find(m, key, h);
    if (e->key) {
        void *prev = e->val;
        e->val = val;
        return prev;
    }
    e->key = sb_strdup(key);
    e->val = val;
    e->hash = h;
    if (++m->count * 2 > m->nslots)
        map_grow(m);
    return NULL;
}

size_t sb_map_count(const struct sb_map *m)
{
    return m->count;
}

void sb_map_each(const struct sb_map *m, void (*fn)(const char *, void *, void *), void *ud)
{
    for (size_t i = 0; i < m->nslots; i++)
        if (m->slots[i].key)
            fn(m->slots[i].key, m->slots[i].val, ud);
}

void sb_map_free(struct sb_map *m, void (*free_val)(void *))
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nslots; i++) {
        if (m->slots[i].key) {
            free(m->slots[i].key);
            if (free_val)
                free_val(m->slots[i].val);
        }
    }
    free(m->slots);
    free(m);
}

/* ---- SHA-256 ---- */

struct sb_sha256 {
    EVP_MD_CTX *ctx;
};

static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

/* SHA-256 fetched once: EVP_sha256() makes every EVP_DigestInit_ex look it up again. */
static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_fetch);
    return sha256_md;
}

struct sb_sha256 *sb_sha256_new(void)
{
    struct sb_sha256 *h = sb_malloc(sizeof *h);
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx)
        oom(sizeof h->ctx);
    if (!sha256() || EVP_DigestInit_ex(h->ctx, sha256(), NULL) != 1)
        stop_now("OpenSSL's SHA-256 is unavailable (out of memory, or disabled by OpenSSL's configuration)");
    return h;
}

void sb_sha256_update(struct sb_sha256 *h, const void *p, size_t n)
{
    EVP_DigestUpdate(h->ctx, p, n);
}

void sb_sha256_final_hex(struct sb_sha256 *h, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(h->ctx, md, &n);
    static const char digits[] = "0123456789abcdef";
    for (unsigned int i = 0; i < n && i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

void sb_sha256_hex(const void *p, size_t n, char hex[65])
{
    struct sb_sha256 *h = sb_sha256_new();
    sb_sha256_update(h, p, n);
    sb_sha256_final_hex(h, hex);
}

/* ---- files and paths ---- */

int sb_open_file(const char *path, size_t max, int *fd_out, struct stat *st, char *err, size_t errlen)
{
    *fd_out = -1;
    /* O_NONBLOCK: a FIFO named as a file would block the open until a writer came. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return sb_seterr(err, errlen, "%s: %s", path, strerror(errno)), errno == ENOENT ? SB_ENOENT : SB_EIO;
    int rc = SB_EIO;
    if (fstat(fd, st) != 0)
        sb_seterr(err, errlen, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st->st_mode))
        sb_seterr(err, errlen, "%s: not a regular file", path);
    else if ((uint64_t)st->st_size > max)
        rc = SB_ETOOBIG, sb_seterr(err, errlen, "%s: %lld bytes, over the limit of %zu", path,
                                   (long long)st->st_size, max);
    else
        rc = SB_OK;
    if (rc != SB_OK) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return SB_OK;
}

int sb_read_open_file(int fd, const char *path, size_t n, char **out, size_t *len, char *err, size_t errlen)
{
    size_t got = 0;
    char *data = sb_malloc(n + 1);
    while (got < n) {
        ssize_t r = read(fd, data + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            sb_seterr(err, errlen, "%s: %s", path, strerror(errno));
            free(data);
            return SB_EIO;
        }
        if (r == 0)
            break; /* the file shrank while we read it */
        got += (size_t)r;
    }
    data[got] = '\0';
    *out = data;
    *len = got;
    return SB_OK;
}

int sb_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
    int fd;
    struct stat st;
    int rc = sb_open_file(path, max, &fd, &st, err, errlen);
    if (rc == SB_ETOOBIG)
        *len = (size_t)st.st_size;
    if (rc != SB_OK)
        return rc;
    rc = sb_read_open_file(fd, path, (size_t)st.st_size, out, len, err, errlen);
    close(fd);
    return rc;
}

char *sb_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return sb_strdup(".");
    if (slash == path)
        return sb_strdup("/");
    return sb_strndup(path, (size_t)(slash - path));
}

char *sb_path_join(const char *dir, const char *rel)
{
    if (rel[0] == '/' || !dir || !dir[0] || strcmp(dir, ".") == 0)
        return sb_strdup(rel);
    size_t dl = strlen(dir);
    return sb_asprintf("%s%s%s", dir, dir[dl - 1] == '/' ? "" : "/", rel);
}

int sb_mkdirs(const char *path, char *err, size_t errlen)
{
    char *p = sb_strdup(path);
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                sb_seterr(err, errlen, "cannot create directory %s: %s", p, strerror(errno));
                free(p);
                return SB_EIO;
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    free(p);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return sb_seterr(err, errlen, "%s is not a directory", path);
    return SB_OK;
}

int sb_openat_dir(int dirfd, const char *rel, int create)
{
    char *p = sb_strdup(rel);
    int fd = dup(dirfd), err = 0;
    for (char *part = p, *next; fd >= 0 && part && *part; part = next) {
        next = strchr(part, '/');
        if (next)
            *next++ = '\0';
        if (!*part || strcmp(part, ".") == 0 || strcmp(part, "..") == 0) {
            err = EINVAL;
            break;
        }
        if (create && mkdirat(fd, part, 0755) != 0 && errno != EEXIST) {
            err = errno;
            break;
        }
        int sub = openat(fd, part, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0)
            err = errno == ENOTDIR ? ELOOP : errno;
        close(fd);
        fd = sub;
    }
    free(p);
    if (err && fd >= 0)
        close(fd);
    if (err || fd < 0) {
        errno = err ? err : errno;
        return -1;
    }
    return fd;
}

int sb_valid_id(const char *s)
{
    size_t n = 0;
    if (!s || !*s || *s == '.')
        return 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!(isalnum(c) || c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return n <= 128;
}

/* ---- time ---- */

int64_t sb_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static char *put_digits(char *p, int64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--, v /= 10)
        p[i] = (char)('0' + v % 10);
    return p + width;
}

/* Computed, not through gmtime_r and strftime: results.jsonl writes two per job.
   The civil date from a day count is Howard Hinnant's days_from_civil inverted. */
void sb_iso8601(int64_t ms, char out[32])
{
    int64_t t = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400), sec = t - days * 86400;
    if (days < -719468 || days > 2932896) { /* outside years 0..9999: the slow way */
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return;
    }
    int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    char *p = put_digits(out, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, sec / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sec / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sec % 60, 2);
    *p++ = 'Z';
    *p = '\0';
}

int sb_parse_duration_ms(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0)
        return SB_EINVAL;
    while (*end == ' ')
        end++;
    double mul;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mul = 1000;
    else if (strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mul = 60000;
    else if (strcmp(end, "h") == 0)
        mul = 3600000;
    else
        return SB_EINVAL;
    double ms = v * mul;
    if (ms > 365.0 * 24 * 3600000)
        return SB_EINVAL;
    *out = (int64_t)llround(ms);
    return SB_OK;
}

/* Edit distance of a and b, case folded, or limit + 1 once it is over limit. */
static size_t edit_distance(const char *a, const char *b, size_t limit)
{
    size_t la = strlen(a), lb = strlen(b);
    if ((la > lb ? la - lb : lb - la) > limit || lb > 255)
        return limit + 1;
    size_t row[256];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0], best = row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t v = diag + cost;
            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best > limit)
            return limit + 1;
    }
    return row[lb];
}

const char *sb_closest(const char *s, const char *const *list)
{
    if (!list)
        return NULL;
    size_t n = strlen(s);
    size_t limit = n <= 4 ? 1 : n <= 12 ? 2 : 3;
    const char *best = NULL;
    size_t best_d = limit + 1;
    for (; *list; list++) {
        size_t d = edit_distance(s, *list, limit);
        if (d < best_d && d > 0) {
            best = *list;
            best_d = d;
        }
    }
    return best;
}
