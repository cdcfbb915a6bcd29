// Op frame: centre padding (reflect / constant), framing and windowing.
// frames[b][j][k] = padded(x[b])[(first + j)*hop + k] * window[k].
// One thread per output sample, grid.x along k (coalesced reads and writes),
// grid.y over the rows (b, j), looping when there are more than 65535 rows.
#include "cu_ops.h"

// Index into a signal of len samples for padded position p, or -1 for a zero;
// reflect excludes the edge sample, and sl_stft_check guarantees one reflection suffices.
static __device__ __forceinline__ long long frame_src(long long p, long long len, int constant_pad)
{
    if (p >= 0 && p < len)
        return p;
    if (constant_pad)
        return -1;
    return p < 0 ? -p : 2 * (len - 1) - p;
}

static __global__ void frame_kernel(const float *__restrict__ x, size_t len, int n_fft, int hop,
                                    long long pad, int constant_pad, size_t first, size_t count,
                                    size_t rows, const float *__restrict__ window,
                                    float *__restrict__ frames)
{
    const int k = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (k >= n_fft)
        return;
    const float w = window[k];
    for (size_t r = blockIdx.y; r < rows; r += gridDim.y) {
        const size_t b = r / count, j = r % count;
        const long long p = (long long)((first + j) * (size_t)hop) - pad + k;
        const long long i = frame_src(p, (long long)len, constant_pad);
        frames[r * (size_t)n_fft + k] = i < 0 ? 0.0f : x[b * len + (size_t)i] * w;
    }
}

static int frame_launch(sl_stream_t s, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                        size_t first, size_t count, const float *window, float *frames)
{
    const size_t rows = batch * count;
    const dim3 grid(sl_blocks_for((size_t)c->n_fft, SL_BLOCK, 1u << 30),
                    sl_blocks_for(rows, 1, SL_GRID_YZ_MAX));
    const long long pad = c->center ? c->n_fft / 2 : 0;
    return SL_LAUNCH(frame_kernel, grid, dim3(SL_BLOCK), 0, s, x, len, c->n_fft, c->hop, pad,
                     c->pad == SL_PAD_CONSTANT, first, count, rows, window, frames);
}

extern "C" int SL_FN(frame)(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch,
                            size_t len, size_t first, size_t count, const float *window, float *frames)
{
    return frame_launch(SL_FN(stream)(ctx), c, x, batch, len, first, count, window, frames);
}
