/* Reader for the golden-vector files made by tools/gen_golden_dsp.py (*.slg:
 * a text header of "param NAME VALUE" / "array NAME DIMS..." lines up to "end",
 * then the arrays as raw little-endian float32). Header-only, for tests. */
#ifndef SL_GOLDEN_H
#define SL_GOLDEN_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLG_MAX 32

typedef struct {
    int n_params, n_arrays;
    char pname[SLG_MAX][32], pval[SLG_MAX][64];
    char aname[SLG_MAX][32];
    size_t adims[SLG_MAX][4];
    int andim[SLG_MAX];
    size_t acount[SLG_MAX];
    float *adata[SLG_MAX];
} slg_file;

/* Path of any file of a golden folder: $SL_SRC/tests/golden/DIR/FILE, or under the
 * tree this header was compiled from without SL_SRC; an absolute DIR is taken as it
 * is (files made at test time). Static buffer. */
static inline const char *slg_file_in(const char *dir, const char *file)
{
    static char buf[1024];
    const char *src = getenv("SL_SRC");
    if (dir[0] == '/') {
        snprintf(buf, sizeof buf, "%s/%s", dir, file);
    } else if (src && *src) {
        snprintf(buf, sizeof buf, "%s/tests/golden/%s/%s", src, dir, file);
    } else {
        const char *here = __FILE__; /* .../tests/unit/sl_golden.h */
        const char *cut = strstr(here, "tests/unit/sl_golden.h");
        int len = cut ? (int)(cut - here) : 0;
        snprintf(buf, sizeof buf, "%.*stests/golden/%s/%s", len, here, dir, file);
    }
    return buf;
}

/* Path of a golden file: tests/golden/DIR/NAME.slg (DIR: "dsp" from
 * tools/gen_golden_dsp.py, "torch" from tools/gen_golden_torch.py). */
static inline const char *slg_path_in(const char *dir, const char *name)
{
    char file[512];
    snprintf(file, sizeof file, "%s.slg", name);
    return slg_file_in(dir, file);
}

static inline const char *slg_path(const char *name) { return slg_path_in("dsp", name); }

static inline void slg_free(slg_file *g)
{
    for (int i = 0; i < g->n_arrays; i++)
        free(g->adata[i]);
    memset(g, 0, sizeof *g);
}

/* Loads tests/golden/DIR/NAME.slg. Returns 0 on success, -1 (with a message on
 * stderr) otherwise; g owns the arrays (slg_free). */
static inline int slg_load_in(slg_file *g, const char *dir, const char *name)
{
    memset(g, 0, sizeof *g);
    const char *path = slg_path_in(dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "golden: cannot open %s\n", path);
        return -1;
    }
    char line[512];
    int ok = 0;
    if (!fgets(line, sizeof line, f) || strncmp(line, "SLGOLD 1", 8) != 0)
        goto out;
    while (fgets(line, sizeof line, f)) {
        if (!strcmp(line, "end\n")) {
            ok = 1;
            break;
        }
        if (line[0] == '#')
            continue;
        if (!strncmp(line, "param ", 6) && g->n_params < SLG_MAX) {
            int i = g->n_params++;
            if (sscanf(line + 6, "%31s %63s", g->pname[i], g->pval[i]) != 2)
                goto out;
        } else if (!strncmp(line, "array ", 6) && g->n_arrays < SLG_MAX) {
            int i = g->n_arrays++;
            int used = 0;
            if (sscanf(line + 6, "%31s%n", g->aname[i], &used) != 1)
                goto out;
            const char *p = line + 6 + used;
            size_t cnt = 1;
            unsigned long d;
            int k;
            while (g->andim[i] < 4 && sscanf(p, "%lu%n", &d, &k) == 1) {
                g->adims[i][g->andim[i]++] = d;
                cnt *= d;
                p += k;
            }
            g->acount[i] = cnt;
        } else {
            goto out;
        }
    }
    if (!ok)
        goto out;
    for (int i = 0; i < g->n_arrays; i++) {
        g->adata[i] = malloc((g->acount[i] ? g->acount[i] : 1) * sizeof(float));
        if (!g->adata[i] || fread(g->adata[i], sizeof(float), g->acount[i], f) != g->acount[i]) {
            ok = 0;
            break;
        }
    }
out:
    fclose(f);
    if (!ok) {
        fprintf(stderr, "golden: %s is malformed\n", path);
        slg_free(g);
        return -1;
    }
    return 0;
}

/* tests/golden/dsp/NAME.slg (tools/gen_golden_dsp.py). */
static inline int slg_load(slg_file *g, const char *name) { return slg_load_in(g, "dsp", name); }

static inline const char *slg_param(const slg_file *g, const char *name)
{
    for (int i = 0; i < g->n_params; i++)
        if (!strcmp(g->pname[i], name))
            return g->pval[i];
    return NULL;
}

static inline int slg_int(const slg_file *g, const char *name)
{
    const char *v = slg_param(g, name);
    return v ? atoi(v) : -1;
}

static inline double slg_double(const slg_file *g, const char *name)
{
    const char *v = slg_param(g, name);
    return v ? atof(v) : -1.0;
}

/* The array's data (count in *n when n is not NULL), or NULL. */
static inline const float *slg_array(const slg_file *g, const char *name, size_t *n)
{
    for (int i = 0; i < g->n_arrays; i++)
        if (!strcmp(g->aname[i], name)) {
            if (n)
                *n = g->acount[i];
            return g->adata[i];
        }
    return NULL;
}

/* max|got - want| / max|want| over n values (a NaN in got counts as infinite). */
static inline double slg_rel_err(const float *got, const float *want, size_t n)
{
    double mx = 0, e = 0;
    for (size_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs((double)want[i]));
        e = fmax(e, isnan(got[i]) ? INFINITY : fabs((double)got[i] - (double)want[i]));
    }
    return e / (mx > 0 ? mx : 1);
}

/* Compares got[n] with golden array name of g: prints "backend name n values err E (tol T)"
 * and returns 1 when the array exists with n values and the relative error is <= tol, else 0
 * (with the reason printed). */
static inline int slg_check_stage(const slg_file *g, const char *backend, const char *name, const float *got,
                                  size_t n, double tol)
{
    size_t nw = 0;
    const float *want = slg_array(g, name, &nw);
    if (!want || nw != n) {
        printf("  %-8s %-15s golden array has %zu values, the model %zu\n", backend, name, nw, n);
        return 0;
    }
    const double e = slg_rel_err(got, want, n);
    printf("  %-8s %-15s %7zu values  err %.3g (tol %.0e)%s\n", backend, name, n, e, tol, e <= tol ? "" : " FAIL");
    return e <= tol;
}

#endif
