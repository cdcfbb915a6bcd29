/* The index.json sidecar, embedding a whole file the way the runner does, and
 * query by audio; see search.h for the contract (search_impl.h for the files
 * that make up vector search). */
#include "pipeline/search.h"
#include "pipeline/search_impl.h"

#include "common/sl_error.h"
#include "common/sl_json.h"
#include "io/decode.h"
#include "io/npy.h"
#include "pipeline/center.h"
#include "pipeline/segment.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SL_VERSION
#define SL_VERSION "unknown"
#endif

/* ================================================================ sidecar */

static int same_bytes(const char *path, const char *buf, size_t len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    int same = 1;
    size_t off = 0;
    char tmp[4096];
    size_t r;
    while (same && (r = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (off + r > len || memcmp(tmp, buf + off, r) != 0)
            same = 0;
        off += r;
    }
    if (ferror(f) || off != len)
        same = 0;
    fclose(f);
    return same;
}

int sl_shards_write_meta(const char *dir, const char *prefix, const sl_shards_meta *m)
{
    if (!dir || !*dir || !m || !m->model || !m->source || !m->dtype || m->dim <= 0 || m->sample_rate <= 0 ||
        m->channels <= 0 || m->window_samples == 0 || m->hop_samples == 0)
        return sl_seterr(SL_EINVAL, "index.json: missing model, source, dtype, dim, rate, channels or window");
    if (!prefix)
        prefix = "";
    if (strchr(prefix, '/'))
        return sl_seterr(SL_EINVAL, "index.json: prefix '%s' contains '/'", prefix);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return sl_seterr(SL_ENOMEM, "index.json: out of memory");
    char w[64], h[64];
    sl_json_fmt_num(w, sizeof w, (double)m->window_samples / m->sample_rate);
    sl_json_fmt_num(h, sizeof h, (double)m->hop_samples / m->sample_rate);
    fputs("{\n  \"format\": \"stemline-vector-index\",\n  \"format_version\": 1,\n  \"stemline_version\": ", f);
    sl_json_str(f, SL_VERSION);
    fputs(",\n  \"model\": ", f);
    sl_json_str(f, m->model);
    fputs(",\n  \"weights\": ", f);
    sl_json_str(f, m->weights);
    fputs(",\n  \"weights_sha256\": ", f);
    sl_json_str(f, m->weights_sha256);
    fputs(",\n  \"options\": {", f);
    for (size_t i = 0; m->options && i < m->options->n; i++) {
        fputs(i ? ", " : "", f);
        sl_json_str(f, m->options->items[i].key);
        fputs(": ", f);
        sl_json_str(f, m->options->items[i].value ? m->options->items[i].value : "");
    }
    fputs("},\n  \"params\": ", f);
    sl_json_str(f, m->params);
    fputs(",\n  \"source\": ", f);
    sl_json_str(f, m->source);
    fprintf(f, ",\n  \"dim\": %d,\n  \"dtype\": ", m->dim);
    sl_json_str(f, m->dtype);
    fprintf(f,
            ",\n  \"normalize\": %s,\n  \"sample_rate\": %d,\n  \"channels\": %d,\n"
            "  \"window_seconds\": %s,\n  \"hop_seconds\": %s,\n  \"window_samples\": %zu,\n"
            "  \"hop_samples\": %zu,\n",
            m->normalize ? "true" : "false", m->sample_rate, m->channels, w, h, m->window_samples, m->hop_samples);
    if (m->center) {
        fputs("  \"center\": ", f);
        sl_json_str(f, m->center);
        fputs(",\n  \"center_file\": ", f);
        sl_json_str(f, m->center_file);
        fputs(",\n  \"center_hash\": ", f);
        sl_json_str(f, m->center_hash);
        fprintf(f, ",\n  \"center_rows\": %zu,\n", m->center_rows);
    }
    fputs("  \"config_hash\": ", f);
    sl_json_str(f, m->config_hash);
    fputs("\n}\n", f);
    int bad = fflush(f) != 0 || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return sl_seterr(SL_ENOMEM, "index.json: out of memory");
    }
    int rc = sl_mkdirs(dir);
    size_t plen = strlen(dir) + strlen(prefix) + 16;
    char *path = malloc(plen);
    if (!path)
        rc = sl_seterr(SL_ENOMEM, "index.json: out of memory");
    if (rc == 0) {
        snprintf(path, plen, "%s/%sindex.json", dir, prefix);
        if (!same_bytes(path, buf, len))
            rc = sl_write_file_atomic(path, buf, len);
    }
    free(path);
    free(buf);
    return rc;
}

