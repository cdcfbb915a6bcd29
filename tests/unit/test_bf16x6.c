/* runtime.precision bf16x6 (kernels/cpu/cpu_amx.c): linear layers on the AMX tiles at fp32's
 * accuracy. Over the shapes of the RoFormers', CLAP's and HT-Demucs's linear layers (fewer rows)
 * and adversarial inputs (wide dynamic range, cancellation, values next to the largest float,
 * subnormals, rows and columns with infinities and NaNs), the errors of sl_op_gemm against an
 * exact (double) product are measured for bf16x6 and for exact fp32 on the same inputs, and
 * bf16x6's must stay within a small factor of fp32's: its max and RMS error relative to
 * sum |x w| (the scale of a dot product's rounding) and, where the result does not cancel, to
 * |x . w|. Dropping one of the six part products or splitting an operand wrongly costs about
 * 2^-17 of a product, tens of times fp32's error. Non-finite results must be fp32's (the same
 * NaN / infinity of the same sign). Also: a thread split changes no bit, without the tiles
 * (SL_CPU_AMX=0) the mode in effect is fp32 with fp32's bits, named so in the device string. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "kernels/cpu/cpu_simd.h"
#include "kernels/ops.h"
#include "sl_ref.h"
#include "sl_test.h"

typedef enum { D_UNIFORM, D_WIDE, D_CANCEL, D_HUGE, D_TINY, D_NONFINITE } dist;
static const char *const dist_name[] = {"uniform", "wide range", "cancellation", "near FLT_MAX", "subnormal",
                                        "inf/nan"};

static float urand(float lo, float hi) { return (float)(lo + (hi - lo) * sl_ref_urand()); }
static float sgn(void) { return sl_ref_urand() < 0.5 ? -1.0f : 1.0f; }

/* x [m][k], w [n][k] drawn for distribution d. */
static void fill(dist d, size_t m, size_t n, size_t k, float *x, float *w)
{
    for (size_t i = 0; i < m * k; i++)
        x[i] = urand(-1, 1);
    for (size_t i = 0; i < n * k; i++)
        w[i] = urand(-1, 1);
    switch (d) {
    case D_UNIFORM:
        break;
    case D_WIDE: /* magnitudes over 2^-40 .. 2^40 in both operands */
        for (size_t i = 0; i < m * k; i++)
            x[i] = sgn() * ldexpf(urand(1, 2), (int)(sl_ref_urand() * 80) - 40);
        for (size_t i = 0; i < n * k; i++)
            w[i] = sgn() * ldexpf(urand(1, 2), (int)(sl_ref_urand() * 80) - 40);
        break;
    case D_CANCEL: /* the second half of each row undoes the first to about 1e-4 */
        for (size_t i = 0; i < m; i++)
            for (size_t t = 0; t < k / 2; t++)
                x[i * k + k / 2 + t] = -x[i * k + t];
        for (size_t j = 0; j < n; j++)
            for (size_t t = 0; t < k / 2; t++)
                w[j * k + k / 2 + t] = w[j * k + t] * (1.0f + urand(-1e-4f, 1e-4f));
        break;
    case D_HUGE: /* x within 2^-9 of FLT_MAX (bf16 rounds it up to infinity), w about 2^-120 */
        for (size_t i = 0; i < m * k; i++)
            x[i] = sgn() * FLT_MAX * (1.0f - urand(0, 1.0f / 512));
        for (size_t i = 0; i < n * k; i++)
            w[i] = ldexpf(w[i], -120);
        break;
    case D_TINY: /* x about 2^-120 (a quarter of them subnormal, some rows all subnormal), w about 2^-8 */
        for (size_t i = 0; i < m * k; i++)
            x[i] = ldexpf(x[i], (i / k) % 5 == 0 || sl_ref_urand() < 0.25 ? -135 : -120);
        for (size_t i = 0; i < n * k; i++)
            w[i] = ldexpf(w[i], -8);
        break;
    case D_NONFINITE: /* a few rows of x and columns of w with infinities or a NaN */
        for (size_t i = 0; i < m; i += 7)
            x[i * k + (i * 13) % k] = i % 3 == 0 ? NAN : sgn() * INFINITY;
        x[3 * k + 1] = INFINITY, x[3 * k + 2] = -INFINITY; /* inf - inf: NaN */
        for (size_t j = 1; j < n; j += 11)
            w[j * k + (j * 5) % k] = j % 4 == 1 ? NAN : sgn() * INFINITY;
        w[2 * k + (7 * 13) % k] = 0.0f; /* 0 . inf: row 7's infinity times a zero of column 2 */
        break;
    }
}

