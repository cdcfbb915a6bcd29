/* HT-Demucs v4 (demucs 4.x, demucs/htdemucs.py, hdemucs.py, transformer.py)
 * as a graph of ops, one segment of the model's training length at a time.
 *
 * Per segment: the spectrogram as the package's _spec (reflect padding by
 * 3/2 hop plus the rest of the last hop, a centred normalized STFT, the last
 * bin and two frames on each side dropped), complex as channels, normalised
 * by its mean / std; the waveform normalised likewise; the encoders of both
 * branches (strided [K,1] / K convolutions, GroupNorm where the layer has one,
 * GELU, DConv residual branches with dilation 1, 2, ..., the rewrite
 * convolution and GLU), the frequency embedding after the first frequency
 * layer, the cross transformer (LayerNorm in, positional embeddings, self and
 * cross attention layers alternating, each norm-first with LayerScale and a
 * GELU feed-forward, GroupNorm(1) out), the decoders with their skips
 * (rewrite + GLU, transposed convolutions cropped as the package does), the
 * normalisation undone, the inverse spectrogram (_ispec) and the sum of both
 * branches. A bag runs each model and mixes their sources with its weights.
 *
 * The whole-track inference of the `demucs` command around it (statistics of
 * the whole track, apply_model's segments and blending) is
 * pipeline/demucs_split.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "htdemucs_impl.h"

static const sl_op_id hd_ops[] = {SL_OP_FRAME, SL_OP_RFFT, SL_OP_IRFFT, SL_OP_OVERLAP_ADD, SL_OP_CONV1D,
                                  SL_OP_CONV_TRANSPOSE1D, SL_OP_CONV2D, SL_OP_NORM, SL_OP_GLU, SL_OP_AFFINE,
                                  SL_OP_GEMM, SL_OP_ATTENTION, SL_OP_PERMUTE};

/* ---- small op helpers (x, y backend memory of ctx) ---- */

static int conv1(sl_op_ctx *ctx, const hd_conv *c, size_t len, size_t inner, int stride, int pad_l, int pad_r,
                 int dil, sl_act act, const float *x, float *y)
{
    sl_conv1d_args a = {1, c->c_in, c->c_out, 1, len, inner, c->k, stride, dil, pad_l, pad_r, x, c->w, c->b, act, y, 0};
    return sl_op_conv1d(ctx, &a);
}

/* act(GroupNorm(groups, C)) of [N][C][S] in place, in one pass; no-op without params. */
static int gnorm_act(sl_op_ctx *ctx, const hd_gn *g, size_t N, size_t C, size_t groups, size_t S, sl_act act,
                     float *x)
{
    if (!g->g)
        return 0;
    sl_norm_args a = {SL_NORM_GROUP, N * groups, C / groups * S, x, C / groups * S, g->g, g->b, 1e-5f,
                      x, C / groups * S, groups, C, S, act};
    return sl_op_norm(ctx, &a);
}

static int gnorm(sl_op_ctx *ctx, const hd_gn *g, size_t N, size_t C, size_t groups, size_t S, float *x)
{
    return gnorm_act(ctx, g, N, C, groups, S, SL_ACT_NONE, x);
}

/* y = act(x) [+ res] over n contiguous floats (y may be x or res). */
static int ew(sl_op_ctx *ctx, size_t n, const float *x, const float *res, sl_act act, float *y)
{
    sl_affine_args a = {1, 1, n, x, n, n, NULL, NULL, 0, act, y, n, n, res, n, n};
    return sl_op_affine(ctx, &a);
}

static int layernorm(sl_op_ctx *ctx, size_t rows, size_t dim, const float *g, const float *b, const float *x,
                     float *y)
{
    sl_norm_args a = {SL_NORM_LAYER, rows, dim, x, dim, g, b, 1e-5f, y, dim, 0, 0, 0, SL_ACT_NONE};
    return sl_op_norm(ctx, &a);
}

static int linear(sl_op_ctx *ctx, size_t m, size_t n, size_t k, const float *x, size_t ldx, const float *w,
                  const float *b, sl_act act, float *y, size_t ldy, const float *add)
{
    sl_gemm_args g = {.batch = 1, .m = m, .n = n, .k = k, .x = x, .ldx = ldx, .w = w, .ldw = k, .bias = b,
                      .act = act, .y = y, .ldy = ldy, .add = add, .ldadd = ldy};
    return sl_op_gemm(ctx, &g);
}

/* ---- scratch ---- */

typedef struct {
    float *a, *b, *c, *d, *e; /* each hd_run.big floats */
} hd_bufs;

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        if ((rc = (x)) < 0)                                                                                            \
            return rc;                                                                                                 \
    } while (0)

/* DConv on x[N][C][T] in place (scratch: h >= N*hid*T, z >= N*2C*T, g >= N*C*T). */
static int dconv(sl_op_ctx *ctx, const hd_layer *ly, size_t N, size_t C, size_t T, float *x, float *h, float *z,
                 float *g)
{
    int rc;
    for (int d = 0; d < ly->n_dconv; d++) {
        const hd_dlayer *dl = &ly->dconv[d];
        const size_t hid = (size_t)dl->c1.c_out;
        sl_conv1d_args a1 = {N, (int)C, (int)hid, 1, T, 1, dl->c1.k, 1, dl->dil, dl->dil * (dl->c1.k / 2),
                             dl->dil * (dl->c1.k / 2), x, dl->c1.w, dl->c1.b, SL_ACT_NONE, h, 0};
        TRY(sl_op_conv1d(ctx, &a1));
        if (dl->n1.g)
            TRY(gnorm_act(ctx, &dl->n1, N, hid, 1, T, SL_ACT_GELU, h));
        else
            TRY(ew(ctx, N * hid * T, h, NULL, SL_ACT_GELU, h));
        sl_conv1d_args a2 = {N, (int)hid, (int)(2 * C), 1, T, 1, 1, 1, 1, 0, 0, h, dl->c2.w, dl->c2.b, SL_ACT_NONE, z, 0};
        TRY(sl_op_conv1d(ctx, &a2));
        if (dl->n2.g) { /* GroupNorm(1, 2C) and the GLU of its halves in one pass */
            sl_norm_args n2 = {SL_NORM_GROUP_GLU, N, 2 * C * T, z, 2 * C * T, dl->n2.g, dl->n2.b, 1e-5f, g, C * T,
                               1, 2 * C, T, SL_ACT_NONE};
            TRY(sl_op_norm(ctx, &n2));
        } else
            TRY(sl_op_glu(ctx, N, C * T, z, 2 * C * T, g, C * T));
        TRY(ew(ctx, N * C * T, g, x, SL_ACT_NONE, x));
    }
    return 0;
}

