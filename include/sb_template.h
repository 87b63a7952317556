/*
 * Templates in a manifest's strings: "{name}" or "{name|filter|filter}" is replaced by
 * what a lookup gives for name (a foreach match's parts, a catalogue row's columns,
 * an output's id), then passed through the filters in order: slug (lowercase ASCII
 * letters, digits and dashes, accents folded), lower, upper, trim. "{{" and "}}"
 * write one brace, except with SB_T_KEEP_UNKNOWN (foreach templates, whose other
 * braces have always been text).
 */
#ifndef SB_TEMPLATE_H
#define SB_TEMPLATE_H

#include <stddef.h>

enum sb_tv_type { SB_TV_TEXT, SB_TV_NUMBER, SB_TV_BOOL };

/* A placeholder's value: text valid until the next lookup, and the type it had at its source. */
struct sb_tvalue {
    const char *text;
    enum sb_tv_type type;
};

enum {
    SB_TL_FOUND = 0,
    SB_TL_UNKNOWN = 1,  /* no such name: an error, or kept as written (SB_T_KEEP_UNKNOWN) */
    SB_TL_KEEP = 2,     /* a name filled in later (an output's {k}): kept as written */
    SB_TL_ERROR = 3,    /* the name is known but its value cannot be used: why is filled */
};

/* Looks name (len bytes, not NUL-terminated) up; fills out, or why on SB_TL_ERROR. */
typedef int (*sb_tlookup_fn)(void *ud, const char *name, size_t len, struct sb_tvalue *out, char *why,
                             size_t whylen);

enum { SB_T_KEEP_UNKNOWN = 1, SB_T_NO_EMPTY = 2 };

/*
 * Expands s. Returns a new string, or NULL with why (an unknown name or filter, a
 * value the lookup refused, an empty value with SB_T_NO_EMPTY). With out_type, a
 * string that is one placeholder alone gets the type of its value (SB_TV_TEXT
 * otherwise, or after a filter).
 */
char *sb_template_expand(const char *s, sb_tlookup_fn lookup, void *ud, int flags, enum sb_tv_type *out_type,
                         char *why, size_t whylen);

/* Whether s holds a placeholder at all ("{" followed by a name and "}"). */
int sb_template_has(const char *s);

/* The filters alone, for tests: a new string, or NULL for an unknown filter. */
char *sb_template_filter(const char *filter, size_t len, const char *value);

#endif
