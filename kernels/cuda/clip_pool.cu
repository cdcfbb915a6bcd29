// Op clip_pool: out[p] = max_t m[t] + mean_t m[t], m[t] = mean_f in[p][t][f] (the
// PANNs clip head). One block per plane (grid-stride over planes): each thread
// averages its frames t = tid, tid + 256, ... over f in double (the CPU's order,
// so m[t] is bit-equal), keeps a max and a double sum; then a fixed shared-memory
// tree combines them (deterministic, no atomics). NaN in any m[t] gives NaN.
#include "cu_ops.h"

#define CP_B 256

static __global__ void __launch_bounds__(CP_B)
    clip_pool_kernel(size_t planes, size_t T, size_t F, const float *__restrict__ in, float *__restrict__ out)
{
    SL_SHARED(double, s_sum, [CP_B]);
    SL_SHARED(float, s_max, [CP_B]);
    SL_SHARED(int, s_nan, [CP_B]);
    const int tid = (int)threadIdx.x;
    for (size_t p = blockIdx.x; p < planes; p += gridDim.x) {
        const float *x = in + p * T * F;
        double sum = 0.0;
        float mx = -INFINITY;
        int nan = 0;
        for (size_t t = (size_t)tid; t < T; t += CP_B) {
            double s = 0.0;
            for (size_t f = 0; f < F; f++)
                s += x[t * F + f];
            const float m = (float)(s / (double)F);
            nan |= m != m;
            mx = m > mx ? m : mx;
            sum += m;
        }
        __syncthreads(); // the previous plane's results have been read
        s_sum[tid] = sum;
        s_max[tid] = mx;
        s_nan[tid] = nan;
        __syncthreads();
        for (int half = CP_B / 2; half > 0; half /= 2) {
            if (tid < half) {
                s_sum[tid] += s_sum[tid + half];
                s_max[tid] = s_max[tid + half] > s_max[tid] ? s_max[tid + half] : s_max[tid];
                s_nan[tid] |= s_nan[tid + half];
            }
            __syncthreads();
        }
        if (tid == 0)
            out[p] = s_nan[0] ? NAN : (float)((double)s_max[0] + s_sum[0] / (double)T);
    }
}

extern "C" int SL_FN(clip_pool)(sl_op_ctx *ctx, size_t planes, size_t T, size_t F, const float *in, float *out)
{
    return SL_LAUNCH(clip_pool_kernel, dim3(sl_blocks_for(planes, 1, 1u << 20)), dim3(CP_B), 0, SL_FN(stream)(ctx),
                     planes, T, F, in, out);
}
