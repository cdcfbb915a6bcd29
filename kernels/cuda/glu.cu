// Op glu: y[i][j] = x[i][j] * sigmoid(x[i][n + j]). One thread per output
// element (grid-stride). In place (y == x, ldy <= ldx) is safe: an element is
// written only after its own two inputs were read, and no other thread reads it
// (column j < n of row i is read only by the thread of (i, j)).
#include "cu_ops.h"

static __global__ void glu_kernel(size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy)
{
    const size_t total = rows * n;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t i = e / n, j = e % n;
        const float g = 1.0f / (1.0f + expf(-x[i * ldx + n + j]));
        y[i * ldy + j] = x[i * ldx + j] * g;
    }
}

static int glu_launch(sl_stream_t s, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy)
{
    return SL_LAUNCH(glu_kernel, dim3(sl_blocks_for(rows * n, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, rows, n,
                     x, ldx, y, ldy);
}

extern "C" int SL_FN(glu)(sl_op_ctx *ctx, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy)
{
    return glu_launch(SL_FN(stream)(ctx), rows, n, x, ldx, y, ldy);
}
