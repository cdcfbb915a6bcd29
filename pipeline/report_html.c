/* report.html from report.json (or merged-report.json), the mix vector shards
 * and the tags of a run; see report_html.h. */
#include "report_html.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"
#include "../io/npy.h"
#include "shardenv.h"

/* ---- reading ---- */

int sl_html_read_json(const char *path, sl_json *out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sl_seterr(errno == ENOENT ? SL_ENOTFOUND : -errno, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t nc = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, nc);
            if (!nb) {
                free(buf);
                fclose(f);
                return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
            cap = nc;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return sl_seterr(-EIO, "%s: read error", path);
    }
    char m[512];
    int rc = sl_json_parse(buf, len, out);
    free(buf);
    if (rc)
        return sl_seterr(rc, "%s: %s", path, sl_errmsg(rc, m, sizeof m));
    return 0;
}

static char *path2(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Names in dir that are PREFIX + tail (prefix NULL: any canonical shard prefix,
 * "" included) where tail passes ok(); sorted. */
static size_t list_names(const char *dir, const char *prefix, int (*ok)(const char *tail), char ***out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **v = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        size_t pl;
        if (prefix) {
            pl = strlen(prefix);
            if (strncmp(name, prefix, pl))
                continue;
        } else {
            int i, c;
            pl = sl_shard_parse_prefix(name, &i, &c);
        }
        if (!ok(name + pl))
            continue;
        char **nv = realloc(v, (n + 1) * sizeof *nv);
        if (!nv)
            break;
        v = nv;
        if ((v[n] = strdup(name)))
            n++;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, by_name);
    *out = v;
    return n;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int is_shard_npy(const char *t)
{
    return strlen(t) == 15 && !strncmp(t, "shard-", 6) && strspn(t + 6, "0123456789") == 5 && !strcmp(t + 11, ".npy");
}
static int is_tags(const char *t) { return !strcmp(t, "tags.jsonl"); }

/* ---- the map: principal components of the vectors ---- */

typedef struct {
    double *x, *y;  /* projections on the first two components */
    char **id;
    size_t n;
    size_t rows;    /* vectors seen */
    int dim;
    double explained[2]; /* share of the variance along each component */
    char why[256];  /* when there is no map */
} pca_map;

/* The two leading eigenvectors of the symmetric C (dim x dim, full) by
 * orthogonal iteration with a final 2x2 Rayleigh-Ritz step: V[0..dim) and
 * V[dim..2 dim), unit length, leading first; lam their eigenvalues. */
static void top2(const double *C, int dim, double *V, double lam[2])
{
    double *W = malloc(2 * (size_t)dim * sizeof *W);
    if (!W) {
        memset(V, 0, 2 * (size_t)dim * sizeof *V);
        lam[0] = lam[1] = 0;
        return;
    }
    /* a fixed start that is not orthogonal to anything in particular */
    for (int i = 0; i < dim; i++) {
        V[i] = 1.0 + 0.01 * i;
        V[dim + i] = (i % 2 ? 1.0 : -1.0) * (1.0 + 0.003 * i);
    }
    for (int it = 0; it < 500; it++) {
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 2, dim, dim, 1.0, V, dim, C, dim, 0.0, W, dim);
        /* Gram-Schmidt */
        double n0 = cblas_dnrm2(dim, W, 1);
        if (!(n0 > 0))
            break;
        cblas_dscal(dim, 1.0 / n0, W, 1);
        double d = cblas_ddot(dim, W, 1, W + dim, 1);
        cblas_daxpy(dim, -d, W, 1, W + dim, 1);
        double n1 = cblas_dnrm2(dim, W + dim, 1);
        if (n1 > 0)
            cblas_dscal(dim, 1.0 / n1, W + dim, 1);
        double change = 0;
        for (int i = 0; i < 2 * dim; i++)
            change = fmax(change, fabs(fabs(W[i]) - fabs(V[i])));
        memcpy(V, W, 2 * (size_t)dim * sizeof *V);
        if (!(n1 > 0) || change < 1e-12)
            break;
    }
    /* M = V^T C V (2x2), then rotate V onto M's eigenvectors */
    double m[3];
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 2, dim, dim, 1.0, V, dim, C, dim, 0.0, W, dim);
    m[0] = cblas_ddot(dim, W, 1, V, 1);
    m[1] = cblas_ddot(dim, W, 1, V + dim, 1);
    m[2] = cblas_ddot(dim, W + dim, 1, V + dim, 1);
    double th = 0.5 * atan2(2 * m[1], m[0] - m[2]), c = cos(th), s = sin(th);
    for (int i = 0; i < dim; i++) {
        double a = V[i], b = V[dim + i];
        V[i] = c * a + s * b;
        V[dim + i] = -s * a + c * b;
    }
    lam[0] = c * c * m[0] + 2 * c * s * m[1] + s * s * m[2];
    lam[1] = s * s * m[0] - 2 * c * s * m[1] + c * c * m[2];
    free(W);
}

