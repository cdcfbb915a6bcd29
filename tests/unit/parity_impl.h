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
    void *p = NULL;
    if (sl_op_alloc(ctx, &p, (n ? n : 1) * sizeof(float)) < 0)
        return NULL;
    float *tmp = NULL;
    if (!host) {
        tmp = malloc((n ? n : 1) * sizeof(float));
        for (size_t i = 0; i < n; i++)
            tmp[i] = NAN;
        host = tmp;
    }
    int rc = sl_op_upload(ctx, p, host, n * sizeof(float));
    CHECK_MSG(rc == 0, "upload: %s", sl_lasterr());
    free(tmp);
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

/* ---- per-op runners: inputs from the host, output back on the host ---- */

static float *run_frame(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                        size_t first, size_t count, const float *w, int *rc)
{
    size_t n = (size_t)c->n_fft, no = batch * count * n;
    float *dx = pr_up(ctx, x, batch * len), *dw = pr_up(ctx, w, n), *dy = pr_up(ctx, NULL, no);
    *rc = sl_op_frame(ctx, c, dx, batch, len, first, count, dw, dy);
    float *h = pr_down(ctx, dy, no, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dy);
    return h;
}

static void case_frame(parity *P, int n_fft, int hop, sl_pad_mode pad, int center, size_t batch, size_t len,
                       int sub)
{
    sl_stft_cfg c = {n_fft, hop, center, pad, 0};
    size_t nf = sl_stft_n_frames(&c, len);
    size_t first = sub && nf > 2 ? 1 : 0, count = sub && nf > 2 ? nf - 2 : nf;
    float *x = pr_rand(batch * len), *w = malloc((size_t)n_fft * sizeof(float));
    sl_window_hann(w, n_fft, n_fft - n_fft / 5); /* a shorter, zero-padded window */
    int rc1, rc2;
    float *want = run_frame(P->ref, &c, x, batch, len, first, count, w, &rc1);
    float *got = run_frame(P->ctx, &c, x, batch, len, first, count, w, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu len%zu n%d h%d %s c%d frames %zu+%zu", batch, len, n_fft, hop,
             pad == SL_PAD_REFLECT ? "refl" : "const", center, first, count);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "frame %s: %s", shape, sl_lasterr());
    pr_report(P, "frame", shape, pr_err(got, want, batch * count * (size_t)n_fft), TOL_FRAME);
    free(x);
    free(w);
    free(want);
    free(got);
}

static float *run_fft(sl_op_ctx *ctx, int inverse, int n_fft, size_t count, const float *in, float scale, int *rc,
                      int *preserved)
{
    size_t nb2 = 2 * ((size_t)n_fft / 2 + 1), ni = count * (inverse ? nb2 : (size_t)n_fft),
           no = count * (inverse ? (size_t)n_fft : nb2);
    float *di = pr_up(ctx, in, ni), *dout = pr_up(ctx, NULL, no);
    *rc = inverse ? sl_op_irfft(ctx, n_fft, count, di, dout, scale) : sl_op_rfft(ctx, n_fft, count, di, dout, scale);
    float *h = pr_down(ctx, dout, no, rc);
    float *after = pr_down(ctx, di, ni, rc);
    *preserved = !memcmp(after, in, ni * sizeof(float));
    free(after);
    sl_op_free(ctx, di);
    sl_op_free(ctx, dout);
    return h;
}

static void case_fft(parity *P, int n_fft, size_t count)
{
    size_t nb2 = 2 * ((size_t)n_fft / 2 + 1);
    for (int inverse = 0; inverse < 2; inverse++)
        for (int norm = 0; norm < 2; norm++) {
            float scale = norm ? 1.0f / sqrtf((float)n_fft) : inverse ? 1.0f / (float)n_fft : 1.0f;
            size_t ni = count * (inverse ? nb2 : (size_t)n_fft), no = count * (inverse ? (size_t)n_fft : nb2);
            float *in = pr_rand(ni); /* inverse: not Hermitian-consistent, imag of DC/Nyquist must be ignored */
            int rc1, rc2, p1, p2;
            float *want = run_fft(P->ref, inverse, n_fft, count, in, scale, &rc1, &p1);
            float *got = run_fft(P->ctx, inverse, n_fft, count, in, scale, &rc2, &p2);
            char shape[128];
            snprintf(shape, sizeof shape, "n%d x%zu scale %s", n_fft, count,
                     norm ? "n^-1/2" : inverse ? "1/n" : "1");
            CHECK_MSG(rc1 == 0 && rc2 == 0, "%s %s: %s", inverse ? "irfft" : "rfft", shape, sl_lasterr());
            CHECK_MSG(p2, "%s %s: input modified", inverse ? "irfft" : "rfft", shape);
            pr_report(P, inverse ? "irfft" : "rfft", shape, pr_err(got, want, no), TOL_FFT);
            free(in);
            free(want);
            free(got);
        }
}

/* op 0 magnitude, 1 power, 2 apply_mask (3: apply_mask in place) */
static float *run_elem(sl_op_ctx *ctx, int op, size_t n, const float *z, const float *m, int *rc)
{
    size_t no = op >= 2 ? 2 * n : n;
    float *dz = pr_up(ctx, z, 2 * n), *dm = pr_up(ctx, m, n), *dy = op == 3 ? dz : pr_up(ctx, NULL, no);
    *rc = op == 0 ? sl_op_magnitude(ctx, n, dz, dy)
        : op == 1 ? sl_op_power(ctx, n, dz, dy)
                  : sl_op_apply_mask(ctx, n, dz, dm, dy);
    float *h = pr_down(ctx, dy, no, rc);
    if (dy != dz)
        sl_op_free(ctx, dy);
    sl_op_free(ctx, dz);
    sl_op_free(ctx, dm);
    return h;
}

