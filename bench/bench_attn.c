/* Attention benchmark (not a test): sl_op_attention on the CPU backend at the
 * models' shapes, timed and checked.
 *
 * For each shape: the achieved GFLOP/s (4 tq tk dim_head per (item, head) pair:
 * the two products q k^T and p v; the softmax's exponentials are not counted),
 * the process's CPU time of one call, best of --repeat after one warm-up, at
 * --threads threads, and the error of the first rows of every pair against the
 * exact (double) attention, max |got - exact| / max |exact|.
 *
 * Shapes (batch x heads x tq x tk x dim_head): HT-Demucs's cross transformer at
 * the released htdemucs dimensions over one 7.8 s segment (2688 frequency
 * tokens, 1344 time tokens, 8 heads of 48; self attention of each branch and
 * cross attention both ways), the full-size BS-RoFormer over a 2-second segment
 * (time axis: 62 bands x 201 frames, frequency axis: 201 frames x 62 bands, 8
 * heads of 64, rotary; and over one 11 s chunk, 1101 frames, its checkpoint's chunk_size), the CLAP audio tower's first stage (8 x 8 windows, 4
 * heads of 32) and its text tower (16 texts of 77 tokens, 12 heads of 64).
 *
 * Output: one JSON object per line on stdout ({"bench":"attn","shape","ms",
 * "gflops","err"}), a human line per result on stderr. --only PREFIX runs the
 * shapes whose name starts with PREFIX.
 *
 * --precision tf32 (or bf16) sets runtime.precision: the long sequences' products then run on
 * the AMX tiles where the CPU has them (kernels/cpu/cpu_attn_amx.c).
 *
 * Usage: bench_attn [--threads 1] [--repeat 5] [--only PREFIX] [--precision fp32|tf32|bf16] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/ops.h"
#include "bench/bench_util.h"

typedef struct {
    const char *name;
    size_t batch, tq, tk;
    int heads, dim_head, rope;
} shape;

static const shape shapes[] = {
    {"htdemucs self freq 2688", 1, 2688, 2688, 8, 48, 0},
    {"htdemucs self time 1344", 1, 1344, 1344, 8, 48, 0},
    {"htdemucs cross freq<-time", 1, 2688, 1344, 8, 48, 0},
    {"htdemucs cross time<-freq", 1, 1344, 2688, 8, 48, 0},
    {"bs_roformer 2s time axis", 62, 201, 201, 8, 64, 1},
    {"bs_roformer 2s freq axis", 201, 62, 62, 8, 64, 1},
    {"bs_roformer 11s time axis", 62, 1101, 1101, 8, 64, 1},
    {"bs_roformer 11s freq axis", 1101, 62, 62, 8, 64, 1},
    {"clap s1 windows 64", 1024, 64, 64, 4, 32, 0},
    {"clap text 77 tokens", 16, 77, 77, 12, 64, 0},
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float urand(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (float)((double)((rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* The exact attention of row i of pair (b, h) (packed q / k / v rows of width heads*D), into o[D]. */
static void exact_row(const shape *s, const float *q, const float *k, const float *v, const float *rope, size_t b,
                      int h, size_t i, double *o)
{
    const size_t W = (size_t)s->heads * (size_t)s->dim_head, D = (size_t)s->dim_head;
    double *sc = malloc(s->tk * sizeof(double)), qi[128], kj[128];
    const float *qr = q + (b * s->tq + i) * W + (size_t)h * D;
    for (size_t d = 0; d < D; d += 2) {
        const double c = rope ? rope[i * D + d] : 1, sn = rope ? rope[i * D + d + 1] : 0;
        qi[d] = qr[d] * c - qr[d + 1] * sn;
        qi[d + 1] = qr[d + 1] * c + qr[d] * sn;
    }
    double mx = -INFINITY, sum = 0;
    for (size_t j = 0; j < s->tk; j++) {
        const float *kr = k + (b * s->tk + j) * W + (size_t)h * D;
        double e = 0;
        for (size_t d = 0; d < D; d += 2) {
            const double c = rope ? rope[j * D + d] : 1, sn = rope ? rope[j * D + d + 1] : 0;
            kj[d] = kr[d] * c - kr[d + 1] * sn;
            kj[d + 1] = kr[d + 1] * c + kr[d] * sn;
            e += qi[d] * kj[d] + qi[d + 1] * kj[d + 1];
        }
        sc[j] = e / sqrt((double)D);
        mx = fmax(mx, sc[j]);
    }
    for (size_t j = 0; j < s->tk; j++)
        sum += sc[j] = exp(sc[j] - mx);
    for (size_t d = 0; d < D; d++)
        o[d] = 0;
    for (size_t j = 0; j < s->tk; j++)
        for (size_t d = 0; d < D; d++)
            o[d] += sc[j] / sum * v[(b * s->tk + j) * W + (size_t)h * D + d];
    free(sc);
}