#define PCA_BLOCK 512
/* The components are estimated from at most this many rows (evenly spaced), so
 * that the page costs the same time for any catalog. */
#define PCA_COV_ROWS 20000

/* Adds the n rows of X (n x dim) to the sum mu and the upper triangle of C. */
static void cov_add(const double *X, size_t n, int dim, double *mu, double *C)
{
    if (!n)
        return;
    for (size_t i = 0; i < n; i++)
        cblas_daxpy(dim, 1.0, X + i * (size_t)dim, 1, mu, 1);
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dim, (int)n, 1.0, X, dim, 1.0, C, dim);
}

/* The two leading principal directions of the n rows of X (n x dim, n small),
 * from their Gram matrix: with Xc the centred rows and G = Xc Xc^T / (n - 1),
 * G u = lam u gives the covariance's C v = lam v for v = Xc^T u / |Xc^T u|.
 * mu receives the mean, V[2 x dim] the directions, lam their eigenvalues,
 * *trace the covariance's trace. X is centred in place. 0 or SL_ENOMEM. */
static int gram_top2(double *X, size_t n, int dim, double *mu, double *V, double lam[2], double *trace)
{
    double *G = malloc(n * n * sizeof *G), *U = malloc(2 * n * sizeof *U);
    if (!G || !U) {
        free(G);
        free(U);
        return SL_ENOMEM;
    }
    memset(mu, 0, (size_t)dim * sizeof *mu);
    for (size_t i = 0; i < n; i++)
        cblas_daxpy(dim, 1.0, X + i * (size_t)dim, 1, mu, 1);
    cblas_dscal(dim, 1.0 / (double)n, mu, 1);
    for (size_t i = 0; i < n; i++)
        cblas_daxpy(dim, -1.0, mu, 1, X + i * (size_t)dim, 1);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)n, dim, 1.0 / (double)(n - 1), X, dim, X,
                dim, 0.0, G, (int)n);
    *trace = 0;
    for (size_t i = 0; i < n; i++)
        *trace += G[i * n + i];
    top2(G, (int)n, U, lam);
    /* V = U Xc, each row normalised */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 2, dim, (int)n, 1.0, U, (int)n, X, dim, 0.0, V, dim);
    for (int k = 0; k < 2; k++) {
        double nv = cblas_dnrm2(dim, V + (size_t)k * dim, 1);
        if (nv > 0)
            cblas_dscal(dim, 1.0 / nv, V + (size_t)k * dim, 1);
    }
    free(G);
    free(U);
    return 0;
}

typedef struct {
    FILE *npy, *jsonl;
    sl_npy_info info;
    unsigned char *raw;
} shard_file;

static int shard_open(shard_file *s, const char *dir, const char *name, int need_jsonl)
{
    memset(s, 0, sizeof *s);
    char *p = path2(dir, name);
    if (!p)
        return SL_ENOMEM;
    s->npy = fopen(p, "rb");
    int rc = s->npy ? sl_npy_read_header(s->npy, p, &s->info) : -errno;
    free(p);
    if (!rc && need_jsonl) {
        size_t n = strlen(dir) + strlen(name) + 8;
        char *q = malloc(n);
        if (!q)
            return SL_ENOMEM;
        snprintf(q, n, "%s/%.*s.jsonl", dir, (int)(strlen(name) - 4), name);
        s->jsonl = fopen(q, "r");
        free(q);
    }
    return rc;
}

static void shard_close(shard_file *s)
{
    if (s->npy)
        fclose(s->npy);
    if (s->jsonl)
        fclose(s->jsonl);
    free(s->raw);
}

/* Reads the next m rows of s as doubles into X (m x dim). */
static int shard_rows(shard_file *s, double *X, size_t m)
{
    size_t esz = s->info.f16 ? 2 : 4, dim = s->info.cols;
    unsigned char *raw = malloc(m * dim * esz);
    float *tmp = malloc(dim * sizeof *tmp);
    int rc = 0;
    if (!raw || !tmp)
        rc = SL_ENOMEM;
    else if (fread(raw, esz * dim, m, s->npy) != m)
        rc = -EIO;
    for (size_t r = 0; !rc && r < m; r++) {
        sl_npy_unpack(raw + r * dim * esz, tmp, dim, s->info.f16);
        for (size_t j = 0; j < dim; j++)
            X[r * dim + j] = tmp[j];
    }
    free(raw);
    free(tmp);
    return rc;
}

