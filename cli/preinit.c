/* Before any shared library starts: OpenBLAS is told to start no threads.
 *
 * OpenBLAS (the pthread build Debian ships) starts one server thread per CPU
 * but one while it is loaded, before main, and each spins on sched_yield for
 * about 0.1 s before it sleeps: CPU time outside runtime.threads' budget (a
 * whole CPU while a run has one thread; 63 spinning threads on a 64-core
 * machine). stemline never runs OpenBLAS threaded (kernels/cpu sets it to one
 * thread and splits GEMMs over its own pool), so OPENBLAS_NUM_THREADS=1 is
 * put in the environment OpenBLAS reads when it loads: an ELF preinit
 * function runs before the initialisers of the shared libraries.
 *
 * The C library's initialiser takes the environment array the process
 * started with (after the preinit functions), so the variable goes into that
 * array: in place of the user's OPENBLAS_NUM_THREADS, else in the last
 * entry's place; that entry is put back, and the variable taken out, by a
 * constructor of this program (which runs after those of the libraries). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static char openblas_one[] = "OPENBLAS_NUM_THREADS=1";
static char *lent; /* the entry whose place the variable took, until restore_env */

static void pin_openblas(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)argv;
    size_t n = 0;
    for (; envp && envp[n]; n++)
        if (!strncmp(envp[n], "OPENBLAS_NUM_THREADS=", 21)) {
            envp[n] = openblas_one;
            return;
        }
    if (n == 0)
        return; /* an empty environment: OpenBLAS starts its threads (slower, not wrong) */
    lent = envp[n - 1];
    envp[n - 1] = openblas_one;
}

__attribute__((section(".preinit_array"), used)) static void (*const sl_preinit)(int, char **, char **) = pin_openblas;

__attribute__((constructor)) static void restore_env(void)
{
    if (!lent)
        return;
    unsetenv("OPENBLAS_NUM_THREADS");
    putenv(lent); /* its NAME=VALUE string, where the process started with it */
    lent = NULL;
}
