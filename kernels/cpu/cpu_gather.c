/* CPU reference of row_gather: each output row a copy of one input row, or the
 * weighted sum of its taps in tap order (kernels/ops.h). Rows are split over the
 * context's threads when there are enough values; every row is computed by the same
 * operations whatever the split. */
#include <string.h>

#include "../../common/sl_pool.h"
#include "cpu_ops.h"

/* values (rows x cols x taps) below which the gather stays on the calling thread */
#define GATHER_PAR_MIN ((size_t)1 << 15)

typedef struct {
    const sl_gather_args *a;
    size_t parts;
} gather_job;

/* rows [r0, r1) of every item */
static void gather_rows(const sl_gather_args *a, size_t r0, size_t r1)
{
    const size_t T = (size_t)a->taps;
    for (size_t b = 0; b < a->batch; b++)
        for (size_t r = r0; r < r1; r++) {
            float *y = a->y + b * a->stride_y + r * a->ldy;
            const int32_t *ix = a->idx + r * T;
            const float *x0 = a->x + b * a->stride_x + (size_t)ix[0] * a->ldx;
            if (!a->w) {
                memcpy(y, x0, a->cols * sizeof(float));
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
}

static void gather_body(void *v, size_t part, int tid)
{
    (void)tid;
    const gather_job *J = v;
    size_t r0, r1;
    sl_pool_range(J->a->rows, J->parts, part, &r0, &r1);
    gather_rows(J->a, r0, r1);
}

int sl_cpu_row_gather(sl_op_ctx *ctx, const sl_gather_args *a)
{
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    if (th < 2 || a->rows < th || a->batch * a->rows * a->cols * (size_t)a->taps < GATHER_PAR_MIN) {
        gather_rows(a, 0, a->rows);
        return 0;
    }
    gather_job J = {a, th};
    sl_pool_for(ctx->pool, th, gather_body, &J);
    return 0;
}
