/* Zero-shot tags with the CLAP text tower (pipeline/zeroshot.h). */
#include "pipeline/zeroshot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "io/safetensors.h"
#include "models/clap_text.h"
#include "pipeline/tags.h"

#define DEFAULT_LABELS "clap_music_labels.txt"

struct sl_zeroshot {
    int n, dim;
    char **labels;  /* n, as written in the file */
    size_t *lines;  /* n: the line of each label */
    float *text;    /* [n][dim], normalised by the text tower */
    double scale;   /* exp(logit_scale_a) */
};

void sl_zeroshot_close(sl_zeroshot *z)
{
    if (!z)
        return;
    for (int i = 0; i < z->n; i++)
        free(z->labels[i]);
    free(z->labels);
    free(z->lines);
    free(z->text);
    free(z);
}

int sl_zeroshot_count(const sl_zeroshot *z) { return z->n; }
const char *const *sl_zeroshot_labels(const sl_zeroshot *z) { return (const char *const *)z->labels; }

/* The labels of f into z->labels; name for messages. */
static int read_labels(sl_zeroshot *z, FILE *f, const char *name)
{
    char *line = NULL;
    size_t cap = 0, alloc = 0;
    ssize_t len;
    int rc = 0;
    for (size_t ln = 1; (len = getline(&line, &cap, f)) >= 0; ln++) {
        char *s = line, *e = line + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (*s == '#')
            continue;
        if (e == s) {
            rc = sl_seterr(SL_ECONFIG, "%s:%zu: blank line (embedding.text_labels takes one label a line)", name, ln);
            break;
        }
        *e = 0;
        for (int i = 0; i < z->n; i++)
            if (!strcmp(z->labels[i], s)) {
                rc = sl_seterr(SL_ECONFIG, "%s:%zu: duplicate label '%s' (also on line %zu)", name, ln, s,
                               z->lines[i]);
                break;
            }
        if (rc)
            break;
        if ((size_t)z->n == alloc) {
            alloc = alloc ? 2 * alloc : 64;
            char **nl = realloc(z->labels, alloc * sizeof *nl);
            if (nl)
                z->labels = nl;
            size_t *nn = nl ? realloc(z->lines, alloc * sizeof *nn) : NULL;
            if (!nn) {
                rc = sl_seterr(SL_ENOMEM, "out of memory");
                break;
            }
            z->lines = nn;
        }
        if (!(z->labels[z->n] = strdup(s))) {
            rc = sl_seterr(SL_ENOMEM, "out of memory");
            break;
        }
        z->lines[z->n++] = ln;
    }
    free(line);
    if (!rc && ferror(f))
        rc = sl_seterr(SL_ECONFIG, "%s: cannot be read", name);
    if (!rc && z->n == 0)
        rc = sl_seterr(SL_ECONFIG, "%s: no labels (embedding.text_labels takes one label a line)", name);
    return rc;
}

static int logit_scale(const char *weights, double *out)
{
    sl_st_file *f = NULL;
    int rc = sl_st_open(&f, weights);
    if (rc)
        return rc;
    const sl_st_tensor *t = sl_st_find(f, "logit_scale_a");
    if (!t || t->dtype != SL_ST_F32 || t->nbytes != sizeof(float)) {
        sl_st_close(f);
        return sl_seterr(SL_ECONFIG, "%s: no logit_scale_a scalar (float32): zero-shot tags need the checkpoint's "
                                     "logit scale; convert it again with tools/convert_clap.py", weights);
    }
    float a;
    memcpy(&a, t->data, sizeof a);
    sl_st_close(f);
    if (!isfinite(a))
        return sl_seterr(SL_EFORMAT, "%s: logit_scale_a is not finite", weights);
    *out = exp((double)a);
    return 0;
}