static void meta_free(sl_index_meta *m)
{
    if (!m)
        return;
    free(m->model);
    free(m->weights);
    free(m->weights_sha256);
    free(m->params);
    free(m->source);
    free(m->dtype);
    free(m->version);
    free(m->config_hash);
    free(m->center);
    free(m->center_file);
    free(m->center_hash);
    for (size_t i = 0; i < m->options.n; i++) {
        free(m->options.items[i].key);
        free(m->options.items[i].value);
        free(m->options.items[i].file);
    }
    free(m->options.items);
    free(m->path);
    memset(m, 0, sizeof *m);
}

static int get_int(const sl_json *o, const char *key, long long lo, long long hi, long long *out)
{
    const sl_json *v = sl_json_get(o, key);
    if (!v || v->type != SL_JSON_NUMBER || v->num != floor(v->num) || v->num < (double)lo || v->num > (double)hi)
        return -1;
    *out = (long long)v->num;
    return 0;
}

static int meta_read(const char *path, sl_index_meta *m)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    char *buf = NULL;
    size_t cap = 0, len = 0, r;
    char tmp[4096];
    int rc = 0;
    while ((r = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + r > 1 << 20) {
            rc = sl_seterr(SL_EFORMAT, "%s: larger than 1 MiB", path);
            break;
        }
        if (len + r + 1 > cap) {
            cap = (len + r + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = sl_seterr(SL_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        memcpy(buf + len, tmp, r);
        len += r;
    }
    if (!rc && ferror(f))
        rc = sl_seterr(SL_EIO, "%s: read error", path);
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    sl_json root;
    int jr = sl_json_parse(buf, len, &root);
    free(buf);
    if (jr == SL_ENOMEM)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    if (jr || root.type != SL_JSON_OBJECT) {
        char detail[512]; /* sl_seterr writes where sl_lasterr points: copy it first */
        snprintf(detail, sizeof detail, "%s", jr ? sl_lasterr() : "the top level is some other JSON value");
        sl_json_free(&root);
        return sl_seterr(SL_EFORMAT, "%s: not a JSON object: %s", path, detail);
    }
    const char *why = NULL;
    const char *fmt = sl_json_get_str(&root, "format", NULL);
    long long fv = 0, dim = 0, rate = 0, ch = 0, wl = 0, hl = 0;
    if (!fmt || strcmp(fmt, "stemline-vector-index"))
        why = "\"format\" is not \"stemline-vector-index\"";
    else if (get_int(&root, "format_version", 1, INT_MAX, &fv) || fv != 1)
        why = "unsupported format_version (this stemline reads version 1)";
    else if (get_int(&root, "dim", 1, INT_MAX, &dim) || get_int(&root, "sample_rate", 1, INT_MAX, &rate) ||
             get_int(&root, "channels", 1, SL_SEG_MAX_CH, &ch) ||
             get_int(&root, "window_samples", 1, (long long)1 << 52, &wl) ||
             get_int(&root, "hop_samples", 1, (long long)1 << 52, &hl))
        why = "dim, sample_rate, channels, window_samples or hop_samples missing or out of range";
    if (!why) {
        const char *model = sl_json_get_str(&root, "model", NULL);
        const sl_json *norm = sl_json_get(&root, "normalize"), *opts = sl_json_get(&root, "options");
        if (!model || !*model)
            why = "\"model\" missing";
        else if (!norm || norm->type != SL_JSON_BOOL)
            why = "\"normalize\" is not true/false";
        else if (opts && opts->type != SL_JSON_OBJECT)
            why = "\"options\" is not an object";
        else if (hl > wl)
            why = "hop_samples exceeds window_samples";
        if (!why) {
            m->model = strdup(model);
            m->weights = sl_json_dup_str(&root, "weights");
            m->weights_sha256 = sl_json_dup_str(&root, "weights_sha256");
            m->params = sl_json_dup_str(&root, "params");
            m->source = sl_json_dup_str(&root, "source");
            m->dtype = sl_json_dup_str(&root, "dtype");
            m->version = sl_json_dup_str(&root, "stemline_version");
            m->config_hash = sl_json_dup_str(&root, "config_hash");
            m->center = sl_json_dup_str(&root, "center");
            m->center_file = sl_json_dup_str(&root, "center_file");
            m->center_hash = sl_json_dup_str(&root, "center_hash");
            m->center_rows = (size_t)sl_json_get_num(&root, "center_rows", 0);
            if (m->center && (!m->center_file || !m->center_hash))
                why = "\"center\" without center_file and center_hash";
            m->path = strdup(path);
            m->dim = (int)dim;
            m->sample_rate = (int)rate;
            m->channels = (int)ch;
            m->normalize = norm->b;
            m->window_samples = (size_t)wl;
            m->hop_samples = (size_t)hl;
            int oom = !m->model || !m->path;
            size_t n = opts ? opts->n : 0;
            if (n && !(m->options.items = calloc(n, sizeof *m->options.items)))
                oom = 1;
            for (size_t i = 0; !oom && i < n; i++) {
                if (opts->items[i].type != SL_JSON_STRING) {
                    why = "an option value is not a string";
                    break;
                }
                sl_cfg_opt *o = &m->options.items[m->options.n++];
                o->key = strdup(opts->keys[i]);
                o->value = strdup(opts->items[i].s);
                o->file = strdup(path);
                if (!o->key || !o->value || !o->file)
                    oom = 1;
            }
            if (oom && !why) {
                sl_json_free(&root);
                meta_free(m);
                return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
            }
        }
    }
    sl_json_free(&root);
    if (why) {
        meta_free(m);
        return sl_seterr(SL_EFORMAT, "%s: %s", path, why);
    }
    return 0;
}

int sl_index_meta_read(const char *path, sl_index_meta *m) { return meta_read(path, m); }
void sl_index_meta_free(sl_index_meta *m) { meta_free(m); }

/* ================================================================ embedding */

int sl_embed_mean(const double *vsum, double weight, int dim, int normalize, float *vec)
{
    if (weight <= 0)
        return sl_seterr(SL_EEMPTY, "embed: no audio window was embedded");
    double ss = 0;
    int finite = 1;
    for (int i = 0; i < dim; i++) {
        double v = vsum[i] / weight;
        finite &= isfinite(v) != 0;
        vec[i] = (float)v;
        ss += v * v;
    }
    if (!finite)
        return sl_seterr(SL_ENUMERIC, "embed: the vector is not finite");
    if (normalize && ss > 0)
        for (int i = 0; i < dim; i++)
            vec[i] = (float)(vec[i] / sqrt(ss));
    return 0;
}

static long embed_read(void *arg, float *const *dst, long max)
{
    return sl_decoder_read(arg, dst, max);
}

int sl_embed_file(sl_emb_model *m, const char *path, size_t window_samples, size_t hop_samples, int normalize,
                  float *vec, double *seconds)
{
    const sl_emb_info *info = sl_emb_get_info(m);
    int dim = info->dim, ch = info->channels;
    if (ch < 1 || ch > SL_SEG_MAX_CH)
        return sl_seterr(SL_EUNSUPPORTED, "embed: models with %d channels", ch);
    if (window_samples == 0 || hop_samples == 0 || hop_samples > window_samples ||
        window_samples > ((size_t)1 << 40) / (size_t)ch)
        return sl_seterr(SL_EINVAL, "embed: window %zu / hop %zu samples", window_samples, hop_samples);
    sl_decoder *d = NULL;
    int rc = sl_decoder_open(&d, path, info->sample_rate, ch);
    if (rc)
        return rc;
    sl_segmenter sg;
    int have_sg = 0;
    float *buf = malloc(window_samples * (size_t)ch * sizeof *buf);
    float *wvec = malloc((size_t)dim * sizeof *wvec);
    double *vsum = calloc((size_t)dim, sizeof *vsum);
    double weight = 0;
    if (!buf || !wvec || !vsum) {
        rc = sl_seterr(SL_ENOMEM, "embed %s: out of memory", path);
        goto out;
    }
    rc = sl_segmenter_init(&sg, window_samples, hop_samples, ch);
    if (rc)
        goto out;
    have_sg = 1;
    float *planes[SL_SEG_MAX_CH];
    for (int c = 0; c < ch; c++)
        planes[c] = buf + (size_t)c * window_samples;
    for (;;) {
        long len = sl_segmenter_next(&sg, embed_read, d, planes);
        if (len < 0) {
            rc = (int)len;
            goto out;
        }
        if (len == 0)
            break;
        const float *const *in[1] = {(const float *const *)planes};
        size_t lens[1] = {(size_t)len};
        float *vecs[1] = {wvec};
        rc = sl_emb_run_batch(m, 1, in, lens, vecs, NULL);
        if (rc)
            goto out;
        double w = (double)len;
        for (int i = 0; i < dim; i++)
            vsum[i] += w * wvec[i];
        weight += w;
    }
    if (sg.total == 0) {
        rc = sl_seterr(SL_EEMPTY, "decode: %s: zero-length audio (no sample decoded)", path);
        goto out;
    }
    rc = sl_embed_mean(vsum, weight, dim, normalize, vec);
    if (!rc && seconds)
        *seconds = (double)sg.total / info->sample_rate;
out:
    if (have_sg)
        sl_segmenter_free(&sg);
    sl_decoder_close(d);
    free(buf);
    free(wvec);
    free(vsum);
    return rc;
}

/* ---------------------------------------------------------------- query by audio */

int sl_vindex_open_model(const sl_vindex *ix, sl_op_ctx *ctx, sl_emb_model **out)
{
    *out = NULL;
    const sl_index_meta *m = sl_vindex_meta(ix);
    if (!m)
        return sl_seterr(SL_ENOTFOUND,
                         "%s has no index.json: it was made by an older stemline; re-run the job (done tracks "
                         "are not redone) to record how its vectors were made",
                         ix->dir);
    sl_emb_model *em = NULL;
    int rc = sl_emb_open(&em, m->model, m->weights, &m->options, ctx);
    if (rc)
        return rc;
    const sl_emb_info *info = sl_emb_get_info(em);
    if (info->dim != m->dim || info->sample_rate != m->sample_rate || info->channels != m->channels) {
        sl_seterr(SL_EFORMAT,
                  "%s: model %s now gives dim %d at %d Hz, %d ch, but the shards hold dim %d at %d Hz, %d ch "
                  "(made by stemline %s): re-run the job",
                  m->path, m->model, info->dim, info->sample_rate, info->channels, m->dim, m->sample_rate,
                  m->channels, m->version ? m->version : "?");
        sl_emb_close(em);
        return SL_EFORMAT;
    }
    *out = em;
    return 0;
}

int sl_vindex_embed_file(const sl_vindex *ix, sl_emb_model *em, const char *path, float *vec, double *seconds)
{
    const sl_index_meta *m = sl_vindex_meta(ix);
    if (!m)
        return sl_seterr(SL_ENOTFOUND, "%s has no index.json: it was made by an older stemline; re-run the job",
                         ix->dir);
    if (!m->center)
        return sl_embed_file(em, path, m->window_samples, m->hop_samples, m->normalize, vec, seconds);
    float *mean;
    int rc = sl_center_load(ix->dir, m->center_file, m->center_hash, m->dim, &mean);
    if (!rc)
        rc = sl_embed_file(em, path, m->window_samples, m->hop_samples, 0, vec, seconds);
    if (!rc)
        sl_center_apply(vec, mean, m->dim, m->normalize);
    free(mean);
    return rc;
}
