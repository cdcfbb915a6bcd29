/* BS-RoFormer and Mel-Band RoFormer (models/roformer.c) against the reference
 * Python package (bs-roformer 0.3.10): golden vectors from
 * tools/gen_golden_roformer.py (random weights, reduced sizes, float64
 * reference): a stereo one-stem and a mono four-stem BSRoformer (normalized
 * STFT, win_length < n_fft, MLP depth 3), a stereo one-stem and a stereo
 * four-stem MelBandRoformer. Every stage (band split, each transformer, the
 * masks, the waveforms) is compared on the CPU backend and on cuda-emu (the
 * CUDA kernels through the launch emulation; cuda too where a device answers):
 * max|got - ref| / max|ref| per stage and stem <= 1e-4. The CPU's
 * runtime.precision modes on the AMX tiles (skipped, said, without them): tf32
 * and bf16x6 within the same 1e-4, bf16 within TOL_BF16, each taking its path (outputs
 * other than fp32's). Also: the instrumental stem (mix - vocals), option and
 * weights-file errors. */
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
/* bf16 products (inputs rounded to 8 significant bits): the per-stage bound of the bf16 mode */
#define TOL_BF16 1e-2

static const char *weights_of(const char *name)
{
    static char path[1024];
    const char *p = slg_path_in("roformer", name);
    snprintf(path, sizeof path, "%.*s.safetensors", (int)(strlen(p) - 4), p);
    return path;
}

static sl_cfg_opt mkopt(const char *k, const char *v)
{
    sl_cfg_opt o = {(char *)k, (char *)v, (char *)"test.yaml", 3, 9};
    return o;
}

static void report(const char *backend, const char *name, const char *stage, double e, double tol)
{
    printf("  %-9s %-17s %-10s rel err %.3g (tol %.0e) %s\n", backend, name, stage, e, tol, e <= tol ? "ok" : "FAIL");
    CHECK_MSG(e <= tol, "%s %s %s: %g", backend, name, stage, e);
}

/* One golden case on backend in precision prec; *wave_out (when not NULL) gets the output
 * waveforms (n_src * channels * n floats, the caller frees them), NULL when skipped. */
