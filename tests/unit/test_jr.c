/*
 * sb_jr and its users: specs read with the reader must come out exactly as
 * cJSON reads them, for the specs seedbatch writes and for damaged ones; what the
 * reader cannot vouch for it must give up on (its callers then use cJSON).
 */
#include "sb_jr.h"
#include "sb_jw.h"
#include "sb_manifest.h"
#include "t.h"
#include "t_jobs.h"
#include "../json_same.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>

static uint64_t rng = 0x9E3779B97F4A7C15ULL;
static unsigned next(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (unsigned)rng;
}

/* Reads text as one value with the reader alone: 1 when it read all of it. */
static int reads(const char *text)
{
    struct sb_jr r;
    sb_jr_init(&r, text, strlen(text));
    return sb_jr_skip(&r, NULL, NULL) && sb_jr_end(&r);
}

static void test_reader(void)
{
    CHECK(reads("{\"a\":[1,-2.5e+3,true,false,null,\"x\\n\\u00e9\\ud83d\\ude00\"],\"b\":{}}"));
    CHECK(reads(" [ ] "));
    CHECK(reads("\"\\\"\\\\\\/\\b\\f\\r\\t\""));
    CHECK(reads("0"));
    CHECK(reads("-0.5E-7"));
    /* Not plain JSON, or not read as cJSON reads it: given up. */
    const char *bad[] = {"", "{", "{\"a\":1", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "[1 2]", "01", "1.",
                         "-", "1e", ".5", "+1", "\"\\x\"", "\"a\nb\"", "\"\\u0000\"", "\"\\ud800\"",
                         "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\u12g4\"", "nul", "tru", "{} x", "[]]",
                         "\x01[]", "'a'", "\"abc"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (reads(bad[i])) {
            fprintf(stderr, "read without fault: %s\n", bad[i]);
            CHECK(0);
        }
    /* Nesting: 64 levels read, 65 given up on. */
    char deep[200];
    for (int d = 64; d <= 65; d++) {
        memset(deep, '[', (size_t)d);
        memset(deep + d, ']', (size_t)d);
        deep[2 * d] = '\0';
        CHECK_INT(reads(deep), d == 64);
    }
    /* Keys and strings come out unescaped; a key too long for the buffer comes out empty. */
    struct sb_jr r;
    const char *text = "{\"pr\\u006fmpt\":\"a\\tb\\u00e9\",\"a_key_longer_than_eight\":[],\"n\":42}";
    char key[8];
    sb_jr_init(&r, text, strlen(text));
    CHECK(sb_jr_enter(&r, '{'));
    CHECK(sb_jr_key(&r, key, sizeof key));
    CHECK_STR(key, "prompt");
    char *s = sb_jr_str(&r);
    CHECK_STR(s, "a\tb\xc3\xa9");
    free(s);
    CHECK(sb_jr_key(&r, key, sizeof key));
    CHECK_STR(key, "");
    const char *at;
    size_t len;
    CHECK(sb_jr_skip(&r, &at, &len));
    CHECK_INT(len, 2);
    CHECK(sb_jr_key(&r, key, sizeof key));
    double v = 0;
    CHECK(sb_jr_num(&r, &v) && v == 42);
    CHECK(!sb_jr_key(&r, key, sizeof key));
    CHECK(sb_jr_end(&r));
}

/* A random string: plain, quotes, escapes, control characters, UTF-8. */
static char *rand_str(void)
{
    static const char *pieces[] = {"a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\x01", "\x1f", "\xc3\xa9",
                                   "\xf0\x9f\x98\x80", "\xe2\x82\xac", "{", "}", "[", ",", ":"};
    char buf[256] = "";
    int n = (int)(next() % 12);
    for (int i = 0; i < n; i++)
        strcat(buf, pieces[next() % (sizeof pieces / sizeof pieces[0])]);
    return sb_strdup(buf);
}

/* Both readings of text agree: the same code and the same fields. */
static int same_spec(struct sb_manifest *m, const char *text, int *read_ok)
{
    struct sb_jobspec a, b;
    int ra = sb_jobspec_from_json(m, "id", text, &a), rb = sb_jobspec_from_cjson(m, "id", text, &b);
    int same = ra == rb && json_same_str(a.id, b.id) && json_same_str(a.prompt, b.prompt) && json_same_str(a.invalid, b.invalid) &&
               a.n_images == b.n_images && a.images_requested == b.images_requested;
    for (int k = 0; same && k < a.n_images; k++)
        same = json_same_str(a.images[k].spec, b.images[k].spec) && json_same_str(a.images[k].url, b.images[k].url) &&
               a.images[k].file == b.images[k].file;
    if (same && (a.params || b.params)) {
        char *pa = sb_jw_print(a.params, 0), *pb = sb_jw_print(b.params, 0);
        same = json_same_str(pa, pb);
        free(pa);
        free(pb);
    }
    struct sb_spec_text ta, tb;
    sb_jobspec_text(text, &ta, 0);
    sb_jobspec_text(text, &tb, 1);
    same = same && json_same_str(ta.prompt, tb.prompt) && json_same_str(ta.invalid, tb.invalid) && ta.n_images == tb.n_images;
    for (int k = 0; same && k < ta.n_images; k++)
        same = json_same_str(ta.images[k], tb.images[k]);
    if (!same)
        fprintf(stderr, "readings differ (%d, %d) for: %s\n", ra, rb, text);
    *read_ok = ra == SB_OK;
    sb_spec_text_clear(&ta);
    sb_spec_text_clear(&tb);
    sb_jobspec_clear(&a);
    sb_jobspec_clear(&b);
    return same;
}

static void test_specs(const char *dir)
{
    char err[512], path[512];
    t_write(dir, "m.yaml", "version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n"
                           "jobs:\n  - {id: a, prompt: one, images: [\"https://x.example/b.png\"]}\n");
    snprintf(path, sizeof path, "%s/m.yaml", dir);
    struct sb_manifest *m;
    if (sb_manifest_load(path, &m, err, sizeof err) != SB_OK) {
        fprintf(stderr, "error: %s\n", err);
        CHECK(0);
        return;
    }
    int differ = 0, ok = 0, read_ok;
    char file_path[600];
    snprintf(file_path, sizeof file_path, "%s/missing.png", dir);
    for (int n = 0; n < 3000; n++) {
        /* A spec as a run keeps it. */
        struct sb_jobspec j = {0};
        j.prompt = rand_str();
        j.invalid = next() % 4 ? NULL : rand_str();
        j.params = cJSON_CreateObject();
        cJSON_AddNumberToObject(j.params, "max_images", 1 + next() % 15);
        char *v = rand_str();
        cJSON_AddStringToObject(j.params, next() % 2 ? "output_format" : v, v);
        free(v);
        if (next() % 3 == 0) {
            cJSON *o = cJSON_AddObjectToObject(j.params, "optimize_prompt_options");
            cJSON_AddStringToObject(o, "mode", "fast");
            cJSON_AddItemToObject(o, "list", cJSON_CreateIntArray((const int[]){1, 2, 3}, 3));
        }
        j.n_images = (int)(next() % 4);
        j.images = sb_calloc(4, sizeof *j.images);
        struct sb_localfile lf = {.path = file_path};
        for (int k = 0; k < j.n_images; k++) {
            j.images[k].spec = rand_str();
            if (next() % 2)
                j.images[k].url = rand_str();
            else
                j.images[k].file = &lf;
        }
        j.images_requested = (int)(next() % 16);
        char *text = sb_jobspec_json(&j);
        for (int k = 0; k < j.n_images; k++)
            j.images[k].file = NULL;
        sb_jobspec_clear(&j);
        if (!same_spec(m, text, &read_ok))
            differ++;
        ok += read_ok;
        if (!reads(text)) {
            fprintf(stderr, "the reader gave up on a spec seedbatch wrote: %s\n", text);
            differ++;
        }
        /* The same damaged: bytes changed, cut, doubled. */
        size_t len = strlen(text);
        for (int d = 0; d < 8 && len; d++) {
            char *bad = sb_malloc(2 * len + 2);
            memcpy(bad, text, len + 1);
            size_t at = next() % len;
            switch (next() % 4) {
            case 0: bad[at] = "{}[]\",:\\ 0a-"[next() % 13]; break;
            case 1: bad[at] = '\0'; break;
            case 2: memcpy(bad + len, text, len + 1); break;
            default: memmove(bad + at, bad + at + 1, len - at); break;
            }
            if (!same_spec(m, bad, &read_ok))
                differ++;
            free(bad);
        }
        free(text);
    }
    CHECK_INT(differ, 0);
    CHECK(ok > 2000); /* most random specs are valid ones (an image without a url or file is not) */
    /* Keys named twice, or of another type: the same as cJSON's reading. */
    const char *odd[] = {"{\"prompt\":\"a\",\"prompt\":\"b\",\"params\":{},\"images\":[],\"images_requested\":1}",
                         "{\"prompt\":\"a\",\"params\":[],\"images\":[],\"images_requested\":1}",
                         "{\"prompt\":2,\"params\":{},\"images\":[],\"images_requested\":1}",
                         "{\"prompt\":\"a\",\"params\":{},\"images\":{\"x\":{\"spec\":\"s\"}},\"images_requested\":1}",
                         "{\"prompt\":\"a\",\"params\":{},\"images\":[\"s\",{\"spec\":\"t\",\"spec\":\"u\",\"url\":\"v\"}],"
                         "\"images_requested\":1}",
                         "{\"prompt\":\"a\",\"params\":{},\"images\":[],\"images_requested\":\"1\"} trailing",
                         "{\"prompt\":\"a\",\"params\":{},\"images\":[],\"images_requested\":1e300}",
                         "{\"prompt\":\"a\",\"params\":{},\"images\":[],\"images_requested\":-1}",
                         "[\"prompt\"]", "null", "{}"};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++)
        CHECK(same_spec(m, odd[i], &read_ok));
    /* An images count a damaged state gives out of range makes the spec unusable. */
    struct sb_jobspec js;
    CHECK_INT(sb_jobspec_from_json(m, "id", "{\"prompt\":\"a\",\"params\":{},\"images\":[],\"images_requested\":1e300}",
                                   &js), SB_EINVAL);
    CHECK_INT(sb_jobspec_from_json(m, "id", "{\"prompt\":\"a\",\"params\":{},\"images\":[],\"images_requested\":3}",
                                   &js), SB_OK);
    CHECK_INT(js.images_requested, 3);
    sb_jobspec_clear(&js);
    t_manifest_free(m);
}

