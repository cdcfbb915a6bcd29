/* safetensors reader. Nothing in the file is trusted until all of it has been
 * checked: the header is parsed by a small schema-directed JSON parser (the
 * format allows only {name: {dtype, shape, data_offsets}} and a flat string map
 * "__metadata__", so nesting is at most 3 levels by construction and nothing is
 * ever skipped unparsed), every size is computed in size_t/uint64 with overflow
 * checks, and every tensor's byte range must lie inside the data area, match
 * its dtype and shape, and not overlap another. Only then are pointers handed
 * out. The parser never reads past the header it was given (every read is
 * bounds-checked against the end of the header). */
#include "safetensors.h"

#include "../common/sl_error.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The same limit as the reference implementation (huggingface/safetensors). */
#define ST_MAX_HEADER ((uint64_t)100000000)
#define ST_MAX_DIMS 8

typedef struct {
    char *key;
    char *value;
} st_meta;

struct sl_st_file {
    char *name;          /* for messages */
    void *map;           /* mmap of the whole file, NULL for buffers */
    size_t map_len;
    const uint8_t *data; /* start of the data area (after the header) */
    size_t data_len;
    char *arena;         /* decoded strings (names, metadata) */
    sl_st_tensor *t;     /* sorted by data offset */
    size_t n;
    size_t *by_name;     /* indices into t, sorted by name, for sl_st_find */
    st_meta *meta;       /* sorted by key */
    size_t n_meta;
};

/* ---- mappings shared by the opens of one file ----
 * Every sl_st_open of the same file (device, inode, size, modification time)
 * in the process reads one mapping: the model workers' weights then lie at
 * the same addresses, so the forms a backend derives from them once are
 * shared by every worker (kernels/cpu: sl_cpu_fixed_form). The mapping goes
 * when its last file is closed. */
typedef struct st_map {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    void *map;
    size_t len;
    int refs;
    struct st_map *next;
} st_map;
static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;
static st_map *maps;

/* The mapping of the file open at fd (st its fstat), made or shared: MAP_FAILED with errno when it cannot be. */
static void *map_shared(int fd, const struct stat *st, size_t len)
{
    pthread_mutex_lock(&maps_mu);
    for (st_map *m = maps; m; m = m->next)
        if (m->dev == st->st_dev && m->ino == st->st_ino && m->size == st->st_size &&
            m->mtime.tv_sec == st->st_mtim.tv_sec && m->mtime.tv_nsec == st->st_mtim.tv_nsec) {
            m->refs++;
            pthread_mutex_unlock(&maps_mu);
            return m->map;
        }
    st_map *m = calloc(1, sizeof *m);
    /* Read-only, private: the process can never write the weights, and a file
     * truncated by someone else while mapped can only fault, not be misread. */
    void *p = m ? mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    if (p == MAP_FAILED) {
        const int e = m ? errno : ENOMEM;
        free(m);
        pthread_mutex_unlock(&maps_mu);
        errno = e;
        return MAP_FAILED;
    }
#ifdef MADV_HUGEPAGE
    /* pages not in the page cache are then read into 2 MiB folios, mapped by one entry
     * each here and at every later open (the CLAP text tower's 340 MB: ~5k page faults
     * and ~50 ms of CPU per `search --text` through 4-64 KiB folios, ~2k through these) */
    madvise(p, len, MADV_HUGEPAGE);
#endif
    *m = (st_map){.dev = st->st_dev, .ino = st->st_ino, .size = st->st_size, .mtime = st->st_mtim, .map = p,
                  .len = len, .refs = 1, .next = maps};
    maps = m;
    pthread_mutex_unlock(&maps_mu);
    return p;
}

static void unmap_shared(void *p, size_t len)
{
    pthread_mutex_lock(&maps_mu);
    for (st_map **pp = &maps; *pp; pp = &(*pp)->next) {
        st_map *m = *pp;
        if (m->map != p)
            continue;
        if (--m->refs == 0) {
            *pp = m->next;
            munmap(m->map, m->len);
            free(m);
        }
        pthread_mutex_unlock(&maps_mu);
        return;
    }
    pthread_mutex_unlock(&maps_mu);
    munmap(p, len); /* not shared (cannot happen: every map of a file is) */
}

/* ---- parser state ---- */

