/* Exact cosine top-k search over the shards of an index, on the CPU (BLAS) and
 * on an op backend (kernels/ops.h); see search.h for the contract. */
#include "pipeline/search.h"
#include "pipeline/search_impl.h"

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/npy.h"
#include "common/sl_pool.h"
#include "pipeline/search_dot.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- top k */

typedef sl_scan_cand cand;

/* a ranks below b: lower score, or the same score later in row order */
static int cand_worse(const cand *a, const cand *b)
{
    return a->score < b->score || (a->score == b->score && a->global > b->global);
}

static void cand_sift_down(cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && cand_worse(&h[l], &h[w]))
            w = l;
        if (r < n && cand_worse(&h[r], &h[w]))
            w = r;
        if (w == i)
            return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void cand_push(cand *h, size_t *n, size_t k, const cand *c)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = *c;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (!cand_worse(&h[i], &h[p]))
                break;
            cand t = h[i];
            h[i] = h[p];
            h[p] = t;
            i = p;
        }
    } else if (cand_worse(&h[0], c)) {
        h[0] = *c;
        cand_sift_down(h, *n, 0);
    }
}

/* min-heap of floats: the k best BLAS scores seen, for the admission threshold */
static void fheap_push(float *h, size_t *n, size_t k, float x)
{
    if (*n < k) {
        size_t i = (*n)++;
        h[i] = x;
        while (i > 0) {
            size_t p = (i - 1) / 2;
            if (h[p] <= h[i])
                break;
            float t = h[i];
            h[i] = h[p];
            h[p] = t;
            i = p;
        }
        return;
    }
    if (x <= h[0])
        return;
    h[0] = x;
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && h[l] < h[m])
            m = l;
        if (r < *n && h[r] < h[m])
            m = r;
        if (m == i)
            return;
        float t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int cand_rank_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->global > y->global) - (x->global < y->global);
}

/* The exact score: double-precision dot product (and norm), fixed order. */
static double exact_score(const float *q, const float *row, size_t dim, int divide)
{
    double dot = 0, ss = 0;
    for (size_t i = 0; i < dim; i++)
        dot += (double)q[i] * (double)row[i];
    if (!isfinite(dot))
        return -INFINITY;
    if (!divide)
        return dot;
    for (size_t i = 0; i < dim; i++)
        ss += (double)row[i] * (double)row[i];
    if (!isfinite(ss))
        return -INFINITY;
    return ss > 0 ? dot / sqrt(ss) : 0.0;
}

/* A proven bound on |float score - exact score| (float rounding of a dot product
 * of length dim in any summation order, FMA or not, plus the division by the row
 * norm or the scaling of the row by its inverse norm), with a factor of 2 to
 * spare: a row that may still be in the top k is never turned away, so neither
 * the block size nor the backend changes the result. */
static double search_eps(size_t dim)
{
    const double u = 1.0 / 16777216.0;
    return (double)(float)(2.0 * ((double)dim * u / (1.0 - (double)dim * u) + 8.0 * u));
}

/* Q[q] = queries[q] / |queries[q]| (double norm, rounded to float); 0 for a zero
 * or non-finite query. */
static void normalise_queries(const float *queries, size_t nq, size_t dim, float *Q)
{
    for (size_t q = 0; q < nq; q++) {
        const float *x = queries + q * dim;
        double ss = 0;
        for (size_t i = 0; i < dim; i++)
            ss += (double)x[i] * x[i];
        double nrm = sqrt(ss);
        for (size_t i = 0; i < dim; i++)
            Q[q * dim + i] = nrm > 0 && isfinite(nrm) ? (float)(x[i] / nrm) : 0.0f;
    }
}

/* Maps shard s read-only (checking it has not changed size since it was opened).
 * 0 or a negative code with the path in sl_lasterr(); *base = MAP_FAILED on error. */
static int shard_map(const shard *s, unsigned char **base)
{
    *base = MAP_FAILED;
    int fd = open(s->npy, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    if ((size_t)st.st_size != s->file_size) {
        close(fd);
        return sl_seterr(SL_EFORMAT, "%s changed while it was searched (re-run the search)", s->npy);
    }
    unsigned char *b = mmap(NULL, s->file_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (b == MAP_FAILED) {
        int e = errno;
        return sl_seterr(-e, "%s: mmap: %s", s->npy, strerror(e));
    }
    madvise(b, s->file_size, MADV_SEQUENTIAL);
#ifdef MADV_HUGEPAGE
    madvise(b, s->file_size, MADV_HUGEPAGE); /* see sl_scan_mmap_read */
#endif
    *base = b;
    return 0;
}

void *sl_scan_mmap_read(int fd, size_t len, size_t off)
{
#if defined(MADV_HUGEPAGE) && defined(MADV_POPULATE_READ)
    void *b = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, (off_t)off);
    if (b == MAP_FAILED)
        return b;
    madvise(b, len, MADV_HUGEPAGE);
    if (madvise(b, len, MADV_POPULATE_READ) == 0 || errno != EINVAL)
        return b; /* a failure other than "not supported" shows as a fault of the reader, as before */
    munmap(b, len);
#endif
    return mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)off);
}

