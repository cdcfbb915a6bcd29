/* Content hash of a file, to tell later whether an output is still the one
 * written: MurmurHash3 x64 128 as libavutil's "murmur3" computes it (written
 * out in io/filehash.c, so hashing needs no FFmpeg), fast enough to run on
 * every stem as it is written (several GB/s; a cryptographic hash would cost
 * about as much as encoding). It detects accidental change (truncation, a re-encode, a copy
 * gone wrong), not tampering. */
#ifndef SL_FILEHASH_H
#define SL_FILEHASH_H

#include <stdint.h>

#define SL_FILE_HASH_NAME "murmur3"
#define SL_FILE_HASH_HEX 33 /* 32 hex digits + NUL */

/* Hashes the file at path into hex (lower case) and its size into *size.
 * Returns 0 or a negated errno / SL_ENOMEM with the path in sl_lasterr(). */
int sl_file_hash(const char *path, char hex[SL_FILE_HASH_HEX], int64_t *size);

#endif
