// Op median_freq: median over `kernel` consecutive bins within each frame of
// in[batch][n_frames][n_bins] (hpss percussive part), scipy 'reflect' borders.
//
// A block of up to 256 threads covers that many bins of one frame row; it
// stages the keys of its bins plus the reflected halo (k-1 more) in shared
// memory (at most (256 + 4094) * 4 bytes = 17 KiB, so every kernel the op layer
// accepts fits), and thread i selects the median of tile[i .. i+k). Rows beyond
// grid.y are handled by looping.
#include "cu_ops.h"
#include "median_select.cuh"

#define MF_MAX_THREADS 256

static __global__ void __launch_bounds__(MF_MAX_THREADS)
    median_freq_kernel(const float *__restrict__ in, float *__restrict__ out, size_t rows, long long F, int k)
{
    SL_DYN_SHARED(unsigned, tile);
    const int width = (int)blockDim.x, tx = (int)threadIdx.x;
    const int h = k / 2, n_load = width + k - 1;
    const long long f0 = (long long)blockIdx.x * width;
    for (size_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const float *src = in + r * (size_t)F;
        __syncthreads(); // the previous row's readers are done
        for (int i = tx; i < n_load; i += width)
            tile[i] = med_key(src[med_reflect(f0 - h + i, F)]);
        __syncthreads();
        const long long f = f0 + tx;
        if (f < F) {
            const unsigned *w = tile + tx;
            out[r * (size_t)F + f] = med_unkey(med_select(k, h, [&](int j) { return w[j]; }));
        }
    }
}

static int median_freq_launch(sl_stream_t s, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                              const float *in, float *out)
{
    // Narrow spectra get a narrower block (a multiple of the warp), so short rows waste fewer threads.
    unsigned width = (unsigned)((n_bins + 31) / 32 * 32);
    if (width > MF_MAX_THREADS)
        width = MF_MAX_THREADS;
    const size_t rows = batch * n_frames;
    const dim3 grid(sl_blocks_for(n_bins, width, 1u << 30), sl_blocks_for(rows, 1, SL_GRID_YZ_MAX));
    const size_t smem = (width + (size_t)kernel - 1) * sizeof(unsigned);
    return SL_LAUNCH(median_freq_kernel, grid, dim3(width), smem, s, in, out, rows, (long long)n_bins, kernel);
}

extern "C" int SL_FN(median_freq)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                                  const float *in, float *out)
{
    return median_freq_launch(SL_FN(stream)(ctx), batch, n_frames, n_bins, kernel, in, out);
}
