/* hpss separation model:
 *  - harmonic + percussive + residual == input (max abs error <= 1e-5 x peak)
 *    on noise, a synthetic mix, and awkward lengths (1 sample .. 1 s + 7);
 *  - output length == input length, channels separated independently;
 *  - margin 1: masks sum to one, so the residual is only STFT round-trip error;
 *  - a steady sine + clicks: the harmonic stem holds most of the sine, the
 *    percussive stem most of the clicks (projection coefficients, stated below);
 *  - option validation errors carry file:line:col and the key;
 *  - the CPU backend frames and transforms in blocks of frames, reading the
 *    input and writing the outputs in place: any block size (1, 7, the
 *    default, the whole track: SL_HPSS_BLOCK_FRAMES) and 1 or 3 threads give
 *    the same bits, for lengths around the block edges;
 *  - backend cuda: opens where a device answers, a clear error elsewhere. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "models/model.h"
#include "sl_test.h"

static uint64_t rs = 0x9E3779B97F4A7C15ULL;
static float rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (float)((double)(rs >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

typedef struct {
    float *in[2];
    float *buf[3][2];
    float *const *out[3];
    float *rows[3][2];
} stems;

static void stems_alloc(stems *s, size_t n)
{
    for (int c = 0; c < 2; c++)
        s->in[c] = calloc(n ? n : 1, sizeof(float));
    for (int k = 0; k < 3; k++) {
        for (int c = 0; c < 2; c++) {
            s->buf[k][c] = malloc((n ? n : 1) * sizeof(float));
            for (size_t i = 0; i < n; i++)
                s->buf[k][c][i] = NAN; /* poison: every sample must be written */
            s->rows[k][c] = s->buf[k][c];
        }
        s->out[k] = s->rows[k];
    }
}

static void stems_free(stems *s)
{
    for (int c = 0; c < 2; c++) {
        free(s->in[c]);
        for (int k = 0; k < 3; k++)
            free(s->buf[k][c]);
    }
}

static int run(sl_sep_model *m, stems *s, size_t n)
{
    const float *in[2] = {s->in[0], s->in[1]};
    return sl_sep_run(m, in, n, s->out);
}

/* max |x - h - p - r| / peak over both channels */
static double sum_error(const stems *s, size_t n)
{
    double peak = 1e-30, err = 0;
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < n; i++) {
            double x = s->in[c][i];
            peak = fmax(peak, fabs(x));
            double e = fabs(x - ((double)s->buf[0][c][i] + s->buf[1][c][i] + s->buf[2][c][i]));
            if (!(e <= err))
                err = isnan(e) ? INFINITY : e;
        }
    return err / peak;
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static sl_sep_model *open_hpss(sl_op_ctx *ctx, const sl_cfg_opts *opts)
{
    sl_sep_model *m = NULL;
    int rc = sl_sep_open(&m, "hpss", NULL, opts, ctx);
    CHECK_MSG(rc == 0, "sl_sep_open: %s", sl_lasterr());
    return m;
}

static void test_info(sl_op_ctx *ctx)
{
    sl_sep_model *m = open_hpss(ctx, NULL);
    if (!m)
        return;
    const sl_sep_info *info = sl_sep_get_info(m);
    CHECK(!strcmp(info->name, "hpss") && info->sample_rate == 44100 && info->channels == 2 && info->n_sources == 3);
    CHECK(!strcmp(info->sources[0], "harmonic") && !strcmp(info->sources[1], "percussive") &&
          !strcmp(info->sources[2], "residual"));
    CHECK(strstr(info->params, "n_fft=2048") && strstr(info->params, "hop=512") &&
          strstr(info->params, "kernel_harmonic=31") && strstr(info->params, "margin_harmonic=2"));
    printf("hpss params: %s\n", info->params);
    CHECK(!strcmp(sl_sep_model_names[0], "hpss") && !strcmp(sl_sep_model_names[1], "umx") &&
          !strcmp(sl_sep_model_names[2], "bs_roformer") && !strcmp(sl_sep_model_names[3], "mel_band_roformer") &&
          !strcmp(sl_sep_model_names[4], "htdemucs") && sl_sep_model_names[5] == NULL);
    sl_sep_close(m);
}

