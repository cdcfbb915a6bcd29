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

#include "cu_dl.h"

// libcufft's entry points (cu_dl.h), valid once sl_cuda_cufft_load returned 0.
#define SL_CUFFT_API(X, t, p)                                                               \
    X(t, p, Create) X(t, p, Destroy) X(t, p, MakePlanMany) X(t, p, SetAutoAllocation)             \
    X(t, p, SetStream) X(t, p, SetWorkArea) X(t, p, ExecR2C) X(t, p, ExecC2R)
struct sl_cufft_api {
    SL_CU_TABLE(SL_CUFFT_API, cufft)
};
extern sl_cufft_api sl_cufft;

extern "C" {
// Loads libcufft once per process (every context does this at open, so a
// missing library fails the open): 0, or SL_EUNSUPPORTED naming the library.
int sl_cuda_cufft_load(void);
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
