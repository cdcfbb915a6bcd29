// cudamock: events, stream capture and graphs of the CUDA runtime (see
// mock.h): event waits run the other stream's queue up to the recorded point;
// a capturing stream records its operations (cudart_impl.h push) and a graph
// launch queues them again; host synchronisations and graphs are counted.
#include "cudart_impl.h"

#include <stdio.h>

namespace sl_mock_rt {

void clock_merge(sl_mock_clock &into, const sl_mock_clock &from)
{
    for (auto &c : from)
        if (into[c.first] < c.second)
            into[c.first] = c.second;
}

// ---- stream ordering checks

const char *stream_name(State &s, int id, char *buf, size_t n)
{
    (void)s;
    if (id < 0)
        snprintf(buf, n, "the legacy stream of device %d", -1 - id);
    else
        snprintf(buf, n, "stream #%d", id);
    return buf;
}

// The next operation of x: what x is ordered after now (the host's view, and
// the legacy stream's for a blocking stream), then its own sequence number.
unsigned long long tick(State &s, CUstream_st *x)
{
    clock_merge(x->clk, s.host_clk);
    CUstream_st *leg = &s.legacy[x->device];
    if (x != leg && !(x->flags & cudaStreamNonBlocking))
        clock_merge(x->clk, leg->clk);
    else if (x == leg)
        for (CUstream_st *o : s.streams)
            if (o->device == x->device && !(o->flags & cudaStreamNonBlocking))
                clock_merge(x->clk, o->clk);
    return ++x->clk[x->id];
}

// An operation (what, on x, number seq) reads or writes [p, p + bytes) of device
// memory: aborts when another stream's write to (or, for a write, read of) that
// allocation is not ordered before it (no event waited on, no host
// synchronisation after it): the data race a real GPU would run into.
void check_order(State &s, CUstream_st *x, unsigned long long seq, const sl_mock_access &a, const char *what)
{
    auto it = find_alloc(s, a.p);
    if (it == s.allocs.end())
        return; // host memory, or a range the call checks itself
    State::Hazard &h = s.hazards[it->first];
    char b1[64], b2[64];
    if (h.w_seq && h.w_stream != x->id && x->clk[h.w_stream] < h.w_seq)
        sl_mock_fatal("%s on %s %s %p (in a %zu-byte allocation) that %s on %s wrote, with nothing ordering it "
                      "after that write (no cudaStreamWaitEvent on an event recorded after it, no host "
                      "synchronisation since): a race on a GPU",
                      what, stream_name(s, x->id, b1, sizeof b1), a.write ? "writes" : "reads", a.p,
                      it->second.size, h.w_what, stream_name(s, h.w_stream, b2, sizeof b2));
    if (a.write) {
        for (auto &r : h.reads)
            if (r.first != x->id && x->clk[r.first] < r.second.first)
                sl_mock_fatal("%s on %s writes %p (in a %zu-byte allocation) that %s on %s still reads, with "
                              "nothing ordering the write after that read: a race on a GPU",
                              what, stream_name(s, x->id, b1, sizeof b1), a.p, it->second.size, r.second.second,
                              stream_name(s, r.first, b2, sizeof b2));
        h.w_stream = x->id;
        h.w_seq = seq;
        h.w_what = what;
        h.reads.clear();
    } else {
        h.reads[x->id] = std::make_pair(seq, what);
    }
}

// Queues work on x, or appends it to x's graph while x is being captured.
void push(State &s, CUstream_st *x, std::function<void()> work, std::vector<sl_mock_access> acc, const char *what)
{
    if (x->capture) {
        x->capture->nodes.push_back(sl_mock_node{std::move(work), std::move(acc), what});
        return;
    }
    const unsigned long long seq = tick(s, x);
    for (const sl_mock_access &a : acc)
        check_order(s, x, seq, a, what);
    x->q.push_back(std::move(work));
    x->enq++;
}

thread_local CUstream_st *t_capture = nullptr; // the stream this thread captures (ThreadLocal / Global mode)

void invalidate_capture(CUstream_st *x, const char *call)
{
    if (!x->capture_broken)
        x->capture_broken = call;
}

// A call that may not run while a capture is in progress ("potentially unsafe"
// calls: synchronisations, allocations, frees...): the calling thread's own
// capture (ThreadLocal or Global mode) or any Global-mode capture is
// invalidated, and the call fails with cudaErrorStreamCaptureUnsupported, as
// the driver does. Returns 1 when the call must fail.
int capture_forbids(State &s, const char *call)
{
    int hit = 0;
    if (t_capture && t_capture->capture && t_capture->capture_mode != cudaStreamCaptureModeRelaxed) {
        invalidate_capture(t_capture, call);
        hit = 1;
    }
    for (CUstream_st *x : s.streams)
        if (x->capture && x->capture_mode == cudaStreamCaptureModeGlobal && x != t_capture) {
            invalidate_capture(x, call);
            hit = 1;
        }
    if (hit)
        t_last = cudaErrorStreamCaptureUnsupported;
    return hit;
}

// A host synchronisation (counted: tests assert where they happen).
void host_sync(State &s) { s.host_syncs++; }

} // namespace sl_mock_rt

using namespace sl_mock_rt;

