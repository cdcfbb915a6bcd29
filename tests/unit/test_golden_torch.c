/* STFT / iSTFT against torch.stft / torch.istft themselves (golden files in
 * tests/golden/torch/, made by tools/gen_golden_torch.py with Debian's torch
 * 1.13.1, float64 reference stored as float32):
 *  - stft_*: sl_op_frame + sl_op_rfft (scale 1 or n_fft^-1/2) with
 *    sl_window_hann(w, n_fft, win_length) (a short window zero-padded centrally,
 *    as torch pads it): odd lengths, odd n_fft, win_length < n_fft, reflect and
 *    constant, normalized on/off, a signal shorter than n_fft, a stereo batch;
 *    the frame count must equal torch's.
 *  - istft_*: sl_op_irfft (1/n_fft or n_fft^-1/2) + sl_op_overlap_add on random
 *    (inconsistent) spectra: explicit length past the last frame (the tail must
 *    be exactly 0, as torch pads it), explicit shorter length, no length (torch
 *    keeps hop*(frames-1) samples), odd n_fft, win_length < n_fft, a batch.
 *  - nola_*: torch.istft raised RuntimeError ("window overlap add min"); the
 *    op must fail with SL_ENUMERIC naming NOLA, never return numbers.
 * Tolerance: max|got - torch| / max|torch| <= 1e-5 over each file (float32
 * FFTW against a float64 reference; measured ~2e-7, see the printed lines);
 * for the iSTFT also the same measure weighted by the window envelope (see
 * env_err), since a plain max over samples is dominated by the huge values an
 * inconsistent spectrum takes where the envelope is tiny.
 * Runs on every backend that opens and implements the ops; others are printed
 * as SKIPPED. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/ops.h"
#include "sl_golden.h"
#include "sl_test.h"

#define TOL 1e-5

static const char *const stft_files[] = {
    "stft_n256_h64_reflect_odd",
    "stft_n512_h128_reflect_norm",
    "stft_n400_h160_constant",
    "stft_n400_h100_constant_short",
    "stft_n512_h128_win400_reflect",
    "stft_n1024_h256_win777_constant_norm",
    "stft_n1023_h250_reflect_oddfft",
    "stft_n255_h64_win200_reflect_norm_oddfft",
    "stft_n512_h128_constant_stereo",
    "stft_n2048_h512_reflect",
};

static const char *const istft_files[] = {
    "istft_n256_h64_len_past_end",
    "istft_n512_h128_win400_norm_len_short",
    "istft_n300_h75_nolength",
    "istft_n255_h85_norm_oddfft",
    "istft_n1024_h256_win600_stereo",
};

static const char *const nola_files[] = {
    "nola_n256_h256",
    "nola_n512_win256_h256",
};

static double worst_stft, worst_istft, worst_istft_env;

/* Same error measured before the envelope division: max|(got - want)*env| /
 * max|want*env|, env[p] = sum_m w[p + n_fft/2 - m*hop]^2 (double). Where the
 * envelope is tiny (the tail of the last frame) an inconsistent spectrum gives
 * huge samples that would dominate max|want| and hide errors everywhere else;
 * weighting by env removes that. */
static double env_err(const float *got, const float *want, size_t batch, size_t length, const float *w, int n_fft,
                      int hop, size_t nf)
{
    double mx = 0, err = 0;
    size_t start = (size_t)n_fft / 2;
    for (size_t i = 0; i < length; i++) {
        double env = 0;
        size_t p = i + start;
        for (size_t m = 0; m < nf; m++) {
            size_t o = m * (size_t)hop;
            if (p >= o && p - o < (size_t)n_fft)
                env += (double)w[p - o] * w[p - o];
        }
        for (size_t b = 0; b < batch; b++) {
            double a = (double)want[b * length + i], e = fabs((double)got[b * length + i] - a) * env;
            mx = fmax(mx, fabs(a) * env);
            if (!(e <= err))
                err = isnan(e) ? INFINITY : e;
        }
    }
    return err / (mx > 1e-30 ? mx : 1.0);
}

