/* stemline merge: checks that the shards of a job, together, did every track
 * exactly once, and writes OUT/merged-report.json. */
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "io/catalog.h"
#include "pipeline/config.h"
#include "pipeline/merge.h"
#include "pipeline/report_html.h"
#include "pipeline/partition.h"
#include "pipeline/shardenv.h"

static const char merge_help[] =
    "usage: stemline merge [OUT] [--job JOB.yaml [--set KEY=VALUE]...] [--json] [--check-only]\n"
    "                      [--fix [--keep N]] [--shards-to-run]\n"
    "\n"
    "Combines the results of a job run as several shards (stemline run --shard I/N,\n"
    "a Slurm job array or a Kubernetes Indexed Job) that wrote into one output\n"
    "folder OUT. It reads every ledger there (ledger.sqlite and\n"
    "sIIIIofNNNN-ledger.sqlite, read-only) and every report, and checks that:\n"
    "  - every shard 0..N-1 has a ledger (a missing shard is named by index);\n"
    "  - no track is done in two ledgers (runs with different --shard counts into\n"
    "    one folder overlap);\n"
    "  - every track is done exactly once: failed tracks are listed with their\n"
    "    errors, and tracks left pending by an interrupted run as missing;\n"
    "  - all shards ran with the same settings (one config hash).\n"
    "Then it writes OUT/merged-report.json (atomically): totals of tracks ok,\n"
    "failed, missing and duplicated, seconds of audio, each shard's wall time and\n"
    "x realtime, and every failure with its reason.\n"
    "\n"
    "A shard's ledger only knows the tracks that shard attempted. With --job, the\n"
    "job's catalog is scanned again, and every track of it that no ledger has\n"
    "done (never attempted, or its input file or settings changed since) is\n"
    "listed as missing, with the shard that should run it: this is the full check.\n"
    "\n"
    "options:\n"
    "  --job JOB.yaml    the job the shards ran (OUT defaults to its output.dir)\n"
    "  --set KEY=VALUE   a job override, as given to stemline run (repeatable)\n"
    "  --json            print the merged report as JSON on stdout (problems go to\n"
    "                    stderr)\n"
    "  --check-only      check and print, but do not write merged-report.json\n"
    "                    (with --fix: list what would be removed, remove nothing)\n"
    "  --fix             when OUT holds two sets of shards (runs with different\n"
    "                    shard counts: every track done twice), keep the newest\n"
    "                    set and remove the ledgers, reports, vector shards and\n"
    "                    tags of the others, listing each file first; then merge.\n"
    "                    Refused when the set kept lacks some of its ledgers\n"
    "  --keep N          with --fix: keep the set of N shards (1 = unsharded)\n"
    "                    instead of the newest\n"
    "  --shards-to-run   print only the indices of the shards of the folder's\n"
    "                    newest set that have something left to do (no ledger,\n"
    "                    tracks failed, pending or, with --job, never done), as\n"
    "                    a comma-separated list for sbatch --array=...; writes\n"
    "                    nothing\n"
    "  -h, --help        this help\n"
    "\n"
    "exit status:\n"
    "  0  every track done exactly once, all shards present, one config hash\n"
    "  1  fatal: OUT cannot be read or holds no ledger, a ledger is unreadable,\n"
    "     or merged-report.json could not be written\n"
    "  2  usage or job configuration error\n"
    "  3  some tracks failed, are missing or were done twice, a shard is missing,\n"
    "     or the shards disagree on settings (all listed); run the listed shards\n"
    "     again (done tracks are skipped) and merge again\n";

#define MERGE_LIST_MAX 200

