/* pipeline/search*.c: exact top-k against brute force (ties, k > rows, float16,
 * rows that are not normalised, several queries at once), independence from the
 * block size, the jsonl lookups, the index.json sidecar, and sl_embed_mean; the
 * op path (sl_vindex_search_on: gemm + topk) on backends cpu, cuda-emu and, when
 * a device answers, cuda, against the CPU path for several block sizes (same
 * rows, same scores: tolerance 0), through its wider passes and CPU fallback. */
#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/npy.h"
#include "kernels/ops.h"
#include "pipeline/search.h"
#include "pipeline/search_dot.h"
#include "sl_test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double urand(void) /* [0, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}
static double nrand(void)
{
    double a = urand() + 1e-12, b = urand();
    return sqrt(-2 * log(a)) * cos(2 * M_PI * b);
}

/* Writes shards of the given row counts from X (rows in order) into dir with
 * prefix; jsonl rows get id "t<global row>". */
static void write_shards(const char *dir, const char *prefix, const float *X, const size_t *counts, size_t n_sh,
                         int dim, const char *dtype, size_t first_global)
{
    mkdir(dir, 0777);
    size_t off = 0;
    for (size_t s = 0; s < n_sh; s++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%sshard-%05zu.npy", dir, prefix, s);
        CHECK(sl_npy_write(p, X + off * (size_t)dim, counts[s], (size_t)dim, dtype) == 0);
        snprintf(p, sizeof p, "%s/%sshard-%05zu.jsonl", dir, prefix, s);
        FILE *f = fopen(p, "w");
        CHECK(f != NULL);
        for (size_t r = 0; f && r < counts[s]; r++)
            fprintf(f,
                    "{\"row\": %zu, \"id\": \"t%zu\", \"path\": \"/in/t%zu.wav\", \"start\": 0.0, \"end\": %zu.5, "
                    "\"duration\": 1.0, \"model\": \"m\", \"source\": \"mix\"}\n",
                    r, first_global + off + r, first_global + off + r, r);
        if (f)
            fclose(f);
        off += counts[s];
    }
}

/* The reference: every row scored as search_scan.c promises (query normalised in
 * double then rounded to float, double dot / double row norm), sorted by score
 * then row order. Returns the top k indices in idx, scores in sc. */
typedef struct {
    double s;
    size_t i;
} ref_t;
static int ref_cmp(const void *a, const void *b)
{
    const ref_t *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}
static size_t brute(const float *X, size_t rows, int dim, const float *query, size_t k, int divide, size_t *idx,
                    double *sc)
{
    float *q = malloc((size_t)dim * sizeof *q);
    double ss = 0;
    for (int i = 0; i < dim; i++)
        ss += (double)query[i] * query[i];
    for (int i = 0; i < dim; i++)
        q[i] = ss > 0 ? (float)(query[i] / sqrt(ss)) : 0.0f;
    ref_t *r = malloc(rows * sizeof *r);
    for (size_t j = 0; j < rows; j++) {
        const float *x = X + j * (size_t)dim;
        double dot = 0, n2 = 0;
        for (int i = 0; i < dim; i++)
            dot += (double)q[i] * (double)x[i];
        for (int i = 0; i < dim; i++)
            n2 += (double)x[i] * (double)x[i];
        r[j].s = !divide ? dot : (n2 > 0 ? dot / sqrt(n2) : 0.0);
        r[j].i = j;
    }
    qsort(r, rows, sizeof *r, ref_cmp);
    size_t n = k < rows ? k : rows;
    for (size_t j = 0; j < n; j++) {
        idx[j] = r[j].i;
        sc[j] = r[j].s;
    }
    free(r);
    free(q);
    return n;
}

/* Runs a search and checks it against brute force, exactly (same rows, same
 * order, same double scores). */
static void check_vs_brute(sl_vindex *ix, const float *X, size_t rows, int dim, const float *Qs, size_t nq,
                           size_t k, size_t block, int divide, const char *what)
{
    sl_search_hit *hits = calloc(nq * k, sizeof *hits);
    size_t n = 99;
    int rc = sl_vindex_search(ix, Qs, nq, k, block, hits, &n);
    CHECK_MSG(rc == 0, "%s: %s", what, sl_lasterr());
    size_t want = k < rows ? k : rows;
    CHECK_MSG(n == want, "%s: %zu hits, want %zu", what, n, want);
    size_t *idx = malloc(k * sizeof *idx);
    double *sc = malloc(k * sizeof *sc);
    int bad = 0;
    for (size_t q = 0; q < nq && !rc; q++) {
        brute(X, rows, dim, Qs + q * (size_t)dim, k, divide, idx, sc);
        for (size_t j = 0; j < n; j++) {
            const sl_search_hit *h = &hits[q * k + j];
            if (h->global != idx[j] || h->score != sc[j]) {
                if (bad++ < 5)
                    fprintf(stderr, "%s: query %zu rank %zu: row %llu score %.17g, brute force row %zu score %.17g\n",
                            what, q, j, (unsigned long long)h->global, h->score, idx[j], sc[j]);
            }
        }
    }
    CHECK_MSG(bad == 0, "%s: %d ranks differ from brute force", what, bad);
    free(idx);
    free(sc);
    free(hits);
}

/* Results of two searches must be bit-identical. */
static int same_hits(const sl_search_hit *a, const sl_search_hit *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i].global != b[i].global || a[i].score != b[i].score || a[i].shard != b[i].shard || a[i].row != b[i].row)
            return 0;
    return 1;
}