int sl_scan_read_head(int fd, size_t file_size, void *buf, size_t n)
{
    const size_t len = file_size < ((size_t)2 << 20) ? file_size : ((size_t)2 << 20);
    void *b = n <= len ? mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
    if (b == MAP_FAILED)
        return pread(fd, buf, n, 0) == (ssize_t)n ? 0 : -1;
#ifdef MADV_HUGEPAGE
    madvise(b, len, MADV_HUGEPAGE);
#endif
    memcpy(buf, b, n);
    munmap(b, len);
    return 0;
}

/* Maps the pages of rows [r0, r0 + m) of a mapped shard in one call rather than
 * one fault at a time (best effort: older kernels refuse, and faults do the same). */
static void shard_populate(const shard *s, unsigned char *base, size_t r0, size_t m, size_t rowb, size_t page)
{
#ifdef MADV_POPULATE_READ
    size_t a0 = (s->data_off + r0 * rowb) / page * page;
    madvise(base + a0, s->data_off + (r0 + m) * rowb - a0, MADV_POPULATE_READ);
#else
    (void)s, (void)base, (void)r0, (void)m, (void)rowb, (void)page;
#endif
}

/* ---------------------------------------------------------------- on the CPU
 * Work items are blocks of rows of one shard; the threads of the scan take them
 * in turn, each with its own bounded heaps (float admission threshold and exact
 * candidates per query) and its own mapping of the block's pages (unmapped
 * after the block: memory stays bounded by the threads' blocks). Each thread's
 * candidates hold the exact top k of the rows it scanned (a row is turned away
 * only when it cannot be in that top k), so the top k of their union is the
 * exact top k, whatever the number of threads or the order they ran in. */

typedef sl_scan_item scan_item;
typedef sl_scan_thread scan_thread;
typedef sl_scan_job scan_job;

unsigned char *sl_scan_map_rows(scan_thread *T, const char *path, size_t file_size, size_t off, size_t bytes,
                                size_t page, size_t *len, const unsigned char **src)
{
    const size_t a0 = off / page * page;
    *len = off + bytes - a0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        T->rc = -e;
        snprintf(T->err, sizeof T->err, "%s: %s", path, strerror(e));
        return NULL;
    }
    if ((size_t)st.st_size != file_size) {
        close(fd);
        T->rc = SL_EFORMAT;
        snprintf(T->err, sizeof T->err, "%s changed while it was searched (re-run the search)", path);
        return NULL;
    }
    unsigned char *base = sl_scan_mmap_read(fd, *len, a0);
    close(fd);
    if (base == MAP_FAILED) {
        T->rc = -errno;
        snprintf(T->err, sizeof T->err, "%s: mmap: %s", path, strerror(-T->rc));
        return NULL;
    }
    *src = base + (off - a0);
    return base;
}

/* 1 when float score sb of a row for query q may be in the top k (within the
 * rounding bound of the heap's k-th float score); admitted finite scores join the heap. */
static int admit(const scan_job *J, scan_thread *T, size_t q, float sb)
{
    float *h = T->fh + q * J->kk;
    if (T->fn[q] == J->kk && isfinite(sb) && sb < h[0] - 2 * J->eps)
        return 0;
    if (isfinite(sb))
        fheap_push(h, &T->fn[q], J->kk, sb);
    return 1;
}

int sl_scan_admit_bounds(const scan_job *J, scan_thread *T, size_t q, double lo, double hi)
{
    /* a heap entry x stands for a row whose exact score is >= x - eps (admit's
     * invariant): the row is turned away when it is below such k rows */
    float *h = T->fh + q * J->kk;
    if (T->fn[q] == J->kk && hi + (double)J->eps < (double)h[0])
        return 0;
    const double x = lo + (double)J->eps;
    float f = (float)x;
    if ((double)f > x)
        f = nextafterf(f, -INFINITY);
    fheap_push(h, &T->fn[q], J->kk, f);
    return 1;
}

