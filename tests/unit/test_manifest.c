/* manifest: parsing, typing, foreach, defaults, and every refusal with its file:line:column. */
#include "sb_manifest.h"
#include "sb_provider.h"
#include "sb_log.h"
#include "t.h"
#include "t_jobs.h"

#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

static char *dir;

static struct sb_manifest *parse(const char *text, char *err)
{
    struct sb_manifest *m = NULL;
    err[0] = '\0';
    sb_manifest_parse("m.yaml", dir, text, strlen(text), &m, err, SB_ERRLEN);
    return m;
}

/* The manifest must be refused with an error containing want. */
static void refused(const char *text, const char *want, int line)
{
    char err[SB_ERRLEN];
    struct sb_manifest *m = parse(text, err);
    if (m) {
        fprintf(stderr, "test at line %d: accepted, expected \"%s\"\n", line, want);
        t_fail++;
        t_manifest_free(m);
        return;
    }
    if (!strstr(err, want)) {
        fprintf(stderr, "test at line %d: error \"%s\" lacks \"%s\"\n", line, err, want);
        t_fail++;
    } else {
        t_pass++;
    }
}
#define REFUSED(text, want) refused(text, want, __LINE__)

/* The manifest must be accepted with n jobs: returns it then (to free), else NULL. */
static struct sb_manifest *accepted(const char *text, int n, int line)
{
    char err[SB_ERRLEN];
    struct sb_manifest *m = parse(text, err);
    if (m && m->n_jobs == n) {
        t_pass++;
        return m;
    }
    if (m)
        fprintf(stderr, "test at line %d: %d jobs, expected %d\n", line, m->n_jobs, n);
    else
        fprintf(stderr, "test at line %d: refused (%s), expected %d jobs\n", line, err, n);
    t_fail++;
    t_manifest_free(m);
    return NULL;
}
#define ACCEPTED(text, n) accepted(text, n, __LINE__)

#define HEAD "version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n"

static void test_full(void)
{
    char err[SB_ERRLEN];
    struct sb_manifest *m = parse(
        HEAD
        "output_dir: out/spring\n"
        "defaults:\n  size: \"2048*2048\"\n  output_format: jpeg\n  max_images: 2\n"
        "limits:\n  concurrency: 8\n  requests_per_second: 2.5\n  max_attempts: 3\n"
        "  poll_interval: 500ms\n  job_timeout: 5m\n  max_cost: 10.5\n  unreachable_timeout: 90s\n"
        "price_per_image: 0.05\n"
        "jobs:\n"
        "  - id: sku-1\n    prompt: \"Make it red.\"\n"
        "    images: [p/1/front.jpg, https://cdn.example.com/b.png]\n"
        "    params: {max_images: 3, seed: 42, flag: true, ratio: 1.5, note: null, label: !!str 12}\n"
        "  - foreach: \"p/*/front.jpg\"\n    id: \"{dir}-{stem}-{index}\"\n"
        "    prompt: \"Put {name} ({ext}, {path}) on marble {{literal}}.\"\n"
        "    images: [\"{path}\", logo.png]\n"
        "  - prompt: no id here\n    images: [tiny.png]\n", err);
    CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "error: %s\n", err);
        return;
    }
    CHECK_INT(m->version, 1);
    CHECK_INT(m->provider, SB_PROVIDER_ATLAS);
    CHECK_STR(m->model, "bytedance/seedream-v5.0-lite/edit-sequential");
    CHECK_HAS(m->output_dir, "/out/spring");
    CHECK_INT(m->limits.concurrency, 8);
    CHECK(m->limits.requests_per_second == 2.5);
    CHECK_INT(m->limits.max_attempts, 3);
    CHECK_INT(m->limits.poll_interval_ms, 500);
    CHECK_INT(m->limits.job_timeout_ms, 300000);
    CHECK_INT(m->limits.unreachable_ms, 90000);
    CHECK(m->limits.max_cost == 10.5);
    CHECK(m->price_per_image == 0.05);
    CHECK_INT(m->n_jobs, 4);
    struct sb_jobspec *j = &t_jobs(m)[0];
    CHECK_STR(j->id, "sku-1");
    CHECK_INT(j->images_requested, 3);
    CHECK_INT(j->n_images, 2);
    CHECK(j->images[0].file != NULL && j->images[0].url == NULL);
    CHECK_STR(j->images[1].url, "https://cdn.example.com/b.png");
    char *canon = sb_canonical_json(j->params);
    CHECK_STR(canon, "{\"flag\":true,\"label\":\"12\",\"max_images\":3,\"note\":null,\"output_format\":\"jpeg\","
                     "\"ratio\":1.5,\"seed\":42,\"size\":\"2048*2048\"}");
    free(canon);
    CHECK_INT(j->line, 19);
    CHECK_STR(t_jobs(m)[1].id, "1-front-1");
    CHECK_STR(t_jobs(m)[2].id, "2-front-2");
    CHECK_STR(t_jobs(m)[1].prompt, "Put front.jpg (jpg, p/1/front.jpg) on marble {{literal}}.");
    CHECK_STR(t_jobs(m)[2].images[0].spec, "p/2/front.jpg");
    CHECK_INT(t_jobs(m)[1].images_requested, 2);
    /* The same file named by two jobs is read once. */
    CHECK(t_jobs(m)[0].images[0].file == t_jobs(m)[1].images[0].file);
    CHECK_INT(sb_map_count(m->files), 4);
    /* No id: the first 12 hex digits of the fingerprint. */
    CHECK_INT(strlen(t_jobs(m)[3].id), 12);
    CHECK(strncmp(t_jobs(m)[3].id, t_jobs(m)[3].fingerprint, 12) == 0);
    CHECK_HAS(t_jobs(m)[3].invalid, "width and height must be over 14");
    CHECK(t_jobs(m)[0].invalid == NULL);
    t_manifest_free(m);
}

