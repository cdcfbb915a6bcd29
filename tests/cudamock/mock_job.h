/* A small job for the cudamock tests on several contexts: rfft scaled by 0.5
 * (cuFFT + a scale kernel), magnitude (a kernel), irfft (the context scratch,
 * a copy kernel, cuFFT), checked against the same job on the CPU backend
 * (job_reference first). Static functions: included by one test file each. */
#ifndef SL_TEST_MOCK_JOB_H
#define SL_TEST_MOCK_JOB_H

#include <math.h>
#include <string.h>

#include "common/sl_error.h"
#include "kernels/ops.h"
#include "tests/unit/sl_test.h"

enum { N_FFT = 256, FRAMES = 48, N_IN = N_FFT * FRAMES, N_BINS = N_FFT / 2 + 1, N_SPEC = 2 * N_BINS * FRAMES };

static float g_in[N_IN], g_want_mag[N_BINS * FRAMES], g_want_back[N_IN];

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

/* Fills the input and computes the expected results on the CPU backend. */
static void job_reference(void)
{
    for (int i = 0; i < N_IN; i++)
        g_in[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f + 0.25f * sinf(0.01f * (float)i);
    job ref;
    int rc = job_open(&ref, "cpu");
    if (!rc)
        rc = job_run(&ref);
    if (!rc)
        rc = sl_op_download(ref.ctx, g_want_mag, ref.dmag, sizeof g_want_mag);
    if (!rc)
        rc = sl_op_download(ref.ctx, g_want_back, ref.dback, sizeof g_want_back);
    job_close(&ref);
    CHECK_MSG(rc == 0, "CPU reference: %s", sl_lasterr());
    CHECK(rel_err(g_want_back, g_in, N_IN) < 1e-5); /* the reference itself round-trips */
}

#endif
