/* Argument checks and dispatch of the neural-network ops: GEMM, affine,
 * LSTM, Wiener filter, convolutions, pooling, permute and top-k search. */
#include "ops.h"

#include <math.h>
#include <stdint.h>

#include "../common/sl_error.h"
#include "ops_dispatch.h"

/* ---- neural-network ops ---- */

int sl_op_gemm(sl_op_ctx *ctx, const sl_gemm_args *a)
{
    if (!a || !a->x || !a->w || !a->y)
        return bad("gemm", "x, w and y are required");
    if ((unsigned)a->act > SL_ACT_GELU)
        return bad("gemm", "unknown activation");
    if (a->ldx < a->k || a->ldw < a->k || a->ldy < a->n || (a->mul && a->ldmul < a->n) ||
        (a->add && a->ldadd < a->n))
        return bad("gemm", "a leading dimension is shorter than its row");
    if (a->add == a->y && (a->ldadd != a->ldy || a->stride_add != a->stride_y))
        return bad("gemm", "add == y needs the same ld and stride");
    if (a->m > INT32_MAX || a->n > INT32_MAX || a->k > INT32_MAX || a->ldx > INT32_MAX ||
        a->ldw > INT32_MAX || a->ldy > INT32_MAX || a->ldmul > INT32_MAX || a->ldadd > INT32_MAX)
        return bad("gemm", "dimensions beyond 2^31");
    if (!a->batch || !a->m || !a->n)
        return 0;
    DISPATCH(SL_OP_GEMM, gemm, a);
}

int sl_op_affine(sl_op_ctx *ctx, const sl_affine_args *a)
{
    if (!a || !a->x || !a->y)
        return bad("affine", "x and y are required");
    if ((unsigned)a->act > SL_ACT_GELU)
        return bad("affine", "unknown activation");
    if (a->ldx < a->cols || a->ldy < a->cols)
        return bad("affine", "a leading dimension is shorter than its row");
    if (a->x == a->y && (a->ldx != a->ldy || a->stride_x != a->stride_y))
        return bad("affine", "in place needs the same ld and stride for x and y");
    if (a->res && (a->ldres < a->cols || (a->res == a->y && (a->ldres != a->ldy || a->stride_res != a->stride_y))))
        return bad("affine", "res needs ldres >= cols, and the same ld and stride as y when it is y");
    if (!a->batch || !a->rows || !a->cols)
        return 0;
    DISPATCH(SL_OP_AFFINE, affine, a);
}

size_t sl_lstm_weights_floats(const sl_lstm_cfg *c)
{
    if (!c || c->layers < 1 || c->layers > 16 || c->input < 1 || c->input > 65536 || c->hidden < 1 ||
        c->hidden > 4096 || (c->bidirectional != 0 && c->bidirectional != 1))
        return 0;
    const size_t D = 1 + (size_t)c->bidirectional, H = (size_t)c->hidden, G = 4 * H;
    size_t total = 0;
    for (int l = 0; l < c->layers; l++) {
        size_t in = l == 0 ? (size_t)c->input : D * H;
        total += D * G * in + D * G * H + D * G;
    }
    return total;
}

int sl_op_lstm(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
               size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y)
{
    if (!sl_lstm_weights_floats(c))
        return bad("lstm", "layers 1..16, input 1..65536, hidden 1..4096, bidirectional 0/1");
    const size_t out = (size_t)(1 + c->bidirectional) * (size_t)c->hidden;
    if (ldx < (size_t)c->input || ldy < out)
        return bad("lstm", "a leading dimension is shorter than its row");
    if (!x || !w || !y)
        return bad("lstm", "x, w and y are required");
    if (!batch || !T)
        return 0;
    DISPATCH(SL_OP_LSTM, lstm, c, batch, T, x, ldx, stride_x, w, stride_w, y, ldy, stride_y);
}