static void pca_compute(const char *dir, const char *prefix, size_t max_points, pca_map *pm)
{
    memset(pm, 0, sizeof *pm);
    char **names;
    size_t nn = list_names(dir, prefix, is_shard_npy, &names);
    if (!nn) {
        snprintf(pm->why, sizeof pm->why, "no vector shards in %s", dir);
        return;
    }
    int dim = 0;
    size_t rows = 0;
    double *C = NULL, *mu = NULL, *X = NULL, *V = NULL;
    /* pass 1: mean and covariance of every cov_step-th row (at most PCA_COV_ROWS rows) */
    size_t total = 0;
    for (size_t k = 0; k < nn; k++) {
        shard_file s;
        if (!shard_open(&s, dir, names[k], 0))
            total += s.info.rows;
        shard_close(&s);
    }
    size_t cov_step = total > PCA_COV_ROWS ? (total + PCA_COV_ROWS - 1) / PCA_COV_ROWS : 1, nb = 0, g0 = 0;
    const size_t sampled = (total + cov_step - 1) / cov_step;
    int gram = 0;
    for (size_t k = 0; k < nn; k++) {
        shard_file s;
        if (shard_open(&s, dir, names[k], 0)) {
            shard_close(&s);
            snprintf(pm->why, sizeof pm->why, "%s: unreadable", names[k]);
            goto out;
        }
        if (!dim) {
            dim = (int)s.info.cols;
            /* fewer rows than dimensions, all in one block: the components
             * come from the rows' Gram matrix (n x n), not the dim x dim
             * covariance (2048 x 2048 for Cnn14: a tenth of a second at the
             * end of every run, for a few tracks) */
            gram = sampled < (size_t)dim && sampled <= PCA_BLOCK;
            C = gram ? NULL : calloc((size_t)dim * dim, sizeof *C);
            mu = calloc((size_t)dim, sizeof *mu);
            X = malloc(PCA_BLOCK * (size_t)dim * sizeof *X);
            V = malloc(2 * (size_t)dim * sizeof *V);
            if ((!gram && !C) || !mu || !X || !V) {
                shard_close(&s);
                snprintf(pm->why, sizeof pm->why, "out of memory");
                goto out;
            }
        } else if ((int)s.info.cols != dim) {
            shard_close(&s);
            snprintf(pm->why, sizeof pm->why, "shards of differing dims (%d and %zu)", dim, s.info.cols);
            goto out;
        }
        for (size_t r = 0; r < s.info.rows; r++, g0++) {
            if (g0 % cov_step) {
                fseek(s.npy, (long)(s.info.cols * (s.info.f16 ? 2 : 4)), SEEK_CUR);
                continue;
            }
            if (shard_rows(&s, X + nb * (size_t)dim, 1)) {
                shard_close(&s);
                snprintf(pm->why, sizeof pm->why, "%s: short read", names[k]);
                goto out;
            }
            if (++nb == PCA_BLOCK && !gram) {
                cov_add(X, nb, dim, mu, C);
                rows += nb;
                nb = 0;
            }
        }
        shard_close(&s);
    }
    if (!gram)
        cov_add(X, nb, dim, mu, C);
    rows += nb;
    pm->rows = total;
    pm->dim = dim;
    if (rows < 3) {
        snprintf(pm->why, sizeof pm->why, "%zu vector%s: too few for a map", rows, rows == 1 ? "" : "s");
        goto out;
    }
    double trace = 0, lam[2];
    if (gram) {
        if (gram_top2(X, rows, dim, mu, V, lam, &trace)) {
            snprintf(pm->why, sizeof pm->why, "out of memory");
            goto out;
        }
    } else {
        cblas_dscal(dim, 1.0 / (double)rows, mu, 1);
        for (int i = 0; i < dim; i++)
            for (int j = i; j < dim; j++) {
                double c = (C[(size_t)i * dim + j] - (double)rows * mu[i] * mu[j]) / (double)(rows - 1);
                C[(size_t)i * dim + j] = C[(size_t)j * dim + i] = c;
                if (i == j)
                    trace += c;
            }
        top2(C, dim, V, lam);
    }
    pm->explained[0] = trace > 0 ? lam[0] / trace : 0;
    pm->explained[1] = trace > 0 ? lam[1] / trace : 0;
    /* pass 2: project every step-th row */
    size_t step = (total + max_points - 1) / max_points, cap = (total + step - 1) / step;
    pm->x = malloc(cap * sizeof *pm->x);
    pm->y = malloc(cap * sizeof *pm->y);
    pm->id = calloc(cap, sizeof *pm->id);
    if (!pm->x || !pm->y || !pm->id) {
        snprintf(pm->why, sizeof pm->why, "out of memory");
        goto out;
    }
    size_t g = 0;
    char *line = NULL;
    size_t lcap = 0;
    for (size_t k = 0; k < nn; k++) {
        shard_file s;
        if (shard_open(&s, dir, names[k], 1)) {
            shard_close(&s);
            break;
        }
        for (size_t r = 0; r < s.info.rows; r++, g++) {
            char *id = NULL;
            if (s.jsonl && getline(&line, &lcap, s.jsonl) > 0 && g % step == 0) {
                sl_json row;
                if (!sl_json_parse(line, strcspn(line, "\n"), &row)) {
                    id = sl_json_dup_str(&row, "id");
                    sl_json_free(&row);
                }
            }
            if (g % step) {
                fseek(s.npy, (long)(s.info.cols * (s.info.f16 ? 2 : 4)), SEEK_CUR);
                continue;
            }
            if (shard_rows(&s, X, 1) || pm->n >= cap) {
                free(id);
                break;
            }
            cblas_daxpy(dim, -1.0, mu, 1, X, 1);
            pm->x[pm->n] = cblas_ddot(dim, X, 1, V, 1);
            pm->y[pm->n] = cblas_ddot(dim, X, 1, V + dim, 1);
            pm->id[pm->n++] = id;
        }
        shard_close(&s);
    }
    free(line);
out:
    free(C);
    free(mu);
    free(X);
    free(V);
    free_names(names, nn);
}

