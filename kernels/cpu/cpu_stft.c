/* CPU STFT pieces: framing with centre padding, FFTW real transforms, and the
 * overlap-add tail of the iSTFT (torch.istft semantics, see kernels/README.md). */
#include <fftw3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

/* ---- framing ---- */

/* Index into a signal of len samples for padded position p (may be negative),
 * or -1 for a constant (zero) pad. Reflect excludes the edge sample
 * (numpy/torch 'reflect'); sl_stft_check guarantees one reflection suffices. */
static inline ptrdiff_t pad_index(ptrdiff_t p, ptrdiff_t len, sl_pad_mode mode)
{
    if (p >= 0 && p < len)
        return p;
    if (mode == SL_PAD_CONSTANT)
        return -1;
    if (p < 0)
        return -p;
    return 2 * (len - 1) - p;
}

int sl_cpu_frame(sl_op_ctx *ctx, const sl_stft_cfg *c, const float *x, size_t batch, size_t len,
                 size_t first, size_t count, const float *window, float *frames)
{
    (void)ctx;
    const size_t n = (size_t)c->n_fft;
    const ptrdiff_t pad = c->center ? (ptrdiff_t)(n / 2) : 0;
    for (size_t b = 0; b < batch; b++) {
        const float *xb = x + b * len;
        for (size_t j = 0; j < count; j++) {
            size_t m = first + j;
            float *f = frames + (b * count + j) * n;
            ptrdiff_t p0 = (ptrdiff_t)(m * (size_t)c->hop) - pad;
            if (p0 >= 0 && p0 + (ptrdiff_t)n <= (ptrdiff_t)len) {
                const float *s = xb + p0;
                for (size_t k = 0; k < n; k++)
                    f[k] = s[k] * window[k];
            } else {
                for (size_t k = 0; k < n; k++) {
                    ptrdiff_t i = pad_index(p0 + (ptrdiff_t)k, (ptrdiff_t)len, c->pad);
                    f[k] = i < 0 ? 0.0f : xb[i] * window[k];
                }
            }
        }
    }
    return 0;
}

/* ---- FFTW plans ---- */

/* FFTW planning is not thread-safe and plans are reusable on any arrays with the
 * same alignment, so plans live in one process-wide cache guarded by a mutex
 * and are kept for the life of the process. FFTW_ESTIMATE makes the chosen
 * algorithm, hence the output bits, the same on every run. */
typedef struct plan_entry {
    int n;
    fftwf_plan r2c, c2r;
    struct plan_entry *next;
} plan_entry;

static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;
static plan_entry *plans;

static int get_plans(int n, fftwf_plan *r2c, fftwf_plan *c2r)
{
    int rc = 0;
    pthread_mutex_lock(&plan_lock);
    plan_entry *e = plans;
    while (e && e->n != n)
        e = e->next;
    if (!e) {
        float *a = fftwf_alloc_real((size_t)n + 2);
        fftwf_complex *b = fftwf_alloc_complex((size_t)n / 2 + 1);
        e = calloc(1, sizeof *e);
        if (a && b && e) {
            e->n = n;
            e->r2c = fftwf_plan_dft_r2c_1d(n, a, b, FFTW_ESTIMATE);
            e->c2r = fftwf_plan_dft_c2r_1d(n, b, a, FFTW_ESTIMATE);
        }
        if (!e || !e->r2c || !e->c2r) {
            if (e && e->r2c)
                fftwf_destroy_plan(e->r2c);
            if (e && e->c2r)
                fftwf_destroy_plan(e->c2r);
            free(e);
            e = NULL;
            rc = sl_seterr(SL_ENOMEM, "fftw: cannot create plans for n_fft %d", n);
        } else {
            e->next = plans;
            plans = e;
        }
        fftwf_free(a);
        fftwf_free(b);
    }
    if (e) {
        *r2c = e->r2c;
        *c2r = e->c2r;
    }
    pthread_mutex_unlock(&plan_lock);
    return rc;
}

