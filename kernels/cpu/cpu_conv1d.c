/* CPU 1-D convolutions along the len axis of [batch][channels][len][inner]
 * (inner independent columns): conv1d (stride, padding, dilation, groups) and
 * conv_transpose1d. Both are im2col / col2im around OpenBLAS GEMMs on blocks
 * of columns, the scratch bounded by COL_FLOATS per thread whatever the
 * signal (the context's scratch, kept between calls). conv1d splits over
 * (group, column block); the columns of all items in a row form one space, so
 * a block covers part of one item or several whole short items, one GEMM per
 * item's part or whole item (a call shaped by the item alone: an item has the
 * same bits in any batch). im2col copies whole runs (memcpy for stride 1 or
 * inner > 1) and zero-fills the padding. A 1x1 conv1d with stride 1 and no
 * padding reads x in place. conv_transpose1d splits over (item, block of
 * output channels), each part accumulating every input block into its own
 * channels of y (the overlap-add of neighbouring input positions stays inside
 * one part). With a GLU over the channel halves (groups 1, sl_op_conv1d's
 * rule) each block's products go to the scratch and the block's GLU into y: no
 * buffer of the whole convolution. The bias starts the output (the library adds
 * the products with beta 1, skipping its zeroing pass), the activation goes
 * through the vectorised epilogue. Where AVX-512 or AVX2 + FMA runs, conv1d with
 * groups 1, k <= 16 and any stride on inner 1 or >= 16, and conv_transpose1d
 * on inner 1 or >= 16, go without im2col / col2im instead
 * (cpu_conv1d_direct.c). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

/* Floats of im2col / col2im scratch per thread. */
#define COL_FLOATS ((size_t)1 << 20)
/* Columns per GEMM at most (enough for OpenBLAS's full speed, small enough for parts). */
#define COL_MAX ((size_t)8192)

/* y[j] = act(y[j] + b), j < n. */
static void bias_act_row(float *y, size_t n, float b, sl_act act)
{
    if (b != 0.0f)
        sl_cpu_vec_add_scalar(y, b, n);
    if (act != SL_ACT_NONE)
        sl_cpu_epilogue_row(act, n, y, NULL, NULL, NULL, y);
}

/* y[j] = v, j < n. */
static void fill_row(float *y, size_t n, float v)
{
    for (size_t j = 0; j < n; j++)
        y[j] = v;
}

typedef struct {
    const sl_conv1d_args *a;
    size_t len_out, n_cols;  /* output positions and columns (len_out * inner) of one item */
    size_t block, n_blocks;  /* columns per block, blocks per group */
    size_t per_item;         /* blocks per item when a block is part of one item, else 0 (whole items) */
    size_t ws;               /* scratch floats per thread */
    float *scratch;          /* [threads][ws]: im2col columns, then the products of a block spanning items */
    int direct;              /* 1x1, stride 1, no padding: x is the column matrix */
    int glu;                 /* GLU over the channel halves (groups 1, no act), block by block from the scratch */
} c1_job;

/* row[j] = x[t*stride + off][n] (0 outside [0, len)) for the item's columns q0 .. q0 + nc - 1
 * (q = t * inner + n); xc one channel of one item. */
static void c1_gather(const sl_conv1d_args *a, const float *xc, long off, size_t q0, size_t nc, float *row)
{
    const size_t inner = a->inner, len = a->len, S = (size_t)a->stride;
    if (inner == 1) {
        /* valid t: 0 <= t*S + off < len */
        const size_t t1 = q0 + nc;
        size_t lo = off >= 0 ? 0 : ((size_t)(-off) + S - 1) / S;
        size_t hi = (long)len - off <= 0 ? 0 : ((size_t)((long)len - off) + S - 1) / S;
        if (lo < q0)
            lo = q0;
        if (hi > t1)
            hi = t1;
        if (hi < lo)
            hi = lo;
        memset(row, 0, (lo - q0) * sizeof(float));
        if (S == 1) {
            memcpy(row + (lo - q0), xc + (long)lo + off, (hi - lo) * sizeof(float));
        } else {
            const float *s = xc + (long)(lo * S) + off;
            for (size_t t = lo; t < hi; t++, s += S)
                row[t - q0] = *s;
        }
        memset(row + (hi - q0), 0, (t1 - hi) * sizeof(float));
        return;
    }
    size_t q = q0;
    const size_t q1 = q0 + nc;
    while (q < q1) {
        const size_t t = q / inner, n = q % inner, run = inner - n < q1 - q ? inner - n : q1 - q;
        const long p = (long)(t * S) + off;
        if (p >= 0 && (size_t)p < len)
            memcpy(row + (q - q0), xc + (size_t)p * inner + n, run * sizeof(float));
        else
            memset(row + (q - q0), 0, run * sizeof(float));
        q += run;
    }
}

