/* Embedding model "clap": the audio tower of LAION-CLAP (Wu, Chen et al. 2023,
 * the laion_clap package, clap_module/htsat.py + model.py), exactly as
 * CLAP_Module.get_audio_embedding_from_data computes it for a non-fusion model
 * such as the music checkpoint music_audioset_epoch_15_esc_90.14.pt (HTSAT-base):
 *
 *   mono 48 kHz -> int16 round trip (clip to [-1, 1], * 32767 truncated to
 *   int16, / 32767) -> repeat padding to clip_samples (10 s: the window
 *   repeated floor(clip / n) times, then zeros) -> STFT (n_fft 1024, hop 480,
 *   periodic Hann, centred, reflect) -> power -> 64 Slaney mel bands
 *   50..14000 Hz (the checkpoint's own melW) -> 10*log10(max(1e-10, x)) ->
 *   bn0 over the mel bins -> reshape_wav2img: the 1001 frames resampled to
 *   1024 by bicubic interpolation (torch, align_corners=True, A = -0.75,
 *   edge taps clamped), the time axis folded into freq_ratio = 4 rows of 256
 *   frames stacked over the mel axis (a 256 x 256 image) -> patch embedding
 *   (Conv2d 4x4 stride 4 = a GEMM over the 16 values of each patch, then
 *   LayerNorm) -> 4 Swin stages (depths 2, 2, 12, 2; widths 128..1024; heads
 *   4..32; window 8, every second block shifted by 4 with the -100 region
 *   mask; windows as large as the grid are unshifted) with patch merging
 *   between them -> LayerNorm -> mean over the 64 tokens (output_dict
 *   'embedding', 1024) -> audio_projection Linear + ReLU + Linear (512) ->
 *   L2 normalisation (F.normalize, eps 1e-12).
 *
 * In ops: the resampling, the folding and the patch extraction are ONE
 * row_gather (4 bicubic taps per patch value) followed by one GEMM; every
 * block runs in its own window order, reached from the previous block's order
 * by one row_gather whose table composes window_reverse, the reverse and the
 * next cyclic shift and window_partition (kernels/README.md, "Row gather");
 * window attention is sl_op_attention over the windows as sequences with the
 * relative position bias (+ the shift mask) as its additive bias; LayerNorm is
 * sl_op_norm, GELU the epilogue of fc1's GEMM, the residuals the GEMMs' add.
 *
 * Windows: the package embeds at most 10 s (a random crop of longer input);
 * stemline's runner cuts tracks into windows of embedding.window_seconds
 * (default 10 s) and averages them. A window longer than clip_samples is cut
 * to its first clip_samples here (deterministic where the package is random). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "clap_audio_impl.h"

static const sl_op_id clap_ops[] = {SL_OP_FRAME, SL_OP_RFFT, SL_OP_POWER,     SL_OP_MEL,       SL_OP_LOG_DB,
                                    SL_OP_AFFINE, SL_OP_GEMM, SL_OP_NORM,     SL_OP_ATTENTION, SL_OP_ROW_GATHER,
                                    SL_OP_AVG_POOL2D};

/* The int16 round trip and repeat padding of the package (training/data.py) into w[clip]. */
static void prepare_wave(const clap_state *st, const float *in, size_t n, float *w)
{
    const size_t clip = st->clip, m = n < clip ? n : clip;
    for (size_t i = 0; i < m; i++) {
        float x = in[i];
        x = isnan(x) ? 0.0f : (x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x));
        const int16_t q = (int16_t)(x * 32767.0f); /* float32 product, truncated as numpy's astype */
        w[i] = (float)((double)q / 32767.0);
    }
    size_t len = m;
    if (m < clip) {
        const size_t reps = clip / m;
        for (size_t r = 1; r < reps; r++)
            memcpy(w + r * m, w, m * sizeof(float));
        len = reps * m;
        memset(w + len, 0, (clip - len) * sizeof(float));
    }
}

typedef struct {
    float *wave, *f0, *f1, *x0, *x1, *t1, *qkv, *att, *hid, *pool, *e1, *e2;
} clap_bufs;

