/* The strict JSON reader (common/sl_json.h): every kind of value, every escape,
 * the number grammar, nesting limits, duplicate keys, the errors and where they
 * point, truncation at every byte of a sample, and random bytes (the seed is
 * printed; SL_JSON_SEED=<n> replays a run, SL_JSON_ITERS=<n> changes its length). */
#include "common/sl_error.h"
#include "common/sl_json.h"
#include "tests/unit/sl_test.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Parses text (its strlen) from an exactly sized heap copy, so that the sanitizers
 * see any read past the end. */
static int parse_n(const char *text, size_t len, sl_json *v)
{
    char *copy = malloc(len ? len : 1);
    if (!copy)
        abort();
    memcpy(copy, text, len);
    int rc = sl_json_parse(copy, len, v);
    free(copy);
    return rc;
}

static int parse(const char *text, sl_json *v)
{
    return parse_n(text, strlen(text), v);
}

static int is_empty(const sl_json *v)
{
    return v->type == SL_JSON_NULL && !v->s && !v->items && !v->keys && v->n == 0 && v->b == 0;
}

/* Must be refused as malformed, with an empty result and a message saying where. */
static void bad_n(const char *text, size_t len, const char *why)
{
    sl_json v;
    sl_clearerr();
    int rc = parse_n(text, len, &v);
    CHECK_MSG(rc == SL_EFORMAT, "accepted (rc %d) %s: %.*s", rc, why, (int)len, text);
    CHECK_MSG(is_empty(&v), "not left empty after an error: %s", why);
    CHECK_MSG(strstr(sl_lasterr(), "byte offset") != NULL, "%s: message without a place: '%s'", why,
              sl_lasterr());
    sl_json_free(&v);
}

static void bad(const char *text, const char *why)
{
    bad_n(text, strlen(text), why);
}

/* Must be refused with a message containing want. */
static void bad_msg(const char *text, const char *want)
{
    sl_json v;
    int rc = parse(text, &v);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), want), "%s: rc %d, message '%s', wanted '%s'", text, rc,
              sl_lasterr(), want);
    sl_json_free(&v);
}

static double num_of(const char *text, int *ok)
{
    sl_json v;
    *ok = parse(text, &v) == 0 && v.type == SL_JSON_NUMBER;
    double d = v.num;
    sl_json_free(&v);
    return d;
}

static void good_num(const char *text, double want)
{
    int ok;
    double d = num_of(text, &ok);
    CHECK_MSG(ok && d == want && signbit(d) == signbit(want), "%s: got %.17g (ok %d), want %.17g: %s", text, d, ok,
              want, sl_lasterr());
}

/* The decoded string of a one-string document must be the bytes want. */
static void good_str(const char *text, const char *want)
{
    sl_json v;
    int rc = parse(text, &v);
    CHECK_MSG(rc == 0 && v.type == SL_JSON_STRING && v.s && !strcmp(v.s, want) && v.len == strlen(want),
              "%s: rc %d, got '%s': %s", text, rc, v.s ? v.s : "(none)", sl_lasterr());
    sl_json_free(&v);
}

/* ---- a writer for the round-trip property of the fuzz ---- */

typedef struct {
    char *b;
    size_t n, cap;
} sbuf;

static void put(sbuf *o, const char *s, size_t n)
{
    if (o->n + n + 1 > o->cap) {
        o->cap = (o->n + n + 1) * 2;
        o->b = realloc(o->b, o->cap);
        if (!o->b)
            abort();
    }
    memcpy(o->b + o->n, s, n);
    o->n += n;
    o->b[o->n] = 0;
}

static void put_str(sbuf *o, const char *s)
{
    put(o, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char e[8];
        if (*p < 0x20 || *p == '"' || *p == '\\') {
            snprintf(e, sizeof e, "\\u%04x", *p);
            put(o, e, 6);
        } else {
            put(o, (const char *)p, 1);
        }
    }
    put(o, "\"", 1);
}

