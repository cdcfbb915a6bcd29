/* CPU pooling ops: non-overlapping average pooling and the PANNs clip head
 * (mean over features, max + mean over time). */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "cpu_conv.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

/* The 2x2 rows with AVX2 / AVX-512 vectors (cpu_pool_simd.h: the same bits), taken at run
 * time (cpu_simd.h: sl_cpu_simd_avx2, sl_cpu_simd_avx512). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define POOL_HAVE_SIMD 1
#define SL_SIMD_BODY "cpu_pool_simd.h"
#include "cpu_simd_each.h"
#undef SL_SIMD_BODY
#else
#define POOL_HAVE_SIMD 0
#endif

typedef struct {
    int h, w, kh, kw, simd;
    const float *in;
    float *out;
} pool_job;

/* Planes lo .. hi - 1. */
static void pool_part(const void *v, int lo, int hi, int tid)
{
    (void)tid;
    const pool_job *J = v;
    const int h = J->h, w = J->w, kh = J->kh, kw = J->kw;
    const int oh = h / kh, ow = w / kw;
    const float inv = 1.0f / (float)(kh * kw);
    for (size_t p = (size_t)lo; p < (size_t)hi; p++) {
        const float *x = J->in + p * (size_t)h * w;
        float *y = J->out + p * (size_t)oh * ow;
#if POOL_HAVE_SIMD
        if (J->simd && kh == 2 && kw == 2) { /* the same sums and scaling as below */
            for (int i = 0; i < oh; i++)
                (J->simd == 2 ? pool2_row_avx512 : pool2_row_avx2)(y + (size_t)i * ow, x + (size_t)(2 * i) * w,
                                                                   x + (size_t)(2 * i + 1) * w, ow);
            continue;
        }
#endif
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                /* Sum in float in row-major block order, then scale: torch's CPU kernel. */
                float s = 0.0f;
                for (int u = 0; u < kh; u++)
                    for (int vv = 0; vv < kw; vv++)
                        s += x[(size_t)(i * kh + u) * w + j * kw + vv];
                y[(size_t)i * ow + j] = s * inv;
            }
    }
}

int sl_cpu_avg_pool2d(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in, float *out)
{
    const size_t chunk = (size_t)1 << 30; /* planes per pool loop (int ranges) */
    pool_job J = {h, w, kh, kw, sl_cpu_simd_avx512() ? 2 : sl_cpu_simd_avx2() ? 1 : 0, in, out};
    for (size_t p0 = 0; p0 < planes; p0 += chunk) {
        const size_t n = planes - p0 < chunk ? planes - p0 : chunk;
        J.in = in + p0 * (size_t)h * w;
        J.out = out + p0 * (size_t)(h / kh) * (size_t)(w / kw);
        sl_cpu_chan_for(ctx, (int)n, n * (size_t)h * w, pool_part, &J);
    }
    return 0;
}

int sl_cpu_clip_pool(sl_op_ctx *ctx, size_t planes, size_t T, size_t F, const float *in, float *out)
{
    (void)ctx;
    for (size_t p = 0; p < planes; p++) {
        const float *x = in + p * T * F;
        double mx = -INFINITY, sum = 0.0;
        int nan = 0;
        for (size_t t = 0; t < T; t++) {
            double s = 0.0;
            for (size_t f = 0; f < F; f++)
                s += x[t * F + f];
            const float m = (float)(s / (double)F);
            if (isnan(m))
                nan = 1;
            if (m > mx)
                mx = m;
            sum += m;
        }
        out[p] = nan ? NAN : (float)(mx + sum / (double)T);
    }
    return 0;
}
