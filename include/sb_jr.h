/*
 * JSON text read in order, value by value, without building a cJSON tree:
 * for the job specs seedbatch writes itself (sb_jobspec_json) and reads back
 * once per job. Strict: whatever is not plain JSON (trailing text, a raw
 * control character, \u0000, a lone surrogate, nesting past 64) makes the
 * reader bad, and the caller reads the text with cJSON instead. What the
 * reader accepts, it reads as cJSON_Parse does. The same reader builds the
 * trees of API answers in one allocation (sb_jr_tree).
 */
#ifndef SB_JR_H
#define SB_JR_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct sb_jr {
    const char *p, *end;
    int depth;
    int first;                     /* just entered a container */
    int bad;
};

void sb_jr_init(struct sb_jr *r, const char *s, size_t n);
/* Enters the object ('{') or array ('[') that comes next: 1, or 0 (bad) when it is not one. */
int sb_jr_enter(struct sb_jr *r, char open);
/*
 * The next member of the object entered: 1 with its key in key (unescaped;
 * "" when it does not fit in size), 0 after its closing brace, or 0 with the reader bad.
 */
int sb_jr_key(struct sb_jr *r, char *key, size_t size);
/* 1 when the array entered has another item, 0 after its closing bracket (or bad). */
int sb_jr_item(struct sb_jr *r);
/* Which kind of value comes next: '"', '{', '[', 'n' (number), 't', 'f', 'z' (null), or 0. */
int sb_jr_peek(struct sb_jr *r);
/* The string that comes next, unescaped (free()), or NULL (bad) when it is not one. */
char *sb_jr_str(struct sb_jr *r);
/* The number that comes next, as cJSON reads it; 0 (bad) when it is not one. */
int sb_jr_num(struct sb_jr *r, double *v);
/* Passes over the value that comes next; its text from *start for *len bytes (may be NULL). */
int sb_jr_skip(struct sb_jr *r, const char **start, size_t *len);
/* 1 when the whole text was one value read without fault (only whitespace after it). */
int sb_jr_end(struct sb_jr *r);

/*
 * The text (one value, nothing after it but whitespace) as a cJSON tree in a
 * single allocation, freed with cJSON_Delete on the root like any tree; read
 * it, never detach or delete a part of it. NULL where the reader would give up,
 * and for texts over 16 KiB or of more than 64 values: the caller then parses
 * with cJSON.
 */
cJSON *sb_jr_tree(const char *s, size_t n);

#endif
