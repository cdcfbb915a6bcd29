/* Exact cosine search over vector shards, the index.json sidecar, and embedding
 * a whole file the way the runner does; see search.h for the contract. */
#include "pipeline/search.h"

#include "common/sl_error.h"
#include "common/sl_json.h"
#include "common/sl_log.h"
#include "io/decode.h"
#include "io/npy.h"
#include "pipeline/center.h"
#include "pipeline/segment.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SL_VERSION
#define SL_VERSION "unknown"
#endif

/* ================================================================ sidecar */

/* Shortest "%.Ng" that reads back the same, always with '.' or an exponent. */
static void fmt_double(char *out, size_t cap, double x)
{
    if (!isfinite(x)) {
        snprintf(out, cap, "null");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, x);
        for (char *p = out; *p; p++)
            if (*p == ',')
                *p = '.';
        if (strtod(out, NULL) == x)
            break;
    }
    if (!strpbrk(out, ".eEn"))
        strncat(out, ".0", cap - strlen(out) - 1);
}

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
    fmt_double(w, sizeof w, (double)m->window_samples / m->sample_rate);
    fmt_double(h, sizeof h, (double)m->hop_samples / m->sample_rate);
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

/* 1 when two sidecars describe vectors made the same way (dtype may differ). */
static int meta_same(const sl_index_meta *a, const sl_index_meta *b)
{
    if (strcmp(a->model, b->model) || (!a->weights != !b->weights) ||
        (a->weights && strcmp(a->weights, b->weights)) ||
        (a->weights_sha256 && b->weights_sha256 && strcmp(a->weights_sha256, b->weights_sha256)) ||
        a->dim != b->dim || a->sample_rate != b->sample_rate ||
        a->channels != b->channels || a->normalize != b->normalize || a->window_samples != b->window_samples ||
        a->hop_samples != b->hop_samples || a->options.n != b->options.n || !a->center != !b->center ||
        (a->center && (strcmp(a->center, b->center) || strcmp(a->center_hash, b->center_hash))))
        return 0;
    for (size_t i = 0; i < a->options.n; i++)
        if (strcmp(a->options.items[i].key, b->options.items[i].key) ||
            strcmp(a->options.items[i].value, b->options.items[i].value))
            return 0;
    return 1;
}

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

/* ================================================================ the index */

typedef struct {
    char *npy, *jsonl;
    char *prefix;
    long index;
    int f16;
    size_t rows, dim;
    size_t data_off, file_size;
    uint64_t first; /* global row of its row 0 */
} shard;

struct sl_vindex {
    char *dir;
    shard *sh;
    size_t n, cap;
    size_t rows;
    int dim;
    sl_index_meta *metas; /* one per prefix that has shards */
    size_t n_metas;
    int have_meta;        /* every prefix has its sidecar */
    int rows_normalized;
};

size_t sl_vindex_rows(const sl_vindex *ix) { return ix->rows; }
int sl_vindex_dim(const sl_vindex *ix) { return ix->dim; }
size_t sl_vindex_nshards(const sl_vindex *ix) { return ix->n; }
const char *sl_vindex_shard_path(const sl_vindex *ix, size_t s) { return s < ix->n ? ix->sh[s].npy : NULL; }
const sl_index_meta *sl_vindex_meta(const sl_vindex *ix) { return ix->have_meta ? &ix->metas[0] : NULL; }
int sl_vindex_rows_normalized(const sl_vindex *ix) { return ix->rows_normalized; }
void sl_vindex_set_rows_normalized(sl_vindex *ix, int normalized) { ix->rows_normalized = normalized != 0; }

void sl_vindex_close(sl_vindex *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->sh[i].npy);
        free(ix->sh[i].jsonl);
        free(ix->sh[i].prefix);
    }
    for (size_t i = 0; i < ix->n_metas; i++)
        meta_free(&ix->metas[i]);
    free(ix->metas);
    free(ix->sh);
    free(ix->dir);
    free(ix);
}

/* "[s<digits>of<digits>-]shard-<digits>.npy": 1 with the prefix length and index. */
static int parse_npy_name(const char *name, size_t *plen, long *index)
{
    const char *p = name;
    if (p[0] == 's' && p[1] >= '0' && p[1] <= '9') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++;
        if (strncmp(p, "of", 2) != 0 || p[2] < '0' || p[2] > '9')
            return 0;
        p += 2;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p != '-')
            return 0;
        p++;
    }
    *plen = (size_t)(p - name);
    if (strncmp(p, "shard-", 6) != 0 || p[6] < '0' || p[6] > '9')
        return 0;
    char *end;
    errno = 0;
    *index = strtol(p + 6, &end, 10);
    return errno == 0 && !strcmp(end, ".npy");
}

/* File-name order: what sorted(glob("*.npy")) gives in Python, so that row
 * numbers (and ties) agree with the README's numpy / faiss recipe. */
static int shard_cmp(const void *a, const void *b)
{
    const shard *x = a, *y = b;
    return strcmp(x->npy, y->npy);
}