static void test_defaults_and_media(void)
{
    char err[SB_ERRLEN];
    struct sb_manifest *m = parse(HEAD "jobs:\n  - prompt: x\n    images: [logo.png]\n", err);
    CHECK(m != NULL);
    if (m) {
        CHECK_INT(m->limits.concurrency, 16);
        CHECK(m->limits.requests_per_second == 5);
        CHECK_INT(m->limits.max_attempts, 6);
        CHECK_INT(m->limits.poll_interval_ms, 2000);
        CHECK_INT(m->limits.job_timeout_ms, 1200000);
        CHECK_INT(m->limits.unreachable_ms, 300000);
        CHECK(m->limits.max_cost < 0);
        CHECK(m->price_per_image == 0.032);
        CHECK_HAS(m->output_dir, "/m.out");
        CHECK_INT(m->media.upload, SB_UPLOAD_PROVIDER);
        CHECK_INT(m->media.upload_ttl_ms, 6 * 3600 * 1000);
        CHECK_INT(t_jobs(m)[0].images_requested, 1);
        t_manifest_free(m);
    }
    m = parse("version: 1\nprovider: runcomfy\nmodel: bytedance/seedream-5/lite/edit\n"
              "media:\n  upload: url_prefix\n  url_prefix: https://cdn.example.com/cat\n  root: p\n"
              "jobs:\n  - prompt: x\n    images: [\"p/1/front.jpg\", \"p/sp ace/a&b.jpg\"]\n"
              "    params: {sequential_image_generation: auto, max_images: 2}\n", err);
    CHECK(m != NULL);
    if (m) {
        CHECK_STR(t_jobs(m)[0].images[0].url, "https://cdn.example.com/cat/1/front.jpg");
        CHECK_STR(t_jobs(m)[0].images[1].url, "https://cdn.example.com/cat/sp%20ace/a%26b.jpg");
        CHECK(t_jobs(m)[0].images[0].file != NULL);
        CHECK_INT(t_jobs(m)[0].images_requested, 2);
        CHECK(m->price_per_image == 0.028);
        t_manifest_free(m);
    } else {
        fprintf(stderr, "error: %s\n", err);
    }
}

static void test_fingerprints(void)
{
    char err[SB_ERRLEN];
    struct sb_manifest *a = parse(HEAD "jobs:\n  - prompt: x\n    images: [logo.png]\n"
                                  "    params: {size: \"2048*2048\", max_images: 2}\n", err);
    struct sb_manifest *b = parse(HEAD "defaults: {max_images: 2}\njobs:\n  - prompt: x\n    images: [logo.png]\n"
                                  "    params: {size: \"2048*2048\"}\n", err);
    struct sb_manifest *c = parse(HEAD "jobs:\n  - prompt: y\n    images: [logo.png]\n"
                                  "    params: {size: \"2048*2048\", max_images: 2}\n", err);
    struct sb_manifest *d = parse(HEAD "jobs:\n  - prompt: x\n    images: [logo2.png]\n"
                                  "    params: {size: \"2048*2048\", max_images: 2}\n", err);
    struct sb_manifest *e = parse(HEAD "jobs:\n  - prompt: x\n    images: [p/1/front.jpg]\n"
                                  "    params: {size: \"2048*2048\", max_images: 2}\n", err);
    CHECK(a && b && c && d && e);
    if (a && b && c && d && e) {
        /* Key order and where a param is set do not matter; prompt and image content do. */
        CHECK_STR(t_jobs(a)[0].fingerprint, t_jobs(b)[0].fingerprint);
        CHECK(strcmp(t_jobs(a)[0].fingerprint, t_jobs(c)[0].fingerprint) != 0);
        /* logo2.png is a copy of logo.png: same content, same fingerprint. */
        CHECK_STR(t_jobs(a)[0].fingerprint, t_jobs(d)[0].fingerprint);
        CHECK(strcmp(t_jobs(a)[0].fingerprint, t_jobs(e)[0].fingerprint) != 0);
        CHECK_INT(strlen(t_jobs(a)[0].fingerprint), 64);
    }
    t_manifest_free(a);
    t_manifest_free(b);
    t_manifest_free(c);
    t_manifest_free(d);
    t_manifest_free(e);
}

