/* .npy writer/reader, float16 rounding, atomic writes under faults, mkdir -p and
 * JSON string escaping; numpy cross-checks when SL_PYTHON names a python with numpy. */
#include "common/sl_error.h"
#include "io/npy.h"
#include "tests/unit/sl_test.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *tmp;

static float bits_f(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

static uint32_t f_bits(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

/* Names in dir containing ".tmp-" (leftover temp files). */
static int count_tmp(const char *dir) { return sl_test_count_names(dir, ".tmp-"); }

static const char *python(void)
{
    const char *p = getenv("SL_PYTHON");
    return p && *p ? p : NULL;
}

static void test_f16_conversion(void)
{
    /* Every half survives half -> float -> half (NaNs stay NaN). */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = sl_f16_to_f32((unsigned short)h);
        unsigned short back = sl_f32_to_f16(f);
        int isnan_h = ((h & 0x7c00) == 0x7c00) && (h & 0x3ff);
        if (isnan_h ? !(isnan(f) && ((back & 0x7c00) == 0x7c00) && (back & 0x3ff)) : back != h)
            bad++;
    }
    CHECK_MSG(bad == 0, "%d halves do not round-trip", bad);

    struct {
        float in;
        unsigned short out;
    } cases[] = {
        {0.0f, 0x0000},
        {-0.0f, 0x8000},
        {1.0f, 0x3c00},
        {-2.0f, 0xc000},
        {65504.0f, 0x7bff},
        {65519.99f, 0x7bff},
        {65520.0f, 0x7c00}, /* tie between max half and 2^16: even goes to inf */
        {1e9f, 0x7c00},
        {-1e9f, 0xfc00},
        {INFINITY, 0x7c00},
        {-INFINITY, 0xfc00},
        {0x1p-14f, 0x0400},              /* smallest normal */
        {0x1p-24f, 0x0001},              /* smallest subnormal */
        {0x1p-25f, 0x0000},              /* tie with 0: even */
        {0x1.8p-25f, 0x0001},            /* above the tie */
        {0x1.8p-24f, 0x0002},            /* 1.5 units: tie, up to even 2 */
        {0x1.4p-23f, 0x0002},            /* 2.5 units: tie, down to even 2 */
        {0x1.ffcp-15f, 0x0400},          /* 1023.5 units: tie, up into the normals */
        {1.0f + 0x1p-11f, 0x3c00},       /* tie: even mantissa stays */
        {1.0f + 0x1.8p-10f, 0x3c02},     /* 1.5 ulp: up to even */
        {1.0f + 0x1p-11f + 0x1p-20f, 0x3c01},
        {0x1p-30f, 0x0000},
        {bits_f(0x00000001u), 0x0000}, /* float subnormal */
        {-0x1p-24f, 0x8001},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned short got = sl_f32_to_f16(cases[i].in);
        CHECK_MSG(got == cases[i].out, "f16(%a) = 0x%04x, want 0x%04x", (double)cases[i].in, got, cases[i].out);
    }
    CHECK(isnan(sl_f16_to_f32(sl_f32_to_f16(NAN))));
    CHECK(isnan(sl_f16_to_f32(sl_f32_to_f16(bits_f(0x7f800001u))))); /* payload only in low bits */
    CHECK(sl_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(sl_f16_to_f32(0x03ff) == 0x1.ff8p-15f);
    CHECK(sl_f16_to_f32(0x7bff) == 65504.0f);

#if defined(__FLT16_MAX__) && (defined(__x86_64__) || defined(__aarch64__))
    /* The compiler's own conversion is IEEE round-to-nearest-even: compare on many floats. */
    uint32_t s = 12345;
    int mism = 0;
    for (int i = 0; i < 2000000; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t x = s;
        if (i & 1) /* concentrate on the half range and its edges */
            x = (x & 0x80000000u) | (0x33000000u + (x % (0x47800000u - 0x33000000u)));
        float f = bits_f(x);
        if (isnan(f))
            continue;
        _Float16 ref = (_Float16)f;
        unsigned short rb;
        memcpy(&rb, &ref, 2);
        if (rb != sl_f32_to_f16(f))
            mism++;
    }
    CHECK_MSG(mism == 0, "%d conversions differ from the compiler's _Float16", mism);
#else
    printf("skipped: compiler _Float16 cross-check (not available)\n");
#endif
}

static float sample_value(size_t i)
{
    static const float special[] = {0.0f, -0.0f, INFINITY, -INFINITY, 65504.0f, 0x1p-24f, 0x1p-25f, 1e-40f,
                                    70000.0f, 1.0f + 0x1p-11f, -3.14159265f};
    if (i < sizeof special / sizeof special[0])
        return special[i];
    return (float)((double)((i * 2654435761u) % 20001) / 1000.0 - 10.0);
}

static void check_header(const char *path, const char *descr, size_t rows, size_t cols, size_t isz)
{
    size_t len;
    char *b = sl_test_slurp(path, &len);
    CHECK(b != NULL);
    if (!b)
        return;
    CHECK(len >= 10 && memcmp(b, "\x93NUMPY\x01\x00", 8) == 0);
    size_t hlen = (unsigned char)b[8] | ((size_t)(unsigned char)b[9] << 8);
    CHECK_MSG((10 + hlen) % 64 == 0, "header ends at %zu", 10 + hlen);
    CHECK(b[10 + hlen - 1] == '\n');
    char want[200];
    snprintf(want, sizeof want, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr, rows, cols);
    CHECK(strncmp(b + 10, want, strlen(want)) == 0);
    for (size_t i = 10 + strlen(want); i < 10 + hlen - 1; i++)
        if (b[i] != ' ') {
            CHECK_MSG(0, "padding byte %zu is 0x%02x", i, (unsigned char)b[i]);
            break;
        }
    CHECK_MSG(len == 10 + hlen + rows * cols * isz, "file is %zu bytes", len);
    free(b);
}

static void test_roundtrip(void)
{
    char p32[600], p16[600], pz[600];
    const size_t R = 37, C = 13;
    float *m = malloc(R * C * sizeof *m);
    for (size_t i = 0; i < R * C; i++)
        m[i] = sample_value(i);
    m[R * C - 1] = NAN;
    snprintf(p32, sizeof p32, "%s/m32.npy", tmp);
    snprintf(p16, sizeof p16, "%s/m16.npy", tmp);
    snprintf(pz, sizeof pz, "%s/empty.npy", tmp);
    CHECK(sl_npy_write(p32, m, R, C, "float32") == 0);
    CHECK(sl_npy_write(p16, m, R, C, "float16") == 0);
    CHECK(sl_npy_write(pz, NULL, 0, 7, "float32") == 0);
    check_header(p32, "<f4", R, C, 4);
    check_header(p16, "<f2", R, C, 2);
    check_header(pz, "<f4", 0, 7, 4);

    float *back = NULL;
    size_t r = 0, c = 0;
    CHECK(sl_npy_read(p32, &back, &r, &c) == 0);
    CHECK(r == R && c == C);
    int diff = 0;
    for (size_t i = 0; back && i < R * C; i++)
        if (isnan(m[i]) ? !isnan(back[i]) : f_bits(m[i]) != f_bits(back[i]))
            diff++;
    CHECK_MSG(diff == 0, "%d float32 values differ", diff);
    free(back);

    back = NULL;
    CHECK(sl_npy_read(p16, &back, &r, &c) == 0);
    CHECK(r == R && c == C);
    diff = 0;
    for (size_t i = 0; back && i < R * C; i++) {
        float want = sl_f16_to_f32(sl_f32_to_f16(m[i]));
        if (isnan(want) ? !isnan(back[i]) : f_bits(want) != f_bits(back[i]))
            diff++;
    }
    CHECK_MSG(diff == 0, "%d float16 values differ", diff);
    CHECK(back && back[2] == INFINITY && back[8] == INFINITY && back[4] == 65504.0f && back[5] == 0x1p-24f &&
          back[6] == 0.0f && signbit(back[1]));
    free(back);

    back = NULL;
    CHECK(sl_npy_read(pz, &back, &r, &c) == 0);
    CHECK(r == 0 && c == 7);
    free(back);

    /* encode gives exactly the bytes of write */
    unsigned char *enc = NULL;
    size_t elen = 0, flen = 0;
    CHECK(sl_npy_encode(m, R, C, "float16", &enc, &elen) == 0);
    char *file = sl_test_slurp(p16, &flen);
    CHECK(enc && file && elen == flen && memcmp(enc, file, elen) == 0);
    free(enc);
    free(file);

    CHECK(sl_npy_write(p32, m, R, C, "float64") == SL_EINVAL);
    CHECK(count_tmp(tmp) == 0);
    free(m);

    if (!python()) {
        printf("skipped: no numpy (SL_PYTHON empty): numpy.load check of written files\n");
        return;
    }
    /* numpy must read our files with mmap, and its own float16 rounding must agree with ours. */
    char raw[600], script[700], cmd[4096];
    float *m2 = malloc(R * C * sizeof *m2);
    for (size_t i = 0; i < R * C; i++) {
        m2[i] = sample_value(i);
        if (i % 7 == 3) /* exact float16 ties and subnormals */
            m2[i] = (float)(((i * 37) % 2048) + 0.5) * 0x1p-10f * ((i & 1) ? 1.0f : 0x1p-14f);
    }
    m2[R * C - 1] = NAN;
    snprintf(raw, sizeof raw, "%s/raw.f32", tmp);
    sl_test_spew(raw, m2, R * C * 4);
    CHECK(sl_npy_write(p32, m2, R, C, "float32") == 0);
    CHECK(sl_npy_write(p16, m2, R, C, "float16") == 0);
    snprintf(script, sizeof script, "%s/check_npy.py", tmp);
    FILE *f = fopen(script, "w");
    fprintf(f, "import sys, numpy as np\nnp.seterr(all='ignore')\n"
               "p32, p16, pz, raw, R, C = sys.argv[1:7]; R = int(R); C = int(C)\n"
               "want = np.fromfile(raw, dtype='<f4').reshape(R, C)\n"
               "a = np.load(p32, mmap_mode='r')\n"
               "assert a.shape == (R, C) and a.dtype == np.float32 and a.flags.c_contiguous, (a.shape, a.dtype)\n"
               "assert np.array_equal(np.asarray(a), want, equal_nan=True)\n"
               "b = np.load(p16, mmap_mode='r')\n"
               "assert b.shape == (R, C) and b.dtype == np.float16, (b.shape, b.dtype)\n"
               "w16 = want.astype(np.float16)\n"
               "bad = ~((np.asarray(b).view(np.uint16) == w16.view(np.uint16)) | (np.isnan(b) & np.isnan(w16)))\n"
               "assert not bad.any(), list(zip(want[bad][:5], b[bad][:5], w16[bad][:5]))\n"
               "z = np.load(pz, mmap_mode='r')\n"
               "assert z.shape == (0, 7) and z.dtype == np.float32\n"
               "print('numpy ok')\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s' '%s' '%s' %zu %zu", python(), script, p32, p16, pz, raw, R, C);
    CHECK_MSG(system(cmd) == 0, "numpy check failed: %s", cmd);

    /* and we must read what numpy writes, format 1.0 and 2.0 */
    char n1[600], n2[600], n3[600];
    snprintf(n1, sizeof n1, "%s/np1.npy", tmp);
    snprintf(n2, sizeof n2, "%s/np2.npy", tmp);
    snprintf(n3, sizeof n3, "%s/np3.npy", tmp);
    f = fopen(script, "w");
    fprintf(f, "import sys, numpy as np\nnp.seterr(all='ignore')\n"
               "n1, n2, n3, raw, R, C = sys.argv[1:7]; R = int(R); C = int(C)\n"
               "want = np.fromfile(raw, dtype='<f4').reshape(R, C)\n"
               "np.save(n1, want.astype(np.float16))\n"
               "with open(n2, 'wb') as f: np.lib.format.write_array(f, want, version=(2, 0))\n"
               "np.save(n3, np.asfortranarray(want))\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s' '%s' '%s' %zu %zu", python(), script, n1, n2, n3, raw, R, C);
    CHECK_MSG(system(cmd) == 0, "numpy save failed: %s", cmd);
    back = NULL;
    CHECK(sl_npy_read(n1, &back, &r, &c) == 0 && r == R && c == C);
    diff = 0;
    for (size_t i = 0; back && i < R * C; i++) {
        float want = sl_f16_to_f32(sl_f32_to_f16(m2[i]));
        if (isnan(want) ? !isnan(back[i]) : f_bits(want) != f_bits(back[i]))
            diff++;
    }
    CHECK_MSG(diff == 0, "%d values of numpy's float16 file differ", diff);
    free(back);
    back = NULL;
    CHECK(sl_npy_read(n2, &back, &r, &c) == 0 && r == R && c == C);
    CHECK(back && memcmp(back, m2, (R * C - 1) * 4) == 0);
    free(back);
    back = NULL;
    int rc = sl_npy_read(n3, &back, &r, &c); /* R x C with C > 1: numpy writes fortran_order True */
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "fortran"), "rc %d: %s", rc, sl_lasterr());
    free(m2);
}