static void test_random(const char *tmp)
{
    const int dim = 37;
    const size_t counts[] = {400, 333, 1, 266};
    const size_t rows = 1000;
    float *X = malloc(rows * dim * sizeof *X);
    for (size_t i = 0; i < rows * dim; i++)
        X[i] = (float)nrand();
    /* normalise like the runner does */
    for (size_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)X[r * dim + i] * X[r * dim + i];
        for (int i = 0; i < dim; i++)
            X[r * dim + i] = (float)(X[r * dim + i] / sqrt(ss));
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/rand", tmp);
    write_shards(dir, "", X, counts, 4, dim, "float32", 0);
    sl_vindex *ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (!ix)
        return;
    CHECK(sl_vindex_rows(ix) == rows);
    CHECK(sl_vindex_dim(ix) == dim);
    CHECK(sl_vindex_nshards(ix) == 4);
    CHECK(sl_vindex_meta(ix) == NULL);          /* no sidecar */
    CHECK(sl_vindex_rows_normalized(ix) == 0); /* so rows are divided by their norms */

    const size_t nq = 6;
    float *Q = malloc(nq * dim * sizeof *Q);
    for (size_t i = 0; i < nq * dim; i++)
        Q[i] = (float)nrand() * 3.0f; /* any norm */
    memcpy(Q + 5 * dim, X + 123 * dim, dim * sizeof *Q); /* a row of the index */
    check_vs_brute(ix, X, rows, dim, Q, 1, 10, 0, 1, "1 query, k 10");
    check_vs_brute(ix, X, rows, dim, Q, nq, 10, 0, 1, "6 queries, k 10");
    check_vs_brute(ix, X, rows, dim, Q, nq, 1, 64, 1, "6 queries, k 1, blocks of 64");
    check_vs_brute(ix, X, rows, dim, Q, 2, 999, 100, 1, "2 queries, k 999");
    check_vs_brute(ix, X, rows, dim, Q, 2, 5000, 100, 1, "k > rows");

    /* the row itself comes first with score 1 */
    sl_search_hit h[3];
    size_t n = 0;
    CHECK(sl_vindex_search(ix, Q + 5 * dim, 1, 3, 0, h, &n) == 0 && n == 3);
    CHECK(h[0].global == 123);
    CHECK_NEAR(h[0].score, 1.0, 1e-6);
    CHECK(h[0].shard == 0 && h[0].row == 123);

    /* block size independence: bit-identical for 1, 7, 1000 rows per block */
    const size_t k = 25;
    const size_t blocks[] = {1, 7, 1000, 3, 400};
    sl_search_hit *ref = calloc(nq * k, sizeof *ref), *got = calloc(nq * k, sizeof *got);
    size_t nref = 0;
    CHECK(sl_vindex_search(ix, Q, nq, k, blocks[0], ref, &nref) == 0 && nref == k);
    for (size_t b = 1; b < 5; b++) {
        size_t ng = 0;
        CHECK(sl_vindex_search(ix, Q, nq, k, blocks[b], got, &ng) == 0 && ng == k);
        CHECK_MSG(same_hits(ref, got, nq * k), "blocks of %zu rows differ from blocks of 1", blocks[b]);
    }
    /* one query at a time (sgemv) gives what a batch of queries (sgemm) gives */
    for (size_t q = 0; q < nq; q++) {
        size_t ng = 0;
        CHECK(sl_vindex_search(ix, Q + q * dim, 1, k, 7, got, &ng) == 0 && ng == k);
        CHECK_MSG(same_hits(ref + q * k, got, k), "query %zu alone differs from the batch", q);
    }

    /* trusting the rows to be unit length gives the same ranking here */
    sl_vindex_set_rows_normalized(ix, 1);
    check_vs_brute(ix, X, rows, dim, Q, nq, 10, 0, 0, "rows trusted to be normalised");
    sl_vindex_set_rows_normalized(ix, 0);

    /* describe: id, path, start, end from the jsonl */
    CHECK(sl_vindex_search(ix, Q, 1, k, 0, ref, &nref) == 0);
    CHECK(sl_vindex_describe(ix, ref, nref) == 0);
    for (size_t j = 0; j < nref; j++) {
        char want[64];
        snprintf(want, sizeof want, "t%llu", (unsigned long long)ref[j].global);
        CHECK_MSG(ref[j].id && !strcmp(ref[j].id, want), "rank %zu: id %s, want %s", j, ref[j].id, want);
        CHECK(ref[j].path && !strncmp(ref[j].path, "/in/t", 5));
        CHECK(ref[j].start == 0.0 && ref[j].end == (double)ref[j].row + 0.5);
    }
    sl_search_hits_free(ref, nref);

    /* find_id: the vector of a row, from any shard */
    float v[37];
    size_t sh = 9, row = 9;
    CHECK(sl_vindex_find_id(ix, "t734", v, &sh, &row) == 0);
    CHECK(sh == 3 && row == 0);
    CHECK(memcmp(v, X + 734 * dim, sizeof v) == 0);
    CHECK(sl_vindex_find_id(ix, "t73", v, &sh, &row) == 0 && sh == 0 && row == 73);
    CHECK(sl_vindex_find_id(ix, "nope", v, NULL, NULL) == SL_ENOTFOUND);
    CHECK(strstr(sl_lasterr(), "nope") != NULL);

    free(ref);
    free(got);
    free(Q);
    free(X);
    sl_vindex_close(ix);
}

/* Exact ties: vectors of small integers give exact dot products whatever the
 * summation order; tied rows must come in row order, across shards and blocks. */
