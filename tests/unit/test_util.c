/* util: capped buffer, hash map, SHA-256, durations, ids, paths. */
#include "sb_common.h"
#include "t.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

static void count(const char *k, void *v, void *ud)
{
    (void)k;
    *(long *)ud += (long)(intptr_t)v;
}

/* sb_url_escape writes what curl_easy_escape writes; sb_concat joins. */
static void test_escape_concat(void)
{
    char s[16];
    unsigned x = 12345;
    int differ = 0;
    for (int n = 0; n < 20000; n++) {
        int len = (int)(x % 15);
        for (int i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            s[i] = (char)(1 + (x >> 16) % 255);
        }
        s[len] = '\0';
        char *ours = sb_url_escape(s), *theirs = curl_easy_escape(NULL, s, 0);
        if (!theirs || strcmp(ours, theirs) != 0)
            differ++;
        free(ours);
        curl_free(theirs);
        x = x * 1103515245u + 12345u;
    }
    CHECK_INT(differ, 0);
    char *e = sb_url_escape("a b/c~d-e_f.g%");
    CHECK_STR(e, "a%20b%2Fc~d-e_f.g%25");
    free(e);
    char *c = sb_concat("http://h", "/x/", "", "y", NULL);
    CHECK_STR(c, "http://h/x/y");
    free(c);
    c = sb_concat("", NULL);
    CHECK_STR(c, "");
    free(c);
    char d[5] = "xxxx";
    sb_strlcpy(d, "abcdef", sizeof d);
    CHECK_STR(d, "abcd"); /* cut to fit, terminated */
    sb_strlcpy(d, "ab", sizeof d);
    CHECK_STR(d, "ab");
    sb_strlcpy(d, "", sizeof d);
    CHECK_STR(d, "");
    sb_strlcpy(d, "wxyz", sizeof d);
    CHECK_STR(d, "wxyz");
    char one[1] = {'q'};
    sb_strlcpy(one, "abc", sizeof one);
    CHECK_INT(one[0], 0);
}

/* Output folders: made as needed, never through a link, never up. */
static void test_openat_dir(void)
{
    char *dir = t_tmpdir();
    int root = open(dir, O_RDONLY | O_DIRECTORY);
    int fd = sb_openat_dir(root, "a/b c/d", 1);
    CHECK(fd >= 0);
    struct stat st;
    char *made = sb_asprintf("%s/a/b c/d", dir);
    CHECK(stat(made, &st) == 0 && S_ISDIR(st.st_mode));
    if (fd >= 0)
        close(fd);
    fd = sb_openat_dir(root, "a/b c", 0); /* existing, not made */
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK_INT(sb_openat_dir(root, "a/none", 0), -1);
    CHECK_INT(errno, ENOENT);
    char *link = sb_asprintf("%s/a/ln", dir);
    CHECK_INT(symlink("/tmp", link), 0);
    CHECK_INT(sb_openat_dir(root, "a/ln/x", 1), -1);
    CHECK_INT(errno, ELOOP);
    CHECK_INT(sb_openat_dir(root, "a/../a", 1), -1);
    CHECK_INT(errno, EINVAL);
    CHECK_INT(sb_openat_dir(root, "a//b", 1), -1);
    CHECK_INT(errno, EINVAL);
    t_write(dir, "a/file", "x");
    CHECK_INT(sb_openat_dir(root, "a/file/y", 1), -1);
    CHECK_INT(errno, ELOOP); /* not a folder: refused as a link is */
    close(root);
    free(link);
    free(made);
    CHECK_INT(t_rmdir(dir), 0);
}

