/* Attention of one (sequence, head) pair of any length with AVX2 / FMA, for CPUs without
 * AVX-512 (sl_cpu_attn_long): the online softmax of cpu_attn.c's attend_flash512 in 8-wide
 * vectors. q is rotated (rope) and scaled by scale * log2(e) as it is copied, so each
 * probability is one 2^x (the same degree-6 polynomial on [-1/2, 1/2] with FMA and a
 * power-of-two scaling as the AVX-512 kernel's); k is packed in blocks of 16 keys
 * ([block][D][16], zero keys past k_len); up to one chunk of keys q and k are read straight
 * from their rows where there is no rotation and v in place, longer sequences' v rows copied
 * side by side (a short pair's copies cost as much as its arithmetic). Per block of FQ = 24 query
 * rows and chunk of FC = 128 keys: the scores (6 rows x 16 keys per pass: 12 accumulators,
 * each score a sum over d in order, keys past k_len -inf, the bias times log2(e) added by one
 * FMA) and their row maxima, the new maxima m (8 rows at a time), the probabilities 2^(s - m)
 * in place and their sums (8 float lanes per chunk, added in double), the rows' outputs so far
 * rescaled by 2^(m_old - m) and p . v of the chunk added (4 rows x 24 columns per pass for
 * widths a multiple of 24, else 6 rows x 16 and 6 x 8; the keys in order). The outputs are
 * divided by the sums (and times row_scale) at the end. Each pair is computed whole, whatever
 * the threads. */
#include <math.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_simd.h"

static int long_enabled = 1;

int sl_cpu_attn_set_long(int enable)
{
    const int old = long_enabled;
    long_enabled = enable != 0;
    return old;
}

#define FQ 24 /* a multiple of 8 (flash_chunk), of 6 and 4 (the passes) */
#define FC 128
#define KB 16

/* The pairs this kernel takes: head widths a multiple of 8 up to 64, any number of keys. */
static int takes(size_t kl, size_t D)
{
    return kl > 0 && D % 8 == 0 && D >= 8 && D <= 64;
}

size_t sl_cpu_attn_long_ws(size_t tq, size_t tk, size_t D)
{
    const size_t kp = (tk + KB - 1) / KB * KB, tqp = (tq + FQ - 1) / FQ * FQ;
    return tqp * D + kp * D + tk * D + FQ * FC + FQ * 64;
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>

#define ATT_AVX2 __attribute__((target("avx2,fma")))

/* 2^x for x <= 0 (below -126: 2^-126), as cpu_attn.c's exp2_neg512: p(f) 2^n, n = round(x). */
ATT_AVX2 static inline __m256 exp2_neg256(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-126.0f));
    const __m256 n = _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_sub_ps(x, n);
    __m256 p = _mm256_set1_ps(1.5345810970757157e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3399930903688073e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618489071726799e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550328642129898e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.4022646248340607e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931471824645996e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    /* 2^n (n in -126..0: a normal float) times p: exactly scalef's p 2^n */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Lane i: the maximum (the sum) of v[i]'s 8 lanes, i < 8: OP over a transpose of the 8 vectors. */
#define REDUCE_8X8(name, OP)                                                                              \
    ATT_AVX2 static inline __m256 name(const __m256 *v)                                                  \
    {                                                                                                     \
        const __m256 t0 = OP(_mm256_unpacklo_ps(v[0], v[1]), _mm256_unpackhi_ps(v[0], v[1])),             \
                     t1 = OP(_mm256_unpacklo_ps(v[2], v[3]), _mm256_unpackhi_ps(v[2], v[3])),             \
                     t2 = OP(_mm256_unpacklo_ps(v[4], v[5]), _mm256_unpackhi_ps(v[4], v[5])),             \
                     t3 = OP(_mm256_unpacklo_ps(v[6], v[7]), _mm256_unpackhi_ps(v[6], v[7]));             \
        const __m256 u0 = OP(_mm256_shuffle_ps(t0, t1, 0x44), _mm256_shuffle_ps(t0, t1, 0xee)),           \
                     u1 = OP(_mm256_shuffle_ps(t2, t3, 0x44), _mm256_shuffle_ps(t2, t3, 0xee));           \
        return OP(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));            \
    }
