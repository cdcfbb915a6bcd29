/* CPU reference backend: prototypes of the op implementations (arguments are
 * validated by kernels/ops.c before they get here). */
#ifndef SL_CPU_OPS_H
#define SL_CPU_OPS_H

#include "../backend.h"

#include <math.h>

#include "cpu_simd.h"

/* The activations of kernels/ops.h (GELU: torch's exact erf form, erf by sl_cpu_erf within
 * 2 ulp; tanh by sl_cpu_tanh, about 2 ulp; NaN stays NaN under ReLU). */
static inline float sl_cpu_act(sl_act act, float v)
{
    switch (act) {
    case SL_ACT_RELU: return v < 0.0f ? 0.0f : v;
    case SL_ACT_TANH: return sl_cpu_tanh(v);
    case SL_ACT_GELU: return 0.5f * v * (1.0f + sl_cpu_erf(v * (float)M_SQRT1_2));
    default: return v;
    }
}

int sl_cpu_frame(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                 size_t first, size_t count, const float *window, float *frames);
int sl_cpu_rfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale);
int sl_cpu_irfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale);
int sl_cpu_overlap_add(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                       const float *frames, const float *window, size_t length, float *out);

int sl_cpu_magnitude(sl_op_ctx *ctx, size_t n, const float *cplx, float *out);
int sl_cpu_power(sl_op_ctx *ctx, size_t n, const float *cplx, float *out);
int sl_cpu_median_time(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out);
int sl_cpu_median_freq(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out);
int sl_cpu_hpss_masks(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                      float margin_h, float margin_p, float *mask_h, float *mask_p);
int sl_cpu_apply_mask(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out);

int sl_cpu_mel(sl_op_ctx *ctx, size_t count, int n_bins, int n_mels, const float *fb,
               const float *spec, float *mel);
int sl_cpu_log_db(sl_op_ctx *ctx, size_t batch, size_t n, const float *in, float amin, float top_db,
                  float *out);
int sl_cpu_stats_pool(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_feat, const float *in,
                      float *out);

int sl_cpu_gemm(sl_op_ctx *ctx, const sl_gemm_args *a);
int sl_cpu_affine(sl_op_ctx *ctx, const sl_affine_args *a);
int sl_cpu_lstm(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
                size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y);
int sl_cpu_wiener(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t n_targets, size_t n_frames, size_t n_bins,
                  const float *mix, const float *mag, float *out);

/* Scratch of at least floats owned by the CPU context (grown on demand, kept until the
 * context closes, so per-call ops do not page-fault fresh memory); NULL + SL_ENOMEM in
 * sl_lasterr() when it cannot grow. Valid until the next call on the context. */
float *sl_cpu_scratch(sl_op_ctx *ctx, size_t floats);
/* The form derived from the fixed buffer p (sl_op_mark_fixed) kept for ctx: `floats` floats
 * (64-byte aligned) told apart by tag (what is derived and how, for the caller). *fresh = 0:
 * it holds what the caller that filled it (of the same tag and size) left there; 1: a new
 * buffer for the caller to fill and then hand over with sl_cpu_fixed_form_ready (the old
 * form is gone). Forms are shared by the contexts of the process that declared the same
 * buffer fixed (workers reading one mapping of a weights file): one fills it while the
 * others wait, their tokens lent meanwhile (sl_pool_pause). NULL when p is not fixed, out
 * of memory, or another context fills it while ctx fills one itself (then compute it per
 * call). One form per buffer. */
float *sl_cpu_fixed_form(sl_op_ctx *ctx, const void *p, uint64_t tag, size_t floats, int *fresh);
/* The form sl_cpu_fixed_form gave ctx to fill is filled (filled = 1: the contexts waiting
 * for it go on with it) or given up (0: it is dropped, they compute per call). Nothing for
 * a buffer that is not such a form. */
void sl_cpu_fixed_form_ready(sl_op_ctx *ctx, const float *form, int filled);
/* 1 when p is the start of a buffer declared fixed on ctx (sl_cpu_fixed_form can keep a form of it). */
int sl_cpu_fixed_is(const sl_op_ctx *ctx, const void *p);
/* One (sequence, head) pair of sl_op_attention: q rows [tq] and k, v rows [kl] of
 * dim_head D at their strides, rope (or NULL) as in sl_attention_args, bias rows
 * [tq] (ld_bias) of this pair or NULL; out rows [tq] (ldo) get softmax(s) v, each times
 * row_scale[i] when row_scale is not NULL (the gate of gated heads, applied as the row is
 * stored rather than by a second pass over the output). */
typedef struct {
    size_t tq, kl, D;
    float scale;
    const float *q, *k, *v, *rope, *bias, *row_scale;
    size_t ldq, ldk, ldv, ld_bias;
    float *out;
    size_t ldo;
} sl_cpu_attn_pair;
/* The pair on the AMX tiles (cpu_attn_amx.c: both products with tf32's three bf16 products per
 * product, the exact softmax in fp32 between them): 1 when done, 0 when this CPU has no AMX (or
 * SL_CPU_AMX=0) or out of memory, the caller then computing it; sl_cpu_attn_amx_ws floats of
 * workspace for tq query rows and up to tk keys. */