int sl_zeroshot_open(sl_zeroshot **out, const char *path, const char *tmpl, const char *weights, int dim,
                     sl_op_ctx *ctx)
{
    *out = NULL;
    sl_zeroshot *z = calloc(1, sizeof *z);
    if (!z)
        return sl_seterr(SL_ENOMEM, "out of memory");
    const int dflt = !strcmp(path, "default");
    FILE *f = dflt ? sl_data_open(DEFAULT_LABELS) : fopen(path, "r");
    if (!f) {
        sl_zeroshot_close(z);
        return dflt ? sl_seterr(SL_ECONFIG, "embedding.text_labels: default: data/" DEFAULT_LABELS
                                            " not found (set STEMLINE_DATA_DIR)")
                    : sl_seterr(SL_ECONFIG, "embedding.text_labels: %s: %s", path, strerror(errno));
    }
    int rc = read_labels(z, f, dflt ? "data/" DEFAULT_LABELS : path);
    fclose(f);
    char **prompts = rc ? NULL : calloc((size_t)z->n, sizeof *prompts);
    if (!rc && !prompts)
        rc = sl_seterr(SL_ENOMEM, "out of memory");
    const char *hole = tmpl ? strstr(tmpl, "{}") : NULL;
    for (int i = 0; !rc && i < z->n; i++) {
        size_t ll = strlen(z->labels[i]), tl = tmpl ? strlen(tmpl) : 2;
        if (!(prompts[i] = malloc(tl - 2 + ll + 1))) {
            rc = sl_seterr(SL_ENOMEM, "out of memory");
            break;
        }
        if (hole)
            snprintf(prompts[i], tl - 2 + ll + 1, "%.*s%s%s", (int)(hole - tmpl), tmpl, z->labels[i], hole + 2);
        else
            memcpy(prompts[i], z->labels[i], ll + 1);
    }
    sl_clap_text *t = NULL;
    if (!rc && (rc = sl_clap_text_open(&t, ctx, weights))) {
        char why[512];
        snprintf(why, sizeof why, "%s", sl_lasterr());
        rc = sl_seterr(rc == SL_ENOMEM ? rc : SL_ECONFIG, "embedding.text_labels: the text tower: %s", why);
    }
    if (!rc && sl_clap_text_dim(t) != dim)
        rc = sl_seterr(SL_ECONFIG, "%s: the text tower gives %d-d vectors, the audio tower %d-d ones", weights,
                       sl_clap_text_dim(t), dim);
    if (!rc)
        rc = logit_scale(weights, &z->scale);
    if (!rc && !(z->text = malloc((size_t)z->n * (size_t)dim * sizeof *z->text)))
        rc = sl_seterr(SL_ENOMEM, "out of memory");
    if (!rc)
        rc = sl_clap_text_embed(t, (const char *const *)prompts, (size_t)z->n, z->text, NULL, NULL);
    sl_clap_text_close(t);
    for (int i = 0; prompts && i < z->n; i++)
        free(prompts[i]);
    free(prompts);
    z->dim = dim;
    if (rc) {
        sl_zeroshot_close(z);
        return rc;
    }
    *out = z;
    return 0;
}

int sl_zeroshot_score(const sl_zeroshot *z, const float *v, double *prob, double *cosine)
{
    double ss = 0;
    for (int j = 0; j < z->dim; j++)
        ss += (double)v[j] * v[j];
    if (!(ss > 0) || !isfinite(ss))
        return sl_seterr(SL_EINVAL, "zero-shot tags: the vector is zero or not finite");
    const double inv = 1.0 / sqrt(ss);
    double mx = -INFINITY;
    for (int i = 0; i < z->n; i++) {
        const float *t = z->text + (size_t)i * (size_t)z->dim;
        double d = 0;
        for (int j = 0; j < z->dim; j++)
            d += (double)v[j] * t[j];
        cosine[i] = d * inv;
        prob[i] = z->scale * cosine[i];
        if (prob[i] > mx)
            mx = prob[i];
    }
    double sum = 0;
    for (int i = 0; i < z->n; i++)
        sum += (prob[i] = exp(prob[i] - mx));
    for (int i = 0; i < z->n; i++)
        prob[i] /= sum;
    return 0;
}
