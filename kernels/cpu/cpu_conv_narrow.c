/* CPU conv2d: 3x3 convolution of images one or two columns wide (Cnn14's last block),
 * taken by sl_cpu_conv2d (cpu_conv.c).
 *
 * With W <= 2 every output column has a column of taps that only ever reads the zero
 * padding (W = 2: column 0 never uses v = 0, column 1 never v = 2; W = 1: only v = 1 is
 * used), a third (two thirds) of the multiply-adds of im2col + GEMM. Here the output pixels
 * are grouped by column j and only the taps v0(j) .. v1(j) are summed: a GEMM of
 * y[o][pixels of column j] = w[o][(c, u), v0..v1] . B_j, with B_j the input rows packed 16
 * pixels wide per (c, u, v) and the weights read in place (their [c_out][c_in][3][3] layout,
 * every (c, u) a group of three taps of which nv are used), by an AVX2 + FMA kernel of
 * 6 output channels x 16 pixels. The weight matrix (150 MB for Cnn14's 2048 x 2048 layer) is
 * streamed once per call and not repacked. */
#include <stdint.h>
#include <stdlib.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_conv.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

#define NW_MR 6    /* output channels per kernel call */
#define NW_NR 16   /* pixels per panel */
#define NW_KC 128  /* (c, u) groups per block of the reduction */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define NW_HAVE_KERNEL 1

/* c[r][0..15] += sum_{g < kc, q < NV} a[r * lda + 3 g + q] * b[(g * NV + q) * 16 + 0..15] for r < 6
 * (the sum of the block is formed from zero, then added: blocked summation, as a BLAS does). */
#define NW_STEP6(q)                                                                                              \
    do {                                                                                                         \
        const __m256 b0 = _mm256_loadu_ps(b + 16 * (q)), b1 = _mm256_loadu_ps(b + 16 * (q) + 8);                 \
        __m256 av = _mm256_broadcast_ss(pa + (q));                                                               \
        c00 = _mm256_fmadd_ps(av, b0, c00);                                                                      \
        c01 = _mm256_fmadd_ps(av, b1, c01);                                                                      \
        av = _mm256_broadcast_ss(pa + lda + (q));                                                                \
        c10 = _mm256_fmadd_ps(av, b0, c10);                                                                      \
        c11 = _mm256_fmadd_ps(av, b1, c11);                                                                      \
        av = _mm256_broadcast_ss(pa + 2 * lda + (q));                                                            \
        c20 = _mm256_fmadd_ps(av, b0, c20);                                                                      \
        c21 = _mm256_fmadd_ps(av, b1, c21);                                                                      \
        av = _mm256_broadcast_ss(pb + (q));                                                                      \
        c30 = _mm256_fmadd_ps(av, b0, c30);                                                                      \
        c31 = _mm256_fmadd_ps(av, b1, c31);                                                                      \
        av = _mm256_broadcast_ss(pb + lda + (q));                                                                \
        c40 = _mm256_fmadd_ps(av, b0, c40);                                                                      \
        c41 = _mm256_fmadd_ps(av, b1, c41);                                                                      \
        av = _mm256_broadcast_ss(pb + 2 * lda + (q));                                                            \
        c50 = _mm256_fmadd_ps(av, b0, c50);                                                                      \
        c51 = _mm256_fmadd_ps(av, b1, c51);                                                                      \
    } while (0)

#define NW_ADD(r, lo, hi)                                                                                        \
    do {                                                                                                         \
        float *cr = c + (size_t)(r) * ldc;                                                                       \
        _mm256_storeu_ps(cr, first ? (lo) : _mm256_add_ps(_mm256_loadu_ps(cr), (lo)));                          \
        _mm256_storeu_ps(cr + 8, first ? (hi) : _mm256_add_ps(_mm256_loadu_ps(cr + 8), (hi)));                  \
    } while (0)

#define NW_KERNEL6(NV)                                                                                           \
    __attribute__((target("avx2,fma"))) static void nw_kernel_6_##NV(int kc, const float *a, size_t lda,        \
                                                                     const float *b, float *c, size_t ldc,       \
                                                                     int first)                                  \
    {                                                                                                            \
        __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,    \
               c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;                                           \
        const float *pa = a, *pb = a + 3 * lda;                                                                  \
        for (int g = 0; g < kc; g++, pa += 3, pb += 3, b += 16 * (NV)) {                                         \
            NW_STEP6(0);                                                                                         \
            if ((NV) > 1)                                                                                        \
                NW_STEP6(1);                                                                                     \
            if ((NV) > 2)                                                                                        \
                NW_STEP6(2);                                                                                     \
        }                                                                                                        \
        NW_ADD(0, c00, c01);                                                                                     \
        NW_ADD(1, c10, c11);                                                                                     \
        NW_ADD(2, c20, c21);                                                                                     \
        NW_ADD(3, c30, c31);                                                                                     \
        NW_ADD(4, c40, c41);                                                                                     \
        NW_ADD(5, c50, c51);                                                                                     \
    }

