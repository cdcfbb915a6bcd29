/* One (sequence, head) pair of sl_op_attention on the AMX tiles (cpu_amx.c), for the CPU's
 * runtime.precision tf32 and bf16 on long sequences: both products of the pair, q k^T and p v,
 * as tile GEMMs of three bf16 products per product (tf32's, whatever the mode: the softmax
 * probabilities keep about 2^-16 of relative error, not bf16's 2^-8), the exact softmax in
 * fp32 between them. q is rotated and scaled by `scale` into a copy, k rotated into a copy
 * and packed as the "weights" of the first product (n = k_len rows of dim_head), v transposed
 * and packed as those of the second (n = dim_head rows of k_len); then per block of AMX_QB
 * query rows: the scores (+ bias, the first product's residual) into a block of rows, the
 * unnormalised softmax with 1 / sum per row (sl_cpu_softmax_rows_exp2), the second product
 * straight into the output rows, each row scaled by its 1 / sum. */
#include <string.h>

#include "cpu_ops.h"
#include "cpu_simd.h"

#define AMX_QB 32

static size_t up16(size_t n) { return (n + 15) & ~(size_t)15; }

size_t sl_cpu_attn_amx_ws(size_t tq, size_t tk, size_t D)
{
    const size_t kp = (tk + 31) & ~(size_t)31;
    /* qr, kr, v^T, the scores of a block, the packed k and v (uint16: half a float each) */
    return up16(tq * D) + up16(tk * D) + up16(D * tk) + up16(AMX_QB * kp) + up16(sl_cpu_amx_wsize(3, tk, D) / 2 + 1) +
           up16(sl_cpu_amx_wsize(3, D, tk) / 2 + 1);
}

int sl_cpu_attn_amx(const sl_cpu_attn_pair *p, float *ws)
{
    if (!sl_cpu_amx() || !sl_cpu_simd_avx512())
        return 0;
    const size_t tq = p->tq, kl = p->kl, D = p->D, kp = (kl + 31) & ~(size_t)31;
    float *qr = ws, *kr = qr + up16(tq * D), *vt = kr + up16(kl * D), *S = vt + up16(D * kl);
    uint16_t *kw = (uint16_t *)(S + up16(AMX_QB * kp));
    uint16_t *vw = kw + 2 * up16(sl_cpu_amx_wsize(3, kl, D) / 2 + 1);
    sl_cpu_rotate_rows(p->q, p->ldq, tq, (int)D, p->rope, qr);
    for (size_t i = 0; i < tq * D; i++)
        qr[i] *= p->scale;
    sl_cpu_rotate_rows(p->k, p->ldk, kl, (int)D, p->rope, kr);
    for (size_t j = 0; j < kl; j++)
        for (size_t d = 0; d < D; d++)
            vt[d * kl + j] = p->v[j * p->ldv + d];
    sl_cpu_amx_pack_w(3, kl, D, kr, D, 0, (kl + 31) / 32 * 2, kw);
    sl_cpu_amx_pack_w(3, D, kl, vt, kl, 0, (D + 31) / 32 * 2, vw);
    for (size_t i0 = 0; i0 < tq; i0 += AMX_QB) {
        const size_t nq = tq - i0 < AMX_QB ? tq - i0 : AMX_QB;
        /* the block's scores at rows [0, nq) of S: x and y based so that row i0 lands on row 0 */
        const sl_cpu_amx_epi es = {.act = SL_ACT_NONE, .add = p->bias ? p->bias + i0 * p->ld_bias : NULL,
                                   .ldadd = p->ld_bias, .y = S, .ldy = kp};
        if (!sl_cpu_amx_gemm(3, 0, nq, 0, (kl + 31) / 32, kl, D, qr + i0 * D, D, kw, &es))
            return 0; /* the caller's kernel then writes every row */
        float inv[AMX_QB];
        if (!sl_cpu_softmax_rows_exp2(S, kp, nq, kl, inv))
            return 0;
        const sl_cpu_amx_epi eo = {.act = SL_ACT_NONE, .y = p->out + i0 * p->ldo, .ldy = p->ldo};
        if (!sl_cpu_amx_gemm(3, 0, nq, 0, (D + 31) / 32, D, kl, S, kp, vw, &eo))
            return 0;
        for (size_t r = 0; r < nq; r++) {
            float *o = p->out + (i0 + r) * p->ldo;
            const float sc = p->row_scale ? inv[r] * p->row_scale[i0 + r] : inv[r];
            for (size_t d = 0; d < D; d++)
                o[d] *= sc;
        }
    }
    return 1;
}
