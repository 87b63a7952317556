/*
 * sb_loop_url: a URL handed to libcurl parsed must be the one libcurl's own parser
 * makes of the text, part by part; URLs it cannot vouch for are left to libcurl.
 */
#include "sb_loop.h"
#include "t.h"

#include <stdint.h>

static const CURLUPart parts[] = {CURLUPART_URL, CURLUPART_SCHEME, CURLUPART_USER, CURLUPART_PASSWORD,
                                  CURLUPART_OPTIONS, CURLUPART_HOST, CURLUPART_PORT, CURLUPART_PATH,
                                  CURLUPART_QUERY, CURLUPART_FRAGMENT, CURLUPART_ZONEID};

/* Every part, as libcurl's request code reads them (url.c: plain, URL-encoded path, default port). */
static int same_parts(CURLU *a, CURLU *b, const char *url)
{
    int same = 1;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        for (int f = 0; f < 3; f++) {
            unsigned flags = f == 0 ? 0 : f == 1 ? CURLU_URLENCODE : CURLU_DEFAULT_PORT;
            char *x = NULL, *y = NULL;
            CURLUcode cx = curl_url_get(a, parts[i], &x, flags), cy = curl_url_get(b, parts[i], &y, flags);
            if (cx != cy || (x && y && strcmp(x, y) != 0) || (!x != !y)) {
                fprintf(stderr, "%s: part %d (flags %u): %d \"%s\" against libcurl's %d \"%s\"\n", url,
                        (int)parts[i], flags, (int)cx, x ? x : "", (int)cy, y ? y : "");
                same = 0;
            }
            curl_free(x);
            curl_free(y);
        }
    }
    return same;
}

/* Checks url: parsed by seedbatch (expect_parsed) or left to libcurl; when parsed, as libcurl would. */
static void check(struct sb_loop *l, const char *url, int expect_parsed)
{
    CURLU *ours = sb_loop_url(l, url);
    if (!!ours != expect_parsed) {
        fprintf(stderr, "%s: %s\n", url, ours ? "parsed, expected left to libcurl" : "left to libcurl, expected parsed");
        CHECK(!!ours == expect_parsed);
    }
    if (ours) {
        CURLU *theirs = curl_url();
        CHECK_INT(curl_url_set(theirs, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME), CURLUE_OK);
        CHECK(same_parts(ours, theirs, url));
        curl_url_cleanup(theirs);
    }
    curl_url_cleanup(ours);
}

static uint64_t rng = 88172645463325252ULL;
static unsigned next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)rng;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    uv_loop_t uv;
    uv_loop_init(&uv);
    struct sb_loop *l = sb_loop_new(&uv, 8);

    /* The URLs a run uses: API calls and download locations. */
    check(l, "http://127.0.0.1:8080/api/v1/model/generateImage", 1);
    check(l, "http://127.0.0.1:8080/api/v1/model/prediction/pred_0001-abc", 1);
    check(l, "https://api.atlascloud.ai/api/v1/model/prediction/7f3a.b_c~d", 1);
    check(l, "https://model-api.runcomfy.net/v1/requests/0a1b/status", 1);
    check(l, "http://localhost/files/", 1);
    check(l, "http://LOCALHOST:80/a", 1);
    check(l, "https://Example.COM:443/x//y/", 1);
    check(l, "http://user:pw@127.0.0.1:9/p", 1);
    check(l, "http://[::1]:8080/outputs/a.png", 1);
    check(l, "http://127.0.0.1:8080/.../x/.a/..b/a.", 1);
    /* Left to libcurl: dot segments, queries, fragments, escapes, spaces, no path, other schemes. */
    check(l, "http://127.0.0.1:8080/a/../b", 0);
    check(l, "http://127.0.0.1:8080/a/./b", 0);
    check(l, "http://127.0.0.1:8080/a/..", 0);
    check(l, "http://127.0.0.1:8080/a/.", 0);
    check(l, "http://127.0.0.1:8080/a?x=1", 0);
    check(l, "http://127.0.0.1:8080/a#f", 0);
    check(l, "http://127.0.0.1:8080/a%2Fb", 0);
    check(l, "http://127.0.0.1:8080/a b", 0);
    check(l, "http://127.0.0.1", 0);
    check(l, "http:///a", 0);
    check(l, "ftp://127.0.0.1/a", 0);
    check(l, "HTTP://127.0.0.1/a", 0);
    check(l, "127.0.0.1/a", 0);
    check(l, "http://127.0.0.2/a", 0); /* a ninth origin: the loop keeps eight */

    /* Random paths over the characters that matter: plain ones must come out as libcurl
       parses them; any that seedbatch parses at all must too. */
    sb_loop_free(l);
    l = sb_loop_new(&uv, 8); /* a fresh set of origins (a loop keeps at most 8) */
    check(l, "http://bad host/a", 0); /* an origin libcurl refuses */
    static const char alphabet[] = "aZ09-._~/%?#+ :@!$&'()*,;=";
    char url[128];
    int parsed = 0;
    for (int n = 0; n < 20000; n++) {
        int len = snprintf(url, sizeof url, "http%s://127.0.0.1:%u/", next() % 2 ? "s" : "", 8000 + next() % 4);
        int plen = (int)(next() % 12);
        for (int i = 0; i < plen; i++)
            url[len++] = alphabet[next() % (sizeof alphabet - 1)];
        url[len] = '\0';
        CURLU *ours = sb_loop_url(l, url);
        if (ours) {
            parsed++;
            CURLU *theirs = curl_url();
            if (curl_url_set(theirs, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
                fprintf(stderr, "%s: parsed, but libcurl refuses it\n", url);
                CHECK(0);
            } else
                CHECK(same_parts(ours, theirs, url));
            curl_url_cleanup(theirs);
        }
        curl_url_cleanup(ours);
    }
    CHECK(parsed > 1000); /* the plain ones (about a tenth) were parsed */
    printf("random paths: %d of 20000 parsed by seedbatch\n", parsed);

    sb_loop_free(l);
    CHECK_INT(uv_loop_close(&uv), 0);
    curl_global_cleanup();
    return t_done("test_loop");
}