/* Reads the .npy header of s->npy: dtype, shape, data offset. */
static int npy_header_read(shard *s)
{
    int fd = open(s->npy, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    struct stat st;
    unsigned char pre[12];
    char hdr[4097];
    const char *why = NULL;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    ssize_t r = pread(fd, pre, 12, 0);
    size_t hlen = 0, hstart = 0;
    if (r < 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        why = "not a .npy file";
    else if (pre[6] == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
        hstart = 10;
    } else if ((pre[6] == 2 || pre[6] == 3) && r >= 12) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)pre[10] << 16) | ((size_t)pre[11] << 24);
        hstart = 12;
    } else {
        why = "unsupported .npy version";
    }
    if (!why && (hlen >= sizeof hdr || hstart + hlen > (size_t)st.st_size))
        why = "header too long";
    if (!why && pread(fd, hdr, hlen, (off_t)hstart) != (ssize_t)hlen)
        why = "short header";
    close(fd);
    if (!why) {
        hdr[hlen] = 0;
        const char *d = strstr(hdr, "'descr'");
        const char *fo = strstr(hdr, "'fortran_order'");
        const char *sp = strstr(hdr, "'shape'");
        unsigned long long r0, c0;
        if (!d || !fo || !sp)
            why = "header lacks descr, fortran_order or shape";
        else if (strstr(d, "'<f4'") == d + strspn(d + 7, " :") + 7)
            s->f16 = 0;
        else if (strstr(d, "'<f2'") == d + strspn(d + 7, " :") + 7)
            s->f16 = 1;
        else
            why = "dtype is not little-endian float32 or float16";
        if (!why && strncmp(fo + 15 + strspn(fo + 15, " :"), "False", 5) != 0)
            why = "fortran_order arrays are not supported";
        if (!why) {
            const char *q = sp + 7 + strspn(sp + 7, " :");
            if (sscanf(q, "(%llu, %llu)", &r0, &c0) != 2 && sscanf(q, "(%llu,%llu)", &r0, &c0) != 2)
                why = "shape is not 2-D";
            else if (c0 == 0 || c0 > INT_MAX || r0 > ((unsigned long long)1 << 40))
                why = "shape out of range";
            else {
                s->rows = (size_t)r0;
                s->dim = (size_t)c0;
            }
        }
    }
    if (!why) {
        s->data_off = hstart + hlen;
        s->file_size = (size_t)st.st_size;
        if (s->file_size - s->data_off != s->rows * s->dim * (s->f16 ? 2u : 4u))
            why = "file size does not match the shape";
    }
    if (why)
        rc = sl_seterr(SL_EFORMAT, "%s: %s", s->npy, why);
    return rc;
}

int sl_vindex_open(sl_vindex **out, const char *dir)
{
    *out = NULL;
    sl_vindex *ix = calloc(1, sizeof *ix);
    if (!ix || !(ix->dir = strdup(dir))) {
        free(ix);
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    }
    int rc = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        sl_vindex_close(ix);
        if (e == ENOENT || e == ENOTDIR)
            return sl_seterr(SL_ENOTFOUND, "%s: no such folder (no vector shards)", dir);
        return sl_seterr(-e, "%s: %s", dir, strerror(e));
    }
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        size_t plen;
        long index;
        if (!parse_npy_name(de->d_name, &plen, &index))
            continue;
        if (ix->n == ix->cap) {
            size_t nc = ix->cap ? 2 * ix->cap : 16;
            shard *ns = realloc(ix->sh, nc * sizeof *ns);
            if (!ns) {
                rc = sl_seterr(SL_ENOMEM, "search: out of memory");
                break;
            }
            ix->sh = ns;
            ix->cap = nc;
        }
        shard *s = &ix->sh[ix->n];
        memset(s, 0, sizeof *s);
        size_t dl = strlen(dir), nl = strlen(de->d_name);
        s->npy = malloc(dl + nl + 2);
        s->jsonl = malloc(dl + nl + 4);
        s->prefix = strndup(de->d_name, plen);
        s->index = index;
        ix->n++;
        if (!s->npy || !s->jsonl || !s->prefix) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
            break;
        }
        sprintf(s->npy, "%s/%s", dir, de->d_name);
        sprintf(s->jsonl, "%s/%.*s.jsonl", dir, (int)(nl - 4), de->d_name);
    }
    closedir(d);
    if (!rc && ix->n == 0)
        rc = sl_seterr(SL_ENOTFOUND, "%s: no vector shards (shard-NNNNN.npy)", dir);
    if (!rc)
        if (ix->n > 1)
            qsort(ix->sh, ix->n, sizeof *ix->sh, shard_cmp);
    for (size_t i = 0; !rc && i < ix->n; i++) {
        shard *s = &ix->sh[i];
        rc = npy_header_read(s);
        if (rc)
            break;
        if (i == 0)
            ix->dim = (int)s->dim;
        else if ((int)s->dim != ix->dim)
            rc = sl_seterr(SL_EFORMAT, "%s has vectors of dim %zu, %s of dim %d", s->npy, s->dim, ix->sh[0].npy,
                           ix->dim);
        s->first = ix->rows;
        ix->rows += s->rows;
    }
    /* one sidecar per prefix */
    ix->have_meta = 1;
    if (!rc && !(ix->metas = calloc(ix->n, sizeof *ix->metas)))
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
    for (size_t i = 0; !rc && i < ix->n; i++) {
        if (i > 0 && !strcmp(ix->sh[i].prefix, ix->sh[i - 1].prefix))
            continue;
        char *mp = malloc(strlen(dir) + strlen(ix->sh[i].prefix) + 16);
        if (!mp) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
            break;
        }
        sprintf(mp, "%s/%sindex.json", dir, ix->sh[i].prefix);
        if (access(mp, F_OK) != 0) {
            ix->have_meta = 0;
        } else {
            sl_index_meta *m = &ix->metas[ix->n_metas];
            rc = meta_read(mp, m);
            if (!rc) {
                ix->n_metas++;
                if (m->dim != ix->dim)
                    rc = sl_seterr(SL_EFORMAT, "%s says dim %d but the shards have dim %d", mp, m->dim, ix->dim);
                else if (ix->n_metas > 1 && !meta_same(&ix->metas[0], m) && m->center && ix->metas[0].center &&
                         strcmp(m->center_hash, ix->metas[0].center_hash))
                    rc = sl_seterr(SL_EFORMAT,
                                   "%s and %s: these shards are centred on different means (each shard of a "
                                   "sharded job on its own, with embedding.center: catalog): run `stemline merge` "
                                   "to centre them all on the catalog mean",
                                   ix->metas[0].path, mp);
                else if (ix->n_metas > 1 && !meta_same(&ix->metas[0], m))
                    rc = sl_seterr(SL_EFORMAT,
                                   "%s and %s: these shards were made with different embedding settings; "
                                   "search one output folder per job",
                                   ix->metas[0].path, mp);
            }
        }
        free(mp);
    }
    if (!rc) {
        int all_f32 = 1;
        for (size_t i = 0; i < ix->n; i++)
            all_f32 &= !ix->sh[i].f16;
        ix->rows_normalized = ix->have_meta && ix->n_metas > 0 && ix->metas[0].normalize && all_f32;
        if (ix->n_metas == 0)
            ix->have_meta = 0;
    }
    if (rc) {
        sl_vindex_close(ix);
        return rc;
    }
    *out = ix;
    return 0;
}

