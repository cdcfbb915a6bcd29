/* SVG charts and the frame of a self-contained HTML page (report.html, the
 * benchmark page). Charts are drawn here, in C, as static SVG: the page shows
 * them without running any script; the script only adds the hover box. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "report_html.h"

static const char *const palette[] = {"#2f6db5", "#d9822b", "#3a9a5b", "#b5452f", "#7d5ab5", "#8c7a3a"};
#define N_PAL (sizeof palette / sizeof palette[0])

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int n;
    unsigned min;
    if ((c & 0xE0) == 0xC0)
        n = 2, min = 0x80, c &= 0x1F;
    else if ((c & 0xF0) == 0xE0)
        n = 3, min = 0x800, c &= 0x0F;
    else if ((c & 0xF8) == 0xF0)
        n = 4, min = 0x10000, c &= 0x07;
    else
        return 0;
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return n;
}

void sl_html_esc(FILE *f, const char *s)
{
    if (!s)
        return;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        switch (c) {
        case '&': fputs("&amp;", f); p++; continue;
        case '<': fputs("&lt;", f); p++; continue;
        case '>': fputs("&gt;", f); p++; continue;
        case '"': fputs("&quot;", f); p++; continue;
        case '\'': fputs("&#39;", f); p++; continue;
        default: break;
        }
        if ((c < 0x20 && c != '\t' && c != '\n') || c == 0x7F) {
            fputs("\xEF\xBF\xBD", f);
            p++;
            continue;
        }
        int n = utf8_len(p);
        if (!n) {
            fputs("\xEF\xBF\xBD", f);
            p++;
            continue;
        }
        fwrite(p, 1, (size_t)n, f);
        p += n;
    }
}

/* At most max bytes of s, cut at a character boundary, "…" added when cut. */
static void esc_trunc(FILE *f, const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max) {
        sl_html_esc(f, s);
        return;
    }
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    char buf[256];
    if (max >= sizeof buf)
        max = sizeof buf - 1;
    memcpy(buf, s, max);
    buf[max] = 0;
    sl_html_esc(f, buf);
    fputs("\xE2\x80\xA6", f);
}

/* A number for people: up to 4 significant digits, no exponent below 1e6. */
static void num(FILE *f, double v)
{
    if (!isfinite(v))
        fputs("?", f);
    else if (fabs(v) >= 1e6 || (v != 0 && fabs(v) < 1e-3))
        fprintf(f, "%.3g", v);
    else if (v == floor(v))
        fprintf(f, "%.0f", v);
    else
        fprintf(f, "%.4g", v);
}

/* Most ticks drawn on one axis (about five are asked for). */
#define SVG_MAX_TICKS 32

/* Tick step of about five ticks over [lo, hi]: 1, 2 or 5 times a power of ten. */
static double tick_step(double lo, double hi)
{
    double range = hi - lo;
    if (!(range > 0))
        return 1;
    double raw = range / 5, p = pow(10, floor(log10(raw)));
    double m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

typedef struct {
    double x0, x1, y0, y1; /* data range */
    double L, T, W, H;     /* plot area in SVG units */
} frame;

static double fx(const frame *fr, double x) { return fr->L + (x - fr->x0) / (fr->x1 - fr->x0) * fr->W; }
static double fy(const frame *fr, double y) { return fr->T + fr->H - (y - fr->y0) / (fr->y1 - fr->y0) * fr->H; }

static void range_of(const double *v, size_t n, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            *lo = v[i] < *lo ? v[i] : *lo;
            *hi = v[i] > *hi ? v[i] : *hi;
        }
    if (*lo > *hi)
        *lo = 0, *hi = 1;
    /* a range within rounding of its values (e.g. 2 and the next double) is one
     * value: a tick step below the values' resolution would never advance */
    if (*hi - *lo <= 1e-9 * fmax(fabs(*lo), fabs(*hi))) {
        double d = *lo == 0 ? 1 : fabs(*lo) * 0.1;
        *lo -= d;
        *hi += d;
    }
}

static void fig_begin(FILE *f, const char *title, int w, int h)
{
    fputs("<figure><figcaption>", f);
    sl_html_esc(f, title);
    fprintf(f, "</figcaption>\n<svg viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\">\n", w, h, w, h);
}

