/* The convolutional ops of the CPU reference backend (conv2d, avg_pool2d,
 * clip_pool: kernels/ops.h) against independent double-precision
 * implementations written here from the definitions (torch.nn.Conv2d with
 * padding k/2, F.avg_pool2d, the PANNs clip head), plus argument checks.
 * conv2d has four CPU paths (kernels/cpu/cpu_conv.c, cpu_conv_narrow.c: im2col + GEMM, Winograd
 * F(2x2, 3x3) for 3x3 kernels on images of >= 32 2x2 tiles with >= 16 input
 * channels, a tap-skipping kernel for 3x3 on images <= 2 columns wide, a direct
 * one for 3x3 with one input channel); each is
 * reached by the shapes below, also with 3 threads (OpenBLAS's thread count,
 * which the tap-skipping kernel follows too); that kernel, which uses no BLAS,
 * must give the same bits whatever the threads. The SIMD levels (portable,
 * AVX2, AVX-512: cpu_simd.h) give the same bits between AVX2 and AVX-512 on
 * the Winograd path (its GEMMs ours on both) and on the narrow one; transformed weights kept for a
 * buffer declared fixed (sl_op_mark_fixed) give the same bits as per call and
 * are dropped when the buffer is written. Winograd F(4x4, 3x3), on request only, against the same
 * reference with its own tolerance. conv1d's and conv_transpose1d's direct
 * kernels (AVX-512, AVX2 + FMA) against references of their own (test_conv1d, test_convt1d):
 * within 1e-5 of a double reference on every path, and byte for byte the float sum the direct
 * kernels promise on each run that takes them (so AVX2 and AVX-512 give the same bits), at 1,
 * 2 and 3 threads; an item's bits the same in any batch (test_conv1d_batch).
 * Random inputs, seed printed (SL_TEST_SEED replays). Backend parity of the
 * same ops is in test_parity.c. */
#include <math.h>
#include <pthread.h>
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

static float *nans(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
    return p;
}

static void test_conv(sl_op_ctx *ctx, size_t batch, int ci, int co, int h, int w, int k, int bias, sl_act act)
{
    const size_t HW = (size_t)h * w, ny = batch * (size_t)co * HW;
    float *x = sl_ref_rnd(batch * ci * HW, -1, 1), *wt = sl_ref_rnd((size_t)co * ci * k * k, -1, 1), *b = sl_ref_rnd((size_t)co, -1, 1);
    float *y = nans(ny);
    double *want = malloc(ny * sizeof(double));
    sl_conv2d_args a = {batch, ci, co, h, w, k, x, wt, bias ? b : NULL, act, y, 0};
    CHECK_MSG(sl_op_conv2d(ctx, &a) == 0, "conv2d: %s", sl_lasterr());
    sl_ref_conv2d(x, wt, bias ? b : NULL, batch, ci, co, h, w, k, act, want);
    double e = sl_ref_err(y, want, ny);
    printf("  conv2d     b%zu c%d->%d %dx%d k%d%s act%d: err %.3g (tol 1e-5)\n", batch, ci, co, h, w, k,
           bias ? " bias" : "", (int)act, e);
    CHECK_MSG(e <= 1e-5, "conv2d error %g", e);
    free(x);
    free(wt);
    free(b);
    free(y);
    free(want);
}

/* The tap-skipping path and Winograd (no BLAS with AVX2 + FMA or AVX-512): bitwise the same output with 1 and 3 threads. */
static void test_conv_threads(sl_op_ctx *ctx, int ci, int co, int h, int w)
{
    if (!sl_cpu_simd_fma()) { /* no such kernel: im2col + OpenBLAS, which may split its sums by threads */
        printf("  conv2d     c%d->%d %dx%d k3, 1 vs 3 threads: skipped (no AVX2 + FMA path)\n", ci, co, h, w);
        return;
    }
    const size_t ny = (size_t)co * h * w;
    float *x = sl_ref_rnd((size_t)ci * h * w, -1, 1), *wt = sl_ref_rnd((size_t)co * ci * 9, -1, 1), *b = sl_ref_rnd((size_t)co, -1, 1);
    float *y1 = nans(ny), *y3 = nans(ny);
    sl_conv2d_args a = {1, ci, co, h, w, 3, x, wt, b, SL_ACT_RELU, y1, 0};
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    CHECK_MSG(sl_op_conv2d(ctx, &a) == 0, "conv2d: %s", sl_lasterr());
    a.y = y3;
    CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
    CHECK_MSG(sl_op_conv2d(ctx, &a) == 0, "conv2d: %s", sl_lasterr());
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    printf("  conv2d     c%d->%d %dx%d k3, 1 vs 3 threads: %s\n", ci, co, h, w,
           memcmp(y1, y3, ny * sizeof(float)) ? "DIFFERENT" : "same bits");
    CHECK_MSG(memcmp(y1, y3, ny * sizeof(float)) == 0, "conv2d c%d->%d %dx%d: output depends on the threads", ci, co,
              h, w);
    free(x);
    free(wt);
    free(b);
    free(y1);
    free(y3);
}

/* y of conv2d on the current SIMD level (a fresh NaN-filled buffer). */
static float *conv_y(sl_op_ctx *ctx, sl_conv2d_args a, size_t ny)
{
    a.y = nans(ny);
    CHECK_MSG(sl_op_conv2d(ctx, &a) == 0, "conv2d: %s", sl_lasterr());
    return a.y;
}

/* Each SIMD level the CPU has against the float64 definition (1e-5), and the same bits where
 * promised: AVX-512 vs AVX2 when `same512` (the narrow and direct kernels, and Winograd, whose
 * AVX-512 and AVX2 + FMA GEMMs are both ours, wk_gemm: one fma per product in the same order),
 * AVX2 vs portable when `same_portable` (the direct kernel; Winograd's portable GEMMs are
 * OpenBLAS's; the narrow kernel has no portable twin). */
static void test_conv_simd(sl_op_ctx *ctx, size_t batch, int ci, int co, int h, int w, sl_act act, int same512,
                           int same_portable)
{
    const size_t ny = batch * (size_t)co * h * w;
    float *x = sl_ref_rnd(batch * ci * (size_t)h * w, -1, 1), *wt = sl_ref_rnd((size_t)co * ci * 9, -1, 1),
          *b = sl_ref_rnd((size_t)co, -1, 1);
    double *want = malloc(ny * sizeof(double));
    sl_ref_conv2d(x, wt, b, batch, ci, co, h, w, 3, act, want);
    const sl_conv2d_args a = {batch, ci, co, h, w, 3, x, wt, b, act, NULL, 0};
    float *y512 = conv_y(ctx, a, ny);
    const int old = sl_cpu_simd_set_avx512(0);
    float *y2 = conv_y(ctx, a, ny);
    const int old2 = sl_cpu_simd_set(0);
    float *y0 = conv_y(ctx, a, ny);
    sl_cpu_simd_set(old2);
    sl_cpu_simd_set_avx512(old);
    const int same2 = !memcmp(y512, y2, ny * sizeof(float)), same0 = !memcmp(y2, y0, ny * sizeof(float));
    const double e512 = sl_ref_err(y512, want, ny), e2 = sl_ref_err(y2, want, ny), e0 = sl_ref_err(y0, want, ny);
    printf("  conv2d     b%zu c%d->%d %dx%d act%d: err widest %.3g, AVX2 %.3g, portable %.3g (tol 1e-5); widest %s AVX2 "
           "(avx512 %d), AVX2 %s portable\n", batch, ci, co, h, w, (int)act, e512, e2, e0, same2 ? "==" : "!=",
           sl_cpu_simd_avx512(), same0 ? "==" : "!=");
    CHECK_MSG(e512 <= 1e-5 && e2 <= 1e-5 && e0 <= 1e-5, "conv2d c%d->%d %dx%d: error above 1e-5", ci, co, h, w);
    if (same512)
        CHECK_MSG(same2, "conv2d c%d->%d %dx%d: AVX-512 and AVX2 paths differ", ci, co, h, w);
    if (same_portable)
        CHECK_MSG(same0, "conv2d c%d->%d %dx%d: AVX2 and portable paths differ", ci, co, h, w);
    free(x);
    free(wt);
    free(b);
    free(want);
    free(y512);
    free(y2);
    free(y0);
}