static void write_json(sbuf *o, const sl_json *v)
{
    char num[40];
    switch (v->type) {
    case SL_JSON_NULL: put(o, "null", 4); break;
    case SL_JSON_BOOL: v->b ? put(o, "true", 4) : put(o, "false", 5); break;
    case SL_JSON_NUMBER:
        snprintf(num, sizeof num, "%.17g", v->num);
        put(o, num, strlen(num));
        break;
    case SL_JSON_STRING: put_str(o, v->s); break;
    case SL_JSON_ARRAY:
    case SL_JSON_OBJECT:
        put(o, v->type == SL_JSON_ARRAY ? "[" : "{", 1);
        for (size_t i = 0; i < v->n; i++) {
            if (i)
                put(o, ",", 1);
            if (v->type == SL_JSON_OBJECT) {
                put_str(o, v->keys[i]);
                put(o, ":", 1);
            }
            write_json(o, &v->items[i]);
        }
        put(o, v->type == SL_JSON_ARRAY ? "]" : "}", 1);
        break;
    }
}

/* ---- the tests ---- */

static void test_values(void)
{
    sl_json v;
    CHECK(parse("null", &v) == 0 && v.type == SL_JSON_NULL);
    sl_json_free(&v);
    CHECK(parse(" true ", &v) == 0 && v.type == SL_JSON_BOOL && v.b == 1);
    sl_json_free(&v);
    CHECK(parse("\t\r\nfalse\n", &v) == 0 && v.type == SL_JSON_BOOL && v.b == 0);
    sl_json_free(&v);
    CHECK(parse("42", &v) == 0 && v.type == SL_JSON_NUMBER && v.num == 42);
    sl_json_free(&v);
    CHECK(parse("\"\"", &v) == 0 && v.type == SL_JSON_STRING && v.s && v.s[0] == 0 && v.len == 0);
    sl_json_free(&v);
    CHECK(parse("[]", &v) == 0 && v.type == SL_JSON_ARRAY && v.n == 0 && sl_json_len(&v) == 0);
    sl_json_free(&v);
    CHECK(parse("{ }", &v) == 0 && v.type == SL_JSON_OBJECT && v.n == 0 && sl_json_get(&v, "a") == NULL);
    sl_json_free(&v);

    const char *doc = "{\"z\": 1, \"a\": [true, null, \"x\", 2.5, {\"k\": []}], \"m\": {\"n\": \"é\"}, \"b\": false}";
    CHECK(parse(doc, &v) == 0);
    CHECK(v.type == SL_JSON_OBJECT && v.n == 4 && sl_json_len(&v) == 4);
    if (v.n == 4) { /* key order is the document's */
        CHECK(!strcmp(v.keys[0], "z") && !strcmp(v.keys[1], "a") && !strcmp(v.keys[2], "m") &&
              !strcmp(v.keys[3], "b"));
        const sl_json *a = sl_json_get(&v, "a");
        CHECK(a && a->type == SL_JSON_ARRAY && sl_json_len(a) == 5);
        CHECK(sl_json_at(a, 0) && sl_json_at(a, 0)->type == SL_JSON_BOOL && sl_json_at(a, 0)->b);
        CHECK(sl_json_at(a, 1) && sl_json_at(a, 1)->type == SL_JSON_NULL);
        CHECK(sl_json_at(a, 2) && sl_json_at(a, 2)->type == SL_JSON_STRING && !strcmp(sl_json_at(a, 2)->s, "x"));
        CHECK(sl_json_at(a, 3) && sl_json_at(a, 3)->num == 2.5);
        CHECK(sl_json_len(sl_json_get(sl_json_at(a, 4), "k")) == 0);
        CHECK(sl_json_at(a, 5) == NULL && sl_json_at(sl_json_at(a, 0), 0) == NULL);
        CHECK(sl_json_at(&v, 3) == sl_json_get(&v, "b"));
        CHECK(!strcmp(sl_json_get_str(sl_json_get(&v, "m"), "n", ""), "é"));
        /* helpers: the member when it is of the kind asked, else the default */
        CHECK(sl_json_get_num(&v, "z", -1) == 1 && sl_json_get_num(&v, "a", -1) == -1);
        CHECK(sl_json_get_num(&v, "nope", 7) == 7 && sl_json_get_num(NULL, "z", 7) == 7);
        CHECK(sl_json_get_num(a, "z", 7) == 7); /* not an object */
        CHECK(sl_json_get_bool(&v, "b", 1) == 0 && sl_json_get_bool(&v, "z", 1) == 1);
        CHECK(!strcmp(sl_json_get_str(&v, "z", "def"), "def") && sl_json_get_str(&v, "q", NULL) == NULL);
        char *d = sl_json_dup_str(sl_json_get(&v, "m"), "n");
        CHECK(d && !strcmp(d, "é"));
        free(d);
        CHECK(sl_json_dup_str(&v, "z") == NULL && sl_json_dup_str(NULL, "z") == NULL);
        CHECK(sl_json_len(NULL) == 0 && sl_json_at(NULL, 0) == NULL && sl_json_get(&v, NULL) == NULL);
    }
    sl_json_free(&v);
    CHECK(is_empty(&v));
    sl_json_free(&v); /* freeing twice is harmless: free empties */
    sl_json_free(NULL);

    /* len bytes only: no NUL needed, nothing read past the end */
    CHECK(sl_json_parse("12345", 2, &v) == 0 && v.num == 12);
    sl_json_free(&v);
    CHECK(sl_json_parse("[1]garbage", 3, &v) == 0 && v.n == 1);
    sl_json_free(&v);
    bad_n("\"abc\"", 4, "a string cut before its quote");
    bad_n("truex", 3, "a literal cut short");
    CHECK(sl_json_parse(NULL, 0, &v) == SL_EFORMAT && is_empty(&v));
    CHECK(sl_json_parse(NULL, 3, &v) == SL_EINVAL && is_empty(&v));

    /* a wide array and object (growth) */
    sbuf o = {0};
    put(&o, "[", 1);
    for (int i = 0; i < 100000; i++) {
        char t[16];
        snprintf(t, sizeof t, "%s%d", i ? "," : "", i);
        put(&o, t, strlen(t));
    }
    put(&o, "]", 1);
    CHECK(parse(o.b, &v) == 0 && v.n == 100000 && sl_json_at(&v, 99999) && sl_json_at(&v, 99999)->num == 99999);
    sl_json_free(&v);
    o.n = 0;
    put(&o, "{", 1);
    for (int i = 0; i < 5000; i++) {
        char t[32];
        snprintf(t, sizeof t, "%s\"k%d\":%d", i ? "," : "", i, i);
        put(&o, t, strlen(t));
    }
    put(&o, "}", 1);
    CHECK(parse(o.b, &v) == 0 && v.n == 5000 && sl_json_get_num(&v, "k4321", -1) == 4321);
    sl_json_free(&v);
    free(o.b);
}

