/*
 * libFuzzer target for catalogue rows and templates: the first byte picks the format
 * (CSV, TSV or JSONL) and a template; the rest is the file. Each row is looked up for
 * its columns and the template expanded with every filter. Built with -DFUZZ=ON
 * (clang); the regular build replays the corpus (fuzz_replay.c).
 */
#include "sb_common.h"
#include "sb_rows.h"
#include "sb_template.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *templates[] = {
    "{a}-{b|slug}", "{a.b|upper|trim}", "{row} {{x}} {c|lower}", "{1|slug|slug}", "{a|nope}", "{}", "{a", "}}{{",
};

static int lookup(void *ud, const char *name, size_t len, struct sb_tvalue *out, char *why, size_t whylen)
{
    return sb_row_lookup(ud, name, len, out, why, whylen);
}

static int on_row(struct sb_row *r, void *ud)
{
    const char *t = ud;
    char why[SB_ERRLEN];
    enum sb_tv_type type;
    char *s = sb_template_expand(t, lookup, r, SB_T_NO_EMPTY, &type, why, sizeof why);
    free(s);
    for (int i = 0; i < r->n && i < 4; i++) {
        struct sb_tvalue v;
        if (sb_row_lookup(r, r->names[i], strlen(r->names[i]), &v, why, sizeof why) == SB_TL_FOUND)
            free(sb_template_expand("{x|slug}", lookup, r, SB_T_KEEP_UNKNOWN, NULL, why, sizeof why));
    }
    return 0;
}

static void on_bad(int line, const char *why, void *ud)
{
    (void)line, (void)why, (void)ud;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[3][64];
    static const char *ext[] = {".csv", ".tsv", ".jsonl"};
    if (!path[0][0])
        for (int i = 0; i < 3; i++)
            snprintf(path[i], sizeof path[i], "/tmp/sbfuzz-rows-%d%s", (int)getpid(), ext[i]);
    if (size < 1)
        return 0;
    int fmt = data[0] % 3;
    const char *t = templates[(data[0] / 3) % (sizeof templates / sizeof *templates)];
    FILE *f = fopen(path[fmt], "wb");
    if (!f)
        return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    char err[SB_ERRLEN];
    sb_rows_read(path[fmt], on_row, on_bad, (void *)t, err, sizeof err);
    unlink(path[fmt]);
    return 0;
}
