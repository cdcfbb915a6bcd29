/* Built-in model registry and the shared option parsing. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/sl_error.h"
#include "model_impl.h"

const char *const sl_sep_model_names[] = {"hpss", "umx", "bs_roformer", "mel_band_roformer", "htdemucs", NULL};
const char *const sl_emb_model_names[] = {"melstats", "cnn14", "clap", NULL};

int sl_model_opt_error(const sl_cfg_opt *o, const char *section, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    return sl_seterr(SL_ECONFIG, "%s:%d:%d: key '%s.options.%s': %s", o->file ? o->file : "?",
                     o->line, o->column, section, o->key, reason);
}

int sl_model_opt_int(const sl_cfg_opt *o, const char *section, long lo, long hi, int odd_only, int *out)
{
    const char *s = o->value ? o->value : "";
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno)
        return sl_model_opt_error(o, section, "expected an integer, got '%s'", s);
    if (v < lo || v > hi)
        return sl_model_opt_error(o, section, "%ld is out of range %ld..%ld", v, lo, hi);
    if (odd_only && v % 2 == 0)
        return sl_model_opt_error(o, section, "must be odd, got %ld", v);
    *out = (int)v;
    return 0;
}

int sl_model_opt_double(const sl_cfg_opt *o, const char *section, double lo, double hi, double *out)
{
    const char *s = o->value ? o->value : "";
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v))
        return sl_model_opt_error(o, section, "expected a finite number, got '%s'", s);
    if (v < lo || v > hi)
        return sl_model_opt_error(o, section, "%g is out of range %g..%g", v, lo, hi);
    *out = v;
    return 0;
}

int sl_model_opt_choice(const sl_cfg_opt *o, const char *section, const char *const *choices, int *out)
{
    const char *s = o->value ? o->value : "";
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (!strcmp(s, choices[i])) {
            *out = i;
            return 0;
        }
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", choices[i]);
    }
    return sl_model_opt_error(o, section, "expected one of %s, got '%s'", list, s);
}

int sl_model_opt_bool(const sl_cfg_opt *o, const char *section, int *out)
{
    static const char *const choices[] = {"false", "true", "no", "yes", "off", "on", "0", "1", NULL};
    int v;
    int rc = sl_model_opt_choice(o, section, choices, &v);
    if (rc == 0)
        *out = v % 2;
    return rc;
}

static void list_names(const char *const *names, char *buf, size_t size)
{
    buf[0] = 0;
    for (int i = 0; names[i]; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, size - l, "%s%s", i ? ", " : "", names[i]);
    }
}

int sl_sep_open(sl_sep_model **out, const char *name, const char *weights, const sl_cfg_opts *opts,
                sl_op_ctx *ctx)
{
    *out = NULL;
    const int is_umx = name && !strcmp(name, "umx");
    const int is_rf = name && (!strcmp(name, "bs_roformer") || !strcmp(name, "mel_band_roformer"));
    const int is_hd = name && !strcmp(name, "htdemucs");
    if (!name || (strcmp(name, "hpss") != 0 && !is_umx && !is_rf && !is_hd)) {
        char list[128];
        list_names(sl_sep_model_names, list, sizeof list);
        return sl_seterr(SL_ECONFIG, "unknown separation model '%s' (built in: %s)", name ? name : "",
                         list);
    }
    if (!is_umx && !is_rf && !is_hd && weights && *weights)
        return sl_seterr(SL_ECONFIG, "separation model '%s' takes no weights (separation.weights is '%s')",
                         name, weights);
    sl_sep_model *m = calloc(1, sizeof *m);
    if (!m)
        return sl_seterr(SL_ENOMEM, "separation model: out of memory");
    m->ctx = ctx;
    int rc = is_umx ? sl_umx_init(m, weights, opts)
             : is_rf ? sl_roformer_init(m, name, weights, opts)
             : is_hd ? sl_htdemucs_init(m, weights, opts)
                     : sl_hpss_init(m, opts);
    if (rc < 0) {
        sl_sep_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

const sl_sep_info *sl_sep_get_info(const sl_sep_model *m) { return &m->info; }

int sl_sep_run(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out)
{
    return m->run(m, in, n, out);
}

void sl_sep_close(sl_sep_model *m)
{
    if (!m)
        return;
    if (m->close)
        m->close(m);
    free(m);
}

int sl_emb_open(sl_emb_model **out, const char *name, const char *weights, const sl_cfg_opts *opts,
                sl_op_ctx *ctx)
{
    *out = NULL;
    const int is_cnn14 = name && !strcmp(name, "cnn14"), is_clap = name && !strcmp(name, "clap");
    if (!name || (strcmp(name, "melstats") != 0 && !is_cnn14 && !is_clap)) {
        char list[128];
        list_names(sl_emb_model_names, list, sizeof list);
        return sl_seterr(SL_ECONFIG, "unknown embedding model '%s' (built in: %s)", name ? name : "",
                         list);
    }
    if (!is_cnn14 && !is_clap && weights && *weights)
        return sl_seterr(SL_ECONFIG, "embedding model '%s' takes no weights (embedding.weights is '%s')",
                         name, weights);
    sl_emb_model *m = calloc(1, sizeof *m);
    if (!m)
        return sl_seterr(SL_ENOMEM, "embedding model: out of memory");
    m->ctx = ctx;
    int rc = is_cnn14  ? sl_cnn14_init(m, weights, opts)
             : is_clap ? sl_clap_audio_init(m, weights, opts)
                       : sl_melstats_init(m, opts);
    if (rc < 0) {
        sl_emb_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

const sl_emb_info *sl_emb_get_info(const sl_emb_model *m) { return &m->info; }

int sl_emb_run(sl_emb_model *m, const float *const *in, size_t n, float *vec)
{
    return m->run(m, in, n, vec);
}

int sl_emb_run_scores(sl_emb_model *m, const float *const *in, size_t n, float *vec, float *scores)
{
    if (!m->run_scores || m->info.n_scores <= 0)
        return sl_seterr(SL_EUNSUPPORTED, "embedding model %s has no classifier head (no scores)", m->info.name);
    return m->run_scores(m, in, n, vec, scores);
}

void sl_emb_close(sl_emb_model *m)
{
    if (!m)
        return;
    if (m->close)
        m->close(m);
    free(m);
}

int sl_model_ws_get(sl_op_ctx *ctx, sl_model_ws *ws, size_t n, const size_t *sizes, float **p)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (sizes[i] + 15) & ~(size_t)15;
    if (total > ws->floats) {
        sl_model_ws_free(ctx, ws);
        int rc = sl_op_alloc(ctx, (void **)&ws->base, total * sizeof(float));
        if (rc < 0)
            return rc;
        ws->floats = total;
    }
    float *at = ws->base;
    for (size_t i = 0; i < n; i++) {
        p[i] = at;
        at += (sizes[i] + 15) & ~(size_t)15;
    }
    return 0;
}

void sl_model_ws_free(sl_op_ctx *ctx, sl_model_ws *ws)
{
    sl_op_free(ctx, ws->base);
    ws->base = NULL;
    ws->floats = 0;
}

int sl_model_upload_new(sl_op_ctx *ctx, float **dst, const float *src, size_t n)
{
    int rc = sl_op_alloc(ctx, (void **)dst, n * sizeof(float));
    if (!rc)
        rc = sl_op_upload(ctx, *dst, src, n * sizeof(float));
    return rc;
}

int sl_model_wrap(sl_op_ctx *ctx, sl_model_inplace *in, float **dst, const float *src, size_t n)
{
    int owned = 0, rc = sl_op_wrap_host(ctx, src, n * sizeof(float), (void **)dst, &owned);
    if (rc < 0 || owned)
        return rc;
    const char *a = (const char *)*dst, *e = a + n * sizeof(float);
    if (!in->lo || a < in->lo)
        in->lo = a;
    if (!in->hi || e > in->hi)
        in->hi = e;
    return rc;
}

void sl_model_free_weight(sl_op_ctx *ctx, const sl_model_inplace *in, float *p)
{
    if (p && !(in->lo && (const char *)p >= in->lo && (const char *)p < in->hi))
        sl_op_free(ctx, p);
}

static int stage_in_place(const sl_op_ctx *ctx) { return !strcmp(sl_op_ctx_backend(ctx), "cpu"); }

float *sl_model_stage(sl_op_ctx *ctx, size_t n)
{
    void *p = NULL;
    if (stage_in_place(ctx)) {
        if (sl_op_alloc(ctx, &p, (n ? n : 1) * sizeof(float)))
            return NULL;
        return p;
    }
    return malloc((n ? n : 1) * sizeof(float));
}

int sl_model_adopt(sl_op_ctx *ctx, float **dst, float **staged, size_t n)
{
    int rc = 0;
    if (stage_in_place(ctx)) {
        *dst = *staged;
    } else {
        rc = sl_model_upload_new(ctx, dst, *staged, n);
        if (!rc) /* uploads from ordinary memory may be queued: wait before freeing the source */
            rc = sl_op_sync(ctx);
        free(*staged);
    }
    *staged = NULL;
    return rc;
}

