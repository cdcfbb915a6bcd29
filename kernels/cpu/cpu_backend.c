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

typedef struct {
    float *scratch;
    size_t scratch_floats;
} cpu_state;

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
    if (st)
        free(st->scratch);
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
    snprintf(ctx->device, sizeof ctx->device, "CPU (%d thread%s per context, %s)", n, n == 1 ? "" : "s", fftw_ver);
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
    (void)ctx;
    free(ptr);
}

static int cpu_copy(sl_op_ctx *ctx, void *dst, const void *src, size_t bytes)
{
    (void)ctx;
    if (dst != src)
        memmove(dst, src, bytes);
    return 0;
}

const sl_op_backend sl_cpu_backend = {
    .name = "cpu",
    .init = cpu_init,
    .fini = cpu_fini,
    .alloc = cpu_alloc,
    .free_ = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
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
};
