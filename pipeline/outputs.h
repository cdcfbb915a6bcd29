/* A track's outputs as the ledger records them, and the checks made on them:
 * a done track is skipped only while its outputs are still what was written.
 *
 * Two records per row: "outputs", a JSON array of paths relative to output.dir
 * (every version), and "files", the same outputs as written:
 *   [{"path": "stems/a.wav/vocals.flac", "size": 1234, "hash": "murmur3:<32 hex>"}, ...]
 * Rows written before "files" existed are checked by existence only. */
#ifndef SL_OUTPUTS_H
#define SL_OUTPUTS_H

#include <stddef.h>

/* Stats and hashes every path of outputs_json (relative to out_dir) and returns
 * the "files" JSON (malloc'd, caller frees), or NULL with *rc set (negated errno
 * naming the file, SL_EFORMAT, SL_ENOMEM). */
char *sl_outputs_files_json(const char *out_dir, const char *outputs_json, int *rc);

/* Checks a done row's outputs: each must exist as a regular file with the
 * recorded size, and with content set, the recorded hash too. Returns 0 when all
 * hold, 1 when one does not (why: which file and what is wrong), or SL_EFORMAT
 * when the record cannot be read (why says so; the caller redoes the track). */
int sl_outputs_verify(const char *out_dir, const char *outputs_json, const char *files_json, int content,
                      char *why, size_t why_size);

/* Removes the outputs listed in old_json (an outputs or files record) that are
 * not in new_json (may be NULL: all of them), and the folders that this leaves
 * empty up to out_dir. Paths that are absolute or climb out of out_dir are never
 * touched. Returns how many files were removed, or a negated errno naming the
 * file that could not be removed (the others are still tried). */
int sl_outputs_remove(const char *out_dir, const char *old_json, const char *new_json);

/* Calls fn for each missing output of a record (a path that is not a regular
 * file, or one whose size differs from the record), with why. Returns the number
 * of problems, or SL_EFORMAT. For `stemline merge`. */
int sl_outputs_each_missing(const char *out_dir, const char *outputs_json, const char *files_json,
                            void (*fn)(void *arg, const char *path, const char *why), void *arg);

/* Removes the vector shards, their index.json and the tags.jsonl of one shard
 * prefix ("" or "sIIIIofNNNN-") under out_dir/embeddings and out_dir/tags, of
 * every model and source, and the folders this empties (--reset: the vectors of
 * the old settings). Returns how many files were removed or a negated errno. */
int sl_outputs_remove_shards(const char *out_dir, const char *prefix);

#endif
