/*
 * results.jsonl: one line per job of the manifest, in manifest order
 * (SPEC section 3), written to a temporary file, fsynced, renamed into place
 * and the directory fsynced, so readers only ever see a complete file.
 */
#ifndef SB_RESULTS_H
#define SB_RESULTS_H

#include "sb_manifest.h"
#include "sb_store.h"

/*
 * What the last write of a run left (where its lines start), so that the next
 * one copies the lines whose rows did not change instead of making them again:
 * at 100,000 jobs, remaking every line every 10 s cost more than the jobs.
 */
struct sb_results_cache;
struct sb_results_cache *sb_results_cache_new(void);
void sb_results_cache_free(struct sb_results_cache *c);

/*
 * During a run, once the state is synced with the manifest: from the state's
 * rows alone. With c, only the lines of rows whose seq is in lo..hi (none when
 * lo > hi) changed since c's write; when the file in place is still that write,
 * the rest is copied from it (and nothing is written if nothing changed).
 * c may be NULL (everything made anew).
 */
int sb_results_write(struct sb_manifest *m, struct sb_store *st, struct sb_results_cache *c, int64_t lo,
                     int64_t hi, char *err, size_t errlen);
/* For `seedbatch results`: the manifest read again, each job with its row if st (may be NULL) has this version of it. */
int sb_results_from_store(struct sb_manifest *m, struct sb_store *st, char *err, size_t errlen);

#endif
