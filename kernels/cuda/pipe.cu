// Pipelined forwards of the "cuda" backend (ops.h sl_op_pipe_*): a second,
// copy stream beside the context's compute stream, a ring of SL_PIPE_SLOTS
// pinned staging buffers, and CUDA graphs of whole forwards.
//
// Item n of a sequence uses ring slot n % SL_PIPE_SLOTS. Its uploads are
// copied by the host into the slot's pinned input at the call; its downloads
// go, in stream order on the compute stream, into the slot's device output,
// which the copy stream brings back into the slot's pinned output once the
// compute stream's `done` event says the forward finished (event `dl`). The
// host writes the callers' destinations when the slot comes round again (one
// cudaEventSynchronize on `dl`, between forwards: the ring's only wait) or at
// sl_op_pipe_end. So item n+1's upload, item n's compute and item n-1's
// download are queued on two streams at once and overlap on a GPU.
//
// Graphs: a forward is keyed by (model, shape). The first forward of a key runs
// op by op (eager: it may create cuFFT plans, cuDNN handles, grow workspaces);
// the second is captured (cudaStreamBeginCapture in thread-local mode on the
// compute stream): its uploads become device copies from the fixed buffer
// g_in, its downloads copies into the fixed buffer g_out, everything else is
// recorded as issued; then it is instantiated and launched. Later forwards of
// the key run the model's code with ctx->skip_ops set (ops.c queues nothing:
// only the host side of uploads and downloads happens) and launch the graph:
// copy stream: H2D pinned input -> slot's device input, event `up`; compute
// stream: wait `up`, D2D to g_in, the graph, D2D g_out -> slot's device
// output, event `done`. A capture fails when the forward makes a call a graph
// cannot hold (a synchronisation, an allocation or free, a cuFFT plan
// creation...): the key is then run op by op for good (sl_op_pipe_item_end
// returns 1 and the caller runs the forward again). A graph bakes in device
// addresses, so one captured before a device free of the context (or a cuFFT
// plan eviction) is not replayed (st->mem_epoch); its key starts again.
//
// No host synchronisation happens inside a forward; sl_op_pipe_end waits once.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cu_state.h"
extern "C" {
#include "../../common/sl_log.h"
}

#if SL_CUDA_API

#define SL_PIPE_SLOTS 3
#define SL_PIPE_GRAPHS 16
#define SL_PIPE_DEFER 64
#define SL_PIPE_ALIGN 256
static_assert(SL_PIPE_SLOTS >= 3, "upload, compute and download of three forwards overlap");

enum { MODE_EAGER, MODE_CAPTURE, MODE_REPLAY };
enum { KEY_FREE, KEY_SEEN, KEY_GRAPH, KEY_NO_GRAPH };

struct sl_cu_dl {
    void *dst;
    size_t off, bytes;
};

struct sl_cu_slot {
    unsigned char *pin_in, *pin_out; // pinned host staging (cudaHostAlloc)
    void *dev_in, *dev_out;          // device staging
    cudaEvent_t up, done, dl;
    sl_cu_dl *dls;                   // downloads to deliver
    size_t n_dls, cap_dls;
    int busy;                        // queued work whose downloads are not delivered yet
};

struct sl_cu_key {
    int state;
    const void *model;
    size_t shape[4], n_shape;
    cudaGraphExec_t exec;
    unsigned long long epoch, used;
    size_t in_bytes, out_bytes;
};

