/* Parity of the HT-Demucs ops against the CPU backend, included by
 * parity_impl.h (same helpers, same report): conv1d (stride, both paddings,
 * dilation, groups, independent inner columns, every activation, the 1x1 path
 * that reads x in place, the GLU of the channel halves), conv_transpose1d (stride < k, = k, > k, crops,
 * a shortened output), GroupNorm through sl_op_norm (channel-first groups and
 * the channel-last GroupNorm(1, C) of the transformer), and affine's residual
 * (also in place on it), and the strided copy permute. Each convolution is also checked on both backends
 * against the exact sum in double, so an error shared by the CPU and the kernel
 * shows. */
#ifndef SL_PARITY_CONV1D_H
#define SL_PARITY_CONV1D_H

static double c1_act(sl_act act, double v)
{
    switch (act) {
    case SL_ACT_RELU: return v < 0 ? 0 : v;
    case SL_ACT_TANH: return tanh(v);
    case SL_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    default: return v;
    }
}

/* Runs a conv op (conv1d when c1 != NULL, else the transposed one) on both backends,
 * returns their outputs in out[0] (cpu) and out[1] (tested). */
static int c1_run(parity *P, sl_conv1d_args *c1, sl_convt1d_args *ct, const float *x, size_t nx, const float *w,
                  size_t nw, const float *bias, size_t nb, size_t ny, float *out[2])
{
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, nx), *dw = pr_up(ctxs[s], w, nw), *db = bias ? pr_up(ctxs[s], bias, nb) : NULL;
        float *dy = pr_up(ctxs[s], NULL, ny);
        int r;
        if (c1) {
            sl_conv1d_args a = *c1;
            a.x = dx, a.wt = dw, a.bias = db, a.y = dy;
            r = sl_op_conv1d(ctxs[s], &a);
        } else {
            sl_convt1d_args a = *ct;
            a.x = dx, a.wt = dw, a.bias = db, a.y = dy;
            r = sl_op_conv_transpose1d(ctxs[s], &a);
        }
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, ny, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dw);
        sl_op_free(ctxs[s], db);
        sl_op_free(ctxs[s], dy);
    }
    return rc;
}

static void c1_report(parity *P, const char *op, const char *shape, float *out[2], const double *exact, size_t ny)
{
    char s2[160];
    pr_report(P, op, shape, pr_err(out[1], out[0], ny), 1e-5);
    snprintf(s2, sizeof s2, "%s vs exact (cpu)", shape);
    pr_report(P, op, s2, sl_ref_err(out[0], exact, ny), 1e-5);
    snprintf(s2, sizeof s2, "%s vs exact (%s)", shape, P->name);
    pr_report(P, op, s2, sl_ref_err(out[1], exact, ny), 1e-5);
}

static void case_conv1d(parity *P, size_t batch, int ci, int co, int groups, size_t len, size_t inner, int k,
                        int stride, int dil, int pl, int pr, int bias, sl_act act, int glu)
{
    sl_conv1d_args a = {batch, ci, co, groups, len, inner, k, stride, dil, pl, pr, NULL, NULL, NULL, act, NULL, glu};
    const size_t lo = sl_conv1d_len_out(&a), Cg = (size_t)(ci / groups), Og = (size_t)(co / groups);
    const size_t nx = batch * (size_t)ci * len * inner, nw = (size_t)co * Cg * k;
    size_t ny = batch * (size_t)co * lo * inner;
    float *x = pr_rand(nx), *w = pr_rand(nw), *bi = pr_rand((size_t)co), *out[2];
    double *exact = malloc(ny * sizeof(double));
    for (size_t b = 0; b < batch; b++)
        for (size_t o = 0; o < (size_t)co; o++)
            for (size_t t = 0; t < lo; t++)
                for (size_t n = 0; n < inner; n++) {
                    double acc = bias ? bi[o] : 0.0;
                    const size_t g = o / Og;
                    for (size_t c = 0; c < Cg; c++)
                        for (int u = 0; u < k; u++) {
                            long p = (long)(t * (size_t)stride) + (long)u * dil - pl;
                            if (p >= 0 && (size_t)p < len)
                                acc += (double)w[(o * Cg + c) * (size_t)k + (size_t)u] *
                                       x[((b * (size_t)ci + g * Cg + c) * len + (size_t)p) * inner + n];
                        }
                    exact[((b * (size_t)co + o) * lo + t) * inner + n] = c1_act(act, acc);
                }
    const size_t half = (size_t)co / 2, m = lo * inner;
    if (glu) { /* the GLU of the channel halves, in place into the first half of each item */
        for (size_t b = 0; b < batch; b++)
            for (size_t o = 0; o < half; o++)
                for (size_t j = 0; j < m; j++)
                    exact[(b * half + o) * m + j] = exact[(b * (size_t)co + o) * m + j] /
                                                    (1.0 + exp(-exact[(b * (size_t)co + o + half) * m + j]));
        ny = batch * half * m;
    }
    int rc = c1_run(P, &a, NULL, x, nx, w, nw, bias ? bi : NULL, (size_t)co, ny, out);
    char shape[160];
    snprintf(shape, sizeof shape, "b%zu c%d->%d g%d L%zu x%zu k%d s%d d%d p%d,%d%s %s%s", batch, ci, co, groups, len,
             inner, k, stride, dil, pl, pr, bias ? " bias" : "", act_name(act), glu ? " glu" : "");
    CHECK_MSG(rc == 0, "conv1d %s: %s", shape, sl_lasterr());
    c1_report(P, "conv1d", shape, out, exact, ny);
    free(x);
    free(w);
    free(bi);
    free(exact);
    free(out[0]);
    free(out[1]);
}

