#include "common/sl_str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *sl_strcat3(const char *a, const char *b, const char *c)
{
    const size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}
