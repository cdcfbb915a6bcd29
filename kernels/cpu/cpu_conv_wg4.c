/* The transforms of Winograd F(4x4, 3x3) for conv2d's Winograd path (cpu_conv.c: conv_winograd
 * with tiles of 4, taken only when sl_conv2d_args.wino4 asks for it; the GEMMs are the F(2x2)
 * path's, on 36 transformed positions instead of 16).
 *
 * One output tile of 4x4 of output channel o is A^T [sum_c (G g_oc G^T) .* (B^T d_c B)] A, with
 * d_c the 6x6 input patch of the tile (zero outside the image) and g_oc the 3x3 kernel. The
 * matrices come from the interpolation points 0, 1, -1, 1/2, -2 and infinity: of the usual
 * sets (0, +-1, +-2; 0, +-1, +-1/2; and the mixed ones) the one with the smallest error against
 * the double-precision direct sum at HT-Demucs's decoder shapes (about a third of that of
 * 0, +-1, +-2 in max and two thirds in rms; still several times F(2x2)'s, hence opt-in):
 *
 *   B^T = [1 -3/2 -2  3/2 1   0]   G = [  1      0     0  ]   A^T = [1 1  1  1     1  0]
 *         [0 -1   1/2 5/2 1   0]       [ 1/3    1/3   1/3 ]         [0 1 -1  1/2  -2  0]
 *         [0  1  -5/2 1/2 1   0]       [-1/3    1/3  -1/3 ]         [0 1  1  1/4   4  0]
 *         [0 -2  -1   2   1   0]       [-16/15 -8/15 -4/15]         [0 1 -1  1/8  -8  1]
 *         [0 1/2 -1  -1/2 1   0]       [ 1/15  -2/15  4/15]
 *         [0  1  -3/2 -2  3/2 1]       [  0      0     1  ]
 *
 * G g G^T is formed in double and rounded once (the weights' transform is not exact here as it
 * is for F(2x2)). The input and output transforms run on whole rows of tiles: each padded input
 * row is stored as its four column phases (column 4t + p at p E1 + t), so that B^T d B and
 * A^T M A are loops over tiles with unit stride, compiled portable and with AVX2 (the same
 * operations lane by lane, no contraction in ISO C: the same bits). Every output depends on its
 * tile's values only, whatever the split over threads. */
#include <string.h>

#include "cpu_conv.h"
#include "cpu_simd.h"

#define WG4_ALWAYS static inline __attribute__((always_inline))

/* U[xi][o][c] (xi = 6 a + b) = (G g G^T)[a][b] of w[o][c][3][3], for the (o, c) pairs oc0 .. oc1 - 1;
 * packed: (o, c) at (o / 8) 8 C + 8 c + o % 8 (wk_gemm's blocks of 8 rows). */
void sl_wg4_weights(const float *restrict w, size_t oc0, size_t oc1, size_t C, int packed, size_t us,
                    float *restrict U)
{
    static const double G[6][3] = {{1.0, 0.0, 0.0},
                                   {1.0 / 3, 1.0 / 3, 1.0 / 3},
                                   {-1.0 / 3, 1.0 / 3, -1.0 / 3},
                                   {-16.0 / 15, -8.0 / 15, -4.0 / 15},
                                   {1.0 / 15, -2.0 / 15, 4.0 / 15},
                                   {0.0, 0.0, 1.0}};
    for (size_t oc = oc0; oc < oc1; oc++) {
        const size_t o = oc / C, at = packed ? (o / 8) * 8 * C + 8 * (oc % C) + o % 8 : oc;
        const float *g = w + oc * 9;
        double t[6][3];
        for (int a = 0; a < 6; a++)
            for (int v = 0; v < 3; v++)
                t[a][v] = G[a][0] * g[v] + G[a][1] * g[3 + v] + G[a][2] * g[6 + v];
        for (int a = 0; a < 6; a++)
            for (int b = 0; b < 6; b++)
                U[(size_t)(6 * a + b) * us + at] = (float)(t[a][0] * G[b][0] + t[a][1] * G[b][1] + t[a][2] * G[b][2]);
    }
}

