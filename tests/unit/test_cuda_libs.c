/* The CUDA backend opens its libraries when a CUDA context first needs them
 * (kernels/cuda/cu_dl.h), not at start: a process of the real CUDA build maps
 * no libcudart, libcufft, libcudnn or libcublasLt until then (the runtime is
 * linked statically), and the loaders then map the library or fail with an
 * error naming it. Needs no GPU: opening a library talks to no device. In a
 * build without the CUDA backend only the first check runs. */
#include <stdio.h>
#include <string.h>

#include "common/sl_error.h"
#include "sl_test.h"

#if SL_HAVE_CUDA
int sl_cuda_cufft_load(void);
int sl_cuda_cudnn_load(void);
#endif

/* 1 when a mapping of this process names a file whose name starts with lib. */
static int mapped(const char *lib)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        const char *slash = strrchr(line, '/');
        found = slash && !strncmp(slash + 1, lib, strlen(lib));
    }
    fclose(f);
    return found;
}

#if SL_HAVE_CUDA
/* load() either maps lib or fails with an error that names it. */
static void check_load(int (*load)(void), const char *lib)
{
    const int rc = load();
    if (rc == 0) {
        CHECK_MSG(mapped(lib) == 1, "%s loaded but not mapped", lib);
        CHECK(load() == 0); /* once per process, then the same answer */
    } else {
        printf("%s not loadable here: %s\n", lib, sl_lasterr());
        CHECK(rc == SL_EUNSUPPORTED);
        CHECK_MSG(strstr(sl_lasterr(), lib) != NULL, "the error names %s: %s", lib, sl_lasterr());
        CHECK(mapped(lib) == 0);
    }
}
#endif

int main(void)
{
    CHECK(mapped("libc.so") == 1); /* the check itself sees mappings */
    const char *libs[] = {"libcudart", "libcufft", "libcudnn", "libcublas"};
    for (size_t i = 0; i < sizeof libs / sizeof *libs; i++)
        CHECK_MSG(mapped(libs[i]) == 0, "%s is mapped at start", libs[i]);
#if SL_HAVE_CUDA
    check_load(sl_cuda_cufft_load, "libcufft.so.");
#if SL_HAVE_CUDNN
    check_load(sl_cuda_cudnn_load, "libcudnn.so.");
#endif
    CHECK(mapped("libcudart") == 0); /* linked statically: never a library of its own */
#else
    printf("built without the CUDA backend: the loaders are not checked\n");
#endif
    return sl_test_finish("cuda_libs");
}