int main(void)
{
    test_escape_concat();
    test_openat_dir();
    struct sb_buf b;
    sb_buf_init(&b, 10);
    CHECK_INT(sb_buf_puts(&b, "hello"), SB_OK);
    CHECK_INT(sb_buf_puts(&b, "world"), SB_OK);
    CHECK_INT(sb_buf_puts(&b, "!"), SB_ETOOBIG); /* the cap holds */
    CHECK_STR(b.data, "helloworld");
    CHECK_INT(b.len, 10);
    sb_buf_reset(&b);
    CHECK_INT(sb_buf_printf(&b, "%d-%s", 42, "x"), SB_OK);
    CHECK_STR(b.data, "42-x");
    sb_buf_free(&b);
    CHECK(b.data == NULL);

    struct sb_map *m = sb_map_new();
    char key[32];
    for (long i = 1; i <= 10000; i++) {
        snprintf(key, sizeof key, "k%ld", i);
        CHECK(sb_map_put(m, key, (void *)(intptr_t)i) == NULL || 0);
    }
    CHECK_INT(sb_map_count(m), 10000);
    CHECK_INT((intptr_t)sb_map_get(m, "k777"), 777);
    CHECK(sb_map_get(m, "k0") == NULL);
    CHECK_INT((intptr_t)sb_map_put(m, "k5", (void *)(intptr_t)6), 5);
    long sum = 0;
    sb_map_each(m, count, &sum);
    CHECK_INT(sum, 10000L * 10001 / 2 + 1);
    sb_map_free(m, NULL);

    char hex[65];
    sb_sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sb_sha256_hex("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    int64_t ms;
    CHECK_INT(sb_parse_duration_ms("500ms", &ms), SB_OK); CHECK_INT(ms, 500);
    CHECK_INT(sb_parse_duration_ms("2s", &ms), SB_OK); CHECK_INT(ms, 2000);
    CHECK_INT(sb_parse_duration_ms("1.5m", &ms), SB_OK); CHECK_INT(ms, 90000);
    CHECK_INT(sb_parse_duration_ms("1h", &ms), SB_OK); CHECK_INT(ms, 3600000);
    CHECK_INT(sb_parse_duration_ms("3", &ms), SB_OK); CHECK_INT(ms, 3000);
    CHECK_INT(sb_parse_duration_ms("5 days", &ms), SB_EINVAL);
    CHECK_INT(sb_parse_duration_ms("-1s", &ms), SB_EINVAL);
    CHECK_INT(sb_parse_duration_ms("", &ms), SB_EINVAL);
    CHECK_INT(sb_parse_duration_ms("1e300h", &ms), SB_EINVAL);

    CHECK(sb_valid_id("sku-1001_red.v2"));
    CHECK(!sb_valid_id(""));
    CHECK(!sb_valid_id(".x"));
    CHECK(!sb_valid_id("a/b"));
    CHECK(!sb_valid_id("../x"));
    CHECK(!sb_valid_id("a b"));
    char long_id[130];
    memset(long_id, 'a', 129);
    long_id[129] = '\0';
    CHECK(!sb_valid_id(long_id));
    long_id[128] = '\0';
    CHECK(sb_valid_id(long_id));

    char *s = sb_dirname("a/b/c.yaml");
    CHECK_STR(s, "a/b");
    free(s);
    s = sb_dirname("c.yaml");
    CHECK_STR(s, ".");
    free(s);
    s = sb_path_join("a/b", "c.png");
    CHECK_STR(s, "a/b/c.png");
    free(s);
    s = sb_path_join("a/b", "/abs.png");
    CHECK_STR(s, "/abs.png");
    free(s);
    s = sb_path_join(".", "c.png");
    CHECK_STR(s, "c.png");
    free(s);
    char iso[32];
    sb_iso8601(1795226401000LL, iso);
    CHECK_STR(iso, "2026-11-21T02:00:01Z");
    /* The computed date against gmtime_r + strftime: epoch, leap days, centuries, the
       last millisecond of a day, before 1970, and a spread of times up to year 9999. */
    static const int64_t fixed[] = {0, 999, 1000, 86399999, 86400000, 951782400000LL /* 2000-02-29 */,
                                    4107542400000LL /* 2100-03-01 */, 13574563200000LL /* 2400-02-29 */,
                                    -1, -1000, -86400001, 253402300799000LL};
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        int64_t at = i < 12 ? fixed[i] : (int64_t)((uint64_t)i * 2654435761u % 253402300799ULL) * 1000 + i % 1000;
        if (i >= 12 && i % 3 == 0)
            at = -at / 100; /* some before 1970 */
        time_t t = (time_t)(at >= 0 ? at / 1000 : -((-at + 999) / 1000));
        struct tm tm;
        char want[32];
        gmtime_r(&t, &tm);
        strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%SZ", &tm);
        sb_iso8601(at, iso);
        if (strcmp(iso, want) != 0 && bad++ < 3)
            fprintf(stderr, "%lld: %s, expected %s\n", (long long)at, iso, want);
    }
    CHECK_INT(bad, 0);
    return t_done("util");
}