/* Frames are copied through fftwf_malloc'd buffers: the plans were made on
 * such buffers, so alignment always matches whatever the caller passes, and
 * the c2r transform may destroy its input without touching the caller's. A
 * forward frame whose alignment is already the plan's (fftwf_alignment_of: a
 * 64-byte aligned buffer of frames of a multiple of 16 floats) is transformed
 * where it lies: r2c keeps its input, and the same plan on the same alignment
 * runs the same code, so the bits are those of the copy.
 * Frames are independent: one range of them per thread of the context, each
 * with its own buffers (fftwf_execute_dft_* is thread-safe on new arrays). */
typedef struct {
    fftwf_plan plan;
    size_t n, count, parts;
    const float *in;
    float *out;
    float scale;
    int inverse;
    atomic_int failed;
} fft_job;

static void fft_part(void *v, size_t part, int tid)
{
    (void)tid;
    fft_job *j = v;
    const size_t n = j->n, nb = n / 2 + 1;
    size_t lo, hi;
    sl_pool_range(j->count, j->parts, part, &lo, &hi);
    if (lo >= hi)
        return;
    float *a = fftwf_alloc_real(n);
    fftwf_complex *b = fftwf_alloc_complex(nb);
    if (!a || !b) {
        atomic_store(&j->failed, 1);
        fftwf_free(a);
        fftwf_free(b);
        return;
    }
    float *bf = (float *)b;
    for (size_t i = lo; i < hi; i++) {
        if (!j->inverse) {
            float *src = (float *)(j->in + i * n); /* (read only: r2c keeps its input) */
            if (fftwf_alignment_of(src) != fftwf_alignment_of(a)) {
                memcpy(a, src, n * sizeof(float));
                src = a;
            }
            fftwf_execute_dft_r2c(j->plan, src, b);
            float *o = j->out + i * 2 * nb;
            if (j->scale == 1.0f)
                memcpy(o, bf, 2 * nb * sizeof(float));
            else
                for (size_t k = 0; k < 2 * nb; k++)
                    o[k] = bf[k] * j->scale;
        } else {
            memcpy(bf, j->in + i * 2 * nb, 2 * nb * sizeof(float));
            /* A real signal's DC (and even-n Nyquist) bin is real; irfft ignores the
             * imaginary part there, which FFTW's c2r would not promise to do. */
            bf[1] = 0.0f;
            if (n % 2 == 0)
                bf[2 * (nb - 1) + 1] = 0.0f;
            fftwf_execute_dft_c2r(j->plan, b, a);
            sl_cpu_vec_scale(j->out + i * n, a, j->scale, n);
        }
    }
    fftwf_free(a);
    fftwf_free(b);
}

static int fft_run(sl_op_ctx *ctx, int inverse, int n_fft, size_t count, const float *in, float *out, float scale)
{
    fftwf_plan r2c = NULL, c2r = NULL;
    int rc = get_plans(n_fft, &r2c, &c2r);
    if (rc < 0)
        return rc;
    sl_pool *pool = ctx ? ctx->pool : NULL; /* the CUDA backends' host fallbacks pass no CPU context */
    size_t parts = (size_t)sl_pool_threads(pool);
    if (count * (size_t)n_fft < ((size_t)1 << 15)) /* below ~30 us of work: not worth a loop */
        parts = 1;
    if (parts > count)
        parts = count ? count : 1;
    fft_job j = {inverse ? c2r : r2c, (size_t)n_fft, count, parts, in, out, scale, inverse, 0};
    sl_pool_for(pool, parts, fft_part, &j);
    if (atomic_load(&j.failed))
        return sl_seterr(SL_ENOMEM, "%s: out of memory", inverse ? "irfft" : "rfft");
    return 0;
}

int sl_cpu_rfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale)
{
    return fft_run(ctx, 0, n_fft, count, in, out, scale);
}

