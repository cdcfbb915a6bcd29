/* AVX-512 and AVX2 + FMA conv1d and conv_transpose1d without im2col / col2im (groups 1, k <= DC_MAX_K),
 * for the shapes where the column matrix and the library's packing cost more than the
 * product itself (HT-Demucs's DConv branches, its strided [K,1] encoders and their
 * transposed decoders over frequency):
 *
 *  - conv1d, inner 1, stride 1 (the DConv's dilated k 3 convolutions): a tile
 *    is 32 consecutive output positions of one item; tap u reads x at the tile's
 *    positions + u * dilation - pad_l, with the lanes outside the signal masked to 0;
 *  - conv1d, inner 1, stride > 1 (the time encoders): x, zero-padded, split first into the
 *    phases of the stride (x'[rho][j] = x[j * stride + rho - pad_l], by permutes for
 *    stride 4), so that tap u reads phase (u * dilation) % stride at 32 consecutive
 *    positions from t0 + (u * dilation) / stride: the stride-1 tile on x';
 *  - conv1d, inner >= 16 (the [K,1] convolutions over frequency, [C][F][T]): a tile is 32
 *    consecutive columns of one output position t; the taps whose row t * stride +
 *    u * dilation - pad_l falls outside the signal are skipped;
 *  - conv_transpose1d, inner >= 16: a tile is 32 consecutive columns of one output row t;
 *    tap u reads input row i = (t + crop - u) / stride where that divides exactly and
 *    0 <= i < len (for HT-Demucs's k 8, stride 4: two taps per row), the others skipped;
 *  - conv_transpose1d, inner 1 (the time decoders): by phases of the stride, t + crop =
 *    q * stride + rho: a tile is 32 consecutive q of one phase rho, tap u = rho + m * stride
 *    reading x at q - m (lanes outside the signal masked to 0), written to a scratch
 *    [stride][q] per channel that a second pass weaves into y (by permutes for stride 4)
 *    and applies the activation to.
 * The two modes by phases hold the whole signal's phases in the context's scratch: past
 * DC_MAX_PHASES floats of it the op takes the im2col / col2im paths instead.
 *
 * The weights are packed as [output channels / 12][c_in][k][12], the transposed ones as
 * [output channels / 12][stride][c_in][k / stride][12] (the 12 weights a tap broadcasts lie
 * together, and a tile's taps in the order it reads them; kept with the context for weights
 * declared fixed, else packed per call). A tile whose taps all read walks packed rows and
 * weights in one loop. 12 output channels x 32 columns accumulate in 24 registers, starting from
 * the bias, over the input channels in order and, within each, the taps in order (fused
 * multiply-adds; a skipped tap is a zero product); the activation runs over each part's
 * rows once they are written (sl_cpu_epilogue_row), while they are in cache. Tiles go in
 * blocks of DC_BLOCK and the input channels in passes of about DC_KC channel-taps, the
 * partial sums stored in y between passes (float, so the same bits as one pass): a pass's
 * 12-channel weight panel stays in L1 while the block's tiles are swept, its rows of x in
 * L2. The rows of x a block's tiles read are packed (x[c][rows][32 columns], channel by
 * channel, the next channels prefetched; with one tile of output channels only for the
 * phases mode, whose x is the whole signal): tiles that read the same rows share one copy,
 * swept one after the other. The transposed modes' blocks are made of such tiles: the
 * phases of DC_BLOCK blocks of positions (phases mode), the output rows of one phase
 * group, t + crop = q * stride + rho for one q, which all read input rows q - m (inner
 * mode): each input row packed once per group instead of once per output row. Every element of y is the same sequence of operations whatever the tile, block,
 * pass or thread split, so every split gives the same bits; against the im2col + GEMM
 * paths of cpu_conv1d.c the result differs by fp32 rounding only.
 * Where AVX-512 does not run but AVX2 + FMA does (sl_cpu_simd_fma()), the same driver (dc_run,
 * cpu_conv1d_direct_run.h, built once per instruction set) runs the same tiles, blocks, passes
 * and packed forms with AVX2 kernels: a tile swept as four parts of 6 output channels x 16
 * columns in 12 ymm accumulators, each element the same sequence of fused multiply-adds, so
 * the same bits as AVX-512 (unit.conv_ops checks both against that float sum); y's whole rows
 * of a part are read and written with plain loads and stores (masked ones only at a row's end:
 * they are slow on AMD's cores), the stride-4 phases split and woven by 8 positions. On an AMD
 * EPYC (Zen 3) each mode measured faster than the im2col / col2im + OpenBLAS paths over
 * HT-Demucs's shapes, much faster where those are small. sl_cpu_conv1d_direct_set(0) turns
 * the direct kernels off (tests, benchmarks); STEMLINE_CPU_SIMD=0 does too (cpu_simd.h). */
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

#define DC_MR 12      /* output channels per tile */
#define DC_NR 32      /* columns per tile */
#define DC_BLOCK 8    /* tiles per block (their packed rows distinct) */
#define DC_BLOCK_MAX 64 /* tiles per block at most, those sharing packed rows counted */
#define DC_MAX_K 16   /* taps at most */
#define DC_KC 192     /* channel-taps per pass */
#define DC_MAX_PHASES ((size_t)1 << 25) /* floats of scratch for phases at most (128 MiB) */
#define DC_PF 4       /* channels ahead that dc_pack_x prefetches */

/* sl_cpu_fixed_form's tag of packed conv weights ('DC' + the shape; bit 63: transposed). */
#define DC_TAG(t, o, c, k)                                                                                             \
    (((uint64_t)0x4443u << 48) ^ ((uint64_t)(t) << 63) ^ ((uint64_t)(o) << 30) ^ ((uint64_t)(c) << 12) ^ (uint64_t)(k))

enum { DC_CONTIG, DC_INNER, DC_STRIDED, DC_TRANSPOSED, DC_PHASES };