/* Padded rows s0 .. s0 + ns - 1 of channel xc [H][W] into P[ns][4 E1]: padded row s is image row
 * s - 1, padded column s image column s - 1 (zeros outside), stored by phase: column 4t + p at
 * p E1 + t. */
WG4_ALWAYS void wg4_pad(const float *restrict xc, int H, int W, int E1, int s0, int ns, float *restrict P)
{
    const size_t PR = 4 * (size_t)E1;
    for (int q = 0; q < ns; q++) {
        float *restrict p = P + (size_t)q * PR;
        const int r = s0 + q - 1;
        if (r < 0 || r >= H) {
            memset(p, 0, PR * sizeof(float));
            continue;
        }
        const float *restrict s = xc + (size_t)r * W;
        float *restrict p0 = p, *restrict p1 = p + E1, *restrict p2 = p1 + E1, *restrict p3 = p2 + E1;
        /* t = 1 .. n - 1: image columns 4t - 1 .. 4t + 2 all inside */
        const int n = (W + 1) / 4;
        for (int t = 1; t < n; t++) {
            p0[t] = s[4 * t - 1];
            p1[t] = s[4 * t];
            p2[t] = s[4 * t + 1];
            p3[t] = s[4 * t + 2];
        }
        for (int t = 0; t < E1; t = t == 0 && n > 1 ? n : t + 1) /* the edges: t = 0 and t >= n */
            for (int ph = 0; ph < 4; ph++) {
                const int col = 4 * t + ph - 1;
                p[(size_t)ph * E1 + t] = col >= 0 && col < W ? s[col] : 0.0f;
            }
    }
}

/* out[k] = (B^T d)[k] for the six values d0 .. d5. */
#define WG4_BT(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5)                                                     \
    do {                                                                                                         \
        const float s_ = (d3) - (d1), q_ = (d4) - (d2);                                                          \
        o0 = ((d0) - (d2)) + q_ + 1.5f * s_;                                                                     \
        o1 = ((d4) + 0.5f * (d2)) + (2.5f * (d3) - (d1));                                                        \
        o2 = ((d4) - 2.5f * (d2)) + ((d1) + 0.5f * (d3));                                                        \
        o3 = q_ + 2.0f * s_;                                                                                     \
        o4 = q_ - 0.5f * s_;                                                                                     \
        o5 = ((d5) - (d3)) - s_ + 1.5f * q_;                                                                     \
    } while (0)

/* B^T along the six rows p, PR apart, of n columns into the six rows o0 .. o5. */
WG4_ALWAYS void wg4_bt_rows(const float *restrict p, size_t PR, size_t n, float *restrict o0, float *restrict o1,
                            float *restrict o2, float *restrict o3, float *restrict o4, float *restrict o5)
{
    for (size_t q = 0; q < n; q++)
        WG4_BT(p[q], p[PR + q], p[2 * PR + q], p[3 * PR + q], p[4 * PR + q], p[5 * PR + q], o0[q], o1[q], o2[q], o3[q],
               o4[q], o5[q]);
}

/* B^T along the columns of tw tiles of one row stored by phases (e, E1 apart: tile tj reads
 * e[tj], e[E1 + tj], e[2 E1 + tj], e[3 E1 + tj], e[tj + 1], e[E1 + tj + 1]) into v0 .. v5. */
WG4_ALWAYS void wg4_bt_cols(const float *restrict e, size_t E1, int tw, float *restrict v0, float *restrict v1,
                            float *restrict v2, float *restrict v3, float *restrict v4, float *restrict v5)
{
    for (int tj = 0; tj < tw; tj++)
        WG4_BT(e[tj], e[E1 + tj], e[2 * E1 + tj], e[3 * E1 + tj], e[tj + 1], e[E1 + tj + 1], v0[tj], v1[tj], v2[tj],
               v3[tj], v4[tj], v5[tj]);
}

