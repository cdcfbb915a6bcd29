/* The op layer: every DSP operation the models use, declared once here and
 * implemented per backend (kernels/cpu/ = reference, kernels/cuda/ = GPU).
 *
 * Memory model. Every data pointer passed to an op lives in the memory of the
 * context's backend ("backend memory"): host memory for the CPU backend, device
 * memory for CUDA. Models obtain it with sl_op_alloc and move host data with
 * sl_op_upload / sl_op_download, so the same model code runs on both.
 * Layouts are batch-major and C-ordered; complex numbers are interleaved
 * (re, im) float pairs. Ops are asynchronous with respect to the host on
 * backends that can be (CUDA: ordered on the context's stream);
 * sl_op_download and sl_op_sync wait. The exact numerical semantics are in
 * kernels/README.md.
 *
 * A context is used by one thread at a time; several contexts may run in
 * parallel threads. */
#ifndef SL_OPS_H
#define SL_OPS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_op_ctx sl_op_ctx;

/* Every op, for capability queries and the parity test. */
typedef enum {
    SL_OP_FRAME = 0,    /* centre padding + framing + window */
    SL_OP_RFFT,         /* batched real-to-complex FFT */
    SL_OP_IRFFT,        /* batched complex-to-real inverse FFT */
    SL_OP_MAGNITUDE,    /* |z| */
    SL_OP_POWER,        /* |z|^2 */
    SL_OP_MEDIAN_TIME,  /* median filter along frames (hpss harmonic) */
    SL_OP_MEDIAN_FREQ,  /* median filter along bins (hpss percussive) */
    SL_OP_HPSS_MASKS,   /* librosa softmask pair with margins */
    SL_OP_APPLY_MASK,   /* complex spectrum * real mask */
    SL_OP_OVERLAP_ADD,  /* iSTFT tail: window, overlap-add, envelope division, trim */
    SL_OP_MEL,          /* mel filterbank application */
    SL_OP_LOG_DB,       /* 10*log10(max(amin, x)) [- top_db clamp] */
    SL_OP_STATS_POOL,   /* mean/std over time and of the first difference */
    SL_OP_GEMM,         /* batched linear layer act(x w^T + bias) [* mul] */
    SL_OP_AFFINE,       /* batched act((x + add) * mul), per column */
    SL_OP_LSTM,         /* multi-layer (bi)directional LSTM, torch semantics */
    SL_OP_WIENER,       /* openunmix multichannel Wiener filter (EM) */
    SL_OP_CONV2D,       /* 2-D convolution, stride 1, zero 'same' padding, bias + activation */
    SL_OP_AVG_POOL2D,   /* non-overlapping 2-D average pooling (torch avg_pool2d, floor) */
    SL_OP_CLIP_POOL,    /* PANNs head: mean over the last axis, then max_t + mean_t */
    SL_OP_TOPK,         /* running top k per row of score blocks (search) */
    SL_OP_NORM,         /* RMSNorm / LayerNorm over the last axis */
    SL_OP_GLU,          /* gated linear unit a * sigmoid(b) */
    SL_OP_ATTENTION,    /* multi-head attention, optional rotary embedding, bias, gate */
    SL_OP_SPEC_GATHER,  /* spectrum bins -> per-frame feature rows (band split) */
    SL_OP_MASK_SCATTER, /* feature-row complex masks -> averaged per bin, times the spectrum */
    SL_OP_ROW_GATHER,   /* rows picked (or blended from taps) by an index table: window partition, patch merging */
    SL_OP_CONV1D,       /* 1-D convolution: stride, padding, dilation, groups, independent columns */
    SL_OP_CONV_TRANSPOSE1D, /* transposed 1-D convolution, independent columns */
    SL_OP_PERMUTE,      /* strided 4-D copy (axis permutation, crop, pad into a wider buffer) */
    SL_OP_COUNT
} sl_op_id;

typedef enum { SL_PAD_REFLECT = 0, SL_PAD_CONSTANT = 1 } sl_pad_mode;

/* STFT geometry with torch.stft / torch.istft semantics (see README.md). */
typedef struct {
    int n_fft;        /* FFT size, 2..65536 */
    int hop;          /* hop length, 1..n_fft */
    int center;       /* 1: pad n_fft/2 on both sides (torch center=True) */
    sl_pad_mode pad;  /* padding used when center */
    int normalized;   /* 1: forward and inverse scaled by n_fft^-1/2 (torch normalized=True) */
} sl_stft_cfg;

/* ---- context ---- */

/* Opens a context on backend "auto" | "cpu" | "cuda" | "cuda-emu". "auto" takes
 * CUDA only when a device is usable AND the CUDA backend implements every op, else
 * the CPU (an info log says which device, or why not). "cuda" without a usable
 * device -> SL_ENODEVICE; an unknown name -> SL_EINVAL; both with sl_lasterr().
 * "cuda-emu" (tests, debugging) runs the CUDA kernels on the CPU through the
 * launch emulation of kernels/cuda/sl_cuda.h: slow, host memory, always built.
 * *out is owned by the caller (sl_op_ctx_close). */
int sl_op_ctx_open(sl_op_ctx **out, const char *backend);
/* "cuda:N" opens CUDA device N (same errors as "cuda"). Number of CUDA devices
 * the runtime sees; 0 without a driver, a device or a CUDA build. Never fails. */
