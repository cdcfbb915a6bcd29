// cudamock: the CUDA runtime calls the "cuda" backend makes, on the host (see
// mock.h for what is enforced and why). One process-wide recursive lock
// serialises every call and all device work; device work runs with the arena
// readable and writable, host code sees it PROT_NONE. This file: the state,
// the device arena and its allocator, stream draining, kernel launches and the
// test hooks of mock.h; the runtime API itself is in cudart_api_mock.cpp.
#include "cudart_impl.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <set>
#include <map>
#include <mutex>
#include <vector>

// The launch emulation (kernels/cuda/emu/sl_emu.cpp).
typedef void (*sl_emu_body)(void *closure);
int sl_emu_launch(const char *kernel, dim3 grid, dim3 block, size_t shmem, sl_emu_body body, void *closure);
size_t sl_emu_max_dyn_shared(const char *kernel);
int sl_emu_launch_coop(const char *kernel, dim3 grid, dim3 block, size_t shmem, sl_emu_body body, void *closure);
static void launch(cudaStream_t s, const char *kernel, dim3 grid, dim3 block, size_t shmem,
                   std::function<void()> body, bool coop);

namespace sl_mock_rt {

State &S()
{
    static State *s = new State; // never destroyed: streams may be used from atexit paths
    return *s;
}

thread_local cudaError_t t_last = cudaSuccess;
thread_local int t_device = 0;

long env_long(const char *name, long def, long lo, long hi)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        sl_mock_fatal("%s=%s: expected an integer in [%ld, %ld]", name, v, lo, hi);
    return x;
}

// SL_MOCK_STATS=PATH: at exit, what the process asked of the devices, as JSON
// (peak bytes per device, allocation counts), for tests of memory bounds.
void write_stats()
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    FILE *f = fopen(s.stats_path, "w");
    if (!f)
        sl_mock_fatal("SL_MOCK_STATS=%s: %s", s.stats_path, strerror(errno));
    fprintf(f, "{\"peak_device_bytes\": [");
    for (int d = 0; d < s.devices; d++)
        fprintf(f, "%s%zu", d ? ", " : "", s.peak[d]);
    fprintf(f, "], \"device_allocs\": %llu, \"pinned_allocs\": %llu}\n", s.n_dev_allocs, s.n_pinned_allocs);
    if (fclose(f) != 0)
        sl_mock_fatal("SL_MOCK_STATS=%s: %s", s.stats_path, strerror(errno));
}

// Called with the lock held.
void ensure_init(State &s)
{
    if (s.init)
        return;
    s.init = true;
    s.devices = (int)env_long("SL_MOCK_DEVICES", 1, 0, (long)kMaxDevices);
    s.device_mem = (size_t)env_long("SL_MOCK_DEVICE_MB", 4096, 1, 1L << 20) << 20;
    s.pools = env_long("SL_MOCK_NO_POOLS", 0, 0, 1) ? 0 : 1;
    s.driver = env_long("SL_MOCK_NO_DRIVER", 0, 0, 1) ? 0 : CUDART_VERSION;
    // SL_MOCK_FAULT=D: the first kernel that runs on device D faults with
    // cudaErrorIllegalAddress, which breaks that device's context for good.
    const long fault = env_long("SL_MOCK_FAULT", -1, -1, (long)kMaxDevices - 1);
    if (fault >= 0)
        s.fault_next[fault] = cudaErrorIllegalAddress;
    const char *stats = getenv("SL_MOCK_STATS");
    if (stats && *stats) {
        s.stats_path = stats;
        atexit(write_stats);
    }
    void *p = mmap(nullptr, kArena, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED)
        sl_mock_fatal("cannot reserve %zu bytes of address space for device memory: %s", kArena, strerror(errno));
    s.arena = static_cast<unsigned char *>(p);
    for (size_t d = 0; d < kMaxDevices; d++) {
        s.legacy[d].device = (int)d;
        s.legacy[d].flags = cudaStreamDefault;
        s.legacy[d].error = cudaSuccess;
        s.legacy[d].id = -1 - (int)d;
        s.legacy[d].enq = s.legacy[d].done = 0;
        s.legacy[d].capture = nullptr;
        s.legacy[d].capture_broken = nullptr;
        s.pool[d].device = (int)d;
        s.pool[d].release_threshold = 0; // the driver's default: release everything unused at each sync
        s.pool[d].inuse = s.pool[d].cached = 0;
    }
}

size_t page_up(size_t x)
{
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (x + pg - 1) / pg * pg;
}

void protect(State &s, int prot)
{
    if (s.top && mprotect(s.arena, page_up(s.top), prot) != 0)
        sl_mock_fatal("mprotect of the device arena: %s", strerror(errno));
}