int sl_cpu_irfft(sl_op_ctx *ctx, int n_fft, size_t count, const float *in, float *out, float scale)
{
    return fft_run(ctx, 1, n_fft, count, in, out, scale);
}

/* ---- overlap-add ---- */

/* The overlap-added window^2 env[full], frames added in order m = 0, 1, ...
 * exactly as torch's fold does, without adding every frame: a sample all of
 * whose frames exist (the interior) sums the same squares in the same order
 * as the sample a hop before it, so the interior repeats with period hop and
 * is copied from the first period; only the first frames and those that
 * reach past the interior are added. The same bits as adding every frame
 * (sl_cpu_vec_muladd multiplies, then adds, on every path). env is written
 * before it is read (no zero-page reads). */
static void ola_envelope(float *env, const float *window, size_t n, size_t hop, size_t n_frames, size_t full)
{
    memset(env, 0, full * sizeof(float));
    const size_t span = (n + hop - 1) / hop; /* most frames over one sample */
    const size_t head = n_frames < span + 1 ? n_frames : span + 1;
    for (size_t m = 0; m < head; m++)
        sl_cpu_vec_muladd(env + m * hop, window, window, n);
    if (head == n_frames)
        return;
    /* [head * hop, n_frames * hop): every frame over a sample exists; its frames are
     * those of the sample a hop before, one later, at the same offsets */
    const size_t end = n_frames * hop;
    for (size_t p = head * hop; p < end; p += hop)
        memcpy(env + p, env + p - hop, (end - p < hop ? end - p : hop) * sizeof(float));
    /* [end, full): the last frames' tails, each sample's frames in order */
    memset(env + end, 0, (full - end) * sizeof(float));
    for (size_t m = end + 1 > n ? (end + 1 - n + hop - 1) / hop : 0; m < n_frames; m++) {
        const size_t s = m * hop < end ? end : m * hop, e = m * hop + n;
        if (e > s)
            sl_cpu_vec_muladd(env + s, window + (s - m * hop), window + (s - m * hop), e - s);
    }
}


int sl_cpu_overlap_add(sl_op_ctx *ctx, const sl_stft_cfg *c, size_t batch, size_t n_frames,
                       const float *frames, const float *window, size_t length, float *out)
{
    (void)ctx;
    const size_t n = (size_t)c->n_fft, hop = (size_t)c->hop;
    const size_t full = n + hop * (n_frames - 1);
    const size_t start = c->center ? n / 2 : 0;
    const size_t end = start + length;
    const size_t kept_end = end < full ? end : full;
    float *env = malloc(full * sizeof(float));
    float *y = malloc(full * sizeof(float));
    if (!env || !y) {
        free(env);
        free(y);
        return sl_seterr(SL_ENOMEM, "overlap_add: out of memory (%zu samples)", full);
    }
    ola_envelope(env, window, n, hop, n_frames, full);
    int rc = 0;
    for (size_t p = start; p < kept_end; p++) {
        if (!(env[p] >= 1e-11f)) {
            rc = sl_seterr(SL_ENUMERIC,
                           "istft: window overlap-add envelope is %g < 1e-11 at sample %zu "
                           "(n_fft %d, hop %d): the window fails NOLA",
                           (double)env[p], p - start, c->n_fft, c->hop);
            break;
        }
    }
    for (size_t b = 0; b < batch && rc == 0; b++) {
        memset(y, 0, full * sizeof(float));
        const float *fb = frames + b * n_frames * n;
        for (size_t m = 0; m < n_frames; m++)
            sl_cpu_vec_muladd(y + m * hop, fb + m * n, window, n);
        float *ob = out + b * length;
        size_t i = kept_end > start ? kept_end - start : 0;
        sl_cpu_vec_div(ob, y + start, env + start, i);
        for (; i < length; i++)
            ob[i] = 0.0f;
    }
    free(env);
    free(y);
    return rc;
}
