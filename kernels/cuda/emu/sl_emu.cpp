// CPU emulation of a CUDA launch, for the "cuda-emu" backend (see sl_cuda.h).
//
// A launch runs its blocks one after the other on the calling host thread.
// Each thread of a block is a coroutine with its own small stack (on x86-64 a
// register-only switch, below; elsewhere ucontext);
// the scheduler resumes every runnable thread of the block in threadIdx order
// (SL_EMU_ORDER=desc: reversed; =random: a fresh shuffle for every barrier
// phase, blocks shuffled too, seeded by SL_EMU_SEED, default 1)
// until it finishes or reaches __syncthreads, then checks the barrier:
//  - every thread waiting at the same __syncthreads (file:line): all resume;
//  - every thread finished: the block is done;
//  - anything else (some finished while others wait, or threads waiting at
//    different barriers): divergence, a bug on a real GPU -> message + abort().
// Threads never run concurrently, so data races are NOT detected; what this
// checks is indexing, arithmetic, bounds (under ASan), and barrier discipline.
//
// Under AddressSanitizer the stack switches are announced with
// __sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber and each
// reused stack is unpoisoned first, so the sanitizer build runs cleanly; under
// ThreadSanitizer with __tsan_switch_to_fiber (see SL_EMU_TSAN below).
#include "../sl_cuda.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <pthread.h>

#if defined(__x86_64__) && !defined(SL_EMU_UCONTEXT)
#define SL_EMU_FAST_SWITCH 1
// The context switch: pushes the callee-saved registers and the SSE/x87 control
// words on the current stack, stores the stack pointer in *from_sp, loads to_sp
// and pops the same from there. glibc's swapcontext also saves and restores the
// signal mask, one rt_sigprocmask system call per switch: 5 million of them in
// unit.parity, half of the emulation's time. Nothing here touches signals.
extern "C" void sl_emu_switch(void **from_sp, void *to_sp);
__asm__(".text\n"
        ".globl sl_emu_switch\n"
        ".hidden sl_emu_switch\n"
        ".type sl_emu_switch,@function\n"
        "sl_emu_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  subq $8, %rsp\n"
        "  stmxcsr (%rsp)\n"
        "  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n"
        "  fldcw 4(%rsp)\n"
        "  addq $8, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size sl_emu_switch, .-sl_emu_switch\n");
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SL_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SL_EMU_ASAN 1
#endif
#endif
#ifdef SL_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

// Under ThreadSanitizer each coroutine is a TSan fiber (created with its stack,
// never destroyed, like the stack), and every switch is announced with
// __tsan_switch_to_fiber: without that TSan takes the coroutines' frames for
// the host thread's and its shadow call stack goes wrong. Switches synchronise
// (flag 0): the threads of a block run in turn and see each other's writes,
// as at a barrier. A coroutine's first frame never returns (it ends in a
// switch, and its stack is reset for the next block), so the functions that
// switch away for good are not instrumented: their entries would pile up on
// the fiber's shadow stack, one per block.
#if defined(__SANITIZE_THREAD__)
#define SL_EMU_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SL_EMU_TSAN 1
#endif
#endif
#ifdef SL_EMU_TSAN
#include <sanitizer/tsan_interface.h>
#if defined(__clang__)
#define SL_EMU_NO_TSAN __attribute__((disable_sanitizer_instrumentation))
#else
#define SL_EMU_NO_TSAN __attribute__((no_sanitize("thread")))
#endif
#else
#define SL_EMU_NO_TSAN
#endif

__thread uint3 threadIdx, blockIdx, blockDim, gridDim;
__thread unsigned char *sl_emu_dyn_smem;

