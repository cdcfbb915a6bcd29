// Shared device helpers of median_time.cu and median_freq.cu (header-only,
// everything static): scipy 'reflect' borders and an exact k-th smallest
// selection.
//
// Selection is a bitwise radix select on order-preserving integer keys: for
// each of the 32 bits, from the top, count the window values that match the
// prefix found so far with a 0 in this bit; the wanted rank decides the bit.
// Cost 32*k comparisons per output, no branches that depend on the data (a
// warp stays converged), no local arrays, any kernel length. The result is one
// of the window's values, bit for bit, so it equals the CPU running median.
#ifndef SL_MEDIAN_SELECT_CUH
#define SL_MEDIAN_SELECT_CUH

#include "sl_cuda.h"

// Orderable key: unsigned comparison of keys = float comparison of values
// (-0 sorts just below +0, NaN above +inf; the CPU result with NaN is unspecified).
static __device__ __forceinline__ unsigned med_key(float v)
{
    const unsigned u = __float_as_uint(v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static __device__ __forceinline__ float med_unkey(unsigned k)
{
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

// scipy.ndimage 'reflect' (d c b a | a b c d | d c b a), periodic with period 2n.
static __device__ __forceinline__ long long med_reflect(long long i, long long n)
{
    const long long period = 2 * n;
    long long j = i % period;
    if (j < 0)
        j += period;
    return j < n ? j : period - 1 - j;
}

// Key of the rank-th smallest (0-based) of load(0) .. load(k-1).
template <class Load>
static __device__ __forceinline__ unsigned med_select(int k, int rank, Load load)
{
    unsigned prefix = 0;
    for (int bit = 31; bit >= 0; bit--) {
        const unsigned mask = ~0u << bit;
        int c = 0;
        for (int j = 0; j < k; j++)
            c += (load(j) & mask) == prefix;
        if (rank >= c) {
            rank -= c;
            prefix |= 1u << bit;
        }
    }
    return prefix;
}

#endif