/* ---------------------------------------------------------------- top k */

typedef struct {
    double score;
    uint64_t global;
    size_t shard, row;
} cand;

/* a ranks below b: lower score, or the same score later in row order */
static int cand_worse(const cand *a, const cand *b)
{
    return a->score < b->score || (a->score == b->score && a->global > b->global);
}

static void cand_sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_worse(&h[l], &h[w]))
            w = l;
        if (r < n && cand_worse(&h[r], &h[w]))
            w = r;
        if (w == i)
            return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void cand_push(cand *h, size_t *n, size_t k, const cand *c)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = *c;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!cand_worse(&h[i], &h[p]))
                break;
            cand t = h[i];
            h[i] = h[p];
            h[p] = t;
            i = p;
        }
    } else if (cand_worse(&h[0], c)) {
        h[0] = *c;
        cand_sift_down(h, *n, 0);
    }
}

/* min-heap of floats: the k best BLAS scores seen, for the admission threshold */
static void fheap_push(float *h, size_t *n, size_t k, float x)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = x;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (h[p] <= h[i])
                break;
            float t = h[i];
            h[i] = h[p];
            h[p] = t;
            i = p;
        }
        return;
    }
    if (x <= h[0])
        return;
    h[0] = x;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && h[l] < h[m])
            m = l;
        if (r < *n && h[r] < h[m])
            m = r;
        if (m == i)
            return;
        float t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cand_rank_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->global > y->global) - (x->global < y->global);
}

/* The exact score: double-precision dot product (and norm), fixed order. */
static double exact_score(const float *q, const float *row, size_t dim, int divide)
{
    double dot = 0, ss = 0;
    for (size_t i = 0; i < dim; i++)
        dot += (double)q[i] * (double)row[i];
    if (!isfinite(dot))
        return -INFINITY;
    if (!divide)
        return dot;
    for (size_t i = 0; i < dim; i++)
        ss += (double)row[i] * (double)row[i];
    if (!isfinite(ss))
        return -INFINITY;
    return ss > 0 ? dot / sqrt(ss) : 0.0;
}

/* A proven bound on |float score - exact score| (float rounding of a dot product
 * of length dim in any summation order, FMA or not, plus the division by the row
 * norm or the scaling of the row by its inverse norm), with a factor of 2 to
 * spare: a row that may still be in the top k is never turned away, so neither
 * the block size nor the backend changes the result. */
static double search_eps(size_t dim)
{
    const double u = 1.0 / 16777216.0;
    return (double)(float)(2.0 * ((double)dim * u / (1.0 - (double)dim * u) + 8.0 * u));
}

/* Q[q] = queries[q] / |queries[q]| (double norm, rounded to float); 0 for a zero
 * or non-finite query. */
static void normalise_queries(const float *queries, size_t nq, size_t dim, float *Q)
{
    for (size_t q = 0; q < nq; q++) {
        const float *x = queries + q * dim;
        double ss = 0;
        for (size_t i = 0; i < dim; i++)
            ss += (double)x[i] * x[i];
        double nrm = sqrt(ss);
        for (size_t i = 0; i < dim; i++)
            Q[q * dim + i] = nrm > 0 && isfinite(nrm) ? (float)(x[i] / nrm) : 0.0f;
    }
}

/* Maps shard s read-only (checking it has not changed size since it was opened).
 * 0 or a negative code with the path in sl_lasterr(); *base = MAP_FAILED on error. */
