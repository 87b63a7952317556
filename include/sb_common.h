/*
 * Shared definitions for every seedbatch module: error and exit codes,
 * allocation helpers that never return NULL, a capped growable buffer, a
 * string hash map, SHA-256 helpers and small path and time utilities.
 */
#ifndef SB_COMMON_H
#define SB_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Process exit codes (SPEC section 2). */
enum sb_exit {
    SB_EXIT_OK = 0,          /* every job succeeded */
    SB_EXIT_FAILED = 1,      /* the run finished, some jobs failed */
    SB_EXIT_USAGE = 2,       /* usage error or invalid manifest: nothing sent */
    SB_EXIT_AUTH = 3,        /* aborted on 401/402/403 */
    SB_EXIT_COST = 4,        /* stopped by max_cost */
    SB_EXIT_TEMPFAIL = 75    /* interrupted, or another run holds the lock */
};

/* Internal return codes: 0 is success, negative is an error. */
enum sb_err {
    SB_OK = 0,
    SB_ERR = -1,        /* generic, the error buffer says why */
    SB_ENOMEM = -2,
    SB_EIO = -3,
    SB_EINVAL = -4,
    SB_ETOOBIG = -5,
    SB_ENOENT = -6,
    SB_EBUSY = -7,
    SB_EFULL = -8       /* no space left (ENOSPC, EDQUOT, SQLITE_FULL) or a read-only filesystem:
                           the write can succeed once space is freed */
};

#define SB_ERRLEN 512
#define SB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* A message's words for a count: SB_ONE(n, "is", "are"); SB_S(n) the plural ending ("%d job%s"). */
#define SB_ONE(n, one, many) ((n) == 1 ? (one) : (many))
#define SB_S(n) SB_ONE(n, "", "s")
#define sb_container_of(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#if defined(__GNUC__)
#define SB_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SB_SENTINEL __attribute__((sentinel))
#else
#define SB_PRINTF(f, a)
#define SB_SENTINEL
#endif

/* Allocation: out of memory is reported and the process exits (as redis does). */
void *sb_malloc(size_t n);
void *sb_calloc(size_t n, size_t m);
void *sb_realloc(void *p, size_t n);
char *sb_strdup(const char *s);
char *sb_strndup(const char *s, size_t n); /* at most n bytes, stopping at a NUL */
char *sb_asprintf(const char *fmt, ...) SB_PRINTF(1, 2);
/* The strings up to a NULL, one after the other (for the paths and URLs made per request). */
char *sb_concat(const char *s, ...) SB_SENTINEL;
/* Copies s into dst of size n (n > 0), cut to fit and always terminated, as snprintf "%s" would. */
void sb_strlcpy(char *dst, const char *s, size_t n);
/* Letters, digits and "-._~": the bytes a URL carries as they are (RFC 3986 unreserved). */
static inline int sb_url_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}
/* s with every byte but letters, digits and "-._~" written %XX, as curl_easy_escape does. */
char *sb_url_escape(const char *s);
#define sb_freep(pp) do { free(*(pp)); *(pp) = NULL; } while (0)

/* Formats into a caller's error buffer; returns SB_ERR for `return sb_seterr(...)`. */
int sb_seterr(char *err, size_t errlen, const char *fmt, ...) SB_PRINTF(3, 4);
/* Whether an errno says the disk is full or read-only (ENOSPC, EDQUOT, EROFS): a write that can succeed later. */
int sb_errno_storage(int err);

/* Growable byte buffer with a hard cap (like curl's dynbuf). Always NUL-terminated. */
struct sb_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;  /* appends that would pass this fail with SB_ETOOBIG */
};
void sb_buf_init(struct sb_buf *b, size_t max);
int sb_buf_append(struct sb_buf *b, const void *p, size_t n);
int sb_buf_puts(struct sb_buf *b, const char *s);
int sb_buf_printf(struct sb_buf *b, const char *fmt, ...) SB_PRINTF(2, 3);
void sb_buf_reset(struct sb_buf *b);
void sb_buf_free(struct sb_buf *b);

/* Open-addressing hash map from NUL-terminated string keys (copied) to pointers. */
struct sb_map;
struct sb_map *sb_map_new(void);
void *sb_map_get(const struct sb_map *m, const char *key);
/* Sets key to val; returns the previous value or NULL. */
void *sb_map_put(struct sb_map *m, const char *key, void *val);
size_t sb_map_count(const struct sb_map *m);
/* Calls fn for every entry, in no particular order. */
void sb_map_each(const struct sb_map *m, void (*fn)(const char *key, void *val, void *ud), void *ud);
void sb_map_free(struct sb_map *m, void (*free_val)(void *));

/* SHA-256 (OpenSSL EVP). hex must hold 65 bytes. */
struct sb_sha256;
struct sb_sha256 *sb_sha256_new(void);
void sb_sha256_update(struct sb_sha256 *h, const void *p, size_t n);
void sb_sha256_final_hex(struct sb_sha256 *h, char hex[65]); /* also frees h */
void sb_sha256_hex(const void *p, size_t n, char hex[65]);

/* Reads a whole file into memory if it is at most max bytes. On SB_ETOOBIG *len is the size. */
int sb_read_file(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen);
/* sb_read_file in two steps: opens a regular file of at most max bytes (*st its fstat, also
   on SB_ETOOBIG), then reads its n bytes (fewer if it shrank) from the open fd. */
struct stat;
int sb_open_file(const char *path, size_t max, int *fd, struct stat *st, char *err, size_t errlen);
int sb_read_open_file(int fd, const char *path, size_t n, char **out, size_t *len, char *err, size_t errlen);
/* Directory part of a path ("." when none), newly allocated. */
char *sb_dirname(const char *path);
/* Joins dir and rel unless rel is absolute. */
char *sb_path_join(const char *dir, const char *rel);
/* Creates a directory and its parents (mode 0755). */
int sb_mkdirs(const char *path, char *err, size_t errlen);
/*
 * Opens the folder rel ("a/b") under the folder open as dirfd, making its parts when
 * create is set, following no link (ELOOP) and refusing "." and ".." (EINVAL): a
 * descriptor, or -1 with errno.
 */
int sb_openat_dir(int dirfd, const char *rel, int create);
/* True when s is a valid job id / file name stem: [A-Za-z0-9._-]{1,128}, no leading dot. */
int sb_valid_id(const char *s);

/* Wall-clock time in milliseconds since the epoch, and as an ISO 8601 UTC string. */
int64_t sb_now_ms(void);
void sb_iso8601(int64_t ms, char out[32]);
/* Parses "500ms", "2s", "1.5m", "1h" or a plain number of seconds. */
int sb_parse_duration_ms(const char *s, int64_t *out);

/*
 * The entry of a NULL-terminated list (NULL itself allowed) closest to s by edit distance
 * (Levenshtein, ASCII case folded), when close enough to be a typo: at most 1 edit for
 * words up to 4 characters, 2 up to 12, 3 beyond. NULL when none is.
 */
const char *sb_closest(const char *s, const char *const *list);

/*
 * A job as the queue keeps it: what the manifest's checking reading hands on and
 * the store's sync writes (here, so that neither includes the other).
 */
struct sb_kept_job {
    const char *id;
    const char *fingerprint;
    const char *invalid;      /* why it cannot run, or NULL */
    const char *spec;         /* sb_jobspec_json of the job */
    int images_requested;
};

#endif
