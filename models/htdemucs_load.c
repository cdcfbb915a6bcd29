/* HT-Demucs v4 weights (tools/convert_htdemucs.py): tensors m{i}.NAME (the
 * package's state dict of bag model i, float32) and the HTDemucs constructor
 * arguments in metadata. Every tensor the metadata implies must be present with
 * its shape, and every tensor of the file must be used; errors name the file
 * and the key. At load time the layers' LayerScales are folded into the affine
 * step before them (the transformer's out_proj / linear2, the first GLU half of
 * the DConv's second GroupNorm), and the positional embeddings and the
 * frequency embedding are computed for the segment's geometry. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../io/safetensors.h"
#include "htdemucs_impl.h"

typedef struct {
    const sl_st_file *f;
    const char *path;
    unsigned char *used;
    sl_op_ctx *ctx;
    hd_state *st;
} hd_loader;

static int meta_num(hd_loader *L, const char *key, double lo, double hi, int integer, double *out)
{
    const char *v = sl_st_meta(L->f, key);
    if (!v)
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: metadata key '%s' missing (convert the "
                                     "checkpoint with tools/convert_htdemucs.py)", L->path, key);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x >= lo && x <= hi) || (integer && x != floor(x)))
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: metadata '%s' is '%s', expected %s %g..%g",
                         L->path, key, v, integer ? "an integer" : "a number", lo, hi);
    *out = x;
    return 0;
}

static int meta_int(hd_loader *L, const char *key, int lo, int hi, int *out)
{
    double x;
    int rc = meta_num(L, key, lo, hi, 1, &x);
    if (!rc)
        *out = (int)x;
    return rc;
}

/* Host pointer to the float32 tensor (printf name) of the given shape (nd dims), marked used;
 * NULL with the error set. */
