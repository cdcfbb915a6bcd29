/* CPU median filters of HPSS (scipy.ndimage.median_filter, mode 'reflect'),
 * along time (frames) and along frequency (bins) of m[batch][frames][bins].
 *
 * Algorithm: a running median over 16 lines at once. Each of the 16 lanes keeps
 * its window sorted, stored transposed (win[rank][lane], int32 keys), and one
 * step -- drop the value that leaves, insert the one that enters -- is a single
 * branch-free pass over the k ranks:
 *     A[r]   = win[r] < old ? win[r] : win[r+1]     (the window without old)
 *     win[r] = max(A[r-1], min(A[r], new))          (new inserted)
 * with A[-1] = -inf and win[k] = A[k-1] = +inf. That is 4 vector instructions
 * per rank and 16 lanes (AVX2: cmpgt, blendv, min, max), no data-dependent
 * branches, and the median is win[k/2]. The window starts as k copies of
 * +inf (INT32_MAX) and the first k values replace them (each step deletes one
 * +inf: a value whose key is INT32_MAX is interchangeable with it).
 *
 * Keys: floats are compared as order-preserving int32 keys (negative values
 * with their magnitude bits flipped), a total order in which -0 < +0 and NaNs
 * sort beyond the infinities. The median is then one well-defined element, so
 * the AVX2 and portable paths, and the CUDA kernels (which select on the same
 * order, kernels/cuda/median_select.cuh), give identical bits; for ordinary
 * values it is the same selection as a sort (scipy).
 *
 * Layout: along time the 16 lanes are 16 adjacent bins, read straight from the
 * frame rows (a row offset table holds the reflected frame index of every
 * window position); along frequency the 16 lanes are 16 frames, transposed into
 * a [bins][16] buffer first and back afterwards. A last partial group of lines
 * overlaps the previous one (the same values are computed twice), and an axis
 * with fewer than 16 lines is padded by repeating its last line.
 *
 * The AVX-512 and AVX2 versions are compiled with __attribute__((target(...)))
 * and chosen at run time (sl_cpu_simd_avx512 / sl_cpu_simd_avx2: AVX-512 off
 * with STEMLINE_CPU_AVX512=0); the portable version is plain C of the same
 * algorithm (sl_cpu_simd_set(0) forces it, for tests). */
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/sl_error.h"
#include "../../common/sl_pool.h"
#include "cpu_ops.h"
#include "cpu_simd.h"

#ifdef SL_CPU_HAVE_AVX2_PATHS
#include <immintrin.h>
#endif

#define LANES 16 /* lines per pass: one 64-byte cache line of floats */
#define MED_PREFETCH 8 /* window positions read ahead (AVX2 path) */

/* Order-preserving key of a float's bits; its own inverse. */
static inline int32_t med_key(int32_t u) { return u ^ (int32_t)((uint32_t)(u >> 31) >> 1); }

/* scipy.ndimage 'reflect' (half-sample symmetric: d c b a | a b c d | d c b a),
 * periodic with period 2n so any kernel works on any length, even 1. */
static inline size_t reflect_index(ptrdiff_t i, size_t n)
{
    ptrdiff_t period = 2 * (ptrdiff_t)n;
    ptrdiff_t j = i % period;
    if (j < 0)
        j += period;
    return (size_t)(j < (ptrdiff_t)n ? j : period - 1 - j);
}

/* One pass over LANES lines: window position t (0 .. n_out + k - 2) of lane l
 * is src[roff[t] + l]; output i of lane l goes to dst[i * dst_stride + l].
 * win: (k + 1) * LANES int32, 64-byte aligned. */
typedef void (*lanes_fn)(const float *src, const size_t *roff, size_t n_out, int k, float *dst,
                         size_t dst_stride, int32_t *win);

