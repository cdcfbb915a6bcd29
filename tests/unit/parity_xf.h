/* Parity of the transformer ops (kernels/ops.h "transformer ops") against the
 * CPU backend, included by parity_impl.h (same helpers, same report). Shapes:
 * one element, odd dims, more rows than a block, head dims 1..128, rotary
 * tables, additive bias shared over heads, gates, cross-attention with keys
 * of different lengths per sequence, in-place norm and GLU, overlapping mel
 * bands (a bin in several features, bins in none). */
#ifndef SL_PARITY_XF_H
#define SL_PARITY_XF_H

#define TOL_NORM 1e-6
#define TOL_GLU 1e-6
#define TOL_ATT 1e-5
#define TOL_BAND 1e-6
#define TOL_GATHER 1e-6 /* weighted taps: fused multiply-adds on a GPU; copies are exact */

static float *run_norm(sl_op_ctx *ctx, const sl_norm_args *h, size_t nx, size_t ny, int in_place, int *rc)
{
    sl_norm_args a = *h;
    float *dx = pr_up(ctx, h->x, nx), *dg = h->gamma ? pr_up(ctx, h->gamma, h->dim) : NULL,
          *db = h->beta ? pr_up(ctx, h->beta, h->dim) : NULL, *dy = in_place ? dx : pr_up(ctx, NULL, ny);
    a.x = dx;
    a.gamma = dg;
    a.beta = db;
    a.y = dy;
    *rc = sl_op_norm(ctx, &a);
    float *out = pr_down(ctx, dy, ny, rc);
    if (!in_place)
        sl_op_free(ctx, dy);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dg);
    sl_op_free(ctx, db);
    return out;
}

static void case_norm(parity *P, sl_norm_kind kind, size_t rows, size_t dim, int params, int in_place)
{
    sl_norm_args a = {kind, rows, dim, NULL, dim + (in_place ? 0 : 3), NULL, NULL, kind == SL_NORM_RMS ? 1e-12f : 1e-5f,
                      NULL, dim + (in_place ? 0 : 1), 0, 0, 0, SL_ACT_NONE};
    const size_t nx = rows * a.ldx, ny = in_place ? nx : rows * a.ldy;
    float *x = pr_rand(nx), *g = pr_rand(dim), *b = pr_rand(dim);
    for (size_t i = 0; i < nx; i++)
        x[i] = x[i] * 3.0f + 0.5f; /* an offset, so LayerNorm's mean matters */
    a.x = x;
    a.gamma = params ? g : NULL;
    a.beta = params ? b : NULL;
    int rc1, rc2;
    float *want = run_norm(P->ref, &a, nx, ny, in_place, &rc1);
    float *got = run_norm(P->ctx, &a, nx, ny, in_place, &rc2);
    /* compare only the rows' dim elements (the rest of each output row is not written) */
    for (size_t i = 0; i < rows; i++)
        for (size_t j = dim; j < a.ldy; j++)
            want[i * a.ldy + j] = got[i * a.ldy + j] = 0.0f;
    char shape[128];
    snprintf(shape, sizeof shape, "%s rows%zu dim%zu%s%s", kind == SL_NORM_RMS ? "rms" : "layer", rows, dim,
             params ? " gamma+beta" : "", in_place ? " in place" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "norm %s: %s", shape, sl_lasterr());
    pr_report(P, "norm", shape, pr_err(got, want, ny), TOL_NORM);
    free(x);
    free(g);
    free(b);
    free(want);
    free(got);
}

static void case_glu(parity *P, size_t rows, size_t n, int in_place)
{
    const size_t ldx = 2 * n + 1, ldy = in_place ? ldx : n, nx = rows * ldx, ny = in_place ? nx : rows * ldy;
    float *x = pr_rand(nx), *out[2];
    int rc[2];
    for (int s = 0; s < 2; s++) {
        sl_op_ctx *c = s ? P->ctx : P->ref;
        float *dx = pr_up(c, x, nx), *dy = in_place ? dx : pr_up(c, NULL, ny);
        rc[s] = sl_op_glu(c, rows, n, dx, ldx, dy, ldy);
        out[s] = pr_down(c, dy, ny, &rc[s]);
        if (!in_place)
            sl_op_free(c, dy);
        sl_op_free(c, dx);
    }
    for (size_t i = 0; i < rows; i++) /* only columns < n of each output row are defined */
        for (size_t j = n; j < ldy; j++)
            out[0][i * ldy + j] = out[1][i * ldy + j] = 0.0f;
    char shape[96];
    snprintf(shape, sizeof shape, "rows%zu n%zu%s", rows, n, in_place ? " in place" : "");
    CHECK_MSG(rc[0] == 0 && rc[1] == 0, "glu %s: %s", shape, sl_lasterr());
    pr_report(P, "glu", shape, pr_err(out[1], out[0], ny), TOL_GLU);
    free(x);
    free(out[0]);
    free(out[1]);
}

