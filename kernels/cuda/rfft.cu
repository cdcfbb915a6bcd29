// Op rfft: batched real-to-complex FFT, out = scale * DFT(in), through cuFFT
// (R2C, out of place; the input is not modified). The frames run as
// power-of-two batches (sl_fft_chunk) on cached plans; scale != 1 is applied by
// a small kernel afterwards. In the emulated build the transform is the CPU
// reference (library calls are checked only on a GPU) and the scale kernel is
// emulated.
#include "cu_ops.h"
#if SL_CUDA_API
#include "cu_fft.h"
#else
extern "C" {
#include "../cpu/cpu_ops.h"
}
#endif

static __global__ void rfft_scale_kernel(size_t n, float scale, float *data)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        data[i] *= scale;
}

static int rfft_scale_launch(sl_stream_t s, size_t n, float scale, float *data)
{
    return SL_LAUNCH(rfft_scale_kernel, dim3(sl_blocks_for(n, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, n, scale,
                     data);
}

extern "C" int SL_FN(rfft)(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale)
{
    const size_t n = (size_t)n_fft, nb2 = 2 * (n / 2 + 1);
#if SL_CUDA_API
    for (size_t done = 0; done < count;) {
        const size_t chunk = sl_fft_chunk(count - done, n_fft);
        cufftHandle plan;
        int rc = sl_cuda_fft_plan(ctx, n_fft, (int)chunk, 0, &plan);
        if (rc < 0)
            return rc;
        cufftResult r = sl_cufft.ExecR2C(plan, const_cast<cufftReal *>(in + done * n),
                                     reinterpret_cast<cufftComplex *>(out + done * nb2));
        if (r != CUFFT_SUCCESS)
            return sl_cufft_err(r, "cufftExecR2C");
        done += chunk;
    }
#else
    int rc = sl_cpu_rfft(ctx, n_fft, count, in, out, 1.0f);
    if (rc < 0)
        return rc;
#endif
    if (scale == 1.0f)
        return 0;
    return rfft_scale_launch(SL_FN(stream)(ctx), count * nb2, scale, out);
}
