/* CPU feature ops: mel filterbank application, power to dB, statistics pooling. */
#include <math.h>
#include <stdlib.h>

#include "../../common/sl_error.h"
#include "cpu_ops.h"

int sl_cpu_mel(sl_op_ctx *ctx, size_t count, int n_bins, int n_mels, const float *fb,
               const float *spec, float *mel)
{
    (void)ctx;
    /* Mel filters are triangles: find each band's non-zero span once so the
     * product costs about 2*n_bins multiply-adds per frame instead of n_mels*n_bins. */
    int *span = malloc(sizeof(int) * 2 * (size_t)n_mels);
    if (!span)
        return sl_seterr(SL_ENOMEM, "mel: out of memory");
    for (int m = 0; m < n_mels; m++) {
        const float *row = fb + (size_t)m * n_bins;
        int lo = 0, hi = n_bins;
        while (lo < n_bins && row[lo] == 0.0f)
            lo++;
        while (hi > lo && row[hi - 1] == 0.0f)
            hi--;
        span[2 * m] = lo;
        span[2 * m + 1] = hi;
    }
    for (size_t t = 0; t < count; t++) {
        const float *s = spec + t * (size_t)n_bins;
        float *o = mel + t * (size_t)n_mels;
        for (int m = 0; m < n_mels; m++) {
            const float *row = fb + (size_t)m * n_bins;
            double acc = 0.0;
            for (int k = span[2 * m]; k < span[2 * m + 1]; k++)
                acc += (double)row[k] * s[k];
            o[m] = (float)acc;
        }
    }
    free(span);
    return 0;
}

int sl_cpu_log_db(sl_op_ctx *ctx, size_t batch, size_t n, const float *in, float amin, float top_db,
                  float *out)
{
    (void)ctx;
    for (size_t b = 0; b < batch; b++) {
        const float *x = in + b * n;
        float *y = out + b * n;
        float mx = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            float v = x[i] > amin ? x[i] : amin; /* NaN stays NaN, like numpy.maximum */
            if (isnan(x[i]))
                v = x[i];
            y[i] = (float)(10.0 * log10((double)v));
            if (y[i] > mx)
                mx = y[i];
        }
        if (top_db > 0) {
            float floor_db = mx - top_db;
            for (size_t i = 0; i < n; i++)
                if (y[i] < floor_db)
                    y[i] = floor_db;
        }
    }
    return 0;
}

int sl_cpu_stats_pool(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_feat, const float *in,
                      float *out)
{
    (void)ctx;
    const double T = (double)n_frames;
    for (size_t b = 0; b < batch; b++) {
        const float *x = in + b * n_frames * n_feat;
        float *o = out + b * 4 * n_feat;
        for (size_t f = 0; f < n_feat; f++) {
            /* Two passes in double: the spread of log-mel values is small next
             * to their mean, where one-pass formulas lose precision. */
            double s = 0, sd = 0;
            for (size_t t = 0; t < n_frames; t++) {
                s += x[t * n_feat + f];
                if (t > 0)
                    sd += (double)x[t * n_feat + f] - x[(t - 1) * n_feat + f];
            }
            double mean = s / T;
            double mean_d = n_frames > 1 ? sd / (T - 1) : 0.0;
            double v = 0, vd = 0;
            for (size_t t = 0; t < n_frames; t++) {
                double e = x[t * n_feat + f] - mean;
                v += e * e;
                if (t > 0) {
                    double d = (double)x[t * n_feat + f] - x[(t - 1) * n_feat + f] - mean_d;
                    vd += d * d;
                }
            }
            o[f] = (float)mean;
            o[n_feat + f] = (float)sqrt(v / T);
            o[2 * n_feat + f] = (float)mean_d;
            o[3 * n_feat + f] = n_frames > 1 ? (float)sqrt(vd / (T - 1)) : 0.0f;
        }
    }
    return 0;
}
