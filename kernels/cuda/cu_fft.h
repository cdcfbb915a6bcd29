// cuFFT plumbing shared by rfft.cu and irfft.cu (real CUDA build only; the
// emulated build runs the CPU reference transform instead). Plans are cached
// per context by (n_fft, batch, direction), made with auto-allocation off and
// all pointed at ONE work area per context, which grows (stream-ordered free and
// allocation, then cufftSetWorkArea on every cached plan) only when a new plan
// needs more than any before it. Each plan is bound to the context's stream.
#ifndef SL_CU_FFT_H
#define SL_CU_FFT_H

#include "sl_cuda.h"
#if SL_CUDA_API
#include <cufft.h>

extern "C" {
// A ready plan for batch transforms of n_fft points (inverse: C2R, else R2C).
// 0, SL_ENOMEM or SL_EDEVICE naming the cuFFT call.
int sl_cuda_fft_plan(sl_op_ctx *ctx, int n_fft, int batch, int inverse, cufftHandle *plan);
// Destroys every cached plan and the work area (context teardown, after a sync).
void sl_cuda_fft_release(sl_op_ctx *ctx);
// A stemline error for a cuFFT status, naming the call.
int sl_cufft_err(cufftResult r, const char *call);
}
#endif

#endif
