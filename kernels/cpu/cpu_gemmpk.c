/* AVX-512 and AVX2 linear layers y = act(x w^T + bias) [+ add] on weights declared fixed
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
 * the same bits. Where the CPU has AVX2 + FMA and no AVX-512, the same 12 x 32 blocks run as
 * 6 x 16 tiles in 12 ymm accumulators (pk2_chunk): each element the same operations in the
 * same order, so the same bits as the AVX-512 kernel. */
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
_Static_assert(PK_SB == SL_CPU_PACKED_AVX2_MAX_ROWS, "the AVX2 products are those pk_run_kc takes whole");
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

/* The row counts below a whole tile, for the switches of pk_chunk_any and pk2_chunk_any. */
#define PK_PART_ROWS(X) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

#define PKC_CASE(R)                                                                                                    \
    case R:                                                                                                            \
        pk_chunk(R, kn, x, ldx, wc, part, from_part, fin, bias, add, ldadd, y, ldy, cols, NULL, 0);                    \
        break;

PK512 static void pk_chunk_any(int R, size_t kn, const float *x, size_t ldx, const float *wc, float *part,
                               int from_part, int fin, const float *bias, const float *add, size_t ldadd, float *y,
                               size_t ldy, size_t cols)
{
    switch (R) {
        PK_PART_ROWS(PKC_CASE)
    default:
        break;
    }
}

#define PK_RUN pk_run
#define PK_RUN_KC pk_run_kc
#define PK_RUN_TGT PK512
#define PK_CHUNK pk_chunk
#define PK_CHUNK_ANY pk_chunk_any
#include "cpu_gemmpk_run.h"
#undef PK_RUN
#undef PK_RUN_KC
#undef PK_RUN_TGT
#undef PK_CHUNK
#undef PK_CHUNK_ANY

#define PK256 __attribute__((target("avx2,fma")))

/* Lanes q < 8 of a row's 8 columns from c0 that lie below cols: all of them (a plain load /
 * store), none, or the first cols - c0 (vmaskmov, taken on a panel's tail only). */
PK256 static inline __attribute__((always_inline)) __m256i pk2_mask(size_t cols, size_t c0)
{
    const int n = cols > c0 ? (cols - c0 < 8 ? (int)(cols - c0) : 8) : 0;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

PK256 static inline __attribute__((always_inline)) __m256 pk2_load(const float *p, size_t cols, size_t c0)
{
    return cols >= c0 + 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, pk2_mask(cols, c0));
}

PK256 static inline __attribute__((always_inline)) void pk2_store(float *p, __m256 v, size_t cols, size_t c0)
{
    if (cols >= c0 + 8)
        _mm256_storeu_ps(p, v);
    else if (cols > c0)
        _mm256_maskstore_ps(p, pk2_mask(cols, c0), v);
}

/* One 6-row x 16-column tile of pk2_chunk: rows r < R (R <= 6) of x, columns 16 h .. 16 h + 15
 * of the panel's chunk wc (12 ymm accumulators), the same steps as pk_chunk's for those
 * elements: sums from part or 0, fused multiply-adds over the chunk's k in order, then to part,
 * or + bias (+ add[r]) to y. pf / pf_q as in pk_chunk. */
PK256 static inline __attribute__((always_inline)) void pk2_tile(int R, int h, size_t kn, const float *x, size_t ldx,
                                                                const float *wc, float *part, int from_part, int fin,
                                                                const float *bias, const float *add, size_t ldadd,
                                                                float *y, size_t ldy, size_t cols, const char *pf,
                                                                size_t pf_q)
{
    __m256 acc[6][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)
        if (r < R) {
            if (from_part) {
                acc[r][0] = _mm256_load_ps(part + r * PK_NR + 16 * h);
                acc[r][1] = _mm256_load_ps(part + r * PK_NR + 16 * h + 8);
            } else
                acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        }
    const float *w = wc + 16 * h;
#define PK2_STEP(kk)                                                                                                   \
    do {                                                                                                               \
        const __m256 b0 = _mm256_load_ps(w + (kk) * PK_NR), b1 = _mm256_load_ps(w + (kk) * PK_NR + 8);                 \
        _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++) if (r < R)                                                 \
        {                                                                                                              \
            const __m256 av = _mm256_broadcast_ss(x + (size_t)r * ldx + (kk));                                         \
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);                                                            \
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);                                                            \
        }                                                                                                              \
    } while (0)
    size_t k8 = 0;
    for (; pf && k8 + 8 <= kn; k8 += 8) {
        for (size_t u = 0; u < pf_q; u++) {
            _mm_prefetch(pf, _MM_HINT_T1);
            pf += 64;
        }
        _Pragma("GCC unroll 2") for (size_t kk = k8; kk < k8 + 8; kk++) PK2_STEP(kk);
    }
    _Pragma("GCC unroll 2") for (size_t kk = k8; kk < kn; kk++) PK2_STEP(kk);
