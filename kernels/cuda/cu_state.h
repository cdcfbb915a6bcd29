// Per-context state of the CUDA backend (both builds), private to
// kernels/cuda/. Ops reach it only through SL_FN(stream), SL_FN(scratch) and
// SL_FN(status) (sl_cuda.h); backend.cu and fft_plans.cu see the whole struct.
#ifndef SL_CU_STATE_H
#define SL_CU_STATE_H

#include "sl_cuda.h"
#if SL_CUDA_API
#include <cufft.h>
#endif

#define SL_CU_MAX_PLANS 64

#if SL_CUDA_API
struct sl_cu_dnn; // conv2d.cu: cuDNN handle, descriptors, algorithm cache (builds with cuDNN)
struct sl_cu_lt;  // gemm_lt.cu: cuBLASLt handle, workspace, product buffer (tf32 / bf16 contexts)
struct sl_cu_pipe; // pipe.cu: copy stream, pinned ring, CUDA graph cache (pipelined forwards)

struct sl_cu_plan {
    int n_fft, batch, inverse;
    size_t work;              // bytes of work area this plan needs
    unsigned long long used;  // LRU tick
    cufftHandle h;
};
#endif

struct sl_cu_state {
    sl_stream_t stream;
    int *status;        // device memory: NOLA status words (cu_ops.h)
    int *status_host;   // pinned copy read after a sync (emulated build: == status)
    void *scratch;      // op workspace (SL_FN(scratch))
    size_t scratch_size;
#if SL_CUDA_API
    int device;
    int pools;          // stream-ordered allocator available (cudaDevAttrMemoryPoolsSupported)
    sl_cu_plan plans[SL_CU_MAX_PLANS];
    int n_plans;
    unsigned long long tick;
    void *fft_work;     // the one cuFFT work area shared by all plans
    size_t fft_work_size;
    int conv_direct;    // conv2d by the hand-written kernel (no cuDNN in the build, or SL_CONV_IMPL=direct)
    sl_cu_dnn *dnn;     // made at the first cuDNN convolution of the context (conv2d.cu); NULL before
    sl_cu_lt *lt;       // made at the first cuBLASLt product (gemm_lt.cu); NULL before
    size_t device_len;  // length of ctx->device before the precision suffix
    sl_cu_pipe *pipe;   // made at the first sl_op_pipe_begin (pipe.cu); NULL before
    int capturing;      // a CUDA graph capture of a forward is in progress on stream
    const char *capture_broken;    // what made that capture fail (NULL: nothing yet)
    unsigned long long mem_epoch;  // device frees and cuFFT plan destructions so far: a captured
                                   // graph is replayed only while this is unchanged
#endif
};

static inline sl_cu_state *sl_cu_st(sl_op_ctx *ctx) { return static_cast<sl_cu_state *>(ctx->state); }

// The NOLA status words after a completed wait: reported (SL_ENUMERIC) and cleared (backend.cu).
extern "C" int SL_FN(status_report)(sl_cu_state *st);

#if SL_CUDA_API
// Device memory in stream order where the device has memory pools (a free
// waits for the work queued before it, without blocking the host); plain
// cudaMalloc / cudaFree (which synchronise) elsewhere. Out of memory in the
// pool: its cached blocks are released (cudaMemPoolTrimTo) and the allocation
// tried once more (backend.cu).
// Inside a graph capture neither is done: the allocation fails and the free
// is deferred to the end of the pipelined sequence (pipe.cu), and the capture
// is marked failed (the forward then runs without a graph).
cudaError_t sl_cu_dev_alloc(sl_cu_state *st, void **p, size_t bytes);
cudaError_t sl_cu_dev_free(sl_cu_state *st, void *p);

extern "C" {
// conv2d.cu, at context open: picks the convolution (cuDNN when built with it
// and libcudnn loads, unless SL_CONV_IMPL=direct) and describes it in desc. 0,
// or SL_EINVAL for an unknown SL_CONV_IMPL / SL_EUNSUPPORTED for
// SL_CONV_IMPL=cudnn without cuDNN.
int sl_cuda_conv2d_init(sl_op_ctx *ctx, char *desc, size_t desc_size);
// conv2d.cu (builds with cuDNN): loads libcudnn once per process: 0, or
// SL_EUNSUPPORTED naming the library.
int sl_cuda_cudnn_load(void);
// conv2d.cu, at context teardown (after a sync): destroys the cuDNN handle and descriptors.
void sl_cuda_conv2d_release(sl_op_ctx *ctx);
// gemm_lt.cu: sl_op_gemm through cuBLASLt when ctx's precision is tf32 / bf16:
// 0 or an error; 1 when not taken (fp32).
int sl_cuda_gemm_lt(sl_op_ctx *ctx, const sl_gemm_args *a);
// gemm_lt.cu: 0 when cuBLASLt can be loaded, else SL_EUNSUPPORTED saying why.
int sl_cuda_gemm_lt_available(void);
// gemm_lt.cu, at context teardown (after a sync): the cuBLASLt handle and buffers.
void sl_cuda_gemm_lt_release(sl_op_ctx *ctx);
// pipe.cu: the pipelined forwards of backend.h (pipe_begin ... pipe_end), the
// upload / download / sync of a forward inside one, and the teardown.
int sl_cuda_pipe_begin(sl_op_ctx *ctx);
int sl_cuda_pipe_item_begin(sl_op_ctx *ctx, const void *model, const size_t *shape, size_t n_shape);
int sl_cuda_pipe_item_end(sl_op_ctx *ctx, int forward_rc);
int sl_cuda_pipe_end(sl_op_ctx *ctx);
void sl_cuda_pipe_stats(sl_op_ctx *ctx, sl_op_pipe_stats *s);
int sl_cuda_pipe_in_item(sl_op_ctx *ctx);
int sl_cuda_pipe_upload(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes);
int sl_cuda_pipe_download(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes);
void sl_cuda_pipe_note_sync(sl_op_ctx *ctx);
void sl_cuda_pipe_defer_free(sl_cu_state *st, void *p);
void sl_cuda_pipe_release(sl_op_ctx *ctx);
}
#endif

#endif
