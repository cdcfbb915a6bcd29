/* The page of a benchmark run (bench/run's results.json); see report_html.h. */
#include "report_html.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"

static const char *const stage_keys[] = {"decode", "separate", "embed", "write", "shards"};

static int fill_bench(FILE *f, void *a)
{
    const sl_json *R = a;
    char title[256];
    snprintf(title, sizeof title, "stemline benchmark (%s mode)", sl_json_get_str(R, "mode", "?"));
    sl_html_begin(f, title);
    fputs("<h1>", f);
    sl_html_esc(f, title);
    fputs("</h1>\n<table>\n", f);
    const sl_json *M = sl_json_get(R, "machine");
    sl_html_kv_row(f, "command", sl_json_get_str(R, "command", NULL));
    sl_html_kv_row(f, "cpu", sl_json_get_str(M, "cpu", NULL));
    sl_html_kv_num(f, "cores", sl_json_get_num(M, "cores", NAN), "%.0f");
    sl_html_kv_row(f, "commit", sl_json_get_str(M, "commit", NULL));
    sl_html_kv_row(f, "load at start", sl_json_get_str(R, "load_start", NULL));
    sl_html_kv_row(f, "load at end", sl_json_get_str(R, "load_end", NULL));
    fputs("</table>\n<h2 id=\"speed\">Speed</h2>\n", f);
    const sl_json *jobs = sl_json_get(R, "jobs");
    size_t nj = sl_json_len(jobs);
    char(*lab)[128] = calloc(nj ? nj : 1, sizeof *lab);
    const char **labels = calloc(nj ? nj : 1, sizeof *labels);
    double *v = calloc(nj ? nj : 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; lab && labels && v && i < nj; i++) {
        const sl_json *j = sl_json_at(jobs, i);
        if (!sl_json_get(j, "x_realtime"))
            continue;
        snprintf(lab[n], sizeof lab[n], "%s, %s (%.0f tracks)", sl_json_get_str(j, "model", "?"),
                 sl_json_get_str(j, "backend", sl_json_get_str(j, "backend_asked", "?")),
                 sl_json_get_num(j, "tracks", 0));
        labels[n] = lab[n];
        v[n++] = sl_json_get_num(j, "x_realtime", NAN);
    }
    if (n)
        sl_svg_hbars(f, "x realtime of each job (seconds of audio per second of wall time)", "x", labels, v, n);
    else
        fputs("<p class=\"note\">no job ran</p>\n", f);
    for (size_t i = 0; lab && labels && v && i < nj; i++) {
        const sl_json *j = sl_json_at(jobs, i), *st = sl_json_get(j, "stages");
        if (!st)
            continue;
        double sv[5];
        for (int k = 0; k < 5; k++)
            sv[k] = sl_json_get_num(sl_json_get(st, stage_keys[k]), "x_realtime", 0);
        char t[192];
        snprintf(t, sizeof t, "x realtime per stage: %s, %s", sl_json_get_str(j, "model", "?"),
                 sl_json_get_str(j, "backend", sl_json_get_str(j, "backend_asked", "?")));
        sl_svg_hbars(f, t, "x", stage_keys, sv, 5);
    }
    free(lab);
    free(labels);
    free(v);
    fputs("<h2 id=\"sdr\">Separation quality (global SDR, dB)</h2>\n", f);
    const sl_json *sdr = sl_json_get(R, "sdr");
    if (!sl_json_len(sdr))
        fputs("<p class=\"note\">not measured in this run</p>\n", f);
    for (size_t i = 0; i < sl_json_len(sdr); i++) {
        const sl_json *s = sl_json_at(sdr, i), *tg = sl_json_get(s, "targets");
        size_t nt = sl_json_len(tg);
        char(*tl)[128] = calloc(2 * nt + 1, sizeof *tl);
        const char **tls = calloc(2 * nt + 1, sizeof *tls);
        double *tv = calloc(2 * nt + 1, sizeof *tv);
        size_t m = 0;
        for (size_t k = 0; tl && tls && tv && k < nt; k++) {
            const char *name = sl_json_get_str(sl_json_at(tg, k), "name", "?");
            snprintf(tl[m], sizeof tl[m], "%s: stemline", name);
            tls[m] = tl[m];
            tv[m++] = sl_json_get_num(sl_json_get(s, "mean"), name, NAN);
            snprintf(tl[m], sizeof tl[m], "%s: mixture as estimate", name);
            tls[m] = tl[m];
            tv[m++] = sl_json_get_num(sl_json_get(s, "mixture_as_estimate_mean"), name, NAN);
        }
        char t[192];
        snprintf(t, sizeof t, "%s: mean global SDR per target over %.0f tracks (higher is better)",
                 sl_json_get_str(s, "model", "?"), sl_json_get_num(s, "tracks_scored", 0));
        if (m)
            sl_svg_hbars(f, t, "dB", tls, tv, m);
        free(tl);
        free(tls);
        free(tv);
    }
    const sl_json *sk = sl_json_get(R, "skipped");
    if (sl_json_len(sk)) {
        fputs("<h2 id=\"skipped\">Skipped</h2>\n<ul>\n", f);
        for (size_t i = 0; i < sl_json_len(sk); i++) {
            const sl_json *e = sl_json_at(sk, i);
            fputs("<li>", f);
            sl_html_esc(f, e->type == SL_JSON_STRING ? e->s : "?");
            fputs("</li>\n", f);
        }
        fputs("</ul>\n", f);
    }
    sl_html_end(f);
    return ferror(f) ? -EIO : 0;
}

int sl_report_html_bench(const char *results_json, const char *html)
{
    sl_json R;
    int rc = sl_html_read_json(results_json, &R);
    if (rc)
        return rc;
    if (R.type != SL_JSON_OBJECT)
        rc = sl_seterr(SL_EFORMAT, "%s: not a JSON object", results_json);
    else
        rc = sl_html_write_atomic(html, fill_bench, &R);
    sl_json_free(&R);
    return rc;
}
