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
//
// Persistent recurrence (the default where it fits): instead of (2) and (3),
// one cooperative launch runs all T steps of a layer on many SMs. A group is
// the items that share W_hh (all of them when stride_w is 0, else each item);
// block (p, d, g) owns hidden units [p J, p J + J) of direction d for group g:
// their 4 J rows of W_hh sit in its shared memory (k-major) for the whole
// launch, and each step it stages h(t-1) of the group's items from global
// memory, computes its gate rows and the cell update of its units, writes its
// slice of h(t) (double-buffered by step parity), and meets the grid at
// SL_GRID_SYNC. The sums are the same float sums in the same order as the
// step kernel's, so both give the same bits. J is the smallest power of two
// (>= 8) whose grid fits the device at once (SL_COOP_MAX_BLOCKS) within 227 KiB
// of shared memory per block; when none does, the step kernel runs.
// SL_LSTM_IMPL=step|persist forces one (persist fails with SL_EUNSUPPORTED
// where it does not fit).
#include "cu_ops.h"

#include <stdlib.h>
#include <string.h>

#define LSTM_P_THREADS 128

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

// grid (ceil(H / J), D, groups), LSTM_P_THREADS threads, cooperative.
// proj[b][t][D*G] (bias included), w_hh of group g at w_hh + g * stride_wg
// ([D][G][H]), hbuf[2][batch][D][H]; item b = g * Bg + i.
static __global__ void __launch_bounds__(LSTM_P_THREADS)
    lstm_persist_kernel(size_t T, int H, int J, int Bg, const float *__restrict__ proj, const float *__restrict__ w_hh,
                        size_t stride_wg, float *__restrict__ out, size_t ld_out, size_t stride_out,
                        float *__restrict__ hbuf, size_t batch)
{
    SL_DYN_SHARED(float, sm);
    const int G = 4 * H, D = (int)gridDim.y, d = (int)blockIdx.y, R = 4 * J;
    const int tid = (int)threadIdx.x, nt = (int)blockDim.x, j0 = (int)blockIdx.x * J;
    const int nj = H - j0 < J ? H - j0 : J;
    const size_t g = blockIdx.z;
    float *sw = sm, *sh = sw + (size_t)H * R, *sg = sh + (size_t)Bg * H, *sc = sg + (size_t)Bg * R;
    const float *wg = w_hh + g * stride_wg + (size_t)d * G * H;
    for (int i = tid; i < H * R; i += nt) { // sw[k][rr], rr = gate * J + unit
        const int k = i / R, rr = i % R, gate = rr / J, jj = rr % J;
        sw[i] = jj < nj ? wg[(size_t)(gate * H + j0 + jj) * H + k] : 0.0f;
    }
    for (int i = tid; i < Bg * J; i += nt)
        sc[i] = 0.0f;
    const size_t plane = batch * (size_t)D * H;
    for (size_t s = 0; s < T; s++) {
        const size_t t = d ? T - 1 - s : s;
        const float *cur = hbuf + (s & 1) * plane;
        float *nxt = hbuf + ((s + 1) & 1) * plane;
        if (s > 0)
            for (int i = tid; i < Bg * H; i += nt) {
                const size_t b = g * Bg + (size_t)(i / H);
                sh[i] = cur[(b * D + d) * H + i % H];
            }
        __syncthreads();
        for (int q = tid; q < Bg * R; q += nt) {
            const int item = q / R, rr = q % R, gate = rr / J, jj = rr % J;
            if (jj >= nj)
                continue;
            float acc = 0.0f;
            if (s > 0)
                for (int k = 0; k < H; k++)
                    acc += sw[(size_t)k * R + rr] * sh[(size_t)item * H + k];
            const size_t b = g * Bg + (size_t)item;
            sg[q] = proj[(b * T + t) * (size_t)D * G + (size_t)d * G + (size_t)(gate * H + j0 + jj)] + acc;
        }
        __syncthreads();
        for (int q = tid; q < Bg * J; q += nt) {
            const int item = q / J, jj = q % J;
            if (jj >= nj)
                continue;
            const float *gt = sg + (size_t)item * R;
            const float ig = lstm_sigmoid(gt[jj]), fg = lstm_sigmoid(gt[J + jj]);
            const float gg = tanhf(gt[2 * J + jj]), og = lstm_sigmoid(gt[3 * J + jj]);
            const float cc = fg * sc[q] + ig * gg;
            const float h = og * tanhf(cc);
            sc[q] = cc;
            const size_t b = g * Bg + (size_t)item;
            out[b * stride_out + t * ld_out + (size_t)d * H + j0 + jj] = h;
            nxt[(b * D + d) * H + j0 + jj] = h;
        }
        SL_GRID_SYNC();
    }
}

