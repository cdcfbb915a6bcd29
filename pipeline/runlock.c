/* The run lock: flock(2) on a file beside the ledger.
 *
 * flock rather than fcntl locks: an fcntl lock belongs to the process, so a
 * second open in the same process would silently share it, and any close of
 * that file by the process (SQLite opens its files often) drops it; an flock
 * lock belongs to the open file description, so two sl_run calls in one
 * process exclude each other too. The file is opened O_CLOEXEC so that no
 * child (FFmpeg helpers) inherits the lock past our exit. On NFS, flock is
 * emulated with byte-range locks by Linux, which still excludes across hosts. */
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/sl_error.h"

struct sl_runlock {
    int fd;
};

/* The holder writes its line after it has the lock: a reader racing with it
 * may read an empty file for a moment, so it retries briefly. */
static void read_holder(int fd, char *buf, size_t size)
{
    buf[0] = 0;
    for (int tries = 0; tries < 20; tries++) {
        ssize_t n = pread(fd, buf, size - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            buf[strcspn(buf, "\n")] = 0;
            return;
        }
        struct timespec ts = {0, 25 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* "pid=N host=H started=T" -> its fields ("?" when missing). */
static void field(const char *line, const char *key, char *out, size_t size)
{
    snprintf(out, size, "?");
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key)) != NULL; p += kl) {
        if ((p == line || p[-1] == ' ') && p[kl] == '=') {
            snprintf(out, size, "%.*s", (int)strcspn(p + kl + 1, " "), p + kl + 1);
            return;
        }
    }
}

int sl_runlock_acquire(sl_runlock **out, const char *ledger_path)
{
    *out = NULL;
    char path[PATH_MAX + 8], folder[PATH_MAX];
    if (snprintf(path, sizeof path, "%s.lock", ledger_path) >= (int)sizeof path)
        return sl_seterr(-ENAMETOOLONG, "%s.lock: path too long", ledger_path);
    snprintf(folder, sizeof folder, "%s", ledger_path);
    char *slash = strrchr(folder, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(folder, sizeof folder, ".");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "cannot create the lock file %s: %s", path, strerror(e));
    }
    int r;
    do
        r = flock(fd, LOCK_EX | LOCK_NB);
    while (r != 0 && errno == EINTR);
    if (r != 0) {
        int e = errno;
        if (e != EWOULDBLOCK) {
            close(fd);
            return sl_seterr(-e, "cannot lock %s: %s", path, strerror(e));
        }
        char line[512], pid[32], host[256], started[64];
        read_holder(fd, line, sizeof line);
        close(fd);
        field(line, "pid", pid, sizeof pid);
        field(line, "host", host, sizeof host);
        field(line, "started", started, sizeof started);
        const char *ledger = strrchr(ledger_path, '/') ? strrchr(ledger_path, '/') + 1 : ledger_path;
        return sl_seterr(-EWOULDBLOCK,
                         "output folder %s is in use: another stemline run (PID %s on host %s, started %s) "
                         "holds the lock of its ledger %s; nothing was changed. Wait for it to finish (on %s: "
                         "tail --pid=%s -f /dev/null), or stop it (on %s: kill %s; it can be resumed), then run "
                         "again; to run in parallel, give each run its own --shard I/N or output.dir",
                         folder, pid, host, started, ledger, host, pid, host, pid);
    }
    char host[256] = "?", started[64], line[512];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = 0;
    for (char *p = host; *p; p++)
        if (*p == ' ' || *p == '\n')
            *p = '_';
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof line, "pid=%ld host=%s started=%s\n", (long)getpid(), host, started);
    /* informative only: a failure to write it does not weaken the lock */
    if (ftruncate(fd, 0) == 0 && pwrite(fd, line, (size_t)n, 0) != n)
        (void)ftruncate(fd, 0);
    sl_runlock *l = malloc(sizeof *l);
    if (!l) {
        close(fd);
        return sl_seterr(SL_ENOMEM, "out of memory");
    }
    l->fd = fd;
    *out = l;
    return 0;
}

void sl_runlock_release(sl_runlock *l)
{
    if (!l)
        return;
    /* the line stays: it is rewritten by the next holder, and a reader that
     * meets it without a holder never sees it (it gets the lock) */
    flock(l->fd, LOCK_UN);
    close(l->fd);
    free(l);
}
