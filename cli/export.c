/* stemline export: the vector shards, timelines and tags of a run as one
 * deduplicated table per (model, source), for pandas, pyarrow, DuckDB and numpy. */
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "pipeline/export.h"
#include "pipeline/runner.h"

static const char export_help[] =
    "usage: stemline export OUT [--model M] [--source S] [--format parquet|npy]\n"
    "                           [--out DIR] [--row-group-rows N] [--quiet]\n"
    "\n"
    "Writes the vectors of a run's output folder OUT (every vector shard of every\n"
    "--shard I/N set in it) as one table per embedding model and source, each\n"
    "track once, in track-id order, with a global row id:\n"
    "  DIR/MODEL-SOURCE.parquet           row, id, path, start, end, duration,\n"
    "                                     model, source, vector (list of float32)\n"
    "  DIR/MODEL-SOURCE-timeline.parquet  the same plus window, one row per\n"
    "                                     window (embedding.timeline: true)\n"
    "  DIR/MODEL-tags.parquet             id, path, model, source, rank, index,\n"
    "                                     label, score: one row per tag\n"
    "Times are float64 seconds, ids strings, rows int64. With --format npy the\n"
    "vectors go to DIR/MODEL-SOURCE.npy ([rows, dim], the shards' dtype; for\n"
    "numpy.load(mmap_mode='r')) and the other columns to\n"
    "DIR/MODEL-SOURCE-meta.parquet: row i of one describes row i of the other.\n"
    "\n"
    "Memory is bounded by one row group, never by the catalog. Everything is\n"
    "checked before anything is written, and each file appears under its name\n"
    "only when complete.\n"
    "\n"
    "options:\n"
    "  --model M          only embedding model M (default: every one)\n"
    "  --source S         only source S: mix or a stem name (default: every one)\n"
    "  --format F         parquet (default) or npy\n"
    "  --out DIR          where the tables go (default OUT/export)\n"
    "  --row-group-rows N rows per Parquet row group (default: ~32 MiB of vectors,\n"
    "                     at most 65536)\n"
    "  -q, --quiet        print only errors\n"
    "  -h, --help         this help\n"
    "\n"
    "exit status:\n"
    "  0  exported\n"
    "  1  fatal: a file could not be read or written (disk full, permissions)\n"
    "  2  usage error, or OUT cannot be exported as it is: no vector shards, shards\n"
    "     of differing dims or embedding settings, unknown --model / --source\n"
    "  3  a shard set is incomplete (a shard has no ledger or report yet): run the\n"
    "     missing shards, check with `stemline merge`, then export\n";

int sl_cmd_export(int argc, char **argv)
{
    sl_export_opts o = {.format = SL_EXPORT_PARQUET, .log = stdout};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(export_help, stdout);
            return 0;
        } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
            o.log = NULL;
        } else if (!strcmp(a, "--model") || !strcmp(a, "--source") || !strcmp(a, "--format") ||
                   !strcmp(a, "--out") || !strcmp(a, "--row-group-rows")) {
            if (!v || !*v) {
                fprintf(stderr, "stemline export: %s needs a value (see stemline export --help)\n", a);
                return SL_EXIT_USAGE;
            }
            i++;
            if (!strcmp(a, "--model")) {
                o.model = v;
            } else if (!strcmp(a, "--source")) {
                o.source = v;
            } else if (!strcmp(a, "--out")) {
                o.dest = v;
            } else if (!strcmp(a, "--format")) {
                if (!strcmp(v, "parquet")) {
                    o.format = SL_EXPORT_PARQUET;
                } else if (!strcmp(v, "npy")) {
                    o.format = SL_EXPORT_NPY;
                } else {
                    fprintf(stderr, "stemline export: --format is parquet or npy, not '%s'\n", v);
                    return SL_EXIT_USAGE;
                }
            } else {
                char *end;
                unsigned long long n = strtoull(v, &end, 10);
                if (*end || n == 0 || n > (1u << 30) || v[0] == '-') {
                    fprintf(stderr, "stemline export: --row-group-rows needs a positive number, not '%s'\n", v);
                    return SL_EXIT_USAGE;
                }
                o.row_group_rows = (size_t)n;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "stemline export: unknown option '%s' (see stemline export --help)\n", a);
            return SL_EXIT_USAGE;
        } else if (!o.out_dir) {
            o.out_dir = a;
        } else {
            fprintf(stderr, "stemline export: one output folder only ('%s' and '%s')\n", o.out_dir, a);
            return SL_EXIT_USAGE;
        }
    }
    if (!o.out_dir) {
        fprintf(stderr, "stemline export: missing OUT, the output folder of a run (see stemline export --help)\n");
        return SL_EXIT_USAGE;
    }
    int rc = sl_export_run(&o);
    if (!rc)
        return 0;
    fprintf(stderr, "stemline export: error: %s\n", sl_lasterr());
    if (rc == SL_EIO)
        return 3;
    if (rc == SL_ENOTFOUND || rc == SL_EFORMAT || rc == SL_EINVAL)
        return SL_EXIT_USAGE;
    return SL_EXIT_FATAL;
}
