/* stemline command line: dispatches subcommands. Only main() decides the exit status. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/sl_error.h"
#include "../common/sl_log.h"
#include "../io/decode.h"
#include "../models/model.h"
#include "../pipeline/config.h"
#include "../pipeline/partition.h"
#include "../pipeline/runner.h"
#include "../pipeline/shardenv.h"
#include "commands.h"

static const char main_help[] =
    "usage: stemline <command> [options]\n"
    "\n"
    "stemline turns a music catalog into stems (source separation) and vector\n"
    "shards (embeddings) from one YAML job, on the GPU when there is one.\n"
    "\n"
    "commands:\n"
    "  run JOB.yaml     process every track of a job (resumable: run it again to\n"
    "                   finish an interrupted job; done tracks are skipped)\n"
    "  inspect FILE...  show what decoding sees in audio files\n"
    "  models           list the built-in models; `models info FILE` describes a\n"
    "                   weights file, `models fetch NAME` downloads weights\n"
    "  merge OUT        check that the shards of a job did every track exactly\n"
    "                   once; writes merged-report.json\n"
    "  search OUT       nearest neighbours in the vector shards (--id, --audio or\n"
    "                   --text)\n"
    "  embed-text       text vectors of a CLAP model (for text-to-music search)\n"
    "  export OUT       the vectors, timelines and tags of a run as one Parquet\n"
    "                   (or .npy) table per model and source\n"
    "  report OUT       rewrite the HTML page of a run's report (report.html)\n"
    "\n"
    "options:\n"
    "  --version        print the version and exit\n"
    "  -h, --help       this help; `stemline COMMAND --help` for a command\n"
    "\n"
    "exit status: 0 ok, 1 fatal error (retryable), 2 permanent error (usage,\n"
    "configuration, weights, device),\n"
    "3 finished but some tracks failed (see report.json), 4 interrupted (resumable).\n"
    "Job keys and their defaults: configs/README.md.\n";

static const char run_help[] =
    "usage: stemline run JOB.yaml [options]\n"
    "\n"
    "Runs the job described by JOB.yaml: scans the inputs, decodes every track,\n"
    "separates it into stems, embeds it, and writes stems, vector shards, a ledger\n"
    "(ledger.sqlite) and report.json into output.dir. Tracks already done with the\n"
    "same input file and the same output-affecting settings are skipped (after a\n"
    "check that their outputs are still there with the sizes written), so an\n"
    "interrupted run is resumed by running the same command again.\n"
    "\n"
    "One run at a time per ledger: a second run into the same output folder (and\n"
    "shard) exits 1 at once, naming the PID and host of the run that holds it.\n"
    "One job per output folder: a run whose output-affecting settings differ from\n"
    "those the folder's ledger was made with stops with exit 2, naming the first\n"
    "key that differs; use another output.dir, or --reset.\n"
    "\n"
    "options:\n"
    "  --set KEY=VALUE   override a job key; VALUE is read as YAML, e.g.\n"
    "                    --set output.dir=/scratch/out\n"
    "                    --set 'input.paths=[/data/a, /data/b]'\n"
    "                    --set separation.options.kernel_harmonic=17\n"
    "                    (repeatable; applied in order after the file)\n"
    "  --shard I/N       process only shard I (0-based) of N: a deterministic,\n"
    "                    disjoint partition of the sorted catalog; each shard\n"
    "                    writes its own ledger, report and vector shards\n"
    "  --num-shards N    number of shards when the index comes from the\n"
    "                    environment: JOB_COMPLETION_INDEX (Kubernetes Indexed\n"
    "                    Job) needs it; without --shard the shard is taken from\n"
    "                    SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX\n"
    "                    (configs/CLUSTER.md)\n"
    "  --repartition     start a run whose shard count differs from the one of\n"
    "                    the ledgers already in output.dir (refused otherwise:\n"
    "                    two partitions of the catalog in one folder do its\n"
    "                    tracks twice); `stemline merge --fix` later removes the\n"
    "                    older set\n"
    "  --backend B       auto (GPU when usable, else CPU), cpu, cuda, or\n"
    "                    cuda-emu (the CUDA kernels emulated on the CPU: slow,\n"
    "                    for checking the GPU path without a GPU)\n"
    "                    (same as --set runtime.backend=B)\n"
    "  --reset           the output folder's ledger was made with other settings:\n"
    "                    remove the outputs of those settings (stems, vector\n"
    "                    shards, tags of this shard; logged first), then run\n"
    "  --verify          before skipping a done track, also compare its outputs'\n"
    "                    content hashes with those recorded when they were\n"
    "                    written (reads every output; without it: sizes only)\n"
    "  --dry-run         print the resolved configuration and the tracks that\n"
    "                    would be processed (todo/done), then exit; writes nothing\n"
    "  --quiet           print only errors (no progress, no summary)\n"
    "  --progress        force progress output even when stderr is not a terminal\n"
    "  -v, --verbose     debug logging\n"
    "  -h, --help        this help\n"
    "\n"
    "exit status:\n"
    "  0  every track ok (or already done)\n"
    "  1  fatal, a retry may work: out of memory, I/O or device error, full\n"
    "     disk, ledger unusable, another run holds the folder's lock\n"
    "  2  permanent: usage or configuration error, unknown model, missing or\n"
    "     malformed weights, no CUDA device for --backend cuda, output folder\n"
    "     not writable, output folder made with other settings (the first key\n"
    "     that differs is named); nothing was processed. Config errors name\n"
    "     FILE:LINE:COLUMN and the key.\n"
    "  3  finished, but some tracks failed; report.json lists them with reasons\n"
    "  4  interrupted by SIGINT/SIGTERM/SIGHUP; run the same command again to resume\n";

static atomic_int n_signals; /* lock-free: safe in a signal handler */