static void case_elem(parity *P, size_t n)
{
    static const char *names[] = {"magnitude", "power", "apply_mask", "apply_mask"};
    float *z = pr_rand(2 * n), *m = pr_rand_pos(n);
    for (int op = 0; op < 4; op++) {
        int rc1, rc2;
        float *want = run_elem(P->ref, op, n, z, m, &rc1), *got = run_elem(P->ctx, op, n, z, m, &rc2);
        char shape[128];
        snprintf(shape, sizeof shape, "n%zu%s", n, op == 3 ? " in place" : "");
        CHECK_MSG(rc1 == 0 && rc2 == 0, "%s %s: %s", names[op], shape, sl_lasterr());
        pr_report(P, names[op], shape, pr_err(got, want, op >= 2 ? 2 * n : n), TOL_ELEM);
        free(want);
        free(got);
    }
    free(z);
    free(m);
}

static float *run_median(sl_op_ctx *ctx, int freq, size_t batch, size_t T, size_t F, int k, const float *x, int *rc)
{
    size_t n = batch * T * F;
    float *dx = pr_up(ctx, x, n), *dy = pr_up(ctx, NULL, n);
    *rc = freq ? sl_op_median_freq(ctx, batch, T, F, k, dx, dy) : sl_op_median_time(ctx, batch, T, F, k, dx, dy);
    float *h = pr_down(ctx, dy, n, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dy);
    return h;
}

static void case_median(parity *P, size_t batch, size_t T, size_t F, int k)
{
    size_t n = batch * T * F;
    float *x = pr_rand_pos(n);
    for (size_t i = 0; i < n; i += 5)
        x[i] = x[(i * 37) % n]; /* ties */
    if (n > 3)
        x[3] = -x[3]; /* a negative value and a zero: the keys must order them */
    if (n > 4)
        x[4] = 0.0f;
    for (int freq = 0; freq < 2; freq++) {
        int rc1, rc2;
        float *want = run_median(P->ref, freq, batch, T, F, k, x, &rc1);
        float *got = run_median(P->ctx, freq, batch, T, F, k, x, &rc2);
        char shape[128];
        snprintf(shape, sizeof shape, "b%zu T%zu F%zu k%d", batch, T, F, k);
        CHECK_MSG(rc1 == 0 && rc2 == 0, "median %s: %s", shape, sl_lasterr());
        pr_report(P, freq ? "median_freq" : "median_time", shape, pr_err(got, want, n), 0.0);
        free(want);
        free(got);
    }
    free(x);
}

static void run_masks(sl_op_ctx *ctx, size_t n, const float *h, const float *p, float power, float mh, float mp,
                      int in_place, float **oh, float **op, int *rc)
{
    float *dh = pr_up(ctx, h, n), *dp = pr_up(ctx, p, n);
    float *yh = in_place ? dh : pr_up(ctx, NULL, n), *yp = in_place ? dp : pr_up(ctx, NULL, n);
    *rc = sl_op_hpss_masks(ctx, n, dh, dp, power, mh, mp, yh, yp);
    *oh = pr_down(ctx, yh, n, rc);
    *op = pr_down(ctx, yp, n, rc);
    if (!in_place) {
        sl_op_free(ctx, yh);
        sl_op_free(ctx, yp);
    }
    sl_op_free(ctx, dh);
    sl_op_free(ctx, dp);
}

static void case_masks(parity *P, size_t n, float power, float mh, float mp, int in_place)
{
    float *h = pr_rand_pos(n), *p = pr_rand_pos(n);
    for (size_t i = 0; i < n; i++) {
        if (i % 11 == 3)
            h[i] = p[i] = 0.0f; /* both silent */
        if (i % 13 == 5)
            h[i] = 0.0f;
        if (i % 17 == 7)
            p[i] = 1e-39f; /* subnormal */
    }
    float *wh, *wp, *gh, *gp;
    int rc1, rc2;
    run_masks(P->ref, n, h, p, power, mh, mp, 0, &wh, &wp, &rc1);
    run_masks(P->ctx, n, h, p, power, mh, mp, in_place, &gh, &gp, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "n%zu p%g margins %g/%g%s", n, (double)power, (double)mh, (double)mp,
             in_place ? " in place" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "hpss_masks %s: %s", shape, sl_lasterr());
    pr_report(P, "hpss_masks", shape, fmax(pr_err(gh, wh, n), pr_err(gp, wp, n)), TOL_MASK);
    free(h);
    free(p);
    free(wh);
    free(wp);
    free(gh);
    free(gp);
}

static float *run_ola(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t nf, const float *fr, const float *w,
                      size_t length, int *rc)
{
    size_t n = (size_t)c->n_fft;
    float *dfr = pr_up(ctx, fr, batch * nf * n), *dw = pr_up(ctx, w, n), *dy = pr_up(ctx, NULL, batch * length);
    *rc = sl_op_overlap_add(ctx, c, batch, nf, dfr, dw, length, dy);
    float *h = pr_down(ctx, dy, batch * length, rc);
    sl_op_free(ctx, dfr);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dy);
    return h;
}

