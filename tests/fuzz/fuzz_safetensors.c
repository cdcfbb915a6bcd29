/* Fuzz target for the safetensors reader (io/safetensors.c).
 *
 * Three ways in:
 *  - libFuzzer: `make fuzz` compiles this file with clang -fsanitize=fuzzer,address
 *    and runs it for a bounded time on a seed corpus (no define needed).
 *  - seed writer: compiled with -DSL_FUZZ_SEED_MAIN, `fuzz_seeds DIR` writes the
 *    valid and adversarial cases below as the starting corpus.
 *  - ctest: tests/unit/test_fuzz_safetensors.c includes this file and runs the
 *    entry function over every case of sl_fuzz_st_cases() (truncations, bit
 *    flips, random bytes, adversarial headers) on every commit, no libFuzzer needed.
 *
 * The entry function opens the input as a buffer and, when the reader accepts
 * it, touches every byte of every tensor it hands out and checks that each
 * lies inside the input: a reader bug shows up as an ASan report or an abort. */
#include "io/safetensors.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile unsigned sl_fuzz_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_st_file *f = NULL;
    if (sl_st_open_buffer(&f, data, size, "fuzz") != 0)
        return 0;
    unsigned acc = 0;
    for (size_t i = 0; i < sl_st_count(f); i++) {
        const sl_st_tensor *t = sl_st_at(f, i);
        const uint8_t *p = t->data;
        if (!t->name || p < data || p > data + size || t->nbytes > (size_t)(data + size - p))
            abort(); /* a tensor outside the input: the reader is broken */
        if ((uint64_t)t->nbytes != sl_st_numel(t) * sl_st_dtype_size(t->dtype))
            abort();
        for (size_t k = 0; k < t->nbytes; k++)
            acc += p[k];
        if (sl_st_find(f, t->name) != t)
            abort();
        sl_st_require_f32(f, t->name, -1, NULL);
        char shape[64];
        sl_st_format_shape(t, shape, sizeof shape);
        acc += (unsigned)strlen(shape);
    }
    for (size_t i = 0; i < sl_st_meta_count(f); i++) {
        const char *k = sl_st_meta_key(f, i), *v = sl_st_meta_value(f, i);
        if (!k || !v || sl_st_meta(f, k) != v)
            abort();
        acc += (unsigned)strlen(v);
    }
    sl_fuzz_sink = acc;
    sl_st_close(f);
    return 0;
}

/* ---- the fixed set of cases (seed corpus and ctest) ---- */

enum { FZ_ANY = -1, FZ_FAIL = 0, FZ_OK = 1 };
typedef void (*sl_fuzz_case_fn)(const uint8_t *buf, size_t len, const char *label, int expect, void *ctx);

/* 8-byte little-endian header length (hlen, or strlen(json) when hlen == UINT64_MAX
 * is not wanted: pass use_len=1), the JSON, then dlen data bytes (a ramp). */
static uint8_t *fz_build(const char *json, size_t json_len, uint64_t hlen, size_t dlen, size_t *out_len)
{
    size_t len = 8 + json_len + dlen;
    uint8_t *b = malloc(len ? len : 1);
    if (!b)
        abort();
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b + 8, json, json_len);
    for (size_t i = 0; i < dlen; i++)
        b[8 + json_len + i] = (uint8_t)(i * 7 + 1);
    *out_len = len;
    return b;
}

static void fz_emit(sl_fuzz_case_fn cb, void *ctx, const char *json, size_t dlen, const char *label, int expect)
{
    size_t len;
    uint8_t *b = fz_build(json, strlen(json), strlen(json), dlen, &len);
    cb(b, len, label, expect, ctx);
    free(b);
}

