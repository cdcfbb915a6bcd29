/* Embedding model "cnn14": PANNs Cnn14 (Kong et al. 2020,
 * qiuqiangkong/audioset_tagging_cnn, panns_inference/models.py), exactly as the
 * reference forward computes it in eval mode:
 *
 *   mono 32 kHz -> STFT (n_fft = window 1024, hop 320, periodic Hann, centred,
 *   reflect) -> power -> 64 Slaney mel bands 50..14000 Hz (librosa.filters.mel,
 *   htk=False, norm='slaney', what torchlibrosa's LogmelFilterBank uses) ->
 *   10*log10(max(1e-10, x)) (ref 1, no top_db) -> bn0 over the mel bins ->
 *   six ConvBlocks [conv3x3 (no bias) + BN + ReLU] x 2, then 2x2 average
 *   pooling (the sixth block 1x1 = none) -> mean over mel, max + mean over
 *   time -> fc1 + ReLU = the embedding (2048) -> fc_audioset + sigmoid = the
 *   clip scores (527 AudioSet classes). Dropout and SpecAugment are
 *   training-only and absent.
 *
 * Image layout NCHW with H = time frames, W = mel bins, as the reference after
 * its transpose. Batch norms (eps 1e-5, not stored in the state dict) are
 * folded at load time in double: into each conv's weights + a bias (the conv
 * epilogue adds the bias and applies ReLU), bn0 into an affine map over mel
 * columns ((x + add) * mul with mul = gamma/sqrt(var+eps), add = beta/mul - mean;
 * bn0 cannot go into conv 1 because the conv zero-pads AFTER bn0). The
 * sigmoid of the 527 logits is applied on the host in double after the
 * download (527 values: not worth an activation in every backend's GEMM).
 * The folded conv weights are declared fixed (sl_op_mark_fixed): the CPU
 * backend forms the Winograd transform of blocks 1-5 once, at the first window
 * (about 130 MB more at full size), instead of at every window.
 *
 * Weights: one safetensors from tools/convert_cnn14.py (state-dict names:
 * bn0.*, conv_block{1..6}.{conv1,conv2}.weight, conv_block{b}.{bn1,bn2}.*,
 * fc1.*, fc_audioset.*) with metadata stemline.arch=cnn14, sample_rate,
 * window_size, hop, mel_bins, fmin, fmax. Channel widths, embedding size and
 * class count come from the tensor shapes, so reduced models (the golden
 * tests) run through the same code.
 *
 * A window shorter than 32 frames (0.31 s at hop 320) cannot pass five 2x2
 * poolings (the reference fails on it): it is zero-padded at the end to 31 hops
 * first. A window of at most n_fft/2 samples cannot be reflect-padded and is
 * zero-padded (as melstats). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../io/safetensors.h"
#include "model_impl.h"

#define CNN_BLOCKS 6
#define CNN_BN_EPS 1e-5

typedef struct {
    sl_stft_cfg stft;
    int sr, win, n_mels, emb, classes;
    double fmin, fmax;
    int ch[CNN_BLOCKS + 1]; /* ch[0] = 1 input channel */
    /* backend memory */
    float *window, *fb, *bn0_add, *bn0_mul;
    float *cw[CNN_BLOCKS][2], *cb[CNN_BLOCKS][2];
    float *w_fc1, *b_fc1, *w_cls, *b_cls;
    /* the weights file, kept mapped while buffers above point into it (sl_model_wrap: folded
     * conv weights, fc1, fc_audioset, read in place on the cpu backend) */
    sl_st_file *map;
    sl_model_inplace inplace;
    /* working buffers, kept between windows (grown on demand): x[x_cap], bufA/bufB[buf_cap],
     * feat[ch[6]], e[emb], lg[classes] */
    float *x, *bufA, *bufB, *feat, *e, *lg;
    size_t x_cap, buf_cap;
} cnn_state;

static const sl_op_id cnn_ops[] = {SL_OP_FRAME,  SL_OP_RFFT,       SL_OP_POWER,     SL_OP_MEL,  SL_OP_LOG_DB,
                                   SL_OP_AFFINE, SL_OP_CONV2D,     SL_OP_AVG_POOL2D, SL_OP_CLIP_POOL, SL_OP_GEMM};

