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

#include "common/sl_error.h"
#include "kernels/backend.h"
#include "kernels/ops.h"
#include "tests/unit/sl_test.h"

size_t sl_mock_live_device_bytes(void);
size_t sl_mock_live_fft_plans(void);

enum { N_FFT = 256, FRAMES = 48, N_IN = N_FFT * FRAMES, N_BINS = N_FFT / 2 + 1, N_SPEC = 2 * N_BINS * FRAMES };

static float g_in[N_IN], g_want_mag[N_BINS * FRAMES], g_want_back[N_IN];

/* The work: rfft scaled by 0.5 (cuFFT + a scale kernel), magnitude (a kernel),
 * irfft (the context scratch, a copy kernel, cuFFT). */
typedef struct {
    sl_op_ctx *ctx;
    float *din, *dspec, *dmag, *dback;
} job;

static int job_open(job *j, const char *backend)
{
    memset(j, 0, sizeof *j);
    int rc = sl_op_ctx_open(&j->ctx, backend);
    if (!rc)
        rc = sl_op_alloc(j->ctx, (void **)&j->din, sizeof g_in);
    if (!rc)
        rc = sl_op_alloc(j->ctx, (void **)&j->dspec, N_SPEC * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(j->ctx, (void **)&j->dmag, N_BINS * FRAMES * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(j->ctx, (void **)&j->dback, sizeof g_in);
    if (!rc)
        rc = sl_op_upload(j->ctx, j->din, g_in, sizeof g_in);
    return rc;
}

static int job_run(job *j)
{
    int rc = sl_op_rfft(j->ctx, N_FFT, FRAMES, j->din, j->dspec, 0.5f);
    if (!rc)
        rc = sl_op_magnitude(j->ctx, (size_t)N_BINS * FRAMES, j->dspec, j->dmag);
    if (!rc)
        rc = sl_op_irfft(j->ctx, N_FFT, FRAMES, j->dspec, j->dback, 2.0f / N_FFT);
    return rc;
}

static double rel_err(const float *got, const float *want, size_t n)
{
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        e = d > e || d != d ? d : e;
        m = fabs((double)want[i]) > m ? fabs((double)want[i]) : m;
    }
    return m > 0 ? e / m : e;
}

static void job_check(job *j, const char *what)
{
    static float mag[N_BINS * FRAMES], back[N_IN];
    int rc = sl_op_download(j->ctx, mag, j->dmag, sizeof mag);
    if (!rc)
        rc = sl_op_download(j->ctx, back, j->dback, sizeof back);
    CHECK_MSG(rc == 0, "%s: download: %s", what, sl_lasterr());
    if (rc)
        return;
    double em = rel_err(mag, g_want_mag, N_BINS * FRAMES), eb = rel_err(back, g_want_back, N_IN);
    CHECK_MSG(em <= 2e-6, "%s: magnitude error %g", what, em);
    CHECK_MSG(eb <= 2e-6, "%s: round-trip error %g", what, eb);
}

static void job_close(job *j)
{
    if (!j->ctx)
        return;
    sl_op_free(j->ctx, j->din);
    sl_op_free(j->ctx, j->dspec);
    sl_op_free(j->ctx, j->dmag);
    sl_op_free(j->ctx, j->dback);
    sl_op_ctx_close(j->ctx);
    j->ctx = NULL;
}

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
    for (int i = 0; i < N_IN; i++)
        g_in[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f + 0.25f * sinf(0.01f * (float)i);
    job ref;
    static float spec[N_SPEC];
    int rc = job_open(&ref, "cpu");
    if (!rc)
        rc = job_run(&ref);
    if (!rc)
        rc = sl_op_download(ref.ctx, g_want_mag, ref.dmag, sizeof g_want_mag);
    if (!rc)
        rc = sl_op_download(ref.ctx, g_want_back, ref.dback, sizeof g_want_back);
    if (!rc)
        rc = sl_op_download(ref.ctx, spec, ref.dspec, sizeof spec);
    job_close(&ref);
    CHECK_MSG(rc == 0, "CPU reference: %s", sl_lasterr());
    CHECK(rel_err(g_want_back, g_in, N_IN) < 1e-5); /* the reference itself round-trips */
    cross_thread();
    two_devices_one_thread();
    mock_refuses_wrong_device();
    return sl_test_finish("cudamock affinity");
}
