/* Internals of vector search, shared by its files: search.c (the index.json
 * sidecar, embedding a file, query by audio), search_index.c (opening the
 * shards, their jsonl rows, finding a track by id), search_scan.c (the exact
 * top-k scan, on the CPU and on an op backend). Not a public interface. */
#ifndef SL_SEARCH_IMPL_H
#define SL_SEARCH_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/search.h"

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
    /* sl_vindex_keep_mapped: the whole file the scan reads (the float16 copy when
     * keep16, else the shard), mapped until close, and what it was then */
    unsigned char *keep;
    size_t keep_len;
    int keep16;
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
    /* the float16 scan copy: off (sl_vindex_set_f16), checked for which row mode
     * (0 = not yet, 1 + unit rows), float32 shards, those it covers, those it does not */
    int f16_off, f16_checked;
    size_t f16_f32, f16_valid, f16_stale;
};

/* Reads the .npy header of s->npy: dtype (s->f16), shape, data offset, file size. */
int sl_search_npy_header(shard *s);
/* Marks the shards the float16 scan copy still describes (has16) for the current
 * row mode; once per mode. Warns about stale copies. 0 or SL_ENOMEM. */
int sl_vindex_f16_prepare(sl_vindex *ix);
/* Before a scan: 0 when every kept mapping's file is still the one that was
 * mapped (size, inode, mtime), else SL_EFORMAT naming it. */
int sl_vindex_keep_check(const sl_vindex *ix);

#endif
