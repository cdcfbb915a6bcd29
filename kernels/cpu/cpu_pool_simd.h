/* The 2x2 average pooling rows of cpu_pool.c in vector form, included by cpu_pool.c
 * once per instruction set through cpu_simd_each.h (WG_VW, WG_SFX, vf / vi, ld / st).
 * Not a header of its own: no include guard, on purpose. */

/* One output row of a 2x2 average pooling: y[j] = ((((0 + r0[2j]) + r0[2j+1]) + r1[2j]) + r1[2j+1]) * 0.25,
 * as the portable loop of sl_cpu_avg_pool2d (the 0 + keeps its sign of zero). */
static void WG_SFX(pool2_row)(float *restrict y, const float *restrict r0, const float *restrict r1, int ow)
{
    typedef WG_SFX(vf) vf;
    typedef WG_SFX(vi) vi;
#if WG_VW == 16
    const vi ev = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}, od = ev + 1;
#else
    const vi ev = {0, 2, 4, 6, 8, 10, 12, 14}, od = ev + 1;
#endif
    int j = 0;
    for (; j + WG_VW <= ow; j += WG_VW) {
        const vf a0 = WG_SFX(ld)(r0 + 2 * j), a1 = WG_SFX(ld)(r0 + 2 * j + WG_VW), b0 = WG_SFX(ld)(r1 + 2 * j),
                 b1 = WG_SFX(ld)(r1 + 2 * j + WG_VW);
        const vf zero = {0};
        const vf s = zero + __builtin_shuffle(a0, a1, ev) + __builtin_shuffle(a0, a1, od) +
                     __builtin_shuffle(b0, b1, ev) + __builtin_shuffle(b0, b1, od);
        WG_SFX(st)(y + j, s * 0.25f);
    }
    for (; j < ow; j++)
        y[j] = (0.0f + r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * 0.25f;
}
