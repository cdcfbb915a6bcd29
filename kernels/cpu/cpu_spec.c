/* CPU spectral ops: magnitude/power, the median filters and soft masks of
 * HPSS (librosa.decompose.hpss semantics), mask application. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>
#endif

/* |z| as glibc's hypotf (2.35 and later) computes it for finite values: the
 * squares are exact in double, one rounding for their sum, a correctly rounded
 * sqrt, then the rounding to float; infinities and NaNs go to hypotf itself
 * (hypot(inf, NaN) = inf). The AVX2 path below does exactly the same
 * operations, so both give the same bits (and the same bits as hypotf here). */
static inline float magnitude1(float re, float im)
{
    if (isfinite(re) && isfinite(im))
        return (float)sqrt((double)re * re + (double)im * im);
    return hypotf(re, im);
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static void magnitude_avx2(size_t n, const float *cplx, float *out)
{
    const __m256i exp_mask = _mm256_set1_epi32(0x7f800000);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const __m256 v = _mm256_loadu_ps(cplx + 2 * i); /* re0 im0 .. re3 im3 */
        const __m256i e = _mm256_and_si256(_mm256_castps_si256(v), exp_mask);
        if (_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(e, exp_mask)))) {
            for (size_t j = i; j < i + 4; j++) /* an infinity or NaN: hypotf */
                out[j] = magnitude1(cplx[2 * j], cplx[2 * j + 1]);
            continue;
        }
        const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
        const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        /* [|z0|^2, |z2|^2, |z1|^2, |z3|^2] -> natural order */
        __m256d s = _mm256_hadd_pd(_mm256_mul_pd(lo, lo), _mm256_mul_pd(hi, hi));
        s = _mm256_permute4x64_pd(s, _MM_SHUFFLE(3, 1, 2, 0));
        _mm_storeu_ps(out + i, _mm256_cvtpd_ps(_mm256_sqrt_pd(s)));
    }
    for (; i < n; i++)
        out[i] = magnitude1(cplx[2 * i], cplx[2 * i + 1]);
}
#endif

int sl_cpu_magnitude(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    (void)ctx;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2()) {
        magnitude_avx2(n, cplx, out);
        return 0;
    }
#endif
    for (size_t i = 0; i < n; i++)
        out[i] = magnitude1(cplx[2 * i], cplx[2 * i + 1]);
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

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* Returns the number of leading elements done. out may alias cplx (same index). */
__attribute__((target("avx2"))) static size_t apply_mask_avx2(size_t n, const float *cplx, const float *mask,
                                                              float *out)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 m = _mm256_loadu_ps(mask + i);                   /* m0 .. m7 */
        const __m256 lo = _mm256_unpacklo_ps(m, m), hi = _mm256_unpackhi_ps(m, m); /* m0m0m1m1 m4m4m5m5 | m2m2m3m3 m6m6m7m7 */
        const __m256 m03 = _mm256_permute2f128_ps(lo, hi, 0x20), m47 = _mm256_permute2f128_ps(lo, hi, 0x31);
        const __m256 a = _mm256_loadu_ps(cplx + 2 * i), b = _mm256_loadu_ps(cplx + 2 * i + 8);
        _mm256_storeu_ps(out + 2 * i, _mm256_mul_ps(a, m03));
        _mm256_storeu_ps(out + 2 * i + 8, _mm256_mul_ps(b, m47));
    }
    return i;
}
#endif

int sl_cpu_apply_mask(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out)
{
    (void)ctx;
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2())
        i = apply_mask_avx2(n, cplx, mask, out);
#endif
    for (; i < n; i++) {
        float m = mask[i];
        out[2 * i] = cplx[2 * i] * m;
        out[2 * i + 1] = cplx[2 * i + 1] * m;
    }
    return 0;
}

/* The median filters are in cpu_median.c. */

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

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* softmask() on 8 lanes for power 1 (sq = 0) or 2 (sq = 1): the same IEEE
 * operations in the same order, so the same bits. max_ps(x, xref) is
 * x > xref ? x : xref, NaN and signed zeros included. */
__attribute__((target("avx2"))) static inline __m256 softmask8(__m256 x, __m256 xref, int sq, __m256 zero_value)
{
    const __m256 z = _mm256_max_ps(x, xref);
    const __m256 ok = _mm256_cmp_ps(z, _mm256_set1_ps(FLT_MIN), _CMP_GE_OQ);
    __m256 m = _mm256_div_ps(x, z), r = _mm256_div_ps(xref, z);
    if (sq) {
        m = _mm256_mul_ps(m, m);
        r = _mm256_mul_ps(r, r);
    }
    return _mm256_blendv_ps(zero_value, _mm256_div_ps(m, _mm256_add_ps(m, r)), ok);
}

/* Returns the number of leading elements done (a multiple of 8). */
__attribute__((target("avx2"))) static size_t hpss_masks_avx2(size_t n, const float *harm, const float *perc,
                                                              int sq, float margin_h, float margin_p,
                                                              float zero_value, float *mask_h, float *mask_p)
{
    const __m256 mh = _mm256_set1_ps(margin_h), mp = _mm256_set1_ps(margin_p), zv = _mm256_set1_ps(zero_value);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* both loads before the stores: masks may alias the inputs */
        const __m256 h = _mm256_loadu_ps(harm + i), p = _mm256_loadu_ps(perc + i);
        const __m256 a = softmask8(h, _mm256_mul_ps(p, mh), sq, zv);
        const __m256 b = softmask8(p, _mm256_mul_ps(h, mp), sq, zv);
        _mm256_storeu_ps(mask_h + i, a);
        _mm256_storeu_ps(mask_p + i, b);
    }
    return i;
}
#endif

int sl_cpu_hpss_masks(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                      float margin_h, float margin_p, float *mask_h, float *mask_p)
{
    (void)ctx;
    const float zero_value = (margin_h == 1.0f && margin_p == 1.0f) ? 0.5f : 0.0f;
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if ((power == 2.0f || power == 1.0f) && sl_cpu_simd_avx2())
        i = hpss_masks_avx2(n, harm, perc, power == 2.0f, margin_h, margin_p, zero_value, mask_h, mask_p);
#endif
    for (; i < n; i++) {
        float h = harm[i], p = perc[i];
        float mh = softmask(h, p * margin_h, power, zero_value);
        float mp = softmask(p, h * margin_p, power, zero_value);
        mask_h[i] = mh;
        mask_p[i] = mp;
    }
    return 0;
}
