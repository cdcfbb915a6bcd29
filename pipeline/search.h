/* Exact cosine nearest neighbours over the vector shards of one (model, source):
 * OUT/embeddings/MODEL/SOURCE/{prefix}shard-NNNNN.npy + .jsonl (pipeline/shards.h),
 * every prefix ("" and "sIIIIofNNNN-") at once, in file-name order.
 *
 * Shards are streamed in blocks of rows (mmap, pages dropped after each block):
 * memory is bounded by the block size (block_rows x dim floats for float16
 * shards, block_rows x n_queries scores), never by the catalog size. Each block
 * is scored with one BLAS call (sgemv for one query, sgemm for several); rows
 * whose BLAS score can reach a query's current top k (within a proven bound on
 * float rounding) are rescored in double precision and kept in a bounded heap.
 * The result is therefore exactly the top k by the double-precision cosine, ties
 * broken by row order (file-name order, then row), whatever the block size or
 * the BLAS threading: BLAS results depend on the block shape in their last bits,
 * the final ranking never does.
 *
 * Scores are cosines: the query is L2-normalised, and rows are divided by their
 * norms unless the sidecar says the shards are float32 vectors normalised by
 * the runner (then the norm is 1 to within 1e-7). A zero row scores 0.
 *
 * sl_vindex_search_on does the scanning through the op layer instead (one GEMM
 * per block plus the topk op, on a GPU or any backend) with the same result.
 *
 * The sidecar {prefix}index.json (written by the runner through
 * sl_shards_write_meta) records how the vectors were made, so that a query file
 * can be embedded with exactly the same model, options and windowing. */
#ifndef SL_SEARCH_H
#define SL_SEARCH_H

#include <stddef.h>
#include <stdint.h>

#include "models/model.h"
#include "pipeline/config.h"

/* ---- the sidecar ---- */

typedef struct {
    const char *model;          /* embedding model name (sl_emb_info.name) */
    const char *weights;        /* weights file, NULL when the model has none */
    const char *weights_sha256; /* SHA-256 of that file (64 hex digits), NULL when none */
    const sl_cfg_opts *options; /* embedding.options as given (may be NULL) */
    const char *params;         /* sl_emb_info.params: resolved, for people (may be NULL) */
    const char *source;         /* "mix", or a stem name */
    const char *dtype;          /* "float32" | "float16" */
    int dim, sample_rate, channels;
    int normalize;              /* embedding.normalize */
    size_t window_samples;      /* embedding window and hop, in samples at sample_rate */
    size_t hop_samples;
    const char *config_hash;    /* sl_cfg_output_hash; may be NULL */
    /* embedding.center: catalog (pipeline/center.h); NULL center = not centred */
    const char *center;         /* "catalog" */
    const char *center_file;    /* the mean's file name in dir, e.g. "mean.npy" */
    const char *center_hash;    /* its content hash (io/filehash.h) */
    size_t center_rows;         /* rows the mean was taken over */
} sl_shards_meta;

/* Writes dir/{prefix}index.json describing how the shards of that prefix were
 * made (format below). Atomic (temp + fsync + rename); left untouched when the
 * bytes are already the same, and deterministic (no timestamps), so a re-run
 * with nothing to do changes nothing. Returns 0, SL_EINVAL, SL_ENOMEM or a
 * negated errno with the path in sl_lasterr().
 *
 *   {"format": "stemline-vector-index", "format_version": 1,
 *    "stemline_version": "0.1.0", "model": "melstats", "weights": null,
 *    "weights_sha256": null,     (models with weights: the file's SHA-256, e.g. the
 *                                 CLAP checkpoint whose text tower `search --text` needs)
 *    "options": {"n_mels": "64"}, "params": "...", "source": "mix",
 *    "dim": 256, "dtype": "float32", "normalize": true,
 *    "sample_rate": 22050, "channels": 1,
 *    "window_seconds": 10.0, "hop_seconds": 10.0,
 *    "window_samples": 220500, "hop_samples": 220500,
 *    "config_hash": "0123456789abcdef"}
 * and, for centred vectors (embedding.center: catalog), before config_hash:
 *    "center": "catalog", "center_file": "mean.npy", "center_hash": "<murmur3 hex>",
 *    "center_rows": 1234 */
int sl_shards_write_meta(const char *dir, const char *prefix, const sl_shards_meta *meta);