typedef struct {
    int mode;
    const float *x, *bias;
    float *y;
    const float *wp;         /* packed weights */
    float *xp;               /* [threads][xp_floats]: each thread's packed rows of x */
    size_t xp_floats;
    size_t C, O, k;          /* input, output channels, taps */
    size_t kw, wo;           /* packed weights: taps per channel and phase, floats per 12 output channels */
    size_t len, inner;       /* input rows, columns per row */
    long stride, dil, pad;   /* pad: pad_l (conv1d) or crop (transposed) */
    sl_act act;
    size_t len_out, cols;   /* output positions; columns of one item (len_out * inner) */
    size_t per_t;           /* inner modes: tiles per output position (0: contiguous mode) */
    size_t tiles;           /* tiles per item */
    size_t chunk, chunks;   /* tiles per part, parts per item */
    size_t cb;              /* input channels per pass */
    size_t taps;            /* taps one tile reads per channel at most */
    size_t block, uniq;     /* tiles per block, distinct packed copies of rows per block, at most */
    size_t Q;               /* phases mode: positions per phase */
    float *yout;            /* phases mode: y of the op (y is the phases' [batch][O][stride][Q]) */
    const float *xin;       /* strided mode: x of the op (x is its phases, [batch][C][stride][len / stride]) */
    size_t len_in, pad_r;   /* strided mode: the op's len and pad_r */
    sl_act act_out;         /* phases mode: the op's activation, applied with the interleave */
    int glu;                /* contiguous mode: y = GLU of the channel halves (O / 2 channels) */
    float *zb;              /* glu: [threads][zb_floats], each thread's block of the convolution, */
    size_t zb_floats;       /* [O][DC_BLOCK * DC_NR] */
    int avx2;               /* the AVX2 + FMA kernels (no AVX-512) */
} dc_job;

/* Packed weights: conv1d [O / 12][C][k][12] (wp + (o / 12) * wo + (c * kw + u) * 12 + o % 12 = w(o, c, u),
 * kw = k); transposed by phases of the stride, [O / 12][stride][C][kw][12] with kw = ceil(k / stride)
 * (w(o, c, rho + m * stride) at ((rho * C + c) * kw + m) * 12, 0 past k): the taps a tile reads lie
 * in order. 0 past O. */
static void dc_pack_shape(dc_job *J)
{
    const size_t S = J->mode >= DC_TRANSPOSED ? (size_t)J->stride : 1;
    J->kw = J->mode >= DC_TRANSPOSED ? (J->k + S - 1) / S : J->k;
    J->wo = S * J->C * J->kw * DC_MR;
}

static size_t dc_packed_floats(const dc_job *J) { return (J->O + DC_MR - 1) / DC_MR * J->wo; }

static void dc_pack(const dc_job *J, const float *w, float *wp)
{
    const size_t O = J->O, C = J->C, k = J->k, kw = J->kw, S = J->wo / (C * kw * DC_MR);
    const int transposed = J->mode >= DC_TRANSPOSED;
    for (size_t o0 = 0; o0 < O; o0 += DC_MR)
        for (size_t rho = 0; rho < S; rho++)
            for (size_t c = 0; c < C; c++)
                for (size_t m = 0; m < kw; m++) {
                    const size_t u = rho + m * S;
                    float *d = wp + o0 / DC_MR * J->wo + ((rho * C + c) * kw + m) * DC_MR;
                    for (size_t r = 0; r < DC_MR; r++) {
                        const size_t o = o0 + r;
                        d[r] = o >= O || u >= k ? 0.0f : transposed ? w[(c * O + o) * k + u] : w[(o * C + c) * k + u];
                    }
                }
}

/* The packed form of w: kept with ctx when w is declared fixed, else packed into scratch (room for it). */
static const float *dc_weights(sl_op_ctx *ctx, const dc_job *J, const float *w, float *scratch)
{
    const size_t n = dc_packed_floats(J);
    int fresh = 0;
    const uint64_t tag = DC_TAG(J->mode >= DC_TRANSPOSED, J->O, J->C, J->k) ^ ((uint64_t)J->stride << 47);
    float *wp = sl_cpu_fixed_form(ctx, w, tag, n, &fresh);
    if (wp && !fresh)
        return wp;
    if (!wp)
        wp = scratch;
    dc_pack(J, w, wp);
    if (fresh)
        sl_cpu_fixed_form_ready(ctx, wp, 1);
    return wp;
}

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

/* The taps a tile reads (see the file comment), those reading nothing left out. */
typedef struct {
    size_t off;            /* the tile's first column in a row of y */
    uint32_t ms;           /* lanes of y written */
    int n;                 /* taps */
    int u[DC_MAX_K];       /* tap */
    long src[DC_MAX_K];    /* where it reads in a channel's row of x */
    uint32_t mk[DC_MAX_K]; /* lanes it reads */
} dc_taps;

static void dc_tile_taps(const dc_job *J, size_t tile, dc_taps *T)
{
    T->n = 0;
    size_t ncol;
    if (J->mode == DC_PHASES) { /* phase rho of t + crop, positions q0 .. of it */
        const size_t S = (size_t)J->stride;
        /* the phases of each block of positions together (they read the same rows of x) */
        const size_t rho = tile % S, q0 = tile / S * DC_NR;
        T->off = rho * J->Q + q0;
        ncol = J->Q - q0 < DC_NR ? J->Q - q0 : DC_NR;
        for (size_t u = rho, m = 0; u < J->k; u += (size_t)J->stride, m++) {
            const long lo = (long)q0 - (long)m; /* input i = q - m */
            const uint32_t mk = dc_lanes(-lo, (long)J->len - lo) & dc_lanes(0, (long)ncol);
            if (mk)
                T->u[T->n] = (int)(rho * J->C * J->kw + m), T->src[T->n] = lo, T->mk[T->n++] = mk;
        }
    } else if (J->mode == DC_STRIDED) { /* x as phases: tap u reads phase v % stride at t + v / stride */
        const size_t t0 = tile * DC_NR, n = J->len / (size_t)J->stride;
        T->off = t0;
        ncol = J->len_out - t0 < DC_NR ? J->len_out - t0 : DC_NR;
        for (size_t u = 0; u < J->k; u++) {
            const size_t v = u * (size_t)J->dil;
            T->u[T->n] = (int)u, T->src[T->n] = (long)(v % (size_t)J->stride * n + t0 + v / (size_t)J->stride);
            T->mk[T->n++] = dc_lanes(0, (long)ncol);
        }
    } else if (J->mode == DC_CONTIG) {
        const size_t t0 = tile * DC_NR;
        T->off = t0;
        ncol = J->len_out - t0 < DC_NR ? J->len_out - t0 : DC_NR;
        for (size_t u = 0; u < J->k; u++) {
            const long lo = (long)t0 + (long)u * J->dil - J->pad;
            const uint32_t m = dc_lanes(-lo, (long)J->len - lo) & dc_lanes(0, (long)ncol);
            if (m)
                T->u[T->n] = (int)u, T->src[T->n] = lo, T->mk[T->n++] = m;
        }
    } else {
        const size_t t = tile / J->per_t, n0 = (tile % J->per_t) * DC_NR;
        T->off = t * J->inner + n0;
        ncol = J->inner - n0 < DC_NR ? J->inner - n0 : DC_NR;
        const size_t rho = J->mode == DC_INNER ? 0 : (t + (size_t)J->pad) % (size_t)J->stride;
        for (size_t u = rho, m = 0; u < J->k; u += J->mode == DC_INNER ? 1 : (size_t)J->stride, m++) {
            long p; /* the input row tap u reads */
            if (J->mode == DC_INNER)
                p = (long)t * J->stride + (long)u * J->dil - J->pad;
            else
                p = ((long)t + J->pad - (long)u) / J->stride; /* divides exactly; < 0 past the start */
            if (p >= 0 && p < (long)J->len)
                T->u[T->n] = (int)(J->mode == DC_INNER ? u : rho * J->C * J->kw + m),
                T->src[T->n] = p * (long)J->inner + (long)n0, T->mk[T->n++] = dc_lanes(0, (long)ncol);
        }
    }
    T->ms = dc_lanes(0, (long)ncol);
}

