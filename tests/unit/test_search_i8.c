/* The int8 scan copy (pipeline/search_i8.c, search.h):
 * - the int8 products (search_dot.h) are the same integers on the VNNI, AVX2 and
 *   portable paths, for every dim (SIMD tails), row stride, row count and number of
 *   query parts, with the extreme values -128 / 127 in the rows;
 * - two catalogs built so that the int8 score of the true nearest row is as far
 *   below its exact score as the proven bound allows, and a decoy's as far above:
 *   one where the rows' own rounding (|Q| err) makes the gap, one where the query's
 *   (|dq| norm, rows exact in int8). The scan must still return the exact top k; a
 *   bound shrunk by 1% in either term loses the true row;
 * - a shard whose int8 copy is stale falls back to the float16 copy, then to
 *   float32, with a warning, and a truncated copy is never read; results exact,
 *   also when the scanned files were mapped beforehand (sl_vindex_prefetch_start).
 * The adversarial float16 data of unit.search_f16 is also searched through the int8
 * copy there. SL_SEARCH_SIMD (avx2, scalar) caps the scan's path as for the float16 copy. */
#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/npy.h"
#include "pipeline/search.h"
#include "pipeline/search_dot.h"
#include "sl_test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint64_t state = 0x9E3779B97F4A7C15ull;
static uint64_t next(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}
static int irand(int lo, int hi) { return lo + (int)(next() % (uint64_t)(hi - lo + 1)); }

static void test_kernels(void)
{
    static const size_t dims[] = {1, 7, 31, 32, 33, 63, 64, 65, 100, 512, 1000};
    for (size_t a = 0; a < sizeof dims / sizeof *dims; a++) {
        const size_t dim = dims[a];
        for (size_t pad = 0; pad <= 16; pad += 16) {
            const size_t ld = dim + pad, m = 13, np = 17;
            signed char *B = malloc(m * ld), *P = malloc(np * dim);
            int psum[17], *ref = malloc(m * np * sizeof *ref), *got = malloc(m * np * sizeof *got);
            for (size_t i = 0; i < m * ld; i++)
                B[i] = (signed char)(i % 11 == 0 ? -128 : i % 13 == 0 ? 127 : irand(-128, 127));
            for (size_t j = 0; j < np; j++) {
                psum[j] = 0;
                for (size_t i = 0; i < dim; i++) {
                    P[j * dim + i] = (signed char)(j == 0 ? 127 : j == 1 ? -127 : irand(-127, 127));
                    psum[j] += P[j * dim + i];
                }
            }
            for (size_t r = 0; r < m; r++)
                for (size_t j = 0; j < np; j++) {
                    long long s = 0;
                    for (size_t i = 0; i < dim; i++)
                        s += (long long)B[r * ld + i] * P[j * dim + i];
                    ref[r * np + j] = (int)s;
                }
            for (int isa = SL_DOT_SCALAR; isa <= SL_DOT_AVX512; isa++)
                for (size_t mm = 1; mm <= m; mm += 4)
                    for (size_t nn = 1; nn <= np; nn += nn < 3 ? 1 : nn == 3 ? 5 : nn < 10 ? 1 : 6) {
                        for (size_t i = 0; i < m * np; i++)
                            got[i] = 0x5a5a5a5a;
                        sl_search_dot_i8((sl_dot_isa)isa, B, mm, ld, dim, P, psum, nn, got);
                        int ok = 1;
                        for (size_t r = 0; r < mm; r++)
                            for (size_t j = 0; j < nn; j++)
                                ok &= got[r * nn + j] == ref[r * np + j];
                        CHECK_MSG(ok, "int8 products (%s): dim %zu, stride %zu, %zu rows x %zu parts differ",
                                  sl_search_dot_i8_name((sl_dot_isa)isa), dim, ld, mm, nn);
                    }
            free(B);
            free(P);
            free(ref);
            free(got);
        }
    }
}

static void write_npy(const char *dir, size_t s, const float *X, size_t rows, int dim)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/shard-%05zu.npy", dir, s);
    CHECK_MSG(sl_npy_write(p, X, rows, (size_t)dim, "float32") == 0, "%s: %s", p, sl_lasterr());
}

