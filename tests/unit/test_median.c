/* CPU median filters (kernels/cpu/cpu_median.c), exhaustively against a naive
 * reference, on every code path (AVX-512 and AVX2 where the CPU has them, and
 * the portable one):
 *  - many (batch, T, F, kernel) shapes: T, F = 1 .. 70 around multiples of the
 *    16-lane groups (the overlapping last group, the padded axis shorter than
 *    16), kernels 1 .. 255 and up to 4095, longer than the axis (scipy
 *    'reflect' repeated periodically);
 *  - inputs with many ties, -0 and +0, negatives, infinities, subnormals and
 *    NaNs of both signs;
 *  - the result must equal, bit for bit, the element of rank k/2 in the total
 *    order of order-preserving integer keys (-0 < +0, NaNs beyond the
 *    infinities: the order of the CUDA kernels), and for NaN-free inputs it must
 *    also compare equal (==) to the middle of a plain float sort (scipy);
 *  - the AVX-512, AVX2 and portable paths agree bit for bit; outputs are
 *    poisoned first;
 *  - the other AVX2 paths of the CPU backend (magnitude, hpss masks for power
 *    1 and 2, apply_mask, the overlap-add / irfft loops) equal their portable
 *    twins bit for bit on inputs with specials, every length 0 .. 40 (vector
 *    bodies and scalar tails), and magnitude equals hypotf on finite inputs.
 * Random seed printed; SL_TEST_SEED replays it. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sl_log.h"
#include "kernels/cpu/cpu_simd.h"
#include "kernels/ops.h"
#include "sl_test.h"

static uint64_t rng_state;
static uint64_t rnd64(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int32_t key_of(float v)
{
    int32_t u;
    memcpy(&u, &v, sizeof u);
    return u < 0 ? (int32_t)(u ^ 0x7fffffff) : u;
}

static int cmp_key(const void *a, const void *b)
{
    int32_t x = key_of(*(const float *)a), y = key_of(*(const float *)b);
    return (x > y) - (x < y);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* scipy.ndimage 'reflect', written independently of the library: mirror until inside. */
static size_t ref_reflect(ptrdiff_t i, size_t n)
{
    while (i < 0 || i >= (ptrdiff_t)n) {
        if (i < 0)
            i = -i - 1;
        else
            i = 2 * (ptrdiff_t)n - 1 - i;
    }
    return (size_t)i;
}

/* Input kinds: 0 uniform signed, 1 few distinct values (ties) with signed zeros,
 * 2 non-negative magnitudes with zeros, 3 specials (inf, subnormal, NaN). */
static float draw(int kind)
{
    uint64_t r = rnd64();
    float u = (float)((double)(r >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    switch (kind) {
    case 0:
        return u;
    case 1: {
        static const float few[] = {-1.0f, -0.0f, 0.0f, 0.5f, 0.5f, 2.0f, -0.0f, 0.0f};
        return few[(r >> 5) % 8];
    }
    case 2:
        return (r >> 3) % 4 == 0 ? 0.0f : fabsf(u);
    default: {
        switch ((r >> 7) % 10) {
        case 0: return INFINITY;
        case 1: return -INFINITY;
        case 2: return 1e-40f;
        case 3: return -1e-40f;
        case 4: return NAN;
        case 5: return -NAN;
        case 6: return -0.0f;
        case 7: return 0.0f;
        default: return u;
        }
    }
    }
}

/* Naive median of in[batch][T][F] along axis (0: frames, 1: bins); out_key by
 * key order, out_flt by a float sort (NULL: skipped). */
static void ref_median(const float *in, size_t batch, size_t T, size_t F, int k, int axis, float *out_key,
                       float *out_flt)
{
    float *w = malloc((size_t)k * sizeof(float));
    for (size_t b = 0; b < batch; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t f = 0; f < F; f++) {
                for (int j = 0; j < k; j++) {
                    ptrdiff_t o = j - k / 2;
                    size_t tt = axis == 0 ? ref_reflect((ptrdiff_t)t + o, T) : t;
                    size_t ff = axis == 1 ? ref_reflect((ptrdiff_t)f + o, F) : f;
                    w[j] = in[(b * T + tt) * F + ff];
                }
                size_t i = (b * T + t) * F + f;
                qsort(w, (size_t)k, sizeof(float), cmp_key);
                out_key[i] = w[k / 2];
                if (out_flt) {
                    qsort(w, (size_t)k, sizeof(float), cmp_float);
                    out_flt[i] = w[k / 2];
                }
            }
    free(w);
}

static size_t bit_mismatches(const float *a, const float *b, size_t n, size_t *first)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
            if (!bad)
                *first = i;
            bad++;
        }
    return bad;
}

static int n_cases;

