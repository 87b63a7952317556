/*
 * sync.c brings a manifest's jobs into the queue, above both: it walks the
 * jobs the manifest's checking reading kept (or reads them again) and hands
 * each to the store, which adds it, keeps it, or queues it again when its
 * fingerprint changed; then the local files read are recorded and jobs no
 * longer in the manifest flagged, all in one transaction.
 */
#include "sb_sync.h"

#include <stdlib.h>
#include <string.h>

struct sync_ctx {
    struct sb_store_sync *x;
    struct sb_sync_report *rep;
    char *err;
    size_t errlen;
    int files_rc;
};

void sb_sync_report_clear(struct sb_sync_report *r)
{
    for (int i = 0; i < r->removed; i++)
        free(r->removed_ids[i]);
    free(r->removed_ids);
    for (int i = 0; i < r->invalid && i < SB_SYNC_SHOWN; i++)
        free(r->invalid_why[i]);
    memset(r, 0, sizeof *r);
}

static int sync_kept(const struct sb_kept_job *k, int i, void *ud)
{
    struct sync_ctx *c = ud;
    enum sb_sync_outcome how;
    int failed_now;
    int rc = sb_store_sync_job(c->x, k, i, &how, &failed_now, c->err, c->errlen);
    if (rc != SB_OK)
        return rc;
    struct sb_sync_report *rep = c->rep;
    if (how == SB_SYNC_ADDED)
        rep->added++;
    else if (how == SB_SYNC_KEPT)
        rep->kept++;
    else
        rep->changed++;
    if (failed_now) {
        if (rep->invalid < SB_SYNC_SHOWN)
            rep->invalid_why[rep->invalid] = sb_asprintf("job %s: %s", k->id, k->invalid);
        rep->invalid++;
    }
    return SB_OK;
}

/* The same from a job read from the manifest again (when the checked jobs were not kept). */
static int sync_job(const struct sb_manifest *m, const struct sb_jobspec *j, int i, void *ud)
{
    (void)m;
    char *spec = sb_jobspec_json(j);
    struct sb_kept_job k = {j->id, j->fingerprint, j->invalid, spec ? spec : "", j->images_requested};
    int rc = sync_kept(&k, i, ud);
    free(spec);
    return rc;
}

static void sync_file(const char *path, void *val, void *ud)
{
    (void)path;
    struct sync_ctx *c = ud;
    if (c->files_rc == SB_OK)
        c->files_rc = sb_store_sync_file(c->x, val);
}

int sb_sync(struct sb_store *st, struct sb_manifest *m, struct sb_sync_report *rep, char *err, size_t errlen)
{
    memset(rep, 0, sizeof *rep);
    struct sync_ctx c = {NULL, rep, err, errlen, SB_OK};
    if (sb_store_sync_begin(st, &c.x, err, errlen) != SB_OK)
        return SB_EIO;
    int rc = sb_manifest_each_kept(m, sync_kept, &c, err, errlen);
    if (rc == SB_ENOENT)
        rc = sb_manifest_each_job(m, sync_job, &c, err, errlen);
    if (rc == SB_OK && m->files) {
        sb_map_each(m->files, sync_file, &c);
        if ((rc = c.files_rc) != SB_OK)
            sb_seterr(err, errlen, "cannot record the local files of %s in its state", m->path);
    }
    if (rc != SB_OK) {
        sb_store_sync_abort(c.x);
        return rc;
    }
    return sb_store_sync_end(c.x, m->path, m->n_jobs, rep->added, rep->changed, &rep->removed_ids,
                             &rep->removed, err, errlen);
}