/* Attention flags */
#define ATT_ROPE 1
#define ATT_BIAS 2
#define ATT_GATE 4
#define ATT_KLEN 8 /* keys per sequence 1..tk */
#define ATT_QKV 16 /* q, k, v interleaved in one [rows][3*H*D] buffer (tq == tk) */

static void case_attention(parity *P, size_t batch, size_t tq, size_t tk, int heads, int D, int flags)
{
    const size_t HD = (size_t)heads * (size_t)D;
    sl_attention_args a;
    memset(&a, 0, sizeof a);
    a.batch = batch;
    a.tq = tq;
    a.tk = tk;
    a.heads = heads;
    a.dim_head = D;
    a.scale = 1.0f / sqrtf((float)D);
    size_t nq, nk, nv;
    if (flags & ATT_QKV) {
        a.ldq = a.ldk = a.ldv = 3 * HD;
        a.stride_q = a.stride_k = a.stride_v = tq * 3 * HD;
        nq = nk = nv = batch * tq * 3 * HD;
    } else {
        a.ldq = HD + 2;
        a.stride_q = tq * a.ldq + 1;
        a.ldk = HD;
        a.stride_k = tk * HD;
        a.ldv = HD + 5;
        a.stride_v = tk * a.ldv;
        nq = batch * a.stride_q;
        nk = batch * a.stride_k;
        nv = batch * a.stride_v;
    }
    a.ldo = HD + 3;
    a.stride_o = tq * a.ldo;
    a.ld_bias = tk + 1;
    a.stride_bias_h = 0; /* shared over heads */
    a.stride_bias_b = tq * a.ld_bias;
    a.ld_gate = (size_t)heads;
    a.stride_gate = tq * (size_t)heads;
    const size_t no = batch * a.stride_o, nb = batch * a.stride_bias_b, ng = batch * a.stride_gate;
    const size_t npos = tq > tk ? tq : tk;
    float *q = pr_rand(nq), *k = pr_rand(nk), *v = pr_rand(nv), *bias = pr_rand(nb), *gate = pr_rand(ng);
    float *rope = malloc(npos * (size_t)D * sizeof(float));
    for (size_t i = 0; i < nq; i++)
        q[i] *= 2.0f; /* scores of a few units: a peaked softmax */
    if (flags & ATT_ROPE)
        CHECK(sl_rope_table(rope, npos, D, 10000.0, NULL) == 0);
    int32_t *klen = malloc(batch * sizeof *klen);
    for (size_t b = 0; b < batch; b++)
        klen[b] = (int32_t)(tk - (b * 7) % tk);
    float *out[2];
    int rc[2];
    for (int s = 0; s < 2; s++) {
        sl_op_ctx *c = s ? P->ctx : P->ref;
        sl_attention_args d = a;
        float *dq = pr_up(c, q, nq), *dk = (flags & ATT_QKV) ? dq : pr_up(c, k, nk),
              *dv = (flags & ATT_QKV) ? dq : pr_up(c, v, nv), *dout = pr_up(c, NULL, no);
        float *drope = (flags & ATT_ROPE) ? pr_up(c, rope, npos * (size_t)D) : NULL;
        float *dbias = (flags & ATT_BIAS) ? pr_up(c, bias, nb) : NULL, *dgate = (flags & ATT_GATE) ? pr_up(c, gate, ng) : NULL;
        void *dlen = NULL;
        if (flags & ATT_KLEN) {
            CHECK(sl_op_alloc(c, &dlen, batch * sizeof *klen) == 0);
            CHECK(sl_op_upload(c, dlen, klen, batch * sizeof *klen) == 0);
        }
        d.q = dq;
        d.k = (flags & ATT_QKV) ? dq + HD : dk;
        d.v = (flags & ATT_QKV) ? dq + 2 * HD : dv;
        d.rope = drope;
        d.bias = dbias;
        d.gate = dgate;
        d.k_len = dlen;
        d.out = dout;
        rc[s] = sl_op_attention(c, &d);
        out[s] = pr_down(c, dout, no, &rc[s]);
        sl_op_free(c, dq);
        if (!(flags & ATT_QKV)) {
            sl_op_free(c, dk);
            sl_op_free(c, dv);
        }
        sl_op_free(c, dout);
        sl_op_free(c, drope);
        sl_op_free(c, dbias);
        sl_op_free(c, dgate);
        sl_op_free(c, dlen);
    }
    for (size_t b = 0; b < batch; b++) /* columns past heads*dim_head are not written */
        for (size_t i = 0; i < tq; i++)
            for (size_t j = HD; j < a.ldo; j++)
                out[0][b * a.stride_o + i * a.ldo + j] = out[1][b * a.stride_o + i * a.ldo + j] = 0.0f;
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu tq%zu tk%zu h%d d%d%s%s%s%s%s", batch, tq, tk, heads, D,
             flags & ATT_ROPE ? " rope" : "", flags & ATT_BIAS ? " bias" : "", flags & ATT_GATE ? " gate" : "",
             flags & ATT_KLEN ? " k_len" : "", flags & ATT_QKV ? " qkv" : "");
    CHECK_MSG(rc[0] == 0 && rc[1] == 0, "attention %s: %s", shape, sl_lasterr());
    pr_report(P, "attention", shape, pr_err(out[1], out[0], no), TOL_ATT);
    free(q);
    free(k);
    free(v);
    free(bias);
    free(gate);
    free(rope);
    free(klen);
    free(out[0]);
    free(out[1]);
}