int sl_op_device_count(void);
/* Frees the context and its scratch; NULL is allowed. */
void sl_op_ctx_close(sl_op_ctx *ctx);
/* "cpu", "cuda" or "cuda-emu"; static string, never NULL. */
const char *sl_op_ctx_backend(const sl_op_ctx *ctx);
/* Human-readable device, e.g. "CPU (2 threads per context, fftw-3.3.10)"; owned by ctx, never NULL. */
const char *sl_op_ctx_device(const sl_op_ctx *ctx);
/* Runs the ops of ctx on threads threads in all (1..1024): the calling thread plus
 * threads-1 helpers of one sl_pool (common/sl_pool.h) that the CPU ops split their
 * work over (GEMM, LSTM, convolution, median filters, FFT batches). 1 (the default)
 * starts no thread. Backends other than the CPU keep 1 (their work runs on the
 * device). Returns 0, SL_EINVAL or SL_ENOMEM / SL_EIO with sl_lasterr(). */
int sl_op_ctx_set_threads(sl_op_ctx *ctx, int threads);
/* Arithmetic of the large matrix products (runtime.precision). FP32 (the
 * default): the exact paths, what every backend computes, the same bits whether
 * or not the CPU has AMX. TF32 / BF16 change sl_op_gemm only (kernels/README.md,
 * "Precision modes"), fp32 storage and fp32 accumulation everywhere: the CUDA
 * backend runs it on tensor cores through cuBLASLt with inputs rounded to TF32
 * (10-bit mantissa) or bfloat16 (7-bit mantissa); the CPU backend on the AMX
 * tiles, TF32 as three bf16 products per product (about 2^-16 relative error,
 * better than TF32's rounding) and BF16 as one (inputs rounded to bfloat16). A
 * GEMM can opt out per call (sl_gemm_args.force_fp32). Other ops stay fp32. */
/* BF16X6 keeps fp32's accuracy on the AMX tiles: each operand split into three
 * bf16 parts (a = a0 + a1 + a2 exactly), a.b as the six largest of the nine
 * part products (a0b0 + a0b1 + a1b0 + a0b2 + a1b1 + a2b0, the dropped ones under
 * 2^-24 of the product) summed in fp32; elsewhere (no AMX, CUDA) it is exact
 * fp32. */
typedef enum { SL_PREC_FP32 = 0, SL_PREC_TF32 = 1, SL_PREC_BF16 = 2, SL_PREC_BF16X6 = 3 } sl_precision;
/* Asks for precision p on ctx's matrix products. 0 (the mode that takes effect
 * is sl_op_ctx_precision(ctx): FP32 on a CPU without AMX-BF16 tiles or with
 * SL_CPU_AMX=0, where the device string says so); SL_EUNSUPPORTED (with
 * sl_lasterr()) for TF32 / BF16 on the cuda-emu backend, which computes in fp32
 * only; FP32 is accepted by every backend. The device string (sl_op_ctx_device)
 * names the mode. */
int sl_op_ctx_set_precision(sl_op_ctx *ctx, sl_precision p);
/* The precision ctx's matrix products compute in (the effective mode; SL_PREC_FP32
 * unless set); never fails. */
sl_precision sl_op_ctx_precision(const sl_op_ctx *ctx);
/* "fp32", "tf32", "bf16", "bf16x6"; "?" when out of range. */
const char *sl_precision_name(sl_precision p);
/* The mode named name (sl_precision_name's names); -1 for another name. */
int sl_precision_from_name(const char *name);
/* Threads the ops of ctx run on (1 unless set above); never fails. */
int sl_op_ctx_threads(const sl_op_ctx *ctx);
/* Most threads that ran one op's loop at the same time so far (instrumentation:
 * a report's stated split is the split that ran); 0 before any threaded op. */
int sl_op_ctx_peak_threads(const sl_op_ctx *ctx);
/* The ops of ctx run on base threads (its caller holds base tokens of b) plus
 * one for each token of b free when a loop starts (sl_pool_set_budget); call
 * after sl_op_ctx_set_threads. Results do not change. NULL b unbinds. */
struct sl_budget;
void sl_op_ctx_share_budget(sl_op_ctx *ctx, struct sl_budget *b, int base);
/* 1 when the backend of ctx implements op, 0 otherwise (never fails). */
int sl_op_supported(const sl_op_ctx *ctx, sl_op_id op);
/* Static name of op ("frame", "rfft", ...), "?" when out of range. */
const char *sl_op_name(sl_op_id op);
/* Returns 0 when every op in ops[0..n) is supported, else SL_EUNSUPPORTED naming
 * the first missing one and the backend in sl_lasterr() (who = caller, for the message). */
int sl_op_require(const sl_op_ctx *ctx, const sl_op_id *ops, size_t n, const char *who);

/* ---- backend memory ---- */

/* Allocates bytes of backend memory (64-byte aligned, uninitialised) into *ptr.
 * Returns 0, SL_ENOMEM or SL_EUNSUPPORTED. Owned by the caller: sl_op_free. */
int sl_op_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes);
/* Frees memory from sl_op_alloc of the same ctx; NULL is allowed. */
void sl_op_free(sl_op_ctx *ctx, void *ptr);
/* Host -> backend copy of bytes, queued on the context (CUDA: cudaMemcpyAsync on its
 * stream). From ordinary host memory the source may be reused as soon as this returns;
 * from pinned memory (sl_op_host_alloc) the copy is truly asynchronous, so the source
 * must stay unchanged until the next sl_op_sync / sl_op_download.
 * Returns 0 or SL_EDEVICE / SL_EUNSUPPORTED. No ownership change. */
int sl_op_upload(sl_op_ctx *ctx, void *dst, const void *host_src, size_t bytes);
/* Backend -> host copy; waits for pending ops. Returns 0 or a negative code, including
 * an asynchronous error of an earlier op (e.g. SL_ENUMERIC from overlap_add's NOLA
 * check on CUDA; the copy itself was still made). */
