// Op permute: y[sum i_d ys[d]] = x[sum i_d xs[d]] over a 4-D index space. One
// thread per element (grid-stride over the flattened index, the last axis
// fastest, so a permutation that keeps the last axis is coalesced on both sides).
#include "cu_ops.h"

static __global__ void permute_kernel(sl_permute_args a)
{
    const size_t d1 = a.dim[1], d2 = a.dim[2], d3 = a.dim[3], total = a.dim[0] * d1 * d2 * d3;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t i3 = e % d3, i2 = (e / d3) % d2, i1 = (e / d3 / d2) % d1, i0 = e / d3 / d2 / d1;
        a.y[i0 * a.ys[0] + i1 * a.ys[1] + i2 * a.ys[2] + i3 * a.ys[3]] =
            a.x[i0 * a.xs[0] + i1 * a.xs[1] + i2 * a.xs[2] + i3 * a.xs[3]];
    }
}

static int permute_launch(sl_stream_t s, const sl_permute_args *a)
{
    const size_t total = a->dim[0] * a->dim[1] * a->dim[2] * a->dim[3];
    return SL_LAUNCH(permute_kernel, dim3(sl_blocks_for(total, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, *a);
}

extern "C" int SL_FN(permute)(sl_op_ctx *ctx, const sl_permute_args *a) { return permute_launch(SL_FN(stream)(ctx), a); }