REDUCE_8X8(max8x8, _mm256_max_ps)
REDUCE_8X8(sum8x8, _mm256_add_ps)

/* Scores of QR query rows q[QR][D] (scaled) against the 16 keys of block kb ([D][16]) into
 * S[r][0..16) (row stride FC): bias rows brow[r] (or NULL) times log2(e) added, keys from
 * `valid` on -inf, the rows' running maxima mx[r] raised. */
#define QR 6
ATT_AVX2 static inline __attribute__((always_inline)) void flash_qk(const float *q, size_t D, const float *kb,
                                                                  const float *const *brow, size_t j0,
                                                                  size_t valid, float *S, __m256 *mx)
{
    __m256 acc[QR][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < QR; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t d = 0; d < D; d++) {
        const __m256 k0 = _mm256_loadu_ps(kb + d * KB), k1 = _mm256_loadu_ps(kb + d * KB + 8);
        _Pragma("GCC unroll 6") for (int r = 0; r < QR; r++) {
            const __m256 qv = _mm256_broadcast_ss(q + (size_t)r * D + d);
            acc[r][0] = _mm256_fmadd_ps(qv, k0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(qv, k1, acc[r][1]);
        }
    }
    const __m256 ninf = _mm256_set1_ps(-INFINITY), l2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 lane = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7), vf = _mm256_set1_ps((float)(valid < KB ? valid : KB));
    const __m256 m0 = _mm256_cmp_ps(lane, vf, _CMP_LT_OQ),
                 m1 = _mm256_cmp_ps(_mm256_add_ps(lane, _mm256_set1_ps(8.0f)), vf, _CMP_LT_OQ);
    _Pragma("GCC unroll 6") for (int r = 0; r < QR; r++) {
        __m256 s0 = acc[r][0], s1 = acc[r][1];
        if (brow) {
            __m256 b0, b1;
            if (valid >= KB) {
                b0 = _mm256_loadu_ps(brow[r] + j0), b1 = _mm256_loadu_ps(brow[r] + j0 + 8);
            }
            else {
                float t[KB] = {0};
                memcpy(t, brow[r] + j0, valid * sizeof(float));
                b0 = _mm256_loadu_ps(t), b1 = _mm256_loadu_ps(t + 8);
            }
            s0 = _mm256_fmadd_ps(b0, l2e, s0);
            s1 = _mm256_fmadd_ps(b1, l2e, s1);
        }
        if (valid < KB) {
            s0 = _mm256_blendv_ps(ninf, s0, m0);
            s1 = _mm256_blendv_ps(ninf, s1, m1);
        }
        _mm256_storeu_ps(S + (size_t)r * FC, s0);
        _mm256_storeu_ps(S + (size_t)r * FC + 8, s1);
        mx[r] = _mm256_max_ps(mx[r], _mm256_max_ps(s0, s1));
    }
}

/* o[r][0..8 NW) = o[r] * alpha[r] + sum_{j < n} P[r][j] v[j][..], R rows (R NW <= 12
 * accumulators; o row stride 64, P row stride FC, v row stride ldv). */