static void fig_end(FILE *f) { fputs("</svg></figure>\n", f); }

static void axes(FILE *f, const frame *fr, const char *xlabel, const char *ylabel, int xticks)
{
    fprintf(f, "<rect class=\"plot\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>\n", fr->L, fr->T, fr->W,
            fr->H);
    double st = tick_step(fr->y0, fr->y1);
    /* ticks by index, at most SVG_MAX_TICKS: a step the values cannot resolve
     * still ends */
    double v0 = ceil(fr->y0 / st) * st;
    for (int k = 0; k < SVG_MAX_TICKS; k++) {
        double v = v0 + k * st;
        if (!(v <= fr->y1 + 1e-9 * st))
            break;
        double y = fy(fr, v);
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\"/>", fr->L, fr->L + fr->W, y, y);
        fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">", fr->L - 4, y + 4);
        num(f, fabs(v) < 1e-12 * st ? 0 : v);
        fputs("</text>\n", f);
    }
    if (xticks) {
        st = tick_step(fr->x0, fr->x1);
        v0 = ceil(fr->x0 / st) * st;
        for (int k = 0; k < SVG_MAX_TICKS; k++) {
            double v = v0 + k * st;
            if (!(v <= fr->x1 + 1e-9 * st))
                break;
            fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", fx(fr, v),
                    fr->T + fr->H + 14);
            num(f, fabs(v) < 1e-12 * st ? 0 : v);
            fputs("</text>\n", f);
        }
    }
    if (xlabel && *xlabel) {
        fprintf(f, "<text class=\"axis\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", fr->L + fr->W / 2,
                fr->T + fr->H + 32);
        sl_html_esc(f, xlabel);
        fputs("</text>\n", f);
    }
    if (ylabel && *ylabel) {
        fprintf(f, "<text class=\"axis\" transform=\"translate(14 %.1f) rotate(-90)\" text-anchor=\"middle\">",
                fr->T + fr->H / 2);
        sl_html_esc(f, ylabel);
        fputs("</text>\n", f);
    }
}

void sl_svg_lines(FILE *f, const char *title, const char *xlabel, const char *ylabel, const sl_svg_series *s,
                  size_t ns)
{
    frame fr = {.L = 64, .T = 10, .W = 620, .H = 220};
    fr.x0 = INFINITY, fr.x1 = -INFINITY, fr.y0 = 0, fr.y1 = -INFINITY;
    for (size_t k = 0; k < ns; k++) {
        double lo, hi;
        if (!s[k].n)
            continue;
        range_of(s[k].x, s[k].n, &lo, &hi);
        fr.x0 = lo < fr.x0 ? lo : fr.x0;
        fr.x1 = hi > fr.x1 ? hi : fr.x1;
        range_of(s[k].y, s[k].n, &lo, &hi);
        fr.y0 = lo < fr.y0 ? lo : fr.y0;
        fr.y1 = hi > fr.y1 ? hi : fr.y1;
    }
    if (!(fr.x0 < fr.x1))
        fr.x0 = 0, fr.x1 = 1;
    if (!(fr.y0 < fr.y1))
        fr.y1 = fr.y0 + 1;
    fr.y1 += 0.05 * (fr.y1 - fr.y0);
    int legend = ns > 1 ? 20 : 0;
    fig_begin(f, title, 700, 270 + legend * (int)((ns + 3) / 4));
    axes(f, &fr, xlabel, ylabel, 1);
    for (size_t k = 0; k < ns; k++) {
        const char *col = palette[k % N_PAL];
        fprintf(f, "<polyline class=\"line\" stroke=\"%s\" points=\"", col);
        for (size_t i = 0; i < s[k].n; i++)
            if (isfinite(s[k].x[i]) && isfinite(s[k].y[i]))
                fprintf(f, "%.1f,%.1f ", fx(&fr, s[k].x[i]), fy(&fr, s[k].y[i]));
        fputs("\"/>\n", f);
        for (size_t i = 0; i < s[k].n; i++) {
            if (!isfinite(s[k].x[i]) || !isfinite(s[k].y[i]))
                continue;
            fprintf(f, "<circle class=\"dot\" fill=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"2\"><title>", col,
                    fx(&fr, s[k].x[i]), fy(&fr, s[k].y[i]));
            if (s[k].name) {
                sl_html_esc(f, s[k].name);
                fputs(": ", f);
            }
            num(f, s[k].x[i]);
            fputs(", ", f);
            num(f, s[k].y[i]);
            fputs("</title></circle>\n", f);
        }
        if (legend) {
            double lx = 64 + 160.0 * (double)(k % 4), ly = 262 + 20.0 * (double)(k / 4);
            fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"4\" fill=\"%s\"/>", lx, ly, col);
            fprintf(f, "<text class=\"tick\" x=\"%.0f\" y=\"%.0f\">", lx + 16, ly + 6);
            esc_trunc(f, s[k].name ? s[k].name : "", 22);
            fputs("</text>\n", f);
        }
    }
    fig_end(f);
}

