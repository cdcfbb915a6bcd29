/* The whole-track inference of the `demucs` command, streamed so that memory
 * does not grow with the track (demucs/separate.py + demucs.apply.apply_model
 * with split=True and shifts >= 0):
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
 * Shifts (apply_model's shifts = N > 0): the normalised track is padded with
 * max_shift = int(0.5 * samplerate) zeros on both sides and, for each of N
 * rounds r, steps 2-3 run on the track delayed by d_r = max_shift - o_r
 * samples (d_r zeros, then the track: n + d_r samples), and the first d_r
 * samples of the result are dropped; the N results are averaged. demucs draws
 * each o_r with random.randint(0, max_shift); here the offsets are fixed
 * (sl_dmx_geom.offsets, sl_dmx_default_offsets unless the job gives them), so
 * re-runs give the same bytes; every model of a bag uses the same offsets.
 *
 * Streamed: the segments of all rounds are cut from one pass over the track,
 * in the order of where they start in the track (offset - d_r; ties: round
 * order), so the cutter keeps 2L samples per channel whatever N is. The blend
 * of one round at track position t is the sum over its segments of
 * w[i] / wsum_r(t + d_r) * y[i]; wsum at a position p of a delayed track
 * depends on p only (the segments that cover it start at multiples of stride
 * in (p - L, p]), so it is tabulated once and the joiner sums the rounds'
 * contributions, divided by N, into one buffer of 2L samples per channel and
 * source. */
#ifndef SL_DEMUCS_SPLIT_H
#define SL_DEMUCS_SPLIT_H

#include <stddef.h>

#include "segment.h"

#define SL_DMX_MAX_SHIFTS 32

typedef struct {
    double n, mean, m2;
} sl_dmx_stats;

/* Adds frames of x[ch][0..frames) (planar) to the statistics of the mono sum. */
void sl_dmx_stats_add(sl_dmx_stats *s, const float *const *x, int ch, size_t frames);
/* Mean and unbiased std (0 for fewer than two samples). */
void sl_dmx_stats_get(const sl_dmx_stats *s, double *mean, double *std);

/* How a track is cut: segment length, overlap, shifts. */
typedef struct {
    size_t L;          /* segment samples (>= 2) */
    double overlap;    /* 0 <= overlap < 1 */
    int shifts;        /* 0: none; 1..SL_DMX_MAX_SHIFTS rounds */
    size_t max_shift;  /* int(0.5 * samplerate) */
    size_t offsets[SL_DMX_MAX_SHIFTS]; /* apply_model's offset of each round, 0..max_shift */
} sl_dmx_geom;

/* The documented default offsets of N shifts: the middles of N equal parts of
 * [0, max_shift], o_r = floor((2r + 1) * max_shift / (2N)), r = 0..N-1. */
void sl_dmx_default_offsets(int shifts, size_t max_shift, size_t *offsets);

/* Where a segment lies, as the cutter tells the joiner. */
typedef struct {
    long offset;    /* start of the kept samples in the track (negative: in the zeros before it) */
    size_t len;     /* len <= L kept samples */
    size_t lead;    /* (L - len) / 2: the samples of the model's output before the kept centre */
    size_t zoff;    /* the segment's offset in its round's delayed track */
    size_t emit_to; /* track samples before this are final once this segment is blended */
    int last;       /* no segment follows */
} sl_dmx_pos;

typedef struct {
    size_t L, stride, cap;
    int ch, rounds;
    double mean, std;
    long delay[SL_DMX_MAX_SHIFTS]; /* d_r (0 without shifts) */
    size_t next[SL_DMX_MAX_SHIFTS]; /* each round's next segment */
    float *buf;     /* [ch][cap]: normalised samples [b0, b1) of the track */
    size_t b0, b1;
    size_t k;       /* segments cut */
    int eof, done;
} sl_dmx_cutter;

/* g->L >= 2, 0 <= overlap < 1 (stride >= 1), 1 <= ch <= SL_SEG_MAX_CH, std > 0 (a silent track: pass 1),
 * 0 <= shifts <= SL_DMX_MAX_SHIFTS with offsets <= max_shift.
 * Returns 0, SL_EINVAL or SL_ENOMEM. Free with sl_dmx_cutter_free. */
int sl_dmx_cutter_init(sl_dmx_cutter *c, const sl_dmx_geom *g, int ch, double mean, double std);
/* Fills dst[ch][0..L) with the next padded, normalised segment and *pos; returns its valid length (> 0),
 * 0 when there is none, or a negative error from read. */
long sl_dmx_cutter_next(sl_dmx_cutter *c, sl_seg_read_fn read, void *arg, float *const *dst, sl_dmx_pos *pos);
void sl_dmx_cutter_free(sl_dmx_cutter *c);

typedef struct {
    size_t L, stride, cap;
    int n_src, ch, rounds;
    double mean, std;
    double *w;      /* [L]: the transition weights */
    double *wsum;   /* [L + stride]: a delayed track's weight sum at p (p >= L: periodic, stride) */
    double *acc;    /* [n_src][ch][cap]: a ring of the blended samples [e0, e0 + cap) of the track, t at t % cap */
    double *coef;   /* [L]: one segment's blending coefficients */
    size_t e0;      /* first sample not yet emitted */
} sl_dmx_joiner;

int sl_dmx_joiner_init(sl_dmx_joiner *j, const sl_dmx_geom *g, int n_src, int ch, double transition_power,
                       double mean, double std);
/* Adds the model's output y[src][ch][0..L) of segment pos (in the cutter's order) and writes the samples
 * that are now final to out[src][ch][0..returned) (caller-owned, at least L samples each), in track order
 * after everything returned before. */
size_t sl_dmx_joiner_push(sl_dmx_joiner *j, const float *const *const *y, const sl_dmx_pos *pos,
                          float *const *const *out);
void sl_dmx_joiner_free(sl_dmx_joiner *j);

#endif
