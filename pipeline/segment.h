/* Cutting a stream into fixed-length overlapping segments, and stitching the
 * per-segment results back into one stream.
 *
 * Segment k covers samples [k*H, k*H + L) of the track (L = length, H = hop,
 * O = L - H = overlap, O <= L/2); a segment exists while the previous one was
 * full and samples remain. Results are joined by overlap-add with linear
 * cross-fades that sum to one (w(j) = min(1, (j+1)/(O+1), (L-j)/(O+1))), so an
 * identity model gives back the input exactly (up to float rounding) and a
 * track's output depends only on the track, never on what shared its batch. */
#ifndef SL_SEGMENT_H
#define SL_SEGMENT_H

#include <stddef.h>

#define SL_SEG_MAX_CH 8

/* Reads up to max frames into dst[ch]; returns frames read (> 0), 0 at the end,
 * or a negative error. */
typedef long (*sl_seg_read_fn)(void *arg, float *const *dst, long max);

typedef struct {
    size_t L, H, O;
    int ch;
    float *carry;   /* [ch][O]: the last O samples of the previous full segment */
    size_t k;       /* segments produced */
    size_t total;   /* samples read */
    int last_full;  /* the previous segment was full (another may follow) */
    int done;
} sl_segmenter;

/* L >= 1, 0 < H <= L, L - H <= L/2 ... for separation; embedding windows only need
 * 0 < H <= L. Returns 0, SL_EINVAL or SL_ENOMEM. Free with sl_segmenter_free. */
int sl_segmenter_init(sl_segmenter *s, size_t L, size_t H, int ch);
/* Fills dst[ch][0..L) with the next segment (samples past its valid length are
 * zeroed) and returns its valid length; 0 when there is no further segment;
 * a negative error from read. */
long sl_segmenter_next(sl_segmenter *s, sl_seg_read_fn read, void *arg, float *const *dst);
void sl_segmenter_free(sl_segmenter *s);

typedef struct {
    size_t L, H, O;
    int n_src, ch;
    float *acc;      /* [n_src][ch][O] weighted tail of the previous segment */
    float *wsum;     /* [O] */
    size_t tail_len; /* valid samples in acc */
    size_t k;        /* segments pushed */
} sl_stitcher;

/* Returns 0, SL_EINVAL or SL_ENOMEM. Free with sl_stitcher_free. */
int sl_stitcher_init(sl_stitcher *st, size_t L, size_t H, int n_src, int ch);
/* Pushes the next segment's results y[src][ch][0..len) (in segment order).
 * y is rewritten in place: its first returned-count samples are final output,
 * in track order after everything returned before. */
size_t sl_stitcher_push(sl_stitcher *st, float *const *const *y, size_t len);
/* After the last segment: writes the remaining final samples to out[src][ch]
 * (capacity O) and returns their count. */
size_t sl_stitcher_flush(sl_stitcher *st, float *const *const *out);
void sl_stitcher_free(sl_stitcher *st);

#endif
