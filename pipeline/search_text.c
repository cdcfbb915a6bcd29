/* Text queries over CLAP vector shards (pipeline/search_text.h). */
#include "pipeline/search_text.h"

#include <string.h>

#include "common/sl_error.h"

int sl_vindex_open_text(const sl_vindex *ix, sl_op_ctx *ctx, sl_clap_text **out) {
    *out = NULL;
    const sl_index_meta *m = sl_vindex_meta(ix);
    if (!m)
        return sl_seterr(SL_ENOTFOUND, "the shards have no index.json: it was made by an older stemline; re-run the "
                                       "job to record the model that made the vectors");
    if (!m->model || strcmp(m->model, "clap") != 0 || !m->weights)
        return sl_seterr(SL_EUNSUPPORTED, "%s: the vectors were made by model '%s', which has no text tower: --text "
                                          "needs shards of `embedding.model: clap`", m->path, m->model ? m->model : "?");
    sl_clap_text *t = NULL;
    int rc = sl_clap_text_open(&t, ctx, m->weights);
    if (rc) return rc;
    if (sl_clap_text_dim(t) != m->dim) {
        sl_seterr(SL_EFORMAT, "%s: the text tower of %s gives %d-d vectors, the shards hold %d-d ones: the weights "
                              "file changed since the job ran", m->path, m->weights, sl_clap_text_dim(t), m->dim);
        sl_clap_text_close(t);
        return SL_EFORMAT;
    }
    *out = t;
    return 0;
}