/* The same for one row. */
#define NW_KERNEL1(NV)                                                                                           \
    __attribute__((target("avx2,fma"))) static void nw_kernel_1_##NV(int kc, const float *a, size_t lda,        \
                                                                     const float *b, float *c, size_t ldc,       \
                                                                     int first)                                  \
    {                                                                                                            \
        (void)lda;                                                                                               \
        __m256 c00 = _mm256_setzero_ps(), c01 = c00;                                                             \
        for (int g = 0; g < kc; g++, a += 3)                                                                     \
            for (int q = 0; q < (NV); q++, b += 16) {                                                            \
                const __m256 av = _mm256_broadcast_ss(a + q);                                                    \
                c00 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b), c00);                                              \
                c01 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 8), c01);                                          \
            }                                                                                                    \
        NW_ADD(0, c00, c01);                                                                                     \
    }
NW_KERNEL6(1)
NW_KERNEL6(2)
NW_KERNEL6(3)
NW_KERNEL1(1)
NW_KERNEL1(2)
NW_KERNEL1(3)

/* AVX-512: 6 rows x 32 pixels, two panels at once (b: panel p, b2: panel p + 1, c: both,
 * side by side). Every sum gets the multiply-adds of nw_kernel_6 in the same order: the
 * same bits. */
#define NZ_STEP6(q)                                                                                              \
    do {                                                                                                         \
        const __m512 b0 = _mm512_loadu_ps(b + 16 * (q)), b1 = _mm512_loadu_ps(b2 + 16 * (q));                   \
        __m512 av = _mm512_set1_ps(pa[q]);                                                                       \
        c00 = _mm512_fmadd_ps(av, b0, c00);                                                                      \
        c01 = _mm512_fmadd_ps(av, b1, c01);                                                                      \
        av = _mm512_set1_ps(pa[lda + (q)]);                                                                      \
        c10 = _mm512_fmadd_ps(av, b0, c10);                                                                      \
        c11 = _mm512_fmadd_ps(av, b1, c11);                                                                      \
        av = _mm512_set1_ps(pa[2 * lda + (q)]);                                                                  \
        c20 = _mm512_fmadd_ps(av, b0, c20);                                                                      \
        c21 = _mm512_fmadd_ps(av, b1, c21);                                                                      \
        av = _mm512_set1_ps(pb[q]);                                                                              \
        c30 = _mm512_fmadd_ps(av, b0, c30);                                                                      \
        c31 = _mm512_fmadd_ps(av, b1, c31);                                                                      \
        av = _mm512_set1_ps(pb[lda + (q)]);                                                                      \
        c40 = _mm512_fmadd_ps(av, b0, c40);                                                                      \
        c41 = _mm512_fmadd_ps(av, b1, c41);                                                                      \
        av = _mm512_set1_ps(pb[2 * lda + (q)]);                                                                  \
        c50 = _mm512_fmadd_ps(av, b0, c50);                                                                      \
        c51 = _mm512_fmadd_ps(av, b1, c51);                                                                      \
    } while (0)

#define NZ_ADD(r, lo, hi)                                                                                        \
    do {                                                                                                         \
        float *cr = c + (size_t)(r) * ldc;                                                                       \
        _mm512_storeu_ps(cr, first ? (lo) : _mm512_add_ps(_mm512_loadu_ps(cr), (lo)));                          \
        _mm512_storeu_ps(cr + 16, first ? (hi) : _mm512_add_ps(_mm512_loadu_ps(cr + 16), (hi)));                \
    } while (0)

#define NZ_KERNEL6(NV)                                                                                           \
    __attribute__((target("avx512f,avx512vl,avx512dq"))) static void nz_kernel_6_##NV(               \
        int kc, const float *a, size_t lda, const float *b, const float *b2, float *c, size_t ldc, int first)  \
    {                                                                                                            \
        __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,    \
               c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;                                           \
        const float *pa = a, *pb = a + 3 * lda;                                                                  \
        for (int g = 0; g < kc; g++, pa += 3, pb += 3, b += 16 * (NV), b2 += 16 * (NV)) {                        \
            NZ_STEP6(0);                                                                                         \
            if ((NV) > 1)                                                                                        \
                NZ_STEP6(1);                                                                                     \
            if ((NV) > 2)                                                                                        \
                NZ_STEP6(2);                                                                                     \
        }                                                                                                        \
        NZ_ADD(0, c00, c01);                                                                                     \
        NZ_ADD(1, c10, c11);                                                                                     \
        NZ_ADD(2, c20, c21);                                                                                     \
        NZ_ADD(3, c30, c31);                                                                                     \
        NZ_ADD(4, c40, c41);                                                                                     \
        NZ_ADD(5, c50, c51);                                                                                     \
    }
