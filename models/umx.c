/* Separation model "umx": Open-Unmix (Stöter et al. 2019,
 * sigsep/open-unmix-pytorch, openunmix/model.py + filtering.py), exactly as the
 * reference Separator computes it:
 *
 *   STFT (n_fft 4096, hop 1024, periodic Hann, centred, reflect) of both
 *   channels -> magnitude -> per target: crop to max_bin,
 *   (x + input_mean) * input_scale, fc1 + bn1, tanh, 3-layer BiLSTM (H/2 per
 *   direction), concat [x, lstm], fc2 + bn2, relu, fc3 + bn3,
 *   * output_scale + output_mean, relu, * mixture magnitude -> multichannel
 *   Wiener filter (niter EM iterations, windows of wiener_win_len frames,
 *   optional softmask / residual) -> iSTFT to the input length.
 *
 * The four targets run as one batch of every op (each with its own weights).
 * Batch norms are folded into the linear layer before them at load time (in
 * double), and output_scale / output_mean into fc3 + bn3 as well, so every
 * dense stage is one GEMM with a fused bias + activation epilogue; fc3's
 * epilogue also multiplies by the mixture magnitude. Geometry (n_fft, hop,
 * nb_bins, max_bin, hidden size, layers, targets, sample rate) comes from the
 * weights' metadata (tools/convert_umx.py), so reduced models (the golden
 * tests) run through the same code.
 *
 * Weights file: one safetensors with "<target>.<state dict key>" tensors and
 * metadata stemline.arch=umx, targets, hidden_size, nb_bins, max_bin,
 * nb_channels (2), nb_layers, [unidirectional], sample_rate, n_fft, hop. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../common/sl_log.h"
#include "../io/safetensors.h"
#include "model_impl.h"

#define UMX_MAX_TARGETS 8
#define UMX_BN_EPS 1e-5 /* torch.nn.BatchNorm1d default; not stored in the state dict */

typedef struct {
    sl_stft_cfg stft;
    int sample_rate, n_fft, hop, nb, mb, H, layers, unidir, J, S;
    sl_lstm_cfg lstm;
    size_t lstm_floats;
    sl_wiener_cfg wiener;
    char names[UMX_MAX_TARGETS + 1][32];
    /* backend memory, [J] items each */
    float *window;
    float *in_mean, *in_scale; /* [J][mb] */
    float *w1, *b1;            /* [J][H][2mb], [J][H] */
    float *wl;                 /* [J][lstm_floats] */
    float *w2, *b2;            /* [J][H][2H], [J][H] */
    float *w3, *b3;            /* [J][2nb][H], [J][2nb] */
    sl_model_ws ws;            /* umx_bufs, kept across segments */
} umx_state;

static const sl_op_id umx_ops[] = {SL_OP_FRAME, SL_OP_RFFT,   SL_OP_MAGNITUDE, SL_OP_AFFINE,     SL_OP_GEMM,
                                   SL_OP_LSTM,  SL_OP_WIENER, SL_OP_IRFFT,     SL_OP_OVERLAP_ADD};

static void umx_close(sl_sep_model *m)
{
    umx_state *st = m->impl;
    if (!st)
        return;
    float *bufs[] = {st->window, st->in_mean, st->in_scale, st->w1, st->b1, st->wl, st->w2, st->b2, st->w3, st->b3};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        sl_op_free(m->ctx, bufs[i]);
    sl_model_ws_free(m->ctx, &st->ws);
    free(st);
    m->impl = NULL;
}

/* ---- loading ---- */

/* Prefixes the current error with "separation model umx: " (keeps the code). */
static int umx_err(int rc)
{
    char msg[768];
    snprintf(msg, sizeof msg, "%s", sl_lasterr());
    return sl_seterr(rc, "separation model umx: %s", msg);
}

static int meta_int(const sl_st_file *f, const char *path, const char *key, int lo, int hi, int def, int *out)
{
    const char *v = sl_st_meta(f, key);
    if (!v) {
        if (def >= lo) {
            *out = def;
            return 0;
        }
        return sl_seterr(SL_EFORMAT, "separation model umx: %s: metadata key '%s' missing (convert the checkpoint "
                                     "with tools/convert_umx.py)", path, key);
    }
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return sl_seterr(SL_EFORMAT, "separation model umx: %s: metadata '%s' is '%s', expected an integer %d..%d",
                         path, key, v, lo, hi);
    *out = (int)x;
    return 0;
}

