#include "segment.h"

#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"

int sl_segmenter_init(sl_segmenter *s, size_t L, size_t H, int ch)
{
    memset(s, 0, sizeof *s);
    if (L == 0 || H == 0 || H > L || ch < 1 || ch > SL_SEG_MAX_CH)
        return sl_seterr(SL_EINVAL, "segments: invalid length %zu / hop %zu / channels %d", L, H, ch);
    s->L = L;
    s->H = H;
    s->O = L - H;
    s->ch = ch;
    if (s->O && !(s->carry = malloc(s->O * (size_t)ch * sizeof(float))))
        return SL_ENOMEM;
    return 0;
}

/* Reads exactly n frames unless the stream ends first. */
static long read_full(sl_seg_read_fn read, void *arg, float *const *dst, int ch, size_t n)
{
    size_t got = 0;
    float *p[SL_SEG_MAX_CH];
    while (got < n) {
        for (int c = 0; c < ch; c++)
            p[c] = dst[c] + got;
        long r = read(arg, p, (long)(n - got));
        if (r < 0)
            return r;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (long)got;
}

long sl_segmenter_next(sl_segmenter *s, sl_seg_read_fn read, void *arg, float *const *dst)
{
    if (s->done)
        return 0;
    size_t have = 0;
    float *p[SL_SEG_MAX_CH];
    if (s->k > 0) {
        if (!s->last_full) {
            s->done = 1;
            return 0;
        }
        for (int c = 0; c < s->ch && s->O; c++)
            memcpy(dst[c], s->carry + (size_t)c * s->O, s->O * sizeof(float));
        have = s->O;
    }
    for (int c = 0; c < s->ch; c++)
        p[c] = dst[c] + have;
    long r = read_full(read, arg, p, s->ch, s->L - have);
    if (r < 0)
        return r;
    if (r == 0 && s->k > 0) {
        /* the previous segment ended exactly at the end of the stream */
        s->done = 1;
        return 0;
    }
    size_t len = have + (size_t)r;
    s->total += (size_t)r;
    for (int c = 0; c < s->ch; c++)
        memset(dst[c] + len, 0, (s->L - len) * sizeof(float));
    s->last_full = len == s->L;
    if (s->last_full && s->O)
        for (int c = 0; c < s->ch; c++)
            memcpy(s->carry + (size_t)c * s->O, dst[c] + s->H, s->O * sizeof(float));
    s->k++;
    if (!s->last_full)
        s->done = 1;
    return (long)len;
}

void sl_segmenter_free(sl_segmenter *s)
{
    free(s->carry);
    s->carry = NULL;
}

int sl_stitcher_init(sl_stitcher *st, size_t L, size_t H, int n_src, int ch)
{
    memset(st, 0, sizeof *st);
    if (L == 0 || H == 0 || H > L || 2 * (L - H) > L || n_src < 1 || ch < 1)
        return sl_seterr(SL_EINVAL, "segments: overlap must be at most half the segment (length %zu, hop %zu)",
                         L, H);
    st->L = L;
    st->H = H;
    st->O = L - H;
    st->n_src = n_src;
    st->ch = ch;
    if (st->O) {
        st->acc = malloc(st->O * (size_t)ch * (size_t)n_src * sizeof(float));
        st->wsum = malloc(st->O * sizeof(float));
        if (!st->acc || !st->wsum) {
            sl_stitcher_free(st);
            return SL_ENOMEM;
        }
    }
    return 0;
}

static float xfade(const sl_stitcher *st, size_t j)
{
    float d = (float)(st->O + 1);
    float a = (float)(j + 1) / d, b = (float)(st->L - j) / d;
    float w = a < b ? a : b;
    return w < 1.0f ? w : 1.0f;
}

size_t sl_stitcher_push(sl_stitcher *st, float *const *const *y, size_t len)
{
    size_t O = st->O, H = st->H;
    if (len > st->L)
        len = st->L;
    /* head: blend with the previous segment's tail */
    size_t nb = st->k > 0 ? (len < st->tail_len ? len : st->tail_len) : 0;
    for (size_t j = 0; j < nb; j++) {
        float w = xfade(st, j), inv = 1.0f / (st->wsum[j] + w);
        for (int s = 0; s < st->n_src; s++)
            for (int c = 0; c < st->ch; c++) {
                float *a = st->acc + ((size_t)s * st->ch + (size_t)c) * O;
                y[s][c][j] = (a[j] + w * y[s][c][j]) * inv;
            }
    }
    /* tail: kept weighted until the next segment (or the flush) */
    size_t emit = len < H ? len : H;
    st->tail_len = len > H ? len - H : 0;
    for (size_t j = 0; j < st->tail_len; j++) {
        float w = xfade(st, H + j);
        st->wsum[j] = w;
        for (int s = 0; s < st->n_src; s++)
            for (int c = 0; c < st->ch; c++)
                st->acc[((size_t)s * st->ch + (size_t)c) * O + j] = w * y[s][c][H + j];
    }
    st->k++;
    return emit;
}

size_t sl_stitcher_flush(sl_stitcher *st, float *const *const *out)
{
    size_t n = st->tail_len;
    for (size_t j = 0; j < n; j++)
        for (int s = 0; s < st->n_src; s++)
            for (int c = 0; c < st->ch; c++)
                out[s][c][j] = st->acc[((size_t)s * st->ch + (size_t)c) * st->O + j] / st->wsum[j];
    st->tail_len = 0;
    return n;
}

void sl_stitcher_free(sl_stitcher *st)
{
    free(st->acc);
    free(st->wsum);
    st->acc = st->wsum = NULL;
}