static const float *take(hd_loader *L, int nd, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const float *take(hd_loader *L, int nd, const int64_t *shape, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    const sl_st_tensor *t = sl_st_vtake_f32(L->f, L->used, "separation model htdemucs", nd, shape, fmt, ap);
    va_end(ap);
    return t ? (const float *)t->data : NULL;
}

/* Every weight is declared fixed (sl_op_mark_fixed): the CPU backend keeps the forms it derives
 * from them (the packed linear layers and convolutions, the Winograd form of the 3x3 rewrites).
 * up: a weight computed at load (a copy per context); put: a tensor of the file as it is stored,
 * read in place on the cpu backend (sl_op_wrap_host), so that the workers of a run share one
 * mapping of the file and the forms derived from it, made once, instead of a copy and forms
 * each (the memory they touch first per worker, and the time to form them). */
static int up(hd_loader *L, float **dst, const float *src, size_t n)
{
    int rc = src ? sl_model_upload_new(L->ctx, dst, src, n) : SL_EFORMAT;
    return rc < 0 ? rc : sl_op_mark_fixed(L->ctx, *dst, n * sizeof(float));
}

static int put(hd_loader *L, float **dst, const float *src, size_t n)
{
    if (!src)
        return SL_EFORMAT;
    int rc = sl_model_wrap(L->ctx, &L->st->inplace, dst, src, n);
    return rc < 0 ? rc : sl_op_mark_fixed(L->ctx, *dst, n * sizeof(float));
}

/* Conv weights pre + "weight" of shape [a][b][k](x kk) and bias [bias_n]; transposed: [c_in][c_out][k]. */
static int conv(hd_loader *L, hd_conv *c, const char *pre, int c_in, int c_out, int k, int k2d, int transposed)
{
    int64_t sh[4] = {transposed ? c_in : c_out, transposed ? c_out : c_in, k, k2d};
    const int nd = k2d ? 4 : 3;
    const float *w = take(L, nd, sh, "%sweight", pre), *b = NULL;
    int64_t bs[1] = {c_out};
    if (w)
        b = take(L, 1, bs, "%sbias", pre);
    c->c_in = c_in, c->c_out = c_out, c->k = k;
    const size_t nw = (size_t)c_in * c_out * k * (k2d ? k2d : 1);
    int rc = put(L, &c->w, w, nw);
    return rc ? rc : put(L, &c->b, b, (size_t)c_out);
}

/* GroupNorm / LayerNorm params pre + weight / bias of n; scale (n_scale of them, may be NULL) multiplies
 * the first n_scale entries of both (LayerScale folded in). */
static int norm(hd_loader *L, float **g, float **b, const char *pre, int n, const float *scale, int n_scale)
{
    int64_t sh[1] = {n};
    const float *gw = take(L, 1, sh, "%sweight", pre), *gb = gw ? take(L, 1, sh, "%sbias", pre) : NULL;
    if (!gb)
        return SL_EFORMAT;
    float *tg = malloc(sizeof(float) * 2 * (size_t)n);
    if (!tg)
        return sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
    for (int i = 0; i < n; i++) {
        float s = scale && i < n_scale ? scale[i] : 1.0f;
        tg[i] = gw[i] * s;
        tg[n + i] = gb[i] * s;
    }
    int rc = up(L, g, tg, (size_t)n);
    if (!rc)
        rc = up(L, b, tg + n, (size_t)n);
    free(tg);
    return rc;
}

static int dconv(hd_loader *L, const hd_state *st, hd_layer *ly, const char *pre, int C)
{
    const int hid = (int)(C / st->dconv_comp);
    char p[192];
    ly->n_dconv = st->dconv_depth;
    for (int d = 0; d < st->dconv_depth; d++) {
        hd_dlayer *dl = &ly->dconv[d];
        int rc;
        dl->dil = 1 << d;
        snprintf(p, sizeof p, "%sdconv.layers.%d.0.", pre, d);
        if ((rc = conv(L, &dl->c1, p, C, hid, 3, 0, 0)) < 0)
            return rc;
        snprintf(p, sizeof p, "%sdconv.layers.%d.1.", pre, d);
        if ((rc = norm(L, &dl->n1.g, &dl->n1.b, p, hid, NULL, 0)) < 0)
            return rc;
        snprintf(p, sizeof p, "%sdconv.layers.%d.3.", pre, d);
        if ((rc = conv(L, &dl->c2, p, hid, 2 * C, 1, 0, 0)) < 0)
            return rc;
        int64_t sh[1] = {C};
        const float *scale = take(L, 1, sh, "%sdconv.layers.%d.6.scale", pre, d);
        if (!scale)
            return SL_EFORMAT;
        snprintf(p, sizeof p, "%sdconv.layers.%d.4.", pre, d);
        if ((rc = norm(L, &dl->n2.g, &dl->n2.b, p, 2 * C, scale, C)) < 0)
            return rc;
    }
    return 0;
}

/* Encoder / decoder layer index (package numbering) of model m; i is the depth level. */
static int layer(hd_loader *L, const hd_state *st, hd_layer *ly, int m, const char *list, int idx, int level,
                 int freq, int dec)
{
    char pre[160], p[192];
    snprintf(pre, sizeof pre, "m%d.%s.%d.", m, list, idx);
    const int cin = level == 0 ? (dec ? st->C * st->S : st->C) * (freq ? 2 : 1) : st->ch[level];
    const int cout = st->ch[level + 1], norm_on = level >= st->norm_starts, kk = freq ? 1 : 0;
    int rc;
    ly->freq = freq;
    /* encoder: conv cin -> cout; decoder: conv_tr cout -> cin (the channels flow back) */
    snprintf(p, sizeof p, "%s%s.", pre, dec ? "conv_tr" : "conv");
    if ((rc = dec ? conv(L, &ly->conv, p, cout, cin, st->kernel, kk, 1) : conv(L, &ly->conv, p, cin, cout, st->kernel, kk, 0)) < 0)
        return rc;
    const int C = dec ? cout : cout; /* channels of the layer's body */
    if (st->rewrite) {
        const int ctx = dec ? st->context : st->context_enc, k = 1 + 2 * ctx;
        snprintf(p, sizeof p, "%srewrite.", pre);
        if ((rc = conv(L, &ly->rewrite, p, C, 2 * C, k, freq ? k : 0, 0)) < 0)
            return rc;
    }
    if (norm_on) {
        snprintf(p, sizeof p, "%snorm1.", pre);
        if ((rc = norm(L, &ly->norm_a.g, &ly->norm_a.b, p, dec ? 2 * C : C, NULL, 0)) < 0)
            return rc;
        snprintf(p, sizeof p, "%snorm2.", pre);
        if (dec ? (rc = norm(L, &ly->norm_b.g, &ly->norm_b.b, p, cin, NULL, 0)) < 0
                : st->rewrite && (rc = norm(L, &ly->norm_b.g, &ly->norm_b.b, p, 2 * C, NULL, 0)) < 0)
            return rc;
    }
    if (st->dconv_mode & (dec ? 2 : 1))
        if ((rc = dconv(L, st, ly, pre, C)) < 0)
            return rc;
    ly->last = dec && level == 0;
    return 0;
}

static int linear(hd_loader *L, float **w, float **b, const char *pre, const char *name, int out, int in,
                  const float *scale)
{
    int64_t sw[2] = {out, in}, sb[1] = {out};
    const float *tw = take(L, 2, sw, "%s%s.weight", pre, name), *tb = tw ? take(L, 1, sb, "%s%s.bias", pre, name) : NULL;
    if (!tb)
        return SL_EFORMAT;
    if (!scale) {
        int rc = put(L, w, tw, (size_t)out * in);
        return rc ? rc : put(L, b, tb, (size_t)out);
    }
    float *cw = malloc(sizeof(float) * ((size_t)out * in + out));
    if (!cw)
        return sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
    for (int o = 0; o < out; o++) {
        const float s = scale ? scale[o] : 1.0f;
        for (int i = 0; i < in; i++)
            cw[(size_t)o * in + i] = tw[(size_t)o * in + i] * s;
        cw[(size_t)out * in + o] = tb[o] * s;
    }
    int rc = up(L, w, cw, (size_t)out * in);
    if (!rc)
        rc = up(L, b, cw + (size_t)out * in, (size_t)out);
    free(cw);
    return rc;
}

static int xlayer(hd_loader *L, const hd_state *st, hd_xlayer *x, const char *pre, int cross)
{
    const int C = st->Ct, H = (int)(C * st->t_hidden);
    char p[192];
    int rc;
    x->cross = cross;
    const char *att = cross ? "cross_attn" : "self_attn";
    int64_t s3[2] = {3 * C, C}, s3b[1] = {3 * C}, sc[1] = {C};
    const float *w = take(L, 2, s3, "%s%s.in_proj_weight", pre, att), *b = w ? take(L, 1, s3b, "%s%s.in_proj_bias", pre, att) : NULL;
    /* cross layers: the query projection and the key / value projections are two products */
    if ((rc = put(L, &x->wqkv, w, (size_t)(cross ? 1 : 3) * C * C)) < 0 ||
        (cross && (rc = put(L, &x->wkv, w ? w + (size_t)C * C : NULL, (size_t)2 * C * C)) < 0) ||
        (rc = put(L, &x->bqkv, b, (size_t)3 * C)) < 0)
        return rc;
    const float *g1 = NULL, *g2 = NULL;
    if (st->t_layer_scale) {
        g1 = take(L, 1, sc, "%sgamma_1.scale", pre);
        g2 = g1 ? take(L, 1, sc, "%sgamma_2.scale", pre) : NULL;
        if (!g2)
            return SL_EFORMAT;
    }
    snprintf(p, sizeof p, "%s%s.", pre, att);
    if ((rc = linear(L, &x->wo, &x->bo, p, "out_proj", C, C, g1)) < 0 || (rc = linear(L, &x->w1, &x->b1, pre, "linear1", H, C, NULL)) < 0 ||
        (rc = linear(L, &x->w2, &x->b2, pre, "linear2", C, H, g2)) < 0)
        return rc;
    for (int n = 1; n <= (cross ? 3 : 2); n++) {
        snprintf(p, sizeof p, "%snorm%d.", pre, n);
        float **g = n == 1 ? &x->n1g : n == 2 ? &x->n2g : &x->n3g, **bb = n == 1 ? &x->n1b : n == 2 ? &x->n2b : &x->n3b;
        if ((rc = norm(L, g, bb, p, C, NULL, 0)) < 0)
            return rc;
    }
    if (st->t_norm_out) {
        snprintf(p, sizeof p, "%snorm_out.", pre);
        if ((rc = norm(L, &x->nog, &x->nob, p, C, NULL, 0)) < 0)
            return rc;
    }
    return 0;
}

static int net(hd_loader *L, hd_state *st, int m)
{
    hd_net *n = &st->net[m];
    char pre[64];
    int rc;
    for (int i = 0; i < st->depth; i++) {
        const int di = st->depth - 1 - i; /* decoder list index of level i */
        if ((rc = layer(L, st, &n->enc[i], m, "encoder", i, i, 1, 0)) < 0 ||
            (rc = layer(L, st, &n->tenc[i], m, "tencoder", i, i, 0, 0)) < 0 ||
            (rc = layer(L, st, &n->dec[di], m, "decoder", di, i, 1, 1)) < 0 ||
            (rc = layer(L, st, &n->tdec[di], m, "tdecoder", di, i, 0, 1)) < 0)
            return rc;
    }
    if (st->freq_emb > 0) {
        const int C0 = st->ch[1], F1 = st->fr[1];
        int64_t sh[2] = {F1, C0};
        const float *e = take(L, 2, sh, "m%d.freq_emb.embedding.weight", m);
        if (!e)
            return SL_EFORMAT;
        const size_t T = (size_t)st->T;
        /* made where it is used on the cpu backend (no copy of its 33 MB at the released size) */
        float *x = sl_model_stage(L->ctx, (size_t)C0 * F1 * T);
        if (!x)
            return sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
        for (int c = 0; c < C0; c++)
            for (int f = 0; f < F1; f++) {
                /* freq_emb_scale * (embedding * emb_scale), as the package computes it in float */
                const float v = (float)st->freq_emb * (e[(size_t)f * C0 + c] * (float)st->emb_scale);
                for (size_t t = 0; t < T; t++)
                    x[((size_t)c * F1 + f) * T + t] = v;
            }
        rc = sl_model_adopt(L->ctx, &n->emb, &x, (size_t)C0 * F1 * T);
        if (!rc)
            rc = sl_op_mark_fixed(L->ctx, n->emb, (size_t)C0 * F1 * T * sizeof(float));
        if (rc < 0)
            return rc;
    }
    if (st->bottom) {
        const int Cx = st->ch[st->depth];
        snprintf(pre, sizeof pre, "m%d.channel_upsampler.", m);
        if ((rc = conv(L, &n->up, pre, Cx, st->bottom, 1, 0, 0)) < 0)
            return rc;
        snprintf(pre, sizeof pre, "m%d.channel_downsampler.", m);
        if ((rc = conv(L, &n->down, pre, st->bottom, Cx, 1, 0, 0)) < 0)
            return rc;
        snprintf(pre, sizeof pre, "m%d.channel_upsampler_t.", m);
        if ((rc = conv(L, &n->up_t, pre, Cx, st->bottom, 1, 0, 0)) < 0)
            return rc;
        snprintf(pre, sizeof pre, "m%d.channel_downsampler_t.", m);
        if ((rc = conv(L, &n->down_t, pre, st->bottom, Cx, 1, 0, 0)) < 0)
            return rc;
    }
    if (st->t_norm_in) {
        snprintf(pre, sizeof pre, "m%d.crosstransformer.norm_in.", m);
        if ((rc = norm(L, &n->nin_g, &n->nin_b, pre, st->Ct, NULL, 0)) < 0)
            return rc;
        snprintf(pre, sizeof pre, "m%d.crosstransformer.norm_in_t.", m);
        if ((rc = norm(L, &n->nint_g, &n->nint_b, pre, st->Ct, NULL, 0)) < 0)
            return rc;
    }
    for (int i = 0; i < st->t_layers; i++) {
        const int cross = i % 2 != (st->t_cross_first ? 1 : 0);
        char p[96];
        snprintf(p, sizeof p, "m%d.crosstransformer.layers.%d.", m, i);
        if ((rc = xlayer(L, st, &n->xl[i], p, cross)) < 0)
            return rc;
        snprintf(p, sizeof p, "m%d.crosstransformer.layers_t.%d.", m, i);
        if ((rc = xlayer(L, st, &n->xlt[i], p, cross)) < 0)
            return rc;
    }
    return 0;
}

/* The package's create_2d_sin_embedding in token order (t1 fr) and create_sin_embedding, both times
 * the positional weight. */
static int pos_tables(hd_loader *L, hd_state *st)
{
    const int C = st->Ct, Fp = st->fr[st->depth], T1 = st->T;
    const size_t T2 = st->tl[st->depth];
    if (C % 4)
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: transformer width %d is not a multiple of 4",
                         L->path, C);
    float *p2 = malloc(sizeof(float) * (size_t)T1 * Fp * C), *p1 = malloc(sizeof(float) * T2 * C);
    if (!p2 || !p1) {
        free(p2);
        free(p1);
        return sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
    }
    const int half = C / 2;
    const double w = st->t_pos_w, mp = st->t_max_period;
    /* in float32 as torch computes them (the phases of long sequences depend on it) */
    const float lmp = (float)(-(log(mp) / half));
    for (int t = 0; t < T1; t++)
        for (int f = 0; f < Fp; f++) {
            float *row = p2 + ((size_t)t * Fp + f) * C;
            for (int i = 0; i < half / 2; i++) {
                const float div = expf((float)(2 * i) * lmp);
                row[2 * i] = (float)(w * sinf((float)t * div));
                row[2 * i + 1] = (float)(w * cosf((float)t * div));
                row[half + 2 * i] = (float)(w * sinf((float)f * div));
                row[half + 2 * i + 1] = (float)(w * cosf((float)f * div));
            }
        }
    for (size_t t = 0; t < T2; t++)
        for (int i = 0; i < half; i++) {
            const float ph = (float)t / powf((float)mp, (float)i / (float)(half - 1));
            p1[t * C + i] = (float)(w * cosf(ph));
            p1[t * C + half + i] = (float)(w * sinf(ph));
        }
    int rc = up(L, &st->pos2d, p2, (size_t)T1 * Fp * C);
    if (!rc)
        rc = up(L, &st->pos1d, p1, T2 * C);
    free(p2);
    free(p1);
    return rc;
}

