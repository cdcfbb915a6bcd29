/* Argument checks and dispatch of the spectral ops (STFT framing, FFTs, masks,
 * mel, pooling of features), and the STFT geometry, window and mel filterbank
 * helpers they share with the models. */
#include "ops.h"

#include <math.h>
#include <stdlib.h>

#include "../common/sl_error.h"
#include "ops_dispatch.h"

/* ---- geometry ---- */

size_t sl_stft_n_frames(const sl_stft_cfg *c, size_t len)
{
    if (len == 0 || c->n_fft < 1 || c->hop < 1)
        return 0;
    size_t n = (size_t)c->n_fft;
    size_t padded = c->center ? len + 2 * (n / 2) : len;
    if (padded < n)
        return 0;
    return 1 + (padded - n) / (size_t)c->hop;
}

int sl_stft_check(const sl_stft_cfg *c, size_t len)
{
    if (!c || c->n_fft < 2 || c->n_fft > 65536)
        return sl_seterr(SL_EINVAL, "stft: n_fft %d out of range 2..65536", c ? c->n_fft : 0);
    if (c->hop < 1 || c->hop > c->n_fft)
        return sl_seterr(SL_EINVAL, "stft: hop %d out of range 1..n_fft (%d)", c->hop, c->n_fft);
    if (c->pad != SL_PAD_REFLECT && c->pad != SL_PAD_CONSTANT)
        return sl_seterr(SL_EINVAL, "stft: unknown pad mode %d", (int)c->pad);
    if (len == 0)
        return sl_seterr(SL_EINVAL, "stft: empty signal");
    if (c->center && c->pad == SL_PAD_REFLECT && (size_t)(c->n_fft / 2) >= len)
        return sl_seterr(SL_EINVAL,
                         "stft: reflect padding of %d samples needs a signal longer than that "
                         "(got %zu samples); use constant padding",
                         c->n_fft / 2, len);
    if (!c->center && len < (size_t)c->n_fft)
        return sl_seterr(SL_EINVAL, "stft: signal of %zu samples is shorter than n_fft %d (center off)",
                         len, c->n_fft);
    return 0;
}

int sl_window_hann(float *w, int n_fft, int win_length)
{
    if (n_fft < 1 || win_length < 1 || win_length > n_fft)
        return sl_seterr(SL_EINVAL, "hann window: win_length %d must be in 1..n_fft (%d)", win_length,
                         n_fft);
    int left = (n_fft - win_length) / 2;
    for (int i = 0; i < n_fft; i++)
        w[i] = 0.0f;
    /* torch.hann_window(N, periodic=True)[k] = 0.5 - 0.5*cos(2*pi*k/N); N=1 gives [1]. */
    for (int k = 0; k < win_length; k++)
        w[left + k] = win_length == 1 ? 1.0f : (float)(0.5 - 0.5 * cos(2.0 * M_PI * k / win_length));
    return 0;
}

static double hz_to_mel(double f)
{
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return f >= min_log_hz ? min_log_mel + log(f / min_log_hz) / logstep : f / f_sp;
}

static double mel_to_hz(double m)
{
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return m >= min_log_mel ? min_log_hz * exp(logstep * (m - min_log_mel)) : f_sp * m;
}

int sl_mel_filterbank(float *fb, int sr, int n_fft, int n_mels, double fmin, double fmax)
{
    if (fmax <= 0)
        fmax = sr / 2.0;
    if (sr < 1 || n_fft < 2 || n_mels < 1 || n_mels > 4096 || fmin < 0 || fmin >= fmax)
        return sl_seterr(SL_EINVAL, "mel filterbank: bad parameters (sr %d, n_fft %d, n_mels %d, fmin %g, fmax %g)",
                         sr, n_fft, n_mels, fmin, fmax);
    int n_bins = n_fft / 2 + 1;
    double *mel_f = malloc(sizeof(double) * (size_t)(n_mels + 2));
    if (!mel_f)
        return sl_seterr(SL_ENOMEM, "mel filterbank: out of memory");
    double m0 = hz_to_mel(fmin), m1 = hz_to_mel(fmax);
    /* numpy.linspace: start + i*step, last point exactly stop. */
    double step = (m1 - m0) / (double)(n_mels + 1);
    for (int i = 0; i < n_mels + 2; i++)
        mel_f[i] = mel_to_hz(i == n_mels + 1 ? m1 : m0 + i * step);
    for (int m = 0; m < n_mels; m++) {
        double lo = mel_f[m], ce = mel_f[m + 1], hi = mel_f[m + 2];
        double fd0 = ce - lo, fd1 = hi - ce;
        double enorm = 2.0 / (hi - lo);
        for (int k = 0; k < n_bins; k++) {
            double f = (double)k * sr / n_fft;
            double lower = -(lo - f) / fd0; /* -ramps[m] / fdiff[m] */
            double upper = (hi - f) / fd1;  /* ramps[m+2] / fdiff[m+1] */
            double v = lower < upper ? lower : upper;
            fb[(size_t)m * n_bins + k] = (float)((v > 0 ? v : 0.0) * enorm);
        }
    }
    free(mel_f);
    return 0;
}

