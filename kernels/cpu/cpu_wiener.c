/* CPU reference of the openunmix multichannel Wiener filter
 * (openunmix/filtering.py: wiener + expectation_maximization, as the
 * Separator calls them window by window). Every element-wise step is the
 * same float32 expression, in the same order, as the torch code, so the
 * only differences are in the sums over frames (accumulated here in double,
 * per block of 200 frames as the reference batches them). The loops run over
 * bins innermost (contiguous); the CUDA kernel runs one thread per bin with
 * the same arithmetic. Stereo only. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"
#include "../wiener_math.h"

/* One window [t0, t1) of bins [f0, f1): phase 0 the initial estimates and the
 * max |x| of these bins (part_max), phase 1 the scaling, the EM iterations and
 * the unscaling. Bins are independent except for the window's max |x|, so the
 * pool splits the bins into parts (results identical for any split). */
typedef struct {
    const sl_wiener_cfg *c;
    size_t J, T, F, S, t0, t1, parts;
    const float *mix, *mag;
    float *out, *R, *part_max, max_abs;
    float *Rs; /* R[s][f][0..8) by component, Rs[(s * 8 + k) * F + f], for em_bins_avx2; NULL: scalar only */
    int simd;  /* the AVX2 loops (sl_cpu_simd_avx2); 0: the scalar ones, with the same bits */
    double *acc;
    int phase;
} wiener_job;

/* Compiled with -O3 (CMakeLists.txt) and, on x86-64, cloned for AVX2 (chosen at load time, whatever
 * STEMLINE_CPU_SIMD says: there is nothing to choose between): the compiler vectorises the simple
 * loops over bins; each lane does the scalar code's operations in its order (no FMA: avx2 alone does
 * not enable it; no reassociation), so every clone gives the same bits. The loops it left scalar
 * (the initial estimates, max|x| and the EM update's per-bin 2x2 complex algebra: 13 % of an
 * Open-Unmix forward) are written out below, 8 bins a vector, the same operations per lane
 * (unit.nn_ops compares them with the scalar loops, STEMLINE_CPU_SIMD=0). */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SL_WIENER_TSAN 1
#endif
#endif
#ifdef __SANITIZE_THREAD__
#define SL_WIENER_TSAN 1
#endif
/* (not under ThreadSanitizer: the clones' resolver runs while the program is
 * relocated, before TSan's runtime starts, and its instrumented entry crashes) */
#if defined(SL_CPU_HAVE_AVX2_PATHS) && !defined(SL_WIENER_TSAN)
#define WIENER_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define WIENER_CLONES
#endif
#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>

/* 8 bins of complex (re, im) pairs as a vector of real and one of imaginary parts, bins in order */
__attribute__((target("avx2"))) static inline void ld_c8(const float *p, __m256 *re, __m256 *im)
{
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    *re = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8));
    *im = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0xDD)), 0xD8));
}

__attribute__((target("avx2"))) static inline void st_c8(float *p, __m256 re, __m256 im)
{
    re = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(re), 0xD8));
    im = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(im), 0xD8));
    _mm256_storeu_ps(p, _mm256_unpacklo_ps(re, im));
    _mm256_storeu_ps(p + 8, _mm256_unpackhi_ps(re, im));
}

/* wm_mix for 8 bins: the mixture's values, 0 + 0i made 1 + 0i without softmask */
__attribute__((target("avx2"))) static inline void mix_c8(const float *p, int softmask, __m256 *re, __m256 *im)
{
    ld_c8(p, re, im);
    if (!softmask) {
        const __m256 zero = _mm256_setzero_ps();
        const __m256 z = _mm256_and_ps(_mm256_cmp_ps(*re, zero, _CMP_EQ_OQ), _mm256_cmp_ps(*im, zero, _CMP_EQ_OQ));
        *re = _mm256_blendv_ps(*re, _mm256_set1_ps(1.0f), z);
    }
}

