/* Parity of every op on every non-reference backend present against the CPU
 * backend (tests/unit/parity_impl.h): "cuda-emu" always (the CUDA kernels run
 * by the launch emulation, FFTs by the CPU reference), "cuda" when a device
 * answers (else printed SKIPPED), including the hpss and melstats models run
 * unchanged on each. The independent double-precision references of every
 * backend are in test_ops.c.
 *
 * The search op topk is checked here too (topk_run): a running top k over
 * several blocks of scores, outputs of the tested backend poisoned, compared
 * with the CPU backend exactly (same indices, same score bits) and the CPU
 * backend with a brute-force sort of every score. */
#include "parity_impl.h"
#ifdef SL_PARITY_FMA
#include "kernels/cuda/emu/sl_emu_selftest.h"
#endif

/* ---- topk ---- */

typedef struct {
    uint32_t key;
    int64_t index;
} tk_ref;

/* The rank of kernels/ops.h written out independently of kernels/topk_key.h. */
static int tk_ref_cmp(const void *a, const void *b)
{
    const tk_ref *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return (x->index > y->index) - (x->index < y->index);
}
static uint32_t tk_ref_key(float v) /* NaN lowest, -0 == +0 */
{
    if (isnan(v))
        return 1;
    if (v == 0)
        return 0x80000000u;
    uint32_t u;
    memcpy(&u, &v, 4);
    return (u >> 31) ? ~u : u | 0x80000000u;
}

/* Scores of one case: random, or with ties (few distinct values), or with
 * NaN, +-inf and -0 mixed in. */
static float tk_value(int kind)
{
    float v = pr_rnd();
    if (kind >= 1)
        v = roundf(v * 4.0f) / 4.0f; /* 9 distinct values: ties everywhere */
    if (kind == 2) {
        float u = pr_rnd();
        if (u > 0.9f)
            v = NAN;
        else if (u > 0.85f)
            v = INFINITY;
        else if (u < -0.9f)
            v = -INFINITY;
        else if (u < -0.85f)
            v = -0.0f;
    }
    return v;
}

/* nq rows, k kept, blocks of the given column counts (each stored with ld =
 * n + pad, the padding +inf so a read past n wins and shows), first index base. */
