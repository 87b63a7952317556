/*
 * jr.c reads JSON text in order without building a tree. A run reads every
 * job's spec back from the state twice (to start the job, and for its line in
 * results.jsonl); through cJSON that was about 15,000 and 11,000 instructions a
 * job, most of it allocating and freeing the tree's nodes. The reader is
 * strict and gives up (bad) on anything it is not sure to read as cJSON does;
 * its callers then use cJSON. sb_jr_tree, at the end, uses it to read API
 * answers into a cJSON tree held in one allocation.
 */
#include "sb_jr.h"
#include "sb_common.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define JR_MAX_DEPTH 64

void sb_jr_init(struct sb_jr *r, const char *s, size_t n)
{
    r->p = s;
    r->end = s + n;
    r->depth = 0;
    r->first = 0;
    r->bad = 0;
}

static int fail(struct sb_jr *r)
{
    r->bad = 1;
    r->p = r->end;
    return 0;
}

static void ws(struct sb_jr *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

int sb_jr_peek(struct sb_jr *r)
{
    ws(r);
    if (r->bad || r->p >= r->end)
        return 0;
    char c = *r->p;
    if (c == '"' || c == '{' || c == '[' || c == 't' || c == 'f')
        return c;
    if (c == 'n')
        return 'z';
    return c == '-' || (c >= '0' && c <= '9') ? 'n' : 0;
}

int sb_jr_enter(struct sb_jr *r, char open)
{
    ws(r);
    if (r->bad || r->p >= r->end || *r->p != open || r->depth >= JR_MAX_DEPTH)
        return fail(r);
    r->p++;
    r->depth++;
    r->first = 1; /* no comma before its first member or item */
    return 1;
}

/* After a member or item: a comma (1: another follows) or the closing character (0). */
static int next(struct sb_jr *r, char close)
{
    int first = r->first;
    r->first = 0;
    ws(r);
    if (r->bad || r->p >= r->end)
        return fail(r);
    if (*r->p == close) {
        r->p++;
        r->depth--;
        return 0;
    }
    if (!first) {
        if (*r->p != ',')
            return fail(r);
        r->p++;
        ws(r);
        if (r->p < r->end && *r->p == close) /* [1,] is not JSON */
            return fail(r);
    }
    return 1;
}

static int hex4(const char *s, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/*
 * Reads the string at r->p (its opening quote) into out (cap bytes with the NUL;
 * out NULL: measure only). Returns the unescaped length, or -1 (bad). Escapes as
 * cJSON reads them; \u0000, lone surrogates and raw control characters are refused.
 */
static long string(struct sb_jr *r, char *out, size_t cap)
{
    const char *s = r->p + 1;
    size_t n = 0, w = 0; /* length unescaped, bytes of it written to out */
    while (s < r->end && *s != '"') {
        unsigned char c = (unsigned char)*s;
        char buf[4];
        size_t k = 1;
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            buf[0] = (char)c;
            s++;
        } else {
            if (s + 1 >= r->end)
                return -1;
            char e = s[1];
            s += 2;
            switch (e) {
            case '"': case '\\': case '/': buf[0] = e; break;
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u': {
                unsigned u, lo;
                if (r->end - s < 4 || !hex4(s, &u) || u == 0 || (u >= 0xDC00 && u <= 0xDFFF))
                    return -1;
                s += 4;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    if (r->end - s < 6 || s[0] != '\\' || s[1] != 'u' || !hex4(s + 2, &lo) || lo < 0xDC00 ||
                        lo > 0xDFFF)
                        return -1;
                    s += 6;
                    u = 0x10000 + ((u & 0x3FF) << 10) + (lo & 0x3FF);
                }
                if (u < 0x80)
                    buf[0] = (char)u;
                else if (u < 0x800) {
                    buf[0] = (char)(0xC0 | (u >> 6));
                    buf[1] = (char)(0x80 | (u & 0x3F));
                    k = 2;
                } else if (u < 0x10000) {
                    buf[0] = (char)(0xE0 | (u >> 12));
                    buf[1] = (char)(0x80 | ((u >> 6) & 0x3F));
                    buf[2] = (char)(0x80 | (u & 0x3F));
                    k = 3;
                } else {
                    buf[0] = (char)(0xF0 | (u >> 18));
                    buf[1] = (char)(0x80 | ((u >> 12) & 0x3F));
                    buf[2] = (char)(0x80 | ((u >> 6) & 0x3F));
                    buf[3] = (char)(0x80 | (u & 0x3F));
                    k = 4;
                }
                break;
            }
            default:
                return -1;
            }
        }
        if (out && w == n && n + k < cap) {
            memcpy(out + n, buf, k);
            w += k;
        }
        n += k;
    }
    if (s >= r->end)
        return -1;
    if (out)
        out[w] = '\0'; /* cut before a character that did not fit */
    r->p = s + 1;
    return (long)n;
}