static int geometry(hd_loader *L, hd_state *st)
{
    st->L = (size_t)((long long)st->sr * st->seg_num / st->seg_den);
    st->hl = st->nfft / 4;
    st->F = st->nfft / 2;
    st->T = (int)((st->L + (size_t)st->hl - 1) / (size_t)st->hl);
    st->pad = st->hl / 2 * 3;
    st->fr[0] = st->F;
    st->tl[0] = st->L;
    st->ch[0] = 0;
    int c = st->channels;
    for (int i = 0; i < st->depth; i++) {
        if (st->fr[i] <= st->kernel)
            return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: metadata depth %d with nfft %d: layer %d "
                             "would merge the branches (%d bins <= kernel_size %d), which is not supported",
                             L->path, st->depth, st->nfft, i, st->fr[i], st->kernel);
        st->fr[i + 1] = st->fr[i] / st->stride;
        const size_t li = st->tl[i], S = (size_t)st->stride;
        const size_t padded = (li + S - 1) / S * S + 2 * (size_t)(st->kernel / 4);
        st->tl[i + 1] = (padded - (size_t)st->kernel) / S + 1;
        st->ch[i + 1] = c;
        c *= st->growth;
    }
    st->Ct = st->bottom ? st->bottom : st->ch[st->depth];
    if (st->L <= (size_t)st->pad || st->Ct % st->t_heads || st->Ct / st->t_heads > 128)
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: unsupported geometry (segment %zu samples, "
                         "transformer width %d, %d heads)", L->path, st->L, st->Ct, st->t_heads);
    return 0;
}

