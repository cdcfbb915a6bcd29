/* Vector shards from the ledger; see shards.h for the contract. */
#include "pipeline/shards.h"

#include "common/sl_error.h"
#include "common/sl_json.h"
#include "io/npy.h"
#include "pipeline/center.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const sl_shards_spec *spec;
    const char *prefix;
    int dim;           /* 0 until the first row */
    float *mat;        /* shard_rows x dim */
    size_t nrows;      /* rows in the current shard */
    char *jbuf;        /* jsonl of the current shard */
    size_t jlen;
    FILE *jf;          /* open_memstream over jbuf */
    int index;         /* index of the current shard */
    char **list;
    size_t nlist, caplist;
} shard_ctx;

static int list_add(shard_ctx *c, const char *path)
{
    if (c->nlist == c->caplist) {
        size_t nc = c->caplist ? 2 * c->caplist : 8;
        char **nl = realloc(c->list, nc * sizeof *nl);
        if (!nl)
            return sl_seterr(SL_ENOMEM, "shards: out of memory");
        c->list = nl;
        c->caplist = nc;
    }
    if (!(c->list[c->nlist] = strdup(path)))
        return sl_seterr(SL_ENOMEM, "shards: out of memory");
    c->nlist++;
    return 0;
}

/* 1 when path holds exactly these bytes. */
static int same_content(const char *path, const unsigned char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat st;
    int same = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (size_t)st.st_size == len;
    unsigned char tmp[65536];
    size_t off = 0;
    while (same && off < len) {
        size_t want = len - off < sizeof tmp ? len - off : sizeof tmp;
        ssize_t r = read(fd, tmp, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || memcmp(tmp, buf + off, (size_t)r) != 0)
            same = 0;
        else
            off += (size_t)r;
    }
    close(fd);
    return same;
}

static int put_file(shard_ctx *c, const char *path, const unsigned char *buf, size_t len)
{
    if (!same_content(path, buf, len)) {
        int rc = sl_write_file_atomic(path, buf, len);
        if (rc < 0)
            return rc;
    }
    return list_add(c, path);
}

static int flush_shard(shard_ctx *c)
{
    const sl_shards_spec *s = c->spec;
    if (c->nrows == 0)
        return 0;
    size_t plen = strlen(s->dir) + strlen(c->prefix) + 32;
    char *path = malloc(plen);
    if (!path)
        return sl_seterr(SL_ENOMEM, "shards: out of memory");
    unsigned char *npy = NULL;
    size_t nlen = 0;
    int rc = sl_npy_encode(c->mat, c->nrows, (size_t)c->dim, s->dtype, &npy, &nlen);
    if (rc == 0) {
        snprintf(path, plen, "%s/%sshard-%05d.npy", s->dir, c->prefix, c->index);
        rc = put_file(c, path, npy, nlen);
    }
    free(npy);
    if (rc == 0 && (fflush(c->jf) != 0 || ferror(c->jf)))
        rc = sl_seterr(SL_ENOMEM, "shards: out of memory");
    if (rc == 0) {
        snprintf(path, plen, "%s/%sshard-%05d.jsonl", s->dir, c->prefix, c->index);
        rc = put_file(c, path, (const unsigned char *)c->jbuf, c->jlen);
    }
    free(path);
    if (rc == 0) {
        /* A fresh stream per shard: memstream sizes after a rewind are murky. */
        fclose(c->jf);
        free(c->jbuf);
        c->jbuf = NULL;
        c->jlen = 0;
        if (!(c->jf = open_memstream(&c->jbuf, &c->jlen)))
            rc = sl_seterr(SL_ENOMEM, "shards: out of memory");
        c->nrows = 0;
        c->index++;
    }
    return rc;
}