int sl_op_download(sl_op_ctx *ctx, void *host_dst, const void *src, size_t bytes);
/* Backend -> backend copy of bytes within ctx, queued like an op (CUDA: cudaMemcpyAsync
 * device to device on its stream). dst and src must not overlap unless equal (then nothing
 * is done). Returns 0 or SL_EDEVICE / SL_EUNSUPPORTED / SL_EINVAL. */
int sl_op_copy(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes);
/* Waits for every op queued on ctx. Returns 0 or the first asynchronous error. */
int sl_op_sync(sl_op_ctx *ctx);
/* Declares that the bytes at p (backend memory of ctx, e.g. weights uploaded at load) keep
 * their values until sl_op_free(p): the backend may then keep forms of them derived once
 * instead of per op call (the CPU backend: the Winograd-transformed weights of a 3x3 conv2d,
 * 16/9 their size, which change no result; linear-layer weights packed for its AVX-512 GEMM,
 * an fp32 kernel of its own: kernels/README.md). An sl_op_upload or sl_op_copy into the range
 * ends the promise; an op writing there breaks it. Returns 0 (backends without such forms
 * ignore it) or SL_ENOMEM. */
int sl_op_mark_fixed(sl_op_ctx *ctx, const void *p, size_t bytes);
/* The CPU backend's forms derived from fixed buffers, held now by the process: their bytes
 * and number, each counted once however many contexts share it (contexts that declared the
 * same buffer fixed, e.g. workers reading one mapping of a weights file, share one form,
 * made once), and the contexts that took part in them (uses >= n; 2 n: two contexts each). */
void sl_op_cpu_fixed_forms(size_t *bytes, size_t *n, size_t *uses);
/* Backend memory with the bytes at host, which stay valid and unchanged as long as the
 * result is used (e.g. weights in a mapped file): on the cpu backend, whose memory is host
 * memory, host itself (no copy, no allocation; *owned = 0, never sl_op_free it); elsewhere
 * a new buffer with the bytes uploaded (*owned = 1: sl_op_free it). Returns 0 or the
 * error of sl_op_alloc / sl_op_upload. */
int sl_op_wrap_host(sl_op_ctx *ctx, const void *host, size_t bytes, void **ptr, int *owned);
/* Page-locked host memory for fast, truly asynchronous copies (CUDA: cudaHostAlloc; other
 * backends: 64-byte aligned malloc). Returns 0 or SL_ENOMEM / SL_EDEVICE; *ptr owned by the
 * caller: sl_op_host_free on the same ctx (NULL allowed). Pinned memory is a scarce system
 * resource: allocate it once per worker, not per track. */
int sl_op_host_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes);
void sl_op_host_free(sl_op_ctx *ctx, void *ptr);
/* Prepares ctx for transforms of n_fft points over up to max_frames frames per call:
 * on CUDA, creates every cuFFT plan such calls use (both directions) and sizes the shared
 * FFT work area and the op scratch, so that no device allocation or plan creation happens
 * later while tracks flow (ops still grow them on demand when called beyond this).
 * Call once per worker from the batch configuration. Returns 0, SL_EINVAL, SL_ENOMEM or
 * SL_EDEVICE. No-op on the CPU. */
int sl_op_reserve(sl_op_ctx *ctx, int n_fft, size_t max_frames);

/* ---- pipelined forwards: CUDA graphs, copy / compute overlap (kernels/README.md) ----
 * A sequence of forwards of models on ctx (one batch of segments) runs between
 * sl_op_pipe_begin and sl_op_pipe_end, each forward between sl_op_pipe_item_begin and
 * sl_op_pipe_item_end. Inside a forward on the cuda backend, sl_op_upload copies its host
 * source at the call (it may be reused at once) and sl_op_download only queues: its host
 * destination is written by a later sl_op_pipe_item_begin or by sl_op_pipe_end, so a forward
 * must not read what it downloads (nor call sl_op_sync, which would wait inside the batch).
 * A forward seen once with a key (model, shape) is captured as a CUDA graph the next time and
 * replayed after that (SL_CUDA_GRAPHS=0 at context open: never). Other backends run the
 * forwards as called (these calls do nothing there). */
typedef struct {
    unsigned long long items;      /* forwards begun */
    unsigned long long eager;      /* ... run op by op (first of a key, graphs off, or capture failed) */
    unsigned long long captures;   /* ... captured into a graph (and launched) */
    unsigned long long replays;    /* ... replayed from a graph */
    unsigned long long capture_failures; /* captures abandoned (the forward then ran again, op by op) */
    unsigned long long ring_waits; /* host waits for a pinned buffer of the ring (between forwards) */
    unsigned long long syncs_in_items; /* sl_op_sync / waits asked for inside a forward */
} sl_op_pipe_stats;
/* 0, or an error. */
int sl_op_pipe_begin(sl_op_ctx *ctx);
/* model: any pointer stable for the model's life; shape[n_shape] (n_shape <= 4): the sizes
 * that decide every op of its forward (forwards with the same key issue the same ops on the
 * same buffers). 0, or an error. */
int sl_op_pipe_item_begin(sl_op_ctx *ctx, const void *model, const size_t *shape, size_t n_shape);
/* forward_rc: what the forward returned. Returns it, another error, or 1: the capture of
 * this forward failed (a call a graph cannot hold); run it again from
 * sl_op_pipe_item_begin, it then runs op by op. */
int sl_op_pipe_item_end(sl_op_ctx *ctx, int forward_rc);
/* Waits for the sequence and writes every pending download. 0 or the first error. */
int sl_op_pipe_end(sl_op_ctx *ctx);
/* 1 between sl_op_pipe_begin and sl_op_pipe_end on a backend whose downloads are deferred there. */
int sl_op_pipe_deferred(const sl_op_ctx *ctx);
/* Counters of ctx's pipelined forwards since it was opened (zeros on other backends). */
void sl_op_pipe_get_stats(sl_op_ctx *ctx, sl_op_pipe_stats *s);