typedef struct {
    double max_n, rms_n; /* |err| / sum |x w| */
    double max_r, rms_r; /* |err| / |x . w| where |x . w| >= sum |x w| / 16 */
    size_t cnt_r, bad;   /* bad: non-finite results unlike the exact (IEEE double, fp32 range) one */
} errs;

static void measure(const float *y, const double *ref, const double *mag, size_t cnt, errs *e)
{
    double sn = 0, sr = 0;
    size_t cn = 0;
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i < cnt; i++) {
        if (!isfinite(ref[i])) {
            e->bad += isnan(ref[i]) ? !isnan(y[i]) : !(isinf(y[i]) && (y[i] > 0) == (ref[i] > 0));
            continue;
        }
        if (!isfinite(y[i])) {
            e->bad++;
            continue;
        }
        const double d = fabs((double)y[i] - ref[i]);
        if (mag[i] > 0) {
            const double n = d / mag[i];
            e->max_n = n > e->max_n ? n : e->max_n;
            sn += n * n;
            cn++;
        }
        if (fabs(ref[i]) >= mag[i] / 16 && ref[i] != 0) {
            const double r = d / fabs(ref[i]);
            e->max_r = r > e->max_r ? r : e->max_r;
            sr += r * r;
            e->cnt_r++;
        }
    }
    e->rms_n = cn ? sqrt(sn / (double)cn) : 0;
    e->rms_r = e->cnt_r ? sqrt(sr / (double)e->cnt_r) : 0;
}

/* y = x w^T in precision p (w declared fixed when fixed), threads th. */
static float *gemm(sl_op_ctx *ctx, sl_precision p, int th, int fixed, size_t m, size_t n, size_t k, const float *x,
                   const float *w_host)
{
    CHECK(sl_op_ctx_set_threads(ctx, th) == 0);
    CHECK(sl_op_ctx_set_precision(ctx, p) == 0);
    float *w = NULL, *y = malloc(m * n * sizeof(float));
    CHECK(sl_op_alloc(ctx, (void **)&w, n * k * sizeof(float)) == 0);
    memcpy(w, w_host, n * k * sizeof(float));
    if (fixed)
        CHECK(sl_op_mark_fixed(ctx, w, n * k * sizeof(float)) == 0);
    sl_gemm_args a = {.batch = 1, .m = m, .n = n, .k = k, .x = x, .ldx = k, .w = w, .ldw = k, .y = y, .ldy = n};
    CHECK_MSG(sl_op_gemm(ctx, &a) == 0, "gemm: %s", sl_lasterr());
    sl_op_free(ctx, w);
    return y;
}

static int tiles_on;

static void run_case(sl_op_ctx *ctx, const char *what, size_t m, size_t n, size_t k, dist d, int fixed)
{
    float *x = malloc(m * k * sizeof(float)), *w = malloc(n * k * sizeof(float));
    fill(d, m, n, k, x, w);
    double *ref = malloc(m * n * sizeof(double)), *mag = malloc(m * n * sizeof(double));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0, sa = 0;
            for (size_t kk = 0; kk < k; kk++) {
                const double pr = (double)x[i * k + kk] * w[j * k + kk];
                s += pr;
                sa += fabs(pr);
            }
            /* what fp32 gives where the exact sum leaves its range */
            ref[i * n + j] = fabs(s) > FLT_MAX ? s * INFINITY : s;
            mag[i * n + j] = sa;
        }
    float *y32 = gemm(ctx, SL_PREC_FP32, 1, fixed, m, n, k, x, w);
    float *y6 = gemm(ctx, SL_PREC_BF16X6, 1, fixed, m, n, k, x, w);
    float *y6t = gemm(ctx, SL_PREC_BF16X6, 3, fixed, m, n, k, x, w);
    CHECK_MSG(!memcmp(y6, y6t, m * n * sizeof(float)), "%s %s: bf16x6 differs between 1 and 3 threads", what,
              dist_name[d]);
    errs e32, e6;
    measure(y32, ref, mag, m * n, &e32);
    measure(y6, ref, mag, m * n, &e6);
    printf("  %-22s %-12s %4zux%4zux%4zu  |err|/sum|xw| max %.3g rms %.3g (fp32 %.3g %.3g)  |err|/|xw| max %.3g rms "
           "%.3g (fp32 %.3g %.3g)%s\n",
           what, dist_name[d], m, n, k, e6.max_n, e6.rms_n, e32.max_n, e32.rms_n, e6.max_r, e6.rms_r, e32.max_r,
           e32.rms_r, tiles_on ? "" : " [fp32 in effect]");
    CHECK_MSG(e6.bad == 0 && e32.bad == 0, "%s %s: non-finite results unlike fp32's (bf16x6 %zu, fp32 %zu)", what,
              dist_name[d], e6.bad, e32.bad);
    /* bf16x6 within a small factor of fp32 (a floor of 2^-26 for the cases fp32 computes exactly):
     * from 65 rows fp32 is the packed AVX-512 kernel (cpu_gemmpk.c, one sum over k per element),
     * which the models' layers take; up to 64 rows the dot kernel (cpu_gemm512.c, several partial
     * sums per element: a smaller error on long sums, which bf16x6's tiles do not match) */
    const double fl = ldexp(1, -26), fm = m > 64 ? 1.5 : 2.5, fr = m > 64 ? 1.25 : 2.0;
    CHECK_MSG(e6.max_n <= fm * e32.max_n + fl && e6.rms_n <= fr * e32.rms_n + fl / 8,
              "%s %s: bf16x6 error / sum|xw| max %g rms %g, fp32 %g %g", what, dist_name[d], e6.max_n, e6.rms_n,
              e32.max_n, e32.rms_n);
    /* (relative to |x . w| only over enough outputs that do not cancel: a few make no statistic) */
    CHECK_MSG(e6.cnt_r < 256 || (e6.max_r <= fm * e32.max_r + fl && e6.rms_r <= fr * e32.rms_r + fl / 8),
              "%s %s: bf16x6 error / |xw| max %g rms %g, fp32 %g %g", what, dist_name[d], e6.max_r, e6.rms_r,
              e32.max_r, e32.rms_r);
    if (tiles_on && d == D_UNIFORM)
        CHECK_MSG(memcmp(y6, y32, m * n * sizeof(float)) != 0, "%s: bf16x6 gave fp32's bits (tiles not used)", what);
    if (!tiles_on)
        CHECK_MSG(!memcmp(y6, y32, m * n * sizeof(float)), "%s %s: fp32 in effect but not fp32's bits", what,
                  dist_name[d]);
    free(x), free(w), free(ref), free(mag), free(y32), free(y6), free(y6t);
}

