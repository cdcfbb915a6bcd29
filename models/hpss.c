/* Separation model "hpss": harmonic / percussive / residual by median
 * filtering of the STFT magnitude (Fitzgerald 2010) with the soft masks and
 * separation margins of Driedger, Mueller & Disch 2014, exactly as
 * librosa.decompose.hpss(S, kernel_size, power, margin) computes them on an
 * STFT with torch.stft semantics.
 *
 * Defaults: 44.1 kHz stereo (channels separated independently), n_fft 2048,
 * hop 512, periodic Hann, centred with reflect padding, kernels 31 frames
 * (harmonic, along time) and 31 bins (percussive, along frequency), power 2,
 * margin 2 for both masks. Margin 1 would split every bin between H and P and
 * leave an empty residual; with margin 2 a bin goes to H only where the
 * horizontal median exceeds twice the vertical one (and vice versa), and what is
 * neither clearly harmonic nor percussive lands in the residual.
 *
 * residual = mix - harmonic - percussive, computed in the time domain, so the
 * three stems sum to the input up to float rounding whatever the STFT does. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../common/sl_log.h"
#include "model_impl.h"

typedef struct {
    sl_stft_cfg stft;
    int kernel_h, kernel_p;
    float margin_h, margin_p, power;
    float *window; /* backend memory, n_fft */
    sl_model_ws ws; /* hpss_bufs, kept across segments */
    int host;      /* the backend is the cpu, whose memory is host memory: inputs read and
                    * outputs written in place, frames transformed in blocks */
    size_t block;  /* frames per block there (SL_HPSS_BLOCK_FRAMES; 0: all at once) */
} hpss_state;

/* Frames framed and transformed (and masked and inverse-transformed) per call
 * on the CPU: a block's frames and spectra (about 0.5 MB each at n_fft 2048)
 * stay in the core's cache between the steps instead of crossing memory as
 * whole-track planes. The steps are the same per frame, so the output does not
 * depend on the block size. */
#define HPSS_BLOCK_FRAMES 64

static const sl_op_id hpss_ops[] = {SL_OP_FRAME,       SL_OP_RFFT,       SL_OP_MAGNITUDE,
                                    SL_OP_MEDIAN_TIME, SL_OP_MEDIAN_FREQ, SL_OP_HPSS_MASKS,
                                    SL_OP_APPLY_MASK,  SL_OP_IRFFT,      SL_OP_OVERLAP_ADD};

static void hpss_close(sl_sep_model *m)
{
    hpss_state *st = m->impl;
    if (!st)
        return;
    sl_op_free(m->ctx, st->window);
    sl_model_ws_free(m->ctx, &st->ws);
    free(st);
    m->impl = NULL;
}

/* Buffers of one channel's run, all in backend memory. fb: a block of frames
 * (forward) or of masked spectra (inverse); frames: the inverse-transformed
 * frames, and before them the magnitudes; x and y: the input and one source
 * (backends whose memory is not host memory). */
typedef struct {
    float *fb, *frames, *spec, *mh, *mp, *x, *y;
} hpss_bufs;

/* One source: mask the spectrum block by block, back to samples, into dst[n]
 * (host memory: written in place, or through b->y). */
static int render(sl_op_ctx *ctx, const hpss_state *st, const sl_stft_cfg *c, hpss_bufs *b, size_t n_frames,
                  size_t block, const float *mask, size_t n, float *dst)
{
    const size_t nfft = (size_t)c->n_fft, nb = nfft / 2 + 1;
    const float scale = c->normalized ? 1.0f / sqrtf((float)c->n_fft) : 1.0f / (float)c->n_fft;
    int rc = 0;
    for (size_t j = 0; j < n_frames && !rc; j += block) {
        const size_t cnt = n_frames - j < block ? n_frames - j : block;
        rc = sl_op_apply_mask(ctx, cnt * nb, b->spec + j * nb * 2, mask + j * nb, b->fb);
        if (!rc)
            rc = sl_op_irfft(ctx, c->n_fft, cnt, b->fb, b->frames + j * nfft, scale);
    }
    if (!rc)
        rc = sl_op_overlap_add(ctx, c, 1, n_frames, b->frames, st->window, n, st->host ? dst : b->y);
    if (!rc && !st->host)
        rc = sl_op_download(ctx, dst, b->y, n * sizeof(float));
    return rc;
}

