// The CUDA backend table and its plumbing, compiled twice like the kernels:
//
//  nvcc  -> sl_cuda_backend "cuda": device memory from the stream-ordered pool
//           (cudaMallocAsync / cudaFreeAsync on the context's stream), copies
//           with cudaMemcpyAsync on that stream, pinned host buffers with
//           cudaHostAlloc, one non-blocking stream per context, cuFFT plans
//           and work area in fft_plans.cu. Every return code is checked and
//           becomes SL_EDEVICE / SL_ENOMEM naming the call.
//  g++ -DSL_CUDA_EMU -> sl_cuda_emu_backend "cuda-emu": host memory, the same
//           kernels run by the launch emulation, the CPU reference for the
//           library calls (the FFTs). A test / debugging backend.
//
// Waiting happens only in download and sync, which also report the
// asynchronous NOLA status of overlap_add (cu_ops.h) and clear it.
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_ops.h"
#include "cu_state.h"
extern "C" {
#include "../../common/sl_log.h"
}
#if SL_CUDA_API
#include "cu_fft.h"
#include "cuda_probe.h"
#endif

extern "C" sl_stream_t SL_FN(stream)(sl_op_ctx *ctx) { return sl_cu_st(ctx)->stream; }
extern "C" int *SL_FN(status)(sl_op_ctx *ctx) { return sl_cu_st(ctx)->status; }

// NOLA status read after a completed sync; reports and clears it.
extern "C" int SL_FN(status_report)(sl_cu_state *st)
{
    const int *s = st->status_host;
    if (s[0] == SL_CU_STATUS_NONE)
        return 0;
    const int sample = s[0], n_fft = s[1], hop = s[2];
#if SL_CUDA_API
    st->status_host[0] = SL_CU_STATUS_NONE;
    cudaError_t e = cudaMemsetAsync(st->status, 0x7F, 3 * sizeof(int), st->stream);
    if (e != cudaSuccess)
        return sl_cu_err(e, "cudaMemsetAsync(status)");
#else
    memset(st->status, 0x7F, 3 * sizeof(int));
#endif
    return sl_seterr(SL_ENUMERIC,
                     "istft: window overlap-add envelope < 1e-11 at sample %d (n_fft %d, hop %d): the window "
                     "fails NOLA (found by an earlier overlap_add, reported at sync)",
                     sample, n_fft, hop);
}

#if SL_CUDA_API
// ---------------------------------------------------------------- real CUDA

// Devices whose CUDA context a sticky error broke: the error, 0 when none.
// Process-wide (the context is the device's primary one, shared by every
// sl_op_ctx on it); written once per device, read at every entry.
#define SL_CU_MAX_DEVICES 64
static int g_lost[SL_CU_MAX_DEVICES];
static const char *g_lost_call[SL_CU_MAX_DEVICES]; // the call that saw it first (a string literal)

static int is_sticky(cudaError_t e)
{
    switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorLaunchTimeout:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
        return 1;
    default:
        return 0;
    }
}

