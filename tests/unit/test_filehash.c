/* sl_file_hash (io/filehash.c) computes MurmurHash3 x64 128 itself, so that
 * hashing needs no FFmpeg; the hashes it gives must stay the ones libavutil's
 * "murmur3" gave (ledgers and index.json files hold them). Compared here with
 * libavutil, linked into this test, over files of every length around the
 * 16-byte block and the 1 MiB read buffer, and a missing file's error. */
#include "common/sl_error.h"
#include "io/filehash.h"
#include "sl_test.h"

#include <libavutil/hash.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void av_hex(const unsigned char *data, size_t n, char hex[SL_FILE_HASH_HEX])
{
    struct AVHashContext *h = NULL;
    hex[0] = 0;
    if (av_hash_alloc(&h, SL_FILE_HASH_NAME) < 0)
        return;
    av_hash_init(h);
    av_hash_update(h, data, n);
    av_hash_final_hex(h, (uint8_t *)hex, SL_FILE_HASH_HEX);
    av_hash_freep(&h);
}

int main(void)
{
    const char *dir = sl_test_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/f.bin", dir);
    const size_t max = (1u << 20) + 70;
    unsigned char *data = malloc(max);
    CHECK(data != NULL);
    if (!data)
        return sl_test_finish("filehash");
    uint64_t x = 0x9e3779b97f4a7c15u; /* xorshift bytes: every value and position */
    for (size_t i = 0; i < max; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data[i] = (unsigned char)(x >> 24);
    }
    size_t lens[80];
    size_t n_lens = 0;
    for (size_t n = 0; n <= 49; n++)
        lens[n_lens++] = n;
    const size_t big[] = {1000, (1u << 20) - 17, (1u << 20) - 16, (1u << 20) - 1, 1u << 20,
                          (1u << 20) + 1, (1u << 20) + 15, (1u << 20) + 33, max};
    for (size_t i = 0; i < sizeof big / sizeof *big; i++)
        lens[n_lens++] = big[i];
    for (size_t i = 0; i < n_lens; i++) {
        size_t n = lens[i];
        sl_test_spew(path, data, n);
        char got[SL_FILE_HASH_HEX], want[SL_FILE_HASH_HEX];
        int64_t size = -1;
        int rc = sl_file_hash(path, got, &size);
        av_hex(data, n, want);
        CHECK_MSG(rc == 0, "%zu bytes: %s", n, sl_lasterr());
        CHECK_MSG(size == (int64_t)n, "%zu bytes: size %lld", n, (long long)size);
        CHECK_MSG(want[0] && !strcmp(got, want), "%zu bytes: %s, libavutil %s", n, got, want);
    }

    snprintf(path, sizeof path, "%s/missing.bin", dir);
    char hex[SL_FILE_HASH_HEX];
    int64_t size;
    int rc = sl_file_hash(path, hex, &size);
    CHECK(rc < 0);
    CHECK_MSG(strstr(sl_lasterr(), "missing.bin") != NULL, "%s", sl_lasterr());
    free(data);
    sl_test_rmdir(dir);
    return sl_test_finish("filehash");
}
