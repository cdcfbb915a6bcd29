/* Attention of one (sequence, head) pair with register-blocked AVX2 / FMA (or,
 * where sl_cpu_simd_avx512(), AVX-512) inner kernels, for the many short sequences of windowed, per-band and text attention,
 * where two library GEMM calls and a libm exp per score cost more than the
 * arithmetic. k is packed transposed ([dim_head][kp], kp = k_len rounded up to 16,
 * zero columns past k_len) so that 4 query rows x 16 keys of scores accumulate in
 * 8 registers; the exact softmax (max subtracted, the sum in double) uses the
 * polynomial exp of cpu_simd.c (about 1 ulp); p . v accumulates 4 rows x 16
 * output columns per pass over the keys. Under AVX-512, long sequences (more than 64 keys) with
 * heads 16..64 wide take a kernel with an online softmax over chunks of keys (attend_flash512).
 * Without AVX-512, pairs with heads a multiple of 8 up to 64 wide, short ones too, go to
 * cpu_attn_flash2.c's kernel instead (cpu_xf.c decides); the AVX2 kernel here takes the rest. */
#include <math.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_simd.h"

/* the window kernel (attend_win512) on or off: sl_cpu_attn_set_windows */
static int win_enabled = 1;

int sl_cpu_attn_set_windows(int enable)
{
    const int old = win_enabled;
    win_enabled = enable != 0;
    return old;
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>

#define ATT_AVX2 __attribute__((target("avx2,fma")))

/* S[r][j0..j0+16) = scale * sum_d q[r][d] kt[d][j], rows r < R (R <= 4). */
ATT_AVX2 static inline __attribute__((always_inline)) void qk_block(int R, const float *q, size_t D, const float *kt,
                                                                   size_t kp, size_t j0, float scale, float *S)
{
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t d = 0; d < D; d++) {
        const __m256 k0 = _mm256_loadu_ps(kt + d * kp + j0), k1 = _mm256_loadu_ps(kt + d * kp + j0 + 8);
        for (int r = 0; r < R; r++) {
            const __m256 qv = _mm256_broadcast_ss(q + (size_t)r * D + d);
            acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
        }
    }
    const __m256 s = _mm256_set1_ps(scale);
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(S + (size_t)r * kp + j0, _mm256_mul_ps(acc[r][0], s));
        _mm256_storeu_ps(S + (size_t)r * kp + j0 + 8, _mm256_mul_ps(acc[r][1], s));
    }
}

