/* The strict JSON reader of sl_json.h: a recursive descent over a bounded
 * buffer. Every error goes through one function that turns a pointer into the
 * text into "line, column, byte offset", so each message says where. */
#include "sl_json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sl_error.h"

typedef struct {
    const char *start, *p, *end;
    int depth;
} parser;

/* Reports what is wrong at `at` (a pointer into the text, end included). */
static int perr(const parser *j, const char *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(const parser *j, const char *at, const char *fmt, ...)
{
    char what[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    size_t line = 1;
    const char *bol = j->start;
    for (const char *q = j->start; q < at; q++)
        if (*q == '\n') {
            line++;
            bol = q + 1;
        }
    return sl_seterr(SL_EFORMAT, "%s at line %zu, column %zu (byte offset %zu)", what, line, (size_t)(at - bol) + 1,
                     (size_t)(at - j->start));
}

static int nomem(void)
{
    return sl_seterr(SL_ENOMEM, "JSON: out of memory");
}

/* "'x'" for a visible ASCII character, else "byte 0xNN", else "the end". */
static const char *show(const parser *j, const char *at, char buf[16])
{
    if (at >= j->end)
        return "the end of the text";
    unsigned char c = (unsigned char)*at;
    if (c > 0x20 && c < 0x7f)
        snprintf(buf, 16, "'%c'", c);
    else
        snprintf(buf, 16, "byte 0x%02x", c);
    return buf;
}

static void ws(parser *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static int is_digit(const parser *j, const char *p)
{
    return p < j->end && *p >= '0' && *p <= '9';
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Four hex digits at p, all before lim; -1 when not. */
static int hex4(const char *p, const char *lim, unsigned *out)
{
    if (lim - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
                     : c >= 'A' && c <= 'F' ? (unsigned)(c - 'A' + 10)
                                            : 16u;
        if (d > 15)
            return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/* At the opening quote: a malloc'd decoded copy in *out. The first pass finds
 * the closing quote and refuses raw control characters; the decoded string is
 * never longer than its source (the longest gain, \uXXXX -> 3 bytes, shrinks). */
static int parse_string(parser *j, char **out, size_t *out_len)
{
    char b[16];
    const char *open = j->p, *q = open + 1;
    while (q < j->end && *q != '"') {
        if ((unsigned char)*q < 0x20)
            return perr(j, q, "raw control character 0x%02x in a string (it must be escaped)", (unsigned char)*q);
        if (*q == '\\')
            q++;
        q++;
    }
    if (q >= j->end)
        return perr(j, open, "unterminated string starting");
    char *s = malloc((size_t)(q - open)), *o = s;
    if (!s)
        return nomem();
    const char *p = open + 1;
    while (p < q) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        const char *esc = p++; /* p < q: the scan above never stops right after a backslash */
        switch (*p++) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp, lo;
            if (hex4(p, q, &cp)) {
                free(s);
                return perr(j, esc, "invalid \\u escape (it needs 4 hex digits)");
            }
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && q - p >= 6 && p[0] == '\\' && p[1] == 'u' && !hex4(p + 2, q, &lo) &&
                lo >= 0xDC00 && lo < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            } else if (cp >= 0xD800 && cp < 0xE000) {
                cp = 0xFFFD; /* a lone surrogate; what follows is decoded on its own */
            }
            if (cp == 0) {
                free(s);
                return perr(j, esc, "\\u0000 in a string is not supported (strings end at NUL)");
            }
            o += put_utf8(o, cp);
            break;
        }
        default:
            free(s);
            return perr(j, esc, "invalid escape: backslash followed by %s", show(j, esc + 1, b));
        }
    }
    *o = 0;
    if (out_len)
        *out_len = (size_t)(o - s);
    *out = s;
    j->p = q + 1;
    return 0;
}

/* The RFC grammar is checked here; strtod only converts the checked token. */
static int parse_number(parser *j, sl_json *v)
{
    char b[16];
    const char *s = j->p, *p = s;
    if (*p == '-')
        p++;
    if (!is_digit(j, p))
        return perr(j, p, "expected a digit after '-', found %s", show(j, p, b));
    if (*p == '0') {
        p++;
        if (is_digit(j, p))
            return perr(j, s, "leading zero in a number");
    } else {
        while (is_digit(j, p))
            p++;
    }
    if (p < j->end && *p == '.') {
        p++;
        if (!is_digit(j, p))
            return perr(j, p, "expected a digit after the decimal point, found %s", show(j, p, b));
        while (is_digit(j, p))
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(j, p))
            return perr(j, p, "expected a digit in the exponent, found %s", show(j, p, b));
        while (is_digit(j, p))
            p++;
    }
    size_t n = (size_t)(p - s);
    char small[64], *tok = n < sizeof small ? small : malloc(n + 1);
    if (!tok)
        return nomem();
    memcpy(tok, s, n);
    tok[n] = 0;
    char *end;
    double d = strtod(tok, &end);
    int whole = end == tok + n;
    if (tok != small)
        free(tok);
    if (!whole) /* only if someone set a locale whose decimal point is not '.' */
        return perr(j, s, "number not readable by strtod in this locale");
    if (isinf(d))
        return perr(j, s, "number out of the range of a double");
    v->type = SL_JSON_NUMBER;
    v->num = d;
    j->p = p;
    return 0;
}

static int parse_literal(parser *j, sl_json *v, const char *word, sl_json_type t, int b)
{
    size_t n = strlen(word), left = (size_t)(j->end - j->p);
    if (left < n || memcmp(j->p, word, n)) {
        if (left < n && !memcmp(j->p, word, left))
            return perr(j, j->end, "unexpected end of the text inside '%s'", word);
        return perr(j, j->p, "invalid literal (expected true, false or null)");
    }
    v->type = t;
    v->b = b;
    j->p += n;
    return 0;
}

static int parse_value(parser *j, sl_json *v);

static int parse_container(parser *j, sl_json *v, int obj)
{
    char b[16];
    const char close = obj ? '}' : ']';
    const char *what = obj ? "an object member" : "an array item";
    if (++j->depth > SL_JSON_MAX_DEPTH)
        return perr(j, j->p, "arrays and objects nested deeper than %d levels", SL_JSON_MAX_DEPTH);
    v->type = obj ? SL_JSON_OBJECT : SL_JSON_ARRAY;
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        j->depth--;
        return 0;
    }
    size_t cap = 0;
    for (;;) {
        if (v->n == cap) {
            size_t nc = cap ? 2 * cap : 4;
            sl_json *ni = realloc(v->items, nc * sizeof *ni);
            if (!ni)
                return nomem();
            v->items = ni;
            if (obj) {
                char **nk = realloc(v->keys, nc * sizeof *nk);
                if (!nk)
                    return nomem();
                v->keys = nk;
            }
            cap = nc;
        }
        /* Counted before it is filled, so that sl_json_free frees a partial one. */
        sl_json *kid = &v->items[v->n];
        memset(kid, 0, sizeof *kid);
        if (obj)
            v->keys[v->n] = NULL;
        v->n++;
        ws(j);
        if (j->p < j->end && *j->p == close) /* only after a comma: the empty case is above */
            return perr(j, j->p, "trailing comma before '%c'", close);
        if (obj) {
            if (j->p >= j->end || *j->p != '"')
                return perr(j, j->p, "expected a string key, found %s", show(j, j->p, b));
            int rc = parse_string(j, &v->keys[v->n - 1], NULL);
            if (rc)
                return rc;
            ws(j);
            if (j->p >= j->end || *j->p != ':')
                return perr(j, j->p, "expected ':' after an object key, found %s", show(j, j->p, b));
            j->p++;
        }
        int rc = parse_value(j, kid);
        if (rc)
            return rc;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            break;
        }
        return perr(j, j->p, "expected ',' or '%c' after %s, found %s", close, what, show(j, j->p, b));
    }
    j->depth--;
    return 0;
}