/* spec_gather + mask_scatter over n_ch channels and F bins; mel: overlapping features. */
static void case_band(parity *P, size_t batch, size_t n_ch, size_t T, size_t F, size_t n_masks, int mel)
{
    size_t n_feat = 0;
    int32_t *idx = malloc(3 * F * n_ch * sizeof *idx);
    if (!mel) {
        for (size_t j = 0; j < F * n_ch; j++)
            idx[n_feat++] = (int32_t)j;
    } else { /* bands of 4 bins overlapping by 2, the last bin left out */
        for (size_t f0 = 0; f0 + 4 < F; f0 += 2)
            for (size_t f = f0; f < f0 + 4; f++)
                for (size_t c = 0; c < n_ch; c++)
                    idx[n_feat++] = (int32_t)(f * n_ch + c);
    }
    const size_t nbins = F * n_ch;
    int32_t *off = malloc((nbins + 1) * sizeof *off), *inv = malloc((n_feat ? n_feat : 1) * sizeof *inv);
    CHECK(sl_band_inverse(idx, n_feat, nbins, off, inv) == 0);
    sl_band_geom g = {batch, n_ch, T, F, n_feat, NULL};
    const size_t ns = batch * n_ch * T * F * 2, nr = batch * T * n_feat * 2, nm = batch * n_masks * T * n_feat * 2,
                 no = batch * n_masks * n_ch * T * F * 2;
    float *spec = pr_rand(ns), *mask = pr_rand(nm), *rows[2], *outs[2];
    int rc[2];
    for (int s = 0; s < 2; s++) {
        sl_op_ctx *c = s ? P->ctx : P->ref;
        void *di, *doff, *dinv;
        CHECK(sl_op_alloc(c, &di, n_feat * sizeof *idx) == 0 && sl_op_upload(c, di, idx, n_feat * sizeof *idx) == 0);
        CHECK(sl_op_alloc(c, &doff, (nbins + 1) * sizeof *off) == 0 &&
              sl_op_upload(c, doff, off, (nbins + 1) * sizeof *off) == 0);
        CHECK(sl_op_alloc(c, &dinv, n_feat * sizeof *inv) == 0 && sl_op_upload(c, dinv, inv, n_feat * sizeof *inv) == 0);
        sl_band_geom d = g;
        d.idx = di;
        float *dspec = pr_up(c, spec, ns), *dmask = pr_up(c, mask, nm), *drow = pr_up(c, NULL, nr),
              *dout = pr_up(c, NULL, no);
        rc[s] = sl_op_spec_gather(c, &d, dspec, drow);
        if (rc[s] == 0)
            rc[s] = sl_op_mask_scatter(c, &d, n_masks, doff, dinv, dspec, dmask, dout);
        rows[s] = pr_down(c, drow, nr, &rc[s]);
        outs[s] = pr_down(c, dout, no, &rc[s]);
        sl_op_free(c, di);
        sl_op_free(c, doff);
        sl_op_free(c, dinv);
        sl_op_free(c, dspec);
        sl_op_free(c, dmask);
        sl_op_free(c, drow);
        sl_op_free(c, dout);
    }
    char shape[96];
    snprintf(shape, sizeof shape, "b%zu ch%zu T%zu F%zu masks%zu%s", batch, n_ch, T, F, n_masks, mel ? " overlap" : "");
    CHECK_MSG(rc[0] == 0 && rc[1] == 0, "band %s: %s", shape, sl_lasterr());
    pr_report(P, "spec_gather", shape, pr_err(rows[1], rows[0], nr), 0.0);
    pr_report(P, "mask_scatter", shape, pr_err(outs[1], outs[0], no), TOL_BAND);
    free(idx);
    free(off);
    free(inv);
    free(spec);
    free(mask);
    for (int s = 0; s < 2; s++) {
        free(rows[s]);
        free(outs[s]);
    }
}

