/* Internals of stemline merge, shared by its files: merge.c (collecting and
 * classifying the tracks), merge_read.c (ledgers and reports), merge_print.c
 * (the merged report and the summary). Not a public interface. */
#ifndef SL_MERGE_IMPL_H
#define SL_MERGE_IMPL_H

#include <stdint.h>
#include <stdio.h>

#include "merge.h"

typedef struct {
    char *ledger;  /* file name inside out_dir */
    char *report;  /* file name of its report, NULL when there is none */
    int index, count;
    char *error;   /* the ledger could not be read: why */
    long n_done, n_failed, n_pending;
    double done_audio;
    /* from the report of the shard's last run */
    int have_run;
    char *r_hash, *r_backend, *r_device, *r_fatal, *r_started, *r_finished;
    double r_wall, r_audio;
    int r_interrupted;
    long r_ok, r_failed, r_skipped;
} shard;

typedef struct {
    char *id, *path, *hash, *error;
    char *outputs, *files; /* done rows: the recorded outputs (pipeline/outputs.h) */
    int64_t size, mtime;
    double duration;
    int status; /* 0 pending, 1 done, 2 failed */
    int shard;
} row;

typedef struct {
    char *id, *path, *reason;
    int shard;   /* failures: the ledger's shard; -1 otherwise */
    long pos;    /* missing with a catalog: position in the catalog, else -1 */
    int *shards; /* duplicates: the ledgers holding a done row */
    size_t n_shards;
} item;

typedef struct {
    item *v;
    size_t n, cap;
} items;

typedef struct {
    char *hash;
    char **where;
    size_t n_where;
} hashinfo;

struct sl_merge {
    char *out_dir, *job, *job_hash;
    int have_catalog;
    size_t catalog_n;
    shard *sh;
    size_t n_sh;
    int *counts;
    size_t n_counts;
    int (*miss_sh)[2]; /* index, count */
    size_t n_miss_sh;
    items failed, missing, dups;
    size_t n_ok, n_known, n_extra;
    double audio_ok;
    hashinfo *hashes;
    size_t n_hashes;
    char **problems, **warnings;
    size_t n_problems, n_warnings;
    int unreadable;
    int oom;
    char merged_at[32];
};

typedef struct {
    row *v;
    size_t n, cap;
} rows;

/* strdup that records running out of memory in m->oom. */
char *mg_strdup(sl_merge *m, const char *s);

/* Adds a problem (problem != 0) or a warning to the merge. */
__attribute__((format(printf, 3, 4))) void mg_note(sl_merge *m, int problem, const char *fmt, ...);

/* Appends an item (strings copied); NULL when out of memory (m->oom set). */
item *mg_items_add(sl_merge *m, items *l, const char *id, const char *path, const char *reason);

/* Records that hash was seen in `where`. */
void mg_hash_seen(sl_merge *m, const char *hash, const char *where);

/* Frees rows n.. and keeps the first n. */
void mg_rows_truncate(rows *r, size_t n);

/* Appends every row of the ledger at path (shard si) to out. Returns 0, or -1
 * with why filled (nothing appended). */
int mg_read_ledger(const char *path, int si, rows *out, char *why, size_t why_size);

/* Reads the report of shard s (s->report and the r_* fields), noting what is
 * wrong with it as warnings. */
void mg_read_report(sl_merge *m, shard *s);

#endif
