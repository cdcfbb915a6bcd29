// Op wiener: the openunmix multichannel Wiener filter (filtering.py wiener +
// expectation_maximization, window by window as its Separator runs it), with
// the element-wise arithmetic of kernels/wiener_math.h shared with the CPU
// reference, so cuda-emu equals the CPU bit for bit.
//
// (1) wiener_max_kernel: one block per window reduces max |x| over the window
//     (shared-memory tree; max is order independent) into the scratch.
// (2) wiener_kernel: one thread per (window, bin) runs the whole filter for
//     that bin: initial estimates (+ residual) for every frame of the window,
//     then per EM iteration the covariance sums over the window's frames
//     (double, per block of 200 frames, in frame order, as the CPU) and the
//     frame-by-frame update. Consecutive threads are consecutive bins, so
//     every read and write is coalesced. The estimates live in `out`.
#include "cu_ops.h"
#include "../wiener_math.h"

#define WIENER_RED 256
#define WIENER_BLOCK 128

static __global__ void __launch_bounds__(WIENER_RED)
    wiener_max_kernel(size_t T, size_t F, size_t win, int softmask, const float *__restrict__ mix,
                      float *__restrict__ max_abs)
{
    SL_SHARED(float, s_max, [WIENER_RED]);
    const int tx = (int)threadIdx.x;
    const size_t t0 = (size_t)blockIdx.x * win, t1 = t0 + win < T ? t0 + win : T;
    const size_t per_ch = (t1 - t0) * F;
    float mx = 0.0f;
    for (size_t i = tx; i < 2 * per_ch; i += WIENER_RED) {
        const size_t ch = i / per_ch, e = i % per_ch;
        float xr, xi;
        wm_mix(mix + 2 * (ch * T * F + t0 * F + e), softmask, &xr, &xi);
        const float a = sqrtf(xr * xr + xi * xi);
        if (a > mx || a != a)
            mx = a;
    }
    s_max[tx] = mx;
    __syncthreads();
    for (int w = WIENER_RED / 2; w > 0; w /= 2) {
        if (tx < w) {
            const float o = s_max[tx + w];
            if (o > s_max[tx] || o != o)
                s_max[tx] = o;
        }
        __syncthreads();
    }
    if (tx == 0)
        max_abs[blockIdx.x] = wm_max_abs(s_max[0]);
}

