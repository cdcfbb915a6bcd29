/* Linear layers on the AMX tile unit (Intel Sapphire Rapids and later), the
 * CPU's runtime.precision modes tf32 and bf16 (kernels/ops.h sl_precision).
 *
 * tf32: three bf16 products per fp32 product. Each operand is split into a
 * bf16 "high" part (round to nearest even) and the bf16 rounding of the
 * remainder, a = ah + al, and a.b is computed as ah.bh + ah.bl + al.bh (the
 * al.bl term, about 2^-16 of the product, is dropped) with fp32 accumulation in
 * the tiles. The three products are one tile GEMM over a tripled k axis: rows
 * of x become [xh | xh | xl], rows of w become [wl | wh | wh]. A product's
 * relative error is about 2^-16 (TF32 rounding: 2^-11; fp32 FMA: 2^-24) and a
 * dot product's error stays a few times that of the fp32 GEMM.
 *
 * bf16: one bf16 product per product, xh.wh (inputs rounded to bfloat16, fp32
 * accumulation): a relative error of about 2^-8 per product, as a GPU's bf16
 * tensor cores.
 *
 * bf16x6: fp32's accuracy. Each operand is split into three bf16 parts, a0 the
 * rounding of a, a1 that of a - a0, a2 that of a - a0 - a1, which sum to a exactly
 * (3 x 8 significand bits hold fp32's 24), and a.b is computed as the six largest
 * of the nine part products, a0b2 + a0b1 + a1b1 + a1b0 + a2b0 (all of them over the
 * whole k first) then a0b0 on top of that sum: the dropped a1b2, a2b1, a2b2 are
 * under 2^-24 of the product, and the roundings at the size of the result are those
 * of the k products a0b0 (exact in fp32) alone, so a dot product's error is about
 * that of an fp32 sum (tests/unit/test_bf16x6.c measures it against the fp32
 * kernels'). The tiles take no subnormal input or output (they are flushed to
 * zero): a row of x or a column of w whose largest magnitude lies outside
 * [2^-32, 2^32) is first scaled by the power of two that brings it into [1, 2)
 * (exact; the results are scaled back once), so rows and columns of tiny or huge
 * values (up to FLT_MAX, whose bf16 rounding overflows) keep their accuracy; within
 * a row only parts far below its largest value (under 2^-126 absolute, at most
 * 2^-94 of it) are lost. A row or column that holds an infinity or a NaN
 * gets its outputs from an fp32 sum instead (the tiles would multiply an infinite
 * part by a zero one), so non-finite results are fp32's. Where an fp32 sum would
 * overflow midway but not at its end, bf16x6 (scaled) gives the finite result.
 *
 * Layout and blocking. w is packed into panels of 16 columns (an even number of
 * them, zero columns past n), each panel its high parts [kp/2][16][2] bf16 (the
 * tiles' pair layout, kp = k rounded up to 32) then, for tf32, its low parts (for
 * bf16x6 its three parts, then the columns' scale exponents and flags):
 * once per context for weights declared fixed (sl_op_mark_fixed), else once per
 * call, in either case shared by the threads. A thread packs its rows of x
 * MB at a time (MB chosen so that a block stays in L2 beside a panel pair),
 * 16-row groups of high then low parts [16][kp]; for every panel pair it runs
 * every 32-row part of the block: 32 x 32 outputs accumulate in four tiles
 * (tmm0-3) from two x tiles (tmm4-5) and two w tiles (tmm6-7) per 32 k values,
 * in tf32 the high-low, high-high and low-high products of those 32 k values in
 * that order. The epilogue (bias, activation, multiplier, residual) is applied
 * to each 32 x 32 block as it leaves the tiles, from an L1 buffer into y. Every output element sees the
 * same operations in the same order whatever the split of m between threads or
 * the blocking. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "cpu_simd.h"

#if defined(SL_CPU_HAVE_AVX2_PATHS) && defined(__linux__) && __GNUC__ >= 11
#include <immintrin.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX_TGT __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512bf16")))

static int amx_usable = 0;
static pthread_once_t amx_once = PTHREAD_ONCE_INIT;

static void amx_probe(void)
{
    const char *e = getenv("SL_CPU_AMX");
    if (e && !strcmp(e, "0"))
        return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("amx-bf16") || !__builtin_cpu_supports("amx-tile") ||
        !__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl"))
        return;
    /* Linux: a process asks once for the tile state (ARCH_REQ_XCOMP_PERM, XTILEDATA) */
    amx_usable = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

