/* Run-time selection of the CPU backend's AVX2 paths (cpu_simd.h); the element-wise vector helpers are in cpu_simd_vec.c. */
#include <math.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_simd.h"

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>
#endif

static atomic_int simd_enabled = 1;

/* STEMLINE_CPU_SIMD=0 turns every SIMD path off from the process's start (run-time
 * dispatch otherwise takes the widest the CPU has): how the portable paths are tested
 * on a machine that has the others. */
static void simd_env_once(void)
{
    const char *v = getenv("STEMLINE_CPU_SIMD");
    if (v && !strcmp(v, "0"))
        atomic_store(&simd_enabled, 0);
}

static void simd_env(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, simd_env_once);
}

int sl_cpu_simd_set(int enable)
{
    simd_env();
    return atomic_exchange(&simd_enabled, enable ? 1 : 0);
}


int sl_cpu_simd_avx2(void)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    /* libgcc fills the CPU model from a constructor; init is idempotent. The
     * avx2 bit is set only when the OS saves the YMM state (XGETBV). */
    simd_env();
    __builtin_cpu_init();
    return atomic_load_explicit(&simd_enabled, memory_order_relaxed) && __builtin_cpu_supports("avx2");
#else
    return 0;
#endif
}

int sl_cpu_simd_fma(void)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    return sl_cpu_simd_avx2() && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* ---- LSTM cell: exp, sigmoid and tanh without libm calls ---- */

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

float sl_cpu_tanh(float x)
{
    if (x != x)
        return x;
    const float a = x < 0.0f ? -x : x;
    if (a < 0.25f) {
        const float z = x * x;
        float p = TANH_C11;
        p = p * z + TANH_C9;
        p = p * z + TANH_C7;
        p = p * z + TANH_C5;
        p = p * z + TANH_C3;
        return x + x * (z * p);
    }
    const float e = exp_poly(-2.0f * a), t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}

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

__attribute__((target("avx2"))) static size_t lstm_cell_avx2(const float *g, float *c, float *h, float *out, size_t H)
{
    size_t j = 0;
    for (; j + 8 <= H; j += 8) {
        const __m256 ig = sigmoid_avx2(_mm256_loadu_ps(g + j)), fg = sigmoid_avx2(_mm256_loadu_ps(g + H + j));
        const __m256 gg = tanh_avx2(_mm256_loadu_ps(g + 2 * H + j)), og = sigmoid_avx2(_mm256_loadu_ps(g + 3 * H + j));
        const __m256 cj = _mm256_add_ps(_mm256_mul_ps(fg, _mm256_loadu_ps(c + j)), _mm256_mul_ps(ig, gg));
        const __m256 hj = _mm256_mul_ps(og, tanh_avx2(cj));
        _mm256_storeu_ps(c + j, cj);
        _mm256_storeu_ps(h + j, hj);
        _mm256_storeu_ps(out + j, hj);
    }
    return j;
}
#endif

void sl_cpu_lstm_cell(const float *gates, float *cell, float *h, float *out, size_t H)
{
    size_t j = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2())
        j = lstm_cell_avx2(gates, cell, h, out, H);
#endif
    for (; j < H; j++) {
        const float ig = sigmoid_poly(gates[j]), fg = sigmoid_poly(gates[H + j]);
        const float gg = tanh_poly(gates[2 * H + j]), og = sigmoid_poly(gates[3 * H + j]);
        cell[j] = fg * cell[j] + ig * gg;
        h[j] = og * tanh_poly(cell[j]);
        out[j] = h[j];
    }
}

/* ---- erf and the GEMM / affine epilogue ---- */

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

float sl_cpu_erf(float x)
{
    if (x != x)
        return x;
    const float a = x < 0.0f ? -x : x;
    float r;
    if (a < ERF_SPLIT) {
        const float z = a * a;
        float p = erf_p[7];
        for (int i = 6; i >= 0; i--)
            p = p * z + erf_p[i];
        r = a + a * p;
    } else if (a < ERF_ONE) {
        const float t = a - ERF_CENTRE;
        float q = erf_q[10];
        for (int i = 9; i >= 0; i--)
            q = q * t + erf_q[i];
        r = 1.0f - exp_poly(q);
    } else {
        r = 1.0f;
    }
    return x < 0.0f ? -r : r;
}

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

__attribute__((target("avx2"))) static size_t erf_vec_avx2(float *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, erf_avx2(_mm256_loadu_ps(in + i)));
    return i;
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

/* The epilogue's loop over whole vectors of W floats (P: _mm256 or _mm512, ACT: the vector
 * activation); j: the elements done. */
