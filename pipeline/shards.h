/* Vector shards: the done rows of the ledger that carry a vector of one model,
 * written in id order as {prefix}shard-NNNNN.npy ([rows, dim], C order) plus
 * {prefix}shard-NNNNN.jsonl (one JSON object per npy row). Shards are rebuilt
 * from the ledger at the end of every run, so a crash never leaves rows missing
 * or duplicated: the next run rewrites them whole. Content is deterministic (no
 * timestamps), so rewriting the same rows gives byte-identical files. */
#ifndef SL_SHARDS_H
#define SL_SHARDS_H

#include <stddef.h>

#include "pipeline/ledger.h"

typedef struct {
    const char *dir;          /* e.g. OUT/embeddings/melstats/mix; created when missing */
    const char *prefix;       /* "" normally; "s0003of0016-" for shard 3 of 16, so that
                                 machines never collide on shared storage; NULL = "" */
    const char *vector_model; /* ledger vector_model to take rows of; NULL = every vector */
    const char *model_name;   /* "model" field of each jsonl row */
    const char *source;       /* "source" field of each jsonl row, e.g. "mix" */
    const char *dtype;        /* "float32" | "float16" */
    int shard_rows;           /* rows per shard file, > 0 */
    int timeline;             /* 1: one row per window of the source's timeline (jsonl rows carry
                                 "window", "start", "end"); 0: one row per track */
    const float *center;      /* NULL; or a mean subtracted from every row (pipeline/center.h), */
    int normalize;            /* ... after which rows are L2-normalised when this is 1 */
} sl_shards_spec;

/* The mean (in double, returned as float) of the rows sl_shards_write(spec)
 * would write, before any centring: *mean malloc'd (dim floats, owned by the
 * caller), *rows their count. With no row: 0, *mean NULL, *rows 0. Returns 0 or
 * the codes of sl_shards_write. */
int sl_shards_mean(const sl_shards_spec *spec, sl_ledger *l, float **mean, int *dim, size_t *rows);

/* Writes every shard file (each atomically: temp + fsync + rename; a file whose
 * bytes are already identical is left untouched), then removes shard files of
 * the same prefix with a higher index than needed and temp files left by a
 * killed run. With no vector rows, writes nothing and removes every shard file of
 * the prefix. *written (may be NULL) receives the paths written, npy then jsonl per
 * shard, owned by the caller (free with sl_shards_free_list); *n_written their count.
 * Returns 0, SL_EINVAL, SL_EFORMAT (rows of differing dim), SL_EDB, or a negated
 * errno (e.g. -ENOSPC) with the path in sl_lasterr(); on error *written is NULL and
 * files already renamed into place stay (each is complete). */
int sl_shards_write(const sl_shards_spec *spec, sl_ledger *l, char ***written, size_t *n_written);

void sl_shards_free_list(char **list, size_t n);

#endif
