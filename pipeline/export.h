/* stemline export: the vector shards, timelines and tags of a run (every shard
 * file of every --shard I/N set in an output folder) as one table per
 * (model, source), deduplicated by track id, with a global row id in track-id
 * order and one type per column:
 *
 *   DEST/MODEL-SOURCE.parquet           row int64, id, path (strings), start, end,
 *                                       duration (float64 seconds), model, source,
 *                                       vector (list<float32>, exactly dim items)
 *   DEST/MODEL-SOURCE-timeline.parquet  the same plus window int32, one row per window
 *   DEST/MODEL-tags.parquet             id, path, model, source, rank, index (int32),
 *                                       label, score (float64): one row per tag
 * With format npy the vectors go to DEST/MODEL-SOURCE[-timeline].npy ([rows, dim],
 * the shards' dtype) and the other columns to ...-meta.parquet, row i of one
 * describing row i of the other.
 *
 * Shard sets are merged by track id as they are read (each set's shards are in
 * id order), so memory is bounded by one row group, never by the catalog. A
 * track found in several sets is taken from the first in file-name order
 * (unsharded first) and counted as a duplicate.
 *
 * Everything is checked before the first file is written: an output folder
 * without shards, shards of differing dims or embedding settings, a shard set
 * with a shard missing (no ledger or no report yet), or an unknown --model /
 * --source. Each file is written under a temporary name and renamed when
 * complete, so nothing half-written ever appears under a final name. */
#ifndef SL_EXPORT_H
#define SL_EXPORT_H

#include <stddef.h>
#include <stdio.h>

typedef enum { SL_EXPORT_PARQUET, SL_EXPORT_NPY } sl_export_format;

typedef struct {
    const char *out_dir;   /* the run's output folder */
    const char *model;     /* only this embedding model; NULL = every one */
    const char *source;    /* only this source ("mix", a stem); NULL = every one */
    sl_export_format format;
    const char *dest;      /* where the tables go; NULL = OUT/export */
    size_t row_group_rows; /* 0 = as many as fit ~32 MiB of vectors (at most 65536) */
    FILE *log;             /* one line per table written; NULL = silent */
} sl_export_opts;

/* Returns 0; SL_ENOTFOUND (no shards, unknown model/source), SL_EFORMAT (mixed
 * dims or settings, malformed shards, a track out of id order) or SL_EIO (an
 * incomplete shard set): the folder cannot be exported as it is, nothing was
 * written; or a negated errno / SL_ENOMEM while writing (files already renamed
 * into place are complete). Message in sl_lasterr(). */
int sl_export_run(const sl_export_opts *o);

#endif
