/* The compute thread pool (sl_pool.h). Helpers wait on a generation counter:
 * each sl_pool_for publishes one loop (fn, arg, n), bumps the generation and
 * runs indices itself; helpers take indices from the same atomic counter. A
 * helper spins briefly before sleeping, because ops issue loops back to back
 * (one per layer) and a condition-variable wake-up costs more than a short loop. */
#include "sl_pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sl_error.h"

#define SPIN_ROUNDS 4000

struct sl_pool {
    int n;            /* threads in all, caller included */
    struct sl_budget *budget; /* sl_pool_set_budget: helpers beyond base - 1 borrow its idle tokens */
    int base;
    atomic_int spin_below; /* helpers with a tid below this spin before they sleep (the helpers read it,
                            * sl_pool_set_budget may write it while they run): base, or all without a budget */
    pthread_t *th;    /* n - 1 helpers */
    pthread_mutex_t mu;
    pthread_cond_t cv_go, cv_done;
    atomic_ulong gen; /* bumped once per loop */
    int quit;         /* under mu */

    /* the current loop (written by the owner before gen is bumped) */
    sl_pool_fn fn;
    void *arg;
    size_t n_items;
    atomic_ulong *assign;     /* [n-1]: the generation each helper last takes part in */
    atomic_size_t next;       /* next index to run */
    atomic_int pending;       /* taking-part helpers not yet finished */
    atomic_int running, peak; /* instrumentation */
};

typedef struct {
    sl_pool *p;
    int tid;
} helper_arg;

/* tid of this thread inside a running loop body, -1 outside any */
static _Thread_local int cur_tid = -1;

static void note_running(sl_pool *p, int delta)
{
    int now = atomic_fetch_add(&p->running, delta) + delta;
    int peak = atomic_load(&p->peak);
    while (now > peak && !atomic_compare_exchange_weak(&p->peak, &peak, now))
        ;
}

static void run_items(sl_pool *p, int tid)
{
    note_running(p, 1);
    cur_tid = tid;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n_items)
            break;
        p->fn(p->arg, i, tid);
    }
    cur_tid = -1;
    note_running(p, -1);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *helper_main(void *v)
{
    helper_arg *ha = v;
    sl_pool *p = ha->p;
    const int tid = ha->tid;
    free(ha);
    pthread_setname_np(pthread_self(), "sl-pool");
    sl_budget_unpin_thread(); /* made by a thread that held pinned tokens: it runs anywhere */
    unsigned long seen = 0;
    for (;;) {
        unsigned long g = atomic_load_explicit(&p->gen, memory_order_acquire);
        /* a helper beyond the tokens its owner holds ran on a borrowed token,
         * given back when the loop ended: it must not keep the CPU spinning */
        const int spin = tid < atomic_load_explicit(&p->spin_below, memory_order_relaxed) ? SPIN_ROUNDS : 0;
        for (int s = 0; g == seen && s < spin; s++) {
            cpu_relax();
            g = atomic_load_explicit(&p->gen, memory_order_acquire);
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load(&p->gen)) == seen && !p->quit)
                pthread_cond_wait(&p->cv_go, &p->mu);
            int quit = p->quit;
            pthread_mutex_unlock(&p->mu);
            if (quit && g == seen)
                return NULL;
        }
        seen = g;
        /* A helper that is not needed for this loop skips it; checking the
         * generation it was assigned (not a shared count) keeps a late helper from
         * mistaking the next loop for this one. */
        if (atomic_load_explicit(&p->assign[tid - 1], memory_order_acquire) != g)
            continue;
        run_items(p, tid);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->cv_done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

int sl_pool_create(sl_pool **out, int threads)
{
    *out = NULL;
    if (threads < 1 || threads > 1024)
        return sl_seterr(SL_EINVAL, "thread pool: %d threads (must be 1..1024)", threads);
    sl_pool *p = calloc(1, sizeof *p);
    if (!p)
        return sl_seterr(SL_ENOMEM, "thread pool: out of memory");
    p->n = threads;
    atomic_init(&p->spin_below, threads);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_go, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    if (threads > 1) {
        p->th = calloc((size_t)threads - 1, sizeof *p->th);
        p->assign = calloc((size_t)threads - 1, sizeof *p->assign);
        if (!p->th || !p->assign) {
            sl_pool_destroy(p);
            return sl_seterr(SL_ENOMEM, "thread pool: out of memory");
        }
    }
    for (int t = 1; t < threads; t++) {
        helper_arg *ha = malloc(sizeof *ha);
        int rc = ha ? 0 : ENOMEM;
        if (ha) {
            ha->p = p;
            ha->tid = t;
            rc = pthread_create(&p->th[t - 1], NULL, helper_main, ha);
            if (rc)
                free(ha);
        }
        if (rc) {
            p->n = t; /* join only the helpers that started */
            sl_pool_destroy(p);
            return sl_seterr(rc == ENOMEM ? SL_ENOMEM : SL_EIO, "thread pool: cannot start thread %d of %d: %s",
                             t + 1, threads, strerror(rc));
        }
    }
    *out = p;
    return 0;
}

