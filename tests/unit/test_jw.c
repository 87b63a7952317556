/*
 * The JSON writer against cJSON itself: every text it writes (values, sorted
 * canonical form, fingerprints, the specs kept in the state, request bodies)
 * must be the bytes cJSON_PrintUnformatted gives for the same tree, since
 * fingerprints are hashes of it and states written before must still match.
 */
#include "sb_jw.h"
#include "sb_manifest.h"
#include "sb_provider.h"
#include "t.h"

#include <math.h>

static unsigned long long rng = 88172645463325252ULL;
static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng % n);
}

static double rnd_number(void)
{
    static const double fixed[] = {0.0, -0.0, 1.0, -1.0, 0.1, 1.5, 1e15, -1e15, 999999999999999.0,
                                   -999999999999999.0, 1e16, 1234567890123456.0, 2147483648.0,
                                   9007199254740993.0, 1e300, -1e-300, 5e-324, 1e-7, 3.14159,
                                   0.30000000000000004, 100.0, 4096.0, NAN, INFINITY, -INFINITY};
    switch (rnd(4)) {
    case 0:
        return fixed[rnd(sizeof fixed / sizeof *fixed)];
    case 1:
        return (double)((long long)rnd(2000000) - 1000000);
    case 2:
        return ((double)rnd(1u << 30) - (double)(1u << 29)) / (double)(1 + rnd(100000));
    default:
        return ldexp((double)rnd(1u << 30) + 0.5, (int)rnd(120) - 60);
    }
}

static char *rnd_string(char *buf, size_t cap)
{
    size_t n = rnd((unsigned)cap - 1);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(1 + rnd(255)); /* every byte but NUL: controls, quotes, UTF-8 bytes */
    buf[n] = '\0';
    return buf;
}

static cJSON *rnd_value(int depth)
{
    char s[24];
    unsigned k = rnd(depth > 3 ? 6 : 9);
    switch (k) {
    case 0: return cJSON_CreateNull();
    case 1: return cJSON_CreateBool(rnd(2));
    case 2: case 3: return cJSON_CreateNumber(rnd_number());
    case 4: case 5: return cJSON_CreateString(rnd_string(s, sizeof s));
    case 6: {
        cJSON *a = cJSON_CreateArray();
        for (unsigned i = rnd(5); i > 0; i--)
            cJSON_AddItemToArray(a, rnd_value(depth + 1));
        return a;
    }
    default: {
        cJSON *o = cJSON_CreateObject();
        for (unsigned i = rnd(7); i > 0; i--) {
            char key[8];
            snprintf(key, sizeof key, "%c%c", 'a' + rnd(6), rnd(2) ? '"' : 'z'); /* repeats happen */
            cJSON_AddItemToObject(o, key, rnd_value(depth + 1));
        }
        return o;
    }
    }
}

/* The canonical form as it was first made: a copy, sorted in place, printed by cJSON. */
static int cmp_items(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string, y->string);
}

static void sort_keys(cJSON *v)
{
    size_t n = 0;
    for (cJSON *it = v->child; it; it = it->next) {
        sort_keys(it);
        n++;
    }
    if (!cJSON_IsObject(v) || n < 2)
        return;
    cJSON **items = malloc(n * sizeof *items);
    size_t i = 0;
    for (cJSON *it = v->child; it; it = it->next)
        items[i++] = it;
    qsort(items, n, sizeof *items, cmp_items);
    for (i = 0; i < n; i++) {
        items[i]->prev = i ? items[i - 1] : items[n - 1];
        items[i]->next = i + 1 < n ? items[i + 1] : NULL;
    }
    v->child = items[0];
    free(items);
}

static char *cjson_sorted(const cJSON *v)
{
    cJSON *c = cJSON_Duplicate(v, 1);
    sort_keys(c);
    char *s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return s;
}

static void same(char *mine, char *theirs, int *bad)
{
    if (!mine || !theirs || strcmp(mine, theirs) != 0) {
        if ((*bad)++ < 3)
            fprintf(stderr, "jw:     %s\ncJSON:  %s\n", mine ? mine : "(null)", theirs ? theirs : "(null)");
    }
    free(mine);
    free(theirs);
}

