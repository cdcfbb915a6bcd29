/* Block scores for the exact search (pipeline/search_dot.h). */
#include "pipeline/search_dot.h"

#include "io/npy.h"

#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && defined(__x86_64__)
#define SL_DOT_X86 1
#include <immintrin.h>
#endif

static void dot_scalar(const float *B, size_t m, size_t dim, const float *Q, size_t nq, float *S)
{
    for (size_t r = 0; r < m; r++) {
        const float *b = B + r * dim;
        for (size_t q = 0; q < nq; q++) {
            const float *x = Q + q * dim;
            float a[4] = {0, 0, 0, 0};
            size_t i = 0;
            for (; i + 4 <= dim; i += 4)
                for (int j = 0; j < 4; j++)
                    a[j] += b[i + j] * x[i + j];
            for (; i < dim; i++)
                a[0] += b[i] * x[i];
            S[r * nq + q] = (a[0] + a[1]) + (a[2] + a[3]);
        }
    }
}

#ifdef SL_DOT_X86
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* R rows x QN queries at once: R * QN accumulators, R + QN loads per step. */
#define DOT_AVX2_TILE(R, QN)                                                                                     \
    do {                                                                                                         \
        __m256 acc[R][QN];                                                                                       \
        _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++)                                                                       \
                acc[u][v] = _mm256_setzero_ps();                                                                 \
        size_t i = 0;                                                                                            \
        for (; i < dv; i += 8) {                                                                                 \
            __m256 x[R];                                                                                         \
            _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                        \
                x[u] = _mm256_loadu_ps(B + (r + u) * dim + i);                                                   \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) {                                                                     \
                const __m256 y = _mm256_loadu_ps(Q + (q + v) * dim + i);                                         \
                _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                    \
                    acc[u][v] = _mm256_fmadd_ps(x[u], y, acc[u][v]);                                             \
            }                                                                                                    \
        }                                                                                                        \
        if (i < dim) {                                                                                           \
            __m256 x[R];                                                                                         \
            _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                        \
                x[u] = _mm256_maskload_ps(B + (r + u) * dim + i, tail);                                          \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) {                                                                     \
                const __m256 y = _mm256_maskload_ps(Q + (q + v) * dim + i, tail);                                \
                _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                    \
                    acc[u][v] = _mm256_fmadd_ps(x[u], y, acc[u][v]);                                             \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++)                                                                       \
                S[(r + u) * nq + q + v] = hsum256(acc[u][v]);                                                    \
    } while (0)

__attribute__((target("avx2,fma"))) static void dot_avx2(const float *B, size_t m, size_t dim, const float *Q,
                                                         size_t nq, float *S)
{
    const size_t dv = dim / 8 * 8;
    int lanes[8];
    for (int l = 0; l < 8; l++)
        lanes[l] = (size_t)l < dim - dv ? -1 : 0;
    const __m256i tail = _mm256_loadu_si256((const __m256i *)(const void *)lanes);
    size_t r = 0;
    for (; r + 2 <= m; r += 2) {
        size_t q = 0;
        for (; q + 4 <= nq; q += 4)
            DOT_AVX2_TILE(2, 4);
        for (; q < nq; q++)
            DOT_AVX2_TILE(2, 1);
    }
    for (; r < m; r++) {
        size_t q = 0;
        for (; q + 4 <= nq; q += 4)
            DOT_AVX2_TILE(1, 4);
        for (; q < nq; q++)
            DOT_AVX2_TILE(1, 1);
    }
}

#define DOT_AVX512_TILE(R, QN)                                                                                   \
    do {                                                                                                         \
        __m512 acc[R][QN];                                                                                       \
        _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++)                                                                       \
                acc[u][v] = _mm512_setzero_ps();                                                                 \
        size_t i = 0;                                                                                            \
        for (; i < dv; i += 16) {                                                                                \
            __m512 x[R];                                                                                         \
            _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                        \
                x[u] = _mm512_loadu_ps(B + (r + u) * dim + i);                                                   \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) {                                                                     \
                const __m512 y = _mm512_loadu_ps(Q + (q + v) * dim + i);                                         \
                _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                    \
                    acc[u][v] = _mm512_fmadd_ps(x[u], y, acc[u][v]);                                             \
            }                                                                                                    \
        }                                                                                                        \
        if (i < dim) {                                                                                           \
            __m512 x[R];                                                                                         \
            _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                        \
                x[u] = _mm512_maskz_loadu_ps(tail, B + (r + u) * dim + i);                                       \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) {                                                                     \
                const __m512 y = _mm512_maskz_loadu_ps(tail, Q + (q + v) * dim + i);                             \
                _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                    \
                    acc[u][v] = _mm512_fmadd_ps(x[u], y, acc[u][v]);                                             \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                                            \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++)                                                                       \
                S[(r + u) * nq + q + v] = _mm512_reduce_add_ps(acc[u][v]);                                       \
    } while (0)

