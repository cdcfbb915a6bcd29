/* pipeline/demucs_split.h against a direct transcription of apply_model
 * (split=True, shifts >= 0) that holds the whole track: the same model, a
 * position-dependent stand-in (each output sample mixes the input sample with
 * its mirror in the segment, so a misplaced centre, a wrong padding of a
 * partial segment or a wrong shift shows), must give the same whole-track
 * output whatever the track length (several partial segments at the end, a
 * track shorter than one segment, one sample), the overlap, the transition
 * power, the shifts and their offsets (up to max_shift, beyond a segment), and
 * the sizes the reader hands out; the identity model must give the track back.
 * The statistics equal the two-pass mean / unbiased std of the mono sum; the
 * buffers stay 2L whatever the shifts. The model's real output is checked
 * against the demucs package in unit.htdemucs and unit.htdemucs_bag. */
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

/* the stand-in model on one segment of L samples (channel planes of stride L) */
static void model(int identity, const double *in, size_t L, double *out)
{
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < L; i++)
            out[c * L + i] = identity ? in[c * L + i]
                                      : in[c * L + i] * (1.0 + (double)i / (double)L) + 0.5 * in[c * L + L - 1 - i] +
                                            0.25 * c;
}

static void model_f(int identity, float *const *in, size_t L, float *const *out)
{
    double *a = malloc(sizeof(double) * 4 * L);
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < L; i++)
            a[c * L + i] = in[c][i];
    model(identity, a, L, a + 2 * L);
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < L; i++)
            out[c][i] = (float)a[2 * L + c * L + i];
    free(a);
}

/* apply_model(split=True, shifts=0) on TensorChunk(U, co, m): U [2][ulen], result [2][m] */
static void ref_split(int identity, const double *U, size_t ulen, size_t co, size_t m, size_t L, double overlap,
                      double power, double *res)
{
    const size_t stride = (size_t)((1.0 - overlap) * (double)L), h = L / 2, mx = h > L - h ? h : L - h;
    double *sum = calloc(m, sizeof(double)), *seg = malloc(sizeof(double) * 4 * L);
    memset(res, 0, sizeof(double) * 2 * m);
    for (size_t off = 0; off < m; off += stride) {
        const size_t len = m - off < L ? m - off : L, delta = L - len;
        const long start = (long)(co + off) - (long)(delta / 2);
        for (int c = 0; c < 2; c++)
            for (size_t i = 0; i < L; i++) {
                long p = start + (long)i;
                seg[c * L + i] = p >= 0 && p < (long)ulen ? U[c * ulen + (size_t)p] : 0.0;
            }
        model(identity, seg, L, seg + 2 * L);
        for (size_t i = 0; i < len; i++) {
            const double w = pow((i < h ? (double)(i + 1) : (double)(L - i)) / (double)mx, power);
            sum[off + i] += w;
            for (int c = 0; c < 2; c++)
                res[c * m + off + i] += w * seg[2 * L + c * L + delta / 2 + i];
        }
    }
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < m; i++)
            res[c * m + i] /= sum[i];
    free(sum);
    free(seg);
}

/* the whole track normalised, apply_model with shifts, the normalisation undone: ref [2][n] */
static void reference(int identity, const float *x, size_t n, double mean, double std, const sl_dmx_geom *g,
                      double power, double *ref)
{
    const size_t P = g->shifts ? g->max_shift : 0, ulen = n + 2 * P;
    double *U = calloc(2 * ulen, sizeof(double)), *res = malloc(sizeof(double) * 2 * (n + P + 1));
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < n; i++)
            U[c * ulen + P + i] = ((double)x[c * n + i] - mean) / std;
    memset(ref, 0, sizeof(double) * 2 * n);
    if (!g->shifts) {
        ref_split(identity, U, n, 0, n, g->L, g->overlap, power, ref);
    } else {
        for (int r = 0; r < g->shifts; r++) {
            const size_t o = g->offsets[r], m = n + P - o;
            ref_split(identity, U, ulen, o, m, g->L, g->overlap, power, res);
            for (int c = 0; c < 2; c++)
                for (size_t i = 0; i < n; i++)
                    ref[c * n + i] += res[c * m + P - o + i];
        }
        for (size_t i = 0; i < 2 * n; i++)
            ref[i] /= g->shifts;
    }
    for (size_t i = 0; i < 2 * n; i++)
        ref[i] = ref[i] * std + mean;
    free(U);
    free(res);
}

