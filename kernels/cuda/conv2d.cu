// Op conv2d: y[b][o] = act(bias[o] + sum_c w[o][c] (*) x[b][c]), stride 1, zero
// 'same' padding (torch Conv2d, padding k/2), NCHW. Two implementations:
//
//  * cuDNN (real CUDA build configured with cuDNN, SL_HAVE_CUDNN; the default
//    there): cudnnConvolutionForward (cross-correlation, as torch) with the math
//    restricted to FP32 FMA (CUDNN_FMA_MATH: no TF32 tensor cores, which would
//    miss the CPU reference by around 1e-3), then bias + activation by
//    conv2d_epilogue_kernel. One cuDNN handle per context, made at its first
//    convolution and bound to the context's stream; the algorithm is chosen once
//    per shape from cuDNN's heuristics (no timing runs, no host waits) among the
//    GEMM-family algorithms, which sum the same products as the CPU's im2col +
//    GEMM (Winograd and FFT transform the data and lose accuracy), and cached per
//    (batch, c_in, c_out, h, w, k) in the context. The workspace (at most
//    CV_WS_MAX, the CPU's im2col bound) is the context scratch.
//  * a direct convolution written by hand: the only one of the emulated build
//    (cuDNN is a GPU library), so CI runs it through the emulation; used on a GPU
//    without cuDNN, with SL_CONV_IMPL=direct (to compare the two), and for tensors
//    of 2^31 elements or more (cuDNN's legacy descriptors take int sizes). A block
//    of 16 x 16 threads computes a 16 x 16 tile of output pixels for CV_OB output
//    channels; per input channel the (16 + k - 1)^2 input tile (zeros outside the
//    image) and the CV_OB x k x k weights are staged in shared memory, each
//    thread accumulating its pixel for the CV_OB channels in registers (float, c
//    then u then v order).
#include "cu_ops.h"

#if SL_CUDA_API
#include <stdio.h>
#include <stdlib.h>

#include "cu_state.h"
#endif
#if SL_CUDA_API && defined(SL_HAVE_CUDNN)
#define SL_CONV_CUDNN 1
#include <cudnn.h>
#include <limits.h>

#include "cu_dl.h"
extern "C" {
#include "../../common/sl_log.h"
}

// libcudnn's entry points (cu_dl.h), loaded at the first context's open.
#if CUDNN_MAJOR >= 9
#define CUDNN_API_9(X, t, p) X(t, p, GetLastErrorString)
#else
#define CUDNN_API_9(X, t, p)
#endif
#define CUDNN_API(X, t, p)                                                                  \
    X(t, p, Create) X(t, p, Destroy) X(t, p, SetStream) X(t, p, CreateTensorDescriptor)           \
    X(t, p, DestroyTensorDescriptor) X(t, p, CreateFilterDescriptor) X(t, p, DestroyFilterDescriptor) \
    X(t, p, CreateConvolutionDescriptor) X(t, p, DestroyConvolutionDescriptor)                    \
    X(t, p, SetTensor4dDescriptor) X(t, p, SetFilter4dDescriptor) X(t, p, SetConvolution2dDescriptor) \
    X(t, p, SetConvolutionMathType) X(t, p, GetConvolutionForwardAlgorithm_v7)                    \
    X(t, p, GetConvolutionForwardWorkspaceSize) X(t, p, ConvolutionForward) X(t, p, GetErrorString) \
    X(t, p, GetVersion) CUDNN_API_9(X, t, p)
static struct {
    SL_CU_TABLE(CUDNN_API, cudnn)
} cudnn;
SL_CU_LOADER(sl_cuda_cudnn_load, cudnn, cudnn, CUDNN_API, "libcudnn.so." SL_CU_STR(CUDNN_MAJOR),
             "cuDNN cannot be loaded")
#else
#define SL_CONV_CUDNN 0
#endif