void sl_pool_destroy(sl_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->quit = 1;
    pthread_cond_broadcast(&p->cv_go);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->n && p->th; t++)
        pthread_join(p->th[t - 1], NULL);
    pthread_cond_destroy(&p->cv_go);
    pthread_cond_destroy(&p->cv_done);
    pthread_mutex_destroy(&p->mu);
    free(p->th);
    free(p->assign);
    free(p);
}

int sl_pool_threads(const sl_pool *p) { return p ? p->n : 1; }

int sl_pool_peak(const sl_pool *p) { return p ? atomic_load(&p->peak) : 0; }

void sl_pool_for(sl_pool *p, size_t n, sl_pool_fn fn, void *arg)
{
    if (!n)
        return;
    if (!p || p->n == 1 || n == 1 || cur_tid >= 0) {
        const int tid = cur_tid >= 0 ? cur_tid : 0, outer = cur_tid;
        if (p && outer < 0)
            note_running(p, 1);
        cur_tid = tid;
        for (size_t i = 0; i < n; i++)
            fn(arg, i, tid);
        cur_tid = outer;
        if (p && outer < 0)
            note_running(p, -1);
        return;
    }
    int helpers = (size_t)(p->n - 1) < n - 1 ? p->n - 1 : (int)(n - 1), borrowed = 0;
    if (p->budget && helpers > p->base - 1) {
        /* the caller holds base tokens; the helpers beyond base - 1 run on
         * tokens nobody else is using now, given back when the loop ends */
        const int own = p->base - 1;
        borrowed = sl_budget_try_acquire(p->budget, helpers - own);
        helpers = own + borrowed;
    }
    if (helpers == 0) {
        /* nobody to share with: run it here, without waking the helpers */
        note_running(p, 1);
        cur_tid = 0;
        for (size_t i = 0; i < n; i++)
            fn(arg, i, 0);
        cur_tid = -1;
        note_running(p, -1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_items = n;
    const unsigned long g = atomic_load(&p->gen) + 1;
    atomic_store(&p->next, 0);
    atomic_store(&p->pending, helpers);
    for (int t = 0; t < helpers; t++)
        atomic_store_explicit(&p->assign[t], g, memory_order_relaxed);
    pthread_mutex_lock(&p->mu);
    atomic_store_explicit(&p->gen, g, memory_order_release);
    pthread_cond_broadcast(&p->cv_go);
    pthread_mutex_unlock(&p->mu);
    run_items(p, 0);
    for (int s = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && s < SPIN_ROUNDS; s++)
        cpu_relax();
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    if (borrowed)
        sl_budget_release(p->budget, borrowed);
}

void sl_pool_set_budget(sl_pool *p, sl_budget *b, int base)
{
    if (!p)
        return;
    p->budget = b;
    p->base = base < 1 ? 1 : base > p->n ? p->n : base;
    atomic_store_explicit(&p->spin_below, b ? p->base : p->n, memory_order_relaxed);
}

void sl_pool_pause(sl_pool *p)
{
    if (p && p->budget)
        sl_budget_release(p->budget, p->base);
}

void sl_pool_resume(sl_pool *p)
{
    if (p && p->budget)
        sl_budget_acquire(p->budget, p->base);
}

void sl_pool_range(size_t n, size_t parts, size_t k, size_t *lo, size_t *hi)
{
    if (!parts)
        parts = 1;
    const size_t q = n / parts, r = n % parts;
    *lo = k * q + (k < r ? k : r);
    *hi = *lo + q + (k < r ? 1 : 0);
}

/* A thread waiting in sl_budget_acquire, on its own condition: a release or
 * an acquisition wakes the one waiter whose turn it is, when its tokens are
 * free, instead of every waiter (each woken waiter that cannot go takes a CPU
 * from a thread that holds tokens and computes). */
typedef struct budget_waiter {
    pthread_cond_t cv;
    unsigned long ticket;
    int n;
    struct budget_waiter *next;
} budget_waiter;

struct sl_budget {
    pthread_mutex_t mu;
    int tokens, free_, peak;
    int pin;             /* sl_budget_pin: each token is one CPU */
    uint64_t free_slots; /* pin: the tokens free, one bit each */
    int cpu[64];         /* pin: token i's CPU */
    unsigned long next_ticket, serving;
    budget_waiter *head, *tail; /* waiting, in ticket order */
    unsigned long wakeups, futile; /* waiters woken; of them, woken when they could not go */
    double held_s, since; /* integral of the tokens held over time, up to since */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Brings held_s up to now; caller holds mu, before free_ changes. */
static void budget_tick(sl_budget *b)
{
    const double t = mono_s();
    b->held_s += (double)(b->tokens - b->free_) * (t - b->since);
    b->since = t;
}

int sl_budget_create(sl_budget **out, int tokens)
{
    *out = NULL;
    if (tokens < 1)
        return sl_seterr(SL_EINVAL, "CPU budget of %d threads (must be >= 1)", tokens);
    sl_budget *b = calloc(1, sizeof *b);
    if (!b)
        return sl_seterr(SL_ENOMEM, "CPU budget: out of memory");
    pthread_mutex_init(&b->mu, NULL);
    b->tokens = b->free_ = tokens;
    b->since = mono_s();
    *out = b;
    return 0;
}

void sl_budget_free(sl_budget *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* ---- tokens tied to CPUs (sl_budget_pin) ----
 * Why: with as many tokens as CPUs, two threads holding tokens could share one
 * CPU while the other sat idle: the kernel puts a woken thread beside its waker
 * when the other CPU is busy at that instant and does not move it when that CPU
 * goes idle a moment later (the thread is still "cache hot"). `perf sched
 * timehist` of the 8 x 10 s hpss job at 2 threads: 3-12 ms gaps in which one
 * CPU idled while the model and a decoder took turns on the other, 10-13 % of
 * the CPUs' time idle, 17 % of the token-seconds held by threads not running.
 * Tied to CPUs, the holders of different tokens never share one.
 *
 * The CPUs of the set the process had (g_all), the tokens each thread holds in
 * the order taken (given back last first: a loop's borrowed tokens before its
 * owner's), the set its affinity was last given, and the tokens it held last. */
static cpu_set_t g_all;
static atomic_int g_all_set;
static _Thread_local int t_stack[64], t_depth;
static _Thread_local uint64_t t_pinned, t_last;

int sl_budget_pin(sl_budget *b)
{
    cpu_set_t set;
    if (!b || b->tokens < 2 || b->tokens > 64 || sched_getaffinity(0, sizeof set, &set) ||
        CPU_COUNT(&set) != b->tokens)
        return 0;
    pthread_mutex_lock(&b->mu);
    if (b->free_ == b->tokens && !b->pin) {
        int k = 0;
        for (int c = 0; c < CPU_SETSIZE && k < b->tokens; c++)
            if (CPU_ISSET(c, &set))
                b->cpu[k++] = c;
        b->free_slots = b->tokens == 64 ? ~0ULL : (1ULL << b->tokens) - 1;
        if (!atomic_load(&g_all_set)) {
            g_all = set;
            atomic_store(&g_all_set, 1);
        }
        b->pin = 1;
    }
    const int on = b->pin;
    pthread_mutex_unlock(&b->mu);
    return on;
}

void sl_budget_unpin_thread(void)
{
    if (atomic_load(&g_all_set) && t_depth == 0) {
        sched_setaffinity(0, sizeof g_all, &g_all);
        t_pinned = 0;
    }
}

static uint64_t slots_held(void)
{
    uint64_t m = 0;
    for (int i = 0; i < t_depth; i++)
        m |= 1ULL << t_stack[i];
    return m;
}

/* n free tokens for the calling thread: the one of the CPU it runs on now
 * first (no move), then those it held last, then the lowest. Caller holds mu. */
static void slots_take(sl_budget *b, int n)
{
    if (!b->pin)
        return;
    const int here = sched_getcpu();
    for (; n > 0 && b->free_slots && t_depth < 64; n--) {
        int i = -1;
        for (int k = 0; k < b->tokens && i < 0; k++)
            if (b->cpu[k] == here && (b->free_slots >> k & 1))
                i = k;
        if (i < 0) {
            const uint64_t pref = t_last & b->free_slots;
            i = __builtin_ctzll(pref ? pref : b->free_slots);
        }
        b->free_slots &= ~(1ULL << i);
        t_stack[t_depth++] = i;
    }
}

static void slots_give(sl_budget *b, int n)
{
    if (!b->pin)
        return;
    for (; n > 0 && t_depth > 0; n--)
        b->free_slots |= 1ULL << t_stack[--t_depth];
}

/* The calling thread on its tokens' CPUs, or on all of them when it holds
 * none (outside mu: a system call). */
static void slots_pin(sl_budget *b)
{
    if (!b->pin)
        return;
    const uint64_t held = slots_held();
    if (!held) {
        if (t_pinned)
            sl_budget_unpin_thread();
        return;
    }
    t_last = held;
    if (held == t_pinned)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int i = 0; i < b->tokens; i++)
        if (held >> i & 1)
            CPU_SET(b->cpu[i], &set);
    if (sched_setaffinity(0, sizeof set, &set) == 0)
        t_pinned = held;
}

/* Wakes the first waiter when it is its turn and its tokens are free. Caller holds mu. */
static void budget_wake_next(sl_budget *b)
{
    budget_waiter *w = b->head;
    if (w && w->ticket == b->serving && b->free_ >= w->n)
        pthread_cond_signal(&w->cv);
}

void sl_budget_acquire(sl_budget *b, int n)
{
    if (!b)
        return;
    if (n > b->tokens)
        n = b->tokens;
    pthread_mutex_lock(&b->mu);
    const unsigned long ticket = b->next_ticket++;
    if (b->serving != ticket || b->free_ < n) {
        budget_waiter w = {.cv = PTHREAD_COND_INITIALIZER, .ticket = ticket, .n = n, .next = NULL};
        if (b->tail)
            b->tail->next = &w;
        else
            b->head = &w;
        b->tail = &w;
        do {
            pthread_cond_wait(&w.cv, &b->mu);
            b->wakeups++;
            if (b->serving != ticket || b->free_ < n)
                b->futile++;
        } while (b->serving != ticket || b->free_ < n);
        /* its turn: the first waiter (tickets are served in order) */
        b->head = w.next;
        if (!b->head)
            b->tail = NULL;
        pthread_cond_destroy(&w.cv);
    }
    b->serving++;
    budget_tick(b);
    b->free_ -= n;
    slots_take(b, n);
    if (b->tokens - b->free_ > b->peak)
        b->peak = b->tokens - b->free_;
    budget_wake_next(b); /* the next ticket may go too */
    pthread_mutex_unlock(&b->mu);
    slots_pin(b);
}

void sl_budget_release(sl_budget *b, int n)
{
    if (!b)
        return;
    if (n > b->tokens)
        n = b->tokens;
    pthread_mutex_lock(&b->mu);
    budget_tick(b);
    b->free_ += n;
    slots_give(b, n);
    budget_wake_next(b);
    pthread_mutex_unlock(&b->mu);
    slots_pin(b);
}

int sl_budget_waiting(sl_budget *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&b->mu);
    const int n = (int)(b->next_ticket - b->serving);
    pthread_mutex_unlock(&b->mu);
    return n;
}

void sl_budget_wakeups(sl_budget *b, unsigned long *woken, unsigned long *futile)
{
    *woken = *futile = 0;
    if (!b)
        return;
    pthread_mutex_lock(&b->mu);
    *woken = b->wakeups;
    *futile = b->futile;
    pthread_mutex_unlock(&b->mu);
}

int sl_budget_try_acquire(sl_budget *b, int max)
{
    if (!b || max < 1)
        return 0;
    pthread_mutex_lock(&b->mu);
    int n = 0;
    /* a thread waiting for tokens goes first: none is borrowed past it */
    if (b->serving == b->next_ticket && b->free_ > 0) {
        n = b->free_ < max ? b->free_ : max;
        budget_tick(b);
        b->free_ -= n;
        slots_take(b, n); /* for the loop's helpers: the caller stays where it is */
        if (b->tokens - b->free_ > b->peak)
            b->peak = b->tokens - b->free_;
    }
    pthread_mutex_unlock(&b->mu);
    return n;
}

double sl_budget_held_s(sl_budget *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&b->mu);
    budget_tick(b);
    double h = b->held_s;
    pthread_mutex_unlock(&b->mu);
    return h;
}

int sl_budget_peak(const sl_budget *b)
{
    if (!b)
        return 0;
    sl_budget *m = (sl_budget *)b;
    pthread_mutex_lock(&m->mu);
    int p = m->peak;
    pthread_mutex_unlock(&m->mu);
    return p;
}

/* cgroup v2 CPU quota ("max 100000" or "150000 100000") rounded up, 0 when none. */
static int cgroup_quota_cpus(void)
{
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "r");
    if (!f)
        return 0;
    char quota[32] = "";
    long period = 0;
    int n = fscanf(f, "%31s %ld", quota, &period);
    fclose(f);
    if (n != 2 || period <= 0 || !strcmp(quota, "max"))
        return 0;
    long q = strtol(quota, NULL, 10);
    if (q <= 0)
        return 0;
    return (int)((q + period - 1) / period);
}

int sl_cpu_count(void)
{
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = 1;
    int quota = cgroup_quota_cpus();
    if (quota > 0 && quota < n)
        n = quota;
    return n;
}