/* The top k of query x through the int8 copy at 1 and 2 threads equals the float32
 * scan's, and its first hit is row `want`. */
static void expect_exact(sl_vindex *ix, const float *x, size_t k, uint64_t want, const char *what)
{
    sl_search_hit ref[8], got[8];
    size_t nr = 0, ng = 0;
    sl_vindex_set_i8(ix, 0);
    sl_vindex_set_f16(ix, 0);
    sl_vindex_set_threads(ix, 1);
    CHECK_MSG(sl_vindex_search(ix, x, 1, k, 0, ref, &nr) == 0, "%s: %s", what, sl_lasterr());
    CHECK_MSG(nr == k && ref[0].global == want, "%s: the float32 scan's best row is %llu, not %llu", what,
              (unsigned long long)ref[0].global, (unsigned long long)want);
    sl_vindex_set_i8(ix, 1);
    for (int t = 1; t <= 2; t++) {
        sl_vindex_set_threads(ix, t);
        CHECK_MSG(sl_vindex_search(ix, x, 1, k, 0, got, &ng) == 0, "%s: %s", what, sl_lasterr());
        int same = ng == nr;
        for (size_t i = 0; same && i < nr; i++)
            same = got[i].global == ref[i].global && memcmp(&got[i].score, &ref[i].score, sizeof got[i].score) == 0;
        CHECK_MSG(same, "%s, %d threads: the int8 copy returned row %llu first (want %llu)", what, t,
                  (unsigned long long)got[0].global, (unsigned long long)want);
    }
    size_t v, s, f;
    sl_vindex_i8_status(ix, &v, &s, &f);
    CHECK_MSG(v == 1 && s == 0, "%s: the int8 copy was not scanned (%zu valid, %zu stale)", what, v, s);
}

/* dir's one shard of rows x d rows (taken as normalised), opened with its int8 copy
 * built; NULL (the failure counted) when it cannot be opened */
static sl_vindex *one_shard_i8(const char *dir, const float *X, size_t rows, int d)
{
    write_npy(dir, 0, X, rows, d);
    sl_vindex *ix = NULL;
    size_t w, kept;
    CHECK_MSG(sl_vindex_open(&ix, dir) == 0, "%s", sl_lasterr());
    if (!ix)
        return NULL;
    sl_vindex_set_rows_normalized(ix, 1);
    CHECK(sl_vindex_build_i8(ix, &w, &kept) == 0 && w == 1);
    return ix;
}

/* Rows the int8 copy rounds as badly as its bound allows, the same way for every
 * value: the query is all ones (exact in int8), a row is s0 (c + 0.45 sign) with
 * integer c, so each value is 0.45 s0 above (A) or below (B) its int8 copy, in the
 * query's direction: the int8 score of A is low by 0.45 s0 (dim - 1) / sqrt(dim),
 * nearly |Q| err, and B's high by as much. B's integers exceed A's by one in m
 * places, so A is ahead in exact score by s0 (0.9 (dim - 1) - m) / sqrt(dim) while
 * B's int8 score leads by s0 m / sqrt(dim): m = 228 of 255 leaves A inside the sum of
 * the two bounds by 0.9%. The decoys come first in the shard. */
static void test_row_rounding(const char *tmp)
{
    enum { D = 256, DECOYS = 3, FILL = 40 };
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/i8-rows", tmp);
    mkdir(dir, 0777);
    const size_t rows = DECOYS + 1 + FILL;
    float *X = calloc(rows * D, sizeof *X), q[D];
    const double s0 = 1.0 / 1024;
    int c[D];
    c[0] = 127;
    for (int i = 1; i < D; i++)
        c[i] = irand(-100, 100);
    for (int i = 0; i < D; i++)
        q[i] = 1.0f;
    for (size_t d = 0; d < DECOYS; d++) {
        float *b = X + d * D;
        b[0] = (float)(127 * s0);
        for (int i = 1; i < D; i++)
            b[i] = (float)(s0 * ((c[i] + (i <= 228)) - 0.45));
    }
    float *a = X + DECOYS * D;
    a[0] = (float)(127 * s0);
    for (int i = 1; i < D; i++)
        a[i] = (float)(s0 * (c[i] + 0.45));
    for (size_t r = DECOYS + 1; r < rows; r++) /* far below: the anti-query direction */
        for (int i = 0; i < D; i++)
            X[r * D + i] = (float)(-s0 * irand(1, 100));
    sl_vindex *ix = one_shard_i8(dir, X, rows, D);
    if (!ix)
        return;
    expect_exact(ix, q, 1, DECOYS, "row rounding, k 1");
    expect_exact(ix, q, DECOYS, DECOYS, "row rounding, k 3");
    sl_vindex_close(ix);
    free(X);
}