namespace {

#ifdef SL_EMU_ASAN
// ASan's swapcontext interceptor clears the shadow of the whole target stack on
// every switch, so the stack size is the cost of a switch: kernels need only a
// few KiB even instrumented (no fake stacks: detect_stack_use_after_return=0,
// the default of GCC's libasan; a fiber overflow hits the guard page).
const size_t kStack = 64 * 1024;
#else
const size_t kStack = 128 * 1024; // reserved, not committed: only touched pages cost
#endif
const unsigned kMaxThreads = 1024;      // per block, as on every current GPU
const size_t kMaxShared = 48 * 1024;    // dynamic + static without opt-in; static alone
const size_t kMaxSharedOptin = 232448;  // dynamic + static with opt-in (sm_90: 227 KiB)
const unsigned kMaxSharedVars = 32;     // SL_SHARED declarations one kernel may reach
const unsigned kMaxCoopThreads = 8192;  // threads of all blocks of a cooperative launch, all live at once

enum { RUNNABLE, AT_BARRIER, AT_GRID, FINISHED };

struct fiber {
#ifdef SL_EMU_FAST_SWITCH
    void *sp; // saved stack pointer (sl_emu_switch)
#else
    ucontext_t uc;
#endif
    unsigned char *stack; // mmap'd, guard page at the low end
    uint3 tid;
    uint3 bid;      // the block (cooperative launches: all blocks' threads are live at once)
    unsigned block; // its linear index
    int state;
    const char *bar_file;
    int bar_line;
#ifdef SL_EMU_ASAN
    void *fake_stack;
#endif
#ifdef SL_EMU_TSAN
    void *tsan_fiber;
#endif
};

struct emu_thread {
    fiber *fibers;      // kMaxCoopThreads, allocated on first launch of this host thread
    unsigned n_stacks;  // stacks mapped so far
#ifdef SL_EMU_FAST_SWITCH
    void *sched_sp; // the scheduler's saved stack pointer
#else
    ucontext_t sched; // the scheduler's context
#endif
    fiber *cur;
    sl_emu_body body;
    void *closure;
    const char *kernel;
    // Static shared memory (SL_SHARED) of the running launch: every variable
    // reached (sizes summed against the limits), and those already poisoned
    // in the running block.
    const void *shared_vars[kMaxSharedVars];
    unsigned n_shared_vars, n_shared_block;
    const void *shared_block[kMaxSharedVars];
    size_t static_shared, dyn_shared, dyn_limit;
    char shared_err[256]; // the launch fails with this after the block (first error only)
    bool coop;            // a cooperative launch runs (sl_emu_launch_coop)
    unsigned char *coop_smem; // its dynamic shared memory, one slice per block
    size_t coop_stride;
#ifdef SL_EMU_ASAN
    void *sched_fake;
    const void *sched_bottom;
    size_t sched_size;
#endif
#ifdef SL_EMU_TSAN
    void *tsan_sched; // the host thread's own TSan context
    pid_t tsan_pid;   // process that created the fibers' TSan contexts
#endif
};

thread_local emu_thread T;

// ---- schedules: the order threads and blocks run in ----

enum { ORDER_ASC, ORDER_DESC, ORDER_RANDOM };

int schedule_order()
{
    const char *v = getenv("SL_EMU_ORDER");
    if (!v || !*v || !strcmp(v, "asc"))
        return ORDER_ASC;
    if (!strcmp(v, "desc"))
        return ORDER_DESC;
    if (!strcmp(v, "random"))
        return ORDER_RANDOM;
    fprintf(stderr, "cuda-emu: SL_EMU_ORDER=%s: expected asc, desc or random\n", v);
    abort();
}

thread_local uint64_t t_rng; // xorshift64*, seeded from SL_EMU_SEED at first use

uint64_t rng_next()
{
    if (!t_rng) {
        const char *v = getenv("SL_EMU_SEED");
        t_rng = (v && *v ? strtoull(v, nullptr, 10) : 1) * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
        if (!t_rng)
            t_rng = 1;
    }
    t_rng ^= t_rng >> 12;
    t_rng ^= t_rng << 25;
    t_rng ^= t_rng >> 27;
    return t_rng * 0x2545F4914F6CDD1Dull;
}

template <class I> void shuffle(I *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        const size_t j = (size_t)(rng_next() % i);
        const I t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

[[noreturn]] __attribute__((format(printf, 1, 2))) void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda-emu: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    fflush(stderr);
    abort();
}

// Back to the scheduler; returns when the scheduler resumes this fiber.
SL_EMU_NO_TSAN void yield_to_scheduler(bool finished)
{
    fiber *f = T.cur;
#ifdef SL_EMU_TSAN
    __tsan_switch_to_fiber(T.tsan_sched, 0);
#endif
#ifdef SL_EMU_ASAN
    __sanitizer_start_switch_fiber(finished ? nullptr : &f->fake_stack, T.sched_bottom, T.sched_size);
#else
    (void)finished;
#endif
#ifdef SL_EMU_FAST_SWITCH
    sl_emu_switch(&f->sp, T.sched_sp);
#else
    swapcontext(&f->uc, &T.sched);
#endif
#ifdef SL_EMU_ASAN
    __sanitizer_finish_switch_fiber(f->fake_stack, &T.sched_bottom, &T.sched_size);
#endif
}

SL_EMU_NO_TSAN void fiber_main()
{
#ifdef SL_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &T.sched_bottom, &T.sched_size);
#endif
    T.body(T.closure);
    T.cur->state = FINISHED;
    yield_to_scheduler(true);
    die("internal error: a finished thread of %s was resumed", T.kernel);
}

void resume(fiber *f)
{
    T.cur = f;
    threadIdx = f->tid;
    if (T.coop) {
        blockIdx = f->bid;
        sl_emu_dyn_smem = T.coop_smem ? T.coop_smem + (size_t)f->block * T.coop_stride : nullptr;
    }
#ifdef SL_EMU_TSAN
    T.tsan_sched = __tsan_get_current_fiber();
    __tsan_switch_to_fiber(f->tsan_fiber, 0);
#endif
#ifdef SL_EMU_ASAN
    __sanitizer_start_switch_fiber(&T.sched_fake, f->stack, kStack);
#endif
#ifdef SL_EMU_FAST_SWITCH
    sl_emu_switch(&T.sched_sp, f->sp);
#else
    swapcontext(&T.sched, &f->uc);
#endif
#ifdef SL_EMU_ASAN
    __sanitizer_finish_switch_fiber(T.sched_fake, nullptr, nullptr);
#endif
}

int ensure_fibers(unsigned n)
{
    if (!T.fibers) {
        void *p = mmap(nullptr, sizeof(fiber) * kMaxCoopThreads, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return sl_seterr(SL_ENOMEM, "cuda-emu: cannot map the coroutine table");
        T.fibers = static_cast<fiber *>(p);
    }
#ifdef SL_EMU_TSAN
    // In a forked child the parent's fibers are threads TSan holds as gone
    // (switches to them no longer synchronise): fresh contexts for the stacks.
    if (T.tsan_pid != getpid()) {
        for (unsigned i = 0; i < T.n_stacks; i++)
            T.fibers[i].tsan_fiber = __tsan_create_fiber(0);
        T.tsan_pid = getpid();
    }
#endif
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    while (T.n_stacks < n) {
        // Reserved lazily (MAP_NORESERVE), so untouched stack pages cost nothing;
        // the lowest page is a guard so an overflow faults instead of corrupting.
        void *p = mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            return sl_seterr(SL_ENOMEM, "cuda-emu: cannot map a coroutine stack");
        mprotect(p, page, PROT_NONE);
        T.fibers[T.n_stacks].stack = static_cast<unsigned char *>(p) + page;
#ifdef SL_EMU_TSAN
        T.fibers[T.n_stacks].tsan_fiber = __tsan_create_fiber(0);
#endif
        T.n_stacks++;
    }
    return 0;
}

void start_fiber(fiber *f)
{
#ifdef SL_EMU_ASAN
    __asan_unpoison_memory_region(f->stack, kStack);
    f->fake_stack = nullptr;
#endif
#ifdef SL_EMU_FAST_SWITCH
    // The frame sl_emu_switch pops, at the top of the fresh stack: control words,
    // six registers (zero), then fiber_main as the return address; above it an
    // empty slot, so that fiber_main starts with the stack alignment of a call.
    void **top = reinterpret_cast<void **>(f->stack + kStack); // 16-byte aligned
    top[-1] = nullptr;                                         // fiber_main's "return address": never used
    top[-2] = reinterpret_cast<void *>(&fiber_main);
    for (int r = 3; r <= 8; r++)
        top[-r] = nullptr; // rbp, rbx, r12..r15
    uint32_t ctl[2] = {0, 0};
    __asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "+m"(ctl[0]), "+m"(ctl[1]));
    memcpy(&top[-9], ctl, sizeof ctl); // this thread's SSE and x87 modes
    f->sp = &top[-9];
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = kStack;
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, fiber_main, 0);
#endif
    f->state = RUNNABLE;
    f->bar_file = nullptr;
    f->bar_line = 0;
}