void sl_scan_rescore(const scan_job *J, scan_thread *T, const scan_item *w, const shard *s, size_t row, size_t q,
                     int *fd, int *have)
{
    const size_t dim = J->dim;
    if (!*have) {
        if (*fd < 0 && (*fd = open(s->npy, O_RDONLY | O_CLOEXEC)) < 0) {
            T->rc = -errno;
            snprintf(T->err, sizeof T->err, "%s: %s", s->npy, strerror(-T->rc));
            return;
        }
        if (pread(*fd, T->rbytes, dim * 4, (off_t)(s->data_off + row * dim * 4)) != (ssize_t)(dim * 4)) {
            T->rc = SL_EFORMAT;
            snprintf(T->err, sizeof T->err, "%s: short read at row %zu", s->npy, row);
            return;
        }
        sl_npy_unpack(T->rbytes, T->row32, dim, 0);
        *have = 1;
    }
    cand c = {exact_score(J->Q + q * dim, T->row32, dim, J->divide), s->first + row, w->shard, row};
    cand_push(T->ch + q * J->kk, &T->cn[q], J->kk, &c);
}

/* A block of a shard through its float16 copy: the copy's rows (unit rows, or the
 * rows themselves when they are trusted to be unit length) are widened in chunks
 * that stay in cache and scored; an admitted row is read from the float32 shard
 * (pread) and scored exactly, so the candidates are those of the float32 scan. */
static void scan_block16(const scan_job *J, scan_thread *T, const scan_item *w, const shard *s)
{
    const size_t dim = J->dim, nq = J->nq, rowb = dim * 2;
    const size_t chunk = dim < 4096 / 8 ? 4096 / dim : 8;
    size_t len = 0;
    const unsigned char *src;
    unsigned char *base = NULL;
    if (s->keep && s->keep16)
        src = s->keep + s->data_off16 + w->r0 * rowb;
    else if (!(base = sl_scan_map_rows(T, s->npy16, s->file_size16, s->data_off16 + w->r0 * rowb, w->m * rowb,
                                       J->page, &len, &src)))
        return;
    int fd = -1;
    for (size_t c0 = 0; c0 < w->m && !T->rc; c0 += chunk) {
        const size_t cm = w->m - c0 < chunk ? w->m - c0 : chunk;
        sl_search_f16_to_f32(J->isa, src + c0 * rowb, cm * dim, T->fbuf);
        sl_search_dot(J->isa, T->fbuf, cm, dim, J->Q, nq, T->S);
        for (size_t r = 0; r < cm && !T->rc; r++) {
            const size_t row = w->r0 + c0 + r;
            int have = 0;
            for (size_t q = 0; q < nq && !T->rc; q++)
                if (admit(J, T, q, T->S[r * nq + q]))
                    sl_scan_rescore(J, T, w, s, row, q, &fd, &have);
        }
    }
    if (fd >= 0)
        close(fd);
    if (base)
        munmap(base, len);
}

static void scan_block(void *arg, size_t it, int tid)
{
    scan_job *J = arg;
    scan_thread *T = &J->th[tid];
    if (T->rc)
        return;
    const scan_item *w = &J->items[it];
    const shard *s = &J->ix->sh[w->shard];
    if (J->use8 && s->has8) {
        sl_scan_block8(J, T, w, s);
        return;
    }
    if (J->use16 && s->has16) {
        scan_block16(J, T, w, s);
        return;
    }
    const size_t dim = J->dim, nq = J->nq, kk = J->kk, isz = s->f16 ? 2 : 4, rowb = dim * isz;
    /* map the pages of rows [r0, r0 + m) only */
    size_t len = 0;
    const unsigned char *src;
    unsigned char *base = NULL;
    if (s->keep && !s->keep16 && !s->keep8)
        src = s->keep + s->data_off + w->r0 * rowb;
    else if (!(base = sl_scan_map_rows(T, s->npy, s->file_size, s->data_off + w->r0 * rowb, w->m * rowb, J->page, &len, &src)))
        return;
    const float *B;
    if (!s->f16 && (uintptr_t)src % sizeof(float) == 0) {
        B = (const float *)(const void *)src;
    } else if (s->f16) {
        sl_search_f16_to_f32(J->isa, src, w->m * dim, T->fbuf);
        B = T->fbuf;
    } else {
        memcpy(T->fbuf, src, w->m * rowb);
        B = T->fbuf;
    }
    sl_search_dot(J->isa, B, w->m, dim, J->Q, nq, T->S);
    if (J->divide)
        for (size_t r = 0; r < w->m; r++) {
            const float *row = B + r * dim;
            double ss = 0;
            for (size_t i = 0; i < dim; i++)
                ss += (double)row[i] * row[i];
            T->inv[r] = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
        }
    for (size_t r = 0; r < w->m; r++) {
        for (size_t q = 0; q < nq; q++) {
            float sb = T->S[r * nq + q];
            if (J->divide)
                sb *= T->inv[r];
            if (!admit(J, T, q, sb))
                continue;
            cand c = {exact_score(J->Q + q * dim, B + r * dim, dim, J->divide), s->first + w->r0 + r, w->shard,
                      w->r0 + r};
            cand_push(T->ch + q * kk, &T->cn[q], kk, &c);
        }
    }
    if (base)
        munmap(base, len);
}