/* ---- geometry helpers (host, no ctx) ---- */

/* Number of STFT frames for a signal of len samples: center ? 1 + len/hop (n_fft even;
 * in general 1 + (len + 2*(n_fft/2) - n_fft)/hop) : 1 + (len - n_fft)/hop.
 * Returns 0 when no frame fits (len < n_fft without centre, or len == 0). */
size_t sl_stft_n_frames(const sl_stft_cfg *c, size_t len);
/* Checks c (ranges above) and that a signal of len samples can be framed
 * (reflect padding needs n_fft/2 < len, as torch). Returns 0 or SL_EINVAL with sl_lasterr(). */
int sl_stft_check(const sl_stft_cfg *c, size_t len);
/* Fills w[0..n_fft) with a periodic Hann window of win_length (1..n_fft) samples,
 * zero-padded symmetrically to n_fft (torch.hann_window + istft/stft padding;
 * left pad = (n_fft - win_length)/2). Host memory, owned by the caller. Returns 0 or SL_EINVAL. */
int sl_window_hann(float *w, int n_fft, int win_length);
/* Fills fb[n_mels][n_fft/2+1] (host, caller-owned) with librosa.filters.mel(sr, n_fft,
 * n_mels, fmin, fmax, htk=False, norm='slaney'), computed in double. fmax <= 0 means sr/2.
 * Returns 0 or SL_EINVAL (bad ranges). */
int sl_mel_filterbank(float *fb, int sr, int n_fft, int n_mels, double fmin, double fmax);

/* ---- ops (all pointers: backend memory, caller-owned; 0 or a negative code) ---- */

/* x[batch][len] -> frames[batch][count][n_fft], frames[b][j] = padded[m*hop .. m*hop+n_fft) * window
 * for m = first + j; window[n_fft]. first + count <= sl_stft_n_frames(c, len) (a sub-range lets
 * callers bound memory by processing frames in blocks). SL_EINVAL when sl_stft_check fails. */
int sl_op_frame(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                size_t first, size_t count, const float *window, float *frames);
/* in[count][n_fft] real -> out[count][n_fft/2+1] complex, unnormalised forward DFT times scale
 * (1 or n_fft^-1/2). in and out must not overlap. SL_EINVAL / SL_ENOMEM. */
int sl_op_rfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale);
/* in[count][n_fft/2+1] complex -> out[count][n_fft] real, unnormalised inverse DFT times scale
 * (1/n_fft for torch backward, n_fft^-1/2 for normalized). Imaginary parts of the DC and
 * (even n_fft) Nyquist bins are ignored, as irfft does. in is preserved. SL_EINVAL / SL_ENOMEM. */
int sl_op_irfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale);
/* cplx[n] complex -> out[n] = |z| (hypot). out may not alias cplx. */
int sl_op_magnitude(sl_op_ctx *ctx, size_t n, const float *cplx, float *out);
/* cplx[n] complex -> out[n] = re^2 + im^2. */
int sl_op_power(sl_op_ctx *ctx, size_t n, const float *cplx, float *out);
/* in[batch][n_frames][n_bins] -> out (same shape, no aliasing): median over kernel (odd, >= 1)
 * consecutive frames centred on each frame, edges extended by scipy.ndimage 'reflect'
 * (d c b a | a b c d | d c b a, repeated as needed). SL_EINVAL on even kernel. */
int sl_op_median_time(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                      const float *in, float *out);
/* Same along bins (the last axis). */
int sl_op_median_freq(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                      const float *in, float *out);
/* harm[n], perc[n] (non-negative) -> mask_h = softmask(harm, margin_h*perc, power),
 * mask_p = softmask(perc, margin_p*harm, power) with librosa.util.softmask semantics;
 * split_zeros (0.5 where both vanish) only when both margins are 1. power > 0 finite,
 * margins >= 1. The masks may alias harm / perc respectively. */
int sl_op_hpss_masks(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                     float margin_h, float margin_p, float *mask_h, float *mask_p);
/* out[n] complex = cplx[n] * mask[n]; out may alias cplx. */
int sl_op_apply_mask(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out);
/* frames[batch][n_frames][n_fft] (already inverse-transformed) -> out[batch][length]:
 * multiply by window[n_fft], overlap-add with hop, divide by the overlap-added window^2,
 * drop n_fft/2 samples at the start when centre, keep length samples (zeros past the
 * last frame). SL_ENUMERIC when the envelope over the kept span is < 1e-11 (NOLA): from
 * this call on the CPU; on CUDA / cuda-emu (the window is device data and ops never wait)
 * from the next sl_op_sync / sl_op_download of the context. */
int sl_op_overlap_add(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                      const float *frames, const float *window, size_t length, float *out);
/* spec[count][n_bins] x fb[n_mels][n_bins] -> mel[count][n_mels]. */
int sl_op_mel(sl_op_ctx *ctx, size_t count, int n_bins, int n_mels, const float *fb,
              const float *spec, float *mel);
/* in[batch][n] -> out = 10*log10(max(amin, in)) (ref 1.0); when top_db > 0 each batch item
 * is clamped below at its max - top_db (librosa.power_to_db). out may alias in. amin > 0. */
int sl_op_log_db(sl_op_ctx *ctx, size_t batch, size_t n, const float *in, float amin, float top_db,
                 float *out);