static void test_sum_and_lengths(sl_op_ctx *ctx)
{
    sl_sep_model *m = open_hpss(ctx, NULL);
    if (!m)
        return;
    const size_t lens[] = {1, 2, 100, 1024, 1025, 4410, 44100 + 7};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        size_t n = lens[li];
        stems s;
        stems_alloc(&s, n);
        for (size_t i = 0; i < n; i++) {
            s.in[0][i] = 0.5f * rnd();
            s.in[1][i] = 0.3f * sinf(0.05f * (float)i) + 0.05f * rnd();
        }
        int rc = run(m, &s, n);
        CHECK_MSG(rc == 0, "n=%zu: %s", n, sl_lasterr());
        double e = sum_error(&s, n);
        printf("hpss length %6zu: max|x - (h+p+r)|/peak = %.3g (tol 1e-5)\n", n, e);
        CHECK_MSG(e <= 1e-5, "n=%zu: sum error %g", n, e);
        stems_free(&s);
    }
    /* channels are independent: a silent channel stays silent in every stem */
    size_t n = 22050;
    stems s;
    stems_alloc(&s, n);
    for (size_t i = 0; i < n; i++)
        s.in[0][i] = rnd();
    CHECK(run(m, &s, n) == 0);
    int silent = 1;
    for (int k = 0; k < 3; k++)
        for (size_t i = 0; i < n; i++)
            silent &= s.buf[k][1][i] == 0.0f;
    CHECK_MSG(silent, "silent right channel produced non-zero stems");
    /* deterministic: a second run gives the same bits */
    float *h0 = malloc(n * sizeof(float));
    memcpy(h0, s.buf[0][0], n * sizeof(float));
    CHECK(run(m, &s, n) == 0);
    CHECK(!memcmp(h0, s.buf[0][0], n * sizeof(float)));
    free(h0);
    stems_free(&s);
    /* zero length: nothing to do, no error */
    stems_alloc(&s, 0);
    CHECK(run(m, &s, 0) == 0);
    stems_free(&s);
    sl_sep_close(m);
}

static void test_margin1(sl_op_ctx *ctx)
{
    sl_cfg_opt o[] = {{"margin", "1", "job.yaml", 3, 5}};
    sl_cfg_opts opts = {o, 1};
    sl_sep_model *m = open_hpss(ctx, &opts);
    if (!m)
        return;
    size_t n = 30000;
    stems s;
    stems_alloc(&s, n);
    double peak = 0;
    for (size_t i = 0; i < n; i++) {
        s.in[0][i] = rnd();
        s.in[1][i] = 0.5f * sinf(0.01f * (float)i);
        peak = fmax(peak, fabs(s.in[0][i]));
    }
    CHECK(run(m, &s, n) == 0);
    double r = 0;
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < n; i++)
            r = fmax(r, fabs(s.buf[2][c][i]));
    printf("hpss margin 1: max|residual|/peak = %.3g (tol 1e-5)\n", r / peak);
    CHECK_MSG(r / peak <= 1e-5, "margin 1 residual %g", r / peak);
    stems_free(&s);
    sl_sep_close(m);
}

/* Steady 440 Hz sine + a click every 0.25 s, 2 s at 44.1 kHz. The harmonic
 * stem's projection on the sine, <h,s>/<s,s>, must be >= 0.9 and on the clicks
 * <h,c>/<c,c> <= 0.1; the percussive stem's projection on the clicks >= 0.8 and
 * on the sine <= 0.02 (defaults: margin 2, so some of each goes to the residual;
 * measured 0.996 / 0.021 / 0.993 / 0.002). */