int sl_cpu_amx(void)
{
    pthread_once(&amx_once, amx_probe);
    return amx_usable && sl_cpu_simd_avx512();
}

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} amx_cfg;

static size_t round32(size_t k) { return (k + 31) & ~(size_t)31; }

/* v -> `parts` bf16 values: the bf16 rounding (to nearest even) of each value, then of each
 * remainder in turn; three parts (bf16x6) sum to v exactly. */
AMX_TGT static inline void split_v(__m512 v, int parts, __m256i *out)
{
    for (int s = 0; s < parts; s++) {
        const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
        out[s] = h;
        if (s + 1 < parts)
            v = _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
}

static inline __mmask16 mask16(size_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* 16 floats (n < 16: the first n, zeros after), times 2^e (bf16x6; e = 0: as they are) -> split_v. */
AMX_TGT static inline void split16(const float *x, size_t n, int parts, int e, __m256i *out)
{
    __m512 v = _mm512_maskz_loadu_ps(mask16(n), x);
    if (e)
        v = _mm512_scalef_ps(v, _mm512_set1_ps((float)e));
    split_v(v, parts, out);
}

/* bf16x6's scale exponent of a row of x or a column of w whose largest finite magnitude has the
 * bits m: 0 (no scaling) when it lies in [2^-32, 2^32) or is 0, where the part products of the
 * row's largest values stay far from the tiles' flush to zero (2^-126) and from overflow; else e
 * with m's value times 2^e in [1, 2). */
static int scale_of(uint32_t m)
{
    if (!m || (m >= (127u - 32) << 23 && m < (127u + 32) << 23))
        return 0;
    return m >= 0x00800000u ? 127 - (int)(m >> 23) : 149 - (31 - __builtin_clz(m));
}

/* bf16x6's scale of k floats (scale_of their largest finite magnitude); *bad = 1 when one of them
 * is an infinity or a NaN. */
AMX_TGT static int scale_exp(const float *s, size_t k, int *bad)
{
    const __m512i inf = _mm512_set1_epi32(0x7f800000), absm = _mm512_set1_epi32(0x7fffffff);
    __m512i mx = _mm512_setzero_si512();
    __mmask16 nf = 0;
    for (size_t j = 0; j < k; j += 16) {
        const __mmask16 mk = mask16(k - j);
        const __m512i a = _mm512_and_si512(_mm512_maskz_loadu_epi32(mk, s + j), absm);
        const __mmask16 fin = _mm512_cmplt_epu32_mask(a, inf);
        nf |= (__mmask16)(~fin & mk);
        mx = _mm512_mask_max_epu32(mx, fin, mx, a);
    }
    *bad = nf != 0;
    return scale_of(_mm512_reduce_max_epu32(mx));
}

/* bf16 parts per operand: 1 (bf16), 2 (tf32), 3 (bf16x6). */
static int parts_of(int terms) { return terms == 6 ? 3 : terms == 3 ? 2 : 1; }

/* uint16 values of one packed panel of w: its parts, then (bf16x6) its columns' exponents and flags
 * (int32 [16] each). */
static size_t panel_size(int tw, size_t kp) { return (size_t)tw * kp * 16 + (tw == 3 ? 64 : 0); }

size_t sl_cpu_amx_wsize(int terms, size_t n, size_t k)
{
    return (n + 31) / 32 * 2 * panel_size(parts_of(terms), round32(k));
}

/* 16 vectors of 16 32-bit lanes transposed in place: r[i] lane j <-> r[j] lane i. */
AMX_TGT static void transpose16(__m512i r[16])
{
    __m512i t[16], u[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) { /* u[i + e]: lane element e of rows i .. i + 3 */
        u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int e = 0; e < 4; e++) {
        const __m512i s0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x44), s1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xEE);
        const __m512i s2 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x44);
        const __m512i s3 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xEE);
        r[e] = _mm512_shuffle_i32x4(s0, s2, 0x88);
        r[4 + e] = _mm512_shuffle_i32x4(s0, s2, 0xDD);
        r[8 + e] = _mm512_shuffle_i32x4(s1, s3, 0x88);
        r[12 + e] = _mm512_shuffle_i32x4(s1, s3, 0xDD);
    }
}

