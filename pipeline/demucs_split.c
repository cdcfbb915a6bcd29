/* The `demucs` command's whole-track inference, streamed (pipeline/demucs_split.h). */
#include "demucs_split.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"

void sl_dmx_stats_add(sl_dmx_stats *s, const float *const *x, int ch, size_t frames)
{
    for (size_t i = 0; i < frames; i++) {
        double v = 0;
        for (int c = 0; c < ch; c++)
            v += x[c][i];
        v /= ch;
        s->n += 1;
        const double d = v - s->mean;
        s->mean += d / s->n;
        s->m2 += d * (v - s->mean);
    }
}

void sl_dmx_stats_get(const sl_dmx_stats *s, double *mean, double *std)
{
    *mean = s->mean;
    *std = s->n > 1 ? sqrt(s->m2 / (s->n - 1)) : 0.0;
}

int sl_dmx_cutter_init(sl_dmx_cutter *c, size_t L, double overlap, int ch, double mean, double std)
{
    memset(c, 0, sizeof *c);
    const size_t stride = (size_t)((1.0 - overlap) * (double)L);
    if (L < 2 || !(overlap >= 0 && overlap < 1) || stride < 1 || ch < 1 || ch > SL_SEG_MAX_CH || !(std > 0))
        return sl_seterr(SL_EINVAL, "demucs split: segment %zu, overlap %g, %d channels, std %g", L, overlap, ch, std);
    c->L = L, c->stride = stride, c->cap = 2 * L, c->ch = ch, c->mean = mean, c->std = std;
    c->buf = malloc(sizeof(float) * c->cap * (size_t)ch);
    return c->buf ? 0 : sl_seterr(SL_ENOMEM, "demucs split: out of memory");
}

long sl_dmx_cutter_next(sl_dmx_cutter *c, sl_seg_read_fn read, void *arg, float *const *dst, sl_dmx_pos *pos)
{
    if (c->done)
        return 0;
    const size_t L = c->L, off = c->k * c->stride;
    /* keep what a centred last segment may reach back to: L/2 before off */
    const size_t keep = off > L / 2 ? off - L / 2 : 0;
    if (keep > c->b0) {
        const size_t drop = keep - c->b0, have = c->b1 - keep;
        for (int ch = 0; ch < c->ch; ch++)
            memmove(c->buf + (size_t)ch * c->cap, c->buf + (size_t)ch * c->cap + drop, have * sizeof(float));
        c->b0 = keep;
    }
    while (!c->eof && c->b1 < off + L) {
        float *d[SL_SEG_MAX_CH];
        for (int ch = 0; ch < c->ch; ch++)
            d[ch] = c->buf + (size_t)ch * c->cap + (c->b1 - c->b0);
        long got = read(arg, d, (long)(off + L - c->b1));
        if (got < 0)
            return got;
        if (got == 0) {
            c->eof = 1;
            break;
        }
        for (int ch = 0; ch < c->ch; ch++)
            for (long i = 0; i < got; i++)
                d[ch][i] = (float)((d[ch][i] - c->mean) / c->std);
        c->b1 += (size_t)got;
    }
    if (c->eof && off >= c->b1) { /* offsets are range(0, n, stride) */
        c->done = 1;
        return 0;
    }
    const size_t len = c->b1 - off < L ? c->b1 - off : L, lead = (L - len) / 2;
    const long start = (long)off - (long)lead;
    for (int ch = 0; ch < c->ch; ch++)
        for (size_t j = 0; j < L; j++) {
            const long p = start + (long)j;
            dst[ch][j] = p >= (long)c->b0 && p < (long)c->b1 ? c->buf[(size_t)ch * c->cap + (size_t)p - c->b0] : 0.0f;
        }
    pos->offset = off, pos->len = len, pos->lead = lead;
    /* without the end in sight b1 >= off + L > off + stride: another segment follows */
    pos->last = c->eof && off + c->stride >= c->b1;
    c->done = pos->last;
    c->k++;
    return (long)len;
}

void sl_dmx_cutter_free(sl_dmx_cutter *c)
{
    free(c->buf);
    c->buf = NULL;
}

int sl_dmx_joiner_init(sl_dmx_joiner *j, size_t L, int n_src, int ch, double transition_power, double mean,
                       double std)
{
    memset(j, 0, sizeof *j);
    if (L < 2 || n_src < 1 || ch < 1 || !(transition_power >= 1))
        return sl_seterr(SL_EINVAL, "demucs split: segment %zu, %d sources, %d channels, transition power %g", L,
                         n_src, ch, transition_power);
    j->L = L, j->cap = 2 * L, j->n_src = n_src, j->ch = ch, j->power = transition_power, j->mean = mean, j->std = std;
    j->acc = calloc((size_t)n_src * ch * j->cap, sizeof(double));
    j->wsum = calloc(j->cap, sizeof(double));
    return j->acc && j->wsum ? 0 : sl_seterr(SL_ENOMEM, "demucs split: out of memory");
}

/* apply_model's weight of position i of a segment of L samples. */
static double dmx_weight(size_t L, size_t i, double power)
{
    const size_t h = L / 2, mx = h > L - h ? h : L - h;
    return pow((i < h ? (double)(i + 1) : (double)(L - i)) / (double)mx, power);
}

size_t sl_dmx_joiner_push(sl_dmx_joiner *j, const float *const *const *y, const sl_dmx_pos *pos, size_t stride,
                          float *const *const *out)
{
    const size_t at = pos->offset - j->e0, S = (size_t)j->n_src, C = (size_t)j->ch, cap = j->cap;
    for (size_t i = 0; i < pos->len; i++) {
        const double w = dmx_weight(j->L, i, j->power);
        j->wsum[at + i] += w;
        for (size_t s = 0; s < S; s++)
            for (size_t c = 0; c < C; c++)
                j->acc[(s * C + c) * cap + at + i] += w * y[s][c][pos->lead + i];
    }
    const size_t m = pos->last ? at + pos->len : at + stride;
    for (size_t s = 0; s < S; s++)
        for (size_t c = 0; c < C; c++) {
            double *a = j->acc + (s * C + c) * cap;
            for (size_t i = 0; i < m; i++)
                out[s][c][i] = (float)(a[i] / j->wsum[i] * j->std + j->mean);
            memmove(a, a + m, (cap - m) * sizeof(double));
            memset(a + cap - m, 0, m * sizeof(double));
        }
    memmove(j->wsum, j->wsum + m, (cap - m) * sizeof(double));
    memset(j->wsum + cap - m, 0, m * sizeof(double));
    j->e0 += m;
    return m;
}

void sl_dmx_joiner_free(sl_dmx_joiner *j)
{
    free(j->acc);
    free(j->wsum);
    j->acc = j->wsum = NULL;
}