void run_block(unsigned nthreads, int order)
{
    unsigned perm[kMaxThreads];
    for (unsigned i = 0; i < nthreads; i++) {
        start_fiber(&T.fibers[i]);
        perm[i] = order == ORDER_DESC ? nthreads - 1 - i : i;
    }
    for (;;) {
        if (order == ORDER_RANDOM)
            shuffle(perm, nthreads);
        for (unsigned k = 0; k < nthreads; k++)
            if (T.fibers[perm[k]].state == RUNNABLE)
                resume(&T.fibers[perm[k]]);
        unsigned finished = 0, waiting = 0;
        for (unsigned i = 0; i < nthreads; i++)
            (T.fibers[i].state == FINISHED ? finished : waiting)++;
        if (finished == nthreads)
            return;
        if (finished) {
            const fiber *w = nullptr;
            for (unsigned i = 0; i < nthreads && !w; i++)
                if (T.fibers[i].state == AT_BARRIER)
                    w = &T.fibers[i];
            fprintf(stderr, "cuda-emu: kernel %s, block (%u,%u,%u): __syncthreads at %s:%d reached by %u of %u "
                            "threads, the others returned (divergent barrier)\n",
                    T.kernel, blockIdx.x, blockIdx.y, blockIdx.z, w->bar_file, w->bar_line, waiting, nthreads);
            fflush(stderr);
            abort();
        }
        const fiber *a = &T.fibers[0];
        for (unsigned i = 1; i < nthreads; i++) {
            const fiber *b = &T.fibers[i];
            if (b->bar_line != a->bar_line || strcmp(b->bar_file, a->bar_file) != 0) {
                fprintf(stderr, "cuda-emu: kernel %s, block (%u,%u,%u): threads wait at different barriers "
                                "(%s:%d for thread (%u,%u,%u), %s:%d for thread (%u,%u,%u))\n",
                        T.kernel, blockIdx.x, blockIdx.y, blockIdx.z, a->bar_file, a->bar_line, a->tid.x,
                        a->tid.y, a->tid.z, b->bar_file, b->bar_line, b->tid.x, b->tid.y, b->tid.z);
                fflush(stderr);
                abort();
            }
        }
        for (unsigned i = 0; i < nthreads; i++)
            T.fibers[i].state = RUNNABLE;
    }
}