static void one_model(int identity, size_t n, const sl_dmx_geom *g, double power, size_t piece)
{
    const size_t L = g->L;
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
    CHECK(sl_dmx_cutter_init(&c, g, 2, mean, std) == 0);
    CHECK(sl_dmx_joiner_init(&j, g, 1, 2, power, mean, std) == 0);
    float *seg = malloc(sizeof(float) * 2 * L), *o = malloc(sizeof(float) * 2 * L), *out = malloc(sizeof(float) * 2 * n);
    float *srow[2] = {seg, seg + L}, *orow[2] = {o, o + L};
    const float *yrow[2] = {o, o + L};
    const float *const *yy[1] = {yrow};
    float *const *oo[1] = {orow};
    reader r = {x, n, 0, piece};
    sl_dmx_pos pos;
    size_t done = 0, segs = 0;
    long len;
    while ((len = sl_dmx_cutter_next(&c, rd, &r, srow, &pos)) > 0) {
        model_f(identity, srow, L, orow); /* the joiner reads y before it writes over it, as the runner does */
        size_t k = sl_dmx_joiner_push(&j, yy, &pos, oo);
        CHECK(k <= L && done + k <= n);
        for (int ch = 0; ch < 2 && done + k <= n; ch++)
            memcpy(out + (size_t)ch * n + done, orow[ch], k * sizeof(float));
        done += k;
        segs++;
    }
    const size_t stride = (size_t)((1.0 - g->overlap) * (double)L);
    size_t want = 0;
    for (int k = 0; k < (g->shifts ? g->shifts : 1); k++) {
        const size_t m = n + (g->shifts ? g->max_shift - g->offsets[k] : 0);
        want += (m + stride - 1) / stride;
    }
    CHECK_MSG(done == n && segs == want, "n%zu L%zu: %zu samples in %zu segments (%zu expected)", n, L, done, segs,
              want);
    double *ref = malloc(sizeof(double) * 2 * n), e = 0, big = 0;
    reference(identity, x, n, mean, std, g, power, ref);
    for (size_t i = 0; i < 2 * n && done == n; i++) {
        e = fmax(e, fabs((double)out[i] - ref[i]));
        big = fmax(big, fabs(ref[i]));
        if (identity)
            e = fmax(e, fabs((double)out[i] - x[i]));
    }
    printf("  %-8s n %-6zu L %-5zu overlap %.2f power %.1f piece %-4zu shifts %d (max %zu): %zu segments, "
           "max err %.2g\n", identity ? "identity" : "mirror", n, L, g->overlap, power, piece, g->shifts,
           g->max_shift, segs, e);
    CHECK_MSG(e < 1e-5 * (1 + big), "n%zu L%zu overlap %g shifts %d: error %g", n, L, g->overlap, g->shifts, e);
    CHECK(c.cap == 2 * L && j.cap == 2 * L); /* bounded by the segment, not the track or the shifts */
    sl_dmx_cutter_free(&c);
    sl_dmx_joiner_free(&j);
    free(x);
    free(seg);
    free(o);
    free(out);
    free(ref);
}

static void one(size_t n, size_t L, double overlap, double power, size_t piece)
{
    sl_dmx_geom g = {L, overlap, 0, 0, {0}};
    one_model(1, n, &g, power, piece);
    one_model(0, n, &g, power, piece);
}

static void shifted(size_t n, size_t L, double overlap, size_t max_shift, size_t piece, int shifts,
                    const size_t *offsets)
{
    sl_dmx_geom g = {L, overlap, shifts, max_shift, {0}};
    if (offsets)
        memcpy(g.offsets, offsets, sizeof(size_t) * (size_t)shifts);
    else
        sl_dmx_default_offsets(shifts, max_shift, g.offsets);
    one_model(1, n, &g, 1.0, piece);
    one_model(0, n, &g, 1.0, piece);
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
    /* the documented default offsets: middles of N equal parts of [0, max_shift] */
    size_t d[3];
    sl_dmx_default_offsets(2, 22050, d);
    CHECK(d[0] == 5512 && d[1] == 16537);
    sl_dmx_default_offsets(3, 4000, d);
    CHECK(d[0] == 666 && d[1] == 2000 && d[2] == 3333);
    shifted(2400, 1000, 0.25, 700, 777, 1, NULL);
    shifted(2900, 1000, 0.25, 700, 333, 3, NULL);
    const size_t ends[3] = {0, 1500, 777}; /* the extremes of randint(0, max_shift), a delay beyond a segment */
    shifted(301, 1000, 0.25, 1500, 1, 3, ends);
    shifted(5003, 999, 0.0, 400, 1000, 2, NULL);
    shifted(6000, 1000, 0.9, 500, 250, 4, NULL);
    const size_t same[2] = {300, 300}; /* equal offsets: rounds tie at every start */
    shifted(4000, 800, 0.25, 600, 4096, 2, same);
    sl_dmx_cutter c;
    sl_dmx_geom bad = {1000, 1.0, 0, 0, {0}};
    CHECK(sl_dmx_cutter_init(&c, &bad, 2, 0, 1) < 0);
    bad.overlap = 0.25;
    CHECK(sl_dmx_cutter_init(&c, &bad, 2, 0, 0) < 0);
    bad.shifts = 1, bad.max_shift = 10, bad.offsets[0] = 11;
    CHECK(sl_dmx_cutter_init(&c, &bad, 2, 0, 1) < 0);
    bad.offsets[0] = 10, bad.shifts = SL_DMX_MAX_SHIFTS + 1;
    CHECK(sl_dmx_cutter_init(&c, &bad, 2, 0, 1) < 0);
    return sl_test_finish("demucs_split");
}
