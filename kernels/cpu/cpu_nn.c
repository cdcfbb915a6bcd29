/* CPU neural-network ops: linear layers through OpenBLAS (cblas_sgemm), the
 * column-wise affine map, and the LSTM (torch.nn.LSTM semantics: one GEMM for
 * every timestep's input projection of a layer and direction set, then the
 * recurrence with one GEMV per step and direction). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

static float act_f(sl_act act, float v) { return sl_cpu_act(act, v); }

/* Multiply-adds below which a GEMM is not split: a loop of the pool costs a few
 * microseconds, about 10^5 multiply-adds on one core. */
#define PAR_MIN_MACS ((size_t)1 << 18)

/* Parts to split m x n x k of work into on ctx's threads (1 = serial). */
static size_t gemm_parts(const sl_op_ctx *ctx, size_t m, size_t n, size_t k)
{
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    if (th == 1 || m * n * k < PAR_MIN_MACS)
        return 1;
    return th;
}

/* Library products are cut into tiles that depend on the shape alone, one library call per
 * tile, and the threads share out whole tiles: OpenBLAS's kernels for some CPUs (Zen's, through
 * its Haswell kernels) sum an element of c in an order that depends on the shape of the call
 * it lies in, so a split that followed the thread count would change bits between
 * runtime.threads values. Tiles run along n in whole groups of 16 columns when n >= m, else
 * along m; their count is a power of two: up to 4 of at least GEMM_TILE_MIN, more (up to
 * GEMM_TILES_MAX) only of at least GEMM_TILE_WIDE, each at least PAR_MIN_MACS of work, so that
 * a product on one thread pays at most a few repackings of its other operand. */
#define GEMM_TILES_MAX 64
#define GEMM_TILE_MIN 32
#define GEMM_TILE_WIDE 512

typedef struct {
    int cols;            /* tiles of columns (else of rows) */
    size_t size, count;  /* columns / rows per tile (the last one shorter), tiles */
} gemm_grid;

static gemm_grid grid_of(size_t m, size_t n, size_t k)
{
    gemm_grid g = {n >= m, 1, 1};
    const size_t D = g.cols ? n : m, macs = m * n * k;
    size_t t = 1;
    while (2 * t <= GEMM_TILES_MAX && macs / (2 * t) >= PAR_MIN_MACS &&
           D / (2 * t) >= (2 * t <= 4 ? GEMM_TILE_MIN : GEMM_TILE_WIDE))
        t *= 2;
    g.size = (D + t - 1) / t;
    if (g.cols)
        g.size = (g.size + 15) & ~(size_t)15;
    if (!g.size)
        g.size = 1;
    g.count = D ? (D + g.size - 1) / g.size : 1;
    return g;
}

size_t sl_cpu_gemm_tiles(size_t m, size_t n, size_t k) { return grid_of(m, n, k).count; }

/* Rows [i0, i1) x columns [j0, j1) of tiles [t0, t1) of the grid. */
static void grid_rect(const gemm_grid *g, size_t m, size_t n, size_t t0, size_t t1, size_t *i0, size_t *i1,
                      size_t *j0, size_t *j1)
{
    const size_t D = g->cols ? n : m, lo = t0 * g->size < D ? t0 * g->size : D, hi = t1 * g->size < D ? t1 * g->size : D;
    *i0 = 0, *i1 = m, *j0 = 0, *j1 = n;
    if (g->cols)
        *j0 = lo, *j1 = hi;
    else
        *i0 = lo, *i1 = hi;
}

void sl_cpu_gemm_part_rect(size_t part, size_t parts, size_t m, size_t n, size_t k, size_t *i0, size_t *i1, size_t *j0,
                           size_t *j1)
{
    const gemm_grid g = grid_of(m, n, k);
    size_t t0, t1;
    sl_pool_range(g.count, parts, part, &t0, &t1);
    grid_rect(&g, m, n, t0, t1, i0, i1, j0, j1);
}