/* Rows exact in int8 (err 0), so only the query's rounding separates the int8 score
 * from the exact one. The query is built from its own int8 parts: Q_0 = 127 t1
 * (the largest), Q_1 = 127 t2 (the largest remainder), Q_i = t1 p1_i + t2 (p2_i +
 * 0.45 g_i) with g_i = +-1 and t2 = t1 / 256, so dq = 0.45 t2 g. A = s0 (127, 0,
 * 100 g) has its int8 score low by dq . A, nearly |dq| |A|; B = s0 (127, 0, -100 g)
 * high by as much. The p's are chosen so that sum_i (256 p1_i + p2_i) g_i = -114,
 * which puts A ahead in exact score by 60 t2 s0 while B leads in int8 score by
 * 22800 t2 s0, 0.6% inside the two bounds (2 x 11468 t2 s0). */
static void test_query_rounding(const char *tmp)
{
    enum { D = 256 };
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/i8-query", tmp);
    mkdir(dir, 0777);
    const double t1 = 1.0 / 127, t2 = t1 / 256, s0 = 1.0 / 128;
    int g[D], p1[D], p2[D];
    for (int i = 0; i < D; i++)
        g[i] = (next() & 1) ? 1 : -1;
    /* p1 g cancels in pairs; p2 g cancels in pairs, then 114 of them move by -1 */
    for (int i = 2; i < D; i += 2) {
        p1[i] = irand(-100, 100);
        p1[i + 1] = -p1[i] * g[i] * g[i + 1];
        p2[i] = irand(-60, 60);
        p2[i + 1] = -p2[i] * g[i] * g[i + 1];
    }
    for (int i = 2; i < 2 + 114; i++)
        p2[i] -= g[i];
    float q[D];
    q[0] = (float)(127 * t1);
    q[1] = (float)(127 * t2);
    for (int i = 2; i < D; i++)
        q[i] = (float)(t1 * p1[i] + t2 * (p2[i] + 0.45 * g[i]));
    const size_t rows = 2 + 30;
    float *X = calloc(rows * D, sizeof *X);
    for (int side = 0; side < 2; side++) { /* row 0: B (the decoy), row 1: A */
        float *r = X + (size_t)side * D;
        r[0] = (float)(127 * s0);
        for (int i = 2; i < D; i++)
            r[i] = (float)(s0 * 100 * g[i] * (side ? 1 : -1));
    }
    for (size_t r = 2; r < rows; r++) /* far below */
        for (int i = 0; i < D; i++)
            X[r * D + i] = (float)(s0 * (i == 0 ? -127 : irand(-1, 1)));
    sl_vindex *ix = one_shard_i8(dir, X, rows, D);
    if (!ix)
        return;
    expect_exact(ix, q, 1, 1, "query rounding, k 1");
    sl_vindex_close(ix);
    free(X);
}

static char *log_buf;
static size_t log_len;
static FILE *log_f;

/* A stale int8 copy: the float16 copy where it is valid, float32 elsewhere; a
 * truncated int8 copy is stale. Results exact throughout. */
