#include "demix.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"

static int check_geometry(size_t chunk, int num_overlap)
{
    if (chunk < 10 || num_overlap < 1 || (size_t)num_overlap > chunk)
        return sl_seterr(SL_EINVAL, "demix: chunk_size %zu / num_overlap %d: chunk_size must be at least 10 and "
                                    "num_overlap 1..chunk_size", chunk, num_overlap);
    return 0;
}

int sl_demix_cutter_init(sl_demix_cutter *d, size_t chunk, int num_overlap, int ch)
{
    memset(d, 0, sizeof *d);
    int rc = check_geometry(chunk, num_overlap);
    if (rc)
        return rc;
    if (ch < 1 || ch > SL_SEG_MAX_CH)
        return sl_seterr(SL_EINVAL, "demix: %d channels", ch);
    d->L = chunk;
    d->H = chunk / (size_t)num_overlap;
    d->B = d->L - d->H;
    d->ch = ch;
    if (d->B) {
        d->head = malloc((2 * d->B + 1) * (size_t)ch * sizeof(float));
        d->ring = malloc((d->B + 1) * (size_t)ch * sizeof(float));
        d->carry = malloc(d->B * (size_t)ch * sizeof(float));
        if (!d->head || !d->ring || !d->carry) {
            sl_demix_cutter_free(d);
            return SL_ENOMEM;
        }
    }
    return 0;
}

void sl_demix_cutter_free(sl_demix_cutter *d)
{
    free(d->head);
    free(d->ring);
    free(d->carry);
    d->head = d->ring = d->carry = NULL;
}

/* Reads up to max samples of the track into dst[c] + off, remembering the
 * last B + 1 in the ring. Returns the count (0: the track has ended). */
static long track_read(sl_demix_cutter *d, sl_seg_read_fn read, void *arg, float *const *dst, size_t off, size_t max)
{
    if (d->eof || max == 0)
        return 0;
    float *p[SL_SEG_MAX_CH];
    for (int c = 0; c < d->ch; c++)
        p[c] = dst[c] + off;
    long r = read(arg, p, (long)max);
    if (r < 0)
        return r;
    if (r == 0) {
        d->eof = 1;
        return 0;
    }
    d->total += (size_t)r;
    const size_t R = d->B + 1;
    for (size_t i = d->B ? 0 : (size_t)r; i < (size_t)r; i++) {
        for (int c = 0; c < d->ch; c++)
            d->ring[(size_t)c * R + d->ring_at] = p[c][i];
        d->ring_at = (d->ring_at + 1) % R;
    }
    return r;
}

/* Reads up to max samples of the padded track P into dst[c] + off; fewer only at P's end. */
static long padded_read(sl_demix_cutter *d, sl_seg_read_fn read, void *arg, float *const *dst, size_t off,
                        size_t max)
{
    const size_t B = d->B, R = B + 1, HB = 2 * B + 1;
    size_t got = 0;
    if (d->have_peek && max) {
        for (int c = 0; c < d->ch; c++)
            dst[c][off] = d->peek[c];
        d->have_peek = 0;
        got = 1;
    }
    while (got < max) {
        if (d->front_left) { /* P[j] = x[B - j] */
            for (int c = 0; c < d->ch; c++)
                dst[c][off + got] = d->head[(size_t)c * HB + d->front_left];
            d->front_left--;
            got++;
        } else if (d->head_used < d->head_n) {
            size_t n = d->head_n - d->head_used;
            n = n < max - got ? n : max - got;
            for (int c = 0; c < d->ch; c++)
                memcpy(dst[c] + off + got, d->head + (size_t)c * HB + d->head_used, n * sizeof(float));
            d->head_used += n;
            got += n;
        } else if (!d->eof) {
            long r = track_read(d, read, arg, dst, off + got, max - got);
            if (r < 0)
                return r;
            got += (size_t)r;
        } else if (d->padded && d->back_done < B) { /* P[B + n + j] = x[n - 2 - j] */
            const size_t j = d->back_done++;
            for (int c = 0; c < d->ch; c++)
                dst[c][off + got] = d->ring[(size_t)c * R + (d->ring_at + 2 * R - 2 - j) % R];
            got++;
        } else {
            break;
        }
    }
    return (long)got;
}