static void lanes_portable(const float *src, const size_t *roff, size_t n_out, int k, float *dst,
                           size_t dst_stride, int32_t *win)
{
    const size_t steps = n_out + (size_t)k - 1;
    const int h = k / 2;
    for (size_t i = 0; i < (size_t)(k + 1) * LANES; i++)
        win[i] = INT32_MAX;
    for (size_t t = 0; t < steps; t++) {
        int32_t nw[LANES], old[LANES], pa[LANES];
        memcpy(nw, src + roff[t], sizeof nw);
        if (t >= (size_t)k) {
            memcpy(old, src + roff[t - (size_t)k], sizeof old);
            for (int l = 0; l < LANES; l++)
                old[l] = med_key(old[l]);
        } else {
            for (int l = 0; l < LANES; l++)
                old[l] = INT32_MAX;
        }
        for (int l = 0; l < LANES; l++) {
            nw[l] = med_key(nw[l]);
            pa[l] = INT32_MIN;
        }
        for (int r = 0; r < k; r++) {
            int32_t *w = win + (size_t)r * LANES;
            for (int l = 0; l < LANES; l++) {
                int32_t cur = w[l], nxt = w[LANES + l];
                int32_t a = cur < old[l] ? cur : nxt;
                int32_t m = a < nw[l] ? a : nw[l];
                w[l] = pa[l] > m ? pa[l] : m;
                pa[l] = a;
            }
        }
        if (t + 1 >= (size_t)k) {
            int32_t med[LANES];
            for (int l = 0; l < LANES; l++)
                med[l] = med_key(win[(size_t)h * LANES + (size_t)l]);
            memcpy(dst + (t + 1 - (size_t)k) * dst_stride, med, sizeof med);
        }
    }
}

#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static inline __m256i key8(__m256i x)
{
    return _mm256_xor_si256(x, _mm256_srli_epi32(_mm256_srai_epi32(x, 31), 1));
}

__attribute__((target("avx2"))) static void lanes_avx2(const float *src, const size_t *roff, size_t n_out,
                                                       int k, float *dst, size_t dst_stride, int32_t *win)
{
    const size_t steps = n_out + (size_t)k - 1;
    const int h = k / 2;
    const __m256i vmax = _mm256_set1_epi32(INT32_MAX), vmin = _mm256_set1_epi32(INT32_MIN);
    for (int r = 0; r <= k; r++) {
        _mm256_store_si256((__m256i *)(win + (size_t)r * LANES), vmax);
        _mm256_store_si256((__m256i *)(win + (size_t)r * LANES + 8), vmax);
    }
    for (size_t t = 0; t < steps; t++) {
        if (t + MED_PREFETCH < steps) { /* rows a page apart: the hardware prefetchers miss them */
            const char *q = (const char *)(src + roff[t + MED_PREFETCH]);
            _mm_prefetch(q, _MM_HINT_T0);
            _mm_prefetch(q + LANES * sizeof(float) - 1, _MM_HINT_T0);
        }
        const float *pn = src + roff[t];
        const __m256i n0 = key8(_mm256_loadu_si256((const __m256i *)pn));
        const __m256i n1 = key8(_mm256_loadu_si256((const __m256i *)(pn + 8)));
        __m256i o0 = vmax, o1 = vmax;
        if (t >= (size_t)k) {
            const float *po = src + roff[t - (size_t)k];
            o0 = key8(_mm256_loadu_si256((const __m256i *)po));
            o1 = key8(_mm256_loadu_si256((const __m256i *)(po + 8)));
        }
        __m256i c0 = _mm256_load_si256((const __m256i *)win);
        __m256i c1 = _mm256_load_si256((const __m256i *)(win + 8));
        __m256i p0 = vmin, p1 = vmin;
        int32_t *w = win;
        for (int r = 0; r < k; r++, w += LANES) {
            const __m256i x0 = _mm256_load_si256((const __m256i *)(w + LANES));
            const __m256i x1 = _mm256_load_si256((const __m256i *)(w + LANES + 8));
            const __m256i a0 = _mm256_blendv_epi8(x0, c0, _mm256_cmpgt_epi32(o0, c0));
            const __m256i a1 = _mm256_blendv_epi8(x1, c1, _mm256_cmpgt_epi32(o1, c1));
            _mm256_store_si256((__m256i *)w, _mm256_max_epi32(p0, _mm256_min_epi32(a0, n0)));
            _mm256_store_si256((__m256i *)(w + 8), _mm256_max_epi32(p1, _mm256_min_epi32(a1, n1)));
            p0 = a0;
            p1 = a1;
            c0 = x0;
            c1 = x1;
        }
        if (t + 1 >= (size_t)k) {
            float *d = dst + (t + 1 - (size_t)k) * dst_stride;
            const int32_t *m = win + (size_t)h * LANES;
            _mm256_storeu_si256((__m256i *)d, key8(_mm256_load_si256((const __m256i *)m)));
            _mm256_storeu_si256((__m256i *)(d + 8), key8(_mm256_load_si256((const __m256i *)(m + 8))));
        }
    }
}

