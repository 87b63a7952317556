/*
 * main.c is the command line: it parses the subcommand and options, loads
 * every manifest given, and dispatches to validate, status, run --dry-run
 * and the others, mapping outcomes to the exit codes of SPEC section 2.
 */
#include "sb_common.h"
#include "sb_engine.h"
#include "sb_log.h"
#include "sb_loop.h"
#include "sb_manifest.h"
#include "sb_plan.h"
#include "sb_provider.h"
#include "sb_report.h"
#include "sb_results.h"
#include "sb_signals.h"
#include "sb_store.h"
#include "sb_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sqlite3.h>
#ifdef SB_MIMALLOC
#include <mimalloc.h>
#endif

/* The commands, as bits of the options' table. */
enum { C_RUN = 1, C_VALIDATE = 2, C_STATUS = 4, C_CANCEL = 8, C_RESULTS = 16, C_REPORT = 32, C_ALL = 63 };

static const struct command {
    const char *name;
    unsigned bit;
    const char *what;   /* one line, in the list of commands */
    const char *about;  /* its help's opening paragraph */
} commands[] = {
    {"run", C_RUN, "run to completion; resumes what an earlier run left",
     "Checks the manifests, then uploads, submits, polls and downloads every job on one\n"
     "loop, within the provider's rate limit, writing <output_dir>/results.jsonl. Killed or\n"
     "stopped, it resumes by running the same command again, paying for nothing twice."},
    {"validate", C_VALIDATE, "every check, nothing sent; exit 0 or 2",
     "Checks the manifests: structure, limits, each job's params, reference images and\n"
     "URLs, the key file. Reports every problem of every manifest in one pass."},
    {"status", C_STATUS, "jobs per state, spend, failures with reasons",
     "Reads the state of each manifest (nothing is sent or written): jobs per state, spend\n"
     "against max_cost, failures by kind. Exit 0 when every job succeeded, 1 when any\n"
     "failed or is unfinished."},
    {"cancel", C_CANCEL, "cancel remote requests that can still be cancelled",
     "Cancels the jobs of the manifests: queued predictions are cancelled at the provider\n"
     "where it can; jobs not yet submitted never will be."},
    {"results", C_RESULTS, "rewrite results.jsonl from the state database",
     "Writes <output_dir>/results.jsonl again from the state, e.g. after it was deleted."},
    {"report", C_REPORT, "write the review page, report.html, from the state",
     "Writes <output_dir>/report.html (every run writes it at its end) from the state, also\n"
     "during a run: one self-contained page with a card per job, its prompt, reference\n"
     "images and outputs side by side, its error and cost; filters and a search."},
};
#define N_COMMANDS (int)(sizeof commands / sizeof *commands)

enum { O_STATE = 256, O_CONC, O_RPS, O_DRY, O_RETRY, O_PROGRESS, O_LOGFMT, O_QUIET, O_DEBUG, O_MAXCOST,
       O_CHARGES, O_JSON, O_FAILED, O_HELP, O_VERSION, O_OUT };

/* Every option: the commands it applies to, and its line of help. */
static const struct opt {
    const char *name;
    int has_arg;
    int id;
    char short_name;    /* 0 when none */
    unsigned commands;
    const char *arg;    /* shown after the name, "" when none */
    const char *help;
} opts[] = {
    {"state", required_argument, O_STATE, 0, C_ALL, " PATH",
     "state database (default <output_dir>/.seedbatch/state.db)"},
    {"concurrency", required_argument, O_CONC, 'j', C_RUN, " N", "jobs in work at once (limits.concurrency)"},
    {"rps", required_argument, O_RPS, 0, C_RUN, " R", "API requests per second (limits.requests_per_second; 0 = unlimited)"},
    {"dry-run", no_argument, O_DRY, 'n', C_RUN, "", "check, print the plan and the cost quote, send nothing"},
    {"retry-failed", optional_argument, O_RETRY, 0, C_RUN, "[=KIND]",
     "queue failed jobs again (all, or those of one error kind)"},
    {"max-cost", required_argument, O_MAXCOST, 0, C_RUN, " USD", "this run's cap on the total spend (instead of max_cost)"},
    {"progress", required_argument, O_PROGRESS, 0, C_RUN, " WHEN", "live progress line: auto, always or never"},
    {"charges", no_argument, O_CHARGES, 0, C_STATUS, "", "write the charge ledger as CSV on stdout"},
    {"json", no_argument, O_JSON, 0, C_STATUS, "", "one JSON document per manifest on stdout"},
    {"failed", no_argument, O_FAILED, 0, C_STATUS, "", "list the failed jobs only"},
    {"out", required_argument, O_OUT, 'o', C_REPORT, " FILE", "write the page to FILE instead of <output_dir>/report.html"},
    {"log-format", required_argument, O_LOGFMT, 0, C_ALL, " FMT", "log lines on stderr: text or json"},
    {"quiet", no_argument, O_QUIET, 'q', C_ALL, "", "warnings and errors only; no progress line"},
    {"debug", no_argument, O_DEBUG, 'v', C_ALL, "", "log every request and answer header (the key redacted)"},
    {"help", no_argument, O_HELP, 'h', C_ALL, "", "this help"},
    {"version", no_argument, O_VERSION, 'V', C_ALL, "", "print the version"},
};
#define N_OPTS (int)(sizeof opts / sizeof *opts)