/* Output channels o0 .. o0 + R - 1 of a tile of item b over input channels c0 .. c1 - 1 into y (row
 * stride ldy: the tile's place in J->y, or in a thread's block for a GLU): from the bias (c0 = 0)
 * or the partial sums in y. */
DC512 static inline __attribute__((always_inline)) void dc_tile(int R, const dc_job *J, size_t b, size_t o0,
                                                                size_t c0, size_t c1, const dc_taps *T,
                                                                const float *xp, float *y, size_t ldy)
{
    const size_t kw = J->kw;
    const float *wp = J->wp + o0 / DC_MR * J->wo;
    const __mmask16 s0 = (__mmask16)T->ms, s1 = (__mmask16)(T->ms >> 16);
    __m512 acc[DC_MR][2];
    _Pragma("GCC unroll 12") for (int r = 0; r < DC_MR; r++)
        if (r < R) {
            if (c0) {
                acc[r][0] = _mm512_maskz_loadu_ps(s0, y + (size_t)r * ldy);
                acc[r][1] = _mm512_maskz_loadu_ps(s1, y + (size_t)r * ldy + 16);
            } else {
                acc[r][0] = acc[r][1] = J->bias ? _mm512_set1_ps(J->bias[o0 + (size_t)r]) : _mm512_setzero_ps();
            }
        }
    const size_t ldc = J->len * J->inner; /* floats between channels of x */
    const float *xb = J->x + b * J->C * ldc;
    if (xp && (size_t)T->n == kw) { /* every tap: packed rows and weights both in order, one walk */
        const float *wu = wp + (c0 * kw + (size_t)T->u[0]) * DC_MR, *const xe = xp + (c1 - c0) * kw * DC_NR;
        for (; xp < xe; xp += DC_NR, wu += DC_MR) {
            const __m512 v0 = _mm512_load_ps(xp), v1 = _mm512_load_ps(xp + 16);
            _Pragma("GCC unroll 12") for (int r = 0; r < DC_MR; r++)
                if (r < R) {
                    const __m512 g = _mm512_set1_ps(wu[r]);
                    acc[r][0] = _mm512_fmadd_ps(g, v0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(g, v1, acc[r][1]);
                }
        }
        c1 = c0; /* done */
    }
    for (size_t c = c0; c < c1; c++) {
        const float *wc = wp + c * kw * DC_MR;
        for (int j = 0; j < T->n; j++) {
            __m512 v0, v1;
            if (xp) { /* packed by dc_pack_x */
                v0 = _mm512_load_ps(xp), v1 = _mm512_load_ps(xp + 16);
                xp += DC_NR;
            } else {
                const uint32_t m = T->mk[j];
                const float *s = xb + c * ldc + T->src[j];
                v0 = _mm512_maskz_loadu_ps((__mmask16)m, s);
                v1 = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), s + 16);
            }
            const float *wu = wc + (size_t)T->u[j] * DC_MR;
            _Pragma("GCC unroll 12") for (int r = 0; r < DC_MR; r++)
                if (r < R) {
                    const __m512 g = _mm512_set1_ps(wu[r]);
                    acc[r][0] = _mm512_fmadd_ps(g, v0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(g, v1, acc[r][1]);
                }
        }
    }
    _Pragma("GCC unroll 12") for (int r = 0; r < DC_MR; r++)
        if (r < R) {
            _mm512_mask_storeu_ps(y + (size_t)r * ldy, s0, acc[r][0]);
            _mm512_mask_storeu_ps(y + (size_t)r * ldy + 16, s1, acc[r][1]);
        }
}

#define DC_CASE(R)                                                                                                     \
    case R:                                                                                                            \
        dc_tile(R, J, b, o0, c0, c1, T, xp, y, ldy);                                                                   \
        break

DC512 static void dc_tile_any(int R, const dc_job *J, size_t b, size_t o0, size_t c0, size_t c1, const dc_taps *T,
                              const float *xp, float *y, size_t ldy)
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

/* For the tiles T[idx[0 .. nt - 1]]: xp + i * per + ((c - c0) * T[idx[i]].n + j) * 32 = the 32 lanes
 * tap j of tile idx[i] reads of channel c (0 where it reads nothing), c0 <= c < c1: the rows of x
 * a tile reads, together. By channel, then tile (neighbouring columns of the same rows), the
 * next channels' rows prefetched. */
