/* Open-Unmix (models/umx.c) against the official openunmix package: golden
 * vectors from tools/gen_golden_umx.py (random weights, hidden 16, n_fft 512,
 * hop 128, max_bin 64, four targets; three Separator configurations). Every
 * stage (mixture magnitude, per-target estimates before the Wiener filter,
 * after it, waveforms) is compared per target on the CPU backend and on
 * cuda-emu (and cuda where a device answers): max|got - ref| / max|ref| over
 * the sampled elements <= 1e-4. Also: weights / option errors. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "models/model_impl.h"
#include "sl_golden.h"
#include "sl_test.h"

#define TOL_STAGE 1e-4

static char weights_path[1024];

static sl_cfg_opt mkopt(const char *k, const char *v)
{
    sl_cfg_opt o = {(char *)k, (char *)v, (char *)"test.yaml", 7, 5};
    return o;
}

/* max|got[idx] - val| / max|val| over the samples whose flat index falls in [lo, hi). */
static double stage_err(const float *got, const float *idx, const float *val, size_t n, size_t lo, size_t hi,
                        size_t *count)
{
    double mx = 0, err = 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = (size_t)idx[i];
        if (k < lo || k >= hi)
            continue;
        c++;
        mx = fmax(mx, fabs((double)val[i]));
        double e = fabs((double)got[k] - (double)val[i]);
        if (isnan(got[k]))
            e = INFINITY;
        err = fmax(err, e);
    }
    *count = c;
    return err / (mx > 1e-30 ? mx : 1.0);
}

static void run_case(const char *backend, const char *name)
{
    slg_file g;
    if (slg_load_in(&g, "umx", name) < 0) {
        CHECK_MSG(0, "golden umx/%s missing", name);
        return;
    }
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, backend) < 0) {
        printf("  %-9s %s SKIPPED (%s)\n", backend, name, sl_lasterr());
        slg_free(&g);
        return;
    }
    char niter[16], win[16];
    snprintf(niter, sizeof niter, "%d", slg_int(&g, "niter"));
    snprintf(win, sizeof win, "%d", slg_int(&g, "wiener_win_len"));
    sl_cfg_opt items[4] = {mkopt("niter", niter), mkopt("softmask", slg_int(&g, "softmask") ? "true" : "false"),
                           mkopt("residual", slg_int(&g, "residual") ? "true" : "false"),
                           mkopt("wiener_win_len", win)};
    sl_cfg_opts opts = {items, 4};
    sl_sep_model *m = NULL;
    int rc = sl_sep_open(&m, "umx", weights_path, &opts, ctx);
    CHECK_MSG(rc == 0, "open umx on %s: %s", backend, sl_lasterr());
    if (rc) {
        sl_op_ctx_close(ctx);
        slg_free(&g);
        return;
    }
    size_t n_in = 0;
    const float *input = slg_array(&g, "input", &n_in);
    const size_t n = n_in / 2;
    CHECK(n == (size_t)slg_int(&g, "n"));
    size_t T, nb, J, S;
    CHECK(sl_umx_geometry(m, n, &T, &nb, &J, &S) == 0);
    CHECK_MSG(T == (size_t)slg_int(&g, "frames"), "frames %zu vs %d", T, slg_int(&g, "frames"));
    const sl_sep_info *info = sl_sep_get_info(m);
    CHECK(info->n_sources == (int)S && J == 4);
    float *mag = malloc(2 * T * nb * sizeof(float)), *est = malloc(J * 2 * T * nb * sizeof(float)),
          *wien = malloc(S * 2 * T * nb * 2 * sizeof(float)), *wave = malloc(S * 2 * n * sizeof(float));
    for (size_t i = 0; i < S * 2 * n; i++)
        wave[i] = NAN;
    float *planes[SL_MAX_SOURCES][2];
    float *const *outp[SL_MAX_SOURCES];
    for (size_t s = 0; s < S; s++) {
        planes[s][0] = wave + (s * 2) * n;
        planes[s][1] = wave + (s * 2 + 1) * n;
        outp[s] = planes[s];
    }
    const float *in[2] = {input, input + n};
    sl_umx_stages st = {mag, est, wien, 0};
    rc = sl_umx_run_stages(m, in, n, (float *const *const *)outp, &st);
    CHECK_MSG(rc == 0, "run umx %s on %s: %s", name, backend, sl_lasterr());
    struct {
        const char *stage;
        const float *got;
        size_t per_source, n_src;
    } stages[4] = {{"mag", mag, 2 * T * nb, 1},
                   {"est", est, 2 * T * nb, J},
                   {"wien", wien, 2 * T * nb * 2, S},
                   {"out", wave, 2 * n, S}};
    for (int k = 0; k < 4 && rc == 0; k++) {
        char an[32], vn[32];
        snprintf(an, sizeof an, "%s_idx", stages[k].stage);
        snprintf(vn, sizeof vn, "%s_val", stages[k].stage);
        size_t ns = 0;
        const float *idx = slg_array(&g, an, &ns), *val = slg_array(&g, vn, NULL);
        CHECK_MSG(idx && val, "%s: arrays %s", name, an);
        if (!idx || !val)
            continue;
        for (size_t s = 0; s < stages[k].n_src; s++) {
            size_t count;
            const size_t lo = s * stages[k].per_source, hi = lo + stages[k].per_source;
            double e = stage_err(stages[k].got, idx, val, ns, lo, hi, &count);
            const char *src = stages[k].n_src == 1 ? "mix" : info->sources[s];
            printf("  %-9s %s %-5s %-9s %4zu samples  rel err %.3g (tol %.0e) %s\n", backend, name, stages[k].stage,
                   src, count, e, TOL_STAGE, e <= TOL_STAGE ? "ok" : "FAIL");
            CHECK_MSG(count > 0 && e <= TOL_STAGE, "%s %s %s %s: %g", backend, name, stages[k].stage, src, e);
        }
    }
    free(mag);
    free(est);
    free(wien);
    free(wave);
    sl_sep_close(m);
    sl_op_ctx_close(ctx);
    slg_free(&g);
}