/* Parts worth running for an m x n x k library product: at most its tiles. */
static size_t lib_parts(size_t parts, size_t m, size_t n, size_t k)
{
    const size_t t = grid_of(m, n, k).count;
    return parts < t ? parts : t;
}

void sl_cpu_sgemm_part(size_t part, size_t parts, int trans_b, size_t m, size_t n, size_t k, const float *a,
                       size_t lda, const float *b, size_t ldb, float *c, size_t ldc)
{
    const gemm_grid g = grid_of(m, n, k);
    size_t t0, t1;
    sl_pool_range(g.count, parts, part, &t0, &t1);
    if (t0 >= t1)
        return;
    /* the dot kernel sums every element in one order wherever it lies: the part's tiles at once */
    const int dot = trans_b && sl_cpu_gemm_dot_fits(m, n, k);
    for (size_t t = t0; t < t1; t++) {
        size_t i0, i1, j0, j1;
        grid_rect(&g, m, n, t, dot ? t1 : t + 1, &i0, &i1, &j0, &j1);
        const float *at = a + i0 * lda, *bt = b + (trans_b ? j0 * ldb : j0);
        float *ct = c + i0 * ldc + j0;
        if (dot) {
            sl_cpu_gemm_dot(i1 - i0, j1 - j0, k, at, lda, bt, ldb, ct, ldc);
            return;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, (int)(i1 - i0), (int)(j1 - j0),
                    (int)k, 1.0f, at, (int)lda, bt, (int)ldb, 0.0f, ct, (int)ldc);
    }
}

typedef struct {
    int trans_b;
    size_t m, n, k, lda, ldb, ldc, parts;
    const float *a, *b;
    float *c;
} sgemm_job;

static void sgemm_body(void *v, size_t i, int tid)
{
    (void)tid;
    const sgemm_job *j = v;
    sl_cpu_sgemm_part(i, j->parts, j->trans_b, j->m, j->n, j->k, j->a, j->lda, j->b, j->ldb, j->c, j->ldc);
}

void sl_cpu_sgemm(sl_op_ctx *ctx, int trans_b, size_t m, size_t n, size_t k, const float *a, size_t lda,
                  const float *b, size_t ldb, float *c, size_t ldc)
{
    sgemm_job j = {trans_b, m, n, k, lda, ldb, ldc, lib_parts(gemm_parts(ctx, m, n, k), m, n, k), a, b, c};
    sl_pool_for(ctx->pool, j.parts, sgemm_body, &j);
}

typedef struct {
    const sl_gemm_args *a;
    size_t parts; /* per batch item */
    float *tmp;   /* [batch][m][n] products when add == y (a residual in place), else NULL */
    int prefill;  /* y starts as bias (+ y), the library adds the product to it (beta 1) */
} gemm_job;

/* Rows of one OpenBLAS call in the prefill path when an activation follows: the
 * block is still in cache when the activation passes over it. */
#define ACT_ROWS 256

/* y rows [i0, i1) x columns [j0, j1) = act(x w^T + bias [+ y]) by prefilling y with
 * bias [+ y] and accumulating the product onto it (no zeroing pass, no epilogue pass
 * for the residual), then the activation in place, ACT_ROWS rows at a time. */
static void gemm_prefill(const sl_gemm_args *a, size_t i0, size_t i1, size_t j0, size_t j1, const float *x,
                         const float *w, const float *bias, const float *add, float *y)
{
    const size_t step = a->act == SL_ACT_NONE ? i1 - i0 : ACT_ROWS, nj = j1 - j0;
    const float beta = bias || add ? 1.0f : 0.0f;
    for (size_t r0 = i0; r0 < i1; r0 += step) {
        const size_t r1 = r0 + step < i1 ? r0 + step : i1;
        for (size_t i = r0; i < r1 && bias; i++) {
            float *yi = y + i * a->ldy + j0;
            if (add)
                sl_cpu_epilogue_row(SL_ACT_NONE, nj, yi, bias + j0, NULL, NULL, yi);
            else
                memcpy(yi, bias + j0, nj * sizeof(float));
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(r1 - r0), (int)nj, (int)a->k, 1.0f,
                    x + r0 * a->ldx, (int)a->ldx, w + j0 * a->ldw, (int)a->ldw, beta, y + r0 * a->ldy + j0,
                    (int)a->ldy);
        for (size_t i = r0; i < r1 && a->act != SL_ACT_NONE; i++)
            sl_cpu_epilogue_row(a->act, nj, y + i * a->ldy + j0, NULL, NULL, NULL, y + i * a->ldy + j0);
    }
}

