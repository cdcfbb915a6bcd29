/* Device affinity on two mocked devices: CUDA's current device is per host
 * thread, and a launch, a free or a cuFFT execution for a device that is not
 * current fails (cudamock enforces it, see mock.h). The backend makes its
 * context's device current at every entry point, so a context opened in one
 * thread can be used and closed in another, and one thread can drive contexts
 * on two devices in turn. Each case's results must equal the CPU backend's,
 * and closing must leave no device memory and no cuFFT plan behind. */
#include <cuda_runtime_api.h>
#include <cufft.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/backend.h"
#include "tests/cudamock/mock_job.h"

size_t sl_mock_live_device_bytes(void);
size_t sl_mock_live_fft_plans(void);

static void *use_and_close(void *arg)
{
    /* A fresh thread: its current device is 0 whatever the opener's was. */
    job *j = arg;
    int rc = job_run(j);
    CHECK_MSG(rc == 0, "cuda:1 used from another thread: %s", sl_lasterr());
    if (!rc)
        job_check(j, "cuda:1 used from another thread");
    job_close(j);
    return NULL;
}

static void *open_only(void *arg)
{
    job *j = arg;
    int rc = job_open(j, "cuda:1");
    CHECK_MSG(rc == 0, "open cuda:1: %s", sl_lasterr());
    return NULL;
}

/* Opened in one thread, used and closed in another (and the main thread's
 * current device left at 0 throughout). */
static void cross_thread(void)
{
    const size_t bytes0 = sl_mock_live_device_bytes(), plans0 = sl_mock_live_fft_plans();
    job j;
    pthread_t a, b;
    CHECK(pthread_create(&a, NULL, open_only, &j) == 0);
    pthread_join(a, NULL);
    if (!j.ctx)
        return;
    CHECK(strstr(sl_op_ctx_device(j.ctx), "CUDA device 1") != NULL);
    CHECK(pthread_create(&b, NULL, use_and_close, &j) == 0);
    pthread_join(b, NULL);
    CHECK_MSG(sl_mock_live_device_bytes() == bytes0, "%zu device bytes left", sl_mock_live_device_bytes() - bytes0);
    CHECK_MSG(sl_mock_live_fft_plans() == plans0, "%zu cuFFT plans left", sl_mock_live_fft_plans() - plans0);
}

/* One thread, two devices, the calls interleaved; closed in the opposite order. */
static void two_devices_one_thread(void)
{
    const size_t bytes0 = sl_mock_live_device_bytes(), plans0 = sl_mock_live_fft_plans();
    job j0, j1;
    CHECK_MSG(job_open(&j0, "cuda:0") == 0, "open cuda:0: %s", sl_lasterr());
    CHECK_MSG(job_open(&j1, "cuda:1") == 0, "open cuda:1: %s", sl_lasterr());
    if (j0.ctx && j1.ctx) {
        CHECK_MSG(job_run(&j0) == 0, "cuda:0: %s", sl_lasterr());
        CHECK_MSG(job_run(&j1) == 0, "cuda:1: %s", sl_lasterr());
        job_check(&j0, "cuda:0 beside cuda:1");
        job_check(&j1, "cuda:1 beside cuda:0");
        CHECK_MSG(job_run(&j0) == 0, "cuda:0 again: %s", sl_lasterr());
        job_check(&j0, "cuda:0 again");
    }
    job_close(&j0);
    job_close(&j1);
    CHECK_MSG(sl_mock_live_device_bytes() == bytes0, "%zu device bytes left", sl_mock_live_device_bytes() - bytes0);
    CHECK_MSG(sl_mock_live_fft_plans() == plans0, "%zu cuFFT plans left", sl_mock_live_fft_plans() - plans0);
}

/* The stand-in refuses what the driver refuses: without the backend's entry
 * hook (the table called directly), a launch for device 1 from a thread whose
 * current device is 0 fails; so do a free and a cuFFT execution. */
static void mock_refuses_wrong_device(void)
{
    extern const sl_op_backend sl_cuda_backend;
    job j;
    CHECK_MSG(job_open(&j, "cuda:1") == 0, "open cuda:1: %s", sl_lasterr());
    if (!j.ctx)
        return;
    CHECK(cudaSetDevice(0) == cudaSuccess);
    int rc = sl_cuda_backend.magnitude(j.ctx, (size_t)N_BINS * FRAMES, j.dspec, j.dmag);
    CHECK_MSG(rc == SL_EDEVICE && strstr(sl_lasterr(), "cudaErrorInvalidResourceHandle"),
              "a launch on device 1's stream with device 0 current: rc %d, %s", rc, sl_lasterr());
    job_close(&j); /* through ops.c: fine again */

    void *p = NULL;
    CHECK(cudaSetDevice(1) == cudaSuccess);
    CHECK(cudaMalloc(&p, 1024) == cudaSuccess);
    cufftHandle h;
    int n = 64;
    size_t work = 0;
    CHECK(cufftCreate(&h) == CUFFT_SUCCESS);
    CHECK(cufftMakePlanMany(h, 1, &n, NULL, 1, 0, NULL, 1, 0, CUFFT_R2C, 1, &work) == CUFFT_SUCCESS);
    CHECK(cudaSetDevice(0) == cudaSuccess);
    CHECK(cudaFree(p) == cudaErrorInvalidDevicePointer);
    (void)cudaGetLastError();
    CHECK(cufftExecR2C(h, (cufftReal *)p, (cufftComplex *)p) == CUFFT_INVALID_DEVICE);
    CHECK(cufftDestroy(h) == CUFFT_INVALID_DEVICE);
    CHECK(cudaSetDevice(1) == cudaSuccess);
    CHECK(cufftDestroy(h) == CUFFT_SUCCESS);
    CHECK(cudaFree(p) == cudaSuccess);
    CHECK(cudaSetDevice(0) == cudaSuccess);
}

int main(void)
{
    setenv("SL_MOCK_DEVICES", "2", 1); /* read at the stand-in's first call */
    job_reference();
    cross_thread();
    two_devices_one_thread();
    mock_refuses_wrong_device();
    return sl_test_finish("cudamock affinity");
}
