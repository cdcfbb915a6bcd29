/* The float scores of the exact search's scan (pipeline/search_scan.c): every
 * row of a block against every query, S[r * nq + q] = dot(B[r], Q[q]), in
 * float with any summation order. They only decide which rows are rescored in
 * double (within the proven rounding bound of search_eps), so the ISA changes
 * how fast the scan runs, never its result.
 *
 * Chosen at run time: AVX-512 (avx512f) where the CPU has it, else AVX2 + FMA,
 * else portable C. SL_SEARCH_SIMD=avx2 or scalar caps the level (to check the
 * lower paths on a machine that has more). */
#ifndef SL_SEARCH_DOT_H
#define SL_SEARCH_DOT_H

#include <stddef.h>

typedef enum { SL_DOT_SCALAR = 0, SL_DOT_AVX2 = 1, SL_DOT_AVX512 = 2 } sl_dot_isa;

/* The level the scan uses: the best the CPU has, capped by SL_SEARCH_SIMD. */
sl_dot_isa sl_search_dot_isa(void);
const char *sl_search_dot_isa_name(sl_dot_isa isa);
/* B: m rows of dim floats (row-major, any alignment); Q: nq rows of dim; S: m x nq.
 * An isa the CPU lacks falls back to the best it has. */
void sl_search_dot(sl_dot_isa isa, const float *B, size_t m, size_t dim, const float *Q, size_t nq, float *S);
/* dst[i] = the n little-endian IEEE float16 values at src, widened (exactly) to float:
 * AVX-512 or AVX2 + F16C conversions where isa and the CPU allow, else portable C. */
void sl_search_f16_to_f32(sl_dot_isa isa, const unsigned char *src, size_t n, float *dst);

/* The int8 scan copy's products (pipeline/search_i8.c), exact in int32 on every path:
 * D[r * np + j] = sum_i P[j][i] B[r][i] for m rows B (int8, any value, dim each, ldb
 * bytes apart) and np query parts P (int8 in [-127, 127]; psum[j] = the sum of P[j]),
 * dim <= 65536. AVX-512 VNNI where isa is avx512 and the CPU has avx512vnni and
 * avx512bw, else AVX2, else portable C; the integers are the same on each. */
void sl_search_dot_i8(sl_dot_isa isa, const signed char *B, size_t m, size_t ldb, size_t dim, const signed char *P,
                      const int *psum, size_t np, int *D);
/* The path sl_search_dot_i8 takes for isa: "avx512-vnni", "avx2" or "scalar". */
const char *sl_search_dot_i8_name(sl_dot_isa isa);

#endif
