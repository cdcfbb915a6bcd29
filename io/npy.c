/* .npy writer/reader, atomic file writes, mkdir -p and JSON string escaping.
 *
 * Every file stemline produces goes through sl_atomic_*: the bytes land in
 * "<path>.tmp-<pid>-<n>" in the same folder, are fsync'd, and only then renamed
 * over the final name (rename is atomic within a filesystem), and the folder is
 * fsync'd so the rename itself survives a power cut. A crash or a full disk can
 * therefore leave a stray temp file, but never a partial file under its final
 * name. */
#include "io/npy.h"

#include "common/sl_error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- fault hook */

/* Bytes that atomic writes may still put on disk before failing with ENOSPC;
 * -1 = unlimited. -2 = not yet read from the environment. */
static _Atomic long long fault_budget = -2;

void sl_io_fault_enospc_after(long long nbytes)
{
    atomic_store(&fault_budget, nbytes < 0 ? -1 : nbytes);
}

int sl_io_fault_errno(void)
{
    const char *e = getenv("SL_FAULT_WRITE_ERRNO");
    if (e && !strcmp(e, "EROFS"))
        return EROFS;
    if (e && !strcmp(e, "EACCES"))
        return EACCES;
    return ENOSPC;
}

size_t sl_io_fault_allow(size_t want)
{
    long long b = atomic_load(&fault_budget);
    if (b == -2) {
        const char *e = getenv("SL_FAULT_ENOSPC_AFTER");
        long long v = -1;
        if (e && *e) {
            char *end;
            errno = 0;
            v = strtoll(e, &end, 10);
            if (errno || *end || v < 0)
                v = -1;
        }
        long long expect = -2;
        atomic_compare_exchange_strong(&fault_budget, &expect, v);
        b = atomic_load(&fault_budget);
    }
    for (;;) {
        if (b < 0)
            return want;
        size_t give = (unsigned long long)b < want ? (size_t)b : want;
        if (atomic_compare_exchange_weak(&fault_budget, &b, b - (long long)give))
            return give;
    }
}

/* ---------------------------------------------------------------- atomic files */

struct sl_atomic_file {
    int fd;
    char *path;
    char *tmp;
};

static atomic_uint tmp_counter;

/* Path substring whose fsyncs fail with EIO (test-only); NULL = none. The env
 * variable is read once, on first use. */
static _Atomic(const char *) fault_fsync;
static atomic_int fault_fsync_read;

void sl_io_fault_fsync(const char *substr)
{
    atomic_store(&fault_fsync_read, 1);
    atomic_store(&fault_fsync, substr && *substr ? substr : NULL);
}

int sl_io_fsync(int fd, const char *path, int is_dir)
{
    if (!atomic_load(&fault_fsync_read)) {
        const char *e = getenv("SL_FAULT_FSYNC");
        const char *expect = NULL;
        if (e && *e)
            atomic_compare_exchange_strong(&fault_fsync, &expect, e);
        atomic_store(&fault_fsync_read, 1);
    }
    const char *f = atomic_load(&fault_fsync);
    if (f && path) {
        int dir_fault = !strncmp(f, "dir:", 4);
        if (dir_fault == (is_dir != 0) && strstr(path, f + (dir_fault ? 4 : 0)))
            return -EIO;
    }
    return fsync(fd) == 0 ? 0 : -errno;
}

int sl_fsync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return SL_ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;
    if (fd < 0) {
        rc = -errno;
    } else {
        /* Some filesystems cannot fsync a folder; the rename is still atomic there. */
        rc = sl_io_fsync(fd, dir, 1);
        if (rc == -EINVAL || rc == -ENOTSUP || rc == -EROFS)
            rc = 0;
        close(fd);
    }
    free(dir);
    return rc;
}