static void test_ties(const char *tmp)
{
    const int dim = 8;
    const size_t rows = 60;
    const size_t counts[] = {25, 35};
    float *X = malloc(rows * dim * sizeof *X);
    for (size_t r = 0; r < rows; r++)
        for (int i = 0; i < dim; i++)
            X[r * dim + i] = (float)((r % 4 == 1) ? (i == 0 ? 1 : 0) : (int)((r * 7 + (size_t)i * 3) % 5) - 2);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/ties", tmp);
    write_shards(dir, "", X, counts, 2, dim, "float32", 0);
    sl_vindex *ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (!ix)
        return;
    float q[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    /* rows 1, 5, 9, ... (15 rows) are all exactly q: score 1, in row order */
    sl_search_hit h[20], h2[20];
    size_t n = 0;
    for (size_t b = 1; b <= 61; b += 6) {
        CHECK(sl_vindex_search(ix, q, 1, 20, b, h, &n) == 0 && n == 20);
        for (size_t j = 0; j < 15; j++) {
            CHECK_MSG(h[j].global == 1 + 4 * j && h[j].score == 1.0, "block %zu rank %zu: row %llu score %g", b, j,
                      (unsigned long long)h[j].global, h[j].score);
        }
        if (b == 1)
            memcpy(h2, h, sizeof h);
        else
            CHECK(same_hits(h, h2, 20));
    }
    check_vs_brute(ix, X, rows, dim, q, 1, 20, 3, 1, "ties vs brute force");
    /* the same with two queries (sgemm) */
    float q2[16] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0};
    check_vs_brute(ix, X, rows, dim, q2, 2, 30, 4, 1, "ties, two queries");
    /* a zero query scores 0 everywhere: the first rows in order */
    float z[8] = {0};
    CHECK(sl_vindex_search(ix, z, 1, 5, 0, h, &n) == 0 && n == 5);
    for (size_t j = 0; j < 5; j++)
        CHECK(h[j].global == j && h[j].score == 0.0);
    sl_vindex_close(ix);
    free(X);
}

/* float16 shards and shards whose rows are not normalised. */
static void test_f16_and_scale(const char *tmp)
{
    const int dim = 64;
    const size_t rows = 500;
    const size_t counts[] = {123, 377};
    float *X = malloc(rows * dim * sizeof *X), *Xh = malloc(rows * dim * sizeof *Xh);
    float *Xs = malloc(rows * dim * sizeof *Xs);
    for (size_t i = 0; i < rows * dim; i++)
        X[i] = (float)nrand();
    for (size_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)X[r * dim + i] * X[r * dim + i];
        float scale = (float)(0.01 + 100 * urand());
        for (int i = 0; i < dim; i++) {
            X[r * dim + i] = (float)(X[r * dim + i] / sqrt(ss));
            Xh[r * dim + i] = sl_f16_to_f32(sl_f32_to_f16(X[r * dim + i]));
            Xs[r * dim + i] = X[r * dim + i] * scale;
        }
    }
    float Q[3 * 64];
    for (int i = 0; i < 3 * dim; i++)
        Q[i] = (float)nrand();
    memcpy(Q + 2 * dim, X + 321 * dim, dim * sizeof *Q);

    char dir[1024];
    snprintf(dir, sizeof dir, "%s/f16", tmp);
    write_shards(dir, "", X, counts, 2, dim, "float16", 0);
    sl_vindex *ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (ix) {
        check_vs_brute(ix, Xh, rows, dim, Q, 3, 10, 0, 1, "float16");
        check_vs_brute(ix, Xh, rows, dim, Q, 3, 10, 1, 1, "float16, blocks of 1");
        sl_search_hit h[2];
        size_t n;
        CHECK(sl_vindex_search(ix, Q + 2 * dim, 1, 2, 7, h, &n) == 0 && h[0].global == 321);
        CHECK_NEAR(h[0].score, 1.0, 1e-5);
        sl_vindex_close(ix);
    }

    snprintf(dir, sizeof dir, "%s/scaled", tmp);
    write_shards(dir, "", Xs, counts, 2, dim, "float32", 0);
    ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (ix) {
        check_vs_brute(ix, Xs, rows, dim, Q, 3, 10, 0, 1, "rows not normalised");
        /* cosine: the same ranking and scores (to rounding) as the unit rows */
        sl_search_hit a[30], b[30];
        size_t na, nb;
        CHECK(sl_vindex_search(ix, Q, 3, 10, 0, a, &na) == 0);
        sl_vindex *ix2 = NULL;
        snprintf(dir, sizeof dir, "%s/rand-unit", tmp);
        write_shards(dir, "", X, counts, 2, dim, "float32", 0);
        CHECK(sl_vindex_open(&ix2, dir) == 0);
        if (ix2) {
            CHECK(sl_vindex_search(ix2, Q, 3, 10, 0, b, &nb) == 0);
            for (size_t j = 0; j < 30; j++) {
                CHECK(a[j].global == b[j].global);
                CHECK_NEAR(a[j].score, b[j].score, 1e-6);
            }
            sl_vindex_close(ix2);
        }
        CHECK_NEAR(a[20].score, 1.0, 1e-6); /* query 2 is row 321, scaled */
        CHECK(a[20].global == 321);
        sl_vindex_close(ix);
    }
    free(X);
    free(Xh);
    free(Xs);
}

