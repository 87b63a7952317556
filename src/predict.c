/*
 * predict.c owns a job's prediction: the submit (sent only once its intent is
 * committed; a submit that may have been billed without an id seen is a
 * flagged charge), then the polls with their back-off, the provider's status
 * words and result call, until the outputs are listed, the prediction fails,
 * or job_timeout ends it.
 */
#include "engine_int.h"

static void submit_done(struct sb_req *r, CURLcode rc);
static void poll_done(struct sb_req *r, CURLcode rc);

/* Commits the intent now; the request goes out after this turn's commit. */
void begin_submit(struct engine *e, struct job *j)
{
    /*
     * No whole-transfer timeout and no low-speed abort in libcurl: a submit waits
     * for its first byte up to limits.submit_timeout, which the tick judges with the
     * process's pauses left out (a libcurl timer firing after a SIGCONT would abort
     * it before the answer waiting in the socket is read, and a retry pays twice).
     */
    struct sb_http_opts o = {10000, 0, 0, 0, MAX_API_BODY, 0};
    char *url = e->api.ops->submit_url(&e->api, e->m->model);
    char *body = e->api.ops->submit_body(e->m, j->spec, j->urls);
    struct call *c = &j->call;
    c->kind = CALL_SUBMIT;
    c->e = e;
    c->job = j;
    if (sb_req_init(&c->req, e->run->http, url, &o) != SB_OK) {
        free(url);
        free(body);
        return;
    }
    free(url);
    sb_req_header(&c->req, e->api.auth_header);
    /*
     * On a reused connection that dies before any answer byte, libcurl 7.88
     * sends the request again by itself (Curl_retry_request; the opt-out
     * CURLOPT_FORBID_RETRY_ON_REUSE only exists from 8.16): the first may have
     * been billed. send_once stops that resend: the call ends as lost, counted
     * as possibly billed, and any further send waits for the budget's word.
     */
    c->req.send_once = 1;
    sb_req_json(&c->req, body);
    c->req.done = submit_done;
    j->tries++;
    j->row.attempts++;
    job_call_begun(j);
    set_state(e, j, SB_JOB_SUBMITTING);
    j->send_next = NULL;
    if (e->send_tail)
        e->send_tail->send_next = j;
    else
        e->send_head = j;
    e->send_tail = j;
}

/*
 * When to look at a prediction. With limits.poll_interval given: after it, or after
 * the time learned (below) when that is longer and something was learned, then
 * backing off from it. Otherwise from what was learned of the provider's
 * processing time (sb_timing.h, kept in the state; a first run starts from the
 * prior of 2 to 3 s an image): when the request budget binds, each call must
 * count, and the first look waits for the time 90% of predictions take, a look
 * that found it running for the time 80% of the rest take; when it does not
 * bind, the 60% and 50% marks, for less latency.
 */
#define POLL_FLOOR_MS 100

/*
 * Whether the request budget binds: calls waited for the rate limiter (or the API
 * refused some, 429) in the last 3 s, and the calls the provider's unfinished jobs
 * still need (about two each) are more than 3 s of the rate. A small batch, or the end
 * of a large one, has calls to spare: its polls may come sooner.
 */
static int budget_binds(const struct engine *e, int64_t now)
{
    const struct run *r = e->run;
    int p = e->m->provider;
    int64_t at = r->limited_at[p];
    if (!at || now - at >= 3000)
        return 0;
    double rate = r->rl[p].rate > 0 ? r->rl[p].rate : r->rl[p].ceiling;
    if (rate <= 0)
        return 1; /* refused with no rate known: every call counts */
    long left = 0;
    for (int k = 0; k < r->n; k++) {
        const struct engine *o = r->engines[k];
        if ((int)o->m->provider == p)
            left += o->m->n_jobs - o->count[SB_JOB_SUCCEEDED] - o->count[SB_JOB_FAILED] -
                    o->count[SB_JOB_CANCELLED];
    }
    return 2.0 * (double)left > 3.0 * rate;
}

static int images_of(const struct job *j)
{
    int n = j->spec ? j->spec->images_requested : j->row.images_requested;
    return n > 0 ? n : 1;
}

static int64_t clamp_delay(double ms)
{
    return ms < POLL_FLOOR_MS ? POLL_FLOOR_MS : ms > POLL_CAP_MS ? POLL_CAP_MS : (int64_t)ms;
}

