/* Self-test hooks of the launch emulation (kernels/cuda/emu/sl_emu_selftest.cpp),
 * for tests/unit/test_cuda_emu.c. C interface. */
#ifndef SL_EMU_SELFTEST_H
#define SL_EMU_SELFTEST_H

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SL_EMU_TEST_BARRIER = 0,   /* shared-memory reversal across a barrier, 2 blocks of 3-D threads: returns 0 when right */
    SL_EMU_TEST_REDUCE,        /* tree reduction with a barrier per level, dynamic shared memory: 0 when right */
    SL_EMU_TEST_DIVERGENT,     /* __syncthreads reached by only some threads: must abort() */
    SL_EMU_TEST_TWO_BARRIERS,  /* threads waiting at different __syncthreads: must abort() */
    SL_EMU_TEST_BAD_LAUNCH,    /* 2048 threads per block: returns SL_EDEVICE */
    SL_EMU_TEST_INDEX          /* every (block, thread) runs exactly once with the right coordinates: 0 */
};

/* Runs one self-test; returns 0 (passed), a negative stemline code, or a
 * positive count of wrong elements. The divergence tests do not return. */
int sl_emu_selftest(int which);

#ifdef __cplusplus
}
#endif

#endif
