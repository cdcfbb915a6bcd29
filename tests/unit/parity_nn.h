/* Parity of the neural-network and convolutional ops (kernels/ops.h: gemm,
 * affine, lstm, wiener, conv2d, avg_pool2d, clip_pool) against the CPU backend,
 * long sums against the exact (double) result too; included by parity_impl.h
 * (same helpers, same report, tolerances there). */
#ifndef SL_PARITY_NN_H
#define SL_PARITY_NN_H

/* ---- neural-network ops ---- */

static const char *act_name(sl_act a)
{
    return a == SL_ACT_RELU ? "relu" : a == SL_ACT_TANH ? "tanh" : a == SL_ACT_GELU ? "gelu" : "none";
}

/* Runs a gemm whose x, w, bias, mul, y are host arrays of the given element counts. */
static float *run_gemm(sl_op_ctx *ctx, const sl_gemm_args *h, size_t nx, size_t nw, size_t nb, size_t nm, size_t ny,
                       int *rc)
{
    sl_gemm_args a = *h;
    float *dx = pr_up(ctx, h->x, nx), *dw = pr_up(ctx, h->w, nw), *db = h->bias ? pr_up(ctx, h->bias, nb) : NULL,
          *dm = h->mul ? pr_up(ctx, h->mul, nm) : NULL, *dy = pr_up(ctx, h->y, ny);
    a.x = dx;
    a.w = dw;
    a.bias = db;
    a.mul = dm;
    a.y = dy;
    *rc = sl_op_gemm(ctx, &a);
    float *out = pr_down(ctx, dy, ny, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, db);
    sl_op_free(ctx, dm);
    sl_op_free(ctx, dy);
    return out;
}

/* gemm over a batch: x ld = k + padx (stride 0 when share_x), y ld = n + pady. */
static void case_gemm(parity *P, size_t batch, size_t m, size_t n, size_t k, int bias, sl_act act, int mul,
                      int share_x, size_t pad)
{
    sl_gemm_args a;
    memset(&a, 0, sizeof a);
    a.batch = batch;
    a.m = m;
    a.n = n;
    a.k = k;
    a.ldx = k + pad;
    a.stride_x = share_x ? 0 : m * a.ldx + 3;
    a.ldw = k;
    a.stride_w = n * k;
    a.stride_bias = n;
    a.act = act;
    a.ldmul = n + 1;
    a.stride_mul = m * a.ldmul;
    a.ldy = n + pad;
    a.stride_y = m * a.ldy + 5;
    const size_t nx = (share_x ? 1 : batch) * (m * a.ldx + 3), nw = batch * n * k, nb = batch * n,
                 nm = batch * a.stride_mul, ny = batch * a.stride_y;
    float *x = pr_rand(nx), *w = pr_rand(nw), *b = pr_rand(nb), *mm = pr_rand_pos(nm), *y0 = malloc(ny * sizeof(float));
    for (size_t i = 0; i < ny; i++)
        y0[i] = 7.0f; /* elements outside the rows must stay untouched */
    a.x = x;
    a.w = w;
    a.bias = bias ? b : NULL;
    a.mul = mul ? mm : NULL;
    a.y = y0;
    int rc1, rc2;
    float *want = run_gemm(P->ref, &a, nx, nw, nb, nm, ny, &rc1);
    float *got = run_gemm(P->ctx, &a, nx, nw, nb, nm, ny, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu m%zu n%zu k%zu%s %s%s%s ld+%zu", batch, m, n, k, bias ? " bias" : "",
             act_name(act), mul ? " mul" : "", share_x ? " shared-x" : "", pad);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "gemm %s: %s", shape, sl_lasterr());
    size_t untouched_bad = 0;
    for (size_t bb = 0; bb < batch; bb++)
        for (size_t i = 0; i < a.stride_y; i++) {
            size_t r = i / a.ldy, c = i % a.ldy;
            if ((r >= m || c >= n) && got[bb * a.stride_y + i] != 7.0f)
                untouched_bad++;
        }
    CHECK_MSG(untouched_bad == 0, "gemm %s: %zu elements outside the output written", shape, untouched_bad);
    pr_report(P, "gemm", shape, pr_err(got, want, ny), TOL_GEMM);
    free(x);
    free(w);
    free(b);
    free(mm);
    free(y0);
    free(want);
    free(got);
}