int sl_atomic_open(sl_atomic_file **out, const char *path)
{
    *out = NULL;
    if (!path || !*path)
        return sl_seterr(SL_EINVAL, "atomic write: empty path");
    sl_atomic_file *f = calloc(1, sizeof *f);
    if (!f)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    f->fd = -1;
    f->path = strdup(path);
    size_t n = strlen(path) + 64;
    f->tmp = malloc(n);
    if (!f->path || !f->tmp) {
        free(f->path);
        free(f->tmp);
        free(f);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    /* O_EXCL, and a new name when one is taken: a run killed earlier may have left
     * a temp file under our very pid (containers reuse pids from run to run). */
    for (int tries = 0; tries < 1000; tries++) {
        snprintf(f->tmp, n, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1u));
        f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_TRUNC | O_CLOEXEC, 0666);
        if (f->fd >= 0 || errno != EEXIST)
            break;
    }
    if (f->fd < 0) {
        int e = errno;
        free(f->path);
        free(f->tmp);
        free(f);
        return sl_seterr(-e, "%s: cannot create temporary file: %s", path, strerror(e));
    }
    *out = f;
    return 0;
}

int sl_atomic_write(sl_atomic_file *f, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        size_t chunk = len > (1u << 30) ? (1u << 30) : len;
        chunk = sl_io_fault_allow(chunk);
        if (chunk == 0)
            return sl_seterr(-sl_io_fault_errno(), "%s: write failed: %s (injected)", f->path,
                             strerror(sl_io_fault_errno()));
        ssize_t w = write(f->fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            return sl_seterr(-e, "%s: write failed: %s", f->path, strerror(e));
        }
        if (w == 0)
            return sl_seterr(-EIO, "%s: write failed: wrote nothing", f->path);
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int sl_atomic_pwrite(sl_atomic_file *f, long long offset, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        ssize_t w = pwrite(f->fd, p, len, (off_t)offset);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            return sl_seterr(-e, "%s: write failed: %s", f->path, strerror(e));
        }
        p += w;
        len -= (size_t)w;
        offset += w;
    }
    return 0;
}

void sl_atomic_abort(sl_atomic_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    unlink(f->tmp);
    free(f->path);
    free(f->tmp);
    free(f);
}

int sl_atomic_commit(sl_atomic_file *f)
{
    int e = 0;
    const char *what = NULL;
    int src = sl_io_fsync(f->fd, f->tmp, 0);
    if (src < 0) {
        e = -src;
        what = "fsync";
    }
    /* close() reports delayed write errors on NFS and friends. */
    if (close(f->fd) != 0 && !e) {
        e = errno;
        what = "close";
    }
    f->fd = -1;
    if (!e && rename(f->tmp, f->path) != 0) {
        e = errno;
        what = "rename";
    }
    if (e) {
        int rc = sl_seterr(-e, "%s: %s failed: %s", f->path, what, strerror(e));
        sl_atomic_abort(f);
        return rc;
    }
    int rc = sl_fsync_dir_of(f->path);
    if (rc < 0) {
        /* the rename may not survive a power cut: the file is not reported written */
        sl_seterr(rc, "%s: fsync of its folder failed: %s", f->path, strerror(-rc));
        unlink(f->path);
    }
    free(f->path);
    free(f->tmp);
    free(f);
    return rc;
}

/* 1 when name ends with ".tmp-<digits>-<digits>" (our temp names). */
static int is_tmp_name(const char *name)
{
    const char *t = strstr(name, ".tmp-");
    if (!t)
        return 0;
    for (const char *next; (next = strstr(t + 1, ".tmp-")) != NULL;)
        t = next;
    const char *p = t + 5;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    if (!digits || *p++ != '-')
        return 0;
    digits = 0;
    while (*p >= '0' && *p <= '9') {
        p++;
        digits++;
    }
    return digits && *p == 0 && t > name;
}

int sl_atomic_sweep(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        if (e == ENOENT)
            return 0;
        return sl_seterr(-e, "%s: %s", dir, strerror(e));
    }
    int n = 0, rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!is_tmp_name(de->d_name))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0) {
            n++;
        } else if (errno != ENOENT && errno != EISDIR) {
            int e = errno;
            rc = sl_seterr(-e, "%s/%s: cannot remove: %s", dir, de->d_name, strerror(e));
            break;
        }
    }
    closedir(d);
    return rc < 0 ? rc : n;
}

