/* .npy writer (NumPy format 1.0, C order, little-endian '<f4' or '<f2') and
 * JSONL helpers; files are written under a temporary name and renamed. */
#ifndef SL_NPY_H
#define SL_NPY_H

#include <stddef.h>
#include <stdio.h>

/* Writes a [rows, cols] float32 matrix to path as dtype "float32" or "float16"
 * (round-to-nearest-even). Atomic: temp file + fsync + rename.
 * Returns 0 or a negated errno / SL_EINVAL with the file named in sl_lasterr(). */
int sl_npy_write(const char *path, const float *data, size_t rows, size_t cols, const char *dtype);

/* Reads back a float32 or float16 .npy (for tests and search). *data is malloc'd,
 * owned by the caller. Returns 0 or SL_EFORMAT / negated errno. */
int sl_npy_read(const char *path, float **data, size_t *rows, size_t *cols);

/* float32 -> IEEE half, round to nearest even. */
unsigned short sl_f32_to_f16(float f);
float sl_f16_to_f32(unsigned short h);

/* Writes s as a JSON string literal (quotes and escapes included). */
void sl_json_str(FILE *f, const char *s);

/* Writes the whole buffer to path through a temporary file + fsync + rename. */
int sl_write_file_atomic(const char *path, const void *data, size_t len);

/* mkdir -p for the folder part of path (everything before the last '/'). */
int sl_mkdirs_for(const char *path);
int sl_mkdirs(const char *dir);

#endif