/* o[r][d0..d0+W) = sum_{j < kl} P[r][j] v[j][d0..], rows r < R (R <= 4), W = 16 or 8. */
ATT_AVX2 static inline __attribute__((always_inline)) void pv_block(int R, int W, const float *P, size_t kp,
                                                                   const float *v, size_t ldv, size_t kl, size_t d0,
                                                                   float *o, size_t ldo)
{
    __m256 acc[4][2];
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t j = 0; j < kl; j++) {
        const float *vj = v + j * ldv + d0;
        const __m256 v0 = _mm256_loadu_ps(vj), v1 = W == 16 ? _mm256_loadu_ps(vj + 8) : v0;
        for (int r = 0; r < R; r++) {
            const __m256 p = _mm256_broadcast_ss(P + (size_t)r * kp + j);
            acc[r][0] = _mm256_fmadd_ps(p, v0, acc[r][0]);
            if (W == 16)
                acc[r][1] = _mm256_fmadd_ps(p, v1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(o + (size_t)r * ldo + d0, acc[r][0]);
        if (W == 16)
            _mm256_storeu_ps(o + (size_t)r * ldo + d0 + 8, acc[r][1]);
    }
}

ATT_AVX2 static void pv_rows(int R, const float *P, size_t kp, const float *v, size_t ldv, size_t kl, size_t D,
                             float *o, size_t ldo)
{
    size_t d = 0;
    for (; d + 16 <= D; d += 16)
        R == 4 ? pv_block(4, 16, P, kp, v, ldv, kl, d, o, ldo) : pv_block(1, 16, P, kp, v, ldv, kl, d, o, ldo);
    for (; d + 8 <= D; d += 8)
        R == 4 ? pv_block(4, 8, P, kp, v, ldv, kl, d, o, ldo) : pv_block(1, 8, P, kp, v, ldv, kl, d, o, ldo);
    for (; d < D; d++) /* head dims not a multiple of 8 */
        for (int r = 0; r < R; r++) {
            float s = 0.0f;
            for (size_t j = 0; j < kl; j++)
                s += P[(size_t)r * kp + j] * v[j * ldv + d];
            o[(size_t)r * ldo + d] = s;
        }
}

/* Row i of S (kl scores, bias already added) -> probabilities, in place. */
ATT_AVX2 static void softmax_row(float *s, size_t kl)
{
    size_t j = 0;
    __m256 m8 = _mm256_set1_ps(-INFINITY);
    for (; j + 8 <= kl; j += 8)
        m8 = _mm256_max_ps(m8, _mm256_loadu_ps(s + j));
    float mx = -INFINITY;
    float lanes[8];
    _mm256_storeu_ps(lanes, m8);
    for (int l = 0; l < 8; l++)
        mx = lanes[l] > mx ? lanes[l] : mx;
    for (; j < kl; j++)
        mx = s[j] > mx ? s[j] : mx;
    sl_cpu_vec_exp_sub(s, mx, kl);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    for (j = 0; j + 8 <= kl; j += 8) {
        const __m256 e = _mm256_loadu_ps(s + j);
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double part[4];
    _mm256_storeu_pd(part, _mm256_add_pd(a0, a1));
    double sum = part[0] + part[1] + part[2] + part[3];
    for (; j < kl; j++)
        sum += s[j];
    sl_cpu_vec_scale(s, s, (float)(1.0 / sum), kl);
}

/* Rows r < rows of S (row stride kp): bias row r added (bias NULL: none), then softmax over kl. */
ATT_AVX2 static void softmax_rows(float *S, size_t kp, size_t rows, size_t kl, const float *bias, size_t ld_bias)
{
    for (size_t i = 0; i < rows; i++) {
        float *s = S + i * kp;
        if (bias)
            for (size_t j = 0; j < kl; j++)
                s[j] += bias[i * ld_bias + j];
        softmax_row(s, kl);
    }
}

ATT_AVX2 static void attend(const sl_cpu_attn_pair *p, float *ws)
{
    const size_t tq = p->tq, kl = p->kl, D = p->D, kp = (kl + 15) & ~(size_t)15;
    float *qr = ws, *kt = qr + tq * D, *S = kt + D * kp;
    sl_cpu_rotate_rows(p->q, p->ldq, tq, (int)D, p->rope, qr);
    /* k rotated row by row (through the first D floats of S, written later) into
     * the transposed, zero-padded kt */
    memset(kt, 0, D * kp * sizeof(float));
    for (size_t j = 0; j < kl; j++) {
        sl_cpu_rotate_rows(p->k + j * p->ldk, p->ldk, 1, (int)D, p->rope ? p->rope + j * D : NULL, S);
        for (size_t d = 0; d < D; d++)
            kt[d * kp + j] = S[d];
    }
    size_t i = 0;
    for (; i + 4 <= tq; i += 4)
        for (size_t j = 0; j < kp; j += 16)
            qk_block(4, qr + i * D, D, kt, kp, j, p->scale, S + i * kp);
    for (; i < tq; i++)
        for (size_t j = 0; j < kp; j += 16)
            qk_block(1, qr + i * D, D, kt, kp, j, p->scale, S + i * kp);
    softmax_rows(S, kp, tq, kl, p->bias, p->ld_bias);
    if (p->row_scale)
        for (i = 0; i < tq; i++)
            sl_cpu_vec_scale(S + i * kp, S + i * kp, p->row_scale[i], kl);
    for (i = 0; i + 4 <= tq; i += 4)
        pv_rows(4, S + i * kp, kp, p->v, p->ldv, kl, D, p->out + i * p->ldo, p->ldo);
    for (; i < tq; i++)
        pv_rows(1, S + i * kp, kp, p->v, p->ldv, kl, D, p->out + i * p->ldo, p->ldo);
}

/* ---- AVX-512 (runtime-dispatched, sl_cpu_simd_avx512): 8 query rows x 32 keys of
 * scores, query rows in blocks of QB (any sequence length), keys padded to 32; p . v by
 * 8 rows x 48 / 32 / 16 output columns (heads that wide) or 4 rows x 64 per pass; the
 * probabilities stay unnormalised (exp(s - max)) and each output row is scaled by 1 / its
 * sum (in double) as it is stored ---- */
#define ATT_512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

/* S[r][j0..j0+32) = scale * sum_d q[r][d] kt[d][j], rows r < R (R <= 8). */
ATT_512 static inline __attribute__((always_inline)) void qk_block512(int R, const float *q, size_t D,
                                                                     const float *kt, size_t kp, size_t j0,
                                                                     float scale, float *S)
{
    __m512 acc[8][2];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t d = 0; d < D; d++) {
        const __m512 k0 = _mm512_loadu_ps(kt + d * kp + j0), k1 = _mm512_loadu_ps(kt + d * kp + j0 + 16);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            const __m512 qv = _mm512_set1_ps(q[(size_t)r * D + d]);
            acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
        }
    }
    const __m512 s = _mm512_set1_ps(scale);
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        _mm512_storeu_ps(S + (size_t)r * kp + j0, _mm512_mul_ps(acc[r][0], s));
        _mm512_storeu_ps(S + (size_t)r * kp + j0 + 16, _mm512_mul_ps(acc[r][1], s));
    }
}

/* o[r][d0..d0+16*NW) = inv[r] sum_{j < kl} P[r][j] v[j][d0..], rows r < R (R <= 8), NW <= 4,
 * R * NW <= 24 accumulators (inv: the rows' 1 / sum of their unnormalised probabilities). */
