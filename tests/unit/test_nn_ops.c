/* The neural-network ops of the CPU reference backend against independent
 * double-precision implementations written here from the definitions
 * (kernels/ops.h, torch.nn.Linear / LSTM), plus properties of the Wiener
 * filter (the openunmix-exact check is tests/unit/test_umx.c against the
 * official package). Random inputs, seed printed (SL_TEST_SEED replays). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/cpu_simd.h"
#include "kernels/ops.h"
#include "sl_ref.h"
#include "sl_test.h"

/* x rounded to bfloat16, nearest even (the bf16 mode's inputs). */
static double bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
    float r;
    memcpy(&r, &u, 4);
    return r;
}

/* A gemm in the context's precision (sl_op_ctx_precision: tf32 = three bf16 products on AMX,
 * tolerance 4e-5; bf16 = one, checked against the product of the bf16-rounded inputs within
 * 2e-5 and the exact one within 3e-2; fp32 1e-5), force: sl_gemm_args.force_fp32. */
static void test_gemm_x(sl_op_ctx *ctx, size_t batch, size_t m, size_t n, size_t k, sl_act act, int force,
                        float **out)
{
    const size_t ldx = k + 2, ldy = n + 1;
    float *x = sl_ref_rnd(batch * m * ldx, -1, 1), *w = sl_ref_rnd(batch * n * k, -1, 1), *b = sl_ref_rnd(batch * n, -1, 1),
          *mul = sl_ref_rnd(batch * m * n, 0, 2), *y = malloc(batch * m * ldy * sizeof(float));
    sl_gemm_args a = {.batch = batch, .m = m, .n = n, .k = k, .x = x, .ldx = ldx, .stride_x = m * ldx, .w = w,
                      .ldw = k, .stride_w = n * k, .bias = b, .stride_bias = n, .act = act, .mul = mul, .ldmul = n,
                      .stride_mul = m * n, .y = y, .ldy = ldy, .stride_y = m * ldy, .force_fp32 = force};
    CHECK_MSG(sl_op_gemm(ctx, &a) == 0, "gemm: %s", sl_lasterr());
    const sl_precision prec = force ? SL_PREC_FP32 : sl_op_ctx_precision(ctx);
    const int tiles = prec != SL_PREC_FP32 && m >= 128 && n >= 16 && k >= 16 && sl_cpu_amx(); /* sl_cpu_gemm's AMX test */
    double *want = malloc(batch * m * n * sizeof(double)), *want16 = malloc(batch * m * n * sizeof(double)),
           *mag = malloc(batch * m * n * sizeof(double));
    float *got = malloc(batch * m * n * sizeof(float));
    for (size_t bb = 0; bb < batch; bb++)
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double s = b[bb * n + j], s16 = s, sa = fabs(s);
                for (size_t kk = 0; kk < k; kk++) {
                    const float xv = x[bb * m * ldx + i * ldx + kk], wv = w[bb * n * k + j * k + kk];
                    s += (double)xv * wv;
                    sa += fabs((double)xv * wv);
                    s16 += bf16_round(xv) * bf16_round(wv);
                }
                want[(bb * m + i) * n + j] = sl_ref_act(act, s) * mul[(bb * m + i) * n + j];
                want16[(bb * m + i) * n + j] = sl_ref_act(act, s16) * mul[(bb * m + i) * n + j];
                mag[(bb * m + i) * n + j] = sa * fabs(mul[(bb * m + i) * n + j]);
                got[(bb * m + i) * n + j] = y[bb * m * ldy + i * ldy + j];
            }
    double e = sl_ref_err(got, want, batch * m * n);
    /* fp32: an element whose sum nearly cancels (bias + x.w close to 0: the 1 x 1 x 1 case with
     * some seeds) is measured against the rounding bound of its own terms instead, the textbook
     * (k + 3) u (|b| + sum |x w|) |mul| with u = 2^-24 and 1.2 for the activation's slope; every
     * other element keeps the relative tolerance. */
    size_t cancel = 0;
    if (e > 1e-5 && !tiles) {
        double mx = 0, worst = 0;
        for (size_t i = 0; i < batch * m * n; i++)
            mx = fmax(mx, fabs(want[i]));
        for (size_t i = 0; i < batch * m * n; i++) {
            const double d = isnan(got[i]) ? INFINITY : fabs(got[i] - want[i]);
            if (d <= 1e-5 * mx)
                worst = fmax(worst, d / (mx > 0 ? mx : 1));
            else if (d <= (double)(k + 3) * 0x1p-24 * 1.2 * mag[i])
                cancel++;
            else
                worst = INFINITY;
        }
        e = worst;
    }
    if (cancel)
        printf("  (%zu elements near cancellation within their fp32 rounding bound)", cancel);
    const double tol = !tiles || prec == SL_PREC_BF16X6 ? 1e-5 : prec == SL_PREC_TF32 ? 4e-5 : 3e-2;
    printf("  gemm   b%zu m%zu n%zu k%zu act %d %s: rel err %.3g (tol %g)", batch, m, n, k, (int)act,
           tiles ? sl_precision_name(prec) : "fp32", e, tol);
    CHECK_MSG(e <= tol, "gemm error %g", e);
    if (tiles && prec == SL_PREC_BF16) {
        const double e16 = sl_ref_err(got, want16, batch * m * n);
        printf(", to the bf16-rounded inputs' product %.3g (tol 2e-5)", e16);
        CHECK_MSG(e16 <= 2e-5, "bf16 gemm: %g from the product of the bf16-rounded inputs", e16);
    }
    printf("\n");
    if (out)
        *out = got;
    else
        free(got);
    free(x);
    free(w);
    free(b);
    free(mul);
    free(y);
    free(want);
    free(want16);
    free(mag);
}

static void test_gemm(sl_op_ctx *ctx, size_t batch, size_t m, size_t n, size_t k, sl_act act)
{
    test_gemm_x(ctx, batch, m, n, k, act, 0, NULL);
}

