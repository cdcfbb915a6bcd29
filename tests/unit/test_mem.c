/* sl_mem_keep_freed: a big block freed and allocated again reuses the pages
 * already faulted in (glibc alone maps the first one fresh, unmaps it at free,
 * and serves the next from fresh heap pages). Counts minor page faults
 * (getrusage), not time. */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/sl_mem.h"
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

int main(void)
{
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
