/* The float16 scan copy (pipeline/search_f16.c, search.h): searches through it
 * return exactly what the float32 scan returns (same rows, same order, same
 * double scores) on adversarial data: near-ties closer than float16 can tell
 * apart, duplicates, a cluster of rows around the k-th score, zero, NaN, infinite,
 * subnormal and float16-overflowing rows, rows that are not unit length; in both
 * row modes (rows divided by their norms, rows trusted to be unit length), for
 * several k, block sizes and thread counts. A stale, missing or unreadable copy
 * (shard rewritten, mode changed, manifest gone or garbage) falls back to float32
 * for the shards it no longer describes, with a warning, and the result stays
 * exact; a rebuild rewrites only what changed; the index still sees only the
 * shards. SL_SEARCH_SIMD (avx2, scalar) runs the lower conversion paths. */
#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/npy.h"
#include "pipeline/search.h"
#include "sl_test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t state = 0x2545F4914F6CDD1Dull;
static double uni(void)
{
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return (double)(state >> 11) / 9007199254740992.0;
}
static double gauss(void)
{
    return sqrt(-2 * log(uni() + 1e-12)) * cos(2 * M_PI * uni());
}

static void unit(float *x, int dim)
{
    double ss = 0;
    for (int i = 0; i < dim; i++)
        ss += (double)x[i] * x[i];
    for (int i = 0; i < dim; i++)
        x[i] = (float)(x[i] / sqrt(ss));
}

/* rows x dim of adversarial vectors around the anchor a (unit length) */
static void make_rows(float *X, size_t rows, int dim, const float *a)
{
    for (size_t r = 0; r < rows; r++) {
        float *x = X + r * (size_t)dim;
        const size_t kind = r % 16;
        if (kind < 4) { /* the cluster: a + tiny noise, cosines with a within ~1e-5 of each other */
            const double eps = kind == 0 ? 1e-7 : kind == 1 ? 1e-5 : kind == 2 ? 3e-4 : 3e-3;
            for (int i = 0; i < dim; i++)
                x[i] = (float)(a[i] + eps * gauss());
            unit(x, dim);
        } else if (kind == 4 && r >= 16) { /* an exact duplicate of an earlier row */
            memcpy(x, X + (r - 16) * (size_t)dim, (size_t)dim * sizeof *x);
        } else if (kind == 5 && r >= 16) { /* an earlier row moved by one float ulp in one component */
            memcpy(x, X + (r - 16) * (size_t)dim, (size_t)dim * sizeof *x);
            x[r % (size_t)dim] = nextafterf(x[r % (size_t)dim], 2.0f);
        } else if (kind == 6) { /* subnormal in float16: tiny components */
            for (int i = 0; i < dim; i++)
                x[i] = (float)(a[i] + 1e-6 * gauss());
            for (int i = 0; i < dim; i += 2)
                x[i] = (float)(3e-6 * gauss());
            unit(x, dim);
        } else if (kind == 7) { /* not unit length: scaled by 1e-3 .. 1e3 */
            for (int i = 0; i < dim; i++)
                x[i] = (float)(a[i] + 0.01 * gauss());
            const double sc = pow(10.0, 6 * uni() - 3);
            for (int i = 0; i < dim; i++)
                x[i] = (float)(x[i] * sc);
        } else if (kind == 8 && r % 64 == 8) { /* overflows float16 unless divided by its norm */
            for (int i = 0; i < dim; i++)
                x[i] = (float)(1e5 * (a[i] + 0.01 * gauss()));
        } else {
            for (int i = 0; i < dim; i++)
                x[i] = (float)gauss();
            unit(x, dim);
        }
    }
    memset(X + 9 * (size_t)dim, 0, (size_t)dim * sizeof *X); /* a zero row */
    X[25 * (size_t)dim + 3] = NAN;                            /* rows that are not finite */
    X[41 * (size_t)dim] = INFINITY;
}

static void write_npy(const char *dir, size_t s, const float *X, size_t rows, int dim, const char *dtype)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/shard-%05zu.npy", dir, s);
    CHECK_MSG(sl_npy_write(p, X, rows, (size_t)dim, dtype) == 0, "%s: %s", p, sl_lasterr());
}

static int same(const sl_search_hit *a, const sl_search_hit *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].global != b[i].global || a[i].shard != b[i].shard || a[i].row != b[i].row ||
            memcmp(&a[i].score, &b[i].score, sizeof a[i].score) != 0)
            return 0;
    return 1;
}