/* The sidecar: written, read back, sharded prefixes searched together. */
static void test_sidecar(const char *tmp)
{
    const int dim = 16;
    const size_t rows = 40;
    float *X = malloc(rows * dim * sizeof *X);
    for (size_t i = 0; i < rows * dim; i++)
        X[i] = (float)nrand();
    for (size_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)X[r * dim + i] * X[r * dim + i];
        for (int i = 0; i < dim; i++)
            X[r * dim + i] = (float)(X[r * dim + i] / sqrt(ss));
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/sharded", tmp);
    const size_t c0[] = {10, 5}, c1[] = {25};
    /* two machines of a 2-way sharded run: s0000of0002-* holds rows 0..14 */
    write_shards(dir, "s0000of0002-", X, c0, 2, dim, "float32", 0);
    write_shards(dir, "s0001of0002-", X + 15 * dim, c1, 1, dim, "float32", 15);

    sl_cfg_opt items[2] = {{.key = "n_mels", .value = "32"}, {.key = "fmax", .value = "8000"}};
    sl_cfg_opts opts = {items, 2};
    sl_shards_meta m = {.model = "melstats", .options = &opts, .params = "p \"q\"", .source = "mix",
                        .dtype = "float32", .dim = dim, .sample_rate = 16000, .channels = 1, .normalize = 1,
                        .window_samples = 48000, .hop_samples = 24000, .config_hash = "0123456789abcdef"};
    CHECK(sl_shards_write_meta(dir, "s0000of0002-", &m) == 0);
    sl_vindex *ix = NULL;
    /* one prefix without its sidecar: no meta, rows divided by their norms */
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (ix) {
        CHECK(sl_vindex_meta(ix) == NULL);
        CHECK(sl_vindex_rows_normalized(ix) == 0);
        sl_emb_model *em = (sl_emb_model *)1;
        CHECK(sl_vindex_open_model(ix, NULL, &em) == SL_ENOTFOUND && em == NULL);
        CHECK(strstr(sl_lasterr(), "no index.json") && strstr(sl_lasterr(), "re-run the job"));
        sl_vindex_close(ix);
    }
    CHECK(sl_shards_write_meta(dir, "s0001of0002-", &m) == 0);
    /* rewriting the same content leaves the file alone */
    char p[1200];
    snprintf(p, sizeof p, "%s/s0001of0002-index.json", dir);
    struct stat st1, st2;
    CHECK(stat(p, &st1) == 0);
    CHECK(sl_shards_write_meta(dir, "s0001of0002-", &m) == 0);
    CHECK(stat(p, &st2) == 0 && st1.st_ino == st2.st_ino);

    ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (ix) {
        const sl_index_meta *im = sl_vindex_meta(ix);
        CHECK(im != NULL);
        if (im) {
            CHECK(!strcmp(im->model, "melstats") && im->weights == NULL);
            CHECK(im->dim == dim && im->sample_rate == 16000 && im->channels == 1 && im->normalize == 1);
            CHECK(im->window_samples == 48000 && im->hop_samples == 24000);
            CHECK(im->options.n == 2 && !strcmp(im->options.items[0].key, "n_mels") &&
                  !strcmp(im->options.items[0].value, "32") && !strcmp(im->options.items[1].value, "8000"));
            CHECK(im->params && !strcmp(im->params, "p \"q\""));
            CHECK(im->config_hash && !strcmp(im->config_hash, "0123456789abcdef"));
            CHECK(im->version && *im->version);
        }
        CHECK(sl_vindex_rows_normalized(ix) == 1);
        CHECK(sl_vindex_rows(ix) == rows && sl_vindex_nshards(ix) == 3);
        /* every prefix is searched, in name order */
        check_vs_brute(ix, X, rows, dim, X + 30 * dim, 1, rows, 4, 0, "sharded prefixes");
        float v[16];
        size_t sh, row;
        CHECK(sl_vindex_find_id(ix, "t30", v, &sh, &row) == 0 && sh == 2 && row == 15);
        CHECK(memcmp(v, X + 30 * dim, sizeof v) == 0);
        sl_vindex_close(ix);
    }
    /* sidecars that disagree: refused */
    m.hop_samples = 48000;
    CHECK(sl_shards_write_meta(dir, "s0001of0002-", &m) == 0);
    ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == SL_EFORMAT && ix == NULL);
    CHECK(strstr(sl_lasterr(), "different embedding settings") != NULL);
    /* a malformed sidecar */
    FILE *f = fopen(p, "w");
    fputs("{\"format\": \"stemline-vector-index\", \"format_version\": 1,", f);
    fclose(f);
    CHECK(sl_vindex_open(&ix, dir) == SL_EFORMAT);
    free(X);
}

