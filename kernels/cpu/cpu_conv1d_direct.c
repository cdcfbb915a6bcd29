/* AVX-512 conv1d without im2col (groups 1, k <= DC_MAX_K, at most DC_MAX_OUT output
 * channels), for the shapes where the column matrix and the library's packing cost more
 * than the product itself (HT-Demucs's DConv branches, 6 to 48 hidden channels: 1.2-2.8x
 * the im2col path; wider products stay with the library GEMM, faster there):
 *
 *  - inner 1, stride 1 (the DConv's dilated k 3 convolutions): a tile
 *    is 32 consecutive output positions of one item; tap u reads x at the tile's
 *    positions + u * dilation - pad_l, with the lanes outside the signal masked to 0;
 *  - inner >= 16 (the [K,1] convolutions over frequency, [C][F][T]): a tile is 32
 *    consecutive columns of one output position t; the taps whose row t * stride +
 *    u * dilation - pad_l falls outside the signal are skipped.
 *
 * 12 output channels x 32 columns accumulate in 24 registers, starting from the bias,
 * over the input channels in order and, within each, the taps in order (fused
 * multiply-adds; a skipped tap is a zero product); the activation runs over each part's
 * rows once they are written (sl_cpu_epilogue_row), while they are in cache. Every
 * element of y is the same sequence of operations whatever the tile, block or thread
 * split, so every split gives the same bits; against the im2col + GEMM path of
 * cpu_conv1d.c the result differs by fp32 rounding only. Tiles go in blocks of
 * DC_BLOCK columns so that a block of x and a block of 12 rows of w stay in cache
 * while the other is swept. */
#include <stdint.h>

#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

#define DC_MR 12      /* output channels per tile */
#define DC_NR 32      /* columns per tile */
#define DC_BLOCK 8    /* tiles per block */
#define DC_MAX_K 16   /* taps at most */
#define DC_MAX_OUT 48 /* output channels at most */

typedef struct {
    const sl_conv1d_args *a;
    size_t len_out, cols;   /* output positions; columns of one item (len_out * inner) */
    size_t per_t;           /* inner mode: tiles per output position (0: contiguous mode) */
    size_t tiles;           /* tiles per item */
    size_t chunk, chunks;   /* tiles per part, parts per item */
} dc_job;

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>

#define DC512 __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma")))

/* Lanes lo .. hi - 1 of 32 set. */
static inline uint32_t dc_lanes(long lo, long hi)
{
    if (lo < 0)
        lo = 0;
    if (hi > DC_NR)
        hi = DC_NR;
    if (hi <= lo)
        return 0;
    const uint32_t upto = hi >= 32 ? 0xffffffffu : (1u << hi) - 1u;
    return upto & ~((1u << lo) - 1u);
}

/* Tile `tile` of item b, output channels o0 .. o0 + R - 1 (see the file comment). */
DC512 static inline __attribute__((always_inline)) void dc_tile(int R, const dc_job *J, size_t b, size_t o0,
                                                                size_t tile)
{
    const sl_conv1d_args *a = J->a;
    const size_t C = (size_t)a->c_in, k = (size_t)a->k, CK = C * k, len = a->len, inner = a->inner;
    const float *xb = a->x + b * C * len * inner, *w = a->wt + o0 * CK;
    size_t off, ncol; /* the tile's first column in a row of y, columns */
    uint32_t mk[DC_MAX_K]; /* lanes read per tap (0: tap skipped) */
    long src[DC_MAX_K];    /* where tap u reads in a channel's row of x */
    if (!J->per_t) {
        const size_t t0 = tile * DC_NR;
        off = t0;
        ncol = J->len_out - t0 < DC_NR ? J->len_out - t0 : DC_NR;
        for (size_t u = 0; u < k; u++) {
            const long lo = (long)t0 + (long)u * a->dilation - a->pad_l;
            src[u] = lo;
            mk[u] = dc_lanes(-lo, (long)len - lo) & dc_lanes(0, (long)ncol);
        }
    } else {
        const size_t t = tile / J->per_t, n0 = (tile % J->per_t) * DC_NR;
        off = t * inner + n0;
        ncol = inner - n0 < DC_NR ? inner - n0 : DC_NR;
        for (size_t u = 0; u < k; u++) {
            const long p = (long)(t * (size_t)a->stride) + (long)u * a->dilation - a->pad_l;
            src[u] = p * (long)inner + (long)n0;
            mk[u] = p >= 0 && p < (long)len ? dc_lanes(0, (long)ncol) : 0;
        }
    }
    __m512 acc[DC_MR][2];
    _Pragma("GCC unroll 12") for (int r = 0; r < DC_MR; r++)
        if (r < R)
            acc[r][0] = acc[r][1] = a->bias ? _mm512_set1_ps(a->bias[o0 + (size_t)r]) : _mm512_setzero_ps();
    const size_t ldc = len * inner; /* floats between channels of x */
    for (size_t c = 0; c < C; c++) {
        const float *xc = xb + c * ldc;
        for (size_t u = 0; u < k; u++) {
            const uint32_t m = mk[u];
            if (!m)
                continue;
            const float *s = xc + src[u];
            const __m512 v0 = _mm512_maskz_loadu_ps((__mmask16)m, s);
            const __m512 v1 = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), s + 16);
            const float *wc = w + c * k + u;
            _Pragma("GCC unroll 12") for (int r = 0; r < DC_MR; r++)
                if (r < R) {
                    const __m512 g = _mm512_set1_ps(wc[(size_t)r * CK]);
                    acc[r][0] = _mm512_fmadd_ps(g, v0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(g, v1, acc[r][1]);
                }
        }
    }
    const uint32_t ms = dc_lanes(0, (long)ncol);
    float *y = a->y + (b * (size_t)a->c_out + o0) * J->cols + off;
    _Pragma("GCC unroll 12") for (int r = 0; r < DC_MR; r++)
        if (r < R) {
            _mm512_mask_storeu_ps(y + (size_t)r * J->cols, (__mmask16)ms, acc[r][0]);
            _mm512_mask_storeu_ps(y + (size_t)r * J->cols + 16, (__mmask16)(ms >> 16), acc[r][1]);
        }
}

