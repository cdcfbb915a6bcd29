// cudamock: the CUDA runtime API the "cuda" backend calls (errors, devices,
// memory pools, streams, allocations, copies and memsets) on the state and
// helpers of cudart_mock.cpp (cudart_impl.h); events, capture and graphs are in
// graph_mock.cpp.
#include "cudart_impl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>

using namespace sl_mock_rt;

extern "C" {

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return t_last; }

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalState: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error";
    }
}

cudaError_t cudaRuntimeGetVersion(int *v)
{
    if (!v)
        return fail(cudaErrorInvalidValue);
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!v)
        return fail(cudaErrorInvalidValue);
    *v = s.driver;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *count)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!count)
        return fail(cudaErrorInvalidValue);
    *count = 0;
    if (!s.driver)
        return fail(cudaErrorInsufficientDriver);
    if (!s.devices)
        return fail(cudaErrorNoDevice);
    *count = s.devices;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!prop)
        return fail(cudaErrorInvalidValue);
    if (device < 0 || device >= s.devices)
        return fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "cudamock device %d (host emulation, no GPU)", device);
    prop->major = 9;
    prop->minor = 0;
    prop->totalGlobalMem = s.device_mem;
    prop->sharedMemPerBlock = 48 * 1024;
    prop->maxThreadsPerBlock = 1024;
    prop->warpSize = 32;
    prop->multiProcessorCount = 1;
    prop->maxGridSize[0] = INT_MAX;
    prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!s.devices)
        return fail(cudaErrorNoDevice);
    if (device < 0 || device >= s.devices)
        return fail(cudaErrorInvalidDevice);
    t_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    if (!device)
        return fail(cudaErrorInvalidValue);
    *device = t_device;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!value)
        return fail(cudaErrorInvalidValue);
    if (device < 0 || device >= s.devices)
        return fail(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMemoryPoolsSupported: *value = s.pools; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = kSMs; return cudaSuccess;
    case cudaDevAttrCooperativeLaunch: *value = 1; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 232448; return cudaSuccess;
    default: return fail(cudaErrorInvalidValue);
    }
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!pool)
        return fail(cudaErrorInvalidValue);
    if (device < 0 || device >= s.devices)
        return fail(cudaErrorInvalidDevice);
    if (!s.pools)
        return fail(cudaErrorNotSupported);
    *pool = &s.pool[device];
    return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!pool || pool < &s.pool[0] || pool >= &s.pool[kMaxDevices] || !value)
        return fail(cudaErrorInvalidValue);
    if (attr != cudaMemPoolAttrReleaseThreshold)
        return fail(cudaErrorInvalidValue); // the only attribute the backend sets
    pool->release_threshold = *static_cast<uint64_t *>(value);
    return cudaSuccess;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t minBytesToKeep)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!pool || pool < &s.pool[0] || pool >= &s.pool[kMaxDevices])
        return fail(cudaErrorInvalidValue);
    pool_release(s, pool->device, minBytesToKeep);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!stream || (flags & ~(unsigned)cudaStreamNonBlocking))
        return fail(cudaErrorInvalidValue);
    if (!s.devices)
        return fail(cudaErrorNoDevice);
    CUstream_st *x = new CUstream_st();
    x->device = t_device;
    x->flags = flags;
    x->error = cudaSuccess;
    x->id = s.next_stream_id++;
    s.streams.push_back(x);
    *stream = x;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!stream)
        return fail(cudaErrorInvalidResourceHandle);
    CUstream_st *x = resolve(s, stream);
    if (x->capture)
        return fail(cudaErrorStreamCaptureUnsupported);
    drain(s, x); // the documented behaviour: queued work completes, then the stream goes
    for (CUevent_st *ev : s.events) // (their work has run)
        if (ev->stream == x)
            ev->stream = nullptr;
    for (size_t i = 0; i < s.streams.size(); i++)
        if (s.streams[i] == x) {
            s.streams.erase(s.streams.begin() + (long)i);
            break;
        }
    delete x;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (capture_forbids(s, "cudaStreamSynchronize"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    cudaError_t e = drain(s, resolve(s, stream));
    return e == cudaSuccess ? e : fail(e);
}

cudaError_t cudaDeviceSynchronize(void)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (capture_forbids(s, "cudaDeviceSynchronize"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    drain_device(s, t_device);
    return s.sticky[t_device] ? fail(s.sticky[t_device]) : cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!s.devices)
        return fail(cudaErrorNoDevice);
    if (capture_forbids(s, "cudaMalloc"))
        return cudaErrorStreamCaptureUnsupported;
    return dev_alloc(s, p, bytes, t_device, false);
}

cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!s.pools)
        return fail(cudaErrorNotSupported);
    // (stricter than the driver, which records an allocation node: the backend
    // allocates before a capture, never inside one)
    if (capture_forbids(s, "cudaMallocAsync"))
        return cudaErrorStreamCaptureUnsupported;
    CUstream_st *x = resolve(s, stream);
    if (x->device != t_device) // stricter than the driver promises (it would use the stream's device's pool)
        return fail(cudaErrorInvalidResourceHandle);
    cudaError_t e = dev_alloc(s, p, bytes, x->device, true);
    if (e == cudaErrorMemoryAllocation && !x->q.empty()) {
        // Memory freed earlier in this stream's order is reusable by later work in
        // it: run the queue (as the pool would have) and try again.
        t_last = cudaSuccess;
        run_queue(s, x);
        e = dev_alloc(s, p, bytes, x->device, true);
    }
    return e;
}