/* The tensor "<target>.<key>" as float32 of the given shape, or NULL with the error. */
static const float *tensor(const sl_st_file *f, const char *target, const char *key, int ndim, int64_t d0, int64_t d1)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", target, key);
    const int64_t shape[2] = {d0, d1};
    const sl_st_tensor *t = sl_st_require_f32(f, name, ndim, shape);
    if (!t) {
        umx_err(SL_EFORMAT);
        return NULL;
    }
    return (const float *)t->data;
}

/* bn scale/shift: s = gamma / sqrt(var + eps), t = beta - mean * s (double). */
static int bn_fold(const sl_st_file *f, const char *target, const char *bn, int64_t n, double *s, double *t)
{
    char k[4][32];
    const char *p[4] = {"weight", "bias", "running_mean", "running_var"};
    const float *v[4];
    for (int i = 0; i < 4; i++) {
        snprintf(k[i], sizeof k[i], "%s.%s", bn, p[i]);
        if (!(v[i] = tensor(f, target, k[i], 1, n, 0)))
            return SL_EFORMAT;
    }
    sl_model_bn_fold(v, n, UMX_BN_EPS, s, t);
    return 0;
}

static int load_weights(sl_sep_model *m, umx_state *st, const char *path)
{
    sl_st_file *f = NULL;
    int rc = sl_st_open(&f, path);
    if (rc < 0)
        return umx_err(rc);
    const char *arch = sl_st_meta(f, "stemline.arch");
    if (!arch || strcmp(arch, "umx") != 0) {
        rc = sl_seterr(SL_EFORMAT, "separation model umx: %s: metadata stemline.arch is '%s', expected 'umx' "
                                   "(not an Open-Unmix weights file)", path, arch ? arch : "(missing)");
        goto out;
    }
    int nch = 0;
    if ((rc = meta_int(f, path, "hidden_size", 2, 8192, -1, &st->H)) < 0 ||
        (rc = meta_int(f, path, "nb_bins", 2, 32769, -1, &st->nb)) < 0 ||
        (rc = meta_int(f, path, "max_bin", 1, 32769, -1, &st->mb)) < 0 ||
        (rc = meta_int(f, path, "nb_channels", 1, 8, -1, &nch)) < 0 ||
        (rc = meta_int(f, path, "nb_layers", 1, 16, -1, &st->layers)) < 0 ||
        (rc = meta_int(f, path, "unidirectional", 0, 1, 0, &st->unidir)) < 0 ||
        (rc = meta_int(f, path, "sample_rate", 8000, 384000, -1, &st->sample_rate)) < 0 ||
        (rc = meta_int(f, path, "n_fft", 16, 65536, -1, &st->n_fft)) < 0 ||
        (rc = meta_int(f, path, "hop", 1, 65536, -1, &st->hop)) < 0)
        goto out;
    if (nch != 2) {
        rc = sl_seterr(SL_EUNSUPPORTED, "separation model umx: %s: nb_channels %d; only stereo models are supported",
                       path, nch);
        goto out;
    }
    if (st->n_fft / 2 + 1 != st->nb || st->mb > st->nb || st->hop > st->n_fft / 2 ||
        (!st->unidir && st->H % 2)) {
        rc = sl_seterr(SL_EFORMAT, "separation model umx: %s: inconsistent metadata (n_fft %d, hop %d, nb_bins %d, "
                                   "max_bin %d, hidden_size %d)", path, st->n_fft, st->hop, st->nb, st->mb, st->H);
        goto out;
    }
    const char *tl = sl_st_meta(f, "targets");
    if (!tl || !*tl) {
        rc = sl_seterr(SL_EFORMAT, "separation model umx: %s: metadata key 'targets' missing", path);
        goto out;
    }
    for (const char *p = tl; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (st->J == UMX_MAX_TARGETS || len == 0 || len >= sizeof st->names[0]) {
            rc = sl_seterr(SL_EFORMAT, "separation model umx: %s: metadata targets '%s': 1..%d names of 1..31 "
                                       "characters", path, tl, UMX_MAX_TARGETS);
            goto out;
        }
        memcpy(st->names[st->J], p, len);
        st->names[st->J++][len] = 0;
        p = e ? e + 1 : p + len;
    }

    const int J = st->J, H = st->H, mb = st->mb, nb = st->nb;
    const int Hl = st->unidir ? H : H / 2, D = st->unidir ? 1 : 2;
    st->lstm = (sl_lstm_cfg){.layers = st->layers, .input = H, .hidden = Hl, .bidirectional = !st->unidir};
    st->lstm_floats = sl_lstm_weights_floats(&st->lstm);
    if (!st->lstm_floats) {
        rc = sl_seterr(SL_EFORMAT, "separation model umx: %s: unsupported LSTM geometry", path);
        goto out;
    }
    const size_t n_in = (size_t)J * mb, n_w1 = (size_t)J * H * 2 * mb, n_w2 = (size_t)J * H * 2 * H,
                 n_w3 = (size_t)J * 2 * nb * H, n_wl = (size_t)J * st->lstm_floats;
    /* Nothing is allocated from what the metadata declares before the file is
     * known to hold it: the largest tensors of every target are checked
     * first (naming the one that is missing or of another shape), then the
     * whole declared size against the bytes the file's tensors hold. */
    for (int j = 0; j < J; j++)
        if (!tensor(f, st->names[j], "input_mean", 1, mb, 0) || !tensor(f, st->names[j], "input_scale", 1, mb, 0) ||
            !tensor(f, st->names[j], "output_mean", 1, nb, 0) || !tensor(f, st->names[j], "output_scale", 1, nb, 0) ||
            !tensor(f, st->names[j], "fc1.weight", 2, H, 2 * mb) || !tensor(f, st->names[j], "fc2.weight", 2, H, 2 * H) ||
            !tensor(f, st->names[j], "fc3.weight", 2, 2 * nb, H) ||
            !tensor(f, st->names[j], "lstm.weight_ih_l0", 2, 4 * Hl, H)) {
            rc = SL_EFORMAT;
            goto out;
        }
    {
        uint64_t have = 0;
        for (size_t i = 0; i < sl_st_count(f); i++)
            have += sl_st_at(f, i)->nbytes;
        uint64_t need = (uint64_t)(2 * n_in + n_w1 + n_w2 + n_w3 + n_wl) * sizeof(float);
        if (need > have) {
            rc = sl_seterr(SL_EFORMAT,
                           "separation model umx: %s: metadata nb_layers %d with hidden_size %d declares %.1f GB of "
                           "weights, but the file's tensors hold %.1f MB (tensor %s.lstm.weight_ih_l%d and above "
                           "missing?)",
                           path, st->layers, H, need / 1e9, have / 1e6, st->names[0], st->layers - 1);
            goto out;
        }
    }
    sl_op_ctx *ctx = m->ctx;
    /* the large ones are filled where they stay (no second copy on the cpu backend) */
    float *in_mean = malloc(n_in * sizeof(float)), *in_scale = malloc(n_in * sizeof(float));
    float *w1 = sl_model_stage(ctx, n_w1), *b1 = malloc((size_t)J * H * sizeof(float));
    float *w2 = sl_model_stage(ctx, n_w2), *b2 = malloc((size_t)J * H * sizeof(float));
    float *w3 = sl_model_stage(ctx, n_w3), *b3 = malloc((size_t)J * 2 * nb * sizeof(float));
    float *wl = sl_model_stage(ctx, n_wl);
    double *s = malloc((size_t)2 * nb * sizeof(double)), *t = malloc((size_t)2 * nb * sizeof(double));
    if (!in_mean || !in_scale || !w1 || !b1 || !w2 || !b2 || !w3 || !b3 || !wl || !s || !t) {
        rc = sl_seterr(SL_ENOMEM, "separation model umx: out of memory for the weights");
        goto done;
    }
    for (int j = 0; j < J && rc == 0; j++) {
        const char *tg = st->names[j];
        const float *im = tensor(f, tg, "input_mean", 1, mb, 0);
        const float *is = im ? tensor(f, tg, "input_scale", 1, mb, 0) : NULL;
        const float *om = is ? tensor(f, tg, "output_mean", 1, nb, 0) : NULL;
        const float *os = om ? tensor(f, tg, "output_scale", 1, nb, 0) : NULL;
        const float *fc1 = os ? tensor(f, tg, "fc1.weight", 2, H, 2 * mb) : NULL;
        const float *fc2 = fc1 ? tensor(f, tg, "fc2.weight", 2, H, 2 * H) : NULL;
        const float *fc3 = fc2 ? tensor(f, tg, "fc3.weight", 2, 2 * nb, H) : NULL;
        if (!fc3) {
            rc = SL_EFORMAT;
            break;
        }
        memcpy(in_mean + (size_t)j * mb, im, (size_t)mb * sizeof(float));
        memcpy(in_scale + (size_t)j * mb, is, (size_t)mb * sizeof(float));
        if ((rc = bn_fold(f, tg, "bn1", H, s, t)) < 0)
            break;
        for (int r = 0; r < H; r++) {
            for (int k = 0; k < 2 * mb; k++)
                w1[((size_t)j * H + r) * 2 * mb + k] = (float)((double)fc1[(size_t)r * 2 * mb + k] * s[r]);
            b1[(size_t)j * H + r] = (float)t[r];
        }
        if ((rc = bn_fold(f, tg, "bn2", H, s, t)) < 0)
            break;
        for (int r = 0; r < H; r++) {
            for (int k = 0; k < 2 * H; k++)
                w2[((size_t)j * H + r) * 2 * H + k] = (float)((double)fc2[(size_t)r * 2 * H + k] * s[r]);
            b2[(size_t)j * H + r] = (float)t[r];
        }
        if ((rc = bn_fold(f, tg, "bn3", 2 * nb, s, t)) < 0)
            break;
        for (int r = 0; r < 2 * nb; r++) { /* r = channel * nb + bin; output scale/mean per bin */
            const double osc = os[r % nb], omn = om[r % nb];
            for (int k = 0; k < H; k++)
                w3[((size_t)j * 2 * nb + r) * H + k] = (float)((double)fc3[(size_t)r * H + k] * s[r] * osc);
            b3[(size_t)j * 2 * nb + r] = (float)(t[r] * osc + omn);
        }
        /* LSTM: pack per layer w_ih [D*4Hl][in], w_hh [D][4Hl][Hl], bias [D*4Hl] (ops.h) */
        float *p = wl + (size_t)j * st->lstm_floats;
        static const char *const dirs[2] = {"", "_reverse"};
        for (int l = 0; l < st->layers && rc == 0; l++) {
            const int in = l == 0 ? H : D * Hl;
            char key[64];
            for (int d = 0; d < D && rc == 0; d++) {
                snprintf(key, sizeof key, "lstm.weight_ih_l%d%s", l, dirs[d]);
                const float *wih = tensor(f, tg, key, 2, 4 * Hl, in);
                if (!wih) {
                    rc = SL_EFORMAT;
                    break;
                }
                memcpy(p + (size_t)d * 4 * Hl * in, wih, (size_t)4 * Hl * in * sizeof(float));
            }
            p += (size_t)D * 4 * Hl * in;
            for (int d = 0; d < D && rc == 0; d++) {
                snprintf(key, sizeof key, "lstm.weight_hh_l%d%s", l, dirs[d]);
                const float *whh = tensor(f, tg, key, 2, 4 * Hl, Hl);
                if (!whh) {
                    rc = SL_EFORMAT;
                    break;
                }
                memcpy(p + (size_t)d * 4 * Hl * Hl, whh, (size_t)4 * Hl * Hl * sizeof(float));
            }
            p += (size_t)D * 4 * Hl * Hl;
            for (int d = 0; d < D && rc == 0; d++) {
                snprintf(key, sizeof key, "lstm.bias_ih_l%d%s", l, dirs[d]);
                const float *bih = tensor(f, tg, key, 1, 4 * Hl, 0);
                snprintf(key, sizeof key, "lstm.bias_hh_l%d%s", l, dirs[d]);
                const float *bhh = bih ? tensor(f, tg, key, 1, 4 * Hl, 0) : NULL;
                if (!bhh) {
                    rc = SL_EFORMAT;
                    break;
                }
                for (int g = 0; g < 4 * Hl; g++)
                    p[(size_t)d * 4 * Hl + g] = bih[g] + bhh[g];
            }
            p += (size_t)D * 4 * Hl;
        }
        if (rc == 0) { /* a checkpoint with more layers than its metadata says is not this model */
            char key[64];
            snprintf(key, sizeof key, "%s.lstm.weight_ih_l%d", tg, st->layers);
            if (sl_st_find(f, key))
                rc = sl_seterr(SL_EFORMAT, "separation model umx: %s: tensor %s present but metadata nb_layers is %d",
                               path, key, st->layers);
        }
    }
    if (!rc)
        rc = sl_model_upload_new(ctx, &st->in_mean, in_mean, n_in);
    if (!rc)
        rc = sl_model_upload_new(ctx, &st->in_scale, in_scale, n_in);
    if (!rc)
        rc = sl_model_adopt(ctx, &st->w1, &w1, n_w1);
    if (!rc)
        rc = sl_model_upload_new(ctx, &st->b1, b1, (size_t)J * H);
    if (!rc)
        rc = sl_model_adopt(ctx, &st->w2, &w2, n_w2);
    if (!rc)
        rc = sl_model_upload_new(ctx, &st->b2, b2, (size_t)J * H);
    if (!rc)
        rc = sl_model_adopt(ctx, &st->w3, &w3, n_w3);
    if (!rc)
        rc = sl_model_upload_new(ctx, &st->b3, b3, (size_t)J * 2 * nb);
    if (!rc)
        rc = sl_model_adopt(ctx, &st->wl, &wl, n_wl);
    if (!rc) /* uploads from ordinary memory may be queued: wait before freeing the sources */
        rc = sl_op_sync(ctx);
done:
    free(in_mean);
    free(in_scale);
    sl_model_stage_free(ctx, w1);
    free(b1);
    sl_model_stage_free(ctx, w2);
    free(b2);
    sl_model_stage_free(ctx, w3);
    free(b3);
    sl_model_stage_free(ctx, wl);
    free(s);
    free(t);
out:
    sl_st_close(f);
    return rc;
}

