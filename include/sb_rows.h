/*
 * Catalogue rows for a manifest's "from:" job templates: a CSV (RFC 4180, read
 * by libcsv; the first row names the columns), a TSV (the same with tabs) or a
 * JSONL file (one object per line; "{a.b}" reaches into objects). Rows are read
 * one at a time, in file order.
 */
#ifndef SB_ROWS_H
#define SB_ROWS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "sb_template.h"

#define SB_ROWS_MAX_FIELD (1u * 1024 * 1024) /* one value */
#define SB_ROWS_MAX_COLUMNS 1000

struct sb_row {
    int number;               /* 1-based data row (the header not counted) */
    int line;                 /* the file's line the row starts on */
    int n;                    /* CSV/TSV: columns */
    char *const *names;
    char *const *values;
    const cJSON *obj;         /* JSONL: the row's object */
    char num[40];             /* scratch for a number's text */
};

/* A row read: 0 goes on, non-zero stops the reading. */
typedef int (*sb_row_fn)(struct sb_row *r, void *ud);
/* A row that cannot be read (its line, why); the reading goes on with the next. */
typedef void (*sb_row_err_fn)(int line, const char *why, void *ud);

/*
 * Reads path (format by its extension: .csv, .tsv, .jsonl) row by row. Returns 0,
 * or a negative code with err set when the file cannot be read at all (missing,
 * no header, malformed quoting: the rest cannot be trusted); rows with their own
 * problem go to bad and the reading goes on.
 */
int sb_rows_read(const char *path, sb_row_fn fn, sb_row_err_fn bad, void *ud, char *err, size_t errlen);

/* Whether path names a file sb_rows_read reads (by its extension). */
int sb_rows_format_known(const char *path);

/* A column's value as a template lookup gives it ({row} is the row's number). */
int sb_row_lookup(struct sb_row *r, const char *name, size_t len, struct sb_tvalue *out, char *why,
                  size_t whylen);

#endif
