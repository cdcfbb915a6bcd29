/* stemline merge: reads every ledger and report of an output folder written by
 * one or many shards, checks that every track is done exactly once and that all
 * shards ran the same settings, and writes a merged report. */
#ifndef SL_MERGE_H
#define SL_MERGE_H

#include <stdio.h>

#include "../io/catalog.h"

typedef struct sl_merge sl_merge;

typedef struct {
    const char *out_dir;         /* the output folder holding the ledgers */
    const sl_catalog *catalog;   /* the job's full catalog (unsharded), or NULL when only the
                                    ledgers are known; borrowed */
    const char *config_hash;     /* the job's sl_cfg_output_hash, or NULL */
    const char *job;             /* job file name, for the report only; may be NULL */
} sl_merge_opts;

/* Reads out_dir/ledger.sqlite and every out_dir/sIIIIofNNNN-ledger.sqlite (read-only)
 * with the matching reports, and checks them:
 *  - every index 0..N-1 of each shard count N present has a ledger;
 *  - no track is done in two ledgers;
 *  - every track known (to a ledger, or to the catalog when given) is done once:
 *    failed and pending rows are listed with their errors; with a catalog, tracks
 *    no ledger has done, and done rows whose input file or settings changed since,
 *    are listed as missing with the shard that should run them;
 *  - the reports and the done rows carry one config hash (and the job's, if given).
 * A ledger that cannot be read is recorded as a problem (status 1), not returned.
 * Returns 0 with *out set (owned by the caller: sl_merge_free), or SL_ENOTFOUND /
 * SL_EIO when out_dir cannot be read or holds no ledger, SL_ENOMEM; message in
 * sl_lasterr(). */
int sl_merge_run(sl_merge **out, const sl_merge_opts *o);

/* The exit status the checks call for: 0 every track done exactly once and all
 * consistent; 3 tracks failed, missing or duplicated, shards missing or config
 * hashes disagree; 1 a ledger could not be read. */
int sl_merge_status(const sl_merge *m);

/* The shards of a run of `count` shards that have something left to do: no
 * ledger, or a track of theirs failed, pending or missing (with a catalog every
 * track of it is attributed to its shard; without one only the tracks in the
 * ledgers are). *idx (malloc'd, caller frees; NULL when none) receives their
 * indices in ascending order. Returns how many, or -1 when out of memory. */
long sl_merge_shards_to_run(const sl_merge *m, int count, int **idx);

/* The merged report as JSON (see configs/CLUSTER.md). Returns 0 or a negated errno. */
int sl_merge_write_json(const sl_merge *m, FILE *f);

/* Writes the merged report JSON to path atomically. Returns 0 or a negated errno
 * with sl_lasterr() set. */
int sl_merge_write_report(const sl_merge *m, const char *path);

/* A human summary with every problem (at most max_list entries per kind, 0 = all). */
void sl_merge_print(const sl_merge *m, FILE *f, size_t max_list);

/* One line per problem, for stderr next to --json output (same limit). */
void sl_merge_print_problems(const sl_merge *m, FILE *f, size_t max_list);

void sl_merge_free(sl_merge *m);

/* embedding.center: catalog (pipeline/center.h): every vector folder of out_dir
 * whose sidecars say centred is rewritten, each shard set with its ledger,
 * centred on the mean of the rows of all of them (mean.npy); a line per folder
 * to log (may be NULL); *n_folders how many. Returns 0 or a negative code. */
int sl_merge_center(const char *out_dir, FILE *log, size_t *n_folders);

#endif