static void case_ola(parity *P, int n_fft, int hop, int center, size_t batch, size_t nf, size_t length)
{
    sl_stft_cfg c = {n_fft, hop, center, SL_PAD_REFLECT, 0};
    size_t n = (size_t)n_fft;
    float *fr = pr_rand(batch * nf * n), *w = malloc(n * sizeof(float));
    sl_window_hann(w, n_fft, n_fft);
    if (!center)
        for (size_t k = 0; k < n; k++)
            w[k] += 0.05f; /* Hann is 0 at sample 0: NOLA fails there without centring */
    int rc1, rc2;
    float *want = run_ola(P->ref, &c, batch, nf, fr, w, length, &rc1);
    float *got = run_ola(P->ctx, &c, batch, nf, fr, w, length, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu frames%zu n%d h%d len%zu c%d", batch, nf, n_fft, hop, length, center);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "overlap_add %s: %s", shape, sl_lasterr());
    pr_report(P, "overlap_add", shape, pr_err(got, want, batch * length), TOL_OLA);
    free(fr);
    free(w);
    free(want);
    free(got);
}

/* NOLA: the CPU fails in the call; CUDA backends at the next sync / download.
 * Either way the caller sees SL_ENUMERIC naming NOLA before it sees data, and
 * the error is reported once. */
static void case_nola(parity *P)
{
    sl_stft_cfg c = {64, 64, 1, SL_PAD_CONSTANT, 0};
    float *fr = pr_rand(3 * 64), *w = malloc(64 * sizeof(float));
    sl_window_hann(w, 64, 64);
    float *dfr = pr_up(P->ctx, fr, 3 * 64), *dw = pr_up(P->ctx, w, 64), *dy = pr_up(P->ctx, NULL, 64);
    int rc = sl_op_overlap_add(P->ctx, &c, 1, 3, dfr, dw, 64, dy);
    if (rc == 0)
        rc = sl_op_sync(P->ctx);
    CHECK_MSG(rc == SL_ENUMERIC && strstr(sl_lasterr(), "NOLA"), "NOLA: %d %s", rc, sl_lasterr());
    CHECK_MSG(sl_op_sync(P->ctx) == 0, "the NOLA error is reported once");
    printf("  %-9s %-15s %-44s %s\n", P->name, "overlap_add", "NOLA (Hann, hop == n_fft)",
           rc == SL_ENUMERIC ? "SL_ENUMERIC ok" : "FAIL");
    P->rows++;
    sl_op_free(P->ctx, dfr);
    sl_op_free(P->ctx, dw);
    sl_op_free(P->ctx, dy);
    free(fr);
    free(w);
}

static float *run_mel(sl_op_ctx *ctx, size_t count, int nb, int n_mels, const float *fb, const float *spec, int *rc)
{
    float *dfb = pr_up(ctx, fb, (size_t)n_mels * nb), *ds = pr_up(ctx, spec, count * nb),
          *dm = pr_up(ctx, NULL, count * n_mels);
    *rc = sl_op_mel(ctx, count, nb, n_mels, dfb, ds, dm);
    float *h = pr_down(ctx, dm, count * n_mels, rc);
    sl_op_free(ctx, dfb);
    sl_op_free(ctx, ds);
    sl_op_free(ctx, dm);
    return h;
}

static void case_mel(parity *P, int sr, int n_fft, int n_mels, size_t count)
{
    int nb = n_fft / 2 + 1;
    float *fb = malloc((size_t)n_mels * nb * sizeof(float));
    CHECK(sl_mel_filterbank(fb, sr, n_fft, n_mels, 0, 0) == 0);
    float *spec = pr_rand_pos(count * nb);
    for (size_t i = 0; i < count * nb; i++)
        spec[i] *= spec[i];
    int rc1, rc2;
    float *want = run_mel(P->ref, count, nb, n_mels, fb, spec, &rc1);
    float *got = run_mel(P->ctx, count, nb, n_mels, fb, spec, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "frames%zu bins%d mels%d", count, nb, n_mels);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "mel %s: %s", shape, sl_lasterr());
    pr_report(P, "mel", shape, pr_err(got, want, count * n_mels), TOL_MEL);
    free(fb);
    free(spec);
    free(want);
    free(got);
}

static float *run_db(sl_op_ctx *ctx, size_t batch, size_t n, const float *x, float top_db, int in_place, int *rc)
{
    float *dx = pr_up(ctx, x, batch * n), *dy = in_place ? dx : pr_up(ctx, NULL, batch * n);
    *rc = sl_op_log_db(ctx, batch, n, dx, 1e-10f, top_db, dy);
    float *h = pr_down(ctx, dy, batch * n, rc);
    if (!in_place)
        sl_op_free(ctx, dy);
    sl_op_free(ctx, dx);
    return h;
}

