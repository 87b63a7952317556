/*
 * libFuzzer target for the API answer parsers of both providers: the bytes are
 * parsed as the engine parses an HTTP body (sb_json_parse, once), then every
 * parse function and error_info read the result.
 */
#include "sb_provider.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Bodies arrive NUL-terminated from the capped buffer. */
    char *body = malloc(size + 1);
    if (!body)
        return 0;
    memcpy(body, data, size);
    body[size] = '\0';
    cJSON *j = sb_json_parse(body, size);
    const struct sb_provider_ops *ops[] = {&sb_provider_atlas, &sb_provider_runcomfy};
    for (int i = 0; i < 2; i++) {
        char err[256], msg[300], code[64];
        char *s = NULL;
        int status;
        if (ops[i]->parse_upload && ops[i]->parse_upload(j, &s, err, sizeof err) == SB_OK)
            free(s);
        s = NULL;
        if (ops[i]->parse_submit(j, &s, err, sizeof err) == SB_OK)
            free(s);
        struct sb_poll_result pr;
        if (ops[i]->parse_poll(j, &pr, err, sizeof err) == SB_OK)
            sb_poll_result_clear(&pr);
        if (ops[i]->parse_cancel)
            ops[i]->parse_cancel(j);
        ops[i]->error_info(j, msg, sizeof msg, code, sizeof code, &status);
    }
    cJSON_Delete(j);
    free(body);
    return 0;
}
