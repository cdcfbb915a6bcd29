/* CPU neural-network ops: linear layers through OpenBLAS (cblas_sgemm), the
 * column-wise affine map, and the LSTM (torch.nn.LSTM semantics: one GEMM for
 * every timestep's input projection of a layer and direction set, then the
 * recurrence with one GEMV per step and direction). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "cpu_ops.h"

static float act_f(sl_act act, float v)
{
    switch (act) {
    case SL_ACT_RELU: return v < 0.0f ? 0.0f : v; /* NaN stays NaN, as torch.relu */
    case SL_ACT_TANH: return tanhf(v);
    case SL_ACT_GELU: return 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2)); /* torch's exact GELU */
    default: return v;
    }
}

int sl_cpu_gemm(sl_op_ctx *ctx, const sl_gemm_args *a)
{
    /* add == y (a residual): the product goes to scratch first, then y = epilogue + y */
    float *tmp = NULL;
    if (a->add && a->add == a->y && !(tmp = sl_cpu_scratch(ctx, a->m * a->n)))
        return SL_ENOMEM;
    for (size_t b = 0; b < a->batch; b++) {
        const float *x = a->x + b * a->stride_x, *w = a->w + b * a->stride_w;
        const float *bias = a->bias ? a->bias + b * a->stride_bias : NULL;
        const float *mul = a->mul ? a->mul + b * a->stride_mul : NULL;
        const float *add = a->add ? a->add + b * a->stride_add : NULL;
        float *y = a->y + b * a->stride_y, *p = tmp ? tmp : y;
        const size_t ldp = tmp ? a->n : a->ldy;
        if (a->k > 0) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)a->m, (int)a->n, (int)a->k, 1.0f, x,
                        (int)a->ldx, w, (int)a->ldw, 0.0f, p, (int)ldp);
        } else {
            for (size_t i = 0; i < a->m; i++)
                memset(p + i * ldp, 0, a->n * sizeof(float));
        }
        if (!bias && a->act == SL_ACT_NONE && !mul && !add)
            continue;
        for (size_t i = 0; i < a->m; i++) {
            const float *prow = p + i * ldp;
            float *row = y + i * a->ldy;
            const float *mrow = mul ? mul + i * a->ldmul : NULL, *arow = add ? add + i * a->ldadd : NULL;
            for (size_t j = 0; j < a->n; j++) {
                float v = bias ? prow[j] + bias[j] : prow[j];
                v = act_f(a->act, v);
                if (mrow)
                    v *= mrow[j];
                row[j] = arow ? v + arow[j] : v;
            }
        }
    }
    return 0;
}

int sl_cpu_affine(sl_op_ctx *ctx, const sl_affine_args *a)
{
    (void)ctx;
    for (size_t b = 0; b < a->batch; b++) {
        const float *add = a->add ? a->add + b * a->stride_p : NULL;
        const float *mul = a->mul ? a->mul + b * a->stride_p : NULL;
        for (size_t i = 0; i < a->rows; i++) {
            const float *x = a->x + b * a->stride_x + i * a->ldx;
            float *y = a->y + b * a->stride_y + i * a->ldy;
            for (size_t j = 0; j < a->cols; j++) {
                float v = add ? x[j] + add[j] : x[j];
                if (mul)
                    v *= mul[j];
                y[j] = act_f(a->act, v);
            }
        }
    }
    return 0;
}

static inline float sigmoid_f(float v) { return 1.0f / (1.0f + expf(-v)); }

/* One item: layer by layer; the input projections of all steps of both
 * directions are one GEMM (bias folded in), then each direction's recurrence. */
static void lstm_item(const sl_lstm_cfg *c, size_t T, const float *x, size_t ldx, const float *w, float *y,
                      size_t ldy, float *proj, float *buf0, float *buf1, float *h, float *cell, float *gates)
{
    const size_t D = 1 + (size_t)c->bidirectional, H = (size_t)c->hidden, G = 4 * H, O = D * H;
    const float *in = x;
    size_t ld_in = ldx, n_in = (size_t)c->input;
    for (int l = 0; l < c->layers; l++) {
        const float *w_ih = w, *w_hh = w_ih + D * G * n_in, *bias = w_hh + D * G * H;
        w = bias + D * G;
        const int last = l == c->layers - 1;
        float *out = last ? y : (l % 2 ? buf1 : buf0);
        const size_t ld_out = last ? ldy : O;
        /* proj[t][D*G] = in[t] . w_ih^T + bias */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)(D * G), (int)n_in, 1.0f, in,
                    (int)ld_in, w_ih, (int)n_in, 0.0f, proj, (int)(D * G));
        for (size_t t = 0; t < T; t++)
            for (size_t g = 0; g < D * G; g++)
                proj[t * D * G + g] += bias[g];
        for (size_t d = 0; d < D; d++) {
            const float *whh = w_hh + d * G * H;
            memset(h, 0, H * sizeof(float));
            memset(cell, 0, H * sizeof(float));
            for (size_t s = 0; s < T; s++) {
                const size_t t = d ? T - 1 - s : s;
                memcpy(gates, proj + t * D * G + d * G, G * sizeof(float));
                if (s > 0) /* h0 = 0: the first step has no recurrent term */
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)G, (int)H, 1.0f, whh, (int)H, h, 1, 1.0f, gates,
                                1);
                float *o = out + t * ld_out + d * H;
                for (size_t j = 0; j < H; j++) {
                    const float ig = sigmoid_f(gates[j]), fg = sigmoid_f(gates[H + j]);
                    const float gg = tanhf(gates[2 * H + j]), og = sigmoid_f(gates[3 * H + j]);
                    cell[j] = fg * cell[j] + ig * gg;
                    h[j] = og * tanhf(cell[j]);
                    o[j] = h[j];
                }
            }
        }
        in = out;
        ld_in = ld_out;
        n_in = O;
    }
}

int sl_cpu_lstm(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
                size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y)
{
    (void)ctx;
    const size_t D = 1 + (size_t)c->bidirectional, H = (size_t)c->hidden, G = 4 * H;
    const size_t need = T * D * G + 2 * T * D * H + 2 * H + G;
    float *ws = malloc(need * sizeof(float));
    if (!ws)
        return sl_seterr(SL_ENOMEM, "lstm: cannot allocate %zu bytes of scratch", need * sizeof(float));
    float *proj = ws, *buf0 = proj + T * D * G, *buf1 = buf0 + T * D * H, *h = buf1 + T * D * H, *cell = h + H,
          *gates = cell + H;
    for (size_t b = 0; b < batch; b++)
        lstm_item(c, T, x + b * stride_x, ldx, w + b * stride_w, y + b * stride_y, ldy, proj, buf0, buf1, h, cell,
                  gates);
    free(ws);
    return 0;
}
