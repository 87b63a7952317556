/*
 * imageinfo.c reads image headers with packaged libraries: stb_image for
 * JPEG, PNG, BMP and GIF (stbi_info reads headers only), libwebp's
 * WebPGetInfo for WEBP, and libtiff over an in-memory client for TIFF.
 */
#include "sb_imageinfo.h"
#include "sb_common.h"

#include <stdarg.h>
#include <string.h>

#include <stb_image.h>
#include <tiffio.h>
#include <webp/decode.h>

enum sb_image_format sb_image_sniff(const unsigned char *b, size_t n)
{
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
        return SB_IMG_JPEG;
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return SB_IMG_PNG;
    if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return SB_IMG_WEBP;
    if (n >= 2 && b[0] == 'B' && b[1] == 'M')
        return SB_IMG_BMP;
    if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
        return SB_IMG_TIFF;
    if (n >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return SB_IMG_GIF;
    return SB_IMG_UNKNOWN;
}

const char *sb_image_format_name(enum sb_image_format f)
{
    static const char *names[] = {"unknown", "jpeg", "png", "webp", "bmp", "tiff", "gif"};
    return names[f];
}

const char *sb_image_format_ext(enum sb_image_format f)
{
    static const char *exts[] = {"bin", "jpg", "png", "webp", "bmp", "tif", "gif"};
    return exts[f];
}

/* In-memory TIFF client: libtiff reads through these instead of a file. */
struct memtiff {
    const unsigned char *p;
    toff_t len, pos;
};

static tmsize_t mt_read(thandle_t h, void *buf, tmsize_t n)
{
    struct memtiff *m = h;
    if (n < 0 || m->pos >= m->len)
        return 0;
    toff_t left = m->len - m->pos;
    if ((toff_t)n > left)
        n = (tmsize_t)left;
    memcpy(buf, m->p + m->pos, (size_t)n);
    m->pos += (toff_t)n;
    return n;
}

static tmsize_t mt_write(thandle_t h, void *buf, tmsize_t n)
{
    (void)h, (void)buf, (void)n;
    return -1;
}

static toff_t mt_seek(thandle_t h, toff_t off, int whence)
{
    struct memtiff *m = h;
    toff_t base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? m->pos : m->len;
    m->pos = base + off;
    return m->pos;
}

static int mt_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t mt_size(thandle_t h)
{
    return ((struct memtiff *)h)->len;
}

static int mt_map(thandle_t h, void **base, toff_t *size)
{
    (void)h, (void)base, (void)size;
    return 0;
}

static void mt_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h, (void)base, (void)size;
}

/* libtiff prints warnings and errors to stderr by default; these stay silent. */
static void tiff_quiet(const char *module, const char *fmt, va_list ap)
{
    (void)module, (void)fmt, (void)ap;
}

static int tiff_info(const unsigned char *buf, size_t len, int *w, int *h)
{
    TIFFSetErrorHandler(tiff_quiet);
    TIFFSetWarningHandler(tiff_quiet);
    struct memtiff m = {buf, (toff_t)len, 0};
    TIFF *t = TIFFClientOpen("image", "rm", &m, mt_read, mt_write, mt_seek, mt_close,
                             mt_size, mt_map, mt_unmap);
    if (!t)
        return SB_EINVAL;
    uint32_t tw = 0, th = 0;
    int ok = TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &tw) && TIFFGetField(t, TIFFTAG_IMAGELENGTH, &th);
    TIFFClose(t);
    if (!ok || tw > 1000000 || th > 1000000)
        return SB_EINVAL;
    *w = (int)tw;
    *h = (int)th;
    return SB_OK;
}

int sb_image_probe(const unsigned char *buf, size_t len, struct sb_imageinfo *out)
{
    memset(out, 0, sizeof *out);
    out->format = sb_image_sniff(buf, len);
    int w = 0, h = 0, comp = 0;
    switch (out->format) {
    case SB_IMG_UNKNOWN:
        return SB_EINVAL;
    case SB_IMG_WEBP:
        if (!WebPGetInfo(buf, len, &w, &h))
            return SB_EINVAL;
        break;
    case SB_IMG_TIFF:
        if (tiff_info(buf, len, &w, &h) != SB_OK)
            return SB_EINVAL;
        break;
    default:
        if (len > 0x7fffffff || !stbi_info_from_memory(buf, (int)len, &w, &h, &comp))
            return SB_EINVAL;
        break;
    }
    if (w <= 0 || h <= 0)
        return SB_EINVAL;
    out->width = w;
    out->height = h;
    return SB_OK;
}

const char *sb_image_cut_short(enum sb_image_format f, const unsigned char *head, size_t headlen,
                               const unsigned char tail[16], size_t total)
{
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
    size_t n = total < 16 ? total : 16;
    const unsigned char *end = tail + 16; /* one past the last byte */
    if (f == SB_IMG_PNG)
        return n >= sizeof iend && memcmp(end - sizeof iend, iend, sizeof iend) == 0 ? NULL
               : "the PNG ends before its IEND chunk";
    if (f == SB_IMG_JPEG) {
        while (n && end[-1] == 0)
            end--, n--;
        return n >= 2 && end[-2] == 0xFF && end[-1] == 0xD9 ? NULL : "the JPEG ends before its EOI marker";
    }
    if (f == SB_IMG_WEBP) {
        if (headlen < 8)
            return "the WebP ends before its RIFF length";
        size_t riff = (size_t)head[4] | (size_t)head[5] << 8 | (size_t)head[6] << 16 | (size_t)head[7] << 24;
        /* RIFF pads an odd length with one byte, which some writers leave out of the count. */
        return total == riff + 8 || total == riff + 9 ? NULL : "the WebP is shorter or longer than its RIFF length";
    }
    return NULL;
}