ATT_AVX2 static inline __attribute__((always_inline)) void flash_pv(int R, int NW, const float *P, const float *v,
                                                                  size_t ldv, size_t n, const float *alpha,
                                                                  float *o)
{
    __m256 acc[6][3];
    _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {
        const __m256 a = _mm256_set1_ps(alpha[r]);
        _Pragma("GCC unroll 3") for (int w = 0; w < NW; w++)
            acc[r][w] = _mm256_mul_ps(_mm256_loadu_ps(o + (size_t)r * 64 + 8 * w), a);
    }
    for (size_t j = 0; j < n; j++) {
        __m256 vv[3];
        _Pragma("GCC unroll 3") for (int w = 0; w < NW; w++)
            vv[w] = _mm256_loadu_ps(v + j * ldv + 8 * w);
        _Pragma("GCC unroll 6") for (int r = 0; r < R; r++) {
            const __m256 p = _mm256_broadcast_ss(P + (size_t)r * FC + j);
            _Pragma("GCC unroll 3") for (int w = 0; w < NW; w++)
                acc[r][w] = _mm256_fmadd_ps(p, vv[w], acc[r][w]);
        }
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 3") for (int w = 0; w < NW; w++)
            _mm256_storeu_ps(o + (size_t)r * 64 + 8 * w, acc[r][w]);
}

/* p . v of one chunk for the FQ rows: widths a multiple of 24 in passes of 4 rows x 24
 * columns, others 6 rows x 16 columns, then 6 x 8. */
ATT_AVX2 __attribute__((noinline)) static void flash_pv_rows(const float *P, const float *v, size_t ldv, size_t D,
                                                             size_t n, const float *alpha, float *o)
{
    size_t d = 0;
    if (D % 24 == 0)
        for (; d < D; d += 24)
            for (size_t r = 0; r < FQ; r += 4)
                flash_pv(4, 3, P + r * FC, v + d, ldv, n, alpha + r, o + r * 64 + d);
    for (; d + 16 <= D; d += 16)
        for (size_t r = 0; r < FQ; r += 6)
            flash_pv(6, 2, P + r * FC, v + d, ldv, n, alpha + r, o + r * 64 + d);
    if (d < D)
        for (size_t r = 0; r < FQ; r += 6)
            flash_pv(6, 1, P + r * FC, v + d, ldv, n, alpha + r, o + r * 64 + d);
}

/* One chunk of keys [c0, c0 + FC) for the FQ query rows q (scaled) from row i0 (nq < FQ: the
 * rest zero rows): their scores, maxima m[r] and sums l[r] updated, outputs o[r][..] rescaled
 * and p . v added. */
ATT_AVX2 static void flash_chunk(const sl_cpu_attn_pair *p, const float *q, const float *kt, const float *vc,
                                 size_t ldv, size_t c0, size_t i0, size_t nq, float *S, float *m, double *l,
                                 float *o)
{
    const size_t kl = p->kl, D = p->D, nc = kl - c0 < FC ? kl - c0 : FC, ncp = (nc + KB - 1) / KB * KB;
    const float *brow[FQ];
    for (size_t r = 0; r < FQ; r++) /* rows past tq (zero queries) read the last row's bias */
        brow[r] = p->bias ? p->bias + (i0 + (r < nq ? r : nq - 1)) * p->ld_bias : NULL;
    __m256 mx[FQ];
    for (int r = 0; r < FQ; r++)
        mx[r] = _mm256_set1_ps(-INFINITY);
    for (size_t j = 0; j < ncp; j += KB)
        for (size_t r = 0; r < FQ; r += QR)
            flash_qk(q + r * D, D, kt + (c0 + j) * D, p->bias ? brow + r : NULL, c0 + j, nc - j, S + r * FC + j,
                     mx + r);
    /* 8 rows at a time (FQ a multiple of 8): the new maxima, the rescaling of the old outputs
     * and sums, the probabilities; a row whose keys so far are all -inf keeps 0 probabilities
     * (no inf - inf) */
    float alpha[FQ], sub[FQ];
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int r0 = 0; r0 < FQ; r0 += 8) {
        const __m256 mo = _mm256_loadu_ps(m + r0), mn = _mm256_max_ps(mo, max8x8(mx + r0));
        const __m256 sv = _mm256_blendv_ps(mn, _mm256_setzero_ps(), _mm256_cmp_ps(mn, ninf, _CMP_EQ_OQ));
        const __m256 al = _mm256_andnot_ps(_mm256_cmp_ps(mo, ninf, _CMP_EQ_OQ), exp2_neg256(_mm256_sub_ps(mo, sv)));
        _mm256_storeu_ps(m + r0, mn);
        _mm256_storeu_ps(sub + r0, sv);
        _mm256_storeu_ps(alpha + r0, al);
        __m256 sums[8];
        for (int i = 0; i < 8; i++) {
            const __m256 mv = _mm256_set1_ps(sub[r0 + i]);
            __m256 sum = _mm256_setzero_ps();
            float *s = S + (size_t)(r0 + i) * FC;
            for (size_t j = 0; j < ncp; j += 8) {
                const __m256 e = exp2_neg256(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
                _mm256_storeu_ps(s + j, e);
                sum = _mm256_add_ps(sum, e);
            }
            sums[i] = sum;
        }
        const __m256 sm = sum8x8(sums);
        const __m256d lo = _mm256_fmadd_pd(_mm256_loadu_pd(l + r0), _mm256_cvtps_pd(_mm256_castps256_ps128(al)),
                                           _mm256_cvtps_pd(_mm256_castps256_ps128(sm)));
        const __m256d hi = _mm256_fmadd_pd(_mm256_loadu_pd(l + r0 + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(al, 1)),
                                           _mm256_cvtps_pd(_mm256_extractf128_ps(sm, 1)));
        _mm256_storeu_pd(l + r0, lo);
        _mm256_storeu_pd(l + r0 + 4, hi);
    }
    flash_pv_rows(S, vc + c0 * ldv, ldv, D, nc, alpha, o);
}

ATT_AVX2 static void attend_flash2(const sl_cpu_attn_pair *p, float *ws)
{
    const size_t tq = p->tq, kl = p->kl, D = p->D, kp = (kl + KB - 1) / KB * KB, tqp = (tq + FQ - 1) / FQ * FQ;
    float *qr = ws, *kt = qr + tqp * D, *vc = kt + kp * D, *S = vc + kl * D, *ob = S + FQ * FC;
    const __m256 qs = _mm256_set1_ps(p->scale * 1.44269504088896341f);
    /* v read in place for up to one chunk of keys (its rows stay in cache), and q and k read
     * from their rows without a copy first where there is no rotation; longer sequences copy v's
     * rows side by side, and q and k go through a copy (the form measured fastest for them) */
    const int v_copy = kl > FC, direct = !v_copy && !p->rope;
    for (size_t t = 0; t < tq; t++) {
        float *d = qr + t * D;
        const float *src = p->q + t * p->ldq;
        if (!direct) {
            sl_cpu_rotate_rows(src, p->ldq, 1, (int)D, p->rope ? p->rope + t * D : NULL, d);
            src = d;
        }
        for (size_t c = 0; c < D; c += 8)
            _mm256_storeu_ps(d + c, _mm256_mul_ps(_mm256_loadu_ps(src + c), qs));
    }
    memset(qr + tq * D, 0, (tqp - tq) * D * sizeof(float));
    memset(kt + (kp - KB) * D, 0, KB * D * sizeof(float));
    for (size_t j = 0; j < kl; j++) {
        const float *kr = p->k + j * p->ldk;
        if (!direct) {
            sl_cpu_rotate_rows(kr, p->ldk, 1, (int)D, p->rope ? p->rope + j * D : NULL, S);
            kr = S;
        }
        float *blk = kt + (j / KB) * KB * D + j % KB;
        for (size_t d = 0; d < D; d++)
            blk[d * KB] = kr[d];
        if (v_copy)
            memcpy(vc + j * D, p->v + j * p->ldv, D * sizeof(float));
    }
    const float *vr = v_copy ? vc : p->v;
    const size_t ldv = v_copy ? D : p->ldv;
    for (size_t i0 = 0; i0 < tq; i0 += FQ) {
        const size_t nq = tq - i0 < FQ ? tq - i0 : FQ;
        float m[FQ];
        double l[FQ];
        for (size_t r = 0; r < FQ; r++)
            m[r] = -INFINITY, l[r] = 0.0;
        memset(ob, 0, FQ * 64 * sizeof(float));
        for (size_t c0 = 0; c0 < kl; c0 += FC)
            flash_chunk(p, qr + i0 * D, kt, vr, ldv, c0, i0, nq, S, m, l, ob);
        for (size_t r = 0; r < nq; r++) {
            float sc = (float)(1.0 / l[r]);
            if (p->row_scale)
                sc *= p->row_scale[i0 + r];
            const __m256 inv = _mm256_set1_ps(sc);
            for (size_t c = 0; c < D; c += 8)
                _mm256_storeu_ps(p->out + (i0 + r) * p->ldo + c, _mm256_mul_ps(_mm256_loadu_ps(ob + r * 64 + c), inv));
        }
    }
}
#endif

int sl_cpu_attn_long(const sl_cpu_attn_pair *p, float *ws)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (!long_enabled || !sl_cpu_simd_fma() || sl_cpu_simd_avx512() || !takes(p->kl, p->D))
        return 0;
    attend_flash2(p, ws);
    return 1;
#else
    (void)p, (void)ws;
    return 0;
#endif
}
