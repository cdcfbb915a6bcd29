/* AVX-512 products c = a . b^T for few rows of a (the tokens of a short text, a
 * small batch): both operands are read in place along k (no packing of b, which
 * a library GEMM copies on every call and which dominates when a has few rows),
 * 4 rows of a x 6 rows of b accumulate in 24 registers of 16 lanes, then each
 * lane vector is summed by a fixed tree. Every element of c is computed by the
 * same operations in the same order wherever it lies in a tile, so a product
 * split by rows or columns over threads gives the same bits. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_simd.h"

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>

#define T512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

/* The lane sums of a, b, c, d: (l0+l8 + l1+l9) + ... by one tree for every input. */
T512 static inline __attribute__((always_inline)) __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
    const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
    const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
    const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
    const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

#define MR 4
#define NR 6

/* c[r][j] = a[r] . b[j] for r < R, j < N (R <= MR, N <= NR compile-time constants after inlining).
 * pf, when not NULL: NR rows of b (ldb apart) to fetch into L2 meanwhile, 16 floats of
 * each per step along k (the next tile's b: with few rows of a the product streams b
 * from memory, as six short runs that the hardware prefetcher picks up late; 8% less
 * CPU for the CLAP text tower's 9-token query). */
T512 static inline __attribute__((always_inline)) void tile(int R, int N, size_t k, const float *a, size_t lda,
                                                            const float *b, size_t ldb, float *c, size_t ldc,
                                                            const float *pf)
{
    __m512 acc[MR][NR], bv[NR];
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
        _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++)
            acc[r][j] = _mm512_setzero_ps();
    size_t kk = 0;
    for (; kk + 16 <= k; kk += 16) {
        if (pf)
            _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++)
                _mm_prefetch((const char *)(pf + (size_t)j * ldb + kk), _MM_HINT_T1);
        _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++)
            if (j < N)
                bv[j] = _mm512_loadu_ps(b + (size_t)j * ldb + kk);
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
            if (r < R) {
                const __m512 av = _mm512_loadu_ps(a + (size_t)r * lda + kk);
                _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++)
                    if (j < N)
                        acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
            }
    }
    if (kk < k) { /* the last k % 16 columns, zeros past k */
        const __mmask16 mk = (__mmask16)((1u << (k - kk)) - 1u);
        _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++)
            if (j < N)
                bv[j] = _mm512_maskz_loadu_ps(mk, b + (size_t)j * ldb + kk);
        _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
            if (r < R) {
                const __m512 av = _mm512_maskz_loadu_ps(mk, a + (size_t)r * lda + kk);
                _Pragma("GCC unroll 6") for (int j = 0; j < NR; j++)
                    if (j < N)
                        acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
            }
    }
    _Pragma("GCC unroll 4") for (int r = 0; r < MR; r++)
        if (r < R) {
            float o[8];
            _mm_storeu_ps(o, hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
            _mm_storeu_ps(o + 4, hsum4(acc[r][4], acc[r][5], acc[r][4], acc[r][5]));
            memcpy(c + (size_t)r * ldc, o, (size_t)N * sizeof(float));
        }
}

#define TILE(R, N)                                                                                                     \
    case (R) * 8 + (N):                                                                                                \
        tile(R, N, k, a, lda, b, ldb, c, ldc, NULL);                                                                   \
        break
#define TILE_ROW(R) TILE(R, 1); TILE(R, 2); TILE(R, 3); TILE(R, 4); TILE(R, 5); TILE(R, 6)

T512 static void tile_any(int R, int N, size_t k, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                          size_t ldc)
{
    switch (R * 8 + N) {
        TILE_ROW(1);
        TILE_ROW(2);
        TILE_ROW(3);
        TILE_ROW(4);
    default:
        break;
    }
}

T512 static void gemm_dot(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb,
                          float *c, size_t ldc)
{
    /* 6 rows of b stay in L1 while every row block of a passes */
    for (size_t j = 0; j < n; j += NR) {
        const int N = n - j < NR ? (int)(n - j) : NR;
        for (size_t i = 0; i < m; i += MR) {
            const int R = m - i < MR ? (int)(m - i) : MR;
            if (R == MR && N == NR) /* the first row block fetches the next tile's b */
                tile(MR, NR, k, a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc,
                     i == 0 && j + 2 * NR <= n ? b + (j + NR) * ldb : NULL);
            else
                tile_any(R, N, k, a + i * lda, lda, b + j * ldb, ldb, c + i * ldc + j, ldc);
        }
    }
}
#endif

static atomic_int avx512_enabled = -1; /* -1: not yet read from STEMLINE_CPU_AVX512 */

int sl_cpu_simd_set_avx512(int enable)
{
    (void)sl_cpu_simd_avx512(); /* the environment's setting first, so that it is what gets returned */
    return atomic_exchange(&avx512_enabled, enable ? 1 : 0);
}

int sl_cpu_simd_avx512(void)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    int on = atomic_load_explicit(&avx512_enabled, memory_order_relaxed);
    if (on < 0) {
        const char *e = getenv("STEMLINE_CPU_AVX512");
        int want = !(e && !strcmp(e, "0")), expect = -1;
        atomic_compare_exchange_strong(&avx512_enabled, &expect, want);
        on = atomic_load(&avx512_enabled);
    }
    return on && sl_cpu_simd_fma() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
#else
    return 0;
#endif
}

int sl_cpu_gemm_dot_fits(size_t m, size_t n, size_t k)
{
    (void)n;
    return m <= SL_CPU_DOT_MAX_ROWS && k > 0 && sl_cpu_simd_avx512();
}

void sl_cpu_gemm_dot(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    gemm_dot(m, n, k, a, lda, b, ldb, c, ldc);
#else
    (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb, (void)c, (void)ldc;
#endif
}