static void test_refusals(void)
{
    REFUSED("version: 1\n", "m.yaml:1:1: provider is required");
    REFUSED("provider: atlascloud\nmodel: x\njobs: []\n", "version is required");
    REFUSED("version: 2\nprovider: atlascloud\nmodel: x\njobs: []\n", "m.yaml:1:10: version must be from 1 to 1");
    REFUSED("version: 1\nprovider: openai\nmodel: x\njobs: []\n", "m.yaml:2:11: provider must be atlascloud or runcomfy");
    REFUSED(HEAD "jobz: []\n", "m.yaml:4:1: unknown key jobz in the manifest");
    REFUSED(HEAD "jobs: []\n", "m.yaml:4:7: jobs must be a non-empty list");
    REFUSED(HEAD "limits:\n  concurrency: lots\njobs:\n  - {prompt: x, images: [logo.png]}\n",
            "m.yaml:5:16: limits.concurrency must be a whole number");
    REFUSED(HEAD "limits:\n  poll_interval: soon\njobs:\n  - {prompt: x, images: [logo.png]}\n",
            "m.yaml:5:18: limits.poll_interval must be a duration");
    REFUSED(HEAD "limits: [1]\njobs:\n  - {prompt: x, images: [logo.png]}\n", "limits must be a mapping");
    REFUSED(HEAD "jobs:\n  - id: a\n    images: [logo.png]\n", "m.yaml:5:5: job a: prompt is required");
    REFUSED(HEAD "jobs:\n  - id: a\n    prompt: x\n    images: logo.png\n", "m.yaml:7:13: job a: images must be a list");
    REFUSED(HEAD "jobs:\n  - id: ../../x\n    prompt: x\n    images: [logo.png]\n", "m.yaml:5:9: job ../../x: id \"../../x\" is not valid");
    REFUSED(HEAD "jobs:\n  - id: /abs\n    prompt: x\n    images: [logo.png]\n", "is not valid");
    REFUSED(HEAD "jobs:\n  - id: .hidden\n    prompt: x\n    images: [logo.png]\n", "is not valid");
    REFUSED(HEAD "jobs:\n  - {id: a, prompt: x, images: [logo.png]}\n  - {id: a, prompt: y, images: [logo.png]}\n",
            "m.yaml:6:10: job a: job id a is used twice (first at line 5)");
    REFUSED(HEAD "jobs:\n  - {prompt: x, images: [logo.png]}\n  - {prompt: x, images: [logo.png]}\n",
            "the two jobs are identical");
    REFUSED(HEAD "jobs:\n  - id: a\n    prompt: x\n    images: [logo.png]\n    params:\n      size: huge\n",
            "m.yaml:9:7: job a: size must be one of");
    REFUSED(HEAD "defaults:\n  output_format: gif\njobs:\n  - id: a\n    prompt: x\n    images: [logo.png]\n",
            "m.yaml:5:3: job a: output_format must be one of");
    REFUSED(HEAD "jobs:\n  - id: a\n    prompt: x\n    images: [logo.png,logo.png,logo.png,logo.png,logo.png,"
            "logo.png,logo.png,logo.png,logo.png,logo.png,logo.png,logo.png,logo.png,logo.png]\n"
            "    params: {max_images: 2}\n", "14 reference images + max_images 2 is over 15");
    REFUSED(HEAD "jobs:\n  - id: a\n    prompt: x\n    images: [ftp://example.com/a.png]\n",
            "m.yaml:7:14: job a: only http and https URLs are allowed");
    REFUSED(HEAD "jobs:\n  - id: a\n    prompt: x\n    images: [\"data:image/png;base64,AAAA\"]\n", "data: URIs are not supported");
    REFUSED(HEAD "jobs:\n  - id: a\n    prompt: x\n    images: [logo.png]\n    color: red\n",
            "m.yaml:8:5: job a: unknown key color in a job");
    REFUSED(HEAD "jobs:\n  - foreach: \"nothing/*.jpg\"\n    prompt: x\n    images: [\"{path}\"]\n",
            "m.yaml:5:14: foreach pattern \"nothing/*.jpg\" matches no files");
    /* ** would be read as one level by glob(3): refused rather than matching fewer files than meant. */
    REFUSED(HEAD "jobs:\n  - foreach: \"p/**/front.jpg\"\n    prompt: x\n    images: [\"{path}\"]\n",
            "m.yaml:5:14: foreach pattern \"p/**/front.jpg\": ** (any depth) is not supported");
    REFUSED(HEAD "jobs:\n  - id: a\n    prompt: [x]\n    images: [logo.png]\n", "m.yaml:6:13: job a: prompt must be a string, not a list");
    REFUSED(HEAD "jobs:\n  - {id: a, prompt: x, images: [logo.png]}\n  - {id: b, prompt: x, images: [logo.png], id: c}\n",
            "key id appears twice");
    /* Past 16 keys the repeats are found through a hash map instead of pairwise. */
    REFUSED(HEAD "model: again\nx1: 1\nx2: 1\nx3: 1\nx4: 1\nx5: 1\nx6: 1\nx7: 1\nx8: 1\nx9: 1\nx10: 1\n"
                 "x11: 1\nx12: 1\nx13: 1\njobs:\n  - {id: a, prompt: x, images: [logo.png]}\n",
            "m.yaml:4:1: key model appears twice in the manifest");
    REFUSED("version: 1\nprovider: runcomfy\nmodel: bytedance/seedream-5/lite/edit\n"
            "jobs:\n  - id: a\n    prompt: x\n    images: [logo.png]\n",
            "m.yaml:7:14: job a: local file logo.png cannot be sent: RunComfy has no upload call. Set media.upload: url_prefix");
    REFUSED(HEAD "media: {upload: none}\njobs:\n  - id: a\n    prompt: x\n    images: [logo.png]\n",
            "media.upload is none");
    REFUSED(HEAD "media: {upload: url_prefix}\njobs:\n  - {prompt: x, images: [logo.png]}\n",
            "media.url_prefix is not set");
    REFUSED(HEAD "media: {upload: url_prefix, url_prefix: \"https://c.example/\", root: p}\n"
            "jobs:\n  - {id: a, prompt: x, images: [logo.png]}\n", "is not under media.root");
    /* YAML-level attacks and limits. */
    REFUSED(HEAD "jobs: [\n", "YAML syntax error");
    REFUSED(HEAD "jobs:\n  - prompt: \"unterminated\n", "m.yaml:");
    REFUSED("---\nversion: 1\n---\nversion: 1\n", "m.yaml:3:1: only one YAML document is allowed");
    REFUSED(HEAD "x: &a [*a]\njobs: []\n", "m.yaml:4:8: alias *a is undefined or refers to a node that contains it");
    REFUSED(HEAD "x: *nope\n", "alias *nope is undefined");
    REFUSED("a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
            "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
            "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
            "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g,*g]\ni: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h,*h]\n", "alias bomb");
    size_t depth = 10000;
    char *deep = malloc(depth * 2 + 16);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    REFUSED(deep, "m.yaml:1:65: nesting deeper than 64 levels");
    free(deep);
    size_t big = 2u * 1024 * 1024;
    char *huge = malloc(big + 64);
    strcpy(huge, "version: 1\nprovider: \"");
    memset(huge + strlen(huge), 'a', big);
    strcpy(huge + strlen("version: 1\nprovider: \"") + big, "\"\n");
    REFUSED(huge, "m.yaml:2:11: a value of 2097152 bytes is over the 1048576 byte limit");
    free(huge);
    /* A value whose text runs past 32 MiB is stopped while libyaml reads it, where it began. */
    big = 33u * 1024 * 1024;
    huge = malloc(big + 64);
    strcpy(huge, "version: 1\nprovider: \"");
    memset(huge + strlen(huge), 'a', big);
    strcpy(huge + strlen("version: 1\nprovider: \"") + big, "\"\n");
    REFUSED(huge, "m.yaml:2:9: 32 MiB of text after this point hold no complete value (a value may be at most 1048576 bytes)");
    free(huge);
}