int sl_cpu_attn_amx(const sl_cpu_attn_pair *p, float *ws);
size_t sl_cpu_attn_amx_ws(size_t tq, size_t tk, size_t D);
/* Floats of workspace sl_cpu_attn_small needs for tq query rows and up to tk keys. */
size_t sl_cpu_attn_small_ws(size_t tq, size_t tk, size_t D);
/* The pair by the AVX2 / FMA kernels of cpu_attn.c: 1 when done, 0 when this CPU
 * (or the AVX2 switch, sl_cpu_simd_set) leaves it to the caller. */
int sl_cpu_attn_small(const sl_cpu_attn_pair *p, float *ws);
/* The pair by the kernel of cpu_attn_flash2.c (AVX2 / FMA, an online softmax over chunks of
 * keys) on CPUs with AVX2 / FMA and without AVX-512, for any number of keys and head widths a
 * multiple of 8 up to 64: 1 when done, 0 when it leaves the pair to the caller;
 * sl_cpu_attn_long_ws floats of workspace for tq query rows and up to tk keys;
 * sl_cpu_attn_set_long(0) turns it off (tests; returns the previous setting). */
int sl_cpu_attn_long(const sl_cpu_attn_pair *p, float *ws);
size_t sl_cpu_attn_long_ws(size_t tq, size_t tk, size_t D);
int sl_cpu_attn_set_long(int enable);
/* Pairs of up to 64 keys (a multiple of 16), head widths 16..64 (multiples of 16) and no
 * rotation take cpu_attn.c's window kernel under AVX-512 (the same bits as its general
 * kernel, without the copies); 0 turns it off (tests; returns the previous setting). */
int sl_cpu_attn_set_windows(int enable);
/* Row s[0..kl) of scores -> probabilities in place by the AVX2 / FMA softmax of cpu_attn.c
 * (max subtracted, polynomial exp, the sum in double): 1 when done, 0 when this CPU has no
 * AVX2 / FMA path (the caller then does it in scalar code). */
int sl_cpu_softmax_row(float *s, size_t kl);
/* Rows of scores S[rows][n] (row stride ld) -> unnormalised probabilities exp(s - max) in
 * place, inv[r] = 1 / their sum, by the AVX-512 2^x of the long-sequence kernel (about 1 ulp;
 * the sums in float lanes over 256 scores, then in double): 1 when done, 0 without AVX-512. */
int sl_cpu_softmax_rows_exp2(float *S, size_t ld, size_t rows, size_t n, float *inv);
/* 1 when sl_cpu_attn_small takes sequences of any length (its AVX-512 kernels score blocks of
 * query rows); 0: only up to 256 x 256 scores are worth it. */
int sl_cpu_attn_any_length(void);
/* dst[t][D] = src rows (ld) rotated by the angles of positions t (rope NULL: copied). */
void sl_cpu_rotate_rows(const float *src, size_t ld, size_t rows, int D, const float *rope, float *dst);

/* c[m][n] = a[m][k] . b^T (trans_b, b[n][k]) or a . b (b[k][n]), row-major, beta 0, split
 * over the context's threads when large enough (OpenBLAS itself runs on one thread). */
void sl_cpu_sgemm(sl_op_ctx *ctx, int trans_b, size_t m, size_t n, size_t k, const float *a, size_t lda,
                  const float *b, size_t ldb, float *c, size_t ldc);
/* Part `part` of `parts` of the same product on the calling thread (for ops that schedule
 * GEMMs themselves): the product is cut into sl_cpu_gemm_tiles(m, n, k) tiles that depend on
 * its shape alone (columns in multiples of 16 when n >= m, else rows), one library call per
 * tile, and each part takes whole tiles (sl_cpu_gemm_part_rect gives the rows and columns of
 * c that part writes): the same bits whatever `parts` is. */
void sl_cpu_sgemm_part(size_t part, size_t parts, int trans_b, size_t m, size_t n, size_t k, const float *a,
                       size_t lda, const float *b, size_t ldb, float *c, size_t ldc);
size_t sl_cpu_gemm_tiles(size_t m, size_t n, size_t k);
/* Parts that ops cutting their own library calls by the shape (conv1d, conv_transpose1d) aim
 * for, whatever the thread count. */
#define SL_CPU_SPLIT 4
void sl_cpu_gemm_part_rect(size_t part, size_t parts, size_t m, size_t n, size_t k, size_t *i0, size_t *i1, size_t *j0,
                           size_t *j1);
/* Products of at most this many rows of a take the AVX-512 dot-product kernel
 * (cpu_gemm512.c) instead of OpenBLAS, whose packing of b on every call costs more
 * than the arithmetic there. sl_cpu_gemm_dot_fits says whether a whole m x n x k
 * product c = a . b^T goes there (decided once per product, so that every thread
 * split of it computes the same bits); sl_cpu_gemm_dot computes rows / columns of it. */
#define SL_CPU_DOT_MAX_ROWS 64
int sl_cpu_gemm_dot_fits(size_t m, size_t n, size_t k);
void sl_cpu_gemm_dot(size_t m, size_t n, size_t k, const float *a, size_t lda, const float *b, size_t ldb, float *c,
                     size_t ldc);
