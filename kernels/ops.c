/* Backend selection and dispatch. Every public op checks its arguments here,
 * once, so backends only see valid shapes; a missing op is SL_EUNSUPPORTED,
 * never a NULL call. */
#include "ops.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../common/sl_pool.h"
#include "../common/sl_log.h"
#include "backend.h"
#ifdef SL_HAVE_CUDA
#include "cuda/cuda_probe.h"
#endif


static const char *const op_names[SL_OP_COUNT] = {
    [SL_OP_FRAME] = "frame",
    [SL_OP_RFFT] = "rfft",
    [SL_OP_IRFFT] = "irfft",
    [SL_OP_MAGNITUDE] = "magnitude",
    [SL_OP_POWER] = "power",
    [SL_OP_MEDIAN_TIME] = "median_time",
    [SL_OP_MEDIAN_FREQ] = "median_freq",
    [SL_OP_HPSS_MASKS] = "hpss_masks",
    [SL_OP_APPLY_MASK] = "apply_mask",
    [SL_OP_OVERLAP_ADD] = "overlap_add",
    [SL_OP_MEL] = "mel",
    [SL_OP_LOG_DB] = "log_db",
    [SL_OP_STATS_POOL] = "stats_pool",
    [SL_OP_GEMM] = "gemm",
    [SL_OP_AFFINE] = "affine",
    [SL_OP_LSTM] = "lstm",
    [SL_OP_WIENER] = "wiener",
    [SL_OP_CONV2D] = "conv2d",
    [SL_OP_AVG_POOL2D] = "avg_pool2d",
    [SL_OP_CLIP_POOL] = "clip_pool",
    [SL_OP_TOPK] = "topk",
    [SL_OP_NORM] = "norm",
    [SL_OP_GLU] = "glu",
    [SL_OP_ATTENTION] = "attention",
    [SL_OP_SPEC_GATHER] = "spec_gather",
    [SL_OP_MASK_SCATTER] = "mask_scatter",
    [SL_OP_ROW_GATHER] = "row_gather",
    [SL_OP_CONV1D] = "conv1d",
    [SL_OP_CONV_TRANSPOSE1D] = "conv_transpose1d",
    [SL_OP_PERMUTE] = "permute",
};

const char *sl_op_name(sl_op_id op)
{
    if ((int)op < 0 || op >= SL_OP_COUNT)
        return "?";
    return op_names[op];
}


static int bad(const char *op, const char *why);

static int backend_has(const sl_op_backend *be, sl_op_id op)
{
    switch (op) {
    case SL_OP_FRAME: return be->frame != NULL;
    case SL_OP_RFFT: return be->rfft != NULL;
    case SL_OP_IRFFT: return be->irfft != NULL;
    case SL_OP_MAGNITUDE: return be->magnitude != NULL;
    case SL_OP_POWER: return be->power != NULL;
    case SL_OP_MEDIAN_TIME: return be->median_time != NULL;
    case SL_OP_MEDIAN_FREQ: return be->median_freq != NULL;
    case SL_OP_HPSS_MASKS: return be->hpss_masks != NULL;
    case SL_OP_APPLY_MASK: return be->apply_mask != NULL;
    case SL_OP_OVERLAP_ADD: return be->overlap_add != NULL;
    case SL_OP_MEL: return be->mel != NULL;
    case SL_OP_LOG_DB: return be->log_db != NULL;
    case SL_OP_STATS_POOL: return be->stats_pool != NULL;
    case SL_OP_GEMM: return be->gemm != NULL;
    case SL_OP_AFFINE: return be->affine != NULL;
    case SL_OP_LSTM: return be->lstm != NULL;
    case SL_OP_WIENER: return be->wiener != NULL;
    case SL_OP_CONV2D: return be->conv2d != NULL;
    case SL_OP_AVG_POOL2D: return be->avg_pool2d != NULL;
    case SL_OP_CLIP_POOL: return be->clip_pool != NULL;
    case SL_OP_TOPK: return be->topk != NULL;
    case SL_OP_NORM: return be->norm != NULL;
    case SL_OP_GLU: return be->glu != NULL;
    case SL_OP_ATTENTION: return be->attention != NULL;
    case SL_OP_SPEC_GATHER: return be->spec_gather != NULL;
    case SL_OP_MASK_SCATTER: return be->mask_scatter != NULL;
    case SL_OP_ROW_GATHER: return be->row_gather != NULL;
    case SL_OP_CONV1D: return be->conv1d != NULL;
    case SL_OP_CONV_TRANSPOSE1D: return be->conv_transpose1d != NULL;
    case SL_OP_PERMUTE: return be->permute != NULL;
    default: return 0;
    }
}

#ifdef SL_HAVE_CUDA
static int backend_complete(const sl_op_backend *be)
{
    if (!be->alloc || !be->upload || !be->download)
        return 0;
    for (int i = 0; i < SL_OP_COUNT; i++)
        if (!backend_has(be, (sl_op_id)i))
            return 0;
    return 1;
}
#endif

static int ctx_create_on(sl_op_ctx **out, const sl_op_backend *be, int device)
{
    sl_op_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return sl_seterr(SL_ENOMEM, "op context: out of memory");
    ctx->be = be;
    ctx->device_req = device;
    if (be->init) {
        int rc = be->init(ctx);
        if (rc < 0) {
            free(ctx);
            return rc;
        }
    }
    *out = ctx;
    return 0;
}

static int ctx_create(sl_op_ctx **out, const sl_op_backend *be) { return ctx_create_on(out, be, 0); }

int sl_op_device_count(void)
{
#ifdef SL_HAVE_CUDA
    sl_cuda_device_info info;
    char msg[256];
    if (sl_cuda_probe(&info, msg, sizeof msg) == 0)
        return info.count;
#endif
    return 0;
}

