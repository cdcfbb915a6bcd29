/* Shared by the benchmark drivers (bench/bench_*.c): the clocks they time with
 * and the raw float32 input files the Python drivers hand them. */
#ifndef SL_BENCH_UTIL_H
#define SL_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double bench_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wall time (monotonic), seconds. */
static inline double bench_now(void) { return bench_clock(CLOCK_MONOTONIC); }
/* CPU time of the process, every thread, seconds (a shared machine's wall time is noisy). */
static inline double bench_cpu_now(void) { return bench_clock(CLOCK_PROCESS_CPUTIME_ID); }

/* The whole file as little-endian float32 values (a trailing partial value is
 * ignored), their count in *n; the caller frees. NULL with a message on stderr
 * naming prog and path when it cannot be read. */
static inline float *bench_read_f32(const char *prog, const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fseek(f, 0, SEEK_SET);
    *n = bytes > 0 ? (size_t)bytes / 4 : 0;
    float *x = malloc((*n ? *n : 1) * sizeof(float));
    if (!x || fread(x, sizeof(float), *n, f) != *n) {
        fprintf(stderr, "%s: cannot read %s\n", prog, path);
        free(x);
        x = NULL;
    }
    fclose(f);
    return x;
}

#endif
