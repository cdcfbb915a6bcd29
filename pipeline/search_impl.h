/* Internals of vector search, shared by its files: search.c (the index.json
 * sidecar, embedding a file, query by audio), search_index.c (opening the
 * shards, their jsonl rows, finding a track by id), search_scan.c (the exact
 * top-k scan, on the CPU and on an op backend). Not a public interface. */
#ifndef SL_SEARCH_IMPL_H
#define SL_SEARCH_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "common/sl_json.h"
#include "pipeline/search.h"
#include "pipeline/search_dot.h"

typedef struct {
    int off, checked;
    size_t valid, stale;
} sl_scan_copy_state;

typedef struct {
    char *npy, *jsonl;
    char *prefix;
    long index;
    int f16;
    size_t rows, dim;
    size_t data_off, file_size;
    uint64_t first; /* global row of its row 0 */
    /* its float16 scan copy (search_f16.c), when has16: the file, its data offset and
     * size, and the largest |copy - row| and |row| over its rows */
    int has16;
    char *npy16;
    size_t data_off16, file_size16;
    double err16, norm16;
    /* its int8 scan copy (search_i8.c), when has8: the file, where its rows and
     * their per-row scale / error / norm records start, its size */
    int has8;
    char *path8;
    size_t data_off8, meta_off8, file_size8;
    /* sl_vindex_keep_mapped: the whole file the scan reads (the float16 copy when
     * keep16, else the shard), mapped until close, and what it was then */
    unsigned char *keep;
    size_t keep_len;
    int keep16, keep8;
    long long keep_ino, keep_mtime_ns;
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
    int threads;          /* of the CPU scan (sl_vindex_set_threads); 0 = 1 */
    size_t f32_shards;
    /* the float16 and the int8 scan copies: off (sl_vindex_set_f16 / _i8), checked
     * for which row mode (0 = not yet, 1 + unit rows), shards each covers and not */
    sl_scan_copy_state copy16, copy8;
    /* sl_vindex_prefetch_start's thread, its result */
    pthread_t pf_thread;
    int pf_running, pf_rc;
    char pf_err[512];
};

/* ---- the CPU scan's internals (search_scan.c), shared with the int8 copy's block
 * scan (search_i8.c) */
typedef struct {
    double score;
    uint64_t global;
    size_t shard, row;
} sl_scan_cand;

typedef struct {
    size_t shard, r0, m;
} sl_scan_item;

typedef struct {
    float *S, *inv, *fbuf, *fh, *row32;
    unsigned char *rbytes;
    size_t *fn, *cn;
    sl_scan_cand *ch;
    int32_t *D;           /* int8 copy: a chunk's integer dot products */
    unsigned char *meta8; /* int8 copy: a block's per-row records */
    int rc;
    char err[512];
} sl_scan_thread;

/* int8 copy: rows scored per kernel call; bytes of a row's record (scale, error
 * bound, norm of its int8 row, all float32) */
#define SL_SCAN_I8_CHUNK 64
#define SL_SCAN_I8_META 16

/* The query of an int8 scan (search_i8.c): q ~ t[0] p[0] + t[1] p[1] with p int8
 * in [-127, 127], |q| and |q - t[0] p[0] - t[1] p[1]| in double. */
typedef struct {
    int8_t *p;    /* [nq][2][dim] */
    int32_t *psum; /* [nq][2]: sum of p, for the unsigned-times-signed products */
    double *t;    /* [nq][2] */
    double *qn, *dqn; /* [nq] */
} sl_scan_q8;

typedef struct {
    sl_vindex *ix;
    const float *Q;
    size_t nq, kk, dim, block_rows;
    int divide, use16, use8;
    float eps;
    sl_dot_isa isa;
    size_t page;
    const sl_scan_item *items;
    sl_scan_thread *th;
    sl_scan_q8 q8;
} sl_scan_job;

/* mmap(NULL, len, PROT_READ, MAP_SHARED, fd, off) with its pages read in (MAP_FAILED
 * with errno on failure), advised MADV_HUGEPAGE first: the pages that are not in the
 * page cache are then read into 2 MiB folios, which later searches map with one
 * page-table entry each, where MAP_POPULATE's readahead leaves small ones (a 1M x 512
 * int8 copy read back after eviction: 0 of 528 MB in 2 MiB mappings that way, 410 MB
 * this way; mapping it again 17 -> 2 ms, unmapping 10 -> 1 ms). */
