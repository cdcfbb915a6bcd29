/* Separation-model benchmark driver (not a test): Open-Unmix by default
 * (bench/bench_umx.py drives it and compares with the openunmix PyTorch package
 * on the same input), any model with weights through --model (the RoFormers:
 * bench/bench_roformer.py).
 *
 *   bench_umx --weights W.safetensors --input IN.f32 --output OUT.f32
 *             [--model umx] [--backend cpu] [--repeat 1] [--opt KEY=VALUE]...
 *             [--niter 1] [--residual 0] [--softmask 0]     (umx's options)
 *
 * IN.f32: little-endian float32 [2][n] (planar stereo at the model's rate; a
 * mono model reads the first channel).
 * OUT.f32: float32 [S][C][n], the separated stems of the last run (C: the model's channels).
 * The model is opened once (weights loaded and folded, untimed), one untimed
 * warm-up run, then --repeat timed runs of sl_sep_run on the whole input as one
 * segment (what the reference Separator does): STFT, network, Wiener, iSTFT,
 * host in and out. Prints one JSON line: best and mean seconds, the least CPU time of
 * the process over a timed run (cpu_best_s, every thread), x realtime. */
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
    const char *weights = NULL, *input = NULL, *output = NULL, *backend = "cpu", *model = "umx";
    const char *niter = "1", *residual = "false", *softmask = "false", *precision = "fp32";
    char extra[8][2][64];
    int repeat = 1, n_extra = 0, threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--weights"))
            weights = argv[i + 1];
        else if (!strcmp(argv[i], "--input"))
            input = argv[i + 1];
        else if (!strcmp(argv[i], "--output"))
            output = argv[i + 1];
        else if (!strcmp(argv[i], "--backend"))
            backend = argv[i + 1];
        else if (!strcmp(argv[i], "--repeat"))
            repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--niter"))
            niter = argv[i + 1];
        else if (!strcmp(argv[i], "--residual"))
            residual = argv[i + 1];
        else if (!strcmp(argv[i], "--softmask"))
            softmask = argv[i + 1];
        else if (!strcmp(argv[i], "--model"))
            model = argv[i + 1];
        else if (!strcmp(argv[i], "--precision"))
            precision = argv[i + 1];
        else if (!strcmp(argv[i], "--opt") && n_extra < 8 && strchr(argv[i + 1], '=')) {
            const char *eq = strchr(argv[i + 1], '=');
            snprintf(extra[n_extra][0], sizeof extra[0][0], "%.*s", (int)(eq - argv[i + 1]), argv[i + 1]);
            snprintf(extra[n_extra][1], sizeof extra[0][1], "%s", eq + 1);
            n_extra++;
        } else {
            fprintf(stderr, "bench_umx: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!weights || !input || repeat < 1) {
        fprintf(stderr, "usage: bench_umx --weights W --input IN.f32 [--output OUT.f32] [--model umx] [--backend cpu] "
                        "[--repeat N] [--threads N] [--precision fp32|tf32|bf16|bf16x6] [--opt KEY=VALUE]... [--niter 1] [--residual false] "
                        "[--softmask false]\n");
        return 2;
    }
    sl_log_set_level(SL_LOG_WARN);
    size_t n_floats;
    float *x = bench_read_f32("bench_umx", input, &n_floats);
    if (!x)
        return 1;
    const size_t n = n_floats / 2; /* stereo frames, channels planar: [2][n] */
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, backend) < 0) {
        fprintf(stderr, "bench_umx: backend %s: %s\n", backend, sl_lasterr());
        return 77;
    }
    if (sl_op_ctx_set_threads(ctx, threads) < 0) {
        fprintf(stderr, "bench_umx: --threads %d: %s\n", threads, sl_lasterr());
        return 2;
    }
    const int named = sl_precision_from_name(precision);
    const sl_precision prec = named < 0 ? SL_PREC_FP32 : (sl_precision)named;
    if (named < 0 || sl_op_ctx_set_precision(ctx, prec) < 0) {
        fprintf(stderr, "bench_umx: --precision %s: %s\n", precision, sl_lasterr());
        return 2;
    }
    const int is_umx = !strcmp(model, "umx");
    sl_cfg_opt items[11] = {{(char *)"niter", (char *)niter, (char *)"bench", 1, 1},
                            {(char *)"residual", (char *)residual, (char *)"bench", 1, 1},
                            {(char *)"softmask", (char *)softmask, (char *)"bench", 1, 1}};
    size_t n_items = is_umx ? 3 : 0;
    for (int e = 0; e < n_extra; e++)
        items[n_items++] = (sl_cfg_opt){extra[e][0], extra[e][1], (char *)"bench", 1, 1};
    sl_cfg_opts opts = {items, n_items};
    sl_sep_model *m = NULL;
    double t0 = bench_now();
    if (sl_sep_open(&m, model, weights, &opts, ctx) < 0) {
        fprintf(stderr, "bench_umx: %s\n", sl_lasterr());
        return 1;
    }
    const double t_load = bench_now() - t0;
    const sl_sep_info *info = sl_sep_get_info(m);
    const int S = info->n_sources, C = info->channels == 1 ? 1 : 2;
    float *out = malloc((size_t)S * C * n * sizeof(float));
    float *planes[SL_MAX_SOURCES][2];
    float *const *outp[SL_MAX_SOURCES];
    for (int s = 0; s < S; s++) {
        for (int c = 0; c < C; c++)
            planes[s][c] = out + (size_t)(C * s + c) * n;
        outp[s] = planes[s];
    }
    const float *in[2] = {x, x + n};
    double best = 1e30, sum = 0, cpu_best = 1e30;
    for (int r = 0; r <= repeat; r++) {
        const double c0 = bench_cpu_now();
        t0 = bench_now();
        if (sl_sep_run(m, in, n, (float *const *const *)outp) < 0) {
            fprintf(stderr, "bench_umx: run: %s\n", sl_lasterr());
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
    size_t forms_bytes = 0, forms_n = 0, forms_uses = 0; /* the CPU's packed weights (per process) */
    sl_op_cpu_fixed_forms(&forms_bytes, &forms_n, &forms_uses);
    printf("{\"bench\":\"%s\",\"impl\":\"stemline\",\"backend\":\"%s\",\"device\":\"%s\",\"threads\":%d,"
           "\"peak_threads\":%d,\"seconds\":%.3f,\"sources\":%d,\"load_s\":%.3f,\"best_s\":%.4f,\"mean_s\":%.4f,"
           "\"cpu_best_s\":%.4f,\"repeat\":%d,\"x_realtime\":%.4g,\"precision\":\"%s\",\"params\":\"%s\","
           "\"fixed_forms_mb\":%.1f}\n",
           model, backend, sl_op_ctx_device(ctx), sl_op_ctx_threads(ctx), sl_op_ctx_peak_threads(ctx), audio, S, t_load,
           best, sum / repeat, cpu_best, repeat, audio / best, sl_precision_name(sl_op_ctx_precision(ctx)), info->params,
           forms_bytes / 1048576.0);
    if (output) {
        FILE *o = fopen(output, "wb");
        if (!o || fwrite(out, sizeof(float), (size_t)S * C * n, o) != (size_t)S * C * n) {
            fprintf(stderr, "bench_umx: cannot write %s\n", output);
            return 1;
        }
        fclose(o);
    }
    sl_sep_close(m);
    sl_op_ctx_close(ctx);
    free(x);
    free(out);
    return 0;
}
