#include "sl_test.h"

#include <stdlib.h>
#include <string.h>

int sl_test_failures;
int sl_test_checks;

int sl_test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, sl_test_checks, sl_test_failures);
    if (sl_test_checks == 0) {
        printf("%s: no check ran\n", name);
        return 1;
    }
    return sl_test_failures ? 1 : 0;
}

const char *sl_test_tmpdir(void)
{
    static char buf[512];
    const char *t = getenv("TMPDIR");
    snprintf(buf, sizeof buf, "%s/sltest-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(1);
    }
    return buf;
}