/* The same pass with the 16 lanes in one AVX-512 register: half the
 * instructions per rank (cmpgt into a mask, blend, min, max). Integer keys:
 * the same bits as the AVX2 and portable passes. */
__attribute__((target("avx512f"))) static inline __m512i key16(__m512i x)
{
    return _mm512_xor_si512(x, _mm512_srli_epi32(_mm512_srai_epi32(x, 31), 1));
}

__attribute__((target("avx512f"))) static void lanes_avx512(const float *src, const size_t *roff, size_t n_out,
                                                            int k, float *dst, size_t dst_stride, int32_t *win)
{
    const size_t steps = n_out + (size_t)k - 1;
    const int h = k / 2;
    const __m512i vmax = _mm512_set1_epi32(INT32_MAX), vmin = _mm512_set1_epi32(INT32_MIN);
    for (int r = 0; r <= k; r++)
        _mm512_store_si512((void *)(win + (size_t)r * LANES), vmax);
    for (size_t t = 0; t < steps; t++) {
        if (t + MED_PREFETCH < steps) { /* rows a page apart: the hardware prefetchers miss them */
            const char *q = (const char *)(src + roff[t + MED_PREFETCH]);
            _mm_prefetch(q, _MM_HINT_T0);
            _mm_prefetch(q + LANES * sizeof(float) - 1, _MM_HINT_T0);
        }
        const __m512i nw = key16(_mm512_loadu_si512((const void *)(src + roff[t])));
        const __m512i old = t >= (size_t)k ? key16(_mm512_loadu_si512((const void *)(src + roff[t - (size_t)k])))
                                           : vmax;
        __m512i c = _mm512_load_si512((const void *)win), p = vmin;
        int32_t *w = win;
        for (int r = 0; r < k; r++, w += LANES) {
            const __m512i x = _mm512_load_si512((const void *)(w + LANES));
            const __m512i a = _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(old, c), x, c);
            _mm512_store_si512((void *)w, _mm512_max_epi32(p, _mm512_min_epi32(a, nw)));
            p = a;
            c = x;
        }
        if (t + 1 >= (size_t)k)
            _mm512_storeu_si512((void *)(dst + (t + 1 - (size_t)k) * dst_stride),
                                key16(_mm512_load_si512((const void *)(win + (size_t)h * LANES))));
    }
}
#endif

static lanes_fn pick_lanes(void)
{
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx512())
        return lanes_avx512;
    if (sl_cpu_simd_avx2())
        return lanes_avx2;
#endif
    return lanes_portable;
}

/* Scratch of one call: row offsets, the window, and (freq, or fewer than 16
 * lines) a [len][16] input and output staging area. */
typedef struct {
    size_t *roff;
    int32_t *win;
    float *tin, *tout;
} med_scratch;

static void scratch_free(med_scratch *s)
{
    free(s->roff);
    free(s->win);
    free(s->tin);
    free(s->tout);
}

static int scratch_alloc(med_scratch *s, size_t line_len, int kernel, int staged)
{
    memset(s, 0, sizeof *s);
    const size_t steps = line_len + (size_t)kernel - 1;
    s->roff = malloc(steps * sizeof *s->roff);
    s->win = aligned_alloc(64, (size_t)(kernel + 1) * LANES * sizeof(int32_t));
    if (staged) {
        s->tin = aligned_alloc(64, line_len * LANES * sizeof(float));
        s->tout = aligned_alloc(64, line_len * LANES * sizeof(float));
    }
    if (!s->roff || !s->win || (staged && (!s->tin || !s->tout))) {
        scratch_free(s);
        return sl_seterr(SL_ENOMEM, "median filter: out of memory");
    }
    return 0;
}

