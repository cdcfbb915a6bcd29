/* .npy writer/reader, float16 conversion and JSON string escaping. Files are
 * written through sl_atomic_* (io/atomic_file.c). */
#include "io/npy.h"

#include "common/sl_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- float16 */

unsigned short sl_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        if (ax == 0x7f800000u)
            return (unsigned short)(sign | 0x7c00u);
        /* NaN: keep the top payload bits, force quiet so it can never become inf. */
        return (unsigned short)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    }
    /* 65520 is halfway between 65504 (max half) and 2^16; ties-to-even go up. */
    if (ax >= 0x477ff000u)
        return (unsigned short)(sign | 0x7c00u);
    uint32_t e = ax >> 23;
    if (e < 113) {
        /* Half subnormal (or zero): value in units of 2^-24 is mant24 * 2^(e-126). */
        uint32_t shift = 126 - e;
        if (shift > 24)
            return (unsigned short)sign;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t q = m >> shift;
        uint32_t r = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (r > half || (r == half && (q & 1)))
            q++; /* may carry into the smallest normal: correct by construction */
        return (unsigned short)(sign | q);
    }
    uint32_t h = ((e - 112) << 10) | ((ax & 0x7fffffu) >> 13);
    uint32_t r = ax & 0x1fffu;
    if (r > 0x1000u || (r == 0x1000u && (h & 1)))
        h++; /* carry into the exponent is the right answer too */
    return (unsigned short)(sign | h);
}