#define CV_T 16   // output tile edge (threads per block edge)
#define CV_OB 8   // output channels per block
#define CV_KMAX 7 // largest kernel (ops.c checks)
#define CV_CG 16  // input channels per summation group
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
    SL_SHARED(float, s_x, [CV_S][CV_S]);
    SL_SHARED(float, s_w, [CV_OB][CV_KMAX * CV_KMAX]);
    const int tx = (int)threadIdx.x, ty = (int)threadIdx.y, tid = ty * CV_T + tx;
    const int k = a.k, p = k / 2, kk = k * k, S = CV_T + k - 1;
    const int j = (int)blockIdx.x * CV_T + tx, i0 = (int)blockIdx.y * CV_T, i = i0 + ty, j0 = (int)blockIdx.x * CV_T;
    const size_t HW = (size_t)a.h * (size_t)a.w;
    const size_t n_z = a.batch * (size_t)o_blocks;
    for (size_t z = blockIdx.z; z < n_z; z += gridDim.z) {
        const size_t b = z / o_blocks;
        const int o0 = (int)(z % o_blocks) * CV_OB;
        // Blocked summation: the taps of one channel into part, CV_CG channels'
        // parts into grp, groups into acc; rounding error grows like
        // k*k + CV_CG + c_in/CV_CG rather than c_in*k*k (Cnn14 block 6: 18432
        // terms, 10x the CPU's error vs the exact sum as a plain running sum).
        float acc[CV_OB], grp[CV_OB];
        for (int q = 0; q < CV_OB; q++)
            acc[q] = grp[q] = 0.0f;
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
            float part[CV_OB];
            for (int q = 0; q < CV_OB; q++)
                part[q] = 0.0f;
            for (int u = 0; u < k; u++)
                for (int v = 0; v < k; v++) {
                    const float xv = s_x[ty + u][tx + v];
                    for (int q = 0; q < CV_OB; q++)
                        part[q] = __fadd_rn(part[q], __fmul_rn(s_w[q][u * k + v], xv));
                }
            const bool flush = (c + 1) % CV_CG == 0 || c + 1 == a.c_in;
            for (int q = 0; q < CV_OB; q++) {
                grp[q] = __fadd_rn(grp[q], part[q]);
                if (flush) {
                    acc[q] = __fadd_rn(acc[q], grp[q]);
                    grp[q] = 0.0f;
                }
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
    // Rows do not loop: conv2d_direct refuses h > CV_T * 65535, so grid.y fits
    // uncapped (a cap >= 2^30 says so, sl_cuda.h); batch x channel blocks loop in z.
    const dim3 grid(sl_blocks_for((size_t)a->w, CV_T, 1u << 30), sl_blocks_for((size_t)a->h, CV_T, 1u << 30),
                    sl_blocks_for(a->batch * o_blocks, 1, SL_GRID_YZ_MAX));
    return SL_LAUNCH(conv2d_kernel, grid, dim3(CV_T, CV_T), 0, s, *a, o_blocks);
}

static int conv2d_direct(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    if ((size_t)a->h > (size_t)CV_T * SL_GRID_YZ_MAX)
        return sl_seterr(SL_EUNSUPPORTED, "conv2d: height %d exceeds %u rows", a->h, CV_T * SL_GRID_YZ_MAX);
    return conv2d_launch(SL_FN(stream)(ctx), a);
}

#if SL_CONV_CUDNN
// ---------------------------------------------------------------- cuDNN

#define CV_WS_MAX ((size_t)64 << 20) // workspace bound: the CPU's im2col block (2^24 floats)
#define CV_CACHE 32                  // shapes remembered per context (Cnn14: 12 per segment length)

// bias + activation after cudnnConvolutionForward, in place; the same float
// expression as conv2d_kernel's epilogue (ReLU keeps NaN, as torch).
static __global__ void conv2d_epilogue_kernel(size_t n, size_t hw, int c_out, const float *__restrict__ bias,
                                              sl_act act, float *__restrict__ y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = y[i];
        y[i] = conv_act(act, bias ? v + bias[(i / hw) % (size_t)c_out] : v);
    }
}

struct cv_algo {
    size_t batch;
    int c_in, c_out, h, w, k;
    cudnnConvolutionFwdAlgo_t algo;
    size_t ws; // workspace bytes of algo for this shape
    unsigned long long used;
};