/* Groups of LANES lines split over the context's threads. Line groups are
 * independent except the last one, which overlaps its neighbour when the line
 * count is not a multiple of LANES: ranges are cut over the other groups and
 * the last one goes with the range that holds its neighbour, so no two threads
 * write the same line. Each range has its own scratch. */
typedef struct {
    size_t batch, T, F, groups, parts;
    int kernel, freq;
    const float *in;
    float *out;
    lanes_fn run;
    atomic_int failed;
} med_job;

static void med_range(size_t groups, size_t lines, size_t parts, size_t k, size_t *lo, size_t *hi)
{
    const size_t cut = groups > 1 && lines % LANES ? groups - 1 : groups;
    sl_pool_range(cut, parts, k, lo, hi);
    if (*hi == cut && *lo < *hi)
        *hi = groups;
}

static void med_time_part(med_job *j, size_t b, size_t g0, size_t g1)
{
    const size_t T = j->T, F = j->F, plane = T * F;
    const int h = j->kernel / 2, staged = F < LANES;
    med_scratch s;
    if (scratch_alloc(&s, T, j->kernel, staged) < 0) {
        atomic_store(&j->failed, 1);
        return;
    }
    const size_t row = staged ? LANES : F; /* distance between frames in the source */
    for (size_t t = 0; t < T + (size_t)j->kernel - 1; t++)
        s.roff[t] = reflect_index((ptrdiff_t)t - h, T) * row;
    const float *src = j->in + b * plane;
    float *dst = j->out + b * plane;
    if (staged) { /* fewer bins than lanes: repeat the last bin */
        for (size_t t = 0; t < T; t++)
            for (size_t l = 0; l < LANES; l++)
                s.tin[t * LANES + l] = src[t * F + (l < F ? l : F - 1)];
        j->run(s.tin, s.roff, T, j->kernel, s.tout, LANES, s.win);
        for (size_t t = 0; t < T; t++)
            memcpy(dst + t * F, s.tout + t * LANES, F * sizeof(float));
    } else {
        for (size_t g = g0; g < g1; g++) {
            const size_t f0 = g * LANES + LANES > F ? F - LANES : g * LANES; /* last group overlaps */
            j->run(src + f0, s.roff, T, j->kernel, dst + f0, F, s.win);
        }
    }
    scratch_free(&s);
}

/* The frequency filter's 16 lines side by side and back: rows[l][f] <-> t[f * LANES + l]
 * (pure moves: the same bits on every path). AVX2: 8 x 8 blocks transposed in registers
 * instead of a store (or load) 16 floats apart per value. */
