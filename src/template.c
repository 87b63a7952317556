/*
 * template.c expands the placeholders of sb_template.h. Case mapping and the
 * accent folding of slug are libunistring's (Unicode's decompositions: "Ü" is
 * "U" and a combining diaeresis, which slug drops); a handful of Latin letters
 * with no decomposition (ß, æ, ø, œ, ł, ...) are spelled out as people write
 * them in ASCII.
 */
#include "sb_template.h"
#include "sb_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unicase.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#define MAX_NAME 256

/* Letters Unicode does not decompose, as ASCII. */
static const char *spelled(ucs4_t c)
{
    switch (c) {
    case 0xDF: return "ss";
    case 0xE6: case 0xC6: return "ae";
    case 0xF8: case 0xD8: return "o";
    case 0x153: case 0x152: return "oe";
    case 0x142: case 0x141: return "l";
    case 0x111: case 0x110: case 0xF0: case 0xD0: return "d";
    case 0xFE: case 0xDE: return "th";
    case 0x131: return "i";
    default: return NULL;
    }
}

static int ascii_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Lowercase ASCII letters and digits, every other run of characters one dash, none at the ends. */
static char *slug(const char *value)
{
    size_t n = strlen(value), dn = 0;
    uint8_t *d = NULL;
    if (u8_check((const uint8_t *)value, n) == NULL)
        d = u8_normalize(UNINORM_NFKD, (const uint8_t *)value, n, NULL, &dn);
    const uint8_t *s = d ? d : (const uint8_t *)value;
    size_t len = d ? dn : n;
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    int dash = 0;
    for (size_t i = 0; i < len;) {
        ucs4_t c;
        int k = d ? u8_mbtouc(&c, s + i, len - i) : 1;
        if (!d)
            c = s[i];
        i += (size_t)(k > 0 ? k : 1);
        const char *sp = NULL;
        char one[2] = {0, 0};
        if (c < 128 && ascii_alnum((int)c)) {
            one[0] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            sp = one;
        } else if (d && uc_is_general_category(c, UC_CATEGORY_M)) {
            continue; /* an accent, taken off its letter */
        } else if (d) {
            sp = spelled(c);
        }
        if (!sp) {
            dash = b.len > 0;
            continue;
        }
        if (dash)
            sb_buf_append(&b, "-", 1);
        dash = 0;
        sb_buf_puts(&b, sp);
    }
    free(d);
    if (!b.data)
        sb_buf_append(&b, "", 0);
    return b.data;
}

static char *casemap(const char *value, int upper)
{
    size_t n = strlen(value), len = 0;
    if (u8_check((const uint8_t *)value, n) != NULL) { /* not UTF-8: ASCII letters only */
        char *r = sb_strdup(value);
        for (char *p = r; *p; p++)
            if (upper ? (*p >= 'a' && *p <= 'z') : (*p >= 'A' && *p <= 'Z'))
                *p = (char)(*p + (upper ? -32 : 32));
        return r;
    }
    uint8_t *m = upper ? u8_toupper((const uint8_t *)value, n, NULL, NULL, NULL, &len)
                       : u8_tolower((const uint8_t *)value, n, NULL, NULL, NULL, &len);
    if (!m)
        return sb_strdup(value);
    char *r = sb_strndup((const char *)m, len);
    free(m);
    return r;
}

static char *trim(const char *value)
{
    const char *a = value, *z = value + strlen(value);
    while (a < z && strchr(" \t\r\n\f\v", *a))
        a++;
    while (z > a && strchr(" \t\r\n\f\v", z[-1]))
        z--;
    return sb_strndup(a, (size_t)(z - a));
}

char *sb_template_filter(const char *filter, size_t len, const char *value)
{
    if (len == 4 && memcmp(filter, "slug", 4) == 0)
        return slug(value);
    if (len == 5 && memcmp(filter, "lower", 5) == 0)
        return casemap(value, 0);
    if (len == 5 && memcmp(filter, "upper", 5) == 0)
        return casemap(value, 1);
    if (len == 4 && memcmp(filter, "trim", 4) == 0)
        return trim(value);
    return NULL;
}

