/* The transformer ops of the CPU reference backend (kernels/ops.h) against
 * double-precision implementations written here from the definitions:
 * torch.nn.GELU, GLU, F.normalize-based RMSNorm, LayerNorm, softmax attention
 * with rotary_embedding_torch's interleaved rotation (angles from the
 * definition, not from sl_rope_table's table), bias, gates, key lengths, and
 * the band gather / mask scatter with overlapping bands. Random inputs, seed
 * printed (SL_TEST_SEED replays). The CUDA kernels are compared with these CPU
 * ops by unit.parity. */
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

static void test_gelu_glu(sl_op_ctx *ctx)
{
    const size_t rows = 7, n = 301;
    float *x = sl_ref_rnd(rows * 2 * n, -6, 6), *y = malloc(rows * 2 * n * sizeof(float));
    double *want = malloc(rows * 2 * n * sizeof(double));
    sl_affine_args a = {.batch = 1, .rows = rows, .cols = 2 * n, .x = x, .ldx = 2 * n, .act = SL_ACT_GELU, .y = y,
                        .ldy = 2 * n};
    CHECK(sl_op_affine(ctx, &a) == 0);
    for (size_t i = 0; i < rows * 2 * n; i++)
        want[i] = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
    double e = sl_ref_err(y, want, rows * 2 * n);
    printf("  gelu (affine) %zu values: rel err %.3g (tol 1e-6)\n", rows * 2 * n, e);
    CHECK_MSG(e <= 1e-6, "gelu error %g", e);
    CHECK(sl_op_glu(ctx, rows, n, x, 2 * n, y, n) == 0);
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < n; j++)
            want[i * n + j] = x[i * 2 * n + j] / (1.0 + exp(-(double)x[i * 2 * n + n + j]));
    e = sl_ref_err(y, want, rows * n);
    printf("  glu rows%zu n%zu: rel err %.3g (tol 1e-6)\n", rows, n, e);
    CHECK_MSG(e <= 1e-6, "glu error %g", e);
    /* in place */
    float *x2 = malloc(rows * 2 * n * sizeof(float));
    memcpy(x2, x, rows * 2 * n * sizeof(float));
    CHECK(sl_op_glu(ctx, rows, n, x2, 2 * n, x2, 2 * n) == 0);
    size_t bad = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < n; j++)
            bad += x2[i * 2 * n + j] != y[i * n + j];
    CHECK_MSG(bad == 0, "glu in place differs in %zu values", bad);
    /* the AVX-512, AVX2 and portable paths give the same bits */
    const int on512 = sl_cpu_simd_set_avx512(0);
    for (int level = 0; level < 2; level++) {
        const int simd = level ? sl_cpu_simd_set(0) : 1;
        CHECK(sl_op_glu(ctx, rows, n, x, 2 * n, x2, n) == 0);
        bad = 0;
        for (size_t i = 0; i < rows * n; i++)
            bad += x2[i] != y[i];
        CHECK_MSG(bad == 0, "glu without %s differs in %zu values", level ? "SIMD" : "AVX-512", bad);
        if (level)
            sl_cpu_simd_set(simd);
    }
    sl_cpu_simd_set_avx512(on512);
    CHECK(sl_op_glu(ctx, rows, n, x, 2 * n - 1, y, n) == SL_EINVAL);
    CHECK(sl_op_affine(ctx, &(sl_affine_args){.batch = 1, .rows = 1, .cols = 1, .x = x, .ldx = 1, .act = 9, .y = y,
                                              .ldy = 1}) == SL_EINVAL);
    free(x);
    free(x2);
    free(y);
    free(want);
}

static void test_norm(sl_op_ctx *ctx, sl_norm_kind kind, size_t rows, size_t dim)
{
    const size_t ld = dim + 3;
    float *x = sl_ref_rnd(rows * ld, -2, 3), *g = sl_ref_rnd(dim, -1, 1), *b = sl_ref_rnd(dim, -1, 1), *y = malloc(rows * ld * sizeof(float));
    double *want = malloc(rows * dim * sizeof(double));
    float *got = malloc(rows * dim * sizeof(float));
    const float eps = kind == SL_NORM_RMS ? 1e-12f : 1e-5f;
    sl_norm_args a = {kind, rows, dim, x, ld, g, kind == SL_NORM_LAYER ? b : NULL, eps, y, ld, 0, 0, 0, SL_ACT_NONE};
    CHECK(sl_op_norm(ctx, &a) == 0);
    for (size_t i = 0; i < rows; i++) {
        const float *r = x + i * ld;
        double m = 0, v = 0, ss = 0;
        for (size_t j = 0; j < dim; j++) {
            m += r[j];
            ss += (double)r[j] * r[j];
        }
        m /= dim;
        for (size_t j = 0; j < dim; j++)
            v += (r[j] - m) * (r[j] - m);
        v /= dim;
        for (size_t j = 0; j < dim; j++) {
            want[i * dim + j] = kind == SL_NORM_RMS ? r[j] / fmax(sqrt(ss), eps) * sqrt((double)dim) * g[j]
                                                    : (r[j] - m) / sqrt(v + eps) * g[j] + b[j];
            got[i * dim + j] = y[i * ld + j];
        }
    }
    double e = sl_ref_err(got, want, rows * dim);
    printf("  norm %s rows%zu dim%zu: rel err %.3g (tol 1e-6)\n", kind == SL_NORM_RMS ? "rms" : "layer", rows, dim, e);
    CHECK_MSG(e <= 1e-6, "norm error %g", e);
    /* a zero row: RMSNorm divides by eps, not by zero; LayerNorm gives beta */
    memset(x, 0, dim * sizeof(float));
    CHECK(sl_op_norm(ctx, &a) == 0);
    CHECK(kind == SL_NORM_RMS ? y[0] == 0.0f && y[dim - 1] == 0.0f : y[0] == b[0] && y[dim - 1] == b[dim - 1]);
    free(x);
    free(g);
    free(b);
    free(y);
    free(want);
    free(got);
}

