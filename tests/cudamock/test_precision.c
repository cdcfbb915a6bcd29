/* runtime.precision on the real backend's host code against cudamock's
 * cuBLASLt stand-in (kernels/cuda/mock/cublaslt_mock.cpp):
 *  - sl_op_gemm in tf32 / bf16 equals a host reference that rounds the
 *    operands the same way (bfloat16 nearest-even, TF32 nearest-away) and sums
 *    them as the stand-in does (float, k order), within the epilogue's float
 *    rounding, and differs from the exact fp32 product by the mode's rounding
 *    (so the path is really taken), for the
 *    fused epilogues (bias, ReLU; strided batch) and the others (tanh, GELU,
 *    product, residual into y; shared weights folded into one product; shared x
 *    as one product per item);
 *  - back in fp32 the op is the hand-written kernel again, bit for bit;
 *  - the device string names the mode; cpu and cuda-emu refuse tf32 / bf16;
 *  - the stand-in's own strictness: invalid descriptor, type and layout
 *    combinations, an algorithm not from the heuristic, a short workspace,
 *    another device's handle, and its rounding of ties. */
#include <cublasLt.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "kernels/ops.h"
#include "tests/unit/sl_ref.h"
#include "tests/unit/sl_test.h"

const char *sl_mock_lt_last_error(void); /* the stand-in's reason for its last refusal */

static float bf16(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    memcpy(&v, &u, 4);
    return v;
}
static float tf32(float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    u = (u + 0x1000u) & 0xffffe000u;
    memcpy(&v, &u, 4);
    return v;
}
static double act(sl_act a, double v)
{
    if (a == SL_ACT_RELU)
        return v < 0 ? 0 : v;
    if (a == SL_ACT_TANH)
        return tanh(v);
    if (a == SL_ACT_GELU)
        return 0.5 * v * (1 + erf(v / sqrt(2.0)));
    return v;
}

typedef struct {
    const char *name;
    size_t batch, m, n, k;
    int shared_w, shared_x, bias, mul, add;
    sl_act act;
} gcase;

/* The op's result for g on ctx (host memory out[batch][m][n]); add is y's
 * previous content (y += ...). */
static int run_case(sl_op_ctx *ctx, const gcase *g, const float *x, const float *w, const float *b,
                    const float *mul, const float *add, float *out)
{
    const size_t nx = (g->shared_x ? 1 : g->batch) * g->m * g->k, nw = (g->shared_w ? 1 : g->batch) * g->n * g->k;
    const size_t ny = g->batch * g->m * g->n, nb = (g->shared_w ? 1 : g->batch) * g->n;
    float *dx, *dw, *db, *dm, *dy;
    int rc = sl_op_alloc(ctx, (void **)&dx, nx * 4) || sl_op_alloc(ctx, (void **)&dw, nw * 4) ||
             sl_op_alloc(ctx, (void **)&db, nb * 4) || sl_op_alloc(ctx, (void **)&dm, ny * 4) ||
             sl_op_alloc(ctx, (void **)&dy, ny * 4);
    if (rc)
        return SL_ENOMEM;
    sl_op_upload(ctx, dx, x, nx * 4);
    sl_op_upload(ctx, dw, w, nw * 4);
    sl_op_upload(ctx, db, b, nb * 4);
    sl_op_upload(ctx, dm, mul, ny * 4);
    sl_op_upload(ctx, dy, add, ny * 4);
    sl_gemm_args a;
    memset(&a, 0, sizeof a);
    a.batch = g->batch;
    a.m = g->m;
    a.n = g->n;
    a.k = g->k;
    a.x = dx;
    a.ldx = g->k;
    a.stride_x = g->shared_x ? 0 : g->m * g->k;
    a.w = dw;
    a.ldw = g->k;
    a.stride_w = g->shared_w ? 0 : g->n * g->k;
    a.bias = g->bias ? db : NULL;
    a.stride_bias = g->shared_w ? 0 : g->n;
    a.act = g->act;
    a.mul = g->mul ? dm : NULL;
    a.ldmul = g->n;
    a.stride_mul = g->m * g->n;
    a.y = dy;
    a.ldy = g->n;
    a.stride_y = g->m * g->n;
    a.add = g->add ? dy : NULL;
    a.ldadd = g->n;
    a.stride_add = g->m * g->n;
    rc = sl_op_gemm(ctx, &a);
    if (!rc)
        rc = sl_op_download(ctx, out, dy, ny * 4);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, db);
    sl_op_free(ctx, dm);
    sl_op_free(ctx, dy);
    return rc;
}

