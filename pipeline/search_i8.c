/* The int8 scan copy of an index's float32 shards (search.h, "the int8 scan
 * copy"): writing it, checking it, and scanning a block of rows through it.
 *
 * Each row v that the exact score uses (the row divided by its norm in double, or
 * the row itself when rows are trusted to be unit length) is stored as int8 values
 * c in [-127, 127] and a scale s (float32: max |v_i| / 127), c_i = round(v_i / s),
 * so that h = s c approximates v. With the row go err >= |h - v| and norm >= |h|,
 * computed in double and rounded up to float32.
 *
 * The query Q (the unit float32 query of search_scan.c) is split into two int8
 * parts, Q = t1 p1 + t2 p2 + dq (p1 = round(Q / t1), t1 = max |Q_i| / 127; p2 the
 * same for the remainder), so P = t1 p1 + t2 p2 is Q within |dq|, about 1/250 of
 * one part's rounding. The scan computes A = s (t1 (p1 . c) + t2 (p2 . c)) = P . h
 * with exact integer dot products (search_dot.h) and
 *
 *   |Q . v - A| = |Q . (v - h) + (Q - P) . h| <= |Q| err + |dq| norm = B,
 *
 * plus 1e-9 (1 + norm)(1 + |Q|) for the double roundings of A, of dq, of v and of
 * the exact score itself (each below 1e-11 of that for dim <= 65536). A row is read
 * from its float32 shard and scored exactly (search_scan.c) unless A + B is below
 * the k-th best A - B of the rows the thread has scored, so the top k is the float32
 * scan's, bit for bit. A row that is not finite, or whose scale, err or norm is not
 * a finite float32, has scale NaN and is always scored exactly. */
#include "pipeline/search.h"
#include "pipeline/search_impl.h"

#include "common/sl_error.h"
#include "io/npy.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define I8_DIR ".scan-i8"
#define I8_FORMAT "stemline-i8-scan-copy"
#define I8_MAX_DIM 65536

/* float32 rounded towards +inf (NaN stays NaN) */
static float f32_up(double x)
{
    float f = (float)x;
    return (double)f < x ? nextafterf(f, INFINITY) : f;
}

