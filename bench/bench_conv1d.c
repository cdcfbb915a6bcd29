/* conv1d / conv_transpose1d benchmark (not a test): HT-Demucs's 1-D convolutions on the CPU
 * backend, the direct kernels (kernels/cpu/cpu_conv1d_direct.c: AVX-512 or AVX2 + FMA) against
 * the im2col / col2im + BLAS paths (sl_cpu_conv1d_direct_set(0)), run by turns.
 *
 * Shapes: each distinct conv1d / conv_transpose1d call of one 7.8 s segment of HT-Demucs (the
 * count: calls per segment), its weights declared fixed as the model's are. Per shape: the best
 * process CPU time of --repeat runs of each path after one warm-up each, and the per-segment
 * total (count x best); then the totals per mode of the direct kernels (contig: inner 1 stride 1,
 * inner: inner >= 16, strided: inner 1 stride > 1, transp: transposed inner >= 16, phases:
 * transposed inner 1).
 *
 * Usage: bench_conv1d [--threads 1] [--repeat 3] [--only MODE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_util.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/ops.h"

/* ct: conv_transpose1d (pl: crop, out: len_out); count: calls per segment */
typedef struct {
    int ct, count;
    size_t batch;
    int ci, co;
    size_t len, inner;
    int k, stride, dil, pl, pr, act, glu;
    size_t out;
} shape;

