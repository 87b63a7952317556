/* rows and templates: catalogue files (CSV per RFC 4180, TSV, JSONL), placeholders and filters. */
#include "sb_common.h"
#include "sb_rows.h"
#include "sb_template.h"
#include "t.h"

static char *dir;

/* What a reading saw, row by row: "line:number:value of col" lines and "bad line: why" lines. */
struct seen {
    char text[8192];
    const char *col;
};

static int on_row(struct sb_row *r, void *ud)
{
    struct seen *s = ud;
    struct sb_tvalue v;
    char why[200] = "";
    int rc = sb_row_lookup(r, s->col, strlen(s->col), &v, why, sizeof why);
    size_t n = strlen(s->text);
    snprintf(s->text + n, sizeof s->text - n, "%d:%d:%s|", r->line, r->number,
             rc == SB_TL_FOUND ? v.text : rc == SB_TL_ERROR ? why : "?");
    return 0;
}

static void on_bad(int line, const char *why, void *ud)
{
    struct seen *s = ud;
    size_t n = strlen(s->text);
    snprintf(s->text + n, sizeof s->text - n, "bad %d: %s|", line, why);
}

static int read_rows(const char *name, const char *text, const char *col, struct seen *s, char *err)
{
    char path[512];
    t_write(dir, name, text);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    memset(s, 0, sizeof *s);
    s->col = col;
    err[0] = '\0';
    return sb_rows_read(path, on_row, on_bad, s, err, SB_ERRLEN);
}

static void test_csv(void)
{
    struct seen s;
    char err[SB_ERRLEN];
    /* A BOM, CRLF, quoted commas, doubled quotes, a newline inside a field, spaces kept. */
    CHECK_INT(read_rows("a.csv",
                        "\xEF\xBB\xBFsku,title\r\n"
                        "1,\"Jacket, \"\"Alpine\"\"\"\r\n"
                        "2,\"two\r\nlines\"\r\n"
                        "3, spaced \r\n",
                        "title", &s, err), SB_OK);
    CHECK_STR(s.text, "2:1:Jacket, \"Alpine\"|3:2:two\r\nlines|5:3: spaced |");
    /* The first column after a BOM is named without it; {row} is the data row. */
    CHECK_INT(read_rows("b.csv", "\xEF\xBB\xBFsku,title\n7,x\n", "sku", &s, err), SB_OK);
    CHECK_STR(s.text, "2:1:7|");
    CHECK_INT(read_rows("b.csv", "sku\n\n7\n8", "row", &s, err), SB_OK);
    CHECK_STR(s.text, "3:1:1|4:2:2|");
    /* A row with the wrong number of fields is told with its line, and the rest is read. */
    CHECK_INT(read_rows("c.csv", "a,b\n1,2\n1,2,3\n\"x\ny\"\n4,5\n", "b", &s, err), SB_OK);
    CHECK_STR(s.text, "2:1:2|bad 3: has 3 fields where the header has 2|bad 4: has 1 field where the header has 2|"
                      "6:4:5|");
    /* An unknown column. */
    CHECK_INT(read_rows("d.csv", "a,b\n1,2\n", "c", &s, err), SB_OK);
    CHECK_STR(s.text, "2:1:?|");
    /* Broken quoting stops the file with its line; so does a quote never closed. */
    CHECK(read_rows("e.csv", "a,b\n1,2\n3,\"x\"y\n5,6\n", "a", &s, err) != SB_OK);
    CHECK_HAS(err, "e.csv:3: ");
    CHECK_STR(s.text, "2:1:1|");
    CHECK(read_rows("f.csv", "a,b\n1,\"open\n2,3\n", "a", &s, err) != SB_OK);
    CHECK_HAS(err, "f.csv:2: a quoted field is not closed");
    /* The header: no duplicate, no empty name; a file with none. */
    CHECK(read_rows("g.csv", "a,a\n1,2\n", "a", &s, err) != SB_OK);
    CHECK_HAS(err, "g.csv:1: the header row names column \"a\" twice (1 and 2)");
    CHECK(read_rows("h.csv", "a,,c\n1,2,3\n", "a", &s, err) != SB_OK);
    CHECK_HAS(err, "column 2 has no name");
    CHECK(read_rows("i.csv", "", "a", &s, err) != SB_OK);
    CHECK_HAS(err, "no header row");
    /* Not UTF-8: the row is refused, saying so. */
    CHECK_INT(read_rows("j.csv", "a\n\xff\xfe\nok\n", "a", &s, err), SB_OK);
    CHECK_STR(s.text, "bad 2: field 1 is not UTF-8 text (save the file as UTF-8)|3:2:ok|");
    /* TSV: tabs separate, commas are text. */
    CHECK_INT(read_rows("k.tsv", "a\tb\n1,5\t\"q\"\n", "a", &s, err), SB_OK);
    CHECK_STR(s.text, "2:1:1,5|");
    CHECK(sb_rows_read("/nonexistent/x.csv", on_row, on_bad, &s, err, SB_ERRLEN) != SB_OK);
    CHECK_HAS(err, "No such file");
    CHECK(sb_rows_read("x.xlsx", on_row, on_bad, &s, err, SB_ERRLEN) != SB_OK);
    CHECK_HAS(err, "a catalogue is a .csv, .tsv or .jsonl file");
}

