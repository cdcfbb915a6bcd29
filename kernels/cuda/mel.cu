// Op mel: mel[t][m] = sum_k fb[m][k] * spec[t][k] (count x n_bins times
// n_bins x n_mels), a shared-memory tiled GEMM. Hand-written rather than
// cuBLAS so the emulated build checks it in CI; the filterbank is a band of
// triangles, so most products are exact zeros and float accumulation in k
// order loses only a few ulps against the CPU's double sums.
//
// Block 16 x 16: threadIdx.x -> mel band, threadIdx.y -> frame. Each step
// stages a 16 x 16 slice of the spectra and of the filterbank (rows padded to
// 17 words, so the transposed reads hit 16 different banks).
#include "cu_ops.h"

#define MEL_T 16

static __global__ void __launch_bounds__(MEL_T *MEL_T)
    mel_kernel(size_t count, int n_bins, int n_mels, const float *__restrict__ fb,
               const float *__restrict__ spec, float *__restrict__ mel)
{
    SL_SHARED(float, s_spec, [MEL_T][MEL_T + 1]);
    SL_SHARED(float, s_fb, [MEL_T][MEL_T + 1]);
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    // grid-stride over mel tiles (y) and frame tiles (x): the bounds depend on
    // the block only, so every thread of a block meets the same barriers
    for (int m0 = (int)blockIdx.y * MEL_T; m0 < n_mels; m0 += (int)gridDim.y * MEL_T) {
        const int m = m0 + tx;
        const int m_row = m0 + ty; // filterbank row this thread stages
        for (size_t t0 = (size_t)blockIdx.x * MEL_T; t0 < count; t0 += (size_t)gridDim.x * MEL_T) {
            const size_t t = t0 + ty;
            float acc = 0.0f;
            for (int k0 = 0; k0 < n_bins; k0 += MEL_T) {
                const int k = k0 + tx;
                s_spec[ty][tx] = (t < count && k < n_bins) ? spec[t * (size_t)n_bins + k] : 0.0f;
                s_fb[ty][tx] = (m_row < n_mels && k < n_bins) ? fb[(size_t)m_row * n_bins + k] : 0.0f;
                __syncthreads();
                for (int kk = 0; kk < MEL_T; kk++)
                    acc += s_spec[ty][kk] * s_fb[tx][kk];
                __syncthreads();
            }
            if (t < count && m < n_mels)
                mel[t * (size_t)n_mels + m] = acc;
        }
    }
}

static int mel_launch(sl_stream_t s, size_t count, int n_bins, int n_mels, const float *fb, const float *spec,
                      float *mel)
{
    const dim3 grid(sl_blocks_for(count, MEL_T, 1u << 30), sl_blocks_for((size_t)n_mels, MEL_T, SL_GRID_YZ_MAX));
    return SL_LAUNCH(mel_kernel, grid, dim3(MEL_T, MEL_T), 0, s, count, n_bins, n_mels, fb, spec, mel);
}

extern "C" int SL_FN(mel)(sl_op_ctx *ctx, size_t count, int n_bins, int n_mels, const float *fb, const float *spec,
                          float *mel)
{
    return mel_launch(SL_FN(stream)(ctx), count, n_bins, n_mels, fb, spec, mel);
}