static void test_separation(sl_op_ctx *ctx)
{
    sl_sep_model *m = open_hpss(ctx, NULL);
    if (!m)
        return;
    const size_t n = 88200;
    float *sine = malloc(n * sizeof(float)), *clk = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++)
        sine[i] = 0.3f * sinf(2.0f * (float)M_PI * 440.0f * (float)i / 44100.0f);
    for (size_t t = 5000; t + 64 < n; t += 11025)
        for (size_t k = 0; k < 64; k++) /* a short decaying noise burst */
            clk[t + k] = 0.9f * rnd() * expf(-(float)k / 12.0f);
    stems s;
    stems_alloc(&s, n);
    for (int c = 0; c < 2; c++)
        for (size_t i = 0; i < n; i++)
            s.in[c][i] = sine[i] + clk[i];
    CHECK(run(m, &s, n) == 0);
    double ss = dot(sine, sine, n), cc = dot(clk, clk, n);
    double h_s = dot(s.buf[0][0], sine, n) / ss, h_c = dot(s.buf[0][0], clk, n) / cc;
    double p_s = dot(s.buf[1][0], sine, n) / ss, p_c = dot(s.buf[1][0], clk, n) / cc;
    printf("hpss sine+clicks: harmonic <h,sine>/|sine|^2 %.3f <h,clicks>/|clicks|^2 %.3f; "
           "percussive <p,sine> %.3f <p,clicks> %.3f\n",
           h_s, h_c, p_s, p_c);
    CHECK_MSG(h_s >= 0.9, "harmonic holds too little of the sine: %g", h_s);
    CHECK_MSG(h_c <= 0.1, "harmonic holds too much of the clicks: %g", h_c);
    CHECK_MSG(p_c >= 0.8, "percussive holds too little of the clicks: %g", p_c);
    CHECK_MSG(p_s <= 0.02, "percussive holds too much of the sine: %g", p_s);
    CHECK(sum_error(&s, n) <= 1e-5);
    stems_free(&s);
    free(sine);
    free(clk);
    sl_sep_close(m);
}

static void expect_opt_error(sl_op_ctx *ctx, const char *key, const char *value, const char *needle)
{
    sl_cfg_opt o[] = {{(char *)key, (char *)value, "jobs/a.yaml", 12, 7}};
    sl_cfg_opts opts = {o, 1};
    sl_sep_model *m = NULL;
    int rc = sl_sep_open(&m, "hpss", NULL, &opts, ctx);
    char want[160];
    snprintf(want, sizeof want, "jobs/a.yaml:12:7: key 'separation.options.%s': ", key);
    CHECK_MSG(rc == SL_ECONFIG && !m, "%s=%s accepted", key, value);
    CHECK_MSG(strstr(sl_lasterr(), want) == sl_lasterr(), "message '%s' lacks '%s'", sl_lasterr(), want);
    CHECK_MSG(strstr(sl_lasterr(), needle) != NULL, "message '%s' lacks '%s'", sl_lasterr(), needle);
    sl_sep_close(m);
}

static void test_options(sl_op_ctx *ctx)
{
    expect_opt_error(ctx, "kernel_harmonic", "30", "odd");
    expect_opt_error(ctx, "kernel_harmonic", "257", "out of range");
    expect_opt_error(ctx, "kernel_percussive", "1", "out of range");
    expect_opt_error(ctx, "kernel_percussive", "seven", "integer");
    expect_opt_error(ctx, "margin", "0.5", "out of range");
    expect_opt_error(ctx, "power", "-2", "out of range");
    expect_opt_error(ctx, "power", "inf", "finite");
    expect_opt_error(ctx, "hop", "1500", "n_fft/2");
    expect_opt_error(ctx, "pad_mode", "wrap", "reflect, constant");
    expect_opt_error(ctx, "kernel_size", "31", "unknown option");

    sl_cfg_opt good[] = {{"n_fft", "1024", "j.yaml", 1, 1},       {"hop", "256", "j.yaml", 2, 1},
                         {"kernel_harmonic", "17", "j.yaml", 3, 1}, {"kernel_percussive", "9", "j.yaml", 4, 1},
                         {"margin_harmonic", "1.5", "j.yaml", 5, 1}, {"margin_percussive", "3", "j.yaml", 6, 1},
                         {"power", "1", "j.yaml", 7, 1},              {"pad_mode", "constant", "j.yaml", 8, 1}};
    sl_cfg_opts opts = {good, sizeof good / sizeof good[0]};
    sl_sep_model *m = open_hpss(ctx, &opts);
    if (m) {
        const char *p = sl_sep_get_info(m)->params;
        CHECK(strstr(p, "n_fft=1024") && strstr(p, "hop=256") && strstr(p, "kernel_percussive=9") &&
              strstr(p, "margin_percussive=3") && strstr(p, "pad_mode=constant"));
        size_t n = 5000;
        stems s;
        stems_alloc(&s, n);
        for (size_t i = 0; i < n; i++)
            s.in[0][i] = s.in[1][i] = rnd();
        CHECK(run(m, &s, n) == 0 && sum_error(&s, n) <= 1e-5);
        stems_free(&s);
        sl_sep_close(m);
    }
    m = NULL;
    CHECK(sl_sep_open(&m, "demucs", NULL, NULL, ctx) == SL_ECONFIG && !m && strstr(sl_lasterr(), "hpss"));
    CHECK(sl_sep_open(&m, "hpss", "w.safetensors", NULL, ctx) == SL_ECONFIG && !m);
}

