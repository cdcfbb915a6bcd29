/* safetensors reader: validates everything before trusting it, then maps the
 * data. Format: 8-byte little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *  "__metadata__": {"key": "string value", ...}}, then the raw tensor bytes
 * (offsets relative to the end of the header). */
#ifndef SL_SAFETENSORS_H
#define SL_SAFETENSORS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SL_ST_F32, SL_ST_F16, SL_ST_BF16, SL_ST_F64, SL_ST_I64, SL_ST_I32, SL_ST_U8, SL_ST_BOOL } sl_st_dtype;

typedef struct {
    const char *name;
    sl_st_dtype dtype;
    int ndim;
    int64_t shape[8];
    const void *data;   /* inside the mapping, valid until sl_st_close */
    size_t nbytes;
} sl_st_tensor;

typedef struct sl_st_file sl_st_file;

/* Opens and fully validates path (header length within the file and <= 100 MB,
 * JSON well formed, known dtypes, shapes that match the byte ranges, ranges
 * inside the data area, no two tensors overlapping, metadata values strings).
 * Returns 0 or SL_EFORMAT / negated errno with "FILE: reason" in sl_lasterr().
 * *out is owned by the caller: sl_st_close. */
int sl_st_open(sl_st_file **out, const char *path);
/* Same checks on a buffer (the fuzz target uses it). buf must outlive *out. */
int sl_st_open_buffer(sl_st_file **out, const void *buf, size_t len, const char *name);
void sl_st_close(sl_st_file *f);

size_t sl_st_count(const sl_st_file *f);
const sl_st_tensor *sl_st_at(const sl_st_file *f, size_t i);
/* NULL when absent. */
const sl_st_tensor *sl_st_find(const sl_st_file *f, const char *name);
/* The metadata value for key, NULL when absent. */
const char *sl_st_meta(const sl_st_file *f, const char *key);

/* Looks up name and checks dtype F32 and the shape (ndim dims; -1 = any);
 * returns the tensor or NULL with "FILE: tensor NAME: reason" in sl_lasterr(). */
const sl_st_tensor *sl_st_require_f32(const sl_st_file *f, const char *name, int ndim, const int64_t *shape);

/* ---- additions (io/safetensors.c) ----
 * Notes on the functions above: sl_st_at enumerates tensors in data-offset (file)
 * order; sl_st_require_f32 takes ndim < 0 as any rank and shape NULL as any
 * sizes, and also refuses data that is not 4-byte aligned. */

/* "F32", "F16", ... ("?" for a value outside the enum); element size in bytes (0 outside). */
const char *sl_st_dtype_name(sl_st_dtype dt);
size_t sl_st_dtype_size(sl_st_dtype dt);
/* Number of elements (1 for a scalar, 0 when a dimension is 0); cannot overflow after open. */
uint64_t sl_st_numel(const sl_st_tensor *t);
/* "[2, 3]" into buf (truncated to size). */
void sl_st_format_shape(const sl_st_tensor *t, char *buf, size_t size);
/* The name given at open (path or buffer name); owned by f. */
const char *sl_st_name(const sl_st_file *f);
/* Metadata entries in key order, i < sl_st_meta_count; NULL out of range; owned by f. */
size_t sl_st_meta_count(const sl_st_file *f);
const char *sl_st_meta_key(const sl_st_file *f, size_t i);
const char *sl_st_meta_value(const sl_st_file *f, size_t i);

/* The loaders' lookup: sl_st_require_f32 of the tensor named by the printf format fmt
 * (ap; names up to 191 characters), marked in used[i] (i as sl_st_at; used may be NULL).
 * On failure NULL, and with what not NULL the error is SL_EFORMAT
 * "WHAT: FILE: tensor NAME: reason" (else sl_st_require_f32's). */
const sl_st_tensor *sl_st_vtake_f32(const sl_st_file *f, unsigned char *used, const char *what, int ndim,
                                    const int64_t *shape, const char *fmt, va_list ap);

#endif