static void test_jsonl(void)
{
    struct seen s;
    char err[SB_ERRLEN];
    CHECK_INT(read_rows("a.jsonl",
                        "{\"sku\": 1, \"p\": {\"title\": \"Ü\", \"n\": 2.5}, \"ok\": true, \"x\": null}\n"
                        "\n"
                        "[1]\n"
                        "{bad\n"
                        "{\"p\": {\"title\": \"two\"}, \"a.b\": \"dotted key\"}\n",
                        "p.title", &s, err), SB_OK);
    CHECK_STR(s.text, "1:1:Ü|bad 3: the line is JSON but not an object ({...})|bad 4: the line is not valid JSON|"
                      "5:4:two|");
    CHECK_INT(read_rows("b.jsonl", "{\"sku\": 1}\n{\"sku\": 12345678901}\n{\"sku\": 0.25}\n", "sku", &s, err), SB_OK);
    CHECK_STR(s.text, "1:1:1|2:2:12345678901|3:3:0.25|");
    CHECK_INT(read_rows("c.jsonl", "{\"ok\": false, \"x\": null, \"o\": {}}\n", "ok", &s, err), SB_OK);
    CHECK_STR(s.text, "1:1:false|");
    CHECK_INT(read_rows("c.jsonl", "{\"ok\": false, \"x\": null, \"o\": {}}\n", "x", &s, err), SB_OK);
    CHECK_STR(s.text, "1:1:|");
    CHECK_INT(read_rows("c.jsonl", "{\"ok\": false, \"x\": null, \"o\": {}}\n", "o", &s, err), SB_OK);
    CHECK_STR(s.text, "1:1:is an object, not a value|");
    CHECK_INT(read_rows("d.jsonl", "{\"a.b\": \"key\", \"a\": {\"b\": \"path\"}}\n", "a.b", &s, err), SB_OK);
    CHECK_STR(s.text, "1:1:key|");
}

/* A lookup for the template tests: a=Bild Ü.jpg, n=3 (a number), k kept, e refused. */
static int lookup(void *ud, const char *name, size_t len, struct sb_tvalue *out, char *why, size_t whylen)
{
    (void)ud;
    if (len == 1 && name[0] == 'a') {
        *out = (struct sb_tvalue){"  Bild Ü.jpg ", SB_TV_TEXT};
        return SB_TL_FOUND;
    }
    if (len == 1 && name[0] == 'n') {
        *out = (struct sb_tvalue){"3", SB_TV_NUMBER};
        return SB_TL_FOUND;
    }
    if (len == 1 && name[0] == 'z') {
        *out = (struct sb_tvalue){"", SB_TV_TEXT};
        return SB_TL_FOUND;
    }
    if (len == 1 && name[0] == 'k')
        return SB_TL_KEEP;
    if (len == 1 && name[0] == 'e') {
        snprintf(why, whylen, "is a list");
        return SB_TL_ERROR;
    }
    return SB_TL_UNKNOWN;
}

