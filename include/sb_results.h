/*
 * results.jsonl: one line per job of the manifest, in manifest order
 * (SPEC section 3), written to a temporary file, fsynced, renamed into place
 * and the directory fsynced, so readers only ever see a complete file.
 */
#ifndef SB_RESULTS_H
#define SB_RESULTS_H

#include "sb_manifest.h"
#include "sb_store.h"

/* Row of job i, or NULL when the job has none yet (it reads as pending). */
typedef const struct sb_jobrow *(*sb_row_fn)(void *ud, int i);

int sb_results_write(const struct sb_manifest *m, sb_row_fn row_of, void *ud, char *err, size_t errlen);
/* Rows of every manifest job from the state, for `seedbatch results`. */
int sb_results_from_store(const struct sb_manifest *m, struct sb_store *st, char *err, size_t errlen);

#endif
