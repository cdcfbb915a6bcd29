/* safetensors reader on files: values, order, lookup, metadata, sl_st_require_f32
 * and its messages, file-level errors (missing, directory, empty, truncated,
 * trailing bytes, unreadable), alignment; and, when SL_PYTHON names a python with
 * numpy, a file written by tools/stemline_st.py (the converters' writer) read back
 * value by value. Malformed headers are covered by unit.fuzz_safetensors. */
#include "common/sl_error.h"
#include "io/safetensors.h"
#include "tests/unit/sl_test.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp;

static void spew(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    if (len && fwrite(data, 1, len, f) != len)
        exit(1);
    fclose(f);
}

/* header (padded with spaces to a multiple of 8) + data */
static uint8_t *build(const char *json, const void *data, size_t dlen, size_t *len)
{
    size_t jl = strlen(json), pad = (8 - jl % 8) % 8, hl = jl + pad;
    *len = 8 + hl + dlen;
    uint8_t *b = malloc(*len);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, json, jl);
    memset(b + 8 + jl, ' ', pad);
    if (dlen)
        memcpy(b + 8 + hl, data, dlen);
    return b;
}

static char *path_of(const char *name)
{
    static char p[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmp, name);
    return p[k];
}

/* sl_st_vtake_f32 through a printf-style wrapper, as the model loaders call it. */
static const sl_st_tensor *take(const sl_st_file *f, unsigned char *used, const char *what, int ndim,
                                const int64_t *shape, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static const sl_st_tensor *take(const sl_st_file *f, unsigned char *used, const char *what, int ndim,
                                const int64_t *shape, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const sl_st_tensor *t = sl_st_vtake_f32(f, used, what, ndim, shape, fmt, ap);
    va_end(ap);
    return t;
}

static void test_valid(void)
{
    /* w: F32 [2,3] 0..5 at offset 16; b: F32 [3] at 0; i: I64 scalar at 12? keep 8-aligned */
    float w[6] = {0, 1, 2, 3, 4, 5}, b[3] = {-1.5f, 2.25f, 1e-3f};
    int64_t iv = -42;
    uint8_t data[12 + 24 + 8];
    memcpy(data, b, 12);
    memcpy(data + 12, w, 24);
    memcpy(data + 36, &iv, 8);
    const char *json = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[12,36]},"
                       "\"__metadata__\":{\"stemline.arch\":\"umx\",\"hidden_size\":\"512\",\"a\":\"\\u00e9\"},"
                       "\"i\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[36,44]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
    size_t len;
    uint8_t *buf = build(json, data, sizeof data, &len);
    const char *p = path_of("ok.safetensors");
    spew(p, buf, len);
    sl_st_file *f = NULL;
    int rc = sl_st_open(&f, p);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (rc)
        return;
    CHECK(sl_st_count(f) == 3);
    /* the mapping is advised MADV_HUGEPAGE (io/safetensors.c: large weights files come
     * into the page cache in 2 MiB folios) */
    CHECK_MSG(sl_test_map_flag("ok.safetensors", "hg") != 0, "the weights mapping is not advised MADV_HUGEPAGE");
    /* data order */
    CHECK(!strcmp(sl_st_at(f, 0)->name, "b"));
    CHECK(!strcmp(sl_st_at(f, 1)->name, "w"));
    CHECK(!strcmp(sl_st_at(f, 2)->name, "i"));
    CHECK(sl_st_at(f, 3) == NULL);
    const sl_st_tensor *t = sl_st_find(f, "w");
    CHECK(t && t->dtype == SL_ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->nbytes == 24);
    if (t) {
        const float *v = t->data;
        for (int k = 0; k < 6; k++)
            CHECK(v[k] == (float)k);
    }
    t = sl_st_find(f, "b");
    CHECK(t && !memcmp(t->data, b, 12));
    t = sl_st_find(f, "i");
    CHECK(t && t->ndim == 0 && t->nbytes == 8 && sl_st_numel(t) == 1 && !memcmp(t->data, &iv, 8));
    CHECK(sl_st_find(f, "nope") == NULL);
    CHECK(sl_st_find(f, "__metadata__") == NULL);
    CHECK(!strcmp(sl_st_meta(f, "stemline.arch"), "umx"));
    CHECK(!strcmp(sl_st_meta(f, "hidden_size"), "512"));
    CHECK(!strcmp(sl_st_meta(f, "a"), "\xc3\xa9"));
    CHECK(sl_st_meta(f, "w") == NULL);
    CHECK(sl_st_meta_count(f) == 3);
    CHECK(!strcmp(sl_st_meta_key(f, 0), "a") && !strcmp(sl_st_meta_key(f, 2), "stemline.arch"));
    CHECK(sl_st_meta_key(f, 3) == NULL && sl_st_meta_value(f, 3) == NULL);
    CHECK(!strcmp(sl_st_name(f), p));

    /* require_f32 */
    int64_t s23[2] = {2, 3}, sany3[2] = {-1, 3}, s32[2] = {3, 2};
    CHECK(sl_st_require_f32(f, "w", 2, s23) == sl_st_find(f, "w"));
    CHECK(sl_st_require_f32(f, "w", 2, sany3) != NULL);
    CHECK(sl_st_require_f32(f, "w", 2, NULL) != NULL);
    CHECK(sl_st_require_f32(f, "w", -1, NULL) != NULL);
    CHECK(sl_st_require_f32(f, "w", 2, s32) == NULL);
    CHECK_MSG(strstr(sl_lasterr(), "tensor w: shape [2, 3], expected [3, 2]") && strstr(sl_lasterr(), p),
              "%s", sl_lasterr());
    CHECK(sl_st_require_f32(f, "w", 1, s23) == NULL);
    CHECK_MSG(strstr(sl_lasterr(), "expected [2]"), "%s", sl_lasterr());
    CHECK(sl_st_require_f32(f, "i", 0, NULL) == NULL);
    CHECK_MSG(strstr(sl_lasterr(), "tensor i: dtype I64, expected F32"), "%s", sl_lasterr());
    CHECK(sl_st_require_f32(f, "fc9.weight", 2, s23) == NULL);
    CHECK_MSG(strstr(sl_lasterr(), "tensor fc9.weight: missing"), "%s", sl_lasterr());
    /* vtake_f32: the formatted name, marked used by its sl_st_at index; errors prefixed */
    unsigned char used[3] = {0, 0, 0};
    CHECK(take(f, used, "model x", 2, s23, "%c", 'w') == sl_st_find(f, "w"));
    CHECK(used[0] == 0 && used[1] == 1 && used[2] == 0);
    CHECK(take(f, NULL, NULL, 1, NULL, "%s", "b") == sl_st_find(f, "b"));
    CHECK(take(f, used, "model x", 1, NULL, "fc%d.weight", 9) == NULL);
    CHECK_MSG(!strncmp(sl_lasterr(), "model x: ", 9) && strstr(sl_lasterr(), "tensor fc9.weight: missing"),
              "%s", sl_lasterr());
    CHECK(take(f, used, NULL, 1, NULL, "i") == NULL);
    CHECK_MSG(strstr(sl_lasterr(), p) == sl_lasterr() && strstr(sl_lasterr(), "tensor i: dtype I64"), "%s",
              sl_lasterr());
    CHECK(used[0] == 0 && used[1] == 1 && used[2] == 0);
    char sh[8];
    sl_st_format_shape(sl_st_find(f, "w"), sh, sizeof sh);
    CHECK(!strcmp(sh, "[2, 3]"));
    sl_st_format_shape(sl_st_find(f, "w"), sh, 4);
    CHECK(strlen(sh) == 3);
    CHECK(!strcmp(sl_st_dtype_name(SL_ST_BF16), "BF16") && sl_st_dtype_size(SL_ST_BF16) == 2);
    sl_st_close(f);
    sl_st_close(NULL);

    /* the same bytes through the buffer API */
    rc = sl_st_open_buffer(&f, buf, len, "buf");
    CHECK(rc == 0 && sl_st_count(f) == 3);
    sl_st_close(f);

    /* misaligned float32: a 1-byte U8 first puts F32 at offset 1 */
    uint8_t d2[5] = {7, 0, 0, 128, 63};
    const char *j2 = "{\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                     "\"f\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1,5]}}";
    size_t len2;
    uint8_t *b2 = build(j2, d2, sizeof d2, &len2);
    p = path_of("misaligned.safetensors");
    spew(p, b2, len2);
    rc = sl_st_open(&f, p);
    CHECK(rc == 0);
    if (!rc) {
        CHECK(sl_st_require_f32(f, "f", 1, NULL) == NULL);
        CHECK_MSG(strstr(sl_lasterr(), "not 4-byte aligned"), "%s", sl_lasterr());
        sl_st_close(f);
    }
    free(b2);

    /* file-level failures */
    for (size_t cut = 0; cut < len; cut += 7) {
        p = path_of("trunc.safetensors");
        spew(p, buf, cut);
        f = (sl_st_file *)1;
        rc = sl_st_open(&f, p);
        CHECK_MSG(rc == SL_EFORMAT && f == NULL, "cut %zu: %d", cut, rc);
        CHECK_MSG(!strncmp(sl_lasterr(), p, strlen(p)), "%s", sl_lasterr());
    }
    uint8_t *longer = malloc(len + 3);
    memcpy(longer, buf, len);
    memset(longer + len, 0, 3);
    p = path_of("long.safetensors");
    spew(p, longer, len + 3);
    CHECK(sl_st_open(&f, p) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "trailing bytes"), "%s", sl_lasterr());
    free(longer);
    free(buf);

    p = path_of("empty.safetensors");
    spew(p, "", 0);
    CHECK(sl_st_open(&f, p) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "0 bytes, shorter than the 8-byte header length"), "%s", sl_lasterr());
    p = path_of("text.safetensors");
    spew(p, "hello, this is not a weights file\n", 34);
    CHECK(sl_st_open(&f, p) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "over the limit of 100 MB"), "%s", sl_lasterr());
    CHECK(sl_st_open(&f, path_of("missing.safetensors")) == -ENOENT);
    CHECK_MSG(strstr(sl_lasterr(), "missing.safetensors: no such file"), "%s", sl_lasterr());
    CHECK(sl_st_open(&f, tmp) == -EISDIR);
    CHECK_MSG(strstr(sl_lasterr(), "is a directory"), "%s", sl_lasterr());
    if (geteuid() != 0) {
        p = path_of("noread.safetensors");
        spew(p, "x", 1);
        chmod(p, 0);
        CHECK(sl_st_open(&f, p) == -EACCES);
    }
}

