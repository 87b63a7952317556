/*
 * Downloading one output image: streamed to <dir>/<stem>.part (opened with
 * O_EXCL | O_NOFOLLOW) and capped in the write callback; once every byte has
 * arrived and looks like an image, sb_download_finish (a blocking call, made on
 * a worker thread) fsyncs it and renames it to <stem>.<ext>, ext taken from the
 * bytes. A final name always holds a complete file. No credentials are sent.
 */
#ifndef SB_DOWNLOAD_H
#define SB_DOWNLOAD_H

#include <uv.h>

#include "sb_loop.h"

struct sb_download;
typedef void (*sb_download_done_fn)(struct sb_download *d);

struct sb_download {
    struct sb_req req;
    int fd;
    int dirfd;                 /* the output directory (the caller's; names are relative to it) */
    const char *dir;           /* its path, for messages */
    char *part;                /* <stem>.part, in dirfd */
    char *stem;                /* the name without its folder */
    char *subdir;              /* the folder under the caller's directory (its stem had a "/"), or NULL; */
    int own_dirfd;             /* ... then dirfd is it, opened here */
    char *final_name;          /* <stem>.<ext> once done */
    unsigned char head[16];
    unsigned char tail[16];    /* the last bytes received, for the end-of-image check */
    size_t headlen, total;
    int write_errno;           /* why writing, making or finishing the file failed (ENOSPC, ...), or 0 */
    CURLcode rc;
    /* Outcome: 0, or an error with http status (0 if none) and a message. */
    int failed;
    int retryable;
    long http_status;
    char error[256];
    sb_download_done_fn done;
};

/*
 * Starts fetching url into stem.part in the directory open as dirfd (dir is its
 * path, for messages, and must outlive d); done runs on the loop when the
 * transfer has ended: failed is set, or every byte is in the .part file. A stem
 * with folders ("shoes/sku1_1") has them made as needed; none may be a link.
 */
int sb_download_start(struct sb_download *d, struct sb_loop *l, const char *url, int dirfd, const char *dir,
                      const char *stem, size_t max_bytes, sb_download_done_fn done);
/*
 * Makes a received download durable: fsync, close, rename into its final
 * name (sets final_name). Blocking: for a worker thread. Returns 0, or -1 with
 * error set and the .part removed (after a failed fsync the data is in doubt).
 */
int sb_download_finish(struct sb_download *d);
/* Stops it and removes its .part file (for shutdown). */
void sb_download_abort(struct sb_download *d);
void sb_download_cleanup(struct sb_download *d);

#endif
