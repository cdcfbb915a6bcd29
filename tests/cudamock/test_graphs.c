/* Pipelined forwards of the cuda backend (kernels/cuda/pipe.cu) against
 * cudamock: CUDA graphs and copy / compute overlap through a ring of three
 * pinned buffers.
 *  - umx and cnn14 (small random-weight models) over batches of two segment
 *    lengths: the stems / vectors / scores of the graph path and of the
 *    pipelined path without graphs (SL_CUDA_GRAPHS=0) are bit-identical to one
 *    forward at a time (sl_sep_run / sl_emb_run_scores);
 *  - a key (model, length) runs op by op once, is captured the next time and
 *    replayed after that, also in later batches; a new length captures again
 *    (the backend's counters and cudamock's own);
 *  - in a batch of replays the only host synchronisations are the ring's
 *    waits between forwards (N - 3 for N forwards) and one at the end;
 *  - a forward that synchronises (or allocates) cannot be captured: the
 *    capture fails, cudamock refuses the call, and the forward runs op by op
 *    with the right result;
 *  - the mock's ordering checks: a copy stream's upload read by another stream
 *    without an event wait aborts the process, directly and with the
 *    pipeline's own wait left out (SL_MOCK_PIPE_SKIP_WAIT=1). */
#ifndef SL_GRAPHS_ON_GPU
#define SL_GRAPHS_ON_GPU 0
#endif

#if !SL_GRAPHS_ON_GPU
#include <cuda_runtime_api.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "kernels/ops.h"
#include "models/model.h"
#include "tests/unit/sl_golden.h"
#include "tests/unit/sl_test.h"

#if SL_GRAPHS_ON_GPU /* tests/gpu/test_graphs.c: the same forwards on a GPU; cudamock's own counters are absent */
static unsigned long long sl_mock_host_syncs(void) { return 0; }
static void sl_mock_graph_counts(unsigned long long *captures, unsigned long long *launches)
{
    *captures = *launches = 0;
}
#define MOCK_ONLY(x) 1
#else
unsigned long long sl_mock_host_syncs(void);
void sl_mock_graph_counts(unsigned long long *captures, unsigned long long *launches);
#define MOCK_ONLY(x) (x)
#endif

enum { NSEG = 7 };

static const char *weights(const char *dir, const char *file)
{
    static char buf[2][1024];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s", slg_file_in(dir, file));
    return buf[k];
}

static sl_op_ctx *open_ctx(int graphs)
{
    setenv("SL_CUDA_GRAPHS", graphs ? "1" : "0", 1); /* read at the context's first pipelined batch */
    sl_op_ctx *ctx = NULL;
    int rc = sl_op_ctx_open(&ctx, "cuda");
    CHECK_MSG(rc == 0, "open cuda (cudamock): %s", sl_lasterr());
    return ctx;
}

static void fill(float *x, size_t n, unsigned seed)
{
    unsigned s = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = (float)((double)(s >> 8) / 16777216.0 - 0.5);
    }
}

static void counts(unsigned long long *cap, unsigned long long *launch) { sl_mock_graph_counts(cap, launch); }

/* ---- umx ---- */

typedef struct {
    size_t len[NSEG];
    float *in[NSEG][2];
    float *out[NSEG][4][2];
} umx_set;

static void umx_set_make(umx_set *u, const size_t *lens, unsigned seed)
{
    for (int b = 0; b < NSEG; b++) {
        u->len[b] = lens[b];
        for (int c = 0; c < 2; c++) {
            u->in[b][c] = malloc(lens[b] * sizeof(float));
            fill(u->in[b][c], lens[b], seed + 10u * (unsigned)b + (unsigned)c);
        }
        for (int s = 0; s < 4; s++)
            for (int c = 0; c < 2; c++) {
                u->out[b][s][c] = malloc(lens[b] * sizeof(float));
                memset(u->out[b][s][c], 0xAB, lens[b] * sizeof(float));
            }
    }
}

static void umx_set_free(umx_set *u)
{
    for (int b = 0; b < NSEG; b++) {
        for (int c = 0; c < 2; c++)
            free(u->in[b][c]);
        for (int s = 0; s < 4; s++)
            for (int c = 0; c < 2; c++)
                free(u->out[b][s][c]);
    }
}