/* The closing quote of the string at r->p when nothing in it needs unescaping (most), else NULL. */
static const char *plain(const struct sb_jr *r)
{
    const char *q = r->p + 1;
    while (q < r->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
        q++;
    return q < r->end && *q == '"' ? q : NULL;
}

char *sb_jr_str(struct sb_jr *r)
{
    if (sb_jr_peek(r) != '"')
        return fail(r), NULL;
    const char *at = r->p, *q = plain(r);
    if (q) {
        size_t n = (size_t)(q - at - 1);
        char *s = sb_malloc(n + 1);
        memcpy(s, at + 1, n);
        s[n] = '\0';
        r->p = q + 1;
        return s;
    }
    long n = string(r, NULL, 0);
    if (n < 0)
        return fail(r), NULL;
    char *s = sb_malloc((size_t)n + 1);
    r->p = at;
    string(r, s, (size_t)n + 1);
    return s;
}

int sb_jr_key(struct sb_jr *r, char *key, size_t size)
{
    if (!next(r, '}'))
        return 0;
    if (sb_jr_peek(r) != '"')
        return fail(r);
    const char *at = r->p, *q = plain(r);
    long n;
    if (q) {
        n = q - at - 1;
        if ((size_t)n < size)
            memcpy(key, at + 1, (size_t)n), key[n] = '\0';
        r->p = q + 1;
    } else if ((n = string(r, NULL, 0)) < 0)
        return fail(r);
    else if ((size_t)n < size) {
        r->p = at;
        string(r, key, size);
    }
    if ((size_t)n >= size && size)
        key[0] = '\0';
    ws(r);
    if (r->p >= r->end || *r->p != ':')
        return fail(r);
    r->p++;
    return 1;
}

int sb_jr_item(struct sb_jr *r)
{
    return next(r, ']');
}

/* The text of a JSON number at r->p: its length, or 0 when it is not one. */
static size_t number_len(const struct sb_jr *r)
{
    const char *s = r->p, *e = r->end;
    if (s < e && *s == '-')
        s++;
    if (s >= e || *s < '0' || *s > '9')
        return 0;
    if (*s == '0')
        s++;
    else
        while (s < e && *s >= '0' && *s <= '9')
            s++;
    if (s < e && *s == '.') {
        s++;
        if (s >= e || *s < '0' || *s > '9')
            return 0;
        while (s < e && *s >= '0' && *s <= '9')
            s++;
    }
    if (s < e && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < e && (*s == '+' || *s == '-'))
            s++;
        if (s >= e || *s < '0' || *s > '9')
            return 0;
        while (s < e && *s >= '0' && *s <= '9')
            s++;
    }
    return (size_t)(s - r->p);
}

int sb_jr_num(struct sb_jr *r, double *v)
{
    if (sb_jr_peek(r) != 'n')
        return fail(r);
    size_t n = number_len(r);
    char buf[64];
    /* cJSON reads at most 63 characters of a number. */
    if (!n || n >= sizeof buf)
        return fail(r);
    memcpy(buf, r->p, n);
    buf[n] = '\0';
    *v = strtod(buf, NULL);
    r->p += n;
    return 1;
}

int sb_jr_skip(struct sb_jr *r, const char **start, size_t *len)
{
    int kind = sb_jr_peek(r);
    const char *at = r->p;
    char key[1];
    double d;
    switch (kind) {
    case '"': {
        const char *q = plain(r);
        if (q)
            r->p = q + 1;
        else if (string(r, NULL, 0) < 0)
            return fail(r);
        break;
    }
    case 'n':
        if (!sb_jr_num(r, &d))
            return 0;
        break;
    case 't': case 'f': case 'z': {
        const char *word = kind == 't' ? "true" : kind == 'f' ? "false" : "null";
        size_t wl = strlen(word);
        if ((size_t)(r->end - r->p) < wl || memcmp(r->p, word, wl) != 0)
            return fail(r);
        r->p += wl;
        break;
    }
    case '{':
        sb_jr_enter(r, '{');
        while (sb_jr_key(r, key, 0))
            if (!sb_jr_skip(r, NULL, NULL))
                return 0;
        break;
    case '[':
        sb_jr_enter(r, '[');
        while (sb_jr_item(r))
            if (!sb_jr_skip(r, NULL, NULL))
                return 0;
        break;
    default:
        return fail(r);
    }
    if (r->bad)
        return 0;
    if (start)
        *start = at;
    if (len)
        *len = (size_t)(r->p - at);
    return 1;
}

int sb_jr_end(struct sb_jr *r)
{
    ws(r);
    return !r->bad && r->depth == 0 && r->p == r->end;
}