/* The reference: exact (round NULL: fp32 operands, summed in double), or with
 * the operands rounded by round and summed as the stand-in documents it, in
 * float in k order (the product of two TF32 or two bfloat16 values is exact in
 * float). A double sum of the rounded operands differs from any float sum by
 * the accumulation's rounding, which after tanh (slope 1 at 0, output peak
 * near 1) reached 2.5e-6 of the peak in 2 of 300 seeds at k = 90: a check
 * against it was either loose or flaky. Against the stand-in's own order the
 * difference left is the epilogue's (bias, activation, product, residual in
 * float), a few ulps. */
static void reference(const gcase *g, float (*round)(float), const float *x, const float *w, const float *b,
                      const float *mul, const float *add, double *out)
{
    for (size_t bt = 0; bt < g->batch; bt++)
        for (size_t i = 0; i < g->m; i++)
            for (size_t j = 0; j < g->n; j++) {
                const float *xr = x + (g->shared_x ? 0 : bt * g->m * g->k) + i * g->k;
                const float *wr = w + (g->shared_w ? 0 : bt * g->n * g->k) + j * g->k;
                double s = 0;
                if (round) {
                    float sf = 0.0f;
                    for (size_t l = 0; l < g->k; l++)
                        sf = sf + (float)((double)round(xr[l]) * (double)round(wr[l]));
                    s = sf;
                } else
                    for (size_t l = 0; l < g->k; l++)
                        s += (double)xr[l] * (double)wr[l];
                if (g->bias)
                    s += b[(g->shared_w ? 0 : bt * g->n) + j];
                s = act(g->act, s);
                const size_t o = bt * g->m * g->n + i * g->n + j;
                if (g->mul)
                    s *= mul[o];
                if (g->add)
                    s += add[o];
                out[o] = s;
            }
}

static double max_err(const float *got, const double *want, size_t n)
{
    double e = 0, peak = 1e-30;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - want[i]);
        e = isnan(got[i]) ? INFINITY : d > e ? d : e;
        peak = fabs(want[i]) > peak ? fabs(want[i]) : peak;
    }
    return e / peak;
}

