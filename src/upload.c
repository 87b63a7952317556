/*
 * upload.c turns a job's local reference images into URLs: each file is
 * uploaded once per content hash (jobs needing a file being uploaded wait for
 * that one upload), cached in the state with media.upload_ttl, and uploaded
 * again when a provider lets an earlier run's URL go.
 */
#include "engine_int.h"

static void upload_settled(struct engine *e, struct upload *u, const struct outcome *oc);
static void upload_done(struct sb_req *r, CURLcode rc);

/* An upload's file, read by libcurl through these from the descriptor opened for it. */
struct upload_src {
    int fd;
    curl_off_t off;
};

static size_t upload_read(char *buf, size_t size, size_t n, void *arg)
{
    struct upload_src *s = arg;
    ssize_t got = pread(s->fd, buf, size * n, (off_t)s->off);
    if (got < 0)
        return CURL_READFUNC_ABORT;
    s->off += got;
    return (size_t)got;
}

static int upload_seek(void *arg, curl_off_t offset, int origin)
{
    struct upload_src *s = arg;
    if (origin != SEEK_SET || offset < 0)
        return CURL_SEEKFUNC_CANTSEEK;
    s->off = offset;
    return CURL_SEEKFUNC_OK;
}

static void upload_src_free(void *arg)
{
    struct upload_src *s = arg;
    close(s->fd);
    free(s);
}

void start_upload(struct engine *e, struct upload *u)
{
    struct sb_http_opts o = {10000, 120000, 1000, 30, MAX_API_BODY, 0};
    /*
     * The file as it was checked, or none: one removed or rewritten since fails
     * its jobs at once (invalid_input), rather than as a network error after
     * every attempt, or with other bytes under the checked file's hash.
     */
    char why[256];
    int fd = sb_localfile_open_same(u->file, why, sizeof why);
    if (fd < 0) {
        struct outcome oc;
        memset(&oc, 0, sizeof oc);
        oc.v = V_FAIL;
        oc.kind = SB_EK_INVALID_INPUT;
        snprintf(oc.msg, sizeof oc.msg, "%s", why);
        u->state = UP_FAILED;
        upload_settled(e, u, &oc);
        return;
    }
    char *url = e->api.ops->upload_url(&e->api);
    struct call *c = &u->call;
    c->kind = CALL_UPLOAD;
    c->e = e;
    c->up = u;
    c->job = NULL;
    if (sb_req_init(&c->req, e->run->http, url, &o) != SB_OK) {
        close(fd);
        free(url);
        return;
    }
    free(url);
    sb_req_header(&c->req, e->api.auth_header);
    c->req.mime = curl_mime_init(c->req.easy);
    curl_mimepart *part = curl_mime_addpart(c->req.mime);
    struct sb_upload_form form;
    e->api.ops->upload_form(u->file, &form);
    curl_mime_name(part, form.field);
    struct upload_src *src = sb_malloc(sizeof *src);
    src->fd = fd;
    src->off = 0;
    /* Streamed from disk; the descriptor is closed with the part. */
    curl_mime_data_cb(part, (curl_off_t)u->file->stamp.size, upload_read, upload_seek, upload_src_free, src);
    curl_mime_filename(part, form.filename);
    curl_mime_type(part, form.type);
    u->state = UP_RUNNING;
    u->tries++;
    e->calls[CALL_UPLOAD]++;
    if (sb_req_start(&c->req, upload_done) != SB_OK)
        u->state = UP_IDLE;
}

/* Gives every job waiting for this upload its URL, or its failure. */
static void upload_settled(struct engine *e, struct upload *u, const struct outcome *oc)
{
    for (int i = 0; i < u->n_waiters; i++) {
        struct job *j = u->waiters[i];
        if (j->row.state != SB_JOB_UPLOADING)
            continue;
        if (u->state == UP_FAILED) {
            char msg[700];
            snprintf(msg, sizeof msg, "upload of %s failed: %s", u->file->path, oc->msg);
            job_failed(e, j, oc->kind, oc->http, oc->code[0] ? oc->code : NULL, msg);
            continue;
        }
        for (int k = 0; k < j->spec->n_images; k++) {
            const struct sb_image_ref *ref = &j->spec->images[k];
            if (!j->urls[k] && ref->file && strcmp(ref->file->sha256, u->sha) == 0) {
                j->urls[k] = sb_strdup(u->url);
                j->uploads_left--;
            }
        }
        if (j->uploads_left == 0) {
            set_want(j, W_SUBMIT);
            set_due(e, j, 0);
        }
    }
    free(u->waiters);
    u->waiters = NULL;
    u->n_waiters = 0;
}

