/* One thread pool for the compute inside ops (GEMM, convolution, LSTM,
 * median filters, FFT batches, attention ...).
 *
 * A pool of N threads is the calling thread plus N-1 helpers that sleep between
 * loops. sl_pool_for is a blocking parallel loop: it returns when every index
 * has run. Indices are handed out one at a time from a shared counter, so
 * uneven work balances itself; give it a few more indices than threads (or
 * exactly one per thread for static splits, see sl_pool_range).
 *
 * Rules:
 *  - a pool is driven by one thread at a time (its owner: one op context's
 *    worker); two threads must not call sl_pool_for on the same pool at once;
 *  - a call from inside a loop body (nested) runs serially in the calling
 *    thread, so ops may call ops freely without oversubscribing;
 *  - a NULL pool is a pool of one thread: everything runs in the caller.
 *
 * OpenBLAS meets this pool in kernels/cpu: it is set to one thread for the whole
 * process, and ops split their GEMMs over the pool instead, so the number of
 * running compute threads is exactly the pool's. */
#ifndef SL_POOL_H
#define SL_POOL_H

#include <stddef.h>

typedef struct sl_pool sl_pool;

/* fn(arg, i, tid): one index of a loop; tid in [0, threads) names the thread
 * running it (0 = the caller), for per-thread scratch. */
typedef void (*sl_pool_fn)(void *arg, size_t i, int tid);

/* Creates a pool of threads threads in all (1..1024; 1 starts no helper thread).
 * Returns 0, SL_EINVAL or SL_ENOMEM / SL_EIO (thread creation) with sl_lasterr().
 * *out is owned by the caller: sl_pool_destroy. */
int sl_pool_create(sl_pool **out, int threads);
/* Stops and joins the helpers; NULL is allowed. Not while a loop runs. */
void sl_pool_destroy(sl_pool *p);
/* Threads of p (caller included); 1 for NULL. */
int sl_pool_threads(const sl_pool *p);
/* Runs fn(arg, i, tid) for every i in [0, n) and returns when all are done.
 * Never fails. Serial in the caller when p is NULL, has one thread, n <= 1, or
 * the call is nested inside another loop body. */
void sl_pool_for(sl_pool *p, size_t n, sl_pool_fn fn, void *arg);
/* Most threads that ever ran loop bodies of p at the same time (instrumentation:
 * the split a report states is the split that ran). 0 before the first loop. */
int sl_pool_peak(const sl_pool *p);

/* Part k of n items split into parts nearly equal contiguous ranges: [*lo, *hi). */
void sl_pool_range(size_t n, size_t parts, size_t k, size_t *lo, size_t *hi);

/* A budget of CPU tokens shared by every stage of a run (decode, model, write): a
 * thread holds tokens while it computes and none while it waits, so at most
 * `tokens` threads compute at once whatever the number of threads that exist.
 * Acquisition is first come, first served (a thread asking for several tokens is
 * not overtaken by later single-token requests). */
typedef struct sl_budget sl_budget;

/* tokens >= 1. Returns 0 or SL_EINVAL / SL_ENOMEM; *out owned by the caller (sl_budget_free). */
int sl_budget_create(sl_budget **out, int tokens);
void sl_budget_free(sl_budget *b);
/* Waits for n tokens (n is clamped to the budget's size); NULL b: returns at once. */
void sl_budget_acquire(sl_budget *b, int n);
/* Gives back n tokens taken by sl_budget_acquire; NULL b: nothing. */
void sl_budget_release(sl_budget *b, int n);
/* Most tokens held at once so far (instrumentation); 0 for NULL. */
int sl_budget_peak(const sl_budget *b);
/* Waiters woken so far in sl_budget_acquire (*woken) and, of them, those woken
 * when it was not their turn or their tokens were not free (*futile: 0 but for
 * the system's spurious wake-ups, since a release wakes only the waiter that can
 * go). Instrumentation; 0 and 0 for NULL. */
void sl_budget_wakeups(sl_budget *b, unsigned long *woken, unsigned long *futile);
/* Threads waiting in sl_budget_acquire now; 0 for NULL. */
int sl_budget_waiting(sl_budget *b);
/* Takes up to max tokens that are free now, without waiting: none while a
 * thread waits in sl_budget_acquire (it goes first). Returns how many (0 for
 * NULL b); give them back with sl_budget_release. */
int sl_budget_try_acquire(sl_budget *b, int max);
/* Ties each token to one CPU of the calling thread's affinity set when the
 * budget has exactly as many tokens as that set has CPUs (2..64): a thread
 * holding tokens then runs only on their CPUs (sched_setaffinity at
 * sl_budget_acquire; the tokens of the CPU it is on are taken first), and on
 * the whole set again once it holds none; tokens taken by
 * sl_budget_try_acquire (a loop's helpers, which run where the kernel puts
 * them) are kept from the others all the same. Call before any token is taken.
 * Returns 1 when the tokens are tied to CPUs, 0 when not (NULL b, sizes differ). */
int sl_budget_pin(sl_budget *b);
/* The calling thread on the whole CPU set sl_budget_pin found, when it holds no
 * tied token (a thread made by one that did inherits its affinity); nothing
 * before any budget was pinned. */
void sl_budget_unpin_thread(void);
/* Token-seconds held so far (the integral over time of the tokens held): with
 * T tokens over a span of s seconds, T * s minus its growth is the time tokens
 * sat unused. 0 for NULL. */
double sl_budget_held_s(sl_budget *b);

/* Binds p to the budget b: the thread driving p holds base tokens (1..threads)
 * while its loops run, so a loop runs on base threads, plus one helper for
 * each token of b that is free at the loop's start (sl_budget_try_acquire),
 * given back at its end. Threads of p that take no part in a loop are not
 * woken. Work is still split as for every thread of p, so results do not
 * depend on how many ran. NULL b: every thread of p runs every loop. */
void sl_pool_set_budget(sl_pool *p, sl_budget *b, int base);

/* The thread driving p is about to block on work another thread does (not to
 * compute): gives back the base tokens it holds under sl_pool_set_budget's
 * contract, so that loops of other pools can borrow them meanwhile;
 * sl_pool_resume takes them back (waiting for them if need be). Between loops
 * only. Nothing without a budget. */
void sl_pool_pause(sl_pool *p);
void sl_pool_resume(sl_pool *p);

/* CPUs this process may run on (sched_getaffinity: taskset, cgroups cpusets,
 * Slurm and Kubernetes CPU pinning); at least 1. */
int sl_cpu_count(void);

#endif