/* The sidecar as read back (all strings owned by the index). */
typedef struct {
    char *model, *weights, *params, *source, *dtype, *version, *config_hash;
    char *center, *center_file, *center_hash; /* NULL when the vectors are not centred */
    size_t center_rows;
    char *weights_sha256; /* NULL when absent (no weights, or an older sidecar) */
    sl_cfg_opts options; /* file = the sidecar path, line/column 0 */
    int dim, sample_rate, channels, normalize;
    size_t window_samples, hop_samples;
    char *path;          /* the sidecar file it was read from */
} sl_index_meta;

/* Reads one sidecar (for tools that rewrite it: merge's centring). 0, SL_EFORMAT,
 * SL_ENOMEM or a negated errno. sl_index_meta_free frees what it holds. */
int sl_index_meta_read(const char *path, sl_index_meta *m);
void sl_index_meta_free(sl_index_meta *m);

/* ---- embedding a whole file the way the runner does ---- */

/* Decodes path at the model's rate and channel count, cuts it into windows of
 * window_samples every hop_samples (pipeline/segment.h), embeds each window
 * (sl_emb_run_batch), and writes the length-weighted mean of the window vectors,
 * L2-normalised when normalize, into vec[dim] (sl_embed_mean). *seconds (may be
 * NULL) receives the decoded duration. Returns 0 or a negative code with the
 * reason in sl_lasterr() (SL_EEMPTY for a file with no sample). */
int sl_embed_file(sl_emb_model *m, const char *path, size_t window_samples, size_t hop_samples, int normalize,
                  float *vec, double *seconds);

/* The runner's last step, shared: vec[i] = vsum[i] / weight in double, then
 * (normalize) divided by the double L2 norm of that mean. Returns 0, SL_EEMPTY
 * (weight <= 0: no window) or SL_ENUMERIC (a component is not finite). */
int sl_embed_mean(const double *vsum, double weight, int dim, int normalize, float *vec);

/* ---- the index ---- */

typedef struct sl_vindex sl_vindex;

/* Opens the shards in dir (OUT/embeddings/MODEL/SOURCE): every
 * {prefix}shard-NNNNN.npy with its .jsonl, sorted by name, and every
 * {prefix}index.json. Reads only headers. Fails with SL_ENOTFOUND (no folder or
 * no shard), SL_EFORMAT (a malformed .npy or sidecar, shards of differing dim,
 * sidecars that disagree on how the vectors were made) or a negated errno. */
int sl_vindex_open(sl_vindex **out, const char *dir);
void sl_vindex_close(sl_vindex *ix);

size_t sl_vindex_rows(const sl_vindex *ix);
int sl_vindex_dim(const sl_vindex *ix);
size_t sl_vindex_nshards(const sl_vindex *ix);
const char *sl_vindex_shard_path(const sl_vindex *ix, size_t shard);
/* The sidecar, or NULL when some shard prefix has none (made by an older stemline). */
const sl_index_meta *sl_vindex_meta(const sl_vindex *ix);
/* 1 when every sidecar says float32 vectors normalised by the runner (row norms
 * are then taken as 1); 0 otherwise (rows are divided by their norms). */
int sl_vindex_rows_normalized(const sl_vindex *ix);
/* Overrides the above (tests, benchmarks): 1 trusts the rows to be unit length,
 * 0 always divides by the row norms. */
void sl_vindex_set_rows_normalized(sl_vindex *ix, int normalized);
/* Threads of the CPU scan (sl_vindex_search): 1 by default; each takes blocks of
 * rows in turn with its own heaps. The result does not depend on it. */
void sl_vindex_set_threads(sl_vindex *ix, int threads);

/* ---- the float16 scan copy ----
 * The scan reads every row once per search, so its cost is the bytes read. A
 * float16 copy of the float32 shards halves them and keeps the search exact: the
 * copy is scanned, and every row whose float16 score is within a proven bound of
 * a query's k-th best (see search_scan.c, search_eps16) is read from its float32
 * shard and scored in double as before; the top k is the float32 scan's, bit for
 * bit (rows, scores, tie order).
 *
 * Layout: DIR/.scan-f16/{prefix}shard-NNNNN.npy, one per float32 shard, [rows, dim]
 * float16 (the rows divided by their norms in double, or the rows themselves when
 * they are trusted to be unit length; a row that is not finite or overflows float16
 * is all NaN, so it is always rescored), and DIR/.scan-f16/manifest.json:
 *   {"format": "stemline-f16-scan-copy", "format_version": 1, "shards": [
 *     {"name": "shard-00000.npy", "rows": 10000, "dim": 512, "unit_rows": false,
 *      "stamp": "SIZE:INODE:MTIME_S.MTIME_NS" (of the float32 shard when it was copied),
 *      "max_err": 0.00028, "max_norm": 1.0000001}, ...]}
 * A shard's copy is used only while its stamp, rows, dim and row mode still match
 * and the copy file has the right size; other shards are scanned in float32 with a
 * warning. Float16 shards have no copy. The folder is hidden from the tools that
 * read the shards (merge, export, numpy's glob("*.npy")). */

