/* Search throughput: exact top-k cosine search (pipeline/search.h) over
 * generated shards, in vectors scanned per second. Run by bench/run_search.sh,
 * which also times numpy brute force on the same files.
 *
 * usage: bench_search [--dir DIR] [--rows N] [--dim D] [--shard-rows N] [--k K]
 *                     [--queries 1,16] [--block-rows N] [--repeat R] [--dtype float32|float16]
 *                     [--backends cpu,cuda] [--threads N] [--model NAME --weights FILE]
 * Generates DIR/shard-NNNNN.npy (random unit vectors, fixed seed) with its
 * shard-NNNNN.jsonl rows, and DIR/index.json (naming --model / --weights) when DIR has none, then prints one JSON line per (backend, query
 * count). Backend cpu times sl_vindex_search (mmap, BLAS per block, partial
 * selection: what `stemline search --backend cpu` runs); cuda and cuda-emu time
 * sl_vindex_search_on (upload + one GEMM per block + the topk op, candidates
 * rescored on the host), the context opened before timing. A backend that cannot
 * be opened (cuda without a GPU) gets one line with "skipped" and the reason, never
 * a time. Every backend's top-1 row and score are printed, so they can be compared. */
#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/npy.h"
#include "kernels/ops.h"
#include "pipeline/search.h"
#include "bench/bench_util.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

/* user + system CPU time of the process */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double nrand(void)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        u[i] = ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2 * log(u[0])) * cos(2 * M_PI * u[1]);
}

static void unit_rows(float *x, size_t rows, size_t dim)
{
    for (size_t r = 0; r < rows; r++) {
        double ss = 0;
        for (size_t i = 0; i < dim; i++) {
            x[r * dim + i] = (float)nrand();
            ss += (double)x[r * dim + i] * x[r * dim + i];
        }
        for (size_t i = 0; i < dim; i++)
            x[r * dim + i] = (float)(x[r * dim + i] / sqrt(ss));
    }
}

/* What the generated index.json names (--model, --weights): a benchmark stand-in by
 * default; `clap` with a CLAP weights file makes the folder searchable with
 * `stemline search --text` (bench/run_search_text.sh). */
static const char *gen_model = "bench", *gen_weights = NULL;

/* shard-NNNNN.jsonl: one row per vector as the runner writes them (row, id, path, times, model, source) */
static int write_jsonl(const char *path, size_t n, size_t r0)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    for (size_t r = 0; r < n; r++)
        fprintf(f, "{\"row\": %zu, \"id\": \"t%07zu.flac\", \"path\": \"catalog/t%07zu.flac\", \"start\": 0.0, "
                   "\"end\": 10.0, \"duration\": 10.0, \"model\": \"%s\", \"source\": \"mix\"}\n",
                r, r0 + r, r0 + r, gen_model);
    return fclose(f) ? -1 : 0;
}