/* Frequency rows per pass of a frequency layer's DConv: on the CPU backend a block of rows
 * whose tensors stay in the cache (about 64 K floats of x at one thread, at least one row per
 * thread), elsewhere all rows at once. At several threads each op of a block is split over
 * them, a wake-up and a join per op (about 14 per block): blocks of 256 K floats of x per
 * thread pay those 4 times less often (at 2 threads the frequency DConvs took about a third
 * less CPU time, bench/RESULTS.md). Each row's DConv is independent of the others, so the
 * block size never changes a result. SL_HTDEMUCS_ROWS=N in the environment sets it (tests). */
static size_t dconv_rows(sl_op_ctx *ctx, size_t C, size_t F, size_t T)
{
    const char *e = getenv("SL_HTDEMUCS_ROWS");
    size_t n = F;
    if (e && atol(e) > 0)
        n = (size_t)atol(e);
    else if (!strcmp(sl_op_ctx_backend(ctx), "cpu")) {
        const size_t th = (size_t)sl_op_ctx_threads(ctx);
        n = ((size_t)1 << (th > 1 ? 18 : 16)) * th / (C * T);
        if (n < th)
            n = th;
    }
    return n < F ? n : F;
}

/* DConv of a frequency layer's [C][F][T]: on [F][C][T] as the package reshapes it, a block of
 * rows f0 .. f0 + n - 1 at a time (gathered into B->b, the branch, scattered back). */
static int dconv_any(sl_op_ctx *ctx, const hd_layer *ly, int freq, size_t C, size_t F, size_t T, float *x, hd_bufs *B)
{
    if (!ly->n_dconv)
        return 0;
    int rc;
    if (!freq) /* B->b is free here (the rewrite's input or output on either side of the DConv): */
        return dconv(ctx, ly, 1, C, T, x, B->e, B->b, B->d); /* the branch's 2C rows in it */
    const size_t rows = dconv_rows(ctx, C, F, T);
    for (size_t f0 = 0; f0 < F; f0 += rows) {
        const size_t n = F - f0 < rows ? F - f0 : rows;
        sl_permute_args in = {{1, C, n, T}, x + f0 * T, {0, F * T, T, 1}, B->b, {0, T, C * T, 1}};
        TRY(sl_op_permute(ctx, &in));
        TRY(dconv(ctx, ly, n, C, T, B->b, B->c, B->d, B->e));
        sl_permute_args out = {{1, n, C, T}, B->b, {0, C * T, T, 1}, x + f0 * T, {0, T, F * T, 1}};
        TRY(sl_op_permute(ctx, &out));
    }
    return 0;
}

/* The rewrite convolution of [C][F][T] (F = 1 for time layers), then GroupNorm norm (when the
 * layer has one) and the GLU, into y [C][F][T] (z: room for [2C][F][T]). Without a norm, a
 * 1-D rewrite takes the GLU in the convolution (sl_conv1d_args.glu: its output never goes
 * through memory whole). */
static int rewrite_glu(sl_op_ctx *ctx, const hd_state *st, const hd_layer *ly, const hd_gn *norm, size_t F, size_t T,
                       const float *x, float *z, float *y)
{
    int rc;
    const hd_conv *c = &ly->rewrite;
    const size_t n = (size_t)c->c_in * F * T;
    if (c->k == 1 || !ly->freq) {
        sl_conv1d_args a = {1, c->c_in, c->c_out, 1, F * T, 1, c->k, 1, 1, c->k / 2, c->k / 2, x, c->w, c->b,
                            SL_ACT_NONE, norm->g ? z : y, !norm->g};
        if ((rc = sl_op_conv1d(ctx, &a)) < 0 || !norm->g)
            return rc;
    } else {
        sl_conv2d_args a = {1, c->c_in, c->c_out, (int)F, (int)T, c->k, x, c->w, c->b, SL_ACT_NONE, z, 1};
        TRY(sl_op_conv2d(ctx, &a));
    }
    TRY(gnorm(ctx, norm, 1, 2 * (size_t)c->c_in, (size_t)st->norm_groups, F * T, z));
    return sl_op_glu(ctx, 1, n, z, 2 * n, y, n);
}

/* Encoder layer: x [cin][Fi][T] (time: [cin][Li], F = 1) -> out [cout][Fo][T]. */
static int encode(sl_op_ctx *ctx, const hd_state *st, const hd_layer *ly, size_t Fi, size_t T, const float *x,
                  float *out, hd_bufs *B)
{
    int rc;
    const size_t C = (size_t)ly->conv.c_out, K = (size_t)st->kernel, S = (size_t)st->stride;
    const int p = st->kernel / 4;
    size_t Fo;
    if (ly->freq) {
        TRY(conv1(ctx, &ly->conv, Fi, T, (int)S, p, p, 1, ly->norm_a.g ? SL_ACT_NONE : SL_ACT_GELU, x, B->a));
        Fo = (Fi + 2 * (size_t)p - K) / S + 1;
    } else {
        const int extra = (int)((S - T % S) % S);
        TRY(conv1(ctx, &ly->conv, T, 1, (int)S, p, p + extra, 1, ly->norm_a.g ? SL_ACT_NONE : SL_ACT_GELU, x, B->a));
        Fo = 1;
        T = (T + (size_t)extra + 2 * (size_t)p - K) / S + 1;
    }
    if (ly->norm_a.g)
        TRY(gnorm_act(ctx, &ly->norm_a, 1, C, (size_t)st->norm_groups, Fo * T, SL_ACT_GELU, B->a));
    TRY(dconv_any(ctx, ly, ly->freq, C, Fo, T, B->a, B));
    if (!ly->rewrite.w)
        return sl_op_copy(ctx, out, B->a, C * Fo * T * sizeof(float));
    return rewrite_glu(ctx, st, ly, &ly->norm_b, Fo, T, B->a, B->b, out);
}

