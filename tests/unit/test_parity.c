/* Parity of every op on every non-reference backend present against the CPU
 * backend (tests/unit/parity_impl.h): "cuda-emu" always (the CUDA kernels run
 * by the launch emulation, FFTs by the CPU reference), "cuda" when a device
 * answers (else printed SKIPPED), including the hpss and melstats models run
 * unchanged on each. The independent double-precision references of every
 * backend are in test_ops.c. */
#include "parity_impl.h"

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    pr_seed("test_parity");
    parity_run("cuda-emu", 0);
    parity_run("cuda", 0);
    return sl_test_finish("parity");
}
