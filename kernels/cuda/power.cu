// Op power: out[i] = re^2 + im^2.
#include "cu_ops.h"

// Complex values are read as two floats: callers may pass any float-aligned offset.
static __global__ void power_kernel(size_t n, const float *__restrict__ z, float *__restrict__ out)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float re = z[2 * i], im = z[2 * i + 1];
        // Two roundings like the CPU (re*re + im*im); nvcc would otherwise fuse into an FMA.
        out[i] = __fadd_rn(__fmul_rn(re, re), __fmul_rn(im, im));
    }
}

static int power_launch(sl_stream_t s, size_t n, const float *cplx, float *out)
{
    return SL_LAUNCH(power_kernel, dim3(sl_blocks_for(n, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, n,
                     cplx, out);
}

extern "C" int SL_FN(power)(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    return power_launch(SL_FN(stream)(ctx), n, cplx, out);
}