/* Searches with the copy and without, for several k, blocks and threads: identical. */
static void check_same(sl_vindex *ix, const float *Q, size_t nq, const char *what)
{
    static const size_t ks[] = {1, 7, 25, 150};
    static const size_t blocks[] = {0, 13, 100};
    for (size_t a = 0; a < sizeof ks / sizeof *ks; a++) {
        const size_t k = ks[a];
        sl_search_hit *ref = calloc(nq * k, sizeof *ref), *got = calloc(nq * k, sizeof *got);
        size_t nr = 0, ng = 0;
        sl_vindex_set_f16(ix, 0);
        sl_vindex_set_i8(ix, 0);
        sl_vindex_set_threads(ix, 1);
        CHECK_MSG(sl_vindex_search(ix, Q, nq, k, 0, ref, &nr) == 0, "%s: %s", what, sl_lasterr());
        sl_vindex_set_f16(ix, 1);
        sl_vindex_set_i8(ix, 1);
        for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++)
            for (int t = 1; t <= 3; t += 2) {
                sl_vindex_set_threads(ix, t);
                memset(got, 0, nq * k * sizeof *got);
                CHECK_MSG(sl_vindex_search(ix, Q, nq, k, blocks[b], got, &ng) == 0, "%s: %s", what, sl_lasterr());
                CHECK_MSG(ng == nr && same(ref, got, nq * k), "%s: k %zu, blocks of %zu, %d threads: the scan "
                          "copies changed the result", what, k, blocks[b], t);
            }
        free(ref);
        free(got);
    }
}

static void status(sl_vindex *ix, size_t want_valid, size_t want_stale, const char *what)
{
    size_t v, s, f;
    sl_vindex_f16_status(ix, &v, &s, &f);
    CHECK_MSG(v == want_valid && s == want_stale, "%s: copy of %zu shards valid, %zu stale (want %zu, %zu), of %zu",
              what, v, s, want_valid, want_stale, f);
}

static char *log_buf;
static size_t log_len;
static FILE *log_f;
static void capture(void)
{
    free(log_buf);
    log_buf = NULL;
    log_f = open_memstream(&log_buf, &log_len);
    sl_log_set_file(log_f);
}
static const char *captured(void)
{
    sl_log_set_file(NULL);
    fclose(log_f);
    return log_buf ? log_buf : "";
}

/* one query: search it with the copy, return the status counts (no comparison) */
static void search_once(sl_vindex *ix, const float *Q)
{
    sl_search_hit h[3];
    size_t n;
    CHECK_MSG(sl_vindex_search(ix, Q, 1, 3, 0, h, &n) == 0, "%s", sl_lasterr());
}