static float *run_affine(sl_op_ctx *ctx, const sl_affine_args *h, size_t nx, size_t np, size_t ny, int in_place,
                         int *rc)
{
    sl_affine_args a = *h;
    float *dx = pr_up(ctx, h->x, nx), *dadd = h->add ? pr_up(ctx, h->add, np) : NULL,
          *dmul = h->mul ? pr_up(ctx, h->mul, np) : NULL, *dy = in_place ? dx : pr_up(ctx, h->y, ny);
    a.x = dx;
    a.add = dadd;
    a.mul = dmul;
    a.y = dy;
    *rc = sl_op_affine(ctx, &a);
    float *out = pr_down(ctx, dy, ny, rc);
    if (!in_place)
        sl_op_free(ctx, dy);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dadd);
    sl_op_free(ctx, dmul);
    return out;
}

static void case_affine(parity *P, size_t batch, size_t rows, size_t cols, int add, int mul, sl_act act, int in_place)
{
    sl_affine_args a;
    memset(&a, 0, sizeof a);
    a.batch = batch;
    a.rows = rows;
    a.cols = cols;
    a.ldx = in_place ? cols : cols + 2;
    a.stride_x = rows * a.ldx;
    a.stride_p = cols;
    a.act = act;
    a.ldy = in_place ? cols : 2 * cols + 1;
    a.stride_y = rows * a.ldy;
    const size_t nx = batch * a.stride_x, np = batch * cols, ny = batch * a.stride_y;
    float *x = pr_rand(nx), *pa = pr_rand(np), *pm = pr_rand(np), *y0 = malloc(ny * sizeof(float));
    for (size_t i = 0; i < ny; i++)
        y0[i] = 7.0f;
    a.x = x;
    a.add = add ? pa : NULL;
    a.mul = mul ? pm : NULL;
    a.y = in_place ? x : y0;
    int rc1, rc2;
    float *want = run_affine(P->ref, &a, nx, np, ny, in_place, &rc1);
    float *got = run_affine(P->ctx, &a, nx, np, ny, in_place, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu rows%zu cols%zu%s%s %s%s", batch, rows, cols, add ? " add" : "",
             mul ? " mul" : "", act_name(act), in_place ? " in place" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "affine %s: %s", shape, sl_lasterr());
    pr_report(P, "affine", shape, pr_err(got, want, ny), TOL_AFFINE);
    free(x);
    free(pa);
    free(pm);
    free(y0);
    free(want);
    free(got);
}

static float *run_lstm(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
                       const float *w, size_t nw, size_t stride_w, size_t ldy, int *rc)
{
    const size_t nx = batch * T * ldx, ny = batch * T * ldy;
    float *dx = pr_up(ctx, x, nx), *dw = pr_up(ctx, w, nw), *dy = pr_up(ctx, NULL, ny);
    *rc = sl_op_lstm(ctx, c, batch, T, dx, ldx, T * ldx, dw, stride_w, dy, ldy, T * ldy);
    float *out = pr_down(ctx, dy, ny, rc);
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dy);
    return out;
}

static void case_lstm(parity *P, int layers, int input, int hidden, int bidir, size_t batch, size_t T, int shared_w)
{
    sl_lstm_cfg c = {layers, input, hidden, bidir};
    const size_t per = sl_lstm_weights_floats(&c), nw = shared_w ? per : batch * per;
    const size_t O = (size_t)(1 + bidir) * (size_t)hidden, ldx = (size_t)input + 1, ldy = O + 2;
    float *x = pr_rand(batch * T * ldx), *w = pr_rand(nw);
    const float ws = 1.0f / sqrtf((float)hidden); /* torch's init range: gates neither saturated nor linear */
    for (size_t i = 0; i < nw; i++)
        w[i] *= ws;
    int rc1, rc2;
    float *want = run_lstm(P->ref, &c, batch, T, x, ldx, w, nw, shared_w ? 0 : per, ldy, &rc1);
    float *got = run_lstm(P->ctx, &c, batch, T, x, ldx, w, nw, shared_w ? 0 : per, ldy, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu T%zu L%d in%d H%d %s%s", batch, T, layers, input, hidden,
             bidir ? "bidir" : "unidir", shared_w ? " shared-w" : "");
    CHECK_MSG(rc1 == 0 && rc2 == 0, "lstm %s: %s", shape, sl_lasterr());
    /* only the O output columns of each row are defined (the padding stays NaN on both) */
    pr_report(P, "lstm", shape, pr_err(got, want, batch * T * ldy), TOL_LSTM);
    free(x);
    free(w);
    free(want);
    free(got);
}