ATT_512 static inline __attribute__((always_inline)) void pv_block512(int R, int NW, const float *P, size_t kp,
                                                                     const float *v, size_t ldv, size_t kl,
                                                                     size_t d0, const float *inv, float *o,
                                                                     size_t ldo)
{
    __m512 acc[8][4];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int w = 0; w < NW; w++)
            acc[r][w] = _mm512_setzero_ps();
    for (size_t j = 0; j < kl; j++) {
        const float *vj = v + j * ldv + d0;
        __m512 vv[4];
        _Pragma("GCC unroll 4") for (int w = 0; w < NW; w++)
            vv[w] = _mm512_loadu_ps(vj + 16 * w);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            const __m512 p = _mm512_set1_ps(P[(size_t)r * kp + j]);
            _Pragma("GCC unroll 4") for (int w = 0; w < NW; w++)
                acc[r][w] = _mm512_fmadd_ps(p, vv[w], acc[r][w]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        const __m512 sc = _mm512_set1_ps(inv[r]);
        _Pragma("GCC unroll 4") for (int w = 0; w < NW; w++)
            _mm512_storeu_ps(o + (size_t)r * ldo + d0 + 16 * w, _mm512_mul_ps(acc[r][w], sc));
    }
}

ATT_512 static void pv_rows512(int R, const float *P, size_t kp, const float *v, size_t ldv, size_t kl, size_t D,
                               const float *inv, float *o, size_t ldo)
{
    size_t d = 0;
    for (; d + 64 <= D; d += 64)
        R == 4 ? pv_block512(4, 4, P, kp, v, ldv, kl, d, inv, o, ldo)
               : pv_block512(1, 4, P, kp, v, ldv, kl, d, inv, o, ldo);
    for (; d + 16 <= D; d += 16)
        R == 4 ? pv_block512(4, 1, P, kp, v, ldv, kl, d, inv, o, ldo)
               : pv_block512(1, 1, P, kp, v, ldv, kl, d, inv, o, ldo);
    for (; d < D; d++) /* head dims not a multiple of 16 */
        for (int r = 0; r < R; r++) {
            float acc = 0.0f;
            for (size_t j = 0; j < kl; j++)
                acc += P[(size_t)r * kp + j] * v[j * ldv + d];
            o[(size_t)r * ldo + d] = acc * inv[r];
        }
}

/* 8 rows of p . v where D is a multiple of 16 below 64 (the 48-wide heads of HT-Demucs): one
 * pass over the keys for all columns; 0 when D is not such a width (the caller does 4 + 4). */
ATT_512 static int pv_rows512_8(const float *P, size_t kp, const float *v, size_t ldv, size_t kl, size_t D,
                                const float *inv, float *o, size_t ldo)
{
    switch (D) {
    case 48: pv_block512(8, 3, P, kp, v, ldv, kl, 0, inv, o, ldo); return 1;
    case 32: pv_block512(8, 2, P, kp, v, ldv, kl, 0, inv, o, ldo); return 1;
    case 16: pv_block512(8, 1, P, kp, v, ldv, kl, 0, inv, o, ldo); return 1;
    default: return 0;
    }
}

/* Rows r < rows of S (row stride kp): bias row r added (bias NULL: none), then the unnormalised
 * softmax exp(s - max) over kl in place, inv[r] = 1 / its sum (the sum in double). */
ATT_512 static void softmax_rows512(float *S, size_t kp, size_t rows, size_t kl, const float *bias, size_t ld_bias,
                                    float *inv)
{
    sl_cpu_softmax_rows_unnorm(S, kp, rows, kl, bias, ld_bias, inv);
}

/* dst[t][D] = rows of src (ld) rotated as sl_cpu_rotate_rows does, 16 lanes at a time where
 * D is a multiple of 16 (pairs (x0, x1) -> (x0 c - x1 s, x1 c + x0 s) by one fmaddsub). */
ATT_512 static void rotate_rows512(const float *src, size_t ld, size_t rows, size_t D, const float *rope, float *dst)
{
    if (!rope || D % 16) {
        sl_cpu_rotate_rows(src, ld, rows, (int)D, rope, dst);
        return;
    }
    for (size_t t = 0; t < rows; t++)
        for (size_t d = 0; d < D; d += 16) {
            const __m512 x = _mm512_loadu_ps(src + t * ld + d), cs = _mm512_loadu_ps(rope + t * D + d);
            const __m512 sw = _mm512_permute_ps(x, 0xB1); /* (x1, x0) */
            const __m512 c = _mm512_moveldup_ps(cs), sn = _mm512_movehdup_ps(cs);
            _mm512_storeu_ps(dst + t * D + d, _mm512_fmaddsub_ps(x, c, _mm512_mul_ps(sw, sn)));
        }
}

/* Query rows per block of scores in attend512: the scores of one block (QB x keys) stay in
 * cache whatever the sequence length, each row's softmax still exact over all its keys. */
#define QB 64

/* The S part of attend512's workspace (floats). */
static size_t ws_scores512(size_t tq, size_t kp, size_t D)
{
    const size_t s = (tq < QB ? tq : QB) * kp;
    return s > D ? s : D;
}

