/* CPU reference of row_gather: each output row a copy of one input row, or the
 * weighted sum of its taps in tap order (kernels/ops.h). */
#include "cpu_ops.h"

int sl_cpu_row_gather(sl_op_ctx *ctx, const sl_gather_args *a)
{
    (void)ctx;
    const size_t T = (size_t)a->taps;
    for (size_t b = 0; b < a->batch; b++)
        for (size_t r = 0; r < a->rows; r++) {
            float *y = a->y + b * a->stride_y + r * a->ldy;
            const int32_t *ix = a->idx + r * T;
            const float *x0 = a->x + b * a->stride_x + (size_t)ix[0] * a->ldx;
            if (!a->w) {
                for (size_t c = 0; c < a->cols; c++)
                    y[c] = x0[c];
                continue;
            }
            const float *w = a->w + r * T;
            for (size_t c = 0; c < a->cols; c++)
                y[c] = w[0] * x0[c];
            for (size_t t = 1; t < T; t++) {
                const float *xt = a->x + b * a->stride_x + (size_t)ix[t] * a->ldx;
                for (size_t c = 0; c < a->cols; c++)
                    y[c] = y[c] + w[t] * xt[c];
            }
        }
    return 0;
}
