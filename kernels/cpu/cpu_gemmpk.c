/* AVX-512 linear layers y = act(x w^T + bias) [+ add] on weights declared fixed
 * (sl_op_mark_fixed): w is packed once per context into panels of 32 of its rows
 * ([n / 32][k][32], zero rows past n; sl_cpu_fixed_form keeps the packed form), so a
 * call reads the packed panels in place where a library GEMM packs the weights on
 * every call. 12 rows of x x 32 columns of y accumulate in 24 registers over the
 * whole k (x broadcast from its rows in place, no packing either); the bias and the
 * residual are added in the registers, the activation runs over the block of y just
 * written while it is in cache (sl_cpu_epilogue_row). Every element of y is one fixed
 * sequence of operations (fused multiply-adds over k in order, + bias, + add) wherever
 * it lies in a tile, so every thread split of a product gives the same bits. */
#include <stdint.h>
#include <string.h>

#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

#define PK_NR 32               /* columns of y per panel */
#define PK_MR 12               /* rows of x per tile */
#define PK_GROUP_BYTES (1u << 19) /* packed panels read by one row block (L2) */

/* sl_cpu_fixed_form's tag of a packed [n][k] weight of row stride ldw ('PK' + its shape). */
#define PK_TAG(n, k, ldw) (((uint64_t)0x504bu << 48) ^ ((uint64_t)(n) << 32) ^ ((uint64_t)(ldw) << 16) ^ (uint64_t)(k))

static size_t pk_floats(size_t n, size_t k) { return (n + PK_NR - 1) / PK_NR * PK_NR * k; }

static void pk_pack(const float *w, size_t ldw, size_t n, size_t k, float *wp)
{
    for (size_t p = 0; p < (n + PK_NR - 1) / PK_NR; p++) {
        float *dst = wp + p * PK_NR * k;
        for (size_t c = 0; c < PK_NR; c++) {
            const size_t j = p * PK_NR + c;
            if (j < n)
                for (size_t kk = 0; kk < k; kk++)
                    dst[kk * PK_NR + c] = w[j * ldw + kk];
            else
                for (size_t kk = 0; kk < k; kk++)
                    dst[kk * PK_NR + c] = 0.0f;
        }
    }
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>

#define PK512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

/* y[r][0..cols) = x[r] . panel (+ bias) (+ add[r]) for r < R (R <= PK_MR), cols <= 32. */
PK512 static inline __attribute__((always_inline)) void pk_tile(int R, size_t k, const float *x, size_t ldx,
                                                               const float *wp, const float *bias, const float *add,
                                                               size_t ldadd, float *y, size_t ldy, size_t cols)
{
    __m512 acc[PK_MR][2];
    _Pragma("GCC unroll 12") for (int r = 0; r < PK_MR; r++)
        if (r < R)
            acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t kk = 0; kk < k; kk++) {
        const __m512 b0 = _mm512_load_ps(wp + kk * PK_NR), b1 = _mm512_load_ps(wp + kk * PK_NR + 16);
        _Pragma("GCC unroll 12") for (int r = 0; r < PK_MR; r++)
            if (r < R) {
                const __m512 a = _mm512_set1_ps(x[(size_t)r * ldx + kk]);
                acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
            }
    }
    const __mmask16 m0 = cols >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << cols) - 1u);
    const __mmask16 m1 = cols >= 32 ? (__mmask16)0xffff : cols <= 16 ? 0 : (__mmask16)((1u << (cols - 16)) - 1u);
    __m512 bv0 = _mm512_setzero_ps(), bv1 = _mm512_setzero_ps();
    if (bias) {
        bv0 = _mm512_maskz_loadu_ps(m0, bias);
        bv1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
    _Pragma("GCC unroll 12") for (int r = 0; r < PK_MR; r++)
        if (r < R) {
            __m512 v0 = acc[r][0], v1 = acc[r][1];
            if (bias) {
                v0 = _mm512_add_ps(v0, bv0);
                v1 = _mm512_add_ps(v1, bv1);
            }
            if (add) {
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, add + (size_t)r * ldadd));
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, add + (size_t)r * ldadd + 16));
            }
            _mm512_mask_storeu_ps(y + (size_t)r * ldy, m0, v0);
            _mm512_mask_storeu_ps(y + (size_t)r * ldy + 16, m1, v1);
        }
}

#define PK_CASE(R)                                                                                                     \
    case R:                                                                                                            \
        pk_tile(R, k, x, ldx, wp, bias, add, ldadd, y, ldy, cols);                                                     \
        break