#define SL_EPILOGUE_LOOP(V, P, W, ACT)                                                                    \
    for (; j + W <= n; j += W) {                                                                           \
        V v = P##_loadu_ps(p + j);                                                                         \
        if (bias)                                                                                          \
            v = P##_add_ps(v, P##_loadu_ps(bias + j));                                                     \
        v = ACT(act, v);                                                                                   \
        if (mul)                                                                                           \
            v = P##_mul_ps(v, P##_loadu_ps(mul + j));                                                      \
        if (add)                                                                                           \
            v = P##_add_ps(v, P##_loadu_ps(add + j));                                                      \
        P##_storeu_ps(y + j, v);                                                                           \
    }

__attribute__((target("avx2"))) static size_t epilogue_avx2(sl_act act, size_t n, const float *p, const float *bias,
                                                            const float *mul, const float *add, float *y)
{
    size_t j = 0;
    SL_EPILOGUE_LOOP(__m256, _mm256, 8, act_avx2)
    return j;
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

/* erf's second range on N (<= 4) vectors of |x| in place (act_512's steps for lanes at or
 * above ERF_SPLIT: 1 - exp(Q(|x| - ERF_CENTRE)), 1 from ERF_ONE), the vectors' steps
 * interleaved (independent chains for the out-of-order core). */
#define FAR_EACH _Pragma("GCC unroll 4") for (int u = 0; u < N; u++)
EPI_512 static inline __attribute__((always_inline)) void erf_far_512(int N, __m512 *a)
{
    __m512 q[4], t[4], fx[4], z[4];
    FAR_EACH
    {
        t[u] = _mm512_sub_ps(a[u], _mm512_set1_ps(ERF_CENTRE));
        q[u] = _mm512_set1_ps(erf_q[10]);
    }
    _Pragma("GCC unroll 10") for (int i = 9; i >= 0; i--) FAR_EACH q[u] =
        _mm512_add_ps(_mm512_mul_ps(q[u], t[u]), _mm512_set1_ps(erf_q[i]));
    /* exp(q): SL_EXP_VEC's steps */
    FAR_EACH
    {
        q[u] = _mm512_min_ps(_mm512_set1_ps(EXP_HI), _mm512_max_ps(_mm512_set1_ps(EXP_LO), q[u]));
        fx[u] = FLOOR_512(_mm512_add_ps(_mm512_mul_ps(q[u], _mm512_set1_ps(1.44269504088896341f)),
                                        _mm512_set1_ps(0.5f)));
        q[u] = _mm512_sub_ps(q[u], _mm512_mul_ps(fx[u], _mm512_set1_ps(0.693359375f)));
        q[u] = _mm512_sub_ps(q[u], _mm512_mul_ps(fx[u], _mm512_set1_ps(-2.12194440e-4f)));
        z[u] = _mm512_mul_ps(q[u], q[u]);
        t[u] = _mm512_set1_ps(1.9875691500e-4f);
    }
    static const float ec[5] = {1.3981999507e-3f, 8.3334519073e-3f, 4.1665795894e-2f, 1.6666665459e-1f,
                                5.0000001201e-1f};
    _Pragma("GCC unroll 5") for (int i = 0; i < 5; i++) FAR_EACH t[u] =
        _mm512_add_ps(_mm512_mul_ps(t[u], q[u]), _mm512_set1_ps(ec[i]));
    FAR_EACH
    {
        __m512 e = _mm512_add_ps(_mm512_add_ps(_mm512_mul_ps(t[u], z[u]), q[u]), _mm512_set1_ps(1.0f));
        const __m512i n = _mm512_add_epi32(_mm512_cvttps_epi32(fx[u]), _mm512_set1_epi32(127));
        e = _mm512_mul_ps(e, _mm512_castsi512_ps(_mm512_slli_epi32(n, 23)));
        const __m512 one = _mm512_set1_ps(1.0f);
        a[u] = _mm512_mask_mov_ps(_mm512_sub_ps(one, e),
                                  _mm512_cmp_ps_mask(a[u], _mm512_set1_ps(ERF_ONE), _CMP_GE_OQ), one);
    }
}
#undef FAR_EACH

/* y = GELU(p + bias) * mul + add, act_512's operations for each lane in the same order, on
 * GELU_CHUNK (a multiple of 16) values: erf's first range (its polynomial, on every lane)
 * finishes the vectors whose lanes all lie there; the lanes of the others in erf's second
 * range (few in GELU's inputs) are packed side by side (compress) and its polynomial and exp
 * run on them four vectors at a time, then those vectors are finished (expand). Returns the
 * number of lanes in the second range. */
#define GELU_CHUNK 1024
EPI_512 static inline __m512 gelu_finish_512(__m512 v, __m512 x, __m512 r, const float *mul, const float *add)
{
    r = sign_nan_512(x, r);
    v = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v), _mm512_add_ps(_mm512_set1_ps(1.0f), r));
    if (mul)
        v = _mm512_mul_ps(v, _mm512_loadu_ps(mul));
    if (add)
        v = _mm512_add_ps(v, _mm512_loadu_ps(add));
    return v;
}