static float *run_wiener(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t J, size_t T, size_t F, const float *mix,
                         const float *mag, int *rc)
{
    const size_t S = J + (c->residual ? 1 : 0), no = S * 2 * T * F * 2;
    float *dmix = pr_up(ctx, mix, 2 * T * F * 2), *dmag = pr_up(ctx, mag, J * 2 * T * F), *dout = pr_up(ctx, NULL, no);
    *rc = sl_op_wiener(ctx, c, J, T, F, dmix, dmag, dout);
    float *out = pr_down(ctx, dout, no, rc);
    sl_op_free(ctx, dmix);
    sl_op_free(ctx, dmag);
    sl_op_free(ctx, dout);
    return out;
}

static void case_wiener(parity *P, size_t J, size_t T, size_t F, int niter, int softmask, int residual, int win,
                        float level)
{
    sl_wiener_cfg c = {niter, softmask, residual, win, 1e-10f};
    float *mix = pr_rand(2 * T * F * 2), *mag = pr_rand_pos(J * 2 * T * F);
    for (size_t i = 0; i < 2 * T * F * 2; i++)
        mix[i] *= level; /* level > 10: the max(1, max|x|/10) scaling is active */
    for (size_t i = 0; i < J * 2 * T * F; i++)
        mag[i] *= level;
    for (size_t i = 0; i < 2 * T * F; i += 17) { /* exact zeros: the reference's atan2 turns them into 1 + 0i */
        mix[2 * i] = 0.0f;
        mix[2 * i + 1] = 0.0f;
    }
    int rc1, rc2;
    const size_t no = (J + (residual ? 1 : 0)) * 2 * T * F * 2;
    float *want = run_wiener(P->ref, &c, J, T, F, mix, mag, &rc1);
    float *got = run_wiener(P->ctx, &c, J, T, F, mix, mag, &rc2);
    char shape[128];
    snprintf(shape, sizeof shape, "J%zu T%zu F%zu niter%d%s%s win%d x%g", J, T, F, niter, softmask ? " soft" : "",
             residual ? " resid" : "", win, (double)level);
    CHECK_MSG(rc1 == 0 && rc2 == 0, "wiener %s: %s", shape, sl_lasterr());
    pr_report(P, "wiener", shape, pr_err(got, want, no), TOL_WIENER);
    free(mix);
    free(mag);
    free(want);
    free(got);
}

/* A long dot product (k = umxhq fc1's 2974) against the exact sum (double):
 * every backend, the CPU reference included, must be as accurate as a float
 * BLAS, max |y - exact| <= TOL_GEMM_EXACT * max |exact|. OpenBLAS ~3e-7; a
 * plain running sum over k (the GPU kernel before its blocked summation)
 * ~2e-6: it fails here. */
#define TOL_GEMM_EXACT 1e-6
static void case_gemm_exact(parity *P, size_t m, size_t n, size_t k)
{
    sl_gemm_args a;
    memset(&a, 0, sizeof a);
    a.batch = 1;
    a.m = m;
    a.n = n;
    a.k = k;
    a.ldx = a.ldw = k;
    a.ldy = n;
    a.stride_x = m * k;
    a.stride_w = n * k;
    a.stride_y = m * n;
    a.act = SL_ACT_NONE;
    float *x = pr_rand(m * k), *w = pr_rand(n * k), *y0 = pr_rand(m * n);
    double *exact = malloc(m * n * sizeof(double));
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double sum = 0;
            for (size_t l = 0; l < k; l++)
                sum += (double)x[i * k + l] * (double)w[j * k + l];
            exact[i * n + j] = sum;
        }
    a.x = x;
    a.w = w;
    a.y = y0;
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    const char *names[2] = {"cpu", P->name};
    for (int q = 0; q < 2; q++) {
        int rc = 0;
        float *got = run_gemm(ctxs[q], &a, m * k, n * k, 0, 0, m * n, &rc);
        char shape[128];
        snprintf(shape, sizeof shape, "m%zu n%zu k%zu vs exact (%s)", m, n, k, names[q]);
        CHECK_MSG(rc == 0 && got, "gemm %s: %s", shape, sl_lasterr());
        if (got)
            pr_report(P, "gemm", shape, sl_ref_err(got, exact, m * n), TOL_GEMM_EXACT);
        free(got);
    }
    free(x);
    free(w);
    free(y0);
    free(exact);
}