int sl_op_frame(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                size_t first, size_t count, const float *window, float *frames)
{
    int rc = sl_stft_check(c, len);
    if (rc < 0)
        return rc;
    size_t nf = sl_stft_n_frames(c, len);
    if (first > nf || count > nf - first)
        return sl_seterr(SL_EINVAL, "op frame: frames %zu..%zu requested, the signal has %zu", first,
                         first + count, nf);
    if (batch == 0 || count == 0)
        return 0;
    DISPATCH(SL_OP_FRAME, frame, c, x, batch, len, first, count, window, frames);
}

int sl_op_rfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale)
{
    if (n_fft < 2 || n_fft > 65536)
        return bad("rfft", "n_fft out of range 2..65536");
    if (count == 0)
        return 0;
    DISPATCH(SL_OP_RFFT, rfft, n_fft, count, in, out, scale);
}

int sl_op_irfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale)
{
    if (n_fft < 2 || n_fft > 65536)
        return bad("irfft", "n_fft out of range 2..65536");
    if (count == 0)
        return 0;
    DISPATCH(SL_OP_IRFFT, irfft, n_fft, count, in, out, scale);
}

int sl_op_magnitude(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    if (n == 0)
        return 0;
    DISPATCH(SL_OP_MAGNITUDE, magnitude, n, cplx, out);
}

int sl_op_power(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    if (n == 0)
        return 0;
    DISPATCH(SL_OP_POWER, power, n, cplx, out);
}

int sl_op_median_time(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                      const float *in, float *out)
{
    if (kernel < 1 || kernel % 2 == 0 || kernel > 4095)
        return bad("median_time", "kernel must be odd, 1..4095");
    if (!batch || !n_frames || !n_bins)
        return 0;
    DISPATCH(SL_OP_MEDIAN_TIME, median_time, batch, n_frames, n_bins, kernel, in, out);
}

int sl_op_median_freq(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                      const float *in, float *out)
{
    if (kernel < 1 || kernel % 2 == 0 || kernel > 4095)
        return bad("median_freq", "kernel must be odd, 1..4095");
    if (!batch || !n_frames || !n_bins)
        return 0;
    DISPATCH(SL_OP_MEDIAN_FREQ, median_freq, batch, n_frames, n_bins, kernel, in, out);
}

int sl_op_hpss_masks(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                     float margin_h, float margin_p, float *mask_h, float *mask_p)
{
    if (!(power > 0) || !isfinite(power))
        return bad("hpss_masks", "power must be finite and > 0");
    if (!(margin_h >= 1) || !(margin_p >= 1) || !isfinite(margin_h) || !isfinite(margin_p))
        return bad("hpss_masks", "margins must be finite and >= 1");
    if (n == 0)
        return 0;
    DISPATCH(SL_OP_HPSS_MASKS, hpss_masks, n, harm, perc, power, margin_h, margin_p, mask_h, mask_p);
}

int sl_op_apply_mask(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out)
{
    if (n == 0)
        return 0;
    DISPATCH(SL_OP_APPLY_MASK, apply_mask, n, cplx, mask, out);
}

int sl_op_overlap_add(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                      const float *frames, const float *window, size_t length, float *out)
{
    if (!c || c->n_fft < 2 || c->n_fft > 65536 || c->hop < 1 || c->hop > c->n_fft)
        return bad("overlap_add", "n_fft must be 2..65536 and hop 1..n_fft");
    if (n_frames == 0)
        return bad("overlap_add", "no frames");
    if (!batch || !length)
        return 0;
    DISPATCH(SL_OP_OVERLAP_ADD, overlap_add, c, batch, n_frames, frames, window, length, out);
}

int sl_op_mel(sl_op_ctx *ctx, size_t count, int n_bins, int n_mels, const float *fb, const float *spec,
              float *mel)
{
    if (n_bins < 1 || n_mels < 1)
        return bad("mel", "n_bins and n_mels must be >= 1");
    if (count == 0)
        return 0;
    DISPATCH(SL_OP_MEL, mel, count, n_bins, n_mels, fb, spec, mel);
}

int sl_op_log_db(sl_op_ctx *ctx, size_t batch, size_t n, const float *in, float amin, float top_db,
                 float *out)
{
    if (!(amin > 0))
        return bad("log_db", "amin must be > 0");
    if (!batch || !n)
        return 0;
    DISPATCH(SL_OP_LOG_DB, log_db, batch, n, in, amin, top_db, out);
}

int sl_op_stats_pool(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_feat, const float *in,
                     float *out)
{
    if (n_frames == 0)
        return bad("stats_pool", "needs at least one frame");
    if (!batch || !n_feat)
        return 0;
    DISPATCH(SL_OP_STATS_POOL, stats_pool, batch, n_frames, n_feat, in, out);
}