static void pca_free(pca_map *pm)
{
    for (size_t i = 0; i < pm->n; i++)
        free(pm->id[i]);
    free(pm->id);
    free(pm->x);
    free(pm->y);
}

/* ---- tags ---- */

typedef struct {
    char **label;
    double *count;
    size_t n;
    size_t rows;
} tag_hist;

static void tags_count(const char *dir, const char *prefix, tag_hist *th)
{
    memset(th, 0, sizeof *th);
    char **names;
    size_t nn = list_names(dir, prefix, is_tags, &names);
    char *line = NULL;
    size_t lcap = 0;
    for (size_t k = 0; k < nn; k++) {
        char *p = path2(dir, names[k]);
        FILE *f = p ? fopen(p, "r") : NULL;
        free(p);
        if (!f)
            continue;
        ssize_t len;
        while ((len = getline(&line, &lcap, f)) > 0) {
            sl_json row;
            if (sl_json_parse(line, strcspn(line, "\n"), &row))
                continue;
            if (!strcmp(sl_json_get_str(&row, "source", "mix"), "mix")) {
                th->rows++;
                const sl_json *tags = sl_json_get(&row, "tags");
                for (size_t j = 0; j < sl_json_len(tags); j++) {
                    const char *lab = sl_json_get_str(sl_json_at(tags, j), "label", NULL);
                    if (!lab)
                        continue;
                    size_t i = 0;
                    while (i < th->n && strcmp(th->label[i], lab))
                        i++;
                    if (i == th->n) {
                        char **nl = realloc(th->label, (th->n + 1) * sizeof *nl);
                        if (nl)
                            th->label = nl;
                        double *nc = realloc(th->count, (th->n + 1) * sizeof *nc);
                        if (nc)
                            th->count = nc;
                        if (!nl || !nc || !(th->label[th->n] = strdup(lab)))
                            continue;
                        th->count[th->n++] = 0;
                    }
                    th->count[i] += 1;
                }
            }
            sl_json_free(&row);
        }
        fclose(f);
    }
    free(line);
    free_names(names, nn);
}

static void tags_free(tag_hist *th)
{
    for (size_t i = 0; i < th->n; i++)
        free(th->label[i]);
    free(th->label);
    free(th->count);
}

/* ---- the page ---- */

typedef struct {
    sl_json *runs; /* parsed run reports (one, or one per shard for a merged report) */
    char **run_names;
    size_t n_runs;
} runs_t;

static const char *const stage_keys[] = {"decode", "separate", "embed", "write", "shards"};
static const char *const wait_keys[] = {"decode_waited_for_slots_s", "model_waited_for_input_s", "writers_waited_s"};
static const char *const wait_labels[] = {"decoders waited for free segment buffers", "model waited for input",
                                          "writers waited for work"};