/* Rows far apart (a time axis over frames of many bands: each row its own page) are fetched
 * PF_ROWS rows ahead of their use in attend512's copies. */
#define PF_ROWS 8
static inline void prefetch_row(const float *row, size_t D)
{
    for (size_t d = 0; d < D; d += 16)
        _mm_prefetch((const char *)(row + d), _MM_HINT_T0);
}

/* The pair's kl value rows side by side into vc ([kl][D]), fetched PF_ROWS rows ahead. */
static inline void gather_v_rows(const sl_cpu_attn_pair *p, float *vc)
{
    const size_t kl = p->kl, D = p->D;
    for (size_t j = 0; j < kl; j++) {
        if (j + PF_ROWS < kl)
            prefetch_row(p->v + (j + PF_ROWS) * p->ldv, D);
        memcpy(vc + j * D, p->v + j * p->ldv, D * sizeof(float));
    }
}

/* inv[r] *= row_scale[i0 + r] for the nq rows of a block (row_scale NULL: nothing) */
static inline void scale_inv(float *inv, const float *row_scale, size_t i0, size_t nq)
{
    if (row_scale)
        for (size_t r = 0; r < nq; r++)
            inv[r] *= row_scale[i0 + r];
}

ATT_512 static void attend512(const sl_cpu_attn_pair *p, float *ws)
{
    const size_t tq = p->tq, kl = p->kl, D = p->D, kp = (kl + 31) & ~(size_t)31;
    float *qr = ws, *kt = qr + tq * D, *S = kt + D * kp, *vc = S + ws_scores512(tq, kp, D);
    for (size_t t = 0; t < tq; t++) {
        if (t + PF_ROWS < tq)
            prefetch_row(p->q + (t + PF_ROWS) * p->ldq, D);
        else if (t + PF_ROWS - tq < kl)
            prefetch_row(p->k + (t + PF_ROWS - tq) * p->ldk, D);
        rotate_rows512(p->q + t * p->ldq, p->ldq, 1, D, p->rope ? p->rope + t * D : NULL, qr + t * D);
    }
    memset(kt, 0, D * kp * sizeof(float));
    for (size_t j = 0; j < kl; j++) {
        if (j + PF_ROWS < kl)
            prefetch_row(p->k + (j + PF_ROWS) * p->ldk, D);
        else if (j + PF_ROWS - kl < kl)
            prefetch_row(p->v + (j + PF_ROWS - kl) * p->ldv, D);
        rotate_rows512(p->k + j * p->ldk, p->ldk, 1, D, p->rope ? p->rope + j * D : NULL, S);
        for (size_t d = 0; d < D; d++)
            kt[d * kp + j] = S[d];
    }
    /* v rows side by side: the p . v passes read them once per 4 query rows */
    gather_v_rows(p, vc);
    for (size_t i0 = 0; i0 < tq; i0 += QB) {
        const size_t nq = tq - i0 < QB ? tq - i0 : QB;
        const float *qb = qr + i0 * D;
        size_t i = 0;
        for (; i + 8 <= nq; i += 8)
            for (size_t j = 0; j < kp; j += 32)
                qk_block512(8, qb + i * D, D, kt, kp, j, p->scale, S + i * kp);
        for (; i < nq; i++)
            for (size_t j = 0; j < kp; j += 32)
                qk_block512(1, qb + i * D, D, kt, kp, j, p->scale, S + i * kp);
        float inv[QB];
        softmax_rows512(S, kp, nq, kl, p->bias ? p->bias + i0 * p->ld_bias : NULL, p->ld_bias, inv);
        scale_inv(inv, p->row_scale, i0, nq);
        float *ob = p->out + i0 * p->ldo;
        i = 0;
        while (i + 8 <= nq && pv_rows512_8(S + i * kp, kp, vc, D, kl, D, inv + i, ob + i * p->ldo, p->ldo))
            i += 8;
        for (; i + 4 <= nq; i += 4)
            pv_rows512(4, S + i * kp, kp, vc, D, kl, D, inv + i, ob + i * p->ldo, p->ldo);
        for (; i < nq; i++)
            pv_rows512(1, S + i * kp, kp, vc, D, kl, D, inv + i, ob + i * p->ldo, p->ldo);
    }
}

/* ---- long sequences (more than LONG_MIN keys, head widths 16..64 in multiples of 16): blocks of
 * FQ query rows against chunks of FC keys with an online softmax, so that a chunk's scores stay
 * in L1 and no pass over a whole row of scores is needed. q is scaled by scale * log2(e) as it
 * is copied, so each probability is one 2^x (a degree-6 polynomial on [-1/2, 1/2] with FMA and
 * a power-of-two scaling: about 1 ulp, a third of the operations of the exact softmax's exp and
 * its double sum); k is packed in blocks of 32 keys ([block][D][32], zero keys past k_len) so
 * the score kernel reads it in order. Per block of query rows and chunk of keys: the scores
 * (8 rows x 32 keys per pass, keys past k_len -inf) and their row maxima, the new maxima m,
 * the probabilities 2^(s - m) in place and their sums (16 float lanes per chunk, added in
 * double), the rows' outputs so far rescaled by 2^(m_old - m) and p . v of the chunk added.
 * The outputs are divided by the sums at the end. ---- */