static void test_errors(const char *tmp)
{
    sl_vindex *ix = NULL;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/none", tmp);
    CHECK(sl_vindex_open(&ix, dir) == SL_ENOTFOUND && ix == NULL);
    mkdir(dir, 0777);
    CHECK(sl_vindex_open(&ix, dir) == SL_ENOTFOUND);
    /* shards of different dims */
    snprintf(dir, sizeof dir, "%s/dims", tmp);
    float x[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    size_t c1[] = {3}, c2[] = {2};
    write_shards(dir, "", x, c1, 1, 4, "float32", 0);
    write_shards(dir, "s0001of0002-", x, c2, 1, 6, "float32", 0);
    CHECK(sl_vindex_open(&ix, dir) == SL_EFORMAT);
    /* a truncated npy */
    snprintf(dir, sizeof dir, "%s/trunc", tmp);
    write_shards(dir, "", x, c1, 1, 4, "float32", 0);
    char p[1200];
    snprintf(p, sizeof p, "%s/shard-00000.npy", dir);
    CHECK(truncate(p, 100) == 0);
    CHECK(sl_vindex_open(&ix, dir) == SL_EFORMAT);
    CHECK(strstr(sl_lasterr(), "shard-00000.npy") != NULL);
    /* a jsonl with fewer rows than the npy */
    snprintf(dir, sizeof dir, "%s/short", tmp);
    write_shards(dir, "", x, c1, 1, 4, "float32", 0);
    snprintf(p, sizeof p, "%s/shard-00000.jsonl", dir);
    FILE *f = fopen(p, "w");
    fputs("{\"row\": 0, \"id\": \"a\", \"path\": \"a\", \"start\": 0.0, \"end\": 1.0}\n", f);
    fclose(f);
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (ix) {
        sl_search_hit h[3];
        size_t n;
        float q[4] = {1, 0, 0, 0};
        CHECK(sl_vindex_search(ix, q, 1, 3, 0, h, &n) == 0 && n == 3 && h[0].global == 2);
        CHECK(sl_vindex_describe(ix, h, n) == SL_EFORMAT);
        sl_search_hits_free(h, n);
        sl_vindex_close(ix);
    }
    /* describe reads the jsonl in 256 KiB pieces: a line longer than two of them, and a
     * last line without its newline, are still whole */
    snprintf(dir, sizeof dir, "%s/long-lines", tmp);
    write_shards(dir, "", x, c1, 1, 4, "float32", 0);
    snprintf(p, sizeof p, "%s/shard-00000.jsonl", dir);
    const size_t long_len = 600000;
    char *longp = malloc(long_len + 1);
    f = fopen(p, "w");
    if (longp && f) {
        memset(longp, 'p', long_len);
        longp[long_len] = 0;
        fprintf(f, "{\"row\": 0, \"id\": \"a\", \"path\": \"a\", \"start\": 0.0, \"end\": 1.0}\n"
                   "{\"row\": 1, \"id\": \"b\", \"path\": \"%s\", \"start\": 1.0, \"end\": 2.0}\n"
                   "{\"row\": 2, \"id\": \"c\", \"path\": \"c\", \"start\": 2.0, \"end\": 3.0}",
                longp);
    }
    if (f)
        fclose(f);
    ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (ix && longp) {
        sl_search_hit h[3];
        size_t n;
        float q[4] = {1, 0, 0, 0};
        CHECK(sl_vindex_search(ix, q, 1, 3, 0, h, &n) == 0 && n == 3);
        CHECK_MSG(sl_vindex_describe(ix, h, n) == 0, "%s", sl_lasterr());
        const char *want_id[3] = {"c", "b", "a"};
        for (size_t i = 0; i < n; i++) {
            CHECK_MSG(h[i].row == 2 - i && h[i].id && !strcmp(h[i].id, want_id[i]), "rank %zu: row %zu, id %s", i,
                      h[i].row, h[i].id ? h[i].id : "(none)");
            CHECK(h[i].start == (double)h[i].row && h[i].end == (double)h[i].row + 1);
        }
        CHECK(h[1].path && strlen(h[1].path) == long_len && !strcmp(h[1].path, longp));
        CHECK(h[0].path && !strcmp(h[0].path, "c"));
        sl_search_hits_free(h, n);
    }
    sl_vindex_close(ix);
    free(longp);
}

/* ---- the op path (sl_vindex_search_on: gemm + topk on a backend) ---- */

/* Log lines of the search (the op path says when it widens or hands queries to
 * the CPU path), captured so a test can see which path ran. */
static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* Two sets of shards of one job in one folder: every track id of the smaller
 * set is there twice. Lines the runner did not write (other key order, escapes)
 * go through the JSON parser; timeline rows are keyed by (id, window). */
static void test_duplicates(const char *tmp)
{
    const int dim = 4;
    float X[8 * 4];
    for (size_t i = 0; i < sizeof X / sizeof X[0]; i++)
        X[i] = (float)nrand();
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/dups", tmp);
    const size_t c6[] = {6}, c3[] = {3};
    write_shards(dir, "", X, c6, 1, dim, "float32", 0);
    sl_vindex *ix = NULL;
    sl_vindex_dups d;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    CHECK(ix && sl_vindex_duplicates(ix, &d) == 0 && d.rows == 6 && d.duplicated == 0 && !d.example[0]);
    CHECK(ix && sl_vindex_may_hold_duplicates(ix) == 0); /* one set: search skips the jsonl pass */
    sl_vindex_close(ix);
    write_shards(dir, "s0000of0002-", X, c3, 1, dim, "float32", 0); /* t0..t2 again */
    CHECK(sl_vindex_open(&ix, dir) == 0);
    CHECK(ix && sl_vindex_duplicates(ix, &d) == 0);
    CHECK(d.rows == 9 && d.duplicated == 3 && d.extra_rows == 3);
    CHECK(sl_vindex_may_hold_duplicates(ix) == 1); /* two sets (unsharded and of 2) */
    CHECK(!strcmp(d.example, "t0") && !strcmp(d.where[0], "s0000of0002-shard-00000.npy") &&
          !strcmp(d.where[1], "shard-00000.npy"));
    sl_vindex_close(ix);

    /* the parser's path: the same id once in the runner's form, once not */
    snprintf(dir, sizeof dir, "%s/dups2", tmp);
    mkdir(dir, 0777);
    snprintf(p, sizeof p, "%s/shard-00000.npy", dir);
    CHECK(sl_npy_write(p, X, 3, (size_t)dim, "float32") == 0);
    snprintf(p, sizeof p, "%s/shard-00000.jsonl", dir);
    write_text(p, "{\"row\": 0, \"id\": \"a/b\", \"path\": \"x\"}\n"
                  "{\"id\": \"a/b\", \"row\": 1}\n"
                  "{\"row\": 2, \"id\": \"c\\\"d\", \"path\": null}\n");
    CHECK(sl_vindex_open(&ix, dir) == 0);
    CHECK(ix && sl_vindex_duplicates(ix, &d) == 0 && d.rows == 3 && d.duplicated == 1 && !strcmp(d.example, "a/b"));
    /* a row without an id */
    write_text(p, "{\"row\": 0, \"id\": \"a\"}\n{\"row\": 1}\n{\"row\": 2, \"id\": \"b\"}\n");
    CHECK(ix && sl_vindex_duplicates(ix, &d) == SL_EFORMAT && strstr(sl_lasterr(), "shard-00000.jsonl:2"));
    /* timeline rows: one id, windows 0 and 1 are two rows; window 1 twice is a duplicate */
    write_text(p, "{\"row\": 0, \"id\": \"a\", \"path\": \"x\", \"window\": 0, \"start\": 0.0}\n"
                  "{\"row\": 1, \"id\": \"a\", \"path\": \"x\", \"window\": 1, \"start\": 10.0}\n"
                  "{\"row\": 2, \"id\": \"a\", \"path\": \"x\", \"window\": 10, \"start\": 10.0}\n");
    CHECK(ix && sl_vindex_duplicates(ix, &d) == 0 && d.rows == 3 && d.duplicated == 0);
    write_text(p, "{\"row\": 0, \"id\": \"a\", \"path\": \"x\", \"window\": 1, \"start\": 0.0}\n"
                  "{\"window\": 1, \"id\": \"a\", \"row\": 1}\n"
                  "{\"row\": 2, \"id\": \"a\", \"path\": \"x\", \"window\": 0, \"start\": 10.0}\n");
    CHECK(ix && sl_vindex_duplicates(ix, &d) == 0 && d.duplicated == 1 && d.extra_rows == 1);
    sl_vindex_close(ix);
}

/* The CPU scan's threads and dot-product paths (pipeline/search_dot.h): the
 * block scores of every ISA this CPU has within float rounding of the double
 * dot product, for dims that leave vector tails and query counts that leave
 * tile tails; and whole searches bit-identical to brute force and to each
 * other for 1-5 threads and every ISA (tied rows in row order across threads). */
static void test_threads_isa(const char *tmp)
{
    const size_t dims[] = {1, 7, 8, 16, 17, 37, 64, 512}, nqs[] = {1, 3, 4, 5, 9}, ms[] = {1, 2, 3, 5};
    for (int isa = SL_DOT_SCALAR; isa <= SL_DOT_AVX512; isa++)
        for (size_t a = 0; a < sizeof dims / sizeof dims[0]; a++)
            for (size_t b = 0; b < sizeof nqs / sizeof nqs[0]; b++)
                for (size_t c = 0; c < sizeof ms / sizeof ms[0]; c++) {
                    const size_t dim = dims[a], nq = nqs[b], m = ms[c];
                    float *B = malloc((m * dim + 1) * sizeof *B), *Q = malloc(nq * dim * sizeof *Q);
                    float *S = malloc(m * nq * sizeof *S);
                    for (size_t i = 0; i < m * dim + 1; i++)
                        B[i] = (float)nrand();
                    for (size_t i = 0; i < nq * dim; i++)
                        Q[i] = (float)nrand();
                    /* rows that start off any vector alignment */
                    sl_search_dot((sl_dot_isa)isa, B + 1, m, dim, Q, nq, S);
                    double worst = 0;
                    for (size_t r = 0; r < m; r++)
                        for (size_t q = 0; q < nq; q++) {
                            double d = 0, mag = 0;
                            for (size_t i = 0; i < dim; i++) {
                                d += (double)B[1 + r * dim + i] * Q[q * dim + i];
                                mag += fabs((double)B[1 + r * dim + i] * Q[q * dim + i]);
                            }
                            double e = fabs(S[r * nq + q] - d) / (mag > 0 ? mag : 1);
                            worst = e > worst ? e : worst;
                        }
                    CHECK_MSG(worst <= 1e-6 * (1 + (double)dim / 64), "dot %s dim %zu nq %zu m %zu: error %g",
                              sl_search_dot_isa_name((sl_dot_isa)isa), dim, nq, m, worst);
                    free(B);
                    free(Q);
                    free(S);
                }
    printf("  search_dot: paths scalar..%s checked (this CPU has %s)\n", sl_search_dot_isa_name(SL_DOT_AVX512),
           sl_search_dot_isa_name(sl_search_dot_isa()));

    char dir[1024];
    snprintf(dir, sizeof dir, "%s/rand", tmp);
    sl_vindex *ix = NULL;
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (!ix)
        return;
    const int dim = sl_vindex_dim(ix);
    const size_t rows = sl_vindex_rows(ix), nq = 5, k = 12;
    float *X = malloc(rows * (size_t)dim * sizeof *X), *Q = malloc(nq * (size_t)dim * sizeof *Q);
    char id[32];
    for (size_t r = 0; r < rows; r++) {
        snprintf(id, sizeof id, "t%zu", r);
        CHECK(sl_vindex_find_id(ix, id, X + r * (size_t)dim, NULL, NULL) == 0);
    }
    for (size_t i = 0; i < nq * (size_t)dim; i++)
        Q[i] = (float)nrand();
    sl_search_hit *ref = calloc(nq * k, sizeof *ref), *got = calloc(nq * k, sizeof *got);
    size_t nref = 0, ng = 0;
    setenv("SL_SEARCH_SIMD", "scalar", 1);
    CHECK(sl_vindex_search(ix, Q, nq, k, 50, ref, &nref) == 0 && nref == k);
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int t = 1; t <= 5; t++)
        for (int i = 0; i < 3; i++) {
            setenv("SL_SEARCH_SIMD", isas[i], 1);
            sl_vindex_set_threads(ix, t);
            char what[64];
            snprintf(what, sizeof what, "%d threads, %s", t, isas[i]);
            check_vs_brute(ix, X, rows, dim, Q, nq, k, 50, 1, what);
            CHECK(sl_vindex_search(ix, Q, 1, k, 7, got, &ng) == 0 && ng == k);
            CHECK_MSG(same_hits(ref, got, k), "%s: one query differs", what);
        }
    sl_vindex_close(ix);
    free(X);
    free(Q);
    free(ref);
    free(got);
    /* exact ties across threads: in row order */
    snprintf(dir, sizeof dir, "%s/ties", tmp);
    CHECK(sl_vindex_open(&ix, dir) == 0);
    if (ix) {
        float q[8] = {1, 0, 0, 0, 0, 0, 0, 0};
        sl_search_hit h[20];
        size_t n = 0;
        sl_vindex_set_threads(ix, 3);
        CHECK(sl_vindex_search(ix, q, 1, 20, 4, h, &n) == 0 && n == 20);
        for (size_t j = 0; j < 15; j++)
            CHECK_MSG(h[j].global == 1 + 4 * j && h[j].score == 1.0, "3 threads rank %zu: row %llu", j,
                      (unsigned long long)h[j].global);
        sl_vindex_close(ix);
    }
    unsetenv("SL_SEARCH_SIMD");
}