static void cnn_close(sl_emb_model *m)
{
    cnn_state *st = m->impl;
    if (!st)
        return;
    float *bufs[] = {st->window, st->fb,   st->bn0_add, st->bn0_mul, st->w_fc1, st->b_fc1, st->w_cls,
                     st->b_cls,  st->x,    st->bufA,    st->bufB,    st->feat,  st->e,     st->lg};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        sl_model_free_weight(m->ctx, &st->inplace, bufs[i]);
    for (int b = 0; b < CNN_BLOCKS; b++)
        for (int j = 0; j < 2; j++) {
            sl_model_free_weight(m->ctx, &st->inplace, st->cw[b][j]);
            sl_model_free_weight(m->ctx, &st->inplace, st->cb[b][j]);
        }
    sl_st_close(st->map); /* after every buffer that points into it */
    free(st);
    m->impl = NULL;
}

/* Prefixes the current error with "embedding model cnn14: " (keeps the code). */
static int cnn_err(int rc)
{
    char msg[768];
    snprintf(msg, sizeof msg, "%s", sl_lasterr());
    return sl_seterr(rc, "embedding model cnn14: %s", msg);
}

static int meta_num(const sl_st_file *f, const char *path, const char *key, const char *alt, double lo, double hi,
                    double def, double *out)
{
    const char *v = sl_st_meta(f, key);
    if (!v && alt)
        v = sl_st_meta(f, alt);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !isfinite(x) || x < lo || x > hi)
        return sl_seterr(SL_EFORMAT, "embedding model cnn14: %s: metadata '%s' is '%s', expected a number %g..%g",
                         path, key, v, lo, hi);
    *out = x;
    return 0;
}

/* Tensor `name` as float32 of ndim dims (shape entries -1 = any), or NULL with the error. */
static const sl_st_tensor *tensor(const sl_st_file *f, const char *name, int ndim, int64_t d0, int64_t d1,
                                  int64_t d2, int64_t d3)
{
    const int64_t shape[4] = {d0, d1, d2, d3};
    const sl_st_tensor *t = sl_st_require_f32(f, name, ndim, shape);
    if (!t)
        cnn_err(SL_EFORMAT);
    return t;
}

/* s = gamma / sqrt(var + eps), t = beta - mean * s (double) of batch norm `bn` over n channels. */
static int bn_fold(const sl_st_file *f, const char *bn, int64_t n, double *s, double *t)
{
    static const char *p[4] = {"weight", "bias", "running_mean", "running_var"};
    const float *v[4];
    for (int i = 0; i < 4; i++) {
        char name[96];
        snprintf(name, sizeof name, "%s.%s", bn, p[i]);
        const sl_st_tensor *tt = tensor(f, name, 1, n, 0, 0, 0);
        if (!tt)
            return SL_EFORMAT;
        v[i] = (const float *)tt->data;
    }
    sl_model_bn_fold(v, n, CNN_BN_EPS, s, t);
    return 0;
}