/* A file written by the converters' Python writer, read back value by value. */
static void test_python_writer(void)
{
    const char *py = getenv("SL_PYTHON"), *src = getenv("SL_SRC");
    if (!py || !*py || !src || !*src) {
        printf("python cross-check: SKIPPED (SL_PYTHON / SL_SRC not set)\n");
        return;
    }
    const char *p = path_of("py.safetensors");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s -c \"import sys; sys.path.insert(0, '%s/tools'); import stemline_st, numpy as np\n"
             "t = [('x.weight', np.arange(12, dtype=np.float32).reshape(3, 4) / 8),\n"
             "     ('h', np.array([1.5, -2], dtype=np.float16)), ('d', np.float64(3.25)),\n"
             "     ('e', np.zeros((0, 3), np.float32)), ('i', np.array([-7, 9], '>i8')),\n"
             "     ('n\\u00e9', np.array([True, False])), ('u', np.arange(3, dtype=np.uint8))]\n"
             "stemline_st.save('%s', t, {'stemline.arch': 'test', 'k': 'v \\u266b'})\"",
             py, src, p);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "python writer failed: %s", cmd);
    if (rc)
        return;
    sl_st_file *f = NULL;
    rc = sl_st_open(&f, p);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (rc)
        return;
    CHECK(sl_st_count(f) == 7);
    int64_t s34[2] = {3, 4};
    const sl_st_tensor *t = sl_st_require_f32(f, "x.weight", 2, s34);
    CHECK_MSG(t != NULL, "%s", sl_lasterr());
    if (t)
        for (int k = 0; k < 12; k++)
            CHECK(((const float *)t->data)[k] == k / 8.0f);
    t = sl_st_find(f, "h");
    CHECK(t && t->dtype == SL_ST_F16 && t->nbytes == 4);
    if (t) {
        uint16_t h[2];
        memcpy(h, t->data, 4);
        CHECK(h[0] == 0x3E00 && h[1] == 0xC000);
    }
    t = sl_st_find(f, "d");
    CHECK(t && t->dtype == SL_ST_F64 && t->ndim == 0);
    if (t) {
        double d;
        memcpy(&d, t->data, 8);
        CHECK(d == 3.25);
    }
    t = sl_st_find(f, "e");
    CHECK(t && t->nbytes == 0 && t->shape[0] == 0 && t->shape[1] == 3 && sl_st_numel(t) == 0);
    t = sl_st_find(f, "i");
    CHECK(t && t->dtype == SL_ST_I64);
    if (t) {
        int64_t v[2];
        memcpy(v, t->data, 16);
        CHECK(v[0] == -7 && v[1] == 9); /* big-endian input written little-endian */
    }
    t = sl_st_find(f, "n\xc3\xa9");
    CHECK(t && t->dtype == SL_ST_BOOL && ((const uint8_t *)t->data)[0] == 1 && ((const uint8_t *)t->data)[1] == 0);
    t = sl_st_find(f, "u");
    CHECK(t && t->dtype == SL_ST_U8 && ((const uint8_t *)t->data)[2] == 2);
    CHECK(!strcmp(sl_st_meta(f, "k"), "v \xe2\x99\xab"));
    CHECK(!strcmp(sl_st_meta(f, "stemline.arch"), "test"));
    /* every tensor's data starts 8-aligned after the header the writer pads */
    CHECK(((uintptr_t)sl_st_at(f, 0)->data & 7u) == 0);
    sl_st_close(f);
}

int main(void)
{
    tmp = sl_test_tmpdir();
    test_valid();
    test_python_writer();
    char cmd[700];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' && rm -rf '%s'", tmp, tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp);
    return sl_test_finish("safetensors");
}
