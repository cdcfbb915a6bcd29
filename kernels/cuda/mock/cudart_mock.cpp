// cudamock: the CUDA runtime calls the "cuda" backend makes, on the host (see
// mock.h for what is enforced and why). One process-wide recursive lock
// serialises every call and all device work; device work runs with the arena
// readable and writable, host code sees it PROT_NONE.
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
// cooperative grid is then at most the 8,192 threads the emulation runs at once.
const int kSMs = 4;
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

// ---------------------------------------------------------------- the runtime API

extern "C" {

cudaError_t cudaGetLastError(void)
{
    cudaError_t e = t_last;
    t_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void) { return t_last; }

const char *cudaGetErrorName(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureIsolation: return "cudaErrorStreamCaptureIsolation";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
    default: return "cudaErrorUnknown";
    }
}

const char *cudaGetErrorString(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalState: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureIsolation: return "dependency created on uncaptured work in another stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
    default: return "unknown error";
    }
}

cudaError_t cudaRuntimeGetVersion(int *v)
{
    if (!v)
        return fail(cudaErrorInvalidValue);
    *v = CUDART_VERSION;
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!v)
        return fail(cudaErrorInvalidValue);
    *v = s.driver;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int *count)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!count)
        return fail(cudaErrorInvalidValue);
    *count = 0;
    if (!s.driver)
        return fail(cudaErrorInsufficientDriver);
    if (!s.devices)
        return fail(cudaErrorNoDevice);
    *count = s.devices;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!prop)
        return fail(cudaErrorInvalidValue);
    if (device < 0 || device >= s.devices)
        return fail(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "cudamock device %d (host emulation, no GPU)", device);
    prop->major = 9;
    prop->minor = 0;
    prop->totalGlobalMem = s.device_mem;
    prop->sharedMemPerBlock = 48 * 1024;
    prop->maxThreadsPerBlock = 1024;
    prop->warpSize = 32;
    prop->multiProcessorCount = 1;
    prop->maxGridSize[0] = INT_MAX;
    prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    return cudaSuccess;
}

cudaError_t cudaSetDevice(int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!s.devices)
        return fail(cudaErrorNoDevice);
    if (device < 0 || device >= s.devices)
        return fail(cudaErrorInvalidDevice);
    t_device = device;
    return cudaSuccess;
}

cudaError_t cudaGetDevice(int *device)
{
    if (!device)
        return fail(cudaErrorInvalidValue);
    *device = t_device;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!value)
        return fail(cudaErrorInvalidValue);
    if (device < 0 || device >= s.devices)
        return fail(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMemoryPoolsSupported: *value = s.pools; return cudaSuccess;
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = 48 * 1024; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    case cudaDevAttrMultiProcessorCount: *value = kSMs; return cudaSuccess;
    case cudaDevAttrCooperativeLaunch: *value = 1; return cudaSuccess;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 232448; return cudaSuccess;
    default: return fail(cudaErrorInvalidValue);
    }
}

cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t *pool, int device)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!pool)
        return fail(cudaErrorInvalidValue);
    if (device < 0 || device >= s.devices)
        return fail(cudaErrorInvalidDevice);
    if (!s.pools)
        return fail(cudaErrorNotSupported);
    *pool = &s.pool[device];
    return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t pool, cudaMemPoolAttr attr, void *value)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!pool || pool < &s.pool[0] || pool >= &s.pool[kMaxDevices] || !value)
        return fail(cudaErrorInvalidValue);
    if (attr != cudaMemPoolAttrReleaseThreshold)
        return fail(cudaErrorInvalidValue); // the only attribute the backend sets
    pool->release_threshold = *static_cast<uint64_t *>(value);
    return cudaSuccess;
}

