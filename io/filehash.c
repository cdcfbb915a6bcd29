#include "filehash.h"

#include <errno.h>
#include <fcntl.h>
#include <libavutil/hash.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/sl_error.h"

int sl_file_hash(const char *path, char hex[SL_FILE_HASH_HEX], int64_t *size)
{
    hex[0] = 0;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    struct AVHashContext *h = NULL;
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf || av_hash_alloc(&h, SL_FILE_HASH_NAME) < 0) {
        free(buf);
        close(fd);
        return sl_seterr(SL_ENOMEM, "%s: out of memory for its hash", path);
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    av_hash_init(h);
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
        av_hash_update(h, buf, (size_t)n);
        *size += n;
    }
    if (!rc)
        av_hash_final_hex(h, (uint8_t *)hex, SL_FILE_HASH_HEX);
    av_hash_freep(&h);
    free(buf);
    close(fd);
    return rc;
}