static int parse_meta(hd_loader *L, hd_state *st)
{
    const char *a = sl_st_meta(L->f, "stemline.arch");
    if (!a || strcmp(a, "htdemucs"))
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: metadata stemline.arch is '%s', expected "
                         "'htdemucs' (convert with tools/convert_htdemucs.py)", L->path, a ? a : "(missing)");
    int rc;
    struct { const char *k; int lo, hi, *v; } ints[] = {
        {"audio_channels", 1, 8, &st->C}, {"channels", 1, 4096, &st->channels}, {"growth", 1, 8, &st->growth},
        {"nfft", 16, 65536, &st->nfft}, {"depth", 1, HD_MAX_DEPTH, &st->depth}, {"kernel_size", 4, 64, &st->kernel},
        {"stride", 1, 64, &st->stride}, {"context", 0, 3, &st->context}, {"context_enc", 0, 3, &st->context_enc},
        {"norm_starts", 0, 64, &st->norm_starts}, {"norm_groups", 1, 64, &st->norm_groups},
        {"dconv_mode", 0, 3, &st->dconv_mode}, {"dconv_depth", 1, HD_MAX_DCONV, &st->dconv_depth},
        {"bottom_channels", 0, 65536, &st->bottom}, {"t_layers", 1, HD_MAX_XLAYERS, &st->t_layers},
        {"t_heads", 1, 256, &st->t_heads}, {"samplerate", 8000, 384000, &st->sr}, {"rewrite", 0, 1, &st->rewrite},
        {"t_norm_in", 0, 1, &st->t_norm_in}, {"t_norm_out", 0, 1, &st->t_norm_out},
        {"t_layer_scale", 0, 1, &st->t_layer_scale}, {"t_gelu", 0, 1, &st->t_gelu},
        {"t_cross_first", 0, 1, &st->t_cross_first}, {"models", 1, HD_MAX_MODELS, &st->n_models}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((rc = meta_int(L, ints[i].k, ints[i].lo, ints[i].hi, ints[i].v)) < 0)
            return rc;
    struct { const char *k; double lo, hi, *v; } dbl[] = {
        {"freq_emb", 0, 100, &st->freq_emb}, {"emb_scale", 0, 1e6, &st->emb_scale},
        {"dconv_comp", 1, 1024, &st->dconv_comp}, {"t_hidden_scale", 0.01, 64, &st->t_hidden},
        {"t_max_period", 1, 1e9, &st->t_max_period}, {"t_weight_pos_embed", -1e6, 1e6, &st->t_pos_w}};
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++)
        if ((rc = meta_num(L, dbl[i].k, dbl[i].lo, dbl[i].hi, 0, dbl[i].v)) < 0)
            return rc;
    if (st->kernel % 4 || st->context_enc > 3)
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: metadata kernel_size %d is not a multiple "
                         "of 4", L->path, st->kernel);
    const char *seg = sl_st_meta(L->f, "segment");
    if (!seg || sscanf(seg, "%ld/%ld", &st->seg_num, &st->seg_den) != 2 || st->seg_num <= 0 || st->seg_den <= 0)
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: metadata 'segment' is '%s', expected NUM/DEN",
                         L->path, seg ? seg : "(missing)");
    const char *src = sl_st_meta(L->f, "sources");
    st->S = 0;
    for (const char *p = src; p && *p && st->S < SL_MAX_SOURCES;) {
        size_t n = strcspn(p, ",");
        if (!n || n >= sizeof st->names[0])
            break;
        memcpy(st->names[st->S], p, n);
        st->names[st->S++][n] = 0;
        p += n + (p[n] == ',');
    }
    if (!src || !st->S)
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: metadata 'sources' is missing or malformed",
                         L->path);
    const char *bw = sl_st_meta(L->f, "bag_weights");
    for (int m = 0; m < st->n_models; m++)
        for (int s = 0; s < st->S; s++) {
            char *end;
            double v = bw ? strtod(bw, &end) : 1.0;
            if (bw) {
                if (end == bw || !(v >= 0) || (*end && *end != ',' && *end != ';'))
                    return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: metadata 'bag_weights' is "
                                     "malformed (model %d, source %d)", L->path, m, s);
                bw = *end ? end + 1 : end;
            }
            st->weights[m][s] = (float)v;
        }
    return 0;
}