static void test_load_limits(void)
{
    char path[512], err[SB_ERRLEN];
    struct sb_manifest *m = NULL;
    snprintf(path, sizeof path, "%s/big.yaml", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && ftruncate(fd, SB_MANIFEST_MAX_BYTES + 1) == 0);
    close(fd);
    CHECK_INT(sb_manifest_load(path, &m, err, sizeof err), SB_ETOOBIG);
    CHECK_HAS(err, "over the manifest size limit of 1 GiB");
    snprintf(path, sizeof path, "%s/none.yaml", dir);
    CHECK(sb_manifest_load(path, &m, err, sizeof err) != SB_OK);
    CHECK_HAS(err, "none.yaml");
    CHECK(m == NULL);
    /* api_key_file must not be readable by group or others. */
    snprintf(path, sizeof path, "%s/k.yaml", dir);
    t_write(dir, "k.yaml", HEAD "api_key_file: key.txt\njobs:\n  - {prompt: x, images: [logo.png]}\n");
    t_write(dir, "key.txt", "secret\n");
    char keypath[512];
    snprintf(keypath, sizeof keypath, "%s/key.txt", dir);
    chmod(keypath, 0644);
    CHECK_INT(sb_manifest_load(path, &m, err, sizeof err), SB_OK);
    CHECK(sb_api_check_keyfile(m, err, sizeof err) != SB_OK);
    CHECK_HAS(err, "readable by group or others (mode 644)");
    CHECK(strstr(err, "secret") == NULL);
    chmod(keypath, 0600);
    CHECK_INT(sb_api_check_keyfile(m, err, sizeof err), SB_OK);
    t_manifest_free(m);
}