void sl_model_stage_free(sl_op_ctx *ctx, float *staged)
{
    if (stage_in_place(ctx))
        sl_op_free(ctx, staged);
    else
        free(staged);
}

void sl_model_bn_fold(const float *const v[4], int64_t n, double eps, double *s, double *t)
{
    for (int64_t i = 0; i < n; i++) {
        s[i] = (double)v[0][i] / sqrt((double)v[3][i] + eps);
        t[i] = (double)v[1][i] - (double)v[2][i] * s[i];
    }
}

int sl_model_opt_int_list(const sl_cfg_opt *o, const char *section, long lo, long hi, int max_n, long *out, int *n)
{
    const char *s = o->value ? o->value : "";
    *n = 0;
    for (const char *p = s; *p;) {
        while (*p == ' ')
            p++;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        while (*end == ' ')
            end++;
        if (end == p || errno || (*end && *end != ','))
            return sl_model_opt_error(o, section, "expected integers separated by commas, got '%s'", s);
        if (v < lo || v > hi)
            return sl_model_opt_error(o, section, "%ld is out of range %ld..%ld", v, lo, hi);
        if (*n == max_n)
            return sl_model_opt_error(o, section, "more than %d values", max_n);
        out[(*n)++] = v;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return sl_model_opt_error(o, section, "expected integers separated by commas, got '%s'", s);
    }
    if (!*n)
        return sl_model_opt_error(o, section, "expected integers separated by commas, got '%s'", s);
    return 0;
}

int sl_sep_one_worker_per_track(const char *name) { return name && !strcmp(name, "htdemucs"); }

double sl_emb_weights_shared_bytes(const char *name, const char *weights)
{
    struct stat st;
    if (!name || !weights || !*weights || strcmp(name, "cnn14") || stat(weights, &st) || !sl_cnn14_weights_mapped(weights))
        return 0;
    return (double)st.st_size;
}