static int umx_batch(sl_sep_model *m, umx_set *u, size_t n)
{
    const float *const *in[NSEG];
    float *const *planes[NSEG][4];
    float *const *const *out[NSEG];
    for (size_t b = 0; b < n; b++) {
        in[b] = (const float *const *)u->in[b];
        for (int s = 0; s < 4; s++)
            planes[b][s] = u->out[b][s];
        out[b] = planes[b];
    }
    size_t bad = 0;
    return sl_sep_run_batch(m, n, in, u->len, out, &bad);
}

static int umx_same(const umx_set *a, const umx_set *ref, size_t n, const char *what)
{
    for (size_t b = 0; b < n; b++)
        for (int s = 0; s < 4; s++)
            for (int c = 0; c < 2; c++)
                if (memcmp(a->out[b][s][c], ref->out[b][s][c], a->len[b] * sizeof(float))) {
                    fprintf(stderr, "%s: segment %zu source %d channel %d differs from one forward at a time\n",
                            what, b, s, c);
                    return 0;
                }
    return 1;
}

static void umx_case(void)
{
    const char *w = weights("umx", "umx-small.safetensors");
    const size_t lens[NSEG] = {4096, 4096, 4096, 2560, 4096, 2560, 4096};
    umx_set ref, eager, graph;
    umx_set_make(&ref, lens, 1);
    umx_set_make(&eager, lens, 1);
    umx_set_make(&graph, lens, 1);

    /* reference: one forward at a time, each waited for */
    sl_op_ctx *c0 = open_ctx(1);
    sl_sep_model *m0 = NULL;
    CHECK_MSG(sl_sep_open(&m0, "umx", w, NULL, c0) == 0, "%s", sl_lasterr());
    for (int b = 0; m0 && b < NSEG; b++) {
        const float *const *in = (const float *const *)ref.in[b];
        float *const *planes[4] = {ref.out[b][0], ref.out[b][1], ref.out[b][2], ref.out[b][3]};
        CHECK_MSG(sl_sep_run(m0, in, ref.len[b], planes) == 0, "%s", sl_lasterr());
    }
    sl_op_pipe_stats st0;
    sl_op_pipe_get_stats(c0, &st0);
    CHECK(st0.items == 0);
    sl_sep_close(m0);
    sl_op_ctx_close(c0);

    /* pipelined without graphs */
    sl_op_ctx *c1 = open_ctx(0);
    sl_sep_model *m1 = NULL;
    CHECK_MSG(sl_sep_open(&m1, "umx", w, NULL, c1) == 0, "%s", sl_lasterr());
    if (m1) {
        CHECK_MSG(umx_batch(m1, &eager, NSEG) == 0, "umx pipelined, no graphs: %s", sl_lasterr());
        CHECK(umx_same(&eager, &ref, NSEG, "umx pipelined, no graphs"));
        sl_op_pipe_stats s;
        sl_op_pipe_get_stats(c1, &s);
        CHECK_MSG(s.items == NSEG && s.eager == NSEG && s.captures == 0 && s.replays == 0, "items %llu eager %llu",
                  s.items, s.eager);
        CHECK(s.ring_waits == NSEG - 3 && s.syncs_in_items == 0);
    }
    sl_sep_close(m1);
    sl_op_ctx_close(c1);

    /* pipelined with graphs: lengths 4096 x5 and 2560 x2 -> each runs op by op once, is captured once */
    sl_op_ctx *c2 = open_ctx(1);
    sl_sep_model *m2 = NULL;
    CHECK_MSG(sl_sep_open(&m2, "umx", w, NULL, c2) == 0, "%s", sl_lasterr());
    if (m2) {
        unsigned long long cap0, l0, cap1, l1;
        counts(&cap0, &l0);
        CHECK_MSG(umx_batch(m2, &graph, NSEG) == 0, "umx graphs: %s", sl_lasterr());
        CHECK(umx_same(&graph, &ref, NSEG, "umx graphs, first batch"));
        counts(&cap1, &l1);
        sl_op_pipe_stats s;
        sl_op_pipe_get_stats(c2, &s);
        CHECK_MSG(s.eager == 2 && s.captures == 2 && s.replays == NSEG - 4 && s.capture_failures == 0,
                  "eager %llu captures %llu replays %llu failures %llu", s.eager, s.captures, s.replays,
                  s.capture_failures);
        CHECK_MSG(MOCK_ONLY(cap1 - cap0 == 2 && l1 - l0 == NSEG - 2), "cudamock: %llu captures, %llu launches", cap1 - cap0,
                  l1 - l0);
        /* the same lengths again: every forward replayed, no capture; host waits only between forwards */
        for (int b = 0; b < NSEG; b++)
            for (int k = 0; k < 4; k++)
                for (int c = 0; c < 2; c++)
                    memset(graph.out[b][k][c], 0xAB, graph.len[b] * sizeof(float));
        const unsigned long long h0 = sl_mock_host_syncs();
        CHECK_MSG(umx_batch(m2, &graph, NSEG) == 0, "umx graphs, again: %s", sl_lasterr());
        const unsigned long long h1 = sl_mock_host_syncs();
        CHECK(umx_same(&graph, &ref, NSEG, "umx graphs, second batch"));
        sl_op_pipe_stats t;
        sl_op_pipe_get_stats(c2, &t);
        counts(&cap0, &l0);
        CHECK_MSG(t.replays - s.replays == NSEG && t.captures == s.captures && t.eager == s.eager,
                  "second batch: replays %llu captures %llu", t.replays - s.replays, t.captures - s.captures);
        CHECK(MOCK_ONLY(cap0 == cap1 && l0 - l1 == NSEG));
        CHECK_MSG(t.ring_waits - s.ring_waits == NSEG - 3, "ring waits %llu", t.ring_waits - s.ring_waits);
        CHECK_MSG(MOCK_ONLY(h1 - h0 == (NSEG - 3) + 1), "%llu host synchronisations for %d replayed forwards (want %d: the "
                  "ring's waits between forwards and one at the end)", h1 - h0, NSEG, NSEG - 2);
        CHECK(t.syncs_in_items == 0);
        /* a new length (shorter: nothing regrows) captures again */
        umx_set u3;
        const size_t l3[NSEG] = {3072, 3072, 3072, 3072, 3072, 3072, 3072};
        umx_set_make(&u3, l3, 5);
        CHECK_MSG(umx_batch(m2, &u3, 3) == 0, "umx graphs, new length: %s", sl_lasterr());
        sl_op_pipe_stats v;
        sl_op_pipe_get_stats(c2, &v);
        CHECK_MSG(v.eager - t.eager == 1 && v.captures - t.captures == 1 && v.replays - t.replays == 1,
                  "new length: eager %llu captures %llu replays %llu", v.eager - t.eager, v.captures - t.captures,
                  v.replays - t.replays);
        /* and equals one forward at a time on the same context */
        for (int b = 0; b < 3; b++) {
            float *o[4][2];
            for (int k = 0; k < 4; k++)
                for (int c = 0; c < 2; c++)
                    o[k][c] = malloc(u3.len[b] * sizeof(float));
            float *const *planes[4] = {o[0], o[1], o[2], o[3]};
            CHECK(sl_sep_run(m2, (const float *const *)u3.in[b], u3.len[b], planes) == 0);
            for (int k = 0; k < 4; k++)
                for (int c = 0; c < 2; c++) {
                    CHECK(!memcmp(o[k][c], u3.out[b][k][c], u3.len[b] * sizeof(float)));
                    free(o[k][c]);
                }
        }
        umx_set_free(&u3);
    }
    sl_sep_close(m2);
    sl_op_ctx_close(c2);
    umx_set_free(&ref);
    umx_set_free(&eager);
    umx_set_free(&graph);
}