static int parse_value(parser *j, sl_json *v)
{
    char b[16];
    ws(j);
    if (j->p >= j->end)
        return perr(j, j->p, "unexpected end of the text (expected a value)");
    switch (*j->p) {
    case '{': return parse_container(j, v, 1);
    case '[': return parse_container(j, v, 0);
    case '"': v->type = SL_JSON_STRING; return parse_string(j, &v->s, &v->len);
    case 't': return parse_literal(j, v, "true", SL_JSON_BOOL, 1);
    case 'f': return parse_literal(j, v, "false", SL_JSON_BOOL, 0);
    case 'n': return parse_literal(j, v, "null", SL_JSON_NULL, 0);
    default:
        if (*j->p == '-' || is_digit(j, j->p))
            return parse_number(j, v);
        return perr(j, j->p, "expected a value, found %s", show(j, j->p, b));
    }
}

int sl_json_parse(const char *text, size_t len, sl_json *out)
{
    memset(out, 0, sizeof *out);
    if (!text && len)
        return sl_seterr(SL_EINVAL, "JSON: no text");
    if (!text)
        text = "";
    parser j = {text, text, text + len, 0};
    int rc;
    ws(&j);
    if (len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3))
        rc = perr(&j, text, "a byte-order mark is not allowed");
    else if (j.p >= j.end)
        rc = perr(&j, j.p, "no JSON value in the text (empty or only white space)");
    else
        rc = parse_value(&j, out);
    if (!rc) {
        char b[16];
        ws(&j);
        if (j.p < j.end)
            rc = perr(&j, j.p, "unexpected %s after the JSON value", show(&j, j.p, b));
    }
    if (rc)
        sl_json_free(out);
    return rc;
}