static int generate(const char *dir, size_t rows, size_t dim, size_t shard_rows, const char *dtype)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/index.json", dir);
    struct stat st;
    if (stat(p, &st) == 0)
        return 0; /* already there */
    if (sl_mkdirs(dir))
        return -1;
    float *x = malloc(shard_rows * dim * sizeof *x);
    if (!x)
        return -1;
    fprintf(stderr, "bench_search: generating %zu x %zu %s unit vectors in %s\n", rows, dim, dtype, dir);
    for (size_t s = 0, r0 = 0; r0 < rows; s++, r0 += shard_rows) {
        size_t n = rows - r0 < shard_rows ? rows - r0 : shard_rows;
        unit_rows(x, n, dim);
        snprintf(p, sizeof p, "%s/shard-%05zu.npy", dir, s);
        if (sl_npy_write(p, x, n, dim, dtype)) {
            fprintf(stderr, "bench_search: %s\n", sl_lasterr());
            free(x);
            return -1;
        }
        snprintf(p, sizeof p, "%s/shard-%05zu.jsonl", dir, s);
        if (write_jsonl(p, n, r0)) {
            fprintf(stderr, "bench_search: %s: cannot write\n", p);
            free(x);
            return -1;
        }
    }
    free(x);
    int clap = !strcmp(gen_model, "clap");
    sl_shards_meta m = {.model = gen_model, .weights = gen_weights, .source = "mix", .dtype = dtype, .dim = (int)dim,
                        .sample_rate = clap ? 48000 : 1, .channels = 1, .normalize = 1,
                        .window_samples = clap ? 480000 : 1, .hop_samples = clap ? 480000 : 1};
    return sl_shards_write_meta(dir, "", &m) ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *dir = "bench/work/search-1000000x256", *dtype = "float32", *qlist = "1,16", *blist = "cpu";
    size_t rows = 1000000, dim = 256, shard_rows = 10000, k = 10, block = 0;
    int repeat = 3, threads = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--dir"))
            dir = v;
        else if (!strcmp(a, "--rows"))
            rows = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--dim"))
            dim = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--shard-rows"))
            shard_rows = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--k"))
            k = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--queries"))
            qlist = v;
        else if (!strcmp(a, "--block-rows"))
            block = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--repeat"))
            repeat = atoi(v);
        else if (!strcmp(a, "--dtype"))
            dtype = v;
        else if (!strcmp(a, "--backends"))
            blist = v;
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else if (!strcmp(a, "--model"))
            gen_model = v;
        else if (!strcmp(a, "--weights"))
            gen_weights = v;
        else {
            fprintf(stderr, "bench_search: unknown option %s\n", a);
            return 2;
        }
    }
    if (!rows || !dim || !shard_rows || !k || repeat < 1)
        return 2;
    if (generate(dir, rows, dim, shard_rows, dtype))
        return 1;
    sl_vindex *ix = NULL;
    if (sl_vindex_open(&ix, dir)) {
        fprintf(stderr, "bench_search: %s\n", sl_lasterr());
        return 1;
    }
    sl_vindex_set_threads(ix, threads);
    rows = sl_vindex_rows(ix);
    dim = (size_t)sl_vindex_dim(ix);
    sl_log_set_level(SL_LOG_WARN);
    int status = 0;
    for (const char *b = blist; *b && !status;) {
        char backend[64];
        size_t bl = strcspn(b, ",");
        snprintf(backend, sizeof backend, "%.*s", (int)(bl < sizeof backend ? bl : sizeof backend - 1), b);
        b += bl;
        b += *b == ',';
        if (!*backend)
            continue;
        sl_op_ctx *ctx = NULL;
        if (sl_op_ctx_open(&ctx, backend) != 0) {
            fprintf(stderr, "bench_search: backend %s SKIPPED: %s\n", backend, sl_lasterr());
            printf("{\"impl\": \"stemline\", \"backend\": \"%s\", \"skipped\": ", backend);
            sl_json_str(stdout, sl_lasterr());
            printf("}\n");
            fflush(stdout);
            continue;
        }
        /* cpu: the BLAS path of `stemline search --backend cpu`; others: the op path */
        sl_op_ctx *path = strcmp(sl_op_ctx_backend(ctx), "cpu") ? ctx : NULL;
        for (const char *p = qlist; *p && !status;) {
            size_t nq = strtoull(p, NULL, 10);
            p += strcspn(p, ",");
            p += *p == ',';
            if (!nq)
                continue;
            float *q = malloc(nq * dim * sizeof *q);
            sl_search_hit *hits = calloc(nq * k, sizeof *hits);
            if (!q || !hits)
                return 1;
            rng = 12345;
            unit_rows(q, nq, dim);
            double best = INFINITY, best_cpu = INFINITY;
            size_t n = 0;
            for (int r = 0; r < repeat; r++) {
                double c0 = cpu_s(), t0 = bench_now();
                if (sl_vindex_search_on(ix, path, q, nq, k, block, hits, &n)) {
                    fprintf(stderr, "bench_search: backend %s: %s\n", backend, sl_lasterr());
                    status = 1;
                    break;
                }
                double t = bench_now() - t0, c = cpu_s() - c0;
                if (t < best)
                    best = t;
                if (c < best_cpu)
                    best_cpu = c;
            }
            if (!status) {
                printf("{\"impl\": \"stemline\", \"backend\": \"%s\", \"device\": ", backend);
                sl_json_str(stdout, sl_op_ctx_device(ctx));
                printf(", \"rows\": %zu, \"dim\": %zu, \"dtype\": \"%s\", \"k\": %zu, "
                       "\"queries\": %zu, \"block_rows\": %zu, \"rows_normalized\": %d, \"threads\": %d, \"seconds\": %.6f, \"cpu_seconds\": %.6f, "
                       "\"vectors_per_s\": %.0f, \"query_vectors_per_s\": %.0f, \"top1_row\": %llu, "
                       "\"top1_score\": %.6f}\n",
                       rows, dim, dtype, k, nq, block ? block : (size_t)SL_SEARCH_DEFAULT_BLOCK_ROWS,
                       sl_vindex_rows_normalized(ix), threads, best, best_cpu, rows / best, rows * (double)nq / best,
                       (unsigned long long)hits[0].global, hits[0].score);
                fflush(stdout);
            }
            free(q);
            free(hits);
        }
        sl_op_ctx_close(ctx);
    }
    sl_vindex_close(ix);
    return status;
}
