/* The CPU backend's element-wise math without libm calls, scalar and on AVX2 / AVX-512 vectors:
 * exp, sigmoid, tanh, erf and the activations, each vector form the scalar operations in the
 * same order (the same bits on every path). Included by the files that run them in their loops
 * (cpu_simd.c, cpu_simd_norm.c): static inline, so each loop keeps them inlined. */
#ifndef SL_CPU_SIMD_MATH_H
#define SL_CPU_SIMD_MATH_H

#include <math.h>
#include <stdint.h>

#include "cpu_ops.h"
#include "cpu_simd.h"

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>
#endif

#define EXP_HI 88.3762626647949f
#define EXP_LO (-88.3762626647949f)

static inline float exp_poly(float x)
{
    x = x < EXP_LO ? EXP_LO : x;
    x = x > EXP_HI ? EXP_HI : x;
    const float fx = floorf(x * 1.44269504088896341f + 0.5f);
    x = x - fx * 0.693359375f;
    x = x - fx * -2.12194440e-4f;
    const float z = x * x;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    const union { uint32_t u; float f; } p2 = {.u = (uint32_t)((int32_t)fx + 127) << 23};
    return y * p2.f;
}

static inline float sigmoid_poly(float x) { return x != x ? x : 1.0f / (1.0f + exp_poly(-x)); }

static inline float tanh_poly(float x)
{
    if (x != x)
        return x;
    const float a = x < 0.0f ? -x : x, e = exp_poly(-2.0f * a), t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}

/* tanh for the activations (SL_ACT_TANH): below |x| = 0.25 the odd Taylor polynomial of
 * degree 11 (truncation below 1e-9 relative), above it (1 - e) / (1 + e) with e = exp(-2|x|),
 * sign restored; about 2 ulp (unit.xf_ops measures it), NaN stays NaN. */
#define TANH_C11 (-1382.0f / 155925.0f)
#define TANH_C9 (62.0f / 2835.0f)
#define TANH_C7 (-17.0f / 315.0f)
#define TANH_C5 (2.0f / 15.0f)
#define TANH_C3 (-1.0f / 3.0f)

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* The polynomial exp of exp_poly on vectors of V floats (P: _mm256 or _mm512; FLOOR: the
 * floor of a vector; CAST: integer bits to floats), the scalar operations in the same order. */
#define SL_EXP_VEC(V, VI, P, FLOOR, CAST, x)                                                              \
    do {                                                                                                   \
        /* max/min with x second keep NaN lanes NaN, as the scalar comparisons do */                       \
        x = P##_max_ps(P##_set1_ps(EXP_LO), x);                                                            \
        x = P##_min_ps(P##_set1_ps(EXP_HI), x);                                                            \
        const V fx = FLOOR(P##_add_ps(P##_mul_ps(x, P##_set1_ps(1.44269504088896341f)), P##_set1_ps(0.5f))); \
        x = P##_sub_ps(x, P##_mul_ps(fx, P##_set1_ps(0.693359375f)));                                      \
        x = P##_sub_ps(x, P##_mul_ps(fx, P##_set1_ps(-2.12194440e-4f)));                                   \
        const V z = P##_mul_ps(x, x);                                                                      \
        V y = P##_set1_ps(1.9875691500e-4f);                                                               \
        y = P##_add_ps(P##_mul_ps(y, x), P##_set1_ps(1.3981999507e-3f));                                   \
        y = P##_add_ps(P##_mul_ps(y, x), P##_set1_ps(8.3334519073e-3f));                                   \
        y = P##_add_ps(P##_mul_ps(y, x), P##_set1_ps(4.1665795894e-2f));                                   \
        y = P##_add_ps(P##_mul_ps(y, x), P##_set1_ps(1.6666665459e-1f));                                   \
        y = P##_add_ps(P##_mul_ps(y, x), P##_set1_ps(5.0000001201e-1f));                                   \
        y = P##_add_ps(P##_add_ps(P##_mul_ps(y, z), x), P##_set1_ps(1.0f));                                \
        const VI n = P##_add_epi32(P##_cvttps_epi32(fx), P##_set1_epi32(127));                             \
        x = P##_mul_ps(y, CAST(P##_slli_epi32(n, 23)));                                                    \
    } while (0)

__attribute__((target("avx2"))) static inline __m256 exp_avx2(__m256 x)
{
    SL_EXP_VEC(__m256, __m256i, _mm256, _mm256_floor_ps, _mm256_castsi256_ps, x);
    return x;
}

__attribute__((target("avx2"))) static inline __m256 keep_nan(__m256 x, __m256 r)
{
    return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

__attribute__((target("avx2"))) static inline __m256 sigmoid_avx2(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 neg_x = _mm256_xor_ps(x, _mm256_set1_ps(-0.0f)); /* -x, as the scalar negation */
    const __m256 r = _mm256_div_ps(one, _mm256_add_ps(one, exp_avx2(neg_x)));
    return keep_nan(x, r);
}

__attribute__((target("avx2"))) static inline __m256 tanh_avx2(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    const __m256 a = _mm256_andnot_ps(sign, x);
    const __m256 e = exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.0f), a));
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    /* negative x (not -0.0: the scalar test x < 0 leaves it positive) */
    const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    t = _mm256_blendv_ps(t, _mm256_xor_ps(t, sign), neg);
    return keep_nan(x, t);
}

