/* Model interface seen by the pipeline. Models are graphs of ops from
 * kernels/ops.h; they never call FFT or BLAS directly. */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include <stddef.h>

#include "../kernels/ops.h"
#include "../common/sl_opts.h"

#define SL_MAX_SOURCES 8
#define SL_SEP_MAX_SHIFTS 32

typedef struct {
    const char *name;      /* "hpss" */
    int sample_rate;       /* rate the model runs at */
    int channels;          /* channels it expects (the decoder converts) */
    int n_sources;
    const char *sources[SL_MAX_SOURCES]; /* stem names, e.g. "harmonic" */
    char params[256];      /* human-readable resolved hyper-parameters, for logs and reports */
    double segment_s, overlap_s; /* the model's own segmenting (seconds), 0: sl_sep_default_segment's */
    /* > 0: the runner cuts and joins tracks as the reference chunked inference
     * does (pipeline/demix.h): chunks of demix_chunk samples, step
     * demix_chunk / demix_overlap, the model run on whole chunks */
    size_t demix_chunk;
    int demix_overlap;
    /* > 0: the runner runs the demucs command's whole-track inference
     * (pipeline/demucs_split.h): segments of split_segment samples with this
     * overlap, the track's mono mean / std from a first decode pass */
    double split_overlap;
    size_t split_segment;
    /* apply_model's shifts (0: none) and, when split_n_offsets == split_shifts, the
     * offsets the job gave (else the pipeline's documented default set) */
    int split_shifts, split_n_offsets;
    long split_offsets[SL_SEP_MAX_SHIFTS];
} sl_sep_info;

typedef struct sl_sep_model sl_sep_model;

/* Opens separation model `name` with its options (validated here: an unknown or
 * out-of-range option is SL_ECONFIG with "file:line:col: key 'separation.options.X': ..."
 * in sl_lasterr()). ctx is the op context it runs on (borrowed, must outlive the model).
 * Unknown name -> SL_ECONFIG. *out is owned by the caller: sl_sep_close. */
int sl_sep_open(sl_sep_model **out, const char *name, const char *weights, const sl_cfg_opts *opts,
                sl_op_ctx *ctx);
const sl_sep_info *sl_sep_get_info(const sl_sep_model *m);
/* Separates in[channels][n] (planar, at info.sample_rate) into
 * out[source][channel][n] (caller-allocated, same length as the input).
 * Returns 0 or a negative code (e.g. SL_ENOMEM) with sl_lasterr(). */
int sl_sep_run(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out);
void sl_sep_close(sl_sep_model *m);

typedef struct {
    const char *name;   /* "melstats" */
    int sample_rate;
    int channels;       /* 1 = the decoder down-mixes to mono */
    int dim;            /* length of one vector */
    char params[256];
    int n_scores;       /* clip scores per input (cnn14: 527 AudioSet classes, in the checkpoint's
                         * class order = AudioSet class_labels_indices.csv); 0: the model has no
                         * classifier head */
} sl_emb_info;

typedef struct sl_emb_model sl_emb_model;

/* Same contract as sl_sep_open. */
int sl_emb_open(sl_emb_model **out, const char *name, const char *weights, const sl_cfg_opts *opts,
                sl_op_ctx *ctx);
const sl_emb_info *sl_emb_get_info(const sl_emb_model *m);
/* Embeds in[channels][n] into vec[dim] (not normalised; the pipeline normalises
 * when embedding.normalize is true). Returns 0 or a negative code. */
int sl_emb_run(sl_emb_model *m, const float *const *in, size_t n, float *vec);
/* sl_emb_run plus the classifier head: also writes scores[info.n_scores] (cnn14: sigmoid
 * probabilities 0..1, one per AudioSet class) for the same input, from the same forward pass.
 * SL_EUNSUPPORTED (sl_lasterr) when info.n_scores is 0. Caller-owned buffers. */
int sl_emb_run_scores(sl_emb_model *m, const float *const *in, size_t n, float *vec, float *scores);
void sl_emb_close(sl_emb_model *m);

/* ---- batches of segments (models/batch.c) ----
 * A batch holds segments of any tracks; segment b is in[b][channel][0..lens[b])
 * and its stems go to out[b][source][channel][0..lens[b]). Each segment is
 * separated on its own: the result for a segment never depends on the other
 * segments of its batch. Returns 0 or the first error; *failed (may be NULL)
 * receives the index of the segment that failed. */
int sl_sep_run_batch(sl_sep_model *m, size_t batch, const float *const *const *in, const size_t *lens,
                     float *const *const *const *out, size_t *failed);
/* Same for embeddings: vecs[b][0..dim) for window b. */
int sl_emb_run_batch(sl_emb_model *m, size_t batch, const float *const *const *in, const size_t *lens,
                     float *const *vecs, size_t *failed);
/* Same with the clip scores: scores[b][0..info.n_scores) for window b (sl_emb_run_scores). */
int sl_emb_run_batch_scores(sl_emb_model *m, size_t batch, const float *const *const *in, const size_t *lens,
                            float *const *vecs, float *const *scores, size_t *failed);

/* The model's default segmenting: segment length and cross-faded overlap in
 * seconds (separation), window length in seconds (embedding). */
/* Bytes of the weights file that CPU workers read in place from its mapping (shared by
 * every worker through the page cache, not copied per worker): the whole file for an
 * embedding model that maps it (cnn14 with stemline.bn_folded=1), else 0. Reads the
 * file's header only; 0 when it cannot be read (the model's open says why). */
double sl_emb_weights_shared_bytes(const char *name, const char *weights);
/* Whether separation model `name` wants at most one CPU worker per track: its
 * workers' buffers are large and touched anew by each worker's first segment,
 * while its ops split over threads at close to full speed, so threads that would
 * share a track's few segments as more workers go inside one worker's ops
 * instead (htdemucs; configs/README.md, Threads). */
int sl_sep_one_worker_per_track(const char *name);
void sl_sep_default_segment(const sl_sep_info *info, double *segment_s, double *overlap_s);
double sl_emb_default_window(const sl_emb_info *info);

/* Names of the models built in, for --help and errors. */
extern const char *const sl_sep_model_names[];
extern const char *const sl_emb_model_names[];

#endif