extern "C" {

// ---- events (stream ordering)

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!event || (flags & ~(unsigned)(cudaEventBlockingSync | cudaEventDisableTiming)))
        return fail(cudaErrorInvalidValue);
    CUevent_st *e = new CUevent_st();
    e->device = t_device;
    s.events.insert(e);
    *event = e;
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!event || !s.events.erase(event))
        return fail(cudaErrorInvalidResourceHandle);
    delete event; // (work waiting on it keeps its own copy, as the driver's does)
    return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!event || !s.events.count(event))
        return fail(cudaErrorInvalidResourceHandle);
    CUstream_st *x = resolve(s, stream);
    if (x->device != event->device || x->device != t_device)
        return fail(cudaErrorInvalidResourceHandle);
    if (x->capture) { // (the mock records no event nodes: the backend records events outside captures)
        invalidate_capture(x, "cudaEventRecord");
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    tick(s, x); // the record is an operation of x: ordered after everything queued on it so far
    event->stream = x;
    event->target = x->enq;
    event->clk = x->clk;
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!event || !s.events.count(event) || flags != cudaEventWaitDefault)
        return fail(!event || !s.events.count(event) ? cudaErrorInvalidResourceHandle : cudaErrorInvalidValue);
    CUstream_st *x = resolve(s, stream);
    if (x->device != t_device)
        return fail(cudaErrorInvalidResourceHandle);
    if (x->capture) { // an event recorded outside this capture
        invalidate_capture(x, "cudaStreamWaitEvent");
        return fail(cudaErrorStreamCaptureIsolation);
    }
    if (!event->stream)
        return cudaSuccess; // never recorded (or its work has run): nothing to wait for
    CUstream_st *src = event->stream;
    const unsigned long long target = event->target;
    clock_merge(x->clk, event->clk);
    State *sp = &s;
    push(s, x, [sp, src, target]() { run_until(*sp, src, target); }, {}, "cudaStreamWaitEvent");
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!event || !s.events.count(event))
        return fail(cudaErrorInvalidResourceHandle);
    if (capture_forbids(s, "cudaEventSynchronize"))
        return cudaErrorStreamCaptureUnsupported;
    host_sync(s);
    if (event->stream) {
        CUstream_st *src = event->stream;
        if (src != &s.legacy[src->device] && !(src->flags & cudaStreamNonBlocking))
            run_queue(s, &s.legacy[src->device]);
        run_until(s, src, event->target);
    }
    clock_merge(s.host_clk, event->clk);
    return s.sticky[event->device] ? fail(s.sticky[event->device]) : cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!event || !s.events.count(event))
        return fail(cudaErrorInvalidResourceHandle);
    // Queued work runs only when something waits for it: not done yet means not
    // ready (a caller that polls must also wait at some point).
    if (event->stream && event->stream->done < event->target)
        return cudaErrorNotReady;
    clock_merge(s.host_clk, event->clk);
    return cudaSuccess;
}

// ---- stream capture and graphs

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    CUstream_st *x = resolve(s, stream);
    if (x == &s.legacy[x->device]) // the legacy stream cannot be captured
        return fail(cudaErrorStreamCaptureUnsupported);
    if (x->device != t_device)
        return fail(cudaErrorInvalidResourceHandle);
    if (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
        mode != cudaStreamCaptureModeRelaxed)
        return fail(cudaErrorInvalidValue);
    if (x->capture || t_capture) // (the mock captures one stream per thread at a time)
        return fail(cudaErrorIllegalState);
    x->capture = new CUgraph_st();
    x->capture->device = x->device;
    x->capture_mode = mode;
    x->capture_broken = nullptr;
    t_capture = x;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t *graph)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!graph)
        return fail(cudaErrorInvalidValue);
    *graph = nullptr;
    CUstream_st *x = resolve(s, stream);
    if (!x->capture)
        return fail(cudaErrorIllegalState);
    if (x->capture_mode != cudaStreamCaptureModeRelaxed && t_capture != x)
        return fail(cudaErrorStreamCaptureWrongThread);
    CUgraph_st *gr = x->capture;
    x->capture = nullptr;
    if (t_capture == x)
        t_capture = nullptr;
    if (x->capture_broken) {
        delete gr;
        return fail(cudaErrorStreamCaptureInvalidated);
    }
    s.graph_captures++;
    *graph = gr;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, enum cudaStreamCaptureStatus *status)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!status)
        return fail(cudaErrorInvalidValue);
    CUstream_st *x = resolve(s, stream);
    *status = !x->capture ? cudaStreamCaptureStatusNone
                          : x->capture_broken ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!exec || !graph || flags)
        return fail(cudaErrorInvalidValue);
    CUgraphExec_st *x = new CUgraphExec_st();
    x->device = graph->device;
    x->nodes = graph->nodes;
    *exec = x;
    return cudaSuccess;
}

// Replays the captured operations on stream in their order (each checked for
// ordering against the other streams as if queued by hand).
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    if (!exec)
        return fail(cudaErrorInvalidValue);
    CUstream_st *x = resolve(s, stream);
    if (x->device != t_device || x->device != exec->device)
        return fail(cudaErrorInvalidResourceHandle);
    if (x->capture) { // (child graphs are not modelled)
        invalidate_capture(x, "cudaGraphLaunch");
        return fail(cudaErrorStreamCaptureUnsupported);
    }
    if (s.sticky[x->device])
        return fail(s.sticky[x->device]);
    for (const sl_mock_node &n : exec->nodes)
        push(s, x, n.work, n.acc, n.what);
    s.graph_launches++;
    return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec)
{
    delete exec; // (queued replays hold copies of the operations)
    return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph)
{
    delete graph;
    return cudaSuccess;
}

} // extern "C"

unsigned long long sl_mock_host_syncs(void)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    return s.host_syncs;
}

void sl_mock_graph_counts(unsigned long long *captures, unsigned long long *launches)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    *captures = s.graph_captures;
    *launches = s.graph_launches;
}

int sl_mock_capture_forbidden(const char *call)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    return capture_forbids(s, call);
}

int sl_mock_stream_capturing(cudaStream_t stream)
{
    State &s = S();
    std::lock_guard<std::recursive_mutex> g(s.mu);
    ensure_init(s);
    return resolve(s, stream)->capture != nullptr;
}