static void case_db(parity *P, size_t batch, size_t n, float top_db, int in_place)
{
    float *x = pr_rand_pos(batch * n);
    for (size_t b = 0; b < batch; b++)
        for (size_t i = 0; i < n; i++) {
            float *v = &x[b * n + i];
            *v *= powf(10.0f, (float)b * 2.0f - 2.0f); /* items of very different levels */
            if (i % 7 == 2)
                *v = 1e-13f; /* under amin */
        }
    int rc1, rc2;
    float *want = run_db(P->ref, batch, n, x, top_db, 0, &rc1);
    float *got = run_db(P->ctx, batch, n, x, top_db, in_place, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu n%zu top_db %g%s", batch, n, (double)top_db, in_place ? " in place" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "log_db %s: %s", shape, sl_lasterr());
    pr_report(P, "log_db", shape, pr_err(got, want, batch * n), TOL_DB);
    free(x);
    free(want);
    free(got);
}

static float *run_pool(sl_op_ctx *ctx, size_t batch, size_t T, size_t F, const float *x, int *rc)
{
    float *dx = pr_up(ctx, x, batch * T * F), *dy = pr_up(ctx, NULL, batch * 4 * F);
    *rc = sl_op_stats_pool(ctx, batch, T, F, dx, dy);
    float *h = pr_down(ctx, dy, batch * 4 * F, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dy);
    return h;
}

static void case_pool(parity *P, size_t batch, size_t T, size_t F)
{
    float *x = pr_rand(batch * T * F);
    for (size_t i = 0; i < batch * T * F; i++)
        x[i] = -60.0f + 3.0f * x[i]; /* log-mel like: small spread around a large mean */
    int rc1, rc2;
    float *want = run_pool(P->ref, batch, T, F, x, &rc1), *got = run_pool(P->ctx, batch, T, F, x, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu T%zu F%zu", batch, T, F);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "stats_pool %s: %s", shape, sl_lasterr());
    pr_report(P, "stats_pool", shape, pr_err(got, want, batch * 4 * F), TOL_POOL);
    free(x);
    free(want);
    free(got);
}

/* Tracks of different lengths in one batch: frames of every track into one
 * buffer (per-track sl_op_frame calls at offsets), one rfft over all of them,
 * magnitude, per-track medians, masks, apply, one irfft over all, per-track
 * overlap_add. Each stage's output is compared with the CPU backend's. */
typedef struct {
    float *frames, *spec, *mag, *mt, *mf, *mh, *mp, *y;
} pr_stages;

static void run_tracks(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t n_tracks, const size_t *len, float *const *x,
                       const float *w, size_t total_frames, size_t total_len, pr_stages *out, int *rc)
{
    const size_t n = (size_t)c->n_fft, nb = n / 2 + 1;
    float *dw = pr_up(ctx, w, n), *dx[8] = {NULL};
    float *fr = pr_up(ctx, NULL, total_frames * n), *sp = pr_up(ctx, NULL, total_frames * nb * 2);
    float *mag = pr_up(ctx, NULL, total_frames * nb), *mt = pr_up(ctx, NULL, total_frames * nb),
          *mf = pr_up(ctx, NULL, total_frames * nb), *y = pr_up(ctx, NULL, total_len);
    *rc = 0;
    size_t f0 = 0;
    for (size_t t = 0; t < n_tracks && !*rc; t++) {
        dx[t] = pr_up(ctx, x[t], len[t]);
        sl_stft_cfg ct = *c; /* as the models do: too short to reflect -> zero padding */
        if (len[t] <= n / 2)
            ct.pad = SL_PAD_CONSTANT;
        size_t nf = sl_stft_n_frames(&ct, len[t]);
        *rc = sl_op_frame(ctx, &ct, dx[t], 1, len[t], 0, nf, dw, fr + f0 * n);
        f0 += nf;
    }
    if (!*rc)
        *rc = sl_op_rfft(ctx, c->n_fft, total_frames, fr, sp, 1.0f);
    if (!*rc)
        *rc = sl_op_magnitude(ctx, total_frames * nb, sp, mag);
    f0 = 0;
    for (size_t t = 0; t < n_tracks && !*rc; t++) {
        size_t nf = sl_stft_n_frames(c, len[t]);
        *rc = sl_op_median_time(ctx, 1, nf, nb, 17, mag + f0 * nb, mt + f0 * nb);
        if (!*rc)
            *rc = sl_op_median_freq(ctx, 1, nf, nb, 9, mag + f0 * nb, mf + f0 * nb);
        f0 += nf;
    }
    out->mt = pr_down(ctx, mt, total_frames * nb, rc);
    out->mf = pr_down(ctx, mf, total_frames * nb, rc);
    if (!*rc) /* masks over the medians in place, then the harmonic part back to samples */
        *rc = sl_op_hpss_masks(ctx, total_frames * nb, mt, mf, 2.0f, 2.0f, 2.0f, mt, mf);
    if (!*rc)
        *rc = sl_op_apply_mask(ctx, total_frames * nb, sp, mt, sp);
    out->spec = pr_down(ctx, sp, total_frames * nb * 2, rc);
    if (!*rc)
        *rc = sl_op_irfft(ctx, c->n_fft, total_frames, sp, fr, 1.0f / (float)n);
    f0 = 0;
    size_t y0 = 0;
    for (size_t t = 0; t < n_tracks && !*rc; t++) {
        size_t nf = sl_stft_n_frames(c, len[t]);
        *rc = sl_op_overlap_add(ctx, c, 1, nf, fr + f0 * n, dw, len[t], y + y0);
        f0 += nf;
        y0 += len[t];
    }
    out->frames = pr_down(ctx, fr, total_frames * n, rc);
    out->mag = pr_down(ctx, mag, total_frames * nb, rc);
    out->mh = pr_down(ctx, mt, total_frames * nb, rc);
    out->mp = pr_down(ctx, mf, total_frames * nb, rc);
    out->y = pr_down(ctx, y, total_len, rc);
    for (size_t t = 0; t < n_tracks; t++)
        sl_op_free(ctx, dx[t]);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, fr);
    sl_op_free(ctx, sp);
    sl_op_free(ctx, mag);
    sl_op_free(ctx, mt);
    sl_op_free(ctx, mf);
    sl_op_free(ctx, y);
}

static void case_tracks(parity *P, int n_fft, int hop, const size_t *len, size_t n_tracks)
{
    sl_stft_cfg c = {n_fft, hop, 1, SL_PAD_REFLECT, 0};
    const size_t n = (size_t)n_fft, nb = n / 2 + 1;
    float *x[8], *w = malloc(n * sizeof(float));
    sl_window_hann(w, n_fft, n_fft);
    size_t total_frames = 0, total_len = 0;
    char shape[128];
    int off = snprintf(shape, sizeof shape, "n%d h%d tracks", n_fft, hop);
    for (size_t t = 0; t < n_tracks; t++) {
        x[t] = pr_rand(len[t]);
        total_frames += sl_stft_n_frames(&c, len[t]);
        total_len += len[t];
        off += snprintf(shape + off, sizeof shape - (size_t)off, "%s%zu", t ? "," : " ", len[t]);
    }
    pr_stages a, b;
    int rc1, rc2;
    run_tracks(P->ref, &c, n_tracks, len, x, w, total_frames, total_len, &a, &rc1);
    run_tracks(P->ctx, &c, n_tracks, len, x, w, total_frames, total_len, &b, &rc2);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "tracks %s: %d %d %s", shape, rc1, rc2, sl_lasterr());
    /* Each stage is fed by the backend's own previous stage, so errors may
     * compound; the medians are exact selections of slightly different inputs. */
    pr_report(P, "[tracks]mag", shape, pr_err(b.mag, a.mag, total_frames * nb), TOL_FFT);
    pr_report(P, "[tracks]med_t", shape, pr_err(b.mt, a.mt, total_frames * nb), TOL_FFT);
    pr_report(P, "[tracks]med_f", shape, pr_err(b.mf, a.mf, total_frames * nb), TOL_FFT);
    pr_report(P, "[tracks]masks", shape, fmax(pr_err(b.mh, a.mh, total_frames * nb), pr_err(b.mp, a.mp, total_frames * nb)),
              1e-4);
    pr_report(P, "[tracks]istft", shape, pr_err(b.y, a.y, total_len), 1e-4);
    for (size_t t = 0; t < n_tracks; t++)
        free(x[t]);
    free(w);
    float **pa = (float **)&a, **pb = (float **)&b;
    for (size_t i = 0; i < sizeof a / sizeof(float *); i++) {
        free(pa[i]);
        free(pb[i]);
    }
}

