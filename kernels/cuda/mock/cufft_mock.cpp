// cudamock: the cuFFT calls of kernels/cuda/fft_plans.cu, rfft.cu and
// irfft.cu, for 1-D R2C / C2R plans (basic or advanced layout), with the work
// area rules of cufftSetAutoAllocation(0) + cufftSetWorkArea. Transforms run in
// stream order through the CPU reference (FFTW); afterwards the work area is
// poisoned, and so is a C2R input (cuFFT may overwrite it).
#include <cufft.h>
#include <math.h>
#include <mutex>
#include <stdint.h>
#include <string.h>

#include <map>
#include <memory>
#include <vector>

#include "mock.h"

extern "C" {
#include "../../cpu/cpu_ops.h"
}

namespace {

struct Plan {
    bool made = false;
    bool auto_alloc = true;
    int n = 0, batch = 0;
    cufftType type = CUFFT_R2C;
    long long istride = 1, idist = 0, ostride = 1, odist = 0;
    size_t work = 0;          // bytes this plan needs
    void *area = nullptr;     // the work area (cufftSetWorkArea, or our own when auto-allocating)
    bool own_area = false;
    cudaStream_t stream = nullptr;
    int device = 0;
    std::shared_ptr<int> pending = std::make_shared<int>(0); // queued executions not yet run
};

std::mutex g_mu;
std::map<cufftHandle, Plan> g_plans;
cufftHandle g_next = 1;

Plan *get(cufftHandle h)
{
    auto it = g_plans.find(h);
    return it == g_plans.end() ? nullptr : &it->second;
}

cufftResult exec(cufftHandle h, const void *idata, void *odata, cufftType want, const char *call)
{
    Plan copy;
    {
        std::lock_guard<std::mutex> g(g_mu);
        Plan *p = get(h);
        if (!p || !p->made)
            return CUFFT_INVALID_PLAN;
        if (p->type != want)
            return CUFFT_INVALID_VALUE;
        copy = *p;
    }
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess || dev != copy.device)
        return CUFFT_INVALID_DEVICE; // a plan runs on the device current when it was made
    if (sl_mock_device_error(dev))
        return CUFFT_EXEC_FAILED; // the device's context is broken
    if (!copy.area && copy.work)
        sl_mock_fatal("%s: plan %d needs a %zu-byte work area and none was set (auto-allocation off, no "
                      "cufftSetWorkArea)",
                      call, h, copy.work);
    if (copy.work)
        sl_mock_check_device(copy.area, copy.work, "cuFFT work area");
    const bool r2c = want == CUFFT_R2C;
    const size_t nb = (size_t)copy.n / 2 + 1;
    const size_t in_elems = (size_t)((copy.batch - 1) * copy.idist + ((long long)(r2c ? copy.n : nb) - 1) * copy.istride + 1);
    const size_t out_elems = (size_t)((copy.batch - 1) * copy.odist + ((long long)(r2c ? nb : copy.n) - 1) * copy.ostride + 1);
    const size_t in_bytes = in_elems * (r2c ? sizeof(float) : 2 * sizeof(float));
    const size_t out_bytes = out_elems * (r2c ? 2 * sizeof(float) : sizeof(float));
    sl_mock_check_device(idata, in_bytes, r2c ? "cufftExecR2C input" : "cufftExecC2R input");
    sl_mock_check_device(odata, out_bytes, r2c ? "cufftExecR2C output" : "cufftExecC2R output");
    const uintptr_t i0 = (uintptr_t)idata, o0 = (uintptr_t)odata;
    if (i0 != o0 && i0 < o0 + out_bytes && o0 < i0 + in_bytes)
        sl_mock_fatal("%s: input and output overlap without being the same buffer (undefined in cuFFT)", call);
    if (i0 == o0)
        sl_mock_fatal("%s: in-place transform (the backend only uses out-of-place ones)", call);
    // (a captured execution is counted only by its replays' waits: see cufftDestroy)
    const bool counted = !sl_mock_stream_capturing(copy.stream);
    if (counted)
        ++*copy.pending;
    float *in = static_cast<float *>(const_cast<void *>(idata)), *out = static_cast<float *>(odata);
    sl_mock_enqueue(copy.stream, [copy, in, out, r2c, nb, counted]() {
        const int n = copy.n;
        std::vector<float> a((size_t)n), b(2 * nb);
        for (int k = 0; k < copy.batch; k++) {
            if (r2c) {
                for (int t = 0; t < n; t++)
                    a[(size_t)t] = in[k * copy.idist + t * copy.istride];
                sl_cpu_rfft(nullptr, n, 1, a.data(), b.data(), 1.0f);
                for (size_t j = 0; j < nb; j++) {
                    out[2 * (k * copy.odist + (long long)j * copy.ostride)] = b[2 * j];
                    out[2 * (k * copy.odist + (long long)j * copy.ostride) + 1] = b[2 * j + 1];
                }
            } else {
                bool hermitian = true;
                for (size_t j = 0; j < nb; j++) {
                    b[2 * j] = in[2 * (k * copy.idist + (long long)j * copy.istride)];
                    b[2 * j + 1] = in[2 * (k * copy.idist + (long long)j * copy.istride) + 1];
                }
                // A real signal's spectrum has real DC (and real Nyquist for even n);
                // cuFFT's result for other input is unspecified: make it NaN here.
                if (b[1] != 0.0f || (n % 2 == 0 && b[2 * (nb - 1) + 1] != 0.0f))
                    hermitian = false;
                sl_cpu_irfft(nullptr, n, 1, b.data(), a.data(), 1.0f);
                for (int t = 0; t < n; t++)
                    out[k * copy.odist + t * copy.ostride] = hermitian ? a[(size_t)t] : NAN;
            }
        }
        if (!r2c) // C2R may overwrite its input
            for (int k = 0; k < copy.batch; k++)
                for (size_t j = 0; j < nb; j++) {
                    const long long e = k * copy.idist + (long long)j * copy.istride;
                    sl_mock_poison(in + 2 * e, 2 * sizeof(float));
                }
        if (copy.work)
            sl_mock_poison(copy.area, copy.work);
        if (counted)
            --*copy.pending;
    });
    return CUFFT_SUCCESS;
}

} // namespace

