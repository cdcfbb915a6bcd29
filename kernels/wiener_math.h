/* The element-wise arithmetic of the openunmix Wiener filter
 * (openunmix/filtering.py), shared by the CPU reference (kernels/cpu/cpu_wiener.c)
 * and the CUDA kernel (kernels/cuda/wiener.cu), so both evaluate exactly the
 * same float32 expressions in the same order as the torch code. Complex numbers
 * are (re, im) float pairs; a 2x2 complex matrix is m[(row*2 + col)*2 + {0,1}];
 * R blocks carry a ninth float (the weight). C11 and CUDA C++. */
#ifndef SL_WIENER_MATH_H
#define SL_WIENER_MATH_H

#include <math.h>

#if defined(__CUDACC__)
#define WM_FN static __device__ __forceinline__
#else
#define WM_FN static inline
#endif

/* openunmix expectation_maximization processes frames in blocks of 200. */
#define WM_EM_BATCH 200
#define WM_MAX_SOURCES 9

/* The mixture value the reference works with. Its atan2 (openunmix's, used when
 * softmask is off) adds 1 to the real part of every bin that is exactly 0 + 0i,
 * in place, so the residual and the EM stage then see 1 + 0i there. */
WM_FN void wm_mix(const float *p, int softmask, float *re, float *im)
{
    float r = p[0], i = p[1];
    if (!softmask && r == 0.0f && i == 0.0f)
        r = 1.0f;
    *re = r;
    *im = i;
}

/* The mixture's phase as the reference applies it to every target without
 * softmask: the cosine and sine of its angle (openunmix: its own atan2, then cos
 * and sin), computed once per bin and channel (the same values for every target);
 * with softmask unused (0). Evaluated as the unit vector x / |x|, the components
 * scaled by the larger one first so that no square overflows or underflows:
 * within 1.2e-7 of the exact values (the float32 atan2, cos and sin: 2.7e-7;
 * 2e7 random bins of magnitudes 1e-20 .. 1e20 against double precision), and
 * without atan, cos and sin (about 30 ns an element on the CPU: 7 % of an
 * Open-Unmix forward). wm_mix has made 0 + 0i into 1 + 0i. */
WM_FN void wm_phase(float xr, float xi, int softmask, float *ca, float *sa)
{
    *ca = *sa = 0.0f;
    if (!softmask) {
        const float m = fmaxf(fabsf(xr), fabsf(xi));
        const float u = xr / m, v = xi / m;
        const float n = sqrtf(u * u + v * v);
        *ca = u / n;
        *sa = v / n;
    }
}

/* Initial estimate of one target: magnitude s with the mixture phase (ca, sa from
 * wm_phase), or the mixture times s / den (den = eps + sum of the targets' magnitudes). */
WM_FN void wm_init(float xr, float xi, float s, int softmask, float den, float ca, float sa, float *yr, float *yi)
{
    if (softmask) {
        const float ratio = s / den;
        *yr = xr * ratio;
        *yi = xi * ratio;
    } else {
        *yr = s * ca;
        *yi = s * sa;
    }
}

/* max(1, max|x| / scale_factor 10) */
WM_FN float wm_max_abs(float max_mag)
{
    const float m = max_mag / 10.0f;
    return m > 1.0f ? m : 1.0f;
}

/* Power spectral density: mean over the two channels of |y|^2. */
WM_FN float wm_v(const float *y0, const float *y1)
{
    const float p0 = y0[0] * y0[0] + y0[1] * y0[1];
    const float p1 = y1[0] * y1[0] + y1[1] * y1[1];
    return (p0 + p1) / 2.0f;
}

/* acc[0..8) += y y^H (per frame in float, summed in double), acc[8] += v. */
WM_FN void wm_cov_acc(const float *y0, const float *y1, double *acc)
{
    const float *y[2] = {y0, y1};
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            const float cr = -y[b][1];
            const float re = y[a][0] * y[b][0] - y[a][1] * cr;
            const float im = y[a][0] * cr + y[a][1] * y[b][0];
            acc[(a * 2 + b) * 2] += (double)re;
            acc[(a * 2 + b) * 2 + 1] += (double)im;
        }
    acc[8] += (double)wm_v(y0, y1);
}

WM_FN void wm_cxx_init(float *cxx, float eps)
{
    const float r = sqrtf(eps);
    for (int k = 0; k < 8; k++)
        cxx[k] = 0.0f;
    cxx[0] = r;
    cxx[6] = r;
}

WM_FN void wm_cxx_add(float *cxx, float v, const float *R)
{
    for (int k = 0; k < 8; k++)
        cxx[k] = cxx[k] + v * R[k];
}

/* (a.re b.re - a.im b.im, a.re b.im + a.im b.re), the reference's _mul */
WM_FN void wm_mul(float ar, float ai, float br, float bi, float *re, float *im)
{
    *re = ar * br - ai * bi;
    *im = ar * bi + ai * br;
}

/* Closed-form inverse of a 2x2 complex matrix (openunmix _invert). */
WM_FN void wm_inv2(const float *M, float *out)
{
    float dr, di, er, ei;
    wm_mul(M[0], M[1], M[6], M[7], &dr, &di);
    wm_mul(M[2], M[3], M[4], M[5], &er, &ei);
    dr = dr - er;
    di = di - ei;
    const float ez = dr * dr + di * di;
    const float ir = dr / ez, ii = -di / ez;
    wm_mul(ir, ii, M[6], M[7], &out[0], &out[1]);
    wm_mul(-ir, -ii, M[4], M[5], &out[4], &out[5]);
    wm_mul(-ir, -ii, M[2], M[3], &out[2], &out[3]);
    wm_mul(ir, ii, M[0], M[1], &out[6], &out[7]);
}

/* y = v R inv x: gain[a][b] = sum_c R[a][c] inv[c][b] (c in order), times v;
 * y[a] = sum_b gain[a][b] x[b]. x and y are [ch][re, im]. */
WM_FN void wm_apply(const float *R, const float *inv, float v, const float *x, float *y)
{
    float g[8];
    for (int a = 0; a < 2; a++)
        for (int b = 0; b < 2; b++) {
            float gr = 0.0f, gi = 0.0f;
            for (int c = 0; c < 2; c++) {
                float pr, pi;
                wm_mul(R[(a * 2 + c) * 2], R[(a * 2 + c) * 2 + 1], inv[(c * 2 + b) * 2], inv[(c * 2 + b) * 2 + 1],
                       &pr, &pi);
                gr = gr + pr;
                gi = gi + pi;
            }
            g[(a * 2 + b) * 2] = gr * v;
            g[(a * 2 + b) * 2 + 1] = gi * v;
        }
    for (int a = 0; a < 2; a++) {
        float yr = 0.0f, yi = 0.0f;
        for (int b = 0; b < 2; b++) {
            float pr, pi;
            wm_mul(g[(a * 2 + b) * 2], g[(a * 2 + b) * 2 + 1], x[2 * b], x[2 * b + 1], &pr, &pi);
            yr = yr + pr;
            yi = yi + pi;
        }
        y[2 * a] = yr;
        y[2 * a + 1] = yi;
    }
}

#endif