static void c1_body(void *v, size_t part, int tid)
{
    const c1_job *J = v;
    const sl_conv1d_args *a = J->a;
    const size_t G = (size_t)a->groups, Cg = (size_t)a->c_in / G, Og = (size_t)a->c_out / G, k = (size_t)a->k;
    const size_t K = Cg * k, inner = a->inner, len = a->len, NC = J->n_cols;
    const size_t idx = part % J->n_blocks, g = part / J->n_blocks;
    size_t s0, nc;
    if (J->per_item) { /* block idx % per_item of item idx / per_item */
        const size_t jb = (idx % J->per_item) * J->block;
        s0 = idx / J->per_item * NC + jb;
        nc = NC - jb < J->block ? NC - jb : J->block;
    } else { /* whole items */
        s0 = idx * J->block;
        nc = a->batch * NC - s0 < J->block ? a->batch * NC - s0 : J->block;
    }
    float *ws = J->scratch + (size_t)tid * J->ws;
    const float *col = ws;
    if (!J->direct) /* the block's columns, item by item: [K][nc] */
        for (size_t ch = 0; ch < Cg; ch++)
            for (size_t u = 0; u < k; u++) {
                float *row = ws + (ch * k + u) * nc;
                const long off = (long)(u * (size_t)a->dilation) - (long)a->pad_l;
                for (size_t s = s0; s < s0 + nc;) { /* one item's run of columns at a time */
                    const size_t b = s / NC, j = s % NC, run = NC - j < s0 + nc - s ? NC - j : s0 + nc - s;
                    const float *xc = a->x + (b * (size_t)a->c_in + g * Cg + ch) * len * inner;
                    c1_gather(a, xc, off, j, run, row + (s - s0));
                    s += run;
                }
            }
    const float *w = a->wt + g * Og * K;
    /* with a bias, the rows start as the bias and the library adds the products (beta 1): no
     * zeroing pass of its own and no bias pass after */
    const float *bias = a->bias ? a->bias + g * Og : NULL;
    const float beta = bias ? 1.0f : 0.0f;
    float *p = ws + (J->direct ? 0 : K * nc); /* the GLU's products of the block, [Og][nc] */
    /* one library call per item's run of columns (a whole short item, or a block of one long
     * item): its shape (Og x run x K) follows the item's shape alone, never the batch nor the
     * thread count, and the library's sums follow its call shape, so an item gets the same bits
     * in any batch (a model's batch of rows may follow the thread count: sl_cpu_sgemm_part says
     * why the shape matters) */
    for (size_t s = s0; s < s0 + nc;) {
        const size_t b = s / NC, j = s % NC, run = NC - j < s0 + nc - s ? NC - j : s0 + nc - s;
        const float *cb = col + (s - s0);
        size_t ldcol = nc;
        if (J->direct) /* 1x1, stride 1, no padding: the item's x is its column matrix */
            cb = a->x + (b * (size_t)a->c_in + g * Cg) * len * inner + j, ldcol = len * inner;
        float *y = J->glu ? p + (s - s0) : a->y + (b * (size_t)a->c_out + g * Og) * NC + j;
        const size_t ldy = J->glu ? nc : NC;
        for (size_t o = 0; o < Og && bias; o++)
            fill_row(y + o * ldy, run, bias[o]);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Og, (int)run, (int)K, 1.0f, w, (int)K, cb,
                    (int)ldcol, beta, y, (int)ldy);
        if (J->glu) { /* the GLU of the run's halves into y */
            const size_t half = Og / 2;
            for (size_t o = 0; o < half; o++)
                sl_cpu_glu_row(a->y + (b * half + o) * NC + j, y + o * nc, y + (half + o) * nc, run);
        } else
            for (size_t o = 0; o < Og; o++)
                bias_act_row(y + o * NC, run, 0.0f, a->act);
        s += run;
    }
}