/* V[xi][t] (xi = 6 a + b, positions vs apart, t = r tw + tj) = (B^T d B)[a][b] for the tiles of
 * tile rows r < nrow of the padded rows P (wg4_pad, from the chunk's first padded row); tmp: 24 E1. */
WG4_ALWAYS void wg4_input(const float *P, int tw, int nrow, size_t vs, float *tmp, float *V)
{
    const size_t E1 = (size_t)tw + 1, PR = 4 * E1;
    for (int r = 0; r < nrow; r++) {
        /* rows: B^T d on whole padded rows */
        wg4_bt_rows(P + (size_t)(4 * r) * PR, PR, PR, tmp, tmp + PR, tmp + 2 * PR, tmp + 3 * PR, tmp + 4 * PR,
                    tmp + 5 * PR);
        /* columns: tile tj reads padded columns 4 tj .. 4 tj + 5 */
        for (int a = 0; a < 6; a++) {
            float *v = V + (size_t)(6 * a) * vs + (size_t)r * tw;
            wg4_bt_cols(tmp + a * PR, E1, tw, v, v + vs, v + 2 * vs, v + 3 * vs, v + 4 * vs, v + 5 * vs);
        }
    }
}

/* (A^T m)[0..3] of the six values m0 .. m5. */
#define WG4_AT(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                                                             \
    do {                                                                                                         \
        const float a_ = (m1) + (m2), b_ = (m1) - (m2);                                                          \
        y0 = ((m0) + a_) + ((m3) + (m4));                                                                        \
        y1 = b_ + (0.5f * (m3) - 2.0f * (m4));                                                                   \
        y2 = a_ + (0.25f * (m3) + 4.0f * (m4));                                                                  \
        y3 = (b_ + (0.125f * (m3) - 8.0f * (m4))) + (m5);                                                        \
    } while (0)

/* A^T along the rows: t_i[tj] = (A^T m)[i] of the six rows m[a * ms6 + tj], tj < tw. */
WG4_ALWAYS void wg4_at_rows(const float *restrict m, size_t ms6, int tw, float *restrict t0, float *restrict t1,
                            float *restrict t2, float *restrict t3)
{
    for (int tj = 0; tj < tw; tj++)
        WG4_AT(m[tj], m[ms6 + tj], m[2 * ms6 + tj], m[3 * ms6 + tj], m[4 * ms6 + tj], m[5 * ms6 + tj], t0[tj], t1[tj],
               t2[tj], t3[tj]);
}

/* A^T along the columns: d[4 tj + j] = (A^T t)[j] + bo of the six rows t[b * tw + tj], for the
 * whole tiles tj < n, then the first `cols` columns of tile n when cols > 0. */
WG4_ALWAYS void wg4_at_cols(const float *restrict t, int tw, int n, int cols, float bo, float *restrict d)
{
    for (int tj = 0; tj < n; tj++) {
        float y0, y1, y2, y3;
        WG4_AT(t[tj], t[tw + tj], t[2 * tw + tj], t[3 * tw + tj], t[4 * tw + tj], t[5 * tw + tj], y0, y1, y2, y3);
        d[4 * tj] = y0 + bo;
        d[4 * tj + 1] = y1 + bo;
        d[4 * tj + 2] = y2 + bo;
        d[4 * tj + 3] = y3 + bo;
    }
    if (cols > 0) {
        float y[4];
        WG4_AT(t[n], t[tw + n], t[2 * tw + n], t[3 * tw + n], t[4 * tw + n], t[5 * tw + n], y[0], y[1], y[2], y[3]);
        for (int j = 0; j < cols; j++)
            d[4 * n + j] = y[j] + bo;
    }
}

/* y[o][4 ti + i][4 tj + j] = act(bias[o] + (A^T M A)[i][j]) for the tiles of the chunk (tile rows
 * ti0 .. ti0 + nrow - 1, M[xi][o][t] at M + xi ms + o ld + t), inside the image. tmp: 24 tw floats
 * (A^T M) then 16 tw (the rows below the image of a last partial tile row). */