int sl_cu_sticky(cudaError_t e, const char *call)
{
    if (!is_sticky(e))
        return 0;
    int dev = -1;
    (void)cudaGetDevice(&dev); // the backend made the context's device current at entry
    if (dev >= 0 && dev < SL_CU_MAX_DEVICES) {
        int none = 0;
        if (__atomic_compare_exchange_n(&g_lost[dev], &none, (int)e, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
            __atomic_store_n(&g_lost_call[dev], call, __ATOMIC_SEQ_CST);
    }
    return sl_seterr(SL_EDEVLOST,
                     "%s: %s (%s): the CUDA context of device %d is lost (a sticky error: every later call "
                     "on it fails); its work must move to another device or the CPU",
                     call, cudaGetErrorString(e), cudaGetErrorName(e), dev);
}

static int lost_error(int device)
{
    const int e = device >= 0 && device < SL_CU_MAX_DEVICES ? __atomic_load_n(&g_lost[device], __ATOMIC_SEQ_CST) : 0;
    if (!e)
        return 0;
    const char *call = __atomic_load_n(&g_lost_call[device], __ATOMIC_SEQ_CST);
    return sl_seterr(SL_EDEVLOST, "CUDA device %d: its context was lost to %s (first reported by %s); it takes no more work",
                     device, cudaGetErrorName((cudaError_t)e), call ? call : "a call");
}

// Out of memory in the pool: it may keep freed blocks reserved (up to its
// release threshold) that this request cannot reuse, or this stream's frees
// may still be queued. Wait for the stream, release every unused block to the
// device and try once more (a host wait, on this rare path only) before the
// caller gives up (the runner then halves its batch).
cudaError_t sl_cu_dev_alloc(sl_cu_state *st, void **p, size_t bytes)
{
    if (st->capturing) { // a graph would own it (pipe.cu allocates before capturing)
        st->capture_broken = "a device allocation";
        *p = NULL;
        return cudaErrorStreamCaptureUnsupported;
    }
    if (!st->pools)
        return cudaMalloc(p, bytes);
    cudaError_t e = cudaMallocAsync(p, bytes, st->stream);
    if (e != cudaErrorMemoryAllocation)
        return e;
    (void)cudaGetLastError();
    cudaMemPool_t pool;
    cudaError_t t = cudaStreamSynchronize(st->stream);
    if (t == cudaSuccess)
        t = cudaDeviceGetDefaultMemPool(&pool, st->device);
    if (t == cudaSuccess)
        t = cudaMemPoolTrimTo(pool, 0);
    if (t != cudaSuccess) // a broken context says so rather than "out of memory"
        return t;
    sl_log(SL_LOG_DEBUG, NULL, "cuda", "device %d: out of memory for %zu bytes; released the pool's cached "
                                       "blocks and retrying", st->device, bytes);
    return cudaMallocAsync(p, bytes, st->stream);
}

// Every device free of the context: captured graphs may hold the address
// (st->mem_epoch); inside a capture, deferred to the end of the sequence.
cudaError_t sl_cu_dev_free(sl_cu_state *st, void *p)
{
    if (!p)
        return cudaSuccess;
    st->mem_epoch++;
    if (st->capturing) {
        st->capture_broken = "a device free";
        sl_cuda_pipe_defer_free(st, p);
        return cudaSuccess;
    }
    return st->pools ? cudaFreeAsync(p, st->stream) : cudaFree(p);
}

static int cu_init(sl_op_ctx *ctx)
{
    sl_cuda_device_info info;
    char msg[256];
    int rc = sl_cuda_probe_device(&info, ctx->device_req > 0 ? ctx->device_req : 0, msg, sizeof msg);
    if (rc < 0)
        return sl_seterr(rc, "backend cuda: %s", msg);
    if ((rc = lost_error(info.device)) < 0)
        return rc;
    if ((rc = sl_cuda_cufft_load()) < 0)
        return rc;
    sl_cu_state *st = static_cast<sl_cu_state *>(calloc(1, sizeof *st));
    if (!st)
        return sl_seterr(SL_ENOMEM, "backend cuda: out of memory");
    ctx->state = st;
    st->device = info.device;
    char conv[96];
    if ((rc = sl_cuda_conv2d_init(ctx, conv, sizeof conv)) < 0) {
        free(st);
        ctx->state = NULL;
        return rc;
    }
    cudaError_t e = cudaSetDevice(info.device);
    const char *call = "cudaSetDevice";
    if (e == cudaSuccess) {
        call = "cudaStreamCreateWithFlags";
        e = cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking);
    }
    if (e == cudaSuccess) {
        call = "cudaDeviceGetAttribute(MemoryPoolsSupported)";
        e = cudaDeviceGetAttribute(&st->pools, cudaDevAttrMemoryPoolsSupported, info.device);
    }
    if (e == cudaSuccess && st->pools) {
        // Keep freed pool memory cached (per-track sl_op_alloc/free then cost no
        // driver calls), but not all of the device: above total - min(512 MiB,
        // total/4) a synchronisation returns unused blocks, so that cuDNN's and
        // cuFFT's own allocations and other processes still find memory.
        cudaMemPool_t pool;
        const uint64_t total = info.total_mem, margin = total / 4 < ((uint64_t)512 << 20) ? total / 4 : (uint64_t)512 << 20;
        uint64_t keep = total - margin;
        call = "cudaDeviceGetDefaultMemPool";
        e = cudaDeviceGetDefaultMemPool(&pool, info.device);
        if (e == cudaSuccess) {
            call = "cudaMemPoolSetAttribute(ReleaseThreshold)";
            e = cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
        }
    }
    if (e == cudaSuccess) {
        call = "cudaMalloc(status)";
        e = cudaMalloc(&st->status, 3 * sizeof(int));
    }
    if (e == cudaSuccess) {
        call = "cudaHostAlloc(status)";
        e = cudaHostAlloc(&st->status_host, 3 * sizeof(int), cudaHostAllocDefault);
    }
    if (e == cudaSuccess) {
        call = "cudaMemsetAsync(status)";
        e = cudaMemsetAsync(st->status, 0x7F, 3 * sizeof(int), st->stream);
    }
    if (e != cudaSuccess) {
        rc = sl_cu_err(e, call);
        if (st->status_host)
            cudaFreeHost(st->status_host);
        if (st->status)
            cudaFree(st->status);
        if (st->stream)
            cudaStreamDestroy(st->stream);
        free(st);
        ctx->state = NULL;
        return rc;
    }
    memset(st->status_host, 0x7F, 3 * sizeof(int));
    const int len = snprintf(ctx->device, sizeof ctx->device,
                             "CUDA device %d: %s (sm_%d%d, %.1f GiB, runtime %d, driver %d); %s", info.device,
                             info.name, info.cc_major, info.cc_minor,
                             (double)info.total_mem / (1024.0 * 1024.0 * 1024.0), info.runtime_version,
                             info.driver_version, conv);
    if (len < 0 || (size_t)len >= sizeof ctx->device) // a very long device name: keep the truncated text
        ctx->device[sizeof ctx->device - 1] = '\0';
    st->device_len = strlen(ctx->device);
    return 0;
}

// runtime.precision: the gemm op's path (gemm_lt.cu reads ctx->precision),
// named in the device string.
static int cu_set_precision(sl_op_ctx *ctx, sl_precision p)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (p == SL_PREC_BF16X6) { // fp32's accuracy: the exact fp32 path, named as such
        ctx->device[st->device_len] = '\0';
        const size_t used = st->device_len;
        snprintf(ctx->device + used, sizeof ctx->device - used,
                 "; precision fp32 (bf16x6 asked for: exact fp32 on a CUDA device)");
        return (int)SL_PREC_FP32;
    }
    if (p != SL_PREC_FP32) {
        const int rc = sl_cuda_gemm_lt_available();
        if (rc < 0)
            return rc;
    }
    ctx->device[st->device_len] = '\0';
    if (p != SL_PREC_FP32) {
        const size_t used = st->device_len;
        snprintf(ctx->device + used, sizeof ctx->device - used, "; precision %s (gemm on cuBLASLt, %s)",
                 sl_precision_name(p), p == SL_PREC_TF32 ? "CUBLAS_COMPUTE_32F_FAST_TF32" : "CUBLAS_COMPUTE_32F_FAST_16BF");
    }
    return (int)p;
}