/* Decoder layer: x [C][Fi][T] + skip -> out [cout][Fo][T]; time layers crop to length. x is
 * consumed (the sum with the skip is made in it). */
static int decode(sl_op_ctx *ctx, const hd_state *st, const hd_layer *ly, size_t Fi, size_t T, float *x,
                  const float *skip, size_t length, float *out, hd_bufs *B)
{
    int rc;
    const size_t C = (size_t)ly->conv.c_in, co = (size_t)ly->conv.c_out, K = (size_t)st->kernel, S = (size_t)st->stride;
    const size_t p = K / 4, n = C * Fi * T;
    if (ly->rewrite.w) {
        TRY(ew(ctx, n, x, skip, SL_ACT_NONE, x));
        TRY(rewrite_glu(ctx, st, ly, &ly->norm_a, Fi, T, x, B->b, B->a));
    } else
        TRY(ew(ctx, n, x, skip, SL_ACT_NONE, B->a));
    TRY(dconv_any(ctx, ly, ly->freq, C, Fi, T, B->a, B));
    const size_t len = ly->freq ? Fi : T, inner = ly->freq ? T : 1, full = (len - 1) * S + K;
    const size_t lo = ly->freq ? full - 2 * p : length;
    const sl_act act = ly->last ? SL_ACT_NONE : SL_ACT_GELU;
    if (!ly->norm_b.g) {
        sl_convt1d_args a = {1, (int)C, (int)co, len, inner, (int)K, (int)S, (int)p, lo, B->a, ly->conv.w, ly->conv.b,
                             act, out};
        return sl_op_conv_transpose1d(ctx, &a);
    }
    sl_convt1d_args a = {1, (int)C, (int)co, len, inner, (int)K, (int)S, 0, full, B->a, ly->conv.w, ly->conv.b,
                         SL_ACT_NONE, B->b};
    TRY(sl_op_conv_transpose1d(ctx, &a));
    TRY(gnorm(ctx, &ly->norm_b, 1, co, (size_t)st->norm_groups, full * inner, B->b));
    sl_affine_args f = {co, lo, inner, B->b + p * inner, inner, full * inner, NULL, NULL, 0, act, out, inner,
                        lo * inner, NULL, 0, 0};
    return sl_op_affine(ctx, &f);
}

/* One transformer layer on x [Nq][C] (q) with keys from kv [Nk][C] (cross) into y (may be x for self). */
static int xlayer(sl_op_ctx *ctx, const hd_state *st, const hd_xlayer *L, size_t Nq, const float *x, size_t Nk,
                  const float *kv, float *y, hd_bufs *B)
{
    int rc;
    const size_t C = (size_t)st->Ct, H = (size_t)(C * st->t_hidden), heads = (size_t)st->t_heads;
    const size_t dh = C / heads;
    float *h = B->a, *q = B->b, *att = B->c, *ff = B->d, *hk = B->e;
    TRY(layernorm(ctx, Nq, C, L->n1g, L->n1b, x, h));
    sl_attention_args a;
    memset(&a, 0, sizeof a);
    a.batch = 1, a.heads = (int)heads, a.dim_head = (int)dh, a.scale = 1.0f / sqrtf((float)dh), a.tq = Nq;
    if (!L->cross) {
        TRY(linear(ctx, Nq, 3 * C, C, h, C, L->wqkv, L->bqkv, SL_ACT_NONE, q, 3 * C, NULL));
        a.tk = Nq, a.q = q, a.k = q + C, a.v = q + 2 * C, a.ldq = a.ldk = a.ldv = 3 * C;
    } else {
        TRY(layernorm(ctx, Nk, C, L->n2g, L->n2b, kv, hk));
        TRY(linear(ctx, Nq, C, C, h, C, L->wqkv, L->bqkv, SL_ACT_NONE, q, C, NULL));
        TRY(linear(ctx, Nk, 2 * C, C, hk, C, L->wkv, L->bqkv + C, SL_ACT_NONE, ff, 2 * C, NULL));
        a.tk = Nk, a.q = q, a.k = ff, a.v = ff + C, a.ldq = C, a.ldk = a.ldv = 2 * C;
    }
    a.out = att, a.ldo = C;
    TRY(sl_op_attention(ctx, &a));
    TRY(linear(ctx, Nq, C, C, att, C, L->wo, L->bo, SL_ACT_NONE, y, C, x)); /* y = x + attention */
    TRY(layernorm(ctx, Nq, C, L->cross ? L->n3g : L->n2g, L->cross ? L->n3b : L->n2b, y, h));
    TRY(linear(ctx, Nq, H, C, h, C, L->w1, L->b1, st->t_gelu ? SL_ACT_GELU : SL_ACT_RELU, ff, H, NULL));
    TRY(linear(ctx, Nq, C, H, ff, H, L->w2, L->b2, SL_ACT_NONE, y, C, y));
    if (L->nog) {
        sl_norm_args g = {SL_NORM_GROUP, 1, Nq * C, y, Nq * C, L->nog, L->nob, 1e-5f, y, Nq * C, 1, C, 1,
                          SL_ACT_NONE};
        TRY(sl_op_norm(ctx, &g));
    }
    return 0;
}

/* ---- one segment through one model ---- */

/* Largest scratch any step needs, in floats. */
static size_t scratch_floats(const hd_state *st)
{
    const size_t T = (size_t)st->T, K = (size_t)st->kernel, S = (size_t)st->stride, CS = (size_t)(st->C * st->S);
    size_t big = 2 * CS * 2 * (size_t)st->F * T;
    for (int i = 0; i < st->depth; i++) {
        const size_t c = (size_t)st->ch[i + 1], cin = i ? (size_t)st->ch[i] : 2 * CS;
        const size_t f = (size_t)st->fr[i + 1], l = st->tl[i + 1];
        const size_t v[] = {2 * c * f * T, cin * ((f - 1) * S + K) * T, 2 * c * l, cin * ((l - 1) * S + K),
                            c * (size_t)st->fr[i] * T * 2, 2 * c * st->tl[i] + K * c};
        for (size_t j = 0; j < sizeof v / sizeof v[0]; j++)
            if (v[j] > big)
                big = v[j];
    }
    const size_t N = (size_t)st->fr[st->depth] * T > st->tl[st->depth] ? (size_t)st->fr[st->depth] * T : st->tl[st->depth];
    const size_t C = (size_t)st->Ct, H = (size_t)(C * st->t_hidden) + 1;
    const size_t w = N * (3 * C > H ? 3 * C : H);
    return big > w ? big : w;
}

