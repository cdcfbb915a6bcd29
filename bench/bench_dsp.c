/* DSP op benchmark (not a test): STFT (frame + rfft + magnitude) and iSTFT
 * (irfft + overlap_add) throughput on a batch of stereo 44.1 kHz signals, and
 * the hpss separation model on one stereo signal, on every backend that
 * sl_op_ctx_open accepts (a backend that does not open, or lacks an op, is
 * printed as skipped, with the reason).
 *
 * What is timed. Inputs already sit in backend memory (uploaded before the
 * clock starts), outputs stay there; the clock stops after sl_op_sync, so host
 * <-> device copies are not counted. Each channel is transformed whole (all of
 * its frames at once), as the hpss model does:
 *   stft : x[ch][L] -> |X|[ch][frames][bins]            (all channels)
 *   istft: X[ch][frames][bins] complex -> y[ch][L]        (X = the STFT of x)
 *   hpss : sl_sep_run on [2][L] -> harmonic, percussive, residual (host in/out,
 *          everything the model does, including its uploads and downloads)
 *   bandwidth (--bw-mb M, 0 = off): the memory-bound ops on buffers of M MiB,
 *          each as bytes it must move (every input read once, every output
 *          written once) / time, against sl_op_copy of M MiB on the same
 *          backend (read + write), the device's copy bandwidth. The median
 *          filters are listed too but are compute-bound (a radix select of
 *          32 * kernel comparisons per element).
 * One untimed warm-up run (FFTW plans, page faults), then the best of --repeat.
 * The CPU backend runs on one thread per context.
 *
 * Output: one JSON object per line on stdout (bench/run_dsp.sh reads them);
 * a human summary on stderr.
 *
 * Usage: bench_dsp [--tracks 8] [--seconds 60] [--hpss-seconds 60] [--repeat 3]
 *                  [--backends cpu,cuda] [--bw-mb 256] [--dump-hpss-signal PATH]
 * --dump-hpss-signal writes the hpss input (float32 [2][L], little-endian) so the
 * Python baselines can run on the very same samples. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/ops.h"
#include "models/model.h"
#include "bench/bench_util.h"

#define SR 44100

static uint64_t rng = 0x2545F4914F6CDD1DULL;
static float noise(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* Music-like test signal: two partials, decaying noise bursts every 0.5 s (the
 * expression bench/run.sh uses), a little noise floor; channels differ. */
static void make_signal(float *x, size_t len, int ch)
{
    const double f1 = 220.0 * (1.0 + 0.01 * ch), f2 = 331.0 * (1.0 + 0.007 * ch);
    for (size_t i = 0; i < len; i++) {
        double t = (double)i / SR;
        double burst = exp(-40.0 * fmod(t + 0.05 * ch, 0.5));
        x[i] = (float)(0.3 * sin(2 * M_PI * f1 * t) + 0.2 * sin(2 * M_PI * f2 * t) + 0.3 * noise() * burst +
                       0.01 * noise());
    }
}

typedef struct {
    sl_op_ctx *ctx;
    const char *backend;
    size_t n_ch, len; /* channels in the batch (tracks x 2), samples each */
    float *x;         /* backend [n_ch][len] */
} bench_in;

static void emit_result(const bench_in *b, const char *op, int n_fft, int hop, int tracks, double seconds,
                        size_t frames, double best, int repeat)
{
    double audio = tracks * seconds; /* stereo track-seconds */
    printf("{\"bench\":\"dsp\",\"impl\":\"stemline\",\"backend\":\"%s\",\"device\":\"%s\",\"threads\":%d,"
           "\"op\":\"%s\",\"n_fft\":%d,\"hop\":%d,\"tracks\":%d,\"channels\":2,\"seconds\":%g,\"frames\":%zu,"
           "\"best_s\":%.6f,\"repeat\":%d,\"frames_per_s\":%.1f,\"x_realtime\":%.2f}\n",
           b->backend, sl_op_ctx_device(b->ctx), strcmp(b->backend, "cpu") ? 0 : 1, op, n_fft, hop, tracks,
           seconds, frames, best, repeat, (double)frames / best, audio / best);
    fflush(stdout);
    fprintf(stderr, "  %-5s %-6s n_fft %5d hop %5d: best %8.4f s  %10.0f frames/s  %8.1fx realtime\n", b->backend,
            op, n_fft, hop, best, (double)frames / best, audio / best);
}