DC512 static void dc_pack_x(const dc_job *J, size_t b, size_t c0, size_t c1, const dc_taps *T, const int *idx,
                            size_t nt, size_t per, float *xp)
{
    const size_t ldc = J->len * J->inner; /* floats between channels of x */
    const float *xb = J->x + b * J->C * ldc;
    for (size_t c = c0; c < c1; c++)
        for (size_t i = 0; i < nt; i++) {
            const dc_taps *Ti = &T[idx[i]];
            float *d = xp + i * per + (c - c0) * (size_t)Ti->n * DC_NR;
            for (int j = 0; j < Ti->n; j++, d += DC_NR) {
                const float *s = xb + c * ldc + Ti->src[j];
                const uint32_t m = Ti->mk[j];
                if (c + DC_PF < c1) {
                    _mm_prefetch((const char *)(s + DC_PF * ldc), _MM_HINT_T0);
                    _mm_prefetch((const char *)(s + DC_PF * ldc + 16), _MM_HINT_T0);
                }
                _mm512_store_ps(d, _mm512_maskz_loadu_ps((__mmask16)m, s));
                _mm512_store_ps(d + 16, _mm512_maskz_loadu_ps((__mmask16)(m >> 16), s + 16));
            }
        }
}

/* The end of the block of tiles from ib (before i1): at most J->block tiles, at most J->uniq distinct
 * sets of rows read (tiles with the same rows share one packed copy: the phases of one position of
 * a transposed convolution), transposed over rows: the output rows of one phase group only (those
 * reading the same input rows). T[0 .. n) gets their taps, slot[i] the packed copy tile i reads. */
static size_t dc_block(const dc_job *J, size_t ib, size_t i1, dc_taps *T, int *slot, int *first)
{
    size_t ie = ib + J->block < i1 ? ib + J->block : i1;
    if (J->mode == DC_TRANSPOSED) { /* up to the first row of the next phase group */
        const size_t t = ib / J->per_t, S = (size_t)J->stride, g = (t + (size_t)J->pad) / S;
        const size_t te = (g + 1) * S - (size_t)J->pad;
        if (te * J->per_t < ie)
            ie = te * J->per_t;
    }
    int nu = 0;
    for (size_t i = ib; i < ie; i++) {
        dc_taps *Ti = &T[i - ib];
        dc_tile_taps(J, i, Ti);
        int s = -1; /* only the transposed modes' tiles read the same rows as others */
        for (int u = J->mode >= DC_TRANSPOSED ? 0 : nu; u < nu && s < 0; u++) {
            const dc_taps *Tu = &T[first[u]];
            if (Tu->n == Ti->n && !memcmp(Tu->src, Ti->src, (size_t)Ti->n * sizeof Ti->src[0]) &&
                !memcmp(Tu->mk, Ti->mk, (size_t)Ti->n * sizeof Ti->mk[0]))
                s = u;
        }
        if (s < 0) {
            if ((size_t)nu == J->uniq)
                return i;
            first[nu] = (int)(i - ib), s = nu++;
        }
        slot[i - ib] = s;
    }
    return ie;
}

#define DC_RUN dc_run
#define DC_RUN_TGT DC512
#define DC_TILE dc_tile
#define DC_TILE_ANY dc_tile_any
#define DC_PACK_X dc_pack_x
#include "cpu_conv1d_direct_run.h"
#undef DC_RUN
#undef DC_RUN_TGT
#undef DC_TILE
#undef DC_TILE_ANY
#undef DC_PACK_X

/* The AVX2 + FMA twins of dc_tile, dc_tile_any and dc_pack_x (where AVX-512 does not run): the
 * same tiles of 12 output channels x 32 columns and the same packed forms, a tile swept as four
 * parts of 6 channels x 16 columns (12 ymm accumulators), each element the same sequence of
 * fused multiply-adds as there: the same bits. */
#define DC256 __attribute__((target("avx2,fma")))

/* Lanes 0 .. 7 of m (bit i: lane i) as a mask vector. */
DC256 static inline __m256i dc2_mask(uint32_t m)
{
    const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32((int)(m & 0xffu)), bit), bit);
}

/* Output channels o0 + r0 .. o0 + r0 + RR - 1 (RR <= 6) of a tile, its columns 16 h .. 16 h + 15:
 * dc_tile's sums. */
DC256 static inline __attribute__((always_inline)) void dc2_part(int RR, const dc_job *J, size_t b, size_t o0,
                                                                 size_t r0, int h, size_t c0, size_t c1,
                                                                 const dc_taps *T, const float *xp, float *y,
                                                                 size_t ldy)
{
    const size_t kw = J->kw, hc = (size_t)h * 16;
    const float *wp = J->wp + o0 / DC_MR * J->wo + r0;
    const __m256i s0 = dc2_mask(T->ms >> hc), s1 = dc2_mask(T->ms >> (hc + 8));
    y += r0 * ldy + hc;
    const int full = (T->ms >> hc & 0xffffu) == 0xffffu; /* every lane: plain loads and stores of y (AMD's
                                                          * masked stores are slow) */
    __m256 acc[6][2];
    _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)
        if (r < RR) {
            if (c0 && full) {
                acc[r][0] = _mm256_loadu_ps(y + (size_t)r * ldy);
                acc[r][1] = _mm256_loadu_ps(y + (size_t)r * ldy + 8);
            } else if (c0) {
                acc[r][0] = _mm256_maskload_ps(y + (size_t)r * ldy, s0);
                acc[r][1] = _mm256_maskload_ps(y + (size_t)r * ldy + 8, s1);
            } else {
                acc[r][0] = acc[r][1] = J->bias ? _mm256_set1_ps(J->bias[o0 + r0 + (size_t)r]) : _mm256_setzero_ps();
            }
        }
    const size_t ldc = J->len * J->inner; /* floats between channels of x */
    const float *xb = J->x + b * J->C * ldc + hc;
    if (xp)
        xp += hc;
    if (xp && (size_t)T->n == kw) { /* every tap: packed rows and weights both in order, one walk */
        const float *wu = wp + (c0 * kw + (size_t)T->u[0]) * DC_MR, *const xe = xp + (c1 - c0) * kw * DC_NR;
        for (; xp < xe; xp += DC_NR, wu += DC_MR) {
            const __m256 v0 = _mm256_load_ps(xp), v1 = _mm256_load_ps(xp + 8);
            _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)
                if (r < RR) {
                    const __m256 g = _mm256_broadcast_ss(wu + r);
                    acc[r][0] = _mm256_fmadd_ps(g, v0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(g, v1, acc[r][1]);
                }
        }
        c1 = c0; /* done */
    }
    __m256i mk[DC_MAX_K][2]; /* x unpacked: the lanes each tap reads */
    if (!xp)
        for (int j = 0; j < T->n; j++)
            mk[j][0] = dc2_mask(T->mk[j] >> hc), mk[j][1] = dc2_mask(T->mk[j] >> (hc + 8));
    for (size_t c = c0; c < c1; c++) {
        const float *wc = wp + c * kw * DC_MR;
        for (int j = 0; j < T->n; j++) {
            __m256 v0, v1;
            if (xp) { /* packed by dc2_pack_x */
                v0 = _mm256_load_ps(xp), v1 = _mm256_load_ps(xp + 8);
                xp += DC_NR;
            } else {
                const float *s = xb + c * ldc + T->src[j];
                v0 = _mm256_maskload_ps(s, mk[j][0]);
                v1 = _mm256_maskload_ps(s + 8, mk[j][1]);
            }
            const float *wu = wc + (size_t)T->u[j] * DC_MR;
            _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)
                if (r < RR) {
                    const __m256 g = _mm256_broadcast_ss(wu + r);
                    acc[r][0] = _mm256_fmadd_ps(g, v0, acc[r][0]);
                    acc[r][1] = _mm256_fmadd_ps(g, v1, acc[r][1]);
                }
        }
    }
    if (full) {
        _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)
            if (r < RR) {
                _mm256_storeu_ps(y + (size_t)r * ldy, acc[r][0]);
                _mm256_storeu_ps(y + (size_t)r * ldy + 8, acc[r][1]);
            }
        return;
    }
    _Pragma("GCC unroll 6") for (int r = 0; r < 6; r++)
        if (r < RR) {
            _mm256_maskstore_ps(y + (size_t)r * ldy, s0, acc[r][0]);
            _mm256_maskstore_ps(y + (size_t)r * ldy + 8, s1, acc[r][1]);
        }
}

