// cudamock internals shared by the runtime stand-in's files (cudart_mock.cpp:
// state, arena, allocator, draining, launches; cudart_api_mock.cpp: the runtime
// API for memory, streams, copies; graph_mock.cpp: events, stream capture, graphs).
// Everything runs under State::mu (a recursive lock).
#ifndef SL_CUDART_IMPL_H
#define SL_CUDART_IMPL_H

#include "mock.h"

#include <stdint.h>

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <vector>

typedef std::map<int, unsigned long long> sl_mock_clock; // vector clock: stream id -> operations ordered before

// A device range an operation reads or writes (the ordering checks, below).
struct sl_mock_access {
    const void *p;
    size_t bytes;
    bool write;
};

// One captured operation: its work and the device ranges it touches.
struct sl_mock_node {
    std::function<void()> work;
    std::vector<sl_mock_access> acc;
    const char *what;
};

struct CUgraph_st {
    int device;
    std::vector<sl_mock_node> nodes;
};

struct CUgraphExec_st {
    int device;
    std::vector<sl_mock_node> nodes;
};

struct CUstream_st {
    int device;
    unsigned flags;
    std::deque<std::function<void()>> q;
    cudaError_t error; // sticky: a queued operation failed
    int id;                       // for the ordering checks (-1 - device: the legacy stream)
    unsigned long long enq, done; // operations queued on it / run so far
    sl_mock_clock clk;            // what is ordered before its next operation
    CUgraph_st *capture;          // stream capture in progress into this graph, else NULL
    cudaStreamCaptureMode capture_mode;
    const char *capture_broken;   // the call that invalidated the capture, else NULL
};

struct CUevent_st {
    int device;
    CUstream_st *stream;      // where it was last recorded (NULL: never, or that stream is gone and drained)
    unsigned long long target; // the recorded work: the first target operations of stream
    sl_mock_clock clk;         // what that work is ordered after
};

struct CUmemPoolHandle_st {
    int device;
    uint64_t release_threshold;
    size_t inuse;                    // bytes of live pool allocations
    std::multiset<size_t> cache;     // freed pool blocks still reserved (counted in used[device])
    size_t cached;                   // their sum
};

namespace sl_mock_rt {

const size_t kArena = (size_t)1 << 38; // 256 GiB of address space, PROT_NONE until used
const size_t kAlign = 256;             // cudaMalloc's guarantee
const size_t kMaxDevices = 16;
const int kSMs = 4;                    // SMs of a mocked device (cudart_mock.cpp: launches)

struct Alloc {
    size_t size;
    int device;
    bool free_pending; // cudaFreeAsync queued, not yet run: unusable by later work
    bool pool;         // from the device's default pool (cudaMallocAsync)
    size_t charged;    // bytes counted against the device (a reused pool block: the whole block)
};

struct Pinned {
    size_t size;
};

struct State {
    std::recursive_mutex mu;
    unsigned char *arena = nullptr;
    size_t top = 0;                      // bytes of the arena ever handed out (high-water mark)
    std::map<size_t, size_t> free_list;  // offset -> length, coalesced
    std::map<size_t, Alloc> allocs;      // offset -> allocation
    std::map<uintptr_t, Pinned> pinned;  // host address -> pinned allocation
    int devices = 1;
    size_t device_mem = (size_t)4096 << 20;
    size_t used[kMaxDevices] = {};
    size_t peak[kMaxDevices] = {}; // high-water mark of used (SL_MOCK_STATS)
    unsigned long long n_dev_allocs = 0, n_pinned_allocs = 0;
    const char *stats_path = nullptr;
    int pools = 1;
    int driver = CUDART_VERSION;
    CUstream_st legacy[kMaxDevices];
    CUmemPoolHandle_st pool[kMaxDevices];
    std::vector<CUstream_st *> streams;
    int access = 0; // nesting depth of device work (arena accessible when > 0)
    cudaError_t sticky[kMaxDevices] = {};    // a fault broke the device's context: every later call fails
    cudaError_t fault_next[kMaxDevices] = {}; // injected: the next kernel run on the device faults so
    // Ordering checks: the host's vector clock (what a host synchronisation has
    // seen complete) and, per live allocation (by arena offset), its last write
    // and the reads since: an operation on one stream that touches memory
    // another stream wrote (or read, for a write) must be ordered after it.
    sl_mock_clock host_clk;
    struct Hazard {
        int w_stream = 0;
        unsigned long long w_seq = 0; // 0: never written by a stream
        const char *w_what = nullptr;
        std::map<int, std::pair<unsigned long long, const char *>> reads;
    };
    std::map<size_t, Hazard> hazards;
    std::set<CUevent_st *> events;
    int next_stream_id = 1;
    unsigned long long host_syncs = 0, graph_captures = 0, graph_launches = 0;
    size_t fail_from = 0;                    // injected: device allocations of >= fail_from bytes fail (0: off)
    bool init = false;
};

// The process-wide state (made at the first call, never destroyed).
State &S();
// Reads the environment, reserves the arena: once, lock held.
void ensure_init(State &s);
extern thread_local cudaError_t t_last;      // cudaGetLastError's slot
extern thread_local int t_device;            // cudaSetDevice
extern thread_local CUstream_st *t_capture;  // the stream this thread captures (thread-local / global mode)
cudaError_t fail(cudaError_t e);             // sets t_last, returns e
CUstream_st *resolve(State &s, cudaStream_t st); // (0 / legacy / per-thread: the device's legacy stream)
void run_queue(State &s, CUstream_st *st);   // runs every queued operation of st
void run_until(State &s, CUstream_st *st, unsigned long long target); // ... until target have run
void clock_merge(sl_mock_clock &into, const sl_mock_clock &from);
unsigned long long tick(State &s, CUstream_st *x); // x's next operation: ordered after the host's view
// Queues work on x (ordering of acc checked), or records it while x is captured.
void push(State &s, CUstream_st *x, std::function<void()> work, std::vector<sl_mock_access> acc, const char *what);
void invalidate_capture(CUstream_st *x, const char *call);
// 1 (t_last set, capture invalidated) when call may not run during a capture in progress.
int capture_forbids(State &s, const char *call);
void host_sync(State &s); // counts a host synchronisation
// The live allocation containing p, or s.allocs.end() (cudart_mock.cpp).
std::map<size_t, Alloc>::iterator find_alloc(State &s, const void *p);
// The live allocation starting exactly at p (what cudaFree* accept), or s.allocs.end().
std::map<size_t, Alloc>::iterator alloc_at(State &s, void *p);
bool is_pinned(State &s, const void *p, size_t bytes); // [p, p + bytes) inside one pinned block
// A device allocation of bytes on dev (pool: from its memory pool's cache first).
cudaError_t dev_alloc(State &s, void **p, size_t bytes, int dev, bool pool);
void dev_release(State &s, size_t off);              // the block at arena offset off back to the free list
void pool_release(State &s, int dev, size_t keep);   // trims dev's pool cache to keep bytes
cudaError_t drain(State &s, CUstream_st *st);        // runs st's queue (after the legacy stream's if blocking)
void drain_device(State &s, int dev);                // every stream of dev
void drain_all(State &s);                            // every stream of every device

} // namespace sl_mock_rt

#endif
