// Entry points of the kernel files of kernels/cuda/ (one op per file), with
// the signatures of the backend table (kernels/backend.h). Arguments arrive
// validated by kernels/ops.c; pointers are backend memory. Each returns 0 or a
// negative stemline code; nothing here waits for the device. SL_FN gives the
// names sl_cuda_* (nvcc) or sl_cudaemu_* (emulated build).
#ifndef SL_CU_OPS_H
#define SL_CU_OPS_H

#include "sl_cuda.h"

// The activations of kernels/ops.h on the device (GELU: the exact erf form, as torch.nn.GELU()).
static __device__ __forceinline__ float sl_cu_act(sl_act act, float v)
{
    if (act == SL_ACT_RELU)
        return v < 0.0f ? 0.0f : v;
    if (act == SL_ACT_TANH)
        return tanhf(v);
    if (act == SL_ACT_GELU)
        return 0.5f * v * (1.0f + erff(v * (float)M_SQRT1_2));
    return v;
}

extern "C" {
int SL_FN(frame)(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                 size_t first, size_t count, const float *window, float *frames);
int SL_FN(rfft)(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale);
int SL_FN(irfft)(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale);
int SL_FN(magnitude)(sl_op_ctx *ctx, size_t n, const float *cplx, float *out);
int SL_FN(power)(sl_op_ctx *ctx, size_t n, const float *cplx, float *out);
int SL_FN(median_time)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out);
int SL_FN(median_freq)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out);
int SL_FN(hpss_masks)(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                      float margin_h, float margin_p, float *mask_h, float *mask_p);
int SL_FN(apply_mask)(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out);
int SL_FN(overlap_add)(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                       const float *frames, const float *window, size_t length, float *out);
int SL_FN(mel)(sl_op_ctx *ctx, size_t count, int n_bins, int n_mels, const float *fb,
               const float *spec, float *mel);
int SL_FN(log_db)(sl_op_ctx *ctx, size_t batch, size_t n, const float *in, float amin, float top_db,
                  float *out);
int SL_FN(stats_pool)(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_feat, const float *in,
                      float *out);
int SL_FN(gemm)(sl_op_ctx *ctx, const sl_gemm_args *a);
// The backend's gemm op: SL_FN(gemm), or cuBLASLt in a tf32 / bf16 context (gemm_lt.cu).
int SL_FN(gemm_op)(sl_op_ctx *ctx, const sl_gemm_args *a);
// y = act(t) * mul + add for a product t[batch][m][n] (bias included), queued.
int SL_FN(gemm_epilogue)(sl_op_ctx *ctx, const sl_gemm_args *a, const float *t);
int SL_FN(affine)(sl_op_ctx *ctx, const sl_affine_args *a);
int SL_FN(lstm)(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
                size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y);
int SL_FN(wiener)(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t n_targets, size_t n_frames, size_t n_bins,
                  const float *mix, const float *mag, float *out);
int SL_FN(conv2d)(sl_op_ctx *ctx, const sl_conv2d_args *a);
int SL_FN(conv1d)(sl_op_ctx *ctx, const sl_conv1d_args *a);
int SL_FN(conv_transpose1d)(sl_op_ctx *ctx, const sl_convt1d_args *a);
int SL_FN(permute)(sl_op_ctx *ctx, const sl_permute_args *a);
int SL_FN(avg_pool2d)(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in, float *out);
int SL_FN(clip_pool)(sl_op_ctx *ctx, size_t planes, size_t T, size_t F, const float *in, float *out);
int SL_FN(topk)(sl_op_ctx *ctx, const sl_topk_args *a);
int SL_FN(norm)(sl_op_ctx *ctx, const sl_norm_args *a);
int SL_FN(glu)(sl_op_ctx *ctx, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy);
int SL_FN(attention)(sl_op_ctx *ctx, const sl_attention_args *a);
int SL_FN(spec_gather)(sl_op_ctx *ctx, const sl_band_geom *g, const float *spec, float *out);
int SL_FN(mask_scatter)(sl_op_ctx *ctx, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                        const int32_t *inv_idx, const float *spec, const float *mask, float *out);
int SL_FN(row_gather)(sl_op_ctx *ctx, const sl_gather_args *a);

// Workspace queries (bytes of context scratch the op needs for these sizes).
size_t SL_FN(log_db_workspace)(size_t batch, size_t n, float top_db);
size_t SL_FN(irfft_workspace)(int n_fft, size_t count);
}

// NOLA status sentinel: "no failing sample" (what cudaMemset(0x7F) writes).
#define SL_CU_STATUS_NONE 0x7F7F7F7F

#endif
