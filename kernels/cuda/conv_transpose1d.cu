// Op conv_transpose1d: y[b][o][t][n] = act(bias[o] + sum_{c, i, u: i*stride + u - crop
// == t} x[b][c][i][n] * w[c][o][u]) along len of [batch][c][len][inner]. A direct
// gather written by hand (no atomics, deterministic): one thread per output
// element (grid-stride over the flattened [batch][c_out][len_out][inner]); for
// each tap u with (t + crop - u) a multiple of stride inside the input, the sum
// over the input channels in float.
#include "cu_ops.h"

static __global__ void convt1d_kernel(sl_convt1d_args a)
{
    const size_t inner = a.inner, lo = a.len_out, total = a.batch * (size_t)a.c_out * lo * inner;
    const size_t k = (size_t)a.k, S = (size_t)a.stride, co = (size_t)a.c_out;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t n = e % inner, t = (e / inner) % lo, o = (e / inner / lo) % co, b = e / inner / lo / co;
        const size_t tc = t + (size_t)a.crop;
        const float *x = a.x + b * (size_t)a.c_in * a.len * inner + n;
        float acc = 0.0f;
        for (size_t c = 0; c < (size_t)a.c_in; c++) {
            const float *xc = x + c * a.len * inner, *w = a.wt + (c * co + o) * k;
            for (size_t u = tc % S; u < k && u <= tc; u += S) {
                const size_t i = (tc - u) / S;
                if (i < a.len)
                    acc += xc[i * inner] * w[u];
            }
        }
        if (a.bias)
            acc += a.bias[o];
        a.y[e] = sl_cu_act(a.act, acc);
    }
}

static int convt1d_launch(sl_stream_t s, const sl_convt1d_args *a)
{
    return SL_LAUNCH(convt1d_kernel,
                     dim3(sl_blocks_for(a->batch * (size_t)a->c_out * a->len_out * a->inner, SL_BLOCK, 1u << 20)),
                     dim3(SL_BLOCK), 0, s, *a);
}

extern "C" int SL_FN(conv_transpose1d)(sl_op_ctx *ctx, const sl_convt1d_args *a)
{
    return convt1d_launch(SL_FN(stream)(ctx), a);
}