cudaError_t cudaMemPoolTrimTo(cudaMemPool_t pool, size_t minBytesToKeep)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!pool || pool < &s.pool[0] || pool >= &s.pool[kMaxDevices])
        return fail(cudaErrorInvalidValue);
    pool_release(s, pool->device, minBytesToKeep);
    return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned int flags)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!stream || (flags & ~(unsigned)cudaStreamNonBlocking))
        return fail(cudaErrorInvalidValue);
    if (!s.devices)
        return fail(cudaErrorNoDevice);
    CUstream_st *x = new CUstream_st();
    x->device = t_device;
    x->flags = flags;
    x->error = cudaSuccess;
    x->id = s.next_stream_id++;
    s.streams.push_back(x);
    *stream = x;
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!stream)
        return fail(cudaErrorInvalidResourceHandle);
    CUstream_st *x = resolve(s, stream);
    if (x->capture)
        return fail(cudaErrorStreamCaptureUnsupported);
    drain(s, x); // the documented behaviour: queued work completes, then the stream goes
    for (CUevent_st *ev : s.events) // (their work has run)
        if (ev->stream == x)
            ev->stream = nullptr;
    for (size_t i = 0; i < s.streams.size(); i++)
        if (s.streams[i] == x) {
            s.streams.erase(s.streams.begin() + (long)i);
            break;
        }
    delete x;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (capture_forbids(s, "cudaStreamSynchronize"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    cudaError_t e = drain(s, resolve(s, stream));
    return e == cudaSuccess ? e : fail(e);
}

cudaError_t cudaDeviceSynchronize(void)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (capture_forbids(s, "cudaDeviceSynchronize"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    drain_device(s, t_device);
    return s.sticky[t_device] ? fail(s.sticky[t_device]) : cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!s.devices)
        return fail(cudaErrorNoDevice);
    if (capture_forbids(s, "cudaMalloc"))
        return cudaErrorStreamCaptureUnsupported;
    return dev_alloc(s, p, bytes, t_device, false);
}

cudaError_t cudaMallocAsync(void **p, size_t bytes, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!s.pools)
        return fail(cudaErrorNotSupported);
    // (stricter than the driver, which records an allocation node: the backend
    // allocates before a capture, never inside one)
    if (capture_forbids(s, "cudaMallocAsync"))
        return cudaErrorStreamCaptureUnsupported;
    CUstream_st *x = resolve(s, stream);
    if (x->device != t_device) // stricter than the driver promises (it would use the stream's device's pool)
        return fail(cudaErrorInvalidResourceHandle);
    cudaError_t e = dev_alloc(s, p, bytes, x->device, true);
    if (e == cudaErrorMemoryAllocation && !x->q.empty()) {
        // Memory freed earlier in this stream's order is reusable by later work in
        // it: run the queue (as the pool would have) and try again.
        t_last = cudaSuccess;
        run_queue(s, x);
        e = dev_alloc(s, p, bytes, x->device, true);
    }
    return e;
}

cudaError_t cudaFree(void *p)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!p)
        return cudaSuccess;
    auto it = alloc_at(s, p);
    if (it == s.allocs.end() || it->second.free_pending)
        return fail(cudaErrorInvalidDevicePointer);
    if (it->second.device != t_device) // stricter than the driver promises: the owner's device must be current
        return fail(cudaErrorInvalidDevicePointer);
    if (s.sticky[t_device])
        return fail(s.sticky[t_device]);
    if (capture_forbids(s, "cudaFree"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    drain_all(s); // cudaFree synchronises
    dev_release(s, it->first);
    return cudaSuccess;
}

cudaError_t cudaFreeAsync(void *p, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!p)
        return cudaSuccess;
    if (capture_forbids(s, "cudaFreeAsync")) // (stricter than the driver, as cudaMallocAsync)
        return cudaErrorStreamCaptureUnsupported;
    auto it = alloc_at(s, p);
    if (it == s.allocs.end() || it->second.free_pending)
        return fail(cudaErrorInvalidDevicePointer);
    CUstream_st *x = resolve(s, stream);
    if (x->device != t_device) // like a launch: the stream's device must be current
        return fail(cudaErrorInvalidResourceHandle);
    if (s.sticky[x->device])
        return fail(s.sticky[x->device]);
    if (it->second.device != x->device)
        return fail(cudaErrorInvalidDevicePointer);
    it->second.free_pending = true;
    const size_t off = it->first;
    State *sp = &s;
    push(s, x, [sp, off]() { dev_release(*sp, off); }, {sl_mock_access{p, 0, true}}, "cudaFreeAsync");
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!p || (flags & ~(unsigned)(cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined)))
        return fail(cudaErrorInvalidValue);
    if (capture_forbids(s, "cudaHostAlloc"))
        return cudaErrorStreamCaptureUnsupported;
    *p = nullptr;
    const size_t n = bytes ? (bytes + 4095) / 4096 * 4096 : 4096;
    void *h = aligned_alloc(4096, n);
    if (!h)
        return fail(cudaErrorMemoryAllocation);
    memset(h, 0xFF, n); // pinned memory is not zeroed either
    s.pinned[(uintptr_t)h] = Pinned{bytes};
    s.n_pinned_allocs++;
    *p = h;
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) { return cudaHostAlloc(p, bytes, cudaHostAllocDefault); }