/* ---- cnn14 (vectors and clip scores) ---- */

static void cnn14_case(void)
{
    const char *w = weights("cnn14", "cnn14-small.safetensors");
    const size_t lens[NSEG] = {16000, 16000, 9600, 16000, 16000, 9600, 16000};
    float *in[NSEG], *vec[3][NSEG], *sc[3][NSEG];
    for (int b = 0; b < NSEG; b++) {
        in[b] = malloc(lens[b] * sizeof(float));
        fill(in[b], lens[b], 100u + (unsigned)b);
        for (int k = 0; k < 3; k++) {
            vec[k][b] = calloc(32, sizeof(float));
            sc[k][b] = calloc(527, sizeof(float));
        }
    }
    for (int k = 0; k < 3; k++) { /* 0: one at a time, 1: pipelined without graphs, 2: with graphs */
        sl_op_ctx *ctx = open_ctx(k == 2);
        sl_emb_model *m = NULL;
        CHECK_MSG(sl_emb_open(&m, "cnn14", w, NULL, ctx) == 0, "%s", sl_lasterr());
        if (!m) {
            sl_op_ctx_close(ctx);
            continue;
        }
        const float *const *ins[NSEG];
        for (int b = 0; b < NSEG; b++)
            ins[b] = (const float *const *)&in[b];
        for (int rep = 0; rep < (k == 2 ? 2 : 1); rep++) {
            if (k == 0) {
                for (int b = 0; b < NSEG; b++)
                    CHECK_MSG(sl_emb_run_scores(m, ins[b], lens[b], vec[0][b], sc[0][b]) == 0, "%s", sl_lasterr());
            } else {
                for (int b = 0; b < NSEG; b++)
                    memset(sc[k][b], 0xAB, 527 * sizeof(float));
                size_t bad = 0;
                CHECK_MSG(sl_emb_run_batch_scores(m, NSEG, ins, lens, vec[k], sc[k], &bad) == 0, "cnn14 %s: %s",
                          k == 1 ? "no graphs" : "graphs", sl_lasterr());
            }
            for (int b = 0; k && b < NSEG; b++) {
                CHECK_MSG(!memcmp(vec[k][b], vec[0][b], 32 * sizeof(float)), "cnn14 %s, segment %d: vector differs",
                          k == 1 ? "no graphs" : "graphs", b);
                CHECK_MSG(!memcmp(sc[k][b], sc[0][b], 527 * sizeof(float)), "cnn14 %s, segment %d: scores differ",
                          k == 1 ? "no graphs" : "graphs", b);
            }
        }
        sl_op_pipe_stats s;
        sl_op_pipe_get_stats(ctx, &s);
        if (k == 1)
            CHECK_MSG(s.eager == NSEG && s.captures == 0, "cnn14 no graphs: eager %llu captures %llu", s.eager,
                      s.captures);
        if (k == 2)
            CHECK_MSG(s.eager == 2 && s.captures == 2 && s.replays == 2 * NSEG - 4 && s.syncs_in_items == 0,
                      "cnn14 graphs: eager %llu captures %llu replays %llu", s.eager, s.captures, s.replays);
        CHECK(sc[0][0][0] > 0.0f && sc[0][0][0] < 1.0f); /* probabilities, finished on the host */
        sl_emb_close(m);
        sl_op_ctx_close(ctx);
    }
    for (int b = 0; b < NSEG; b++) {
        free(in[b]);
        for (int k = 0; k < 3; k++) {
            free(vec[k][b]);
            free(sc[k][b]);
        }
    }
}