/* Panel p of w: its 16 columns (zeros past n) -> dst, its parts one after the other (bf16x6: each
 * column scaled by its exponent first, the exponents and flags after the parts); 32 k values of
 * the 16 columns at a time, split into bf16 and transposed into the pair layout. */
AMX_TGT static void pack_panel(int tw, size_t p, size_t n, size_t k, const float *w, size_t ldw, uint16_t *dst)
{
    const size_t kp = round32(k);
    int32_t ex[16] = {0}, bad[16] = {0};
    if (tw == 3)
        for (size_t c = 0; c < 16 && 16 * p + c < n; c++)
            ex[c] = scale_exp(w + (16 * p + c) * ldw, k, &bad[c]);
    for (size_t j = 0; j < kp; j += 32) {
        __m512i v[3][16];
        for (size_t c = 0; c < 16; c++) {
            if (16 * p + c >= n || j >= k) {
                v[0][c] = v[1][c] = v[2][c] = _mm512_setzero_si512();
                continue;
            }
            const float *s = w + (16 * p + c) * ldw + j;
            __m256i h0[3], h1[3];
            split16(s, k - j, tw, ex[c], h0);
            split16(s + 16, k - j > 16 ? k - j - 16 : 0, tw, ex[c], h1);
            for (int t = 0; t < tw; t++)
                v[t][c] = _mm512_inserti64x4(_mm512_castsi256_si512(h0[t]), h1[t], 1);
        }
        for (int t = 0; t < tw; t++) {
            transpose16(v[t]); /* v[t][r]: k pair j / 2 + r of the 16 columns */
            for (int r = 0; r < 16; r++)
                _mm512_storeu_si512(dst + (size_t)t * kp * 16 + (j / 2 + (size_t)r) * 32, v[t][r]);
        }
    }
    if (tw == 3) {
        memcpy(dst + 3 * kp * 16, ex, sizeof ex);
        memcpy(dst + 3 * kp * 16 + 32, bad, sizeof bad);
    }
}

void sl_cpu_amx_pack_w(int terms, size_t n, size_t k, const float *w, size_t ldw, size_t p0, size_t p1,
                       uint16_t *dst)
{
    const int tw = parts_of(terms);
    const size_t per = panel_size(tw, round32(k));
    for (size_t p = p0; p < p1; p++)
        pack_panel(tw, p, n, k, w, ldw, dst + p * per);
}

/* Rows [0, rows) of x (zeros up to mb) -> dst: 16-row groups, each its parts [16][kp] one after
 * the other; bf16x6 scales each row by its exponent first (rex[r], and rbad[r] = 1 for a row
 * holding an infinity or a NaN). */
