/* SHA-256 (FIPS 180-4) of a file, to name a weights file in the index.json of
 * vector shards (the exact checkpoint the vectors were made with). */
#ifndef SL_SHA256_H
#define SL_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t len;      /* bytes so far */
    unsigned char buf[64];
    size_t fill;
} sl_sha256_ctx;

void sl_sha256_init(sl_sha256_ctx *c);
void sl_sha256_update(sl_sha256_ctx *c, const void *data, size_t n);
/* Writes the digest as 64 lower-case hex digits + NUL into hex[65]. */
void sl_sha256_hex(sl_sha256_ctx *c, char hex[65]);
/* The digest of the file at path into hex[65]. Returns 0 or a negated errno with
 * "PATH: reason" in sl_lasterr(). */
int sl_sha256_file(const char *path, char hex[65]);

#endif