#define V_ADD _mm256_add_ps
#define V_SUB _mm256_sub_ps
#define V_MUL _mm256_mul_ps
/* wm_mul, lane by lane */
#define V_CMUL(ar, ai, br, bi, re, im)                                                                               \
    do {                                                                                                           \
        re = V_SUB(V_MUL(ar, br), V_MUL(ai, bi));                                                                  \
        im = V_ADD(V_MUL(ar, bi), V_MUL(ai, br));                                                                  \
    } while (0)

/* One frame t of the EM update y_s = v_s R_s Cxx^-1 x for bins [f, f + 8k) of [f0, f1): wm_v,
 * wm_mix, wm_cxx_init / _add, wm_inv2 and wm_apply with every lane doing the scalar code's
 * operations in its order (no FMA), so the bits are the scalar loop's. Returns the first bin
 * not done. Rs holds R by component (wiener_job.Rs). */
__attribute__((target("avx2"))) static size_t em_bins_avx2(const wiener_job *W, size_t t, size_t f0, size_t f1)
{
    const sl_wiener_cfg *c = W->c;
    const size_t F = W->F, S = W->S, plane = W->T * F;
    const float *mix = W->mix;
    float *out = W->out;
    const __m256 ma = _mm256_set1_ps(W->max_abs), zero = _mm256_setzero_ps();
    const __m256 two = _mm256_set1_ps(2.0f), sign = _mm256_set1_ps(-0.0f), r0 = _mm256_set1_ps(sqrtf(c->eps));
    size_t f = f0;
    for (; f + 8 <= f1; f += 8) {
        __m256 v[WM_MAX_SOURCES];
        for (size_t s = 0; s < S; s++) {
            __m256 ar, ai, br, bi;
            ld_c8(out + 2 * ((s * 2 + 0) * plane + t * F + f), &ar, &ai);
            ld_c8(out + 2 * ((s * 2 + 1) * plane + t * F + f), &br, &bi);
            const __m256 p0 = V_ADD(V_MUL(ar, ar), V_MUL(ai, ai)), p1 = V_ADD(V_MUL(br, br), V_MUL(bi, bi));
            v[s] = _mm256_div_ps(V_ADD(p0, p1), two);
        }
        __m256 xr[2], xi[2], xs[4];
        for (int ch = 0; ch < 2; ch++) {
            mix_c8(mix + 2 * (ch * plane + t * F + f), c->softmask, &xr[ch], &xi[ch]);
            xs[2 * ch] = _mm256_div_ps(xr[ch], ma);
            xs[2 * ch + 1] = _mm256_div_ps(xi[ch], ma);
        }
        __m256 cxx[8] = {r0, zero, zero, zero, zero, zero, r0, zero};
        for (size_t s = 0; s < S; s++)
            for (int k = 0; k < 8; k++)
                cxx[k] = V_ADD(cxx[k], V_MUL(v[s], _mm256_loadu_ps(W->Rs + (s * 8 + k) * F + f)));
        __m256 inv[8], dr, di, er, ei;
        V_CMUL(cxx[0], cxx[1], cxx[6], cxx[7], dr, di);
        V_CMUL(cxx[2], cxx[3], cxx[4], cxx[5], er, ei);
        dr = V_SUB(dr, er);
        di = V_SUB(di, ei);
        const __m256 ez = V_ADD(V_MUL(dr, dr), V_MUL(di, di));
        const __m256 ir = _mm256_div_ps(dr, ez), ii = _mm256_div_ps(_mm256_xor_ps(di, sign), ez);
        const __m256 nr = _mm256_xor_ps(ir, sign), ni = _mm256_xor_ps(ii, sign);
        V_CMUL(ir, ii, cxx[6], cxx[7], inv[0], inv[1]);
        V_CMUL(nr, ni, cxx[4], cxx[5], inv[4], inv[5]);
        V_CMUL(nr, ni, cxx[2], cxx[3], inv[2], inv[3]);
        V_CMUL(ir, ii, cxx[0], cxx[1], inv[6], inv[7]);
        for (size_t s = 0; s < S; s++) {
            __m256 R[8], g[8];
            for (int k = 0; k < 8; k++)
                R[k] = _mm256_loadu_ps(W->Rs + (s * 8 + k) * F + f);
            for (int a = 0; a < 2; a++)
                for (int b = 0; b < 2; b++) {
                    __m256 gr = zero, gi = zero;
                    for (int cc = 0; cc < 2; cc++) {
                        __m256 pr, pi;
                        V_CMUL(R[(a * 2 + cc) * 2], R[(a * 2 + cc) * 2 + 1], inv[(cc * 2 + b) * 2],
                               inv[(cc * 2 + b) * 2 + 1], pr, pi);
                        gr = V_ADD(gr, pr);
                        gi = V_ADD(gi, pi);
                    }
                    g[(a * 2 + b) * 2] = V_MUL(gr, v[s]);
                    g[(a * 2 + b) * 2 + 1] = V_MUL(gi, v[s]);
                }
            for (int a = 0; a < 2; a++) {
                __m256 yr = zero, yi = zero;
                for (int b = 0; b < 2; b++) {
                    __m256 pr, pi;
                    V_CMUL(g[(a * 2 + b) * 2], g[(a * 2 + b) * 2 + 1], xs[2 * b], xs[2 * b + 1], pr, pi);
                    yr = V_ADD(yr, pr);
                    yi = V_ADD(yi, pi);
                }
                st_c8(out + 2 * ((s * 2 + (size_t)a) * plane + t * F + f), yr, yi);
            }
        }
    }
    return f;
}

