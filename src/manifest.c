/*
 * manifest.c turns a YAML manifest into checked jobs. libyaml's event parser
 * feeds a small node tree that this file builds itself, because libyaml 0.2.5
 * sets no limits of its own: nesting is capped at SB_YAML_MAX_DEPTH, aliases
 * are shared references whose expanded size is counted against a budget (so
 * a billion-laughs document is refused before anything walks it), an alias
 * to a node that is still open (a cycle) is refused, and the file size and
 * each scalar are capped. Every error names file:line:column and the job.
 */
#include "sb_manifest.h"
#include "sb_jw.h"
#include "sb_log.h"
#include "sb_provider.h"
#include "sb_rows.h"
#include "sb_signals.h"
#include "sb_template.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <yaml.h>

#define MAX_LOGGED_ERRORS 50

/* ---- the YAML node tree ---- */

enum ytype { Y_SCALAR, Y_SEQ, Y_MAP };

struct ynode {
    enum ytype type;
    int line, col;
    char *value;          /* scalar text */
    size_t len;
    int plain;            /* plain (unquoted) scalar, typed by its text */
    int str_tag;          /* explicit !!str */
    char *anchor;         /* a collection's anchor, registered when it closes */
    struct ynode **kids;  /* sequence items, or mapping key, value, key, value... */
    size_t n, cap;
    size_t weight;        /* nodes in the subtree with aliases expanded (saturating) */
    int anchored;         /* an alias may refer to it: never freed before the tree */
};

struct ytree {
    const char *name;
    struct ynode **all;   /* every node, freed together: aliases share nodes */
    size_t nall, capall;
    struct sb_map *anchors;
    struct ynode *stack[SB_YAML_MAX_DEPTH + 1];
    int depth;
    struct ynode *root;
    size_t events;
    size_t alias_nodes;
    /*
     * The top-level jobs list is not kept: each item is handed to on_item as
     * soon as it is complete and then freed (unless it holds an anchor), so a
     * manifest of 100,000 jobs never becomes a tree of 100,000 jobs.
     */
    struct ynode *jobs;
    size_t item_mark;     /* all[] index where the current item's nodes begin */
    size_t n_items;
    void (*on_item)(struct ytree *t, const struct ynode *item, void *ud);
    void *item_ud;
};

/* Where the YAML text comes from: memory or a file, hashed as it is read. */
struct ysrc {
    const char *text;     /* or */
    FILE *f;
    size_t len, off, total;
    int too_big;
    size_t event_at;      /* total when the parser last gave an event */
    int value_too_long;   /* more than SB_YAML_MAX_VALUE_INPUT read since */
    struct sb_sha256 *hash;
};

static int yread(void *ud, unsigned char *buf, size_t size, size_t *got)
{
    struct ysrc *s = ud;
    size_t n;
    if (s->text) {
        n = s->len - s->off < size ? s->len - s->off : size;
        memcpy(buf, s->text + s->off, n);
        s->off += n;
    } else {
        n = fread(buf, 1, size, s->f);
        if (n == 0 && ferror(s->f))
            return 0;
    }
    s->total += n;
    if (s->total > SB_MANIFEST_MAX_BYTES) {
        s->too_big = 1;
        return 0;
    }
    if (s->total - s->event_at > SB_YAML_MAX_VALUE_INPUT) {
        /* libyaml buffers a value whole before it hands it over: stop it here. */
        s->value_too_long = 1;
        return 0;
    }
    sb_sha256_update(s->hash, buf, n);
    *got = n;
    return 1;
}

static struct ynode *ynew(struct ytree *t, enum ytype type, const yaml_mark_t *mark)
{
    struct ynode *n = sb_calloc(1, sizeof *n);
    n->type = type;
    n->line = (int)mark->line + 1;
    n->col = (int)mark->column + 1;
    n->weight = 1;
    if (t->nall == t->capall) {
        t->capall = t->capall ? t->capall * 2 : 256;
        t->all = sb_realloc(t->all, t->capall * sizeof *t->all);
    }
    t->all[t->nall++] = n;
    return n;
}

static void yfree_node(struct ynode *n)
{
    free(n->value);
    free(n->kids);
    free(n->anchor);
    free(n);
}

static void yfree(struct ytree *t)
{
    for (size_t i = 0; i < t->nall; i++)
        yfree_node(t->all[i]);
    free(t->all);
    sb_map_free(t->anchors, NULL);
}

/* Hands a complete job item over, then drops its nodes unless an alias may still need them. */
static void yitem(struct ytree *t, struct ynode *n)
{
    t->n_items++;
    if (t->on_item)
        t->on_item(t, n, t->item_ud);
    int keep = 0;
    for (size_t i = t->item_mark; i < t->nall && !keep; i++)
        keep = t->all[i]->anchored;
    if (!keep) {
        for (size_t i = t->item_mark; i < t->nall; i++)
            yfree_node(t->all[i]);
        t->nall = t->item_mark;
    }
    t->item_mark = t->nall;
}

static size_t sat_add(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static int yadd(struct ytree *t, struct ynode *n, char *err, size_t errlen)
{
    if (t->depth == 0) {
        if (t->root)
            return sb_seterr(err, errlen, "%s:%d:%d: unexpected second root node", t->name, n->line, n->col);
        t->root = n;
        return SB_OK;
    }
    struct ynode *p = t->stack[t->depth - 1];
    if (p == t->jobs) {
        yitem(t, n);
        return SB_OK;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4;
        p->kids = sb_realloc(p->kids, p->cap * sizeof *p->kids);
    }
    p->kids[p->n++] = n;
    return SB_OK;
}

/* The byte at line:column (both from 0) of src's text, or -1: to tell what a syntax error met. */
static int src_byte_at(struct ysrc *s, size_t line, size_t col)
{
    if (s->text) {
        const char *p = s->text, *end = s->text + s->len;
        for (size_t l = 0; l < line; l++) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl)
                return -1;
            p = nl + 1;
        }
        return (size_t)(end - p) > col ? (unsigned char)p[col] : -1;
    }
    if (!s->f || fseek(s->f, 0, SEEK_SET) != 0)
        return -1;
    size_t l = 0, k = 0;
    for (int c; (c = getc(s->f)) != EOF;) {
        if (l < line) {
            l += c == '\n';
        } else if (c == '\n') {
            return -1;
        } else if (k++ == col) {
            return c;
        }
    }
    return -1;
}

/* Builds the node tree of the one document in src, streaming the jobs list's items. */
static int ybuild(struct ytree *t, struct ysrc *src, char *err, size_t errlen)
{
    yaml_parser_t parser;
    yaml_event_t ev;
    int rc = SB_ERR, docs = 0, done = 0;
    yaml_mark_t last = {0, 0, 0};

    t->anchors = sb_map_new();
    if (!yaml_parser_initialize(&parser))
        return sb_seterr(err, errlen, "%s: cannot initialise the YAML parser", t->name);
    yaml_parser_set_input(&parser, yread, src);

    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            if (src->too_big) {
                sb_seterr(err, errlen, "%s: over the manifest size limit of " SB_MANIFEST_MAX_TEXT, t->name);
                goto out;
            }
            if (src->value_too_long) {
                sb_seterr(err, errlen, "%s:%zu:%zu: %u MiB of text after this point hold no complete value "
                          "(a value may be at most %u bytes)", t->name, last.line + 1, last.column + 1,
                          SB_YAML_MAX_VALUE_INPUT >> 20, SB_YAML_MAX_SCALAR);
                goto out;
            }
            /* libyaml names no character; a tab (indenting as some editors do) is the usual one. */
            int tab = src_byte_at(src, parser.problem_mark.line, parser.problem_mark.column) == '\t' &&
                      !(parser.problem && strstr(parser.problem, "tab"));
            sb_seterr(err, errlen, "%s:%zu:%zu: YAML syntax error: %s%s%s%s", t->name,
                      parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                      parser.problem ? parser.problem : "unknown problem",
                      parser.context ? " " : "", parser.context ? parser.context : "",
                      tab ? " (a tab: YAML indents with spaces only)" : "");
            goto out;
        }
        t->events++;
        src->event_at = src->total;
        last = ev.end_mark;
        const yaml_mark_t *mk = &ev.start_mark;
        int bad = 0;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                sb_seterr(err, errlen, "%s:%zu:%zu: only one YAML document is allowed", t->name,
                          mk->line + 1, mk->column + 1);
                bad = 1;
            }
            break;
        case YAML_SCALAR_EVENT: {
            if (ev.data.scalar.length > SB_YAML_MAX_SCALAR) {
                sb_seterr(err, errlen, "%s:%zu:%zu: a value of %zu bytes is over the %u byte limit",
                          t->name, mk->line + 1, mk->column + 1, ev.data.scalar.length, SB_YAML_MAX_SCALAR);
                bad = 1;
                break;
            }
            struct ynode *n = ynew(t, Y_SCALAR, mk);
            n->value = sb_strndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
            n->len = strlen(n->value); /* a "\0" escape ends the value, as C strings do */
            n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
            n->str_tag = ev.data.scalar.tag &&
                         strcmp((const char *)ev.data.scalar.tag, "tag:yaml.org,2002:str") == 0;
            if (ev.data.scalar.anchor) {
                sb_map_put(t->anchors, (const char *)ev.data.scalar.anchor, n);
                n->anchored = 1;
            }
            bad = yadd(t, n, err, errlen) != SB_OK;
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            if (t->depth >= SB_YAML_MAX_DEPTH) {
                sb_seterr(err, errlen, "%s:%zu:%zu: nesting deeper than %d levels", t->name,
                          mk->line + 1, mk->column + 1, SB_YAML_MAX_DEPTH);
                bad = 1;
                break;
            }
            int seq = ev.type == YAML_SEQUENCE_START_EVENT;
            struct ynode *n = ynew(t, seq ? Y_SEQ : Y_MAP, mk);
            const yaml_char_t *a = seq ? ev.data.sequence_start.anchor : ev.data.mapping_start.anchor;
            if (a) {
                n->anchor = sb_strdup((const char *)a);
                n->anchored = 1;
            }
            /* The value of the top-level key "jobs": its items are streamed. */
            struct ynode *top = t->depth == 1 ? t->stack[0] : NULL;
            if (seq && top && top->type == Y_MAP && top->n % 2 == 1 && !t->jobs &&
                top->kids[top->n - 1]->type == Y_SCALAR && strcmp(top->kids[top->n - 1]->value, "jobs") == 0)
                t->jobs = n;
            t->stack[t->depth++] = n;
            if (n == t->jobs)
                t->item_mark = t->nall;
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            struct ynode *n = t->stack[--t->depth];
            for (size_t i = 0; i < n->n; i++)
                n->weight = sat_add(n->weight, n->kids[i]->weight);
            /* Registered only now, so an alias inside its own anchor (a cycle) is unknown. */
            if (n->anchor)
                sb_map_put(t->anchors, n->anchor, n);
            bad = yadd(t, n, err, errlen) != SB_OK;
            break;
        }
        case YAML_ALIAS_EVENT: {
            const char *name = (const char *)ev.data.alias.anchor;
            struct ynode *n = sb_map_get(t->anchors, name);
            if (!n) {
                sb_seterr(err, errlen, "%s:%zu:%zu: alias *%s is undefined or refers to a node that "
                          "contains it (recursive aliases are refused)", t->name, mk->line + 1,
                          mk->column + 1, name);
                bad = 1;
                break;
            }
            t->alias_nodes = sat_add(t->alias_nodes, n->weight);
            if (t->alias_nodes > SB_YAML_ALIAS_BUDGET && t->alias_nodes / 10 > t->events) {
                sb_seterr(err, errlen, "%s:%zu:%zu: aliases expand to more than %zu nodes "
                          "(an alias bomb?); refused", t->name, mk->line + 1, mk->column + 1,
                          t->alias_nodes == SIZE_MAX ? SIZE_MAX : t->alias_nodes);
                bad = 1;
                break;
            }
            bad = yadd(t, n, err, errlen) != SB_OK;
            break;
        }
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (bad)
            goto out;
    }
    if (!t->root)
        sb_seterr(err, errlen, "%s: the manifest is empty", t->name);
    else
        rc = SB_OK;
