/* Batches of segments from many tracks. The built-in models process each
 * segment on its own (so a track's output never depends on its batch mates);
 * a model with a batched graph plugs in here without the runner changing. */
#include <string.h>

#include "model_impl.h"

/* ---- pipelined batches (ops.h sl_op_pipe_*: on CUDA, graphs and copy / compute overlap) ---- */

typedef struct {
    sl_sep_model *sep;
    sl_emb_model *emb;
    const float *const *const *in;
    const size_t *lens;
    float *const *const *const *out;
    float *const *vecs;
    float *const *scores;
} batch_job;

static int forward(const batch_job *j, size_t b)
{
    if (j->sep)
        return j->sep->run(j->sep, j->in[b], j->lens[b], j->out[b]);
    if (j->scores)
        return j->emb->run_scores(j->emb, j->in[b], j->lens[b], j->vecs[b], j->scores[b]);
    return j->emb->run(j->emb, j->in[b], j->lens[b], j->vecs[b]);
}

/* The batch's forwards as one pipelined sequence on ctx, keyed by (model, length).
 * A forward whose graph capture failed runs again op by op (sl_op_pipe_item_end's 1).
 * An error that surfaces only at the end is reported against segment 0 (the runner
 * then runs the segments one by one to find the culprit). */
static int run_pipelined(sl_op_ctx *ctx, const void *model, const batch_job *j, size_t batch, size_t *failed,
                         int *deferred)
{
    int rc = sl_op_pipe_begin(ctx);
    *deferred = sl_op_pipe_deferred(ctx);
    size_t b = 0;
    for (; b < batch && !rc; b++) {
        const size_t shape[2] = {j->lens[b], j->scores != NULL}; /* (scores: more ops) */
        for (int attempt = 0; attempt < 2; attempt++) {
            rc = sl_op_pipe_item_begin(ctx, model, shape, 2);
            if (!rc)
                rc = sl_op_pipe_item_end(ctx, forward(j, b));
            if (rc != 1)
                break;
        }
    }
    const int end = sl_op_pipe_end(ctx);
    if (rc) {
        if (failed)
            *failed = b - 1;
        return rc;
    }
    if (end && failed)
        *failed = 0;
    return end;
}

int sl_sep_run_batch(sl_sep_model *m, size_t batch, const float *const *const *in, const size_t *lens,
                     float *const *const *const *out, size_t *failed)
{
    if (m->pipelined) {
        const batch_job j = {.sep = m, .in = in, .lens = lens, .out = out};
        int deferred;
        return run_pipelined(m->ctx, m, &j, batch, failed, &deferred);
    }
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
    if (m->pipelined) {
        const batch_job j = {.emb = m, .in = in, .lens = lens, .vecs = vecs};
        int deferred;
        return run_pipelined(m->ctx, m, &j, batch, failed, &deferred);
    }
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
    if (m->pipelined && m->run_scores && m->info.n_scores > 0) {
        const batch_job j = {.emb = m, .in = in, .lens = lens, .vecs = vecs, .scores = scores};
        /* scores come back raw while downloads are deferred: finished once they are in */
        int deferred;
        int rc = run_pipelined(m->ctx, m, &j, batch, failed, &deferred);
        for (size_t b = 0; b < batch && !rc && deferred && m->finish_scores; b++)
            m->finish_scores(m, scores[b]);
        return rc;
    }
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
