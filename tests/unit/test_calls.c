/* calls.c's verdict: a table of answers (transfer result, status, body) and what each means. */
#include "../../src/engine_int.h"
#include "t.h"

#define A (&sb_provider_atlas)
#define R (&sb_provider_runcomfy)
enum { LOST = 1, UNREACHED = 2, NOT_READY = 4 };

struct row {
    const struct sb_provider_ops *ops;
    CURLcode rc;
    int sent;
    long status;
    const char *body;     /* NULL: none */
    enum verdict v;
    const char *kind;     /* NULL for ok */
    int flags;            /* LOST | UNREACHED | NOT_READY */
    const char *code;     /* the provider's code kept, "" for none */
    const char *msg;      /* a part of the message, or NULL */
};

static const struct row rows[] = {
    /* Answers that say yes. */
    {A, CURLE_OK, 1, 200, "{\"code\":200,\"data\":{\"id\":\"p1\",\"status\":\"created\"}}", V_OK, NULL, 0, "", NULL},
    {R, CURLE_OK, 1, 200, "{\"request_id\":\"r1\",\"status\":\"in_queue\"}", V_OK, NULL, 0, "", NULL},
    {A, CURLE_OK, 1, 201, NULL, V_OK, NULL, 0, "", NULL},
    /* The key, permission, balance: the run stops. */
    {A, CURLE_OK, 1, 401, "{\"code\":401,\"msg\":\"Invalid API key\"}", V_ABORT, SB_EK_AUTH, 0, "401", "HTTP 401: Invalid API key"},
    {A, CURLE_OK, 1, 403, NULL, V_ABORT, SB_EK_AUTH, 0, "", "HTTP 403"},
    {A, CURLE_OK, 1, 451, NULL, V_ABORT, SB_EK_AUTH, 0, "", "HTTP 451"},
    {A, CURLE_OK, 1, 402, "{\"code\":402,\"msg\":\"Insufficient balance\"}", V_ABORT, SB_EK_QUOTA, 0, "402", "balance"},
    /* Rate limits and answers that say the request was not taken: retried, not lost. */
    {A, CURLE_OK, 1, 429, NULL, V_RETRY, SB_EK_RATE_LIMITED, 0, "", "HTTP 429"},
    {A, CURLE_OK, 1, 503, NULL, V_RETRY, SB_EK_SERVER, 0, "", "HTTP 503"},
    {A, CURLE_OK, 1, 408, NULL, V_RETRY, SB_EK_SERVER, 0, "", NULL},
    {A, CURLE_OK, 1, 302, NULL, V_RETRY, SB_EK_SERVER, 0, "", NULL},
    /* Answers that may hide a request taken: retried, and a submit so answered is lost. */
    {A, CURLE_OK, 1, 500, "{\"code\":500,\"msg\":\"internal error\"}", V_RETRY, SB_EK_SERVER, LOST, "500", "internal error"},
    {A, CURLE_OK, 1, 502, "<html>Bad Gateway</html>", V_RETRY, SB_EK_SERVER, LOST, "", "HTTP 502"},
    {A, CURLE_OK, 1, 504, NULL, V_RETRY, SB_EK_SERVER, LOST, "", NULL},
    {A, CURLE_OK, 1, 520, NULL, V_RETRY, SB_EK_SERVER, LOST, "", NULL},
    {A, CURLE_OK, 1, 524, NULL, V_RETRY, SB_EK_SERVER, LOST, "", NULL},
    /* A 5xx whose body names a final state is the provider's verdict, not a fault. */
    {A, CURLE_OK, 1, 500, "{\"code\":500,\"data\":{\"id\":\"p\",\"status\":\"failed\",\"error\":\"NSFW detected\"}}",
     V_FAIL, SB_EK_REJECTED, 0, "500", "HTTP 500: prediction failed: NSFW detected"},
    {A, CURLE_OK, 1, 500, "{\"code\":500,\"data\":{\"id\":\"p\",\"status\":\"timeout\"}}", V_FAIL, SB_EK_TIMEOUT, 0, "500", NULL},
    {A, CURLE_OK, 1, 502, "{\"data\":{\"status\":\"canceled\"}}", V_FAIL, SB_EK_REJECTED, 0, "", "the provider cancelled the prediction"},
    /* ... and one naming a running state is not. */
    {A, CURLE_OK, 1, 500, "{\"code\":500,\"data\":{\"id\":\"p\",\"status\":\"processing\"}}", V_RETRY, SB_EK_SERVER, LOST, "500", NULL},
    /* A 2xx that carries an error is not a success. */
    {A, CURLE_OK, 1, 200, "{\"code\":500,\"msg\":\"upstream failed\"}", V_RETRY, SB_EK_SERVER, LOST, "500", "upstream failed"},
    {A, CURLE_OK, 1, 200, "{\"code\":401,\"msg\":\"key expired\"}", V_ABORT, SB_EK_AUTH, 0, "401", "key expired"},
    /* Other 4xx: the request itself is wrong; the job fails. */
    {A, CURLE_OK, 1, 400, "{\"code\":400,\"msg\":\"images must be an array\"}", V_FAIL, SB_EK_INVALID_INPUT, 0, "400",
     "images must be an array"},
    {A, CURLE_OK, 1, 404, NULL, V_FAIL, SB_EK_INVALID_INPUT, 0, "", "HTTP 404"},
    {R, CURLE_OK, 1, 422, "{\"detail\":[{\"loc\":[\"body\",\"image\",0],\"msg\":\"URL must be https\"}]}", V_FAIL,
     SB_EK_INVALID_INPUT, 0, "", "image.0: URL must be https"},
    /* RunComfy's error codes: 400005 is "not ready yet", 404001 "no such request". */
    {R, CURLE_OK, 1, 400, "{\"error_code\":400005,\"error_message\":\"result not ready\"}", V_RETRY, SB_EK_SERVER,
     NOT_READY, "400005", NULL},
    {R, CURLE_OK, 1, 404, "{\"error_code\":404001,\"error_message\":\"request not found\"}", V_FAIL,
     SB_EK_INVALID_INPUT, 0, "404001", "request not found"},
    /* Transfers that failed: sent or not, and what cannot get better by retrying. */
    {A, CURLE_COULDNT_CONNECT, 0, 0, NULL, V_RETRY, SB_EK_NETWORK, UNREACHED, "", "Couldn't connect"},
    {A, CURLE_COULDNT_RESOLVE_HOST, 0, 0, NULL, V_RETRY, SB_EK_NETWORK, UNREACHED, "", NULL},
    {A, CURLE_OPERATION_TIMEDOUT, 1, 0, NULL, V_RETRY, SB_EK_NETWORK, LOST, "", "Timeout"},
    {A, CURLE_RECV_ERROR, 1, 0, NULL, V_RETRY, SB_EK_NETWORK, LOST, "", NULL},
    {A, CURLE_GOT_NOTHING, 1, 0, NULL, V_RETRY, SB_EK_NETWORK, LOST, "", NULL},
    {A, CURLE_PARTIAL_FILE, 1, 200, NULL, V_RETRY, SB_EK_NETWORK, LOST, "", NULL},
    {A, CURLE_FILESIZE_EXCEEDED, 1, 200, NULL, V_RETRY, SB_EK_SERVER, LOST, "", NULL},
    {A, CURLE_PEER_FAILED_VERIFICATION, 0, 0, NULL, V_FAIL, SB_EK_NETWORK, 0, "", NULL},
    {A, CURLE_SSL_CACERT_BADFILE, 0, 0, NULL, V_FAIL, SB_EK_NETWORK, 0, "", NULL},
    {A, CURLE_UNSUPPORTED_PROTOCOL, 0, 0, NULL, V_FAIL, SB_EK_NETWORK, 0, "", NULL},
    {A, CURLE_URL_MALFORMAT, 0, 0, NULL, V_FAIL, SB_EK_NETWORK, 0, "", NULL},
};