int hd_load(sl_op_ctx *ctx, hd_state *st, const char *path)
{
    sl_st_file *f = NULL;
    int rc = sl_st_open(&f, path);
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sl_lasterr());
        return sl_seterr(rc, "separation model htdemucs: %s", msg);
    }
    hd_loader L = {f, path, calloc(sl_st_count(f) + 1, 1), ctx, st};
    if (!L.used) {
        sl_st_close(f);
        return sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
    }
    if ((rc = parse_meta(&L, st)) < 0 || (rc = geometry(&L, st)) < 0)
        goto done;
    for (int m = 0; m < st->n_models; m++)
        if ((rc = net(&L, st, m)) < 0)
            goto done;
    if ((rc = pos_tables(&L, st)) < 0)
        goto done;
    for (size_t i = 0; i < sl_st_count(f); i++)
        if (!L.used[i]) {
            rc = sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: tensor '%s' is not used by the architecture "
                           "in the metadata (another version or configuration of the model?)", path,
                           sl_st_at(f, i)->name);
            goto done;
        }
    float *w = malloc(sizeof(float) * (size_t)st->nfft);
    if (!w) {
        rc = sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
        goto done;
    }
    sl_window_hann(w, st->nfft, st->nfft);
    rc = sl_model_upload_new(ctx, &st->window, w, (size_t)st->nfft);
    free(w);
    if (!rc)
        rc = sl_op_sync(ctx);