int sl_op_ctx_open(sl_op_ctx **out, const char *backend)
{
    *out = NULL;
    if (!backend || !*backend)
        backend = "auto";
    if (!strcmp(backend, "cpu"))
        return ctx_create(out, &sl_cpu_backend);
    if (!strcmp(backend, "cuda-emu")) /* test / debugging backend, see README.md */
        return ctx_create(out, &sl_cuda_emu_backend);
    if (!strncmp(backend, "cuda:", 5)) {
        char *end;
        long dev = strtol(backend + 5, &end, 10);
        if (end == backend + 5 || *end || dev < 0 || dev > 1024)
            return sl_seterr(SL_EINVAL, "unknown backend '%s' (a device is named cuda:N, N >= 0)", backend);
#ifdef SL_HAVE_CUDA
        return ctx_create_on(out, &sl_cuda_backend, (int)dev);
#else
        return sl_seterr(SL_ENODEVICE, "backend %s: this build of stemline has no CUDA backend "
                                       "(nvcc was not found when it was configured)", backend);
#endif
    }
    if (!strcmp(backend, "cuda")) {
#ifdef SL_HAVE_CUDA
        return ctx_create(out, &sl_cuda_backend);
#else
        return sl_seterr(SL_ENODEVICE, "backend cuda: this build of stemline has no CUDA backend "
                                       "(nvcc was not found when it was configured)");
#endif
    }
    if (!strcmp(backend, "auto")) {
#ifdef SL_HAVE_CUDA
        sl_op_ctx *c = NULL;
        int rc = ctx_create(&c, &sl_cuda_backend);
        if (rc == 0 && backend_complete(&sl_cuda_backend)) {
            SL_INFO("backend auto: using the GPU, %s", c->device);
            *out = c;
            return 0;
        }
        if (rc == 0) {
            SL_INFO("backend auto: %s found, but the CUDA backend does not implement every op yet; "
                    "using the CPU", c->device);
            sl_op_ctx_close(c);
        } else {
            /* once per process at info level: a run opens several contexts */
            static atomic_int said;
            if (!atomic_exchange(&said, 1))
                SL_INFO("backend auto: no usable CUDA device (%s); using the CPU", sl_lasterr());
            else
                SL_DEBUG("backend auto: no usable CUDA device (%s); using the CPU", sl_lasterr());
            sl_clearerr();
        }
#endif
        return ctx_create(out, &sl_cpu_backend);
    }
    return sl_seterr(SL_EINVAL, "unknown backend '%s' (expected auto, cpu or cuda; cuda-emu for tests)", backend);
}

/* The backend's per-call hook (backend.h): the context's device made current
 * for the calling thread. */
static int enter(sl_op_ctx *ctx) { return ctx->be->enter ? ctx->be->enter(ctx) : 0; }

void sl_op_ctx_close(sl_op_ctx *ctx)
{
    if (!ctx)
        return;
    (void)enter(ctx); /* teardown goes on regardless: its frees need the device current */
    if (ctx->be->fini)
        ctx->be->fini(ctx);
    sl_pool_destroy(ctx->pool);
    free(ctx);
}

int sl_op_ctx_set_threads(sl_op_ctx *ctx, int threads)
{
    if (threads < 1 || threads > 1024)
        return sl_seterr(SL_EINVAL, "%d threads per context (must be 1..1024)", threads);
    if (!ctx->be->threads_changed || threads == sl_pool_threads(ctx->pool))
        return 0;
    sl_pool *p = NULL;
    if (threads > 1) {
        int rc = sl_pool_create(&p, threads);
        if (rc)
            return rc;
    }
    sl_pool_destroy(ctx->pool);
    ctx->pool = p;
    ctx->be->threads_changed(ctx);
    return 0;
}

const char *sl_precision_name(sl_precision p)
{
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    return (unsigned)p < sizeof names / sizeof names[0] ? names[p] : "?";
}

int sl_op_ctx_set_precision(sl_op_ctx *ctx, sl_precision p)
{
    if (p != SL_PREC_FP32 && p != SL_PREC_TF32 && p != SL_PREC_BF16)
        return sl_seterr(SL_EINVAL, "precision %d: expected fp32, tf32 or bf16", (int)p);
    if (p == ctx->precision)
        return 0;
    if (!ctx->be->set_precision)
        return sl_seterr(SL_EUNSUPPORTED, "precision %s: backend %s computes in fp32 only (tf32 and bf16 run "
                                          "on the cuda backend)", sl_precision_name(p), ctx->be->name);
    int rc = enter(ctx);
    if (!rc)
        rc = ctx->be->set_precision(ctx, p);
    if (!rc)
        ctx->precision = p;
    return rc;
}

sl_precision sl_op_ctx_precision(const sl_op_ctx *ctx) { return ctx->precision; }

int sl_op_ctx_threads(const sl_op_ctx *ctx) { return sl_pool_threads(ctx->pool); }

int sl_op_ctx_peak_threads(const sl_op_ctx *ctx) { return ctx->pool ? sl_pool_peak(ctx->pool) : 1; }

void sl_op_ctx_share_budget(sl_op_ctx *ctx, struct sl_budget *b, int base) { sl_pool_set_budget(ctx->pool, b, base); }

const char *sl_op_ctx_backend(const sl_op_ctx *ctx) { return ctx->be->name; }
const char *sl_op_ctx_device(const sl_op_ctx *ctx) { return ctx->device; }

int sl_op_supported(const sl_op_ctx *ctx, sl_op_id op) { return ctx && backend_has(ctx->be, op); }

int sl_op_require(const sl_op_ctx *ctx, const sl_op_id *ops, size_t n, const char *who)
{
    for (size_t i = 0; i < n; i++)
        if (!sl_op_supported(ctx, ops[i]))
            return sl_seterr(SL_EUNSUPPORTED, "%s: op '%s' is not implemented by backend %s (%s)",
                             who ? who : "model", sl_op_name(ops[i]), sl_op_ctx_backend(ctx),
                             sl_op_ctx_device(ctx));
    return 0;
}

/* ---- memory ---- */