int sl_atomic_sweep_for(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dl = slash ? (size_t)(slash - path) : 1, bl = strlen(base);
    char *dir = malloc(dl + 1);
    if (!dir)
        return sl_seterr(SL_ENOMEM, "out of memory");
    memcpy(dir, slash ? path : ".", dl);
    dir[dl] = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        free(dir);
        return e == ENOENT ? 0 : sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    int n = 0, rc = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        /* exactly BASE.tmp-<pid>-<n>: the temp files of this one path */
        if (strncmp(nm, base, bl) || strncmp(nm + bl, ".tmp-", 5) || !is_tmp_name(nm) ||
            strstr(nm + bl + 1, ".tmp-") != NULL)
            continue;
        if (unlinkat(dirfd(d), nm, 0) == 0) {
            n++;
        } else if (errno != ENOENT && errno != EISDIR) {
            int e = errno;
            rc = sl_seterr(-e, "%s/%s: cannot remove: %s", dir, nm, strerror(e));
            break;
        }
    }
    closedir(d);
    free(dir);
    return rc < 0 ? rc : n;
}

int sl_write_file_atomic(const char *path, const void *data, size_t len)
{
    sl_atomic_file *f;
    int rc = sl_atomic_open(&f, path);
    if (rc < 0)
        return rc;
    rc = sl_atomic_write(f, data, len);
    if (rc < 0) {
        sl_atomic_abort(f);
        return rc;
    }
    return sl_atomic_commit(f);
}

/* ---------------------------------------------------------------- mkdir -p */

int sl_mkdirs(const char *dir)
{
    if (!dir || !*dir)
        return 0;
    char *p = strdup(dir);
    if (!p)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", dir);
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        p[--n] = 0;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        int last = (*s == 0);
        if (*s == '/' || last) {
            char saved = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0) {
                int e = errno;
                struct stat st;
                if (e == EEXIST || e == EROFS || e == EACCES || e == EPERM) {
                    /* Existing folders are fine even where we could not create one. */
                    if (stat(p, &st) == 0) {
                        if (!S_ISDIR(st.st_mode)) {
                            rc = sl_seterr(-ENOTDIR, "%s: cannot create folder: %s is not a folder", dir, p);
                            break;
                        }
                        e = 0;
                    }
                }
                if (e) {
                    rc = sl_seterr(-e, "%s: cannot create folder %s: %s", dir, p, strerror(e));
                    break;
                }
            }
            *s = saved;
            if (last)
                break;
            while (s[1] == '/')
                s++;
        }
    }
    free(p);
    return rc;
}

int sl_mkdirs_for(const char *path)
{
    if (!path)
        return sl_seterr(SL_EINVAL, "mkdirs: NULL path");
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path)
        return 0;
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    int rc = sl_mkdirs(dir);
    free(dir);
    return rc;
}

/* ---------------------------------------------------------------- float16 */

unsigned short sl_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {
        if (ax == 0x7f800000u)
            return (unsigned short)(sign | 0x7c00u);
        /* NaN: keep the top payload bits, force quiet so it can never become inf. */
        return (unsigned short)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    }
    /* 65520 is halfway between 65504 (max half) and 2^16; ties-to-even go up. */
    if (ax >= 0x477ff000u)
        return (unsigned short)(sign | 0x7c00u);
    uint32_t e = ax >> 23;
    if (e < 113) {
        /* Half subnormal (or zero): value in units of 2^-24 is mant24 * 2^(e-126). */
        uint32_t shift = 126 - e;
        if (shift > 24)
            return (unsigned short)sign;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t q = m >> shift;
        uint32_t r = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (r > half || (r == half && (q & 1)))
            q++; /* may carry into the smallest normal: correct by construction */
        return (unsigned short)(sign | q);
    }
    uint32_t h = ((e - 112) << 10) | ((ax & 0x7fffffu) >> 13);
    uint32_t r = ax & 0x1fffu;
    if (r > 0x1000u || (r == 0x1000u && (h & 1)))
        h++; /* carry into the exponent is the right answer too */
    return (unsigned short)(sign | h);
}