out:
    yaml_parser_delete(&parser);
    return rc;
}

/* ---- interpretation ---- */

struct tvars {          /* what a job template's placeholders stand for */
    const char *path, *name, *stem, *ext, *dir; /* foreach: the match (path NULL otherwise) */
    int index;
    struct sb_row *row;     /* from: the catalogue row, */
    const char *from;       /* ... its file as written */
    const char *out_id;     /* output_name: the job's id ({k} and {ext} are filled in per output) */
    int strict;             /* a name it does not know is an error (output_name), not text */
    char num[16];
};

struct mctx {
    struct sb_manifest *m;
    const char *name;
    int errors;
    int quiet;          /* a second reading of a checked manifest: problems were already logged */
    const char *job;    /* current job's label, for messages */
    char first[SB_ERRLEN];
    struct sb_map *ids; /* id -> (line number cast to pointer), while checking */
    char *unusable[MAX_LOGGED_ERRORS]; /* the checking reading's jobs with an unusable image, */
    int n_unusable;                    /* ... told only when the manifest is invalid (below) */
    int checking;       /* the checking reading: fingerprints only where they make the id */
    const char *root_real; /* realpath of media.root, for url_prefix */
    const cJSON *defaults;
    const struct ynode *defaults_node; /* for messages; NULL on a second reading */
    int ordinal;        /* jobs seen, foreach expansions counted one by one */
    int emitted;        /* valid jobs handed on */
    sb_job_fn fn;       /* where each valid job goes, or NULL */
    void *fn_ud;
    int stopped;        /* fn asked to stop */
    struct sb_map *warned;     /* "line:col:message" -> its struct warning, while checking */
    struct warning **warnings; /* ... in the order first seen */
    int n_warnings;
    struct sb_map *outs;       /* output path template -> (line cast to pointer), while checking */
    struct sb_map *dirs_seen;  /* output subdirectories found not to be links, while checking */
};

/* A warning for a place in the manifest, said once with the number of jobs it was for. */
struct warning {
    int line, col;
    char *msg;
    char *first_job;
    int jobs;
};

/* What a manifest keeps to read its jobs again: the text it was checked from, by hash. */
struct sb_msource {
    char *text;         /* a manifest parsed from memory keeps its copy */
    size_t len;
    char sha[65];
    cJSON *defaults;
    char *root_real;
    FILE *kept;         /* the checked jobs (sb_manifest_each_kept), or NULL */
    int kept_failed;    /* writing them failed: there are none to give */
    struct sb_load_opts opts;     /* how it is loaded (the caller's) */
    void *cache;                  /* the lookup of files already read, while local files load, or NULL */
    int cache_tried;
};

/*
 * The local file at path, loaded once per manifest. A file an earlier run recorded in
 * this manifest's state with the same stamp is not read again: a resume or a status
 * of a catalogue of large photos would otherwise hash them all each time.
 */
static struct sb_localfile *local_file(struct sb_manifest *m, const char *path)
{
    struct sb_localfile *f = sb_map_get(m->files, path);
    if (f)
        return f;
    struct sb_msource *s = m->src;
    if (s->opts.cache_open && !s->cache_tried) {
        s->cache_tried = 1;
        s->cache = s->opts.cache_open(m, s->opts.ud);
    }
    if (sb_signals_caught()) {
        /* The run is stopping: the rest of the check is thrown away, so read no more files. */
        f = sb_calloc(1, sizeof *f);
        f->path = sb_strdup(path);
        f->problem = sb_strdup("not read: the run was stopped");
        sb_map_put(m->files, path, f);
        return f;
    }
    f = sb_localfile_load(path, s->cache ? s->opts.cache_lookup : NULL, s->cache);
    if (f->known)
        m->files_known++;
    else
        m->files_read++;
    sb_map_put(m->files, path, f);
    return f;
}

/* After loading: the lookup of files already read is let go. */
static void files_state_close(struct sb_manifest *m)
{
    if (m->src->cache)
        m->src->opts.cache_close(m->src->cache);
    m->src->cache = NULL;
    if (m->files_known || m->files_read)
        sb_debug("%s: local files: %d read and hashed, %d known unchanged from the state", m->path,
                 m->files_read, m->files_known);
}

static void SB_PRINTF(3, 4) merr(struct mctx *c, const struct ynode *n, const char *fmt, ...)
{
    char msg[1024], line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->job)
        snprintf(line, sizeof line, "%.200s:%d:%d: job %.150s: %s", c->name, n ? n->line : 1, n ? n->col : 1, c->job, msg);
    else
        snprintf(line, sizeof line, "%.200s:%d:%d: %s", c->name, n ? n->line : 1, n ? n->col : 1, msg);
    if (c->errors == 0)
        snprintf(c->first, sizeof c->first, "%.*s", (int)sizeof c->first - 1, line);
    if (c->quiet)
        ;
    else if (c->errors < MAX_LOGGED_ERRORS)
        sb_error("%s", line);
    else if (c->errors == MAX_LOGGED_ERRORS)
        sb_error("%s: more errors follow; not shown", c->name);
    c->errors++;
}

static const char *type_name(const struct ynode *n)
{
    return n->type == Y_MAP ? "a mapping" : n->type == Y_SEQ ? "a list" : "a value";
}

static int is_null(const struct ynode *n)
{
    return n->type == Y_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->value, "~") == 0 || strcmp(n->value, "null") == 0 ||
            strcmp(n->value, "Null") == 0 || strcmp(n->value, "NULL") == 0);
}

static const struct ynode *map_get(const struct ynode *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (map->kids[i]->type == Y_SCALAR && strcmp(map->kids[i]->value, key) == 0)
            return map->kids[i + 1];
    return NULL;
}

static const struct ynode *map_key(const struct ynode *map, const char *key)
{
    for (size_t i = 0; i + 1 < map->n; i += 2)
        if (map->kids[i]->type == Y_SCALAR && strcmp(map->kids[i]->value, key) == 0)
            return map->kids[i];
    return NULL;
}

/* Every key a scalar, none repeated, and (when allowed is given) each one known. */
static void check_keys(struct mctx *c, const struct ynode *map, const char *const *allowed, const char *what)
{
    /* A job has a handful of keys: comparing them pairwise is cheaper than a hash map. */
    struct sb_map *seen = map->n > 32 ? sb_map_new() : NULL;
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ynode *k = map->kids[i];
        if (k->type != Y_SCALAR) {
            merr(c, k, "keys in %s must be plain names, not %s", what, type_name(k));
            continue;
        }
        int twice = 0;
        if (seen) {
            twice = sb_map_get(seen, k->value) != NULL;
            if (!twice)
                sb_map_put(seen, k->value, (void *)k);
        } else {
            for (size_t e = 0; e < i && !twice; e += 2)
                twice = map->kids[e]->type == Y_SCALAR && strcmp(map->kids[e]->value, k->value) == 0;
        }
        if (twice) {
            merr(c, k, "key %s appears twice in %s", k->value, what);
            continue;
        }
        if (!allowed)
            continue;
        int ok = 0;
        for (int j = 0; allowed[j]; j++)
            ok |= strcmp(allowed[j], k->value) == 0;
        if (!ok) {
            struct sb_buf b;
            sb_buf_init(&b, 1024);
            for (int j = 0; allowed[j]; j++)
                sb_buf_printf(&b, "%s%s", j ? ", " : "", allowed[j]);
            const char *near = sb_closest(k->value, allowed);
            if (near)
                merr(c, k, "unknown key %s in %s: did you mean %s? (known: %s)", k->value, what, near, b.data);
            else
                merr(c, k, "unknown key %s in %s (known: %s)", k->value, what, b.data);
            sb_buf_free(&b);
        }
    }
    sb_map_free(seen, NULL);
}

static const char *get_str(struct mctx *c, const struct ynode *n, const char *what)
{
    if (n->type != Y_SCALAR || is_null(n)) {
        merr(c, n, "%s must be a string, not %s", what, is_null(n) ? "empty" : type_name(n));
        return NULL;
    }
    return n->value;
}

static int parse_number(const struct ynode *n, double *out)
{
    if (n->type != Y_SCALAR || !n->plain || n->str_tag || n->len == 0)
        return SB_EINVAL;
    char *end;
    errno = 0;
    double d = strtod(n->value, &end);
    if (*end || errno || !isfinite(d) || !(n->value[0] == '-' || n->value[0] == '+' ||
                                          n->value[0] == '.' || (n->value[0] >= '0' && n->value[0] <= '9')))
        return SB_EINVAL;
    *out = d;
    return SB_OK;
}

static int get_num(struct mctx *c, const struct ynode *n, const char *what, double lo, double hi, double *out)
{
    double d;
    if (parse_number(n, &d) != SB_OK) {
        merr(c, n, "%s must be a number", what);
        return SB_EINVAL;
    }
    if (d < lo || d > hi) {
        merr(c, n, "%s must be from %g to %g", what, lo, hi);
        return SB_EINVAL;
    }
    *out = d;
    return SB_OK;
}