/* The same random problem (same seed) in precision prec on the AMX tiles, with force_fp32,
 * in fp32, through the fp32 path (sl_cpu_simd_set(0) turns AMX off too), and on 1 and 3
 * threads: within tolerance, the AMX result differs from the fp32 one where AMX runs (so the
 * path was taken), force_fp32 and the fp32 mode give the same bits, and a thread split changes
 * no bit. Without AMX the mode in effect is fp32, named so in the device string. */
static void test_gemm_prec(sl_op_ctx *ctx, sl_precision prec, size_t batch, size_t m, size_t n, size_t k,
                           sl_act act)
{
    float *amx1, *amx3, *plain, *forced, *fp32;
    const uint64_t seed = *sl_ref_rng();
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    CHECK(sl_op_ctx_set_precision(ctx, prec) == 0);
    const int on = sl_op_ctx_precision(ctx) == prec;
    CHECK_MSG(on == sl_cpu_amx(), "%s in effect on a CPU %s AMX", sl_precision_name(sl_op_ctx_precision(ctx)),
              sl_cpu_amx() ? "with" : "without");
    char want_dev[64];
    snprintf(want_dev, sizeof want_dev, on ? "precision %s (gemm as" : "precision fp32 (%s asked for",
             sl_precision_name(prec));
    CHECK_MSG(strstr(sl_op_ctx_device(ctx), want_dev) != NULL, "device %s", sl_op_ctx_device(ctx));
    test_gemm_x(ctx, batch, m, n, k, act, 0, &amx1);
    *sl_ref_rng() = seed;
    test_gemm_x(ctx, batch, m, n, k, act, 1, &forced);
    *sl_ref_rng() = seed;
    CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
    test_gemm_x(ctx, batch, m, n, k, act, 0, &amx3);
    *sl_ref_rng() = seed;
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    CHECK(sl_op_ctx_set_precision(ctx, SL_PREC_FP32) == 0);
    CHECK(strstr(sl_op_ctx_device(ctx), "precision") == NULL);
    test_gemm_x(ctx, batch, m, n, k, act, 0, &fp32);
    *sl_ref_rng() = seed;
    CHECK(sl_op_ctx_set_precision(ctx, prec) == 0);
    sl_cpu_simd_set(0);
    CHECK(!sl_cpu_amx());
    test_gemm_x(ctx, batch, m, n, k, act, 0, &plain);
    sl_cpu_simd_set(1);
    CHECK(sl_op_ctx_set_precision(ctx, SL_PREC_FP32) == 0);
    const size_t cnt = batch * m * n;
    CHECK_MSG(!memcmp(amx1, amx3, cnt * sizeof(float)), "%s gemm differs between 1 and 3 threads",
              sl_precision_name(prec));
    CHECK_MSG(!memcmp(forced, fp32, cnt * sizeof(float)), "force_fp32 differs from the fp32 mode");
    printf("  gemm   %s on AMX: %s\n", sl_precision_name(prec), on ? "yes" : "no (fp32 path)");
    const char *env = getenv("SL_CPU_AMX");
    if (env && !strcmp(env, "0"))
        CHECK_MSG(!sl_cpu_amx(), "SL_CPU_AMX=0 did not turn the AMX path off");
    if (on && m >= 128)
        CHECK_MSG(memcmp(amx1, plain, cnt * sizeof(float)) != 0 && memcmp(amx1, fp32, cnt * sizeof(float)) != 0,
                  "%s gemm did not take the AMX path", sl_precision_name(prec));
    if (!on || m < 128)
        CHECK_MSG(!memcmp(amx1, fp32, cnt * sizeof(float)), "%s without AMX differs from fp32", sl_precision_name(prec));
    free(amx1);
    free(amx3);
    free(plain);
    free(forced);
    free(fp32);
}

/* A residual in place (add == y) in each precision, rows not a multiple of the AMX blocks: y =
 * act(x w^T + bias) + y within the mode's tolerance, the same bits on 1 and 3 threads. */
/* The library path's split: whole tiles of a grid decided by the shape alone, so that any
 * number of parts issues the same library calls (OpenBLAS's Zen kernels give an element
 * bits that depend on the shape of the call it lies in). For several shapes and 1..9 parts:
 * the parts' rectangles tile c exactly, along one dimension, and every boundary between
 * parts is a boundary of the one-part grid's tiles (sl_cpu_gemm_tiles of them, of equal
 * size but the last, whole groups of 16 columns). */
static void test_gemm_tiles(void)
{
    static const size_t shapes[][3] = {{25, 67, 771}, {40, 97, 200}, {48, 20, 400}, {1000, 3072, 768},
                                       {4096, 512, 512}, {48, 200000, 384}, {3, 5, 7}, {300, 40, 64}, {1, 1, 0}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], T = sl_cpu_gemm_tiles(m, n, k);
        const int cols = n >= m;
        const size_t D = cols ? n : m, size = (D + T - 1) / T;
        CHECK_MSG(T >= 1 && T <= D, "m%zu n%zu k%zu: %zu tiles", m, n, k, T);
        /* the tile size the grid uses: boundaries are multiples of it */
        size_t i0, i1, j0, j1;
        sl_cpu_gemm_part_rect(0, T, m, n, k, &i0, &i1, &j0, &j1);
        const size_t tile = cols ? j1 - j0 : i1 - i0;
        CHECK_MSG(tile >= size && (!cols || tile % 16 == 0 || tile == n), "m%zu n%zu k%zu: tile %zu", m, n, k, tile);
        for (size_t parts = 1; parts <= 9; parts++) {
            size_t next = 0;
            for (size_t p = 0; p < parts; p++) {
                sl_cpu_gemm_part_rect(p, parts, m, n, k, &i0, &i1, &j0, &j1);
                const size_t lo = cols ? j0 : i0, hi = cols ? j1 : i1;
                if (lo >= hi)
                    continue;
                CHECK_MSG(cols ? (i0 == 0 && i1 == m) : (j0 == 0 && j1 == n), "m%zu n%zu: part spans the other way", m,
                          n);
                CHECK_MSG(lo == next, "m%zu n%zu k%zu parts %zu: part %zu starts at %zu, not %zu", m, n, k, parts, p,
                          lo, next);
                CHECK_MSG(lo % tile == 0 && (hi % tile == 0 || hi == D), "m%zu n%zu k%zu parts %zu: [%zu, %zu) cuts a tile of %zu",
                          m, n, k, parts, lo, hi, tile);
                next = hi;
            }
            CHECK_MSG(next == D, "m%zu n%zu k%zu parts %zu: parts end at %zu of %zu", m, n, k, parts, next, D);
        }
        printf("  gemm tiles m%zu n%zu k%zu: %zu tiles of %zu %s\n", m, n, k, T, tile, cols ? "columns" : "rows");
    }
}