/* cJSON's reading of text as sb_json_parse asks for it: all of it, nothing after. */
static cJSON *cjson_reads(const char *text, size_t n)
{
    const char *end;
    return cJSON_ParseWithLengthOpts(text, n + 1, &end, 1);
}

/* sb_jr_tree on text: NULL, or a tree the same as cJSON's (which must read it too). */
static int tree_agrees(const char *text, size_t n, int *taken)
{
    cJSON *t = sb_jr_tree(text, n), *c = cjson_reads(text, n);
    int ok = !t || json_same(t, c);
    if (!ok)
        fprintf(stderr, "sb_jr_tree reads differently: %.*s\n", (int)n, text);
    *taken = t != NULL;
    cJSON_Delete(t); /* frees the tree's one block (ASan and valgrind see to it) */
    cJSON_Delete(c);
    return ok;
}

/* A random value: containers to depth 4, strings with anything in them, numbers of every form. */
static cJSON *rand_value(int depth)
{
    static const char *nums[] = {"0", "-0", "1", "-1", "0.5", "1e3", "-2.5E-3", "2147483647", "2147483648",
                                 "-2147483649", "1e400", "-1e400", "123456789012345678901234567890", "4.9e-324"};
    int k = (int)(next() % (depth < 4 ? 7 : 5));
    switch (k) {
    case 0: return cJSON_CreateNull();
    case 1: return cJSON_CreateBool(next() % 2);
    case 2: return cJSON_CreateNumber(strtod(nums[next() % (sizeof nums / sizeof nums[0])], NULL));
    case 3:
    case 4: {
        char *s = rand_str();
        cJSON *v = cJSON_CreateString(s);
        free(s);
        return v;
    }
    default: {
        cJSON *c = k == 5 ? cJSON_CreateObject() : cJSON_CreateArray();
        int n = (int)(next() % 5);
        for (int i = 0; i < n; i++) {
            cJSON *v = rand_value(depth + 1);
            if (k == 5) {
                char *key = rand_str();
                cJSON_AddItemToObject(c, next() % 4 ? key : "dup", v); /* keys repeat too */
                free(key);
            } else {
                cJSON_AddItemToArray(c, v);
            }
        }
        return c;
    }
    }
}

