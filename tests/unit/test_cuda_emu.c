/* The launch emulation behind backend "cuda-emu" (kernels/cuda/emu/):
 *  - barrier ordering, per-block shared memory, dynamic shared memory, 3-D
 *    indices: each (block, thread) runs once with the right coordinates;
 *  - a launch a real device would refuse is an SL_EDEVICE error naming the kernel;
 *  - a __syncthreads reached by only part of a block, or threads waiting at
 *    different barriers, abort the process with a message (checked in a child). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "kernels/cuda/emu/sl_emu_selftest.h"
#include "sl_test.h"

/* Runs selftest `which` in a child; returns its stderr (static) and whether it aborted. */
static const char *run_child(int which, int *aborted)
{
    static char buf[4096];
    int fd[2];
    buf[0] = 0;
    *aborted = 0;
    if (pipe(fd) != 0)
        return buf;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 2);
        close(fd[0]);
        close(fd[1]);
        sl_emu_selftest(which);
        _exit(0);
    }
    close(fd[1]);
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fd[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = 0;
    close(fd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    *aborted = WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT;
    return buf;
}

int main(void)
{
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_BARRIER) == 0, "barrier reversal");
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_REDUCE) == 0, "tree reduction in dynamic shared memory");
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_INDEX) == 0, "index coverage");
    int rc = sl_emu_selftest(SL_EMU_TEST_BAD_LAUNCH);
    CHECK_MSG(rc == SL_EDEVICE && strstr(sl_lasterr(), "index_kernel"), "bad launch: %d %s", rc, sl_lasterr());
    printf("bad launch: %s\n", sl_lasterr());

    int aborted;
    const char *msg = run_child(SL_EMU_TEST_DIVERGENT, &aborted);
    printf("divergent barrier: %s", msg);
    CHECK_MSG(aborted && strstr(msg, "divergent_kernel") && strstr(msg, "reached by 27 of 32"),
              "divergent barrier must abort naming the kernel (got: %s)", msg);
    msg = run_child(SL_EMU_TEST_TWO_BARRIERS, &aborted);
    printf("two barriers: %s", msg);
    CHECK_MSG(aborted && strstr(msg, "different barriers"), "mismatched barriers must abort (got: %s)", msg);
    return sl_test_finish("cuda_emu");
}
