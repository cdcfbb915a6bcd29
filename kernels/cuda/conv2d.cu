// Op conv2d: y[b][o] = act(bias[o] + sum_c w[o][c] (*) x[b][c]), stride 1, zero
// 'same' padding (torch Conv2d, padding k/2), NCHW. A direct convolution, written
// by hand so that CI runs it through the emulation: a block of 16 x 16 threads
// computes a 16 x 16 tile of output pixels for CV_OB output channels; per input
// channel the (16 + k - 1)^2 input tile (zeros outside the image) and the
// CV_OB x k x k weights are staged in shared memory, each thread accumulating
// its pixel for the CV_OB channels in registers (float, c then u then v order).
// The obvious place to swap in cuDNN or an implicit GEMM on tensor cores once a
// GPU benchmark asks for it; nothing outside this file would change.
#include "cu_ops.h"

#define CV_T 16   // output tile edge (threads per block edge)
#define CV_OB 8   // output channels per block
#define CV_KMAX 7 // largest kernel (ops.c checks)
#define CV_S (CV_T + CV_KMAX - 1)

static __device__ __forceinline__ float conv_act(sl_act act, float v)
{
    if (act == SL_ACT_RELU)
        return v < 0.0f ? 0.0f : v;
    if (act == SL_ACT_TANH)
        return tanhf(v);
    return v;
}

static __global__ void __launch_bounds__(CV_T *CV_T) conv2d_kernel(sl_conv2d_args a, unsigned o_blocks)
{
    __shared__ float s_x[CV_S][CV_S];
    __shared__ float s_w[CV_OB][CV_KMAX * CV_KMAX];
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y, tid = ty * CV_T + tx;
    const int k = a.k, p = k / 2, kk = k * k, S = CV_T + k - 1;
    const int j = (int)blockIdx.x * CV_T + tx, i0 = (int)blockIdx.y * CV_T, i = i0 + ty, j0 = (int)blockIdx.x * CV_T;
    const size_t HW = (size_t)a.h * (size_t)a.w;
    const size_t n_z = a.batch * (size_t)o_blocks;
    for (size_t z = blockIdx.z; z < n_z; z += gridDim.z) {
        const size_t b = z / o_blocks;
        const int o0 = (int)(z % o_blocks) * CV_OB;
        float acc[CV_OB];
        for (int q = 0; q < CV_OB; q++)
            acc[q] = 0.0f;
        for (int c = 0; c < a.c_in; c++) {
            const float *xc = a.x + (b * (size_t)a.c_in + (size_t)c) * HW;
            __syncthreads(); // the previous channel's tiles have been used
            for (int e = tid; e < S * S; e += CV_T * CV_T) {
                const int r = i0 + e / S - p, q = j0 + e % S - p;
                s_x[e / S][e % S] = (r >= 0 && r < a.h && q >= 0 && q < a.w) ? xc[(size_t)r * a.w + q] : 0.0f;
            }
            for (int e = tid; e < CV_OB * kk; e += CV_T * CV_T) {
                const int o = o0 + e / kk;
                s_w[e / kk][e % kk] = o < a.c_out ? a.wt[((size_t)o * a.c_in + (size_t)c) * kk + e % kk] : 0.0f;
            }
            __syncthreads();
            for (int u = 0; u < k; u++)
                for (int v = 0; v < k; v++) {
                    const float xv = s_x[ty + u][tx + v];
                    for (int q = 0; q < CV_OB; q++)
                        acc[q] = __fadd_rn(acc[q], __fmul_rn(s_w[q][u * k + v], xv));
                }
        }
        if (i < a.h && j < a.w)
            for (int q = 0; q < CV_OB && o0 + q < a.c_out; q++) {
                const float v = a.bias ? acc[q] + a.bias[o0 + q] : acc[q];
                a.y[(b * (size_t)a.c_out + (size_t)(o0 + q)) * HW + (size_t)i * a.w + j] = conv_act(a.act, v);
            }
    }
}

static int conv2d_launch(sl_stream_t s, const sl_conv2d_args *a)
{
    const unsigned o_blocks = (unsigned)((a->c_out + CV_OB - 1) / CV_OB);
    const dim3 grid(sl_blocks_for((size_t)a->w, CV_T, 1u << 30), sl_blocks_for((size_t)a->h, CV_T, SL_GRID_YZ_MAX),
                    sl_blocks_for(a->batch * o_blocks, 1, SL_GRID_YZ_MAX));
    return SL_LAUNCH(conv2d_kernel, grid, dim3(CV_T, CV_T), 0, s, *a, o_blocks);
}

extern "C" int SL_FN(conv2d)(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    if ((size_t)a->h > (size_t)CV_T * SL_GRID_YZ_MAX)
        return sl_seterr(SL_EUNSUPPORTED, "conv2d: height %d exceeds %u rows", a->h, CV_T * SL_GRID_YZ_MAX);
    return conv2d_launch(SL_FN(stream)(ctx), a);
}