/* GroupNorm(groups, C) of n rows of groups x dim values from the definition, in double: channel
 * c of element j is j / S (channel-first [C][S]) or j % (C / groups) (channel-last [S][C]); GELU
 * after it when gelu. */
static void ref_group_norm(const float *x, const float *g, const float *b, size_t n, size_t C, size_t groups,
                           size_t S, int last, int gelu, double *want)
{
    const size_t dim = C / groups * S;
    for (size_t r = 0; r < n * groups; r++) {
        const float *xr = x + r * dim;
        double m = 0, v = 0;
        for (size_t j = 0; j < dim; j++)
            m += xr[j];
        m /= (double)dim;
        for (size_t j = 0; j < dim; j++)
            v += (xr[j] - m) * (xr[j] - m);
        v /= (double)dim;
        for (size_t j = 0; j < dim; j++) {
            const size_t c = (r % groups) * (C / groups) + (last ? j % (C / groups) : j / S);
            const double t = (xr[j] - m) / sqrt(v + 1e-5) * g[c] + b[c];
            want[r * dim + j] = gelu ? 0.5 * t * (1.0 + erf(t / sqrt(2.0))) : t;
        }
    }
}

/* GroupNorm(groups, C) of [n][C][S] with GELU applied in the same pass, against the definition in
 * double; S not a multiple of 16 or 8, so every run ends in the scalar tail. */
static void test_group_norm_gelu(sl_op_ctx *ctx, size_t n, size_t C, size_t groups, size_t S)
{
    const size_t dim = C / groups * S, nx = n * C * S;
    float *x = sl_ref_rnd(nx, -2, 3), *g = sl_ref_rnd(C, -1, 1), *b = sl_ref_rnd(C, -1, 1);
    float *y = malloc(nx * sizeof(float));
    double *want = malloc(nx * sizeof(double));
    sl_norm_args a = {SL_NORM_GROUP, n * groups, dim, x, dim, g, b, 1e-5f, y, dim, groups, C, S, SL_ACT_GELU};
    CHECK(sl_op_norm(ctx, &a) == 0);
    ref_group_norm(x, g, b, n, C, groups, S, 0, 1, want);
    const double e = sl_ref_err(y, want, nx);
    printf("  group norm + gelu n%zu C%zu G%zu S%zu: rel err %.3g (tol 1e-6)\n", n, C, groups, S, e);
    CHECK_MSG(e <= 1e-6, "group norm + gelu error %g", e);
    free(x);
    free(g);
    free(b);
    free(y);
    free(want);
}

/* GroupNorm(groups, C) without activation on fewer rows than threads and rows of more than 2^15
 * elements (each row's elements in pieces over 3 threads): channel-first [n][C][S] (inner S, runs
 * split between pieces) and channel-last [n][S][C] (GroupNorm(1, C) as HT-Demucs's transformer
 * layers end, inner 1), against the definition in double and bit for bit against 1 thread. */
static void test_group_norm_pieces(sl_op_ctx *ctx, size_t n, size_t C, size_t groups, size_t S, int last)
{
    const size_t dim = C / groups * S, nx = n * C * S;
    float *x = sl_ref_rnd(nx, -2, 3), *g = sl_ref_rnd(C, -1, 1), *b = sl_ref_rnd(C, -1, 1);
    float *y1 = malloc(nx * sizeof(float)), *y3 = malloc(nx * sizeof(float));
    double *want = malloc(nx * sizeof(double));
    sl_norm_args a = {SL_NORM_GROUP, n * groups, dim, x, dim, g, b, 1e-5f, y1, dim, groups, C, last ? 1 : S,
                      SL_ACT_NONE};
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    CHECK(sl_op_norm(ctx, &a) == 0);
    CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
    a.y = y3;
    CHECK(sl_op_norm(ctx, &a) == 0);
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    ref_group_norm(x, g, b, n, C, groups, S, last, 0, want);
    const double e = sl_ref_err(y3, want, nx);
    printf("  group norm %s n%zu C%zu G%zu S%zu on 3 threads: rel err %.3g (tol 1e-6)\n",
           last ? "channel-last" : "channel-first", n, C, groups, S, e);
    CHECK_MSG(e <= 1e-6, "group norm error %g", e);
    CHECK_MSG(memcmp(y1, y3, nx * sizeof(float)) == 0, "group norm: 1 and 3 threads differ");
    free(x);
    free(g);
    free(b);
    free(y1);
    free(y3);
    free(want);
}

/* SL_NORM_GROUP_GLU of [n][2C][S] (GroupNorm(1, 2C) then the GLU of the channel halves, HT-Demucs's
 * DConv) against the definition in double, and bit for bit against the group norm followed by
 * sl_op_glu: at 1 and 3 threads (rows of more than 2^15 elements: pieces of a row over the threads),
 * into a compact y and in place. */