/* First signal: stop taking tracks, abandon the unfinished ones, write the
 * ledger, shards and report (exit 4). Second: stop at once; every file under
 * its final name is complete and the ledger is consistent (WAL), so the next
 * run resumes from there too. */
static void on_signal(int sig)
{
    (void)sig;
    int saved_errno = errno; /* the interrupted code may be about to read it */
    if (atomic_fetch_add(&n_signals, 1) + 1 >= 2) {
        static const char msg[] = "\nstemline: stopping now (second signal); run again to resume\n";
        if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
            /* nothing to do: we are leaving */
        }
        _exit(SL_EXIT_INTERRUPTED);
    }
    static const char msg[] =
        "\nstemline: stopping: unfinished tracks are abandoned and will be redone on the next run "
        "(signal again to stop at once)\n";
    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0) {
        /* best effort */
    }
    /* decoders blocked in a slow or stalled read give up too */
    sl_io_interrupt();
    sl_run_request_stop();
    errno = saved_errno;
}


static int cmd_run(int argc, char **argv)
{
    const char *job = NULL;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    char *backend_set = NULL;
    size_t n_sets = 0;
    sl_run_opts o = {.shard_index = 0, .shard_count = 1, .progress = -1};
    const char *shard_arg = NULL;
    int num_shards = 0, repartition = 0;
    int status = SL_EXIT_USAGE;
    if (!sets)
        return SL_EXIT_FATAL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(run_help, stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) {
            const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !strchr(v, '=')) {
                fprintf(stderr, "stemline run: --set needs KEY=VALUE\n");
                goto out;
            }
            sets[n_sets++] = v;
        } else if (!strcmp(a, "--shard") || !strncmp(a, "--shard=", 8)) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || sl_shard_parse(v, &o.shard_index, &o.shard_count)) {
                fprintf(stderr, "stemline run: %s\n", v ? sl_lasterr() : "--shard needs I/N, e.g. --shard 3/16");
                goto out;
            }
            shard_arg = v;
        } else if (!strcmp(a, "--num-shards") || !strncmp(a, "--num-shards=", 13)) {
            const char *v = a[12] == '=' ? a + 13 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || sl_shard_parse_count(v, &num_shards)) {
                fprintf(stderr, "stemline run: %s\n", v ? sl_lasterr() : "--num-shards needs a number");
                goto out;
            }
        } else if (!strcmp(a, "--backend") || !strncmp(a, "--backend=", 10)) {
            const char *v = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v) {
                fprintf(stderr, "stemline run: --backend needs auto, cpu or cuda\n");
                goto out;
            }
            free(backend_set);
            backend_set = malloc(strlen(v) + 20);
            if (!backend_set)
                goto out;
            sprintf(backend_set, "runtime.backend=%s", v);
        } else if (!strcmp(a, "--repartition")) {
            repartition = 1;
        } else if (!strcmp(a, "--dry-run")) {
            o.dry_run = 1;
        } else if (!strcmp(a, "--reset")) {
            o.reset = 1;
        } else if (!strcmp(a, "--verify")) {
            o.verify = 1;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            o.quiet = 1;
        } else if (!strcmp(a, "--progress")) {
            o.progress = 1;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            sl_log_set_level(SL_LOG_DEBUG);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "stemline run: unknown option '%s' (see stemline run --help)\n", a);
            goto out;
        } else if (!job) {
            job = a;
        } else {
            fprintf(stderr, "stemline run: one job file only ('%s' and '%s')\n", job, a);
            goto out;
        }
    }
    if (!job) {
        fprintf(stderr, "stemline run: missing JOB.yaml (see stemline run --help)\n");
        goto out;
    }
    {
        char shard_src[256];
        if (sl_shard_resolve(shard_arg, num_shards, &o.shard_index, &o.shard_count, shard_src,
                             sizeof shard_src)) {
            fprintf(stderr, "stemline run: %s\n", sl_lasterr());
            goto out;
        }
        if (o.shard_count > 1 && !o.quiet)
            fprintf(stderr, "stemline: shard %d of %d (%s)\n", o.shard_index, o.shard_count, shard_src);
    }
    if (backend_set)
        sets[n_sets++] = backend_set;
    if (o.quiet)
        sl_log_set_level(SL_LOG_ERROR);

    sl_config cfg;
    int rc = sl_cfg_load(&cfg, job, sets, n_sets);
    if (rc) {
        char m[1024];
        fprintf(stderr, "stemline: error: %s\n", sl_errmsg(rc, m, sizeof m));
        status = rc == SL_ECONFIG ? SL_EXIT_USAGE : (rc == SL_ENOMEM ? SL_EXIT_FATAL : SL_EXIT_USAGE);
        goto out;
    }

    if (!repartition && (rc = sl_partition_check(cfg.output_dir, o.shard_count))) {
        char m[2048];
        fprintf(stderr, "stemline: error: %s\n", sl_errmsg(rc, m, sizeof m));
        status = sl_exit_status_for(rc); /* a file where the folder should be: 2 */
        sl_cfg_free(&cfg);
        goto out;
    }

    if (repartition && !o.dry_run) {
        /* the folder's ledgers are another set: this one becomes the current one */
        sl_partition *parts;
        size_t np;
        if (!sl_partitions_list(cfg.output_dir, &parts, &np) && np &&
            (rc = sl_partition_mark(cfg.output_dir, o.shard_count))) {
            char m[1024];
            fprintf(stderr, "stemline: error: %s\n", sl_errmsg(rc, m, sizeof m));
            free(parts);
            sl_cfg_free(&cfg);
            status = SL_EXIT_FATAL;
            goto out;
        }
        free(parts);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* a closed terminal (ssh dropped without nohup) stops the run cleanly */
    sigaction(SIGHUP, &sa, NULL);

    status = sl_run(&cfg, &o);
    sl_cfg_free(&cfg);
out:
    free(backend_set);
    free(sets);
    return status;
}