float sl_f16_to_f32(unsigned short h)
{
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t x;
    if (e == 0) {
        if (m == 0) {
            x = sign;
        } else {
            /* Normalise the subnormal: shift until the implicit bit appears. */
            int k = 0;
            while (!(m & 0x400u)) {
                m <<= 1;
                k++;
            }
            m &= 0x3ffu;
            x = sign | ((uint32_t)(113 - k) << 23) | (m << 13);
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---------------------------------------------------------------- .npy */

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Format 1.0 header, padded with spaces and a final '\n' so that the data starts
 * at a multiple of 64 bytes (what numpy itself writes, and what mmap likes). */
size_t sl_npy_header(unsigned char *buf, size_t cap, const char *descr, size_t rows, size_t cols)
{
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr,
                     rows, cols);
    size_t total = 10 + (size_t)n + 1;
    total = (total + 63) / 64 * 64;
    if (total > cap)
        return 0;
    size_t hlen = total - 10;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', total - 10 - (size_t)n - 1);
    buf[total - 1] = '\n';
    return total;
}

static int npy_dtype(const char *path, const char *dtype, int *f16)
{
    if (!dtype)
        return sl_seterr(SL_EINVAL, "%s: NULL dtype", path);
    if (!strcmp(dtype, "float32") || !strcmp(dtype, "f4") || !strcmp(dtype, "<f4"))
        *f16 = 0;
    else if (!strcmp(dtype, "float16") || !strcmp(dtype, "f2") || !strcmp(dtype, "<f2"))
        *f16 = 1;
    else
        return sl_seterr(SL_EINVAL, "%s: unsupported dtype '%s' (float32 or float16)", path, dtype);
    return 0;
}

/* Little-endian encoding of n elements into out (2 or 4 bytes each). */
static void npy_pack(unsigned char *out, const float *src, size_t n, int f16)
{
    for (size_t k = 0; k < n; k++) {
        if (f16) {
            unsigned short h = sl_f32_to_f16(src[k]);
            out[2 * k] = (unsigned char)h;
            out[2 * k + 1] = (unsigned char)(h >> 8);
        } else {
            uint32_t x;
            memcpy(&x, &src[k], 4);
            put_le32(out + 4 * k, x);
        }
    }
}

int sl_npy_encode(const float *data, size_t rows, size_t cols, const char *dtype, unsigned char **out,
                  size_t *len)
{
    int f16, rc;
    *out = NULL;
    *len = 0;
    if ((rc = npy_dtype("npy", dtype, &f16)) < 0)
        return rc;
    if (rows && cols && (!data || rows > (SIZE_MAX - 1024) / cols / 4))
        return sl_seterr(SL_EINVAL, "npy: bad matrix [%zu, %zu]", rows, cols);
    unsigned char hdr[256];
    size_t hl = sl_npy_header(hdr, sizeof hdr, f16 ? "<f2" : "<f4", rows, cols);
    size_t dl = rows * cols * (f16 ? 2 : 4);
    unsigned char *b = malloc(hl + dl + 1);
    if (!b)
        return sl_seterr(SL_ENOMEM, "npy: out of memory for [%zu, %zu]", rows, cols);
    memcpy(b, hdr, hl);
    npy_pack(b + hl, data, rows * cols, f16);
    *out = b;
    *len = hl + dl;
    return 0;
}

int sl_npy_write(const char *path, const float *data, size_t rows, size_t cols, const char *dtype)
{
    int f16;
    if (!path)
        return sl_seterr(SL_EINVAL, "npy: NULL path");
    int rc = npy_dtype(path, dtype, &f16);
    if (rc < 0)
        return rc;
    if (rows && cols && (!data || rows > SIZE_MAX / cols / 4))
        return sl_seterr(SL_EINVAL, "%s: bad matrix [%zu, %zu]", path, rows, cols);

    unsigned char *buf = malloc(1 << 16);
    if (!buf)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    size_t hl = sl_npy_header(buf, 1 << 16, f16 ? "<f2" : "<f4", rows, cols);
    sl_atomic_file *f;
    rc = sl_atomic_open(&f, path);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    rc = sl_atomic_write(f, buf, hl);
    size_t count = rows * cols, i = 0;
    const size_t step = f16 ? (1 << 15) : (1 << 14); /* elements per 64 KiB */
    while (rc == 0 && i < count) {
        size_t n = count - i < step ? count - i : step;
        npy_pack(buf, data + i, n, f16);
        rc = sl_atomic_write(f, buf, n * (f16 ? 2 : 4));
        i += n;
    }
    free(buf);
    if (rc < 0) {
        sl_atomic_abort(f);
        return rc;
    }
    return sl_atomic_commit(f);
}

/* Streaming writer: the header is written first with a row count of 0 and
 * rewritten in place at commit; both fit the same 128 bytes (a dict of at most
 * ~110 characters), so the data offset does not move. */
#define NPY_STREAM_HDR 128

struct sl_npy_stream {
    sl_atomic_file *f;
    size_t cols, rows;
    int f16;
    unsigned char *buf; /* 64 KiB packing buffer */
};

int sl_npy_stream_open(sl_npy_stream **out, const char *path, size_t cols, const char *dtype)
{
    *out = NULL;
    int f16, rc = npy_dtype(path, dtype, &f16);
    if (rc)
        return rc;
    sl_npy_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->buf = malloc(1 << 16))) {
        free(s);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    s->cols = cols;
    s->f16 = f16;
    unsigned char hdr[NPY_STREAM_HDR];
    if (sl_npy_header(hdr, sizeof hdr, f16 ? "<f2" : "<f4", 0, cols) != NPY_STREAM_HDR) {
        free(s->buf);
        free(s);
        return sl_seterr(SL_EINVAL, "%s: %zu columns do not fit the header", path, cols);
    }
    if ((rc = sl_atomic_open(&s->f, path)) != 0 || (rc = sl_atomic_write(s->f, hdr, sizeof hdr)) != 0) {
        sl_npy_stream_abort(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sl_npy_stream_rows(sl_npy_stream *s, const float *data, size_t rows)
{
    size_t count = rows * s->cols, i = 0;
    const size_t step = s->f16 ? (1 << 15) : (1 << 14);
    int rc = 0;
    while (rc == 0 && i < count) {
        size_t n = count - i < step ? count - i : step;
        npy_pack(s->buf, data + i, n, s->f16);
        rc = sl_atomic_write(s->f, s->buf, n * (s->f16 ? 2 : 4));
        i += n;
    }
    if (rc == 0)
        s->rows += rows;
    return rc;
}

int sl_npy_stream_commit(sl_npy_stream *s)
{
    unsigned char hdr[NPY_STREAM_HDR];
    int rc;
    if (sl_npy_header(hdr, sizeof hdr, s->f16 ? "<f2" : "<f4", s->rows, s->cols) != NPY_STREAM_HDR)
        rc = sl_seterr(SL_EINVAL, "npy: %zu rows do not fit the header", s->rows);
    else
        rc = sl_atomic_pwrite(s->f, 0, hdr, sizeof hdr);
    if (rc) {
        sl_npy_stream_abort(s);
        return rc;
    }
    rc = sl_atomic_commit(s->f);
    s->f = NULL;
    sl_npy_stream_abort(s);
    return rc;
}

void sl_npy_stream_abort(sl_npy_stream *s)
{
    if (!s)
        return;
    sl_atomic_abort(s->f);
    free(s->buf);
    free(s);
}

/* A tiny parser for the header dict numpy writes (a Python literal). */
typedef struct {
    const char *p, *end;
} hparse;

static void hp_ws(hparse *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static int hp_char(hparse *h, char c)
{
    hp_ws(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 1;
    }
    return 0;
}

static int hp_str(hparse *h, char *out, size_t cap)
{
    hp_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return 0;
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (n + 1 >= cap)
            return 0;
        out[n++] = *h->p++;
    }
    if (h->p >= h->end)
        return 0;
    h->p++;
    out[n] = 0;
    return 1;
}

static int hp_uint(hparse *h, size_t *v)
{
    hp_ws(h);
    const char *s = h->p;
    size_t x = 0;
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
        unsigned d = (unsigned)(*h->p - '0');
        if (x > (SIZE_MAX - d) / 10)
            return 0;
        x = x * 10 + d;
        h->p++;
    }
    if (h->p < h->end && *h->p == 'L') /* Python 2 longs */
        h->p++;
    *v = x;
    return h->p > s;
}

static int npy_fail(const char *path, const char *why)
{
    return sl_seterr(SL_EFORMAT, "%s: not a readable .npy file: %s", path, why);
}

void sl_npy_unpack(const unsigned char *src, float *dst, size_t n, int f16)
{
    for (size_t i = 0; i < n; i++) {
        if (f16) {
            dst[i] = sl_f16_to_f32((unsigned short)(src[2 * i] | (src[2 * i + 1] << 8)));
        } else {
            uint32_t x = get_le32(src + 4 * i);
            memcpy(&dst[i], &x, 4);
        }
    }
}

int sl_npy_read_header(FILE *fp, const char *path, sl_npy_info *info)
{
    memset(info, 0, sizeof *info);
    int rc = 0;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    size_t fsize = (size_t)st.st_size;
    unsigned char pre[12];
    if (fsize < 10 || fread(pre, 1, 10, fp) != 10)
        return npy_fail(path, "too short");
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return npy_fail(path, "bad magic");
    size_t hlen, hstart;
    if (pre[6] == 1 && pre[7] == 0) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
        hstart = 10;
    } else if (pre[6] == 2 && pre[7] == 0) {
        if (fread(pre + 10, 1, 2, fp) != 2)
            return npy_fail(path, "too short");
        hlen = get_le32(pre + 8);
        hstart = 12;
    } else {
        char why[64];
        snprintf(why, sizeof why, "unsupported format version %u.%u", pre[6], pre[7]);
        return npy_fail(path, why);
    }
    if (hlen > fsize - hstart || hlen > (1u << 20))
        return npy_fail(path, "header longer than the file");
    char *hdr = malloc(hlen + 1);
    if (!hdr)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    if (fread(hdr, 1, hlen, fp) != hlen) {
        free(hdr);
        return npy_fail(path, "short header");
    }
    hdr[hlen] = 0;
    hparse h = {hdr, hdr + hlen};
    char key[32], descr[32] = "";
    int have_descr = 0, have_fo = 0, have_shape = 0, fortran = 0;
    size_t dims[2] = {0, 0};
    const char *why = NULL;
    if (!hp_char(&h, '{'))
        why = "header is not a dict";
    while (!why && !hp_char(&h, '}')) {
        if (!hp_str(&h, key, sizeof key) || !hp_char(&h, ':')) {
            why = "malformed header dict";
            break;
        }
        if (!strcmp(key, "descr")) {
            if (!hp_str(&h, descr, sizeof descr))
                why = "descr is not a simple type string";
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            hp_ws(&h);
            if ((size_t)(h.end - h.p) >= 4 && !memcmp(h.p, "True", 4)) {
                fortran = 1;
                h.p += 4;
            } else if ((size_t)(h.end - h.p) >= 5 && !memcmp(h.p, "False", 5)) {
                h.p += 5;
            } else {
                why = "fortran_order is not True/False";
            }
            have_fo = 1;
        } else if (!strcmp(key, "shape")) {
            int nd = 0;
            if (!hp_char(&h, '(')) {
                why = "shape is not a tuple";
                break;
            }
            while (!why && !hp_char(&h, ')')) {
                size_t v;
                if (nd >= 2 || !hp_uint(&h, &v)) {
                    why = "shape is not 2-D";
                    break;
                }
                dims[nd++] = v;
                if (!hp_char(&h, ',')) {
                    if (!hp_char(&h, ')'))
                        why = "malformed shape";
                    break;
                }
            }
            if (!why && nd != 2)
                why = "shape is not 2-D";
            have_shape = 1;
        } else {
            why = "unknown header key";
        }
        if (why)
            break;
        if (!hp_char(&h, ',')) {
            if (!hp_char(&h, '}'))
                why = "malformed header dict";
            break;
        }
    }
    free(hdr);
    if (!why && (!have_descr || !have_fo || !have_shape))
        why = "header lacks descr, fortran_order or shape";
    int f16 = 0;
    if (!why) {
        if (!strcmp(descr, "<f4"))
            f16 = 0;
        else if (!strcmp(descr, "<f2"))
            f16 = 1;
        else
            why = "dtype is not little-endian float32 or float16";
    }
    if (!why && fortran)
        why = "fortran_order arrays are not supported";
    size_t isz = f16 ? 2 : 4;
    if (!why && dims[1] && dims[0] > SIZE_MAX / dims[1] / 4)
        why = "shape too large";
    size_t count = dims[0] * dims[1];
    if (!why && fsize - hstart - hlen != count * isz)
        why = "file size does not match the shape";
    if (why)
        return npy_fail(path, why);
    info->rows = dims[0];
    info->cols = dims[1];
    info->f16 = f16;
    info->data_offset = (long long)(hstart + hlen);
    return rc;
}

int sl_npy_read(const char *path, float **data, size_t *rows, size_t *cols)
{
    *data = NULL;
    *rows = *cols = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    unsigned char *buf = NULL;
    sl_npy_info info;
    int rc = sl_npy_read_header(fp, path, &info);
    if (rc)
        goto out;
    int f16 = info.f16;
    size_t isz = f16 ? 2 : 4, count = info.rows * info.cols;
    size_t dims[2] = {info.rows, info.cols};
    buf = malloc(count * isz + 1);
    float *out = malloc(count * sizeof(float) + 1);
    if (!buf || !out) {
        free(out);
        rc = sl_seterr(SL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (fread(buf, 1, count * isz, fp) != count * isz) {
        free(out);
        rc = npy_fail(path, "short data");
        goto out;
    }
    sl_npy_unpack(buf, out, count, f16);
    *data = out;
    *rows = dims[0];
    *cols = dims[1];
out:
    free(buf);
    fclose(fp);
    return rc;
}

/* ---------------------------------------------------------------- JSON */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid: overlong
 * forms, surrogates and code points above U+10FFFF are rejected (RFC 3629). */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

void sl_json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
            p++;
        } else if (c < 0x20) {
            if (c == '\n')
                fputs("\\n", f);
            else if (c == '\t')
                fputs("\\t", f);
            else if (c == '\r')
                fputs("\\r", f);
            else
                fprintf(f, "\\u%04x", c);
            p++;
        } else {
            /* The NUL terminator stops utf8_len's continuation checks in time. */
            int n = utf8_len(p);
            if (n == 0) {
                fputs("\xef\xbf\xbd", f); /* U+FFFD for each invalid byte */
                p++;
            } else {
                fwrite(p, 1, (size_t)n, f);
                p += n;
            }
        }
    }
    fputc('"', f);
}
