/* provider parsers: every documented answer variant, error codes, and hostile JSON. */
#include "sb_provider.h"
#include "t.h"

static const struct sb_provider_ops *A = &sb_provider_atlas, *R = &sb_provider_runcomfy;

/* Each helper parses the body as the engine does (once, sb_json_parse) and reads it. */
static int poll(const struct sb_provider_ops *o, const char *body, struct sb_poll_result *pr)
{
    char err[256];
    cJSON *j = sb_json_parse(body, strlen(body));
    int rc = o->parse_poll(j, pr, err, sizeof err);
    cJSON_Delete(j);
    return rc;
}

static char *submit_id(const struct sb_provider_ops *o, const char *body)
{
    char err[256], *id = NULL;
    cJSON *j = sb_json_parse(body, strlen(body));
    int rc = o->parse_submit(j, &id, err, sizeof err);
    cJSON_Delete(j);
    return rc == SB_OK ? id : NULL;
}

static int upload(const struct sb_provider_ops *o, const char *body, char **url)
{
    char err[256];
    cJSON *j = sb_json_parse(body, strlen(body));
    int rc = o->parse_upload(j, url, err, sizeof err);
    cJSON_Delete(j);
    return rc;
}

static int cancel(const struct sb_provider_ops *o, const char *body)
{
    cJSON *j = sb_json_parse(body, strlen(body));
    int rc = o->parse_cancel(j);
    cJSON_Delete(j);
    return rc;
}

static int status_of(const struct sb_provider_ops *o, const char *body, char *code)
{
    char msg[300];
    int st = -1;
    cJSON *j = sb_json_parse(body, strlen(body));
    int rc = o->error_info(j, msg, sizeof msg, code, 64, &st);
    cJSON_Delete(j);
    return rc == SB_ERR ? st : 0;
}

