/* Double-precision references shared by the op tests (test_nn_ops.c,
 * test_conv_ops.c, test_xf_ops.c, parity_impl.h): the activations, a direct
 * convolution, the relative error of a float result against a double one, and
 * seeded random inputs. Header-only. */
#ifndef SL_TEST_REF_H
#define SL_TEST_REF_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "kernels/ops.h"

/* The random generator of the op tests (xorshift), seeded by sl_ref_seed. */
static inline uint64_t *sl_ref_rng(void)
{
    static uint64_t state = 1;
    return &state;
}

/* Seeds from SL_TEST_SEED or the clock and pid, and prints the seed (who: the test). */
static inline void sl_ref_seed(const char *who)
{
    const char *env = getenv("SL_TEST_SEED");
    uint64_t s = env ? strtoull(env, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
    *sl_ref_rng() = s ? s : 1;
    printf("%s: random seed %llu (SL_TEST_SEED to replay)\n", who, (unsigned long long)*sl_ref_rng());
}

/* Uniform in [0, 1). */
static inline double sl_ref_urand(void)
{
    uint64_t *r = sl_ref_rng();
    *r ^= *r >> 12;
    *r ^= *r << 25;
    *r ^= *r >> 27;
    return (double)((*r * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* n floats uniform in [lo, hi), malloc'd (caller frees). */
static inline float *sl_ref_rnd(size_t n, float lo, float hi)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(lo + (hi - lo) * sl_ref_urand());
    return p;
}

static inline double sl_ref_act(sl_act a, double v)
{
    return a == SL_ACT_RELU   ? (v < 0 ? 0 : v)
           : a == SL_ACT_TANH ? tanh(v)
           : a == SL_ACT_GELU ? 0.5 * v * (1.0 + erf(v / sqrt(2.0)))
                              : v;
}

/* max |got - want| / max |want| (1 when want is all zeros); NaN in got: infinite. */
static inline double sl_ref_err(const float *got, const double *want, size_t n)
{
    double mx = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(want[i]));
        e = fmax(e, isnan(got[i]) ? INFINITY : fabs(got[i] - want[i]));
    }
    return e / (mx > 0 ? mx : 1);
}

/* y[batch][co][h][w] = act(bias + sum over c, u, v of wt[o][c][u][v] * x[c][i+u-k/2][j+v-k/2]),
 * zero padding, in double (torch's Conv2d, stride 1, 'same'). bias may be NULL. */
static inline void sl_ref_conv2d(const float *x, const float *wt, const float *bias, size_t batch, int ci, int co,
                                 int h, int w, int k, sl_act act, double *y)
{
    const int p = k / 2;
    for (size_t n = 0; n < batch; n++)
        for (int o = 0; o < co; o++)
            for (int i = 0; i < h; i++)
                for (int j = 0; j < w; j++) {
                    double s = bias ? bias[o] : 0.0;
                    for (int c = 0; c < ci; c++)
                        for (int u = 0; u < k; u++)
                            for (int v = 0; v < k; v++) {
                                const int r = i + u - p, q = j + v - p;
                                if (r >= 0 && r < h && q >= 0 && q < w)
                                    s += (double)wt[(((size_t)o * ci + c) * k + u) * k + v] *
                                         x[((n * ci + c) * h + r) * (size_t)w + q];
                            }
                    y[((n * co + o) * h + i) * (size_t)w + j] = sl_ref_act(act, s);
                }
}

/* Attention of tq query rows over tk keys (2 heads of width D) whose first `cut` keys are masked
 * by a -inf bias, against the same call on the other keys alone: returns the relative difference
 * (sl_ref_err) and counts the NaN of the masked result in *nan. -1 when a call failed. */
static inline double sl_ref_attn_masked(sl_op_ctx *ctx, size_t tq, size_t tk, size_t cut, int D, size_t *nan)
{
    const size_t H = 2, HD = H * (size_t)D;
    float *q = sl_ref_rnd(tq * HD, -2, 2), *k = sl_ref_rnd(tk * HD, -1, 1), *v = sl_ref_rnd(tk * HD, -1, 1);
    float *bias = sl_ref_rnd(H * tq * tk, -1, 1), *o1 = malloc(tq * HD * sizeof(float));
    float *o2 = malloc(tq * HD * sizeof(float));
    double *want = malloc(tq * HD * sizeof(double)), e = -1;
    for (size_t i = 0; i < H * tq; i++)
        for (size_t j = 0; j < cut; j++)
            bias[i * tk + j] = -INFINITY;
    sl_attention_args a = {.batch = 1, .tq = tq, .tk = tk, .heads = (int)H, .dim_head = D, .scale = 0.3f, .q = q,
                           .ldq = HD, .k = k, .ldk = HD, .v = v, .ldv = HD, .bias = bias, .ld_bias = tk,
                           .stride_bias_h = tq * tk, .out = o1, .ldo = HD};
    *nan = 0;
    if (sl_op_attention(ctx, &a) == 0) {
        a.tk = tk - cut, a.k = k + cut * HD, a.v = v + cut * HD, a.bias = bias + cut, a.out = o2;
        if (sl_op_attention(ctx, &a) == 0) {
            for (size_t i = 0; i < tq * HD; i++) {
                *nan += isnan(o1[i]) != 0;
                want[i] = o2[i];
            }
            e = sl_ref_err(o1, want, tq * HD);
        }
    }
    free(q), free(k), free(v), free(bias), free(o1), free(o2), free(want);
    return e;
}

#endif
