/* CPU conv2d (the pooling ops are in cpu_pool.c).
 *
 * conv2d takes one of four paths, by shape (sl_cpu_conv2d at the end):
 *  - 3x3 on images at most 2 columns wide (Cnn14's last block, 31 x 2): a
 *    kernel that skips the taps that only read the zero padding (a third of
 *    them at W = 2) and reads the weights in place (AVX2 + FMA or AVX-512;
 *    x86-64 with those only, else the next paths), in cpu_conv_narrow.c;
 *  - 3x3 with >= 16 input channels on images of >= 32 2x2 tiles (Cnn14's
 *    blocks 1-5): Winograd F(2x2, 3x3), 16 GEMMs on transformed tiles, 16/36
 *    of the multiplications of the direct form (OpenBLAS; with AVX-512, and with
 *    AVX2 + FMA below WG_AVX2_OC channel pairs, an 8 x 32 kernel of ours, wk_gemm,
 *    on weights transformed into its layout: the same bits on both); on request
 *    (sl_conv2d_args.wino4: HT-Demucs's decoder rewrites) F(4x4, 3x3) instead, 36
 *    GEMMs, 36/144 of the multiplications, transforms in cpu_conv_wg4.c, its GEMMs
 *    by wk_gemm wherever there is AVX2 + FMA;
 *  - 3x3 with one input channel (Cnn14's first layer): a direct sum per
 *    output row, written once;
 *  - anything else: im2col + one OpenBLAS GEMM per block of output rows.
 * All add the bias and apply the activation in their epilogue, and all
 * agree with the double-precision definition to ~1e-6 of the output's range,
 * F(4x4) to a few 1e-6 (tests/unit/test_conv_ops.c). Every path splits over the context's threads
 * (common/sl_pool.h): the GEMMs by rows / columns or by Winograd position, the
 * transforms, im2col, epilogues and the direct path by channel (Winograd on
 * AVX-512 with two chunks of tile rows per thread or more: by whole chunks), the
 * narrow kernel by output channel blocks. Every part writes a disjoint range. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_conv.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

/* Floats of im2col scratch per GEMM: bounds the memory whatever the image. */
#define CONV_COL_FLOATS ((size_t)1 << 24)

/* col[(c*k + u)*k + v][r*W + j] = x[c][r0 + r + u - p][j + v - p] (0 outside), r < rows, c0 <= c < c1. */
static void im2col(const float *x, int c0, int c1, int H, int W, int k, int r0, int rows, float *col)
{
    const int p = k / 2;
    const size_t n = (size_t)rows * (size_t)W;
    for (int c = c0; c < c1; c++) {
        const float *xc = x + (size_t)c * H * W;
        for (int u = 0; u < k; u++)
            for (int v = 0; v < k; v++) {
                float *dst = col + ((size_t)(c * k + u) * k + v) * n;
                for (int r = 0; r < rows; r++) {
                    const int i = r0 + r + u - p;
                    float *d = dst + (size_t)r * W;
                    if (i < 0 || i >= H) {
                        memset(d, 0, (size_t)W * sizeof(float));
                        continue;
                    }
                    const float *s = xc + (size_t)i * W;
                    const int j0 = p - v > 0 ? p - v : 0;          /* first j with j+v-p >= 0 */
                    const int j1 = W + p - v < W ? W + p - v : W;  /* first j with j+v-p >= W */
                    for (int j = 0; j < j0 && j < W; j++)
                        d[j] = 0.0f;
                    if (j1 > j0)
                        memcpy(d + j0, s + j0 + v - p, (size_t)(j1 - j0) * sizeof(float));
                    for (int j = j1 > j0 ? j1 : j0; j < W; j++)
                        d[j] = 0.0f;
                }
            }
    }
}

/* Bias + activation on channels o0 .. o1 - 1 of y[O][HW]. */
static void bias_act(float *y, size_t HW, int o0, int o1, const float *bias, sl_act act)
{
    for (int o = o0; o < o1; o++) {
        float *yo = y + (size_t)o * HW;
        const float bo = bias ? bias[o] : 0.0f;
        if (act == SL_ACT_RELU) { /* branch-free so it vectorises; NaN stays NaN */
            for (size_t i = 0; i < HW; i++) {
                const float v = yo[i] + bo;
                yo[i] = v < 0.0f ? 0.0f : v;
            }
        } else {
            for (size_t i = 0; i < HW; i++)
                yo[i] = conv_act(act, yo[i] + bo);
        }
    }
}

/* ---- threads ----
 *
 * Loops over channels run as one pool loop of contiguous ranges, one per thread:
 * the passes are memory-bound and a range keeps each thread's stores together.
 * Passes over fewer than CONV_PAR_MIN floats run on the calling thread. */
#define CONV_PAR_MIN ((size_t)1 << 14)

typedef struct {
    void (*fn)(const void *job, int lo, int hi, int tid); /* channels [lo, hi) */
    const void *job;
    int n; /* channels */
    size_t parts;
} chan_loop;

static void chan_body(void *v, size_t i, int tid)
{
    const chan_loop *L = v;
    size_t lo, hi;
    sl_pool_range((size_t)L->n, L->parts, i, &lo, &hi);
    if (lo < hi)
        L->fn(L->job, (int)lo, (int)hi, tid);
}

/* fn(job, lo, hi, tid) over channels [0, n), one range per thread of ctx (serial below
 * CONV_PAR_MIN floats of work). */
