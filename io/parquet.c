/* Minimal Parquet writer (io/parquet.h). The file is
 *   "PAR1" | row group 0: column chunk 0 .. n-1 | row group 1 ... | footer | len | "PAR1"
 * where each column chunk is one DATA_PAGE (v1): a PageHeader in the Thrift
 * compact protocol, then (list columns only) the repetition and definition levels
 * in the RLE/bit-packing hybrid with a 4-byte length, then the PLAIN values.
 * The footer is a FileMetaData struct, also Thrift compact. Field numbers and
 * enum values are those of the Parquet format specification (parquet.thrift). */
#include "parquet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "npy.h"

/* ---------------------------------------------------------------- byte buffer */

typedef struct {
    unsigned char *p;
    size_t n, cap;
    int oom;
} buf;

static void b_put(buf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n)
            c *= 2;
        unsigned char *q = realloc(b->p, c);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void b_byte(buf *b, unsigned v)
{
    unsigned char c = (unsigned char)v;
    b_put(b, &c, 1);
}

static void b_le(buf *b, uint64_t v, int bytes)
{
    unsigned char t[8];
    for (int i = 0; i < bytes; i++)
        t[i] = (unsigned char)(v >> (8 * i));
    b_put(b, t, (size_t)bytes);
}

static void b_varint(buf *b, uint64_t v)
{
    while (v >= 0x80) {
        b_byte(b, (unsigned)(v & 0x7f) | 0x80);
        v >>= 7;
    }
    b_byte(b, (unsigned)v);
}

/* ---------------------------------------------------------------- Thrift compact */

enum { T_TRUE = 1, T_FALSE = 2, T_I32 = 5, T_I64 = 6, T_BINARY = 8, T_LIST = 9, T_STRUCT = 12 };

/* One struct being written: the last field id, for the delta in field headers. */
typedef struct {
    buf *b;
    int last;
} tstruct;

static void t_field(tstruct *s, int id, int type)
{
    int d = id - s->last;
    if (d > 0 && d <= 15) {
        b_byte(s->b, (unsigned)(d << 4 | type));
    } else {
        b_byte(s->b, (unsigned)type);
        b_varint(s->b, (uint64_t)((id << 1) ^ (id >> 15))); /* zigzag i16 */
    }
    s->last = id;
}

