/* Separation models "bs_roformer" (Lu et al. 2023, BS-RoFormer) and
 * "mel_band_roformer" (Wang et al. 2023, Mel-Band RoFormer), as lucidrains'
 * `bs-roformer` package 0.3.10 and the copy in ZFTurbo's
 * Music-Source-Separation-Training compute them (the published checkpoints'
 * code; weights: models/roformer_load.c):
 *
 *   STFT of each channel (torch.stft: centred, reflect, periodic Hann of
 *   win_length) -> feature rows per frame: the bins of each band, channels
 *   interleaved, (re, im) pairs (BS: consecutive bands; Mel: overlapping mel
 *   bands) -> per band RMSNorm + Linear to dim -> depth x (time transformer
 *   over frames for each band, frequency transformer over bands for each
 *   frame), each layer x += attn(x), x += ff(x) with RMSNorm first, rotary
 *   embeddings on q and k, optionally gated heads, GELU feed-forward (Mel: an
 *   RMSNorm after each transformer; BS: one after the stack) -> per stem and
 *   band an MLP (Tanh) + GLU giving a complex mask per feature -> masks
 *   averaged per bin (Mel overlaps) times the mixture spectrum (DC zeroed
 *   when zero_dc) -> iSTFT to the input length.
 *
 * Every step is an op of kernels/ops.h on the context's backend. The axial
 * transformers never transpose: x is kept as rows [frame][band][dim]; the
 * row-wise ops (norms, linear layers) run on all rows at once, and attention
 * reads the sequences with strides (time: one sequence per band, rows
 * K*dim apart; frequency: one per frame, consecutive rows).
 *
 * One-stem models get an extra source (option `instrumental`, default on):
 * the mixture minus the stem, named "instrumental" for a vocals model,
 * "residual" otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "roformer_impl.h"

static const sl_op_id rf_ops[] = {SL_OP_FRAME, SL_OP_RFFT,      SL_OP_SPEC_GATHER,  SL_OP_NORM,  SL_OP_GEMM,
                                  SL_OP_GLU,   SL_OP_ATTENTION, SL_OP_MASK_SCATTER, SL_OP_IRFFT, SL_OP_OVERLAP_ADD};

static void rf_close(sl_sep_model *m)
{
    rf_state *st = m->impl;
    if (!st)
        return;
    rf_free(m->ctx, st);
    free(st);
    m->impl = NULL;
}

/* ---- running ---- */

typedef struct {
    float *x_in, *frames, *spec, *feat, *x, *xn, *qkv, *gate, *att, *hid, *mh0, *mh1, *mtmp, *mask, *ospec, *y;
    float *rope_t, *rope_f;
} rf_bufs;

static void free_bufs(sl_op_ctx *ctx, rf_bufs *b)
{
    float **p = (float **)b;
    for (size_t i = 0; i < sizeof *b / sizeof(float *); i++)
        sl_op_free(ctx, p[i]);
    memset(b, 0, sizeof *b);
}

static int alloc_f(sl_op_ctx *ctx, float **p, size_t n) { return sl_op_alloc(ctx, (void **)p, (n ? n : 1) * sizeof(float)); }

static int rope_upload(sl_op_ctx *ctx, float **dst, size_t n_pos, int D, const float *inv_freq)
{
    float *tab = malloc(n_pos * (size_t)D * sizeof(float));
    if (!tab)
        return sl_seterr(SL_ENOMEM, "roformer: out of memory");
    int rc = sl_rope_table(tab, n_pos, D, 10000.0, inv_freq);
    if (!rc)
        rc = sl_model_upload_new(ctx, dst, tab, n_pos * (size_t)D);
    if (!rc)
        rc = sl_op_sync(ctx);
    free(tab);
    return rc;
}

/* y = W x (+ bias) over rows: m rows of x (ld ldx) -> y (ld ldy), optional activation and residual add == y,
 * in the context's precision (runtime.precision). */
static int linear(sl_op_ctx *ctx, size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *w,
                  const float *bias, sl_act act, float *y, size_t ldy, int residual)
{
    sl_gemm_args g = {.batch = 1, .m = m, .n = n, .k = k, .x = x, .ldx = ldx, .w = w, .ldw = k, .bias = bias,
                      .act = act, .y = y, .ldy = ldy, .add = residual ? y : NULL, .ldadd = ldy};
    return sl_op_gemm(ctx, &g);
}