/* One part of one batch item: its rows / columns of the product, then its epilogue. */
static void gemm_body(void *job, size_t t, int tid)
{
    (void)tid;
    const gemm_job *J = job;
    const sl_gemm_args *a = J->a;
    const size_t b = t / J->parts, part = t % J->parts;
    const float *x = a->x + b * a->stride_x, *w = a->w + b * a->stride_w;
    const float *bias = a->bias ? a->bias + b * a->stride_bias : NULL;
    const float *mul = a->mul ? a->mul + b * a->stride_mul : NULL;
    const float *add = a->add ? a->add + b * a->stride_add : NULL;
    float *y = a->y + b * a->stride_y, *p = J->tmp ? J->tmp + b * a->m * a->n : y;
    const size_t ldp = J->tmp ? a->n : a->ldy;
    size_t i0, i1, j0, j1; /* the part's tiles, as sl_cpu_sgemm_part splits them */
    sl_cpu_gemm_part_rect(part, J->parts, a->m, a->n, a->k, &i0, &i1, &j0, &j1);
    if (i0 >= i1 || j0 >= j1)
        return;
    if (J->prefill) { /* tile by tile: the library's calls of the same shapes at any thread count */
        const gemm_grid g = grid_of(a->m, a->n, a->k);
        size_t t0, t1;
        sl_pool_range(g.count, J->parts, part, &t0, &t1);
        for (size_t q = t0; q < t1; q++) {
            grid_rect(&g, a->m, a->n, q, q + 1, &i0, &i1, &j0, &j1);
            gemm_prefill(a, i0, i1, j0, j1, x, w, bias, add, y);
        }
        return;
    }
    if (a->k > 0) {
        sl_cpu_sgemm_part(part, J->parts, 1, a->m, a->n, a->k, x, a->ldx, w, a->ldw, p, ldp);
    } else {
        for (size_t i = i0; i < i1; i++)
            memset(p + i * ldp + j0, 0, (j1 - j0) * sizeof(float));
    }
    if (!bias && a->act == SL_ACT_NONE && !mul && !add)
        return;
    for (size_t i = i0; i < i1; i++)
        sl_cpu_epilogue_row(a->act, j1 - j0, p + i * ldp + j0, bias ? bias + j0 : NULL,
                            mul ? mul + i * a->ldmul + j0 : NULL, add ? add + i * a->ldadd + j0 : NULL,
                            y + i * a->ldy + j0);
}

/* runtime.precision tf32 / bf16 / bf16x6 on the AMX tiles (cpu_amx.c): w packed once per context where
 * it is declared fixed, else once per call (in parallel, by panel pairs), then the rows of
 * each item split between the threads with the epilogue fused. */
typedef struct {
    const sl_gemm_args *a;
    int terms;
    size_t parts, n_w;  /* row parts per item; distinct weight matrices (1 when shared) */
    uint16_t **wp;      /* [n_w] packed */
    const uint8_t *todo; /* [n_w] 1: to pack now */
    size_t pairs;       /* panel pairs per matrix */
    int cols;           /* 1: an item's parts split its panel pairs, 0: its rows */
    int failed;
} amx_job;

static void amx_pack_body(void *v, size_t t, int tid)
{
    (void)tid;
    const amx_job *J = v;
    const sl_gemm_args *a = J->a;
    const size_t b = t / J->pairs, q = t % J->pairs;
    if (J->todo[b])
        sl_cpu_amx_pack_w(J->terms, a->n, a->k, a->w + b * a->stride_w, a->ldw, 2 * q, 2 * q + 2, J->wp[b]);
}

