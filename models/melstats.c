/* Embedding model "melstats": a fixed-length vector of log-mel statistics.
 *
 * Mono at 22050 Hz; STFT n_fft 2048, hop 512, periodic Hann, centred, reflect
 * padding (torch.stft semantics); power spectrogram; 64 Slaney mel bands
 * (librosa.filters.mel htk=False norm='slaney') from 0 Hz to 11025 Hz;
 * 10*log10(max(1e-10, x)) with ref 1.0 and no top_db. The vector is
 * [mean_t(L), std_t(L), mean_t(dL), std_t(dL)] over frames t, where L is the
 * log-mel spectrogram and dL its first difference along time (population
 * std), i.e. 4 * n_mels = 256 values, band-major within each block. The model
 * does not normalise; the pipeline does when embedding.normalize is set.
 *
 * Frames are processed in blocks so that memory grows with the track only by
 * the log-mel matrix itself (n_mels floats per hop). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "model_impl.h"

#define MELSTATS_BLOCK 256 /* frames per block */

typedef struct {
    sl_stft_cfg stft;
    int sr, n_mels;
    double fmin, fmax;
    float top_db;
    float *window; /* backend memory [n_fft] */
    float *fb;     /* backend memory [n_mels][n_fft/2+1] */
} mel_state;

static const sl_op_id mel_ops[] = {SL_OP_FRAME, SL_OP_RFFT,   SL_OP_POWER,
                                   SL_OP_MEL,   SL_OP_LOG_DB, SL_OP_STATS_POOL};

static void mel_close(sl_emb_model *m)
{
    mel_state *st = m->impl;
    if (!st)
        return;
    sl_op_free(m->ctx, st->window);
    sl_op_free(m->ctx, st->fb);
    free(st);
    m->impl = NULL;
}

static int mel_run(sl_emb_model *m, const float *const *in, size_t n, float *vec)
{
    mel_state *st = m->impl;
    sl_op_ctx *ctx = m->ctx;
    if (n == 0)
        return sl_seterr(SL_EEMPTY, "melstats: empty input");
    sl_stft_cfg c = st->stft;
    if (c.pad == SL_PAD_REFLECT && (size_t)(c.n_fft / 2) >= n)
        c.pad = SL_PAD_CONSTANT; /* too short to reflect: zero-pad (documented) */
    const size_t nf = sl_stft_n_frames(&c, n);
    const size_t nb = (size_t)c.n_fft / 2 + 1;
    const size_t blk = nf < MELSTATS_BLOCK ? nf : MELSTATS_BLOCK;
    float *x = NULL, *frames = NULL, *spec = NULL, *pw = NULL, *logmel = NULL, *v = NULL;
    int rc = sl_op_alloc(ctx, (void **)&x, n * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&frames, blk * (size_t)c.n_fft * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&spec, blk * nb * 2 * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&pw, blk * nb * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&logmel, nf * (size_t)st->n_mels * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&v, 4 * (size_t)st->n_mels * sizeof(float));
    if (!rc)
        rc = sl_op_upload(ctx, x, in[0], n * sizeof(float));
    for (size_t f0 = 0; f0 < nf && rc == 0; f0 += blk) {
        size_t cnt = nf - f0 < blk ? nf - f0 : blk;
        rc = sl_op_frame(ctx, &c, x, 1, n, f0, cnt, st->window, frames);
        if (!rc)
            rc = sl_op_rfft(ctx, c.n_fft, cnt, frames, spec, 1.0f);
        if (!rc)
            rc = sl_op_power(ctx, cnt * nb, spec, pw);
        if (!rc)
            rc = sl_op_mel(ctx, cnt, (int)nb, st->n_mels, st->fb, pw, logmel + f0 * (size_t)st->n_mels);
    }
    if (!rc)
        rc = sl_op_log_db(ctx, 1, nf * (size_t)st->n_mels, logmel, 1e-10f, st->top_db, logmel);
    if (!rc)
        rc = sl_op_stats_pool(ctx, 1, nf, (size_t)st->n_mels, logmel, v);
    if (!rc)
        rc = sl_op_download(ctx, vec, v, 4 * (size_t)st->n_mels * sizeof(float));
    sl_op_free(ctx, x);
    sl_op_free(ctx, frames);
    sl_op_free(ctx, spec);
    sl_op_free(ctx, pw);
    sl_op_free(ctx, logmel);
    sl_op_free(ctx, v);
    return rc;
}

