// Op spec_gather: out[b][t][j] = spec[b*n_ch + idx[j] % n_ch][t][idx[j] / n_ch]
// (complex). One thread per output value (grid-stride); consecutive threads
// write consecutive features of a frame.
#include "cu_ops.h"

static __global__ void spec_gather_kernel(sl_band_geom g, const float *spec, float *out)
{
    const size_t total = g.batch * g.T * g.n_feat;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t j = e % g.n_feat, bt = e / g.n_feat, t = bt % g.T, b = bt / g.T;
        const size_t c = (size_t)g.idx[j] % g.n_ch, f = (size_t)g.idx[j] / g.n_ch;
        const float *z = spec + (((b * g.n_ch + c) * g.T + t) * g.F + f) * 2;
        out[2 * e] = z[0];
        out[2 * e + 1] = z[1];
    }
}

static int spec_gather_launch(sl_stream_t s, const sl_band_geom *g, const float *spec, float *out)
{
    return SL_LAUNCH(spec_gather_kernel, dim3(sl_blocks_for(g->batch * g->T * g->n_feat, SL_BLOCK, 1u << 20)),
                     dim3(SL_BLOCK), 0, s, *g, spec, out);
}

extern "C" int SL_FN(spec_gather)(sl_op_ctx *ctx, const sl_band_geom *g, const float *spec, float *out)
{
    return spec_gather_launch(SL_FN(stream)(ctx), g, spec, out);
}
