/* HT-Demucs v4 (models/htdemucs.c) against the official demucs package:
 * golden vectors from tools/gen_golden_htdemucs.py (random weights, two
 * reduced configurations, float64 reference). Every stage of one segment (the
 * complex-as-channels spectrogram, each encoder of both branches, the cross
 * transformer's outputs, each decoder of both branches, the model's output)
 * and the whole-track output of the `demucs` command (mono mean/std
 * normalisation, apply_model split with overlap 0.25, shifts 0) are compared
 * on the CPU backend, on cuda-emu (the CUDA kernels through the launch
 * emulation) and on cuda where a device answers (skipped otherwise; the GPU
 * bundle runs it there): max|got - ref| / max|ref| <= 1e-4. Also: weights-file errors
 * (no file, a missing file, another architecture) and an unknown option, and
 * that the CPU's blocked spectrogram steps give the bits of one call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/safetensors.h"
#include "models/model_impl.h"
#include "pipeline/demucs_split.h"
#include "sl_golden.h"
#include "sl_test.h"

#define TOL 1e-4

static const char *golden_dir = "htdemucs";

static const char *weights_of(const char *name)
{
    static char path[1024];
    const char *p = slg_path_in(golden_dir, name);
    snprintf(path, sizeof path, "%.*s.safetensors", (int)(strlen(p) - 4), p);
    return path;
}

/* Per-channel views of in ([C][L]) and per-source, per-channel views of out ([S][C][L]), as the
 * separators take them (C, S <= 8). */
typedef struct {
    const float *in[8];
    float *row[8][8];
    float *const *out[8];
} row_views;

static void set_views(row_views *v, const float *in, float *out, size_t C, size_t S, size_t L)
{
    for (size_t c = 0; c < C; c++)
        v->in[c] = in + c * L;
    for (size_t s = 0; s < S; s++) {
        for (size_t c = 0; c < C; c++)
            v->row[s][c] = out + (s * C + c) * L;
        v->out[s] = v->row[s];
    }
}

static void report(const char *backend, const char *name, const char *stage, double e)
{
    printf("  %-9s %-7s %-6s rel err %.3g (tol %.0e) %s\n", backend, name, stage, e, TOL, e <= TOL ? "ok" : "FAIL");
    CHECK_MSG(e <= TOL, "%s %s %s: %g", backend, name, stage, e);
}

/* Reads the track in pieces of an awkward size. */
typedef struct {
    const float *x;
    size_t n, at, C;
} reader;

static long read_piece(void *arg, float *const *dst, long max)
{
    reader *r = arg;
    size_t k = r->n - r->at < 777 ? r->n - r->at : 777;
    if ((long)k > max)
        k = (size_t)max;
    for (size_t c = 0; c < r->C; c++)
        memcpy(dst[c], r->x + c * r->n + r->at, k * sizeof(float));
    r->at += k;
    return (long)k;
}

/* The demucs command's whole-track output through pipeline/demucs_split.h: the statistics from a first
 * pass, then the segments streamed through the cutter, the model and the joiner into out[S][C][n]. */
static int split_apply(sl_sep_model *m, const float *tr, size_t n, size_t C, size_t S, size_t L, int shifts,
                       float *out)
{
    sl_dmx_stats stt = {0, 0, 0};
    for (size_t at = 0; at < n; at += 333) {
        const float *p[8];
        for (size_t c = 0; c < C; c++)
            p[c] = tr + c * n + at;
        sl_dmx_stats_add(&stt, p, (int)C, n - at < 333 ? n - at : 333);
    }
    double mean, std;
    sl_dmx_stats_get(&stt, &mean, &std);
    sl_dmx_cutter cut;
    sl_dmx_joiner join;
    /* shifts > 0 (the full-size check with shifts): max_shift int(0.5 * samplerate), the default offsets */
    sl_dmx_geom g = {L, 0.25, shifts, shifts ? (size_t)sl_sep_get_info(m)->sample_rate / 2 : 0, {0}};
    sl_dmx_default_offsets(shifts, g.max_shift, g.offsets);
    int rc = sl_dmx_cutter_init(&cut, &g, (int)C, mean, std);
    if (!rc)
        rc = sl_dmx_joiner_init(&join, &g, (int)S, (int)C, 1.0, mean, std);
    float *seg = malloc(sizeof(float) * (C * L + 2 * S * C * L));
    float *srow[8], *yrow[8][8], *orow[8][8];
    float *const *yy[8], *const *oo[8];
    for (size_t c = 0; c < C; c++)
        srow[c] = seg + c * L;
    for (size_t s = 0; s < S; s++) {
        for (size_t c = 0; c < C; c++) {
            yrow[s][c] = seg + C * L + (s * C + c) * L;
            orow[s][c] = seg + C * L + S * C * L + (s * C + c) * L;
        }
        yy[s] = yrow[s];
        oo[s] = orow[s];
    }
    reader r = {tr, n, 0, C};
    size_t done = 0;
    sl_dmx_pos pos;
    long len;
    while (!rc && (len = sl_dmx_cutter_next(&cut, read_piece, &r, srow, &pos)) > 0) {
        rc = sl_sep_run(m, (const float *const *)srow, L, yy);
        if (rc)
            break;
        size_t k = sl_dmx_joiner_push(&join, (const float *const *const *)yy, &pos, oo);
        for (size_t s = 0; s < S; s++)
            for (size_t c = 0; c < C; c++)
                memcpy(out + (s * C + c) * n + done, orow[s][c], k * sizeof(float));
        done += k;
    }
    CHECK_MSG(rc || done == n, "the joiner emitted %zu of %zu samples", done, n);
    sl_dmx_cutter_free(&cut);
    sl_dmx_joiner_free(&join);
    free(seg);
    return rc;
}