static int get_int(struct mctx *c, const struct ynode *n, const char *what, int lo, int hi, int *out)
{
    double d;
    if (parse_number(n, &d) != SB_OK || d != floor(d)) {
        merr(c, n, "%s must be a whole number", what);
        return SB_EINVAL;
    }
    if (d < lo || d > hi) {
        merr(c, n, "%s must be from %d to %d", what, lo, hi);
        return SB_EINVAL;
    }
    *out = (int)d;
    return SB_OK;
}

static int get_duration(struct mctx *c, const struct ynode *n, const char *what, int64_t lo, int64_t *out)
{
    int64_t ms;
    if (n->type != Y_SCALAR || sb_parse_duration_ms(n->value, &ms) != SB_OK) {
        merr(c, n, "%s must be a duration such as 500ms, 2s, 5m or 1h", what);
        return SB_EINVAL;
    }
    if (ms < lo) {
        merr(c, n, "%s must be at least %lldms", what, (long long)lo);
        return SB_EINVAL;
    }
    *out = ms;
    return SB_OK;
}

/* A YAML scalar typed as the YAML 1.2 core schema says: null, bool, number or string. */
static cJSON *scalar_json(const struct ynode *n)
{
    if (!n->plain || n->str_tag)
        return cJSON_CreateString(n->value);
    if (is_null(n))
        return cJSON_CreateNull();
    const char *v = n->value;
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))
        return cJSON_CreateTrue();
    if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))
        return cJSON_CreateFalse();
    double d;
    if (parse_number(n, &d) == SB_OK)
        return cJSON_CreateNumber(d);
    return cJSON_CreateString(v);
}

/* A boolean setting: true or false as YAML writes them. */
static int get_bool(struct mctx *c, const struct ynode *n, const char *what, int *out)
{
    cJSON *j = n->type == Y_SCALAR ? scalar_json(n) : NULL;
    int rc = SB_OK;
    if (cJSON_IsBool(j)) {
        *out = cJSON_IsTrue(j);
    } else {
        merr(c, n, "%s must be true or false", what);
        rc = SB_EINVAL;
    }
    cJSON_Delete(j);
    return rc;
}

static cJSON *to_json(struct mctx *c, const struct ynode *n)
{
    if (n->type == Y_SCALAR)
        return scalar_json(n);
    if (n->type == Y_SEQ) {
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; i < n->n; i++)
            cJSON_AddItemToArray(a, to_json(c, n->kids[i]));
        return a;
    }
    check_keys(c, n, NULL, "params");
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; i + 1 < n->n; i += 2) {
        if (n->kids[i]->type == Y_SCALAR)
            cJSON_AddItemToObject(o, n->kids[i]->value, to_json(c, n->kids[i + 1]));
    }
    return o;
}

#define NAME_IS(lit) (len == sizeof(lit) - 1 && memcmp(name, lit, len) == 0)

/* The columns of a CSV row, for an unknown name's message. */
static void row_columns(const struct sb_row *r, const char *name, size_t len, char *why, size_t whylen)
{
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    const char **names = sb_calloc((size_t)r->n + 1, sizeof *names);
    for (int i = 0; i < r->n; i++) {
        sb_buf_printf(&b, "%s%s", i ? ", " : "", r->names[i]);
        names[i] = r->names[i];
    }
    char *want = sb_strndup(name, len);
    const char *near = sb_closest(want, names);
    if (near)
        snprintf(why, whylen, "no such column: did you mean %s? (columns: %s)", near, b.data ? b.data : "");
    else
        snprintf(why, whylen, "no such column (columns: %s)", b.data ? b.data : "");
    free(want);
    free(names);
    sb_buf_free(&b);
}

/* A placeholder's value for one job (sb_template.h): a foreach match's parts, a row's columns, the id. */
static int tvar_lookup(void *ud, const char *name, size_t len, struct sb_tvalue *out, char *why, size_t whylen)
{
    struct tvars *v = ud;
    if (v->out_id) {
        if (NAME_IS("k") || NAME_IS("ext"))
            return SB_TL_KEEP;
        if (NAME_IS("id")) {
            *out = (struct sb_tvalue){v->out_id, SB_TV_TEXT};
            return SB_TL_FOUND;
        }
    }
    if (v->row) {
        int rc = sb_row_lookup(v->row, name, len, out, why, whylen);
        if (rc == SB_TL_UNKNOWN && !v->row->obj) {
            row_columns(v->row, name, len, why, whylen);
            return SB_TL_ERROR;
        }
        if (rc == SB_TL_UNKNOWN) {
            snprintf(why, whylen, "no such key in the row's object");
            return SB_TL_ERROR;
        }
        return rc;
    }
    if (!v->path)
        return SB_TL_UNKNOWN;
    const char *rep = NULL;
    if (NAME_IS("path"))
        rep = v->path;
    else if (NAME_IS("name"))
        rep = v->name;
    else if (NAME_IS("stem"))
        rep = v->stem;
    else if (NAME_IS("ext"))
        rep = v->ext;
    else if (NAME_IS("dir"))
        rep = v->dir;
    if (rep) {
        *out = (struct sb_tvalue){rep, SB_TV_TEXT};
        return SB_TL_FOUND;
    }
    if (NAME_IS("index")) {
        snprintf(v->num, sizeof v->num, "%d", v->index);
        *out = (struct sb_tvalue){v->num, SB_TV_NUMBER};
        return SB_TL_FOUND;
    }
    return SB_TL_UNKNOWN;
}

/*
 * A job template's string for one job. Without a template (a plain job) it stays as
 * written; a foreach entry keeps braces that name nothing it knows (they are text);
 * a catalogue row must know every name. NULL after an error, told at node at.
 */
static char *expand(struct mctx *c, const struct ynode *at, const char *s, struct tvars *v, int flags,
                    enum sb_tv_type *type)
{
    if (type)
        *type = SB_TV_TEXT;
    if (!v)
        return sb_strdup(s);
    char why[SB_ERRLEN];
    char *r = sb_template_expand(s, tvar_lookup, v, flags | (v->row || v->strict ? 0 : SB_T_KEEP_UNKNOWN), type, why, sizeof why);
    if (!r)
        merr(c, at, "%s", why); /* a row's job is labelled with its file and line */
    return r;
}

struct report_ctx {
    struct mctx *c;
    const struct ynode *job, *params, *defaults;
};

/* Maps a param problem to the line of the param that caused it. */
static void on_check(void *ud, int is_error, const char *key, const char *msg)
{
    struct report_ctx *r = ud;
    const struct ynode *at = r->job;
    if (key) {
        const struct ynode *k = r->params ? map_key(r->params, key) : NULL;
        if (!k && r->defaults)
            k = map_key(r->defaults, key);
        if (k)
            at = k;
    }
    if (is_error) {
        merr(r->c, at, "%s", msg);
    } else if (!r->c->quiet) {
        struct mctx *c = r->c;
        char *wkey = sb_asprintf("%d:%d:%s", at->line, at->col, msg);
        struct warning *w = c->warned ? sb_map_get(c->warned, wkey) : NULL;
        if (w) {
            w->jobs++;
            free(wkey);
            return;
        }
        if (!c->warned)
            c->warned = sb_map_new();
        w = sb_calloc(1, sizeof *w);
        *w = (struct warning){at->line, at->col, sb_strdup(msg), sb_strdup(c->job ? c->job : "?"), 1};
        sb_map_put(c->warned, wkey, w);
        free(wkey);
        c->warnings = sb_realloc(c->warnings, (size_t)(c->n_warnings + 1) * sizeof *c->warnings);
        c->warnings[c->n_warnings++] = w;
    }
}

/*
 * Logs the warnings of the checking reading, each place and message once: a param in
 * defaults or a template warned about for 500 jobs is one line saying so.
 */
static void flush_warnings(struct mctx *c)
{
    for (int i = 0; i < c->n_warnings; i++) {
        struct warning *w = c->warnings[i];
        if (w->jobs == 1)
            sb_warn("%s:%d:%d: job %s: %s", c->name, w->line, w->col, w->first_job, w->msg);
        else
            sb_warn("%s:%d:%d: %s (for %d jobs, the first %s)", c->name, w->line, w->col, w->msg, w->jobs,
                    w->first_job);
        free(w->msg);
        free(w->first_job);
        free(w);
    }
    free(c->warnings);
    c->warnings = NULL;
    c->n_warnings = 0;
    sb_map_free(c->warned, NULL);
    c->warned = NULL;
}

/* The URL for a local file under media.root, with each path segment escaped. */
static char *prefix_url(struct mctx *c, const struct ynode *at, const char *path)
{
    char real[PATH_MAX];
    if (!c->root_real || !c->m->media.url_prefix || !realpath(path, real))
        return NULL; /* a missing file is reported as the job's image problem; a missing prefix, as media's */
    size_t rl = strlen(c->root_real);
    if (strncmp(real, c->root_real, rl) != 0 || (real[rl] != '/' && strcmp(c->root_real, "/") != 0)) {
        merr(c, at, "%s is not under media.root (%s): url_prefix cannot name it", path, c->root_real);
        return NULL;
    }
    const char *rel = real + rl + (strcmp(c->root_real, "/") != 0);
    struct sb_buf b;
    sb_buf_init(&b, 64 * 1024);
    const char *pre = c->m->media.url_prefix;
    sb_buf_puts(&b, pre);
    if (pre[0] && pre[strlen(pre) - 1] != '/')
        sb_buf_puts(&b, "/");
    while (*rel) {
        const char *slash = strchr(rel, '/');
        size_t n = slash ? (size_t)(slash - rel) : strlen(rel);
        char *esc = curl_easy_escape(NULL, rel, (int)n);
        sb_buf_puts(&b, esc ? esc : "");
        curl_free(esc);
        rel += n;
        if (*rel == '/') {
            sb_buf_puts(&b, "/");
            rel++;
        }
    }
    return b.data;
}

/* Whether s is one placeholder alone, "{...}". */
static int single_placeholder(const char *s)
{
    size_t n = strlen(s);
    return n > 2 && s[0] == '{' && s[1] != '{' && s[n - 1] == '}' && strcspn(s + 1, "{}\n") == n - 2;
}