[[noreturn]] void coop_die(const char *what, const fiber *a, const fiber *b)
{
    fprintf(stderr, "cuda-emu: cooperative kernel %s: %s (thread (%u,%u,%u) of block (%u,%u,%u) at %s:%d; thread "
                    "(%u,%u,%u) of block (%u,%u,%u) %s%s:%d)\n",
            T.kernel, what, a->tid.x, a->tid.y, a->tid.z, a->bid.x, a->bid.y, a->bid.z,
            a->bar_file ? a->bar_file : "(returned)", a->bar_line, b->tid.x, b->tid.y, b->tid.z, b->bid.x, b->bid.y,
            b->bid.z, b->state == FINISHED ? "returned, " : "at ", b->bar_file ? b->bar_file : "", b->bar_line);
    fflush(stderr);
    abort();
}

bool same_place(const fiber *a, const fiber *b)
{
    return a->bar_line == b->bar_line && a->bar_file && b->bar_file && !strcmp(a->bar_file, b->bar_file);
}

// Every thread of every block live at once: a block's threads are released
// together from one __syncthreads, all threads of the grid from one grid sync
// (sl_emu_grid_sync); anything else that cannot go on is a hang on a GPU.
void run_coop(unsigned nblocks, unsigned nthreads, int order)
{
    const unsigned total = nblocks * nthreads;
    unsigned *perm = static_cast<unsigned *>(malloc(total * sizeof *perm));
    if (!perm)
        die("cooperative kernel %s: out of memory", T.kernel);
    for (unsigned i = 0; i < total; i++) {
        start_fiber(&T.fibers[i]);
        perm[i] = order == ORDER_DESC ? total - 1 - i : i;
    }
    for (;;) {
        if (order == ORDER_RANDOM)
            shuffle(perm, total);
        for (unsigned k = 0; k < total; k++)
            if (T.fibers[perm[k]].state == RUNNABLE)
                resume(&T.fibers[perm[k]]);
        bool released = false;
        unsigned finished = 0, at_grid = 0;
        for (unsigned bl = 0; bl < nblocks; bl++) {
            fiber *f = &T.fibers[bl * nthreads];
            for (unsigned i = 1; i < nthreads; i++)
                if (f[i].state != f[0].state || (f[0].state != FINISHED && !same_place(&f[i], &f[0])))
                    coop_die("the threads of a block wait at different barriers, or some returned (a hang on a GPU)",
                             &f[0], &f[i]);
            if (f[0].state == AT_BARRIER) {
                for (unsigned i = 0; i < nthreads; i++)
                    f[i].state = RUNNABLE;
                released = true;
            }
            finished += f[0].state == FINISHED;
            at_grid += f[0].state == AT_GRID;
        }
        if (finished == nblocks)
            break;
        if (released)
            continue;
        // every block waits at a grid sync or has returned
        const fiber *g = nullptr;
        for (unsigned bl = 0; bl < nblocks; bl++) {
            const fiber *f = &T.fibers[bl * nthreads];
            if (f->state == FINISHED)
                coop_die("a block returned while others wait at a grid sync (a hang on a GPU)",
                         &T.fibers[(bl ? 0 : 1) * nthreads], f);
            if (g && !same_place(g, f))
                coop_die("blocks wait at different grid syncs", g, f);
            g = f;
        }
        (void)at_grid;
        for (unsigned i = 0; i < total; i++)
            T.fibers[i].state = RUNNABLE;
    }
    free(perm);
}

} // namespace