/* ---- running ---- */

typedef struct {
    float *x, *frames, *spec, *mag, *X, *cat, *h2, *est, *wien, *y;
} umx_bufs;

/* The whole model on one segment; stage copies for the tests when stages != NULL. */
static int umx_forward(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out,
                       sl_umx_stages *stages)
{
    umx_state *st = m->impl;
    sl_op_ctx *ctx = m->ctx;
    if (n == 0)
        return 0;
    sl_stft_cfg c = st->stft;
    if ((size_t)(c.n_fft / 2) >= n) /* too short to reflect (torch would raise): zero padding */
        c.pad = SL_PAD_CONSTANT;
    const size_t T = sl_stft_n_frames(&c, n), nb = (size_t)st->nb, mb = (size_t)st->mb, H = (size_t)st->H;
    const size_t J = (size_t)st->J, S = (size_t)st->S, nfft = (size_t)c.n_fft;
    const size_t plane = T * nb; /* one channel's bins */
    umx_bufs b; /* x, frames, spec, mag, X, cat, h2, est, wien, y */
    const size_t sizes[] = {2 * n,         2 * T * nfft, 2 * plane * 2, 2 * plane,         J * T * 2 * mb,
                            J * T * 2 * H, J * T * H,    J * 2 * plane, S * 2 * plane * 2, 2 * n};
    int rc = sl_model_ws_get(ctx, &st->ws, sizeof sizes / sizeof *sizes, sizes, (float **)&b);
    /* STFT of both channels as one batch */
    for (int ch = 0; ch < 2 && !rc; ch++)
        rc = sl_op_upload(ctx, b.x + (size_t)ch * n, in[ch], n * sizeof(float));
    if (!rc)
        rc = sl_op_frame(ctx, &c, b.x, 2, n, 0, T, st->window, b.frames);
    if (!rc)
        rc = sl_op_rfft(ctx, c.n_fft, 2 * T, b.frames, b.spec, 1.0f);
    if (!rc)
        rc = sl_op_magnitude(ctx, 2 * plane, b.spec, b.mag);
    /* X[j][t][ch*mb + k] = (mag[ch][t][k] + input_mean[j][k]) * input_scale[j][k] */
    for (int ch = 0; ch < 2 && !rc; ch++) {
        sl_affine_args a = {.batch = J, .rows = T, .cols = mb, .x = b.mag + (size_t)ch * plane, .ldx = nb,
                            .stride_x = 0, .add = st->in_mean, .mul = st->in_scale, .stride_p = mb,
                            .act = SL_ACT_NONE, .y = b.X + (size_t)ch * mb, .ldy = 2 * mb, .stride_y = T * 2 * mb};
        rc = sl_op_affine(ctx, &a);
    }
    /* fc1 + bn1 + tanh into cat[:, :, 0:H] */
    if (!rc) {
        sl_gemm_args g = {.batch = J, .m = T, .n = H, .k = 2 * mb, .x = b.X, .ldx = 2 * mb, .stride_x = T * 2 * mb,
                          .w = st->w1, .ldw = 2 * mb, .stride_w = H * 2 * mb, .bias = st->b1, .stride_bias = H,
                          .act = SL_ACT_TANH, .y = b.cat, .ldy = 2 * H, .stride_y = T * 2 * H};
        rc = sl_op_gemm(ctx, &g);
    }
    /* LSTM over cat[:, :, 0:H] into cat[:, :, H:2H] (the skip concatenation) */
    if (!rc)
        rc = sl_op_lstm(ctx, &st->lstm, J, T, b.cat, 2 * H, T * 2 * H, st->wl, st->lstm_floats, b.cat + H, 2 * H,
                        T * 2 * H);
    /* fc2 + bn2 + relu */
    if (!rc) {
        sl_gemm_args g = {.batch = J, .m = T, .n = H, .k = 2 * H, .x = b.cat, .ldx = 2 * H, .stride_x = T * 2 * H,
                          .w = st->w2, .ldw = 2 * H, .stride_w = H * 2 * H, .bias = st->b2, .stride_bias = H,
                          .act = SL_ACT_RELU, .y = b.h2, .ldy = H, .stride_y = T * H};
        rc = sl_op_gemm(ctx, &g);
    }
    /* fc3 + bn3, * output_scale + output_mean, relu, * mixture magnitude -> est[j][ch][t][k];
     * one call per target, its two channels as the batch (rows ch*nb.. of fc3) */
    for (size_t j = 0; j < J && !rc; j++) {
        sl_gemm_args g = {.batch = 2, .m = T, .n = nb, .k = H, .x = b.h2 + j * T * H, .ldx = H, .stride_x = 0,
                          .w = st->w3 + j * 2 * nb * H, .ldw = H, .stride_w = nb * H, .bias = st->b3 + j * 2 * nb,
                          .stride_bias = nb, .act = SL_ACT_RELU, .mul = b.mag, .ldmul = nb, .stride_mul = plane,
                          .y = b.est + j * 2 * plane, .ldy = nb, .stride_y = plane};
        rc = sl_op_gemm(ctx, &g);
    }
    if (!rc)
        rc = sl_op_wiener(ctx, &st->wiener, J, T, nb, b.spec, b.est, b.wien);
    if (!rc && stages) {
        stages->frames = T;
        if (stages->mag)
            rc = sl_op_download(ctx, stages->mag, b.mag, 2 * plane * sizeof(float));
        if (!rc && stages->est)
            rc = sl_op_download(ctx, stages->est, b.est, J * 2 * plane * sizeof(float));
        if (!rc && stages->wien)
            rc = sl_op_download(ctx, stages->wien, b.wien, S * 2 * plane * 2 * sizeof(float));
    }
    /* iSTFT, one source (both channels) at a time */
    const float iscale = 1.0f / (float)c.n_fft;
    for (size_t s = 0; s < S && !rc; s++) {
        rc = sl_op_irfft(ctx, c.n_fft, 2 * T, b.wien + s * 2 * plane * 2, b.frames, iscale);
        if (!rc)
            rc = sl_op_overlap_add(ctx, &c, 2, T, b.frames, st->window, n, b.y);
        for (int ch = 0; ch < 2 && !rc; ch++)
            rc = sl_op_download(ctx, out[s][ch], b.y + (size_t)ch * n, n * sizeof(float));
    }
    return rc;
}