static void test_read_errors(void)
{
    char p[600];
    float *d = NULL;
    size_t r, c;
    snprintf(p, sizeof p, "%s/bad.npy", tmp);

    sl_test_spew(p, "hello, this is not numpy at all", 31);
    CHECK(sl_npy_read(p, &d, &r, &c) == SL_EFORMAT);
    CHECK(strstr(sl_lasterr(), p) != NULL);

    float v[6] = {1, 2, 3, 4, 5, 6};
    CHECK(sl_npy_write(p, v, 2, 3, "float32") == 0);
    size_t len;
    char *b = sl_test_slurp(p, &len);
    sl_test_spew(p, b, len - 1); /* truncated data */
    CHECK(sl_npy_read(p, &d, &r, &c) == SL_EFORMAT && strstr(sl_lasterr(), "size"));
    sl_test_spew(p, b, 40); /* truncated header */
    CHECK(sl_npy_read(p, &d, &r, &c) == SL_EFORMAT);
    char *e = malloc(len + 4);
    memcpy(e, b, len);
    memcpy(e + len, "xxxx", 4);
    sl_test_spew(p, e, len + 4); /* trailing garbage */
    CHECK(sl_npy_read(p, &d, &r, &c) == SL_EFORMAT);
    memcpy(e, b, len);
    char *q = strstr(e + 10, "<f4");
    q[2] = '8'; /* '<f8' */
    sl_test_spew(p, e, len);
    CHECK(sl_npy_read(p, &d, &r, &c) == SL_EFORMAT && strstr(sl_lasterr(), "dtype"));
    memcpy(e, b, len);
    e[6] = 3; /* version 3.0 */
    sl_test_spew(p, e, len);
    CHECK(sl_npy_read(p, &d, &r, &c) == SL_EFORMAT && strstr(sl_lasterr(), "version"));
    memcpy(e, b, len);
    q = strstr(e + 10, "(2, 3)");
    memcpy(q, "(2,3,)", 6); /* same length, still 2-D and valid Python */
    sl_test_spew(p, e, len);
    CHECK(sl_npy_read(p, &d, &r, &c) == 0 && r == 2 && c == 3 && d && d[5] == 6.0f);
    free(d);
    d = NULL;
    memcpy(e, b, len);
    q = strstr(e + 10, "(2, 3)");
    memcpy(q, "(6,)  ", 6); /* 1-D */
    sl_test_spew(p, e, len);
    CHECK(sl_npy_read(p, &d, &r, &c) == SL_EFORMAT);
    free(e);
    free(b);
    CHECK(d == NULL);

    snprintf(p, sizeof p, "%s/missing.npy", tmp);
    CHECK(sl_npy_read(p, &d, &r, &c) == -ENOENT);
}

