/* Text queries over vector shards made by a CLAP model: the text tower of the
 * checkpoint that the shards' index.json records (its "weights"). */
#ifndef SL_SEARCH_TEXT_H
#define SL_SEARCH_TEXT_H

#include "models/clap_text.h"
#include "pipeline/search.h"

/* Opens the CLAP text tower of the weights file the sidecar of ix names, on ctx,
 * and checks that its vectors have the shards' dim. SL_ENOTFOUND without a sidecar,
 * SL_EUNSUPPORTED when the shards were made by a model without a text tower (the
 * message names it), SL_EFORMAT on a dim mismatch or a bad weights file, with
 * sl_lasterr(). *out owned by the caller: sl_clap_text_close. */
int sl_vindex_open_text(const sl_vindex *ix, sl_op_ctx *ctx, sl_clap_text **out);

#endif