/* Writes (or refreshes: only the copies of changed or new shards are rewritten,
 * those of removed shards deleted) the copy of every float32 shard of ix, for its
 * current row mode. *written / *kept: copies written / left as they were. 0 or a
 * negative code with sl_lasterr(). */
int sl_vindex_build_f16(sl_vindex *ix, size_t *written, size_t *kept);
/* 0 scans the float32 shards even where a valid copy exists (default 1: use it). */
void sl_vindex_set_f16(sl_vindex *ix, int use);
/* After a search: float32 shards scanned through the copy, float32 shards the copy
 * does not describe (stale or missing entries; 0 when there is no copy at all), and
 * float32 shards in all. */
void sl_vindex_f16_status(const sl_vindex *ix, size_t *valid, size_t *stale, size_t *f32_shards);

/* ---- the int8 scan copy ----
 * The same idea at a quarter of the float32 bytes: DIR/.scan-i8/{prefix}shard-NNNNN.npy,
 * one per float32 shard, [rows, dim + 16] int8: each row the shard's row (divided by
 * its norm in double, or itself when trusted to be unit length) as int8 values
 * c = round(v / s) in [-127, 127], then 16 bytes: the scale s = max |v_i| / 127, an
 * upper bound on |s c - v| and one on |s c| (little-endian float32, all three rounded
 * up from double; NaN for a row that is not finite: always rescored) and 4 zero bytes;
 * DIR/.scan-i8/manifest.json as the float16 copy's ("format": "stemline-i8-scan-copy",
 * no max_err / max_norm). The query is split into two int8 parts; a row is rescored
 * from its float32 shard whenever its score's proven interval (search_i8.c) reaches
 * the k-th best lower bound, so the top k is the float32 scan's, bit for bit. Where
 * both copies are valid the int8 copy is scanned; a shard the int8 copy does not
 * describe is scanned through the float16 copy where that one is valid, else in
 * float32 (with a warning when its copy is stale). Rows of more than 65536 values
 * have no int8 copy. */
int sl_vindex_build_i8(sl_vindex *ix, size_t *written, size_t *kept);
/* 0 scans without the int8 copy (default 1: use it). */
void sl_vindex_set_i8(sl_vindex *ix, int use);
/* As sl_vindex_f16_status, for the int8 copy. */
void sl_vindex_i8_status(const sl_vindex *ix, size_t *valid, size_t *stale, size_t *f32_shards);

/* For a process that answers many queries (`search --queries`): maps, whole and
 * with its pages read in, every file the CPU scan (sl_vindex_search) reads: each
 * float32 shard's int8 or else float16 copy where it is valid and in use (set_i8 /
 * set_f16 before),
 * else the shard itself; they stay mapped until sl_vindex_close, and scans read
 * them there instead of mapping and unmapping each block (same results). Memory:
 * the catalog's scan bytes stay resident while the pages are cached. Each later
 * search first checks the files are still those mapped (size, inode, mtime) and
 * fails with SL_EFORMAT, naming the file, when one changed. 0 or a negative code
 * with sl_lasterr(). */
int sl_vindex_keep_mapped(sl_vindex *ix);
/* For one search that first embeds its query (`search --text`): sl_vindex_keep_mapped
 * in a thread of its own, so that setting up the page tables of the files the scan
 * reads overlaps with the embedding; sl_vindex_prefetch_wait joins it (before the
 * search; sl_vindex_close also does). Maps nothing (the scan then maps block by
 * block as usual) when those files add up to more than a quarter of the machine's
 * memory, or when no thread can be started. Results do not change. wait returns
 * 0 or keep_mapped's error (a negative code with sl_lasterr()). */
void sl_vindex_prefetch_start(sl_vindex *ix);
int sl_vindex_prefetch_wait(sl_vindex *ix);

typedef struct {
    double score;     /* cosine, in [-1, 1]; -inf for a row that is not finite */
    size_t shard;     /* index into the shard list */
    size_t row;       /* row within its shard */
    uint64_t global;  /* row in the concatenation of all shards, in name order */
    /* filled by sl_vindex_describe (owned by the hit: sl_search_hits_free) */
    char *id, *path;
    double start, end;
} sl_search_hit;

