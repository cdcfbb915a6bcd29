// Op mask_scatter: out[(b*n_masks + n)*n_ch + c][t][f] = spec[b*n_ch + c][t][f]
// times the mean of the complex masks of the features listed for bin
// f*n_ch + c (inv_off / inv_idx, ascending, summed in that order as the CPU).
// One thread per output bin (grid-stride), no atomics.
#include "cu_ops.h"

static __global__ void mask_scatter_kernel(sl_band_geom g, size_t n_masks, const int32_t *inv_off,
                                           const int32_t *inv_idx, const float *spec, const float *mask, float *out)
{
    const size_t total = g.batch * n_masks * g.n_ch * g.T * g.F;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t f = e % g.F, r1 = e / g.F, t = r1 % g.T, r2 = r1 / g.T, c = r2 % g.n_ch, r3 = r2 / g.n_ch;
        const size_t n = r3 % n_masks, b = r3 / n_masks;
        const float *m = mask + ((b * n_masks + n) * g.T + t) * g.n_feat * 2;
        const size_t bin = f * g.n_ch + c;
        const int32_t lo = inv_off[bin], hi = inv_off[bin + 1];
        float mr = 0.0f, mi = 0.0f;
        for (int32_t k = lo; k < hi; k++) {
            mr += m[2 * (size_t)inv_idx[k]];
            mi += m[2 * (size_t)inv_idx[k] + 1];
        }
        if (hi - lo > 1) {
            mr = mr / (float)(hi - lo);
            mi = mi / (float)(hi - lo);
        }
        const float *z = spec + (((b * g.n_ch + c) * g.T + t) * g.F + f) * 2;
        const float zr = z[0], zi = z[1];
        out[2 * e] = zr * mr - zi * mi;
        out[2 * e + 1] = zr * mi + zi * mr;
    }
}

static int mask_scatter_launch(sl_stream_t s, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                               const int32_t *inv_idx, const float *spec, const float *mask, float *out)
{
    const size_t total = g->batch * n_masks * g->n_ch * g->T * g->F;
    return SL_LAUNCH(mask_scatter_kernel, dim3(sl_blocks_for(total, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, *g,
                     n_masks, inv_off, inv_idx, spec, mask, out);
}

extern "C" int SL_FN(mask_scatter)(sl_op_ctx *ctx, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                                   const int32_t *inv_idx, const float *spec, const float *mask, float *out)
{
    return mask_scatter_launch(SL_FN(stream)(ctx), g, n_masks, inv_off, inv_idx, spec, mask, out);
}