#undef PK2_STEP
    if (!fin) {
        _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)
            if (r < R) {
                _mm256_store_ps(part + r * PK_NR + 16 * h, acc[r][0]);
                _mm256_store_ps(part + r * PK_NR + 16 * h + 8, acc[r][1]);
            }
        return;
    }
    const size_t c0 = 16 * (size_t)h, c1 = c0 + 8;
    __m256 bv0 = _mm256_setzero_ps(), bv1 = _mm256_setzero_ps();
    if (bias) {
        bv0 = pk2_load(bias + c0, cols, c0);
        bv1 = pk2_load(bias + c1, cols, c1);
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)
        if (r < R) {
            __m256 v0 = acc[r][0], v1 = acc[r][1];
            if (bias) {
                v0 = _mm256_add_ps(v0, bv0);
                v1 = _mm256_add_ps(v1, bv1);
            }
            if (add) {
                v0 = _mm256_add_ps(v0, pk2_load(add + (size_t)r * ldadd + c0, cols, c0));
                v1 = _mm256_add_ps(v1, pk2_load(add + (size_t)r * ldadd + c1, cols, c1));
            }
            pk2_store(y + (size_t)r * ldy + c0, v0, cols, c0);
            pk2_store(y + (size_t)r * ldy + c1, v1, cols, c1);
        }
}

/* pk_chunk on AVX2 + FMA: the 12 x 32 block as 6 x 16 tiles (both halves of the panel for rows
 * 0-5, then for rows 6-11), each element the same operations as pk_chunk's, so the same bits. A
 * panel's second half is skipped where its columns lie past n (zero weights, nothing stored).
 * The prefetch of the next chunk rides on the first tile. */
PK256 static inline __attribute__((always_inline)) void pk2_chunk(int R, size_t kn, const float *x, size_t ldx,
                                                                 const float *wc, float *part, int from_part, int fin,
                                                                 const float *bias, const float *add, size_t ldadd,
                                                                 float *y, size_t ldy, size_t cols, const char *pf,
                                                                 size_t pf_q)
{
    _Pragma("GCC unroll 2") for (int g = 0; g < PK_MR; g += 6)
        if (g < R)
            _Pragma("GCC unroll 2") for (int h = 0; h < 2; h++)
                if (h == 0 || cols > 16)
                    pk2_tile(R - g < 6 ? R - g : 6, h, kn, x + (size_t)g * ldx, ldx, wc, part ? part + g * PK_NR : NULL,
                             from_part, fin, bias, add ? add + (size_t)g * ldadd : NULL, ldadd, y + (size_t)g * ldy,
                             ldy, cols, g == 0 && h == 0 ? pf : NULL, pf_q);
}

#define PK2C_CASE(R)                                                                                                   \
    case R:                                                                                                            \
        pk2_chunk(R, kn, x, ldx, wc, part, from_part, fin, bias, add, ldadd, y, ldy, cols, NULL, 0);                   \
        break;

PK256 static void pk2_chunk_any(int R, size_t kn, const float *x, size_t ldx, const float *wc, float *part,
                                int from_part, int fin, const float *bias, const float *add, size_t ldadd, float *y,
                                size_t ldy, size_t cols)
{
    switch (R) {
        PK_PART_ROWS(PK2C_CASE)
    default:
        break;
    }
}

/* AVX2 takes at most PK_SB rows (sl_cpu_gemm_packed), so every part is one for pk_run_kc */
#define PK_RUN_KC pk2_run_kc
#define PK_RUN_TGT PK256
#define PK_CHUNK pk2_chunk
#define PK_CHUNK_ANY pk2_chunk_any
#include "cpu_gemmpk_run.h"
#endif

typedef struct {
    const sl_gemm_args *a;
    const float *wp;
    size_t parts;
    int avx512; /* the AVX-512 kernel, else the AVX2 one */
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
    if (!J->avx512) /* at most PK_SB rows: panel by panel */
        pk2_run_kc(a, J->wp, i0, i1, p0, p1);
    else if (i1 - i0 <= PK_SB) /* few rows: panel by panel */
        pk_run_kc(a, J->wp, i0, i1, p0, p1);
    else
        pk_run(a, J->wp, i0, i1, p0, p1);
#endif
}

int sl_cpu_gemm_packed(sl_op_ctx *ctx, const sl_gemm_args *a, size_t parts)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    const int avx512 = sl_cpu_simd_avx512();
    /* AVX2: only products of at most SL_CPU_PACKED_AVX2_MAX_ROWS rows (= PK_SB: panel by
     * panel, k in L1-sized chunks); with more rows OpenBLAS's Zen kernel, which blocks k for its
     * packed panels, is as fast or faster (HT-Demucs's 1344 / 2688 tokens: 1-8 % slower end to
     * end on the packed kernel) */
    if (!(avx512 || (sl_cpu_simd_fma() && a->m <= SL_CPU_PACKED_AVX2_MAX_ROWS)) || a->batch != 1 || a->k == 0 || a->n == 0 || a->m == 0 || a->mul ||
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
    pk_job J = {a, wp, parts, avx512};
    sl_pool_for(ctx->pool, parts, pk_body, &J);
    return 1;
#else
    (void)ctx, (void)a, (void)parts, (void)pk_pack, (void)pk_floats;
    return 0;
#endif
}