// The persistent kernel's plan for this call: J (0: it does not fit).
struct lstm_plan {
    int J, Bg;
    size_t groups, smem;
};

static lstm_plan lstm_persist_plan(size_t batch, size_t D, size_t H, size_t stride_w)
{
    lstm_plan p = {0, stride_w ? 1 : (int)batch, stride_w ? batch : 1, 0};
    if (batch > (stride_w ? SL_GRID_YZ_MAX : 64u))
        return p;
    for (size_t J = 8;; J *= 2) {
        const size_t Jc = J < H ? J : H, Bg = (size_t)p.Bg;
        const size_t smem = (H * 4 * Jc + Bg * H + Bg * 4 * Jc + Bg * Jc) * sizeof(float);
        if (smem > 232448 - 1024)
            break;
        const size_t blocks = p.groups * D * ((H + Jc - 1) / Jc);
        if (blocks <= SL_COOP_MAX_BLOCKS(lstm_persist_kernel, LSTM_P_THREADS, smem)) {
            p.J = (int)Jc;
            p.smem = smem;
            break;
        }
        if (Jc == H)
            break;
    }
    return p;
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
    const char *impl = getenv("SL_LSTM_IMPL");
    if (impl && *impl && strcmp(impl, "step") && strcmp(impl, "persist") && strcmp(impl, "auto"))
        return sl_seterr(SL_EINVAL, "SL_LSTM_IMPL=%s: expected auto, step or persist", impl);
    const lstm_plan plan = impl && !strcmp(impl, "step") ? lstm_plan{0, 1, 0, 0} : lstm_persist_plan(batch, D, H, stride_w);
    if (!plan.J && impl && !strcmp(impl, "persist"))
        return sl_seterr(SL_EUNSUPPORTED, "lstm: SL_LSTM_IMPL=persist, but %zu x %zu directions x hidden %zu do not "
                                          "fit one cooperative launch here", batch, D, H);
    // scratch: proj[batch][T][D*G], two layer buffers [batch][T][O], whh_t[batch][D][H][G] (step kernel)
    // or h[2][batch][D][H] (persistent kernel)
    const size_t n_proj = batch * T * D * G, n_buf = batch * T * O, n_wt = plan.J ? 2 * batch * D * H : batch * D * H * G;
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
        if (rc == 0 && plan.J) {
            if (plan.smem > 48 * 1024)
                rc = SL_SHMEM_OPTIN(lstm_persist_kernel, plan.smem);
            const dim3 grid((unsigned)((H + (size_t)plan.J - 1) / (size_t)plan.J), (unsigned)D, (unsigned)plan.groups);
            if (rc == 0)
                rc = SL_LAUNCH_COOP(lstm_persist_kernel, grid, dim3(LSTM_P_THREADS), plan.smem, s, T, (int)H, plan.J,
                                    plan.Bg, (const float *)proj, w + o_hh, stride_w, out, ld_out, stride_out, whh_t,
                                    batch);
        } else if (rc == 0) {
            rc = SL_LAUNCH(lstm_transpose_kernel, dim3(sl_blocks_for(n_wt, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0, s,
                           batch, (int)D, (int)G, (int)H, w + o_hh, stride_w, whh_t);
            if (rc == 0)
                rc = SL_LAUNCH(lstm_step_kernel, dim3((unsigned)D, (unsigned)batch), dim3(nt), smem, s, T, (int)H,
                               (const float *)proj, (const float *)whh_t, out, ld_out, stride_out);
        }
        in = out;
        ld_in = ld_out;
        stride_in = stride_out;
        n_in = O;
    }
    return rc;
}