static void run(const char *tmp, int dim, int normalized)
{
    char dir[1024], what[128];
    snprintf(dir, sizeof dir, "%s/f16copy-%d-%d", tmp, dim, normalized);
    mkdir(dir, 0777);
    snprintf(what, sizeof what, "dim %d, %s rows", dim, normalized ? "trusted unit" : "divided");
    const size_t counts[] = {700, 1, 0, 333, 960};
    const size_t n_sh = sizeof counts / sizeof *counts, nq = 6;
    size_t rows = 0;
    for (size_t s = 0; s < n_sh; s++)
        rows += counts[s];
    float *a = malloc((size_t)dim * sizeof *a), *X = malloc(rows * (size_t)dim * sizeof *X);
    float *Q = malloc(nq * (size_t)dim * sizeof *Q);
    for (int i = 0; i < dim; i++)
        a[i] = (float)gauss();
    unit(a, dim);
    make_rows(X, rows, dim, a);
    size_t off = 0;
    for (size_t s = 0; s < n_sh; s++) {
        write_npy(dir, s, X + off * (size_t)dim, counts[s], dim, s == 1 ? "float16" : "float32");
        off += counts[s];
    }
    /* queries: the anchor (its top k is inside the cluster), a cluster row, random, zero, a scaled anchor */
    memcpy(Q, a, (size_t)dim * sizeof *Q);
    memcpy(Q + (size_t)dim, X + 17 * (size_t)dim, (size_t)dim * sizeof *Q);
    for (int i = 0; i < dim; i++) {
        Q[2 * (size_t)dim + i] = (float)gauss();
        Q[3 * (size_t)dim + i] = 0.0f;
        Q[4 * (size_t)dim + i] = (float)(a[i] * 1e-3 + 1e-4 * gauss());
        Q[5 * (size_t)dim + i] = (float)(a[i] + 0.5 * gauss() / sqrt(dim));
    }

    sl_vindex *ix = NULL;
    CHECK_MSG(sl_vindex_open(&ix, dir) == 0, "%s: %s", dir, sl_lasterr());
    if (!ix)
        return;
    sl_vindex_set_rows_normalized(ix, normalized);
    const size_t n32 = n_sh - 1; /* shard 1 is float16 itself: no copy */
    size_t written = 0, kept = 0;
    CHECK_MSG(sl_vindex_build_f16(ix, &written, &kept) == 0, "%s: build: %s", what, sl_lasterr());
    CHECK_MSG(written == n32 && kept == 0, "%s: build wrote %zu, kept %zu", what, written, kept);
    check_same(ix, Q, nq, what);
    status(ix, n32, 0, what);
    /* the same data through the int8 copy (test_search_i8.c), scanned in preference to the float16 one */
    CHECK_MSG(sl_vindex_build_i8(ix, &written, &kept) == 0 && written == n32, "%s: int8 build: %s", what,
              sl_lasterr());
    check_same(ix, Q, nq, "int8 copy");
    size_t v8, s8, f8;
    sl_vindex_i8_status(ix, &v8, &s8, &f8);
    CHECK_MSG(v8 == n32 && s8 == 0, "%s: int8 copy of %zu shards valid, %zu stale", what, v8, s8);
    CHECK(sl_vindex_build_i8(ix, &written, &kept) == 0 && written == 0 && kept == n32);
    char i8dir[1100];
    snprintf(i8dir, sizeof i8dir, "%s/.scan-i8", dir);
    sl_test_rmdir(i8dir);
    /* the other tools' view: the same shards, the copy folder is not one of them */
    CHECK(sl_vindex_nshards(ix) == n_sh && sl_vindex_rows(ix) == rows);
    sl_vindex_close(ix);
    ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0 && sl_vindex_nshards(ix) == n_sh && sl_vindex_rows(ix) == rows);
    sl_vindex_set_rows_normalized(ix, normalized);
    /* a rebuild with nothing changed writes nothing */
    CHECK(sl_vindex_build_f16(ix, &written, &kept) == 0 && written == 0 && kept == n32);

    /* shard 3 rewritten (same shape, other rows): its copy is stale, the result is the new float32 one */
    float *X3 = X + (counts[0] + counts[1] + counts[2]) * (size_t)dim;
    for (size_t i = 0; i < counts[3] * (size_t)dim; i++)
        X3[i] = -X3[i];
    write_npy(dir, 3, X3, counts[3], dim, "float32");
    sl_vindex_close(ix);
    ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    sl_vindex_set_rows_normalized(ix, normalized);
    capture();
    search_once(ix, Q);
    const char *log = captured();
    CHECK_MSG(strstr(log, "stale or missing for 1 of 4 float32 shards") && strstr(log, "--build-f16"),
              "%s: no warning about the stale copy: '%s'", what, log);
    status(ix, n32 - 1, 1, what);
    check_same(ix, Q, nq, "one shard rewritten");
    CHECK(sl_vindex_build_f16(ix, &written, &kept) == 0 && written == 1 && kept == n32 - 1);
    search_once(ix, Q);
    status(ix, n32, 0, "rebuilt");
    check_same(ix, Q, nq, "rebuilt");

    /* the other row mode: every copy is stale for it */
    sl_vindex_set_rows_normalized(ix, !normalized);
    search_once(ix, Q);
    status(ix, 0, n32, "other row mode");
    check_same(ix, Q, nq, "other row mode");
    sl_vindex_set_rows_normalized(ix, normalized);

    /* an unreadable manifest: nothing is trusted */
    char mp[1100];
    snprintf(mp, sizeof mp, "%s/.scan-f16/manifest.json", dir);
    FILE *f = fopen(mp, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("{\"format\": \"stemline-f16-scan-copy\", \"format_version\": 1, \"shards\": [", f);
        fclose(f);
    }
    sl_vindex_close(ix);
    ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    sl_vindex_set_rows_normalized(ix, normalized);
    search_once(ix, Q);
    status(ix, 0, n32, "garbage manifest");
    check_same(ix, Q, nq, "garbage manifest");

    /* no copy at all: float32, no warning */
    CHECK(unlink(mp) == 0);
    sl_vindex_close(ix);
    ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    sl_vindex_set_rows_normalized(ix, normalized);
    sl_log_set_level(SL_LOG_WARN);
    capture();
    search_once(ix, Q);
    log = captured();
    CHECK_MSG(!*log, "%s: a missing copy is not a warning: '%s'", what, log);
    status(ix, 0, 0, "no copy");
    check_same(ix, Q, nq, "no copy");
    sl_vindex_close(ix);
    free(a);
    free(X);
    free(Q);
}

/* A copy file that changed size under the manifest: stale, never read. */
static void test_truncated_copy(const char *tmp)
{
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/f16trunc", tmp);
    mkdir(dir, 0777);
    const int dim = 24;
    const size_t rows = 50;
    float *X = malloc(rows * dim * sizeof *X), *a = malloc(dim * sizeof *a);
    for (int i = 0; i < dim; i++)
        a[i] = (float)gauss();
    unit(a, dim);
    make_rows(X, rows, dim, a);
    write_npy(dir, 0, X, rows, dim, "float32");
    sl_vindex *ix = NULL;
    size_t w, k;
    CHECK(sl_vindex_open(&ix, dir) == 0 && sl_vindex_build_f16(ix, &w, &k) == 0 && w == 1);
    snprintf(p, sizeof p, "%s/.scan-f16/shard-00000.npy", dir);
    CHECK(truncate(p, 200) == 0);
    search_once(ix, a);
    status(ix, 0, 1, "truncated copy");
    check_same(ix, a, 1, "truncated copy");
    sl_vindex_close(ix);
    free(X);
    free(a);
}

int main(void)
{
    const char *tmp = sl_test_tmpdir();
    sl_log_set_level(SL_LOG_WARN);
    for (int normalized = 0; normalized <= 1; normalized++) {
        run(tmp, 40, normalized);  /* a dim with SIMD tails */
        run(tmp, 512, normalized); /* CLAP's */
    }
    test_truncated_copy(tmp);
    return sl_test_finish("search_f16");
}