/* rows x n values (n a multiple of 16, rows * n <= GELU_CHUNK), row r of p at p + r * ldp (of mul,
 * add, y likewise; bias per column) */
EPI_512 __attribute__((noinline)) static int gelu_chunk_512(size_t rows, size_t n, const float *p, size_t ldp,
                                                             const float *bias, const float *mul, size_t ldmul,
                                                             const float *add, size_t ldadd, float *y, size_t ldy)
{
    float far[GELU_CHUNK + 16] __attribute__((aligned(64)));  /* packed |x| of the far lanes */
    float vs[GELU_CHUNK + 16] __attribute__((aligned(64)));   /* the pending vectors' inputs */
    float rs[GELU_CHUNK + 16] __attribute__((aligned(64)));   /* and their first-range results */
    int32_t at_r[GELU_CHUNK / 16 + 1], at_c[GELU_CHUNK / 16 + 1], off[GELU_CHUNK / 16 + 1];
    __mmask16 big[GELU_CHUNK / 16 + 1];
    int nv = 0, nf = 0;
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < n; j += 16) {
            __m512 v = _mm512_loadu_ps(p + r * ldp + j);
            if (bias)
                v = _mm512_add_ps(v, _mm512_loadu_ps(bias + j));
            const __m512 x = _mm512_mul_ps(v, _mm512_set1_ps((float)M_SQRT1_2)), a = _mm512_abs_ps(x);
            SL_ERF_P(__m512, _mm512, a, ra);
            const __mmask16 b = _mm512_cmp_ps_mask(a, _mm512_set1_ps(ERF_SPLIT), _CMP_NLT_UQ); /* NaN too */
            /* without branches (which way is data): a finished vector is stored, a pending one kept
             * (the slot is taken only when pending) */
            _mm512_mask_storeu_ps(y + r * ldy + j, b ? (__mmask16)0 : (__mmask16)0xffff,
                                  gelu_finish_512(v, x, ra, mul ? mul + r * ldmul + j : NULL,
                                                  add ? add + r * ldadd + j : NULL));
            _mm512_store_ps(vs + 16 * nv, v);
            _mm512_store_ps(rs + 16 * nv, ra);
            _mm512_storeu_ps(far + nf, _mm512_maskz_compress_ps(b, a));
            at_r[nv] = (int32_t)r;
            at_c[nv] = (int32_t)j;
            off[nv] = nf;
            big[nv] = b;
            nv += b != 0;
            nf += __builtin_popcount(b);
        }
    int i = 0;
    for (; i + 64 <= nf; i += 64) {
        __m512 f[4];
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) f[u] = _mm512_load_ps(far + i + 16 * u);
        erf_far_512(4, f);
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) _mm512_store_ps(far + i + 16 * u, f[u]);
    }
    if (i < nf) { /* the last 1 to 4 vectors, lanes past nf 0 */
        __m512 f[4];
        const int last = (nf - i + 15) / 16;
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) {
            const int left = nf - i - 16 * u;
            f[u] = _mm512_maskz_load_ps(left >= 16 ? (__mmask16)0xffff : left > 0 ? (__mmask16)((1u << left) - 1u) : 0,
                                        far + i + 16 * u);
        }
        switch (last) {
        case 1: erf_far_512(1, f); break;
        case 2: erf_far_512(2, f); break;
        case 3: erf_far_512(3, f); break;
        default: erf_far_512(4, f); break;
        }
        _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++) _mm512_store_ps(far + i + 16 * u, f[u]);
    }
    for (int t = 0; t < nv; t++) {
        const size_t r = (size_t)at_r[t], j = (size_t)at_c[t];
        const __m512 v = _mm512_load_ps(vs + 16 * t), x = _mm512_mul_ps(v, _mm512_set1_ps((float)M_SQRT1_2));
        const __m512 e = _mm512_mask_expand_ps(_mm512_load_ps(rs + 16 * t), big[t], _mm512_loadu_ps(far + off[t]));
        _mm512_storeu_ps(y + r * ldy + j, gelu_finish_512(v, x, e, mul ? mul + r * ldmul + j : NULL,
                                                          add ? add + r * ldadd + j : NULL));
    }
    return nf;
}

