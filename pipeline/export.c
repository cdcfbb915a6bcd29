/* stemline export (pipeline/export.h): k-way merge of the shard sets of an
 * output folder into one table per (model, source). */
#include "export.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"
#include "../common/sl_str.h"
#include "../io/npy.h"
#include "../io/parquet.h"
#include "search.h"
#include "shardenv.h"

/* ---------------------------------------------------------------- small helpers */

static int is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int str_cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted names in dir that pass keep (NULL = all but dot files). Returns the
 * count, or -1 when dir cannot be read (errno set). */
static long list_dir(const char *dir, int (*keep)(const char *dir, const char *name), char ***out)
{
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    size_t n = 0, cap = 0;
    char **v = NULL;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || (keep && !keep(dir, de->d_name)))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv)
                break;
            v = nv;
        }
        if (!(v[n] = strdup(de->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, str_cmp);
    *out = v;
    return (long)n;
}

static void free_list(char **v, long n)
{
    for (long i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int keep_dir(const char *dir, const char *name)
{
    char *p = sl_strcat3(dir, "/", name);
    int r = p && is_dir(p) && strcmp(name, "timeline");
    free(p);
    return r;
}

/* Length of the "sIIIIofNNNN-" prefix of a runner-written name, 0 when it has none
 * (unsharded); index and count of the set (0 and 1 unsharded). -1 if malformed. */
static int name_prefix(const char *name, int *index, int *count)
{
    *index = 0;
    *count = 1;
    if (name[0] != 's' || name[1] < '0' || name[1] > '9')
        return 0;
    int i, n, len = 0;
    if (sscanf(name, "s%dof%d-%n", &i, &n, &len) != 2 || len == 0 || n < 2 || n > SL_SHARD_MAX_COUNT || i < 0 ||
        i >= n)
        return -1;
    char canon[32];
    sl_shard_prefix(i, n, canon, sizeof canon);
    if ((size_t)len != strlen(canon) || strncmp(name, canon, (size_t)len))
        return -1;
    *index = i;
    *count = n;
    return len;
}

/* ---------------------------------------------------------------- shard sets */

/* Every set of N shards that left a ledger in out_dir must have all N ledgers and
 * reports: a shard still running, killed or never started leaves a hole that
 * export would silently skip. */
static int check_shard_sets(const char *out_dir)
{
    char **names;
    long n = list_dir(out_dir, NULL, &names);
    if (n < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", out_dir, strerror(e));
    }
    int rc = 0;
    for (long k = 0; k < n && !rc; k++) {
        int i, cnt, len = name_prefix(names[k], &i, &cnt);
        if (len <= 0 || strcmp(names[k] + len, "ledger.sqlite"))
            continue;
        if (i != 0) /* each set once, from its shard 0 (or its first ledger below) */
            continue;
        char missing[512] = "";
        size_t nmiss = 0;
        for (int j = 0; j < cnt; j++) {
            char pre[32], *lp, *rp;
            sl_shard_prefix(j, cnt, pre, sizeof pre);
            lp = sl_strcat3(out_dir, "/", pre);
            char *l = lp ? sl_strcat3(lp, "ledger.sqlite", "") : NULL, *r = lp ? sl_strcat3(lp, "report.json", "") : NULL;
            rp = r;
            struct stat st;
            int have = l && r && stat(l, &st) == 0 && stat(r, &st) == 0;
            if (!have && nmiss++ < 8) {
                size_t m = strlen(missing);
                snprintf(missing + m, sizeof missing - m, "%s%d", m ? ", " : "", j);
            }
            free(lp);
            free(l);
            free(rp);
        }
        if (nmiss)
            rc = sl_seterr(SL_EIO,
                           "%s: the set of %d shards is incomplete: shard%s %s%s %s no ledger or report yet; run %s, "
                           "check with `stemline merge`, then export",
                           out_dir, cnt, nmiss > 1 ? "s" : "", missing, nmiss > 8 ? ", ..." : "",
                           nmiss > 1 ? "have" : "has", nmiss > 1 ? "them" : "it");
    }
    /* a set whose shard 0 is the one missing */
    for (long k = 0; k < n && !rc; k++) {
        int i, cnt, len = name_prefix(names[k], &i, &cnt);
        if (len <= 0 || strcmp(names[k] + len, "ledger.sqlite"))
            continue;
        char pre[32];
        sl_shard_prefix(0, cnt, pre, sizeof pre);
        char *l = sl_strcat3(out_dir, "/", pre), *lf = l ? sl_strcat3(l, "ledger.sqlite", "") : NULL;
        struct stat st;
        if (lf && stat(lf, &st) != 0)
            rc = sl_seterr(SL_EIO,
                           "%s: the set of %d shards is incomplete: shard 0 has no ledger yet; run it, check with "
                           "`stemline merge`, then export",
                           out_dir, cnt);
        free(l);
        free(lf);
    }
    free_list(names, n);
    return rc;
}

/* ---------------------------------------------------------------- cursors */

/* The rows of one shard set (one file-name prefix), file after file. */
typedef struct {
    char **jsonl, **npy; /* npy NULL for tags */
    size_t n_files, fi;
    FILE *jf, *nf;
    sl_npy_info ni;
    size_t row_in_file;
    unsigned char *raw;  /* one vector as stored */
    float *vec;          /* dim floats */
    int dim;
    char *line;
    size_t cap;
    sl_json row;
    int have;            /* row (and vec) hold the current row */
    char *id, *prev_id;
    const char *source;  /* tags: only lines of this source */
    long long lineno;
} cursor;

static int cur_open_file(cursor *c)
{
    const char *jp = c->jsonl[c->fi];
    if (!(c->jf = fopen(jp, "r"))) {
        int e = errno;
        return sl_seterr(e == ENOENT ? SL_EFORMAT : -e, "%s: %s", jp, strerror(e));
    }
    c->lineno = 0;
    c->row_in_file = 0;
    if (!c->npy)
        return 0;
    const char *np = c->npy[c->fi];
    if (!(c->nf = fopen(np, "rb"))) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", np, strerror(e));
    }
    int rc = sl_npy_read_header(c->nf, np, &c->ni);
    if (!rc && (int)c->ni.cols != c->dim)
        rc = sl_seterr(SL_EFORMAT, "%s: dim %zu, other shards have %d", np, c->ni.cols, c->dim);
    return rc;
}

static void cur_close_file(cursor *c)
{
    if (c->jf)
        fclose(c->jf);
    if (c->nf)
        fclose(c->nf);
    c->jf = c->nf = NULL;
}

/* Loads the next row; c->have = 0 at the end. Checks id order within the set. */
static int cur_next(cursor *c)
{
    for (;;) {
        sl_json_free(&c->row);
        c->have = 0;
        if (!c->jf) {
            if (c->fi >= c->n_files)
                return 0;
            int rc = cur_open_file(c);
            if (rc)
                return rc;
        }
        ssize_t len = getline(&c->line, &c->cap, c->jf);
        if (len <= 0) {
            if (c->npy && c->row_in_file != c->ni.rows)
                return sl_seterr(SL_EFORMAT, "%s has %zu rows but %s has %zu lines", c->npy[c->fi], c->ni.rows,
                                 c->jsonl[c->fi], c->row_in_file);
            cur_close_file(c);
            c->fi++;
            continue;
        }
        c->lineno++;
        while (len > 0 && (c->line[len - 1] == '\n' || c->line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue;
        int rc = sl_json_parse(c->line, (size_t)len, &c->row);
        if (rc)
            return sl_seterr(SL_EFORMAT, "%s:%lld: %s", c->jsonl[c->fi], c->lineno, sl_lasterr());
        const sl_json *idv = sl_json_get(&c->row, "id");
        char num[40];
        const char *id = NULL;
        if (idv && idv->type == SL_JSON_STRING) {
            id = idv->s;
        } else if (idv && idv->type == SL_JSON_NUMBER) {
            snprintf(num, sizeof num, "%.17g", idv->num);
            id = num;
        }
        if (!id)
            return sl_seterr(SL_EFORMAT, "%s:%lld: row without an id", c->jsonl[c->fi], c->lineno);
        if (c->npy) {
            if (c->row_in_file >= c->ni.rows)
                return sl_seterr(SL_EFORMAT, "%s has more lines than %s has rows (%zu)", c->jsonl[c->fi],
                                 c->npy[c->fi], c->ni.rows);
            size_t isz = c->ni.f16 ? 2 : 4;
            if (fread(c->raw, isz, (size_t)c->dim, c->nf) != (size_t)c->dim)
                return sl_seterr(SL_EFORMAT, "%s: short read at row %zu", c->npy[c->fi], c->row_in_file);
            sl_npy_unpack(c->raw, c->vec, (size_t)c->dim, c->ni.f16);
        }
        c->row_in_file++;
        if (c->source && strcmp(sl_json_get_str(&c->row, "source", ""), c->source))
            continue;
        if (c->prev_id && strcmp(id, c->prev_id) < 0)
            return sl_seterr(SL_EFORMAT, "%s:%lld: track %s comes after %s: the shards are not in track-id order",
                             c->jsonl[c->fi], c->lineno, id, c->prev_id);
        free(c->prev_id);
        c->prev_id = c->id;
        c->id = strdup(id);
        if (!c->id)
            return sl_seterr(SL_ENOMEM, "export: out of memory");
        c->have = 1;
        return 0;
    }
}

static void cur_free(cursor *c)
{
    cur_close_file(c);
    sl_json_free(&c->row);
    free_list(c->jsonl, (long)c->n_files);
    if (c->npy)
        free_list(c->npy, (long)c->n_files);
    free(c->raw);
    free(c->vec);
    free(c->line);
    free(c->id);
    free(c->prev_id);
}

/* Groups files "PREFIX" + suffix of dir into one cursor per prefix (name order). */
static int cursors_for(const char *dir, const char *suffix, int with_npy, int dim, cursor **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char **names;
    long n = list_dir(dir, NULL, &names);
    if (n < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", dir, strerror(e));
    }
    cursor *cs = calloc((size_t)n + 1, sizeof *cs);
    size_t nc = 0;
    int rc = cs ? 0 : sl_seterr(SL_ENOMEM, "export: out of memory");
    char *last_prefix = NULL;
    size_t slen = strlen(suffix);
    for (long k = 0; k < n && !rc; k++) {
        size_t len = strlen(names[k]);
        int i, cnt, pl = name_prefix(names[k], &i, &cnt);
        if (pl < 0 || len < slen || strcmp(names[k] + len - slen, suffix))
            continue;
        const char *rest = names[k] + pl;
        if (with_npy ? strncmp(rest, "shard-", 6) : strcmp(rest, "tags.jsonl"))
            continue;
        if (!last_prefix || strncmp(names[k], last_prefix, strlen(last_prefix)) || (int)strlen(last_prefix) != pl) {
            free(last_prefix);
            last_prefix = strndup(names[k], (size_t)pl);
            cursor *c = &cs[nc++];
            c->dim = dim;
            if (with_npy && dim > 0) {
                c->raw = malloc((size_t)dim * 4);
                c->vec = malloc((size_t)dim * sizeof(float));
            }
            if (!last_prefix || (with_npy && (!c->raw || !c->vec))) {
                rc = sl_seterr(SL_ENOMEM, "export: out of memory");
                break;
            }
        }
        cursor *c = &cs[nc - 1];
        char **j = realloc(c->jsonl, (c->n_files + 1) * sizeof *j);
        if (j)
            c->jsonl = j;
        char **np = with_npy ? realloc(c->npy, (c->n_files + 1) * sizeof *np) : NULL;
        if (np)
            c->npy = np;
        if (!j || (with_npy && !np)) {
            rc = sl_seterr(SL_ENOMEM, "export: out of memory");
            break;
        }
        j[c->n_files] = sl_strcat3(dir, "/", names[k]);
        if (with_npy) {
            /* names[k] ends in .jsonl: the npy beside it */
            char *base = strndup(names[k], len - slen);
            np[c->n_files] = base ? sl_strcat3(dir, "/", base) : NULL;
            char *full = np[c->n_files] ? sl_strcat3(np[c->n_files], ".npy", "") : NULL;
            free(np[c->n_files]);
            np[c->n_files] = full;
            free(base);
        }
        c->n_files++;
        if (!j[c->n_files - 1] || (with_npy && !np[c->n_files - 1]))
            rc = sl_seterr(SL_ENOMEM, "export: out of memory");
    }
    free(last_prefix);
    free_list(names, n);
    if (rc) {
        for (size_t i = 0; i < nc; i++)
            cur_free(&cs[i]);
        free(cs);
        return rc;
    }
    *out = cs;
    *n_out = nc;
    return 0;
}

/* The cursor whose current row comes first (lowest id; ties: the first set). */
static cursor *cur_min(cursor *cs, size_t n)
{
    cursor *best = NULL;
    for (size_t i = 0; i < n; i++)
        if (cs[i].have && (!best || strcmp(cs[i].id, best->id) < 0))
            best = &cs[i];
    return best;
}

/* ---------------------------------------------------------------- tables */

typedef struct {
    char *model, *source, *dir;
    int timeline, dim, f16;
} table;

static const char *json_str_or(const sl_json *row, const char *key) { return sl_json_get_str(row, key, ""); }

/* Row emitters: vectors (+ metadata) and tags. */
typedef struct {
    const sl_export_opts *o;
    sl_parquet *pq;
    sl_npy_stream *npy;
    const table *t;
    uint64_t row;
    float *block; /* npy: rows waiting to be written */
    size_t block_rows, block_n;
} vec_sink;

enum { C_ROW, C_ID, C_PATH, C_WINDOW }; /* then start, end, duration, model, source, [vector] */

static int vec_emit(vec_sink *s, const cursor *c)
{
    const sl_json *r = &c->row;
    sl_parquet *p = s->pq;
    size_t k = 3;
    int rc = sl_parquet_i64(p, C_ROW, (int64_t)s->row);
    if (!rc)
        rc = sl_parquet_str(p, C_ID, c->id);
    if (!rc)
        rc = sl_parquet_str(p, C_PATH, json_str_or(r, "path"));
    if (!rc && s->t->timeline)
        rc = sl_parquet_i32(p, k++, (int32_t)sl_json_get_num(r, "window", -1));
    if (!rc)
        rc = sl_parquet_f64(p, k++, sl_json_get_num(r, "start", 0.0));
    if (!rc)
        rc = sl_parquet_f64(p, k++, sl_json_get_num(r, "end", 0.0));
    if (!rc)
        rc = sl_parquet_f64(p, k++, sl_json_get_num(r, "duration", 0.0));
    if (!rc)
        rc = sl_parquet_str(p, k++, s->t->model);
    if (!rc)
        rc = sl_parquet_str(p, k++, s->t->source);
    if (!rc && !s->npy)
        rc = sl_parquet_floats(p, k++, c->vec);
    if (!rc)
        rc = sl_parquet_end_row(p);
    if (!rc && s->npy) {
        memcpy(s->block + s->block_n * (size_t)s->t->dim, c->vec, (size_t)s->t->dim * sizeof(float));
        if (++s->block_n == s->block_rows) {
            rc = sl_npy_stream_rows(s->npy, s->block, s->block_n);
            s->block_n = 0;
        }
    }
    s->row++;
    return rc;
}

/* The merge: every row of the first set that has the lowest id, then the rows of
 * that id in the other sets are skipped (duplicates). */
static int merge_rows(cursor *cs, size_t n, int (*emit)(void *, const cursor *), void *arg, uint64_t *dup_tracks)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = cur_next(&cs[i]);
    while (!rc) {
        cursor *b = cur_min(cs, n);
        if (!b)
            break;
        char *id = strdup(b->id);
        if (!id)
            return sl_seterr(SL_ENOMEM, "export: out of memory");
        while (!rc && b->have && !strcmp(b->id, id)) {
            rc = emit(arg, b);
            if (!rc)
                rc = cur_next(b);
        }
        int dup = 0;
        for (size_t i = 0; i < n && !rc; i++) {
            while (!rc && cs[i].have && !strcmp(cs[i].id, id)) {
                dup = 1;
                rc = cur_next(&cs[i]);
            }
        }
        *dup_tracks += (uint64_t)dup;
        free(id);
    }
    return rc;
}

static int vec_emit_cb(void *a, const cursor *c) { return vec_emit(a, c); }

static size_t group_rows(const sl_export_opts *o, size_t row_bytes)
{
    if (o->row_group_rows)
        return o->row_group_rows;
    size_t r = ((size_t)32 << 20) / (row_bytes + 256);
    return r < 1 ? 1 : (r > 65536 ? 65536 : r);
}

static char *dest_file(const sl_export_opts *o, const table *t, const char *suffix)
{
    size_t n = strlen(o->dest) + strlen(t->model) + strlen(t->source) + strlen(suffix) + 16;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s-%s%s%s", o->dest, t->model, t->source, t->timeline ? "-timeline" : "", suffix);
    return p;
}

static int add_meta(sl_parquet *p, const table *t)
{
    char dim[16];
    snprintf(dim, sizeof dim, "%d", t->dim);
    int rc = sl_parquet_meta(p, "stemline:model", t->model);
    if (!rc)
        rc = sl_parquet_meta(p, "stemline:source", t->source);
    if (!rc)
        rc = sl_parquet_meta(p, "stemline:dim", dim);
    return rc;
}

static int export_vectors(const sl_export_opts *o, const table *t)
{
    int npy = o->format == SL_EXPORT_NPY;
    sl_pq_column cols[10];
    size_t nc = 0;
    cols[nc++] = (sl_pq_column){"row", SL_PQ_INT64, 0};
    cols[nc++] = (sl_pq_column){"id", SL_PQ_STRING, 0};
    cols[nc++] = (sl_pq_column){"path", SL_PQ_STRING, 0};
    if (t->timeline)
        cols[nc++] = (sl_pq_column){"window", SL_PQ_INT32, 0};
    cols[nc++] = (sl_pq_column){"start", SL_PQ_DOUBLE, 0};
    cols[nc++] = (sl_pq_column){"end", SL_PQ_DOUBLE, 0};
    cols[nc++] = (sl_pq_column){"duration", SL_PQ_DOUBLE, 0};
    cols[nc++] = (sl_pq_column){"model", SL_PQ_STRING, 0};
    cols[nc++] = (sl_pq_column){"source", SL_PQ_STRING, 0};
    if (!npy)
        cols[nc++] = (sl_pq_column){"vector", SL_PQ_FLOAT_LIST, (size_t)t->dim};
    size_t rg = group_rows(o, npy ? 0 : (size_t)t->dim * 4);
    char *pq_path = dest_file(o, t, npy ? "-meta.parquet" : ".parquet");
    char *npy_path = npy ? dest_file(o, t, ".npy") : NULL;
    cursor *cs = NULL;
    size_t ncur = 0;
    vec_sink s = {.o = o, .t = t};
    uint64_t dups = 0;
    int rc = (!pq_path || (npy && !npy_path)) ? sl_seterr(SL_ENOMEM, "export: out of memory") : 0;
    if (!rc)
        rc = cursors_for(t->dir, ".jsonl", 1, t->dim, &cs, &ncur);
    if (!rc)
        rc = sl_parquet_open(&s.pq, pq_path, cols, nc, rg);
    if (!rc)
        rc = add_meta(s.pq, t);
    if (!rc && npy) {
        s.block_rows = group_rows(o, (size_t)t->dim * 4);
        s.block = malloc(s.block_rows * (size_t)t->dim * sizeof(float));
        rc = s.block ? sl_npy_stream_open(&s.npy, npy_path, (size_t)t->dim, t->f16 ? "float16" : "float32")
                     : sl_seterr(SL_ENOMEM, "export: out of memory");
    }
    if (!rc)
        rc = merge_rows(cs, ncur, vec_emit_cb, &s, &dups);
    if (!rc && s.npy && s.block_n)
        rc = sl_npy_stream_rows(s.npy, s.block, s.block_n);
    if (!rc && s.npy) {
        rc = sl_npy_stream_commit(s.npy);
        s.npy = NULL;
    }
    if (!rc) {
        rc = sl_parquet_close(s.pq);
        s.pq = NULL;
    }
    if (rc) {
        /* the npy may already be in place when the metadata table failed: both or neither */
        if (npy && !s.npy && s.pq && npy_path)
            remove(npy_path);
        sl_parquet_abort(s.pq);
        sl_npy_stream_abort(s.npy);
    } else if (o->log) {
        fprintf(o->log, "%s: %llu rows of dim %d", npy ? npy_path : pq_path, (unsigned long long)s.row, t->dim);
        if (dups)
            fprintf(o->log, " (%llu tracks found in more than one shard set: kept once)", (unsigned long long)dups);
        fputc('\n', o->log);
    }
    for (size_t i = 0; i < ncur; i++)
        cur_free(&cs[i]);
    free(cs);
    free(s.block);
    free(pq_path);
    free(npy_path);
    return rc;
}

/* ---------------------------------------------------------------- tags */

typedef struct {
    sl_parquet *pq;
    uint64_t rows;
} tag_sink;

static int tag_emit(void *arg, const cursor *c)
{
    tag_sink *s = arg;
    const sl_json *tags = sl_json_get(&c->row, "tags");
    int rc = 0;
    for (size_t j = 0; j < sl_json_len(tags) && !rc; j++) {
        const sl_json *t = sl_json_at(tags, j);
        rc = sl_parquet_str(s->pq, 0, c->id);
        if (!rc)
            rc = sl_parquet_str(s->pq, 1, json_str_or(&c->row, "path"));
        if (!rc)
            rc = sl_parquet_str(s->pq, 2, json_str_or(&c->row, "model"));
        if (!rc)
            rc = sl_parquet_str(s->pq, 3, json_str_or(&c->row, "source"));
        if (!rc)
            rc = sl_parquet_i32(s->pq, 4, (int32_t)j);
        if (!rc)
            rc = sl_parquet_i32(s->pq, 5, (int32_t)sl_json_get_num(t, "index", -1));
        if (!rc)
            rc = sl_parquet_str(s->pq, 6, sl_json_get_str(t, "label", ""));
        if (!rc)
            rc = sl_parquet_f64(s->pq, 7, sl_json_get_num(t, "score", 0.0));
        if (!rc)
            rc = sl_parquet_end_row(s->pq);
        s->rows++;
    }
    return rc;
}

/* The sources of the tag files in order of first appearance (tags.jsonl lists
 * sources one after the other, each in id order). */
static int tag_sources(cursor *cs, size_t n, char ***out, size_t *n_out)
{
    char **v = NULL;
    size_t nv = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        cursor c = {.jsonl = cs[i].jsonl, .n_files = cs[i].n_files};
        while (!(rc = cur_next(&c)) && c.have) {
            const char *s = json_str_or(&c.row, "source");
            size_t k = 0;
            while (k < nv && strcmp(v[k], s))
                k++;
            if (k == nv) {
                char **nvp = realloc(v, (nv + 1) * sizeof *nvp);
                if (!nvp || !(nvp[nv] = strdup(s))) {
                    v = nvp ? nvp : v;
                    rc = sl_seterr(SL_ENOMEM, "export: out of memory");
                    break;
                }
                v = nvp;
                nv++;
            }
            free(c.prev_id); /* order is checked per source, in the real pass */
            c.prev_id = NULL;
        }
        c.jsonl = NULL;
        c.n_files = 0;
        cur_free(&c);
    }
    *out = v;
    *n_out = nv;
    return rc;
}

static int export_tags(const sl_export_opts *o, const char *model, const char *only_source, const char *dir)
{
    cursor *cs = NULL;
    size_t ncur = 0;
    int rc = cursors_for(dir, "tags.jsonl", 0, 0, &cs, &ncur);
    if (rc || !ncur) {
        free(cs);
        return rc;
    }
    char **sources = NULL;
    size_t nsrc = 0;
    rc = tag_sources(cs, ncur, &sources, &nsrc);
    size_t n = strlen(o->dest) + strlen(model) + 16;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%s-tags.parquet", o->dest, model);
    static const sl_pq_column cols[] = {{"id", SL_PQ_STRING, 0},     {"path", SL_PQ_STRING, 0},
                                        {"model", SL_PQ_STRING, 0},  {"source", SL_PQ_STRING, 0},
                                        {"rank", SL_PQ_INT32, 0},    {"index", SL_PQ_INT32, 0},
                                        {"label", SL_PQ_STRING, 0},  {"score", SL_PQ_DOUBLE, 0}};
    tag_sink s = {0};
    uint64_t dups = 0;
    if (!rc && !path)
        rc = sl_seterr(SL_ENOMEM, "export: out of memory");
    if (!rc)
        rc = sl_parquet_open(&s.pq, path, cols, sizeof cols / sizeof *cols, group_rows(o, 0));
    if (!rc)
        rc = sl_parquet_meta(s.pq, "stemline:model", model);
    for (size_t k = 0; k < nsrc && !rc; k++) {
        if (only_source && strcmp(sources[k], only_source))
            continue;
        for (size_t i = 0; i < ncur; i++) {
            cursor *c = &cs[i];
            cur_close_file(c);
            c->fi = 0;
            c->have = 0;
            free(c->prev_id);
            free(c->id);
            c->prev_id = c->id = NULL;
            c->source = sources[k];
        }
        rc = merge_rows(cs, ncur, tag_emit, &s, &dups);
    }
    if (!rc) {
        rc = sl_parquet_close(s.pq);
        s.pq = NULL;
        if (!rc && o->log)
            fprintf(o->log, "%s: %llu tags\n", path, (unsigned long long)s.rows);
    }
    sl_parquet_abort(s.pq);
    for (size_t i = 0; i < ncur; i++)
        cur_free(&cs[i]);
    free(cs);
    free_list(sources, (long)nsrc);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- the run */

static int add_table(table **ts, size_t *n, const char *model, const char *source, const char *dir, int timeline)
{
    sl_vindex *ix = NULL;
    int rc = sl_vindex_open(&ix, dir);
    if (rc)
        return rc;
    table *nt = realloc(*ts, (*n + 1) * sizeof *nt);
    if (!nt) {
        sl_vindex_close(ix);
        return sl_seterr(SL_ENOMEM, "export: out of memory");
    }
    *ts = nt;
    table *t = &nt[*n];
    memset(t, 0, sizeof *t);
    t->model = strdup(model);
    t->source = strdup(source);
    t->dir = strdup(dir);
    t->timeline = timeline;
    t->dim = sl_vindex_dim(ix);
    const sl_index_meta *m = sl_vindex_meta(ix);
    t->f16 = m && m->dtype && !strcmp(m->dtype, "float16");
    sl_vindex_close(ix);
    (*n)++;
    return t->model && t->source && t->dir ? 0 : sl_seterr(SL_ENOMEM, "export: out of memory");
}

static void free_tables(table *ts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ts[i].model);
        free(ts[i].source);
        free(ts[i].dir);
    }
    free(ts);
}

/* Every (model, source[, timeline]) folder with shards that the options select. */
static int keep_sidecar(const char *dir, const char *name)
{
    (void)dir;
    size_t n = strlen(name);
    return n >= 10 && !strcmp(name + n - 10, "index.json");
}

/* Shard sets centred on different means (embedding.center: catalog: each shard
 * of a sharded job on its own mean until `stemline merge` centres them on the
 * catalog's) are not one table. */
static int check_centres(const char *dir)
{
    char **names;
    long n = list_dir(dir, keep_sidecar, &names);
    char *first = NULL;
    int rc = 0;
    for (long i = 0; i < n && !rc; i++) {
        char *p = sl_strcat3(dir, "/", names[i]);
        sl_index_meta m;
        if (!p) {
            rc = sl_seterr(SL_ENOMEM, "export: out of memory");
        } else if (!sl_index_meta_read(p, &m)) {
            const char *h = m.center_hash ? m.center_hash : "";
            if (!first && !(first = strdup(h)))
                rc = sl_seterr(SL_ENOMEM, "export: out of memory");
            else if (strcmp(first, h))
                rc = sl_seterr(SL_EFORMAT, "%s: these shard sets are centred on different means (embedding.center: "
                                           "catalog, each shard on its own): run `stemline merge` to centre them on "
                                           "the catalog mean, then export", dir);
            sl_index_meta_free(&m);
        }
        free(p);
    }
    free(first);
    free_list(names, n);
    return rc;
}

static int find_tables(const sl_export_opts *o, table **ts, size_t *nt)
{
    char *emb = sl_strcat3(o->out_dir, "/embeddings", "");
    char **models = NULL, **sources = NULL;
    long nm = 0, ns = 0;
    int rc = emb ? 0 : sl_seterr(SL_ENOMEM, "export: out of memory");
    if (!rc && (nm = list_dir(emb, keep_dir, &models)) < 0) {
        nm = 0;
        rc = sl_seterr(SL_ENOTFOUND, "%s: no vector shards here (no embeddings/ folder): not the output folder of a run, "
                                     "or no track is done yet", o->out_dir);
    }
    int model_seen = 0, source_seen = 0;
    for (long i = 0; i < nm && !rc; i++) {
        if (o->model && strcmp(o->model, models[i]))
            continue;
        model_seen = 1;
        char *md = sl_strcat3(emb, "/", models[i]);
        ns = md ? list_dir(md, keep_dir, &sources) : -1;
        for (long j = 0; j < ns && !rc; j++) {
            if (o->source && strcmp(o->source, sources[j]))
                continue;
            source_seen = 1;
            char *sd = sl_strcat3(md, "/", sources[j]);
            char *td = sd ? sl_strcat3(sd, "/timeline", "") : NULL;
            if (!sd || !td)
                rc = sl_seterr(SL_ENOMEM, "export: out of memory");
            if (!rc && !(rc = check_centres(sd)) && is_dir(td))
                rc = check_centres(td);
            if (!rc)
                rc = add_table(ts, nt, models[i], sources[j], sd, 0);
            if (rc == SL_ENOTFOUND)
                rc = 0; /* a folder without shards (nothing done for that source) */
            if (!rc && is_dir(td)) {
                rc = add_table(ts, nt, models[i], sources[j], td, 1);
                if (rc == SL_ENOTFOUND)
                    rc = 0;
            }
            free(sd);
            free(td);
        }
        free_list(sources, ns);
        sources = NULL;
        free(md);
    }
    if (!rc && o->model && !model_seen)
        rc = sl_seterr(SL_ENOTFOUND, "%s: no embedding model '%s' here (see %s)", o->out_dir, o->model, emb);
    else if (!rc && o->source && !source_seen)
        rc = sl_seterr(SL_ENOTFOUND, "%s: no source '%s'%s%s here", o->out_dir, o->source,
                       o->model ? " for model " : "", o->model ? o->model : "");
    else if (!rc && *nt == 0)
        rc = sl_seterr(SL_ENOTFOUND, "%s: no vector shards (embeddings/MODEL/SOURCE/shard-NNNNN.npy): nothing to export",
                       o->out_dir);
    free_list(models, nm);
    free(emb);
    return rc;
}

int sl_export_run(const sl_export_opts *in)
{
    sl_export_opts o = *in;
    char *dest = NULL;
    if (!o.dest)
        o.dest = dest = sl_strcat3(o.out_dir, "/export", "");
    table *ts = NULL;
    size_t nt = 0;
    int rc = o.dest ? 0 : sl_seterr(SL_ENOMEM, "export: out of memory");
    if (!rc && !is_dir(o.out_dir))
        rc = sl_seterr(SL_ENOTFOUND, "%s: no such folder", o.out_dir);
    if (!rc)
        rc = check_shard_sets(o.out_dir);
    if (!rc)
        rc = find_tables(&o, &ts, &nt);
    if (!rc && (rc = sl_mkdirs(o.dest)) < 0)
        rc = sl_seterr(rc, "%s: cannot create the folder: %s", o.dest, strerror(-rc));
    for (size_t i = 0; i < nt && !rc; i++)
        rc = export_vectors(&o, &ts[i]);
    /* tags of each exported model */
    const char *tagged = NULL;
    for (size_t i = 0; i < nt && !rc; i++) {
        if (tagged && !strcmp(ts[i].model, tagged))
            continue;
        tagged = ts[i].model;
        char *td = sl_strcat3(o.out_dir, "/tags/", ts[i].model);
        if (!td)
            rc = sl_seterr(SL_ENOMEM, "export: out of memory");
        else if (is_dir(td))
            rc = export_tags(&o, ts[i].model, o.source, td);
        free(td);
    }
    free_tables(ts, nt);
    free(dest);
    return rc;
}