/* Phase 0 for frame t and bins [f, f + 8k) of [f0, f1): wm_mix, wm_phase (or softmask's den),
 * wm_init and the residual, lane by lane as the scalar loop. Returns the first bin not done. (A NaN
 * in the mixture, which decoding never lets through, gives NaN here too, maybe another NaN's bits:
 * max_ps is not fmaxf there.) */
__attribute__((target("avx2"))) static size_t init_bins_avx2(const wiener_job *W, size_t t, size_t f0, size_t f1)
{
    const sl_wiener_cfg *c = W->c;
    const size_t F = W->F, J = W->J, plane = W->T * F;
    const __m256 zero = _mm256_setzero_ps(), eps = _mm256_set1_ps(c->eps);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    size_t f = f0;
    for (; f + 8 <= f1; f += 8)
        for (size_t ch = 0; ch < 2; ch++) {
            const size_t at = ch * plane + t * F + f;
            __m256 xr, xi, den = zero, ca = zero, sa = zero;
            mix_c8(W->mix + 2 * at, c->softmask, &xr, &xi);
            if (c->softmask) {
                for (size_t j = 0; j < J; j++)
                    den = V_ADD(den, _mm256_loadu_ps(W->mag + j * 2 * plane + at));
                den = V_ADD(eps, den);
            } else {
                const __m256 m = _mm256_max_ps(_mm256_and_ps(xr, absm), _mm256_and_ps(xi, absm));
                const __m256 u = _mm256_div_ps(xr, m), v = _mm256_div_ps(xi, m);
                const __m256 n = _mm256_sqrt_ps(V_ADD(V_MUL(u, u), V_MUL(v, v)));
                ca = _mm256_div_ps(u, n);
                sa = _mm256_div_ps(v, n);
            }
            __m256 ysr = zero, ysi = zero;
            for (size_t j = 0; j < J; j++) {
                const __m256 sj = _mm256_loadu_ps(W->mag + j * 2 * plane + at);
                __m256 yr, yi;
                if (c->softmask) {
                    const __m256 ratio = _mm256_div_ps(sj, den);
                    yr = V_MUL(xr, ratio);
                    yi = V_MUL(xi, ratio);
                } else {
                    yr = V_MUL(sj, ca);
                    yi = V_MUL(sj, sa);
                }
                st_c8(W->out + 2 * (j * 2 * plane + at), yr, yi);
                ysr = V_ADD(ysr, yr);
                ysi = V_ADD(ysi, yi);
            }
            if (c->residual)
                st_c8(W->out + 2 * (J * 2 * plane + at), V_SUB(xr, ysr), V_SUB(xi, ysi));
        }
    return f;
}