static void test_strings(void)
{
    good_str("\"plain\"", "plain");
    good_str("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", "\" \\ / \b \f \n \r \t");
    good_str("\"\\u0041\\u00e9\\u00E9\\u20AC\\uffff\"", "A\xc3\xa9\xc3\xa9\xe2\x82\xac\xef\xbf\xbf");
    good_str("\"\\u0001\\u001f\\u007f\\u0080\\u07ff\\u0800\"",
             "\x01\x1f\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80");
    /* surrogate pairs: one code point each */
    good_str("\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80");           /* U+1F600 */
    good_str("\"\\ud800\\udc00\"", "\xf0\x90\x80\x80");           /* U+10000 */
    good_str("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf");           /* U+10FFFF */
    good_str("\"a\\uD834\\uDD1Eb\"", "a\xf0\x9d\x84\x9e" "b");      /* U+1D11E */
    /* lone surrogates become U+FFFD; what follows is decoded on its own */
    good_str("\"\\uD800\"", "\xef\xbf\xbd");
    good_str("\"\\uDC00\"", "\xef\xbf\xbd");
    good_str("\"\\uD800x\"", "\xef\xbf\xbdx");
    good_str("\"\\uD800\\u0041\"", "\xef\xbf\xbd" "A");
    good_str("\"\\uD800\\uD800\\uDC00\"", "\xef\xbf\xbd\xf0\x90\x80\x80");
    good_str("\"\\uDE00\\uD83D\"", "\xef\xbf\xbd\xef\xbf\xbd");
    good_str("\"\\uD800\\n\"", "\xef\xbf\xbd\n");
    /* raw UTF-8 is copied; DEL is not a control character for JSON */
    good_str("\"h\xc3\xa9 \xf0\x9f\x8e\xb5 \x7f\"", "h\xc3\xa9 \xf0\x9f\x8e\xb5 \x7f");
    /* invalid UTF-8 is copied as it is (documented: neither former reader refused it) */
    good_str("\"\xff\xc3(\xed\xa0\x80\"", "\xff\xc3(\xed\xa0\x80");
    /* object keys are decoded like strings */
    sl_json v;
    CHECK(parse("{\"\\u0061\\n\": 1}", &v) == 0 && sl_json_get_num(&v, "a\n", 0) == 1);
    sl_json_free(&v);

    bad("\"\\x\"", "an unknown escape");
    bad("\"\\'\"", "an escaped single quote");
    bad("\"\\U0041\"", "\\U");
    bad("\"\\u12\"", "a short \\u");
    bad("\"\\u12G4\"", "a non-hex \\u");
    bad("\"\\u-123\"", "a signed \\u");
    bad("\"\\\"", "an escaped closing quote");
    bad("\"\\", "a backslash at the end");
    bad("\"abc", "an unterminated string");
    bad("'abc'", "single quotes");
    bad_msg("\"a\\u0000b\"", "\\u0000");
    bad_msg("{\"\\u0000\": 1}", "\\u0000");
    /* raw control characters, each of them */
    for (int c = 1; c < 0x20; c++) {
        char t[8] = {'"', 'a', (char)c, 'b', '"', 0};
        bad(t, "a raw control character");
    }
    bad_msg("\"a\tb\"", "raw control character 0x09");
    bad_n("\"a\0b\"", 5, "a NUL byte in a string");
    bad_n("[1,\0 2]", 7, "a NUL byte between values");
    bad("\"a\\\nb\"", "a backslash before a raw newline");
}