/* GELU on 4 x 16 lanes: act_512's operations for each lane, in the same order, the four
 * vectors' steps interleaved (independent chains for the out-of-order core: the polynomial
 * chains of one vector alone leave it waiting on latencies); both of erf's ranges on every
 * lane. Returns the number of lanes in the second range. */
#define GELU4 4
#define GELU4_EACH _Pragma("GCC unroll 4") for (int u = 0; u < GELU4; u++)
EPI_512 static inline int gelu4_512(__m512 *v)
{
    int far = 0;
    __m512 x[GELU4], a[GELU4], z[GELU4], p[GELU4], r[GELU4];
    GELU4_EACH
    {
        x[u] = _mm512_mul_ps(v[u], _mm512_set1_ps((float)M_SQRT1_2));
        r[u] = a[u] = _mm512_abs_ps(x[u]);
        z[u] = _mm512_mul_ps(a[u], a[u]);
        p[u] = _mm512_set1_ps(erf_p[7]);
    }
    _Pragma("GCC unroll 7") for (int i = 6; i >= 0; i--) GELU4_EACH p[u] =
        _mm512_add_ps(_mm512_mul_ps(p[u], z[u]), _mm512_set1_ps(erf_p[i]));
    erf_far_512(GELU4, r);
    GELU4_EACH
    {
        const __mmask16 near = _mm512_cmp_ps_mask(a[u], _mm512_set1_ps(ERF_SPLIT), _CMP_LT_OQ);
        far += 16 - __builtin_popcount(near);
        r[u] = sign_nan_512(x[u], _mm512_mask_mov_ps(r[u], near, _mm512_add_ps(a[u], _mm512_mul_ps(a[u], p[u]))));
        v[u] = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), v[u]), _mm512_add_ps(_mm512_set1_ps(1.0f), r[u]));
    }
    return far;
}

EPI_512 static size_t epilogue_512(sl_act act, size_t n, const float *p, const float *bias, const float *mul,
                                   const float *add, float *y)
{
    size_t j = 0;
    /* GELU: chunks by lane packing (gelu_chunk_512) while under about 3 in 8 of their lanes fall
     * in erf's second range, else by gelu4_512 (cheaper then), the choice carried over from the
     * previous chunk of this thread (rows of a product alike); the same bits either way */
    static _Thread_local int dense;
    if (act == SL_ACT_GELU) /* rows of at least 64 values (shorter ones: act_512 below) */
        for (; j + 64 <= n;) {
            const size_t len = n - j < GELU_CHUNK ? (n - j) & ~(size_t)15 : GELU_CHUNK;
            int far = 0;
            if (!dense)
                far = gelu_chunk_512(1, len, p + j, 0, bias ? bias + j : NULL, mul ? mul + j : NULL, 0,
                                     add ? add + j : NULL, 0, y + j, 0);
            else
                for (size_t e = j + len; j + 16 * GELU4 <= e; j += 16 * GELU4) {
                    __m512 v[GELU4];
                    GELU4_EACH
                    {
                        v[u] = _mm512_loadu_ps(p + j + 16 * u);
                        if (bias)
                            v[u] = _mm512_add_ps(v[u], _mm512_loadu_ps(bias + j + 16 * u));
                    }
                    far += gelu4_512(v);
                    GELU4_EACH
                    {
                        if (mul)
                            v[u] = _mm512_mul_ps(v[u], _mm512_loadu_ps(mul + j + 16 * u));
                        if (add)
                            v[u] = _mm512_add_ps(v[u], _mm512_loadu_ps(add + j + 16 * u));
                        _mm512_storeu_ps(y + j + 16 * u, v[u]);
                    }
                }
            if (!dense)
                j += len;
            dense = 8 * (size_t)far > 3 * len;
            if (len < GELU_CHUNK)
                break;
        }
    SL_EPILOGUE_LOOP(__m512, _mm512, 16, act_512)
    return j;
}
#endif

#ifdef SL_CPU_HAVE_AVX2_PATHS
EPI_512 static size_t erf_vec_512(float *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i, erf_512(_mm512_loadu_ps(in + i)));
    return i;
}
#endif

void sl_cpu_erf_vec(float *out, const float *in, size_t n)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = erf_vec_512(out, in, n);
    if (sl_cpu_simd_avx2())
        i += erf_vec_avx2(out + i, in + i, n - i);
