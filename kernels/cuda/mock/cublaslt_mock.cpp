// cudamock: the cuBLASLt subset kernels/cuda/gemm_lt.cu uses, host-only and
// strict. What cuBLASLt documents and the stand-in enforces:
//  * descriptors: attribute sizes exact (CUBLAS_STATUS_INVALID_VALUE
//    otherwise); matrix layouts column-major, ld >= rows, batch counts equal
//    in A, B, C and D, strided batches of D that do not overlap;
//  * data types against the cublasLtMatmul table: compute type
//    CUBLAS_COMPUTE_32F{,_PEDANTIC,_FAST_TF32,_FAST_16BF,_FAST_16F} with scale
//    type CUDA_R_32F and A/B/C/D CUDA_R_32F (other rows of the table, say bf16
//    storage, are valid but not emulated: CUBLAS_STATUS_NOT_SUPPORTED with a
//    message saying so), anything else not supported;
//  * shapes: op(A) is m x k, op(B) k x n, C and D m x n with one layout when C
//    is D; a bias epilogue needs a bias pointer, of length m (D's rows);
//  * the algorithm comes from cublasLtMatmulAlgoGetHeuristic for the same
//    shapes and the workspace given is at least what it asked for; every
//    range (A, B, D, bias, workspace) lies in one live device allocation; D
//    overlaps neither A, B nor the workspace; the handle's device is current
//    and not lost.
// The product is queued on the stream and computed on the CPU with the
// compute type's rounding: FAST_16BF rounds A and B to bfloat16 (nearest, ties
// to even), FAST_TF32 to TF32 (10-bit mantissa, nearest, ties away from zero,
// as cvt.rna.tf32.f32), 32F / PEDANTIC keep them; products accumulated in
// float in k order; then alpha, beta * C, bias, ReLU. The workspace is
// poisoned afterwards.
#include <cublasLt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <new>
#include <vector>

#include "mock.h"

struct cublasLtContext {
    int device; // current at cublasLtCreate
};

namespace {

struct Layout {
    uint32_t magic;
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
    int32_t batch;
    int64_t stride;
};
struct Desc {
    uint32_t magic;
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t ta, tb;
    uint32_t epilogue;
    const void *bias;
    int64_t bias_stride;
};
struct Pref {
    uint32_t magic;
    uint64_t max_ws;
    uint32_t align[4]; // minimum alignment of A, B, C, D the algorithm may assume (default 256)
};
const uint32_t kLayout = 0x4c41594f, kDesc = 0x44455343, kPref = 0x50524546, kAlgo = 0x414c474f;

thread_local char t_err[320];

__attribute__((format(printf, 2, 3))) cublasStatus_t fail(cublasStatus_t st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t_err, sizeof t_err, fmt, ap);
    va_end(ap);
    fprintf(stderr, "cudamock: %s\n", t_err);
    return st;
}

template <class T> cublasStatus_t set_attr(const char *fn, T *dst, const void *buf, size_t size)
{
    if (!buf || size != sizeof(T))
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: attribute of %zu bytes, expected %zu", fn, size, sizeof(T));
    memcpy(dst, buf, sizeof(T));
    return CUBLAS_STATUS_SUCCESS;
}

bool fp32_compute(cublasComputeType_t c)
{
    return c == CUBLAS_COMPUTE_32F || c == CUBLAS_COMPUTE_32F_PEDANTIC || c == CUBLAS_COMPUTE_32F_FAST_TF32 ||
           c == CUBLAS_COMPUTE_32F_FAST_16BF || c == CUBLAS_COMPUTE_32F_FAST_16F;
}

// Shapes and types of one matmul, checked; sizes of each operand's span.
struct Geom {
    uint64_t m, n, k;
    int32_t batch;
    bool ta, tb, bias, relu;
    cublasComputeType_t compute;
};