/* ---- neural-network ops ---- */

static const char *act_name(sl_act a)
{
    return a == SL_ACT_RELU ? "relu" : a == SL_ACT_TANH ? "tanh" : a == SL_ACT_GELU ? "gelu" : "none";
}

/* Runs a gemm whose x, w, bias, mul, y are host arrays of the given element counts. */
static float *run_gemm(sl_op_ctx *ctx, const sl_gemm_args *h, size_t nx, size_t nw, size_t nb, size_t nm, size_t ny,
                       int *rc)
{
    sl_gemm_args a = *h;
    float *dx = pr_up(ctx, h->x, nx), *dw = pr_up(ctx, h->w, nw), *db = h->bias ? pr_up(ctx, h->bias, nb) : NULL,
          *dm = h->mul ? pr_up(ctx, h->mul, nm) : NULL, *dy = pr_up(ctx, h->y, ny);
    a.x = dx;
    a.w = dw;
    a.bias = db;
    a.mul = dm;
    a.y = dy;
    *rc = sl_op_gemm(ctx, &a);
    float *out = pr_down(ctx, dy, ny, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, db);
    sl_op_free(ctx, dm);
    sl_op_free(ctx, dy);
    return out;
}

/* gemm over a batch: x ld = k + padx (stride 0 when share_x), y ld = n + pady. */
static void case_gemm(parity *P, size_t batch, size_t m, size_t n, size_t k, int bias, sl_act act, int mul,
                      int share_x, size_t pad)
{
    sl_gemm_args a;
    memset(&a, 0, sizeof a);
    a.batch = batch;
    a.m = m;
    a.n = n;
    a.k = k;
    a.ldx = k + pad;
    a.stride_x = share_x ? 0 : m * a.ldx + 3;
    a.ldw = k;
    a.stride_w = n * k;
    a.stride_bias = n;
    a.act = act;
    a.ldmul = n + 1;
    a.stride_mul = m * a.ldmul;
    a.ldy = n + pad;
    a.stride_y = m * a.ldy + 5;
    const size_t nx = (share_x ? 1 : batch) * (m * a.ldx + 3), nw = batch * n * k, nb = batch * n,
                 nm = batch * a.stride_mul, ny = batch * a.stride_y;
    float *x = pr_rand(nx), *w = pr_rand(nw), *b = pr_rand(nb), *mm = pr_rand_pos(nm), *y0 = malloc(ny * sizeof(float));
    for (size_t i = 0; i < ny; i++)
        y0[i] = 7.0f; /* elements outside the rows must stay untouched */
    a.x = x;
    a.w = w;
    a.bias = bias ? b : NULL;
    a.mul = mul ? mm : NULL;
    a.y = y0;
    int rc1, rc2;
    float *want = run_gemm(P->ref, &a, nx, nw, nb, nm, ny, &rc1);
    float *got = run_gemm(P->ctx, &a, nx, nw, nb, nm, ny, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu m%zu n%zu k%zu%s %s%s%s ld+%zu", batch, m, n, k, bias ? " bias" : "",
             act_name(act), mul ? " mul" : "", share_x ? " shared-x" : "", pad);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "gemm %s: %s", shape, sl_lasterr());
    size_t untouched_bad = 0;
    for (size_t bb = 0; bb < batch; bb++)
        for (size_t i = 0; i < a.stride_y; i++) {
            size_t r = i / a.ldy, c = i % a.ldy;
            if ((r >= m || c >= n) && got[bb * a.stride_y + i] != 7.0f)
                untouched_bad++;
        }
    CHECK_MSG(untouched_bad == 0, "gemm %s: %zu elements outside the output written", shape, untouched_bad);
    pr_report(P, "gemm", shape, pr_err(got, want, ny), TOL_GEMM);
    free(x);
    free(w);
    free(b);
    free(mm);
    free(y0);
    free(want);
    free(got);
}

static float *run_affine(sl_op_ctx *ctx, const sl_affine_args *h, size_t nx, size_t np, size_t ny, int in_place,
                         int *rc)
{
    sl_affine_args a = *h;
    float *dx = pr_up(ctx, h->x, nx), *dadd = h->add ? pr_up(ctx, h->add, np) : NULL,
          *dmul = h->mul ? pr_up(ctx, h->mul, np) : NULL, *dy = in_place ? dx : pr_up(ctx, h->y, ny);
    a.x = dx;
    a.add = dadd;
    a.mul = dmul;
    a.y = dy;
    *rc = sl_op_affine(ctx, &a);
    float *out = pr_down(ctx, dy, ny, rc);
    if (!in_place)
        sl_op_free(ctx, dy);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dadd);
    sl_op_free(ctx, dmul);
    return out;
}