static void run_case(sl_op_ctx *ctx, size_t batch, size_t T, size_t F, int k, int kind)
{
    static int avx512_base = -1; /* as the environment set it (STEMLINE_CPU_AVX512) */
    if (avx512_base < 0)
        avx512_base = sl_cpu_simd_avx512();
    const size_t n = batch * T * F;
    float *x = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float)), *simd = malloc(n * sizeof(float));
    float *want = malloc(n * sizeof(float)), *wflt = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = draw(kind);
    for (int axis = 0; axis < 2; axis++) {
        ref_median(x, batch, T, F, k, axis, want, kind == 3 ? NULL : wflt);
        for (int path = 2; path >= 0; path--) { /* AVX-512 (where the CPU has it and it is on), AVX2, portable */
            sl_cpu_simd_set(path > 0);
            sl_cpu_simd_set_avx512(path == 2 && avx512_base);
            float *dst = path ? simd : got;
            memset(dst, 0xFF, n * sizeof(float)); /* NaN poison */
            int rc = axis == 0 ? sl_op_median_time(ctx, batch, T, F, k, x, dst)
                               : sl_op_median_freq(ctx, batch, T, F, k, x, dst);
            size_t first = 0, bad = bit_mismatches(dst, want, n, &first);
            CHECK_MSG(rc == 0 && bad == 0,
                      "%s path=%s b%zu T%zu F%zu k%d kind%d: rc %d, %zu of %zu differ (first at %zu: %a vs %a)",
                      axis ? "freq" : "time",
                      sl_cpu_simd_avx512() ? "avx512" : path && sl_cpu_simd_avx2() ? "avx2" : "portable", batch,
                      T, F, k, kind, rc, bad, n, first, (double)dst[first], (double)want[first]);
            if (kind != 3) {
                size_t neq = 0;
                for (size_t i = 0; i < n; i++)
                    neq += !(dst[i] == wflt[i]);
                CHECK_MSG(neq == 0, "%s b%zu T%zu F%zu k%d kind%d: %zu values differ from a float sort",
                          axis ? "freq" : "time", batch, T, F, k, kind, neq);
            }
            if (path == 2) { /* the AVX-512 pass against the AVX2 one, next */
                memcpy(got, simd, n * sizeof(float));
            } else if (path == 1) {
                size_t f2 = 0;
                CHECK_MSG(bit_mismatches(simd, got, n, &f2) == 0, "avx512 and avx2 paths differ b%zu T%zu F%zu k%d",
                          batch, T, F, k);
            }
        }
        size_t first = 0;
        CHECK_MSG(bit_mismatches(simd, got, n, &first) == 0, "paths differ b%zu T%zu F%zu k%d", batch, T, F, k);
        n_cases++;
    }
    sl_cpu_simd_set(1);
    sl_cpu_simd_set_avx512(avx512_base);
    free(x); free(got); free(simd); free(want); free(wflt);
}

static float *fill(size_t n, int kind)
{
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = draw(kind);
    return x;
}

/* Element-wise results: same bits, or both NaN (C leaves the payload and sign of
 * a NaN result unspecified, e.g. NaN * -NaN depends on the operand order the
 * compiler picks). */
static size_t value_mismatches(const float *a, const float *b, size_t n, size_t *first)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(isnan(a[i]) && isnan(b[i]))) {
            if (!bad)
                *first = i;
            bad++;
        }
    return bad;
}