static uint64_t zz(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static void t_i32(tstruct *s, int id, int32_t v)
{
    t_field(s, id, T_I32);
    b_varint(s->b, zz(v));
}

static void t_i64(tstruct *s, int id, int64_t v)
{
    t_field(s, id, T_I64);
    b_varint(s->b, zz(v));
}

static void t_bin_raw(buf *b, const char *str)
{
    size_t n = strlen(str);
    b_varint(b, n);
    b_put(b, str, n);
}

static void t_str(tstruct *s, int id, const char *str)
{
    t_field(s, id, T_BINARY);
    t_bin_raw(s->b, str);
}

static void t_list(tstruct *s, int id, int elem_type, size_t n)
{
    t_field(s, id, T_LIST);
    if (n < 15) {
        b_byte(s->b, (unsigned)(n << 4 | (size_t)elem_type));
    } else {
        b_byte(s->b, 0xf0u | (unsigned)elem_type);
        b_varint(s->b, n);
    }
}

/* A nested struct: field header in the outer one, a fresh field-id count inside. */
static tstruct t_begin(tstruct *outer, int id)
{
    if (outer && id)
        t_field(outer, id, T_STRUCT);
    return (tstruct){outer ? outer->b : NULL, 0};
}

static void t_end(tstruct *s) { b_byte(s->b, 0); }

/* ---------------------------------------------------------------- writer */

enum { PQ_BOOLEAN, PQ_INT32, PQ_INT64, PQ_INT96, PQ_FLOAT, PQ_DOUBLE, PQ_BYTE_ARRAY };
enum { ENC_PLAIN = 0, ENC_RLE = 3 };

typedef struct {
    char *name;
    sl_pq_kind kind;
    size_t list_len;
    buf vals;         /* PLAIN values of the current row group */
    int set;          /* set in the current row */
} column;

typedef struct {
    int64_t offset, size, num_values;
} chunk_meta;

struct sl_parquet {
    sl_atomic_file *f;
    char *path;
    column *cols;
    size_t ncols, rg_rows, rows_in_group;
    uint64_t rows, offset;
    chunk_meta *chunks; /* ncols per row group */
    int64_t *rg_rows_of;
    size_t n_groups, cap_groups;
    char **kv;          /* key, value, key, value ... */
    size_t n_kv;
};

static int pq_oom(const sl_parquet *p) { return sl_seterr(SL_ENOMEM, "%s: out of memory", p->path); }

int sl_parquet_open(sl_parquet **out, const char *path, const sl_pq_column *cols, size_t ncols,
                    size_t row_group_rows)
{
    *out = NULL;
    if (!ncols || !row_group_rows)
        return sl_seterr(SL_EINVAL, "%s: a table needs columns and a row-group size", path);
    sl_parquet *p = calloc(1, sizeof *p);
    if (!p)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    p->path = strdup(path);
    p->cols = calloc(ncols, sizeof *p->cols);
    p->ncols = ncols;
    p->rg_rows = row_group_rows;
    if (!p->path || !p->cols) {
        sl_parquet_abort(p);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    for (size_t i = 0; i < ncols; i++) {
        if (cols[i].kind == SL_PQ_FLOAT_LIST && !cols[i].list_len) {
            sl_parquet_abort(p);
            return sl_seterr(SL_EINVAL, "%s: list column %s of length 0", path, cols[i].name);
        }
        p->cols[i].name = strdup(cols[i].name);
        p->cols[i].kind = cols[i].kind;
        p->cols[i].list_len = cols[i].list_len;
        if (!p->cols[i].name) {
            sl_parquet_abort(p);
            return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
        }
    }
    int rc = sl_atomic_open(&p->f, path);
    if (!rc)
        rc = sl_atomic_write(p->f, "PAR1", 4);
    if (rc) {
        sl_parquet_abort(p);
        return rc;
    }
    p->offset = 4;
    *out = p;
    return 0;
}

static column *col_of(sl_parquet *p, size_t c, sl_pq_kind kind)
{
    if (c >= p->ncols || p->cols[c].kind != kind || p->cols[c].set) {
        sl_seterr(SL_EINVAL, "%s: column %zu set twice or with the wrong kind", p->path, c);
        return NULL;
    }
    p->cols[c].set = 1;
    return &p->cols[c];
}

static int put_fixed(sl_parquet *p, size_t c, sl_pq_kind kind, uint64_t v, int bytes)
{
    column *k = col_of(p, c, kind);
    if (!k)
        return SL_EINVAL;
    b_le(&k->vals, v, bytes);
    return k->vals.oom ? pq_oom(p) : 0;
}

int sl_parquet_i32(sl_parquet *p, size_t c, int32_t v) { return put_fixed(p, c, SL_PQ_INT32, (uint32_t)v, 4); }

int sl_parquet_i64(sl_parquet *p, size_t c, int64_t v) { return put_fixed(p, c, SL_PQ_INT64, (uint64_t)v, 8); }

int sl_parquet_f64(sl_parquet *p, size_t c, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return put_fixed(p, c, SL_PQ_DOUBLE, u, 8);
}

int sl_parquet_str(sl_parquet *p, size_t c, const char *s)
{
    column *k = col_of(p, c, SL_PQ_STRING);
    if (!k)
        return SL_EINVAL;
    size_t n = s ? strlen(s) : 0;
    if (n > 0x7fffffffu)
        return sl_seterr(SL_EINVAL, "%s: string of %zu bytes", p->path, n);
    b_le(&k->vals, n, 4);
    b_put(&k->vals, s ? s : "", n);
    return k->vals.oom ? pq_oom(p) : 0;
}

int sl_parquet_floats(sl_parquet *p, size_t c, const float *v)
{
    column *k = col_of(p, c, SL_PQ_FLOAT_LIST);
    if (!k)
        return SL_EINVAL;
    for (size_t i = 0; i < k->list_len; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        b_le(&k->vals, u, 4);
    }
    return k->vals.oom ? pq_oom(p) : 0;
}

/* Levels of a list column of rows x len items in the RLE hybrid (bit width 1),
 * each block preceded by its 4-byte length: repetition 0 then len - 1 ones per
 * row; definition 1 for every item (required element in a repeated group). */
static void list_levels(buf *b, size_t rows, size_t len)
{
    buf r = {0};
    for (size_t i = 0; i < rows; i++) {
        b_varint(&r, 1u << 1);
        b_byte(&r, 0);
        if (len > 1) {
            b_varint(&r, (uint64_t)(len - 1) << 1);
            b_byte(&r, 1);
        }
    }
    b_le(b, r.n, 4);
    b_put(b, r.p, r.n);
    if (r.oom)
        b->oom = 1;
    free(r.p);
    buf d = {0};
    b_varint(&d, (uint64_t)(rows * len) << 1);
    b_byte(&d, 1);
    b_le(b, d.n, 4);
    b_put(b, d.p, d.n);
    if (d.oom)
        b->oom = 1;
    free(d.p);
}

static int write_group(sl_parquet *p)
{
    if (!p->rows_in_group)
        return 0;
    if (p->n_groups == p->cap_groups) {
        size_t nc = p->cap_groups ? 2 * p->cap_groups : 16;
        chunk_meta *cm = realloc(p->chunks, nc * p->ncols * sizeof *cm);
        if (cm)
            p->chunks = cm;
        int64_t *rr = realloc(p->rg_rows_of, nc * sizeof *rr);
        if (rr)
            p->rg_rows_of = rr;
        if (!cm || !rr)
            return pq_oom(p);
        p->cap_groups = nc;
    }
    for (size_t c = 0; c < p->ncols; c++) {
        column *k = &p->cols[c];
        /* the page is levels (list columns) + the values, written as they are held:
         * no copy of the row group */
        buf lev = {0}, head = {0};
        int64_t nvals = (int64_t)p->rows_in_group;
        if (k->kind == SL_PQ_FLOAT_LIST) {
            nvals *= (int64_t)k->list_len;
            list_levels(&lev, p->rows_in_group, k->list_len);
        }
        size_t body_n = lev.n + k->vals.n;
        if (body_n > 0x7fffffffu) {
            free(lev.p);
            return sl_seterr(SL_EINVAL, "%s: a row group of column %s exceeds 2 GiB: use smaller row groups",
                             p->path, k->name);
        }
        tstruct ph = {&head, 0};
        t_i32(&ph, 1, 0); /* DATA_PAGE */
        t_i32(&ph, 2, (int32_t)body_n);
        t_i32(&ph, 3, (int32_t)body_n);
        tstruct dp = t_begin(&ph, 5);
        t_i32(&dp, 1, (int32_t)nvals);
        t_i32(&dp, 2, ENC_PLAIN);
        t_i32(&dp, 3, ENC_RLE);
        t_i32(&dp, 4, ENC_RLE);
        t_end(&dp);
        t_end(&ph);
        int rc = 0;
        if (lev.oom || head.oom)
            rc = pq_oom(p);
        if (!rc)
            rc = sl_atomic_write(p->f, head.p, head.n);
        if (!rc && lev.n)
            rc = sl_atomic_write(p->f, lev.p, lev.n);
        if (!rc)
            rc = sl_atomic_write(p->f, k->vals.p, k->vals.n);
        chunk_meta *m = &p->chunks[p->n_groups * p->ncols + c];
        m->offset = (int64_t)p->offset;
        m->size = (int64_t)(head.n + body_n);
        m->num_values = nvals;
        p->offset += head.n + body_n;
        free(head.p);
        free(lev.p);
        if (rc)
            return rc;
        k->vals.n = 0;
    }
    p->rg_rows_of[p->n_groups++] = (int64_t)p->rows_in_group;
    p->rows_in_group = 0;
    return 0;
}

int sl_parquet_end_row(sl_parquet *p)
{
    for (size_t c = 0; c < p->ncols; c++) {
        if (!p->cols[c].set)
            return sl_seterr(SL_EINVAL, "%s: row %llu has no value for column %s", p->path,
                             (unsigned long long)p->rows, p->cols[c].name);
        p->cols[c].set = 0;
    }
    p->rows++;
    if (++p->rows_in_group >= p->rg_rows)
        return write_group(p);
    return 0;
}

uint64_t sl_parquet_rows(const sl_parquet *p) { return p->rows; }

int sl_parquet_meta(sl_parquet *p, const char *key, const char *value)
{
    char **kv = realloc(p->kv, (p->n_kv + 2) * sizeof *kv);
    if (!kv)
        return pq_oom(p);
    p->kv = kv;
    kv[p->n_kv] = strdup(key);
    kv[p->n_kv + 1] = strdup(value);
    p->n_kv += 2;
    return kv[p->n_kv - 2] && kv[p->n_kv - 1] ? 0 : pq_oom(p);
}

/* SchemaElement of a leaf or group (parquet.thrift field numbers). */
static void schema_elem(tstruct *list_owner, int type, int repetition, const char *name, int children,
                        int converted, int logical)
{
    tstruct e = {list_owner->b, 0};
    if (type >= 0)
        t_i32(&e, 1, type);
    t_i32(&e, 3, repetition);
    t_str(&e, 4, name);
    if (children >= 0)
        t_i32(&e, 5, children);
    if (converted >= 0)
        t_i32(&e, 6, converted);
    if (logical > 0) { /* LogicalType union: 1 STRING, 3 LIST, both empty structs */
        tstruct lt = t_begin(&e, 10);
        tstruct empty = t_begin(&lt, logical);
        t_end(&empty);
        t_end(&lt);
    }
    t_end(&e);
}

enum { REP_REQUIRED = 0, REP_REPEATED = 2, CONV_UTF8 = 0, CONV_LIST = 3 };

static int physical(sl_pq_kind k)
{
    switch (k) {
    case SL_PQ_INT32: return PQ_INT32;
    case SL_PQ_INT64: return PQ_INT64;
    case SL_PQ_DOUBLE: return PQ_DOUBLE;
    case SL_PQ_STRING: return PQ_BYTE_ARRAY;
    default: return PQ_FLOAT;
    }
}

static void footer(sl_parquet *p, buf *b)
{
    tstruct fm = {b, 0};
    t_i32(&fm, 1, 1); /* version */
    size_t n_schema = 1;
    for (size_t c = 0; c < p->ncols; c++)
        n_schema += p->cols[c].kind == SL_PQ_FLOAT_LIST ? 3 : 1;
    t_list(&fm, 2, T_STRUCT, n_schema);
    schema_elem(&fm, -1, REP_REQUIRED, "schema", (int)p->ncols, -1, 0);
    for (size_t c = 0; c < p->ncols; c++) {
        column *k = &p->cols[c];
        if (k->kind == SL_PQ_FLOAT_LIST) {
            schema_elem(&fm, -1, REP_REQUIRED, k->name, 1, CONV_LIST, 3);
            schema_elem(&fm, -1, REP_REPEATED, "list", 1, -1, 0);
            schema_elem(&fm, PQ_FLOAT, REP_REQUIRED, "element", -1, -1, 0);
        } else {
            int str = k->kind == SL_PQ_STRING;
            schema_elem(&fm, physical(k->kind), REP_REQUIRED, k->name, -1, str ? CONV_UTF8 : -1, str ? 1 : 0);
        }
    }
    t_i64(&fm, 3, (int64_t)p->rows);
    t_list(&fm, 4, T_STRUCT, p->n_groups);
    for (size_t g = 0; g < p->n_groups; g++) {
        tstruct rg = {b, 0};
        t_list(&rg, 1, T_STRUCT, p->ncols);
        int64_t total = 0;
        for (size_t c = 0; c < p->ncols; c++) {
            const column *k = &p->cols[c];
            const chunk_meta *m = &p->chunks[g * p->ncols + c];
            total += m->size;
            tstruct cc = {b, 0};
            t_i64(&cc, 2, m->offset);
            tstruct md = t_begin(&cc, 3);
            t_i32(&md, 1, physical(k->kind));
            t_list(&md, 2, T_I32, 2);
            b_varint(b, zz(ENC_PLAIN));
            b_varint(b, zz(ENC_RLE));
            int list = k->kind == SL_PQ_FLOAT_LIST;
            t_list(&md, 3, T_BINARY, list ? 3 : 1);
            t_bin_raw(b, k->name);
            if (list) {
                t_bin_raw(b, "list");
                t_bin_raw(b, "element");
            }
            t_i32(&md, 4, 0); /* UNCOMPRESSED */
            t_i64(&md, 5, m->num_values);
            t_i64(&md, 6, m->size);
            t_i64(&md, 7, m->size);
            t_i64(&md, 9, m->offset);
            t_end(&md);
            t_end(&cc);
        }
        t_i64(&rg, 2, total);
        t_i64(&rg, 3, p->rg_rows_of[g]);
        t_i64(&rg, 5, p->chunks[g * p->ncols].offset);
        t_i64(&rg, 6, total);
        t_end(&rg);
    }
    if (p->n_kv) {
        t_list(&fm, 5, T_STRUCT, p->n_kv / 2);
        for (size_t i = 0; i < p->n_kv; i += 2) {
            tstruct kv = {b, 0};
            t_str(&kv, 1, p->kv[i]);
            t_str(&kv, 2, p->kv[i + 1]);
            t_end(&kv);
        }
    }
    t_str(&fm, 6, "stemline " SL_VERSION);
    t_end(&fm);
}

int sl_parquet_close(sl_parquet *p)
{
    int rc = write_group(p);
    if (!rc) {
        buf b = {0};
        footer(p, &b);
        b_le(&b, b.n, 4);
        b_put(&b, "PAR1", 4);
        rc = b.oom ? pq_oom(p) : sl_atomic_write(p->f, b.p, b.n);
        free(b.p);
    }
    if (!rc) {
        rc = sl_atomic_commit(p->f);
        p->f = NULL;
    }
    sl_parquet_abort(p);
    return rc;
}

void sl_parquet_abort(sl_parquet *p)
{
    if (!p)
        return;
    sl_atomic_abort(p->f);
    for (size_t c = 0; c < p->ncols && p->cols; c++) {
        free(p->cols[c].name);
        free(p->cols[c].vals.p);
    }
    free(p->cols);
    for (size_t i = 0; i < p->n_kv; i++)
        free(p->kv[i]);
    free(p->kv);
    free(p->chunks);
    free(p->rg_rows_of);
    free(p->path);
    free(p);
}
