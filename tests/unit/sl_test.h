/* Minimal assertion helpers for the unit tests: every CHECK counts, and the
 * program exits non-zero when any failed. */
#ifndef SL_TEST_H
#define SL_TEST_H

#include <math.h>
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
/* A fresh temporary folder (mkdtemp under $TMPDIR); the string is static. */
const char *sl_test_tmpdir(void);

#endif
