/* LAION-CLAP text tower (models/clap_text.h): loading and the forward pass over
 * the shared ops (GEMM with bias / residual / GELU / tanh / ReLU epilogues,
 * sl_op_norm for the post-layer-norms, sl_op_attention with k_len for texts of
 * different lengths in one batch, and sl_op_row_gather for the embedding lookup:
 * the token, type and position tables are stacked into one backend table, and
 * each row of the input is the sum of three of its rows, in the reference's order
 * (token + type, then + position). */
#include "models/clap_text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bpe.h"
#include "common/sl_error.h"
#include "io/safetensors.h"
#include "models/model_impl.h"

typedef struct {
    /* wqkv / bqkv: the query, key and value projections stacked ([3W][W], [3W]); in
     * place (CPU) NULL, and w3 / b3 point at the three tensors in the file's mapping */
    const float *w3[3], *b3[3];
    float *wqkv, *bqkv, *wo, *bo, *ln1_g, *ln1_b, *w1, *b1, *w2, *b2, *ln2_g, *ln2_b;
} ct_layer;

struct sl_clap_text {
    sl_op_ctx *ctx;
    sl_st_file *f;
    sl_bpe *bpe;
    char path[512];
    int vocab, width, layers, heads, inter, max_pos, context, dim, pad_id;
    float eps;
    float *table; /* [vocab + max_pos + 1][W]: token rows, position rows, token type 0 */
    float *emb_g, *emb_b, *wp, *bp, *p0w, *p0b, *p2w, *p2b;
    ct_layer *L;
    unsigned char *used; /* [sl_st_count]: tensors the tower reads */
    sl_model_ws ws;
    int32_t *hidx; /* host staging of the gather table, [rows][3] */
    float *hw;
    size_t h_cap;
    /* On the CPU backend the weights are read in place from the file's mapping (kept
     * open while the tower is): no 500 MB copy into fresh pages at every open (the
     * fixed cost of `search --text`). These pointers are not the backend's to free. */
    int in_place;
    const float *word;  /* in place: the token table in the mapping; m->table then holds the position
                         * rows, the type row and, after them, the token rows of the current batch */
    size_t tok_cap;     /* token rows m->table has room for (in place) */
    const float **borrowed;
    size_t n_borrowed, cap_borrowed;
};

static int is_borrowed(const sl_clap_text *m, const float *p) {
    for (size_t i = 0; i < m->n_borrowed; i++)
        if (m->borrowed[i] == p) return 1;
    return 0;
}

static int meta_num(sl_clap_text *m, const char *key, double lo, double hi, int integer, double *out) {
    const char *v = sl_st_meta(m->f, key);
    if (!v)
        return sl_seterr(SL_EFORMAT, "%s: metadata key '%s' missing (convert the checkpoint with tools/convert_clap.py)",
                         m->path, key);
    char *end;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi) || (integer && x != floor(x)))
        return sl_seterr(SL_EFORMAT, "%s: metadata '%s' is '%s', expected %s %g..%g", m->path, key, v,
                         integer ? "an integer" : "a number", lo, hi);
    *out = x;
    return 0;
}

static int meta_int(sl_clap_text *m, const char *key, int lo, int hi, int *out) {
    double x = 0;
    int rc = meta_num(m, key, lo, hi, 1, &x);
    *out = (int)x;
    return rc;
}

/* The float32 tensor name of shape d0 [x d1] (d1 = 0: a vector), marked used; NULL
 * with "PATH: tensor NAME: reason" in sl_lasterr(). */