static int64_t first_poll_delay(const struct engine *e, const struct job *j, int64_t now)
{
    const struct sb_limits *l = &e->m->limits;
    /* poll_interval given: the least wait; the timing counts once learned (not its prior). */
    if (l->poll_interval_given && e->timing.samples < 1)
        return l->poll_interval_ms;
    double q = budget_binds(e, now) ? 0.9 : 0.6;
    double d = sb_timing_quantile(&e->timing, q) * images_of(j) * 1000.0;
    if (l->poll_interval_given)
        return d > (double)l->poll_interval_ms ? clamp_delay(d) : l->poll_interval_ms;
    return clamp_delay(d);
}

/* After a look found it running: the next one, or 0 when the timing says nothing (past what was seen). */
static int64_t next_poll_delay(const struct engine *e, const struct job *j, int64_t now)
{
    if (e->m->limits.poll_interval_given || !j->submitted_here)
        return 0;
    int n = images_of(j);
    double el = (double)(now - j->submitted_mono) / 1000.0 / n;
    double f = sb_timing_cdf(&e->timing, el);
    double s = 0;
    if (f <= 0.98)
        s = sb_timing_quantile(&e->timing, f + (1 - f) * (budget_binds(e, now) ? 0.8 : 0.5)) - el;
    /* Past most of what was seen the distribution knows little: the wait grows with the time gone. */
    if (s < 0.3 * el)
        s = 0.3 * el;
    return clamp_delay(s * n * 1000.0);
}

/*
 * What this prediction says of the processing time (seconds an image): the
 * provider's predict_time when given, else between the last look that found it
 * running and the one that found it done (its middle; a little below the latter
 * when none found it running, so that the timing does not only ever grow).
 */
static void learn_timing(struct engine *e, struct job *j, const struct sb_poll_result *pr, int64_t now)
{
    if (!j->submitted_here || !j->submitted_mono)
        return;
    (void)now;
    /* When the look that found it done went out (a result call: the status call's before it). */
    double hi = j->done_s > 0 ? j->done_s : (double)(j->poll_sent_mono - j->submitted_mono) / 1000.0;
    double lo = j->running_s;
    double s = pr->predict_time >= 0 ? pr->predict_time : lo > 0 ? (lo + hi) / 2 : hi * 0.85;
    if (s > hi)
        s = hi;
    if (s < lo)
        s = lo;
    int n = pr->n_outputs > 0 ? pr->n_outputs : images_of(j);
    sb_timing_add(&e->timing, s / n);
    e->timing_dirty = 1;
}

/*
 * Submits of the job that reached the provider and may have made a billed
 * prediction whose id was never seen: the job is flagged possible_duplicate,
 * and each is a flagged charge, counted as billed against max_cost.
 */
static void uncertain_submits(struct engine *e, struct job *j, int n, const char *why)
{
    j->row.possible_duplicate = 1;
    j->row.uncertain_submits += n;
    for (int i = 0; i < n; i++)
        charge(e, j, NULL, j->spec ? j->spec->images_requested : j->row.images_requested, 1, why);
}