// Every call on the context, from any thread: CUDA's current device is per
// host thread, and a launch on (or a free, a cuFFT plan, a cuDNN handle of) a
// device that is not current fails. cudaGetDevice is a thread-local read.
static int cu_enter(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    int cur = -1;
    if (cudaGetDevice(&cur) != cudaSuccess || cur != st->device)
        SL_CU_CHECK(cudaSetDevice(st->device));
    return lost_error(st->device); // (a lost context's teardown still runs, on its device)
}

static void cu_fini(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (!st)
        return;
    // Teardown (ops.c made the device current): return codes are not actionable any more; the stream sync makes
    // sure nothing queued still uses what is freed.
    cudaStreamSynchronize(st->stream);
    sl_cuda_pipe_release(ctx);
    sl_cuda_fft_release(ctx);
    sl_cuda_conv2d_release(ctx);
    sl_cuda_gemm_lt_release(ctx);
    if (st->scratch)
        sl_cu_dev_free(st, st->scratch);
    cudaStreamSynchronize(st->stream);
    cudaFree(st->status);
    cudaFreeHost(st->status_host);
    cudaStreamDestroy(st->stream);
    free(st);
    ctx->state = NULL;
}

static int cu_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes)
{
    // Stream-ordered pool memory (>= 256-byte aligned), valid for work queued on
    // this context's stream; cudaMalloc where the device has no memory pools.
    sl_cu_state *st = sl_cu_st(ctx);
    cudaError_t e = sl_cu_dev_alloc(st, ptr, bytes);
    if (e != cudaSuccess) {
        *ptr = NULL;
        return sl_cu_err(e, st->pools ? "cudaMallocAsync" : "cudaMalloc");
    }
    return 0;
}

