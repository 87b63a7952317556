/*
 * rows.c reads catalogue files for "from:" job templates (sb_rows.h). CSV and TSV
 * go through libcsv in strict mode, fed a line at a time so that each row knows
 * the line it starts on (a quoted value may span lines); JSONL lines through
 * cJSON. Values must be UTF-8. A row with its own problem (a field count that is
 * not the header's, a line that is not a JSON object) is told and skipped; a file
 * whose quoting is broken stops there, since nothing after it can be trusted.
 */
#include "sb_rows.h"
#include "sb_common.h"

#include <errno.h>
#include <strings.h>
#include <sys/types.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <csv.h>
#include <unistr.h>

#define MAX_LINE (8u * 1024 * 1024)

struct reader {
    const char *path;
    sb_row_fn fn;
    sb_row_err_fn bad;
    void *ud;
    int line;            /* being read */
    int stop;
    /* CSV */
    char **names;
    int n_names, header_done;
    char **vals;
    int n_vals, cap;
    int row_line;
    char row_why[200];   /* the current row's problem, or "" */
    int number;
    char *err;
    size_t errlen;
    int failed;
};

static int is_ext(const char *path, const char *ext)
{
    size_t n = strlen(path), e = strlen(ext);
    return n > e && strcasecmp(path + n - e, ext) == 0;
}

int sb_rows_format_known(const char *path)
{
    return is_ext(path, ".csv") || is_ext(path, ".tsv") || is_ext(path, ".jsonl");
}

static void clear_vals(struct reader *r)
{
    for (int i = 0; i < r->n_vals; i++)
        free(r->vals[i]);
    r->n_vals = 0;
    r->row_why[0] = '\0';
}

static void on_field(void *s, size_t len, void *ud)
{
    struct reader *r = ud;
    if (r->stop || r->failed)
        return;
    if (r->n_vals == 0) {
        int nl = 0;
        for (size_t i = 0; i < len; i++)
            nl += ((const char *)s)[i] == '\n';
        r->row_line = r->line - nl;
    }
    if (r->n_vals >= SB_ROWS_MAX_COLUMNS) {
        if (!r->row_why[0])
            snprintf(r->row_why, sizeof r->row_why, "more than %d fields", SB_ROWS_MAX_COLUMNS);
        return;
    }
    if (len > SB_ROWS_MAX_FIELD && !r->row_why[0])
        snprintf(r->row_why, sizeof r->row_why, "field %d is longer than %u bytes", r->n_vals + 1,
                 SB_ROWS_MAX_FIELD);
    else if (len && u8_check(s, len) != NULL && !r->row_why[0])
        snprintf(r->row_why, sizeof r->row_why, "field %d is not UTF-8 text (save the file as UTF-8)",
                 r->n_vals + 1);
    if (r->n_vals == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->vals = sb_realloc(r->vals, (size_t)r->cap * sizeof *r->vals);
    }
    r->vals[r->n_vals++] = s ? sb_strndup(s, len) : sb_strdup("");
}

static void on_row(int c, void *ud)
{
    struct reader *r = ud;
    (void)c;
    if (r->stop || r->failed) {
        clear_vals(r);
        return;
    }
    if (!r->header_done) {
        r->header_done = 1;
        for (int i = 0; i < r->n_vals && !r->failed; i++) {
            if (r->row_why[0]) {
                sb_seterr(r->err, r->errlen, "%s:%d: the header row: %s", r->path, r->row_line, r->row_why);
                r->failed = 1;
            } else if (!r->vals[i][0]) {
                sb_seterr(r->err, r->errlen, "%s:%d: the header row: column %d has no name", r->path,
                          r->row_line, i + 1);
                r->failed = 1;
            }
            for (int k = 0; k < i && !r->failed; k++) {
                if (strcmp(r->vals[k], r->vals[i]) == 0) {
                    sb_seterr(r->err, r->errlen, "%s:%d: the header row names column \"%s\" twice (%d and %d)",
                              r->path, r->row_line, r->vals[i], k + 1, i + 1);
                    r->failed = 1;
                }
            }
        }
        r->names = r->vals;
        r->n_names = r->n_vals;
        r->vals = NULL;
        r->n_vals = r->cap = 0;
        return;
    }
    r->number++;
    if (!r->row_why[0] && r->n_vals != r->n_names)
        snprintf(r->row_why, sizeof r->row_why, "has %d field%s where the header has %d", r->n_vals,
                 SB_S(r->n_vals), r->n_names);
    if (r->row_why[0]) {
        r->bad(r->row_line, r->row_why, r->ud);
    } else {
        struct sb_row row = {.number = r->number, .line = r->row_line, .n = r->n_vals, .names = r->names,
                             .values = r->vals};
        if (r->fn(&row, r->ud) != 0)
            r->stop = 1;
    }
    clear_vals(r);
}

/* RFC 4180: spaces are part of a field; "| trim" takes them off where wanted. */
static int no_space(unsigned char c)
{
    (void)c;
    return 0;
}

