/* Parity of the real CUDA backend (cuFFT included) against the CPU backend, on
 * the shapes of tests/unit/test_parity.c plus large ones (several cuFFT chunks,
 * full-length tracks, the models on seconds of audio). Label `gpu`; exits 77
 * (ctest: skipped) with "skipped: no CUDA device" where no device answers. */
#include "tests/unit/parity_impl.h"

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, "cuda") < 0) {
        printf("skipped: no CUDA device (%s)\n", sl_lasterr());
        return 77;
    }
    sl_op_ctx_close(ctx);
    pr_seed("test_cuda_parity");
    parity_run("cuda", 1);
    return sl_test_finish("cuda_parity");
}
