/* Private to models/: how a built-in model plugs into the registry, and the
 * option-parsing helpers that give every model the same error messages. */
#ifndef SL_MODEL_IMPL_H
#define SL_MODEL_IMPL_H

#include <stdint.h>

#include "model.h"

struct sl_sep_model {
    sl_sep_info info;
    sl_op_ctx *ctx;
    int (*run)(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out);
    void (*close)(sl_sep_model *m); /* frees impl, not the struct */
    void *impl;
    /* 1: run may be pipelined (models/batch.c, ops.h sl_op_pipe_*): it never reads what it
     * downloads, never waits (sl_op_sync), and issues the same ops for the same input length */
    int pipelined;
};

struct sl_emb_model {
    sl_emb_info info;
    sl_op_ctx *ctx;
    int (*run)(sl_emb_model *m, const float *const *in, size_t n, float *vec);
    /* NULL unless info.n_scores > 0: vec and scores[n_scores] from one pass */
    int (*run_scores)(sl_emb_model *m, const float *const *in, size_t n, float *vec, float *scores);
    void (*close)(sl_emb_model *m);
    void *impl;
    int pipelined; /* as sl_sep_model's; run_scores then leaves scores raw while
                    * sl_op_pipe_deferred(ctx) and finish_scores completes them */
    void (*finish_scores)(sl_emb_model *m, float *scores);
};

/* Built-in constructors: fill *m (allocated and zeroed by the registry).
 * Return 0 or a negative code with sl_lasterr(). */
int sl_hpss_init(sl_sep_model *m, const sl_cfg_opts *opts);
int sl_melstats_init(sl_emb_model *m, const sl_cfg_opts *opts);
/* Open-Unmix (models/umx.c): weights is the .safetensors path (NULL/empty -> SL_ECONFIG). */
int sl_umx_init(sl_sep_model *m, const char *weights, const sl_cfg_opts *opts);

/* umx internals for the golden tests: the stages of one segment copied to host
 * memory (each NULL = skipped): mag[2][T][nb] mixture magnitude, est[J][2][T][nb]
 * target estimates before the Wiener filter, wien[S][2][T][nb][2] after it.
 * frames receives T. Returns 0 or a negative code. */
typedef struct {
    float *mag, *est, *wien;
    size_t frames;
} sl_umx_stages;
int sl_umx_run_stages(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out,
                      sl_umx_stages *stages);
/* Frames, bins, targets J and sources S (J + residual) of a umx model for n samples. */
int sl_umx_geometry(const sl_sep_model *m, size_t n, size_t *frames, size_t *bins, size_t *targets, size_t *sources);

/* BS-RoFormer / Mel-Band RoFormer (models/roformer.c): name "bs_roformer" or
 * "mel_band_roformer"; weights is the .safetensors path (NULL/empty -> SL_ECONFIG). */
int sl_roformer_init(sl_sep_model *m, const char *name, const char *weights, const sl_cfg_opts *opts);
/* HT-Demucs v4 (models/htdemucs.c): weights is the .safetensors path from tools/convert_htdemucs.py. */
int sl_htdemucs_init(sl_sep_model *m, const char *weights, const sl_cfg_opts *opts);
/* htdemucs internals for the tests: one segment of n <= sl_htdemucs_segment samples with the stages of
 * the first model copied to host memory (each NULL = skipped), in the order of
 * tools/gen_golden_htdemucs.py: mag, enc[depth], tenc[depth], xf, xt, dec[depth], tdec[depth]. */
int sl_htdemucs_run_stages(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out,
                           float *const *stages);
size_t sl_htdemucs_segment(const sl_sep_model *m);
/* roformer internals for the golden tests: stages of one segment copied to host memory
 * (each NULL = skipped): split[T][K][dim] after the band split, layers[2*l + axis] the same
 * after the time (axis 0) / frequency (axis 1) transformer of layer l (Mel: its norm
 * included), mask[N][T][n_feat][2] the complex masks per feature; frames receives T. */
typedef struct {
    float *split;
    float **layers;
    float *mask;
    size_t frames;
} sl_roformer_stages;
int sl_roformer_run_stages(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out,
                           sl_roformer_stages *stages);
/* The Mel-Band RoFormer's bands: idx[n_bands * (n_fft/2+1) * n_ch] receives the features
 * (bin * n_ch + channel) of every band in order (the package's freq_indices), per_band[n_bands]
 * their counts, *n_idx the total. SL_EFORMAT when a bin is in no band. */
int sl_roformer_mel_bands(int sr, int n_fft, int n_bands, int n_ch, int32_t *idx, int *per_band, int *n_idx);
/* Frames T for n samples, bands K, dim and complex features per frame. */
int sl_roformer_geometry(const sl_sep_model *m, size_t n, size_t *frames, size_t *bands, size_t *dim, size_t *n_feat);

/* PANNs Cnn14 (models/cnn14.c): weights is the .safetensors path (NULL/empty -> SL_ECONFIG). */
int sl_cnn14_init(sl_emb_model *m, const char *weights, const sl_cfg_opts *opts);
/* 1 when the file's conv and fc weights are mapped in place on the CPU (stemline.bn_folded=1). */
int sl_cnn14_weights_mapped(const char *weights);
/* cnn14 internals for the golden tests: stages of one mono window copied to host memory
 * (each NULL = skipped): logmel[T][n_mels] before bn0, block[b][C_b][H_b][W_b] after block
 * b+1 (its pooling included; H_b = T >> min(b+1, 5), W_b = n_mels >> min(b+1, 5)); frames
 * receives T. scores may be NULL. Returns 0 or a negative code. */