#define FQ 8
#define FC 256
#define LONG_MIN 64

/* 2^x for x <= 0 (below -126: 2^-126, a contribution that no sum of float probabilities sees) */
ATT_512 static inline __m512 exp2_neg512(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-126.0f));
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(1.5345810970757157e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3399930903688073e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618489071726799e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550328642129898e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022646248340607e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931471824645996e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* Scores of FQ query rows q[FQ][D] (scaled) against the 32 keys of block kb ([D][32]) into
 * S[r][0..32) (row stride FC): bias rows brow[r] (or NULL) times log2(e) added, keys from `valid`
 * on -inf, the rows' running maxima mx[r] raised. */
ATT_512 static inline __attribute__((always_inline)) void flash_qk(const float *q, size_t D, const float *kb,
                                                                  const float *const *brow, size_t j0,
                                                                  size_t valid, float *S, __m512 *mx)
{
    __m512 acc[FQ][2];
    _Pragma("GCC unroll 8") for (int r = 0; r < FQ; r++)
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (size_t d = 0; d < D; d++) {
        const __m512 k0 = _mm512_loadu_ps(kb + d * 32), k1 = _mm512_loadu_ps(kb + d * 32 + 16);
        _Pragma("GCC unroll 8") for (int r = 0; r < FQ; r++) {
            const __m512 qv = _mm512_set1_ps(q[(size_t)r * D + d]);
            acc[r][0] = _mm512_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(qv, k1, acc[r][1]);
        }
    }
    const __mmask16 m0 = valid >= 16 ? 0xffff : (__mmask16)((1u << valid) - 1);
    const __mmask16 m1 = valid >= 32 ? 0xffff : valid <= 16 ? 0 : (__mmask16)((1u << (valid - 16)) - 1);
    const __m512 ninf = _mm512_set1_ps(-INFINITY), l2e = _mm512_set1_ps(1.44269504088896341f);
    _Pragma("GCC unroll 8") for (int r = 0; r < FQ; r++) {
        __m512 s0 = acc[r][0], s1 = acc[r][1];
        if (brow) {
            s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, brow[r] + j0), l2e, s0);
            s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, brow[r] + j0 + 16), l2e, s1);
        }
        if (valid < 32) {
            s0 = _mm512_mask_blend_ps(m0, ninf, s0);
            s1 = _mm512_mask_blend_ps(m1, ninf, s1);
        }
        _mm512_storeu_ps(S + (size_t)r * FC, s0);
        _mm512_storeu_ps(S + (size_t)r * FC + 16, s1);
        mx[r] = _mm512_max_ps(mx[r], _mm512_max_ps(s0, s1));
    }
}

/* o[r][0..16 NW) = o[r] * alpha[r] + sum_{j < n} P[r][j] v[j][..], rows r < R: R * NW <= 24. */
ATT_512 static inline __attribute__((always_inline)) void flash_pv(int R, int NW, const float *P, const float *v,
                                                                  size_t D, size_t n, const float *alpha,
                                                                  float *o)
{
    __m512 acc[8][4];
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
        const __m512 a = _mm512_set1_ps(alpha[r]);
        _Pragma("GCC unroll 4") for (int w = 0; w < NW; w++)
            acc[r][w] = _mm512_mul_ps(_mm512_loadu_ps(o + (size_t)r * 64 + 16 * w), a);
    }
    for (size_t j = 0; j < n; j++) {
        __m512 vv[4];
        _Pragma("GCC unroll 4") for (int w = 0; w < NW; w++)
            vv[w] = _mm512_loadu_ps(v + j * D + 16 * w);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            const __m512 p = _mm512_set1_ps(P[(size_t)r * FC + j]);
            _Pragma("GCC unroll 4") for (int w = 0; w < NW; w++)
                acc[r][w] = _mm512_fmadd_ps(p, vv[w], acc[r][w]);
        }
    }
    _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int w = 0; w < NW; w++)
            _mm512_storeu_ps(o + (size_t)r * 64 + 16 * w, acc[r][w]);
}

/* p . v of one chunk for the FQ rows, the head width D a multiple of 16 up to 64. */
ATT_512 __attribute__((noinline)) static void flash_pv_rows(const float *P, const float *v, size_t D, size_t n, const float *alpha, float *o)
{
    switch (D) {
    case 16: flash_pv(8, 1, P, v, D, n, alpha, o); break;
    case 32: flash_pv(8, 2, P, v, D, n, alpha, o); break;
    case 48: flash_pv(8, 3, P, v, D, n, alpha, o); break;
    default:
        flash_pv(4, 4, P, v, D, n, alpha, o);
        flash_pv(4, 4, P + 4 * FC, v, D, n, alpha + 4, o + 4 * 64);
        break;
    }
}

