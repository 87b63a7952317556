/*
 * job.c owns a job's life in memory: made from its row, taken into work
 * (holding a concurrency slot) and released, failed, retired and freed; its
 * state changes and error; and the wake queue, a binary heap on each job's due
 * time, so the scheduler looks only at jobs whose time has come. Also the
 * dispatch queues of calls waiting for the rate limiter, and the back-off.
 */
#include "engine_int.h"

/*
 * Every state change of a job in work: made on its row by sb_jobrow_set_state (the
 * table of allowed changes, finished_at, the old -> new debug line), and the row
 * marked for the next commit. running -> downloading is written too: it carries
 * the prediction's charge.
 */
void set_state(struct engine *e, struct job *j, enum sb_job_state to)
{
    sb_jobrow_set_state(&j->row, to);
    save(e, j);
}

/*
 * What a job in work waits for next (its uploads, its submit, a poll, its
 * downloads, its outputs made final, nothing): the one place it changes, logged
 * with --debug.
 */
void set_want(struct job *j, enum want w)
{
    static const char *names[] = {"nothing", "its uploads", "its submit", "a poll", "its downloads",
                                  "its outputs made final"};
    if (j->want != w)
        sb_debug("job %s: waits for %s", j->row.id, names[w]);
    j->want = w;
}

/* Sets the job's error; kind, code and msg may be the job's own current ones. */
void set_error(struct engine *e, struct job *j, const char *kind, int http, const char *code, const char *msg)
{
    char *k = sb_strdup(kind);
    char *c = code && *code ? sb_strdup(code) : NULL;
    char *m = sb_redact(&e->api, sb_strdup(msg ? msg : ""));
    sb_freep(&j->row.error_kind);
    sb_freep(&j->row.error_code);
    sb_freep(&j->row.error_message);
    j->row.error_kind = k;
    j->row.error_http = http;
    j->row.error_code = c;
    j->row.error_message = m;
}

void clear_error(struct job *j)
{
    sb_freep(&j->row.error_kind);
    sb_freep(&j->row.error_code);
    sb_freep(&j->row.error_message);
    j->row.error_http = 0;
}

/* A JSON array of strings, as the state keeps output names and URLs. */
char *str_array(char *const *v, int n)
{
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    sb_jw_str_array(&b, v, n);
    return b.data;
}

/* The job needs nothing more of the engine: it goes once its row is written and no call refers to it. */
void retire(struct engine *e, struct job *j)
{
    if (j->retired)
        return;
    j->retired = 1;
    j->grave_next = e->grave;
    e->grave = j;
}

static void wq_put(struct engine *e, int i, struct job *j)
{
    e->wq[i] = j;
    j->wq_pos = i + 1;
}