static void run_case_p(const char *backend, const char *name, sl_precision prec, float **wave_out, size_t *wave_n)
{
    if (wave_out)
        *wave_out = NULL;
    slg_file g;
    if (slg_load_in(&g, "roformer", name) < 0) {
        CHECK_MSG(0, "golden roformer/%s missing", name);
        return;
    }
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, backend) < 0) {
        printf("  %-9s %s SKIPPED (%s)\n", backend, name, sl_lasterr());
        slg_free(&g);
        return;
    }
    char label[32];
    snprintf(label, sizeof label, "%s%s%s", backend, prec ? " " : "", prec ? sl_precision_name(prec) : "");
    if (prec != SL_PREC_FP32) {
        CHECK(sl_op_ctx_set_precision(ctx, prec) == 0);
        if (sl_op_ctx_precision(ctx) != prec) { /* no AMX tiles: fp32, said in the device string */
            CHECK_MSG(strstr(sl_op_ctx_device(ctx), "asked for") != NULL, "%s", sl_op_ctx_device(ctx));
            printf("  %-9s %s SKIPPED (no AMX-BF16 tiles in use: %s)\n", label, name, sl_op_ctx_device(ctx));
            sl_op_ctx_close(ctx);
            slg_free(&g);
            return;
        }
    }
    const double tol = prec == SL_PREC_BF16 ? TOL_BF16 : TOL_STAGE;
    backend = label;
    const char *model = strncmp(name, "mel", 3) ? "bs_roformer" : "mel_band_roformer";
    sl_sep_model *m = NULL;
    int rc = sl_sep_open(&m, model, weights_of(name), NULL, ctx);
    CHECK_MSG(rc == 0, "open %s on %s: %s", name, backend, sl_lasterr());
    if (rc) {
        sl_op_ctx_close(ctx);
        slg_free(&g);
        return;
    }
    const size_t n = (size_t)slg_int(&g, "n"), S = (size_t)slg_int(&g, "channels"), N = (size_t)slg_int(&g, "stems");
    const size_t out_len = (size_t)slg_int(&g, "out_len");
    size_t T, K, dim, nf;
    CHECK(sl_roformer_geometry(m, n, &T, &K, &dim, &nf) == 0);
    CHECK_MSG(T == (size_t)slg_int(&g, "frames") && K == (size_t)slg_int(&g, "bands") &&
                  dim == (size_t)slg_int(&g, "dim") && nf == (size_t)slg_int(&g, "n_feat"),
              "%s geometry T%zu K%zu dim%zu n_feat%zu", name, T, K, dim, nf);
    const sl_sep_info *info = sl_sep_get_info(m);
    CHECK(info->channels == (int)S && info->n_sources == (int)N + (N == 1));
    const size_t n_src = (size_t)info->n_sources, R = T * K * dim;
    int n_layers = 0;
    while (n_layers < 16) {
        char an[16];
        snprintf(an, sizeof an, "layer%d", n_layers);
        if (!slg_array(&g, an, NULL))
            break;
        n_layers++;
    }
    float *split = malloc(R * sizeof(float)), *mask = malloc(N * T * nf * 2 * sizeof(float));
    float *layers[16], *wave = malloc(n_src * S * n * sizeof(float));
    for (int i = 0; i < n_layers; i++)
        layers[i] = malloc(R * sizeof(float));
    for (size_t i = 0; i < n_src * S * n; i++)
        wave[i] = NAN;
    float *planes[SL_MAX_SOURCES][2];
    float *const *outp[SL_MAX_SOURCES];
    for (size_t s = 0; s < n_src; s++) {
        for (size_t c = 0; c < S; c++)
            planes[s][c] = wave + (s * S + c) * n;
        outp[s] = planes[s];
    }
    const float *input = slg_array(&g, "input", NULL);
    const float *in[2] = {input, input + (S > 1 ? n : 0)};
    sl_roformer_stages st = {split, layers, mask, 0};
    rc = sl_roformer_run_stages(m, in, n, (float *const *const *)outp, &st);
    CHECK_MSG(rc == 0, "run %s on %s: %s", name, backend, sl_lasterr());
    if (rc == 0) {
        report(backend, name, "split", slg_rel_err(split, slg_array(&g, "split", NULL), R), tol);
        for (int i = 0; i < n_layers; i++) {
            char an[16];
            snprintf(an, sizeof an, "layer%d", i);
            report(backend, name, an, slg_rel_err(layers[i], slg_array(&g, an, NULL), R), tol);
        }
        const float *wm = slg_array(&g, "mask", NULL), *wo = slg_array(&g, "out", NULL);
        for (size_t s = 0; s < N; s++) {
            char stage[48];
            snprintf(stage, sizeof stage, "mask %s", info->sources[s]);
            report(backend, name, stage, slg_rel_err(mask + s * T * nf * 2, wm + s * T * nf * 2, T * nf * 2), tol);
            double e = 0;
            for (size_t c = 0; c < S; c++) /* the reference output has out_len <= n samples */
                e = fmax(e, slg_rel_err(wave + (s * S + c) * n, wo + (s * S + c) * out_len, out_len));
            snprintf(stage, sizeof stage, "out %s", info->sources[s]);
            report(backend, name, stage, e, tol);
        }
        if (N == 1) { /* the extra source: mix - stem, exactly */
            size_t bad = 0;
            for (size_t c = 0; c < S; c++)
                for (size_t i = 0; i < n; i++)
                    bad += wave[(S + c) * n + i] != in[c][i] - wave[c * n + i];
            CHECK_MSG(bad == 0 && !strcmp(info->sources[1], "instrumental"), "%s: instrumental wrong in %zu samples",
                      name, bad);
        }
    }
    free(split);
    free(mask);
    if (wave_out && rc == 0) {
        *wave_out = wave;
        *wave_n = n_src * S * n;
    } else {
        free(wave);
    }
    for (int i = 0; i < n_layers; i++)
        free(layers[i]);
    sl_sep_close(m);
    sl_op_ctx_close(ctx);
    slg_free(&g);
}