static int hpss_run(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out)
{
    hpss_state *st = m->impl;
    sl_op_ctx *ctx = m->ctx;
    if (n == 0)
        return 0;
    sl_stft_cfg c = st->stft;
    if (c.pad == SL_PAD_REFLECT && (size_t)(c.n_fft / 2) >= n) {
        /* Reflect padding needs more samples than the pad; a track this short
         * (< n_fft/2 samples) is zero-padded instead. */
        c.pad = SL_PAD_CONSTANT;
    }
    const size_t nf = sl_stft_n_frames(&c, n);
    const size_t nfft = (size_t)c.n_fft, nb = nfft / 2 + 1;
    const size_t block = st->host && st->block > 0 && st->block < nf ? st->block : nf;
    const size_t fb = block * (nfft > 2 * nb ? nfft : 2 * nb);
    const float fscale = c.normalized ? 1.0f / sqrtf((float)c.n_fft) : 1.0f;
    hpss_bufs b;
    const size_t host_n = st->host ? 0 : n;
    const size_t sizes[] = {fb, nf * nfft, nf * nb * 2, nf * nb, nf * nb, host_n, host_n};
    int rc = sl_model_ws_get(ctx, &st->ws, sizeof sizes / sizeof *sizes, sizes, (float **)&b);
    float *mag = b.frames; /* the frames' buffer is free until the first render */
    for (int ch = 0; ch < m->info.channels && rc == 0; ch++) {
        const float *x = in[ch];
        if (!st->host) {
            rc = sl_op_upload(ctx, b.x, in[ch], n * sizeof(float));
            x = b.x;
        }
        for (size_t j = 0; j < nf && !rc; j += block) {
            const size_t cnt = nf - j < block ? nf - j : block;
            rc = sl_op_frame(ctx, &c, x, 1, n, j, cnt, st->window, b.fb);
            if (!rc)
                rc = sl_op_rfft(ctx, c.n_fft, cnt, b.fb, b.spec + j * nb * 2, fscale);
            if (!rc)
                rc = sl_op_magnitude(ctx, cnt * nb, b.spec + j * nb * 2, mag + j * nb);
        }
        if (!rc)
            rc = sl_op_median_time(ctx, 1, nf, nb, st->kernel_h, mag, b.mh);
        if (!rc)
            rc = sl_op_median_freq(ctx, 1, nf, nb, st->kernel_p, mag, b.mp);
        if (!rc) /* masks overwrite the medians in place */
            rc = sl_op_hpss_masks(ctx, nf * nb, b.mh, b.mp, st->power, st->margin_h, st->margin_p,
                                  b.mh, b.mp);
        if (!rc)
            rc = render(ctx, st, &c, &b, nf, block, b.mh, n, out[0][ch]);
        if (!rc)
            rc = render(ctx, st, &c, &b, nf, block, b.mp, n, out[1][ch]);
        if (!rc) {
            const float *xi = in[ch];
            const float *h = out[0][ch], *p = out[1][ch];
            float *r = out[2][ch];
            for (size_t i = 0; i < n; i++)
                r[i] = xi[i] - h[i] - p[i];
        }
    }
    return rc;
}

static const char *const pad_names[] = {"reflect", "constant", NULL};