static int on_row(void *arg, const sl_ledger_row *r)
{
    shard_ctx *c = arg;
    const sl_shards_spec *s = c->spec;
    if (c->dim == 0) {
        if ((size_t)r->dim > SIZE_MAX / sizeof(float) / (size_t)s->shard_rows)
            return sl_seterr(SL_EINVAL, "shards: %d rows of dim %d are too large", s->shard_rows, r->dim);
        c->mat = malloc((size_t)s->shard_rows * (size_t)r->dim * sizeof(float));
        if (!c->mat)
            return sl_seterr(SL_ENOMEM, "shards: out of memory for %d rows of dim %d", s->shard_rows, r->dim);
        c->dim = r->dim;
    } else if (r->dim != c->dim) {
        return sl_seterr(SL_EFORMAT, "shards %s: track %s has a vector of dim %d, others have %d", s->dir, r->id,
                         r->dim, c->dim);
    }
    float *row = c->mat + c->nrows * (size_t)c->dim;
    memcpy(row, r->vector, (size_t)c->dim * sizeof(float));
    if (s->center)
        sl_center_apply(row, s->center, c->dim, s->normalize);
    char dur[40], t0[40], t1[40];
    sl_json_fmt_num(dur, sizeof dur, r->duration);
    sl_json_fmt_num(t0, sizeof t0, r->start);
    sl_json_fmt_num(t1, sizeof t1, r->window >= 0 ? r->end : r->duration);
    FILE *f = c->jf;
    fprintf(f, "{\"row\": %zu, \"id\": ", c->nrows);
    sl_json_str(f, r->id);
    fputs(", \"path\": ", f);
    sl_json_str(f, r->path);
    if (s->timeline)
        fprintf(f, ", \"window\": %d", r->window);
    fprintf(f, ", \"start\": %s, \"end\": %s, \"duration\": %s, \"model\": ", r->window >= 0 ? t0 : "0.0", t1,
            dur);
    sl_json_str(f, s->model_name);
    fputs(", \"source\": ", f);
    sl_json_str(f, s->source);
    fputs("}\n", f);
    c->nrows++;
    if (c->nrows == (size_t)s->shard_rows)
        return flush_shard(c);
    return 0;
}

/* Parses "shard-<digits>.npy" / ".jsonl" (kind 1) or the same followed by
 * ".tmp-<pid>-<n>" (kind 2) into *index (and *pid); 0 when the name is neither. */
static int parse_shard_name(const char *rest, long *index, long *pid)
{
    if (strncmp(rest, "shard-", 6) != 0)
        return 0;
    const char *p = rest + 6;
    char *end;
    if (*p < '0' || *p > '9')
        return 0;
    *index = strtol(p, &end, 10);
    if (strncmp(end, ".npy", 4) == 0)
        p = end + 4;
    else if (strncmp(end, ".jsonl", 6) == 0)
        p = end + 6;
    else
        return 0;
    if (*p == 0)
        return 1;
    if (strncmp(p, ".tmp-", 5) != 0 || p[5] < '0' || p[5] > '9')
        return 0;
    *pid = strtol(p + 5, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return 0;
    strtol(end + 1, &end, 10);
    return *end == 0 ? 2 : 0;
}

static int remove_stale(const sl_shards_spec *s, const char *prefix, int n_shards)
{
    DIR *d = opendir(s->dir);
    if (!d) {
        int e = errno;
        return sl_seterr(-e, "shards %s: %s", s->dir, strerror(e));
    }
    size_t pl = strlen(prefix);
    int removed = 0, rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, pl) != 0)
            continue;
        long index = -1, pid = -1;
        int kind = parse_shard_name(de->d_name + pl, &index, &pid);
        /* Temp files of this prefix can only be leftovers of a killed run: one
         * process owns a prefix at a time, and ours are all renamed by now (the
         * pid is no guide: containers reuse pids from run to run). */
        if ((kind == 1 && index >= n_shards) || kind == 2) {
            if (unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT) {
                int e = errno;
                rc = sl_seterr(-e, "shards %s: cannot remove stale %s: %s", s->dir, de->d_name, strerror(e));
                break;
            }
            removed = 1;
        }
    }
    if (removed && rc == 0)
        fsync(dirfd(d)); /* best effort: a resurrected stale file is rewritten or removed next run */
    closedir(d);
    return rc;
}

