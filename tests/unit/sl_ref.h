/* Double-precision references shared by the op tests (test_nn_ops.c,
 * test_conv_ops.c, parity_impl.h): the activations, a direct convolution and
 * the relative error of a float result against a double one. Header-only. */
#ifndef SL_TEST_REF_H
#define SL_TEST_REF_H

#include <math.h>
#include <stddef.h>

#include "kernels/ops.h"

static inline double sl_ref_act(sl_act a, double v)
{
    return a == SL_ACT_RELU ? (v < 0 ? 0 : v) : a == SL_ACT_TANH ? tanh(v) : v;
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

#endif
