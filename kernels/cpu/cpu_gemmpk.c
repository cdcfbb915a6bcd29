/* AVX-512 linear layers y = act(x w^T + bias) [+ add] on weights declared fixed
 * (sl_op_mark_fixed): w is packed once per context into panels of 32 of its rows
 * ([n / 32][k][32], zero rows past n; sl_cpu_fixed_form keeps the packed form), so a
 * call reads the packed panels in place where a library GEMM packs the weights on
 * every call. 12 rows of x x 32 columns of y accumulate in 24 registers over the
 * whole k (x broadcast from its rows in place, no packing either); the bias and the
 * residual are added in the registers, the activation runs over the block of y just
 * written while it is in cache (sl_cpu_epilogue_row). Many rows (more than PK_SB in a
 * part): groups of panels that fit L2, each row block over them (pk_run). Fewer rows (a
 * layer's weights used by few row blocks, so read from memory at a rate the first row
 * block cannot hide): panel by panel, k cut into L1-sized chunks that every row block of
 * the part passes over in turn, the next chunk fetched into L2 meanwhile (pk_run_kc; 8 %
 * less CPU time on CLAP's stage 3, 20 % on stage 4). Every element of y is one fixed
 * sequence of operations (fused multiply-adds over k in order, + bias, + add) wherever
 * it lies in a tile and however k is chunked, so every thread split of a product gives
 * the same bits. */
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

#define PK_KC 256  /* steps along k per chunk: 32 x 256 floats of a panel (32 KiB) stay in L1 */
#define PK_SB 288  /* rows of x per row block group at most (their partial sums: 36 KiB) */
#define PK_XB (1u << 20) /* bytes of x per row block group at most (in L2 while the panels pass) */

/* Rows r < R (R <= PK_MR) of one chunk of kn steps of a panel: the sums start from part (the
 * chunks before, from_part) or 0; then to part, or, on the last chunk (fin), + bias (+ add[r])
 * to y[r][0..cols) (cols <= 32). pf, when not NULL: pf_q cache lines of it fetched into L2
 * every 8 steps. Every element is the same fused multiply-adds over k in order, + bias, + add,
 * however k is cut into chunks (a sum kept in part is the float the registers held). */
PK512 static inline __attribute__((always_inline)) void pk_chunk(int R, size_t kn, const float *x, size_t ldx,
                                                                const float *wc, float *part, int from_part, int fin,
                                                                const float *bias, const float *add, size_t ldadd,
                                                                float *y, size_t ldy, size_t cols, const char *pf,
                                                                size_t pf_q)
{
    __m512 acc[PK_MR][2];
    _Pragma("GCC unroll 12") for (int r = 0; r < PK_MR; r++)
        if (r < R) {
            if (from_part) {
                acc[r][0] = _mm512_load_ps(part + r * PK_NR);
                acc[r][1] = _mm512_load_ps(part + r * PK_NR + 16);
            } else
                acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        }
#define PK_STEP(kk)                                                                                                    \
    do {                                                                                                               \
        const __m512 b0 = _mm512_load_ps(wc + (kk) * PK_NR), b1 = _mm512_load_ps(wc + (kk) * PK_NR + 16);              \
        _Pragma("GCC unroll 12") for (int r = 0; r < PK_MR; r++) if (r < R)                                            \
        {                                                                                                              \
            const __m512 av = _mm512_set1_ps(x[(size_t)r * ldx + (kk)]);                                               \
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);                                                            \
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);                                                            \
        }                                                                                                              \
    } while (0)
    size_t k8 = 0;
    for (; k8 + 8 <= kn; k8 += 8) { /* 8 steps unrolled, pf_q lines fetched before them */
        for (size_t u = 0; pf && u < pf_q; u++) {
            _mm_prefetch(pf, _MM_HINT_T1);
            pf += 64;
        }
        _Pragma("GCC unroll 8") for (size_t kk = k8; kk < k8 + 8; kk++) PK_STEP(kk);
    }
    for (size_t kk = k8; kk < kn; kk++)
        PK_STEP(kk);