/* max|got - want| / max|want|; NaN anywhere -> infinity. */
static double norm_err(const float *got, const float *want, size_t n)
{
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++)
        mx = fmax(mx, fabs((double)want[i]));
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - (double)want[i]);
        if (!(e <= err))
            err = isnan(e) ? INFINITY : e;
    }
    return err / (mx > 1e-30 ? mx : 1.0);
}

static int load(slg_file *g, const char *name)
{
    int rc = slg_load_in(g, "torch", name);
    CHECK_MSG(rc == 0, "golden torch/%s missing or malformed", name);
    return rc;
}

/* dims of array NAME, or NULL */
static const size_t *dims_of(const slg_file *g, const char *name, int *ndim)
{
    for (int i = 0; i < g->n_arrays; i++)
        if (!strcmp(g->aname[i], name)) {
            *ndim = g->andim[i];
            return g->adims[i];
        }
    return NULL;
}

static void check_stft(sl_op_ctx *ctx, const char *name)
{
    slg_file g;
    if (load(&g, name) < 0)
        return;
    const char *pad = slg_param(&g, "pad");
    sl_stft_cfg c = {slg_int(&g, "n_fft"), slg_int(&g, "hop"), 1,
                     pad && !strcmp(pad, "reflect") ? SL_PAD_REFLECT : SL_PAD_CONSTANT, slg_int(&g, "normalized")};
    int wl = slg_int(&g, "win_length");
    size_t batch = (size_t)slg_int(&g, "batch"), len = (size_t)slg_int(&g, "length"), nx = 0, nspec = 0;
    const float *x = slg_array(&g, "x", &nx), *spec = slg_array(&g, "spec", &nspec);
    int nd = 0;
    const size_t *sd = dims_of(&g, "spec", &nd);
    size_t n = (size_t)c.n_fft, nb = n / 2 + 1, nf = sl_stft_n_frames(&c, len);
    CHECK_MSG(x && spec && sd && nd == 4 && nx == batch * len, "%s: unexpected arrays", name);
    if (!x || !spec || !sd || nd != 4 || nx != batch * len) {
        slg_free(&g);
        return;
    }
    CHECK_MSG(sd[0] == batch && sd[1] == nf && sd[2] == nb && sd[3] == 2,
              "%s: stemline frames x bins %zu x %zu, torch %zu x %zu", name, nf, nb, sd[1], sd[2]);
    if (nspec != batch * nf * nb * 2) {
        slg_free(&g);
        return;
    }
    float *w = malloc(n * sizeof(float)), *got = malloc(nspec * sizeof(float));
    CHECK(sl_window_hann(w, c.n_fft, wl) == 0);
    float *dx = sl_test_dev_buf(ctx, x, nx), *dw = sl_test_dev_buf(ctx, w, n), *dfr = sl_test_dev_buf(ctx, NULL, batch * nf * n);
    float *dsp = sl_test_dev_buf(ctx, NULL, nspec);
    int rc = dx && dw && dfr && dsp ? 0 : SL_ENOMEM;
    if (!rc)
        rc = sl_op_frame(ctx, &c, dx, batch, len, 0, nf, dw, dfr);
    if (!rc)
        rc = sl_op_rfft(ctx, c.n_fft, batch * nf, dfr, dsp, c.normalized ? 1.0f / sqrtf((float)n) : 1.0f);
    if (!rc)
        rc = sl_op_download(ctx, got, dsp, nspec * sizeof(float));
    CHECK_MSG(rc == 0, "%s: %s", name, sl_lasterr());
    double e = rc ? INFINITY : norm_err(got, spec, nspec);
    worst_stft = fmax(worst_stft, e);
    printf("  %-5s %-42s stft  max|err|/max|X_torch| = %.3g (tol %g)\n", sl_op_ctx_backend(ctx), name, e, TOL);
    CHECK_MSG(e <= TOL, "%s: %s stft error %g > %g", sl_op_ctx_backend(ctx), name, e, TOL);
    free(w);
    free(got);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dfr);
    sl_op_free(ctx, dsp);
    slg_free(&g);
}

