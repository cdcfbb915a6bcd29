/* The catalog mean of a shard folder; see center.h. */
#include "pipeline/center.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "io/npy.h"

void sl_center_apply(float *v, const float *mean, int dim, int normalize)
{
    double ss = 0;
    for (int i = 0; i < dim; i++) {
        double d = (double)v[i] - (double)mean[i];
        v[i] = (float)d;
        ss += d * d;
    }
    if (normalize && ss > 0) {
        double n = sqrt(ss);
        for (int i = 0; i < dim; i++)
            v[i] = (float)((double)v[i] / n);
    }
}

static char *join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int sl_center_write(const char *dir, const char *prefix, const float *mean, int dim, char *name, size_t name_size,
                    char hash[SL_FILE_HASH_HEX])
{
    snprintf(name, name_size, "%smean.npy", prefix ? prefix : "");
    char *p = join(dir, name);
    if (!p)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", dir);
    int rc = sl_npy_write(p, mean, 1, (size_t)dim, "float32");
    int64_t size;
    if (!rc)
        rc = sl_file_hash(p, hash, &size);
    free(p);
    return rc;
}

int sl_center_load(const char *dir, const char *name, const char *hash, int dim, float **mean)
{
    *mean = NULL;
    if (!name || !hash || strchr(name, '/'))
        return sl_seterr(SL_EFORMAT, "%s/index.json: center_file or center_hash missing or not a plain file name", dir);
    char *p = join(dir, name);
    if (!p)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", dir);
    char got[SL_FILE_HASH_HEX];
    int64_t size;
    int rc = sl_file_hash(p, got, &size);
    if (!rc && strcmp(got, hash))
        rc = sl_seterr(SL_EFORMAT, "%s: content hash %s, index.json says %s: the catalog mean changed after the "
                                   "vectors were written; run the job (or stemline merge) again", p, got, hash);
    float *m = NULL;
    size_t rows = 0, cols = 0;
    if (!rc)
        rc = sl_npy_read(p, &m, &rows, &cols);
    if (!rc && (rows != 1 || cols != (size_t)dim)) {
        rc = sl_seterr(SL_EFORMAT, "%s: shape [%zu, %zu], expected [1, %d]", p, rows, cols, dim);
        free(m);
        m = NULL;
    }
    free(p);
    *mean = m;
    return rc;
}