static int count_calls(const struct sb_manifest *m, const struct sb_jobspec *j, int index, void *ud)
{
    (void)m, (void)j;
    int *n = ud;
    CHECK_INT(index, *n);
    (*n)++;
    return 0;
}

/* Jobs are streamed: the keys after jobs still apply, anchors across jobs work, edits are caught. */
static void test_streaming(void)
{
    char err[SB_ERRLEN];
    /* jobs first, its configuration after it. */
    struct sb_manifest *m = parse("jobs:\n"
        "  - {id: a, prompt: one, images: [\"https://x.example/a.png\"], params: &p {seed: 7}}\n"
        "  - {id: b, prompt: two, images: [\"https://x.example/b.png\"], params: *p}\n"
        "version: 1\nprovider: atlascloud\nmodel: bytedance/seedream-v5.0-lite/edit-sequential\n"
        "defaults: {max_images: 2, output_format: png}\n", err);
    CHECK(m != NULL);
    if (!m) {
        fprintf(stderr, "error: %s\n", err);
        return;
    }
    CHECK_INT(m->n_jobs, 2);
    CHECK_INT(m->images_requested, 4);
    struct sb_jobspec *j = t_jobs(m);
    char *canon = sb_canonical_json(j[1].params);
    CHECK_STR(canon, "{\"max_images\":2,\"output_format\":\"png\",\"seed\":7}");
    free(canon);
    CHECK_STR(j[1].id, "b");
    int calls = 0;
    CHECK_INT(sb_manifest_each_job(m, count_calls, &calls, err, sizeof err), SB_OK);
    CHECK_INT(calls, 2);
    t_manifest_free(m);

    /* A file edited after it was checked is not read as if it were the same. */
    char path[512];
    snprintf(path, sizeof path, "%s/edit.yaml", dir);
    t_write(dir, "edit.yaml", HEAD "jobs:\n  - {id: a, prompt: one, images: [logo.png]}\n");
    CHECK_INT(sb_manifest_load(path, &m, err, sizeof err), SB_OK);
    t_write(dir, "edit.yaml", HEAD "jobs:\n  - {id: a, prompt: two, images: [logo.png]}\n");
    calls = 0;
    CHECK(sb_manifest_each_job(m, count_calls, &calls, err, sizeof err) != SB_OK);
    CHECK_HAS(err, "changed while it was being read");
    t_manifest_free(m);

    /* The job as the state keeps it reads back the same. */
    t_write(dir, "edit.yaml", HEAD "jobs:\n  - {id: a, prompt: one, images: [logo.png, \"https://x.example/b.png\"]}\n");
    CHECK_INT(sb_manifest_load(path, &m, err, sizeof err), SB_OK);
    j = t_jobs(m);
    char *json = sb_jobspec_json(&j[0]);
    struct sb_jobspec back;
    CHECK_INT(sb_jobspec_from_json(m, "a", json, &back), SB_OK);
    CHECK_STR(back.prompt, "one");
    CHECK_INT(back.n_images, 2);
    CHECK(back.images[0].file == j[0].images[0].file);
    CHECK_STR(back.images[1].url, "https://x.example/b.png");
    CHECK_INT(back.images_requested, j[0].images_requested);
    sb_jobspec_clear(&back);
    free(json);
    CHECK_INT(sb_jobspec_from_json(m, "a", "{\"prompt\":1}", &back), SB_EINVAL);
    t_manifest_free(m);
}