static void submit_done(struct sb_req *r, CURLcode rc)
{
    struct outcome oc;
    struct job *j = job_call_ended(r, rc, &oc);
    struct engine *e = j->call.e;
    count_unsent(e, r, CALL_SUBMIT);
    if (r->attempts > 1) {
        /* libcurl sent it again after a connection died: the first may have been accepted. */
        e->calls[CALL_SUBMIT] += r->attempts - 1;
        sb_warn("job %s: the submit was sent %d times (a connection died before answering); "
                "flagged possible_duplicate", j->row.id, r->attempts);
        uncertain_submits(e, j, r->attempts - 1, "sent again after a connection died: the first may have been taken");
    }
    /*
     * A 2xx says the provider took the submit: one whose id cannot be read (no id, a
     * body cut short) may have made a billed prediction that no poll can find. It is
     * never sent again by this run: only --retry-failed submits it again.
     */
    int accepted = r->status >= 200 && r->status < 300 && (oc.v == V_OK || rc != CURLE_OK);
    if (accepted) {
        char *id = NULL;
        if (oc.v == V_OK && e->api.ops->parse_submit(answer(r), &id, oc.msg, sizeof oc.msg) == SB_OK) {
            free(j->row.prediction_id);
            j->row.prediction_id = id;
            j->row.charged = 0;
            j->row.submitted_at = sb_now_ms();
            j->submitted_mono = mono_ms();
            j->tries = 0;
            clear_error(j);
            set_state(e, j, SB_JOB_RUNNING);
            set_want(j, W_POLL);
            j->poll_every = e->m->limits.poll_interval_ms;
            j->submitted_here = 1;
            j->running_s = j->done_s = 0;
            set_due(e, j, j->submitted_mono + first_poll_delay(e, j, j->submitted_mono));
            /*
             * Looks are timed to find the prediction done: each goes straight to the result
             * (a provider with a result call answers it with the state when unfinished), one
             * call where the status call would take two.
             */
            j->fetch_result = e->api.ops->result_url != NULL;
            sb_req_cleanup(r);
            dispatch(e);
            return;
        }
        char msg[sizeof oc.msg + 256];
        snprintf(msg, sizeof msg, "the provider accepted the submit (HTTP %ld) but its answer had no id (%s): it "
                 "may have been billed; check the provider's history (--retry-failed submits it again and may "
                 "pay twice)", r->status, oc.msg[0] ? oc.msg : "unreadable");
        uncertain_submits(e, j, 1, "accepted with no prediction id in the answer");
        sb_req_cleanup(r);
        job_failed(e, j, SB_EK_SERVER, (int)r->status, NULL, msg);
        dispatch(e);
        return;
    }
    int64_t ra = r->retry_after_ms;
    sb_req_cleanup(r);
    submit_failed(e, j, &oc, ra);
}

/* A submit that got no id: retried, waited for, or failed, as its outcome says. */
void submit_failed(struct engine *e, struct job *j, struct outcome *o, int64_t ra)
{
    struct outcome oc = *o;
    if (oc.v == V_RETRY && oc.lost) {
        /* Sent, and no answer says whether it was taken. */
        uncertain_submits(e, j, 1, "the answer to the submit was lost");
        sb_warn("job %s: the submit's answer was lost (%s): it may have been billed; flagged possible_duplicate "
                "and counted against max_cost", j->row.id, oc.msg);
    }
    if (oc.v == V_ABORT) {
        /* Refused: nothing was created. The job waits in pending for the next run. */
        auth_abort(e, &oc);
        set_state(e, j, SB_JOB_PENDING);
        release(e, j);
    } else if (oc.v == V_RETRY && oc.unreached) {
        int64_t wait = no_answer(e, &oc);
        j->tries--; /* it reached no server: not an attempt */
        if (j->row.attempts > 0)
            j->row.attempts--;
        if (wait >= 0) {
            sb_debug("job %s: submit: %s; trying again", j->row.id, oc.msg);
            set_want(j, W_SUBMIT);
            set_due(e, j, mono_ms() + wait);
        } else {
            set_state(e, j, SB_JOB_PENDING); /* nothing was sent */
            release(e, j);
        }
    } else if (oc.v == V_RETRY && j->tries < e->m->limits.max_attempts) {
        sb_debug("job %s: submit: %s; retrying", j->row.id, oc.msg);
        if (e->run->stopping) {
            release(e, j); /* stays submitting: the next run resubmits it, flagged */
        } else {
            set_want(j, W_SUBMIT);
            set_due(e, j, mono_ms() + backoff(j->tries, ra));
        }
    } else if (oc.v == V_FAIL && !e->run->stopping && reupload_stale(e, j, &oc)) {
        /* uploading again, then submitted once more */
    } else {
        job_failed(e, j, oc.kind, oc.http, oc.code[0] ? oc.code : NULL, oc.msg);
    }
    dispatch(e);
}

/* Sends a short API request for a job (a poll, a result, a cancel); url is taken over. */
int job_request(struct engine *e, struct job *j, char *url, const char *post, sb_req_done_fn done)
{
    struct sb_http_opts o = {10000, 30000, 100, 30, MAX_API_BODY, 0};
    struct call *c = &j->call;
    c->kind = CALL_POLL;
    c->e = e;
    c->job = j;
    int ok = sb_req_init(&c->req, e->run->http, url, &o) == SB_OK;
    free(url);
    if (!ok)
        return SB_ENOMEM;
    sb_req_header(&c->req, e->api.auth_header);
    if (post)
        sb_req_json(&c->req, sb_strdup(post));
    job_call_begun(j);
    if (sb_req_start(&c->req, done) != SB_OK) {
        job_call_dropped(j);
        return SB_ERR;
    }
    return SB_OK;
}