static void check_istft(sl_op_ctx *ctx, const char *name)
{
    slg_file g;
    if (load(&g, name) < 0)
        return;
    sl_stft_cfg c = {slg_int(&g, "n_fft"), slg_int(&g, "hop"), 1, SL_PAD_REFLECT, slg_int(&g, "normalized")};
    int wl = slg_int(&g, "win_length"), length_param = slg_int(&g, "length");
    size_t batch = (size_t)slg_int(&g, "batch"), nspec = 0, ny = 0;
    const float *spec = slg_array(&g, "spec", &nspec), *yref = slg_array(&g, "y", &ny);
    int nd = 0;
    const size_t *sd = dims_of(&g, "spec", &nd);
    size_t n = (size_t)c.n_fft, nb = n / 2 + 1;
    CHECK_MSG(spec && yref && sd && nd == 4 && sd[0] == batch && sd[2] == nb, "%s: unexpected arrays", name);
    if (!spec || !yref || !sd || nd != 4 || sd[0] != batch || sd[2] != nb) {
        slg_free(&g);
        return;
    }
    size_t nf = sd[1];
    /* torch without length keeps hop*(frames-1) samples (centre trims n_fft/2 at both ends) */
    size_t length = length_param >= 0 ? (size_t)length_param : (size_t)c.hop * (nf - 1);
    CHECK_MSG(ny == batch * length, "%s: torch gave %zu samples, expected %zu", name, ny, batch * length);
    if (ny != batch * length) {
        slg_free(&g);
        return;
    }
    float *w = malloc(n * sizeof(float)), *got = malloc(ny * sizeof(float));
    CHECK(sl_window_hann(w, c.n_fft, wl) == 0);
    float *dsp = sl_test_dev_buf(ctx, spec, nspec), *dw = sl_test_dev_buf(ctx, w, n), *dfr = sl_test_dev_buf(ctx, NULL, batch * nf * n);
    float *dy = sl_test_dev_buf(ctx, NULL, ny);
    int rc = dsp && dw && dfr && dy ? 0 : SL_ENOMEM;
    if (!rc)
        rc = sl_op_irfft(ctx, c.n_fft, batch * nf, dsp, dfr, c.normalized ? 1.0f / sqrtf((float)n) : 1.0f / (float)n);
    if (!rc)
        rc = sl_op_overlap_add(ctx, &c, batch, nf, dfr, dw, length, dy);
    if (!rc)
        rc = sl_op_download(ctx, got, dy, ny * sizeof(float));
    CHECK_MSG(rc == 0, "%s: %s", name, sl_lasterr());
    double e = rc ? INFINITY : norm_err(got, yref, ny);
    double ew = rc ? INFINITY : env_err(got, yref, batch, length, w, c.n_fft, c.hop, nf);
    worst_istft = fmax(worst_istft, e);
    worst_istft_env = fmax(worst_istft_env, ew);
    printf("  %-5s %-42s istft max|err|/max|y_torch| = %.3g, envelope-weighted %.3g (tol %g)\n",
           sl_op_ctx_backend(ctx), name, e, ew, TOL);
    CHECK_MSG(e <= TOL, "%s: %s istft error %g > %g", sl_op_ctx_backend(ctx), name, e, TOL);
    CHECK_MSG(ew <= TOL, "%s: %s istft envelope-weighted error %g > %g", sl_op_ctx_backend(ctx), name, ew, TOL);
    /* past the last frame torch pads exact zeros */
    size_t natural = n + (size_t)c.hop * (nf - 1) - n / 2;
    if (!rc && length > natural) {
        size_t bad = 0;
        for (size_t b = 0; b < batch; b++)
            for (size_t i = natural; i < length; i++)
                bad += got[b * length + i] != 0.0f || yref[b * length + i] != 0.0f;
        CHECK_MSG(bad == 0, "%s: %zu samples past the last frame are not exactly 0", name, bad);
    }
    free(w);
    free(got);
    sl_op_free(ctx, dsp);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dfr);
    sl_op_free(ctx, dy);
    slg_free(&g);
}