static void amx_body(void *v, size_t t, int tid)
{
    (void)tid;
    amx_job *J = v;
    const sl_gemm_args *a = J->a;
    const size_t b = t / J->parts;
    size_t i0 = 0, i1 = a->m, q0 = 0, q1 = J->pairs;
    if (J->cols)
        sl_pool_range(J->pairs, J->parts, t % J->parts, &q0, &q1);
    else
        sl_pool_range(a->m, J->parts, t % J->parts, &i0, &i1);
    if (i0 >= i1 || q0 >= q1)
        return;
    const sl_cpu_amx_epi e = {a->act,
                              a->bias ? a->bias + b * a->stride_bias : NULL,
                              a->mul ? a->mul + b * a->stride_mul : NULL,
                              a->add ? a->add + b * a->stride_add : NULL,
                              a->ldmul,
                              a->ldadd,
                              a->y + b * a->stride_y,
                              a->ldy};
    if (!sl_cpu_amx_gemm(J->terms, i0, i1, q0, q1, a->n, a->k, a->x + b * a->stride_x, a->ldx,
                         J->wp[J->n_w > 1 ? b : 0], &e))
        __atomic_store_n(&J->failed, 1, __ATOMIC_RELAXED);
}

static int amx_run(sl_op_ctx *ctx, const sl_gemm_args *a, int terms)
{
    const size_t n_w = a->stride_w ? a->batch : 1, size = sl_cpu_amx_wsize(terms, a->n, a->k);
    const size_t floats = (size + 1) / 2;
    uint16_t *wp_one[1];
    uint8_t todo_one[1];
    uint16_t **wp = n_w > 1 ? malloc(n_w * sizeof *wp) : wp_one;
    uint8_t *todo = n_w > 1 ? malloc(n_w) : todo_one;
    int rc = wp && todo ? 0 : SL_ENOMEM;
    size_t n_scratch = 0;
    /* the packed form of a fixed matrix lives with it (keyed by the packing and the shape) */
    const uint64_t tag = ((uint64_t)terms << 60) ^ ((uint64_t)a->ldw << 40) ^ ((uint64_t)a->n << 20) ^ a->k;
    for (size_t b = 0; !rc && b < n_w; b++) {
        int fresh = 0;
        float *f = sl_cpu_fixed_form(ctx, a->w + b * a->stride_w, tag, floats, &fresh);
        wp[b] = (uint16_t *)f;
        todo[b] = !f || fresh;
        n_scratch += !f;
    }
    float *scratch = NULL;
    if (!rc && n_scratch && !(scratch = sl_cpu_scratch(ctx, n_scratch * floats)))
        rc = SL_ENOMEM;
    for (size_t b = 0, s = 0; !rc && b < n_w; b++)
        if (!wp[b])
            wp[b] = (uint16_t *)(scratch + s++ * floats);
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    amx_job J = {a, terms, 1, n_w, wp, todo, (a->n + 31) / 32, 0, 0};
    if (!rc && (n_scratch || memchr(todo, 1, n_w)))
        sl_pool_for(ctx->pool, n_w * J.pairs, amx_pack_body, &J);
    for (size_t b = 0; b < n_w && wp && todo; b++) /* the forms given to fill: filled, or given up */
        if (todo[b] && wp[b])
            sl_cpu_fixed_form_ready(ctx, (const float *)wp[b], !rc);
    if (!rc) {
        if (a->batch < th && gemm_parts(ctx, a->m, a->n, a->k) > 1)
            J.parts = (th + a->batch - 1) / a->batch;
        /* few rows (each part computes 32-row groups): split the panel pairs instead when the
         * rows' split would pad more than a tenth over the rows' own rounding */
        const size_t rp = ((a->m + J.parts - 1) / J.parts + 31) & ~(size_t)31, r1 = (a->m + 31) & ~(size_t)31;
        J.cols = J.parts > 1 && J.pairs >= 2 * J.parts && rp * J.parts * 10 > r1 * 11;
        sl_pool_for(ctx->pool, a->batch * J.parts, amx_body, &J);
        if (J.failed)
            rc = sl_seterr(SL_ENOMEM, "cpu backend: out of memory in the AMX gemm");
    }
    if (wp != wp_one)
        free(wp);
    if (todo != todo_one)
        free(todo);
    return rc;
}