/* foreach under a manifest directory whose name holds glob characters: they match only themselves. */
static void test_foreach_in_glob_named_dir(void)
{
    char *saved = dir;
    dir = sb_asprintf("%s/Spring [2026] sale*?", saved);
    /* A sibling the unescaped pattern "Spring [2026] sale*?" would match too. */
    char *decoy = sb_asprintf("%s/Spring 2 sale-x", saved);
    t_image("jpeg", 64, 64, dir, "products/a/front.jpg");
    t_image("jpeg", 64, 64, dir, "products/b/front.jpg");
    t_image("jpeg", 64, 64, decoy, "products/c/front.jpg");
    struct sb_manifest *m = ACCEPTED(HEAD "jobs:\n  - foreach: \"products/*/front.jpg\"\n    id: \"{dir}\"\n"
                                          "    prompt: \"edit {path}\"\n    images: [\"{path}\"]\n", 2);
    if (m) {
        CHECK_STR(t_jobs(m)[0].id, "a");
        CHECK_STR(t_jobs(m)[1].id, "b");
        CHECK_STR(t_jobs(m)[0].prompt, "edit products/a/front.jpg");
        CHECK_STR(t_jobs(m)[1].images[0].spec, "products/b/front.jpg");
        CHECK(t_jobs(m)[1].invalid == NULL);
        t_manifest_free(m);
    }
    free(decoy);
    free(dir);
    dir = saved;
}

/* foreach leaves out outputs: its own output_dir's always, another run's when a wildcard reached it. */
static void test_foreach_leaves_outputs_out(void)
{
    char *saved = dir;
    dir = sb_asprintf("%s/outs", saved);
    t_image("jpeg", 64, 64, dir, "shoes/a.jpg");
    t_image("jpeg", 64, 64, dir, "plain/y.jpg");
    t_image("jpeg", 64, 64, dir, "m.out/shoes-a_1.jpg");   /* this manifest's default output_dir */
    t_image("jpeg", 64, 64, dir, "other.out/x_1.jpg");     /* another batch's, with its state */
    char *state = sb_asprintf("%s/other.out/.seedbatch", dir);
    CHECK_INT(mkdir(state, 0700), 0);
    struct sb_manifest *m = ACCEPTED(HEAD "jobs:\n  - foreach: \"*/*.jpg\"\n    id: \"{dir}-{stem}\"\n"
                                          "    prompt: p\n    images: [\"{path}\"]\n", 2);
    if (m) {
        CHECK_STR(t_jobs(m)[0].id, "plain-y");
        CHECK_STR(t_jobs(m)[1].id, "shoes-a");
        CHECK_STR(t_jobs(m)[1].images[0].spec, "shoes/a.jpg");
        t_manifest_free(m);
    }
    /* Named outright, another batch's outputs are inputs like any (a second edit of them). */
    t_manifest_free(ACCEPTED(HEAD "jobs:\n  - foreach: \"other.out/*.jpg\"\n    prompt: p\n    images: [\"{path}\"]\n", 1));
    /* Its own never are. */
    REFUSED(HEAD "jobs:\n  - foreach: \"m.out/*.jpg\"\n    prompt: p\n    images: [\"{path}\"]\n",
            "foreach pattern \"m.out/*.jpg\" matches only files in output directories (1)");
    free(state);
    free(dir);
    dir = saved;
}

