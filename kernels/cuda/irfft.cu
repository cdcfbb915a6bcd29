// Op irfft: batched complex-to-real inverse FFT, out = scale * IDFT(in),
// through cuFFT C2R. C2R overwrites its input, and the op must preserve it and
// ignore the imaginary parts of the DC and (even n_fft) Nyquist bins as irfft
// does, so a small kernel first copies each chunk of spectra into the context
// scratch with those parts zeroed and the scale folded in (the transform is
// linear); cuFFT then transforms the copy. Chunks are power-of-two batches on
// cached plans. In the emulated build the copy kernel is emulated and the
// transform is the CPU reference.
#include "cu_ops.h"
#if SL_CUDA_API
#include "cu_fft.h"
#else
extern "C" {
#include "../cpu/cpu_ops.h"
}
#endif

static __global__ void irfft_prep_kernel(size_t total, size_t nb, int even, float scale, const float *__restrict__ in,
                                         float *__restrict__ dst)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t k = (i / 2) % nb; // bin of this float
        const bool drop = (i & 1) && (k == 0 || (even && k == nb - 1));
        dst[i] = drop ? 0.0f : in[i] * scale;
    }
}

static int irfft_prep_launch(sl_stream_t s, size_t total, size_t nb, int even, float scale, const float *in,
                             float *dst)
{
    return SL_LAUNCH(irfft_prep_kernel, dim3(sl_blocks_for(total, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s, total,
                     nb, even, scale, in, dst);
}

extern "C" size_t SL_FN(irfft_workspace)(int n_fft, size_t count)
{
    const size_t chunk = count < sl_fft_max_batch(n_fft) ? count : sl_fft_max_batch(n_fft);
    return chunk * 2 * ((size_t)n_fft / 2 + 1) * sizeof(float);
}

extern "C" int SL_FN(irfft)(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale)
{
    const size_t n = (size_t)n_fft, nb = n / 2 + 1;
    void *ws = NULL;
    int rc = SL_FN(scratch)(ctx, SL_FN(irfft_workspace)(n_fft, count), &ws);
    if (rc < 0)
        return rc;
    float *tmp = static_cast<float *>(ws);
    for (size_t done = 0; done < count;) {
        const size_t chunk = sl_fft_chunk(count - done, n_fft);
        rc = irfft_prep_launch(SL_FN(stream)(ctx), chunk * 2 * nb, nb, n_fft % 2 == 0, scale, in + done * 2 * nb, tmp);
        if (rc < 0)
            return rc;
#if SL_CUDA_API
        cufftHandle plan;
        rc = sl_cuda_fft_plan(ctx, n_fft, (int)chunk, 1, &plan);
        if (rc < 0)
            return rc;
        cufftResult r = sl_cufft.ExecC2R(plan, reinterpret_cast<cufftComplex *>(tmp), out + done * n);
        if (r != CUFFT_SUCCESS)
            return sl_cufft_err(r, "cufftExecC2R");
#else
        rc = sl_cpu_irfft(ctx, n_fft, chunk, tmp, out + done * n, 1.0f);
        if (rc < 0)
            return rc;
#endif
        done += chunk;
    }
    return 0;
}