/* in[batch][n_frames][n_feat] -> out[batch][4*n_feat] = [mean_t, std_t, mean_t(diff), std_t(diff)]
 * (population std; diff = x[t+1]-x[t]; zeros for the diff part when n_frames == 1). n_frames >= 1. */
int sl_op_stats_pool(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_feat, const float *in,
                     float *out);

/* ---- neural-network ops (kernels/README.md, "Neural-network ops") ---- */

/* SL_ACT_GELU is the exact (erf) GELU, torch.nn.GELU(): 0.5 v (1 + erf(v / sqrt 2)).
 * gemm and affine take every activation; conv2d takes NONE, RELU and TANH. */
typedef enum { SL_ACT_NONE = 0, SL_ACT_RELU = 1, SL_ACT_TANH = 2, SL_ACT_GELU = 3 } sl_act;

/* y[b][i][j] = act(sum_k x[b][i][k] * w[b][j][k] + bias[b][j]) * mul[b][i][j] + add[b][i][j]
 * for b < batch, i < m, j < n: a linear layer with PyTorch's weight layout (w is
 * [n][k], so y = x w^T). Element (i, k) of item b lives at x[b*stride_x + i*ldx + k]
 * (likewise w, mul, add, y); a stride of 0 shares one matrix across the batch. bias (its
 * item stride stride_bias), mul and add may be NULL. Each ld >= its row length; y must not
 * overlap x, w, bias or mul. add (a residual connection) may be y itself (same ld and
 * stride: y += ...), never a partial overlap. */
typedef struct {
    size_t batch, m, n, k;
    const float *x;
    size_t ldx, stride_x;
    const float *w;
    size_t ldw, stride_w;
    const float *bias;
    size_t stride_bias;
    sl_act act;
    const float *mul;
    size_t ldmul, stride_mul;
    float *y;
    size_t ldy, stride_y;
    const float *add;
    size_t ldadd, stride_add;
    /* 1: exact fp32 products whatever the context's precision (sl_op_ctx_set_precision);
     * 0 (the default): the context's precision. */
    int force_fp32;
} sl_gemm_args;

/* y[b][i][j] = act((x[b][i][j] + add[b][j]) * mul[b][j]) [+ res[b][i][j]], i < rows, j < cols; add
 * and mul may be NULL (0 and 1); their item stride is stride_p (0: shared). res (optional, a
 * residual tensor, element (i, j) of item b at res[b*stride_res + i*ldres + j]) is added after the
 * activation. Layout as sl_gemm_args. y may be x itself or res itself (same ld and stride), never
 * a partial overlap. The fields after y may be left zero (no residual). */
typedef struct {
    size_t batch, rows, cols;
    const float *x;
    size_t ldx, stride_x;
    const float *add, *mul;
    size_t stride_p;
    sl_act act;
    float *y;
    size_t ldy, stride_y;
    const float *res;
    size_t ldres, stride_res;
} sl_affine_args;

/* LSTM geometry: torch.nn.LSTM (batch_first, h0 = c0 = 0, gates i, f, g, o). */
typedef struct {
    int layers;        /* 1..16 */
    int input;         /* input features, 1..65536 */
    int hidden;        /* hidden units per direction, 1..4096 */
    int bidirectional; /* 1: output features [forward, backward] = 2*hidden */
} sl_lstm_cfg;

/* Floats of one packed LSTM weight set. For each layer l (in_l = input for l = 0, else
 * D*hidden, D = 1 + bidirectional): w_ih[D*4*hidden][in_l] (direction 0's rows first,
 * torch weight_ih_l{l} then weight_ih_l{l}_reverse), w_hh[D][4*hidden][hidden],
 * bias[D*4*hidden] (= bias_ih + bias_hh). 0 for an invalid cfg. */
size_t sl_lstm_weights_floats(const sl_lstm_cfg *c);

/* Wiener filter options, openunmix.filtering.wiener semantics (kernels/README.md). */
typedef struct {
    int niter;    /* EM iterations, 0..100 (0: the initial estimates are the output) */
    int softmask; /* 1: initial y_j = mix * S_j / (eps + sum S); 0: S_j with the mixture phase */
    int residual; /* 1: one more source, mix - sum_j y_j, before EM */
    int win_len;  /* frames per independently filtered window (openunmix wiener_win_len, 300); 0: all */
    float eps;    /* regularisation, 1e-10 in openunmix */
} sl_wiener_cfg;

/* y = act(x w^T + bias) * mul, batched (sl_gemm_args). SL_EINVAL on bad sizes. */
int sl_op_gemm(sl_op_ctx *ctx, const sl_gemm_args *a);
/* Column-wise affine map and activation (sl_affine_args). SL_EINVAL on bad sizes. */
int sl_op_affine(sl_op_ctx *ctx, const sl_affine_args *a);
/* x[b][T][input] (row t at x + b*stride_x + t*ldx) -> y[b][T][D*hidden] (row t at
 * y + b*stride_y + t*ldy) through the LSTM of c with the packed weights at
 * w + b*stride_w (0: one set for all items). y must not overlap x or w (other columns
 * of the same rows are fine). Scratch is the backend's. SL_EINVAL / SL_ENOMEM. */
int sl_op_lstm(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
               size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y);
/* Stereo multichannel Wiener filter of openunmix: mix[2][T][n_bins] complex (the STFT of
 * both channels), mag[J][2][T][n_bins] non-negative target estimates ->
 * out[S][2][T][n_bins] complex, S = J + residual. J = n_targets, 1..8; niter > 0 needs
 * S >= 2 (openunmix raises). out must not overlap the inputs. SL_EINVAL / SL_ENOMEM. */
int sl_op_wiener(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t n_targets, size_t n_frames, size_t n_bins,
                 const float *mix, const float *mag, float *out);