static void gemm_cases(void)
{
    static const gcase cases[] = {
        {"fused bias+relu, strided batch", 3, 37, 70, 150, 0, 0, 1, 0, 0, SL_ACT_RELU},
        {"fused none, one item", 1, 64, 64, 300, 0, 0, 0, 0, 0, SL_ACT_NONE},
        {"tanh * mul, shared weights (folded)", 4, 20, 33, 90, 1, 0, 1, 1, 0, SL_ACT_TANH},
        {"gelu + residual into y, shared x (per item)", 3, 17, 40, 64, 0, 1, 1, 0, 1, SL_ACT_GELU},
        {"relu * mul + add, shared weights", 2, 9, 130, 200, 1, 0, 1, 1, 1, SL_ACT_RELU},
    };
    sl_op_ctx *ctx = NULL, *fresh = NULL;
    CHECK_MSG(sl_op_ctx_open(&ctx, "cuda") == 0, "open cuda (cudamock): %s", sl_lasterr());
    CHECK_MSG(sl_op_ctx_open(&fresh, "cuda") == 0, "open cuda (cudamock): %s", sl_lasterr());
    if (!ctx || !fresh)
        return;
    CHECK(sl_op_ctx_precision(ctx) == SL_PREC_FP32);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const gcase *g = &cases[c];
        const size_t ny = g->batch * g->m * g->n;
        float *x = sl_ref_rnd(g->batch * g->m * g->k, -1, 1), *w = sl_ref_rnd(g->batch * g->n * g->k, -1, 1);
        float *b = sl_ref_rnd(g->batch * g->n, -1, 1), *mul = sl_ref_rnd(ny, 0.5f, 1.5f), *add = sl_ref_rnd(ny, -1, 1);
        float *got = malloc(ny * 4), *hand = malloc(ny * 4);
        double *want = malloc(ny * 8), *exact = malloc(ny * 8);
        reference(g, NULL, x, w, b, mul, add, exact);
        static const struct { sl_precision p; float (*round)(float); double tol, min_dev; } modes[] = {
            {SL_PREC_TF32, tf32, 1e-6, 1e-6}, {SL_PREC_BF16, bf16, 1e-6, 1e-4}}; /* 500 seeds: at most 1.4e-7 */
        for (int md = 0; md < 2; md++) {
            CHECK(sl_op_ctx_set_precision(ctx, modes[md].p) == 0);
            CHECK_MSG(strstr(sl_op_ctx_device(ctx), sl_precision_name(modes[md].p)) != NULL, "%s",
                      sl_op_ctx_device(ctx));
            int rc = run_case(ctx, g, x, w, b, mul, add, got);
            CHECK_MSG(rc == 0, "%s %s: %s", g->name, sl_precision_name(modes[md].p), sl_lasterr());
            reference(g, modes[md].round, x, w, b, mul, add, want);
            const double e = max_err(got, want, ny), dev = max_err(got, exact, ny);
            printf("  %s %-45s err vs rounded-operand reference %.2g (tol %.0e), vs exact fp32 %.2g\n",
                   sl_precision_name(modes[md].p), g->name, e, modes[md].tol, dev);
            CHECK_MSG(e <= modes[md].tol, "%s %s: %g", g->name, sl_precision_name(modes[md].p), e);
            CHECK_MSG(dev >= modes[md].min_dev, "%s %s: the product is not rounded (%g from exact)", g->name,
                      sl_precision_name(modes[md].p), dev);
        }
        /* fp32 again: the hand-written kernel, bit for bit as on a context never switched */
        CHECK(sl_op_ctx_set_precision(ctx, SL_PREC_FP32) == 0);
        CHECK(strstr(sl_op_ctx_device(ctx), "precision") == NULL);
        CHECK(run_case(ctx, g, x, w, b, mul, add, got) == 0);
        CHECK(run_case(fresh, g, x, w, b, mul, add, hand) == 0);
        CHECK_MSG(memcmp(got, hand, ny * 4) == 0, "%s: fp32 after bf16 is not the hand-written kernel's bits", g->name);
        CHECK_MSG(max_err(hand, exact, ny) <= 1e-5, "%s: fp32 %g", g->name, max_err(hand, exact, ny));
        free(x), free(w), free(b), free(mul), free(add), free(got), free(hand), free(want), free(exact);
    }
    sl_op_ctx_close(ctx);
    sl_op_ctx_close(fresh);
}

static void fp32_only_backends(void)
{
    static const char *const names[] = {"cuda-emu"}; /* the CPU's modes: unit.nn_ops */
    for (int i = 0; i < 1; i++) {
        sl_op_ctx *c = NULL;
        CHECK(sl_op_ctx_open(&c, names[i]) == 0);
        if (!c)
            continue;
        CHECK(sl_op_ctx_set_precision(c, SL_PREC_FP32) == 0);
        CHECK_MSG(sl_op_ctx_set_precision(c, SL_PREC_BF16) == SL_EUNSUPPORTED && strstr(sl_lasterr(), "fp32 only"),
                  "%s: %s", names[i], sl_lasterr());
        CHECK(sl_op_ctx_precision(c) == SL_PREC_FP32);
        sl_op_ctx_close(c);
    }
}

