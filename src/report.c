/*
 * report.c writes report.html (sb_report.h). Cards are streamed to a temporary
 * file in two readings of the jobs (the first counts them for the header), so
 * a 100,000-job page costs no more memory than one card; the file is fsynced and
 * renamed into place. Images are the files themselves, linked by their path
 * relative to the page; their width and height come from their headers (a few
 * KiB read, nothing decoded), so the page lays out before any image arrives.
 * Every text from the manifest, the provider or the state is HTML-escaped.
 */
#include "sb_report.h"
#include "sb_imageinfo.h"
#include "sb_log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FLUSH_AT (64u << 10)
/* Cards whose images load with the page: more than a tall window shows. */
#define REPORT_EAGER_CARDS 12

struct page {
    struct sb_manifest *m;
    struct sb_store *st;
    int counting;                  /* the first reading: counts only */
    int cards_put;                 /* cards written so far */
    int counts[SB_JOB_NSTATES];
    int jobs;
    long images;
    double spend;
    char page_dir[PATH_MAX];       /* the real directory the page is in */
    char out_real[PATH_MAX];       /* output_dir, real */
    char *out_rel;                 /* output_dir relative to the page ("" when the page is in it) */
    struct sb_map *refs;           /* a local reference's path -> its path relative to the page */
    struct sb_buf b;
    int fd;
    int failed;                    /* errno of a failed write */
};

/* One job as a card shows it. */
struct card {
    const char *id, *prompt, *invalid;
    const char *spec[SB_MAX_REF_IMAGES], *file[SB_MAX_REF_IMAGES], *url[SB_MAX_REF_IMAGES];
    int n_images;
    const struct sb_jobrow *row;
};

static void put(struct page *p, const char *s)
{
    sb_buf_puts(&p->b, s);
}

/* Text for HTML, in an element or a quoted attribute. */
static void put_text(struct page *p, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': put(p, "&amp;"); break;
        case '<': put(p, "&lt;"); break;
        case '>': put(p, "&gt;"); break;
        case '"': put(p, "&quot;"); break;
        case '\'': put(p, "&#39;"); break;
        default: sb_buf_append(&p->b, s, 1); break;
        }
    }
}

/* A relative path as a URL path: every byte but unreserved ones and "/" percent-encoded. */
static void put_path_url(struct page *p, const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *s = (const unsigned char *)path; *s; s++) {
        if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
            strchr("-._~/", *s)) {
            sb_buf_append(&p->b, s, 1);
        } else {
            char e[3] = {'%', hex[*s >> 4], hex[*s & 15]};
            sb_buf_append(&p->b, e, 3);
        }
    }
}

static void flush(struct page *p)
{
    const char *s = p->b.data;
    size_t n = p->b.len;
    while (n && !p->failed) {
        ssize_t w = write(p->fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            p->failed = errno;
            break;
        }
        s += w;
        n -= (size_t)w;
    }
    sb_buf_reset(&p->b);
}

/* target's path relative to the real directory dir (both absolute, target made real when it exists). */
static char *relative_to(const char *dir, const char *target)
{
    char real[PATH_MAX];
    const char *t = realpath(target, real) ? real : target;
    if (t[0] != '/')
        return sb_strdup(t);
    size_t common = 0, i = 0;
    /* The longest common prefix that ends at a path separator of both. */
    while (dir[i] && dir[i] == t[i]) {
        i++;
        if ((dir[i] == '/' || dir[i] == '\0') && (t[i] == '/' || t[i] == '\0'))
            common = i;
    }
    if (strcmp(dir, "/") == 0)
        common = 0;
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    for (const char *d = dir + common; *d; d++)
        if (*d == '/')
            sb_buf_puts(&b, "../");
    const char *rest = t + common;
    if (*rest == '/')
        rest++;
    sb_buf_puts(&b, rest);
    if (!b.data)
        sb_buf_puts(&b, ".");
    return b.data;
}

/* Width and height from the file's first bytes (4 KiB, then 64 KiB for a JPEG with a large header). */
static int probe_file(const char *path, struct sb_imageinfo *info)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    unsigned char *buf = sb_malloc(64u << 10);
    int rc = -1;
    size_t want[] = {4096, 64u << 10};
    for (int i = 0; i < 2 && rc != 0; i++) {
        ssize_t n = pread(fd, buf, want[i], 0);
        if (n <= 0)
            break;
        if (sb_image_probe(buf, (size_t)n, info) == SB_OK && info->width > 0)
            rc = 0;
        if ((size_t)n < want[i])
            break;
    }
    free(buf);
    close(fd);
    return rc;
}

