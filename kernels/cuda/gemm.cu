// Op gemm: y[b] = act(x[b] w[b]^T + bias[b]) * mul[b] + add[b] (a batch of linear
// layers, PyTorch weight layout, any leading dimensions and batch strides).
//
// Hand-written, not cuBLAS: the same source then runs in CI through the launch
// emulation, the epilogue (bias, activation, product) is fused, and the strided
// batches need no pointer arrays. A 64 x 64 output tile per block of 16 x 16
// threads, each thread a 4 x 4 register tile (rows ty + 16 i, columns
// tx + 16 j: conflict-free shared-memory reads, coalesced stores); K in steps of
// 16 staged in shared memory, k-major, rows padded. Blocked float summation:
// each 16-wide K step is summed into a fresh partial that is then added to the
// running sum, so the rounding error grows like 16 + k/16 instead of k (a plain
// running sum over umxhq's fc1, k = 2974, missed the CPU's BLAS by 1.35e-5
// relative after tanh; blocked, see kernels/README.md). Extra cost: one add per
// 16 multiply-adds.
#include "cu_ops.h"
#include "cu_state.h"

#define GEMM_T 64
#define GEMM_K 16
#define GEMM_TH 16

static __device__ __forceinline__ float gemm_act(sl_act act, float v)
{
    if (act == SL_ACT_RELU)
        return v < 0.0f ? 0.0f : v;
    if (act == SL_ACT_TANH)
        return tanhf(v);
    if (act == SL_ACT_GELU) // exact (erf) GELU, as torch.nn.GELU()
        return 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
    return v;
}

static __global__ void __launch_bounds__(GEMM_TH *GEMM_TH) gemm_kernel(sl_gemm_args a)
{
    SL_SHARED(float, sx, [GEMM_K][GEMM_T + 4]);
    SL_SHARED(float, sw, [GEMM_K][GEMM_T + 4]);
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y, tid = ty * GEMM_TH + tx;
    const size_t m = a.m, n = a.n, k = a.k;
    for (size_t b = blockIdx.z; b < a.batch; b += gridDim.z) {
        const float *x = a.x + b * a.stride_x, *w = a.w + b * a.stride_w;
        for (size_t m0 = (size_t)blockIdx.y * GEMM_T; m0 < m; m0 += (size_t)gridDim.y * GEMM_T) {
            const size_t n0 = (size_t)blockIdx.x * GEMM_T;
            float acc[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++)
                    acc[i][j] = 0.0f;
            for (size_t k0 = 0; k0 < k; k0 += GEMM_K) {
                for (int l = 0; l < (GEMM_T * GEMM_K) / (GEMM_TH * GEMM_TH); l++) {
                    const int idx = tid + l * GEMM_TH * GEMM_TH, r = idx / GEMM_K, kk = idx % GEMM_K;
                    const size_t gk = k0 + (size_t)kk, row = m0 + (size_t)r, col = n0 + (size_t)r;
                    sx[kk][r] = (row < m && gk < k) ? x[row * a.ldx + gk] : 0.0f;
                    sw[kk][r] = (col < n && gk < k) ? w[col * a.ldw + gk] : 0.0f;
                }
                __syncthreads();
                float part[4][4];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++)
                        part[i][j] = 0.0f;
                for (int kk = 0; kk < GEMM_K; kk++) {
                    float xv[4], wv[4];
                    for (int i = 0; i < 4; i++)
                        xv[i] = sx[kk][ty + GEMM_TH * i];
                    for (int j = 0; j < 4; j++)
                        wv[j] = sw[kk][tx + GEMM_TH * j];
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++)
                            part[i][j] += xv[i] * wv[j];
                }
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++)
                        acc[i][j] += part[i][j];
                __syncthreads();
            }
            const float *bias = a.bias ? a.bias + b * a.stride_bias : NULL;
            const float *mul = a.mul ? a.mul + b * a.stride_mul : NULL;
            const float *add = a.add ? a.add + b * a.stride_add : NULL;
            float *y = a.y + b * a.stride_y;
            for (int i = 0; i < 4; i++) {
                const size_t row = m0 + (size_t)(ty + GEMM_TH * i);
                if (row >= m)
                    continue;
                for (int j = 0; j < 4; j++) {
                    const size_t col = n0 + (size_t)(tx + GEMM_TH * j);
                    if (col >= n)
                        continue;
                    float v = bias ? acc[i][j] + bias[col] : acc[i][j];
                    v = gemm_act(a.act, v);
                    if (mul)
                        v = v * mul[row * a.ldmul + col];
                    if (add) // may be y itself: this thread reads the element, then writes it
                        v = v + add[row * a.ldadd + col];
                    y[row * a.ldy + col] = v;
                }
            }
        }
    }
}

static int gemm_launch(sl_stream_t s, const sl_gemm_args *a)
{
    const dim3 grid(sl_blocks_for(a->n, GEMM_T, 1u << 30), sl_blocks_for(a->m, GEMM_T, SL_GRID_YZ_MAX),
                    sl_blocks_for(a->batch, 1, SL_GRID_YZ_MAX));
    return SL_LAUNCH(gemm_kernel, grid, dim3(GEMM_TH, GEMM_TH), 0, s, *a);
}

extern "C" int SL_FN(gemm)(sl_op_ctx *ctx, const sl_gemm_args *a) { return gemm_launch(SL_FN(stream)(ctx), a); }

// The op's epilogue after a product t[batch][m][n] that already holds the bias
// (the cuBLASLt path of gemm_lt.cu): y = act(t) * mul + add. One thread per
// element, grid-stride; add may be y itself (read, then written, by one thread).
static __global__ void gemm_epilogue_kernel(sl_gemm_args a, const float *t)
{
    const size_t mn = a.m * a.n, total = a.batch * mn;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const size_t b = i / mn, row = i % mn / a.n, col = i % a.n;
        float v = gemm_act(a.act, t[i]);
        if (a.mul)
            v = v * a.mul[b * a.stride_mul + row * a.ldmul + col];
        if (a.add)
            v = v + a.add[b * a.stride_add + row * a.ldadd + col];
        a.y[b * a.stride_y + row * a.ldy + col] = v;
    }
}

extern "C" int SL_FN(gemm_epilogue)(sl_op_ctx *ctx, const sl_gemm_args *a, const float *t)
{
    const dim3 grid(sl_blocks_for(a->batch * a->m * a->n, SL_BLOCK, 1u << 16));
    return SL_LAUNCH(gemm_epilogue_kernel, grid, dim3(SL_BLOCK), 0, SL_FN(stream)(ctx), *a, t);
}

// The op (the backend table's entry; the LSTM's input projection calls
// SL_FN(gemm) directly and stays fp32): tf32 / bf16 contexts through cuBLASLt.
extern "C" int SL_FN(gemm_op)(sl_op_ctx *ctx, const sl_gemm_args *a)
{
#if SL_CUDA_API
    const int rc = sl_cuda_gemm_lt(ctx, a);
    if (rc <= 0)
        return rc;
#endif
    return SL_FN(gemm)(ctx, a);
}
