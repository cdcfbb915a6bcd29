// Op overlap_add (iSTFT tail, torch.istft semantics) written as a gather: each
// output sample sums, in frame order m = lo..hi, the frames that cover it and
// the window^2 envelope at that position, then divides. No atomics, no shared
// scratch, every sample written once: deterministic, and the summation order is
// the CPU reference's (frames added in increasing m), so results agree to the
// rounding of the product.
//
// NOLA. The envelope minimum is a property of (n_fft, hop, window, n_frames,
// length, centre); the window lives in device memory, and an op may not wait
// for the device, so the check runs here, on the device, as a by-product of the
// gather: a kept sample whose envelope is < 1e-11 records its index with
// atomicMin (order independent) in the context's status words. sl_op_sync and
// sl_op_download report it as SL_ENUMERIC ("... fails NOLA") and clear it. The
// output of a failing call is not meaningful (divided by ~0), as with torch.
#include <limits.h>

#include "cu_ops.h"

static __global__ void overlap_add_kernel(const float *__restrict__ frames, const float *__restrict__ window,
                                          size_t batch, size_t n_frames, int n_fft, int hop, size_t start,
                                          size_t length, int *__restrict__ status, float *__restrict__ out)
{
    const size_t n = (size_t)n_fft, H = (size_t)hop;
    const size_t full = n + H * (n_frames - 1);
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= length)
        return;
    const size_t p = start + i;
    if (p >= full) { // past the last frame: torch pads with zeros
        for (size_t b = blockIdx.y; b < batch; b += gridDim.y)
            out[b * length + i] = 0.0f;
        return;
    }
    // Frames m with m*hop <= p < m*hop + n_fft.
    const size_t m_hi = p / H < n_frames - 1 ? p / H : n_frames - 1;
    const size_t m_lo = p >= n ? (p - n) / H + 1 : 0;
    float env = 0.0f;
    for (size_t m = m_lo; m <= m_hi; m++) {
        const float w = window[p - m * H];
        env = __fadd_rn(env, __fmul_rn(w, w));
    }
    if (!(env >= 1e-11f) && blockIdx.y == 0) {
        atomicMin(&status[0], i < (size_t)INT_MAX ? (int)i : INT_MAX);
        status[1] = n_fft; // same value from every failing thread of this call
        status[2] = hop;
    }
    for (size_t b = blockIdx.y; b < batch; b += gridDim.y) {
        const float *fb = frames + b * n_frames * n;
        float y = 0.0f;
        for (size_t m = m_lo; m <= m_hi; m++) {
            const size_t k = p - m * H;
            y = __fadd_rn(y, __fmul_rn(fb[m * n + k], window[k]));
        }
        out[b * length + i] = y / env;
    }
}

static int overlap_add_launch(sl_stream_t s, int *status, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                              const float *frames, const float *window, size_t length, float *out)
{
    const dim3 grid(sl_blocks_for(length, SL_BLOCK, INT_MAX), sl_blocks_for(batch, 1, SL_GRID_YZ_MAX));
    const size_t start = c->center ? (size_t)(c->n_fft / 2) : 0;
    return SL_LAUNCH(overlap_add_kernel, grid, dim3(SL_BLOCK), 0, s, frames, window, batch, n_frames, c->n_fft,
                     c->hop, start, length, status, out);
}

extern "C" int SL_FN(overlap_add)(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                                  const float *frames, const float *window, size_t length, float *out)
{
    return overlap_add_launch(SL_FN(stream)(ctx), SL_FN(status)(ctx), c, batch, n_frames, frames, window, length,
                              out);
}