static void test_group_norm_glu(sl_op_ctx *ctx, size_t n, size_t C2, size_t S)
{
    const size_t dim = C2 * S, nx = n * dim, h = dim / 2;
    float *x = sl_ref_rnd(nx, -2, 3), *g = sl_ref_rnd(C2, -1, 1), *b = sl_ref_rnd(C2, -1, 1);
    float *z = malloc(nx * sizeof(float)), *want_f = malloc(n * h * sizeof(float)), *y = malloc(n * h * sizeof(float));
    float *xi = malloc(nx * sizeof(float));
    double *dn = malloc(nx * sizeof(double)), *want = malloc(n * h * sizeof(double));
    ref_group_norm(x, g, b, n, C2, 1, S, 0, 0, dn);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < h; j++)
            want[r * h + j] = dn[r * dim + j] / (1.0 + exp(-dn[r * dim + h + j]));
    sl_norm_args a = {SL_NORM_GROUP, n, dim, x, dim, g, b, 1e-5f, z, dim, 1, C2, S, SL_ACT_NONE};
    CHECK(sl_op_norm(ctx, &a) == 0);
    CHECK(sl_op_glu(ctx, n, h, z, dim, want_f, h) == 0);
    for (int th = 1; th <= 3; th += 2) {
        CHECK(sl_op_ctx_set_threads(ctx, th) == 0);
        sl_norm_args f = a;
        f.kind = SL_NORM_GROUP_GLU, f.y = y, f.ldy = h;
        CHECK(sl_op_norm(ctx, &f) == 0);
        memcpy(xi, x, nx * sizeof(float));
        f.x = f.y = xi, f.ldy = dim;
        CHECK(sl_op_norm(ctx, &f) == 0);
        size_t diff = 0;
        for (size_t r = 0; r < n; r++)
            for (size_t j = 0; j < h; j++)
                diff += memcmp(&y[r * h + j], &want_f[r * h + j], sizeof(float)) != 0 ||
                        memcmp(&xi[r * dim + j], &want_f[r * h + j], sizeof(float)) != 0;
        const double e = sl_ref_err(y, want, n * h);
        printf("  group norm + glu n%zu 2C%zu S%zu, %d thread(s): rel err %.3g (tol 1e-6), %zu values differ from "
               "norm then glu\n", n, C2, S, th, e, diff);
        CHECK_MSG(e <= 1e-6, "group norm + glu error %g", e);
        CHECK_MSG(diff == 0, "group norm + glu: %zu values differ from the norm then sl_op_glu", diff);
    }
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    sl_norm_args bad = a;
    bad.kind = SL_NORM_GROUP_GLU, bad.act = SL_ACT_GELU;
    CHECK(sl_op_norm(ctx, &bad) == SL_EINVAL);
    bad.act = SL_ACT_NONE, bad.dim = dim - 1, bad.ldx = bad.ldy = dim;
    CHECK(sl_op_norm(ctx, &bad) == SL_EINVAL);
    free(x);
    free(g);
    free(b);
    free(z);
    free(want_f);
    free(y);
    free(xi);
    free(dn);
    free(want);
}

/* Rotation of row r (D values) by position pos, in double, from the definition. */
static void ref_rot(const float *r, int D, size_t pos, int rope, double *out)
{
    for (int p = 0; p < D / 2 || (!rope && p < D); p++) {
        if (!rope) {
            out[p] = r[p];
            continue;
        }
        const double f = (double)(1.0f / powf(10000.0f, (float)(2 * p) / (float)D)), ang = (double)pos * f;
        out[2 * p] = r[2 * p] * cos(ang) - r[2 * p + 1] * sin(ang);
        out[2 * p + 1] = r[2 * p + 1] * cos(ang) + r[2 * p] * sin(ang);
    }
}

/* sl_cpu_softmax_rows_unnorm (AVX-512) against its definition: per row the bias added, the
 * maximum, sl_cpu_vec_exp_sub_sum, 1 / the sum; the same bits for rows held in registers
 * (up to 64, 4 rows at a time and the rest, the last vector partial or whole) and for the others. */
static void test_softmax_rows(void)
{
    if (!sl_cpu_simd_avx512())
        return;
    static const size_t ns[] = {16, 32, 48, 64, 45, 80, 7, 62, 1, 77, 150};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++)
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            const size_t n = ns[t], rows = 7, ld = n + 3, ldb = n + 5;
            float *x = sl_ref_rnd(rows * ld, -9, 9), *bias = sl_ref_rnd(rows * ldb, -4, 4);
            float *want = malloc(rows * ld * sizeof(float)), inv[7], want_inv[7];
            memcpy(want, x, rows * ld * sizeof(float));
            for (size_t r = 0; r < rows; r++) {
                float *s = want + r * ld, mx = -INFINITY;
                for (size_t j = 0; j < n; j++) {
                    if (with_bias)
                        s[j] += bias[r * ldb + j];
                    mx = s[j] > mx ? s[j] : mx;
                }
                want_inv[r] = (float)(1.0 / sl_cpu_vec_exp_sub_sum(s, mx, n));
            }
            CHECK(sl_cpu_softmax_rows_unnorm(x, ld, rows, n, with_bias ? bias : NULL, ldb, inv) == 1);
            size_t diff = 0;
            for (size_t r = 0; r < rows; r++) {
                diff += memcmp(&inv[r], &want_inv[r], sizeof(float)) != 0;
                for (size_t j = 0; j < n; j++)
                    diff += memcmp(&x[r * ld + j], &want[r * ld + j], sizeof(float)) != 0;
            }
            CHECK_MSG(diff == 0, "softmax rows n %zu bias %d: %zu values differ", n, with_bias, diff);
            free(x), free(bias), free(want);
        }
}

/* The window kernel of cpu_attn.c (AVX-512, up to 64 keys in multiples of 16, no rotation)
 * against the general AVX-512 kernel it stands in for: the same bits, with a per-item bias
 * (Swin's shift masks) or none, keys cut by k_len, partial blocks of query rows. */
