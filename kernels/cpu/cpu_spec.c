/* CPU spectral ops: magnitude/power, the median filters and soft masks of
 * HPSS (librosa.decompose.hpss semantics), mask application. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "cpu_ops.h"

int sl_cpu_magnitude(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++)
        out[i] = hypotf(cplx[2 * i], cplx[2 * i + 1]);
    return 0;
}

int sl_cpu_power(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        float re = cplx[2 * i], im = cplx[2 * i + 1];
        out[i] = re * re + im * im;
    }
    return 0;
}

int sl_cpu_apply_mask(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out)
{
    (void)ctx;
    for (size_t i = 0; i < n; i++) {
        float m = mask[i];
        out[2 * i] = cplx[2 * i] * m;
        out[2 * i + 1] = cplx[2 * i + 1] * m;
    }
    return 0;
}

/* ---- median filter ---- */

/* scipy.ndimage 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a),
 * periodic with period 2n so any kernel works on any length, even 1. */
static inline size_t reflect_index(ptrdiff_t i, size_t n)
{
    ptrdiff_t period = 2 * (ptrdiff_t)n;
    ptrdiff_t j = i % period;
    if (j < 0)
        j += period;
    return (size_t)(j < (ptrdiff_t)n ? j : period - 1 - j);
}

/* First position in sorted w[0..k) whose value is >= v. Branch-free halving
 * (compiles to conditional moves): the comparisons are unpredictable on audio. */
static inline int lower_bound(const float *w, int k, float v)
{
    if (k <= 0)
        return 0;
    const float *base = w;
    int n = k;
    while (n > 1) {
        int half = n / 2;
        base = base[half] < v ? base + half : base;
        n -= half;
    }
    return (int)(base - w) + (*base < v);
}

/* Running median over ext[0 .. n + kernel - 1) (the line with its reflected
 * borders); out[i*ostride] = median of ext[i .. i+kernel). A sorted window is
 * kept: each step finds the outgoing value by binary search and slides the
 * incoming one into its place from there, so a step costs O(log k) plus the
 * distance the new value travels (short on spectra, at most k), instead of a
 * sort per output. */
static void running_median(const float *ext, size_t n, int kernel, float *win, float *out,
                           size_t ostride)
{
    const int h = kernel / 2;
    for (int j = 0; j < kernel; j++) {
        float v = ext[j];
        int pos = lower_bound(win, j, v);
        memmove(win + pos + 1, win + pos, (size_t)(j - pos) * sizeof(float));
        win[pos] = v;
    }
    out[0] = win[h];
    for (size_t i = 1; i < n; i++) {
        float old = ext[i - 1], nw = ext[i - 1 + (size_t)kernel];
        int j = lower_bound(win, kernel, old);
        /* NaN compares false everywhere: fall back to a bitwise search so the
         * window stays the right size (results are unspecified, memory safe). */
        if (j >= kernel || memcmp(&win[j], &old, sizeof old) != 0) {
            j = kernel - 1;
            for (int q = 0; q < kernel; q++)
                if (memcmp(&win[q], &old, sizeof old) == 0) {
                    j = q;
                    break;
                }
        }
        if (nw > win[j]) {
            while (j + 1 < kernel && win[j + 1] < nw) {
                win[j] = win[j + 1];
                j++;
            }
        } else {
            while (j > 0 && win[j - 1] > nw) {
                win[j] = win[j - 1];
                j--;
            }
        }
        win[j] = nw;
        out[i * ostride] = win[h];
    }
}

/* Median along lines of line_len values spaced elem_stride apart. Lines whose
 * start is contiguous (line_step == 1: the time axis of [frames][bins]) are
 * gathered and scattered a group at a time, so each frame row is read as
 * whole cache lines instead of one float per line. */
#define MEDIAN_GROUP 16
static int median_lines(size_t n_lines, size_t line_len, size_t elem_stride, size_t line_step,
                        size_t batch, size_t batch_step, int kernel, const float *in, float *out)
{
    const int h = kernel / 2;
    const size_t G = line_step == 1 ? MEDIAN_GROUP : 1;
    const size_t ext_len = line_len + (size_t)kernel;
    float *ext = malloc(G * ext_len * sizeof(float));
    float *res = malloc(G * line_len * sizeof(float));
    float *win = malloc((size_t)kernel * sizeof(float));
    if (!ext || !win || !res) {
        free(ext);
        free(res);
        free(win);
        return sl_seterr(SL_ENOMEM, "median filter: out of memory");
    }
    for (size_t b = 0; b < batch; b++) {
        for (size_t l0 = 0; l0 < n_lines; l0 += G) {
            const size_t g_n = n_lines - l0 < G ? n_lines - l0 : G;
            const float *src = in + b * batch_step + l0 * line_step;
            for (ptrdiff_t i = -h; i < (ptrdiff_t)line_len + h; i++) {
                const float *row = src + reflect_index(i, line_len) * elem_stride;
                for (size_t g = 0; g < g_n; g++)
                    ext[g * ext_len + (size_t)(i + h)] = row[g * line_step];
            }
            for (size_t g = 0; g < g_n; g++)
                running_median(ext + g * ext_len, line_len, kernel, win, res + g * line_len, 1);
            float *dst = out + b * batch_step + l0 * line_step;
            for (size_t i = 0; i < line_len; i++)
                for (size_t g = 0; g < g_n; g++)
                    dst[i * elem_stride + g * line_step] = res[g * line_len + i];
        }
    }
    free(ext);
    free(res);
    free(win);
    return 0;
}

int sl_cpu_median_time(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out)
{
    (void)ctx;
    if (kernel == 1) {
        memcpy(out, in, batch * n_frames * n_bins * sizeof(float));
        return 0;
    }
    return median_lines(n_bins, n_frames, n_bins, 1, batch, n_frames * n_bins, kernel, in, out);
}

int sl_cpu_median_freq(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out)
{
    (void)ctx;
    if (kernel == 1) {
        memcpy(out, in, batch * n_frames * n_bins * sizeof(float));
        return 0;
    }
    return median_lines(n_frames, n_bins, 1, n_bins, batch, n_frames * n_bins, kernel, in, out);
}

/* ---- soft masks ---- */

static inline float powp(float x, float p)
{
    return p == 2.0f ? x * x : p == 1.0f ? x : powf(x, p);
}

/* librosa.util.softmask(X, X_ref, power, split_zeros), in float32 like librosa
 * on float32 spectra: Z = max(X, X_ref) (1 where Z < FLT_MIN), m = (X/Z)^p,
 * r = (X_ref/Z)^p, mask = m / (m + r); where Z was tiny: 0.5 or 0. */
static inline float softmask(float x, float xref, float p, float zero_value)
{
    float z = x > xref ? x : xref;
    if (!(z >= FLT_MIN))
        return zero_value;
    float m = powp(x / z, p), r = powp(xref / z, p);
    return m / (m + r);
}

int sl_cpu_hpss_masks(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                      float margin_h, float margin_p, float *mask_h, float *mask_p)
{
    (void)ctx;
    const float zero_value = (margin_h == 1.0f && margin_p == 1.0f) ? 0.5f : 0.0f;
    for (size_t i = 0; i < n; i++) {
        float h = harm[i], p = perc[i];
        float mh = softmask(h, p * margin_h, power, zero_value);
        float mp = softmask(p, h * margin_p, power, zero_value);
        mask_h[i] = mh;
        mask_p[i] = mp;
    }
    return 0;
}
