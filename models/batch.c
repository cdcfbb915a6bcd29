/* Batches of segments from many tracks. The built-in models process each
 * segment on its own (so a track's output never depends on its batch mates);
 * a model with a batched graph plugs in here without the runner changing. */
#include <string.h>

#include "model.h"

int sl_sep_run_batch(sl_sep_model *m, size_t batch, const float *const *const *in, const size_t *lens,
                     float *const *const *const *out, size_t *failed)
{
    for (size_t b = 0; b < batch; b++) {
        int rc = sl_sep_run(m, in[b], lens[b], out[b]);
        if (rc) {
            if (failed)
                *failed = b;
            return rc;
        }
    }
    return 0;
}

int sl_emb_run_batch(sl_emb_model *m, size_t batch, const float *const *const *in, const size_t *lens,
                     float *const *vecs, size_t *failed)
{
    for (size_t b = 0; b < batch; b++) {
        int rc = sl_emb_run(m, in[b], lens[b], vecs[b]);
        if (rc) {
            if (failed)
                *failed = b;
            return rc;
        }
    }
    return 0;
}

int sl_emb_run_batch_scores(sl_emb_model *m, size_t batch, const float *const *const *in, const size_t *lens,
                            float *const *vecs, float *const *scores, size_t *failed)
{
    for (size_t b = 0; b < batch; b++) {
        int rc = sl_emb_run_scores(m, in[b], lens[b], vecs[b], scores[b]);
        if (rc) {
            if (failed)
                *failed = b;
            return rc;
        }
    }
    return 0;
}

/* hpss needs only its median-filter context (kernel_harmonic/2 frames, well
 * under a second) on each side of a join; 30 s segments with a 1 s linear
 * cross-fade keep joins inaudible (tests/cli/test_runner.sh measures them). */
void sl_sep_default_segment(const sl_sep_info *info, double *segment_s, double *overlap_s)
{
    (void)info;
    *segment_s = 30.0;
    *overlap_s = 1.0;
    /* umx: the BiLSTM sees the whole segment, so each segment is a separate
     * context; 30 s (the length openunmix trains on is 6 s, its Wiener windows
     * are 300 frames = 7 s) with a 1 s cross-fade keep the joins rare and
     * smooth and bound the memory (~0.7 GB peak per 30 s segment at umxhq size, CPU).
     * README.md states how much the joins differ from whole-track output. */
    if (info && info->name && !strcmp(info->name, "umx")) {
        *segment_s = 30.0;
        *overlap_s = 1.0;
    }
    /* models that state their own segmenting (the RoFormers, which the runner
     * cuts as their reference inference does: pipeline/demix.h) */
    if (info && info->segment_s > 0) {
        *segment_s = info->segment_s;
        *overlap_s = info->overlap_s;
    }
}

/* melstats: 10 s windows, the scale of a musical phrase. cnn14: 10 s, the
 * length of the AudioSet clips it was trained on. */
double sl_emb_default_window(const sl_emb_info *info)
{
    (void)info;
    return 10.0;
}