int sl_op_wiener(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t n_targets, size_t n_frames, size_t n_bins,
                 const float *mix, const float *mag, float *out)
{
    if (!c || c->niter < 0 || c->niter > 100 || c->win_len < 0 || !(c->eps > 0) || !isfinite(c->eps))
        return bad("wiener", "niter 0..100, win_len >= 0, eps finite > 0");
    if (n_targets < 1 || n_targets > 8)
        return bad("wiener", "1..8 targets");
    if (c->niter > 0 && n_targets + (c->residual ? 1 : 0) < 2)
        return bad("wiener", "EM (niter > 0) needs at least two sources (add the residual)");
    if (!mix || !mag || !out)
        return bad("wiener", "mix, mag and out are required");
    if (!n_frames || !n_bins)
        return 0;
    DISPATCH(SL_OP_WIENER, wiener, c, n_targets, n_frames, n_bins, mix, mag, out);
}

/* ---- convolutional ops ---- */

int sl_op_conv2d(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    if (!a || !a->x || !a->wt || !a->y)
        return bad("conv2d", "x, wt and y are required");
    if (a->act != SL_ACT_NONE && a->act != SL_ACT_RELU && a->act != SL_ACT_TANH)
        return bad("conv2d", "unknown activation");
    if (a->k < 1 || a->k > 7 || a->k % 2 == 0)
        return bad("conv2d", "kernel size must be odd, 1..7");
    if (a->c_in < 1 || a->c_in > 65536 || a->c_out < 1 || a->c_out > 65536 || a->h < 1 || a->w < 1)
        return bad("conv2d", "channels 1..65536, height and width >= 1");
    if ((uint64_t)a->h * (uint64_t)a->w > INT32_MAX ||
        (uint64_t)a->c_in * (uint64_t)a->k * (uint64_t)a->k * (uint64_t)a->h * (uint64_t)a->w > ((uint64_t)1 << 40))
        return bad("conv2d", "image too large");
    if (!a->batch)
        return 0;
    DISPATCH(SL_OP_CONV2D, conv2d, a);
}

size_t sl_conv1d_len_out(const sl_conv1d_args *a)
{
    const uint64_t span = (uint64_t)a->dilation * (uint64_t)(a->k - 1) + 1;
    const uint64_t padded = (uint64_t)a->len + (uint64_t)a->pad_l + (uint64_t)a->pad_r;
    return padded < span ? 0 : (size_t)((padded - span) / (uint64_t)a->stride + 1);
}

int sl_op_conv1d(sl_op_ctx *ctx, const sl_conv1d_args *a)
{
    if (!a || !a->x || !a->wt || !a->y)
        return bad("conv1d", "x, wt and y are required");
    if ((unsigned)a->act > SL_ACT_GELU)
        return bad("conv1d", "unknown activation");
    if (a->c_in < 1 || a->c_in > 65536 || a->c_out < 1 || a->c_out > 65536 || a->groups < 1 ||
        a->c_in % a->groups || a->c_out % a->groups)
        return bad("conv1d", "channels 1..65536, multiples of groups >= 1");
    if (a->len < 1 || a->inner < 1 || a->k < 1 || a->k > 4096 || a->stride < 1 || a->dilation < 1 ||
        a->pad_l < 0 || a->pad_r < 0 || a->len > INT32_MAX || a->inner > INT32_MAX)
        return bad("conv1d", "len, inner, k (<= 4096), stride, dilation >= 1 and paddings >= 0");
    const size_t lo = sl_conv1d_len_out(a);
    if (!lo)
        return bad("conv1d", "the kernel span is longer than the padded input");
    if ((uint64_t)lo * (uint64_t)a->inner > INT32_MAX || (uint64_t)a->len * (uint64_t)a->inner > INT32_MAX)
        return bad("conv1d", "signal too large");
    if (a->glu && (a->c_out % 2 || a->act != SL_ACT_NONE || a->groups != 1))
        return bad("conv1d", "glu needs an even c_out, no activation and groups 1");
    if (!a->batch)
        return 0;
    DISPATCH(SL_OP_CONV1D, conv1d, a);
}