static char *log_buf;
static size_t log_len;
static FILE *log_f;
static void log_capture(void)
{
    free(log_buf);
    log_buf = NULL;
    log_f = open_memstream(&log_buf, &log_len);
    sl_log_set_file(log_f);
    sl_log_set_level(SL_LOG_DEBUG);
}
static const char *log_end(void)
{
    sl_log_set_file(NULL);
    sl_log_set_level(SL_LOG_WARN);
    fclose(log_f);
    return log_buf ? log_buf : "";
}

/* The op path on ctx against the CPU path, for several block sizes: the same rows
 * in the same order with the same double scores (tolerance 0, which includes the
 * required +-1e-5 on the scores), and the same as brute force when X is given. */
static void check_ops(sl_op_ctx *ctx, sl_vindex *ix, const float *X, int divide, const float *Q, size_t nq, size_t k,
                      const size_t *blocks, size_t nb, const char *what)
{
    const size_t rows = sl_vindex_rows(ix), want = k < rows ? k : rows;
    sl_search_hit *ref = calloc(nq * k, sizeof *ref), *got = calloc(nq * k, sizeof *got);
    size_t nref = 0;
    CHECK_MSG(sl_vindex_search(ix, Q, nq, k, 0, ref, &nref) == 0 && nref == want, "%s: cpu path: %s", what,
              sl_lasterr());
    if (X)
        check_vs_brute(ix, X, rows, sl_vindex_dim(ix), Q, nq, k, 0, divide, what);
    for (size_t b = 0; b < nb; b++) {
        size_t ng = 0;
        memset(got, 0xA5, nq * k * sizeof *got);
        int rc = sl_vindex_search_on(ix, ctx, Q, nq, k, blocks[b], got, &ng);
        CHECK_MSG(rc == 0 && ng == want, "%s on %s, blocks of %zu: rc %d, %zu hits: %s", what,
                  sl_op_ctx_backend(ctx), blocks[b], rc, ng, sl_lasterr());
        int bad = 0;
        for (size_t q = 0; rc == 0 && q < nq; q++)
            for (size_t j = 0; j < want; j++) {
                const sl_search_hit *a = &ref[q * k + j], *g = &got[q * k + j];
                int same = a->global == g->global && a->score == g->score && a->shard == g->shard && a->row == g->row &&
                           g->id == NULL;
                if (!same && bad++ < 3)
                    fprintf(stderr, "%s on %s, blocks of %zu: query %zu rank %zu: row %llu score %.17g, cpu row %llu "
                                    "score %.17g\n",
                            what, sl_op_ctx_backend(ctx), blocks[b], q, j, (unsigned long long)g->global, g->score,
                            (unsigned long long)a->global, a->score);
            }
        CHECK_MSG(bad == 0, "%s on %s, blocks of %zu: %d ranks differ from the cpu path", what,
                  sl_op_ctx_backend(ctx), blocks[b], bad);
    }
    free(ref);
    free(got);
}