int sl_cpu_gemm(sl_op_ctx *ctx, const sl_gemm_args *a)
{
    /* runtime.precision tf32 / bf16 / bf16x6 (the context's effective mode: fp32 where the CPU has no
     * AMX): three, one or six bf16 products per product on the AMX tiles. AMX packs all of w per
     * call: worth it from about 128 rows; w declared fixed is packed once (its form kept with
     * the context), worth it from one tile of 16 rows; smaller products stay exact fp32. */
    const size_t amx_rows = a->batch == 1 && sl_cpu_fixed_is(ctx, a->w) ? 16 : 128;
    const int amx = ctx->precision == SL_PREC_FP32 || a->force_fp32 || a->m < amx_rows || a->n < 16 || a->k < 16 ||
                            !sl_cpu_amx()
                        ? 0
                        : ctx->precision == SL_PREC_TF32 ? 3 : ctx->precision == SL_PREC_BF16X6 ? 6 : 1;
    if (amx)
        return amx_run(ctx, a, amx);
    /* weights declared fixed: packed once, the AVX-512 / AVX2 kernel of cpu_gemmpk.c */
    if (!amx && (a->m >= SL_CPU_PACKED_MIN_ROWS || !sl_cpu_gemm_dot_fits(a->m, a->n, a->k)) &&
        sl_cpu_gemm_packed(ctx, a, gemm_parts(ctx, a->m, a->n, a->k) > 1 ? (size_t)sl_pool_threads(ctx->pool) : 1))
        return 0;
    /* OpenBLAS products without a per-element multiplier, and a residual only without an
     * activation: y prefilled, the product added by the library (gemm_prefill) */
    const int prefill = a->k > 0 && !a->mul && !sl_cpu_gemm_dot_fits(a->m, a->n, a->k) &&
                        (!a->add || (a->add == a->y && a->ldadd == a->ldy && a->stride_add == a->stride_y &&
                                     a->act == SL_ACT_NONE));
    /* otherwise add == y (a residual): the products go to scratch first, then y = epilogue + y */
    float *tmp = NULL;
    if (!prefill && a->add && a->add == a->y && !(tmp = sl_cpu_scratch(ctx, a->batch * a->m * a->n)))
        return SL_ENOMEM;
    /* batch items first (independent GEMMs), then each item split when there are
     * fewer items than threads */
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    size_t parts = 1;
    if (a->batch < th && gemm_parts(ctx, a->m, a->n, a->k) > 1)
        parts = lib_parts((th + a->batch - 1) / a->batch, a->m, a->n, a->k);
    gemm_job J = {a, parts, tmp, prefill};
    sl_pool_for(ctx->pool, a->batch * parts, gemm_body, &J);
    return 0;
}

/* Columns j0 .. j1 - 1 of row i of item b. */
static void affine_run(const sl_affine_args *a, size_t b, size_t i, size_t j0, size_t j1)
{
    const float *add = a->add ? a->add + b * a->stride_p + j0 : NULL;
    const float *mul = a->mul ? a->mul + b * a->stride_p + j0 : NULL;
    const float *x = a->x + b * a->stride_x + i * a->ldx + j0;
    float *y = a->y + b * a->stride_y + i * a->ldy + j0;
    const float *r = a->res ? a->res + b * a->stride_res + i * a->ldres + j0 : NULL;
    const size_t n = j1 - j0;
    if (!mul) { /* y = act(x + add) + res: the linear layers' epilogue */
        sl_cpu_epilogue_row(a->act, n, x, add, NULL, r, y);
        return;
    }
    if (a->act == SL_ACT_NONE && !r) { /* a normalisation applied or undone: the same operations, vectorised */
        sl_cpu_vec_addmul(y, x, add, mul, n);
        return;
    }
    for (size_t j = 0; j < n; j++) {
        float v = add ? x[j] + add[j] : x[j];
        v *= mul[j];
        v = act_f(a->act, v);
        y[j] = r ? v + r[j] : v;
    }
}