#define SL_SEARCH_DEFAULT_BLOCK_ROWS 16384

/* The k nearest rows to each of nq queries (queries[q*dim .. +dim), any norm;
 * a zero query scores 0 everywhere). hits[q*k + j] is the j-th best of query q,
 * best first; *n_hits = min(k, rows). block_rows = rows per BLAS call (0 = the
 * default). Returns 0, SL_EINVAL, SL_ENOMEM, SL_EFORMAT or a negated errno. */
int sl_vindex_search(sl_vindex *ix, const float *queries, size_t nq, size_t k, size_t block_rows,
                     sl_search_hit *hits, size_t *n_hits);

/* The same search through the op layer on ctx (kernels/ops.h: gemm + topk), so
 * that a GPU does the scanning: blocks of block_rows rows are uploaded, scored by
 * one GEMM per block and merged into a running top K per query kept on the device
 * (only the final K per query are downloaded); the K candidates are then rescored
 * in double on the host. The result is sl_vindex_search's, bit for bit (same rows,
 * same double scores, same tie order), whatever the backend and the block size:
 * see search_scan.c, "on an op backend", for the certificate that makes it exact and
 * the fallbacks when near-ties defeat it. Memory: backend block_rows x (dim + nq)
 * floats plus nq x K candidates (K <= max(2k + 32, block_rows)), two host staging
 * blocks (page-locked on CUDA). ctx NULL = sl_vindex_search (the CPU BLAS path);
 * any ctx, the CPU backend included, takes the op path. Same returns as
 * sl_vindex_search, plus SL_EUNSUPPORTED (backend without gemm / topk) and
 * SL_EDEVICE / SL_ENOMEM from the backend. */
int sl_vindex_search_on(sl_vindex *ix, sl_op_ctx *ctx, const float *queries, size_t nq, size_t k,
                        size_t block_rows, sl_search_hit *hits, size_t *n_hits);

/* Fills id, path, start and end of each hit from the shards' jsonl files
 * (one pass per shard involved). SL_EFORMAT when a jsonl lacks the row. */
int sl_vindex_describe(sl_vindex *ix, sl_search_hit *hits, size_t n);
void sl_search_hits_free(sl_search_hit *hits, size_t n); /* frees the strings, not the array */

/* Finds track id in the jsonl files (first match in name order) and reads its
 * vector into vec[dim]; *shard / *row (may be NULL) receive where it is.
 * SL_ENOTFOUND when no row has that id. */
int sl_vindex_find_id(sl_vindex *ix, const char *id, float *vec, size_t *shard, size_t *row);

/* Rows that describe the same thing twice: the same track id (and, for
 * timeline shards, the same window) in more than one row, which happens when
 * two sets of shards of one job (runs with different shard counts) share a
 * folder. */
typedef struct {
    size_t rows;           /* rows read from the jsonl files */
    size_t duplicated;     /* (id, window) keys held by more than one row */
    size_t extra_rows;     /* rows beyond the first of each key */
    char example[256];     /* one duplicated track id ("" when none) */
    char where[2][256];    /* the .npy file names (no folder) of its first two rows */
} sl_vindex_dups;

/* Reads every jsonl of the index and counts the duplicated keys. Memory grows
 * with the number of distinct keys (their ids). Returns 0, SL_ENOMEM, SL_EFORMAT
 * (a line that is not a JSON object with an "id") or a negated errno. */
int sl_vindex_duplicates(const sl_vindex *ix, sl_vindex_dups *out);
/* 0 when the shards are one set (one shard count, every prefix "" or every
 * prefix sIIIIofNNNN- with the same NNNN): the runner writes a track once per
 * set and the shards of a set partition the tracks, so no row repeats and
 * sl_vindex_duplicates, which reads every jsonl, can be skipped; 1 otherwise. */
int sl_vindex_may_hold_duplicates(const sl_vindex *ix);

/* Opens the embedding model the sidecar names, with its options, on ctx, and
 * checks it still gives vectors of the recorded dim, rate and channel count.
 * SL_ENOTFOUND when there is no sidecar (message: re-run the job). */
int sl_vindex_open_model(const sl_vindex *ix, sl_op_ctx *ctx, sl_emb_model **out);

/* Embeds a query file with the settings of the sidecar (sl_embed_file); for
 * centred shards the un-normalised vector minus the sidecar's mean file (its
 * hash checked), then normalised as the rows were. vec has dim floats. */
int sl_vindex_embed_file(const sl_vindex *ix, sl_emb_model *m, const char *path, float *vec, double *seconds);

#endif
