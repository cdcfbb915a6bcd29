/* LAION-CLAP text tower (models/clap_text.c) against the laion-clap package at
 * reduced size with random weights (tools/gen_golden_clap_text.py encoder:
 * tests/golden/clap_text/small.*): token ids, the embeddings' LayerNorm output,
 * every layer, the pooler, the projection and the normalised vector, within 1e-4
 * relative, on the CPU backend, on the CUDA kernels through cuda-emu and on cuda
 * where a device answers (skipped otherwise); plus the refusals of broken files. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_json.h"
#include "models/clap_text.h"
#include "sl_golden.h"
#include "sl_test.h"

/* CLAP_TEXT_GOLDEN=DIR (tests/slow/test_clap_text_full.sh): the full-size files made
 * there, checked on the CPU only. */
static const char *golden_dir(void) {
    const char *d = getenv("CLAP_TEXT_GOLDEN");
    return d && *d ? d : "clap_text";
}

static const char *golden_file(const char *name) { return slg_file_in(golden_dir(), name); }

static const float *arr(const slg_file *g, const char *name, size_t *count) {
    for (int i = 0; i < g->n_arrays; i++)
        if (!strcmp(g->aname[i], name)) {
            *count = g->acount[i];
            return g->adata[i];
        }
    fprintf(stderr, "golden array %s missing\n", name);
    return NULL;
}

/* max |got - want| / max |want| over rows r < lens[b] of [B][rows_per][n] (got has
 * got_rows per sequence). */
static double rel_err(const float *got, size_t got_rows, const float *want, size_t want_rows, size_t n,
                      const size_t *lens, size_t B) {
    double md = 0, mw = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t r = 0; r < lens[b]; r++)
            for (size_t j = 0; j < n; j++) {
                double w = want[(b * want_rows + r) * n + j], d = fabs(got[(b * got_rows + r) * n + j] - w);
                if (d > md || isnan(d)) md = isnan(d) ? INFINITY : d;
                if (fabs(w) > mw) mw = fabs(w);
            }
    return md / (mw > 0 ? mw : 1);
}

static char **load_texts(size_t *n) {
    FILE *f = fopen(golden_file("small.json"), "rb");
    *n = 0;
    if (!f) return NULL;
    char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    sl_json doc;
    if (sl_json_parse(buf, len, &doc)) return NULL;
    const sl_json *t = sl_json_get(&doc, "texts");
    char **out = calloc(sl_json_len(t) + 1, sizeof *out);
    for (size_t i = 0; out && i < sl_json_len(t); i++) out[i] = strdup(sl_json_at(t, i)->s);
    *n = sl_json_len(t);
    sl_json_free(&doc);
    return out;
}