cublasStatus_t check(const char *fn, const Desc *d, const Layout *a, const Layout *b, const Layout *c,
                     const Layout *dd, Geom *g)
{
    if (!d || d->magic != kDesc || !a || !b || !c || !dd || a->magic != kLayout || b->magic != kLayout ||
        c->magic != kLayout || dd->magic != kLayout)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: a descriptor is NULL or not one cublasLt*Create made", fn);
    if (!fp32_compute(d->compute))
        return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: compute type %d is not emulated (cudamock: the 32F family)",
                    fn, (int)d->compute);
    if (d->scale != CUDA_R_32F)
        return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: scale type %d with a 32F compute type (must be CUDA_R_32F)",
                    fn, (int)d->scale);
    const bool f32 = a->type == CUDA_R_32F && b->type == CUDA_R_32F && c->type == CUDA_R_32F && dd->type == CUDA_R_32F;
    if (!f32) {
        const bool bf = a->type == CUDA_R_16BF && b->type == CUDA_R_16BF && d->compute == CUBLAS_COMPUTE_32F &&
                        (c->type == CUDA_R_16BF || c->type == CUDA_R_32F) && c->type == dd->type;
        return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: A/B/C/D types %d/%d/%d/%d with compute type %d: %s", fn,
                    (int)a->type, (int)b->type, (int)c->type, (int)dd->type, (int)d->compute,
                    bf ? "a valid cuBLASLt combination that cudamock does not emulate"
                       : "not a combination of the cublasLtMatmul data type table");
    }
    if ((d->ta != CUBLAS_OP_N && d->ta != CUBLAS_OP_T) || (d->tb != CUBLAS_OP_N && d->tb != CUBLAS_OP_T))
        return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: TRANSA %d / TRANSB %d (real types: N or T)", fn, d->ta, d->tb);
    const uint32_t e = d->epilogue;
    if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_RELU && e != CUBLASLT_EPILOGUE_BIAS &&
        e != CUBLASLT_EPILOGUE_RELU_BIAS)
        return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: epilogue %u is not emulated", fn, e);
    g->ta = d->ta == CUBLAS_OP_T;
    g->tb = d->tb == CUBLAS_OP_T;
    g->bias = e & CUBLASLT_EPILOGUE_BIAS;
    g->relu = e & CUBLASLT_EPILOGUE_RELU;
    g->compute = d->compute;
    g->m = g->ta ? a->cols : a->rows;
    g->k = g->ta ? a->rows : a->cols;
    const uint64_t kb = g->tb ? b->cols : b->rows;
    g->n = g->tb ? b->rows : b->cols;
    if (kb != g->k)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: op(A) is %llu x %llu but op(B) has %llu rows", fn,
                    (unsigned long long)g->m, (unsigned long long)g->k, (unsigned long long)kb);
    if (dd->rows != g->m || dd->cols != g->n || c->rows != g->m || c->cols != g->n)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: D is %llu x %llu, C %llu x %llu; op(A) op(B) is %llu x %llu",
                    fn, (unsigned long long)dd->rows, (unsigned long long)dd->cols, (unsigned long long)c->rows,
                    (unsigned long long)c->cols, (unsigned long long)g->m, (unsigned long long)g->n);
    if (a->batch != b->batch || a->batch != c->batch || a->batch != dd->batch)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: batch counts A %d, B %d, C %d, D %d differ", fn, a->batch,
                    b->batch, c->batch, dd->batch);
    g->batch = dd->batch;
    if (g->batch > 1 && (uint64_t)(dd->stride < 0 ? -dd->stride : dd->stride) < (uint64_t)dd->ld * dd->cols)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: D's batch stride %lld is shorter than one matrix (%lld)", fn,
                    (long long)dd->stride, (long long)(dd->ld * (int64_t)dd->cols));
    if (g->bias && !d->bias)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: bias epilogue without CUBLASLT_MATMUL_DESC_BIAS_POINTER", fn);
    return CUBLAS_STATUS_SUCCESS;
}

// Bytes spanned by a layout (all batches), for the range checks.
size_t span(const Layout *l)
{
    const size_t one = (size_t)(l->ld * (int64_t)(l->cols - 1) + (int64_t)l->rows) * sizeof(float);
    return one + (size_t)(l->batch - 1) * (size_t)(l->stride < 0 ? -l->stride : l->stride) * sizeof(float);
}

bool overlap(const void *a, size_t na, const void *b, size_t nb)
{
    const char *x = static_cast<const char *>(a), *y = static_cast<const char *>(b);
    return na && nb && x < y + nb && y < x + na;
}

float round_bf16(float v) // nearest, ties to even; NaN stays NaN
{
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu))
        return v;
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&v, &u, 4);
    return v;
}

float round_tf32(float v) // 10-bit mantissa, nearest, ties away from zero (cvt.rna.tf32.f32)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    if ((u & 0x7f800000u) == 0x7f800000u)
        return v;
    u = (u + 0x1000u) & 0xffffe000u;
    memcpy(&v, &u, 4);
    return v;
}