static void put_url(struct page *p, const char *href, int is_url)
{
    if (is_url)
        put_text(p, href);
    else
        put_path_url(p, href);
}

/* An img element's attributes after its source. */
static void put_img_rest(struct page *p, const struct sb_imageinfo *info, const char *alt)
{
    put(p, "\" loading=\"lazy\" decoding=\"async\"");
    if (info && info->width > 0 && info->height > 0)
        sb_buf_printf(&p->b, " width=\"%d\" height=\"%d\"", info->width, info->height);
    put(p, " alt=\"");
    put_text(p, alt);
    put(p, "\">");
}

/*
 * One thumbnail: the image linked to itself, its size written in when known. Chromium
 * loads every image of a page opened from the disk at once, loading="lazy" or not
 * (1,000 cards: 3 s before the first paint, docs/benchmarks.md): past the first
 * cards, the image's source waits in data-src for the page's script to set it as
 * its card comes near the window, and a browser without JavaScript shows the copy in
 * <noscript>.
 */
static void put_thumb(struct page *p, const char *href, int is_url, const struct sb_imageinfo *info,
                      const char *alt, const char *title)
{
    put(p, "<a title=\"");
    put_text(p, title);
    put(p, "\" href=\"");
    put_url(p, href, is_url);
    if (p->cards_put < REPORT_EAGER_CARDS) {
        put(p, "\"><img src=\"");
        put_url(p, href, is_url);
        put_img_rest(p, info, alt);
    } else {
        put(p, "\"><img data-src=\"");
        put_url(p, href, is_url);
        put_img_rest(p, info, alt);
        put(p, "<noscript><img src=\"");
        put_url(p, href, is_url);
        put_img_rest(p, info, alt);
        put(p, "</noscript>");
    }
    put(p, "</a>");
}

static void put_card(struct page *p, const struct card *c)
{
    const struct sb_jobrow *r = c->row;
    enum sb_job_state st = r ? r->state : SB_JOB_PENDING;
    const char *status = sb_job_status_name(st);
    char alt[200];
    put(p, "<article class=\"card\" data-job=\"");
    put_text(p, c->id);
    put(p, "\" data-status=\"");
    put_text(p, status);
    put(p, "\">\n<h2>");
    put_text(p, c->id);
    put(p, "</h2> <span class=\"badge ");
    put_text(p, status);
    put(p, "\">");
    put_text(p, status);
    put(p, "</span>\n<p class=\"prompt\">");
    put_text(p, c->prompt);
    put(p, "</p>\n<div class=\"pair\"><div class=\"refs\">");
    for (int k = 0; k < c->n_images; k++) {
        snprintf(alt, sizeof alt, "reference %d", k + 1);
        if (c->file[k]) {
            const struct sb_localfile *f = sb_map_get(p->m->files, c->file[k]);
            struct sb_imageinfo info = {0};
            if (f)
                info = f->info;
            else
                probe_file(c->file[k], &info);
            /* Jobs share their references: each one's path is found once. */
            char *rel = sb_map_get(p->refs, c->file[k]);
            if (!rel) {
                rel = relative_to(p->page_dir, c->file[k]);
                sb_map_put(p->refs, c->file[k], rel);
            }
            put_thumb(p, rel, 0, &info, alt, c->spec[k]);
        } else if (c->url[k]) {
            put_thumb(p, c->url[k], 1, NULL, alt, c->url[k]);
        } else {
            put(p, "<span class=\"none\">");
            put_text(p, c->spec[k]);
            put(p, "</span>");
        }
    }
    put(p, "</div><div class=\"arrow\">&rarr;</div><div class=\"outs\">");
    cJSON *outs = r && r->outputs ? cJSON_Parse(r->outputs) : NULL;
    const cJSON *o;
    int n_out = 0;
    cJSON_ArrayForEach(o, outs) {
        if (!cJSON_IsString(o) || !o->valuestring[0] || o->valuestring[0] == '/' || strstr(o->valuestring, ".."))
            continue;
        char *full = sb_path_join(p->out_real, o->valuestring);
        struct sb_imageinfo info = {0};
        probe_file(full, &info);
        char *rel = sb_concat(p->out_rel, o->valuestring, NULL);
        snprintf(alt, sizeof alt, "output %d", ++n_out);
        put_thumb(p, rel, 0, &info, alt, o->valuestring);
        free(rel);
        free(full);
    }
    cJSON_Delete(outs);
    if (!n_out)
        put(p, "<span class=\"none\">no output</span>");
    put(p, "</div></div>\n");
    const char *kind = NULL, *msg = NULL;
    if (r && st == SB_JOB_FAILED && r->error_kind) {
        kind = r->error_kind;
        msg = r->error_message;
    } else if (c->invalid && (!r || st == SB_JOB_FAILED)) {
        kind = SB_EK_INVALID_INPUT;
        msg = c->invalid;
    }
    if (kind) {
        put(p, "<p class=\"error\"><b>");
        put_text(p, kind);
        put(p, "</b>");
        if (r && r->error_http)
            sb_buf_printf(&p->b, " (HTTP %d)", r->error_http);
        put(p, ": ");
        put_text(p, msg ? msg : "");
        put(p, "</p>\n");
    }
    sb_buf_printf(&p->b, "<p class=\"meta\">%d attempt%s &middot; $%.3f", r ? r->attempts : 0,
                  SB_S(r ? r->attempts : 0), r ? r->cost : 0.0);
    if (r && r->total_cost > r->cost + 1e-9)
        sb_buf_printf(&p->b, " ($%.3f with earlier versions)", r->total_cost);
    if (r && r->predict_time >= 0)
        sb_buf_printf(&p->b, " &middot; %.1f s", r->predict_time);
    if (r && r->possible_duplicate)
        put(p, " &middot; <b class=\"dup\">possible duplicate</b>");
    put(p, "</p>\n</article>\n");
    p->cards_put++;
}