__attribute__((target("avx512f,fma"))) static void dot_avx512(const float *B, size_t m, size_t dim, const float *Q,
                                                              size_t nq, float *S)
{
    const size_t dv = dim / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (dim - dv)) - 1u);
    size_t r = 0;
    for (; r + 2 <= m; r += 2) {
        size_t q = 0;
        for (; q + 4 <= nq; q += 4)
            DOT_AVX512_TILE(2, 4);
        for (; q < nq; q++)
            DOT_AVX512_TILE(2, 1);
    }
    for (; r < m; r++) {
        size_t q = 0;
        for (; q + 4 <= nq; q += 4)
            DOT_AVX512_TILE(1, 4);
        for (; q < nq; q++)
            DOT_AVX512_TILE(1, 1);
    }
}
#endif

static sl_dot_isa cpu_isa(void)
{
#ifdef SL_DOT_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
        return SL_DOT_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return SL_DOT_AVX2;
#endif
    return SL_DOT_SCALAR;
}

sl_dot_isa sl_search_dot_isa(void)
{
    sl_dot_isa best = cpu_isa();
    const char *e = getenv("SL_SEARCH_SIMD");
    sl_dot_isa cap = !e || !*e ? SL_DOT_AVX512 : !strcmp(e, "scalar") ? SL_DOT_SCALAR : !strcmp(e, "avx2") ? SL_DOT_AVX2 : SL_DOT_AVX512;
    return best < cap ? best : cap;
}

const char *sl_search_dot_isa_name(sl_dot_isa isa)
{
    return isa == SL_DOT_AVX512 ? "avx512" : isa == SL_DOT_AVX2 ? "avx2" : "scalar";
}

void sl_search_dot(sl_dot_isa isa, const float *B, size_t m, size_t dim, const float *Q, size_t nq, float *S)
{
    const sl_dot_isa best = cpu_isa();
    if (isa > best)
        isa = best;
#ifdef SL_DOT_X86
    if (isa == SL_DOT_AVX512) {
        dot_avx512(B, m, dim, Q, nq, S);
        return;
    }
    if (isa == SL_DOT_AVX2) {
        dot_avx2(B, m, dim, Q, nq, S);
        return;
    }
#endif
    dot_scalar(B, m, dim, Q, nq, S);
}

#ifdef SL_DOT_X86
__attribute__((target("avx512f"))) static size_t f16_avx512(const unsigned char *src, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(src + 2 * i))));
    return i;
}

__attribute__((target("avx2,f16c"))) static size_t f16_avx2(const unsigned char *src, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(src + 2 * i))));
    return i;
}
#endif

void sl_search_f16_to_f32(sl_dot_isa isa, const unsigned char *src, size_t n, float *dst)
{
    size_t i = 0;
    const sl_dot_isa best = cpu_isa();
    if (isa > best)
        isa = best;
#ifdef SL_DOT_X86
    if (isa == SL_DOT_AVX512)
        i = f16_avx512(src, n, dst);
    else if (isa == SL_DOT_AVX2 && __builtin_cpu_supports("f16c"))
        i = f16_avx2(src, n, dst);
#else
    (void)isa;
#endif
    for (; i < n; i++)
        dst[i] = sl_f16_to_f32((unsigned short)(src[2 * i] | (src[2 * i + 1] << 8)));
}

/* ---------------------------------------------------------------- int8 products */

static void dot_i8_scalar(const signed char *B, size_t m, size_t ldb, size_t dim, const signed char *P, size_t np, int *D)
{
    for (size_t r = 0; r < m; r++)
        for (size_t j = 0; j < np; j++) {
            const signed char *b = B + r * ldb, *p = P + j * dim;
            int a = 0;
            for (size_t i = 0; i < dim; i++)
                a += (int)b[i] * (int)p[i];
            D[r * np + j] = a;
        }
}

