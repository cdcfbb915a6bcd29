// Op hpss_masks: librosa.util.softmask pair with margins, float32 arithmetic
// exactly as the CPU reference (kernels/cpu/cpu_spec.c). The masks may alias
// harm / perc: each thread reads both inputs of its element before writing.
#include "cu_ops.h"

static __device__ __forceinline__ float masks_powp(float x, float p)
{
    return p == 2.0f ? x * x : p == 1.0f ? x : powf(x, p);
}

static __device__ __forceinline__ float masks_softmask(float x, float xref, float p, float zero_value)
{
    const float z = x > xref ? x : xref;
    if (!(z >= 1.17549435e-38f)) // FLT_MIN
        return zero_value;
    const float m = masks_powp(x / z, p), r = masks_powp(xref / z, p);
    return m / (m + r);
}

static __global__ void hpss_masks_kernel(size_t n, const float *harm, const float *perc, float power,
                                         float margin_h, float margin_p, float zero_value, float *mask_h,
                                         float *mask_p)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float h = harm[i], p = perc[i];
        const float mh = masks_softmask(h, __fmul_rn(p, margin_h), power, zero_value);
        const float mp = masks_softmask(p, __fmul_rn(h, margin_p), power, zero_value);
        mask_h[i] = mh;
        mask_p[i] = mp;
    }
}

static int hpss_masks_launch(sl_stream_t s, size_t n, const float *harm, const float *perc, float power,
                             float margin_h, float margin_p, float *mask_h, float *mask_p)
{
    const float zero_value = (margin_h == 1.0f && margin_p == 1.0f) ? 0.5f : 0.0f;
    return SL_LAUNCH(hpss_masks_kernel, dim3(sl_blocks_for(n, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, n, harm,
                     perc, power, margin_h, margin_p, zero_value, mask_h, mask_p);
}

extern "C" int SL_FN(hpss_masks)(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                                 float margin_h, float margin_p, float *mask_h, float *mask_p)
{
    return hpss_masks_launch(SL_FN(stream)(ctx), n, harm, perc, power, margin_h, margin_p, mask_h, mask_p);
}