static void test_gemm_residual(sl_op_ctx *ctx)
{
    const size_t m = 613, n = 70, k = 50, ldy = 72;
    float *x = sl_ref_rnd(m * k, -1, 1), *w = sl_ref_rnd(n * k, -1, 1), *b = sl_ref_rnd(n, -1, 1),
          *r = sl_ref_rnd(m * ldy, -1, 1), *y = malloc(m * ldy * sizeof(float)), *y1 = malloc(m * ldy * sizeof(float));
    double *want = malloc(m * n * sizeof(double));
    float *got = malloc(m * n * sizeof(float));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double v = b[j];
            for (size_t l = 0; l < k; l++)
                v += (double)x[i * k + l] * w[j * k + l];
            want[i * n + j] = sl_ref_act(SL_ACT_GELU, v) + r[i * ldy + j];
        }
    for (sl_precision p = SL_PREC_FP32; p <= SL_PREC_BF16X6; p++) {
        CHECK(sl_op_ctx_set_precision(ctx, p) == 0);
        for (int th = 1; th <= 3; th += 2) {
            CHECK(sl_op_ctx_set_threads(ctx, th) == 0);
            memcpy(y, r, m * ldy * sizeof(float));
            sl_gemm_args a = {.batch = 1, .m = m, .n = n, .k = k, .x = x, .ldx = k, .w = w, .ldw = k, .bias = b,
                              .act = SL_ACT_GELU, .y = y, .ldy = ldy, .add = y, .ldadd = ldy};
            CHECK_MSG(sl_op_gemm(ctx, &a) == 0, "gemm: %s", sl_lasterr());
            for (size_t i = 0; i < m; i++)
                memcpy(got + i * n, y + i * ldy, n * sizeof(float));
            size_t pad = 0; /* the columns past n stay as they were */
            for (size_t i = 0; i < m; i++)
                pad += memcmp(y + i * ldy + n, r + i * ldy + n, (ldy - n) * sizeof(float)) != 0;
            CHECK(pad == 0);
            const double e = sl_ref_err(got, want, m * n);
            const sl_precision eff = sl_op_ctx_precision(ctx);
            const double tol = eff == SL_PREC_BF16 ? 3e-2 : eff == SL_PREC_TF32 ? 4e-5 : 1e-5;
            printf("  gemm   residual in place %s, %d thread%s: rel err %.3g (tol %g)\n", sl_precision_name(eff), th,
                   th > 1 ? "s" : "", e, tol);
            CHECK_MSG(e <= tol, "residual gemm %s: %g", sl_precision_name(eff), e);
            if (th == 1)
                memcpy(y1, y, m * ldy * sizeof(float));
            else
                CHECK_MSG(!memcmp(y1, y, m * ldy * sizeof(float)), "residual gemm %s: 1 and 3 threads differ",
                          sl_precision_name(eff));
        }
    }
    CHECK(sl_op_ctx_set_precision(ctx, SL_PREC_FP32) == 0);
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    free(x), free(w), free(b), free(r), free(y), free(y1), free(want), free(got);
}

/* The few-row products (m <= SL_CPU_DOT_MAX_ROWS: the AVX-512 dot-product kernel where the
 * CPU has it) against double precision with the AVX-512 paths on and off, tiles cut at every
 * edge (rows not a multiple of 4, columns of 6, k of 16), and their bits unchanged when the
 * same product is split over 3 threads (by columns and by rows). */
static void test_gemm_dot(sl_op_ctx *ctx)
{
    static const size_t shapes[][3] = {{1, 1, 1}, {3, 5, 15}, {4, 6, 16}, {25, 67, 771}, {48, 40, 33}, {7, 301, 64},
                                       {48, 2, 200}, {17, 130, 3}, {40, 97, 200}, {48, 20, 400}};
    const int prev = sl_cpu_simd_set_avx512(1);
    printf("  gemm dot: AVX-512 %s on this CPU, %s by default here\n", sl_cpu_simd_avx512() ? "available" : "not available",
           prev ? "on" : "off (STEMLINE_CPU_AVX512=0)");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const size_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2], ldx = k + 3, ldy = n + 2;
        float *x = sl_ref_rnd(m * ldx, -1, 1), *w = sl_ref_rnd(n * k, -1, 1), *y[3];
        for (int v = 0; v < 3; v++)
            y[v] = calloc(m * ldy, sizeof(float));
        for (int v = 0; v < 3; v++) { /* AVX-512 on, 1 thread; off, 1 thread; on, 3 threads */
            sl_cpu_simd_set_avx512(v != 1);
            CHECK(sl_op_ctx_set_threads(ctx, v == 2 ? 3 : 1) == 0);
            sl_gemm_args a = {.batch = 1, .m = m, .n = n, .k = k, .x = x, .ldx = ldx, .w = w, .ldw = k, .y = y[v],
                              .ldy = ldy};
            CHECK_MSG(sl_op_gemm(ctx, &a) == 0, "gemm: %s", sl_lasterr());
        }
        double e[2] = {0, 0}, mx = 0;
        int same = 1;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double want = 0;
                for (size_t kk = 0; kk < k; kk++)
                    want += (double)x[i * ldx + kk] * w[j * k + kk];
                mx = fmax(mx, fabs(want));
                for (int v = 0; v < 2; v++)
                    e[v] = fmax(e[v], fabs(y[v][i * ldy + j] - want));
                same &= !memcmp(&y[0][i * ldy + j], &y[2][i * ldy + j], sizeof(float));
            }
        printf("  gemm dot m%zu n%zu k%zu: rel err %.3g (AVX-512 path) %.3g (without), 3 threads %s\n", m, n, k,
               e[0] / mx, e[1] / mx, same ? "bit-identical" : "DIFFERENT");
        CHECK_MSG(e[0] <= 1e-6 * mx && e[1] <= 1e-6 * mx, "gemm dot error %g / %g", e[0] / mx, e[1] / mx);
        CHECK_MSG(same, "gemm dot m%zu n%zu k%zu: 3 threads changed the result", m, n, k);
        free(x);
        free(w);
        for (int v = 0; v < 3; v++)
            free(y[v]);
    }
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    sl_cpu_simd_set_avx512(prev);
}