static int rmsnorm(sl_op_ctx *ctx, size_t rows, size_t dim, const float *x, size_t ldx, const float *g, float *y,
                   size_t ldy)
{
    sl_norm_args a = {SL_NORM_RMS, rows, dim, x, ldx, g, NULL, 1e-12f, y, ldy, 0, 0, 0, SL_ACT_NONE};
    return sl_op_norm(ctx, &a);
}

/* One transformer (axis 0: time, 1: frequency) of nd layers over x[T][K][dim]. */
static int transformer(sl_op_ctx *ctx, const rf_state *st, const rf_layer *ly, int nd, int axis, size_t T, rf_bufs *b)
{
    const size_t K = (size_t)st->K, dim = (size_t)st->dim, H = (size_t)st->heads, D = (size_t)st->dim_head;
    const size_t HD = H * D, R = T * K, ffh = (size_t)st->ff_hidden;
    int rc = 0;
    for (int d = 0; d < nd && !rc; d++, ly++) {
        rc = rmsnorm(ctx, R, dim, b->x, dim, ly->attn_g, b->xn, dim);
        if (!rc)
            rc = linear(ctx, R, 3 * HD, dim, b->xn, dim, ly->wqkv, NULL, SL_ACT_NONE, b->qkv, 3 * HD, 0);
        if (!rc && ly->wgate)
            rc = linear(ctx, R, H, dim, b->xn, dim, ly->wgate, ly->bgate, SL_ACT_NONE, b->gate, H, 0);
        if (!rc) {
            sl_attention_args a = {.heads = (int)H, .dim_head = (int)D, .scale = 1.0f / sqrtf((float)D),
                                   .q = b->qkv, .k = b->qkv + HD, .v = b->qkv + 2 * HD,
                                   .gate = ly->wgate ? b->gate : NULL, .out = b->att};
            if (axis == 0) { /* sequences: bands; rows: frames, K rows apart */
                a.batch = K, a.tq = a.tk = T;
                a.ldq = a.ldk = a.ldv = K * 3 * HD, a.stride_q = a.stride_k = a.stride_v = 3 * HD;
                a.ldo = K * HD, a.stride_o = HD;
                a.ld_gate = K * H, a.stride_gate = H;
                a.rope = b->rope_t;
            } else { /* sequences: frames; rows: bands, consecutive */
                a.batch = T, a.tq = a.tk = K;
                a.ldq = a.ldk = a.ldv = 3 * HD, a.stride_q = a.stride_k = a.stride_v = K * 3 * HD;
                a.ldo = HD, a.stride_o = K * HD;
                a.ld_gate = H, a.stride_gate = K * H;
                a.rope = b->rope_f;
            }
            rc = sl_op_attention(ctx, &a);
        }
        if (!rc)
            rc = linear(ctx, R, dim, HD, b->att, HD, ly->wout, NULL, SL_ACT_NONE, b->x, dim, 1);
        if (!rc)
            rc = rmsnorm(ctx, R, dim, b->x, dim, ly->ff_g, b->xn, dim);
        if (!rc)
            rc = linear(ctx, R, ffh, dim, b->xn, dim, ly->w1, ly->b1, SL_ACT_GELU, b->hid, ffh, 0);
        if (!rc)
            rc = linear(ctx, R, dim, ffh, b->hid, ffh, ly->w2, ly->b2, SL_ACT_NONE, b->x, dim, 1);
    }
    return rc;
}

static int stage_copy(sl_op_ctx *ctx, float *host, const float *dev, size_t n)
{
    return host ? sl_op_download(ctx, host, dev, n * sizeof(float)) : 0;
}

