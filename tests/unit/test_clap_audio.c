/* LAION-CLAP audio tower (models/clap_audio.c) against the laion_clap package:
 * golden vectors from tools/gen_golden_clap.py (get_audio_embedding_from_data's
 * steps with the package's own functions, a reduced HTSAT: spec 64, patch 4,
 * widths 8/16/32, depths 2/2/2, window 4, 16 mels, clip 120000 samples at
 * 48 kHz, random weights, reference in float64). Every stage (log-mel before
 * bn0, the folded and resampled image, the patch embedding, the first stage's
 * plain and shifted blocks, each stage's output, the mean token, the
 * normalised projection) and a short input (repeat padding) are compared on
 * the CPU backend and on cuda-emu (and cuda where a device answers):
 * max|got - ref| / max|ref| <= 1e-4. Also: the registry, the public API, and
 * weights errors (missing file, another model's file, a fusion checkpoint). */
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

static void check_stage(const char *backend, const char *name, const float *got, const slg_file *g, size_t n)
{
    CHECK_MSG(slg_check_stage(g, backend, name, got, n, TOL_STAGE), "%s %s: above %g", backend, name, TOL_STAGE);
}

static void golden_on(const char *backend, const slg_file *g, sl_precision prec)
{
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, backend) < 0) {
        printf("  %-8s SKIPPED (%s)\n", backend, sl_lasterr());
        return;
    }
    char label[32];
    if (prec != SL_PREC_FP32) { /* bf16x6: the same golden bound as fp32 */
        CHECK(sl_op_ctx_set_precision(ctx, prec) == 0);
        snprintf(label, sizeof label, "%s %s", backend, sl_precision_name(sl_op_ctx_precision(ctx)));
        backend = label;
    }
    sl_emb_model *m = NULL;
    int rc = sl_emb_open(&m, "clap", weights_path, NULL, ctx);
    CHECK_MSG(rc == 0, "open clap on %s: %s", backend, sl_lasterr());
    if (rc) {
        sl_op_ctx_close(ctx);
        return;
    }
    const sl_emb_info *info = sl_emb_get_info(m);
    sl_clap_audio_geom G;
    CHECK(sl_clap_audio_geometry(m, &G) == 0);
    CHECK(info->sample_rate == 48000 && info->channels == 1 && info->dim == 24 && info->n_scores == 0);
    CHECK_MSG(G.frames == (size_t)slg_int(g, "frames") && G.n_mels == 16 && G.spec == 64 && G.grid == 16 &&
                  G.embed == 8 && G.n_stages == 3 && G.latent == 32 && G.clip == 120000,
              "geometry: frames %zu mels %d spec %d grid %d embed %d stages %d", G.frames, G.n_mels, G.spec, G.grid,
              G.embed, G.n_stages);
    size_t n = 0;
    const float *x = slg_array(g, "input", &n);
    const size_t L0 = (size_t)G.grid * (size_t)G.grid, E = (size_t)G.embed;
    float *blocks[2] = {malloc(L0 * E * sizeof(float)), malloc(L0 * E * sizeof(float))};
    float *stages[8] = {0};
    for (int s = 0; s < G.n_stages; s++)
        stages[s] = malloc(G.tokens[s] * (size_t)G.dims[s] * sizeof(float));
    sl_clap_audio_stages st = {.logmel = malloc(G.frames * (size_t)G.n_mels * sizeof(float)),
                               .image = malloc((size_t)G.spec * (size_t)G.spec * sizeof(float)),
                               .patch = malloc(L0 * E * sizeof(float)), .blocks = blocks, .n_blocks = 2,
                               .stages = stages, .latent = malloc((size_t)G.latent * sizeof(float))};
    float vec[24], vec2[24];
    rc = sl_clap_audio_run_stages(m, x, n, vec, &st);
    CHECK_MSG(rc == 0, "clap on %s: %s", backend, sl_lasterr());
    if (rc == 0) {
        check_stage(backend, "logmel", st.logmel, g, G.frames * (size_t)G.n_mels);
        check_stage(backend, "image", st.image, g, (size_t)G.spec * (size_t)G.spec);
        check_stage(backend, "patch", st.patch, g, L0 * E);
        check_stage(backend, "block1_1", blocks[0], g, L0 * E);
        check_stage(backend, "block1_2", blocks[1], g, L0 * E);
        for (int s = 0; s < G.n_stages; s++) {
            char name[16];
            snprintf(name, sizeof name, "stage%d", s + 1);
            check_stage(backend, name, stages[s], g, G.tokens[s] * (size_t)G.dims[s]);
        }
        check_stage(backend, "latent", st.latent, g, (size_t)G.latent);
        check_stage(backend, "embedding", vec, g, 24);
        /* the public API gives the same numbers */
        const float *in[1] = {x};
        CHECK(sl_emb_run(m, in, n, vec2) == 0);
        CHECK(memcmp(vec, vec2, sizeof vec) == 0);
        /* a short window: the package repeats it to the clip length, then pads with zeros */
        CHECK(sl_emb_run(m, in, (size_t)slg_int(g, "short_n"), vec2) == 0);
        check_stage(backend, "short_embedding", vec2, g, 24);
        /* longer than the clip: its first clip_samples */
        float *longer = malloc((n + 5000) * sizeof(float));
        memcpy(longer, x, n * sizeof(float));
        for (size_t i = n; i < n + 5000; i++)
            longer[i] = 0.9f;
        in[0] = longer;
        CHECK(sl_emb_run(m, in, n + 5000, vec2) == 0);
        CHECK(memcmp(vec, vec2, sizeof vec) == 0);
        free(longer);
        CHECK(sl_emb_run(m, in, 0, vec2) == SL_EEMPTY);
    }
    free(st.logmel);
    free(st.image);
    free(st.patch);
    free(st.latent);
    free(blocks[0]);
    free(blocks[1]);
    for (int s = 0; s < 8; s++)
        free(stages[s]);
    sl_emb_close(m);
    sl_op_ctx_close(ctx);
}