#ifdef SL_CPU_HAVE_AVX2_PATHS
__attribute__((target("avx2"))) static inline void transpose8(__m256 r[8])
{
    const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
    const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* Returns the columns done (a multiple of 8). */
__attribute__((target("avx2"))) static size_t gather_avx2(const float *const *rows, size_t F, float *t)
{
    size_t f = 0;
    for (; f + 8 <= F; f += 8)
        for (size_t h = 0; h < LANES; h += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(rows[h + (size_t)i] + f);
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_storeu_ps(t + (f + (size_t)i) * LANES + h, r[i]);
        }
    return f;
}

__attribute__((target("avx2"))) static size_t scatter_avx2(const float *t, size_t F, float *const *rows)
{
    size_t f = 0;
    for (; f + 8 <= F; f += 8)
        for (size_t h = 0; h < LANES; h += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = _mm256_loadu_ps(t + (f + (size_t)i) * LANES + h);
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_storeu_ps(rows[h + (size_t)i] + f, r[i]);
        }
    return f;
}
#endif

static void lanes_gather(const float *const *rows, size_t F, float *t)
{
    size_t f0 = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (sl_cpu_simd_avx2())
        f0 = gather_avx2(rows, F, t);
#endif
    for (size_t l = 0; l < LANES; l++)
        for (size_t f = f0; f < F; f++)
            t[f * LANES + l] = rows[l][f];
}

/* The first n (<= LANES) lines back into rows. */
static void lanes_scatter(const float *t, size_t F, size_t n, float *const *rows)
{
    size_t f0 = 0;
#ifdef SL_CPU_HAVE_AVX2_PATHS
    if (n == LANES && sl_cpu_simd_avx2())
        f0 = scatter_avx2(t, F, rows);
#endif
    for (size_t l = 0; l < n; l++)
        for (size_t f = f0; f < F; f++)
            rows[l][f] = t[f * LANES + l];
}

static void med_freq_part(med_job *j, size_t b, size_t g0, size_t g1)
{
    const size_t T = j->T, F = j->F, plane = T * F;
    const int h = j->kernel / 2;
    med_scratch s;
    if (scratch_alloc(&s, F, j->kernel, 1) < 0) {
        atomic_store(&j->failed, 1);
        return;
    }
    for (size_t f = 0; f < F + (size_t)j->kernel - 1; f++)
        s.roff[f] = reflect_index((ptrdiff_t)f - h, F) * LANES;
    const float *src = j->in + b * plane;
    float *dst = j->out + b * plane;
    const size_t n_valid = T < LANES ? T : LANES;
    for (size_t g = g0; g < g1; g++) {
        /* lanes = frames t0 .. t0+15 (the last group overlaps the previous one; the last
         * frame repeated when T < 16) */
        const size_t t0 = T >= LANES && g * LANES + LANES > T ? T - LANES : g * LANES;
        const float *rows[LANES];
        float *outs[LANES];
        for (size_t l = 0; l < LANES; l++) {
            rows[l] = src + (t0 + (l < n_valid ? l : n_valid - 1)) * F;
            outs[l] = dst + (t0 + l) * F;
        }
        lanes_gather(rows, F, s.tin);
        j->run(s.tin, s.roff, F, j->kernel, s.tout, LANES, s.win);
        lanes_scatter(s.tout, F, n_valid, outs);
    }
    scratch_free(&s);
}

static void med_body(void *v, size_t i, int tid)
{
    (void)tid;
    med_job *j = v;
    const size_t b = i / j->parts, part = i % j->parts;
    size_t lo, hi;
    med_range(j->groups, j->freq ? j->T : j->F, j->parts, part, &lo, &hi);
    if (lo >= hi)
        return;
    if (j->freq)
        med_freq_part(j, b, lo, hi);
    else
        med_time_part(j, b, lo, hi);
}

static int med_run(sl_op_ctx *ctx, int freq, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                   const float *in, float *out)
{
    const size_t T = n_frames, F = n_bins;
    if (kernel == 1) {
        memcpy(out, in, batch * T * F * sizeof(float));
        return 0;
    }
    const size_t lines = freq ? T : F;
    const size_t groups = lines < LANES ? 1 : (lines + LANES - 1) / LANES;
    size_t parts = (size_t)sl_pool_threads(ctx->pool);
    if (batch >= parts || T * F * (size_t)kernel < ((size_t)1 << 16))
        parts = 1; /* whole items per thread, or too little work to split */
    if (parts > groups)
        parts = groups;
    med_job j = {batch, T, F, groups, parts, kernel, freq, in, out, pick_lanes(), 0};
    sl_pool_for(ctx->pool, batch * parts, med_body, &j);
    if (atomic_load(&j.failed))
        return sl_seterr(SL_ENOMEM, "median filter: out of memory");
    return 0;
}

int sl_cpu_median_time(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out)
{
    return med_run(ctx, 0, batch, n_frames, n_bins, kernel, in, out);
}

int sl_cpu_median_freq(sl_op_ctx *ctx, size_t batch, size_t n_frames, size_t n_bins, int kernel,
                       const float *in, float *out)
{
    return med_run(ctx, 1, batch, n_frames, n_bins, kernel, in, out);
}