// Device work in scope: the arena is accessible.
struct Access {
    State &s;
    explicit Access(State &st) : s(st)
    {
        if (s.access++ == 0)
            protect(s, PROT_READ | PROT_WRITE);
    }
    ~Access()
    {
        if (--s.access == 0)
            protect(s, PROT_NONE);
    }
};

CUstream_st *resolve(State &s, cudaStream_t st)
{
    if (st == nullptr || st == cudaStreamLegacy || st == cudaStreamPerThread)
        return &s.legacy[t_device];
    for (CUstream_st *x : s.streams)
        if (x == st)
            return x;
    sl_mock_fatal("stream %p is not a live stream (destroyed, or never created)", (void *)st);
}

void run_queue(State &s, CUstream_st *st)
{
    if (st->q.empty())
        return;
    Access a(s); // one mapping change per drain, not per operation
    while (!st->q.empty()) {
        std::function<void()> w = std::move(st->q.front());
        st->q.pop_front();
        if (!s.sticky[st->device]) // a broken context runs nothing more
            w();
        st->done++;
    }
}

// Runs st's queue until its first target operations have run (an event's work).
void run_until(State &s, CUstream_st *st, unsigned long long target)
{
    if (!st || st->done >= target)
        return;
    Access a(s);
    while (st->done < target && !st->q.empty()) {
        std::function<void()> w = std::move(st->q.front());
        st->q.pop_front();
        if (!s.sticky[st->device])
            w();
        st->done++;
    }
}

// Frees cached pool blocks (largest first) until the pool of dev reserves at
// most keep bytes, or nothing unused is left: cudaMemPoolTrimTo, and what a
// synchronisation does above the release threshold.
void pool_release(State &s, int dev, size_t keep)
{
    CUmemPoolHandle_st &p = s.pool[dev];
    while (!p.cache.empty() && p.inuse + p.cached > keep) {
        auto big = std::prev(p.cache.end());
        p.cached -= *big;
        s.used[dev] -= *big;
        p.cache.erase(big);
    }
}

// Drains st; a blocking stream first waits for the legacy stream of its device.
cudaError_t drain(State &s, CUstream_st *st)
{
    if (st != &s.legacy[st->device] && !(st->flags & cudaStreamNonBlocking))
        run_queue(s, &s.legacy[st->device]);
    run_queue(s, st);
    clock_merge(s.host_clk, st->clk);
    if (st != &s.legacy[st->device] && !(st->flags & cudaStreamNonBlocking))
        clock_merge(s.host_clk, s.legacy[st->device].clk);
    pool_release(s, st->device, s.pool[st->device].release_threshold);
    cudaError_t e = s.sticky[st->device] ? s.sticky[st->device] : st->error;
    return e;
}

void drain_device(State &s, int dev)
{
    run_queue(s, &s.legacy[dev]);
    clock_merge(s.host_clk, s.legacy[dev].clk);
    for (CUstream_st *x : s.streams)
        if (x->device == dev) {
            run_queue(s, x);
            clock_merge(s.host_clk, x->clk);
        }
    pool_release(s, dev, s.pool[dev].release_threshold);
}

void drain_all(State &s)
{
    for (int d = 0; d < s.devices; d++)
        drain_device(s, d);
}

cudaError_t fail(cudaError_t e)
{
    t_last = e;
    return e;
}

// The allocation containing p: offset into allocs, or allocs.end().
std::map<size_t, Alloc>::iterator find_alloc(State &s, const void *p)
{
    const unsigned char *c = static_cast<const unsigned char *>(p);
    if (!s.arena || c < s.arena || c >= s.arena + kArena)
        return s.allocs.end();
    const size_t off = (size_t)(c - s.arena);
    auto it = s.allocs.upper_bound(off);
    if (it == s.allocs.begin())
        return s.allocs.end();
    --it;
    if (off >= it->first + (it->second.size ? it->second.size : 1))
        return s.allocs.end();
    return it;
}

bool is_pinned(State &s, const void *p, size_t bytes)
{
    const uintptr_t a = (uintptr_t)p;
    auto it = s.pinned.upper_bound(a);
    if (it == s.pinned.begin())
        return false;
    --it;
    return a >= it->first && a + bytes <= it->first + it->second.size;
}