/* One chunk of keys [c0, c0 + FC) for the FQ query rows q (scaled) from row i0 (nq < FQ: the
 * rest zero rows): their scores, maxima m[r] and sums l[r] updated, outputs o[r][..] rescaled
 * and p . v added. */
ATT_512 static void flash_chunk(const sl_cpu_attn_pair *p, const float *q, const float *kt, const float *vc,
                                size_t c0, size_t i0, size_t nq, float *S, float *m, double *l, float *o)
{
    const size_t kl = p->kl, D = p->D, nc = kl - c0 < FC ? kl - c0 : FC, ncp = (nc + 31) & ~(size_t)31;
    const float *brow[FQ];
    for (size_t r = 0; r < FQ; r++) /* rows past tq (zero queries) read the last row's bias */
        brow[r] = p->bias ? p->bias + (i0 + (r < nq ? r : nq - 1)) * p->ld_bias : NULL;
    __m512 mx[FQ];
    for (int r = 0; r < FQ; r++)
        mx[r] = _mm512_set1_ps(-INFINITY);
    for (size_t j = 0; j < ncp; j += 32)
        flash_qk(q, D, kt + (c0 + j) * D, p->bias ? brow : NULL, c0 + j, nc - j, S + j, mx);
    float alpha[FQ];
    for (int r = 0; r < FQ; r++) {
        const float mo = m[r], mn = fmaxf(mo, _mm512_reduce_max_ps(mx[r]));
        /* a row whose keys so far are all -inf keeps 0 probabilities (no inf - inf) */
        const float sub = mn == -INFINITY ? 0.0f : mn;
        alpha[r] = mo == -INFINITY ? 0.0f : _mm512_cvtss_f32(exp2_neg512(_mm512_set1_ps(mo - sub)));
        m[r] = mn;
        const __m512 mv = _mm512_set1_ps(sub);
        __m512 sum = _mm512_setzero_ps();
        float *s = S + (size_t)r * FC;
        for (size_t j = 0; j < ncp; j += 16) {
            const __m512 e = exp2_neg512(_mm512_sub_ps(_mm512_loadu_ps(s + j), mv));
            _mm512_storeu_ps(s + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        l[r] = l[r] * alpha[r] + (double)_mm512_reduce_add_ps(sum);
    }
    flash_pv_rows(S, vc + c0 * D, D, nc, alpha, o);
}

/* The floats of attend_flash512's workspace. */
static size_t ws_flash512(size_t tq, size_t tk, size_t D)
{
    const size_t kp = (tk + 31) & ~(size_t)31;
    return ((tq + FQ - 1) / FQ * FQ) * D + kp * D + tk * D + FQ * FC + FQ * 64;
}

/* The pair when it fits (see above): 1 when done, 0 when not. */
ATT_512 static int attend_flash512(const sl_cpu_attn_pair *p, float *ws)
{
    const size_t tq = p->tq, kl = p->kl, D = p->D, kp = (kl + 31) & ~(size_t)31, tqp = (tq + FQ - 1) / FQ * FQ;
    if (kl <= LONG_MIN || D % 16 || D > 64)
        return 0;
    float *qr = ws, *kt = qr + tqp * D, *vc = kt + kp * D, *S = vc + kl * D, *ob = S + FQ * FC;
    const float qs = p->scale * 1.44269504088896341f;
    for (size_t t = 0; t < tq; t++) {
        if (t + PF_ROWS < tq)
            prefetch_row(p->q + (t + PF_ROWS) * p->ldq, D);
        else if (t + PF_ROWS - tq < kl)
            prefetch_row(p->k + (t + PF_ROWS - tq) * p->ldk, D);
        float *d = qr + t * D;
        rotate_rows512(p->q + t * p->ldq, p->ldq, 1, D, p->rope ? p->rope + t * D : NULL, d);
        for (size_t c = 0; c < D; c += 16)
            _mm512_storeu_ps(d + c, _mm512_mul_ps(_mm512_loadu_ps(d + c), _mm512_set1_ps(qs)));
    }
    memset(qr + tq * D, 0, (tqp - tq) * D * sizeof(float));
    memset(kt + (kp - 32) * D, 0, 32 * D * sizeof(float));
    for (size_t j = 0; j < kl; j++) {
        if (j + PF_ROWS < kl)
            prefetch_row(p->k + (j + PF_ROWS) * p->ldk, D);
        else if (j + PF_ROWS - kl < kl)
            prefetch_row(p->v + (j + PF_ROWS - kl) * p->ldv, D);
        rotate_rows512(p->k + j * p->ldk, p->ldk, 1, D, p->rope ? p->rope + j * D : NULL, S);
        float *blk = kt + (j / 32) * 32 * D + j % 32;
        for (size_t d = 0; d < D; d++)
            blk[d * 32] = S[d];
    }
    gather_v_rows(p, vc);
    for (size_t i0 = 0; i0 < tq; i0 += FQ) {
        const size_t nq = tq - i0 < FQ ? tq - i0 : FQ;
        float m[FQ];
        double l[FQ];
        for (size_t r = 0; r < FQ; r++)
            m[r] = -INFINITY, l[r] = 0.0;
        memset(ob, 0, FQ * 64 * sizeof(float));
        for (size_t c0 = 0; c0 < kl; c0 += FC)
            flash_chunk(p, qr + i0 * D, kt, vc, c0, i0, nq, S, m, l, ob);
        for (size_t r = 0; r < nq; r++) {
            float sc = (float)(1.0 / l[r]);
            scale_inv(&sc, p->row_scale, i0 + r, 1);
            const __m512 inv = _mm512_set1_ps(sc);
            for (size_t c = 0; c < D; c += 16)
                _mm512_storeu_ps(p->out + (i0 + r) * p->ldo + c, _mm512_mul_ps(_mm512_loadu_ps(ob + r * 64 + c), inv));
        }
    }
    return 1;
}

/* sl_cpu_softmax_rows_exp2's rows: the maximum, then 2^((s - max) log2 e) by exp2_neg512, the
 * sums in 16 float lanes over 256 scores at a time, added in double. */
ATT_512 static void softmax_rows_exp2_512(float *S, size_t ld, size_t rows, size_t n, float *inv)
{
    const __m512 l2e = _mm512_set1_ps(1.44269504088896341f);
    const __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);
    const size_t n16 = n & ~(size_t)15;
    for (size_t r = 0; r < rows; r++) {
        float *s = S + r * ld;
        __m512 m16 = _mm512_set1_ps(-INFINITY);
        for (size_t j = 0; j < n16; j += 16)
            m16 = _mm512_max_ps(m16, _mm512_loadu_ps(s + j));
        if (tail)
            m16 = _mm512_mask_max_ps(m16, tail, m16, _mm512_maskz_loadu_ps(tail, s + n16));
        const float mx = _mm512_reduce_max_ps(m16);
        const __m512 ml = _mm512_set1_ps(mx == -INFINITY ? 0.0f : mx * 1.44269504088896341f);
        double sum = 0.0;
        for (size_t j0 = 0; j0 < n16; j0 += 256) {
            const size_t j1 = n16 - j0 < 256 ? n16 : j0 + 256;
            __m512 acc = _mm512_setzero_ps();
            for (size_t j = j0; j < j1; j += 16) {
                const __m512 e = exp2_neg512(_mm512_fmsub_ps(_mm512_loadu_ps(s + j), l2e, ml));
                _mm512_storeu_ps(s + j, e);
                acc = _mm512_add_ps(acc, e);
            }
            sum += (double)_mm512_reduce_add_ps(acc);
        }
        if (tail) {
            const __m512 e = exp2_neg512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(tail, s + n16), l2e, ml));
            _mm512_mask_storeu_ps(s + n16, tail, e);
            sum += (double)_mm512_mask_reduce_add_ps(tail, e);
        }
        inv[r] = (float)(1.0 / sum);
    }
}