struct sl_cu_dnn {
    cudnnHandle_t h;
    cudnnTensorDescriptor_t xd, yd;
    cudnnFilterDescriptor_t wd;
    cudnnConvolutionDescriptor_t cd;
    cv_algo cache[CV_CACHE];
    int n;
    unsigned long long tick;
};

// A stemline error for a cuDNN status, naming the call (and cuDNN's own last
// message where the library has one).
static int cudnn_err(cudnnStatus_t r, const char *call)
{
    char detail[256] = "";
#if CUDNN_MAJOR >= 9
    cudnn.GetLastErrorString(detail, sizeof detail);
    const int nomem = r == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ||
                      r == CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED;
#else
    const int nomem = r == CUDNN_STATUS_ALLOC_FAILED;
#endif
    return sl_seterr(nomem ? SL_ENOMEM : SL_EDEVICE, "%s: %s (cudnnStatus_t %d)%s%s", call, cudnn.GetErrorString(r),
                     (int)r, detail[0] ? ": " : "", detail);
}

#define SL_CUDNN_CHECK(call)                                                                \
    do {                                                                                    \
        cudnnStatus_t sl_r_ = (call);                                                       \
        if (sl_r_ != CUDNN_STATUS_SUCCESS)                                                  \
            return cudnn_err(sl_r_, #call);                                                 \
    } while (0)

static void dnn_destroy(sl_cu_dnn *d)
{
    // Teardown: return codes are not actionable.
    if (d->cd)
        cudnn.DestroyConvolutionDescriptor(d->cd);
    if (d->wd)
        cudnn.DestroyFilterDescriptor(d->wd);
    if (d->yd)
        cudnn.DestroyTensorDescriptor(d->yd);
    if (d->xd)
        cudnn.DestroyTensorDescriptor(d->xd);
    if (d->h)
        cudnn.Destroy(d->h);
    free(d);
}

static int dnn_setup(sl_cu_state *st, sl_cu_dnn *d)
{
    SL_CU_CHECK(cudaSetDevice(st->device)); // the handle belongs to the device current at cudnnCreate
    SL_CUDNN_CHECK(cudnn.Create(&d->h));
    SL_CUDNN_CHECK(cudnn.SetStream(d->h, st->stream));
    SL_CUDNN_CHECK(cudnn.CreateTensorDescriptor(&d->xd));
    SL_CUDNN_CHECK(cudnn.CreateTensorDescriptor(&d->yd));
    SL_CUDNN_CHECK(cudnn.CreateFilterDescriptor(&d->wd));
    SL_CUDNN_CHECK(cudnn.CreateConvolutionDescriptor(&d->cd));
    return 0;
}

// The context's cuDNN state, made on first use: contexts that never convolve
// (HPSS, Open-Unmix) never pay for cudnnCreate.
static int dnn_get(sl_cu_state *st, sl_cu_dnn **out)
{
    if (!st->dnn) {
        sl_cu_dnn *d = static_cast<sl_cu_dnn *>(calloc(1, sizeof *d));
        if (!d)
            return sl_seterr(SL_ENOMEM, "conv2d: out of memory");
        int rc = dnn_setup(st, d);
        if (rc < 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", sl_lasterr());
            dnn_destroy(d);
            return sl_seterr(rc, "conv2d: %s (SL_CONV_IMPL=direct runs the built-in kernel instead)", msg);
        }
        st->dnn = d;
    }
    *out = st->dnn;
    return 0;
}

// Algorithms that compute the plain sum of products, as the CPU reference does.
static int cv_exact_algo(cudnnConvolutionFwdAlgo_t algo)
{
    return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

static const char *cv_algo_name(cudnnConvolutionFwdAlgo_t algo)
{
    switch (algo) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    default: return "other";
    }
}

// The cached algorithm of a's shape (descriptors already set), chosen on the
// first call: the fastest exact, deterministic FMA-math algorithm of cuDNN's
// heuristics whose workspace fits CV_WS_MAX; IMPLICIT_GEMM (no workspace) when
// none qualifies.
static int dnn_algo(sl_cu_dnn *d, const sl_conv2d_args *a, const cv_algo **out)
{
    d->tick++;
    for (int i = 0; i < d->n; i++) {
        cv_algo *e = &d->cache[i];
        if (e->batch == a->batch && e->c_in == a->c_in && e->c_out == a->c_out && e->h == a->h && e->w == a->w &&
            e->k == a->k) {
            e->used = d->tick;
            *out = e;
            return 0;
        }
    }
    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int got = 0;
    SL_CUDNN_CHECK(cudnn.GetConvolutionForwardAlgorithm_v7(d->h, d->xd, d->wd, d->cd, d->yd,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
    cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
    size_t ws = 0;
    int found = 0;
    for (int i = 0; i < got && !found; i++) { // best first
        const cudnnConvolutionFwdAlgoPerf_t *p = &perf[i];
        if (p->status != CUDNN_STATUS_SUCCESS || !cv_exact_algo(p->algo) || p->determinism != CUDNN_DETERMINISTIC ||
            p->mathType == CUDNN_TENSOR_OP_MATH || p->mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
            continue;
        // Executed with the descriptor's FMA math: ask for the workspace in that mode.
        if (cudnn.GetConvolutionForwardWorkspaceSize(d->h, d->xd, d->wd, d->cd, d->yd, p->algo, &ws) ==
                CUDNN_STATUS_SUCCESS &&
            ws <= CV_WS_MAX) {
            algo = p->algo;
            found = 1;
        }
    }
    if (!found)
        SL_CUDNN_CHECK(cudnn.GetConvolutionForwardWorkspaceSize(d->h, d->xd, d->wd, d->cd, d->yd, algo, &ws));
    int slot = d->n;
    if (slot < CV_CACHE) {
        d->n++;
    } else { // full: replace the least recently used shape
        slot = 0;
        for (int i = 1; i < CV_CACHE; i++)
            if (d->cache[i].used < d->cache[slot].used)
                slot = i;
    }
    cv_algo *e = &d->cache[slot];
    e->batch = a->batch;
    e->c_in = a->c_in;
    e->c_out = a->c_out;
    e->h = a->h;
    e->w = a->w;
    e->k = a->k;
    e->algo = algo;
    e->ws = ws;
    e->used = d->tick;
    sl_log(SL_LOG_DEBUG, NULL, "cuda", "conv2d b%zu %d->%d %dx%d k%d: cuDNN %s, workspace %zu bytes", a->batch,
           a->c_in, a->c_out, a->h, a->w, a->k, cv_algo_name(algo), ws);
    *out = e;
    return 0;
}

static int conv2d_cudnn(sl_op_ctx *ctx, sl_cu_state *st, const sl_conv2d_args *a)
{
    sl_cu_dnn *d = NULL;
    int rc = dnn_get(st, &d);
    if (rc < 0)
        return rc;
    const int n = (int)a->batch, p = a->k / 2;
    SL_CUDNN_CHECK(cudnn.SetTensor4dDescriptor(d->xd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, a->c_in, a->h, a->w));
    SL_CUDNN_CHECK(cudnn.SetTensor4dDescriptor(d->yd, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n, a->c_out, a->h, a->w));
    SL_CUDNN_CHECK(cudnn.SetFilter4dDescriptor(d->wd, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, a->c_out, a->c_in, a->k, a->k));
    // torch's Conv2d is a cross-correlation (no kernel flip); float accumulation.
    SL_CUDNN_CHECK(cudnn.SetConvolution2dDescriptor(d->cd, p, p, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    // FP32 FMA kernels only: CUDNN_DEFAULT_MATH permits TF32 tensor cores on sm_80+.
    SL_CUDNN_CHECK(cudnn.SetConvolutionMathType(d->cd, CUDNN_FMA_MATH));
    const cv_algo *e = NULL;
    if ((rc = dnn_algo(d, a, &e)) < 0)
        return rc;
    void *ws = NULL;
    if (e->ws && (rc = SL_FN(scratch)(ctx, e->ws, &ws)) < 0)
        return rc;
    const float one = 1.0f, zero = 0.0f; // beta 0: y is not read
    SL_CUDNN_CHECK(cudnn.ConvolutionForward(d->h, &one, d->xd, a->x, d->wd, a->wt, d->cd, e->algo, ws, e->ws, &zero,
                                           d->yd, a->y));
    if (!a->bias && a->act == SL_ACT_NONE)
        return 0;
    const size_t hw = (size_t)a->h * (size_t)a->w, total = a->batch * (size_t)a->c_out * hw;
    return SL_LAUNCH(conv2d_epilogue_kernel, dim3(sl_blocks_for(total, SL_BLOCK, 1u << 20)), dim3(SL_BLOCK), 0,
                     st->stream, total, hw, a->c_out, a->bias, a->act, a->y);
}

// cuDNN's legacy descriptors count elements in int.
static int cv_fits_cudnn(const sl_conv2d_args *a)
{
    const size_t hw = (size_t)a->h * (size_t)a->w, lim = (size_t)INT_MAX; // ops.c: hw, c * hw < 2^41
    return a->batch <= lim && (size_t)a->c_in * hw <= lim / a->batch && (size_t)a->c_out * hw <= lim / a->batch &&
           (size_t)a->c_out * (size_t)a->c_in * (size_t)(a->k * a->k) <= lim;
}
#endif

#if SL_CUDA_API
extern "C" int sl_cuda_conv2d_init(sl_op_ctx *ctx, char *desc, size_t desc_size)
{
    const char *env = getenv("SL_CONV_IMPL");
    const int direct = env && !strcmp(env, "direct");
    if (env && *env && !direct && strcmp(env, "cudnn"))
        return sl_seterr(SL_EINVAL, "SL_CONV_IMPL=%s: expected 'cudnn' or 'direct'", env);
#if SL_CONV_CUDNN
    sl_cu_st(ctx)->conv_direct = direct;
    if (direct) {
        snprintf(desc, desc_size, "conv2d: direct kernel (SL_CONV_IMPL=direct)");
    } else if (sl_cuda_cudnn_load() < 0) {
        // Built with cuDNN, but this machine cannot load it: the hand-written
        // kernel computes the same sums (unless cuDNN was asked for by name).
        char why[600];
        snprintf(why, sizeof why, "%s", sl_lasterr());
        if (env && !strcmp(env, "cudnn"))
            return sl_seterr(SL_EUNSUPPORTED, "SL_CONV_IMPL=cudnn: %s", why);
        sl_cu_st(ctx)->conv_direct = 1;
        sl_log(SL_LOG_WARN, NULL, "cuda", "conv2d: %s: the direct kernel runs instead", why);
        snprintf(desc, desc_size, "conv2d: direct kernel (libcudnn.so.%d not loaded)", (int)CUDNN_MAJOR);
    } else {
        const size_t v = cudnn.GetVersion(), major = v >= 90000 ? 10000 : 1000; // 9.x: M*10000 + m*100 + p
        snprintf(desc, desc_size, "conv2d: cuDNN %zu.%zu.%zu", v / major, v % major / 100, v % 100);
    }
#else
    if (env && !strcmp(env, "cudnn"))
        return sl_seterr(SL_EUNSUPPORTED,
                         "SL_CONV_IMPL=cudnn: this build has no cuDNN (cudnn.h / libcudnn not found at configure time)");
    sl_cu_st(ctx)->conv_direct = 1;
    snprintf(desc, desc_size, "conv2d: direct kernel (built without cuDNN)");
#endif
    return 0;
}

extern "C" void sl_cuda_conv2d_release(sl_op_ctx *ctx)
{
#if SL_CONV_CUDNN
    sl_cu_state *st = sl_cu_st(ctx);
    if (st->dnn)
        dnn_destroy(st->dnn);
    st->dnn = NULL;
#else
    (void)ctx;
#endif
}
#endif

extern "C" int SL_FN(conv2d)(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
#if SL_CONV_CUDNN
    sl_cu_state *st = sl_cu_st(ctx);
    if (!st->conv_direct && cv_fits_cudnn(a))
        return conv2d_cudnn(ctx, st, a);
#endif
    return conv2d_direct(ctx, a);
}
