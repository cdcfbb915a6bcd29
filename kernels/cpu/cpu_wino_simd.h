/* The Winograd F(2x2, 3x3) transforms of cpu_conv.c in vector form (GCC vector
 * extensions), included by cpu_conv.c once per instruction set through
 * cpu_simd_each.h (WG_VW, WG_SFX, vectors vf / vi and ld / st from there). Every
 * element gets the operations of the portable loops of cpu_conv.c in the same
 * order (adds and subtracts only, no contraction): the results are the same bits.
 * Not a header of its own: no include guard, on purpose. */

#if WG_VW == 16
#define WG_LO {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23}
#define WG_HI {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31}
#define WG_EV {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}
#define WG_OD {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31}
#else
#define WG_EV {0, 2, 4, 6, 8, 10, 12, 14}
#define WG_OD {1, 3, 5, 7, 9, 11, 13, 15}
#define WG_LO {0, 8, 1, 9, 2, 10, 3, 11}
#define WG_HI {4, 12, 5, 13, 6, 14, 7, 15}
#endif

/* wg_input of cpu_conv.c. */
static void WG_SFX(wg_input)(const float *P, int c0, int c1, int PH, int tw, int ti0, int nrow, size_t CN,
                             size_t ld, float *restrict tmp, float *restrict V)
{
    typedef WG_SFX(vf) vf;
    const int E1 = tw + 1;
    const size_t PR = 2 * (size_t)E1;
    for (int c = c0; c < c1; c++)
        for (int r = 0; r < nrow; r++) {
            const float *restrict p0 = P + ((size_t)c * PH + 2 * (size_t)(ti0 + r)) * PR;
            const float *restrict p1 = p0 + PR, *restrict p2 = p1 + PR, *restrict p3 = p2 + PR;
            size_t q = 0;
            /* whole vectors; a last partial one is taken as the last whole vector, ending at
             * PR (its overlap with the one before gets the same values again) */
            for (; PR >= WG_VW && q < PR; q += WG_VW) {
                const size_t o = q + WG_VW <= PR ? q : PR - WG_VW;
                const vf a0 = WG_SFX(ld)(p0 + o), a1 = WG_SFX(ld)(p1 + o), a2 = WG_SFX(ld)(p2 + o),
                         a3 = WG_SFX(ld)(p3 + o);
                WG_SFX(st)(tmp + o, a0 - a2);
                WG_SFX(st)(tmp + PR + o, a1 + a2);
                WG_SFX(st)(tmp + 2 * PR + o, a2 - a1);
                WG_SFX(st)(tmp + 3 * PR + o, a1 - a3);
            }
            for (; q < PR; q++) {
                tmp[q] = p0[q] - p2[q];
                tmp[PR + q] = p1[q] + p2[q];
                tmp[2 * PR + q] = p2[q] - p1[q];
                tmp[3 * PR + q] = p1[q] - p3[q];
            }
            float *v = V + (size_t)c * ld + (size_t)r * tw;
            for (int k = 0; k < 4; k++) {
                const float *restrict ev = tmp + k * PR, *restrict od = ev + E1;
                float *restrict v0 = v + (size_t)(4 * k) * CN, *restrict v1 = v0 + CN, *restrict v2 = v1 + CN,
                                *restrict v3 = v2 + CN;
                /* whole vectors, the last one ending at tw (tiles done twice get the same values) */
                for (int tj = 0, more = tw >= WG_VW; more;) {
                    if (tj + WG_VW >= tw)
                        tj = tw - WG_VW, more = 0;
                    const vf e0 = WG_SFX(ld)(ev + tj), e1 = WG_SFX(ld)(ev + tj + 1), o0 = WG_SFX(ld)(od + tj),
                             o1 = WG_SFX(ld)(od + tj + 1);
                    WG_SFX(st)(v0 + tj, e0 - e1);
                    WG_SFX(st)(v1 + tj, o0 + e1);
                    WG_SFX(st)(v2 + tj, e1 - o0);
                    WG_SFX(st)(v3 + tj, o0 - o1);
                    tj += WG_VW;
                }
                int tj = tw >= WG_VW ? tw : 0;
                for (; tj < tw; tj++) {
                    v0[tj] = ev[tj] - ev[tj + 1];
                    v1[tj] = od[tj] + ev[tj + 1];
                    v2[tj] = ev[tj + 1] - od[tj];
                    v3[tj] = od[tj] - od[tj + 1];
                }
            }
        }
}