static int load_weights(sl_emb_model *m, cnn_state *st, const char *path)
{
    sl_st_file *f = NULL;
    double *s = NULL, *t = NULL;
    float *tmp = NULL;
    int rc = sl_st_open(&f, path);
    if (rc < 0)
        return cnn_err(rc);
    const char *arch = sl_st_meta(f, "stemline.arch");
    if (!arch || strcmp(arch, "cnn14") != 0) {
        rc = sl_seterr(SL_EFORMAT, "embedding model cnn14: %s: metadata stemline.arch is '%s', expected 'cnn14' "
                                   "(convert the PANNs checkpoint with tools/convert_cnn14.py)",
                       path, arch ? arch : "(missing)");
        goto out;
    }
    double sr, win, hop, fmin, fmax;
    if ((rc = meta_num(f, path, "sample_rate", NULL, 8000, 192000, 32000, &sr)) < 0 ||
        (rc = meta_num(f, path, "window_size", NULL, 16, 65536, 1024, &win)) < 0 ||
        (rc = meta_num(f, path, "hop", "hop_size", 1, 65536, 320, &hop)) < 0 ||
        (rc = meta_num(f, path, "fmin", NULL, 0, 96000, 50, &fmin)) < 0 ||
        (rc = meta_num(f, path, "fmax", NULL, 0, 96000, 14000, &fmax)) < 0)
        goto out;
    st->sr = (int)sr;
    st->win = (int)win;
    st->stft = (sl_stft_cfg){.n_fft = st->win, .hop = (int)hop, .center = 1, .pad = SL_PAD_REFLECT, .normalized = 0};
    st->fmin = fmin;
    st->fmax = fmax;
    if (st->sr != sr || st->win != win || st->stft.hop != hop || hop > win || fmin >= fmax || fmax > sr / 2) {
        rc = sl_seterr(SL_EFORMAT, "embedding model cnn14: %s: inconsistent metadata (sample_rate %g, window_size %g, "
                                   "hop %g, fmin %g, fmax %g)", path, sr, win, hop, fmin, fmax);
        goto out;
    }
    const sl_st_tensor *bn0 = tensor(f, "bn0.weight", 1, -1, 0, 0, 0);
    if (!bn0) {
        rc = SL_EFORMAT;
        goto out;
    }
    st->n_mels = (int)bn0->shape[0];
    /* stemline.bn_folded=1 (tools/convert_cnn14.py --fold-bn): each conv's batch norm is
     * already in its weights and a bias conv_blockB.convJ.bias, folded as below */
    const char *fv = sl_st_meta(f, "stemline.bn_folded");
    const int folded = fv && !strcmp(fv, "1");
    if (fv && !folded && strcmp(fv, "0")) {
        rc = sl_seterr(SL_EFORMAT, "embedding model cnn14: %s: metadata stemline.bn_folded is '%s', expected 0 or 1",
                       path, fv);
        goto out;
    }
    double mb;
    if ((rc = meta_num(f, path, "mel_bins", NULL, 1, 4096, st->n_mels, &mb)) < 0)
        goto out;
    if ((int)mb != st->n_mels || st->n_mels < 1 || st->n_mels > 4096) {
        rc = sl_seterr(SL_EFORMAT, "embedding model cnn14: %s: tensor bn0.weight has %d mel bins, metadata mel_bins "
                                   "says %g", path, st->n_mels, mb);
        goto out;
    }
    /* channel widths from the conv shapes */
    st->ch[0] = 1;
    size_t most = (size_t)st->n_mels;
    for (int b = 0; b < CNN_BLOCKS; b++) {
        char name[64];
        snprintf(name, sizeof name, "conv_block%d.conv1.weight", b + 1);
        const sl_st_tensor *c1 = tensor(f, name, 4, -1, st->ch[b], 3, 3);
        if (!c1) {
            rc = SL_EFORMAT;
            goto out;
        }
        if (c1->shape[0] < 1 || c1->shape[0] > 65536) {
            rc = sl_seterr(SL_EFORMAT, "embedding model cnn14: %s: tensor %s: %lld output channels", path, name,
                           (long long)c1->shape[0]);
            goto out;
        }
        st->ch[b + 1] = (int)c1->shape[0];
        if ((size_t)st->ch[b + 1] * st->ch[b + 1] * 9 > most)
            most = (size_t)st->ch[b + 1] * st->ch[b + 1] * 9;
    }
    const int C6 = st->ch[CNN_BLOCKS];
    const sl_st_tensor *fc1 = tensor(f, "fc1.weight", 2, -1, C6, 0, 0);
    const sl_st_tensor *cls = fc1 ? tensor(f, "fc_audioset.weight", 2, -1, fc1->shape[0], 0, 0) : NULL;
    if (!fc1 || !cls) {
        rc = SL_EFORMAT;
        goto out;
    }
    st->emb = (int)fc1->shape[0];
    st->classes = (int)cls->shape[0];
    const sl_st_tensor *fc1b = tensor(f, "fc1.bias", 1, st->emb, 0, 0, 0);
    const sl_st_tensor *clsb = fc1b ? tensor(f, "fc_audioset.bias", 1, st->classes, 0, 0, 0) : NULL;
    if (!fc1b || !clsb) {
        rc = SL_EFORMAT;
        goto out;
    }

    s = malloc(sizeof(double) * (most > 65536 ? 65536 : most));
    t = malloc(sizeof(double) * 65536);
    tmp = malloc(sizeof(float) * most);
    if (!s || !t || !tmp) {
        rc = sl_seterr(SL_ENOMEM, "embedding model cnn14: out of memory loading %s", path);
        goto out;
    }
    /* bn0: (x - mean) * s + beta = (x + beta/s - mean) * s */
    if ((rc = bn_fold(f, "bn0", st->n_mels, s, t)) < 0)
        goto out;
    {
        const float *mean = (const float *)sl_st_find(f, "bn0.running_mean")->data;
        const float *beta = (const float *)sl_st_find(f, "bn0.bias")->data;
        float *add = tmp, *mul = tmp + st->n_mels;
        for (int i = 0; i < st->n_mels; i++) {
            if (s[i] == 0.0) {
                rc = sl_seterr(SL_EFORMAT, "embedding model cnn14: %s: bn0.weight[%d] is 0 (cannot fold bn0)", path, i);
                goto out;
            }
            add[i] = (float)((double)beta[i] / s[i] - (double)mean[i]);
            mul[i] = (float)s[i];
        }
        if ((rc = sl_model_upload_new(m->ctx, &st->bn0_add, add, (size_t)st->n_mels)) < 0 ||
            (rc = sl_model_upload_new(m->ctx, &st->bn0_mul, mul, (size_t)st->n_mels)) < 0)
            goto out;
    }
    for (int b = 0; b < CNN_BLOCKS; b++)
        for (int j = 0; j < 2; j++) {
            const int cin = j ? st->ch[b + 1] : st->ch[b], cout = st->ch[b + 1];
            char name[64], bn[64];
            snprintf(name, sizeof name, "conv_block%d.conv%d.weight", b + 1, j + 1);
            snprintf(bn, sizeof bn, "conv_block%d.bn%d", b + 1, j + 1);
            const sl_st_tensor *w = tensor(f, name, 4, cout, cin, 3, 3);
            const size_t per = (size_t)cin * 9;
            if (w && folded) {
                snprintf(name, sizeof name, "conv_block%d.conv%d.bias", b + 1, j + 1);
                const sl_st_tensor *bias = tensor(f, name, 1, cout, 0, 0, 0);
                if (!bias) {
                    rc = SL_EFORMAT;
                    goto out;
                }
                if ((rc = sl_model_wrap(m->ctx, &st->inplace, &st->cw[b][j], (const float *)w->data, (size_t)cout * per)) < 0 ||
                    (rc = sl_op_mark_fixed(m->ctx, st->cw[b][j], (size_t)cout * per * sizeof(float))) < 0 ||
                    (rc = sl_model_upload_new(m->ctx, &st->cb[b][j], (const float *)bias->data, (size_t)cout)) < 0)
                    goto out;
                continue;
            }
            if (!w || (rc = bn_fold(f, bn, cout, s, t)) < 0) {
                rc = SL_EFORMAT;
                goto out;
            }
            const float *wv = (const float *)w->data;
            for (int o = 0; o < cout; o++)
                for (size_t q = 0; q < per; q++)
                    tmp[(size_t)o * per + q] = (float)((double)wv[(size_t)o * per + q] * s[o]);
            if ((rc = sl_model_upload_new(m->ctx, &st->cw[b][j], tmp, (size_t)cout * per)) < 0 ||
                (rc = sl_op_mark_fixed(m->ctx, st->cw[b][j], (size_t)cout * per * sizeof(float))) < 0)
                goto out;
            for (int o = 0; o < cout; o++)
                tmp[o] = (float)t[o];
            if ((rc = sl_model_upload_new(m->ctx, &st->cb[b][j], tmp, (size_t)cout)) < 0)
                goto out;
        }
    if ((rc = sl_model_wrap(m->ctx, &st->inplace, &st->w_fc1, (const float *)fc1->data, (size_t)st->emb * C6)) < 0 ||
        (rc = sl_model_upload_new(m->ctx, &st->b_fc1, (const float *)fc1b->data, (size_t)st->emb)) < 0 ||
        (rc = sl_model_wrap(m->ctx, &st->inplace, &st->w_cls, (const float *)cls->data, (size_t)st->classes * st->emb)) < 0 ||
        (rc = sl_model_upload_new(m->ctx, &st->b_cls, (const float *)clsb->data, (size_t)st->classes)) < 0)
        goto out;
    rc = sl_op_sync(m->ctx); /* the host copies may be freed now */
out:
    free(s);
    free(t);
    free(tmp);
    /* kept while a buffer points into it (cnn_close closes it, also after a failure) */
    if (st->inplace.lo)
        st->map = f;
    else
        sl_st_close(f);
    return rc;
}

