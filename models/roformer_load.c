/* Loading of BS-RoFormer / Mel-Band RoFormer weights (models/roformer.c runs
 * them). The file is a safetensors with the checkpoint's state-dict names
 * unchanged (tools/convert_roformer.py) and the hyper-parameters in metadata.
 * Loading is strict: every tensor must be one the architecture uses, with the
 * shape the metadata implies, and every tensor in the file must be used, so a
 * checkpoint of another version of the code (extra norms, value residuals,
 * other MLP depths) is refused naming the first key that does not fit. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../io/safetensors.h"
#include "roformer_impl.h"

typedef struct {
    const sl_st_file *f;
    const char *path;
    const char *model;
    unsigned char *used; /* [sl_st_count] */
} rf_loader;

static int meta_int(rf_loader *L, const char *key, int lo, int hi, int def, int *out)
{
    const char *v = sl_st_meta(L->f, key);
    if (!v) {
        if (def >= lo) {
            *out = def;
            return 0;
        }
        return sl_seterr(SL_EFORMAT, "separation model %s: %s: metadata key '%s' missing (convert the checkpoint "
                                     "with tools/convert_roformer.py)", L->model, L->path, key);
    }
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < lo || x > hi)
        return sl_seterr(SL_EFORMAT, "separation model %s: %s: metadata '%s' is '%s', expected an integer %d..%d",
                         L->model, L->path, key, v, lo, hi);
    *out = (int)x;
    return 0;
}

/* The float32 tensor name (printf format) of shape d0 [x d1] (d1 = 0: one dimension);
 * NULL with "model: FILE: tensor NAME: reason" when missing or misshapen. */