/* --shards-to-run: the list for the folder's newest set of shards on stdout. */
static int shards_to_run(const sl_merge *mg, const char *out_dir, int status)
{
    sl_partition *parts;
    size_t np;
    char m[1024];
    int rc = sl_partitions_list(out_dir, &parts, &np);
    if (rc || !np) {
        fprintf(stderr, "stemline merge: %s\n", rc ? sl_errmsg(rc, m, sizeof m) : "no ledger");
        return 1;
    }
    int *idx;
    long n = sl_merge_shards_to_run(mg, parts[0].count, &idx);
    if (n < 0) {
        free(parts);
        return 1;
    }
    for (long i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", idx[i]);
    putchar('\n');
    fprintf(stderr, "stemline merge: %ld of %d shard%s to run%s\n", n, parts[0].count, parts[0].count == 1 ? "" : "s",
            np > 1 ? " (of the newest set; the folder holds several: see stemline merge --fix)" : "");
    free(idx);
    free(parts);
    return status;
}

int sl_cmd_merge(int argc, char **argv)
{
    const char *out_dir = NULL, *job = NULL;
    int json = 0, check_only = 0, fix = 0, keep = 0, to_run = 0, status = 2;
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    size_t n_sets = 0;
    if (!sets)
        return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(merge_help, stdout);
            free(sets);
            return 0;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--check-only")) {
            check_only = 1;
        } else if (!strcmp(a, "--fix")) {
            fix = 1;
        } else if (!strcmp(a, "--shards-to-run")) {
            to_run = 1;
        } else if (!strcmp(a, "--keep") || !strncmp(a, "--keep=", 7)) {
            const char *v = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || sl_shard_parse_count(v, &keep)) {
                fprintf(stderr, "stemline merge: --keep needs a shard count (1 = the unsharded set)\n");
                goto out;
            }
        } else if (!strcmp(a, "--job") || !strncmp(a, "--job=", 6)) {
            const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !*v) {
                fprintf(stderr, "stemline merge: --job needs a job file\n");
                goto out;
            }
            job = v;
        } else if (!strcmp(a, "--set") || !strncmp(a, "--set=", 6)) {
            const char *v = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || !strchr(v, '=')) {
                fprintf(stderr, "stemline merge: --set needs KEY=VALUE\n");
                goto out;
            }
            sets[n_sets++] = v;
        } else if (!strcmp(a, "--")) {
            if (i + 1 < argc && !out_dir)
                out_dir = argv[++i];
            if (i + 1 < argc) {
                fprintf(stderr, "stemline merge: one output folder only\n");
                goto out;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "stemline merge: unknown option '%s' (see stemline merge --help)\n", a);
            goto out;
        } else if (!out_dir) {
            out_dir = a;
        } else {
            fprintf(stderr, "stemline merge: one output folder only ('%s' and '%s')\n", out_dir, a);
            goto out;
        }
    }
    if (n_sets && !job) {
        fprintf(stderr, "stemline merge: --set applies to --job; pass the job file too\n");
        goto out;
    }
    if (keep && !fix) {
        fprintf(stderr, "stemline merge: --keep goes with --fix\n");
        goto out;
    }
    if (to_run && (fix || json)) {
        fprintf(stderr, "stemline merge: --shards-to-run prints only the list; use it without --fix and --json\n");
        goto out;
    }
    if (!out_dir && !job) {
        fprintf(stderr, "stemline merge: missing OUT (the job's output folder) or --job JOB.yaml "
                        "(see stemline merge --help)\n");
        goto out;
    }

    sl_config cfg;
    int have_cfg = 0;
    sl_catalog cat = {0};
    int have_cat = 0;
    char hash[17] = "";
    char m[1024];
    if (job) {
        int rc = sl_cfg_load(&cfg, job, sets, n_sets);
        if (rc) {
            fprintf(stderr, "stemline merge: error: %s\n", sl_errmsg(rc, m, sizeof m));
            status = rc == SL_ENOMEM ? 1 : 2;
            goto out;
        }
        have_cfg = 1;
        if (cfg.n_input_paths == 0 && !cfg.input_manifest) {
            fprintf(stderr, "stemline merge: %s: no input: set input.paths or input.manifest\n", job);
            goto done;
        }
        rc = sl_catalog_scan(&cat, (const char *const *)cfg.input_paths, cfg.n_input_paths, cfg.input_manifest,
                             (const char *const *)cfg.input_extensions, cfg.n_input_extensions);
        if (rc) {
            fprintf(stderr, "stemline merge: error: catalog of %s: %s\n", job, sl_errmsg(rc, m, sizeof m));
            status = rc == SL_ENOMEM ? 1 : 2;
            goto done;
        }
        have_cat = 1;
        sl_cfg_output_hash(&cfg, hash);
        if (!out_dir)
            out_dir = cfg.output_dir;
    }

    if (fix) {
        size_t n_files = 0;
        int rc = sl_partition_fix(out_dir, keep, check_only, json ? stderr : stdout, &n_files);
        if (rc) {
            fprintf(stderr, "stemline merge: --fix: %s\n", sl_errmsg(rc, m, sizeof m));
            status = rc == SL_EUSAGE ? 2 : 1;
            goto done;
        }
        fprintf(json ? stderr : stdout, "stemline merge: --fix: %s %zu file%s of older sets of shards\n",
                check_only ? "would remove" : "removed", n_files, n_files == 1 ? "" : "s");
    }

    sl_merge_opts mo = {
        .out_dir = out_dir,
        .catalog = have_cat ? &cat : NULL,
        .config_hash = have_cat ? hash : NULL,
        .job = job,
    };
    sl_merge *mg = NULL;
    int rc = sl_merge_run(&mg, &mo);
    if (rc) {
        fprintf(stderr, "stemline merge: error: %s\n", sl_errmsg(rc, m, sizeof m));
        status = 1;
        goto done;
    }
    status = sl_merge_status(mg);
    if (to_run) {
        status = shards_to_run(mg, out_dir, status);
        sl_merge_free(mg);
        goto done;
    }
    if (json) {
        sl_merge_write_json(mg, stdout);
        sl_merge_print_problems(mg, stderr, MERGE_LIST_MAX);
    } else {
        sl_merge_print(mg, stdout, MERGE_LIST_MAX);
    }
    if (!check_only) {
        /* embedding.center: catalog: one mean over every shard set */
        size_t n_centred = 0;
        rc = sl_merge_center(out_dir, json ? stderr : stdout, &n_centred);
        if (rc) {
            fprintf(stderr, "stemline merge: error: centring the vectors on the catalog mean: %s\n",
                    sl_errmsg(rc, m, sizeof m));
            status = 1;
        }
        size_t len = strlen(out_dir) + 32;
        char *path = malloc(len);
        if (!path) {
            status = 1;
        } else {
            snprintf(path, len, "%s/merged-report.json", out_dir);
            rc = sl_merge_write_report(mg, path);
            if (rc) {
                fprintf(stderr, "stemline merge: error: cannot write the merged report: %s\n",
                        sl_errmsg(rc, m, sizeof m));
                status = 1;
            } else {
                if (!json)
                    printf("merged report: %s\n", path);
                /* the page is a view of the JSON: a failure to write it is said, not fatal */
                char *page = strdup(path);
                if (page) {
                    strcpy(page + strlen(page) - 5, ".html");
                    sl_report_html_opts ho = {.out_dir = out_dir, .report = path, .html = page, .prefix = NULL};
                    rc = sl_report_html_write(&ho);
                    if (rc)
                        fprintf(stderr, "stemline merge: cannot write %s: %s\n", page, sl_errmsg(rc, m, sizeof m));
                    else if (!json)
                        printf("merged report page: %s\n", page);
                    free(page);
                }
            }
            free(path);
        }
    }
    fflush(stdout);
    if (status == 0)
        fprintf(stderr, "stemline merge: complete: every track done exactly once\n");
    else if (status == 3)
        fprintf(stderr, "stemline merge: incomplete: see the problems listed%s\n",
                check_only ? "" : " (and merged-report.json)");
    else
        fprintf(stderr, "stemline merge: could not check everything (unreadable ledger or report not written)\n");
    sl_merge_free(mg);
done:
    if (have_cat)
        sl_catalog_free(&cat);
    if (have_cfg)
        sl_cfg_free(&cfg);
out:
    free(sets);
    return status;
}
