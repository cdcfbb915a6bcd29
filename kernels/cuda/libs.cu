// The shared-library loading of cu_dl.h (real CUDA build: dlopen / dlsym).
#include "cu_dl.h"
#if SL_CUDA_API && defined(__CUDACC__)
#include <dlfcn.h>
#include <stdio.h>

extern "C" int sl_cuda_lib_load(const char *lib, const sl_cu_sym *syms, size_t n, char *err, size_t err_size)
{
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(err, err_size, "%s", why ? why : lib);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(*syms[i].slot = dlsym(h, syms[i].name))) {
            snprintf(err, err_size, "%s: no %s", lib, syms[i].name);
            return -1;
        }
    }
    err[0] = '\0';
    return 0;
}
#endif
