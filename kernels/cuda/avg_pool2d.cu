// Op avg_pool2d: out[p][i][j] = mean of the kh x kw block of in[p] at (i*kh, j*kw)
// (torch avg_pool2d, stride = kernel, floor). One thread per output element,
// grid-stride; the block is summed in float in row-major order and scaled, the
// CPU backend's order, so the results are bit-equal.
#include "cu_ops.h"

static __global__ void avg_pool2d_kernel(size_t n, int h, int w, int kh, int kw, const float *__restrict__ in,
                                         float *__restrict__ out)
{
    const int oh = h / kh, ow = w / kw;
    const float inv = 1.0f / (float)(kh * kw);
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        const size_t p = e / ((size_t)oh * ow);
        const int r = (int)(e % ((size_t)oh * ow));
        const int i = r / ow, j = r % ow;
        const float *x = in + p * (size_t)h * w;
        float s = 0.0f;
        for (int u = 0; u < kh; u++)
            for (int v = 0; v < kw; v++)
                s = __fadd_rn(s, x[(size_t)(i * kh + u) * w + j * kw + v]);
        out[e] = __fmul_rn(s, inv);
    }
}

extern "C" int SL_FN(avg_pool2d)(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in,
                                 float *out)
{
    const size_t n = planes * (size_t)(h / kh) * (size_t)(w / kw);
    if (!n)
        return 0;
    return SL_LAUNCH(avg_pool2d_kernel, dim3(sl_blocks_for(n, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0,
                     SL_FN(stream)(ctx), n, h, w, kh, kw, in, out);
}