static const char exit_codes_text[] =
    "exit codes: 0 all jobs succeeded, 1 some jobs failed (status: or are unfinished),\n"
    "2 usage error or invalid manifest, 3 authentication/permission/balance, 4 stopped by\n"
    "max_cost, 75 interrupted or locked (run the same command again).\n";

static void print_option(FILE *f, const struct opt *op)
{
    char left[48];
    if (op->short_name)
        snprintf(left, sizeof left, "-%c, --%s%s", op->short_name, op->name, op->arg);
    else
        snprintf(left, sizeof left, "    --%s%s", op->name, op->arg);
    fprintf(f, "  %-24s %s\n", left, op->help);
}

/* The help of every command (cmd NULL) or of one. */
static void print_usage(FILE *f, const struct command *cmd)
{
    if (!cmd) {
        fputs("usage: seedbatch COMMAND [OPTIONS] MANIFEST...\n\ncommands:\n", f);
        for (int i = 0; i < N_COMMANDS; i++)
            fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
        fputs("\noptions of every command:\n", f);
        for (int i = 0; i < N_OPTS; i++)
            if (opts[i].commands == C_ALL)
                print_option(f, &opts[i]);
        fputs("\n'seedbatch COMMAND --help' shows a command's own options; 'man seedbatch' all of it.\n", f);
    } else {
        fprintf(f, "usage: seedbatch %s [OPTIONS] MANIFEST...\n\n%s\n\noptions:\n", cmd->name, cmd->about);
        for (int i = 0; i < N_OPTS; i++)
            if (opts[i].commands & cmd->bit)
                print_option(f, &opts[i]);
        fputc('\n', f);
    }
    fputs(exit_codes_text, f);
    fputs("environment: ATLASCLOUD_API_KEY, RUNCOMFY_API_TOKEN, ATLASCLOUD_BASE_URL, RUNCOMFY_BASE_URL.\n", f);
}

static const struct command *find_command(const char *name)
{
    for (int i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_version(void);

struct options {
    const struct command *cmd;
    const char *command;
    const char *state;
    const char *out;        /* report --out */
    int concurrency;      /* 0 = manifest's */
    double rps;           /* < 0 = manifest's */
    int dry_run;
    const char *retry_failed;
    const char *progress;
    double max_cost;      /* --max-cost; < 0 = the manifests' max_cost */
    int charges;          /* status --charges */
    int json;             /* status --json */
    int failed_only;      /* status --failed */
    int quiet;
    char **manifests;
    int n_manifests;
};

static const struct options *g_usage_cmd;

static int SB_PRINTF(1, 2) usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "seedbatch: ");
    vfprintf(stderr, fmt, ap);
    if (g_usage_cmd && g_usage_cmd->cmd)
        fprintf(stderr, "\nTry 'seedbatch %s --help'.\n", g_usage_cmd->cmd->name);
    else
        fprintf(stderr, "\nTry 'seedbatch --help'.\n");
    va_end(ap);
    return SB_EXIT_USAGE;
}