/* A safetensors file holding tensors named names[] (1 float each) and metadata stemline.arch=arch. */
static void write_named(const char *path, const char *arch, const char *const *names, int n)
{
    char hdr[2048];
    int len = snprintf(hdr, sizeof hdr, "{\"__metadata__\":{\"stemline.arch\":\"%s\"}", arch);
    for (int i = 0; i < n; i++)
        len += snprintf(hdr + len, sizeof hdr - (size_t)len,
                        ",\"%s\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}", names[i], 4 * i,
                        4 * i + 4);
    hdr[len++] = '}';
    while (len % 8)
        hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    unsigned char n8[8] = {0};
    for (int i = 0; i < 8; i++)
        n8[i] = (unsigned char)((unsigned long long)len >> (8 * i));
    fwrite(n8, 1, 8, f);
    fwrite(hdr, 1, (size_t)len, f);
    const float one = 1.0f;
    for (int i = 0; i < n; i++)
        fwrite(&one, 4, 1, f);
    fclose(f);
}

static void errors(void)
{
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    sl_emb_model *m = NULL;
    CHECK(sl_emb_open(&m, "clap", NULL, NULL, ctx) == SL_ECONFIG);
    CHECK_MSG(strstr(sl_lasterr(), "embedding.weights") != NULL, "%s", sl_lasterr());
    CHECK(sl_emb_open(&m, "clap", "/nonexistent/clap.safetensors", NULL, ctx) < 0);
    CHECK_MSG(strstr(sl_lasterr(), "/nonexistent/clap.safetensors") != NULL, "%s", sl_lasterr());
    char p[1100];
    snprintf(p, sizeof p, "%s/other.safetensors", sl_test_tmpdir());
    static const char *const cnn[] = {"bn0.weight"};
    write_named(p, "cnn14", cnn, 1);
    CHECK(sl_emb_open(&m, "clap", p, NULL, ctx) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "stemline.arch") != NULL && strstr(sl_lasterr(), p), "%s", sl_lasterr());
    static const char *const fusion[] = {"audio_branch.patch_embed.proj.weight",
                                         "audio_branch.patch_embed.mel_conv2d.weight",
                                         "audio_projection.0.weight"};
    write_named(p, "clap", fusion, 3);
    CHECK(sl_emb_open(&m, "clap", p, NULL, ctx) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "fusion") != NULL, "%s", sl_lasterr());
    printf("  fusion checkpoint: %s\n", sl_lasterr());
    static const char *const pann[] = {"audio_branch.conv_block1.conv1.weight", "audio_projection.0.weight"};
    write_named(p, "clap", pann, 2);
    CHECK(sl_emb_open(&m, "clap", p, NULL, ctx) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "HTSAT") != NULL, "%s", sl_lasterr());
    static const char *const partial[] = {"audio_branch.patch_embed.proj.weight", "audio_projection.0.weight"};
    write_named(p, "clap", partial, 2);
    CHECK(sl_emb_open(&m, "clap", p, NULL, ctx) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "melW") != NULL, "%s", sl_lasterr());
    printf("  missing tensor: %s\n", sl_lasterr());
    sl_cfg_opt o = {(char *)"n_mels", (char *)"128", (char *)"job.yaml", 9, 5};
    sl_cfg_opts opts = {&o, 1};
    CHECK(sl_emb_open(&m, "clap", weights_path, &opts, ctx) == SL_ECONFIG);
    CHECK_MSG(strstr(sl_lasterr(), "job.yaml:9:5") != NULL, "%s", sl_lasterr());
    sl_op_ctx_close(ctx);
}