void sl_emu_grid_sync(const char *file, int line)
{
    fiber *f = T.cur;
    if (!f)
        die("grid sync at %s:%d called outside a kernel", file, line);
    if (!T.coop)
        die("kernel %s: grid sync at %s:%d in a launch that is not cooperative (SL_LAUNCH_COOP)", T.kernel, file,
            line);
    f->state = AT_GRID;
    f->bar_file = file;
    f->bar_line = line;
    yield_to_scheduler(false);
}

unsigned sl_emu_coop_max_blocks(unsigned threads)
{
    return threads ? kMaxCoopThreads / threads : 0;
}

int sl_emu_launch_coop(const char *kernel, dim3 grid, dim3 block, size_t shmem, sl_emu_body body, void *closure)
{
    const unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    const unsigned long long nblocks = (unsigned long long)grid.x * grid.y * grid.z;
    if (!nblocks || !nthreads || nthreads > kMaxThreads || block.z > 64 || grid.y > 65535 || grid.z > 65535)
        return sl_seterr(SL_EDEVICE, "cooperative launch of %s: invalid configuration grid (%u,%u,%u) block (%u,%u,%u)",
                         kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z);
    if (nblocks * nthreads > kMaxCoopThreads)
        return sl_seterr(SL_EDEVICE, "cooperative launch of %s: %llu blocks of %llu threads cannot all be resident "
                                     "(cuda-emu runs at most %u threads at once; a GPU's limit is its SMs' occupancy)",
                         kernel, nblocks, nthreads, kMaxCoopThreads);
    const size_t dyn_limit = sl_emu_max_dyn_shared(kernel);
    if (shmem > dyn_limit)
        return sl_seterr(SL_EDEVICE, "cooperative launch of %s: %zu bytes of dynamic shared memory > %zu%s", kernel,
                         shmem, dyn_limit, dyn_limit == kMaxShared ? " (no opt-in: SL_SHMEM_OPTIN)" : " (the kernel's opt-in)");
    if (T.cur)
        die("kernel %s launched from inside a kernel", kernel);
    int rc = ensure_fibers((unsigned)(nblocks * nthreads));
    if (rc < 0)
        return rc;
    const size_t stride = (shmem + 63) & ~(size_t)63;
    unsigned char *smem = nullptr;
    if (shmem) {
        smem = static_cast<unsigned char *>(aligned_alloc(64, stride * nblocks));
        if (!smem)
            return sl_seterr(SL_ENOMEM, "launch of %s: cannot allocate shared memory", kernel);
        memset(smem, 0xFF, stride * nblocks); // read before written: NaN
    }
    T.body = body;
    T.closure = closure;
    T.kernel = kernel;
    T.coop = true;
    T.coop_smem = smem;
    T.coop_stride = stride;
    gridDim = uint3{grid.x, grid.y, grid.z};
    blockDim = uint3{block.x, block.y, block.z};
    unsigned n = 0;
    for (unsigned long long b = 0; b < nblocks; b++)
        for (unsigned z = 0; z < block.z; z++)
            for (unsigned y = 0; y < block.y; y++)
                for (unsigned x = 0; x < block.x; x++) {
                    fiber *f = &T.fibers[n++];
                    f->tid = uint3{x, y, z};
                    f->bid = uint3{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y),
                                   (unsigned)(b / grid.x / grid.y)};
                    f->block = (unsigned)b;
                }
    run_coop((unsigned)nblocks, (unsigned)nthreads, schedule_order());
    T.coop = false;
    T.coop_smem = nullptr;
    T.cur = nullptr;
    sl_emu_dyn_smem = nullptr;
    free(smem);
    return 0;
}

