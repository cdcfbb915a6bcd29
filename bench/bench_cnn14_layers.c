/* Cnn14's twelve 3x3 convolutions one by one on the CPU backend (not a test):
 * where the model's time goes, layer by layer.
 *
 *   bench_cnn14_layers [--fixed 0|1] [--threads N] [--repeat R]
 *
 * Shapes of a 10 s clip (1001 frames x 64 mel bins) at full size, random inputs
 * and weights, bias + ReLU as in the model; --fixed 1 (default) declares the
 * weights fixed (sl_op_mark_fixed, as models/cnn14.c does). One untimed call,
 * then the best of --repeat (default 5) in CPU time of the process; prints one
 * line per layer (ms, GFLOP/s counted as the direct form's 2 * 9 * c_in * c_out
 * per pixel) and the total. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/ops.h"
#include "bench/bench_util.h"

static float *rnd(size_t n, float scale)
{
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; p && i < n; i++)
        p[i] = scale * ((float)rand() / (float)RAND_MAX - 0.5f);
    return p;
}

int main(int argc, char **argv)
{
    int fixed = 1, threads = 1, repeat = 5;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--fixed"))
            fixed = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_cnn14_layers [--fixed 0|1] [--threads N] [--repeat R]\n");
            return 2;
        }
    }
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, "cpu") < 0 || sl_op_ctx_set_threads(ctx, threads) < 0) {
        fprintf(stderr, "bench_cnn14_layers: cannot open the cpu backend with %d threads\n", threads);
        return 2;
    }
    static const int shapes[12][4] = {{1, 64, 1001, 64},    {64, 64, 1001, 64},   {64, 128, 500, 32},
                                      {128, 128, 500, 32},  {128, 256, 250, 16},  {256, 256, 250, 16},
                                      {256, 512, 125, 8},   {512, 512, 125, 8},   {512, 1024, 62, 4},
                                      {1024, 1024, 62, 4},  {1024, 2048, 31, 2},  {2048, 2048, 31, 2}};
    double total = 0;
    srand(1);
    for (int l = 0; l < 12; l++) {
        const int C = shapes[l][0], O = shapes[l][1], H = shapes[l][2], W = shapes[l][3];
        const size_t nw = (size_t)O * C * 9;
        float *x = rnd((size_t)C * H * W, 1.0f), *hw = rnd(nw, 0.05f), *b = rnd((size_t)O, 0.02f), *w = NULL;
        float *y = malloc((size_t)O * H * W * sizeof(float));
        /* the weights in backend memory: a fixed buffer's kept form lives until its sl_op_free */
        if (!x || !hw || !b || !y || sl_op_alloc(ctx, (void **)&w, nw * sizeof(float)) < 0 ||
            sl_op_upload(ctx, w, hw, nw * sizeof(float)) < 0 || (fixed && sl_op_mark_fixed(ctx, w, nw * sizeof(float)) < 0)) {
            fprintf(stderr, "bench_cnn14_layers: out of memory\n");
            return 1;
        }
        sl_conv2d_args a = {1, C, O, H, W, 3, x, w, b, SL_ACT_RELU, y, 0};
        double best = 1e30;
        for (int r = 0; r <= repeat; r++) {
            const double t0 = bench_cpu_now();
            if (sl_op_conv2d(ctx, &a) < 0) {
                fprintf(stderr, "bench_cnn14_layers: conv2d failed\n");
                return 1;
            }
            const double dt = bench_cpu_now() - t0;
            if (r && dt < best)
                best = dt;
        }
        total += best;
        printf("%4d -> %4d at %4d x %2d: %7.2f ms  %6.1f GFLOP/s\n", C, O, H, W, best * 1e3,
               2.0 * nw * H * W / best * 1e-9);
        free(x);
        free(hw);
        sl_op_free(ctx, w);
        free(b);
        free(y);
    }
    printf("total %.1f ms (threads %d, weights %s)\n", total * 1e3, threads, fixed ? "fixed" : "per call");
    sl_op_ctx_close(ctx);
    return 0;
}