void *sl_scan_mmap_read(int fd, size_t len, size_t off);
/* The first n bytes of fd (file_size bytes long) into buf through a mapping advised
 * the same way, not read(): read() of a file that is not in the page cache brings its
 * start in as small folios, and its first 2 MiB could then never be mapped whole.
 * 0, or -1 when the file is shorter or cannot be read. */
int sl_scan_read_head(int fd, size_t file_size, void *buf, size_t n);
/* Maps bytes [off, off + bytes) of path (which must still be file_size long) with its
 * pages populated; *src = the first byte. NULL with T->rc / T->err set on failure. */
unsigned char *sl_scan_map_rows(sl_scan_thread *T, const char *path, size_t file_size, size_t off, size_t bytes,
                                size_t page, size_t *len, const unsigned char **src);
/* Scores row `row` of shard s exactly for query q (reading the float32 row from the
 * shard once per row: *fd, *have) and offers it to the thread's candidates. */
void sl_scan_rescore(const sl_scan_job *J, sl_scan_thread *T, const sl_scan_item *w, const shard *s, size_t row,
                     size_t q, int *fd, int *have);
/* The float heap's admission for a row whose exact score lies in [lo, hi]: 1 when it
 * may be in the top k (then lo joins the heap). */
int sl_scan_admit_bounds(const sl_scan_job *J, sl_scan_thread *T, size_t q, double lo, double hi);
/* The int8 copy (search_i8.c): the query's int8 parts into J->q8 (0 or SL_ENOMEM),
 * freed by sl_scan_q8_free; a block through the copy. */
int sl_scan_q8_setup(sl_scan_job *J);
void sl_scan_q8_free(sl_scan_job *J);
void sl_scan_block8(const sl_scan_job *J, sl_scan_thread *T, const sl_scan_item *w, const shard *s);

/* A kind of scan copy (float16: search_f16.c, int8: search_i8.c): DIR/sub/ holds a
 * copy of each float32 shard under the shard's name and manifest.json, format fmt,
 * version 1, one entry per shard {name, rows, dim, unit_rows, stamp, ...}. */
typedef struct {
    const char *sub, *fmt, *what, *flag; /* ".scan-f16", its format, "float16", "--build-f16" */
    size_t state_off, has_off;           /* offsetof the sl_scan_copy_state in sl_vindex, the has flag in shard */
    /* 1 when the copy at path (owned by s on success) is there and whole for s, with
     * entry e's own fields: the copy's fields of s filled */
    int (*attach)(const sl_json *e, shard *s, char *path);
    /* writes s's copy to path (rows divided by their double norm when unit) and fills
     * the copy's fields of s that fields() prints */
    int (*write)(shard *s, const char *path, int unit);
    void (*fields)(FILE *mf, const shard *s);
    /* optional: 0 when a valid copy (entry e) was written in a way this version improves
     * on; searches still scan it, the kind's --build flag writes it again */
    int (*current)(const sl_json *e);
} sl_scan_copy_kind;
extern const sl_scan_copy_kind sl_scan_copy_f16, sl_scan_copy_i8;

/* Marks the shards copy kind k still describes for the current row mode; once per
 * mode. Warns about stale copies. 0 or SL_ENOMEM. */
int sl_scan_copy_prepare(sl_vindex *ix, const sl_scan_copy_kind *k);
int sl_scan_copy_build(sl_vindex *ix, const sl_scan_copy_kind *k, size_t *written, size_t *kept);
void sl_scan_copy_status(const sl_vindex *ix, const sl_scan_copy_kind *k, size_t *valid, size_t *stale,
                         size_t *f32_shards);

/* Reads the .npy header of s->npy: dtype (s->f16), shape, data offset, file size. */
int sl_search_npy_header(shard *s);
/* Before a scan: 0 when every kept mapping's file is still the one that was
 * mapped (size, inode, mtime), else SL_EFORMAT naming it. */
int sl_vindex_keep_check(const sl_vindex *ix);

#endif