done:
    free(L.used);
    if (st->inplace.lo)
        st->map = f; /* closed by hd_free, after the weights that point into it */
    else
        sl_st_close(f);
    return rc;
}

/* sl_op_free of a weight unless it is the file's own bytes (put). */
static void drop(sl_op_ctx *ctx, const hd_state *st, float *p) { sl_model_free_weight(ctx, &st->inplace, p); }

static void free_conv(sl_op_ctx *ctx, const hd_state *st, hd_conv *c)
{
    drop(ctx, st, c->w);
    drop(ctx, st, c->b);
}

static void free_layer(sl_op_ctx *ctx, const hd_state *st, hd_layer *l)
{
    free_conv(ctx, st, &l->conv);
    free_conv(ctx, st, &l->rewrite);
    float *p[] = {l->norm_a.g, l->norm_a.b, l->norm_b.g, l->norm_b.b};
    for (size_t i = 0; i < 4; i++)
        drop(ctx, st, p[i]);
    for (int d = 0; d < l->n_dconv; d++) {
        free_conv(ctx, st, &l->dconv[d].c1);
        free_conv(ctx, st, &l->dconv[d].c2);
        float *q[] = {l->dconv[d].n1.g, l->dconv[d].n1.b, l->dconv[d].n2.g, l->dconv[d].n2.b};
        for (size_t i = 0; i < 4; i++)
            drop(ctx, st, q[i]);
    }
}

