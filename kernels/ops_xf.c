/* Argument checks and dispatch of the transformer ops: norms, GLU,
 * attention, band-split gathers and scatters, row gathers; the rotary
 * embedding table. */
#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "ops_dispatch.h"

/* ---- transformer ops ---- */

int sl_rope_table(float *tab, size_t n_pos, int dim, double theta, const float *inv_freq)
{
    if (dim < 2 || dim > 1024 || dim % 2 || (!inv_freq && !(theta > 0)))
        return sl_seterr(SL_EINVAL, "rope table: dim %d must be even, 2..1024, theta > 0", dim);
    for (int i = 0; i < dim / 2; i++) {
        /* rotary_embedding_torch: 1. / (theta ** (arange(0, dim, 2).float() / dim)), float32 */
        const float e = (float)(2 * i) / (float)dim;
        const float f = inv_freq ? inv_freq[i] : 1.0f / powf((float)theta, e);
        for (size_t p = 0; p < n_pos; p++) {
            const double ang = (double)p * (double)f;
            tab[(p * (size_t)(dim / 2) + (size_t)i) * 2] = (float)cos(ang);
            tab[(p * (size_t)(dim / 2) + (size_t)i) * 2 + 1] = (float)sin(ang);
        }
    }
    return 0;
}

int sl_op_norm(sl_op_ctx *ctx, const sl_norm_args *a)
{
    if (!a || !a->x || !a->y)
        return bad("norm", "x and y are required");
    if (a->kind != SL_NORM_RMS && a->kind != SL_NORM_LAYER && a->kind != SL_NORM_GROUP && a->kind != SL_NORM_GROUP_GLU)
        return bad("norm", "unknown kind");
    const int glu = a->kind == SL_NORM_GROUP_GLU;
    if ((a->kind == SL_NORM_GROUP || glu) && (a->groups < 1 || a->channels < a->groups || a->channels % a->groups ||
                                     a->inner < 1))
        return bad("norm", "group norm needs groups >= 1 dividing channels, and inner >= 1");
    if (glu && (a->act != SL_ACT_NONE || a->dim % 2))
        return bad("norm", "a group norm with glu needs act 0 and an even dim");
    if (a->dim < 1 || a->dim > INT32_MAX || a->ldx < a->dim || a->ldy < (glu ? a->dim / 2 : a->dim))
        return bad("norm", "dim 1..2^31, ldx >= dim and ldy >= dim (dim / 2 with glu)");
    if (!(a->eps >= 0) || !isfinite(a->eps))
        return bad("norm", "eps must be finite and >= 0");
    if (a->x == a->y && a->ldx != a->ldy)
        return bad("norm", "in place needs ldx == ldy");
    if (!a->rows)
        return 0;
    DISPATCH(SL_OP_NORM, norm, a);
}

int sl_op_glu(sl_op_ctx *ctx, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy)
{
    if (!x || !y)
        return bad("glu", "x and y are required");
    if (ldx < 2 * n || ldy < n)
        return bad("glu", "ldx >= 2n and ldy >= n");
    if (x == y && ldy > ldx)
        return bad("glu", "in place needs ldy <= ldx");
    if (!rows || !n)
        return 0;
    DISPATCH(SL_OP_GLU, glu, rows, n, x, ldx, y, ldy);
}

int sl_op_attention(sl_op_ctx *ctx, const sl_attention_args *a)
{
    if (!a || !a->q || !a->k || !a->v || !a->out)
        return bad("attention", "q, k, v and out are required");
    if (a->heads < 1 || a->dim_head < 1 || a->dim_head > 128)
        return bad("attention", "heads >= 1 and dim_head 1..128");
    if (a->rope && a->dim_head % 2)
        return bad("attention", "rotary embedding needs an even dim_head");
    const size_t hd = (size_t)a->heads * (size_t)a->dim_head;
    if (a->ldq < hd || a->ldk < hd || a->ldv < hd || a->ldo < hd)
        return bad("attention", "a leading dimension is shorter than heads * dim_head");
    if (a->gate && a->ld_gate < (size_t)a->heads)
        return bad("attention", "ld_gate < heads");
    if (a->bias && a->ld_bias < a->tk)
        return bad("attention", "ld_bias < tk");
    if (!isfinite(a->scale))
        return bad("attention", "scale must be finite");
    if (a->tq > INT32_MAX || a->tk > INT32_MAX)
        return bad("attention", "sequences beyond 2^31 rows");
    if (!a->batch || !a->tq)
        return 0;
    if (!a->tk)
        return bad("attention", "no keys");
    DISPATCH(SL_OP_ATTENTION, attention, a);
}