/* --full (tests/slow/test_clap_full.sh): HTSAT-base at full size, random weights, from
 * $SL_SRC/tests/golden/clap-full/ written there by tools/gen_golden_clap.py --full: the mean
 * token, the embedding and a short window's embedding on the CPU (and cuda where present). */
/* runtime.precision tf32 / bf16 on the CPU backend (the linear layers on the AMX tiles where the
 * CPU has them, kernels/README.md "Precision modes"): the embedding of x against the fp32 one,
 * 1 - cosine within tf32_gap / bf16_gap (issue 20: cosine >= 0.999 for bf16) and, with tiles
 * (full size: the products are large enough for them; the reduced model's are not), different
 * bits; where the mode does not apply (no AMX, SL_CPU_AMX=0) the fp32 bits. */
static void precision_check(const float *x, size_t n, size_t dim, double tf32_gap, double bf16_gap, int tiles)
{
    static const sl_precision modes[4] = {SL_PREC_FP32, SL_PREC_TF32, SL_PREC_BF16, SL_PREC_BF16X6};
    float *v[4];
    sl_precision eff[4];
    for (int p = 0; p < 4; p++) {
        v[p] = calloc(dim, sizeof(float));
        sl_op_ctx *ctx = NULL;
        sl_emb_model *m = NULL;
        CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
        CHECK_MSG(sl_op_ctx_set_precision(ctx, modes[p]) == 0, "precision %s: %s", sl_precision_name(modes[p]),
                  sl_lasterr());
        eff[p] = sl_op_ctx_precision(ctx);
        CHECK_MSG(sl_emb_open(&m, "clap", weights_path, NULL, ctx) == 0, "open clap: %s", sl_lasterr());
        const float *in[1] = {x};
        if (m)
            CHECK_MSG(sl_emb_run(m, in, n, v[p]) == 0, "clap %s: %s", sl_precision_name(modes[p]), sl_lasterr());
        sl_emb_close(m);
        sl_op_ctx_close(ctx);
    }
    for (int p = 1; p < 4; p++) {
        double dot = 0, n0 = 0, n1 = 0;
        for (size_t i = 0; i < dim; i++) {
            dot += (double)v[0][i] * v[p][i];
            n0 += (double)v[0][i] * v[0][i];
            n1 += (double)v[p][i] * v[p][i];
        }
        const double gap = 1.0 - dot / sqrt(n0 * n1), tol = p == 1 ? tf32_gap : p == 2 ? bf16_gap : tf32_gap / 100;
        const int same = !memcmp(v[0], v[p], dim * sizeof(float));
        if (eff[p] != modes[p]) {
            printf("  cpu %s: not in effect here (%s): fp32 bits %s\n", sl_precision_name(modes[p]),
                   sl_precision_name(eff[p]), same ? "kept" : "CHANGED");
            CHECK_MSG(eff[p] == SL_PREC_FP32 && same, "%s without AMX: not the fp32 embedding",
                      sl_precision_name(modes[p]));
            continue;
        }
        printf("  cpu %s: 1 - cosine to fp32 %.3g (tol %g)\n", sl_precision_name(modes[p]), gap, tol);
        CHECK_MSG(gap <= tol, "%s: 1 - cosine %g above %g", sl_precision_name(modes[p]), gap, tol);
        if (tiles)
            CHECK_MSG(!same, "%s: the fp32 bits (the AMX path did not run)", sl_precision_name(modes[p]));
    }
    for (int p = 0; p < 4; p++)
        free(v[p]);
}