extern "C" {

cufftResult cufftCreate(cufftHandle *h)
{
    if (!h)
        return CUFFT_INVALID_VALUE;
    std::lock_guard<std::mutex> g(g_mu);
    *h = g_next++;
    g_plans[*h] = Plan();
    return CUFFT_SUCCESS;
}

cufftResult cufftSetAutoAllocation(cufftHandle h, int autoAllocate)
{
    std::lock_guard<std::mutex> g(g_mu);
    Plan *p = get(h);
    if (!p)
        return CUFFT_INVALID_PLAN;
    if (p->made) // documented: call it between cufftCreate and the plan generation
        return CUFFT_INVALID_VALUE;
    p->auto_alloc = autoAllocate != 0;
    return CUFFT_SUCCESS;
}

cufftResult cufftMakePlanMany(cufftHandle h, int rank, int *n, int *inembed, int istride, int idist, int *onembed,
                              int ostride, int odist, cufftType type, int batch, size_t *workSize)
{
    if (sl_mock_capture_forbidden("cufftMakePlanMany")) // plan generation allocates on the device
        return CUFFT_INTERNAL_ERROR;
    Plan *p;
    {
        std::lock_guard<std::mutex> g(g_mu);
        p = get(h);
        if (!p)
            return CUFFT_INVALID_PLAN;
        if (p->made)
            return CUFFT_INVALID_PLAN;
    }
    if (rank != 1 || !n || n[0] < 1 || batch < 1)
        return rank < 1 || rank > 3 ? CUFFT_INVALID_VALUE : (n && n[0] < 1 ? CUFFT_INVALID_SIZE : CUFFT_INVALID_VALUE);
    if (type != CUFFT_R2C && type != CUFFT_C2R)
        return CUFFT_NOT_SUPPORTED; // not needed by the backend
    const long long nb = n[0] / 2 + 1;
    long long is = 1, id, os = 1, od;
    if (!inembed || !onembed) { // basic layout: the other layout arguments are ignored
        id = type == CUFFT_R2C ? n[0] : nb;
        od = type == CUFFT_R2C ? nb : n[0];
    } else {
        if (istride < 1 || ostride < 1 || idist < 1 || odist < 1)
            return CUFFT_INVALID_VALUE;
        is = istride;
        id = idist;
        os = ostride;
        od = odist;
    }
    int dev = 0;
    cudaGetDevice(&dev);
    const size_t work = (size_t)batch * (size_t)nb * 2 * sizeof(float); // as a real plan, some scratch
    void *area = nullptr;
    if (p->auto_alloc) {
        if (cudaMalloc(&area, work) != cudaSuccess)
            return CUFFT_ALLOC_FAILED;
    }
    std::lock_guard<std::mutex> g(g_mu);
    p = get(h);
    p->made = true;
    p->n = n[0];
    p->batch = batch;
    p->type = type;
    p->istride = is;
    p->idist = id;
    p->ostride = os;
    p->odist = od;
    p->work = work;
    p->device = dev;
    if (area) {
        p->area = area;
        p->own_area = true;
    }
    if (workSize)
        *workSize = work;
    return CUFFT_SUCCESS;
}

cufftResult cufftSetStream(cufftHandle h, cudaStream_t stream)
{
    std::lock_guard<std::mutex> g(g_mu);
    Plan *p = get(h);
    if (!p)
        return CUFFT_INVALID_PLAN;
    p->stream = stream;
    return CUFFT_SUCCESS;
}

cufftResult cufftSetWorkArea(cufftHandle h, void *area)
{
    std::lock_guard<std::mutex> g(g_mu);
    Plan *p = get(h);
    if (!p)
        return CUFFT_INVALID_PLAN;
    if (area && !sl_mock_is_device(area))
        sl_mock_fatal("cufftSetWorkArea(plan %d, %p): not device memory", h, area);
    if (p->own_area)
        sl_mock_fatal("cufftSetWorkArea(plan %d): the plan allocates its own work area (auto-allocation on)", h);
    p->area = area;
    return CUFFT_SUCCESS;
}

cufftResult cufftExecR2C(cufftHandle h, cufftReal *idata, cufftComplex *odata)
{
    return exec(h, idata, odata, CUFFT_R2C, "cufftExecR2C");
}

cufftResult cufftExecC2R(cufftHandle h, cufftComplex *idata, cufftReal *odata)
{
    return exec(h, idata, odata, CUFFT_C2R, "cufftExecC2R");
}

cufftResult cufftDestroy(cufftHandle h)
{
    if (sl_mock_capture_forbidden("cufftDestroy"))
        return CUFFT_INTERNAL_ERROR;
    void *own = nullptr;
    {
        std::lock_guard<std::mutex> g(g_mu);
        Plan *p = get(h);
        if (!p)
            return CUFFT_INVALID_PLAN;
        int dev = -1;
        if (cudaGetDevice(&dev) != cudaSuccess || dev != p->device)
            return CUFFT_INVALID_DEVICE; // the plan's device must be current (it frees device resources)
        if (*p->pending && !sl_mock_device_error(p->device)) // (a broken device dropped its queue)
            sl_mock_fatal("cufftDestroy(plan %d): %d transform(s) of this plan are still queued on its stream "
                          "(synchronise first)",
                          h, *p->pending);
        if (p->own_area)
            own = p->area;
        g_plans.erase(h);
    }
    if (own)
        cudaFree(own);
    return CUFFT_SUCCESS;
}

size_t sl_mock_live_fft_plans(void)
{
    std::lock_guard<std::mutex> g(g_mu);
    return g_plans.size();
}

cufftResult cufftGetVersion(int *version)
{
    if (!version)
        return CUFFT_INVALID_VALUE;
    *version = CUFFT_VERSION;
    return CUFFT_SUCCESS;
}

} // extern "C"