void sl_cpu_chan_for(sl_op_ctx *ctx, int n, size_t floats, void (*fn)(const void *, int, int, int),
                     const void *job)
{
    size_t parts = floats < CONV_PAR_MIN ? 1 : (size_t)sl_pool_threads(ctx->pool);
    if (parts > (size_t)n)
        parts = (size_t)n;
    chan_loop L = {fn, job, n, parts};
    sl_pool_for(ctx->pool, parts, chan_body, &L);
}

typedef struct {
    const float *x;
    int H, W, k, r0, nr;
    float *col;
    float *y; /* epilogue */
    size_t HW;
    const float *bias;
    sl_act act;
} i2c_job;

static void i2c_part(const void *v, int lo, int hi, int tid)
{
    (void)tid;
    const i2c_job *j = v;
    im2col(j->x, lo, hi, j->H, j->W, j->k, j->r0, j->nr, j->col);
}

static void epi_part(const void *v, int lo, int hi, int tid)
{
    (void)tid;
    const i2c_job *j = v;
    bias_act(j->y, j->HW, lo, hi, j->bias, j->act);
}

/* Any k: im2col + one GEMM per block of output rows, then the bias + activation epilogue. */
static int conv_im2col(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    const int C = a->c_in, O = a->c_out, H = a->h, W = a->w, k = a->k;
    const size_t K = (size_t)C * k * k, HW = (size_t)H * W;
    size_t rows = CONV_COL_FLOATS / (K * (size_t)W);
    if (rows < 1)
        rows = 1;
    if (rows > (size_t)H)
        rows = (size_t)H;
    float *col = NULL;
    if (k > 1 && !(col = sl_cpu_scratch(ctx, K * rows * (size_t)W)))
        return SL_ENOMEM;
    for (size_t b = 0; b < a->batch; b++) {
        const float *x = a->x + b * (size_t)C * HW;
        float *y = a->y + b * (size_t)O * HW;
        for (int r0 = 0; r0 < H; r0 += (int)rows) {
            const int nr = H - r0 < (int)rows ? H - r0 : (int)rows;
            const size_t n = (size_t)nr * W;
            const float *B = x + (size_t)r0 * W;
            size_t ldb = HW;
            if (k > 1) {
                i2c_job j = {.x = x, .H = H, .W = W, .k = k, .r0 = r0, .nr = nr, .col = col};
                sl_cpu_chan_for(ctx, C, K * n, i2c_part, &j);
                B = col;
                ldb = n;
            }
            /* y[o][r0*W ..] = wt[o][K] . col[K][n] */
            sl_cpu_sgemm(ctx, 0, (size_t)O, n, K, a->wt, K, B, ldb, y + (size_t)r0 * W, HW);
        }
        if (!a->bias && a->act == SL_ACT_NONE)
            continue;
        i2c_job j = {.y = y, .HW = HW, .bias = a->bias, .act = a->act};
        sl_cpu_chan_for(ctx, O, (size_t)O * HW, epi_part, &j);
    }
    return 0;
}

/* ---- 3x3 convolution by Winograd F(2x2, 3x3) (Lavin & Gray 2016) ----
 *
 * Each 2x2 block ("tile") of outputs of one output channel is A^T [sum_c (G g_oc G^T) .* (B^T d_c B)] A,
 * with d_c the 4x4 input patch of the tile (zero outside the image) and g_oc the 3x3 kernel:
 *
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 *
 * The sum over c for each of the 16 transformed positions xi is one GEMM:
 * M[xi][o][t] = sum_c U[xi][o][c] V[xi][c][t], 16 GEMMs of O x tiles x C instead of one of
 * O x pixels x 9C: 16 / 36 of the multiplications. The transforms only add, subtract and halve,
 * so the result stays close to the direct sum (test_conv_ops: ~1e-6 of the output range,
 * like im2col + GEMM). The transformed weights U (16/9 the size of w) are formed per call:
 * a pass over w, small next to the GEMMs for the shapes this path takes. */

/* sl_cpu_fixed_form's tag of U for O x C channels. */
#define WG_FORM_TAG(O, C) (((uint64_t)0x3f23 << 40) | ((uint64_t)(O) << 20) | (uint64_t)(C))

/* Floats of V + M per chunk of tile rows: bounds the scratch whatever the image. */
#define WG_CHUNK_FLOATS ((size_t)1 << 21)
/* The same with wk_gemm, which does not repack U per chunk: V and M of a chunk in L2. */
#define WG_CHUNK_PACKED ((size_t)1 << 19)

/* wk_gemm with AVX2 + FMA for O x C below this (its U, 64 O C bytes, small enough to be read
 * again for each group of panels); above, OpenBLAS, faster there on an AMD Zen 3 (L2 512 KiB).
 * F(4x4)'s GEMMs (fewer tiles per position) by wk_gemm whatever O x C: 10-15 % faster than
 * OpenBLAS's at HT-Demucs's 384 x 768 and 192 x 384 on the same CPU. */
#define WG_AVX2_OC ((size_t)1 << 16)

/* U[xi][o][c] = (G g G^T)[xi] of w[o][c][3][3] at U + xi * us (float: the halvings are exact),
 * for the (o, c) pairs oc0 .. oc1 - 1 of C input channels; packed: element (o, c) of each
 * matrix at (o / 8) 8 C + 8 c + o % 8 instead (wk_gemm's blocks of 8 rows). */
