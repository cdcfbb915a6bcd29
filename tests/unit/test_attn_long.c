/* The attention kernel for CPUs with AVX2 / FMA and without AVX-512
 * (kernels/cpu/cpu_attn_flash2.c, sl_cpu_attn_long: any number of keys, head widths a multiple
 * of 8 up to 64) against the paths it stands in for (sl_cpu_attn_set_long(0): for long
 * sequences the library path, two GEMMs around the exact softmax; for short ones, up to 256 x
 * 256 scores, cpu_attn.c's AVX2 kernel; within 3e-6, each path about 1e-6 from the exact
 * result) and against softmax attention in
 * double from the definition: rotary positions, bias, gates (row_scale) and key lengths below
 * tk, lengths not a multiple of its chunk of 128 keys nor of its 24 query rows (one block of
 * fewer), head widths of 24-wide passes (24, 48), of 16- and 8-wide passes (8 .. 64), whole
 * chunks masked off by a -inf bias; short sequences (Swin's 64-key windows with their bias, 77
 * text tokens with key lengths, 62 bands with rope, a single key, 128 keys with v read in place
 * and 129 with v copied); the same bytes on 1 and 3 threads; the pairs it leaves to the caller
 * (widths 80, 36 and 4, no AVX2 path, an AVX-512 CPU). Random inputs, seed printed
 * (SL_TEST_SEED replays). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/cpu_simd.h"
#include "kernels/ops.h"
#include "sl_ref.h"
#include "sl_test.h"

/* out[tq][H D] = attention in double from the definition (rope: the table's angles). */
static void ref_attention(const sl_attention_args *a, const int32_t *klen, double *want)
{
    const size_t H = (size_t)a->heads, D = (size_t)a->dim_head, HD = H * D;
    double *qr = malloc(D * sizeof(double)), *kr = malloc(a->tk * D * sizeof(double)), *s = malloc(a->tk * sizeof(double));
    for (size_t b = 0; b < a->batch; b++)
        for (size_t h = 0; h < H; h++) {
            const size_t kl = klen ? (size_t)klen[b] : a->tk;
            for (size_t j = 0; j < kl; j++) {
                const float *x = a->k + b * a->stride_k + j * a->ldk + h * D;
                for (size_t p = 0; p < D; p += 2) {
                    const double c = a->rope ? a->rope[j * D + p] : 1.0, sn = a->rope ? a->rope[j * D + p + 1] : 0.0;
                    kr[j * D + p] = x[p] * c - x[p + 1] * sn;
                    kr[j * D + p + 1] = x[p + 1] * c + x[p] * sn;
                }
            }
            for (size_t i = 0; i < a->tq; i++) {
                const float *x = a->q + b * a->stride_q + i * a->ldq + h * D;
                for (size_t p = 0; p < D; p += 2) {
                    const double c = a->rope ? a->rope[i * D + p] : 1.0, sn = a->rope ? a->rope[i * D + p + 1] : 0.0;
                    qr[p] = x[p] * c - x[p + 1] * sn;
                    qr[p + 1] = x[p + 1] * c + x[p] * sn;
                }
                double mx = -INFINITY, sum = 0;
                for (size_t j = 0; j < kl; j++) {
                    double d = 0;
                    for (size_t c = 0; c < D; c++)
                        d += qr[c] * kr[j * D + c];
                    s[j] = d * a->scale +
                           (a->bias ? a->bias[b * a->stride_bias_b + h * a->stride_bias_h + i * a->ld_bias + j] : 0.0);
                    mx = fmax(mx, s[j]);
                }
                for (size_t j = 0; j < kl; j++)
                    sum += (s[j] = exp(s[j] - mx));
                const double g =
                    a->gate ? 1.0 / (1.0 + exp(-(double)a->gate[b * a->stride_gate + i * a->ld_gate + h])) : 1.0;
                for (size_t c = 0; c < D; c++) {
                    double o = 0;
                    for (size_t j = 0; j < kl; j++)
                        o += s[j] / sum * a->v[b * a->stride_v + j * a->ldv + h * D + c];
                    want[(b * a->tq + i) * HD + h * D + c] = o * g;
                }
            }
        }
    free(qr), free(kr), free(s);
}