/* A JSON value as text for the pipeline table (scalars; arrays and objects compact). */
static void json_text(FILE *f, const sl_json *v)
{
    switch (v->type) {
    case SL_JSON_NULL: fputs("null", f); break;
    case SL_JSON_BOOL: fputs(v->b ? "true" : "false", f); break;
    case SL_JSON_NUMBER: fprintf(f, "%.6g", v->num); break;
    case SL_JSON_STRING: sl_html_esc(f, v->s); break;
    case SL_JSON_ARRAY:
        fputc('[', f);
        for (size_t i = 0; i < v->n && i < 64; i++) {
            fputs(i ? ", " : "", f);
            json_text(f, &v->items[i]);
        }
        fputs(v->n > 64 ? ", ...]" : "]", f);
        break;
    case SL_JSON_OBJECT:
        fputc('{', f);
        for (size_t i = 0; i < v->n; i++) {
            fputs(i ? ", " : "", f);
            sl_html_esc(f, v->keys[i]);
            fputs(": ", f);
            json_text(f, &v->items[i]);
        }
        fputc('}', f);
        break;
    }
}

static void sec_summary(FILE *f, const sl_json *top, int merged)
{
    const sl_json *tr = sl_json_get(top, "tracks");
    fputs("<h2 id=\"summary\">Summary</h2>\n<table>\n", f);
    sl_html_kv_row(f, "output folder", sl_json_get_str(top, "output_dir", NULL));
    sl_html_kv_row(f, "job", sl_json_get_str(top, "job", NULL));
    if (merged) {
        sl_html_kv_row(f, "merged at", sl_json_get_str(top, "merged_at", NULL));
        sl_html_kv_row(f, "complete", sl_json_get_bool(top, "complete", 0) ? "yes" : "no");
        const char *keys[] = {"catalog", "known", "ok", "failed", "missing", "duplicated"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            char k[64];
            snprintf(k, sizeof k, "tracks %s", keys[i]);
            sl_html_kv_num(f, k, sl_json_get_num(tr, keys[i], NAN), "%.0f");
        }
        const sl_json *runs = sl_json_get(top, "runs");
        sl_html_kv_num(f, "x realtime, all shards at once", sl_json_get_num(runs, "x_realtime_all_shards", NAN), "%.2f");
        sl_html_kv_num(f, "x realtime per shard", sl_json_get_num(runs, "x_realtime_per_shard", NAN), "%.2f");
    } else {
        sl_html_kv_row(f, "started", sl_json_get_str(top, "started_at", NULL));
        sl_html_kv_row(f, "finished", sl_json_get_str(top, "finished_at", NULL));
        sl_html_kv_row(f, "backend", sl_json_get_str(top, "backend", NULL));
        sl_html_kv_row(f, "device", sl_json_get_str(top, "device", NULL));
        sl_html_kv_row(f, "separation", sl_json_get_str(top, "separation", NULL));
        sl_html_kv_row(f, "embedding", sl_json_get_str(top, "embedding", NULL));
        const char *keys[] = {"total", "ok", "failed", "skipped", "abandoned"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            char k[64];
            snprintf(k, sizeof k, "tracks %s", keys[i]);
            sl_html_kv_num(f, k, sl_json_get_num(tr, keys[i], NAN), "%.0f");
        }
        sl_html_kv_num(f, "wall seconds", sl_json_get_num(top, "wall_seconds", NAN), "%.1f");
        sl_html_kv_num(f, "x realtime", sl_json_get_num(top, "x_realtime", NAN), "%.2f");
        sl_html_kv_row(f, "interrupted", sl_json_get_bool(top, "interrupted", 0) ? "yes" : "no");
        sl_html_kv_row(f, "fatal error", sl_json_get_str(top, "fatal", NULL));
    }
    sl_html_kv_num(f, "audio seconds", sl_json_get_num(top, "audio_seconds", NAN), "%.1f");
    fputs("</table>\n", f);
}

static void sec_throughput(FILE *f, const runs_t *rs)
{
    fputs("<h2 id=\"throughput\">Throughput over time</h2>\n", f);
    sl_svg_series s[64];
    double *buf[64][2] = {{0}};
    size_t ns = 0;
    for (size_t k = 0; k < rs->n_runs && ns < 64; k++) {
        const sl_json *tp = sl_json_get(&rs->runs[k], "throughput");
        const sl_json *au = sl_json_get(tp, "audio_seconds");
        double w = sl_json_get_num(tp, "bin_seconds", 0);
        size_t n = sl_json_len(au);
        if (!n || !(w > 0))
            continue;
        double *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
        if (!x || !y) {
            free(x);
            free(y);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            x[i] = ((double)i + 1) * w;
            y[i] = sl_json_at(au, i)->num / w;
        }
        buf[ns][0] = x;
        buf[ns][1] = y;
        s[ns] = (sl_svg_series){.name = rs->run_names[k], .x = x, .y = y, .n = n};
        ns++;
    }
    if (ns)
        sl_svg_lines(f, "x realtime (seconds of audio finished per second of wall time)", "seconds since start",
                     "x realtime", s, ns);
    else
        fputs("<p class=\"note\">not recorded (a report of an older stemline)</p>\n", f);
    for (size_t k = 0; k < ns; k++) {
        free(buf[k][0]);
        free(buf[k][1]);
    }
}

