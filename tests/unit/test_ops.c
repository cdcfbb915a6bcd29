/* Op layer tests:
 *  - context/backend selection (cpu, auto, cuda without a device, bad names);
 *  - parity: every op on every backend present against an independent,
 *    double-precision naive reference on fresh random inputs (seed printed,
 *    SL_TEST_SEED to replay), output buffers poisoned with NaN first; absent
 *    backends and unimplemented ops are printed as SKIPPED, never as passed;
 *  - golden vectors from tools/gen_golden_dsp.py (librosa): STFT, iSTFT, Slaney
 *    mel filterbanks, hpss masks;
 *  - STFT -> iSTFT round trips, the NOLA error, the reflect-padding error. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/ops.h"
#include "sl_golden.h"
#include "sl_test.h"

/* ---- random numbers (xorshift64*, seeded per run) ---- */

static uint64_t rng_state;

static double urand(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* Uniform in [-1, 1), never exactly zero. */
static float rnd(void)
{
    float v;
    do
        v = (float)(2.0 * urand() - 1.0);
    while (v == 0.0f);
    return v;
}

static float *rand_buf(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = rnd();
    return p;
}

/* ---- helpers ---- */

static double norm_err(const float *got, const double *want, size_t n)
{
    double mx = 0, err = 0;
    for (size_t i = 0; i < n; i++) {
        double a = fabs(want[i]);
        if (a > mx)
            mx = a;
    }
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - want[i]);
        if (!(e <= err)) /* NaN (poison left unwritten) -> infinite error */
            err = isnan(e) ? INFINITY : e;
    }
    return err / (mx > 1e-30 ? mx : 1.0);
}

static float *to_host(sl_op_ctx *ctx, const float *dev, size_t n)
{
    float *h = malloc((n ? n : 1) * sizeof(float));
    sl_op_download(ctx, h, dev, n * sizeof(float));
    return h;
}

static void hann(float *w, int n) { sl_window_hann(w, n, n); }

/* ---- naive references (double) ---- */

static double ref_pad_value(const float *x, ptrdiff_t len, ptrdiff_t p, sl_pad_mode mode)
{
    if (p >= 0 && p < len)
        return x[p];
    if (mode == SL_PAD_CONSTANT)
        return 0.0;
    /* numpy 'reflect' for a pad shorter than the signal: mirror without the edge */
    return p < 0 ? x[-p] : x[2 * (len - 1) - p];
}

/* frames[b][m][k] */
static double *ref_frame(const sl_stft_cfg *c, const float *x, size_t batch, size_t len, const float *w,
                         size_t *nf_out)
{
    size_t nf = sl_stft_n_frames(c, len), n = (size_t)c->n_fft;
    double *f = malloc(batch * nf * n * sizeof(double));
    ptrdiff_t pad = c->center ? (ptrdiff_t)(n / 2) : 0;
    for (size_t b = 0; b < batch; b++)
        for (size_t m = 0; m < nf; m++)
            for (size_t k = 0; k < n; k++)
                f[(b * nf + m) * n + k] =
                    ref_pad_value(x + b * len, (ptrdiff_t)len, (ptrdiff_t)(m * c->hop + k) - pad, c->pad) * w[k];
    *nf_out = nf;
    return f;
}

static void ref_dft(const double *in, size_t n, double *out /* (n/2+1)*2 */)
{
    for (size_t k = 0; k <= n / 2; k++) {
        long double re = 0, im = 0;
        for (size_t t = 0; t < n; t++) {
            long double a = -2.0L * 3.14159265358979323846264338327950288L * (long double)((k * t) % n) / n;
            re += in[t] * cosl(a);
            im += in[t] * sinl(a);
        }
        out[2 * k] = (double)re;
        out[2 * k + 1] = (double)im;
    }
}

static void ref_idft(const float *in, size_t n, double *out)
{
    for (size_t t = 0; t < n; t++) {
        long double acc = in[0];
        for (size_t k = 1; k <= (n - 1) / 2; k++) {
            long double a = 2.0L * 3.14159265358979323846264338327950288L * (long double)((k * t) % n) / n;
            acc += 2.0L * (in[2 * k] * cosl(a) - in[2 * k + 1] * sinl(a));
        }
        if (n % 2 == 0)
            acc += in[n] * ((t % 2) ? -1.0L : 1.0L);
        out[t] = (double)acc;
    }
}

static size_t ref_reflect(ptrdiff_t i, size_t n)
{
    /* scipy 'reflect' by walking the mirror pattern (independent of the op's modulo). */
    while (i < 0 || i >= (ptrdiff_t)n) {
        if (i < 0)
            i = -i - 1;
        else
            i = 2 * (ptrdiff_t)n - 1 - i;
    }
    return (size_t)i;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* median along axis (0: frames, 1: bins) of in[batch][T][F] */
static double *ref_median(const float *in, size_t batch, size_t T, size_t F, int k, int axis)
{
    double *out = malloc(batch * T * F * sizeof(double)), *w = malloc((size_t)k * sizeof(double));
    for (size_t b = 0; b < batch; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t f = 0; f < F; f++) {
                for (int j = 0; j < k; j++) {
                    ptrdiff_t o = j - k / 2;
                    size_t tt = axis == 0 ? ref_reflect((ptrdiff_t)t + o, T) : t;
                    size_t ff = axis == 1 ? ref_reflect((ptrdiff_t)f + o, F) : f;
                    w[j] = in[(b * T + tt) * F + ff];
                }
                qsort(w, (size_t)k, sizeof(double), cmp_d);
                out[(b * T + t) * F + f] = w[k / 2];
            }
    free(w);
    return out;
}

static double ref_softmask(double x, double xref, double p, int split)
{
    double z = x > xref ? x : xref;
    if (z < 1.1754943508222875e-38)
        return split ? 0.5 : 0.0;
    double m = pow(x / z, p), r = pow(xref / z, p);
    return m / (m + r);
}

/* ---- parity: every op, every backend ---- */

typedef struct {
    const char *shape;
    double err;
} op_result;

#define TOL_EXACT 1e-6
#define TOL_FFT 2e-6

static void report(sl_op_ctx *ctx, sl_op_id op, const char *shape, double err, double tol)
{
    printf("  %-5s %-12s %-34s normalised error %.3g (tol %.1g)\n", sl_op_ctx_backend(ctx), sl_op_name(op),
           shape, err, tol);
    CHECK_MSG(err <= tol, "%s/%s %s: error %g > %g", sl_op_ctx_backend(ctx), sl_op_name(op), shape, err, tol);
}

static void parity_frame(sl_op_ctx *ctx, int n_fft, int hop, sl_pad_mode pad, size_t batch, size_t len)
{
    sl_stft_cfg c = {n_fft, hop, 1, pad, 0};
    float *x = rand_buf(batch * len), *w = malloc((size_t)n_fft * sizeof(float));
    hann(w, n_fft);
    size_t nf;
    double *want = ref_frame(&c, x, batch, len, w, &nf);
    float *dx = sl_test_dev_buf(ctx, x, batch * len), *dw = sl_test_dev_buf(ctx, w, (size_t)n_fft);
    float *dout = sl_test_dev_buf(ctx, NULL, batch * nf * (size_t)n_fft);
    int rc = sl_op_frame(ctx, &c, dx, batch, len, 0, nf, dw, dout);
    CHECK_MSG(rc == 0, "frame: %s", sl_lasterr());
    float *got = to_host(ctx, dout, batch * nf * (size_t)n_fft);
    char shape[96];
    snprintf(shape, sizeof shape, "b%zu len%zu n%d h%d %s", batch, len, n_fft, hop,
             pad == SL_PAD_REFLECT ? "refl" : "const");
    report(ctx, SL_OP_FRAME, shape, norm_err(got, want, batch * nf * (size_t)n_fft), 1e-7);
    /* a sub-range of frames equals the same rows of the full framing */
    if (nf >= 3) {
        float *dsub = sl_test_dev_buf(ctx, NULL, batch * 2 * (size_t)n_fft);
        rc = sl_op_frame(ctx, &c, dx, batch, len, 1, 2, dw, dsub);
        float *sub = to_host(ctx, dsub, batch * 2 * (size_t)n_fft);
        int same = rc == 0;
        for (size_t b = 0; b < batch && same; b++)
            same = !memcmp(sub + b * 2 * n_fft, got + (b * nf + 1) * n_fft, 2 * (size_t)n_fft * sizeof(float));
        CHECK_MSG(same, "frame sub-range differs (%s)", shape);
        free(sub);
        sl_op_free(ctx, dsub);
    }
    free(x);
    free(w);
    free(want);
    free(got);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dout);
}