/* ---- running ---- */

/* Frames the model sees for n samples (after the short-window padding). */
static size_t cnn_frames(const cnn_state *st, size_t n, size_t *n_padded)
{
    const size_t min_n = (size_t)31 * st->stft.hop;
    size_t np = n < min_n ? min_n : n;
    if (n_padded)
        *n_padded = np;
    return sl_stft_n_frames(&st->stft, np);
}

/* Logits -> sigmoid probabilities, on the host. */
static void cnn_finish_scores(sl_emb_model *m, float *scores)
{
    const cnn_state *st = m->impl;
    for (int i = 0; i < st->classes; i++)
        scores[i] = (float)(1.0 / (1.0 + exp(-(double)scores[i])));
}

static int cnn_forward(sl_emb_model *m, const float *in, size_t n, float *vec, float *scores, sl_cnn14_stages *sg)
{
    cnn_state *st = m->impl;
    sl_op_ctx *ctx = m->ctx;
    if (n == 0)
        return sl_seterr(SL_EEMPTY, "cnn14: empty input");
    size_t np;
    const size_t T = cnn_frames(st, n, &np);
    sl_stft_cfg c = st->stft;
    if (c.pad == SL_PAD_REFLECT && (size_t)(c.n_fft / 2) >= n)
        c.pad = SL_PAD_CONSTANT;
    const size_t nb = (size_t)c.n_fft / 2 + 1, M = (size_t)st->n_mels;
    size_t most = T * M;
    for (int b = 0; b < CNN_BLOCKS; b++) {
        const size_t img = (size_t)st->ch[b + 1] * (T >> b) * (M >> b); /* block b's conv outputs */
        if (img > most)
            most = img;
    }
    if (T * nb * 2 > most)
        most = T * nb * 2;
    if (T * (size_t)c.n_fft > most)
        most = T * (size_t)c.n_fft;
    int rc = 0;
    if (np > st->x_cap) {
        sl_op_free(ctx, st->x);
        st->x = NULL;
        st->x_cap = 0;
        if (!(rc = sl_op_alloc(ctx, (void **)&st->x, np * sizeof(float))))
            st->x_cap = np;
    }
    if (!rc && most > st->buf_cap) {
        sl_op_free(ctx, st->bufA);
        sl_op_free(ctx, st->bufB);
        st->bufA = st->bufB = NULL;
        st->buf_cap = 0;
        rc = sl_op_alloc(ctx, (void **)&st->bufA, most * sizeof(float));
        if (!rc)
            rc = sl_op_alloc(ctx, (void **)&st->bufB, most * sizeof(float));
        if (!rc)
            st->buf_cap = most;
    }
    if (!rc && !st->feat)
        rc = sl_op_alloc(ctx, (void **)&st->feat, (size_t)st->ch[CNN_BLOCKS] * sizeof(float));
    if (!rc && !st->e)
        rc = sl_op_alloc(ctx, (void **)&st->e, (size_t)st->emb * sizeof(float));
    if (!rc && !st->lg)
        rc = sl_op_alloc(ctx, (void **)&st->lg, (size_t)st->classes * sizeof(float));
    float *x = st->x, *bufA = st->bufA, *bufB = st->bufB, *feat = st->feat, *e = st->e, *lg = st->lg;
    float *zeros = NULL;
    if (!rc && np > n) {
        zeros = calloc(np - n, sizeof(float));
        if (!zeros)
            rc = sl_seterr(SL_ENOMEM, "cnn14: out of memory");
    }
    if (!rc)
        rc = sl_op_upload(ctx, x, in, n * sizeof(float));
    if (!rc && np > n)
        rc = sl_op_upload(ctx, x + n, zeros, (np - n) * sizeof(float));
    /* front end: frames in bufA, spectrum in bufB, power in bufA, log-mel in bufB */
    float *frames = bufA, *spec = bufB;
    if (!rc)
        rc = sl_op_frame(ctx, &c, x, 1, np, 0, T, st->window, frames);
    if (!rc)
        rc = sl_op_rfft(ctx, c.n_fft, T, frames, spec, 1.0f);
    if (!rc)
        rc = sl_op_power(ctx, T * nb, spec, bufA);
    if (!rc)
        rc = sl_op_mel(ctx, T, (int)nb, st->n_mels, st->fb, bufA, bufB);
    if (!rc)
        rc = sl_op_log_db(ctx, 1, T * M, bufB, 1e-10f, 0.0f, bufB);
    if (!rc && sg && sg->logmel)
        rc = sl_op_download(ctx, sg->logmel, bufB, T * M * sizeof(float));
    if (!rc) {
        sl_affine_args a = {.batch = 1, .rows = T, .cols = M, .x = bufB, .ldx = M, .add = st->bn0_add,
                            .mul = st->bn0_mul, .act = SL_ACT_NONE, .y = bufB, .ldy = M};
        rc = sl_op_affine(ctx, &a);
    }
    /* conv blocks: the image is in bufB */
    size_t H = T, W = M;
    for (int b = 0; b < CNN_BLOCKS && !rc; b++) {
        sl_conv2d_args a = {.batch = 1, .c_in = st->ch[b], .c_out = st->ch[b + 1], .h = (int)H, .w = (int)W, .k = 3,
                            .x = bufB, .wt = st->cw[b][0], .bias = st->cb[b][0], .act = SL_ACT_RELU, .y = bufA};
        rc = sl_op_conv2d(ctx, &a);
        a.c_in = st->ch[b + 1];
        a.x = bufA;
        a.wt = st->cw[b][1];
        a.bias = st->cb[b][1];
        a.y = bufB;
        if (!rc)
            rc = sl_op_conv2d(ctx, &a);
        if (!rc && b < CNN_BLOCKS - 1) {
            rc = sl_op_avg_pool2d(ctx, (size_t)st->ch[b + 1], (int)H, (int)W, 2, 2, bufB, bufA);
            H /= 2;
            W /= 2;
            float *tmp = bufA;
            bufA = bufB;
            bufB = tmp;
        }
        if (!rc && sg && sg->block[b])
            rc = sl_op_download(ctx, sg->block[b], bufB, (size_t)st->ch[b + 1] * H * W * sizeof(float));
    }
    if (!rc)
        rc = sl_op_clip_pool(ctx, (size_t)st->ch[CNN_BLOCKS], H, W, bufB, feat);
    if (!rc) {
        sl_gemm_args g = {.batch = 1, .m = 1, .n = (size_t)st->emb, .k = (size_t)st->ch[CNN_BLOCKS], .x = feat,
                          .ldx = (size_t)st->ch[CNN_BLOCKS], .w = st->w_fc1, .ldw = (size_t)st->ch[CNN_BLOCKS],
                          .bias = st->b_fc1, .act = SL_ACT_RELU, .y = e, .ldy = (size_t)st->emb};
        rc = sl_op_gemm(ctx, &g);
    }
    if (!rc && scores) {
        sl_gemm_args g = {.batch = 1, .m = 1, .n = (size_t)st->classes, .k = (size_t)st->emb, .x = e,
                          .ldx = (size_t)st->emb, .w = st->w_cls, .ldw = (size_t)st->emb, .bias = st->b_cls,
                          .act = SL_ACT_NONE, .y = lg, .ldy = (size_t)st->classes};
        rc = sl_op_gemm(ctx, &g);
        if (!rc)
            rc = sl_op_download(ctx, scores, lg, (size_t)st->classes * sizeof(float));
        if (!rc && !sl_op_pipe_deferred(ctx)) /* (deferred: cnn_finish_scores, once they are in) */
            cnn_finish_scores(m, scores);
    }
    if (!rc)
        rc = sl_op_download(ctx, vec, e, (size_t)st->emb * sizeof(float));
    if (sg)
        sg->frames = T;
    free(zeros);
    return rc;
}