int main(void)
{
    sl_ref_seed("test_bf16x6");
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    CHECK(sl_op_ctx_set_precision(ctx, SL_PREC_BF16X6) == 0);
    tiles_on = sl_op_ctx_precision(ctx) == SL_PREC_BF16X6;
    CHECK_MSG(tiles_on == sl_cpu_amx(), "bf16x6 in effect: %d, AMX: %d", tiles_on, sl_cpu_amx());
    CHECK_MSG(strstr(sl_op_ctx_device(ctx), tiles_on ? "precision bf16x6 (gemm as six bf16 products"
                                                     : "precision fp32 (bf16x6 asked for") != NULL,
              "device %s", sl_op_ctx_device(ctx));
    printf("  device: %s\n", sl_op_ctx_device(ctx));
    const char *env = getenv("SL_CPU_AMX");
    if (env && !strcmp(env, "0"))
        CHECK_MSG(!tiles_on, "SL_CPU_AMX=0 did not turn the tiles off");
    /* the models' linear layers (rows reduced): BS-RoFormer (384: qkv, out 512 -> 384, ff),
     * CLAP's audio tower (stage 1 and 4 widths), HT-Demucs's transformer (512, ff 2048) */
    static const struct {
        const char *name;
        size_t m, n, k;
    } shapes[] = {
        {"roformer qkv", 96, 1536, 384},   {"roformer out", 96, 384, 512},   {"roformer ff2", 128, 384, 1536},
        {"clap s1 qkv", 128, 384, 128},    {"clap s4 fc2", 80, 768, 3072},   {"htdemucs ff1", 80, 2048, 512},
        {"htdemucs ff2", 80, 512, 2048},   {"edges", 37, 45, 77},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        run_case(ctx, shapes[s].name, shapes[s].m, shapes[s].n, shapes[s].k, D_UNIFORM, 1);
    for (dist d = D_WIDE; d <= D_NONFINITE; d++) {
        run_case(ctx, "roformer out", 96, 384, 512, d, 1);
        run_case(ctx, "edges", 37, 45, 77, d, 1);
    }
    /* w not declared fixed: packed per call (from 128 rows) */
    run_case(ctx, "per-call packing", 160, 96, 200, D_UNIFORM, 0);
    run_case(ctx, "per-call packing", 160, 96, 200, D_NONFINITE, 0);
    /* few rows: fp32 by the dot kernel */
    run_case(ctx, "clap s4 fc2, 48 rows", 48, 768, 3072, D_UNIFORM, 1);
    run_case(ctx, "htdemucs ff2, 64 rows", 64, 512, 2048, D_UNIFORM, 1);
    sl_op_ctx_close(ctx);
    return sl_test_finish("test_bf16x6");
}