/* A param's value from a placeholder alone, typed as its source or as the model wants it. */
static cJSON *typed_value(struct mctx *c, const char *key, const char *text, enum sb_tv_type type)
{
    char *end;
    errno = 0;
    double d = strtod(text, &end);
    int number = text[0] && !strchr(" \t\n", text[0]) && *end == '\0' && errno == 0 && isfinite(d);
    int boolean = strcmp(text, "true") == 0 || strcmp(text, "false") == 0;
    int want = key ? sb_param_type(c->m->provider, c->m->model, key) : SB_PARAM_ANY;
    if (number && (type == SB_TV_NUMBER || want == SB_PARAM_NUMBER || want == SB_PARAM_UNCHECKED))
        return cJSON_CreateNumber(d);
    if (boolean && (type == SB_TV_BOOL || want == SB_PARAM_BOOL || want == SB_PARAM_UNCHECKED))
        return cJSON_CreateBool(text[0] == 't');
    return cJSON_CreateString(text);
}

/* Puts nv in it's place in obj, under it's key (cJSON_ReplaceItemViaPointer does not give it the key). */
static void replace_item(cJSON *obj, cJSON *it, cJSON *nv)
{
    if (it->string)
        nv->string = strdup(it->string); /* freed by cJSON with the item (its allocator is free) */
    cJSON_ReplaceItemViaPointer(obj, it, nv);
}

/*
 * Fills the placeholders in a job's own params (strings at any depth). A param that is
 * one placeholder alone takes its value's type, or the model's ("3" for max_images is
 * 3), and is left out when the value is empty (the defaults' then apply).
 */
static void expand_params(struct mctx *c, const struct ynode *at, cJSON *obj, struct tvars *v, int top)
{
    cJSON *it = obj->child;
    while (it) {
        cJSON *next = it->next;
        const struct ynode *kn = top && it->string ? map_key(at, it->string) : NULL;
        if (cJSON_IsString(it) && sb_template_has(it->valuestring)) {
            int alone = single_placeholder(it->valuestring);
            enum sb_tv_type type;
            char *val = expand(c, kn ? kn : at, it->valuestring, v, 0, &type);
            if (!val) {
                ;
            } else if (alone && !val[0] && cJSON_IsObject(obj)) {
                cJSON_DetachItemViaPointer(obj, it);
                cJSON_Delete(it);
            } else if (alone) {
                cJSON *nv = typed_value(c, top ? it->string : NULL, val, type);
                replace_item(obj, it, nv);
            } else {
                replace_item(obj, it, cJSON_CreateString(val));
            }
            free(val);
        } else if (cJSON_IsObject(it) || cJSON_IsArray(it)) {
            expand_params(c, kn ? kn : at, it, v, 0);
        }
        it = next;
    }
}

/*
 * The job's output path template (output_name with its placeholders filled but {k} and
 * {ext}), checked: under output_dir whatever the values (no absolute path, no "..",
 * no hidden or empty part, no folder that is a link), one path per output (it has {k}
 * when the job asks for several), and no two jobs sharing one. NULL for the default.
 */
