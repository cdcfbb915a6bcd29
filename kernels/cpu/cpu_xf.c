/* CPU transformer ops: row normalisation, GLU, attention, and the band-split
 * gather / mask scatter. Attention is the textbook computation per sequence and
 * head: rotated copies of q and k, the [tq][k_len] scores by one GEMM, an exact
 * softmax per row (max subtracted, the sum in double), the output by a second
 * GEMM straight into its strided place, then the gate. Short sequences (up to
 * 256 x 256 scores) take the register-blocked kernels of cpu_attn.c instead, and
 * longer ones those of cpu_attn.c (AVX-512) where their head widths fit; without
 * AVX-512, sequences of any length take cpu_attn_flash2.c (AVX2 / FMA) where theirs
 * fit (a multiple of 8 up to 64), cpu_attn.c's AVX2 kernel the other short ones. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

/* Long rows (a GroupNorm(1) over a whole tensor) are summed in at most ROW_BLOCKS blocks of at least
 * ROW_BLOCK_MIN floats (a multiple of 64), each block by sl_cpu_row_sum, the blocks' sums then added in
 * order: the blocks depend on the row's length alone, so the sums have the same bits whichever threads
 * run the blocks (sl_cpu_norm spreads them over its threads when a row is alone). */
#define ROW_BLOCKS 256
#define ROW_BLOCK_MIN ((size_t)1 << 15)

static size_t row_block(size_t n)
{
    const size_t b = (n + ROW_BLOCKS - 1) / ROW_BLOCKS;
    return b < ROW_BLOCK_MIN ? ROW_BLOCK_MIN : (b + 63) & ~(size_t)63;
}

typedef struct {
    const float *x;
    size_t n, blk, parts;
    double c;
    int sq;
    double *sums; /* [blocks] */
} row_sum_job;

static void row_sum_body(void *v, size_t t, int tid)
{
    (void)tid;
    const row_sum_job *J = v;
    size_t lo, hi;
    sl_pool_range((J->n + J->blk - 1) / J->blk, J->parts, t, &lo, &hi);
    for (size_t b = lo; b < hi; b++) {
        const size_t e = (b + 1) * J->blk < J->n ? (b + 1) * J->blk : J->n;
        J->sums[b] = sl_cpu_row_sum(J->x + b * J->blk, e - b * J->blk, J->c, J->sq);
    }
}

/* sl_cpu_row_sum of a row of any length, its blocks over `parts` threads of pool (NULL: here) */
static double row_sum(sl_pool *pool, size_t parts, const float *x, size_t n, double c, int sq)
{
    const size_t blk = row_block(n), nb = (n + blk - 1) / blk;
    if (nb <= 1)
        return sl_cpu_row_sum(x, n, c, sq);
    double sums[ROW_BLOCKS];
    row_sum_job J = {x, n, blk, parts < nb ? parts : nb, c, sq, sums};
    if (pool && J.parts > 1)
        sl_pool_for(pool, J.parts, row_sum_body, &J);
    else
        J.parts = 1, row_sum_body(&J, 0, 0);
    double s = 0.0;
    for (size_t b = 0; b < nb; b++)
        s += sums[b];
    return s;
}

/* The statistics of row i of sl_op_norm: mean and 1 / std (RMS: 0 and the scale); the row's blocks
 * over `parts` threads of pool (NULL: on this thread). */
static void norm_stats(const sl_norm_args *a, size_t i, sl_pool *pool, size_t parts, double *mean, double *rstd)
{
    const size_t n = a->dim;
    const float *x = a->x + i * a->ldx;
    if (a->kind == SL_NORM_RMS) {
        double nrm = sqrt(row_sum(pool, parts, x, n, 0.0, 1));
        if (nrm < a->eps)
            nrm = a->eps;
        *mean = 0.0;
        *rstd = (double)(float)(sqrt((double)n) / nrm);
        return;
    }
    *mean = row_sum(pool, parts, x, n, 0.0, 0) / (double)n;
    const double var = row_sum(pool, parts, x, n, *mean, 1) / (double)n;
    *rstd = 1.0 / sqrt(var + a->eps);
}

