/* Private to the CPU convolutions and pooling (cpu_conv.c, cpu_conv_narrow.c,
 * cpu_pool.c): the activation of their epilogues, their split over channels and
 * the narrow-image path of conv2d. */
#ifndef SL_CPU_CONV_H
#define SL_CPU_CONV_H

#include <math.h>
#include <stddef.h>

#include "../ops.h"

static inline float conv_act(sl_act act, float v)
{
    switch (act) {
    case SL_ACT_RELU: return v < 0.0f ? 0.0f : v; /* NaN stays NaN, as torch.relu */
    case SL_ACT_TANH: return tanhf(v);
    default: return v;
    }
}

/* fn(job, lo, hi, tid) over channels [0, n), one range per thread of ctx (serial below
 * CONV_PAR_MIN floats of work, cpu_conv.c). */
void sl_cpu_chan_for(sl_op_ctx *ctx, int n, size_t floats, void (*fn)(const void *, int, int, int),
                     const void *job);

/* cpu_conv_narrow.c: 1 when the 3x3 kernel of images at most 2 columns wide takes a (its
 * shape, and a CPU with AVX2 + FMA); the convolution by it: 0 or SL_ENOMEM (scratch). */
int sl_cpu_conv_narrow_ok(const sl_conv2d_args *a);
int sl_cpu_conv_narrow(sl_op_ctx *ctx, const sl_conv2d_args *a);

#endif
