/* CPU convolutional ops: conv2d as im2col + one OpenBLAS GEMM per block of
 * output rows (bias + activation epilogue), non-overlapping average pooling,
 * and the PANNs clip head (mean over features, max + mean over time). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "cpu_ops.h"

/* Floats of im2col scratch per GEMM: bounds the memory whatever the image. */
#define CONV_COL_FLOATS ((size_t)1 << 24)

static float conv_act(sl_act act, float v)
{
    switch (act) {
    case SL_ACT_RELU: return v < 0.0f ? 0.0f : v; /* NaN stays NaN, as torch.relu */
    case SL_ACT_TANH: return tanhf(v);
    default: return v;
    }
}

/* col[(c*k + u)*k + v][r*W + j] = x[c][r0 + r + u - p][j + v - p] (0 outside), r < rows. */
static void im2col(const float *x, int C, int H, int W, int k, int r0, int rows, float *col)
{
    const int p = k / 2;
    const size_t n = (size_t)rows * (size_t)W;
    for (int c = 0; c < C; c++) {
        const float *xc = x + (size_t)c * H * W;
        for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++) {
                float *dst = col + ((size_t)(c * k + u) * k + v) * n;
                for (int r = 0; r < rows; r++) {
                    const int i = r0 + r + u - p;
                    float *d = dst + (size_t)r * W;
                    if (i < 0 || i >= H) {
                        memset(d, 0, (size_t)W * sizeof(float));
                        continue;
                    }
                    const float *s = xc + (size_t)i * W;
                    const int j0 = p - v > 0 ? p - v : 0;          /* first j with j+v-p >= 0 */
                    const int j1 = W + p - v < W ? W + p - v : W;  /* first j with j+v-p >= W */
                    for (int j = 0; j < j0 && j < W; j++)
                        d[j] = 0.0f;
                    if (j1 > j0)
                        memcpy(d + j0, s + j0 + v - p, (size_t)(j1 - j0) * sizeof(float));
                    for (int j = j1 > j0 ? j1 : j0; j < W; j++)
                        d[j] = 0.0f;
                }
            }
    }
}

int sl_cpu_conv2d(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    const int C = a->c_in, O = a->c_out, H = a->h, W = a->w, k = a->k;
    const size_t K = (size_t)C * k * k, HW = (size_t)H * W;
    size_t rows = CONV_COL_FLOATS / (K * (size_t)W);
    if (rows < 1)
        rows = 1;
    if (rows > (size_t)H)
        rows = (size_t)H;
    float *col = NULL;
    if (k > 1 && !(col = sl_cpu_scratch(ctx, K * rows * (size_t)W)))
        return SL_ENOMEM;
    for (size_t b = 0; b < a->batch; b++) {
        const float *x = a->x + b * (size_t)C * HW;
        float *y = a->y + b * (size_t)O * HW;
        for (int r0 = 0; r0 < H; r0 += (int)rows) {
            const int nr = H - r0 < (int)rows ? H - r0 : (int)rows;
            const size_t n = (size_t)nr * W;
            const float *B = x + (size_t)r0 * W;
            int ldb = (int)HW;
            if (k > 1) {
                im2col(x, C, H, W, k, r0, nr, col);
                B = col;
                ldb = (int)n;
            }
            /* y[o][r0*W ..] = wt[o][K] . col[K][n] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, O, (int)n, (int)K, 1.0f, a->wt, (int)K, B, ldb,
                        0.0f, y + (size_t)r0 * W, (int)HW);
        }
        if (!a->bias && a->act == SL_ACT_NONE)
            continue;
        for (int o = 0; o < O; o++) {
            float *yo = y + (size_t)o * HW;
            const float bo = a->bias ? a->bias[o] : 0.0f;
            if (a->act == SL_ACT_RELU) { /* branch-free so it vectorises; NaN stays NaN */
                for (size_t i = 0; i < HW; i++) {
                    const float v = yo[i] + bo;
                    yo[i] = v < 0.0f ? 0.0f : v;
                }
            } else {
                for (size_t i = 0; i < HW; i++)
                    yo[i] = conv_act(a->act, yo[i] + bo);
            }
        }
    }
    return 0;
}

int sl_cpu_avg_pool2d(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in, float *out)
{
    (void)ctx;
    const int oh = h / kh, ow = w / kw;
    const float inv = 1.0f / (float)(kh * kw);
    for (size_t p = 0; p < planes; p++) {
        const float *x = in + p * (size_t)h * w;
        float *y = out + p * (size_t)oh * ow;
        for (int i = 0; i < oh; i++)
            for (int j = 0; j < ow; j++) {
                /* Sum in float in row-major block order, then scale: torch's CPU kernel. */
                float s = 0.0f;
                for (int u = 0; u < kh; u++)
                    for (int v = 0; v < kw; v++)
                        s += x[(size_t)(i * kh + u) * w + j * kw + v];
                y[(size_t)i * ow + j] = s * inv;
            }
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