static void parity_fft(sl_op_ctx *ctx, int n, size_t count)
{
    size_t nb = (size_t)n / 2 + 1;
    float *x = rand_buf(count * (size_t)n);
    double *want = malloc(count * nb * 2 * sizeof(double)), *tmp = malloc((size_t)n * sizeof(double));
    float scale = 1.0f / sqrtf((float)n);
    for (size_t i = 0; i < count; i++) {
        for (int t = 0; t < n; t++)
            tmp[t] = x[i * n + t];
        ref_dft(tmp, (size_t)n, want + i * nb * 2);
        for (size_t k = 0; k < nb * 2; k++)
            want[i * nb * 2 + k] *= scale;
    }
    float *dx = sl_test_dev_buf(ctx, x, count * (size_t)n), *dy = sl_test_dev_buf(ctx, NULL, count * nb * 2);
    int rc = sl_op_rfft(ctx, n, count, dx, dy, scale);
    CHECK_MSG(rc == 0, "rfft: %s", sl_lasterr());
    float *got = to_host(ctx, dy, count * nb * 2);
    char shape[64];
    snprintf(shape, sizeof shape, "n%d x%zu scale n^-1/2", n, count);
    report(ctx, SL_OP_RFFT, shape, norm_err(got, want, count * nb * 2), TOL_FFT);

    /* inverse of a random (non-Hermitian-consistent) spectrum, scale 1/n */
    float *spec = rand_buf(count * nb * 2);
    double *want2 = malloc(count * (size_t)n * sizeof(double));
    for (size_t i = 0; i < count; i++) {
        ref_idft(spec + i * nb * 2, (size_t)n, want2 + i * n);
        for (int t = 0; t < n; t++)
            want2[i * n + t] /= n;
    }
    float *ds = sl_test_dev_buf(ctx, spec, count * nb * 2), *dt = sl_test_dev_buf(ctx, NULL, count * (size_t)n);
    rc = sl_op_irfft(ctx, n, count, ds, dt, 1.0f / (float)n);
    CHECK_MSG(rc == 0, "irfft: %s", sl_lasterr());
    float *got2 = to_host(ctx, dt, count * (size_t)n);
    float *spec_after = to_host(ctx, ds, count * nb * 2);
    CHECK_MSG(!memcmp(spec, spec_after, count * nb * 2 * sizeof(float)), "irfft modified its input");
    snprintf(shape, sizeof shape, "n%d x%zu scale 1/n", n, count);
    report(ctx, SL_OP_IRFFT, shape, norm_err(got2, want2, count * (size_t)n), TOL_FFT);
    free(x);
    free(want);
    free(tmp);
    free(got);
    free(spec);
    free(want2);
    free(got2);
    free(spec_after);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dy);
    sl_op_free(ctx, ds);
    sl_op_free(ctx, dt);
}

static void parity_elementwise(sl_op_ctx *ctx, size_t n)
{
    float *z = rand_buf(2 * n), *m = rand_buf(n);
    double *wmag = malloc(n * sizeof(double)), *wpow = malloc(n * sizeof(double)),
           *wmask = malloc(2 * n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double re = z[2 * i], im = z[2 * i + 1];
        wmag[i] = sqrt(re * re + im * im);
        wpow[i] = re * re + im * im;
        wmask[2 * i] = re * m[i];
        wmask[2 * i + 1] = im * m[i];
    }
    float *dz = sl_test_dev_buf(ctx, z, 2 * n), *dm = sl_test_dev_buf(ctx, m, n);
    float *d1 = sl_test_dev_buf(ctx, NULL, n), *d2 = sl_test_dev_buf(ctx, NULL, n), *d3 = sl_test_dev_buf(ctx, NULL, 2 * n);
    CHECK(sl_op_magnitude(ctx, n, dz, d1) == 0);
    CHECK(sl_op_power(ctx, n, dz, d2) == 0);
    CHECK(sl_op_apply_mask(ctx, n, dz, dm, d3) == 0);
    float *g1 = to_host(ctx, d1, n), *g2 = to_host(ctx, d2, n), *g3 = to_host(ctx, d3, 2 * n);
    char shape[32];
    snprintf(shape, sizeof shape, "n%zu", n);
    report(ctx, SL_OP_MAGNITUDE, shape, norm_err(g1, wmag, n), TOL_EXACT);
    report(ctx, SL_OP_POWER, shape, norm_err(g2, wpow, n), TOL_EXACT);
    report(ctx, SL_OP_APPLY_MASK, shape, norm_err(g3, wmask, 2 * n), TOL_EXACT);
    free(z); free(m); free(wmag); free(wpow); free(wmask); free(g1); free(g2); free(g3);
    sl_op_free(ctx, dz); sl_op_free(ctx, dm); sl_op_free(ctx, d1); sl_op_free(ctx, d2); sl_op_free(ctx, d3);
}