static int band_geom_ok(const char *op, const sl_band_geom *g)
{
    if (!g || !g->idx)
        return bad(op, "geometry and idx are required");
    if (g->n_ch < 1 || g->F < 1 || g->F * g->n_ch > INT32_MAX || g->n_feat > INT32_MAX)
        return bad(op, "n_ch >= 1, F >= 1, F*n_ch and n_feat below 2^31");
    return 0;
}

int sl_op_spec_gather(sl_op_ctx *ctx, const sl_band_geom *g, const float *spec, float *out)
{
    int rc = band_geom_ok("spec_gather", g);
    if (rc < 0)
        return rc;
    if (!spec || !out)
        return bad("spec_gather", "spec and out are required");
    if (!g->batch || !g->T || !g->n_feat)
        return 0;
    DISPATCH(SL_OP_SPEC_GATHER, spec_gather, g, spec, out);
}

int sl_op_mask_scatter(sl_op_ctx *ctx, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                       const int32_t *inv_idx, const float *spec, const float *mask, float *out)
{
    int rc = band_geom_ok("mask_scatter", g);
    if (rc < 0)
        return rc;
    if (!spec || !mask || !out || !inv_off || !inv_idx)
        return bad("mask_scatter", "spec, mask, out, inv_off and inv_idx are required");
    if (!g->batch || !g->T || !n_masks)
        return 0;
    DISPATCH(SL_OP_MASK_SCATTER, mask_scatter, g, n_masks, inv_off, inv_idx, spec, mask, out);
}

int sl_band_inverse(const int32_t *idx, size_t n_feat, size_t n_bins, int32_t *inv_off, int32_t *inv_idx)
{
    if (n_feat > INT32_MAX || n_bins > INT32_MAX)
        return sl_seterr(SL_EINVAL, "band inverse: sizes beyond 2^31");
    for (size_t f = 0; f <= n_bins; f++)
        inv_off[f] = 0;
    for (size_t j = 0; j < n_feat; j++) {
        if (idx[j] < 0 || (size_t)idx[j] >= n_bins)
            return sl_seterr(SL_EINVAL, "band inverse: feature %zu maps to bin %d, outside 0..%zu", j,
                             (int)idx[j], n_bins - 1);
        inv_off[idx[j] + 1]++;
    }
    for (size_t f = 0; f < n_bins; f++)
        inv_off[f + 1] += inv_off[f];
    int32_t *next = malloc((n_bins + 1) * sizeof *next);
    if (!next)
        return sl_seterr(SL_ENOMEM, "band inverse: out of memory");
    memcpy(next, inv_off, (n_bins + 1) * sizeof *next);
    for (size_t j = 0; j < n_feat; j++) /* ascending j per bin: a stable counting sort */
        inv_idx[next[idx[j]]++] = (int32_t)j;
    free(next);
    return 0;
}

int sl_op_row_gather(sl_op_ctx *ctx, const sl_gather_args *a)
{
    if (!a || !a->x || !a->y || !a->idx)
        return bad("row_gather", "x, y and idx are required");
    if (a->taps < 1 || a->taps > 64 || (!a->w && a->taps != 1))
        return bad("row_gather", "taps 1..64, and 1 without weights");
    if (a->ldx < a->cols || a->ldy < a->cols)
        return bad("row_gather", "a leading dimension is shorter than cols");
    if (a->in_rows > INT32_MAX || a->rows > INT32_MAX)
        return bad("row_gather", "rows beyond 2^31");
    if (!a->batch || !a->rows || !a->cols)
        return 0;
    if (!a->in_rows)
        return bad("row_gather", "no input rows");
    DISPATCH(SL_OP_ROW_GATHER, row_gather, a);
}
