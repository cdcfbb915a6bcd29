/* Which shard of a sharded job this process runs: from --shard I/N, from a
 * Slurm job array, or from a Kubernetes Indexed Job. See configs/CLUSTER.md. */
#ifndef SL_SHARDENV_H
#define SL_SHARDENV_H

#include <stddef.h>

/* The largest shard count accepted anywhere. */
#define SL_SHARD_MAX_COUNT 1000000

/* Resolves the shard index (0-based) and count of this process. First match wins:
 *  1. cli_shard "I/N" (--shard); cli_num_shards, when > 0, must then equal N;
 *  2. SLURM_ARRAY_TASK_ID: index = TASK_ID - base, where base is
 *     STEMLINE_SHARD_BASE when set, else SLURM_ARRAY_TASK_MIN when set, else 0
 *     (divided by SLURM_ARRAY_TASK_STEP for a stepped range); count =
 *     cli_num_shards, else STEMLINE_NUM_SHARDS, else SLURM_ARRAY_TASK_COUNT,
 *     else from SLURM_ARRAY_TASK_MIN/MAX. Task ids that do not map one-to-one
 *     onto 0..count-1 (a sparse array such as a resubmission of some indices,
 *     or a range smaller than an explicit count) are an error unless
 *     STEMLINE_SHARD_BASE pins the numbering;
 *  3. JOB_COMPLETION_INDEX (Kubernetes Indexed Job): index = its value; count =
 *     cli_num_shards, else STEMLINE_NUM_SHARDS; a missing count is an error;
 *  4. otherwise 0 of 1 (no sharding). A count given (cli_num_shards or
 *     STEMLINE_NUM_SHARDS) without any index is an error, because every
 *     process would then run the whole catalog.
 * Empty variables count as unset. Values must be plain decimal integers, with
 * 0 <= index < count <= SL_SHARD_MAX_COUNT.
 * source (may be NULL) receives a human description such as
 * "SLURM_ARRAY_TASK_ID=3 of SLURM_ARRAY_TASK_COUNT=16".
 * Returns 0, or SL_EUSAGE with a message in sl_lasterr() naming the option or
 * variable, its value, and what to pass instead; *index and *count are then
 * left 0 and 1. */
int sl_shard_resolve(const char *cli_shard, int cli_num_shards, int *index, int *count, char *source,
                     size_t source_size);

/* Parses "I/N" (as given to --shard). Returns 0, or SL_EUSAGE with a message. */
int sl_shard_parse(const char *s, int *index, int *count);

/* Parses a shard count (as given to --num-shards): 1..SL_SHARD_MAX_COUNT.
 * Returns 0, or SL_EUSAGE with a message. */
int sl_shard_parse_count(const char *s, int *count);

/* The file name prefix of shard index of count: "s0003of0016-" when count > 1,
 * "" otherwise (the names the runner uses). */
void sl_shard_prefix(int index, int count, char *buf, size_t size);

/* The shard a file name's prefix names: "s0003of0016-report.json" -> 3 of 16,
 * returning the length of the prefix (12); a name without a canonical prefix
 * ("report.json", "s3of16-x") -> 0 of 1, returning 0. */
size_t sl_shard_parse_prefix(const char *name, int *index, int *count);

/* The shard of a ledger file name as the runner writes it: "ledger.sqlite" is
 * 0 of 1, "s0003of0016-ledger.sqlite" 3 of 16 (zero-padded to the canonical
 * width). Returns 0, or -1 for any other name. */
int sl_shard_parse_ledger_name(const char *name, int *index, int *count);

#endif