static void test_numbers(void)
{
    good_num("0", 0);
    good_num("-0", -0.0);
    good_num("-0.0", -0.0);
    good_num("0e5", 0);
    good_num("1", 1);
    good_num("-1", -1);
    good_num("1.5", 1.5);
    good_num("-12.25", -12.25);
    good_num("1e3", 1000);
    good_num("1E3", 1000);
    good_num("1e+3", 1000);
    good_num("1e-3", 0.001);
    good_num("0.5e1", 5);
    good_num("1.25E-2", 0.0125);
    good_num("1e0000", 1);
    good_num("123456789012345678901234567890", 123456789012345678901234567890.0);
    good_num("9007199254740993", 9007199254740992.0); /* nearest double */
    good_num("1.7976931348623157e308", DBL_MAX);
    good_num("-1.7976931348623157e308", -DBL_MAX);
    good_num("4.9406564584124654e-324", 4.9406564584124654e-324); /* the smallest subnormal */
    good_num("1e-400", 0);                                          /* underflow: zero */
    good_num("-1e-400", -0.0);
    /* a long mantissa (longer than the parser's small buffer) */
    char big[700] = "0.";
    memset(big + 2, '0', 600);
    strcpy(big + 602, "125e601");
    good_num(big, 1.25);
    char huge[400];
    memset(huge, '9', 320);
    huge[320] = 0;
    bad(huge, "320 nines (more than DBL_MAX)");
    bad("1e309", "an overflow");
    bad("-1e309", "a negative overflow");
    bad("1e99999999999999999999", "a huge exponent");
    bad_msg("01", "leading zero");
    bad_msg("-01", "leading zero");
    bad("00", "two zeros");
    bad("[01]", "a leading zero in an array");
    bad("1.", "no digit after the point");
    bad("1.e5", "no digit after the point, with an exponent");
    bad(".5", "no digit before the point");
    bad("-.5", "minus then point");
    bad("+1", "a plus sign");
    bad("-", "a lone minus");
    bad("--1", "two minus signs");
    bad("- 1", "a space after the minus");
    bad("1e", "no exponent digits");
    bad("1e+", "a signed exponent without digits");
    bad("1E-", "a signed exponent without digits");
    bad("0x10", "hex");
    bad("Infinity", "Infinity");
    bad("-Infinity", "-Infinity");
    bad("NaN", "NaN");
    bad("1 2", "two numbers");
    bad("1,5", "a decimal comma");
}

