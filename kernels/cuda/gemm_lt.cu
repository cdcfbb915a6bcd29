// sl_op_gemm in the precision modes tf32 / bf16 (runtime.precision): the
// product on tensor cores through cuBLASLt, fp32 storage, compute type
// CUBLAS_COMPUTE_32F_FAST_TF32 or CUBLAS_COMPUTE_32F_FAST_16BF (operands
// rounded to TF32 / bfloat16 by the library, fp32 accumulation). Host code
// only: the real build calls libcublasLt, the cudamock build the stand-in in
// kernels/cuda/mock/cublaslt_mock.cpp; the emulated build has no cuBLASLt (its
// gemm is always the hand-written fp32 kernel, as is every fp32 gemm).
//
// Row-major y[m][n] = x[m][k] w[n][k]^T is, column-major, y^T (n x m) =
// op(A) B with A = w seen as a k x n column-major matrix (ld ldw) transposed and
// B = x seen as k x m (ld ldx): TRANSA = T, TRANSB = N, D = y^T with ld ldy.
// The bias is then one value per row of D, which is cuBLASLt's BIAS epilogue.
// Fused when the op's epilogue is cuBLASLt's (bias and/or ReLU, no product or
// sum, y not x): D is y. Otherwise D is a context buffer t[batch][m][n] (bias
// added there) and SL_FN(gemm_epilogue) applies the activation, product and
// sum into y.
#include "cu_ops.h"
#include "cu_state.h"

#if SL_CUDA_API
#include <cublasLt.h>
#include <stdlib.h>

#include "cu_dl.h"

// libcublasLt is loaded at the first tf32 / bf16 context (cu_dl.h): it is a
// 540 MB library whose loading alone costs ~150 MB of resident memory, which a
// run in fp32 (the default) must not pay. cudamock links its stand-in.
#define LT_API(X, t, p)                                                                     \
    X(t, p, Create) X(t, p, Destroy) X(t, p, MatmulDescCreate) X(t, p, MatmulDescDestroy)         \
    X(t, p, MatmulDescSetAttribute) X(t, p, MatrixLayoutCreate) X(t, p, MatrixLayoutDestroy)       \
    X(t, p, MatrixLayoutSetAttribute) X(t, p, MatmulPreferenceCreate)                             \
    X(t, p, MatmulPreferenceDestroy) X(t, p, MatmulPreferenceSetAttribute)                        \
    X(t, p, MatmulAlgoGetHeuristic) X(t, p, Matmul)
static struct {
    SL_CU_TABLE(LT_API, cublasLt)
} lt_api;

// 0 when cuBLASLt can be used (loaded once per process), else SL_EUNSUPPORTED saying why.
SL_CU_LOADER(sl_cuda_gemm_lt_available, lt_api, cublasLt, LT_API, "libcublasLt.so." SL_CU_STR(CUBLAS_VER_MAJOR),
             "tf32 / bf16 need cuBLASLt")

#define LT_WS_BYTES ((size_t)4 << 20) // cuBLASLt workspace per context

struct sl_cu_lt {
    cublasLtHandle_t h;
    void *ws; // LT_WS_BYTES of device memory
    float *t; // the product before an epilogue cuBLASLt does not have
    size_t t_floats;
};

static int lt_err(cublasStatus_t s, const char *call)
{
    (void)cudaGetLastError();
    return sl_seterr(s == CUBLAS_STATUS_ALLOC_FAILED ? SL_ENOMEM : SL_EDEVICE, "%s: cuBLAS status %d", call,
                     (int)s);
}
#define LT_CHECK(call)                                                                      \
    do {                                                                                    \
        cublasStatus_t lt_s_ = (call);                                                      \
        if (lt_s_ != CUBLAS_STATUS_SUCCESS) {                                               \
            rc = lt_err(lt_s_, #call);                                                      \
            goto out;                                                                       \
        }                                                                                   \
    } while (0)

static int lt_get(sl_op_ctx *ctx, sl_cu_lt **out)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (!st->lt) {
        int rc = sl_cuda_gemm_lt_available();
        if (rc < 0)
            return rc;
        sl_cu_lt *lt = static_cast<sl_cu_lt *>(calloc(1, sizeof *lt));
        if (!lt)
            return sl_seterr(SL_ENOMEM, "cuBLASLt: out of memory");
        cublasStatus_t s = lt_api.Create(&lt->h);
        if (s != CUBLAS_STATUS_SUCCESS) {
            free(lt);
            return lt_err(s, "cublasLtCreate");
        }
        cudaError_t e = sl_cu_dev_alloc(st, &lt->ws, LT_WS_BYTES);
        if (e != cudaSuccess) {
            lt_api.Destroy(lt->h);
            free(lt);
            return sl_cu_err(e, "cudaMallocAsync(cuBLASLt workspace)");
        }
        st->lt = lt;
    }
    *out = st->lt;
    return 0;
}