/* Outputs [j0, j1) of row i of a group norm with glu: runs of both halves within one channel each
 * normalised as norm_apply does (sl_cpu_norm_apply_run), the second into a buffer, then their GLU
 * (sl_cpu_glu_row): the bits of the norm then sl_op_glu. In place each output overwrites only its own
 * first-half input, after reading it. */
static void norm_glu(const sl_norm_args *a, size_t i, double mean, double rstd, size_t j0, size_t j1)
{
    const float *x = a->x + i * a->ldx;
    float *y = a->y + i * a->ldy;
    const size_t cpg = a->channels / a->groups, c0 = (i % a->groups) * cpg, inner = a->inner, h = a->dim / 2;
    float tb[256];
    for (size_t j = j0; j < j1;) {
        size_t m = j1 - j;
        if (m > inner - j % inner)
            m = inner - j % inner;
        if (m > inner - (j + h) % inner)
            m = inner - (j + h) % inner;
        if (m > sizeof tb / sizeof tb[0])
            m = sizeof tb / sizeof tb[0];
        const size_t p = c0 + (j / inner) % cpg, q = c0 + ((j + h) / inner) % cpg;
        sl_cpu_norm_apply_run(y + j, x + j, m, mean, rstd, a->gamma ? a->gamma + p : NULL, a->beta ? a->beta + p : NULL,
                              SL_ACT_NONE);
        sl_cpu_norm_apply_run(tb, x + h + j, m, mean, rstd, a->gamma ? a->gamma + q : NULL,
                              a->beta ? a->beta + q : NULL, SL_ACT_NONE);
        sl_cpu_glu_row(y + j, y + j, tb, m);
        j += m;
    }
}

/* Elements [j0, j1) of row i of sl_op_norm from its statistics: each element the same operations
 * whatever the range, so any split of a row gives the same bits. */
static void norm_apply(const sl_norm_args *a, size_t i, double mean, double rstd, size_t j0, size_t j1)
{
    if (a->kind == SL_NORM_GROUP_GLU) {
        norm_glu(a, i, mean, rstd, j0, j1);
        return;
    }
    const float *x = a->x + i * a->ldx;
    float *y = a->y + i * a->ldy;
    if (a->kind == SL_NORM_RMS) {
        sl_cpu_vec_scale(y + j0, x + j0, (float)rstd, j1 - j0);
        if (a->gamma)
            for (size_t j = j0; j < j1; j++)
                y[j] *= a->gamma[j];
        return;
    }
    if (a->kind == SL_NORM_LAYER) {
        sl_cpu_norm_apply(y + j0, x + j0, j1 - j0, mean, rstd, a->gamma ? a->gamma + j0 : NULL,
                          a->beta ? a->beta + j0 : NULL);
        if (a->act != SL_ACT_NONE)
            sl_cpu_epilogue_row(a->act, j1 - j0, y + j0, NULL, NULL, NULL, y + j0);
        return;
    }
    /* GROUP: runs of `inner` elements share their channel's parameters */
    const size_t cpg = a->channels / a->groups, c0 = (i % a->groups) * cpg, inner = a->inner;
    if (inner == 1) { /* channel-last: consecutive elements, consecutive channels (as a LayerNorm's) */
        for (size_t j = j0; j < j1;) {
            const size_t c = j % cpg, m = j1 - j < cpg - c ? j1 - j : cpg - c;
            sl_cpu_norm_apply(y + j, x + j, m, mean, rstd, a->gamma ? a->gamma + c0 + c : NULL,
                              a->beta ? a->beta + c0 + c : NULL);
            if (a->act != SL_ACT_NONE)
                sl_cpu_epilogue_row(a->act, m, y + j, NULL, NULL, NULL, y + j);
            j += m;
        }
        return;
    }
    for (size_t j = j0; j < j1;) {
        const size_t p = c0 + (j / inner) % cpg, e = (j / inner + 1) * inner, m = (e < j1 ? e : j1) - j;
        sl_cpu_norm_apply_run(y + j, x + j, m, mean, rstd, a->gamma ? a->gamma + p : NULL,
                              a->beta ? a->beta + p : NULL, a->act);
        j += m;
    }
}