/* One case: klen (NULL: all tk keys) per item; extras: bias and gates. */
static void test_long(sl_op_ctx *ctx, size_t batch, size_t tq, size_t tk, int H, int D, int rope, int extras,
                      const int32_t *klen)
{
    const size_t HD = (size_t)H * D, n = batch * tq * HD, npos = tq > tk ? tq : tk;
    float *q = sl_ref_rnd(batch * tq * HD, -2, 2), *k = sl_ref_rnd(batch * tk * HD, -1, 1);
    float *v = sl_ref_rnd(batch * tk * HD, -1, 1), *bias = sl_ref_rnd(batch * H * tq * tk, -2, 2);
    float *gate = sl_ref_rnd(batch * tq * H, -3, 3), *tab = malloc(npos * D * sizeof(float));
    float *out[3] = {malloc(n * sizeof(float)), malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    if (rope)
        CHECK(sl_rope_table(tab, npos, D, 10000.0, NULL) == 0);
    sl_attention_args a = {.batch = batch, .tq = tq, .tk = tk, .heads = H, .dim_head = D, .scale = 1.0f / sqrtf((float)D),
                           .q = q, .ldq = HD, .stride_q = tq * HD, .k = k, .ldk = HD, .stride_k = tk * HD, .v = v,
                           .ldv = HD, .stride_v = tk * HD, .k_len = klen, .rope = rope ? tab : NULL,
                           .bias = extras ? bias : NULL, .ld_bias = tk, .stride_bias_h = tq * tk,
                           .stride_bias_b = H * tq * tk, .gate = extras ? gate : NULL, .ld_gate = H,
                           .stride_gate = tq * H, .ldo = HD, .stride_o = tq * HD};
    /* 0: the kernel on 1 thread, 1: on 3 threads, 2: the library path */
    for (int w = 0; w < 3; w++) {
        const int old = sl_cpu_attn_set_long(w < 2);
        CHECK(sl_op_ctx_set_threads(ctx, w == 1 ? 3 : 1) == 0);
        a.out = out[w];
        CHECK_MSG(sl_op_attention(ctx, &a) == 0, "attention: %s", sl_lasterr());
        sl_cpu_attn_set_long(old);
    }
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    double *want = malloc(n * sizeof(double)), *lib = malloc(n * sizeof(double));
    ref_attention(&a, klen, want);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff += memcmp(&out[0][i], &out[1][i], sizeof(float)) != 0;
        lib[i] = out[2][i];
    }
    const double e = sl_ref_err(out[0], want, n), el = sl_ref_err(out[2], want, n), d = sl_ref_err(out[0], lib, n);
    printf("  long attention b%zu tq%zu tk%zu h%d d%d%s%s%s: rel err %.3g (the other path %.3g, tol 1e-5), %.3g to "
           "the other path (tol 3e-6), %zu outputs differ on 3 threads\n",
           batch, tq, tk, H, D, rope ? " rope" : "", extras ? " bias gate" : "", klen ? " k_len" : "", e, el, d, diff);
    CHECK_MSG(e <= 1e-5, "long attention error %g", e);
    CHECK_MSG(d <= 3e-6, "long attention differs from the other path by %g", d);
    CHECK_MSG(diff == 0, "long attention: %zu outputs differ between 1 and 3 threads", diff);
    free(q), free(k), free(v), free(bias), free(gate), free(tab), free(want), free(lib);
    free(out[0]), free(out[1]), free(out[2]);
}

/* The first `cut` of tk keys masked off by a -inf bias (whole chunks of 128 keys and part of
 * one): the same as attending to the other keys alone (within rounding; no NaN). */
static void test_masked(sl_op_ctx *ctx, size_t tq, size_t tk, size_t cut, int D)
{
    size_t nan = 0;
    const double e = sl_ref_attn_masked(ctx, tq, tk, cut, D, &nan);
    printf("  long attention masked tq%zu tk%zu cut%zu d%d: %zu NaN, rel diff %.3g to the other keys alone (tol 1e-6)\n",
           tq, tk, cut, D, nan, e);
    CHECK_MSG(e >= 0, "attention: %s", sl_lasterr());
    CHECK(nan == 0);
    CHECK_MSG(e <= 1e-6, "masked long attention differs by %g", e);
}