/* ---- convolutional ops (kernels/README.md, "Convolutional ops") ---- */

/* y[b][o][i][j] = act(bias[o] + sum_{c,u,v} w[o][c][u][v] * x[b][c][i+u-k/2][j+v-k/2]), zeros
 * outside the image: torch.nn.Conv2d(c_in, c_out, k, stride 1, padding k/2). Layouts are
 * NCHW, w is torch's [c_out][c_in][k][k]. bias may be NULL; y must not overlap x, w, bias. */
typedef struct {
    size_t batch;
    int c_in, c_out; /* 1..65536 */
    int h, w;        /* image height (rows) and width (columns), >= 1 */
    int k;           /* odd kernel size 1..7 */
    const float *x;
    const float *wt;
    const float *bias;
    sl_act act;
    float *y;
    /* 1: a 3x3 convolution may take Winograd F(4x4, 3x3) on the CPU (fewer multiplications, a
     * few times F(2x2)'s rounding error: ~1e-5 of the output range instead of ~1e-6); 0 (the
     * default of an initializer that leaves it out): the paths of kernels/cpu/cpu_conv.c as
     * before. Other backends ignore it. */
    int wino4;
} sl_conv2d_args;

/* Convolution (sl_conv2d_args). SL_EINVAL on bad sizes, SL_ENOMEM. */
int sl_op_conv2d(sl_op_ctx *ctx, const sl_conv2d_args *a);

/* 1-D convolution along the len axis of x[batch][c_in][len][inner], the inner columns independent
 * (inner = 1: torch Conv1d; inner = T: a torch Conv2d with kernel [k, 1], stride [stride, 1],
 * padding [p, 0] on [batch][c_in][len][T]):
 *   y[b][o][t][n] = act(bias[o] + sum_{c in o's group, u < k} w[o][c'][u] * x[b][c][t*stride + u*dilation - pad_l][n])
 * zeros outside [0, len); len_out = (len + pad_l + pad_r - dilation*(k-1) - 1) / stride + 1 (>= 1).
 * w is torch's [c_out][c_in/groups][k]; c_in and c_out multiples of groups; c' = c - group's first
 * channel. bias may be NULL; act NONE, RELU, TANH or GELU. y must not overlap x, wt, bias. */
typedef struct {
    size_t batch;
    int c_in, c_out, groups;    /* channels 1..65536 */
    size_t len, inner;          /* >= 1 */
    int k, stride, dilation;    /* >= 1 */
    int pad_l, pad_r;           /* >= 0, zero padding */
    const float *x;
    const float *wt;
    const float *bias;
    sl_act act;
    float *y;
    int glu; /* 1: y = GLU over the channel halves of the convolution z (torch F.glu(z, dim=1)):
              * y[b][o][t][n] = z[b][o][t][n] * sigmoid(z[b][o + c_out/2][t][n]), y holds c_out / 2
              * channels; c_out even, act NONE, groups 1. 0: y = z (older callers leave it 0) */
} sl_conv1d_args;
/* len_out of a (valid) sl_conv1d_args; 0 when no output position fits. */
size_t sl_conv1d_len_out(const sl_conv1d_args *a);
/* Convolution (sl_conv1d_args). SL_EINVAL on bad sizes, SL_ENOMEM. */
int sl_op_conv1d(sl_op_ctx *ctx, const sl_conv1d_args *a);

/* Transposed 1-D convolution along len of x[batch][c_in][len][inner] (torch ConvTranspose1d, or
 * ConvTranspose2d with kernel [k, 1], stride [stride, 1] for inner > 1), groups 1, dilation 1:
 *   y[b][o][t][n] = act(bias[o] + sum_{c, i, u : i*stride + u - crop == t} x[b][c][i][n] * w[c][o][u])
 * for t < len_out; crop is torch's padding (outputs dropped at the start), len_out at most
 * (len - 1)*stride + k - crop (torch's full length is (len-1)*stride + k - 2*crop). w is torch's
 * [c_in][c_out][k]. bias may be NULL; act as conv1d. y must not overlap x, wt, bias. */
typedef struct {
    size_t batch;
    int c_in, c_out;            /* 1..65536 */
    size_t len, inner;          /* >= 1 */
    int k, stride;              /* >= 1 */
    int crop;                   /* >= 0 */
    size_t len_out;             /* >= 1 */
    const float *x;
    const float *wt;
    const float *bias;
    sl_act act;
    float *y;
} sl_convt1d_args;
/* Transposed convolution (sl_convt1d_args). SL_EINVAL on bad sizes, SL_ENOMEM. */
int sl_op_conv_transpose1d(sl_op_ctx *ctx, const sl_convt1d_args *a);

/* Strided 4-D copy: y[i0*ys[0] + i1*ys[1] + i2*ys[2] + i3*ys[3]] = x[i0*xs[0] + ... + i3*xs[3]] for
 * i_d < dim[d] (strides in floats; unused axes have dim 1). An axis permutation (torch's
 * permute(...).contiguous()), a crop, or a copy into a wider zero-padded buffer. Distinct i must
 * address distinct y elements; y must not overlap x. */
typedef struct {
    size_t dim[4];
    const float *x;
    size_t xs[4];
    float *y;
    size_t ys[4];
} sl_permute_args;
/* Strided copy (sl_permute_args). SL_EINVAL when a pointer is missing. */
int sl_op_permute(sl_op_ctx *ctx, const sl_permute_args *a);
/* in[planes][h][w] -> out[planes][h/kh][w/kw], each output the mean of its kh x kw block
 * (torch F.avg_pool2d(kernel_size=(kh, kw)), stride = kernel, no padding, floor: trailing
 * rows / columns that do not fill a block are dropped). kh, kw >= 1 and <= h, w. */