AMX_TGT static void pack_x(int tw, const float *x, size_t ldx, size_t rows, size_t mb, size_t k, size_t kp,
                           uint16_t *dst, int32_t *rex, int32_t *rbad)
{
    const __m512i absm = _mm512_set1_epi32(0x7fffffff);
    for (size_t r = 0; r < mb; r++) {
        uint16_t *d = dst + ((r / 16) * (size_t)tw * 16 + r % 16) * kp;
        if (r >= rows) {
            for (int t = 0; t < tw; t++)
                memset(d + (size_t)t * 16 * kp, 0, kp * sizeof *d);
            if (tw == 3)
                rex[r] = rbad[r] = 0;
            continue;
        }
        const float *s = x + r * ldx;
        /* split as they are, bf16x6 taking the largest magnitude on the way (the row is split
         * again, scaled, in the rare case scale_of asks for it) */
        __m512i mx = _mm512_setzero_si512();
        for (size_t j = 0; j < kp; j += 16) {
            const __m512 v = _mm512_maskz_loadu_ps(mask16(j < k ? k - j : 0), s + j);
            __m256i h[3];
            if (tw == 3)
                mx = _mm512_max_epu32(mx, _mm512_and_si512(_mm512_castps_si512(v), absm));
            split_v(v, tw, h);
            for (int t = 0; t < tw; t++)
                _mm256_storeu_si256((__m256i *)(d + (size_t)t * 16 * kp + j), h[t]);
        }
        if (tw != 3)
            continue;
        const uint32_t m = _mm512_reduce_max_epu32(mx);
        const int bad = m >= 0x7f800000u, e = bad ? 0 : scale_of(m);
        rex[r] = e;
        rbad[r] = bad;
        for (size_t j = 0; e && j < kp; j += 16) {
            __m256i h[3];
            split16(s + j, j < k ? k - j : 0, 3, e, h);
            for (int t = 0; t < 3; t++)
                _mm256_storeu_si256((__m256i *)(d + (size_t)t * 16 * kp + j), h[t]);
        }
    }
}

/* c[32][32] (row stride ldc) = rows of groups xa, xb times panels w0, w1 (the tile configuration
 * loaded). Tiles are not renamed: each operand tile is reloaded as soon as its last product has
 * been issued, and tf32 takes x high . w low first, then x high . w high, then x low . w high with
 * the w high tiles kept, 8 tile loads per 12 products. */