/* Linear layers on weights declared fixed (sl_op_mark_fixed: packed once for the AVX-512 or
 * AVX2 kernel of cpu_gemmpk.c where the CPU has either, AVX2 up to 288 rows, the library path
 * elsewhere) against
 * double precision: rows not a multiple of the 12-row tile, columns of the 32-wide panel, every
 * epilogue the kernel takes (bias, activation, a residual in place, a separate addend); the
 * same bits on 1 and 3 threads and on a second call (the packed form reused) where a packed
 * kernel runs (the library path splits rows over threads with other bits); where AVX-512 runs,
 * the AVX2 kernel (AVX-512 turned off) gives the same bits as the AVX-512 one. */
static void test_gemm_packed(sl_op_ctx *ctx)
{
    static const struct {
        size_t m, n, k;
        sl_act act;
        int bias, add; /* add: 1 = residual in place (y += ...), 2 = a separate addend */
    } cs[] = {{65, 33, 17, SL_ACT_NONE, 1, 0}, {100, 16, 300, SL_ACT_GELU, 1, 0}, {130, 70, 129, SL_ACT_NONE, 1, 1},
              {77, 5, 64, SL_ACT_RELU, 0, 0},   {200, 96, 40, SL_ACT_NONE, 0, 2},  {97, 300, 257, SL_ACT_GELU, 1, 0},
              {301, 47, 33, SL_ACT_TANH, 1, 0},
              /* more than 288 rows on 1 thread (groups of panels) against parts of under 288 rows on 3
                 (panel by panel, k in chunks of 256: 3 chunks here, the sums kept between them); x
                 over 1 MiB (row groups); a product of 50 rows (the packed kernel from 24 rows) */
              {290, 40, 600, SL_ACT_NONE, 1, 1}, {100, 36, 2600, SL_ACT_NONE, 1, 1}, {100, 20, 3000, SL_ACT_GELU, 1, 0},
              {50, 64, 1100, SL_ACT_NONE, 1, 2}};
    const int packed = sl_cpu_simd_avx512() || sl_cpu_simd_fma();
    printf("  gemm packed: %s\n", sl_cpu_simd_avx512() ? "AVX-512" : packed ? "AVX2 + FMA" : "off (library path)");
    for (size_t c = 0; c < sizeof cs / sizeof *cs; c++) {
        const size_t m = cs[c].m, n = cs[c].n, k = cs[c].k, ldx = k + 1, ldy = n + 3;
        float *x = sl_ref_rnd(m * ldx, -1, 1), *hw = sl_ref_rnd(n * k, -1, 1), *b = sl_ref_rnd(n, -1, 1);
        float *y0 = sl_ref_rnd(m * ldy, -2, 2), *add2 = sl_ref_rnd(m * ldy, -2, 2), *y[5], *w = NULL;
        CHECK(sl_op_alloc(ctx, (void **)&w, n * k * sizeof(float)) == 0);
        CHECK(sl_op_upload(ctx, w, hw, n * k * sizeof(float)) == 0);
        for (int v = 0; v < 5; v++) { /* fixed 1 thread, fixed again, fixed 3 threads, not fixed; AVX2 */
            y[v] = malloc(m * ldy * sizeof(float));
            memcpy(y[v], y0, m * ldy * sizeof(float));
            if (v == 0)
                CHECK(sl_op_mark_fixed(ctx, w, n * k * sizeof(float)) == 0);
            if (v == 3) /* a write into the range ends the promise */
                CHECK(sl_op_upload(ctx, w, hw, n * k * sizeof(float)) == 0);
            if (v == 4) { /* fixed again, AVX-512 off: the AVX2 kernel where the CPU has both */
                if (!sl_cpu_simd_avx512() || m > SL_CPU_PACKED_AVX2_MAX_ROWS) {
                    memcpy(y[v], y[0], m * ldy * sizeof(float));
                    continue;
                }
                CHECK(sl_op_mark_fixed(ctx, w, n * k * sizeof(float)) == 0);
            }
            const int prev512 = v == 4 ? sl_cpu_simd_set_avx512(0) : -1;
            CHECK(sl_op_ctx_set_threads(ctx, v == 2 ? 3 : 1) == 0);
            sl_gemm_args a = {.batch = 1, .m = m, .n = n, .k = k, .x = x, .ldx = ldx, .w = w, .ldw = k,
                              .bias = cs[c].bias ? b : NULL, .act = cs[c].act, .y = y[v], .ldy = ldy,
                              .add = cs[c].add == 1 ? y[v] : cs[c].add == 2 ? add2 : NULL, .ldadd = ldy};
            CHECK_MSG(sl_op_gemm(ctx, &a) == 0, "gemm: %s", sl_lasterr());
            if (v == 1 || v == 4) { /* the packed kernel takes this product where AVX-512 or AVX2 runs */
                float *t = malloc(m * ldy * sizeof(float));
                sl_gemm_args at = a;
                at.y = t;
                at.add = cs[c].add == 2 ? add2 : NULL;
                CHECK(sl_cpu_gemm_packed(ctx, &at, 1) ==
                      (sl_cpu_simd_avx512() || (packed && m <= SL_CPU_PACKED_AVX2_MAX_ROWS)));
                free(t);
            }
            if (prev512 >= 0)
                sl_cpu_simd_set_avx512(prev512);
        }
        double *want = malloc(m * n * sizeof(double));
        float *got[2] = {malloc(m * n * sizeof(float)), malloc(m * n * sizeof(float))};
        int same = 1;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double s = cs[c].bias ? b[j] : 0.0;
                for (size_t kk = 0; kk < k; kk++)
                    s += (double)x[i * ldx + kk] * hw[j * k + kk];
                s = sl_ref_act(cs[c].act, s);
                s += cs[c].add == 1 ? y0[i * ldy + j] : cs[c].add == 2 ? add2[i * ldy + j] : 0.0;
                want[i * n + j] = s;
                got[0][i * n + j] = y[0][i * ldy + j];
                got[1][i * n + j] = y[3][i * ldy + j];
                same &= !memcmp(&y[0][i * ldy + j], &y[1][i * ldy + j], sizeof(float)) &&
                        !memcmp(&y[0][i * ldy + j], &y[2][i * ldy + j], sizeof(float)) &&
                        !memcmp(&y[0][i * ldy + j], &y[4][i * ldy + j], sizeof(float));
            }
        for (size_t i = 0; i < m; i++) /* the padding columns of y untouched */
            for (size_t j = n; j < ldy; j++)
                same &= !memcmp(&y[0][i * ldy + j], &y0[i * ldy + j], sizeof(float));
        const double e0 = sl_ref_err(got[0], want, m * n), e1 = sl_ref_err(got[1], want, m * n);
        printf("  gemm packed m%zu n%zu k%zu act %d bias %d add %d: rel err %.3g (fixed) %.3g (library), "
               "3 threads / second call / AVX2 %s\n", m, n, k, (int)cs[c].act, cs[c].bias, cs[c].add, e0, e1,
               same ? "bit-identical" : "different bits");
        CHECK_MSG(e0 <= 1e-5 && e1 <= 1e-5, "gemm packed error %g / %g", e0, e1);
        CHECK_MSG(same || !packed || (!sl_cpu_simd_avx512() && m > SL_CPU_PACKED_AVX2_MAX_ROWS),
                  "gemm packed m%zu n%zu k%zu: threads, a second call or AVX2 changed the result", m, n, k);
        sl_op_free(ctx, w);
        free(x);
        free(hw);
        free(b);
        free(y0);
        free(add2);
        free(want);
        free(got[0]);
        free(got[1]);
        for (int v = 0; v < 5; v++)
            free(y[v]);
    }
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    /* tf32 on weights declared fixed: the AMX tiles from 16 rows (their packed form kept), so a
     * 40-row product leaves fp32 where the tiles are in effect; within tf32's bound either way */
    const size_t m = 40, n = 70, k = 96;
    float *x = sl_ref_rnd(m * k, -1, 1), *hw = sl_ref_rnd(n * k, -1, 1), *y[2], *w = NULL;
    CHECK(sl_op_alloc(ctx, (void **)&w, n * k * sizeof(float)) == 0);
    CHECK(sl_op_upload(ctx, w, hw, n * k * sizeof(float)) == 0);
    CHECK(sl_op_mark_fixed(ctx, w, n * k * sizeof(float)) == 0);
    for (int v = 0; v < 2; v++) {
        y[v] = malloc(m * n * sizeof(float));
        CHECK(sl_op_ctx_set_precision(ctx, v ? SL_PREC_TF32 : SL_PREC_FP32) == 0);
        sl_gemm_args a = {.batch = 1, .m = m, .n = n, .k = k, .x = x, .ldx = k, .w = w, .ldw = k, .y = y[v], .ldy = n};
        CHECK_MSG(sl_op_gemm(ctx, &a) == 0, "gemm: %s", sl_lasterr());
    }
    const int tiles = sl_op_ctx_precision(ctx) == SL_PREC_TF32;
    CHECK(sl_op_ctx_set_precision(ctx, SL_PREC_FP32) == 0);
    double *want = malloc(m * n * sizeof(double));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double acc = 0;
            for (size_t kk = 0; kk < k; kk++)
                acc += (double)x[i * k + kk] * hw[j * k + kk];
            want[i * n + j] = acc;
        }
    const double e = sl_ref_err(y[1], want, m * n);
    const int same = !memcmp(y[0], y[1], m * n * sizeof(float));
    printf("  gemm packed m%zu fixed weights at tf32: %s, rel err %.3g (tol 4e-5)\n", m,
           tiles ? (same ? "fp32 bits (AMX NOT taken)" : "AMX") : "fp32 (no tiles)", e);
    CHECK_MSG(e <= 4e-5, "tf32 fixed-weight gemm error %g", e);
    CHECK_MSG(tiles ? !same : same, "fixed weights, 40 rows at tf32: %s", tiles ? "AMX not taken" : "not fp32");
    sl_op_free(ctx, w);
    free(x);
    free(hw);
    free(want);
    free(y[0]);
    free(y[1]);
}