static const float *take(rf_loader *L, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static const float *take(rf_loader *L, int64_t d0, int64_t d1, const char *fmt, ...)
{
    char what[96];
    snprintf(what, sizeof what, "separation model %s", L->model);
    const int64_t shape[2] = {d0, d1};
    va_list ap;
    va_start(ap, fmt);
    const sl_st_tensor *t = sl_st_vtake_f32(L->f, L->used, what, d1 ? 2 : 1, shape, fmt, ap);
    va_end(ap);
    return t ? (const float *)t->data : NULL;
}

static int present(rf_loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int present(rf_loader *L, const char *fmt, ...)
{
    char name[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    return sl_st_find(L->f, name) != NULL;
}

/* Uploads a taken tensor of n floats (NULL src: the error is already set). */
static int put(sl_op_ctx *ctx, float **dst, const float *src, size_t n)
{
    if (!src)
        return SL_EFORMAT;
    return sl_model_upload_new(ctx, dst, src, n);
}

/* put for a transformer's weight matrix, declared fixed (sl_op_mark_fixed): the CPU keeps its
 * packed form for the AMX tiles across calls in the tf32 / bf16 / bf16x6 modes (about 1x / 0.5x /
 * 1.5x the matrix's size more memory), fp32 its packed form for the AVX-512 kernel (1x). */
static int put_fixed(sl_op_ctx *ctx, float **dst, const float *src, size_t n)
{
    int rc = put(ctx, dst, src, n);
    return rc ? rc : sl_op_mark_fixed(ctx, *dst, n * sizeof(float));
}

static int put_i32(sl_op_ctx *ctx, int32_t **dst, const int32_t *src, size_t n)
{
    int rc = sl_op_alloc(ctx, (void **)dst, (n ? n : 1) * sizeof(int32_t));
    if (!rc && n)
        rc = sl_op_upload(ctx, *dst, src, n * sizeof(int32_t));
    return rc;
}

int sl_roformer_mel_bands(int sr, int n_fft, int n_bands, int n_ch, int32_t *idx, int *per_band, int *n_idx)
{
    /* librosa.filters.mel(sr, n_fft, n_mels=n_bands) with [0][0] and [-1][-1] forced to 1;
     * band b = the bins where its filter is > 0 (binary, overlapping), channels interleaved */
    const int F = n_fft / 2 + 1;
    float *fb = malloc((size_t)n_bands * F * sizeof *fb);
    if (!fb)
        return sl_seterr(SL_ENOMEM, "mel bands: out of memory");
    int rc = sl_mel_filterbank(fb, sr, n_fft, n_bands, 0.0, 0.0);
    if (rc < 0) {
        free(fb);
        return rc;
    }
    fb[0] = 1.0f;
    fb[(size_t)n_bands * F - 1] = 1.0f;
    int n = 0;
    for (int b = 0; b < n_bands; b++) {
        per_band[b] = 0;
        for (int f = 0; f < F; f++)
            if (fb[(size_t)b * F + f] > 0.0f)
                for (int c = 0; c < n_ch; c++, per_band[b]++)
                    idx[n++] = f * n_ch + c;
    }
    for (int f = 0; f < F && !rc; f++) {
        int cov = 0;
        for (int b = 0; b < n_bands && !cov; b++)
            cov = fb[(size_t)b * F + f] > 0.0f;
        if (!cov)
            rc = sl_seterr(SL_EFORMAT, "%d mel bands of n_fft %d at %d Hz leave bin %d uncovered", n_bands, n_fft, sr,
                           f);
    }
    free(fb);
    *n_idx = n;
    return rc;
}

/* Band geometry: idx (complex feature -> bin*S + channel) and the bands' sizes. */
static int band_geometry(rf_loader *L, rf_state *st, int32_t **idx_out)
{
    const int F = st->n_fft / 2 + 1, S = st->S;
    int32_t *idx = NULL;
    int nf[RF_MAX_BANDS];
    if (st->arch == RF_BS) {
        const char *v = sl_st_meta(L->f, "freqs_per_bands");
        if (!v || !*v)
            return sl_seterr(SL_EFORMAT, "separation model %s: %s: metadata key 'freqs_per_bands' missing", L->model,
                             L->path);
        int sum = 0;
        st->K = 0;
        for (const char *p = v; *p;) {
            char *end;
            long x = strtol(p, &end, 10);
            if (end == p || x < 1 || x > F || st->K == RF_MAX_BANDS || (*end && *end != ','))
                return sl_seterr(SL_EFORMAT, "separation model %s: %s: metadata freqs_per_bands '%.60s...': "
                                             "a comma-separated list of at most %d positive bin counts",
                                 L->model, L->path, v, RF_MAX_BANDS);
            nf[st->K++] = (int)x;
            sum += (int)x;
            p = *end ? end + 1 : end;
        }
        if (sum != F || st->K < 2)
            return sl_seterr(SL_EFORMAT, "separation model %s: %s: freqs_per_bands covers %d bins in %d bands; the "
                                         "STFT (n_fft %d) has %d bins (and at least 2 bands are needed)",
                             L->model, L->path, sum, st->K, st->n_fft, F);
        if (!(idx = malloc((size_t)F * S * sizeof *idx)))
            return sl_seterr(SL_ENOMEM, "separation model %s: out of memory", L->model);
        for (int j = 0; j < F * S; j++)
            idx[j] = j;
        st->n_feat = F * S;
        for (int k = 0; k < st->K; k++)
            nf[k] *= S;
    } else {
        if (!(idx = malloc((size_t)st->num_bands * F * S * sizeof *idx)))
            return sl_seterr(SL_ENOMEM, "separation model %s: out of memory", L->model);
        st->K = st->num_bands;
        int rc = sl_roformer_mel_bands(st->sample_rate, st->n_fft, st->num_bands, S, idx, nf, &st->n_feat);
        if (rc < 0) {
            free(idx);
            char msg[512];
            snprintf(msg, sizeof msg, "%s", sl_lasterr());
            return sl_seterr(rc, "separation model %s: %s: %s", L->model, L->path, msg);
        }
    }
    int off = 0;
    st->max_din = 0;
    for (int k = 0; k < st->K; k++) {
        st->din[k] = 2 * nf[k];
        st->off[k] = off;
        off += st->din[k];
        if (st->din[k] > st->max_din)
            st->max_din = st->din[k];
    }
    *idx_out = idx;
    return 0;
}

static int load_layer(rf_loader *L, sl_op_ctx *ctx, rf_state *st, rf_layer *ly, const char *pre)
{
    const int dim = st->dim, HD = st->heads * st->dim_head;
    int rc = put(ctx, &ly->attn_g, take(L, dim, 0, "%s.0.norm.gamma", pre), (size_t)dim);
    if (!rc)
        rc = put_fixed(ctx, &ly->wqkv, take(L, 3 * HD, dim, "%s.0.to_qkv.weight", pre), (size_t)3 * HD * dim);
    if (!rc && present(L, "%s.0.to_gates.weight", pre)) {
        rc = put_fixed(ctx, &ly->wgate, take(L, st->heads, dim, "%s.0.to_gates.weight", pre), (size_t)st->heads * dim);
        if (!rc)
            rc = put(ctx, &ly->bgate, take(L, st->heads, 0, "%s.0.to_gates.bias", pre), (size_t)st->heads);
    }
    if (!rc)
        rc = put_fixed(ctx, &ly->wout, take(L, dim, HD, "%s.0.to_out.0.weight", pre), (size_t)dim * HD);
    if (!rc)
        rc = put(ctx, &ly->ff_g, take(L, dim, 0, "%s.1.net.0.gamma", pre), (size_t)dim);
    if (!rc)
        rc = put_fixed(ctx, &ly->w1, take(L, st->ff_hidden, dim, "%s.1.net.1.weight", pre), (size_t)st->ff_hidden * dim);
    if (!rc)
        rc = put(ctx, &ly->b1, take(L, st->ff_hidden, 0, "%s.1.net.1.bias", pre), (size_t)st->ff_hidden);
    if (!rc)
        rc = put_fixed(ctx, &ly->w2, take(L, dim, st->ff_hidden, "%s.1.net.4.weight", pre), (size_t)dim * st->ff_hidden);
    if (!rc)
        rc = put(ctx, &ly->b2, take(L, dim, 0, "%s.1.net.4.bias", pre), (size_t)dim);
    if (!rc && present(L, "%s.0.rotary_embed.freqs", pre)) {
        const float *fr = take(L, st->dim_head / 2, 0, "%s.0.rotary_embed.freqs", pre);
        if (!fr)
            return SL_EFORMAT;
        /* layers.{l}.{axis}.layers.{d}: the axis digit picks the time (0) or frequency (1) embedding */
        const char *ax = strstr(pre, ".layers.");
        const int axis = ax && ax > pre && ax[-1] == '1';
        memcpy(st->inv_freq[axis], fr, (size_t)(st->dim_head / 2) * sizeof(float));
    }
    return rc;
}

int rf_load(sl_op_ctx *ctx, rf_state *st, const char *path, rf_arch arch)
{
    const char *model = arch == RF_BS ? "bs_roformer" : "mel_band_roformer";
    sl_st_file *f = NULL;
    int rc = sl_st_open(&f, path);
    if (rc < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", sl_lasterr());
        return sl_seterr(rc, "separation model %s: %s", model, msg);
    }
    rf_loader L = {f, path, model, calloc(sl_st_count(f) + 1, 1)};
    int32_t *idx = NULL, *inv_off = NULL, *inv_idx = NULL;
    if (!L.used) {
        rc = sl_seterr(SL_ENOMEM, "separation model %s: out of memory", model);
        goto out;
    }
    st->arch = arch;
    const char *a = sl_st_meta(f, "stemline.arch");
    if (!a || strcmp(a, model) != 0) {
        rc = sl_seterr(SL_EFORMAT, "separation model %s: %s: metadata stemline.arch is '%s', expected '%s' (not a "
                                   "weights file of this model)", model, path, a ? a : "(missing)", model);
        goto out;
    }
    int stereo = 0, mdepth = 0;
    if ((rc = meta_int(&L, "dim", 1, 16384, -1, &st->dim)) < 0 || (rc = meta_int(&L, "depth", 1, 256, -1, &st->depth)) < 0 ||
        (rc = meta_int(&L, "stereo", 0, 1, -1, &stereo)) < 0 ||
        (rc = meta_int(&L, "num_stems", 1, RF_MAX_STEMS, -1, &st->N)) < 0 ||
        (rc = meta_int(&L, "time_transformer_depth", 1, 64, -1, &st->tdepth)) < 0 ||
        (rc = meta_int(&L, "freq_transformer_depth", 1, 64, -1, &st->fdepth)) < 0 ||
        (rc = meta_int(&L, "heads", 1, 256, -1, &st->heads)) < 0 ||
        (rc = meta_int(&L, "dim_head", 2, 128, -1, &st->dim_head)) < 0 ||
        (rc = meta_int(&L, "stft_n_fft", 16, 65536, -1, &st->n_fft)) < 0 ||
        (rc = meta_int(&L, "stft_hop_length", 1, 65536, -1, &st->hop)) < 0 ||
        (rc = meta_int(&L, "stft_win_length", 1, 65536, st->n_fft, &st->win)) < 0 ||
        (rc = meta_int(&L, "stft_normalized", 0, 1, 0, &st->normalized)) < 0 ||
        (rc = meta_int(&L, "mask_estimator_depth", 1, RF_MAX_MLP, -1, &mdepth)) < 0 ||
        (rc = meta_int(&L, "sample_rate", 8000, 384000, 44100, &st->sample_rate)) < 0 ||
        (rc = meta_int(&L, "zero_dc", 0, 1, 0, &st->zero_dc)) < 0 ||
        (rc = meta_int(&L, "chunk_size", 0, 1 << 30, 0, &st->chunk_size)) < 0 ||
        (rc = meta_int(&L, "num_overlap", 1, 64, 2, &st->num_overlap)) < 0 ||
        (arch == RF_MEL && (rc = meta_int(&L, "num_bands", 2, RF_MAX_BANDS, -1, &st->num_bands)) < 0))
        goto out;
    st->S = stereo ? 2 : 1;
    if (st->dim_head % 2 || st->win > st->n_fft || st->hop > st->n_fft) {
        rc = sl_seterr(SL_EFORMAT, "separation model %s: %s: inconsistent metadata (dim_head %d must be even, "
                                   "win_length %d and hop %d at most n_fft %d)", model, path, st->dim_head, st->win,
                       st->hop, st->n_fft);
        goto out;
    }
    /* the stems' names */
    const char *inst = sl_st_meta(f, "instruments");
    int n_names = 0;
    for (const char *p = inst ? inst : ""; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (n_names == RF_MAX_STEMS || !len || len >= sizeof st->names[0]) {
            n_names = -1;
            break;
        }
        memcpy(st->names[n_names], p, len);
        st->names[n_names++][len] = 0;
        p = e ? e + 1 : p + len;
    }
    if (n_names != st->N) {
        rc = sl_seterr(SL_EFORMAT, "separation model %s: %s: metadata instruments '%s' must name the %d stem%s",
                       model, path, inst ? inst : "(missing)", st->N, st->N > 1 ? "s" : "");
        goto out;
    }
    if ((rc = band_geometry(&L, st, &idx)) < 0)
        goto out;
    /* sizes from the tensors: feed-forward width and the mask MLPs' hidden width and depth */
    const sl_st_tensor *t = sl_st_find(f, "layers.0.0.layers.0.1.net.1.weight");
    const sl_st_tensor *m0 = sl_st_find(f, "mask_estimators.0.to_freqs.0.0.0.weight");
    if (!t || t->ndim != 2 || !m0 || m0->ndim != 2) {
        rc = sl_seterr(SL_EFORMAT, "separation model %s: %s: tensor '%s' missing or not a matrix", model, path,
                       !t || t->ndim != 2 ? "layers.0.0.layers.0.1.net.1.weight" : "mask_estimators.0.to_freqs.0.0.0.weight");
        goto out;
    }
    st->ff_hidden = (int)t->shape[0];
    st->mlp_hidden = (int)m0->shape[0];
    st->mlp_layers = 0;
    while (st->mlp_layers <= RF_MAX_MLP && present(&L, "mask_estimators.0.to_freqs.0.0.%d.weight", 2 * st->mlp_layers))
        st->mlp_layers++;
    /* lucidrains' conventions: BSRoformer's MLP has `depth` linear layers, MelBandRoformer's depth + 1 */
    const int want_mlp = arch == RF_BS ? mdepth : mdepth + 1;
    if (st->mlp_layers != want_mlp) {
        rc = sl_seterr(SL_EFORMAT, "separation model %s: %s: mask estimators have %d linear layers, "
                                   "mask_estimator_depth %d means %d for this architecture", model, path,
                       st->mlp_layers, mdepth, want_mlp);
        goto out;
    }
    /* band split */
    const int K = st->K, dim = st->dim, N = st->N, ML = st->mlp_layers;
    st->band_g = calloc((size_t)K, sizeof(float *));
    st->band_w = calloc((size_t)K, sizeof(float *));
    st->band_b = calloc((size_t)K, sizeof(float *));
    const int n_tf = st->depth * (st->tdepth + st->fdepth);
    st->layers = calloc((size_t)n_tf, sizeof(rf_layer));
    st->tnorm = calloc((size_t)st->depth * 2, sizeof(float *));
    st->mlp_w = calloc((size_t)N * K * ML, sizeof(float *));
    st->mlp_b = calloc((size_t)N * K * ML, sizeof(float *));
    if (!st->band_g || !st->band_w || !st->band_b || !st->layers || !st->tnorm || !st->mlp_w || !st->mlp_b) {
        rc = sl_seterr(SL_ENOMEM, "separation model %s: out of memory", model);
        goto out;
    }
    for (int k = 0; k < K && !rc; k++) {
        rc = put(ctx, &st->band_g[k], take(&L, st->din[k], 0, "band_split.to_features.%d.0.gamma", k), (size_t)st->din[k]);
        if (!rc)
            rc = put(ctx, &st->band_w[k], take(&L, dim, st->din[k], "band_split.to_features.%d.1.weight", k),
                     (size_t)dim * st->din[k]);
        if (!rc)
            rc = put(ctx, &st->band_b[k], take(&L, dim, 0, "band_split.to_features.%d.1.bias", k), (size_t)dim);
    }
    /* transformers; default rotary frequencies unless the checkpoint stores them */
    for (int ax = 0; ax < 2; ax++)
        for (int i = 0; i < st->dim_head / 2; i++)
            st->inv_freq[ax][i] = 1.0f / powf(10000.0f, (float)(2 * i) / (float)st->dim_head);
    int li = 0;
    for (int l = 0; l < st->depth && !rc; l++)
        for (int ax = 0; ax < 2 && !rc; ax++) {
            const int nd = ax ? st->fdepth : st->tdepth;
            for (int d = 0; d < nd && !rc; d++) {
                char pre[96];
                snprintf(pre, sizeof pre, "layers.%d.%d.layers.%d", l, ax, d);
                rc = load_layer(&L, ctx, st, &st->layers[li++], pre);
            }
            if (!rc && arch == RF_MEL)
                rc = put(ctx, &st->tnorm[l * 2 + ax], take(&L, dim, 0, "layers.%d.%d.norm.gamma", l, ax), (size_t)dim);
        }
    if (!rc && arch == RF_BS)
        rc = put(ctx, &st->final_g, take(&L, dim, 0, "final_norm.gamma"), (size_t)dim);
    /* mask estimators: Linear(dim, hidden), Tanh, ..., Linear(hidden, 2 * din), then GLU */
    for (int n = 0; n < N && !rc; n++)
        for (int k = 0; k < K && !rc; k++)
            for (int i = 0; i < ML && !rc; i++) {
                const int in = i ? st->mlp_hidden : dim, out = i == ML - 1 ? 2 * st->din[k] : st->mlp_hidden;
                const size_t e = ((size_t)n * K + k) * ML + i;
                rc = put(ctx, &st->mlp_w[e], take(&L, out, in, "mask_estimators.%d.to_freqs.%d.0.%d.weight", n, k, 2 * i),
                         (size_t)out * in);
                if (!rc)
                    rc = put(ctx, &st->mlp_b[e], take(&L, out, 0, "mask_estimators.%d.to_freqs.%d.0.%d.bias", n, k, 2 * i),
                             (size_t)out);
            }
    /* nothing left over */
    for (size_t i = 0; i < sl_st_count(f) && !rc; i++)
        if (!L.used[i])
            rc = sl_seterr(SL_EFORMAT, "separation model %s: %s: tensor '%s' is not part of this architecture "
                                       "(a checkpoint of another model or version; see README.md, separation models)",
                           model, path, sl_st_at(f, i)->name);
    if (rc)
        goto out;
    /* band tables: gather indices and their inverse (DC bins emptied for zero_dc) */
    const size_t nbins = (size_t)(st->n_fft / 2 + 1) * st->S;
    inv_off = malloc((nbins + 1) * sizeof *inv_off);
    inv_idx = malloc((size_t)st->n_feat * sizeof *inv_idx);
    if (!inv_off || !inv_idx) {
        rc = sl_seterr(SL_ENOMEM, "separation model %s: out of memory", model);
        goto out;
    }
    if ((rc = sl_band_inverse(idx, (size_t)st->n_feat, nbins, inv_off, inv_idx)) < 0)
        goto out;
    if (st->zero_dc)
        for (int c = 0; c < st->S; c++)
            inv_off[c] = inv_off[st->S];
    rc = put_i32(ctx, &st->idx, idx, (size_t)st->n_feat);
    if (!rc)
        rc = put_i32(ctx, &st->inv_off, inv_off, nbins + 1);
    if (!rc)
        rc = put_i32(ctx, &st->inv_idx, inv_idx, (size_t)st->n_feat);
    if (!rc) /* uploads from ordinary memory may be queued: wait before freeing the sources */
        rc = sl_op_sync(ctx);
out:
    free(idx);
    free(inv_off);
    free(inv_idx);
    free(L.used);
    sl_st_close(f);
    return rc;
}

void rf_free(sl_op_ctx *ctx, rf_state *st)
{
    sl_op_free(ctx, st->window);
    sl_op_free(ctx, st->idx);
    sl_op_free(ctx, st->inv_off);
    sl_op_free(ctx, st->inv_idx);
    sl_op_free(ctx, st->final_g);
    for (int k = 0; k < st->K; k++) {
        if (st->band_g)
            sl_op_free(ctx, st->band_g[k]);
        if (st->band_w)
            sl_op_free(ctx, st->band_w[k]);
        if (st->band_b)
            sl_op_free(ctx, st->band_b[k]);
    }
    if (st->layers)
        for (int i = 0; i < st->depth * (st->tdepth + st->fdepth); i++) {
            float **p = (float **)&st->layers[i];
            for (size_t j = 0; j < sizeof(rf_layer) / sizeof(float *); j++)
                sl_op_free(ctx, p[j]);
        }
    if (st->tnorm)
        for (int i = 0; i < st->depth * 2; i++)
            sl_op_free(ctx, st->tnorm[i]);
    for (size_t i = 0; st->mlp_w && st->mlp_b && i < (size_t)st->N * st->K * st->mlp_layers; i++) {
        sl_op_free(ctx, st->mlp_w[i]);
        sl_op_free(ctx, st->mlp_b[i]);
    }
    free(st->band_g);
    free(st->band_w);
    free(st->band_b);
    free(st->layers);
    free(st->tnorm);
    free(st->mlp_w);
    free(st->mlp_b);
}