static int unsupported(const sl_op_ctx *ctx, const char *what)
{
    return sl_seterr(SL_EUNSUPPORTED, "%s is not implemented by backend %s", what, ctx->be->name);
}

int sl_op_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes)
{
    *ptr = NULL;
    if (!ctx->be->alloc)
        return unsupported(ctx, "memory allocation");
    int rc = enter(ctx);
    return rc ? rc : ctx->be->alloc(ctx, ptr, bytes ? bytes : 1);
}

void sl_op_free(sl_op_ctx *ctx, void *ptr)
{
    if (ptr && ctx->be->free_) {
        (void)enter(ctx); /* cannot fail: a free on a broken context logs */
        ctx->be->free_(ctx, ptr);
    }
}

int sl_op_upload(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (!ctx->be->upload)
        return unsupported(ctx, "upload");
    int rc = bytes ? enter(ctx) : 0;
    return bytes && !rc ? ctx->be->upload(ctx, dst, src, bytes) : rc;
}

int sl_op_mark_fixed(sl_op_ctx *ctx, const void *p, size_t bytes)
{
    if (!p || !bytes || !ctx->be->mark_fixed)
        return 0;
    int rc = enter(ctx);
    return rc ? rc : ctx->be->mark_fixed(ctx, p, bytes);
}

int sl_op_wrap_host(sl_op_ctx *ctx, const void *host, size_t bytes, void **ptr, int *owned)
{
    *ptr = NULL;
    *owned = 0;
    if (!strcmp(ctx->be->name, "cpu")) {
        *ptr = (void *)host; /* the cpu backend's memory is host memory */
        return 0;
    }
    int rc = sl_op_alloc(ctx, ptr, bytes ? bytes : 1);
    if (!rc)
        rc = sl_op_upload(ctx, *ptr, host, bytes);
    if (rc) {
        sl_op_free(ctx, *ptr);
        *ptr = NULL;
        return rc;
    }
    *owned = 1;
    return 0;
}

int sl_op_download(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (!ctx->be->download)
        return unsupported(ctx, "download");
    int rc = bytes ? enter(ctx) : 0;
    return bytes && !rc ? ctx->be->download(ctx, dst, src, bytes) : rc;
}

int sl_op_copy(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    if (!ctx->be->copy)
        return unsupported(ctx, "copy");
    if (!bytes || dst == src)
        return 0;
    if (!dst || !src)
        return bad("copy", "NULL buffer");
    const char *d = dst, *s = src;
    if (d < s + bytes && s < d + bytes)
        return bad("copy", "source and destination overlap");
    if (ctx->skip_ops)
        return 0;
    int rc = enter(ctx);
    return rc ? rc : ctx->be->copy(ctx, dst, src, bytes);
}

int sl_op_sync(sl_op_ctx *ctx)
{
    if (!ctx->be->sync || ctx->skip_ops)
        return 0;
    int rc = enter(ctx);
    return rc ? rc : ctx->be->sync(ctx);
}

/* ---- pipelined forwards ---- */

int sl_op_pipe_begin(sl_op_ctx *ctx)
{
    if (!ctx->be->pipe_begin)
        return 0;
    int rc = enter(ctx);
    if (!rc)
        rc = ctx->be->pipe_begin(ctx);
    ctx->in_pipe = rc == 0;
    return rc;
}

int sl_op_pipe_item_begin(sl_op_ctx *ctx, const void *model, const size_t *shape, size_t n_shape)
{
    if (n_shape > 4)
        return bad("pipe_item_begin", "more than 4 shape values");
    if (!ctx->in_pipe)
        return 0;
    int rc = enter(ctx);
    return rc ? rc : ctx->be->pipe_item_begin(ctx, model, shape, n_shape);
}

int sl_op_pipe_item_end(sl_op_ctx *ctx, int forward_rc)
{
    if (!ctx->in_pipe)
        return forward_rc;
    int rc = enter(ctx);
    return rc ? rc : ctx->be->pipe_item_end(ctx, forward_rc);
}

int sl_op_pipe_end(sl_op_ctx *ctx)
{
    if (!ctx->in_pipe)
        return 0;
    ctx->in_pipe = 0;
    int rc = enter(ctx);
    return rc ? rc : ctx->be->pipe_end(ctx);
}

int sl_op_pipe_deferred(const sl_op_ctx *ctx) { return ctx->in_pipe; }

void sl_op_pipe_get_stats(sl_op_ctx *ctx, sl_op_pipe_stats *s)
{
    memset(s, 0, sizeof *s);
    if (ctx->be->pipe_stats)
        ctx->be->pipe_stats(ctx, s);
}

int sl_op_reserve(sl_op_ctx *ctx, int n_fft, size_t max_frames)
{
    if (n_fft < 2 || n_fft > 65536)
        return bad("reserve", "n_fft out of range 2..65536");
    if (!max_frames || !ctx->be->reserve)
        return 0;
    int rc = enter(ctx);
    return rc ? rc : ctx->be->reserve(ctx, n_fft, max_frames);
}

int sl_op_host_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes)
{
    *ptr = NULL;
    if (!bytes)
        bytes = 1;
    if (ctx->be->host_alloc) {
        int rc = enter(ctx);
        return rc ? rc : ctx->be->host_alloc(ctx, ptr, bytes);
    }
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p)
        return sl_seterr(SL_ENOMEM, "host buffer: cannot allocate %zu bytes", bytes);
    *ptr = p;
    return 0;
}

void sl_op_host_free(sl_op_ctx *ctx, void *ptr)
{
    if (!ptr)
        return;
    if (ctx->be->host_free) {
        (void)enter(ctx);
        ctx->be->host_free(ctx, ptr);
    }
    else
        free(ptr);
}

/* ---- geometry ---- */

size_t sl_stft_n_frames(const sl_stft_cfg *c, size_t len)
{
    if (len == 0 || c->n_fft < 1 || c->hop < 1)
        return 0;
    size_t n = (size_t)c->n_fft;
    size_t padded = c->center ? len + 2 * (n / 2) : len;
    if (padded < n)
        return 0;
    return 1 + (padded - n) / (size_t)c->hop;
}