static void test_affine(sl_op_ctx *ctx)
{
    const size_t B = 3, R = 5, C = 7;
    float *x = sl_ref_rnd(B * R * C, -2, 2), *add = sl_ref_rnd(B * C, -1, 1), *mul = sl_ref_rnd(B * C, -1, 1), *y = malloc(B * R * C * 4);
    sl_affine_args a = {.batch = B, .rows = R, .cols = C, .x = x, .ldx = C, .stride_x = R * C, .add = add,
                        .mul = mul, .stride_p = C, .act = SL_ACT_TANH, .y = y, .ldy = C, .stride_y = R * C};
    CHECK(sl_op_affine(ctx, &a) == 0);
    double *want = malloc(B * R * C * sizeof(double));
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < R * C; i++)
            want[b * R * C + i] = tanh(((double)x[b * R * C + i] + add[b * C + i % C]) * mul[b * C + i % C]);
    double e = sl_ref_err(y, want, B * R * C);
    printf("  affine b3 5x7 tanh: rel err %.3g (tol 1e-6)\n", e);
    CHECK(e <= 1e-6);
    /* no activation, no residual (the vectorised (x + add) * mul, sl_cpu_vec_addmul): exactly the
     * scalar operations, with and without add, in place, rows of 37 columns (a tail after the
     * vectors), on the SIMD and the portable paths */
    const size_t R2 = 11, C2 = 37;
    float *x2 = sl_ref_rnd(R2 * C2, -3, 3), *a2 = sl_ref_rnd(C2, -1, 1), *m2 = sl_ref_rnd(C2, -2, 2);
    float *y2[2] = {malloc(R2 * C2 * 4), malloc(R2 * C2 * 4)};
    for (int with_add = 0; with_add < 2; with_add++)
        for (int simd = 0; simd < 2; simd++) {
            const int prev = sl_cpu_simd_set(simd);
            memcpy(y2[simd], x2, R2 * C2 * 4);
            sl_affine_args n2 = {.batch = 1, .rows = R2, .cols = C2, .x = y2[simd], .ldx = C2, .add = with_add ? a2 : NULL,
                                 .mul = m2, .act = SL_ACT_NONE, .y = y2[simd], .ldy = C2};
            CHECK(sl_op_affine(ctx, &n2) == 0);
            sl_cpu_simd_set(prev);
            int exact = 1;
            for (size_t i = 0; i < R2 * C2; i++) {
                float v = with_add ? x2[i] + a2[i % C2] : x2[i];
                v *= m2[i % C2];
                exact &= !memcmp(&v, &y2[simd][i], sizeof v);
            }
            CHECK_MSG(exact, "affine without activation (add %d, simd %d): not the scalar operations", with_add, simd);
        }
    free(x2);
    free(a2);
    free(m2);
    free(y2[0]);
    free(y2[1]);
    free(x);
    free(add);
    free(mul);
    free(y);
    free(want);
}

