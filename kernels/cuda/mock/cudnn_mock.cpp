// cudamock: the cuDNN subset kernels/cuda/conv2d.cu uses (legacy 4-D NCHW float
// convolution API), host-only, strict. Descriptors are validated as the cuDNN
// documentation describes; cudnnGetConvolutionForwardAlgorithm_v7 lists, before
// the usable GEMM-family entries, entries a careful caller must skip (tensor-op
// math, FFT, non-deterministic, not supported); cudnnConvolutionForward checks
// the device ranges, queues the convolution on the handle's stream (double
// accumulation, one rounding; TF32 operands unless the math type is
// CUDNN_FMA_MATH, as on sm_80+) and then poisons the workspace.
#include <cudnn.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <new>
#include <vector>

#include "mock.h"

struct cudnnContext { cudaStream_t stream; int device; }; // stream 0 until set; device current at cudnnCreate
struct cudnnTensorStruct { bool set; int n, c, h, w; };
struct cudnnFilterStruct { bool set; int k, c, r, s; };
struct cudnnConvolutionStruct {
    bool set;
    int ph, pw, sh, sw, dh, dw;
    cudnnConvolutionMode_t mode;
    cudnnMathType_t math;
};

namespace {

thread_local char t_err[256]; // the only mutable state shared between calls

__attribute__((format(printf, 2, 3))) cudnnStatus_t fail(cudnnStatus_t st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_err, sizeof t_err, fmt, ap);
    va_end(ap);
    return st;
}

// One convolution's shape, snapshotted for the queued work.
struct Geom { int n, c, h, w, k, r, s, oh, ow, ph, pw, sh, sw, dh, dw; bool flip, tf32; };

// cudnnSet{Tensor,Filter}4dDescriptor's checks.
cudnnStatus_t check4(const char *fn, const void *desc, cudnnDataType_t dt, cudnnTensorFormat_t fmt, int a, int b,
                     int c, int d)
{
    if (!desc)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL descriptor", fn);
    if (a <= 0 || b <= 0 || c <= 0 || d <= 0)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: dimensions %d x %d x %d x %d not all positive", fn, a, b, c, d);
    if (fmt != CUDNN_TENSOR_NCHW && fmt != CUDNN_TENSOR_NHWC && fmt != CUDNN_TENSOR_NCHW_VECT_C)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: invalid tensor format %d", fn, (int)fmt);
    if (fmt != CUDNN_TENSOR_NCHW)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: cudamock supports CUDNN_TENSOR_NCHW only", fn);
    if (dt != CUDNN_DATA_FLOAT)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: cudamock supports CUDNN_DATA_FLOAT only (got %d)", fn, (int)dt);
    if ((double)a * b * c * d > (double)INT_MAX)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: more than INT_MAX elements", fn);
    return CUDNN_STATUS_SUCCESS;
}

// Descriptors set and consistent (group count 1): x n,c,h,w; w k,c,r,s; y n,k,oh,ow.
cudnnStatus_t geometry(const char *fn, cudnnHandle_t h, cudnnTensorDescriptor_t xd, cudnnFilterDescriptor_t wd,
                       cudnnConvolutionDescriptor_t cd, cudnnTensorDescriptor_t yd, Geom *g)
{
    if (!h || !xd || !wd || !cd || !yd)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL handle or descriptor", fn);
    if (!xd->set || !wd->set || !cd->set || !yd->set)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: descriptor used before it was set", fn);
    if (xd->c != wd->c)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: x has %d channels, the filter %d", fn, xd->c, wd->c);
    const long long eh = (long long)cd->dh * (wd->r - 1) + 1, ew = (long long)cd->dw * (wd->s - 1) + 1;
    const long long nh = (long long)xd->h + 2LL * cd->ph - eh, nw = (long long)xd->w + 2LL * cd->pw - ew;
    if (nh < 0 || nw < 0)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: filter %lldx%lld (dilated) larger than the padded input %lldx%lld",
                    fn, eh, ew, xd->h + 2LL * cd->ph, xd->w + 2LL * cd->pw);
    const long long oh = nh / cd->sh + 1, ow = nw / cd->sw + 1;
    if (yd->n != xd->n || yd->c != wd->k || yd->h != oh || yd->w != ow)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: y is %dx%dx%dx%d, the convolution gives %dx%dx%lldx%lld", fn, yd->n,
                    yd->c, yd->h, yd->w, xd->n, wd->k, oh, ow);
    *g = Geom{xd->n, xd->c, xd->h, xd->w, wd->k, wd->r, wd->s, (int)oh, (int)ow, cd->ph, cd->pw, cd->sh, cd->sw,
              cd->dh, cd->dw, cd->mode == CUDNN_CONVOLUTION, cd->math != CUDNN_FMA_MATH};
    return CUDNN_STATUS_SUCCESS;
}

