/* Loading the CLAP audio tower (HTSAT + projection) from a safetensors file
 * with the laion_clap state-dict names (a leading "module." already stripped):
 * audio_branch.logmel_extractor.melW, audio_branch.bn0.*,
 * audio_branch.patch_embed.{proj,norm}.*, audio_branch.layers.S.blocks.B.*,
 * audio_branch.layers.S.downsample.*, audio_branch.norm.*, audio_projection.{0,2}.*.
 * Everything structural comes from the tensor shapes: mel bins and n_fft from
 * melW, widths, depths, heads, windows and MLP sizes from each block's tensors,
 * the patch size from the patch convolution. What shapes cannot tell comes from
 * the metadata with HTSAT-base's audio_cfg as default: sample_rate 48000,
 * hop_size 480, clip_samples 480000, spec_size 256. The tables the forward
 * needs (window orders, relative position biases with the shifted-window masks,
 * patch merging's 2x2 gather, the bicubic patch taps) are built here once. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../io/safetensors.h"
#include "clap_audio_impl.h"

#define AB "audio_branch."
#define BN_EPS 1e-5

typedef struct {
    sl_emb_model *m;
    clap_state *st;
    const sl_st_file *f;
    const char *path;
} loader;

static int lerr(const loader *L, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lerr(const loader *L, int rc, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sl_seterr(rc, "embedding model clap: %s: %s", L->path, msg);
}

/* Tensor name (printf-formatted) as float32 with the given dims (-1 = any; ndim entries). */
static const sl_st_tensor *vget(const loader *L, int ndim, const int64_t *shape, const char *fmt, va_list ap)
{
    return sl_st_vtake_f32(L->f, NULL, "embedding model clap", ndim, shape, fmt, ap);
}

