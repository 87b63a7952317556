/*
 * calls.c decides what an API answer means: ok, retry (after a back-off,
 * honouring Retry-After), fail with an error kind, or abort the run (401, 402,
 * 403). It reads the provider's error bodies, redacts the key from what it
 * keeps, treats calls that reached no server apart (they cost no attempt, and
 * a run that reaches none stops with exit 75), and counts the calls.
 */
#include "engine_int.h"

/*
 * Calls are counted as they start. One that ended before it went out (the connection
 * refused, the name unresolved, the connect timed out: libcurl never got to send it)
 * reached no server and cost nothing: the summary counts it apart.
 */
void count_unsent(struct engine *e, const struct sb_req *r, enum call_kind kind)
{
    if (r->attempts == 0) {
        e->calls[kind]--;
        e->unreached++;
    }
}

/* The answer parsed as JSON, once for all its readers (NULL when it is not an object). */
const cJSON *answer(struct sb_req *r)
{
    if (!r->json_read) {
        r->json = sb_json_parse(r->body.data, r->body.len);
        r->json_read = 1;
    }
    return r->json;
}

/*
 * Whether an error answer's body still carries the provider's verdict on the
 * prediction ({"code":500,"data":{"status":"failed","error":...}}, as Atlas
 * answers a failed prediction): then the outcome is that failure, not retried.
 */
static int final_verdict(const struct call_answer *a, struct outcome *oc)
{
    struct sb_poll_result pr;
    char err[64];
    if (!a->body || a->ops->parse_poll(a->body, &pr, err, sizeof err) != SB_OK)
        return 0;
    int final = pr.state == SB_PRED_FAILED || pr.state == SB_PRED_CANCELLED;
    if (final) {
        oc->v = V_FAIL;
        oc->kind = pr.kind ? pr.kind : SB_EK_REJECTED;
        snprintf(oc->msg, sizeof oc->msg, "HTTP %ld: %s", a->status,
                 pr.error ? pr.error : "the provider cancelled the prediction");
        if (pr.error_code)
            sb_strlcpy(oc->code, pr.error_code, sizeof oc->code);
    }
    sb_poll_result_clear(&pr);
    return final;
}

void call_verdict(const struct call_answer *a, struct outcome *oc)
{
    memset(oc, 0, sizeof *oc);
    if (a->rc != CURLE_OK) {
        CURLcode rc = a->rc;
        oc->v = V_RETRY;
        oc->kind = SB_EK_NETWORK;
        oc->lost = a->sent;
        snprintf(oc->msg, sizeof oc->msg, "%s%s%s", curl_easy_strerror(rc), a->errbuf && a->errbuf[0] ? ": " : "",
                 a->errbuf ? a->errbuf : "");
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE ||
            rc == CURLE_SSL_CERTPROBLEM || rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT)
            oc->v = V_FAIL;
        if (rc == CURLE_FILESIZE_EXCEEDED)
            oc->kind = SB_EK_SERVER;
        oc->unreached = oc->v == V_RETRY && !a->sent;
        return;
    }
    long s = a->status;
    char emsg[300] = "", ecode[64] = "";
    int hint = 0;
    int carried = a->ops->error_info(a->body, emsg, sizeof emsg, ecode, sizeof ecode, &hint) == SB_ERR;
    oc->http = (int)s;
    sb_strlcpy(oc->code, ecode, sizeof oc->code);
    if (carried && hint && (s < 300 || s == 400 || s == 404))
        s = hint; /* the provider's code says more than the status (or is the only error sign) */
    else if (s >= 200 && s < 300 && carried)
        s = 500;
    if (s >= 200 && s < 300) {
        oc->v = V_OK;
        return;
    }
    snprintf(oc->msg, sizeof oc->msg, "HTTP %ld%s%s", a->status, emsg[0] ? ": " : "", emsg);
    if (s == 401 || s == 403 || s == 451) {
        oc->v = V_ABORT;
        oc->kind = SB_EK_AUTH;
    } else if (s == 402) {
        oc->v = V_ABORT;
        oc->kind = SB_EK_QUOTA;
    } else if (s == 429) {
        oc->v = V_RETRY;
        oc->kind = SB_EK_RATE_LIMITED;
    } else if (s == SB_HTTP_NOT_READY) {
        oc->v = V_RETRY;
        oc->kind = SB_EK_SERVER;
        oc->not_ready = 1;
    } else if (s >= 500 && final_verdict(a, oc)) {
        /* The body names a final status: a decision of the provider's, not a fault to retry. */
    } else if (s >= 500 || s < 200 || (s >= 300 && s < 400) || s == 408) {
        oc->v = V_RETRY;
        oc->kind = SB_EK_SERVER;
        /*
         * An API's 500, or a gateway's answer (502, 504; a CDN's 520 and 524),
         * says something failed or did not answer in time, not that the request
         * was never taken: a submit answered so may have been accepted, as when
         * its answer is lost on the way. (503 and 429 say it was not.)
         */
        oc->lost = s == 500 || s == 502 || s == 504 || s == 520 || s == 524;
    } else {
        oc->v = V_FAIL;
        oc->kind = SB_EK_INVALID_INPUT;
    }
}

static void redact_outcome(struct engine *e, struct outcome *oc)
{
    char *t = sb_redact(&e->api, sb_strdup(oc->msg));
    sb_strlcpy(oc->msg, t, sizeof oc->msg);
    free(t);
    t = sb_redact(&e->api, sb_strdup(oc->code));
    sb_strlcpy(oc->code, t, sizeof oc->code);
    free(t);
}

/*
 * Classifies a call's answer (call_verdict) and does what the answer tells the
 * run: a provider that answered is reachable; a 2xx proves the key; a 429 cuts
 * the request rate; a request sent and never answered counts towards stopping
 * an unreachable run. The key is redacted from what the outcome keeps.
 */
