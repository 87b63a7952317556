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

static const char usage_text[] =
    "usage: seedbatch COMMAND [OPTIONS] MANIFEST...\n"
    "\n"
    "commands:\n"
    "  run MANIFEST...        run to completion; resumes what an earlier run left\n"
    "  validate MANIFEST...   all checks, no network; exit 0 or 2\n"
    "  status MANIFEST...     counts per state, spend, failures with reasons\n"
    "  cancel MANIFEST...     cancel remote requests that can still be cancelled\n"
    "  results MANIFEST...    rewrite results.jsonl from the state database\n"
    "\n"
    "options:\n"
    "  --state PATH                  state database (default <output_dir>/.seedbatch/state.db)\n"
    "  --concurrency N               override limits.concurrency\n"
    "  --rps R                       override limits.requests_per_second (0 = unlimited)\n"
    "  --dry-run                     validate, print the plan and the cost quote, send nothing\n"
    "  --retry-failed[=KIND]         re-queue failed jobs (all, or one error kind)\n"
    "  --max-cost USD                this run's cap on the states' total spend (instead of max_cost)\n"
    "  --charges                     status: write the charge ledger as CSV on stdout\n"
    "  --progress auto|always|never  live progress line\n"
    "  --log-format text|json        log lines on stderr\n"
    "  --quiet                       only warnings and errors\n"
    "  --debug                       log every request and answer header (the key redacted)\n"
    "  -h, --help                    this help\n"
    "  --version                     print the version\n"
    "\n"
    "exit codes: 0 all jobs succeeded, 1 some jobs failed, 2 usage error or invalid manifest,\n"
    "3 authentication/permission/balance, 4 stopped by max_cost, 75 interrupted or locked.\n"
    "environment: ATLASCLOUD_API_KEY, RUNCOMFY_API_TOKEN, ATLASCLOUD_BASE_URL, RUNCOMFY_BASE_URL.\n";

struct options {
    const char *command;
    const char *state;
    int concurrency;      /* 0 = manifest's */
    double rps;           /* < 0 = manifest's */
    int dry_run;
    const char *retry_failed;
    const char *progress;
    double max_cost;      /* --max-cost; < 0 = the manifests' max_cost */
    int charges;          /* status --charges */
    char **manifests;
    int n_manifests;
};

static int SB_PRINTF(1, 2) usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "seedbatch: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry 'seedbatch --help'.\n");
    va_end(ap);
    return SB_EXIT_USAGE;
}

static const char *kinds[] = {SB_EK_INVALID_INPUT, SB_EK_REJECTED, SB_EK_TIMEOUT, SB_EK_NETWORK,
                              SB_EK_SERVER, SB_EK_RATE_LIMITED, SB_EK_AUTH, SB_EK_QUOTA, "cancelled", NULL};

static int parse_options(int argc, char **argv, struct options *o)
{
    enum { O_STATE = 256, O_CONC, O_RPS, O_DRY, O_RETRY, O_PROGRESS, O_LOGFMT, O_QUIET, O_DEBUG, O_MAXCOST,
           O_CHARGES };
    static const struct option longopts[] = {
        {"state", required_argument, NULL, O_STATE},
        {"concurrency", required_argument, NULL, O_CONC},
        {"rps", required_argument, NULL, O_RPS},
        {"dry-run", no_argument, NULL, O_DRY},
        {"retry-failed", optional_argument, NULL, O_RETRY},
        {"progress", required_argument, NULL, O_PROGRESS},
        {"log-format", required_argument, NULL, O_LOGFMT},
        {"quiet", no_argument, NULL, O_QUIET},
        {"debug", no_argument, NULL, O_DEBUG},
        {"max-cost", required_argument, NULL, O_MAXCOST},
        {"charges", no_argument, NULL, O_CHARGES},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    enum sb_log_format fmt = SB_LOG_TEXT;
    enum sb_log_level lvl = SB_LOG_INFO;
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        char *end;
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
        case O_RETRY:
            o->retry_failed = optarg ? optarg : "";
            if (optarg) {
                int ok = 0;
                for (int i = 0; kinds[i]; i++)
                    ok |= strcmp(kinds[i], optarg) == 0;
                if (!ok)
                    return usage_error("--retry-failed=%s: not an error kind (invalid_input, rejected, timeout, "
                                       "network, server, rate_limited, auth, quota, cancelled)", optarg);
            }
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
            break;
        case O_DEBUG:
            lvl = SB_LOG_DEBUG;
            sb_loop_set_debug(1);
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(SB_EXIT_OK);
        default:
            fprintf(stderr, "Try 'seedbatch --help'.\n");
            return SB_EXIT_USAGE;
        }
    }
    sb_log_setup(fmt, lvl);
    o->manifests = argv + optind;
    o->n_manifests = argc - optind;
    if (o->n_manifests == 0)
        return usage_error("%s needs at least one manifest", o->command);
    if (o->charges && strcmp(o->command, "status") != 0)
        return usage_error("--charges is an option of status, not of %s", o->command);
    if (o->max_cost >= 0 && strcmp(o->command, "run") != 0)
        return usage_error("--max-cost is an option of run, not of %s", o->command);
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
            if (o->charges) {
                if (st && sb_charges_csv(stdout, ms[i], st, i == 0) != SB_OK) {
                    sb_error("%s: cannot read the charges", path);
                    rc = SB_EXIT_FAILED;
                } else if (!st && i == 0) {
                    sb_charges_csv(stdout, ms[i], NULL, 1);
                }
            } else if (sb_status_print(stdout, ms[i], st, path, err, sizeof err) != SB_OK) {
                sb_error("%s", err);
                rc = SB_EXIT_FAILED;
            }
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
            if (sb_plan_compute(ms[i], st, o->retry_failed, &p, err, sizeof err) != SB_OK) {
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
        fputs(usage_text, stderr);
        return SB_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(usage_text, stdout);
        return SB_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        print_version();
        return SB_EXIT_OK;
    }
    struct options o = {.command = argv[1], .rps = -1, .max_cost = -1};
    static const char *commands[] = {"run", "validate", "status", "cancel", "results", NULL};
    int known = 0;
    for (int i = 0; commands[i]; i++)
        known |= strcmp(commands[i], o.command) == 0;
    if (!known)
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
        sb_signals_catch(0);
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