static int shard_map(const shard *s, unsigned char **base)
{
    *base = MAP_FAILED;
    int fd = open(s->npy, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    if ((size_t)st.st_size != s->file_size) {
        close(fd);
        return sl_seterr(SL_EFORMAT, "%s changed while it was searched (re-run the search)", s->npy);
    }
    unsigned char *b = mmap(NULL, s->file_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (b == MAP_FAILED) {
        int e = errno;
        return sl_seterr(-e, "%s: mmap: %s", s->npy, strerror(e));
    }
    madvise(b, s->file_size, MADV_SEQUENTIAL);
    *base = b;
    return 0;
}

/* Maps the pages of rows [r0, r0 + m) of a mapped shard in one call rather than
 * one fault at a time (best effort: older kernels refuse, and faults do the same). */
static void shard_populate(const shard *s, unsigned char *base, size_t r0, size_t m, size_t rowb, size_t page)
{
#ifdef MADV_POPULATE_READ
    size_t a0 = (s->data_off + r0 * rowb) / page * page;
    madvise(base + a0, s->data_off + (r0 + m) * rowb - a0, MADV_POPULATE_READ);
#else
    (void)s, (void)base, (void)r0, (void)m, (void)rowb, (void)page;
#endif
}

int sl_vindex_search(sl_vindex *ix, const float *queries, size_t nq, size_t k, size_t block_rows,
                     sl_search_hit *hits, size_t *n_hits)
{
    *n_hits = 0;
    if (!ix || (!queries && nq) || (!hits && nq && k))
        return sl_seterr(SL_EINVAL, "search: no index, queries or result array");
    if (nq == 0 || k == 0)
        return 0;
    size_t dim = (size_t)ix->dim;
    size_t kk = k < ix->rows ? k : ix->rows;
    if (kk == 0)
        return 0;
    if (block_rows == 0)
        block_rows = SL_SEARCH_DEFAULT_BLOCK_ROWS;
    if (nq > INT_MAX / 2 || dim > INT_MAX || block_rows > INT_MAX || block_rows > SIZE_MAX / 8 / (dim + nq + 1))
        return sl_seterr(SL_EINVAL, "search: %zu queries in blocks of %zu rows of dim %zu are too large", nq,
                         block_rows, dim);
    int divide = !ix->rows_normalized;
    float eps = (float)search_eps(dim);

    float *Q = malloc(nq * dim * sizeof *Q);
    float *S = malloc(block_rows * nq * sizeof *S);
    float *inv = divide ? malloc(block_rows * sizeof *inv) : NULL;
    float *fbuf = NULL; /* float16 rows converted, or float32 rows that are not aligned */
    float *fh = malloc(nq * kk * sizeof *fh);
    size_t *fn = calloc(nq, sizeof *fn), *cn = calloc(nq, sizeof *cn);
    cand *ch = malloc(nq * kk * sizeof *ch);
    int rc = 0;
    if (!Q || !S || (divide && !inv) || !fh || !fn || !cn || !ch) {
        rc = sl_seterr(SL_ENOMEM, "search: out of memory for blocks of %zu rows", block_rows);
        goto out;
    }
    normalise_queries(queries, nq, dim, Q);
    long page = sysconf(_SC_PAGESIZE);
    for (size_t si = 0; !rc && si < ix->n; si++) {
        shard *s = &ix->sh[si];
        if (s->rows == 0)
            continue;
        unsigned char *base;
        if ((rc = shard_map(s, &base)) != 0)
            break;
        size_t isz = s->f16 ? 2 : 4, rowb = dim * isz, dropped = 0;
        int direct = !s->f16 && s->data_off % sizeof(float) == 0;
        int big = s->file_size / 4 > block_rows * rowb;
        if (!direct && !fbuf && !(fbuf = malloc(block_rows * dim * sizeof *fbuf))) {
            munmap(base, s->file_size);
            rc = sl_seterr(SL_ENOMEM, "search: out of memory for blocks of %zu rows", block_rows);
            break;
        }
        for (size_t r0 = 0; r0 < s->rows; r0 += block_rows) {
            size_t m = s->rows - r0 < block_rows ? s->rows - r0 : block_rows;
            const unsigned char *src = base + s->data_off + r0 * rowb;
            shard_populate(s, base, r0, m, rowb, (size_t)page);
            const float *B;
            if (direct) {
                B = (const float *)(const void *)src;
            } else if (s->f16) {
                for (size_t i = 0; i < m * dim; i++)
                    fbuf[i] = sl_f16_to_f32((unsigned short)(src[2 * i] | (src[2 * i + 1] << 8)));
                B = fbuf;
            } else {
                memcpy(fbuf, src, m * rowb);
                B = fbuf;
            }
            if (nq == 1)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)m, (int)dim, 1.0f, B, (int)dim, Q, 1, 0.0f, S, 1);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nq, (int)dim, 1.0f, B, (int)dim,
                            Q, (int)dim, 0.0f, S, (int)nq);
            if (divide)
                for (size_t r = 0; r < m; r++) {
                    const float *row = B + r * dim;
                    double ss = 0;
                    for (size_t i = 0; i < dim; i++)
                        ss += (double)row[i] * row[i];
                    inv[r] = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
                }
            for (size_t r = 0; r < m; r++) {
                for (size_t q = 0; q < nq; q++) {
                    float sb = S[r * nq + q];
                    if (divide)
                        sb *= inv[r];
                    float *h = fh + q * kk;
                    int full = fn[q] == kk;
                    /* admitted: may be in the top k, within the rounding bound */
                    if (full && isfinite(sb) && sb < h[0] - 2 * eps)
                        continue;
                    if (isfinite(sb))
                        fheap_push(h, &fn[q], kk, sb);
                    cand c = {exact_score(Q + q * dim, B + r * dim, dim, divide), s->first + r0 + r, si, r0 + r};
                    cand_push(ch + q * kk, &cn[q], kk, &c);
                }
            }
            /* drop the pages of rows already scored: memory stays bounded by the block
             * (a shard of a few blocks is unmapped whole soon enough) */
            size_t done = (s->data_off + (r0 + m) * rowb) / (size_t)page * (size_t)page;
            if (big && done > dropped) {
                madvise(base + dropped, done - dropped, MADV_DONTNEED);
                dropped = done;
            }
        }
        munmap(base, s->file_size);
    }
    if (!rc) {
        for (size_t q = 0; q < nq; q++) {
            cand *c = ch + q * kk;
            if (cn[q] > 1)
                qsort(c, cn[q], sizeof *c, cand_rank_cmp);
            for (size_t j = 0; j < cn[q]; j++) {
                sl_search_hit *h = &hits[q * k + j];
                memset(h, 0, sizeof *h);
                h->score = c[j].score;
                h->shard = c[j].shard;
                h->row = c[j].row;
                h->global = c[j].global;
            }
        }
        *n_hits = kk;
    }
out:
    free(Q);
    free(S);
    free(inv);
    free(fbuf);
    free(fh);
    free(fn);
    free(cn);
    free(ch);
    return rc;
}