WG4_ALWAYS void wg4_output(const float *M, int o0, int o1, int H, int W, int tw, int ti0, int nrow, size_t ms,
                           size_t ld, const float *bias, sl_act act, float *tmp, float *y)
{
    const int full = W / 4;
    float *rowbuf = tmp + 24 * (size_t)tw;
    for (int o = o0; o < o1; o++) {
        const float bo = bias ? bias[o] : 0.0f;
        for (int r = 0; r < nrow; r++) {
            const float *m = M + (size_t)o * ld + (size_t)r * tw;
            /* rows: (A^T M)[i][b] at tmp + (6 i + b) tw */
            for (int b = 0; b < 6; b++)
                wg4_at_rows(m + (size_t)b * ms, 6 * ms, tw, tmp + (size_t)b * tw, tmp + (size_t)(6 + b) * tw,
                            tmp + (size_t)(12 + b) * tw, tmp + (size_t)(18 + b) * tw);
            /* columns, row by row of the output */
            const int i0 = 4 * (ti0 + r);
            for (int i = 0; i < 4; i++) {
                float *d = i0 + i < H ? y + ((size_t)o * H + (size_t)(i0 + i)) * W : rowbuf + (size_t)i * 4 * tw;
                wg4_at_cols(tmp + (size_t)(6 * i) * tw, tw, full, W - 4 * full, bo, d);
                if (act != SL_ACT_NONE && i0 + i < H)
                    for (int j = 0; j < W; j++)
                        d[j] = conv_act(act, d[j]);
            }
        }
    }
}

/* One channel: its padded rows of the chunk into P (4 nrow + 2 of them), then V. */
#define WG4_DEFINE(sfx, attr)                                                                                    \
    attr static void wg4_input_##sfx(const float *xc, int H, int W, int tw, int ti0, int nrow, size_t vs,       \
                                     float *P, float *tmp, float *Vc)                                            \
    {                                                                                                            \
        wg4_pad(xc, H, W, tw + 1, 4 * ti0, 4 * nrow + 2, P);                                                     \
        wg4_input(P, tw, nrow, vs, tmp, Vc);                                                                     \
    }                                                                                                            \
    attr static void wg4_output_##sfx(const float *M, int o0, int o1, int H, int W, int tw, int ti0, int nrow,   \
                                      size_t ms, size_t ld, const float *bias, sl_act act, float *tmp, float *y) \
    {                                                                                                            \
        wg4_output(M, o0, o1, H, W, tw, ti0, nrow, ms, ld, bias, act, tmp, y);                                   \
    }

WG4_DEFINE(c, )
#if defined(__x86_64__) && defined(__GNUC__)
#define WG4_HAVE_AVX2 1
WG4_DEFINE(avx2, __attribute__((target("avx2"))))
#else
#define WG4_HAVE_AVX2 0
#endif

void sl_wg4_input(const float *xc, int H, int W, int tw, int ti0, int nrow, size_t vs, float *P, float *tmp,
                  float *Vc)
{
#if WG4_HAVE_AVX2
    if (sl_cpu_simd_avx2()) {
        wg4_input_avx2(xc, H, W, tw, ti0, nrow, vs, P, tmp, Vc);
        return;
    }
#endif
    wg4_input_c(xc, H, W, tw, ti0, nrow, vs, P, tmp, Vc);
}

void sl_wg4_output(const float *M, int o0, int o1, int H, int W, int tw, int ti0, int nrow, size_t ms, size_t ld,
                   const float *bias, sl_act act, float *tmp, float *y)
{
#if WG4_HAVE_AVX2
    if (sl_cpu_simd_avx2()) {
        wg4_output_avx2(M, o0, o1, H, W, tw, ti0, nrow, ms, ld, bias, act, tmp, y);
        return;
    }
#endif
    wg4_output_c(M, o0, o1, H, W, tw, ti0, nrow, ms, ld, bias, act, tmp, y);
}