static void test_attention_windows(sl_op_ctx *ctx, size_t batch, size_t tq, size_t tk, int H, int D, int klen16)
{
    const size_t HD = (size_t)H * D, QKV = 3 * HD, n = batch * tq * HD;
    float *qkv = sl_ref_rnd(batch * (tq > tk ? tq : tk) * QKV, -2, 2), *bias = sl_ref_rnd(batch * H * tq * tk, -3, 3);
    float *out[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    int32_t *klen = malloc(batch * sizeof *klen);
    for (size_t b = 0; b < batch; b++)
        klen[b] = klen16 ? (int32_t)(16 * (1 + b % (tk / 16))) : (int32_t)tk;
    sl_attention_args a = {.batch = batch, .tq = tq, .tk = tk, .heads = H, .dim_head = D, .scale = 0.17f,
                           .q = qkv, .ldq = QKV, .stride_q = tq * QKV, .k = qkv + HD, .ldk = QKV,
                           .stride_k = tk * QKV, .v = qkv + 2 * HD, .ldv = QKV, .stride_v = tk * QKV,
                           .k_len = klen16 ? klen : NULL, .bias = bias, .ld_bias = tk, .stride_bias_h = tq * tk,
                           .stride_bias_b = batch > 1 ? H * tq * tk : 0, .ldo = HD, .stride_o = tq * HD};
    for (int w = 0; w < 2; w++) {
        const int old = sl_cpu_attn_set_windows(w == 0);
        a.out = out[w];
        CHECK_MSG(sl_op_attention(ctx, &a) == 0, "attention: %s", sl_lasterr());
        sl_cpu_attn_set_windows(old);
    }
    size_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff += memcmp(&out[0][i], &out[1][i], sizeof(float)) != 0;
    printf("  attention windows b%zu tq%zu tk%zu h%d d%d%s: %zu of %zu outputs differ from the general kernel\n",
           batch, tq, tk, H, D, klen16 ? " k_len" : "", diff, n);
    CHECK_MSG(diff == 0, "attention windows: %zu outputs differ", diff);
    free(qkv), free(bias), free(out[0]), free(out[1]), free(klen);
}

/* test_attention's tolerance: 1e-5 (fp32), more for the products on the AMX tiles at tf32 */
static double attn_tol = 1e-5;

static void test_attention(sl_op_ctx *ctx, size_t batch, size_t tq, size_t tk, int H, int D, int rope, int extras)
{
    const size_t HD = (size_t)H * D, npos = tq > tk ? tq : tk;
    float *q = sl_ref_rnd(batch * tq * HD, -2, 2), *k = sl_ref_rnd(batch * tk * HD, -1, 1), *v = sl_ref_rnd(batch * tk * HD, -1, 1);
    float *bias = sl_ref_rnd(batch * H * tq * tk, -1, 1), *gate = sl_ref_rnd(batch * tq * H, -3, 3);
    float *out = malloc(batch * tq * HD * sizeof(float)), *tab = malloc(npos * D * sizeof(float));
    int32_t *klen = malloc(batch * sizeof *klen);
    for (size_t b = 0; b < batch; b++)
        klen[b] = extras ? (int32_t)(1 + (b * 5 + 3) % tk) : (int32_t)tk;
    if (rope)
        CHECK(sl_rope_table(tab, npos, D, 10000.0, NULL) == 0);
    sl_attention_args a = {.batch = batch, .tq = tq, .tk = tk, .heads = H, .dim_head = D, .scale = 1.0f / sqrtf((float)D),
                           .q = q, .ldq = HD, .stride_q = tq * HD, .k = k, .ldk = HD, .stride_k = tk * HD, .v = v,
                           .ldv = HD, .stride_v = tk * HD, .k_len = extras ? klen : NULL, .rope = rope ? tab : NULL,
                           .bias = extras ? bias : NULL, .ld_bias = tk, .stride_bias_h = tq * tk,
                           .stride_bias_b = H * tq * tk, .gate = extras ? gate : NULL, .ld_gate = H,
                           .stride_gate = tq * H, .out = out, .ldo = HD, .stride_o = tq * HD};
    CHECK_MSG(sl_op_attention(ctx, &a) == 0, "attention: %s", sl_lasterr());
    double *want = malloc(batch * tq * HD * sizeof(double)), *qr = malloc(D * sizeof(double)),
           *kr = malloc(tk * D * sizeof(double)), *s = malloc(tk * sizeof(double));
    for (size_t b = 0; b < batch; b++)
        for (int h = 0; h < H; h++) {
            const size_t kl = (size_t)klen[b];
            for (size_t j = 0; j < kl; j++)
                ref_rot(k + (b * tk + j) * HD + h * D, D, j, rope, kr + j * D);
            for (size_t i = 0; i < tq; i++) {
                ref_rot(q + (b * tq + i) * HD + h * D, D, i, rope, qr);
                double mx = -INFINITY, sum = 0;
                for (size_t j = 0; j < kl; j++) {
                    double d = 0;
                    for (int c = 0; c < D; c++)
                        d += qr[c] * kr[j * D + c];
                    s[j] = d / sqrt((double)D) + (extras ? bias[((b * H + h) * tq + i) * tk + j] : 0.0);
                    mx = fmax(mx, s[j]);
                }
                for (size_t j = 0; j < kl; j++)
                    sum += (s[j] = exp(s[j] - mx));
                const double g = extras ? 1.0 / (1.0 + exp(-(double)gate[(b * tq + i) * H + h])) : 1.0;
                for (int c = 0; c < D; c++) {
                    double o = 0;
                    for (size_t j = 0; j < kl; j++)
                        o += s[j] / sum * v[(b * tk + j) * HD + h * D + c];
                    want[(b * tq + i) * HD + h * D + c] = o * g;
                }
            }
        }
    double e = sl_ref_err(out, want, batch * tq * HD);
    printf("  attention b%zu tq%zu tk%zu h%d d%d%s%s %s: rel err %.3g (tol %g)\n", batch, tq, tk, H, D,
           rope ? " rope" : "", extras ? " bias gate k_len" : "", sl_precision_name(sl_op_ctx_precision(ctx)), e,
           attn_tol);
    CHECK_MSG(e <= attn_tol, "attention error %g", e);
    a.dim_head = 129;
    CHECK(sl_op_attention(ctx, &a) == SL_EINVAL);
    free(q), free(k), free(v), free(bias), free(gate), free(out), free(tab), free(klen);
    free(want), free(qr), free(kr), free(s);
}

/* Keys masked off by a -inf bias over whole chunks of the long-sequence kernel (the first 300
 * of 600 keys: its first chunk all -inf, the second half so): the same as attending to the
 * other 300 keys alone (within rounding; no NaN), on every path. */
static void test_attention_masked(sl_op_ctx *ctx, int D)
{
    size_t nan = 0;
    const double e = sl_ref_attn_masked(ctx, 11, 600, 300, D, &nan);
    printf("  attention masked d%d: %zu NaN, rel diff %.3g to the unmasked keys alone (tol 1e-6)\n", D, nan, e);
    CHECK_MSG(e >= 0, "attention: %s", sl_lasterr());
    CHECK(nan == 0);
    CHECK_MSG(e <= 1e-6, "masked attention differs by %g", e);
}

static void test_band(sl_op_ctx *ctx)
{
    /* 2 channels, 6 bins, features: bins 0-2 and 2-4 of both channels (bin 2 twice, bin 5 never) */
    const size_t B = 2, C = 2, T = 3, F = 6, N = 2;
    int32_t idx[12];
    size_t nf = 0;
    for (int f = 0; f <= 2; f++)
        for (int c = 0; c < 2; c++)
            idx[nf++] = f * 2 + c;
    for (int f = 2; f <= 4; f++)
        for (int c = 0; c < 2; c++)
            idx[nf++] = f * 2 + c;
    int32_t off[13], inv[12];
    CHECK(sl_band_inverse(idx, nf, F * C, off, inv) == 0);
    CHECK(off[5] - off[4] == 2 && inv[off[4]] == 4 && inv[off[4] + 1] == 6); /* bin 2, channel 0: features 4 and 6 */
    CHECK(off[11] - off[10] == 0);                                               /* bin 5, channel 0: none */
    float *spec = sl_ref_rnd(B * C * T * F * 2, -1, 1), *mask = sl_ref_rnd(B * N * T * nf * 2, -1, 1);
    float *rows = malloc(B * T * nf * 2 * sizeof(float)), *out = malloc(B * N * C * T * F * 2 * sizeof(float));
    sl_band_geom g = {B, C, T, F, nf, idx};
    CHECK(sl_op_spec_gather(ctx, &g, spec, rows) == 0);
    CHECK(sl_op_mask_scatter(ctx, &g, N, off, inv, spec, mask, out) == 0);
    size_t bad = 0;
    double err = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t t = 0; t < T; t++)
            for (size_t j = 0; j < nf; j++)
                for (int z = 0; z < 2; z++)
                    bad += rows[((b * T + t) * nf + j) * 2 + z] !=
                           spec[(((b * C + idx[j] % 2) * T + t) * F + idx[j] / 2) * 2 + z];
    for (size_t b = 0; b < B; b++)
        for (size_t n = 0; n < N; n++)
            for (size_t c = 0; c < C; c++)
                for (size_t t = 0; t < T; t++)
                    for (size_t f = 0; f < F; f++) {
                        double mr = 0, mi = 0;
                        int cnt = 0;
                        for (size_t j = 0; j < nf; j++)
                            if ((size_t)idx[j] == f * 2 + c) {
                                mr += mask[(((b * N + n) * T + t) * nf + j) * 2];
                                mi += mask[(((b * N + n) * T + t) * nf + j) * 2 + 1];
                                cnt++;
                            }
                        if (cnt) {
                            mr /= cnt;
                            mi /= cnt;
                        }
                        const float *zz = spec + (((b * C + c) * T + t) * F + f) * 2;
                        const float *o = out + ((((b * N + n) * C + c) * T + t) * F + f) * 2;
                        err = fmax(err, fabs(o[0] - (zz[0] * mr - zz[1] * mi)));
                        err = fmax(err, fabs(o[1] - (zz[0] * mi + zz[1] * mr)));
                    }
    printf("  spec_gather: %zu wrong; mask_scatter (overlapping bands): max abs err %.3g (tol 1e-6)\n", bad, err);
    CHECK(bad == 0);
    CHECK_MSG(err <= 1e-6, "mask_scatter error %g", err);
    idx[0] = 12;
    CHECK(sl_band_inverse(idx, nf, F * C, off, inv) == SL_EINVAL);
    free(spec), free(mask), free(rows), free(out);
}