/* op(AVX2) vs op(portable): same bits (NaN: any NaN). */
static void elementwise_paths(sl_op_ctx *ctx)
{
    for (size_t n = 0; n <= 40; n++)
        for (int kind = 0; kind < 4; kind++) {
            float *c = fill(2 * n, kind), *h = fill(n, kind), *p = fill(n, kind);
            float *out[2][4];
            for (size_t i = 0; i < n; i++) { /* the masks take magnitudes */
                h[i] = fabsf(h[i]);
                p[i] = fabsf(p[i]);
            }
            for (int path = 0; path < 2; path++) {
                sl_cpu_simd_set(path);
                for (int j = 0; j < 4; j++) {
                    out[path][j] = malloc((2 * n + 1) * sizeof(float));
                    memset(out[path][j], 0xFF, (2 * n + 1) * sizeof(float));
                }
                CHECK(n == 0 || sl_op_magnitude(ctx, n, c, out[path][0]) == 0);
                CHECK(n == 0 || sl_op_apply_mask(ctx, n, c, h, out[path][1]) == 0);
                CHECK(n == 0 || sl_op_hpss_masks(ctx, n, h, p, kind % 2 ? 1.0f : 2.0f, kind == 2 ? 1.0f : 2.0f,
                                                 kind == 2 ? 1.0f : 3.0f, out[path][2], out[path][3]) == 0);
            }
            sl_cpu_simd_set(1);
            size_t first = 0;
            CHECK_MSG(value_mismatches(out[0][0], out[1][0], n, &first) == 0, "magnitude n%zu kind%d", n, kind);
            CHECK_MSG(value_mismatches(out[0][1], out[1][1], 2 * n, &first) == 0, "apply_mask n%zu kind%d", n, kind);
            CHECK_MSG(value_mismatches(out[0][2], out[1][2], n, &first) == 0, "mask_h n%zu kind%d", n, kind);
            CHECK_MSG(value_mismatches(out[0][3], out[1][3], n, &first) == 0, "mask_p n%zu kind%d", n, kind);
            for (size_t i = 0; i < n; i++)
                if (isfinite(c[2 * i]) && isfinite(c[2 * i + 1])) {
                    float want = hypotf(c[2 * i], c[2 * i + 1]);
                    CHECK_MSG(memcmp(&out[1][0][i], &want, sizeof want) == 0, "magnitude %a %a: %a, hypotf %a",
                              (double)c[2 * i], (double)c[2 * i + 1], (double)out[1][0][i], (double)want);
                }
            for (int path = 0; path < 2; path++)
                for (int j = 0; j < 4; j++)
                    free(out[path][j]);
            free(c); free(h); free(p);
        }
    /* overlap-add and irfft (vector loops inside): a short STFT round trip on both paths */
    const sl_stft_cfg cfg = {32, 8, 1, SL_PAD_REFLECT, 0};
    const size_t len = 203, nf = sl_stft_n_frames(&cfg, len), nb = 17;
    float w[32], *x = fill(len, 0), *fr = malloc(nf * 32 * sizeof(float)), *sp = malloc(nf * nb * 2 * sizeof(float));
    float *y[2] = {malloc(len * sizeof(float)), malloc(len * sizeof(float))};
    sl_window_hann(w, 32, 32);
    CHECK(sl_op_frame(ctx, &cfg, x, 1, len, 0, nf, w, fr) == 0);
    CHECK(sl_op_rfft(ctx, 32, nf, fr, sp, 1.0f) == 0);
    for (int path = 0; path < 2; path++) {
        sl_cpu_simd_set(path);
        CHECK(sl_op_irfft(ctx, 32, nf, sp, fr, 1.0f / 32) == 0);
        CHECK(sl_op_overlap_add(ctx, &cfg, 1, nf, fr, w, len, y[path]) == 0);
    }
    sl_cpu_simd_set(1);
    size_t first = 0;
    CHECK_MSG(value_mismatches(y[0], y[1], len, &first) == 0, "irfft + overlap_add paths differ at %zu", first);
    free(x); free(fr); free(sp); free(y[0]); free(y[1]);
}

int main(void)
{
    const char *seed_env = getenv("SL_TEST_SEED");
    rng_state = seed_env ? strtoull(seed_env, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    if (!rng_state)
        rng_state = 1;
    printf("test_median: random seed %llu (SL_TEST_SEED to replay); AVX2 path %s\n",
           (unsigned long long)rng_state, sl_cpu_simd_avx2() ? "available" : "not available (portable only)");
    sl_log_set_level(SL_LOG_WARN);
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    if (!ctx)
        return sl_test_finish("test_median");

    /* a grid of small shapes: every T, F in {1,2,3,7,15,16,17,31,32,33} x kernels */
    static const size_t dims[] = {1, 2, 3, 7, 15, 16, 17, 31, 32, 33};
    static const int ks[] = {1, 3, 5, 7, 15, 31, 33, 63};
    const size_t nd = sizeof dims / sizeof dims[0];
    for (size_t a = 0; a < nd; a++)
        for (size_t c = 0; c < nd; c++)
            for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
                run_case(ctx, 1 + (a + c + j) % 2, dims[a], dims[c], ks[j], (int)((a * nd + c + j) % 4));
    /* larger and random shapes, long kernels (to the op's limit of 4095) */
    run_case(ctx, 1, 70, 1025, 31, 2);
    run_case(ctx, 2, 130, 49, 255, 1);
    run_case(ctx, 1, 5, 7, 401, 0);
    run_case(ctx, 1, 40, 50, 255, 3);
    run_case(ctx, 1, 9, 20, 4095, 1);
    run_case(ctx, 1, 60, 5, 4095, 0);
    for (int i = 0; i < 60; i++) {
        size_t T = 1 + rnd64() % 90, F = 1 + rnd64() % 90, batch = 1 + rnd64() % 3;
        int k = 1 + 2 * (int)(rnd64() % 64);
        run_case(ctx, batch, T, F, k, (int)(rnd64() % 4));
    }
    /* the same against the reference with the line groups split over 3 threads: group
     * counts around the split, line counts not a multiple of 16 (the overlapping last
     * group), batches below and above the thread count */
    CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
    run_case(ctx, 1, 70, 1025, 31, 2);
    run_case(ctx, 1, 1025, 70, 31, 1);
    run_case(ctx, 2, 333, 47, 31, 0);
    run_case(ctx, 1, 47, 333, 15, 3);
    run_case(ctx, 1, 33, 2049, 9, 0);
    run_case(ctx, 1, 2049, 33, 9, 1);
    run_case(ctx, 4, 100, 100, 31, 2);
    run_case(ctx, 1, 600, 8, 63, 0);
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    printf("test_median: %d shape/axis cases, each on every path (AVX-512: %s)\n", n_cases,
           sl_cpu_simd_avx512() ? "yes" : "no");
    elementwise_paths(ctx);
    sl_op_ctx_close(ctx);
    return sl_test_finish("test_median");
}
