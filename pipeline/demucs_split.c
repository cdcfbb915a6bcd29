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

void sl_dmx_default_offsets(int shifts, size_t max_shift, size_t *offsets)
{
    for (int r = 0; r < shifts; r++)
        offsets[r] = (size_t)((2 * (unsigned long long)r + 1) * max_shift / (2 * (unsigned long long)shifts));
}

static int check_geom(const sl_dmx_geom *g, size_t *stride)
{
    *stride = (size_t)((1.0 - g->overlap) * (double)g->L);
    if (g->L < 2 || !(g->overlap >= 0 && g->overlap < 1) || *stride < 1 || g->shifts < 0 ||
        g->shifts > SL_DMX_MAX_SHIFTS)
        return sl_seterr(SL_EINVAL, "demucs split: segment %zu, overlap %g, %d shifts", g->L, g->overlap, g->shifts);
    for (int r = 0; r < g->shifts; r++)
        if (g->offsets[r] > g->max_shift)
            return sl_seterr(SL_EINVAL, "demucs split: shift offset %zu is above max_shift %zu", g->offsets[r],
                             g->max_shift);
    return 0;
}

int sl_dmx_cutter_init(sl_dmx_cutter *c, const sl_dmx_geom *g, int ch, double mean, double std)
{
    memset(c, 0, sizeof *c);
    size_t stride;
    int rc = check_geom(g, &stride);
    if (rc)
        return rc;
    if (ch < 1 || ch > SL_SEG_MAX_CH || !(std > 0))
        return sl_seterr(SL_EINVAL, "demucs split: %d channels, std %g", ch, std);
    c->L = g->L, c->stride = stride, c->cap = 2 * g->L, c->ch = ch, c->mean = mean, c->std = std;
    c->rounds = g->shifts ? g->shifts : 1;
    for (int r = 0; r < g->shifts; r++)
        c->delay[r] = (long)(g->max_shift - g->offsets[r]);
    c->buf = malloc(sizeof(float) * c->cap * (size_t)ch);
    return c->buf ? 0 : sl_seterr(SL_ENOMEM, "demucs split: out of memory");
}

/* The round whose next segment starts first in the track (ties: the lower round), and that start. */
static int next_round(const sl_dmx_cutter *c, long *start)
{
    int best = 0;
    long b = (long)(c->next[0] * c->stride) - c->delay[0];
    for (int r = 1; r < c->rounds; r++) {
        const long s = (long)(c->next[r] * c->stride) - c->delay[r];
        if (s < b)
            best = r, b = s;
    }
    *start = b;
    return best;
}