static void case_affine(parity *P, size_t batch, size_t rows, size_t cols, int add, int mul, sl_act act, int in_place)
{
    sl_affine_args a;
    memset(&a, 0, sizeof a);
    a.batch = batch;
    a.rows = rows;
    a.cols = cols;
    a.ldx = in_place ? cols : cols + 2;
    a.stride_x = rows * a.ldx;
    a.stride_p = cols;
    a.act = act;
    a.ldy = in_place ? cols : 2 * cols + 1;
    a.stride_y = rows * a.ldy;
    const size_t nx = batch * a.stride_x, np = batch * cols, ny = batch * a.stride_y;
    float *x = pr_rand(nx), *pa = pr_rand(np), *pm = pr_rand(np), *y0 = malloc(ny * sizeof(float));
    for (size_t i = 0; i < ny; i++)
        y0[i] = 7.0f;
    a.x = x;
    a.add = add ? pa : NULL;
    a.mul = mul ? pm : NULL;
    a.y = in_place ? x : y0;
    int rc1, rc2;
    float *want = run_affine(P->ref, &a, nx, np, ny, in_place, &rc1);
    float *got = run_affine(P->ctx, &a, nx, np, ny, in_place, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu rows%zu cols%zu%s%s %s%s", batch, rows, cols, add ? " add" : "",
             mul ? " mul" : "", act_name(act), in_place ? " in place" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "affine %s: %s", shape, sl_lasterr());
    pr_report(P, "affine", shape, pr_err(got, want, ny), TOL_AFFINE);
    free(x);
    free(pa);
    free(pm);
    free(y0);
    free(want);
    free(got);
}

static float *run_lstm(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
                       const float *w, size_t nw, size_t stride_w, size_t ldy, int *rc)
{
    const size_t nx = batch * T * ldx, ny = batch * T * ldy;
    float *dx = pr_up(ctx, x, nx), *dw = pr_up(ctx, w, nw), *dy = pr_up(ctx, NULL, ny);
    *rc = sl_op_lstm(ctx, c, batch, T, dx, ldx, T * ldx, dw, stride_w, dy, ldy, T * ldy);
    float *out = pr_down(ctx, dy, ny, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dy);
    return out;
}

static void case_lstm(parity *P, int layers, int input, int hidden, int bidir, size_t batch, size_t T, int shared_w)
{
    sl_lstm_cfg c = {layers, input, hidden, bidir};
    const size_t per = sl_lstm_weights_floats(&c), nw = shared_w ? per : batch * per;
    const size_t O = (size_t)(1 + bidir) * (size_t)hidden, ldx = (size_t)input + 1, ldy = O + 2;
    float *x = pr_rand(batch * T * ldx), *w = pr_rand(nw);
    const float ws = 1.0f / sqrtf((float)hidden); /* torch's init range: gates neither saturated nor linear */
    for (size_t i = 0; i < nw; i++)
        w[i] *= ws;
    int rc1, rc2;
    float *want = run_lstm(P->ref, &c, batch, T, x, ldx, w, nw, shared_w ? 0 : per, ldy, &rc1);
    float *got = run_lstm(P->ctx, &c, batch, T, x, ldx, w, nw, shared_w ? 0 : per, ldy, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu T%zu L%d in%d H%d %s%s", batch, T, layers, input, hidden,
             bidir ? "bidir" : "unidir", shared_w ? " shared-w" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "lstm %s: %s", shape, sl_lasterr());
    /* only the O output columns of each row are defined (the padding stays NaN on both) */
    pr_report(P, "lstm", shape, pr_err(got, want, batch * T * ldy), TOL_LSTM);
    free(x);
    free(w);
    free(want);
    free(got);
}

static float *run_wiener(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t J, size_t T, size_t F, const float *mix,
                         const float *mag, int *rc)
{
    const size_t S = J + (c->residual ? 1 : 0), no = S * 2 * T * F * 2;
    float *dmix = pr_up(ctx, mix, 2 * T * F * 2), *dmag = pr_up(ctx, mag, J * 2 * T * F), *dout = pr_up(ctx, NULL, no);
    *rc = sl_op_wiener(ctx, c, J, T, F, dmix, dmag, dout);
    float *out = pr_down(ctx, dout, no, rc);
    sl_op_free(ctx, dmix);
    sl_op_free(ctx, dmag);
    sl_op_free(ctx, dout);
    return out;
}

static void case_wiener(parity *P, size_t J, size_t T, size_t F, int niter, int softmask, int residual, int win,
                        float level)
{
    sl_wiener_cfg c = {niter, softmask, residual, win, 1e-10f};
    float *mix = pr_rand(2 * T * F * 2), *mag = pr_rand_pos(J * 2 * T * F);
    for (size_t i = 0; i < 2 * T * F * 2; i++)
        mix[i] *= level; /* level > 10: the max(1, max|x|/10) scaling is active */
    for (size_t i = 0; i < J * 2 * T * F; i++)
        mag[i] *= level;
    for (size_t i = 0; i < 2 * T * F; i += 17) { /* exact zeros: the reference's atan2 turns them into 1 + 0i */
        mix[2 * i] = 0.0f;
        mix[2 * i + 1] = 0.0f;
    }
    int rc1, rc2;
    const size_t no = (J + (residual ? 1 : 0)) * 2 * T * F * 2;
    float *want = run_wiener(P->ref, &c, J, T, F, mix, mag, &rc1);
    float *got = run_wiener(P->ctx, &c, J, T, F, mix, mag, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "J%zu T%zu F%zu niter%d%s%s win%d x%g", J, T, F, niter, softmask ? " soft" : "",
             residual ? " resid" : "", win, (double)level);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "wiener %s: %s", shape, sl_lasterr());
    pr_report(P, "wiener", shape, pr_err(got, want, no), TOL_WIENER);
    free(mix);
    free(mag);
    free(want);
    free(got);
}