float operand(cublasComputeType_t c, float v)
{
    return c == CUBLAS_COMPUTE_32F_FAST_16BF ? round_bf16(v) : c == CUBLAS_COMPUTE_32F_FAST_TF32 ? round_tf32(v) : v;
}

struct Job {
    Geom g;
    Layout a, b, c, d;
    float alpha, beta;
    const float *A, *B, *C, *bias;
    int64_t bias_stride;
    float *D;
};

void run(const Job &j)
{
    const Geom &g = j.g;
    std::vector<float> ra(g.k), acc;
    for (int32_t bt = 0; bt < g.batch; bt++) {
        const float *A = j.A + bt * j.a.stride, *B = j.B + bt * j.b.stride;
        const float *C = j.C + bt * j.c.stride, *bias = j.bias ? j.bias + bt * j.bias_stride : nullptr;
        float *D = j.D + bt * j.d.stride;
        for (uint64_t i = 0; i < g.m; i++) {
            for (uint64_t l = 0; l < g.k; l++) // row i of op(A)
                ra[l] = operand(g.compute, g.ta ? A[i * j.a.ld + l] : A[l * j.a.ld + i]);
            for (uint64_t n = 0; n < g.n; n++) {
                float s = 0.0f;
                for (uint64_t l = 0; l < g.k; l++) {
                    const float bv = operand(g.compute, g.tb ? B[l * j.b.ld + n] : B[n * j.b.ld + l]);
                    s = s + ra[l] * bv; // the product of two rounded operands is exact in float for bf16
                }
                float v = j.alpha * s;
                if (j.beta != 0.0f)
                    v = v + j.beta * C[n * j.c.ld + i];
                if (bias)
                    v = v + bias[i];
                if (g.relu)
                    v = v < 0.0f ? 0.0f : v;
                D[n * j.d.ld + i] = v;
            }
        }
    }
}

} // namespace

extern "C" {

const char *sl_mock_lt_last_error(void) { return t_err; }

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h)
{
    if (!h)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtCreate: NULL handle");
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess)
        return fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtCreate: no current device");
    *h = new (std::nothrow) cublasLtContext{dev};
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t h)
{
    if (!h)
        return fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtDestroy: NULL handle");
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *out, cudaDataType type, uint64_t rows,
                                          uint64_t cols, int64_t ld)
{
    if (!out)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatrixLayoutCreate: NULL output");
    if (!rows || !cols || ld < (int64_t)rows)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatrixLayoutCreate: %llu x %llu with ld %lld (column-major: "
                    "ld >= rows)", (unsigned long long)rows, (unsigned long long)cols, (long long)ld);
    Layout *l = new (std::nothrow) Layout{kLayout, type, rows, cols, ld, 1, 0};
    *out = reinterpret_cast<cublasLtMatrixLayout_t>(l);
    return l ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l)
{
    delete reinterpret_cast<Layout *>(l);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t ml, cublasLtMatrixLayoutAttribute_t attr,
                                                const void *buf, size_t size)
{
    const char *fn = __func__;
    Layout *l = reinterpret_cast<Layout *>(ml);
    if (!l || l->magic != kLayout)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: not a layout", fn);
    switch (attr) {
    case CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT: {
        cublasStatus_t s = set_attr(fn, &l->batch, buf, size);
        if (s == CUBLAS_STATUS_SUCCESS && l->batch < 1)
            return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: batch count %d", fn, l->batch);
        return s;
    }
    case CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET:
        return set_attr(fn, &l->stride, buf, size);
    default:
        return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: attribute %d is not emulated", fn, (int)attr);
    }
}

cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *out, cublasComputeType_t compute, cudaDataType_t scale)
{
    if (!out)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescCreate: NULL output");
    Desc *d = new (std::nothrow) Desc{kDesc, compute, scale, CUBLAS_OP_N, CUBLAS_OP_N, CUBLASLT_EPILOGUE_DEFAULT,
                                      nullptr, 0};
    *out = reinterpret_cast<cublasLtMatmulDesc_t>(d);
    return d ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d)
{
    delete reinterpret_cast<Desc *>(d);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t md, cublasLtMatmulDescAttributes_t attr,
                                              const void *buf, size_t size)
{
    const char *fn = __func__;
    Desc *d = reinterpret_cast<Desc *>(md);
    if (!d || d->magic != kDesc)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: not a matmul descriptor", fn);
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
        return set_attr(fn, &d->ta, buf, size);
    case CUBLASLT_MATMUL_DESC_TRANSB:
        return set_attr(fn, &d->tb, buf, size);
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        return set_attr(fn, &d->epilogue, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        return set_attr(fn, &d->bias, buf, size);
    case CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE:
        return set_attr(fn, &d->bias_stride, buf, size);
    default:
        return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: attribute %d is not emulated", fn, (int)attr);
    }
}

cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *out)
{
    if (!out)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceCreate: NULL output");
    Pref *p = new (std::nothrow) Pref{kPref, 0, {256, 256, 256, 256}};
    *out = reinterpret_cast<cublasLtMatmulPreference_t>(p);
    return p ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p)
{
    delete reinterpret_cast<Pref *>(p);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t mp,
                                                    cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                                    size_t size)
{
    const char *fn = __func__;
    Pref *p = reinterpret_cast<Pref *>(mp);
    if (!p || p->magic != kPref)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: not a preference", fn);
    switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
        return set_attr(fn, &p->max_ws, buf, size);
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES:
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: {
        uint32_t *a = &p->align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES];
        cublasStatus_t st = set_attr(fn, a, buf, size);
        if (st == CUBLAS_STATUS_SUCCESS && (!*a || (*a & (*a - 1))))
            return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: alignment %u is not a power of two", fn, *a);
        return st;
    }
    default:
        return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: attribute %d is not emulated", fn, (int)attr);
    }
}

// One algorithm, asking for min(1 MiB, the preference's workspace): the
// caller must pass that workspace on.
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t op,
                                              cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                              cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                              cublasLtMatmulPreference_t pref, int requested,
                                              cublasLtMatmulHeuristicResult_t results[], int *count)
{
    const char *fn = __func__;
    Geom g;
    if (!h)
        return fail(CUBLAS_STATUS_NOT_INITIALIZED, "%s: NULL handle", fn);
    const Pref *p = reinterpret_cast<const Pref *>(pref);
    if (!p || p->magic != kPref || requested < 1 || !results || !count)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: bad preference, count or output", fn);
    cublasStatus_t s = check(fn, reinterpret_cast<const Desc *>(op), reinterpret_cast<const Layout *>(A),
                             reinterpret_cast<const Layout *>(B), reinterpret_cast<const Layout *>(C),
                             reinterpret_cast<const Layout *>(D), &g);
    if (s != CUBLAS_STATUS_SUCCESS)
        return s;
    memset(&results[0], 0, sizeof results[0]);
    results[0].workspaceSize = p->max_ws < ((size_t)1 << 20) ? p->max_ws : (size_t)1 << 20;
    results[0].algo.data[0] = kAlgo;
    results[0].algo.data[1] = results[0].workspaceSize;
    results[0].algo.data[2] = g.m;
    results[0].algo.data[3] = g.n;
    results[0].algo.data[4] = g.k;
    // the algorithm relies on the alignments the preference allowed (bytes, packed)
    results[0].algo.data[5] = (uint64_t)p->align[0] | (uint64_t)p->align[1] << 16 | (uint64_t)p->align[2] << 32 |
                              (uint64_t)p->align[3] << 48;
    results[0].state = CUBLAS_STATUS_SUCCESS;
    results[0].wavesCount = 1.0f;
    *count = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t op, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Ad, const void *B, cublasLtMatrixLayout_t Bd, const void *beta,
                              const void *C, cublasLtMatrixLayout_t Cd, void *D, cublasLtMatrixLayout_t Dd,
                              const cublasLtMatmulAlgo_t *algo, void *ws, size_t ws_size, cudaStream_t stream)
{
    const char *fn = __func__;
    if (!h)
        return fail(CUBLAS_STATUS_NOT_INITIALIZED, "%s: NULL handle", fn);
    Job j;
    const Desc *d = reinterpret_cast<const Desc *>(op);
    const Layout *la = reinterpret_cast<const Layout *>(Ad), *lb = reinterpret_cast<const Layout *>(Bd);
    const Layout *lc = reinterpret_cast<const Layout *>(Cd), *ld = reinterpret_cast<const Layout *>(Dd);
    cublasStatus_t s = check(fn, d, la, lb, lc, ld, &j.g);
    if (s != CUBLAS_STATUS_SUCCESS)
        return s;
    if (!alpha || !beta || !A || !B || !D)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: NULL alpha, beta, A, B or D", fn);
    if (!algo || algo->data[0] != kAlgo || algo->data[2] != j.g.m || algo->data[3] != j.g.n ||
        algo->data[4] != j.g.k)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: the algorithm is not one the heuristic gave for this shape", fn);
    {
        // "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES ... default 256": an algorithm chosen
        // for aligned operands does not run on less aligned ones
        const void *ptr[4] = {A, B, C, D};
        const Layout *lay[4] = {la, lb, lc, ld};
        static const char nm[4] = {'A', 'B', 'C', 'D'};
        for (int i = 0; i < 4; i++) {
            const uint64_t need = (algo->data[5] >> (16 * i)) & 0xffff;
            const uintptr_t v = (uintptr_t)ptr[i] |
                                (uintptr_t)((lay[i]->batch > 1 ? (uint64_t)(lay[i]->stride < 0 ? -lay[i]->stride
                                                                                                : lay[i]->stride)
                                                               : 0) * sizeof(float));
            if (ptr[i] && need && (v & (need - 1)))
                return fail(CUBLAS_STATUS_NOT_SUPPORTED, "%s: %c at %p (batch stride included) is not %llu-byte "
                            "aligned, as the algorithm's preference assumed (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_%c_BYTES)",
                            fn, nm[i], ptr[i], (unsigned long long)need, nm[i]);
        }
    }
    if (ws_size < algo->data[1] || (algo->data[1] && !ws))
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: workspace of %zu bytes, the algorithm needs %llu", fn, ws_size,
                    (unsigned long long)algo->data[1]);
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess || dev != h->device)
        return fail(CUBLAS_STATUS_EXECUTION_FAILED, "%s: handle of device %d used while device %d is current", fn,
                    h->device, dev);
    if (sl_mock_device_error(dev))
        return fail(CUBLAS_STATUS_EXECUTION_FAILED, "%s: device %d is lost (sticky error)", fn, dev);
    j.alpha = *static_cast<const float *>(alpha); // pointer mode host (the default): read now
    j.beta = *static_cast<const float *>(beta);
    if (j.beta != 0.0f && !C)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: beta != 0 with NULL C", fn);
    if (C == D && memcmp(lc, ld, sizeof *lc) != 0)
        return fail(CUBLAS_STATUS_INVALID_VALUE, "%s: C is D (in place) with another layout", fn);
    const size_t na = span(la), nb = span(lb), nd = span(ld), nbias = j.g.bias ?
        ((size_t)j.g.m + (size_t)(j.g.batch - 1) * (size_t)(d->bias_stride < 0 ? -d->bias_stride : d->bias_stride)) *
            sizeof(float) : 0;
    const size_t nws = algo->data[1];
    sl_mock_check_device(A, na, "cublasLtMatmul A");
    sl_mock_check_device(B, nb, "cublasLtMatmul B");
    sl_mock_check_device(D, nd, "cublasLtMatmul D");
    if (j.beta != 0.0f)
        sl_mock_check_device(C, span(lc), "cublasLtMatmul C");
    if (nbias)
        sl_mock_check_device(d->bias, nbias, "cublasLtMatmul bias");
    if (nws)
        sl_mock_check_device(ws, nws, "cublasLtMatmul workspace");
    if (overlap(D, nd, A, na) || overlap(D, nd, B, nb) || overlap(ws, nws, D, nd) || overlap(ws, nws, A, na) ||
        overlap(ws, nws, B, nb))
        sl_mock_fatal("cublasLtMatmul: D or the workspace overlaps A, B or each other (only C may be D)");
    j.a = *la;
    j.b = *lb;
    j.c = *lc;
    j.d = *ld;
    j.A = static_cast<const float *>(A);
    j.B = static_cast<const float *>(B);
    j.C = static_cast<const float *>(C);
    j.D = static_cast<float *>(D);
    j.bias = j.g.bias ? static_cast<const float *>(d->bias) : nullptr;
    j.bias_stride = d->bias_stride;
    sl_mock_enqueue(stream, [j, ws, nws] {
        run(j);
        if (nws)
            sl_mock_poison(ws, nws);
    });
    return CUBLAS_STATUS_SUCCESS;
}

} // extern "C"
