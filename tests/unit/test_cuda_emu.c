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

/* SL_EMU_ORDER: ascending, descending and shuffled schedules of threads and
 * blocks, each running every (block, thread) exactly once per phase; the
 * correct kernels give the same results under each. */
static void schedules(void)
{
    static const char *const orders[] = {"asc", "desc", "random"};
    for (int o = 0; o < 3; o++) {
        setenv("SL_EMU_ORDER", orders[o], 1);
        int log[64];
        memset(log, 0xFF, sizeof log);
        CHECK_MSG(sl_emu_selftest_order(log) == 0, "%s: %s", orders[o], sl_lasterr());
        int seen[2][32] = {{0}}, asc = 1, desc = 1, ok = 1;
        for (int ph = 0; ph < 2; ph++)
            for (int i = 0; i < 32; i++) {
                const int v = log[32 * ph + i];
                if (v < 0 || v >= 32 || seen[ph][v]++)
                    ok = 0;
                else {
                    asc &= v == i;
                    desc &= v == 31 - i;
                }
            }
        CHECK_MSG(ok, "%s: every (block, thread) once per phase", orders[o]);
        if (o == 0)
            CHECK_MSG(asc, "asc: threadIdx and blockIdx order");
        if (o == 1)
            CHECK_MSG(desc, "desc: reversed");
        if (o == 2) {
            CHECK_MSG(!asc && !desc, "random: neither ascending nor descending");
            /* the two phases of a block are shuffled independently */
            CHECK_MSG(memcmp(log, log + 32, 32 * sizeof(int)) != 0, "random: a fresh order after the barrier");
        }
        CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_BARRIER) == 0, "%s: barrier reversal", orders[o]);
        CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_REDUCE) == 0, "%s: tree reduction in dynamic shared memory", orders[o]);
        CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_INDEX) == 0, "%s: index coverage", orders[o]);
        CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_SHARED_POISON) == 0, "%s: static shared memory poisoned per block", orders[o]);
        CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_COOP) == 0, "%s: cooperative launch, data across the grid sync", orders[o]);
    }
    unsetenv("SL_EMU_ORDER");

    /* SL_EMU_GRID_CAP lowers the caps of grid-stride grids (below 2^30) only */
    CHECK(sl_emu_selftest_blocks(100000, 256, 1u << 20) == 391);
    setenv("SL_EMU_GRID_CAP", "2", 1);
    CHECK(sl_emu_selftest_blocks(100000, 256, 1u << 20) == 2);
    CHECK(sl_emu_selftest_blocks(100000, 256, 1u << 30) == 391);
    CHECK(sl_emu_selftest_blocks(1, 256, 1u << 20) == 1);
    unsetenv("SL_EMU_GRID_CAP");
}

int main(void)
{
    schedules();
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_BARRIER) == 0, "barrier reversal");
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_REDUCE) == 0, "tree reduction in dynamic shared memory");
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_INDEX) == 0, "index coverage");
    int rc = sl_emu_selftest(SL_EMU_TEST_BAD_LAUNCH);
    CHECK_MSG(rc == SL_EDEVICE && strstr(sl_lasterr(), "index_kernel"), "bad launch: %d %s", rc, sl_lasterr());
    printf("bad launch: %s\n", sl_lasterr());

    /* Shared memory: poisoned at block start, counted against the sm_90 limits. */
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_SHARED_POISON) == 0,
              "static shared memory read before any write in the block must read NaN");
    rc = sl_emu_selftest(SL_EMU_TEST_SHARED_STATIC);
    CHECK_MSG(rc == SL_EDEVICE && strstr(sl_lasterr(), "big_static_kernel") && strstr(sl_lasterr(), "51200 bytes of static"),
              "50 KiB of static shared memory: %d %s", rc, sl_lasterr());
    printf("static shared memory: %s\n", sl_lasterr());
    rc = sl_emu_selftest(SL_EMU_TEST_SHARED_TOTAL);
    CHECK_MSG(rc == SL_EDEVICE && strstr(sl_lasterr(), "mixed_shared_kernel") && strstr(sl_lasterr(), "no opt-in"),
              "static + dynamic shared memory past 48 KiB without opt-in: %d %s", rc, sl_lasterr());
    printf("static + dynamic shared memory: %s\n", sl_lasterr());
    rc = sl_emu_selftest(SL_EMU_TEST_SHARED_OPTIN);
    CHECK_MSG(rc == 0, "static + dynamic shared memory within the opt-in: %d %s", rc, sl_lasterr());
    rc = sl_emu_selftest(SL_EMU_TEST_OPTIN_LIMIT);
    CHECK_MSG(rc == SL_EDEVICE && strstr(sl_lasterr(), "232448"), "opt-in past 227 KiB: %d %s", rc, sl_lasterr());
    rc = sl_emu_selftest(SL_EMU_TEST_DYN_NO_OPTIN);
    CHECK_MSG(rc == SL_EDEVICE && strstr(sl_lasterr(), "reduce_kernel") && strstr(sl_lasterr(), "dynamic"),
              "64 KiB of dynamic shared memory without opt-in: %d %s", rc, sl_lasterr());

    /* the default build does not contract a*b + c (kernels/README.md: unit.parity.fma does) */
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_FMA) == 0, "the emulation (not its fma build) must round a*b before + c");

    int aborted;
    const char *msg = run_child(SL_EMU_TEST_DIVERGENT, &aborted);
    printf("divergent barrier: %s", msg);
    CHECK_MSG(aborted && strstr(msg, "divergent_kernel") && strstr(msg, "reached by 27 of 32"),
              "divergent barrier must abort naming the kernel (got: %s)", msg);
    msg = run_child(SL_EMU_TEST_TWO_BARRIERS, &aborted);
    printf("two barriers: %s", msg);
    CHECK_MSG(aborted && strstr(msg, "different barriers"), "mismatched barriers must abort (got: %s)", msg);
    /* cooperative launches: every block live at once, SL_GRID_SYNC their barrier */
    rc = sl_emu_selftest(SL_EMU_TEST_COOP_TOO_BIG);
    CHECK_MSG(rc == SL_EDEVICE && strstr(sl_lasterr(), "cannot all be resident"), "too big a cooperative grid: %d %s",
              rc, sl_lasterr());
    msg = run_child(SL_EMU_TEST_COOP_DIVERGENT, &aborted);
    printf("grid sync reached by some blocks: %s", msg);
    CHECK_MSG(aborted && strstr(msg, "coop_divergent_kernel") && strstr(msg, "returned while others wait at a grid sync"),
              "a block returning before the grid sync must abort (got: %s)", msg);
    msg = run_child(SL_EMU_TEST_GRID_SYNC_PLAIN, &aborted);
    printf("grid sync in a plain launch: %s", msg);
    CHECK_MSG(aborted && strstr(msg, "not cooperative"), "a grid sync outside a cooperative launch must abort (got: %s)",
              msg);
    return sl_test_finish("cuda_emu");
}
