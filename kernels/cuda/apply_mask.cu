// Op apply_mask: out[i] = z[i] * mask[i] (complex times real); out may alias z,
// each thread reads its element before writing it.
#include "cu_ops.h"

// Complex values are read as two floats: callers may pass any float-aligned offset.
static __global__ void apply_mask_kernel(size_t n, const float *z, const float *__restrict__ mask, float *out)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float re = z[2 * i], im = z[2 * i + 1], m = mask[i];
        out[2 * i] = re * m;
        out[2 * i + 1] = im * m;
    }
}

static int apply_mask_launch(sl_stream_t s, size_t n, const float *cplx, const float *mask, float *out)
{
    return SL_LAUNCH(apply_mask_kernel, dim3(sl_blocks_for(n, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, n,
                     cplx, mask, out);
}

extern "C" int SL_FN(apply_mask)(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out)
{
    return apply_mask_launch(SL_FN(stream)(ctx), n, cplx, mask, out);
}