static void cu_free(sl_op_ctx *ctx, void *ptr)
{
    // Stream-ordered: the memory returns to the pool after the work queued so far.
    sl_cu_state *st = sl_cu_st(ctx);
    cudaError_t e = sl_cu_dev_free(st, ptr);
    if (e != cudaSuccess && !g_lost[st->device]) // sl_op_free cannot fail; a broken context shows at the next sync
        sl_log(SL_LOG_ERROR, NULL, "cuda", "device free: %s", cudaGetErrorString(e));
}

static int cu_upload(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (sl_cuda_pipe_in_item(ctx)) // pipelined: through the ring (pipe.cu)
        return sl_cuda_pipe_upload(ctx, dst, src, bytes);
    SL_CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, sl_cu_st(ctx)->stream));
    return 0;
}

static int cu_copy(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    SL_CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, sl_cu_st(ctx)->stream));
    return 0;
}

static int cu_sync(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (sl_cuda_pipe_in_item(ctx)) // a wait inside a pipelined forward (a capture refuses it)
        sl_cuda_pipe_note_sync(ctx);
    SL_CU_CHECK(cudaMemcpyAsync(st->status_host, st->status, 3 * sizeof(int), cudaMemcpyDeviceToHost, st->stream));
    SL_CU_CHECK(cudaStreamSynchronize(st->stream));
    return SL_FN(status_report)(st);
}

static int cu_download(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (sl_cuda_pipe_in_item(ctx)) // pipelined: written at the end of the sequence (pipe.cu)
        return sl_cuda_pipe_download(ctx, dst, src, bytes);
    SL_CU_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, sl_cu_st(ctx)->stream));
    return cu_sync(ctx);
}

static int cu_host_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes)
{
    (void)ctx;
    // Portable: slots are filled by decode threads and read by workers on any device.
    cudaError_t e = cudaHostAlloc(ptr, bytes, cudaHostAllocPortable);
    if (e != cudaSuccess) {
        *ptr = NULL;
        return sl_cu_err(e, "cudaHostAlloc");
    }
    return 0;
}

static void cu_host_free(sl_op_ctx *ctx, void *ptr)
{
    (void)ctx;
    cudaError_t e = cudaFreeHost(ptr);
    if (e != cudaSuccess)
        sl_log(SL_LOG_ERROR, NULL, "cuda", "cudaFreeHost: %s", cudaGetErrorString(e));
}

extern "C" int SL_FN(scratch)(sl_op_ctx *ctx, size_t bytes, void **p)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (bytes > st->scratch_size) {
        // Grown in stream order: ops queued before still see the old buffer.
        if (st->scratch)
            SL_CU_CHECK(sl_cu_dev_free(st, st->scratch));
        st->scratch = NULL;
        st->scratch_size = 0;
        size_t want = bytes < 4096 ? 4096 : bytes;
        SL_CU_CHECK(sl_cu_dev_alloc(st, &st->scratch, want));
        st->scratch_size = want;
    }
    *p = st->scratch;
    return 0;
}

#else
// ---------------------------------------------------------------- emulated

static int cu_init(sl_op_ctx *ctx)
{
    sl_cu_state *st = static_cast<sl_cu_state *>(calloc(1, sizeof *st));
    int *status = static_cast<int *>(malloc(3 * sizeof(int)));
    if (!st || !status) {
        free(st);
        free(status);
        return sl_seterr(SL_ENOMEM, "backend cuda-emu: out of memory");
    }
    memset(status, 0x7F, 3 * sizeof(int));
    st->status = st->status_host = status;
    ctx->state = st;
    snprintf(ctx->device, sizeof ctx->device,
             "cuda-emu: the CUDA kernels run on the CPU (blocks in turn, threads as coroutines); "
             "FFTs by the CPU reference");
    return 0;
}

static int cu_enter(sl_op_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static void cu_fini(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (!st)
        return;
    free(st->scratch);
    free(st->status);
    free(st);
    ctx->state = NULL;
}

static int cu_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes)
{
    (void)ctx;
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p)
        return sl_seterr(SL_ENOMEM, "cuda-emu: cannot allocate %zu bytes", bytes);
    *ptr = p;
    return 0;
}