/* The admission bound for rows scanned through their float16 copy h of the row v
 * that the exact score uses (v = the row, or the row over its norm): with |Q| <= qn,
 * |float(Q.h) - Q.v| <= |float(Q.h) - Q.h| + |Q.(h - v)|
 *                   <= gamma_dim |Q| |h| + |Q| |h - v| <= qn (gamma_dim (norm + err) + err),
 * where err >= |h - v| and norm >= |v| over the shard's rows (measured in double when
 * the copy was written), plus a margin for the double rounding of the exact score
 * and of v itself; with a factor of 2 to spare, as search_eps. Never below search_eps. */
static float search_eps16(const sl_vindex *ix, size_t dim, int *any)
{
    const double u = 1.0 / 16777216.0, g = (double)dim * u / (1.0 - (double)dim * u), qn = 1.0 + 1.0 / 1048576.0;
    double e = search_eps(dim);
    *any = 0;
    for (size_t i = 0; i < ix->n; i++) {
        const shard *s = &ix->sh[i];
        if (!s->has16)
            continue;
        *any = 1;
        e = fmax(e, 2.0 * (qn * (g * (s->norm16 + s->err16) + s->err16) + 1e-9 * (1.0 + s->norm16)));
    }
    float f = (float)e;
    return (double)f < e ? nextafterf(f, INFINITY) : f;
}

int sl_vindex_search(sl_vindex *ix, const float *queries, size_t nq, size_t k, size_t block_rows,
                     sl_search_hit *hits, size_t *n_hits)
{
    *n_hits = 0;
    if (!ix || (!queries && nq) || (!hits && nq && k))
        return sl_seterr(SL_EINVAL, "search: no index, queries or result array");
    if (nq == 0 || k == 0)
        return 0;
    size_t dim = (size_t)ix->dim;
    size_t kk = k < ix->rows ? k : ix->rows;
    if (kk == 0)
        return 0;
    if (block_rows == 0)
        block_rows = SL_SEARCH_DEFAULT_BLOCK_ROWS;
    if (nq > INT_MAX / 2 || dim > INT_MAX || block_rows > INT_MAX || block_rows > SIZE_MAX / 8 / (dim + nq + 1))
        return sl_seterr(SL_EINVAL, "search: %zu queries in blocks of %zu rows of dim %zu are too large", nq,
                         block_rows, dim);
    int threads = ix->threads > 0 ? ix->threads : 1;
    size_t n_items = 0;
    for (size_t si = 0; si < ix->n; si++)
        n_items += (ix->sh[si].rows + block_rows - 1) / block_rows;
    if ((size_t)threads > n_items)
        threads = n_items ? (int)n_items : 1;
    scan_job J = {.ix = ix, .nq = nq, .kk = kk, .dim = dim, .block_rows = block_rows, .divide = !ix->rows_normalized,
                  .eps = (float)search_eps(dim), .isa = sl_search_dot_isa(), .page = (size_t)sysconf(_SC_PAGESIZE)};
    if (!ix->copy16.off) {
        int rc16 = sl_scan_copy_prepare(ix, &sl_scan_copy_f16);
        if (rc16)
            return rc16;
        J.eps = search_eps16(ix, dim, &J.use16);
    }
    if (!ix->copy8.off) {
        int rc8 = sl_scan_copy_prepare(ix, &sl_scan_copy_i8);
        if (rc8)
            return rc8;
        for (size_t i = 0; i < ix->n; i++)
            J.use8 |= ix->sh[i].has8;
    }
    int rck = sl_vindex_keep_check(ix);
    if (rck)
        return rck;
    float *Q = malloc(nq * dim * sizeof *Q);
    scan_item *items = malloc((n_items ? n_items : 1) * sizeof *items);
    scan_thread *th = calloc((size_t)threads, sizeof *th);
    cand *all = malloc((size_t)threads * kk * sizeof *all);
    sl_pool *pool = NULL;
    int rc = 0;
    if (!Q || !items || !th || !all) {
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
        goto out;
    }
    for (int t = 0; t < threads && !rc; t++) {
        scan_thread *T = &th[t];
        T->S = malloc(block_rows * nq * sizeof *T->S);
        T->inv = J.divide ? malloc(block_rows * sizeof *T->inv) : NULL;
        T->fbuf = malloc(block_rows * dim * sizeof *T->fbuf); /* float16 rows converted, or unaligned rows */
        T->row32 = malloc(dim * sizeof *T->row32);               /* a row rescored through the float16 copy */
        T->rbytes = malloc(dim * 4);
        T->fh = malloc(nq * kk * sizeof *T->fh);
        T->fn = calloc(nq, sizeof *T->fn);
        T->cn = calloc(nq, sizeof *T->cn);
        T->ch = malloc(nq * kk * sizeof *T->ch);
        if (J.use8) {
            T->D = malloc(SL_SCAN_I8_CHUNK * nq * 2 * sizeof *T->D);
            T->meta8 = malloc(block_rows * SL_SCAN_I8_META);
        }
        if (!T->S || (J.divide && !T->inv) || !T->fbuf || !T->fh || !T->fn || !T->cn || !T->ch || !T->row32 ||
            !T->rbytes || (J.use8 && (!T->D || !T->meta8)))
            rc = sl_seterr(SL_ENOMEM, "search: out of memory for blocks of %zu rows", block_rows);
    }
    if (!rc && threads > 1)
        rc = sl_pool_create(&pool, threads);
    if (rc)
        goto out;
    normalise_queries(queries, nq, dim, Q);
    J.Q = Q;
    if (J.use8 && (rc = sl_scan_q8_setup(&J)) != 0)
        goto out;
    n_items = 0;
    for (size_t si = 0; si < ix->n; si++)
        for (size_t r0 = 0; r0 < ix->sh[si].rows; r0 += block_rows)
            items[n_items++] = (scan_item){si, r0, ix->sh[si].rows - r0 < block_rows ? ix->sh[si].rows - r0 : block_rows};
    J.Q = Q, J.items = items, J.th = th;
    sl_pool_for(pool, n_items, scan_block, &J);
    for (int t = 0; t < threads && !rc; t++)
        if (th[t].rc)
            rc = sl_seterr(th[t].rc, "%s", th[t].err);
    if (!rc) {
        for (size_t q = 0; q < nq; q++) {
            size_t n = 0;
            for (int t = 0; t < threads; t++) {
                memcpy(all + n, th[t].ch + q * kk, th[t].cn[q] * sizeof *all);
                n += th[t].cn[q];
            }
            if (n > 1)
                qsort(all, n, sizeof *all, cand_rank_cmp);
            for (size_t j = 0; j < kk && j < n; j++) {
                sl_search_hit *h = &hits[q * k + j];
                memset(h, 0, sizeof *h);
                h->score = all[j].score;
                h->shard = all[j].shard;
                h->row = all[j].row;
                h->global = all[j].global;
            }
        }
        *n_hits = kk;
    }
out:
    sl_pool_destroy(pool);
    for (int t = 0; th && t < threads; t++) {
        free(th[t].S);
        free(th[t].inv);
        free(th[t].fbuf);
        free(th[t].row32);
        free(th[t].rbytes);
        free(th[t].fh);
        free(th[t].fn);
        free(th[t].cn);
        free(th[t].ch);
        free(th[t].D);
        free(th[t].meta8);
    }
    sl_scan_q8_free(&J);
    free(th);
    free(all);
    free(items);
    free(Q);
    return rc;
}