static void parity_median(sl_op_ctx *ctx, size_t batch, size_t T, size_t F, int k)
{
    size_t n = batch * T * F;
    float *x = rand_buf(n);
    for (size_t i = 0; i < n; i += 7)
        x[i] = x[(i * 31) % n]; /* ties */
    double *wt = ref_median(x, batch, T, F, k, 0), *wf = ref_median(x, batch, T, F, k, 1);
    float *dx = sl_test_dev_buf(ctx, x, n), *dt = sl_test_dev_buf(ctx, NULL, n), *df = sl_test_dev_buf(ctx, NULL, n);
    CHECK(sl_op_median_time(ctx, batch, T, F, k, dx, dt) == 0);
    CHECK(sl_op_median_freq(ctx, batch, T, F, k, dx, df) == 0);
    float *gt = to_host(ctx, dt, n), *gf = to_host(ctx, df, n);
    char shape[64];
    snprintf(shape, sizeof shape, "b%zu T%zu F%zu k%d", batch, T, F, k);
    report(ctx, SL_OP_MEDIAN_TIME, shape, norm_err(gt, wt, n), 0.0);
    report(ctx, SL_OP_MEDIAN_FREQ, shape, norm_err(gf, wf, n), 0.0);
    free(x); free(wt); free(wf); free(gt); free(gf);
    sl_op_free(ctx, dx); sl_op_free(ctx, dt); sl_op_free(ctx, df);
}

static void parity_masks(sl_op_ctx *ctx, size_t n, float power, float mh, float mp)
{
    float *h = rand_buf(n), *p = rand_buf(n);
    for (size_t i = 0; i < n; i++) {
        h[i] = fabsf(h[i]);
        p[i] = fabsf(p[i]);
        if (i % 13 == 0)
            h[i] = p[i] = 0.0f; /* both silent: split_zeros branch */
        if (i % 17 == 0)
            h[i] = 0.0f;
    }
    double *wh = malloc(n * sizeof(double)), *wp = malloc(n * sizeof(double));
    int split = mh == 1.0f && mp == 1.0f;
    for (size_t i = 0; i < n; i++) {
        wh[i] = ref_softmask(h[i], (double)p[i] * mh, power, split);
        wp[i] = ref_softmask(p[i], (double)h[i] * mp, power, split);
    }
    float *dh = sl_test_dev_buf(ctx, h, n), *dp = sl_test_dev_buf(ctx, p, n), *oh = sl_test_dev_buf(ctx, NULL, n),
          *op = sl_test_dev_buf(ctx, NULL, n);
    CHECK(sl_op_hpss_masks(ctx, n, dh, dp, power, mh, mp, oh, op) == 0);
    float *gh = to_host(ctx, oh, n), *gp = to_host(ctx, op, n);
    char shape[64];
    snprintf(shape, sizeof shape, "n%zu p%g margins %g/%g", n, (double)power, (double)mh, (double)mp);
    double e = fmax(norm_err(gh, wh, n), norm_err(gp, wp, n));
    report(ctx, SL_OP_HPSS_MASKS, shape, e, 1e-5);
    /* in place (masks over the medians), as the hpss model calls it */
    CHECK(sl_op_hpss_masks(ctx, n, dh, dp, power, mh, mp, dh, dp) == 0);
    float *ih = to_host(ctx, dh, n), *ip = to_host(ctx, dp, n);
    CHECK(!memcmp(ih, gh, n * sizeof(float)) && !memcmp(ip, gp, n * sizeof(float)));
    free(h); free(p); free(wh); free(wp); free(gh); free(gp); free(ih); free(ip);
    sl_op_free(ctx, dh); sl_op_free(ctx, dp); sl_op_free(ctx, oh); sl_op_free(ctx, op);
}

static void parity_ola(sl_op_ctx *ctx, int n_fft, int hop, size_t batch, size_t nf, size_t length, int center)
{
    sl_stft_cfg c = {n_fft, hop, center, SL_PAD_REFLECT, 0};
    size_t n = (size_t)n_fft;
    float *fr = rand_buf(batch * nf * n), *w = malloc(n * sizeof(float));
    hann(w, n_fft);
    if (!center) /* Hann is 0 at sample 0, which torch rejects (NOLA) without centre padding */
        for (size_t k = 0; k < n; k++)
            w[k] += 0.1f;
    double *want = malloc(batch * length * sizeof(double));
    size_t full = n + (size_t)hop * (nf - 1), start = center ? n / 2 : 0;
    for (size_t b = 0; b < batch; b++)
        for (size_t i = 0; i < length; i++) {
            size_t p = start + i;
            double num = 0, den = 0;
            if (p < full)
                for (size_t m = 0; m < nf; m++)
                    if (p >= m * hop && p < m * hop + n) {
                        num += (double)fr[(b * nf + m) * n + p - m * hop] * w[p - m * hop];
                        den += (double)w[p - m * hop] * w[p - m * hop];
                    }
            want[b * length + i] = p < full ? num / den : 0.0;
        }
    float *dfr = sl_test_dev_buf(ctx, fr, batch * nf * n), *dw = sl_test_dev_buf(ctx, w, n), *dy = sl_test_dev_buf(ctx, NULL, batch * length);
    int rc = sl_op_overlap_add(ctx, &c, batch, nf, dfr, dw, length, dy);
    CHECK_MSG(rc == 0, "overlap_add: %s", sl_lasterr());
    float *got = to_host(ctx, dy, batch * length);
    char shape[96];
    snprintf(shape, sizeof shape, "b%zu frames%zu n%d h%d len%zu c%d", batch, nf, n_fft, hop, length, center);
    report(ctx, SL_OP_OVERLAP_ADD, shape, norm_err(got, want, batch * length), 1e-5);
    free(fr); free(w); free(want); free(got);
    sl_op_free(ctx, dfr); sl_op_free(ctx, dw); sl_op_free(ctx, dy);
}