/* Products of at least this many rows with weights declared fixed take the packed kernel
 * below even where the dot kernel fits (from 24 rows it is faster: CLAP's stage 4, 64 rows). */
#define SL_CPU_PACKED_MIN_ROWS 24
/* Without AVX-512, the packed kernel takes products of at most this many rows (more: OpenBLAS). */
#define SL_CPU_PACKED_AVX2_MAX_ROWS 288
/* The whole linear layer a (batch 1, no mul, a residual only without activation) on the
 * AVX-512 or AVX2 + FMA kernel of cpu_gemmpk.c (the same bits) over the packed form of a->w
 * kept with the context, split into `parts` parts on ctx's pool: 1 when done, 0 when left to
 * the caller (neither AVX-512 nor AVX2 + FMA in effect, more than SL_CPU_PACKED_AVX2_MAX_ROWS
 * rows without AVX-512, w
 * not declared fixed by sl_op_mark_fixed, out of memory, a shape it does not take). */
int sl_cpu_gemm_packed(sl_op_ctx *ctx, const sl_gemm_args *a, size_t parts);
/* Linear layers on the AMX tiles (cpu_amx.c) with terms bf16 products per product: 3
 * (runtime.precision tf32), 1 (bf16) or 6 (bf16x6: three bf16 parts per operand, fp32's
 * accuracy). w (n rows of k) is packed first: sl_cpu_amx_wsize
 * uint16 values, panels of 16 columns, sl_cpu_amx_pack_w packing panels [p0, p1) of them
 * ((n + 31) / 32 * 2 in all). sl_cpu_amx_gemm then computes rows [i0, i1) and the columns of
 * panel pairs [q0, q1) (32 columns each) of y = act(x . w^T + bias) * mul + add (the epilogue of
 * sl_gemm_args; add may be y): 1 when done, 0 when left to the caller (no AMX, an empty
 * product, out of memory). */
typedef struct {
    sl_act act;
    const float *bias, *mul, *add;
    size_t ldmul, ldadd;
    float *y;
    size_t ldy;
} sl_cpu_amx_epi;
size_t sl_cpu_amx_wsize(int terms, size_t n, size_t k);
void sl_cpu_amx_pack_w(int terms, size_t n, size_t k, const float *w, size_t ldw, size_t p0, size_t p1,
                       uint16_t *dst);
int sl_cpu_amx_gemm(int terms, size_t i0, size_t i1, size_t q0, size_t q1, size_t n, size_t k, const float *x,
                    size_t ldx, const uint16_t *wp, const sl_cpu_amx_epi *e);
int sl_cpu_conv2d(sl_op_ctx *ctx, const sl_conv2d_args *a);
int sl_cpu_conv1d(sl_op_ctx *ctx, const sl_conv1d_args *a);
/* conv1d without im2col where AVX-512 or AVX2 + FMA runs and the shape suits it
 * (cpu_conv1d_direct.c): 1 when it computed y, 0 when it did nothing (the caller takes the
 * im2col path). */
int sl_cpu_conv1d_direct(sl_op_ctx *ctx, const sl_conv1d_args *a);
/* conv_transpose1d without col2im the same way, k <= 16 and inner is 1 or >= 16: 1 when it
 * computed y, 0 when it did nothing (the col2im path). */
int sl_cpu_convt1d_direct(sl_op_ctx *ctx, const sl_convt1d_args *a);
/* The kernels the two take now: 0 none (sl_cpu_conv1d_direct_set(0), or neither AVX-512 nor
 * AVX2 + FMA: cpu_simd.h), 1 AVX-512, 2 AVX2 + FMA (the same bits). */
int sl_cpu_conv1d_direct_isa(void);
/* enable 0: the im2col / col2im paths only, 1 (the default): the direct kernels where they run.
 * Process-wide, for tests and benchmarks; returns the previous setting. */
int sl_cpu_conv1d_direct_set(int enable);
int sl_cpu_conv_transpose1d(sl_op_ctx *ctx, const sl_convt1d_args *a);
int sl_cpu_permute(sl_op_ctx *ctx, const sl_permute_args *a);
int sl_cpu_avg_pool2d(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in, float *out);
int sl_cpu_clip_pool(sl_op_ctx *ctx, size_t planes, size_t T, size_t F, const float *in, float *out);
int sl_cpu_topk(sl_op_ctx *ctx, const sl_topk_args *a);
int sl_cpu_norm(sl_op_ctx *ctx, const sl_norm_args *a);
int sl_cpu_glu(sl_op_ctx *ctx, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy);
int sl_cpu_attention(sl_op_ctx *ctx, const sl_attention_args *a);
int sl_cpu_spec_gather(sl_op_ctx *ctx, const sl_band_geom *g, const float *spec, float *out);
int sl_cpu_mask_scatter(sl_op_ctx *ctx, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                        const int32_t *inv_idx, const float *spec, const float *mask, float *out);
int sl_cpu_row_gather(sl_op_ctx *ctx, const sl_gather_args *a);

#endif