/* torch.nn.LSTM in double from the packed weights (layout of ops.h). */
static void lstm_ref(const sl_lstm_cfg *c, size_t T, const float *x, const float *w, double *y)
{
    const size_t D = 1 + (size_t)c->bidirectional, H = (size_t)c->hidden, G = 4 * H;
    size_t n_in = (size_t)c->input;
    double *in = malloc(T * (n_in > D * H ? n_in : D * H) * sizeof(double)), *out = malloc(T * D * H * sizeof(double));
    double *h = malloc(H * sizeof(double)), *cc = malloc(H * sizeof(double)), *g = malloc(G * sizeof(double));
    for (size_t i = 0; i < T * n_in; i++)
        in[i] = x[i];
    for (int l = 0; l < c->layers; l++) {
        const float *wih = w, *whh = wih + D * G * n_in, *bias = whh + D * G * H;
        w = bias + D * G;
        for (size_t d = 0; d < D; d++) {
            memset(h, 0, H * sizeof(double));
            memset(cc, 0, H * sizeof(double));
            for (size_t s = 0; s < T; s++) {
                size_t t = d ? T - 1 - s : s;
                for (size_t r = 0; r < G; r++) {
                    double v = bias[d * G + r];
                    for (size_t k = 0; k < n_in; k++)
                        v += (double)wih[(d * G + r) * n_in + k] * in[t * n_in + k];
                    for (size_t k = 0; k < H; k++)
                        v += (double)whh[(d * G + r) * H + k] * h[k];
                    g[r] = v;
                }
                for (size_t j = 0; j < H; j++) {
                    double ig = 1 / (1 + exp(-g[j])), fg = 1 / (1 + exp(-g[H + j])), gg = tanh(g[2 * H + j]),
                           og = 1 / (1 + exp(-g[3 * H + j]));
                    cc[j] = fg * cc[j] + ig * gg;
                    h[j] = og * tanh(cc[j]);
                    out[t * D * H + d * H + j] = h[j];
                }
            }
        }
        n_in = D * H;
        memcpy(in, out, T * D * H * sizeof(double));
    }
    memcpy(y, out, T * D * H * sizeof(double));
    free(in);
    free(out);
    free(h);
    free(cc);
    free(g);
}

static void test_lstm(sl_op_ctx *ctx, int layers, int input, int hidden, int bidir, size_t T)
{
    sl_lstm_cfg c = {layers, input, hidden, bidir};
    const size_t nw = sl_lstm_weights_floats(&c), O = (size_t)(1 + bidir) * (size_t)hidden;
    const float s = 1.0f / sqrtf((float)hidden);
    float *x = sl_ref_rnd(T * (size_t)input, -1, 1), *w = sl_ref_rnd(nw, -s, s), *y = malloc(T * O * sizeof(float));
    double *want = malloc(T * O * sizeof(double));
    CHECK_MSG(sl_op_lstm(ctx, &c, 1, T, x, (size_t)input, 0, w, 0, y, O, 0) == 0, "lstm: %s", sl_lasterr());
    lstm_ref(&c, T, x, w, want);
    double e = sl_ref_err(y, want, T * O);
    printf("  lstm   L%d in%d H%d %s T%zu: rel err %.3g (tol 1e-5)\n", layers, input, hidden, bidir ? "bidir" : "unidir",
           T, e);
    CHECK_MSG(e <= 1e-5, "lstm error %g", e);
    free(x);
    free(w);
    free(y);
    free(want);
}

/* batch items with their own weights and strided rows (the layout umx uses: the
 * LSTM writes beside its input in the same rows), each against the reference */
static void test_lstm_batch(sl_op_ctx *ctx, size_t batch, int layers, int input, int hidden, int bidir, size_t T)
{
    sl_lstm_cfg c = {layers, input, hidden, bidir};
    const size_t nw = sl_lstm_weights_floats(&c), O = (size_t)(1 + bidir) * (size_t)hidden;
    const size_t ld = (size_t)input + O, stride = T * ld + 3;
    const float s = 1.0f / sqrtf((float)hidden);
    float *buf = sl_ref_rnd(batch * stride, -1, 1), *w = sl_ref_rnd(batch * nw, -s, s);
    double *want = malloc(T * O * sizeof(double));
    float *got = malloc(T * O * sizeof(float)), *xi = malloc(T * (size_t)input * sizeof(float));
    CHECK_MSG(sl_op_lstm(ctx, &c, batch, T, buf, ld, stride, w, nw, buf + input, ld, stride) == 0, "lstm: %s",
              sl_lasterr());
    double worst = 0;
    for (size_t b = 0; b < batch; b++) {
        for (size_t t = 0; t < T; t++) {
            memcpy(xi + t * (size_t)input, buf + b * stride + t * ld, (size_t)input * sizeof(float));
            memcpy(got + t * O, buf + b * stride + t * ld + input, O * sizeof(float));
        }
        lstm_ref(&c, T, xi, w + b * nw, want);
        double e = sl_ref_err(got, want, T * O);
        worst = e > worst ? e : worst;
    }
    printf("  lstm   batch %zu L%d in%d H%d %s T%zu, %d thread(s): rel err %.3g (tol 1e-5)\n", batch, layers, input,
           hidden, bidir ? "bidir" : "unidir", T, sl_op_ctx_threads(ctx), worst);
    CHECK_MSG(worst <= 1e-5, "batched lstm error %g", worst);
    free(buf);
    free(w);
    free(want);
    free(got);
    free(xi);
}

