/* CPU 1-D convolutions along the len axis of [batch][channels][len][inner]
 * (inner independent columns): conv1d (stride, padding, dilation, groups) and
 * conv_transpose1d. Both are im2col / col2im around one OpenBLAS GEMM per block
 * of columns, the scratch bounded by COL_FLOATS per thread whatever the
 * signal. conv1d splits over (item, group, column block), each part writing its
 * own columns of y; conv_transpose1d over (item, block of output channels),
 * each part accumulating every input block into its own channels of y (the
 * overlap-add of neighbouring input positions stays inside one part). A 1x1
 * conv1d with stride 1 and no padding reads x in place (no im2col). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_ops.h"

/* Floats of im2col / col2im scratch per thread. */
#define COL_FLOATS ((size_t)1 << 20)
/* Columns per GEMM at most (enough for OpenBLAS's full speed, small enough for parts). */
#define COL_MAX ((size_t)8192)

typedef struct {
    const sl_conv1d_args *a;
    size_t len_out, n_cols, block, n_blocks; /* columns of one output channel, per block, blocks */
    float *scratch;                          /* [threads][K * block] */
    int direct;                              /* 1x1, stride 1, no padding: x is the column matrix */
} c1_job;

static void c1_body(void *v, size_t part, int tid)
{
    const c1_job *J = v;
    const sl_conv1d_args *a = J->a;
    const size_t G = (size_t)a->groups, Cg = (size_t)a->c_in / G, Og = (size_t)a->c_out / G, k = (size_t)a->k;
    const size_t K = Cg * k, inner = a->inner, len = a->len;
    const size_t blk = part % J->n_blocks, g = (part / J->n_blocks) % G, b = part / J->n_blocks / G;
    const size_t n0 = blk * J->block, nc = J->n_cols - n0 < J->block ? J->n_cols - n0 : J->block;
    const float *x = a->x + (b * (size_t)a->c_in + g * Cg) * len * inner;
    const float *col;
    size_t ldcol;
    if (J->direct) {
        col = x + n0;
        ldcol = len * inner;
    } else {
        float *c = J->scratch + (size_t)tid * K * J->block;
        for (size_t ch = 0; ch < Cg; ch++)
            for (size_t u = 0; u < k; u++) {
                float *row = c + (ch * k + u) * nc;
                const float *xc = x + ch * len * inner;
                for (size_t j = 0; j < nc; j++) {
                    const size_t t = (n0 + j) / inner, n = (n0 + j) % inner;
                    const long p = (long)(t * (size_t)a->stride + u * (size_t)a->dilation) - (long)a->pad_l;
                    row[j] = p >= 0 && (size_t)p < len ? xc[(size_t)p * inner + n] : 0.0f;
                }
            }
        col = c;
        ldcol = nc;
    }
    float *y = a->y + (b * (size_t)a->c_out + g * Og) * J->n_cols + n0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)Og, (int)nc, (int)K, 1.0f, a->wt + g * Og * K,
                (int)K, col, (int)ldcol, 0.0f, y, (int)J->n_cols);
    for (size_t o = 0; o < Og; o++) {
        float *yo = y + o * J->n_cols;
        const float bo = a->bias ? a->bias[g * Og + o] : 0.0f;
        for (size_t j = 0; j < nc; j++)
            yo[j] = sl_cpu_act(a->act, yo[j] + bo);
    }
}

int sl_cpu_conv1d(sl_op_ctx *ctx, const sl_conv1d_args *a)
{
    c1_job J = {a, sl_conv1d_len_out(a), 0, 0, 0, NULL, 0};
    J.n_cols = J.len_out * a->inner;
    const size_t K = (size_t)(a->c_in / a->groups) * (size_t)a->k;
    J.direct = a->k == 1 && a->stride == 1 && a->pad_l == 0 && a->pad_r == 0;
    J.block = COL_FLOATS / K;
    if (J.block > COL_MAX)
        J.block = COL_MAX;
    if (J.block < 16)
        J.block = 16;
    if (J.block > J.n_cols)
        J.block = J.n_cols;
    J.n_blocks = (J.n_cols + J.block - 1) / J.block;
    const int threads = sl_pool_threads(ctx->pool);
    if (!J.direct) {
        J.scratch = malloc((size_t)threads * K * J.block * sizeof(float));
        if (!J.scratch)
            return sl_seterr(SL_ENOMEM, "conv1d: %zu bytes of im2col scratch", (size_t)threads * K * J.block * 4);
    }
    sl_pool_for(ctx->pool, a->batch * (size_t)a->groups * J.n_blocks, c1_body, &J);
    free(J.scratch);
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
                    for (size_t n = 0; n < inner; n++)
                        yr[n] += cr[i * inner + n];
                }
            }
    }
    if (a->act != SL_ACT_NONE)
        for (size_t j = 0; j < no * lo * inner; j++)
            y[j] = sl_cpu_act(a->act, y[j]);
}

int sl_cpu_conv_transpose1d(sl_op_ctx *ctx, const sl_convt1d_args *a)
{
    ct_job J = {a, 0, 0, 0, NULL};
    const size_t k = (size_t)a->k, threads = (size_t)sl_pool_threads(ctx->pool);
    /* enough channel blocks for the threads, each at least 4 channels */
    J.o_block = (size_t)a->c_out;
    while (J.o_block > 4 && a->batch * ((size_t)a->c_out + J.o_block - 1) / J.o_block < 2 * threads)
        J.o_block = (J.o_block + 1) / 2;
    J.n_oblocks = ((size_t)a->c_out + J.o_block - 1) / J.o_block;
    size_t per_i = J.o_block * k * a->inner;
    J.i_block = COL_FLOATS / per_i;
    if (J.i_block < 1)
        J.i_block = 1;
    if (J.i_block > a->len)
        J.i_block = a->len;
    const size_t floats = threads * per_i * J.i_block;
    J.scratch = malloc(floats * sizeof(float));
    if (!J.scratch)
        return sl_seterr(SL_ENOMEM, "conv_transpose1d: %zu bytes of col2im scratch", floats * 4);
    sl_pool_for(ctx->pool, a->batch * J.n_oblocks, ct_body, &J);
    free(J.scratch);
    return 0;
}

/* The strided copy, split over the outermost axis. */
static void perm_body(void *v, size_t i0, int tid)
{
    (void)tid;
    const sl_permute_args *a = v;
    for (size_t i1 = 0; i1 < a->dim[1]; i1++)
        for (size_t i2 = 0; i2 < a->dim[2]; i2++) {
            const float *x = a->x + i0 * a->xs[0] + i1 * a->xs[1] + i2 * a->xs[2];
            float *y = a->y + i0 * a->ys[0] + i1 * a->ys[1] + i2 * a->ys[2];
            for (size_t i3 = 0; i3 < a->dim[3]; i3++)
                y[i3 * a->ys[3]] = x[i3 * a->xs[3]];
        }
}

int sl_cpu_permute(sl_op_ctx *ctx, const sl_permute_args *a)
{
    sl_pool_for(a->dim[0] * a->dim[1] * a->dim[2] * a->dim[3] >= ((size_t)1 << 16) ? ctx->pool : NULL, a->dim[0],
                perm_body, (void *)a);
    return 0;
}
