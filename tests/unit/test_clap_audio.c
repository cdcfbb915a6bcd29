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

static void golden_on(const char *backend, const slg_file *g)
{
    sl_op_ctx *ctx = NULL;
    if (sl_op_ctx_open(&ctx, backend) < 0) {
        printf("  %-8s SKIPPED (%s)\n", backend, sl_lasterr());
        return;
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
    golden_on("cpu", &g);
    golden_on("cuda-emu", &g);
    golden_on("cuda", &g);
    slg_free(&g);
    errors();
    return sl_test_finish("clap_audio");
}
