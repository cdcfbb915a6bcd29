// Op attention: fused multi-head attention with an online softmax, in the
// style of FlashAttention (fp32 throughout; the [tq][tk] scores are never
// stored). A block is ATT_BQ query rows of one (sequence, head): each thread
// owns one query row, keeps it (rotated when a rope table is given) and its
// output accumulator in registers. Keys and values stream through shared memory
// in tiles of ATT_BK rows, rotated as they are loaded; per tile each thread
// computes its scores, then rescales its running maximum m, sum l and
// accumulator by exp(m_old - m_new) (exact softmax: the maximum is always
// subtracted). At the end out = acc / l, times sigmoid(gate). Rows past tq take
// part in the loads and barriers only. Sequences (grid.z, looping) and heads
// (grid.y) are independent; keys past k_len[b] are skipped.
#include "cu_ops.h"

#define ATT_BQ 64
#define ATT_BK 32
#define ATT_MAXD 128

// Element d of row r (ld) of one head, rotated by the angles of position pos.
static __device__ __forceinline__ float att_load(const float *row, int d, const float *rope, size_t pos, int D)
{
    if (!rope)
        return row[d];
    const float *cs = rope + pos * (size_t)D + (size_t)(d & ~1);
    const float c = cs[0], s = cs[1];
    const float x0 = row[d & ~1], x1 = row[d | 1];
    return (d & 1) ? x1 * c + x0 * s : x0 * c - x1 * s;
}

static __global__ void __launch_bounds__(ATT_BQ) attention_kernel(sl_attention_args a)
{
    SL_DYN_SHARED(float, smem); // ks[ATT_BK][D], vs[ATT_BK][D]
    const int D = a.dim_head, tid = (int)threadIdx.x, h = (int)blockIdx.y;
    float *ks = smem, *vs = smem + ATT_BK * D;
    const size_t i = (size_t)blockIdx.x * ATT_BQ + (size_t)tid, hoff = (size_t)h * (size_t)D;
    const bool live = i < a.tq;
    for (size_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
        size_t kl = a.tk;
        if (a.k_len) {
            const int32_t v = a.k_len[b];
            kl = v < 1 ? 1 : ((size_t)v > a.tk ? a.tk : (size_t)v);
        }
        float q[ATT_MAXD], acc[ATT_MAXD], sc[ATT_BK];
        float m = -INFINITY, l = 0.0f;
        for (int d = 0; d < D; d++) {
            q[d] = live ? att_load(a.q + b * a.stride_q + i * a.ldq + hoff, d, a.rope, i, D) : 0.0f;
            acc[d] = 0.0f;
        }
        const float *bias = (a.bias && live) ? a.bias + b * a.stride_bias_b + (size_t)h * a.stride_bias_h + i * a.ld_bias
                                             : NULL;
        for (size_t j0 = 0; j0 < kl; j0 += ATT_BK) {
            __syncthreads(); // the previous tile has been used by every thread
            for (int e = tid; e < ATT_BK * D; e += ATT_BQ) {
                const int r = e / D, d = e % D;
                const size_t j = j0 + (size_t)r;
                float kv = 0.0f, vv = 0.0f;
                if (j < kl) {
                    kv = att_load(a.k + b * a.stride_k + j * a.ldk + hoff, d, a.rope, j, D);
                    vv = a.v[b * a.stride_v + j * a.ldv + hoff + (size_t)d];
                }
                ks[e] = kv;
                vs[e] = vv;
            }
            __syncthreads();
            if (!live)
                continue;
            const int nr = (kl - j0) < ATT_BK ? (int)(kl - j0) : ATT_BK;
            float tmax = -INFINITY;
            for (int r = 0; r < nr; r++) {
                float s = 0.0f;
                for (int d = 0; d < D; d++)
                    s += q[d] * ks[r * D + d];
                s = s * a.scale;
                if (bias)
                    s = s + bias[j0 + (size_t)r];
                sc[r] = s;
                tmax = fmaxf(tmax, s);
            }
            const float mn = fmaxf(m, tmax);
            if (mn == -INFINITY) // every score so far is -inf: nothing to add yet
                continue;
            const float corr = expf(m - mn);
            l = l * corr;
            for (int d = 0; d < D; d++)
                acc[d] = acc[d] * corr;
            for (int r = 0; r < nr; r++) {
                const float p = expf(sc[r] - mn);
                l += p;
                for (int d = 0; d < D; d++)
                    acc[d] += p * vs[r * D + d];
            }
            m = mn;
        }
        if (live) {
            float g = 1.0f / l;
            if (a.gate)
                g = g * (1.0f / (1.0f + expf(-a.gate[b * a.stride_gate + i * a.ld_gate + (size_t)h])));
            float *o = a.out + b * a.stride_o + i * a.ldo + hoff;
            for (int d = 0; d < D; d++)
                o[d] = acc[d] * g;
        }
    }
}

static int attention_launch(sl_stream_t s, const sl_attention_args *a)
{
    const dim3 grid(sl_blocks_for(a->tq, ATT_BQ, 1u << 30), (unsigned)a->heads, sl_blocks_for(a->batch, 1, SL_GRID_YZ_MAX));
    const size_t shmem = 2 * (size_t)ATT_BK * (size_t)a->dim_head * sizeof(float);
    return SL_LAUNCH(attention_kernel, grid, dim3(ATT_BQ), shmem, s, *a);
}

extern "C" int SL_FN(attention)(sl_op_ctx *ctx, const sl_attention_args *a)
{
    if (a->heads > (int)SL_GRID_YZ_MAX)
        return sl_seterr(SL_EINVAL, "op attention: more than %u heads", SL_GRID_YZ_MAX);
    return attention_launch(SL_FN(stream)(ctx), a);
}