#endif
    for (; i < n; i++)
        out[i] = sl_cpu_erf(in[i]);
}

void sl_cpu_epilogue_row(sl_act act, size_t n, const float *p, const float *bias, const float *mul, const float *add,
                         float *y)
{
    size_t j = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        j = epilogue_512(act, n, p, bias, mul, add, y);
    if (sl_cpu_simd_avx2())
        j += epilogue_avx2(act, n - j, p + j, bias ? bias + j : NULL, mul ? mul + j : NULL, add ? add + j : NULL,
                           y + j);
#endif
    for (; j < n; j++) {
        float v = bias ? p[j] + bias[j] : p[j];
        v = sl_cpu_act(act, v);
        if (mul)
            v *= mul[j];
        y[j] = add ? v + add[j] : v;
    }
}

void sl_cpu_epilogue_rows(sl_act act, size_t rows, size_t n, const float *p, size_t ldp, const float *bias,
                          const float *mul, size_t ldmul, const float *add, size_t ldadd, float *y, size_t ldy)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (n % 16 == 0 && sl_cpu_simd_avx512()) {
        if (act == SL_ACT_GELU && n < 64 && rows * n >= 64) { /* short rows (the AMX tiles' 32 x 32
                                                                 blocks): GELU on blocks of rows */
            const size_t rb = GELU_CHUNK / n;
            for (size_t r = 0; r < rows; r += rb)
                gelu_chunk_512(rows - r < rb ? rows - r : rb, n, p + r * ldp, ldp, bias,
                               mul ? mul + r * ldmul : NULL, ldmul, add ? add + r * ldadd : NULL, ldadd,
                               y + r * ldy, ldy);
            return;
        }
        for (size_t r = 0; r < rows; r++)
            epilogue_512(act, n, p + r * ldp, bias, mul ? mul + r * ldmul : NULL, add ? add + r * ldadd : NULL,
                         y + r * ldy);
        return;
    }
#endif
    for (size_t r = 0; r < rows; r++)
        sl_cpu_epilogue_row(act, n, p + r * ldp, bias, mul ? mul + r * ldmul : NULL, add ? add + r * ldadd : NULL,
                            y + r * ldy);
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static size_t exp_sub_avx2(float *x, float m, size_t n)
{
    const __m256 mv = _mm256_set1_ps(m);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv)));
    return i;
}

/* exp_sub_avx2 on 16 lanes (exp_512: the same operations, so the same bits) */
EPI_512 static size_t exp_sub_512(float *x, float m, size_t n)
{
    const __m512 mv = _mm512_set1_ps(m);
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, exp_512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv)));
    return i;
}

/* exp_sub_512 and the sum of the results in double (two vectors of 8 lanes, then a fixed tree),
 * the last n % 16 as one vector with its missing lanes 0 */
