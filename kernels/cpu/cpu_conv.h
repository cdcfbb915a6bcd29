/* Private to the CPU convolutions and pooling (cpu_conv.c, cpu_conv_narrow.c,
 * cpu_conv_wg4.c, cpu_pool.c): the activation of their epilogues, their split over channels and
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

/* cpu_conv_wg4.c: the transforms of Winograd F(4x4, 3x3) for conv_winograd (cpu_conv.c), 36
 * positions xi = 6 a + b. Weights: U[xi][o][c] of the (o, c) pairs oc0 .. oc1 - 1 (packed: wk_gemm's
 * blocks of 8 rows), matrices us apart. Input: channel xc's tiles of tile rows ti0 .. ti0 + nrow - 1
 * into Vc[xi * vs + t] (P: (4 nrow + 2) * 4 (tw + 1) floats, tmp: 24 (tw + 1)). Output: output channels
 * o0 .. o1 - 1 of those tiles from M[xi * ms + o * ld + t] into y with bias and act (tmp: 40 tw). */
void sl_wg4_weights(const float *w, size_t oc0, size_t oc1, size_t C, int packed, size_t us, float *U);
void sl_wg4_input(const float *xc, int H, int W, int tw, int ti0, int nrow, size_t vs, float *P, float *tmp,
                  float *Vc);
void sl_wg4_output(const float *M, int o0, int o1, int H, int W, int tw, int ti0, int nrow, size_t ms, size_t ld,
                   const float *bias, sl_act act, float *tmp, float *y);

#endif
