/* HTML escaping of the report page (pipeline/report_html.h): the five special
 * characters, valid UTF-8 kept, invalid UTF-8 (bad lead and continuation
 * bytes, overlong forms, surrogates, past U+10FFFF, cut sequences) and control
 * characters replaced by U+FFFD; and a bar chart keeps its labels escaped. */
#include "pipeline/report_html.h"
#include "tests/unit/sl_test.h"

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
    return sl_test_finish("report_html");
}