EPI_512 static inline __attribute__((always_inline)) size_t exp_sub_sum_512_body(float *x, float m, size_t n,
                                                                              double *sum)
{
    const __m512 mv = _mm512_set1_ps(m);
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 e = exp_512(_mm512_sub_ps(_mm512_loadu_ps(x + i), mv));
        _mm512_storeu_ps(x + i, e);
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
    }
    if (i < n) {
        const __mmask16 t = (__mmask16)((1u << (n - i)) - 1);
        const __m512 e = _mm512_maskz_mov_ps(t, exp_512(_mm512_sub_ps(_mm512_maskz_loadu_ps(t, x + i), mv)));
        _mm512_mask_storeu_ps(x + i, t, e);
        a0 = _mm512_add_pd(a0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        a1 = _mm512_add_pd(a1, _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
        i = n;
    }
    double part[8];
    _mm512_storeu_pd(part, _mm512_add_pd(a0, a1));
    *sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    return i;
}

EPI_512 static size_t exp_sub_sum_512(float *x, float m, size_t n, double *sum)
{
    return exp_sub_sum_512_body(x, m, n, sum);
}
#endif

void sl_cpu_vec_exp_sub(float *x, float m, size_t n)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = exp_sub_512(x, m, n);
    if (sl_cpu_simd_avx2())
        i += exp_sub_avx2(x + i, m, n - i);
#endif
    for (; i < n; i++)
        x[i] = exp_poly(x[i] - m);
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* sl_cpu_softmax_rows_unnorm on 16 lanes: per row the bias added, the maximum, then
 * sl_cpu_vec_exp_sub_sum's operations inline (no call per row). */
/* R <= 4 rows of at most 64 scores each, NK vectors of 16 (n = 16 (NK - 1) + the lanes of
 * `last`), held in registers and their steps interleaved: per row the operations of
 * softmax_rows_512 below (bias, maximum, exp, the last vector's missing lanes 0, the double sum
 * of two 8-lane halves and its fixed tree, here by lane swaps that add the same pairs), without
 * storing the biased scores and loading them again. */
EPI_512 static inline __attribute__((always_inline)) void softmax_rows64_512(int R, int NK, __mmask16 last, float *x,
                                                                            size_t ld, const float *bias,
                                                                            size_t ld_bias, float *inv)
{
    __m512 v[4][4], mv[4];
    __m512d a0[4], a1[4];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        __m512 m16 = _mm512_set1_ps(-INFINITY);
        _Pragma("GCC unroll 4") for (int w = 0; w < NK; w++) {
            const __mmask16 k = w == NK - 1 ? last : 0xffff;
            v[r][w] = _mm512_maskz_loadu_ps(k, x + (size_t)r * ld + 16 * w);
            if (bias)
                v[r][w] = _mm512_add_ps(v[r][w], _mm512_maskz_loadu_ps(k, bias + (size_t)r * ld_bias + 16 * w));
            m16 = _mm512_mask_max_ps(m16, k, m16, v[r][w]);
        }
        mv[r] = _mm512_set1_ps(_mm512_reduce_max_ps(m16));
        a0[r] = a1[r] = _mm512_setzero_pd();
    }
    _Pragma("GCC unroll 4") for (int w = 0; w < NK; w++)
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __mmask16 k = w == NK - 1 ? last : 0xffff;
            const __m512 e = _mm512_maskz_mov_ps(k, exp_512(_mm512_sub_ps(v[r][w], mv[r])));
            _mm512_mask_storeu_ps(x + (size_t)r * ld + 16 * w, k, e);
            a0[r] = _mm512_add_pd(a0[r], _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
            a1[r] = _mm512_add_pd(a1[r], _mm512_cvtps_pd(_mm512_extractf32x8_ps(e, 1)));
        }
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
        __m512d t = _mm512_add_pd(a0[r], a1[r]);                          /* p0 .. p7 */
        t = _mm512_add_pd(t, _mm512_permute_pd(t, 0x55));                  /* p0 + p1, p2 + p3, ... */
        t = _mm512_add_pd(t, _mm512_permutex_pd(t, _MM_SHUFFLE(1, 0, 3, 2))); /* (p0 + p1) + (p2 + p3), ... */
        t = _mm512_add_pd(t, _mm512_shuffle_f64x2(t, t, _MM_SHUFFLE(1, 0, 3, 2)));
        inv[r] = (float)(1.0 / _mm512_cvtsd_f64(t));
    }
}

EPI_512 static void softmax_rows_512(float *x, size_t ld, size_t rows, size_t n, const float *bias, size_t ld_bias,
                                     float *inv)
{
    if (n > 0 && n <= 64) {
        const __mmask16 last = (__mmask16)(0xffffu >> ((16 - n % 16) % 16));
#define SM64(R, NK) softmax_rows64_512(R, NK, last, x + r * ld, ld, bias ? bias + r * ld_bias : NULL, ld_bias, inv + r)
        size_t r = 0;
        for (; r + 4 <= rows; r += 4)
            switch ((n + 15) / 16) {
            case 1: SM64(4, 1); break;
            case 2: SM64(4, 2); break;
            case 3: SM64(4, 3); break;
            default: SM64(4, 4); break;
            }
        for (; r < rows; r++)
            switch ((n + 15) / 16) {
            case 1: SM64(1, 1); break;
            case 2: SM64(1, 2); break;
            case 3: SM64(1, 3); break;
            default: SM64(1, 4); break;
            }
#undef SM64
        return;
    }
    for (size_t r = 0; r < rows; r++) {
        float *s = x + r * ld;
        const float *b = bias ? bias + r * ld_bias : NULL;
        size_t j = 0;
        __m512 m16 = _mm512_set1_ps(-INFINITY);
        for (; j + 16 <= n; j += 16) {
            __m512 v = _mm512_loadu_ps(s + j);
            if (b) {
                v = _mm512_add_ps(v, _mm512_loadu_ps(b + j));
                _mm512_storeu_ps(s + j, v);
            }
            m16 = _mm512_max_ps(m16, v);
        }
        if (j < n) {
            const __mmask16 t = (__mmask16)((1u << (n - j)) - 1);
            __m512 v = _mm512_maskz_loadu_ps(t, s + j);
            if (b) {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(t, b + j));
                _mm512_mask_storeu_ps(s + j, t, v);
            }
            m16 = _mm512_mask_max_ps(m16, t, m16, v);
        }
        double sum;
        exp_sub_sum_512_body(s, _mm512_reduce_max_ps(m16), n, &sum);
        inv[r] = (float)(1.0 / sum);
    }
}
#endif