static void parity_features(sl_op_ctx *ctx, size_t count, int n_fft, int n_mels)
{
    int nb = n_fft / 2 + 1;
    float *fb = malloc((size_t)n_mels * nb * sizeof(float));
    CHECK(sl_mel_filterbank(fb, 16000, n_fft, n_mels, 0, 0) == 0);
    float *spec = rand_buf(count * nb);
    for (size_t i = 0; i < count * nb; i++)
        spec[i] = spec[i] * spec[i];
    double *wm = malloc(count * n_mels * sizeof(double));
    for (size_t t = 0; t < count; t++)
        for (int m = 0; m < n_mels; m++) {
            double a = 0;
            for (int k = 0; k < nb; k++)
                a += (double)fb[m * nb + k] * spec[t * nb + k];
            wm[t * n_mels + m] = a;
        }
    float *dfb = sl_test_dev_buf(ctx, fb, (size_t)n_mels * nb), *ds = sl_test_dev_buf(ctx, spec, count * nb),
          *dm = sl_test_dev_buf(ctx, NULL, count * n_mels);
    CHECK(sl_op_mel(ctx, count, nb, n_mels, dfb, ds, dm) == 0);
    float *gm = to_host(ctx, dm, count * n_mels);
    char shape[64];
    snprintf(shape, sizeof shape, "frames%zu bins%d mels%d", count, nb, n_mels);
    report(ctx, SL_OP_MEL, shape, norm_err(gm, wm, count * n_mels), 1e-6);

    /* log_db over 2 batch items, one with values under amin; then with top_db */
    size_t n = count * n_mels;
    float *in2 = malloc(2 * n * sizeof(float));
    for (size_t i = 0; i < 2 * n; i++)
        in2[i] = (i % 5 == 0) ? 1e-13f : fabsf(rnd()) * (i < n ? 1.0f : 1e3f);
    double *wl = malloc(2 * n * sizeof(double)), *wl2 = malloc(2 * n * sizeof(double));
    for (size_t b = 0; b < 2; b++) {
        double mx = -INFINITY;
        for (size_t i = b * n; i < (b + 1) * n; i++) {
            wl[i] = 10.0 * log10(fmax(1e-10, (double)in2[i]));
            mx = fmax(mx, wl[i]);
        }
        for (size_t i = b * n; i < (b + 1) * n; i++)
            wl2[i] = fmax(wl[i], mx - 20.0);
    }
    float *di = sl_test_dev_buf(ctx, in2, 2 * n), *dl = sl_test_dev_buf(ctx, NULL, 2 * n), *dl2 = sl_test_dev_buf(ctx, NULL, 2 * n);
    CHECK(sl_op_log_db(ctx, 2, n, di, 1e-10f, 0.0f, dl) == 0);
    CHECK(sl_op_log_db(ctx, 2, n, di, 1e-10f, 20.0f, dl2) == 0);
    float *gl = to_host(ctx, dl, 2 * n), *gl2 = to_host(ctx, dl2, 2 * n);
    snprintf(shape, sizeof shape, "b2 n%zu (top_db none, 20)", n);
    report(ctx, SL_OP_LOG_DB, shape, fmax(norm_err(gl, wl, 2 * n), norm_err(gl2, wl2, 2 * n)), 1e-6);

    /* stats pool: 2 items, plus one-frame input */
    size_t T = count, F = (size_t)n_mels;
    float *x = rand_buf(2 * T * F);
    double *ws = malloc(2 * 4 * F * sizeof(double));
    for (size_t b = 0; b < 2; b++)
        for (size_t f = 0; f < F; f++) {
            const float *xb = x + b * T * F;
            double s = 0, s2 = 0, d = 0, d2 = 0;
            for (size_t t = 0; t < T; t++)
                s += xb[t * F + f];
            double mean = s / T;
            for (size_t t = 0; t < T; t++)
                s2 += (xb[t * F + f] - mean) * (xb[t * F + f] - mean);
            for (size_t t = 1; t < T; t++)
                d += (double)xb[t * F + f] - xb[(t - 1) * F + f];
            double dmean = T > 1 ? d / (T - 1) : 0;
            for (size_t t = 1; t < T; t++) {
                double e = (double)xb[t * F + f] - xb[(t - 1) * F + f] - dmean;
                d2 += e * e;
            }
            double *o = ws + b * 4 * F;
            o[f] = mean;
            o[F + f] = sqrt(s2 / T);
            o[2 * F + f] = dmean;
            o[3 * F + f] = T > 1 ? sqrt(d2 / (T - 1)) : 0;
        }
    float *dx = sl_test_dev_buf(ctx, x, 2 * T * F), *dv = sl_test_dev_buf(ctx, NULL, 2 * 4 * F);
    CHECK(sl_op_stats_pool(ctx, 2, T, F, dx, dv) == 0);
    float *gv = to_host(ctx, dv, 2 * 4 * F);
    snprintf(shape, sizeof shape, "b2 T%zu F%zu", T, F);
    report(ctx, SL_OP_STATS_POOL, shape, norm_err(gv, ws, 2 * 4 * F), 1e-6);
    float *dv1 = sl_test_dev_buf(ctx, NULL, 4 * F);
    CHECK(sl_op_stats_pool(ctx, 1, 1, F, dx, dv1) == 0);
    float *g1 = to_host(ctx, dv1, 4 * F);
    int ok1 = 1;
    for (size_t f = 0; f < F; f++)
        ok1 &= g1[f] == x[f] && g1[F + f] == 0 && g1[2 * F + f] == 0 && g1[3 * F + f] == 0;
    CHECK_MSG(ok1, "stats_pool of one frame must be [x, 0, 0, 0]");
    free(fb); free(spec); free(wm); free(gm); free(in2); free(wl); free(wl2); free(gl); free(gl2);
    free(x); free(ws); free(gv); free(g1);
    sl_op_free(ctx, dfb); sl_op_free(ctx, ds); sl_op_free(ctx, dm); sl_op_free(ctx, di);
    sl_op_free(ctx, dl); sl_op_free(ctx, dl2); sl_op_free(ctx, dx); sl_op_free(ctx, dv); sl_op_free(ctx, dv1);
}

static void parity_backend(const char *backend)
{
    sl_op_ctx *ctx = NULL;
    int rc = sl_op_ctx_open(&ctx, backend);
    if (rc < 0) {
        printf("parity: backend %s SKIPPED (%s)\n", backend, sl_lasterr());
        return;
    }
    printf("parity: backend %s on %s\n", backend, sl_op_ctx_device(ctx));
    int all = 1;
    for (int op = 0; op < SL_OP_COUNT; op++)
        if (!sl_op_supported(ctx, (sl_op_id)op)) {
            printf("  %-5s %-12s SKIPPED (not implemented by this backend)\n", backend, sl_op_name((sl_op_id)op));
            all = 0;
        }
    if (!all) {
        /* Partial backends are tested op by op once they have ops; until then
         * nothing here may claim a pass for them. */
        printf("parity: backend %s has unimplemented ops; its implemented ops are not exercised yet\n", backend);
        sl_op_ctx_close(ctx);
        return;
    }
    parity_frame(ctx, 16, 4, SL_PAD_REFLECT, 1, 9);
    parity_frame(ctx, 256, 64, SL_PAD_REFLECT, 3, 1001);
    parity_frame(ctx, 255, 100, SL_PAD_CONSTANT, 2, 37);
    parity_frame(ctx, 64, 64, SL_PAD_CONSTANT, 1, 1); /* one frame */
    parity_fft(ctx, 16, 3);
    parity_fft(ctx, 255, 2);
    parity_fft(ctx, 1024, 2);
    parity_fft(ctx, 2, 1);
    parity_elementwise(ctx, 1);
    parity_elementwise(ctx, 10007);
    parity_median(ctx, 1, 1, 1, 3);
    parity_median(ctx, 2, 9, 33, 31);  /* kernel longer than both axes */
    parity_median(ctx, 1, 57, 129, 7);
    parity_masks(ctx, 4099, 2.0f, 2.0f, 2.0f);
    parity_masks(ctx, 1001, 1.0f, 1.0f, 1.0f);
    parity_masks(ctx, 333, 1.5f, 1.0f, 3.0f);
    parity_ola(ctx, 16, 4, 1, 1, 1, 1);
    parity_ola(ctx, 256, 64, 3, 17, 1001, 1);
    parity_ola(ctx, 255, 85, 2, 9, 900, 1); /* length past the last frame: zeros */
    parity_ola(ctx, 64, 16, 1, 5, 100, 0);
    parity_features(ctx, 1, 64, 8);
    parity_features(ctx, 37, 512, 40);
    sl_op_ctx_close(ctx);
}