PK512 static void pk_tile_any(int R, size_t k, const float *x, size_t ldx, const float *wp, const float *bias,
                              const float *add, size_t ldadd, float *y, size_t ldy, size_t cols)
{
    switch (R) {
        PK_CASE(1);
        PK_CASE(2);
        PK_CASE(3);
        PK_CASE(4);
        PK_CASE(5);
        PK_CASE(6);
        PK_CASE(7);
        PK_CASE(8);
        PK_CASE(9);
        PK_CASE(10);
        PK_CASE(11);
    default:
        break;
    }
}

/* Rows [i0, i1) x panels [p0, p1) of the product (see the file comment). */
PK512 static void pk_run(const sl_gemm_args *a, const float *wp, size_t i0, size_t i1, size_t p0, size_t p1)
{
    const size_t k = a->k, per = PK_GROUP_BYTES / (PK_NR * k * sizeof(float));
    const size_t group = per ? per : 1;
    for (size_t g0 = p0; g0 < p1; g0 += group) {
        const size_t g1 = g0 + group < p1 ? g0 + group : p1;
        const size_t j0 = g0 * PK_NR, j1 = g1 * PK_NR < a->n ? g1 * PK_NR : a->n;
        for (size_t i = i0; i < i1; i += PK_MR) {
            const int R = i1 - i < PK_MR ? (int)(i1 - i) : PK_MR;
            const float *xi = a->x + i * a->ldx;
            const float *addi = a->add ? a->add + i * a->ldadd : NULL;
            float *yi = a->y + i * a->ldy;
            for (size_t p = g0; p < g1; p++) {
                const size_t j = p * PK_NR, cols = a->n - j < PK_NR ? a->n - j : PK_NR;
                const float *bias = a->bias ? a->bias + j : NULL, *add = addi ? addi + j : NULL;
                if (R == PK_MR)
                    pk_tile(PK_MR, k, xi, a->ldx, wp + p * PK_NR * k, bias, add, a->ldadd, yi + j, a->ldy, cols);
                else
                    pk_tile_any(R, k, xi, a->ldx, wp + p * PK_NR * k, bias, add, a->ldadd, yi + j, a->ldy, cols);
            }
            if (a->act != SL_ACT_NONE)
                for (int r = 0; r < R; r++)
                    sl_cpu_epilogue_row(a->act, j1 - j0, yi + (size_t)r * a->ldy + j0, NULL, NULL, NULL,
                                        yi + (size_t)r * a->ldy + j0);
        }
    }
}
#endif

typedef struct {
    const sl_gemm_args *a;
    const float *wp;
    size_t parts;
} pk_job;

static void pk_body(void *v, size_t part, int tid)
{
    (void)tid;
    const pk_job *J = v;
    const sl_gemm_args *a = J->a;
    const size_t panels = (a->n + PK_NR - 1) / PK_NR;
    size_t i0 = 0, i1 = a->m, p0 = 0, p1 = panels;
    if (J->parts > 1) {
        if (panels >= J->parts && a->n >= a->m)
            sl_pool_range(panels, J->parts, part, &p0, &p1);
        else
            sl_pool_range(a->m, J->parts, part, &i0, &i1);
    }
    if (i0 >= i1 || p0 >= p1)
        return;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    pk_run(a, J->wp, i0, i1, p0, p1);
#endif
}

int sl_cpu_gemm_packed(sl_op_ctx *ctx, const sl_gemm_args *a, size_t parts)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (!sl_cpu_simd_avx512() || a->batch != 1 || a->k == 0 || a->n == 0 || a->m == 0 || a->mul ||
        (a->add && a->act != SL_ACT_NONE) || (a->add && a->add != a->y && a->add < a->y + a->m * a->ldy &&
                                               a->y < a->add + a->m * a->ldadd))
        return 0;
    int fresh = 0;
    float *wp = sl_cpu_fixed_form(ctx, a->w, PK_TAG(a->n, a->k, a->ldw), pk_floats(a->n, a->k), &fresh);
    if (!wp)
        return 0;
    if (fresh) {
        pk_pack(a->w, a->ldw, a->n, a->k, wp);
        sl_cpu_fixed_form_ready(ctx, wp, 1);
    }
    pk_job J = {a, wp, parts};
    sl_pool_for(ctx->pool, parts, pk_body, &J);
    return 1;
#else
    (void)ctx, (void)a, (void)parts, (void)pk_pack, (void)pk_floats;
    return 0;
#endif
}
