/* Includes the file named by SL_SIMD_BODY twice, once per instruction set, each
 * inside a `#pragma GCC target` region: AVX2 with WG_VW 8 (floats per vector)
 * and WG_SFX(name) = name##_avx2, then AVX-512 with WG_VW 16 and name##_avx512.
 * Before the body: the vector types WG_SFX(vf) / WG_SFX(vi) (GCC vector
 * extensions) and their unaligned load / store WG_SFX(ld) / WG_SFX(st). Used by
 * cpu_conv.c (cpu_wino_simd.h) and cpu_pool.c (cpu_pool_simd.h); x86-64 GCC only.
 * Not a header of its own: no include guard, on purpose. */

#pragma GCC push_options
#pragma GCC target("avx2")
#define WG_VW 8
#define WG_SFX(name) name##_avx2
#include "cpu_simd_vec.h"
#include SL_SIMD_BODY
#undef WG_VW
#undef WG_SFX
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq")
#define WG_VW 16
#define WG_SFX(name) name##_avx512
#include "cpu_simd_vec.h"
#include SL_SIMD_BODY
#undef WG_VW
#undef WG_SFX
#pragma GCC pop_options