/* ---------------------------------------------------------------- on an op backend
 * The same exact result through the op layer (kernels/ops.h), so that a GPU does
 * the scanning: blocks of rows (across shard boundaries) are converted to float
 * on the host (float16 widened; rows divided by their norms unless trusted to be
 * unit length) into one of two staging buffers, uploaded, scored by ONE gemm
 * (queries x block^T) and merged by the topk op into a running top K per query
 * that stays in backend memory; only the final K per query come back. The host
 * fills the next block while the device works on the current one (a sync before
 * each upload frees the other staging buffer).
 *
 * The K candidates of a query are then rescored in double (exact_score, as the
 * CPU path), ranked by (score, row order), and the first k kept. That is the
 * exact top k when a certificate holds: every row not among the K has a float
 * score <= t (the K-th float score), so an exact score <= t + eps; if
 * t + eps < (k-th exact score) no such row can rank in the top k. Rows whose
 * float score is NaN or -inf hold a non-finite value (their exact score is
 * -inf), so they are below any finite k-th score (and a zero query scores
 * exactly 0 everywhere, so its float ranking is the exact one). K starts at
 * k + max(k, 32); a query whose certificate fails (more near-ties at its k-th
 * score than K covers: duplicate or near-duplicate vectors) is searched again
 * with K x 8, up to the block size, and past that by the CPU path. Scores and
 * neighbours are therefore those of sl_vindex_search, bit for bit, whatever the
 * backend, the block size or the float rounding of the device. */

typedef struct {
    sl_op_ctx *ctx;
    size_t dim, np, K, bk;  /* queries in this pass, kept per query, rows per block */
    float *dQ, *dB, *dS, *dTs;
    int64_t *dTi;
    float *stage[2];        /* host staging (page-locked on CUDA) */
    int cur;
    size_t queued;          /* blocks queued so far in this pass */
    uint64_t next_global;   /* global row of the current stage's first row */
} ops_run;

