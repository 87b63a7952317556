/*
 * resume.c opens a manifest's batch: its key, output directory and state
 * (lock, a writable probe, case-folding filesystems), syncs the manifest into
 * the state, and takes up what an earlier run left: jobs with a prediction are
 * polled or downloaded, submits that were in flight sent again (flagged), and
 * failed jobs re-queued for --retry-failed.
 */
#include "engine_int.h"

/*
 * Whether the directory's filesystem takes names that differ only in case for one
 * file (FAT, exFAT, most SMB shares): there jobs SKU-1 and sku-1 would write the same
 * output files. Found by writing a mark into a file and reading it back under the
 * name in capitals (a file of its own of that name would not hold the mark; its
 * mere existence would not tell, and FUSE keeps looked-up names after an unlink).
 * 0 when it cannot be told: the run's own writes then say what is wrong.
 */
static int dir_folds_case(int dirfd)
{
    static const char lower[] = ".seedbatch-case-probe", upper[] = ".SEEDBATCH-CASE-PROBE";
    char mark[48], back[48];
    int n = snprintf(mark, sizeof mark, "%ld %llu", (long)getpid(), (unsigned long long)uv_hrtime());
    unlinkat(dirfd, lower, 0);   /* left by a run that was killed here */
    int fd = openat(dirfd, lower, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    int wrote = write(fd, mark, (size_t)n) == n;
    close(fd);
    int folds = 0;
    fd = wrote ? openat(dirfd, upper, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) : -1;
    if (fd >= 0) {
        folds = read(fd, back, sizeof back) == n && memcmp(back, mark, (size_t)n) == 0;
        close(fd);
    }
    unlinkat(dirfd, lower, 0);
    return folds;
}

/*
 * Whether an earlier manifest of this run has the same state, reached by another
 * path (a symbolic link, "..", or letters in another case where the filesystem
 * folds it): its lock would read as another run's. Returns an exit code.
 */
static int shares_state(struct run *r, struct engine *e)
{
    for (int i = 0; i < r->n && r->engines[i] != e; i++) {
        struct engine *o = r->engines[i];
        if (o->state_real && (e->folds_case ? strcasecmp(o->state_real, e->state_real)
                                            : strcmp(o->state_real, e->state_real)) == 0) {
            sb_error(SHARED_STATE, o->m->path, e->m->path, e->state_real);
            return SB_EXIT_USAGE;
        }
    }
    return SB_EXIT_OK;
}

/* On an output directory that folds case: jobs whose output paths (ids) differ only in case are refused. */
static int case_twins(struct engine *e)
{
    char *a, *b;
    int groups;
    if (sb_store_case_twins(e->st, &a, &b, &groups) != SB_OK)
        return SB_EXIT_FAILED;
    if (!groups)
        return SB_EXIT_OK;
    char more[64] = "";
    if (groups > 1)
        snprintf(more, sizeof more, " (and %d more such group%s)", groups - 1, SB_S(groups - 1));
    sb_error("%s: jobs %s and %s would write the same output files%s: %s is on a filesystem that does "
             "not tell upper from lower case in names (such as FAT, exFAT or an SMB share); give them ids "
             "(or output_name paths) that differ in more than case; nothing was sent",
             e->m->path, a, b, more, e->m->output_dir);
    free(a);
    free(b);
    return SB_EXIT_USAGE;
}

/*
 * Storage before money: the output directory takes a file (made, written,
 * fsynced, removed) before anything is submitted. A read-only one is refused
 * (exit 2); a full one stops the run before it starts (exit 75).
 */
static int probe_writable(struct engine *e)
{
    static const char name[] = ".seedbatch-write-probe";
    unlinkat(e->outdir_fd, name, 0); /* left by a run killed here */
    int err = 0, fd = openat(e->outdir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        err = errno;
    } else {
        if (write(fd, "seedbatch\n", 10) != 10)
            err = errno ? errno : EIO;
        else if (fsync(fd) != 0)
            err = errno;
        close(fd);
        unlinkat(e->outdir_fd, name, 0);
    }
    if (!err)
        return SB_EXIT_OK;
    if (err == ENOSPC || err == EDQUOT) {
        sb_error("%s: output_dir %s has no room (%s): nothing was sent; free some space and run again",
                 e->m->path, e->m->output_dir, strerror(err));
        return SB_EXIT_TEMPFAIL;
    }
    sb_error("%s: output_dir %s cannot be written (%s): nothing was sent", e->m->path, e->m->output_dir,
             strerror(err));
    return SB_EXIT_USAGE;
}

static int take_lock(struct engine *e)
{
    char err[SB_ERRLEN];
    int rc = sb_store_lock(e->state_path, &e->lock_fd, err, sizeof err);
    if (rc == SB_EBUSY) {
        sb_error("another seedbatch run is using %s (lock %s.lock is held); wait for it to finish, "
                 "or run again later to resume", e->state_path, e->state_path);
        return SB_EXIT_TEMPFAIL;
    }
    if (rc != SB_OK) {
        sb_error("%s", err);
        return SB_EXIT_USAGE;
    }
    return SB_EXIT_OK;
}

struct idlist {
    char **ids;
    int n;
    const char *retry;     /* error kind to retry, "" for all */
};

static int collect_id(const struct sb_jobrow *r, void *ud)
{
    struct idlist *l = ud;
    if (l->retry && *l->retry && (!r->error_kind || strcmp(r->error_kind, l->retry) != 0))
        return 0;
    if (l->retry && r->error_kind && strcmp(r->error_kind, SB_EK_INVALID_INPUT) == 0) {
        /* A bad reference image fails again at once: nothing to retry. */
        cJSON *spec = r->spec ? cJSON_Parse(r->spec) : NULL;
        int invalid = cJSON_GetObjectItemCaseSensitive(spec, "invalid") != NULL;
        cJSON_Delete(spec);
        if (invalid)
            return 0;
    }
    if ((l->n & (l->n - 1)) == 0)
        l->ids = sb_realloc(l->ids, (size_t)(l->n ? l->n * 2 : 1) * sizeof *l->ids);
    l->ids[l->n++] = sb_strdup(r->id);
    return 0;
}

/* Rewrites the rows of the listed jobs through fn, directly (before the loop runs). */
static void each_listed(struct engine *e, struct idlist *l, void (*fn)(struct engine *, struct sb_jobrow *))
{
    for (int i = 0; i < l->n; i++) {
        struct sb_jobrow r;
        if (sb_store_get_job(e->st, l->ids[i], &r) == SB_OK) {
            enum sb_job_state from = r.state;
            fn(e, &r);
            if (sb_store_begin(e->st) != SB_OK || sb_store_save_job(e->st, &r, from) != SB_OK) {
                e->fatal = 1;
                snprintf(e->err, sizeof e->err, "cannot write the state database %s", e->state_path);
            }
            sb_jobrow_clear(&r);
        }
        free(l->ids[i]);
    }
    free(l->ids);
    memset(l, 0, sizeof *l);
}

/*
 * --retry-failed: a job whose prediction may still be at the provider is polled
 * again (running, its id kept); any other is submitted again (pending).
 */
static void requeue(struct engine *e, struct sb_jobrow *r)
{
    int repoll = sb_jobrow_repollable(r);
    /* A prediction polled again keeps its one charge in the ledger (charged stays set). */
    sb_freep(&r->error_kind);
    sb_freep(&r->error_code);
    sb_freep(&r->error_message);
    r->error_http = 0;
    sb_freep(&r->outputs);
    sb_freep(&r->output_urls);
    r->finished_at = 0;
    if (repoll) {
        sb_jobrow_set_state(r, SB_JOB_RUNNING);
        sb_map_put(e->retry_repoll, r->id, (void *)1);
        sb_info("job %s: its prediction %s is polled again, not submitted again", r->id, r->prediction_id);
        return;
    }
    sb_freep(&r->prediction_id);
    forget_cached_uploads(e, r);
    if (r->uncertain_submits)
        sb_warn("job %s: %d earlier submit%s of it reached the provider with no prediction id seen and may have "
                "been billed: submitting it again may pay twice", r->id, r->uncertain_submits,
                SB_S(r->uncertain_submits));
    /* possible_duplicate stays: a submit of it that lost its answer may have been billed. */
    r->submitted_at = 0;
    sb_jobrow_set_state(r, SB_JOB_PENDING);
}

static void unupload(struct engine *e, struct sb_jobrow *r)
{
    (void)e;
    sb_jobrow_set_state(r, SB_JOB_PENDING);
}

static void resubmit_flagged(struct engine *e, struct sb_jobrow *r)
{
    /* Its submit may have reached the provider: a flagged charge, and sent again flagged. */
    struct sb_charge c = {sb_now_ms(), r->id, r->fingerprint, NULL, r->images_requested, price(e),
                          r->images_requested * price(e), 1, "in flight when a run stopped"};
    if (sb_store_begin(e->st) != SB_OK || sb_store_add_charge(e->st, &c) < 0) {
        e->fatal = 1;
        snprintf(e->err, sizeof e->err, "cannot write the state database %s", e->state_path);
    }
    r->possible_duplicate = 1;
    r->uncertain_submits++;
    sb_jobrow_set_state(r, SB_JOB_PENDING);
    sb_info("job %s: its submit was in flight when the last run stopped: submitting again "
            "(flagged possible_duplicate)", r->id);
}

/* A job the last run left with a prediction: polled or downloaded, never submitted again. */
static int resume_job(const struct sb_jobrow *r, void *ud)
{
    struct engine *e = ud;
    if (!r->prediction_id && r->state != SB_JOB_DOWNLOADING)
        return 0;
    struct sb_jobrow copy;
    row_copy(&copy, r);
    struct job *j = job_new(e, &copy);
    hold(e, j);
    /* Its prediction's charge, once in the ledger, is in the spend: nothing more is held for it. */
    if (!j->row.charged)
        j->reserved = (j->spec ? j->spec->images_requested : j->row.images_requested) * price(e);
    e->reserved += j->reserved;
    set_due(e, j, 0);
    if (j->row.state == SB_JOB_DOWNLOADING) {
        set_want(j, W_DOWNLOAD);
        return 0;
    }
    set_want(j, W_POLL);
    j->poll_every = e->m->limits.poll_interval_ms;
    j->retrying = sb_map_get(e->retry_repoll, j->row.id) != NULL;
    j->submitted_mono = mono_ms() - (sb_now_ms() - j->row.submitted_at);
    if (j->row.state != SB_JOB_RUNNING)
        set_state(e, j, SB_JOB_RUNNING);
    return 0;
}

/*
 * Puts each job where the state left it: requeued when --retry-failed asks,
 * resumable ones taken into work, the rest read later in windows when their
 * turn comes. Only the jobs in work are held in memory.
 */
struct startup {
    struct engine *e;
    struct idlist uploading;       /* back to pending: their uploads are done again or cached */
    struct idlist unsent;          /* submitting without an id: submitted again, flagged */
};

static int sort_left(const struct sb_jobrow *r, void *ud)
{
    struct startup *su = ud;
    if (r->state == SB_JOB_UPLOADING)
        return collect_id(r, &su->uploading);
    if (r->state == SB_JOB_SUBMITTING && !r->prediction_id)
        return collect_id(r, &su->unsent);
    return resume_job(r, su->e);
}

static void load_jobs(struct engine *e)
{
    const char *rf = e->o->retry_failed;
    struct idlist l = {NULL, 0, NULL};
    if (rf) {
        l.retry = rf;
        if (strcmp(rf, "cancelled") == 0) {
            l.retry = NULL;
            sb_store_each_in_states(e->st, 1u << SB_JOB_CANCELLED, collect_id, &l);
        } else {
            sb_store_each_in_states(e->st, 1u << SB_JOB_FAILED, collect_id, &l);
        }
        each_listed(e, &l, requeue);
    }
    /* One look over the jobs the last run left in work: rows to rewrite are listed
     * (and rewritten after the look), jobs with a prediction are taken up again. */
    struct startup su = {e, {NULL, 0, NULL}, {NULL, 0, NULL}};
    sb_store_each_in_states(e->st, 1u << SB_JOB_UPLOADING | 1u << SB_JOB_SUBMITTING | 1u << SB_JOB_RUNNING |
                            1u << SB_JOB_DOWNLOADING, sort_left, &su);
    each_listed(e, &su.uploading, unupload);
    each_listed(e, &su.unsent, resubmit_flagged);
    long pending_images;
    struct sb_spend sp = {0};
    if (sb_store_counts(e->st, e->count, &pending_images) != SB_OK || sb_store_spend(e->st, price(e), &sp) != SB_OK) {
        e->fatal = 1;
        snprintf(e->err, sizeof e->err, "cannot read the state database %s", e->state_path);
    }
    e->spent = e->spent_before = sp.spent;
    e->flagged = sp.flagged;
    e->flagged_cost = sp.flagged_cost;
    e->pend_after = -1;
}

/* Opens one manifest's batch: key, directories, lock, state, sync. Returns an exit code. */
int engine_open(struct run *r, struct engine *e)
{
    struct sb_manifest *m = e->m;
    char err[SB_ERRLEN];
    e->run = r;
    e->lock_fd = -1;
    e->res_cache = sb_results_cache_new();
    e->res_lo = INT64_MAX;
    e->res_hi = -1;
    e->outdir_fd = -1;
    if (sb_api_open(m, &e->api, err, sizeof err) != SB_OK) {
        sb_error("%s: %s", m->path, err);
        return SB_EXIT_USAGE;
    }
    e->state_path = e->o->state_path ? sb_strdup(e->o->state_path) : sb_store_default_path(m->output_dir);
    char *sdir = sb_dirname(e->state_path);
    /* Named with the manifest and which directory it is: a path alone can read like another file's. */
    const char *which = "output_dir";
    int mk = sb_mkdirs(m->output_dir, err, sizeof err) == SB_OK;
    if (mk) {
        which = "state";
        mk = sb_mkdirs(sdir, err, sizeof err) == SB_OK;
    }
    char *sreal = mk ? realpath(sdir, NULL) : NULL;
    free(sdir);
    if (!mk) {
        sb_error("%s: %s: %s", m->path, which, err);
        return SB_EXIT_FAILED;
    }
    e->outdir_fd = open(m->output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (e->outdir_fd < 0 || !sreal) {
        sb_error("cannot open %s: %s", e->outdir_fd < 0 ? m->output_dir : e->state_path, strerror(errno));
        free(sreal);
        return SB_EXIT_FAILED;
    }
    e->folds_case = dir_folds_case(e->outdir_fd);
    const char *base = strrchr(e->state_path, '/');
    e->state_real = sb_asprintf("%s/%s", sreal, base ? base + 1 : e->state_path);
    free(sreal);
    int rc = shares_state(r, e);
    if (rc == SB_EXIT_OK)
        rc = take_lock(e);
    if (rc == SB_EXIT_OK)
        rc = probe_writable(e);
    if (rc != SB_EXIT_OK)
        return rc;
    if ((rc = sb_store_open(e->state_path, 0, &e->st, err, sizeof err)) != SB_OK) {
        sb_error("%s", err);
        if (rc == SB_EFULL)
            sb_error("%s: the state has no room: nothing was sent; free some space and run again", m->path);
        return rc == SB_EFULL ? SB_EXIT_TEMPFAIL : SB_EXIT_FAILED;
    }
    struct sb_sync_report rep;
    if (sb_sync(e->st, m, &rep, err, sizeof err) != SB_OK) {
        sb_error("%s", err);
        return SB_EXIT_FAILED;
    }
    if (rep.added || rep.changed || rep.removed)
        sb_info("%s: %d new job%s, %d changed, %d unchanged, %d no longer in the manifest",
                m->path, rep.added, SB_S(rep.added), rep.changed, rep.kept, rep.removed);
    for (int i = 0; i < rep.removed && i < 20; i++)
        sb_info("job %s is no longer in the manifest; its state is kept", rep.removed_ids[i]);
    /* Said here, once: these jobs never reach the loop, whose failures are logged as they come. */
    for (int i = 0; i < rep.invalid && i < SB_SYNC_SHOWN; i++)
        sb_warn("%s: %s; it fails (%s) and the other jobs run", m->path, rep.invalid_why[i], SB_EK_INVALID_INPUT);
    if (rep.invalid > SB_SYNC_SHOWN)
        sb_warn("%s: %d more job%s with an unusable reference image fail%s the same way: `seedbatch validate %s` "
                "lists them all", m->path, rep.invalid - SB_SYNC_SHOWN, SB_S(rep.invalid - SB_SYNC_SHOWN),
                SB_ONE(rep.invalid - SB_SYNC_SHOWN, "s", ""), m->path);
    sb_sync_report_clear(&rep);
    /* The processing time earlier runs learned for this provider and model, aged; else the prior. */
    if (sb_store_get_timing(e->st, sb_provider_name(m->provider), m->model, &e->timing) == SB_OK)
        sb_timing_age(&e->timing, sb_now_ms());
    else
        sb_timing_prior(&e->timing);
    sb_debug("%s: processing time per image: median %.2fs, 90%% within %.2fs (%.0f samples learned)", m->path,
             sb_timing_quantile(&e->timing, 0.5), sb_timing_quantile(&e->timing, 0.9), e->timing.samples);
    if (e->folds_case && (rc = case_twins(e)) != SB_EXIT_OK)
        return rc;
    e->uploads = sb_map_new();
    e->cached_uploads = sb_map_new();
    e->retry_repoll = sb_map_new();
    sb_store_each_upload(e->st, m->media.upload_ttl_ms, remember_upload, e->cached_uploads);
    e->last_results = mono_ms();
    e->scan_all = 1;
    load_jobs(e);
    uv_timer_init(&r->uv, &e->wake);
    uv_timer_init(&r->uv, &e->commit_timer);
    return SB_EXIT_OK;
}