DC256 static void dc2_part_any(int RR, const dc_job *J, size_t b, size_t o0, size_t r0, int h, size_t c0, size_t c1,
                               const dc_taps *T, const float *xp, float *y, size_t ldy)
{
    switch (RR) {
    case 1: dc2_part(1, J, b, o0, r0, h, c0, c1, T, xp, y, ldy); break;
    case 2: dc2_part(2, J, b, o0, r0, h, c0, c1, T, xp, y, ldy); break;
    case 3: dc2_part(3, J, b, o0, r0, h, c0, c1, T, xp, y, ldy); break;
    case 4: dc2_part(4, J, b, o0, r0, h, c0, c1, T, xp, y, ldy); break;
    case 5: dc2_part(5, J, b, o0, r0, h, c0, c1, T, xp, y, ldy); break;
    default: break;
    }
}

/* dc_tile's work on R output channels: its columns in halves (the second only where written), each
 * over channels 0 .. 5, then 6 .. R - 1. */
DC256 static inline __attribute__((always_inline)) void dc2_tile(int R, const dc_job *J, size_t b, size_t o0,
                                                                 size_t c0, size_t c1, const dc_taps *T,
                                                                 const float *xp, float *y, size_t ldy)
{
    for (int h = 0; h < 2 && (T->ms >> (16 * h)); h++)
        for (int r0 = 0; r0 < R; r0 += 6) {
            if (R - r0 >= 6)
                dc2_part(6, J, b, o0, (size_t)r0, h, c0, c1, T, xp, y, ldy);
            else
                dc2_part_any(R - r0, J, b, o0, (size_t)r0, h, c0, c1, T, xp, y, ldy);
        }
}

DC256 static void dc2_tile_any(int R, const dc_job *J, size_t b, size_t o0, size_t c0, size_t c1, const dc_taps *T,
                               const float *xp, float *y, size_t ldy)
{
    dc2_tile(R, J, b, o0, c0, c1, T, xp, y, ldy);
}

/* dc_pack_x's packed rows, by 8 lanes. */
DC256 static void dc2_pack_x(const dc_job *J, size_t b, size_t c0, size_t c1, const dc_taps *T, const int *idx,
                             size_t nt, size_t per, float *xp)
{
    const size_t ldc = J->len * J->inner; /* floats between channels of x */
    const float *xb = J->x + b * J->C * ldc;
    for (size_t c = c0; c < c1; c++)
        for (size_t i = 0; i < nt; i++) {
            const dc_taps *Ti = &T[idx[i]];
            float *d = xp + i * per + (c - c0) * (size_t)Ti->n * DC_NR;
            for (int j = 0; j < Ti->n; j++, d += DC_NR) {
                const float *s = xb + c * ldc + Ti->src[j];
                const uint32_t m = Ti->mk[j];
                if (c + DC_PF < c1) {
                    _mm_prefetch((const char *)(s + DC_PF * ldc), _MM_HINT_T0);
                    _mm_prefetch((const char *)(s + DC_PF * ldc + 16), _MM_HINT_T0);
                }
                if (m == 0xffffffffu) {
                    for (int q = 0; q < DC_NR; q += 8)
                        _mm256_store_ps(d + q, _mm256_loadu_ps(s + q));
                } else {
                    for (int q = 0; q < DC_NR; q += 8)
                        _mm256_store_ps(d + q, _mm256_maskload_ps(s + q, dc2_mask(m >> q)));
                }
            }
        }
}

#define DC_RUN dc2_run
#define DC_RUN_TGT DC256
#define DC_TILE dc2_tile
#define DC_TILE_ANY dc2_tile_any
#define DC_PACK_X dc2_pack_x
#include "cpu_conv1d_direct_run.h"
#undef DC_RUN
#undef DC_RUN_TGT
#undef DC_TILE
#undef DC_TILE_ANY
#undef DC_PACK_X
#endif