float sl_f16_to_f32(unsigned short h)
{
    uint32_t sign = ((uint32_t)h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu;
    uint32_t m = h & 0x3ffu;
    uint32_t x;
    if (e == 0) {
        if (m == 0) {
            x = sign;
        } else {
            /* Normalise the subnormal: shift until the implicit bit appears. */
            int k = 0;
            while (!(m & 0x400u)) {
                m <<= 1;
                k++;
            }
            m &= 0x3ffu;
            x = sign | ((uint32_t)(113 - k) << 23) | (m << 13);
        }
    } else if (e == 31) {
        x = sign | 0x7f800000u | (m << 13);
    } else {
        x = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* ---------------------------------------------------------------- .npy */

static void put_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t get_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Format 1.0 header, padded with spaces and a final '\n' so that the data starts
 * at a multiple of 64 bytes (what numpy itself writes, and what mmap likes). */
static size_t npy_header(unsigned char *buf, size_t cap, const char *descr, size_t rows, size_t cols)
{
    char dict[256];
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu, %zu), }", descr,
                     rows, cols);
    size_t total = 10 + (size_t)n + 1;
    total = (total + 63) / 64 * 64;
    if (total > cap)
        return 0;
    size_t hlen = total - 10;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memcpy(buf + 10, dict, (size_t)n);
    memset(buf + 10 + n, ' ', total - 10 - (size_t)n - 1);
    buf[total - 1] = '\n';
    return total;
}

static int npy_dtype(const char *path, const char *dtype, int *f16)
{
    if (!dtype)
        return sl_seterr(SL_EINVAL, "%s: NULL dtype", path);
    if (!strcmp(dtype, "float32") || !strcmp(dtype, "f4") || !strcmp(dtype, "<f4"))
        *f16 = 0;
    else if (!strcmp(dtype, "float16") || !strcmp(dtype, "f2") || !strcmp(dtype, "<f2"))
        *f16 = 1;
    else
        return sl_seterr(SL_EINVAL, "%s: unsupported dtype '%s' (float32 or float16)", path, dtype);
    return 0;
}

/* Little-endian encoding of n elements into out (2 or 4 bytes each). */
static void npy_pack(unsigned char *out, const float *src, size_t n, int f16)
{
    for (size_t k = 0; k < n; k++) {
        if (f16) {
            unsigned short h = sl_f32_to_f16(src[k]);
            out[2 * k] = (unsigned char)h;
            out[2 * k + 1] = (unsigned char)(h >> 8);
        } else {
            uint32_t x;
            memcpy(&x, &src[k], 4);
            put_le32(out + 4 * k, x);
        }
    }
}

int sl_npy_encode(const float *data, size_t rows, size_t cols, const char *dtype, unsigned char **out,
                  size_t *len)
{
    int f16, rc;
    *out = NULL;
    *len = 0;
    if ((rc = npy_dtype("npy", dtype, &f16)) < 0)
        return rc;
    if (rows && cols && (!data || rows > (SIZE_MAX - 1024) / cols / 4))
        return sl_seterr(SL_EINVAL, "npy: bad matrix [%zu, %zu]", rows, cols);
    unsigned char hdr[256];
    size_t hl = npy_header(hdr, sizeof hdr, f16 ? "<f2" : "<f4", rows, cols);
    size_t dl = rows * cols * (f16 ? 2 : 4);
    unsigned char *b = malloc(hl + dl + 1);
    if (!b)
        return sl_seterr(SL_ENOMEM, "npy: out of memory for [%zu, %zu]", rows, cols);
    memcpy(b, hdr, hl);
    npy_pack(b + hl, data, rows * cols, f16);
    *out = b;
    *len = hl + dl;
    return 0;
}

