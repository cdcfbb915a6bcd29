/* The partitions of a job's catalog present in an output folder.
 *
 * A run of N shards partitions the catalog one way (position i goes to shard
 * i % N) and writes files named after that: sIIIIofNNNN-ledger.sqlite, its
 * report, vector shards and tags (unsharded runs: ledger.sqlite, report.json,
 * shard-NNNNN.npy ...). Two sets of different N in one folder overlap: each has
 * done the tracks on its own, so the folder then holds every vector twice. This
 * module finds the sets, refuses a run that would start a second one, and lists
 * the files of a set so that `stemline merge --fix` can remove an older one.
 *
 * Which set is the folder's current one is recorded in OUT/partition.json
 * ({"shard_count": N}) when a run starts a new set on purpose (--repartition)
 * or `merge --fix` keeps one; without that file, a folder holding ledgers of
 * one count only is that count's. File times are not used: reading a WAL
 * ledger (merge) rewrites its -shm and -wal files. */
#ifndef SL_PARTITION_H
#define SL_PARTITION_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    int count;         /* shard count; 1 = the unsharded ledger.sqlite */
    int current;       /* 1: the set OUT/partition.json names */
    int n_ledgers;     /* ledgers of this count present */
    int64_t newest_ns; /* latest modification time of its ledgers (and -wal) and reports */
    char ledger[64];   /* the name of one of its ledgers, for messages */
} sl_partition;

/* Lists the partitions whose ledgers are in out_dir: the current one first (see
 * above), then newest first by file times (ties: the smaller count first). *parts (malloc'd, caller frees) may be NULL when *n is 0.
 * A folder that does not exist yet holds no partition (returns 0, *n = 0).
 * Returns 0, SL_ENOMEM, or a negated errno with the folder in sl_lasterr(). */
int sl_partitions_list(const char *out_dir, sl_partition **parts, size_t *n);

/* Whether a run of `count` shards may write into out_dir: 0 when the folder
 * holds no ledger, or its current partition (see above) has that count, or it
 * holds ledgers of that count only; otherwise SL_EUSAGE
 * with a message in sl_lasterr() that names the folder, the set found (count,
 * ledgers, a ledger name) and what to do (--num-shards, another output.dir, or
 * --repartition). Other errors as sl_partitions_list. */
int sl_partition_check(const char *out_dir, int count);

/* Calls fn(path, arg) for every file of partition `count` in out_dir: its
 * ledgers (with -wal, -shm, -journal), reports, vector shards, index sidecars
 * (embeddings/MODEL/SOURCE/) and tags (tags/MODEL/). Stems are shared by every
 * partition and never listed. Stops at the first non-zero return of fn and
 * returns it; 0 when all were listed; a negated errno (sl_lasterr() set) when a
 * folder cannot be read. */
int sl_partition_files(const char *out_dir, int count, int (*fn)(const char *path, void *arg), void *arg);

/* Records count as the current partition of out_dir (OUT/partition.json,
 * atomically). Returns 0 or a negated errno with the path in sl_lasterr(). */
int sl_partition_mark(const char *out_dir, int count);

/* Keeps one partition of out_dir and removes the files (sl_partition_files)
 * of every other: the one of keep_count shards, or the current one when
 * keep_count is 0 (SL_EUSAGE when the folder holds several and none is
 * recorded as current), then records the kept one as current. Every file is first listed on log ("remove: PATH"), then removed,
 * ledgers last, so that an interrupted fix leaves a set that a second fix still
 * finds. dry_run lists without removing. Refuses with SL_EUSAGE, removing
 * nothing, when keep_count is not a partition of the folder, or when the kept
 * partition lacks some of its ledgers (its missing shards never ran: the other
 * set may hold the only results of their tracks). *n_files receives the number
 * of files listed. Returns 0, SL_EUSAGE, SL_ENOMEM or a negated errno (a file
 * that could not be removed, named in sl_lasterr()). */
int sl_partition_fix(const char *out_dir, int keep_count, int dry_run, FILE *log, size_t *n_files);

#endif