#ifdef SL_DOT_X86
/* |b| (unsigned) times p carrying b's sign: maddubs cannot saturate (2 x 128 x 127 < 2^15) */
#define DOT_I8_AVX2_TILE(R, QN)                                                                                  \
    do {                                                                                                         \
        __m256i acc[R][QN];                                                                                      \
        _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                    \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) acc[u][v] = _mm256_setzero_si256();           \
        size_t i = 0;                                                                                            \
        for (; i + 32 <= dim; i += 32) {                                                                         \
            __m256i x[R], ax[R];                                                                                 \
            _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++) {                                              \
                x[u] = _mm256_loadu_si256((const __m256i *)(const void *)(B + (r + u) * ldb + i));               \
                ax[u] = _mm256_abs_epi8(x[u]);                                                                   \
            }                                                                                                    \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) {                                             \
                const __m256i y = _mm256_loadu_si256((const __m256i *)(const void *)(P + (j + v) * dim + i));    \
                _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++) {                                          \
                    const __m256i pr = _mm256_maddubs_epi16(ax[u], _mm256_sign_epi8(y, x[u]));                   \
                    acc[u][v] = _mm256_add_epi32(acc[u][v], _mm256_madd_epi16(pr, ones));                        \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
        _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                    \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) {                                             \
                __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc[u][v]),                                     \
                                          _mm256_extracti128_si256(acc[u][v], 1));                               \
                s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));                                                \
                s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));                                                \
                int a = _mm_cvtsi128_si32(s);                                                                    \
                for (size_t t = i; t < dim; t++)                                                                 \
                    a += (int)B[(r + u) * ldb + t] * (int)P[(j + v) * dim + t];                                  \
                D[(r + u) * np + j + v] = a;                                                                     \
            }                                                                                                    \
    } while (0)

__attribute__((target("avx2"))) static void dot_i8_avx2(const signed char *B, size_t m, size_t ldb, size_t dim,
                                                        const signed char *P, size_t np, int *D)
{
    const __m256i ones = _mm256_set1_epi16(1);
    size_t r = 0;
    for (; r + 2 <= m; r += 2) {
        size_t j = 0;
        for (; j + 4 <= np; j += 4)
            DOT_I8_AVX2_TILE(2, 4);
        for (; j < np; j++)
            DOT_I8_AVX2_TILE(2, 1);
    }
    for (; r < m; r++) {
        size_t j = 0;
        for (; j + 4 <= np; j += 4)
            DOT_I8_AVX2_TILE(1, 4);
        for (; j < np; j++)
            DOT_I8_AVX2_TILE(1, 1);
    }
}