static char *output_stem(struct mctx *c, const struct ynode *jn, struct sb_jobspec *j, struct tvars *v)
{
    const struct ynode *on = map_get(jn, "output_name");
    const char *tmpl = on ? get_str(c, on, "output_name") : c->m->output_name;
    if (!tmpl)
        return NULL;
    const struct ynode *at = on ? on : jn;
    size_t tl = strlen(tmpl);
    if (tl < 6 || strcmp(tmpl + tl - 6, ".{ext}") != 0) {
        merr(c, at, "output_name \"%s\" must end in .{ext} (the extension of the image's format)", tmpl);
        return NULL;
    }
    struct tvars ov = v ? *v : (struct tvars){0};
    ov.out_id = j->id;
    ov.strict = 1;
    char *t = sb_strndup(tmpl, tl - 6);
    char *stem = expand(c, at, t, &ov, SB_T_NO_EMPTY, NULL);
    free(t);
    if (!stem)
        return NULL;
    const char *where = v && v->row ? v->from : NULL;
    char why[300] = "";
    if (stem[0] == '/')
        snprintf(why, sizeof why, "is an absolute path");
    for (const char *p = stem; !why[0] && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            snprintf(why, sizeof why, "holds a control character (a line break?)");
    for (const char *p = stem; !why[0] && *p;) {
        size_t n = strcspn(p, "/");
        if (n == 0)
            snprintf(why, sizeof why, "has an empty folder name");
        else if (p[0] == '.')
            snprintf(why, sizeof why, "has a part starting with a dot (\"%.*s\")", (int)(n > 40 ? 40 : n), p);
        else if (n > 200)
            snprintf(why, sizeof why, "has a part longer than 200 bytes");
        p += n + (p[n] == '/');
        if (!why[0] && !*p && p[-1] == '/')
            snprintf(why, sizeof why, "ends in a folder");
    }
    if (!why[0] && j->images_requested > 1 && !strstr(stem, "{k}"))
        snprintf(why, sizeof why, "has no {k}, but the job asks for %d images: they would write one file",
                 j->images_requested);
    if (why[0]) {
        merr(c, at, "output_name gives \"%s.{ext}\", which %s", stem, why);
        free(stem);
        return NULL;
    }
    if (c->checking) {
        void *prev = c->outs ? sb_map_get(c->outs, stem) : NULL;
        if (prev) {
            merr(c, at, "output_name gives job %s the output paths \"%s.{ext}\" of an earlier job (line %d)%s%s",
                 j->id, stem, (int)(intptr_t)prev, where ? ", row in " : "", where ? where : "");
            free(stem);
            return NULL;
        }
        if (!c->outs)
            c->outs = sb_map_new();
        sb_map_put(c->outs, stem, (void *)(intptr_t)jn->line);
        /* A folder that already exists as a link would take outputs elsewhere. */
        for (char *slash = strchr(stem, '/'); slash; slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            if (!c->dirs_seen)
                c->dirs_seen = sb_map_new();
            if (!sb_map_get(c->dirs_seen, stem)) {
                char *full = sb_path_join(c->m->output_dir, stem);
                struct stat st;
                int link = lstat(full, &st) == 0 && !S_ISDIR(st.st_mode);
                free(full);
                if (link) {
                    merr(c, at, "output_name puts outputs in %s/%s, which exists and is not a folder (a link "
                         "is not followed)", c->m->output_dir, stem);
                    *slash = '/';
                    free(stem);
                    return NULL;
                }
                sb_map_put(c->dirs_seen, stem, (void *)1);
            }
            *slash = '/';
        }
    }
    return stem;
}

static void add_job(struct mctx *c, const struct ynode *jn, const cJSON *defaults,
                    const struct ynode *defaults_node, struct tvars *v, int ordinal)
{
    struct sb_manifest *m = c->m;
    char label[300];
    int errors_before = c->errors;
    int in_row = v && v->row;

    if (in_row)
        snprintf(label, sizeof label, "#%d (%.100s:%d)", ordinal, v->from, v->row->line);
    else
        snprintf(label, sizeof label, "#%d", ordinal);
    c->job = label;
    const struct ynode *idn = map_get(jn, "id"), *pn = map_get(jn, "prompt");
    const struct ynode *imn = map_get(jn, "images"), *parn = map_get(jn, "params");

    struct sb_jobspec j;
    memset(&j, 0, sizeof j);
    j.line = jn->line;
    j.column = jn->col;

    if (idn) {
        const char *s = get_str(c, idn, "id");
        if (s) {
            j.id = expand(c, idn, s, v, SB_T_NO_EMPTY, NULL);
            j.id_given = 1;
            if (in_row && j.id)
                snprintf(label, sizeof label, "%.150s (%.100s:%d)", j.id, v->from, v->row->line);
            else if (j.id)
                snprintf(label, sizeof label, "%.150s", j.id);
            if (j.id && !j.id[0])
                merr(c, idn, "id is empty after its template");
            else if (j.id && !sb_valid_id(j.id))
                merr(c, idn, "id \"%s\" is not valid: use 1 to 128 of A-Z a-z 0-9 . _ - , not starting with a dot", j.id);
        }
    }
    if (!pn) {
        merr(c, jn, "prompt is required");
    } else {
        const char *s = get_str(c, pn, "prompt");
        if (s)
            j.prompt = expand(c, pn, s, v, SB_T_NO_EMPTY, NULL);
    }
    if (!imn) {
        merr(c, jn, "images is required (1 to %d reference images)", SB_MAX_REF_IMAGES);
    } else if (imn->type != Y_SEQ) {
        merr(c, imn, "images must be a list, not %s", type_name(imn));
    } else if (imn->n > SB_MAX_REF_IMAGES) {
        merr(c, imn, "a job takes at most %d reference images, this one has %zu", SB_MAX_REF_IMAGES, imn->n);
    } else {
        j.images = sb_calloc(imn->n ? imn->n : 1, sizeof *j.images);
        for (size_t i = 0; i < imn->n; i++) {
            const struct ynode *in = imn->kids[i];
            const char *s = get_str(c, in, "an image");
            if (!s)
                continue;
            char *spec = expand(c, in, s, v, SB_T_NO_EMPTY, NULL);
            if (!spec)
                continue;
            struct sb_image_ref *r = &j.images[j.n_images++];
            r->spec = spec;
            char why[SB_ERRLEN];
            if (strstr(r->spec, "://")) {
                /* A second reading is of the very text checked (its hash is compared at the
                   end, and a change fails the reading): the URL was found good then. */
                if (!c->quiet && sb_check_url(r->spec, why, sizeof why) != SB_OK)
                    merr(c, in, "%s", why);
                r->url = sb_strdup(r->spec);
                continue;
            }
            if (strncmp(r->spec, "data:", 5) == 0) {
                merr(c, in, "data: URIs are not supported in images; give a file path or an http(s) URL");
                continue;
            }
            char *path = sb_path_join(m->dir, r->spec);
            struct sb_localfile *f = local_file(m, path);
            r->file = f;
            if (m->media.upload == SB_UPLOAD_NONE) {
                merr(c, in, "local file %s needs a URL, but media.upload is none: set media.upload "
                     "to provider or url_prefix, or give an http(s) URL", r->spec);
            } else if (m->media.upload == SB_UPLOAD_PROVIDER && !sb_providers[m->provider]->has_upload) {
                merr(c, in, "local file %s cannot be sent: %s has no upload call. Set "
                     "media.upload: url_prefix and media.url_prefix (where media.root is published), "
                     "or give https URLs", r->spec, sb_providers[m->provider]->title);
            } else if (m->media.upload == SB_UPLOAD_URL_PREFIX) {
                r->url = prefix_url(c, in, path);
            }
            if (f->problem && !j.invalid)
                j.invalid = sb_asprintf("image %d: %s", j.n_images, f->problem);
            free(path);
        }
    }
    cJSON *params = defaults ? cJSON_Duplicate(defaults, 1) : cJSON_CreateObject();
    if (parn && !is_null(parn)) {
        if (parn->type != Y_MAP) {
            merr(c, parn, "params must be a mapping, not %s", type_name(parn));
        } else {
            cJSON *own = to_json(c, parn);
            /* Only rows: a foreach entry's params have always been sent as written (their
               fingerprints, and so what is paid for, stay as they were). */
            if (v && v->row)
                expand_params(c, parn, own, v, 1);
            cJSON *it = own->child;
            while (it) {
                cJSON *next = it->next;
                cJSON_DetachItemViaPointer(own, it);
                /* cJSON frees the replacement's own key before copying the one given: pass a copy. */
                char *key = sb_strdup(it->string);
                if (cJSON_GetObjectItemCaseSensitive(params, key))
                    cJSON_ReplaceItemInObjectCaseSensitive(params, key, it);
                else
                    cJSON_AddItemToObject(params, key, it);
                free(key);
                it = next;
            }
            cJSON_Delete(own);
        }
    }
    j.params = params;
    /* Checked whatever else is wrong with the job: one validate tells every problem. */
    if (j.prompt) {
        struct report_ctx rc = {c, jn, parn && parn->type == Y_MAP ? parn : NULL, defaults_node};
        sb_check_job_params(m->provider, m->model, j.prompt, params, j.n_images,
                            &j.images_requested, on_check, &rc);
    }
    if (c->errors == errors_before) {
        if (!c->checking || !j.id || c->m->src->kept)
            sb_fingerprint(m->provider, m->model, j.prompt, params, j.images, j.n_images, j.fingerprint);
        if (!j.id)
            j.id = sb_strndup(j.fingerprint, 12);
        j.output_name = output_stem(c, jn, &j, v);
        void *prev = c->ids ? sb_map_get(c->ids, j.id) : NULL;
        if (prev)
            merr(c, idn ? idn : jn, "job id %s is used twice (first at line %d)%s", j.id,
                 (int)(intptr_t)prev, j.id_given ? "" : ": the two jobs are identical");
        else if (c->ids)
            sb_map_put(c->ids, j.id, (void *)(intptr_t)jn->line);
    }
    if (c->checking && j.invalid) {
        if (c->n_unusable < MAX_LOGGED_ERRORS)
            c->unusable[c->n_unusable] = sb_asprintf("%s:%d:%d: job %s: %s", c->name, j.line, j.column,
                                                     j.id ? j.id : label, j.invalid);
        c->n_unusable++;
    }
    if (c->errors == errors_before) {
        if (c->fn && !c->stopped && c->fn(m, &j, c->emitted, c->fn_ud) != 0)
            c->stopped = 1;
        c->emitted++;
    }
    sb_jobspec_clear(&j);
    c->job = NULL;
}

/* A directory in the pattern that does not exist just matches nothing; others abort. */
static int glob_error(const char *path, int eerrno)
{
    (void)path;
    return eerrno != ENOENT && eerrno != ENOTDIR;
}

/*
 * Whether a foreach match lies in an output directory, and so is left out: this
 * manifest's own (its outputs would come back as new jobs on every run, each
 * paid for), or another run's (one holding a .seedbatch state) that the
 * pattern reached through a wildcard in its directory part, as a star for the
 * directory does beside "other.out". A pattern that names such a directory
 * outright (edits of another batch's outputs) keeps its matches.
 */
static int in_output_dir(const char *parent_real, const char *own_real, int dir_wild)
{
    if (own_real && strcmp(parent_real, own_real) == 0)
        return 1;
    if (!dir_wild)
        return 0;
    char *state = sb_asprintf("%s/.seedbatch", parent_real);
    struct stat st;
    int is = stat(state, &st) == 0 && S_ISDIR(st.st_mode);
    free(state);
    return is;
}

/* Expands one foreach entry: a job per matching file, in sorted order. */
static void add_foreach(struct mctx *c, const struct ynode *jn, const cJSON *defaults,
                        const struct ynode *defaults_node, int *ordinal)
{
    const struct ynode *fn = map_get(jn, "foreach");
    const char *pat = get_str(c, fn, "foreach");
    if (!pat)
        return;
    if (strstr(pat, "**")) {
        /* glob(3) reads ** as *: one level, where a user means any depth. Fewer jobs, silently. */
        merr(c, fn, "foreach pattern \"%s\": ** (any depth) is not supported; write one * per directory "
             "level, e.g. \"products/*/*.jpg\"", pat);
        return;
    }
    /*
     * The manifest's directory is a path, not a pattern: "catalog [2026]" or
     * "sale*" must match only themselves, so their glob characters are escaped.
     */
    char *full = sb_path_join(c->m->dir, pat);
    struct sb_buf esc;
    sb_buf_init(&esc, SIZE_MAX / 2);
    for (const char *d = c->m->dir; pat[0] != '/' && *d; d++) {
        if (strchr("*?[]\\", *d))
            sb_buf_append(&esc, "\\", 1);
        sb_buf_append(&esc, d, 1);
    }
    char *pattern = sb_path_join(esc.data ? esc.data : "", pat);
    free(esc.data);
    glob_t g;
    int grc = glob(pattern, 0, glob_error, &g);
    free(pattern);
    if (grc == GLOB_NOMATCH) {
        merr(c, fn, "foreach pattern \"%s\" matches no files", pat);
    } else if (grc != 0) {
        merr(c, fn, "foreach pattern \"%s\" could not be read (%s)", pat,
             grc == GLOB_ABORTED ? "a directory is unreadable" : "out of memory");
    } else {
        size_t prefix = strcmp(full, pat) == 0 ? 0 : strlen(full) - strlen(pat);
        int index = 0, left_out = 0;
        char own[PATH_MAX];
        const char *own_real = realpath(c->m->output_dir, own);
        const char *last_slash = strrchr(pat, '/');
        int dir_wild = last_slash && strcspn(pat, "*?[") < (size_t)(last_slash - pat);
        /* Matches come sorted, a directory's together: its real path and verdict are found once. */
        char *parent = NULL, real[PATH_MAX];
        const char *pr = NULL;
        int out = 0;
        for (size_t i = 0; i < g.gl_pathc; i++) {
            struct stat st;
            if (stat(g.gl_pathv[i], &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            char *dir = sb_dirname(g.gl_pathv[i]);
            if (parent && strcmp(dir, parent) == 0) {
                free(dir);
            } else {
                free(parent);
                parent = dir;
                pr = realpath(parent, real) ? real : parent;
                out = in_output_dir(pr, own_real, dir_wild);
            }
            if (out) {
                left_out++;
                continue;
            }
            const char *path = g.gl_pathv[i] + prefix;
            const char *slash = strrchr(path, '/');
            const char *name = slash ? slash + 1 : path;
            const char *dot = strrchr(name, '.');
            char *stem = dot && dot != name ? sb_strndup(name, (size_t)(dot - name)) : sb_strdup(name);
            const char *ps = strrchr(pr, '/');
            struct tvars v = {.path = path, .name = name, .stem = stem, .ext = dot && dot != name ? dot + 1 : "",
                              .dir = ps && ps[1] ? ps + 1 : pr, .index = ++index};
            add_job(c, jn, defaults, defaults_node, &v, ++*ordinal);
            free(stem);
        }
        free(parent);
        if (index == 0 && left_out)
            merr(c, fn, "foreach pattern \"%s\" matches only files in output directories (%d): those are "
                 "left out, so that outputs never come back as new jobs", pat, left_out);
        else if (index == 0)
            merr(c, fn, "foreach pattern \"%s\" matches no regular files", pat);
        else if (left_out && !c->quiet)
            sb_info("%s: foreach \"%s\": %d file%s in output directories left out (outputs are not taken "
                    "as inputs)", c->name, pat, left_out, SB_S(left_out));
        globfree(&g);
    }
    free(full);
}

struct from_ctx {
    struct mctx *c;
    const struct ynode *jn, *fn, *defaults_node;
    const cJSON *defaults;
    const char *from;
    int *ordinal;
};

static int from_row(struct sb_row *r, void *ud)
{
    struct from_ctx *x = ud;
    struct tvars v = {.row = r, .from = x->from};
    add_job(x->c, x->jn, x->defaults, x->defaults_node, &v, ++*x->ordinal);
    return x->c->stopped;
}

static void from_bad_row(int line, const char *why, void *ud)
{
    struct from_ctx *x = ud;
    ++*x->ordinal;
    merr(x->c, x->fn, "%s:%d: %s", x->from, line, why);
}

/* Expands one from entry: a job per row of a catalogue file, in file order. */
static void add_from(struct mctx *c, const struct ynode *jn, const cJSON *defaults,
                     const struct ynode *defaults_node, int *ordinal)
{
    const struct ynode *fn = map_get(jn, "from");
    const char *from = get_str(c, fn, "from");
    if (!from)
        return;
    if (!sb_rows_format_known(from)) {
        merr(c, fn, "from: %s is not a .csv, .tsv or .jsonl file", from);
        return;
    }
    char *path = sb_path_join(c->m->dir, from);
    struct from_ctx x = {c, jn, fn, defaults_node, defaults, from, ordinal};
    char err[SB_ERRLEN];
    int before = *ordinal;
    if (sb_rows_read(path, from_row, from_bad_row, &x, err, sizeof err) != SB_OK)
        merr(c, fn, "from: %s", err);
    else if (*ordinal == before)
        merr(c, fn, "from: %s has no rows", from);
    free(path);
}

static void read_limits(struct mctx *c, const struct ynode *n)
{
    static const char *keys[] = {"concurrency", "requests_per_second", "max_attempts",
                                 "poll_interval", "job_timeout", "max_cost", "unreachable_timeout",
                                 "submit_timeout", "download_patience", NULL};
    struct sb_limits *l = &c->m->limits;
    const struct ynode *v;
    if (n->type != Y_MAP) {
        merr(c, n, "limits must be a mapping, not %s", type_name(n));
        return;
    }
    check_keys(c, n, keys, "limits");
    if ((v = map_get(n, "concurrency")))
        get_int(c, v, "limits.concurrency", 1, 10000, &l->concurrency);
    if ((v = map_get(n, "requests_per_second")))
        get_num(c, v, "limits.requests_per_second", 0, 100000, &l->requests_per_second);
    if ((v = map_get(n, "max_attempts")))
        get_int(c, v, "limits.max_attempts", 1, 100, &l->max_attempts);
    if ((v = map_get(n, "poll_interval"))) {
        get_duration(c, v, "limits.poll_interval", 100, &l->poll_interval_ms);
        l->poll_interval_given = 1;
    }
    if ((v = map_get(n, "job_timeout")))
        get_duration(c, v, "limits.job_timeout", 1000, &l->job_timeout_ms);
    if ((v = map_get(n, "max_cost")) && !is_null(v))
        get_num(c, v, "limits.max_cost", 0, 1e9, &l->max_cost);
    if ((v = map_get(n, "unreachable_timeout")))
        get_duration(c, v, "limits.unreachable_timeout", 1000, &l->unreachable_ms);
    if ((v = map_get(n, "submit_timeout")))
        get_duration(c, v, "limits.submit_timeout", 1000, &l->submit_timeout_ms);
    if ((v = map_get(n, "download_patience")))
        get_duration(c, v, "limits.download_patience", 1000, &l->download_patience_ms);
}

static void read_media(struct mctx *c, const struct ynode *n)
{
    static const char *keys[] = {"upload", "url_prefix", "root", "upload_ttl", NULL};
    struct sb_media *md = &c->m->media;
    const struct ynode *v;
    if (n->type != Y_MAP) {
        merr(c, n, "media must be a mapping, not %s", type_name(n));
        return;
    }
    check_keys(c, n, keys, "media");
    if ((v = map_get(n, "upload"))) {
        const char *s = get_str(c, v, "media.upload");
        if (s && strcmp(s, "provider") == 0)
            md->upload = SB_UPLOAD_PROVIDER;
        else if (s && strcmp(s, "url_prefix") == 0)
            md->upload = SB_UPLOAD_URL_PREFIX;
        else if (s && strcmp(s, "none") == 0)
            md->upload = SB_UPLOAD_NONE;
        else if (s)
            merr(c, v, "media.upload must be provider, url_prefix or none");
    }
    if ((v = map_get(n, "url_prefix"))) {
        const char *s = get_str(c, v, "media.url_prefix");
        char why[SB_ERRLEN];
        if (s && sb_check_url(s, why, sizeof why) != SB_OK)
            merr(c, v, "media.url_prefix: %s", why);
        else if (s)
            md->url_prefix = sb_strdup(s);
    }
    if ((v = map_get(n, "root"))) {
        const char *s = get_str(c, v, "media.root");
        if (s) {
            free(md->root);
            md->root = sb_path_join(c->m->dir, s);
        }
    }
    if ((v = map_get(n, "upload_ttl")))
        get_duration(c, v, "media.upload_ttl", 1000, &md->upload_ttl_ms);
    if (md->upload == SB_UPLOAD_URL_PREFIX && !md->url_prefix && !map_get(n, "url_prefix"))
        merr(c, n, "media.upload is url_prefix but media.url_prefix is not set");
}

/* Reads everything but the jobs themselves. Returns the jobs node (NULL after an error). */
/*
 * Every key but jobs. Returns -1 after an error that ends the reading there, 0
 * otherwise (errors the reading goes on after are counted in c).
 */
static int interpret_settings(struct mctx *c, const struct ynode *root)
{
    static const char *keys[] = {"version", "provider", "model", "output_dir", "defaults", "limits",
                                 "price_per_image", "media", "jobs", "api_key_file", "allow_unknown_model",
                                 "output_name", NULL};
    struct sb_manifest *m = c->m;
    const struct ynode *v;

    if (root->type != Y_MAP) {
        merr(c, root, "the manifest must be a mapping with version, provider, model and jobs");
        return -1;
    }
    /* Every problem is told in one pass: only a manifest whose provider or model cannot be
       read stops here (its jobs cannot be checked without them). */
    check_keys(c, root, keys, "the manifest");
    if (!(v = map_get(root, "version")))
        merr(c, root, "version is required (version: 1)");
    else
        get_int(c, v, "version", 1, 1, &m->version);
    int fatal = 0;
    if (!(v = map_get(root, "provider"))) {
        merr(c, root, "provider is required (atlascloud or runcomfy)");
        fatal = 1;
    } else {
        const char *s = get_str(c, v, "provider");
        if (!s || sb_provider_parse(s, &m->provider) != SB_OK) {
            if (s)
                merr(c, v, "provider must be atlascloud or runcomfy, not \"%s\"", s);
            fatal = 1;
        }
    }
    const struct ynode *mv = map_get(root, "model");
    if (!mv) {
        merr(c, root, "model is required");
        fatal = 1;
    } else {
        const char *s = get_str(c, mv, "model");
        if (s)
            m->model = sb_strdup(s);
        else
            fatal = 1;
    }
    if (fatal)
        return -1;
    const struct ynode *allow = map_get(root, "allow_unknown_model");
    int allow_unknown = 0;
    if (allow && get_bool(c, allow, "allow_unknown_model", &allow_unknown) != SB_OK)
        allow_unknown = 1; /* told; the model is not refused on top of it */
    sb_model_lookup(m->provider, m->model, &m->model_info);
    if (!m->model_info.known) {
        const struct sb_provider_ops *ops = sb_providers[m->provider];
        const char *near = sb_closest(m->model, ops->models);
        char hint[300] = "";
        if (near)
            snprintf(hint, sizeof hint, " (did you mean %s?)", near);
        if (allow_unknown)
            sb_warn("%s:%d:%d: model %s is not one seedbatch knows for %s%s: its params are not checked",
                    c->name, mv->line, mv->col, m->model, ops->title, hint);
        else
            merr(c, mv, "model %s is not one seedbatch knows for %s%s; a model the provider added since "
                 "runs with allow_unknown_model: true (its params then go unchecked)", m->model, ops->title,
                 hint);
    }
    m->price_per_image = m->model_info.default_price;

    if ((v = map_get(root, "output_dir"))) {
        const char *s = get_str(c, v, "output_dir");
        if (s) {
            free(m->output_dir);
            m->output_dir = sb_path_join(m->dir, s);
        }
    }
    if ((v = map_get(root, "output_name")) && get_str(c, v, "output_name")) {
        free(m->output_name);
        m->output_name = sb_strdup(v->value);
    }
    if ((v = map_get(root, "api_key_file")) && get_str(c, v, "api_key_file"))
        m->api_key_file = sb_path_join(m->dir, v->value);
    if ((v = map_get(root, "price_per_image")))
        get_num(c, v, "price_per_image", 0, 1000, &m->price_per_image);
    if ((v = map_get(root, "limits")) && !is_null(v))
        read_limits(c, v);
    if ((v = map_get(root, "media")) && !is_null(v))
        read_media(c, v);
    if (m->media.upload == SB_UPLOAD_URL_PREFIX) {
        char real[PATH_MAX];
        if (realpath(m->media.root, real))
            m->src->root_real = sb_strdup(real);
        else
            merr(c, map_get(root, "media"), "media.root %s: %s", m->media.root, strerror(errno));
    }
    if ((v = map_get(root, "defaults")) && !is_null(v)) {
        if (v->type != Y_MAP) {
            merr(c, v, "defaults must be a mapping, not %s", type_name(v));
        } else {
            c->defaults_node = v;
            m->src->defaults = to_json(c, v);
        }
    }
    c->root_real = m->src->root_real;
    c->defaults = m->src->defaults;
    return 0;
}

static const struct ynode *interpret_config(struct mctx *c, const struct ynode *root)
{
    const struct ynode *v;
    if (interpret_settings(c, root) != 0)
        return NULL;
    if (!(v = map_get(root, "jobs"))) {
        merr(c, root, "jobs is required: a list of jobs");
        return NULL;
    }
    if (v->type != Y_SEQ) {
        merr(c, v, "jobs must be a non-empty list");
        return NULL;
    }
    return v; /* checked even when the settings had errors: one validate tells them all */
}

/* One item of the jobs list: a job, or a foreach entry that expands to several. */
static void job_item(struct mctx *c, const struct ynode *jn)
{
    static const char *jkeys[] = {"id", "prompt", "images", "params", "foreach", "from", "output_name", NULL};
    if (jn->type != Y_MAP) {
        merr(c, jn, "each job must be a mapping with prompt and images");
        return;
    }
    int before = c->errors;
    char label[160];
    const struct ynode *idn = map_get(jn, "id");
    if (idn && idn->type == Y_SCALAR)
        snprintf(label, sizeof label, "%.150s", idn->value);
    else
        snprintf(label, sizeof label, "#%d", c->ordinal + 1);
    c->job = label;
    check_keys(c, jn, jkeys, "a job");
    c->job = NULL;
    if (c->errors != before)
        return;
    if (map_get(jn, "foreach") && map_get(jn, "from"))
        merr(c, map_get(jn, "from"), "a job takes its values from foreach (files) or from (rows), not both");
    else if (map_get(jn, "from"))
        add_from(c, jn, c->defaults, c->defaults_node, &c->ordinal);
    else if (map_get(jn, "foreach"))
        add_foreach(c, jn, c->defaults, c->defaults_node, &c->ordinal);
    else
        add_job(c, jn, c->defaults, c->defaults_node, NULL, ++c->ordinal);
}

static void on_item(struct ytree *t, const struct ynode *item, void *ud)
{
    (void)t;
    job_item(ud, item);
}

static void free_localfile(void *p)
{
    sb_localfile_free(p);
}

void sb_jobspec_clear(struct sb_jobspec *j)
{
    for (int k = 0; j->images && k < j->n_images; k++) {
        free(j->images[k].spec);
        free(j->images[k].url);
    }
    free(j->images);
    free(j->id);
    free(j->prompt);
    free(j->invalid);
    free(j->output_name);
    cJSON_Delete(j->params);
    memset(j, 0, sizeof *j);
}

void sb_manifest_free(struct sb_manifest *m)
{
    if (!m)
        return;
    if (m->src) {
        if (m->src->cache)
            m->src->opts.cache_close(m->src->cache);
        if (m->src->kept)
            fclose(m->src->kept);
        free(m->src->text);
        cJSON_Delete(m->src->defaults);
        free(m->src->root_real);
        free(m->src);
    }
    sb_map_free(m->files, free_localfile);
    free(m->path);
    free(m->dir);
    free(m->model);
    free(m->output_dir);
    free(m->output_name);
    free(m->api_key_file);
    free(m->media.url_prefix);
    free(m->media.root);
    free(m);
}

static char *default_output_dir(const char *name, const char *dir)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    const char *dot = strrchr(base, '.');
    char *stem = dot && dot != base ? sb_strndup(base, (size_t)(dot - base)) : sb_strdup(base);
    char *rel = sb_asprintf("%s.out", stem);
    char *out = sb_path_join(dir, rel);
    free(stem);
    free(rel);
    return out;
}

/* Opens the manifest's text for one reading. */
static int src_open(const struct sb_manifest *m, struct ysrc *y, char *err, size_t errlen)
{
    memset(y, 0, sizeof *y);
    if (m->src->text) {
        y->text = m->src->text;
        y->len = m->src->len;
    } else {
        y->f = fopen(m->path, "rb");
        if (!y->f)
            return sb_seterr(err, errlen, "cannot read manifest %s: %s", m->path, strerror(errno));
    }
    y->hash = sb_sha256_new();
    return SB_OK;
}

static void src_close(struct ysrc *y, char sha[65])
{
    if (y->f)
        fclose(y->f);
    sb_sha256_final_hex(y->hash, sha);
}

/*
 * A checked job, kept for the store: the lengths of its id, fingerprint, reason
 * it is invalid ("" for none) and spec, its images requested, then the four
 * strings, each NUL-terminated. The store reads these instead of the manifest a
 * second time (YAML, the checks, the spec made again: most of a sync's cost).
 */
static void keep_job(struct sb_msource *src, const struct sb_jobspec *j)
{
    if (!src->kept || src->kept_failed)
        return;
    char *spec = sb_jobspec_json(j);
    const char *fields[] = {j->id, j->fingerprint, j->invalid ? j->invalid : "", spec ? spec : ""};
    uint32_t head[5];
    for (int i = 0; i < 4; i++)
        head[i] = (uint32_t)strlen(fields[i]);
    head[4] = (uint32_t)j->images_requested;
    int ok = spec && fwrite(head, sizeof head, 1, src->kept) == 1;
    for (int i = 0; i < 4 && ok; i++)
        ok = fwrite(fields[i], 1, head[i] + 1, src->kept) == head[i] + 1;
    if (!ok)
        src->kept_failed = 1;
    free(spec);
}

static int count_job(const struct sb_manifest *m, const struct sb_jobspec *j, int index, void *ud)
{
    struct sb_manifest *mm = ud;
    (void)m, (void)index;
    mm->n_jobs++;
    mm->n_invalid += j->invalid != NULL;
    mm->images_requested += j->images_requested;
    keep_job(mm->src, j);
    return 0;
}

/* The checking reading keeps its jobs when asked, in a new unnamed file. */
static void keep_begin(struct sb_manifest *m)
{
    if (m->src->kept)
        fclose(m->src->kept);
    m->src->kept = m->src->opts.keep_jobs ? tmpfile() : NULL;
    m->src->kept_failed = 0;
}

int sb_manifest_each_kept(struct sb_manifest *m, sb_kept_fn fn, void *ud, char *err, size_t errlen)
{
    FILE *f = m->src->kept;
    if (!f || m->src->kept_failed || fflush(f) != 0 || fseek(f, 0, SEEK_SET) != 0)
        return SB_ENOENT;
    char *rec = NULL;
    size_t cap = 0;
    int rc = SB_OK;
    for (int index = 0; index < m->n_jobs && rc == SB_OK; index++) {
        uint32_t head[5];
        size_t need = 0;
        int bad = fread(head, sizeof head, 1, f) != 1;
        for (int i = 0; i < 4 && !bad; i++) {
            bad = head[i] > SB_MANIFEST_MAX_BYTES;
            need += (size_t)head[i] + 1;
        }
        if (!bad && need > cap) {
            cap = need;
            rec = sb_realloc(rec, cap);
        }
        if (bad || fread(rec, 1, need, f) != need) {
            rc = sb_seterr(err, errlen, "%s: the checked jobs could not be read back (temporary file)", m->path);
            break;
        }
        const char *at[4];
        size_t off = 0;
        for (int i = 0; i < 4; i++) {
            at[i] = rec + off;
            off += (size_t)head[i] + 1;
        }
        struct sb_kept_job k = {at[0], at[1], head[2] ? at[2] : NULL, at[3], (int)head[4]};
        if (fn(&k, index, ud) != 0)
            rc = SB_ERR;
    }
    free(rec);
    return rc;
}

/*
 * Reads the jobs list once: every item through job_item, in order. The
 * configuration comes from the first reading. A text that is not the one
 * the manifest was checked from (the file changed meanwhile) is an error.
 */
static int read_jobs(struct sb_manifest *m, struct mctx *c, const struct ynode *config_jobs,
                     char *err, size_t errlen)
{
    struct ytree t;
    struct ysrc y;
    char sha[65];
    memset(&t, 0, sizeof t);
    t.name = m->path;
    t.on_item = on_item;
    t.item_ud = c;
    if (src_open(m, &y, err, errlen) != SB_OK)
        return SB_EIO;
    int rc = ybuild(&t, &y, err, errlen);
    src_close(&y, sha);
    if (rc == SB_OK && !t.jobs) {
        /* The jobs list is not a plain value of the key (an alias): its items are in the tree. */
        const struct ynode *v = t.root && t.root->type == Y_MAP ? map_get(t.root, "jobs") : NULL;
        for (size_t i = 0; v && v->type == Y_SEQ && i < v->n; i++)
            job_item(c, v->kids[i]);
        t.n_items = v && v->type == Y_SEQ ? v->n : 0;
    }
    if (rc == SB_OK && t.n_items == 0 && !c->errors)
        merr(c, config_jobs, "jobs must be a non-empty list");
    yfree(&t);
    if (rc != SB_OK)
        return SB_EINVAL;
    if (m->src->sha[0] && strcmp(sha, m->src->sha) != 0)
        return sb_seterr(err, errlen, "%s changed while it was being read; run again", m->path);
    return SB_OK;
}

static void set_summary(struct mctx *c, char *err, size_t errlen)
{
    if (c->errors == 1)
        sb_seterr(err, errlen, "%s", c->first);
    else
        sb_seterr(err, errlen, "%s: %d errors, the first: %s", c->name, c->errors, c->first);
}

enum { LOAD_TWICE = 1 }; /* load_once: the manifest needs two readings */

/* The first reading's view of the jobs list: the configuration is read when its first item arrives. */
struct first_reading {
    struct mctx *c;
    int started;        /* the keys before jobs were read as the configuration */
    int config_ok;      /* ... without error: the items are checked as they come */
};

static void first_item(struct ytree *t, const struct ynode *item, void *ud)
{
    struct first_reading *f = ud;
    if (!f->started) {
        f->started = 1;
        /* The root mapping, still open: its keys before jobs, and jobs itself without its value. */
        f->config_ok = interpret_settings(f->c, t->stack[0]) == 0;
    }
    if (f->config_ok)
        job_item(f->c, item);
}

static void set_summary(struct mctx *c, char *err, size_t errlen);
static struct sb_manifest *manifest_new(const char *name, const char *dir, const struct sb_load_opts *o);

/*
 * The end of a checking reading. Jobs with an unusable image are told by whoever
 * reads a valid manifest's jobs (validate, the run); an invalid one is read no
 * further, so its errors alone would hide them: they are told here then, with
 * them, so that one validate shows every problem.
 */
static void end_checking(struct mctx *c, int tell)
{
    for (int i = 0; i < c->n_unusable && i < MAX_LOGGED_ERRORS; i++) {
        if (tell)
            sb_error("%s", c->unusable[i]);
        free(c->unusable[i]);
    }
    if (tell && c->n_unusable > MAX_LOGGED_ERRORS)
        sb_error("%s: %d more job%s with an unusable reference image", c->name, c->n_unusable - MAX_LOGGED_ERRORS,
                 SB_S(c->n_unusable - MAX_LOGGED_ERRORS));
    c->n_unusable = 0;
    sb_map_free(c->ids, NULL);
    c->ids = NULL;
    sb_map_free(c->outs, NULL);
    c->outs = NULL;
    sb_map_free(c->dirs_seen, NULL);
    c->dirs_seen = NULL;
}

/*
 * One reading, when the configuration comes before jobs and jobs is the last key
 * (as manifests are usually written): the configuration is read as the first job
 * item arrives and every job is checked as it passes. Whether that held is known
 * only at the end, so what it logs is held back meanwhile. Returns LOAD_TWICE when
 * it did not hold (a key after jobs, no items, an alias for the list, a YAML
 * error, too much logged): the manifest then takes two readings.
 */
static int load_once(struct sb_manifest *m, char *err, size_t errlen)
{
    struct ytree t;
    struct ysrc y;
    struct mctx c;
    memset(&t, 0, sizeof t);
    memset(&c, 0, sizeof c);
    c.m = m;
    c.name = m->path;
    c.ids = sb_map_new();
    c.checking = 1;
    c.fn = count_job;
    c.fn_ud = m;
    keep_begin(m);
    struct first_reading f = {&c, 0, 0};
    t.name = m->path;
    t.on_item = first_item;
    t.item_ud = &f;
    if (src_open(m, &y, err, errlen) != SB_OK) {
        end_checking(&c, 0);
        return LOAD_TWICE;
    }
    sb_log_hold();
    int rc = ybuild(&t, &y, err, errlen);
    src_close(&y, m->src->sha);
    flush_warnings(&c);
    int held = rc == SB_OK && f.started && t.jobs && t.root && t.root->type == Y_MAP &&
               t.root->n >= 2 && t.root->kids[t.root->n - 1] == t.jobs;
    if (sb_log_release(held) != 0 || !held)
        rc = LOAD_TWICE;
    else if (c.errors)
        rc = SB_EINVAL;
    if (rc == SB_EINVAL)
        set_summary(&c, err, errlen);
    end_checking(&c, rc == SB_EINVAL);
    yfree(&t);
    return rc;
}

/* Back to what manifest_new made, keeping the text (a manifest parsed from memory). */
static void manifest_reset(struct sb_manifest *m)
{
    struct sb_manifest *fresh = manifest_new(m->path, m->dir, &m->src->opts);
    fresh->src->text = m->src->text;
    fresh->src->len = m->src->len;
    m->src->text = NULL;
    struct sb_manifest old = *m;
    *m = *fresh;
    *fresh = old;
    sb_manifest_free(fresh);
}

/*
 * Two readings: the first takes the configuration (wherever the keys stand
 * relative to jobs) while dropping job items as they pass; the second checks
 * every job against it. Neither holds more than one job at a time. A manifest
 * whose jobs come last takes one (load_once).
 */
static int load(struct sb_manifest *m, char *err, size_t errlen)
{
    int once = load_once(m, err, errlen);
    if (once != LOAD_TWICE) {
        sb_debug("%s: read once", m->path);
        return once;
    }
    sb_debug("%s: read twice (a key after jobs, or a list that is not plain)", m->path);
    manifest_reset(m);
    err[0] = '\0';
    struct ytree t;
    struct ysrc y;
    memset(&t, 0, sizeof t);
    t.name = m->path;
    if (src_open(m, &y, err, errlen) != SB_OK) {
        sb_error("%s", err);
        return SB_EIO;
    }
    int rc = ybuild(&t, &y, err, errlen);
    src_close(&y, m->src->sha);
    if (rc != SB_OK) {
        sb_error("%s", err);
        yfree(&t);
        return SB_EINVAL;
    }
    struct mctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.name = m->path;
    const struct ynode *jobs = interpret_config(&c, t.root);
    if (jobs) {
        c.ids = sb_map_new();
        c.checking = 1;
        c.fn = count_job;
        c.fn_ud = m;
        keep_begin(m);
        rc = read_jobs(m, &c, jobs, err, errlen);
        flush_warnings(&c);
        end_checking(&c, c.errors > 0);
        if (rc != SB_OK && !c.errors) {
            sb_error("%s", err);
            yfree(&t);
            return rc;
        }
    }
    yfree(&t);
    if (c.errors) {
        set_summary(&c, err, errlen);
        return SB_EINVAL;
    }
    return SB_OK;
}

static struct sb_manifest *manifest_new(const char *name, const char *dir, const struct sb_load_opts *o)
{
    struct sb_manifest *m = sb_calloc(1, sizeof *m);
    m->path = sb_strdup(name);
    m->dir = sb_strdup(dir);
    m->output_dir = default_output_dir(name, dir);
    m->limits = (struct sb_limits){16, 5.0, 6, 2000, 20 * 60 * 1000, -1.0, 5 * 60 * 1000, 120 * 1000, 3 * 60 * 1000, 0};
    m->media.upload = SB_UPLOAD_PROVIDER;
    m->media.root = sb_strdup(dir);
    m->media.upload_ttl_ms = 6LL * 3600 * 1000;
    m->files = sb_map_new();
    m->src = sb_calloc(1, sizeof *m->src);
    if (o)
        m->src->opts = *o;
    return m;
}

int sb_manifest_parse(const char *name, const char *dir, const char *text, size_t len,
                      struct sb_manifest **out, char *err, size_t errlen)
{
    return sb_manifest_parse_with(name, dir, text, len, NULL, out, err, errlen);
}

int sb_manifest_parse_with(const char *name, const char *dir, const char *text, size_t len,
                           const struct sb_load_opts *o, struct sb_manifest **out, char *err, size_t errlen)
{
    *out = NULL;
    if (len > SB_MANIFEST_MAX_BYTES) {
        sb_seterr(err, errlen, "%s: %zu bytes, over the manifest size limit of " SB_MANIFEST_MAX_TEXT, name, len);
        sb_error("%s", err);
        return SB_ETOOBIG;
    }
    struct sb_manifest *m = manifest_new(name, dir, o);
    m->src->text = sb_malloc(len + 1);
    memcpy(m->src->text, text, len);
    m->src->text[len] = '\0';
    m->src->len = len;
    int rc = load(m, err, errlen);
    if (rc != SB_OK) {
        sb_manifest_free(m);
        return rc;
    }
    files_state_close(m);
    *out = m;
    return SB_OK;
}

int sb_manifest_load(const char *path, struct sb_manifest **out, char *err, size_t errlen)
{
    return sb_manifest_load_with(path, NULL, out, err, errlen);
}

int sb_manifest_load_with(const char *path, const struct sb_load_opts *o, struct sb_manifest **out, char *err,
                          size_t errlen)
{
    struct stat st;
    *out = NULL;
    int missing = stat(path, &st) != 0;
    if (missing || !S_ISREG(st.st_mode)) {
        sb_seterr(err, errlen, "cannot read manifest %s: %s", path, missing ? strerror(errno) : "not a regular file");
        sb_error("%s", err);
        return SB_EIO;
    }
    if (st.st_size > (off_t)SB_MANIFEST_MAX_BYTES) {
        sb_seterr(err, errlen, "%s: %lld bytes, over the manifest size limit of " SB_MANIFEST_MAX_TEXT, path,
                  (long long)st.st_size);
        sb_error("%s", err);
        return SB_ETOOBIG;
    }
    char *dir = sb_dirname(path);
    struct sb_manifest *m = manifest_new(path, dir, o);
    free(dir);
    int rc = load(m, err, errlen);
    if (rc != SB_OK) {
        sb_manifest_free(m);
        return rc;
    }
    files_state_close(m);
    *out = m;
    return SB_OK;
}

int sb_manifest_each_job(struct sb_manifest *m, sb_job_fn fn, void *ud, char *err, size_t errlen)
{
    struct mctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.name = m->path;
    c.quiet = 1;
    c.fn = fn;
    c.fn_ud = ud;
    c.root_real = m->src->root_real;
    c.defaults = m->src->defaults;
    int rc = read_jobs(m, &c, NULL, err, errlen);
    if (rc != SB_OK)
        return rc;
    if (c.errors)
        return sb_seterr(err, errlen, "%s changed since it was checked: %s", m->path, c.first);
    if (c.stopped)
        return SB_ERR;
    if (c.emitted != m->n_jobs)
        return sb_seterr(err, errlen, "%s now gives %d jobs, not %d: its files changed; run again",
                         m->path, c.emitted, m->n_jobs);
    return SB_OK;
}

/* Keys whose value is missing are left out, as cJSON leaves out an item it could not make. */
char *sb_jobspec_json(const struct sb_jobspec *j)
{
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    sb_buf_append(&b, "{", 1);
    if (j->prompt) {
        sb_buf_puts(&b, "\"prompt\":");
        sb_jw_str(&b, j->prompt);
        sb_buf_append(&b, ",", 1);
    }
    if (j->params) {
        sb_buf_puts(&b, "\"params\":");
        if (sb_jw_value(&b, j->params, 0) != SB_OK) {
            sb_buf_free(&b);
            return NULL;
        }
        sb_buf_append(&b, ",", 1);
    }
    sb_buf_puts(&b, "\"images\":[");
    for (int k = 0; k < j->n_images; k++) {
        const struct sb_image_ref *im = &j->images[k];
        sb_buf_puts(&b, k ? ",{" : "{");
        const char *sep = "";
        if (im->spec) {
            sb_buf_puts(&b, "\"spec\":");
            sb_jw_str(&b, im->spec);
            sep = ",";
        }
        if (im->url) {
            sb_buf_puts(&b, sep);
            sb_buf_puts(&b, "\"url\":");
            sb_jw_str(&b, im->url);
            sep = ",";
        }
        if (im->file) {
            sb_buf_puts(&b, sep);
            sb_buf_puts(&b, "\"file\":");
            sb_jw_str(&b, im->file->path);
        }
        sb_buf_append(&b, "}", 1);
    }
    sb_buf_puts(&b, "],\"images_requested\":");
    sb_jw_num(&b, j->images_requested);
    if (j->invalid) {
        sb_buf_puts(&b, ",\"invalid\":");
        sb_jw_str(&b, j->invalid);
    }
    if (j->output_name) {
        sb_buf_puts(&b, ",\"out\":");
        sb_jw_str(&b, j->output_name);
    }
    sb_buf_append(&b, "}", 1);
    return b.data;
}

static char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? sb_strdup(v->valuestring) : NULL;
}

/* A kept spec's images_requested into *out; 0 (and *out untouched) when a damaged state gives it out of range. */
static int images_count(double v, int *out)
{
    if (!(v >= 0 && v <= 1000))
        return 0;
    *out = (int)v;
    return 1;
}

/* The local file a kept spec names, loaded once per manifest (file is freed). */
static struct sb_localfile *image_file(struct sb_manifest *m, char *file)
{
    struct sb_localfile *f = local_file(m, file);
    free(file);
    return f;
}

int sb_jobspec_from_json(struct sb_manifest *m, const char *id, const char *json, struct sb_jobspec *j)
{
    memset(j, 0, sizeof *j);
    cJSON *o = json ? cJSON_Parse(json) : NULL;
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(o, "images");
    const cJSON *par = cJSON_GetObjectItemCaseSensitive(o, "params");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(o, "images_requested");
    if (!cJSON_IsObject(o) || !cJSON_IsArray(imgs) || !cJSON_IsObject(par) || !cJSON_IsNumber(req)) {
        cJSON_Delete(o);
        return SB_EINVAL;
    }
    j->id = sb_strdup(id);
    j->prompt = jstr(o, "prompt");
    j->invalid = jstr(o, "invalid");
    j->output_name = jstr(o, "out");
    j->params = cJSON_Duplicate(par, 1);
    int n = cJSON_GetArraySize(imgs);
    j->images = sb_calloc(n ? (size_t)n : 1, sizeof *j->images);
    int rc = j->prompt && images_count(req->valuedouble, &j->images_requested) ? SB_OK : SB_EINVAL;
    const cJSON *im;
    cJSON_ArrayForEach(im, imgs) {
        struct sb_image_ref *r = &j->images[j->n_images++];
        r->spec = jstr(im, "spec");
        r->url = jstr(im, "url");
        char *file = jstr(im, "file");
        if (file)
            r->file = image_file(m, file);
        if (!r->spec || (!r->url && !r->file))
            rc = SB_EINVAL;
    }
    cJSON_Delete(o);
    if (rc != SB_OK)
        sb_jobspec_clear(j);
    return rc;
}

/* The fields of a spec results.jsonl shows, read with cJSON (as tolerant as it is). */
static void spec_text_cjson(const char *json, struct sb_spec_text *t)
{
    cJSON *spec = json ? cJSON_Parse(json) : NULL;
    const cJSON *imgs = cJSON_GetObjectItemCaseSensitive(spec, "images"), *im;
    t->prompt = jstr(spec, "prompt");
    t->invalid = jstr(spec, "invalid");
    cJSON_ArrayForEach(im, imgs) {
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(im, "spec");
        if (cJSON_IsString(sp) && t->n_images < SB_MAX_REF_IMAGES)
            t->images[t->n_images++] = sb_strdup(sp->valuestring);
    }
    cJSON_Delete(spec);
}

void sb_jobspec_text(const char *json, struct sb_spec_text *t)
{
    memset(t, 0, sizeof *t);
    spec_text_cjson(json, t);
}

void sb_spec_text_clear(struct sb_spec_text *t)
{
    free(t->prompt);
    free(t->invalid);
    for (int k = 0; k < t->n_images; k++)
        free(t->images[k]);
    memset(t, 0, sizeof *t);
}

