/* melstats embedding model:
 *  - against librosa (tools/gen_golden_dsp.py, melstats_sr22050): the log-mel
 *    spectrogram through the ops (max abs error <= 1e-4 dB) and the model's
 *    256-d vector (max abs error <= 1e-4, in dB units; measured ~1e-5 and ~2e-6);
 *  - dimension, finiteness and bitwise determinism;
 *  - very short inputs (1, 100, 1024, 2205 samples) give finite vectors; empty input is SL_EEMPTY;
 *  - option errors carry file:line:col. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "models/model.h"
#include "sl_golden.h"
#include "sl_test.h"

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

static void test_golden(sl_op_ctx *ctx)
{
    slg_file g;
    CHECK_MSG(slg_load(&g, "melstats_sr22050") == 0, "golden melstats");
    if (!g.n_arrays)
        return;
    size_t n, nl, nv;
    const float *x = slg_array(&g, "x", &n), *logmel = slg_array(&g, "logmel", &nl), *vec = slg_array(&g, "vec", &nv);

    /* log-mel through the ops */
    sl_stft_cfg c = {2048, 512, 1, SL_PAD_REFLECT, 0};
    size_t nf = sl_stft_n_frames(&c, n), nb = 1025;
    CHECK(nf * 64 == nl);
    float *w = malloc(2048 * sizeof(float)), *fb = malloc(64 * nb * sizeof(float));
    float *fr = malloc(nf * 2048 * sizeof(float)), *sp = malloc(nf * nb * 2 * sizeof(float));
    float *pw = malloc(nf * nb * sizeof(float)), *mel = malloc(nf * 64 * sizeof(float));
    sl_window_hann(w, 2048, 2048);
    int rc = sl_mel_filterbank(fb, 22050, 2048, 64, 0.0, 11025.0);
    if (!rc)
        rc = sl_op_frame(ctx, &c, x, 1, n, 0, nf, w, fr);
    if (!rc)
        rc = sl_op_rfft(ctx, 2048, nf, fr, sp, 1.0f);
    if (!rc)
        rc = sl_op_power(ctx, nf * nb, sp, pw);
    if (!rc)
        rc = sl_op_mel(ctx, nf, (int)nb, 64, fb, pw, mel);
    if (!rc)
        rc = sl_op_log_db(ctx, 1, nf * 64, mel, 1e-10f, 0.0f, mel);
    CHECK_MSG(rc == 0, "log-mel: %s", sl_lasterr());
    double e = 0;
    for (size_t i = 0; i < nl && nf * 64 == nl; i++)
        e = fmax(e, fabs((double)mel[i] - logmel[i]));
    printf("golden log-mel: max|err| = %.3g dB (tol 1e-4)\n", e);
    CHECK_MSG(e <= 1e-4, "log-mel error %g dB", e);

    /* the model end to end */
    sl_emb_model *m = NULL;
    rc = sl_emb_open(&m, "melstats", NULL, NULL, ctx);
    CHECK_MSG(rc == 0, "open: %s", sl_lasterr());
    if (m) {
        CHECK((size_t)sl_emb_get_info(m)->dim == nv);
        float *v = malloc(nv * sizeof(float));
        const float *in[1] = {x};
        CHECK(sl_emb_run(m, in, n, v) == 0);
        double ev = 0;
        for (size_t i = 0; i < nv; i++)
            ev = fmax(ev, fabs((double)v[i] - vec[i]));
        printf("golden melstats vector (%zu dims): max|err| = %.3g (tol 1e-4)\n", nv, ev);
        CHECK_MSG(ev <= 1e-4, "melstats vector error %g", ev);
        free(v);
        sl_emb_close(m);
    }
    free(w); free(fb); free(fr); free(sp); free(pw); free(mel);
    slg_free(&g);
}