long sl_demix_cutter_next(sl_demix_cutter *d, sl_seg_read_fn read, void *arg, float *const *dst, sl_demix_pos *pos)
{
    const size_t L = d->L, H = d->H, B = d->B;
    if (d->done)
        return 0;
    if (!d->started) {
        d->started = 1;
        if (B) { /* read ahead 2B + 1 samples: is n > 2B, and x[1..B] for the front padding */
            const size_t HB = 2 * B + 1;
            float *hp[SL_SEG_MAX_CH];
            for (int c = 0; c < d->ch; c++)
                hp[c] = d->head + (size_t)c * HB;
            while (d->head_n < HB) {
                long r = track_read(d, read, arg, hp, d->head_n, HB - d->head_n);
                if (r < 0)
                    return r;
                if (r == 0)
                    break;
                d->head_n += (size_t)r;
            }
            d->padded = d->head_n == HB;
            d->front_left = d->padded ? B : 0;
        }
    }
    size_t have = 0;
    if (d->k > 0) {
        for (int c = 0; c < d->ch && d->carry_n; c++)
            memcpy(dst[c], d->carry + (size_t)c * B, d->carry_n * sizeof(float));
        have = d->carry_n;
    }
    long r = padded_read(d, read, arg, dst, have, L - have);
    if (r < 0)
        return r;
    const size_t cl = have + (size_t)r;
    if (cl == 0) {
        d->done = 1;
        return 0;
    }
    /* the previous chunk's successor starts H later */
    d->carry_n = cl > H ? cl - H : 0;
    for (int c = 0; c < d->ch && d->carry_n; c++)
        memcpy(d->carry + (size_t)c * B, dst[c] + H, d->carry_n * sizeof(float));
    int last;
    if (cl < L) {
        /* P ended inside this chunk: complete it from its own samples (reflect) or zeros */
        for (int c = 0; c < d->ch; c++) {
            if (cl > L / 2)
                for (size_t j = 0; j < L - cl; j++)
                    dst[c][cl + j] = dst[c][cl - 2 - j];
            else
                memset(dst[c] + cl, 0, (L - cl) * sizeof(float));
        }
        last = cl <= H;
    } else if (H < L) {
        last = 0; /* the next chunk starts before this one's end */
    } else { /* no overlap: the last chunk is the one P ends with */
        float *pk[SL_SEG_MAX_CH];
        for (int c = 0; c < d->ch; c++)
            pk[c] = &d->peek[c];
        long p = padded_read(d, read, arg, pk, 0, 1);
        if (p < 0)
            return p;
        d->have_peek = p == 1;
        last = p == 0;
    }
    pos->start = d->k * H;
    pos->len = cl;
    pos->front = d->padded ? B : 0;
    pos->end = d->eof ? pos->front + d->total : SIZE_MAX;
    pos->first = d->k == 0;
    pos->last = last;
    d->k++;
    if (last)
        d->done = 1;
    return (long)cl;
}

/* torch.linspace(a, b, steps) in float32: from a for the first half, from b for the second */
static float linspace_f(float a, float b, size_t steps, size_t i)
{
    if (steps == 1)
        return a;
    const float step = (b - a) / (float)(steps - 1);
    return i < steps / 2 ? a + step * (float)i : b - step * (float)(steps - 1 - i);
}

float sl_demix_window(size_t L, size_t fade, size_t i, int first, int last)
{
    if (i < fade)
        return first ? 1.0f : linspace_f(0.0f, 1.0f, fade, i);
    if (i >= L - fade)
        return last && !first ? 1.0f : linspace_f(1.0f, 0.0f, fade, i - (L - fade));
    return 1.0f;
}

int sl_demix_joiner_init(sl_demix_joiner *j, size_t chunk, int num_overlap, int n_src, int ch)
{
    memset(j, 0, sizeof *j);
    int rc = check_geometry(chunk, num_overlap);
    if (rc)
        return rc;
    if (n_src < 1 || ch < 1)
        return sl_seterr(SL_EINVAL, "demix: %d sources, %d channels", n_src, ch);
    j->L = chunk;
    j->H = chunk / (size_t)num_overlap;
    j->fade = chunk / 10;
    j->n_src = n_src;
    j->ch = ch;
    j->acc = calloc(chunk * (size_t)n_src * (size_t)ch, sizeof(float));
    j->wsum = calloc(chunk, sizeof(float));
    if (!j->acc || !j->wsum) {
        sl_demix_joiner_free(j);
        return SL_ENOMEM;
    }
    return 0;
}

size_t sl_demix_joiner_push(sl_demix_joiner *j, float *const *const *y, const sl_demix_pos *pos)
{
    const size_t L = j->L, H = j->H, cl = pos->len < L ? pos->len : L;
    const size_t planes = (size_t)j->n_src * (size_t)j->ch;
    for (size_t i = 0; i < cl; i++) {
        const float w = sl_demix_window(L, j->fade, i, pos->first, pos->last);
        j->wsum[i] += w;
        for (int s = 0; s < j->n_src; s++)
            for (int c = 0; c < j->ch; c++)
                j->acc[((size_t)s * j->ch + (size_t)c) * L + i] += y[s][c][i] * w;
    }
    /* final: what no later chunk covers */
    const size_t fin = pos->last ? cl : (H < cl ? H : cl);
    size_t e = 0;
    for (size_t i = 0; i < fin; i++) {
        const size_t p = pos->start + i;
        if (p < pos->front || p >= pos->end)
            continue;
        const float W = j->wsum[i];
        for (int s = 0; s < j->n_src; s++)
            for (int c = 0; c < j->ch; c++)
                y[s][c][e] = W != 0.0f ? j->acc[((size_t)s * j->ch + (size_t)c) * L + i] / W : 0.0f;
        e++;
    }
    if (pos->last) {
        memset(j->acc, 0, L * planes * sizeof(float));
        memset(j->wsum, 0, L * sizeof(float));
    } else {
        for (size_t q = 0; q < planes; q++) {
            float *a = j->acc + q * L;
            memmove(a, a + H, (L - H) * sizeof(float));
            memset(a + L - H, 0, H * sizeof(float));
        }
        memmove(j->wsum, j->wsum + H, (L - H) * sizeof(float));
        memset(j->wsum + L - H, 0, H * sizeof(float));
    }
    return e;
}

void sl_demix_joiner_free(sl_demix_joiner *j)
{
    free(j->acc);
    free(j->wsum);
    j->acc = j->wsum = NULL;
}
