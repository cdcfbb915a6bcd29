/* Backend parity against the CPU reference backend, shared by
 * tests/unit/test_parity.c (backends cuda-emu and cuda, modest shapes) and
 * tests/gpu/test_cuda_parity.c (backend cuda, larger shapes too).
 *
 * Every op runs on the CPU backend and on the backend under test with the same
 * fresh random inputs (never zeros; seed printed, SL_TEST_SEED replays), the
 * outputs of the tested backend poisoned with NaN first, so an element it does
 * not write fails. One line per op and shape: backend, op, shape, normalised
 * error max|got - cpu| / max|cpu|, tolerance. Awkward shapes: odd lengths and
 * odd n_fft, one frame, one element, kernels longer than the axis, more bins or
 * frames than one block covers, and a batch of tracks of different lengths
 * (framed per track into one buffer, transformed as ONE batch, inverse
 * transformed as one batch, overlap-added per track: that is how the op API
 * batches unequal tracks, see kernels/README.md). The models hpss and melstats
 * run unchanged on the backend and are compared with the CPU backend. */
#ifndef SL_PARITY_IMPL_H
#define SL_PARITY_IMPL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/ops.h"
#include "models/model.h"
#include "sl_ref.h"
#include "sl_test.h"

/* ---- random inputs ---- */

static uint64_t pr_rng;

static void pr_seed(const char *who)
{
    const char *env = getenv("SL_TEST_SEED");
    pr_rng = env ? strtoull(env, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    if (!pr_rng)
        pr_rng = 1;
    printf("%s: random seed %llu (SL_TEST_SEED to replay)\n", who, (unsigned long long)pr_rng);
}

/* Uniform in [-1, 1), never exactly 0. */
static float pr_rnd(void)
{
    for (;;) {
        pr_rng ^= pr_rng >> 12;
        pr_rng ^= pr_rng << 25;
        pr_rng ^= pr_rng >> 27;
        double u = (double)((pr_rng * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
        float v = (float)(2.0 * u - 1.0);
        if (v != 0.0f)
            return v;
    }
}

static float *pr_rand(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = pr_rnd();
    return p;
}

static float *pr_rand_pos(size_t n)
{
    float *p = pr_rand(n);
    for (size_t i = 0; i < n; i++)
        p[i] = fabsf(p[i]);
    return p;
}

/* ---- backend buffers ---- */

/* Backend copy of host[n]; host NULL: poisoned with NaN. */
static float *pr_up(sl_op_ctx *ctx, const float *host, size_t n)
{
    float *p = sl_test_dev_buf(ctx, host, n);
    CHECK_MSG(p != NULL, "upload: %s", sl_lasterr());
    return p;
}

/* Host copy of dev[n]; *rc keeps the first error (a download reports deferred ones). */
static float *pr_down(sl_op_ctx *ctx, const float *dev, size_t n, int *rc)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    int r = sl_op_download(ctx, h, dev, n * sizeof(float));
    if (r < 0 && *rc == 0)
        *rc = r;
    return h;
}

/* max|got - want| / max|want|; an element where only one side is NaN counts as infinite. */
static double pr_err(const float *got, const float *want, size_t n)
{
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs((double)want[i]) > mx)
            mx = fabs((double)want[i]);
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isnan(want[i])) {
            if (!(isnan(got[i]) && isnan(want[i])))
                err = INFINITY;
            continue;
        }
        double e = fabs((double)got[i] - want[i]);
        if (e > err)
            err = e;
    }
    return err / (mx > 1e-30 ? mx : 1.0);
}

typedef struct {
    sl_op_ctx *ref; /* the CPU reference backend */
    sl_op_ctx *ctx; /* the backend under test */
    const char *name;
    int big;        /* larger shapes (real GPU) */
    int rows;       /* lines printed */
} parity;

static void pr_report(parity *P, const char *op, const char *shape, double err, double tol)
{
    P->rows++;
    printf("  %-9s %-15s %-44s err %-9.3g (tol %.0e) %s\n", P->name, op, shape, err, tol, err <= tol ? "ok" : "FAIL");
    CHECK_MSG(err <= tol, "%s %s %s: error %g > %g", P->name, op, shape, err, tol);
}

/* Tolerances against the CPU backend (kernels/README.md). FFTs: exact on
 * cuda-emu (the CPU transform), cuFFT vs FFTW on a GPU. */
#define TOL_FRAME 1e-7
#define TOL_FFT 2e-6
#define TOL_ELEM 1e-6
#define TOL_MASK 1e-5
#define TOL_OLA 1e-5
#define TOL_MEL 1e-6
#define TOL_DB 1e-6
#define TOL_POOL 1e-6
#define TOL_MODEL 1e-5
/* Neural-network ops: float sums in another order than OpenBLAS (gemm, lstm);
 * the Wiener filter inverts 2x2 covariances, which amplifies ulp differences
 * (FMA contraction, atanf/cosf on a GPU) where they are ill-conditioned. */
#define TOL_GEMM 1e-5
#define TOL_AFFINE 1e-6
#define TOL_LSTM 1e-5
#define TOL_WIENER 1e-4