/* The fingerprint as it was first computed: a cJSON array, sorted, printed, hashed. */
static void old_fingerprint(const char *model, const char *prompt, const cJSON *params,
                            const struct sb_image_ref *images, int n, char hex[65])
{
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateString("seedbatch-job/1"));
    cJSON_AddItemToArray(a, cJSON_CreateString("atlascloud"));
    cJSON_AddItemToArray(a, cJSON_CreateString(model));
    cJSON_AddItemToArray(a, cJSON_CreateString(prompt));
    cJSON_AddItemToArray(a, params ? cJSON_Duplicate(params, 1) : cJSON_CreateObject());
    cJSON *imgs = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        char tok[600];
        if (images[i].file && images[i].file->sha256[0])
            snprintf(tok, sizeof tok, "sha256:%s", images[i].file->sha256);
        else if (images[i].file)
            snprintf(tok, sizeof tok, "file:%s", images[i].file->path);
        else
            snprintf(tok, sizeof tok, "url:%s", images[i].url ? images[i].url : images[i].spec);
        cJSON_AddItemToArray(imgs, cJSON_CreateString(tok));
    }
    cJSON_AddItemToArray(a, imgs);
    char *s = cjson_sorted(a);
    sb_sha256_hex(s, strlen(s), hex);
    free(s);
    cJSON_Delete(a);
}

