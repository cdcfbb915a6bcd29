/* Chunked inference as ZFTurbo's Music-Source-Separation-Training runs its
 * models (utils/model_utils.py `demix`, generic mode, one chunk per model
 * call), streamed so that memory does not grow with the track:
 *
 *   chunk L = chunk_size, step H = L / num_overlap, border B = L - H,
 *   fade = L / 10 (integer divisions).
 *   P = the track x (n samples) reflect-padded by B on both sides when
 *   n > 2B and B > 0 (P[j] = x[B - j] in front, P[B + n + j] = x[n - 2 - j]
 *   behind), else P = x.
 *   Chunk k covers P[kH, kH + L), for every kH < len(P); a chunk of cl < L
 *   samples is completed to L by reflecting its own samples when cl > L/2,
 *   else by zeros; the model runs on all L samples.
 *   Its output's first cl samples are weighted by the window w (a linear
 *   fade-in 0..1 over the first `fade` samples, ones, a fade-out 1..0 over the
 *   last `fade`: torch.linspace values) and added at kH; the first chunk has
 *   no fade-in, the last one (the chunk after which (k+1)H >= len(P)) no
 *   fade-out unless it is also the first. The result is the weighted sum
 *   divided by the summed weights (0 where they sum to 0), cropped to
 *   P[B, B + n) when padded.
 *
 * Streaming: the front padding needs x[1..B]: the cutter reads the first
 * 2B + 1 samples ahead before the first chunk (which also decides whether
 * n > 2B). The back padding needs the last B + 1 samples: the cutter keeps
 * them in a ring as it reads. The joiner keeps the weighted sums of one chunk
 * (L samples) and emits each sample once no later chunk covers it. Memory:
 * the cutter about 4L samples per channel, the joiner L per channel and
 * source, whatever the track's length. */
#ifndef SL_DEMIX_H
#define SL_DEMIX_H

#include <stddef.h>

#include "segment.h"

/* Where a chunk lies, as the cutter tells the joiner. */
typedef struct {
    size_t start;   /* kH, in padded coordinates */
    size_t len;     /* valid samples cl (<= L) */
    size_t front;   /* front padding B or 0 */
    size_t end;     /* front + n when the track's end is known, else SIZE_MAX */
    int first, last;
} sl_demix_pos;

typedef struct {
    size_t L, H, B;
    int ch;
    float *head;     /* [ch][2B + 1]: the first samples, read ahead */
    size_t head_n, head_used;
    float *ring;     /* [ch][B + 1]: the last samples read */
    size_t ring_n, ring_at;
    float *carry;    /* [ch][B]: P[(k+1)H, kH + cl) of the previous chunk */
    size_t carry_n;
    int started, padded, eof; /* eof: the reader is exhausted (total is final) */
    size_t front_left, back_done;
    int have_peek;
    float peek[SL_SEG_MAX_CH];
    size_t k;
    size_t total;    /* samples of the track read */
    int done;
} sl_demix_cutter;

/* chunk L >= 10 (fade = L/10 must be at least 1), 1 <= num_overlap <= L.
 * Returns 0, SL_EINVAL or SL_ENOMEM. Free with sl_demix_cutter_free. */
int sl_demix_cutter_init(sl_demix_cutter *d, size_t chunk, int num_overlap, int ch);
/* Fills dst[ch][0..L) with the next chunk (padded as above) and *pos; returns
 * its valid length (> 0), 0 when there is none, or a negative error from read. */
long sl_demix_cutter_next(sl_demix_cutter *d, sl_seg_read_fn read, void *arg, float *const *dst, sl_demix_pos *pos);
void sl_demix_cutter_free(sl_demix_cutter *d);

typedef struct {
    size_t L, H, fade;
    int n_src, ch;
    float *acc;  /* [n_src][ch][L]: weighted sums from the current chunk's start */
    float *wsum; /* [L] */
} sl_demix_joiner;

int sl_demix_joiner_init(sl_demix_joiner *j, size_t chunk, int num_overlap, int n_src, int ch);
/* Adds chunk pos (in order) with its outputs y[src][ch][0..L); rewrites y in
 * place: its first returned-count samples are final output, in track order
 * after everything returned before. After the last chunk nothing remains. */
size_t sl_demix_joiner_push(sl_demix_joiner *j, float *const *const *y, const sl_demix_pos *pos);
void sl_demix_joiner_free(sl_demix_joiner *j);

/* The window weight of sample i (0 <= i < L) of a chunk. */
float sl_demix_window(size_t L, size_t fade, size_t i, int first, int last);

#endif