/* Element-wise passes split over the pool: ranges of rows (all items' rows in one
 * sequence), or pieces of each row (multiples of 16 columns) when there are few rows.
 * Every element is computed by the same operations whatever the split. */
typedef struct {
    const sl_affine_args *a;
    size_t parts, pieces; /* pieces per row (1: ranges of rows) */
} affine_job;

static void affine_body(void *v, size_t t, int tid)
{
    (void)tid;
    const affine_job *J = v;
    const sl_affine_args *a = J->a;
    if (J->pieces == 1) {
        size_t lo, hi;
        sl_pool_range(a->batch * a->rows, J->parts, t, &lo, &hi);
        for (size_t r = lo; r < hi; r++)
            affine_run(a, r / a->rows, r % a->rows, 0, a->cols);
        return;
    }
    const size_t r = t / J->pieces;
    size_t lo, hi;
    sl_pool_range((a->cols + 15) / 16, J->pieces, t % J->pieces, &lo, &hi);
    hi = hi * 16 < a->cols ? hi * 16 : a->cols;
    if (lo * 16 < hi)
        affine_run(a, r / a->rows, r % a->rows, lo * 16, hi);
}

/* Parts of rows x cols elements of work for ctx's threads: *pieces per row (1 = whole rows). */
static size_t ew_parts(const sl_op_ctx *ctx, size_t rows, size_t cols, size_t *pieces)
{
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    *pieces = 1;
    if (th == 1 || rows * cols < ((size_t)1 << 15))
        return 1;
    if (rows >= 2 * th)
        return rows < 4 * th ? rows : 4 * th;
    *pieces = (4 * th + rows - 1) / rows;
    return rows * *pieces;
}

int sl_cpu_affine(sl_op_ctx *ctx, const sl_affine_args *a)
{
    affine_job J = {a, 1, 1};
    J.parts = ew_parts(ctx, a->batch * a->rows, a->cols, &J.pieces);
    sl_pool_for(ctx->pool, J.parts, affine_body, &J);
    return 0;
}

/* The recurrence of one item and direction over T steps: gates = proj[t] + W_hh h,
 * then the cell update; h, cell and gates are this task's own scratch. */
static void lstm_recur(size_t T, size_t H, size_t D, size_t d, const float *proj, const float *whh, float *out,
                       size_t ld_out, float *h, float *cell, float *gates)
{
    const size_t G = 4 * H;
    memset(h, 0, H * sizeof(float));
    memset(cell, 0, H * sizeof(float));
    for (size_t s = 0; s < T; s++) {
        const size_t t = d ? T - 1 - s : s;
        memcpy(gates, proj + t * D * G + d * G, G * sizeof(float));
        if (s > 0) /* h0 = 0: the first step has no recurrent term */
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)G, (int)H, 1.0f, whh, (int)H, h, 1, 1.0f, gates, 1);
        sl_cpu_lstm_cell(gates, cell, h, out + t * ld_out + d * H, H);
    }
}

/* One layer of every item: the input projections (one GEMM per item for every step
 * of both directions, bias folded in) split over the pool, then the item x direction
 * recurrences, independent of each other, one per loop index. */
typedef struct {
    const sl_lstm_cfg *c;
    size_t T, n_in, parts;
    int layer;
    /* per item b: input rows at in + b*stride_in (ld ld_in), weights of this layer at
     * w_l + b*stride_w, output rows at out + b*stride_out (ld ld_out) */
    const float *in, *w_l;
    size_t ld_in, stride_in, stride_w;
    float *out;
    size_t ld_out, stride_out;
    float *proj; /* [batch][T][D*G] */
    float *rec;  /* per thread: h, cell, gates */
} lstm_layer;