/* ---- windows (Swin's 8 x 8 = 64 tokens, 32-wide heads): up to WIN_KEYS keys, a multiple of
 * 16, head widths 16..64 (multiples of 16), no rotation. The same operations per score,
 * probability and output as attend512 (so the same bits), without its copies: k^T is formed
 * by gathers (16 keys of one column each) into kt[D][WIN_KEYS], q and v are read in place,
 * and each block of query rows goes through its scores, softmax and p . v while in L1. ---- */
#define WIN_KEYS 64

/* S[r][0..16 NK) = scale * sum_d q[r][d] kt[d][j], rows r < R (R <= 4): qk_block512's sums. */
ATT_512 static inline __attribute__((always_inline)) void win_qk(int R, int NK, const float *q, size_t ldq, size_t D,
                                                                 const float *kt, float scale, float *S)
{
    __m512 acc[4][WIN_KEYS / 16];
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int w = 0; w < NK; w++)
            acc[r][w] = _mm512_setzero_ps();
    for (size_t d = 0; d < D; d++) {
        __m512 kv[WIN_KEYS / 16];
        _Pragma("GCC unroll 4") for (int w = 0; w < NK; w++)
            kv[w] = _mm512_loadu_ps(kt + d * WIN_KEYS + 16 * w);
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {
            const __m512 qv = _mm512_set1_ps(q[(size_t)r * ldq + d]);
            _Pragma("GCC unroll 4") for (int w = 0; w < NK; w++)
                acc[r][w] = _mm512_fmadd_ps(qv, kv[w], acc[r][w]);
        }
    }
    const __m512 s = _mm512_set1_ps(scale);
    _Pragma("GCC unroll 4") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 4") for (int w = 0; w < NK; w++)
            _mm512_storeu_ps(S + (size_t)r * WIN_KEYS + 16 * w, _mm512_mul_ps(acc[r][w], s));
}