typedef struct {
    float *logmel;
    float *block[6];
    size_t frames;
} sl_cnn14_stages;
int sl_cnn14_run_stages(sl_emb_model *m, const float *in, size_t n, float *vec, float *scores, sl_cnn14_stages *stages);
/* Frames T for n samples, mel bins, and the six blocks' channel counts. */
int sl_cnn14_geometry(const sl_emb_model *m, size_t n, size_t *frames, int *n_mels, int *channels);

/* LAION-CLAP audio tower (models/clap_audio.c): weights is the .safetensors path with the
 * laion_clap state-dict names (NULL/empty -> SL_ECONFIG). */
int sl_clap_audio_init(sl_emb_model *m, const char *weights, const sl_cfg_opts *opts);
/* clap internals for the golden tests: stages of one mono window copied to host memory (each
 * NULL = skipped), tokens in raster order: logmel[T][n_mels] before bn0, image[spec][spec] (the
 * patch embedding's input), patch[grid^2][embed] after its norm, blocks[j][grid^2][embed] after
 * block j of the first stage (j < n_blocks), stages[s][tokens[s]][dims[s]] after stage s (patch
 * merging included), latent[latent] the mean token; frames receives T. vec is L2-normalised. */
typedef struct {
    float *logmel, *image, *patch, **blocks, **stages, *latent;
    size_t n_blocks, frames;
} sl_clap_audio_stages;
int sl_clap_audio_run_stages(sl_emb_model *m, const float *in, size_t n, float *vec, sl_clap_audio_stages *stages);
typedef struct {
    size_t clip, frames;
    int n_mels, spec, grid, embed, n_stages, first_depth, latent, dim;
    size_t tokens[8];
    int dims[8];
} sl_clap_audio_geom;
int sl_clap_audio_geometry(const sl_emb_model *m, sl_clap_audio_geom *g);

/* Work buffers of one model instance kept from call to call (a model runs on one
 * worker's context at a time): one backend allocation carved into parts, regrown
 * only when a call needs more than any before, so segments after the first
 * allocate and page-fault nothing. */
typedef struct {
    float *base;
    size_t floats;
} sl_model_ws;
/* Points p[i] at sizes[i] floats (64-byte aligned, contents undefined) inside ws for
 * i < n, growing ws when needed. Returns 0 or SL_ENOMEM (ws then empty). */
int sl_model_ws_get(sl_op_ctx *ctx, sl_model_ws *ws, size_t n, const size_t *sizes, float **p);
/* Frees the buffers; ws may be empty. */
void sl_model_ws_free(sl_op_ctx *ctx, sl_model_ws *ws);

/* Weight helpers shared by the models with weights. */
/* Allocates n floats on ctx's backend and uploads src into them. */
int sl_model_upload_new(sl_op_ctx *ctx, float **dst, const float *src, size_t n);
/* Weights used as a weights file stores them: sl_model_wrap makes *dst src's n floats as
 * backend memory (sl_op_wrap_host: on the cpu backend the file's own bytes, read in place, so
 * the workers of a run share one mapping and the forms derived from it; elsewhere a copy) and
 * records the span of the file's bytes so used in *in (zeroed first). sl_model_free_weight:
 * sl_op_free unless p is such bytes (NULL allowed). While in->lo is set a weight points into
 * the file: keep it open until those weights are freed. */
typedef struct {
    const char *lo, *hi;
} sl_model_inplace;
int sl_model_wrap(sl_op_ctx *ctx, sl_model_inplace *in, float **dst, const float *src, size_t n);
void sl_model_free_weight(sl_op_ctx *ctx, const sl_model_inplace *in, float *p);
/* Weights a loader computes (folded, re-laid out) without a second copy: sl_model_stage gives
 * memory for n floats to fill (on the cpu backend backend memory itself, elsewhere host
 * memory; NULL when out of memory), sl_model_adopt makes it *dst (cpu: the same buffer;
 * elsewhere uploaded into a new buffer and the staging freed) and sets *staged to NULL;
 * sl_model_stage_free frees one that was not adopted (NULL allowed). */
float *sl_model_stage(sl_op_ctx *ctx, size_t n);
int sl_model_adopt(sl_op_ctx *ctx, float **dst, float **staged, size_t n);
void sl_model_stage_free(sl_op_ctx *ctx, float *staged);
/* Folds an inference batch norm: given weight, bias, running_mean, running_var
 * (v[0..3], n each) and eps, y = s*x + t with s = w / sqrt(var + eps) and
 * t = b - mean*s, in double. */
void sl_model_bn_fold(const float *const v[4], int64_t n, double eps, double *s, double *t);

/* Option helpers. section is "separation" or "embedding". Each returns 0 or
 * SL_ECONFIG with "file:line:col: key 'section.options.KEY': reason". */
int sl_model_opt_error(const sl_cfg_opt *o, const char *section, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Integer in [lo, hi]; odd_only rejects even values. */
int sl_model_opt_int(const sl_cfg_opt *o, const char *section, long lo, long hi, int odd_only, int *out);
/* Finite number in [lo, hi]. */
int sl_model_opt_double(const sl_cfg_opt *o, const char *section, double lo, double hi, double *out);
/* One of the NULL-terminated choices; *out = its index. */
int sl_model_opt_choice(const sl_cfg_opt *o, const char *section, const char *const *choices, int *out);
/* Boolean: false/true, no/yes, off/on, 0/1. */
int sl_model_opt_bool(const sl_cfg_opt *o, const char *section, int *out);
/* 1..max_n integers in [lo, hi] separated by commas ("0, 7350, 14700"); *n = how many. */
int sl_model_opt_int_list(const sl_cfg_opt *o, const char *section, long lo, long hi, int max_n, long *out, int *n);

#endif