/* Rows [i0, i1) of the norm: each row on its own, so any split gives the same bits. */
static void norm_rows(const sl_norm_args *a, size_t i0, size_t i1)
{
    for (size_t i = i0; i < i1; i++) {
        double mean, rstd;
        norm_stats(a, i, NULL, 1, &mean, &rstd);
        norm_apply(a, i, mean, rstd, 0, a->kind == SL_NORM_GROUP_GLU ? a->dim / 2 : a->dim);
    }
}

typedef struct {
    const sl_norm_args *a;
    size_t parts;
    size_t row;         /* pieces of one row (rows fewer than threads): its index, */
    double mean, rstd;  /* statistics */
} norm_job;

static void norm_body(void *v, size_t t, int tid)
{
    (void)tid;
    const norm_job *J = v;
    size_t lo, hi;
    sl_pool_range(J->a->rows, J->parts, t, &lo, &hi);
    norm_rows(J->a, lo, hi);
}

/* Piece t of row J->row: ranges of whole 64-element runs (of outputs). */
static void norm_piece(void *v, size_t t, int tid)
{
    (void)tid;
    const norm_job *J = v;
    const size_t n = J->a->kind == SL_NORM_GROUP_GLU ? J->a->dim / 2 : J->a->dim, blocks = (n + 63) / 64;
    size_t lo, hi;
    sl_pool_range(blocks, J->parts, t, &lo, &hi);
    hi = hi * 64 < n ? hi * 64 : n;
    if (lo * 64 < hi)
        norm_apply(J->a, J->row, J->mean, J->rstd, lo * 64, hi);
}

/* Elements below which a norm runs on the calling thread alone. */
#define NORM_PAR_MIN ((size_t)1 << 15)

int sl_cpu_norm(sl_op_ctx *ctx, const sl_norm_args *a)
{
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    norm_job J = {a, th < a->rows ? th : (a->rows ? a->rows : 1), 0, 0.0, 0.0};
    if (th > 1 && a->rows < th && a->dim >= NORM_PAR_MIN) {
        /* fewer rows than threads (a GroupNorm(1) over a whole tensor): each row's statistics by
         * blocks over the threads, then its elements in pieces over them */
        J.parts = th;
        for (J.row = 0; J.row < a->rows; J.row++) {
            norm_stats(a, J.row, ctx->pool, th, &J.mean, &J.rstd);
            sl_pool_for(ctx->pool, J.parts, norm_piece, &J);
        }
        return 0;
    }
    if (J.parts == 1 || a->rows * a->dim < NORM_PAR_MIN)
        norm_rows(a, 0, a->rows);
    else
        sl_pool_for(ctx->pool, J.parts, norm_body, &J);
    return 0;
}

static inline float sigmoid_f(float v) { return 1.0f / (1.0f + expf(-v)); }

typedef struct {
    size_t rows, n, ldx, ldy, parts, pieces; /* pieces per row (1: ranges of rows) */
    const float *x;
    float *y;
} glu_job;

static void glu_body(void *v, size_t t, int tid)
{
    (void)tid;
    const glu_job *J = v;
    size_t lo, hi;
    if (J->pieces == 1) {
        sl_pool_range(J->rows, J->parts, t, &lo, &hi);
        for (size_t i = lo; i < hi; i++)
            sl_cpu_glu_row(J->y + i * J->ldy, J->x + i * J->ldx, J->x + i * J->ldx + J->n, J->n);
        return;
    }
    const size_t i = t / J->pieces;
    sl_pool_range((J->n + 15) / 16, J->pieces, t % J->pieces, &lo, &hi);
    lo *= 16;
    hi = hi * 16 < J->n ? hi * 16 : J->n;
    if (lo < hi)
        sl_cpu_glu_row(J->y + i * J->ldy + lo, J->x + i * J->ldx + lo, J->x + i * J->ldx + J->n + lo, hi - lo);
}