int sl_op_avg_pool2d(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in, float *out);
/* in[planes][T][F] -> out[planes] = max_t m[t] + mean_t m[t] with m[t] = mean_f in[t][f]
 * (the Cnn14 / PANNs clip head: torch.mean(x, 3), then max + mean over dim 2). */
int sl_op_clip_pool(sl_op_ctx *ctx, size_t planes, size_t T, size_t F, const float *in, float *out);

/* ---- search (pipeline/search_scan.c; the CUDA kernel: kernels/cuda/topk.cu) ---- */

/* A running top k per row over blocks of scores, kept in backend memory between
 * calls so that only the final k per row are ever downloaded: after a call, row q
 * of (top_score, top_index) holds the k best entries of every block passed since
 * the last reset, best first. Rank: higher score first; NaN below every number
 * (-inf included); equal scores (-0 == +0, NaN == NaN) by lower index. Fewer than
 * k entries seen: the remaining slots are empty (index -1, score -inf), below
 * everything. Scores are stored as given, except -0 as +0 and NaN as the
 * canonical NaN. Indices must not repeat between calls of one run (distinct base
 * ranges). top_score / top_index must not overlap scores. */
typedef struct {
    size_t nq;           /* rows (queries) */
    size_t n;            /* scores per row in this block; 0 is allowed */
    size_t k;            /* entries kept per row, 1..2^30 */
    const float *scores; /* score j of row q at scores[q*ld + j] (NULL allowed when n == 0) */
    size_t ld;           /* >= n */
    int64_t base;        /* index of column j = base + j; base >= 0 */
    int reset;           /* 1: start a new run (what top_* hold is ignored) */
    float *top_score;    /* [nq][k], in/out */
    int64_t *top_index;  /* [nq][k], in/out */
} sl_topk_args;

/* Merges a block of scores into the running top k (sl_topk_args). SL_EINVAL on bad
 * sizes, SL_ENOMEM. */
int sl_op_topk(sl_op_ctx *ctx, const sl_topk_args *a);

/* ---- transformer ops (kernels/README.md, "Transformer ops"; shared by every attention model) ---- */

typedef enum { SL_NORM_RMS = 0, SL_NORM_LAYER = 1, SL_NORM_GROUP = 2, SL_NORM_GROUP_GLU = 3 } sl_norm_kind;

/* Normalisation of each row of x over its dim elements:
 *  SL_NORM_RMS:   y = x * sqrt(dim) / max(||x||_2, eps) * gamma   (F.normalize(x, dim=-1) * dim**0.5 *
 *                 gamma, the RMSNorm of the RoFormers; eps 1e-12 there)
 *  SL_NORM_LAYER: y = (x - mean) / sqrt(var + eps) * gamma + beta (torch.nn.LayerNorm, population var)
 *  SL_NORM_GROUP: as LAYER over the row, but gamma / beta are per channel: element j of row i
 *                 belongs to channel c = (i % groups) * cpg + (j / inner) % cpg, cpg = channels / groups
 *                 (torch.nn.GroupNorm(groups, channels) on [N][channels][S] is rows = N*groups,
 *                 dim = cpg*S, inner = S; a GroupNorm(1, C) over channel-last [N][T][C] rows is
 *                 rows = N, dim = T*C, groups 1, inner 1)
 * gamma / beta may be NULL (1 / 0). Row i at x + i*ldx, y + i*ldy; y may be x itself (same ld).
 * groups, channels, inner are read only for SL_NORM_GROUP(_GLU) (channels % groups == 0, inner >= 1).
 * act (LAYER / GROUP): applied to each output last, in the same pass (HT-Demucs's GroupNorm + GELU).
 *  SL_NORM_GROUP_GLU: as GROUP (act 0, dim even), then the GLU of the row's halves in the same pass:
 *                 y row i holds dim / 2 outputs, y[j] = u[j] * sigmoid(u[dim / 2 + j]) of the
 *                 normalised row u (HT-Demucs's DConv: GroupNorm(1, 2C) then GLU over channels);
 *                 ldy >= dim / 2, in place with ldy == ldx. */
typedef struct {
    sl_norm_kind kind;
    size_t rows, dim;
    const float *x;
    size_t ldx;
    const float *gamma, *beta;
    float eps;
    float *y;
    size_t ldy;
    size_t groups, channels, inner;
    sl_act act; /* applied to each output after gamma / beta (GroupNorm + GELU in one pass); 0: none */
} sl_norm_args;

/* Multi-head scaled dot-product attention over a batch of sequences (self- or cross-attention):
 * for sequence b, head h, query row i < tq:
 *   s[j] = scale * <rope_i(q[b][i][h]), rope_j(k[b][j][h])> + bias[b][h][i][j]   for j < k_len[b]
 *   out[b][i][h] = softmax(s) . v[b][.][h]   (times sigmoid(gate[b][i][h]) when gate is given)
 * Vectors of head h are the dim_head floats at column h*dim_head of a row: element d of q[b][i][h]
 * is q[b*stride_q + i*ldq + h*dim_head + d] (likewise k, v, out). So one fused projection
 * [rows][3*heads*dim_head] serves as q, k and v (offsets 0, H*D, 2*H*D, ld 3*H*D).
 * rope (optional): [n][dim_head/2][2] (cos, sin) per position, n >= max(tq, tk) (sl_rope_table):
 * q row i and k row j are rotated by the angles of positions i and j, interleaved pairs
 * (x[2p], x[2p+1]) -> (x[2p] c - x[2p+1] s, x[2p+1] c + x[2p] s) (rotary_embedding_torch);
 * dim_head must then be even. bias (optional): at bias + b*stride_bias_b + h*stride_bias_h +
 * i*ld_bias + j (strides may be 0 to share). k_len (optional, backend memory, int32 per sequence,
 * 1..tk): keys past it are ignored (sequences of different lengths in one batch); NULL: tk.
 * gate (optional): logits at gate + b*stride_gate + i*ld_gate + h. out must not overlap the inputs.
 * Exact fp32 softmax (max subtracted); the CUDA kernel is fused with an online softmax and never
 * stores the [tq][tk] scores. dim_head 1..128. */
