/*
 * store_tool drives the state database the way a run does, so CLI tests can
 * check status and dry-run output against known states.
 *
 *   store_tool sync MANIFEST STATE
 *   store_tool set STATE ID NEWSTATE [KIND MESSAGE [COST]]
 */
#include "sb_log.h"
#include "sb_store.h"
#include "sb_sync.h"

#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

int main(int argc, char **argv)
{
    char err[SB_ERRLEN];
    struct sb_store *st = NULL;
    if (argc == 4 && strcmp(argv[1], "sync") == 0) {
        struct sb_manifest *m;
        if (sb_manifest_load(argv[2], &m, err, sizeof err) != SB_OK)
            return fprintf(stderr, "%s\n", err), 2;
        if (sb_store_open(argv[3], 0, &st, err, sizeof err) != SB_OK)
            return fprintf(stderr, "%s\n", err), 1;
        struct sb_sync_report r;
        if (sb_sync(st, m, &r, err, sizeof err) != SB_OK)
            return fprintf(stderr, "%s\n", err), 1;
        printf("added %d changed %d kept %d invalid %d removed %d\n", r.added, r.changed, r.kept,
               r.invalid, r.removed);
        for (int i = 0; i < r.removed; i++)
            printf("removed %s\n", r.removed_ids[i]);
        sb_sync_report_clear(&r);
        sb_manifest_free(m);
        sb_store_close(st);
        return 0;
    }
    if ((argc == 5 || argc == 7 || argc == 8) && strcmp(argv[1], "set") == 0) {
        enum sb_job_state s;
        if (sb_job_state_parse(argv[4], &s) != SB_OK)
            return fprintf(stderr, "bad state %s\n", argv[4]), 2;
        if (sb_store_open(argv[2], 0, &st, err, sizeof err) != SB_OK)
            return fprintf(stderr, "%s\n", err), 1;
        struct sb_job_error e = {argc >= 7 ? argv[5] : NULL, 0, NULL, argc >= 7 ? argv[6] : NULL};
        int rc = sb_store_transition(st, argv[3], s, argc >= 7 ? &e : NULL);
        sb_store_close(st);
        if (rc != SB_OK)
            return fprintf(stderr, "no job %s\n", argv[3]), 1;
        if (argc == 8) {
            sqlite3 *h;
            sqlite3_open(argv[2], &h);
            char *sql = sqlite3_mprintf("UPDATE jobs SET cost=%s WHERE id=%Q", argv[7], argv[3]);
            rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
            sqlite3_free(sql);
            sqlite3_close(h);
        }
        return rc == SQLITE_OK ? 0 : 1;
    }
    fprintf(stderr, "usage: store_tool sync MANIFEST STATE | set STATE ID STATE [KIND MESSAGE [COST]]\n");
    return 2;
}