/* Must run before any other atomic write: the temp-name counter starts at 0. */
static void test_tmp_reuse_and_sweep(void)
{
    char dir[600], p[800];
    snprintf(dir, sizeof dir, "%s/reuse", tmp);
    CHECK(sl_mkdirs(dir) == 0);
    snprintf(p, sizeof p, "%s/out.bin", dir);
    /* a killed earlier run under the same pid (containers) left these */
    for (int k = 0; k < 20; k++) {
        char t[900];
        snprintf(t, sizeof t, "%s.tmp-%ld-%d", p, (long)getpid(), k);
        sl_test_spew(t, "stale", 5);
    }
    int rc = sl_write_file_atomic(p, "fresh", 5);
    CHECK_MSG(rc == 0, "rc %d: %s", rc, sl_lasterr());
    size_t len;
    char *b = sl_test_slurp(p, &len);
    CHECK(b && len == 5 && !memcmp(b, "fresh", 5));
    free(b);
    CHECK(count_tmp(dir) == 20);
    const char *keep[] = {"x.tmp-", "y.tmp-12-", "z.tmp-a-1", ".tmp-1-2", "w.tmp-1-2.bak"};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, keep[i]);
        sl_test_spew(p, "k", 1);
    }
    snprintf(p, sizeof p, "%s/other.wav.tmp-99-7", dir);
    sl_test_spew(p, "s", 1);
    CHECK(sl_atomic_sweep(dir) == 21);
    CHECK(count_tmp(dir) == 5);
    CHECK(sl_atomic_sweep(dir) == 0);
    snprintf(p, sizeof p, "%s/nonexistent", dir);
    CHECK(sl_atomic_sweep(p) == 0);

    /* one path's temporaries only: others writing into the same folder keep theirs */
    char sd[700];
    snprintf(sd, sizeof sd, "%s/one", tmp);
    CHECK(sl_mkdirs(sd) == 0);
    const char *names[] = {"a.wav.tmp-5-1", "a.wav.tmp-6-2", "b.wav.tmp-5-3", "a.wav.bak.tmp-5-4", "xa.wav.tmp-1-1",
                           "a.wav.tmp-x-1", "a.wav"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", sd, names[i]);
        sl_test_spew(p, "t", 1);
    }
    snprintf(p, sizeof p, "%s/a.wav", sd);
    CHECK(sl_atomic_sweep_for(p) == 2);
    CHECK(sl_atomic_sweep_for(p) == 0);
    CHECK(count_tmp(sd) == 4); /* b.wav's, a.wav.bak's, xa.wav's and the malformed a.wav.tmp-x-1 */
    snprintf(p, sizeof p, "%s/missing-folder/a.wav", sd);
    CHECK(sl_atomic_sweep_for(p) == 0);
}

