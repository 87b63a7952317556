/*
 * download.c fetches output images as sb_download.h describes. The write
 * callback appends to the .part file and refuses bytes past the cap; a body
 * that ends before its image does is refused (retried); the fsync runs on
 * libuv's threadpool so a slow disk does not stall transfers.
 */
#include "sb_download.h"
#include "sb_imageinfo.h"
#include "sb_log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int sink(struct sb_req *r, const char *p, size_t n)
{
    struct sb_download *d = sb_container_of(r, struct sb_download, req);
    if (r->body.max && d->total + n > r->body.max) {
        r->too_big = 1;
        return -1;
    }
    if (d->headlen < sizeof d->head) {
        size_t k = sizeof d->head - d->headlen < n ? sizeof d->head - d->headlen : n;
        memcpy(d->head + d->headlen, p, k);
        d->headlen += k;
    }
    /* The last sizeof tail bytes: what was kept of them, then the new ones. */
    size_t t = sizeof d->tail;
    if (n >= t) {
        memcpy(d->tail, p + n - t, t);
    } else {
        memmove(d->tail, d->tail + n, t - n);
        memcpy(d->tail + t - n, p, n);
    }
    while (n) {
        ssize_t w = write(d->fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            d->write_errno = errno;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        d->total += (size_t)w;
    }
    return 0;
}

static void SB_PRINTF(3, 4) fail(struct sb_download *d, int retryable, const char *fmt, ...)
{
    va_list ap;
    d->failed = 1;
    d->retryable = retryable;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
    if (d->fd >= 0) {
        close(d->fd);
        d->fd = -1;
    }
    if (d->part)
        unlinkat(d->dirfd, d->part, 0);
    d->done(d);
}

int sb_download_finish(struct sb_download *d)
{
    if (fsync(d->fd) != 0) {
        d->write_errno = errno;
        snprintf(d->error, sizeof d->error, "fsync of the output failed: %s", strerror(errno));
        goto fail;
    }
    close(d->fd);
    d->fd = -1;
    enum sb_image_format f = sb_image_sniff(d->head, d->headlen);
    char *final = sb_concat(d->stem, ".", sb_image_format_ext(f), NULL);
    if (renameat(d->dirfd, d->part, d->dirfd, final) != 0) {
        d->write_errno = errno;
        snprintf(d->error, sizeof d->error, "cannot rename the output into place: %s", strerror(errno));
        free(final);
        goto fail;
    }
    if (d->subdir) {
        d->final_name = sb_concat(d->subdir, "/", final, NULL);
        free(final);
    } else {
        d->final_name = final;
    }
    return 0;
fail:
    d->failed = 1;
    if (d->fd >= 0) {
        close(d->fd);
        d->fd = -1;
    }
    unlinkat(d->dirfd, d->part, 0);
    return -1;
}

static void on_done(struct sb_req *r, CURLcode rc)
{
    struct sb_download *d = sb_container_of(r, struct sb_download, req);
    d->rc = rc;
    d->http_status = r->status;
    char msg[64];
    if (d->write_errno) {
        fail(d, 0, "cannot write the output: %s", strerror(d->write_errno));
        return;
    }
    if (rc == CURLE_FILESIZE_EXCEEDED || r->too_big) {
        fail(d, 0, "%s", "output is larger than the size cap");
        return;
    }
    if (rc != CURLE_OK) {
        /* A redirect to another scheme, a redirect loop, a certificate refused: not worth another try. */
        int refused = rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_TOO_MANY_REDIRECTS ||
                      rc == CURLE_URL_MALFORMAT || rc == CURLE_PEER_FAILED_VERIFICATION ||
                      rc == CURLE_SSL_CACERT_BADFILE;
        sb_strlcpy(msg, curl_easy_strerror(rc), sizeof msg);
        fail(d, !refused, "download failed: %s", r->errbuf[0] ? r->errbuf : msg);
        return;
    }
    if (r->status != 200) {
        snprintf(msg, sizeof msg, "%ld", r->status);
        /* 404, 410 and 403 too: a CDN may not have the file yet, and a fresh poll gives fresh URLs. */
        fail(d, 1, r->status == 404 || r->status == 410 || r->status == 403
             ? "output URL answered HTTP %s: expired or missing" : "output URL answered HTTP %s", msg);
        return;
    }
    enum sb_image_format f = sb_image_sniff(d->head, d->headlen);
    if (f != SB_IMG_PNG && f != SB_IMG_JPEG && f != SB_IMG_WEBP) {
        fail(d, 1, "%s", "output is not a PNG, JPEG or WEBP image");
        return;
    }
    /* A body cut off on a connection that gave no length ends cleanly: the format says where it ends. */
    const char *cut = sb_image_cut_short(f, d->head, d->headlen, d->tail, d->total);
    if (cut) {
        fail(d, 1, "output incomplete after %zu bytes: %s (a cut-off transfer?)", d->total, cut);
        return;
    }
    d->failed = 0;
    d->done(d); /* every byte is in the .part file; sb_download_finish makes it final */
}

int sb_download_start(struct sb_download *d, struct sb_loop *l, const char *url, int dirfd, const char *dir,
                      const char *stem, size_t max_bytes, sb_download_done_fn done)
{
    struct sb_http_opts o = {10000, 300000, 1000, 30, max_bytes, 1};
    free(d->part);
    free(d->stem);
    sb_freep(&d->final_name);
    sb_freep(&d->subdir);
    if (d->own_dirfd)
        close(d->dirfd);
    d->own_dirfd = 0;
    d->dirfd = dirfd;
    d->dir = dir;
    const char *slash = strrchr(stem, '/');
    if (slash) {
        d->subdir = sb_strndup(stem, (size_t)(slash - stem));
        int sub = sb_openat_dir(dirfd, d->subdir, 1);
        if (sub < 0) {
            d->write_errno = errno;
            snprintf(d->error, sizeof d->error, "cannot make the folder %s/%s: %s", dir, d->subdir,
                     errno == ELOOP ? "a part of it is a link or not a folder" : strerror(errno));
            d->failed = 1;
            d->retryable = errno == EMFILE || errno == ENFILE;
            d->stem = d->part = NULL;
            return SB_EIO;
        }
        d->dirfd = sub;
        d->own_dirfd = 1;
        stem = slash + 1;
    }
    d->stem = sb_strdup(stem);
    d->part = sb_concat(stem, ".part", NULL);
    d->headlen = d->total = 0;
    memset(d->tail, 0, sizeof d->tail);
    d->write_errno = 0;
    d->failed = d->retryable = 0;
    d->http_status = 0;
    d->error[0] = '\0';
    d->done = done;
    int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    d->fd = openat(d->dirfd, d->part, flags, 0644);
    if (d->fd < 0 && errno == EEXIST) { /* a leftover from an interrupted run, or a planted link */
        unlinkat(d->dirfd, d->part, 0);
        d->fd = openat(d->dirfd, d->part, flags, 0644);
    }
    if (d->fd < 0) {
        d->write_errno = errno;
        snprintf(d->error, sizeof d->error, "cannot create %s/%s%s%s: %s", dir, d->subdir ? d->subdir : "",
                 d->subdir ? "/" : "", d->part, strerror(errno));
        d->failed = 1;
        d->retryable = errno == EMFILE || errno == ENFILE; /* files in use now, free later */
        return SB_EIO;
    }
    if (sb_req_init(&d->req, l, url, &o) != SB_OK) {
        close(d->fd);
        d->fd = -1;
        unlinkat(d->dirfd, d->part, 0);
        snprintf(d->error, sizeof d->error, "out of memory");
        d->failed = 1;
        return SB_ENOMEM;
    }
    d->req.sink = sink;
    return sb_req_start(&d->req, on_done);
}

void sb_download_abort(struct sb_download *d)
{
    sb_req_abort(&d->req);
    if (d->fd >= 0) {
        close(d->fd);
        d->fd = -1;
        unlinkat(d->dirfd, d->part, 0);
    }
}

void sb_download_cleanup(struct sb_download *d)
{
    sb_req_cleanup(&d->req);
    if (d->fd >= 0) { /* received but never finalized: the next run replaces the .part */
        close(d->fd);
        d->fd = -1;
    }
    free(d->part);
    free(d->stem);
    free(d->final_name);
    free(d->subdir);
    d->part = d->stem = d->final_name = d->subdir = NULL;
    if (d->own_dirfd)
        close(d->dirfd);
    d->own_dirfd = 0;
}