/* The blocks change where frames live, never what is computed: every block
 * size and thread count gives the bits of the whole track at once. */
static void test_blocks(void)
{
    const char *blocks[] = {"0", "1", "7", "64", NULL}; /* 0: the whole track; NULL: the default */
    const size_t lens[] = {44100 + 7, 64 * 512, 64 * 512 + 1, 700};
    int bad = 0;
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        const size_t n = lens[li];
        stems ref, s;
        stems_alloc(&ref, n);
        stems_alloc(&s, n);
        for (int c = 0; c < 2; c++)
            for (size_t i = 0; i < n; i++)
                ref.in[c][i] = s.in[c][i] = 0.4f * rnd() + 0.3f * sinf(0.01f * (float)(i * (size_t)(c + 1)));
        for (size_t bi = 0; bi <= sizeof blocks / sizeof *blocks - 1; bi++)
            for (int threads = 1; threads <= 3; threads += 2) {
                if (blocks[bi])
                    setenv("SL_HPSS_BLOCK_FRAMES", blocks[bi], 1);
                else
                    unsetenv("SL_HPSS_BLOCK_FRAMES");
                sl_op_ctx *ctx = NULL;
                CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
                CHECK(sl_op_ctx_set_threads(ctx, threads) == 0);
                sl_sep_model *m = open_hpss(ctx, NULL);
                stems *o = bi == 0 && threads == 1 ? &ref : &s;
                CHECK(m && run(m, o, n) == 0);
                for (int k = 0; k < 3 && o == &s; k++)
                    for (int c = 0; c < 2; c++)
                        if (memcmp(ref.buf[k][c], s.buf[k][c], n * sizeof(float))) {
                            printf("hpss blocks: n %zu, block %s, %d threads: stem %d channel %d differs from the "
                                   "whole track at once\n", n, blocks[bi] ? blocks[bi] : "default", threads, k, c);
                            bad++;
                        }
                sl_sep_close(m);
                sl_op_ctx_close(ctx);
            }
        CHECK(sum_error(&ref, n) <= 1e-5);
        stems_free(&ref);
        stems_free(&s);
    }
    unsetenv("SL_HPSS_BLOCK_FRAMES");
    printf("hpss blocks: 4 lengths x block sizes 0, 1, 7, 64, default x 1 and 3 threads: %d differ\n", bad);
    CHECK(bad == 0);
}

/* On a GPU the model runs unchanged on the CUDA backend; the comparison with
 * the CPU backend is in test_parity (cuda-emu always, cuda on a GPU). */
static void test_cuda(void)
{
    sl_op_ctx *ctx = NULL;
    int rc = sl_op_ctx_open(&ctx, "cuda");
    if (rc < 0) {
        CHECK(rc == SL_ENODEVICE || rc == SL_EDEVICE);
        printf("hpss on cuda: SKIPPED, no device (%s)\n", sl_lasterr());
        return;
    }
    sl_sep_model *m = NULL;
    rc = sl_sep_open(&m, "hpss", NULL, NULL, ctx);
    printf("hpss on cuda: %d %s\n", rc, rc ? sl_lasterr() : "opened");
    CHECK_MSG(rc == 0 && m, "hpss must open on the CUDA backend: %s", sl_lasterr());
    sl_sep_close(m);
    sl_op_ctx_close(ctx);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, "cpu") != 0) {
        fprintf(stderr, "cpu backend: %s\n", sl_lasterr());
        return 1;
    }
    test_info(ctx);
    test_sum_and_lengths(ctx);
    test_margin1(ctx);
    test_separation(ctx);
    test_options(ctx);
    test_blocks();
    test_cuda();
    sl_op_ctx_close(ctx);
    return sl_test_finish("hpss");
}
