/* Segmenting and stitching: an identity "model" must give back the input
 * exactly, for every length around the segment boundaries; a model with a
 * constant per-segment gain must give a convex blend at the joins. */
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "pipeline/segment.h"
#include "sl_stream_src.h"
#include "sl_test.h"

/* Runs segment -> f -> stitch; f multiplies segment k by gain(k) and source s by (s+1). */
static size_t run(const float *const *x, size_t n, size_t L, size_t H, size_t chunk, int gain_mode,
                  float *out[2][2])
{
    sl_segmenter sg;
    sl_stitcher st;
    CHECK(sl_segmenter_init(&sg, L, H, 2) == 0);
    CHECK(sl_stitcher_init(&st, L, H, 2, 2) == 0);
    src s = {{x[0], x[1]}, n, 0, chunk};
    float *in[2], *y[2][2];
    for (int c = 0; c < 2; c++)
        in[c] = malloc(L * sizeof(float));
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 2; c++)
            y[k][c] = malloc(L * sizeof(float));
    float *const *yp[2] = {y[0], y[1]};
    float *const *op[2];
    size_t pos = 0;
    long len;
    while ((len = sl_segmenter_next(&sg, rd, &s, in)) > 0) {
        float g = gain_mode ? (float)(1 + (sg.k % 3)) : 1.0f;
        for (int k = 0; k < 2; k++)
            for (int c = 0; c < 2; c++)
                for (size_t j = 0; j < L; j++)
                    y[k][c][j] = in[c][j] * g * (float)(k + 1);
        size_t e = sl_stitcher_push(&st, yp, (size_t)len);
        for (int k = 0; k < 2; k++)
            for (int c = 0; c < 2; c++)
                memcpy(out[k][c] + pos, y[k][c], e * sizeof(float));
        pos += e;
    }
    CHECK(len == 0);
    CHECK(sg.total == n);
    float *tails[2][2];
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 2; c++)
            tails[k][c] = out[k][c] + pos;
    op[0] = tails[0];
    op[1] = tails[1];
    pos += sl_stitcher_flush(&st, op);
    for (int c = 0; c < 2; c++)
        free(in[c]);
    for (int k = 0; k < 2; k++)
        for (int c = 0; c < 2; c++)
            free(y[k][c]);
    sl_segmenter_free(&sg);
    sl_stitcher_free(&st);
    return pos;
}

int main(void)
{
    const size_t geoms[][2] = {{64, 48}, {64, 32}, {100, 99}, {7, 4}, {50, 50}, {1, 1}};
    srand(7);
    for (size_t g = 0; g < sizeof geoms / sizeof geoms[0]; g++) {
        size_t L = geoms[g][0], H = geoms[g][1];
        size_t lens[] = {1, H - 1 ? H - 1 : 1, H, L - 1 ? L - 1 : 1, L, L + 1, L + H - 1, L + H, L + H + 1,
                         3 * L + 5, 10 * L};
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            size_t n = lens[li];
            float *x[2], *out[2][2];
            for (int c = 0; c < 2; c++) {
                x[c] = malloc(n * sizeof(float));
                for (size_t i = 0; i < n; i++)
                    x[c][i] = (float)rand() / RAND_MAX * 2 - 1;
            }
            for (int k = 0; k < 2; k++)
                for (int c = 0; c < 2; c++)
                    out[k][c] = calloc(n + L, sizeof(float));
            for (size_t chunk = 0; chunk < 2; chunk++) {
                size_t got = run((const float *const *)x, n, L, H, chunk ? 13 : 0, 0, out);
                CHECK_MSG(got == n, "L %zu H %zu n %zu: %zu samples out", L, H, n, got);
                double err = 0;
                for (int k = 0; k < 2; k++)
                    for (int c = 0; c < 2; c++)
                        for (size_t i = 0; i < n; i++) {
                            double e = fabs(out[k][c][i] - x[c][i] * (k + 1));
                            err = e > err ? e : err;
                        }
                /* identity through cross-fades: float rounding only */
                CHECK_MSG(err <= 1e-6, "L %zu H %zu n %zu: identity error %g", L, H, n, err);
            }
            /* per-segment gains 1..3: each output sample lies between the gains of
             * the segments covering it (a convex blend, no clicks from weights > 1) */
            run((const float *const *)x, n, L, H, 0, 1, out);
            int ok = 1;
            for (size_t i = 0; i < n; i++) {
                if (fabsf(x[0][i]) < 1e-3f)
                    continue;
                double r = out[0][0][i] / x[0][i];
                if (r < 1 - 1e-4 || r > 3 + 1e-4)
                    ok = 0;
            }
            CHECK_MSG(ok, "L %zu H %zu n %zu: blend outside the segment gains", L, H, n);
            for (int c = 0; c < 2; c++)
                free(x[c]);
            for (int k = 0; k < 2; k++)
                for (int c = 0; c < 2; c++)
                    free(out[k][c]);
        }
    }
    sl_stitcher st;
    CHECK(sl_stitcher_init(&st, 10, 4, 1, 1) == SL_EINVAL); /* overlap 6 > 10/2 */
    sl_segmenter sg;
    CHECK(sl_segmenter_init(&sg, 10, 11, 1) == SL_EINVAL);
    return sl_test_finish("segment");
}