static uint64_t fz_rng(uint64_t *s)
{
    /* xorshift64*: deterministic, so the ctest cases are the same every run */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static const char fz_valid1[] =
    "{\"__metadata__\":{\"stemline.arch\":\"umx\",\"hidden_size\":\"512\"},"
    "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[24,32]}}    ";
static const char fz_valid2[] =
    "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
    "\"z\":{\"dtype\":\"I32\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
    "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[8,16]},"
    "\"bf\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,1,1,1,1,2],\"data_offsets\":[16,20]},"
    "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[20,23]},"
    "\"\\u00e9\\ud83c\\udfb5\\n\\\"x\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[23,24]},"
    "\"__metadata__\":{\"k\\u00e9y\":\"v\\t\\\\\\/\",\"empty\":\"\"}}";

/* Calls cb once per case; returns how many. */
__attribute__((unused)) /* not called in the libFuzzer build */
static size_t sl_fuzz_st_cases(sl_fuzz_case_fn cb, void *ctx)
{
    size_t n = 0;
#define EMIT(json, dlen, label, expect) (fz_emit(cb, ctx, json, dlen, label, expect), n++)
    /* valid files */
    EMIT(fz_valid1, 32, "valid: two tensors + metadata", FZ_OK);
    EMIT(fz_valid2, 24, "valid: every dtype, scalar, empty tensor, escapes", FZ_OK);
    EMIT("{}", 0, "valid: empty header", FZ_OK);
    EMIT("{}      ", 0, "valid: empty header padded", FZ_OK);
    EMIT(" \n{\"__metadata__\":{}}\t", 0, "valid: only metadata", FZ_OK);
    EMIT("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "valid: empty name", FZ_OK);

    /* every truncation and one extra byte of the valid files */
    {
        size_t len;
        uint8_t *b = fz_build(fz_valid1, strlen(fz_valid1), strlen(fz_valid1), 32, &len);
        for (size_t cut = 0; cut < len; cut++, n++) {
            uint8_t *c = malloc(cut ? cut : 1);
            memcpy(c, b, cut);
            cb(c, cut, "truncated", FZ_FAIL, ctx);
            free(c);
        }
        uint8_t *c = malloc(len + 1);
        memcpy(c, b, len);
        c[len] = 0;
        cb(c, len + 1, "one trailing byte", FZ_FAIL, ctx);
        free(c);
        n++;
        /* every single-bit flip: anything may happen, nothing may crash */
        for (size_t i = 0; i < len; i++)
            for (int bit = 0; bit < 8; bit++, n++) {
                b[i] ^= (uint8_t)(1u << bit);
                cb(b, len, "bit flip", FZ_ANY, ctx);
                b[i] ^= (uint8_t)(1u << bit);
            }
        free(b);
        b = fz_build(fz_valid2, strlen(fz_valid2), strlen(fz_valid2), 24, &len);
        for (size_t i = 0; i < len; i++, n++) {
            b[i] ^= 0x80;
            cb(b, len, "high-bit flip", FZ_ANY, ctx);
            b[i] ^= 0x80;
        }
        for (size_t cut = 0; cut < len; cut++, n++)
            cb(b, cut, "truncated (in place)", FZ_FAIL, ctx);
        free(b);
    }

    /* random bytes, and random bytes behind a plausible header length */
    {
        uint64_t s = 0x5EED5EEDULL;
        for (int k = 0; k < 600; k++, n++) {
            size_t len = (size_t)(fz_rng(&s) % 600);
            uint8_t *b = malloc(len ? len : 1);
            for (size_t i = 0; i < len; i++)
                b[i] = (uint8_t)fz_rng(&s);
            if (k % 2 && len >= 8) {
                uint64_t h = fz_rng(&s) % (len - 7);
                for (int i = 0; i < 8; i++)
                    b[i] = (uint8_t)(h >> (8 * i));
                if (len > 8 && k % 4 == 1)
                    b[8] = '{';
            }
            cb(b, len, "random bytes", FZ_ANY, ctx);
            free(b);
        }
        /* random splices of JSON tokens: exercises the parser's states */
        static const char *const tok[] = {"{", "}", "[", "]", ",", ":", "\"a\"", "\"dtype\"", "\"F32\"",
                                          "\"shape\"", "\"data_offsets\"", "0", "4", "-1", "1e3", "\"__metadata__\"",
                                          "\"\\u", "\\", "\"", " ", "null", "true", "\"\\ud800\""};
        for (int k = 0; k < 600; k++, n++) {
            char js[256];
            size_t o = 0;
            int ntok = 1 + (int)(fz_rng(&s) % 24);
            for (int i = 0; i < ntok; i++) {
                const char *t = tok[fz_rng(&s) % (sizeof tok / sizeof tok[0])];
                size_t tl = strlen(t);
                if (o + tl >= sizeof js)
                    break;
                memcpy(js + o, t, tl);
                o += tl;
            }
            js[o] = 0;
            fz_emit(cb, ctx, js, (size_t)(fz_rng(&s) % 16), "token soup", FZ_ANY);
        }
    }

    /* adversarial header lengths */
    {
        static const uint64_t hl[] = {UINT64_MAX, 1ULL << 63, 100000001ULL, 0, 1, 33};
        for (size_t k = 0; k < sizeof hl / sizeof hl[0]; k++, n++) {
            size_t len;
            uint8_t *b = fz_build("{}", 2, hl[k], 0, &len);
            cb(b, len, "bad header length", FZ_FAIL, ctx);
            free(b);
        }
        /* a header length just past the end, and one that leaves the JSON cut */
        size_t len;
        uint8_t *b = fz_build(fz_valid1, strlen(fz_valid1), strlen(fz_valid1) + 33, 32, &len);
        cb(b, len, "header length past the end", FZ_FAIL, ctx);
        free(b);
        b = fz_build(fz_valid1, strlen(fz_valid1), strlen(fz_valid1) - 10, 32, &len);
        cb(b, len, "header length cuts the JSON", FZ_FAIL, ctx);
        free(b);
        n += 2;
    }

    /* adversarial headers, each must be rejected */
#define T1(off, shape, dt) "{\"t\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}}"
    EMIT(T1("[-4,0]", "[1]", "F32"), 4, "negative offset", FZ_FAIL);
    EMIT(T1("[0,-4]", "[1]", "F32"), 4, "negative end", FZ_FAIL);
    EMIT(T1("[4,0]", "[1]", "F32"), 4, "end before begin", FZ_FAIL);
    EMIT(T1("[0,4]", "[2]", "F32"), 4, "shape/offset mismatch", FZ_FAIL);
    EMIT(T1("[0,8]", "[1]", "F32"), 8, "shape/offset mismatch (large range)", FZ_FAIL);
    EMIT(T1("[0,4]", "[1]", "F32"), 2, "offsets past the data", FZ_FAIL);
    EMIT(T1("[0,4]", "[1]", "F32"), 6, "trailing data", FZ_FAIL);
    EMIT(T1("[4,8]", "[1]", "F32"), 8, "gap before a tensor", FZ_FAIL);
    EMIT(T1("[18446744073709551612,0]", "[1]", "F32"), 4, "offset near 2^64", FZ_FAIL);
    EMIT(T1("[0,18446744073709551616]", "[1]", "F32"), 4, "offset over 2^64", FZ_FAIL);
    EMIT(T1("[0,0]", "[4294967296,4294967296,16]", "F32"), 0, "shape product overflow", FZ_FAIL);
    EMIT(T1("[0,0]", "[4611686018427387904,0]", "F32"), 0, "dimension * size overflow, zero dim", FZ_OK);
    EMIT(T1("[0,0]", "[9223372036854775808,0]", "F32"), 0, "dimension over INT64_MAX", FZ_FAIL);
    EMIT(T1("[0,0]", "[4611686018427387904]", "F32"), 0, "elements * dtype size overflow", FZ_FAIL);
    EMIT(T1("[0,4]", "[1,1,1,1,1,1,1,1,1]", "F32"), 4, "nine dimensions", FZ_FAIL);
    EMIT(T1("[0,4]", "[1.0]", "F32"), 4, "fractional dimension", FZ_FAIL);
    EMIT(T1("[0,4]", "[1e0]", "F32"), 4, "exponent dimension", FZ_FAIL);
    EMIT(T1("[0,4]", "[01]", "F32"), 4, "leading zero", FZ_FAIL);
    EMIT(T1("[0,4]", "[\"1\"]", "F32"), 4, "string dimension", FZ_FAIL);
    EMIT(T1("[0,4]", "[[1]]", "F32"), 4, "nested shape", FZ_FAIL);
    EMIT(T1("[0,4]", "[1,]", "F32"), 4, "trailing comma in shape", FZ_FAIL);
    EMIT(T1("[0,4,8]", "[1]", "F32"), 8, "three offsets", FZ_FAIL);
    EMIT(T1("[0]", "[1]", "F32"), 4, "one offset", FZ_FAIL);
    EMIT(T1("[0,4]", "[1]", "F8_E4M3"), 4, "unsupported dtype", FZ_FAIL);
    EMIT(T1("[0,4]", "[1]", "f32"), 4, "lower-case dtype", FZ_FAIL);
    EMIT(T1("[0,4]", "[1]", ""), 4, "empty dtype", FZ_FAIL);
    EMIT("{\"t\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "numeric dtype", FZ_FAIL);
    EMIT("{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "no dtype", FZ_FAIL);
    EMIT("{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "no shape", FZ_FAIL);
    EMIT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "no offsets", FZ_FAIL);
    EMIT("{\"t\":{}}", 0, "empty entry", FZ_FAIL);
    EMIT("{\"t\":[]}", 0, "entry is an array", FZ_FAIL);
    EMIT("{\"t\":\"x\"}", 0, "entry is a string", FZ_FAIL);
    EMIT("{\"t\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "duplicate dtype",
         FZ_FAIL);
    EMIT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "duplicate shape",
         FZ_FAIL);
    EMIT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"data_offsets\":[0,4]}}", 4,
         "duplicate offsets", FZ_FAIL);
    EMIT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown key", FZ_FAIL);
    EMIT("{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate tensor name", FZ_FAIL);
    EMIT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "overlapping tensors", FZ_FAIL);
    EMIT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "two tensors on the same bytes", FZ_FAIL);
    EMIT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
         8, "empty tensor inside another", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}", 0, "duplicate metadata key", FZ_FAIL);
    EMIT("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":1}}", 0, "numeric metadata value", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":null}}", 0, "null metadata value", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":true}}", 0, "boolean metadata value", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":{\"b\":\"c\"}}}", 0, "object metadata value", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":[\"b\"]}}", 0, "array metadata value", FZ_FAIL);
    EMIT("{\"__metadata__\":\"x\"}", 0, "metadata not an object", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"b\",}}", 0, "trailing comma in metadata", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"b\"}", 0, "unterminated object", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"b}}", 0, "unterminated string", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\\u12\"}}", 0, "short \\u escape", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\\u00zz\"}}", 0, "bad \\u escape", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\\ud800\"}}", 0, "lone high surrogate", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\\udc00\"}}", 0, "lone low surrogate", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\\ud800\\u0041\"}}", 0, "bad surrogate pair", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\\u0000\"}}", 0, "NUL in a string", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\\q\"}}", 0, "unknown escape", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\t\"}}", 0, "raw control character", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\xc3\"}}", 0, "cut UTF-8", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\xc0\xaf\"}}", 0, "overlong UTF-8", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\xed\xa0\x80\"}}", 0, "UTF-8 surrogate", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\xf4\x90\x80\x80\"}}", 0, "UTF-8 above U+10FFFF", FZ_FAIL);
    EMIT("{\"__metadata__\":{\"a\":\"\xff\"}}", 0, "invalid UTF-8 byte", FZ_FAIL);
    EMIT("\xef\xbb\xbf{}", 0, "byte order mark", FZ_FAIL);
    EMIT("[]", 0, "header is an array", FZ_FAIL);
    EMIT("\"{}\"", 0, "header is a string", FZ_FAIL);
    EMIT("null", 0, "header is null", FZ_FAIL);
    EMIT("{} {}", 0, "two objects", FZ_FAIL);
    EMIT("{}x", 0, "garbage after the object", FZ_FAIL);
    {
        size_t len;
        uint8_t *b = fz_build("{}\0\0\0\0\0\0", 8, 8, 0, &len);
        cb(b, len, "NUL padding", FZ_FAIL, ctx);
        free(b);
        n++;
    }
    EMIT("{,}", 0, "comma in empty object", FZ_FAIL);
    EMIT("{\"a\" \"b\"}", 0, "missing colon", FZ_FAIL);
    EMIT("{\"a\":", 0, "ends after a colon", FZ_FAIL);
    EMIT("{\"", 0, "ends inside a key", FZ_FAIL);
    EMIT("{\"\\", 0, "ends inside an escape", FZ_FAIL);
    EMIT("{\"\\u", 0, "ends inside \\u", FZ_FAIL);