/* gemm with a residual: y = act(x w^T + bias) + add, add a separate matrix or y itself. */
static void case_gemm_add(parity *P, size_t batch, size_t m, size_t n, size_t k, sl_act act, int in_place)
{
    const size_t ldx = k + 1, ldy = n + 2, nx = batch * m * ldx, nw = n * k, ny = batch * m * ldy;
    float *x = pr_rand(nx), *w = pr_rand(nw), *bias = pr_rand(n), *y0 = pr_rand(ny), *r = pr_rand(ny), *out[2];
    int rc[2];
    for (int s = 0; s < 2; s++) {
        sl_op_ctx *c = s ? P->ctx : P->ref;
        float *dx = pr_up(c, x, nx), *dw = pr_up(c, w, nw), *db = pr_up(c, bias, n), *dy = pr_up(c, y0, ny),
              *dr = in_place ? dy : pr_up(c, r, ny);
        sl_gemm_args a = {.batch = batch, .m = m, .n = n, .k = k, .x = dx, .ldx = ldx, .stride_x = m * ldx, .w = dw,
                          .ldw = k, .bias = db, .act = act, .y = dy, .ldy = ldy, .stride_y = m * ldy, .add = dr,
                          .ldadd = ldy, .stride_add = m * ldy};
        rc[s] = sl_op_gemm(c, &a);
        out[s] = pr_down(c, dy, ny, &rc[s]);
        sl_op_free(c, dx);
        sl_op_free(c, dw);
        sl_op_free(c, db);
        sl_op_free(c, dy);
        if (!in_place)
            sl_op_free(c, dr);
    }
    char shape[96];
    snprintf(shape, sizeof shape, "b%zu m%zu n%zu k%zu %s + %s", batch, m, n, k, act_name(act),
             in_place ? "y (residual)" : "add");
    CHECK_MSG(rc[0] == 0 && rc[1] == 0, "gemm %s: %s", shape, sl_lasterr());
    pr_report(P, "gemm", shape, pr_err(out[1], out[0], ny), TOL_GEMM);
    free(x);
    free(w);
    free(bias);
    free(y0);
    free(r);
    free(out[0]);
    free(out[1]);
}

/* row_gather: random index tables (rows repeat, some never picked), strided rows, weighted taps;
 * also checked against the definition computed here, so the CPU reference is tested too. */