static void nn_cases(parity *P, int big)
{
    case_gemm(P, 1, 1, 1, 1, 0, SL_ACT_NONE, 0, 0, 0);
    case_gemm(P, 3, 70, 33, 100, 1, SL_ACT_RELU, 0, 0, 3); /* several tiles, padded rows */
    case_gemm(P, 2, 5, 130, 17, 1, SL_ACT_TANH, 1, 1, 0);   /* shared x, product epilogue */
    case_gemm(P, 1, 65, 64, 16, 0, SL_ACT_NONE, 1, 0, 1);   /* one past a tile */
    case_gemm_exact(P, 64, 64, 2974);                       /* long sums: blocked summation */
    case_affine(P, 1, 1, 1, 1, 1, SL_ACT_NONE, 0);
    case_affine(P, 4, 9, 300, 1, 1, SL_ACT_TANH, 0);
    case_affine(P, 2, 5, 33, 0, 1, SL_ACT_RELU, 1);
    case_lstm(P, 1, 3, 5, 0, 1, 4, 0);
    case_lstm(P, 3, 16, 8, 1, 4, 23, 0); /* the Open-Unmix structure, small */
    case_lstm(P, 2, 20, 37, 1, 2, 6, 1); /* gate rows not a multiple of 32, shared weights */
    case_lstm(P, 1, 4, 300, 0, 1, 3, 0); /* 1200 gate rows: more rows than threads */
    case_wiener(P, 4, 7, 33, 1, 0, 0, 300, 1.0f);
    case_wiener(P, 4, 11, 20, 1, 1, 0, 4, 30.0f);  /* softmask, several windows, scaling on */
    case_wiener(P, 2, 9, 17, 2, 0, 1, 0, 50.0f);   /* residual, two iterations */
    case_wiener(P, 3, 5, 9, 0, 0, 1, 2, 1.0f);     /* no EM */
    case_wiener(P, 1, 6, 5, 1, 1, 1, 300, 3.0f);   /* one target + residual */
    if (big) {
        case_gemm(P, 4, 1300, 512, 2974, 1, SL_ACT_TANH, 0, 0, 0); /* umxhq fc1 */
        case_gemm(P, 2, 1300, 2049, 512, 1, SL_ACT_RELU, 1, 1, 0); /* umxhq fc3 per target */
        case_lstm(P, 3, 512, 256, 1, 4, 1300, 0);                  /* umxhq LSTM, 30 s */
        case_wiener(P, 4, 1300, 2049, 1, 0, 0, 300, 40.0f);
    }
}

/* ---- convolutional ops (Cnn14) ---- */

static void case_conv2d(parity *P, size_t batch, int ci, int co, int h, int w, int k, int bias, sl_act act)
{
    const size_t nx = batch * (size_t)ci * h * w, nw = (size_t)co * ci * k * k, ny = batch * (size_t)co * h * w;
    float *x = pr_rand(nx), *wt = pr_rand(nw), *bi = pr_rand((size_t)co), *out[2];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, nx), *dw = pr_up(ctxs[s], wt, nw), *db = pr_up(ctxs[s], bi, (size_t)co);
        float *dy = pr_up(ctxs[s], NULL, ny);
        sl_conv2d_args a = {batch, ci, co, h, w, k, dx, dw, bias ? db : NULL, act, dy, 0};
        int r = sl_op_conv2d(ctxs[s], &a);
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, ny, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dw);
        sl_op_free(ctxs[s], db);
        sl_op_free(ctxs[s], dy);
    }
    CHECK_MSG(rc == 0, "conv2d: %s", sl_lasterr());
    char shape[128];
    snprintf(shape, sizeof shape, "b%zu c%d->%d %dx%d k%d%s %s", batch, ci, co, h, w, k, bias ? " bias" : "",
             act_name(act));
    pr_report(P, "conv2d", shape, pr_err(out[1], out[0], ny), 1e-5);
    free(x);
    free(wt);
    free(bi);
    free(out[0]);
    free(out[1]);
}

static void case_avg_pool2d(parity *P, size_t planes, int h, int w, int kh, int kw)
{
    const size_t nx = planes * (size_t)h * w, ny = planes * (size_t)(h / kh) * (w / kw);
    float *x = pr_rand(nx), *out[2];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, nx), *dy = pr_up(ctxs[s], NULL, ny);
        int r = sl_op_avg_pool2d(ctxs[s], planes, h, w, kh, kw, dx, dy);
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, ny, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dy);
    }
    CHECK_MSG(rc == 0, "avg_pool2d: %s", sl_lasterr());
    char shape[128];
    snprintf(shape, sizeof shape, "p%zu %dx%d / %dx%d", planes, h, w, kh, kw);
    pr_report(P, "avg_pool2d", shape, pr_err(out[1], out[0], ny), 1e-6);
    free(x);
    free(out[0]);
    free(out[1]);
}