static int get_bufs(sl_emb_model *m, clap_state *st, clap_bufs *B)
{
    const size_t T = st->frames, nfft = (size_t)st->stft.n_fft, nb = nfft / 2 + 1;
    size_t front = T * (nfft + 2), lc = 0, lh = 0;
    if ((size_t)st->spec * (size_t)st->spec > front)
        front = (size_t)st->spec * (size_t)st->spec;
    for (int s = 0; s < st->n_stages; s++) {
        const clap_stage *S = &st->st[s];
        const size_t L = (size_t)S->H * (size_t)S->W;
        if (L * (size_t)S->dim > lc)
            lc = L * (size_t)S->dim;
        for (int b = 0; b < S->depth; b++)
            if (L * (size_t)S->blk[b].hidden > lh)
                lh = L * (size_t)S->blk[b].hidden;
    }
    (void)nb;
    const size_t sizes[12] = {st->clip, front, front, lc, lc, lc, 3 * lc, lc, lh,
                              (size_t)st->latent, (size_t)st->joint, (size_t)st->joint};
    float *p[12];
    int rc = sl_model_ws_get(m->ctx, &st->ws, 12, sizes, p);
    if (rc < 0)
        return rc;
    *B = (clap_bufs){p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11]};
    return 0;
}

/* y[L][n] = act(x[L][k] w^T + bias) (+ y when residual). */
static int linear(sl_op_ctx *ctx, size_t L, size_t n, size_t k, const float *x, const float *w, const float *bias,
                  sl_act act, float *y, int residual)
{
    sl_gemm_args g = {.batch = 1, .m = L, .n = n, .k = k, .x = x, .ldx = k, .w = w, .ldw = k, .bias = bias,
                      .act = act, .y = y, .ldy = n, .add = residual ? y : NULL, .ldadd = n};
    return sl_op_gemm(ctx, &g);
}

static int layer_norm(sl_op_ctx *ctx, size_t rows, size_t dim, const float *x, const float *g, const float *b,
                      float *y)
{
    sl_norm_args a = {.kind = SL_NORM_LAYER, .rows = rows, .dim = dim, .x = x, .ldx = dim, .gamma = g, .beta = b,
                      .eps = 1e-5f, .y = y, .ldy = dim};
    return sl_op_norm(ctx, &a);
}

static int gather(sl_op_ctx *ctx, size_t rows, size_t cols, size_t in_rows, int taps, const int32_t *idx,
                  const float *w, const float *x, float *y)
{
    sl_gather_args a = {.batch = 1, .rows = rows, .cols = cols, .in_rows = in_rows, .taps = taps, .idx = idx,
                        .w = w, .x = x, .ldx = cols, .y = y, .ldy = cols};
    return sl_op_row_gather(ctx, &a);
}

/* Downloads tokens x[L][C] held in the order pos (NULL: raster) into host[L][C] in raster order. */
static int dump_tokens(sl_op_ctx *ctx, const float *x, size_t L, size_t C, const int32_t *pos, float *host)
{
    if (!pos)
        return sl_op_download(ctx, host, x, L * C * sizeof(float));
    float *tmp = malloc(L * C * sizeof(float));
    if (!tmp)
        return sl_seterr(SL_ENOMEM, "clap: out of memory");
    int rc = sl_op_download(ctx, tmp, x, L * C * sizeof(float));
    for (size_t r = 0; !rc && r < L; r++)
        memcpy(host + (size_t)pos[r] * C, tmp + r * C, C * sizeof(float));
    free(tmp);
    return rc;
}

/* One Swin block on the tokens in *x (the other buffer *y is scratch; they swap when the block
 * re-orders the rows). */
