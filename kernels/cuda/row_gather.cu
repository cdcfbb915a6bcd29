// Op row_gather: y[b][r][c] = sum_t w[r][t] * x[b][idx[r][t]][c] (w NULL: one tap,
// a copy). One thread per output value (grid-stride); consecutive threads write
// consecutive columns of a row, so both the reads of a picked row and the
// writes are coalesced. Taps are summed in order as the CPU reference does
// (nvcc may fuse the multiply-adds: a few ulps, unit.parity.fma).
#include "cu_ops.h"

static __global__ void row_gather_kernel(sl_gather_args a)
{
    const size_t total = a.batch * a.rows * a.cols, T = (size_t)a.taps;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t c = e % a.cols, br = e / a.cols, r = br % a.rows, b = br / a.rows;
        const float *xb = a.x + b * a.stride_x + c;
        const int32_t *ix = a.idx + r * T;
        float v;
        if (!a.w) {
            v = xb[(size_t)ix[0] * a.ldx];
        } else {
            const float *w = a.w + r * T;
            v = w[0] * xb[(size_t)ix[0] * a.ldx];
            for (size_t t = 1; t < T; t++)
                v = v + w[t] * xb[(size_t)ix[t] * a.ldx];
        }
        a.y[b * a.stride_y + r * a.ldy + c] = v;
    }
}

static int row_gather_launch(sl_stream_t s, const sl_gather_args *a)
{
    return SL_LAUNCH(row_gather_kernel, dim3(sl_blocks_for(a->batch * a->rows * a->cols, SL_BLOCK, 1u << 20)),
                     dim3(SL_BLOCK), 0, s, *a);
}

extern "C" int SL_FN(row_gather)(sl_op_ctx *ctx, const sl_gather_args *a)
{
    return row_gather_launch(SL_FN(stream)(ctx), a);
}