static void free_xlayer(sl_op_ctx *ctx, const hd_state *st, hd_xlayer *x)
{
    float *p[] = {x->n1g, x->n1b, x->n2g, x->n2b, x->n3g, x->n3b, x->wqkv, x->wkv, x->bqkv, x->wo,
                  x->bo,  x->w1,  x->b1,  x->w2,  x->b2,  x->nog, x->nob};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        drop(ctx, st, p[i]);
}

void hd_free(sl_op_ctx *ctx, hd_state *st)
{
    for (int m = 0; m < HD_MAX_MODELS; m++) {
        hd_net *n = &st->net[m];
        for (int i = 0; i < HD_MAX_DEPTH; i++) {
            free_layer(ctx, st, &n->enc[i]);
            free_layer(ctx, st, &n->tenc[i]);
            free_layer(ctx, st, &n->dec[i]);
            free_layer(ctx, st, &n->tdec[i]);
        }
        for (int i = 0; i < HD_MAX_XLAYERS; i++) {
            free_xlayer(ctx, st, &n->xl[i]);
            free_xlayer(ctx, st, &n->xlt[i]);
        }
        drop(ctx, st, n->emb);
        free_conv(ctx, st, &n->up);
        free_conv(ctx, st, &n->down);
        free_conv(ctx, st, &n->up_t);
        free_conv(ctx, st, &n->down_t);
        float *p[] = {n->nin_g, n->nin_b, n->nint_g, n->nint_b};
        for (size_t i = 0; i < 4; i++)
            drop(ctx, st, p[i]);
    }
    drop(ctx, st, st->window);
    drop(ctx, st, st->pos2d);
    drop(ctx, st, st->pos1d);
    sl_st_close(st->map); /* after every weight that points into it */
    st->map = NULL;
    st->inplace = (sl_model_inplace){0};
}
