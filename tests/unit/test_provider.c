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

static const char *state_name(enum sb_pred_state s)
{
    static const char *names[] = {"running", "ready", "succeeded", "failed", "cancelled"};
    return names[s];
}

/* The value of key=... in an INDEX line's expected words ("" when absent; msg= takes the rest). */
static int expect_of(const char *words, const char *key, char *val, size_t n)
{
    char pat[32];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *p = words;
    while ((p = strstr(p, pat)) && p != words && p[-1] != ' ')
        p++;
    if (!p)
        return 0;
    p += strlen(pat);
    size_t len = strcmp(key, "msg") == 0 ? strlen(p) : strcspn(p, " ");
    snprintf(val, n, "%.*s", (int)len, p);
    return 1;
}

static char *read_answer(const char *dir, const char *name, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = calloc(1, 1 << 16);
    *len = fread(buf, 1, (1 << 16) - 1, f);
    fclose(f);
    while (*len && (buf[*len - 1] == '\n' || buf[*len - 1] == '\r'))
        buf[--*len] = '\0';
    return buf;
}

/* Checks one INDEX line: the answer read by its provider's parser as the line says. */
static void check_answer(const char *dir, const char *file, const char *call, const char *want)
{
    const struct sb_provider_ops *o = strncmp(file, "runcomfy/", 9) == 0 ? R : A;
    size_t len;
    char *body = read_answer(dir, file, &len), v[512], err[256];
    if (!body) {
        fprintf(stderr, "%s: cannot read\n", file);
        t_fail++;
        return;
    }
    cJSON *j = sb_json_parse(body, len);
    if (!j) {
        fprintf(stderr, "%s: not a JSON object\n", file);
        t_fail++;
    }
    int before = t_fail;
    if (strcmp(call, "submit") == 0 || strcmp(call, "upload") == 0) {
        char *got = NULL;
        int rc = call[0] == 's' ? o->parse_submit(j, &got, err, sizeof err) : o->parse_upload(j, &got, err, sizeof err);
        CHECK_INT(rc, SB_OK);
        if (expect_of(want, call[0] == 's' ? "id" : "url", v, sizeof v))
            CHECK_STR(got, v);
        free(got);
    } else if (strcmp(call, "cancel") == 0) {
        expect_of(want, "cancel", v, sizeof v);
        CHECK_INT(o->parse_cancel(j), atoi(v));
    } else {
        struct sb_poll_result pr;
        int prc = o->parse_poll(j, &pr, err, sizeof err);
        const char *msg = pr.error;
        char emsg[512] = "", ecode[64] = "";
        if (strcmp(call, "error") == 0) {
            int status = -1;
            o->error_info(j, emsg, sizeof emsg, ecode, sizeof ecode, &status);
            if (expect_of(want, "status", v, sizeof v))
                CHECK_INT(status, atoi(v));
            int final = prc == SB_OK && (pr.state == SB_PRED_FAILED || pr.state == SB_PRED_CANCELLED);
            expect_of(want, "final", v, sizeof v);
            CHECK_STR(final ? state_name(pr.state) : "none", v);
            if (!final)
                msg = emsg;
        } else {
            CHECK_INT(prc, SB_OK);
            if (expect_of(want, "state", v, sizeof v))
                CHECK_STR(prc == SB_OK ? state_name(pr.state) : "unreadable", v);
        }
        if (expect_of(want, "outputs", v, sizeof v))
            CHECK_INT(pr.n_outputs, atoi(v));
        if (expect_of(want, "withheld", v, sizeof v))
            CHECK_INT(pr.withheld, atoi(v));
        if (expect_of(want, "skipped", v, sizeof v))
            CHECK_INT(pr.skipped, atoi(v));
        if (expect_of(want, "unknown", v, sizeof v))
            CHECK_INT(pr.unknown_status, atoi(v));
        if (expect_of(want, "qpos", v, sizeof v))
            CHECK_INT(pr.queue_position, atoi(v));
        if (expect_of(want, "ptime", v, sizeof v))
            CHECK(pr.predict_time == atof(v));
        if (expect_of(want, "kind", v, sizeof v))
            CHECK_STR(pr.kind, v);
        if (expect_of(want, "code", v, sizeof v))
            CHECK_STR(pr.error_code, v);
        if (expect_of(want, "msg", v, sizeof v))
            CHECK_HAS(msg, v);
        /* Every output listed is an http(s) URL. */
        for (int k = 0; prc == SB_OK && k < pr.n_outputs; k++)
            CHECK(strncmp(pr.outputs[k], "https://", 8) == 0 || strncmp(pr.outputs[k], "http://", 7) == 0);
        if (prc == SB_OK)
            sb_poll_result_clear(&pr);
    }
    if (t_fail != before)
        fprintf(stderr, "  ^ in %s (%s: %s)\n", file, call, want);
    cJSON_Delete(j);
    free(body);
}

