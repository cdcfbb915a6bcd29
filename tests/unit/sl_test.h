/* Minimal assertion helpers for the unit tests: every CHECK counts, and the
 * program exits non-zero when any failed. */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdio.h>

extern int sl_test_failures;
extern int sl_test_checks;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        sl_test_checks++;                                                                 \
        if (!(cond)) {                                                                    \
            sl_test_failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                                 \
    } while (0)

#define CHECK_MSG(cond, ...)                                                              \
    do {                                                                                  \
        sl_test_checks++;                                                                 \
        if (!(cond)) {                                                                    \
            sl_test_failures++;                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fputc('\n', stderr);                                                          \
        }                                                                                 \
    } while (0)

#define CHECK_NEAR(a, b, tol) CHECK_MSG(fabs((double)(a) - (double)(b)) <= (tol), "%g vs %g (tol %g)", (double)(a), (double)(b), (double)(tol))

/* Prints "N passed, M failed" and returns the exit status. */
int sl_test_finish(const char *name);
/* A fresh temporary folder (mkdtemp under $TMPDIR); the string is static.
 * sl_test_finish removes it (and everything below it) when no check failed. */
const char *sl_test_tmpdir(void);
/* Removes dir and everything below it, unless a check has failed (the files are
 * then kept as evidence); prints a note when it cannot. */
void sl_test_rmdir(const char *dir);

/* Small file helpers. sl_test_slurp: the whole file, NUL-terminated, its size in
 * *len; NULL when it cannot be read; the caller frees. sl_test_spew: writes
 * data[len] to path, silently nothing when it cannot. sl_test_exists: 1 when
 * path exists. sl_test_count_names: the entries of dir whose name contains
 * needle, -1 when dir cannot be read. */
char *sl_test_slurp(const char *path, size_t *len);
void sl_test_spew(const char *path, const void *data, size_t len);
int sl_test_exists(const char *path);
int sl_test_count_names(const char *dir, const char *needle);

/* 1 when the first mapping of this process whose file path contains needle has the
 * VmFlags token flag in /proc/self/smaps ("hg": advised MADV_HUGEPAGE), 0 when it has
 * not, -1 when no such mapping is listed or this system cannot say (no smaps, or no
 * transparent huge pages, where the advice does not exist). */
int sl_test_map_flag(const char *needle, const char *flag);
/* The same for the mapping that holds address p. */
int sl_test_addr_flag(const void *p, const char *flag);

/* A backend buffer of n floats (at least one) holding a copy of host, or NaN
 * everywhere when host is NULL (an element an op leaves unwritten then shows);
 * NULL with sl_lasterr() set when allocation or upload fails. Free with sl_op_free. */
struct sl_op_ctx;
float *sl_test_dev_buf(struct sl_op_ctx *ctx, const float *host, size_t n);

#endif
