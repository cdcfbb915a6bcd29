/* Parity of the real CUDA backend (cuFFT included) against the CPU backend, on
 * the shapes of tests/unit/test_parity.c plus large ones (several cuFFT chunks,
 * full-length tracks, the models on seconds of audio). Label `gpu`; exits 77
 * (ctest: skipped) with "skipped: no CUDA device" where no device answers.
 *
 * conv2d has two implementations on a GPU (kernels/cuda/conv2d.cu): cuDNN
 * (default where the build found it) and the hand-written kernel
 * (SL_CONV_IMPL=direct). The parity above runs the default; conv_impls() then
 * runs both on Cnn14's shapes against one CPU result. */
#include <stdlib.h>

#include "tests/unit/parity_impl.h"

/* y of conv2d on backend ctx (NULL when an upload failed); *rc keeps the first error. */
static float *conv_on(sl_op_ctx *ctx, const sl_conv2d_args *h, size_t nx, size_t nw, size_t ny, int *rc)
{
    float *dx = pr_up(ctx, h->x, nx), *dw = pr_up(ctx, h->wt, nw);
    float *db = h->bias ? pr_up(ctx, h->bias, (size_t)h->c_out) : NULL;
    float *dy = pr_up(ctx, NULL, ny), *out = NULL; /* poisoned: an unwritten element fails */
    if (dx && dw && (db || !h->bias) && dy) {
        sl_conv2d_args a = *h;
        a.x = dx;
        a.wt = dw;
        a.bias = h->bias ? db : NULL;
        a.y = dy;
        int r = sl_op_conv2d(ctx, &a);
        if (r < 0 && !*rc)
            *rc = r;
        out = pr_down(ctx, dy, ny, rc);
    } else if (!*rc) {
        *rc = SL_ENOMEM;
    }
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, db);
    sl_op_free(ctx, dy);
    return out;
}

/* Cnn14's convolutions (10 s of 32 kHz audio: 1001 frames x 64 mel bins, halved
 * per block) plus epilogue variants, on the default implementation and on the
 * hand-written kernel, each against the same CPU result, tolerance of conv2d
 * everywhere else (1e-5, kernels/README.md). */