static void check_backend(const char *backend, const slg_file *g, char **texts, size_t B) {
    sl_op_ctx *ctx = NULL;
    int opened = sl_op_ctx_open(&ctx, backend);
    if (opened < 0 && !strcmp(backend, "cuda")) { /* no device here */
        printf("  %-8s SKIPPED (%s)\n", backend, sl_lasterr());
        return;
    }
    CHECK(opened == 0);
    if (!ctx) return;
    sl_clap_text *m = NULL;
    int rc = sl_clap_text_open(&m, ctx, golden_file("small.safetensors"));
    CHECK_MSG(rc == 0, "%s: %s", backend, sl_lasterr());
    if (!m) {
        sl_op_ctx_close(ctx);
        return;
    }
    const size_t C = (size_t)sl_clap_text_context(m), W = (size_t)sl_clap_text_width(m), J = (size_t)sl_clap_text_dim(m);
    const int layers = atoi(g->pval[2]);
    CHECK(C == 77 && (int)W == atoi(g->pval[1]) && (int)J == atoi(g->pval[3]));
    size_t cnt = 0;
    const float *gids = arr(g, "ids", &cnt);
    CHECK(gids && cnt == B * C);
    int32_t *ids = calloc(B * C, sizeof *ids);
    size_t *lens = calloc(B, sizeof *lens);
    int any_trunc = 0;
    for (size_t b = 0; b < B && gids; b++) {
        int tr = 0;
        CHECK(sl_clap_text_tokenize(m, texts[b], strlen(texts[b]), ids + b * C, &lens[b], &tr) == 0);
        any_trunc |= tr;
        for (size_t t = 0; t < C; t++) CHECK(ids[b * C + t] == (int32_t)gids[b * C + t]);
    }
    CHECK(any_trunc);
    float *emb = malloc(B * C * W * sizeof *emb), *pooled = malloc(B * W * sizeof *pooled);
    float *proj = malloc(B * J * sizeof *proj), *out = malloc(B * J * sizeof *out);
    float *layer_buf[16] = {0};
    for (int i = 0; i < layers && i < 16; i++) layer_buf[i] = malloc(B * C * W * sizeof(float));
    sl_clap_text_taps taps = {emb, layer_buf, pooled, proj, 0};
    rc = sl_clap_text_run_ids(m, ids, C, lens, B, out, &taps);
    CHECK_MSG(rc == 0, "%s: %s", backend, sl_lasterr());
    const size_t ones[64] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    if (rc == 0) {
        const float *w;
        double e;
        if ((w = arr(g, "emb", &cnt))) {
            e = rel_err(emb, taps.t_max, w, C, W, lens, B);
            CHECK_MSG(e < 1e-4, "%s emb: %g", backend, e);
        }
        for (int i = 0; i < layers; i++) {
            char name[16];
            snprintf(name, sizeof name, "layer%d", i);
            if ((w = arr(g, name, &cnt))) {
                e = rel_err(layer_buf[i], taps.t_max, w, C, W, lens, B);
                CHECK_MSG(e < 1e-4, "%s %s: %g", backend, name, e);
            }
        }
        if ((w = arr(g, "pooled", &cnt))) CHECK_MSG((e = rel_err(pooled, 1, w, 1, W, ones, B)) < 1e-4, "%s pooled: %g", backend, e);
        if ((w = arr(g, "proj", &cnt))) CHECK_MSG((e = rel_err(proj, 1, w, 1, J, ones, B)) < 1e-4, "%s proj: %g", backend, e);
        if ((w = arr(g, "out", &cnt))) CHECK_MSG((e = rel_err(out, 1, w, 1, J, ones, B)) < 1e-4, "%s out: %g", backend, e);
    }
    /* the whole path from text, one text at a time and all at once, equals the batch */
    float *one = malloc(J * sizeof *one), *all = malloc(B * J * sizeof *all);
    size_t *ntok = calloc(B, sizeof *ntok);
    int *trunc = calloc(B, sizeof *trunc);
    CHECK(sl_clap_text_embed(m, (const char *const *)texts, B, all, ntok, trunc) == 0);
    const float *want = arr(g, "out", &cnt);
    for (size_t b = 0; b < B && want; b++) {
        CHECK(ntok[b] == lens[b]);
        CHECK(sl_clap_text_embed(m, (const char *const *)&texts[b], 1, one, NULL, NULL) == 0);
        CHECK_MSG(rel_err(one, 1, want + b * J, 1, J, ones, 1) < 1e-4, "%s text %zu alone", backend, b);
        CHECK_MSG(rel_err(all + b * J, 1, want + b * J, 1, J, ones, 1) < 1e-4, "%s text %zu in a batch", backend, b);
    }
    /* twice the batch: more token rows than any call before (on the CPU the room for them grows) */
    const char **twice = malloc(2 * B * sizeof *twice);
    float *all2 = malloc(2 * B * J * sizeof *all2);
    for (size_t b = 0; b < 2 * B; b++) twice[b] = texts[b % B];
    CHECK(sl_clap_text_embed(m, twice, 2 * B, all2, NULL, NULL) == 0);
    for (size_t b = 0; b < 2 * B && want; b++)
        CHECK_MSG(rel_err(all2 + b * J, 1, want + (b % B) * J, 1, J, ones, 1) < 1e-4, "%s text %zu in a double batch",
                  backend, b);
    free(twice);
    free(all2);
    const char *bad[] = {"ok", "\xff"};
    CHECK(sl_clap_text_embed(m, bad, 2, all, NULL, NULL) == SL_EINVAL);
    CHECK(strstr(sl_lasterr(), "query 2") && strstr(sl_lasterr(), "UTF-8"));
    int32_t big = 1 << 30;
    size_t one_len = 1;
    CHECK(sl_clap_text_run_ids(m, &big, 1, &one_len, 1, one, NULL) == SL_EINVAL);
    free(one);
    free(all);
    free(ntok);
    free(trunc);
    for (int i = 0; i < 16; i++) free(layer_buf[i]);
    free(emb);
    free(pooled);
    free(proj);
    free(out);
    free(ids);
    free(lens);
    sl_clap_text_close(m);
    sl_op_ctx_close(ctx);
}

static void check_refusals(void) {
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    sl_clap_text *m = NULL;
    CHECK(sl_clap_text_open(&m, ctx, "/nonexistent/clap.safetensors") < 0 && !m);
    CHECK(strstr(sl_lasterr(), "/nonexistent/clap.safetensors") != NULL);
    /* a weights file of another model */
    const char *other = slg_file_in("roformer", "bs_mono_4stem.safetensors");
    CHECK(sl_clap_text_open(&m, ctx, other) == SL_EFORMAT && !m);
    CHECK_MSG(strstr(sl_lasterr(), "not a CLAP weights file") != NULL, "%s", sl_lasterr());
    sl_op_ctx_close(ctx);
}

int main(void) {
    slg_file g;
    size_t B = 0;
    char **texts = load_texts(&B);
    CHECK(texts && B >= 4);
    CHECK(slg_load_in(&g, golden_dir(), "small") == 0);
    CHECK(!strcmp(g.pname[0], "queries") && (size_t)atoi(g.pval[0]) == B);
    if (texts && g.n_arrays) {
        check_backend("cpu", &g, texts, B);
        if (!getenv("CLAP_TEXT_GOLDEN")) {
            check_backend("cuda-emu", &g, texts, B);
            check_backend("cuda", &g, texts, B);
        }
    }
    if (!getenv("CLAP_TEXT_GOLDEN")) check_refusals();
    for (size_t i = 0; texts && i < B; i++) free(texts[i]);
    free(texts);
    slg_free(&g);
    return sl_test_finish("clap_text");
}