/* Winograd F(4x4, 3x3), taken on request (sl_conv2d_args.wino4, HT-Demucs's decoder rewrites): the
 * AVX2 and portable transforms against the float64 definition (tol 5e-5 of the output range: a few
 * times F(2x2)'s error, printed beside it), another output than F(2x2)'s (the path is taken), and
 * the same bits with 1, 2 and 3 threads (with AVX2 + FMA: chunks of tile rows whole per thread). */
static void test_conv_wino4(sl_op_ctx *ctx, size_t batch, int ci, int co, int h, int w, int bias, sl_act act)
{
    const size_t ny = batch * (size_t)co * h * w, bytes = ny * sizeof(float);
    float *x = sl_ref_rnd(batch * ci * (size_t)h * w, -1, 1), *wt = sl_ref_rnd((size_t)co * ci * 9, -1, 1),
          *b = sl_ref_rnd((size_t)co, -1, 1);
    double *want = malloc(ny * sizeof(double));
    sl_ref_conv2d(x, wt, bias ? b : NULL, batch, ci, co, h, w, 3, act, want);
    sl_conv2d_args a = {batch, ci, co, h, w, 3, x, wt, bias ? b : NULL, act, NULL, 0};
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    float *y2 = conv_y(ctx, a, ny), *y[3];
    a.wino4 = 1;
    for (int t = 0; t < 3; t++) {
        CHECK(sl_op_ctx_set_threads(ctx, t + 1) == 0);
        y[t] = conv_y(ctx, a, ny);
    }
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    const int old = sl_cpu_simd_set(0);
    float *y0 = conv_y(ctx, a, ny);
    sl_cpu_simd_set(old);
    const double e2 = sl_ref_err(y2, want, ny), e4 = sl_ref_err(y[0], want, ny), e0 = sl_ref_err(y0, want, ny);
    const int other = memcmp(y2, y[0], bytes) != 0, same = !memcmp(y[0], y[1], bytes) && !memcmp(y[0], y[2], bytes);
    printf("  conv2d     b%zu c%d->%d %dx%d act%d F(4x4): err %.3g, portable %.3g (tol 5e-5; F(2x2) %.3g); 1 / 2 / 3 "
           "threads: %s\n", batch, ci, co, h, w, (int)act, e4, e0, e2, same ? "same bits" : "DIFFERENT");
    CHECK_MSG(e4 <= 5e-5 && e0 <= 5e-5, "conv2d F(4x4) c%d->%d %dx%d: error above 5e-5", ci, co, h, w);
    CHECK_MSG(other, "conv2d c%d->%d %dx%d: wino4 gave the F(2x2) output (path not taken)", ci, co, h, w);
    CHECK_MSG(same, "conv2d F(4x4) c%d->%d %dx%d: output depends on the threads", ci, co, h, w);
    float *mine[] = {x, wt, b, y2, y[0], y[1], y[2], y0};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        free(mine[i]);
    free(want);
}

/* Weights in backend memory declared fixed: the kept transform gives the bits of the per-call
 * one, and an upload or copy into the buffer is followed (the kept form is dropped). */
static void test_conv_fixed(sl_op_ctx *ctx, int ci, int co, int h, int w)
{
    const size_t nw = (size_t)co * ci * 9, ny = (size_t)co * h * w;
    float *x = sl_ref_rnd((size_t)ci * h * w, -1, 1), *w1 = sl_ref_rnd(nw, -1, 1), *w2 = sl_ref_rnd(nw, -1, 1);
    float *dw = NULL, *dw1 = NULL;
    CHECK(sl_op_alloc(ctx, (void **)&dw, nw * sizeof(float)) == 0);
    CHECK(sl_op_alloc(ctx, (void **)&dw1, nw * sizeof(float)) == 0);
    CHECK(sl_op_upload(ctx, dw1, w1, nw * sizeof(float)) == 0);
    sl_conv2d_args a = {1, ci, co, h, w, 3, x, w1, NULL, SL_ACT_RELU, NULL, 0};
    float *ref1 = conv_y(ctx, a, ny);
    a.wt = w2;
    float *ref2 = conv_y(ctx, a, ny);
    CHECK(sl_op_upload(ctx, dw, w1, nw * sizeof(float)) == 0);
    CHECK(sl_op_mark_fixed(ctx, dw, nw * sizeof(float)) == 0);
    a.wt = dw;
    float *f1 = conv_y(ctx, a, ny), *f1b = conv_y(ctx, a, ny); /* forms the transform, then reuses it */
    CHECK(sl_op_upload(ctx, dw, w2, nw * sizeof(float)) == 0);
    float *f2 = conv_y(ctx, a, ny);
    CHECK(sl_op_mark_fixed(ctx, dw, nw * sizeof(float)) == 0);
    float *f2b = conv_y(ctx, a, ny);
    CHECK(sl_op_copy(ctx, dw, dw1, nw * sizeof(float)) == 0);
    float *f3 = conv_y(ctx, a, ny);
    const size_t bytes = ny * sizeof(float);
    const int ok = !memcmp(f1, ref1, bytes) && !memcmp(f1b, ref1, bytes) && !memcmp(f2, ref2, bytes) &&
                   !memcmp(f2b, ref2, bytes) && !memcmp(f3, ref1, bytes);
    printf("  conv2d     c%d->%d %dx%d, fixed weights kept, uploaded over, copied over: %s\n", ci, co, h, w,
           ok ? "same bits as per call" : "DIFFERENT");
    CHECK_MSG(ok, "conv2d with weights declared fixed differs from per call (or a write was not followed)");
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dw1);
    float *mine[] = {x, w1, w2, ref1, ref2, f1, f1b, f2, f2b, f3};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        free(mine[i]);
}

typedef struct {
    sl_op_ctx *ctx;
    sl_conv2d_args a;
    size_t ny;
    float *y;
} shared_run;

static void *shared_body(void *v)
{
    shared_run *s = v;
    s->y = conv_y(s->ctx, s->a, s->ny);
    return NULL;
}