/* ---- context tests ---- */

static void test_contexts(void)
{
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0 && ctx);
    if (ctx) {
        CHECK(!strcmp(sl_op_ctx_backend(ctx), "cpu"));
        CHECK(strstr(sl_op_ctx_device(ctx), "CPU") != NULL);
        for (int op = 0; op < SL_OP_COUNT; op++)
            CHECK_MSG(sl_op_supported(ctx, (sl_op_id)op), "cpu lacks %s", sl_op_name((sl_op_id)op));
        CHECK(!sl_op_supported(ctx, SL_OP_COUNT));
        sl_op_ctx_close(ctx);
    }
    for (int i = 0; i < SL_OP_COUNT; i++) {
        CHECK(strcmp(sl_op_name((sl_op_id)i), "?") != 0);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(sl_op_name((sl_op_id)i), sl_op_name((sl_op_id)j)) != 0);
    }
    CHECK(!strcmp(sl_op_name(SL_OP_COUNT), "?"));

    ctx = NULL;
    int rc = sl_op_ctx_open(&ctx, "tpu");
    CHECK(rc == SL_EINVAL && !ctx && strstr(sl_lasterr(), "tpu"));

    /* auto: CUDA when a device answers (the backend implements every op), else the CPU. */
    sl_op_ctx *probe = NULL;
    int have_cuda = sl_op_ctx_open(&probe, "cuda") == 0;
    sl_op_ctx_close(probe);
    sl_clearerr();
    CHECK(sl_op_ctx_open(&ctx, "auto") == 0 && ctx);
    if (ctx) {
        printf("auto -> %s (%s)\n", sl_op_ctx_backend(ctx), sl_op_ctx_device(ctx));
        CHECK(!strcmp(sl_op_ctx_backend(ctx), have_cuda ? "cuda" : "cpu"));
        sl_op_ctx_close(ctx);
    }

    ctx = NULL;
    rc = sl_op_ctx_open(&ctx, "cuda");
    if (rc < 0) {
        CHECK_MSG(rc == SL_ENODEVICE || rc == SL_EDEVICE, "cuda open: %d %s", rc, sl_lasterr());
        CHECK(!ctx && strstr(sl_lasterr(), "cuda") != NULL);
        printf("cuda backend: not available here (%s)\n", sl_lasterr());
    } else {
        printf("cuda backend: %s\n", sl_op_ctx_device(ctx));
        CHECK(!strcmp(sl_op_ctx_backend(ctx), "cuda") && strstr(sl_op_ctx_device(ctx), "CUDA device"));
        for (int op = 0; op < SL_OP_COUNT; op++)
            CHECK_MSG(sl_op_supported(ctx, (sl_op_id)op), "cuda lacks %s", sl_op_name((sl_op_id)op));
        sl_op_ctx_close(ctx);
    }

    /* cuda-emu: always built, every op, host memory; pinned host buffers on every backend */
    ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cuda-emu") == 0 && ctx);
    if (ctx) {
        CHECK(!strcmp(sl_op_ctx_backend(ctx), "cuda-emu"));
        for (int op = 0; op < SL_OP_COUNT; op++)
            CHECK_MSG(sl_op_supported(ctx, (sl_op_id)op), "cuda-emu lacks %s", sl_op_name((sl_op_id)op));
        sl_op_ctx_close(ctx);
    }
    static const char *const names[] = {"cpu", "cuda-emu", "cuda"};
    for (int i = 0; i < 3; i++) {
        ctx = NULL;
        if (sl_op_ctx_open(&ctx, names[i]) < 0) {
            sl_clearerr();
            continue;
        }
        void *h = NULL;
        CHECK(sl_op_host_alloc(ctx, &h, 1000) == 0 && h && ((uintptr_t)h % 64) == 0);
        if (h)
            memset(h, 1, 1000);
        sl_op_host_free(ctx, h);
        sl_op_host_free(ctx, NULL);
        CHECK(sl_op_reserve(ctx, 1, 10) == SL_EINVAL);
        CHECK_MSG(sl_op_reserve(ctx, 2048, 300) == 0, "%s reserve: %s", names[i], sl_lasterr());
        sl_op_ctx_close(ctx);
    }
    sl_op_ctx_close(NULL);
}

/* ---- golden vectors ---- */