int sl_cpu_conv1d(sl_op_ctx *ctx, const sl_conv1d_args *a)
{
    if (sl_cpu_conv1d_direct(ctx, a))
        return 0;
    c1_job J = {.a = a, .len_out = sl_conv1d_len_out(a), .glu = a->glu};
    J.n_cols = J.len_out * a->inner;
    const size_t K = (size_t)(a->c_in / a->groups) * (size_t)a->k, Og = (size_t)(a->c_out / a->groups);
    const size_t NC = J.n_cols, threads = (size_t)sl_pool_threads(ctx->pool);
    J.direct = a->k == 1 && a->stride == 1 && a->pad_l == 0 && a->pad_r == 0;
    size_t block = COL_FLOATS / K;
    if (block > COL_MAX)
        block = COL_MAX;
    if (block < 16)
        block = 16;
    /* the library calls (one per item's run of columns in a block) follow the item's shape, never
     * the batch nor the thread count, so that every runtime.threads gives the same bits
     * (sl_cpu_sgemm_part says why) and so does any batch of the same items: a long item in
     * SL_CPU_SPLIT parts at least where the work allows, for the threads to share */
    const size_t S = SL_CPU_SPLIT;
    if (block < NC) { /* parts of one item each, about equal */
        J.per_item = (NC + block - 1) / block;
        if (J.per_item * (size_t)a->groups < S && NC >= 256 * S)
            J.per_item = S;
        J.block = (NC + J.per_item - 1) / J.per_item;
        J.n_blocks = a->batch * J.per_item;
    } else { /* whole items (their columns gathered together, a library call each), enough blocks
              * for the threads */
        size_t items = block / NC;
        if (items > a->batch)
            items = a->batch;
        if ((a->batch + items - 1) / items * (size_t)a->groups < S)
            items = (a->batch + S - 1) / S;
        J.block = items * NC;
        J.n_blocks = (a->batch + items - 1) / items;
    }
    J.ws = (K + Og) * J.block;
    J.scratch = sl_cpu_scratch(ctx, threads * J.ws);
    if (!J.scratch)
        return SL_ENOMEM;
    sl_pool_for(ctx->pool, (size_t)a->groups * J.n_blocks, c1_body, &J);
    return 0;
}

typedef struct {
    const sl_convt1d_args *a;
    size_t o_block, n_oblocks, i_block; /* output channels per part; input positions per GEMM */
    float *scratch;                     /* [threads][o_block * k * i_block * inner] */
} ct_job;

static void ct_body(void *v, size_t part, int tid)
{
    const ct_job *J = v;
    const sl_convt1d_args *a = J->a;
    const size_t k = (size_t)a->k, inner = a->inner, len = a->len, lo = a->len_out, S = (size_t)a->stride;
    const size_t ob = part % J->n_oblocks, b = part / J->n_oblocks, o0 = ob * J->o_block;
    const size_t o1 = o0 + J->o_block < (size_t)a->c_out ? o0 + J->o_block : (size_t)a->c_out, no = o1 - o0;
    const size_t ldw = (size_t)a->c_out * k;
    float *col = J->scratch + (size_t)tid * J->o_block * k * J->i_block * inner;
    float *y = a->y + (b * (size_t)a->c_out + o0) * lo * inner;
    for (size_t o = 0; o < no; o++) {
        const float bo = a->bias ? a->bias[o0 + o] : 0.0f;
        for (size_t j = 0; j < lo * inner; j++)
            y[o * lo * inner + j] = bo;
    }
    const float *x = a->x + b * (size_t)a->c_in * len * inner;
    for (size_t i0 = 0; i0 < len; i0 += J->i_block) {
        const size_t ni = len - i0 < J->i_block ? len - i0 : J->i_block, nc = ni * inner;
        /* col[(o*k + u)][(i - i0)*inner + n] = sum_c w[c][o0 + o][u] * x[c][i][n] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(no * k), (int)nc, a->c_in, 1.0f,
                    a->wt + o0 * k, (int)ldw, x + i0 * inner, (int)(len * inner), 0.0f, col, (int)nc);
        for (size_t o = 0; o < no; o++)
            for (size_t u = 0; u < k; u++) {
                const float *cr = col + (o * k + u) * nc;
                for (size_t i = 0; i < ni; i++) {
                    const long t = (long)((i0 + i) * S + u) - (long)a->crop;
                    if (t < 0 || (size_t)t >= lo)
                        continue;
                    float *yr = y + (o * lo + (size_t)t) * inner;
                    if (inner >= 16) { /* yr = cr + yr, vectorised (the same sums) */
                        sl_cpu_epilogue_row(SL_ACT_NONE, inner, cr + i * inner, NULL, NULL, yr, yr);
                        continue;
                    }
                    for (size_t n = 0; n < inner; n++)
                        yr[n] += cr[i * inner + n];
                }
            }
    }
    if (a->act != SL_ACT_NONE)
        sl_cpu_epilogue_row(a->act, no * lo * inner, y, NULL, NULL, NULL, y);
}