static void test_fallback(const char *tmp)
{
    enum { D = 40, ROWS = 300, SH = 3 };
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/i8-fallback", tmp);
    mkdir(dir, 0777);
    float *X = malloc((size_t)SH * ROWS * D * sizeof *X), q[D];
    for (size_t i = 0; i < (size_t)SH * ROWS * D; i++)
        X[i] = (float)irand(-1000, 1000) / 1000.0f;
    for (int i = 0; i < D; i++)
        q[i] = X[(ROWS + 7) * D + i] + 0.01f;
    for (int s = 0; s < SH; s++)
        write_npy(dir, (size_t)s, X + (size_t)s * ROWS * D, ROWS, D);
    sl_vindex *ix = NULL;
    size_t w, kept, v, st, f;
    CHECK(sl_vindex_open(&ix, dir) == 0 && sl_vindex_build_i8(ix, &w, &kept) == 0 && w == SH &&
          sl_vindex_build_f16(ix, &w, &kept) == 0 && w == SH);
    sl_search_hit ref[20], got[20];
    size_t nr, ng;
    sl_vindex_set_i8(ix, 0);
    sl_vindex_set_f16(ix, 0);
    CHECK(sl_vindex_search(ix, q, 1, 20, 0, ref, &nr) == 0);
    sl_vindex_close(ix);
    for (int stage = 0; stage < 3; stage++) {
        if (stage == 1) { /* shard 1 rewritten with the same rows: both copies stale; the float16 one rebuilt */
            write_npy(dir, 1, X + ROWS * D, ROWS, D);
            CHECK(sl_vindex_open(&ix, dir) == 0 && sl_vindex_build_f16(ix, &w, &kept) == 0 && w == 1);
            sl_vindex_close(ix);
        }
        if (stage == 2) { /* shard 2's int8 copy cut short */
            snprintf(p, sizeof p, "%s/.scan-i8/shard-00002.npy", dir);
            CHECK(truncate(p, 500) == 0);
        }
        ix = NULL;
        CHECK(sl_vindex_open(&ix, dir) == 0);
        if (!ix)
            return;
        free(log_buf);
        log_buf = NULL;
        log_f = open_memstream(&log_buf, &log_len);
        sl_log_set_file(log_f);
        if (stage != 1) /* the scanned files mapped whole by a thread of their own first: same result */
            sl_vindex_prefetch_start(ix);
        CHECK_MSG(sl_vindex_prefetch_wait(ix) == 0, "stage %d: prefetch: %s", stage, sl_lasterr());
        int ok = sl_vindex_search(ix, q, 1, 20, 0, got, &ng) == 0 && ng == nr;
        sl_log_set_file(NULL);
        fclose(log_f);
        for (size_t i = 0; ok && i < nr; i++)
            ok = got[i].global == ref[i].global && memcmp(&got[i].score, &ref[i].score, sizeof got[i].score) == 0;
        CHECK_MSG(ok, "fallback stage %d: the result changed", stage);
        sl_vindex_i8_status(ix, &v, &st, &f);
        CHECK_MSG(v == (size_t)(SH - stage) && st == (size_t)stage, "stage %d: int8 copy %zu valid, %zu stale", stage,
                  v, st);
        sl_vindex_f16_status(ix, &v, &st, &f);
        CHECK_MSG(v == SH && st == 0, "stage %d: float16 copy %zu valid, %zu stale", stage, v, st);
        CHECK_MSG(stage == 0 || (log_buf && strstr(log_buf, "int8 scan copy") && strstr(log_buf, "--build-i8")),
                  "stage %d: no warning about the stale int8 copy: '%s'", stage, log_buf ? log_buf : "");
        sl_vindex_close(ix);
    }
    free(log_buf);
    free(X);
}

/* write() as the library calls it (this definition takes libc's place in the test
 * binary): while rec_on, each write to a file whose name holds ".scan-i8/shard-" is
 * recorded with the offset it starts at. */
static int rec_on;
static size_t rec_n;
static struct {
    long long off;
    size_t len;
} rec[64];

ssize_t write(int fd, const void *buf, size_t n)
{
    char link[64], name[1024];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    const ssize_t nl = rec_on ? readlink(link, name, sizeof name - 1) : -1;
    if (nl > 0) {
        name[nl] = 0;
        if (strstr(name, ".scan-i8/shard-") && rec_n < sizeof rec / sizeof *rec) {
            rec[rec_n].off = (long long)lseek(fd, 0, SEEK_CUR);
            rec[rec_n++].len = n;
        }
    }
    return syscall(SYS_write, fd, buf, n);
}