/* Two contexts that declared the same weights fixed (workers reading one mapping of a weights
 * file) share one Winograd form, made by one of them while the other waits, both running at
 * once: the bits of the per-call transform, one form for two uses, gone with the contexts. */
static void test_conv_shared_forms(int ci, int co, int h, int w)
{
    const size_t nw = (size_t)co * ci * 9, ny = (size_t)co * h * w;
    float *x = sl_ref_rnd((size_t)ci * h * w, -1, 1), *wt = sl_ref_rnd(nw, -1, 1);
    sl_op_ctx *c[2] = {NULL, NULL};
    CHECK(sl_op_ctx_open(&c[0], "cpu") == 0 && sl_op_ctx_open(&c[1], "cpu") == 0);
    if (!c[0] || !c[1])
        return;
    sl_conv2d_args a = {1, ci, co, h, w, 3, x, wt, NULL, SL_ACT_RELU, NULL, 0};
    float *ref = conv_y(c[0], a, ny); /* per call: wt is not fixed yet */
    shared_run r[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        CHECK(sl_op_mark_fixed(c[i], wt, nw * sizeof(float)) == 0);
        r[i] = (shared_run){c[i], a, ny, NULL};
    }
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&th[i], NULL, shared_body, &r[i]) == 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    size_t bytes = 0, n = 0, uses = 0;
    sl_op_cpu_fixed_forms(&bytes, &n, &uses);
    const size_t yb = ny * sizeof(float);
    const int same = r[0].y && r[1].y && !memcmp(r[0].y, ref, yb) && !memcmp(r[1].y, ref, yb);
    printf("  conv2d     c%d->%d %dx%d, one fixed buffer in two contexts at once: %zu form(s) of %zu bytes, %zu uses, "
           "%s\n", ci, co, h, w, n, bytes, uses, same ? "same bits as per call" : "DIFFERENT");
    CHECK_MSG(n == 1 && uses == 2 && bytes > nw * sizeof(float), "one shared form expected: %zu forms, %zu uses", n,
              uses);
    CHECK_MSG(same, "a shared Winograd form gives other bits than per call");
    sl_op_ctx_close(c[0]);
    sl_op_cpu_fixed_forms(&bytes, &n, &uses);
    CHECK_MSG(n == 1 && uses == 2, "the form outlives the first context: %zu forms", n);
    sl_op_ctx_close(c[1]);
    sl_op_cpu_fixed_forms(&bytes, &n, &uses);
    CHECK_MSG(n == 0 && bytes == 0, "the form goes with the last context: %zu forms left", n);
    float *mine[] = {x, wt, ref, r[0].y, r[1].y};
    for (size_t i = 0; i < sizeof mine / sizeof mine[0]; i++)
        free(mine[i]);
}

static void test_pool(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw)
{
    const int oh = h / kh, ow = w / kw;
    const size_t ny = planes * (size_t)oh * ow;
    float *x = sl_ref_rnd(planes * (size_t)h * w, -3, 3), *y = nans(ny);
    double *want = malloc(ny * sizeof(double));
    CHECK_MSG(sl_op_avg_pool2d(ctx, planes, h, w, kh, kw, x, y) == 0, "avg_pool2d: %s", sl_lasterr());
    for (size_t p = 0; p < planes; p++)
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                double s = 0;
                for (int u = 0; u < kh; u++)
                    for (int v = 0; v < kw; v++)
                        s += x[(p * h + (size_t)(i * kh + u)) * w + (size_t)(j * kw + v)];
                want[(p * oh + (size_t)i) * ow + (size_t)j] = s / (kh * kw);
            }
    double e = sl_ref_err(y, want, ny);
    printf("  avg_pool2d p%zu %dx%d / %dx%d: err %.3g (tol 1e-6)\n", planes, h, w, kh, kw, e);
    CHECK_MSG(e <= 1e-6, "avg_pool2d error %g", e);
    free(x);
    free(y);
    free(want);
}

/* 2x2 pooling: the same bits on every SIMD level and thread count (signs of zero included). */
static void test_pool_simd(sl_op_ctx *ctx, size_t planes, int h, int w)
{
    const size_t nx = planes * (size_t)h * w, ny = planes * (size_t)(h / 2) * (w / 2);
    float *x = sl_ref_rnd(nx, -3, 3);
    for (size_t i = 0; i < nx; i += 7)
        x[i] = -0.0f;
    for (int r = 0; r < 2 && r < h; r++) /* a whole block of -0 */
        for (int c = 0; c < 2 && c < w; c++)
            x[(size_t)r * w + c] = -0.0f;
    float *y[4];
    const int o512 = sl_cpu_simd_set_avx512(1), o2 = sl_cpu_simd_set(1);
    for (int k = 0; k < 4; k++) {
        y[k] = nans(ny);
        if (k == 1)
            sl_cpu_simd_set_avx512(0);
        if (k == 2)
            sl_cpu_simd_set(0);
        if (k == 3)
            CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
        CHECK_MSG(sl_op_avg_pool2d(ctx, planes, h, w, 2, 2, x, y[k]) == 0, "avg_pool2d: %s", sl_lasterr());
    }
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    sl_cpu_simd_set(o2);
    sl_cpu_simd_set_avx512(o512);
    const int same = !memcmp(y[0], y[1], ny * sizeof(float)) && !memcmp(y[0], y[2], ny * sizeof(float)) &&
                     !memcmp(y[0], y[3], ny * sizeof(float));
    printf("  avg_pool2d p%zu %dx%d / 2x2: widest SIMD, AVX2, portable, 3 threads: %s\n", planes, h, w,
           same ? "same bits" : "DIFFERENT");
    CHECK_MSG(same, "avg_pool2d p%zu %dx%d: the paths differ", planes, h, w);
    free(x);
    for (int k = 0; k < 4; k++)
        free(y[k]);
}

static void test_clip(sl_op_ctx *ctx, size_t planes, size_t T, size_t F)
{
    float *x = sl_ref_rnd(planes * T * F, -5, 2), *y = nans(planes);
    double *want = malloc(planes * sizeof(double));
    CHECK_MSG(sl_op_clip_pool(ctx, planes, T, F, x, y) == 0, "clip_pool: %s", sl_lasterr());
    for (size_t p = 0; p < planes; p++) {
        double mx = -INFINITY, sum = 0;
        for (size_t t = 0; t < T; t++) {
            double m = 0;
            for (size_t f = 0; f < F; f++)
                m += x[(p * T + t) * F + f];
            m /= (double)F;
            mx = fmax(mx, m);
            sum += m;
        }
        want[p] = mx + sum / (double)T;
    }
    double e = sl_ref_err(y, want, planes);
    printf("  clip_pool  p%zu T%zu F%zu: err %.3g (tol 1e-6)\n", planes, T, F, e);
    CHECK_MSG(e <= 1e-6, "clip_pool error %g", e);
    free(x);
    free(y);
    free(want);
}