static void unit_rows(float *X, size_t rows, int dim)
{
    for (size_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += (double)X[r * dim + i] * X[r * dim + i];
        for (int i = 0; i < dim; i++)
            X[r * dim + i] = (float)(X[r * dim + i] / sqrt(ss));
    }
}

static void test_backend(const char *tmp, const char *backend)
{
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, backend) != 0) {
        printf("search: backend %s SKIPPED (%s)\n", backend, sl_lasterr());
        return;
    }
    printf("search: op path on backend %s (%s)\n", backend, sl_op_ctx_device(ctx));
    char dir[1024];

    /* random rows in shards of 400, 333, 1 and 266 rows; rows divided by their norms, then trusted */
    {
        const int dim = 37;
        const size_t counts[] = {400, 333, 1, 266}, rows = 1000, nq = 6;
        float *X = malloc(rows * dim * sizeof *X), *Q = malloc(nq * dim * sizeof *Q);
        for (size_t i = 0; i < rows * dim; i++)
            X[i] = (float)nrand();
        unit_rows(X, rows, dim);
        for (size_t i = 0; i < nq * dim; i++)
            Q[i] = (float)nrand() * 3.0f;
        memcpy(Q + 5 * dim, X + 734 * dim, dim * sizeof *Q); /* the first row of the last shard */
        snprintf(dir, sizeof dir, "%s/ops-rand-%s", tmp, backend);
        write_shards(dir, "", X, counts, 4, dim, "float32", 0);
        sl_vindex *ix = NULL;
        CHECK(sl_vindex_open(&ix, dir) == 0);
        if (ix) {
            const size_t blocks[] = {17, 64, 333, 1000, 0};
            check_ops(ctx, ix, X, 1, Q, nq, 10, blocks, 5, "random, 6 queries, k 10");
            check_ops(ctx, ix, X, 1, Q, 1, 1, blocks + 1, 2, "random, 1 query, k 1");
            check_ops(ctx, ix, X, 1, Q, 2, 300, blocks + 2, 2, "random, k 300");
            check_ops(ctx, ix, X, 1, Q, 2, 5000, blocks + 1, 2, "random, k > rows");
            sl_vindex_set_rows_normalized(ix, 1);
            check_ops(ctx, ix, X, 0, Q, nq, 10, blocks + 1, 3, "random, rows trusted to be unit length");
            sl_vindex_close(ix);
        }
        free(X);
        free(Q);
    }

    /* float16 shards, rows not normalised */
    {
        const int dim = 64;
        const size_t counts[] = {123, 377}, rows = 500, nq = 3;
        float *X = malloc(rows * dim * sizeof *X), *Q = malloc(nq * dim * sizeof *Q);
        for (size_t i = 0; i < rows * dim; i++)
            X[i] = (float)nrand() * (float)(1 + (i / dim) % 7);
        for (size_t i = 0; i < rows * dim; i++)
            X[i] = sl_f16_to_f32(sl_f32_to_f16(X[i]));
        for (size_t i = 0; i < nq * dim; i++)
            Q[i] = (float)nrand();
        snprintf(dir, sizeof dir, "%s/ops-f16-%s", tmp, backend);
        write_shards(dir, "", X, counts, 2, dim, "float16", 0);
        sl_vindex *ix = NULL;
        CHECK(sl_vindex_open(&ix, dir) == 0);
        if (ix) {
            const size_t blocks[] = {13, 50, 0};
            check_ops(ctx, ix, X, 1, Q, nq, 10, blocks, 3, "float16");
            sl_vindex_close(ix);
        }
        free(X);
        free(Q);
    }

    /* near-ties at the top: 100 copies of the best match among 2000 rows, half exact
     * (rows 77 + 38 c), half moved by 1e-6 (their float scores collide, their exact scores do not, so
     * the float ranking is not the exact one) defeat the first 42 candidates; blocks
     * of 1000 widen to 336, blocks of 100 cannot and finish on the CPU path */
    {
        const int dim = 16;
        const size_t counts[] = {1200, 800}, rows = 2000;
        float *X = malloc(rows * dim * sizeof *X), Q[48];
        for (size_t i = 0; i < rows * dim; i++)
            X[i] = (float)nrand();
        unit_rows(X, rows, dim);
        for (int i = 0; i < dim; i++) {
            Q[i] = X[77 * dim + i] + 0.01f * (float)nrand();
            Q[dim + i] = (float)nrand();                        /* an ordinary query beside it */
            Q[2 * dim + i] = X[77 * dim + i] + 0.02f * (float)nrand(); /* another one among the copies */
        }
        for (size_t c = 1; c < 100; c++)
            for (int i = 0; i < dim; i++)
                X[(77 + 19 * c) * dim + i] = X[77 * dim + i] + (c % 2 ? 1e-6f * (float)nrand() : 0.0f);
        snprintf(dir, sizeof dir, "%s/ops-dups-%s", tmp, backend);
        write_shards(dir, "", X, counts, 2, dim, "float32", 0);
        sl_vindex *ix = NULL;
        CHECK(sl_vindex_open(&ix, dir) == 0);
        if (ix) {
            const size_t b1000[] = {1000}, b100[] = {100};
            log_capture();
            check_ops(ctx, ix, X, 1, Q, 1, 10, b1000, 1, "near-ties, blocks of 1000");
            const char *log = log_end();
            CHECK_MSG(strstr(log, "searching them again") && !strstr(log, "on the CPU"),
                      "blocks of 1000: expected one wider pass, log: %s", log);
            log_capture();
            check_ops(ctx, ix, X, 1, Q, 3, 10, b100, 1, "near-ties, 3 queries, blocks of 100");
            log = log_end();
            CHECK_MSG(strstr(log, "finishing them on the CPU"), "blocks of 100: expected the CPU path, log: %s", log);
            /* the exact copies of row 77 tie: they come in row order, consecutively */
            sl_search_hit h[100];
            size_t n = 0, seen = 0;
            CHECK(sl_vindex_search_on(ix, ctx, Q, 1, 100, 0, h, &n) == 0 && n == 100);
            for (size_t j = 0; j < n; j++)
                if (h[j].global >= 77 && (h[j].global - 77) % 38 == 0 && h[j].global < 77 + 19 * 100) {
                    CHECK_MSG(h[j].global == 77 + 38 * seen, "rank %zu: copy %llu, want %zu", j,
                              (unsigned long long)h[j].global, 77 + 38 * seen);
                    seen++;
                }
            CHECK_MSG(seen == 50, "%zu exact copies of row 77 among the first 100, want 50", seen);
            sl_vindex_close(ix);
        }
        free(X);
    }

    /* exact ties, a zero query, rows that are not finite */
    {
        const int dim = 8;
        const size_t counts[] = {25, 35, 40}, rows = 100;
        float *X = malloc(rows * dim * sizeof *X);
        for (size_t r = 0; r < rows; r++)
            for (int i = 0; i < dim; i++)
                X[r * dim + i] = (float)((r % 4 == 1) ? (i == 0 ? 1 : 0) : (int)((r * 7 + (size_t)i * 3) % 5) - 2);
        X[3 * dim + 2] = NAN;
        X[50 * dim] = INFINITY;
        for (size_t r = 60; r < 100; r++)
            X[r * dim + 1] = (r % 3) ? NAN : -INFINITY;
        snprintf(dir, sizeof dir, "%s/ops-ties-%s", tmp, backend);
        write_shards(dir, "", X, counts, 3, dim, "float32", 0);
        sl_vindex *ix = NULL;
        CHECK(sl_vindex_open(&ix, dir) == 0);
        if (ix) {
            const size_t blocks[] = {1, 3, 16, 0}; /* blocks of one row too */
            float q[16] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0}, z[8] = {0};
            check_ops(ctx, ix, NULL, 1, q, 2, 20, blocks, 4, "exact ties, rows with NaN / inf");
            check_ops(ctx, ix, NULL, 1, q, 1, 70, blocks + 1, 3, "k past the finite rows: -inf scores in row order");
            check_ops(ctx, ix, NULL, 1, z, 1, 5, blocks + 1, 3, "a zero query");
            sl_vindex_close(ix);
        }
        free(X);
    }
    sl_op_ctx_close(ctx);
}