/* The end of the placeholder opened at s ("{"): its "}", or NULL when s opens none. */
static const char *closing(const char *s)
{
    const char *e = s + 1;
    while (*e && *e != '}' && *e != '{' && *e != '\n')
        e++;
    return *e == '}' && e > s + 1 && e - s - 1 <= MAX_NAME ? e : NULL;
}

int sb_template_has(const char *s)
{
    for (; (s = strchr(s, '{')) != NULL; s++) {
        if (s[1] == '{') {
            s++;
            continue;
        }
        if (closing(s))
            return 1;
    }
    return 0;
}

char *sb_template_expand(const char *s, sb_tlookup_fn lookup, void *ud, int flags, enum sb_tv_type *out_type,
                         char *why, size_t whylen)
{
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    enum sb_tv_type type = SB_TV_TEXT;
    int parts = 0;
    while (*s) {
        const char *e = NULL;
        /* A foreach template (SB_T_KEEP_UNKNOWN) keeps braces as written, as it always has. */
        if (!(flags & SB_T_KEEP_UNKNOWN) && ((s[0] == '{' && s[1] == '{') || (s[0] == '}' && s[1] == '}'))) {
            sb_buf_append(&b, s, 1);
            s += 2;
            parts += 2;
            continue;
        }
        if (*s != '{' || !(e = closing(s))) {
            sb_buf_append(&b, s, 1);
            s++;
            parts += 2;
            continue;
        }
        const char *name = s + 1, *bar = memchr(name, '|', (size_t)(e - name));
        size_t nlen = (size_t)((bar ? bar : e) - name);
        struct sb_tvalue v = {NULL, SB_TV_TEXT};
        char vwhy[SB_ERRLEN] = "";
        int found = nlen ? lookup(ud, name, nlen, &v, vwhy, sizeof vwhy) : SB_TL_UNKNOWN;
        if (found == SB_TL_KEEP || (found == SB_TL_UNKNOWN && (flags & SB_T_KEEP_UNKNOWN))) {
            sb_buf_append(&b, s, (size_t)(e - s + 1));
            s = e + 1;
            parts += 2;
            continue;
        }
        if (found == SB_TL_UNKNOWN) {
            snprintf(why, whylen, "{%.*s}: no such name", (int)nlen, name);
            goto fail;
        }
        if (found == SB_TL_ERROR) {
            snprintf(why, whylen, "{%.*s}: %s", (int)nlen, name, vwhy);
            goto fail;
        }
        char *val = sb_strdup(v.text ? v.text : "");
        type = v.type;
        while (bar) {
            const char *f = bar + 1, *next = memchr(f, '|', (size_t)(e - f));
            size_t flen = (size_t)((next ? next : e) - f);
            char *nv = sb_template_filter(f, flen, val);
            free(val);
            if (!nv) {
                snprintf(why, whylen, "{%.*s}: unknown filter \"%.*s\" (known: slug, lower, upper, trim)",
                         (int)(e - name), name, (int)flen, f);
                goto fail;
            }
            val = nv;
            type = SB_TV_TEXT;
            bar = next;
        }
        if ((flags & SB_T_NO_EMPTY) && !val[0]) {
            snprintf(why, whylen, "{%.*s} is empty", (int)(e - name), name);
            free(val);
            goto fail;
        }
        sb_buf_puts(&b, val);
        free(val);
        s = e + 1;
        parts++;
    }
    if (out_type)
        *out_type = parts == 1 ? type : SB_TV_TEXT;
    if (!b.data)
        sb_buf_append(&b, "", 0);
    return b.data;
fail:
    sb_buf_free(&b);
    return NULL;
}