static void case_convt1d(parity *P, size_t batch, int ci, int co, size_t len, size_t inner, int k, int stride,
                         int crop, size_t len_out, int bias, sl_act act)
{
    sl_convt1d_args a = {batch, ci, co, len, inner, k, stride, crop, len_out, NULL, NULL, NULL, act, NULL};
    const size_t nx = batch * (size_t)ci * len * inner, nw = (size_t)ci * co * k, ny = batch * (size_t)co * len_out * inner;
    float *x = pr_rand(nx), *w = pr_rand(nw), *bi = pr_rand((size_t)co), *out[2];
    double *exact = malloc(ny * sizeof(double));
    for (size_t b = 0; b < batch; b++)
        for (size_t o = 0; o < (size_t)co; o++)
            for (size_t t = 0; t < len_out; t++)
                for (size_t n = 0; n < inner; n++) {
                    double acc = bias ? bi[o] : 0.0;
                    for (size_t c = 0; c < (size_t)ci; c++)
                        for (size_t i = 0; i < len; i++) {
                            long u = (long)(t + (size_t)crop) - (long)(i * (size_t)stride);
                            if (u >= 0 && u < k)
                                acc += (double)x[((b * (size_t)ci + c) * len + i) * inner + n] *
                                       w[(c * (size_t)co + o) * (size_t)k + (size_t)u];
                        }
                    exact[((b * (size_t)co + o) * len_out + t) * inner + n] = c1_act(act, acc);
                }
    int rc = c1_run(P, NULL, &a, x, nx, w, nw, bias ? bi : NULL, (size_t)co, ny, out);
    char shape[160];
    snprintf(shape, sizeof shape, "b%zu c%d->%d L%zu x%zu k%d s%d crop%d out%zu%s %s", batch, ci, co, len, inner, k,
             stride, crop, len_out, bias ? " bias" : "", act_name(act));
    CHECK_MSG(rc == 0, "conv_transpose1d %s: %s", shape, sl_lasterr());
    c1_report(P, "convt1d", shape, out, exact, ny);
    free(x);
    free(w);
    free(bi);
    free(exact);
    free(out[0]);
    free(out[1]);
}

/* GroupNorm of [n][channels][S] (channel_last 0: rows n*groups) or of [n][S][channels] with one group;
 * glu: SL_NORM_GROUP_GLU (the GLU of each row's halves, dim / 2 outputs per row: compact, or the
 * first half of each row in place). */
