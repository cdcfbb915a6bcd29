/* The LSTM recurrence's two CUDA kernels (kernels/cuda/lstm.cu): the
 * persistent one (one cooperative launch per layer, W_hh slices held in shared
 * memory across the steps, a grid sync per step) and the step kernel (one
 * block per item and direction), forced in turn with SL_LSTM_IMPL, give the
 * same bits, and both equal the CPU reference within the parity tolerance;
 * shapes with own weights per item (Open-Unmix's targets), shared weights,
 * more gate rows than threads, several slices per direction. SL_LSTM_IMPL=persist
 * on a grid that cannot be resident at once is refused (SL_EUNSUPPORTED), an
 * unknown value is SL_EINVAL. Built three times: unit.lstm_impl on cuda-emu (the
 * emulation's cooperative launch), cudamock.lstm_impl on the real backend's
 * host code (cudaLaunchCooperativeKernel's residency rule against a 4-SM
 * device) and gpu.lstm_impl (tests/gpu/test_lstm_impl.c) on a GPU, where it exits
 * 77 (skipped) without one. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "kernels/ops.h"
#include "tests/unit/sl_ref.h"
#include "tests/unit/sl_test.h"

#ifndef SL_LSTM_BACKEND
#define SL_LSTM_BACKEND "cuda-emu"
#endif

typedef struct {
    int layers, input, hidden, bidir;
    size_t batch, T;
    int shared;
} lcase;

/* y of sl_op_lstm on ctx under SL_LSTM_IMPL=impl (host memory), or NULL with *rc set. */
static float *run(sl_op_ctx *ctx, const char *impl, const lcase *c, const float *x, const float *w, int *rc)
{
    const sl_lstm_cfg cfg = {c->layers, c->input, c->hidden, c->bidir};
    const size_t nw = sl_lstm_weights_floats(&cfg), O = (size_t)(1 + c->bidir) * (size_t)c->hidden;
    const size_t nx = c->batch * c->T * (size_t)c->input, ny = c->batch * c->T * O, nws = c->shared ? nw : nw * c->batch;
    float *dx = NULL, *dw = NULL, *dy = NULL, *y = malloc(ny * sizeof(float));
    setenv("SL_LSTM_IMPL", impl, 1);
    *rc = sl_op_alloc(ctx, (void **)&dx, nx * 4);
    if (!*rc)
        *rc = sl_op_alloc(ctx, (void **)&dw, nws * 4);
    if (!*rc)
        *rc = sl_op_alloc(ctx, (void **)&dy, ny * 4);
    if (!*rc)
        *rc = sl_op_upload(ctx, dx, x, nx * 4);
    if (!*rc)
        *rc = sl_op_upload(ctx, dw, w, nws * 4);
    if (!*rc)
        *rc = sl_op_lstm(ctx, &cfg, c->batch, c->T, dx, (size_t)c->input, c->T * (size_t)c->input, dw,
                         c->shared ? 0 : nw, dy, O, c->T * O);
    if (!*rc)
        *rc = sl_op_download(ctx, y, dy, ny * 4);
    unsetenv("SL_LSTM_IMPL");
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dw);
    sl_op_free(ctx, dy);
    if (*rc) {
        free(y);
        return NULL;
    }
    return y;
}