static void case_gather(parity *P, size_t batch, size_t rows, size_t cols, size_t in_rows, int taps, int weighted)
{
    const size_t T = (size_t)taps, ldx = cols + 3, ldy = cols + 1, sx = in_rows * ldx + 5, sy = rows * ldy + 2;
    const size_t nx = batch * sx, ny = batch * sy;
    int32_t *idx = malloc(rows * T * sizeof *idx);
    float *w = pr_rand(rows * T), *x = pr_rand(nx), *out[2], *exact = calloc(ny, sizeof *exact);
    for (size_t i = 0; i < rows * T; i++)
        idx[i] = (int32_t)(sl_ref_urand() * (double)in_rows) % (int32_t)in_rows;
    for (size_t b = 0; b < batch; b++)
        for (size_t r = 0; r < rows; r++)
            for (size_t c = 0; c < cols; c++) {
                float v = weighted ? 0.0f : x[b * sx + (size_t)idx[r] * ldx + c];
                for (size_t t = 0; weighted && t < T; t++)
                    v = t ? v + w[r * T + t] * x[b * sx + (size_t)idx[r * T + t] * ldx + c]
                          : w[r * T] * x[b * sx + (size_t)idx[r * T] * ldx + c];
                exact[b * sy + r * ldy + c] = v;
            }
    int rc[2];
    for (int s = 0; s < 2; s++) {
        sl_op_ctx *c = s ? P->ctx : P->ref;
        void *di;
        CHECK(sl_op_alloc(c, &di, rows * T * sizeof *idx) == 0 && sl_op_upload(c, di, idx, rows * T * sizeof *idx) == 0);
        float *dw = weighted ? pr_up(c, w, rows * T) : NULL, *dx = pr_up(c, x, nx), *dy = pr_up(c, NULL, ny);
        CHECK(sl_op_upload(c, dy, exact, ny * sizeof(float)) == 0); /* the gaps between rows stay equal */
        sl_gather_args a = {batch, rows, cols, in_rows, taps, di, dw, dx, ldx, sx, dy, ldy, sy};
        rc[s] = sl_op_row_gather(c, &a);
        out[s] = pr_down(c, dy, ny, &rc[s]);
        sl_op_free(c, di);
        sl_op_free(c, dw);
        sl_op_free(c, dx);
        sl_op_free(c, dy);
    }
    char shape[96];
    snprintf(shape, sizeof shape, "b%zu rows%zu cols%zu in%zu taps%d%s", batch, rows, cols, in_rows, taps,
             weighted ? " weighted" : " copy");
    CHECK_MSG(rc[0] == 0 && rc[1] == 0, "row_gather %s: %s", shape, sl_lasterr());
    CHECK_MSG(pr_err(out[0], exact, ny) == 0.0, "row_gather %s: cpu reference differs from the definition", shape);
    pr_report(P, "row_gather", shape, pr_err(out[1], out[0], ny), weighted ? TOL_GATHER : 0.0);
    free(idx);
    free(w);
    free(x);
    free(exact);
    free(out[0]);
    free(out[1]);
}

static void xf_cases(parity *P, int big)
{
    case_gather(P, 1, 1, 1, 1, 1, 0);
    case_gather(P, 2, 300, 33, 257, 1, 0);    /* window partition: permuted rows */
    case_gather(P, 1, 1024, 1, 16000, 4, 1); /* bicubic patches of a spectrogram: one column, 4 taps */
    case_gather(P, 3, 17, 70, 9, 3, 1);
    case_gemm_add(P, 2, 70, 33, 20, SL_ACT_NONE, 1);
    case_gemm_add(P, 1, 9, 65, 7, SL_ACT_GELU, 0);
    case_norm(P, SL_NORM_RMS, 1, 1, 0, 0);
    case_norm(P, SL_NORM_RMS, 37, 300, 1, 0);
    case_norm(P, SL_NORM_LAYER, 5, 1000, 1, 1); /* longer than a block */
    case_norm(P, SL_NORM_LAYER, 9, 33, 0, 0);
    case_glu(P, 1, 1, 0);
    case_glu(P, 17, 300, 0);
    case_glu(P, 6, 129, 1);
    case_gemm(P, 2, 9, 70, 33, 1, SL_ACT_GELU, 0, 0, 1);
    case_affine(P, 2, 7, 65, 1, 1, SL_ACT_GELU, 0);
    case_attention(P, 1, 1, 1, 1, 1, 0);
    case_attention(P, 2, 70, 70, 3, 16, ATT_ROPE | ATT_GATE | ATT_QKV); /* the RoFormer layout */
    case_attention(P, 3, 9, 40, 2, 5, ATT_BIAS | ATT_KLEN);             /* cross, odd head dim, lengths */
    case_attention(P, 2, 33, 65, 1, 128, ATT_ROPE | ATT_BIAS | ATT_GATE | ATT_KLEN);
    case_band(P, 1, 1, 1, 1, 1, 0);
    case_band(P, 2, 2, 5, 33, 4, 0);
    case_band(P, 2, 2, 4, 21, 1, 1);
    if (big) {
        case_attention(P, 2, 801, 801, 2, 64, ATT_ROPE | ATT_GATE | ATT_QKV); /* BS-RoFormer time axis length */
        case_norm(P, SL_NORM_RMS, 4096, 512, 1, 0);
    }
}

#endif