/* Runs conv1d (c1) or conv_transpose1d (ct) on every path: the widest SIMD at 1, 2 and 3
 * threads, without AVX-512 (the AVX2 + FMA direct kernels where the CPU has them) at 1 and 3,
 * the im2col / col2im paths (direct kernels off), the portable paths (no SIMD), and weights
 * declared fixed (their packed form made, then reused): within 1e-5 of want each time; the same
 * bits at 1 and 3 threads on every path. Where the direct kernels run (exact: the shape suits
 * them), each of those runs is byte for byte exact, the float sum that the direct kernels promise
 * (from the bias, a fused multiply-add per input channel in order, then tap in order, then the
 * activation or GLU), so AVX-512 and AVX2 give the same bits, whatever the threads. */
#define C1_RUNS 9
static void conv1d_runs(sl_op_ctx *ctx, const char *shape, sl_conv1d_args *c1, sl_convt1d_args *ct,
                        const double *want, size_t ny, const float *exact)
{
    static const char *how[C1_RUNS] = {"1 thread", "2 threads", "3 threads", "no AVX-512", "no AVX-512, 3 threads",
                                       "no direct", "portable", "fixed weights", "fixed, again"};
    static const int threads[C1_RUNS] = {1, 2, 3, 1, 3, 1, 1, 1, 1};
    const float *wt = c1 ? c1->wt : ct->wt;
    const size_t nw = c1 ? (size_t)c1->c_out * (size_t)c1->c_in * (size_t)c1->k : (size_t)ct->c_out * (size_t)ct->c_in * (size_t)ct->k;
    float *y[C1_RUNS], *dw = NULL;
    int isa[C1_RUNS];
    CHECK(sl_op_alloc(ctx, (void **)&dw, nw * sizeof(float)) == 0);
    CHECK(sl_op_upload(ctx, dw, wt, nw * sizeof(float)) == 0);
    CHECK(sl_op_mark_fixed(ctx, dw, nw * sizeof(float)) == 0);
    const int old = sl_cpu_simd_avx512(), simd = sl_cpu_simd_set(1), direct = sl_cpu_conv1d_direct_set(1);
    sl_cpu_simd_set(simd), sl_cpu_conv1d_direct_set(direct); /* the process's settings, kept */
    for (int v = 0; v < C1_RUNS; v++) {
        y[v] = nans(ny);
        CHECK(sl_op_ctx_set_threads(ctx, threads[v]) == 0);
        sl_cpu_simd_set_avx512(v == 3 || v == 4 ? 0 : old);
        sl_cpu_conv1d_direct_set(v == 5 ? 0 : direct), sl_cpu_simd_set(v == 6 ? 0 : simd);
        isa[v] = exact ? sl_cpu_conv1d_direct_isa() : 0;
        const float *w = v >= 7 ? dw : wt;
        int rc;
        if (c1) {
            sl_conv1d_args a = *c1;
            a.wt = w, a.y = y[v];
            rc = sl_op_conv1d(ctx, &a);
        } else {
            sl_convt1d_args a = *ct;
            a.wt = w, a.y = y[v];
            rc = sl_op_conv_transpose1d(ctx, &a);
        }
        sl_cpu_simd_set(simd), sl_cpu_conv1d_direct_set(direct);
        CHECK(rc == 0);
        const double e = sl_ref_err(y[v], want, ny);
        static const char *kern[] = {"library", "direct AVX-512", "direct AVX2"};
        printf("  %s %s (%s): rel err %.3g (tol 1e-5)%s\n", shape, how[v], kern[isa[v]], e,
               isa[v] ? ", the exact float sum" : "");
        CHECK_MSG(e <= 1e-5, "%s %s: error %g", shape, how[v], e);
        if (isa[v])
            CHECK_MSG(!memcmp(y[v], exact, ny * sizeof(float)), "%s %s: not the direct kernels' float sum", shape,
                      how[v]);
    }
    sl_cpu_simd_set_avx512(old);
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    /* every path (the im2col / col2im ones too: library calls shaped by the op alone, the bias
     * starting conv1d's rows): the same bits at 1, 2 and 3 threads */
    CHECK_MSG(!memcmp(y[0], y[1], ny * sizeof(float)), "%s: 2 threads differ from 1 thread", shape);
    CHECK_MSG(!memcmp(y[0], y[2], ny * sizeof(float)), "%s: 3 threads differ from 1 thread", shape);
    CHECK_MSG(!memcmp(y[3], y[4], ny * sizeof(float)), "%s: no AVX-512, 3 threads differ from 1 thread", shape);
    sl_op_free(ctx, dw);
    for (int v = 0; v < C1_RUNS; v++)
        free(y[v]);
}

/* The activation (sl_cpu_epilogue_row: the same bits on every SIMD level) over rows rows of n. */
static void act_rows(sl_act act, size_t rows, size_t n, float *y)
{
    for (size_t r = 0; r < rows && act != SL_ACT_NONE; r++)
        sl_cpu_epilogue_row(act, n, y + r * n, NULL, NULL, NULL, y + r * n);
}

/* conv1d's direct kernels (kernels/cpu/cpu_conv1d_direct.c: groups 1, k <= 16, inner 1 or
 * >= 16) against a double reference that scatters each
 * input sample into the outputs it reaches (conv1d_runs). */