/* sl_cpu_tanh's small-argument polynomial on a vector x: small = x + x (z P(z)), z = x^2. */
#define SL_TANH_SMALL(V, P, x, small)                                                                     \
    V small;                                                                                               \
    do {                                                                                                   \
        const V z_ = P##_mul_ps(x, x);                                                                     \
        V p_ = P##_set1_ps(TANH_C11);                                                                      \
        p_ = P##_add_ps(P##_mul_ps(p_, z_), P##_set1_ps(TANH_C9));                                         \
        p_ = P##_add_ps(P##_mul_ps(p_, z_), P##_set1_ps(TANH_C7));                                         \
        p_ = P##_add_ps(P##_mul_ps(p_, z_), P##_set1_ps(TANH_C5));                                         \
        p_ = P##_add_ps(P##_mul_ps(p_, z_), P##_set1_ps(TANH_C3));                                         \
        small = P##_add_ps(x, P##_mul_ps(x, P##_mul_ps(z_, p_)));                                          \
    } while (0)

/* sl_cpu_tanh on 8 lanes, the same operations in the same order (no FMA). */
__attribute__((target("avx2"))) static inline __m256 act_tanh_avx2(__m256 x)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    const __m256 a = _mm256_andnot_ps(sign, x);
    SL_TANH_SMALL(__m256, _mm256, x, small);
    const __m256 e = exp_avx2(_mm256_mul_ps(_mm256_set1_ps(-2.0f), a));
    __m256 t = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
    const __m256 neg = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    t = _mm256_blendv_ps(t, _mm256_xor_ps(t, sign), neg);
    t = _mm256_blendv_ps(t, small, _mm256_cmp_ps(a, _mm256_set1_ps(0.25f), _CMP_LT_OQ));
    return keep_nan(x, t);
}
#endif

/* erf(x) = x + x P(x^2) for |x| < 1.25 and sign(x) (1 - exp(Q(|x| - 2.6))) up to
 * 3.93, 1 beyond; P (degree 7) and Q (degree 10) are least-squares fits weighted
 * towards the minimax error (absolute error of erf in the second range). */
#define ERF_SPLIT 1.25f
#define ERF_ONE 3.93f
#define ERF_CENTRE 2.6f
static const float erf_p[8] = {0.12837916612625122f,   -0.37612631916999817f, 0.11283688247203827f,
                               -0.026860741898417473f, 0.005209906958043575f, -0.0008347826078534126f,
                               0.0001043190568452701f, -7.64189644542057e-06f};
