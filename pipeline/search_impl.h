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
};

#endif