static void dc_body(void *v, size_t part, int tid)
{
    const dc_job *J = v;
    const size_t b = part / J->chunks, i0 = (part % J->chunks) * J->chunk;
    const size_t i1 = i0 + J->chunk < J->tiles ? i0 + J->chunk : J->tiles;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (i0 >= i1)
        return;
    float *xp = J->O > DC_MR || J->mode == DC_PHASES ? J->xp + (size_t)tid * J->xp_floats : NULL;
    float *zb = J->glu ? J->zb + (size_t)tid * J->zb_floats : NULL;
    if (J->avx2)
        dc2_run(J, b, i0, i1, xp, zb);
    else
        dc_run(J, b, i0, i1, xp, zb);
#else
    (void)b, (void)i1, (void)tid;
#endif
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* y[t] = ph[(t + crop) % 4][(t + crop) / 4] for t < L (phases of Q positions each): 16 positions
 * of the four phases interleaved into 64 outputs by permutes, the ends one by one. */
DC512 static void dc_weave4(const float *ph, size_t Q, size_t crop, size_t L, float *y)
{
    const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
    const __m512i p0 = _mm512_set_epi64(11, 3, 10, 2, 9, 1, 8, 0), p1 = _mm512_set_epi64(15, 7, 14, 6, 13, 5, 12, 4);
    const size_t qa = (crop + 3) / 4; /* first q with 4 q - crop >= 0 */
    size_t q = qa;
    for (; 4 * (q + 16) <= L + crop && q + 16 <= Q; q += 16) {
        const __m512 a = _mm512_loadu_ps(ph + q), b = _mm512_loadu_ps(ph + Q + q);
        const __m512 c = _mm512_loadu_ps(ph + 2 * Q + q), d = _mm512_loadu_ps(ph + 3 * Q + q);
        const __m512d ab0 = _mm512_castps_pd(_mm512_permutex2var_ps(a, lo, b));
        const __m512d ab1 = _mm512_castps_pd(_mm512_permutex2var_ps(a, hi, b));
        const __m512d cd0 = _mm512_castps_pd(_mm512_permutex2var_ps(c, lo, d));
        const __m512d cd1 = _mm512_castps_pd(_mm512_permutex2var_ps(c, hi, d));
        float *o = y + 4 * q - crop;
        _mm512_storeu_pd((double *)o, _mm512_permutex2var_pd(ab0, p0, cd0));
        _mm512_storeu_pd((double *)(o + 16), _mm512_permutex2var_pd(ab0, p1, cd0));
        _mm512_storeu_pd((double *)(o + 32), _mm512_permutex2var_pd(ab1, p0, cd1));
        _mm512_storeu_pd((double *)(o + 48), _mm512_permutex2var_pd(ab1, p1, cd1));
    }
    const size_t ta = 4 * qa - crop < L ? 4 * qa - crop : L; /* the ends */
    for (size_t t = 0; t < ta; t++)
        y[t] = ph[((t + crop) % 4) * Q + (t + crop) / 4];
    for (size_t t = 4 * q - crop > ta ? 4 * q - crop : ta; t < L; t++)
        y[t] = ph[((t + crop) % 4) * Q + (t + crop) / 4];
}

/* dc_weave4 by 8 positions of the four phases (32 outputs): a 4 x 4 transpose within each
 * 128-bit half after a permute. */
DC256 static void dc2_weave4(const float *ph, size_t Q, size_t crop, size_t L, float *y)
{
    const __m256i ev = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    const size_t qa = (crop + 3) / 4; /* first q with 4 q - crop >= 0 */
    size_t q = qa;
    for (; 4 * (q + 8) <= L + crop && q + 8 <= Q; q += 8) {
        const __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(ph + q), ev);
        const __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(ph + Q + q), ev);
        const __m256 c = _mm256_permutevar8x32_ps(_mm256_loadu_ps(ph + 2 * Q + q), ev);
        const __m256 d = _mm256_permutevar8x32_ps(_mm256_loadu_ps(ph + 3 * Q + q), ev);
        const __m256 ab0 = _mm256_unpacklo_ps(a, b), ab1 = _mm256_unpackhi_ps(a, b);
        const __m256 cd0 = _mm256_unpacklo_ps(c, d), cd1 = _mm256_unpackhi_ps(c, d);
        float *o = y + 4 * q - crop;
        _mm256_storeu_ps(o, _mm256_shuffle_ps(ab0, cd0, 0x44));
        _mm256_storeu_ps(o + 8, _mm256_shuffle_ps(ab0, cd0, 0xee));
        _mm256_storeu_ps(o + 16, _mm256_shuffle_ps(ab1, cd1, 0x44));
        _mm256_storeu_ps(o + 24, _mm256_shuffle_ps(ab1, cd1, 0xee));
    }
    const size_t ta = 4 * qa - crop < L ? 4 * qa - crop : L; /* the ends */
    for (size_t t = 0; t < ta; t++)
        y[t] = ph[((t + crop) % 4) * Q + (t + crop) / 4];
    for (size_t t = 4 * q - crop > ta ? 4 * q - crop : ta; t < L; t++)
        y[t] = ph[((t + crop) % 4) * Q + (t + crop) / 4];
}
#endif

/* Phases mode: rows [lo, hi) of the op's y (item * O + channel) from the phases,
 * y[t] = phases[(t + crop) % stride][(t + crop) / stride], then the activation. */
typedef struct {
    const dc_job *J;
    size_t rows, parts;
} dc_weave_job;

static void dc_weave(void *v, size_t part, int tid)
{
    (void)tid;
    const dc_weave_job *W = v;
    const dc_job *J = W->J;
    const size_t S = (size_t)J->stride, L = J->len_out;
    size_t lo, hi;
    sl_pool_range(W->rows, W->parts, part, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        const float *ph = J->y + r * S * J->Q;
        float *y = J->yout + r * L;
#ifdef SL_CPU_HAVE_AVX2_PATHS
        if (S == 4) {
            if (J->avx2)
                dc2_weave4(ph, J->Q, (size_t)J->pad, L, y);
            else
                dc_weave4(ph, J->Q, (size_t)J->pad, L, y);
            if (J->act_out != SL_ACT_NONE)
                sl_cpu_epilogue_row(J->act_out, L, y, NULL, NULL, NULL, y);
            continue;
        }
#endif
        for (size_t rho = 0; rho < S; rho++) { /* t + crop = q S + rho */
            const size_t q0 = rho >= (size_t)J->pad % S ? (size_t)J->pad / S : (size_t)J->pad / S + 1;
            for (size_t q = q0, t = q0 * S + rho - (size_t)J->pad; t < L; q++, t += S)
                y[t] = ph[rho * J->Q + q];
        }
        if (J->act_out != SL_ACT_NONE)
            sl_cpu_epilogue_row(J->act_out, L, y, NULL, NULL, NULL, y);
    }
}