static void wq_up(struct engine *e, int i)
{
    struct job *j = e->wq[i];
    while (i > 0 && e->wq[(i - 1) / 2]->due > j->due) {
        wq_put(e, i, e->wq[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    wq_put(e, i, j);
}

static void wq_down(struct engine *e, int i)
{
    struct job *j = e->wq[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= e->n_wq)
            break;
        if (c + 1 < e->n_wq && e->wq[c + 1]->due < e->wq[c]->due)
            c++;
        if (e->wq[c]->due >= j->due)
            break;
        wq_put(e, i, e->wq[c]);
        i = c;
    }
    wq_put(e, i, j);
}

static void wq_remove(struct engine *e, struct job *j)
{
    if (!j->wq_pos)
        return;
    int i = j->wq_pos - 1;
    j->wq_pos = 0;
    struct job *last = e->wq[--e->n_wq];
    if (i == e->n_wq)
        return;
    wq_put(e, i, last);
    wq_up(e, i);
    wq_down(e, last->wq_pos - 1);
}

/* The job's next action waits until due: the scheduler looks at it then. */
void set_due(struct engine *e, struct job *j, int64_t due)
{
    wq_remove(e, j);
    j->due = due;
    if (e->n_wq == e->cap_wq) {
        e->cap_wq = e->cap_wq ? e->cap_wq * 2 : 64;
        e->wq = sb_realloc(e->wq, (size_t)e->cap_wq * sizeof *e->wq);
    }
    wq_put(e, e->n_wq++, j);
    wq_up(e, e->n_wq - 1);
}

struct job *wq_pop_due(struct engine *e, int64_t now)
{
    if (e->n_wq == 0 || e->wq[0]->due > now)
        return NULL;
    struct job *j = e->wq[0];
    wq_remove(e, j);
    return j;
}

void job_free(struct engine *e, struct job *j)
{
    wq_remove(e, j);
    if (j->live_prev)
        j->live_prev->live_next = j->live_next;
    else
        e->live = j->live_next;
    if (j->live_next)
        j->live_next->live_prev = j->live_prev;
    sb_req_cleanup(&j->call.req);
    for (int k = 0; j->dl && k < j->n_out; k++) {
        sb_download_cleanup(&j->dl[k].d);
        free(j->outputs[k]);
    }
    free(j->dl);
    free(j->outputs);
    for (int k = 0; j->urls && j->spec && k < j->spec->n_images; k++)
        free(j->urls[k]);
    free(j->urls);
    if (j->spec) {
        /* An upload may still list it as waiting. */
        for (int k = 0; k < j->spec->n_images; k++) {
            const struct sb_image_ref *ref = &j->spec->images[k];
            struct upload *u = ref->file ? sb_map_get(e->uploads, ref->file->sha256) : NULL;
            for (int w = 0; u && w < u->n_waiters; w++)
                if (u->waiters[w] == j)
                    u->waiters[w--] = u->waiters[--u->n_waiters];
        }
        sb_jobspec_clear(j->spec);
        free(j->spec);
    }
    sb_jobrow_clear(&j->row);
    free(j);
}

/* Frees retired jobs whose rows are written and that no transfer or list refers to. */
void sweep(struct engine *e)
{
    struct job **pp = &e->grave;
    while (*pp) {
        struct job *j = *pp;
        int busy = j->active || j->dirty || j->inflight || j->queued;
        for (int k = 0; j->dl && k < j->n_out && !busy; k++)
            busy = j->dl[k].running || j->dl[k].received;
        if (busy) {
            pp = &j->grave_next;
            continue;
        }
        *pp = j->grave_next;
        job_free(e, j);
    }
}

/* A job for a row of the state (taken over), in work from now on. */
struct job *job_new(struct engine *e, struct sb_jobrow *row)
{
    struct job *j = sb_calloc(1, sizeof *j);
    j->row = *row;
    j->saved = row->state;
    memset(row, 0, sizeof *row);
    j->call.e = e;
    j->queue_position = -1;
    j->spec = sb_calloc(1, sizeof *j->spec);
    if (sb_jobspec_from_json(e->m, j->row.id, j->row.spec, j->spec) != SB_OK) {
        free(j->spec);
        j->spec = NULL;
    }
    j->live_next = e->live;
    if (e->live)
        e->live->live_prev = j;
    e->live = j;
    return j;
}

void release(struct engine *e, struct job *j)
{
    retire(e, j);
    if (!j->active)
        return;
    j->active = 0;
    e->slots_used--;
    e->reserved -= j->reserved;
    j->reserved = 0;
    for (int i = 0; i < e->n_active; i++) {
        if (e->active[i] == j) {
            e->active[i] = e->active[--e->n_active];
            break;
        }
    }
}

void hold(struct engine *e, struct job *j)
{
    if (j->active)
        return;
    j->active = 1;
    e->slots_used++;
    if (e->n_active == e->cap_active) {
        e->cap_active = e->cap_active ? e->cap_active * 2 : 64;
        e->active = sb_realloc(e->active, (size_t)e->cap_active * sizeof *e->active);
    }
    e->active[e->n_active++] = j;
}

void job_failed(struct engine *e, struct job *j, const char *kind, int http, const char *code, const char *msg)
{
    set_error(e, j, kind, http, code, msg);
    set_state(e, j, SB_JOB_FAILED);
    /* On a terminal the progress line counts them; a log (a file, JSON) has each. */
    struct sb_log_fields f = {"job_failed", e->m->path, j->row.id, "failed", j->row.error_kind, j->row.error_http,
                              j->row.attempts};
    sb_log_event(e->run->tty && sb_log_format_of() == SB_LOG_TEXT ? SB_LOG_DEBUG : SB_LOG_WARN, &f,
                 "job %s failed (%s): %s", j->row.id, j->row.error_kind, j->row.error_message);
    set_want(j, W_NONE);
    e->jobs_done_run++;
    release(e, j);
}

void enqueue_job(struct engine *e, struct job *j)
{
    if (j->queued)
        return;
    j->queued = 1;
    j->qnext = NULL;
    struct job **head = j->want == W_SUBMIT ? &e->q_submit : &e->q_poll;
    struct job **tail = j->want == W_SUBMIT ? &e->q_submit_tail : &e->q_poll_tail;
    if (*tail)
        (*tail)->qnext = j;
    else
        *head = j;
    *tail = j;
}

struct job *dequeue_job(struct job **head, struct job **tail)
{
    struct job *j = *head;
    if (j) {
        *head = j->qnext;
        if (!*head)
            *tail = NULL;
        j->queued = 0;
    }
    return j;
}

void enqueue_upload(struct engine *e, struct upload *u)
{
    if (u->queued)
        return;
    u->queued = 1;
    u->qnext = NULL;
    if (e->q_up_tail)
        e->q_up_tail->qnext = u;
    else
        e->q_up = u;
    e->q_up_tail = u;
}

/* Full-jitter exponential backoff, or the server's Retry-After. */
int64_t backoff(int tries, int64_t retry_after)
{
    if (retry_after >= 0)
        return retry_after;
    int64_t cap = BACKOFF_BASE_MS << (tries > 6 ? 6 : tries - 1 < 0 ? 0 : tries - 1);
    if (cap > BACKOFF_CAP_MS)
        cap = BACKOFF_CAP_MS;
    return (int64_t)((double)rand() / RAND_MAX * (double)cap);
}

/* A deep copy of a row. */
void row_copy(struct sb_jobrow *c, const struct sb_jobrow *r)
{
    *c = *r;
    c->id = r->id ? sb_strdup(r->id) : NULL;
    c->prediction_id = r->prediction_id ? sb_strdup(r->prediction_id) : NULL;
    c->outputs = r->outputs ? sb_strdup(r->outputs) : NULL;
    c->output_urls = r->output_urls ? sb_strdup(r->output_urls) : NULL;
    c->error_kind = r->error_kind ? sb_strdup(r->error_kind) : NULL;
    c->error_code = r->error_code ? sb_strdup(r->error_code) : NULL;
    c->error_message = r->error_message ? sb_strdup(r->error_message) : NULL;
    c->spec = r->spec ? sb_strdup(r->spec) : NULL;
}