size_t sat(double v) { return v >= 0x1p62 ? (size_t)1 << 62 : (size_t)v; }

// Workspace of algo for g (mock figures: im2col-like sizes, so large shapes pass 64 MiB).
cudnnStatus_t ws_bytes(const char *fn, const Geom &g, cudnnConvolutionFwdAlgo_t algo, size_t *out)
{
    const double crs = (double)g.c * g.r * g.s, opix = (double)g.oh * g.ow, f = sizeof(float);
    const double maps = (double)g.n * g.c + (double)g.k * g.c + (double)g.n * g.k;
    switch (algo) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: *out = 0; break;
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: *out = sat(sizeof(int) * crs * opix); break;
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: *out = sat(f * g.n * crs * opix); break;
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: // transformed x, w and y (complex)
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING:
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD:
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED:
        *out = sat(2 * f * maps * ((double)g.h + 2 * g.ph) * ((double)g.w + 2 * g.pw));
        break;
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: // not implemented by cuDNN for forward
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: CUDNN_CONVOLUTION_FWD_ALGO_DIRECT is not supported", fn);
    default: return fail(CUDNN_STATUS_BAD_PARAM, "%s: invalid algorithm %d", fn, (int)algo);
    }
    return CUDNN_STATUS_SUCCESS;
}

// Round to TF32 (10 explicit mantissa bits), to nearest even; Inf/NaN unchanged.
inline float tf32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) != 0x7f800000u)
        u = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;
    memcpy(&f, &u, sizeof f);
    return f;
}

void conv_run(const Geom &g, float alpha, float beta, const float *x, const float *w, float *y)
{
    const size_t hw = (size_t)g.h * g.w, ohw = (size_t)g.oh * g.ow, rs = (size_t)g.r * g.s;
    std::vector<double> acc(ohw);
    for (int b = 0; b < g.n; b++)
        for (int k = 0; k < g.k; k++) {
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int c = 0; c < g.c; c++) {
                const float *xp = x + ((size_t)b * g.c + c) * hw, *wp = w + ((size_t)k * g.c + c) * rs;
                for (int u = 0; u < g.r; u++)
                    for (int v = 0; v < g.s; v++) {
                        const int fu = g.flip ? g.r - 1 - u : u, fv = g.flip ? g.s - 1 - v : v; // CONVOLUTION flips
                        const double wv = g.tf32 ? tf32(wp[(size_t)fu * g.s + fv]) : wp[(size_t)fu * g.s + fv];
                        const int off = v * g.dw - g.pw; // input column of output column j: j * sw + off
                        const int j0 = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
                        const int j1 = g.w - 1 - off < 0 ? -1 : std::min(g.ow - 1, (g.w - 1 - off) / g.sw);
                        for (int i = 0; i < g.oh; i++) {
                            const int ih = i * g.sh - g.ph + u * g.dh;
                            if (ih < 0 || ih >= g.h)
                                continue;
                            const float *xr = xp + (size_t)ih * g.w + off;
                            double *ar = &acc[(size_t)i * g.ow];
                            if (g.sw == 1 && !g.tf32) // the common case, vectorisable
                                for (int j = j0; j <= j1; j++)
                                    ar[j] += wv * xr[j]; // exact product, double sum
                            else
                                for (int j = j0; j <= j1; j++)
                                    ar[j] += wv * (g.tf32 ? tf32(xr[(size_t)j * g.sw]) : xr[(size_t)j * g.sw]);
                        }
                    }
            }
            float *yp = y + ((size_t)b * g.k + k) * ohw;
            for (size_t o = 0; o < ohw; o++) // beta 0: y is not read (NaN there must not leak)
                yp[o] = (float)(beta != 0.0f ? alpha * acc[o] + (double)beta * yp[o] : alpha * acc[o]);
        }
}