/* Strided mode: rows [lo, hi) (item * C + channel) of x split into the phases of the stride,
 * x[rho][j] = the zero-padded signal at j * stride + rho (by permutes for stride 4). */
typedef struct {
    const dc_job *J;
    size_t rows, parts;
} dc_split_job;

#ifdef SL_CPU_HAVE_AVX2_PATHS
/* ph[rho][j] = x[4 j + rho] for j < n16 * 16 (64 floats of x at a time). */
DC512 static void dc_split4(const float *x, size_t n16, size_t n, float *ph)
{
    const __m512i e02 = _mm512_set_epi32(30, 26, 22, 18, 14, 10, 6, 2, 28, 24, 20, 16, 12, 8, 4, 0);
    const __m512i e13 = _mm512_set_epi32(31, 27, 23, 19, 15, 11, 7, 3, 29, 25, 21, 17, 13, 9, 5, 1);
    const __m512i lo = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i hi = _mm512_set_epi32(31, 30, 29, 28, 27, 26, 25, 24, 15, 14, 13, 12, 11, 10, 9, 8);
    for (size_t i = 0; i < n16; i++, x += 64) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const __m512 v2 = _mm512_loadu_ps(x + 32), v3 = _mm512_loadu_ps(x + 48);
        const __m512 a02 = _mm512_permutex2var_ps(v0, e02, v1), a13 = _mm512_permutex2var_ps(v0, e13, v1);
        const __m512 b02 = _mm512_permutex2var_ps(v2, e02, v3), b13 = _mm512_permutex2var_ps(v2, e13, v3);
        _mm512_storeu_ps(ph + 16 * i, _mm512_permutex2var_ps(a02, lo, b02));
        _mm512_storeu_ps(ph + n + 16 * i, _mm512_permutex2var_ps(a13, lo, b13));
        _mm512_storeu_ps(ph + 2 * n + 16 * i, _mm512_permutex2var_ps(a02, hi, b02));
        _mm512_storeu_ps(ph + 3 * n + 16 * i, _mm512_permutex2var_ps(a13, hi, b13));
    }
}

/* dc_split4 by 32 floats of x (8 positions of each phase): a 4 x 4 transpose within each 128-bit
 * half, then a permute. */
DC256 static void dc2_split4(const float *x, size_t n8, size_t n, float *ph)
{
    const __m256i il = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t i = 0; i < n8; i++, x += 32) {
        const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        const __m256 t0 = _mm256_unpacklo_ps(v0, v1), t1 = _mm256_unpackhi_ps(v0, v1);
        const __m256 t2 = _mm256_unpacklo_ps(v2, v3), t3 = _mm256_unpackhi_ps(v2, v3);
        _mm256_storeu_ps(ph + 8 * i, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0x44), il));
        _mm256_storeu_ps(ph + n + 8 * i, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0xee), il));
        _mm256_storeu_ps(ph + 2 * n + 8 * i, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0x44), il));
        _mm256_storeu_ps(ph + 3 * n + 8 * i, _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0xee), il));
    }
}
#endif

static void dc_split(void *v, size_t part, int tid)
{
    (void)tid;
    const dc_split_job *W = v;
    const dc_job *J = W->J;
    const size_t S = (size_t)J->stride, n = J->len / S, pl = (size_t)J->pad, L = J->len_in;
    size_t lo, hi;
    sl_pool_range(W->rows, W->parts, part, &lo, &hi);
    for (size_t r = lo; r < hi; r++) {
        const float *x = J->xin + r * L;
        float *ph = (float *)J->x + r * S * n;
        size_t j0 = 0, j1 = 0; /* positions j of every phase whose j * S + rho - pl is inside x */
        if (n) {
            j0 = (pl + S - 1) / S;
            j1 = (L + pl) / S;
            if (j1 > n)
                j1 = n;
            if (j1 < j0)
                j1 = j0;
        }
#ifdef SL_CPU_HAVE_AVX2_PATHS
        const size_t V = J->avx2 ? 8 : 16; /* positions of a phase per step */
        if (S == 4 && j1 - j0 >= V) {
            const size_t nv = (j1 - j0) / V;
            if (J->avx2)
                dc2_split4(x + 4 * j0 - pl, nv, n, ph + j0);
            else
                dc_split4(x + 4 * j0 - pl, nv, n, ph + j0);
            for (size_t rho = 0; rho < S; rho++) /* the ends one by one */
                for (size_t e = 0; e < 2; e++)
                    for (size_t j = e ? j0 + V * nv : 0; j < (e ? n : j0); j++) {
                        const long p = (long)(j * S + rho) - (long)pl;
                        ph[rho * n + j] = p >= 0 && (size_t)p < L ? x[p] : 0.0f;
                    }
            continue;
        }
#endif
        for (size_t rho = 0; rho < S; rho++)
            for (size_t j = 0; j < n; j++) {
                const long p = (long)(j * S + rho) - (long)pl;
                ph[rho * n + j] = p >= 0 && (size_t)p < L ? x[p] : 0.0f;
            }
    }
}

/* Packs the weights, splits the tiles into parts and runs them: 1, or 0 when out of memory
 * for the packed weights (the caller takes its other path). */
