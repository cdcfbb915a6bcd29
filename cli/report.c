/* stemline report: (re)writes the HTML page of a run's report.json, of merge's
 * merged-report.json, or of bench/run's results.json. */
#include "cli/commands.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "pipeline/report_html.h"
#include "pipeline/runner.h"
#include "pipeline/shardenv.h"

static const char report_help[] =
    "usage: stemline report OUT [--shard I/N | --merged] [--html FILE] [--points N]\n"
    "       stemline report --bench RESULTS.json [--html FILE]\n"
    "\n"
    "Writes the HTML page of a run's report: OUT/report.html from OUT/report.json\n"
    "(with --shard I/N, OUT/sIIIIofNNNN-report.html of that shard's run; with\n"
    "--merged, OUT/merged-report.html from `stemline merge`'s merged-report.json\n"
    "and the shards' reports). `stemline run` and `stemline merge` write these\n"
    "pages themselves; this command rewrites one, e.g. with another --html.\n"
    "One self-contained file (nothing is fetched when it is opened): throughput\n"
    "over time, stage occupancy and waits, batch sizes, per-track times, the\n"
    "failures with their reasons, tag counts, and a map of the track vectors\n"
    "(their first two principal components; hover a point for its track id).\n"
    "--points N draws at most N tracks (every k-th; default 2000) on the map and\n"
    "the per-track chart.\n"
    "\n"
    "With --bench, the page of a benchmark run (bench/run's results.json): x\n"
    "realtime per job and stage, and SDR per target (default FILE: results.html\n"
    "beside it).\n"
    "\n"
    "exit status: 0 written, 1 the page could not be written, 2 usage error or\n"
    "no report to read\n";

int sl_cmd_report(int argc, char **argv)
{
    const char *out = NULL, *html = NULL, *bench = NULL, *shard = NULL;
    size_t points = 0;
    int merged = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(report_help, stdout);
            return 0;
        } else if (!strcmp(a, "--points")) {
            char *end;
            long n = v ? strtol(v, &end, 10) : 0;
            if (!v || *end || n < 1 || n > 10000000) {
                fprintf(stderr, "stemline report: --points needs a count from 1 to 10000000\n");
                return SL_EXIT_USAGE;
            }
            points = (size_t)n;
            i++;
        } else if (!strcmp(a, "--merged")) {
            merged = 1;
        } else if (!strcmp(a, "--html") || !strcmp(a, "--bench") || !strcmp(a, "--shard")) {
            if (!v) {
                fprintf(stderr, "stemline report: %s needs a value (see stemline report --help)\n", a);
                return SL_EXIT_USAGE;
            }
            *(a[2] == 'h' ? &html : a[2] == 'b' ? &bench : &shard) = v;
            i++;
        } else if (a[0] == '-') {
            fprintf(stderr, "stemline report: unknown option '%s' (see stemline report --help)\n", a);
            return SL_EXIT_USAGE;
        } else if (out) {
            fprintf(stderr, "stemline report: one output folder only ('%s' and '%s')\n", out, a);
            return SL_EXIT_USAGE;
        } else {
            out = a;
        }
    }
    if (!!out + !!bench != 1 || (merged && shard) || (bench && (merged || shard))) {
        fprintf(stderr, "stemline report: give OUT (with --shard or --merged at most) or --bench RESULTS.json "
                        "(see stemline report --help)\n");
        return SL_EXIT_USAGE;
    }
    char m[1024], json[4096], page[4096], prefix[64] = "";
    int rc;
    if (bench) {
        if (!html) {
            const char *slash = strrchr(bench, '/');
            snprintf(page, sizeof page, "%.*sresults.html", slash ? (int)(slash - bench + 1) : 0, bench);
            html = page;
        }
        rc = sl_report_html_bench(bench, html);
    } else {
        if (shard) {
            int idx, cnt;
            if (sl_shard_parse(shard, &idx, &cnt)) {
                fprintf(stderr, "stemline report: %s\n", sl_errmsg(SL_EUSAGE, m, sizeof m));
                return SL_EXIT_USAGE;
            }
            sl_shard_prefix(idx, cnt, prefix, sizeof prefix);
        }
        const char *base = merged ? "merged-report" : "report";
        snprintf(json, sizeof json, "%s/%s%s.json", out, prefix, base);
        if (!html) {
            snprintf(page, sizeof page, "%s/%s%s.html", out, prefix, base);
            html = page;
        }
        sl_report_html_opts o = {.out_dir = out, .report = json, .html = html, .prefix = merged ? NULL : prefix,
                                 .max_points = points};
        rc = sl_report_html_write(&o);
    }
    if (rc) {
        fprintf(stderr, "stemline report: %s\n", sl_errmsg(rc, m, sizeof m));
        return rc == SL_ENOTFOUND || rc == SL_EFORMAT ? SL_EXIT_USAGE : SL_EXIT_FATAL;
    }
    printf("%s\n", html);
    return 0;
}
