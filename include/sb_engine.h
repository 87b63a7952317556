/*
 * The engine runs manifests' jobs to completion on one libuv loop:
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
    double max_cost;           /* --max-cost: bounds the run's states together; < 0 when not given */
};

/*
 * Runs the manifests together on one loop, each with its own output_dir and
 * state; manifests of the same provider share its request budget. Returns the
 * process exit code (SPEC section 2), the worst of the manifests' outcomes.
 */
int sb_engine_run(struct sb_manifest **ms, int n, const struct sb_engine_opts *o);

/* Cancels what can still be cancelled (see `seedbatch cancel`); returns the exit code. */
int sb_engine_cancel(struct sb_manifest **ms, int n, const struct sb_engine_opts *o);

#endif
