/* Embedding-model benchmark driver (not a test; bench/bench_cnn14.py and
 * bench/bench_clap.py drive it and compare with the official PyTorch model on
 * the same input).
 *
 *   bench_cnn14 --weights W.safetensors --input IN.f32 [--output OUT.f32]
 *               [--model cnn14|clap] [--backend cpu] [--repeat 3] [--threads 1]
 *               [--precision fp32|tf32|bf16|bf16x6]
 *
 * IN.f32: little-endian float32 [n] mono at the model's rate (32 kHz).
 * OUT.f32: float32 [dim + n_scores]: the embedding then the clip scores of the
 * last run (clap: no scores; its embedding is the normalised projection). The model is opened once (weights loaded and folded, untimed), one
 * untimed warm-up run, then --repeat timed runs of sl_emb_run_scores on the
 * whole input as one window (what Cnn14.forward does on a clip): front end,
 * network, head, host in and out. Prints one JSON line: best and mean seconds,
 * x realtime, and the precision in effect (--precision asks for runtime.precision's
 * mode; the device string says when the CPU computes fp32 instead). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/ops.h"
#include "models/model.h"
#include "bench/bench_util.h"

int main(int argc, char **argv)
{
    const char *weights = NULL, *input = NULL, *output = NULL, *backend = "cpu", *model = "cnn14";
    const char *precision = "fp32";
    int repeat = 3, threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--weights"))
            weights = argv[i + 1];
        else if (!strcmp(argv[i], "--input"))
            input = argv[i + 1];
        else if (!strcmp(argv[i], "--output"))
            output = argv[i + 1];
        else if (!strcmp(argv[i], "--model"))
            model = argv[i + 1];
        else if (!strcmp(argv[i], "--backend"))
            backend = argv[i + 1];
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--precision"))
            precision = argv[i + 1];
        else {
            fprintf(stderr, "bench_cnn14: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!weights || !input || repeat < 1) {
        fprintf(stderr, "usage: bench_cnn14 --weights W --input IN.f32 [--output OUT.f32] [--model cnn14|clap] [--backend cpu] "
                        "[--repeat N] [--threads N] [--precision fp32|tf32|bf16|bf16x6]\n");
        return 2;
    }
    sl_log_set_level(SL_LOG_WARN);
    size_t n;
    float *x = bench_read_f32("bench_cnn14", input, &n);
    if (!x)
        return 1;
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, backend) < 0) {
        fprintf(stderr, "bench_cnn14: backend %s: %s\n", backend, sl_lasterr());
        return 77;
    }
    if (sl_op_ctx_set_threads(ctx, threads) < 0) {
        fprintf(stderr, "bench_cnn14: --threads %d: %s\n", threads, sl_lasterr());
        return 2;
    }
    const int named = sl_precision_from_name(precision);
    const sl_precision prec = named < 0 ? SL_PREC_FP32 : (sl_precision)named;
    if (named < 0 || sl_op_ctx_set_precision(ctx, prec) < 0) {
        fprintf(stderr, "bench_cnn14: --precision %s: %s\n", precision,
                named < 0 ? "fp32, tf32, bf16 or bf16x6 expected" : sl_lasterr());
        return 2;
    }
    sl_emb_model *m = NULL;
    double t0 = bench_now();
    if (sl_emb_open(&m, model, weights, NULL, ctx) < 0) {
        fprintf(stderr, "bench_cnn14: %s\n", sl_lasterr());
        return 1;
    }
    const double t_load = bench_now() - t0;
    const sl_emb_info *info = sl_emb_get_info(m);
    float *out = malloc((size_t)(info->dim + info->n_scores) * sizeof(float));
    const float *in[1] = {x};
    double best = 1e30, sum = 0, cpu_best = 1e30;
    for (int r = 0; r <= repeat; r++) {
        t0 = bench_now();
        const double c0 = bench_cpu_now();
        if ((info->n_scores ? sl_emb_run_scores(m, in, n, out, out + info->dim) : sl_emb_run(m, in, n, out)) < 0) {
            fprintf(stderr, "bench_cnn14: run: %s\n", sl_lasterr());
            return 1;
        }
        const double dt = bench_now() - t0, dc = bench_cpu_now() - c0;
        if (r == 0)
            continue; /* warm-up: FFTW plans, first-touch page faults */
        if (dc < cpu_best)
            cpu_best = dc;
        sum += dt;
        if (dt < best)
            best = dt;
    }
    const double audio = (double)n / info->sample_rate;
    printf("{\"bench\":\"%s\",\"impl\":\"stemline\",\"backend\":\"%s\",\"device\":\"%s\",\"threads\":%d,\"peak_threads\":%d,\"seconds\":%.3f,"
           "\"best_s\":%.4f,\"cpu_best_s\":%.4f,\"mean_s\":%.4f,\"x_realtime\":%.2f,\"load_s\":%.3f,\"repeat\":%d,"
           "\"precision\":\"%s\"}\n",
           model, sl_op_ctx_backend(ctx), sl_op_ctx_device(ctx), sl_op_ctx_threads(ctx), sl_op_ctx_peak_threads(ctx), audio, best, cpu_best, sum / repeat, audio / best, t_load, repeat,
           sl_precision_name(sl_op_ctx_precision(ctx)));
    if (output) {
        FILE *o = fopen(output, "wb");
        if (!o || fwrite(out, sizeof(float), (size_t)(info->dim + info->n_scores), o) !=
                      (size_t)(info->dim + info->n_scores)) {
            fprintf(stderr, "bench_cnn14: cannot write %s\n", output);
            return 1;
        }
        fclose(o);
    }
    free(out);
    free(x);
    sl_emb_close(m);
    sl_op_ctx_close(ctx);
    return 0;
}
