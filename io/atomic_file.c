/* Atomic file writes, the fault hooks of file I/O, and mkdir -p.
 *
 * Every file stemline produces goes through sl_atomic_*: the bytes land in
 * "<path>.tmp-<pid>-<n>" in the same folder, are fsync'd, and only then renamed
 * over the final name (rename is atomic within a filesystem), and the folder is
 * fsync'd so the rename itself survives a power cut. A crash or a full disk can
 * therefore leave a stray temp file, but never a partial file under its final
 * name. Declared in io/npy.h. */
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