int sl_cpu_softmax_rows_unnorm(float *x, size_t ld, size_t rows, size_t n, const float *bias, size_t ld_bias,
                               float *inv)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512()) {
        softmax_rows_512(x, ld, rows, n, bias, ld_bias, inv);
        return 1;
    }
#else
    (void)x, (void)ld, (void)rows, (void)n, (void)bias, (void)ld_bias, (void)inv;
#endif
    return 0;
}

double sl_cpu_vec_exp_sub_sum(float *x, float m, size_t n)
{
    size_t i = 0;
    double sum = 0.0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = exp_sub_sum_512(x, m, n, &sum);
#endif
    for (; i < n; i++) {
        x[i] = exp_poly(x[i] - m);
        sum += x[i];
    }
    return sum;
}

/* ---- row normalisation ---- */

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* sum of (x[i] - c)^2 (sq) or of x[i] (!sq) in double, four lanes */
__attribute__((target("avx2"))) static size_t sum_d_avx2(const float *x, size_t n, double c, int sq, double *out)
{
    const __m256d cv = _mm256_set1_pd(c);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
        if (sq) {
            lo = _mm256_sub_pd(lo, cv), hi = _mm256_sub_pd(hi, cv);
            lo = _mm256_mul_pd(lo, lo), hi = _mm256_mul_pd(hi, hi);
        }
        a0 = _mm256_add_pd(a0, lo), a1 = _mm256_add_pd(a1, hi);
    }
    double l[4];
    _mm256_storeu_pd(l, _mm256_add_pd(a0, a1));
    *out = (l[0] + l[1]) + (l[2] + l[3]);
    return i;
}

__attribute__((target("avx2"))) static size_t norm_apply_avx2(float *y, const float *x, size_t n, double mean,
                                                              double rstd, const float *gamma, const float *beta)
{
    const __m256d m = _mm256_set1_pd(mean), r = _mm256_set1_pd(rstd);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d lo = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m), r);
        const __m256d hi = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m), r);
        __m256 o = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
        if (gamma)
            o = _mm256_mul_ps(o, _mm256_loadu_ps(gamma + i));
        if (beta)
            o = _mm256_add_ps(o, _mm256_loadu_ps(beta + i));
        _mm256_storeu_ps(y + i, o);
    }
    return i;
}

/* The same on 16 lanes: (x - mean) * rstd in double, rounded to float, as the scalar loop */
EPI_512 static inline __m512 norm16_512(const float *x, __m512d m, __m512d r)
{
    const __m512 v = _mm512_loadu_ps(x);
    const __m512d lo = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(v)), m), r);
    const __m512d hi = _mm512_mul_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)), m), r);
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(lo)), _mm512_cvtpd_ps(hi), 1);
}

EPI_512 static size_t norm_apply_512(float *y, const float *x, size_t n, double mean, double rstd,
                                     const float *gamma, const float *beta)
{
    const __m512d m = _mm512_set1_pd(mean), r = _mm512_set1_pd(rstd);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 o = norm16_512(x + i, m, r);
        if (gamma)
            o = _mm512_mul_ps(o, _mm512_loadu_ps(gamma + i));
        if (beta)
            o = _mm512_add_ps(o, _mm512_loadu_ps(beta + i));
        _mm512_storeu_ps(y + i, o);
    }
    return i;
}

/* sum_d_avx2 with 16 lanes (two vectors of 8 doubles), then a fixed tree */
EPI_512 static size_t sum_d_512(const float *x, size_t n, double c, int sq, double *out)
{
    const __m512d cv = _mm512_set1_pd(c);
    __m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v)), hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1));
        if (sq) {
            lo = _mm512_sub_pd(lo, cv), hi = _mm512_sub_pd(hi, cv);
            lo = _mm512_mul_pd(lo, lo), hi = _mm512_mul_pd(hi, hi);
        }
        a0 = _mm512_add_pd(a0, lo), a1 = _mm512_add_pd(a1, hi);
    }
    double l[8];
    _mm512_storeu_pd(l, _mm512_add_pd(a0, a1));
    *out = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    return i;
}