static void sec_stages(FILE *f, const runs_t *rs)
{
    fputs("<h2 id=\"stages\">Stages and waits</h2>\n", f);
    double st[5] = {0}, wt[3] = {0}, wall = 0;
    int have_pipe = 0;
    for (size_t k = 0; k < rs->n_runs; k++) {
        const sl_json *stages = sl_json_get(&rs->runs[k], "stages");
        for (int i = 0; i < 5; i++)
            st[i] += sl_json_get_num(sl_json_get(stages, stage_keys[i]), "seconds", 0);
        const sl_json *p = sl_json_get(&rs->runs[k], "pipeline");
        have_pipe |= p != NULL;
        for (int i = 0; i < 3; i++)
            wt[i] += sl_json_get_num(p, wait_keys[i], 0);
        wall += sl_json_get_num(&rs->runs[k], "wall_seconds", 0);
    }
    double occ[5];
    char lab[5][96];
    const char *labels[5];
    for (int i = 0; i < 5; i++) {
        occ[i] = wall > 0 ? 100.0 * st[i] / wall : 0;
        snprintf(lab[i], sizeof lab[i], "%s (%.1f s)", stage_keys[i], st[i]);
        labels[i] = lab[i];
    }
    sl_svg_hbars(f, "Stage occupancy: busy seconds summed over the stage's threads, % of wall time", "%", labels,
                 occ, 5);
    if (have_pipe)
        sl_svg_hbars(f, "Waits (seconds, summed over threads)", "s", wait_labels, wt, 3);
    for (size_t k = 0; k < rs->n_runs; k++) {
        const sl_json *p = sl_json_get(&rs->runs[k], "pipeline");
        if (!p || p->type != SL_JSON_OBJECT)
            continue;
        fputs("<details><summary>pipeline", f);
        if (rs->n_runs > 1) {
            fputs(": ", f);
            sl_html_esc(f, rs->run_names[k]);
        }
        fputs("</summary><table>\n", f);
        for (size_t i = 0; i < p->n; i++) {
            fputs("<tr><th>", f);
            sl_html_esc(f, p->keys[i]);
            fputs("</th><td>", f);
            json_text(f, &p->items[i]);
            fputs("</td></tr>\n", f);
        }
        fputs("</table></details>\n", f);
    }
}

static void sec_batches(FILE *f, const runs_t *rs)
{
    fputs("<h2 id=\"batches\">Batch sizes</h2>\n", f);
    double count[129] = {0};
    int hi = -1;
    for (size_t k = 0; k < rs->n_runs; k++) {
        const sl_json *b = sl_json_get(sl_json_get(&rs->runs[k], "pipeline"), "batch_sizes");
        for (size_t i = 0; i < sl_json_len(b); i++) {
            const sl_json *pair = sl_json_at(b, i);
            if (sl_json_len(pair) != 2)
                continue;
            double sz = sl_json_at(pair, 0)->num;
            int s = sz >= 128 ? 128 : sz < 0 ? 0 : (int)sz;
            count[s] += sl_json_at(pair, 1)->num;
            hi = s > hi ? s : hi;
        }
    }
    if (hi < 1) {
        fputs("<p class=\"note\">no batch was run, or not recorded</p>\n", f);
        return;
    }
    char lab[129][16];
    const char *labels[129];
    for (int i = 1; i <= hi; i++) {
        snprintf(lab[i], sizeof lab[i], i == 128 ? ">=%d" : "%d", i);
        labels[i] = lab[i];
    }
    sl_svg_vbars(f, "Batches by number of segments", "segments in the batch", "batches", labels + 1, count + 1,
                 (size_t)hi);
}

static void sec_tracks(FILE *f, const runs_t *rs, size_t max_points)
{
    fputs("<h2 id=\"tracks\">Tracks: audio length and processing time</h2>\n", f);
    size_t total = 0;
    for (size_t k = 0; k < rs->n_runs; k++)
        total += sl_json_len(sl_json_get(&rs->runs[k], "ok"));
    if (!total) {
        fputs("<p class=\"note\">no track was processed</p>\n", f);
        return;
    }
    size_t step = (total + max_points - 1) / max_points, cap = (total + step - 1) / step, n = 0, g = 0;
    double *x = malloc(cap * sizeof *x), *y = malloc(cap * sizeof *y);
    const char **ids = malloc(cap * sizeof *ids);
    for (size_t k = 0; x && y && ids && k < rs->n_runs; k++) {
        const sl_json *ok = sl_json_get(&rs->runs[k], "ok");
        for (size_t i = 0; i < sl_json_len(ok) && n < cap; i++, g++) {
            if (g % step)
                continue;
            const sl_json *e = sl_json_at(ok, i), *sec = sl_json_get(e, "seconds");
            x[n] = sl_json_get_num(e, "duration", NAN);
            y[n] = 0;
            for (int j = 0; j < 4; j++)
                y[n] += sl_json_get_num(sec, stage_keys[j], 0);
            ids[n++] = sl_json_get_str(e, "id", "");
        }
    }
    if (n) {
        char t[160];
        snprintf(t, sizeof t, "Per track: audio seconds against processing seconds (decode + separate + embed + "
                              "write)%s",
                 step > 1 ? ", every k-th track" : "");
        sl_svg_scatter(f, t, "audio seconds", "processing seconds", x, y, ids, n);
    }
    free(x);
    free(y);
    free(ids);
}

