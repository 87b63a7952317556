/*
 * report.html: a review page for a batch. One self-contained file (inline CSS and
 * a little JavaScript, nothing fetched but the images themselves): a header with
 * jobs per status, images written, spend and when, then one card per job in
 * manifest order with its prompt, reference images and outputs side by side as
 * thumbnails linking to the full files, its error, attempts and cost. Every card
 * shows without JavaScript; with it, status filters and a text search.
 */
#ifndef SB_REPORT_H
#define SB_REPORT_H

#include <stddef.h>

#include "sb_manifest.h"
#include "sb_store.h"

/*
 * Writes the report of m to out (NULL: <output_dir>/report.html), atomically. With
 * synced set, from the state's rows (a run that brought the state in line with the
 * manifest), else from the manifest read again, each job with its row when the state
 * (st may be NULL) has this version of it.
 */
int sb_report_write(struct sb_manifest *m, struct sb_store *st, int synced, const char *out, char *err,
                    size_t errlen);

#endif
