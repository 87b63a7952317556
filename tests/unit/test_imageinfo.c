/* imageinfo: each supported format is recognised with its dimensions; damaged data is refused. */
#include "sb_imageinfo.h"
#include "sb_common.h"
#include "t.h"

static void probe_file(const char *dir, const char *name, struct sb_imageinfo *info, int *rc)
{
    char path[512], err[SB_ERRLEN], *data = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (sb_read_file(path, 1 << 24, &data, &len, err, sizeof err) != SB_OK) {
        *rc = -100;
        return;
    }
    *rc = sb_image_probe((unsigned char *)data, len, info);
    free(data);
}

int main(void)
{
    char *dir = t_tmpdir();
    static const struct { const char *fmt, *name; enum sb_image_format f; const char *ext; } cases[] = {
        {"jpeg", "a.jpg", SB_IMG_JPEG, "jpg"}, {"png", "a.png", SB_IMG_PNG, "png"},
        {"webp", "a.webp", SB_IMG_WEBP, "webp"}, {"bmp", "a.bmp", SB_IMG_BMP, "bmp"},
        {"tiff", "a.tif", SB_IMG_TIFF, "tif"}, {"gif", "a.gif", SB_IMG_GIF, "gif"}};
    for (size_t i = 0; i < SB_ARRAY_LEN(cases); i++) {
        struct sb_imageinfo info;
        int rc;
        t_image(cases[i].fmt, 123, 45, dir, cases[i].name);
        probe_file(dir, cases[i].name, &info, &rc);
        CHECK_INT(rc, SB_OK);
        CHECK_INT(info.format, cases[i].f);
        CHECK_INT(info.width, 123);
        CHECK_INT(info.height, 45);
        CHECK_STR(sb_image_format_ext(info.format), cases[i].ext);
    }
    struct sb_imageinfo info;
    /* Magic bytes alone are not enough: the header must be readable. */
    const unsigned char png_sig_only[] = "\x89PNG\r\n\x1a\nGARBAGEGARBAGE";
    CHECK_INT(sb_image_probe(png_sig_only, sizeof png_sig_only - 1, &info), SB_EINVAL);
    CHECK_INT(info.format, SB_IMG_PNG);
    const unsigned char text[] = "hello, this is not an image";
    CHECK_INT(sb_image_probe(text, sizeof text - 1, &info), SB_EINVAL);
    CHECK_INT(info.format, SB_IMG_UNKNOWN);
    CHECK_INT(sb_image_probe((const unsigned char *)"", 0, &info), SB_EINVAL);
    const unsigned char tiff_bad[] = "II*\0\xff\xff\xff\x7f";
    CHECK_INT(sb_image_probe(tiff_bad, 8, &info), SB_EINVAL);
    const unsigned char webp_bad[] = "RIFF\x10\0\0\0WEBPVP8 ";
    CHECK_INT(sb_image_probe(webp_bad, 16, &info), SB_EINVAL);
    const unsigned char jpeg_bad[] = "\xff\xd8\xff\xe0\0\x10JFIF";
    CHECK_INT(sb_image_probe(jpeg_bad, 10, &info), SB_EINVAL);
    /* Truncating a real file at every length never crashes and never reports a size it cannot read. */
    char path[512], err[SB_ERRLEN], *data;
    size_t len;
    snprintf(path, sizeof path, "%s/a.png", dir);
    CHECK_INT(sb_read_file(path, 1 << 20, &data, &len, err, sizeof err), SB_OK);
    for (size_t n = 0; n < 40 && n < len; n++)
        CHECK(sb_image_probe((unsigned char *)data, n, &info) == SB_EINVAL || info.width == 123);
    free(data);
    /* A whole PNG, JPEG and WebP end where their format says; every shorter cut does not. */
    const char *whole[] = {"a.png", "a.jpg", "a.webp"};
    enum sb_image_format wf[] = {SB_IMG_PNG, SB_IMG_JPEG, SB_IMG_WEBP};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, whole[i]);
        CHECK_INT(sb_read_file(path, 1 << 20, &data, &len, err, sizeof err), SB_OK);
        int cut_ok = 1;
        for (size_t n = len; n + 64 > len && n > 16; n--) {
            unsigned char tail[16];
            memcpy(tail, data + n - 16, 16);
            const char *why = sb_image_cut_short(wf[i], (unsigned char *)data, 16, tail, n);
            if (n == len)
                CHECK(why == NULL);
            else
                cut_ok &= why != NULL;
        }
        CHECK(cut_ok);
        free(data);
    }
    /* JPEG: zero padding after EOI is fine; a short file (its tail right-aligned) is judged on what it has. */
    unsigned char jt[16] = {0};
    jt[13] = 0xFF, jt[14] = 0xD9, jt[15] = 0;
    CHECK(sb_image_cut_short(SB_IMG_JPEG, jt, 16, jt, 400) == NULL);
    CHECK(sb_image_cut_short(SB_IMG_JPEG, jt, 16, jt, 1) != NULL);
    CHECK(sb_image_cut_short(SB_IMG_GIF, jt, 16, jt, 400) == NULL); /* not an output format: not judged */
    CHECK_INT(t_rmdir(dir), 0);
    return t_done("imageinfo");
}