void sl_svg_hbars(FILE *f, const char *title, const char *unit, const char *const *labels, const double *v,
                  size_t n)
{
    /* bars from the zero line, to the right for positive values, to the left for negative ones */
    double lo = 0, hi = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) {
            lo = v[i] < lo ? v[i] : lo;
            hi = v[i] > hi ? v[i] : hi;
        }
    if (!(hi > lo))
        hi = lo + 1;
    const double L = 230, W = 380, row = 20, zero = L + W * (-lo) / (hi - lo);
    fig_begin(f, title, 700, (int)(row * (double)n + 10));
    for (size_t i = 0; i < n; i++) {
        double y = 5 + row * (double)i, val = isfinite(v[i]) ? v[i] : 0, w = fabs(val) / (hi - lo) * W;
        double x = val < 0 ? zero - w : zero;
        fprintf(f, "<g><title>");
        sl_html_esc(f, labels[i]);
        fputs(": ", f);
        num(f, v[i]);
        if (unit && *unit) {
            fputc(' ', f);
            sl_html_esc(f, unit);
        }
        fprintf(f, "</title><text class=\"tick\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">", L - 6, y + 14);
        esc_trunc(f, labels[i], 34);
        fprintf(f, "</text><rect class=\"bar\" fill=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\"/>",
                palette[val < 0 ? 3 : 0], x, y + 3, w, row - 6);
        fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\">", (val < 0 ? zero : x + w) + 4, y + 14);
        num(f, v[i]);
        if (unit && *unit) {
            fputc(' ', f);
            sl_html_esc(f, unit);
        }
        fputs("</text></g>\n", f);
    }
    if (lo < 0)
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" x2=\"%.1f\" y1=\"0\" y2=\"%.0f\"/>\n", zero, zero, row * (double)n + 10);
    fig_end(f);
}

void sl_svg_vbars(FILE *f, const char *title, const char *xlabel, const char *ylabel, const char *const *labels,
                  const double *v, size_t n)
{
    frame fr = {.L = 64, .T = 10, .W = 620, .H = 200, .x0 = 0, .x1 = n ? (double)n : 1, .y0 = 0};
    double lo, hi;
    range_of(v, n, &lo, &hi);
    fr.y1 = hi > 0 ? hi * 1.05 : 1;
    fig_begin(f, title, 700, 260);
    axes(f, &fr, xlabel, ylabel, 0);
    double bw = fr.W / (n ? (double)n : 1);
    size_t every = n > 24 ? (n + 23) / 24 : 1; /* labels that fit under the bars */
    for (size_t i = 0; i < n; i++) {
        double val = isfinite(v[i]) && v[i] > 0 ? v[i] : 0, y = fy(&fr, val);
        fputs("<g><title>", f);
        sl_html_esc(f, labels[i]);
        fputs(": ", f);
        num(f, v[i]);
        fprintf(f, "</title><rect class=\"bar\" fill=\"%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"/>",
                palette[0], fr.L + bw * (double)i + 1, y, bw > 3 ? bw - 2 : bw, fr.T + fr.H - y);
        if (i % every == 0) {
            fprintf(f, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">",
                    fr.L + bw * ((double)i + 0.5), fr.T + fr.H + 14);
            esc_trunc(f, labels[i], 10);
            fputs("</text>", f);
        }
        fputs("</g>\n", f);
    }
    fig_end(f);
}