typedef struct {
    float *mag, *enc[HD_MAX_DEPTH], *tenc[HD_MAX_DEPTH], *xf, *xt, *dec[HD_MAX_DEPTH], *tdec[HD_MAX_DEPTH];
} hd_dump;

static int dump(sl_op_ctx *ctx, float *host, const float *dev, size_t n)
{
    return host ? sl_op_download(ctx, host, dev, n * sizeof(float)) : 0;
}

typedef struct {
    hd_bufs B;
    float *xin, *saved[HD_MAX_DEPTH], *saved_t[HD_MAX_DEPTH], *cur, *nxt, *tcur, *tnxt;
    float *tx, *txt, *tx2, *txt2, *dx, *spec, *vec, *zin, *frames, *ola, *zero;
    float *host_mag, *host;
    size_t big;
    int direct; /* the cpu backend: its memory is host memory, read and written here without copies */
} hd_run;

static void run_free(sl_op_ctx *ctx, hd_run *R)
{
    float *p[] = {R->B.a, R->B.b, R->B.c, R->B.d, R->B.e, R->xin, R->cur, R->nxt, R->tcur, R->tnxt, R->tx, R->txt,
                  R->tx2, R->txt2, R->dx, R->spec, R->vec, R->zin, R->frames, R->ola, R->zero};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        sl_op_free(ctx, p[i]);
    for (int i = 0; i < HD_MAX_DEPTH; i++) {
        sl_op_free(ctx, R->saved[i]);
        sl_op_free(ctx, R->saved_t[i]);
    }
    free(R->host_mag);
    free(R->host);
    memset(R, 0, sizeof *R);
}

static int run_alloc(sl_op_ctx *ctx, const hd_state *st, hd_run *R)
{
    memset(R, 0, sizeof *R);
    const size_t T = (size_t)st->T, F = (size_t)st->F, C = (size_t)st->C, SC = C * (size_t)st->S;
    const size_t Lp = T * (size_t)st->hl + 2 * (size_t)st->pad, Ct = (size_t)st->Ct;
    const size_t N1 = (size_t)st->fr[st->depth] * T, N2 = st->tl[st->depth];
    R->big = scratch_floats(st);
    struct { float **p; size_t n; } want[4 * HD_MAX_DEPTH + 32];
    size_t k = 0;
    float **bufs[] = {&R->B.a, &R->B.b, &R->B.c, &R->B.d, &R->B.e, &R->cur, &R->nxt, &R->tcur, &R->tnxt};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        want[k].p = bufs[i], want[k++].n = R->big;
    want[k].p = &R->xin, want[k++].n = 2 * C * F * T;
    for (int i = 0; i < st->depth; i++) {
        want[k].p = &R->saved[i], want[k++].n = (size_t)st->ch[i + 1] * (size_t)st->fr[i + 1] * T;
        want[k].p = &R->saved_t[i], want[k++].n = (size_t)st->ch[i + 1] * st->tl[i + 1];
    }
    want[k].p = &R->tx, want[k++].n = N1 * Ct;
    want[k].p = &R->tx2, want[k++].n = N1 * Ct;
    want[k].p = &R->txt, want[k++].n = N2 * Ct;
    want[k].p = &R->txt2, want[k++].n = N2 * Ct;
    want[k].p = &R->dx, want[k++].n = C * Lp;
    want[k].p = &R->spec, want[k++].n = C * T * (F + 1) * 2 > SC * (T + 4) * (size_t)st->nfft
                                            ? C * T * (F + 1) * 2 : SC * (T + 4) * (size_t)st->nfft;
    want[k].p = &R->frames, want[k++].n = C * T * (size_t)st->nfft;
    want[k].p = &R->vec, want[k++].n = 4 * T;
    want[k].p = &R->zin, want[k++].n = SC * (T + 4) * (F + 1) * 2;
    want[k].p = &R->ola, want[k++].n = SC * Lp;
    want[k].p = &R->zero, want[k++].n = 16;
    for (size_t i = 0; i < k; i++) {
        int rc = sl_op_alloc(ctx, (void **)want[i].p, want[i].n * sizeof(float));
        if (rc < 0) {
            run_free(ctx, R);
            return rc;
        }
    }
    R->direct = !strcmp(sl_op_ctx_backend(ctx), "cpu");
    R->host_mag = malloc(sizeof(float) * 2 * C * F * T);
    R->host = malloc(sizeof(float) * (SC * Lp + SC * st->L + C * Lp));
    if (!R->host_mag || !R->host) {
        run_free(ctx, R);
        return sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
    }
    /* _ispec's input: the zero bin on top and two zero frames each side stay zero (irfft
     * does not modify its input; each segment's permute writes only the rest), written here
     * from one zero float (strides 0), so that no whole buffer of zeros is made and copied */
    const float zeros[16] = {0};
    int rc = sl_op_upload(ctx, R->zero, zeros, sizeof zeros);
    const size_t Tz = T + 4, fz = (F + 1) * 2;
    const sl_permute_args zp[] = {
        {{1, SC, 2, fz}, R->zero, {0, 0, 0, 0}, R->zin, {0, Tz * fz, fz, 1}},                /* frames 0, 1 */
        {{1, SC, 2, fz}, R->zero, {0, 0, 0, 0}, R->zin + (T + 2) * fz, {0, Tz * fz, fz, 1}}, /* T+2, T+3 */
        {{1, SC, T, 2}, R->zero, {0, 0, 0, 0}, R->zin + 2 * fz + 2 * F, {0, Tz * fz, fz, 1}}, /* bin F */
    };
    for (size_t i = 0; i < sizeof zp / sizeof zp[0] && rc >= 0; i++)
        rc = sl_op_permute(ctx, &zp[i]);
    if (rc < 0)
        run_free(ctx, R);
    return rc < 0 ? rc : 0;
}