static void case_group_norm(parity *P, size_t n, size_t channels, size_t groups, size_t S, int channel_last,
                            int in_place, sl_act act, int glu)
{
    const size_t dim = channels / groups * S, nx = n * channels * S, h = dim / 2;
    const size_t ldy = glu && !in_place ? h : dim, ny = glu ? n * groups * h : nx;
    sl_norm_args a = {glu ? SL_NORM_GROUP_GLU : SL_NORM_GROUP, n * groups, dim, NULL, dim, NULL, NULL, 1e-5f, NULL,
                      ldy, groups, channels, channel_last ? 1 : S, act};
    float *x = pr_rand(nx), *g = pr_rand(channels), *b = pr_rand(channels);
    for (size_t i = 0; i < nx; i++)
        x[i] = x[i] * 2.0f + 0.7f;
    double *exact = malloc(nx * sizeof(double));
    for (size_t r = 0; r < a.rows; r++) {
        double mean = 0, var = 0;
        for (size_t j = 0; j < dim; j++)
            mean += x[r * dim + j];
        mean /= (double)dim;
        for (size_t j = 0; j < dim; j++)
            var += (x[r * dim + j] - mean) * (x[r * dim + j] - mean);
        var /= (double)dim;
        for (size_t j = 0; j < dim; j++) {
            size_t c = channel_last ? j % channels : (r % groups) * (channels / groups) + j / S;
            const double v = (x[r * dim + j] - mean) / sqrt(var + 1e-5) * g[c] + b[c];
            exact[r * dim + j] = act == SL_ACT_GELU ? 0.5 * v * (1.0 + erf(v / sqrt(2.0))) : v;
        }
        if (glu) /* the outputs of row r at r * h, from the normalised row still at r * dim (r * h <= r * dim) */
            for (size_t j = 0; j < h; j++)
                exact[r * h + j] = exact[r * dim + j] / (1.0 + exp(-exact[r * dim + h + j]));
    }
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    float *out[2];
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, nx), *dg = pr_up(ctxs[s], g, channels), *db = pr_up(ctxs[s], b, channels);
        float *dy = in_place ? dx : pr_up(ctxs[s], NULL, nx);
        sl_norm_args na = a;
        na.x = dx, na.gamma = dg, na.beta = db, na.y = dy;
        int r = sl_op_norm(ctxs[s], &na);
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, nx, &rc);
        if (glu && in_place) /* the first half of each row, compacted */
            for (size_t i = 0; i < a.rows; i++)
                memmove(out[s] + i * h, out[s] + i * dim, h * sizeof(float));
        if (!in_place)
            sl_op_free(ctxs[s], dy);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dg);
        sl_op_free(ctxs[s], db);
    }
    char shape[128];
    snprintf(shape, sizeof shape, "group n%zu C%zu G%zu S%zu%s%s%s%s", n, channels, groups, S,
             channel_last ? " channel-last" : "", in_place ? " in place" : "", act == SL_ACT_GELU ? " gelu" : "",
             glu ? " glu" : "");
    CHECK_MSG(rc == 0, "norm %s: %s", shape, sl_lasterr());
    pr_report(P, "norm", shape, pr_err(out[1], out[0], ny), TOL_NORM);
    char s2[160];
    snprintf(s2, sizeof s2, "%s vs exact (cpu)", shape);
    pr_report(P, "norm", s2, sl_ref_err(out[0], exact, ny), 1e-5);
    free(x);
    free(g);
    free(b);
    free(exact);
    free(out[0]);
    free(out[1]);
}

/* affine with a residual: y = act((x + add) * mul) + res, res separate or y itself. */
static void case_affine_res(parity *P, size_t batch, size_t rows, size_t cols, sl_act act, int res_is_y)
{
    const size_t ld = cols + 3, n = batch * rows * ld;
    float *x = pr_rand(n), *r = pr_rand(n), *pm = pr_rand(cols), *out[2];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, n), *dr = pr_up(ctxs[s], r, n), *dm = pr_up(ctxs[s], pm, cols);
        float *dy = res_is_y ? dr : pr_up(ctxs[s], NULL, n);
        sl_affine_args a = {batch, rows, cols, dx, ld, rows * ld, NULL, dm, 0, act, dy, ld, rows * ld, dr, ld, rows * ld};
        int e = sl_op_affine(ctxs[s], &a);
        if (e < 0 && !rc)
            rc = e;
        out[s] = pr_down(ctxs[s], dy, n, &rc);
        for (size_t i = 0; i < n; i++) /* the padding columns are not written */
            if (i % ld >= cols)
                out[s][i] = 0.0f;
        if (!res_is_y)
            sl_op_free(ctxs[s], dy);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dr);
        sl_op_free(ctxs[s], dm);
    }
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu rows%zu cols%zu mul %s + res%s", batch, rows, cols, act_name(act),
             res_is_y ? " (in place)" : "");
    CHECK_MSG(rc == 0, "affine %s: %s", shape, sl_lasterr());
    pr_report(P, "affine", shape, pr_err(out[1], out[0], n), TOL_AFFINE);
    free(x);
    free(r);
    free(pm);
    free(out[0]);
    free(out[1]);
}