static const float erf_q[11] = {-8.351532936096191f,      -5.541776657104492f,    -0.9470253586769104f,
                                -0.01003256719559431f,    0.001966020790860057f,  -0.00037711209733970463f,
                                6.91232635290362e-05f,    -1.1072508641518652e-05f, 1.3986183375891414e-06f,
                                -5.273712417874776e-07f, -1.4558368377493025e-07f};

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* erf's two polynomials on a vector of |x| (a): ra = a + a P(a^2) (SL_ERF_P), q = Q(a -
 * ERF_CENTRE) (SL_ERF_Q), the scalar operations in the same order (P: _mm256 or _mm512). A
 * vector whose lanes are all below ERF_SPLIT needs only ra: the callers skip Q and the exp
 * then (the same bits; GELU's inputs are mostly there). */
#define SL_ERF_P(V, P, a, ra)                                                                             \
    V ra;                                                                                                  \
    do {                                                                                                   \
        const V z_ = P##_mul_ps(a, a);                                                                     \
        V p_ = P##_set1_ps(erf_p[7]);                                                                      \
        for (int i = 6; i >= 0; i--)                                                                       \
            p_ = P##_add_ps(P##_mul_ps(p_, z_), P##_set1_ps(erf_p[i]));                                    \
        ra = P##_add_ps(a, P##_mul_ps(a, p_));                                                             \
    } while (0)
#define SL_ERF_Q(V, P, a, q)                                                                              \
    V q;                                                                                                   \
    do {                                                                                                   \
        const V t_ = P##_sub_ps(a, P##_set1_ps(ERF_CENTRE));                                               \
        q = P##_set1_ps(erf_q[10]);                                                                        \
        for (int i = 9; i >= 0; i--)                                                                       \
            q = P##_add_ps(P##_mul_ps(q, t_), P##_set1_ps(erf_q[i]));                                      \
    } while (0)

__attribute__((target("avx2"))) static inline __m256 erf_avx2(__m256 x)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 a = _mm256_andnot_ps(sign, x);
    SL_ERF_P(__m256, _mm256, a, ra);
    const __m256 small = _mm256_cmp_ps(a, _mm256_set1_ps(ERF_SPLIT), _CMP_LT_OQ);
    __m256 r = ra;
    if (_mm256_movemask_ps(small) != 0xff) {
        SL_ERF_Q(__m256, _mm256, a, q);
        const __m256 one = _mm256_set1_ps(1.0f);
        r = _mm256_blendv_ps(_mm256_sub_ps(one, exp_avx2(q)), ra, small);
        r = _mm256_blendv_ps(r, one, _mm256_cmp_ps(a, _mm256_set1_ps(ERF_ONE), _CMP_GE_OQ));
    }
    /* x < 0 (not -0.0, as the scalar test) */
    r = _mm256_blendv_ps(r, _mm256_xor_ps(r, sign), _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
    return keep_nan(x, r);
}

__attribute__((target("avx2"))) static inline __m256 act_avx2(sl_act act, __m256 v)
{
    if (act == SL_ACT_RELU) /* v < 0 ? 0 : v, NaN kept */
        return _mm256_blendv_ps(v, _mm256_setzero_ps(), _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_LT_OQ));
    if (act == SL_ACT_TANH)
        return act_tanh_avx2(v);
    if (act == SL_ACT_GELU) {
        const __m256 e = erf_avx2(_mm256_mul_ps(v, _mm256_set1_ps((float)M_SQRT1_2)));
        return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    }
    return v;
}
#endif

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* The epilogue on 16 lanes (sl_cpu_simd_avx512): the AVX2 path's operations, in the same
 * order, with no FMA, so bit-identical to it and to the portable loop. */
#define EPI_512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2")))

#define FLOOR_512(v) _mm512_roundscale_ps(v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC)

EPI_512 static inline __m512 exp_512(__m512 x)
{
    SL_EXP_VEC(__m512, __m512i, _mm512, FLOOR_512, _mm512_castsi512_ps, x);
    return x;
}

/* r where x is a number, x (NaN) elsewhere; -r where x < 0 (not -0.0) */
EPI_512 static inline __m512 sign_nan_512(__m512 x, __m512 r)
{
    r = _mm512_mask_xor_ps(r, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), r, _mm512_set1_ps(-0.0f));
    return _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
}

EPI_512 static inline __m512 erf_512(__m512 x)
{
    const __m512 a = _mm512_abs_ps(x);
    SL_ERF_P(__m512, _mm512, a, ra);
    const __mmask16 small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(ERF_SPLIT), _CMP_LT_OQ);
    if (small == 0xffff)
        return sign_nan_512(x, ra);
    SL_ERF_Q(__m512, _mm512, a, q);
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 r = _mm512_sub_ps(one, exp_512(q));
    r = _mm512_mask_mov_ps(r, small, ra);
    r = _mm512_mask_mov_ps(r, _mm512_cmp_ps_mask(a, _mm512_set1_ps(ERF_ONE), _CMP_GE_OQ), one);
    return sign_nan_512(x, r);
}

EPI_512 static inline __m512 tanh_512(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 a = _mm512_abs_ps(x);
    SL_TANH_SMALL(__m512, _mm512, x, small);
    const __m512 e = exp_512(_mm512_mul_ps(_mm512_set1_ps(-2.0f), a));
    __m512 t = sign_nan_512(x, _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e)));
    return _mm512_mask_mov_ps(t, _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.25f), _CMP_LT_OQ), small);
}

EPI_512 static inline __m512 act_512(sl_act act, __m512 v)
{
    if (act == SL_ACT_RELU) /* v < 0 ? 0 : v, NaN kept */
        return _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_setzero_ps());
    if (act == SL_ACT_TANH)
        return tanh_512(v);
    if (act == SL_ACT_GELU)
        return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v),
                             _mm512_add_ps(_mm512_set1_ps(1.0f),
                                           erf_512(_mm512_mul_ps(v, _mm512_set1_ps((float)M_SQRT1_2)))));
    return v;
}
#endif

#endif