/* Jobs from catalogue rows: placeholders, filters, typed params, output_name, and each refusal. */
static void test_from_rows(void)
{
    t_write(dir, "cat.csv", "\xEF\xBB\xBFsku,title,cat,photo,n,flag\r\n"
                            "A1,\"Jacket, \"\"Alpine\"\"\",Coats & Jackets,p/1/front.jpg,2,true\r\n"
                            "b 2,Bild \xC3\x9C,Wohnen,https://cdn.example.com/b.png,,false\r\n");
    struct sb_manifest *m = ACCEPTED(HEAD "output_name: \"{cat|slug}/{id}_{k}.{ext}\"\n"
                                          "jobs:\n  - from: cat.csv\n    id: \"{sku|slug}-{title|slug}\"\n"
                                          "    prompt: \"Row {row}: the {title} {{as is}}\"\n"
                                          "    images: [\"{photo}\", logo.png]\n"
                                          "    params: {max_images: \"{n}\", note: \"{n}\", deep: [\"{sku|lower}\"]}\n", 2);
    if (m) {
        struct sb_jobspec *j = t_jobs(m);
        CHECK_STR(j[0].id, "a1-jacket-alpine");
        CHECK_STR(j[0].prompt, "Row 1: the Jacket, \"Alpine\" {as is}");
        CHECK_STR(j[0].images[0].spec, "p/1/front.jpg");
        CHECK(j[0].images[0].file != NULL);
        CHECK_STR(j[1].images[0].url, "https://cdn.example.com/b.png");
        CHECK_STR(j[1].id, "b-2-bild-u");
        CHECK_STR(j[0].output_name, "coats-jackets/a1-jacket-alpine_{k}");
        CHECK_STR(j[1].output_name, "wohnen/b-2-bild-u_{k}");
        char *canon = sb_canonical_json(j[0].params);
        /* max_images is a number for the model: "2" is 2; note is any text: it stays "2". */
        CHECK_STR(canon, "{\"deep\":[\"a1\"],\"max_images\":2,\"note\":\"2\"}");
        free(canon);
        CHECK_INT(j[0].images_requested, 2);
        /* An empty value for a param that is one placeholder leaves it out. */
        canon = sb_canonical_json(j[1].params);
        CHECK_STR(canon, "{\"deep\":[\"b 2\"]}");
        free(canon);
        t_manifest_free(m);
    }
    /* JSONL: values keep their type, {a.b} reaches into objects. */
    t_write(dir, "cat.jsonl", "{\"sku\": 7, \"p\": {\"n\": 3, \"img\": \"logo.png\"}, \"b64\": false}\n");
    m = ACCEPTED(HEAD "jobs:\n  - from: cat.jsonl\n    id: \"s{sku}\"\n    prompt: \"x\"\n"
                      "    images: [\"{p.img}\"]\n    params: {max_images: \"{p.n}\", enable_base64_output: \"{b64}\"}\n", 1);
    if (m) {
        char *canon = sb_canonical_json(t_jobs(m)[0].params);
        CHECK_STR(canon, "{\"enable_base64_output\":false,\"max_images\":3}");
        free(canon);
        CHECK(t_jobs(m)[0].output_name == NULL);
        t_manifest_free(m);
    }
    /* Each refusal names the manifest's place, the data file and its line. */
    REFUSED(HEAD "jobs:\n  - from: cat.csv\n    prompt: \"the {titel}\"\n    images: [logo.png]\n",
            "m.yaml:6:13: job #1 (cat.csv:2): {titel}: no such column: did you mean title? "
            "(columns: sku, title, cat, photo, n, flag)");
    REFUSED(HEAD "jobs:\n  - from: cat.csv\n    id: \"{n}\"\n    prompt: x\n    images: [logo.png]\n",
            "m.yaml:6:9: job #2 (cat.csv:3): {n} is empty");
    t_write(dir, "bad.csv", "a,b\n1,2\n3\n4,5,6\n");
    REFUSED(HEAD "jobs:\n  - from: bad.csv\n    prompt: \"{a}\"\n    images: [logo.png]\n",
            "2 errors, the first: m.yaml:5:11: bad.csv:3: has 1 field where the header has 2");
    REFUSED(HEAD "jobs:\n  - from: nope.csv\n    prompt: x\n    images: [logo.png]\n", "m.yaml:5:11: from: ");
    REFUSED(HEAD "jobs:\n  - from: cat.xls\n    prompt: x\n    images: [logo.png]\n",
            "from: cat.xls is not a .csv, .tsv or .jsonl file");
    REFUSED(HEAD "jobs:\n  - from: cat.csv\n    foreach: \"p/*/front.jpg\"\n    prompt: x\n    images: [logo.png]\n",
            "not both");
    t_write(dir, "empty.csv", "a,b\n");
    REFUSED(HEAD "jobs:\n  - from: empty.csv\n    prompt: x\n    images: [logo.png]\n", "from: empty.csv has no rows");
    /* output_name: under output_dir whatever the values, one path per output and per job. */
    t_write(dir, "esc.csv", "sku,dir\n1,../up\n2,/abs\n3,ok/.hidden\n4,fine\n");
    REFUSED(HEAD "jobs:\n  - from: esc.csv\n    id: \"e{sku}\"\n    output_name: \"{dir}/{id}_{k}.{ext}\"\n"
                 "    prompt: x\n    images: [logo.png]\n",
            "3 errors, the first: m.yaml:7:18: job e1 (esc.csv:2): output_name gives \"../up/e1_{k}.{ext}\", which "
            "has a part starting with a dot (\"..\")");
    REFUSED(HEAD "jobs:\n  - from: esc.csv\n    id: \"e{sku}\"\n    output_name: \"{row|slug}{dir}/{k}.{ext}\"\n"
                 "    prompt: x\n    images: [logo.png]\n", "which has a part starting with a dot");
    REFUSED(HEAD "output_name: \"/tmp/{id}_{k}.{ext}\"\njobs:\n  - prompt: x\n    images: [logo.png]\n",
            "which is an absolute path");
    t_write(dir, "nl.csv", "sku,cat\n1,\"two\nlines\"\n");
    REFUSED(HEAD "jobs:\n  - from: nl.csv\n    id: \"n{sku}\"\n    output_name: \"{cat}/{id}_{k}.{ext}\"\n"
                 "    prompt: x\n    images: [logo.png]\n", "which holds a control character (a line break?)");
    REFUSED(HEAD "output_name: \"{id}_{k}.png\"\njobs:\n  - prompt: x\n    images: [logo.png]\n",
            "must end in .{ext}");
    REFUSED(HEAD "output_name: \"{nope}/{id}_{k}.{ext}\"\njobs:\n  - prompt: x\n    images: [logo.png]\n",
            "{nope}: no such name");
    REFUSED(HEAD "output_name: \"{id}.{ext}\"\njobs:\n  - id: two\n    prompt: x\n    images: [logo.png]\n"
                 "    params: {max_images: 2}\n",
            "has no {k}, but the job asks for 2 images");
    t_manifest_free(ACCEPTED(HEAD "output_name: \"{id}.{ext}\"\njobs:\n  - id: one\n    prompt: x\n"
                                  "    images: [logo.png]\n    params: {max_images: 1}\n", 1));
    REFUSED(HEAD "jobs:\n  - from: cat.csv\n    output_name: \"all/{k}.{ext}\"\n    prompt: x\n    images: [logo.png]\n",
            "output_name gives job ");
    REFUSED(HEAD "jobs:\n  - from: cat.csv\n    output_name: \"all/{k}.{ext}\"\n    prompt: x\n    images: [logo.png]\n",
            "the output paths \"all/{k}.{ext}\" of an earlier job (line 5), row in cat.csv");
    /* A folder under output_dir that is a link is not written through. */
    char *out = sb_asprintf("%s/linked.out", dir), *link = sb_asprintf("%s/linked.out/shoes", dir);
    CHECK_INT(mkdir(out, 0755), 0);
    CHECK_INT(symlink("/tmp", link), 0);
    REFUSED(HEAD "output_dir: linked.out\noutput_name: \"shoes/{id}_{k}.{ext}\"\njobs:\n  - prompt: x\n"
                 "    images: [logo.png]\n", "which exists and is not a folder (a link is not followed)");
    free(out);
    free(link);
    /* An edited row changes that job's fingerprint alone. */
    m = ACCEPTED(HEAD "jobs:\n  - from: cat.csv\n    id: \"{sku|slug}\"\n    prompt: \"{title}\"\n"
                      "    images: [logo.png]\n", 2);
    char fp0[65] = "", fp1[65] = "";
    if (m) {
        memcpy(fp0, t_jobs(m)[0].fingerprint, 65);
        memcpy(fp1, t_jobs(m)[1].fingerprint, 65);
        t_manifest_free(m);
    }
    t_write(dir, "cat.csv", "sku,title,cat,photo,n,flag\n"
                            "A1,\"Jacket, \"\"Alpine\"\"\",Coats & Jackets,p/1/front.jpg,2,true\n"
                            "b 2,Bild \xC3\x9C (new),Wohnen,https://cdn.example.com/b.png,,false\n");
    m = ACCEPTED(HEAD "jobs:\n  - from: cat.csv\n    id: \"{sku|slug}\"\n    prompt: \"{title}\"\n"
                      "    images: [logo.png]\n", 2);
    if (m) {
        CHECK_STR(t_jobs(m)[0].fingerprint, fp0);
        CHECK(strcmp(t_jobs(m)[1].fingerprint, fp1) != 0);
        t_manifest_free(m);
    }
}

int main(void)
{
    sb_log_setup(SB_LOG_TEXT, SB_LOG_ERROR + 1); /* the errors are asserted, not printed */
    dir = t_tmpdir();
    t_image("jpeg", 64, 64, dir, "p/1/front.jpg");
    t_image("jpeg", 80, 64, dir, "p/2/front.jpg");
    t_image("jpeg", 80, 64, dir, "p/sp ace/a&b.jpg");
    t_image("png", 32, 32, dir, "logo.png");
    t_image("png", 32, 32, dir, "logo2.png");
    t_image("png", 10, 100, dir, "tiny.png");
    test_full();
    test_defaults_and_media();
    test_fingerprints();
    test_refusals();
    test_load_limits();
    test_streaming();
    test_foreach_in_glob_named_dir();
    test_foreach_leaves_outputs_out();
    test_from_rows();
    CHECK_INT(t_rmdir(dir), 0);
    return t_done("manifest");
}