/* The sums of the 16 lanes of each of a[0..7], in order: pairs of accumulators
 * interleaved and added (within 128-bit lanes), then the 128-bit lanes added. */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static inline __m256i reduce8(__m512i a0, __m512i a1,
                                                                                   __m512i a2, __m512i a3,
                                                                                   __m512i a4, __m512i a5,
                                                                                   __m512i a6, __m512i a7)
{
    const __m512i a[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    __m512i t[4], u[2];
    for (int i = 0; i < 4; i++) /* per 128-bit lane: a0+a2, b0+b2, a1+a3, b1+b3 of a = a[2i], b = a[2i+1] */
        t[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2 * i], a[2 * i + 1]),
                                _mm512_unpackhi_epi32(a[2 * i], a[2 * i + 1]));
    for (int i = 0; i < 2; i++) /* per 128-bit lane: the lane's sum of a[4i], ..., a[4i+3] */
        u[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(t[2 * i], t[2 * i + 1]),
                                _mm512_unpackhi_epi64(t[2 * i], t[2 * i + 1]));
    const __m512i w = _mm512_add_epi32(_mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                       _mm512_shuffle_i32x4(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512i z = _mm512_add_epi32(_mm512_shuffle_i32x4(w, w, _MM_SHUFFLE(2, 0, 2, 0)),
                                       _mm512_shuffle_i32x4(w, w, _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_castsi512_si256(z);
}

#define ACC(i, QN) acc[(i) / (QN)][(i) % (QN)]

/* (b + 128) as unsigned times p, then 128 sum(p) taken off: vpdpbusd without overflow
 * for dim <= 65536 (65536 x 255 x 127 < 2^31) */
#define DOT_I8_VNNI_TILE(R, QN)                                                                                  \
    do {                                                                                                         \
        __m512i acc[R][QN];                                                                                      \
        _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                    \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) acc[u][v] = _mm512_setzero_si512();           \
        size_t i = 0;                                                                                            \
        for (; i + 64 <= dim; i += 64) {                                                                         \
            __m512i x[R];                                                                                        \
            _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                \
                x[u] = _mm512_xor_si512(_mm512_loadu_si512((const void *)(B + (r + u) * ldb + i)), bias);        \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) {                                             \
                const __m512i y = _mm512_loadu_si512((const void *)(P + (j + v) * dim + i));                     \
                _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                            \
                    acc[u][v] = _mm512_dpbusd_epi32(acc[u][v], x[u], y);                                         \
            }                                                                                                    \
        }                                                                                                        \
        if (i < dim) { /* the masked-off bytes of p are 0, so x's there add nothing */                          \
            __m512i x[R];                                                                                        \
            _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                \
                x[u] = _mm512_xor_si512(_mm512_maskz_loadu_epi8(tail, B + (r + u) * ldb + i), bias);             \
            _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++) {                                             \
                const __m512i y = _mm512_maskz_loadu_epi8(tail, P + (j + v) * dim + i);                          \
                _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                            \
                    acc[u][v] = _mm512_dpbusd_epi32(acc[u][v], x[u], y);                                         \
            }                                                                                                    \
        }                                                                                                        \
        if ((R) * (QN) % 8 == 0) { /* eight accumulators summed together */                                     \
            _Pragma("GCC unroll 8") for (int g = 0; g < (R) * (QN); g += 8) {                                     \
                int sum8[8];                                                                                     \
                _mm256_storeu_si256((__m256i *)(void *)sum8,                                                     \
                                    reduce8(ACC(g, QN), ACC(g + 1, QN), ACC(g + 2, QN), ACC(g + 3, QN), ACC(g + 4, QN), ACC(g + 5, QN),  \
                                            ACC(g + 6, QN), ACC(g + 7, QN)));                                            \
                _Pragma("GCC unroll 8") for (int e = 0; e < 8; e++) {                                            \
                    const int u = (g + e) / (QN), v = (g + e) % (QN);                                            \
                    D[(r + u) * np + j + v] = sum8[e] - 128 * psum[j + v];                                       \
                }                                                                                                \
            }                                                                                                    \
        } else {                                                                                                 \
            _Pragma("GCC unroll 8") for (int u = 0; u < (R); u++)                                                \
                _Pragma("GCC unroll 8") for (int v = 0; v < (QN); v++)                                           \
                    D[(r + u) * np + j + v] = _mm512_reduce_add_epi32(acc[u][v]) - 128 * psum[j + v];            \
        }                                                                                                        \
    } while (0)

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void dot_i8_vnni(const signed char *B, size_t m,
                                                                               size_t ldb, size_t dim, const signed char *P,
                                                                               const int *psum, size_t np, int *D)
{
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    const size_t left = dim % 64;
    const __mmask64 tail = left ? (((__mmask64)1 << left) - 1) : 0;
    size_t r = 0;
    if (np >= 8) /* four queries or more: 2 rows x 8 parts, each row loaded once per 8 parts */
        for (; r + 2 <= m; r += 2) {
            size_t j = 0;
            for (; j + 8 <= np; j += 8)
                DOT_I8_VNNI_TILE(2, 8);
            for (; j + 2 <= np; j += 2)
                DOT_I8_VNNI_TILE(2, 2);
            for (; j < np; j++)
                DOT_I8_VNNI_TILE(2, 1);
        }
    else /* one query (two parts): 4 rows x 2 parts */
        for (; r + 4 <= m; r += 4) {
            size_t j = 0;
            for (; j + 2 <= np; j += 2)
                DOT_I8_VNNI_TILE(4, 2);
            for (; j < np; j++)
                DOT_I8_VNNI_TILE(4, 1);
        }
    for (; r < m; r++) {
        size_t j = 0;
        for (; j + 8 <= np; j += 8)
            DOT_I8_VNNI_TILE(1, 8);
        for (; j + 2 <= np; j += 2)
            DOT_I8_VNNI_TILE(1, 2);
        for (; j < np; j++)
            DOT_I8_VNNI_TILE(1, 1);
    }
}

static int cpu_vnni(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512f");
}
#endif

/* 2: VNNI, 1: AVX2, 0: portable, for isa on this CPU */
static int i8_path(sl_dot_isa isa)
{
    const sl_dot_isa best = cpu_isa();
    if (isa > best)
        isa = best;
#ifdef SL_DOT_X86
    if (isa == SL_DOT_AVX512 && cpu_vnni())
        return 2;
    if (isa >= SL_DOT_AVX2)
        return 1;
#endif
    return 0;
}

const char *sl_search_dot_i8_name(sl_dot_isa isa)
{
    const int p = i8_path(isa);
    return p == 2 ? "avx512-vnni" : p == 1 ? "avx2" : "scalar";
}

void sl_search_dot_i8(sl_dot_isa isa, const signed char *B, size_t m, size_t ldb, size_t dim, const signed char *P,
                      const int *psum, size_t np, int *D)
{
    const int p = i8_path(isa);
#ifdef SL_DOT_X86
    if (p == 2) {
        dot_i8_vnni(B, m, ldb, dim, P, psum, np, D);
        return;
    }
    if (p == 1) {
        dot_i8_avx2(B, m, ldb, dim, P, np, D);
        return;
    }
#else
    (void)psum;
#endif
    (void)p;
    dot_i8_scalar(B, m, ldb, dim, P, np, D);
}