bool overlap(const void *a, size_t na, const void *b, size_t nb)
{
    const uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
    return na && nb && pa < pb + nb && pb < pa + na;
}

template <class T> cudnnStatus_t create(const char *fn, T **out)
{
    if (!out)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL output pointer", fn);
    if (!(*out = new (std::nothrow) T()))
        return fail(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED, "%s: out of host memory", fn);
    return CUDNN_STATUS_SUCCESS;
}

template <class T> cudnnStatus_t destroy(const char *fn, T *p)
{
    if (!p)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL descriptor", fn);
    delete p;
    return CUDNN_STATUS_SUCCESS;
}

} // namespace

extern "C" {

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

const char *cudnnGetErrorString(cudnnStatus_t status)
{
    switch (status) {
#define S(x) \
    case x: return #x;
        S(CUDNN_STATUS_SUCCESS) S(CUDNN_STATUS_NOT_INITIALIZED) S(CUDNN_STATUS_BAD_PARAM)
        S(CUDNN_STATUS_BAD_PARAM_NULL_POINTER) S(CUDNN_STATUS_NOT_SUPPORTED) S(CUDNN_STATUS_INTERNAL_ERROR)
        S(CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED) S(CUDNN_STATUS_INTERNAL_ERROR_DEVICE_ALLOCATION_FAILED)
        S(CUDNN_STATUS_EXECUTION_FAILED) S(CUDNN_STATUS_EXECUTION_FAILED_CUDART)
#undef S
    default: return "CUDNN_STATUS_UNKNOWN";
    }
}

void cudnnGetLastErrorString(char *message, size_t max_size)
{
    if (message && max_size) {
        snprintf(message, max_size, "%s", t_err);
        t_err[0] = '\0';
    }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle)
{
    int dev = 0;
    if (handle && cudaGetDevice(&dev) != cudaSuccess)
        return fail(CUDNN_STATUS_NOT_INITIALIZED, "cudnnCreate: cudaGetDevice failed");
    cudnnStatus_t st = create(__func__, handle);
    if (st == CUDNN_STATUS_SUCCESS)
        (*handle)->device = dev; // stream 0 (new'd value-initialised)
    return st;
}

cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) { return destroy(__func__, handle); }

cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t streamId)
{
    if (!handle)
        return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream: NULL handle");
    handle->stream = streamId;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) { return create(__func__, d); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) { return destroy(__func__, d); }
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) { return create(__func__, d); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) { return destroy(__func__, d); }

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d)
{
    cudnnStatus_t st = create(__func__, d);
    if (st == CUDNN_STATUS_SUCCESS)
        (*d)->math = CUDNN_DEFAULT_MATH;
    return st;
}

cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) { return destroy(__func__, d); }

cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                         cudnnDataType_t dataType, int n, int c, int h, int w)
{
    cudnnStatus_t st = check4(__func__, d, dataType, format, n, c, h, w);
    if (st == CUDNN_STATUS_SUCCESS)
        *d = cudnnTensorStruct{true, n, c, h, w};
    return st;
}

cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dataType,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w)
{
    cudnnStatus_t st = check4(__func__, d, dataType, format, k, c, h, w);
    if (st == CUDNN_STATUS_SUCCESS)
        *d = cudnnFilterStruct{true, k, c, h, w};
    return st;
}

cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w, int u, int v,
                                              int dilation_h, int dilation_w, cudnnConvolutionMode_t mode,
                                              cudnnDataType_t computeType)
{
    const char *fn = __func__;
    if (!d)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL descriptor", fn);
    if (pad_h < 0 || pad_w < 0 || u < 1 || v < 1 || dilation_h < 1 || dilation_w < 1)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: pad %d,%d stride %d,%d dilation %d,%d", fn, pad_h, pad_w, u, v,
                    dilation_h, dilation_w);
    if (mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: invalid mode %d", fn, (int)mode);
    if (computeType != CUDNN_DATA_FLOAT)
        return fail(CUDNN_STATUS_NOT_SUPPORTED, "%s: cudamock supports compute type FLOAT only", fn);
    *d = cudnnConvolutionStruct{true, pad_h, pad_w, u, v, dilation_h, dilation_w, mode, d->math};
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t mathType)
{
    if (!d)
        return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolutionMathType: NULL descriptor");
    if (mathType != CUDNN_DEFAULT_MATH && mathType != CUDNN_TENSOR_OP_MATH &&
        mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && mathType != CUDNN_FMA_MATH)
        return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetConvolutionMathType: invalid math type %d", (int)mathType);
    d->math = mathType;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t handle, const cudnnTensorDescriptor_t srcDesc,
                                                     const cudnnFilterDescriptor_t filterDesc,
                                                     const cudnnConvolutionDescriptor_t convDesc,
                                                     const cudnnTensorDescriptor_t destDesc,
                                                     const int requestedAlgoCount, int *returnedAlgoCount,
                                                     cudnnConvolutionFwdAlgoPerf_t *perfResults)
{
    const char *fn = __func__;
    Geom g;
    cudnnStatus_t st = geometry(fn, handle, srcDesc, filterDesc, convDesc, destDesc, &g);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if (!returnedAlgoCount || !perfResults || requestedAlgoCount < 1)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL output or requestedAlgoCount %d", fn, requestedAlgoCount);
    const cudnnMathType_t ok = convDesc->math == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
    const struct { cudnnConvolutionFwdAlgo_t algo; cudnnDeterminism_t det; cudnnMathType_t math; cudnnStatus_t st; }
    list[] = { // best first: what the caller must skip, then the usable GEMM family
        {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, CUDNN_DETERMINISTIC, CUDNN_TENSOR_OP_MATH, CUDNN_STATUS_SUCCESS},
        {CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, CUDNN_DETERMINISTIC, CUDNN_FMA_MATH, CUDNN_STATUS_SUCCESS},
        {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, CUDNN_DETERMINISTIC, ok, CUDNN_STATUS_NOT_SUPPORTED},
        {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_NON_DETERMINISTIC, ok, CUDNN_STATUS_SUCCESS},
        {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, CUDNN_DETERMINISTIC, ok, CUDNN_STATUS_SUCCESS},
        {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_DETERMINISTIC, ok, CUDNN_STATUS_SUCCESS},
        {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, CUDNN_DETERMINISTIC, ok, CUDNN_STATUS_SUCCESS},
    };
    const int cnt = std::min(requestedAlgoCount, (int)(sizeof list / sizeof list[0]));
    const double flops = 2.0 * g.n * g.k * g.oh * (double)g.ow * g.c * g.r * g.s;
    for (int i = 0; i < cnt; i++) {
        const bool ok_i = list[i].st == CUDNN_STATUS_SUCCESS;
        size_t mem = 0;
        if (ok_i)
            ws_bytes(fn, g, list[i].algo, &mem);
        perfResults[i] = cudnnConvolutionFwdAlgoPerf_t{list[i].algo, list[i].st,
                                                       ok_i ? (float)(flops / 1e10 * (1 + 0.25 * i)) + 0.01f : -1.0f,
                                                       mem, list[i].det, list[i].math, {0, 0, 0}};
    }
    *returnedAlgoCount = cnt;
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t handle, const cudnnTensorDescriptor_t xDesc,
                                                      const cudnnFilterDescriptor_t wDesc,
                                                      const cudnnConvolutionDescriptor_t convDesc,
                                                      const cudnnTensorDescriptor_t yDesc,
                                                      cudnnConvolutionFwdAlgo_t algo, size_t *sizeInBytes)
{
    const char *fn = __func__;
    Geom g;
    cudnnStatus_t st = geometry(fn, handle, xDesc, wDesc, convDesc, yDesc, &g);
    if (st == CUDNN_STATUS_SUCCESS && !sizeInBytes)
        st = fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL sizeInBytes", fn);
    return st == CUDNN_STATUS_SUCCESS ? ws_bytes(fn, g, algo, sizeInBytes) : st;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t handle, const void *alpha, const cudnnTensorDescriptor_t xDesc,
                                      const void *x, const cudnnFilterDescriptor_t wDesc, const void *w,
                                      const cudnnConvolutionDescriptor_t convDesc, cudnnConvolutionFwdAlgo_t algo,
                                      void *workSpace, size_t workSpaceSizeInBytes, const void *beta,
                                      const cudnnTensorDescriptor_t yDesc, void *y)
{
    const char *fn = __func__;
    Geom g;
    cudnnStatus_t st = geometry(fn, handle, xDesc, wDesc, convDesc, yDesc, &g);
    if (st != CUDNN_STATUS_SUCCESS)
        return st;
    if (!alpha || !beta || !x || !w || !y)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL alpha, beta, x, w or y", fn);
    size_t need = 0;
    if ((st = ws_bytes(fn, g, algo, &need)) != CUDNN_STATUS_SUCCESS)
        return st;
    if (need > workSpaceSizeInBytes)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: workspace of %zu bytes needed, %zu given", fn, need,
                    workSpaceSizeInBytes);
    if (need && !workSpace)
        return fail(CUDNN_STATUS_BAD_PARAM, "%s: NULL workSpace, %zu bytes needed", fn, need);
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess || dev != handle->device)
        return fail(CUDNN_STATUS_EXECUTION_FAILED_CUDART, "%s: handle of device %d used while device %d is current",
                    fn, handle->device, dev);
    const size_t xb = sizeof(float) * g.n * g.c * g.h * (size_t)g.w, wb = sizeof(float) * g.k * g.c * g.r * (size_t)g.s;
    const size_t yb = sizeof(float) * g.n * g.k * g.oh * (size_t)g.ow;
    const size_t wsb = workSpace ? workSpaceSizeInBytes : 0;
    sl_mock_check_device(x, xb, "cudnnConvolutionForward x");
    sl_mock_check_device(w, wb, "cudnnConvolutionForward w");
    sl_mock_check_device(y, yb, "cudnnConvolutionForward y");
    if (wsb)
        sl_mock_check_device(workSpace, wsb, "cudnnConvolutionForward workSpace");
    if (overlap(y, yb, x, xb) || overlap(y, yb, w, wb) || overlap(workSpace, wsb, x, xb) ||
        overlap(workSpace, wsb, w, wb) || overlap(workSpace, wsb, y, yb))
        sl_mock_fatal("cudnnConvolutionForward: y or workSpace overlaps another operand");
    const float a = *static_cast<const float *>(alpha), b = *static_cast<const float *>(beta); // host, read now
    sl_mock_enqueue(handle->stream, [g, a, b, x, w, y, workSpace, wsb] {
        conv_run(g, a, b, static_cast<const float *>(x), static_cast<const float *>(w), static_cast<float *>(y));
        if (wsb)
            sl_mock_poison(workSpace, wsb); // no content survives the call
    });
    return CUDNN_STATUS_SUCCESS;
}

} // extern "C"
