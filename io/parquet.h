/* A minimal Apache Parquet writer: flat tables of required columns, PLAIN
 * encoding, no compression, one data page per column chunk, footer in the
 * Thrift compact protocol. Enough for tables that pandas, pyarrow, DuckDB and
 * Spark read directly, without a C++ or Arrow dependency (a static binary on a
 * cluster stays one file).
 *
 * Column kinds: int32, int64, double, UTF-8 string, and a list of float32 of a
 * fixed length per column (a vector per row; Parquet has no fixed-size list, so
 * it is the standard 3-level LIST with a required element, every row holding
 * exactly list_len items).
 *
 * Memory: the values of one row group (row_group_rows rows) are held, then
 * written as one row group; so memory is bounded by the row-group size, never by
 * the table. The file is written under a temporary name and renamed onto its
 * path at close (io/npy.h: sl_atomic_*): a failed or aborted writer leaves
 * nothing under the final name. */
#ifndef SL_PARQUET_H
#define SL_PARQUET_H

#include <stddef.h>
#include <stdint.h>

typedef enum { SL_PQ_INT32, SL_PQ_INT64, SL_PQ_DOUBLE, SL_PQ_STRING, SL_PQ_FLOAT_LIST } sl_pq_kind;

typedef struct {
    const char *name;
    sl_pq_kind kind;
    size_t list_len; /* SL_PQ_FLOAT_LIST: items per row (> 0) */
} sl_pq_column;

typedef struct sl_parquet sl_parquet;

/* Starts a table at path with ncols columns (names copied). row_group_rows > 0.
 * Returns 0 or SL_EINVAL / SL_ENOMEM / a negated errno with sl_lasterr(). */
int sl_parquet_open(sl_parquet **out, const char *path, const sl_pq_column *cols, size_t ncols,
                    size_t row_group_rows);

/* Values of the current row, one call per column in any order (each column
 * exactly once per row; the kind must match). Strings are copied. */
int sl_parquet_i32(sl_parquet *p, size_t col, int32_t v);
int sl_parquet_i64(sl_parquet *p, size_t col, int64_t v);
int sl_parquet_f64(sl_parquet *p, size_t col, double v);
int sl_parquet_str(sl_parquet *p, size_t col, const char *s);
int sl_parquet_floats(sl_parquet *p, size_t col, const float *v); /* list_len floats */

/* Ends the row; writes a row group when row_group_rows rows are held. Returns
 * 0, SL_EINVAL (a column was not set) or a negated errno (the caller aborts). */
int sl_parquet_end_row(sl_parquet *p);

/* Key/value pair of the file's metadata (copied), e.g. "stemline:dim". */
int sl_parquet_meta(sl_parquet *p, const char *key, const char *value);

/* Writes the last row group and the footer, and renames the file into place.
 * Frees p in every case. Returns 0 or a negated errno / SL_ENOMEM. */
int sl_parquet_close(sl_parquet *p);

/* Drops everything: nothing appears under path. NULL is fine. */
void sl_parquet_abort(sl_parquet *p);

/* Rows written so far (ended rows). */
uint64_t sl_parquet_rows(const sl_parquet *p);

#endif
