/*
 * mockimg.c makes the output images the mock server serves: a 64x64 image
 * whose colours derive from the prediction id and output index, encoded by
 * stb_image_write. The same inputs always give the same bytes, so tests can
 * fetch an output again and compare it with what the runner wrote.
 */
#include "mockimg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <stb_image_write.h>

#define SIDE 64

struct membuf {
    unsigned char *p;
    size_t len, cap;
};

static void put(void *ctx, void *data, int size)
{
    struct membuf *b = ctx;
    if (b->len + (size_t)size > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)size)
            cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q)
            return;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

unsigned char *mockimg_make(const char *seed, int k, const char *format, size_t *len)
{
    uint32_t h = 2166136261u;
    for (const char *s = seed; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    h = (h ^ (uint32_t)k) * 16777619u;
    unsigned char px[SIDE * SIDE * 3];
    for (int y = 0; y < SIDE; y++) {
        for (int x = 0; x < SIDE; x++) {
            unsigned char *p = px + 3 * (y * SIDE + x);
            p[0] = (unsigned char)(h >> 0) ^ (unsigned char)(x * 4);
            p[1] = (unsigned char)(h >> 8) ^ (unsigned char)(y * 4);
            p[2] = (unsigned char)(h >> 16) ^ (unsigned char)((x + y) * 2);
        }
    }
    struct membuf b = {0};
    int ok = strcmp(format, "png") == 0 ? stbi_write_png_to_func(put, &b, SIDE, SIDE, 3, px, SIDE * 3)
                                        : stbi_write_jpg_to_func(put, &b, SIDE, SIDE, 3, px, 90);
    if (!ok || !b.p) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