static const char *kinds[] = {SB_EK_INVALID_INPUT, SB_EK_REJECTED, SB_EK_TIMEOUT, SB_EK_NETWORK,
                              SB_EK_SERVER, SB_EK_RATE_LIMITED, SB_EK_AUTH, SB_EK_QUOTA, "cancelled", NULL};

static int is_kind(const char *s)
{
    for (int i = 0; kinds[i]; i++)
        if (strcmp(kinds[i], s) == 0)
            return 1;
    return 0;
}

static const struct opt *find_opt(int id)
{
    for (int i = 0; i < N_OPTS; i++)
        if (opts[i].id == id)
            return &opts[i];
    return NULL;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    struct option longopts[N_OPTS + 1];
    char shorts[2 * N_OPTS + 2] = ":";
    size_t ns = 1;
    for (int i = 0; i < N_OPTS; i++) {
        longopts[i] = (struct option){opts[i].name, opts[i].has_arg, NULL, opts[i].id};
        if (opts[i].short_name) {
            shorts[ns++] = opts[i].short_name;
            if (opts[i].has_arg == required_argument)
                shorts[ns++] = ':';
        }
    }
    longopts[N_OPTS] = (struct option){NULL, 0, NULL, 0};
    shorts[ns] = '\0';
    enum sb_log_format fmt = SB_LOG_TEXT;
    enum sb_log_level lvl = SB_LOG_INFO;
    int c;
    g_usage_cmd = o;
    optind = 2;
    opterr = 0;
    while ((c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
        char *end;
        if (c == '?') {
            if (optopt)
                return usage_error("unknown option -%c", optopt);
            return usage_error("unknown option %s", argv[optind - 1]);
        }
        if (c == ':')
            return usage_error("%s needs a value", argv[optind - 1]);
        for (int i = 0; i < N_OPTS; i++)
            if (opts[i].short_name == c)
                c = opts[i].id;
        const struct opt *op = find_opt(c);
        if (op && !(op->commands & o->cmd->bit))
            return usage_error("--%s is not an option of %s", op->name, o->cmd->name);
        switch (c) {
        case O_STATE:
            o->state = optarg;
            break;
        case O_CONC:
            o->concurrency = (int)strtol(optarg, &end, 10);
            if (*end || o->concurrency < 1 || o->concurrency > 10000)
                return usage_error("--concurrency must be a whole number from 1 to 10000, not '%s'", optarg);
            break;
        case O_RPS:
            o->rps = strtod(optarg, &end);
            if (*end || !(o->rps >= 0 && o->rps <= 100000))
                return usage_error("--rps must be a number from 0 (unlimited) to 100000, not '%s'", optarg);
            break;
        case O_DRY:
            o->dry_run = 1;
            break;
        case O_MAXCOST:
            o->max_cost = strtod(optarg, &end);
            if (end == optarg || *end || !(o->max_cost >= 0 && o->max_cost <= 1e9))
                return usage_error("--max-cost must be an amount in USD from 0 to 1000000000, not '%s'", optarg);
            break;
        case O_CHARGES:
            o->charges = 1;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case O_FAILED:
            o->failed_only = 1;
            break;
        case O_OUT:
            o->out = optarg;
            break;
        case O_RETRY:
            /* --retry-failed=KIND, or --retry-failed KIND when the next word is a kind. */
            if (!optarg && optind < argc && is_kind(argv[optind]))
                optarg = argv[optind++];
            o->retry_failed = optarg ? optarg : "";
            if (optarg && !is_kind(optarg))
                return usage_error("--retry-failed=%s: not an error kind (invalid_input, rejected, timeout, "
                                   "network, server, rate_limited, auth, quota, cancelled)", optarg);
            break;
        case O_PROGRESS:
            if (strcmp(optarg, "auto") && strcmp(optarg, "always") && strcmp(optarg, "never"))
                return usage_error("--progress must be auto, always or never, not '%s'", optarg);
            o->progress = optarg;
            break;
        case O_LOGFMT:
            if (strcmp(optarg, "text") == 0)
                fmt = SB_LOG_TEXT;
            else if (strcmp(optarg, "json") == 0)
                fmt = SB_LOG_JSON;
            else
                return usage_error("--log-format must be text or json, not '%s'", optarg);
            break;
        case O_QUIET:
            lvl = SB_LOG_WARN;
            o->quiet = 1;
            break;
        case O_DEBUG:
            lvl = SB_LOG_DEBUG;
            sb_loop_set_debug(1);
            break;
        case O_HELP:
            print_usage(stdout, o->cmd);
            exit(SB_EXIT_OK);
        case O_VERSION:
            print_version();
            exit(SB_EXIT_OK);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    sb_log_setup(fmt, lvl);
    o->manifests = argv + optind;
    o->n_manifests = argc - optind;
    if (o->n_manifests == 0)
        return usage_error("%s needs at least one manifest", o->command);
    if ((o->json != 0) + (o->charges != 0) + (o->failed_only != 0) > 1)
        return usage_error("%s", "--json, --charges and --failed are different views: give one");
    if (o->out && o->n_manifests > 1)
        return usage_error("%s", "--out names one page: give one manifest with it");
    if (o->state && o->n_manifests > 1)
        return usage_error("%s", "--state names one state database: give one manifest with it");
    /* One file named twice (m.yaml ./m.yaml): said as such, not as two manifests sharing a state. */
    for (int i = 1; i < o->n_manifests; i++) {
        struct stat a, b;
        if (stat(o->manifests[i], &a) != 0)
            continue;
        for (int k = 0; k < i; k++)
            if (stat(o->manifests[k], &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
                return usage_error("%s is given twice (as %s and %s)", o->manifests[k], o->manifests[k],
                                   o->manifests[i]);
    }
    return SB_EXIT_OK;
}

/*
 * The files an earlier run recorded in the manifest's state (--state, or its default
 * path), opened read-only while the manifest loads. No state, or one that cannot be
 * read: every file is read, and the command that opens the state says what is wrong.
 */
static void *open_file_cache(const struct sb_manifest *m, void *ud)
{
    const struct options *o = ud;
    char *path = o->state ? sb_strdup(o->state) : sb_store_default_path(m->output_dir);
    char err[SB_ERRLEN];
    struct sb_store *st = NULL;
    if (sb_store_open(path, 1, &st, err, sizeof err) != SB_OK)
        st = NULL;
    free(path);
    return st;
}

static void close_file_cache(void *st)
{
    sb_store_close(st);
}

/* Loads every manifest; returns 0 when all are valid (bad images aside). */
static int load_all(const struct options *o, struct sb_manifest **ms, int keep_jobs)
{
    int bad = 0;
    struct sb_load_opts lo = {open_file_cache, sb_store_file_lookup, close_file_cache, (void *)o, keep_jobs};
    for (int i = 0; i < o->n_manifests; i++) {
        char err[SB_ERRLEN];
        if (sb_manifest_load_with(o->manifests[i], &lo, &ms[i], err, sizeof err) != SB_OK) {
            sb_error("%s is invalid; nothing was sent", o->manifests[i]);
            bad = 1;
            continue;
        }
        if (o->concurrency)
            ms[i]->limits.concurrency = o->concurrency;
        if (o->rps >= 0)
            ms[i]->limits.requests_per_second = o->rps;
        if (o->max_cost >= 0)
            ms[i]->limits.max_cost = o->max_cost;
    }
    return bad;
}

static char *state_path(const struct options *o, const struct sb_manifest *m)
{
    return o->state ? sb_strdup(o->state) : sb_store_default_path(m->output_dir);
}

/* Opens the state read-only if it exists; *st stays NULL when there is none yet. */
static int open_state_ro(const char *path, struct sb_store **st)
{
    char err[SB_ERRLEN];
    int rc = sb_store_open(path, 1, st, err, sizeof err);
    if (rc == SB_ENOENT)
        return SB_OK;
    if (rc != SB_OK)
        sb_error("%s", err);
    return rc;
}

static int log_invalid(const struct sb_manifest *m, const struct sb_jobspec *j, int index, void *ud)
{
    (void)ud, (void)index;
    if (j->invalid)
        sb_error("%s:%d:%d: job %s: %s", m->path, j->line, j->column, j->id, j->invalid);
    return 0;
}

static int cmd_validate(const struct options *o, struct sb_manifest **ms)
{
    int rc = SB_EXIT_OK;
    for (int i = 0; i < o->n_manifests; i++) {
        struct sb_manifest *m = ms[i];
        char err[SB_ERRLEN];
        if (sb_api_check_keyfile(m, err, sizeof err) != SB_OK) {
            sb_error("%s: %s", m->path, err);
            rc = SB_EXIT_USAGE;
        }
        if (m->n_invalid) {
            if (sb_manifest_each_job(m, log_invalid, NULL, err, sizeof err) != SB_OK)
                sb_error("%s", err);
            printf("%s: %d job%s, %d with an unusable reference image\n", m->path, m->n_jobs, SB_S(m->n_jobs),
                   m->n_invalid);
            rc = SB_EXIT_USAGE;
        } else {
            printf("%s: ok: %d job%s, %zu local file%s, up to %ld output image%s", m->path, m->n_jobs,
                   SB_S(m->n_jobs), sb_map_count(m->files), SB_S(sb_map_count(m->files)), m->images_requested,
                   SB_S(m->images_requested));
            if (m->files_known)
                printf(" (%d of the files known unchanged from the state, not read again)", m->files_known);
            printf("\n");
        }
    }
    return rc;
}

static int cmd_status(const struct options *o, struct sb_manifest **ms)
{
    int rc = SB_EXIT_OK;
    for (int i = 0; i < o->n_manifests; i++) {
        char *path = state_path(o, ms[i]);
        struct sb_store *st = NULL;
        if (open_state_ro(path, &st) != SB_OK) {
            rc = SB_EXIT_USAGE;
        } else {
            char err[SB_ERRLEN];
            int code = SB_EXIT_OK, r;
            if (o->charges) {
                if (st && sb_charges_csv(stdout, ms[i], st, i == 0) != SB_OK) {
                    sb_error("%s: cannot read the charges", path);
                    code = SB_EXIT_FAILED;
                } else if (!st && i == 0) {
                    sb_charges_csv(stdout, ms[i], NULL, 1);
                }
                r = SB_OK;
            } else if (o->json) {
                r = sb_status_json(stdout, ms[i], st, path, &code, err, sizeof err);
            } else if (o->failed_only) {
                r = sb_status_failed(stdout, ms[i], st, &code, err, sizeof err);
            } else {
                r = sb_status_print(stdout, ms[i], st, path, &code, err, sizeof err);
            }
            if (r != SB_OK) {
                sb_error("%s", err);
                code = SB_EXIT_FAILED;
            }
            /* Usage errors (2) outrank the rest; then any manifest not done makes it 1. */
            if (rc != SB_EXIT_USAGE && code != SB_EXIT_OK)
                rc = code;
            sb_store_close(st);
        }
        free(path);
    }
    return rc;
}

static int cmd_dry_run(const struct options *o, struct sb_manifest **ms)
{
    int rc = SB_EXIT_OK;
    double total = 0, spent = 0;
    for (int i = 0; i < o->n_manifests; i++) {
        char *path = state_path(o, ms[i]);
        struct sb_store *st = NULL;
        if (open_state_ro(path, &st) != SB_OK) {
            rc = SB_EXIT_USAGE;
        } else {
            struct sb_plan p;
            char err[SB_ERRLEN];
            if (sb_plan_compute(ms[i], st, o->retry_failed, 0, &p, err, sizeof err) != SB_OK) {
                sb_error("%s", err);
                rc = SB_EXIT_FAILED;
            } else {
                sb_plan_print(stdout, ms[i], &p, path);
                total += p.quote;
                spent += p.spend.spent + p.spend.flagged_cost;
            }
            sb_plan_clear(&p);
            sb_store_close(st);
        }
        free(path);
    }
    if (o->n_manifests > 1)
        printf("total cost quote: $%.2f\n", total);
    /* --max-cost bounds the manifests' states together: said for them together. */
    if (o->n_manifests > 1 && o->max_cost >= 0) {
        double left = o->max_cost - spent;
        if (total > left + 1e-9)
            printf("--max-cost $%.2f for them together: already spent $%.2f; the run would stop submitting "
                   "before the quote is reached ($%.2f of it left)\n", o->max_cost, spent, left > 0 ? left : 0);
        else
            printf("--max-cost $%.2f for them together: already spent $%.2f; within budget\n", o->max_cost, spent);
    }
    printf("dry run: nothing was sent\n");
    return rc;
}

/* Every manifest runs on one loop; the worst outcome is the exit code. */
static int cmd_run(const struct options *o, struct sb_manifest **ms)
{
    struct sb_engine_opts eo = {o->state, o->retry_failed, SB_PROGRESS_AUTO, o->max_cost};
    if (o->progress && strcmp(o->progress, "always") == 0)
        eo.progress = SB_PROGRESS_ALWAYS;
    else if (o->progress && strcmp(o->progress, "never") == 0)
        eo.progress = SB_PROGRESS_NEVER;
    return sb_engine_run(ms, o->n_manifests, &eo);
}

/* A stop asked for while the manifests were checked: nothing was sent or written. */
static int stopped_early(int signum)
{
    sb_warn("%s while checking the manifests: nothing was sent; run the same command to start",
            sb_signals_verb(signum));
    return SB_EXIT_TEMPFAIL;
}

/*
 * The review page of each manifest, from its state read-only (a run may be going: the
 * page shows where it is). No state yet: every job pending, so that a page is there.
 */
static int cmd_report(const struct options *o, struct sb_manifest **ms)
{
    int rc = SB_EXIT_OK;
    for (int i = 0; i < o->n_manifests; i++) {
        char *path = state_path(o, ms[i]);
        struct sb_store *st = NULL;
        char err[SB_ERRLEN];
        if (open_state_ro(path, &st) != SB_OK) {
            rc = SB_EXIT_USAGE;
        } else if (sb_report_write(ms[i], st, 0, o->out, err, sizeof err) != SB_OK) {
            sb_error("%s: %s", ms[i]->path, err);
            rc = SB_EXIT_FAILED;
        } else if (o->out) {
            printf("%s written (%d job%s)\n", o->out, ms[i]->n_jobs, SB_S(ms[i]->n_jobs));
        } else {
            printf("%s/report.html written (%d job%s)\n", ms[i]->output_dir, ms[i]->n_jobs, SB_S(ms[i]->n_jobs));
        }
        sb_store_close(st);
        free(path);
    }
    return rc;
}

static int cmd_results(const struct options *o, struct sb_manifest **ms)
{
    int rc = SB_EXIT_OK;
    for (int i = 0; i < o->n_manifests; i++) {
        char *path = state_path(o, ms[i]);
        struct sb_store *st = NULL;
        char err[SB_ERRLEN];
        int lock = -1, lrc = SB_OK;
        if (open_state_ro(path, &st) != SB_OK) {
            rc = SB_EXIT_USAGE;
        } else if (!st) {
            /* Nothing to write from; an older results.jsonl (its state since removed) stays. */
            sb_error("%s: no run yet (no state at %s): %s/results.jsonl not written", ms[i]->path, path,
                     ms[i]->output_dir);
            rc = SB_EXIT_USAGE;
        } else if ((lrc = sb_store_lock(path, &lock, err, sizeof err)) == SB_EBUSY) {
            /* Two writers would each replace the other's file as it is written. */
            sb_error("a run is using %s: it writes %s/results.jsonl itself, every 10 s and at its end; "
                     "run this again after it", path, ms[i]->output_dir);
            rc = SB_EXIT_TEMPFAIL;
        } else if (lrc != SB_OK) {
            sb_error("%s", err);
            rc = SB_EXIT_USAGE;
        } else if (sb_results_from_store(ms[i], st, err, sizeof err) != SB_OK) {
            sb_error("%s", err);
            rc = SB_EXIT_FAILED;
        } else {
            printf("%s/results.jsonl written (%d job%s)\n", ms[i]->output_dir, ms[i]->n_jobs, SB_S(ms[i]->n_jobs));
        }
        if (lock >= 0)
            close(lock);
        sb_store_close(st);
        free(path);
    }
    return rc;
}

/* The version, and which allocator serves malloc() in this process (checked, not assumed). */
static void print_version(void)
{
    printf("seedbatch %s\n", SB_VERSION);
    const char *allocator = "system malloc";
#ifdef SB_MIMALLOC
    /*
     * mimalloc serves the process only when its malloc comes first in the
     * symbol lookup (a preloaded library, valgrind's for one, comes before it).
     */
    char name[32];
    void *p = malloc(64);
    if (p && mi_is_in_heap_region(p)) {
        int v = mi_version();
        snprintf(name, sizeof name, "mimalloc %d.%d.%d", v / 100, v / 10 % 10, v % 10);
        allocator = name;
    }
    free(p);
#endif
    printf("allocator: %s\n", allocator);
}

/*
 * Descriptors 0 to 2 closed by whatever started the process (">&-", some
 * supervisors) would be given to the next files opened: log lines would land
 * in a state, temporary or output file, and libuv aborts when one of its own
 * descriptors is below 3. Each closed one is opened on /dev/null first.
 */
static int open_standard_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        int got = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY); /* the lowest free: fd */
        if (got < 0)
            return errno;
        if (got != fd) {
            close(got);
            return EBADF;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int fds_err = open_standard_fds();
    if (fds_err != 0) {
        sb_error("cannot open /dev/null in place of a closed standard input, output or error: %s", strerror(fds_err));
        return SB_EXIT_USAGE;
    }
#if defined(__GLIBC__) && !defined(SB_MIMALLOC)
    /*
     * A fixed threshold: buffers over 128 KiB always get their own mapping,
     * returned when freed. glibc's default raises the threshold after such a
     * free, and a long run then keeps growing its heap with them.
     */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
    /*
     * Logs whose reader has gone (2>&1 | head) fail quietly: the run goes on
     * rather than dying on SIGPIPE in the middle of its work.
     */
    signal(SIGPIPE, SIG_IGN);
    /* Past a file size limit (ulimit -f) a write fails with EFBIG, named, rather than killing the run. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        print_usage(stderr, NULL);
        return SB_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        const struct command *hc = argc > 2 ? find_command(argv[2]) : NULL;
        if (argc > 2 && !hc)
            return usage_error("unknown command '%s'", argv[2]);
        print_usage(stdout, hc);
        return SB_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "version") == 0) {
        print_version();
        return SB_EXIT_OK;
    }
    struct options o = {.command = argv[1], .rps = -1, .max_cost = -1};
    o.cmd = find_command(o.command);
    if (!o.cmd)
        return usage_error("unknown command '%s'", o.command);
    int rc = parse_options(argc, argv, &o);
    if (rc != SB_EXIT_OK)
        return rc;
    /* SQLite's allocation statistics take a global mutex on every malloc and free; nothing reads them. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        sb_error("cannot initialise libcurl");
        return SB_EXIT_USAGE;
    }
    struct sb_manifest **ms = sb_calloc((size_t)o.n_manifests, sizeof *ms);
    /* A run syncs every job into its state: the checking reading keeps them for that. */
    int running = strcmp(o.command, "run") == 0 && !o.dry_run;
    /* Checking many local images takes a while: a stop during it is a run's stop (exit 75). */
    if (running)
        sb_signals_catch(0, 0);
    int invalid = load_all(&o, ms, running);
    if (running && sb_signals_caught()) {
        rc = stopped_early(sb_signals_caught());
    } else if (invalid) {
        rc = SB_EXIT_USAGE;
    } else if (strcmp(o.command, "validate") == 0) {
        rc = cmd_validate(&o, ms);
    } else if (strcmp(o.command, "status") == 0) {
        rc = cmd_status(&o, ms);
    } else if (strcmp(o.command, "run") == 0 && o.dry_run) {
        rc = cmd_dry_run(&o, ms);
    } else if (strcmp(o.command, "run") == 0) {
        rc = cmd_run(&o, ms);
    } else if (strcmp(o.command, "results") == 0) {
        rc = cmd_results(&o, ms);
    } else if (strcmp(o.command, "report") == 0) {
        rc = cmd_report(&o, ms);
    } else if (strcmp(o.command, "cancel") == 0) {
        struct sb_engine_opts eo = {o.state, NULL, SB_PROGRESS_NEVER, -1};
        rc = sb_engine_cancel(ms, o.n_manifests, &eo);
    } else {
        sb_error("%s: not available in this version yet", o.command);
        rc = SB_EXIT_USAGE;
    }
    for (int i = 0; i < o.n_manifests; i++)
        sb_manifest_free(ms[i]);
    free(ms);
    curl_global_cleanup();
    return rc;
}