cudaError_t cudaFree(void *p)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!p)
        return cudaSuccess;
    auto it = alloc_at(s, p);
    if (it == s.allocs.end() || it->second.free_pending)
        return fail(cudaErrorInvalidDevicePointer);
    if (it->second.device != t_device) // stricter than the driver promises: the owner's device must be current
        return fail(cudaErrorInvalidDevicePointer);
    if (s.sticky[t_device])
        return fail(s.sticky[t_device]);
    if (capture_forbids(s, "cudaFree"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    drain_all(s); // cudaFree synchronises
    dev_release(s, it->first);
    return cudaSuccess;
}

cudaError_t cudaFreeAsync(void *p, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!p)
        return cudaSuccess;
    if (capture_forbids(s, "cudaFreeAsync")) // (stricter than the driver, as cudaMallocAsync)
        return cudaErrorStreamCaptureUnsupported;
    auto it = alloc_at(s, p);
    if (it == s.allocs.end() || it->second.free_pending)
        return fail(cudaErrorInvalidDevicePointer);
    CUstream_st *x = resolve(s, stream);
    if (x->device != t_device) // like a launch: the stream's device must be current
        return fail(cudaErrorInvalidResourceHandle);
    if (s.sticky[x->device])
        return fail(s.sticky[x->device]);
    if (it->second.device != x->device)
        return fail(cudaErrorInvalidDevicePointer);
    it->second.free_pending = true;
    const size_t off = it->first;
    State *sp = &s;
    push(s, x, [sp, off]() { dev_release(*sp, off); }, {sl_mock_access{p, 0, true}}, "cudaFreeAsync");
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!p || (flags & ~(unsigned)(cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined)))
        return fail(cudaErrorInvalidValue);
    if (capture_forbids(s, "cudaHostAlloc"))
        return cudaErrorStreamCaptureUnsupported;
    *p = nullptr;
    const size_t n = bytes ? (bytes + 4095) / 4096 * 4096 : 4096;
    void *h = aligned_alloc(4096, n);
    if (!h)
        return fail(cudaErrorMemoryAllocation);
    memset(h, 0xFF, n); // pinned memory is not zeroed either
    s.pinned[(uintptr_t)h] = Pinned{bytes};
    s.n_pinned_allocs++;
    *p = h;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) { return cudaHostAlloc(p, bytes, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void *p)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!p)
        return cudaSuccess;
    auto it = s.pinned.find((uintptr_t)p);
    if (it == s.pinned.end())
        return fail(cudaErrorInvalidValue);
    if (capture_forbids(s, "cudaFreeHost"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    drain_all(s); // implicitly synchronising: queued copies may still read it
    s.pinned.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    CUstream_st *x = resolve(s, stream);
    if (s.sticky[x->device])
        return fail(s.sticky[x->device]);
    if (bytes == 0)
        return cudaSuccess;
    if (!dst || !src)
        return fail(cudaErrorInvalidValue);
    const bool dd = sl_mock_is_device(dst), sd = sl_mock_is_device(src);
    if (kind == cudaMemcpyDefault)
        kind = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                  : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    const bool want_dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool want_sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice &&
        kind != cudaMemcpyHostToHost)
        return fail(cudaErrorInvalidMemcpyDirection);
    if (dd != want_dd || sd != want_sd)
        sl_mock_fatal("cudaMemcpyAsync(%p <- %p, %zu bytes): kind %d does not match the pointers (destination %s, "
                      "source %s)",
                      dst, src, bytes, (int)kind, dd ? "device" : "host", sd ? "device" : "host");
    if (dd)
        sl_mock_check_device(dst, bytes, "cudaMemcpyAsync destination");
    if (sd)
        sl_mock_check_device(src, bytes, "cudaMemcpyAsync source");
    std::vector<sl_mock_access> acc;
    if (dd)
        acc.push_back(sl_mock_access{dst, bytes, true});
    if (sd)
        acc.push_back(sl_mock_access{src, bytes, false});
    const bool pageable = (kind == cudaMemcpyHostToDevice && !is_pinned(s, src, bytes)) ||
                          (kind == cudaMemcpyDeviceToHost && !is_pinned(s, dst, bytes));
    // Pageable memory: staged or waited for at the call, which a graph cannot
    // record (the driver refuses it in a capture; the backend never does it).
    if (pageable && x->capture) {
        invalidate_capture(x, "cudaMemcpyAsync from or to pageable host memory");
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    if (kind == cudaMemcpyDeviceToHost && pageable && capture_forbids(s, "cudaMemcpyAsync to pageable memory"))
        return cudaErrorStreamCaptureUnsupported;
    if (kind == cudaMemcpyHostToDevice && pageable) {
        // Pageable source: staged at the call, the caller may reuse it at once.
        std::vector<unsigned char> snap(static_cast<const unsigned char *>(src),
                                        static_cast<const unsigned char *>(src) + bytes);
        push(s, x, [dst, snap]() { memcpy(dst, snap.data(), snap.size()); }, acc, "cudaMemcpyAsync");
        return cudaSuccess;
    }
    push(s, x, [dst, src, bytes]() { memmove(dst, src, bytes); }, acc, "cudaMemcpyAsync");
    if (kind == cudaMemcpyDeviceToHost && pageable) {
        // Pageable destination: the call returns once the copy is done.
        host_sync(s);
        cudaError_t e = drain(s, x);
        if (e != cudaSuccess)
            return fail(e);
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (capture_forbids(s, "cudaMemcpy"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    drain_device(s, t_device);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
    if (e == cudaSuccess)
        run_queue(s, &s.legacy[t_device]);
    return e;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    CUstream_st *x = resolve(s, stream);
    if (s.sticky[x->device])
        return fail(s.sticky[x->device]);
    if (bytes == 0)
        return cudaSuccess;
    sl_mock_check_device(p, bytes, "cudaMemsetAsync");
    push(s, x, [p, value, bytes]() { memset(p, value, bytes); }, {sl_mock_access{p, bytes, true}}, "cudaMemsetAsync");
    return cudaSuccess;
}

} // extern "C"
