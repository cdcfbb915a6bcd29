/* Element-wise vector helpers of the CPU backend (cpu_ops.h), with their AVX2 paths
 * chosen at run time (cpu_simd.h). */
#include <stddef.h>

#include "cpu_ops.h"
#include "cpu_simd.h"

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>
#endif

#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static size_t muladd_avx2(float *acc, const float *a, const float *b, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(acc + i, _mm256_add_ps(_mm256_loadu_ps(acc + i),
                                                _mm256_mul_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i))));
    return i;
}

__attribute__((target("avx2"))) static size_t div_avx2(float *out, const float *a, const float *b, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_div_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i)));
    return i;
}

__attribute__((target("avx2"))) static size_t scale_avx2(float *out, const float *in, float s, size_t n)
{
    const __m256 v = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_loadu_ps(in + i), v));
    return i;
}
#endif

void sl_cpu_vec_muladd(float *acc, const float *a, const float *b, size_t n)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2())
        i = muladd_avx2(acc, a, b, n);
#endif
    for (; i < n; i++)
        acc[i] += a[i] * b[i];
}

void sl_cpu_vec_div(float *out, const float *a, const float *b, size_t n)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2())
        i = div_avx2(out, a, b, n);
#endif
    for (; i < n; i++)
        out[i] = a[i] / b[i];
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static size_t add_scalar_avx2(float *y, float b, size_t n)
{
    const __m256 bv = _mm256_set1_ps(b);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), bv));
    return i;
}
#endif

#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static size_t addmul_avx2(float *y, const float *x, const float *add, const float *mul,
                                                          size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        if (add)
            v = _mm256_add_ps(v, _mm256_loadu_ps(add + i));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(v, _mm256_loadu_ps(mul + i)));
    }
    return i;
}
#endif

void sl_cpu_vec_addmul(float *y, const float *x, const float *add, const float *mul, size_t n)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2())
        i = addmul_avx2(y, x, add, mul, n);
#endif
    for (; i < n; i++) {
        float v = add ? x[i] + add[i] : x[i];
        y[i] = v * mul[i];
    }
}

void sl_cpu_vec_add_scalar(float *y, float b, size_t n)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2())
        i = add_scalar_avx2(y, b, n);
#endif
    for (; i < n; i++)
        y[i] += b;
}

void sl_cpu_vec_scale(float *out, const float *in, float s, size_t n)
{
    size_t i = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2())
        i = scale_avx2(out, in, s, n);
#endif
    for (; i < n; i++)
        out[i] = in[i] * s;
}