int sl_stft_check(const sl_stft_cfg *c, size_t len)
{
    if (!c || c->n_fft < 2 || c->n_fft > 65536)
        return sl_seterr(SL_EINVAL, "stft: n_fft %d out of range 2..65536", c ? c->n_fft : 0);
    if (c->hop < 1 || c->hop > c->n_fft)
        return sl_seterr(SL_EINVAL, "stft: hop %d out of range 1..n_fft (%d)", c->hop, c->n_fft);
    if (c->pad != SL_PAD_REFLECT && c->pad != SL_PAD_CONSTANT)
        return sl_seterr(SL_EINVAL, "stft: unknown pad mode %d", (int)c->pad);
    if (len == 0)
        return sl_seterr(SL_EINVAL, "stft: empty signal");
    if (c->center && c->pad == SL_PAD_REFLECT && (size_t)(c->n_fft / 2) >= len)
        return sl_seterr(SL_EINVAL,
                         "stft: reflect padding of %d samples needs a signal longer than that "
                         "(got %zu samples); use constant padding",
                         c->n_fft / 2, len);
    if (!c->center && len < (size_t)c->n_fft)
        return sl_seterr(SL_EINVAL, "stft: signal of %zu samples is shorter than n_fft %d (center off)",
                         len, c->n_fft);
    return 0;
}

int sl_window_hann(float *w, int n_fft, int win_length)
{
    if (n_fft < 1 || win_length < 1 || win_length > n_fft)
        return sl_seterr(SL_EINVAL, "hann window: win_length %d must be in 1..n_fft (%d)", win_length,
                         n_fft);
    int left = (n_fft - win_length) / 2;
    for (int i = 0; i < n_fft; i++)
        w[i] = 0.0f;
    /* torch.hann_window(N, periodic=True)[k] = 0.5 - 0.5*cos(2*pi*k/N); N=1 gives [1]. */
    for (int k = 0; k < win_length; k++)
        w[left + k] = win_length == 1 ? 1.0f : (float)(0.5 - 0.5 * cos(2.0 * M_PI * k / win_length));
    return 0;
}

static double hz_to_mel(double f)
{
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return f >= min_log_hz ? min_log_mel + log(f / min_log_hz) / logstep : f / f_sp;
}

static double mel_to_hz(double m)
{
    const double f_sp = 200.0 / 3.0, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    return m >= min_log_mel ? min_log_hz * exp(logstep * (m - min_log_mel)) : f_sp * m;
}

int sl_mel_filterbank(float *fb, int sr, int n_fft, int n_mels, double fmin, double fmax)
{
    if (fmax <= 0)
        fmax = sr / 2.0;
    if (sr < 1 || n_fft < 2 || n_mels < 1 || n_mels > 4096 || fmin < 0 || fmin >= fmax)
        return sl_seterr(SL_EINVAL, "mel filterbank: bad parameters (sr %d, n_fft %d, n_mels %d, fmin %g, fmax %g)",
                         sr, n_fft, n_mels, fmin, fmax);
    int n_bins = n_fft / 2 + 1;
    double *mel_f = malloc(sizeof(double) * (size_t)(n_mels + 2));
    if (!mel_f)
        return sl_seterr(SL_ENOMEM, "mel filterbank: out of memory");
    double m0 = hz_to_mel(fmin), m1 = hz_to_mel(fmax);
    /* numpy.linspace: start + i*step, last point exactly stop. */
    double step = (m1 - m0) / (double)(n_mels + 1);
    for (int i = 0; i < n_mels + 2; i++)
        mel_f[i] = mel_to_hz(i == n_mels + 1 ? m1 : m0 + i * step);
    for (int m = 0; m < n_mels; m++) {
        double lo = mel_f[m], ce = mel_f[m + 1], hi = mel_f[m + 2];
        double fd0 = ce - lo, fd1 = hi - ce;
        double enorm = 2.0 / (hi - lo);
        for (int k = 0; k < n_bins; k++) {
            double f = (double)k * sr / n_fft;
            double lower = -(lo - f) / fd0; /* -ramps[m] / fdiff[m] */
            double upper = (hi - f) / fd1;  /* ramps[m+2] / fdiff[m+1] */
            double v = lower < upper ? lower : upper;
            fb[(size_t)m * n_bins + k] = (float)((v > 0 ? v : 0.0) * enorm);
        }
    }
    free(mel_f);
    return 0;
}

/* ---- ops ---- */

#define DISPATCH(op, fn, ...)                                                                     \
    do {                                                                                          \
        if (!ctx->be->fn)                                                                         \
            return sl_seterr(SL_EUNSUPPORTED, "op '%s' is not implemented by backend %s",        \
                             sl_op_name(op), ctx->be->name);                                      \
        if (ctx->skip_ops) /* replayed from a CUDA graph (sl_op_pipe_item_begin) */              \
            return 0;                                                                             \
        int rc_ = enter(ctx);                                                                     \
        return rc_ ? rc_ : ctx->be->fn(ctx, __VA_ARGS__);                                         \
    } while (0)

static int bad(const char *op, const char *why) { return sl_seterr(SL_EINVAL, "op %s: %s", op, why); }

int sl_op_frame(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                size_t first, size_t count, const float *window, float *frames)
{
    int rc = sl_stft_check(c, len);
    if (rc < 0)
        return rc;
    size_t nf = sl_stft_n_frames(c, len);
    if (first > nf || count > nf - first)
        return sl_seterr(SL_EINVAL, "op frame: frames %zu..%zu requested, the signal has %zu", first,
                         first + count, nf);
    if (batch == 0 || count == 0)
        return 0;
    DISPATCH(SL_OP_FRAME, frame, c, x, batch, len, first, count, window, frames);
}