static __global__ void __launch_bounds__(WIENER_BLOCK)
    wiener_kernel(sl_wiener_cfg c, size_t J, size_t T, size_t F, size_t win, const float *__restrict__ mix,
                  const float *__restrict__ mag, const float *__restrict__ max_abs_w, float *__restrict__ out)
{
    const size_t f = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (f >= F)
        return;
    const size_t S = J + (c.residual ? 1 : 0), plane = T * F;
    const size_t t0 = (size_t)blockIdx.y * win, t1 = t0 + win < T ? t0 + win : T;
#define W_MIX(ch, t) (mix + 2 * ((ch) * plane + (t) * F + f))
#define W_MAG(j, ch, t) (mag[((j) * 2 + (ch)) * plane + (t) * F + f])
#define W_OUT(s, ch, t) (out + 2 * (((s) * 2 + (ch)) * plane + (t) * F + f))
    for (size_t t = t0; t < t1; t++)
        for (int ch = 0; ch < 2; ch++) {
            float xr, xi;
            wm_mix(W_MIX(ch, t), c.softmask, &xr, &xi);
            float den = 0.0f;
            if (c.softmask) {
                for (size_t j = 0; j < J; j++)
                    den += W_MAG(j, ch, t);
                den = c.eps + den;
            }
            float ca, sa, yr_sum = 0.0f, yi_sum = 0.0f;
            wm_phase(xr, xi, c.softmask, &ca, &sa);
            for (size_t j = 0; j < J; j++) {
                float yr, yi;
                wm_init(xr, xi, W_MAG(j, ch, t), c.softmask, den, ca, sa, &yr, &yi);
                float *o = W_OUT(j, ch, t);
                o[0] = yr;
                o[1] = yi;
                yr_sum += yr;
                yi_sum += yi;
            }
            if (c.residual) {
                float *o = W_OUT(J, ch, t);
                o[0] = xr - yr_sum;
                o[1] = xi - yi_sum;
            }
        }
    if (c.niter == 0)
        return;
    const float max_abs = max_abs_w[blockIdx.y];
    for (size_t s = 0; s < S; s++)
        for (int ch = 0; ch < 2; ch++)
            for (size_t t = t0; t < t1; t++) {
                float *o = W_OUT(s, ch, t);
                o[0] = o[0] / max_abs;
                o[1] = o[1] / max_abs;
            }
    float R[WM_MAX_SOURCES][9];
    for (int it = 0; it < c.niter; it++) {
        for (size_t s = 0; s < S; s++) {
            for (int k = 0; k < 8; k++)
                R[s][k] = 0.0f;
            R[s][8] = c.eps;
            for (size_t b0 = t0; b0 < t1; b0 += WM_EM_BATCH) {
                const size_t b1 = b0 + WM_EM_BATCH < t1 ? b0 + WM_EM_BATCH : t1;
                double acc[9];
                for (int k = 0; k < 9; k++)
                    acc[k] = 0.0;
                for (size_t t = b0; t < b1; t++)
                    wm_cov_acc(W_OUT(s, 0, t), W_OUT(s, 1, t), acc);
                for (int k = 0; k < 9; k++)
                    R[s][k] = R[s][k] + (float)acc[k];
            }
            for (int k = 0; k < 8; k++)
                R[s][k] = R[s][k] / R[s][8];
        }
        for (size_t t = t0; t < t1; t++) {
            float v[WM_MAX_SOURCES];
            for (size_t s = 0; s < S; s++)
                v[s] = wm_v(W_OUT(s, 0, t), W_OUT(s, 1, t));
            float x0r, x0i, x1r, x1i;
            wm_mix(W_MIX(0, t), c.softmask, &x0r, &x0i);
            wm_mix(W_MIX(1, t), c.softmask, &x1r, &x1i);
            const float xs[4] = {x0r / max_abs, x0i / max_abs, x1r / max_abs, x1i / max_abs};
            float cxx[8], inv[8];
            wm_cxx_init(cxx, c.eps);
            for (size_t s = 0; s < S; s++)
                wm_cxx_add(cxx, v[s], R[s]);
            wm_inv2(cxx, inv);
            for (size_t s = 0; s < S; s++) {
                float y[4];
                wm_apply(R[s], inv, v[s], xs, y);
                float *o0 = W_OUT(s, 0, t), *o1 = W_OUT(s, 1, t);
                o0[0] = y[0];
                o0[1] = y[1];
                o1[0] = y[2];
                o1[1] = y[3];
            }
        }
    }
    for (size_t s = 0; s < S; s++)
        for (int ch = 0; ch < 2; ch++)
            for (size_t t = t0; t < t1; t++) {
                float *o = W_OUT(s, ch, t);
                o[0] = o[0] * max_abs;
                o[1] = o[1] * max_abs;
            }
#undef W_MIX
#undef W_MAG
#undef W_OUT
}

extern "C" int SL_FN(wiener)(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t n_targets, size_t n_frames, size_t n_bins,
                             const float *mix, const float *mag, float *out)
{
    const size_t win = c->win_len > 0 ? (size_t)c->win_len : n_frames;
    const size_t n_win = (n_frames + win - 1) / win;
    if (n_win > SL_GRID_YZ_MAX)
        return sl_seterr(SL_EUNSUPPORTED, "wiener: %zu windows (more than %u)", n_win, SL_GRID_YZ_MAX);
    sl_stream_t s = SL_FN(stream)(ctx);
    void *ws = NULL;
    int rc = 0;
    if (c->niter > 0) {
        rc = SL_FN(scratch)(ctx, n_win * sizeof(float), &ws);
        if (rc == 0)
            rc = SL_LAUNCH(wiener_max_kernel, dim3((unsigned)n_win), dim3(WIENER_RED), 0, s, n_frames, n_bins, win,
                           c->softmask, mix, (float *)ws);
    }
    if (rc == 0)
        rc = SL_LAUNCH(wiener_kernel, dim3(sl_blocks_for(n_bins, WIENER_BLOCK, 1u << 30), (unsigned)n_win),
                       dim3(WIENER_BLOCK), 0, s, *c, n_targets, n_frames, n_bins, win, mix, mag,
                       (const float *)ws, out);
    return rc;
}