/* The copy is written in 8 MiB pieces at multiples of 8 MiB, its .npy header in the
 * first (search_i8.c, I8_PIECE: the page cache can then hold it in 2 MiB folios):
 * a 17,000 x 512 shard's 8.7 MB copy in exactly two writes, at 0 and at 8 MiB. A
 * copy from before (no "pieces" in its manifest entry) is still scanned, and
 * --build-i8 rewrites it. */
static void test_pieces(const char *tmp)
{
    enum { D = 512, ROWS = 17000 };
    const size_t piece = (size_t)8 << 20;
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/i8-pieces", tmp);
    mkdir(dir, 0777);
    float *X = malloc((size_t)ROWS * D * sizeof *X), q[D];
    for (size_t i = 0; i < (size_t)ROWS * D; i++)
        X[i] = (float)irand(-1000, 1000) / 1000.0f;
    for (int i = 0; i < D; i++)
        q[i] = X[(size_t)12345 * D + i] + 0.01f * (float)(i % 3);
    rec_n = 0;
    rec_on = 1;
    sl_vindex *ix = one_shard_i8(dir, X, ROWS, D);
    rec_on = 0;
    snprintf(p, sizeof p, "%s/.scan-i8/shard-00000.npy", dir);
    struct stat st;
    CHECK(stat(p, &st) == 0 && (size_t)st.st_size > piece);
    long long at = 0;
    for (size_t i = 0; i < rec_n; i++) {
        CHECK_MSG(rec[i].off == at, "write %zu at offset %lld, expected %lld", i, rec[i].off, at);
        CHECK_MSG(rec[i].off % (long long)piece == 0 && (i + 1 == rec_n || rec[i].len == piece),
                  "write %zu: %zu bytes at %lld, not a whole 8 MiB piece at a multiple of 8 MiB", i, rec[i].len,
                  rec[i].off);
        at += (long long)rec[i].len;
    }
    CHECK_MSG(rec_n == 2 && at == (long long)st.st_size, "%zu writes of %lld bytes for a copy of %lld", rec_n, at,
              (long long)st.st_size);
    if (ix) {
        expect_exact(ix, q, 5, 12345, "pieces");
        /* the copy is mapped advised MADV_HUGEPAGE before its pages are read in
         * (search_scan.c, sl_scan_mmap_read), kept mapped as a session does */
        CHECK(sl_vindex_keep_mapped(ix) == 0);
        CHECK_MSG(sl_test_map_flag("i8-pieces/.scan-i8/shard-00000.npy", "hg") != 0,
                  "the int8 copy's mapping is not advised MADV_HUGEPAGE");
        expect_exact(ix, q, 5, 12345, "pieces, kept mapped");
        sl_vindex_close(ix);
    }
    /* a copy written before the pieces (its manifest entry has no "pieces") is scanned,
     * and --build-i8 writes it again, once */
    snprintf(p, sizeof p, "%s/.scan-i8/manifest.json", dir);
    size_t len = 0;
    char *m = sl_test_slurp(p, &len), *at8 = m ? strstr(m, ", \"pieces\": 8388608") : NULL;
    CHECK_MSG(at8 != NULL, "the manifest does not record the pieces: %s", m ? m : "(unreadable)");
    if (at8) {
        const size_t cut = strlen(", \"pieces\": 8388608");
        memmove(at8, at8 + cut, strlen(at8 + cut) + 1);
        sl_test_spew(p, m, strlen(m));
        ix = NULL;
        size_t w = 9, kept = 9;
        CHECK(sl_vindex_open(&ix, dir) == 0);
        if (ix) {
            sl_vindex_set_rows_normalized(ix, 1);
            expect_exact(ix, q, 5, 12345, "copy without pieces");
            CHECK(sl_vindex_build_i8(ix, &w, &kept) == 0 && w == 1 && kept == 0);
            CHECK(sl_vindex_build_i8(ix, &w, &kept) == 0 && w == 0 && kept == 1);
            sl_vindex_close(ix);
        }
    }
    free(m);
    free(X);
}

int main(void)
{
    const char *tmp = sl_test_tmpdir();
    sl_log_set_level(SL_LOG_WARN);
    test_kernels();
    test_row_rounding(tmp);
    test_query_rounding(tmp);
    test_fallback(tmp);
    test_pieces(tmp);
    return sl_test_finish("search_i8");
}