/* ---- capture failures: a forward that waits, or allocates, runs op by op ---- */

static int small_forward(sl_op_ctx *ctx, float *dx, float *dy, const float *x, float *y, size_t n, int how)
{
    int rc = sl_op_upload(ctx, dx, x, n * sizeof(float));
    if (!rc)
        rc = sl_op_magnitude(ctx, n / 2, dx, dy);
    if (!rc && how == 1)
        rc = sl_op_sync(ctx); /* a host wait: refused inside a capture */
    void *tmp = NULL;
    if (!rc && how == 2) { /* an allocation per call: refused inside a capture */
        rc = sl_op_alloc(ctx, &tmp, 4096);
        sl_op_free(ctx, tmp);
    }
    if (!rc)
        rc = sl_op_download(ctx, y, dy, n / 2 * sizeof(float));
    return rc;
}

static void capture_fallback(void)
{
    enum { N = 512 };
    sl_op_ctx *ctx = open_ctx(1);
    if (!ctx)
        return;
    float *dx = NULL, *dy = NULL, x[N], y[4][N / 2], want[N / 2];
    CHECK(sl_op_alloc(ctx, (void **)&dx, sizeof x) == 0 && sl_op_alloc(ctx, (void **)&dy, sizeof want) == 0);
    fill(x, N, 7);
    CHECK(small_forward(ctx, dx, dy, x, want, N, 0) == 0); /* (not pipelined: waits for its download) */
    for (int how = 1; how <= 2; how++) {
        sl_op_pipe_stats s0, s1;
        sl_op_pipe_get_stats(ctx, &s0);
        const size_t shape[1] = {(size_t)how};
        CHECK(sl_op_pipe_begin(ctx) == 0);
        int retried = 0;
        for (int it = 0; it < 4; it++) {
            memset(y[it], 0xAB, sizeof y[it]);
            int rc;
            for (;;) {
                rc = sl_op_pipe_item_begin(ctx, &capture_fallback, shape, 1);
                if (!rc)
                    rc = sl_op_pipe_item_end(ctx, small_forward(ctx, dx, dy, x, y[it], N, how));
                if (rc != 1)
                    break;
                retried++;
            }
            CHECK_MSG(rc == 0, "forward %d (%s): %s", it, how == 1 ? "sync" : "alloc", sl_lasterr());
        }
        CHECK_MSG(sl_op_pipe_end(ctx) == 0, "%s", sl_lasterr());
        sl_op_pipe_get_stats(ctx, &s1);
        CHECK_MSG(retried == 1 && s1.capture_failures - s0.capture_failures == 1 && s1.captures == s0.captures &&
                      s1.replays == s0.replays,
                  "%s inside the forward: retried %d, failures %llu, captures %llu", how == 1 ? "sync" : "alloc",
                  retried, s1.capture_failures - s0.capture_failures, s1.captures - s0.captures);
        if (how == 1)
            CHECK_MSG(s1.syncs_in_items - s0.syncs_in_items >= 4, "%llu waits counted",
                      s1.syncs_in_items - s0.syncs_in_items);
        for (int it = 0; it < 4; it++)
            CHECK_MSG(!memcmp(y[it], want, sizeof want), "forward %d (%s): wrong result", it,
                      how == 1 ? "sync" : "alloc");
    }
    sl_op_free(ctx, dx);
    sl_op_free(ctx, dy);
    sl_op_ctx_close(ctx);
}