/* sl_cpu_norm_apply_run's loop on 16 / 8 lanes: the scalar operations in the same order */
EPI_512 static size_t norm_run_512(float *y, const float *x, size_t n, double mean, double rstd, const float *gamma,
                                   const float *beta, sl_act act)
{
    const __m512d m = _mm512_set1_pd(mean), r = _mm512_set1_pd(rstd);
    const __m512 g = _mm512_set1_ps(gamma ? *gamma : 1.0f), b = _mm512_set1_ps(beta ? *beta : 0.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 o = norm16_512(x + i, m, r);
        if (gamma)
            o = _mm512_mul_ps(o, g);
        if (beta)
            o = _mm512_add_ps(o, b);
        _mm512_storeu_ps(y + i, act_512(act, o));
    }
    return i;
}

__attribute__((target("avx2"))) static size_t norm_run_avx2(float *y, const float *x, size_t n, double mean,
                                                            double rstd, const float *gamma, const float *beta,
                                                            sl_act act)
{
    const __m256d m = _mm256_set1_pd(mean), r = _mm256_set1_pd(rstd);
    const __m256 g = _mm256_set1_ps(gamma ? *gamma : 1.0f), b = _mm256_set1_ps(beta ? *beta : 0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d lo = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), m), r);
        const __m256d hi = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), m), r);
        __m256 o = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
        if (gamma)
            o = _mm256_mul_ps(o, g);
        if (beta)
            o = _mm256_add_ps(o, b);
        _mm256_storeu_ps(y + i, act_avx2(act, o));
    }
    return i;
}
#endif

double sl_cpu_row_sum(const float *x, size_t n, double c, int sq)
{
    double s = 0;
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = sum_d_512(x, n, c, sq, &s);
    else if (sl_cpu_simd_avx2())
        i = sum_d_avx2(x, n, c, sq, &s);
#endif
    for (; i < n; i++)
        s += sq ? ((double)x[i] - c) * ((double)x[i] - c) : (double)x[i];
    return s;
}

void sl_cpu_norm_apply(float *y, const float *x, size_t n, double mean, double rstd, const float *gamma,
                       const float *beta)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = norm_apply_512(y, x, n, mean, rstd, gamma, beta);
    if (sl_cpu_simd_avx2())
        i += norm_apply_avx2(y + i, x + i, n - i, mean, rstd, gamma ? gamma + i : NULL, beta ? beta + i : NULL);
#endif
    for (; i < n; i++) {
        float v = (float)(((double)x[i] - mean) * rstd);
        if (gamma)
            v *= gamma[i];
        if (beta)
            v += beta[i];
        y[i] = v;
    }
}

void sl_cpu_norm_apply_run(float *y, const float *x, size_t n, double mean, double rstd, const float *gamma,
                           const float *beta, sl_act act)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        i = norm_run_512(y, x, n, mean, rstd, gamma, beta, act);
    if (sl_cpu_simd_avx2())
        i += norm_run_avx2(y + i, x + i, n - i, mean, rstd, gamma, beta, act);
#endif
    for (; i < n; i++) {
        float v = (float)(((double)x[i] - mean) * rstd);
        if (gamma)
            v *= *gamma;
        if (beta)
            v += *beta;
        y[i] = sl_cpu_act(act, v);
    }
}

/* ---- GLU ---- */

#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static size_t glu_avx2(float *y, const float *a, const float *g, size_t n)
{
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 s = sigmoid_avx2(_mm256_loadu_ps(g + j));
        _mm256_storeu_ps(y + j, _mm256_mul_ps(_mm256_loadu_ps(a + j), s));
    }
    return j;
}
#endif

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* glu_avx2 on 16 lanes: sigmoid_avx2's operations (so the same bits) */
EPI_512 static size_t glu_512(float *y, const float *a, const float *g, size_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 x = _mm512_loadu_ps(g + j);
        const __m512 neg_x = _mm512_xor_ps(x, _mm512_set1_ps(-0.0f));
        __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp_512(neg_x)));
        s = _mm512_mask_mov_ps(s, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);
        _mm512_storeu_ps(y + j, _mm512_mul_ps(_mm512_loadu_ps(a + j), s));
    }
    return j;
}
#endif

void sl_cpu_glu_row(float *y, const float *a, const float *g, size_t n)
{
    size_t j = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        j = glu_512(y, a, g, n);
    if (sl_cpu_simd_avx2())
        j += glu_avx2(y + j, a + j, g + j, n - j);
#endif
    for (; j < n; j++)
        y[j] = a[j] * sigmoid_poly(g[j]);
}