/* A permutation of [d0][d1][d2][d3] written into a buffer with a padded last axis (pad
 * elements left poisoned on both sides), checked against the host's copy exactly. */
static void case_permute(parity *P, const size_t dim[4], const int perm[4], size_t pad)
{
    size_t n = dim[0] * dim[1] * dim[2] * dim[3], xs[4], od[4], ys[4];
    xs[3] = 1;
    for (int d = 2; d >= 0; d--)
        xs[d] = xs[d + 1] * dim[d + 1];
    for (int d = 0; d < 4; d++)
        od[d] = dim[perm[d]];
    size_t yst[4];
    yst[3] = 1;
    yst[2] = od[3] + pad;
    yst[1] = yst[2] * od[2];
    yst[0] = yst[1] * od[1];
    const size_t ny = yst[0] * od[0];
    for (int d = 0; d < 4; d++) /* the output stride of input axis d */
        for (int e = 0; e < 4; e++)
            if (perm[e] == d)
                ys[d] = yst[e];
    float *x = pr_rand(n), *want = malloc(ny * sizeof(float)), *out[2];
    for (size_t i = 0; i < ny; i++)
        want[i] = NAN;
    for (size_t i0 = 0; i0 < dim[0]; i0++)
        for (size_t i1 = 0; i1 < dim[1]; i1++)
            for (size_t i2 = 0; i2 < dim[2]; i2++)
                for (size_t i3 = 0; i3 < dim[3]; i3++)
                    want[i0 * ys[0] + i1 * ys[1] + i2 * ys[2] + i3 * ys[3]] =
                        x[i0 * xs[0] + i1 * xs[1] + i2 * xs[2] + i3 * xs[3]];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, n), *dy = pr_up(ctxs[s], NULL, ny);
        sl_permute_args a = {{dim[0], dim[1], dim[2], dim[3]}, dx, {xs[0], xs[1], xs[2], xs[3]}, dy,
                             {ys[0], ys[1], ys[2], ys[3]}};
        int r = sl_op_permute(ctxs[s], &a);
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, ny, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dy);
    }
    char shape[128];
    snprintf(shape, sizeof shape, "%zux%zux%zux%zu -> (%d,%d,%d,%d) pad %zu", dim[0], dim[1], dim[2], dim[3], perm[0],
             perm[1], perm[2], perm[3], pad);
    CHECK_MSG(rc == 0, "permute %s: %s", shape, sl_lasterr());
    pr_report(P, "permute", shape, pr_err(out[1], want, ny) + pr_err(out[0], want, ny), 0.0);
    free(x);
    free(want);
    free(out[0]);
    free(out[1]);
}