int main(int argc, char **argv)
{
    /* A reader that went away (`stemline run ... 2>&1 | head`) must not kill
     * the run: writes to it fail instead, and the log stops writing there. */
    signal(SIGPIPE, SIG_IGN);
    /* FFmpeg is loaded by what first decodes or encodes (io/ff_dl.h), not here:
     * --version, search, report and the like start without it */
    if (argc < 2) {
        fputs(main_help, stderr);
        return SL_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("stemline %s\n", SL_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(main_help, stdout);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect"))
        return sl_cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "models"))
        return sl_cmd_models(argc - 1, argv + 1);
    if (!strcmp(cmd, "merge"))
        return sl_cmd_merge(argc - 1, argv + 1);
    if (!strcmp(cmd, "search"))
        return sl_cmd_search(argc - 1, argv + 1);
    if (!strcmp(cmd, "embed-text"))
        return sl_cmd_embed_text(argc - 1, argv + 1);
    if (!strcmp(cmd, "export"))
        return sl_cmd_export(argc - 1, argv + 1);
    if (!strcmp(cmd, "report"))
        return sl_cmd_report(argc - 1, argv + 1);
    fprintf(stderr, "stemline: unknown command '%s'\n\n%s", cmd, main_help);
    return SL_EXIT_USAGE;
}