/* ---------------------------------------------------------------- on an op backend
 * The same exact result through the op layer (kernels/ops.h), so that a GPU does
 * the scanning: blocks of rows (across shard boundaries) are converted to float
 * on the host (float16 widened; rows divided by their norms unless trusted to be
 * unit length) into one of two staging buffers, uploaded, scored by ONE gemm
 * (queries x block^T) and merged by the topk op into a running top K per query
 * that stays in backend memory; only the final K per query come back. The host
 * fills the next block while the device works on the current one (a sync before
 * each upload frees the other staging buffer).
 *
 * The K candidates of a query are then rescored in double (exact_score, as the
 * CPU path), ranked by (score, row order), and the first k kept. That is the
 * exact top k when a certificate holds: every row not among the K has a float
 * score <= t (the K-th float score), so an exact score <= t + eps; if
 * t + eps < (k-th exact score) no such row can rank in the top k. Rows whose
 * float score is NaN or -inf hold a non-finite value (their exact score is
 * -inf), so they are below any finite k-th score (and a zero query scores
 * exactly 0 everywhere, so its float ranking is the exact one). K starts at
 * k + max(k, 32); a query whose certificate fails (more near-ties at its k-th
 * score than K covers: duplicate or near-duplicate vectors) is searched again
 * with K x 8, up to the block size, and past that by the CPU path. Scores and
 * neighbours are therefore those of sl_vindex_search, bit for bit, whatever the
 * backend, the block size or the float rounding of the device. */

typedef struct {
    sl_op_ctx *ctx;
    size_t dim, np, K, bk;  /* queries in this pass, kept per query, rows per block */
    float *dQ, *dB, *dS, *dTs;
    int64_t *dTi;
    float *stage[2];        /* host staging (page-locked on CUDA) */
    int cur;
    size_t queued;          /* blocks queued so far in this pass */
    uint64_t next_global;   /* global row of the current stage's first row */
} ops_run;

/* Queues the current stage (m rows): upload, gemm, topk. */
static int ops_flush(ops_run *o, size_t m)
{
    int rc = 0;
    /* the previous block's upload read the other stage: wait before it is refilled */
    if (o->queued && (rc = sl_op_sync(o->ctx)) != 0)
        return rc;
    if ((rc = sl_op_upload(o->ctx, o->dB, o->stage[o->cur], m * o->dim * sizeof(float))) != 0)
        return rc;
    sl_gemm_args g = {.batch = 1, .m = o->np, .n = m, .k = o->dim, .x = o->dQ, .ldx = o->dim, .w = o->dB,
                      .ldw = o->dim, .act = SL_ACT_NONE, .y = o->dS, .ldy = m};
    if ((rc = sl_op_gemm(o->ctx, &g)) != 0)
        return rc;
    sl_topk_args t = {.nq = o->np, .n = m, .k = o->K, .scores = o->dS, .ld = m, .base = (int64_t)o->next_global,
                      .reset = o->queued == 0, .top_score = o->dTs, .top_index = o->dTi};
    if ((rc = sl_op_topk(o->ctx, &t)) != 0)
        return rc;
    o->queued++;
    o->next_global += m;
    o->cur ^= 1;
    return 0;
}

/* One pass over the catalog for o->np queries (o->dQ uploaded): the K best
 * (float score, global row) per query into ts / ti (host, np x K). */
static int ops_pass(sl_vindex *ix, ops_run *o, int divide, float *ts, int64_t *ti)
{
    const size_t dim = o->dim, bk = o->bk;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t fill = 0;
    int rc = 0;
    o->queued = 0;
    o->next_global = 0;
    for (size_t si = 0; !rc && si < ix->n; si++) {
        shard *s = &ix->sh[si];
        if (s->rows == 0)
            continue;
        unsigned char *base;
        if ((rc = shard_map(s, &base)) != 0)
            break;
        const size_t isz = s->f16 ? 2 : 4, rowb = dim * isz;
        const int big = s->file_size / 4 > bk * rowb;
        size_t dropped = 0;
        for (size_t r0 = 0; !rc && r0 < s->rows;) {
            size_t m = s->rows - r0 < bk - fill ? s->rows - r0 : bk - fill;
            const unsigned char *src = base + s->data_off + r0 * rowb;
            float *dst = o->stage[o->cur] + fill * dim;
            shard_populate(s, base, r0, m, rowb, page);
            if (s->f16)
                for (size_t i = 0; i < m * dim; i++)
                    dst[i] = sl_f16_to_f32((unsigned short)(src[2 * i] | (src[2 * i + 1] << 8)));
            else
                memcpy(dst, src, m * rowb);
            if (divide)
                for (size_t r = 0; r < m; r++) {
                    float *row = dst + r * dim;
                    double ss = 0;
                    for (size_t i = 0; i < dim; i++)
                        ss += (double)row[i] * row[i];
                    const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
                    for (size_t i = 0; i < dim; i++)
                        row[i] *= inv;
                }
            fill += m;
            r0 += m;
            if (fill == bk) {
                rc = ops_flush(o, fill);
                fill = 0;
            }
            size_t done = (s->data_off + r0 * rowb) / page * page;
            if (big && done > dropped) {
                madvise(base + dropped, done - dropped, MADV_DONTNEED);
                dropped = done;
            }
        }
        munmap(base, s->file_size);
    }
    if (!rc && fill)
        rc = ops_flush(o, fill);
    if (!rc)
        rc = sl_op_download(o->ctx, ts, o->dTs, o->np * o->K * sizeof *ts);
    if (!rc)
        rc = sl_op_download(o->ctx, ti, o->dTi, o->np * o->K * sizeof *ti);
    return rc;
}

/* The shard holding global row g: the last one starting at or before g (a shard
 * without rows starts where the next one does, so it is never the last). */
static size_t shard_of(const sl_vindex *ix, uint64_t g)
{
    size_t lo = 0, hi = ix->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->sh[mid].first <= g)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

