/* pipeline/demucs_split.h with the identity as the model: apply_model's
 * blend of the segments' centres must give the normalised-and-restored track
 * back, whatever the track length (several partial segments at the end, a
 * track shorter than one segment, one sample), the overlap, the transition
 * power and the sizes the reader hands out; a misplaced centre (the padding
 * of a partial segment) or a dropped or repeated sample shows. The
 * statistics equal the two-pass mean / unbiased std of the mono sum. The
 * model's real output is checked against the demucs package in
 * unit.htdemucs. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/demucs_split.h"
#include "sl_test.h"

typedef struct {
    const float *x;
    size_t n, at, piece;
} reader;

static long rd(void *arg, float *const *dst, long max)
{
    reader *r = arg;
    size_t k = r->n - r->at < r->piece ? r->n - r->at : r->piece;
    if ((long)k > max)
        k = (size_t)max;
    for (int c = 0; c < 2; c++)
        memcpy(dst[c], r->x + (size_t)c * r->n + r->at, k * sizeof(float));
    r->at += k;
    return (long)k;
}

static void one(size_t n, size_t L, double overlap, double power, size_t piece)
{
    float *x = malloc(sizeof(float) * 2 * n);
    for (size_t i = 0; i < 2 * n; i++)
        x[i] = (float)(0.3 * sin(0.01 * (double)i) + 0.1 * ((i * 7919) % 13) / 13.0 + (i >= n ? 0.2 : 0.0));
    sl_dmx_stats st = {0, 0, 0};
    const float *p[2] = {x, x + n};
    sl_dmx_stats_add(&st, p, 2, n);
    double mean, std, m2 = 0, v2 = 0;
    sl_dmx_stats_get(&st, &mean, &std);
    for (size_t i = 0; i < n; i++)
        m2 += ((double)x[i] + x[n + i]) / 2.0;
    m2 /= (double)n;
    for (size_t i = 0; i < n; i++)
        v2 += (((double)x[i] + x[n + i]) / 2.0 - m2) * (((double)x[i] + x[n + i]) / 2.0 - m2);
    v2 = n > 1 ? sqrt(v2 / (double)(n - 1)) : 0;
    CHECK_MSG(fabs(mean - m2) < 1e-12 && fabs(std - v2) < 1e-12, "stats n%zu: %g %g vs %g %g", n, mean, std, m2, v2);
    if (!(std > 0))
        std = 1;
    sl_dmx_cutter c;
    sl_dmx_joiner j;
    CHECK(sl_dmx_cutter_init(&c, L, overlap, 2, mean, std) == 0);
    CHECK(sl_dmx_joiner_init(&j, L, 1, 2, power, mean, std) == 0);
    float *seg = malloc(sizeof(float) * 2 * L), *o = malloc(sizeof(float) * 2 * L), *out = malloc(sizeof(float) * 2 * n);
    float *srow[2] = {seg, seg + L}, *orow[2] = {o, o + L};
    const float *yrow[2] = {seg, seg + L};
    const float *const *yy[1] = {yrow};
    float *const *oo[1] = {orow};
    reader r = {x, n, 0, piece};
    sl_dmx_pos pos;
    size_t done = 0, segs = 0;
    long len;
    while ((len = sl_dmx_cutter_next(&c, rd, &r, srow, &pos)) > 0) {
        size_t k = sl_dmx_joiner_push(&j, yy, &pos, c.stride, oo);
        CHECK(done + k <= n);
        for (int ch = 0; ch < 2 && done + k <= n; ch++)
            memcpy(out + (size_t)ch * n + done, orow[ch], k * sizeof(float));
        done += k;
        segs++;
    }
    const size_t stride = (size_t)((1.0 - overlap) * (double)L);
    CHECK_MSG(done == n && segs == (n + stride - 1) / stride, "n%zu L%zu: %zu samples in %zu segments", n, L, done, segs);
    double e = 0;
    for (size_t i = 0; i < 2 * n && done == n; i++)
        e = fmax(e, fabs((double)out[i] - x[i]));
    printf("  n %-6zu L %-5zu overlap %.2f power %.1f piece %-4zu: %zu segments, max err %.2g\n", n, L, overlap,
           power, piece, segs, e);
    CHECK_MSG(e < 1e-5, "n%zu L%zu overlap %g: error %g", n, L, overlap, e);
    CHECK(c.cap == 2 * L && j.cap == 2 * L); /* bounded by the segment, not the track */
    sl_dmx_cutter_free(&c);
    sl_dmx_joiner_free(&j);
    free(x);
    free(seg);
    free(o);
    free(out);
}

int main(void)
{
    one(2400, 1000, 0.25, 1.0, 777);  /* two partial segments at the end */
    one(2900, 1000, 0.25, 1.0, 1);    /* one sample at a time */
    one(1000, 1000, 0.25, 2.0, 4096); /* exactly one segment: no later segment starts inside */
    one(301, 1000, 0.25, 1.0, 100);   /* shorter than a segment */
    one(1, 64, 0.25, 1.0, 5);
    one(10007, 777, 0.5, 1.5, 333);   /* odd segment, half overlap */
    one(5000, 999, 0.0, 1.0, 1000);   /* no overlap */
    one(6000, 1000, 0.9, 3.0, 250);   /* overlap > 1/2: centres reach further back than a stride */
    sl_dmx_cutter c;
    CHECK(sl_dmx_cutter_init(&c, 1000, 1.0, 2, 0, 1) < 0);
    CHECK(sl_dmx_cutter_init(&c, 1000, 0.25, 2, 0, 0) < 0);
    return sl_test_finish("demucs_split");
}