/* Marks the upload's cache row (its URL, or that it is forgotten) for the next commit. */
static void upload_dirty(struct engine *e, struct upload *u)
{
    if (u->dirty)
        return;
    u->dirty = 1;
    u->dirty_next = e->up_dirty_head;
    e->up_dirty_head = u;
}

/* The upload's URL is stale (past media.upload_ttl, or refused): the next job that needs it uploads it again. */
static void forget_upload(struct engine *e, struct upload *u)
{
    sb_freep(&u->url);
    u->state = UP_IDLE;
    u->tries = 0;
    u->earlier = 0;
    upload_dirty(e, u);
}

static void upload_done(struct sb_req *r, CURLcode rc)
{
    struct call *c = sb_container_of(r, struct call, req);
    struct engine *e = c->e;
    struct upload *u = c->up;
    struct outcome oc;
    count_unsent(e, r, CALL_UPLOAD);
    classify(e, r, rc, &oc);
    if (oc.v == V_OK) {
        char *url = NULL;
        if (e->api.ops->parse_upload(answer(r), &url, oc.msg, sizeof oc.msg) == SB_OK) {
            u->url = url;
            u->state = UP_DONE;
            u->made_at = sb_now_ms();
            u->earlier = 0;
            upload_dirty(e, u);
            sb_debug("uploaded %s", u->file->path);
            upload_settled(e, u, &oc);
            sb_req_cleanup(r);
            dispatch(e);
            return;
        }
        oc.v = V_RETRY;
        oc.kind = SB_EK_SERVER;
    }
    sb_req_cleanup(r);
    if (oc.v == V_ABORT) {
        auth_abort(e, &oc);
        u->state = UP_IDLE;
    } else if (oc.v == V_RETRY && oc.unreached) {
        int64_t wait = no_answer(e, &oc); /* -1: the run stops */
        u->tries--; /* it reached no server: not an attempt */
        u->state = UP_IDLE;
        u->due = mono_ms() + (wait > 0 ? wait : 0);
        sb_debug("upload of %s: %s; trying again", u->file->path, oc.msg);
    } else if (oc.v == V_RETRY && u->tries < e->m->limits.max_attempts && !e->run->stopping) {
        u->state = UP_IDLE;
        u->due = mono_ms() + backoff(u->tries, r->retry_after_ms);
        sb_debug("upload of %s: %s; retrying", u->file->path, oc.msg);
    } else if (e->run->stopping) {
        u->state = UP_IDLE;
    } else {
        u->state = UP_FAILED;
        upload_settled(e, u, &oc);
    }
    dispatch(e);
}

/*
 * Gives the job the URL of each of its reference images, or lists it as waiting
 * for the image's upload; then it waits for its uploads or goes to submit. An
 * upload older than media.upload_ttl (made in an earlier run, or in this one if
 * it has run that long) is made again: the provider keeps uploads for a while only.
 */