int main(void)
{
    static const lcase cases[] = {
        {3, 16, 8, 1, 4, 23, 0},   /* Open-Unmix's structure: own weights per target, bidirectional */
        {2, 20, 37, 1, 2, 9, 1},   /* shared weights: one group of all items; 37 units in slices of 8 */
        {1, 4, 100, 0, 6, 5, 1},   /* shared weights: 6 items x 32 gate rows per block, more than the threads */
        {2, 32, 64, 1, 4, 12, 0},  /* several slices per direction, 4 groups */
        {1, 3, 5, 0, 3, 4, 1},     /* fewer units than a slice */
    };
    sl_ref_seed("test_lstm_impl");
    sl_op_ctx *ctx = NULL, *cpu = NULL;
    if (sl_op_ctx_open(&ctx, SL_LSTM_BACKEND) != 0) {
#ifdef SL_LSTM_SKIP_NO_DEVICE
        printf("skipped: no CUDA device (%s)\n", sl_lasterr());
        return 77;
#else
        CHECK_MSG(0, "open %s: %s", SL_LSTM_BACKEND, sl_lasterr());
#endif
    }
    CHECK(sl_op_ctx_open(&cpu, "cpu") == 0);
    if (!ctx || !cpu)
        return sl_test_finish("lstm_impl");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const lcase *c = &cases[i];
        const sl_lstm_cfg cfg = {c->layers, c->input, c->hidden, c->bidir};
        const size_t nw = sl_lstm_weights_floats(&cfg), O = (size_t)(1 + c->bidir) * (size_t)c->hidden;
        const size_t ny = c->batch * c->T * O;
        float *x = sl_ref_rnd(c->batch * c->T * (size_t)c->input, -1, 1);
        float *w = sl_ref_rnd(c->shared ? nw : nw * c->batch, -0.5f, 0.5f);
        int rc1, rc2, rc3;
        float *ys = run(ctx, "step", c, x, w, &rc1), *yp = run(ctx, "persist", c, x, w, &rc2);
        float *yc = run(cpu, "auto", c, x, w, &rc3);
        CHECK_MSG(!rc1 && !rc2 && !rc3, "case %zu: step %d, persist %d (%s), cpu %d", i, rc1, rc2, sl_lasterr(), rc3);
        if (ys && yp && yc) {
            CHECK_MSG(memcmp(ys, yp, ny * sizeof(float)) == 0, "case %zu: persistent and step kernels differ", i);
            double e = 0, peak = 1e-30;
            for (size_t k = 0; k < ny; k++) {
                e = fmax(e, isnan(yp[k]) ? INFINITY : fabs((double)yp[k] - yc[k]));
                peak = fmax(peak, fabs(yc[k]));
            }
            printf("  %s lstm L%d in%d H%d %s b%zu T%zu%s: persistent == step, err vs cpu %.3g\n", SL_LSTM_BACKEND,
                   c->layers, c->input, c->hidden, c->bidir ? "bidir" : "unidir", c->batch, c->T,
                   c->shared ? " shared-w" : "", e / peak);
            CHECK_MSG(e / peak <= 1e-5, "case %zu: %g against the CPU", i, e / peak);
        }
        free(ys), free(yp), free(yc), free(x), free(w);
    }
    /* a grid that cannot be resident at once, even on a large GPU: 2000 items with their
     * own weights and 2 directions are 4000 blocks (an H100 holds 2112 of these) */
    const lcase big = {1, 1, 8, 1, 2000, 1, 0};
    const sl_lstm_cfg bcfg = {big.layers, big.input, big.hidden, big.bidir};
    float *x = sl_ref_rnd(big.batch * big.T * (size_t)big.input, -1, 1);
    float *w = sl_ref_rnd(sl_lstm_weights_floats(&bcfg) * big.batch, -0.5f, 0.5f);
    int rc;
    float *y = run(ctx, "persist", &big, x, w, &rc);
    CHECK_MSG(!y && rc == SL_EUNSUPPORTED && strstr(sl_lasterr(), "cooperative"), "too big for one launch: %d %s", rc,
              sl_lasterr());
    free(y);
    free(x), free(w);
    /* auto where the persistent grid does not fit the emulation or the 4-SM mock (80+
     * blocks): the step kernel (on a GPU the persistent one) */
    const lcase mid = {1, 8, 64, 1, 40, 3, 0};
    const sl_lstm_cfg mcfg = {mid.layers, mid.input, mid.hidden, mid.bidir};
    x = sl_ref_rnd(mid.batch * mid.T * (size_t)mid.input, -1, 1);
    w = sl_ref_rnd(sl_lstm_weights_floats(&mcfg) * mid.batch, -0.5f, 0.5f);
    y = run(ctx, "auto", &mid, x, w, &rc);
    CHECK_MSG(y && rc == 0, "auto on 40 items: %d %s", rc, sl_lasterr());
    free(y);
    y = run(ctx, "fast", &mid, x, w, &rc);
    CHECK_MSG(!y && rc == SL_EINVAL, "SL_LSTM_IMPL=fast: %d", rc);
    free(y), free(x), free(w);
    sl_op_ctx_close(ctx);
    sl_op_ctx_close(cpu);
    return sl_test_finish("lstm_impl");
}