int sl_op_rfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale)
{
    if (n_fft < 2 || n_fft > 65536)
        return bad("rfft", "n_fft out of range 2..65536");
    if (count == 0)
        return 0;
    DISPATCH(SL_OP_RFFT, rfft, n_fft, count, in, out, scale);
}

int sl_op_irfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale)
{
    if (n_fft < 2 || n_fft > 65536)
        return bad("irfft", "n_fft out of range 2..65536");
    if (count == 0)
        return 0;
    DISPATCH(SL_OP_IRFFT, irfft, n_fft, count, in, out, scale);
}

int sl_op_magnitude(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    if (n == 0)
        return 0;
    DISPATCH(SL_OP_MAGNITUDE, magnitude, n, cplx, out);
}

int sl_op_power(sl_op_ctx *ctx, size_t n, const float *cplx, float *out)
{
    if (n == 0)
        return 0;
    DISPATCH(SL_OP_POWER, power, n, cplx, out);
}

int sl_op_median_time(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                      const float *in, float *out)
{
    if (kernel < 1 || kernel % 2 == 0 || kernel > 4095)
        return bad("median_time", "kernel must be odd, 1..4095");
    if (!batch || !n_frames || !n_bins)
        return 0;
    DISPATCH(SL_OP_MEDIAN_TIME, median_time, batch, n_frames, n_bins, kernel, in, out);
}

int sl_op_median_freq(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                      const float *in, float *out)
{
    if (kernel < 1 || kernel % 2 == 0 || kernel > 4095)
        return bad("median_freq", "kernel must be odd, 1..4095");
    if (!batch || !n_frames || !n_bins)
        return 0;
    DISPATCH(SL_OP_MEDIAN_FREQ, median_freq, batch, n_frames, n_bins, kernel, in, out);
}

int sl_op_hpss_masks(sl_op_ctx *ctx, size_t n, const float *harm, const float *perc, float power,
                     float margin_h, float margin_p, float *mask_h, float *mask_p)
{
    if (!(power > 0) || !isfinite(power))
        return bad("hpss_masks", "power must be finite and > 0");
    if (!(margin_h >= 1) || !(margin_p >= 1) || !isfinite(margin_h) || !isfinite(margin_p))
        return bad("hpss_masks", "margins must be finite and >= 1");
    if (n == 0)
        return 0;
    DISPATCH(SL_OP_HPSS_MASKS, hpss_masks, n, harm, perc, power, margin_h, margin_p, mask_h, mask_p);
}

int sl_op_apply_mask(sl_op_ctx *ctx, size_t n, const float *cplx, const float *mask, float *out)
{
    if (n == 0)
        return 0;
    DISPATCH(SL_OP_APPLY_MASK, apply_mask, n, cplx, mask, out);
}

int sl_op_overlap_add(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                      const float *frames, const float *window, size_t length, float *out)
{
    if (!c || c->n_fft < 2 || c->n_fft > 65536 || c->hop < 1 || c->hop > c->n_fft)
        return bad("overlap_add", "n_fft must be 2..65536 and hop 1..n_fft");
    if (n_frames == 0)
        return bad("overlap_add", "no frames");
    if (!batch || !length)
        return 0;
    DISPATCH(SL_OP_OVERLAP_ADD, overlap_add, c, batch, n_frames, frames, window, length, out);
}

int sl_op_mel(sl_op_ctx *ctx, size_t count, int n_bins, int n_mels, const float *fb, const float *spec,
              float *mel)
{
    if (n_bins < 1 || n_mels < 1)
        return bad("mel", "n_bins and n_mels must be >= 1");
    if (count == 0)
        return 0;
    DISPATCH(SL_OP_MEL, mel, count, n_bins, n_mels, fb, spec, mel);
}

int sl_op_log_db(sl_op_ctx *ctx, size_t batch, size_t n, const float *in, float amin, float top_db,
                 float *out)
{
    if (!(amin > 0))
        return bad("log_db", "amin must be > 0");
    if (!batch || !n)
        return 0;
    DISPATCH(SL_OP_LOG_DB, log_db, batch, n, in, amin, top_db, out);
}

int sl_op_stats_pool(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_feat, const float *in,
                     float *out)
{
    if (n_frames == 0)
        return bad("stats_pool", "needs at least one frame");
    if (!batch || !n_feat)
        return 0;
    DISPATCH(SL_OP_STATS_POOL, stats_pool, batch, n_frames, n_feat, in, out);
}

/* ---- neural-network ops ---- */

int sl_op_gemm(sl_op_ctx *ctx, const sl_gemm_args *a)
{
    if (!a || !a->x || !a->w || !a->y)
        return bad("gemm", "x, w and y are required");
    if ((unsigned)a->act > SL_ACT_GELU)
        return bad("gemm", "unknown activation");
    if (a->ldx < a->k || a->ldw < a->k || a->ldy < a->n || (a->mul && a->ldmul < a->n) ||
        (a->add && a->ldadd < a->n))
        return bad("gemm", "a leading dimension is shorter than its row");
    if (a->add == a->y && (a->ldadd != a->ldy || a->stride_add != a->stride_y))
        return bad("gemm", "add == y needs the same ld and stride");
    if (a->m > INT32_MAX || a->n > INT32_MAX || a->k > INT32_MAX || a->ldx > INT32_MAX ||
        a->ldw > INT32_MAX || a->ldy > INT32_MAX || a->ldmul > INT32_MAX || a->ldadd > INT32_MAX)
        return bad("gemm", "dimensions beyond 2^31");
    if (!a->batch || !a->m || !a->n)
        return 0;
    DISPATCH(SL_OP_GEMM, gemm, a);
}