static int rf_forward(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out,
                      sl_roformer_stages *stages)
{
    rf_state *st = m->impl;
    sl_op_ctx *ctx = m->ctx;
    if (n == 0)
        return 0;
    sl_stft_cfg c = st->stft;
    if ((size_t)(c.n_fft / 2) >= n) /* too short to reflect (torch would raise): zero padding */
        c.pad = SL_PAD_CONSTANT;
    const size_t T = sl_stft_n_frames(&c, n), F = (size_t)(c.n_fft / 2 + 1), S = (size_t)st->S, N = (size_t)st->N;
    const size_t K = (size_t)st->K, dim = (size_t)st->dim, HD = (size_t)st->heads * st->dim_head, R = T * K;
    const size_t nfft = (size_t)c.n_fft, nf2 = 2 * (size_t)st->n_feat, ML = (size_t)st->mlp_layers;
    const size_t mh = (size_t)st->mlp_hidden, md = (size_t)st->max_din;
    rf_bufs b = {0};
    int rc = alloc_f(ctx, &b.x_in, S * n);
    if (!rc)
        rc = alloc_f(ctx, &b.frames, S * T * nfft);
    if (!rc)
        rc = alloc_f(ctx, &b.spec, S * T * F * 2);
    if (!rc)
        rc = alloc_f(ctx, &b.feat, T * nf2);
    if (!rc)
        rc = alloc_f(ctx, &b.x, R * dim);
    if (!rc)
        rc = alloc_f(ctx, &b.xn, R * dim);
    if (!rc)
        rc = alloc_f(ctx, &b.qkv, R * 3 * HD);
    if (!rc)
        rc = alloc_f(ctx, &b.gate, R * (size_t)st->heads);
    if (!rc)
        rc = alloc_f(ctx, &b.att, R * HD);
    if (!rc)
        rc = alloc_f(ctx, &b.hid, R * (size_t)st->ff_hidden);
    if (!rc)
        rc = alloc_f(ctx, &b.mh0, T * mh);
    if (!rc)
        rc = alloc_f(ctx, &b.mh1, T * mh);
    if (!rc)
        rc = alloc_f(ctx, &b.mtmp, T * 2 * md);
    if (!rc)
        rc = alloc_f(ctx, &b.mask, N * T * nf2);
    if (!rc)
        rc = alloc_f(ctx, &b.ospec, N * S * T * F * 2);
    if (!rc)
        rc = alloc_f(ctx, &b.y, S * n);
    if (!rc)
        rc = rope_upload(ctx, &b.rope_t, T, st->dim_head, st->inv_freq[0]);
    if (!rc)
        rc = rope_upload(ctx, &b.rope_f, K, st->dim_head, st->inv_freq[1]);
    /* STFT of every channel as one batch, then the feature rows */
    for (size_t ch = 0; ch < S && !rc; ch++)
        rc = sl_op_upload(ctx, b.x_in + ch * n, in[ch], n * sizeof(float));
    if (!rc)
        rc = sl_op_frame(ctx, &c, b.x_in, S, n, 0, T, st->window, b.frames);
    if (!rc)
        rc = sl_op_rfft(ctx, c.n_fft, S * T, b.frames, b.spec, c.normalized ? 1.0f / sqrtf((float)nfft) : 1.0f);
    sl_band_geom g = {1, S, T, F, (size_t)st->n_feat, st->idx};
    if (!rc)
        rc = sl_op_spec_gather(ctx, &g, b.spec, b.feat);
    /* band split: x[t][k] = Linear_k(RMSNorm_k(band k of frame t)) */
    for (size_t k = 0; k < K && !rc; k++) {
        const size_t din = (size_t)st->din[k];
        rc = rmsnorm(ctx, T, din, b.feat + st->off[k], nf2, st->band_g[k], b.mtmp, 2 * md);
        if (!rc)
            rc = linear(ctx, T, dim, din, b.mtmp, 2 * md, st->band_w[k], st->band_b[k], SL_ACT_NONE, b.x + k * dim,
                        K * dim, 0);
    }
    if (!rc && stages)
        rc = stage_copy(ctx, stages->split, b.x, R * dim);
    /* axial transformers */
    const rf_layer *ly = st->layers;
    for (int l = 0; l < st->depth && !rc; l++)
        for (int ax = 0; ax < 2 && !rc; ax++) {
            const int nd = ax ? st->fdepth : st->tdepth;
            rc = transformer(ctx, st, ly, nd, ax, T, &b);
            ly += nd;
            if (!rc && st->arch == RF_MEL)
                rc = rmsnorm(ctx, R, dim, b.x, dim, st->tnorm[l * 2 + ax], b.x, dim);
            if (!rc && stages && stages->layers)
                rc = stage_copy(ctx, stages->layers[l * 2 + ax], b.x, R * dim);
        }
    if (!rc && st->arch == RF_BS)
        rc = rmsnorm(ctx, R, dim, b.x, dim, st->final_g, b.x, dim);
    /* mask estimators: per stem and band, MLP (Tanh between layers) then GLU into the feature row */
    for (size_t s = 0; s < N && !rc; s++)
        for (size_t k = 0; k < K && !rc; k++) {
            const size_t din = (size_t)st->din[k], e0 = (s * K + k) * ML;
            const float *src = b.x + k * dim;
            size_t ld = K * dim, kin = dim;
            for (size_t i = 0; i < ML && !rc; i++) {
                const int last = i == ML - 1;
                float *dst = last ? b.mtmp : (i % 2 ? b.mh1 : b.mh0);
                const size_t nout = last ? 2 * din : mh, ldd = last ? 2 * md : mh;
                rc = linear(ctx, T, nout, kin, src, ld, st->mlp_w[e0 + i], st->mlp_b[e0 + i],
                            last ? SL_ACT_NONE : SL_ACT_TANH, dst, ldd, 0);
                src = dst;
                ld = ldd;
                kin = nout;
            }
            if (!rc)
                rc = sl_op_glu(ctx, T, din, b.mtmp, 2 * md, b.mask + s * T * nf2 + st->off[k], nf2);
        }
    if (!rc && stages)
        rc = stage_copy(ctx, stages->mask, b.mask, N * T * nf2);
    if (!rc)
        rc = sl_op_mask_scatter(ctx, &g, N, st->inv_off, st->inv_idx, b.spec, b.mask, b.ospec);
    /* iSTFT per stem (its channels as one batch) */
    const float iscale = c.normalized ? 1.0f / sqrtf((float)nfft) : 1.0f / (float)nfft;
    for (size_t s = 0; s < N && !rc; s++) {
        rc = sl_op_irfft(ctx, c.n_fft, S * T, b.ospec + s * S * T * F * 2, b.frames, iscale);
        if (!rc)
            rc = sl_op_overlap_add(ctx, &c, S, T, b.frames, st->window, n, b.y);
        for (size_t ch = 0; ch < S && !rc; ch++)
            rc = sl_op_download(ctx, out[s][ch], b.y + ch * n, n * sizeof(float));
    }
    if (!rc && st->instrumental)
        for (size_t ch = 0; ch < S; ch++)
            for (size_t i = 0; i < n; i++)
                out[N][ch][i] = in[ch][i] - out[0][ch][i];
    if (!rc && stages)
        stages->frames = T;
    free_bufs(ctx, &b);
    return rc;
}