static const float *take(sl_clap_text *m, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const float *take(sl_clap_text *m, int64_t d0, int64_t d1, const char *fmt, ...) {
    const int64_t shape[2] = {d0, d1};
    va_list ap;
    va_start(ap, fmt);
    const sl_st_tensor *t = sl_st_vtake_f32(m->f, m->used, NULL, d1 ? 2 : 1, shape, fmt, ap);
    va_end(ap);
    return t ? (const float *)t->data : NULL;
}

static int put(sl_clap_text *m, float **dst, const float *src, size_t n) {
    if (!src) return SL_EFORMAT;
    if (!m->in_place) return sl_model_upload_new(m->ctx, dst, src, n);
    if (m->n_borrowed == m->cap_borrowed) {
        size_t cap = m->cap_borrowed ? 2 * m->cap_borrowed : 64;
        const float **b = realloc(m->borrowed, cap * sizeof *b);
        if (!b) return SL_ENOMEM;
        m->borrowed = b;
        m->cap_borrowed = cap;
    }
    m->borrowed[m->n_borrowed++] = src;
    *dst = (float *)(uintptr_t)src; /* read only: the ops never write a weight */
    return 0;
}

/* Query, key and value projections of layer i: as one [3W][W] weight and [3W] bias
 * on a device; in place (CPU), the three tensors read where they are in the mapping
 * (three GEMMs into the columns of one output), not copied at every open. */
static int put_qkv(sl_clap_text *m, int i, ct_layer *l) {
    const size_t W = (size_t)m->width;
    static const char *const part[3] = {"query", "key", "value"};
    const float *pw[3], *pb[3];
    for (int p = 0; p < 3; p++) {
        pw[p] = take(m, (int64_t)W, (int64_t)W, "text_branch.encoder.layer.%d.attention.self.%s.weight", i, part[p]);
        pb[p] = take(m, (int64_t)W, 0, "text_branch.encoder.layer.%d.attention.self.%s.bias", i, part[p]);
        if (!pw[p] || !pb[p]) return SL_EFORMAT;
    }
    if (m->in_place) {
        for (int p = 0; p < 3; p++) {
            l->w3[p] = pw[p];
            l->b3[p] = pb[p];
        }
        return 0;
    }
    float *w = malloc(3 * W * W * sizeof *w), *b = malloc(3 * W * sizeof *b);
    int rc = w && b ? 0 : SL_ENOMEM;
    for (int p = 0; p < 3 && !rc; p++) {
        memcpy(w + p * W * W, pw[p], W * W * sizeof *w);
        memcpy(b + p * W, pb[p], W * sizeof *b);
    }
    if (!rc) rc = sl_model_upload_new(m->ctx, &l->wqkv, w, 3 * W * W);
    if (!rc) rc = sl_model_upload_new(m->ctx, &l->bqkv, b, 3 * W);
    free(w);
    free(b);
    return rc;
}

static int load_layer(sl_clap_text *m, int i, ct_layer *l) {
    const int64_t W = m->width, I = m->inter;
    const char *p = "text_branch.encoder.layer";
    int rc = put_qkv(m, i, l);
    if (!rc) rc = put(m, &l->wo, take(m, W, W, "%s.%d.attention.output.dense.weight", p, i), (size_t)(W * W));
    if (!rc) rc = put(m, &l->bo, take(m, W, 0, "%s.%d.attention.output.dense.bias", p, i), (size_t)W);
    if (!rc) rc = put(m, &l->ln1_g, take(m, W, 0, "%s.%d.attention.output.LayerNorm.weight", p, i), (size_t)W);
    if (!rc) rc = put(m, &l->ln1_b, take(m, W, 0, "%s.%d.attention.output.LayerNorm.bias", p, i), (size_t)W);
    if (!rc) rc = put(m, &l->w1, take(m, I, W, "%s.%d.intermediate.dense.weight", p, i), (size_t)(I * W));
    if (!rc) rc = put(m, &l->b1, take(m, I, 0, "%s.%d.intermediate.dense.bias", p, i), (size_t)I);
    if (!rc) rc = put(m, &l->w2, take(m, W, I, "%s.%d.output.dense.weight", p, i), (size_t)(W * I));
    if (!rc) rc = put(m, &l->b2, take(m, W, 0, "%s.%d.output.dense.bias", p, i), (size_t)W);
    if (!rc) rc = put(m, &l->ln2_g, take(m, W, 0, "%s.%d.output.LayerNorm.weight", p, i), (size_t)W);
    if (!rc) rc = put(m, &l->ln2_b, take(m, W, 0, "%s.%d.output.LayerNorm.bias", p, i), (size_t)W);
    return rc;
}

static int load_tokenizer(sl_clap_text *m) {
    const sl_st_tensor *v = sl_st_find(m->f, "tokenizer.vocab_json"), *g = sl_st_find(m->f, "tokenizer.merges_txt");
    if (!v || !g || v->dtype != SL_ST_U8 || g->dtype != SL_ST_U8 || v->ndim != 1 || g->ndim != 1)
        return sl_seterr(SL_EFORMAT, "%s: no tokenizer in the file (U8 tensors tokenizer.vocab_json and "
                                     "tokenizer.merges_txt; convert with tools/convert_clap.py --vocab --merges)", m->path);
    char what[600];
    snprintf(what, sizeof what, "%s: tokenizer", m->path);
    return sl_bpe_open(&m->bpe, (const char *)v->data, v->nbytes, (const char *)g->data, g->nbytes, what);
}

static int load(sl_clap_text *m) {
    const char *arch = sl_st_meta(m->f, "stemline.arch"), *tmodel = sl_st_meta(m->f, "clap.tmodel");
    const char *fusion = sl_st_meta(m->f, "clap.enable_fusion");
    if (!arch || strcmp(arch, "clap") != 0)
        return sl_seterr(SL_EFORMAT, "%s: not a CLAP weights file (metadata stemline.arch is '%s'; convert the "
                                     "checkpoint with tools/convert_clap.py)", m->path, arch ? arch : "missing");
    if (!tmodel || strcmp(tmodel, "roberta") != 0)
        return sl_seterr(SL_EUNSUPPORTED, "%s: text encoder '%s' is not supported (roberta only)", m->path,
                         tmodel ? tmodel : "missing");
    if (fusion && strcmp(fusion, "0") != 0)
        return sl_seterr(SL_EUNSUPPORTED, "%s: fusion CLAP models are not supported", m->path);
    double eps = 0;
    int rc = meta_int(m, "clap.text.vocab_size", 8, 1 << 24, &m->vocab);
    if (!rc) rc = meta_int(m, "clap.text.width", 1, 8192, &m->width);
    if (!rc) rc = meta_int(m, "clap.text.layers", 1, 256, &m->layers);
    if (!rc) rc = meta_int(m, "clap.text.heads", 1, 1024, &m->heads);
    if (!rc) rc = meta_int(m, "clap.text.intermediate", 1, 65536, &m->inter);
    if (!rc) rc = meta_int(m, "clap.text.max_positions", 3, 1 << 20, &m->max_pos);
    if (!rc) rc = meta_int(m, "clap.text.context_length", 2, 1 << 16, &m->context);
    if (!rc) rc = meta_int(m, "clap.text.pad_id", 0, 1 << 24, &m->pad_id);
    if (!rc) rc = meta_int(m, "clap.joint_dim", 1, 65536, &m->dim);
    if (!rc) rc = meta_num(m, "clap.text.layer_norm_eps", 0, 1, 0, &eps);
    if (rc) return rc;
    m->eps = (float)eps;
    const char *act = sl_st_meta(m->f, "clap.text.act");
    if (act && strcmp(act, "gelu") != 0)
        return sl_seterr(SL_EUNSUPPORTED, "%s: text activation '%s' is not supported (gelu)", m->path, act);
    if (m->width % m->heads || m->width / m->heads > 128)
        return sl_seterr(SL_EFORMAT, "%s: text width %d over %d heads: heads of 1..128 floats needed", m->path,
                         m->width, m->heads);
    if (m->context + m->pad_id + 1 > m->max_pos)
        return sl_seterr(SL_EFORMAT, "%s: %d positions cannot hold a context of %d tokens", m->path, m->max_pos,
                         m->context);
    if ((rc = load_tokenizer(m))) return rc;
    if (sl_bpe_vocab_size(m->bpe) > (size_t)m->vocab || (size_t)m->pad_id != (size_t)sl_bpe_pad(m->bpe))
        return sl_seterr(SL_EFORMAT, "%s: the tokenizer (%zu tokens, <pad> %d) does not fit the text encoder (%d, %d)",
                         m->path, sl_bpe_vocab_size(m->bpe), sl_bpe_pad(m->bpe), m->vocab, m->pad_id);
    const int64_t W = m->width, J = m->dim;
    const char *e = "text_branch.embeddings";
    const float *word = take(m, m->vocab, W, "%s.word_embeddings.weight", e);
    const float *pos = word ? take(m, m->max_pos, W, "%s.position_embeddings.weight", e) : NULL;
    const sl_st_tensor *tt = sl_st_find(m->f, "text_branch.embeddings.token_type_embeddings.weight");
    int64_t n_types = tt && tt->ndim == 2 ? tt->shape[0] : 1;
    const float *type0 = pos ? take(m, n_types, W, "%s.token_type_embeddings.weight", e) : NULL;
    if (!type0) return SL_EFORMAT;
    const size_t nv = (size_t)m->vocab, np = (size_t)m->max_pos;
    if (m->in_place) {
        /* position rows and the type row now; each batch's token rows are copied in by embed_rows */
        m->word = word;
        rc = sl_op_alloc(m->ctx, (void **)&m->table, (np + 1) * (size_t)W * sizeof(float));
        if (rc) return rc;
        memcpy(m->table, pos, np * (size_t)W * sizeof(float));
        memcpy(m->table + np * (size_t)W, type0, (size_t)W * sizeof(float));
    } else {
        float *tab = malloc((nv + np + 1) * (size_t)W * sizeof *tab);
        if (!tab) return SL_ENOMEM;
        memcpy(tab, word, nv * (size_t)W * sizeof *tab);
        memcpy(tab + nv * (size_t)W, pos, np * (size_t)W * sizeof *tab);
        memcpy(tab + (nv + np) * (size_t)W, type0, (size_t)W * sizeof *tab);
        rc = sl_model_upload_new(m->ctx, &m->table, tab, (nv + np + 1) * (size_t)W);
        free(tab);
    }
    if (!rc) rc = put(m, &m->emb_g, take(m, W, 0, "%s.LayerNorm.weight", e), (size_t)W);
    if (!rc) rc = put(m, &m->emb_b, take(m, W, 0, "%s.LayerNorm.bias", e), (size_t)W);
    m->L = rc ? NULL : calloc((size_t)m->layers, sizeof *m->L);
    if (!rc && !m->L) rc = SL_ENOMEM;
    for (int i = 0; i < m->layers && !rc; i++) rc = load_layer(m, i, &m->L[i]);
    if (!rc) rc = put(m, &m->wp, take(m, W, W, "text_branch.pooler.dense.weight"), (size_t)(W * W));
    if (!rc) rc = put(m, &m->bp, take(m, W, 0, "text_branch.pooler.dense.bias"), (size_t)W);
    if (!rc) rc = put(m, &m->p0w, take(m, J, W, "text_projection.0.weight"), (size_t)(J * W));
    if (!rc) rc = put(m, &m->p0b, take(m, J, 0, "text_projection.0.bias"), (size_t)J);
    if (!rc) rc = put(m, &m->p2w, take(m, J, J, "text_projection.2.weight"), (size_t)(J * J));
    if (!rc) rc = put(m, &m->p2b, take(m, J, 0, "text_projection.2.bias"), (size_t)J);
    if (rc) return rc;
    /* every tensor of the text tower must be one this code computes with */
    for (size_t i = 0; i < sl_st_count(m->f); i++) {
        const char *name = sl_st_at(m->f, i)->name;
        if (!m->used[i] && (!strncmp(name, "text_branch.", 12) || !strncmp(name, "text_projection.", 16)))
            return sl_seterr(SL_EFORMAT, "%s: tensor '%s' is not part of the supported RoBERTa text tower "
                                         "(%d layers: another text encoder?)", m->path, name, m->layers);
    }
    return 0;
}

int sl_clap_text_open(sl_clap_text **out, sl_op_ctx *ctx, const char *path) {
    *out = NULL;
    static const sl_op_id need[] = {SL_OP_GEMM, SL_OP_NORM, SL_OP_ATTENTION, SL_OP_ROW_GATHER};
    int rc = sl_op_require(ctx, need, sizeof need / sizeof *need, "CLAP text tower");
    if (rc) return rc;
    sl_clap_text *m = calloc(1, sizeof *m);
    if (!m) return SL_ENOMEM;
    m->ctx = ctx;
    m->in_place = !strcmp(sl_op_ctx_backend(ctx), "cpu");
    snprintf(m->path, sizeof m->path, "%s", path);
    rc = sl_st_open(&m->f, path);
    if (!rc) {
        m->used = calloc(sl_st_count(m->f) + 1, 1);
        rc = m->used ? load(m) : SL_ENOMEM;
    }
    if (rc) {
        if (rc == SL_ENOMEM) sl_seterr(rc, "%s: out of memory loading the CLAP text tower", path);
        sl_clap_text_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

void sl_clap_text_close(sl_clap_text *m) {
    if (!m) return;
    float **all[] = {&m->table, &m->emb_g, &m->emb_b, &m->wp, &m->bp, &m->p0w, &m->p0b, &m->p2w, &m->p2b};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (!is_borrowed(m, *all[i])) sl_op_free(m->ctx, *all[i]);
    for (int i = 0; m->L && i < m->layers; i++) {
        ct_layer *l = &m->L[i];
        float *p[] = {l->wqkv, l->bqkv, l->wo, l->bo, l->ln1_g, l->ln1_b, l->w1, l->b1, l->w2, l->b2, l->ln2_g, l->ln2_b};
        for (size_t k = 0; k < sizeof p / sizeof *p; k++)
            if (!is_borrowed(m, p[k])) sl_op_free(m->ctx, p[k]);
    }
    free(m->borrowed);
    free(m->L);
    sl_model_ws_free(m->ctx, &m->ws);
    sl_bpe_close(m->bpe);
    sl_st_close(m->f);
    free(m->used);
    free(m->hidx);
    free(m->hw);
    free(m);
}

int sl_clap_text_dim(const sl_clap_text *m) { return m->dim; }
int sl_clap_text_context(const sl_clap_text *m) { return m->context; }
int sl_clap_text_width(const sl_clap_text *m) { return m->width; }

int sl_clap_text_tokenize(const sl_clap_text *m, const char *text, size_t len, int32_t *ids, size_t *n_tokens,
                          int *truncated) {
    return sl_bpe_encode(m->bpe, text, len, ids, (size_t)m->context, n_tokens, truncated);
}

/* The gather table of the embedding sum: row r = b*T + t takes token ids[b][t], token
 * type 0 and its position (RoBERTa's create_position_ids_from_input_ids); rows past a
 * sequence's length take <pad>'s (never read). Into m->hidx / m->hw ([R][3]). */
static int embed_rows(sl_clap_text *m, const int32_t *ids, size_t stride, const size_t *lens, size_t batch, size_t T) {
    const size_t need = batch * T * 3;
    if (need > m->h_cap) {
        int32_t *pi = realloc(m->hidx, need * sizeof *pi);
        if (pi) m->hidx = pi;
        float *pw = pi ? realloc(m->hw, need * sizeof *pw) : NULL;
        if (!pw) return sl_seterr(SL_ENOMEM, "CLAP text tower: out of memory");
        m->hw = pw;
        m->h_cap = need;
    }
    const size_t W = (size_t)m->width, np = (size_t)m->max_pos;
    if (m->in_place && batch * T > m->tok_cap) { /* room for this batch's token rows after the others */
        float *t = NULL;
        int rc = sl_op_alloc(m->ctx, (void **)&t, (np + 1 + batch * T) * W * sizeof *t);
        if (rc) return rc;
        memcpy(t, m->table, (np + 1) * W * sizeof *t);
        sl_op_free(m->ctx, m->table);
        m->table = t;
        m->tok_cap = batch * T;
    }
    const int32_t pos0 = m->in_place ? 0 : m->vocab, type0 = m->in_place ? m->max_pos : m->vocab + m->max_pos;
    for (size_t b = 0; b < batch; b++) {
        int count = 0;
        for (size_t t = 0; t < T; t++) {
            int32_t id = t < lens[b] ? ids[b * stride + t] : m->pad_id;
            if (id < 0 || id >= m->vocab)
                return sl_seterr(SL_EINVAL, "CLAP text tower: token id %d outside the vocabulary of %d", id, m->vocab);
            int p = id == m->pad_id ? m->pad_id : m->pad_id + ++count;
            int32_t *r = m->hidx + (b * T + t) * 3;
            r[0] = id;
            if (m->in_place) { /* the token's row, copied from the mapping */
                r[0] = (int32_t)(np + 1 + b * T + t);
                memcpy(m->table + (size_t)r[0] * W, m->word + (size_t)id * W, W * sizeof(float));
            }
            r[1] = type0;
            r[2] = pos0 + p;
        }
    }
    for (size_t i = 0; i < need; i++) m->hw[i] = 1.0f;
    return 0;
}

static int tap(sl_clap_text *m, float *host, const float *dev, size_t floats) {
    return host ? sl_op_download(m->ctx, host, dev, floats * sizeof(float)) : 0;
}

/* y[rows][n] (row i at y + i*ldy) = act(x w^T + bias) [+ add, laid out as y]. */
static sl_gemm_args linear(size_t rows, const float *x, size_t ldx, const float *w, const float *bias, size_t n,
                           size_t k, sl_act act, float *y, size_t ldy, const float *add) {
    return (sl_gemm_args){.batch = 1, .m = rows, .n = n, .k = k, .x = x, .ldx = ldx, .w = w, .ldw = k,
                          .bias = bias, .act = act, .y = y, .ldy = ldy, .add = add, .ldadd = ldy};
}

static int layer_norm(sl_clap_text *m, float *x, size_t rows, size_t ld, const float *g, const float *b) {
    sl_norm_args a = {.kind = SL_NORM_LAYER, .rows = rows, .dim = (size_t)m->width, .x = x, .ldx = ld,
                      .gamma = g, .beta = b, .eps = m->eps, .y = x, .ldy = ld};
    return sl_op_norm(m->ctx, &a);
}

int sl_clap_text_run_ids(sl_clap_text *m, const int32_t *ids, size_t stride, const size_t *lens, size_t batch,
                         float *out, sl_clap_text_taps *taps) {
    size_t T = 0;
    for (size_t b = 0; b < batch; b++) {
        if (lens[b] < 1 || lens[b] > (size_t)m->context || lens[b] > stride)
            return sl_seterr(SL_EINVAL, "CLAP text tower: sequence %zu has %zu tokens (1..%d)", b, lens[b], m->context);
        if (lens[b] > T) T = lens[b];
    }
    if (batch == 0) return 0;
    const size_t W = (size_t)m->width, I = (size_t)m->inter, J = (size_t)m->dim, R = batch * T;
    int rc = embed_rows(m, ids, stride, lens, batch, T);
    if (rc) return rc;
    const size_t sizes[] = {R * W, R * 3 * W, R * W, R * I, batch * W, batch * J, batch * J, batch, R * 3, R * 3};
    float *p[10];
    if ((rc = sl_model_ws_get(m->ctx, &m->ws, 10, sizes, p))) return rc;
    float *X = p[0], *QKV = p[1], *A = p[2], *H = p[3], *P = p[4], *Q1 = p[5], *Q2 = p[6];
    int32_t *k_len = (int32_t *)p[7], *hl = malloc(batch * sizeof *hl);
    if (!hl) return SL_ENOMEM;
    for (size_t b = 0; b < batch; b++) hl[b] = (int32_t)lens[b];
    rc = sl_op_upload(m->ctx, k_len, hl, batch * sizeof *hl);
    free(hl);
    int32_t *gidx = (int32_t *)p[8];
    float *gw = p[9];
    if (!rc) rc = sl_op_upload(m->ctx, gidx, m->hidx, R * 3 * sizeof *gidx);
    if (!rc) rc = sl_op_upload(m->ctx, gw, m->hw, R * 3 * sizeof *gw);
    const size_t in_rows = m->in_place ? (size_t)m->max_pos + 1 + m->tok_cap : (size_t)(m->vocab + m->max_pos + 1);
    sl_gather_args ga = {.batch = 1, .rows = R, .cols = W, .in_rows = in_rows, .taps = 3,
                         .idx = gidx, .w = gw, .x = m->table, .ldx = W, .y = X, .ldy = W};
    if (!rc) rc = sl_op_row_gather(m->ctx, &ga);
    if (!rc) rc = layer_norm(m, X, R, W, m->emb_g, m->emb_b);
    if (taps) taps->t_max = T;
    if (!rc && taps) rc = tap(m, taps->emb, X, R * W);
    const int dh = m->width / m->heads;
    for (int i = 0; i < m->layers && !rc; i++) {
        const ct_layer *l = &m->L[i];
        /* After the last layer only the <s> rows are read (by the pooler): there, unless
         * the layer is tapped, queries, output projection and feed-forward run on those
         * rows alone (keys and values still cover every token). */
        const int cls = i == m->layers - 1 && !(taps && taps->layers);
        const size_t rows = cls ? batch : R, ldx = cls ? T * W : W;
        sl_gemm_args g;
        if (l->wqkv) {
            g = linear(R, X, W, l->wqkv, l->bqkv, 3 * W, W, SL_ACT_NONE, QKV, 3 * W, NULL);
            rc = sl_op_gemm(m->ctx, &g);
        }
        for (int j = 0; j < 3 && !l->wqkv && !rc; j++) {
            g = linear(R, X, W, l->w3[j], l->b3[j], W, W, SL_ACT_NONE, QKV + (size_t)j * W, 3 * W, NULL);
            rc = sl_op_gemm(m->ctx, &g);
        }
        sl_attention_args a = {0};
        a.batch = batch;
        a.tq = cls ? 1 : T;
        a.tk = T;
        a.heads = m->heads;
        a.dim_head = dh;
        a.scale = (float)(1.0 / sqrt((double)dh));
        a.q = QKV;
        a.k = QKV + W;
        a.v = QKV + 2 * W;
        a.ldq = a.ldk = a.ldv = 3 * W;
        a.stride_q = a.stride_k = a.stride_v = T * 3 * W;
        a.k_len = k_len;
        a.out = A;
        a.ldo = W;
        a.stride_o = a.tq * W;
        if (!rc) rc = sl_op_attention(m->ctx, &a);
        g = linear(rows, A, W, l->wo, l->bo, W, W, SL_ACT_NONE, X, ldx, X);
        if (!rc) rc = sl_op_gemm(m->ctx, &g);
        if (!rc) rc = layer_norm(m, X, rows, ldx, l->ln1_g, l->ln1_b);
        g = linear(rows, X, ldx, l->w1, l->b1, I, W, SL_ACT_GELU, H, I, NULL);
        if (!rc) rc = sl_op_gemm(m->ctx, &g);
        g = linear(rows, H, I, l->w2, l->b2, W, I, SL_ACT_NONE, X, ldx, X);
        if (!rc) rc = sl_op_gemm(m->ctx, &g);
        if (!rc) rc = layer_norm(m, X, rows, ldx, l->ln2_g, l->ln2_b);
        if (!rc && taps && taps->layers) rc = tap(m, taps->layers[i], X, R * W);
    }
    /* pooler on the <s> row of each text, then the projection MLP */
    sl_gemm_args g = linear(batch, X, T * W, m->wp, m->bp, W, W, SL_ACT_TANH, P, W, NULL);
    if (!rc) rc = sl_op_gemm(m->ctx, &g);
    g = linear(batch, P, W, m->p0w, m->p0b, J, W, SL_ACT_RELU, Q1, J, NULL);
    if (!rc) rc = sl_op_gemm(m->ctx, &g);
    g = linear(batch, Q1, J, m->p2w, m->p2b, J, J, SL_ACT_NONE, Q2, J, NULL);
    if (!rc) rc = sl_op_gemm(m->ctx, &g);
    if (!rc && taps) rc = tap(m, taps->pooled, P, batch * W);
    if (!rc && taps) rc = tap(m, taps->proj, Q2, batch * J);
    if (!rc) rc = sl_op_download(m->ctx, out, Q2, batch * J * sizeof *out);
    for (size_t b = 0; b < batch && !rc; b++) {
        double ss = 0;
        for (size_t j = 0; j < J; j++) ss += (double)out[b * J + j] * out[b * J + j];
        double inv = 1.0 / fmax(sqrt(ss), 1e-12);
        for (size_t j = 0; j < J; j++) out[b * J + j] = (float)(out[b * J + j] * inv);
    }
    return rc;
}

int sl_clap_text_embed(sl_clap_text *m, const char *const *texts, size_t n, float *out, size_t *n_tokens,
                       int *truncated) {
    const size_t C = (size_t)m->context;
    int32_t *ids = malloc((n ? n : 1) * C * sizeof *ids);
    size_t *lens = malloc((n ? n : 1) * sizeof *lens);
    int rc = ids && lens ? 0 : SL_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        int tr = 0;
        rc = sl_clap_text_tokenize(m, texts[i], strlen(texts[i]), ids + i * C, &lens[i], &tr);
        if (rc == SL_EINVAL) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s", sl_lasterr());
            sl_seterr(rc, "query %zu: %s", i + 1, msg);
        }
        if (n_tokens) n_tokens[i] = lens[i];
        if (truncated) truncated[i] = tr;
    }
    /* batches of up to 16 texts bound the work buffers */
    for (size_t i = 0; i < n && !rc; i += 16) {
        size_t nb = n - i < 16 ? n - i : 16;
        rc = sl_clap_text_run_ids(m, ids + i * C, C, lens + i, nb, out + i * (size_t)m->dim, NULL);
    }
    free(ids);
    free(lens);
    return rc;
}
