/*
 * Whether two cJSON trees read the same down to every field a reader sees,
 * with their lists linked as cJSON links them (each node's prev the one before
 * it, the head's prev the tail). The roots' flags are not compared: a tree from
 * sb_jr_tree marks its root a reference.
 */
#ifndef SB_TESTS_JSON_SAME_H
#define SB_TESTS_JSON_SAME_H

#include <cjson/cJSON.h>
#include <string.h>

/* The same text, or both NULL. */
static int json_same_str(const char *a, const char *b)
{
    return a && b ? strcmp(a, b) == 0 : a == b;
}

static int json_same_at(const cJSON *a, const cJSON *b, int top)
{
    const cJSON *a0 = a, *b0 = b, *pa = NULL, *pb = NULL;
    for (; a && b; pa = a, pb = b, a = a->next, b = b->next) {
        if ((a->type & 0xFF) != (b->type & 0xFF) || (!top && a->type != b->type) ||
            !json_same_str(a->string, b->string) || !json_same_str(a->valuestring, b->valuestring) ||
            a->valueint != b->valueint || memcmp(&a->valuedouble, &b->valuedouble, sizeof(double)) != 0)
            return 0;
        if (pa && (a->prev != pa || b->prev != pb))
            return 0;
        if (!!a->child != !!b->child || (a->child && !json_same_at(a->child, b->child, 0)))
            return 0;
    }
    if (a || b)
        return 0;
    return top ? a0->prev == NULL && b0->prev == NULL : a0->prev == pa && b0->prev == pb;
}

static int json_same(const cJSON *a, const cJSON *b)
{
    return a && b ? json_same_at(a, b, 1) : a == b;
}

#endif
