/* checks: model params per API.md, URL schemes, and local image limits. */
#include "sb_checks.h"
#include "sb_common.h"
#include "t.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int n_err, n_warn;
static char last_key[64], last_msg[512];

static void rep(void *ud, int is_error, const char *key, const char *msg)
{
    (void)ud;
    if (is_error)
        n_err++;
    else
        n_warn++;
    snprintf(last_key, sizeof last_key, "%s", key ? key : "");
    snprintf(last_msg, sizeof last_msg, "%s", msg);
}

/* Runs a check on params given as JSON; returns the error count. */
static int run(enum sb_provider p, const char *model, const char *json, int n_images, int *req)
{
    cJSON *params = cJSON_Parse(json);
    n_err = n_warn = 0;
    last_key[0] = last_msg[0] = '\0';
    int dummy;
    int e = sb_check_job_params(p, model, "a prompt", params, n_images, req ? req : &dummy, rep, NULL);
    cJSON_Delete(params);
    return e;
}

#define SEQ "bytedance/seedream-v5.0-lite/edit-sequential"
#define EDIT "bytedance/seedream-v5.0-lite/edit"
#define RC "bytedance/seedream-5/lite/edit"

#define FAKE_SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

struct fake_lookup {
    int answer, calls;
    struct sb_imageinfo info;
    struct sb_filestamp seen;
};

static int fake_lookup(void *ud, const struct sb_filestamp *s, char sha256[65], struct sb_imageinfo *info)
{
    struct fake_lookup *fl = ud;
    fl->calls++;
    fl->seen = *s;
    if (!fl->answer)
        return 0;
    memcpy(sha256, FAKE_SHA, 65);
    *info = fl->info;
    return 1;
}