static void add_card(struct page *p, const struct card *c)
{
    if (p->counting) {
        const struct sb_jobrow *r = c->row;
        p->counts[r ? r->state : SB_JOB_PENDING]++;
        p->jobs++;
        if (r) {
            p->spend += r->total_cost;
            cJSON *outs = r->state == SB_JOB_SUCCEEDED && r->outputs ? cJSON_Parse(r->outputs) : NULL;
            p->images += cJSON_GetArraySize(outs);
            cJSON_Delete(outs);
        }
        return;
    }
    put_card(p, c);
    if (p->b.len > FLUSH_AT)
        flush(p);
}

/* A row of the state, with what the manifest said of the job kept in it. */
static int row_card(const struct sb_jobrow *r, void *ud)
{
    struct page *p = ud;
    struct card c = {.id = r->id, .row = r};
    cJSON *spec = r->spec ? cJSON_Parse(r->spec) : NULL;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, "prompt");
    c.prompt = cJSON_IsString(v) ? v->valuestring : NULL;
    v = cJSON_GetObjectItemCaseSensitive(spec, "invalid");
    c.invalid = cJSON_IsString(v) ? v->valuestring : NULL;
    const cJSON *im;
    cJSON_ArrayForEach(im, cJSON_GetObjectItemCaseSensitive(spec, "images")) {
        if (c.n_images == SB_MAX_REF_IMAGES)
            break;
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(im, "spec"), *f = cJSON_GetObjectItemCaseSensitive(im, "file"),
                    *u = cJSON_GetObjectItemCaseSensitive(im, "url");
        c.spec[c.n_images] = cJSON_IsString(s) ? s->valuestring : "";
        c.file[c.n_images] = cJSON_IsString(f) ? f->valuestring : NULL;
        c.url[c.n_images] = cJSON_IsString(u) && !c.file[c.n_images] ? u->valuestring : NULL;
        c.n_images++;
    }
    add_card(p, &c);
    cJSON_Delete(spec);
    return p->failed;
}

/* A job of the manifest, with its row when the state has one for this version of it. */
static int job_card(const struct sb_manifest *m, const struct sb_jobspec *js, int index, void *ud)
{
    struct page *p = ud;
    struct sb_jobrow row;
    (void)m, (void)index;
    int have = sb_store_get_version(p->st, js->id, js->fingerprint, &row);
    struct card c = {.id = js->id, .prompt = js->prompt, .invalid = js->invalid, .row = have ? &row : NULL};
    for (int k = 0; k < js->n_images && k < SB_MAX_REF_IMAGES; k++) {
        c.spec[k] = js->images[k].spec;
        c.file[k] = js->images[k].file ? js->images[k].file->path : NULL;
        c.url[k] = js->images[k].file ? NULL : js->images[k].url;
        c.n_images++;
    }
    add_card(p, &c);
    if (have)
        sb_jobrow_clear(&row);
    return p->failed;
}