cudaError_t dev_alloc(State &s, void **p, size_t bytes, int dev, bool pool)
{
    ensure_init(s);
    if (!p)
        return fail(cudaErrorInvalidValue);
    *p = nullptr;
    if (dev >= s.devices)
        return fail(cudaErrorInvalidDevice);
    const size_t need = (bytes + kAlign - 1) / kAlign * kAlign;
    if (bytes == 0)
        return cudaSuccess; // cudaMalloc(0) gives NULL and succeeds
    if (s.sticky[dev])
        return fail(s.sticky[dev]);
    if (s.fail_from && bytes >= s.fail_from)
        return fail(cudaErrorMemoryAllocation);
    // A pool allocation reuses the smallest cached block that holds it (whole:
    // blocks are not split); otherwise it needs new device memory, which the
    // blocks the pool keeps cached also occupy (a full device with a fat pool
    // fails until the pool is trimmed).
    size_t charged = need;
    CUmemPoolHandle_st &pl = s.pool[dev];
    auto blk = pool ? pl.cache.lower_bound(need) : pl.cache.end();
    if (blk != pl.cache.end()) {
        charged = *blk;
        pl.cached -= charged;
        pl.cache.erase(blk);
    } else if (need > s.device_mem || s.used[dev] > s.device_mem - need) {
        return fail(cudaErrorMemoryAllocation);
    } else {
        s.used[dev] += need;
    }
    if (pool)
        pl.inuse += charged;
    size_t off = SIZE_MAX;
    for (auto it = s.free_list.begin(); it != s.free_list.end(); ++it)
        if (it->second >= need) {
            off = it->first;
            const size_t rest = it->second - need;
            s.free_list.erase(it);
            if (rest)
                s.free_list[off + need] = rest;
            break;
        }
    if (off == SIZE_MAX) {
        if (s.top + need > kArena)
            return fail(cudaErrorMemoryAllocation);
        off = s.top;
        s.top += need;
        if (s.access > 0) // device work in progress: the new pages must be accessible too
            protect(s, PROT_READ | PROT_WRITE);
    }
    s.allocs[off] = Alloc{bytes, dev, false, pool, charged};
    s.hazards.erase(off); // a new allocation has no history
    if (s.used[dev] > s.peak[dev])
        s.peak[dev] = s.used[dev];
    s.n_dev_allocs++;
    {
        Access a(s); // (re)maps the new high-water mark too
        memset(s.arena + off, 0xFF, need);
    }
    *p = s.arena + off;
    return cudaSuccess;
}

// Returns the block at off to the free list (device memory released to the OS).
void dev_release(State &s, size_t off)
{
    auto it = s.allocs.find(off);
    const size_t need = (it->second.size + kAlign - 1) / kAlign * kAlign;
    const int dev = it->second.device;
    if (it->second.pool) { // back to the pool's cache: still reserved on the device
        s.pool[dev].inuse -= it->second.charged;
        s.pool[dev].cache.insert(it->second.charged);
        s.pool[dev].cached += it->second.charged;
    } else {
        s.used[dev] -= it->second.charged;
    }
    s.allocs.erase(it);
    s.hazards.erase(off);
    {
        Access a(s);
        memset(s.arena + off, 0xFF, need); // stale readers see NaN
    }
    // The pages stay mapped (bounded by the high-water mark): re-faulting them on
    // every per-call allocation would cost more than the emulated kernels.
    size_t start = off, len = need;
    auto nx = s.free_list.lower_bound(off);
    if (nx != s.free_list.end() && nx->first == off + len) {
        len += nx->second;
        nx = s.free_list.erase(nx);
    }
    if (nx != s.free_list.begin()) {
        auto pv = std::prev(nx);
        if (pv->first + pv->second == start) {
            start = pv->first;
            len += pv->second;
            s.free_list.erase(pv);
        }
    }
    s.free_list[start] = len;
}

// The live allocation starting exactly at p (what cudaFree* accept).
std::map<size_t, Alloc>::iterator alloc_at(State &s, void *p)
{
    auto it = find_alloc(s, p);
    if (it == s.allocs.end() || s.arena + it->first != p)
        return s.allocs.end();
    return it;
}

} // namespace sl_mock_rt

using namespace sl_mock_rt;

// ---------------------------------------------------------------- mock.h

void sl_mock_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cudamock: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

void sl_mock_enqueue(cudaStream_t s, std::function<void()> work)
{
    State &st = S();
    std::lock_guard<std::recursive_mutex> g(st.mu);
    ensure_init(st);
    push(st, resolve(st, s), std::move(work), {}, "a library call");
}

void sl_mock_check_device(const void *p, size_t bytes, const char *what)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    auto it = find_alloc(s, p);
    if (it == s.allocs.end())
        sl_mock_fatal("%s: %p is not in a live device allocation", what, p);
    if (it->second.free_pending)
        sl_mock_fatal("%s: %p is in an allocation already freed (cudaFreeAsync queued before this use)", what, p);
    const size_t off = (size_t)(static_cast<const unsigned char *>(p) - s.arena);
    if (bytes > it->second.size - (off - it->first))
        sl_mock_fatal("%s: %zu bytes at %p run past the end of its %zu-byte allocation (offset %zu)", what, bytes, p,
                      it->second.size, off - it->first);
}