/* The LSTM cell's exp / sigmoid / tanh (no libm): against double precision over the
 * whole range (saturation, zero, tiny values, NaN), and the AVX2 path bit-equal to
 * the portable one (H = 37: vector blocks and a scalar tail). */
static void test_lstm_cell(void)
{
    const size_t H = 37;
    float g[4 * 37], c0[37], c1[37], c2[37], h1[37], h2[37], o1[37], o2[37];
    double worst = 0;
    for (int rep = 0; rep < 200; rep++) {
        for (size_t i = 0; i < 4 * H; i++) {
            const double u = sl_ref_urand();
            g[i] = rep % 4 == 0 ? (float)(200 * u - 100) : rep % 4 == 1 ? (float)(1e-4 * (2 * u - 1))
                                                                         : (float)(16 * u - 8);
        }
        for (size_t j = 0; j < H; j++)
            c0[j] = (float)(4.0 * sl_ref_urand() - 2.0);
        memcpy(c1, c0, sizeof c0);
        memcpy(c2, c0, sizeof c0);
        sl_cpu_simd_set(0);
        sl_cpu_lstm_cell(g, c1, h1, o1, H);
        sl_cpu_simd_set(1);
        sl_cpu_lstm_cell(g, c2, h2, o2, H);
        CHECK_MSG(!memcmp(c1, c2, sizeof c1) && !memcmp(h1, h2, sizeof h1) && !memcmp(o1, h1, sizeof o1) &&
                      !memcmp(o2, h2, sizeof o2),
                  "lstm cell: AVX2 and portable paths differ");
        for (size_t j = 0; j < H; j++) {
            const double ig = 1 / (1 + exp(-(double)g[j])), fg = 1 / (1 + exp(-(double)g[H + j]));
            const double gg = tanh((double)g[2 * H + j]), og = 1 / (1 + exp(-(double)g[3 * H + j]));
            const double c = fg * c0[j] + ig * gg, h = og * tanh(c);
            const double e = fabs(c - c1[j]) + fabs(h - h1[j]);
            worst = e > worst ? e : worst;
        }
    }
    printf("  lstm cell: worst |c| + |h| error %.3g (tol 1e-6), AVX2 = portable bits\n", worst);
    CHECK_MSG(worst <= 1e-6, "lstm cell error %g", worst);
    g[0] = NAN;
    g[H + 1] = NAN;
    c1[0] = c1[1] = 0;
    sl_cpu_lstm_cell(g, c1, h1, o1, H);
    CHECK(isnan(c1[0]) && isnan(h1[0]) && isnan(c1[1]));
}

/* Wiener properties: niter 0 keeps the target magnitudes with the mixture
 * phase; softmask estimates sum to the mixture (up to eps); the residual
 * completes the sum exactly; after EM the sources still sum to the mixture up
 * to the sqrt(eps) regularisation (sum_j v_j R_j Cxx^-1 = I - sqrt(eps) Cxx^-1). */
