#include "sl_mem.h"

#include <malloc.h>

void sl_mem_keep_freed(void)
{
    mallopt(M_MMAP_THRESHOLD, 32 << 20); /* glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit) */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
}