#define WIN_QK(R, NK) win_qk(R, NK, q, ldq, D, kt, scale, S)
ATT_512 static void win_qk_rows(size_t rows, int NK, const float *q, size_t ldq, size_t D, const float *kt,
                                float scale, float *S)
{
    for (; rows >= 4; rows -= 4, q += 4 * ldq, S += 4 * WIN_KEYS)
        switch (NK) {
        case 1: WIN_QK(4, 1); break;
        case 2: WIN_QK(4, 2); break;
        case 3: WIN_QK(4, 3); break;
        default: WIN_QK(4, 4); break;
        }
    for (; rows > 0; rows--, q += ldq, S += WIN_KEYS)
        switch (NK) {
        case 1: WIN_QK(1, 1); break;
        case 2: WIN_QK(1, 2); break;
        case 3: WIN_QK(1, 3); break;
        default: WIN_QK(1, 4); break;
        }
}
#undef WIN_QK

/* The pair when it fits the window kernel (see above): 1 when done, 0 when not. */
ATT_512 static int attend_win512(const sl_cpu_attn_pair *p, float *ws)
{
    const size_t tq = p->tq, kl = p->kl, D = p->D;
    if (!win_enabled || p->rope || kl % 16 || kl > WIN_KEYS || D % 16 || D > 64 ||
        p->ldk > (size_t)INT32_MAX / WIN_KEYS)
        return 0;
    const int NK = (int)(kl / 16);
    /* query rows per block: 8 for heads up to 48 wide (8 x 3 accumulators of p . v), else 4 */
    const size_t RB = D <= 48 ? 8 : 4;
    float *kt = ws, *S = kt + D * WIN_KEYS;
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)p->ldk));
    for (int w = 0; w < NK; w++)
        for (size_t d = 0; d < D; d++)
            _mm512_storeu_ps(kt + d * WIN_KEYS + 16 * (size_t)w,
                             _mm512_i32gather_ps(rows, p->k + 16 * (size_t)w * p->ldk + d, 4));
    for (size_t i0 = 0; i0 < tq; i0 += RB) {
        const size_t nq = tq - i0 < RB ? tq - i0 : RB;
        win_qk_rows(nq, NK, p->q + i0 * p->ldq, p->ldq, D, kt, p->scale, S);
        float inv[8];
        softmax_rows512(S, WIN_KEYS, nq, kl, p->bias ? p->bias + i0 * p->ld_bias : NULL, p->ld_bias, inv);
        scale_inv(inv, p->row_scale, i0, nq);
        float *ob = p->out + i0 * p->ldo;
        if (nq == 8 && pv_rows512_8(S, WIN_KEYS, p->v, p->ldv, kl, D, inv, ob, p->ldo))
            continue;
        size_t i = 0;
        for (; i + 4 <= nq; i += 4)
            pv_rows512(4, S + i * WIN_KEYS, WIN_KEYS, p->v, p->ldv, kl, D, inv + i, ob + i * p->ldo, p->ldo);
        for (; i < nq; i++)
            pv_rows512(1, S + i * WIN_KEYS, WIN_KEYS, p->v, p->ldv, kl, D, inv + i, ob + i * p->ldo, p->ldo);
    }
    return 1;
}
#endif

size_t sl_cpu_attn_small_ws(size_t tq, size_t tk, size_t D)
{
    const size_t kp = (tk + 31) & ~(size_t)31, s = tq * kp > D ? tq * kp : D;
    size_t n = tq * D + D * kp + s;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    /* AVX-512: blocks of query rows, and v's rows side by side (enough for either path,
     * whichever the switches select when the pair runs) */
    const size_t n512 = tq * D + D * kp + ws_scores512(tq, kp, D) + tk * D, nwin = (D + 8) * WIN_KEYS;
    n = n512 > n ? n512 : n;
    n = nwin > n ? nwin : n;
    n = ws_flash512(tq, tk, D) > n ? ws_flash512(tq, tk, D) : n;
#endif
    return n;
}

int sl_cpu_softmax_rows_exp2(float *S, size_t ld, size_t rows, size_t n, float *inv)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (!sl_cpu_simd_avx512())
        return 0;
    softmax_rows_exp2_512(S, ld, rows, n, inv);
    return 1;
#else
    (void)S, (void)ld, (void)rows, (void)n, (void)inv;
    return 0;
#endif
}

int sl_cpu_attn_any_length(void)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    return sl_cpu_simd_avx512();
#else
    return 0;
#endif
}

int sl_cpu_softmax_row(float *s, size_t kl)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (!sl_cpu_simd_fma())
        return 0;
    softmax_row(s, kl);
    return 1;
#else
    (void)s, (void)kl;
    return 0;
#endif
}

int sl_cpu_attn_small(const sl_cpu_attn_pair *p, float *ws)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (!sl_cpu_simd_fma())
        return 0;
    if (sl_cpu_simd_avx512()) {
        if (!attend_win512(p, ws) && !attend_flash512(p, ws))
            attend512(p, ws);
    }
    else
        attend(p, ws);
    return 1;
#else
    (void)p, (void)ws;
    return 0;
#endif
}