static void case_clip_pool(parity *P, size_t planes, size_t T, size_t F)
{
    const size_t nx = planes * T * F;
    float *x = pr_rand(nx), *out[2];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *dx = pr_up(ctxs[s], x, nx), *dy = pr_up(ctxs[s], NULL, planes);
        int r = sl_op_clip_pool(ctxs[s], planes, T, F, dx, dy);
        if (r < 0 && !rc)
            rc = r;
        out[s] = pr_down(ctxs[s], dy, planes, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dy);
    }
    CHECK_MSG(rc == 0, "clip_pool: %s", sl_lasterr());
    char shape[128];
    snprintf(shape, sizeof shape, "p%zu T%zu F%zu", planes, T, F);
    pr_report(P, "clip_pool", shape, pr_err(out[1], out[0], planes), 1e-6);
    free(x);
    free(out[0]);
    free(out[1]);
}

/* A convolution with a long sum (Cnn14 block 6: 2048 input channels x 9 taps)
 * against the exact sum (double), both backends, max |y - exact| <= 1e-6 *
 * max |exact|, as case_gemm_exact. */
static void case_conv2d_exact(parity *P, int ci, int co, int h, int w)
{
    const int k = 3;
    const size_t hw = (size_t)h * w, nx = (size_t)ci * hw, nw = (size_t)co * ci * 9, ny = (size_t)co * hw;
    float *x = pr_rand(nx), *wt = pr_rand(nw);
    double *exact = malloc(ny * sizeof(double));
    sl_ref_conv2d(x, wt, NULL, 1, ci, co, h, w, k, SL_ACT_NONE, exact);
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    const char *names[2] = {"cpu", P->name};
    for (int s = 0; s < 2; s++) {
        int rc = 0;
        float *dx = pr_up(ctxs[s], x, nx), *dw = pr_up(ctxs[s], wt, nw), *dy = pr_up(ctxs[s], NULL, ny);
        sl_conv2d_args a = {1, ci, co, h, w, k, dx, dw, NULL, SL_ACT_NONE, dy, 0};
        if (dx && dw && dy)
            rc = sl_op_conv2d(ctxs[s], &a);
        else
            rc = SL_ENOMEM;
        float *got = pr_down(ctxs[s], dy, ny, &rc);
        sl_op_free(ctxs[s], dx);
        sl_op_free(ctxs[s], dw);
        sl_op_free(ctxs[s], dy);
        char shape[128];
        snprintf(shape, sizeof shape, "c%d->%d %dx%d k3 vs exact (%s)", ci, co, h, w, names[s]);
        CHECK_MSG(rc == 0 && got, "conv2d %s: %s", shape, sl_lasterr());
        if (got)
            pr_report(P, "conv2d", shape, sl_ref_err(got, exact, ny), TOL_GEMM_EXACT);
        free(got);
    }
    free(x);
    free(wt);
    free(exact);
}

static void conv_cases(parity *P, int big)
{
    case_conv2d(P, 1, 1, 1, 1, 1, 3, 0, SL_ACT_NONE);      /* one pixel: all taps but the centre pad */
    case_conv2d(P, 2, 3, 10, 19, 21, 3, 1, SL_ACT_RELU);   /* two tiles each way, 10 = 8 + 2 channels */
    case_conv2d(P, 1, 5, 4, 33, 2, 3, 1, SL_ACT_TANH);     /* Cnn14's last blocks: 2 mel columns */
    case_conv2d(P, 1, 4, 9, 7, 5, 1, 1, SL_ACT_NONE);      /* 1x1 */
    case_conv2d(P, 1, 2, 3, 6, 9, 5, 0, SL_ACT_RELU);      /* 5x5 */
    case_conv2d_exact(P, 2048, 8, 16, 4);                   /* long sums (Cnn14 block 6): blocked summation */
    case_avg_pool2d(P, 3, 9, 7, 2, 2);                      /* odd sizes: floor */
    case_avg_pool2d(P, 2, 5, 5, 1, 1);
    case_avg_pool2d(P, 1, 4, 6, 2, 3);
    case_clip_pool(P, 1, 1, 1);
    case_clip_pool(P, 3, 7, 5);
    case_clip_pool(P, 2, 300, 2);                            /* more frames than threads */
    if (big) {
        case_conv2d(P, 2, 64, 128, 250, 32, 3, 1, SL_ACT_RELU); /* Cnn14 block 2, 5 s */
        case_avg_pool2d(P, 2 * 128, 250, 32, 2, 2);
        case_clip_pool(P, 2 * 2048, 31, 2);
    }
}

#endif