int sl_cpu_conv_transpose1d(sl_op_ctx *ctx, const sl_convt1d_args *a)
{
    if (sl_cpu_convt1d_direct(ctx, a))
        return 0;
    ct_job J = {a, 0, 0, 0, NULL};
    const size_t k = (size_t)a->k, threads = (size_t)sl_pool_threads(ctx->pool);
    /* enough channel blocks for the threads, each at least 4 channels; decided by the shape
     * alone (each block is its own library call: the same bits at any thread count) */
    J.o_block = (size_t)a->c_out;
    while (J.o_block > 4 && a->batch * ((size_t)a->c_out + J.o_block - 1) / J.o_block < SL_CPU_SPLIT)
        J.o_block = (J.o_block + 1) / 2;
    J.n_oblocks = ((size_t)a->c_out + J.o_block - 1) / J.o_block;
    size_t per_i = J.o_block * k * a->inner;
    J.i_block = COL_FLOATS / per_i;
    if (J.i_block < 1)
        J.i_block = 1;
    if (J.i_block > a->len)
        J.i_block = a->len;
    const size_t floats = threads * per_i * J.i_block;
    if (!(J.scratch = sl_cpu_scratch(ctx, floats)))
        return SL_ENOMEM;
    sl_pool_for(ctx->pool, a->batch * J.n_oblocks, ct_body, &J);
    return 0;
}

/* The strided copy, split into ranges of the two outer axes together. */
typedef struct {
    const sl_permute_args *a;
    size_t parts;
} perm_job;

static void perm_body(void *v, size_t part, int tid)
{
    (void)tid;
    const perm_job *J = v;
    const sl_permute_args *a = J->a;
    size_t lo, hi;
    sl_pool_range(a->dim[0] * a->dim[1], J->parts, part, &lo, &hi);
    for (size_t o = lo; o < hi; o++) {
        const size_t i0 = o / a->dim[1], i1 = o % a->dim[1];
        for (size_t i2 = 0; i2 < a->dim[2]; i2++) {
            const float *x = a->x + i0 * a->xs[0] + i1 * a->xs[1] + i2 * a->xs[2];
            float *y = a->y + i0 * a->ys[0] + i1 * a->ys[1] + i2 * a->ys[2];
            if (a->xs[3] == 1 && a->ys[3] == 1) {
                memcpy(y, x, a->dim[3] * sizeof(float));
                continue;
            }
            for (size_t i3 = 0; i3 < a->dim[3]; i3++)
                y[i3 * a->ys[3]] = x[i3 * a->xs[3]];
        }
    }
}

int sl_cpu_permute(sl_op_ctx *ctx, const sl_permute_args *args)
{
    /* A short (<= 4) strided innermost axis (the real / imaginary pair of a complex layout) goes
     * outside the next one, so that the inner loop runs long; each element is copied once
     * whatever the order, so the result is the same. */
    sl_permute_args b = *args;
    const sl_permute_args *a = &b;
    if (!(b.xs[3] == 1 && b.ys[3] == 1) && b.dim[3] <= 4 && b.dim[3] < b.dim[2]) {
        size_t t = b.dim[2];
        b.dim[2] = b.dim[3], b.dim[3] = t;
        t = b.xs[2], b.xs[2] = b.xs[3], b.xs[3] = t;
        t = b.ys[2], b.ys[2] = b.ys[3], b.ys[3] = t;
    }
    const size_t outer = a->dim[0] * a->dim[1], th = (size_t)sl_pool_threads(ctx->pool);
    perm_job J = {a, 1};
    if (th > 1 && outer * a->dim[2] * a->dim[3] >= ((size_t)1 << 16))
        J.parts = outer < 4 * th ? outer : 4 * th;
    sl_pool_for(J.parts > 1 ? ctx->pool : NULL, J.parts, perm_body, &J);
    return 0;
}
