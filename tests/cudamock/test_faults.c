/* The CUDA backend's error paths, with faults injected into cudamock (two
 * devices of 64 MiB):
 *  - the default pool's release threshold leaves room beside the pool for
 *    allocations outside it (cuDNN's, cuFFT's, other processes');
 *  - out of memory in the pool: cached blocks are released and the allocation
 *    retried before the caller sees SL_ENOMEM;
 *  - a cuFFT work area that cannot grow leaves the plan cache as it was (every
 *    cached plan still runs, the failed plan is not kept);
 *  - a sticky error (cudaErrorIllegalAddress) loses the device: SL_EDEVLOST at
 *    the sync that sees it, then at once on every call and every new context
 *    on that device, never retried there; the other device goes on. */
#include <cuda_runtime_api.h>
#include <stdlib.h>

#include "tests/cudamock/mock_job.h"

size_t sl_mock_live_fft_plans(void);
void sl_mock_fail_allocs_from(size_t bytes);
void sl_mock_inject_fault(int device, int error);
size_t sl_mock_pool_release_threshold(int device);

#define MIB ((size_t)1 << 20)

static void pool_threshold_and_trim(void)
{
    sl_op_ctx *ctx = NULL;
    CHECK_MSG(sl_op_ctx_open(&ctx, "cuda:0") == 0, "%s", sl_lasterr());
    if (!ctx)
        return;
    /* total - min(512 MiB, total / 4) */
    CHECK_MSG(sl_mock_pool_release_threshold(0) == 48 * MIB, "release threshold %zu",
              sl_mock_pool_release_threshold(0));

    /* 60 MiB freed into the pool: the sync keeps 48 MiB at most, so a plain
     * cudaMalloc of 30 MiB (what cuDNN or cuFFT would ask) finds room. */
    void *a = NULL, *b = NULL;
    CHECK(sl_op_alloc(ctx, &a, 30 * MIB) == 0);
    CHECK(sl_op_alloc(ctx, &b, 30 * MIB) == 0);
    sl_op_free(ctx, a);
    sl_op_free(ctx, b);
    CHECK(sl_op_sync(ctx) == 0);
    void *p = NULL;
    CHECK(cudaSetDevice(0) == cudaSuccess);
    CHECK_MSG(cudaMalloc(&p, 30 * MIB) == cudaSuccess, "the pool kept all its cached memory");
    CHECK(cudaFree(p) == cudaSuccess);
    (void)cudaGetLastError();

    /* The pool still caches one 30 MiB block: 40 MiB fits only once it is
     * released, which the backend does on out-of-memory before giving up. */
    void *c = NULL;
    int rc = sl_op_alloc(ctx, &c, 40 * MIB);
    CHECK_MSG(rc == 0, "40 MiB beside a cached 30 MiB block: %s", sl_lasterr());
    sl_op_free(ctx, c);
    /* more than the device: still SL_ENOMEM after the retry */
    rc = sl_op_alloc(ctx, &c, 80 * MIB);
    CHECK_MSG(rc == SL_ENOMEM && c == NULL, "80 MiB on a 64 MiB device: %d %s", rc, sl_lasterr());
    sl_op_ctx_close(ctx);
}

static void fft_area_failure(void)
{
    job j;
    CHECK_MSG(job_open(&j, "cuda:0") == 0, "%s", sl_lasterr());
    float *big = NULL, *big_out = NULL;
    const int n_big = 4096, frames_big = 64; /* work area 64 * 2049 * 8 bytes > 1 MiB */
    CHECK(sl_op_alloc(j.ctx, (void **)&big, (size_t)n_big * frames_big * sizeof(float)) == 0);
    CHECK(sl_op_alloc(j.ctx, (void **)&big_out, (size_t)(n_big + 2) * frames_big * sizeof(float)) == 0);
    CHECK(sl_op_upload(j.ctx, big, g_in, sizeof g_in) == 0);
    CHECK_MSG(job_run(&j) == 0, "%s", sl_lasterr());
    job_check(&j, "before the failure");
    const size_t plans = sl_mock_live_fft_plans();
    sl_mock_fail_allocs_from(MIB);
    int rc = sl_op_rfft(j.ctx, n_big, frames_big, big, big_out, 1.0f);
    sl_mock_fail_allocs_from(0);
    CHECK_MSG(rc == SL_ENOMEM, "work area allocation failure: %d %s", rc, sl_lasterr());
    CHECK_MSG(sl_mock_live_fft_plans() == plans, "%zu plans kept after the failure (%zu before)",
              sl_mock_live_fft_plans(), plans);
    /* the cached plans still have their work area */
    CHECK_MSG(job_run(&j) == 0, "after the failure: %s", sl_lasterr());
    job_check(&j, "after the failure");
    /* and the big plan works once memory is there */
    CHECK_MSG(sl_op_rfft(j.ctx, n_big, frames_big, big, big_out, 1.0f) == 0, "%s", sl_lasterr());
    CHECK(sl_op_sync(j.ctx) == 0);
    CHECK_MSG(job_run(&j) == 0, "after the growth: %s", sl_lasterr());
    job_check(&j, "after the growth");
    sl_op_free(j.ctx, big);
    sl_op_free(j.ctx, big_out);
    job_close(&j);
}

static void sticky_fault(void)
{
    job j0, j1;
    CHECK_MSG(job_open(&j0, "cuda:0") == 0, "%s", sl_lasterr());
    CHECK_MSG(job_open(&j1, "cuda:1") == 0, "%s", sl_lasterr());
    if (!j0.ctx || !j1.ctx)
        return;
    sl_mock_inject_fault(1, cudaErrorIllegalAddress);
    int rc = job_run(&j1);
    if (rc == 0)
        rc = sl_op_sync(j1.ctx);
    CHECK_MSG(rc == SL_EDEVLOST && strstr(sl_lasterr(), "cudaErrorIllegalAddress") && strstr(sl_lasterr(), "lost"),
              "the fault: %d %s", rc, sl_lasterr());
    /* never retried there: every later call and every new context refuse at once */
    rc = job_run(&j1);
    CHECK_MSG(rc == SL_EDEVLOST && strstr(sl_lasterr(), "device 1"), "after the fault: %d %s", rc, sl_lasterr());
    void *p = NULL;
    CHECK(sl_op_alloc(j1.ctx, &p, 1024) == SL_EDEVLOST && p == NULL);
    sl_op_ctx *again = NULL;
    rc = sl_op_ctx_open(&again, "cuda:1");
    CHECK_MSG(rc == SL_EDEVLOST && again == NULL, "a new context on the lost device: %d %s", rc, sl_lasterr());
    /* the other device is unaffected */
    CHECK_MSG(job_run(&j0) == 0, "device 0: %s", sl_lasterr());
    job_check(&j0, "device 0 beside a lost device 1");
    job_close(&j1); /* teardown of a lost context: no crash, no hang */
    job_close(&j0);
}

int main(void)
{
    setenv("SL_MOCK_DEVICES", "2", 1); /* read at the stand-in's first call */
    setenv("SL_MOCK_DEVICE_MB", "64", 1);
    job_reference();
    pool_threshold_and_trim();
    fft_area_failure();
    sticky_fault();
    return sl_test_finish("cudamock faults");
}