static void test_conv1d(sl_op_ctx *ctx, size_t batch, int ci, int co, size_t len, size_t inner, int k, int stride,
                        int dil, int pl, int pr, sl_act act, int glu)
{
    sl_conv1d_args a = {batch, ci, co, 1, len, inner, k, stride, dil, pl, pr, NULL, NULL, NULL, act, NULL, glu};
    const size_t lo = sl_conv1d_len_out(&a), ny = batch * (size_t)co * lo * inner;
    float *x = sl_ref_rnd(batch * (size_t)ci * len * inner, -1, 1), *wt = sl_ref_rnd((size_t)co * ci * k, -1, 1);
    float *b = sl_ref_rnd((size_t)co, -1, 1);
    double *want = calloc(ny, sizeof(double));
    for (size_t i = 0; i < batch; i++)
        for (size_t o = 0; o < (size_t)co; o++) {
            double *yo = want + (i * (size_t)co + o) * lo * inner;
            for (size_t j = 0; j < lo * inner; j++)
                yo[j] = b[o];
            for (size_t c = 0; c < (size_t)ci; c++)
                for (size_t p = 0; p < len; p++)
                    for (int u = 0; u < k; u++) { /* input p feeds output t where t s + u d - pl = p */
                        const long q = (long)p + pl - (long)u * dil;
                        if (q < 0 || q % stride || (size_t)(q / stride) >= lo)
                            continue;
                        const double g = wt[(o * (size_t)ci + c) * (size_t)k + (size_t)u];
                        const float *xr = x + ((i * (size_t)ci + c) * len + p) * inner;
                        for (size_t n = 0; n < inner; n++)
                            yo[(size_t)(q / stride) * inner + n] += g * xr[n];
                    }
            for (size_t j = 0; j < lo * inner; j++)
                yo[j] = sl_ref_act(act, yo[j]);
        }
    a.x = x, a.wt = wt, a.bias = b;
    const size_t half = (size_t)co / 2, m = lo * inner;
    if (glu) /* the GLU of the channel halves, in place into the first half of each item */
        for (size_t i = 0; i < batch; i++)
            for (size_t o = 0; o < half; o++)
                for (size_t j = 0; j < m; j++)
                    want[(i * half + o) * m + j] = want[(i * (size_t)co + o) * m + j] /
                                                   (1.0 + exp(-want[(i * (size_t)co + o + half) * m + j]));
    /* the direct kernels' float sum: from the bias, each input channel's taps in order (those
     * reading inside the signal), a fused multiply-add each, then the activation or the GLU */
    const int direct = k <= 16 && (inner >= 16 || inner == 1) && (!glu || (inner == 1 && stride == 1));
    float *exact = direct ? malloc(ny * sizeof(float)) : NULL;
    for (size_t i = 0; i < batch && exact; i++)
        for (size_t o = 0; o < (size_t)co; o++)
            for (size_t t = 0; t < lo; t++)
                for (size_t n = 0; n < inner; n++) {
                    float acc = b[o];
                    for (size_t c = 0; c < (size_t)ci; c++)
                        for (int u = 0; u < k; u++) {
                            const long p = (long)t * stride + (long)u * dil - pl;
                            if (p >= 0 && (size_t)p < len)
                                acc = fmaf(wt[(o * (size_t)ci + c) * (size_t)k + (size_t)u],
                                           x[((i * (size_t)ci + c) * len + (size_t)p) * inner + n], acc);
                        }
                    exact[(i * (size_t)co + o) * m + t * inner + n] = acc;
                }
    if (exact && glu) /* in place into the first half of each item, as want */
        for (size_t i = 0; i < batch; i++)
            for (size_t o = 0; o < half; o++)
                sl_cpu_glu_row(exact + (i * half + o) * m, exact + (i * (size_t)co + o) * m,
                               exact + (i * (size_t)co + o + half) * m, m);
    else if (exact)
        act_rows(act, batch * (size_t)co, m, exact);
    char shape[160];
    snprintf(shape, sizeof shape, "conv1d b%zu %d->%d L%zu x%zu k%d s%d d%d p%d,%d%s", batch, ci, co, len, inner, k,
             stride, dil, pl, pr, glu ? " glu" : "");
    conv1d_runs(ctx, shape, &a, NULL, want, glu ? batch * half * m : ny, exact);
    free(x), free(wt), free(b), free(want), free(exact);
}

/* An item's bits do not depend on the batch it comes in, on every path (the direct kernels, the
 * im2col one, portable): a model may batch its rows by the thread count (HT-Demucs's DConv blocks
 * of frequency rows, models/htdemucs.c dconv_rows: 2 rows a block at 1 thread, 16 at 2, on its
 * second layer's 96 channels of 336 frames), so items grouped into one library call by the
 * batch size would give other bits at other thread counts. Batches of 1, 2, 3 and 16 items,
 * each item against the same item of the batch of 16. */
static void test_conv1d_batch(sl_op_ctx *ctx, int ci, int co, size_t len, int k, int dil, int glu)
{
    enum { NB = 16 };
    const int pad = dil * (k / 2);
    sl_conv1d_args a = {NB, ci, co, 1, len, 1, k, 1, dil, pad, pad, NULL, NULL, NULL, SL_ACT_NONE, NULL, glu};
    const size_t m = (size_t)(glu ? co / 2 : co) * sl_conv1d_len_out(&a);
    float *x = sl_ref_rnd(NB * (size_t)ci * len, -1, 1), *wt = sl_ref_rnd((size_t)co * ci * k, -1, 1);
    float *b = sl_ref_rnd((size_t)co, -1, 1), *y16 = nans(NB * m), *y = nans(NB * m);
    const int simd = sl_cpu_simd_set(1), direct = sl_cpu_conv1d_direct_set(1);
    sl_cpu_simd_set(simd), sl_cpu_conv1d_direct_set(direct);
    static const char *how[] = {"widest SIMD", "no direct", "portable"};
    a.x = x, a.wt = wt, a.bias = b;
    for (int v = 0; v < 3; v++) {
        sl_cpu_conv1d_direct_set(v == 1 ? 0 : direct), sl_cpu_simd_set(v == 2 ? 0 : simd);
        a.batch = NB, a.y = y16;
        CHECK(sl_op_conv1d(ctx, &a) == 0);
        int same = 1;
        for (size_t nb = 1; nb <= 3; nb++) {
            a.batch = nb, a.y = y;
            CHECK(sl_op_conv1d(ctx, &a) == 0);
            same &= !memcmp(y, y16, nb * m * sizeof(float));
        }
        sl_cpu_simd_set(simd), sl_cpu_conv1d_direct_set(direct);
        printf("  conv1d %d->%d L%zu k%d d%d%s, batches of 1, 2, 3 vs 16 (%s): %s\n", ci, co, len, k, dil,
               glu ? " glu" : "", how[v], same ? "same bits" : "DIFFERENT");
        CHECK_MSG(same, "conv1d %d->%d L%zu k%d d%d (%s): an item's bits depend on the batch", ci, co, len, k, dil,
                  how[v]);
    }
    free(x), free(wt), free(b), free(y16), free(y);
}

/* conv_transpose1d's direct kernels (inner 1 by phases of the stride, or inner >= 16; k <=
 * 16) and its col2im path, the same way (conv1d_runs): the reference scatters each input
 * row into the output rows it reaches. */
static void test_convt1d(sl_op_ctx *ctx, size_t batch, int ci, int co, size_t len, size_t inner, int k, int stride,
                         int crop, size_t len_out, sl_act act)
{
    sl_convt1d_args a = {batch, ci, co, len, inner, k, stride, crop, len_out, NULL, NULL, NULL, act, NULL};
    const size_t ny = batch * (size_t)co * len_out * inner;
    float *x = sl_ref_rnd(batch * (size_t)ci * len * inner, -1, 1), *wt = sl_ref_rnd((size_t)co * ci * k, -1, 1);
    float *b = sl_ref_rnd((size_t)co, -1, 1);
    double *want = calloc(ny, sizeof(double));
    for (size_t i = 0; i < batch; i++)
        for (size_t o = 0; o < (size_t)co; o++) {
            double *yo = want + (i * (size_t)co + o) * len_out * inner;
            for (size_t j = 0; j < len_out * inner; j++)
                yo[j] = b[o];
            for (size_t c = 0; c < (size_t)ci; c++)
                for (size_t p = 0; p < len; p++)
                    for (int u = 0; u < k; u++) { /* input p feeds output p s + u - crop */
                        const long t = (long)(p * (size_t)stride) + u - crop;
                        if (t < 0 || (size_t)t >= len_out)
                            continue;
                        const double g = wt[(c * (size_t)co + o) * (size_t)k + (size_t)u];
                        const float *xr = x + ((i * (size_t)ci + c) * len + p) * inner;
                        for (size_t n = 0; n < inner; n++)
                            yo[(size_t)t * inner + n] += g * xr[n];
                    }
            for (size_t j = 0; j < len_out * inner; j++)
                yo[j] = sl_ref_act(act, yo[j]);
        }
    a.x = x, a.wt = wt, a.bias = b;
    /* the direct kernels' float sum: from the bias, each input channel's taps in order (those
     * reaching t from an input row), a fused multiply-add each, then the activation */
    const size_t m = len_out * inner;
    float *exact = (inner >= 16 || inner == 1) && k <= 16 ? malloc(ny * sizeof(float)) : NULL;
    for (size_t i = 0; i < batch && exact; i++)
        for (size_t o = 0; o < (size_t)co; o++)
            for (size_t t = 0; t < len_out; t++)
                for (size_t n = 0; n < inner; n++) {
                    float acc = b[o];
                    for (size_t c = 0; c < (size_t)ci; c++)
                        for (int u = 0; u < k; u++) {
                            const long q = (long)t + crop - u; /* = p stride */
                            if (q < 0 || q % stride || (size_t)(q / stride) >= len)
                                continue;
                            acc = fmaf(wt[(c * (size_t)co + o) * (size_t)k + (size_t)u],
                                       x[((i * (size_t)ci + c) * len + (size_t)(q / stride)) * inner + n], acc);
                        }
                    exact[(i * (size_t)co + o) * m + t * inner + n] = acc;
                }
    if (exact)
        act_rows(act, batch * (size_t)co, m, exact);
    char shape[160];
    snprintf(shape, sizeof shape, "convt1d b%zu %d->%d L%zu x%zu k%d s%d crop%d out%zu", batch, ci, co, len, inner, k,
             stride, crop, len_out);
    conv1d_runs(ctx, shape, NULL, &a, want, ny, exact);
    free(x), free(wt), free(b), free(want), free(exact);
}

