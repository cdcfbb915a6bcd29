// Op norm: RMSNorm (x * sqrt(dim) / max(||x||, eps) * gamma), LayerNorm
// ((x - mean) / sqrt(var + eps) * gamma + beta) or GroupNorm (the same with
// gamma / beta of each element's channel) of each row. One block of
// NORM_T threads per row (rows over grid.x, looping): each thread sums its
// strided slice, the slices are added by a fixed shared-memory tree
// (deterministic, no atomics); LayerNorm makes a second pass for the variance
// around the mean. LayerNorm / GroupNorm apply the args' activation last;
// SL_NORM_GROUP_GLU writes the GLU of the row's halves (sl_op_glu's sigmoid).
// In place is allowed: every thread has read all it needs (the sums) before
// anything is written.
#include "cu_ops.h"

#define NORM_T 256

// Sum of the block's v through shared memory; every thread gets the total.
static __device__ float norm_block_sum(float v, float *red)
{
    const int t = (int)threadIdx.x;
    __syncthreads(); // the previous use of red has been read
    red[t] = v;
    __syncthreads();
    for (int s = NORM_T / 2; s > 0; s /= 2) {
        if (t < s)
            red[t] = red[t] + red[t + s];
        __syncthreads();
    }
    return red[0];
}

static __global__ void __launch_bounds__(NORM_T) norm_kernel(sl_norm_args a)
{
    SL_SHARED(float, red, [NORM_T]);
    const size_t n = a.dim;
    for (size_t i = blockIdx.x; i < a.rows; i += gridDim.x) {
        const float *x = a.x + i * a.ldx;
        float *y = a.y + i * a.ldy;
        if (a.kind == SL_NORM_RMS) {
            float ss = 0.0f;
            for (size_t j = threadIdx.x; j < n; j += NORM_T)
                ss += x[j] * x[j];
            ss = norm_block_sum(ss, red);
            const float nrm = fmaxf(sqrtf(ss), a.eps);
            const float s = sqrtf((float)n) / nrm;
            __syncthreads(); // every thread has its scale before any row element is overwritten
            for (size_t j = threadIdx.x; j < n; j += NORM_T) {
                const float v = x[j] * s;
                y[j] = a.gamma ? v * a.gamma[j] : v;
            }
        } else {
            float sum = 0.0f;
            for (size_t j = threadIdx.x; j < n; j += NORM_T)
                sum += x[j];
            const float mean = norm_block_sum(sum, red) / (float)n;
            float var = 0.0f;
            for (size_t j = threadIdx.x; j < n; j += NORM_T)
                var += (x[j] - mean) * (x[j] - mean);
            var = norm_block_sum(var, red) / (float)n;
            const float rstd = 1.0f / sqrtf(var + a.eps);
            __syncthreads();
            const size_t cpg = a.kind == SL_NORM_GROUP || a.kind == SL_NORM_GROUP_GLU ? a.channels / a.groups : 0;
            const size_t c0 = cpg ? (i % a.groups) * cpg : 0;
            if (a.kind == SL_NORM_GROUP_GLU) { // the GLU of the halves: y[j] written after x[j], x[h + j] read
                const size_t h = n / 2;
                for (size_t j = threadIdx.x; j < h; j += NORM_T) {
                    const size_t p = c0 + (j / a.inner) % cpg, q = c0 + ((h + j) / a.inner) % cpg;
                    float u = (x[j] - mean) * rstd, g = (x[h + j] - mean) * rstd;
                    if (a.gamma)
                        u = u * a.gamma[p], g = g * a.gamma[q];
                    if (a.beta)
                        u = u + a.beta[p], g = g + a.beta[q];
                    y[j] = u * (1.0f / (1.0f + expf(-g)));
                }
                continue;
            }
            for (size_t j = threadIdx.x; j < n; j += NORM_T) {
                float v = (x[j] - mean) * rstd;
                const size_t p = cpg ? c0 + (j / a.inner) % cpg : j;
                if (a.gamma)
                    v = v * a.gamma[p];
                if (a.beta)
                    v = v + a.beta[p];
                y[j] = sl_cu_act(a.act, v);
            }
        }
    }
}

static int norm_launch(sl_stream_t s, const sl_norm_args *a)
{
    return SL_LAUNCH(norm_kernel, dim3(sl_blocks_for(a->rows, 1, 1u << 20)), dim3(NORM_T), 0, s, *a);
}

extern "C" int SL_FN(norm)(sl_op_ctx *ctx, const sl_norm_args *a) { return norm_launch(SL_FN(stream)(ctx), a); }