/* This part's max |x| over frames [t0, t1) and bins [f0, f1) into *mx: 1, or 0 where some |x| is
 * NaN (the scalar loop then decides which NaN, as before). The maximum of the other values does not
 * depend on the order it is taken in. */
__attribute__((target("avx2"))) static int maxabs_avx2(const wiener_job *W, size_t t0, size_t t1, size_t f0,
                                                       size_t f1, float *mx)
{
    const size_t F = W->F, plane = W->T * F;
    const __m256 zero = _mm256_setzero_ps();
    __m256 vmx = zero, bad = zero;
    float m = 0.0f;
    for (size_t ch = 0; ch < 2; ch++)
        for (size_t t = t0; t < t1; t++) {
            size_t f = f0;
            for (; f + 8 <= f1; f += 8) {
                __m256 xr, xi;
                mix_c8(W->mix + 2 * (ch * plane + t * F + f), W->c->softmask, &xr, &xi);
                const __m256 a = _mm256_sqrt_ps(V_ADD(V_MUL(xr, xr), V_MUL(xi, xi)));
                bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
                vmx = _mm256_max_ps(vmx, a);
            }
            for (; f < f1; f++) {
                float xr, xi;
                wm_mix(W->mix + 2 * (ch * plane + t * F + f), W->c->softmask, &xr, &xi);
                const float a = sqrtf(xr * xr + xi * xi);
                if (isnan(a))
                    return 0;
                if (a > m)
                    m = a;
            }
        }
    if (_mm256_movemask_ps(bad))
        return 0;
    float lanes[8];
    _mm256_storeu_ps(lanes, vmx);
    for (int i = 0; i < 8; i++)
        if (lanes[i] > m)
            m = lanes[i];
    *mx = m;
    return 1;
}
#undef V_CMUL
#undef V_MUL
#undef V_SUB
#undef V_ADD
#endif

