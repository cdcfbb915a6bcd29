// CUDA device discovery. Every runtime return code is checked and turned into
// a stemline error code plus a message naming the call; the caller (ops.c)
// records it with sl_seterr, so this file needs nothing from stemline_core.
#include "cuda_probe.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "../../common/sl_error.h"
}

static int sl_cuda_fail(cudaError_t e, const char *call, char *msg, size_t msg_size)
{
    // "No device" and "no/old driver" mean the machine cannot run CUDA at all,
    // which callers treat differently (fall back to CPU) from a broken device.
    int code = SL_EDEVICE;
    if (e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver
#if CUDART_VERSION >= 12000
        || e == cudaErrorCallRequiresNewerDriver
#endif
    )
        code = SL_ENODEVICE;
    if (msg && msg_size)
        snprintf(msg, msg_size, "%s: %s (%s, cudaError %d)", call, cudaGetErrorString(e),
                 cudaGetErrorName(e), (int)e);
    return code;
}

extern "C" int sl_cuda_probe(sl_cuda_device_info *info, char *msg, size_t msg_size)
{
    return sl_cuda_probe_device(info, 0, msg, msg_size);
}

extern "C" int sl_cuda_probe_device(sl_cuda_device_info *info, int want, char *msg, size_t msg_size)
{
    memset(info, 0, sizeof *info);
    if (msg && msg_size)
        msg[0] = 0;
    cudaError_t e = cudaRuntimeGetVersion(&info->runtime_version);
    if (e != cudaSuccess)
        return sl_cuda_fail(e, "cudaRuntimeGetVersion", msg, msg_size);
    e = cudaDriverGetVersion(&info->driver_version);
    if (e != cudaSuccess)
        return sl_cuda_fail(e, "cudaDriverGetVersion", msg, msg_size);
    if (info->driver_version == 0) {
        if (msg && msg_size)
            snprintf(msg, msg_size, "no CUDA driver is installed (cudaDriverGetVersion returned 0)");
        return SL_ENODEVICE;
    }
    int count = 0;
    e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); // clear the sticky-less error state for later callers
        return sl_cuda_fail(e, "cudaGetDeviceCount", msg, msg_size);
    }
    info->count = count;
    if (count <= 0) {
        if (msg && msg_size)
            snprintf(msg, msg_size, "cudaGetDeviceCount: no CUDA device");
        return SL_ENODEVICE;
    }
    if (want < 0 || want >= count) {
        if (msg && msg_size)
            snprintf(msg, msg_size, "CUDA device %d requested, but the runtime sees %d device%s (0..%d)", want,
                     count, count == 1 ? "" : "s", count - 1);
        return SL_ENODEVICE;
    }
    cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, want);
    if (e != cudaSuccess)
        return sl_cuda_fail(e, "cudaGetDeviceProperties", msg, msg_size);
    info->device = want;
    snprintf(info->name, sizeof info->name, "%.*s", (int)sizeof info->name - 1, prop.name);
    info->cc_major = prop.major;
    info->cc_minor = prop.minor;
    info->total_mem = prop.totalGlobalMem;
    return 0;
}
