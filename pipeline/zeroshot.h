/* Zero-shot tags (embedding.text_labels, clap jobs): the labels of a file, each put
 * into the prompt template, embedded once with the text tower of the job's weights;
 * every track vector is then scored against them as LAION-CLAP's zero-shot
 * classification does: cosine c_i = <a, t_i> of the L2-normalised vectors, logits
 * exp(logit_scale_a) * c_i, and the softmax of the logits over the labels. */
#ifndef SL_ZEROSHOT_H
#define SL_ZEROSHOT_H

#include <stddef.h>

#include "kernels/ops.h"

typedef struct sl_zeroshot sl_zeroshot;

/* Reads the labels of path ("default": data/clap_music_labels.txt), one a line
 * (lines starting with '#' are comments, spaces around a label are dropped), puts
 * each into tmpl (its "{}" replaced; NULL = the label itself) and embeds them with
 * the text tower of weights (its tensor logit_scale_a gives the scale). dim: the
 * audio vectors' width. Returns 0, SL_ECONFIG for a blank or duplicate line
 * ("FILE:LINE: ..."), an empty file, a missing file or a weights file without a
 * text tower or logit_scale_a, or SL_ENOMEM / another error with sl_lasterr(). */
int sl_zeroshot_open(sl_zeroshot **out, const char *path, const char *tmpl, const char *weights, int dim,
                     sl_op_ctx *ctx);
void sl_zeroshot_close(sl_zeroshot *z);

int sl_zeroshot_count(const sl_zeroshot *z);
const char *const *sl_zeroshot_labels(const sl_zeroshot *z);

/* Scores the vector v[dim] (normalised here): cosine[n] and the softmax prob[n].
 * Returns 0, or SL_EINVAL when v is zero or not finite. */
int sl_zeroshot_score(const sl_zeroshot *z, const float *v, double *prob, double *cosine);

#endif
