/* cudamock checks itself: each misuse it exists to catch must be caught (a
 * stand-in that accepts everything would make the cudamock.* tests worthless),
 * and the backend built on it must leave nothing behind.
 *
 * Death tests run in a forked child and expect it to die (SIGSEGV for a host
 * read of device memory, SIGABRT from sl_mock_fatal for API misuse). */
#include <cuda_runtime_api.h>
#include <cufft.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "kernels/ops.h"
#include "tests/unit/sl_test.h"

size_t sl_mock_live_device_bytes(void);
size_t sl_mock_live_pinned(void);

/* Runs fn in a child; returns the signal that killed it (0 if it exited). */
static int dies(void (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", 1); /* the expected "cudamock: ..." message stays out of the log */
        if (fd >= 0)
            dup2(fd, 2);
        fn();
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

static void host_reads_device(void)
{
    float *d = NULL;
    if (cudaMalloc((void **)&d, 64) != cudaSuccess)
        _exit(3);
    volatile float v = d[3]; /* device memory is not host memory */
    (void)v;
}

static void copy_kind_mismatch(void)
{
    float h[4] = {0}, *d = NULL;
    cudaMalloc((void **)&d, sizeof h);
    cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyHostToDevice, 0); /* pointers the other way round */
}

static void copy_past_end(void)
{
    float h[8] = {0}, *d = NULL;
    cudaMalloc((void **)&d, 4 * sizeof(float));
    cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, 0);
}

static void use_after_free_async(void)
{
    cudaStream_t s;
    float h[4] = {0}, *d = NULL;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaMallocAsync((void **)&d, sizeof h, s);
    cudaFreeAsync(d, s);
    cudaMemcpyAsync(d, h, sizeof h, cudaMemcpyHostToDevice, s); /* queued after the free */
}

static void fft_without_work_area(void)
{
    cufftHandle p;
    int n = 16;
    size_t work = 0;
    float *in = NULL, *out = NULL;
    cudaMalloc((void **)&in, 16 * sizeof(float));
    cudaMalloc((void **)&out, 18 * sizeof(float));
    cufftCreate(&p);
    cufftSetAutoAllocation(p, 0);
    cufftMakePlanMany(p, 1, &n, NULL, 1, 0, NULL, 1, 0, CUFFT_R2C, 1, &work);
    cufftExecR2C(p, in, (cufftComplex *)out);
}

static void fft_destroy_while_queued(void)
{
    cufftHandle p;
    int n = 16;
    size_t work = 0;
    float *in = NULL, *out = NULL;
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    cudaMalloc((void **)&in, 16 * sizeof(float));
    cudaMalloc((void **)&out, 18 * sizeof(float));
    cufftCreate(&p);
    cufftMakePlanMany(p, 1, &n, NULL, 1, 0, NULL, 1, 0, CUFFT_R2C, 1, &work);
    cufftSetStream(p, s);
    cufftExecR2C(p, in, (cufftComplex *)out);
    cufftDestroy(p); /* without cudaStreamSynchronize(s) first */
}

static void death_tests(void)
{
    CHECK_MSG(dies(host_reads_device) == SIGSEGV, "a host read of device memory must crash");
    CHECK_MSG(dies(copy_kind_mismatch) == SIGABRT, "a copy whose kind contradicts its pointers must abort");
    CHECK_MSG(dies(copy_past_end) == SIGABRT, "a copy past the end of an allocation must abort");
    CHECK_MSG(dies(use_after_free_async) == SIGABRT, "a copy queued after cudaFreeAsync must abort");
    CHECK_MSG(dies(fft_without_work_area) == SIGABRT, "an FFT without its work area must abort");
    CHECK_MSG(dies(fft_destroy_while_queued) == SIGABRT, "destroying a plan with queued transforms must abort");
}