/* D = A^T B (k x m, k x n column-major) for 1 x 1 x 1: the stand-in's rounding of ties. */
static float one_product(cublasComputeType_t ct, float a, float b)
{
    sl_op_ctx *ctx = NULL; /* device memory and the current device through the backend */
    float *d = NULL, out = NAN;
    if (sl_op_ctx_open(&ctx, "cuda") || sl_op_alloc(ctx, (void **)&d, 3 * 4))
        return NAN;
    const float in[3] = {a, b, -1};
    sl_op_upload(ctx, d, in, sizeof in);
    sl_op_sync(ctx); /* the upload is queued on the context's stream, the product on another */
    cublasLtHandle_t h = NULL;
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t l = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t r;
    int n = 0;
    const float one = 1, zero = 0;
    const uint32_t four = 4;
    cudaStream_t s;
    cudaStreamCreate(&s);
    if (cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS && cublasLtMatmulDescCreate(&op, ct, CUDA_R_32F) == 0 &&
        cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, 1, 1, 1) == 0 && cublasLtMatmulPreferenceCreate(&pref) == 0 &&
        /* operands at d + 1, d + 2: 4-byte aligned only */
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &four, 4) == 0 &&
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &four, 4) == 0 &&
        cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &four, 4) == 0 &&
        cublasLtMatmulAlgoGetHeuristic(h, op, l, l, l, l, pref, 1, &r, &n) == 0 && n == 1 &&
        cublasLtMatmul(h, op, &one, d, l, d + 1, l, &zero, d + 2, l, d + 2, l, &r.algo, NULL, 0, s) == 0) {
        cudaStreamSynchronize(s);
        cudaMemcpy(&out, d + 2, 4, cudaMemcpyDeviceToHost);
    } else
        fprintf(stderr, "one_product: %s\n", sl_mock_lt_last_error());
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(l);
    cublasLtMatmulDescDestroy(op);
    if (h)
        cublasLtDestroy(h);
    cudaStreamDestroy(s);
    sl_op_free(ctx, d);
    sl_op_ctx_close(ctx);
    return out;
}