int sl_npy_write(const char *path, const float *data, size_t rows, size_t cols, const char *dtype)
{
    int f16;
    if (!path)
        return sl_seterr(SL_EINVAL, "npy: NULL path");
    int rc = npy_dtype(path, dtype, &f16);
    if (rc < 0)
        return rc;
    if (rows && cols && (!data || rows > SIZE_MAX / cols / 4))
        return sl_seterr(SL_EINVAL, "%s: bad matrix [%zu, %zu]", path, rows, cols);

    unsigned char *buf = malloc(1 << 16);
    if (!buf)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    size_t hl = npy_header(buf, 1 << 16, f16 ? "<f2" : "<f4", rows, cols);
    sl_atomic_file *f;
    rc = sl_atomic_open(&f, path);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    rc = sl_atomic_write(f, buf, hl);
    size_t count = rows * cols, i = 0;
    const size_t step = f16 ? (1 << 15) : (1 << 14); /* elements per 64 KiB */
    while (rc == 0 && i < count) {
        size_t n = count - i < step ? count - i : step;
        npy_pack(buf, data + i, n, f16);
        rc = sl_atomic_write(f, buf, n * (f16 ? 2 : 4));
        i += n;
    }
    free(buf);
    if (rc < 0) {
        sl_atomic_abort(f);
        return rc;
    }
    return sl_atomic_commit(f);
}

/* Streaming writer: the header is written first with a row count of 0 and
 * rewritten in place at commit; both fit the same 128 bytes (a dict of at most
 * ~110 characters), so the data offset does not move. */
#define NPY_STREAM_HDR 128

struct sl_npy_stream {
    sl_atomic_file *f;
    size_t cols, rows;
    int f16;
    unsigned char *buf; /* 64 KiB packing buffer */
};

int sl_npy_stream_open(sl_npy_stream **out, const char *path, size_t cols, const char *dtype)
{
    *out = NULL;
    int f16, rc = npy_dtype(path, dtype, &f16);
    if (rc)
        return rc;
    sl_npy_stream *s = calloc(1, sizeof *s);
    if (!s || !(s->buf = malloc(1 << 16))) {
        free(s);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    s->cols = cols;
    s->f16 = f16;
    unsigned char hdr[NPY_STREAM_HDR];
    if (npy_header(hdr, sizeof hdr, f16 ? "<f2" : "<f4", 0, cols) != NPY_STREAM_HDR) {
        free(s->buf);
        free(s);
        return sl_seterr(SL_EINVAL, "%s: %zu columns do not fit the header", path, cols);
    }
    if ((rc = sl_atomic_open(&s->f, path)) != 0 || (rc = sl_atomic_write(s->f, hdr, sizeof hdr)) != 0) {
        sl_npy_stream_abort(s);
        return rc;
    }
    *out = s;
    return 0;
}

int sl_npy_stream_rows(sl_npy_stream *s, const float *data, size_t rows)
{
    size_t count = rows * s->cols, i = 0;
    const size_t step = s->f16 ? (1 << 15) : (1 << 14);
    int rc = 0;
    while (rc == 0 && i < count) {
        size_t n = count - i < step ? count - i : step;
        npy_pack(s->buf, data + i, n, s->f16);
        rc = sl_atomic_write(s->f, s->buf, n * (s->f16 ? 2 : 4));
        i += n;
    }
    if (rc == 0)
        s->rows += rows;
    return rc;
}

int sl_npy_stream_commit(sl_npy_stream *s)
{
    unsigned char hdr[NPY_STREAM_HDR];
    int rc;
    if (npy_header(hdr, sizeof hdr, s->f16 ? "<f2" : "<f4", s->rows, s->cols) != NPY_STREAM_HDR)
        rc = sl_seterr(SL_EINVAL, "npy: %zu rows do not fit the header", s->rows);
    else
        rc = sl_atomic_pwrite(s->f, 0, hdr, sizeof hdr);
    if (rc) {
        sl_npy_stream_abort(s);
        return rc;
    }
    rc = sl_atomic_commit(s->f);
    s->f = NULL;
    sl_npy_stream_abort(s);
    return rc;
}

void sl_npy_stream_abort(sl_npy_stream *s)
{
    if (!s)
        return;
    sl_atomic_abort(s->f);
    free(s->buf);
    free(s);
}

/* A tiny parser for the header dict numpy writes (a Python literal). */
typedef struct {
    const char *p, *end;
} hparse;

static void hp_ws(hparse *h)
{
    while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
        h->p++;
}

static int hp_char(hparse *h, char c)
{
    hp_ws(h);
    if (h->p < h->end && *h->p == c) {
        h->p++;
        return 1;
    }
    return 0;
}

static int hp_str(hparse *h, char *out, size_t cap)
{
    hp_ws(h);
    if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
        return 0;
    char q = *h->p++;
    size_t n = 0;
    while (h->p < h->end && *h->p != q) {
        if (n + 1 >= cap)
            return 0;
        out[n++] = *h->p++;
    }
    if (h->p >= h->end)
        return 0;
    h->p++;
    out[n] = 0;
    return 1;
}

static int hp_uint(hparse *h, size_t *v)
{
    hp_ws(h);
    const char *s = h->p;
    size_t x = 0;
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
        unsigned d = (unsigned)(*h->p - '0');
        if (x > (SIZE_MAX - d) / 10)
            return 0;
        x = x * 10 + d;
        h->p++;
    }
    if (h->p < h->end && *h->p == 'L') /* Python 2 longs */
        h->p++;
    *v = x;
    return h->p > s;
}

