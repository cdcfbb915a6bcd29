/* A two-channel track in memory read as a decoder reads it (sl_seg_read_fn),
 * optionally in short blocks, for the segmenting tests. */
#ifndef SL_STREAM_SRC_H
#define SL_STREAM_SRC_H

#include <string.h>

typedef struct {
    const float *x[2];
    size_t n, pos, block; /* block > 0: at most that many frames per read */
} src;

static long rd(void *arg, float *const *dst, long max)
{
    src *s = arg;
    size_t n = s->n - s->pos;
    if ((size_t)max < n)
        n = (size_t)max;
    if (s->block && n > s->block)
        n = s->block;
    for (int c = 0; c < 2; c++)
        memcpy(dst[c], s->x[c] + s->pos, n * sizeof(float));
    s->pos += n;
    return (long)n;
}

#endif