int sl_cpu_glu(sl_op_ctx *ctx, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy)
{
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    glu_job J = {rows, n, ldx, ldy, 1, 1, x, y};
    /* in place with ldy < ldx a row's outputs may overwrite inputs not read yet (the
     * serial order reads them first): serial. In place with ldy == ldx every element
     * reads only its own position, as with distinct buffers: rows and pieces of rows
     * are independent. */
    const int shifted = y < x + rows * ldx && x < y + rows * ldy && !(y == x && ldy == ldx);
    if (th > 1 && !shifted && rows * n >= ((size_t)1 << 15)) {
        if (rows >= 2 * th) {
            J.parts = rows < 4 * th ? rows : 4 * th;
        } else {
            J.pieces = (4 * th + rows - 1) / rows;
            J.parts = rows * J.pieces;
        }
    }
    sl_pool_for(J.parts > 1 ? ctx->pool : NULL, J.parts, glu_body, &J);
    return 0;
}

void sl_cpu_rotate_rows(const float *src, size_t ld, size_t rows, int D, const float *rope, float *dst)
{
    for (size_t t = 0; t < rows; t++) {
        const float *s = src + t * ld;
        float *d = dst + t * (size_t)D;
        if (!rope) {
            memcpy(d, s, (size_t)D * sizeof(float));
            continue;
        }
        const float *cs = rope + t * (size_t)D;
        for (int p = 0; p < D / 2; p++) {
            const float c = cs[2 * p], sn = cs[2 * p + 1], x0 = s[2 * p], x1 = s[2 * p + 1];
            d[2 * p] = x0 * c - x1 * sn;
            d[2 * p + 1] = x1 * c + x0 * sn;
        }
    }
}

/* Query rows per block of the library path: the block's scores (rows x k_len) stay in L2. */
static size_t attn_rows(size_t kl)
{
    size_t r = ((size_t)1 << 18) / (kl ? kl : 1);
    r = r < 16 ? 16 : r > 512 ? 512 : r;
    return r & ~(size_t)15;
}

/* The pair by two library GEMMs per block of query rows around the exact softmax (long
 * sequences, or no AVX2). q and k are read in place when there is no rotation. */
static void attend_blas(const sl_cpu_attn_pair *p, float *ws)
{
    const size_t tq = p->tq, kl = p->kl, D = p->D, rows = attn_rows(kl);
    const float *q = p->q, *k = p->k;
    size_t ldq = p->ldq, ldk = p->ldk;
    float *S = ws;
    if (p->rope) {
        float *qr = ws, *kr = qr + tq * D;
        sl_cpu_rotate_rows(p->q, p->ldq, tq, (int)D, p->rope, qr);
        sl_cpu_rotate_rows(p->k, p->ldk, kl, (int)D, p->rope, kr);
        q = qr, k = kr, ldq = ldk = D;
        S = kr + kl * D;
    }
    for (size_t i0 = 0; i0 < tq; i0 += rows) {
        const size_t nq = tq - i0 < rows ? tq - i0 : rows;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)kl, (int)D, p->scale, q + i0 * ldq,
                    (int)ldq, k, (int)ldk, 0.0f, S, (int)kl);
        for (size_t i = 0; i < nq; i++) {
            float *s = S + i * kl;
            if (p->bias) {
                const float *bi = p->bias + (i0 + i) * p->ld_bias;
                for (size_t j = 0; j < kl; j++)
                    s[j] += bi[j];
            }
            const float g = p->row_scale ? p->row_scale[i0 + i] : 1.0f;
            if (sl_cpu_softmax_row(s, kl)) {
                if (p->row_scale)
                    sl_cpu_vec_scale(s, s, g, kl);
                continue;
            }
            float mx = -INFINITY;
            for (size_t j = 0; j < kl; j++)
                mx = s[j] > mx ? s[j] : mx;
            double sum = 0;
            for (size_t j = 0; j < kl; j++) {
                s[j] = expf(s[j] - mx);
                sum += s[j];
            }
            const float inv = (float)(1.0 / sum);
            for (size_t j = 0; j < kl; j++)
                s[j] = s[j] * inv * g; /* g = 1 without a gate: exact */
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)D, (int)kl, 1.0f, S, (int)kl, p->v,
                    (int)p->ldv, 0.0f, p->out + i0 * p->ldo, (int)p->ldo);
    }
}

/* Score matrices up to this size (tq x k_len) take the register-blocked kernels of
 * cpu_attn.c; longer sequences the library GEMMs, unless the AVX-512 kernels run (they
 * score blocks of query rows: any length, LONG_KEYS keys for head widths not a multiple of 16). */