WIENER_CLONES static void wiener_body(void *job, size_t part, int tid)
{
    (void)tid;
    const wiener_job *W = job;
    const sl_wiener_cfg *c = W->c;
    const size_t J = W->J, T = W->T, F = W->F, S = W->S, t0 = W->t0, t1 = W->t1;
    const float *mix = W->mix, *mag = W->mag;
    float *out = W->out, *R = W->R;
    double *acc = W->acc;
    size_t f0, f1;
    sl_pool_range(F, W->parts, part, &f0, &f1);
    if (f0 >= f1) {
        if (W->phase == 0)
            W->part_max[part] = 0.0f;
        return;
    }
    const size_t plane = T * F; /* complex elements per channel */
#define MIX(ch, t, f) (mix + 2 * ((ch) * plane + (t) * F + (f)))
#define MAG(j, ch, t, f) (mag[((j) * 2 + (ch)) * plane + (t) * F + (f)])
#define OUT(s, ch, t, f) (out + 2 * (((s) * 2 + (ch)) * plane + (t) * F + (f)))
    if (W->phase == 0) {
        /* initial estimates (and the residual) */
        for (size_t t = t0; t < t1; t++) {
            size_t fv = f0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
            if (W->simd)
                fv = init_bins_avx2(W, t, f0, f1);
#endif
            for (size_t f = fv; f < f1; f++) {
                for (int ch = 0; ch < 2; ch++) {
                    float xr, xi;
                    wm_mix(MIX(ch, t, f), c->softmask, &xr, &xi);
                    float den = 0.0f;
                    if (c->softmask) {
                        for (size_t j = 0; j < J; j++)
                            den += MAG(j, ch, t, f);
                        den = c->eps + den;
                    }
                    float ca, sa, yr_sum = 0.0f, yi_sum = 0.0f;
                    wm_phase(xr, xi, c->softmask, &ca, &sa);
                    for (size_t j = 0; j < J; j++) {
                        float yr, yi;
                        wm_init(xr, xi, MAG(j, ch, t, f), c->softmask, den, ca, sa, &yr, &yi);
                        float *o = OUT(j, ch, t, f);
                        o[0] = yr;
                        o[1] = yi;
                        yr_sum += yr;
                        yi_sum += yi;
                    }
                    if (c->residual) {
                        float *o = OUT(J, ch, t, f);
                        o[0] = xr - yr_sum;
                        o[1] = xi - yi_sum;
                    }
                }
            }
        }
        if (c->niter > 0) {
            /* this part of max|x| (the scale is max(1, max|x| / 10)) */
            float mx = 0.0f;
            int done = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
            if (W->simd)
                done = maxabs_avx2(W, t0, t1, f0, f1, &mx);
#endif
            if (!done)
                for (int ch = 0; ch < 2; ch++)
                    for (size_t t = t0; t < t1; t++)
                        for (size_t f = f0; f < f1; f++) {
                            float xr, xi;
                            wm_mix(MIX(ch, t, f), c->softmask, &xr, &xi);
                            float a = sqrtf(xr * xr + xi * xi);
                            if (a > mx || isnan(a))
                                mx = a;
                        }
            W->part_max[part] = mx;
        }
        return;
    }
    const float max_abs = W->max_abs;
    for (size_t s = 0; s < S; s++)
        for (int ch = 0; ch < 2; ch++)
            for (size_t t = t0; t < t1; t++)
                for (size_t f = f0; f < f1; f++) {
                    float *o = OUT(s, ch, t, f);
                    o[0] = o[0] / max_abs;
                    o[1] = o[1] / max_abs;
                }
    for (int it = 0; it < c->niter; it++) {
        /* spatial covariances R_s[f] = sum_t y y^H / (eps + sum_t v) */
        for (size_t s = 0; s < S; s++)
            for (size_t f = f0; f < f1; f++) {
                memset(R + (s * F + f) * 9, 0, 8 * sizeof(float));
                R[(s * F + f) * 9 + 8] = c->eps;
            }
        for (size_t b0 = t0; b0 < t1; b0 += WM_EM_BATCH) {
            const size_t b1 = b0 + WM_EM_BATCH < t1 ? b0 + WM_EM_BATCH : t1;
            for (size_t s = 0; s < S; s++)
                memset(acc + (s * F + f0) * 9, 0, (f1 - f0) * 9 * sizeof(double));
            for (size_t t = b0; t < b1; t++)
                for (size_t s = 0; s < S; s++)
                    for (size_t f = f0; f < f1; f++) {
                        const float *y0 = OUT(s, 0, t, f), *y1 = OUT(s, 1, t, f);
                        wm_cov_acc(y0, y1, acc + (s * F + f) * 9);
                    }
            for (size_t s = 0; s < S; s++)
                for (size_t i = (s * F + f0) * 9; i < (s * F + f1) * 9; i++)
                    R[i] = R[i] + (float)acc[i];
        }
        for (size_t s = 0; s < S; s++)
            for (size_t f = f0; f < f1; f++) {
                float *r = R + (s * F + f) * 9;
                for (int k = 0; k < 8; k++)
                    r[k] = r[k] / r[8];
            }
        if (W->Rs) /* by component, for em_bins_avx2 */
            for (size_t s = 0; s < S; s++)
                for (int k = 0; k < 8; k++)
                    for (size_t f = f0; f < f1; f++)
                        W->Rs[(s * 8 + (size_t)k) * F + f] = R[(s * F + f) * 9 + (size_t)k];
        /* y_s = v_s R_s Cxx^-1 x, frame by frame */
        for (size_t t = t0; t < t1; t++) {
            size_t fv = f0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
            if (W->Rs)
                fv = em_bins_avx2(W, t, f0, f1);
#endif
            for (size_t f = fv; f < f1; f++) {
                float v[WM_MAX_SOURCES];
                for (size_t s = 0; s < S; s++)
                    v[s] = wm_v(OUT(s, 0, t, f), OUT(s, 1, t, f));
                float x0r, x0i, x1r, x1i;
                wm_mix(MIX(0, t, f), c->softmask, &x0r, &x0i);
                wm_mix(MIX(1, t, f), c->softmask, &x1r, &x1i);
                const float xs[4] = {x0r / max_abs, x0i / max_abs, x1r / max_abs, x1i / max_abs};
                float cxx[8];
                wm_cxx_init(cxx, c->eps);
                for (size_t s = 0; s < S; s++)
                    wm_cxx_add(cxx, v[s], R + (s * F + f) * 9);
                float inv[8];
                wm_inv2(cxx, inv);
                for (size_t s = 0; s < S; s++) {
                    float y[4];
                    wm_apply(R + (s * F + f) * 9, inv, v[s], xs, y);
                    float *o0 = OUT(s, 0, t, f), *o1 = OUT(s, 1, t, f);
                    o0[0] = y[0];
                    o0[1] = y[1];
                    o1[0] = y[2];
                    o1[1] = y[3];
                }
            }
        }
    }
    for (size_t s = 0; s < S; s++)
        for (int ch = 0; ch < 2; ch++)
            for (size_t t = t0; t < t1; t++)
                for (size_t f = f0; f < f1; f++) {
                    float *o = OUT(s, ch, t, f);
                    o[0] = o[0] * max_abs;
                    o[1] = o[1] * max_abs;
                }
#undef MIX
#undef MAG
#undef OUT
}