static int rf_run(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out)
{
    return rf_forward(m, in, n, out, NULL);
}

int sl_roformer_run_stages(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out,
                           sl_roformer_stages *stages)
{
    if (!m || m->run != rf_run)
        return sl_seterr(SL_EINVAL, "sl_roformer_run_stages: not a RoFormer model");
    return rf_forward(m, in, n, out, stages);
}

int sl_roformer_geometry(const sl_sep_model *m, size_t n, size_t *frames, size_t *bands, size_t *dim, size_t *n_feat)
{
    if (!m || m->run != rf_run)
        return sl_seterr(SL_EINVAL, "sl_roformer_geometry: not a RoFormer model");
    const rf_state *st = m->impl;
    *frames = sl_stft_n_frames(&st->stft, n);
    *bands = (size_t)st->K;
    *dim = (size_t)st->dim;
    *n_feat = (size_t)st->n_feat;
    return 0;
}

/* ---- options ---- */

int sl_roformer_init(sl_sep_model *m, const char *name, const char *weights, const sl_cfg_opts *opts)
{
    static const char *sec = "separation";
    const rf_arch arch = strcmp(name, "mel_band_roformer") ? RF_BS : RF_MEL;
    char who[64];
    snprintf(who, sizeof who, "separation model %s", name);
    int rc = sl_op_require(m->ctx, rf_ops, sizeof rf_ops / sizeof rf_ops[0], who);
    if (rc < 0)
        return rc;
    rf_state *st = calloc(1, sizeof *st);
    if (!st)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", who);
    m->impl = st;
    m->close = rf_close;
    m->run = rf_run;
    int instrumental = 1, chunk = 0, overlap = 0;
    const sl_cfg_opt *chunk_opt = NULL;
    for (size_t i = 0; opts && i < opts->n; i++) {
        const sl_cfg_opt *o = &opts->items[i];
        if (!strcmp(o->key, "instrumental")) {
            rc = sl_model_opt_bool(o, sec, &instrumental);
        } else if (!strcmp(o->key, "chunk_size")) {
            rc = sl_model_opt_int(o, sec, 10, 1L << 26, 0, &chunk);
            chunk_opt = o;
        } else if (!strcmp(o->key, "num_overlap")) {
            rc = sl_model_opt_int(o, sec, 1, 64, 0, &overlap);
        } else {
            rc = sl_model_opt_error(o, sec, "unknown option of model %s (known: instrumental, chunk_size, "
                                            "num_overlap)", name);
        }
        if (rc < 0)
            return rc;
    }
    if (!weights || !*weights)
        return sl_seterr(SL_ECONFIG, "key 'separation.weights': separation model '%s' needs a weights file "
                                     "(.safetensors from tools/convert_roformer.py)", name);
    if ((rc = rf_load(m->ctx, st, weights, arch)) < 0)
        return rc;
    st->instrumental = instrumental && st->N == 1;
    if (st->instrumental)
        snprintf(st->names[1], sizeof st->names[1], "%s", !strcmp(st->names[0], "vocals") ? "instrumental" : "residual");
    st->stft = (sl_stft_cfg){.n_fft = st->n_fft, .hop = st->hop, .center = 1, .pad = SL_PAD_REFLECT,
                             .normalized = st->normalized};
    float *w = malloc(sizeof(float) * (size_t)st->n_fft);
    if (!w)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", who);
    sl_window_hann(w, st->n_fft, st->win);
    rc = sl_model_upload_new(m->ctx, &st->window, w, (size_t)st->n_fft);
    if (!rc)
        rc = sl_op_sync(m->ctx);
    free(w);
    if (rc < 0)
        return rc;
    sl_sep_info *info = &m->info;
    info->name = arch == RF_BS ? "bs_roformer" : "mel_band_roformer";
    info->sample_rate = st->sample_rate;
    info->channels = st->S;
    info->n_sources = st->N + st->instrumental;
    /* inference as the reference's demix: the options, else the checkpoint's chunk_size and
     * num_overlap, else 8 s and 2 */
    if (!chunk)
        chunk = st->chunk_size >= 10 ? st->chunk_size : 8 * st->sample_rate;
    if (!overlap)
        overlap = st->num_overlap;
    if (overlap > chunk)
        return chunk_opt ? sl_model_opt_error(chunk_opt, sec, "chunk_size %d is shorter than num_overlap %d", chunk,
                                              overlap)
                         : sl_seterr(SL_ECONFIG, "%s: chunk_size %d is shorter than num_overlap %d", who, chunk,
                                     overlap);
    st->chunk_size = chunk;
    st->num_overlap = overlap;
    info->demix_chunk = (size_t)chunk;
    info->demix_overlap = overlap;
    info->segment_s = (double)chunk / st->sample_rate;
    info->overlap_s = info->segment_s - (double)(chunk / overlap) / st->sample_rate;
    for (int s = 0; s < info->n_sources; s++)
        info->sources[s] = st->names[s];
    snprintf(info->params, sizeof info->params,
             "dim=%d depth=%d heads=%d dim_head=%d bands=%d stems=%d n_fft=%d hop=%d%s%s chunk_size=%d "
             "num_overlap=%d%s",
             st->dim, st->depth, st->heads, st->dim_head, st->K, st->N, st->n_fft, st->hop,
             st->layers[0].wgate ? " gated" : "", st->zero_dc ? " zero_dc" : "", st->chunk_size, st->num_overlap,
             st->instrumental ? " +instrumental" : "");
    return 0;
}
