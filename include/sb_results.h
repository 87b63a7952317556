/*
 * results.jsonl: one line per job of the manifest, in manifest order
 * (SPEC section 3), written to a temporary file, fsynced, renamed into place
 * and the directory fsynced, so readers only ever see a complete file.
 */
#ifndef SB_RESULTS_H
#define SB_RESULTS_H

#include "sb_manifest.h"
#include "sb_store.h"

/* During a run, once the state is synced with the manifest: from the state's rows alone. */
int sb_results_write(struct sb_manifest *m, struct sb_store *st, char *err, size_t errlen);
/* For `seedbatch results`: the manifest read again, each job with its row if st (may be NULL) has this version of it. */
int sb_results_from_store(struct sb_manifest *m, struct sb_store *st, char *err, size_t errlen);

#endif