static int npy_fail(const char *path, const char *why)
{
    return sl_seterr(SL_EFORMAT, "%s: not a readable .npy file: %s", path, why);
}

void sl_npy_unpack(const unsigned char *src, float *dst, size_t n, int f16)
{
    for (size_t i = 0; i < n; i++) {
        if (f16) {
            dst[i] = sl_f16_to_f32((unsigned short)(src[2 * i] | (src[2 * i + 1] << 8)));
        } else {
            uint32_t x = get_le32(src + 4 * i);
            memcpy(&dst[i], &x, 4);
        }
    }
}

int sl_npy_read_header(FILE *fp, const char *path, sl_npy_info *info)
{
    memset(info, 0, sizeof *info);
    int rc = 0;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    size_t fsize = (size_t)st.st_size;
    unsigned char pre[12];
    if (fsize < 10 || fread(pre, 1, 10, fp) != 10)
        return npy_fail(path, "too short");
    if (memcmp(pre, "\x93NUMPY", 6) != 0)
        return npy_fail(path, "bad magic");
    size_t hlen, hstart;
    if (pre[6] == 1 && pre[7] == 0) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
        hstart = 10;
    } else if (pre[6] == 2 && pre[7] == 0) {
        if (fread(pre + 10, 1, 2, fp) != 2)
            return npy_fail(path, "too short");
        hlen = get_le32(pre + 8);
        hstart = 12;
    } else {
        char why[64];
        snprintf(why, sizeof why, "unsupported format version %u.%u", pre[6], pre[7]);
        return npy_fail(path, why);
    }
    if (hlen > fsize - hstart || hlen > (1u << 20))
        return npy_fail(path, "header longer than the file");
    char *hdr = malloc(hlen + 1);
    if (!hdr)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    if (fread(hdr, 1, hlen, fp) != hlen) {
        free(hdr);
        return npy_fail(path, "short header");
    }
    hdr[hlen] = 0;
    hparse h = {hdr, hdr + hlen};
    char key[32], descr[32] = "";
    int have_descr = 0, have_fo = 0, have_shape = 0, fortran = 0;
    size_t dims[2] = {0, 0};
    const char *why = NULL;
    if (!hp_char(&h, '{'))
        why = "header is not a dict";
    while (!why && !hp_char(&h, '}')) {
        if (!hp_str(&h, key, sizeof key) || !hp_char(&h, ':')) {
            why = "malformed header dict";
            break;
        }
        if (!strcmp(key, "descr")) {
            if (!hp_str(&h, descr, sizeof descr))
                why = "descr is not a simple type string";
            have_descr = 1;
        } else if (!strcmp(key, "fortran_order")) {
            hp_ws(&h);
            if ((size_t)(h.end - h.p) >= 4 && !memcmp(h.p, "True", 4)) {
                fortran = 1;
                h.p += 4;
            } else if ((size_t)(h.end - h.p) >= 5 && !memcmp(h.p, "False", 5)) {
                h.p += 5;
            } else {
                why = "fortran_order is not True/False";
            }
            have_fo = 1;
        } else if (!strcmp(key, "shape")) {
            int nd = 0;
            if (!hp_char(&h, '(')) {
                why = "shape is not a tuple";
                break;
            }
            while (!why && !hp_char(&h, ')')) {
                size_t v;
                if (nd >= 2 || !hp_uint(&h, &v)) {
                    why = "shape is not 2-D";
                    break;
                }
                dims[nd++] = v;
                if (!hp_char(&h, ',')) {
                    if (!hp_char(&h, ')'))
                        why = "malformed shape";
                    break;
                }
            }
            if (!why && nd != 2)
                why = "shape is not 2-D";
            have_shape = 1;
        } else {
            why = "unknown header key";
        }
        if (why)
            break;
        if (!hp_char(&h, ',')) {
            if (!hp_char(&h, '}'))
                why = "malformed header dict";
            break;
        }
    }
    free(hdr);
    if (!why && (!have_descr || !have_fo || !have_shape))
        why = "header lacks descr, fortran_order or shape";
    int f16 = 0;
    if (!why) {
        if (!strcmp(descr, "<f4"))
            f16 = 0;
        else if (!strcmp(descr, "<f2"))
            f16 = 1;
        else
            why = "dtype is not little-endian float32 or float16";
    }
    if (!why && fortran)
        why = "fortran_order arrays are not supported";
    size_t isz = f16 ? 2 : 4;
    if (!why && dims[1] && dims[0] > SIZE_MAX / dims[1] / 4)
        why = "shape too large";
    size_t count = dims[0] * dims[1];
    if (!why && fsize - hstart - hlen != count * isz)
        why = "file size does not match the shape";
    if (why)
        return npy_fail(path, why);
    info->rows = dims[0];
    info->cols = dims[1];
    info->f16 = f16;
    info->data_offset = (long long)(hstart + hlen);
    return rc;
}

