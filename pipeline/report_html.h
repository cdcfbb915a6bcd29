/* report.html: the data of report.json (or of merged-report.json and the
 * shards' reports it names) as one self-contained page: inline CSS, SVG and a
 * little JavaScript, nothing fetched from anywhere (a Content-Security-Policy
 * forbids it). Charts: throughput over time, stage seconds and waits, the
 * pipeline object, batch sizes, per-track audio length against processing
 * time, the failures with their reasons, the most frequent tags, and a 2-D map
 * of the track vectors (the first two principal components of the mix
 * vectors, computed here; hovering a point shows its track id).
 *
 * Memory is bounded whatever the catalog: the covariance is accumulated over
 * blocks of rows, at most max_points tracks are drawn (every k-th row), at most
 * SL_HTML_MAX_ROWS failures are listed. Every string from the data is escaped
 * for HTML (invalid UTF-8 and control characters become U+FFFD). */
#ifndef SL_REPORT_HTML_H
#define SL_REPORT_HTML_H

#include <stddef.h>
#include <stdio.h>

#define SL_HTML_MAX_ROWS 1000

typedef struct {
    const char *out_dir; /* the run's output folder (vectors and tags are read below it) */
    const char *report;  /* a run's report.json, or merge's merged-report.json */
    const char *html;    /* the page to write (atomically) */
    const char *prefix;  /* shard prefix of this run's vector and tag files ("" unsharded);
                            NULL: every prefix (a merged report) */
    size_t max_points;   /* tracks drawn on the map and the per-track chart; 0 = 2000 */
} sl_report_html_opts;

/* Writes o->html. Returns 0, SL_ENOTFOUND / SL_EFORMAT (the report is missing or
 * not JSON), SL_ENOMEM or a negated errno, with the file in sl_lasterr().
 * Missing vectors or tags only leave their section empty (it says why). */
int sl_report_html_write(const sl_report_html_opts *o);

/* A page of benchmark results (bench/run's results.json: the runs' x realtime
 * and the SDR per target) with the same charts. Same returns. */
int sl_report_html_bench(const char *results_json, const char *html);

/* ---- SVG charts (also for other pages) ---- */

/* Text or attribute value escaped for HTML; NULL writes nothing. */
void sl_html_esc(FILE *f, const char *s);

typedef struct {
    const char *name;    /* legend */
    const double *x, *y;
    size_t n;
} sl_svg_series;

/* Lines through (x, y) of each series, on shared axes. */
void sl_svg_lines(FILE *f, const char *title, const char *xlabel, const char *ylabel, const sl_svg_series *s,
                  size_t ns);
/* One horizontal bar per label (values >= 0), value written at the bar's end. */
void sl_svg_hbars(FILE *f, const char *title, const char *unit, const char *const *labels, const double *v,
                  size_t n);
/* Vertical bars (a histogram): labels under the bars, hover shows label and value. */
void sl_svg_vbars(FILE *f, const char *title, const char *xlabel, const char *ylabel, const char *const *labels,
                  const double *v, size_t n);
/* Points; ids (may be NULL) shown on hover (data-id, and an SVG title). */
void sl_svg_scatter(FILE *f, const char *title, const char *xlabel, const char *ylabel, const double *x,
                    const double *y, const char *const *ids, size_t n);

/* A table row of the page: key, then value escaped ("-" for NULL); a number
 * printed with fmt. */
void sl_html_kv_row(FILE *f, const char *k, const char *v);
void sl_html_kv_num(FILE *f, const char *k, double v, const char *fmt);

/* Shared by the pages: a JSON file into a DOM (0, SL_ENOTFOUND, SL_EFORMAT,
 * SL_ENOMEM or a negated errno, the file named), and a page written by fill
 * into memory, then atomically to path. */
struct sl_json;
int sl_html_read_json(const char *path, struct sl_json *out);
int sl_html_write_atomic(const char *path, int (*fill)(FILE *f, void *arg), void *arg);

/* The page around the charts: head (title escaped, style, CSP) and end (the
 * hover script). */
void sl_html_begin(FILE *f, const char *title);
void sl_html_end(FILE *f);

#endif