/* Fills vec[0..T) with a, vec[T..2T) with b, vec[2T..3T) with c, vec[3T..4T) with d. */
static int put_vec(sl_op_ctx *ctx, float *vec, size_t T, float a, float b, float c, float d, float *host)
{
    for (size_t t = 0; t < T; t++)
        host[t] = a, host[T + t] = b, host[2 * T + t] = c, host[3 * T + t] = d;
    return sl_op_upload(ctx, vec, host, 4 * T * sizeof(float));
}

/* mean and unbiased std (torch's Tensor.std) of n floats, in double. */
static void mean_std(const float *x, size_t n, double *mean, double *std)
{
    double s = 0, v = 0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++)
        v += (x[i] - *mean) * (x[i] - *mean);
    *std = n > 1 ? sqrt(v / (double)(n - 1)) : 0.0;
}

/* Block of the spectrogram steps (spec_in: frames, spec_out: frequency rows) of one channel: on
 * the CPU backend about 64 K floats of spectrogram per thread, so that each step reads what the
 * one before wrote from the cache; elsewhere 0: every channel in one call of each op. A block
 * runs the same ops on the same elements, so its size never changes a result (unit.htdemucs
 * checks the bits). SL_HTDEMUCS_SPEC_BLOCK=N in the environment sets it (0: one call). */
static size_t spec_block(sl_op_ctx *ctx, size_t per, size_t max)
{
    const char *e = getenv("SL_HTDEMUCS_SPEC_BLOCK");
    size_t n;
    if (e && *e)
        n = atol(e) > 0 ? (size_t)atol(e) : 0;
    else if (strcmp(sl_op_ctx_backend(ctx), "cpu"))
        n = 0;
    else {
        n = ((size_t)1 << 16) * (size_t)sl_op_ctx_threads(ctx) / per;
        n = n ? n : 1;
    }
    return n < max ? n : max;
}

/* _spec after the padding (dx [C][Lp] uploaded): frames 2 .. T+1 of the centred STFT, complex as
 * channels -> xin [C][2][F][T] (the last bin dropped), nb frames of one channel at a time
 * (0: all at once). */
static int spec_in(sl_op_ctx *ctx, const hd_state *st, hd_run *R, const sl_stft_cfg *cfg, float scale, size_t nb)
{
    int rc;
    const size_t T = (size_t)st->T, F = (size_t)st->F, C = (size_t)st->C, nfft = (size_t)st->nfft;
    const size_t Lp = T * (size_t)st->hl + 2 * (size_t)st->pad, fz = (F + 1) * 2;
    const size_t ng = nb ? 1 : C, step = nb ? nb : T;
    for (size_t c0 = 0; c0 < C; c0 += ng)
        for (size_t t0 = 0; t0 < T; t0 += step) {
            const size_t n = T - t0 < step ? T - t0 : step;
            TRY(sl_op_frame(ctx, cfg, R->dx + c0 * Lp, ng, Lp, 2 + t0, n, st->window, R->frames));
            TRY(sl_op_rfft(ctx, (int)nfft, ng * n, R->frames, R->spec, scale));
            sl_permute_args pm = {{ng, 2, F, n}, R->spec, {n * fz, 1, 2, fz}, R->xin + c0 * 2 * F * T + t0,
                                  {2 * F * T, F * T, T, 1}};
            TRY(sl_op_permute(ctx, &pm));
        }
    return 0;
}

/* The normalisation undone (vec[2T..4T): mean / std, std) on cur [SC][2][F][T] in place, then
 * _ispec: one zero bin on top and two zero frames each side (zin's, cleared by run_alloc; the
 * permute fills the rest), the inverse STFT -> ola [SC][Lp]. nf frequency rows (of both the
 * real and imaginary planes) of one channel at a time (0: all at once); each channel's inverse
 * FFT and overlap-add after its rows. In channel blocks (nf > 0) the channels of a source whose
 * bag weight w[s] is 0 are left out: their output is multiplied by 0 (forward does not read it);
 * and each channel goes through the first channel's part of zin and spec (a channel is done with
 * them before the next starts), so that one channel's worth of them is ever touched. */
static int spec_out(sl_op_ctx *ctx, const hd_state *st, hd_run *R, float *cur, const sl_stft_cfg *cfg, float scale,
                    size_t nf, const float *w)
{
    int rc;
    const size_t T = (size_t)st->T, F = (size_t)st->F, SC = (size_t)(st->C * st->S), nfft = (size_t)st->nfft;
    const size_t Lp = T * (size_t)st->hl + 2 * (size_t)st->pad, fz = (F + 1) * 2, Tz = T + 4;
    const size_t ng = nf ? 1 : SC, step = nf ? nf : F;
    for (size_t s0 = 0; s0 < SC; s0 += ng) {
        if (nf && w && w[s0 / (size_t)st->C] == 0.0f)
            continue;
        float *x = cur + s0 * 2 * F * T, *z = nf ? R->zin : R->zin + s0 * Tz * fz;
        float *sp = nf ? R->spec : R->spec + s0 * Tz * nfft;
        for (size_t f0 = 0; f0 < F; f0 += step) {
            const size_t n = F - f0 < step ? F - f0 : step;
            sl_affine_args dn = {2 * ng, n, T, x + f0 * T, T, F * T, R->vec + 2 * T, R->vec + 3 * T, 0,
                                 SL_ACT_NONE, x + f0 * T, T, F * T, NULL, 0, 0};
            TRY(sl_op_affine(ctx, &dn));
            sl_permute_args pz = {{ng, T, n, 2}, x + f0 * T, {2 * F * T, 1, T, F * T}, z + 2 * fz + 2 * f0,
                                  {Tz * fz, fz, 2, 1}};
            TRY(sl_op_permute(ctx, &pz));
        }
        TRY(sl_op_irfft(ctx, (int)nfft, ng * Tz, z, sp, scale));
        TRY(sl_op_overlap_add(ctx, cfg, ng, Tz, sp, st->window, Lp, R->ola + s0 * Lp));
    }
    return 0;
}

