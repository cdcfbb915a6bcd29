/* Linear layers on the AMX tile unit (Intel Sapphire Rapids and later), the
 * CPU's runtime.precision modes tf32 and bf16 (kernels/ops.h sl_precision).
 *
 * tf32: three bf16 products per fp32 product. Each operand is split into a
 * bf16 "high" part (round to nearest even) and the bf16 rounding of the
 * remainder, a = ah + al, and a.b is computed as ah.bh + ah.bl + al.bh (the
 * al.bl term, about 2^-16 of the product, is dropped) with fp32 accumulation in
 * the tiles. The three products are one tile GEMM over a tripled k axis: rows
 * of x become [xh | xh | xl], rows of w become [wh | wl | wh]. A product's
 * relative error is about 2^-16 (TF32 rounding: 2^-11; fp32 FMA: 2^-24) and a
 * dot product's error stays a few times that of the fp32 GEMM.
 *
 * bf16: one bf16 product per product, xh.wh (inputs rounded to bfloat16, fp32
 * accumulation): a relative error of about 2^-8 per product, as a GPU's bf16
 * tensor cores.
 *
 * Blocking: w is packed once per call into 16-column panels in the tiles' pair
 * layout ([k/2][16][2] bf16); x is packed 32 rows at a time; 32 x 32 outputs
 * accumulate in four tiles (tmm0-3) from two x tiles (tmm4-5) and two w tiles
 * (tmm6-7) per 32 k values. Every output element sees the same operations in
 * the same order whatever the split of m or n between threads. */
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

/* 16 floats (n < 16: the first n, zeros after) -> their bf16 high and low parts. */
AMX_TGT static inline void split16(const float *x, size_t n, __m256i *hi, __m256i *lo)
{
    const __mmask16 mk = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(mk, x);
    const __m256i h = (__m256i)_mm512_cvtneps_pbh(v);
    const __m512 hf = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    *hi = h;
    *lo = (__m256i)_mm512_cvtneps_pbh(_mm512_sub_ps(v, hf));
}

/* Rows r < 32 of x (zeros for r >= m) -> dst[32][terms*kp], zeros past k: terms 3,
 * high | high | low; terms 1, high. */
AMX_TGT static void pack_x(const float *x, size_t ldx, size_t m, size_t k, size_t kp, int terms, uint16_t *dst)
{
    const size_t kt = (size_t)terms * kp;
    for (size_t r = 0; r < 32; r++) {
        uint16_t *d = dst + r * kt;
        if (r >= m) {
            memset(d, 0, kt * sizeof *d);
            continue;
        }
        const float *s = x + r * ldx;
        for (size_t j = 0; j < kp; j += 16) {
            __m256i h, l;
            split16(s + j, j < k ? k - j : 0, &h, &l);
            _mm256_storeu_si256((__m256i *)(d + j), h);
            if (terms == 3) {
                _mm256_storeu_si256((__m256i *)(d + kp + j), h);
                _mm256_storeu_si256((__m256i *)(d + 2 * kp + j), l);
            }
        }
    }
}

/* Columns c < 16 of a panel (rows of w, zeros for c >= n) -> dst[terms*kp/2][16][2]: along k,
 * terms 3, high | low | high; terms 1, high; zeros past k. */
AMX_TGT static void pack_w(const float *w, size_t ldw, size_t n, size_t k, size_t kp, int terms, uint16_t *dst)
{
    const size_t kt = (size_t)terms * kp;
    uint32_t *d = (uint32_t *)dst; /* one k pair of one column */
    memset(dst, 0, kt * 16 * sizeof *dst);
    for (size_t c = 0; c < n; c++) {
        const float *s = w + c * ldw;
        for (size_t j = 0; j < k; j += 16) {
            __m256i h, l;
            split16(s + j, k - j, &h, &l);
            uint32_t hp[8], lp[8];
            _mm256_storeu_si256((__m256i *)hp, h);
            _mm256_storeu_si256((__m256i *)lp, l);
            for (size_t p = 0; p < 8 && j + 2 * p < k; p++) {
                const size_t row = j / 2 + p;
                d[row * 16 + c] = hp[p];
                if (terms == 3) {
                    d[(row + kp / 2) * 16 + c] = lp[p];
                    d[(row + kp) * 16 + c] = hp[p];
                }
            }
        }
    }
}