int sl_melstats_init(sl_emb_model *m, const sl_cfg_opts *opts)
{
    static const char *sec = "embedding";
    int rc = sl_op_require(m->ctx, mel_ops, sizeof mel_ops / sizeof mel_ops[0], "embedding model melstats");
    if (rc < 0)
        return rc;
    mel_state *st = calloc(1, sizeof *st);
    if (!st)
        return sl_seterr(SL_ENOMEM, "melstats: out of memory");
    m->impl = st;
    m->close = mel_close;
    m->run = mel_run;
    st->stft = (sl_stft_cfg){.n_fft = 2048, .hop = 512, .center = 1, .pad = SL_PAD_REFLECT, .normalized = 0};
    st->sr = 22050;
    st->n_mels = 64;
    st->fmin = 0.0;
    st->fmax = 0.0; /* sr/2 */
    st->top_db = 0.0f;
    const sl_cfg_opt *fmin_opt = NULL, *fmax_opt = NULL;
    for (size_t i = 0; opts && i < opts->n; i++) {
        const sl_cfg_opt *o = &opts->items[i];
        double d;
        if (!strcmp(o->key, "n_fft")) {
            rc = sl_model_opt_int(o, sec, 64, 16384, 0, &st->stft.n_fft);
        } else if (!strcmp(o->key, "hop")) {
            rc = sl_model_opt_int(o, sec, 1, 16384, 0, &st->stft.hop);
        } else if (!strcmp(o->key, "n_mels")) {
            rc = sl_model_opt_int(o, sec, 1, 512, 0, &st->n_mels);
        } else if (!strcmp(o->key, "sample_rate")) {
            rc = sl_model_opt_int(o, sec, 8000, 192000, 0, &st->sr);
        } else if (!strcmp(o->key, "fmin")) {
            rc = sl_model_opt_double(o, sec, 0.0, 96000.0, &st->fmin);
            fmin_opt = o;
        } else if (!strcmp(o->key, "fmax")) {
            rc = sl_model_opt_double(o, sec, 0.0, 96000.0, &st->fmax);
            fmax_opt = o;
        } else if (!strcmp(o->key, "top_db")) {
            rc = sl_model_opt_double(o, sec, 0.0, 1000.0, &d);
            st->top_db = (float)d;
        } else {
            rc = sl_model_opt_error(o, sec,
                                    "unknown option of model melstats (known: sample_rate, n_fft, hop, "
                                    "n_mels, fmin, fmax, top_db)");
        }
        if (rc < 0)
            return rc;
    }
    if (st->stft.hop > st->stft.n_fft) {
        for (size_t i = 0; i < opts->n; i++)
            if (!strcmp(opts->items[i].key, "hop") || !strcmp(opts->items[i].key, "n_fft"))
                return sl_model_opt_error(&opts->items[i], sec, "hop %d must not exceed n_fft %d",
                                          st->stft.hop, st->stft.n_fft);
        return sl_seterr(SL_ECONFIG, "melstats: hop %d exceeds n_fft %d", st->stft.hop, st->stft.n_fft);
    }
    double fmax = st->fmax > 0 ? st->fmax : st->sr / 2.0;
    if (fmax > st->sr / 2.0 || st->fmin >= fmax) {
        const sl_cfg_opt *o = fmax_opt ? fmax_opt : fmin_opt;
        if (o)
            return sl_model_opt_error(o, sec, "need 0 <= fmin < fmax <= sample_rate/2 (fmin %g, fmax %g, sample_rate %d)",
                                      st->fmin, fmax, st->sr);
        return sl_seterr(SL_ECONFIG, "melstats: fmax %g exceeds sample_rate/2", fmax);
    }
    const size_t nb = (size_t)st->stft.n_fft / 2 + 1;
    float *w = malloc(sizeof(float) * (size_t)st->stft.n_fft);
    float *fb = malloc(sizeof(float) * nb * (size_t)st->n_mels);
    if (!w || !fb) {
        free(w);
        free(fb);
        return sl_seterr(SL_ENOMEM, "melstats: out of memory");
    }
    sl_window_hann(w, st->stft.n_fft, st->stft.n_fft);
    rc = sl_mel_filterbank(fb, st->sr, st->stft.n_fft, st->n_mels, st->fmin, fmax);
    if (!rc)
        rc = sl_op_alloc(m->ctx, (void **)&st->window, sizeof(float) * (size_t)st->stft.n_fft);
    if (!rc)
        rc = sl_op_upload(m->ctx, st->window, w, sizeof(float) * (size_t)st->stft.n_fft);
    if (!rc)
        rc = sl_op_alloc(m->ctx, (void **)&st->fb, sizeof(float) * nb * (size_t)st->n_mels);
    if (!rc)
        rc = sl_op_upload(m->ctx, st->fb, fb, sizeof(float) * nb * (size_t)st->n_mels);
    free(w);
    free(fb);
    if (rc < 0)
        return rc;

    sl_emb_info *info = &m->info;
    info->name = "melstats";
    info->sample_rate = st->sr;
    info->channels = 1;
    info->dim = 4 * st->n_mels;
    char topdb[32] = "none";
    if (st->top_db > 0)
        snprintf(topdb, sizeof topdb, "%g", (double)st->top_db);
    snprintf(info->params, sizeof info->params,
             "sample_rate=%d n_fft=%d hop=%d window=hann center=1 pad_mode=reflect n_mels=%d fmin=%g "
             "fmax=%g mel=slaney power=2 amin=1e-10 top_db=%s stats=mean,std,diff_mean,diff_std",
             st->sr, st->stft.n_fft, st->stft.hop, st->n_mels, st->fmin, fmax, topdb);
    return 0;
}