/* Queues the current stage (m rows): upload, gemm, topk. */
static int ops_flush(ops_run *o, size_t m)
{
    int rc = 0;
    /* the previous block's upload read the other stage: wait before it is refilled */
    if (o->queued && (rc = sl_op_sync(o->ctx)) != 0)
        return rc;
    if ((rc = sl_op_upload(o->ctx, o->dB, o->stage[o->cur], m * o->dim * sizeof(float))) != 0)
        return rc;
    sl_gemm_args g = {.batch = 1, .m = o->np, .n = m, .k = o->dim, .x = o->dQ, .ldx = o->dim, .w = o->dB,
                      .ldw = o->dim, .act = SL_ACT_NONE, .y = o->dS, .ldy = m};
    if ((rc = sl_op_gemm(o->ctx, &g)) != 0)
        return rc;
    sl_topk_args t = {.nq = o->np, .n = m, .k = o->K, .scores = o->dS, .ld = m, .base = (int64_t)o->next_global,
                      .reset = o->queued == 0, .top_score = o->dTs, .top_index = o->dTi};
    if ((rc = sl_op_topk(o->ctx, &t)) != 0)
        return rc;
    o->queued++;
    o->next_global += m;
    o->cur ^= 1;
    return 0;
}

/* One pass over the catalog for o->np queries (o->dQ uploaded): the K best
 * (float score, global row) per query into ts / ti (host, np x K). */
static int ops_pass(sl_vindex *ix, ops_run *o, int divide, float *ts, int64_t *ti)
{
    const size_t dim = o->dim, bk = o->bk;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t fill = 0;
    int rc = 0;
    o->queued = 0;
    o->next_global = 0;
    for (size_t si = 0; !rc && si < ix->n; si++) {
        shard *s = &ix->sh[si];
        if (s->rows == 0)
            continue;
        unsigned char *base;
        if ((rc = shard_map(s, &base)) != 0)
            break;
        const size_t isz = s->f16 ? 2 : 4, rowb = dim * isz;
        const int big = s->file_size / 4 > bk * rowb;
        size_t dropped = 0;
        for (size_t r0 = 0; !rc && r0 < s->rows;) {
            size_t m = s->rows - r0 < bk - fill ? s->rows - r0 : bk - fill;
            const unsigned char *src = base + s->data_off + r0 * rowb;
            float *dst = o->stage[o->cur] + fill * dim;
            shard_populate(s, base, r0, m, rowb, page);
            if (s->f16)
                for (size_t i = 0; i < m * dim; i++)
                    dst[i] = sl_f16_to_f32((unsigned short)(src[2 * i] | (src[2 * i + 1] << 8)));
            else
                memcpy(dst, src, m * rowb);
            if (divide)
                for (size_t r = 0; r < m; r++) {
                    float *row = dst + r * dim;
                    double ss = 0;
                    for (size_t i = 0; i < dim; i++)
                        ss += (double)row[i] * row[i];
                    const float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 0.0f;
                    for (size_t i = 0; i < dim; i++)
                        row[i] *= inv;
                }
            fill += m;
            r0 += m;
            if (fill == bk) {
                rc = ops_flush(o, fill);
                fill = 0;
            }
            size_t done = (s->data_off + r0 * rowb) / page * page;
            if (big && done > dropped) {
                madvise(base + dropped, done - dropped, MADV_DONTNEED);
                dropped = done;
            }
        }
        munmap(base, s->file_size);
    }
    if (!rc && fill)
        rc = ops_flush(o, fill);
    if (!rc)
        rc = sl_op_download(o->ctx, ts, o->dTs, o->np * o->K * sizeof *ts);
    if (!rc)
        rc = sl_op_download(o->ctx, ti, o->dTi, o->np * o->K * sizeof *ti);
    return rc;
}

/* The shard holding global row g: the last one starting at or before g (a shard
 * without rows starts where the next one does, so it is never the last). */
static size_t shard_of(const sl_vindex *ix, uint64_t g)
{
    size_t lo = 0, hi = ix->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->sh[mid].first <= g)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

typedef struct {
    uint64_t global;
    size_t slot; /* p * K + j */
} rescore_ref;

static int rescore_ref_cmp(const void *a, const void *b)
{
    const rescore_ref *x = a, *y = b;
    if (x->global != y->global)
        return x->global < y->global ? -1 : 1;
    return (x->slot > y->slot) - (x->slot < y->slot);
}

/* ex[p*K + j] = exact score of candidate ti[p*K + j] for query Qp[p]: each row
 * read once (pread, in row order), whatever the number of queries naming it. */