static void golden_stft(sl_op_ctx *ctx, const char *name)
{
    slg_file g;
    CHECK_MSG(slg_load(&g, name) == 0, "golden %s", name);
    if (!g.n_arrays)
        return;
    sl_stft_cfg c = {slg_int(&g, "n_fft"), slg_int(&g, "hop"), 1,
                     !strcmp(slg_param(&g, "pad"), "reflect") ? SL_PAD_REFLECT : SL_PAD_CONSTANT,
                     slg_int(&g, "normalized")};
    size_t len, nspec;
    const float *x = slg_array(&g, "x", &len), *spec = slg_array(&g, "spec", &nspec);
    size_t n = (size_t)c.n_fft, nb = n / 2 + 1, nf = sl_stft_n_frames(&c, len);
    CHECK_MSG(nf * nb * 2 == nspec, "%s: %zu frames x %zu bins expected, golden has %zu values", name, nf, nb, nspec);
    if (nf * nb * 2 != nspec) {
        slg_free(&g);
        return;
    }
    float *w = malloc(n * sizeof(float)), *fr = malloc(nf * n * sizeof(float)), *out = malloc(nspec * sizeof(float));
    hann(w, c.n_fft);
    int rc = sl_op_frame(ctx, &c, x, 1, len, 0, nf, w, fr);
    if (!rc)
        rc = sl_op_rfft(ctx, c.n_fft, nf, fr, out, c.normalized ? 1.0f / sqrtf((float)n) : 1.0f);
    CHECK_MSG(rc == 0, "%s: %s", name, sl_lasterr());
    double *want = malloc(nspec * sizeof(double));
    for (size_t i = 0; i < nspec; i++)
        want[i] = spec[i];
    double e = norm_err(out, want, nspec);
    printf("golden %-32s stft max|err|/max|X| = %.3g (tol 1e-5)\n", name, e);
    CHECK_MSG(e < 1e-5, "%s: %g", name, e);

    /* and back: the round trip of the golden signal */
    float *fr2 = malloc(nf * n * sizeof(float)), *y = malloc(len * sizeof(float));
    float iscale = c.normalized ? 1.0f / sqrtf((float)n) : 1.0f / (float)n;
    rc = sl_op_irfft(ctx, c.n_fft, nf, out, fr2, iscale);
    if (!rc)
        rc = sl_op_overlap_add(ctx, &c, 1, nf, fr2, w, len, y);
    CHECK_MSG(rc == 0, "%s istft: %s", name, sl_lasterr());
    double *wx = malloc(len * sizeof(double));
    for (size_t i = 0; i < len; i++)
        wx[i] = x[i];
    e = norm_err(y, wx, len);
    CHECK_MSG(e < 1e-5, "%s round trip: %g", name, e);
    free(w); free(fr); free(out); free(want); free(fr2); free(y); free(wx);
    slg_free(&g);
}

static void golden_istft(sl_op_ctx *ctx, const char *name)
{
    slg_file g;
    CHECK_MSG(slg_load(&g, name) == 0, "golden %s", name);
    if (!g.n_arrays)
        return;
    sl_stft_cfg c = {slg_int(&g, "n_fft"), slg_int(&g, "hop"), 1, SL_PAD_REFLECT, 0};
    size_t length = (size_t)slg_int(&g, "length"), nspec, ny;
    const float *spec = slg_array(&g, "spec", &nspec), *yref = slg_array(&g, "y", &ny);
    size_t n = (size_t)c.n_fft, nb = n / 2 + 1, nf = nspec / (2 * nb);
    CHECK(ny == length);
    float *w = malloc(n * sizeof(float)), *fr = malloc(nf * n * sizeof(float)), *y = malloc(length * sizeof(float));
    hann(w, c.n_fft);
    int rc = sl_op_irfft(ctx, c.n_fft, nf, spec, fr, 1.0f / (float)n);
    if (!rc)
        rc = sl_op_overlap_add(ctx, &c, 1, nf, fr, w, length, y);
    CHECK_MSG(rc == 0, "%s: %s", name, sl_lasterr());
    double *want = malloc(length * sizeof(double));
    for (size_t i = 0; i < length; i++)
        want[i] = yref[i];
    double e = norm_err(y, want, length);
    printf("golden %-32s istft max|err|/max|y| = %.3g (tol 1e-5)\n", name, e);
    CHECK_MSG(e < 1e-5, "%s: %g", name, e);
    /* normalized=True inverse is the backward one times sqrt(n_fft) */
    c.normalized = 1;
    rc = sl_op_irfft(ctx, c.n_fft, nf, spec, fr, 1.0f / sqrtf((float)n));
    if (!rc)
        rc = sl_op_overlap_add(ctx, &c, 1, nf, fr, w, length, y);
    for (size_t i = 0; i < length; i++)
        want[i] = yref[i] * sqrt((double)n);
    e = norm_err(y, want, length);
    CHECK_MSG(rc == 0 && e < 1e-5, "%s normalized: %g", name, e);
    free(w); free(fr); free(y); free(want);
    slg_free(&g);
}

static void golden_mel(const char *name)
{
    slg_file g;
    CHECK_MSG(slg_load(&g, name) == 0, "golden %s", name);
    if (!g.n_arrays)
        return;
    int sr = slg_int(&g, "sr"), n_fft = slg_int(&g, "n_fft"), n_mels = slg_int(&g, "n_mels");
    double f_lo = slg_double(&g, "fmin"), f_hi = slg_double(&g, "fmax");
    int nb = n_fft / 2 + 1;
    size_t nlo, nvals;
    const float *lo = slg_array(&g, "lo", &nlo), *hi = slg_array(&g, "hi", NULL), *vals = slg_array(&g, "vals", &nvals);
    float *fb = malloc((size_t)n_mels * nb * sizeof(float));
    CHECK(sl_mel_filterbank(fb, sr, n_fft, n_mels, f_lo, f_hi) == 0);
    CHECK(nlo == (size_t)n_mels);
    double mx = 0, err = 0;
    for (size_t i = 0; i < nvals; i++)
        mx = fmax(mx, fabs(vals[i]));
    size_t v = 0;
    int zeros_ok = 1;
    for (int m = 0; m < n_mels; m++)
        for (int k = 0; k < nb; k++) {
            float got = fb[(size_t)m * nb + k];
            if (k >= (int)lo[m] && k < (int)hi[m] && v < nvals)
                err = fmax(err, fabs((double)got - vals[v++]));
            else if (got != 0.0f)
                zeros_ok = 0;
        }
    CHECK(v == nvals);
    printf("golden %-32s mel max|err|/max = %.3g (tol 1e-6)\n", name, err / mx);
    CHECK_MSG(err / mx < 1e-6, "%s: %g", name, err / mx);
    CHECK_MSG(zeros_ok, "%s: non-zero weight outside librosa's support", name);
    free(fb);
    slg_free(&g);
}

static void golden_hpss(sl_op_ctx *ctx, const char *name)
{
    slg_file g;
    CHECK_MSG(slg_load(&g, name) == 0, "golden %s", name);
    if (!g.n_arrays)
        return;
    int kh = slg_int(&g, "kernel_harmonic"), kp = slg_int(&g, "kernel_percussive");
    float mh = (float)slg_double(&g, "margin_harmonic"), mp = (float)slg_double(&g, "margin_percussive");
    const float *mag = slg_array(&g, "mag", NULL), *wh = slg_array(&g, "mask_h", NULL), *wp = slg_array(&g, "mask_p", NULL);
    int ai = 0;
    while (strcmp(g.aname[ai], "mag"))
        ai++;
    size_t T = g.adims[ai][0], F = g.adims[ai][1], n = T * F;
    float *h = malloc(n * sizeof(float)), *p = malloc(n * sizeof(float));
    int rc = sl_op_median_time(ctx, 1, T, F, kh, mag, h);
    if (!rc)
        rc = sl_op_median_freq(ctx, 1, T, F, kp, mag, p);
    if (!rc)
        rc = sl_op_hpss_masks(ctx, n, h, p, 2.0f, mh, mp, h, p);
    CHECK_MSG(rc == 0, "%s: %s", name, sl_lasterr());
    double e = 0;
    for (size_t i = 0; i < n; i++)
        e = fmax(e, fmax(fabs((double)h[i] - wh[i]), fabs((double)p[i] - wp[i])));
    printf("golden %-32s hpss masks max|err| = %.3g (tol 1e-6)\n", name, e);
    CHECK_MSG(e < 1e-6, "%s: %g", name, e);
    free(h);
    free(p);
    slg_free(&g);
}