/* Copies src to dst with the safetensors header's JSON text edited: the first occurrence of
 * from replaced by to (same length, so the offsets stay valid). */
static int patch_copy(const char *src, const char *dst, const char *from, const char *to)
{
    FILE *f = fopen(src, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    unsigned long long hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (unsigned long long)(unsigned char)buf[i] << (8 * i);
    int rc = -1;
    if (got == (size_t)len && strlen(from) == strlen(to)) {
        for (size_t i = 8; i + strlen(from) <= 8 + hl; i++)
            if (!memcmp(buf + i, from, strlen(from))) {
                memcpy(buf + i, to, strlen(to));
                rc = 0;
                break;
            }
    }
    if (rc == 0 && (f = fopen(dst, "wb"))) {
        fwrite(buf, 1, (size_t)len, f);
        fclose(f);
    }
    free(buf);
    return rc;
}

/* The band layout of the published Mel-Band RoFormers against the package's freq_indices. */
static void mel_bands(void)
{
    slg_file g;
    if (slg_load_in(&g, "roformer", "mel_bands") < 0) {
        CHECK_MSG(0, "golden roformer/mel_bands missing");
        return;
    }
    const int B = slg_int(&g, "num_bands"), n_fft = slg_int(&g, "n_fft");
    size_t nw = 0, nb = 0;
    const float *want = slg_array(&g, "freq_indices", &nw), *per = slg_array(&g, "per_band", &nb);
    int32_t *idx = malloc((size_t)B * (n_fft / 2 + 1) * 2 * sizeof *idx);
    int *pb = malloc((size_t)B * sizeof *pb), n = 0;
    CHECK(sl_roformer_mel_bands(slg_int(&g, "sample_rate"), n_fft, B, 2, idx, pb, &n) == 0);
    size_t bad = (size_t)n == nw ? 0 : 1;
    for (size_t i = 0; i < nw && !bad; i++)
        bad += idx[i] != (int32_t)want[i];
    for (size_t b = 0; b < nb && b < (size_t)B; b++) /* the package counts bins, ours features (x2 channels) */
        bad += pb[b] != 2 * (int)per[b];
    printf("  mel bands (n_fft %d, %d bands, stereo): %d features, %zu differences from the package\n", n_fft, B, n, bad);
    CHECK(bad == 0);
    free(idx);
    free(pb);
    slg_free(&g);
}

static void errors(void)
{
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    sl_sep_model *m = NULL;
    int rc = sl_sep_open(&m, "bs_roformer", NULL, NULL, ctx);
    CHECK_MSG(rc == SL_ECONFIG && strstr(sl_lasterr(), "separation.weights"), "no weights: %s", sl_lasterr());
    printf("  no weights: %s\n", sl_lasterr());
    /* a Mel-Band file as BS-RoFormer */
    rc = sl_sep_open(&m, "bs_roformer", weights_of("mel_stereo_1stem"), NULL, ctx);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "mel_band_roformer"), "wrong arch: %s", sl_lasterr());
    printf("  wrong arch: %s\n", sl_lasterr());
    const char *dir = sl_test_tmpdir();
    char p[1024];
    /* a tensor of another version: renamed, so it is both missing and left over */
    snprintf(p, sizeof p, "%s/renamed.safetensors", dir);
    CHECK(patch_copy(weights_of("bs_stereo_1stem"), p, "final_norm.gamma", "final_norm.gammb") == 0);
    rc = sl_sep_open(&m, "bs_roformer", p, NULL, ctx);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "final_norm.gamma") && strstr(sl_lasterr(), p),
              "missing tensor: %s", sl_lasterr());
    printf("  missing tensor: %s\n", sl_lasterr());
    /* an extra tensor: the mask estimators' depth changed in the metadata */
    snprintf(p, sizeof p, "%s/depth.safetensors", dir);
    CHECK(patch_copy(weights_of("bs_stereo_1stem"), p, "\"mask_estimator_depth\":\"2\"",
                     "\"mask_estimator_depth\":\"1\"") == 0);
    rc = sl_sep_open(&m, "bs_roformer", p, NULL, ctx);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "mask_estimator_depth"), "depth: %s", sl_lasterr());
    printf("  wrong depth: %s\n", sl_lasterr());
    /* a misshapen tensor: the metadata says more heads than the weights have */
    snprintf(p, sizeof p, "%s/heads.safetensors", dir);
    CHECK(patch_copy(weights_of("bs_stereo_1stem"), p, "\"heads\":\"2\"", "\"heads\":\"4\"") == 0);
    rc = sl_sep_open(&m, "bs_roformer", p, NULL, ctx);
    CHECK_MSG(rc == SL_EFORMAT && strstr(sl_lasterr(), "to_qkv.weight"), "heads: %s", sl_lasterr());
    printf("  misshapen tensor: %s\n", sl_lasterr());
    sl_cfg_opt bad[1] = {mkopt("instrumental", "perhaps")};
    sl_cfg_opts o = {bad, 1};
    rc = sl_sep_open(&m, "bs_roformer", weights_of("bs_stereo_1stem"), &o, ctx);
    CHECK_MSG(rc == SL_ECONFIG && strstr(sl_lasterr(), "test.yaml:3:9"), "bad option: %s", sl_lasterr());
    printf("  bad option: %s\n", sl_lasterr());
    bad[0] = mkopt("chunks", "3");
    rc = sl_sep_open(&m, "bs_roformer", weights_of("bs_stereo_1stem"), &o, ctx);
    CHECK_MSG(rc == SL_ECONFIG && strstr(sl_lasterr(), "unknown option"), "unknown option: %s", sl_lasterr());
    bad[0] = mkopt("instrumental", "false");
    rc = sl_sep_open(&m, "bs_roformer", weights_of("bs_stereo_1stem"), &o, ctx);
    CHECK_MSG(rc == 0, "open: %s", sl_lasterr());
    if (rc == 0) {
        const sl_sep_info *info = sl_sep_get_info(m);
        CHECK(info->n_sources == 1 && !strcmp(info->sources[0], "vocals") && info->channels == 2);
        printf("  instrumental off: %d source, %s\n", info->n_sources, info->params);
        sl_sep_close(m);
    }
    sl_op_ctx_close(ctx);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    static const char *backends[] = {"cpu", "cuda-emu", "cuda"};
    static const char *cases[] = {"bs_stereo_1stem", "bs_mono_4stem", "mel_stereo_1stem", "mel_stereo_4stem"};
    for (int b = 0; b < 3; b++)
        for (int c = 0; c < 4; c++) {
            if (b > 0) {
                run_case_p(backends[b], cases[c], SL_PREC_FP32, NULL, NULL);
                continue;
            }
            /* the CPU: fp32, then tf32 and bf16 on the AMX tiles, each taking its own path */
            float *w32 = NULL, *wp = NULL;
            size_t n32 = 0, np = 0;
            run_case_p("cpu", cases[c], SL_PREC_FP32, &w32, &n32);
            for (sl_precision p = SL_PREC_TF32; p <= SL_PREC_BF16X6; p++) {
                run_case_p("cpu", cases[c], p, &wp, &np);
                if (wp && w32 && np == n32) {
                    double d = 0, pk = 0;
                    for (size_t i = 0; i < n32; i++) {
                        d = fmax(d, fabs((double)wp[i] - w32[i]));
                        pk = fmax(pk, fabs((double)w32[i]));
                    }
                    printf("  cpu %-6s %s: waveforms max |d| / peak to fp32 %.3g\n", sl_precision_name(p), cases[c],
                           pk > 0 ? d / pk : d);
                }
                /* the one-stem cases have GEMMs of AMX size (>= 128 rows); the mono and the four-stem
                 * Mel-Band ones may not */
                if (wp && w32 && strstr(cases[c], "1stem"))
                    CHECK_MSG(np == n32 && memcmp(wp, w32, n32 * sizeof(float)) != 0,
                              "cpu %s %s: output identical to fp32 (the AMX path was not taken)", sl_precision_name(p),
                              cases[c]);
                free(wp);
            }
            free(w32);
        }
    mel_bands();
    errors();
    return sl_test_finish("roformer");
}