/* c[i][j] = sum_k a[i][k] b[j][k] for i < m, j < n (b: n rows of k, "trans_b"). */
AMX_TGT static int amx_gemm_nt(int terms, size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b,
                               size_t ldb, float *c, size_t ldc)
{
    const size_t kp = (k + 31) & ~(size_t)31, k3 = (size_t)terms * kp, panels = (n + 31) / 32 * 2;
    uint16_t *wp = aligned_alloc(64, panels * k3 * 16 * sizeof(uint16_t));
    uint16_t *xp = aligned_alloc(64, 32 * k3 * sizeof(uint16_t));
    if (!wp || !xp) {
        free(wp);
        free(xp);
        return 0;
    }
    for (size_t p = 0; p < panels; p++) {
        const size_t c0 = p * 16, nc = c0 < n ? (n - c0 < 16 ? n - c0 : 16) : 0;
        pack_w(b + c0 * ldb, ldb, nc, k, kp, terms, wp + p * k3 * 16);
    }
    amx_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
    float edge[32 * 32];
    for (size_t i0 = 0; i0 < m; i0 += 32) {
        const size_t mr = m - i0 < 32 ? m - i0 : 32;
        pack_x(a + i0 * lda, lda, mr, k, kp, terms, xp);
        for (size_t p = 0; p < panels; p += 2) {
            const uint16_t *w0 = wp + p * k3 * 16, *w1 = w0 + k3 * 16;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (size_t j = 0; j < k3; j += 32) {
                _tile_loadd(4, xp + j, (long)(k3 * 2));
                _tile_loadd(5, xp + 16 * k3 + j, (long)(k3 * 2));
                _tile_loadd(6, w0 + j * 16, 64);
                _tile_loadd(7, w1 + j * 16, 64);
                _tile_dpbf16ps(0, 4, 6);
                _tile_dpbf16ps(1, 4, 7);
                _tile_dpbf16ps(2, 5, 6);
                _tile_dpbf16ps(3, 5, 7);
            }
            const size_t j0 = p * 16, nr = n - j0 < 32 ? n - j0 : 32;
            float *o = c + i0 * ldc + j0;
            if (mr == 32 && nr == 32) {
                _tile_stored(0, o, (long)(ldc * 4));
                _tile_stored(1, o + 16, (long)(ldc * 4));
                _tile_stored(2, o + 16 * ldc, (long)(ldc * 4));
                _tile_stored(3, o + 16 * ldc + 16, (long)(ldc * 4));
                continue;
            }
            _tile_stored(0, edge, 128);
            _tile_stored(1, edge + 16, 128);
            _tile_stored(2, edge + 16 * 32, 128);
            _tile_stored(3, edge + 16 * 32 + 16, 128);
            for (size_t r = 0; r < mr; r++)
                memcpy(o + r * ldc, edge + r * 32, nr * sizeof(float));
        }
    }
    _tile_release();
    free(wp);
    free(xp);
    return 1;
}

int sl_cpu_amx_sgemm_nt(int terms, size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b,
                        size_t ldb, float *c, size_t ldc)
{
    if (!m || !n || !k || (terms != 1 && terms != 3) || !sl_cpu_amx())
        return 0;
    return amx_gemm_nt(terms, m, n, k, a, lda, b, ldb, c, ldc);
}

#else

int sl_cpu_amx(void) { return 0; }

int sl_cpu_amx_sgemm_nt(int terms, size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b,
                        size_t ldb, float *c, size_t ldc)
{
    (void)terms, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb, (void)c, (void)ldc;
    return 0;
}

#endif