void sl_json_free(sl_json *v)
{
    if (!v)
        return;
    free(v->s);
    for (size_t i = 0; i < v->n; i++) {
        if (v->keys)
            free(v->keys[i]);
        sl_json_free(&v->items[i]);
    }
    free(v->keys);
    free(v->items);
    memset(v, 0, sizeof *v);
}

const sl_json *sl_json_get(const sl_json *obj, const char *key)
{
    if (!obj || obj->type != SL_JSON_OBJECT || !key)
        return NULL;
    for (size_t i = obj->n; i-- > 0;) /* from the end: the last of repeated keys wins */
        if (!strcmp(obj->keys[i], key))
            return &obj->items[i];
    return NULL;
}

double sl_json_get_num(const sl_json *obj, const char *key, double def)
{
    const sl_json *v = sl_json_get(obj, key);
    return v && v->type == SL_JSON_NUMBER ? v->num : def;
}

const char *sl_json_get_str(const sl_json *obj, const char *key, const char *def)
{
    const sl_json *v = sl_json_get(obj, key);
    return v && v->type == SL_JSON_STRING ? v->s : def;
}

int sl_json_get_bool(const sl_json *obj, const char *key, int def)
{
    const sl_json *v = sl_json_get(obj, key);
    return v && v->type == SL_JSON_BOOL ? v->b : def;
}

char *sl_json_dup_str(const sl_json *obj, const char *key)
{
    const char *s = sl_json_get_str(obj, key, NULL);
    return s ? strdup(s) : NULL;
}

size_t sl_json_len(const sl_json *v)
{
    return v && (v->type == SL_JSON_ARRAY || v->type == SL_JSON_OBJECT) ? v->n : 0;
}

const sl_json *sl_json_at(const sl_json *v, size_t i)
{
    return i < sl_json_len(v) ? &v->items[i] : NULL;
}

void sl_json_fmt_num(char *out, size_t cap, double x)
{
    if (!isfinite(x)) {
        snprintf(out, cap, "null");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, x);
        for (char *p = out; *p; p++)
            if (*p == ',') /* a decimal comma from the locale */
                *p = '.';
        if (strtod(out, NULL) == x)
            break;
    }
    if (!strpbrk(out, ".eEn"))
        strncat(out, ".0", cap - strlen(out) - 1);
}