static int rescore(sl_vindex *ix, const float *Qp, size_t np, size_t K, const int64_t *ti, int divide, double *ex)
{
    const size_t dim = (size_t)ix->dim, nr = np * K;
    rescore_ref *refs = malloc(nr * sizeof *refs);
    unsigned char *bytes = malloc(dim * 4);
    float *row = malloc(dim * sizeof *row);
    int rc = 0, fd = -1;
    size_t fd_shard = SIZE_MAX;
    if (!refs || !bytes || !row) {
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nr; i++) {
        if (ti[i] < 0 || (uint64_t)ti[i] >= ix->rows) {
            rc = sl_seterr(SL_EDEVICE, "search: the topk op returned row %lld of %zu", (long long)ti[i], ix->rows);
            goto out;
        }
        refs[i].global = (uint64_t)ti[i];
        refs[i].slot = i;
    }
    if (nr > 1)
        qsort(refs, nr, sizeof *refs, rescore_ref_cmp);
    for (size_t i = 0; i < nr;) {
        const uint64_t g = refs[i].global;
        const size_t si = shard_of(ix, g);
        const shard *s = &ix->sh[si];
        const size_t r = (size_t)(g - s->first), isz = s->f16 ? 2 : 4;
        if (si != fd_shard) {
            if (fd >= 0)
                close(fd);
            fd_shard = si;
            if ((fd = open(s->npy, O_RDONLY | O_CLOEXEC)) < 0) {
                int e = errno;
                rc = sl_seterr(-e, "%s: %s", s->npy, strerror(e));
                goto out;
            }
        }
        if (pread(fd, bytes, dim * isz, (off_t)(s->data_off + r * dim * isz)) != (ssize_t)(dim * isz)) {
            rc = sl_seterr(SL_EFORMAT, "%s: short read at row %zu", s->npy, r);
            goto out;
        }
        for (size_t d = 0; d < dim; d++) {
            if (s->f16) {
                row[d] = sl_f16_to_f32((unsigned short)(bytes[2 * d] | (bytes[2 * d + 1] << 8)));
            } else {
                uint32_t x = (uint32_t)bytes[4 * d] | ((uint32_t)bytes[4 * d + 1] << 8) |
                             ((uint32_t)bytes[4 * d + 2] << 16) | ((uint32_t)bytes[4 * d + 3] << 24);
                memcpy(&row[d], &x, 4);
            }
        }
        for (; i < nr && refs[i].global == g; i++)
            ex[refs[i].slot] = exact_score(Qp + refs[i].slot / K * dim, row, dim, divide);
    }
out:
    if (fd >= 0)
        close(fd);
    free(refs);
    free(bytes);
    free(row);
    return rc;
}