static int count_values(const cJSON *v)
{
    int n = 1;
    for (const cJSON *c = v->child; c; c = c->next)
        n += count_values(c);
    return n;
}

static void test_tree(void)
{
    int taken;
    /* The answers of both providers, in each documented shape, are read into one block. */
    const char *answers[] = {
        "{\"code\":200,\"data\":{\"id\":\"abc123\",\"status\":\"starting\",\"model\":\"m\"}}",
        "{\"id\":\"abc123\",\"status\":\"processing\"}",
        "{\"code\":200,\"data\":{\"id\":\"p\",\"status\":\"completed\",\"outputs\":[\"http://h/o/1.jpeg\","
        "\"https://h/o/2.jpeg\"],\"metrics\":{\"predict_time\":1.25},\"error\":null}}",
        "{\"code\":200,\"data\":{\"status\":\"failed\",\"error\":\"rejected \\\"x\\\" \\u00e9\\ud83d\\ude00\","
        "\"error_code\":1039}}",
        "{\"request_id\":\"r\",\"status\":\"in_queue\",\"queue_position\":3}",
        "{\"status\":\"succeeded\",\"output\":{\"images\":[{\"url\":\"https://x/1.png\"}]},\"true\":true,"
        "\"false\":false}",
        " {\"code\" : 500 , \"msg\" : \"busy\" }\n",
        "{\"a\":1,\"a\":2,\"\":{},\"e\":[],\"n\":[-0,1e400,-1e400,2147483648,-2147483649,0.1,12e-1]}",
    };
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        CHECK(tree_agrees(answers[i], strlen(answers[i]), &taken));
        CHECK(taken);
    }
    /* Fields as cJSON sets them, lists linked both ways, the root alone flagged. */
    const char *text = answers[2];
    cJSON *t = sb_jr_tree(text, strlen(text));
    CHECK(t && cJSON_IsObject(t) && (t->type & cJSON_IsReference));
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(t, "data");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(d, "outputs");
    CHECK_INT(cJSON_GetArraySize(o), 2);
    CHECK_STR(cJSON_GetArrayItem(o, 1)->valuestring, "https://h/o/2.jpeg");
    CHECK(o->child->prev == o->child->next && o->child->next->next == NULL);
    CHECK(o->type == cJSON_Array && d->type == cJSON_Object);
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(d, "metrics"), "predict_time");
    CHECK(cJSON_IsNumber(pt) && pt->valuedouble == 1.25 && pt->valueint == 1);
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(d, "error")));
    cJSON *copy = cJSON_Duplicate(d, 1); /* a copy owns all of itself */
    cJSON_Delete(t);
    CHECK_STR(cJSON_GetObjectItemCaseSensitive(copy, "status")->valuestring, "completed");
    cJSON_Delete(copy);
    t = sb_jr_tree("[1e400,-1e400,3000000000]", 25);
    CHECK(t && isinf(t->child->valuedouble) && t->child->valueint == INT_MAX &&
          t->child->next->valueint == INT_MIN && t->child->next->next->valueint == INT_MAX);
    cJSON_Delete(t);

    /* What it gives up on goes to cJSON, which reads or refuses it as before. */
    char nul[] = "{\"a\":1}\0garbage";
    const char *refused[] = {"", "{", "[1,]", "{} x", "{\"a\":\"\\u0000\"}", "{\"a\":\"tab\there\"}", "\x01{}",
                             "{\"a\":01}", "{\"a\":1}\x01"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK(sb_jr_tree(refused[i], strlen(refused[i])) == NULL);
        CHECK(tree_agrees(refused[i], strlen(refused[i]), &taken));
    }
    CHECK(sb_jr_tree(nul, sizeof nul - 1) == NULL);
    char deep[200];
    for (int n = 64; n <= 65; n++) {
        memset(deep, '[', (size_t)n);
        memset(deep + n, ']', (size_t)n);
        t = sb_jr_tree(deep, (size_t)(2 * n));
        CHECK_INT(t != NULL, n == 64);
        cJSON_Delete(t);
    }
    /* 64 values in one block, 65 to cJSON; over 16 KiB: cJSON's. */
    char many[300] = "[";
    for (int i = 1; i < 64; i++)
        strcat(many, i > 1 ? ",0" : "0");
    strcat(many, "]");
    t = sb_jr_tree(many, strlen(many));
    CHECK(t && cJSON_GetArraySize(t) == 63);
    cJSON_Delete(t);
    strcpy(many + strlen(many) - 1, ",0]");
    CHECK(sb_jr_tree(many, strlen(many)) == NULL);
    CHECK(tree_agrees(many, strlen(many), &taken));

    size_t big = 20000;
    char *long_text = sb_malloc(big + 1);
    memset(long_text, 'a', big);
    memcpy(long_text, "{\"a\":\"", 6);
    memcpy(long_text + big - 2, "\"}", 2);
    long_text[big] = '\0';
    CHECK(sb_jr_tree(long_text, big - 1000) == NULL);
    CHECK(sb_jr_tree(long_text, big) == NULL);
    free(long_text);

    /* Random values, printed both ways, and then damaged byte by byte. */
    int n_taken = 0, n_small = 0, n_docs = 3000;
    for (int i = 0; i < n_docs; i++) {
        cJSON *v = rand_value(0);
        char *txt = next() % 2 ? cJSON_PrintUnformatted(v) : cJSON_Print(v);
        size_t n = strlen(txt);
        CHECK(tree_agrees(txt, n, &taken));
        n_taken += taken;
        n_small += count_values(v) <= 64;
        for (int m = 0; m < 4 && n; m++) {
            size_t at = next() % n;
            char was = txt[at];
            static const char bytes[] = "{}[],:\"\\ 0-.eE+tfnu\x01";
            txt[at] = bytes[next() % (sizeof bytes - 1)];
            CHECK(tree_agrees(txt, n, &taken));
            txt[at] = was;
        }
        free(txt);
        cJSON_Delete(v);
    }
    /* Every value cJSON prints is plain JSON: the tree reads all those of up to 64 values. */
    CHECK_INT(n_taken, n_small);
    CHECK(n_small > n_docs / 2);
}

int main(void)
{
    char *dir = t_tmpdir();
    test_reader();
    test_tree();
    test_specs(dir);
    t_rmdir(dir);
    return t_done("test_jr");
}