#if !SL_GRAPHS_ON_GPU
/* ---- the mock's own rules ---- */

static void mock_capture_rules(void)
{
    cudaStream_t a;
    CHECK(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking) == cudaSuccess);
    void *p = NULL;
    CHECK(cudaMallocAsync(&p, 1024, a) == cudaSuccess);
    CHECK(cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    CHECK(cudaMemsetAsync(p, 0, 1024, a) == cudaSuccess); /* recorded */
    CHECK(cudaStreamSynchronize(a) == cudaErrorStreamCaptureUnsupported);
    cudaGraph_t g = NULL;
    CHECK(cudaStreamEndCapture(a, &g) == cudaErrorStreamCaptureInvalidated && g == NULL);
    void *q = NULL;
    CHECK(cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    CHECK(cudaMalloc(&q, 256) == cudaErrorStreamCaptureUnsupported);
    CHECK(cudaStreamEndCapture(a, &g) == cudaErrorStreamCaptureInvalidated);
    (void)cudaGetLastError();
    /* a good capture replays its work on every launch */
    CHECK(cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    CHECK(cudaMemsetAsync(p, 0x11, 1024, a) == cudaSuccess);
    CHECK(cudaStreamEndCapture(a, &g) == cudaSuccess && g);
    cudaGraphExec_t ex = NULL;
    CHECK(cudaGraphInstantiate(&ex, g, 0) == cudaSuccess);
    unsigned char h[1024];
    for (int i = 0; i < 2; i++) {
        CHECK(cudaMemsetAsync(p, 0, 1024, a) == cudaSuccess);
        CHECK(cudaGraphLaunch(ex, a) == cudaSuccess);
        CHECK(cudaMemcpy(h, p, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
        CHECK(h[0] == 0x11 && h[1023] == 0x11);
    }
    cudaGraphExecDestroy(ex);
    cudaGraphDestroy(g);
    CHECK(cudaFreeAsync(p, a) == cudaSuccess);
    CHECK(cudaStreamDestroy(a) == cudaSuccess);
}

/* Two streams, an upload on one read on the other: correct with the event wait. */
static void two_streams(int wait)
{
    cudaStream_t up, comp;
    cudaEvent_t ev;
    CHECK(cudaStreamCreateWithFlags(&up, cudaStreamNonBlocking) == cudaSuccess);
    CHECK(cudaStreamCreateWithFlags(&comp, cudaStreamNonBlocking) == cudaSuccess);
    CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming) == cudaSuccess);
    void *pin = NULL, *a = NULL, *b = NULL;
    CHECK(cudaHostAlloc(&pin, 4096, cudaHostAllocDefault) == cudaSuccess);
    CHECK(cudaMalloc(&a, 4096) == cudaSuccess && cudaMalloc(&b, 4096) == cudaSuccess);
    memset(pin, 0x5A, 4096);
    CHECK(cudaMemcpyAsync(a, pin, 4096, cudaMemcpyHostToDevice, up) == cudaSuccess);
    CHECK(cudaEventRecord(ev, up) == cudaSuccess);
    if (wait)
        CHECK(cudaStreamWaitEvent(comp, ev, 0) == cudaSuccess);
    CHECK(cudaMemcpyAsync(b, a, 4096, cudaMemcpyDeviceToDevice, comp) == cudaSuccess); /* no wait: aborts here */
    CHECK(cudaStreamSynchronize(comp) == cudaSuccess); /* runs the upload first: the wait orders them */
    unsigned char h[4096];
    CHECK(cudaMemcpy(h, b, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    CHECK(h[0] == 0x5A && h[4095] == 0x5A);
    cudaFree(a);
    cudaFree(b);
    cudaFreeHost(pin);
    cudaEventDestroy(ev);
    cudaStreamDestroy(up);
    cudaStreamDestroy(comp);
}

/* Runs f in a child process: 1 when it aborted with `want` in its stderr. */
static int aborts_with(void (*f)(void), const char *want)
{
    int fds[2];
    if (pipe(fds) != 0)
        return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        f();
        _exit(0);
    }
    close(fds[1]);
    char buf[8192];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    const int ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && strstr(buf, want) != NULL;
    if (!ok)
        fprintf(stderr, "child: status %d, stderr:\n%s\n", status, buf);
    else
        printf("  caught: %.*s\n", (int)strcspn(buf, "\n"), buf);
    return ok;
}

static void two_streams_no_wait(void) { two_streams(0); }

/* The pipeline with its upload event's wait left out (a cudamock build's test knob). */
static void pipeline_no_wait(void)
{
    setenv("SL_MOCK_PIPE_SKIP_WAIT", "1", 1);
    enum { N = 512 };
    sl_op_ctx *ctx = open_ctx(1);
    float *dx = NULL, *dy = NULL, x[N], y[N / 2];
    sl_op_alloc(ctx, (void **)&dx, sizeof x);
    sl_op_alloc(ctx, (void **)&dy, sizeof y);
    fill(x, N, 3);
    const size_t shape[1] = {N};
    sl_op_pipe_begin(ctx);
    for (int it = 0; it < 4; it++) { /* the third forward is a replay: its upload is on the copy stream */
        sl_op_pipe_item_begin(ctx, &pipeline_no_wait, shape, 1);
        sl_op_pipe_item_end(ctx, small_forward(ctx, dx, dy, x, y, N, 0));
    }
    sl_op_pipe_end(ctx);
}

#endif

int main(void)
{
#if SL_GRAPHS_ON_GPU
    sl_op_ctx *probe = NULL;
    if (sl_op_ctx_open(&probe, "cuda") != 0) {
        printf("skipped: no CUDA device (%s)\n", sl_lasterr());
        return 77;
    }
    sl_op_ctx_close(probe);
#else
    mock_capture_rules();
    two_streams(1);
    CHECK_MSG(aborts_with(two_streams_no_wait, "nothing ordering it after that write"),
              "a read of an upload not waited for is caught");
    CHECK_MSG(aborts_with(pipeline_no_wait, "nothing ordering it after that write"),
              "the pipeline without its upload event's wait is caught");
#endif
    capture_fallback();
    umx_case();
    cnn14_case();
    return sl_test_finish(SL_GRAPHS_ON_GPU ? "gpu.graphs" : "cudamock.graphs");
}