static void wg_weights(const float *restrict w, size_t oc0, size_t oc1, size_t C, int packed, size_t us,
                       float *restrict U)
{
    for (size_t oc = oc0; oc < oc1; oc++) {
        const size_t o = oc / C, at = packed ? (o / 8) * 8 * C + 8 * (oc % C) + o % 8 : oc;
        const float *g = w + oc * 9;
        float t[4][3];
        for (int j = 0; j < 3; j++) {
            const float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j], h = 0.5f * (g0 + g2);
            t[0][j] = g0;
            t[1][j] = h + 0.5f * g1;
            t[2][j] = h - 0.5f * g1;
            t[3][j] = g2;
        }
        for (int i = 0; i < 4; i++) {
            const float h = 0.5f * (t[i][0] + t[i][2]);
            float *u = U + (size_t)(i * 4) * us + at;
            u[0] = t[i][0];
            u[us] = h + 0.5f * t[i][1];
            u[2 * us] = h - 0.5f * t[i][1];
            u[3 * us] = t[i][2];
        }
    }
}

/* Padded rows s0 .. s0 + ns - 1 of one channel xc [H][W] into P[ns][2 * E1]: the image with one
 * row / column of zeros before and enough after for whole tiles, each padded row stored as its
 * even columns (E1 = tw + 1 of them) then its odd ones, so that the transforms below read whole
 * rows with unit stride. Padded row s is image row s - 1, padded column s image column s - 1. */
static void wg_pad_rows(const float *restrict xc, int H, int W, int E1, int s0, int ns, float *restrict P)
{
    const size_t PR = 2 * (size_t)E1;
    for (int q = 0; q < ns; q++) {
        float *restrict ev = P + (size_t)q * PR, *restrict od = ev + E1;
        const int r = s0 + q - 1;
        if (r < 0 || r >= H) {
            memset(ev, 0, PR * sizeof(float));
            continue;
        }
        const float *restrict s = xc + (size_t)r * W;
        const int ne = W / 2, no = (W + 1) / 2; /* image columns 2j - 1 (j = 1..ne), 2j (j < no) */
        ev[0] = 0.0f;
        for (int j = 1; j <= ne; j++)
            ev[j] = s[2 * j - 1];
        for (int j = ne + 1; j < E1; j++)
            ev[j] = 0.0f;
        for (int j = 0; j < no; j++)
            od[j] = s[2 * j];
        for (int j = no; j < E1; j++)
            od[j] = 0.0f;
    }
}

/* V[xi][c][t] = (B^T d B)[xi] of the tiles of tile rows ti0 .. ti0 + nrow - 1 (t = (ti - ti0) * tw + tj),
 * from the padded rows P of channel c at P + (c * PH + s) * 2 E1 (wg_pad_rows). tmp: 8 * E1 floats. */
static void wg_input(const float *P, int c0, int c1, int PH, int tw, int ti0, int nrow, size_t CN, size_t ld,
                     float *restrict tmp, float *restrict V)
{
    const int E1 = tw + 1;
    const size_t PR = 2 * (size_t)E1;
    for (int c = c0; c < c1; c++)
        for (int r = 0; r < nrow; r++) {
            const float *restrict p0 = P + ((size_t)c * PH + 2 * (size_t)(ti0 + r)) * PR;
            const float *restrict p1 = p0 + PR, *restrict p2 = p1 + PR, *restrict p3 = p2 + PR;
            /* rows: B^T d, on whole padded rows */
            for (size_t q = 0; q < PR; q++) {
                tmp[q] = p0[q] - p2[q];
                tmp[PR + q] = p1[q] + p2[q];
                tmp[2 * PR + q] = p2[q] - p1[q];
                tmp[3 * PR + q] = p1[q] - p3[q];
            }
            /* columns: (B^T d) B; tile tj reads padded columns 2tj .. 2tj + 3 = ev[tj], od[tj], ev[tj + 1], od[tj + 1] */
            float *v = V + (size_t)c * ld + (size_t)r * tw;
            for (int k = 0; k < 4; k++) {
                const float *restrict ev = tmp + k * PR, *restrict od = ev + E1;
                float *restrict v0 = v + (size_t)(4 * k) * CN, *restrict v1 = v0 + CN, *restrict v2 = v1 + CN,
                                *restrict v3 = v2 + CN;
                for (int tj = 0; tj < tw; tj++) {
                    v0[tj] = ev[tj] - ev[tj + 1];
                    v1[tj] = od[tj] + ev[tj + 1];
                    v2[tj] = ev[tj + 1] - od[tj];
                    v3[tj] = od[tj] - od[tj + 1];
                }
            }
        }
}

/* y[o][2ti + a][2tj + b] = act(bias[o] + (A^T M A)[a][b]) for the tiles of the chunk (inside the image).
 * rowbuf: 4 * tw floats. */