typedef struct {
    size_t batch, tq, tk;
    int heads, dim_head;
    float scale;
    const float *q;
    size_t ldq, stride_q;
    const float *k;
    size_t ldk, stride_k;
    const float *v;
    size_t ldv, stride_v;
    const int32_t *k_len;
    const float *rope;
    const float *bias;
    size_t ld_bias, stride_bias_h, stride_bias_b;
    const float *gate;
    size_t ld_gate, stride_gate;
    float *out;
    size_t ldo, stride_o;
} sl_attention_args;

/* Fills tab[n_pos][dim/2][2] (host, caller-owned) with cos and sin of p * f_i for position p
 * (angle and cos/sin in double). inv_freq[dim/2] gives f_i (a checkpoint's stored
 * rotary_embed.freqs); NULL: f_i = 1 / theta^(2i/dim) computed in float32 as
 * rotary_embedding_torch does. dim even, 2..1024. Returns 0 or SL_EINVAL. */
int sl_rope_table(float *tab, size_t n_pos, int dim, double theta, const float *inv_freq);

/* Row normalisation (sl_norm_args). SL_EINVAL on bad sizes. */
int sl_op_norm(sl_op_ctx *ctx, const sl_norm_args *a);
/* y[i][j] = x[i][j] * sigmoid(x[i][n + j]), i < rows, j < n (torch.nn.GLU(dim=-1) on rows of 2n);
 * row i at x + i*ldx (ldx >= 2n), y + i*ldy. y must not overlap x unless y == x (ldy <= ldx). */
int sl_op_glu(sl_op_ctx *ctx, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy);
/* Attention (sl_attention_args). SL_EINVAL on bad sizes, SL_ENOMEM. */
int sl_op_attention(sl_op_ctx *ctx, const sl_attention_args *a);

/* Band split of a spectrum into feature rows, and its inverse for masks. A spectrum is
 * spec[batch*n_ch][T][F] complex (sl_op_rfft's layout, channel-major per item); a feature row is
 * row[b][t][j] complex for j < n_feat, where feature j is bin idx[j] / n_ch of channel
 * idx[j] % n_ch (idx: int32, backend memory, values < F*n_ch; bins may repeat, the mel bands
 * overlap). BS-RoFormer's layout is idx[j] = j (bins in order, channels interleaved). */
typedef struct {
    size_t batch, n_ch, T, F, n_feat;
    const int32_t *idx;
} sl_band_geom;

/* out[b][t][j] = spec[b*n_ch + idx[j] % n_ch][t][idx[j] / n_ch] (complex). */
int sl_op_spec_gather(sl_op_ctx *ctx, const sl_band_geom *g, const float *spec, float *out);
/* Complex masks in feature rows -> masked spectra: for each of n_masks masks per item,
 * out[(b*n_masks + n)*n_ch + c][t][f] = spec[b*n_ch + c][t][f] * M, with M the mean of
 * mask[b][n][t][j] over the features j with idx[j] = f*n_ch + c (complex product; 0 when no
 * feature maps to the bin). inv_off[F*n_ch + 1] / inv_idx[n_feat] (int32, backend memory) list
 * those j per bin, ascending (sl_band_inverse). out must not overlap spec or mask. */
int sl_op_mask_scatter(sl_op_ctx *ctx, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                       const int32_t *inv_idx, const float *spec, const float *mask, float *out);
/* Host helper: inverse of idx (sl_op_mask_scatter) into inv_off[n_bins + 1], inv_idx[n_feat]
 * (caller-owned host arrays), n_bins = F*n_ch. Returns 0 or SL_EINVAL (an index out of range). */
int sl_band_inverse(const int32_t *idx, size_t n_feat, size_t n_bins, int32_t *inv_off, int32_t *inv_idx);


/* ---- row gather (kernels/README.md, "Row gather") ---- */

/* y[b][r][c] = sum_{t < taps} w[r][t] * x[b][idx[r][t]][c] for b < batch, r < rows, c < cols, summed
 * in float in tap order (w[r][0]*x0 + w[r][1]*x1 + ...); w NULL: taps must be 1 and y is an exact copy
 * of the picked rows. Row i of item b of x at x + b*stride_x + i*ldx (y likewise). idx [rows][taps]
 * int32 and w [rows][taps] float live in backend memory; every idx value must be < in_rows (not
 * checked on the device). One op for every fixed re-ordering of token rows: Swin window partition
 * and reverse with the cyclic shift, patch merging's 2x2 concatenation (cols = C, rows read as
 * [rows/4][4C]), image patches of a spectrogram (cols = 1), and a resampling whose output rows are
 * weighted sums of input rows (HTSAT's bicubic time axis: 4 taps). y must not overlap x. */
typedef struct {
    size_t batch, rows, cols, in_rows;
    int taps;            /* 1..64 */
    const int32_t *idx;
    const float *w;
    const float *x;
    size_t ldx, stride_x;
    float *y;
    size_t ldy, stride_y;
} sl_gather_args;

/* Row gather (sl_gather_args). SL_EINVAL on bad sizes. */
int sl_op_row_gather(sl_op_ctx *ctx, const sl_gather_args *a);

#endif