static void test_nesting(void)
{
    char doc[8 * SL_JSON_MAX_DEPTH + 64];
    sl_json v;
    for (int depth = SL_JSON_MAX_DEPTH - 1; depth <= SL_JSON_MAX_DEPTH + 1; depth++) {
        /* arrays: [[[...1...]]] */
        size_t n = 0;
        for (int i = 0; i < depth; i++)
            doc[n++] = '[';
        doc[n++] = '1';
        for (int i = 0; i < depth; i++)
            doc[n++] = ']';
        int rc = parse_n(doc, n, &v);
        if (depth <= SL_JSON_MAX_DEPTH) {
            CHECK_MSG(rc == 0, "arrays %d deep: %s", depth, sl_lasterr());
            const sl_json *x = &v;
            int seen = 0;
            while (x && x->type == SL_JSON_ARRAY) {
                seen++;
                x = sl_json_at(x, 0);
            }
            CHECK(seen == depth && x && x->num == 1);
        } else {
            CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "nested deeper"), "arrays %d deep: rc %d", depth, rc);
            /* the error points at the bracket that is one too many */
            char want[64];
            snprintf(want, sizeof want, "byte offset %d)", SL_JSON_MAX_DEPTH);
            CHECK_MSG(strstr(sl_lasterr(), want), "%s", sl_lasterr());
        }
        sl_json_free(&v);
        /* objects: {"a":{"a":...{}...}} */
        n = 0;
        for (int i = 0; i < depth; i++) {
            memcpy(doc + n, i + 1 < depth ? "{\"a\":" : "{", i + 1 < depth ? 5 : 1);
            n += i + 1 < depth ? 5 : 1;
        }
        for (int i = 0; i < depth; i++)
            doc[n++] = '}';
        rc = parse_n(doc, n, &v);
        CHECK_MSG(depth <= SL_JSON_MAX_DEPTH ? rc == 0 : rc == SL_EFORMAT, "objects %d deep: rc %d", depth, rc);
        sl_json_free(&v);
    }
    /* far past the limit, closed or not: refused without recursing that far */
    size_t n = 1000000;
    char *deep = malloc(2 * n);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    CHECK(parse_n(deep, 2 * n, &v) == SL_EFORMAT && is_empty(&v));
    CHECK(parse_n(deep, n, &v) == SL_EFORMAT && is_empty(&v));
    for (size_t i = 0; i < n; i += 2)
        memcpy(deep + i, "{[", 2); /* mixed, and a key is missing anyway */
    CHECK(parse_n(deep, n, &v) == SL_EFORMAT);
    free(deep);
    /* depth counts nesting, not the number of containers */
    CHECK(parse("[[[[]]],[[[]]],{\"a\":[[]]}]", &v) == 0 && v.n == 3);
    sl_json_free(&v);
}

static void test_objects(void)
{
    sl_json v;
    /* duplicate keys: both are kept in order; lookups return the last */
    CHECK(parse("{\"a\": 1, \"b\": 2, \"a\": 3}", &v) == 0 && v.n == 3);
    CHECK(sl_json_get_num(&v, "a", 0) == 3 && sl_json_get_num(&v, "b", 0) == 2);
    CHECK(v.n == 3 && !strcmp(v.keys[0], "a") && v.items[0].num == 1 && !strcmp(v.keys[2], "a"));
    sl_json_free(&v);
    CHECK(parse("{\"a\": \"x\", \"a\": 5}", &v) == 0);
    CHECK(sl_json_get_str(&v, "a", NULL) == NULL && sl_json_get_num(&v, "a", 0) == 5); /* the last, whatever its kind */
    sl_json_free(&v);
    CHECK(parse("{\"\": 1}", &v) == 0 && sl_json_get_num(&v, "", 0) == 1); /* the empty key */
    sl_json_free(&v);

    bad_msg("[1,]", "trailing comma before ']'");
    bad_msg("{\"a\": 1,}", "trailing comma before '}'");
    bad("[1, ]", "a trailing comma and a space");
    bad("[,]", "a lone comma");
    bad("{,}", "a lone comma in an object");
    bad("[1,,2]", "two commas");
    bad("[1 2]", "a missing comma");
    bad("{\"a\" 1}", "a missing colon");
    bad("{\"a\": }", "a missing value");
    bad("{\"a\"}", "a key without value");
    bad("{a: 1}", "an unquoted key");
    bad("{1: 1}", "a number key");
    bad("{\"a\": 1 \"b\": 2}", "a missing comma between members");
    bad("[1}", "a mismatched bracket");
    bad("{\"a\": 1]", "a mismatched brace");
    bad("[", "an open array");
    bad("{", "an open object");
    bad("]", "a lone close");
    bad("{\"a\": 1} // c", "a comment");
    bad("/* c */ 1", "a comment first");
}