static void conv1d_cases(parity *P, int big)
{
    {
        static const size_t d1[4] = {1, 1, 1, 1}, d2[4] = {2, 3, 17, 5}, d3[4] = {3, 2, 9, 300};
        static const int p1[4] = {0, 1, 2, 3}, p2[4] = {0, 2, 1, 3}, p3[4] = {0, 3, 2, 1};
        case_permute(P, d1, p1, 0);
        case_permute(P, d2, p2, 2); /* [B][C][F][T] -> [B][F][C][T] (DConv on the frequency branch) */
        case_permute(P, d3, p3, 1); /* [B][C][F][T] -> [B][T][F][C] (tokens of the transformer) */
    }
    case_conv1d(P, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, SL_ACT_NONE, 0);
    case_conv1d(P, 2, 4, 6, 1, 37, 1, 8, 4, 1, 2, 5, 1, SL_ACT_GELU, 0);   /* demucs time encoder (right pad) */
    case_conv1d(P, 1, 4, 8, 1, 64, 9, 8, 4, 1, 2, 2, 1, SL_ACT_NONE, 0);   /* kernel [8,1] stride [4,1] on [F][T] */
    case_conv1d(P, 3, 6, 3, 1, 33, 1, 3, 1, 4, 4, 4, 1, SL_ACT_NONE, 0);   /* DConv: dilation 4 */
    case_conv1d(P, 2, 8, 16, 1, 19, 5, 1, 1, 1, 0, 0, 1, SL_ACT_RELU, 0);  /* 1x1: x read in place */
    case_conv1d(P, 1, 6, 4, 2, 20, 3, 3, 2, 2, 1, 0, 0, SL_ACT_TANH, 0);   /* groups, stride and dilation */
    case_conv1d(P, 1, 3, 2, 1, 4, 1, 7, 1, 1, 3, 3, 1, SL_ACT_NONE, 0);    /* kernel longer than the signal */
    case_conv1d(P, 2, 4, 3, 1, 9000, 1, 3, 1, 2, 2, 2, 1, SL_ACT_GELU, 0); /* longer than a block: parts of items */
    case_conv1d(P, 2, 4, 3, 1, 2300, 4, 3, 2, 1, 1, 1, 1, SL_ACT_NONE, 0); /* parts of items cutting inner runs */
    case_conv1d(P, 3, 4, 5, 1, 9000, 1, 1, 1, 1, 0, 0, 0, SL_ACT_NONE, 0); /* 1x1 in place on parts of items */
    case_conv1d(P, 2, 8, 12, 1, 300, 1, 1, 1, 1, 0, 0, 1, SL_ACT_NONE, 1);  /* HT-Demucs rewrite 1x1 + GLU */
    case_conv1d(P, 1, 6, 10, 1, 70, 1, 3, 1, 1, 1, 1, 1, SL_ACT_NONE, 1);   /* decoder rewrite k 3 + GLU */
    case_convt1d(P, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, SL_ACT_NONE);
    case_convt1d(P, 2, 6, 4, 13, 1, 8, 4, 2, 48, 1, SL_ACT_GELU);       /* demucs time decoder, cropped */
    case_convt1d(P, 1, 8, 3, 16, 7, 8, 4, 0, 68, 1, SL_ACT_NONE);       /* kernel [8,1] stride [4,1], full */
    case_convt1d(P, 2, 3, 5, 9, 2, 3, 3, 1, 20, 0, SL_ACT_RELU);        /* stride = k */
    case_convt1d(P, 1, 4, 2, 7, 3, 2, 3, 0, 20, 1, SL_ACT_TANH);        /* stride > k: gaps get the bias */
    case_convt1d(P, 2, 6, 5, 9, 21, 8, 4, 2, 30, 1, SL_ACT_GELU);       /* rows of >= 16 columns: vector overlap-add */
    case_group_norm(P, 2, 8, 4, 33, 0, 0, SL_ACT_NONE, 0);
    case_group_norm(P, 3, 6, 1, 300, 0, 1, SL_ACT_NONE, 0);              /* GroupNorm(1, C), longer than a block */
    case_group_norm(P, 2, 12, 1, 45, 1, 0, SL_ACT_NONE, 0);              /* channel-last (transformer norm_out) */
    case_group_norm(P, 2, 8, 4, 37, 0, 1, SL_ACT_GELU, 0);               /* GroupNorm + GELU in one pass */
    case_group_norm(P, 3, 12, 1, 41, 0, 0, SL_ACT_NONE, 1);              /* GroupNorm(1, 2C) + GLU (DConv) */
    case_group_norm(P, 2, 10, 1, 300, 0, 1, SL_ACT_NONE, 1);             /* the same in place, longer than a block */
    case_affine_res(P, 2, 5, 33, SL_ACT_NONE, 0);
    case_affine_res(P, 1, 7, 300, SL_ACT_GELU, 1);
    if (big) {
        case_conv1d(P, 2, 48, 96, 1, 512, 336, 8, 4, 1, 2, 2, 1, SL_ACT_NONE, 0); /* htdemucs frequency layer 2 */
        case_convt1d(P, 2, 96, 48, 128, 336, 8, 4, 0, 516, 1, SL_ACT_NONE);
    }
}

#endif
