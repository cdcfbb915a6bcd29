// Op affine: y[b][i][j] = act((x[b][i][j] + add[b][j]) * mul[b][j]) [+ res[b][i][j]]. One
// thread per column (coalesced), rows and items over grid.y / grid.z (looping
// past the grid limits). In place is allowed: each element is read, then
// written, by the same thread.
#include "cu_ops.h"

static __global__ void affine_kernel(sl_affine_args a)
{
    const size_t j = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (j >= a.cols)
        return;
    for (size_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
        const float add = a.add ? a.add[b * a.stride_p + j] : 0.0f;
        const float mul = a.mul ? a.mul[b * a.stride_p + j] : 1.0f;
        for (size_t i = blockIdx.y; i < a.rows; i += gridDim.y) {
            float v = a.x[b * a.stride_x + i * a.ldx + j];
            if (a.add)
                v = v + add;
            if (a.mul)
                v = v * mul;
            v = sl_cu_act(a.act, v);
            if (a.res)
                v = v + a.res[b * a.stride_res + i * a.ldres + j];
            a.y[b * a.stride_y + i * a.ldy + j] = v;
        }
    }
}

static int affine_launch(sl_stream_t s, const sl_affine_args *a)
{
    const dim3 grid(sl_blocks_for(a->cols, SL_BLOCK, 1u << 30), sl_blocks_for(a->rows, 1, 4096),
                    sl_blocks_for(a->batch, 1, SL_GRID_YZ_MAX));
    return SL_LAUNCH(affine_kernel, grid, dim3(SL_BLOCK), 0, s, *a);
}

extern "C" int SL_FN(affine)(sl_op_ctx *ctx, const sl_affine_args *a)
{
    return affine_launch(SL_FN(stream)(ctx), a);
}