#include "parity_spec.h"
#include "parity_nn.h"

/* ---- the models, unchanged, on the backend under test ---- */

static void case_models(parity *P, size_t n_sep, size_t n_emb)
{
    sl_sep_model *ms[2] = {NULL, NULL};
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    float *in[2] = {pr_rand(n_sep), pr_rand(n_sep)};
    for (size_t i = 0; i < n_sep; i++) { /* a tone + clicks + noise, so both masks have work */
        in[0][i] = 0.5f * sinf(0.05f * (float)i) + (i % 2000 == 0 ? 0.9f : 0.0f) + 0.05f * in[0][i];
        in[1][i] = 0.3f * sinf(0.11f * (float)i) + 0.1f * in[1][i];
    }
    float *buf[2][3][2];
    float *rows[2][3][2];
    float *const *outp[2][3];
    int rc[2];
    for (int k = 0; k < 2; k++) {
        rc[k] = sl_sep_open(&ms[k], "hpss", NULL, NULL, ctxs[k]);
        for (int s = 0; s < 3; s++) {
            for (int ch = 0; ch < 2; ch++) {
                buf[k][s][ch] = malloc(n_sep * sizeof(float));
                for (size_t i = 0; i < n_sep; i++)
                    buf[k][s][ch][i] = NAN;
                rows[k][s][ch] = buf[k][s][ch];
            }
            outp[k][s] = rows[k][s];
        }
        if (rc[k] == 0)
            rc[k] = sl_sep_run(ms[k], (const float *const *)in, n_sep, (float *const *const *)outp[k]);
    }
    CHECK_MSG(rc[0] == 0 && rc[1] == 0, "hpss on %s: %s", P->name, sl_lasterr());
    static const char *stems[3] = {"harmonic", "percussive", "residual"};
    for (int s = 0; s < 3; s++) {
        double e = 0;
        for (int ch = 0; ch < 2; ch++)
            e = fmax(e, pr_err(buf[1][s][ch], buf[0][s][ch], n_sep));
        char shape[128];
        snprintf(shape, sizeof shape, "model hpss stereo n%zu %s", n_sep, stems[s]);
        pr_report(P, "[model]hpss", shape, e, TOL_MODEL);
    }
    for (int k = 0; k < 2; k++) {
        sl_sep_close(ms[k]);
        for (int s = 0; s < 3; s++)
            for (int ch = 0; ch < 2; ch++)
                free(buf[k][s][ch]);
    }
    free(in[0]);
    free(in[1]);

    sl_emb_model *me[2] = {NULL, NULL};
    float *x = pr_rand(n_emb), v[2][256];
    for (size_t i = 0; i < n_emb; i++)
        x[i] = 0.4f * sinf(0.07f * (float)i) + 0.2f * x[i];
    const float *xin[1] = {x};
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 256; i++)
            v[k][i] = NAN;
        rc[k] = sl_emb_open(&me[k], "melstats", NULL, NULL, ctxs[k]);
        if (rc[k] == 0)
            rc[k] = sl_emb_run(me[k], xin, n_emb, v[k]);
        sl_emb_close(me[k]);
    }
    CHECK_MSG(rc[0] == 0 && rc[1] == 0, "melstats on %s: %s", P->name, sl_lasterr());
    char shape[128];
    snprintf(shape, sizeof shape, "model melstats mono n%zu (256-d)", n_emb);
    pr_report(P, "[model]melstats", shape, pr_err(v[1], v[0], 256), TOL_MODEL);
    free(x);
}

/* sl_op_copy: n floats to an odd offset of a poisoned buffer, queued between
 * an upload and a download; the neighbours must stay poisoned. Bit-exact. */
static void case_copy(parity *P, size_t n)
{
    float *h = pr_rand(n);
    float *src = pr_up(P->ctx, h, n), *dst = pr_up(P->ctx, NULL, n + 2);
    int rc = src && dst ? sl_op_copy(P->ctx, dst + 1, src, n * sizeof(float)) : SL_ENOMEM;
    CHECK_MSG(rc == 0, "copy: %s", sl_lasterr());
    float *got = pr_down(P->ctx, dst, n + 2, &rc);
    size_t bad_n = 0;
    for (size_t i = 0; i < n; i++)
        bad_n += memcmp(&got[i + 1], &h[i], sizeof(float)) != 0;
    CHECK_MSG(rc == 0 && isnan(got[0]) && isnan(got[n + 1]), "copy n%zu: wrote outside its range", n);
    char shape[64];
    snprintf(shape, sizeof shape, "n%zu to offset 1", n);
    pr_report(P, "copy", shape, bad_n ? INFINITY : 0.0, 0.0);
    CHECK(sl_op_copy(P->ctx, dst, dst + 1, 2 * sizeof(float)) == SL_EINVAL); /* overlap refused */
    sl_op_free(P->ctx, src);
    sl_op_free(P->ctx, dst);
    free(h);
    free(got);
}

#include "parity_xf.h"
#include "parity_conv1d.h"

