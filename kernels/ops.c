/* Backend selection and dispatch. Every public op checks its arguments once,
 * here and in ops_audio.c, ops_nn.c and ops_xf.c, so backends only see valid
 * shapes; a missing op is SL_EUNSUPPORTED, never a NULL call. This file: the
 * backends, contexts, memory and pipelined forwards. */
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
#include "ops_dispatch.h"
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
    static const char *const names[] = {"fp32", "tf32", "bf16", "bf16x6"};
    return (unsigned)p < sizeof names / sizeof names[0] ? names[p] : "?";
}

int sl_precision_from_name(const char *name)
{
    for (int p = SL_PREC_FP32; p <= SL_PREC_BF16X6; p++)
        if (!strcmp(name, sl_precision_name((sl_precision)p)))
            return p;
    return -1;
}

int sl_op_ctx_set_precision(sl_op_ctx *ctx, sl_precision p)
{
    if (p != SL_PREC_FP32 && p != SL_PREC_TF32 && p != SL_PREC_BF16 && p != SL_PREC_BF16X6)
        return sl_seterr(SL_EINVAL, "precision %d: expected fp32, tf32, bf16 or bf16x6", (int)p);
    if (!ctx->be->set_precision) {
        if (p == SL_PREC_FP32)
            return 0;
        return sl_seterr(SL_EUNSUPPORTED, "precision %s: backend %s computes in fp32 only (tf32 and bf16 run "
                                          "on the cuda and cpu backends)", sl_precision_name(p), ctx->be->name);
    }
    int rc = enter(ctx);
    if (!rc)
        rc = ctx->be->set_precision(ctx, p); /* the mode in effect, or an error */
    if (rc < 0)
        return rc;
    ctx->precision = (sl_precision)rc;
    return 0;
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