static void test_atomic(void)
{
    char dir[600], p[700], bad[700];
    snprintf(dir, sizeof dir, "%s/atomic", tmp);
    CHECK(sl_mkdirs(dir) == 0);
    snprintf(p, sizeof p, "%s/file.bin", dir);
    CHECK(sl_write_file_atomic(p, "first", 5) == 0);
    CHECK(sl_write_file_atomic(p, "second!", 7) == 0);
    size_t len;
    char *b = sl_test_slurp(p, &len);
    CHECK(b && len == 7 && memcmp(b, "second!", 7) == 0);
    free(b);
    CHECK(sl_write_file_atomic(p, "", 0) == 0);
    b = sl_test_slurp(p, &len);
    CHECK(b && len == 0);
    free(b);
    CHECK(count_tmp(dir) == 0);

    /* A folder that cannot exist: its parent is a regular file (root ignores
     * permission bits, so a read-only folder would not fail in CI). */
    snprintf(bad, sizeof bad, "%s/file.bin/sub/x.npy", dir);
    float v[4] = {1, 2, 3, 4};
    int rc = sl_npy_write(bad, v, 2, 2, "float32");
    CHECK_MSG(rc == -ENOTDIR, "rc %d", rc);
    CHECK(strstr(sl_lasterr(), bad) != NULL);
    rc = sl_write_file_atomic(bad, "x", 1);
    CHECK(rc == -ENOTDIR);
    struct stat st;
    CHECK(stat(bad, &st) != 0);
    CHECK(sl_write_file_atomic("/proc/definitely/not/here.npy", "x", 1) < 0);

    /* A full disk, injected: the old file stays whole, no temp file remains. */
    snprintf(p, sizeof p, "%s/keep.npy", dir);
    float *m = malloc(1000 * 64 * sizeof *m);
    for (int i = 0; i < 1000 * 64; i++)
        m[i] = (float)i;
    CHECK(sl_npy_write(p, m, 10, 64, "float32") == 0);
    char *before = sl_test_slurp(p, &len);
    size_t blen = len;
    long long budgets[] = {0, 1, 100, 128, 5000, 255999};
    for (size_t k = 0; k < sizeof budgets / sizeof budgets[0]; k++) {
        sl_io_fault_enospc_after(budgets[k]);
        rc = sl_npy_write(p, m, 1000, 64, k & 1 ? "float32" : "float16");
        if (k & 1 || budgets[k] < 128000) {
            CHECK_MSG(rc == -ENOSPC, "budget %lld: rc %d", budgets[k], rc);
            CHECK(strstr(sl_lasterr(), p) && strstr(sl_lasterr(), "No space left"));
        }
        sl_io_fault_enospc_after(-1);
        char *after = sl_test_slurp(p, &len);
        if (rc < 0)
            CHECK(after && len == blen && memcmp(after, before, len) == 0);
        free(after);
        CHECK(count_tmp(dir) == 0);
    }
    sl_io_fault_enospc_after(3);
    CHECK(sl_write_file_atomic(p, "0123456789", 10) == -ENOSPC);
    sl_io_fault_enospc_after(-1);
    char *after = sl_test_slurp(p, &len);
    CHECK(after && len == blen && memcmp(after, before, len) == 0);
    free(after);
    snprintf(p, sizeof p, "%s/new.npy", dir);
    sl_io_fault_enospc_after(200);
    CHECK(sl_npy_write(p, m, 1000, 64, "float32") == -ENOSPC);
    sl_io_fault_enospc_after(-1);
    CHECK(stat(p, &st) != 0 && errno == ENOENT);
    CHECK(count_tmp(dir) == 0);
    CHECK(sl_npy_write(p, m, 1000, 64, "float32") == 0);
    CHECK(stat(p, &st) == 0 && st.st_size == 128 + 1000 * 64 * 4);

    /* A failed fsync (injected) of the temporary file: the old file stays whole;
     * of the folder after the rename: the file is not reported written and is
     * not left in place. Neither leaves a temporary file. */
    snprintf(p, sizeof p, "%s/keep.npy", dir);
    sl_io_fault_fsync("keep.npy.tmp-");
    CHECK(sl_npy_write(p, m, 1000, 64, "float16") == -EIO);
    CHECK(strstr(sl_lasterr(), "fsync") && strstr(sl_lasterr(), "keep.npy"));
    sl_io_fault_fsync(NULL);
    after = sl_test_slurp(p, &len);
    CHECK(after && len == blen && memcmp(after, before, len) == 0);
    free(after);
    CHECK(count_tmp(dir) == 0);
    char sub[620];
    snprintf(sub, sizeof sub, "%s/syncdir", dir);
    CHECK(sl_mkdirs(sub) == 0);
    snprintf(p, sizeof p, "%s/v.npy", sub);
    sl_io_fault_fsync("dir:/syncdir");
    CHECK(sl_npy_write(p, m, 10, 64, "float32") == -EIO);
    sl_io_fault_fsync(NULL);
    CHECK(strstr(sl_lasterr(), "fsync of its folder"));
    CHECK(stat(p, &st) != 0 && count_tmp(sub) == 0);
    CHECK(sl_npy_write(p, m, 10, 64, "float32") == 0 && stat(p, &st) == 0);
    free(before);
    free(m);
}