AMX_TGT static void block32(int tw, const uint16_t *xa, const uint16_t *xb, const uint16_t *w0, const uint16_t *w1,
                            size_t kp, float *c, size_t ldc)
{
    const long sx = (long)(kp * 2);
    const size_t lo = 16 * kp; /* low parts after the high ones, in x groups and w panels alike */
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    if (tw == 3) {
        /* bf16x6: first, over the whole k, the five smaller products (x0.w2, x0.w1, x1.w1, x1.w0,
         * x2.w0: 12 tile loads per 20 products), then x0.w0 on top of their sum, so that the
         * roundings at the size of the result are those of the k products x0.w0 alone */
        const size_t xs = 16 * kp, ws = kp * 16; /* a part's stride in x groups and w panels */
        for (size_t j = 0; j < kp; j += 32) {
            _tile_loadd(4, xa + j, sx);
            _tile_loadd(6, w0 + 2 * ws + j * 16, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(5, xb + j, sx);
            _tile_dpbf16ps(2, 5, 6);
            _tile_loadd(7, w1 + 2 * ws + j * 16, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(6, w0 + ws + j * 16, 64);
            _tile_dpbf16ps(3, 5, 7);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(2, 5, 6);
            _tile_loadd(7, w1 + ws + j * 16, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(4, xa + xs + j, sx);
            _tile_dpbf16ps(3, 5, 7);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(5, xb + xs + j, sx);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_loadd(6, w0 + j * 16, 64);
            _tile_dpbf16ps(3, 5, 7);
            _tile_dpbf16ps(0, 4, 6);
            _tile_dpbf16ps(2, 5, 6);
            _tile_loadd(7, w1 + j * 16, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_loadd(4, xa + 2 * xs + j, sx);
            _tile_dpbf16ps(3, 5, 7);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(5, xb + 2 * xs + j, sx);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(2, 5, 6);
            _tile_dpbf16ps(3, 5, 7);
        }
    }
    for (size_t j = 0; j < kp; j += 32) {
        if (tw != 2) {
            _tile_loadd(4, xa + j, sx);
            _tile_loadd(6, w0 + j * 16, 64);
            _tile_dpbf16ps(0, 4, 6);
            _tile_loadd(5, xb + j, sx);
            _tile_dpbf16ps(2, 5, 6);
            _tile_loadd(7, w1 + j * 16, 64);
            _tile_dpbf16ps(1, 4, 7);
            _tile_dpbf16ps(3, 5, 7);
            continue;
        }
        _tile_loadd(4, xa + j, sx);
        _tile_loadd(6, w0 + lo + j * 16, 64);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(5, xb + j, sx);
        _tile_dpbf16ps(2, 5, 6);
        _tile_loadd(7, w1 + lo + j * 16, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(6, w0 + j * 16, 64);
        _tile_dpbf16ps(3, 5, 7);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(2, 5, 6);
        _tile_loadd(7, w1 + j * 16, 64);
        _tile_dpbf16ps(1, 4, 7);
        _tile_loadd(4, xa + lo + j, sx);
        _tile_dpbf16ps(3, 5, 7);
        _tile_dpbf16ps(0, 4, 6);
        _tile_loadd(5, xb + lo + j, sx);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    const long sc = (long)(ldc * 4);
    _tile_stored(0, c, sc);
    _tile_stored(1, c + 16, sc);
    _tile_stored(2, c + 16 * ldc, sc);
    _tile_stored(3, c + 16 * ldc + 16, sc);
}

/* bf16x6: the fp32 sum of row xr (k values) times column c of the packed panel pw, its values
 * rebuilt from their parts (exact) - the products of a row or a column that holds an infinity
 * or a NaN, which the tiles do not compute as fp32 does (a zero part times an infinity). */
static float exact_dot(const float *xr, size_t k, const uint16_t *pw, size_t kp, size_t c, int e)
{
    float s = 0.0f;
    for (size_t kk = 0; kk < k; kk++) {
        const size_t o = kk / 2 * 32 + c * 2 + kk % 2;
        float b[3];
        for (int t = 0; t < 3; t++) {
            const uint32_t u = (uint32_t)pw[(size_t)t * kp * 16 + o] << 16;
            memcpy(&b[t], &u, sizeof u);
        }
        s += xr[kk] * (isfinite(b[0]) ? ldexpf(b[0] + b[1] + b[2], -e) : b[0]);
    }
    return s;
}

/* bf16x6: the 32 x 32 block c (row r scaled by 2^rex[r], the columns of panels w0, w1 by their
 * exponents) back to the products' scale, then the elements of rows and columns that hold an
 * infinity or a NaN (rbad, the panels' flags) recomputed by exact_dot. */
AMX_TGT static void unscale(float *c, size_t nr, size_t nc, const int32_t *rex, const int32_t *rbad,
                            const uint16_t *w0, const uint16_t *w1, size_t kp, size_t k, const float *x, size_t ldx)
{
    const int32_t *cw[2] = {(const int32_t *)(w0 + 3 * kp * 16), (const int32_t *)(w1 + 3 * kp * 16)};
    const __m512i e0 = _mm512_loadu_si512(cw[0]), e1 = _mm512_loadu_si512(cw[1]);
    const __m512i f0 = _mm512_loadu_si512(cw[0] + 16), f1 = _mm512_loadu_si512(cw[1] + 16);
    const uint32_t cbad = (uint32_t)_mm512_test_epi32_mask(f0, f0) | (uint32_t)_mm512_test_epi32_mask(f1, f1) << 16;
    int any = cbad != 0;
    for (size_t r = 0; r < nr; r++) {
        const __m512i er = _mm512_set1_epi32(-rex[r]);
        float *cr = c + r * 32;
        _mm512_storeu_ps(cr, _mm512_scalef_ps(_mm512_loadu_ps(cr), _mm512_cvtepi32_ps(_mm512_sub_epi32(er, e0))));
        _mm512_storeu_ps(cr + 16,
                         _mm512_scalef_ps(_mm512_loadu_ps(cr + 16), _mm512_cvtepi32_ps(_mm512_sub_epi32(er, e1))));
        any |= rbad[r];
    }
    if (!any)
        return;
    for (size_t r = 0; r < nr; r++)
        for (size_t j = 0; j < nc; j++)
            if (rbad[r] || (cbad >> j & 1))
                c[r * 32 + j] = exact_dot(x + r * ldx, k, j < 16 ? w0 : w1, kp, j % 16, cw[j / 16][j % 16]);
}

/* Whether one of the 32 int32 at a or the 32 at b is not 0 (bf16x6: scale exponents and flags). */
AMX_TGT static int any_set(const void *a, const void *b)
{
    const __m512i o = _mm512_or_si512(_mm512_or_si512(_mm512_loadu_si512(a), _mm512_loadu_si512((const char *)a + 64)),
                                      _mm512_or_si512(_mm512_loadu_si512(b), _mm512_loadu_si512((const char *)b + 64)));
    return _mm512_test_epi32_mask(o, o) != 0;
}

/* A thread's block of packed x, kept across calls (freed when the thread ends). */
typedef struct {
    uint16_t *p;
    size_t cap;
} xbuf;
static pthread_key_t xbuf_key;
static pthread_once_t xbuf_once = PTHREAD_ONCE_INIT;
static void xbuf_free(void *v)
{
    xbuf *b = v;
    free(b->p);
    free(b);
}
static void xbuf_init(void) { (void)pthread_key_create(&xbuf_key, xbuf_free); }
static uint16_t *xbuf_get(size_t n)
{
    pthread_once(&xbuf_once, xbuf_init);
    xbuf *b = pthread_getspecific(xbuf_key);
    if (!b) {
        if (!(b = calloc(1, sizeof *b)) || pthread_setspecific(xbuf_key, b)) {
            free(b);
            return NULL;
        }
    }
    if (b->cap < n) {
        free(b->p);
        b->cap = 0;
        if (!(b->p = aligned_alloc(64, (n * sizeof(uint16_t) + 63) & ~(size_t)63)))
            return NULL;
        b->cap = n;
    }
    return b->p;
}

/* Bytes of packed x per block: with a panel pair, within a 2 MiB L2. */
#define XBLOCK_BYTES ((size_t)768 << 10)

AMX_TGT static int amx_gemm(int terms, size_t i0, size_t i1, size_t q0, size_t q1, size_t n, size_t k,
                            const float *x, size_t ldx, const uint16_t *wp, const sl_cpu_amx_epi *e)
{
    const int tw = parts_of(terms);
    const size_t kp = round32(k), row_bytes = (size_t)tw * kp * 2;
    /* without an epilogue the products go straight to y; else each 32 x 32 block to c and the
     * epilogue (bias, activation, multiplier, residual) from there into y while c is in L1 */
    const int plain = !e->add && !e->bias && !e->mul && e->act == SL_ACT_NONE;
    size_t mb = XBLOCK_BYTES / row_bytes / 32 * 32;
    mb = mb < 32 ? 32 : mb > 512 ? 512 : mb;
    if (mb > ((i1 - i0 + 31) & ~(size_t)31))
        mb = (i1 - i0 + 31) & ~(size_t)31;
    uint16_t *xp = xbuf_get(mb * (size_t)tw * kp + 4 * mb);
    if (!xp)
        return 0;
    int32_t *rex = (int32_t *)(xp + mb * (size_t)tw * kp), *rbad = rex + mb; /* bf16x6's row scales */
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    const size_t panel = panel_size(tw, kp), group = (size_t)tw * 16 * kp;
    float c[32 * 32];
    for (size_t b0 = i0; b0 < i1; b0 += mb) {
        const size_t rows = i1 - b0 < mb ? i1 - b0 : mb, used = (rows + 31) & ~(size_t)31;
        pack_x(tw, x + b0 * ldx, ldx, rows, used, k, kp, xp, rex, rbad);
        for (size_t q = q0; q < q1; q++) {
            const uint16_t *w0 = wp + 2 * q * panel, *w1 = w0 + panel;
            const size_t j0 = 32 * q, nc = n - j0 < 32 ? n - j0 : 32;
            const int wsc = tw == 3 && any_set(w0 + 3 * kp * 16, w1 + 3 * kp * 16); /* columns scaled or flagged */
            for (size_t r0 = 0; r0 < used; r0 += 32) {
                const size_t nr = rows - r0 < 32 ? rows - r0 : 32, i = b0 + r0;
                const uint16_t *xa = xp + (r0 / 16) * group;
                const int sc = tw == 3 && (wsc || any_set(rex + r0, rbad + r0)); /* bf16x6: unscale needed */
                if (plain && nr == 32 && nc == 32 && !sc) {
                    block32(tw, xa, xa + group, w0, w1, kp, e->y + i * e->ldy + j0, e->ldy);
                    continue;
                }
                if (e->add) /* the residual's rows, fetched while the tiles compute */
                    for (size_t r = 0; r < nr; r++) {
                        const char *ar = (const char *)(e->add + (i + r) * e->ldadd + j0);
                        _mm_prefetch(ar, _MM_HINT_T0);
                        _mm_prefetch(ar + 64, _MM_HINT_T0);
                    }
                block32(tw, xa, xa + group, w0, w1, kp, c, 32);
                if (sc)
                    unscale(c, nr, nc, rex + r0, rbad + r0, w0, w1, kp, k, x + i * ldx, ldx);
                if (plain)
                    for (size_t r = 0; r < nr; r++)
                        memcpy(e->y + (i + r) * e->ldy + j0, c + r * 32, nc * sizeof(float));
                else
                    sl_cpu_epilogue_rows(e->act, nr, nc, c, 32, e->bias ? e->bias + j0 : NULL,
                                         e->mul ? e->mul + i * e->ldmul + j0 : NULL, e->ldmul,
                                         e->add ? e->add + i * e->ldadd + j0 : NULL, e->ldadd,
                                         e->y + i * e->ldy + j0, e->ldy);
            }
        }
    }
    _tile_release();
    return 1;
}

int sl_cpu_amx_gemm(int terms, size_t i0, size_t i1, size_t q0, size_t q1, size_t n, size_t k, const float *x,
                    size_t ldx, const uint16_t *wp, const sl_cpu_amx_epi *e)
{
    if (q1 > (n + 31) / 32)
        q1 = (n + 31) / 32;
    if (i0 >= i1 || q0 >= q1 || !k || (terms != 1 && terms != 3 && terms != 6) || !sl_cpu_amx())
        return 0;
    return amx_gemm(terms, i0, i1, q0, q1, n, k, x, ldx, wp, e);
}

#else

int sl_cpu_amx(void) { return 0; }

size_t sl_cpu_amx_wsize(int terms, size_t n, size_t k)
{
    (void)terms, (void)n, (void)k;
    return 0;
}

void sl_cpu_amx_pack_w(int terms, size_t n, size_t k, const float *w, size_t ldw, size_t p0, size_t p1,
                       uint16_t *dst)
{
    (void)terms, (void)n, (void)k, (void)w, (void)ldw, (void)p0, (void)p1, (void)dst;
}

int sl_cpu_amx_gemm(int terms, size_t i0, size_t i1, size_t q0, size_t q1, size_t n, size_t k, const float *x,
                    size_t ldx, const uint16_t *wp, const sl_cpu_amx_epi *e)
{
    (void)terms, (void)i0, (void)i1, (void)q0, (void)q1, (void)n, (void)k, (void)x, (void)ldx, (void)wp, (void)e;
    return 0;
}

#endif
