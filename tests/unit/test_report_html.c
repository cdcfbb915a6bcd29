/* HTML escaping of the report page (pipeline/report_html.h): the five special
 * characters, valid UTF-8 kept, invalid UTF-8 (bad lead and continuation
 * bytes, overlong forms, surrogates, past U+10FFFF, cut sequences) and control
 * characters replaced by U+FFFD; a bar chart keeps its labels escaped. And the
 * throughput bins of report.json (pipeline/report.h) on a fake clock: widened
 * by two whenever the run outlasts 128 bins, every track in the bin of its time,
 * nothing lost in the merges. */
#include "common/sl_json.h"
#include "pipeline/report.h"
#include "pipeline/report_html.h"
#include "tests/unit/sl_test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char *esc(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sl_html_esc(f, s);
    fclose(f);
    return buf;
}

static void check(const char *in, const char *want)
{
    char *got = esc(in);
    CHECK_MSG(!strcmp(got, want), "'%s' -> '%s', want '%s'", in, got, want);
    free(got);
}

#define FFFD "\xEF\xBF\xBD"

static double clock_of(void *arg) { return *(const double *)arg; }

int main(void)
{
    check("", "");
    check("plain.wav", "plain.wav");
    check("a<b&\"c'd>e", "a&lt;b&amp;&quot;c&#39;d&gt;e");
    check("</script><script>alert(1)</script>", "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;");
    check("&amp;", "&amp;amp;");
    check("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\xB5", "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\xB5");
    check("tab\tand\nline", "tab\tand\nline");
    check("bell\x07" "esc\x1B" "del\x7F", "bell" FFFD "esc" FFFD "del" FFFD);
    check("\xFF", FFFD);
    check("a\x80" "b", "a" FFFD "b");             /* lone continuation byte */
    check("\xC0\xAF", FFFD FFFD);                 /* overlong '/' */
    check("\xED\xA0\x80", FFFD FFFD FFFD);        /* surrogate U+D800 */
    check("\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD); /* past U+10FFFF */
    check("\xE6\x97", FFFD FFFD);                 /* cut at the end */
    check("\xE6\x97<", FFFD FFFD "&lt;");
    char *n = esc(NULL);
    CHECK(n && !*n);
    free(n);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    const char *labels[] = {"x<y", "\xFF"};
    double v[] = {1, -2};
    sl_svg_hbars(f, "t&t", "u\"", labels, v, 2);
    fclose(f);
    CHECK(strstr(buf, "x&lt;y") && !strstr(buf, "x<y"));
    CHECK(strstr(buf, "t&amp;t") && strstr(buf, "u&quot;") && !strstr(buf, "\xFF"));
    free(buf);

    /* ranges within rounding of their values (two tracks of 2 s and the next
     * double, huge and tiny magnitudes) draw a finite number of ticks: a tick
     * step the values cannot resolve used to loop for ever */
    static const double xs[][2] = {{2.0, 0}, {1e15, 0}, {1e-300, 0}, {-7.5, 0}};
    for (int c = 0; c < 4; c++) {
        double x[2] = {xs[c][0], nextafter(xs[c][0], INFINITY)}, y[2] = {x[1], x[0]};
        const char *ids[] = {"a", "b"};
        buf = NULL;
        len = 0;
        f = open_memstream(&buf, &len);
        sl_svg_scatter(f, "s", "x", "y", x, y, ids, 2);
        fclose(f);
        size_t ticks = 0;
        for (const char *p = buf; (p = strstr(p, "class=\"tick\"")); p++)
            ticks++;
        CHECK_MSG(ticks >= 2 && ticks <= 64, "scatter of %g and the next double: %zu ticks", xs[c][0], ticks);
        free(buf);
    }

    /* throughput bins: 1000 tracks (every 7th failed) over 300 s of a fake clock */
    sl_config cfg;
    CHECK(sl_cfg_defaults(&cfg) == 0);
    sl_report *r = sl_report_new(&cfg, "0123456789abcdef", "cpu", "test", 0, 1);
    CHECK(r != NULL);
    double now = 0;
    sl_report_set_clock(r, clock_of, &now);
    const int N = 1000;
    double when[1000];
    for (int i = 0; i < N; i++) {
        now = when[i] = 300.0 * i / N + 0.05;
        if (i % 7)
            sl_report_ok(r, "t", "p", 1.5, 0, 0, 0, 0, NULL);
        else
            sl_report_fail(r, "t", "p", "bad", NULL);
    }
    sl_report_finish(r, 301.0, 0, NULL);
    const char *path = "report-bins.json";
    char full[4096];
    snprintf(full, sizeof full, "%s/%s", sl_test_tmpdir(), path);
    CHECK(sl_report_write(r, full) == 0);
    sl_report_free(r);
    FILE *jf = fopen(full, "rb");
    char *text = calloc(1, 1 << 22);
    size_t tlen = jf ? fread(text, 1, (1 << 22) - 1, jf) : 0;
    if (jf)
        fclose(jf);
    sl_json top;
    CHECK(sl_json_parse(text, tlen, &top) == 0);
    const sl_json *tp = sl_json_get(&top, "throughput");
    double w = sl_json_get_num(tp, "bin_seconds", 0);
    /* 0.1 s bins doubled until 128 of them hold 301 s: 0.1 * 32 = 3.2 s */
    CHECK_NEAR(w, 3.2, 1e-9);
    const sl_json *tr = sl_json_get(tp, "tracks"), *fa = sl_json_get(tp, "failed"), *au = sl_json_get(tp, "audio_seconds");
    size_t nb = sl_json_len(tr);
    CHECK(nb == (size_t)ceil(301.0 / 3.2) && sl_json_len(fa) == nb && sl_json_len(au) == nb);
    unsigned want_ok[128] = {0}, want_fail[128] = {0};
    for (int i = 0; i < N; i++)
        (i % 7 ? want_ok : want_fail)[(int)(when[i] / 3.2)]++;
    int bins_ok = 1;
    for (size_t b = 0; b < nb && b < 128; b++) {
        bins_ok &= sl_json_at(tr, b)->num == want_ok[b] && sl_json_at(fa, b)->num == want_fail[b];
        bins_ok &= fabs(sl_json_at(au, b)->num - 1.5 * want_ok[b]) < 1e-6;
    }
    CHECK_MSG(bins_ok, "a track is not in the bin of its time");
    sl_json_free(&top);
    free(text);
    sl_cfg_free(&cfg);
    return sl_test_finish("report_html");
}