void sl_svg_scatter(FILE *f, const char *title, const char *xlabel, const char *ylabel, const double *x,
                    const double *y, const char *const *ids, size_t n)
{
    frame fr = {.L = 64, .T = 10, .W = 560, .H = 420};
    range_of(x, n, &fr.x0, &fr.x1);
    range_of(y, n, &fr.y0, &fr.y1);
    double dx = 0.04 * (fr.x1 - fr.x0), dy = 0.04 * (fr.y1 - fr.y0);
    fr.x0 -= dx, fr.x1 += dx, fr.y0 -= dy, fr.y1 += dy;
    fig_begin(f, title, 640, 470);
    axes(f, &fr, xlabel, ylabel, 1);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            continue;
        fprintf(f, "<circle class=\"pt\" fill=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\"", palette[0], fx(&fr, x[i]),
                fy(&fr, y[i]));
        if (ids && ids[i]) {
            fputs(" data-id=\"", f);
            sl_html_esc(f, ids[i]);
            fputs("\"><title>", f);
            sl_html_esc(f, ids[i]);
            fputs("</title></circle>\n", f);
        } else {
            fputs("/>\n", f);
        }
    }
    fig_end(f);
}

void sl_html_kv_row(FILE *f, const char *k, const char *v)
{
    fputs("<tr><th>", f);
    sl_html_esc(f, k);
    fputs("</th><td>", f);
    sl_html_esc(f, v ? v : "-");
    fputs("</td></tr>\n", f);
}

void sl_html_kv_num(FILE *f, const char *k, double v, const char *fmt)
{
    char b[64];
    snprintf(b, sizeof b, fmt, v);
    sl_html_kv_row(f, k, b);
}

void sl_html_begin(FILE *f, const char *title)
{
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n<title>",
          f);
    sl_html_esc(f, title);
    fputs("</title>\n<style>\n"
          "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:72em;color:#222;background:#fff}\n"
          "h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ccc}\n"
          "figure{margin:.6em 0}figcaption{font-weight:600;margin-bottom:.2em}\n"
          "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;"
          "text-align:left;vertical-align:top}th{background:#f2f2f2}td.n{text-align:right}\n"
          ".plot{fill:#fafafa;stroke:#bbb}.grid{stroke:#e2e2e2}.tick{font-size:11px;fill:#444}"
          ".axis{font-size:12px;fill:#222}\n"
          ".line{fill:none;stroke-width:1.5}.pt{fill-opacity:.75}.pt:hover{stroke:#000;stroke-width:2}\n"
          ".note{color:#666}.bad{color:#b5452f}\n"
          "#tip{position:absolute;background:#222;color:#fff;padding:2px 6px;border-radius:3px;"
          "font-size:12px;pointer-events:none;white-space:pre}\n"
          "</style></head>\n<body>\n",
          f);
}

/* The hover box: the data-id of the point under the pointer, set as text
 * (never parsed as HTML). With #selftest in the address the first point is
 * hovered once and what the box shows is written to body[data-tip], so that a
 * headless browser's DOM dump shows it. body[data-ready] says the script ran. */
void sl_html_end(FILE *f)
{
    fputs("<div id=\"tip\" hidden></div>\n<script>\n"
          "(function () {\n"
          "  var tip = document.getElementById('tip');\n"
          "  var pts = document.querySelectorAll('[data-id]');\n"
          "  function show(e) {\n"
          "    tip.textContent = this.getAttribute('data-id');\n"
          "    tip.style.left = (e.pageX + 12) + 'px';\n"
          "    tip.style.top = (e.pageY + 12) + 'px';\n"
          "    tip.hidden = false;\n"
          "  }\n"
          "  function hide() { tip.hidden = true; }\n"
          "  for (var i = 0; i < pts.length; i++) {\n"
          "    pts[i].addEventListener('mousemove', show);\n"
          "    pts[i].addEventListener('mouseleave', hide);\n"
          "  }\n"
          "  if (location.hash === '#selftest' && pts.length) {\n"
          "    var r = pts[0].getBoundingClientRect();\n"
          "    pts[0].dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: r.left + 1, clientY: r.top + 1}));\n"
          "    document.body.setAttribute('data-tip', tip.textContent);\n"
          "  }\n"
          "  document.body.setAttribute('data-ready', String(pts.length));\n"
          "})();\n</script>\n</body></html>\n",
          f);
}