#undef PK_STEP
    if (!fin) {
        _Pragma("GCC unroll 12") for (int r = 0; r < PK_MR; r++)
            if (r < R) {
                _mm512_store_ps(part + r * PK_NR, acc[r][0]);
                _mm512_store_ps(part + r * PK_NR + 16, acc[r][1]);
            }
        return;
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

#define PKC_CASE(R)                                                                                                    \
    case R:                                                                                                            \
        pk_chunk(R, kn, x, ldx, wc, part, from_part, fin, bias, add, ldadd, y, ldy, cols, NULL, 0);                    \
        break

PK512 static void pk_chunk_any(int R, size_t kn, const float *x, size_t ldx, const float *wc, float *part,
                               int from_part, int fin, const float *bias, const float *add, size_t ldadd, float *y,
                               size_t ldy, size_t cols)
{
    switch (R) {
        PKC_CASE(1);
        PKC_CASE(2);
        PKC_CASE(3);
        PKC_CASE(4);
        PKC_CASE(5);
        PKC_CASE(6);
        PKC_CASE(7);
        PKC_CASE(8);
        PKC_CASE(9);
        PKC_CASE(10);
        PKC_CASE(11);
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
                    pk_chunk(PK_MR, k, xi, a->ldx, wp + p * PK_NR * k, NULL, 0, 1, bias, add, a->ldadd, yi + j, a->ldy,
                             cols, NULL, 0);
                else
                    pk_chunk_any(R, k, xi, a->ldx, wp + p * PK_NR * k, NULL, 0, 1, bias, add, a->ldadd, yi + j, a->ldy,
                                 cols);
            }
            if (a->act != SL_ACT_NONE)
                for (int r = 0; r < R; r++)
                    sl_cpu_epilogue_row(a->act, j1 - j0, yi + (size_t)r * a->ldy + j0, NULL, NULL, NULL,
                                        yi + (size_t)r * a->ldy + j0);
        }
    }
}
/* Rows [i0, i1) x panels [p0, p1), panel by panel for groups of up to PK_SB rows: each chunk of
 * PK_KC steps of a panel stays in L1 while the group's row blocks pass over it (x from L2), the
 * partial sums of the group's rows kept in part between chunks; the next chunk of the weights
 * comes in meanwhile, pf_q lines every 8 steps (weights read once per call arrive from memory). */
PK512 static void pk_run_kc(const sl_gemm_args *a, const float *wp, size_t i0, size_t i1, size_t p0, size_t p1)
{
    float part[PK_SB * PK_NR] __attribute__((aligned(64)));
    const size_t k = a->k, KC = PK_KC, rows = i1 - i0, xr = PK_XB / (k * sizeof(float));
    const size_t sb = xr < PK_SB ? (xr > PK_MR ? xr : PK_MR) : PK_SB, groups = (rows + sb - 1) / sb;
    const size_t gr = ((rows + groups - 1) / groups + PK_MR - 1) / PK_MR * PK_MR;
    for (size_t s0 = i0; s0 < i1; s0 += gr) {
        const size_t s1 = s0 + gr < i1 ? s0 + gr : i1, full = (s1 - s0) / PK_MR;
        for (size_t p = p0; p < p1; p++) {
            const size_t j = p * PK_NR, cols = a->n - j < PK_NR ? a->n - j : PK_NR;
            const float *bias = a->bias ? a->bias + j : NULL;
            for (size_t c0 = 0; c0 < k; c0 += KC) {
                const size_t kn = k - c0 < KC ? k - c0 : KC;
                const int fin = c0 + kn == k, from = c0 > 0;
                const float *wc = wp + p * PK_NR * k + c0 * PK_NR;
                /* the next chunk (of this panel or the next one): contiguous after this one */
                const size_t next = fin ? (p + 1 < p1 ? (k < KC ? k : KC) : 0) : (k - c0 - kn < KC ? k - c0 - kn : KC);
                const char *pf = next && full ? (const char *)(wc + kn * PK_NR) : NULL;
                const char *pf_end = pf ? pf + next * PK_NR * sizeof(float) : NULL;
                /* lines per row block, spread over its groups of 8 steps */
                const size_t per = next * PK_NR * sizeof(float) / 64 / (full ? full : 1) + 1;
                const size_t pf_q = kn >= 8 ? (per + kn / 8 - 1) / (kn / 8) : 0;
                for (size_t i = s0; i < s1; i += PK_MR) {
                    const int R = s1 - i < PK_MR ? (int)(s1 - i) : PK_MR;
                    const float *xi = a->x + i * a->ldx + c0;
                    const float *add = a->add ? a->add + i * a->ldadd + j : NULL;
                    float *pi = part + (i - s0) * PK_NR, *yi = a->y + i * a->ldy + j;
                    if (R == PK_MR && pf && pf < pf_end) {
                        pk_chunk(PK_MR, kn, xi, a->ldx, wc, pi, from, fin, bias, add, a->ldadd, yi, a->ldy, cols, pf,
                                 pf_q);
                        pf += kn / 8 * pf_q * 64;
                    } else if (R == PK_MR)
                        pk_chunk(PK_MR, kn, xi, a->ldx, wc, pi, from, fin, bias, add, a->ldadd, yi, a->ldy, cols,
                                 NULL, 0);
                    else
                        pk_chunk_any(R, kn, xi, a->ldx, wc, pi, from, fin, bias, add, a->ldadd, yi, a->ldy, cols);
                }
            }
            if (a->act != SL_ACT_NONE)
                sl_cpu_epilogue_rows(a->act, s1 - s0, cols, a->y + s0 * a->ldy + j, a->ldy, NULL, NULL, 0, NULL, 0,
                                     a->y + s0 * a->ldy + j, a->ldy);
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
    if (i1 - i0 <= PK_SB) /* few rows: panel by panel */
        pk_run_kc(a, J->wp, i0, i1, p0, p1);
    else
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
