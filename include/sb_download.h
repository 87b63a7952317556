/*
 * Downloading one output image: streamed to <dir>/<stem>.part (opened with
 * O_EXCL | O_NOFOLLOW), capped in the write callback, fsynced on libuv's
 * threadpool, then renamed to <stem>.<ext> with ext taken from the bytes.
 * A final name always holds a complete file. No credentials are sent.
 */
#ifndef SB_DOWNLOAD_H
#define SB_DOWNLOAD_H

#include <uv.h>

#include "sb_loop.h"

struct sb_download;
typedef void (*sb_download_done_fn)(struct sb_download *d);

struct sb_download {
    struct sb_req req;
    uv_fs_t fs;
    int fd;
    char *part;                /* <dir>/<stem>.part */
    char *base;                /* <dir>/<stem> */
    char *final_name;          /* <stem>.<ext> once done */
    unsigned char head[16];
    size_t headlen, total;
    int write_errno;
    int fsyncing;              /* an fsync is running on the threadpool */
    CURLcode rc;
    /* Outcome: 0, or an error with http status (0 if none) and a message. */
    int failed;
    int retryable;
    long http_status;
    char error[256];
    sb_download_done_fn done;
};

/* Starts fetching url into dir/stem.*; done runs on the loop when finished either way. */
int sb_download_start(struct sb_download *d, struct sb_loop *l, const char *url, const char *dir,
                      const char *stem, size_t max_bytes, sb_download_done_fn done);
/* Stops it and removes its .part file (for shutdown). */
void sb_download_abort(struct sb_download *d);
void sb_download_cleanup(struct sb_download *d);

#endif