/* _spec of mix[C][L] (host) and its normalisation by the mean / std of all its values: the reflect
 * padding on the host, frames 2 .. T+1 of the centred STFT into xin [C][2][F][T], normalised in
 * place; vec [4T] keeps -mean, 1 / (1e-5 + std), mean / std, std (spec_out undoes it). */
static int spec_norm(sl_op_ctx *ctx, const hd_state *st, hd_run *R, const float *const *mix, const sl_stft_cfg *cfg,
                     float scale, hd_dump *D)
{
    int rc;
    const size_t T = (size_t)st->T, F = (size_t)st->F, C = (size_t)st->C, L = st->L, hl = (size_t)st->hl;
    const size_t pad = (size_t)st->pad, Lp = T * hl + 2 * pad;
    float *h = R->direct ? R->dx : R->host;
    for (size_t c = 0; c < C; c++)
        for (size_t j = 0; j < Lp; j++) {
            long s = (long)j - (long)pad;
            if (s < 0)
                s = -s;
            if (s >= (long)L)
                s = 2 * ((long)L - 1) - s;
            h[c * Lp + j] = mix[c][s];
        }
    if (!R->direct)
        TRY(sl_op_upload(ctx, R->dx, h, C * Lp * sizeof(float)));
    TRY(spec_in(ctx, st, R, cfg, scale, spec_block(ctx, 2 * F, T)));
    const float *mag = R->xin;
    if (!R->direct) {
        TRY(sl_op_download(ctx, R->host_mag, R->xin, 2 * C * F * T * sizeof(float)));
        mag = R->host_mag;
    }
    if (D && D->mag)
        memcpy(D->mag, mag, 2 * C * F * T * sizeof(float));
    double mean, std;
    mean_std(mag, 2 * C * F * T, &mean, &std);
    TRY(put_vec(ctx, R->vec, T, (float)-mean, (float)(1.0 / (1e-5 + std)), (float)(mean / std), (float)std,
                R->host_mag));
    sl_affine_args nz = {1, 2 * C * F, T, R->xin, T, 0, R->vec, R->vec + T, 0, SL_ACT_NONE, R->xin, T, 0, NULL, 0, 0};
    return sl_op_affine(ctx, &nz);
}

/* The model m of st on mix[C][L] (host) -> out[S*C] rows of L (host, accumulated with weight w[s] when acc).
 * A bag's models after the first (acc) take the normalised spectrogram of the segment (xin, vec)
 * that the first left: the same input, the same bits; sources of weight 0 are neither inverted
 * nor added (0 * y), a first model writes zeros for them. */