struct sl_cu_pipe {
    cudaStream_t copy;
    cudaEvent_t fin;
    sl_cu_slot slot[SL_PIPE_SLOTS];
    size_t in_cap, out_cap;     // bytes of every slot's staging
    void *g_in, *g_out;         // the graphs' fixed input / output buffers
    size_t g_in_cap, g_out_cap;
    sl_cu_key keys[SL_PIPE_GRAPHS];
    unsigned long long tick, n;
    int graphs;                 // SL_CUDA_GRAPHS (default 1)
    // the forward in progress
    int in_item, mode, cur;
    sl_cu_key *key;
    size_t in_off, out_off;
    // released after the next full wait (sl_op_pipe_end): may still be in use by queued work
    void *defer_dev[SL_PIPE_DEFER];
    void *defer_host[SL_PIPE_DEFER];
    cudaGraphExec_t defer_exec[SL_PIPE_DEFER];
    int n_defer_dev, n_defer_host, n_defer_exec;
    size_t dev_in_cap;          // bytes of every slot's device input (replays only)
    sl_op_pipe_stats stats;
};

static size_t align_up(size_t x) { return (x + SL_PIPE_ALIGN - 1) / SL_PIPE_ALIGN * SL_PIPE_ALIGN; }

static int env_graphs(void)
{
    const char *v = getenv("SL_CUDA_GRAPHS");
    return !(v && (!strcmp(v, "0") || !strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no")));
}

void sl_cuda_pipe_defer_free(sl_cu_state *st, void *p)
{
    sl_cu_pipe *pp = st->pipe;
    if (pp && pp->n_defer_dev < SL_PIPE_DEFER) {
        pp->defer_dev[pp->n_defer_dev++] = p;
        return;
    }
    // (no pipe, or full: only reachable by a free inside a capture, which has failed already)
    sl_log(SL_LOG_ERROR, NULL, "cuda", "device buffer %p freed inside a graph capture could not be deferred; "
                                      "it is leaked", p);
}

static int defer_host(sl_cu_pipe *pp, void *p)
{
    if (!p)
        return 0;
    if (pp->n_defer_host == SL_PIPE_DEFER)
        return sl_seterr(SL_EDEVICE, "cuda pipeline: too many pinned buffers replaced in one sequence");
    pp->defer_host[pp->n_defer_host++] = p;
    return 0;
}

static int defer_dev(sl_cu_state *st, void *p)
{
    sl_cu_pipe *pp = st->pipe;
    if (!p)
        return 0;
    if (pp->n_defer_dev == SL_PIPE_DEFER)
        return sl_seterr(SL_EDEVICE, "cuda pipeline: too many device buffers replaced in one sequence");
    pp->defer_dev[pp->n_defer_dev++] = p;
    return 0;
}

// After a full wait: what was replaced while work was queued goes now.
static void release_deferred(sl_cu_state *st)
{
    sl_cu_pipe *pp = st->pipe;
    for (int i = 0; i < pp->n_defer_exec; i++)
        cudaGraphExecDestroy(pp->defer_exec[i]);
    for (int i = 0; i < pp->n_defer_host; i++)
        cudaFreeHost(pp->defer_host[i]);
    for (int i = 0; i < pp->n_defer_dev; i++) // (staging no graph holds: mem_epoch stays)
        st->pools ? cudaFreeAsync(pp->defer_dev[i], st->stream) : cudaFree(pp->defer_dev[i]);
    pp->n_defer_exec = pp->n_defer_host = pp->n_defer_dev = 0;
}

// Forgets key k; its graph may still have queued launches: destroyed after
// the next full wait (at once after a wait of the stream when many pile up).
static void drop_key(sl_cu_state *st, sl_cu_key *k)
{
    sl_cu_pipe *pp = st->pipe;
    if (k->exec) {
        if (pp->n_defer_exec == SL_PIPE_DEFER) {
            (void)cudaStreamSynchronize(st->stream); // (rare: many shapes in one sequence)
            for (int i = 0; i < pp->n_defer_exec; i++)
                cudaGraphExecDestroy(pp->defer_exec[i]);
            pp->n_defer_exec = 0;
        }
        pp->defer_exec[pp->n_defer_exec++] = k->exec;
    }
    memset(k, 0, sizeof *k);
}

extern "C" int sl_cuda_pipe_begin(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (!st->pipe) {
        sl_cu_pipe *pp = static_cast<sl_cu_pipe *>(calloc(1, sizeof *pp));
        if (!pp)
            return sl_seterr(SL_ENOMEM, "cuda pipeline: out of memory");
        st->pipe = pp;
        pp->graphs = env_graphs();
        SL_CU_CHECK(cudaStreamCreateWithFlags(&pp->copy, cudaStreamNonBlocking));
        SL_CU_CHECK(cudaEventCreateWithFlags(&pp->fin, cudaEventDisableTiming));
        for (int i = 0; i < SL_PIPE_SLOTS; i++) {
            SL_CU_CHECK(cudaEventCreateWithFlags(&pp->slot[i].up, cudaEventDisableTiming));
            SL_CU_CHECK(cudaEventCreateWithFlags(&pp->slot[i].done, cudaEventDisableTiming));
            SL_CU_CHECK(cudaEventCreateWithFlags(&pp->slot[i].dl, cudaEventDisableTiming));
        }
    }
    st->pipe->n = 0;
    st->pipe->in_item = 0;
    return 0;
}

// The callers' destinations of slot s, from its pinned output (its `dl` has completed).
static void deliver(sl_cu_slot *s)
{
    for (size_t i = 0; i < s->n_dls; i++)
        memcpy(s->dls[i].dst, s->pin_out + s->dls[i].off, s->dls[i].bytes);
    s->n_dls = 0;
    s->busy = 0;
}

static sl_cu_key *find_key(sl_cu_state *st, const void *model, const size_t *shape, size_t n_shape)
{
    sl_cu_pipe *pp = st->pipe;
    sl_cu_key *lru = &pp->keys[0];
    for (int i = 0; i < SL_PIPE_GRAPHS; i++) {
        sl_cu_key *k = &pp->keys[i];
        if (k->state != KEY_FREE && k->model == model && k->n_shape == n_shape &&
            !memcmp(k->shape, shape, n_shape * sizeof *shape))
            return k;
        if (k->state == KEY_FREE ? lru->state != KEY_FREE || k < lru : lru->state != KEY_FREE && k->used < lru->used)
            lru = k;
    }
    drop_key(st, lru);
    lru->model = model;
    lru->n_shape = n_shape;
    memcpy(lru->shape, shape, n_shape * sizeof *shape);
    return lru;
}

extern "C" int sl_cuda_pipe_item_begin(sl_op_ctx *ctx, const void *model, const size_t *shape, size_t n_shape)
{
    sl_cu_state *st = sl_cu_st(ctx);
    sl_cu_pipe *pp = st->pipe;
    if (pp->in_item)
        return sl_seterr(SL_EINVAL, "sl_op_pipe_item_begin: the previous forward was not ended");
    pp->cur = (int)(pp->n % SL_PIPE_SLOTS);
    sl_cu_slot *s = &pp->slot[pp->cur];
    if (s->busy) { // the ring came round: this slot's last forward must be back on the host
        pp->stats.ring_waits++;
        SL_CU_CHECK(cudaEventSynchronize(s->dl));
        deliver(s);
    }
    s->n_dls = 0; // (a forward that failed here before left its downloads undelivered: dropped)
    pp->n++;
    pp->stats.items++;
    pp->in_off = pp->out_off = 0;
    pp->mode = MODE_EAGER;
    pp->key = NULL;
    if (pp->graphs) {
        sl_cu_key *k = find_key(st, model, shape, n_shape);
        k->used = ++pp->tick;
        if ((k->state == KEY_SEEN || k->state == KEY_GRAPH) && k->epoch != st->mem_epoch) {
            drop_key(st, k); // device memory changed since: addresses may have too
            k->model = model;
            k->n_shape = n_shape;
            memcpy(k->shape, shape, n_shape * sizeof *shape);
            k->used = pp->tick;
        }
        pp->key = k;
        if (k->state == KEY_GRAPH) {
            pp->mode = MODE_REPLAY;
            ctx->skip_ops = 1;
        } else if (k->state == KEY_SEEN) {
            pp->mode = MODE_CAPTURE;
            st->capture_broken = NULL;
            SL_CU_CHECK(cudaStreamBeginCapture(st->stream, cudaStreamCaptureModeThreadLocal));
            st->capturing = 1;
        }
    }
    pp->in_item = 1;
    return 0;
}

extern "C" int sl_cuda_pipe_in_item(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    return st->pipe && st->pipe->in_item;
}

extern "C" void sl_cuda_pipe_note_sync(sl_op_ctx *ctx) { sl_cu_st(ctx)->pipe->stats.syncs_in_items++; }

// Grows every slot's pinned buffer at *which (input or output) to hold need
// bytes, keeping the current slot's first keep bytes. The old buffers may
// still be read by queued copies: released after the sequence.
static int grow_pinned(sl_cu_pipe *pp, int input, size_t need, size_t keep)
{
    size_t cap = input ? pp->in_cap : pp->out_cap;
    if (need <= cap)
        return 0;
    size_t want = cap * 2 > need ? cap * 2 : need;
    for (int i = 0; i < SL_PIPE_SLOTS; i++) {
        unsigned char **b = input ? &pp->slot[i].pin_in : &pp->slot[i].pin_out;
        void *fresh = NULL;
        cudaError_t e = cudaHostAlloc(&fresh, want, cudaHostAllocDefault);
        if (e != cudaSuccess)
            return sl_cu_err(e, "cudaHostAlloc(pipeline staging)");
        if (i == pp->cur && keep)
            memcpy(fresh, *b, keep);
        int rc = defer_host(pp, *b);
        if (rc < 0) {
            cudaFreeHost(fresh);
            return rc;
        }
        *b = static_cast<unsigned char *>(fresh);
    }
    if (input)
        pp->in_cap = want;
    else
        pp->out_cap = want;
    return 0;
}

// The same for the device side of the slots (input: copy stream, where it is
// first written; output: compute stream), keeping the current slot's first
// keep bytes of its output.
static int grow_dev(sl_cu_state *st, int input, size_t need, size_t keep)
{
    sl_cu_pipe *pp = st->pipe;
    for (int i = 0; i < SL_PIPE_SLOTS; i++) {
        void **b = input ? &pp->slot[i].dev_in : &pp->slot[i].dev_out;
        void *fresh = NULL;
        SL_CU_CHECK(cudaMallocAsync(&fresh, need, input ? pp->copy : st->stream));
        if (!input && i == pp->cur && keep)
            SL_CU_CHECK(cudaMemcpyAsync(fresh, *b, keep, cudaMemcpyDeviceToDevice, st->stream));
        int rc = defer_dev(st, *b);
        if (rc < 0)
            return rc;
        *b = fresh;
    }
    return 0;
}

static int fixed_mismatch(sl_cu_pipe *pp, const char *what)
{
    return sl_seterr(SL_EDEVICE, "cuda pipeline: a forward of a captured shape %s beyond its first run's %zu / %zu "
                                 "bytes (a forward must issue the same copies for the same key)",
                     what, pp->key ? pp->key->in_bytes : 0, pp->key ? pp->key->out_bytes : 0);
}

extern "C" int sl_cuda_pipe_upload(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    sl_cu_state *st = sl_cu_st(ctx);
    sl_cu_pipe *pp = st->pipe;
    const size_t off = align_up(pp->in_off);
    if (off + bytes > pp->in_cap) {
        if (pp->mode != MODE_EAGER)
            return fixed_mismatch(pp, "uploads");
        int rc = grow_pinned(pp, 1, off + bytes, pp->in_off);
        if (rc < 0)
            return rc;
    }
    unsigned char *pin = pp->slot[pp->cur].pin_in + off;
    memcpy(pin, src, bytes);
    pp->in_off = off + bytes;
    if (pp->mode == MODE_EAGER)
        SL_CU_CHECK(cudaMemcpyAsync(dst, pin, bytes, cudaMemcpyHostToDevice, st->stream));
    else if (pp->mode == MODE_CAPTURE)
        SL_CU_CHECK(cudaMemcpyAsync(dst, static_cast<unsigned char *>(pp->g_in) + off, bytes,
                                    cudaMemcpyDeviceToDevice, st->stream));
    return 0;
}

extern "C" int sl_cuda_pipe_download(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    sl_cu_state *st = sl_cu_st(ctx);
    sl_cu_pipe *pp = st->pipe;
    sl_cu_slot *s = &pp->slot[pp->cur];
    const size_t off = align_up(pp->out_off);
    if (off + bytes > pp->out_cap) {
        if (pp->mode != MODE_EAGER)
            return fixed_mismatch(pp, "downloads");
        const size_t old = pp->out_cap;
        int rc = grow_pinned(pp, 0, off + bytes, 0);
        if (!rc && pp->out_cap > old)
            rc = grow_dev(st, 0, pp->out_cap, pp->out_off);
        if (rc < 0)
            return rc;
    }
    if (s->n_dls == s->cap_dls) {
        size_t c = s->cap_dls ? 2 * s->cap_dls : 16;
        sl_cu_dl *d = static_cast<sl_cu_dl *>(realloc(s->dls, c * sizeof *d));
        if (!d)
            return sl_seterr(SL_ENOMEM, "cuda pipeline: out of memory");
        s->dls = d;
        s->cap_dls = c;
    }
    s->dls[s->n_dls++] = sl_cu_dl{dst, off, bytes};
    pp->out_off = off + bytes;
    if (pp->mode == MODE_EAGER)
        SL_CU_CHECK(cudaMemcpyAsync(static_cast<unsigned char *>(s->dev_out) + off, src, bytes,
                                    cudaMemcpyDeviceToDevice, st->stream));
    else if (pp->mode == MODE_CAPTURE)
        SL_CU_CHECK(cudaMemcpyAsync(static_cast<unsigned char *>(pp->g_out) + off, src, bytes,
                                    cudaMemcpyDeviceToDevice, st->stream));
    return 0;
}

// Replaces *buf with a device buffer of at least need bytes on the compute
// stream (the old one deferred: a graph or queued work may use it).
static int grow_fixed(sl_cu_state *st, void **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    void *fresh = NULL;
    SL_CU_CHECK(sl_cu_dev_alloc(st, &fresh, need));
    int rc = defer_dev(st, *buf);
    if (rc < 0) {
        sl_cu_dev_free(st, fresh);
        return rc;
    }
    st->mem_epoch++; // graphs captured with the old one are not replayed
    *buf = fresh;
    *cap = need;
    return 0;
}

// The replay of slot s around the graph (see the top of the file).
static int launch_graph(sl_cu_state *st, sl_cu_slot *s, sl_cu_key *k)
{
    sl_cu_pipe *pp = st->pipe;
    if (k->in_bytes) {
        SL_CU_CHECK(cudaMemcpyAsync(s->dev_in, s->pin_in, k->in_bytes, cudaMemcpyHostToDevice, pp->copy));
        SL_CU_CHECK(cudaEventRecord(s->up, pp->copy));
#if defined(SL_CUDA_MOCK) // test knob of tests/cudamock/test_graphs.c: the mock must catch the missing wait
        if (!getenv("SL_MOCK_PIPE_SKIP_WAIT"))
#endif
            SL_CU_CHECK(cudaStreamWaitEvent(st->stream, s->up, 0));
        SL_CU_CHECK(cudaMemcpyAsync(pp->g_in, s->dev_in, k->in_bytes, cudaMemcpyDeviceToDevice, st->stream));
    }
    SL_CU_CHECK(cudaGraphLaunch(k->exec, st->stream));
    if (k->out_bytes)
        SL_CU_CHECK(cudaMemcpyAsync(s->dev_out, pp->g_out, k->out_bytes, cudaMemcpyDeviceToDevice, st->stream));
    return 0;
}

// A failed capture: the key runs op by op from now on.
static int capture_failed(sl_cu_pipe *pp, sl_cu_slot *s, const char *why, const char *detail)
{
    const sl_cu_key *k = pp->key;
    sl_log(SL_LOG_INFO, NULL, "cuda", "CUDA graph capture of a forward (shape %zu%s) failed at %s%s%s; that "
                                      "shape runs op by op", k->n_shape ? k->shape[0] : 0,
           k->n_shape > 1 ? ", ..." : "", why, detail && *detail ? ": " : "", detail ? detail : "");
    pp->key->state = KEY_NO_GRAPH;
    pp->stats.capture_failures++;
    s->n_dls = 0; // the forward runs again: it downloads again
    return 1;
}

extern "C" int sl_cuda_pipe_item_end(sl_op_ctx *ctx, int forward_rc)
{
    sl_cu_state *st = sl_cu_st(ctx);
    sl_cu_pipe *pp = st->pipe;
    sl_cu_slot *s = &pp->slot[pp->cur];
    sl_cu_key *k = pp->key;
    if (!pp->in_item)
        return forward_rc;
    pp->in_item = 0;
    ctx->skip_ops = 0;
    if (pp->mode == MODE_CAPTURE) {
        cudaGraph_t g = NULL;
        cudaError_t e = cudaStreamEndCapture(st->stream, &g);
        st->capturing = 0;
        (void)cudaGetLastError();
        if (forward_rc || e != cudaSuccess || st->capture_broken) {
            char detail[256] = "";
            if (forward_rc)
                snprintf(detail, sizeof detail, "%s", sl_lasterr());
            if (g)
                cudaGraphDestroy(g);
            sl_clearerr();
            return capture_failed(pp, s, st->capture_broken ? st->capture_broken
                                         : e != cudaSuccess ? cudaGetErrorName(e) : "an error of the forward",
                                  detail);
        }
        cudaGraphExec_t exec = NULL;
        e = cudaGraphInstantiate(&exec, g, 0);
        cudaGraphDestroy(g);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return capture_failed(pp, s, "cudaGraphInstantiate", cudaGetErrorName(e));
        }
        if (pp->in_off != k->in_bytes || pp->out_off != k->out_bytes) {
            cudaGraphExecDestroy(exec);
            return capture_failed(pp, s, "its copies", "they differ from its first run's");
        }
        k->exec = exec;
        k->state = KEY_GRAPH;
        k->epoch = st->mem_epoch;
        pp->stats.captures++;
        int rc = launch_graph(st, s, k);
        if (rc < 0)
            return rc;
    } else if (pp->mode == MODE_REPLAY) {
        if (forward_rc || pp->in_off != k->in_bytes || pp->out_off != k->out_bytes) {
            // (nothing was queued: the forward runs again op by op and says what is wrong, if anything)
            sl_clearerr();
            drop_key(st, k);
            s->n_dls = 0;
            return 1;
        }
        pp->stats.replays++;
        int rc = launch_graph(st, s, k);
        if (rc < 0)
            return rc;
    } else {
        pp->stats.eager++;
        if (forward_rc)
            return forward_rc;
        if (k && (k->state == KEY_FREE || k->state == KEY_SEEN)) { // sized for this key's capture next time
            int rc = grow_fixed(st, &pp->g_in, &pp->g_in_cap, pp->in_off);
            if (!rc)
                rc = grow_fixed(st, &pp->g_out, &pp->g_out_cap, pp->out_off);
            if (!rc && pp->dev_in_cap < pp->in_cap) { // the slots' device inputs, as their pinned ones
                rc = grow_dev(st, 1, pp->in_cap, 0);
                if (!rc)
                    pp->dev_in_cap = pp->in_cap;
            }
            if (rc < 0)
                return rc;
            if (k->state == KEY_FREE) {
                k->state = KEY_SEEN;
                k->in_bytes = pp->in_off;
                k->out_bytes = pp->out_off;
            }
            k->epoch = st->mem_epoch;
        }
    }
    SL_CU_CHECK(cudaEventRecord(s->done, st->stream));
    SL_CU_CHECK(cudaStreamWaitEvent(pp->copy, s->done, 0));
    if (pp->out_off)
        SL_CU_CHECK(cudaMemcpyAsync(s->pin_out, s->dev_out, pp->out_off, cudaMemcpyDeviceToHost, pp->copy));
    SL_CU_CHECK(cudaEventRecord(s->dl, pp->copy));
    s->busy = 1;
    return 0;
}

extern "C" int sl_cuda_pipe_end(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    sl_cu_pipe *pp = st->pipe;
    if (pp->in_item) { // a forward left open by an error: end its capture, drop its downloads
        if (st->capturing) {
            cudaGraph_t g = NULL;
            if (cudaStreamEndCapture(st->stream, &g) == cudaSuccess && g)
                cudaGraphDestroy(g);
            (void)cudaGetLastError();
            st->capturing = 0;
        }
        ctx->skip_ops = 0;
        pp->in_item = 0;
        pp->slot[pp->cur].n_dls = 0;
    }
    // One wait for both streams: the NOLA status words come back with the rest.
    SL_CU_CHECK(cudaMemcpyAsync(st->status_host, st->status, 3 * sizeof(int), cudaMemcpyDeviceToHost, st->stream));
    SL_CU_CHECK(cudaEventRecord(pp->fin, st->stream));
    SL_CU_CHECK(cudaStreamWaitEvent(pp->copy, pp->fin, 0));
    SL_CU_CHECK(cudaStreamSynchronize(pp->copy));
    for (unsigned long long i = 0; i < SL_PIPE_SLOTS; i++) { // oldest first
        sl_cu_slot *s = &pp->slot[(pp->n + i) % SL_PIPE_SLOTS];
        if (s->busy)
            deliver(s);
    }
    release_deferred(st);
    return SL_FN(status_report)(st);
}

extern "C" void sl_cuda_pipe_stats(sl_op_ctx *ctx, sl_op_pipe_stats *s)
{
    sl_cu_state *st = sl_cu_st(ctx);
    if (st->pipe)
        *s = st->pipe->stats;
}

// Teardown (after the context's stream and this copy stream are idle).
extern "C" void sl_cuda_pipe_release(sl_op_ctx *ctx)
{
    sl_cu_state *st = sl_cu_st(ctx);
    sl_cu_pipe *pp = st->pipe;
    if (!pp)
        return;
    cudaStreamSynchronize(pp->copy);
    release_deferred(st);
    for (int i = 0; i < SL_PIPE_GRAPHS; i++)
        if (pp->keys[i].exec)
            cudaGraphExecDestroy(pp->keys[i].exec);
    for (int i = 0; i < SL_PIPE_SLOTS; i++) {
        sl_cu_slot *s = &pp->slot[i];
        cudaFreeHost(s->pin_in);
        cudaFreeHost(s->pin_out);
        if (s->dev_in)
            sl_cu_dev_free(st, s->dev_in);
        if (s->dev_out)
            sl_cu_dev_free(st, s->dev_out);
        cudaEventDestroy(s->up);
        cudaEventDestroy(s->done);
        cudaEventDestroy(s->dl);
        free(s->dls);
    }
    if (pp->g_in)
        sl_cu_dev_free(st, pp->g_in);
    if (pp->g_out)
        sl_cu_dev_free(st, pp->g_out);
    cudaEventDestroy(pp->fin);
    cudaStreamDestroy(pp->copy);
    free(pp);
    st->pipe = NULL;
}

#endif