static void test_embed_mean(void)
{
    double vsum[3] = {3, 0, 4};
    float v[3];
    CHECK(sl_embed_mean(vsum, 2.0, 3, 0, v) == 0);
    CHECK(v[0] == 1.5f && v[1] == 0.0f && v[2] == 2.0f);
    CHECK(sl_embed_mean(vsum, 2.0, 3, 1, v) == 0);
    CHECK_NEAR(v[0], 0.6, 1e-7);
    CHECK_NEAR(v[2], 0.8, 1e-7);
    CHECK(sl_embed_mean(vsum, 0.0, 3, 1, v) == SL_EEMPTY);
    vsum[1] = INFINITY;
    CHECK(sl_embed_mean(vsum, 1.0, 3, 1, v) == SL_ENUMERIC);
}

int main(void)
{
    const char *tmp = sl_test_tmpdir();
    test_random(tmp);
    test_ties(tmp);
    test_f16_and_scale(tmp);
    test_sidecar(tmp);
    test_errors(tmp);
    test_duplicates(tmp);
    test_threads_isa(tmp);
    test_embed_mean();
    sl_log_set_level(SL_LOG_WARN);
    test_backend(tmp, "cpu");      /* the op path on the reference backend */
    test_backend(tmp, "cuda-emu"); /* the CUDA kernels through the launch emulation */
    test_backend(tmp, "cuda");     /* when a device answers */
    return sl_test_finish("search");
}
