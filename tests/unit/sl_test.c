#include "sl_test.h"

#include "kernels/ops.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int sl_test_failures;
int sl_test_checks;

/* Folders sl_test_tmpdir made in this process: sl_test_finish removes those
   still there when every check passed (kept for inspection on a failure). */
static char made_dirs[16][512];
static int n_made_dirs;

int sl_test_finish(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, sl_test_checks, sl_test_failures);
    for (int i = 0; i < n_made_dirs; i++)
        if (sl_test_exists(made_dirs[i]))
            sl_test_rmdir(made_dirs[i]);
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
    if (n_made_dirs < (int)(sizeof made_dirs / sizeof made_dirs[0]))
        snprintf(made_dirs[n_made_dirs++], sizeof made_dirs[0], "%s", buf);
    return buf;
}

void sl_test_rmdir(const char *dir)
{
    if (sl_test_failures)
        return;
    char cmd[1100];
    if (strlen(dir) > 1000 || strchr(dir, '\'')) {
        printf("note: not removing %s (name too long or quoted)\n", dir);
        return;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%.1000s'", dir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", dir);
}

char *sl_test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b)
        b[n] = 0;
    fclose(f);
    *len = (size_t)n;
    return b;
}

void sl_test_spew(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

int sl_test_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int sl_test_count_names(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (strstr(de->d_name, needle))
            n++;
    closedir(d);
    return n;
}

/* The VmFlags token flag of the first mapping whose first line match() accepts (see sl_test_map_flag). */
static int map_flag_of(int (*match)(const char *line, const void *arg), const void *arg, const char *flag)
{
    if (!sl_test_exists("/sys/kernel/mm/transparent_hugepage/enabled"))
        return -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return -1;
    char line[4096];
    int in = 0, found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strchr(line, '-') < strchr(line, ' ') && line[0] != 'V') /* a mapping's first line */
            in = match(line, arg);
        else if (in && !strncmp(line, "VmFlags:", 8)) {
            found = 0;
            for (char *t = strtok(line + 8, " \n"); t; t = strtok(NULL, " \n"))
                found |= !strcmp(t, flag);
        }
    }
    fclose(f);
    return found;
}

static int line_names(const char *line, const void *needle) { return strstr(line, needle) != NULL; }

static int line_holds(const char *line, const void *p)
{
    unsigned long long lo, hi;
    return sscanf(line, "%llx-%llx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi;
}

int sl_test_map_flag(const char *needle, const char *flag) { return map_flag_of(line_names, needle, flag); }

int sl_test_addr_flag(const void *p, const char *flag) { return map_flag_of(line_holds, p, flag); }

float *sl_test_dev_buf(sl_op_ctx *ctx, const float *host, size_t n)
{
    void *p = NULL;
    if (sl_op_alloc(ctx, &p, (n ? n : 1) * sizeof(float)) < 0)
        return NULL;
    float *tmp = NULL;
    if (!host) {
        tmp = malloc((n ? n : 1) * sizeof(float));
        for (size_t i = 0; i < n; i++)
            tmp[i] = NAN;
        host = tmp;
    }
    int rc = sl_op_upload(ctx, p, host, n * sizeof(float));
    free(tmp);
    if (rc < 0) {
        sl_op_free(ctx, p);
        return NULL;
    }
    return p;
}
