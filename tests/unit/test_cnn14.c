/* PANNs Cnn14 (models/cnn14.c) against the official panns_inference model code:
 * golden vectors from tools/gen_golden_cnn14.py (official Cnn14 forward and
 * torchlibrosa front end, reduced channel widths 4..24, embedding 32, 527
 * classes, random weights and batch-norm statistics, 2 s of audio at 32 kHz,
 * reference computed in float64). Every stage (log-mel before bn0, the six
 * conv blocks after pooling, the fc1 embedding, the 527 sigmoid scores) is
 * compared on the CPU backend and on cuda-emu (and cuda where a device
 * answers): max|got - ref| / max|ref| <= 1e-4. Also: the scores API, the
 * registry, and weights errors naming the file / key / tensor. */
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
    int rc = sl_emb_open(&m, "cnn14", weights_path, NULL, ctx);
    CHECK_MSG(rc == 0, "open cnn14 on %s: %s", backend, sl_lasterr());
    if (rc) {
        sl_op_ctx_close(ctx);
        return;
    }
    const sl_emb_info *info = sl_emb_get_info(m);
    CHECK(info->sample_rate == 32000 && info->channels == 1 && info->dim == 32 && info->n_scores == 527);
    size_t n = 0;
    const float *x = slg_array(g, "input", &n);
    size_t T;
    int M, ch[6];
    CHECK(sl_cnn14_geometry(m, n, &T, &M, ch) == 0);
    CHECK_MSG(T == (size_t)slg_int(g, "frames") && M == 64, "frames %zu vs %d", T, slg_int(g, "frames"));
    size_t bs[6];
    float *blk[6];
    sl_cnn14_stages st = {.logmel = malloc(T * (size_t)M * sizeof(float))};
    for (int b = 0; b < 6; b++) {
        const int sh = b < 5 ? b + 1 : 5;
        bs[b] = (size_t)ch[b] * (T >> sh) * ((size_t)M >> sh);
        st.block[b] = blk[b] = malloc(bs[b] * sizeof(float));
    }
    float vec[32], scores[527], vec2[32], scores2[527];
    for (int i = 0; i < 527; i++)
        scores[i] = scores2[i] = NAN;
    rc = sl_cnn14_run_stages(m, x, n, vec, scores, &st);
    CHECK_MSG(rc == 0, "cnn14 on %s: %s", backend, sl_lasterr());
    if (rc == 0) {
        check_stage(backend, "logmel", st.logmel, g, T * (size_t)M);
        for (int b = 0; b < 6; b++) {
            char name[16];
            snprintf(name, sizeof name, "block%d", b + 1);
            check_stage(backend, name, blk[b], g, bs[b]);
        }
        check_stage(backend, "embedding", vec, g, 32);
        check_stage(backend, "scores", scores, g, 527);
        /* the public API gives the same numbers */
        const float *in[1] = {x};
        CHECK(sl_emb_run_scores(m, in, n, vec2, scores2) == 0);
        CHECK(memcmp(vec, vec2, sizeof vec) == 0 && memcmp(scores, scores2, sizeof scores) == 0);
        for (int i = 0; i < 32; i++)
            vec2[i] = NAN;
        CHECK(sl_emb_run(m, in, n, vec2) == 0);
        CHECK(memcmp(vec, vec2, sizeof vec) == 0);
        /* a window shorter than 32 frames is zero-padded, not an error */
        CHECK_MSG(sl_emb_run(m, in, 5000, vec2) == 0 && !isnan(vec2[0]), "short window: %s", sl_lasterr());
    }
    free(st.logmel);
    for (int b = 0; b < 6; b++)
        free(blk[b]);
    sl_emb_close(m);
    sl_op_ctx_close(ctx);
}

/* A safetensors file with metadata stemline.arch=cnn14 and only bn0.weight. */
static void write_partial(const char *path)
{
    char hdr[256];
    int len = snprintf(hdr, sizeof hdr,
                       "{\"__metadata__\":{\"stemline.arch\":\"cnn14\"},"
                       "\"bn0.weight\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[0,256]}}");
    while (len % 8)
        hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    unsigned char n8[8] = {0};
    for (int i = 0; i < 8; i++)
        n8[i] = (unsigned char)((unsigned long long)len >> (8 * i));
    float one[64];
    for (int i = 0; i < 64; i++)
        one[i] = 1.0f;
    fwrite(n8, 1, 8, f);
    fwrite(hdr, 1, (size_t)len, f);
    fwrite(one, sizeof one, 1, f);
    fclose(f);
}

static void errors(void)
{
    sl_op_ctx *ctx = NULL;
    CHECK(sl_op_ctx_open(&ctx, "cpu") == 0);
    sl_emb_model *m = NULL;
    CHECK(sl_emb_open(&m, "cnn14", NULL, NULL, ctx) == SL_ECONFIG);
    CHECK_MSG(strstr(sl_lasterr(), "embedding.weights") != NULL, "%s", sl_lasterr());
    CHECK(sl_emb_open(&m, "cnn14", "/nonexistent/cnn14.safetensors", NULL, ctx) < 0);
    CHECK_MSG(strstr(sl_lasterr(), "/nonexistent/cnn14.safetensors") != NULL, "%s", sl_lasterr());
    const char *umx = slg_path_in("umx", "x"); /* .../tests/golden/umx/x.slg */
    char umx_w[1024];
    snprintf(umx_w, sizeof umx_w, "%.*sumx-small.safetensors", (int)(strlen(umx) - 5), umx);
    CHECK(sl_emb_open(&m, "cnn14", umx_w, NULL, ctx) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "stemline.arch") != NULL, "%s", sl_lasterr());
    char part[1100];
    snprintf(part, sizeof part, "%s/partial.safetensors", sl_test_tmpdir());
    write_partial(part);
    CHECK(sl_emb_open(&m, "cnn14", part, NULL, ctx) == SL_EFORMAT);
    CHECK_MSG(strstr(sl_lasterr(), "conv_block1.conv1.weight") != NULL, "%s", sl_lasterr());
    printf("  missing tensor: %s\n", sl_lasterr());
    sl_cfg_opt o = {(char *)"n_mels", (char *)"128", (char *)"job.yaml", 9, 5};
    sl_cfg_opts opts = {&o, 1};
    CHECK(sl_emb_open(&m, "cnn14", weights_path, &opts, ctx) == SL_ECONFIG);
    CHECK_MSG(strstr(sl_lasterr(), "job.yaml:9:5") != NULL, "%s", sl_lasterr());
    /* melstats has no head */
    CHECK(sl_emb_open(&m, "melstats", NULL, NULL, ctx) == 0);
    float v[256], s[1];
    const float z[4000] = {0.5f};
    const float *in[1] = {z};
    CHECK(sl_emb_get_info(m)->n_scores == 0);
    CHECK(sl_emb_run_scores(m, in, 4000, v, s) == SL_EUNSUPPORTED);
    sl_emb_close(m);
    sl_op_ctx_close(ctx);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    const char *slg = slg_path_in("cnn14", "cnn14-small");
    snprintf(weights_path, sizeof weights_path, "%.*s.safetensors", (int)(strlen(slg) - 4), slg);
    slg_file g;
    CHECK(slg_load_in(&g, "cnn14", "cnn14-small") == 0);
    printf("cnn14 vs panns_inference (float64 reference), %s\n", weights_path);
    golden_on("cpu", &g);
    golden_on("cuda-emu", &g);
    golden_on("cuda", &g);
    slg_free(&g);
    errors();
    return sl_test_finish("cnn14");
}