extern "C" void sl_cuda_gemm_lt_release(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (!st->lt)
        return;
    sl_cu_dev_free(st, st->lt->ws);
    if (st->lt->t)
        sl_cu_dev_free(st, st->lt->t);
    lt_api.Destroy(st->lt->h);
    free(st->lt);
    st->lt = NULL;
}

// The alignment cuBLASLt may assume of an operand (its preference's default is
// 256 bytes, which a matrix at a column offset of a wider buffer does not have):
// the largest power of two, up to 256, dividing its address and its batch stride.
static uint32_t lt_align(const void *p, size_t stride_floats)
{
    const uintptr_t v = (uintptr_t)p | (uintptr_t)(stride_floats * sizeof(float)) | 256;
    return (uint32_t)(v & (~v + 1));
}

// One cuBLASLt matmul: batch items of D (n x m, ld ldd, batch stride sd) =
// op(A) B [+ bias] [ReLU]. Strides are non-zero when batch > 1.
static int lt_matmul(sl_op_ctx *ctx, sl_cu_lt *lt, cublasComputeType_t ct, const sl_gemm_args *a, size_t batch,
                     size_t m, const float *x, size_t sx, const float *w, size_t sw, const float *bias, size_t sb,
                     float *d, size_t ldd, size_t sd, int relu)
{
    int rc = 0;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const uint32_t epi = bias ? (relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                              : (relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
    const uint64_t ws = LT_WS_BYTES;
    const float one = 1.0f, zero = 0.0f;
    LT_CHECK(lt_api.MatmulDescCreate(&op, ct, CUDA_R_32F));
    LT_CHECK(lt_api.MatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    LT_CHECK(lt_api.MatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    LT_CHECK(lt_api.MatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) {
        LT_CHECK(lt_api.MatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        if (batch > 1) {
            const int64_t s = (int64_t)sb;
            LT_CHECK(lt_api.MatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, &s, sizeof s));
        }
    }
    LT_CHECK(lt_api.MatrixLayoutCreate(&la, CUDA_R_32F, a->k, a->n, (int64_t)a->ldw));
    LT_CHECK(lt_api.MatrixLayoutCreate(&lb, CUDA_R_32F, a->k, m, (int64_t)a->ldx));
    LT_CHECK(lt_api.MatrixLayoutCreate(&ld, CUDA_R_32F, a->n, m, (int64_t)ldd));
    if (batch > 1) {
        const int32_t nb = (int32_t)batch;
        const int64_t s[3] = {(int64_t)sw, (int64_t)sx, (int64_t)sd};
        cublasLtMatrixLayout_t l[3] = {la, lb, ld};
        for (int i = 0; i < 3; i++) {
            LT_CHECK(lt_api.MatrixLayoutSetAttribute(l[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &nb, sizeof nb));
            LT_CHECK(lt_api.MatrixLayoutSetAttribute(l[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &s[i],
                                                      sizeof s[i]));
        }
    }
    LT_CHECK(lt_api.MatmulPreferenceCreate(&pref));
    LT_CHECK(lt_api.MatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    {
        const uint32_t al[4] = {lt_align(w, sw), lt_align(x, sx), lt_align(d, sd), lt_align(d, sd)};
        const cublasLtMatmulPreferenceAttributes_t at[4] = {
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
            CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
        for (int i = 0; i < 4; i++)
            LT_CHECK(lt_api.MatmulPreferenceSetAttribute(pref, at[i], &al[i], sizeof al[i]));
    }
    LT_CHECK(lt_api.MatmulAlgoGetHeuristic(lt->h, op, la, lb, ld, ld, pref, 1, &heur, &found));
    if (found < 1 || heur.state != CUBLAS_STATUS_SUCCESS) {
        rc = sl_seterr(SL_EUNSUPPORTED, "cuBLASLt: no algorithm for %zu x %zu x %zu (batch %zu)", m, a->n, a->k,
                       batch);
        goto out;
    }
    // C = D with beta 0 (C is not read).
    LT_CHECK(lt_api.Matmul(lt->h, op, &one, w, la, x, lb, &zero, d, ld, d, ld, &heur.algo, lt->ws, LT_WS_BYTES,
                            SL_FN(stream)(ctx)));
out:
    if (pref)
        lt_api.MatmulPreferenceDestroy(pref);
    if (ld)
        lt_api.MatrixLayoutDestroy(ld);
    if (lb)
        lt_api.MatrixLayoutDestroy(lb);
    if (la)
        lt_api.MatrixLayoutDestroy(la);
    if (op)
        lt_api.MatmulDescDestroy(op);
    return rc;
}

// 1: not taken (fp32: the hand-written kernel); 0 or an error: done here.
extern "C" int sl_cuda_gemm_lt(sl_op_ctx *ctx, const sl_gemm_args *a)
{
    if (ctx->precision == SL_PREC_FP32 || a->force_fp32)
        return 1;
    const cublasComputeType_t ct =
        ctx->precision == SL_PREC_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_FAST_16BF;
    sl_cu_lt *lt = NULL;
    int rc = lt_get(ctx, &lt);
    if (rc < 0)
        return rc;
    const int fused = !a->mul && !a->add && (a->act == SL_ACT_NONE || a->act == SL_ACT_RELU) && a->y != a->x;
    float *d = a->y;
    size_t ldd = a->ldy, sd = a->stride_y;
    if (!fused) {
        const size_t need = a->batch * a->m * a->n;
        if (need > lt->t_floats) {
            sl_cu_state *st = sl_cu_st(ctx);
            if (lt->t)
                sl_cu_dev_free(st, lt->t);
            lt->t = NULL;
            lt->t_floats = 0;
            void *p;
            cudaError_t e = sl_cu_dev_alloc(st, &p, need * sizeof(float));
            if (e != cudaSuccess)
                return sl_cu_err(e, "cudaMallocAsync(gemm product)");
            lt->t = static_cast<float *>(p);
            lt->t_floats = need;
        }
        d = lt->t;
        ldd = a->n;
        sd = a->m * a->n;
    }
    const int relu = fused && a->act == SL_ACT_RELU;
    if (a->batch == 1 || (a->stride_w == 0 && a->stride_bias == 0 && a->stride_x == a->m * a->ldx &&
                          sd == a->m * ldd)) // shared weights over consecutive items: one taller product
        rc = lt_matmul(ctx, lt, ct, a, 1, a->m * a->batch, a->x, 0, a->w, 0, a->bias, 0, d, ldd, 0, relu);
    else if (a->stride_x && a->stride_w && (a->stride_bias || !a->bias) && sd)
        rc = lt_matmul(ctx, lt, ct, a, a->batch, a->m, a->x, a->stride_x, a->w, a->stride_w, a->bias,
                       a->stride_bias, d, ldd, sd, relu);
    else // an operand shared by the batch otherwise: one product per item
        for (size_t b = 0; b < a->batch && rc == 0; b++)
            rc = lt_matmul(ctx, lt, ct, a, 1, a->m, a->x + b * a->stride_x, 0, a->w + b * a->stride_w, 0,
                           a->bias ? a->bias + b * a->stride_bias : NULL, 0, d + b * sd, ldd, 0, relu);
    if (rc == 0 && !fused)
        rc = SL_FN(gemm_epilogue)(ctx, a, lt->t);
    return rc;
}
#endif