/* ---- round trips and errors ---- */

static void round_trip(sl_op_ctx *ctx, int n_fft, int hop, sl_pad_mode pad, int normalized, size_t batch, size_t len)
{
    sl_stft_cfg c = {n_fft, hop, 1, pad, normalized};
    size_t n = (size_t)n_fft, nb = n / 2 + 1, nf = sl_stft_n_frames(&c, len);
    float *x = rand_buf(batch * len), *w = malloc(n * sizeof(float));
    hann(w, n_fft);
    float *fr = malloc(batch * nf * n * sizeof(float)), *sp = malloc(batch * nf * nb * 2 * sizeof(float));
    float *y = malloc(batch * len * sizeof(float));
    float fs = normalized ? 1.0f / sqrtf((float)n) : 1.0f, is = normalized ? 1.0f / sqrtf((float)n) : 1.0f / (float)n;
    int rc = sl_op_frame(ctx, &c, x, batch, len, 0, nf, w, fr);
    if (!rc)
        rc = sl_op_rfft(ctx, n_fft, batch * nf, fr, sp, fs);
    if (!rc)
        rc = sl_op_irfft(ctx, n_fft, batch * nf, sp, fr, is);
    if (!rc)
        rc = sl_op_overlap_add(ctx, &c, batch, nf, fr, w, len, y);
    CHECK_MSG(rc == 0, "round trip n%d h%d len%zu: %s", n_fft, hop, len, sl_lasterr());
    double *want = malloc(batch * len * sizeof(double));
    for (size_t i = 0; i < batch * len; i++)
        want[i] = x[i];
    double e = rc ? INFINITY : norm_err(y, want, batch * len);
    printf("round trip n_fft %5d hop %4d %-8s norm %d batch %zu len %6zu: max|err|/peak %.3g (tol 1e-5)\n", n_fft,
           hop, pad == SL_PAD_REFLECT ? "reflect" : "constant", normalized, batch, len, e);
    CHECK_MSG(e < 1e-5, "round trip n%d h%d len%zu: %g", n_fft, hop, len, e);
    free(x); free(w); free(fr); free(sp); free(y); free(want);
}

static void test_errors(sl_op_ctx *ctx)
{
    float x[64] = {0}, w[64], fr[64 * 8], y[64];
    for (int i = 0; i < 64; i++)
        x[i] = rnd();
    /* reflect needs n_fft/2 < len, exactly as torch */
    sl_stft_cfg c = {64, 16, 1, SL_PAD_REFLECT, 0};
    hann(w, 64);
    CHECK(sl_op_frame(ctx, &c, x, 1, 32, 0, 1, w, fr) == SL_EINVAL && strstr(sl_lasterr(), "reflect"));
    CHECK(sl_op_frame(ctx, &c, x, 1, 33, 0, 1, w, fr) == 0);
    c.pad = SL_PAD_CONSTANT;
    CHECK(sl_op_frame(ctx, &c, x, 1, 1, 0, 1, w, fr) == 0);
    CHECK(sl_op_frame(ctx, &c, x, 1, 0, 0, 1, w, fr) == SL_EINVAL);
    CHECK(sl_stft_n_frames(&c, 1) == 1 && sl_stft_n_frames(&c, 16) == 2 && sl_stft_n_frames(&c, 15) == 1);
    CHECK(sl_op_frame(ctx, &c, x, 1, 16, 1, 2, w, fr) == SL_EINVAL); /* past the last frame */
    c.center = 0;
    CHECK(sl_op_frame(ctx, &c, x, 1, 63, 0, 1, w, fr) == SL_EINVAL);
    CHECK(sl_stft_n_frames(&c, 64) == 1);
    /* NOLA: Hann with hop == n_fft leaves zeros in the envelope */
    c = (sl_stft_cfg){64, 64, 1, SL_PAD_CONSTANT, 0};
    for (int i = 0; i < 64 * 3; i++)
        fr[i] = rnd();
    CHECK(sl_op_overlap_add(ctx, &c, 1, 3, fr, w, 64, y) == SL_ENUMERIC && strstr(sl_lasterr(), "NOLA"));
    float ones[64];
    for (int i = 0; i < 64; i++)
        ones[i] = 1.0f;
    CHECK(sl_op_overlap_add(ctx, &c, 1, 3, fr, ones, 64, y) == 0);
    CHECK(sl_op_median_time(ctx, 1, 4, 4, 4, x, y) == SL_EINVAL);
    CHECK(sl_op_hpss_masks(ctx, 4, x, x, 2.0f, 0.5f, 1.0f, y, y) == SL_EINVAL);
    CHECK(sl_op_rfft(ctx, 1, 1, x, y, 1.0f) == SL_EINVAL);
    CHECK(sl_window_hann(w, 64, 65) == SL_EINVAL);
    /* a shorter window is centred with zeros around it, like torch */
    CHECK(sl_window_hann(w, 8, 4) == 0 && w[0] == 0 && w[1] == 0 && w[2] == 0.0f && w[4] == 1.0f && w[6] == 0 &&
          w[7] == 0);
    CHECK(sl_window_hann(w, 4, 4) == 0 && w[0] == 0.0f && fabsf(w[1] - 0.5f) < 1e-7f && w[2] == 1.0f);
}

/* The CPU's overlap_add against the definition computed the way it was before
 * the envelope's interior was copied by periods (every frame's window^2 added in
 * order, in float): the same bits, for hops that do and do not divide n_fft,
 * frame counts around the periodic part's edges, with and without centre. */