void sl_shards_free_list(char **list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* The ledger rows of the spec's shards, in id order. */
static int each_row(const sl_shards_spec *spec, sl_ledger *l, int (*fn)(void *, const sl_ledger_row *), void *arg)
{
    if (spec->timeline || strcmp(spec->source, "mix") != 0)
        return spec->vector_model
                   ? sl_ledger_each_source_vector(l, spec->vector_model, spec->source, spec->timeline, fn, arg)
                   : sl_seterr(SL_EINVAL, "shards: stem and timeline shards need a vector_model");
    return sl_ledger_each_vector(l, spec->vector_model, fn, arg);
}

typedef struct {
    const sl_shards_spec *spec;
    double *sum;
    int dim;
    size_t rows;
} mean_ctx;

static int on_mean_row(void *arg, const sl_ledger_row *r)
{
    mean_ctx *c = arg;
    if (!c->sum) {
        if (!(c->sum = calloc((size_t)r->dim, sizeof *c->sum)))
            return sl_seterr(SL_ENOMEM, "shards: out of memory");
        c->dim = r->dim;
    } else if (r->dim != c->dim) {
        return sl_seterr(SL_EFORMAT, "shards %s: track %s has a vector of dim %d, others have %d", c->spec->dir,
                         r->id, r->dim, c->dim);
    }
    for (int i = 0; i < c->dim; i++)
        c->sum[i] += r->vector[i];
    c->rows++;
    return 0;
}

int sl_shards_mean(const sl_shards_spec *spec, sl_ledger *l, float **mean, int *dim, size_t *rows)
{
    *mean = NULL;
    *dim = 0;
    *rows = 0;
    if (!spec || !l || !spec->source)
        return sl_seterr(SL_EINVAL, "shards: missing source");
    mean_ctx c = {.spec = spec};
    int rc = each_row(spec, l, on_mean_row, &c);
    if (!rc && c.rows) {
        float *m = malloc((size_t)c.dim * sizeof *m);
        if (!m) {
            rc = sl_seterr(SL_ENOMEM, "shards: out of memory");
        } else {
            for (int i = 0; i < c.dim; i++)
                m[i] = (float)(c.sum[i] / (double)c.rows);
            *mean = m;
            *dim = c.dim;
            *rows = c.rows;
        }
    }
    free(c.sum);
    return rc;
}

int sl_shards_write(const sl_shards_spec *spec, sl_ledger *l, char ***written, size_t *n_written)
{
    if (written)
        *written = NULL;
    if (n_written)
        *n_written = 0;
    if (!spec || !l || !spec->dir || !*spec->dir || !spec->model_name || !spec->source || !spec->dtype ||
        spec->shard_rows <= 0)
        return sl_seterr(SL_EINVAL, "shards: missing dir, model, source or dtype, or shard_rows <= 0");
    if (strcmp(spec->dtype, "float32") != 0 && strcmp(spec->dtype, "float16") != 0)
        return sl_seterr(SL_EINVAL, "shards: dtype '%s' is not float32 or float16", spec->dtype);
    const char *prefix = spec->prefix ? spec->prefix : "";
    if (strchr(prefix, '/'))
        return sl_seterr(SL_EINVAL, "shards: prefix '%s' contains '/'", prefix);
    int rc = sl_mkdirs(spec->dir);
    if (rc < 0)
        return rc;

    shard_ctx c = {.spec = spec, .prefix = prefix};
    c.jf = open_memstream(&c.jbuf, &c.jlen);
    if (!c.jf)
        return sl_seterr(SL_ENOMEM, "shards: out of memory");
    rc = each_row(spec, l, on_row, &c);
    if (rc == 0)
        rc = flush_shard(&c);
    if (c.jf)
        fclose(c.jf);
    free(c.jbuf);
    free(c.mat);
    if (rc == 0)
        rc = remove_stale(spec, prefix, c.index);
    if (rc < 0) {
        sl_shards_free_list(c.list, c.nlist);
        return rc;
    }
    if (written)
        *written = c.list;
    else
        sl_shards_free_list(c.list, c.nlist);
    if (n_written)
        *n_written = c.nlist;
    return 0;
}