static int swin_block(sl_op_ctx *ctx, const clap_stage *S, const clap_block *b, float **x, float **y,
                      const clap_bufs *B)
{
    const size_t L = (size_t)S->H * (size_t)S->W, C = (size_t)b->dim, N = b->n_tok;
    int rc = 0;
    if (b->idx) {
        rc = gather(ctx, L, C, L, 1, b->idx, NULL, *x, *y);
        float *t = *x;
        *x = *y;
        *y = t;
    }
    float *X = *x;
    if (!rc)
        rc = layer_norm(ctx, L, C, X, b->n1g, b->n1b, B->t1);
    if (!rc)
        rc = linear(ctx, L, 3 * C, C, B->t1, b->qkv_w, b->qkv_b, SL_ACT_NONE, B->qkv, 0);
    if (!rc) {
        const size_t hd = C / (size_t)b->heads;
        sl_attention_args a = {.batch = b->n_win, .tq = N, .tk = N, .heads = b->heads, .dim_head = (int)hd,
                               .scale = (float)(1.0 / sqrt((double)hd)),
                               .q = B->qkv, .ldq = 3 * C, .stride_q = N * 3 * C,
                               .k = B->qkv + C, .ldk = 3 * C, .stride_k = N * 3 * C,
                               .v = B->qkv + 2 * C, .ldv = 3 * C, .stride_v = N * 3 * C,
                               .bias = b->bias, .ld_bias = N, .stride_bias_h = N * N,
                               .stride_bias_b = b->shift ? (size_t)b->heads * N * N : 0,
                               .out = B->att, .ldo = C, .stride_o = N * C};
        rc = sl_op_attention(ctx, &a);
    }
    if (!rc)
        rc = linear(ctx, L, C, C, B->att, b->proj_w, b->proj_b, SL_ACT_NONE, X, 1);
    if (!rc)
        rc = layer_norm(ctx, L, C, X, b->n2g, b->n2b, B->t1);
    if (!rc)
        rc = linear(ctx, L, (size_t)b->hidden, C, B->t1, b->fc1_w, b->fc1_b, SL_ACT_GELU, B->hid, 0);
    if (!rc)
        rc = linear(ctx, L, C, (size_t)b->hidden, B->hid, b->fc2_w, b->fc2_b, SL_ACT_NONE, X, 1);
    return rc;
}