static int run_shape(sl_op_ctx *ctx, const shape *s, int repeat)
{
    const size_t W = (size_t)s->heads * (size_t)s->dim_head, nq = s->batch * s->tq * W, nk = s->batch * s->tk * W;
    const size_t npos = s->tq > s->tk ? s->tq : s->tk, nr = npos * (size_t)s->dim_head;
    float *hq = malloc(nq * 4), *hk = malloc(nk * 4), *hv = malloc(nk * 4), *ho = malloc(nq * 4);
    float *hr = malloc(nr * 4);
    float *q = NULL, *k = NULL, *v = NULL, *o = NULL, *rope = NULL;
    int rc = (!hq || !hk || !hv || !ho || !hr) ? SL_ENOMEM : 0;
    for (size_t i = 0; !rc && i < nq; i++)
        hq[i] = 2.0f * urand();
    for (size_t i = 0; !rc && i < nk; i++) {
        hk[i] = 2.0f * urand();
        hv[i] = urand();
    }
    if (!rc && s->rope)
        rc = sl_rope_table(hr, npos, s->dim_head, 10000.0, NULL);
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&q, nq * 4);
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&k, nk * 4);
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&v, nk * 4);
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&o, nq * 4);
    if (!rc && s->rope)
        rc = sl_op_alloc(ctx, (void **)&rope, nr * 4);
    if (!rc)
        rc = sl_op_upload(ctx, q, hq, nq * 4);
    if (!rc)
        rc = sl_op_upload(ctx, k, hk, nk * 4);
    if (!rc)
        rc = sl_op_upload(ctx, v, hv, nk * 4);
    if (!rc && s->rope)
        rc = sl_op_upload(ctx, rope, hr, nr * 4);
    sl_attention_args a;
    memset(&a, 0, sizeof a);
    a.batch = s->batch, a.tq = s->tq, a.tk = s->tk, a.heads = s->heads, a.dim_head = s->dim_head;
    a.scale = 1.0f / sqrtf((float)s->dim_head);
    a.q = q, a.ldq = W, a.stride_q = s->tq * W;
    a.k = k, a.ldk = W, a.stride_k = s->tk * W;
    a.v = v, a.ldv = W, a.stride_v = s->tk * W;
    a.rope = rope;
    a.out = o, a.ldo = W, a.stride_o = s->tq * W;
    double best = INFINITY;
    for (int r = 0; !rc && r <= repeat; r++) {
        const double t0 = bench_cpu_now();
        rc = sl_op_attention(ctx, &a);
        if (!rc)
            rc = sl_op_sync(ctx);
        const double t = bench_cpu_now() - t0;
        if (r && t < best)
            best = t;
    }
    if (!rc)
        rc = sl_op_download(ctx, ho, o, nq * 4);
    if (rc) {
        char m[512];
        fprintf(stderr, "bench_attn: %s: %s\n", s->name, sl_errmsg(rc, m, sizeof m));
    } else {
        double err = 0, peak = 0, e[128];
        const size_t rows = s->tq < 4 ? s->tq : 4, items = s->batch < 2 ? s->batch : 2;
        for (size_t b = 0; b < items; b++)
            for (int h = 0; h < s->heads; h++)
                for (size_t i = 0; i < rows; i++) {
                    const size_t row = i * (s->tq - 1) / (rows > 1 ? rows - 1 : 1); /* first, last and between */
                    exact_row(s, hq, hk, hv, s->rope ? hr : NULL, b, h, row, e);
                    for (int d = 0; d < s->dim_head; d++) {
                        err = fmax(err, fabs(ho[(b * s->tq + row) * W + (size_t)h * s->dim_head + d] - e[d]));
                        peak = fmax(peak, fabs(e[d]));
                    }
                }
        err /= peak > 0 ? peak : 1;
        const double gflops = 4.0 * (double)s->batch * s->heads * (double)s->tq * (double)s->tk * s->dim_head / best / 1e9;
        printf("{\"bench\":\"attn\",\"shape\":\"%s\",\"batch\":%zu,\"heads\":%d,\"tq\":%zu,\"tk\":%zu,\"dim_head\":%d,"
               "\"ms\":%.3f,\"gflops\":%.1f,\"err\":%.3g}\n",
               s->name, s->batch, s->heads, s->tq, s->tk, s->dim_head, best * 1e3, gflops, err);
        fprintf(stderr, "  %-28s %9.2f ms %7.1f GFLOP/s  err %.2g\n", s->name, best * 1e3, gflops, err);
    }
    sl_op_free(ctx, q);
    sl_op_free(ctx, k);
    sl_op_free(ctx, v);
    sl_op_free(ctx, o);
    sl_op_free(ctx, rope);
    free(hq);
    free(hk);
    free(hv);
    free(ho);
    free(hr);
    return rc;
}

int main(int argc, char **argv)
{
    const char *only = "", *prec = "fp32";
    int repeat = 5, threads = 1, failed = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc)
            prec = argv[++i];
        else {
            fprintf(stderr, "usage: bench_attn [--threads 1] [--repeat 5] [--only PREFIX] [--precision fp32|tf32|bf16]\n");
            return 2;
        }
    }
    sl_log_set_level(SL_LOG_WARN);
    sl_op_ctx *ctx = NULL;
    const int named = sl_precision_from_name(prec);
    const sl_precision p = named < 0 ? SL_PREC_FP32 : (sl_precision)named;
    if (sl_op_ctx_open(&ctx, "cpu") || sl_op_ctx_set_threads(ctx, threads) || sl_op_ctx_set_precision(ctx, p)) {
        fprintf(stderr, "bench_attn: %s\n", sl_lasterr());
        return 1;
    }
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        if (!strncmp(shapes[s].name, only, strlen(only)))
            failed |= run_shape(ctx, &shapes[s], repeat) != 0;
    sl_op_ctx_close(ctx);
    return failed ? 1 : 0;
}