/* sl_cpu_erf against double erf over the whole float range (every 127th bit pattern, both
 * signs, the infinities and NaN): error in ulp of the exact value; the AVX2 and portable
 * paths bit-identical. Then the GEMM epilogue row on both paths, every activation. */
/* path 0: portable loops, 1: AVX2 (no AVX-512), 2: AVX-512 where the CPU has it */
static void set_path(int path)
{
    sl_cpu_simd_set(path > 0);
    sl_cpu_simd_set_avx512(path > 1);
}

static void test_erf(void)
{
    const size_t n = ((size_t)1 << 32) / 127 + 4;
    float *x = malloc(n * sizeof(float)), *y[3] = {malloc(n * sizeof(float)), malloc(n * sizeof(float)),
                                                   malloc(n * sizeof(float))};
    CHECK(x && y[0] && y[1] && y[2]);
    size_t m = 0;
    for (uint64_t u = 0; u <= 0xffffffffu; u += 127) {
        const uint32_t b = (uint32_t)u;
        memcpy(&x[m++], &b, sizeof b);
    }
    x[m++] = INFINITY, x[m++] = -INFINITY, x[m++] = 0.0f, x[m++] = -0.0f;
    const int avx512 = sl_cpu_simd_set_avx512(1);
    for (int path = 0; path < 3; path++) {
        set_path(path);
        sl_cpu_erf_vec(y[path], x, m);
    }
    sl_cpu_simd_set(1);
    sl_cpu_simd_set_avx512(avx512);
    double worst = 0, at = 0;
    size_t diff = 0, nan_bad = 0;
    for (size_t i = 0; i < m; i++) {
        diff += memcmp(&y[0][i], &y[1][i], sizeof(float)) != 0 || memcmp(&y[0][i], &y[2][i], sizeof(float)) != 0;
        if (x[i] != x[i]) {
            nan_bad += y[0][i] == y[0][i];
            continue;
        }
        const double r = erf((double)x[i]);
        int e;
        frexp(r, &e);
        double ulp = ldexp(1.0, e - 24);
        if (ulp < 0x1p-149)
            ulp = 0x1p-149;
        const double err = fabs((double)y[0][i] - r) / ulp;
        if (err > worst)
            worst = err, at = x[i];
    }
    printf("  erf: %zu floats, max error %.3f ulp (at %.9g), avx2 %s, avx512 %s, %zu differ between paths\n", m, worst,
           at, sl_cpu_simd_avx2() ? "on" : "unavailable", sl_cpu_simd_avx512() ? "on" : "off or unavailable", diff);
    CHECK_MSG(worst <= 2.5, "erf error %.3f ulp at %.9g", worst, at);
    CHECK_MSG(diff == 0, "erf: %zu values differ between the AVX-512, AVX2 and portable paths", diff);
    CHECK_MSG(nan_bad == 0, "erf: %zu NaN inputs gave numbers", nan_bad);
    CHECK(sl_cpu_erf(-0.0f) == 0.0f && signbit(sl_cpu_erf(-0.0f)) && sl_cpu_erf(-INFINITY) == -1.0f);
    /* GELU's epilogue on the same floats (the AVX2 and AVX-512 paths' blocks of 4 vectors, both
     * of erf's ranges on every lane, against the portable loop): the same bits */
    for (int path = 0; path < 3; path++) {
        set_path(path);
        sl_cpu_epilogue_row(SL_ACT_GELU, m, x, NULL, NULL, NULL, y[path]);
    }
    sl_cpu_simd_set(1);
    sl_cpu_simd_set_avx512(avx512);
    diff = 0;
    for (size_t i = 0; i < m; i++)
        diff += memcmp(&y[0][i], &y[1][i], sizeof(float)) != 0 || memcmp(&y[0][i], &y[2][i], sizeof(float)) != 0;
    printf("  gelu epilogue: %zu floats, %zu differ between paths\n", m, diff);
    CHECK_MSG(diff == 0, "gelu epilogue: %zu values differ between the AVX-512, AVX2 and portable paths", diff);
    /* sl_cpu_tanh (SL_ACT_TANH) against double tanh on the same floats */
    worst = 0, at = 0, nan_bad = 0;
    for (size_t i = 0; i < m; i++) {
        const float t = sl_cpu_tanh(x[i]);
        if (x[i] != x[i]) {
            nan_bad += t == t;
            continue;
        }
        const double r = tanh((double)x[i]);
        int e;
        frexp(r, &e);
        double ulp = ldexp(1.0, e - 24);
        if (ulp < 0x1p-149)
            ulp = 0x1p-149;
        const double err = fabs((double)t - r) / ulp;
        if (err > worst)
            worst = err, at = x[i];
    }
    printf("  tanh: %zu floats, max error %.3f ulp (at %.9g)\n", m, worst, at);
    CHECK_MSG(worst <= 4.0, "tanh error %.3f ulp at %.9g", worst, at);
    CHECK_MSG(nan_bad == 0, "tanh: %zu NaN inputs gave numbers", nan_bad);
    CHECK(sl_cpu_tanh(INFINITY) == 1.0f && sl_cpu_tanh(-INFINITY) == -1.0f);
    /* the epilogue: y = act(p + bias) * mul + add on rows of 109 (AVX-512's 64-lane GELU body,
     * its 16-lane body, an AVX2 block, tail) */
    enum { N = 109 };
    float *p = sl_ref_rnd(4 * N, -5, 5), out[3][N];
    for (int act = SL_ACT_NONE; act <= SL_ACT_GELU; act++)
        for (int f = 0; f < 8; f++) {
            const float *bias = f & 1 ? p + N : NULL, *mul = f & 2 ? p + 2 * N : NULL, *add = f & 4 ? p + 3 * N : NULL;
            for (int path = 0; path < 3; path++) {
                set_path(path);
                sl_cpu_epilogue_row((sl_act)act, N, p, bias, mul, add, out[path]);
            }
            sl_cpu_simd_set(1);
            sl_cpu_simd_set_avx512(avx512);
            size_t bad = 0;
            for (int j = 0; j < N; j++) {
                float v = bias ? p[j] + bias[j] : p[j];
                v = sl_cpu_act((sl_act)act, v);
                if (mul)
                    v *= mul[j];
                v = add ? v + add[j] : v;
                bad += memcmp(&v, &out[0][j], sizeof v) != 0 || memcmp(&v, &out[1][j], sizeof v) != 0 ||
                       memcmp(&v, &out[2][j], sizeof v) != 0;
            }
            CHECK_MSG(bad == 0, "epilogue act %d flags %d: %zu values differ", act, f, bad);
        }
    free(p), free(x), free(y[0]), free(y[1]), free(y[2]);
}