void start_poll(struct engine *e, struct job *j)
{
    char *url = j->fetch_result ? e->api.ops->result_url(&e->api, j->row.prediction_id)
                                : e->api.ops->poll_url(&e->api, j->row.prediction_id);
    j->tries++;
    e->calls[CALL_POLL]++;
    j->poll_sent_mono = mono_ms();
    job_request(e, j, url, NULL, poll_done);
}

/* The prediction is still running, or its answer brought nothing new: the next look waits its back-off. */
static void keep_polling(struct engine *e, struct job *j, int64_t now)
{
    j->fast = 0;
    int64_t d = next_poll_delay(e, j, now);
    sb_debug("job %s: still running %.2fs after its submit; next look in %lldms", j->row.id,
             j->submitted_mono ? (double)(now - j->submitted_mono) / 1000.0 : 0.0,
             (long long)(d > 0 ? d : j->poll_every));
    if (d > 0) {
        set_due(e, j, now + d);
        return;
    }
    set_due(e, j, now + j->poll_every);
    j->poll_every = (int64_t)((double)j->poll_every * 1.5);
    if (j->poll_every > POLL_CAP_MS)
        j->poll_every = POLL_CAP_MS;
}

/* A status word the provider's table does not know: read as running, and said once a run. */
static void unknown_status(struct engine *e, struct job *j, const char *word)
{
    char key[96];
    snprintf(key, sizeof key, "%s %s", e->api.ops->name, word);
    for (char *c = key; *c; c++)
        *c = (char)tolower((unsigned char)*c); /* words are read case-insensitively: said once in any case */
    if (sb_map_get(e->run->unknown_words, key))
        return;
    sb_map_put(e->run->unknown_words, key, (void *)1);
    char *w = sb_redact(&e->api, sb_strdup(word));
    sb_warn("job %s: %s answered the status \"%s\", which seedbatch does not know: read as still running "
            "(job_timeout bounds it); said once a run", j->row.id, e->api.ops->name, w);
    free(w);
}

/*
 * --retry-failed polled a prediction again to download its outputs, and the
 * provider no longer has it: only now is the job submitted (and paid for) again.
 */
static void resubmit_gone(struct engine *e, struct job *j)
{
    sb_warn("job %s: the provider no longer has its prediction %s: it has no outputs to give, so the job is "
            "submitted again", j->row.id, j->row.prediction_id);
    sb_freep(&j->row.prediction_id);
    sb_freep(&j->row.output_urls);
    j->row.submitted_at = 0;
    j->submitted_mono = 0;
    j->polled = j->fetch_result = j->retrying = 0;
    j->tries = 0;
    set_state(e, j, SB_JOB_PENDING);
    resolve_images(e, j);
}