static void case_topk(parity *P, size_t nq, size_t k, const size_t *blocks, size_t nb, int kind, size_t pad,
                      int64_t base)
{
    size_t total = 0;
    for (size_t b = 0; b < nb; b++)
        total += blocks[b];
    float *all = malloc((nq * total + 1) * sizeof *all);
    for (size_t i = 0; i < nq * total; i++)
        all[i] = tk_value(kind);
    float *score[2];
    int64_t *index[2];
    sl_op_ctx *ctxs[2] = {P->ref, P->ctx};
    int rc = 0;
    for (int s = 0; s < 2; s++) {
        float *ts = NULL;
        int64_t *ti = NULL, *poison = malloc(nq * k * sizeof *poison);
        for (size_t i = 0; i < nq * k; i++)
            poison[i] = (int64_t)0x5A5A5A5A5A5A5A5Aull;
        ts = pr_up(ctxs[s], NULL, nq * k); /* NaN */
        CHECK(sl_op_alloc(ctxs[s], (void **)&ti, nq * k * sizeof *ti) == 0);
        CHECK(sl_op_upload(ctxs[s], ti, poison, nq * k * sizeof *ti) == 0);
        size_t off = 0;
        for (size_t b = 0; b < nb; b++) {
            const size_t n = blocks[b], ld = n + pad;
            float *h = malloc((nq * ld + 1) * sizeof *h);
            for (size_t q = 0; q < nq; q++)
                for (size_t j = 0; j < ld; j++)
                    h[q * ld + j] = j < n ? all[q * total + off + j] : INFINITY;
            float *d = pr_up(ctxs[s], h, nq * ld);
            sl_topk_args a = {.nq = nq, .n = n, .k = k, .scores = d, .ld = ld, .base = base + (int64_t)off,
                              .reset = b == 0, .top_score = ts, .top_index = ti};
            int r = sl_op_topk(ctxs[s], &a);
            if (r < 0 && !rc)
                rc = r;
            sl_op_free(ctxs[s], d);
            free(h);
            off += n;
        }
        score[s] = pr_down(ctxs[s], ts, nq * k, &rc);
        index[s] = malloc(nq * k * sizeof *index[s]);
        int r = sl_op_download(ctxs[s], index[s], ti, nq * k * sizeof *ti);
        if (r < 0 && !rc)
            rc = r;
        sl_op_free(ctxs[s], ts);
        sl_op_free(ctxs[s], ti);
        free(poison);
    }
    CHECK_MSG(rc == 0, "topk: %s", sl_lasterr());
    /* brute force: every score of the row sorted, empties after */
    tk_ref *r = malloc((total + 1) * sizeof *r);
    size_t bad_ref = 0, bad = 0;
    for (size_t q = 0; q < nq; q++) {
        for (size_t j = 0; j < total; j++)
            r[j] = (tk_ref){tk_ref_key(all[q * total + j]), base + (int64_t)j};
        qsort(r, total, sizeof *r, tk_ref_cmp);
        for (size_t i = 0; i < k; i++) {
            const size_t o = q * k + i;
            int64_t want_i = i < total ? r[i].index : -1;
            float want_s = i < total ? all[q * total + (size_t)(r[i].index - base)] : -INFINITY;
            if (want_s == 0)
                want_s = 0.0f; /* -0 is stored as +0 */
            float got = score[0][o];
            int same = index[0][o] == want_i && (isnan(want_s) ? isnan(got) : memcmp(&got, &want_s, 4) == 0);
            if (!same && bad_ref++ < 3)
                fprintf(stderr, "topk cpu: row %zu rank %zu: index %lld score %g, brute force %lld %g\n", q, i,
                        (long long)index[0][o], (double)got, (long long)want_i, (double)want_s);
            float g1 = score[1][o];
            int same1 = index[1][o] == index[0][o] &&
                        (isnan(got) ? isnan(g1) != 0 : memcmp(&g1, &got, 4) == 0);
            if (!same1 && bad++ < 3)
                fprintf(stderr, "topk %s: row %zu rank %zu: index %lld score %g, cpu %lld %g\n", P->name, q, i,
                        (long long)index[1][o], (double)g1, (long long)index[0][o], (double)got);
        }
    }
    CHECK_MSG(bad_ref == 0, "topk: the cpu backend differs from brute force in %zu entries", bad_ref);
    char shape[128];
    static const char *kinds[] = {"random", "ties", "ties+nan/inf/-0"};
    snprintf(shape, sizeof shape, "q%zu k%zu %zu blocks, %zu cols, %s%s", nq, k, nb, total, kinds[kind],
             pad ? ", ld>n" : "");
    /* error: the fraction of entries that differ (index or score bits); exact */
    pr_report(P, "topk", shape, (double)bad / (double)(nq * k), 0);
    free(r);
    free(all);
    for (int s = 0; s < 2; s++) {
        free(score[s]);
        free(index[s]);
    }
}

/* reset with no block clears a list; no block and no reset leaves it alone */
static void case_topk_empty(parity *P)
{
    const size_t nq = 2, k = 3;
    float *ts = pr_up(P->ctx, NULL, nq * k), sc[6];
    int64_t *ti = NULL, ix[6];
    CHECK(sl_op_alloc(P->ctx, (void **)&ti, sizeof ix) == 0);
    sl_topk_args a = {.nq = nq, .n = 0, .k = k, .ld = 0, .reset = 1, .top_score = ts, .top_index = ti};
    CHECK(sl_op_topk(P->ctx, &a) == 0);
    a.reset = 0;
    CHECK(sl_op_topk(P->ctx, &a) == 0);
    CHECK(sl_op_download(P->ctx, sc, ts, sizeof sc) == 0);
    CHECK(sl_op_download(P->ctx, ix, ti, sizeof ix) == 0);
    int ok = 1;
    for (int i = 0; i < 6; i++)
        ok &= ix[i] == -1 && sc[i] == -INFINITY;
    pr_report(P, "topk", "q2 k3 no block: reset gives empty slots", ok ? 0.0 : 1.0, 0);
    /* argument checks (kernels/ops.c) */
    a.k = 0;
    CHECK(sl_op_topk(P->ctx, &a) == SL_EINVAL);
    a.k = k;
    a.n = 4;
    a.ld = 3;
    CHECK(sl_op_topk(P->ctx, &a) == SL_EINVAL); /* ld < n, scores NULL */
    a.base = -1;
    a.n = 0;
    CHECK(sl_op_topk(P->ctx, &a) == SL_EINVAL);
    sl_op_free(P->ctx, ts);
    sl_op_free(P->ctx, ti);
}