static void conv_impls(void)
{
    static const struct {
        size_t batch;
        int ci, co, h, w, bias;
        sl_act act;
    } cs[] = {
        {2, 1, 64, 1001, 64, 1, SL_ACT_RELU},    /* block 1, first conv: one input channel */
        {2, 64, 64, 1001, 64, 1, SL_ACT_RELU},   /* block 1, second conv */
        {2, 128, 256, 250, 16, 1, SL_ACT_RELU},  /* block 3 */
        {2, 1024, 2048, 31, 2, 1, SL_ACT_RELU},  /* block 6, first conv */
        {1, 64, 128, 500, 32, 0, SL_ACT_TANH},   /* epilogue: activation without bias */
        {2, 512, 512, 62, 4, 0, SL_ACT_NONE},    /* no epilogue at all */
    };
    sl_op_ctx *ref = NULL, *def = NULL, *dir = NULL;
    CHECK(sl_op_ctx_open(&ref, "cpu") == 0);
    CHECK_MSG(sl_op_ctx_open(&def, "cuda") == 0, "cuda: %s", sl_lasterr());
    /* Unknown values are refused at open, so a typo cannot silently test the default. */
    setenv("SL_CONV_IMPL", "bogus", 1);
    sl_op_ctx *bad = NULL;
    CHECK(sl_op_ctx_open(&bad, "cuda") == SL_EINVAL && strstr(sl_lasterr(), "SL_CONV_IMPL"));
    sl_op_ctx_close(bad);
    setenv("SL_CONV_IMPL", "direct", 1);
    CHECK_MSG(sl_op_ctx_open(&dir, "cuda") == 0, "cuda, SL_CONV_IMPL=direct: %s", sl_lasterr());
    unsetenv("SL_CONV_IMPL");
    if (!ref || !def || !dir) {
        sl_op_ctx_close(ref);
        sl_op_ctx_close(def);
        sl_op_ctx_close(dir);
        return;
    }
    const int cudnn = strstr(sl_op_ctx_device(def), "conv2d: cuDNN") != NULL;
    CHECK(strstr(sl_op_ctx_device(dir), "conv2d: direct kernel") != NULL);
    printf("conv2d implementations: default = %s\n  (%s)\n  direct = %s\n", cudnn ? "cuDNN" : "direct kernel",
           sl_op_ctx_device(def), sl_op_ctx_device(dir));
    if (!cudnn)
        printf("conv2d: this build has no cuDNN: both rows below run the hand-written kernel\n");
    parity Pd = {ref, def, cudnn ? "cudnn" : "cuda", 1, 0}, Pk = {ref, dir, "direct", 1, 0};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        const size_t hw = (size_t)cs[i].h * (size_t)cs[i].w, nx = cs[i].batch * (size_t)cs[i].ci * hw,
                     nw = (size_t)cs[i].co * (size_t)cs[i].ci * 9, ny = cs[i].batch * (size_t)cs[i].co * hw;
        float *x = pr_rand(nx), *wt = pr_rand(nw), *bi = pr_rand((size_t)cs[i].co);
        sl_conv2d_args h = {cs[i].batch, cs[i].ci, cs[i].co, cs[i].h, cs[i].w, 3, x, wt, cs[i].bias ? bi : NULL,
                            cs[i].act, NULL, 0};
        int rc = 0;
        float *want = conv_on(ref, &h, nx, nw, ny, &rc), *got_d = conv_on(def, &h, nx, nw, ny, &rc),
              *got_k = conv_on(dir, &h, nx, nw, ny, &rc);
        CHECK_MSG(rc == 0, "conv2d: %s", sl_lasterr());
        char shape[128];
        snprintf(shape, sizeof shape, "b%zu c%d->%d %dx%d k3%s %s", cs[i].batch, cs[i].ci, cs[i].co, cs[i].h,
                 cs[i].w, cs[i].bias ? " bias" : "", act_name(cs[i].act));
        if (want && got_d && got_k) {
            pr_report(&Pd, "conv2d", shape, pr_err(got_d, want, ny), 1e-5);
            pr_report(&Pk, "conv2d", shape, pr_err(got_k, want, ny), 1e-5);
        }
        free(x);
        free(wt);
        free(bi);
        free(want);
        free(got_d);
        free(got_k);
    }
    /* The algorithm and workspace are cached per shape: a repeat must give the same bits. */
    {
        const size_t nx = 2 * 64 * 1001 * 64, nw = 64 * 64 * 9;
        float *x = pr_rand(nx), *wt = pr_rand(nw), *bi = pr_rand(64);
        sl_conv2d_args h = {2, 64, 64, 1001, 64, 3, x, wt, bi, SL_ACT_RELU, NULL, 0};
        int rc = 0;
        float *a = conv_on(def, &h, nx, nw, nx, &rc), *b = conv_on(def, &h, nx, nw, nx, &rc);
        CHECK_MSG(rc == 0, "conv2d: %s", sl_lasterr());
        CHECK_MSG(a && b && !memcmp(a, b, nx * sizeof(float)), "conv2d: two runs of one shape differ");
        free(x);
        free(wt);
        free(bi);
        free(a);
        free(b);
    }
    sl_op_ctx_close(dir);
    sl_op_ctx_close(def);
    sl_op_ctx_close(ref);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, "cuda") < 0) {
        printf("skipped: no CUDA device (%s)\n", sl_lasterr());
        return 77;
    }
    sl_op_ctx_close(ctx);
    pr_seed("test_cuda_parity");
    parity_run("cuda", 1);
    conv_impls();
    return sl_test_finish("cuda_parity");
}