/* A poll or result answer that reads: what the prediction's state means for the job. */
static void poll_read(struct engine *e, struct job *j, struct sb_poll_result *pr, int64_t now)
{
    int was_result = j->fetch_result;
    sb_strlcpy(j->last_status, pr->status, sizeof j->last_status);
    j->last_ready = pr->state == SB_PRED_READY;
    if (pr->unknown_status)
        unknown_status(e, j, pr->status);
    if (pr->state == SB_PRED_RUNNING) {
        j->queue_position = pr->queue_position;
        if (j->submitted_here)
            j->running_s = (double)(j->poll_sent_mono - j->submitted_mono) / 1000.0;
        keep_polling(e, j, now);
    } else if (pr->state == SB_PRED_READY) {
        if (j->submitted_here && !j->done_s)
            j->done_s = (double)(j->poll_sent_mono - j->submitted_mono) / 1000.0;
        /*
         * Finished, and no outputs listed. After the status call's "completed" the
         * result is fetched at once; the result call answering so (or a provider
         * without one) says nothing new: asked again after the back-off.
         */
        j->queue_position = -1;
        if (e->api.ops->result_url && !was_result && j->fast < MAX_FAST_CALLS) {
            j->fetch_result = 1;
            j->fast++;
            set_due(e, j, 0);
        } else {
            j->fetch_result = e->api.ops->result_url != NULL;
            keep_polling(e, j, now);
        }
    } else if (pr->state == SB_PRED_CANCELLED) {
        set_error(e, j, "cancelled", 0, NULL, "the request was cancelled at the provider");
        set_state(e, j, SB_JOB_CANCELLED);
        set_want(j, W_NONE);
        e->jobs_done_run++;
        release(e, j);
    } else if (pr->state == SB_PRED_FAILED) {
        job_failed(e, j, pr->kind ? pr->kind : SB_EK_REJECTED, 0, pr->error_code, pr->error);
    } else {
        if (pr->withheld)
            sb_warn("job %s: %d output%s withheld by the provider's content filter (has_nsfw_contents); "
                    "the other %d %s downloaded", j->row.id, pr->withheld, SB_S(pr->withheld), pr->n_outputs,
                    SB_ONE(pr->n_outputs, "is", "are"));
        if (pr->skipped)
            sb_warn("job %s: %d output entr%s of the answer %s no http(s) URL: passed over", j->row.id,
                    pr->skipped, SB_ONE(pr->skipped, "y", "ies"), SB_ONE(pr->skipped, "is", "are"));
        learn_timing(e, j, pr, now);
        j->row.predict_time = pr->predict_time;
        free(j->row.output_urls);
        j->row.output_urls = str_array(pr->outputs, pr->n_outputs);
        set_state(e, j, SB_JOB_DOWNLOADING);
        charge_outputs(e, j, pr->n_outputs);
        set_want(j, W_DOWNLOAD);
        set_due(e, j, 0);
        start_downloads(e, j, pr->outputs, pr->n_outputs);
    }
}

static void poll_done(struct sb_req *r, CURLcode rc)
{
    struct outcome oc;
    struct job *j = job_call_ended(r, rc, &oc);
    struct engine *e = j->call.e;
    count_unsent(e, r, CALL_POLL);
    int64_t now = mono_ms();
    if (oc.v != V_RETRY || !oc.unreached)
        j->polled = 1;
    /*
     * Not ready yet: a prediction created moments ago may not be visible (400/404),
     * and RunComfy answers a result asked for too early 400 with error_code 400005
     * (at any age). Both mean still running.
     */
    if (oc.not_ready || (oc.v == V_FAIL && (r->status == 404 || r->status == 400) && j->submitted_mono &&
                         now - j->submitted_mono < EARLY_404_MS)) {
        j->tries = 0;
        if (j->submitted_here)
            j->running_s = (double)(j->poll_sent_mono - j->submitted_mono) / 1000.0;
        keep_polling(e, j, now);
        sb_req_cleanup(r);
        dispatch(e);
        return;
    }
    if (oc.v == V_OK) {
        struct sb_poll_result pr;
        if (e->api.ops->parse_poll(answer(r), &pr, oc.msg, sizeof oc.msg) == SB_OK) {
            j->tries = 0;
            poll_read(e, j, &pr, now);
            sb_poll_result_clear(&pr);
            sb_req_cleanup(r);
            dispatch(e);
            return;
        }
        oc.v = V_RETRY;
        oc.kind = SB_EK_SERVER;
    }
    int64_t ra = r->retry_after_ms;
    sb_req_cleanup(r);
    j->fast = 0;
    if (oc.v == V_ABORT) {
        auth_abort(e, &oc);
    } else if (oc.v == V_RETRY && oc.unreached) {
        int64_t wait = no_answer(e, &oc); /* -1: the run stops, and the next one polls it */
        j->tries--; /* it reached no server: not an attempt */
        set_due(e, j, now + (wait > 0 ? wait : 0));
    } else if (oc.v == V_RETRY && j->tries < e->m->limits.max_attempts) {
        set_due(e, j, now + backoff(j->tries, ra));
    } else if (oc.v == V_FAIL && (r->status == 404 || r->status == 400 || sb_provider_gone_code(e->api.ops, oc.code))) {
        if (j->retrying && !e->run->stopping)
            resubmit_gone(e, j);
        else
            job_failed(e, j, SB_EK_SERVER, oc.http, oc.code, SB_GONE_MSG);
    } else {
        job_failed(e, j, oc.kind, oc.http, oc.code[0] ? oc.code : NULL, oc.msg);
    }
    dispatch(e);
}