static void cu_free(sl_op_ctx *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

static int cu_upload(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    memmove(dst, src, bytes);
    return 0;
}

static int cu_copy(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    memcpy(dst, src, bytes);
    return 0;
}

static int cu_sync(sl_op_ctx *ctx) { return SL_FN(status_report)(sl_cu_st(ctx)); }

static int cu_download(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    memmove(dst, src, bytes);
    return cu_sync(ctx);
}

static int cu_host_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes) { return cu_alloc(ctx, ptr, bytes); }
static void cu_host_free(sl_op_ctx *ctx, void *ptr) { cu_free(ctx, ptr); }

extern "C" int SL_FN(scratch)(sl_op_ctx *ctx, size_t bytes, void **p)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (bytes > st->scratch_size) {
        free(st->scratch);
        st->scratch_size = 0;
        st->scratch = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
        if (!st->scratch)
            return sl_seterr(SL_ENOMEM, "cuda-emu: cannot allocate %zu bytes of scratch", bytes);
        st->scratch_size = bytes;
    }
    *p = st->scratch;
    return 0;
}
#endif

// Plans for every power-of-two chunk a call of up to max_frames frames uses
// (sl_fft_chunk), both directions, and the irfft scratch: after this, running
// such calls allocates nothing.
static int cu_reserve(sl_op_ctx *ctx, int n_fft, size_t max_frames)
{
    void *ws;
    int rc = SL_FN(scratch)(ctx, SL_FN(irfft_workspace)(n_fft, max_frames), &ws);
#if SL_CUDA_API
    const size_t top = max_frames < sl_fft_max_batch(n_fft) ? max_frames : sl_fft_max_batch(n_fft);
    for (size_t b = 1; b <= top && rc == 0; b *= 2)
        for (int inverse = 0; inverse < 2 && rc == 0; inverse++) {
            cufftHandle plan;
            rc = sl_cuda_fft_plan(ctx, n_fft, (int)b, inverse, &plan);
        }
#endif
    return rc;
}

// Positional: C++17 has no designated initialisers; the order is backend.h's.
#if SL_CUDA_API
extern "C" const sl_op_backend sl_cuda_backend = {
    "cuda",
#else
extern "C" const sl_op_backend sl_cuda_emu_backend = {
    "cuda-emu",
#endif
    cu_init,
    cu_enter,
    cu_fini,
    cu_alloc,
    cu_free,
    cu_upload,
    cu_download,
    cu_copy,
    cu_sync,
    cu_host_alloc,
    cu_host_free,
    cu_reserve,
    SL_FN(frame),
    SL_FN(rfft),
    SL_FN(irfft),
    SL_FN(magnitude),
    SL_FN(power),
    SL_FN(median_time),
    SL_FN(median_freq),
    SL_FN(hpss_masks),
    SL_FN(apply_mask),
    SL_FN(overlap_add),
    SL_FN(mel),
    SL_FN(log_db),
    SL_FN(stats_pool),
    SL_FN(gemm_op),
    SL_FN(affine),
    SL_FN(lstm),
    SL_FN(wiener),
    SL_FN(conv2d),
    SL_FN(avg_pool2d),
    SL_FN(clip_pool),
    SL_FN(topk),
    SL_FN(norm),
    SL_FN(glu),
    SL_FN(attention),
    SL_FN(spec_gather),
    SL_FN(mask_scatter),
    SL_FN(row_gather),
    SL_FN(conv1d),
    SL_FN(conv_transpose1d),
    SL_FN(permute),
    nullptr, // threads_changed: the work runs on the device, one host thread per context
#if SL_CUDA_API
    cu_set_precision,
    sl_cuda_pipe_begin,
    sl_cuda_pipe_item_begin,
    sl_cuda_pipe_item_end,
    sl_cuda_pipe_end,
    sl_cuda_pipe_stats,
#else
    nullptr, // set_precision: the emulation runs the fp32 kernels only
    nullptr, // pipe_*: the emulation runs every forward as called
    nullptr,
    nullptr,
    nullptr,
    nullptr,
#endif
    nullptr, // mark_fixed: the kernels read the weights as they are
};