static void wg_output(const float *M, int o0, int o1, int H, int W, int tw, int ti0, int nrow, size_t ON, size_t ld,
                      const float *bias, sl_act act, float *restrict rowbuf, float *y)
{
    float *restrict y0 = rowbuf, *restrict y1 = rowbuf + 2 * (size_t)tw;
    for (int o = o0; o < o1; o++) {
        const float bo = bias ? bias[o] : 0.0f;
        for (int r = 0; r < nrow; r++) {
            const float *restrict m = M + (size_t)o * ld + (size_t)r * tw;
            const float *restrict m0 = m, *restrict m1 = m + ON, *restrict m2 = m + 2 * ON, *restrict m3 = m + 3 * ON,
                                  *restrict m4 = m + 4 * ON, *restrict m5 = m + 5 * ON, *restrict m6 = m + 6 * ON,
                                  *restrict m7 = m + 7 * ON, *restrict m8 = m + 8 * ON, *restrict m9 = m + 9 * ON,
                                  *restrict m10 = m + 10 * ON, *restrict m11 = m + 11 * ON, *restrict m12 = m + 12 * ON,
                                  *restrict m13 = m + 13 * ON, *restrict m14 = m + 14 * ON, *restrict m15 = m + 15 * ON;
            for (int tj = 0; tj < tw; tj++) {
                /* rows: A^T M */
                const float a0 = m0[tj] + m4[tj] + m8[tj], a1 = m1[tj] + m5[tj] + m9[tj],
                            a2 = m2[tj] + m6[tj] + m10[tj], a3 = m3[tj] + m7[tj] + m11[tj];
                const float b0 = m4[tj] - m8[tj] - m12[tj], b1 = m5[tj] - m9[tj] - m13[tj],
                            b2 = m6[tj] - m10[tj] - m14[tj], b3 = m7[tj] - m11[tj] - m15[tj];
                /* columns: (A^T M) A */
                y0[2 * tj] = a0 + a1 + a2 + bo;
                y0[2 * tj + 1] = a1 - a2 - a3 + bo;
                y1[2 * tj] = b0 + b1 + b2 + bo;
                y1[2 * tj + 1] = b1 - b2 - b3 + bo;
            }
            const int i = 2 * (ti0 + r);
            for (int half = 0; half < 2 && i + half < H; half++) {
                const float *restrict src = half ? y1 : y0;
                float *restrict d = y + ((size_t)o * H + (size_t)(i + half)) * W;
                if (act == SL_ACT_RELU) {
                    for (int j = 0; j < W; j++) {
                        const float v = src[j];
                        d[j] = v < 0.0f ? 0.0f : v;
                    }
                } else if (act == SL_ACT_NONE) {
                    memcpy(d, src, (size_t)W * sizeof(float));
                } else {
                    for (int j = 0; j < W; j++)
                        d[j] = conv_act(act, src[j]);
                }
            }
        }
    }
}

/* The same transforms with AVX2 / AVX-512 vectors (cpu_wino_simd.h: the same bits), taken at
 * run time (cpu_simd.h: sl_cpu_simd_avx2, sl_cpu_simd_avx512). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WG_HAVE_SIMD 1
#include <immintrin.h>
#define SL_SIMD_BODY "cpu_wino_simd.h"
#include "cpu_simd_each.h"
#undef SL_SIMD_BODY
#else
#define WG_HAVE_SIMD 0
#endif

/* n rounded up to whole cache lines plus one: the 16 matrices of U, V and M then start at
 * different cache sets, which the transforms (16 streams at once) need. */
static size_t wg_align(size_t n) { return ((n + 15) & ~(size_t)15) + 16; }

typedef struct {
    const sl_conv2d_args *a;
    int C, O, H, W, E1, tw, ti0, nrow;
    int simd;   /* 0 portable, 1 AVX2, 2 AVX-512 transforms */
    int packed; /* U in blocks of 8 rows and the GEMMs by wk_gemm (AVX-512, or AVX2 + FMA), else OpenBLAS */
    int m, npos; /* tiles of m x m outputs (2, or 4: cpu_conv_wg4.c), npos = (m + 2)^2 transformed positions */
    size_t us, vs, ms, nt, vld, mld, tmp_stride, gparts;
    size_t pad_stride; /* floats of padded rows per thread: those of one chunk of one channel */
    size_t rows, chunks, ld, vm_stride; /* chunks per item of rows tile rows; per-thread V + M (wg_chunk_body) */
    const float *x;    /* this item's input */
    float *U, *P, *V, *M, *tmp, *y;
} wg_job;

static void wg_weights_part(const void *v, int lo, int hi, int tid)
{
    (void)tid;
    const wg_job *j = v;
    if (j->m == 4) {
        sl_wg4_weights(j->a->wt, (size_t)lo * j->C, (size_t)hi * j->C, (size_t)j->C, j->packed, j->us, j->U);
        return;
    }
    wg_weights(j->a->wt, (size_t)lo * j->C, (size_t)hi * j->C, (size_t)j->C, j->packed, j->us, j->U);
}

/* Channels lo .. hi - 1 of the chunk: each channel's padded rows (the chunk's 2 nrow + 2, in this
 * thread's P) then its transform. The copy is the same floats on every path. */
#if WG_HAVE_SIMD
/* Prefetches image rows s0 - 1 .. s0 + ns - 2 of channel xc (those of wg_pad_rows inside the image). */
static void wg_prefetch_rows(const float *xc, int H, int W, int s0, int ns)
{
    const int r0 = s0 - 1 < 0 ? 0 : s0 - 1, r1 = s0 + ns - 1 < H ? s0 + ns - 1 : H;
    if (r1 <= r0)
        return;
    const char *p = (const char *)(xc + (size_t)r0 * W), *e = (const char *)(xc + (size_t)r1 * W);
    for (; p < e; p += 64)
        _mm_prefetch(p, _MM_HINT_T0);
}
#endif