int sl_npy_read(const char *path, float **data, size_t *rows, size_t *cols)
{
    *data = NULL;
    *rows = *cols = 0;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    unsigned char *buf = NULL;
    sl_npy_info info;
    int rc = sl_npy_read_header(fp, path, &info);
    if (rc)
        goto out;
    int f16 = info.f16;
    size_t isz = f16 ? 2 : 4, count = info.rows * info.cols;
    size_t dims[2] = {info.rows, info.cols};
    buf = malloc(count * isz + 1);
    float *out = malloc(count * sizeof(float) + 1);
    if (!buf || !out) {
        free(out);
        rc = sl_seterr(SL_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (fread(buf, 1, count * isz, fp) != count * isz) {
        free(out);
        rc = npy_fail(path, "short data");
        goto out;
    }
    sl_npy_unpack(buf, out, count, f16);
    *data = out;
    *rows = dims[0];
    *cols = dims[1];
out:
    free(buf);
    fclose(fp);
    return rc;
}

/* ---------------------------------------------------------------- JSON */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid: overlong
 * forms, surrogates and code points above U+10FFFF are rejected (RFC 3629). */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80)
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        if (s[1] < lo || s[1] > hi || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

void sl_json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', f);
    while (*p) {
        unsigned c = *p;
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc((int)c, f);
            p++;
        } else if (c < 0x20) {
            if (c == '\n')
                fputs("\\n", f);
            else if (c == '\t')
                fputs("\\t", f);
            else if (c == '\r')
                fputs("\\r", f);
            else
                fprintf(f, "\\u%04x", c);
            p++;
        } else {
            /* The NUL terminator stops utf8_len's continuation checks in time. */
            int n = utf8_len(p);
            if (n == 0) {
                fputs("\xef\xbf\xbd", f); /* U+FFFD for each invalid byte */
                p++;
            } else {
                fwrite(p, 1, (size_t)n, f);
                p += n;
            }
        }
    }
    fputc('"', f);
}