static const char style[] =
    "<style>\n"
    ":root{color-scheme:light dark;--bg:#f6f6f4;--card:#fff;--line:#ddd;--muted:#666}\n"
    "@media (prefers-color-scheme:dark){:root{--bg:#161616;--card:#222;--line:#3a3a3a;--muted:#aaa}}\n"
    "[hidden]{display:none!important}\n"
    "html:not(.js) img[data-src]{display:none}\n"
    "body{margin:0;font:14px/1.4 system-ui,sans-serif;background:var(--bg)}\n"
    "header{padding:16px 24px;border-bottom:1px solid var(--line);background:var(--card)}\n"
    "h1{font-size:18px;margin:0 0 6px}h2{font-size:15px;margin:0;display:inline;word-break:break-all}\n"
    ".sum span{margin-right:12px}#controls{margin-top:8px}#controls label{margin-right:10px}\n"
    "#q{min-width:240px}main{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));"
    "gap:16px;padding:16px 24px}\n"
    ".card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px}\n"
    ".badge{font-size:12px;padding:1px 8px;border-radius:10px;background:#888;color:#fff;margin-left:6px}\n"
    ".badge.succeeded{background:#2e7d32}.badge.failed{background:#c62828}.badge.cancelled{background:#6d6d6d}\n"
    ".badge.pending,.badge.running,.badge.submitting,.badge.uploading,.badge.downloading{background:#1565c0}\n"
    ".prompt{margin:8px 0;white-space:pre-wrap}\n"
    ".pair{display:flex;gap:8px;align-items:center;overflow-x:auto}\n"
    ".refs,.outs{display:flex;gap:6px;flex:0 0 auto}.arrow{color:var(--muted);font-size:20px}\n"
    ".pair img{height:96px;width:auto;max-width:200px;object-fit:contain;background:var(--bg);"
    "border:1px solid var(--line);border-radius:4px}\n"
    ".outs img{height:160px;max-width:320px}\n"
    ".none{color:var(--muted);font-style:italic}.error{color:#c62828;margin:8px 0 0}\n"
    ".meta{color:var(--muted);margin:6px 0 0}.dup{color:#e65100}\n"
    "</style>\n";

/* Status filters and a search over each card's text; without JavaScript every card shows. */
static const char script[] =
    "<script>\n"
    "(function(){var lazy=[].slice.call(document.querySelectorAll('img[data-src]'));\n"
    "function show(i){i.src=i.getAttribute('data-src');i.removeAttribute('data-src')}\n"
    "if(!('IntersectionObserver' in window)){lazy.forEach(show)}else{\n"
    "var io=new IntersectionObserver(function(es){es.forEach(function(e){if(e.isIntersecting){"
    "show(e.target);io.unobserve(e.target)}})},{rootMargin:'1000px 0px'});\n"
    "lazy.forEach(function(i){io.observe(i)})}})();\n"
    "(function(){var c=document.getElementById('controls');c.hidden=false;\n"
    "var cards=[].slice.call(document.querySelectorAll('[data-job]'));\n"
    "function apply(){var on={};[].forEach.call(c.querySelectorAll('input[type=checkbox]'),"
    "function(b){on[b.value]=b.checked});\n"
    "var q=document.getElementById('q').value.toLowerCase(),n=0;\n"
    "cards.forEach(function(k){var ok=on[k.dataset.status]!==false&&(!q||k.textContent.toLowerCase().indexOf(q)>=0);"
    "k.hidden=!ok;if(ok)n++});\n"
    "document.getElementById('shown').textContent=n+' of '+cards.length+' shown';}\n"
    "c.addEventListener('input',apply);apply();})();\n"
    "</script>\n";

