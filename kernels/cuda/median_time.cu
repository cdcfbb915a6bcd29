// Op median_time: median over `kernel` consecutive frames for each bin of
// in[batch][n_frames][n_bins] (hpss harmonic part), scipy 'reflect' borders.
//
// A block is 32 bins x 8 thread rows and produces 32 frames x 32 bins. It
// stages the keys of its frames plus the kernel's halo (reflected rows) in
// shared memory, 32 bins wide so a warp reads 32 consecutive words (no bank
// conflicts), then each thread selects the median of 4 outputs. Kernels whose
// tile would not fit in 48 KiB (kernel > 353 frames) read global memory
// directly instead (same selection, the halo through L1/L2).
#include "cu_ops.h"
#include "median_select.cuh"

#define MT_BX 32                 // bins per block (one warp wide)
#define MT_BY 8                  // thread rows
#define MT_TT (MT_BY * 4)        // frames per block
#define MT_SMEM_MAX (48 * 1024)

static size_t median_time_tile_bytes(int kernel) { return (size_t)(MT_TT + kernel - 1) * MT_BX * sizeof(unsigned); }

template <bool TILE>
static __global__ void __launch_bounds__(MT_BX *MT_BY)
    median_time_kernel(const float *__restrict__ in, float *__restrict__ out, size_t batch, long long T,
                       long long F, int k)
{
    SL_DYN_SHARED(unsigned, tile);
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
    const int h = k / 2, rows = MT_TT + k - 1;
    const long long f = (long long)blockIdx.x * MT_BX + tx;
    for (size_t b = blockIdx.z; b < batch; b += gridDim.z) {
        const float *src = in + b * (size_t)(T * F);
        float *dst = out + b * (size_t)(T * F);
        for (long long t0 = (long long)blockIdx.y * MT_TT; t0 < T; t0 += (long long)gridDim.y * MT_TT) {
            if (TILE) {
                __syncthreads(); // the previous tile's readers are done
                for (int r = ty; r < rows; r += MT_BY) {
                    const long long t = med_reflect(t0 - h + r, T);
                    tile[r * MT_BX + tx] = f < F ? med_key(src[t * F + f]) : 0u;
                }
                __syncthreads();
            }
            for (int q = 0; q < MT_TT; q += MT_BY) {
                const long long t = t0 + ty + q;
                if (t >= T || f >= F)
                    continue;
                unsigned key;
                if (TILE) {
                    const unsigned *col = tile + (t - t0) * MT_BX + tx;
                    key = med_select(k, h, [&](int j) { return col[j * MT_BX]; });
                } else {
                    key = med_select(k, h, [&](int j) { return med_key(src[med_reflect(t - h + j, T) * F + f]); });
                }
                dst[t * F + f] = med_unkey(key);
            }
        }
    }
}

static int median_time_launch(sl_stream_t s, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                              const float *in, float *out)
{
    const dim3 block(MT_BX, MT_BY);
    const dim3 grid(sl_blocks_for(n_bins, MT_BX, 1u << 30), sl_blocks_for(n_frames, MT_TT, SL_GRID_YZ_MAX),
                    sl_blocks_for(batch, 1, SL_GRID_YZ_MAX));
    const size_t smem = median_time_tile_bytes(kernel);
    if (smem <= MT_SMEM_MAX)
        return SL_LAUNCH(median_time_kernel<true>, grid, block, smem, s, in, out, batch, (long long)n_frames,
                         (long long)n_bins, kernel);
    return SL_LAUNCH(median_time_kernel<false>, grid, block, 0, s, in, out, batch, (long long)n_frames,
                     (long long)n_bins, kernel);
}

extern "C" int SL_FN(median_time)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                                  const float *in, float *out)
{
    return median_time_launch(SL_FN(stream)(ctx), batch, n_frames, n_bins, kernel, in, out);
}
