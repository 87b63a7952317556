/*
 * The manifest brought into the queue: sits above both (the manifest knows
 * nothing of the state, the state nothing of manifests).
 */
#ifndef SB_SYNC_H
#define SB_SYNC_H

#include "sb_manifest.h"
#include "sb_store.h"

#define SB_SYNC_SHOWN 20   /* jobs that failed at once, named one by one in the report */
struct sb_sync_report {
    int added;      /* new jobs, queued */
    int changed;    /* fingerprint changed: re-queued */
    int kept;       /* unchanged */
    int invalid;    /* failed at once: a reference image is unusable */
    char *invalid_why[SB_SYNC_SHOWN];  /* "job ID: why" of the first of them */
    int removed;    /* in the state, no longer in the manifest */
    char **removed_ids;
};
void sb_sync_report_clear(struct sb_sync_report *r);

/*
 * Brings the queue in line with the manifest (the jobs its checking reading kept, or
 * read again), in one transaction; the local files it read and hashed are recorded
 * there too (sb_store_file_lookup finds them next time).
 */
int sb_sync(struct sb_store *st, struct sb_manifest *m, struct sb_sync_report *rep, char *err, size_t errlen);

#endif