static void test_mkdirs(void)
{
    char d[700], f[700];
    struct stat st;
    snprintf(d, sizeof d, "%s/a/b//c/d/", tmp);
    CHECK(sl_mkdirs(d) == 0);
    CHECK(stat(d, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(sl_mkdirs(d) == 0); /* exists: fine */
    snprintf(f, sizeof f, "%s/a/b/c/d/e/f/file.txt", tmp);
    CHECK(sl_mkdirs_for(f) == 0);
    snprintf(d, sizeof d, "%s/a/b/c/d/e/f", tmp);
    CHECK(stat(d, &st) == 0 && S_ISDIR(st.st_mode));
    sl_test_spew(f, "x", 1);
    snprintf(d, sizeof d, "%s/a/b/c/d/e/f/file.txt/g", tmp);
    CHECK(sl_mkdirs(d) == -ENOTDIR);
    CHECK(strstr(sl_lasterr(), "file.txt") != NULL);
    CHECK(sl_mkdirs_for("plainname") == 0);
    CHECK(sl_mkdirs("/") == 0);
}

static char *json_of(const char *s)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    sl_json_str(f, s);
    fclose(f);
    return buf;
}

static void test_json(void)
{
    struct {
        const char *in, *out;
    } cases[] = {
        {"plain", "\"plain\""},
        {"a\"b\\c", "\"a\\\"b\\\\c\""},
        {"l1\nl2\tx\r", "\"l1\\nl2\\tx\\r\""},
        {"\x01\x1f\x7f", "\"\\u0001\\u001f\x7f\""},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xb5", "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\xb5\""},
        {"bad\xff", "\"bad\xef\xbf\xbd\""},
        {"cut\xc3", "\"cut\xef\xbf\xbd\""},
        {"over\xc0\xaf", "\"over\xef\xbf\xbd\xef\xbf\xbd\""},
        {"sur\xed\xa0\x80", "\"sur\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"big\xf4\x90\x80\x80", "\"big\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""},
        {"\xe2\x82", "\"\xef\xbf\xbd\xef\xbf\xbd\""},
        {"", "\"\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = json_of(cases[i].in);
        CHECK_MSG(got && strcmp(got, cases[i].out) == 0, "case %zu: %s", i, got ? got : "(null)");
        free(got);
    }
    char *n = json_of(NULL);
    CHECK(n && strcmp(n, "null") == 0);
    free(n);

    if (!python()) {
        printf("skipped: no numpy (SL_PYTHON empty): json.loads check of escaped strings\n");
        return;
    }
    /* Every byte string must come out as JSON Python accepts, decoding to the input
     * where the input was valid UTF-8. */
    char path[600], script[600], cmd[2048];
    snprintf(path, sizeof path, "%s/strings.jsonl", tmp);
    FILE *f = fopen(path, "w");
    uint32_t s = 7;
    for (int k = 0; k < 300; k++) {
        char str[40];
        int len = 1 + k % 30;
        for (int i = 0; i < len; i++) {
            s = s * 1103515245u + 12345u;
            str[i] = (char)(1 + (s >> 16) % 255);
        }
        str[len] = 0;
        fputs("[", f);
        sl_json_str(f, str);
        fputs(", \"", f);
        for (int i = 0; i < len; i++)
            fprintf(f, "%02x", (unsigned char)str[i]);
        fputs("\"]\n", f);
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fputs("[", f);
        sl_json_str(f, cases[i].in);
        fputs(", \"", f);
        for (const char *p = cases[i].in; *p; p++)
            fprintf(f, "%02x", (unsigned char)*p);
        fputs("\"]\n", f);
    }
    fclose(f);
    snprintf(script, sizeof script, "%s/check_json.py", tmp);
    f = fopen(script, "w");
    fprintf(f, "import sys, json\n"
               "n = 0\n"
               "for line in open(sys.argv[1], 'rb'):\n"
               "    s, hx = json.loads(line.decode('utf-8'))\n"
               "    raw = bytes.fromhex(hx)\n"
               "    try:\n"
               "        assert s == raw.decode('utf-8'), (s, raw)\n"
               "    except UnicodeDecodeError:\n"
               "        assert s.replace('\\ufffd', '') == raw.decode('utf-8', 'ignore').replace('\\ufffd', ''), (s, raw)\n"
               "    n += 1\n"
               "assert n > 300\n");
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", python(), script, path);
    CHECK_MSG(system(cmd) == 0, "json check failed: %s", cmd);
}

int main(void)
{
    tmp = sl_test_tmpdir();
    test_tmp_reuse_and_sweep();
    test_f16_conversion();
    test_roundtrip();
    test_read_errors();
    test_atomic();
    test_mkdirs();
    test_json();
    sl_test_rmdir(tmp);
    return sl_test_finish("npy");
}