static int cnn_run(sl_emb_model *m, const float *const *in, size_t n, float *vec)
{
    return cnn_forward(m, in[0], n, vec, NULL, NULL);
}

static int cnn_run_scores(sl_emb_model *m, const float *const *in, size_t n, float *vec, float *scores)
{
    return cnn_forward(m, in[0], n, vec, scores, NULL);
}

int sl_cnn14_run_stages(sl_emb_model *m, const float *in, size_t n, float *vec, float *scores, sl_cnn14_stages *sg)
{
    return cnn_forward(m, in, n, vec, scores, sg);
}

int sl_cnn14_geometry(const sl_emb_model *m, size_t n, size_t *frames, int *n_mels, int *channels)
{
    const cnn_state *st = m->impl;
    *frames = cnn_frames(st, n, NULL);
    *n_mels = st->n_mels;
    for (int b = 0; b < CNN_BLOCKS; b++)
        channels[b] = st->ch[b + 1];
    return 0;
}

int sl_cnn14_weights_mapped(const char *weights)
{
    sl_st_file *f = NULL;
    if (sl_st_open(&f, weights) < 0) {
        sl_clearerr();
        return 0;
    }
    const char *v = sl_st_meta(f, "stemline.bn_folded");
    const int mapped = v && !strcmp(v, "1");
    sl_st_close(f);
    return mapped;
}