/* The GELU epilogue on long rows (AVX-512: chunks of 1024 values, erf's second range by lane
 * packing or, where most lanes fall there, on every lane, the choice carried from chunk to
 * chunk): out of place, in place, with an addend and with the residual in place (add = y),
 * twice (the second call starting from the first one's choice), on every path: the portable
 * loop's bits; NaN stays NaN. */
static void test_gelu_rows(void)
{
    enum { N = 2600 };
    float *p = sl_ref_rnd(N, -1, 1), *bias = sl_ref_rnd(N, -0.2f, 0.2f), *add = sl_ref_rnd(N, -1, 1);
    float *want = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float)), *in = malloc(N * sizeof(float));
    CHECK(p && bias && add && want && y && in);
    for (int j = 1100; j < 2200; j++) /* mostly in erf's second range */
        p[j] *= 6.0f;
    p[5] = NAN, p[1500] = INFINITY, p[2300] = -INFINITY, p[2301] = NAN;
    const int avx512 = sl_cpu_simd_set_avx512(1);
    size_t bad = 0;
    for (int path = 0; path < 3; path++)
        for (int variant = 0; variant < 4; variant++)
            for (int rep = 0; rep < 2; rep++) {
                const float *b = variant & 1 ? bias : NULL;
                for (int j = 0; j < N; j++) {
                    float v = b ? p[j] + b[j] : p[j];
                    v = sl_cpu_act(SL_ACT_GELU, v);
                    want[j] = variant >= 2 ? v + add[j] : v;
                }
                memcpy(y, add, N * sizeof(float));
                memcpy(in, p, N * sizeof(float));
                set_path(path);
                if (variant == 0) /* out of place */
                    sl_cpu_epilogue_row(SL_ACT_GELU, N, p, NULL, NULL, NULL, y);
                else if (variant == 1) /* in place */
                    sl_cpu_epilogue_row(SL_ACT_GELU, N, in, bias, NULL, NULL, in);
                else if (variant == 2) /* a separate addend */
                    sl_cpu_epilogue_row(SL_ACT_GELU, N, p, NULL, NULL, add, in);
                else /* the residual in place */
                    sl_cpu_epilogue_row(SL_ACT_GELU, N, p, bias, NULL, y, y);
                const float *got = variant == 0 || variant == 3 ? y : in;
                for (int j = 0; j < N; j++)
                    bad += want[j] != want[j] ? got[j] == got[j] : memcmp(&want[j], &got[j], sizeof(float)) != 0;
            }
    /* blocks of short rows (sl_cpu_epilogue_rows, the AMX tiles' 32 x 32 blocks: AVX-512 packs
     * whole blocks), strided, every combination of bias, multiplier and addend */
    enum { R = 45, C = 32, LD = 41 };
    float *yb = malloc((size_t)R * LD * sizeof(float));
    CHECK(yb);
    for (int path = 0; path < 3; path++)
        for (int f = 0; f < 8; f++) {
            const float *b = f & 1 ? bias : NULL, *m = f & 2 ? add + 7 : NULL, *ad = f & 4 ? add : NULL;
            set_path(path);
            sl_cpu_epilogue_rows(SL_ACT_GELU, R, C, p + 500, LD, b, m, LD, ad, LD, yb, LD);
            for (int r = 0; r < R; r++)
                for (int c = 0; c < C; c++) {
                    float v = b ? p[500 + r * LD + c] + b[c] : p[500 + r * LD + c];
                    v = sl_cpu_act(SL_ACT_GELU, v);
                    if (m)
                        v *= m[r * LD + c];
                    v = ad ? v + ad[r * LD + c] : v;
                    const float g = yb[r * LD + c];
                    bad += v != v ? g == g : memcmp(&v, &g, sizeof v) != 0;
                }
        }
    free(yb);
    sl_cpu_simd_set(1);
    sl_cpu_simd_set_avx512(avx512);
    printf("  gelu epilogue rows of %d, 3 paths x 4 layouts x 2 calls, blocks of %d x %d: %zu values differ\n", N,
           R, C, bad);
    CHECK_MSG(bad == 0, "gelu epilogue rows: %zu values differ from the portable loop", bad);
    free(p), free(bias), free(add), free(want), free(y), free(in);
}