static void wg_input_part(const void *v, int lo, int hi, int tid)
{
    const wg_job *j = v;
    float *tmp = j->tmp + (size_t)tid * j->tmp_stride, *P = j->P + (size_t)tid * j->pad_stride;
    const int ns = j->m * j->nrow + 2;
    const size_t HW = (size_t)j->H * j->W;
    for (int c = lo; c < hi; c++) {
        float *Vc = j->V + (size_t)c * j->vld;
        if (j->m == 4) {
#if WG_HAVE_SIMD
            if (j->simd && c + 1 < hi)
                wg_prefetch_rows(j->x + (size_t)(c + 1) * HW, j->H, j->W, 4 * j->ti0, ns);
#endif
            sl_wg4_input(j->x + (size_t)c * HW, j->H, j->W, j->tw, j->ti0, j->nrow, j->vs, P, tmp, Vc);
            continue;
        }
#if WG_HAVE_SIMD
        if (j->simd) {
            if (c + 1 < hi) /* the next channel's rows of the chunk, while this one is transformed */
                wg_prefetch_rows(j->x + (size_t)(c + 1) * HW, j->H, j->W, 2 * j->ti0, ns);
            (j->simd == 2 ? wg_pad_rows_avx512 : wg_pad_rows_avx2)(j->x + (size_t)c * HW, j->H, j->W, j->E1,
                                                                   2 * j->ti0, ns, P);
            (j->simd == 2 ? wg_input_avx512 : wg_input_avx2)(P, 0, 1, ns, j->tw, 0, j->nrow, j->vs, j->vld, tmp, Vc);
        } else
#endif
        {
            wg_pad_rows(j->x + (size_t)c * HW, j->H, j->W, j->E1, 2 * j->ti0, ns, P);
            wg_input(P, 0, 1, ns, j->tw, 0, j->nrow, j->vs, j->vld, tmp, Vc);
        }
    }
    /* wk_gemm reads whole panels of 32 columns: zeros past nt (never denormal garbage) */
    const size_t end = (j->nt + 31) & ~(size_t)31;
    if (j->packed && end > j->nt)
        for (int xi = 0; xi < j->npos; xi++)
            for (int c = lo; c < hi; c++)
                memset(j->V + (size_t)xi * j->vs + (size_t)c * j->vld + j->nt, 0, (end - j->nt) * sizeof(float));
}

static void wg_output_part(const void *v, int lo, int hi, int tid)
{
    const wg_job *j = v;
    if (j->m == 4) {
        sl_wg4_output(j->M, lo, hi, j->H, j->W, j->tw, j->ti0, j->nrow, j->ms, j->mld, j->a->bias, j->a->act,
                      j->tmp + (size_t)tid * j->tmp_stride, j->y);
        return;
    }
#if WG_HAVE_SIMD
    if (j->simd && (j->a->act == SL_ACT_NONE || j->a->act == SL_ACT_RELU)) {
        (j->simd == 2 ? wg_output_avx512 : wg_output_avx2)(j->M, lo, hi, j->H, j->W, j->tw, j->ti0, j->nrow, j->ms,
                                                           j->mld, j->a->bias, j->a->act,
                                                           j->tmp + (size_t)tid * j->tmp_stride, j->y);
        return;
    }
#endif
    wg_output(j->M, lo, hi, j->H, j->W, j->tw, j->ti0, j->nrow, j->ms, j->mld, j->a->bias, j->a->act,
              j->tmp + (size_t)tid * j->tmp_stride, j->y);
}

#if WG_HAVE_SIMD
/* M[r][0..31] = sum over c < C, in order, of U[c][r] V[c][0..31] for the 8 rows r of a block:
 * U packed (8 floats per c), V rows vld apart, M rows mld apart. */
#define WK_ROW(r)                                                                                                \
    do {                                                                                                         \
        const __m512 av = _mm512_set1_ps(U[r]);                                                                  \
        c##r##0 = _mm512_fmadd_ps(av, b0, c##r##0);                                                              \
        c##r##1 = _mm512_fmadd_ps(av, b1, c##r##1);                                                              \
    } while (0)