static void run_case(const char *backend, const char *name)
{
    slg_file g;
    if (slg_load_in(&g, golden_dir, name) < 0) {
        CHECK_MSG(0, "golden %s/%s missing", golden_dir, name);
        return;
    }
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, backend) < 0) {
        printf("  %-9s %s SKIPPED (%s)\n", backend, name, sl_lasterr());
        slg_free(&g);
        return;
    }
    const char *thr = getenv("SL_HTDEMUCS_THREADS");
    if (thr && atoi(thr) > 1)
        CHECK(sl_op_ctx_set_threads(ctx, atoi(thr)) == 0);
    if (getenv("SL_HTDEMUCS_BF16X6") && !strcmp(backend, "cpu")) /* runtime.precision bf16x6, same bounds */
        CHECK(sl_op_ctx_set_precision(ctx, SL_PREC_BF16X6) == 0);
    sl_sep_model *m = NULL;
    int rc = sl_sep_open(&m, "htdemucs", weights_of(name), NULL, ctx);
    CHECK_MSG(rc == 0, "open %s on %s: %s", name, backend, sl_lasterr());
    if (rc) {
        sl_op_ctx_close(ctx);
        slg_free(&g);
        return;
    }
    const sl_sep_info *info = sl_sep_get_info(m);
    const size_t L = (size_t)slg_int(&g, "L"), n = (size_t)slg_int(&g, "n"), C = (size_t)info->channels;
    const size_t S = (size_t)info->n_sources;
    CHECK(sl_htdemucs_segment(m) == L);
    /* the stages of one segment, in the golden file's order */
    static const char *const order[] = {"mag", "enc", "tenc", "xf", "xt", "dec", "tdec"};
    char names[40][16];
    float *stages[40] = {0};
    const float *want[40] = {0};
    size_t sizes[40] = {0}, ns = 0;
    for (size_t o = 0; o < sizeof order / sizeof order[0]; o++) {
        int multi = !strcmp(order[o], "enc") || !strcmp(order[o], "tenc") || !strcmp(order[o], "dec") ||
                    !strcmp(order[o], "tdec");
        for (int i = 0; i < (multi ? 16 : 1); i++) {
            if (multi)
                snprintf(names[ns], sizeof names[ns], "%s%d", order[o], i);
            else
                snprintf(names[ns], sizeof names[ns], "%s", order[o]);
            want[ns] = slg_array(&g, names[ns], &sizes[ns]);
            if (!want[ns])
                break;
            stages[ns] = malloc(sizes[ns] * sizeof(float));
            ns++;
        }
    }
    size_t nin = 0, nout = 0;
    const float *in = slg_array(&g, "input", &nin), *ref = slg_array(&g, "out", &nout);
    CHECK(!in || (ref && nin == C * L && nout == S * C * L)); /* the full-size check has no stages */
    float *out = malloc(sizeof(float) * S * C * L);
    row_views v;
    set_views(&v, in, out, C, S, L);
    rc = in ? sl_htdemucs_run_stages(m, v.in, L, v.out, stages) : 0;
    CHECK_MSG(rc == 0, "%s %s: %s", backend, name, sl_lasterr());
    for (size_t i = 0; i < ns && rc == 0; i++)
        report(backend, name, names[i], slg_rel_err(stages[i], want[i], sizes[i]));
    if (rc == 0 && in)
        report(backend, name, "out", slg_rel_err(out, ref, S * C * L));
    /* the demucs command's whole-track output */
    size_t ntr = 0, nap = 0;
    const float *tr = slg_array(&g, "track", &ntr), *ap = slg_array(&g, "apply", &nap);
    CHECK(tr && ap && ntr == C * n && nap == S * C * n);
    float *whole = malloc(sizeof(float) * S * C * n);
    const int shifts = slg_int(&g, "shifts") > 0 ? slg_int(&g, "shifts") : 0;
    rc = split_apply(m, tr, n, C, S, L, shifts, whole);
    if (rc == 0)
        report(backend, name, shifts ? "shifts" : "apply", slg_rel_err(whole, ap, S * C * n));
    for (size_t i = 0; i < ns; i++)
        free(stages[i]);
    free(out);
    free(whole);
    sl_sep_close(m);
    sl_op_ctx_close(ctx);
    slg_free(&g);
}