/* row_gather (copies and 4-tap sums) on 1 and 3 threads: the rows split over the threads give
 * the bits of one thread, and those of the definition (float sums in tap order). */
static void test_row_gather_threads(sl_op_ctx *ctx)
{
    enum { ROWS = 3001, COLS = 37, IN = 2000, TAPS = 4 };
    float *x = sl_ref_rnd((size_t)IN * COLS, -1, 1), *w = sl_ref_rnd((size_t)ROWS * TAPS, -1, 1);
    float *y[2] = {malloc((size_t)ROWS * COLS * sizeof(float)), malloc((size_t)ROWS * COLS * sizeof(float))};
    int32_t *idx = malloc((size_t)ROWS * TAPS * sizeof(int32_t));
    CHECK(x && w && y[0] && y[1] && idx);
    for (size_t i = 0; i < (size_t)ROWS * TAPS; i++)
        idx[i] = (int32_t)((i * 7919u + 13u) % IN);
    size_t bad = 0;
    for (int taps = 1; taps <= TAPS; taps += TAPS - 1) {
        for (int v = 0; v < 2; v++) {
            CHECK(sl_op_ctx_set_threads(ctx, v ? 3 : 1) == 0);
            sl_gather_args a = {.batch = 1, .rows = ROWS, .cols = COLS, .in_rows = IN, .taps = taps, .idx = idx,
                                .w = taps > 1 ? w : NULL, .x = x, .ldx = COLS, .y = y[v], .ldy = COLS};
            CHECK(sl_op_row_gather(ctx, &a) == 0);
        }
        for (size_t r = 0; r < ROWS; r++)
            for (size_t c = 0; c < COLS; c++) {
                float want = taps > 1 ? w[r * taps] * x[(size_t)idx[r * taps] * COLS + c] : x[(size_t)idx[r] * COLS + c];
                for (int t = 1; t < taps; t++)
                    want = want + w[r * taps + t] * x[(size_t)idx[r * taps + t] * COLS + c];
                bad += memcmp(&want, &y[0][r * COLS + c], sizeof want) != 0 ||
                       memcmp(&want, &y[1][r * COLS + c], sizeof want) != 0;
            }
    }
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    printf("  row gather %d rows, 1 and 4 taps, 1 and 3 threads: %zu values differ\n", ROWS, bad);
    CHECK_MSG(bad == 0, "row gather: %zu values differ", bad);
    free(x), free(w), free(y[0]), free(y[1]), free(idx);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    sl_ref_seed("xf_ops");
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    test_erf();
    test_softmax_rows();
    test_gelu_glu(ctx);
    test_gelu_rows();
    test_row_gather_threads(ctx);
    test_norm(ctx, SL_NORM_RMS, 9, 300);
    test_norm(ctx, SL_NORM_LAYER, 9, 300);
    test_group_norm_gelu(ctx, 3, 12, 4, 45);
    test_attention(ctx, 1, 1, 1, 1, 2, 1, 0);
    test_attention(ctx, 3, 40, 40, 2, 16, 1, 0);
    test_attention(ctx, 2, 13, 29, 3, 7, 0, 1);
    test_attention(ctx, 3, 50, 50, 2, 64, 1, 1);
    /* without rotary positions, head dims a multiple of 16 (the AVX-512 kernels where the CPU
     * has them): Swin windows, text lengths past 64 keys, three column blocks */
    test_attention(ctx, 3, 64, 64, 4, 32, 0, 1);
    test_attention(ctx, 2, 64, 64, 4, 32, 0, 0); /* the window kernel under AVX-512 */
    test_attention(ctx, 1, 21, 48, 2, 64, 0, 0);
    if (sl_cpu_simd_avx512()) {
        test_attention_windows(ctx, 3, 64, 64, 4, 32, 0);
        test_attention_windows(ctx, 4, 64, 64, 2, 32, 1);
        test_attention_windows(ctx, 2, 13, 48, 3, 16, 0);
        test_attention_windows(ctx, 2, 30, 64, 2, 48, 1);
        test_attention_windows(ctx, 1, 21, 32, 2, 64, 0);
    }
    test_attention(ctx, 2, 13, 77, 2, 64, 0, 1);
    test_attention(ctx, 1, 6, 130, 1, 48, 0, 0);
    test_attention(ctx, 2, 21, 37, 2, 80, 1, 1); /* head dim 64 + 16 */
    test_attention(ctx, 1, 300, 260, 2, 64, 1, 1); /* AVX-512: 5 blocks of query rows, the last partial */
    /* 48-wide heads (HT-Demucs): p . v by 8 rows, then 4 and 1; past 1024 keys still the AVX-512
     * kernels (widths a multiple of 16), a width of 40 there the library path */
    test_attention(ctx, 1, 19, 130, 2, 48, 0, 1);
    test_attention(ctx, 1, 70, 1100, 2, 48, 0, 1);
    test_attention(ctx, 1, 75, 1030, 1, 40, 0, 0);
    /* past 64 keys, widths 16..64 a multiple of 16 (AVX-512: the long-sequence kernel's chunks
     * of 256 keys, blocks of 8 query rows, the last partial): 32 wide with rope, whole chunks
     * masked off by the bias */
    test_attention(ctx, 2, 37, 300, 2, 32, 1, 1);
    test_attention(ctx, 1, 8, 65, 1, 16, 0, 1);
    test_attention_masked(ctx, 48);
    test_attention_masked(ctx, 64);
    /* the AVX2 kernels where the AVX-512 ones ran above */
    const int avx512 = sl_cpu_simd_set_avx512(0);
    test_attention(ctx, 3, 50, 50, 2, 64, 1, 1);
    test_attention(ctx, 2, 13, 29, 3, 7, 0, 1);
    test_attention(ctx, 2, 21, 37, 2, 80, 1, 1);
    test_attention(ctx, 2, 37, 300, 2, 32, 1, 1);
    test_attention_masked(ctx, 48);
    sl_cpu_simd_set_avx512(avx512);
    /* runtime.precision tf32: pairs of 512 keys and 64 query rows or more on the AMX tiles where the
     * CPU has them (three bf16 products per product: about 2^-16 relative each), blocks of 32 query
     * rows, the last partial; shorter ones as at fp32 (unit.xf_ops.noamx: no AMX, all fp32 kernels) */
    if (sl_op_ctx_set_precision(ctx, SL_PREC_TF32) == 0) {
        attn_tol = sl_op_ctx_precision(ctx) == SL_PREC_TF32 ? 1e-4 : 1e-5;
        test_attention(ctx, 1, 70, 600, 2, 48, 0, 1);
        test_attention(ctx, 2, 100, 530, 2, 64, 1, 1);
        test_attention(ctx, 1, 64, 512, 3, 40, 1, 0);
        test_attention(ctx, 1, 130, 600, 2, 48, 0, 0);
        attn_tol = 1e-5;
        CHECK(sl_op_ctx_set_precision(ctx, SL_PREC_FP32) == 0);
    }
    /* the (item, head) pairs split over 3 threads, fewer pairs than threads too */
    CHECK(sl_op_ctx_set_threads(ctx, 3) == 0);
    test_attention(ctx, 3, 40, 40, 2, 16, 1, 0);
    test_attention(ctx, 2, 13, 29, 3, 7, 0, 1);
    test_attention(ctx, 1, 9, 9, 2, 8, 1, 1);
    test_norm(ctx, SL_NORM_LAYER, 200, 300); /* rows split over the threads */
    test_norm(ctx, SL_NORM_RMS, 130, 301);
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    test_group_norm_pieces(ctx, 1, 96, 1, 701, 1);
    test_group_norm_pieces(ctx, 2, 48, 1, 1001, 1);
    test_group_norm_pieces(ctx, 1, 40, 2, 3001, 0);
    /* a row of 8.4 M elements: its statistics in the most blocks (256, longer than 2^15 each) over
     * the threads, each thread several blocks */
    test_group_norm_pieces(ctx, 1, 4, 1, 2100000, 0);
    test_group_norm_glu(ctx, 3, 12, 37);   /* rows of 444 elements: each row on one thread */
    test_group_norm_glu(ctx, 1, 96, 701);  /* 67 K elements: pieces of the row over 3 threads */
    /* long sequences (more than 256 x 256 scores): the AVX-512 kernels' query blocks, the
     * library-GEMM path without AVX-512; short ones with the AVX2 kernels switched off */
    test_attention(ctx, 1, 300, 260, 2, 16, 1, 1);
    /* several blocks of query rows (2^18 / k_len rows each), q and k read in place
     * without rope, and rotated copies with it, on 1 and 2 threads */
    test_attention(ctx, 2, 1400, 300, 2, 8, 0, 0);
    test_attention(ctx, 1, 1100, 600, 1, 16, 1, 1);
    CHECK(sl_op_ctx_set_threads(ctx, 2) == 0);
    test_attention(ctx, 1, 1400, 300, 3, 8, 0, 1);
    CHECK(sl_op_ctx_set_threads(ctx, 1) == 0);
    sl_cpu_simd_set_avx512(0);
    test_attention(ctx, 1, 300, 260, 2, 16, 1, 1);
    test_attention(ctx, 2, 1400, 300, 2, 8, 0, 0);
    test_attention(ctx, 1, 1100, 600, 1, 16, 1, 1);
    sl_cpu_simd_set_avx512(avx512);
    sl_cpu_simd_set(0);
    test_attention(ctx, 3, 40, 40, 2, 16, 1, 0);
    test_attention(ctx, 2, 13, 29, 3, 7, 0, 1);
    test_norm(ctx, SL_NORM_RMS, 9, 300);
    test_norm(ctx, SL_NORM_LAYER, 9, 300);
    test_group_norm_gelu(ctx, 3, 12, 4, 45);
    test_group_norm_pieces(ctx, 1, 96, 1, 701, 1);
    test_gelu_glu(ctx);
    sl_cpu_simd_set(1);
    test_band(ctx);
    sl_op_ctx_close(ctx);
    return sl_test_finish("xf_ops");
}