void sl_emu_syncthreads(const char *file, int line)
{
    fiber *f = T.cur;
    if (!f)
        die("__syncthreads() at %s:%d called outside a kernel", file, line);
    f->state = AT_BARRIER;
    f->bar_file = file;
    f->bar_line = line;
    yield_to_scheduler(false);
}

void sl_emu_shared(void *p, size_t bytes, const char *name)
{
    if (!T.cur)
        die("shared variable %s declared outside a kernel", name);
    if (T.coop) // one static copy per host thread cannot be every block's at once
        die("cooperative kernel %s: static shared memory (%s) is not emulated; use SL_DYN_SHARED", T.kernel, name);
    for (unsigned i = 0; i < T.n_shared_block; i++)
        if (T.shared_block[i] == p)
            return;
    // First thread of this block to get here: nothing of the block has touched
    // the variable yet (its declaration precedes every use), so poison it.
    if (T.n_shared_block == kMaxSharedVars)
        die("kernel %s declares more than %u shared variables", T.kernel, kMaxSharedVars);
    T.shared_block[T.n_shared_block++] = p;
    memset(p, 0xFF, bytes);
    for (unsigned i = 0; i < T.n_shared_vars; i++)
        if (T.shared_vars[i] == p)
            return;
    T.shared_vars[T.n_shared_vars++] = p;
    T.static_shared += bytes;
    if (T.shared_err[0])
        return;
    if (T.static_shared > kMaxShared)
        snprintf(T.shared_err, sizeof T.shared_err,
                 "%zu bytes of static shared memory (%s is the last) > %zu per block", T.static_shared, name,
                 kMaxShared);
    else if (T.static_shared + T.dyn_shared > T.dyn_limit)
        snprintf(T.shared_err, sizeof T.shared_err,
                 "%zu bytes of static (%s is the last) + %zu of dynamic shared memory > %zu per block%s",
                 T.static_shared, name, T.dyn_shared, T.dyn_limit,
                 T.dyn_limit == kMaxShared ? " (no opt-in: SL_SHMEM_OPTIN)" : " (the kernel's opt-in)");
}

namespace {
// Dynamic shared memory opt-ins (cudaFuncAttributeMaxDynamicSharedMemorySize),
// process-wide like the attribute, keyed by kernel name.
pthread_mutex_t optin_mu = PTHREAD_MUTEX_INITIALIZER;
struct optin {
    const char *kernel;
    size_t bytes;
} optins[64];
unsigned n_optins;
} // namespace

int sl_emu_shmem_optin(const char *kernel, size_t bytes)
{
    if (bytes > kMaxSharedOptin)
        return sl_seterr(SL_EDEVICE, "%s: opt-in to %zu bytes of dynamic shared memory > %zu (sm_90)", kernel,
                         bytes, kMaxSharedOptin);
    pthread_mutex_lock(&optin_mu);
    unsigned i = 0;
    while (i < n_optins && strcmp(optins[i].kernel, kernel))
        i++;
    if (i == sizeof optins / sizeof optins[0]) {
        pthread_mutex_unlock(&optin_mu);
        return sl_seterr(SL_EDEVICE, "%s: too many shared memory opt-ins for the emulation", kernel);
    }
    optins[i] = optin{kernel, bytes};
    if (i == n_optins)
        n_optins++;
    pthread_mutex_unlock(&optin_mu);
    return 0;
}

size_t sl_emu_max_dyn_shared(const char *kernel)
{
    size_t limit = kMaxShared;
    pthread_mutex_lock(&optin_mu);
    for (unsigned i = 0; i < n_optins; i++)
        if (!strcmp(optins[i].kernel, kernel) && optins[i].bytes > limit)
            limit = optins[i].bytes;
    pthread_mutex_unlock(&optin_mu);
    return limit;
}

