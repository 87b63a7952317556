/* libFuzzer target for the image header sniffer (stb_image, libwebp, libtiff behind it). */
#include "sb_imageinfo.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sb_imageinfo info;
    sb_image_probe(data, size, &info);
    sb_image_sniff(data, size);
    return 0;
}