static int forward(sl_op_ctx *ctx, const hd_state *st, int m, hd_run *R, const float *const *mix,
                   float *const *out, const float *w, int acc, hd_dump *D)
{
    int rc;
    const hd_net *nt = &st->net[m];
    const size_t T = (size_t)st->T, F = (size_t)st->F, C = (size_t)st->C, L = st->L, hl = (size_t)st->hl;
    const size_t pad = (size_t)st->pad, Lp = T * hl + 2 * pad, SC = C * (size_t)st->S, Ct = (size_t)st->Ct;
    float *h = R->host;
    const sl_stft_cfg cfg = {st->nfft, (int)hl, 1, SL_PAD_REFLECT, 1};
    const float scale = 1.0f / sqrtf((float)st->nfft);
    if (!acc)
        TRY(spec_norm(ctx, st, R, mix, &cfg, scale, D));
    double meant, stdt;
    /* the time branch input, normalised on the host */
    double s = 0, v = 0;
    for (size_t c = 0; c < C; c++)
        for (size_t j = 0; j < L; j++)
            s += mix[c][j];
    meant = s / (double)(C * L);
    for (size_t c = 0; c < C; c++)
        for (size_t j = 0; j < L; j++)
            v += (mix[c][j] - meant) * (mix[c][j] - meant);
    stdt = sqrt(v / (double)(C * L - 1));
    float *hx = R->direct ? R->tcur : h;
    for (size_t c = 0; c < C; c++)
        for (size_t j = 0; j < L; j++)
            hx[c * L + j] = (float)((mix[c][j] - meant) / (1e-5 + stdt));
    if (!R->direct)
        TRY(sl_op_upload(ctx, R->tcur, h, C * L * sizeof(float)));
    /* encoders */
    const float *x = R->xin, *xt = R->tcur;
    for (int i = 0; i < st->depth; i++) {
        TRY(encode(ctx, st, &nt->enc[i], (size_t)st->fr[i], T, x, R->saved[i], &R->B));
        const size_t n = (size_t)st->ch[i + 1] * (size_t)st->fr[i + 1] * T;
        if (D)
            TRY(dump(ctx, D->enc[i], R->saved[i], n));
        if (i == 0 && nt->emb)
            TRY(ew(ctx, n, R->saved[0], nt->emb, SL_ACT_NONE, R->saved[0]));
        TRY(encode(ctx, st, &nt->tenc[i], 1, st->tl[i], xt, R->saved_t[i], &R->B));
        if (D)
            TRY(dump(ctx, D->tenc[i], R->saved_t[i], (size_t)st->ch[i + 1] * st->tl[i + 1]));
        x = R->saved[i];
        xt = R->saved_t[i];
    }
    /* cross transformer on tokens [t1 fr][C] and [t2][C] */
    const size_t Fp = (size_t)st->fr[st->depth], T2 = st->tl[st->depth], N1 = Fp * T;
    const size_t Cx = (size_t)st->ch[st->depth];
    if (nt->up.w) {
        TRY(conv1(ctx, &nt->up, N1, 1, 1, 0, 0, 1, SL_ACT_NONE, x, R->cur));
        TRY(conv1(ctx, &nt->up_t, T2, 1, 1, 0, 0, 1, SL_ACT_NONE, xt, R->tcur));
        x = R->cur;
        xt = R->tcur;
    }
    sl_permute_args p1 = {{1, T, Fp, Ct}, x, {0, 1, T, Fp * T}, R->tx, {0, Fp * Ct, Ct, 1}};
    sl_permute_args p2 = {{1, 1, T2, Ct}, xt, {0, 0, 1, T2}, R->txt, {0, 0, Ct, 1}};
    TRY(sl_op_permute(ctx, &p1));
    TRY(sl_op_permute(ctx, &p2));
    if (nt->nin_g) {
        TRY(layernorm(ctx, N1, Ct, nt->nin_g, nt->nin_b, R->tx, R->tx));
        TRY(layernorm(ctx, T2, Ct, nt->nint_g, nt->nint_b, R->txt, R->txt));
    }
    TRY(ew(ctx, N1 * Ct, R->tx, st->pos2d, SL_ACT_NONE, R->tx));
    TRY(ew(ctx, T2 * Ct, R->txt, st->pos1d, SL_ACT_NONE, R->txt));
    float *a1 = R->tx, *a2 = R->txt, *b1 = R->tx2, *b2 = R->txt2;
    for (int i = 0; i < st->t_layers; i++) {
        if (!nt->xl[i].cross) {
            TRY(xlayer(ctx, st, &nt->xl[i], N1, a1, 0, NULL, a1, &R->B));
            TRY(xlayer(ctx, st, &nt->xlt[i], T2, a2, 0, NULL, a2, &R->B));
        } else {
            TRY(xlayer(ctx, st, &nt->xl[i], N1, a1, T2, a2, b1, &R->B));
            TRY(xlayer(ctx, st, &nt->xlt[i], T2, a2, N1, a1, b2, &R->B));
            float *t1 = a1, *t2 = a2;
            a1 = b1, a2 = b2, b1 = t1, b2 = t2;
        }
    }
    sl_permute_args q1 = {{1, Ct, Fp, T}, a1, {0, 1, Ct, Fp * Ct}, R->nxt, {0, Fp * T, T, 1}};
    sl_permute_args q2 = {{1, 1, Ct, T2}, a2, {0, 0, 1, Ct}, R->tnxt, {0, 0, T2, 1}};
    TRY(sl_op_permute(ctx, &q1));
    TRY(sl_op_permute(ctx, &q2));
    if (D) {
        TRY(dump(ctx, D->xf, R->nxt, Ct * N1));
        TRY(dump(ctx, D->xt, R->tnxt, Ct * T2));
    }
    float *cur = R->nxt, *nxt = R->cur, *tcur = R->tnxt, *tnxt = R->tcur;
    if (nt->down.w) {
        TRY(conv1(ctx, &nt->down, N1, 1, 1, 0, 0, 1, SL_ACT_NONE, R->nxt, R->cur));
        TRY(conv1(ctx, &nt->down_t, T2, 1, 1, 0, 0, 1, SL_ACT_NONE, R->tnxt, R->tcur));
        cur = R->cur, nxt = R->nxt, tcur = R->tcur, tnxt = R->tnxt;
    }
    (void)Cx;
    /* decoders, innermost first; at each level the time layer first, so that the outermost
     * frequency layer (without a norm after its transposed convolution, which goes through
     * B->b) writes the largest output of all into B->b, dead by then and already touched by the
     * rewrites, rather than into memory touched for it alone */
    for (int idx = 0; idx < st->depth; idx++) {
        const int lv = st->depth - 1 - idx;
        TRY(decode(ctx, st, &nt->tdec[idx], 1, st->tl[lv + 1], tcur, R->saved_t[lv], st->tl[lv], tnxt, &R->B));
        float *fo = idx == st->depth - 1 && !nt->dec[idx].norm_b.g ? R->B.b : nxt;
        TRY(decode(ctx, st, &nt->dec[idx], (size_t)st->fr[lv + 1], T, cur, R->saved[lv], 0, fo, &R->B));
        const size_t cin = lv ? (size_t)st->ch[lv] : 2 * SC;
        if (D) {
            TRY(dump(ctx, D->dec[idx], fo, cin * (size_t)st->fr[lv] * T));
            TRY(dump(ctx, D->tdec[idx], tnxt, (lv ? (size_t)st->ch[lv] : SC) * st->tl[lv]));
        }
        float *t = cur;
        cur = fo, nxt = t;
        t = tcur, tcur = tnxt, tnxt = t;
    }
    TRY(spec_out(ctx, st, R, cur, &cfg, scale, spec_block(ctx, 2 * T, F), w));
    const float *hs = R->direct ? R->ola : h, *ht = R->direct ? tcur : h + SC * Lp;
    for (size_t sc = 0; sc < SC && !R->direct; sc++)
        if (!w || w[sc / C] != 0.0f) {
            TRY(sl_op_download(ctx, h + sc * Lp, R->ola + sc * Lp, Lp * sizeof(float)));
            TRY(sl_op_download(ctx, h + SC * Lp + sc * L, tcur + sc * L, L * sizeof(float)));
        }
    for (size_t sc = 0; sc < SC; sc++) {
        const float wt = w ? w[sc / C] : 1.0f;
        if (wt == 0.0f) {
            if (!acc)
                memset(out[sc], 0, L * sizeof(float));
            continue;
        }
        for (size_t j = 0; j < L; j++) {
            const float y = hs[sc * Lp + pad + j] + (ht[sc * L + j] * (float)stdt + (float)meant);
            out[sc][j] = acc ? out[sc][j] + wt * y : wt * y;
        }
    }
    return 0;
}

/* ---- the model interface ---- */

typedef struct {
    hd_state st;
    hd_run R;
    float *seg;   /* [C][L] padded segment */
    float *tmp;   /* [S][C][L]: the output of a segment shorter than L (a whole one goes to the caller's rows) */
} hd_model;