int sl_cnn14_init(sl_emb_model *m, const char *weights, const sl_cfg_opts *opts)
{
    static const char *sec = "embedding";
    if (!weights || !*weights)
        return sl_seterr(SL_ECONFIG, "embedding model cnn14 needs weights: set embedding.weights to a .safetensors "
                                     "file (stemline models fetch cnn14, or tools/convert_cnn14.py)");
    if (opts && opts->n)
        return sl_model_opt_error(&opts->items[0], sec, "unknown option of model cnn14 (it takes none: its "
                                                        "settings come from the weights file)");
    int rc = sl_op_require(m->ctx, cnn_ops, sizeof cnn_ops / sizeof cnn_ops[0], "embedding model cnn14");
    if (rc < 0)
        return rc;
    cnn_state *st = calloc(1, sizeof *st);
    if (!st)
        return sl_seterr(SL_ENOMEM, "cnn14: out of memory");
    m->impl = st;
    m->close = cnn_close;
    m->run = cnn_run;
    m->run_scores = cnn_run_scores;
    m->finish_scores = cnn_finish_scores;
    m->pipelined = 1; /* (downloads only at the end, no waits, same ops for the same length) */
    if ((rc = load_weights(m, st, weights)) < 0)
        return rc;
    const size_t nb = (size_t)st->stft.n_fft / 2 + 1;
    float *w = malloc(sizeof(float) * (size_t)st->stft.n_fft);
    float *fb = malloc(sizeof(float) * nb * (size_t)st->n_mels);
    if (!w || !fb) {
        free(w);
        free(fb);
        return sl_seterr(SL_ENOMEM, "cnn14: out of memory");
    }
    rc = sl_window_hann(w, st->stft.n_fft, st->win);
    if (!rc)
        rc = sl_mel_filterbank(fb, st->sr, st->stft.n_fft, st->n_mels, st->fmin, st->fmax);
    if (!rc)
        rc = sl_model_upload_new(m->ctx, &st->window, w, (size_t)st->stft.n_fft);
    if (!rc)
        rc = sl_model_upload_new(m->ctx, &st->fb, fb, nb * (size_t)st->n_mels);
    if (!rc)
        rc = sl_op_sync(m->ctx);
    free(w);
    free(fb);
    if (rc < 0)
        return rc;
    sl_emb_info *info = &m->info;
    info->name = "cnn14";
    info->sample_rate = st->sr;
    info->channels = 1;
    info->dim = st->emb;
    info->n_scores = st->classes;
    snprintf(info->params, sizeof info->params,
             "sample_rate=%d n_fft=%d hop=%d window=hann center=1 pad_mode=reflect n_mels=%d fmin=%g fmax=%g "
             "mel=slaney power=2 amin=1e-10 top_db=none channels=%d,%d,%d,%d,%d,%d embedding=fc1 dim=%d classes=%d",
             st->sr, st->stft.n_fft, st->stft.hop, st->n_mels, st->fmin, st->fmax, st->ch[1], st->ch[2], st->ch[3],
             st->ch[4], st->ch[5], st->ch[6], st->emb, st->classes);
    return 0;
}