static void put_f32(unsigned char *p, float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static float get_f32(const unsigned char *p)
{
    uint32_t u = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* The copy's int8 row and record of the float32 row x (dim values) into out
 * (dim + SL_SCAN_I8_META bytes); v: dim doubles of scratch. */
static void quantise_row(const float *x, size_t dim, int unit, double *v, unsigned char *out)
{
    double ss = 0, mx = 0, e2 = 0, h2 = 0;
    int bad = 0;
    for (size_t i = 0; i < dim; i++) {
        bad |= !isfinite(x[i]);
        ss += (double)x[i] * x[i];
    }
    const double scale = unit ? (ss > 0 ? 1.0 / sqrt(ss) : 0.0) : 1.0;
    bad |= !isfinite(ss);
    for (size_t i = 0; i < dim && !bad; i++) {
        v[i] = (double)x[i] * scale;
        mx = fmax(mx, fabs(v[i]));
    }
    const float s = (float)(mx / 127.0);
    bad |= !isfinite(s) || (mx > 0 && !(s > 0));
    for (size_t i = 0; i < dim; i++) {
        long c = 0;
        if (!bad && s > 0) {
            c = lround(v[i] / s);
            c = c > 127 ? 127 : c < -127 ? -127 : c;
        }
        if (!bad) {
            const double h = (double)s * (double)c;
            e2 += (h - v[i]) * (h - v[i]);
            h2 += h * h;
        }
        out[i] = (unsigned char)(signed char)c;
    }
    const float err = f32_up(sqrt(e2)), nrm = f32_up(sqrt(h2));
    bad |= !isfinite(err) || !isfinite(nrm);
    put_f32(out + dim, bad ? NAN : s);
    put_f32(out + dim + 4, bad ? NAN : err);
    put_f32(out + dim + 8, bad ? NAN : nrm);
    put_f32(out + dim + 12, 0.0f);
}

/* The copy's bytes go to the file in pieces of I8_PIECE that start at multiples of
 * it, the .npy header in the first one: the page cache then holds the copy in 2 MiB
 * folios wherever a whole aligned 2 MiB of the file was written at once, and a search
 * maps those with one page-table entry each. 1M x 512 in shards of 10,000 rows (5.3 MB
 * copies): mapping, reading and unmapping the 528 MB took 17 + 39 + 10 ms of CPU with
 * the header written on its own (the first 2 MiB then starts as a 4 KiB folio and
 * none of a file's folios can reach 2 MiB before offset 2 MiB: 35 MB of the copy in
 * 2 MiB mappings), 2 + 31 + 1 ms with these pieces (410 MB in 2 MiB mappings). */
#define I8_PIECE ((size_t)8 << 20)

typedef struct {
    sl_atomic_file *f;
    unsigned char *buf; /* I8_PIECE bytes */
    size_t used;
} i8_out;

static int i8_put(i8_out *o, const unsigned char *p, size_t n)
{
    while (n) {
        const size_t c = n < I8_PIECE - o->used ? n : I8_PIECE - o->used;
        memcpy(o->buf + o->used, p, c);
        o->used += c;
        p += c;
        n -= c;
        if (o->used == I8_PIECE) {
            int rc = sl_atomic_write(o->f, o->buf, o->used);
            o->used = 0;
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int i8_write(shard *s, const char *path, int unit)
{
    const size_t dim = s->dim, chunk = 1024, ld = dim + SL_SCAN_I8_META;
    if (dim > I8_MAX_DIM)
        return sl_seterr(SL_EINVAL, "search: %s: rows of %zu values are too long for an int8 scan copy (at most %d)",
                         s->npy, dim, I8_MAX_DIM);
    int fd = open(s->npy, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    unsigned char *raw = malloc(chunk * dim * 4), *rows = malloc(chunk * ld), hdr[256];
    float *x = malloc(chunk * dim * sizeof *x);
    double *v = malloc(dim * sizeof *v);
    i8_out o = {NULL, malloc(I8_PIECE), 0};
    int rc = raw && rows && x && v && o.buf ? 0 : sl_seterr(SL_ENOMEM, "search: out of memory");
    const size_t hl = sl_npy_header(hdr, sizeof hdr, "|i1", s->rows, ld);
    if (!rc && !hl)
        rc = sl_seterr(SL_EINVAL, "%s: shape does not fit a .npy header", path);
    if (!rc && (rc = sl_atomic_open(&o.f, path)) == 0)
        rc = i8_put(&o, hdr, hl);
    for (size_t r0 = 0; !rc && r0 < s->rows; r0 += chunk) {
        const size_t m = s->rows - r0 < chunk ? s->rows - r0 : chunk;
        if (pread(fd, raw, m * dim * 4, (off_t)(s->data_off + r0 * dim * 4)) != (ssize_t)(m * dim * 4)) {
            rc = sl_seterr(SL_EFORMAT, "%s: short read at row %zu", s->npy, r0);
            break;
        }
        sl_npy_unpack(raw, x, m * dim, 0);
        for (size_t r = 0; r < m; r++)
            quantise_row(x + r * dim, dim, unit, v, rows + r * ld);
        rc = i8_put(&o, rows, m * ld);
    }
    if (!rc && o.used)
        rc = sl_atomic_write(o.f, o.buf, o.used);
    close(fd);
    if (o.f) {
        if (rc)
            sl_atomic_abort(o.f);
        else
            rc = sl_atomic_commit(o.f);
    }
    free(raw);
    free(rows);
    free(x);
    free(v);
    free(o.buf);
    return rc;
}

/* The copy is the .npy header written for s's shape, then rows * (dim + 16) bytes. */
static int i8_attach(const sl_json *e, shard *s, char *path)
{
    (void)e;
    const size_t ld = s->dim + SL_SCAN_I8_META;
    unsigned char want[256], got[256];
    const size_t hl = s->dim <= I8_MAX_DIM ? sl_npy_header(want, sizeof want, "|i1", s->rows, ld) : 0;
    int fd = hl ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return 0;
    const off_t size = lseek(fd, 0, SEEK_END);
    const int ok = size == (off_t)(hl + s->rows * ld) && sl_scan_read_head(fd, (size_t)size, got, hl) == 0 &&
                   !memcmp(got, want, hl);
    close(fd);
    if (!ok)
        return 0;
    free(s->path8);
    s->path8 = path;
    s->data_off8 = hl;
    s->file_size8 = (size_t)size;
    return 1;
}

/* "pieces": the write size of i8_write; copies written before it (none recorded) are
 * valid, and --build-i8 writes them again */
static void i8_fields(FILE *mf, const shard *s)
{
    (void)s;
    fprintf(mf, ", \"pieces\": %zu", I8_PIECE);
}

static int i8_current(const sl_json *e) { return sl_json_get_num(e, "pieces", 0) == (double)I8_PIECE; }

const sl_scan_copy_kind sl_scan_copy_i8 = {I8_DIR, I8_FORMAT, "int8", "--build-i8", offsetof(sl_vindex, copy8),
                                           offsetof(shard, has8), i8_attach, i8_write, i8_fields, i8_current};

int sl_vindex_build_i8(sl_vindex *ix, size_t *written, size_t *kept)
{
    return sl_scan_copy_build(ix, &sl_scan_copy_i8, written, kept);
}

void sl_vindex_set_i8(sl_vindex *ix, int use) { ix->copy8.off = !use; }

void sl_vindex_i8_status(const sl_vindex *ix, size_t *valid, size_t *stale, size_t *f32_shards)
{
    sl_scan_copy_status(ix, &sl_scan_copy_i8, valid, stale, f32_shards);
}

/* ---------------------------------------------------------------- the scan */

int sl_scan_q8_setup(sl_scan_job *J)
{
    const size_t nq = J->nq, dim = J->dim;
    sl_scan_q8 *z = &J->q8;
    z->p = malloc(nq * 2 * dim);
    z->psum = malloc(nq * 2 * sizeof *z->psum);
    z->t = malloc(nq * 2 * sizeof *z->t);
    z->qn = malloc(nq * sizeof *z->qn);
    z->dqn = malloc(nq * sizeof *z->dqn);
    double *r = malloc(dim * sizeof *r);
    if (!z->p || !z->psum || !z->t || !z->qn || !z->dqn || !r) {
        free(r);
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    }
    for (size_t q = 0; q < nq; q++) {
        const float *x = J->Q + q * dim;
        double ss = 0;
        for (size_t i = 0; i < dim; i++) {
            r[i] = x[i];
            ss += r[i] * r[i];
        }
        z->qn[q] = sqrt(ss);
        for (int part = 0; part < 2; part++) { /* r: what the parts so far leave of Q */
            double mx = 0;
            for (size_t i = 0; i < dim; i++)
                mx = fmax(mx, fabs(r[i]));
            const double t = mx / 127.0;
            int8_t *p = z->p + (q * 2 + part) * dim;
            int sum = 0;
            for (size_t i = 0; i < dim; i++) {
                long c = t > 0 ? lround(r[i] / t) : 0;
                c = c > 127 ? 127 : c < -127 ? -127 : c;
                p[i] = (int8_t)c;
                sum += (int)c;
                r[i] -= t * (double)c;
            }
            z->t[q * 2 + part] = t;
            z->psum[q * 2 + part] = sum;
        }
        double d2 = 0;
        for (size_t i = 0; i < dim; i++)
            d2 += r[i] * r[i];
        z->dqn[q] = sqrt(d2);
    }
    free(r);
    return 0;
}

void sl_scan_q8_free(sl_scan_job *J)
{
    free(J->q8.p);
    free(J->q8.psum);
    free(J->q8.t);
    free(J->q8.qn);
    free(J->q8.dqn);
    memset(&J->q8, 0, sizeof J->q8);
}

void sl_scan_block8(const sl_scan_job *J, sl_scan_thread *T, const sl_scan_item *w, const shard *s)
{
    const size_t dim = J->dim, nq = J->nq, np = 2 * nq, ld = dim + SL_SCAN_I8_META;
    const sl_scan_q8 *z = &J->q8;
    size_t len = 0;
    const unsigned char *src;
    unsigned char *base = NULL;
    if (s->keep && s->keep8)
        src = s->keep + s->data_off8 + w->r0 * ld;
    else if (!(base = sl_scan_map_rows(T, s->path8, s->file_size8, s->data_off8 + w->r0 * ld, w->m * ld, J->page,
                                       &len, &src)))
        return;
    int fd = -1;
    for (size_t c0 = 0; c0 < w->m && !T->rc; c0 += SL_SCAN_I8_CHUNK) {
        const size_t cm = w->m - c0 < SL_SCAN_I8_CHUNK ? w->m - c0 : SL_SCAN_I8_CHUNK;
        const unsigned char *rows = src + c0 * ld;
        sl_search_dot_i8(J->isa, (const signed char *)rows, cm, ld, dim, z->p, z->psum, np, T->D);
        for (size_t r = 0; r < cm && !T->rc; r++) {
            const unsigned char *rec = rows + r * ld + dim;
            const double sc = get_f32(rec), err = get_f32(rec + 4), nrm = get_f32(rec + 8);
            const size_t row = w->r0 + c0 + r;
            int have = 0;
            for (size_t q = 0; q < nq && !T->rc; q++) {
                int take = 1;
                if (isfinite(sc)) {
                    const int32_t *d = T->D + r * np + 2 * q;
                    const double a = sc * (z->t[2 * q] * (double)d[0] + z->t[2 * q + 1] * (double)d[1]);
                    const double b = z->qn[q] * err + z->dqn[q] * nrm + 1e-9 * (1.0 + nrm) * (1.0 + z->qn[q]);
                    /* most rows: below the k-th best lower bound (sl_scan_admit_bounds' test, inline) */
                    if (T->fn[q] == J->kk && a + b + (double)J->eps < (double)T->fh[q * J->kk])
                        continue;
                    take = sl_scan_admit_bounds(J, T, q, a - b, a + b);
                }
                if (take)
                    sl_scan_rescore(J, T, w, s, row, q, &fd, &have);
            }
        }
    }
    if (fd >= 0)
        close(fd);
    if (base)
        munmap(base, len);
}