#define WK_STORE(r)                                                                                              \
    do {                                                                                                         \
        _mm512_storeu_ps(M + (size_t)(r) * mld, c##r##0);                                                        \
        _mm512_storeu_ps(M + (size_t)(r) * mld + 16, c##r##1);                                                   \
    } while (0)

__attribute__((target("avx512f,avx512vl,avx512dq"))) static void wk_kernel(int C, const float *restrict U,
                                                                           const float *restrict V, size_t vld,
                                                                           float *restrict M, size_t mld)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    for (int c = 0; c < C; c++, U += 8, V += vld) {
        const __m512 b0 = _mm512_loadu_ps(V), b1 = _mm512_loadu_ps(V + 16);
        WK_ROW(0);
        WK_ROW(1);
        WK_ROW(2);
        WK_ROW(3);
        WK_ROW(4);
        WK_ROW(5);
        WK_ROW(6);
        WK_ROW(7);
    }
    WK_STORE(0);
    WK_STORE(1);
    WK_STORE(2);
    WK_STORE(3);
    WK_STORE(4);
    WK_STORE(5);
    WK_STORE(6);
    WK_STORE(7);
}

/* wk_kernel on 16 columns (a last panel with at most 16 columns to compute): the same sums. */
__attribute__((target("avx512f,avx512vl,avx512dq"))) static void wk_kernel16(int C, const float *restrict U,
                                                                             const float *restrict V, size_t vld,
                                                                             float *restrict M, size_t mld)
{
    __m512 c[8];
    for (int r = 0; r < 8; r++)
        c[r] = _mm512_setzero_ps();
    for (int k = 0; k < C; k++, U += 8, V += vld) {
        const __m512 b0 = _mm512_loadu_ps(V);
        _Pragma("GCC unroll 8") for (int r = 0; r < 8; r++) c[r] = _mm512_fmadd_ps(_mm512_set1_ps(U[r]), b0, c[r]);
    }
    for (int r = 0; r < 8; r++)
        _mm512_storeu_ps(M + (size_t)r * mld, c[r]);
}

/* wk_kernel with AVX2 + FMA (16 ymm registers: tiles of 4 rows x 16 columns, eight
 * accumulators): the 8 rows of a block against `cols` (16 or 32) columns, each element summed
 * over c in order with one fma per product, as wk_kernel does: the same bits. A strip of 16
 * columns of V serves both halves of the block's rows while in L1. */
__attribute__((target("avx2,fma"))) static void wk_kernel_avx2(int C, const float *restrict U,
                                                               const float *restrict V, size_t vld,
                                                               float *restrict M, size_t mld, int cols)
{
    for (int j = 0; j < cols; j += 16)
        for (int h = 0; h < 8; h += 4) {
            __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
                   c31 = c00;
            const float *u = U + h, *x = V + j;
            for (int c = 0; c < C; c++, u += 8, x += vld) {
                const __m256 b0 = _mm256_loadu_ps(x), b1 = _mm256_loadu_ps(x + 8);
                __m256 av = _mm256_broadcast_ss(u);
                c00 = _mm256_fmadd_ps(av, b0, c00);
                c01 = _mm256_fmadd_ps(av, b1, c01);
                av = _mm256_broadcast_ss(u + 1);
                c10 = _mm256_fmadd_ps(av, b0, c10);
                c11 = _mm256_fmadd_ps(av, b1, c11);
                av = _mm256_broadcast_ss(u + 2);
                c20 = _mm256_fmadd_ps(av, b0, c20);
                c21 = _mm256_fmadd_ps(av, b1, c21);
                av = _mm256_broadcast_ss(u + 3);
                c30 = _mm256_fmadd_ps(av, b0, c30);
                c31 = _mm256_fmadd_ps(av, b1, c31);
            }
            float *m = M + (size_t)h * mld + j;
            _mm256_storeu_ps(m, c00);
            _mm256_storeu_ps(m + 8, c01);
            _mm256_storeu_ps(m + mld, c10);
            _mm256_storeu_ps(m + mld + 8, c11);
            _mm256_storeu_ps(m + 2 * mld, c20);
            _mm256_storeu_ps(m + 2 * mld + 8, c21);
            _mm256_storeu_ps(m + 3 * mld, c30);
            _mm256_storeu_ps(m + 3 * mld + 8, c31);
        }
}

/* GEMM xi, blocks of 8 output channels of part `part` of `parts`: every block's rows of U
 * (C x 8, read once) against each panel of 32 columns of V (the chunk's V of one position
 * stays in L2; a last panel of at most 16 columns by wk_kernel16). Each output comes from one
 * kernel call, its products summed in the same order by both kernels: the same bits whatever
 * the parts. */
static void wk_gemm(const wg_job *j, size_t xi, size_t part, size_t parts)
{
    const size_t nb = ((size_t)j->O + 7) / 8, np = j->nt / 32, tail = j->nt % 32;
    size_t lo, hi;
    sl_pool_range(nb, parts, part, &lo, &hi);
    if (j->simd == 1) { /* AVX2: groups of panels of V that stay in L2 (~192 KiB) while every block passes */
        const size_t npan = np + (tail != 0), C = (size_t)j->C;
        size_t pg = ((size_t)192 << 10) / (C * 32 * sizeof(float));
        if (pg < 1)
            pg = 1;
        for (size_t p0 = 0; p0 < npan; p0 += pg) {
            const size_t p1 = p0 + pg < npan ? p0 + pg : npan;
            for (size_t ob = lo; ob < hi; ob++) {
                const float *Ub = j->U + xi * j->us + ob * 8 * C, *Vx = j->V + xi * j->vs;
                float *Mb = j->M + xi * j->ms + ob * 8 * j->mld;
                for (size_t p = p0; p < p1; p++)
                    wk_kernel_avx2(j->C, Ub, Vx + 32 * p, j->vld, Mb + 32 * p, j->mld,
                                   p < np || tail > 16 ? 32 : 16);
            }
        }
        return;
    }
    for (size_t ob = lo; ob < hi; ob++) {
        const float *Ub = j->U + xi * j->us + ob * 8 * (size_t)j->C;
        float *Mb = j->M + xi * j->ms + ob * 8 * j->mld;
        const float *Vx = j->V + xi * j->vs;
        for (size_t p = 0; p < np; p++)
            wk_kernel(j->C, Ub, Vx + 32 * p, j->vld, Mb + 32 * p, j->mld);
        if (tail)
            (tail > 16 ? wk_kernel : wk_kernel16)(j->C, Ub, Vx + 32 * np, j->vld, Mb + 32 * np, j->mld);
    }
}
#endif

/* GEMM xi of the 16 (part i % gparts of it when there are more than 16 threads). */
static void wg_gemm_body(void *v, size_t i, int tid)
{
    (void)tid;
    const wg_job *j = v;
    const size_t xi = i / j->gparts;
#if WG_HAVE_SIMD
    if (j->packed) {
        wk_gemm(j, xi, i % j->gparts, j->gparts);
        return;
    }
#endif
    sl_cpu_sgemm_part(i % j->gparts, j->gparts, 0, (size_t)j->O, j->nt, (size_t)j->C, j->U + xi * j->us,
                      (size_t)j->C, j->V + xi * j->vs, j->nt, j->M + xi * j->ms, j->nt);
}

/* Chunk i (item i / chunks) whole on the calling thread, in its own V and M: the transforms and
 * the 16 GEMMs of a chunk without a wake-up and a join for each of its three steps. The same
 * kernel calls for every output as wg_gemm_body's: the same bits. */
static void wg_chunk_body(void *v, size_t i, int tid)
{
    const wg_job *J = v;
    wg_job j = *J;
    const size_t b = i / J->chunks, HW = (size_t)J->H * J->W;
    const int th = (J->H + J->m - 1) / J->m;
    j.x = J->a->x + b * (size_t)J->C * HW;
    j.y = J->a->y + b * (size_t)J->O * HW;
    j.ti0 = (int)(i % J->chunks * J->rows);
    j.nrow = th - j.ti0 < (int)J->rows ? th - j.ti0 : (int)J->rows;
    j.nt = (size_t)j.nrow * J->tw;
    j.vld = j.mld = J->ld;
    j.V = J->V + (size_t)tid * J->vm_stride;
    j.M = j.V + (size_t)J->npos * J->vs;
    wg_input_part(&j, 0, J->C, tid);
#if WG_HAVE_SIMD
    for (size_t xi = 0; xi < (size_t)J->npos; xi++)
        wk_gemm(&j, xi, 0, 1);
#endif
    wg_output_part(&j, 0, J->O, tid);
}

/* Tiles of m x m outputs: F(2x2, 3x3) (m = 2), or F(4x4, 3x3) (m = 4, cpu_conv_wg4.c, 36 positions),
 * the same GEMMs on either. */
static int conv_winograd(sl_op_ctx *ctx, const sl_conv2d_args *a, int m)
{
    const int C = a->c_in, O = a->c_out, H = a->h, W = a->w, npos = (m + 2) * (m + 2);
    const int th = (H + m - 1) / m, tw = (W + m - 1) / m, E1 = tw + 1;
    const size_t threads = (size_t)sl_pool_threads(ctx->pool);
    const int simd = sl_cpu_simd_avx512() ? 2 : sl_cpu_simd_avx2() ? 1 : 0, packed =
        simd == 2 || (simd == 1 && sl_cpu_simd_fma() && (m == 4 || (size_t)O * (size_t)C < WG_AVX2_OC));
    size_t rows = (packed ? WG_CHUNK_PACKED : WG_CHUNK_FLOATS) / ((size_t)npos * (size_t)(C + O) * (size_t)tw);
    if (packed) { /* U is read once per chunk: chunks of at least as many floats of V and M as U */
        const size_t least = ((size_t)O * C / (size_t)(C + O) + (size_t)tw - 1) / (size_t)tw;
        if (rows < least)
            rows = least;
    }
    if (rows < 1)
        rows = 1;
    if (rows > (size_t)th)
        rows = (size_t)th;
    /* packed: rows of V and M padded to whole panels of 32, plus half a panel so that the
     * rows of a panel fall in different cache sets; U rows padded to blocks of 8 */
    const size_t O8 = packed ? ((size_t)O + 7) & ~(size_t)7 : (size_t)O;
    const size_t ld = packed ? ((rows * tw + 63) & ~(size_t)63) + 32 : rows * tw;
    const size_t us = wg_align(O8 * C), vs = wg_align((size_t)C * ld), ms = wg_align(O8 * ld);
    const size_t nU = npos * us, nV = npos * vs, nM = npos * ms;
    /* per thread: wg_input's 8 E1, wg_output's 4 tw (m = 4: 24 E1, 40 tw) */
    const size_t tmp_stride = wg_align((m == 4 ? 40 : 8) * (size_t)E1);
    const size_t pad_stride = wg_align((m * rows + 2) * m * (size_t)E1); /* per thread: a chunk's padded rows */
    /* at several threads and at least two chunks per thread (wk_gemm's path), each chunk whole on
     * one thread in that thread's V and M (wg_chunk_body); else each step of a chunk split over
     * the threads */
    const size_t chunks = ((size_t)th + rows - 1) / rows;
    const int by_chunk = packed && threads > 1 && a->batch * chunks >= 2 * threads;
    const size_t nvm = by_chunk ? threads : 1;
    /* U: kept with fixed weights (sl_op_mark_fixed), formed once; else per call in the scratch */
    int fresh = 1;
    float *Uk = sl_cpu_fixed_form(ctx, a->wt, WG_FORM_TAG(O, C) | ((uint64_t)packed << 39) | ((uint64_t)(m == 4) << 38),
                                  nU, &fresh);
    float *S = sl_cpu_scratch(ctx, (Uk ? 0 : nU) + nvm * (nV + nM) + threads * (tmp_stride + pad_stride));
    if (!S)
        return SL_ENOMEM;
    wg_job j = {.a = a, .C = C, .O = O, .H = H, .W = W, .E1 = E1, .tw = tw, .us = us, .vs = vs, .ms = ms,
                .tmp_stride = tmp_stride, .pad_stride = pad_stride, .rows = rows, .chunks = chunks, .ld = ld,
                .vm_stride = nV + nM, .U = Uk ? Uk : S, .V = Uk ? S : S + nU, .simd = simd, .packed = packed,
                .m = m, .npos = npos};
    j.M = j.V + nV;
    j.tmp = j.V + nvm * (nV + nM);
    j.P = j.tmp + threads * tmp_stride;
    j.gparts = (threads + 15) / 16;
    if (fresh) {
        if (O8 > (size_t)O) /* the rows past O of the last block of 8 */
            memset(j.U, 0, nU * sizeof(float));
        sl_cpu_chan_for(ctx, O, (size_t)O * C * npos, wg_weights_part, &j);
        if (Uk)
            sl_cpu_fixed_form_ready(ctx, Uk, 1);
    }
    if (by_chunk) {
        sl_pool_for(ctx->pool, a->batch * chunks, wg_chunk_body, &j);
        return 0;
    }
    const size_t HW = (size_t)H * W;
    for (size_t b = 0; b < a->batch; b++) {
        j.x = a->x + b * (size_t)C * HW;
        j.y = a->y + b * (size_t)O * HW;
        for (int ti0 = 0; ti0 < th; ti0 += (int)rows) {
            j.ti0 = ti0;
            j.nrow = th - ti0 < (int)rows ? th - ti0 : (int)rows;
            j.nt = (size_t)j.nrow * tw;
            j.vld = j.mld = packed ? ld : j.nt;
            sl_cpu_chan_for(ctx, C, (size_t)npos * C * j.nt, wg_input_part, &j);
            sl_pool_for((size_t)O * C * j.nt >= CONV_PAR_MIN ? ctx->pool : NULL, npos * j.gparts, wg_gemm_body, &j);
            sl_cpu_chan_for(ctx, O, (size_t)npos * O * j.nt, wg_output_part, &j);
        }
    }
    return 0;
}

/* ---- 3x3 convolution of one input channel (Cnn14's first layer) ----
 *
 * With 9 taps per output, im2col + GEMM is a pass over a col matrix 9 times the input, a
 * GEMM with a reduction of 9 (mostly packing), then a bias pass over the output. Here the
 * input is copied once with a zero column on each side and each output row is one pass:
 * for every pixel s = 0, then s = ((s + w0 x[j-1]) + w1 x[j]) + w2 x[j+1] for each tap row
 * inside the image, top to bottom, then act(s + bias), written once. The AVX2 / AVX-512 rows
 * (cpu_wino_simd.h) do the same operations in the same order: the same bits on every path,
 * whatever the split over output channels. */

/* Floats between padded rows: w + 2, rounded up to whole vectors. */
static size_t dr_ld(int W) { return ((size_t)W + 2 + 15) & ~(size_t)15; }

/* Output row yr[W] from the n tap rows at xp (ld apart) with weights g[3 n]: act(sum + bo),
 * act RELU when relu, else none. */
static void dr_row(float *restrict yr, const float *restrict xp, size_t ld, int W, const float *g, int n, float bo,
                   int relu)
{
    for (int j = 0; j < W; j++) {
        float s = 0.0f;
        for (int t = 0; t < n; t++) {
            const float *x = xp + (size_t)t * ld + j;
            s = s + g[3 * t] * x[0] + g[3 * t + 1] * x[1] + g[3 * t + 2] * x[2];
        }
        s = s + bo;
        yr[j] = relu && s < 0.0f ? 0.0f : s;
    }
}

typedef struct {
    const sl_conv2d_args *a;
    float *y, *P; /* P: this item's input, h + 2 padded rows of dr_ld(w) */
    int simd;     /* 0 portable, 1 AVX2, 2 AVX-512 rows */
} dr_job;

static void dr_part(const void *v, int lo, int hi, int tid)
{
    (void)tid;
    const dr_job *J = v;
    const sl_conv2d_args *a = J->a;
    const int H = a->h, W = a->w, relu = a->act == SL_ACT_RELU;
    const size_t ld = dr_ld(W);
    void (*row)(float *, const float *, size_t, int, const float *, int, float, int) = dr_row;
#if WG_HAVE_SIMD
    if (J->simd)
        row = J->simd == 2 ? dr_row_avx512 : dr_row_avx2;
#endif
    for (int o = lo; o < hi; o++) {
        const float bo = a->bias ? a->bias[o] : 0.0f, *g = a->wt + (size_t)o * 9;
        for (int i = 0; i < H; i++) {
            float *yr = J->y + ((size_t)o * H + (size_t)i) * W;
            const int u0 = i == 0, u1 = i == H - 1 ? 2 : 3; /* tap rows inside the image */
            row(yr, J->P + (size_t)(i + u0) * ld, ld, W, g + 3 * u0, u1 - u0, bo, relu);
            if (a->act == SL_ACT_TANH)
                for (int j = 0; j < W; j++)
                    yr[j] = conv_act(a->act, yr[j]);
        }
    }
}

static int conv_direct(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    const int H = a->h, W = a->w;
    const size_t HW = (size_t)H * W, ld = dr_ld(W);
    float *P = sl_cpu_scratch(ctx, (size_t)(H + 2) * ld);
    if (!P)
        return SL_ENOMEM;
    dr_job J = {.a = a, .P = P, .simd = sl_cpu_simd_avx512() ? 2 : sl_cpu_simd_avx2() ? 1 : 0};
    for (size_t b = 0; b < a->batch; b++) {
        const float *x = a->x + b * HW;
        memset(P, 0, (size_t)(H + 2) * ld * sizeof(float));
        for (int r = 0; r < H; r++)
            memcpy(P + (size_t)(r + 1) * ld + 1, x + (size_t)r * W, (size_t)W * sizeof(float));
        J.y = a->y + b * (size_t)a->c_out * HW;
        sl_cpu_chan_for(ctx, a->c_out, (size_t)a->c_out * HW, dr_part, &J);
    }
    return 0;
}

int sl_cpu_conv2d(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    if (sl_cpu_conv_narrow_ok(a))
        return sl_cpu_conv_narrow(ctx, a);
    if (a->wino4 && a->k == 3 && a->c_in >= 16 && (size_t)((a->h + 3) / 4) * (size_t)((a->w + 3) / 4) >= 32)
        return conv_winograd(ctx, a, 4);
    if (a->k == 3 && a->c_in >= 16 && (size_t)((a->h + 1) / 2) * (size_t)((a->w + 1) / 2) >= 32)
        return conv_winograd(ctx, a, 2);
    if (a->k == 3 && a->c_in == 1)
        return conv_direct(ctx, a);
    return conv_im2col(ctx, a);
}