typedef struct {
    uint64_t global;
    size_t slot; /* p * K + j */
} rescore_ref;

static int rescore_ref_cmp(const void *a, const void *b)
{
    const rescore_ref *x = a, *y = b;
    if (x->global != y->global)
        return x->global < y->global ? -1 : 1;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

/* ex[p*K + j] = exact score of candidate ti[p*K + j] for query Qp[p]: each row
 * read once (pread, in row order), whatever the number of queries naming it. */
static int rescore(sl_vindex *ix, const float *Qp, size_t np, size_t K, const int64_t *ti, int divide, double *ex)
{
    const size_t dim = (size_t)ix->dim, nr = np * K;
    rescore_ref *refs = malloc(nr * sizeof *refs);
    unsigned char *bytes = malloc(dim * 4);
    float *row = malloc(dim * sizeof *row);
    int rc = 0, fd = -1;
    size_t fd_shard = SIZE_MAX;
    if (!refs || !bytes || !row) {
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nr; i++) {
        if (ti[i] < 0 || (uint64_t)ti[i] >= ix->rows) {
            rc = sl_seterr(SL_EDEVICE, "search: the topk op returned row %lld of %zu", (long long)ti[i], ix->rows);
            goto out;
        }
        refs[i].global = (uint64_t)ti[i];
        refs[i].slot = i;
    }
    if (nr > 1)
        qsort(refs, nr, sizeof *refs, rescore_ref_cmp);
    for (size_t i = 0; i < nr;) {
        const uint64_t g = refs[i].global;
        const size_t si = shard_of(ix, g);
        const shard *s = &ix->sh[si];
        const size_t r = (size_t)(g - s->first), isz = s->f16 ? 2 : 4;
        if (si != fd_shard) {
            if (fd >= 0)
                close(fd);
            fd_shard = si;
            if ((fd = open(s->npy, O_RDONLY | O_CLOEXEC)) < 0) {
                int e = errno;
                rc = sl_seterr(-e, "%s: %s", s->npy, strerror(e));
                goto out;
            }
        }
        if (pread(fd, bytes, dim * isz, (off_t)(s->data_off + r * dim * isz)) != (ssize_t)(dim * isz)) {
            rc = sl_seterr(SL_EFORMAT, "%s: short read at row %zu", s->npy, r);
            goto out;
        }
        for (size_t d = 0; d < dim; d++) {
            if (s->f16) {
                row[d] = sl_f16_to_f32((unsigned short)(bytes[2 * d] | (bytes[2 * d + 1] << 8)));
            } else {
                uint32_t x = (uint32_t)bytes[4 * d] | ((uint32_t)bytes[4 * d + 1] << 8) |
                             ((uint32_t)bytes[4 * d + 2] << 16) | ((uint32_t)bytes[4 * d + 3] << 24);
                memcpy(&row[d], &x, 4);
            }
        }
        for (; i < nr && refs[i].global == g; i++)
            ex[refs[i].slot] = exact_score(Qp + refs[i].slot / K * dim, row, dim, divide);
    }
out:
    if (fd >= 0)
        close(fd);
    free(refs);
    free(bytes);
    free(row);
    return rc;
}

int sl_vindex_search_on(sl_vindex *ix, sl_op_ctx *ctx, const float *queries, size_t nq, size_t k, size_t block_rows,
                        sl_search_hit *hits, size_t *n_hits)
{
    if (!ctx)
        return sl_vindex_search(ix, queries, nq, k, block_rows, hits, n_hits);
    *n_hits = 0;
    if (!ix || (!queries && nq) || (!hits && nq && k))
        return sl_seterr(SL_EINVAL, "search: no index, queries or result array");
    if (nq == 0 || k == 0)
        return 0;
    const size_t dim = (size_t)ix->dim, rows = ix->rows;
    const size_t kk = k < rows ? k : rows;
    if (kk == 0)
        return 0;
    if (block_rows == 0)
        block_rows = SL_SEARCH_DEFAULT_BLOCK_ROWS;
    if (nq > INT_MAX / 2 || dim > INT_MAX || block_rows > INT_MAX || block_rows > SIZE_MAX / 8 / (dim + nq + 1))
        return sl_seterr(SL_EINVAL, "search: %zu queries in blocks of %zu rows of dim %zu are too large", nq,
                         block_rows, dim);
    static const sl_op_id need[] = {SL_OP_GEMM, SL_OP_TOPK};
    int rc = sl_op_require(ctx, need, 2, "search");
    if (rc)
        return rc;
    const int divide = !ix->rows_normalized;
    const double eps = search_eps(dim);
    const size_t bk = block_rows < rows ? block_rows : rows;
    /* K: candidates kept per query; at most the block size (memory stays bounded by the block) */
    size_t K = kk + (kk > 32 ? kk : 32);
    if (K > rows)
        K = rows;
    const size_t Kmax = K > bk ? K : bk;
    if (K > ((size_t)1 << 30) || nq > ((size_t)1 << 40) / Kmax)
        return sl_seterr(SL_EINVAL, "search: %zu queries x %zu neighbours are too many for one search", nq, k);

    ops_run o = {.ctx = ctx, .dim = dim, .bk = bk};
    float *Q = malloc(nq * dim * sizeof *Q), *Qp = malloc(nq * dim * sizeof *Qp);
    size_t *pend = malloc(nq * sizeof *pend), np = nq;
    float *ts = NULL;
    int64_t *ti = NULL;
    double *ex = NULL;
    cand *cs = NULL;
    if (!Q || !Qp || !pend) {
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
        goto out;
    }
    normalise_queries(queries, nq, dim, Q);
    for (size_t q = 0; q < nq; q++)
        pend[q] = q;
    for (int h = 0; h < 2 && !rc; h++)
        rc = sl_op_host_alloc(ctx, (void **)&o.stage[h], bk * dim * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&o.dQ, nq * dim * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&o.dB, bk * dim * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&o.dS, nq * bk * sizeof(float));
    while (!rc && np > 0) {
        o.np = np;
        o.K = K;
        free(ts);
        free(ti);
        free(ex);
        free(cs);
        sl_op_free(ctx, o.dTs);
        sl_op_free(ctx, o.dTi);
        o.dTs = NULL;
        o.dTi = NULL;
        ts = malloc(np * K * sizeof *ts);
        ti = malloc(np * K * sizeof *ti);
        ex = malloc(np * K * sizeof *ex);
        cs = malloc(K * sizeof *cs);
        if (!ts || !ti || !ex || !cs) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory for %zu x %zu candidates", np, K);
            break;
        }
        if ((rc = sl_op_alloc(ctx, (void **)&o.dTs, np * K * sizeof(float))) != 0 ||
            (rc = sl_op_alloc(ctx, (void **)&o.dTi, np * K * sizeof(int64_t))) != 0)
            break;
        for (size_t p = 0; p < np; p++)
            memcpy(Qp + p * dim, Q + pend[p] * dim, dim * sizeof *Qp);
        if ((rc = sl_op_upload(ctx, o.dQ, Qp, np * dim * sizeof *Qp)) != 0 ||
            (rc = ops_pass(ix, &o, divide, ts, ti)) != 0 || (rc = rescore(ix, Qp, np, K, ti, divide, ex)) != 0)
            break;
        size_t left = 0;
        for (size_t p = 0; p < np; p++) {
            for (size_t j = 0; j < K; j++) {
                uint64_t g = (uint64_t)ti[p * K + j];
                size_t si = shard_of(ix, g);
                cs[j] = (cand){ex[p * K + j], g, si, (size_t)(g - ix->sh[si].first)};
            }
            qsort(cs, K, sizeof *cs, cand_rank_cmp);
            const double ek = cs[kk - 1].score;
            const float t = ts[p * K + K - 1];
            /* a zero query scores exactly 0 (NaN for a row that is not finite) on every
             * backend: the float ranking is the exact one */
            int zero = 1;
            for (size_t d = 0; zero && d < dim; d++)
                zero = Qp[p * dim + d] == 0.0f;
            const int sure = K >= rows || (isfinite(ek) && (zero || isnan(t) || t == -INFINITY ||
                                                             (isfinite(t) && (double)t + eps < ek)));
            if (!sure) {
                pend[left++] = pend[p];
                continue;
            }
            for (size_t j = 0; j < kk; j++) {
                sl_search_hit *hp = &hits[pend[p] * k + j];
                memset(hp, 0, sizeof *hp);
                hp->score = cs[j].score;
                hp->shard = cs[j].shard;
                hp->row = cs[j].row;
                hp->global = cs[j].global;
            }
        }
        np = left;
        if (np && K >= Kmax)
            break;
        if (np) {
            SL_DEBUG("search: %zu queries have near-ties past %zu candidates; searching them again with more", np,
                     K);
            K = K > Kmax / 8 ? Kmax : K * 8;
        }
    }
    if (!rc && np) {
        /* near-ties beyond the block size: the CPU path admits every row that may tie */
        SL_INFO("search: %zu queries have more than %zu candidates within rounding of their k-th score; "
                "finishing them on the CPU", np, K);
        sl_search_hit *tmp = calloc(np * k, sizeof *tmp);
        size_t n = 0;
        if (!tmp) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
        } else {
            for (size_t p = 0; p < np; p++) /* one scan for all of them; Qp is free again */
                memcpy(Qp + p * dim, queries + pend[p] * dim, dim * sizeof *Qp);
            rc = sl_vindex_search(ix, Qp, np, k, block_rows, tmp, &n);
        }
        for (size_t p = 0; !rc && p < np; p++)
            memcpy(&hits[pend[p] * k], &tmp[p * k], n * sizeof *tmp);
        free(tmp);
    }
    if (!rc)
        *n_hits = kk;
