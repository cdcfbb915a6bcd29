/* CPU backend: host memory and the op table. */
#include <cblas.h>
#include <fftw3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "../ops.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

/* A form derived from fixed buffers, shared by every context of the process
 * that declared the same buffer fixed and asks for the same form (workers
 * reading one mapping of a weights file: the same address, the same bytes,
 * promised unchanged): made once, by the first context that asks, while the
 * others wait for it; freed when the last context lets it go. */
typedef struct cpu_form {
    const char *p;
    size_t bytes;
    uint64_t tag;
    size_t floats;
    float *data;
    int refs;            /* contexts holding it */
    int ready;           /* filled (sl_cpu_fixed_form_ready) */
    int failed;          /* its filler gave up: nobody uses it */
    int uses;            /* contexts that ever held it (sl_op_fixed_forms) */
    sl_op_ctx *builder;  /* the context filling it, while !ready */
    struct cpu_form *next;
} cpu_form;

static pthread_mutex_t forms_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t forms_cv = PTHREAD_COND_INITIALIZER;
static cpu_form *forms;

/* A buffer declared fixed (sl_op_mark_fixed) and the one form derived from it, if any. */
typedef struct {
    const char *p;
    size_t bytes;
    cpu_form *form;
} cpu_fixed;

typedef struct {
    float *scratch;
    size_t scratch_floats;
    cpu_fixed *fixed;
    size_t n_fixed, cap_fixed;
    int building; /* forms this context is filling */
    sl_precision asked; /* runtime.precision asked for (ctx->precision: the mode in effect) */
} cpu_state;

/* Lets go of f (forms_mu held); the last holder frees it. */
static void form_unref(cpu_form *f)
{
    if (--f->refs > 0)
        return;
    for (cpu_form **pp = &forms; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    free(f->data);
    free(f);
}

static void fixed_drop(cpu_state *st, size_t i)
{
    if (st->fixed[i].form) {
        pthread_mutex_lock(&forms_mu);
        form_unref(st->fixed[i].form);
        pthread_mutex_unlock(&forms_mu);
    }
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
    cpu_fixed *x = NULL;
    for (size_t i = 0; i < st->n_fixed && !x; i++)
        if (st->fixed[i].p == (const char *)p)
            x = &st->fixed[i];
    if (!x)
        return NULL;
    cpu_form *f = x->form;
    if (f && f->tag == tag && f->floats == floats) {
        *fresh = 0; /* ready: a context asks again only after its own fill, or after waiting */
        return f->data;
    }
    pthread_mutex_lock(&forms_mu);
    if (f) { /* one form per buffer: the old one goes */
        form_unref(f);
        x->form = NULL;
    }
    for (f = forms; f; f = f->next)
        if (f->p == x->p && f->bytes == x->bytes && f->tag == tag && f->floats == floats)
            break;
    if (f && !f->ready && st->building) {
        /* another context fills it while this one fills others: never wait
         * (two contexts could wait for each other); compute per call */
        pthread_mutex_unlock(&forms_mu);
        return NULL;
    }
    if (f) {
        f->refs++;
        f->uses++;
        if (!f->ready) {
            /* its tokens go to the filling context's loops meanwhile */
            pthread_mutex_unlock(&forms_mu);
            sl_pool_pause(ctx->pool);
            pthread_mutex_lock(&forms_mu);
            while (!f->ready && !f->failed)
                pthread_cond_wait(&forms_cv, &forms_mu);
            pthread_mutex_unlock(&forms_mu);
            sl_pool_resume(ctx->pool);
            pthread_mutex_lock(&forms_mu);
            if (f->failed) {
                form_unref(f);
                pthread_mutex_unlock(&forms_mu);
                return NULL;
            }
        }
        pthread_mutex_unlock(&forms_mu);
        x->form = f;
        *fresh = 0;
        return f->data;
    }
    f = calloc(1, sizeof *f);
    float *data = f ? aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63) : NULL;
    if (!data) {
        free(f);
        pthread_mutex_unlock(&forms_mu);
        return NULL;
    }
    *f = (cpu_form){.p = x->p, .bytes = x->bytes, .tag = tag, .floats = floats, .data = data, .refs = 1, .uses = 1,
                    .builder = ctx, .next = forms};
    forms = f;
    pthread_mutex_unlock(&forms_mu);
    x->form = f;
    st->building++;
    *fresh = 1;
    return data;
}

/* The form ctx was given to fill at data form, or NULL. */
static cpu_form *forms_find_building(const sl_op_ctx *ctx, const float *form)
{
    cpu_form *got = NULL;
    pthread_mutex_lock(&forms_mu);
    for (cpu_form *f = forms; f && !got; f = f->next)
        if (f->data == form && f->builder == ctx && !f->ready)
            got = f;
    pthread_mutex_unlock(&forms_mu);
    return got;
}

void sl_cpu_fixed_form_ready(sl_op_ctx *ctx, const float *form, int filled)
{
    cpu_state *st = ctx->state;
    cpu_form *f = forms_find_building(ctx, form);
    if (!f)
        return; /* not a form ctx was given to fill (a scratch buffer) */
    pthread_mutex_lock(&forms_mu);
    f->builder = NULL;
    st->building--;
    if (filled) {
        f->ready = 1;
    } else {
        f->failed = 1;
        for (size_t i = 0; i < st->n_fixed; i++)
            if (st->fixed[i].form == f)
                st->fixed[i].form = NULL;
        form_unref(f);
    }
    pthread_cond_broadcast(&forms_cv);
    pthread_mutex_unlock(&forms_mu);
}