int main(void)
{
    struct sb_poll_result pr;
    char code[64], *s;

    /* Atlas: enveloped and flat submits, upload download_url and url. */
    s = submit_id(A, "{\"code\":200,\"data\":{\"id\":\"p1\",\"status\":\"starting\"}}");
    CHECK_STR(s, "p1"); free(s);
    s = submit_id(A, "{\"id\":\"p2\",\"status\":\"processing\"}");
    CHECK_STR(s, "p2"); free(s);
    s = NULL;
    CHECK_INT(upload(A, "{\"code\":200,\"data\":{\"url\":\"https://u/x\"}}", &s), SB_OK);
    CHECK_STR(s, "https://u/x"); free(s); s = NULL;
    const char *up = "{\"code\":200,\"data\":{\"download_url\":\"file:///etc/passwd\"}}";
    CHECK(upload(A, up, &s) != SB_OK);

    /* Atlas polls: outputs list, output list, output string, failed with code, running. */
    CHECK_INT(poll(A, "{\"code\":200,\"data\":{\"status\":\"completed\",\"outputs\":[\"https://o/1\",\"https://o/2\"],"
                      "\"metrics\":{\"predict_time\":2.5}}}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_SUCCEEDED); CHECK_INT(pr.n_outputs, 2); CHECK(pr.predict_time == 2.5);
    sb_poll_result_clear(&pr);
    CHECK_INT(poll(A, "{\"data\":{\"status\":\"succeeded\",\"outputs\":[],\"output\":\"https://o/1\"}}", &pr), SB_OK);
    CHECK_INT(pr.n_outputs, 1); CHECK_STR(pr.outputs[0], "https://o/1");
    sb_poll_result_clear(&pr);
    CHECK_INT(poll(A, "{\"data\":{\"status\":\"failed\",\"error\":\"nsfw\",\"error_code\":1039}}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_FAILED); CHECK_STR(pr.error_code, "1039"); CHECK_HAS(pr.error, "nsfw");
    sb_poll_result_clear(&pr);
    CHECK_INT(poll(A, "{\"data\":{\"status\":\"starting\"}}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_RUNNING);
    CHECK(poll(A, "{\"data\":{\"status\":\"completed\",\"outputs\":[\"ftp://o/1\"]}}", &pr) != SB_OK);
    CHECK(poll(A, "{\"data\":{\"status\":\"mystery\"}}", &pr) != SB_OK);

    /* Atlas errors: code/msg shape; a 200 carrying code 401 reads as 401. */
    CHECK_INT(status_of(A, "{\"code\":401,\"msg\":\"unauthorized\",\"data\":null}", code), 401);
    CHECK_INT(status_of(A, "{\"code\":200,\"data\":{}}", code), 0);

    /* RunComfy: status, result, cancel, and its codes. */
    s = submit_id(R, "{\"request_id\":\"r1\",\"status_url\":\"x\"}");
    CHECK_STR(s, "r1"); free(s);
    CHECK_INT(poll(R, "{\"status\":\"in_queue\",\"queue_position\":4}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_RUNNING); CHECK_INT(pr.queue_position, 4);
    CHECK_INT(poll(R, "{\"status\":\"completed\"}", &pr), SB_OK); CHECK_INT(pr.state, SB_PRED_READY);
    CHECK_INT(poll(R, "{\"status\":\"cancelled\"}", &pr), SB_OK); CHECK_INT(pr.state, SB_PRED_CANCELLED);
    CHECK_INT(poll(R, "{\"status\":\"succeeded\",\"output\":{\"image\":\"https://o/1\"}}", &pr), SB_OK);
    CHECK_INT(pr.n_outputs, 1); sb_poll_result_clear(&pr);
    CHECK_INT(poll(R, "{\"status\":\"succeeded\",\"output\":{\"images\":[\"https://o/1\",\"https://o/2\"]}}", &pr), SB_OK);
    CHECK_INT(pr.n_outputs, 2); sb_poll_result_clear(&pr);
    CHECK_INT(poll(R, "{\"status\":\"failed\",\"error\":\"boom\"}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_FAILED); CHECK_HAS(pr.error, "boom"); sb_poll_result_clear(&pr);
    CHECK_INT(cancel(R, "{\"outcome\":\"cancelled\"}"), 1);
    CHECK_INT(cancel(R, "{\"outcome\":\"not_cancellable\"}"), 0);
    CHECK_INT(status_of(R, "{\"error_code\":400002,\"error_message\":\"balance\"}", code), 402);
    CHECK_STR(code, "400002");
    CHECK_INT(status_of(R, "{\"error_code\":400004,\"error_message\":\"token\"}", code), 401);
    CHECK_INT(status_of(R, "{\"error_code\":403001}", code), 403);
    CHECK_INT(status_of(R, "{\"error_code\":404001}", code), 404);
    CHECK_INT(status_of(R, "{\"error_code\":1e400}", code), 0); /* out of range: no status, no crash */
    CHECK_INT(status_of(R, "{\"request_id\":\"r1\",\"status\":\"in_queue\"}", code), 0);

    /* Hostile JSON: each refused or read safely, never a crash. */
    size_t depth = 1001;
    char *deep = malloc(depth * 2 + 1);
    memset(deep, '[', depth);
    memset(deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    CHECK(sb_json_parse(deep, strlen(deep)) == NULL);
    CHECK(poll(A, deep, &pr) != SB_OK);
    free(deep);
    CHECK(sb_json_parse("{\"id\":\"a\"} trailing", 19) == NULL);      /* trailing garbage */
    CHECK(submit_id(A, "{\"id\":\"a\",\"status\":\"starting\"}{") == NULL);
    CHECK(sb_json_parse("[1,2]", 5) == NULL);                          /* not an object */
    CHECK(sb_json_parse("", 0) == NULL);
    s = submit_id(A, "{\"id\":\"a\\u0000b\",\"status\":\"starting\"}"); /* NUL truncates the string */
    CHECK_STR(s, "a"); free(s);
    s = submit_id(A, "{\"id\":\"first\",\"id\":\"second\"}");          /* duplicate keys: the first wins */
    CHECK_STR(s, "first"); free(s);
    CHECK_INT(poll(A, "{\"data\":{\"status\":\"completed\",\"outputs\":[\"https://o/1\"],"
                      "\"metrics\":{\"predict_time\":1e400}}}", &pr), SB_OK);
    CHECK(pr.predict_time < 0); /* an absurd number is ignored */
    sb_poll_result_clear(&pr);
    CHECK(submit_id(A, "{\"id\":12345}") == NULL);                     /* wrong type */
    return t_done("provider");
}