static void expands(const char *tmpl, int flags, const char *want, int line)
{
    char why[SB_ERRLEN] = "";
    char *got = sb_template_expand(tmpl, lookup, NULL, flags, NULL, why, sizeof why);
    const char *g = got ? got : why;
    if (strcmp(g, want) != 0) {
        fprintf(stderr, "line %d: \"%s\" gave \"%s\", expected \"%s\"\n", line, tmpl, g, want);
        t_fail++;
    } else {
        t_pass++;
    }
    free(got);
}
#define EXPANDS(t, f, w) expands(t, f, w, __LINE__)

static void test_templates(void)
{
    EXPANDS("{a|slug}", 0, "bild-u-jpg");
    EXPANDS("{a|trim}", 0, "Bild Ü.jpg");
    EXPANDS("{a|trim|upper}", 0, "BILD Ü.JPG");
    EXPANDS("{a|lower}", 0, "  bild ü.jpg ");
    EXPANDS("x-{n}_{k}.{a|slug}", 0, "x-3_{k}.bild-u-jpg");
    EXPANDS("{{literal}} and }}", 0, "{literal} and }");
    EXPANDS("{{literal}} {n}", SB_T_KEEP_UNKNOWN, "{{literal}} 3");
    EXPANDS("{nope} {n}", SB_T_KEEP_UNKNOWN, "{nope} 3");
    EXPANDS("open { brace", 0, "open { brace");
    EXPANDS("{nope}", 0, "{nope}: no such name");
    EXPANDS("{a|shout}", 0, "{a|shout}: unknown filter \"shout\" (known: slug, lower, upper, trim)");
    EXPANDS("{e}", 0, "{e}: is a list");
    EXPANDS("id-{z}", SB_T_NO_EMPTY, "{z} is empty");
    EXPANDS("id-{z}", 0, "id-");
    enum sb_tv_type type;
    char why[SB_ERRLEN];
    char *s = sb_template_expand("{n}", lookup, NULL, 0, &type, why, sizeof why);
    CHECK_INT(type, SB_TV_NUMBER);
    free(s);
    s = sb_template_expand("{n}x", lookup, NULL, 0, &type, why, sizeof why);
    CHECK_INT(type, SB_TV_TEXT);
    free(s);
    s = sb_template_expand("{n|trim}", lookup, NULL, 0, &type, why, sizeof why);
    CHECK_INT(type, SB_TV_TEXT);
    free(s);

    /* slug: accents folded, letters Unicode does not decompose spelled out, runs of others one dash. */
    const char *slugs[][2] = {
        {"Bild Ü", "bild-u"}, {"Straße & Söhne", "strasse-sohne"}, {"Ærø—Œuvre", "aero-oeuvre"},
        {"  --Crème brûlée!-- ", "creme-brulee"}, {"Łódź 2026", "lodz-2026"}, {"日本", ""},
        {"ﬁne", "fine"}, {"\xff\xfe" "ab", "ab"}, {"", ""},
    };
    for (size_t i = 0; i < sizeof slugs / sizeof slugs[0]; i++) {
        char *got = sb_template_filter("slug", 4, slugs[i][0]);
        CHECK_STR(got, slugs[i][1]);
        free(got);
    }
    CHECK(sb_template_filter("nope", 4, "x") == NULL);
    CHECK(sb_template_has("a {b} c"));
    CHECK(!sb_template_has("a {{b}} c"));
    CHECK(!sb_template_has("a { b"));
}

int main(void)
{
    dir = t_tmpdir();
    test_csv();
    test_jsonl();
    test_templates();
    CHECK_INT(t_rmdir(dir), 0);
    return t_done("rows");
}