/* One segment: in[C][n], n <= L (zeros appended, as the package's forward pads), out[S][C][n]. */
static int run_segment(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out, hd_dump *D)
{
    hd_model *M = m->impl;
    const hd_state *st = &M->st;
    const size_t C = (size_t)st->C, L = st->L, S = (size_t)st->S;
    if (n > L)
        return sl_seterr(SL_EINVAL, "separation model htdemucs: a segment of %zu samples is longer than the "
                                    "model's %zu", n, L);
    const float *rows[8];
    for (size_t c = 0; c < C; c++) {
        memcpy(M->seg + c * L, in[c], n * sizeof(float));
        memset(M->seg + c * L + n, 0, (L - n) * sizeof(float));
        rows[c] = M->seg + c * L;
    }
    float tot[SL_MAX_SOURCES] = {0}, wn[HD_MAX_MODELS][SL_MAX_SOURCES];
    for (int k = 0; k < st->n_models; k++)
        for (size_t s = 0; s < S; s++)
            tot[s] += st->weights[k][s];
    for (int k = 0; k < st->n_models; k++)
        for (size_t s = 0; s < S; s++)
            wn[k][s] = st->weights[k][s] / tot[s];
    float *orows[SL_MAX_SOURCES * 8];
    for (size_t s = 0; s < S; s++)
        for (size_t c = 0; c < C; c++)
            orows[s * C + c] = n == L ? out[s][c] : M->tmp + (s * C + c) * L;
    int rc = 0;
    for (int k = 0; k < st->n_models && !rc; k++)
        rc = forward(m->ctx, st, k, &M->R, rows, orows, st->n_models > 1 ? wn[k] : NULL, k > 0, k ? NULL : D);
    if (rc < 0 || n == L)
        return rc < 0 ? rc : 0;
    for (size_t s = 0; s < S; s++)
        for (size_t c = 0; c < C; c++)
            memcpy(out[s][c], M->tmp + (s * C + c) * L, n * sizeof(float));
    return 0;
}

static int hd_sep_run(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out)
{
    return run_segment(m, in, n, out, NULL);
}

int sl_htdemucs_run_stages(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out,
                           float *const *stages)
{
    hd_model *M = m->impl;
    hd_dump D;
    memset(&D, 0, sizeof D);
    const int depth = M->st.depth;
    D.mag = stages[0];
    for (int i = 0; i < depth; i++) {
        D.enc[i] = stages[1 + i];
        D.tenc[i] = stages[1 + depth + i];
        D.dec[i] = stages[3 + 2 * depth + i];
        D.tdec[i] = stages[3 + 3 * depth + i];
    }
    D.xf = stages[1 + 2 * depth];
    D.xt = stages[2 + 2 * depth];
    return run_segment(m, in, n, out, &D);
}

size_t sl_htdemucs_segment(const sl_sep_model *m) { return ((const hd_model *)m->impl)->st.L; }

static void hd_close(sl_sep_model *m)
{
    hd_model *M = m->impl;
    if (!M)
        return;
    run_free(m->ctx, &M->R);
    hd_free(m->ctx, &M->st);
    free(M->seg);
    free(M->tmp);
    free(M);
    m->impl = NULL;
}

int sl_htdemucs_init(sl_sep_model *m, const char *weights, const sl_cfg_opts *opts)
{
    const char *sec = "separation.options";
    int rc = sl_op_require(m->ctx, hd_ops, sizeof hd_ops / sizeof hd_ops[0], "separation model htdemucs");
    if (rc < 0)
        return rc;
    double overlap = 0.25;
    int shifts = -1, n_off = 0;
    long offs[SL_SEP_MAX_SHIFTS];
    const sl_cfg_opt *o_off = NULL;
    for (size_t i = 0; opts && i < opts->n; i++) {
        const sl_cfg_opt *o = &opts->items[i];
        rc = !strcmp(o->key, "overlap") ? sl_model_opt_double(o, sec, 0.0, 0.99, &overlap)
             : !strcmp(o->key, "shifts") ? sl_model_opt_int(o, sec, 0, SL_SEP_MAX_SHIFTS, 0, &shifts)
             : !strcmp(o->key, "shift_offsets")
                 ? sl_model_opt_int_list((o_off = o), sec, 0, 1L << 30, SL_SEP_MAX_SHIFTS, offs, &n_off)
                 : sl_model_opt_error(o, sec, "unknown option of model htdemucs (known: overlap, shifts, shift_offsets)");
        if (rc < 0)
            return rc;
    }
    if (o_off && shifts >= 0 && shifts != n_off)
        return sl_model_opt_error(o_off, sec, "%d offsets for shifts %d", n_off, shifts);
    if (!weights || !*weights)
        return sl_seterr(SL_ECONFIG, "key 'separation.weights': separation model 'htdemucs' needs a weights file "
                                     "(.safetensors from tools/convert_htdemucs.py)");
    hd_model *M = calloc(1, sizeof *M);
    if (!M)
        return sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
    m->impl = M;
    m->close = hd_close;
    m->run = hd_sep_run;
    hd_state *st = &M->st;
    if ((rc = hd_load(m->ctx, st, weights)) < 0)
        return rc;
    if (st->C > 8)
        return sl_seterr(SL_EFORMAT, "separation model htdemucs: %s: %d audio channels (at most 8)", weights, st->C);
    if ((rc = run_alloc(m->ctx, st, &M->R)) < 0)
        return rc;
    M->seg = malloc(sizeof(float) * (size_t)st->C * st->L);
    M->tmp = malloc(sizeof(float) * (size_t)st->S * st->C * st->L);
    if (!M->seg || !M->tmp)
        return sl_seterr(SL_ENOMEM, "separation model htdemucs: out of memory");
    sl_sep_info *info = &m->info;
    info->name = "htdemucs";
    info->sample_rate = st->sr;
    info->channels = st->C;
    info->n_sources = st->S;
    for (int s = 0; s < st->S; s++)
        info->sources[s] = st->names[s];
    info->split_segment = st->L;
    info->split_overlap = overlap;
    /* apply_model's max_shift is int(0.5 * samplerate) */
    for (int i = 0; i < n_off; i++)
        if (offs[i] > st->sr / 2)
            return sl_model_opt_error(o_off, sec, "offset %ld is above max_shift %d (half a second at %d Hz)", offs[i],
                                      st->sr / 2, st->sr);
    info->split_shifts = o_off ? n_off : shifts > 0 ? shifts : 0;
    info->split_n_offsets = n_off;
    memcpy(info->split_offsets, offs, sizeof(long) * (size_t)n_off);
    snprintf(info->params, sizeof info->params, "models=%d channels=%d depth=%d nfft=%d t_layers=%d heads=%d "
             "segment=%zu samples sources=%d", st->n_models, st->channels, st->depth, st->nfft, st->t_layers,
             st->t_heads, st->L, st->S);
    return 0;
}