/* sl_op_permute against the definition: the complex-as-channels layouts of HT-Demucs's spectrogram
 * ([C][2][F][T] <-> [C][T][F + 1][2], the CPU swaps a short strided last axis inwards), a plain
 * transpose and a copy into a wider buffer; on 1 and 3 threads. Elements outside the copy stay. */
static void test_permute(sl_op_ctx *ctx)
{
    const size_t C = 2, F = 37, T = 300, fz = (F + 1) * 2;
    const size_t nx = C * 2 * F * T, ny = C * (T + 4) * fz;
    float *x = sl_ref_rnd(nx > ny ? nx : ny, -1, 1), *y = malloc(ny * sizeof(float)), *want = malloc(ny * sizeof(float));
    const sl_permute_args cases[] = {
        {{C, T, F, 2}, x, {2 * F * T, 1, T, F * T}, y + 2 * fz, {(T + 4) * fz, fz, 2, 1}},   /* _ispec */
        {{C, 2, F, T}, x, {T * fz, 1, 2, fz}, y, {2 * F * T, F * T, T, 1}},                  /* _spec */
        {{1, C * 2, T, F}, x, {0, F * T, 1, T}, y, {0, F * T, F, 1}},                         /* transpose */
        {{1, 2, 3, 4}, x, {0, 12, 4, 1}, y + 5, {0, 40, 10, 2}},                              /* short, strided */
    };
    for (int th = 1; th <= 3; th += 2) {
        CHECK(sl_op_ctx_set_threads(ctx, th) == 0);
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            const sl_permute_args *a = &cases[k];
            for (size_t i = 0; i < ny; i++)
                y[i] = want[i] = (float)i;
            for (size_t i0 = 0; i0 < a->dim[0]; i0++)
                for (size_t i1 = 0; i1 < a->dim[1]; i1++)
                    for (size_t i2 = 0; i2 < a->dim[2]; i2++)
                        for (size_t i3 = 0; i3 < a->dim[3]; i3++)
                            want[(size_t)(a->y - y) + i0 * a->ys[0] + i1 * a->ys[1] + i2 * a->ys[2] + i3 * a->ys[3]] =
                                a->x[i0 * a->xs[0] + i1 * a->xs[1] + i2 * a->xs[2] + i3 * a->xs[3]];
            CHECK(sl_op_permute(ctx, a) == 0);
            CHECK_MSG(!memcmp(y, want, ny * sizeof(float)), "permute case %zu, %d threads", k, th);
        }
    }
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    printf("  permute: 4 layouts on 1 and 3 threads\n");
    free(x), free(y), free(want);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    sl_ref_seed("test_conv_ops");
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    test_permute(ctx);
    test_conv_shared_forms(32, 24, 40, 16);
    test_conv(ctx, 1, 1, 1, 1, 1, 3, 0, SL_ACT_NONE);
    test_conv(ctx, 2, 3, 5, 9, 11, 3, 1, SL_ACT_RELU);
    test_conv(ctx, 1, 1, 4, 40, 64, 3, 1, SL_ACT_RELU); /* Cnn14 block 1 shape, one input channel (direct) */
    test_conv(ctx, 3, 1, 5, 2, 19, 3, 0, SL_ACT_TANH);  /* direct: two rows, batch, no bias */
    test_conv(ctx, 1, 1, 3, 1, 3, 3, 1, SL_ACT_NONE);   /* direct: one row */
    test_conv(ctx, 1, 7, 6, 5, 2, 3, 1, SL_ACT_TANH);
    test_conv(ctx, 1, 4, 3, 6, 7, 1, 1, SL_ACT_NONE);
    test_conv(ctx, 1, 2, 2, 8, 5, 5, 0, SL_ACT_NONE);
    test_conv(ctx, 1, 300, 2, 1000, 3, 3, 1, SL_ACT_NONE); /* Winograd, odd width */
    test_conv(ctx, 1, 5, 300, 1000, 3, 3, 1, SL_ACT_NONE); /* im2col in several row blocks */
    /* Winograd F(2x2, 3x3): odd height and width (partial tiles), batch, no bias, every activation */
    test_conv(ctx, 2, 16, 24, 17, 9, 3, 1, SL_ACT_TANH);
    test_conv(ctx, 1, 32, 8, 63, 4, 3, 0, SL_ACT_RELU);  /* Cnn14 block 5's shape, reduced */
    test_conv(ctx, 1, 17, 5, 8, 16, 3, 1, SL_ACT_NONE);  /* exactly 32 tiles */
    test_conv(ctx, 1, 16, 16, 301, 64, 3, 1, SL_ACT_RELU); /* several chunks of tile rows */
    /* 3x3 on images 1 or 2 columns wide: taps over the padding skipped; 13 and 7 output channels
     * leave rows outside the 6-channel blocks, 15 / 16 / 17 / 33 rows partial pixel panels */
    test_conv(ctx, 1, 40, 13, 31, 2, 3, 1, SL_ACT_RELU); /* Cnn14 block 6's shape, reduced */
    test_conv(ctx, 2, 20, 7, 33, 2, 3, 0, SL_ACT_TANH);
    test_conv(ctx, 1, 7, 6, 5, 1, 3, 1, SL_ACT_NONE);
    test_conv(ctx, 1, 3, 12, 16, 2, 3, 1, SL_ACT_NONE);
    test_conv(ctx, 1, 2, 1, 17, 1, 3, 0, SL_ACT_RELU);
    test_conv(ctx, 1, 300, 6, 15, 2, 3, 1, SL_ACT_NONE); /* several reduction blocks */
    test_conv(ctx, 1, 600, 4, 700, 2, 3, 1, SL_ACT_NONE); /* several chunks of pixel panels */
    test_conv_simd(ctx, 2, 16, 24, 17, 9, SL_ACT_TANH, 1, 0);  /* Winograd: partial tiles, portable epilogue */
    test_conv_simd(ctx, 1, 32, 20, 61, 64, SL_ACT_RELU, 1, 0); /* Winograd: whole vectors and a tail; 20 = 8 + 8 + 4 */
    test_conv_simd(ctx, 1, 24, 9, 40, 35, SL_ACT_NONE, 1, 0);  /* Winograd: odd width, one block of 8 and 1 */
    test_conv_simd(ctx, 1, 64, 16, 200, 64, SL_ACT_RELU, 1, 0); /* Winograd: several chunks of tile rows */
    test_conv_simd(ctx, 1, 24, 20, 9, 74, SL_ACT_RELU, 1, 0);   /* Winograd: 37 tiles a row, the last vector overlapping */
    test_conv_simd(ctx, 2, 16, 9, 6, 50, SL_ACT_NONE, 1, 0);    /* Winograd: 25 tiles a row, an odd number of rows */
    /* Winograd F(4x4, 3x3): HT-Demucs's decoder rewrite shapes (48 -> 96 at F 512, 384 -> 768 at F 8;
     * reduced in F and T), partial tiles both ways, batch, the activations; the GEMMs ours with
     * AVX2 + FMA, OpenBLAS's on the portable level */
    test_conv_wino4(ctx, 1, 48, 96, 32, 336, 1, SL_ACT_NONE);
    test_conv_wino4(ctx, 1, 384, 192, 8, 84, 1, SL_ACT_NONE);
    test_conv_wino4(ctx, 2, 16, 24, 17, 43, 1, SL_ACT_TANH);
    test_conv_wino4(ctx, 1, 24, 20, 30, 37, 0, SL_ACT_RELU);
    test_conv_wino4(ctx, 1, 32, 9, 14, 70, 1, SL_ACT_NONE);
    test_conv_simd(ctx, 1, 40, 13, 31, 2, SL_ACT_RELU, 1, 0);  /* narrow: pairs of panels and row blocks */
    test_conv_simd(ctx, 2, 20, 12, 50, 1, SL_ACT_NONE, 1, 0);  /* narrow: 4 panels, one column */
    test_conv_simd(ctx, 2, 1, 10, 33, 64, SL_ACT_RELU, 1, 1);  /* one input channel: whole vectors */
    test_conv_simd(ctx, 1, 1, 7, 9, 37, SL_ACT_TANH, 1, 1);    /* one input channel: a tail, tanh */
    test_conv1d(ctx, 3, 6, 3, 33, 1, 3, 1, 4, 4, 4, SL_ACT_NONE, 0);      /* DConv: dilation 4, masked edges */
    test_conv1d(ctx, 2, 16, 30, 70, 1, 3, 1, 2, 2, 2, SL_ACT_GELU, 0);    /* 12 + 12 + 6 channels, a tile tail */
    test_conv1d(ctx, 1, 3, 2, 4, 1, 7, 1, 1, 3, 3, SL_ACT_NONE, 0);       /* kernel longer than the signal */
    test_conv1d(ctx, 4, 12, 24, 336, 1, 1, 1, 1, 0, 0, SL_ACT_NONE, 0);   /* 1x1 on short items */
    test_conv1d(ctx, 1, 4, 6, 2000, 1, 3, 1, 1, 1, 1, SL_ACT_GELU, 0);    /* one long item in parts */
    test_conv1d(ctx, 3, 200, 20, 60, 1, 3, 1, 1, 1, 1, SL_ACT_NONE, 0);   /* K 600: the bias then several k blocks */
    /* the GLU of the channel halves: in the direct path's blocks (inner 1, stride 1: HT-Demucs's
     * rewrites) and block by block from the library path's scratch (groups 1: one item's part, or
     * blocks of several whole short items) */
    test_conv1d(ctx, 2, 16, 48, 700, 1, 1, 1, 1, 0, 0, SL_ACT_NONE, 1);    /* 1x1, 24 of 48 channels, tile tail */
    test_conv1d(ctx, 1, 24, 30, 333, 1, 3, 1, 1, 1, 1, SL_ACT_NONE, 1);    /* k 3, 15 of 30: a partial tile */
    test_conv1d(ctx, 1, 8, 12, 20, 37, 8, 4, 1, 2, 2, SL_ACT_NONE, 1);     /* [K,1] stride 4: the other way */
    test_conv1d(ctx, 1, 100, 26, 300, 1, 3, 1, 1, 1, 1, SL_ACT_NONE, 1);  /* 300 channel-taps: two passes */
    test_conv1d(ctx, 6, 8, 20, 50, 1, 3, 1, 1, 1, 1, SL_ACT_NONE, 1);     /* glu: blocks of two whole items */
    test_conv1d(ctx, 3, 6, 14, 40, 5, 3, 1, 2, 2, 2, SL_ACT_NONE, 1);     /* glu on inner 5, dilation 2 */
    test_conv1d(ctx, 1, 8, 13, 20, 37, 8, 4, 1, 2, 2, SL_ACT_TANH, 0);    /* [K,1] stride 4 over rows of 37 */
    test_conv1d(ctx, 2, 5, 48, 40, 16, 3, 1, 1, 1, 1, SL_ACT_RELU, 0);    /* rows of one vector, 48 channels */
    test_conv1d(ctx, 1, 8, 96, 50, 1, 3, 1, 1, 1, 1, SL_ACT_NONE, 0);     /* 96 channels: weights and x packed */
    test_conv1d(ctx, 1, 100, 30, 70, 1, 3, 1, 1, 1, 1, SL_ACT_GELU, 0);   /* 300 channel-taps: two passes */
    test_conv1d(ctx, 1, 30, 40, 9, 21, 8, 4, 1, 2, 2, SL_ACT_GELU, 0);    /* [K,1] stride 4, 240 channel-taps */
    test_conv1d(ctx, 2, 8, 20, 50, 1, 3, 2, 1, 1, 1, SL_ACT_NONE, 0);     /* stride 2 on inner 1: x by phases */
    test_conv1d(ctx, 2, 6, 30, 1000, 1, 8, 4, 1, 2, 5, SL_ACT_GELU, 0);   /* stride 4: the vector split, right pad */
    test_conv1d(ctx, 1, 30, 20, 300, 1, 8, 4, 2, 3, 0, SL_ACT_NONE, 0);   /* stride 4, dilation 2, two passes */
    test_conv1d(ctx, 1, 3, 5, 7, 1, 5, 3, 1, 0, 0, SL_ACT_TANH, 0);       /* stride 3, one output tile tail */
    test_conv1d(ctx, 1, 6, 10, 30, 4, 3, 2, 1, 1, 1, SL_ACT_RELU, 0);     /* inner 4: im2col */
    test_conv1d_batch(ctx, 96, 12, 336, 3, 2, 0); /* HT-Demucs's second layer's DConv: 96 -> 12, k 3 */
    test_conv1d_batch(ctx, 12, 192, 336, 1, 1, 0); /* and back: 1x1, 12 -> 192 */
    test_conv1d_batch(ctx, 48, 6, 336, 3, 1, 0);   /* its first layer's */
    test_conv1d_batch(ctx, 8, 20, 50, 3, 1, 1);    /* the GLU */
    test_conv1d_batch(ctx, 200, 8, 2000, 3, 1, 0); /* K 600: a long item in parts */
    test_convt1d(ctx, 1, 6, 5, 13, 1, 8, 4, 2, 48, SL_ACT_GELU);       /* inner 1: by phases, woven back */
    test_convt1d(ctx, 2, 20, 30, 300, 1, 8, 4, 2, 1200, SL_ACT_GELU);  /* long: the vector weave, x packed */
    test_convt1d(ctx, 1, 100, 7, 50, 1, 8, 4, 0, 204, SL_ACT_NONE);    /* 200 channel-taps: two passes, full */
    test_convt1d(ctx, 1, 6, 13, 40, 1, 3, 2, 1, 79, SL_ACT_TANH);      /* stride 2: the scalar weave */
    test_convt1d(ctx, 1, 4, 5, 30, 1, 2, 3, 0, 89, SL_ACT_RELU);       /* stride > k: a phase with no tap */
    test_convt1d(ctx, 1, 3, 4, 5, 1, 8, 4, 0, 10, SL_ACT_NONE);        /* shorter than the full length */
    test_convt1d(ctx, 2, 6, 5, 9, 21, 8, 4, 2, 30, SL_ACT_GELU);       /* k 8 stride 4, cropped, tile tails */
    test_convt1d(ctx, 1, 8, 16, 16, 40, 8, 4, 0, 68, SL_ACT_NONE);     /* 12 + 4 channels, full length */
    test_convt1d(ctx, 1, 100, 30, 7, 33, 8, 4, 2, 28, SL_ACT_TANH);    /* 200 channel-taps: two passes */
    test_convt1d(ctx, 1, 4, 13, 7, 16, 2, 3, 0, 20, SL_ACT_RELU);      /* stride > k: rows with no tap */
    test_convt1d(ctx, 1, 5, 7, 6, 17, 3, 3, 1, 16, SL_ACT_NONE);       /* stride = k */
    test_convt1d(ctx, 2, 14, 26, 9, 600, 8, 4, 2, 30, SL_ACT_GELU);    /* 19 tiles a row: groups past a block's 64 tiles, 16 copies */
    test_convt1d(ctx, 1, 9, 14, 5, 70, 16, 8, 3, 40, SL_ACT_NONE);     /* stride 8: groups of 8 rows sharing 2 input rows */
    test_convt1d(ctx, 1, 9, 14, 200, 1, 16, 8, 3, 1500, SL_ACT_NONE);  /* the same by phases: 8 phases a block of positions */
    test_conv_fixed(ctx, 16, 8, 20, 12);
    test_conv_threads(ctx, 256, 64, 40, 2); /* large enough for the threads to start */
    test_conv_threads(ctx, 600, 15, 35, 1);
    test_conv_threads(ctx, 64, 48, 200, 66); /* Winograd, 13 chunks of tile rows: each whole on one thread */
    test_conv_threads(ctx, 32, 20, 61, 64);  /* Winograd: 20 = 8 + 8 + 4 channels, a panel of 32 and a tail */
    test_conv_threads(ctx, 24, 9, 40, 35);   /* Winograd: 9 = 8 + 1 channels, a tail of at most 16 columns */
    {
        CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
        printf("  (3 threads)\n");
        test_conv(ctx, 2, 48, 40, 71, 21, 3, 1, SL_ACT_RELU); /* Winograd */
        test_conv(ctx, 1, 96, 50, 33, 2, 3, 1, SL_ACT_RELU);  /* narrow */
        test_conv(ctx, 1, 3, 40, 70, 20, 3, 1, SL_ACT_RELU);  /* im2col */
        test_conv(ctx, 2, 1, 24, 60, 40, 5, 1, SL_ACT_TANH);  /* im2col, k 5, one input channel */
        test_conv(ctx, 1, 20, 17, 9, 9, 3, 0, SL_ACT_NONE);   /* Winograd, odd sizes, no bias */
        test_conv(ctx, 2, 64, 20, 201, 66, 3, 1, SL_ACT_NONE); /* Winograd, 2 x 13 chunks, one per thread at a time */
        test_conv(ctx, 2, 1, 64, 50, 64, 3, 1, SL_ACT_RELU);  /* direct, one input channel */
        CHECK(sl_op_ctx_set_threads(ctx, 17) == 0);
        printf("  (17 threads: each Winograd GEMM in two parts)\n");
        test_conv(ctx, 1, 32, 44, 40, 40, 3, 1, SL_ACT_RELU);
        CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    }
    test_pool(ctx, 3, 9, 7, 2, 2);
    test_pool(ctx, 2, 4, 4, 1, 1);
    test_pool(ctx, 1, 5, 9, 2, 3);
    test_pool(ctx, 4, 64, 70, 2, 2);  /* whole vectors and a tail */
    test_pool_simd(ctx, 64, 40, 64);  /* Cnn14 block 1's shape, reduced: enough for the threads */
    test_pool_simd(ctx, 3, 9, 71);
    test_clip(ctx, 1, 1, 1);
    test_clip(ctx, 4, 31, 2);
    test_clip(ctx, 2, 7, 64);

    /* argument checks */
    float v[4] = {1, 2, 3, 4}, o[4];
    sl_conv2d_args a = {1, 1, 1, 2, 2, 2, v, v, NULL, SL_ACT_NONE, o, 0};
    CHECK(sl_op_conv2d(ctx, &a) == SL_EINVAL); /* even kernel */
    a.k = 9;
    CHECK(sl_op_conv2d(ctx, &a) == SL_EINVAL);
    a.k = 3;
    a.c_in = 0;
    CHECK(sl_op_conv2d(ctx, &a) == SL_EINVAL);
    CHECK(sl_op_avg_pool2d(ctx, 1, 2, 2, 3, 1, v, o) == SL_EINVAL); /* kernel taller than the image */
    CHECK(sl_op_clip_pool(ctx, 1, 0, 2, v, o) == SL_EINVAL);
    /* conv1d's GLU: an even c_out, no activation, groups 1 */
    sl_conv1d_args g = {1, 1, 2, 1, 4, 1, 1, 1, 1, 0, 0, v, v, NULL, SL_ACT_NONE, o, 1};
    CHECK(sl_op_conv1d(ctx, &g) == 0);
    g.c_out = 3;
    CHECK(sl_op_conv1d(ctx, &g) == SL_EINVAL);
    g.c_out = 2, g.act = SL_ACT_GELU;
    CHECK(sl_op_conv1d(ctx, &g) == SL_EINVAL);
    g.act = SL_ACT_NONE, g.c_in = 2, g.groups = 2;
    CHECK(sl_op_conv1d(ctx, &g) == SL_EINVAL);
    CHECK(sl_op_supported(ctx, SL_OP_CONV2D) && sl_op_supported(ctx, SL_OP_AVG_POOL2D) &&
          sl_op_supported(ctx, SL_OP_CLIP_POOL));
    sl_op_ctx_close(ctx);
    return sl_test_finish("conv_ops");
}