out:
    for (int h = 0; h < 2; h++)
        sl_op_host_free(ctx, o.stage[h]);
    sl_op_free(ctx, o.dQ);
    sl_op_free(ctx, o.dB);
    sl_op_free(ctx, o.dS);
    sl_op_free(ctx, o.dTs);
    sl_op_free(ctx, o.dTi);
    free(Q);
    free(Qp);
    free(pend);
    free(ts);
    free(ti);
    free(ex);
    free(cs);
    return rc;
}

/* ---------------------------------------------------------------- jsonl */

void sl_search_hits_free(sl_search_hit *hits, size_t n)
{
    for (size_t i = 0; hits && i < n; i++) {
        free(hits[i].id);
        free(hits[i].path);
        hits[i].id = hits[i].path = NULL;
    }
}

static int hit_row_cmp(const void *a, const void *b)
{
    const sl_search_hit *const *x = a, *const *y = b;
    return ((*x)->row > (*y)->row) - ((*x)->row < (*y)->row);
}

int sl_vindex_describe(sl_vindex *ix, sl_search_hit *hits, size_t n)
{
    int rc = 0;
    sl_search_hit **want = malloc((n ? n : 1) * sizeof *want);
    if (!want)
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    char *line = NULL;
    size_t lcap = 0;
    for (size_t si = 0; !rc && si < ix->n; si++) {
        size_t nw = 0;
        for (size_t i = 0; i < n; i++)
            if (hits[i].shard == si)
                want[nw++] = &hits[i];
        if (!nw)
            continue;
        if (nw > 1)
            qsort(want, nw, sizeof *want, hit_row_cmp);
        FILE *f = fopen(ix->sh[si].jsonl, "r");
        if (!f) {
            int e = errno;
            rc = sl_seterr(e == ENOENT ? SL_EFORMAT : -e, "%s: %s (the rows of %s are not described)",
                           ix->sh[si].jsonl, strerror(e), ix->sh[si].npy);
            break;
        }
        size_t lineno = 0, w = 0;
        ssize_t len;
        while (w < nw && (len = getline(&line, &lcap, f)) >= 0) {
            size_t this = lineno++;
            if (want[w]->row != this)
                continue;
            sl_json v;
            int jr = sl_json_parse(line, (size_t)len, &v);
            if (jr == SL_ENOMEM) {
                rc = sl_seterr(SL_ENOMEM, "search: out of memory");
                break;
            }
            const char *id = sl_json_get_str(&v, "id", NULL);
            const sl_json *rowv = sl_json_get(&v, "row");
            if (jr || !id || (rowv && (rowv->type != SL_JSON_NUMBER || rowv->num != (double)this))) {
                char detail[512] = ""; /* sl_seterr writes where sl_lasterr points: copy it first */
                if (jr)
                    snprintf(detail, sizeof detail, " (not JSON: %s)", sl_lasterr());
                sl_json_free(&v);
                rc = sl_seterr(SL_EFORMAT, "%s:%zu: not a row object with \"id\" and \"row\": %zu%s",
                               ix->sh[si].jsonl, this + 1, this, detail);
                break;
            }
            char *sid = strdup(id);
            char *spath = sl_json_dup_str(&v, "path");
            double start = sl_json_get_num(&v, "start", 0), end = sl_json_get_num(&v, "end", NAN);
            sl_json_free(&v);
            if (!sid) {
                free(spath);
                rc = sl_seterr(SL_ENOMEM, "search: out of memory");
                break;
            }
            while (w < nw && want[w]->row == this) {
                sl_search_hit *h = want[w++];
                free(h->id);
                free(h->path);
                h->id = strdup(sid);
                h->path = spath ? strdup(spath) : NULL;
                h->start = start;
                h->end = end;
            }
            free(sid);
            free(spath);
        }
        fclose(f);
        if (!rc && w < nw)
            rc = sl_seterr(SL_EFORMAT, "%s has %zu rows, %s has %zu: re-run the job to rewrite them",
                           ix->sh[si].jsonl, lineno, ix->sh[si].npy, ix->sh[si].rows);
    }
    free(line);
    free(want);
    return rc;
}

