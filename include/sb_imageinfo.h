/*
 * Image header sniffing: format by content and pixel dimensions, without
 * decoding pixels. Used to check reference images before anything is sent
 * and to name downloaded outputs by what their bytes are.
 */
#ifndef SB_IMAGEINFO_H
#define SB_IMAGEINFO_H

#include <stddef.h>

/* The values are kept in the state database (its files table): add at the end only. */
enum sb_image_format {
    SB_IMG_UNKNOWN = 0,
    SB_IMG_JPEG,
    SB_IMG_PNG,
    SB_IMG_WEBP,
    SB_IMG_BMP,
    SB_IMG_TIFF,
    SB_IMG_GIF
};

struct sb_imageinfo {
    enum sb_image_format format;
    int width;   /* 0 when the header could not be read */
    int height;
};

/* Format from magic bytes alone (needs the first 12 bytes). */
enum sb_image_format sb_image_sniff(const unsigned char *buf, size_t len);
/* Format and dimensions; returns 0, or SB_EINVAL when the data is no supported image. */
int sb_image_probe(const unsigned char *buf, size_t len, struct sb_imageinfo *out);
/* "jpeg", "png", ... */
const char *sb_image_format_name(enum sb_image_format f);
/* File extension for outputs: "jpg", "png", "webp", ... */
const char *sb_image_format_ext(enum sb_image_format f);
/*
 * Whether a whole file of this format ends where the format says it does: PNG
 * with its IEND chunk, JPEG with its EOI marker (trailing zero padding allowed),
 * WebP at its RIFF length. head holds its first bytes, tail its last 16 (the
 * tail of a shorter file right-aligned). A body cut off on a connection that
 * gave no length ends cleanly and must not become an output. NULL when whole,
 * else why not.
 */
const char *sb_image_cut_short(enum sb_image_format f, const unsigned char *head, size_t headlen,
                               const unsigned char tail[16], size_t total);

#endif