void sl_op_cpu_fixed_forms(size_t *bytes, size_t *n, size_t *uses)
{
    *bytes = *n = *uses = 0;
    pthread_mutex_lock(&forms_mu);
    for (const cpu_form *f = forms; f; f = f->next) {
        *bytes += f->floats * sizeof(float);
        (*n)++;
        *uses += (size_t)f->uses;
    }
    pthread_mutex_unlock(&forms_mu);
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

/* OpenBLAS's pthreads build starts its worker threads when it is loaded, and an idle
 * worker spins on sched_yield for about 0.1 s (after its start and after every call)
 * before it sleeps. stemline never hands OpenBLAS work for them (cpu_once), so they
 * only took CPU time from the pools' threads: about 50 ms of CPU in a one-query
 * `stemline search --text` on 2 CPUs, where the process lasts 0.1-0.2 s. The stemline
 * program keeps them from starting (cli/preinit.c); in any other program that links
 * this backend (tests, benches), or one started with an empty environment, they are
 * stopped before main, with OpenBLAS's own exported shutdown (the one it runs at
 * fork); weak, so that a BLAS without it links and keeps its threads. */
extern int blas_thread_shutdown_(void) __attribute__((weak));

__attribute__((constructor)) static void blas_threads_stop(void)
{
    openblas_set_num_threads(1);
    if (blas_thread_shutdown_)
        blas_thread_shutdown_();
}

static int huge_wanted; /* STEMLINE_CPU_HUGEPAGES=1 (hugepages, below) */

/* Once per process. OpenBLAS already runs every call on the calling thread
 * (blas_threads_stop above set it to one thread before main); the ops split their
 * GEMMs over the context's pool instead (sl_cpu_gemm_rows), so the threads that
 * compute are exactly the pools'. */
static void cpu_once(void)
{
    /* fftwf_version is "fftw-3.3.10-sse2-avx"; keep the version part only. */
    snprintf(fftw_ver, sizeof fftw_ver, "%s", fftwf_version);
    char *dash = strchr(fftw_ver + 5, '-');
    if (dash)
        *dash = 0;
    const char *h = getenv("STEMLINE_CPU_HUGEPAGES");
    huge_wanted = h && !strcmp(h, "1");
}

static void cpu_threads_changed(sl_op_ctx *ctx)
{
    const int n = sl_pool_threads(ctx->pool);
    const cpu_state *st = ctx->state;
    const char *prec = "";
    char asked[80];
    if (ctx->precision == SL_PREC_TF32)
        prec = "; precision tf32 (gemm as three bf16 products on AMX tiles)";
    else if (ctx->precision == SL_PREC_BF16)
        prec = "; precision bf16 (gemm as bf16 products on AMX tiles)";
    else if (ctx->precision == SL_PREC_BF16X6)
        prec = "; precision bf16x6 (gemm as six bf16 products on AMX tiles, fp32's accuracy)";
    else if (st->asked != SL_PREC_FP32) {
        snprintf(asked, sizeof asked, "; precision fp32 (%s asked for: no AMX-BF16 tiles in use)",
                 sl_precision_name(st->asked));
        prec = asked;
    }
    snprintf(ctx->device, sizeof ctx->device, "CPU (%d thread%s per context, %s)%s", n, n == 1 ? "" : "s", fftw_ver,
             prec);
}

/* runtime.precision: tf32 / bf16 / bf16x6 on the AMX tiles where the CPU has them (and SL_CPU_AMX is
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

/* Transparent huge pages for buffers of at least HUGE_MIN bytes, over their 2 MiB-aligned
 * interior: only with STEMLINE_CPU_HUGEPAGES=1 in the environment (read once, cpu_once). Asking
 * for them (madvise MADV_HUGEPAGE) makes the kernel zero, and where memory is fragmented first
 * compact, 2 MiB at each first touch when /sys/kernel/mm/transparent_hugepage/defrag is
 * "madvise" (the default): on a long-running 2-CPU server that cost a process 4-12 s of system
 * time on its first segments (HT-Demucs, BS-RoFormer) and the 1-thread hpss job up to 0.6 s,
 * for no steady-state gain there (bench/RESULTS.md, "huge pages"). Where compaction is cheap
 * the RoFormers' time axis (rows 380 KB apart, a TLB miss each on 4 KiB pages) gained 2-8 %
 * with them. Advice only: a refusal changes nothing. */
#define HUGE_MIN ((size_t)8 << 20)
#define HUGE_PAGE ((uintptr_t)2 << 20)
static void hugepages(void *p, size_t bytes)
{
#ifdef MADV_HUGEPAGE
    if (!huge_wanted || bytes < HUGE_MIN)
        return;
    const uintptr_t a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1), e = ((uintptr_t)p + bytes) & ~(HUGE_PAGE - 1);
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}

static int cpu_alloc(sl_op_ctx *ctx, void **ptr, size_t bytes)
{
    (void)ctx;
    /* 64-byte alignment keeps FFTW's SIMD paths and cache lines happy. */
    size_t rounded = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        return sl_seterr(SL_ENOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    hugepages(p, rounded);
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
