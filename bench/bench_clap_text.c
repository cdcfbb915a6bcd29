/* CLAP text tower throughput (bench/bench_clap_text.py drives it against
 * laion-clap on PyTorch): loads the weights (timed apart), then embeds every line
 * of --queries in batches of --batch, tokenizer included, best of --repeat
 * (wall time; cpu_seconds: the least process CPU time of a run, every thread).
 * Prints one JSON line; --output writes the [queries][dim] vectors (float32). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sl_error.h"
#include "kernels/ops.h"
#include "models/clap_text.h"
#include "bench/bench_util.h"

int main(int argc, char **argv) {
    const char *weights = NULL, *queries = NULL, *output = NULL, *backend = "cpu";
    int repeat = 3, threads = 1, batch = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--weights")) weights = argv[i + 1];
        else if (!strcmp(argv[i], "--queries")) queries = argv[i + 1];
        else if (!strcmp(argv[i], "--output")) output = argv[i + 1];
        else if (!strcmp(argv[i], "--backend")) backend = argv[i + 1];
        else if (!strcmp(argv[i], "--repeat")) repeat = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "bench_clap_text: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!weights || !queries || repeat < 1 || batch < 1) {
        fprintf(stderr, "usage: bench_clap_text --weights W --queries FILE [--batch N] [--threads N] [--repeat N] "
                        "[--backend cpu] [--output OUT.f32]\n");
        return 2;
    }
    FILE *f = fopen(queries, "rb");
    if (!f) {
        fprintf(stderr, "bench_clap_text: cannot read %s\n", queries);
        return 1;
    }
    char **q = NULL, line[65536];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char **nq = realloc(q, (n + 1) * sizeof *q);
        if (!nq) return 1;
        q = nq;
        q[n++] = strdup(line);
    }
    fclose(f);
    sl_op_ctx *ctx = NULL;
    sl_clap_text *m = NULL;
    if (sl_op_ctx_open(&ctx, backend) < 0 || sl_op_ctx_set_threads(ctx, threads) < 0) {
        fprintf(stderr, "bench_clap_text: backend %s: %s\n", backend, sl_lasterr());
        return 1;
    }
    double t0 = bench_now();
    if (sl_clap_text_open(&m, ctx, weights) < 0) {
        fprintf(stderr, "bench_clap_text: %s\n", sl_lasterr());
        return 1;
    }
    double t_load = bench_now() - t0;
    const size_t dim = (size_t)sl_clap_text_dim(m);
    float *out = malloc(n * dim * sizeof *out);
    double best = 1e30, cpu_best = 1e30;
    for (int r = 0; r <= repeat; r++) { /* run 0: warm-up */
        t0 = bench_now();
        const double c0 = bench_cpu_now();
        for (size_t i = 0; i < n; i += (size_t)batch) {
            size_t nb = n - i < (size_t)batch ? n - i : (size_t)batch;
            if (sl_clap_text_embed(m, (const char *const *)q + i, nb, out + i * dim, NULL, NULL) < 0) {
                fprintf(stderr, "bench_clap_text: %s\n", sl_lasterr());
                return 1;
            }
        }
        double t = bench_now() - t0, c = bench_cpu_now() - c0;
        if (r && t < best) best = t;
        if (r && c < cpu_best) cpu_best = c;
    }
    printf("{\"bench\":\"clap_text\",\"impl\":\"stemline\",\"backend\":\"%s\",\"threads\":%d,\"queries\":%zu,"
           "\"batch\":%d,\"seconds\":%.4f,\"cpu_seconds\":%.4f,\"queries_per_s\":%.2f,\"load_s\":%.3f,\"repeat\":%d}\n",
           sl_op_ctx_backend(ctx), sl_op_ctx_threads(ctx), n, batch, best, cpu_best, n / best, t_load, repeat);
    if (output) {
        FILE *o = fopen(output, "wb");
        if (!o || fwrite(out, sizeof *out, n * dim, o) != n * dim) {
            fprintf(stderr, "bench_clap_text: cannot write %s\n", output);
            return 1;
        }
        fclose(o);
    }
    for (size_t i = 0; i < n; i++) free(q[i]);
    free(q);
    free(out);
    sl_clap_text_close(m);
    sl_op_ctx_close(ctx);
    return 0;
}