/* The pairs the kernel takes and those it leaves to the caller (returning 0, nothing written). */
static void test_takes(void)
{
    const size_t tq = 300, tk = 300;
    float *x = sl_ref_rnd(tk * 80, -1, 1), *out = calloc(tq * 80, sizeof(float));
    float *ws = malloc(sl_cpu_attn_long_ws(tq, tk, 80) * sizeof(float));
    const int here = sl_cpu_simd_fma() && !sl_cpu_simd_avx512();
    static const struct { size_t kl, D; int takes; } cases[] = {
        {300, 48, 1}, {65, 64, 1}, {300, 8, 1}, {300, 40, 1}, {64, 48, 1}, {1, 32, 1}, {300, 80, 0}, {300, 36, 0},
        {300, 4, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const size_t D = cases[c].D;
        memset(out, 0, tq * 80 * sizeof(float));
        const sl_cpu_attn_pair p = {.tq = tq, .kl = cases[c].kl, .D = D, .scale = 0.1f, .q = x, .k = x, .v = x,
                                    .ldq = D, .ldk = D, .ldv = D, .out = out, .ldo = D};
        const int got = sl_cpu_attn_long(&p, ws);
        CHECK_MSG(got == (cases[c].takes && here), "kl %zu D %zu: taken %d", cases[c].kl, D, got);
        if (!cases[c].takes) {
            size_t nz = 0;
            for (size_t i = 0; i < tq * 80; i++)
                nz += out[i] != 0.0f;
            CHECK_MSG(nz == 0, "kl %zu D %zu left to the caller, yet %zu outputs written", cases[c].kl, D, nz);
        }
    }
    const sl_cpu_attn_pair p = {.tq = tq, .kl = tk, .D = 48, .scale = 0.1f, .q = x, .k = x, .v = x,
                                .ldq = 48, .ldk = 48, .ldv = 48, .out = out, .ldo = 48};
    const int old = sl_cpu_attn_set_long(0);
    CHECK(sl_cpu_attn_long(&p, ws) == 0);
    sl_cpu_attn_set_long(old);
    sl_cpu_simd_set(0);
    CHECK(sl_cpu_attn_long(&p, ws) == 0);
    sl_cpu_simd_set(1);
    printf("  long attention kernel %s on this CPU; widths 80, 36 and 4 left to the caller\n",
           here ? "taken" : "not taken (no AVX2 / FMA, or AVX-512)");
    free(x), free(out), free(ws);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    sl_ref_seed("attn_long");
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    test_takes();
    /* HT-Demucs's 48-wide heads: 300 query rows (12 blocks of 24 and 12 rows), 260 keys (two
     * chunks of 128 and 4: a partial block of 16) */
    test_long(ctx, 1, 300, 260, 2, 48, 0, 0, NULL);
    test_long(ctx, 2, 301, 530, 3, 48, 0, 1, NULL);
    /* RoFormer's 64-wide heads with rope, gates and bias, k_len below tk (589 and 552 keys) */
    const int32_t kl2[2] = {589, 552}, kl3[3] = {600, 65, 333};
    test_long(ctx, 2, 270, 600, 2, 64, 1, 1, kl2);
    /* one 8-wide pass after the 16-wide ones (40, 24, 8), 16 and 32 wide; 65 keys */
    test_long(ctx, 1, 257, 513, 1, 40, 0, 1, NULL);
    test_long(ctx, 3, 290, 600, 2, 24, 1, 1, kl3);
    test_long(ctx, 1, 1100, 70, 1, 8, 0, 0, NULL);
    test_long(ctx, 1, 1030, 65, 2, 16, 1, 1, NULL);
    test_long(ctx, 1, 310, 300, 2, 32, 0, 1, NULL);
    /* 56 wide (three 16-wide passes and an 8-wide one), 50 query rows (fewer than a block) */
    test_long(ctx, 1, 50, 1400, 2, 56, 1, 1, NULL);
    /* widths the kernel leaves to the library path, through the op */
    test_long(ctx, 1, 300, 260, 2, 80, 1, 1, NULL);
    test_long(ctx, 1, 300, 260, 1, 36, 0, 1, NULL);
    /* short sequences: CLAP's windows (4 windows of 64 tokens, 32-wide heads, a bias per
     * window), RoBERTa's 77 tokens with key lengths, BS-RoFormer's 62 bands with rope, one key
     * and one query, 128 keys (v read in place) and 129 (v copied) */
    const int32_t kl77[2] = {77, 12};
    test_long(ctx, 4, 64, 64, 4, 32, 0, 1, NULL);
    test_long(ctx, 2, 77, 77, 2, 64, 0, 1, kl77);
    test_long(ctx, 3, 62, 62, 2, 64, 1, 0, NULL);
    test_long(ctx, 1, 1, 1, 1, 16, 0, 1, NULL);
    test_long(ctx, 1, 30, 128, 2, 24, 0, 1, NULL);
    test_long(ctx, 1, 30, 129, 2, 24, 1, 1, NULL);
    test_masked(ctx, 300, 600, 300, 48); /* the first two chunks all -inf */
    test_masked(ctx, 260, 900, 520, 64); /* four whole chunks and part of the fifth */
    sl_op_ctx_close(ctx);
    return sl_test_finish("attn_long");
}