NZ_KERNEL6(1)
NZ_KERNEL6(2)
NZ_KERNEL6(3)

typedef void (*nz_kernel_fn)(int, const float *, size_t, const float *, const float *, float *, size_t, int);

typedef void (*nw_kernel_fn)(int, const float *, size_t, const float *, float *, size_t, int);

static int nw_available(void)
{
    return sl_cpu_simd_fma(); /* AVX2 + FMA, and not turned off (cpu_simd.h) */
}
#else
#define NW_HAVE_KERNEL 0
#endif

#if NW_HAVE_KERNEL
/* Floats of packed input + sums per chunk of pixel panels: bounds the scratch whatever the image. */
#define NW_CHUNK_FLOATS ((size_t)1 << 22)

typedef struct {
    const sl_conv2d_args *a;
    int p0, np;       /* this chunk: panels p0 .. p0 + np - 1 (of NW_NR rows each) of every column */
    const float *x;   /* this item's input */
    float *B;         /* packed input: column j, panel p0 + p at B + boff[j] + p * 3 c_in * nv(j) * NW_NR */
    size_t boff[2];
    float *Ct;        /* Ct[o][j][np * NW_NR]: sums before bias / activation */
    float *y;         /* this item's output */
    int parts;        /* of the current loop */
} nw_job;

static int nw_v0(int j) { return j == 0 ? 1 : 0; }
static int nw_nv(int j, int W) { return (j == W - 1 ? 1 : 2) - nw_v0(j) + 1; }

/* Packs the chunk's input, channels of part `part`:
 * B_j[p][(c, u)][q][l] = x[c][i + u - 1][j + v0(j) + q - 1] with i = (p0 + p) * NW_NR + l (0 outside). */
static void nw_pack(void *arg, size_t part_, int tid)
{
    (void)tid;
    const int part = (int)part_, parts = ((const nw_job *)arg)->parts;
    const nw_job *J = arg;
    const int C = J->a->c_in, H = J->a->h, W = J->a->w, G = 3 * C;
    const int lo = (int)((size_t)C * part / parts), hi = (int)((size_t)C * (part + 1) / parts);
    for (int j = 0; j < W; j++) {
        const int v0 = nw_v0(j), nv = nw_nv(j, W);
        for (int p = 0; p < J->np; p++)
            for (int c = lo; c < hi; c++)
                for (int u = 0; u < 3; u++)
                    for (int q = 0; q < nv; q++) {
                        float *d = J->B + J->boff[j] + (((size_t)p * G + (size_t)(3 * c + u)) * nv + q) * NW_NR;
                        const int col = j + v0 + q - 1; /* inside the image by construction */
                        for (int l = 0; l < NW_NR; l++) {
                            const int i = (J->p0 + p) * NW_NR + l, r = i + u - 1;
                            d[l] = i < H && r >= 0 && r < H ? J->x[((size_t)c * H + (size_t)r) * W + col] : 0.0f;
                        }
                    }
    }
}

/* The chunk's pixels of the output channels of part `part` (whole blocks of NW_MR): every
 * reduction block, then bias + activation into y. */
