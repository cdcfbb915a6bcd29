/* pk_run and pk_run_kc of cpu_gemmpk.c, included there once per instruction set with PK_RUN /
 * PK_RUN_KC (the functions' names; PK_RUN left undefined: no pk_run), PK_RUN_TGT (their target
 * attribute), PK_CHUNK (a chunk of 12 rows, always inlined) and PK_CHUNK_ANY (fewer rows): the
 * row blocks, panels and chunks of k go in the same order for both, and a chunk's sums are the
 * same operations, so every element gets the same bits on either. Not a header of its own: no
 * include guard, on purpose. */

#ifdef PK_RUN
/* Rows [i0, i1) x panels [p0, p1) of the product (see the file comment). */
PK_RUN_TGT static void PK_RUN(const sl_gemm_args *a, const float *wp, size_t i0, size_t i1, size_t p0, size_t p1)
{
    const size_t k = a->k, per = PK_GROUP_BYTES / (PK_NR * k * sizeof(float));
    const size_t group = per ? per : 1;
    for (size_t g0 = p0; g0 < p1; g0 += group) {
        const size_t g1 = g0 + group < p1 ? g0 + group : p1;
        const size_t j0 = g0 * PK_NR, j1 = g1 * PK_NR < a->n ? g1 * PK_NR : a->n;
        for (size_t i = i0; i < i1; i += PK_MR) {
            const int R = i1 - i < PK_MR ? (int)(i1 - i) : PK_MR;
            const float *xi = a->x + i * a->ldx;
            const float *addi = a->add ? a->add + i * a->ldadd : NULL;
            float *yi = a->y + i * a->ldy;
            for (size_t p = g0; p < g1; p++) {
                const size_t j = p * PK_NR, cols = a->n - j < PK_NR ? a->n - j : PK_NR;
                const float *bias = a->bias ? a->bias + j : NULL, *add = addi ? addi + j : NULL;
                if (R == PK_MR)
                    PK_CHUNK(PK_MR, k, xi, a->ldx, wp + p * PK_NR * k, NULL, 0, 1, bias, add, a->ldadd, yi + j, a->ldy,
                             cols, NULL, 0);
                else
                    PK_CHUNK_ANY(R, k, xi, a->ldx, wp + p * PK_NR * k, NULL, 0, 1, bias, add, a->ldadd, yi + j, a->ldy,
                                 cols);
            }
            if (a->act != SL_ACT_NONE)
                for (int r = 0; r < R; r++)
                    sl_cpu_epilogue_row(a->act, j1 - j0, yi + (size_t)r * a->ldy + j0, NULL, NULL, NULL,
                                        yi + (size_t)r * a->ldy + j0);
        }
    }
}
#endif
/* Rows [i0, i1) x panels [p0, p1), panel by panel for groups of up to PK_SB rows: each chunk of
 * PK_KC steps of a panel stays in L1 while the group's row blocks pass over it (x from L2), the
 * partial sums of the group's rows kept in part between chunks; the next chunk of the weights
 * comes in meanwhile, pf_q lines every 8 steps (weights read once per call arrive from memory). */
PK_RUN_TGT static void PK_RUN_KC(const sl_gemm_args *a, const float *wp, size_t i0, size_t i1, size_t p0, size_t p1)
{
    float part[PK_SB * PK_NR] __attribute__((aligned(64)));
    const size_t k = a->k, KC = PK_KC, rows = i1 - i0, xr = PK_XB / (k * sizeof(float));
    const size_t sb = xr < PK_SB ? (xr > PK_MR ? xr : PK_MR) : PK_SB, groups = (rows + sb - 1) / sb;
    const size_t gr = ((rows + groups - 1) / groups + PK_MR - 1) / PK_MR * PK_MR;
    for (size_t s0 = i0; s0 < i1; s0 += gr) {
        const size_t s1 = s0 + gr < i1 ? s0 + gr : i1, full = (s1 - s0) / PK_MR;
        for (size_t p = p0; p < p1; p++) {
            const size_t j = p * PK_NR, cols = a->n - j < PK_NR ? a->n - j : PK_NR;
            const float *bias = a->bias ? a->bias + j : NULL;
            for (size_t c0 = 0; c0 < k; c0 += KC) {
                const size_t kn = k - c0 < KC ? k - c0 : KC;
                const int fin = c0 + kn == k, from = c0 > 0;
                const float *wc = wp + p * PK_NR * k + c0 * PK_NR;
                /* the next chunk (of this panel or the next one): contiguous after this one */
                const size_t next = fin ? (p + 1 < p1 ? (k < KC ? k : KC) : 0) : (k - c0 - kn < KC ? k - c0 - kn : KC);
                const char *pf = next && full ? (const char *)(wc + kn * PK_NR) : NULL;
                const char *pf_end = pf ? pf + next * PK_NR * sizeof(float) : NULL;
                /* lines per row block, spread over its groups of 8 steps */
                const size_t per = next * PK_NR * sizeof(float) / 64 / (full ? full : 1) + 1;
                const size_t pf_q = kn >= 8 ? (per + kn / 8 - 1) / (kn / 8) : 0;
                for (size_t i = s0; i < s1; i += PK_MR) {
                    const int R = s1 - i < PK_MR ? (int)(s1 - i) : PK_MR;
                    const float *xi = a->x + i * a->ldx + c0;
                    const float *add = a->add ? a->add + i * a->ldadd + j : NULL;
                    float *pi = part + (i - s0) * PK_NR, *yi = a->y + i * a->ldy + j;
                    if (R == PK_MR && pf && pf < pf_end) {
                        PK_CHUNK(PK_MR, kn, xi, a->ldx, wc, pi, from, fin, bias, add, a->ldadd, yi, a->ldy, cols, pf,
                                 pf_q);
                        pf += kn / 8 * pf_q * 64;
                    } else if (R == PK_MR)
                        PK_CHUNK(PK_MR, kn, xi, a->ldx, wc, pi, from, fin, bias, add, a->ldadd, yi, a->ldy, cols,
                                 NULL, 0);
                    else
                        PK_CHUNK_ANY(R, kn, xi, a->ldx, wc, pi, from, fin, bias, add, a->ldadd, yi, a->ldy, cols);
                }
            }
            if (a->act != SL_ACT_NONE)
                sl_cpu_epilogue_rows(a->act, s1 - s0, cols, a->y + s0 * a->ldy + j, a->ldy, NULL, NULL, 0, NULL, 0,
                                     a->y + s0 * a->ldy + j, a->ldy);
        }
    }
}
