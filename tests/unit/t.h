/* Minimal assertions for the unit tests: count failures, report file:line, exit non-zero. */
#ifndef T_H
#define T_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_fail, t_pass;

#define CHECK(c) do { if (c) t_pass++; else { t_fail++; \
    fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); } } while (0)
#define CHECK_INT(a, b) do { long long _a = (long long)(a), _b = (long long)(b); if (_a == _b) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, #a, _a, _b); } } while (0)
#define CHECK_STR(a, b) do { const char *_a = (a), *_b = (b); if (_a && _b && strcmp(_a, _b) == 0) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #a, \
    _a ? _a : "(null)", _b ? _b : "(null)"); } } while (0)
#define CHECK_HAS(hay, needle) do { const char *_h = (hay), *_n = (needle); if (_h && strstr(_h, _n)) t_pass++; \
    else { t_fail++; fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__, \
    _h ? _h : "(null)", _n); } } while (0)

static int t_done(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
    return t_fail ? 1 : 0;
}

/* A fresh temporary directory for one test program. */
static inline char *t_tmpdir(void)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/sbtest.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    return dir;
}

/* Removes a test's temporary directory and everything in it. */
static inline int t_rmdir(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

/* Runs gen_image (its path is in $GEN_IMAGE) to write an image file. */
static inline void t_image(const char *fmt, int w, int h, const char *dir, const char *name)
{
    char cmd[1024];
    const char *gen = getenv("GEN_IMAGE");
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s/%s')\" && '%s' %s %d %d '%s/%s'", dir, name,
             gen ? gen : "gen_image", fmt, w, h, dir, name);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot run: %s\n", cmd);
        exit(2);
    }
}

static inline void t_write(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}
#endif
