/* Self-test hooks of the launch emulation (kernels/cuda/emu/sl_emu_selftest.cpp),
 * for tests/unit/test_cuda_emu.c. C interface. */
#ifndef SL_EMU_SELFTEST_H
#define SL_EMU_SELFTEST_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SL_EMU_TEST_BARRIER = 0,   /* shared-memory reversal across a barrier, 2 blocks of 3-D threads: returns 0 when right */
    SL_EMU_TEST_REDUCE,        /* tree reduction with a barrier per level, dynamic shared memory: 0 when right */
    SL_EMU_TEST_DIVERGENT,     /* __syncthreads reached by only some threads: must abort() */
    SL_EMU_TEST_TWO_BARRIERS,  /* threads waiting at different __syncthreads: must abort() */
    SL_EMU_TEST_BAD_LAUNCH,    /* 2048 threads per block: returns SL_EDEVICE */
    SL_EMU_TEST_INDEX,         /* every (block, thread) runs exactly once with the right coordinates: 0 */
    SL_EMU_TEST_SHARED_POISON, /* block 1 reads static shared memory only block 0 wrote: 0 when it reads NaN */
    SL_EMU_TEST_SHARED_STATIC, /* 50 KiB of static shared memory: returns SL_EDEVICE */
    SL_EMU_TEST_SHARED_TOTAL,  /* 8 KiB static + 42 KiB dynamic without opt-in: returns SL_EDEVICE */
    SL_EMU_TEST_SHARED_OPTIN,  /* the same with a 96 KiB opt-in: 0 when the kernel reads back what it wrote */
    SL_EMU_TEST_OPTIN_LIMIT,   /* opt-in to 228 KiB (sm_90 allows 227): returns SL_EDEVICE */
    SL_EMU_TEST_DYN_NO_OPTIN,  /* 64 KiB of dynamic shared memory without opt-in: returns SL_EDEVICE */
    SL_EMU_TEST_FMA,           /* a*b + c in a kernel: 1 when contracted into a fused multiply-add, 0 when not */
    SL_EMU_TEST_COOP,          /* cooperative launch: blocks exchange data across SL_GRID_SYNC, per-block dynamic
                                  shared memory: 0 when right */
    SL_EMU_TEST_COOP_DIVERGENT,/* one block returns while the others wait at SL_GRID_SYNC: must abort() */
    SL_EMU_TEST_GRID_SYNC_PLAIN,/* SL_GRID_SYNC in a launch that is not cooperative: must abort() */
    SL_EMU_TEST_COOP_TOO_BIG   /* 9 blocks of 1024 threads (more than can be live at once): returns SL_EDEVICE */
};

/* Runs one self-test; returns 0 (passed), a negative stemline code, or a
 * positive count of wrong elements. The divergence tests do not return. */
int sl_emu_selftest(int which);

/* The order the emulation runs (block, thread) pairs in, under the current
 * SL_EMU_ORDER: a launch of 4 blocks x 8 threads writes the linear index
 * block * 8 + thread of each in the order they run, before and after a
 * barrier, into log[0..31] and log[32..63]. 0 or a stemline error. */
int sl_emu_selftest_order(int *log);

/* sl_blocks_for(n, per_block, cap) as the kernels see it (SL_EMU_GRID_CAP applies). */
unsigned sl_emu_selftest_blocks(size_t n, unsigned per_block, unsigned cap);

#ifdef __cplusplus
}
#endif

#endif
