/* dc_run of cpu_conv1d_direct.c, included there once per instruction set with DC_RUN (the
 * function's name), DC_RUN_TGT (its target attribute), DC_TILE (the 12-channel tile, always
 * inlined), DC_TILE_ANY (fewer channels) and DC_PACK_X (the packed rows of x): a tile's work and
 * the blocks' order are the same for both, so are the sums of every element. Not a header of
 * its own: no include guard, on purpose. */

/* Tiles i0 .. i1 - 1 of item b, in blocks (dc_block), each block's input channels in passes of
 * J->cb (the rows of x packed into xp when given), then the block's activation or GLU (zb). */
DC_RUN_TGT static void DC_RUN(const dc_job *J, size_t b, size_t i0, size_t i1, float *xp, float *zb)
{
    const size_t O = J->O, per = J->cb * J->taps * DC_NR; /* packed floats per set of rows */
    const size_t ldy = zb ? DC_BLOCK * DC_NR : J->cols;
    dc_taps T[DC_BLOCK_MAX];
    int slot[DC_BLOCK_MAX], first[DC_BLOCK_MAX], order[DC_BLOCK_MAX];
    for (size_t ib = i0, ie; ib < i1; ib = ie) {
        ie = dc_block(J, ib, i1, T, slot, first);
        const size_t nt = ie - ib;
        int nu = 0, no = 0; /* the tiles by packed copy, those sharing one together */
        for (size_t i = 0; i < nt; i++)
            nu = slot[i] >= nu ? slot[i] + 1 : nu;
        for (int u = 0; u < nu; u++)
            for (size_t i = (size_t)first[u]; i < nt; i++)
                if (slot[i] == u)
                    order[no++] = (int)i;
        for (size_t c0 = 0; c0 < J->C; c0 += J->cb) {
            const size_t c1 = c0 + J->cb < J->C ? c0 + J->cb : J->C;
            if (xp)
                DC_PACK_X(J, b, c0, c1, T, first, (size_t)nu, per, xp);
            for (size_t o0 = 0; o0 < O; o0 += DC_MR) {
                const int R = O - o0 < DC_MR ? (int)(O - o0) : DC_MR;
                for (size_t n = 0; n < nt; n++) {
                    const size_t i = (size_t)order[n];
                    float *y = zb ? zb + o0 * ldy + (T[i].off - T[0].off) : J->y + (b * O + o0) * J->cols + T[i].off;
                    const float *xs = xp ? xp + (size_t)slot[i] * per : NULL;
                    if (R == DC_MR)
                        DC_TILE(DC_MR, J, b, o0, c0, c1, &T[i], xs, y, ldy);
                    else
                        DC_TILE_ANY(R, J, b, o0, c0, c1, &T[i], xs, y, ldy);
                }
            }
        }
        if (!zb && J->act == SL_ACT_NONE)
            continue;
        /* the block's tiles cover one contiguous run of each row of y, still in cache */
        const size_t n = T[nt - 1].off - T[0].off + (size_t)__builtin_popcount(T[nt - 1].ms);
        if (zb) { /* the GLU of the block's channel halves into y */
            const size_t H = O / 2;
            for (size_t o = 0; o < H; o++)
                sl_cpu_glu_row(J->y + (b * H + o) * J->cols + T[0].off, zb + o * ldy, zb + (o + H) * ldy, n);
            continue;
        }
        for (size_t o = 0; o < O; o++) {
            float *y = J->y + (b * O + o) * J->cols + T[0].off;
            sl_cpu_epilogue_row(J->act, n, y, NULL, NULL, NULL, y);
        }
    }
}
