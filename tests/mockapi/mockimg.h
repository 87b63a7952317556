/* Output images the mock serves: real PNG or JPEG bytes, a pure function of (seed string, k). */
#ifndef MOCKIMG_H
#define MOCKIMG_H
#include <stddef.h>
/* Returns malloc'd bytes; *len is their size. format is "png" or "jpeg". */
unsigned char *mockimg_make(const char *seed, int k, const char *format, size_t *len);
#endif