int sl_mock_is_device(const void *p)
{
    State &s = S();
    const unsigned char *c = static_cast<const unsigned char *>(p);
    return s.arena && c >= s.arena && c < s.arena + kArena;
}

void sl_mock_poison(void *p, size_t bytes)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    Access a(s);
    memset(p, 0xFF, bytes);
}

namespace {
void launch_trampoline(void *closure) { (*static_cast<std::function<void()> *>(closure))(); }
} // namespace

namespace {
// The mocked device has 4 SMs of an sm_90 device (2,048 threads, 32 blocks and
// 228 KiB of shared memory each, 1 KiB of it reserved per block): a full
// cooperative grid is then at most the 8,192 threads the emulation runs at once
// (kSMs: cudart_impl.h).
int blocks_per_sm(int threads, size_t shmem)
{
    if (threads < 1 || threads > 1024)
        return 0;
    const int warps = (threads + 31) / 32;
    int n = 64 / warps; // 64 warps per SM
    if (n > 32)
        n = 32;
    const size_t per_block = shmem + 1024;
    if (per_block > 233472)
        return 0;
    const int by_smem = (int)(233472 / per_block);
    return by_smem < n ? by_smem : n;
}
} // namespace

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *num, const void *func, int threads,
                                                                   size_t shmem, unsigned int flags)
{
    if (!num || !func || (flags != cudaOccupancyDefault && flags != cudaOccupancyDisableCachingOverride))
        return fail(cudaErrorInvalidValue);
    *num = blocks_per_sm(threads, shmem);
    return cudaSuccess;
}

cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *num, const void *func, int threads, size_t shmem)
{
    return cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(num, func, threads, shmem, cudaOccupancyDefault);
}

void sl_mock_launch(cudaStream_t s, const char *kernel, dim3 grid, dim3 block, size_t shmem,
                    std::function<void()> body)
{
    launch(s, kernel, grid, block, shmem, std::move(body), false);
}

void sl_mock_launch_coop(cudaStream_t s, const char *kernel, dim3 grid, dim3 block, size_t shmem,
                         std::function<void()> body)
{
    launch(s, kernel, grid, block, shmem, std::move(body), true);
}

static void launch(cudaStream_t s, const char *kernel, dim3 grid, dim3 block, size_t shmem,
                   std::function<void()> body, bool coop)
{
    const unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !nthreads || grid.x > INT_MAX || grid.y > 65535 || grid.z > 65535 ||
        nthreads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
        shmem > sl_emu_max_dyn_shared(kernel)) {
        t_last = cudaErrorInvalidConfiguration;
        return;
    }
    if (coop && (unsigned long long)grid.x * grid.y * grid.z >
                    (unsigned long long)blocks_per_sm((int)nthreads, shmem) * kSMs) {
        t_last = cudaErrorCooperativeLaunchTooLarge; // "too many blocks in cooperative launch"
        return;
    }
    State &st = S();
    std::lock_guard<std::recursive_mutex> g(st.mu);
    ensure_init(st);
    CUstream_st *q = resolve(st, s);
    if (q->device != t_device) {
        // "A kernel launch will fail if it is issued to a stream that is not
        // associated to the current device."
        t_last = cudaErrorInvalidResourceHandle;
        return;
    }
    if (st.sticky[q->device]) {
        t_last = st.sticky[q->device];
        return;
    }
    State *sp = &st;
    push(st, q, [sp, q, kernel, grid, block, shmem, body, coop]() mutable {
        if (sp->fault_next[q->device]) { // injected: this kernel faults, the context is broken
            sp->sticky[q->device] = sp->fault_next[q->device];
            sp->fault_next[q->device] = cudaSuccess;
            return;
        }
        const int rc = coop ? sl_emu_launch_coop(kernel, grid, block, shmem, &launch_trampoline, &body)
                            : sl_emu_launch(kernel, grid, block, shmem, &launch_trampoline, &body);
        if (rc < 0 && q->error == cudaSuccess)
            q->error = cudaErrorLaunchFailure;
    }, {}, kernel);
}

size_t sl_mock_live_device_bytes(void)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    size_t n = 0;
    for (auto &a : s.allocs)
        n += a.second.size;
    return n;
}

void sl_mock_fail_allocs_from(size_t bytes)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    s.fail_from = bytes;
}

void sl_mock_inject_fault(int device, int error)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (device < 0 || device >= (int)kMaxDevices)
        sl_mock_fatal("sl_mock_inject_fault: no device %d", device);
    s.fault_next[device] = (cudaError_t)error;
}

int sl_mock_device_error(int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    return device >= 0 && device < (int)kMaxDevices ? (int)s.sticky[device] : 0;
}

size_t sl_mock_pool_release_threshold(int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    return (size_t)s.pool[device].release_threshold;
}

size_t sl_mock_live_pinned(void)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    return s.pinned.size();
}
