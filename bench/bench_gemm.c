/* GEMM benchmark (not a test): sl_op_gemm at each runtime.precision on the
 * shapes of the models' large linear layers, timed and checked.
 *
 * For each backend (--backends, default cuda) and precision (--precisions,
 * default fp32,tf32,bf16; a precision the backend refuses is printed as
 * skipped) and each shape: achieved TFLOP/s (2 m n k per item / time, best of
 * --repeat after one warm-up, inputs and outputs in backend memory, the clock
 * stopped after sl_op_sync; on the cpu backend the process's CPU time) and the error against the exact (double) product
 * of the first rows, max |got - exact| / max |exact|, so a run records what
 * each mode costs in accuracy beside what it gains in speed.
 *
 * Shapes (batch x m x n x k; the batch shares the weights, as a model's
 * segments do): umxhq's fc1 (2974 -> 512) and fc3 (1024 -> 2974 · 2) over a
 * 2-second batch, Cnn14's fc1 (2048 -> 2048), a RoFormer feed-forward
 * (384 -> 1536) over 4096 tokens, the full-size BS-RoFormer's layers over a
 * 2-second segment (201 frames x 62 bands) and one mask-estimator layer, a
 * square 4096^3, CLAP's audio tower and HT-Demucs's cross transformer over the
 * 2688 frequency tokens of one 7.8 s segment (--only htdemucs).
 *
 * Output: one JSON object per line on stdout
 * ({"bench":"gemm","backend","device","precision","shape","m","n","k","batch",
 * "ms","tflops","err"}), a human line per result on stderr.
 *
 * --only PREFIX runs the shapes whose name starts with PREFIX (e.g. "clap": the
 * CLAP audio tower's linear layers). --peak first prints the fp32 FMA peak of one
 * core (24 independent AVX-512 multiply-add chains, process CPU time; "peak_gflops"),
 * the roofline the CPU figures are read against.
 *
 * Usage: bench_gemm [--backends cuda] [--precisions fp32,tf32,bf16,bf16x6] [--repeat 10] [--only PREFIX] [--peak] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/ops.h"
#include "bench/bench_util.h"

typedef struct {
    const char *name;
    size_t batch, m, n, k;
} shape;

static const shape shapes[] = {
    {"umx fc1 2974->512", 1, 4 * 173, 512, 2974},
    {"umx fc3 1024->5948", 1, 4 * 173, 5948, 1024},
    {"cnn14 fc1 2048->2048", 1, 64, 2048, 2048},
    {"roformer ff 384->1536", 1, 4096, 1536, 384},
    {"bs_roformer 2s qkv 384->1536", 1, 201 * 62, 1536, 384},
    {"bs_roformer 2s out 512->384", 1, 201 * 62, 384, 512},
    {"bs_roformer 2s ff2 1536->384", 1, 201 * 62, 384, 1536},
    {"bs_roformer 2s mask 384->1536", 1, 201, 1536, 384},
    {"square 4096", 1, 4096, 4096, 4096},
    /* CLAP's HTSAT-base audio tower on a 10 s clip (tokens x width): stages 1-4 */
    {"clap s1 qkv 128->384", 1, 4096, 384, 128},
    {"clap s1 proj 128->128", 1, 4096, 128, 128},
    {"clap s1 fc1 128->512", 1, 4096, 512, 128},
    {"clap s1 fc2 512->128", 1, 4096, 128, 512},
    {"clap s1 merge 512->256", 1, 1024, 256, 512},
    {"clap s2 qkv 256->768", 1, 1024, 768, 256},
    {"clap s2 proj 256->256", 1, 1024, 256, 256},
    {"clap s2 fc1 256->1024", 1, 1024, 1024, 256},
    {"clap s2 fc2 1024->256", 1, 1024, 256, 1024},
    {"clap s2 merge 1024->512", 1, 256, 512, 1024},
    {"clap s3 qkv 512->1536", 1, 256, 1536, 512},
    {"clap s3 proj 512->512", 1, 256, 512, 512},
    {"clap s3 fc1 512->2048", 1, 256, 2048, 512},
    {"clap s3 fc2 2048->512", 1, 256, 512, 2048},
    {"clap s3 merge 2048->1024", 1, 64, 1024, 2048},
    {"clap s4 qkv 1024->3072", 1, 64, 3072, 1024},
    {"clap s4 proj 1024->1024", 1, 64, 1024, 1024},
    {"clap s4 fc1 1024->4096", 1, 64, 4096, 1024},
    {"clap s4 fc2 4096->1024", 1, 64, 1024, 4096},
    /* HT-Demucs's cross transformer, one 7.8 s segment (2688 frequency tokens of 384) */
    {"htdemucs qkv 384->1152", 1, 2688, 1152, 384},
    {"htdemucs out 384->384", 1, 2688, 384, 384},
    {"htdemucs ff1 384->1536", 1, 2688, 1536, 384},
    {"htdemucs ff2 1536->384", 1, 2688, 384, 1536},
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* GFLOP/s of 24 independent chains of 16-lane fused multiply-adds on one core, best of 8 rounds
 * (0 without AVX-512). */