/* wg_pad_rows of cpu_conv.c (a copy: the same floats), the even / odd split of whole vectors of
 * image columns by shuffles. */
static void WG_SFX(wg_pad_rows)(const float *restrict xc, int H, int W, int E1, int s0, int ns, float *restrict P)
{
    typedef WG_SFX(vf) vf;
    typedef WG_SFX(vi) vi;
    const vi ev = WG_EV, od = WG_OD;
    const size_t PR = 2 * (size_t)E1;
    for (int q = 0; q < ns; q++) {
        float *restrict e = P + (size_t)q * PR, *restrict o = e + E1;
        const int r = s0 + q - 1; /* image row of padded row s0 + q */
        if (r < 0 || r >= H) {
            memset(e, 0, PR * sizeof(float));
            continue;
        }
        const float *restrict s = xc + (size_t)r * W;
        /* e[j] = s[2j - 1] (j >= 1), o[j] = s[2j]: columns 2j, 2j + 1 of whole vectors */
        int j = 0;
        e[0] = 0.0f;
        for (; 2 * (j + WG_VW) <= W; j += WG_VW) {
            const vf a = WG_SFX(ld)(s + 2 * j), b = WG_SFX(ld)(s + 2 * j + WG_VW);
            WG_SFX(st)(o + j, __builtin_shuffle(a, b, ev));
            WG_SFX(st)(e + j + 1, __builtin_shuffle(a, b, od));
        }
        if (W % 2 == 0 && 2 * j < W && j >= WG_VW) { /* the last whole vector again, ending at column W */
            j = W / 2 - WG_VW;
            const vf a = WG_SFX(ld)(s + 2 * j), b = WG_SFX(ld)(s + 2 * j + WG_VW);
            WG_SFX(st)(o + j, __builtin_shuffle(a, b, ev));
            WG_SFX(st)(e + j + 1, __builtin_shuffle(a, b, od));
            j = W / 2;
        }
        for (; 2 * j < W; j++) {
            o[j] = s[2 * j];
            if (2 * j + 1 < W)
                e[j + 1] = s[2 * j + 1];
            else
                e[j + 1] = 0.0f;
        }
        for (int t = j + 1; t < E1; t++)
            e[t] = 0.0f;
        for (int t = j; t < E1; t++)
            o[t] = 0.0f;
    }
}

/* max(v, 0) as `v < 0 ? 0 : v` (NaN and -0 kept). */
static inline WG_SFX(vf) WG_SFX(relu)(WG_SFX(vf) v)
{
    const WG_SFX(vi) neg = v < 0.0f;
    return (WG_SFX(vf))((WG_SFX(vi))v & ~neg);
}

/* wg_output of cpu_conv.c for act NONE and RELU (the caller takes the portable one otherwise):
 * whole vectors of tiles go straight to y, the rest through rowbuf as there. */