typedef struct {
    const uint8_t *p, *end, *start;
    char *arena;    /* where the next decoded string goes */
    char *arena_end;
    const char *fname;
    int err;        /* first error code, 0 while fine */
} st_parser;

typedef struct {
    char *name;
    int dtype;      /* -1 until seen */
    int ndim;       /* -1 until seen */
    uint64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;
    int have_offsets;
} st_entry;

static int perr(st_parser *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int perr(st_parser *ps, const char *fmt, ...)
{
    if (ps->err)
        return ps->err;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t at = (size_t)(ps->p - ps->start);
    ps->err = sl_seterr(SL_EFORMAT, "%s: malformed safetensors header: %s (at header byte %zu)", ps->fname, msg, at);
    return ps->err;
}

static void skip_ws(st_parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Consumes c (after whitespace) or fails. */
static int expect(st_parser *ps, char c, const char *what)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return perr(ps, "header ends where %s was expected", what);
    if (*ps->p != (uint8_t)c)
        return perr(ps, "expected %s", what);
    ps->p++;
    return 0;
}

/* 1 when the next non-space byte is c (consumed). */
static int accept(st_parser *ps, char c)
{
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == (uint8_t)c) {
        ps->p++;
        return 1;
    }
    return 0;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int read_u4(st_parser *ps, unsigned *out)
{
    if (ps->end - ps->p < 4)
        return perr(ps, "unterminated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(ps->p[i]);
        if (h < 0)
            return perr(ps, "bad \\u escape");
        v = v << 4 | (unsigned)h;
    }
    ps->p += 4;
    *out = v;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (no overlongs, no surrogates, <= U+10FFFF), 0 if invalid. */
static size_t utf8_len(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static void put_utf8(char **w, uint32_t cp)
{
    char *o = *w;
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | (cp >> 12 & 0x3F));
        *o++ = (char)(0x80 | (cp >> 6 & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    *w = o;
}

/* Parses a JSON string into the arena (NUL-terminated, valid UTF-8, no NUL
 * inside). The decoded form plus its NUL is never longer than the quoted
 * source, so an arena as large as the header always suffices; the check below
 * guards that reasoning anyway. */
static int parse_string(st_parser *ps, char **out)
{
    if (expect(ps, '"', "a string"))
        return ps->err;
    char *w = ps->arena;
    for (;;) {
        if (ps->p >= ps->end)
            return perr(ps, "unterminated string");
        if (ps->arena_end - w < 5)
            return perr(ps, "string does not fit"); /* cannot happen: see above */
        uint8_t c = *ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20)
            return perr(ps, "control character in a string");
        if (c == '\\') {
            if (ps->end - ps->p < 2)
                return perr(ps, "unterminated string");
            uint8_t e = ps->p[1];
            ps->p += 2;
            switch (e) {
            case '"': *w++ = '"'; break;
            case '\\': *w++ = '\\'; break;
            case '/': *w++ = '/'; break;
            case 'b': *w++ = '\b'; break;
            case 'f': *w++ = '\f'; break;
            case 'n': *w++ = '\n'; break;
            case 'r': *w++ = '\r'; break;
            case 't': *w++ = '\t'; break;
            case 'u': {
                unsigned u = 0;
                if (read_u4(ps, &u))
                    return ps->err;
                uint32_t cp = u;
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return perr(ps, "lone low surrogate in \\u escape");
                if (u >= 0xD800 && u <= 0xDBFF) {
                    unsigned lo = 0;
                    if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
                        return perr(ps, "lone high surrogate in \\u escape");
                    ps->p += 2;
                    if (read_u4(ps, &lo))
                        return ps->err;
                    if (lo < 0xDC00 || lo > 0xDFFF)
                        return perr(ps, "bad surrogate pair in \\u escape");
                    cp = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp == 0)
                    return perr(ps, "\\u0000 in a string");
                put_utf8(&w, cp);
                break;
            }
            default:
                return perr(ps, "bad escape in a string");
            }
            continue;
        }
        size_t n = utf8_len(ps->p, ps->end);
        if (!n)
            return perr(ps, "invalid UTF-8 in a string");
        memcpy(w, ps->p, n);
        w += n;
        ps->p += n;
    }
    *w++ = 0;
    *out = ps->arena;
    ps->arena = w;
    return 0;
}

/* A non-negative JSON integer (no sign, fraction or exponent) that fits uint64. */
static int parse_uint(st_parser *ps, uint64_t *out, const char *what)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return perr(ps, "header ends where %s was expected", what);
    if (*ps->p == '-')
        return perr(ps, "negative %s", what);
    if (*ps->p < '0' || *ps->p > '9')
        return perr(ps, "%s is not an integer", what);
    if (*ps->p == '0' && ps->end - ps->p > 1 && ps->p[1] >= '0' && ps->p[1] <= '9')
        return perr(ps, "%s has a leading zero", what);
    uint64_t v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        unsigned d = (unsigned)(*ps->p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return perr(ps, "%s is too large", what);
        v = v * 10 + d;
        ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
        return perr(ps, "%s is not an integer", what);
    *out = v;
    return 0;
}

static const struct {
    const char *name;
    sl_st_dtype dt;
    size_t size;
} st_dtypes[] = {
    {"F32", SL_ST_F32, 4}, {"F16", SL_ST_F16, 2}, {"BF16", SL_ST_BF16, 2}, {"F64", SL_ST_F64, 8},
    {"I64", SL_ST_I64, 8}, {"I32", SL_ST_I32, 4}, {"U8", SL_ST_U8, 1},     {"BOOL", SL_ST_BOOL, 1},
};
#define N_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

const char *sl_st_dtype_name(sl_st_dtype dt)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (st_dtypes[i].dt == dt)
            return st_dtypes[i].name;
    return "?";
}

size_t sl_st_dtype_size(sl_st_dtype dt)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (st_dtypes[i].dt == dt)
            return st_dtypes[i].size;
    return 0;
}

/* {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}: each key exactly once, no others. */
static int parse_entry(st_parser *ps, st_entry *e)
{
    e->dtype = -1;
    e->ndim = -1;
    e->have_offsets = 0;
    if (expect(ps, '{', "'{' opening the entry of a tensor"))
        return ps->err;
    if (accept(ps, '}'))
        return perr(ps, "tensor '%s': empty entry (needs dtype, shape, data_offsets)", e->name);
    do {
        char *key;
        const uint8_t *key_at = ps->p;
        char *mark = ps->arena;
        if (parse_string(ps, &key) || expect(ps, ':', "':' after a key"))
            return ps->err;
        if (!strcmp(key, "dtype")) {
            if (e->dtype >= 0)
                return perr(ps, "tensor '%s': duplicate key \"dtype\"", e->name);
            char *v;
            if (parse_string(ps, &v))
                return ps->err;
            for (size_t i = 0; i < N_DTYPES; i++)
                if (!strcmp(v, st_dtypes[i].name))
                    e->dtype = (int)st_dtypes[i].dt;
            if (e->dtype < 0)
                return perr(ps, "tensor '%s': unsupported dtype \"%.32s\" (supported: F32 F16 BF16 F64 I64 I32 U8 BOOL)",
                            e->name, v);
        } else if (!strcmp(key, "shape")) {
            if (e->ndim >= 0)
                return perr(ps, "tensor '%s': duplicate key \"shape\"", e->name);
            if (expect(ps, '[', "'[' opening a shape"))
                return ps->err;
            e->ndim = 0;
            if (!accept(ps, ']')) {
                do {
                    if (e->ndim == ST_MAX_DIMS)
                        return perr(ps, "tensor '%s': more than %d dimensions", e->name, ST_MAX_DIMS);
                    if (parse_uint(ps, &e->shape[e->ndim], "a dimension"))
                        return ps->err;
                    if (e->shape[e->ndim] > (uint64_t)INT64_MAX)
                        return perr(ps, "tensor '%s': dimension too large", e->name);
                    e->ndim++;
                } while (accept(ps, ','));
                if (expect(ps, ']', "',' or ']' in a shape"))
                    return ps->err;
            }
        } else if (!strcmp(key, "data_offsets")) {
            if (e->have_offsets)
                return perr(ps, "tensor '%s': duplicate key \"data_offsets\"", e->name);
            if (expect(ps, '[', "'[' opening data_offsets") || parse_uint(ps, &e->begin, "a data offset") ||
                expect(ps, ',', "',' between the two data offsets") ||
                parse_uint(ps, &e->end, "a data offset") ||
                expect(ps, ']', "']' after two data offsets (data_offsets is [begin, end])"))
                return ps->err;
            e->have_offsets = 1;
        } else {
            ps->p = key_at;
            return perr(ps, "tensor '%s': unknown key \"%.40s\" (allowed: dtype, shape, data_offsets)", e->name, key);
        }
        ps->arena = mark; /* keys and dtype strings are not kept */
    } while (accept(ps, ','));
    if (expect(ps, '}', "',' or '}' in the entry of a tensor"))
        return ps->err;
    if (e->dtype < 0)
        return perr(ps, "tensor '%s': no dtype", e->name);
    if (e->ndim < 0)
        return perr(ps, "tensor '%s': no shape", e->name);
    if (!e->have_offsets)
        return perr(ps, "tensor '%s': no data_offsets", e->name);
    return 0;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const sl_st_tensor *x = a, *y = b;
    /* data pointers all point into one area, so comparing them is defined */
    uintptr_t px = (uintptr_t)x->data, py = (uintptr_t)y->data;
    if (px != py)
        return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : (x->nbytes > y->nbytes);
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp(((const st_meta *)a)->key, ((const st_meta *)b)->key);
}

void sl_st_close(sl_st_file *f)
{
    if (!f)
        return;
    if (f->map)
        unmap_shared(f->map, f->map_len);
    free(f->name);
    free(f->arena);
    free(f->t);
    free(f->by_name);
    free(f->meta);
    free(f);
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 64;
    if (nc > SIZE_MAX / elem)
        return SL_ENOMEM;
    void *p = realloc(*arr, nc * elem);
    if (!p)
        return SL_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

/* Everything but mapping: parses and validates buf[0..len) into f. */
static int st_parse(sl_st_file *f, const uint8_t *buf, size_t len)
{
    const char *fn = f->name;
    if (len < 8)
        return sl_seterr(SL_EFORMAT, "%s: not a safetensors file: %zu bytes, shorter than the 8-byte header length",
                         fn, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    if (hlen > ST_MAX_HEADER)
        return sl_seterr(SL_EFORMAT,
                         "%s: not a safetensors file: header length %llu is over the limit of 100 MB",
                         fn, (unsigned long long)hlen);
    if (hlen > len - 8)
        return sl_seterr(SL_EFORMAT,
                         "%s: truncated or not a safetensors file: header length %llu but only %zu bytes follow",
                         fn, (unsigned long long)hlen, len - 8);
    if (hlen < 2)
        return sl_seterr(SL_EFORMAT, "%s: not a safetensors file: header of %llu bytes cannot hold a JSON object",
                         fn, (unsigned long long)hlen);
    size_t hl = (size_t)hlen;
    f->data = buf + 8 + hl;
    f->data_len = len - 8 - hl;

    f->arena = malloc(hl + 1);
    if (!f->arena)
        return sl_seterr(SL_ENOMEM, "%s: out of memory for a %zu-byte header", fn, hl);
    st_parser ps = {.p = buf + 8, .end = buf + 8 + hl, .start = buf + 8, .arena = f->arena,
                    .arena_end = f->arena + hl + 1, .fname = fn};

    size_t cap = 0, meta_cap = 0;
    int seen_meta = 0;
    skip_ws(&ps);
    if (ps.p < ps.end && *ps.p != '{')
        return perr(&ps, "the header is not a JSON object");
    if (expect(&ps, '{', "'{' opening the header"))
        return ps.err;
    if (!accept(&ps, '}')) {
        do {
            char *key;
            if (parse_string(&ps, &key) || expect(&ps, ':', "':' after a key"))
                return ps.err;
            if (!strcmp(key, "__metadata__")) {
                if (seen_meta)
                    return perr(&ps, "duplicate key \"__metadata__\"");
                seen_meta = 1;
                skip_ws(&ps);
                if (ps.p < ps.end && *ps.p != '{')
                    return perr(&ps, "__metadata__ is not an object of strings");
                if (expect(&ps, '{', "'{' opening __metadata__"))
                    return ps.err;
                if (!accept(&ps, '}')) {
                    do {
                        st_meta m;
                        if (parse_string(&ps, &m.key) || expect(&ps, ':', "':' after a key"))
                            return ps.err;
                        skip_ws(&ps);
                        if (ps.p < ps.end && *ps.p != '"')
                            return perr(&ps, "__metadata__ value of \"%.40s\" is not a string", m.key);
                        if (parse_string(&ps, &m.value))
                            return ps.err;
                        if (grow((void **)&f->meta, &meta_cap, f->n_meta, sizeof *f->meta))
                            return sl_seterr(SL_ENOMEM, "%s: out of memory", fn);
                        f->meta[f->n_meta++] = m;
                    } while (accept(&ps, ','));
                    if (expect(&ps, '}', "',' or '}' in __metadata__"))
                        return ps.err;
                }
                continue;
            }
            st_entry e;
            e.name = key;
            if (parse_entry(&ps, &e))
                return ps.err;
            /* shape -> element count -> bytes, all overflow-checked */
            size_t esz = sl_st_dtype_size((sl_st_dtype)e.dtype);
            uint64_t nel = 1;
            int overflow = 0;
            for (int d = 0; d < e.ndim; d++) {
                if (e.shape[d] && nel > UINT64_MAX / e.shape[d])
                    overflow = 1;
                else
                    nel *= e.shape[d];
            }
            if (overflow || nel > UINT64_MAX / esz)
                return perr(&ps, "tensor '%s': shape too large", key);
            uint64_t nbytes = nel * esz;
            if (e.end < e.begin)
                return perr(&ps, "tensor '%s': data_offsets [%llu, %llu] end before they begin", key,
                            (unsigned long long)e.begin, (unsigned long long)e.end);
            if (e.end - e.begin != nbytes)
                return perr(&ps, "tensor '%s': data_offsets [%llu, %llu] hold %llu bytes but dtype %s and its shape need %llu",
                            key, (unsigned long long)e.begin, (unsigned long long)e.end,
                            (unsigned long long)(e.end - e.begin), sl_st_dtype_name((sl_st_dtype)e.dtype),
                            (unsigned long long)nbytes);
            if (e.end > (uint64_t)f->data_len)
                return perr(&ps, "tensor '%s': data_offsets [%llu, %llu] reach past the end of the data (%zu bytes; file truncated?)",
                            key, (unsigned long long)e.begin, (unsigned long long)e.end, f->data_len);
            if (grow((void **)&f->t, &cap, f->n, sizeof *f->t))
                return sl_seterr(SL_ENOMEM, "%s: out of memory", fn);
            sl_st_tensor *t = &f->t[f->n++];
            memset(t, 0, sizeof *t);
            t->name = key;
            t->dtype = (sl_st_dtype)e.dtype;
            t->ndim = e.ndim;
            for (int d = 0; d < e.ndim; d++)
                t->shape[d] = (int64_t)e.shape[d];
            t->data = f->data + (size_t)e.begin;
            t->nbytes = (size_t)nbytes;
        } while (accept(&ps, ','));
        if (expect(&ps, '}', "',' or '}' in the header"))
            return ps.err;
    }
    skip_ws(&ps);
    if (ps.p != ps.end)
        return perr(&ps, "bytes after the JSON object (only space padding is allowed)");

    /* name index (sorted and checked for duplicates in st_finish); names cannot
     * hide a NUL (\u0000 is rejected), so strcmp equality is name equality */
    if (f->n) {
        f->by_name = malloc(f->n * sizeof *f->by_name);
        if (!f->by_name)
            return sl_seterr(SL_ENOMEM, "%s: out of memory", fn);
    }
    /* Byte ranges: sorted by offset they must tile the data area exactly, as the
     * reference implementation requires (no overlap, no gap, nothing after). */
    if (f->n > 1)
        qsort(f->t, f->n, sizeof *f->t, cmp_tensor_offset);
    size_t pos = 0;
    for (size_t i = 0; i < f->n; i++) {
        size_t b = (size_t)((const uint8_t *)f->t[i].data - f->data);
        if (b < pos)
            return sl_seterr(SL_EFORMAT, "%s: tensors '%s' and '%s' overlap in the data area", fn, f->t[i].name,
                             f->t[i - 1].name);
        if (b > pos)
            return sl_seterr(SL_EFORMAT, "%s: %zu unused bytes in the data area before tensor '%s' (offset %zu)", fn,
                             b - pos, f->t[i].name, b);
        pos = b + f->t[i].nbytes;
    }
    if (pos != f->data_len)
        return sl_seterr(SL_EFORMAT, "%s: the data area has %zu bytes but the tensors cover %zu (%s)", fn,
                         f->data_len, pos, pos < f->data_len ? "trailing bytes" : "truncated");
    for (size_t i = 0; i < f->n; i++)
        f->by_name[i] = i;
    return 0;
}

/* qsort has no context argument in C11; a merge sort of indices into f->t keeps
 * opening reentrant (no global comparator state). */
static void msort_names(size_t *a, size_t *tmp, size_t n, const sl_st_tensor *t)
{
    if (n < 2)
        return;
    size_t h = n / 2;
    msort_names(a, tmp, h, t);
    msort_names(a + h, tmp, n - h, t);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = strcmp(t[a[i]].name, t[a[j]].name) <= 0 ? a[i++] : a[j++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

static int st_finish(sl_st_file *f)
{
    if (f->n) {
        size_t *tmp = malloc(f->n * sizeof *tmp);
        if (!tmp)
            return sl_seterr(SL_ENOMEM, "%s: out of memory", f->name);
        msort_names(f->by_name, tmp, f->n, f->t);
        free(tmp);
        for (size_t i = 1; i < f->n; i++)
            if (!strcmp(f->t[f->by_name[i]].name, f->t[f->by_name[i - 1]].name))
                return sl_seterr(SL_EFORMAT, "%s: malformed safetensors header: tensor '%s' appears twice", f->name,
                                 f->t[f->by_name[i]].name);
    }
    if (f->n_meta > 1) {
        qsort(f->meta, f->n_meta, sizeof *f->meta, cmp_meta);
        for (size_t i = 1; i < f->n_meta; i++)
            if (!strcmp(f->meta[i].key, f->meta[i - 1].key))
                return sl_seterr(SL_EFORMAT, "%s: malformed safetensors header: __metadata__ key '%s' appears twice",
                                 f->name, f->meta[i].key);
    }
    return 0;
}

static int st_new(sl_st_file **out, const char *name)
{
    *out = NULL;
    sl_st_file *f = calloc(1, sizeof *f);
    if (!f)
        return sl_seterr(SL_ENOMEM, "out of memory");
    f->name = strdup(name ? name : "(buffer)");
    if (!f->name) {
        free(f);
        return sl_seterr(SL_ENOMEM, "out of memory");
    }
    *out = f;
    return 0;
}

int sl_st_open_buffer(sl_st_file **out, const void *buf, size_t len, const char *name)
{
    sl_st_file *f;
    if (!out)
        return sl_seterr(SL_EINVAL, "sl_st_open_buffer: out is NULL");
    int rc = st_new(&f, name);
    if (rc)
        return rc;
    if (!buf && len)
        rc = sl_seterr(SL_EINVAL, "%s: NULL buffer", f->name);
    else
        rc = st_parse(f, buf ? buf : "", buf ? len : 0);
    if (!rc)
        rc = st_finish(f);
    if (rc) {
        sl_st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int sl_st_open(sl_st_file **out, const char *path)
{
    sl_st_file *f;
    if (!out || !path)
        return sl_seterr(SL_EINVAL, "sl_st_open: NULL argument");
    int rc = st_new(&f, path);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        rc = sl_seterr(-e, "%s: %s", path, e == ENOENT ? "no such file" : strerror(e));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        rc = sl_seterr(-e, "%s: %s", path, strerror(e));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        rc = sl_seterr(-EISDIR, "%s: is a directory, not a safetensors file", path);
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        rc = sl_seterr(SL_EFORMAT, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size < 8) {
        close(fd);
        rc = sl_seterr(SL_EFORMAT, "%s: not a safetensors file: %lld bytes, shorter than the 8-byte header length",
                       path, (long long)st.st_size);
        goto fail;
    }
    if ((unsigned long long)st.st_size > (unsigned long long)SIZE_MAX) {
        close(fd);
        rc = sl_seterr(SL_EFORMAT, "%s: too large to map", path);
        goto fail;
    }
    f->map_len = (size_t)st.st_size;
    void *m = map_shared(fd, &st, f->map_len);
    int e = errno;
    close(fd);
    if (m == MAP_FAILED) {
        rc = sl_seterr(-e, "%s: cannot map: %s", path, strerror(e));
        goto fail;
    }
    f->map = m;
    rc = st_parse(f, m, f->map_len);
    if (!rc)
        rc = st_finish(f);
    if (rc)
        goto fail;
    *out = f;
    return 0;
fail:
    sl_st_close(f);
    *out = NULL;
    return rc;
}

size_t sl_st_count(const sl_st_file *f) { return f ? f->n : 0; }

const sl_st_tensor *sl_st_at(const sl_st_file *f, size_t i) { return f && i < f->n ? &f->t[i] : NULL; }

const sl_st_tensor *sl_st_find(const sl_st_file *f, const char *name)
{
    if (!f || !name)
        return NULL;
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->t[f->by_name[mid]].name, name);
        if (!c)
            return &f->t[f->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *sl_st_meta(const sl_st_file *f, const char *key)
{
    if (!f || !key)
        return NULL;
    size_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta[mid].key, key);
        if (!c)
            return f->meta[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t sl_st_meta_count(const sl_st_file *f) { return f ? f->n_meta : 0; }

const char *sl_st_meta_key(const sl_st_file *f, size_t i) { return f && i < f->n_meta ? f->meta[i].key : NULL; }

const char *sl_st_meta_value(const sl_st_file *f, size_t i)
{
    return f && i < f->n_meta ? f->meta[i].value : NULL;
}

const char *sl_st_name(const sl_st_file *f) { return f ? f->name : NULL; }

uint64_t sl_st_numel(const sl_st_tensor *t)
{
    uint64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= (uint64_t)t->shape[d]; /* validated at open: cannot overflow */
    return n;
}

static void fmt_shape(char *buf, size_t size, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, size - o, "[");
    for (int d = 0; d < ndim && o < size; d++)
        o += (size_t)snprintf(buf + o, size - o, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (o < size)
        snprintf(buf + o, size - o, "]");
}

void sl_st_format_shape(const sl_st_tensor *t, char *buf, size_t size)
{
    if (size)
        fmt_shape(buf, size, t->ndim, t->shape);
}

const sl_st_tensor *sl_st_require_f32(const sl_st_file *f, const char *name, int ndim, const int64_t *shape)
{
    if (!f || !name) {
        sl_seterr(SL_EINVAL, "sl_st_require_f32: NULL argument");
        return NULL;
    }
    const sl_st_tensor *t = sl_st_find(f, name);
    if (!t) {
        sl_seterr(SL_EFORMAT, "%s: tensor %s: missing (not in this weights file; wrong model or converter?)", f->name,
                  name);
        return NULL;
    }
    if (t->dtype != SL_ST_F32) {
        sl_seterr(SL_EFORMAT, "%s: tensor %s: dtype %s, expected F32", f->name, name, sl_st_dtype_name(t->dtype));
        return NULL;
    }
    int bad = ndim >= 0 && t->ndim != ndim;
    for (int d = 0; !bad && ndim >= 0 && shape && d < ndim; d++)
        if (shape[d] >= 0 && shape[d] != t->shape[d])
            bad = 1;
    if (bad) {
        char have[160], want[160];
        fmt_shape(have, sizeof have, t->ndim, t->shape);
        if (shape) {
            fmt_shape(want, sizeof want, ndim, shape);
            for (char *c = strstr(want, "-1"); c; c = strstr(c, "-1"))
                c[0] = ' ', c[1] = '*'; /* -1 reads "any" */
        } else {
            snprintf(want, sizeof want, "%d dimensions", ndim);
        }
        sl_seterr(SL_EFORMAT, "%s: tensor %s: shape %s, expected %s", f->name, name, have, want);
        return NULL;
    }
    /* mmap is page-aligned, but a data offset need not be a multiple of 4 */
    if (((uintptr_t)t->data & 3u) != 0) {
        sl_seterr(SL_EFORMAT, "%s: tensor %s: float32 data not 4-byte aligned (re-convert with tools/convert_*.py)",
                  f->name, name);
        return NULL;
    }
    return t;
}

const sl_st_tensor *sl_st_vtake_f32(const sl_st_file *f, unsigned char *used, const char *what, int ndim,
                                    const int64_t *shape, const char *fmt, va_list ap)
{
    char name[192];
    vsnprintf(name, sizeof name, fmt, ap);
    const sl_st_tensor *t = sl_st_require_f32(f, name, ndim, shape);
    if (!t) {
        if (what) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", sl_lasterr());
            sl_seterr(SL_EFORMAT, "%s: %s", what, msg);
        }
        return NULL;
    }
    for (size_t i = 0; used && i < sl_st_count(f); i++)
        if (sl_st_at(f, i) == t) {
            used[i] = 1;
            break;
        }
    return t;
}