#undef T1
    /* deep nesting, in every position where a value can start */
    {
        static const char *const pre[] = {"", "{\"t\":", "{\"t\":{\"shape\":", "{\"__metadata__\":",
                                          "{\"__metadata__\":{\"a\":"};
        for (size_t k = 0; k < sizeof pre / sizeof pre[0]; k++) {
            for (int open = 0; open < 2; open++, n++) {
                size_t depth = 100000, pl = strlen(pre[k]);
                char *js = malloc(pl + 2 * depth + 1);
                memcpy(js, pre[k], pl);
                for (size_t i = 0; i < depth; i++)
                    js[pl + i] = open ? '[' : '{';
                for (size_t i = 0; i < depth; i++)
                    js[pl + depth + i] = open ? ']' : '}';
                js[pl + 2 * depth] = 0;
                fz_emit(cb, ctx, js, 0, "deep nesting", FZ_FAIL);
                free(js);
            }
        }
        /* a long but valid header: many tensors and metadata keys */
        size_t nt = 2000, cap = nt * 96 + 64;
        char *js = malloc(cap);
        size_t o = (size_t)snprintf(js, cap, "{\"__metadata__\":{");
        for (size_t i = 0; i < nt; i++)
            o += (size_t)snprintf(js + o, cap - o, "%s\"k%zu\":\"v%zu\"", i ? "," : "", i, i);
        o += (size_t)snprintf(js + o, cap - o, "}");
        for (size_t i = 0; i < nt; i++)
            o += (size_t)snprintf(js + o, cap - o, ",\"w%zu\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%zu,%zu]}",
                                  nt - 1 - i, 4 * (nt - 1 - i), 4 * (nt - i));
        snprintf(js + o, cap - o, "}");
        fz_emit(cb, ctx, js, 4 * nt, "valid: 2000 tensors in reverse offset order", FZ_OK);
        free(js);
        n++;
    }
#undef EMIT
    return n;
}

#ifdef SL_FUZZ_SEED_MAIN
/* fuzz_seeds DIR: writes the cases as DIR/seed-NNNNN (valid and adversarial
 * ones only; the random and bit-flip cases are what the fuzzer makes itself). */
#include <sys/stat.h>

typedef struct {
    const char *dir;
    unsigned i;
} seed_ctx;

static void write_seed(const uint8_t *buf, size_t len, const char *label, int expect, void *ctx)
{
    seed_ctx *s = ctx;
    if (!strcmp(label, "bit flip") || !strcmp(label, "high-bit flip") || !strcmp(label, "random bytes") ||
        !strcmp(label, "token soup") || !strncmp(label, "truncated", 9))
        return;
    (void)expect;
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%05u", s->dir, s->i++);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    if (len && fwrite(buf, 1, len, f) != len)
        exit(1);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    mkdir(argv[1], 0777);
    seed_ctx s = {argv[1], 0};
    sl_fuzz_st_cases(write_seed, &s);
    printf("%u seeds in %s\n", s.i, argv[1]);
    return 0;
}
#endif