int sl_op_affine(sl_op_ctx *ctx, const sl_affine_args *a)
{
    if (!a || !a->x || !a->y)
        return bad("affine", "x and y are required");
    if ((unsigned)a->act > SL_ACT_GELU)
        return bad("affine", "unknown activation");
    if (a->ldx < a->cols || a->ldy < a->cols)
        return bad("affine", "a leading dimension is shorter than its row");
    if (a->x == a->y && (a->ldx != a->ldy || a->stride_x != a->stride_y))
        return bad("affine", "in place needs the same ld and stride for x and y");
    if (a->res && (a->ldres < a->cols || (a->res == a->y && (a->ldres != a->ldy || a->stride_res != a->stride_y))))
        return bad("affine", "res needs ldres >= cols, and the same ld and stride as y when it is y");
    if (!a->batch || !a->rows || !a->cols)
        return 0;
    DISPATCH(SL_OP_AFFINE, affine, a);
}

size_t sl_lstm_weights_floats(const sl_lstm_cfg *c)
{
    if (!c || c->layers < 1 || c->layers > 16 || c->input < 1 || c->input > 65536 || c->hidden < 1 ||
        c->hidden > 4096 || (c->bidirectional != 0 && c->bidirectional != 1))
        return 0;
    const size_t D = 1 + (size_t)c->bidirectional, H = (size_t)c->hidden, G = 4 * H;
    size_t total = 0;
    for (int l = 0; l < c->layers; l++) {
        size_t in = l == 0 ? (size_t)c->input : D * H;
        total += D * G * in + D * G * H + D * G;
    }
    return total;
}

int sl_op_lstm(sl_op_ctx *ctx, const sl_lstm_cfg *c, size_t batch, size_t T, const float *x, size_t ldx,
               size_t stride_x, const float *w, size_t stride_w, float *y, size_t ldy, size_t stride_y)
{
    if (!sl_lstm_weights_floats(c))
        return bad("lstm", "layers 1..16, input 1..65536, hidden 1..4096, bidirectional 0/1");
    const size_t out = (size_t)(1 + c->bidirectional) * (size_t)c->hidden;
    if (ldx < (size_t)c->input || ldy < out)
        return bad("lstm", "a leading dimension is shorter than its row");
    if (!x || !w || !y)
        return bad("lstm", "x, w and y are required");
    if (!batch || !T)
        return 0;
    DISPATCH(SL_OP_LSTM, lstm, c, batch, T, x, ldx, stride_x, w, stride_w, y, ldy, stride_y);
}

int sl_op_wiener(sl_op_ctx *ctx, const sl_wiener_cfg *c, size_t n_targets, size_t n_frames, size_t n_bins,
                 const float *mix, const float *mag, float *out)
{
    if (!c || c->niter < 0 || c->niter > 100 || c->win_len < 0 || !(c->eps > 0) || !isfinite(c->eps))
        return bad("wiener", "niter 0..100, win_len >= 0, eps finite > 0");
    if (n_targets < 1 || n_targets > 8)
        return bad("wiener", "1..8 targets");
    if (c->niter > 0 && n_targets + (c->residual ? 1 : 0) < 2)
        return bad("wiener", "EM (niter > 0) needs at least two sources (add the residual)");
    if (!mix || !mag || !out)
        return bad("wiener", "mix, mag and out are required");
    if (!n_frames || !n_bins)
        return 0;
    DISPATCH(SL_OP_WIENER, wiener, c, n_targets, n_frames, n_bins, mix, mag, out);
}

/* ---- convolutional ops ---- */

int sl_op_conv2d(sl_op_ctx *ctx, const sl_conv2d_args *a)
{
    if (!a || !a->x || !a->wt || !a->y)
        return bad("conv2d", "x, wt and y are required");
    if (a->act != SL_ACT_NONE && a->act != SL_ACT_RELU && a->act != SL_ACT_TANH)
        return bad("conv2d", "unknown activation");
    if (a->k < 1 || a->k > 7 || a->k % 2 == 0)
        return bad("conv2d", "kernel size must be odd, 1..7");
    if (a->c_in < 1 || a->c_in > 65536 || a->c_out < 1 || a->c_out > 65536 || a->h < 1 || a->w < 1)
        return bad("conv2d", "channels 1..65536, height and width >= 1");
    if ((uint64_t)a->h * (uint64_t)a->w > INT32_MAX ||
        (uint64_t)a->c_in * (uint64_t)a->k * (uint64_t)a->k * (uint64_t)a->h * (uint64_t)a->w > ((uint64_t)1 << 40))
        return bad("conv2d", "image too large");
    if (!a->batch)
        return 0;
    DISPATCH(SL_OP_CONV2D, conv2d, a);
}

size_t sl_conv1d_len_out(const sl_conv1d_args *a)
{
    const uint64_t span = (uint64_t)a->dilation * (uint64_t)(a->k - 1) + 1;
    const uint64_t padded = (uint64_t)a->len + (uint64_t)a->pad_l + (uint64_t)a->pad_r;
    return padded < span ? 0 : (size_t)((padded - span) / (uint64_t)a->stride + 1);
}

int sl_op_conv1d(sl_op_ctx *ctx, const sl_conv1d_args *a)
{
    if (!a || !a->x || !a->wt || !a->y)
        return bad("conv1d", "x, wt and y are required");
    if ((unsigned)a->act > SL_ACT_GELU)
        return bad("conv1d", "unknown activation");
    if (a->c_in < 1 || a->c_in > 65536 || a->c_out < 1 || a->c_out > 65536 || a->groups < 1 ||
        a->c_in % a->groups || a->c_out % a->groups)
        return bad("conv1d", "channels 1..65536, multiples of groups >= 1");
    if (a->len < 1 || a->inner < 1 || a->k < 1 || a->k > 4096 || a->stride < 1 || a->dilation < 1 ||
        a->pad_l < 0 || a->pad_r < 0 || a->len > INT32_MAX || a->inner > INT32_MAX)
        return bad("conv1d", "len, inner, k (<= 4096), stride, dilation >= 1 and paddings >= 0");
    const size_t lo = sl_conv1d_len_out(a);
    if (!lo)
        return bad("conv1d", "the kernel span is longer than the padded input");
    if ((uint64_t)lo * (uint64_t)a->inner > INT32_MAX || (uint64_t)a->len * (uint64_t)a->inner > INT32_MAX)
        return bad("conv1d", "signal too large");
    if (!a->batch)
        return 0;
    DISPATCH(SL_OP_CONV1D, conv1d, a);
}

