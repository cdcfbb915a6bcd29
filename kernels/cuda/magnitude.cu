// Op magnitude: out[i] = |z[i]| (hypotf, as the CPU reference).
#include "cu_ops.h"

// Complex values are read as two floats: callers may pass any float-aligned offset.
static __global__ void magnitude_kernel(size_t n, const float *__restrict__ z, float *__restrict__ out)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = hypotf(z[2 * i], z[2 * i + 1]);
}

static int magnitude_launch(sl_stream_t s, size_t n, const float *cplx, float *out)
{
    return SL_LAUNCH(magnitude_kernel, dim3(sl_blocks_for(n, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, n,
                     cplx, out);
}

extern "C" int SL_FN(magnitude)(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    return magnitude_launch(SL_FN(stream)(ctx), n, cplx, out);
}