cudaError_t cudaFreeHost(void *p)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!p)
        return cudaSuccess;
    auto it = s.pinned.find((uintptr_t)p);
    if (it == s.pinned.end())
        return fail(cudaErrorInvalidValue);
    if (capture_forbids(s, "cudaFreeHost"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    drain_all(s); // implicitly synchronising: queued copies may still read it
    s.pinned.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    CUstream_st *x = resolve(s, stream);
    if (s.sticky[x->device])
        return fail(s.sticky[x->device]);
    if (bytes == 0)
        return cudaSuccess;
    if (!dst || !src)
        return fail(cudaErrorInvalidValue);
    const bool dd = sl_mock_is_device(dst), sd = sl_mock_is_device(src);
    if (kind == cudaMemcpyDefault)
        kind = dd ? (sd ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                  : (sd ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    const bool want_dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool want_sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice &&
        kind != cudaMemcpyHostToHost)
        return fail(cudaErrorInvalidMemcpyDirection);
    if (dd != want_dd || sd != want_sd)
        sl_mock_fatal("cudaMemcpyAsync(%p <- %p, %zu bytes): kind %d does not match the pointers (destination %s, "
                      "source %s)",
                      dst, src, bytes, (int)kind, dd ? "device" : "host", sd ? "device" : "host");
    if (dd)
        sl_mock_check_device(dst, bytes, "cudaMemcpyAsync destination");
    if (sd)
        sl_mock_check_device(src, bytes, "cudaMemcpyAsync source");
    std::vector<sl_mock_access> acc;
    if (dd)
        acc.push_back(sl_mock_access{dst, bytes, true});
    if (sd)
        acc.push_back(sl_mock_access{src, bytes, false});
    const bool pageable = (kind == cudaMemcpyHostToDevice && !is_pinned(s, src, bytes)) ||
                          (kind == cudaMemcpyDeviceToHost && !is_pinned(s, dst, bytes));
    // Pageable memory: staged or waited for at the call, which a graph cannot
    // record (the driver refuses it in a capture; the backend never does it).
    if (pageable && x->capture) {
        invalidate_capture(x, "cudaMemcpyAsync from or to pageable host memory");
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    if (kind == cudaMemcpyDeviceToHost && pageable && capture_forbids(s, "cudaMemcpyAsync to pageable memory"))
        return cudaErrorStreamCaptureUnsupported;
    if (kind == cudaMemcpyHostToDevice && pageable) {
        // Pageable source: staged at the call, the caller may reuse it at once.
        std::vector<unsigned char> snap(static_cast<const unsigned char *>(src),
                                        static_cast<const unsigned char *>(src) + bytes);
        push(s, x, [dst, snap]() { memcpy(dst, snap.data(), snap.size()); }, acc, "cudaMemcpyAsync");
        return cudaSuccess;
    }
    push(s, x, [dst, src, bytes]() { memmove(dst, src, bytes); }, acc, "cudaMemcpyAsync");
    if (kind == cudaMemcpyDeviceToHost && pageable) {
        // Pageable destination: the call returns once the copy is done.
        host_sync(s);
        cudaError_t e = drain(s, x);
        if (e != cudaSuccess)
            return fail(e);
    }
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (capture_forbids(s, "cudaMemcpy"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    drain_device(s, t_device);
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, nullptr);
    if (e == cudaSuccess)
        run_queue(s, &s.legacy[t_device]);
    return e;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    CUstream_st *x = resolve(s, stream);
    if (s.sticky[x->device])
        return fail(s.sticky[x->device]);
    if (bytes == 0)
        return cudaSuccess;
    sl_mock_check_device(p, bytes, "cudaMemsetAsync");
    push(s, x, [p, value, bytes]() { memset(p, value, bytes); }, {sl_mock_access{p, bytes, true}}, "cudaMemsetAsync");
    return cudaSuccess;
}

} // extern "C"
