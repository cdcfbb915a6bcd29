/* sl_mem_keep_freed: a big block freed and allocated again reuses the pages
 * already faulted in (glibc alone maps the first one fresh, unmaps it at free,
 * and serves the next from fresh heap pages). Counts minor page faults
 * (getrusage), not time.
 * The cpu backend's big buffers are advised MADV_HUGEPAGE only with
 * STEMLINE_CPU_HUGEPAGES=1: read from the buffer's mapping in /proc/self/smaps
 * (VmFlags "hg"), in a child process per setting (the variable is read once per
 * process). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_mem.h"
#include "kernels/ops.h"
#include "sl_test.h"

static long minflt(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt;
}

/* Faults taken by allocating, filling and freeing bytes. */
static long round_faults(size_t bytes)
{
    const long f0 = minflt();
    char *p = malloc(bytes);
    if (!p)
        return -1;
    memset(p, 1, bytes);
    __asm__ volatile("" : : "r"(p) : "memory");
    free(p);
    return minflt() - f0;
}

/* In a child: a 32 MiB buffer of the cpu backend with STEMLINE_CPU_HUGEPAGES set to value (NULL:
 * unset); exits with the "hg" flag of its middle's mapping + 1 (0: this system cannot say, 1 not
 * advised, 2 advised), 9 on error. */
static int child_advice(const char *value)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (value)
            setenv("STEMLINE_CPU_HUGEPAGES", value, 1);
        else
            unsetenv("STEMLINE_CPU_HUGEPAGES");
        sl_op_ctx *ctx = NULL;
        void *buf = NULL;
        const size_t bytes = (size_t)32 << 20;
        if (sl_op_ctx_open(&ctx, "cpu") || sl_op_alloc(ctx, &buf, bytes))
            _exit(9);
        const int h = sl_test_addr_flag((const char *)buf + bytes / 2, "hg");
        sl_op_free(ctx, buf);
        sl_op_ctx_close(ctx);
        _exit(h + 1);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int main(void)
{
    const int unset = child_advice(NULL), zero = child_advice("0"), one = child_advice("1");
    printf("cpu backend's 32 MiB buffer advised for huge pages (1 no, 2 yes): unset %d, =0 %d, =1 %d\n", unset, zero,
           one);
    CHECK_MSG(unset == 1 || (unset == 0 && one == 0), "no huge-page advice by default (%d)", unset);
    CHECK_MSG(zero == 1 || (zero == 0 && one == 0), "no huge-page advice with STEMLINE_CPU_HUGEPAGES=0 (%d)", zero);
    if (one == 0) /* no smaps or no transparent huge pages: nothing to advise */
        printf("this system cannot show huge-page advice: not checked\n");
    else
        CHECK_MSG(one == 2, "huge-page advice with STEMLINE_CPU_HUGEPAGES=1 (%d)", one);

    sl_mem_keep_freed();
    const size_t bytes = (size_t)24 << 20; /* an encoder context or op buffer size class: under 32 MB */
    const long pages = (long)(bytes / 4096);
    const long first = round_faults(bytes), second = round_faults(bytes), third = round_faults(bytes);
    printf("faults of 24 MB allocated, filled and freed: %ld, then %ld, %ld (%ld pages)\n", first, second, third,
           pages);
    CHECK_MSG(first >= pages / 2, "the first round faults its pages in (%ld)", first);
    CHECK_MSG(second < pages / 10 && third < pages / 10, "freed pages reused: %ld, %ld faults", second, third);
    return sl_test_finish("mem");
}