static void test_model(sl_op_ctx *ctx)
{
    sl_emb_model *m = NULL;
    int rc = sl_emb_open(&m, "melstats", NULL, NULL, ctx);
    CHECK_MSG(rc == 0, "open: %s", sl_lasterr());
    if (!m)
        return;
    const sl_emb_info *info = sl_emb_get_info(m);
    CHECK(!strcmp(info->name, "melstats") && info->sample_rate == 22050 && info->channels == 1 && info->dim == 256);
    printf("melstats params: %s\n", info->params);
    CHECK(!strcmp(sl_emb_model_names[0], "melstats") && sl_emb_model_names[1] && !strcmp(sl_emb_model_names[1], "cnn14") &&
          sl_emb_model_names[2] && !strcmp(sl_emb_model_names[2], "clap") && sl_emb_model_names[3] == NULL);

    size_t n = 22050 * 3 + 11;
    float *x = malloc(n * sizeof(float));
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = 0.4f * sinf(0.03f * (float)i) + 0.1f * ((float)(s >> 8) / 16777216.0f - 0.5f);
    }
    float v1[256], v2[256];
    for (int i = 0; i < 256; i++)
        v1[i] = v2[i] = NAN;
    const float *in[1] = {x};
    CHECK(sl_emb_run(m, in, n, v1) == 0);
    CHECK(sl_emb_run(m, in, n, v2) == 0);
    CHECK(all_finite(v1, 256));
    CHECK_MSG(!memcmp(v1, v2, sizeof v1), "two runs differ");
    int std_pos = 1;
    for (int i = 64; i < 128; i++)
        std_pos &= v1[i] > 0;
    CHECK_MSG(std_pos, "std over time of a noisy signal must be > 0");

    /* short tracks: down to one sample, handled with constant padding */
    const size_t shorts[] = {1, 100, 1024, 1025, 2205};
    for (size_t k = 0; k < sizeof shorts / sizeof shorts[0]; k++) {
        for (int i = 0; i < 256; i++)
            v1[i] = NAN;
        rc = sl_emb_run(m, in, shorts[k], v1);
        CHECK_MSG(rc == 0 && all_finite(v1, 256), "n=%zu: rc %d %s", shorts[k], rc, sl_lasterr());
    }
    /* silence: log floor of -100 dB, no NaN */
    float zeros[3000] = {0};
    const float *zin[1] = {zeros};
    CHECK(sl_emb_run(m, zin, 3000, v1) == 0 && fabsf(v1[0] + 100.0f) < 1e-4f && v1[64] == 0.0f);
    CHECK(sl_emb_run(m, in, 0, v1) == SL_EEMPTY);
    free(x);
    sl_emb_close(m);
}

static void expect_opt_error(sl_op_ctx *ctx, const char *key, const char *value, const char *needle)
{
    sl_cfg_opt o[] = {{(char *)key, (char *)value, "--set", 0, 0}};
    sl_cfg_opts opts = {o, 1};
    sl_emb_model *m = NULL;
    int rc = sl_emb_open(&m, "melstats", NULL, &opts, ctx);
    char want[160];
    snprintf(want, sizeof want, "--set:0:0: key 'embedding.options.%s': ", key);
    CHECK_MSG(rc == SL_ECONFIG && !m, "%s=%s accepted", key, value);
    CHECK_MSG(strstr(sl_lasterr(), want) == sl_lasterr(), "message '%s' lacks '%s'", sl_lasterr(), want);
    CHECK_MSG(strstr(sl_lasterr(), needle) != NULL, "message '%s' lacks '%s'", sl_lasterr(), needle);
    sl_emb_close(m);
}

static void test_options(sl_op_ctx *ctx)
{
    expect_opt_error(ctx, "n_mels", "0", "out of range");
    expect_opt_error(ctx, "n_mels", "64.5", "integer");
    expect_opt_error(ctx, "fmax", "20000", "fmax");
    expect_opt_error(ctx, "hop", "4096", "n_fft");
    expect_opt_error(ctx, "normalize", "true", "unknown option");

    sl_cfg_opt o[] = {{"n_mels", "32", "e.yaml", 4, 3},   {"fmin", "30", "e.yaml", 5, 3},
                      {"fmax", "8000", "e.yaml", 6, 3},  {"n_fft", "1024", "e.yaml", 7, 3},
                      {"hop", "256", "e.yaml", 8, 3},     {"top_db", "80", "e.yaml", 9, 3},
                      {"sample_rate", "16000", "e.yaml", 10, 3}};
    sl_cfg_opts opts = {o, sizeof o / sizeof o[0]};
    sl_emb_model *m = NULL;
    int rc = sl_emb_open(&m, "melstats", NULL, &opts, ctx);
    CHECK_MSG(rc == 0, "%s", sl_lasterr());
    if (m) {
        CHECK(sl_emb_get_info(m)->dim == 128 && sl_emb_get_info(m)->sample_rate == 16000);
        float x[4000], v[128];
        for (int i = 0; i < 4000; i++)
            x[i] = sinf(0.1f * (float)i);
        const float *in[1] = {x};
        CHECK(sl_emb_run(m, in, 4000, v) == 0 && all_finite(v, 128));
        sl_emb_close(m);
    }
    CHECK(sl_emb_open(&m, "openl3", NULL, NULL, ctx) == SL_ECONFIG && !m && strstr(sl_lasterr(), "melstats"));
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, "cpu") != 0) {
        fprintf(stderr, "cpu backend: %s\n", sl_lasterr());
        return 1;
    }
    test_golden(ctx);
    test_model(ctx);
    test_options(ctx);
    sl_op_ctx_close(ctx);
    return sl_test_finish("melstats");
}