static void emit_skip(const char *backend, const char *what, const char *why)
{
    printf("{\"bench\":\"dsp\",\"impl\":\"stemline\",\"backend\":\"%s\",\"op\":\"%s\",\"skipped\":\"", backend,
           what);
    for (const char *p = why; *p; p++) /* JSON-escape the reason */
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p >= 0x20)
            putchar(*p);
    printf("\"}\n");
    fflush(stdout);
    fprintf(stderr, "  %-5s %-6s SKIPPED: %s\n", backend, what, why);
}

static int alloc_f(sl_op_ctx *ctx, float **p, size_t n) { return sl_op_alloc(ctx, (void **)p, n * sizeof(float)); }

/* One STFT pass over every channel: frames and spectrum of one channel at a time. */
static int stft_pass(const bench_in *b, const sl_stft_cfg *c, const float *w, float *frames, float *spec,
                     float *mag)
{
    size_t nf = sl_stft_n_frames(c, b->len), nb = (size_t)c->n_fft / 2 + 1;
    int rc = 0;
    for (size_t ch = 0; ch < b->n_ch && !rc; ch++) {
        rc = sl_op_frame(b->ctx, c, b->x + ch * b->len, 1, b->len, 0, nf, w, frames);
        if (!rc)
            rc = sl_op_rfft(b->ctx, c->n_fft, nf, frames, spec, 1.0f);
        if (!rc)
            rc = sl_op_magnitude(b->ctx, nf * nb, spec, mag + ch * nf * nb);
    }
    return rc ? rc : sl_op_sync(b->ctx);
}

static int istft_pass(const bench_in *b, const sl_stft_cfg *c, const float *w, const float *spec_all,
                      float *frames, float *y)
{
    size_t nf = sl_stft_n_frames(c, b->len), nb = (size_t)c->n_fft / 2 + 1;
    int rc = 0;
    for (size_t ch = 0; ch < b->n_ch && !rc; ch++) {
        rc = sl_op_irfft(b->ctx, c->n_fft, nf, spec_all + ch * nf * nb * 2, frames, 1.0f / (float)c->n_fft);
        if (!rc)
            rc = sl_op_overlap_add(b->ctx, c, 1, nf, frames, w, b->len, y + ch * b->len);
    }
    return rc ? rc : sl_op_sync(b->ctx);
}

