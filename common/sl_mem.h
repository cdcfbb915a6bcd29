/* Process-wide memory settings. */
#ifndef SL_MEM_H
#define SL_MEM_H

/* Keeps big freed blocks for reuse instead of giving them back to the kernel:
 * glibc's malloc serves blocks above its mmap threshold (128 KB at start,
 * raised as such blocks are freed, up to 32 MB) with mmap and unmaps them at
 * free, and trims the heap top beyond its trim threshold; the next track's
 * encoder contexts (FFmpeg's FLAC encoder zeroes about 7 MB per stem), decoder
 * FIFOs and op buffers then fault the same amount of fresh pages in again.
 * After this call blocks up to 32 MB come from the heap and up to 256 MB of
 * free heap top stays mapped. For long-running processes that allocate and
 * free the same sizes over and over (`stemline run`). */
void sl_mem_keep_freed(void);

#endif