static int clap_forward(sl_emb_model *m, const float *in, size_t n, float *vec, sl_clap_audio_stages *sg)
{
    clap_state *st = m->impl;
    sl_op_ctx *ctx = m->ctx;
    if (n == 0)
        return sl_seterr(SL_EEMPTY, "clap: empty input");
    clap_bufs B;
    int rc = get_bufs(m, st, &B);
    if (rc < 0)
        return rc;
    prepare_wave(st, in, n, st->host_wave);
    const size_t T = st->frames, nb = (size_t)st->stft.n_fft / 2 + 1, M = (size_t)st->n_mels;
    const size_t S = (size_t)st->spec, G = (size_t)st->grid, P = (size_t)st->patch;
    rc = sl_op_upload(ctx, B.wave, st->host_wave, st->clip * sizeof(float));
    /* front end: frames f0, spectrum f1, power f0, log-mel f1 [T][M] */
    if (!rc)
        rc = sl_op_frame(ctx, &st->stft, B.wave, 1, st->clip, 0, T, st->window, B.f0);
    if (!rc)
        rc = sl_op_rfft(ctx, st->stft.n_fft, T, B.f0, B.f1, 1.0f);
    if (!rc)
        rc = sl_op_power(ctx, T * nb, B.f1, B.f0);
    if (!rc)
        rc = sl_op_mel(ctx, T, (int)nb, st->n_mels, st->fb, B.f0, B.f1);
    if (!rc)
        rc = sl_op_log_db(ctx, 1, T * M, B.f1, 1e-10f, 0.0f, B.f1);
    if (!rc && sg && sg->logmel)
        rc = sl_op_download(ctx, sg->logmel, B.f1, T * M * sizeof(float));
    if (!rc) {
        sl_affine_args a = {.batch = 1, .rows = T, .cols = M, .x = B.f1, .ldx = M, .add = st->bn0_add,
                            .mul = st->bn0_mul, .act = SL_ACT_NONE, .y = B.f1, .ldy = M};
        rc = sl_op_affine(ctx, &a);
    }
    if (!rc && sg && sg->image) { /* the image itself is never formed otherwise */
        int32_t *idx = malloc(S * S * 4 * sizeof *idx), *didx = NULL;
        float *w = malloc(S * S * 4 * sizeof *w), *dw = NULL;
        rc = idx && w ? 0 : sl_seterr(SL_ENOMEM, "clap: out of memory");
        if (!rc) {
            sl_clap_audio_taps(st, 1, idx, w);
            rc = sl_op_alloc(ctx, (void **)&didx, S * S * 4 * sizeof *idx);
        }
        if (!rc)
            rc = sl_op_upload(ctx, didx, idx, S * S * 4 * sizeof *idx);
        if (!rc)
            rc = sl_model_upload_new(ctx, &dw, w, S * S * 4);
        if (!rc)
            rc = gather(ctx, S * S, 1, T * M, 4, didx, dw, B.f1, B.f0);
        if (!rc)
            rc = sl_op_download(ctx, sg->image, B.f0, S * S * sizeof(float));
        sl_op_free(ctx, didx);
        sl_op_free(ctx, dw);
        free(idx);
        free(w);
    }
    /* patches [G*G][P*P] in f0, embedded into x0 [G*G][E] */
    const size_t L0 = G * G, E = (size_t)st->embed;
    if (!rc)
        rc = gather(ctx, L0 * P * P, 1, T * M, 4, st->pe_idx, st->pe_tap, B.f1, B.f0);
    if (!rc)
        rc = linear(ctx, L0, E, P * P, B.f0, st->pe_w, st->pe_b, SL_ACT_NONE, B.x0, 0);
    if (!rc)
        rc = layer_norm(ctx, L0, E, B.x0, st->pe_ng, st->pe_nb, B.x0);
    if (!rc && sg && sg->patch)
        rc = sl_op_download(ctx, sg->patch, B.x0, L0 * E * sizeof(float));
    float *x = B.x0, *y = B.x1;
    const int32_t *pos = NULL; /* the order of the rows of x (NULL: raster) */
    for (int s = 0; s < st->n_stages && !rc; s++) {
        const clap_stage *Sg = &st->st[s];
        const size_t L = (size_t)Sg->H * (size_t)Sg->W, C = (size_t)Sg->dim;
        for (int b = 0; b < Sg->depth && !rc; b++) {
            rc = swin_block(ctx, Sg, &Sg->blk[b], &x, &y, &B);
            pos = Sg->blk[b].pos;
            if (!rc && sg && s == 0 && sg->blocks && (size_t)b < sg->n_blocks && sg->blocks[b])
                rc = dump_tokens(ctx, x, L, C, pos, sg->blocks[b]);
        }
        if (!rc && Sg->m_idx) { /* patch merging: [L/4][4C] -> LayerNorm -> [L/4][2C] */
            rc = gather(ctx, L, C, L, 1, Sg->m_idx, NULL, x, B.att);
            if (!rc)
                rc = layer_norm(ctx, L / 4, 4 * C, B.att, Sg->m_g, Sg->m_b, B.t1);
            if (!rc)
                rc = linear(ctx, L / 4, 2 * C, 4 * C, B.t1, Sg->m_w, NULL, SL_ACT_NONE, x, 0);
            pos = NULL;
        }
        if (!rc && sg && sg->stages && sg->stages[s]) {
            const size_t Lo = Sg->m_idx ? L / 4 : L, Co = Sg->m_idx ? 2 * C : C;
            rc = dump_tokens(ctx, x, Lo, Co, pos, sg->stages[s]);
        }
    }
    /* final norm, mean over the tokens, projection */
    const clap_stage *last = &st->st[st->n_stages - 1];
    const size_t Ll = (size_t)last->H * (size_t)last->W, Cl = (size_t)st->latent, J = (size_t)st->joint;
    if (!rc)
        rc = layer_norm(ctx, Ll, Cl, x, st->norm_g, st->norm_b, B.t1);
    if (!rc)
        rc = sl_op_avg_pool2d(ctx, 1, (int)Ll, (int)Cl, (int)Ll, 1, B.t1, B.pool);
    if (!rc && sg && sg->latent)
        rc = sl_op_download(ctx, sg->latent, B.pool, Cl * sizeof(float));
    if (!rc)
        rc = linear(ctx, 1, J, Cl, B.pool, st->p1_w, st->p1_b, SL_ACT_RELU, B.e1, 0);
    if (!rc)
        rc = linear(ctx, 1, J, J, B.e1, st->p2_w, st->p2_b, SL_ACT_NONE, B.e2, 0);
    if (!rc)
        rc = sl_op_download(ctx, vec, B.e2, J * sizeof(float));
    if (!rc) {
        double s2 = 0;
        for (size_t i = 0; i < J; i++)
            s2 += (double)vec[i] * vec[i];
        const double nrm = fmax(sqrt(s2), 1e-12);
        for (size_t i = 0; i < J; i++)
            vec[i] = (float)(vec[i] / nrm);
    }
    if (sg)
        sg->frames = T;
    return rc;
}

