/*
 * gen_image writes a real image file of a given format and size, with
 * packaged encoders (stb_image_write, libwebp, libtiff) and a minimal GIF
 * writer. Tests use it to make reference images of every supported format.
 *
 *   gen_image FORMAT WIDTH HEIGHT OUT [SEED]   FORMAT: jpeg png webp bmp tiff gif
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>
#include <tiffio.h>
#include <webp/encode.h>

static void write_cb(void *ctx, void *data, int size)
{
    fwrite(data, 1, (size_t)size, (FILE *)ctx);
}

/* A GIF of one colour whose LZW stream restarts every two codes, so codes stay 3 bits wide. */
static int write_gif(FILE *f, int w, int h)
{
    unsigned char hdr[13] = {'G', 'I', 'F', '8', '9', 'a', (unsigned char)(w & 255), (unsigned char)(w >> 8),
                             (unsigned char)(h & 255), (unsigned char)(h >> 8), 0x80, 0, 0};
    fwrite(hdr, 1, sizeof hdr, f);
    unsigned char pal[6] = {200, 40, 40, 255, 255, 255};
    fwrite(pal, 1, sizeof pal, f);
    unsigned char desc[10] = {0x2C, 0, 0, 0, 0, (unsigned char)(w & 255), (unsigned char)(w >> 8),
                              (unsigned char)(h & 255), (unsigned char)(h >> 8), 0};
    fwrite(desc, 1, sizeof desc, f);
    fputc(2, f); /* minimum code size: clear = 4, end = 5 */
    long npix = (long)w * h;
    size_t cap = (size_t)(npix * 3 / 2 * 3 / 8 + 64), nbytes = 0;
    unsigned char *bits = calloc(cap, 1);
    unsigned long acc = 0;
    int nacc = 0;
#define EMIT(code) do { acc |= (unsigned long)(code) << nacc; nacc += 3; \
        while (nacc >= 8) { bits[nbytes++] = (unsigned char)(acc & 255); acc >>= 8; nacc -= 8; } } while (0)
    for (long i = 0; i < npix; i++) {
        if (i % 2 == 0)
            EMIT(4);
        EMIT(0);
    }
    EMIT(5);
    if (nacc)
        bits[nbytes++] = (unsigned char)(acc & 255);
    for (size_t off = 0; off < nbytes; off += 255) {
        size_t n = nbytes - off < 255 ? nbytes - off : 255;
        fputc((int)n, f);
        fwrite(bits + off, 1, n, f);
    }
    fputc(0, f);
    fputc(0x3B, f);
    free(bits);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: gen_image FORMAT WIDTH HEIGHT OUT [SEED]\n");
        return 2;
    }
    const char *fmt = argv[1], *out = argv[4];
    int w = atoi(argv[2]), h = atoi(argv[3]);
    unsigned seed = argc > 5 ? (unsigned)strtoul(argv[5], NULL, 10) : 1;
    if (w <= 0 || h <= 0 || w > 20000 || h > 20000)
        return 2;
    unsigned char *px = malloc((size_t)w * h * 3);
    for (long i = 0; i < (long)w * h; i++) {
        px[3 * i] = (unsigned char)((i % w) * 255 / w);
        px[3 * i + 1] = (unsigned char)((i / w) * 255 / h);
        px[3 * i + 2] = (unsigned char)(seed * 37);
    }
    int rc = 0;
    if (strcmp(fmt, "tiff") == 0) {
        TIFF *t = TIFFOpen(out, "w");
        if (!t)
            return 1;
        TIFFSetField(t, TIFFTAG_IMAGEWIDTH, w);
        TIFFSetField(t, TIFFTAG_IMAGELENGTH, h);
        TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
        TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
        TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
        TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
        TIFFSetField(t, TIFFTAG_ROWSPERSTRIP, h);
        for (int y = 0; y < h && rc == 0; y++)
            rc = TIFFWriteScanline(t, px + (size_t)y * w * 3, (uint32_t)y, 0) < 0;
        TIFFClose(t);
        free(px);
        return rc;
    }
    FILE *f = fopen(out, "wb");
    if (!f)
        return 1;
    if (strcmp(fmt, "png") == 0) {
        rc = !stbi_write_png_to_func(write_cb, f, w, h, 3, px, w * 3);
    } else if (strcmp(fmt, "jpeg") == 0) {
        rc = !stbi_write_jpg_to_func(write_cb, f, w, h, 3, px, 80);
    } else if (strcmp(fmt, "bmp") == 0) {
        rc = !stbi_write_bmp_to_func(write_cb, f, w, h, 3, px);
    } else if (strcmp(fmt, "webp") == 0) {
        uint8_t *o = NULL;
        size_t n = WebPEncodeRGB(px, w, h, w * 3, 80, &o);
        rc = n == 0 || fwrite(o, 1, n, f) != n;
        WebPFree(o);
    } else if (strcmp(fmt, "gif") == 0) {
        rc = write_gif(f, w, h);
    } else {
        rc = 2;
    }
    if (fclose(f) != 0)
        rc = 1;
    free(px);
    return rc;
}