static void topk_run(const char *name)
{
    sl_op_ctx *ref = NULL, *ctx = NULL;
    if (sl_op_ctx_open(&ctx, name) < 0) {
        printf("parity: backend %-9s topk SKIPPED (%s)\n", name, sl_lasterr());
        return;
    }
    CHECK(sl_op_ctx_open(&ref, "cpu") == 0);
    printf("parity: backend %s on %s, topk against the cpu backend (and the cpu backend against brute force)\n",
           name, sl_op_ctx_device(ctx));
    parity P = {ref, ctx, name, 0, 0};
    static const size_t b1[] = {1}, b2[] = {2}, b3[] = {3, 4}, b4[] = {1000, 1500}, b5[] = {1024, 1, 2500, 300},
                        b6[] = {700, 700, 3000}, b7[] = {333, 777}, b8[] = {1500, 3000}, b9[] = {5, 0, 9};
    case_topk(&P, 1, 1, b1, 1, 0, 0, 0);              /* one score */
    case_topk(&P, 3, 5, b2, 1, 0, 0, 7);              /* k > n: empty slots */
    case_topk(&P, 2, 10, b3, 2, 1, 3, 0);             /* k > all columns, over two blocks, ld > n */
    case_topk(&P, 5, 1, b4, 2, 0, 0, 0);              /* k = 1 */
    case_topk(&P, 7, 37, b5, 4, 1, 0, 1000000007);    /* ties, a chunk and one more column */
    case_topk(&P, 4, 300, b6, 3, 2, 5, 0);            /* k > threads: several merge tiles; NaN, inf, -0 */
    case_topk(&P, 64, 16, b7, 2, 0, 0, 0);            /* many queries */
    case_topk(&P, 2, 2000, b8, 2, 1, 0, (int64_t)1 << 40); /* k > a chunk of survivors */
    case_topk(&P, 3, 4, b9, 3, 2, 1, 0);              /* an empty block in between */
    case_topk(&P, 5, 20, b9, 3, 2, 0, 0);             /* k > columns: NaN and -inf kept, then empty slots */
    case_topk_empty(&P);
    printf("parity: backend %s: %d topk lines\n", name, P.rows);
    sl_op_ctx_close(ctx);
    sl_op_ctx_close(ref);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
#ifdef SL_PARITY_FMA /* unit.parity.fma: the emulated kernels built with fused multiply-adds (-mfma) */
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("fma")) {
        printf("skipped: this CPU has no FMA instructions\n");
        return 77;
    }
    printf("parity: cuda-emu built with -ffp-contract=fast -mfma (fused multiply-adds, as nvcc contracts)\n");
    /* the build really contracts: a*b + c in a kernel is one rounding */
    CHECK_MSG(sl_emu_selftest(SL_EMU_TEST_FMA) == 1, "the fma build of the emulation does not contract a*b + c");
#endif
    pr_seed("test_parity");
#ifndef SL_PARITY_ONLY_CUDA /* cudamock.parity: the same test on the cudamock "cuda" backend only */
    parity_run("cuda-emu", 0);
    topk_run("cuda-emu");
#endif
#ifndef SL_PARITY_BIG
#define SL_PARITY_BIG 0 /* 1: cudamock.parity_big, the large shapes of gpu.cuda_parity too */
#endif
#ifndef SL_PARITY_FMA /* (the fused build is the emulation's; cudamock.parity covers "cuda") */
    parity_run("cuda", SL_PARITY_BIG);
    topk_run("cuda");
#endif
    return sl_test_finish("parity");
}
