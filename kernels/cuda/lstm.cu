// Op lstm: multi-layer (bi)directional LSTM with torch.nn.LSTM semantics
// (gates i, f, g, o; h0 = c0 = 0), hand-written (no cuDNN).
//
// Per layer: (1) the input projections of every step and both directions are
// one batched GEMM (gemm.cu, bias fused) into the scratch; (2) W_hh of the layer
// is transposed into the scratch (k-major), so that (3) the recurrence kernel's
// threads, one per gate row, read it coalesced. The recurrence runs one block
// per (item, direction) through all T steps: gate rows = projection + W_hh h
// (h in shared memory, broadcast reads), barrier, cell and hidden update,
// barrier. Nothing is atomic; the result is deterministic. Shared memory holds
// the gates and h, c: (4H + 2H) floats, so hidden <= 2048.
#include "cu_ops.h"

#define LSTM_MAX_THREADS 1024

static __global__ void lstm_transpose_kernel(size_t batch, int D, int G, int H, const float *__restrict__ whh,
                                             size_t stride_w, float *__restrict__ whh_t)
{
    // whh_t[b][d][k][r] = whh[b*stride_w + (d*G + r)*H + k]
    const size_t per = (size_t)D * G * H, total = batch * per;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t b = i / per, rem = i % per, d = rem / ((size_t)G * H), kr = rem % ((size_t)G * H);
        const size_t k = kr / (size_t)G, r = kr % (size_t)G;
        whh_t[i] = whh[b * stride_w + (d * G + r) * H + k];
    }
}

static __device__ __forceinline__ float lstm_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }

// grid (D, batch). proj[b][t][D*G] (bias included), whh_t[b][d][H][G].
static __global__ void __launch_bounds__(LSTM_MAX_THREADS)
    lstm_step_kernel(size_t T, int H, const float *__restrict__ proj, const float *__restrict__ whh_t,
                     float *__restrict__ out, size_t ld_out, size_t stride_out)
{
    SL_DYN_SHARED(float, sm);
    const int G = 4 * H, D = (int)gridDim.x, d = (int)blockIdx.x, tid = (int)threadIdx.x, nt = (int)blockDim.x;
    const size_t b = blockIdx.y;
    float *s_g = sm, *s_h = sm + G, *s_c = s_h + H;
    const float *wt = whh_t + (b * (size_t)D + (size_t)d) * (size_t)H * (size_t)G;
    const float *pj = proj + b * T * (size_t)D * G + (size_t)d * G;
    float *o = out + b * stride_out + (size_t)d * H;
    for (int j = tid; j < H; j += nt) {
        s_h[j] = 0.0f;
        s_c[j] = 0.0f;
    }
    __syncthreads();
    for (size_t s = 0; s < T; s++) {
        const size_t t = d ? T - 1 - s : s;
        for (int r = tid; r < G; r += nt) {
            float acc = 0.0f;
            if (s > 0)
                for (int k = 0; k < H; k++)
                    acc += wt[(size_t)k * G + r] * s_h[k];
            s_g[r] = pj[t * (size_t)D * G + r] + acc;
        }
        __syncthreads();
        for (int j = tid; j < H; j += nt) {
            const float ig = lstm_sigmoid(s_g[j]), fg = lstm_sigmoid(s_g[H + j]);
            const float gg = tanhf(s_g[2 * H + j]), og = lstm_sigmoid(s_g[3 * H + j]);
            const float c = fg * s_c[j] + ig * gg;
            const float h = og * tanhf(c);
            s_c[j] = c;
            s_h[j] = h;
            o[t * ld_out + j] = h;
        }
        __syncthreads();
    }
}

extern "C" int SL_FN(lstm)(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
                           size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y)
{
    const size_t D = 1 + (size_t)c->bidirectional, H = (size_t)c->hidden, G = 4 * H, O = D * H;
    const size_t smem = (G + 2 * H) * sizeof(float);
    if (smem > 48 * 1024)
        return sl_seterr(SL_EUNSUPPORTED, "lstm: hidden %zu per direction is more than the CUDA backend's 2048", H);
    if (batch > SL_GRID_YZ_MAX)
        return sl_seterr(SL_EUNSUPPORTED, "lstm: batch %zu above %u", batch, SL_GRID_YZ_MAX);
    // scratch: proj[batch][T][D*G], two layer buffers [batch][T][O], whh_t[batch][D][H][G]
    const size_t n_proj = batch * T * D * G, n_buf = batch * T * O, n_wt = batch * D * H * G;
    void *ws = NULL;
    int rc = SL_FN(scratch)(ctx, (n_proj + 2 * n_buf + n_wt) * sizeof(float), &ws);
    if (rc < 0)
        return rc;
    float *proj = (float *)ws, *buf[2] = {proj + n_proj, proj + n_proj + n_buf}, *whh_t = buf[1] + n_buf;
    sl_stream_t s = SL_FN(stream)(ctx);
    const float *in = x;
    size_t ld_in = ldx, stride_in = stride_x, n_in = (size_t)c->input, off = 0;
    unsigned nt = (unsigned)(G < LSTM_MAX_THREADS ? G : LSTM_MAX_THREADS);
    nt = (nt + 31) / 32 * 32;
    for (int l = 0; l < c->layers && rc == 0; l++) {
        const size_t o_ih = off, o_hh = o_ih + D * G * n_in, o_b = o_hh + D * G * H;
        off = o_b + D * G;
        const int last = l == c->layers - 1;
        float *out = last ? y : buf[l % 2];
        const size_t ld_out = last ? ldy : O, stride_out = last ? stride_y : T * O;
        sl_gemm_args g;
        memset(&g, 0, sizeof g);
        g.batch = batch;
        g.m = T;
        g.n = D * G;
        g.k = n_in;
        g.x = in;
        g.ldx = ld_in;
        g.stride_x = stride_in;
        g.w = w + o_ih;
        g.ldw = n_in;
        g.stride_w = stride_w;
        g.bias = w + o_b;
        g.stride_bias = stride_w;
        g.act = SL_ACT_NONE;
        g.y = proj;
        g.ldy = D * G;
        g.stride_y = T * D * G;
        rc = SL_FN(gemm)(ctx, &g);
        if (rc == 0)
            rc = SL_LAUNCH(lstm_transpose_kernel, dim3(sl_blocks_for(n_wt, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s,
                           batch, (int)D, (int)G, (int)H, w + o_hh, stride_w, whh_t);
        if (rc == 0)
            rc = SL_LAUNCH(lstm_step_kernel, dim3((unsigned)D, (unsigned)batch), dim3(nt), smem, s, T, (int)H,
                           (const float *)proj, (const float *)whh_t, out, ld_out, stride_out);
        in = out;
        ld_in = ld_out;
        stride_in = stride_out;
        n_in = O;
    }
    return rc;
}