void resolve_images(struct engine *e, struct job *j)
{
    int64_t wall = sb_now_ms();
    if (!j->urls)
        j->urls = sb_calloc((size_t)j->spec->n_images, sizeof *j->urls);
    j->uploads_left = 0;
    for (int k = 0; k < j->spec->n_images; k++) {
        const struct sb_image_ref *ref = &j->spec->images[k];
        if (j->urls[k])
            continue;
        if (ref->url) {
            j->urls[k] = sb_strdup(ref->url);
            continue;
        }
        struct upload *u = sb_map_get(e->uploads, ref->file->sha256);
        if (!u) {
            u = sb_calloc(1, sizeof *u);
            memcpy(u->sha, ref->file->sha256, sizeof u->sha);
            u->file = ref->file;
            u->all_next = e->uploads_all;
            e->uploads_all = u;
            sb_map_put(e->uploads, u->sha, u);
            const struct cached_upload *cached = sb_map_get(e->cached_uploads, u->sha);
            if (cached) {
                u->url = sb_strdup(cached->url);
                u->made_at = cached->made_at;
                u->earlier = 1;
                u->state = UP_DONE;
            }
        }
        if (u->state == UP_DONE && wall - u->made_at > e->m->media.upload_ttl_ms) {
            sb_debug("%s: its upload is older than media.upload_ttl: uploading it again", u->file->path);
            forget_upload(e, u);
        }
        if (u->state == UP_DONE) {
            j->urls[k] = sb_strdup(u->url);
            continue;
        }
        j->uploads_left++;
        int listed = 0;
        for (int w = 0; w < u->n_waiters; w++)
            listed |= u->waiters[w] == j;
        if (!listed) {
            u->waiters = sb_realloc(u->waiters, (size_t)(u->n_waiters + 1) * sizeof *u->waiters);
            u->waiters[u->n_waiters++] = j;
        }
        if (u->state == UP_FAILED)
            u->state = UP_IDLE, u->tries = 0;
        if (u->state == UP_IDLE)
            u->due = 0;
    }
    if (j->uploads_left) {
        set_want(j, W_UPLOADS);
        set_state(e, j, SB_JOB_UPLOADING);
    } else {
        set_want(j, W_SUBMIT);
        set_due(e, j, 0);
    }
}

/*
 * A submit refused as a bad request (400, 422) may have named upload URLs the
 * provider no longer serves: uploads are temporary, and a cached one from an
 * earlier run (or one replaced since the job took it) may be gone. Such URLs are
 * dropped, the files uploaded again and the job submitted once more: a refused
 * submit created nothing. Returns 1 when the job goes round again so.
 */
int reupload_stale(struct engine *e, struct job *j, const struct outcome *oc)
{
    if (j->reuploaded || !j->spec || (oc->http != 400 && oc->http != 422))
        return 0;
    int stale = 0;
    for (int k = 0; k < j->spec->n_images; k++) {
        const struct sb_image_ref *ref = &j->spec->images[k];
        struct upload *u = ref->file ? sb_map_get(e->uploads, ref->file->sha256) : NULL;
        if (!u || !j->urls[k] || (!u->earlier && u->url && strcmp(u->url, j->urls[k]) == 0))
            continue;
        if (u->earlier)
            forget_upload(e, u);
        sb_freep(&j->urls[k]);
        stale++;
    }
    if (!stale)
        return 0;
    sb_warn("job %s: the submit was refused (%s); %d of its reference images used upload URLs of an earlier "
            "run, which the provider may have let go: uploading %s again and submitting once more", j->row.id,
            oc->msg, stale, SB_ONE(stale, "it", "them"));
    j->reuploaded = 1;
    j->tries = 0;
    resolve_images(e, j);
    return 1;
}

void cached_upload_free(void *p)
{
    struct cached_upload *c = p;
    if (c)
        free(c->url);
    free(c);
}

void remember_upload(const char *sha, const char *url, int64_t made_at, void *ud)
{
    struct cached_upload *c = sb_malloc(sizeof *c);
    c->url = sb_strdup(url);
    c->made_at = made_at;
    cached_upload_free(sb_map_put(ud, sha, c));
}

/*
 * A job --retry-failed submits again uploads its local files again: the URLs an
 * earlier run cached may be gone at the provider (its failure may even be that).
 */
void forget_cached_uploads(struct engine *e, const struct sb_jobrow *r)
{
    struct sb_jobspec js;
    memset(&js, 0, sizeof js);
    if (!r->spec || sb_jobspec_from_json(e->m, r->id, r->spec, &js) != SB_OK)
        return;
    for (int k = 0; k < js.n_images; k++) {
        const struct sb_localfile *f = js.images[k].file;
        if (f && sb_map_get(e->cached_uploads, f->sha256)) {
            cached_upload_free(sb_map_put(e->cached_uploads, f->sha256, NULL));
            if (sb_store_drop_upload(e->st, f->sha256) != SB_OK)
                e->fatal = 1;
        }
    }
    sb_jobspec_clear(&js);
}