static int dc_go(sl_op_ctx *ctx, dc_job *J, size_t batch, const float *w, size_t k_eff)
{
    J->cols = J->len_out * J->inner;
    if (J->len_out == 0)
        return 1;
    J->cb = DC_KC / k_eff ? DC_KC / k_eff : 1;
    if (J->cb > J->C)
        J->cb = J->C;
    const size_t th = (size_t)sl_pool_threads(ctx->pool);
    dc_pack_shape(J);
    /* blocks: DC_BLOCK tiles; transposed, the tiles of one phase group (up to DC_BLOCK_MAX) or
     * DC_BLOCK positions of every phase, the phases of a position sharing their packed rows */
    J->taps = J->mode >= DC_TRANSPOSED ? J->kw : J->k;
    J->block = J->uniq = DC_BLOCK;
    if (J->mode >= DC_TRANSPOSED) {
        J->block = (size_t)J->stride * (J->mode == DC_TRANSPOSED ? J->per_t : DC_BLOCK);
        if (J->block > DC_BLOCK_MAX)
            J->block = DC_BLOCK_MAX;
        J->uniq = 2 * DC_BLOCK;
    }
    J->xp_floats = J->uniq * J->cb * J->taps * DC_NR;
    const size_t nwp = dc_packed_floats(J), S = (size_t)J->stride;
    size_t nph = 0;
    if (J->mode == DC_PHASES) {
        J->Q = (J->len_out + (size_t)J->pad + S - 1) / S;
        J->cols = S * J->Q;
        nph = batch * J->O * J->cols;
    } else if (J->mode == DC_STRIDED) { /* phases of the zero-padded x, len / stride positions each */
        J->len_in = J->len;
        J->len = S * ((J->len_in + (size_t)J->pad + J->pad_r + S - 1) / S);
        nph = batch * J->C * J->len;
    }
    if (nph > DC_MAX_PHASES) /* the whole signal's phases: past the bound, the im2col / col2im paths */
        return 0;
    J->zb_floats = J->glu ? J->O * DC_BLOCK * DC_NR : 0;
    float *ws = sl_cpu_scratch(ctx, th * J->xp_floats + nwp + nph + th * J->zb_floats + 16);
    if (!ws)
        return 0;
    J->xp = (float *)(((uintptr_t)ws + 63) & ~(uintptr_t)63);
    J->zb = J->xp + th * J->xp_floats + nwp + nph;
    if (!(J->wp = dc_weights(ctx, J, w, J->xp + th * J->xp_floats)))
        return 0;
    if (J->mode == DC_PHASES) {
        J->yout = J->y, J->act_out = J->act;
        J->y = J->xp + th * J->xp_floats + nwp, J->act = SL_ACT_NONE;
        J->tiles = S * ((J->Q + DC_NR - 1) / DC_NR);
    } else if (J->mode == DC_STRIDED) {
        J->xin = J->x;
        J->x = J->xp + th * J->xp_floats + nwp;
        dc_split_job W = {J, batch * J->C, th > 1 ? 4 * th : 1};
        if (W.parts > W.rows)
            W.parts = W.rows;
        sl_pool_for(th > 1 ? ctx->pool : NULL, W.parts, dc_split, &W);
        J->tiles = (J->len_out + DC_NR - 1) / DC_NR;
    } else {
        J->tiles = J->per_t ? J->len_out * J->per_t : (J->len_out + DC_NR - 1) / DC_NR;
    }
    /* parts: whole items when there are enough of them, else about 4 per thread */
    J->chunks = 1;
    if (th > 1 && batch < 4 * th)
        J->chunks = (4 * th + batch - 1) / batch;
    if (J->chunks > J->tiles)
        J->chunks = J->tiles;
    J->chunk = (J->tiles + J->chunks - 1) / J->chunks;
    J->chunks = (J->tiles + J->chunk - 1) / J->chunk;
    sl_pool_for(th > 1 ? ctx->pool : NULL, batch * J->chunks, dc_body, J);
    if (J->mode == DC_PHASES) {
        dc_weave_job W = {J, batch * J->O, th > 1 ? 4 * th : 1};
        if (W.parts > W.rows)
            W.parts = W.rows;
        sl_pool_for(th > 1 ? ctx->pool : NULL, W.parts, dc_weave, &W);
    }
    return 1;
}

static atomic_int dc_enabled = 1;

int sl_cpu_conv1d_direct_set(int enable) { return atomic_exchange(&dc_enabled, enable ? 1 : 0); }

/* Which kernels take the op: 0 none (the im2col / col2im paths), 1 AVX-512, 2 AVX2 + FMA. */
static int dc_isa(void)
{
    if (!atomic_load_explicit(&dc_enabled, memory_order_relaxed))
        return 0;
    return sl_cpu_simd_avx512() ? 1 : sl_cpu_simd_fma() ? 2 : 0;
}

int sl_cpu_conv1d_direct_isa(void) { return dc_isa(); }

int sl_cpu_conv1d_direct(sl_op_ctx *ctx, const sl_conv1d_args *a)
{
    if (a->groups != 1 || a->k > DC_MAX_K || a->batch == 0)
        return 0;
    dc_job J = {.x = a->x, .bias = a->bias, .y = a->y, .C = (size_t)a->c_in, .O = (size_t)a->c_out,
                .k = (size_t)a->k, .len = a->len, .inner = a->inner, .stride = a->stride, .dil = a->dilation,
                .pad = a->pad_l, .act = a->act, .len_out = sl_conv1d_len_out(a), .glu = a->glu};
    if (a->inner == 1 && a->stride == 1)
        J.mode = DC_CONTIG, J.per_t = 0;
    else if (a->glu)
        return 0;
    else if (a->inner == 1)
        J.mode = DC_STRIDED, J.per_t = 0, J.pad_r = (size_t)a->pad_r;
    else if (a->inner >= 16)
        J.mode = DC_INNER, J.per_t = (a->inner + DC_NR - 1) / DC_NR;
    else
        return 0;
    const int isa = dc_isa();
    if (!isa)
        return 0;
    J.avx2 = isa == 2;
    return dc_go(ctx, &J, a->batch, a->wt, (size_t)a->k);
}

int sl_cpu_convt1d_direct(sl_op_ctx *ctx, const sl_convt1d_args *a)
{
    if ((a->inner < 16 && a->inner != 1) || a->k > DC_MAX_K || a->batch == 0)
        return 0;
    const int isa = dc_isa();
    if (!isa)
        return 0;
    dc_job J = {.mode = a->inner == 1 ? DC_PHASES : DC_TRANSPOSED, .x = a->x, .bias = a->bias, .y = a->y, .C = (size_t)a->c_in,
                .O = (size_t)a->c_out, .k = (size_t)a->k, .len = a->len, .inner = a->inner, .stride = a->stride,
                .dil = 1, .pad = a->crop, .act = a->act, .len_out = a->len_out,
                .per_t = (a->inner + DC_NR - 1) / DC_NR, .avx2 = isa == 2};
    return dc_go(ctx, &J, a->batch, a->wt, ((size_t)a->k + (size_t)a->stride - 1) / (size_t)a->stride);
}