int sl_op_conv_transpose1d(sl_op_ctx *ctx, const sl_convt1d_args *a)
{
    if (!a || !a->x || !a->wt || !a->y)
        return bad("conv_transpose1d", "x, wt and y are required");
    if ((unsigned)a->act > SL_ACT_GELU)
        return bad("conv_transpose1d", "unknown activation");
    if (a->c_in < 1 || a->c_in > 65536 || a->c_out < 1 || a->c_out > 65536)
        return bad("conv_transpose1d", "channels 1..65536");
    if (a->len < 1 || a->inner < 1 || a->k < 1 || a->k > 4096 || a->stride < 1 || a->crop < 0 ||
        a->len > INT32_MAX || a->inner > INT32_MAX)
        return bad("conv_transpose1d", "len, inner, k (<= 4096), stride >= 1 and crop >= 0");
    const uint64_t full = ((uint64_t)a->len - 1) * (uint64_t)a->stride + (uint64_t)a->k;
    if (a->len_out < 1 || (uint64_t)a->len_out + (uint64_t)a->crop > full)
        return bad("conv_transpose1d", "len_out must be 1..(len-1)*stride + k - crop");
    if ((uint64_t)a->len_out * (uint64_t)a->inner > INT32_MAX || (uint64_t)a->len * (uint64_t)a->inner > INT32_MAX)
        return bad("conv_transpose1d", "signal too large");
    if (!a->batch)
        return 0;
    DISPATCH(SL_OP_CONV_TRANSPOSE1D, conv_transpose1d, a);
}

int sl_op_permute(sl_op_ctx *ctx, const sl_permute_args *a)
{
    if (!a || !a->x || !a->y)
        return bad("permute", "x and y are required");
    if (!a->dim[0] || !a->dim[1] || !a->dim[2] || !a->dim[3])
        return 0;
    DISPATCH(SL_OP_PERMUTE, permute, a);
}

int sl_op_avg_pool2d(sl_op_ctx *ctx, size_t planes, int h, int w, int kh, int kw, const float *in, float *out)
{
    if (h < 1 || w < 1 || kh < 1 || kw < 1 || kh > h || kw > w)
        return bad("avg_pool2d", "need 1 <= kh <= h and 1 <= kw <= w");
    if (!in || !out)
        return bad("avg_pool2d", "in and out are required");
    if (!planes)
        return 0;
    DISPATCH(SL_OP_AVG_POOL2D, avg_pool2d, planes, h, w, kh, kw, in, out);
}

int sl_op_clip_pool(sl_op_ctx *ctx, size_t planes, size_t T, size_t F, const float *in, float *out)
{
    if (!T || !F)
        return bad("clip_pool", "needs at least one frame and one feature");
    if (!in || !out)
        return bad("clip_pool", "in and out are required");
    if (!planes)
        return 0;
    DISPATCH(SL_OP_CLIP_POOL, clip_pool, planes, T, F, in, out);
}

/* ---- search ---- */

int sl_op_topk(sl_op_ctx *ctx, const sl_topk_args *a)
{
    if (!a || !a->top_score || !a->top_index || (a->n && !a->scores))
        return bad("topk", "top_score, top_index and (for n > 0) scores are required");
    if (a->k < 1 || a->k > ((size_t)1 << 30))
        return bad("topk", "k must be 1..2^30");
    if (a->ld < a->n)
        return bad("topk", "ld is shorter than a row");
    if (a->base < 0 || (uint64_t)a->n > (uint64_t)(INT64_MAX - a->base))
        return bad("topk", "indices base .. base + n out of range 0..2^63-1");
    if (a->nq > ((size_t)1 << 40) / a->k)
        return bad("topk", "nq * k beyond 2^40");
    if (!a->nq || (!a->n && !a->reset))
        return 0;
    DISPATCH(SL_OP_TOPK, topk, a);
}

/* ---- transformer ops ---- */

int sl_rope_table(float *tab, size_t n_pos, int dim, double theta, const float *inv_freq)
{
    if (dim < 2 || dim > 1024 || dim % 2 || (!inv_freq && !(theta > 0)))
        return sl_seterr(SL_EINVAL, "rope table: dim %d must be even, 2..1024, theta > 0", dim);
    for (int i = 0; i < dim / 2; i++) {
        /* rotary_embedding_torch: 1. / (theta ** (arange(0, dim, 2).float() / dim)), float32 */
        const float e = (float)(2 * i) / (float)dim;
        const float f = inv_freq ? inv_freq[i] : 1.0f / powf((float)theta, e);
        for (size_t p = 0; p < n_pos; p++) {
            const double ang = (double)p * (double)f;
            tab[(p * (size_t)(dim / 2) + (size_t)i) * 2] = (float)cos(ang);
            tab[(p * (size_t)(dim / 2) + (size_t)i) * 2 + 1] = (float)sin(ang);
        }
    }
    return 0;
}

int sl_op_norm(sl_op_ctx *ctx, const sl_norm_args *a)
{
    if (!a || !a->x || !a->y)
        return bad("norm", "x and y are required");
    if (a->kind != SL_NORM_RMS && a->kind != SL_NORM_LAYER && a->kind != SL_NORM_GROUP)
        return bad("norm", "unknown kind");
    if (a->kind == SL_NORM_GROUP && (a->groups < 1 || a->channels < a->groups || a->channels % a->groups ||
                                     a->inner < 1))
        return bad("norm", "group norm needs groups >= 1 dividing channels, and inner >= 1");
    if (a->dim < 1 || a->dim > INT32_MAX || a->ldx < a->dim || a->ldy < a->dim)
        return bad("norm", "dim 1..2^31 and each ld >= dim");
    if (!(a->eps >= 0) || !isfinite(a->eps))
        return bad("norm", "eps must be finite and >= 0");
    if (a->x == a->y && a->ldx != a->ldy)
        return bad("norm", "in place needs ldx == ldy");
    if (!a->rows)
        return 0;
    DISPATCH(SL_OP_NORM, norm, a);
}