/* A long dot product (k = umxhq fc1's 2974) against the exact sum (double):
 * every backend, the CPU reference included, must be as accurate as a float
 * BLAS, max |y - exact| <= TOL_GEMM_EXACT * max |exact|. OpenBLAS ~3e-7; a
 * plain running sum over k (the GPU kernel before its blocked summation)
 * ~2e-6: it fails here. */
#define TOL_GEMM_EXACT 1e-6
static void case_gemm_exact(parity *P, size_t m, size_t n, size_t k)
{
    sl_gemm_args a;
    memset(&a, 0, sizeof a);
    a.batch = 1;
    a.m = m;
    a.n = n;
    a.k = k;
    a.ldx = a.ldw = k;
    a.ldy = n;
    a.stride_x = m * k;
    a.stride_w = n * k;
    a.stride_y = m * n;
    a.act = SL_ACT_NONE;
    float *x = pr_rand(m * k), *w = pr_rand(n * k), *y0 = pr_rand(m * n);
    double *exact = malloc(m * n * sizeof(double));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double sum = 0;
            for (size_t l = 0; l < k; l++)
                sum += (double)x[i * k + l] * (double)w[j * k + l];
            exact[i * n + j] = sum;
        }
    a.x = x;
    a.w = w;
    a.y = y0;
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    const char *names[2] = {"cpu", P->name};
    for (int q = 0; q < 2; q++) {
        int rc = 0;
        float *got = run_gemm(ctxs[q], &a, m * k, n * k, 0, 0, m * n, &rc);
        char shape[128];
        snprintf(shape, sizeof shape, "m%zu n%zu k%zu vs exact (%s)", m, n, k, names[q]);
        CHECK_MSG(rc == 0 && got, "gemm %s: %s", shape, sl_lasterr());
        if (got)
            pr_report(P, "gemm", shape, sl_ref_err(got, exact, m * n), TOL_GEMM_EXACT);
        free(got);
    }
    free(x);
    free(w);
    free(y0);
    free(exact);
}

static void nn_cases(parity *P, int big)
{
    case_gemm(P, 1, 1, 1, 1, 0, SL_ACT_NONE, 0, 0, 0);
    case_gemm(P, 3, 70, 33, 100, 1, SL_ACT_RELU, 0, 0, 3); /* several tiles, padded rows */
    case_gemm(P, 2, 5, 130, 17, 1, SL_ACT_TANH, 1, 1, 0);   /* shared x, product epilogue */
    case_gemm(P, 1, 65, 64, 16, 0, SL_ACT_NONE, 1, 0, 1);   /* one past a tile */
    case_gemm_exact(P, 64, 64, 2974);                       /* long sums: blocked summation */
    case_affine(P, 1, 1, 1, 1, 1, SL_ACT_NONE, 0);
    case_affine(P, 4, 9, 300, 1, 1, SL_ACT_TANH, 0);
    case_affine(P, 2, 5, 33, 0, 1, SL_ACT_RELU, 1);
    case_lstm(P, 1, 3, 5, 0, 1, 4, 0);
    case_lstm(P, 3, 16, 8, 1, 4, 23, 0); /* the Open-Unmix structure, small */
    case_lstm(P, 2, 20, 37, 1, 2, 6, 1); /* gate rows not a multiple of 32, shared weights */
    case_lstm(P, 1, 4, 300, 0, 1, 3, 0); /* 1200 gate rows: more rows than threads */
    case_wiener(P, 4, 7, 33, 1, 0, 0, 300, 1.0f);
    case_wiener(P, 4, 11, 20, 1, 1, 0, 4, 30.0f);  /* softmask, several windows, scaling on */
    case_wiener(P, 2, 9, 17, 2, 0, 1, 0, 50.0f);   /* residual, two iterations */
    case_wiener(P, 3, 5, 9, 0, 0, 1, 2, 1.0f);     /* no EM */
    case_wiener(P, 1, 6, 5, 1, 1, 1, 300, 3.0f);   /* one target + residual */
    if (big) {
        case_gemm(P, 4, 1300, 512, 2974, 1, SL_ACT_TANH, 0, 0, 0); /* umxhq fc1 */
        case_gemm(P, 2, 1300, 2049, 512, 1, SL_ACT_RELU, 1, 1, 0); /* umxhq fc3 per target */
        case_lstm(P, 3, 512, 256, 1, 4, 1300, 0);                  /* umxhq LSTM, 30 s */
        case_wiener(P, 4, 1300, 2049, 1, 0, 0, 300, 40.0f);
    }
}

/* ---- convolutional ops (Cnn14) ---- */

static void case_conv2d(parity *P, size_t batch, int ci, int co, int h, int w, int k, int bias, sl_act act)
{
    const size_t nx = batch * (size_t)ci * h * w, nw = (size_t)co * ci * k * k, ny = batch * (size_t)co * h * w;
    float *x = pr_rand(nx), *wt = pr_rand(nw), *bi = pr_rand((size_t)co), *out[2];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, nx), *dw = pr_up(ctxs[s], wt, nw), *db = pr_up(ctxs[s], bi, (size_t)co);
        float *dy = pr_up(ctxs[s], NULL, ny);
        sl_conv2d_args a = {batch, ci, co, h, w, k, dx, dw, bias ? db : NULL, act, dy};
        int r = sl_op_conv2d(ctxs[s], &a);
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, ny, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dw);
        sl_op_free(ctxs[s], db);
        sl_op_free(ctxs[s], dy);
    }
    CHECK_MSG(rc == 0, "conv2d: %s", sl_lasterr());
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu c%d->%d %dx%d k%d%s %s", batch, ci, co, h, w, k, bias ? " bias" : "",
             act_name(act));
    pr_report(P, "conv2d", shape, pr_err(out[1], out[0], ny), 1e-5);
    free(x);
    free(wt);
    free(bi);
    free(out[0]);
    free(out[1]);
}

