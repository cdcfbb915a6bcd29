/* CPU backend: host memory and the op table. */
#include <cblas.h>
#include <fftw3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

/* A buffer declared fixed (sl_op_mark_fixed) and the one form derived from it, if any. */
typedef struct {
    const char *p;
    size_t bytes;
    float *derived;
    size_t floats;
    uint64_t tag;
} cpu_fixed;

typedef struct {
    float *scratch;
    size_t scratch_floats;
    cpu_fixed *fixed;
    size_t n_fixed, cap_fixed;
    sl_precision asked; /* runtime.precision asked for (ctx->precision: the mode in effect) */
} cpu_state;

static void fixed_drop(cpu_state *st, size_t i)
{
    free(st->fixed[i].derived);
    st->fixed[i] = st->fixed[--st->n_fixed];
}

/* Ends the promise of every fixed buffer overlapping [p, p + bytes). */
static void fixed_forget(cpu_state *st, const void *p, size_t bytes)
{
    const char *a = p;
    for (size_t i = st->n_fixed; i-- > 0;)
        if (a < st->fixed[i].p + st->fixed[i].bytes && st->fixed[i].p < a + bytes)
            fixed_drop(st, i);
}

static int cpu_mark_fixed(sl_op_ctx *ctx, const void *p, size_t bytes)
{
    cpu_state *st = ctx->state;
    fixed_forget(st, p, bytes);
    if (st->n_fixed == st->cap_fixed) {
        const size_t cap = st->cap_fixed ? 2 * st->cap_fixed : 16;
        cpu_fixed *f = realloc(st->fixed, cap * sizeof *f);
        if (!f)
            return sl_seterr(SL_ENOMEM, "cpu backend: out of memory");
        st->fixed = f;
        st->cap_fixed = cap;
    }
    st->fixed[st->n_fixed++] = (cpu_fixed){.p = p, .bytes = bytes};
    return 0;
}

int sl_cpu_fixed_is(const sl_op_ctx *ctx, const void *p)
{
    const cpu_state *st = ctx->state;
    for (size_t i = 0; i < st->n_fixed; i++)
        if (st->fixed[i].p == (const char *)p)
            return 1;
    return 0;
}

float *sl_cpu_fixed_form(sl_op_ctx *ctx, const void *p, uint64_t tag, size_t floats, int *fresh)
{
    cpu_state *st = ctx->state;
    for (size_t i = 0; i < st->n_fixed; i++) {
        cpu_fixed *f = &st->fixed[i];
        if (f->p != (const char *)p)
            continue;
        if (f->derived && f->tag == tag && f->floats == floats) {
            *fresh = 0;
            return f->derived;
        }
        free(f->derived);
        f->derived = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
        f->floats = f->derived ? floats : 0;
        f->tag = tag;
        *fresh = 1;
        return f->derived;
    }
    return NULL;
}

float *sl_cpu_scratch(sl_op_ctx *ctx, size_t floats)
{
    cpu_state *st = ctx->state;
    if (floats > st->scratch_floats) {
        free(st->scratch);
        st->scratch_floats = 0;
        st->scratch = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
        if (!st->scratch) {
            sl_seterr(SL_ENOMEM, "cpu backend: cannot allocate %zu bytes of scratch", floats * sizeof(float));
            return NULL;
        }
        st->scratch_floats = floats;
    }
    return st->scratch;
}

static void cpu_fini(sl_op_ctx *ctx)
{
    cpu_state *st = ctx->state;
    if (st) {
        free(st->scratch);
        while (st->n_fixed)
            fixed_drop(st, st->n_fixed - 1);
        free(st->fixed);
    }
    free(st);
    ctx->state = NULL;
}

static char fftw_ver[48];

/* Once per process: OpenBLAS runs every call on the calling thread. The ops split
 * their GEMMs over the context's pool instead (sl_cpu_gemm_rows), so the threads
 * that compute are exactly the pools' and two contexts in parallel threads never
 * start OpenBLAS's own threads on top of them. */
static void cpu_once(void)
{
    openblas_set_num_threads(1);
    /* fftwf_version is "fftw-3.3.10-sse2-avx"; keep the version part only. */
    snprintf(fftw_ver, sizeof fftw_ver, "%s", fftwf_version);
    char *dash = strchr(fftw_ver + 5, '-');
    if (dash)
        *dash = 0;
}