static const shape shapes[] = {
    {0, 2, 1, 12, 192, 21499, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 32, 1, 192, 24, 336, 1, 3, 1, 1, 1, 1, 0, 0, 0},
    {0, 32, 1, 192, 24, 336, 1, 3, 1, 2, 2, 2, 0, 0, 0},
    {0, 1, 1, 192, 24, 5375, 1, 3, 1, 1, 1, 1, 0, 0, 0},
    {0, 1, 1, 192, 24, 5375, 1, 3, 1, 2, 2, 2, 0, 0, 0},
    {0, 1, 1, 192, 384, 10752, 1, 1, 1, 1, 0, 0, 0, 1, 0},
    {0, 1, 1, 192, 384, 32, 336, 8, 4, 1, 2, 2, 3, 0, 0},
    {0, 1, 1, 192, 384, 5375, 1, 1, 1, 1, 0, 0, 0, 1, 0},
    {0, 1, 1, 192, 384, 5375, 1, 3, 1, 1, 1, 1, 0, 1, 0},
    {0, 1, 1, 192, 384, 5375, 1, 8, 4, 1, 2, 3, 3, 0, 0},
    {0, 1, 1, 2, 48, 343980, 1, 8, 4, 1, 2, 2, 3, 0, 0},
    {0, 64, 1, 24, 384, 336, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 2, 1, 24, 384, 5375, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 1, 1, 384, 48, 1344, 1, 3, 1, 1, 1, 1, 0, 0, 0},
    {0, 1, 1, 384, 48, 1344, 1, 3, 1, 2, 2, 2, 0, 0, 0},
    {0, 8, 1, 384, 48, 336, 1, 3, 1, 1, 1, 1, 0, 0, 0},
    {0, 8, 1, 384, 48, 336, 1, 3, 1, 2, 2, 2, 0, 0, 0},
    {0, 1, 1, 384, 768, 1344, 1, 1, 1, 1, 0, 0, 0, 1, 0},
    {0, 1, 1, 384, 768, 1344, 1, 3, 1, 1, 1, 1, 0, 1, 0},
    {0, 1, 1, 384, 768, 2688, 1, 1, 1, 1, 0, 0, 0, 1, 0},
    {0, 1, 1, 4, 48, 2048, 336, 8, 4, 1, 2, 2, 3, 0, 0},
    {0, 1, 1, 48, 6, 85995, 1, 3, 1, 1, 1, 1, 0, 0, 0},
    {0, 1, 1, 48, 6, 85995, 1, 3, 1, 2, 2, 2, 0, 0, 0},
    {0, 2, 1, 48, 768, 1344, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 16, 1, 48, 768, 336, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 1, 1, 48, 96, 172032, 1, 1, 1, 1, 0, 0, 0, 1, 0},
    {0, 1, 1, 48, 96, 512, 336, 8, 4, 1, 2, 2, 3, 0, 0},
    {0, 1, 1, 48, 96, 85995, 1, 1, 1, 1, 0, 0, 0, 1, 0},
    {0, 1, 1, 48, 96, 85995, 1, 3, 1, 1, 1, 1, 0, 1, 0},
    {0, 1, 1, 48, 96, 85995, 1, 8, 4, 1, 2, 3, 3, 0, 0},
    {0, 2, 1, 6, 96, 85995, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 1, 1, 96, 12, 21499, 1, 3, 1, 1, 1, 1, 0, 0, 0},
    {0, 1, 1, 96, 12, 21499, 1, 3, 1, 2, 2, 2, 0, 0, 0},
    {0, 1, 1, 96, 192, 128, 336, 8, 4, 1, 2, 2, 3, 0, 0},
    {0, 1, 1, 96, 192, 21499, 1, 1, 1, 1, 0, 0, 0, 1, 0},
    {0, 1, 1, 96, 192, 21499, 1, 3, 1, 1, 1, 1, 0, 1, 0},
    {0, 1, 1, 96, 192, 21499, 1, 8, 4, 1, 2, 3, 3, 0, 0},
    {0, 1, 1, 96, 192, 43008, 1, 1, 1, 1, 0, 0, 0, 1, 0},
    {0, 128, 2, 12, 192, 336, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {0, 64, 2, 96, 12, 336, 1, 3, 1, 1, 1, 1, 0, 0, 0},
    {0, 64, 2, 96, 12, 336, 1, 3, 1, 2, 2, 2, 0, 0, 0},
    {0, 128, 4, 48, 6, 336, 1, 3, 1, 1, 1, 1, 0, 0, 0},
    {0, 128, 4, 48, 6, 336, 1, 3, 1, 2, 2, 2, 0, 0, 0},
    {0, 256, 4, 6, 96, 336, 1, 1, 1, 1, 0, 0, 0, 0, 0},
    {1, 1, 1, 192, 96, 32, 336, 8, 4, 1, 2, 0, 3, 0, 128},
    {1, 1, 1, 192, 96, 5375, 1, 8, 4, 1, 2, 0, 3, 0, 21499},
    {1, 1, 1, 384, 192, 1344, 1, 8, 4, 1, 2, 0, 3, 0, 5375},
    {1, 1, 1, 384, 192, 8, 336, 8, 4, 1, 2, 0, 3, 0, 32},
    {1, 1, 1, 48, 16, 512, 336, 8, 4, 1, 2, 0, 0, 0, 2048},
    {1, 1, 1, 48, 8, 85995, 1, 8, 4, 1, 2, 0, 0, 0, 343980},
    {1, 1, 1, 96, 48, 128, 336, 8, 4, 1, 2, 0, 3, 0, 512},
    {1, 1, 1, 96, 48, 21499, 1, 8, 4, 1, 2, 0, 3, 0, 85995},
};

static const char *mode_names[] = {"contig", "inner", "strided", "transp", "phases"};

static int mode_of(const shape *h)
{
    if (h->ct)
        return h->inner == 1 ? 4 : 3;
    return h->inner == 1 ? (h->stride == 1 ? 0 : 2) : 1;
}

/* One call of shape h on ctx. */
static int run_once(sl_op_ctx *ctx, const shape *h, const float *x, const float *w, const float *b, float *y)
{
    if (h->ct) {
        sl_convt1d_args a = {h->batch, h->ci, h->co, h->len, h->inner, h->k, h->stride, h->pl, h->out,
                             x, w, b, (sl_act)h->act, y};
        return sl_op_conv_transpose1d(ctx, &a);
    }
    sl_conv1d_args a = {h->batch, h->ci, h->co, 1, h->len, h->inner, h->k, h->stride, h->dil, h->pl, h->pr,
                        x, w, b, (sl_act)h->act, y, h->glu};
    return sl_op_conv1d(ctx, &a);
}

int main(int argc, char **argv)
{
    int threads = 1, repeat = 3;
    const char *only = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--only"))
            only = argv[i + 1];
        else {
            fprintf(stderr, "usage: bench_conv1d [--threads 1] [--repeat 3] [--only MODE]\n");
            return 2;
        }
    }
    sl_op_ctx *ctx;
    if (sl_op_ctx_open(&ctx, "cpu") || sl_op_ctx_set_threads(ctx, threads))
        return 1;
    printf("direct kernels: %s\n", (const char *[]){"none", "AVX-512", "AVX2 + FMA"}[sl_cpu_conv1d_direct_isa()]);
    double tot[5][2] = {{0}};
    int rc = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *h = &shapes[i];
        const int m = mode_of(h);
        if (only && strcmp(only, mode_names[m]))
            continue;
        const size_t lo = h->ct ? h->out
                                : (h->len + (size_t)h->pl + (size_t)h->pr - (size_t)h->dil * (size_t)(h->k - 1) - 1) /
                                          (size_t)h->stride + 1;
        const size_t nx = h->batch * (size_t)h->ci * h->len * h->inner, nw = (size_t)h->ci * (size_t)h->co * (size_t)h->k;
        const size_t ny = h->batch * (size_t)h->co * lo * h->inner;
        float *x = NULL, *w = NULL, *b = NULL, *y = NULL;
        if (sl_op_alloc(ctx, (void **)&x, nx * sizeof(float)) || sl_op_alloc(ctx, (void **)&w, nw * sizeof(float)) ||
            sl_op_alloc(ctx, (void **)&b, (size_t)h->co * sizeof(float)) ||
            sl_op_alloc(ctx, (void **)&y, ny * sizeof(float)))
            return 1;
        for (size_t j = 0; j < nx; j++)
            x[j] = (float)(j * 2654435761u % 1000) / 1000.0f - 0.5f;
        for (size_t j = 0; j < nw; j++)
            w[j] = ((float)(j * 40503u % 1000) / 1000.0f - 0.5f) * 0.1f;
        for (int j = 0; j < h->co; j++)
            b[j] = 0.01f * (float)j;
        sl_op_mark_fixed(ctx, w, nw * sizeof(float));
        double best[2] = {1e30, 1e30}; /* [direct, library] */
        for (int r = 0; r < 2 * (repeat + 1); r++) {
            const int lib = r & 1;
            sl_cpu_conv1d_direct_set(!lib);
            const double t0 = bench_cpu_now();
            rc |= run_once(ctx, h, x, w, b, y);
            const double t = bench_cpu_now() - t0;
            if (r >= 2 && t < best[lib])
                best[lib] = t;
        }
        sl_cpu_conv1d_direct_set(1);
        for (int p = 0; p < 2; p++)
            tot[m][p] += best[p] * h->count;
        printf("%-7s %s b%zu %d->%d L%zu x%zu k%d s%d d%d%s x%d: library %8.3f direct %8.3f ms (%.2fx)\n",
               mode_names[m], h->ct ? "convt1d" : "conv1d", h->batch, h->ci, h->co, h->len, h->inner, h->k, h->stride,
               h->dil, h->glu ? " glu" : "", h->count, best[1] * 1e3, best[0] * 1e3, best[1] / best[0]);
        sl_op_free(ctx, x), sl_op_free(ctx, w), sl_op_free(ctx, b), sl_op_free(ctx, y);
    }
    double all[2] = {0, 0};
    for (int m = 0; m < 5; m++) {
        printf("%-7s per segment: library %8.2f direct %8.2f ms\n", mode_names[m], tot[m][1] * 1e3, tot[m][0] * 1e3);
        all[0] += tot[m][0], all[1] += tot[m][1];
    }
    printf("all     per segment: library %8.2f direct %8.2f ms\n", all[1] * 1e3, all[0] * 1e3);
    sl_op_ctx_close(ctx);
    return rc ? 1 : 0;
}
