// cuFFT plan cache and shared work area (see cu_fft.h). Builds with the CUDA
// API only (nvcc, cudamock).
#include "sl_cuda.h"
#if SL_CUDA_API
#include <string.h>

#include "cu_fft.h"
#include "cu_state.h"

sl_cufft_api sl_cufft;
SL_CU_LOADER(sl_cuda_cufft_load, sl_cufft, cufft, SL_CUFFT_API, "libcufft.so." SL_CU_STR(CUFFT_VER_MAJOR),
             "backend cuda needs cuFFT")

extern "C" int sl_cufft_err(cufftResult r, const char *call)
{
    const char *what;
    switch (r) {
    case CUFFT_INVALID_PLAN: what = "invalid plan"; break;
    case CUFFT_ALLOC_FAILED: what = "allocation failed"; break;
    case CUFFT_INVALID_VALUE: what = "invalid value"; break;
    case CUFFT_INTERNAL_ERROR: what = "internal error"; break;
    case CUFFT_EXEC_FAILED: what = "execution failed"; break;
    case CUFFT_SETUP_FAILED: what = "setup failed"; break;
    case CUFFT_INVALID_SIZE: what = "invalid size"; break;
    case CUFFT_NOT_SUPPORTED: what = "not supported"; break;
    default: what = "error"; break;
    }
    if (r == CUFFT_EXEC_FAILED) {
        // Possibly a broken context: a sticky error shows at the next synchronisation.
        int rc = sl_cu_sticky(cudaDeviceSynchronize(), call);
        if (rc)
            return rc;
    }
    return sl_seterr(r == CUFFT_ALLOC_FAILED ? SL_ENOMEM : SL_EDEVICE, "%s: cuFFT %s (cufftResult %d)", call, what,
                     (int)r);
}

#define SL_CUFFT_CHECK(call)                                                                \
    do {                                                                                    \
        cufftResult sl_r_ = (call);                                                         \
        if (sl_r_ != CUFFT_SUCCESS)                                                         \
            return sl_cufft_err(sl_r_, #call);                                              \
    } while (0)

// Grows the shared work area to bytes and re-points every cached plan at it.
// The new area is allocated first: when that fails, the cache is untouched
// (every plan keeps its old, big enough area). The old area is freed in stream
// order, after the transforms queued on it.
static int fft_work_reserve(sl_cu_state *st, size_t bytes)
{
    if (bytes <= st->fft_work_size)
        return 0;
    void *fresh = NULL;
    cudaError_t e = sl_cu_dev_alloc(st, &fresh, bytes);
    if (e != cudaSuccess)
        return sl_cu_err(e, "cuFFT work area: cudaMallocAsync");
    for (int i = 0; i < st->n_plans; i++) {
        cufftResult r = sl_cufft.SetWorkArea(st->plans[i].h, fresh);
        if (r != CUFFT_SUCCESS) {
            for (int j = 0; j < i; j++) // back to the old area
                sl_cufft.SetWorkArea(st->plans[j].h, st->fft_work);
            sl_cu_dev_free(st, fresh);
            return sl_cufft_err(r, "cufftSetWorkArea");
        }
    }
    if (st->fft_work)
        SL_CU_CHECK(sl_cu_dev_free(st, st->fft_work));
    st->fft_work = fresh;
    st->fft_work_size = bytes;
    return 0;
}

static int fft_make(sl_cu_state *st, sl_cu_plan *p, int n_fft, int batch, int inverse)
{
    memset(p, 0, sizeof *p);
    SL_CUFFT_CHECK(sl_cufft.Create(&p->h));
    int n = n_fft;
    cufftResult r = sl_cufft.SetAutoAllocation(p->h, 0);
    if (r == CUFFT_SUCCESS)
        // NULL embeds: the basic layout, idist = n_fft reals / odist = n_fft/2+1 complex (and back).
        r = sl_cufft.MakePlanMany(p->h, 1, &n, NULL, 1, 0, NULL, 1, 0, inverse ? CUFFT_C2R : CUFFT_R2C, batch, &p->work);
    if (r == CUFFT_SUCCESS)
        r = sl_cufft.SetStream(p->h, st->stream);
    if (r != CUFFT_SUCCESS) {
        sl_cufft.Destroy(p->h);
        return sl_cufft_err(r, "cufftMakePlanMany");
    }
    p->n_fft = n_fft;
    p->batch = batch;
    p->inverse = inverse;
    return 0;
}

extern "C" int sl_cuda_fft_plan(sl_op_ctx *ctx, int n_fft, int batch, int inverse, cufftHandle *plan)
{
    sl_cu_state *st = sl_cu_st(ctx);
    st->tick++;
    for (int i = 0; i < st->n_plans; i++) {
        sl_cu_plan *p = &st->plans[i];
        if (p->n_fft == n_fft && p->batch == batch && p->inverse == inverse) {
            p->used = st->tick;
            *plan = p->h;
            return 0;
        }
    }
    int slot = st->n_plans;
    if (slot == SL_CU_MAX_PLANS) {
        // Full (many distinct sizes in one context): evict the least recently
        // used plan. Its queued transforms must finish first: the only host
        // wait outside sync/download, and only on this rare path.
        slot = 0;
        for (int i = 1; i < st->n_plans; i++)
            if (st->plans[i].used < st->plans[slot].used)
                slot = i;
        SL_CU_CHECK(cudaStreamSynchronize(st->stream));
        st->mem_epoch++; // (a captured graph may use the plan)
        SL_CUFFT_CHECK(sl_cufft.Destroy(st->plans[slot].h));
        st->plans[slot] = st->plans[--st->n_plans];
        slot = st->n_plans;
    }
    // Made aside and cached only once the work area it needs exists and it
    // points at it: on any failure the cache holds exactly the plans before.
    sl_cu_plan p;
    int rc = fft_make(st, &p, n_fft, batch, inverse);
    if (rc < 0)
        return rc;
    rc = fft_work_reserve(st, p.work);
    if (rc == 0 && st->fft_work) {
        cufftResult r = sl_cufft.SetWorkArea(p.h, st->fft_work);
        if (r != CUFFT_SUCCESS)
            rc = sl_cufft_err(r, "cufftSetWorkArea");
    }
    if (rc < 0) {
        sl_cufft.Destroy(p.h);
        return rc;
    }
    p.used = st->tick;
    st->plans[slot] = p;
    st->n_plans++;
    *plan = p.h;
    return 0;
}

extern "C" void sl_cuda_fft_release(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    for (int i = 0; i < st->n_plans; i++)
        sl_cufft.Destroy(st->plans[i].h);
    st->n_plans = 0;
    if (st->fft_work)
        sl_cu_dev_free(st, st->fft_work); // the caller syncs the stream next
    st->fft_work = NULL;
    st->fft_work_size = 0;
}
#endif
