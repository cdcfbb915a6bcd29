/* LAION-CLAP text tower: the RoBERTa tokeniser (common/bpe.h) and encoder, the
 * text projection and L2 normalisation, exactly as laion_clap's
 * CLAP_Module.get_text_embedding computes them for the "roberta" text branch:
 *   ids = RobertaTokenizer(text, padding="max_length", truncation=True, max_length=77)
 *   h   = RobertaModel(ids, attention_mask)  (positions from 2 for real tokens, as
 *         create_position_ids_from_input_ids: ids equal to <pad> keep position 1 and do
 *         not advance the count; one token type; post-layer-norm layers, exact GELU)
 *   x   = tanh(pooler.dense(h[0]))            (pooler_output)
 *   v   = text_projection.2(relu(text_projection.0(x)))
 *   out = v / max(||v||, 1e-12)
 * Weights: one safetensors file from tools/convert_clap.py (state-dict names of the
 * checkpoint; the tokenizer's vocab.json and merges.txt as U8 tensors; the sizes in
 * the clap.text.* metadata). Only the real tokens of each text are computed: padded
 * positions are masked out of every attention in the reference, so they never change
 * the output. */
#ifndef SL_CLAP_TEXT_H
#define SL_CLAP_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

typedef struct sl_clap_text sl_clap_text;

/* Loads the text tower of the CLAP weights file path onto ctx's backend (ctx must
 * outlive the model). Returns 0, SL_EFORMAT / SL_EUNSUPPORTED / negated errno with
 * "PATH: reason" in sl_lasterr() (a missing or misshapen tensor or metadata key is
 * named), or SL_ENOMEM. *out owned by the caller: sl_clap_text_close. */
int sl_clap_text_open(sl_clap_text **out, sl_op_ctx *ctx, const char *path);
void sl_clap_text_close(sl_clap_text *m);

/* Width of the output vectors (the joint space, 512 for the published models), the
 * context length (77) and the hidden width. Never fail. */
int sl_clap_text_dim(const sl_clap_text *m);
int sl_clap_text_context(const sl_clap_text *m);
int sl_clap_text_width(const sl_clap_text *m);

/* Tokenises text (len bytes of UTF-8) into ids[context] (sl_bpe_encode); *n_tokens
 * real tokens (<s> and </s> included), *truncated 1 when the text was cut. Returns 0 or
 * SL_EINVAL (invalid UTF-8) / SL_ENOMEM with sl_lasterr(). */
int sl_clap_text_tokenize(const sl_clap_text *m, const char *text, size_t len, int32_t *ids,
                          size_t *n_tokens, int *truncated);

/* Host copies of the intermediate results of sl_clap_text_run_ids (any may be NULL):
 * emb / layers[i] [batch][t_max][width] (rows past a sequence's length undefined),
 * pooled [batch][width], proj [batch][dim] (before normalisation). */
typedef struct {
    float *emb;
    float **layers;
    float *pooled;
    float *proj;
    size_t t_max; /* rows per sequence in emb and layers (set by the call) */
} sl_clap_text_taps;

/* Encodes batch token sequences: sequence b is ids[b*stride .. b*stride + lens[b]),
 * lens[b] in 1..context. out[batch][dim] (host) receives the normalised vectors.
 * Returns 0, SL_EINVAL (a bad length or an id outside the vocabulary) or an op error. */
int sl_clap_text_run_ids(sl_clap_text *m, const int32_t *ids, size_t stride, const size_t *lens, size_t batch,
                         float *out, sl_clap_text_taps *taps);

/* Tokenises and encodes n texts (NUL-terminated UTF-8) into out[n][dim] (host);
 * n_tokens / truncated (may be NULL) receive per text what sl_clap_text_tokenize says.
 * Returns 0 or the first error (the text's index in sl_lasterr()). */
int sl_clap_text_embed(sl_clap_text *m, const char *const *texts, size_t n, float *out, size_t *n_tokens,
                       int *truncated);

#endif