#define SMALL_SCORES ((size_t)256 * 256)
#define LONG_KEYS ((size_t)1024)
/* Pairs of at least these many keys and query rows take the AMX tiles at tf32 / bf16 (HT-Demucs's
 * 1344 / 2688 tokens; shorter ones stay with the fp32 kernels, where packing would cost more). */
#define AMX_MIN_KEYS ((size_t)512)
#define AMX_MIN_ROWS ((size_t)64)

/* One (item, head) pair per pool index, each with its own rotated q / k and score
 * rows (per-thread scratch): the pairs are independent. */
typedef struct {
    const sl_attention_args *a;
    float *ws;       /* per thread: attend_blas's or cpu_attn.c's workspace, then the gates */
    size_t ws_stride, gate_at;
    int amx;         /* the pairs on the AMX tiles (cpu_attn_amx.c) */
} attn_job;

static void attn_body(void *v, size_t t, int tid)
{
    const attn_job *J = v;
    const sl_attention_args *a = J->a;
    const int D = a->dim_head;
    const size_t tq = a->tq, tk = a->tk, b = t / (size_t)a->heads, h = t % (size_t)a->heads;
    float *qr = J->ws + (size_t)tid * J->ws_stride;
    const size_t kl = a->k_len ? (size_t)a->k_len[b] : tk;
    const size_t off = h * (size_t)D;
    float *o = a->out + b * a->stride_o + off;
    /* the gate of each query row, sigmoid(gate), after the kernels' workspace */
    float *gs = a->gate ? qr + J->gate_at : NULL;
    if (gs)
        for (size_t i = 0; i < tq; i++)
            gs[i] = sigmoid_f(a->gate[b * a->stride_gate + i * a->ld_gate + h]);
    const sl_cpu_attn_pair P = {.row_scale = gs, .tq = tq, .kl = kl, .D = (size_t)D, .scale = a->scale,
                                .q = a->q + b * a->stride_q + off, .k = a->k + b * a->stride_k + off,
                                .v = a->v + b * a->stride_v + off, .rope = a->rope,
                                .bias = a->bias ? a->bias + b * a->stride_bias_b + h * a->stride_bias_h : NULL,
                                .ldq = a->ldq, .ldk = a->ldk, .ldv = a->ldv, .ld_bias = a->ld_bias, .out = o,
                                .ldo = a->ldo};
    /* the AVX-512 kernels take long sequences of any length when the head width is a multiple of
     * 16 (HT-Demucs's 1344 / 2688 keys of 48-wide heads: 1.5x the blocked library path), else up
     * to LONG_KEYS keys (beyond, their scalar tail columns make the library path faster) */
    if (J->amx && sl_cpu_attn_amx(&P, qr))
        ;
    /* without AVX-512, sequences of any length with head widths a multiple of 8 up to 64 take
     * the AVX2 kernel of an online softmax (cpu_attn_flash2.c): for long ones rather than the
     * library path, for short ones (Swin's windows, per-band frames, text) rather than
     * cpu_attn.c's AVX2 kernel (bench_attn at 1 thread on an AMD EPYC Zen 3: CLAP's windows
     * 16.5 -> 37 GFLOP/s, 77 text tokens 20 -> 47, BS-RoFormer's 62 bands 18 -> 32) */
    else if (!sl_cpu_attn_any_length() && sl_cpu_attn_long(&P, qr))
        ;
    else if ((tq * kl > SMALL_SCORES && (!sl_cpu_attn_any_length() || (kl > LONG_KEYS && D % 16))) ||
             !sl_cpu_attn_small(&P, qr))
        attend_blas(&P, qr);
}
int sl_cpu_attention(sl_op_ctx *ctx, const sl_attention_args *a)
{
    const int D = a->dim_head;
    const size_t tq = a->tq, tk = a->tk;
    for (size_t b = 0; b < a->batch; b++) {
        const size_t kl = a->k_len ? (size_t)a->k_len[b] : tk;
        if (kl < 1 || kl > tk)
            return sl_seterr(SL_EINVAL, "op attention: k_len[%zu] = %zu outside 1..%zu", b, kl, tk);
    }
    const size_t pairs = a->batch * (size_t)a->heads;
    size_t th = (size_t)sl_pool_threads(ctx->pool);
    if (th > pairs)
        th = pairs ? pairs : 1;
    /* a block of attend_blas: nq x kl scores, nq <= attn_rows(kl), so at most 2^18 + 16 kl */
    const size_t blk = ((size_t)1 << 18) + 16 * tk;
    size_t stride = (tq + tk) * (size_t)D + (tq * tk < blk ? tq * tk : blk);
    const size_t small = sl_cpu_attn_small_ws(tq, tk, (size_t)D);
    stride = stride > small ? stride : small;
    if (sl_cpu_attn_long_ws(tq, tk, (size_t)D) > stride)
        stride = sl_cpu_attn_long_ws(tq, tk, (size_t)D);
    /* runtime.precision tf32 / bf16: long sequences' products on the AMX tiles */
    const sl_precision prec = sl_op_ctx_precision(ctx);
    const int amx = (prec == SL_PREC_TF32 || prec == SL_PREC_BF16) && tk >= AMX_MIN_KEYS && tq >= AMX_MIN_ROWS && sl_cpu_amx();
    if (amx && sl_cpu_attn_amx_ws(tq, tk, (size_t)D) > stride)
        stride = sl_cpu_attn_amx_ws(tq, tk, (size_t)D);
    stride = (stride + 15) & ~(size_t)15;
    const size_t gate_at = stride;
    if (a->gate)
        stride += (tq + 15) & ~(size_t)15;
    float *ws = sl_cpu_scratch(ctx, th * stride);
    if (!ws)
        return SL_ENOMEM;
    attn_job J = {a, ws, stride, gate_at, amx};
    /* a pool of more threads than pairs runs at most `pairs` loop bodies: tid < th */
    sl_pool_for(th > 1 ? ctx->pool : NULL, pairs, attn_body, &J);
    return 0;
}