int main(void)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const struct row *w = &rows[i];
        cJSON *body = w->body ? sb_json_parse(w->body, strlen(w->body)) : NULL;
        struct call_answer a = {w->rc, w->sent, w->status, "", body, w->ops};
        struct outcome oc;
        memset(&oc, 0x5a, sizeof oc); /* whatever was there before is not read */
        call_verdict(&a, &oc);
        int bad = t_fail;
        CHECK_INT(oc.v, w->v);
        if (w->kind)
            CHECK_STR(oc.kind, w->kind);
        else
            CHECK(oc.kind == NULL);
        CHECK_INT(oc.lost, (w->flags & LOST) != 0);
        CHECK_INT(oc.unreached, (w->flags & UNREACHED) != 0);
        CHECK_INT(oc.not_ready, (w->flags & NOT_READY) != 0);
        CHECK_STR(oc.code, w->code);
        if (w->msg)
            CHECK_HAS(oc.msg, w->msg);
        if (w->rc == CURLE_OK && w->v != V_OK)
            CHECK_INT(oc.http, w->status);
        if (t_fail > bad)
            fprintf(stderr, "  in row %zu: status %ld, rc %d, body %s\n", i, w->status, (int)w->rc,
                    w->body ? w->body : "(none)");
        cJSON_Delete(body);
    }
    return t_done("calls");
}