int sl_op_conv_transpose1d(sl_op_ctx *ctx, const sl_convt1d_args *a)
{
    if (!a || !a->x || !a->wt || !a->y)
        return bad("conv_transpose1d", "x, wt and y are required");
    if ((unsigned)a->act > SL_ACT_GELU)
        return bad("conv_transpose1d", "unknown activation");
    if (a->c_in < 1 || a->c_in > 65536 || a->c_out < 1 || a->c_out > 65536)
        return bad("conv_transpose1d", "channels 1..65536");
    if (a->len < 1 || a->inner < 1 || a->k < 1 || a->k > 4096 || a->stride < 1 || a->crop < 0 ||
        a->len > INT32_MAX || a->inner > INT32_MAX)
        return bad("conv_transpose1d", "len, inner, k (<= 4096), stride >= 1 and crop >= 0");
    const uint64_t full = ((uint64_t)a->len - 1) * (uint64_t)a->stride + (uint64_t)a->k;
    if (a->len_out < 1 || (uint64_t)a->len_out + (uint64_t)a->crop > full)
        return bad("conv_transpose1d", "len_out must be 1..(len-1)*stride + k - crop");
    if ((uint64_t)a->len_out * (uint64_t)a->inner > INT32_MAX || (uint64_t)a->len * (uint64_t)a->inner > INT32_MAX)
        return bad("conv_transpose1d", "signal too large");
    if (!a->batch)
        return 0;
    DISPATCH(SL_OP_CONV_TRANSPOSE1D, conv_transpose1d, a);
}

int sl_op_permute(sl_op_ctx *ctx, const sl_permute_args *a)
{
    if (!a || !a->x || !a->y)
        return bad("permute", "x and y are required");
    if (!a->dim[0] || !a->dim[1] || !a->dim[2] || !a->dim[3])
        return 0;
    DISPATCH(SL_OP_PERMUTE, permute, a);
}

int sl_op_avg_pool2d(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in, float *out)
{
    if (h < 1 || w < 1 || kh < 1 || kw < 1 || kh > h || kw > w)
        return bad("avg_pool2d", "need 1 <= kh <= h and 1 <= kw <= w");
    if (!in || !out)
        return bad("avg_pool2d", "in and out are required");
    if (!planes)
        return 0;
    DISPATCH(SL_OP_AVG_POOL2D, avg_pool2d, planes, h, w, kh, kw, in, out);
}

int sl_op_clip_pool(sl_op_ctx *ctx, size_t planes, size_t T, size_t F, const float *in, float *out)
{
    if (!T || !F)
        return bad("clip_pool", "needs at least one frame and one feature");
    if (!in || !out)
        return bad("clip_pool", "in and out are required");
    if (!planes)
        return 0;
    DISPATCH(SL_OP_CLIP_POOL, clip_pool, planes, T, F, in, out);
}

/* ---- search ---- */

int sl_op_topk(sl_op_ctx *ctx, const sl_topk_args *a)
{
    if (!a || !a->top_score || !a->top_index || (a->n && !a->scores))
        return bad("topk", "top_score, top_index and (for n > 0) scores are required");
    if (a->k < 1 || a->k > ((size_t)1 << 30))
        return bad("topk", "k must be 1..2^30");
    if (a->ld < a->n)
        return bad("topk", "ld is shorter than a row");
    if (a->base < 0 || (uint64_t)a->n > (uint64_t)(INT64_MAX - a->base))
        return bad("topk", "indices base .. base + n out of range 0..2^63-1");
    if (a->nq > ((size_t)1 << 40) / a->k)
        return bad("topk", "nq * k beyond 2^40");
    if (!a->nq || (!a->n && !a->reset))
        return 0;
    DISPATCH(SL_OP_TOPK, topk, a);
}