static int umx_run(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out)
{
    return umx_forward(m, in, n, out, NULL);
}

int sl_umx_run_stages(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out,
                      sl_umx_stages *stages)
{
    if (!m || m->run != umx_run)
        return sl_seterr(SL_EINVAL, "sl_umx_run_stages: not a umx model");
    return umx_forward(m, in, n, out, stages);
}

int sl_umx_geometry(const sl_sep_model *m, size_t n, size_t *frames, size_t *bins, size_t *targets, size_t *sources)
{
    if (!m || m->run != umx_run)
        return sl_seterr(SL_EINVAL, "sl_umx_geometry: not a umx model");
    const umx_state *st = m->impl;
    sl_stft_cfg c = st->stft;
    *frames = sl_stft_n_frames(&c, n);
    *bins = (size_t)st->nb;
    *targets = (size_t)st->J;
    *sources = (size_t)st->S;
    return 0;
}

/* ---- options ---- */

int sl_umx_init(sl_sep_model *m, const char *weights, const sl_cfg_opts *opts)
{
    static const char *sec = "separation";
    int rc = sl_op_require(m->ctx, umx_ops, sizeof umx_ops / sizeof umx_ops[0], "separation model umx");
    if (rc < 0)
        return rc;
    umx_state *st = calloc(1, sizeof *st);
    if (!st)
        return sl_seterr(SL_ENOMEM, "umx: out of memory");
    m->impl = st;
    m->close = umx_close;
    m->run = umx_run;
    m->pipelined = 1; /* (downloads only its stems, no waits, same ops for the same length) */
    /* openunmix's CLI defaults: niter 1, no softmask, no residual, 300-frame windows */
    st->wiener = (sl_wiener_cfg){.niter = 1, .softmask = 0, .residual = 0, .win_len = 300, .eps = 1e-10f};
    const sl_cfg_opt *niter_opt = NULL;
    for (size_t i = 0; opts && i < opts->n; i++) {
        const sl_cfg_opt *o = &opts->items[i];
        if (!strcmp(o->key, "niter")) {
            rc = sl_model_opt_int(o, sec, 0, 100, 0, &st->wiener.niter);
            niter_opt = o;
        } else if (!strcmp(o->key, "softmask")) {
            rc = sl_model_opt_bool(o, sec, &st->wiener.softmask);
        } else if (!strcmp(o->key, "residual")) {
            rc = sl_model_opt_bool(o, sec, &st->wiener.residual);
        } else if (!strcmp(o->key, "wiener_win_len")) {
            rc = sl_model_opt_int(o, sec, 0, 1000000, 0, &st->wiener.win_len);
        } else {
            rc = sl_model_opt_error(o, sec, "unknown option of model umx (known: niter, softmask, residual, "
                                            "wiener_win_len)");
        }
        if (rc < 0)
            return rc;
    }
    if (!weights || !*weights)
        return sl_seterr(SL_ECONFIG, "key 'separation.weights': separation model 'umx' needs a weights file "
                                     "(.safetensors from tools/convert_umx.py or `stemline models fetch umxhq`)");
    if ((rc = load_weights(m, st, weights)) < 0)
        return rc;
    st->S = st->J + (st->wiener.residual ? 1 : 0);
    if (st->S > SL_MAX_SOURCES)
        return sl_seterr(SL_EUNSUPPORTED, "separation model umx: %d sources (at most %d)", st->S, SL_MAX_SOURCES);
    if (st->wiener.niter > 0 && st->S < 2) {
        if (niter_opt)
            return sl_model_opt_error(niter_opt, sec, "EM needs two sources: this model has one target "
                                                      "(set residual: true, or niter: 0)");
        return sl_seterr(SL_ECONFIG, "separation model umx: one target and niter %d: set separation.options."
                                     "residual: true or niter: 0", st->wiener.niter);
    }
    st->stft = (sl_stft_cfg){.n_fft = st->n_fft, .hop = st->hop, .center = 1, .pad = SL_PAD_REFLECT, .normalized = 0};
    float *w = malloc(sizeof(float) * (size_t)st->n_fft);
    if (!w)
        return sl_seterr(SL_ENOMEM, "umx: out of memory");
    sl_window_hann(w, st->n_fft, st->n_fft);
    rc = sl_model_upload_new(m->ctx, &st->window, w, (size_t)st->n_fft);
    if (!rc)
        rc = sl_op_sync(m->ctx);
    free(w);
    if (rc < 0)
        return rc;
    if (st->wiener.residual)
        snprintf(st->names[st->J], sizeof st->names[0], "residual");

    sl_sep_info *info = &m->info;
    info->name = "umx";
    info->sample_rate = st->sample_rate;
    info->channels = 2;
    info->n_sources = st->S;
    for (int s = 0; s < st->S; s++)
        info->sources[s] = st->names[s];
    snprintf(info->params, sizeof info->params,
             "n_fft=%d hop=%d nb_bins=%d max_bin=%d hidden=%d layers=%d%s targets=%d niter=%d softmask=%d "
             "residual=%d wiener_win_len=%d",
             st->n_fft, st->hop, st->nb, st->mb, st->H, st->layers, st->unidir ? " unidirectional" : "", st->J,
             st->wiener.niter, st->wiener.softmask, st->wiener.residual, st->wiener.win_len);
    return 0;
}