/* Runs every line of the answer corpus's INDEX; returns how many were checked. */
static int check_corpus(const char *dir)
{
    char path[1024], line[1024];
    snprintf(path, sizeof path, "%s/INDEX", dir);
    FILE *f = fopen(path, "r");
    int n = 0;
    if (!f) {
        perror(path);
        return 0;
    }
    while (fgets(line, sizeof line, f)) {
        char *fields[4] = {0};
        if (line[0] == '#' || line[0] == '\n')
            continue;
        char *p = line;
        for (int i = 0; i < 4 && p; i++) {
            char *bar = strchr(p, '|');
            if (bar)
                *bar = '\0';
            while (*p == ' ')
                p++;
            size_t l = strlen(p);
            while (l && (p[l - 1] == ' ' || p[l - 1] == '\n'))
                p[--l] = '\0';
            fields[i] = p;
            p = bar ? bar + 1 : NULL;
        }
        if (!fields[3] || !*fields[3]) {
            fprintf(stderr, "INDEX: a line without its source: %s\n", fields[0]);
            t_fail++;
            continue;
        }
        check_answer(dir, fields[0], fields[1], fields[2]);
        n++;
    }
    fclose(f);
    return n;
}

/* Every provider of the table fills what the engine and the checks call, its name parsed back. */
static void check_table(void)
{
    for (int p = 0; p < SB_NPROVIDERS; p++) {
        const struct sb_provider_ops *o = sb_providers[p];
        enum sb_provider back;
        CHECK_INT(sb_provider_parse(o->name, &back), SB_OK);
        CHECK_INT(back, p);
        CHECK(o->title && o->key_envs && o->key_envs[0] && o->base_env && o->default_base);
        CHECK(o->submit_url && o->submit_body && o->parse_submit && o->poll_url && o->parse_poll &&
              o->error_info);
        CHECK(!o->has_upload || (o->upload_url && o->parse_upload && o->upload_form));
        CHECK(!o->cancel_url == !o->parse_cancel);
        CHECK(o->describe_model && o->check_params && o->default_price > 0 && o->models && o->models[0]);
        for (int k = 0; o->models && o->models[k]; k++) {
            struct sb_model_info mi;
            sb_model_lookup((enum sb_provider)p, o->models[k], &mi);
            CHECK(mi.known);
        }
    }
    /* Atlas's upload form: the field "file", the file's base name, its type by content. */
    struct sb_localfile f = {.path = "photos/a b.png", .info = {.format = SB_IMG_PNG}};
    struct sb_upload_form form;
    sb_provider_atlas.upload_form(&f, &form);
    CHECK_STR(form.field, "file");
    CHECK_STR(form.filename, "a b.png");
    CHECK_STR(form.type, "image/png");
    f.path = "x.webp";
    f.info.format = SB_IMG_WEBP;
    sb_provider_atlas.upload_form(&f, &form);
    CHECK_STR(form.filename, "x.webp");
    CHECK_STR(form.type, "image/webp");
}

int main(void)
{
    struct sb_poll_result pr;
    char code[64], *s;

    check_table();

    const char *answers = getenv("ANSWERS");
    int n_answers = check_corpus(answers ? answers : "tests/answers");
    CHECK(n_answers >= 48);

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
    /* An output that is no http(s) URL is passed over: none left reads as finished without outputs. */
    CHECK_INT(poll(A, "{\"data\":{\"status\":\"completed\",\"outputs\":[\"ftp://o/1\"]}}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_READY); CHECK_INT(pr.n_outputs, 0); CHECK_INT(pr.skipped, 1);
    sb_poll_result_clear(&pr);
    /* A word not in the table: still running, said as unknown. */
    CHECK_INT(poll(A, "{\"data\":{\"status\":\"mystery\"}}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_RUNNING); CHECK_INT(pr.unknown_status, 1); CHECK_STR(pr.status, "mystery");
    CHECK(poll(A, "{\"data\":{\"outputs\":[]}}", &pr) != SB_OK); /* no status at all */

    /* Atlas errors: code/msg shape; a 200 carrying code 401 reads as 401. */
    CHECK_INT(status_of(A, "{\"code\":401,\"msg\":\"unauthorized\",\"data\":null}", code), 401);
    CHECK_INT(status_of(A, "{\"code\":200,\"data\":{}}", code), 0);

    /* RunComfy: status, result, cancel, and its codes. */
    s = submit_id(R, "{\"request_id\":\"r1\",\"status_url\":\"x\"}");
    CHECK_STR(s, "r1"); free(s);
    CHECK_INT(poll(R, "{\"status\":\"in_queue\",\"queue_position\":4}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_RUNNING); CHECK_INT(pr.queue_position, 4);
    CHECK_INT(poll(R, "{\"status\":\"completed\"}", &pr), SB_OK); CHECK_INT(pr.state, SB_PRED_READY);
    CHECK_INT(poll(R, "{\"status\":\"completed\",\"output\":{\"images\":[\"https://o/1\"]}}", &pr), SB_OK);
    CHECK_INT(pr.state, SB_PRED_SUCCEEDED); CHECK_INT(pr.n_outputs, 1); sb_poll_result_clear(&pr);
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
    CHECK_INT(status_of(R, "{\"error_code\":400005,\"error_message\":\"not ready\"}", code), SB_HTTP_NOT_READY);

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