int sl_hpss_init(sl_sep_model *m, const sl_cfg_opts *opts)
{
    static const char *sec = "separation";
    int rc = sl_op_require(m->ctx, hpss_ops, sizeof hpss_ops / sizeof hpss_ops[0], "separation model hpss");
    if (rc < 0)
        return rc;
    hpss_state *st = calloc(1, sizeof *st);
    if (!st)
        return sl_seterr(SL_ENOMEM, "hpss: out of memory");
    m->impl = st;
    m->close = hpss_close;
    m->run = hpss_run;
    st->stft = (sl_stft_cfg){.n_fft = 2048, .hop = 512, .center = 1, .pad = SL_PAD_REFLECT, .normalized = 0};
    st->kernel_h = 31;
    st->kernel_p = 31;
    st->margin_h = st->margin_p = 2.0f;
    st->power = 2.0f;
    {
        /* the cpu backend's memory is host memory: nothing to copy in or out (no probe
         * through sl_op_wrap_host, which would allocate device memory elsewhere) */
        st->host = !strcmp(sl_op_ctx_backend(m->ctx), "cpu");
        const char *e = getenv("SL_HPSS_BLOCK_FRAMES"); /* tests: 0 = the whole track at once */
        st->block = e && *e ? (size_t)strtoul(e, NULL, 10) : HPSS_BLOCK_FRAMES;
    }
    const sl_cfg_opt *hop_opt = NULL, *nfft_opt = NULL;
    for (size_t i = 0; opts && i < opts->n; i++) {
        const sl_cfg_opt *o = &opts->items[i];
        double d;
        int v;
        if (!strcmp(o->key, "n_fft")) {
            rc = sl_model_opt_int(o, sec, 16, 16384, 0, &st->stft.n_fft);
            nfft_opt = o;
        } else if (!strcmp(o->key, "hop")) {
            rc = sl_model_opt_int(o, sec, 1, 16384, 0, &st->stft.hop);
            hop_opt = o;
        } else if (!strcmp(o->key, "kernel_harmonic")) {
            rc = sl_model_opt_int(o, sec, 3, 255, 1, &st->kernel_h);
        } else if (!strcmp(o->key, "kernel_percussive")) {
            rc = sl_model_opt_int(o, sec, 3, 255, 1, &st->kernel_p);
        } else if (!strcmp(o->key, "margin")) {
            rc = sl_model_opt_double(o, sec, 1.0, 100.0, &d);
            st->margin_h = st->margin_p = (float)d;
        } else if (!strcmp(o->key, "margin_harmonic")) {
            rc = sl_model_opt_double(o, sec, 1.0, 100.0, &d);
            st->margin_h = (float)d;
        } else if (!strcmp(o->key, "margin_percussive")) {
            rc = sl_model_opt_double(o, sec, 1.0, 100.0, &d);
            st->margin_p = (float)d;
        } else if (!strcmp(o->key, "power")) {
            rc = sl_model_opt_double(o, sec, 0.01, 16.0, &d);
            st->power = (float)d;
        } else if (!strcmp(o->key, "pad_mode")) {
            rc = sl_model_opt_choice(o, sec, pad_names, &v);
            st->stft.pad = v == 0 ? SL_PAD_REFLECT : SL_PAD_CONSTANT;
        } else {
            rc = sl_model_opt_error(o, sec,
                                    "unknown option of model hpss (known: n_fft, hop, kernel_harmonic, "
                                    "kernel_percussive, margin, margin_harmonic, margin_percussive, "
                                    "power, pad_mode)");
        }
        if (rc < 0)
            return rc;
    }
    /* A periodic Hann window satisfies NOLA for any hop < n_fft; half the
     * window is the largest hop that still overlaps every sample twice. */
    if (st->stft.hop > st->stft.n_fft / 2) {
        const sl_cfg_opt *o = hop_opt ? hop_opt : nfft_opt;
        return sl_model_opt_error(o, sec, "hop %d must be at most n_fft/2 = %d", st->stft.hop,
                                  st->stft.n_fft / 2);
    }
    float *w = malloc(sizeof(float) * (size_t)st->stft.n_fft);
    if (!w)
        return sl_seterr(SL_ENOMEM, "hpss: out of memory");
    sl_window_hann(w, st->stft.n_fft, st->stft.n_fft);
    rc = sl_op_alloc(m->ctx, (void **)&st->window, sizeof(float) * (size_t)st->stft.n_fft);
    if (!rc)
        rc = sl_op_upload(m->ctx, st->window, w, sizeof(float) * (size_t)st->stft.n_fft);
    free(w);
    if (rc < 0)
        return rc;

    sl_sep_info *info = &m->info;
    info->name = "hpss";
    info->sample_rate = 44100;
    info->channels = 2;
    info->n_sources = 3;
    info->sources[0] = "harmonic";
    info->sources[1] = "percussive";
    info->sources[2] = "residual";
    snprintf(info->params, sizeof info->params,
             "n_fft=%d hop=%d window=hann center=1 pad_mode=%s kernel_harmonic=%d kernel_percussive=%d "
             "margin_harmonic=%g margin_percussive=%g power=%g",
             st->stft.n_fft, st->stft.hop, pad_names[st->stft.pad], st->kernel_h, st->kernel_p,
             (double)st->margin_h, (double)st->margin_p, (double)st->power);
    return 0;
}