static void lstm_proj_body(void *v, size_t t, int tid)
{
    (void)tid;
    const lstm_layer *L = v;
    const size_t D = 1 + (size_t)L->c->bidirectional, G = 4 * (size_t)L->c->hidden;
    const size_t b = t / L->parts, part = t % L->parts;
    const float *w_ih = L->w_l + b * L->stride_w, *bias = w_ih + D * G * L->n_in + D * G * (size_t)L->c->hidden;
    float *proj = L->proj + b * L->T * D * G;
    sl_cpu_sgemm_part(part, L->parts, 1, L->T, D * G, L->n_in, L->in + b * L->stride_in, L->ld_in, w_ih, L->n_in, proj,
              D * G);
    /* bias on the same rows / columns as the part just computed */
    size_t i0, i1, j0, j1;
    sl_cpu_gemm_part_rect(part, L->parts, L->T, D * G, L->n_in, &i0, &i1, &j0, &j1);
    for (size_t i = i0; i < i1; i++)
        for (size_t g = j0; g < j1; g++)
            proj[i * D * G + g] += bias[g];
}

static void lstm_recur_body(void *v, size_t t, int tid)
{
    const lstm_layer *L = v;
    const size_t D = 1 + (size_t)L->c->bidirectional, H = (size_t)L->c->hidden, G = 4 * H;
    const size_t b = t / D, d = t % D;
    const float *w_hh = L->w_l + b * L->stride_w + D * G * L->n_in;
    float *h = L->rec + (size_t)tid * (2 * H + G);
    lstm_recur(L->T, H, D, d, L->proj + b * L->T * D * G, w_hh + d * G * H, L->out + b * L->stride_out,
               L->ld_out, h, h + H, h + 2 * H);
}

int sl_cpu_lstm(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
                size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y)
{
    const size_t D = 1 + (size_t)c->bidirectional, H = (size_t)c->hidden, G = 4 * H, O = D * H;
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    /* proj for every item, two ping-pong layer outputs per item, recurrence state per thread */
    const size_t need = batch * T * D * G + (c->layers > 1 ? 2 * batch * T * O : 0) + th * (2 * H + G);
    float *ws = sl_cpu_scratch(ctx, need);
    if (!ws)
        return SL_ENOMEM;
    float *proj = ws, *buf0 = proj + batch * T * D * G, *buf1 = buf0 + (c->layers > 1 ? batch * T * O : 0);
    float *rec = buf1 + (c->layers > 1 ? batch * T * O : 0);
    lstm_layer L = {.c = c, .T = T, .n_in = (size_t)c->input, .in = x, .w_l = w, .ld_in = ldx, .stride_in = stride_x,
                    .stride_w = stride_w, .proj = proj, .rec = rec};
    for (int l = 0; l < c->layers; l++) {
        const int last = l == c->layers - 1;
        L.layer = l;
        L.out = last ? y : (l % 2 ? buf1 : buf0);
        L.ld_out = last ? ldy : O;
        L.stride_out = last ? stride_y : T * O;
        size_t parts = 1;
        if (batch < th && gemm_parts(ctx, T, D * G, L.n_in) > 1)
            parts = lib_parts((th + batch - 1) / batch, T, D * G, L.n_in);
        L.parts = parts;
        sl_pool_for(ctx->pool, batch * parts, lstm_proj_body, &L);
        sl_pool_for(ctx->pool, batch * D, lstm_recur_body, &L);
        /* the next layer reads this one's output; its weights follow this layer's */
        L.w_l += D * G * L.n_in + D * G * H + D * G;
        L.in = L.out;
        L.ld_in = L.ld_out;
        L.stride_in = L.stride_out;
        L.n_in = O;
    }
    return 0;
}