static void test_wiener(sl_op_ctx *ctx)
{
    const size_t J = 4, T = 30, F = 17, S = J + 1;
    float *mix = sl_ref_rnd(2 * T * F * 2, -3, 3), *mag = sl_ref_rnd(J * 2 * T * F, 0.1f, 2), *out = malloc(S * 2 * T * F * 2 * 4);
    struct {
        int niter, soft, resid;
    } cfgs[] = {{0, 0, 0}, {0, 1, 0}, {0, 0, 1}, {2, 0, 0}};
    for (size_t k = 0; k < 4; k++) {
        sl_wiener_cfg c = {cfgs[k].niter, cfgs[k].soft, cfgs[k].resid, 7, 1e-10f};
        CHECK(sl_op_wiener(ctx, &c, J, T, F, mix, mag, out) == 0);
        const size_t Sk = J + (c.residual ? 1 : 0);
        double e = 0, mx = 0;
        for (size_t i = 0; i < 2 * T * F; i++) {
            const double xr = mix[2 * i], xi = mix[2 * i + 1], xa = hypot(xr, xi);
            mx = fmax(mx, xa);
            if (k == 0) { /* |y_j| = S_j, angle = angle(x) */
                for (size_t j = 0; j < J; j++) {
                    const float *y = out + 2 * (j * 2 * T * F + i);
                    double s = mag[j * 2 * T * F + i];
                    e = fmax(e, fabs(y[0] - s * xr / xa) + fabs(y[1] - s * xi / xa));
                }
            } else {
                double sr = 0, si = 0;
                for (size_t j = 0; j < Sk; j++) {
                    sr += out[2 * (j * 2 * T * F + i)];
                    si += out[2 * (j * 2 * T * F + i) + 1];
                }
                e = fmax(e, fabs(sr - xr) + fabs(si - xi));
            }
        }
        const double tol = k == 3 ? 1e-3 : 1e-5; /* EM: the regularisation leaves ~sqrt(eps)/v of the mixture out */
        printf("  wiener niter %d softmask %d residual %d: property error %.3g of max|x| (tol %.0e)\n", c.niter,
               c.softmask, c.residual, e / mx, tol);
        CHECK_MSG(e / mx <= tol, "wiener property %zu: %g", k, e / mx);
    }
    /* bins split over 3 threads (windows of 7 frames, EM, NaN-free scaling): bit-identical */
    const size_t n_out = S * 2 * T * F * 2;
    float *one = malloc(n_out * 4);
    for (int soft = 0; soft < 2; soft++) {
        sl_wiener_cfg c = {2, soft, 1, 7, 1e-10f};
        memset(out, 0, n_out * 4);
        CHECK(sl_op_wiener(ctx, &c, J, T, F, mix, mag, out) == 0);
        memcpy(one, out, n_out * 4);
        CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
        memset(out, 0, n_out * 4);
        CHECK(sl_op_wiener(ctx, &c, J, T, F, mix, mag, out) == 0);
        CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
        CHECK_MSG(memcmp(one, out, n_out * 4) == 0, "wiener softmask %d: 3 threads differ from 1", soft);
    }
    free(one);
    /* the AVX2 loops (8 bins at a time, cpu_wiener.c: initial estimates, max|x|, EM update) against
     * the scalar ones (SIMD off): the same bits, with a tail of bins and mixture bins that are exactly 0 (wm_mix's
     * 1 + 0i without softmask), scaled by max|x| / 10 > 1 */
    {
        const size_t F2 = 37, n2 = S * 2 * T * F2 * 2;
        float *mix2 = sl_ref_rnd(2 * T * F2 * 2, -300, 300), *mag2 = sl_ref_rnd(J * 2 * T * F2, 0.1f, 2);
        float *a = malloc(n2 * 4), *b = malloc(n2 * 4);
        for (size_t i = 0; i < 2 * T * F2; i += 5)
            mix2[2 * i] = mix2[2 * i + 1] = 0.0f;
        for (int k = 0; k < 4; k++) {
            sl_wiener_cfg c = {1 + k / 2, k % 2, k / 2, 7, 1e-10f};
            CHECK(sl_op_wiener(ctx, &c, J, T, F2, mix2, mag2, a) == 0);
            const int prev = sl_cpu_simd_set(0);
            CHECK(sl_op_wiener(ctx, &c, J, T, F2, mix2, mag2, b) == 0);
            sl_cpu_simd_set(prev);
            const size_t n = (J + (c.residual ? 1 : 0)) * 2 * T * F2 * 2;
            CHECK_MSG(memcmp(a, b, n * 4) == 0, "wiener niter %d softmask %d residual %d: SIMD and scalar differ",
                      c.niter, c.softmask, c.residual);
        }
        printf("  wiener initial estimates, max|x|, EM update: SIMD = scalar bits (%s)\n", sl_cpu_simd_avx2() ? "AVX2 present" : "no AVX2 here");
        free(mix2);
        free(mag2);
        free(a);
        free(b);
    }
    sl_wiener_cfg bad = {1, 0, 0, 300, 1e-10f};
    CHECK(sl_op_wiener(ctx, &bad, 1, T, F, mix, mag, out) == SL_EINVAL); /* EM with one source */
    free(mix);
    free(mag);
    free(out);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    sl_ref_seed("test_nn_ops");
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    test_gemm(ctx, 1, 1, 1, 1, SL_ACT_NONE);
    test_gemm(ctx, 3, 37, 29, 300, SL_ACT_RELU);
    test_gemm(ctx, 2, 64, 130, 0, SL_ACT_TANH); /* k = 0: bias only */
    test_gemm_dot(ctx);
    test_gemm_tiles();
    test_gemm_packed(ctx);
    /* runtime.precision tf32 / bf16 / bf16x6 (at fp32's tolerance) on the AMX tiles: edges in every
     * dimension (rows, columns, k not multiples of 32 / 16) */
    for (sl_precision p = SL_PREC_TF32; p <= SL_PREC_BF16X6; p++) {
        test_gemm_prec(ctx, p, 1, 301, 203, 77, SL_ACT_NONE); /* 3 threads: split by panel pairs */
        test_gemm_prec(ctx, p, 2, 128, 96, 384, SL_ACT_RELU);
        test_gemm_prec(ctx, p, 1, 130, 17, 16, SL_ACT_TANH);
        test_gemm_prec(ctx, p, 3, 20, 40, 40, SL_ACT_RELU); /* below the AMX size: fp32 */
    }
    test_gemm_residual(ctx);
    test_affine(ctx);
    test_lstm(ctx, 1, 3, 4, 0, 5);
    test_lstm(ctx, 3, 16, 8, 1, 40);
    test_lstm(ctx, 2, 9, 33, 1, 17);
    test_lstm_batch(ctx, 3, 2, 20, 16, 1, 30);
    test_lstm_cell();
    test_wiener(ctx);
    /* the same ops split over 3 threads: shapes above the split threshold, columns
     * not a multiple of the split block, more threads than items and fewer */
    CHECK(sl_op_ctx_set_threads(ctx, 0) == SL_EINVAL);
    CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
    CHECK(sl_op_ctx_threads(ctx) == 3);
    CHECK_MSG(strstr(sl_op_ctx_device(ctx), "3 threads per context") != NULL, "device %s", sl_op_ctx_device(ctx));
    test_gemm(ctx, 1, 100, 203, 64, SL_ACT_RELU); /* split by columns */
    test_gemm(ctx, 1, 301, 40, 64, SL_ACT_TANH);  /* split by rows */
    test_gemm(ctx, 2, 90, 130, 70, SL_ACT_NONE);  /* two items, two parts each */
    test_gemm(ctx, 5, 60, 50, 40, SL_ACT_RELU);   /* more items than threads */
    test_gemm(ctx, 1, 64, 130, 0, SL_ACT_TANH);
    test_lstm(ctx, 2, 40, 64, 1, 70);
    test_lstm_batch(ctx, 3, 3, 24, 40, 1, 50);
    test_lstm_batch(ctx, 2, 1, 9, 12, 0, 20);
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    CHECK(sl_op_ctx_threads(ctx) == 1 && strstr(sl_op_ctx_device(ctx), "1 thread per context"));
    sl_lstm_cfg badc = {0, 3, 4, 1};
    CHECK(sl_lstm_weights_floats(&badc) == 0);
    sl_op_ctx_close(ctx);
    return sl_test_finish("nn_ops");
}
