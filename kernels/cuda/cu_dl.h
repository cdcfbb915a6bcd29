// The CUDA libraries the backend calls (cuFFT, cuDNN, cuBLASLt) are opened at
// their first use (dlopen), not linked: a process that never makes a CUDA
// context (`stemline --version`, CPU jobs, search) maps none of them, and the
// CUDA runtime is linked statically (it opens the driver, libcuda, itself at
// its first call). Each library's entry points live in a table of function
// pointers filled once per process (SL_CU_LOADER below, under pthread_once); the
// cudamock build fills the same tables with its stand-ins' functions, so the
// call sites are one text for both builds.
#ifndef SL_CU_DL_H
#define SL_CU_DL_H

#include "sl_cuda.h"
#if SL_CUDA_API
#include <pthread.h>
#include <stddef.h>

#define SL_CU_STR_(x) #x
#define SL_CU_STR(x) SL_CU_STR_(x)

// One entry point to resolve: its name and where the address goes.
struct sl_cu_sym {
    const char *name;
    void **slot;
};

// A library's entry points are an X-macro LIST(X, table, prefix) that expands
// X(table, prefix, f) for each entry point prefix##f, member f of the table:
#define SL_CU_MEMBER(table, prefix, f) decltype(&prefix##f) f;
#define SL_CU_SYM(table, prefix, f) {#prefix #f, reinterpret_cast<void **>(&(table).f)},
#define SL_CU_SET(table, prefix, f) (table).f = &prefix##f;
// struct { SL_CU_TABLE(LIST, prefix) } table; the members of such a table
#define SL_CU_TABLE(LIST, prefix) LIST(SL_CU_MEMBER, _, prefix)

// SL_CU_LOADER(fn, table, prefix, LIST, soname, what): defines int fn(void),
// which loads soname once per process (real build; cudamock: its stand-ins)
// and fills table: 0, or SL_EUNSUPPORTED "what: <why, naming soname>".
#if defined(__CUDACC__)
#define SL_CU_FILL_(table, prefix, LIST, soname, err)                                       \
    const sl_cu_sym syms_[] = {LIST(SL_CU_SYM, table, prefix)};                             \
    sl_cuda_lib_load(soname, syms_, sizeof syms_ / sizeof *syms_, err, sizeof err);
#else
#define SL_CU_FILL_(table, prefix, LIST, soname, err) LIST(SL_CU_SET, table, prefix)
#endif
#define SL_CU_LOADER(fn, table, prefix, LIST, soname, what)                                 \
    static pthread_once_t fn##_once_ = PTHREAD_ONCE_INIT;                                   \
    static char fn##_err_[512]; /* empty when loaded */                                     \
    static void fn##_fill_(void) { SL_CU_FILL_(table, prefix, LIST, soname, fn##_err_) }    \
    extern "C" int fn(void)                                                                 \
    {                                                                                       \
        pthread_once(&fn##_once_, fn##_fill_);                                              \
        return fn##_err_[0] ? sl_seterr(SL_EUNSUPPORTED, "%s: %s", what, fn##_err_) : 0;    \
    }

extern "C" {
// Opens lib (dlopen, RTLD_NOW | RTLD_LOCAL) and resolves every sym: 0, or -1
// with err saying why, naming lib (the loader's message, or the missing entry
// point). Real CUDA build only; the caller runs it once (pthread_once).
int sl_cuda_lib_load(const char *lib, const sl_cu_sym *syms, size_t n, char *err, size_t err_size);
}
#endif

#endif