static void case_avg_pool2d(parity *P, size_t planes, int h, int w, int kh, int kw)
{
    const size_t nx = planes * (size_t)h * w, ny = planes * (size_t)(h / kh) * (w / kw);
    float *x = pr_rand(nx), *out[2];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, nx), *dy = pr_up(ctxs[s], NULL, ny);
        int r = sl_op_avg_pool2d(ctxs[s], planes, h, w, kh, kw, dx, dy);
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, ny, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dy);
    }
    CHECK_MSG(rc == 0, "avg_pool2d: %s", sl_lasterr());
    char shape[128];
    snprintf(shape, sizeof shape, "p%zu %dx%d / %dx%d", planes, h, w, kh, kw);
    pr_report(P, "avg_pool2d", shape, pr_err(out[1], out[0], ny), 1e-6);
    free(x);
    free(out[0]);
    free(out[1]);
}

static void case_clip_pool(parity *P, size_t planes, size_t T, size_t F)
{
    const size_t nx = planes * T * F;
    float *x = pr_rand(nx), *out[2];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, nx), *dy = pr_up(ctxs[s], NULL, planes);
        int r = sl_op_clip_pool(ctxs[s], planes, T, F, dx, dy);
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, planes, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dy);
    }
    CHECK_MSG(rc == 0, "clip_pool: %s", sl_lasterr());
    char shape[128];
    snprintf(shape, sizeof shape, "p%zu T%zu F%zu", planes, T, F);
    pr_report(P, "clip_pool", shape, pr_err(out[1], out[0], planes), 1e-6);
    free(x);
    free(out[0]);
    free(out[1]);
}

/* A convolution with a long sum (Cnn14 block 6: 2048 input channels x 9 taps)
 * against the exact sum (double), both backends, max |y - exact| <= 1e-6 *
 * max |exact|, as case_gemm_exact. */
static void case_conv2d_exact(parity *P, int ci, int co, int h, int w)
{
    const int k = 3;
    const size_t hw = (size_t)h * w, nx = (size_t)ci * hw, nw = (size_t)co * ci * 9, ny = (size_t)co * hw;
    float *x = pr_rand(nx), *wt = pr_rand(nw);
    double *exact = malloc(ny * sizeof(double));
    sl_ref_conv2d(x, wt, NULL, 1, ci, co, h, w, k, SL_ACT_NONE, exact);
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    const char *names[2] = {"cpu", P->name};
    for (int s = 0; s < 2; s++) {
        int rc = 0;
        float *dx = pr_up(ctxs[s], x, nx), *dw = pr_up(ctxs[s], wt, nw), *dy = pr_up(ctxs[s], NULL, ny);
        sl_conv2d_args a = {1, ci, co, h, w, k, dx, dw, NULL, SL_ACT_NONE, dy};
        if (dx && dw && dy)
            rc = sl_op_conv2d(ctxs[s], &a);
        else
            rc = SL_ENOMEM;
        float *got = pr_down(ctxs[s], dy, ny, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dw);
        sl_op_free(ctxs[s], dy);
        char shape[128];
        snprintf(shape, sizeof shape, "c%d->%d %dx%d k3 vs exact (%s)", ci, co, h, w, names[s]);
        CHECK_MSG(rc == 0 && got, "conv2d %s: %s", shape, sl_lasterr());
        if (got)
            pr_report(P, "conv2d", shape, sl_ref_err(got, exact, ny), TOL_GEMM_EXACT);
        free(got);
    }
    free(x);
    free(wt);
    free(exact);
}

static void conv_cases(parity *P, int big)
{
    case_conv2d(P, 1, 1, 1, 1, 1, 3, 0, SL_ACT_NONE);      /* one pixel: all taps but the centre pad */
    case_conv2d(P, 2, 3, 10, 19, 21, 3, 1, SL_ACT_RELU);   /* two tiles each way, 10 = 8 + 2 channels */
    case_conv2d(P, 1, 5, 4, 33, 2, 3, 1, SL_ACT_TANH);     /* Cnn14's last blocks: 2 mel columns */
    case_conv2d(P, 1, 4, 9, 7, 5, 1, 1, SL_ACT_NONE);      /* 1x1 */
    case_conv2d(P, 1, 2, 3, 6, 9, 5, 0, SL_ACT_RELU);      /* 5x5 */
    case_conv2d_exact(P, 2048, 8, 16, 4);                   /* long sums (Cnn14 block 6): blocked summation */
    case_avg_pool2d(P, 3, 9, 7, 2, 2);                      /* odd sizes: floor */
    case_avg_pool2d(P, 2, 5, 5, 1, 1);
    case_avg_pool2d(P, 1, 4, 6, 2, 3);
    case_clip_pool(P, 1, 1, 1);
    case_clip_pool(P, 3, 7, 5);
    case_clip_pool(P, 2, 300, 2);                            /* more frames than threads */
    if (big) {
        case_conv2d(P, 2, 64, 128, 250, 32, 3, 1, SL_ACT_RELU); /* Cnn14 block 2, 5 s */
        case_avg_pool2d(P, 2 * 128, 250, 32, 2, 2);
        case_clip_pool(P, 2 * 2048, 31, 2);
    }
}

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