/* The spec kept in the state, as cJSON made it. */
static char *old_spec(const struct sb_jobspec *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", j->prompt);
    cJSON_AddItemToObject(o, "params", cJSON_Duplicate(j->params, 1));
    cJSON *imgs = cJSON_AddArrayToObject(o, "images");
    for (int k = 0; k < j->n_images; k++) {
        cJSON *im = cJSON_CreateObject();
        cJSON_AddStringToObject(im, "spec", j->images[k].spec);
        if (j->images[k].url)
            cJSON_AddStringToObject(im, "url", j->images[k].url);
        if (j->images[k].file)
            cJSON_AddStringToObject(im, "file", j->images[k].file->path);
        cJSON_AddItemToArray(imgs, im);
    }
    cJSON_AddNumberToObject(o, "images_requested", j->images_requested);
    if (j->invalid)
        cJSON_AddStringToObject(o, "invalid", j->invalid);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* A request body as cJSON made it: the params, then model (Atlas), prompt and images. */
static char *old_body(const char *model, const char *images_field, int as_string, const struct sb_jobspec *j,
                      char *const *urls)
{
    cJSON *b = cJSON_Duplicate(j->params, 1);
    if (model)
        cJSON_AddStringToObject(b, "model", model);
    cJSON_AddStringToObject(b, "prompt", j->prompt);
    if (as_string) {
        cJSON_AddStringToObject(b, "image", urls[0]);
    } else {
        cJSON *a = cJSON_CreateArray();
        for (int i = 0; i < j->n_images; i++)
            cJSON_AddItemToArray(a, cJSON_CreateString(urls[i]));
        cJSON_AddItemToObject(b, images_field, a);
    }
    char *s = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    return s;
}

int main(void)
{
    /* Values, plain and sorted, over random trees. */
    int bad = 0, bad_sorted = 0;
    for (int i = 0; i < 20000; i++) {
        cJSON *v = rnd_value(0);
        same(sb_jw_print(v, 0), cJSON_PrintUnformatted(v), &bad);
        same(sb_jw_print(v, 1), cjson_sorted(v), &bad_sorted);
        cJSON_Delete(v);
    }
    CHECK_INT(bad, 0);
    CHECK_INT(bad_sorted, 0);

    /* Numbers one by one, where %1.15g and the integer path meet. */
    static const double nums[] = {0.0, -0.0, 7.0, -7.0, 1e15, 999999999999999.0, -999999999999999.0,
                                  1e15 + 2, 0.1, 1.0 / 3, 1e21, 123.456, 0.032, 0.064, 3 * 0.032, 8.3,
                                  0.0001, 0.00009999, 0.000123, 999999999.999999, 1e9, -2.5, 0.1 + 0.2,
                                  123456.789012, 0.0000015, 1.0000000000001, 12.3456785, 0.999999999};
    bad = 0;
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
        cJSON *n = cJSON_CreateNumber(nums[i]);
        same(sb_jw_print(n, 0), cJSON_PrintUnformatted(n), &bad);
        cJSON_Delete(n);
    }
    CHECK_INT(bad, 0);
    /* Short decimals, where the number writer takes its own way: every one as cJSON writes it. */
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        double d = (double)((long long)rnd(2000000000) - 1000000000) / (double)(1 + rnd(7) * 9 + rnd(3) * 990) /
                   (i % 3 ? 1000.0 : 1.0);
        if (i % 5 == 0)
            d = (double)rnd(100000) * 0.032 + (double)rnd(1000) / 1e6;
        cJSON *n = cJSON_CreateNumber(d);
        same(sb_jw_print(n, 0), cJSON_PrintUnformatted(n), &bad);
        cJSON_Delete(n);
    }
    CHECK_INT(bad, 0);
    cJSON *null = cJSON_CreateNull();
    char *s = sb_jw_print(null, 0);
    CHECK_STR(s, "null");
    free(s);
    cJSON_Delete(null);

    /* A raw item without text cannot be printed, by either. */
    cJSON *raw = cJSON_CreateRaw(NULL);
    if (raw) {
        CHECK(sb_jw_print(raw, 0) == NULL);
        CHECK(cJSON_PrintUnformatted(raw) == NULL);
        cJSON_Delete(raw);
    }

    /* Fingerprints and state specs, with every kind of image reference. */
    struct sb_localfile hashed = {.path = "/in/a \"q\".png"}, unreadable = {.path = "/in/b\\x\t.png"};
    memcpy(hashed.sha256, "ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12ab12", 65);
    struct sb_image_ref refs[] = {
        {.spec = "a.png", .file = &hashed},
        {.spec = "b.png", .file = &unreadable},
        {.spec = "https://x/y?q=1&r=\"2\"", .url = "https://x/y?q=1&r=\"2\""},
        {.spec = "rel/c.png", .url = "https://cdn/\xc3\xa9/c.png"},
    };
    const char *params_text[] = {
        "{}", "{\"size\":\"2048*2048\",\"max_images\":2,\"output_format\":\"png\"}",
        "{\"z\":1,\"a\":{\"y\":[1,2.5,{\"k\":null,\"b\":true}],\"x\":\"\\u0001\"},\"m\":-0.0}",
    };
    for (size_t p = 0; p < sizeof params_text / sizeof *params_text; p++) {
        cJSON *params = cJSON_Parse(params_text[p]);
        char mine[65], theirs[65];
        const char *prompt = p == 2 ? "tab\there \"quoted\" \\ \x01 caf\xc3\xa9" : "a cat";
        sb_fingerprint(SB_PROVIDER_ATLAS, "bytedance/seedream-v5.0-lite/edit", prompt, params, refs, 4, mine);
        old_fingerprint("bytedance/seedream-v5.0-lite/edit", prompt, params, refs, 4, theirs);
        CHECK_STR(mine, theirs);

        struct sb_jobspec j = {.prompt = (char *)prompt, .params = params, .images = refs, .n_images = 4,
                               .images_requested = (int)p + 1};
        bad = 0;
        same(sb_jobspec_json(&j), old_spec(&j), &bad);
        j.invalid = "b.png: \"unreadable\"";
        j.prompt = NULL; /* a job whose prompt is missing: the key is left out */
        same(sb_jobspec_json(&j), old_spec(&j), &bad);
        j.params = NULL;
        same(sb_jobspec_json(&j), old_spec(&j), &bad);
        CHECK_INT(bad, 0);

        /* Request bodies of both providers (the manifest gives each its model details). */
        j.prompt = (char *)prompt;
        j.params = params;
        char *urls[] = {"https://u/1", "https://u/\"2\"", "https://u/3", "https://u/4"};
        struct sb_manifest m = {.model = "bytedance/seedream-v5.0-lite/edit-sequential",
                                .model_info = {.known = 1, .images_field = "images"}};
        bad = 0;
        same(sb_provider_atlas.submit_body(&m, &j, urls), old_body(m.model, "images", 0, &j, urls), &bad);
        m.model = "bytedance/seedream-v5.0-lite/edit";
        m.model_info.images_field = "image";
        m.model_info.images_as_string = 1;
        same(sb_provider_atlas.submit_body(&m, &j, urls), old_body(m.model, "image", 1, &j, urls), &bad);
        same(sb_provider_runcomfy.submit_body(&m, &j, urls), old_body(NULL, "image", 0, &j, urls), &bad);
        CHECK_INT(bad, 0);
        cJSON_Delete(params);
    }
    return t_done("test_jw");
}
