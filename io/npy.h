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

/* The bytes sl_npy_write would write, in one malloc'd buffer owned by the caller
 * (for writers that compare with what is on disk first). Returns 0 or SL_EINVAL/SL_ENOMEM. */
int sl_npy_encode(const float *data, size_t rows, size_t cols, const char *dtype, unsigned char **out,
                  size_t *len);

/* Reads back a float32 or float16 .npy (for tests and search). *data is malloc'd,
 * owned by the caller. Returns 0 or SL_EFORMAT / negated errno. */
int sl_npy_read(const char *path, float **data, size_t *rows, size_t *cols);

/* What the header of a .npy says (2-D, C order, '<f4' or '<f2' only). */
typedef struct {
    size_t rows, cols;
    int f16;                /* 1: float16 data, 0: float32 */
    long long data_offset;  /* where row 0 starts */
} sl_npy_info;

/* Reads and checks the header of an open .npy (fp at offset 0; left at the data)
 * and that the file size matches the shape. Returns 0 or SL_EFORMAT / SL_ENOMEM /
 * a negated errno with path in sl_lasterr(). */
int sl_npy_read_header(FILE *fp, const char *path, sl_npy_info *info);

/* The format 1.0 header of a [rows, cols] array of dtype descr ("<f4", "|i1", ...),
 * padded so that the data starts at a multiple of 64 bytes: its length, or 0 when
 * it does not fit cap. */
size_t sl_npy_header(unsigned char *buf, size_t cap, const char *descr, size_t rows, size_t cols);
/* Converts n little-endian float16 (f16 = 1) or float32 values at src to floats. */
void sl_npy_unpack(const unsigned char *src, float *dst, size_t n, int f16);

/* A .npy written row block by row block when the row count is known only at the
 * end: open (dtype "float32" | "float16"), rows (any number of times), then commit
 * (header rewritten with the final count, temp file renamed onto path) or abort
 * (nothing appears under path). Each returns 0 or a negated errno / SL_EINVAL /
 * SL_ENOMEM with sl_lasterr(); on a failed rows the caller aborts; commit and
 * abort free s. */
typedef struct sl_npy_stream sl_npy_stream;
int sl_npy_stream_open(sl_npy_stream **out, const char *path, size_t cols, const char *dtype);
int sl_npy_stream_rows(sl_npy_stream *s, const float *data, size_t rows);
int sl_npy_stream_commit(sl_npy_stream *s);
void sl_npy_stream_abort(sl_npy_stream *s);

/* float32 -> IEEE half, round to nearest even. */
unsigned short sl_f32_to_f16(float f);
float sl_f16_to_f32(unsigned short h);

/* Writes s as a JSON string literal (quotes and escapes included; control characters
 * escaped, invalid UTF-8 bytes replaced by U+FFFD, so the output is always valid
 * JSON). s == NULL writes null. */
void sl_json_str(FILE *f, const char *s);

/* Writes the whole buffer to path through a temporary file + fsync + rename.
 * Returns 0 or a negated errno with the path and reason in sl_lasterr(); on failure
 * the temp file is removed and nothing new is visible under path. */
int sl_write_file_atomic(const char *path, const void *data, size_t len);

/* mkdir -p for the folder part of path (everything before the last '/').
 * Existing folders are fine. Returns 0 or a negated errno (-ENOTDIR when a part is a file). */
int sl_mkdirs_for(const char *path);
int sl_mkdirs(const char *dir);

/* Streaming form of sl_write_file_atomic, for writers that produce a file piece by
 * piece (npy, encoders): bytes go to "<path>.tmp-<pid>-<n>" in the same folder.
 * open: returns 0 or a negated errno (message names path); *out owned by the caller
 * until commit or abort. write: 0 or a negated errno (-ENOSPC on a full disk); on
 * failure the caller calls sl_atomic_abort. commit: fsync, close, rename onto path,
 * fsync the folder; frees f in every case; on failure (a failed fsync of the file
 * or of its folder included) the temp file is removed and nothing appears under path. abort: removes the temp file and frees f (NULL ok). */
typedef struct sl_atomic_file sl_atomic_file;
int sl_atomic_open(sl_atomic_file **out, const char *path);
int sl_atomic_write(sl_atomic_file *f, const void *data, size_t len);
int sl_atomic_commit(sl_atomic_file *f);
void sl_atomic_abort(sl_atomic_file *f);
/* Overwrites len bytes at offset of what was written so far (a header whose
 * content is known only at the end). Returns 0 or a negated errno. */
int sl_atomic_pwrite(sl_atomic_file *f, long long offset, const void *data, size_t len);

/* Removes the temp files ("*.tmp-<pid>-<n>") that killed runs left in dir (not
 * recursive). Call only while no other process writes into dir. Returns how many
 * were removed (0 when dir does not exist) or a negated errno. */
int sl_atomic_sweep(const char *dir);

/* Removes the temp files of one final path only ("PATH.tmp-<pid>-<n>"), which
 * a killed run may have left: safe while other writers use the same folder for
 * other files. Returns how many were removed or a negated errno. */
int sl_atomic_sweep_for(const char *path);

/* Fault injection for tests: after nbytes more bytes in total have been written
 * through sl_atomic_write, every write fails with ENOSPC (-1 turns it off). The
 * environment variable SL_FAULT_ENOSPC_AFTER=N does the same for a whole process.
 * Other writers call sl_io_fault_allow(want) before writing: it returns how many
 * of the want bytes may be written (0 = fail with ENOSPC). */
void sl_io_fault_enospc_after(long long nbytes);
size_t sl_io_fault_allow(size_t want);
/* The error those injected failures report: ENOSPC, or what
 * SL_FAULT_WRITE_ERRNO names (EROFS or EACCES: a file system gone read-only,
 * a permission lost). */
int sl_io_fault_errno(void);

/* fsync(fd) of the file (or, is_dir, the folder) at path: 0 or a negated errno.
 * Every fsync of stemline's outputs goes through here so that tests can make it
 * fail: after sl_io_fault_fsync(SUBSTRING) (or with the environment variable
 * SL_FAULT_FSYNC=SUBSTRING) the fsync of any file whose path contains SUBSTRING
 * fails with EIO; "dir:SUBSTRING" does the same for folders only. NULL turns it
 * off (the string is borrowed until then). */
int sl_io_fsync(int fd, const char *path, int is_dir);
void sl_io_fault_fsync(const char *substr);
/* fsyncs the folder that holds path (so that a rename into it is durable): 0 or
 * a negated errno; filesystems that cannot sync folders count as synced. */
int sl_fsync_dir_of(const char *path);

#endif