__attribute__((target("avx512f"))) static double fma_peak_512(void)
{
    __m512 acc[24];
    const __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 24; i++)
        acc[i] = _mm512_set1_ps((float)i);
    const long iters = 4000000;
    double t = INFINITY; /* best of 8 rounds */
    for (int round = 0; round < 8; round++) {
        const double t0 = bench_cpu_now();
        for (long n = 0; n < iters; n++) {
            _Pragma("GCC unroll 24") for (int i = 0; i < 24; i++)
                acc[i] = _mm512_fmadd_ps(acc[i], b, c);
        }
        t = fmin(t, bench_cpu_now() - t0);
    }
    float sink = 0.0f;
    for (int i = 0; i < 24; i++)
        sink += _mm512_reduce_add_ps(acc[i]);
    return sink != sink ? 0.0 : (double)iters * 24 * 32 / t / 1e9;
}

static double fma_peak(void) { return __builtin_cpu_supports("avx512f") ? fma_peak_512() : 0.0; }
#else
static double fma_peak(void) { return 0.0; }
#endif

static int run_shape(sl_op_ctx *ctx, const char *backend, sl_precision p, const shape *s, int repeat)
{
    const size_t nx = s->batch * s->m * s->k, nw = s->n * s->k, ny = s->batch * s->m * s->n;
    float *hx = malloc(nx * 4), *hw = malloc(nw * 4), *hb = malloc(s->n * 4), *hy = malloc(ny * 4);
    float *x = NULL, *w = NULL, *b = NULL, *y = NULL;
    int rc = (!hx || !hw || !hb || !hy) ? SL_ENOMEM : 0;
    for (size_t i = 0; !rc && i < nx; i++)
        hx[i] = urand();
    for (size_t i = 0; !rc && i < nw; i++)
        hw[i] = urand() / sqrtf((float)s->k);
    for (size_t i = 0; !rc && i < s->n; i++)
        hb[i] = urand();
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&x, nx * 4);
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&w, nw * 4);
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&b, s->n * 4);
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&y, ny * 4);
    if (!rc)
        rc = sl_op_upload(ctx, x, hx, nx * 4);
    if (!rc)
        rc = sl_op_upload(ctx, w, hw, nw * 4);
    if (!rc)
        rc = sl_op_upload(ctx, b, hb, s->n * 4);
    sl_gemm_args a;
    memset(&a, 0, sizeof a);
    a.batch = s->batch;
    a.m = s->m;
    a.n = s->n;
    a.k = s->k;
    a.x = x;
    a.ldx = s->k;
    a.stride_x = s->m * s->k;
    a.w = w;
    a.ldw = s->k;
    a.bias = b;
    a.act = SL_ACT_NONE;
    a.y = y;
    a.ldy = s->n;
    a.stride_y = s->m * s->n;
    double best = INFINITY;
    /* the CPU: the process's CPU time (all its threads; a shared machine's wall time is noisy) */
    const int cpu = !strcmp(backend, "cpu");
    if (!rc)
        rc = sl_op_mark_fixed(ctx, w, nw * 4); /* weights, as the models declare theirs */
    for (int r = 0; !rc && r <= repeat; r++) { /* r = 0: warm-up (cuBLASLt handle, workspace) */
        const double t0 = cpu ? bench_cpu_now() : bench_now();
        rc = sl_op_gemm(ctx, &a);
        if (!rc)
            rc = sl_op_sync(ctx);
        const double t = (cpu ? bench_cpu_now() : bench_now()) - t0;
        if (r && t < best)
            best = t;
    }
    if (!rc)
        rc = sl_op_download(ctx, hy, y, ny * 4);
    if (rc) {
        char m[512];
        fprintf(stderr, "bench_gemm: %s %s %s: %s\n", backend, sl_precision_name(p), s->name,
                sl_errmsg(rc, m, sizeof m));
    } else {
        double err = 0, peak = 0;
        const size_t rows = s->m < 16 ? s->m : 16; /* the exact product of the first rows */
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < s->n; j++) {
                double e = hb[j];
                for (size_t l = 0; l < s->k; l++)
                    e += (double)hx[i * s->k + l] * (double)hw[j * s->k + l];
                err = fmax(err, fabs(hy[i * s->n + j] - e));
                peak = fmax(peak, fabs(e));
            }
        err /= peak > 0 ? peak : 1;
        const double tflops = 2.0 * (double)s->batch * (double)s->m * (double)s->n * (double)s->k / best / 1e12;
        printf("{\"bench\":\"gemm\",\"backend\":\"%s\",\"device\":\"", backend);
        for (const char *c = sl_op_ctx_device(ctx); *c; c++)
            if (*c != '"' && *c != '\\')
                putchar(*c);
        printf("\",\"precision\":\"%s\",\"shape\":\"%s\",\"m\":%zu,\"n\":%zu,\"k\":%zu,\"batch\":%zu,"
               "\"ms\":%.4f,\"tflops\":%.3f,\"err\":%.3g}\n",
               sl_precision_name(p), s->name, s->m, s->n, s->k, s->batch, best * 1e3, tflops, err);
        fprintf(stderr, "  %-5s %-4s %-24s %9.3f ms %8.2f TFLOP/s  err %.2g\n", backend, sl_precision_name(p),
                s->name, best * 1e3, tflops, err);
    }
    sl_op_free(ctx, x);
    sl_op_free(ctx, w);
    sl_op_free(ctx, b);
    sl_op_free(ctx, y);
    free(hx);
    free(hw);
    free(hb);
    free(hy);
    return rc;
}

