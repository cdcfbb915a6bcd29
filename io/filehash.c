#include "filehash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/sl_error.h"

/* MurmurHash3 x64 128, streamed: 16-byte blocks, the last partial block
 * (zero-padded) mixed in at the end with the length. With libavutil's seed
 * (both halves 0x725acc55daddca55) and its output order (h1 then h2, each
 * little-endian), so hashes recorded by earlier versions, which used
 * libavutil's "murmur3", still match: tests/unit/test_filehash.c compares. */
#define MM3_SEED UINT64_C(0x725acc55daddca55)
#define MM3_C1 UINT64_C(0x87c37b91114253d5)
#define MM3_C2 UINT64_C(0x4cf5ad432745937f)

typedef struct {
    uint64_t h1, h2, len;
    unsigned char tail[16];
    size_t n_tail;
} mm3;

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t mm3_k1(uint64_t k) { return rotl64(k * MM3_C1, 31) * MM3_C2; }
static uint64_t mm3_k2(uint64_t k) { return rotl64(k * MM3_C2, 33) * MM3_C1; }

static uint64_t mm3_fmix(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    return k ^ (k >> 33);
}

static void mm3_block(mm3 *s, const unsigned char *p)
{
    s->h1 ^= mm3_k1(load_le64(p));
    s->h1 = (rotl64(s->h1, 27) + s->h2) * 5 + 0x52dce729;
    s->h2 ^= mm3_k2(load_le64(p + 8));
    s->h2 = (rotl64(s->h2, 31) + s->h1) * 5 + 0x38495ab5;
}

static void mm3_update(mm3 *s, const unsigned char *p, size_t n)
{
    s->len += n;
    if (s->n_tail) {
        size_t k = 16 - s->n_tail < n ? 16 - s->n_tail : n;
        memcpy(s->tail + s->n_tail, p, k);
        s->n_tail += k;
        p += k;
        n -= k;
        if (s->n_tail < 16)
            return;
        mm3_block(s, s->tail);
        s->n_tail = 0;
    }
    for (; n >= 16; p += 16, n -= 16)
        mm3_block(s, p);
    memcpy(s->tail, p, n);
    s->n_tail = n;
}

static void mm3_final_hex(mm3 *s, char hex[SL_FILE_HASH_HEX])
{
    memset(s->tail + s->n_tail, 0, 16 - s->n_tail);
    uint64_t h1 = s->h1 ^ mm3_k1(load_le64(s->tail)) ^ s->len;
    uint64_t h2 = s->h2 ^ mm3_k2(load_le64(s->tail + 8)) ^ s->len;
    h1 += h2;
    h2 += h1;
    h1 = mm3_fmix(h1);
    h2 = mm3_fmix(h2);
    h1 += h2;
    h2 += h1;
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        unsigned b = (unsigned)((i < 8 ? h1 >> 8 * i : h2 >> 8 * (i - 8)) & 0xff);
        hex[2 * i] = digits[b >> 4];
        hex[2 * i + 1] = digits[b & 15];
    }
    hex[32] = 0;
}

int sl_file_hash(const char *path, char hex[SL_FILE_HASH_HEX], int64_t *size)
{
    hex[0] = 0;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf) {
        close(fd);
        return sl_seterr(SL_ENOMEM, "%s: out of memory for its hash", path);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    mm3 h = {MM3_SEED, MM3_SEED, 0, {0}, 0};
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, BUF);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            rc = sl_seterr(-e, "%s: %s", path, strerror(e));
            break;
        }
        if (n == 0)
            break;
        mm3_update(&h, buf, (size_t)n);
        *size += n;
    }
    if (!rc)
        mm3_final_hex(&h, hex);
    free(buf);
    close(fd);
    return rc;
}
