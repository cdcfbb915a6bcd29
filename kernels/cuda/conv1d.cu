// Op conv1d: y[b][o][t][n] = act(bias[o] + sum_{c in o's group, u} w[o][c'][u] *
// x[b][c][t*stride + u*dilation - pad_l][n]) along len of [batch][c][len][inner],
// zeros outside the signal. A direct convolution written by hand: one thread
// per output element (grid-stride over the flattened [batch][c_out][len_out]
// [inner], so neighbouring threads read neighbouring columns n), the sum in
// float over the group's channels, then the taps (the CPU's im2col row order);
// the weights of an output channel are read by all its threads from the cache. With glu, each
// thread sums both channels of its output's pair and multiplies them as the glu op does.
#include "cu_ops.h"

// bias[o] + the sum for output channel o at (b, t, n).
static __device__ float conv1d_sum(const sl_conv1d_args &a, size_t b, size_t o, size_t t, size_t n)
{
    const size_t inner = a.inner, Cg = (size_t)(a.c_in / a.groups), Og = (size_t)(a.c_out / a.groups);
    const size_t k = (size_t)a.k, g = o / Og;
    const float *x = a.x + (b * (size_t)a.c_in + g * Cg) * a.len * inner + n;
    const float *w = a.wt + o * Cg * k;
    const long p0 = (long)(t * (size_t)a.stride) - (long)a.pad_l;
    float acc = 0.0f;
    for (size_t c = 0; c < Cg; c++) {
        const float *xc = x + c * a.len * inner;
        for (size_t u = 0; u < k; u++) {
            const long p = p0 + (long)(u * (size_t)a.dilation);
            if (p >= 0 && (size_t)p < a.len)
                acc += w[c * k + u] * xc[(size_t)p * inner];
        }
    }
    if (a.bias)
        acc += a.bias[o];
    return acc;
}

// With a.glu, channels o < c_out / 2 of y: z[o] * sigmoid(z[o + c_out / 2]) (as the glu op).
static __global__ void conv1d_kernel(sl_conv1d_args a, size_t len_out)
{
    const size_t inner = a.inner, co = a.glu ? (size_t)a.c_out / 2 : (size_t)a.c_out;
    const size_t total = a.batch * co * len_out * inner;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t n = e % inner, t = (e / inner) % len_out, o = (e / inner / len_out) % co;
        const size_t b = e / inner / len_out / co;
        const float z = conv1d_sum(a, b, o, t, n);
        if (a.glu) {
            const float g = 1.0f / (1.0f + expf(-conv1d_sum(a, b, o + co, t, n)));
            a.y[e] = z * g;
        } else
            a.y[e] = sl_cu_act(a.act, z);
    }
}

static int conv1d_launch(sl_stream_t s, const sl_conv1d_args *a)
{
    const size_t lo = sl_conv1d_len_out(a);
    return SL_LAUNCH(conv1d_kernel, dim3(sl_blocks_for(a->batch * (size_t)a->c_out * lo * a->inner, SL_BLOCK, 1u << 20)),
                     dim3(SL_BLOCK), 0, s, *a, lo);
}

extern "C" int SL_FN(conv1d)(sl_op_ctx *ctx, const sl_conv1d_args *a) { return conv1d_launch(SL_FN(stream)(ctx), a); }
