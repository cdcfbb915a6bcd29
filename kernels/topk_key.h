/* The rank order of the topk op (kernels/ops.h, sl_op_topk), shared by the CPU
 * reference (kernels/cpu/cpu_topk.c) and the CUDA kernel (kernels/cuda/topk.cu)
 * so both order entries by exactly the same integers. A score becomes an
 * unsigned key that compares like the float (−0 and +0 give the same key) with
 * NaN below every number, −inf included; key 0 is an empty slot, below
 * everything. Entries compare by key, then by lower index: (key, index) pairs are
 * unique, so the order is total and the result does not depend on the order in
 * which entries arrive. C11 and CUDA C++. */
#ifndef SL_TOPK_KEY_H
#define SL_TOPK_KEY_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define TK_FN static __host__ __device__ __forceinline__
#else
#define TK_FN static inline
#endif

#define SL_TOPK_KEY_EMPTY 0u
#define SL_TOPK_KEY_NAN 1u

TK_FN uint32_t sl_topk_key(float x)
{
    if (x != x)
        return SL_TOPK_KEY_NAN;
    if (x == 0.0f)
        return 0x80000000u; /* -0 ranks with +0 */
    uint32_t u;
#if defined(__CUDA_ARCH__)
    u = __float_as_uint(x);
#else
    memcpy(&u, &x, sizeof u);
#endif
    /* sign-magnitude -> order-preserving: -inf = 0x007FFFFF > NaN > empty */
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* The score an entry stores: the inverse of sl_topk_key (canonical NaN; -inf for
 * an empty slot). */
TK_FN float sl_topk_value(uint32_t key)
{
    if (key == SL_TOPK_KEY_EMPTY)
        return -INFINITY;
    if (key == SL_TOPK_KEY_NAN)
        return NAN;
    uint32_t u = (key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key;
    float x;
#if defined(__CUDA_ARCH__)
    x = __uint_as_float(u);
#else
    memcpy(&x, &u, sizeof x);
#endif
    return x;
}

/* 1 when entry a ranks above entry b. */
TK_FN int sl_topk_better(uint32_t ka, int64_t ia, uint32_t kb, int64_t ib)
{
    return ka > kb || (ka == kb && ia < ib);
}

#endif