static void cpu_threads_changed(sl_op_ctx *ctx)
{
    const int n = sl_pool_threads(ctx->pool);
    const cpu_state *st = ctx->state;
    const char *prec = "";
    if (ctx->precision == SL_PREC_TF32)
        prec = "; precision tf32 (gemm as three bf16 products on AMX tiles)";
    else if (ctx->precision == SL_PREC_BF16)
        prec = "; precision bf16 (gemm as bf16 products on AMX tiles)";
    else if (st->asked != SL_PREC_FP32)
        prec = st->asked == SL_PREC_TF32 ? "; precision fp32 (tf32 asked for: no AMX-BF16 tiles in use)"
                                         : "; precision fp32 (bf16 asked for: no AMX-BF16 tiles in use)";
    snprintf(ctx->device, sizeof ctx->device, "CPU (%d thread%s per context, %s)%s", n, n == 1 ? "" : "s", fftw_ver,
             prec);
}

/* runtime.precision: tf32 / bf16 on the AMX tiles where the CPU has them (and SL_CPU_AMX is
 * not 0), exact fp32 elsewhere, named in the device string either way. */
static int cpu_set_precision(sl_op_ctx *ctx, sl_precision p)
{
    cpu_state *st = ctx->state;
    st->asked = p;
    ctx->precision = p != SL_PREC_FP32 && sl_cpu_amx() ? p : SL_PREC_FP32;
    cpu_threads_changed(ctx);
    return (int)ctx->precision;
}

static int cpu_init(sl_op_ctx *ctx)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, cpu_once);
    ctx->state = calloc(1, sizeof(cpu_state));
    if (!ctx->state)
        return sl_seterr(SL_ENOMEM, "cpu backend: out of memory");
    cpu_threads_changed(ctx);
    return 0;
}

static int cpu_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes)
{
    (void)ctx;
    /* 64-byte alignment keeps FFTW's SIMD paths and cache lines happy. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        return sl_seterr(SL_ENOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    *ptr = p;
    return 0;
}

static void cpu_free(sl_op_ctx *ctx, void *ptr)
{
    cpu_state *st = ctx->state;
    for (size_t i = st->n_fixed; i-- > 0;)
        if (st->fixed[i].p == (const char *)ptr)
            fixed_drop(st, i);
    free(ptr);
}

static int cpu_copy(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (dst != src)
        memmove(dst, src, bytes);
    return 0;
}

/* upload and copy: into backend memory, which ends the promise of a fixed buffer there */
static int cpu_copy_in(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    fixed_forget(ctx->state, dst, bytes);
    return cpu_copy(ctx, dst, src, bytes);
}

const sl_op_backend sl_cpu_backend = {
    .name = "cpu",
    .init = cpu_init,
    .fini = cpu_fini,
    .alloc = cpu_alloc,
    .free_ = cpu_free,
    .upload = cpu_copy_in,
    .download = cpu_copy,
    .copy = cpu_copy_in,
    .frame = sl_cpu_frame,
    .rfft = sl_cpu_rfft,
    .irfft = sl_cpu_irfft,
    .magnitude = sl_cpu_magnitude,
    .power = sl_cpu_power,
    .median_time = sl_cpu_median_time,
    .median_freq = sl_cpu_median_freq,
    .hpss_masks = sl_cpu_hpss_masks,
    .apply_mask = sl_cpu_apply_mask,
    .overlap_add = sl_cpu_overlap_add,
    .mel = sl_cpu_mel,
    .log_db = sl_cpu_log_db,
    .stats_pool = sl_cpu_stats_pool,
    .gemm = sl_cpu_gemm,
    .affine = sl_cpu_affine,
    .lstm = sl_cpu_lstm,
    .wiener = sl_cpu_wiener,
    .conv2d = sl_cpu_conv2d,
    .avg_pool2d = sl_cpu_avg_pool2d,
    .clip_pool = sl_cpu_clip_pool,
    .topk = sl_cpu_topk,
    .norm = sl_cpu_norm,
    .glu = sl_cpu_glu,
    .attention = sl_cpu_attention,
    .spec_gather = sl_cpu_spec_gather,
    .mask_scatter = sl_cpu_mask_scatter,
    .row_gather = sl_cpu_row_gather,
    .conv1d = sl_cpu_conv1d,
    .conv_transpose1d = sl_cpu_conv_transpose1d,
    .permute = sl_cpu_permute,
    .threads_changed = cpu_threads_changed,
    .set_precision = cpu_set_precision,
    .mark_fixed = cpu_mark_fixed,
};