static void sec_failures(FILE *f, const sl_json *top, const runs_t *rs, int merged)
{
    fputs("<h2 id=\"failures\">Failures</h2>\n", f);
    size_t n = 0;
    const sl_json *lists[64];
    size_t nl = 0;
    if (merged) {
        lists[nl++] = sl_json_get(top, "failures");
    } else {
        for (size_t k = 0; k < rs->n_runs && nl < 64; k++)
            lists[nl++] = sl_json_get(&rs->runs[k], "failed");
    }
    for (size_t k = 0; k < nl; k++)
        n += sl_json_len(lists[k]);
    if (!n) {
        fputs("<p>none</p>\n", f);
        return;
    }
    fprintf(f, "<p class=\"bad\">%zu track%s failed</p>\n<table id=\"failures-table\"><tr><th>track</th><th>path</th>"
               "<th>reason</th></tr>\n",
            n, n == 1 ? "" : "s");
    size_t shown = 0;
    for (size_t k = 0; k < nl; k++)
        for (size_t i = 0; i < sl_json_len(lists[k]) && shown < SL_HTML_MAX_ROWS; i++, shown++) {
            const sl_json *e = sl_json_at(lists[k], i);
            fputs("<tr><td>", f);
            sl_html_esc(f, sl_json_get_str(e, "id", ""));
            fputs("</td><td>", f);
            sl_html_esc(f, sl_json_get_str(e, "path", ""));
            fputs("</td><td>", f);
            sl_html_esc(f, sl_json_get_str(e, "reason", ""));
            fputs("</td></tr>\n", f);
        }
    fputs("</table>\n", f);
    if (shown < n)
        fprintf(f, "<p class=\"note\">... and %zu more (see the JSON report)</p>\n", n - shown);
}

static void sec_tags(FILE *f, const char *out_dir, const char *model, const char *prefix)
{
    fputs("<h2 id=\"tags\">Tags</h2>\n", f);
    char *dir = NULL;
    if (model) {
        size_t n = strlen(out_dir) + strlen(model) + 8;
        if ((dir = malloc(n)))
            snprintf(dir, n, "%s/tags/%s", out_dir, model);
    }
    tag_hist th;
    memset(&th, 0, sizeof th);
    if (dir)
        tags_count(dir, prefix, &th);
    free(dir);
    if (!th.n) {
        fputs("<p class=\"note\">no tags (the embedding model has no classifier head, or "
              "embedding.tags_top_k is 0)</p>\n",
              f);
        tags_free(&th);
        return;
    }
    /* the 25 labels most often among the tracks' top tags */
    size_t idx[25], k = 0;
    for (; k < 25 && k < th.n; k++) {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < th.n; i++) {
            int used = 0;
            for (size_t j = 0; j < k; j++)
                used |= idx[j] == i;
            if (!used && (best == SIZE_MAX || th.count[i] > th.count[best]))
                best = i;
        }
        idx[k] = best;
    }
    const char *labels[25];
    double v[25];
    for (size_t i = 0; i < k; i++) {
        labels[i] = th.label[idx[i]];
        v[i] = th.count[idx[i]];
    }
    char t[128];
    snprintf(t, sizeof t, "Labels among the top tags of %zu tracks (mix)", th.rows);
    sl_svg_hbars(f, t, "tracks", labels, v, k);
    tags_free(&th);
}