static void put_head(struct page *p)
{
    char when[32];
    sb_iso8601(sb_now_ms(), when);
    put(p, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
           "<script>document.documentElement.className='js'</script>\n"
           "<meta name=\"generator\" content=\"seedbatch " SB_VERSION "\">\n<title>");
    put_text(p, p->m->path);
    put(p, " &middot; seedbatch report</title>\n");
    put(p, style);
    put(p, "</head>\n<body>\n<header>\n<h1>");
    put_text(p, p->m->path);
    put(p, "</h1>\n<p class=\"sum\">");
    /* Jobs per status as results.jsonl names them (uploading, submitting and downloading are "running"). */
    static const char *statuses[] = {"succeeded", "failed", "cancelled", "running", "pending"};
    int per[5] = {0};
    for (int st = 0; st < SB_JOB_NSTATES; st++)
        for (int i = 0; i < 5; i++)
            if (strcmp(sb_job_status_name(st), statuses[i]) == 0)
                per[i] += p->counts[st];
    sb_buf_printf(&p->b, "<span>%d job%s</span>", p->jobs, SB_S(p->jobs));
    for (int i = 0; i < 5; i++)
        if (per[i])
            sb_buf_printf(&p->b, "<span class=\"n-%s\">%d %s</span>", statuses[i], per[i], statuses[i]);
    sb_buf_printf(&p->b, "<span>%ld image%s written</span><span>spend $%.2f</span><span>model ", p->images,
                  SB_S(p->images), p->spend);
    put_text(p, p->m->model);
    put(p, "</span><span>written ");
    put(p, when);
    put(p, "</span></p>\n<div id=\"controls\" hidden>");
    for (int i = 0; i < 5; i++)
        if (per[i])
            sb_buf_printf(&p->b, "<label><input type=\"checkbox\" value=\"%s\" checked> %s (%d)</label>",
                          statuses[i], statuses[i], per[i]);
    put(p, "<input type=\"search\" id=\"q\" placeholder=\"search id, prompt, error\"> <span id=\"shown\"></span>"
           "</div>\n</header>\n<main>\n");
}

int sb_report_write(struct sb_manifest *m, struct sb_store *st, int synced, const char *out, char *err,
                    size_t errlen)
{
    struct page p = {.m = m, .st = st, .fd = -1};
    char *path = out ? sb_strdup(out) : sb_asprintf("%s/report.html", m->output_dir);
    char *dir = sb_dirname(path), *tmp = NULL;
    int rc = SB_EIO;
    char rerr[SB_ERRLEN] = "";
    sb_buf_init(&p.b, SIZE_MAX / 2);
    if (sb_mkdirs(dir, err, errlen) != SB_OK)
        goto out;
    if (!realpath(dir, p.page_dir)) {
        sb_seterr(err, errlen, "%s: %s", dir, strerror(errno));
        goto out;
    }
    if (!realpath(m->output_dir, p.out_real)) /* no run yet: outputs are named all the same */
        snprintf(p.out_real, sizeof p.out_real, "%s", m->output_dir);
    if (strcmp(p.out_real, p.page_dir) == 0) {
        p.out_rel = sb_strdup("");
    } else {
        char *r = relative_to(p.page_dir, p.out_real);
        p.out_rel = sb_concat(r, "/", NULL);
        free(r);
    }
    p.refs = sb_map_new();
    const char *base = strrchr(path, '/');
    tmp = sb_asprintf("%s/.%s.tmp", dir, base ? base + 1 : path);
    for (int pass = 0; pass < 2; pass++) {
        p.counting = pass == 0;
        int read_rc = synced ? sb_store_each_manifest_job(st, row_card, &p)
                             : sb_manifest_each_job(m, job_card, &p, rerr, sizeof rerr);
        if (read_rc != SB_OK || p.failed) {
            if (p.failed)
                sb_seterr(err, errlen, "cannot write %s: %s", tmp, strerror(p.failed));
            else
                sb_seterr(err, errlen, "%s", rerr[0] ? rerr : "cannot read the state database");
            goto out;
        }
        if (pass == 0) {
            unlink(tmp);
            p.fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
            if (p.fd < 0) {
                sb_seterr(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
                goto out;
            }
            put_head(&p);
        }
    }
    put(&p, "</main>\n");
    put(&p, script);
    put(&p, "</body>\n</html>\n");
    flush(&p);
    if (p.failed || fsync(p.fd) != 0) {
        sb_seterr(err, errlen, "cannot write %s: %s", tmp, strerror(p.failed ? p.failed : errno));
        goto out;
    }
    if (close(p.fd) != 0) {
        p.fd = -1;
        sb_seterr(err, errlen, "cannot write %s: %s", tmp, strerror(errno));
        goto out;
    }
    p.fd = -1;
    if (rename(tmp, path) != 0) {
        sb_seterr(err, errlen, "cannot rename %s into place: %s", tmp, strerror(errno));
        goto out;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd); /* the rename, durable (a filesystem that cannot is told about by the run) */
        close(dfd);
    }
    rc = SB_OK;
out:
    if (p.fd >= 0)
        close(p.fd);
    if (rc != SB_OK && tmp)
        unlink(tmp);
    sb_buf_free(&p.b);
    sb_map_free(p.refs, free);
    free(p.out_rel);
    free(tmp);
    free(dir);
    free(path);
    return rc;
}