/* Opens backend `name` and runs the whole parity on it. Returns 0 when the
 * backend was tested, 1 when it is absent (printed SKIPPED, never passed). */
static int parity_run(const char *name, int big)
{
    sl_op_ctx *ref = NULL, *ctx = NULL;
    int rc = sl_op_ctx_open(&ctx, name);
    if (rc < 0) {
        printf("parity: backend %-9s SKIPPED (%s)\n", name, sl_lasterr());
        return 1;
    }
    for (int op = 0; op < SL_OP_COUNT; op++)
        CHECK_MSG(sl_op_supported(ctx, (sl_op_id)op), "%s lacks op %s", name, sl_op_name((sl_op_id)op));
    CHECK(sl_op_ctx_open(&ref, "cpu") == 0);
    printf("parity: backend %s on %s, against the cpu backend\n", name, sl_op_ctx_device(ctx));
    parity P = {ref, ctx, name, big, 0};

    case_frame(&P, 16, 4, SL_PAD_REFLECT, 1, 1, 9, 0);
    case_frame(&P, 255, 100, SL_PAD_CONSTANT, 1, 2, 37, 0); /* odd n_fft, odd length */
    case_frame(&P, 256, 64, SL_PAD_REFLECT, 1, 3, 1001, 1); /* sub-range of frames */
    case_frame(&P, 64, 64, SL_PAD_CONSTANT, 1, 1, 1, 0);    /* one sample, one frame */
    case_frame(&P, 100, 30, SL_PAD_REFLECT, 0, 2, 333, 0);  /* no centring */
    CHECK_MSG(sl_op_reserve(ctx, 1024, 5) == 0, "reserve: %s", sl_lasterr()); /* plans made up front */
    case_fft(&P, 2, 1);
    case_fft(&P, 16, 3);
    case_fft(&P, 255, 2);
    case_fft(&P, 1024, 5);
    case_copy(&P, 1);
    case_copy(&P, 10007);
    case_elem(&P, 1);
    case_elem(&P, 10007);
    case_median(&P, 1, 1, 1, 3);
    case_median(&P, 2, 9, 33, 31);   /* kernel longer than both axes */
    case_median(&P, 1, 5, 7, 401);   /* kernel past the shared-memory tile: global-memory path */
    case_median(&P, 2, 70, 300, 7);  /* several blocks along both axes */
    case_median(&P, 1, 40, 50, 255); /* largest kernel the hpss model takes */
    case_masks(&P, 1, 2.0f, 2.0f, 2.0f, 0);
    case_masks(&P, 4099, 2.0f, 2.0f, 2.0f, 1);
    case_masks(&P, 1001, 1.0f, 1.0f, 1.0f, 0);
    case_masks(&P, 333, 1.5f, 1.0f, 3.0f, 0);
    case_ola(&P, 16, 4, 1, 1, 1, 1);
    case_ola(&P, 256, 64, 1, 3, 17, 1001);
    case_ola(&P, 255, 85, 1, 2, 9, 900); /* length past the last frame: zeros */
    case_ola(&P, 64, 16, 0, 1, 5, 100);
    case_ola(&P, 7, 3, 1, 2, 1, 5);      /* one frame, odd n_fft */
    case_nola(&P);
    case_mel(&P, 16000, 64, 8, 1);
    case_mel(&P, 16000, 512, 40, 37);
    case_mel(&P, 22050, 2048, 64, 20);
    case_db(&P, 1, 1, 80.0f, 0);
    case_db(&P, 3, 1480, 0.0f, 0);
    case_db(&P, 3, 1480, 20.0f, 1);
    case_pool(&P, 1, 1, 8);
    case_pool(&P, 2, 2, 40);
    case_pool(&P, 3, 37, 33);
    {
        static const size_t lens[] = {1000, 37, 4097};
        case_tracks(&P, 256, 64, lens, 3);
    }
    case_models(&P, big ? 44100 * 3 + 7 : 6000, big ? 22050 * 5 + 3 : 5000);
    nn_cases(&P, big);
    conv_cases(&P, big);
    xf_cases(&P, big);
    conv1d_cases(&P, big);
    if (big) {
        case_fft(&P, 4096, 2049);   /* > one cuFFT chunk: two power-of-two plans + 1 */
        case_fft(&P, 65536, 129);
        case_frame(&P, 4096, 1024, SL_PAD_REFLECT, 1, 4, 44100 * 10, 0);
        case_elem(&P, (size_t)1 << 22);
        case_median(&P, 2, 2600, 1025, 31);
        case_masks(&P, (size_t)1 << 21, 2.0f, 2.0f, 2.0f, 1);
        case_ola(&P, 4096, 1024, 1, 4, 431, 44100 * 10);
        case_mel(&P, 22050, 2048, 128, 2600);
        case_db(&P, 2, 2600 * 128, 80.0f, 1);
        case_pool(&P, 4, 2600, 128);
    }
    printf("parity: backend %s: %d op/shape lines\n", name, P.rows);
    sl_op_ctx_close(ctx);
    sl_op_ctx_close(ref);
    return 0;
}

#endif
