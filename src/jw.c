/*
 * jw.c writes JSON text the way cJSON_PrintUnformatted does, straight into a
 * buffer. Request bodies, the specs kept in the state, results.jsonl lines and
 * the fingerprint's canonical form are all written per job; going through a
 * cJSON tree cost a copy of it (and a sort, for the fingerprint), and cJSON's
 * number printing (sprintf, then sscanf to check) for every integer. The text
 * must stay the same bytes: fingerprints are hashes of it (tests/unit/test_jw.c
 * compares the two printers).
 */
#include "sb_jw.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void sb_jw_chars(struct sb_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_buf_append(b, run, (size_t)(s - run));
        char esc[7] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        sb_buf_append(b, esc, n);
        run = s + 1;
    }
    sb_buf_append(b, run, (size_t)(s - run));
}

void sb_jw_str(struct sb_buf *b, const char *s)
{
    if (!s) {
        sb_buf_append(b, "null", 4);
        return;
    }
    sb_buf_append(b, "\"", 1);
    sb_jw_chars(b, s);
    sb_buf_append(b, "\"", 1);
}

/* m / 10^frac in decimal, its fraction's trailing zeros left out, with a sign if neg. */
static void put_decimal(struct sb_buf *b, int neg, unsigned long long m, int frac)
{
    char n[32], *p = n + sizeof n;
    while (frac > 0 && m % 10 == 0) {
        m /= 10;
        frac--;
    }
    for (int d = 0; d < frac; d++, m /= 10)
        *--p = (char)('0' + m % 10);
    if (frac)
        *--p = '.';
    do {
        *--p = (char)('0' + m % 10);
        m /= 10;
    } while (m);
    if (neg)
        *--p = '-';
    sb_buf_append(b, p, (size_t)(n + sizeof n - p));
}

void sb_jw_num(struct sb_buf *b, double v)
{
    if (isnan(v) || isinf(v)) {
        sb_buf_append(b, "null", 4);
        return;
    }
    /* Below 1e15 an integer has at most 15 digits: %1.15g prints all of them (and "-0"
       for negative zero, which takes the printf way). */
    if (v > -1e15 && v < 1e15 && v == (double)(long long)v && !(v == 0 && signbit(v))) {
        put_decimal(b, v < 0, (unsigned long long)fabs(v), 0);
        return;
    }
    /*
     * The double nearest to a number of at most 15 digits with at most 6 decimals,
     * between 1e-4 and 1e9 (prices, costs, seconds): %1.15g prints that number's digits
     * (DBL_DIG is 15), and they read back as the value. Written here without printf;
     * anything else goes the way cJSON goes.
     */
    double a = fabs(v);
    if (a >= 1e-4 && a < 1e9) {
        long long m = llround(a * 1e6);
        if ((double)m / 1e6 == a) {
            put_decimal(b, v < 0, (unsigned long long)m, 6);
            return;
        }
    }
    char n[32];
    snprintf(n, sizeof n, "%1.15g", v);
    double back = strtod(n, NULL), big = fabs(back) > fabs(v) ? fabs(back) : fabs(v);
    if (!(fabs(back - v) <= big * DBL_EPSILON))
        snprintf(n, sizeof n, "%1.17g", v);
    sb_buf_puts(b, n);
}

static int cmp_keys(const void *a, const void *b)
{
    const cJSON *x = *(const cJSON *const *)a, *y = *(const cJSON *const *)b;
    return strcmp(x->string ? x->string : "", y->string ? y->string : "");
}

static int member(struct sb_buf *b, const cJSON *it, int sort_keys, int first)
{
    if (!first)
        sb_buf_append(b, ",", 1);
    sb_buf_append(b, "\"", 1);
    sb_jw_chars(b, it->string ? it->string : "");
    sb_buf_append(b, "\":", 2);
    return sb_jw_value(b, it, sort_keys);
}

static int object(struct sb_buf *b, const cJSON *v, int sort_keys)
{
    size_t n = 0;
    for (const cJSON *it = v->child; it; it = it->next)
        n++;
    int rc = SB_OK;
    sb_buf_append(b, "{", 1);
    if (sort_keys && n > 1) {
        const cJSON *small[16];
        const cJSON **items = n <= 16 ? small : sb_malloc(n * sizeof *items);
        size_t i = 0;
        for (const cJSON *it = v->child; it; it = it->next)
            items[i++] = it;
        qsort(items, n, sizeof *items, cmp_keys);
        for (i = 0; i < n && rc == SB_OK; i++)
            rc = member(b, items[i], sort_keys, i == 0);
        if (items != small)
            free(items);
    } else {
        for (const cJSON *it = v->child; it && rc == SB_OK; it = it->next)
            rc = member(b, it, sort_keys, it == v->child);
    }
    sb_buf_append(b, "}", 1);
    return rc;
}

int sb_jw_value(struct sb_buf *b, const cJSON *v, int sort_keys)
{
    if (!v)
        return SB_EINVAL;
    switch (v->type & 0xFF) {
    case cJSON_NULL:
        sb_buf_append(b, "null", 4);
        return SB_OK;
    case cJSON_False:
        sb_buf_append(b, "false", 5);
        return SB_OK;
    case cJSON_True:
        sb_buf_append(b, "true", 4);
        return SB_OK;
    case cJSON_Number:
        sb_jw_num(b, v->valuedouble);
        return SB_OK;
    case cJSON_Raw:
        if (!v->valuestring)
            return SB_EINVAL;
        sb_buf_puts(b, v->valuestring);
        return SB_OK;
    case cJSON_String:
        sb_jw_str(b, v->valuestring ? v->valuestring : "");
        return SB_OK;
    case cJSON_Array: {
        int rc = SB_OK;
        sb_buf_append(b, "[", 1);
        for (const cJSON *it = v->child; it && rc == SB_OK; it = it->next) {
            if (it != v->child)
                sb_buf_append(b, ",", 1);
            rc = sb_jw_value(b, it, sort_keys);
        }
        sb_buf_append(b, "]", 1);
        return rc;
    }
    case cJSON_Object:
        return object(b, v, sort_keys);
    default:
        return SB_EINVAL;
    }
}

int sb_jw_open_object(struct sb_buf *b, const cJSON *obj)
{
    int n = 0;
    sb_buf_init(b, SIZE_MAX / 2);
    sb_buf_append(b, "{", 1);
    for (const cJSON *it = cJSON_IsObject(obj) ? obj->child : NULL; it; it = it->next)
        if (member(b, it, 0, n++ == 0) != SB_OK) {
            sb_buf_free(b);
            return SB_EINVAL;
        }
    if (n)
        sb_buf_append(b, ",", 1);
    return SB_OK;
}

void sb_jw_str_array(struct sb_buf *b, char *const *v, int n)
{
    sb_buf_append(b, "[", 1);
    for (int i = 0; i < n; i++) {
        if (i)
            sb_buf_append(b, ",", 1);
        sb_jw_str(b, v[i]);
    }
    sb_buf_append(b, "]", 1);
}

char *sb_jw_print(const cJSON *v, int sort_keys)
{
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    if (sb_jw_value(&b, v, sort_keys) != SB_OK) {
        sb_buf_free(&b);
        return NULL;
    }
    if (!b.data)
        return sb_strdup("");
    return b.data;
}