int sl_op_glu(sl_op_ctx *ctx, size_t rows, size_t n, const float *x, size_t ldx, float *y, size_t ldy)
{
    if (!x || !y)
        return bad("glu", "x and y are required");
    if (ldx < 2 * n || ldy < n)
        return bad("glu", "ldx >= 2n and ldy >= n");
    if (x == y && ldy > ldx)
        return bad("glu", "in place needs ldy <= ldx");
    if (!rows || !n)
        return 0;
    DISPATCH(SL_OP_GLU, glu, rows, n, x, ldx, y, ldy);
}

int sl_op_attention(sl_op_ctx *ctx, const sl_attention_args *a)
{
    if (!a || !a->q || !a->k || !a->v || !a->out)
        return bad("attention", "q, k, v and out are required");
    if (a->heads < 1 || a->dim_head < 1 || a->dim_head > 128)
        return bad("attention", "heads >= 1 and dim_head 1..128");
    if (a->rope && a->dim_head % 2)
        return bad("attention", "rotary embedding needs an even dim_head");
    const size_t hd = (size_t)a->heads * (size_t)a->dim_head;
    if (a->ldq < hd || a->ldk < hd || a->ldv < hd || a->ldo < hd)
        return bad("attention", "a leading dimension is shorter than heads * dim_head");
    if (a->gate && a->ld_gate < (size_t)a->heads)
        return bad("attention", "ld_gate < heads");
    if (a->bias && a->ld_bias < a->tk)
        return bad("attention", "ld_bias < tk");
    if (!isfinite(a->scale))
        return bad("attention", "scale must be finite");
    if (a->tq > INT32_MAX || a->tk > INT32_MAX)
        return bad("attention", "sequences beyond 2^31 rows");
    if (!a->batch || !a->tq)
        return 0;
    if (!a->tk)
        return bad("attention", "no keys");
    DISPATCH(SL_OP_ATTENTION, attention, a);
}

static int band_geom_ok(const char *op, const sl_band_geom *g)
{
    if (!g || !g->idx)
        return bad(op, "geometry and idx are required");
    if (g->n_ch < 1 || g->F < 1 || g->F * g->n_ch > INT32_MAX || g->n_feat > INT32_MAX)
        return bad(op, "n_ch >= 1, F >= 1, F*n_ch and n_feat below 2^31");
    return 0;
}

int sl_op_spec_gather(sl_op_ctx *ctx, const sl_band_geom *g, const float *spec, float *out)
{
    int rc = band_geom_ok("spec_gather", g);
    if (rc < 0)
        return rc;
    if (!spec || !out)
        return bad("spec_gather", "spec and out are required");
    if (!g->batch || !g->T || !g->n_feat)
        return 0;
    DISPATCH(SL_OP_SPEC_GATHER, spec_gather, g, spec, out);
}

int sl_op_mask_scatter(sl_op_ctx *ctx, const sl_band_geom *g, size_t n_masks, const int32_t *inv_off,
                       const int32_t *inv_idx, const float *spec, const float *mask, float *out)
{
    int rc = band_geom_ok("mask_scatter", g);
    if (rc < 0)
        return rc;
    if (!spec || !mask || !out || !inv_off || !inv_idx)
        return bad("mask_scatter", "spec, mask, out, inv_off and inv_idx are required");
    if (!g->batch || !g->T || !n_masks)
        return 0;
    DISPATCH(SL_OP_MASK_SCATTER, mask_scatter, g, n_masks, inv_off, inv_idx, spec, mask, out);
}

int sl_band_inverse(const int32_t *idx, size_t n_feat, size_t n_bins, int32_t *inv_off, int32_t *inv_idx)
{
    if (n_feat > INT32_MAX || n_bins > INT32_MAX)
        return sl_seterr(SL_EINVAL, "band inverse: sizes beyond 2^31");
    for (size_t f = 0; f <= n_bins; f++)
        inv_off[f] = 0;
    for (size_t j = 0; j < n_feat; j++) {
        if (idx[j] < 0 || (size_t)idx[j] >= n_bins)
            return sl_seterr(SL_EINVAL, "band inverse: feature %zu maps to bin %d, outside 0..%zu", j,
                             (int)idx[j], n_bins - 1);
        inv_off[idx[j] + 1]++;
    }
    for (size_t f = 0; f < n_bins; f++)
        inv_off[f + 1] += inv_off[f];
    int32_t *next = malloc((n_bins + 1) * sizeof *next);
    if (!next)
        return sl_seterr(SL_ENOMEM, "band inverse: out of memory");
    memcpy(next, inv_off, (n_bins + 1) * sizeof *next);
    for (size_t j = 0; j < n_feat; j++) /* ascending j per bin: a stable counting sort */
        inv_idx[next[idx[j]]++] = (int32_t)j;
    free(next);
    return 0;
}

int sl_op_row_gather(sl_op_ctx *ctx, const sl_gather_args *a)
{
    if (!a || !a->x || !a->y || !a->idx)
        return bad("row_gather", "x, y and idx are required");
    if (a->taps < 1 || a->taps > 64 || (!a->w && a->taps != 1))
        return bad("row_gather", "taps 1..64, and 1 without weights");
    if (a->ldx < a->cols || a->ldy < a->cols)
        return bad("row_gather", "a leading dimension is shorter than cols");
    if (a->in_rows > INT32_MAX || a->rows > INT32_MAX)
        return bad("row_gather", "rows beyond 2^31");
    if (!a->batch || !a->rows || !a->cols)
        return 0;
    if (!a->in_rows)
        return bad("row_gather", "no input rows");
    DISPATCH(SL_OP_ROW_GATHER, row_gather, a);
}