#define DC_CASE(R)                                                                                                     \
    case R:                                                                                                            \
        dc_tile(R, J, b, o0, tile);                                                                                    \
        break

DC512 static void dc_tile_any(int R, const dc_job *J, size_t b, size_t o0, size_t tile)
{
    switch (R) {
        DC_CASE(1);
        DC_CASE(2);
        DC_CASE(3);
        DC_CASE(4);
        DC_CASE(5);
        DC_CASE(6);
        DC_CASE(7);
        DC_CASE(8);
        DC_CASE(9);
        DC_CASE(10);
        DC_CASE(11);
    default:
        break;
    }
}

/* Tiles i0 .. i1 - 1 of item b, every output channel, then the activation over their columns. */
DC512 static void dc_run(const dc_job *J, size_t b, size_t i0, size_t i1)
{
    const sl_conv1d_args *a = J->a;
    const size_t O = (size_t)a->c_out;
    for (size_t ib = i0; ib < i1; ib += DC_BLOCK) {
        const size_t ie = ib + DC_BLOCK < i1 ? ib + DC_BLOCK : i1;
        for (size_t o0 = 0; o0 < O; o0 += DC_MR) {
            const int R = O - o0 < DC_MR ? (int)(O - o0) : DC_MR;
            for (size_t i = ib; i < ie; i++)
                if (R == DC_MR)
                    dc_tile(DC_MR, J, b, o0, i);
                else
                    dc_tile_any(R, J, b, o0, i);
        }
    }
    if (a->act == SL_ACT_NONE)
        return;
    /* the parts' tiles cover one contiguous run of each row of y */
    size_t c0, c1;
    if (!J->per_t) {
        c0 = i0 * DC_NR;
        c1 = i1 * DC_NR < J->cols ? i1 * DC_NR : J->cols;
    } else {
        c0 = i0 / J->per_t * a->inner + (i0 % J->per_t) * DC_NR;
        const size_t l = i1 - 1, n1 = (l % J->per_t) * DC_NR + DC_NR;
        c1 = l / J->per_t * a->inner + (n1 < a->inner ? n1 : a->inner);
    }
    for (size_t o = 0; o < O; o++) {
        float *y = a->y + (b * O + o) * J->cols;
        sl_cpu_epilogue_row(a->act, c1 - c0, y + c0, NULL, NULL, NULL, y + c0);
    }
}
#endif

static void dc_body(void *v, size_t part, int tid)
{
    (void)tid;
    const dc_job *J = v;
    const size_t b = part / J->chunks, i0 = (part % J->chunks) * J->chunk;
    const size_t i1 = i0 + J->chunk < J->tiles ? i0 + J->chunk : J->tiles;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (i0 < i1)
        dc_run(J, b, i0, i1);
#else
    (void)b, (void)i1;
#endif
}

int sl_cpu_conv1d_direct(sl_op_ctx *ctx, const sl_conv1d_args *a)
{
    if (!sl_cpu_simd_avx512() || a->groups != 1 || a->k > DC_MAX_K || a->c_out > DC_MAX_OUT || a->batch == 0 || a->c_out == 0)
        return 0;
    dc_job J = {.a = a, .len_out = sl_conv1d_len_out(a)};
    if (a->inner == 1 && a->stride == 1)
        J.per_t = 0;
    else if (a->inner >= 16)
        J.per_t = (a->inner + DC_NR - 1) / DC_NR;
    else
        return 0;
    J.cols = J.len_out * a->inner;
    if (J.len_out == 0)
        return 1;
    J.tiles = J.per_t ? J.len_out * J.per_t : (J.len_out + DC_NR - 1) / DC_NR;
    /* parts: whole items when there are enough of them, else about 4 per thread */
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    J.chunks = 1;
    if (th > 1 && a->batch < 4 * th)
        J.chunks = (4 * th + a->batch - 1) / a->batch;
    if (J.chunks > J.tiles)
        J.chunks = J.tiles;
    J.chunk = (J.tiles + J.chunks - 1) / J.chunks;
    J.chunks = (J.tiles + J.chunk - 1) / J.chunk;
    sl_pool_for(th > 1 ? ctx->pool : NULL, a->batch * J.chunks, dc_body, &J);
    return 1;
}
