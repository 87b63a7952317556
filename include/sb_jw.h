/*
 * JSON text written straight into a buffer, byte for byte as
 * cJSON_PrintUnformatted writes it (strings escaped alike, numbers printed
 * alike), without building, copying or sorting a cJSON tree first.
 */
#ifndef SB_JW_H
#define SB_JW_H

#include <cjson/cJSON.h>

#include "sb_common.h"

/* A string in quotes, escaped; NULL writes null. */
void sb_jw_str(struct sb_buf *b, const char *s);
/* The escaped characters of s, without the quotes. */
void sb_jw_chars(struct sb_buf *b, const char *s);
/* A number as cJSON prints it: %1.15g unless that loses the value, then %1.17g;
   NaN and infinities as null. */
void sb_jw_num(struct sb_buf *b, double v);
/* A value; with sort_keys, every object's members in strcmp order of their keys
   (the fingerprint's canonical form). SB_EINVAL for an item cJSON cannot print
   (a raw item without text, an unknown type). */
int sb_jw_value(struct sb_buf *b, const cJSON *v, int sort_keys);
/* Starts b, a new buffer, with "{" and the members of obj (none when it is not an
   object) followed by a comma if there were any: the object is left open for the
   caller's own members and "}". SB_OK, or SB_EINVAL (b freed) for an item cJSON
   cannot print. */
int sb_jw_open_object(struct sb_buf *b, const cJSON *obj);
/* An array of n strings. */
void sb_jw_str_array(struct sb_buf *b, char *const *v, int n);
/* The value as a new string (free()), or NULL where cJSON_PrintUnformatted gives NULL. */
char *sb_jw_print(const cJSON *v, int sort_keys);

#endif