/* A weights file with one tensor dropped or the architecture renamed: a clear error, no model. */
static void bad_weights(void)
{
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    sl_sep_model *m = NULL;
    CHECK(sl_sep_open(&m, "htdemucs", NULL, NULL, ctx) == SL_ECONFIG && !m);
    CHECK(sl_sep_open(&m, "htdemucs", "/nonexistent/h.safetensors", NULL, ctx) < 0 && !m);
    CHECK(strstr(sl_lasterr(), "/nonexistent/h.safetensors") != NULL);
    /* another architecture: a RoFormer file */
    char rf[1024];
    const char *p = slg_path_in("roformer", "bs_stereo_1stem");
    snprintf(rf, sizeof rf, "%.*s.safetensors", (int)(strlen(p) - 4), p);
    CHECK(sl_sep_open(&m, "htdemucs", rf, NULL, ctx) == SL_EFORMAT && !m);
    CHECK_MSG(strstr(sl_lasterr(), "stemline.arch") && strstr(sl_lasterr(), rf), "%s", sl_lasterr());
    /* an option it does not have, and shifts it refuses: too many, an offset above max_shift (4000 at
     * the golden models' 8 kHz), offsets that do not match shifts, a malformed list */
    const char *bad[][2] = {{"shift", "2"}, {"shifts", "33"}, {"shift_offsets", "0,4001"}, {"shift_offsets", "1,x"},
                            {"shift_offsets", "1,2,"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_cfg_opt o = {(char *)bad[i][0], (char *)bad[i][1], (char *)"test.yaml", 3, 9};
        sl_cfg_opts opts = {&o, 1};
        CHECK(sl_sep_open(&m, "htdemucs", weights_of("small"), &opts, ctx) == SL_ECONFIG && !m);
        CHECK_MSG(strstr(sl_lasterr(), "test.yaml:3:9") && strstr(sl_lasterr(), bad[i][0]), "%s", sl_lasterr());
    }
    sl_cfg_opt two[2] = {{(char *)"shifts", (char *)"2", (char *)"test.yaml", 3, 9},
                         {(char *)"shift_offsets", (char *)"0, 4000, 7", (char *)"test.yaml", 4, 9}};
    sl_cfg_opts opts2 = {two, 2};
    CHECK(sl_sep_open(&m, "htdemucs", weights_of("small"), &opts2, ctx) == SL_ECONFIG && !m);
    CHECK_MSG(strstr(sl_lasterr(), "test.yaml:4:9"), "%s", sl_lasterr());
    two[1].value = (char *)"0, 4000";
    CHECK(sl_sep_open(&m, "htdemucs", weights_of("small"), &opts2, ctx) == 0 && m);
    if (m) {
        const sl_sep_info *in = sl_sep_get_info(m);
        CHECK(in->split_shifts == 2 && in->split_n_offsets == 2 && in->split_offsets[1] == 4000);
        sl_sep_close(m);
    }
    sl_op_ctx_close(ctx);
}

/* The spectrogram steps in blocks (models/htdemucs.c spec_block: frames of _spec, frequency rows of
 * _ispec, one channel at a time) give the bits of one call over everything, as on the other
 * backends: the default CPU blocks, 3 (blocks that do not divide the frames or the bins) and 0. */
static void spec_blocks(const char *name)
{
    slg_file g;
    if (slg_load_in(&g, golden_dir, name) < 0) {
        CHECK_MSG(0, "golden %s/%s missing", golden_dir, name);
        return;
    }
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    sl_sep_model *m = NULL;
    CHECK_MSG(ctx && sl_sep_open(&m, "htdemucs", weights_of(name), NULL, ctx) == 0, "%s", sl_lasterr());
    size_t nin = 0;
    const float *in = slg_array(&g, "input", &nin);
    if (!m || !in) {
        sl_sep_close(m);
        sl_op_ctx_close(ctx);
        slg_free(&g);
        return;
    }
    const sl_sep_info *info = sl_sep_get_info(m);
    const size_t C = (size_t)info->channels, S = (size_t)info->n_sources, L = nin / C;
    const char *blocks[] = {NULL, "3", "0"};
    float *out[3];
    for (int k = 0; k < 3; k++) {
        out[k] = calloc(S * C * L, sizeof(float));
        row_views v;
        set_views(&v, in, out[k], C, S, L);
        if (blocks[k])
            setenv("SL_HTDEMUCS_SPEC_BLOCK", blocks[k], 1);
        else
            unsetenv("SL_HTDEMUCS_SPEC_BLOCK");
        CHECK_MSG(sl_sep_run(m, v.in, L, v.out) == 0, "%s", sl_lasterr());
    }
    unsetenv("SL_HTDEMUCS_SPEC_BLOCK");
    int same = !memcmp(out[0], out[1], S * C * L * sizeof(float)) && !memcmp(out[0], out[2], S * C * L * sizeof(float));
    printf("  cpu       %-7s spectrogram blocks (default, 3, one call): %s\n", name, same ? "same bits" : "FAIL");
    CHECK_MSG(same, "%s: the spectrogram blocks change the output", name);
    for (int k = 0; k < 3; k++)
        free(out[k]);
    sl_sep_close(m);
    sl_op_ctx_close(ctx);
    slg_free(&g);
}

/* Two workers (contexts) that open the same weights file read the tensors it stores as they are in
 * one mapping (models/htdemucs_load.c put), so the forms derived from them are made once and used
 * by both: fewer forms than two contexts' worth, each context using all of its own, the same bits
 * from both, and every form gone with the last context. */
static void shared_weights(const char *name)
{
    slg_file g;
    if (slg_load_in(&g, golden_dir, name) < 0) {
        CHECK_MSG(0, "golden %s/%s missing", golden_dir, name);
        return;
    }
    size_t nin = 0, bytes = 0, n0 = 0, n1 = 0, n2 = 0, uses = 0;
    const float *in = slg_array(&g, "input", &nin);
    sl_op_cpu_fixed_forms(&bytes, &n0, &uses);
    CHECK_MSG(n0 == 0, "%zu forms before the test", n0);
    sl_op_ctx *ctx[2] = {NULL, NULL};
    sl_sep_model *m[2] = {NULL, NULL};
    float *out[2] = {NULL, NULL};
    size_t per = 0;
    for (int k = 0; k < 2 && in; k++) {
        CHECK(sl_op_ctx_open(&ctx[k], "cpu") == 0);
        CHECK_MSG(ctx[k] && sl_sep_open(&m[k], "htdemucs", weights_of(name), NULL, ctx[k]) == 0, "%s", sl_lasterr());
        if (!m[k])
            break;
        const sl_sep_info *info = sl_sep_get_info(m[k]);
        const size_t C = (size_t)info->channels, S = (size_t)info->n_sources, L = nin / C;
        per = S * C * L;
        out[k] = calloc(per, sizeof(float));
        row_views v;
        set_views(&v, in, out[k], C, S, L);
        CHECK_MSG(sl_sep_run(m[k], v.in, L, v.out) == 0, "%s", sl_lasterr());
        sl_op_cpu_fixed_forms(&bytes, k ? &n2 : &n1, &uses);
    }
    const int same = out[0] && out[1] && !memcmp(out[0], out[1], per * sizeof(float));
    printf("  cpu       %-7s two contexts, one weights file: %zu forms for one, %zu for both (%zu uses), %s\n", name,
           n1, n2, uses, same ? "same bits" : "DIFFERENT");
    CHECK_MSG(n1 > 0 && n2 < 2 * n1 && uses == 2 * n1, "forms not shared: %zu for one context, %zu for two, %zu uses",
              n1, n2, uses);
    CHECK_MSG(same, "%s: two contexts of one weights file give different outputs", name);
    for (int k = 0; k < 2; k++) {
        sl_sep_close(m[k]);
        sl_op_ctx_close(ctx[k]);
        free(out[k]);
    }
    sl_op_cpu_fixed_forms(&bytes, &n0, &uses);
    CHECK_MSG(n0 == 0 && bytes == 0, "%zu forms left after both contexts closed", n0);
    slg_free(&g);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    /* tests/slow/test_htdemucs_full.sh: the released dimensions, whole-track output only, CPU */
    const char *full = getenv("SL_HTDEMUCS_FULL");
    if (full && *full) {
        golden_dir = full;
        run_case("cpu", "htdemucs_full");
        return sl_test_finish("htdemucs (full size)");
    }
    const char *backends[] = {"cpu", "cuda-emu", "cuda"};
    for (size_t b = 0; b < 3; b++) {
        run_case(backends[b], "small");
        run_case(backends[b], "bottom");
    }
    spec_blocks("small");
    spec_blocks("bottom");
    shared_weights("small");
    bad_weights();
    return sl_test_finish("htdemucs");
}