static void mock_strictness(void)
{
    /* ties: bf16 to even, tf32 away from zero */
    CHECK(one_product(CUBLAS_COMPUTE_32F_FAST_16BF, 1.0f + 0x1p-8f, 1.0f) == 1.0f);
    CHECK(one_product(CUBLAS_COMPUTE_32F_FAST_16BF, 1.0f + 3 * 0x1p-8f, 1.0f) == 1.0f + 0x1p-6f);
    CHECK(one_product(CUBLAS_COMPUTE_32F_FAST_TF32, 1.0f + 0x1p-11f, 1.0f) == 1.0f + 0x1p-10f);
    CHECK(one_product(CUBLAS_COMPUTE_32F, 1.0f + 0x1p-11f, 1.0f) == 1.0f + 0x1p-11f);

    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, bad;
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulHeuristicResult_t r;
    int n = 0;
    cublasLtHandle_t h;
    CHECK(cublasLtCreate(&h) == CUBLAS_STATUS_SUCCESS);
    /* ld < rows in a column-major layout */
    CHECK(cublasLtMatrixLayoutCreate(&bad, CUDA_R_32F, 8, 4, 7) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasLtMatrixLayoutCreate(&a, CUDA_R_32F, 8, 4, 8) == 0);     /* A: k 8 x m 4 (TRANSA T) */
    CHECK(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, 8, 5, 8) == 0);    /* B in bf16 storage */
    CHECK(cublasLtMatmulPreferenceCreate(&pref) == 0);
    /* an attribute of the wrong size */
    const int64_t big = 1;
    CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &big, 4) ==
          CUBLAS_STATUS_INVALID_VALUE);
    /* scale type other than R_32F with a 32F compute type */
    CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F_FAST_16BF, CUDA_R_16BF) == 0);
    cublasLtMatrixLayout_t d;
    CHECK(cublasLtMatrixLayoutCreate(&d, CUDA_R_32F, 4, 5, 4) == 0);
    CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, a, a, d, d, pref, 1, &r, &n) == CUBLAS_STATUS_NOT_SUPPORTED);
    cublasLtMatmulDescDestroy(op);
    /* fp32 A with bf16 B: not a row of the type table */
    CHECK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F_FAST_TF32, CUDA_R_32F) == 0);
    const int32_t t = CUBLAS_OP_T;
    CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t) == 0);
    CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, a, b, d, d, pref, 1, &r, &n) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(strstr(sl_mock_lt_last_error(), "not a combination") != NULL);
    /* shapes: op(A) 4 x 8, B 8 x 5 -> D 4 x 5 passes; D 5 x 4 does not */
    cublasLtMatrixLayout_t b32, dt;
    CHECK(cublasLtMatrixLayoutCreate(&b32, CUDA_R_32F, 8, 5, 8) == 0);
    CHECK(cublasLtMatrixLayoutCreate(&dt, CUDA_R_32F, 5, 4, 5) == 0);
    CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, a, b32, d, d, pref, 1, &r, &n) == 0 && n == 1);
    CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, a, b32, dt, dt, pref, 1, &r, &n) == CUBLAS_STATUS_INVALID_VALUE);
    /* batch counts that differ */
    const int32_t three = 3;
    CHECK(cublasLtMatrixLayoutSetAttribute(b32, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &three, sizeof three) == 0);
    CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, a, b32, d, d, pref, 1, &r, &n) == CUBLAS_STATUS_INVALID_VALUE);
    /* a bias epilogue without a bias pointer */
    const int32_t one_b = 1;
    CHECK(cublasLtMatrixLayoutSetAttribute(b32, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &one_b, sizeof one_b) == 0);
    const uint32_t epi = CUBLASLT_EPILOGUE_BIAS;
    CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi) == 0);
    CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, a, b32, d, d, pref, 1, &r, &n) == CUBLAS_STATUS_INVALID_VALUE);
    /* an algorithm not from the heuristic, and a workspace shorter than the heuristic asked for */
    const uint32_t def = CUBLASLT_EPILOGUE_DEFAULT;
    CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &def, sizeof def) == 0);
    const uint64_t ws = 4096;
    CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws) == 0);
    const uint32_t al4 = 4, al3 = 3; /* B, C, D below sit at 4-byte offsets; A keeps the default 256 */
    CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al3, 4) ==
          CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al4, 4) == 0);
    CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al4, 4) == 0);
    CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al4, 4) == 0);
    CHECK(cublasLtMatmulAlgoGetHeuristic(h, op, a, b32, d, d, pref, 1, &r, &n) == 0 && r.workspaceSize == 4096);
    float *mem = NULL;
    CHECK(cudaMalloc((void **)&mem, 4096 + 4 * (32 + 40 + 20)) == cudaSuccess);
    const float one = 1, zero = 0;
    cublasLtMatmulAlgo_t junk;
    memset(&junk, 0, sizeof junk);
    CHECK(cublasLtMatmul(h, op, &one, mem, a, mem + 32, b32, &zero, mem + 72, d, mem + 72, d, &junk, mem + 92, 4096,
                         0) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(cublasLtMatmul(h, op, &one, mem, a, mem + 32, b32, &zero, mem + 72, d, mem + 72, d, &r.algo, mem + 92, 1024,
                         0) == CUBLAS_STATUS_INVALID_VALUE);
    CHECK(strstr(sl_mock_lt_last_error(), "workspace") != NULL);
    /* an operand less aligned than the preference let the heuristic assume (256 bytes by default) */
    CHECK(cublasLtMatmul(h, op, &one, mem + 1, a, mem + 32, b32, &zero, mem + 72, d, mem + 72, d, &r.algo, mem + 92,
                         4096, 0) == CUBLAS_STATUS_NOT_SUPPORTED);
    CHECK(strstr(sl_mock_lt_last_error(), "aligned") != NULL);
    /* the handle's device must be current */
    CHECK(cudaSetDevice(1) == cudaSuccess);
    CHECK(cublasLtMatmul(h, op, &one, mem, a, mem + 32, b32, &zero, mem + 72, d, mem + 72, d, &r.algo, mem + 92, 4096,
                         0) == CUBLAS_STATUS_EXECUTION_FAILED);
    CHECK(cudaSetDevice(0) == cudaSuccess);
    cudaFree(mem);
    cublasLtMatrixLayoutDestroy(a);
    cublasLtMatrixLayoutDestroy(b);
    cublasLtMatrixLayoutDestroy(b32);
    cublasLtMatrixLayoutDestroy(d);
    cublasLtMatrixLayoutDestroy(dt);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatmulDescDestroy(op);
    cublasLtDestroy(h);
}

int main(void)
{
    setenv("SL_MOCK_DEVICES", "2", 1); /* before the first CUDA call */
    sl_ref_seed("test_precision");
    gemm_cases();
    fp32_only_backends();
    mock_strictness();
    return sl_test_finish("cudamock.precision");
}