static void check_nola(sl_op_ctx *ctx, const char *name)
{
    slg_file g;
    if (load(&g, name) < 0)
        return;
    const char *raises = slg_param(&g, "raises");
    CHECK_MSG(raises && !strcmp(raises, "RuntimeError"), "%s: torch was expected to raise", name);
    sl_stft_cfg c = {slg_int(&g, "n_fft"), slg_int(&g, "hop"), 1, SL_PAD_REFLECT, slg_int(&g, "normalized")};
    int wl = slg_int(&g, "win_length");
    size_t length = (size_t)slg_int(&g, "length"), nspec = 0;
    const float *spec = slg_array(&g, "spec", &nspec);
    int nd = 0;
    const size_t *sd = dims_of(&g, "spec", &nd);
    size_t n = (size_t)c.n_fft;
    if (!spec || !sd || nd != 4) {
        CHECK_MSG(0, "%s: unexpected arrays", name);
        slg_free(&g);
        return;
    }
    size_t nf = sd[1];
    float *w = malloc(n * sizeof(float));
    CHECK(sl_window_hann(w, c.n_fft, wl) == 0);
    float *dsp = sl_test_dev_buf(ctx, spec, nspec), *dw = sl_test_dev_buf(ctx, w, n), *dfr = sl_test_dev_buf(ctx, NULL, nf * n);
    float *dy = sl_test_dev_buf(ctx, NULL, length);
    int rc = dsp && dw && dfr && dy ? 0 : SL_ENOMEM;
    if (!rc)
        rc = sl_op_irfft(ctx, c.n_fft, nf, dsp, dfr, 1.0f / (float)n);
    CHECK_MSG(rc == 0, "%s irfft: %s", name, sl_lasterr());
    if (!rc) {
        rc = sl_op_overlap_add(ctx, &c, 1, nf, dfr, dw, length, dy);
        if (rc == 0)
            rc = sl_op_sync(ctx); /* an asynchronous backend may report it here */
        printf("  %-5s %-42s istft -> %d (%s)%s\n", sl_op_ctx_backend(ctx), name, rc,
               rc ? sl_lasterr() : "no error", rc == SL_ENUMERIC ? "; torch raised too" : "");
        CHECK_MSG(rc == SL_ENUMERIC && strstr(sl_lasterr(), "NOLA"),
                  "%s: NOLA violation not refused (rc %d, torch raised RuntimeError)", name, rc);
    }
    free(w);
    sl_op_free(ctx, dsp);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dfr);
    sl_op_free(ctx, dy);
    slg_free(&g);
}

static void run_backend(const char *backend)
{
    static const sl_op_id need[] = {SL_OP_FRAME, SL_OP_RFFT, SL_OP_IRFFT, SL_OP_OVERLAP_ADD};
    sl_op_ctx *ctx = NULL;
    int rc = sl_op_ctx_open(&ctx, backend);
    if (rc < 0) {
        printf("backend %s: SKIPPED (%s)\n", backend, sl_lasterr());
        return;
    }
    if (sl_op_require(ctx, need, sizeof need / sizeof need[0], "test_golden_torch") < 0) {
        printf("backend %s: SKIPPED (%s)\n", backend, sl_lasterr());
        sl_op_ctx_close(ctx);
        return;
    }
    printf("backend %s: %s\n", backend, sl_op_ctx_device(ctx));
    worst_stft = worst_istft = worst_istft_env = 0;
    for (size_t i = 0; i < sizeof stft_files / sizeof stft_files[0]; i++)
        check_stft(ctx, stft_files[i]);
    for (size_t i = 0; i < sizeof istft_files / sizeof istft_files[0]; i++)
        check_istft(ctx, istft_files[i]);
    for (size_t i = 0; i < sizeof nola_files / sizeof nola_files[0]; i++)
        check_nola(ctx, nola_files[i]);
    printf("backend %s: worst stft %.3g, worst istft %.3g (envelope-weighted %.3g), tol %g\n", backend, worst_stft,
           worst_istft, worst_istft_env, TOL);
    sl_op_ctx_close(ctx);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    run_backend("cpu"); /* the reference: must be present */
    {
        sl_op_ctx *ctx = NULL;
        CHECK_MSG(sl_op_ctx_open(&ctx, "cpu") == 0, "cpu backend: %s", sl_lasterr());
        sl_op_ctx_close(ctx);
    }
    run_backend("cuda");
    return sl_test_finish("golden_torch");
}