void classify(struct engine *e, struct sb_req *r, CURLcode rc, struct outcome *oc)
{
    struct call_answer a = {rc, r->sent, r->status, r->errbuf, rc == CURLE_OK ? answer(r) : NULL, e->api.ops};
    call_verdict(&a, oc);
    redact_outcome(e, oc);
    int p = e->m->provider;
    if (rc != CURLE_OK) {
        /* Sent and never answered: still an attempt (it may have been taken). A kept-alive
         * connection the server had closed says nothing of the API: no pause for it. */
        if (oc->v == V_RETRY && r->sent && r->status == 0 && !r->resend_stopped)
            no_answer(e, oc);
        return;
    }
    e->run->reached[p] = 1;
    e->run->unanswered_since[p] = 0;
    e->run->unanswered_calls[p] = 0;
    if (oc->v == V_OK)
        e->run->proven[p] = 1;
    else if (oc->v == V_RETRY && strcmp(oc->kind, SB_EK_RATE_LIMITED) == 0) {
        int64_t now = mono_ms(), before = e->run->rl[p].paused_until;
        e->run->limited_at[p] = now;
        sb_rl_on_429(&e->run->rl[p], now, r->retry_after_ms);
        pause_began(e, before, now, "rate limited (Retry-After)");
    }
}

/*
 * Logs a pause of the provider's calls of 10 s or more when it begins (its cause and
 * length): before is when the last pause ended. The progress line shows it as it goes.
 */
void pause_began(struct engine *e, int64_t before, int64_t now, const char *cause)
{
    struct run *run = e->run;
    int p = e->m->provider;
    int64_t len = run->rl[p].paused_until - now;
    if (before > now || len < 10000)
        return;
    struct sb_log_fields f = {.event = "pause", .manifest = e->m->path};
    sb_log_event(SB_LOG_WARN, &f, "%s: calls paused for %llds: %s", e->api.ops->title,
                 (long long)((len + 999) / 1000), cause);
}

void auth_abort(struct engine *e, const struct outcome *oc)
{
    const struct sb_provider_ops *ops = e->api.ops;
    if (!e->run->auth_abort && oc->http == ops->wrong_path_status && strcmp(e->api.base, ops->default_base) != 0)
        /* A base URL set by hand is the likelier cause (one without its /api/v1, say). */
        sb_error("the API refused the key (%s): stopping; the state is kept. %s is set to %s, and a wrong "
                 "path there is answered %d too: check it, then the key or balance, and run again",
                 oc->msg, ops->base_env, e->api.base, ops->wrong_path_status);
    else if (!e->run->auth_abort)
        sb_error("the API refused the key (%s): stopping; the state is kept, fix the key or balance "
                 "and run again", oc->msg);
    e->run->auth_abort = 1;
    e->run->stopping = 1;
    unsend(e); /* what sent nothing billable goes back to pending */
}

/*
 * A call got no answer: no server took it, or one took it and never answered
 * (a hung API, a dropped connection). Until a call is answered, the provider's
 * calls go one at a time, each after a pause of about half the time gone since
 * the first unanswered one (1 to 30 s), so that an API that takes requests and
 * drops them is sent a few, not a stream; when none has been answered for
 * limits.unreachable_timeout (at most NO_ANSWER_FIRST_MS if none was in this
 * run), the run stops and exits 75, every job as it was, rather than failing
 * them one by one while the network or the API is down. Returns the pause, or
 * -1 when the run stops.
 */
int64_t no_answer(struct engine *e, const struct outcome *oc)
{
    struct run *run = e->run;
    int p = e->m->provider;
    int64_t now = mono_ms();
    if (!run->unanswered_since[p])
        run->unanswered_since[p] = now;
    run->unanswered_calls[p]++;
    run->proven[p] = 0;
    int64_t limit = e->m->limits.unreachable_ms;
    if (!run->reached[p] && limit > NO_ANSWER_FIRST_MS)
        limit = NO_ANSWER_FIRST_MS;
    if (run->stopping)
        return -1;
    if (now - run->unanswered_since[p] >= limit && run->unanswered_calls[p] >= 3) {
        sb_error("cannot reach the API at %s: %s (no answer for %llds): stopping; nothing is lost, "
                 "run again to resume", e->api.base, oc->msg,
                 (long long)((now - run->unanswered_since[p]) / 1000));
        run->unreachable = 1;
        run->stopping = 1;
        return -1;
    }
    int64_t gap = (now - run->unanswered_since[p]) / 2;
    gap = gap < 1000 ? 1000 : gap > 30000 ? 30000 : gap;
    int64_t pause = gap / 2 + (int64_t)((double)rand() / RAND_MAX * (double)(gap / 2));
    int64_t before = run->rl[p].paused_until;
    if (run->rl[p].paused_until < now + pause)
        run->rl[p].paused_until = now + pause;
    char cause[700];
    snprintf(cause, sizeof cause, "the API is unreachable (%.600s; no answer for %llds)", oc->msg,
             (long long)((now - run->unanswered_since[p]) / 1000));
    pause_began(e, before, now, cause);
    return pause;
}

void job_call_begun(struct job *j)
{
    j->inflight = 1;
}

void job_call_dropped(struct job *j)
{
    sb_req_cleanup(&j->call.req);
    j->inflight = 0;
    j->sent_mono = 0;
}

/* A job's API call has ended: the job is no longer in flight; the answer is classified. */
struct job *job_call_ended(struct sb_req *r, CURLcode rc, struct outcome *oc)
{
    struct call *c = sb_container_of(r, struct call, req);
    c->job->inflight = 0;
    c->job->sent_mono = 0;
    classify(c->e, r, rc, oc);
    return c->job;
}