static void test_errors(void)
{
    bad("", "an empty text");
    bad(" \n\t\r ", "only white space");
    bad("\xEF\xBB\xBF{}", "a byte-order mark");
    bad_msg("\xEF\xBB\xBF{}", "byte-order mark");
    bad("{} x", "trailing garbage");
    bad("[1] [2]", "two values");
    bad("{}}", "an extra brace");
    bad("null null", "two literals");
    bad("\f1", "a form feed as white space");
    bad("\xc2\xa0" "1", "a no-break space as white space");
    bad("tru", "a truncated literal");
    bad("nul", "a truncated literal");
    bad("True", "a capitalised literal");
    bad("nulll", "a literal with an extra letter");
    bad("undefined", "undefined");
    /* where: line, column (bytes, from 1) and byte offset (from 0) */
    bad_msg("{\n  \"a\": tru\n}", "line 2, column 8 (byte offset 9)");
    bad_msg("[1,\n2,\n3 x]", "line 3, column 3 (byte offset 9)");
    bad_msg("{\"a\": \"b", "unterminated string starting at line 1, column 7 (byte offset 6)");
    bad_msg("[1, 2", "at line 1, column 6 (byte offset 5)");
    bad_msg("{} x", "unexpected 'x' after the JSON value");
    bad_msg("[1,\x01]", "byte 0x01");
    bad_msg("", "empty");
}

/* A sample with every kind of value: every proper prefix must fail cleanly. */
static const char sample[] =
    "{\"format\": \"stemline-vector-index\", \"format_version\": 1, \"dim\": 128,\n"
    " \"normalize\": true, \"weights\": null, \"ratio\": -0.25e-3, \"zero\": 0,\n"
    " \"options\": {\"n_mels\": \"64\", \"name\": \"caf\\u00e9 \\uD83C\\uDFB5 \\\"q\\\" \\\\ \\/\\b\\f\\n\\r\\t\"},\n"
    " \"list\": [1, 2.5, false, [], {}, [[\"x\"]], \"\xc3\xa9\"]}\n";

static void test_truncation(void)
{
    size_t len = strlen(sample);
    sl_json v;
    CHECK_MSG(parse_n(sample, len, &v) == 0, "the sample: %s", sl_lasterr());
    CHECK(sl_json_get_num(&v, "dim", 0) == 128 && sl_json_len(sl_json_get(&v, "list")) == 7);
    CHECK(!strcmp(sl_json_get_str(sl_json_get(&v, "options"), "name", ""),
                  "caf\xc3\xa9 \xf0\x9f\x8e\xb5 \"q\" \\ /\b\f\n\r\t"));
    sl_json_free(&v);
    size_t last_ws = len; /* the sample ends in white space, which may be cut */
    while (last_ws > 0 && sample[last_ws - 1] == '\n')
        last_ws--;
    for (size_t k = 0; k < last_ws; k++) {
        char why[64];
        snprintf(why, sizeof why, "the sample cut to %zu bytes", k);
        bad_n(sample, k, why);
    }
    for (size_t k = last_ws; k <= len; k++) {
        CHECK_MSG(parse_n(sample, k, &v) == 0, "cut to %zu bytes", k);
        sl_json_free(&v);
    }
}

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

/* Parse, and when it parses: the DOM is sane and writing it out and reading it
 * back gives the same text again. */
static void fuzz_one(const char *buf, size_t n, uint64_t iter, uint64_t seed)
{
    sl_json v;
    int rc = parse_n(buf, n, &v);
    CHECK_MSG(rc == 0 || rc == SL_EFORMAT, "iteration %" PRIu64 " (seed %" PRIu64 "): rc %d", iter, seed, rc);
    if (rc) {
        CHECK_MSG(is_empty(&v), "iteration %" PRIu64 " (seed %" PRIu64 "): not empty after an error", iter, seed);
        return;
    }
    sbuf a = {0}, b = {0};
    write_json(&a, &v);
    sl_json w;
    int rc2 = parse_n(a.b, a.n, &w);
    if (!rc2)
        write_json(&b, &w);
    CHECK_MSG(rc2 == 0 && a.n == b.n && !memcmp(a.b, b.b, a.n),
              "iteration %" PRIu64 " (seed %" PRIu64 "): round trip differs: %s vs %s", iter, seed, a.b,
              b.b ? b.b : sl_lasterr());
    sl_json_free(&w);
    sl_json_free(&v);
    free(a.b);
    free(b.b);
}