int main(int argc, char **argv)
{
    const char *backends = "cuda", *precisions = "fp32,tf32,bf16", *only = "";
    int repeat = 10, failed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backends") && i + 1 < argc)
            backends = argv[++i];
        else if (!strcmp(argv[i], "--precisions") && i + 1 < argc)
            precisions = argv[++i];
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--peak")) {
            const double g = fma_peak();
            printf("{\"bench\":\"gemm\",\"peak_gflops\":%.1f}\n", g);
            fprintf(stderr, "  fp32 FMA peak of one core (AVX-512, 24 chains): %.1f GFLOP/s\n", g);
        }
        else {
            fprintf(stderr, "usage: bench_gemm [--backends cuda] [--precisions fp32,tf32,bf16] [--repeat 10] [--only PREFIX] [--peak]\n");
            return 2;
        }
    }
    sl_log_set_level(SL_LOG_WARN);
    char bl[256];
    snprintf(bl, sizeof bl, "%s", backends);
    for (char *save = NULL, *be = strtok_r(bl, ",", &save); be; be = strtok_r(NULL, ",", &save)) {
        sl_op_ctx *ctx = NULL;
        if (sl_op_ctx_open(&ctx, be)) {
            printf("{\"bench\":\"gemm\",\"backend\":\"%s\",\"skipped\":\"%s\"}\n", be, "backend does not open");
            fprintf(stderr, "bench_gemm: backend %s skipped: %s\n", be, sl_lasterr());
            continue;
        }
        char pl[64];
        snprintf(pl, sizeof pl, "%s", precisions);
        for (char *s2 = NULL, *pn = strtok_r(pl, ",", &s2); pn; pn = strtok_r(NULL, ",", &s2)) {
            const int named = sl_precision_from_name(pn);
            const sl_precision p = named < 0 ? SL_PREC_FP32 : (sl_precision)named;
            if (named < 0 || sl_op_ctx_set_precision(ctx, p)) {
                printf("{\"bench\":\"gemm\",\"backend\":\"%s\",\"precision\":\"%s\",\"skipped\":\"unsupported\"}\n",
                       be, pn);
                fprintf(stderr, "bench_gemm: %s %s skipped: %s\n", be, pn, sl_lasterr());
                continue;
            }
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
                if (!strncmp(shapes[s].name, only, strlen(only)))
                    failed |= run_shape(ctx, be, p, &shapes[s], repeat) != 0;
        }
        sl_op_ctx_close(ctx);
    }
    return failed ? 1 : 0;
}
