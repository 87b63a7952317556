/*
 * A manifest's jobs as an array, for tests that look at several at once: the
 * manifest itself hands them out one at a time (sb_manifest_each_job).
 * t_jobs copies them; t_manifest_free frees the copies with the manifest.
 */
#ifndef T_JOBS_H
#define T_JOBS_H
#include "sb_manifest.h"

struct t_jobs {
    struct sb_manifest *m;
    struct sb_jobspec *jobs;
    int n;
    struct t_jobs *next;
};
static struct t_jobs *t_jobs_all;

static int t_copy_job(const struct sb_manifest *m, const struct sb_jobspec *j, int index, void *ud)
{
    struct t_jobs *t = ud;
    (void)m, (void)index;
    t->jobs = realloc(t->jobs, (size_t)(t->n + 1) * sizeof *t->jobs);
    struct sb_jobspec *c = &t->jobs[t->n++];
    *c = *j;
    c->id = j->id ? strdup(j->id) : NULL;
    c->prompt = j->prompt ? strdup(j->prompt) : NULL;
    c->invalid = j->invalid ? strdup(j->invalid) : NULL;
    c->output_name = j->output_name ? strdup(j->output_name) : NULL;
    c->params = cJSON_Duplicate(j->params, 1);
    c->images = calloc(j->n_images ? (size_t)j->n_images : 1, sizeof *c->images);
    for (int k = 0; k < j->n_images; k++) {
        c->images[k] = j->images[k];
        c->images[k].spec = j->images[k].spec ? strdup(j->images[k].spec) : NULL;
        c->images[k].url = j->images[k].url ? strdup(j->images[k].url) : NULL;
    }
    return 0;
}

/* Every job of m, in order (NULL and a failed check if it cannot be read). */
static inline struct sb_jobspec *t_jobs(struct sb_manifest *m)
{
    for (struct t_jobs *t = t_jobs_all; t; t = t->next)
        if (t->m == m)
            return t->jobs;
    struct t_jobs *t = calloc(1, sizeof *t);
    t->m = m;
    t->next = t_jobs_all;
    t_jobs_all = t;
    char err[256];
    if (sb_manifest_each_job(m, t_copy_job, t, err, sizeof err) != 0)
        fprintf(stderr, "t_jobs: %s\n", err);
    return t->jobs;
}

static inline void t_manifest_free(struct sb_manifest *m)
{
    for (struct t_jobs **pp = &t_jobs_all; *pp; pp = &(*pp)->next) {
        struct t_jobs *t = *pp;
        if (t->m != m)
            continue;
        *pp = t->next;
        for (int i = 0; i < t->n; i++)
            sb_jobspec_clear(&t->jobs[i]);
        free(t->jobs);
        free(t);
        break;
    }
    sb_manifest_free(m);
}
#endif