static void test_fuzz(void)
{
    const char *es = getenv("SL_JSON_SEED"), *ei = getenv("SL_JSON_ITERS");
    uint64_t seed = es && *es ? strtoull(es, NULL, 10) : (uint64_t)time(NULL);
    uint64_t iters = ei && *ei ? strtoull(ei, NULL, 10) : 200000;
    printf("json fuzz: seed %" PRIu64 ", %" PRIu64 " iterations (SL_JSON_SEED=%" PRIu64 " replays it)\n", seed,
           iters, seed);
    rng_state = seed * 2654435761u + 0x9E3779B97F4A7C15ULL;
    if (!rng_state)
        rng_state = 1;
    static const char alpha[] = "{}[]\",:\\/ \n\t0123456789-+.eEtrufalsn"
                                "u\x01\x1f\x7f\x80\xc3\xa9\xed\xff";
    size_t slen = strlen(sample);
    char buf[512];
    uint64_t parsed = 0;
    for (uint64_t it = 0; it < iters; it++) {
        size_t n;
        uint64_t mode = rnd() % 4;
        if (mode == 0) { /* uniform random bytes */
            n = rnd() % 64;
            for (size_t i = 0; i < n; i++)
                buf[i] = (char)rnd();
        } else if (mode == 1) { /* bytes from the JSON alphabet */
            n = rnd() % 64;
            for (size_t i = 0; i < n; i++)
                buf[i] = alpha[rnd() % (sizeof alpha - 1)];
        } else { /* the sample with a few bytes changed, inserted or cut */
            n = slen;
            memcpy(buf, sample, n);
            int edits = 1 + (int)(rnd() % 4);
            for (int e = 0; e < edits && n > 1; e++) {
                size_t at = rnd() % n;
                uint64_t how = rnd() % 3;
                char c = rnd() % 2 ? alpha[rnd() % (sizeof alpha - 1)] : (char)rnd();
                if (how == 0) {
                    buf[at] = c;
                } else if (how == 1 && n < sizeof buf) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = c;
                    n++;
                } else {
                    memmove(buf + at, buf + at + 1, n - at - 1);
                    n--;
                }
            }
        }
        int before = sl_test_failures;
        fuzz_one(buf, n, it, seed);
        if (sl_test_failures != before) {
            fprintf(stderr, "json fuzz: failing input (%zu bytes):", n);
            for (size_t i = 0; i < n; i++)
                fprintf(stderr, " %02x", (unsigned char)buf[i]);
            fputc('\n', stderr);
            break;
        }
        sl_json v;
        if (parse_n(buf, n, &v) == 0)
            parsed++;
        sl_json_free(&v);
    }
    printf("json fuzz: %" PRIu64 " of %" PRIu64 " inputs parsed\n", parsed, iters);
    CHECK(parsed > 0);
}

/* sl_json_fmt_num: shortest round-trip text, always a float, null when not finite. */
static void test_fmt_num(void)
{
    static const struct {
        double x;
        const char *want;
    } cases[] = {{0.0, "0.0"}, {1.0, "1.0"}, {-2.5, "-2.5"}, {0.1, "0.1"}, {1e300, "1e+300"},
                 {12.5, "12.5"}, {1.0 / 3.0, "0.3333333333333333"}, {123456789012.0, "123456789012.0"}};
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_json_fmt_num(buf, sizeof buf, cases[i].x);
        CHECK_MSG(!strcmp(buf, cases[i].want), "%.17g: '%s', want '%s'", cases[i].x, buf, cases[i].want);
        CHECK(strtod(buf, NULL) == cases[i].x);
    }
    sl_json_fmt_num(buf, sizeof buf, NAN);
    CHECK(!strcmp(buf, "null"));
    sl_json_fmt_num(buf, sizeof buf, -INFINITY);
    CHECK(!strcmp(buf, "null"));
}

int main(void)
{
    test_values();
    test_strings();
    test_numbers();
    test_nesting();
    test_objects();
    test_errors();
    test_truncation();
    test_fuzz();
    test_fmt_num();
    return sl_test_finish("json");
}
