/*
 * libFuzzer target for the manifest parser: any bytes, parsed as a manifest
 * whose relative paths resolve in an empty directory. Built with -DFUZZ=ON
 * (clang); the regular build links fuzz_replay.c instead, which runs every
 * file of the corpus once, so regressions stay in the normal test suite.
 */
#include "sb_log.h"
#include "sb_manifest.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        sb_log_setup(SB_LOG_TEXT, (enum sb_log_level)(SB_LOG_ERROR + 1));
        init = 1;
    }
    struct sb_manifest *m = NULL;
    char err[SB_ERRLEN];
    if (sb_manifest_parse("fuzz.yaml", "/nonexistent-seedbatch-fuzz", (const char *)data, size, &m, err,
                          sizeof err) == SB_OK)
        sb_manifest_free(m);
    return 0;
}