static int bench_stft_istft(const bench_in *b, int n_fft, int hop, int tracks, double seconds, int repeat)
{
    sl_stft_cfg c = {n_fft, hop, 1, SL_PAD_REFLECT, 0};
    size_t nf = sl_stft_n_frames(&c, b->len), nb = (size_t)n_fft / 2 + 1, n = (size_t)n_fft;
    float *hw = malloc(n * sizeof(float));
    float *w = NULL, *frames = NULL, *spec = NULL, *mag = NULL, *spec_all = NULL, *y = NULL;
    int rc = hw ? sl_window_hann(hw, n_fft, n_fft) : SL_ENOMEM;
    if (!rc)
        rc = alloc_f(b->ctx, &w, n);
    if (!rc)
        rc = sl_op_upload(b->ctx, w, hw, n * sizeof(float));
    if (!rc)
        rc = alloc_f(b->ctx, &frames, nf * n);
    if (!rc)
        rc = alloc_f(b->ctx, &spec, nf * nb * 2);
    if (!rc)
        rc = alloc_f(b->ctx, &mag, b->n_ch * nf * nb);
    if (!rc)
        rc = alloc_f(b->ctx, &spec_all, b->n_ch * nf * nb * 2);
    if (!rc)
        rc = alloc_f(b->ctx, &y, b->n_ch * b->len);
    char why[256];
    if (rc < 0) {
        snprintf(why, sizeof why, "n_fft %d: %s", n_fft, sl_lasterr());
        emit_skip(b->backend, "stft", why);
        goto out;
    }
    /* STFT */
    double best = INFINITY;
    for (int r = 0; r <= repeat && !rc; r++) { /* r == 0: warm-up */
        double t0 = bench_now();
        rc = stft_pass(b, &c, w, frames, spec, mag);
        double dt = bench_now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    if (rc < 0) {
        snprintf(why, sizeof why, "n_fft %d: %s", n_fft, sl_lasterr());
        emit_skip(b->backend, "stft", why);
        goto out;
    }
    emit_result(b, "stft", n_fft, hop, tracks, seconds, b->n_ch * nf, best, repeat);

    /* iSTFT input: the complex STFT of every channel (untimed) */
    for (size_t ch = 0; ch < b->n_ch && !rc; ch++) {
        rc = sl_op_frame(b->ctx, &c, b->x + ch * b->len, 1, b->len, 0, nf, w, frames);
        if (!rc)
            rc = sl_op_rfft(b->ctx, n_fft, nf, frames, spec_all + ch * nf * nb * 2, 1.0f);
    }
    best = INFINITY;
    for (int r = 0; r <= repeat && !rc; r++) {
        double t0 = bench_now();
        rc = istft_pass(b, &c, w, spec_all, frames, y);
        double dt = bench_now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    if (rc < 0) {
        snprintf(why, sizeof why, "n_fft %d: %s", n_fft, sl_lasterr());
        emit_skip(b->backend, "istft", why);
        goto out;
    }
    emit_result(b, "istft", n_fft, hop, tracks, seconds, b->n_ch * nf, best, repeat);
    /* sanity: the round trip must give the input back, or the figures mean nothing */
    {
        size_t cnt = b->n_ch * b->len;
        float *hx = malloc(cnt * sizeof(float)), *hy = malloc(cnt * sizeof(float));
        double err = INFINITY, peak = 0;
        if (hx && hy && !sl_op_download(b->ctx, hx, b->x, cnt * sizeof(float)) &&
            !sl_op_download(b->ctx, hy, y, cnt * sizeof(float))) {
            err = 0;
            for (size_t i = 0; i < cnt; i++) {
                peak = fmax(peak, fabs((double)hx[i]));
                double e = fabs((double)hx[i] - hy[i]);
                if (!(e <= err))
                    err = isnan(e) ? INFINITY : e;
            }
        }
        free(hx);
        free(hy);
        if (!(err <= 1e-5 * peak)) {
            fprintf(stderr, "bench_dsp: %s n_fft %d: STFT->iSTFT round trip error %g (peak %g): results invalid\n",
                    b->backend, n_fft, err, peak);
            rc = SL_ENUMERIC;
        }
    }
out:
    free(hw);
    sl_op_free(b->ctx, w);
    sl_op_free(b->ctx, frames);
    sl_op_free(b->ctx, spec);
    sl_op_free(b->ctx, mag);
    sl_op_free(b->ctx, spec_all);
    sl_op_free(b->ctx, y);
    return rc;
}

static int bench_hpss(sl_op_ctx *ctx, const char *backend, float *const in[2], size_t len, double seconds,
                      int repeat)
{
    sl_sep_model *m = NULL;
    int rc = sl_sep_open(&m, "hpss", NULL, NULL, ctx);
    if (rc < 0) {
        emit_skip(backend, "hpss", sl_lasterr());
        return 0;
    }
    float *buf = malloc(6 * len * sizeof(float));
    if (!buf) {
        sl_sep_close(m);
        return SL_ENOMEM;
    }
    float *rows[3][2];
    float *const *out[3];
    for (int k = 0; k < 3; k++) {
        for (int c = 0; c < 2; c++)
            rows[k][c] = buf + (size_t)(2 * k + c) * len;
        out[k] = rows[k];
    }
    const float *cin[2] = {in[0], in[1]};
    double best = INFINITY;
    for (int r = 0; r <= repeat && !rc; r++) {
        double t0 = bench_now();
        rc = sl_sep_run(m, cin, len, out);
        double dt = bench_now() - t0;
        if (r > 0 && dt < best)
            best = dt;
    }
    if (rc < 0) {
        emit_skip(backend, "hpss", sl_lasterr());
    } else {
        const sl_sep_info *info = sl_sep_get_info(m);
        sl_stft_cfg c = {2048, 512, 1, SL_PAD_REFLECT, 0};
        size_t frames = 2 * sl_stft_n_frames(&c, len);
        printf("{\"bench\":\"dsp\",\"impl\":\"stemline\",\"backend\":\"%s\",\"device\":\"%s\",\"threads\":%d,"
               "\"op\":\"hpss\",\"params\":\"%s\",\"tracks\":1,\"channels\":2,\"seconds\":%g,\"frames\":%zu,"
               "\"best_s\":%.6f,\"repeat\":%d,\"frames_per_s\":%.1f,\"x_realtime\":%.2f}\n",
               backend, sl_op_ctx_device(ctx), strcmp(backend, "cpu") ? 0 : 1, info->params, seconds, frames, best,
               repeat, (double)frames / best, seconds / best);
        fflush(stdout);
        fprintf(stderr, "  %-5s hpss   (%s) %g s stereo: best %.4f s  %.1fx realtime\n", backend, info->params,
                seconds, best, seconds / best);
    }
    free(buf);
    sl_sep_close(m);
    return rc;
}


/* ---- achieved bandwidth of the memory-bound ops ---- */

typedef struct {
    sl_op_ctx *ctx;
    size_t n;          /* complex elements of a spectrum buffer: M MiB / 8 */
    float *a, *b, *c, *d; /* 2n floats each */
    float *win;
} bw_bufs;

enum { BW_COPY, BW_MAGNITUDE, BW_POWER, BW_MASKS, BW_APPLY, BW_FRAME, BW_OLA, BW_LOG_DB, BW_MED_T, BW_MED_F, BW_N };
static const char *const bw_names[BW_N] = {"copy", "magnitude", "power", "hpss_masks", "apply_mask",
                                           "frame", "overlap_add", "log_db", "median_time", "median_freq"};

/* Runs op k once (queued); *bytes = the bytes it must move. */
static int bw_op(const bw_bufs *B, int k, double *bytes)
{
    const size_t n = B->n;
    const sl_stft_cfg c = {2048, 512, 1, SL_PAD_REFLECT, 0};
    /* frame / overlap_add: a signal of Lf samples whose frames fill a buffer (2n floats) */
    const size_t nb = 1025, nfr = 2 * n / 2048, Lf = (nfr - 1) * 512;
    switch (k) {
    case BW_COPY:
        *bytes = 2.0 * 8 * (double)n;
        return sl_op_copy(B->ctx, B->b, B->a, n * 8);
    case BW_MAGNITUDE:
        *bytes = 12.0 * (double)n;
        return sl_op_magnitude(B->ctx, n, B->a, B->b);
    case BW_POWER:
        *bytes = 12.0 * (double)n;
        return sl_op_power(B->ctx, n, B->a, B->b);
    case BW_MASKS: /* 2n real spectra in, 2n masks out */
        *bytes = 16.0 * (double)n;
        return sl_op_hpss_masks(B->ctx, n, B->a, B->a + n, 2.0f, 2.0f, 2.0f, B->b, B->b + n);
    case BW_APPLY: /* complex n + mask n in, complex n out */
        *bytes = 20.0 * (double)n;
        return sl_op_apply_mask(B->ctx, n, B->a, B->c, B->b);
    case BW_FRAME: /* Lf samples in (each read n_fft/hop = 4 times: the cache's job), nfr frames out */
        *bytes = 4.0 * ((double)Lf + (double)nfr * 2048);
        return sl_op_frame(B->ctx, &c, B->c, 1, Lf, 0, nfr, B->win, B->a);
    case BW_OLA: /* nfr frames in, Lf samples out */
        *bytes = 4.0 * ((double)nfr * 2048 + (double)Lf);
        return sl_op_overlap_add(B->ctx, &c, 1, nfr, B->a, B->win, Lf, B->b);
    case BW_LOG_DB:
        *bytes = 8.0 * (double)n;
        return sl_op_log_db(B->ctx, 1, n, B->c, 1e-10f, 80.0f, B->d);
    case BW_MED_T:
        *bytes = 8.0 * (double)(n / nb * nb);
        return sl_op_median_time(B->ctx, 1, n / nb, nb, 31, B->c, B->d);
    default:
        *bytes = 8.0 * (double)(n / nb * nb);
        return sl_op_median_freq(B->ctx, 1, n / nb, nb, 31, B->c, B->d);
    }
}

static int bench_bandwidth(sl_op_ctx *ctx, const char *backend, size_t mb, int repeat)
{
    bw_bufs B = {ctx, mb * 1048576 / 8, NULL, NULL, NULL, NULL, NULL};
    int rc = alloc_f(ctx, &B.a, 2 * B.n);
    if (!rc)
        rc = alloc_f(ctx, &B.b, 2 * B.n);
    if (!rc)
        rc = alloc_f(ctx, &B.c, 2 * B.n);
    if (!rc)
        rc = alloc_f(ctx, &B.d, 2 * B.n);
    if (!rc)
        rc = alloc_f(ctx, &B.win, 2048);
    float *h = rc ? NULL : malloc(2 * B.n * sizeof(float));
    if (!rc && h) { /* positive data (masks, log_db, medians read it as magnitudes) */
        for (size_t i = 0; i < 2 * B.n; i++)
            h[i] = 0.5f + 0.5f * noise();
        rc = sl_op_upload(ctx, B.a, h, 2 * B.n * sizeof(float));
        if (!rc)
            rc = sl_op_upload(ctx, B.c, h, 2 * B.n * sizeof(float));
        if (!rc)
            rc = sl_op_upload(ctx, B.win, h, 2048 * sizeof(float)); /* positive: NOLA holds */
        if (!rc)
            rc = sl_op_sync(ctx);
    } else if (!rc) {
        rc = SL_ENOMEM;
    }
    free(h);
    double copy_gbs = 0;
    for (int k = 0; k < BW_N && !rc; k++) {
        double bytes = 0, best = 1e30;
        for (int r = -1; r < repeat && !rc; r++) { /* r = -1: warm-up */
            double t0 = bench_now();
            rc = bw_op(&B, k, &bytes);
            if (!rc)
                rc = sl_op_sync(ctx);
            double t = bench_now() - t0;
            if (r >= 0 && t < best)
                best = t;
        }
        if (rc)
            break;
        const double gbs = bytes / best / 1e9;
        if (k == BW_COPY)
            copy_gbs = gbs;
        const int compute = k == BW_MED_T || k == BW_MED_F;
        printf("{\"bench\":\"bandwidth\",\"impl\":\"stemline\",\"backend\":\"%s\",\"device\":\"%s\","
               "\"op\":\"%s\",\"buffer_mb\":%zu,\"bytes\":%.0f,\"best_s\":%.9g,\"repeat\":%d,\"gb_per_s\":%.3f,"
               "\"copy_gb_per_s\":%.2f,\"fraction_of_copy\":%.3f,\"memory_bound\":%s}\n",
               backend, sl_op_ctx_device(ctx), bw_names[k], mb, bytes, best, repeat, gbs, copy_gbs,
               gbs / copy_gbs, compute ? "false" : "true");
        fflush(stdout);
        fprintf(stderr, "  %-5s bandwidth %-12s %9.2f GB/s  %5.1f%% of copy%s\n", backend, bw_names[k], gbs,
                100.0 * gbs / copy_gbs, compute ? "  (compute-bound)" : "");
    }
    sl_op_free(ctx, B.a);
    sl_op_free(ctx, B.b);
    sl_op_free(ctx, B.c);
    sl_op_free(ctx, B.d);
    sl_op_free(ctx, B.win);
    if (rc < 0) {
        emit_skip(backend, "bandwidth", sl_lasterr());
        return 0;
    }
    return 0;
}

static int run_backend(const char *backend, int tracks, double seconds, double hpss_seconds, int repeat,
                       float *const hpss_in[2], size_t bw_mb)
{
    sl_op_ctx *ctx = NULL;
    int rc = sl_op_ctx_open(&ctx, backend);
    if (rc < 0) {
        emit_skip(backend, "all", sl_lasterr());
        return 0; /* an absent backend is not a failure of the benchmark */
    }
    static const sl_op_id need[] = {SL_OP_FRAME, SL_OP_RFFT, SL_OP_MAGNITUDE, SL_OP_IRFFT, SL_OP_OVERLAP_ADD};
    if (sl_op_require(ctx, need, sizeof need / sizeof need[0], "bench_dsp") < 0) {
        emit_skip(backend, "stft+istft", sl_lasterr());
    } else {
        fprintf(stderr, "backend %s: %s\n", backend, sl_op_ctx_device(ctx));
        bench_in b = {ctx, backend, (size_t)tracks * 2, (size_t)llround(seconds * SR), NULL};
        float *hx = malloc(b.n_ch * b.len * sizeof(float));
        rc = hx ? alloc_f(ctx, &b.x, b.n_ch * b.len) : SL_ENOMEM;
        if (!rc) {
            rng = 0x2545F4914F6CDD1DULL;
            for (size_t ch = 0; ch < b.n_ch; ch++)
                make_signal(hx + ch * b.len, b.len, (int)ch);
            rc = sl_op_upload(ctx, b.x, hx, b.n_ch * b.len * sizeof(float));
        }
        free(hx);
        if (rc < 0) {
            emit_skip(backend, "stft+istft", sl_lasterr());
            rc = 0;
        } else {
            rc = bench_stft_istft(&b, 4096, 1024, tracks, seconds, repeat);
            if (!rc)
                rc = bench_stft_istft(&b, 2048, 512, tracks, seconds, repeat);
        }
        sl_op_free(ctx, b.x);
    }
    if (!rc)
        rc = bench_hpss(ctx, backend, hpss_in, (size_t)llround(hpss_seconds * SR), hpss_seconds, repeat);
    if (!rc && bw_mb)
        rc = bench_bandwidth(ctx, backend, bw_mb, repeat);
    sl_op_ctx_close(ctx);
    return rc;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_dsp [--tracks N] [--seconds S] [--hpss-seconds S] [--repeat N] "
                    "[--backends cpu,cuda] [--bw-mb MiB (0: off)] [--dump-hpss-signal PATH]\n");
}

int main(int argc, char **argv)
{
    int tracks = 8, repeat = 3;
    double seconds = 60, hpss_seconds = 60;
    const char *backends = "cpu,cuda", *dump = NULL;
    long bw_mb = 256;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
            return 2;
        }
        if (!strcmp(a, "--tracks"))
            tracks = atoi(v);
        else if (!strcmp(a, "--seconds"))
            seconds = atof(v);
        else if (!strcmp(a, "--hpss-seconds"))
            hpss_seconds = atof(v);
        else if (!strcmp(a, "--repeat"))
            repeat = atoi(v);
        else if (!strcmp(a, "--backends"))
            backends = v;
        else if (!strcmp(a, "--bw-mb"))
            bw_mb = atol(v);
        else if (!strcmp(a, "--dump-hpss-signal"))
            dump = v;
        else {
            usage();
            return 2;
        }
        i++;
    }
    if (tracks < 1 || repeat < 1 || !(seconds >= 1) || !(hpss_seconds >= 1) || bw_mb < 0 || bw_mb > 65536) {
        usage();
        return 2;
    }
    sl_log_set_level(SL_LOG_WARN);

    /* hpss input: one stereo signal, the same on every backend */
    size_t hl = (size_t)llround(hpss_seconds * SR);
    float *hpss_buf = malloc(2 * hl * sizeof(float));
    if (!hpss_buf)
        return 1;
    float *const hpss_in[2] = {hpss_buf, hpss_buf + hl};
    rng = 0x9E3779B97F4A7C15ULL;
    make_signal(hpss_in[0], hl, 0);
    make_signal(hpss_in[1], hl, 1);
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(hpss_buf, sizeof(float), 2 * hl, f) != 2 * hl || fclose(f) != 0) {
            fprintf(stderr, "bench_dsp: cannot write %s\n", dump);
            return 1;
        }
    }
    fprintf(stderr, "bench_dsp: STFT/iSTFT on %d stereo tracks x %g s at %d Hz, hpss on %g s stereo; best of %d "
                    "after one warm-up\n",
            tracks, seconds, SR, hpss_seconds, repeat);

    int rc = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", backends);
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name && !rc; name = strtok_r(NULL, ",", &save))
        rc = run_backend(name, tracks, seconds, hpss_seconds, repeat, hpss_in, (size_t)bw_mb);
    free(hpss_buf);
    if (rc < 0)
        fprintf(stderr, "bench_dsp: %s\n", sl_lasterr());
    return rc < 0 ? 1 : 0;
}