long sl_dmx_cutter_next(sl_dmx_cutter *c, sl_seg_read_fn read, void *arg, float *const *dst, sl_dmx_pos *pos)
{
    if (c->done)
        return 0;
    const size_t L = c->L;
    long s;
    const int r = next_round(c, &s);
    /* keep what a centred partial segment may reach back to: L/2 before s */
    const long keep = s - (long)(L / 2);
    if (keep > (long)c->b0) {
        const size_t drop = (size_t)keep - c->b0, have = c->b1 - (size_t)keep;
        for (int ch = 0; ch < c->ch; ch++)
            memmove(c->buf + (size_t)ch * c->cap, c->buf + (size_t)ch * c->cap + drop, have * sizeof(float));
        c->b0 = (size_t)keep;
    }
    while (!c->eof && (long)c->b1 < s + (long)L) {
        float *d[SL_SEG_MAX_CH];
        for (int ch = 0; ch < c->ch; ch++)
            d[ch] = c->buf + (size_t)ch * c->cap + (c->b1 - c->b0);
        long got = read(arg, d, s + (long)L - (long)c->b1);
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
    if (c->eof && s >= (long)c->b1) { /* a round's offsets are range(0, n + d_r, stride); later starts are later */
        c->done = 1;
        return 0;
    }
    /* without the end in sight b1 >= s + L: len is L */
    const size_t len = (size_t)((long)c->b1 - s) < L ? (size_t)((long)c->b1 - s) : L, lead = (L - len) / 2;
    const long start = s - (long)lead;
    for (int ch = 0; ch < c->ch; ch++)
        for (size_t j = 0; j < L; j++) {
            const long p = start + (long)j;
            dst[ch][j] = p >= (long)c->b0 && p < (long)c->b1 ? c->buf[(size_t)ch * c->cap + (size_t)p - c->b0] : 0.0f;
        }
    pos->offset = s, pos->len = len, pos->lead = lead, pos->zoff = c->next[r] * c->stride;
    c->next[r]++;
    long s2;
    next_round(c, &s2);
    /* without the end in sight b1 >= s + L >= s2: the samples before s2 are final either way */
    pos->last = c->eof && s2 >= (long)c->b1;
    pos->emit_to = pos->last ? c->b1 : s2 > 0 ? (size_t)s2 : 0;
    c->done = pos->last;
    c->k++;
    return (long)len;
}

void sl_dmx_cutter_free(sl_dmx_cutter *c)
{
    free(c->buf);
    c->buf = NULL;
}

int sl_dmx_joiner_init(sl_dmx_joiner *j, const sl_dmx_geom *g, int n_src, int ch, double transition_power,
                       double mean, double std)
{
    memset(j, 0, sizeof *j);
    size_t stride;
    int rc = check_geom(g, &stride);
    if (rc)
        return rc;
    if (n_src < 1 || ch < 1 || !(transition_power >= 1))
        return sl_seterr(SL_EINVAL, "demucs split: %d sources, %d channels, transition power %g", n_src, ch,
                         transition_power);
    const size_t L = g->L;
    j->L = L, j->stride = stride, j->cap = 2 * L, j->n_src = n_src, j->ch = ch, j->mean = mean, j->std = std;
    j->rounds = g->shifts ? g->shifts : 1;
    j->acc = calloc((size_t)n_src * ch * j->cap, sizeof(double));
    j->w = malloc(L * sizeof(double));
    j->wsum = calloc(L + stride, sizeof(double));
    j->coef = malloc(L * sizeof(double));
    if (!j->acc || !j->w || !j->wsum || !j->coef)
        return sl_seterr(SL_ENOMEM, "demucs split: out of memory");
    /* apply_model's weights: 1, 2, ..., L/2, L - L/2, ..., 1 over their maximum, to the power */
    const size_t h = L / 2, mx = h > L - h ? h : L - h;
    for (size_t i = 0; i < L; i++)
        j->w[i] = pow((i < h ? (double)(i + 1) : (double)(L - i)) / (double)mx, transition_power);
    for (size_t o = 0; o < L + stride; o += stride)
        for (size_t i = 0; i < L && o + i < L + stride; i++)
            j->wsum[o + i] += j->w[i];
    return 0;
}

size_t sl_dmx_joiner_push(sl_dmx_joiner *j, const float *const *const *y, const sl_dmx_pos *pos,
                          float *const *const *out)
{
    const size_t S = (size_t)j->n_src, C = (size_t)j->ch, cap = j->cap, L = j->L;
    /* acc is a ring: track sample t at t % cap (the samples in flight span less than cap) */
    const size_t i0 = pos->offset < (long)j->e0 ? (size_t)((long)j->e0 - pos->offset) : 0;
    for (size_t i = i0; i < pos->len; i++) {
        const size_t p = pos->zoff + i;
        j->coef[i] = j->w[i] / j->wsum[p < L + j->stride ? p : L + (p - L) % j->stride] / j->rounds;
    }
    if (i0 < pos->len) {
        const size_t r0 = (size_t)(pos->offset + (long)i0) % cap, n = pos->len - i0;
        const size_t n1 = cap - r0 < n ? cap - r0 : n; /* up to the end of the ring, then from its start */
        for (size_t s = 0; s < S; s++)
            for (size_t c = 0; c < C; c++) {
                double *a = j->acc + (s * C + c) * cap;
                const float *ys = y[s][c] + pos->lead + i0;
                const double *k = j->coef + i0;
                for (size_t i = 0; i < n1; i++)
                    a[r0 + i] += k[i] * ys[i];
                for (size_t i = n1; i < n; i++)
                    a[i - n1] += k[i] * ys[i];
            }
    }
    const size_t m = pos->emit_to > j->e0 ? pos->emit_to - j->e0 : 0, r0 = j->e0 % cap;
    const size_t m1 = cap - r0 < m ? cap - r0 : m;
    for (size_t s = 0; s < S; s++)
        for (size_t c = 0; c < C; c++) {
            double *a = j->acc + (s * C + c) * cap;
            float *o = out[s][c];
            for (size_t i = 0; i < m1; i++)
                o[i] = (float)(a[r0 + i] * j->std + j->mean);
            for (size_t i = m1; i < m; i++)
                o[i] = (float)(a[i - m1] * j->std + j->mean);
            memset(a + r0, 0, m1 * sizeof(double));
            memset(a, 0, (m - m1) * sizeof(double));
        }
    j->e0 += m;
    return m;
}

void sl_dmx_joiner_free(sl_dmx_joiner *j)
{
    free(j->acc);
    free(j->w);
    free(j->wsum);
    free(j->coef);
    j->acc = j->w = j->wsum = j->coef = NULL;
}
