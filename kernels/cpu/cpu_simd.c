/* Run-time selection of the CPU backend's AVX2 paths (cpu_simd.h); the element-wise vector helpers are in cpu_simd_vec.c. */
#include <math.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_simd.h"
#include "cpu_simd_math.h"

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

/* ---- LSTM cell and tanh (the polynomial math in cpu_simd_math.h) ---- */

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
__attribute__((target("avx2"))) static size_t erf_vec_avx2(float *out, const float *in, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, erf_avx2(_mm256_loadu_ps(in + i)));
    return i;
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

/* GELU on 4 x 8 lanes: act_avx2's operations for each lane in the same order (no FMA), so the
 * same bits, the four vectors' steps interleaved: independent chains for the out-of-order
 * core, where one vector's polynomials alone wait on latencies (the AVX-512 path's gelu4_512
 * in 8-wide vectors). erf's second range (its polynomial and exp) runs on every lane of the
 * four when any lane lies there, and not at all when none does (as act_avx2 skips it for a
 * vector: the activations of a trained-like model lie mostly in the first range). */
#define GELU4_AVX2_EACH _Pragma("GCC unroll 4") for (int u = 0; u < 4; u++)
__attribute__((target("avx2"))) static inline void gelu4_avx2(__m256 *v)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    __m256 x[4], a[4], z[4], pp[4], t[4], q[4];
    GELU4_AVX2_EACH
    {
        x[u] = _mm256_mul_ps(v[u], _mm256_set1_ps((float)M_SQRT1_2));
        a[u] = _mm256_andnot_ps(sign, x[u]);
        z[u] = _mm256_mul_ps(a[u], a[u]);
        pp[u] = _mm256_set1_ps(erf_p[7]);
        t[u] = _mm256_sub_ps(a[u], _mm256_set1_ps(ERF_CENTRE));
        q[u] = _mm256_set1_ps(erf_q[10]);
    }
    _Pragma("GCC unroll 7") for (int i = 6; i >= 0; i--) GELU4_AVX2_EACH pp[u] =
        _mm256_add_ps(_mm256_mul_ps(pp[u], z[u]), _mm256_set1_ps(erf_p[i]));
    __m256 small[4];
    int all_small = 1;
    GELU4_AVX2_EACH
    {
        small[u] = _mm256_cmp_ps(a[u], _mm256_set1_ps(ERF_SPLIT), _CMP_LT_OQ);
        all_small &= _mm256_movemask_ps(small[u]) == 0xff;
    }
    if (!all_small)
        _Pragma("GCC unroll 10") for (int i = 9; i >= 0; i--) GELU4_AVX2_EACH q[u] =
            _mm256_add_ps(_mm256_mul_ps(q[u], t[u]), _mm256_set1_ps(erf_q[i]));
    GELU4_AVX2_EACH
    {
        __m256 r = _mm256_add_ps(a[u], _mm256_mul_ps(a[u], pp[u]));
        if (!all_small) {
            r = _mm256_blendv_ps(_mm256_sub_ps(one, exp_avx2(q[u])), r, small[u]);
            r = _mm256_blendv_ps(r, one, _mm256_cmp_ps(a[u], _mm256_set1_ps(ERF_ONE), _CMP_GE_OQ));
        }
        r = _mm256_blendv_ps(r, _mm256_xor_ps(r, sign), _mm256_cmp_ps(x[u], _mm256_setzero_ps(), _CMP_LT_OQ));
        r = keep_nan(x[u], r);
        v[u] = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v[u]), _mm256_add_ps(one, r));
    }
}

__attribute__((target("avx2"))) static size_t epilogue_avx2(sl_act act, size_t n, const float *p, const float *bias,
                                                            const float *mul, const float *add, float *y)
{
    size_t j = 0;
    if (act == SL_ACT_GELU)
        for (; j + 32 <= n; j += 32) {
            __m256 v[4];
            GELU4_AVX2_EACH
            {
                v[u] = _mm256_loadu_ps(p + j + 8 * u);
                if (bias)
                    v[u] = _mm256_add_ps(v[u], _mm256_loadu_ps(bias + j + 8 * u));
            }
            gelu4_avx2(v);
            GELU4_AVX2_EACH
            {
                if (mul)
                    v[u] = _mm256_mul_ps(v[u], _mm256_loadu_ps(mul + j + 8 * u));
                if (add)
                    v[u] = _mm256_add_ps(v[u], _mm256_loadu_ps(add + j + 8 * u));
                _mm256_storeu_ps(y + j + 8 * u, v[u]);
            }
        }
    SL_EPILOGUE_LOOP(__m256, _mm256, 8, act_avx2)
    return j;
}
#endif

#ifdef SL_CPU_HAVE_AVX2_PATHS
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