static void sec_map(FILE *f, const char *out_dir, const char *model, const char *prefix, size_t max_points)
{
    fputs("<h2 id=\"map\">Map of the track vectors</h2>\n", f);
    if (!model) {
        fputs("<p class=\"note\">no embedding in this job</p>\n", f);
        return;
    }
    size_t n = strlen(out_dir) + strlen(model) + 24;
    char *dir = malloc(n);
    if (!dir)
        return;
    snprintf(dir, n, "%s/embeddings/%s/mix", out_dir, model);
    pca_map pm;
    pca_compute(dir, prefix, max_points, &pm);
    free(dir);
    if (!pm.n) {
        fputs("<p class=\"note\">", f);
        sl_html_esc(f, pm.why[0] ? pm.why : "no vectors");
        fputs("</p>\n", f);
    } else {
        char t[256], xl[64], yl[64];
        snprintf(t, sizeof t, "First two principal components of %zu mix vectors (%d-d)%s; hover a point for its track",
                 pm.rows, pm.dim, pm.n < pm.rows ? ", every k-th drawn" : "");
        snprintf(xl, sizeof xl, "PC1 (%.1f%% of the variance)", 100 * pm.explained[0]);
        snprintf(yl, sizeof yl, "PC2 (%.1f%%)", 100 * pm.explained[1]);
        sl_svg_scatter(f, t, xl, yl, pm.x, pm.y, (const char *const *)pm.id, pm.n);
    }
    pca_free(&pm);
}

static int write_page(const sl_report_html_opts *o, const sl_json *top, const runs_t *rs, int merged, FILE *f)
{
    size_t maxp = o->max_points ? o->max_points : 2000;
    char title[512];
    snprintf(title, sizeof title, "stemline %s: %s", merged ? "merged report" : "run report",
             sl_json_get_str(top, "output_dir", o->out_dir));
    sl_html_begin(f, title);
    fputs("<h1>", f);
    sl_html_esc(f, title);
    fputs("</h1>\n<p class=\"note\">from ", f);
    sl_html_esc(f, o->report);
    fputs("</p>\n", f);
    sec_summary(f, top, merged);
    sec_throughput(f, rs);
    sec_stages(f, rs);
    sec_batches(f, rs);
    sec_tracks(f, rs, maxp);
    sec_failures(f, top, rs, merged);
    const char *model = NULL;
    for (size_t k = 0; k < rs->n_runs && !model; k++)
        model = sl_json_get_str(&rs->runs[k], "embedding", NULL);
    sec_tags(f, o->out_dir, model, o->prefix);
    sec_map(f, o->out_dir, model, o->prefix, maxp);
    sl_html_end(f);
    return ferror(f) ? -EIO : 0;
}

int sl_html_write_atomic(const char *path, int (*fill)(FILE *, void *), void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    int rc = fill(f, arg);
    if (fclose(f) && !rc)
        rc = sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    if (!rc)
        rc = sl_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

typedef struct {
    const sl_report_html_opts *o;
    const sl_json *top;
    const runs_t *rs;
    int merged;
} page_args;

static int fill_page(FILE *f, void *a)
{
    page_args *p = a;
    return write_page(p->o, p->top, p->rs, p->merged, f);
}

int sl_report_html_write(const sl_report_html_opts *o)
{
    sl_json top;
    int rc = sl_html_read_json(o->report, &top);
    if (rc)
        return rc;
    if (top.type != SL_JSON_OBJECT) {
        sl_json_free(&top);
        return sl_seterr(SL_EFORMAT, "%s: not a JSON object", o->report);
    }
    int merged = sl_json_get(&top, "merged_at") != NULL;
    runs_t rs = {0};
    if (merged) {
        const sl_json *sh = sl_json_get(&top, "shards");
        size_t n = sl_json_len(sh);
        rs.runs = calloc(n ? n : 1, sizeof *rs.runs);
        rs.run_names = calloc(n ? n : 1, sizeof *rs.run_names);
        for (size_t i = 0; rs.runs && rs.run_names && i < n; i++) {
            const char *name = sl_json_get_str(sl_json_at(sh, i), "report", NULL);
            char *p = name ? path2(o->out_dir, name) : NULL;
            if (p && !sl_html_read_json(p, &rs.runs[rs.n_runs]))
                rs.run_names[rs.n_runs++] = strdup(name);
            free(p);
        }
    } else {
        rs.runs = &top;
        rs.run_names = calloc(1, sizeof *rs.run_names);
        if (rs.run_names)
            rs.run_names[0] = strdup("this run");
        rs.n_runs = 1;
    }
    if (!rs.runs || !rs.run_names) {
        rc = sl_seterr(SL_ENOMEM, "%s: out of memory", o->html);
    } else {
        page_args pa = {o, &top, &rs, merged};
        rc = sl_html_write_atomic(o->html, fill_page, &pa);
    }
    for (size_t i = 0; rs.run_names && i < rs.n_runs; i++) {
        free(rs.run_names[i]);
        if (merged)
            sl_json_free(&rs.runs[i]);
    }
    free(rs.run_names);
    if (merged)
        free(rs.runs);
    sl_json_free(&top);
    return rc;
}