static int full_check(void)
{
    const char *slg = slg_path_in("clap-full", "clap-full");
    snprintf(weights_path, sizeof weights_path, "%.*s.safetensors", (int)(strlen(slg) - 4), slg);
    slg_file g;
    CHECK(slg_load_in(&g, "clap-full", "clap-full") == 0);
    printf("clap audio tower, full size, vs laion_clap (float64 reference), %s\n", weights_path);
    static const char *const backends[] = {"cpu", "cuda"};
    for (int b = 0; b < 2; b++) {
        sl_op_ctx *ctx = NULL;
        if (sl_op_ctx_open(&ctx, backends[b]) < 0) {
            printf("  %-8s SKIPPED (%s)\n", backends[b], sl_lasterr());
            continue;
        }
        sl_emb_model *m = NULL;
        int rc = sl_emb_open(&m, "clap", weights_path, NULL, ctx);
        CHECK_MSG(rc == 0, "open clap: %s", sl_lasterr());
        size_t n = 0;
        const float *x = slg_array(&g, "input", &n);
        if (rc == 0) {
            sl_clap_audio_geom G;
            CHECK(sl_clap_audio_geometry(m, &G) == 0);
            float *latent = malloc((size_t)G.latent * sizeof(float)), *vec = malloc((size_t)G.dim * sizeof(float));
            sl_clap_audio_stages st = {.latent = latent};
            CHECK(G.n_stages == 4 && G.latent == 1024 && G.dim == 512 && G.frames == 1001);
            rc = sl_clap_audio_run_stages(m, x, n, vec, &st);
            CHECK_MSG(rc == 0, "clap: %s", sl_lasterr());
            if (rc == 0) {
                check_stage(backends[b], "latent", latent, &g, (size_t)G.latent);
                check_stage(backends[b], "embedding", vec, &g, (size_t)G.dim);
                const float *in[1] = {x};
                CHECK(sl_emb_run(m, in, (size_t)slg_int(&g, "short_n"), vec) == 0);
                check_stage(backends[b], "short_embedding", vec, &g, (size_t)G.dim);
                if (b == 0)
                    precision_check(x, n, (size_t)G.dim, 1e-6, 1e-3, 1);
            }
            free(latent);
            free(vec);
        }
        sl_emb_close(m);
        sl_op_ctx_close(ctx);
    }
    slg_free(&g);
    return sl_test_finish("clap_audio --full");
}

int main(int argc, char **argv)
{
    sl_log_set_level(SL_LOG_WARN);
    if (argc > 1 && !strcmp(argv[1], "--full"))
        return full_check();
    const char *slg = slg_path_in("clap", "clap-small");
    snprintf(weights_path, sizeof weights_path, "%.*s.safetensors", (int)(strlen(slg) - 4), slg);
    slg_file g;
    CHECK(slg_load_in(&g, "clap", "clap-small") == 0);
    printf("clap audio tower vs laion_clap (float64 reference), %s\n", weights_path);
    golden_on("cpu", &g, SL_PREC_FP32);
    golden_on("cpu", &g, SL_PREC_BF16X6);
    size_t n_in = 0;
    const float *x_in = slg_array(&g, "input", &n_in);
    precision_check(x_in, n_in, 24, 1e-6, 1e-3, 0);
    golden_on("cuda-emu", &g, SL_PREC_FP32);
    golden_on("cuda", &g, SL_PREC_FP32);
    slg_free(&g);
    errors();
    return sl_test_finish("clap_audio");
}