/* A minimal safetensors file: metadata + one F32 tensor of n values. */
static const char *write_st(const char *dir, const char *fname, const char *meta, const char *tname, int n)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    char hdr[1024];
    int len = snprintf(hdr, sizeof hdr,
                       "{\"__metadata__\":{%s},\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[0,%d]}}",
                       meta, tname, n, 4 * n);
    while (len % 8)
        hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    unsigned char l8[8];
    for (int i = 0; i < 8; i++)
        l8[i] = (unsigned char)(((unsigned long long)len >> (8 * i)) & 0xff);
    fwrite(l8, 1, 8, f);
    fwrite(hdr, 1, (size_t)len, f);
    float z = 0.5f;
    for (int i = 0; i < n; i++)
        fwrite(&z, 4, 1, f);
    fclose(f);
    return path;
}

static void errors(void)
{
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    sl_sep_model *m = NULL;
    int rc = sl_sep_open(&m, "umx", NULL, NULL, ctx);
    CHECK_MSG(rc == SL_ECONFIG && strstr(sl_lasterr(), "separation.weights"), "no weights: %d %s", rc, sl_lasterr());
    printf("  no weights: %s\n", sl_lasterr());
    rc = sl_sep_open(&m, "umx", "/nonexistent/umx.safetensors", NULL, ctx);
    CHECK_MSG(rc < 0 && strstr(sl_lasterr(), "/nonexistent/umx.safetensors"), "missing file: %s", sl_lasterr());
    printf("  missing file: %s\n", sl_lasterr());
    const char *dir = sl_test_tmpdir();
    const char *p = write_st(dir, "cnn.safetensors", "\"stemline.arch\":\"cnn14\"", "fc1.weight", 4);
    rc = sl_sep_open(&m, "umx", p, NULL, ctx);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "cnn14"), "wrong arch: %s", sl_lasterr());
    printf("  wrong arch: %s\n", sl_lasterr());
    static const char *meta = "\"stemline.arch\":\"umx\",\"targets\":\"vocals,drums\",\"hidden_size\":\"4\","
                              "\"nb_bins\":\"9\",\"max_bin\":\"3\",\"nb_channels\":\"2\",\"nb_layers\":\"1\","
                              "\"sample_rate\":\"44100\",\"n_fft\":\"16\",\"hop\":\"4\"";
    p = write_st(dir, "short.safetensors", meta, "vocals.input_mean", 2); /* wrong shape: [2], expected [3] */
    rc = sl_sep_open(&m, "umx", p, NULL, ctx);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "vocals.input_mean"), "bad shape: %s", sl_lasterr());
    printf("  wrong shape: %s\n", sl_lasterr());
    p = write_st(dir, "missing.safetensors", meta, "vocals.input_mean", 3); /* input_scale missing */
    rc = sl_sep_open(&m, "umx", p, NULL, ctx);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "vocals.input_scale"), "missing tensor: %s", sl_lasterr());
    printf("  missing tensor: %s\n", sl_lasterr());
    /* metadata that declares ~40 GB of weights in a file of 128 KB: an error
     * naming the first tensor that is not there, never an allocation */
    static const char *huge = "\"stemline.arch\":\"umx\",\"targets\":\"vocals,drums,bass,other\","
                              "\"hidden_size\":\"8192\",\"nb_bins\":\"32769\",\"max_bin\":\"32769\","
                              "\"nb_channels\":\"2\",\"nb_layers\":\"16\",\"sample_rate\":\"44100\","
                              "\"n_fft\":\"65536\",\"hop\":\"1024\"";
    p = write_st(dir, "huge.safetensors", huge, "vocals.input_mean", 32769);
    rc = sl_sep_open(&m, "umx", p, NULL, ctx);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "vocals.input_scale"), "declared sizes: %d %s", rc,
              sl_lasterr());
    printf("  declared sizes beyond the file: %s\n", sl_lasterr());
    sl_cfg_opt bad[1] = {mkopt("niter", "101")};
    sl_cfg_opts o = {bad, 1};
    rc = sl_sep_open(&m, "umx", weights_path, &o, ctx);
    CHECK_MSG(rc == SL_ECONFIG && strstr(sl_lasterr(), "test.yaml:7:5") && strstr(sl_lasterr(), "niter"),
              "bad niter: %s", sl_lasterr());
    printf("  bad option: %s\n", sl_lasterr());
    bad[0] = mkopt("wiener", "1");
    rc = sl_sep_open(&m, "umx", weights_path, &o, ctx);
    CHECK_MSG(rc == SL_ECONFIG && strstr(sl_lasterr(), "unknown option"), "unknown option: %s", sl_lasterr());
    bad[0] = mkopt("softmask", "maybe");
    rc = sl_sep_open(&m, "umx", weights_path, &o, ctx);
    CHECK_MSG(rc == SL_ECONFIG && strstr(sl_lasterr(), "softmask"), "bad bool: %s", sl_lasterr());
    rc = sl_sep_open(&m, "hpss", weights_path, NULL, ctx);
    CHECK_MSG(rc == SL_ECONFIG, "hpss takes no weights");
    /* defaults: four stems named by the file's targets */
    rc = sl_sep_open(&m, "umx", weights_path, NULL, ctx);
    CHECK_MSG(rc == 0, "open: %s", sl_lasterr());
    if (rc == 0) {
        const sl_sep_info *info = sl_sep_get_info(m);
        CHECK(info->n_sources == 4 && !strcmp(info->sources[0], "vocals") && !strcmp(info->sources[3], "other"));
        CHECK(info->sample_rate == 44100 && info->channels == 2);
        printf("  defaults: %s\n", info->params);
        sl_sep_close(m);
    }
    sl_op_ctx_close(ctx);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    const char *p = slg_path_in("umx", "umx-small");
    snprintf(weights_path, sizeof weights_path, "%.*s.safetensors", (int)(strlen(p) - 4), p);
    static const char *backends[] = {"cpu", "cuda-emu", "cuda"};
    static const char *cases[] = {"case_a", "case_b", "case_c"};
    for (int b = 0; b < 3; b++)
        for (int c = 0; c < 3; c++)
            run_case(backends[b], cases[c]);
    errors();
    return sl_test_finish("umx");
}