/*
 * sb_jr_tree: the text as a cJSON tree in one allocation. An API answer parsed
 * by cJSON_Parse costs an allocation for every node, key and string (about 19 for
 * a poll answer) and as many frees; here the nodes come first in one block and
 * their strings after them. Only the root is marked a reference, so cJSON_Delete
 * frees the root alone, which is the block: a caller cannot tell the tree from
 * cJSON's. The other nodes carry no flags, so cJSON_Duplicate copies them whole.
 */
struct tree {
    struct sb_jr *r;
    cJSON *nodes;
    char *text;
    size_t n_nodes, n_text;   /* used */
    size_t max_nodes, max_text;
};

/* A cleared node, or NULL (and the reader bad) past the bound: never happens for JSON. */
static cJSON *tree_node(struct tree *t)
{
    if (t->n_nodes == t->max_nodes)
        return fail(t->r), NULL;
    cJSON *c = &t->nodes[t->n_nodes++];
    memset(c, 0, sizeof *c);
    return c;
}

/* The string at r->p, unescaped into the block; NULL when bad. */
static char *tree_str(struct sb_jr *r, struct tree *t)
{
    if (sb_jr_peek(r) != '"')
        return fail(r), NULL;
    const char *at = r->p, *q = plain(r);
    long n = q ? (long)(q - at - 1) : string(r, NULL, 0);
    if (n < 0 || (size_t)n + 1 > t->max_text - t->n_text)
        return fail(r), NULL;
    char *s = t->text + t->n_text;
    t->n_text += (size_t)n + 1;
    if (q) {
        memcpy(s, at + 1, (size_t)n);
        s[n] = '\0';
        r->p = q + 1;
    } else {
        r->p = at;
        string(r, s, (size_t)n + 1);
    }
    return s;
}

static void tree_value(struct sb_jr *r, struct tree *t, cJSON *c);

/* The members or items of the container just entered, as c's children. */
static void tree_children(struct sb_jr *r, struct tree *t, cJSON *c, char close)
{
    cJSON *last = NULL;
    while (next(r, close)) {
        char *key = NULL;
        if (close == '}') {
            key = tree_str(r, t);
            ws(r);
            if (r->bad || r->p >= r->end || *r->p != ':') {
                fail(r);
                return;
            }
            r->p++;
        }
        cJSON *k = tree_node(t);
        if (!k)
            return;
        tree_value(r, t, k);
        if (r->bad)
            return;
        k->string = key;
        k->prev = last;
        if (last)
            last->next = k;
        else
            c->child = k;
        last = k;
    }
    if (c->child)
        c->child->prev = last; /* as cJSON links a list: the head's prev is the tail */
}

static void tree_value(struct sb_jr *r, struct tree *t, cJSON *c)
{
    int kind = sb_jr_peek(r);
    double d;
    switch (kind) {
    case '"':
        c->valuestring = tree_str(r, t);
        c->type = cJSON_String;
        break;
    case 'n':
        if (sb_jr_num(r, &d)) {
            c->type = cJSON_Number;
            c->valuedouble = d;
            /* cJSON's saturation */
            c->valueint = d >= INT_MAX ? INT_MAX : d <= (double)INT_MIN ? INT_MIN : (int)d;
        }
        break;
    case 't': case 'f': case 'z':
        if (sb_jr_skip(r, NULL, NULL)) {
            c->type = kind == 't' ? cJSON_True : kind == 'f' ? cJSON_False : cJSON_NULL;
            c->valueint = kind == 't';
        }
        break;
    case '{': case '[':
        sb_jr_enter(r, (char)kind);
        c->type = kind == '{' ? cJSON_Object : cJSON_Array;
        tree_children(r, t, c, kind == '{' ? '}' : ']');
        break;
    default:
        fail(r);
    }
}

/* Texts longer than this, or of more values, go to cJSON (answers have a few dozen at most). */
#define TREE_MAX_TEXT 16384
#define TREE_MAX_NODES 64

cJSON *sb_jr_tree(const char *s, size_t n)
{
    if (n > TREE_MAX_TEXT)
        return NULL;
    /* Every value takes a character and all but the first follow a ',', ':' or '[';
       every string's unescaped text and NUL fit in its quoted text. */
    size_t bound = n / 2 + 1 < TREE_MAX_NODES ? n / 2 + 1 : TREE_MAX_NODES;
    char *block = sb_malloc(bound * sizeof(cJSON) + n);
    struct sb_jr r;
    sb_jr_init(&r, s, n);
    struct tree t = {&r, (cJSON *)(void *)block, block + bound * sizeof(cJSON), 0, 0, bound, n};
    cJSON *root = tree_node(&t);
    tree_value(&r, &t, root);
    if (!sb_jr_end(&r)) {
        free(block);
        return NULL;
    }
    root->type |= cJSON_IsReference; /* cJSON_Delete(root) frees the block alone */
    return root;
}
