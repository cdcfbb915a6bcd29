/* The compute thread pool: every index runs exactly once, on the number of
 * threads asked for (counted in /proc/self/task and by the pool's own peak),
 * nested loops run serially, and loops of varying sizes back to back never let
 * a late helper run into the next loop. A budget with one token per CPU ties
 * each token to a CPU (sl_budget_pin): holders of different tokens never share
 * one, a thread without tokens and a pool helper made by a holder run anywhere. */
#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "common/sl_pool.h"
#include "sl_test.h"

static int task_count(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

typedef struct {
    atomic_int *hits;
    int threads;
    atomic_int bad_tid;
} count_arg;

static void count_body(void *v, size_t i, int tid)
{
    count_arg *a = v;
    atomic_fetch_add(&a->hits[i], 1);
    if (tid < 0 || tid >= a->threads)
        atomic_fetch_add(&a->bad_tid, 1);
}

static void check_exactly_once(sl_pool *p, int threads, size_t n)
{
    count_arg a = {calloc(n ? n : 1, sizeof(atomic_int)), threads, 0};
    sl_pool_for(p, n, count_body, &a);
    int wrong = 0;
    for (size_t i = 0; i < n; i++)
        wrong += atomic_load(&a.hits[i]) != 1;
    CHECK_MSG(wrong == 0, "%d of %zu indices did not run exactly once (threads %d)", wrong, n, threads);
    CHECK_MSG(atomic_load(&a.bad_tid) == 0, "tid out of range (threads %d)", threads);
    free(a.hits);
}

/* Every body waits until `want` bodies run at once (or 5 s pass): the peak must
 * then be exactly the pool's thread count. */
typedef struct {
    atomic_int in;
    int want;
} meet_arg;

static void meet_body(void *v, size_t i, int tid)
{
    meet_arg *a = v;
    atomic_fetch_add(&a->in, 1);
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        sched_yield();
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (atomic_load(&a->in) < a->want && (t.tv_sec - t0.tv_sec) < 5);
}

typedef struct {
    sl_pool *p;
    atomic_int mismatched_tid, inner_sum;
} nest_arg;

typedef struct {
    int tid;
    atomic_int *sum;
    atomic_int *mismatch;
} inner_arg;

static void inner_sum_body(void *v, size_t i, int tid)
{
    inner_arg *a = v;
    atomic_fetch_add(a->sum, (int)i + 1);
    if (tid != a->tid)
        atomic_fetch_add(a->mismatch, 1);
}

static void nest_body(void *v, size_t i, int tid)
{
    nest_arg *a = v;
    inner_arg in = {tid, &a->inner_sum, &a->mismatched_tid};
    sl_pool_for(a->p, 10, inner_sum_body, &in); /* 1 + ... + 10 = 55, serially in this thread */
}

/* Threads of a budget of 2 taking 1 or 2 tokens: never more than 2 tokens held. */
typedef struct {
    sl_budget *b;
    atomic_int held, worst;
} budget_state;

typedef struct {
    budget_state *st;
    int id;
} budget_arg;

static void *budget_thread(void *v)
{
    budget_arg *a = v;
    budget_state *st = a->st;
    for (int i = 0; i < 300; i++) {
        const int n = (i + a->id) % 3 == 0 ? 2 : 1;
        sl_budget_acquire(st->b, n);
        int now = atomic_fetch_add(&st->held, n) + n;
        int w = atomic_load(&st->worst);
        while (now > w && !atomic_compare_exchange_weak(&st->worst, &w, now))
            ;
        sched_yield();
        atomic_fetch_sub(&st->held, n);
        sl_budget_release(st->b, n);
    }
    return NULL;
}

static void test_budget(void)
{
    budget_state st = {NULL, 0, 0};
    CHECK(sl_budget_create(&st.b, 0) == SL_EINVAL && !st.b);
    CHECK(sl_budget_create(&st.b, 2) == 0 && st.b);
    budget_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (budget_arg){&st, i};
        pthread_create(&th[i], NULL, budget_thread, &args[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_MSG(atomic_load(&st.worst) <= 2, "budget of 2: %d tokens held at once", atomic_load(&st.worst));
    CHECK(sl_budget_peak(st.b) >= 1 && sl_budget_peak(st.b) <= 2);
    sl_budget_acquire(st.b, 5); /* clamped to the budget */
    CHECK(sl_budget_peak(st.b) == 2);
    sl_budget_release(st.b, 5);
    sl_budget_free(st.b);
    sl_budget_acquire(NULL, 1);
    sl_budget_release(NULL, 1);
    CHECK(sl_budget_peak(NULL) == 0);
}

/* Waiters for tokens are woken one at a time, in turn: a release wakes only the
 * waiter whose turn it is, and only when its tokens are free (six threads
 * queued behind a held token; waking all of them at each release, as a
 * broadcast does, wakes about 15 that cannot go). A waiter for 2 tokens is not
 * overtaken by a later waiter for 1. */
typedef struct {
    sl_budget *b;
    int n;
    atomic_int *order, *got;
    int id;
} queue_arg;

static void *queue_thread(void *v)
{
    queue_arg *a = v;
    sl_budget_acquire(a->b, a->n);
    a->order[atomic_fetch_add(a->got, 1)] = a->id;
    sl_budget_release(a->b, a->n);
    return NULL;
}

/* Waits until n threads wait for b's tokens. */
static void queued(sl_budget *b, int n)
{
    while (sl_budget_waiting(b) < n)
        nanosleep(&(struct timespec){0, 1000000L}, NULL);
}

static void test_budget_turns(void)
{
    sl_budget *b = NULL;
    CHECK(sl_budget_create(&b, 1) == 0);
    atomic_int order[8] = {0}, got = 0;
    queue_arg args[6];
    pthread_t th[6];
    sl_budget_acquire(b, 1);
    for (int i = 0; i < 6; i++) {
        args[i] = (queue_arg){b, 1, order, &got, i};
        pthread_create(&th[i], NULL, queue_thread, &args[i]);
        queued(b, i + 1); /* each queued before the next: tickets in thread order */
    }
    CHECK(atomic_load(&got) == 0);
    sl_budget_release(b, 1);
    for (int i = 0; i < 6; i++)
        pthread_join(th[i], NULL);
    unsigned long woken, futile;
    sl_budget_wakeups(b, &woken, &futile);
    CHECK_MSG(woken >= 6 && futile <= 1, "6 waiters served: %lu wake-ups, %lu of them futile (expected 0)", woken,
              futile);
    for (int i = 0; i < 6; i++)
        CHECK_MSG(order[i] == i, "waiter %d served %d-th", order[i], i);
    sl_budget_free(b);

    /* budget 2, both held: A waits for 2, then B for 1; one token back is not A's 2, and B stays behind A */
    CHECK(sl_budget_create(&b, 2) == 0);
    atomic_store(&got, 0);
    sl_budget_acquire(b, 2);
    queue_arg a2 = {b, 2, order, &got, 10}, b1 = {b, 1, order, &got, 11};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, queue_thread, &a2);
    queued(b, 1);
    pthread_create(&tb, NULL, queue_thread, &b1);
    queued(b, 2);
    sl_budget_release(b, 1);
    nanosleep(&(struct timespec){0, 30000000L}, NULL); /* time for a wrong wake-up to show */
    CHECK_MSG(atomic_load(&got) == 0, "one token free: %d waiters went (A needs 2, B is behind A)", atomic_load(&got));
    sl_budget_release(b, 1);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(atomic_load(&got) == 2 && order[0] == 10 && order[1] == 11);
    sl_budget_wakeups(b, &woken, &futile);
    CHECK_MSG(futile <= 1, "%lu futile wake-ups of 2 waiters", futile);
    CHECK(sl_budget_try_acquire(b, 2) == 2);
    sl_budget_release(b, 2);
    sl_budget_free(b);
    sl_budget_wakeups(NULL, &woken, &futile);
    CHECK(woken == 0 && futile == 0 && sl_budget_waiting(NULL) == 0);
}

/* A pool of 4 bound to a budget of 4 tokens, its driver holding 1: a loop runs
 * on 1 thread plus one per token free at its start, every index exactly once,
 * the borrowed tokens given back; the time tokens are held is accounted. */
static void test_borrow(void)
{
    sl_budget *b = NULL;
    sl_pool *p = NULL;
    CHECK(sl_budget_create(&b, 4) == 0 && sl_pool_create(&p, 4) == 0);
    CHECK(sl_budget_try_acquire(b, 0) == 0 && sl_budget_try_acquire(NULL, 2) == 0);
    sl_pool_set_budget(p, b, 1);
    sl_budget_acquire(b, 1); /* the driver's own token */
    /* two more held elsewhere: one token free, so at most 2 threads */
    sl_budget_acquire(b, 2);
    meet_arg m = {0, 2};
    sl_pool_for(p, 4, meet_body, &m);
    CHECK_MSG(sl_pool_peak(p) == 2, "one free token: peak %d, expected 2", sl_pool_peak(p));
    CHECK_MSG(sl_budget_peak(b) == 4, "budget peak %d", sl_budget_peak(b));
    check_exactly_once(p, 4, 1000);
    /* every token taken: the loop runs in the driver alone */
    sl_budget_acquire(b, 1);
    CHECK(sl_budget_try_acquire(b, 3) == 0);
    check_exactly_once(p, 4, 1000);
    sl_budget_release(b, 3);
    /* the borrowed tokens came back: three free again, so all four threads meet */
    CHECK(sl_budget_try_acquire(b, 8) == 3);
    sl_budget_release(b, 3);
    meet_arg all = {0, 4};
    sl_pool_for(p, 4, meet_body, &all);
    CHECK_MSG(sl_pool_peak(p) == 4, "three free tokens: peak %d, expected 4", sl_pool_peak(p));
    check_exactly_once(p, 4, 100000);
    sl_budget_release(b, 1);
    /* held time: one token held over a sleep of 20 ms adds at least that */
    const double h0 = sl_budget_held_s(b);
    sl_budget_acquire(b, 1);
    nanosleep(&(struct timespec){0, 20000000L}, NULL);
    sl_budget_release(b, 1);
    const double h1 = sl_budget_held_s(b);
    CHECK_MSG(h1 - h0 >= 0.019, "held %.4f s over a 20 ms hold", h1 - h0);
    CHECK(sl_budget_held_s(NULL) == 0);
    sl_pool_destroy(p);
    sl_budget_free(b);
}

/* ---- tokens tied to CPUs ---- */

typedef struct {
    sl_budget *b;
    pthread_barrier_t *bar;
    cpu_set_t held, after;
} pin_arg;

static void *pin_thread(void *v)
{
    pin_arg *a = v;
    sl_budget_acquire(a->b, 1);
    sched_getaffinity(0, sizeof a->held, &a->held);
    pthread_barrier_wait(a->bar); /* every thread holds its token at once */
    sl_budget_release(a->b, 1);
    sched_getaffinity(0, sizeof a->after, &a->after);
    return NULL;
}

typedef struct {
    meet_arg m;
    int cpus[2];
} pin_loop_arg;

static void pin_loop_body(void *v, size_t i, int tid)
{
    pin_loop_arg *a = v;
    cpu_set_t s;
    if (tid < 2 && sched_getaffinity(0, sizeof s, &s) == 0)
        a->cpus[tid] = CPU_COUNT(&s);
    meet_body(&a->m, i, tid);
}

static int affinity_is(const cpu_set_t *want)
{
    cpu_set_t s;
    return sched_getaffinity(0, sizeof s, &s) == 0 && CPU_EQUAL(&s, want);
}

static void test_pin(void)
{
    cpu_set_t all;
    CHECK(sched_getaffinity(0, sizeof all, &all) == 0);
    const int n = CPU_COUNT(&all);
    sl_budget *b = NULL;
    CHECK(sl_budget_pin(NULL) == 0);
    /* more tokens than CPUs: not tied, a holder runs anywhere */
    CHECK(sl_budget_create(&b, n + 1) == 0);
    CHECK(sl_budget_pin(b) == 0);
    sl_budget_acquire(b, 1);
    CHECK_MSG(affinity_is(&all), "a token of an untied budget changed the thread's CPUs");
    sl_budget_release(b, 1);
    sl_budget_free(b);
    if (n < 2 || n > 64) {
        printf("test_pool: %d CPUs: tokens tied to CPUs not tested (2..64 needed)\n", n);
        return;
    }
    CHECK(sl_budget_create(&b, n) == 0);
    CHECK(sl_budget_pin(b) == 1);
    /* n threads holding one token each at once: one CPU each, all different */
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)n);
    pin_arg *a = calloc((size_t)n, sizeof *a);
    pthread_t *th = calloc((size_t)n, sizeof *th);
    for (int i = 0; i < n; i++) {
        a[i].b = b;
        a[i].bar = &bar;
        CHECK(pthread_create(&th[i], NULL, pin_thread, &a[i]) == 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    cpu_set_t seen;
    CPU_ZERO(&seen);
    for (int i = 0; i < n; i++) {
        CHECK_MSG(CPU_COUNT(&a[i].held) == 1, "holder %d on %d CPUs, expected 1", i, CPU_COUNT(&a[i].held));
        cpu_set_t both;
        CPU_AND(&both, &a[i].held, &seen);
        CHECK_MSG(CPU_COUNT(&both) == 0, "holder %d on a CPU another holder had", i);
        CPU_AND(&both, &a[i].held, &all);
        CHECK(CPU_EQUAL(&both, &a[i].held));
        CPU_OR(&seen, &seen, &a[i].held);
        CHECK_MSG(CPU_EQUAL(&a[i].after, &all), "thread %d not on every CPU again after giving its token back", i);
    }
    CHECK(CPU_EQUAL(&seen, &all));
    pthread_barrier_destroy(&bar);
    free(a);
    free(th);
    /* two tokens: two CPUs; tokens borrowed for a loop's helpers leave the caller where it is */
    sl_budget_acquire(b, 2);
    cpu_set_t two;
    CHECK(sched_getaffinity(0, sizeof two, &two) == 0 && CPU_COUNT(&two) == 2);
    CHECK(sl_budget_try_acquire(b, n) == n - 2);
    CHECK(affinity_is(&two));
    sl_budget_release(b, n - 2);
    CHECK(affinity_is(&two));
    sl_budget_release(b, 1);
    CHECK(sched_getaffinity(0, sizeof two, &two) == 0 && CPU_COUNT(&two) == 1);
    sl_budget_release(b, 1);
    CHECK(affinity_is(&all));
    /* a pool made by a thread on one token: its helper runs on every CPU */
    sl_budget_acquire(b, 1);
    sl_pool *p = NULL;
    CHECK(sl_pool_create(&p, 2) == 0);
    pin_loop_arg la = {{0, 2}, {0, 0}};
    sl_pool_for(p, 2, pin_loop_body, &la);
    CHECK_MSG(la.cpus[0] == 1 && la.cpus[1] == n, "loop on a tied token: caller on %d CPUs, helper on %d (expected 1, %d)",
              la.cpus[0], la.cpus[1], n);
    sl_pool_destroy(p);
    sl_budget_release(b, 1);
    CHECK(affinity_is(&all));
    sl_budget_free(b);
}

int main(void)
{
    test_budget();
    test_budget_turns();
    test_borrow();
    test_pin();
    /* ranges cover [0, n) without gaps or overlaps */
    for (size_t n = 0; n < 50; n++)
        for (size_t parts = 1; parts < 9; parts++) {
            size_t expect = 0, lo, hi;
            for (size_t k = 0; k < parts; k++) {
                sl_pool_range(n, parts, k, &lo, &hi);
                CHECK(lo == expect && hi >= lo && hi - lo <= n / parts + 1);
                expect = hi;
            }
            CHECK(expect == n);
        }

    CHECK(sl_cpu_count() >= 1);
    CHECK(sl_cpu_count() <= (int)sysconf(_SC_NPROCESSORS_CONF));
    CHECK(sl_pool_threads(NULL) == 1);
    sl_pool *bad = NULL;
    CHECK(sl_pool_create(&bad, 0) < 0 && !bad);

    const int sizes[] = {1, 2, 3, 8};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        const int threads = sizes[s];
        const int before = task_count();
        sl_pool *p = NULL;
        CHECK(sl_pool_create(&p, threads) == 0 && p);
        CHECK(sl_pool_threads(p) == threads);
        CHECK_MSG(task_count() == before + threads - 1, "pool of %d: %d threads in the process, expected %d",
                  threads, task_count(), before + threads - 1);
        CHECK(sl_pool_peak(p) == 0);
        const size_t ns[] = {0, 1, 2, 7, 1000, 100000};
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++)
            check_exactly_once(p, threads, ns[k]);

        meet_arg m = {0, threads};
        sl_pool_for(p, (size_t)threads, meet_body, &m);
        CHECK_MSG(sl_pool_peak(p) == threads, "pool of %d: peak %d", threads, sl_pool_peak(p));

        nest_arg na = {p, 0, 0};
        sl_pool_for(p, 16, nest_body, &na);
        CHECK(atomic_load(&na.inner_sum) == 16 * 55);
        CHECK(atomic_load(&na.mismatched_tid) == 0);
        CHECK_MSG(sl_pool_peak(p) == threads, "nested loops must not add threads: peak %d", sl_pool_peak(p));

        /* loops of 1..threads+1 items back to back: helpers join some and skip others */
        int wrong = 0;
        for (int rep = 0; rep < 2000; rep++) {
            const size_t n = 1 + (size_t)(rep % (threads + 1));
            atomic_int hits[16] = {0};
            count_arg a = {hits, threads, 0};
            sl_pool_for(p, n, count_body, &a);
            for (size_t i = 0; i < n; i++)
                wrong += atomic_load(&hits[i]) != 1;
            wrong += atomic_load(&a.bad_tid);
        }
        CHECK_MSG(wrong == 0, "pool of %d: %d errors in back-to-back loops", threads, wrong);

        sl_pool_destroy(p);
        CHECK_MSG(task_count() == before, "pool of %d destroyed: %d threads left, expected %d", threads, task_count(),
                  before);
    }
    sl_pool_destroy(NULL);
    return sl_test_finish("pool");
}