static int clap_run(sl_emb_model *m, const float *const *in, size_t n, float *vec)
{
    return clap_forward(m, in[0], n, vec, NULL);
}

int sl_clap_audio_run_stages(sl_emb_model *m, const float *in, size_t n, float *vec, sl_clap_audio_stages *sg)
{
    return clap_forward(m, in, n, vec, sg);
}

int sl_clap_audio_geometry(const sl_emb_model *m, sl_clap_audio_geom *g)
{
    const clap_state *st = m->impl;
    memset(g, 0, sizeof *g);
    g->clip = st->clip;
    g->frames = st->frames;
    g->n_mels = st->n_mels;
    g->spec = st->spec;
    g->grid = st->grid;
    g->embed = st->embed;
    g->n_stages = st->n_stages;
    g->first_depth = st->st[0].depth;
    for (int s = 0; s < st->n_stages; s++) {
        const clap_stage *S = &st->st[s];
        const int merged = S->m_idx != NULL;
        g->tokens[s] = (size_t)(S->H >> merged) * (size_t)(S->W >> merged);
        g->dims[s] = S->dim << merged;
    }
    g->latent = st->latent;
    g->dim = st->joint;
    return 0;
}

static void clap_close(sl_emb_model *m)
{
    clap_state *st = m->impl;
    if (!st)
        return;
    sl_clap_audio_unload(m, st);
    free(st);
    m->impl = NULL;
}

int sl_clap_audio_init(sl_emb_model *m, const char *weights, const sl_cfg_opts *opts)
{
    if (!weights || !*weights)
        return sl_seterr(SL_ECONFIG, "embedding model clap needs weights: set embedding.weights to a .safetensors "
                                     "file (tools/convert_clap.py from music_audioset_epoch_15_esc_90.14.pt)");
    if (opts && opts->n)
        return sl_model_opt_error(&opts->items[0], "embedding", "unknown option of model clap (it takes none: its "
                                                               "settings come from the weights file)");
    int rc = sl_op_require(m->ctx, clap_ops, sizeof clap_ops / sizeof clap_ops[0], "embedding model clap");
    if (rc < 0)
        return rc;
    clap_state *st = calloc(1, sizeof *st);
    if (!st)
        return sl_seterr(SL_ENOMEM, "clap: out of memory");
    m->impl = st;
    m->close = clap_close;
    m->run = clap_run;
    if ((rc = sl_clap_audio_load(m, st, weights)) < 0)
        return rc;
    float *w = malloc(sizeof(float) * (size_t)st->stft.n_fft);
    st->host_wave = malloc(sizeof(float) * st->clip);
    if (!w || !st->host_wave) {
        free(w);
        return sl_seterr(SL_ENOMEM, "clap: out of memory");
    }
    rc = sl_window_hann(w, st->stft.n_fft, st->stft.n_fft);
    if (!rc)
        rc = sl_model_upload_new(m->ctx, &st->window, w, (size_t)st->stft.n_fft);
    if (!rc)
        rc = sl_op_sync(m->ctx);
    free(w);
    if (rc < 0)
        return rc;
    sl_emb_info *info = &m->info;
    info->name = "clap";
    info->sample_rate = st->sr;
    info->channels = 1;
    info->dim = st->joint;
    info->n_scores = 0;
    char depths[64] = "";
    for (int s = 0, o = 0; s < st->n_stages && o < (int)sizeof depths - 8; s++)
        o += snprintf(depths + o, sizeof depths - (size_t)o, "%s%d", s ? "," : "", st->st[s].depth);
    snprintf(info->params, sizeof info->params,
             "sample_rate=%d clip_samples=%zu int16_roundtrip=1 pad=repeatpad n_fft=%d hop=%d window=hann center=1 "
             "pad_mode=reflect n_mels=%d mel=checkpoint amin=1e-10 spec_size=%d patch=%d embed=%d depths=%s "
             "window=%d latent=%d dim=%d normalized=1",
             st->sr, st->clip, st->stft.n_fft, st->stft.hop, st->n_mels, st->spec, st->patch, st->embed, depths,
             st->st[0].blk[0].ws, st->latent, st->joint);
    return 0;
}