int main(void)
{
    int req = 0;
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"size\":\"2048*2048\",\"max_images\":3,\"output_format\":\"png\","
              "\"optimize_prompt_options\":{\"mode\":\"fast\"}}", 2, &req), 0);
    CHECK_INT(req, 3);
    CHECK_INT(n_warn, 0);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"size\":\"2048x2048\"}", 1, NULL), 1);
    CHECK_STR(last_key, "size");
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"max_images\":16}", 1, NULL), 1);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"max_images\":2.5}", 1, NULL), 1);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"max_images\":\"3\"}", 1, NULL), 1);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"max_images\":2}", 14, NULL), 1); /* 14 + 2 > 15 */
    CHECK_HAS(last_msg, "over 15");
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"max_images\":1}", 14, NULL), 0); /* exactly 15 */
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"output_format\":\"webp\"}", 1, NULL), 1);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"optimize_prompt_options\":\"fast\"}", 1, NULL), 1);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"seed\":42,\"watermark\":false}", 1, NULL), 0);
    CHECK_INT(n_warn, 2);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{}", 0, NULL), 1);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{}", 15, NULL), 2); /* too many images, and 15 + 1 > 15 */
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"prompt\":\"x\"}", 1, NULL), 1);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"images\":[]}", 1, NULL), 1);
    /* Atlas /edit: one image, one output, max_images unknown to it. */
    CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, "{\"size\":\"3072*3072\"}", 1, &req), 0);
    CHECK_INT(req, 1);
    CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, "{}", 2, NULL), 1);
    /* ... and any size W*H, each side 1024 to 4096 in steps of 64. */
    CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, "{\"size\":\"1024*4096\"}", 1, NULL), 0);
    CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, "{\"size\":\"2048*1536\"}", 1, NULL), 0);
    CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, "{\"size\":\"1088*1088\"}", 1, NULL), 0);
    const char *bad_sizes[] = {"960*1024", "4160*2048", "2050*2048", "2048x2048", "2048*", "*2048", " 2048*2048",
                               "2048* 2048", "2048*2048 ", "+2048*2048", "", "2048*2048*2048"};
    for (size_t i = 0; i < sizeof bad_sizes / sizeof *bad_sizes; i++) {
        char json[96];
        snprintf(json, sizeof json, "{\"size\":\"%s\"}", bad_sizes[i]);
        CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, json, 1, NULL), 1);
        CHECK_STR(last_key, "size");
    }
    CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, "{\"size\":2048}", 1, NULL), 1);
    /* edit-sequential keeps its presets. */
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"size\":\"2048*1536\"}", 1, NULL), 1);
    /* Base64 outputs and sync mode defeat a polling runner: refused for any Atlas model; false is fine. */
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"enable_base64_output\":true}", 1, NULL), 1);
    CHECK_STR(last_key, "enable_base64_output");
    CHECK_HAS(last_msg, "base64 text");
    CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, "{\"enable_sync_mode\":true}", 1, NULL), 1);
    CHECK_STR(last_key, "enable_sync_mode");
    CHECK_HAS(last_msg, "no prediction id");
    CHECK_INT(run(SB_PROVIDER_ATLAS, "vendor/other", "{\"enable_sync_mode\":true,\"enable_base64_output\":true}", 1, NULL), 2);
    CHECK_INT(run(SB_PROVIDER_ATLAS, SEQ, "{\"enable_sync_mode\":false,\"enable_base64_output\":false}", 1, NULL), 0);
    CHECK_INT(n_warn, 0);
    CHECK_INT(run(SB_PROVIDER_ATLAS, EDIT, "{\"max_images\":3}", 1, NULL), 0);
    CHECK_INT(n_warn, 1);
    /* RunComfy */
    CHECK_INT(run(SB_PROVIDER_RUNCOMFY, RC, "{\"resolution\":\"2K\",\"sequential_image_generation\":\"auto\","
              "\"max_images\":4,\"output_format\":\"jpeg\",\"optimize_prompt_options\":\"standard\"}", 3, &req), 0);
    CHECK_INT(req, 4);
    CHECK_INT(run(SB_PROVIDER_RUNCOMFY, RC, "{\"resolution\":\"2048x2048 (1:1)\"}", 1, &req), 0);
    CHECK_INT(req, 1);
    CHECK_INT(run(SB_PROVIDER_RUNCOMFY, RC, "{\"resolution\":\"4K\"}", 1, NULL), 1);
    /* max_images without auto is ignored by the API: a warning, one image budgeted. */
    CHECK_INT(run(SB_PROVIDER_RUNCOMFY, RC, "{\"max_images\":3}", 1, &req), 0);
    CHECK_INT(n_warn, 1);
    CHECK_STR(last_key, "max_images");
    CHECK_HAS(last_msg, "sequential_image_generation: auto");
    CHECK_INT(req, 1);
    CHECK_INT(run(SB_PROVIDER_RUNCOMFY, RC, "{\"sequential_image_generation\":\"disabled\",\"max_images\":3}", 1, &req), 0);
    CHECK_INT(n_warn, 1);
    CHECK_INT(req, 1);
    /* auto with no max_images lets the API make up to 15: budgeted as 15. */
    CHECK_INT(run(SB_PROVIDER_RUNCOMFY, RC, "{\"sequential_image_generation\":\"auto\"}", 1, &req), 0);
    CHECK_INT(req, 15);
    CHECK_INT(n_warn, 0);
    CHECK_INT(run(SB_PROVIDER_RUNCOMFY, RC, "{\"optimize_prompt_options\":{\"mode\":\"fast\"}}", 1, NULL), 1);
    /* Unknown model: params not checked. */
    CHECK_INT(run(SB_PROVIDER_ATLAS, "vendor/other", "{\"size\":\"any\"}", 1, NULL), 0);
    struct sb_model_info mi;
    sb_model_lookup(SB_PROVIDER_ATLAS, SEQ, &mi);
    CHECK_STR(mi.images_field, "images");
    CHECK(mi.known && !mi.images_as_string && mi.default_price == 0.032);
    sb_model_lookup(SB_PROVIDER_ATLAS, EDIT, &mi);
    CHECK_STR(mi.images_field, "image");
    CHECK(mi.images_as_string);
    sb_model_lookup(SB_PROVIDER_RUNCOMFY, RC, &mi);
    CHECK(mi.known && mi.default_price == 0.028);

    char why[SB_ERRLEN];
    CHECK_INT(sb_check_url("https://cdn.example.com/a.png", why, sizeof why), SB_OK);
    CHECK_INT(sb_check_url("http://127.0.0.1:8080/a.png", why, sizeof why), SB_OK);
    CHECK(sb_check_url("ftp://example.com/a.png", why, sizeof why) != SB_OK);
    CHECK_HAS(why, "only http and https");
    CHECK(sb_check_url("file:///etc/passwd", why, sizeof why) != SB_OK);
    CHECK(sb_check_url("https://", why, sizeof why) != SB_OK);
    /* After a valid URL, others on its origin are checked without libcurl: what libcurl
       would refuse is still refused. */
    CHECK_INT(sb_check_url("https://cdn.example.com/b/c-1_2.png", why, sizeof why), SB_OK);
    CHECK_INT(sb_url_plain_origin("https://cdn.example.com/b/c-1_2.png"), 23);
    CHECK_INT(sb_url_plain_origin("https://cdn.example.com/b/../c.png"), 0);
    CHECK_INT(sb_url_plain_origin("https://cdn.example.com/c.png?x=1"), 0);
    CHECK_INT(sb_url_plain_origin("https://cdn.example.com"), 0);
    CHECK_INT(sb_url_plain_origin("ftp://cdn.example.com/a"), 0);
    CHECK(sb_check_url("https://cdn.example.com:99999/a.png", why, sizeof why) != SB_OK);
    CHECK(sb_check_url("https://cdn.example.com/a b.png", why, sizeof why) != SB_OK);
    CHECK(sb_check_url("https://cdn.exa mple.com/a.png", why, sizeof why) != SB_OK);
    CHECK_INT(sb_check_url("https://cdn.example.com/c.png", why, sizeof why), SB_OK);

    char *dir = t_tmpdir();
    char path[512];
    t_image("png", 64, 48, dir, "ok.png");
    t_image("png", 14, 100, dir, "thin.png");
    t_image("png", 300, 16, dir, "wide.png");
    t_image("png", 256, 16, dir, "edge.png");
    t_write(dir, "text.jpg", "not an image\n");
    t_write(dir, "damaged.png", "\x89PNG\r\n\x1a\nxx");
    snprintf(path, sizeof path, "%s/ok.png", dir);
    struct fake_lookup fl;
    memset(&fl, 0, sizeof fl);
    struct sb_localfile *f = sb_localfile_load(path, NULL, NULL);
    CHECK(f->problem == NULL);
    CHECK_INT(strlen(f->sha256), 64);
    CHECK_INT(f->info.width, 64);
    sb_localfile_free(f);
    static const struct { const char *name, *want; } bad[] = {
        {"thin.png", "must be over 14"}, {"wide.png", "aspect ratio"}, {"text.jpg", "not an image"},
        {"damaged.png", "damaged"}, {"missing.png", "cannot read"}};
    for (size_t i = 0; i < SB_ARRAY_LEN(bad); i++) {
        snprintf(path, sizeof path, "%s/%s", dir, bad[i].name);
        f = sb_localfile_load(path, NULL, NULL);
        CHECK_HAS(f->problem, bad[i].want);
        sb_localfile_free(f);
    }
    snprintf(path, sizeof path, "%s/edge.png", dir);
    f = sb_localfile_load(path, NULL, NULL);
    CHECK(f->problem == NULL); /* 16:1 exactly is allowed */
    sb_localfile_free(f);
    /* 10 MiB or more is refused before reading it. */
    snprintf(path, sizeof path, "%s/big.png", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0 && ftruncate(fd, SB_MAX_IMAGE_BYTES) == 0);
    close(fd);
    f = sb_localfile_load(path, fake_lookup, &fl);
    CHECK_HAS(f->problem, "must be under");
    CHECK_INT(fl.calls, 0); /* refused before any lookup */
    sb_localfile_free(f);

    /* A file whose stamp is known is not read: its hash and header come from the record. */
    snprintf(path, sizeof path, "%s/ok.png", dir);
    struct stat st;
    CHECK(stat(path, &st) == 0);
    fl.answer = 1;
    fl.info = (struct sb_imageinfo){SB_IMG_PNG, 64, 48};
    f = sb_localfile_load(path, fake_lookup, &fl);
    CHECK_INT(fl.calls, 1);
    CHECK_INT(fl.seen.ino, (long long)st.st_ino);
    CHECK_INT(fl.seen.size, (long long)st.st_size);
    CHECK_INT(fl.seen.mtime_ns, (long long)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec);
    CHECK_INT(fl.seen.ctime_ns, (long long)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec);
    CHECK(f->known && !f->to_remember && f->problem == NULL);
    CHECK_STR(f->sha256, FAKE_SHA);
    CHECK_INT(f->info.width, 64);
    CHECK_INT((long long)f->size, (long long)st.st_size);
    sb_localfile_free(f);
    /* ... and checked as if read. */
    fl.info = (struct sb_imageinfo){SB_IMG_PNG, 10, 10};
    f = sb_localfile_load(path, fake_lookup, &fl);
    CHECK(f->known);
    CHECK_HAS(f->problem, "10x10 pixels; width and height must be over 14");
    sb_localfile_free(f);
    /* Not known: read and hashed; written moments ago, so not worth recording yet. */
    fl.answer = 0;
    f = sb_localfile_load(path, fake_lookup, &fl);
    CHECK(!f->known && !f->to_remember && f->problem == NULL);
    CHECK(strcmp(f->sha256, FAKE_SHA) != 0 && strlen(f->sha256) == 64);
    CHECK_INT(f->info.width, 64);
    sb_localfile_free(f);
    /* Written more than 3 s before it was read: recorded. ctime cannot be set back, so
     * this waits. */
    sleep(4);
    f = sb_localfile_load(path, fake_lookup, &fl);
    CHECK(!f->known && f->to_remember && f->problem == NULL);
    sb_localfile_free(f);
    snprintf(path, sizeof path, "%s/thin.png", dir);
    f = sb_localfile_load(path, fake_lookup, &fl);
    CHECK(!f->known && !f->to_remember && f->problem != NULL); /* never one with a problem */
    sb_localfile_free(f);
    CHECK_INT(t_rmdir(dir), 0);
    return t_done("checks");
}
