/* Job runner: the stage timeline of SL_TRACE (run_trace.h). */
#include "run_trace.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
    const char *what;
    long track;
    int thread, tokens;
    double t0, t1, cpu;
    long faults, sleeps, preempted;
} trace_ev;

static atomic_int on;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static trace_ev *evs;
static size_t n_evs, cap_evs;
static int n_threads;
static double base;
static __thread int my_thread; /* 1-based; 0 until it first records */
static __thread int my_tokens;

static double clock_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void trace_start(void)
{
    const char *e = getenv("SL_TRACE");
    pthread_mutex_lock(&mu);
    n_evs = 0;
    base = clock_s(CLOCK_MONOTONIC);
    atomic_store(&on, e && *e);
    pthread_mutex_unlock(&mu);
}

/* The calling thread's minor faults, voluntary and involuntary context switches. */
static void thread_counts(long *faults, long *sleeps, long *preempted)
{
    struct rusage ru;
    if (getrusage(RUSAGE_THREAD, &ru) != 0)
        memset(&ru, 0, sizeof ru);
    *faults = ru.ru_minflt;
    *sleeps = ru.ru_nvcsw;
    *preempted = ru.ru_nivcsw;
}

trace_mark trace_begin(void)
{
    trace_mark m = {0};
    if (atomic_load_explicit(&on, memory_order_relaxed)) {
        m.wall = clock_s(CLOCK_MONOTONIC);
        m.cpu = clock_s(CLOCK_THREAD_CPUTIME_ID);
        m.tokens = my_tokens;
        thread_counts(&m.faults, &m.sleeps, &m.preempted);
    }
    return m;
}

void trace_tokens(int n) { my_tokens += n; }

void trace_end(trace_mark m, const char *what, long track)
{
    if (!atomic_load_explicit(&on, memory_order_relaxed) || m.wall == 0)
        return;
    const double w = clock_s(CLOCK_MONOTONIC), c = clock_s(CLOCK_THREAD_CPUTIME_ID);
    long f, sl, pr;
    thread_counts(&f, &sl, &pr);
    pthread_mutex_lock(&mu);
    if (!my_thread)
        my_thread = ++n_threads;
    if (n_evs == cap_evs) {
        size_t nc = cap_evs ? 2 * cap_evs : 1024;
        trace_ev *p = realloc(evs, nc * sizeof *p);
        if (!p) { /* a timeline with a hole would mislead: none at all */
            atomic_store(&on, 0);
            pthread_mutex_unlock(&mu);
            return;
        }
        evs = p;
        cap_evs = nc;
    }
    evs[n_evs++] = (trace_ev){what,   track,         my_thread,     m.tokens,          m.wall - base, w - base,
                              c - m.cpu, f - m.faults, sl - m.sleeps, pr - m.preempted};
    pthread_mutex_unlock(&mu);
}

int trace_finish(void)
{
    const char *path = getenv("SL_TRACE");
    int rc = 0;
    pthread_mutex_lock(&mu);
    if (atomic_load(&on) && path && *path) {
        FILE *f = fopen(path, "w");
        for (size_t i = 0; f && i < n_evs; i++) {
            const trace_ev *e = &evs[i];
            fprintf(f, "{\"thread\": %d, \"what\": \"%s\", \"track\": %ld, \"t0\": %.6f, \"t1\": %.6f, \"cpu\": %.6f, "
                       "\"tokens\": %d, \"faults\": %ld, \"sleeps\": %ld, \"preempted\": %ld}\n",
                    e->thread, e->what, e->track, e->t0, e->t1, e->cpu, e->tokens, e->faults, e->sleeps, e->preempted);
        }
        if (!f || fclose(f) != 0) {
            fprintf(stderr, "stemline: SL_TRACE: cannot write %s\n", path);
            rc = -1;
        }
    }
    atomic_store(&on, 0);
    free(evs);
    evs = NULL;
    n_evs = cap_evs = 0;
    pthread_mutex_unlock(&mu);
    return rc;
}