unsigned sl_emu_grid_cap(void)
{
    const char *v = getenv("SL_EMU_GRID_CAP");
    if (!v || !*v)
        return UINT_MAX;
    char *end;
    unsigned long c = strtoul(v, &end, 10);
    if (*end || c < 1 || c > UINT_MAX) {
        fprintf(stderr, "cuda-emu: SL_EMU_GRID_CAP=%s: expected a positive integer\n", v);
        abort();
    }
    return (unsigned)c;
}

int sl_emu_launch(const char *kernel, dim3 grid, dim3 block, size_t shmem, sl_emu_body body, void *closure)
{
    const unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !nthreads || grid.x > INT_MAX || grid.y > 65535 || grid.z > 65535 ||
        nthreads > kMaxThreads || block.z > 64)
        return sl_seterr(SL_EDEVICE, "launch of %s: invalid configuration grid (%u,%u,%u) block (%u,%u,%u) "
                                     "(cuda-emu checks the limits of a real device)",
                         kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z);
    const size_t dyn_limit = sl_emu_max_dyn_shared(kernel);
    if (shmem > dyn_limit)
        return sl_seterr(SL_EDEVICE, "launch of %s: %zu bytes of dynamic shared memory > %zu%s", kernel, shmem,
                         dyn_limit, dyn_limit == kMaxShared ? " (no opt-in: SL_SHMEM_OPTIN)" : " (the kernel's opt-in)");
    if (T.cur)
        die("kernel %s launched from inside a kernel", kernel);
    int rc = ensure_fibers((unsigned)nthreads);
    if (rc < 0)
        return rc;
    unsigned char *smem = nullptr;
    if (shmem) {
        smem = static_cast<unsigned char *>(aligned_alloc(64, (shmem + 63) & ~(size_t)63));
        if (!smem)
            return sl_seterr(SL_ENOMEM, "launch of %s: cannot allocate %zu bytes of shared memory", kernel, shmem);
    }
    T.body = body;
    T.closure = closure;
    T.kernel = kernel;
    T.n_shared_vars = 0;
    T.static_shared = 0;
    T.dyn_shared = shmem;
    T.dyn_limit = dyn_limit;
    T.shared_err[0] = 0;
    gridDim = uint3{grid.x, grid.y, grid.z};
    blockDim = uint3{block.x, block.y, block.z};
    sl_emu_dyn_smem = smem;
    unsigned n = 0;
    for (unsigned z = 0; z < block.z; z++)
        for (unsigned y = 0; y < block.y; y++)
            for (unsigned x = 0; x < block.x; x++)
                T.fibers[n++].tid = uint3{x, y, z};
    const int order = schedule_order();
    const unsigned long long nblocks = (unsigned long long)grid.x * grid.y * grid.z;
    unsigned long long *bperm = nullptr;
    if (order == ORDER_RANDOM) {
        bperm = static_cast<unsigned long long *>(malloc(nblocks * sizeof *bperm));
        if (!bperm) {
            free(smem);
            return sl_seterr(SL_ENOMEM, "launch of %s: cannot allocate the block order", kernel);
        }
        for (unsigned long long b = 0; b < nblocks; b++)
            bperm[b] = b;
        shuffle(bperm, (size_t)nblocks);
    }
    for (unsigned long long k = 0; k < nblocks; k++) {
        const unsigned long long b = bperm ? bperm[k] : order == ORDER_DESC ? nblocks - 1 - k : k;
        blockIdx = uint3{(unsigned)(b % grid.x), (unsigned)(b / grid.x % grid.y),
                         (unsigned)(b / grid.x / grid.y)};
        if (smem) // uninitialised shared memory reads as NaN, not as stale zeros
            memset(smem, 0xFF, shmem);
        T.n_shared_block = 0; // static shared memory: poisoned by its first declaration in the block
        run_block(n, order);
        if (T.shared_err[0]) // a device refuses such a launch: no more blocks
            break;
    }
    free(bperm);
    T.cur = nullptr;
    sl_emu_dyn_smem = nullptr;
    free(smem);
    if (T.shared_err[0])
        return sl_seterr(SL_EDEVICE, "launch of %s: %s (cuda-emu checks the limits of an sm_90 device)", kernel,
                         T.shared_err);
    return 0;
}