static void ola_envelope_bits(sl_op_ctx *ctx)
{
    const int shapes[][3] = {{2048, 512, 862}, {16, 4, 1}, {16, 4, 5}, {16, 4, 6}, {16, 4, 12}, {300, 75, 50},
                             {1023, 256, 40}, {400, 160, 30}, {8, 3, 20}, {5, 2, 9}, {64, 32, 3}, {64, 32, 4}};
    int bad = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
        for (int center = 0; center <= 1; center++) {
            const size_t n = (size_t)shapes[si][0], hop = (size_t)shapes[si][1], nf = (size_t)shapes[si][2];
            const size_t full = n + hop * (nf - 1), start = center ? n / 2 : 0;
            const size_t length = full - start + 3; /* past the last frame: zeros */
            sl_stft_cfg c = {.n_fft = (int)n, .hop = (int)hop, .center = center, .pad = SL_PAD_CONSTANT};
            float *fr = rand_buf(nf * n), *w = rand_buf(n), *y = malloc(length * sizeof(float));
            float *env = calloc(full, sizeof(float)), *sum = calloc(full, sizeof(float));
            for (size_t k = 0; k < n; k++)
                w[k] = 0.2f + fabsf(w[k]);
            for (size_t m = 0; m < nf; m++)
                for (size_t k = 0; k < n; k++) {
                    env[m * hop + k] += w[k] * w[k];
                    sum[m * hop + k] += fr[m * n + k] * w[k];
                }
            CHECK(sl_op_overlap_add(ctx, &c, 1, nf, fr, w, length, y) == 0);
            for (size_t i = 0; i < length; i++) {
                const float want = start + i < full ? sum[start + i] / env[start + i] : 0.0f;
                if (memcmp(&want, &y[i], sizeof want)) {
                    printf("overlap_add n_fft %zu hop %zu frames %zu centre %d: sample %zu %.9g, want %.9g\n", n, hop,
                           nf, center, i, (double)y[i], (double)want);
                    bad++;
                    break;
                }
            }
            free(fr); free(w); free(y); free(env); free(sum);
        }
    printf("overlap_add envelope: %zu shapes x centre 0 / 1 bit for bit against every frame added: %d differ\n",
           sizeof shapes / sizeof *shapes, bad);
    CHECK(bad == 0);
}

/* rfft of frames where they lie (aligned as the plan's buffers) and through the
 * plan's buffer (the same frames one float off that alignment): the same bits. */
static void rfft_in_place_bits(sl_op_ctx *ctx)
{
    const int sizes[] = {2048, 512, 1024, 400, 1023, 16};
    int bad = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const size_t n = (size_t)sizes[si], count = 9, nb = n / 2 + 1;
        float *al = NULL, *off = NULL, *o1 = NULL, *o2 = NULL;
        CHECK(sl_op_alloc(ctx, (void **)&al, count * n * sizeof(float)) == 0);
        CHECK(sl_op_alloc(ctx, (void **)&off, (count * n + 1) * sizeof(float)) == 0);
        CHECK(sl_op_alloc(ctx, (void **)&o1, count * nb * 2 * sizeof(float)) == 0);
        CHECK(sl_op_alloc(ctx, (void **)&o2, count * nb * 2 * sizeof(float)) == 0);
        float *x = rand_buf(count * n);
        memcpy(al, x, count * n * sizeof(float));
        memcpy(off + 1, x, count * n * sizeof(float));
        for (int scaled = 0; scaled <= 1; scaled++) {
            const float sc = scaled ? 1.0f / sqrtf((float)n) : 1.0f;
            CHECK(sl_op_rfft(ctx, (int)n, count, al, o1, sc) == 0);
            CHECK(sl_op_rfft(ctx, (int)n, count, off + 1, o2, sc) == 0);
            if (memcmp(o1, o2, count * nb * 2 * sizeof(float))) {
                printf("rfft n %zu scale %g: frames in place and copied differ\n", n, (double)sc);
                bad++;
            }
        }
        CHECK_MSG(!memcmp(al, x, count * n * sizeof(float)), "rfft n %zu changed its input", n);
        free(x);
        sl_op_free(ctx, al); sl_op_free(ctx, off); sl_op_free(ctx, o1); sl_op_free(ctx, o2);
    }
    printf("rfft: frames in place against copied, 6 sizes x 2 scales: %d differ\n", bad);
    CHECK(bad == 0);
}

int main(void)
{
    const char *seed_env = getenv("SL_TEST_SEED");
    rng_state = seed_env ? strtoull(seed_env, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    if (!rng_state)
        rng_state = 1;
    printf("test_ops: random seed %llu (SL_TEST_SEED to replay)\n", (unsigned long long)rng_state);
    /* OpenBLAS's own worker threads are stopped before main (kernels/cpu/cpu_backend.c):
     * this process has no thread but its main one yet */
    const int tasks = sl_test_count_names("/proc/self/task", ""); /* with . and .. */
    CHECK_MSG(tasks < 0 || tasks - 2 == 1, "%d threads before any context was opened", tasks - 2);
    sl_log_set_level(SL_LOG_WARN);

    test_contexts();
    parity_backend("cpu");
    parity_backend("cuda-emu");
    parity_backend("cuda");

    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, "cpu") != 0)
        return 1;
    test_errors(ctx);
    golden_stft(ctx, "stft_n256_h64_reflect");
    golden_stft(ctx, "stft_n512_h128_reflect_norm");
    golden_stft(ctx, "stft_n400_h160_constant");
    golden_stft(ctx, "stft_n400_h100_constant_short");
    golden_stft(ctx, "stft_n1023_h256_reflect");
    golden_istft(ctx, "istft_n256_h64");
    golden_istft(ctx, "istft_n300_h75_long");
    ola_envelope_bits(ctx);
    rfft_in_place_bits(ctx);
    golden_mel("mel_sr22050_n2048_m64");
    golden_mel("mel_sr32000_n1024_m64");
    golden_mel("mel_sr16000_n512_m40");
    golden_hpss(ctx, "hpss_t40_f65_k7_5_m2_3");
    golden_hpss(ctx, "hpss_t9_f33_k31_31_m1");
    golden_hpss(ctx, "hpss_t50_f40_k17_9_m2");

    round_trip(ctx, 16, 4, SL_PAD_REFLECT, 0, 1, 9);
    round_trip(ctx, 16, 4, SL_PAD_CONSTANT, 0, 1, 1);
    round_trip(ctx, 256, 64, SL_PAD_REFLECT, 0, 3, 1001);
    round_trip(ctx, 512, 128, SL_PAD_REFLECT, 1, 2, 4097);
    round_trip(ctx, 1023, 256, SL_PAD_REFLECT, 0, 1, 5000);
    round_trip(ctx, 400, 100, SL_PAD_CONSTANT, 0, 2, 150);
    round_trip(ctx, 2048, 512, SL_PAD_REFLECT, 0, 2, 44100 + 7);
    round_trip(ctx, 2048, 512, SL_PAD_CONSTANT, 1, 1, 513);
    round_trip(ctx, 4096, 1024, SL_PAD_REFLECT, 1, 1, 30011); /* Demucs geometry */
    round_trip(ctx, 255, 85, SL_PAD_CONSTANT, 0, 1, 999);
    sl_op_ctx_close(ctx);
    return sl_test_finish("ops");
}
