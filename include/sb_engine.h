/*
 * The engine runs one manifest's jobs to completion on one libuv loop:
 * uploads, submits, polls and downloads, within the run's limits, with every
 * state change committed to the state database (SPEC section 4).
 */
#ifndef SB_ENGINE_H
#define SB_ENGINE_H

#include "sb_manifest.h"

enum sb_progress_mode { SB_PROGRESS_AUTO, SB_PROGRESS_ALWAYS, SB_PROGRESS_NEVER };

struct sb_engine_opts {
    const char *state_path;    /* NULL: <output_dir>/.seedbatch/state.db */
    const char *retry_failed;  /* NULL, "" (all) or an error kind */
    enum sb_progress_mode progress;
};

/* Runs the manifest; returns the process exit code (SPEC section 2). */
int sb_engine_run(struct sb_manifest *m, const struct sb_engine_opts *o);

#endif
