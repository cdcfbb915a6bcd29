/* The whole-track inference of the `demucs` command, streamed so that memory
 * does not grow with the track (demucs/separate.py + demucs.apply.apply_model
 * with split=True, shifts=0):
 *
 *   1. statistics: mean and standard deviation (unbiased, as torch's std) of
 *      the track's mono sum (the mean of its channels) over the whole track.
 *      They are needed before the first segment, so they come from a first
 *      pass over the decoded audio (sl_dmx_stats_*: O(1) memory, Welford's
 *      update in double); the segments then come from a second decode.
 *   2. segments: the track normalised, (x - mean) / std, cut at offsets
 *      k * stride, stride = int((1 - overlap) * L), for every offset < n; a
 *      segment of len = min(L, n - offset) samples is padded to L around its
 *      centre with the track's own samples before it and zeros past the end
 *      (TensorChunk.padded), the model runs on all L samples and its output's
 *      centre len samples are kept (center_trim).
 *   3. blend: out[offset + i] += w[i] * y[i], wsum[offset + i] += w[i] with the
 *      triangular weights w (1, 2, ..., L/2, L - L/2, ..., 1, divided by their
 *      maximum, to the power transition_power); the result out / wsum, the
 *      normalisation undone (* std + mean).
 *
 * The cutter holds 2L samples per channel, the joiner 2L per channel and
 * source: bounded by the segment, never by the track. */
#ifndef SL_DEMUCS_SPLIT_H
#define SL_DEMUCS_SPLIT_H

#include <stddef.h>

#include "segment.h"

typedef struct {
    double n, mean, m2;
} sl_dmx_stats;

/* Adds frames of x[ch][0..frames) (planar) to the statistics of the mono sum. */
void sl_dmx_stats_add(sl_dmx_stats *s, const float *const *x, int ch, size_t frames);
/* Mean and unbiased std (0 for fewer than two samples). */
void sl_dmx_stats_get(const sl_dmx_stats *s, double *mean, double *std);

/* Where a segment lies, as the cutter tells the joiner. */
typedef struct {
    size_t offset, len; /* len <= L valid samples at offset */
    size_t lead;        /* (L - len) / 2: the samples of the model's output before the kept centre */
    int last;           /* no segment follows */
} sl_dmx_pos;

typedef struct {
    size_t L, stride, cap;
    int ch;
    double mean, std;
    float *buf;     /* [ch][cap]: normalised samples [b0, b1) of the track */
    size_t b0, b1;
    size_t k;       /* next segment */
    int eof, done;
} sl_dmx_cutter;

/* L >= 2, 0 <= overlap < 1 (stride >= 1), 1 <= ch <= SL_SEG_MAX_CH, std > 0 (a silent track: pass 1).
 * Returns 0, SL_EINVAL or SL_ENOMEM. Free with sl_dmx_cutter_free. */
int sl_dmx_cutter_init(sl_dmx_cutter *c, size_t L, double overlap, int ch, double mean, double std);
/* Fills dst[ch][0..L) with the next padded, normalised segment and *pos; returns its valid length (> 0),
 * 0 when there is none, or a negative error from read. */
long sl_dmx_cutter_next(sl_dmx_cutter *c, sl_seg_read_fn read, void *arg, float *const *dst, sl_dmx_pos *pos);
void sl_dmx_cutter_free(sl_dmx_cutter *c);

typedef struct {
    size_t L, cap;
    int n_src, ch;
    double power, mean, std;
    double *acc;    /* [n_src][ch][cap]: weighted sums of samples [e0, e0 + cap) */
    double *wsum;   /* [cap] */
    size_t e0;      /* first sample not yet emitted */
} sl_dmx_joiner;

int sl_dmx_joiner_init(sl_dmx_joiner *j, size_t L, int n_src, int ch, double transition_power, double mean,
                       double std);
/* Adds the model's output y[src][ch][0..L) of segment pos (in order) and writes the samples that are
 * now final to out[src][ch][0..returned) (caller-owned, at least stride, or L at the last segment,
 * samples each), in track order after everything returned before. */
size_t sl_dmx_joiner_push(sl_dmx_joiner *j, const float *const *const *y, const sl_dmx_pos *pos, size_t stride,
                          float *const *const *out);
void sl_dmx_joiner_free(sl_dmx_joiner *j);

#endif
