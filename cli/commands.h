/* Subcommands of the stemline executable. Each takes the argument vector that
 * starts at the subcommand's own name (argv[0] is e.g. "inspect") and returns
 * the process exit status: 0 ok, 2 usage error, 3 some inputs failed, 1 fatal. */
#ifndef SL_COMMANDS_H
#define SL_COMMANDS_H

#include <stddef.h>

/* stemline inspect [--decode] [--json] FILE... (cli/inspect.c) */
int sl_cmd_inspect(int argc, char **argv);

/* stemline merge [OUT] [--job JOB.yaml [--set K=V]...] [--json] [--check-only]
 * (cli/merge.c): checks that the shards of a job did every track exactly once
 * and writes OUT/merged-report.json. 0 complete, 3 tracks failed / missing /
 * duplicated or shards missing, 2 usage, 1 fatal. */
int sl_cmd_merge(int argc, char **argv);

/* stemline models [list] | info [--json] [--tensors] FILE | fetch NAME [--dir DIR]
 * [--from SRC] [--force] (cli/models.c): built-in models, what a weights file is,
 * download + checksum + convert official weights. 0 ok, 1 failed, 2 usage. */
int sl_cmd_models(int argc, char **argv);

/* stemline search OUT_DIR (--audio FILE | --id TRACK_ID | --text QUERY...) [--model NAME]
 * [--source S] [-k N] [--json] [--block-rows N] (cli/search.c): exact cosine
 * nearest neighbours over the vector shards. 0 ok, 2 usage, 1 fatal. */
int sl_cmd_search(int argc, char **argv);

/* stemline export OUT [--model M] [--source S] [--format parquet|npy] [--out DIR]
 * [--row-group-rows N] [--quiet] (cli/export.c): one deduplicated Parquet (or
 * .npy + Parquet) table per model and source over every shard set of a run.
 * 0 ok, 1 fatal, 2 usage or not exportable, 3 a shard set is incomplete. */
int sl_cmd_export(int argc, char **argv);

/* stemline embed-text --model CLAP.safetensors [--out FILE.npy] [--backend B] QUERY...
 * (cli/embed_text.c): vectors of the CLAP text tower. 0 ok, 1 fatal, 2 usage or
 * bad weights / query. */
int sl_cmd_embed_text(int argc, char **argv);
/* Warns on stderr (as CMD) about query i (0-based) when it was truncated to
 * context tokens or holds no token of its own (cli/embed_text.c). */
void sl_text_query_warnings(const char *cmd, const char *text, size_t i, size_t tokens, int truncated, int context);
/* stemline report OUT [--shard I/N | --merged] [--html FILE] | --bench RESULTS.json
 * (cli/report.c): the HTML page of a run's report, a merged report or a
 * benchmark run. 0 written, 1 fatal, 2 usage or no report. */
int sl_cmd_report(int argc, char **argv);

#endif