/* Streams are queues: results exist only after a sync. */
static void stream_semantics(void)
{
    cudaStream_t s;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    float *d = NULL, *pin = NULL, page[4] = {1, 2, 3, 4};
    CHECK(cudaMalloc((void **)&d, 4 * sizeof(float)) == cudaSuccess);
    CHECK(cudaHostAlloc((void **)&pin, 4 * sizeof(float), cudaHostAllocDefault) == cudaSuccess);
    /* Pageable source: snapshotted at the call. */
    CHECK(cudaMemcpyAsync(d, page, sizeof page, cudaMemcpyHostToDevice, s) == cudaSuccess);
    page[0] = 99;
    /* Pinned destination: written only when the stream runs. */
    CHECK(cudaMemcpyAsync(pin, d, sizeof page, cudaMemcpyDeviceToHost, s) == cudaSuccess);
    uint32_t bits;
    memcpy(&bits, &pin[0], 4);
    CHECK_MSG(bits == 0xFFFFFFFFu, "pinned download visible before the sync (0x%08x)", (unsigned)bits);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    CHECK(pin[0] == 1 && pin[3] == 4);
    /* Pinned source: read when the stream runs, so a refill before the sync is what arrives. */
    pin[0] = 7;
    CHECK(cudaMemcpyAsync(d, pin, 4 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
    pin[0] = 8;
    CHECK(cudaMemcpyAsync(page, d, sizeof page, cudaMemcpyDeviceToHost, s) == cudaSuccess); /* pageable: waits */
    CHECK_MSG(page[0] == 8, "a pinned upload must read its source when it runs (got %g)", page[0]);
    /* The legacy default stream is not drained by syncing another stream (its
     * copy reads what s wrote before the host saw s finish: ordered, no race). */
    float *pin2 = NULL;
    CHECK(cudaHostAlloc((void **)&pin2, 4 * sizeof(float), cudaHostAllocDefault) == cudaSuccess);
    CHECK(cudaMemcpyAsync(pin2, d, 4 * sizeof(float), cudaMemcpyDeviceToHost, 0) == cudaSuccess);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    memcpy(&bits, &pin2[0], 4);
    CHECK_MSG(bits == 0xFFFFFFFFu, "work on stream 0 ran when a non-blocking stream was synchronised");
    CHECK(cudaDeviceSynchronize() == cudaSuccess);
    CHECK(pin2[0] == 8);
    CHECK(cudaFreeHost(pin2) == cudaSuccess);
    CHECK(cudaFreeHost(pin) == cudaSuccess);
    CHECK(cudaFree(d) == cudaSuccess);
    CHECK(cudaFree(d) == cudaErrorInvalidDevicePointer);
    CHECK(cudaStreamDestroy(s) == cudaSuccess);
    (void)cudaGetLastError();
}

/* SL_MOCK_DEVICE_MB bounds each device, as a full GPU would. */
static void memory_limit(void)
{
    void *a = NULL, *b = NULL;
    const size_t big = (size_t)3 << 30; /* the default device has 4 GiB */
    CHECK(cudaMalloc(&a, big) == cudaSuccess);
    CHECK(cudaMalloc(&b, big) == cudaErrorMemoryAllocation && b == NULL);
    CHECK(cudaGetLastError() == cudaErrorMemoryAllocation);
    CHECK(cudaFree(a) == cudaSuccess);
    CHECK(cudaMalloc(&b, big) == cudaSuccess);
    CHECK(cudaFree(b) == cudaSuccess);
}

/* The backend on the stand-in: open, work (FFTs of several sizes: plans, the
 * shared work area growing), close: nothing left allocated. */
static void backend_leaves_nothing(void)
{
    const size_t base = sl_mock_live_device_bytes(), pinned = sl_mock_live_pinned();
    sl_op_ctx *ctx = NULL;
    CHECK_MSG(sl_op_ctx_open(&ctx, "cuda") == 0, "%s", sl_lasterr());
    if (!ctx)
        return;
    CHECK(strstr(sl_op_ctx_device(ctx), "cudamock") != NULL);
    float *host = NULL, *din = NULL, *dout = NULL;
    CHECK(sl_op_host_alloc(ctx, (void **)&host, 4096 * 64 * sizeof(float)) == 0);
    CHECK(sl_op_alloc(ctx, (void **)&din, 4096 * 64 * sizeof(float)) == 0);
    CHECK(sl_op_alloc(ctx, (void **)&dout, 2 * 4096 * 64 * sizeof(float)) == 0);
    if (host && din && dout) {
        for (int i = 0; i < 4096 * 64; i++)
            host[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        CHECK(sl_op_upload(ctx, din, host, 4096 * 64 * sizeof(float)) == 0);
        for (int n = 16; n <= 4096; n *= 4)
            CHECK_MSG(sl_op_rfft(ctx, n, (size_t)(4096 * 64 / n), din, dout, 1.0f) == 0, "%s", sl_lasterr());
        CHECK(sl_op_download(ctx, host, dout, 2 * 4 * sizeof(float)) == 0);
        CHECK(host[0] == host[0]); /* DC of the last transform: a number, not the poison */
    }
    sl_op_free(ctx, dout);
    sl_op_free(ctx, din);
    sl_op_host_free(ctx, host);
    sl_op_ctx_close(ctx);
    CHECK_MSG(sl_mock_live_device_bytes() == base, "%zu device bytes left after the context closed",
              sl_mock_live_device_bytes() - base);
    CHECK_MSG(sl_mock_live_pinned() == pinned, "pinned buffers left after the context closed");
}

int main(void)
{
    death_tests();
    stream_semantics();
    memory_limit();
    backend_leaves_nothing();
    return sl_test_finish("cudamock");
}