int sl_cpu_spec_gather(sl_op_ctx *ctx, const sl_band_geom *g, const float *spec, float *out)
{
    (void)ctx;
    for (size_t b = 0; b < g->batch; b++)
        for (size_t t = 0; t < g->T; t++) {
            float *o = out + (b * g->T + t) * g->n_feat * 2;
            for (size_t j = 0; j < g->n_feat; j++) {
                const size_t c = (size_t)g->idx[j] % g->n_ch, f = (size_t)g->idx[j] / g->n_ch;
                const float *z = spec + (((b * g->n_ch + c) * g->T + t) * g->F + f) * 2;
                o[2 * j] = z[0];
                o[2 * j + 1] = z[1];
            }
        }
    return 0;
}

int sl_cpu_mask_scatter(sl_op_ctx *ctx, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                        const int32_t *inv_idx, const float *spec, const float *mask, float *out)
{
    (void)ctx;
    for (size_t b = 0; b < g->batch; b++)
        for (size_t n = 0; n < n_masks; n++)
            for (size_t c = 0; c < g->n_ch; c++)
                for (size_t t = 0; t < g->T; t++) {
                    const float *m = mask + ((b * n_masks + n) * g->T + t) * g->n_feat * 2;
                    const float *z = spec + ((b * g->n_ch + c) * g->T + t) * g->F * 2;
                    float *o = out + (((b * n_masks + n) * g->n_ch + c) * g->T + t) * g->F * 2;
                    for (size_t f = 0; f < g->F; f++) {
                        const size_t bin = f * g->n_ch + c;
                        const int32_t lo = inv_off[bin], hi = inv_off[bin + 1];
                        float mr = 0.0f, mi = 0.0f;
                        for (int32_t e = lo; e < hi; e++) {
                            mr += m[2 * (size_t)inv_idx[e]];
                            mi += m[2 * (size_t)inv_idx[e] + 1];
                        }
                        if (hi - lo > 1) {
                            mr /= (float)(hi - lo);
                            mi /= (float)(hi - lo);
                        }
                        const float zr = z[2 * f], zi = z[2 * f + 1];
                        o[2 * f] = zr * mr - zi * mi;
                        o[2 * f + 1] = zr * mi + zi * mr;
                    }
                }
    return 0;
}