int sl_vindex_search_on(sl_vindex *ix, sl_op_ctx *ctx, const float *queries, size_t nq, size_t k, size_t block_rows,
                        sl_search_hit *hits, size_t *n_hits)
{
    if (!ctx)
        return sl_vindex_search(ix, queries, nq, k, block_rows, hits, n_hits);
    *n_hits = 0;
    if (!ix || (!queries && nq) || (!hits && nq && k))
        return sl_seterr(SL_EINVAL, "search: no index, queries or result array");
    if (nq == 0 || k == 0)
        return 0;
    const size_t dim = (size_t)ix->dim, rows = ix->rows;
    const size_t kk = k < rows ? k : rows;
    if (kk == 0)
        return 0;
    if (block_rows == 0)
        block_rows = SL_SEARCH_DEFAULT_BLOCK_ROWS;
    if (nq > INT_MAX / 2 || dim > INT_MAX || block_rows > INT_MAX || block_rows > SIZE_MAX / 8 / (dim + nq + 1))
        return sl_seterr(SL_EINVAL, "search: %zu queries in blocks of %zu rows of dim %zu are too large", nq,
                         block_rows, dim);
    static const sl_op_id need[] = {SL_OP_GEMM, SL_OP_TOPK};
    int rc = sl_op_require(ctx, need, 2, "search");
    if (rc)
        return rc;
    const int divide = !ix->rows_normalized;
    const double eps = search_eps(dim);
    const size_t bk = block_rows < rows ? block_rows : rows;
    /* K: candidates kept per query; at most the block size (memory stays bounded by the block) */
    size_t K = kk + (kk > 32 ? kk : 32);
    if (K > rows)
        K = rows;
    const size_t Kmax = K > bk ? K : bk;
    if (K > ((size_t)1 << 30) || nq > ((size_t)1 << 40) / Kmax)
        return sl_seterr(SL_EINVAL, "search: %zu queries x %zu neighbours are too many for one search", nq, k);

    ops_run o = {.ctx = ctx, .dim = dim, .bk = bk};
    float *Q = malloc(nq * dim * sizeof *Q), *Qp = malloc(nq * dim * sizeof *Qp);
    size_t *pend = malloc(nq * sizeof *pend), np = nq;
    float *ts = NULL;
    int64_t *ti = NULL;
    double *ex = NULL;
    cand *cs = NULL;
    if (!Q || !Qp || !pend) {
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
        goto out;
    }
    normalise_queries(queries, nq, dim, Q);
    for (size_t q = 0; q < nq; q++)
        pend[q] = q;
    for (int h = 0; h < 2 && !rc; h++)
        rc = sl_op_host_alloc(ctx, (void **)&o.stage[h], bk * dim * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&o.dQ, nq * dim * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&o.dB, bk * dim * sizeof(float));
    if (!rc)
        rc = sl_op_alloc(ctx, (void **)&o.dS, nq * bk * sizeof(float));
    while (!rc && np > 0) {
        o.np = np;
        o.K = K;
        free(ts);
        free(ti);
        free(ex);
        free(cs);
        sl_op_free(ctx, o.dTs);
        sl_op_free(ctx, o.dTi);
        o.dTs = NULL;
        o.dTi = NULL;
        ts = malloc(np * K * sizeof *ts);
        ti = malloc(np * K * sizeof *ti);
        ex = malloc(np * K * sizeof *ex);
        cs = malloc(K * sizeof *cs);
        if (!ts || !ti || !ex || !cs) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory for %zu x %zu candidates", np, K);
            break;
        }
        if ((rc = sl_op_alloc(ctx, (void **)&o.dTs, np * K * sizeof(float))) != 0 ||
            (rc = sl_op_alloc(ctx, (void **)&o.dTi, np * K * sizeof(int64_t))) != 0)
            break;
        for (size_t p = 0; p < np; p++)
            memcpy(Qp + p * dim, Q + pend[p] * dim, dim * sizeof *Qp);
        if ((rc = sl_op_upload(ctx, o.dQ, Qp, np * dim * sizeof *Qp)) != 0 ||
            (rc = ops_pass(ix, &o, divide, ts, ti)) != 0 || (rc = rescore(ix, Qp, np, K, ti, divide, ex)) != 0)
            break;
        size_t left = 0;
        for (size_t p = 0; p < np; p++) {
            for (size_t j = 0; j < K; j++) {
                uint64_t g = (uint64_t)ti[p * K + j];
                size_t si = shard_of(ix, g);
                cs[j] = (cand){ex[p * K + j], g, si, (size_t)(g - ix->sh[si].first)};
            }
            qsort(cs, K, sizeof *cs, cand_rank_cmp);
            const double ek = cs[kk - 1].score;
            const float t = ts[p * K + K - 1];
            /* a zero query scores exactly 0 (NaN for a row that is not finite) on every
             * backend: the float ranking is the exact one */
            int zero = 1;
            for (size_t d = 0; zero && d < dim; d++)
                zero = Qp[p * dim + d] == 0.0f;
            const int sure = K >= rows || (isfinite(ek) && (zero || isnan(t) || t == -INFINITY ||
                                                             (isfinite(t) && (double)t + eps < ek)));
            if (!sure) {
                pend[left++] = pend[p];
                continue;
            }
            for (size_t j = 0; j < kk; j++) {
                sl_search_hit *hp = &hits[pend[p] * k + j];
                memset(hp, 0, sizeof *hp);
                hp->score = cs[j].score;
                hp->shard = cs[j].shard;
                hp->row = cs[j].row;
                hp->global = cs[j].global;
            }
        }
        np = left;
        if (np && K >= Kmax)
            break;
        if (np) {
            SL_DEBUG("search: %zu queries have near-ties past %zu candidates; searching them again with more", np,
                     K);
            K = K > Kmax / 8 ? Kmax : K * 8;
        }
    }
    if (!rc && np) {
        /* near-ties beyond the block size: the CPU path admits every row that may tie */
        SL_INFO("search: %zu queries have more than %zu candidates within rounding of their k-th score; "
                "finishing them on the CPU", np, K);
        sl_search_hit *tmp = calloc(np * k, sizeof *tmp);
        size_t n = 0;
        if (!tmp) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
        } else {
            for (size_t p = 0; p < np; p++) /* one scan for all of them; Qp is free again */
                memcpy(Qp + p * dim, queries + pend[p] * dim, dim * sizeof *Qp);
            rc = sl_vindex_search(ix, Qp, np, k, block_rows, tmp, &n);
        }
        for (size_t p = 0; !rc && p < np; p++)
            memcpy(&hits[pend[p] * k], &tmp[p * k], n * sizeof *tmp);
        free(tmp);
    }
    if (!rc)
        *n_hits = kk;
out:
    for (int h = 0; h < 2; h++)
        sl_op_host_free(ctx, o.stage[h]);
    sl_op_free(ctx, o.dQ);
    sl_op_free(ctx, o.dB);
    sl_op_free(ctx, o.dS);
    sl_op_free(ctx, o.dTs);
    sl_op_free(ctx, o.dTi);
    free(Q);
    free(Qp);
    free(pend);
    free(ts);
    free(ti);
    free(ex);
    free(cs);
    return rc;
}