int sl_cpu_wiener(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t J, size_t T, size_t F, const float *mix,
                  const float *mag, float *out)
{
    const size_t S = J + (c->residual ? 1 : 0);
    const size_t win = c->win_len > 0 ? (size_t)c->win_len : T;
    size_t parts = (size_t)sl_pool_threads(ctx->pool);
    if (parts > F)
        parts = F ? F : 1;
    /* R[s][f][8] (2x2 complex), weight[s][f], and their double block sums */
    float *R = malloc(S * F * 9 * sizeof(float) + parts * sizeof(float));
    double *acc = malloc(S * F * 9 * sizeof(double));
    /* R by component for the AVX2 EM update (sl_cpu_simd_avx2: STEMLINE_CPU_SIMD=0 keeps the scalar
     * loop, with the same bits) */
    const int simd = sl_cpu_simd_avx2();
    float *Rs = simd && c->niter > 0 && S <= WM_MAX_SOURCES ? malloc(S * 8 * F * sizeof(float)) : NULL;
    if (!R || !acc) {
        free(R);
        free(acc);
        free(Rs);
        return sl_seterr(SL_ENOMEM, "wiener: out of memory (%zu bins, %zu sources)", F, S);
    }
    wiener_job W = {.c = c, .J = J, .T = T, .F = F, .S = S, .parts = parts, .mix = mix, .mag = mag, .out = out,
                    .R = R, .part_max = R + S * F * 9, .Rs = Rs, .simd = simd, .acc = acc};
    for (size_t t0 = 0; t0 < T; t0 += win) {
        W.t0 = t0;
        W.t1 = t0 + win < T ? t0 + win : T;
        W.phase = 0;
        sl_pool_for(parts > 1 ? ctx->pool : NULL, parts, wiener_body, &W);
        if (c->niter == 0)
            continue;
        /* the parts' maxima in bin order (a NaN wins, as in one pass) */
        float mx = 0.0f;
        for (size_t p = 0; p < parts; p++)
            if (W.part_max[p] > mx || isnan(W.part_max[p]))
                mx = W.part_max[p];
        W.max_abs = wm_max_abs(mx);
        W.phase = 1;
        sl_pool_for(parts > 1 ? ctx->pool : NULL, parts, wiener_body, &W);
    }
    free(R);
    free(acc);
    free(Rs);
    return 0;
}