/* 1 when the id appears in a JSON text exactly as written (no escapes needed). */
static int plain_id(const char *id)
{
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == '/')
            return 0;
    return 1;
}

static int read_row(const shard *s, size_t row, float *vec)
{
    int fd = open(s->npy, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    size_t isz = s->f16 ? 2 : 4, nb = s->dim * isz;
    unsigned char *b = malloc(nb);
    int rc = 0;
    if (!b)
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
    else if (pread(fd, b, nb, (off_t)(s->data_off + row * nb)) != (ssize_t)nb)
        rc = sl_seterr(SL_EFORMAT, "%s: short read at row %zu", s->npy, row);
    close(fd);
    for (size_t i = 0; !rc && i < s->dim; i++) {
        if (s->f16) {
            vec[i] = sl_f16_to_f32((unsigned short)(b[2 * i] | (b[2 * i + 1] << 8)));
        } else {
            uint32_t x = (uint32_t)b[4 * i] | ((uint32_t)b[4 * i + 1] << 8) | ((uint32_t)b[4 * i + 2] << 16) |
                         ((uint32_t)b[4 * i + 3] << 24);
            memcpy(&vec[i], &x, 4);
        }
    }
    free(b);
    return rc;
}

int sl_vindex_find_id(sl_vindex *ix, const char *id, float *vec, size_t *shard_out, size_t *row_out)
{
    int plain = plain_id(id);
    char *line = NULL;
    size_t lcap = 0;
    int rc = SL_ENOTFOUND;
    for (size_t si = 0; rc == SL_ENOTFOUND && si < ix->n; si++) {
        FILE *f = fopen(ix->sh[si].jsonl, "r");
        if (!f) {
            int e = errno;
            rc = sl_seterr(e == ENOENT ? SL_EFORMAT : -e, "%s: %s", ix->sh[si].jsonl, strerror(e));
            break;
        }
        size_t lineno = 0;
        ssize_t len;
        while (rc == SL_ENOTFOUND && (len = getline(&line, &lcap, f)) >= 0) {
            size_t this = lineno++;
            if (plain && !strstr(line, id))
                continue;
            sl_json v;
            int jr = sl_json_parse(line, (size_t)len, &v);
            if (jr == SL_ENOMEM) {
                rc = sl_seterr(SL_ENOMEM, "search: out of memory");
                break;
            }
            if (jr) {
                char detail[512]; /* sl_seterr writes where sl_lasterr points: copy it first */
                snprintf(detail, sizeof detail, "%s", sl_lasterr());
                rc = sl_seterr(SL_EFORMAT, "%s:%zu: not JSON: %s", ix->sh[si].jsonl, this + 1, detail);
                break;
            }
            const char *iv = sl_json_get_str(&v, "id", NULL);
            int match = iv && !strcmp(iv, id);
            sl_json_free(&v);
            if (!match)
                continue;
            if (this >= ix->sh[si].rows) {
                rc = sl_seterr(SL_EFORMAT, "%s has more rows than %s: re-run the job to rewrite them",
                               ix->sh[si].jsonl, ix->sh[si].npy);
                break;
            }
            rc = read_row(&ix->sh[si], this, vec);
            if (!rc) {
                if (shard_out)
                    *shard_out = si;
                if (row_out)
                    *row_out = this;
            }
        }
        fclose(f);
    }
    free(line);
    if (rc == SL_ENOTFOUND)
        return sl_seterr(SL_ENOTFOUND, "track '%s' is not in the shards of %s", id, ix->dir);
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