static const sl_st_tensor *get(const loader *L, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const sl_st_tensor *get(const loader *L, int ndim, const int64_t *shape, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const sl_st_tensor *t = vget(L, ndim, shape, fmt, ap);
    va_end(ap);
    return t;
}

/* get() of a 1-D tensor of n values (n < 0: any), uploaded to *dst. */
static int up1(const loader *L, float **dst, int64_t n, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int up1(const loader *L, float **dst, int64_t n, const char *fmt, ...)
{
    const int64_t shape[1] = {n};
    va_list ap;
    va_start(ap, fmt);
    const sl_st_tensor *t = vget(L, 1, shape, fmt, ap);
    va_end(ap);
    if (!t)
        return SL_EFORMAT;
    return sl_model_upload_new(L->m->ctx, dst, (const float *)t->data, (size_t)t->shape[0]);
}

/* A Linear weight [rows][cols] uploaded to *dst and declared fixed (sl_op_mark_fixed: the
 * CPU backend packs it once for its GEMM kernel instead of on every call). */
static int up2(const loader *L, float **dst, int64_t rows, int64_t cols, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int up2(const loader *L, float **dst, int64_t rows, int64_t cols, const char *fmt, ...)
{
    const int64_t shape[2] = {rows, cols};
    va_list ap;
    va_start(ap, fmt);
    const sl_st_tensor *t = vget(L, 2, shape, fmt, ap);
    va_end(ap);
    if (!t)
        return SL_EFORMAT;
    int rc = sl_model_upload_new(L->m->ctx, dst, (const float *)t->data, (size_t)(rows * cols));
    return rc < 0 ? rc : sl_op_mark_fixed(L->m->ctx, *dst, (size_t)(rows * cols) * sizeof(float));
}

static int up_i32(sl_op_ctx *ctx, int32_t **dst, const int32_t *src, size_t n)
{
    int rc = sl_op_alloc(ctx, (void **)dst, n * sizeof(int32_t));
    if (!rc)
        rc = sl_op_upload(ctx, *dst, src, n * sizeof(int32_t));
    return rc;
}

static int meta_num(const loader *L, const char *key, double lo, double hi, double def, double *out)
{
    const char *v = sl_st_meta(L->f, key);
    if (!v) {
        *out = def;
        return 0;
    }
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !isfinite(x) || x < lo || x > hi || x != floor(x))
        return lerr(L, SL_EFORMAT, "metadata '%s' is '%s', expected a whole number %g..%g", key, v, lo, hi);
    *out = x;
    return 0;
}

static int has_prefix_key(const sl_st_file *f, const char *part)
{
    for (size_t i = 0; i < sl_st_count(f); i++)
        if (strstr(sl_st_at(f, i)->name, part))
            return 1;
    return 0;
}

/* The variant checks: HTSAT, no fusion, the audio projection present. */
static int check_variant(const loader *L)
{
    const char *arch = sl_st_meta(L->f, "stemline.arch");
    if (arch && strncmp(arch, "clap", 4) != 0)
        return lerr(L, SL_EFORMAT, "metadata stemline.arch is '%s', expected 'clap'", arch);
    if (has_prefix_key(L->f, AB "fusion_model") || has_prefix_key(L->f, AB "patch_embed.mel_conv2d") ||
        has_prefix_key(L->f, AB "mel_conv1d"))
        return lerr(L, SL_EFORMAT, "a fusion checkpoint (fusion_model / mel_conv tensors): only the non-fusion "
                                   "CLAP models are supported (e.g. music_audioset_epoch_15_esc_90.14.pt)");
    if (has_prefix_key(L->f, AB "conv_block1."))
        return lerr(L, SL_EFORMAT, "the audio encoder is PANN (Cnn14-style), not HTSAT: not supported");
    if (!sl_st_find(L->f, AB "patch_embed.proj.weight") || !sl_st_find(L->f, "audio_projection.0.weight"))
        return lerr(L, SL_EFORMAT, "no " AB "patch_embed.proj.weight / audio_projection.0.weight: not a CLAP "
                                   "HTSAT audio tower (laion_clap state-dict names expected)");
    return 0;
}

static double cubic1(double x, double A) { return ((A + 2) * x - (A + 3)) * x * x + 1; }
static double cubic2(double x, double A) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; }

void sl_clap_audio_taps(const clap_state *st, int image, int32_t *idx, float *w)
{
    const double A = -0.75;
    const size_t T = st->frames, To = st->target_t, M = (size_t)st->n_mels, S = (size_t)st->spec;
    const size_t P = (size_t)st->patch, G = (size_t)st->grid;
    const double scale = To > 1 ? (double)(T - 1) / (double)(To - 1) : 0.0;
    for (size_t e = 0; e < S * S; e++) {
        size_t r, c; /* image row and column of value e */
        if (image) {
            r = e / S;
            c = e % S;
        } else {     /* patch p = (h, w) of the grid, element (i, j) of the patch */
            const size_t p = e / (P * P), ij = e % (P * P);
            r = (p / G) * P + ij / P;
            c = (p % G) * P + ij % P;
        }
        /* reshape_wav2img: image row q*M + f, column c = resampled frame q*S + c, mel f */
        const size_t q = r / M, f = r % M, t_out = q * S + c;
        const double real = scale * (double)t_out, i0 = floor(real), t = real - i0;
        const double wt[4] = {cubic2(t + 1, A), cubic1(t, A), cubic1(1 - t, A), cubic2(2 - t, A)};
        for (int k = 0; k < 4; k++) {
            long ti = (long)i0 - 1 + k;
            ti = ti < 0 ? 0 : (ti > (long)T - 1 ? (long)T - 1 : ti);
            idx[e * 4 + (size_t)k] = (int32_t)((size_t)ti * M + f);
            w[e * 4 + (size_t)k] = (float)wt[k];
        }
    }
}

/* Front end and patch embedding. */
static int load_front(const loader *L)
{
    clap_state *st = L->st;
    int rc;
    const int64_t any2[2] = {-1, -1};
    const sl_st_tensor *mel = get(L, 2, any2, AB "logmel_extractor.melW");
    if (!mel)
        return SL_EFORMAT;
    const int64_t nb = mel->shape[0];
    st->n_mels = (int)mel->shape[1];
    if (nb < 2 || nb > 32769 || st->n_mels < 1 || st->n_mels > 1024)
        return lerr(L, SL_EFORMAT, "tensor " AB "logmel_extractor.melW: %lld frequency bins, %d mels", (long long)nb,
                    st->n_mels);
    double sr, hop, clip, spec, nfft;
    if ((rc = meta_num(L, "sample_rate", 8000, 192000, 48000, &sr)) < 0 ||
        (rc = meta_num(L, "hop_size", 1, 65536, 480, &hop)) < 0 ||
        (rc = meta_num(L, "clip_samples", 1024, 1e8, 480000, &clip)) < 0 ||
        (rc = meta_num(L, "spec_size", 4, 4096, 256, &spec)) < 0 ||
        (rc = meta_num(L, "window_size", 2, 65536, (double)(nb - 1) * 2, &nfft)) < 0)
        return rc;
    if ((int64_t)nfft / 2 + 1 != nb)
        return lerr(L, SL_EFORMAT, "metadata window_size %g does not match melW's %lld bins", nfft, (long long)nb);
    st->sr = (int)sr;
    st->clip = (size_t)clip;
    st->spec = (int)spec;
    st->stft = (sl_stft_cfg){.n_fft = (int)nfft, .hop = (int)hop, .center = 1, .pad = SL_PAD_REFLECT, .normalized = 0};
    if (hop > nfft || st->clip <= (size_t)nfft / 2)
        return lerr(L, SL_EFORMAT, "hop_size %g or clip_samples %g out of range for window_size %g", hop, clip, nfft);
    st->frames = sl_stft_n_frames(&st->stft, st->clip);
    const int ratio = st->spec / st->n_mels; /* HTSAT's freq_ratio */
    if (ratio < 1 || st->spec % st->n_mels)
        return lerr(L, SL_EFORMAT, "spec_size %d is not a multiple of the %d mel bins", st->spec, st->n_mels);
    st->target_t = (size_t)st->spec * (size_t)ratio;
    if (st->frames > st->target_t)
        return lerr(L, SL_EFORMAT, "clip_samples %zu give %zu frames, more than spec_size * freq_ratio = %zu",
                    st->clip, st->frames, st->target_t);
    /* melW [bins][mels] -> filterbank [mels][bins] */
    float *fb = malloc(sizeof(float) * (size_t)nb * (size_t)st->n_mels);
    if (!fb)
        return sl_seterr(SL_ENOMEM, "clap: out of memory");
    const float *mw = (const float *)mel->data;
    for (int64_t b = 0; b < nb; b++)
        for (int k = 0; k < st->n_mels; k++)
            fb[(size_t)k * (size_t)nb + (size_t)b] = mw[(size_t)b * (size_t)st->n_mels + (size_t)k];
    rc = sl_model_upload_new(L->m->ctx, &st->fb, fb, (size_t)nb * (size_t)st->n_mels);
    free(fb);
    if (rc < 0)
        return rc;
    /* bn0 (eval): y = (x + beta/s - mean) * s, s = gamma / sqrt(var + eps) */
    static const char *bnp[4] = {AB "bn0.weight", AB "bn0.bias", AB "bn0.running_mean", AB "bn0.running_var"};
    const float *v[4];
    const int64_t nm[1] = {st->n_mels};
    for (int i = 0; i < 4; i++) {
        const sl_st_tensor *t = get(L, 1, nm, "%s", bnp[i]);
        if (!t)
            return SL_EFORMAT;
        v[i] = (const float *)t->data;
    }
    double s[1024], t[1024];
    float add[1024], mul[1024];
    sl_model_bn_fold(v, st->n_mels, BN_EPS, s, t);
    for (int i = 0; i < st->n_mels; i++) {
        if (s[i] == 0.0)
            return lerr(L, SL_EFORMAT, AB "bn0.weight[%d] is 0 (cannot fold bn0)", i);
        add[i] = (float)((double)v[1][i] / s[i] - (double)v[2][i]);
        mul[i] = (float)s[i];
    }
    if ((rc = sl_model_upload_new(L->m->ctx, &st->bn0_add, add, (size_t)st->n_mels)) < 0 ||
        (rc = sl_model_upload_new(L->m->ctx, &st->bn0_mul, mul, (size_t)st->n_mels)) < 0)
        return rc;
    /* patch embedding: Conv2d(1, E, P, stride P) + LayerNorm */
    const int64_t pshape[4] = {-1, 1, -1, -1};
    const sl_st_tensor *pw = get(L, 4, pshape, AB "patch_embed.proj.weight");
    if (!pw)
        return SL_EFORMAT;
    st->embed = (int)pw->shape[0];
    st->patch = (int)pw->shape[2];
    if (pw->shape[3] != pw->shape[2] || st->patch < 1 || st->spec % st->patch || st->embed < 1)
        return lerr(L, SL_EFORMAT, "tensor " AB "patch_embed.proj.weight: a square patch dividing spec_size %d "
                                   "expected (size %lld)", st->spec, (long long)pw->shape[2]);
    st->grid = st->spec / st->patch;
    const size_t pp = (size_t)st->patch * (size_t)st->patch;
    if ((rc = sl_model_upload_new(L->m->ctx, &st->pe_w, (const float *)pw->data, (size_t)st->embed * pp)) < 0 ||
        (rc = sl_op_mark_fixed(L->m->ctx, st->pe_w, (size_t)st->embed * pp * sizeof(float))) < 0 ||
        (rc = up1(L, &st->pe_b, st->embed, AB "patch_embed.proj.bias")) < 0 ||
        (rc = up1(L, &st->pe_ng, st->embed, AB "patch_embed.norm.weight")) < 0 ||
        (rc = up1(L, &st->pe_nb, st->embed, AB "patch_embed.norm.bias")) < 0)
        return rc;
    const size_t nv = (size_t)st->spec * (size_t)st->spec;
    int32_t *idx = malloc(nv * 4 * sizeof *idx);
    float *w = malloc(nv * 4 * sizeof *w);
    rc = idx && w ? 0 : sl_seterr(SL_ENOMEM, "clap: out of memory");
    if (!rc)
        sl_clap_audio_taps(st, 0, idx, w);
    if (!rc)
        rc = up_i32(L->m->ctx, &st->pe_idx, idx, nv * 4);
    if (!rc)
        rc = sl_model_upload_new(L->m->ctx, &st->pe_tap, w, nv * 4);
    free(idx);
    free(w);
    return rc;
}

/* Window order, bias and gather table of block b of stage s; *cur: the previous order (host,
 * updated to this block's order, which the block keeps in b->pos). */
static int build_block(const loader *L, clap_stage *S, clap_block *b, int32_t *inv)
{
    const int H = S->H, W = S->W, ws = b->ws, sh = b->shift;
    const size_t N = b->n_tok, nw = b->n_win, Lt = (size_t)H * W;
    int32_t *pos = b->pos;
    for (int wh = 0; wh < H / ws; wh++)
        for (int ww = 0; ww < W / ws; ww++)
            for (int i = 0; i < ws; i++)
                for (int j = 0; j < ws; j++) {
                    const size_t r = ((size_t)wh * (size_t)(W / ws) + (size_t)ww) * N + (size_t)i * ws + (size_t)j;
                    pos[r] = ((wh * ws + i + sh) % H) * W + (ww * ws + j + sh) % W;
                }
    /* the gather from the previous order (inv: position -> row there) */
    int same = 1;
    for (size_t r = 0; r < Lt && same; r++)
        same = inv[pos[r]] == (int32_t)r;
    int rc = 0;
    if (!same) {
        int32_t *idx = malloc(Lt * sizeof *idx);
        if (!idx)
            return sl_seterr(SL_ENOMEM, "clap: out of memory");
        for (size_t r = 0; r < Lt; r++)
            idx[r] = inv[pos[r]];
        rc = up_i32(L->m->ctx, &b->idx, idx, Lt);
        free(idx);
    }
    for (size_t r = 0; r < Lt; r++)
        inv[pos[r]] = (int32_t)r;
    if (rc < 0)
        return rc;
    /* relative position bias (+ the shifted windows' -100 mask) */
    const int64_t tshape[2] = {(int64_t)(2 * ws - 1) * (2 * ws - 1), b->heads};
    char name[160];
    snprintf(name, sizeof name, AB "layers.%d.blocks.%d.attn.relative_position_bias_table", (int)(S - L->st->st),
             (int)(b - S->blk));
    const sl_st_tensor *tab = sl_st_require_f32(L->f, name, 2, tshape);
    if (!tab)
        return lerr(L, SL_EFORMAT, "%s", sl_lasterr());
    const float *tv = (const float *)tab->data;
    const size_t nb = sh ? nw : 1, nh = (size_t)b->heads;
    float *bias = malloc(nb * nh * N * N * sizeof *bias);
    if (!bias)
        return sl_seterr(SL_ENOMEM, "clap: out of memory");
    for (size_t w = 0; w < nb; w++) {
        const int wh = (int)(w / (size_t)(W / ws)), ww = (int)(w % (size_t)(W / ws));
        for (size_t i = 0; i < N; i++)
            for (size_t j = 0; j < N; j++) {
                const int hi = (int)i / ws, wi = (int)i % ws, hj = (int)j / ws, wj = (int)j % ws;
                const size_t rel = (size_t)((hi - hj + ws - 1) * (2 * ws - 1) + (wi - wj + ws - 1));
                float mask = 0.0f;
                if (sh) { /* region labels in the rolled frame, as the img_mask slices */
                    const int a0 = wh * ws + hi, a1 = ww * ws + wi, b0 = wh * ws + hj, b1 = ww * ws + wj;
#define REG(x, n) ((x) < (n) - ws ? 0 : ((x) < (n) - sh ? 1 : 2))
                    if (REG(a0, H) * 3 + REG(a1, W) != REG(b0, H) * 3 + REG(b1, W))
                        mask = -100.0f;
#undef REG
                }
                for (size_t h = 0; h < nh; h++)
                    bias[((w * nh + h) * N + i) * N + j] = tv[rel * nh + h] + mask;
            }
    }
    rc = sl_model_upload_new(L->m->ctx, &b->bias, bias, nb * nh * N * N);
    free(bias);
    return rc;
}

static int load_block(const loader *L, clap_stage *S, int si, int bi, int32_t *inv)
{
    clap_block *b = &S->blk[bi];
    const int64_t C = S->dim;
    const int64_t any2[2] = {-1, -1};
#define NAME(suffix) AB "layers.%d.blocks.%d." suffix
    const sl_st_tensor *tab = get(L, 2, any2, NAME("attn.relative_position_bias_table"), si, bi);
    const sl_st_tensor *fc1 = tab ? get(L, 2, any2, NAME("mlp.fc1.weight"), si, bi) : NULL;
    if (!tab || !fc1)
        return SL_EFORMAT;
    b->dim = S->dim;
    b->heads = (int)tab->shape[1];
    b->hidden = (int)fc1->shape[0];
    const int side = (int)lround(sqrt((double)tab->shape[0]));
    b->ws = (side + 1) / 2;
    if (side * side != tab->shape[0] || side % 2 == 0 || b->heads < 1 || C % b->heads || C / b->heads > 128 ||
        fc1->shape[1] != C || b->hidden < 1)
        return lerr(L, SL_EFORMAT, "block %d.%d: inconsistent shapes (heads, window or MLP)", si, bi);
    /* HTSAT: a window as large as the grid is the whole grid, unshifted */
    const int win_global = L->st->st[0].blk[0].ws;
    b->shift = (bi % 2 && (S->H > win_global && S->W > win_global)) ? win_global / 2 : 0;
    if (S->H % b->ws || S->W % b->ws || (b->ws != win_global && b->ws != (S->H < S->W ? S->H : S->W)))
        return lerr(L, SL_EFORMAT, "block %d.%d: window %d does not tile the %dx%d grid", si, bi, b->ws, S->H, S->W);
    b->n_tok = (size_t)b->ws * (size_t)b->ws;
    b->n_win = (size_t)(S->H / b->ws) * (size_t)(S->W / b->ws);
    int rc;
    if ((rc = up1(L, &b->n1g, C, NAME("norm1.weight"), si, bi)) < 0 ||
        (rc = up1(L, &b->n1b, C, NAME("norm1.bias"), si, bi)) < 0 ||
        (rc = up2(L, &b->qkv_w, 3 * C, C, NAME("attn.qkv.weight"), si, bi)) < 0 ||
        (rc = up1(L, &b->qkv_b, 3 * C, NAME("attn.qkv.bias"), si, bi)) < 0 ||
        (rc = up2(L, &b->proj_w, C, C, NAME("attn.proj.weight"), si, bi)) < 0 ||
        (rc = up1(L, &b->proj_b, C, NAME("attn.proj.bias"), si, bi)) < 0 ||
        (rc = up1(L, &b->n2g, C, NAME("norm2.weight"), si, bi)) < 0 ||
        (rc = up1(L, &b->n2b, C, NAME("norm2.bias"), si, bi)) < 0 ||
        (rc = up2(L, &b->fc1_w, b->hidden, C, NAME("mlp.fc1.weight"), si, bi)) < 0 ||
        (rc = up1(L, &b->fc1_b, b->hidden, NAME("mlp.fc1.bias"), si, bi)) < 0 ||
        (rc = up2(L, &b->fc2_w, C, b->hidden, NAME("mlp.fc2.weight"), si, bi)) < 0 ||
        (rc = up1(L, &b->fc2_b, C, NAME("mlp.fc2.bias"), si, bi)) < 0)
        return rc;
#undef NAME
    b->pos = malloc((size_t)S->H * (size_t)S->W * sizeof *b->pos);
    if (!b->pos)
        return sl_seterr(SL_ENOMEM, "clap: out of memory");
    return build_block(L, S, b, inv);
}

/* Patch merging of stage S (2x2 neighbours x0, x1, x2, x3 = (0,0), (1,0), (0,1), (1,1)). */
static int load_merge(const loader *L, clap_stage *S, int si, const int32_t *inv)
{
    const int H = S->H, W = S->W;
    const size_t Lt = (size_t)H * W;
    if (H % 2 || W % 2)
        return lerr(L, SL_EFORMAT, "stage %d: patch merging of an odd %dx%d grid", si, H, W);
    int32_t *idx = malloc(Lt * sizeof *idx);
    if (!idx)
        return sl_seterr(SL_ENOMEM, "clap: out of memory");
    static const int dh[4] = {0, 1, 0, 1}, dw[4] = {0, 0, 1, 1};
    for (int h2 = 0; h2 < H / 2; h2++)
        for (int w2 = 0; w2 < W / 2; w2++)
            for (int k = 0; k < 4; k++)
                idx[((size_t)h2 * (size_t)(W / 2) + (size_t)w2) * 4 + (size_t)k] = inv[(2 * h2 + dh[k]) * W + 2 * w2 + dw[k]];
    int rc = up_i32(L->m->ctx, &S->m_idx, idx, Lt);
    free(idx);
    const int64_t C = S->dim;
    if (!rc)
        rc = up1(L, &S->m_g, 4 * C, AB "layers.%d.downsample.norm.weight", si);
    if (!rc)
        rc = up1(L, &S->m_b, 4 * C, AB "layers.%d.downsample.norm.bias", si);
    if (!rc)
        rc = up2(L, &S->m_w, 2 * C, 4 * C, AB "layers.%d.downsample.reduction.weight", si);
    return rc;
}

static int load_stages(const loader *L)
{
    clap_state *st = L->st;
    char name[160];
    int n = 0;
    for (; n <= CLAP_MAX_STAGES; n++) {
        snprintf(name, sizeof name, AB "layers.%d.blocks.0.norm1.weight", n);
        if (!sl_st_find(L->f, name))
            break;
    }
    if (n < 1 || n > CLAP_MAX_STAGES)
        return lerr(L, SL_EFORMAT, AB "layers.N: %d Swin stages (1..%d expected)", n, CLAP_MAX_STAGES);
    st->n_stages = n;
    int32_t *inv = malloc((size_t)st->grid * (size_t)st->grid * sizeof *inv);
    if (!inv)
        return sl_seterr(SL_ENOMEM, "clap: out of memory");
    for (int i = 0; i < st->grid * st->grid; i++)
        inv[i] = i; /* the patch embedding's raster order */
    int rc = 0;
    for (int s = 0; s < n && !rc; s++) {
        clap_stage *S = &st->st[s];
        S->H = S->W = st->grid >> s;
        S->dim = st->embed << s;
        if (S->H < 1 || (st->grid >> s) << s != st->grid) {
            rc = lerr(L, SL_EFORMAT, "the %dx%d patch grid cannot be halved %d times", st->grid, st->grid, s);
            break;
        }
        while (S->depth < 64) {
            snprintf(name, sizeof name, AB "layers.%d.blocks.%d.norm1.weight", s, S->depth);
            if (!sl_st_find(L->f, name))
                break;
            S->depth++;
        }
        S->blk = calloc((size_t)S->depth, sizeof *S->blk);
        if (!S->blk) {
            rc = sl_seterr(SL_ENOMEM, "clap: out of memory");
            break;
        }
        for (int b = 0; b < S->depth && !rc; b++)
            rc = load_block(L, S, s, b, inv);
        if (!rc && s < n - 1) {
            rc = load_merge(L, S, s, inv);
            for (int i = 0; i < (S->H / 2) * (S->W / 2); i++)
                inv[i] = i; /* merging writes raster order */
        }
    }
    free(inv);
    if (rc)
        return rc;
    clap_stage *last = &st->st[n - 1];
    st->latent = last->dim;
    if ((rc = up1(L, &st->norm_g, st->latent, AB "norm.weight")) < 0 ||
        (rc = up1(L, &st->norm_b, st->latent, AB "norm.bias")) < 0)
        return rc;
    const int64_t any2[2] = {-1, st->latent};
    const sl_st_tensor *p1 = get(L, 2, any2, "audio_projection.0.weight");
    if (!p1)
        return SL_EFORMAT;
    st->joint = (int)p1->shape[0];
    if ((rc = sl_model_upload_new(L->m->ctx, &st->p1_w, (const float *)p1->data,
                                  (size_t)st->joint * (size_t)st->latent)) < 0 ||
        (rc = up1(L, &st->p1_b, st->joint, "audio_projection.0.bias")) < 0 ||
        (rc = up2(L, &st->p2_w, st->joint, st->joint, "audio_projection.2.weight")) < 0 ||
        (rc = up1(L, &st->p2_b, st->joint, "audio_projection.2.bias")) < 0)
        return rc;
    return 0;
}

int sl_clap_audio_load(sl_emb_model *m, clap_state *st, const char *path)
{
    sl_st_file *f = NULL;
    int rc = sl_st_open(&f, path);
    if (rc < 0) {
        char msg[768];
        snprintf(msg, sizeof msg, "%s", sl_lasterr());
        return sl_seterr(rc, "embedding model clap: %s", msg);
    }
    loader L = {m, st, f, path};
    rc = check_variant(&L);
    if (!rc)
        rc = load_front(&L);
    if (!rc)
        rc = load_stages(&L);
    if (!rc)
        rc = sl_op_sync(m->ctx); /* the mapped file may be closed now */
    sl_st_close(f);
    return rc;
}

void sl_clap_audio_unload(sl_emb_model *m, clap_state *st)
{
    sl_op_ctx *ctx = m->ctx;
    float *bufs[] = {st->window, st->fb, st->bn0_add, st->bn0_mul, st->pe_tap, st->pe_w, st->pe_b, st->pe_ng,
                     st->pe_nb, st->norm_g, st->norm_b, st->p1_w, st->p1_b, st->p2_w, st->p2_b};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        sl_op_free(ctx, bufs[i]);
    sl_op_free(ctx, st->pe_idx);
    for (int s = 0; s < CLAP_MAX_STAGES; s++) {
        clap_stage *S = &st->st[s];
        for (int b = 0; S->blk && b < S->depth; b++) {
            clap_block *k = &S->blk[b];
            float *w[] = {k->n1g, k->n1b, k->qkv_w, k->qkv_b, k->proj_w, k->proj_b, k->n2g,
                          k->n2b, k->fc1_w, k->fc1_b, k->fc2_w, k->fc2_b, k->bias};
            for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
                sl_op_free(ctx, w[i]);
            sl_op_free(ctx, k->idx);
            free(k->pos);
        }
        free(S->blk);
        sl_op_free(ctx, S->m_idx);
        sl_op_free(ctx, S->m_g);
        sl_op_free(ctx, S->m_b);
        sl_op_free(ctx, S->m_w);
    }
    sl_model_ws_free(ctx, &st->ws);
    free(st->host_wave);
}