static void nw_run(void *arg, size_t part_, int tid)
{
    (void)tid;
    const int part = (int)part_, parts = ((const nw_job *)arg)->parts;
    const nw_job *J = arg;
    const sl_conv2d_args *a = J->a;
    const int C = a->c_in, O = a->c_out, H = a->h, W = a->w, G = 3 * C;
    const int nblk = (O + NW_MR - 1) / NW_MR;
    const int o_lo = (int)((size_t)nblk * part / parts) * NW_MR;
    int o_hi = (int)((size_t)nblk * (part + 1) / parts) * NW_MR;
    if (o_hi > O)
        o_hi = O;
    const size_t lda = (size_t)9 * C, ldc = (size_t)W * J->np * NW_NR;
    static const nw_kernel_fn k6[3] = {nw_kernel_6_1, nw_kernel_6_2, nw_kernel_6_3};
    static const nw_kernel_fn k1[3] = {nw_kernel_1_1, nw_kernel_1_2, nw_kernel_1_3};
    static const nz_kernel_fn z6[3] = {nz_kernel_6_1, nz_kernel_6_2, nz_kernel_6_3};
    const int wide = sl_cpu_simd_avx512();
    for (int g0 = 0; g0 < G; g0 += NW_KC) {
        const int kc = G - g0 < NW_KC ? G - g0 : NW_KC;
        for (int o0 = o_lo; o0 < o_hi; o0 += NW_MR) {
            const int mr = o_hi - o0 < NW_MR ? o_hi - o0 : NW_MR;
            for (int j = 0; j < W; j++) {
                const int v0 = nw_v0(j), nv = nw_nv(j, W);
                const float *A = a->wt + (size_t)o0 * lda + (size_t)g0 * 3 + v0;
                for (int p = 0; p < J->np; p++) {
                    const float *Bp = J->B + J->boff[j] + ((size_t)p * G + (size_t)g0) * nv * NW_NR;
                    float *Cp = J->Ct + (size_t)o0 * ldc + (size_t)j * J->np * NW_NR + (size_t)p * NW_NR;
                    if (wide && mr == NW_MR && p + 1 < J->np) { /* panels p and p + 1 */
                        z6[nv - 1](kc, A, lda, Bp, Bp + (size_t)G * nv * NW_NR, Cp, ldc, g0 == 0);
                        p++;
                    } else if (mr == NW_MR) {
                        k6[nv - 1](kc, A, lda, Bp, Cp, ldc, g0 == 0);
                    } else {
                        for (int r = 0; r < mr; r++)
                            k1[nv - 1](kc, A + r * lda, lda, Bp, Cp + r * ldc, ldc, g0 == 0);
                    }
                }
            }
        }
    }
    const int i0 = J->p0 * NW_NR, i1 = (J->p0 + J->np) * NW_NR < H ? (J->p0 + J->np) * NW_NR : H;
    for (int o = o_lo; o < o_hi; o++) {
        const float bo = a->bias ? a->bias[o] : 0.0f;
        for (int j = 0; j < W; j++) {
            const float *src = J->Ct + (size_t)o * ldc + (size_t)j * J->np * NW_NR - i0;
            float *d = J->y + (size_t)o * H * W + j;
            for (int i = i0; i < i1; i++)
                d[(size_t)i * W] = conv_act(a->act, src[i] + bo);
        }
    }
}

int sl_cpu_conv_narrow(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    const int C = a->c_in, O = a->c_out, H = a->h, W = a->w;
    const int np_all = (H + NW_NR - 1) / NW_NR;
    const size_t G = 3 * (size_t)C, nv0 = (size_t)nw_nv(0, W), nv1 = W > 1 ? (size_t)nw_nv(1, W) : 0;
    /* floats per panel (all columns): packed input + sums */
    const size_t per = G * (nv0 + nv1) * NW_NR + (size_t)O * W * NW_NR;
    int pc = (int)(NW_CHUNK_FLOATS / per);
    if (pc < 1)
        pc = 1;
    if (pc > np_all)
        pc = np_all;
    float *B = sl_cpu_scratch(ctx, per * (size_t)pc);
    if (!B)
        return SL_ENOMEM;
    nw_job J = {.a = a, .B = B};
    const int nth = sl_pool_threads(ctx->pool);
    const size_t HW = (size_t)H * W;
    for (size_t b = 0; b < a->batch; b++) {
        J.x = a->x + b * (size_t)C * HW;
        J.y = a->y + b * (size_t)O * HW;
        for (J.p0 = 0; J.p0 < np_all; J.p0 += pc) {
            J.np = np_all - J.p0 < pc ? np_all - J.p0 : pc;
            const size_t panel = (size_t)J.np * G * NW_NR;
            J.boff[0] = 0;
            J.boff[1] = panel * nv0;
            J.Ct = B + panel * (nv0 + nv1);
            J.parts = (size_t)C * W * J.np * NW_NR >= 16384 ? nth : 1;
            sl_pool_for(ctx->pool, (size_t)J.parts, nw_pack, &J);
            J.parts = (size_t)O * C >= 4096 ? nth : 1;
            sl_pool_for(ctx->pool, (size_t)J.parts, nw_run, &J);
        }
    }
    return 0;
}

int sl_cpu_conv_narrow_ok(const sl_conv2d_args *a) { return a->k == 3 && a->w <= 2 && nw_available(); }
#else
int sl_cpu_conv_narrow_ok(const sl_conv2d_args *a) { return 0; }

int sl_cpu_conv_narrow(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    return sl_seterr(SL_EUNSUPPORTED, "conv2d: no narrow-image kernel on this CPU");
}
#endif
