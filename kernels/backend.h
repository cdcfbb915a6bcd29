/* Private interface between kernels/ops*.c (argument checks, dispatch) and the
 * backends. Arguments reaching a backend function are already validated.
 * A NULL op pointer means the backend does not implement that op. */
#ifndef SL_KERNELS_BACKEND_H
#define SL_KERNELS_BACKEND_H

#include "ops.h"

typedef struct sl_op_backend {
    const char *name;
    int (*init)(sl_op_ctx *ctx);   /* fills ctx->device and ctx->state */
    /* Called by ops.c before every other call on the context (fini included),
     * from whichever thread makes it: makes the context's device current for
     * that thread. 0 or an error (the call is then not made). NULL: nothing to do. */
    int (*enter)(sl_op_ctx *ctx);
    void (*fini)(sl_op_ctx *ctx);
    int (*alloc)(sl_op_ctx *ctx, void **ptr, size_t bytes);
    void (*free_)(sl_op_ctx *ctx, void *ptr);
    int (*upload)(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes);
    int (*download)(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes);
    int (*copy)(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes); /* backend -> backend, queued */
    int (*sync)(sl_op_ctx *ctx);
    /* Page-locked host memory for fast asynchronous copies; NULL: aligned malloc. */
    int (*host_alloc)(sl_op_ctx *ctx, void **ptr, size_t bytes);
    void (*host_free)(sl_op_ctx *ctx, void *ptr);
    /* Creates FFT plans / sizes workspaces up front (sl_op_reserve); NULL: nothing to do. */
    int (*reserve)(sl_op_ctx *ctx, int n_fft, size_t max_frames);

    int (*frame)(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                 size_t first, size_t count, const float *window, float *frames);
    int (*rfft)(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale);
    int (*irfft)(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale);
    int (*magnitude)(sl_op_ctx *ctx, size_t n, const float *cplx, float *out);
    int (*power)(sl_op_ctx *ctx, size_t n, const float *cplx, float *out);
    int (*median_time)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out);
    int (*median_freq)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out);
    int (*hpss_masks)(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                      float margin_h, float margin_p, float *mask_h, float *mask_p);
    int (*apply_mask)(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out);
    int (*overlap_add)(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                       const float *frames, const float *window, size_t length, float *out);
    int (*mel)(sl_op_ctx *ctx, size_t count, int n_bins, int n_mels, const float *fb,
               const float *spec, float *mel);
    int (*log_db)(sl_op_ctx *ctx, size_t batch, size_t n, const float *in, float amin, float top_db,
                  float *out);
    int (*stats_pool)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_feat, const float *in,
                      float *out);
    int (*gemm)(sl_op_ctx *ctx, const sl_gemm_args *a);
    int (*affine)(sl_op_ctx *ctx, const sl_affine_args *a);
    int (*lstm)(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
                size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y);
    int (*wiener)(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t n_targets, size_t n_frames, size_t n_bins,
                  const float *mix, const float *mag, float *out);
    int (*conv2d)(sl_op_ctx *ctx, const sl_conv2d_args *a);
    int (*avg_pool2d)(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in, float *out);
    int (*clip_pool)(sl_op_ctx *ctx, size_t planes, size_t T, size_t F, const float *in, float *out);
    int (*topk)(sl_op_ctx *ctx, const sl_topk_args *a);
    int (*norm)(sl_op_ctx *ctx, const sl_norm_args *a);
    int (*glu)(sl_op_ctx *ctx, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy);
    int (*attention)(sl_op_ctx *ctx, const sl_attention_args *a);
    int (*spec_gather)(sl_op_ctx *ctx, const sl_band_geom *g, const float *spec, float *out);
    int (*mask_scatter)(sl_op_ctx *ctx, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                        const int32_t *inv_idx, const float *spec, const float *mask, float *out);
    int (*row_gather)(sl_op_ctx *ctx, const sl_gather_args *a);
    int (*conv1d)(sl_op_ctx *ctx, const sl_conv1d_args *a);
    int (*conv_transpose1d)(sl_op_ctx *ctx, const sl_convt1d_args *a);
    int (*permute)(sl_op_ctx *ctx, const sl_permute_args *a);
    /* ctx->pool changed (sl_op_ctx_set_threads): update ctx->device. NULL (last, so the
     * positional tables of kernels/cuda leave it out): the backend's threads stay 1. */
    void (*threads_changed)(sl_op_ctx *ctx);
    /* sl_op_ctx_set_precision (any mode): the mode that takes effect (>= 0, stored
     * in ctx->precision) or an error (< 0); updates ctx->device. NULL: fp32 only. */
    int (*set_precision)(sl_op_ctx *ctx, sl_precision p);
    /* Pipelined forwards (ops.h sl_op_pipe_*); NULL: the ops run as called, and
     * uploads / downloads complete at the call. */
    int (*pipe_begin)(sl_op_ctx *ctx);
    int (*pipe_item_begin)(sl_op_ctx *ctx, const void *model, const size_t *shape, size_t n_shape);
    int (*pipe_item_end)(sl_op_ctx *ctx, int forward_rc);
    int (*pipe_end)(sl_op_ctx *ctx);
    void (*pipe_stats)(sl_op_ctx *ctx, sl_op_pipe_stats *s);
    /* sl_op_mark_fixed: 0 or SL_ENOMEM. NULL: nothing is derived from fixed buffers. */
    int (*mark_fixed)(sl_op_ctx *ctx, const void *p, size_t bytes);
} sl_op_backend;

struct sl_op_ctx {
    const sl_op_backend *be;
    char device[320];
    int device_req; /* CUDA ordinal asked for ("cuda:N"), 0 by default */
    void *state;    /* backend-private */
    struct sl_pool *pool; /* threads of the ops (sl_op_ctx_set_threads), NULL = the caller only */
    sl_precision precision; /* sl_op_ctx_set_precision, FP32 by default */
    int skip_ops; /* a pipelined forward replayed from a CUDA graph: ops queue nothing (set by the backend) */
    int in_pipe;  /* between sl_op_pipe_begin and sl_op_pipe_end on a backend with pipe_begin */
};

extern const sl_op_backend sl_cpu_backend;
/* kernels/cuda/backend.cu compiled as host C++ with the launch emulation: always built. */
extern const sl_op_backend sl_cuda_emu_backend;
#ifdef SL_HAVE_CUDA
/* kernels/cuda/backend.cu compiled by nvcc: built where nvcc was found. */
extern const sl_op_backend sl_cuda_backend;
#endif

#endif