static int read_csv(struct reader *r, FILE *f, unsigned char delim)
{
    struct csv_parser p;
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) != 0)
        return sb_seterr(r->err, r->errlen, "%s: out of memory", r->path);
    csv_set_delim(&p, delim);
    csv_set_space_func(&p, no_space);
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = SB_OK;
    while (!r->stop && !r->failed && (n = getline(&buf, &cap, f)) > 0) {
        r->line++;
        const char *s = buf;
        if (r->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3;
            n -= 3;
        }
        if (csv_parse(&p, s, (size_t)n, on_field, on_row, r) != (size_t)n) {
            rc = sb_seterr(r->err, r->errlen, "%s:%d: %s (a quote inside a quoted field is written twice: \"\")",
                           r->path, r->line, csv_strerror(csv_error(&p)));
            break;
        }
    }
    if (rc == SB_OK && ferror(f))
        rc = sb_seterr(r->err, r->errlen, "%s: %s", r->path, strerror(errno));
    if (rc == SB_OK && !r->stop && !r->failed && csv_fini(&p, on_field, on_row, r) != 0)
        rc = sb_seterr(r->err, r->errlen, "%s:%d: a quoted field is not closed before the end of the file",
                       r->path, r->row_line ? r->row_line : r->line);
    if (rc == SB_OK && r->failed)
        rc = SB_EINVAL;
    if (rc == SB_OK && !r->header_done)
        rc = sb_seterr(r->err, r->errlen, "%s: no header row: the first row names the columns", r->path);
    csv_free(&p);
    free(buf);
    clear_vals(r);
    free(r->vals);
    for (int i = 0; i < r->n_names; i++)
        free(r->names[i]);
    free(r->names);
    return rc;
}

static int read_jsonl(struct reader *r, FILE *f)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n;
    while (!r->stop && (n = getline(&buf, &cap, f)) > 0) {
        r->line++;
        char *s = buf;
        if (r->line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
            s += 3;
        size_t blank = strspn(s, " \t\r\n");
        if (s[blank] == '\0')
            continue;
        r->number++;
        if ((size_t)n > MAX_LINE) {
            r->bad(r->line, "the line is longer than 8 MiB", r->ud);
            continue;
        }
        if (strlen(s) != (size_t)n - (size_t)(s - buf)) {
            r->bad(r->line, "the line holds a NUL byte", r->ud);
            continue;
        }
        if (u8_check((const uint8_t *)s, strlen(s)) != NULL) {
            r->bad(r->line, "the line is not UTF-8 text", r->ud);
            continue;
        }
        cJSON *o = cJSON_ParseWithOpts(s, NULL, 1);
        if (!cJSON_IsObject(o)) {
            r->bad(r->line, o ? "the line is JSON but not an object ({...})" : "the line is not valid JSON", r->ud);
            cJSON_Delete(o);
            continue;
        }
        struct sb_row row = {.number = r->number, .line = r->line, .obj = o};
        if (r->fn(&row, r->ud) != 0)
            r->stop = 1;
        cJSON_Delete(o);
    }
    int rc = ferror(f) ? sb_seterr(r->err, r->errlen, "%s: %s", r->path, strerror(errno)) : SB_OK;
    free(buf);
    return rc;
}

int sb_rows_read(const char *path, sb_row_fn fn, sb_row_err_fn bad, void *ud, char *err, size_t errlen)
{
    if (!sb_rows_format_known(path))
        return sb_seterr(err, errlen, "%s: a catalogue is a .csv, .tsv or .jsonl file", path);
    FILE *f = fopen(path, "re");
    if (!f)
        return sb_seterr(err, errlen, "%s: %s", path, strerror(errno));
    struct reader r = {.path = path, .fn = fn, .bad = bad, .ud = ud, .err = err, .errlen = errlen};
    int rc = is_ext(path, ".jsonl") ? read_jsonl(&r, f) : read_csv(&r, f, is_ext(path, ".tsv") ? '\t' : ',');
    fclose(f);
    return rc;
}

/* The member at a dotted path: the name as a key first, then each part a level down. */
static const cJSON *json_at(const cJSON *o, const char *name, size_t len)
{
    char key[300];
    if (len >= sizeof key)
        return NULL;
    memcpy(key, name, len);
    key[len] = '\0';
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (v)
        return v;
    char *part = key, *dot;
    v = o;
    while (v && (dot = strchr(part, '.')) != NULL) {
        *dot = '\0';
        v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, part) : NULL;
        part = dot + 1;
    }
    return v && cJSON_IsObject(v) && part != key ? cJSON_GetObjectItemCaseSensitive(v, part) : NULL;
}

int sb_row_lookup(struct sb_row *r, const char *name, size_t len, struct sb_tvalue *out, char *why,
                  size_t whylen)
{
    if (len == 3 && memcmp(name, "row", 3) == 0) {
        snprintf(r->num, sizeof r->num, "%d", r->number);
        *out = (struct sb_tvalue){r->num, SB_TV_NUMBER};
        return SB_TL_FOUND;
    }
    if (!r->obj) {
        for (int i = 0; i < r->n; i++) {
            if (strlen(r->names[i]) == len && memcmp(r->names[i], name, len) == 0) {
                *out = (struct sb_tvalue){r->values[i], SB_TV_TEXT};
                return SB_TL_FOUND;
            }
        }
        return SB_TL_UNKNOWN;
    }
    const cJSON *v = json_at(r->obj, name, len);
    if (!v)
        return SB_TL_UNKNOWN;
    if (cJSON_IsString(v)) {
        *out = (struct sb_tvalue){v->valuestring, SB_TV_TEXT};
    } else if (cJSON_IsNull(v)) {
        *out = (struct sb_tvalue){"", SB_TV_TEXT};
    } else if (cJSON_IsBool(v)) {
        *out = (struct sb_tvalue){cJSON_IsTrue(v) ? "true" : "false", SB_TV_BOOL};
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0)
            snprintf(r->num, sizeof r->num, "%.0f", d);
        else
            snprintf(r->num, sizeof r->num, "%.17g", d);
        *out = (struct sb_tvalue){r->num, SB_TV_NUMBER};
    } else {
        snprintf(why, whylen, "is %s, not a value", cJSON_IsArray(v) ? "a list" : "an object");
        return SB_TL_ERROR;
    }
    return SB_TL_FOUND;
}