static void WG_SFX(wg_output)(const float *M, int o0, int o1, int H, int W, int tw, int ti0, int nrow, size_t ON,
                              size_t ld, const float *bias, sl_act act, float *restrict rowbuf, float *y)
{
    typedef WG_SFX(vf) vf;
    typedef WG_SFX(vi) vi;
    const vi lo = WG_LO, hi = WG_HI;
    const int relu = act == SL_ACT_RELU;
    float *restrict r1 = rowbuf + 2 * (size_t)tw; /* the row below the image of a last partial tile row */
    for (int o = o0; o < o1; o++) {
        const float bo = bias ? bias[o] : 0.0f;
        for (int r = 0; r < nrow; r++) {
            const float *restrict m = M + (size_t)o * ld + (size_t)r * tw;
            const int i = 2 * (ti0 + r), two = i + 1 < H;
            float *restrict d0 = y + ((size_t)o * H + (size_t)i) * W, *restrict d1 = two ? d0 + W : r1;
            /* whole vectors: tiles tj .. tj + WG_VW - 1 cover columns 2 tj .. 2 tj + 2 WG_VW - 1 < W; with W
             * even the last one ends at tw (tiles done twice write the same values) */
            const int whole = W % 2 == 0 && tw >= WG_VW ? tw : (W / 2) / WG_VW * WG_VW;
            for (int tj = 0; tj < whole; tj += WG_VW) {
                if (tj + WG_VW > whole)
                    tj = whole - WG_VW;
                vf mm[16];
                for (int x = 0; x < 16; x++)
                    mm[x] = WG_SFX(ld)(m + (size_t)x * ON + tj);
                const vf a0 = mm[0] + mm[4] + mm[8], a1 = mm[1] + mm[5] + mm[9], a2 = mm[2] + mm[6] + mm[10],
                         a3 = mm[3] + mm[7] + mm[11];
                const vf b0 = mm[4] - mm[8] - mm[12], b1 = mm[5] - mm[9] - mm[13], b2 = mm[6] - mm[10] - mm[14],
                         b3 = mm[7] - mm[11] - mm[15];
                const vf y00 = a0 + a1 + a2 + bo, y01 = a1 - a2 - a3 + bo;
                const vf y10 = b0 + b1 + b2 + bo, y11 = b1 - b2 - b3 + bo;
                vf z0 = __builtin_shuffle(y00, y01, lo), z1 = __builtin_shuffle(y00, y01, hi);
                vf z2 = __builtin_shuffle(y10, y11, lo), z3 = __builtin_shuffle(y10, y11, hi);
                if (relu) {
                    z0 = WG_SFX(relu)(z0);
                    z1 = WG_SFX(relu)(z1);
                    z2 = WG_SFX(relu)(z2);
                    z3 = WG_SFX(relu)(z3);
                }
                WG_SFX(st)(d0 + 2 * tj, z0);
                WG_SFX(st)(d0 + 2 * tj + WG_VW, z1);
                WG_SFX(st)(d1 + 2 * tj, z2);
                WG_SFX(st)(d1 + 2 * tj + WG_VW, z3);
            }
            /* the rest: as the portable loop */
            for (int tj = whole; tj < tw; tj++) {
                const float *mm = m + tj;
                const float a0 = mm[0] + mm[4 * ON] + mm[8 * ON], a1 = mm[ON] + mm[5 * ON] + mm[9 * ON],
                            a2 = mm[2 * ON] + mm[6 * ON] + mm[10 * ON], a3 = mm[3 * ON] + mm[7 * ON] + mm[11 * ON];
                const float b0 = mm[4 * ON] - mm[8 * ON] - mm[12 * ON], b1 = mm[5 * ON] - mm[9 * ON] - mm[13 * ON],
                            b2 = mm[6 * ON] - mm[10 * ON] - mm[14 * ON], b3 = mm[7 * ON] - mm[11 * ON] - mm[15 * ON];
                const float v[4] = {a0 + a1 + a2 + bo, a1 - a2 - a3 + bo, b0 + b1 + b2 + bo, b1 - b2 - b3 + bo};
                for (int q = 0; q < 4; q++) {
                    const int col = 2 * tj + (q & 1);
                    if (col >= W)
                        continue;
                    const float u = relu && v[q] < 0.0f ? 0.0f : v[q];
                    (q < 2 ? d0 : d1)[col] = u;
                }
            }
        }
    }
}

/* dr_row of cpu_conv.c. */
static void WG_SFX(dr_row)(float *restrict yr, const float *restrict xp, size_t ld, int W, const float *g, int n,
                           float bo, int relu)
{
    int j = 0;
    for (; j + WG_VW <= W; j += WG_VW) {
        WG_SFX(vf) s = {0};
        for (int t = 0; t < n; t++) {
            const float *x = xp + (size_t)t * ld + j;
            s = s + g[3 * t] * WG_SFX(ld)(x) + g[3 * t + 1] * WG_SFX(ld)(x + 1) + g[3 * t + 2] * WG_SFX(ld)(x + 2);
        }
        s = s + bo;
        WG_SFX(st)(yr + j, relu ? WG_SFX(relu)(s) : s);
    }
    for (; j < W; j++) {
        float s = 0.0f;
        for (int t = 0; t < n; t++) {
            const float *x = xp + (size_t)t * ld + j;
            s = s + g[3 * t] * x[0] + g[3 * t + 1] * x[1] + g[3 * t + 2] * x[2];
        }
        s = s + bo;
        yr[j] = relu && s < 0.0f ? 0.0f : s;
    }
}

#undef WG_LO
#undef WG_HI
#undef WG_EV
#undef WG_OD
