// Op stats_pool: out[b] = [mean_t x, std_t x, mean_t dx, std_t dx] per feature
// (population std, dx[t] = x[t+1] - x[t]), two passes in double as the CPU.
//
// A block is 32 features x 8 time slices for one batch item: each thread sums
// its slice (t = ty, ty+8, ...) in double, the 8 partial sums of a feature are
// added by one thread in slice order (a fixed tree, so the result is
// deterministic; no float atomics), the means are shared, and the second pass
// accumulates squared deviations the same way.
#include "cu_ops.h"

#define SP_F 32 // features per block
#define SP_T 8  // time slices

static __global__ void __launch_bounds__(SP_F *SP_T)
    stats_pool_kernel(size_t batch, size_t n_frames, size_t n_feat, const float *__restrict__ in,
                      float *__restrict__ out)
{
    SL_SHARED(double, s_a, [SP_T][SP_F]);
    SL_SHARED(double, s_b, [SP_T][SP_F]);
    SL_SHARED(double, s_mean, [SP_F]);
    SL_SHARED(double, s_dmean, [SP_F]);
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const size_t f = (size_t)blockIdx.x * SP_F + tx;
    const bool on = f < n_feat;
    const double T = (double)n_frames;
    for (size_t b = blockIdx.y; b < batch; b += gridDim.y) {
        const float *x = in + b * n_frames * n_feat;
        double s = 0, sd = 0;
        if (on)
            for (size_t t = ty; t < n_frames; t += SP_T) {
                s += x[t * n_feat + f];
                if (t > 0)
                    sd += (double)x[t * n_feat + f] - x[(t - 1) * n_feat + f];
            }
        __syncthreads(); // the previous item's values have been read
        s_a[ty][tx] = s;
        s_b[ty][tx] = sd;
        __syncthreads();
        if (ty == 0) {
            double a = 0, d = 0;
            for (int i = 0; i < SP_T; i++) {
                a += s_a[i][tx];
                d += s_b[i][tx];
            }
            s_mean[tx] = a / T;
            s_dmean[tx] = n_frames > 1 ? d / (T - 1) : 0.0;
        }
        __syncthreads();
        const double mean = s_mean[tx], dmean = s_dmean[tx];
        double v = 0, vd = 0;
        if (on)
            for (size_t t = ty; t < n_frames; t += SP_T) {
                const double e = x[t * n_feat + f] - mean;
                v += e * e;
                if (t > 0) {
                    const double d = (double)x[t * n_feat + f] - x[(t - 1) * n_feat + f] - dmean;
                    vd += d * d;
                }
            }
        __syncthreads(); // everyone has read s_a / s_b of the first pass
        s_a[ty][tx] = v;
        s_b[ty][tx] = vd;
        __syncthreads();
        if (ty == 0 && on) {
            double a = 0, d = 0;
            for (int i = 0; i < SP_T; i++) {
                a += s_a[i][tx];
                d += s_b[i][tx];
            }
            float *o = out + b * 4 * n_feat;
            o[f] = (float)mean;
            o[n_feat + f] = (float)sqrt(a / T);
            o[2 * n_feat + f] = (float)dmean;
            o[3 * n_feat + f] = n_frames > 1 ? (float)sqrt(d / (T - 1)) : 0.0f;
        }
    }
}

static int stats_pool_launch(sl_stream_t s, size_t batch, size_t n_frames, size_t n_feat, const float *in, float *out)
{
    const dim3 grid(sl_blocks_for(n_feat, SP_F, 1u << 30), sl_blocks_for(batch, 1, SL_GRID_YZ_MAX));
    return SL_LAUNCH(stats_pool_kernel, grid, dim3(SP_F, SP_T), 0, s, batch, n_frames, n_feat, in, out);
}

extern "C" int SL_FN(stats_pool)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_feat, const float *in,
                                 float *out)
{
    return stats_pool_launch(SL_FN(stream)(ctx), batch, n_frames, n_feat, in, out);
}
