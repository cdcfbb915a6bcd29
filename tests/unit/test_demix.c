/* pipeline/demix.h: the streamed cutter + joiner against a direct, whole-array
 * transcription of the reference algorithm (pad the whole track, cut every
 * chunk, weight, sum, divide, crop), with a "model" whose output depends on
 * the chunk's content and on the position inside the chunk (so padding,
 * windows and chunk positions all show), for track lengths around every
 * boundary (one chunk, 2B, chunk edges), num_overlap 1, 2, 3, 4, and a reader
 * that returns short blocks. Also the window values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "pipeline/demix.h"
#include "sl_stream_src.h"
#include "sl_test.h"

#define NS 2 /* sources */

/* the model: source s, channel c, sample i of a chunk of L */
static void model(const float *const *in, size_t L, float *y[NS][2])
{
    for (int s = 0; s < NS; s++)
        for (int c = 0; c < 2; c++)
            for (size_t i = 0; i < L; i++)
                y[s][c][i] = (float)(s + 1) * in[c][i] * (1.0f + (float)i / (float)L) + 0.25f * in[1 - c][L - 1 - i];
}

/* The reference, on whole arrays (doubles for the sums). */
static void reference(const float *const *x, size_t n, size_t L, int no, float *out[NS][2])
{
    const size_t H = L / (size_t)no, B = L - H, fade = L / 10;
    const int pad = n > 2 * B && B > 0;
    const size_t front = pad ? B : 0, np = n + 2 * front;
    float *P[2];
    for (int c = 0; c < 2; c++) {
        P[c] = malloc(np * sizeof(float));
        for (size_t j = 0; j < np; j++) {
            long xi = (long)j - (long)front;
            if (xi < 0)
                xi = -xi;
            if (xi >= (long)n)
                xi = 2 * ((long)n - 1) - xi;
            P[c][j] = x[c][xi];
        }
    }
    double *res = calloc((size_t)NS * 2 * np, sizeof(double)), *cnt = calloc(np, sizeof(double));
    float *ch[2], *y[NS][2];
    for (int c = 0; c < 2; c++)
        ch[c] = malloc(L * sizeof(float));
    for (int s = 0; s < NS; s++)
        for (int c = 0; c < 2; c++)
            y[s][c] = malloc(L * sizeof(float));
    for (size_t i = 0; i < np; i += H) {
        const size_t cl = np - i < L ? np - i : L;
        for (int c = 0; c < 2; c++) {
            memcpy(ch[c], P[c] + i, cl * sizeof(float));
            for (size_t j = cl; j < L; j++)
                ch[c][j] = cl > L / 2 ? ch[c][2 * cl - 2 - j] : 0.0f;
        }
        model((const float *const *)ch, L, y);
        const int first = i == 0, last = i + H >= np;
        for (size_t j = 0; j < cl; j++) {
            float w = 1.0f;
            if (j < fade && !first)
                w = fade > 1 ? (float)j / (float)(fade - 1) : 0.0f;
            else if (j >= L - fade && !(last && !first))
                w = fade > 1 ? (float)(L - 1 - j) / (float)(fade - 1) : 1.0f;
            cnt[i + j] += w;
            for (int s = 0; s < NS; s++)
                for (int c = 0; c < 2; c++)
                    res[((size_t)s * 2 + c) * np + i + j] += (double)y[s][c][j] * w;
        }
    }
    for (int s = 0; s < NS; s++)
        for (int c = 0; c < 2; c++) {
            for (size_t j = 0; j < n; j++) {
                const double W = cnt[front + j];
                out[s][c][j] = W != 0 ? (float)(res[((size_t)s * 2 + c) * np + front + j] / W) : 0.0f;
            }
            free(y[s][c]);
        }
    for (int c = 0; c < 2; c++) {
        free(P[c]);
        free(ch[c]);
    }
    free(res);
    free(cnt);
}

/* Streams x through cutter -> model -> joiner; returns samples written to out. */
static size_t streamed(const float *const *x, size_t n, size_t L, int no, size_t block, float *out[NS][2])
{
    sl_demix_cutter cut;
    sl_demix_joiner jn;
    CHECK(sl_demix_cutter_init(&cut, L, no, 2) == 0);
    CHECK(sl_demix_joiner_init(&jn, L, no, NS, 2) == 0);
    src s = {{x[0], x[1]}, n, 0, block};
    float *in[2], *y[NS][2];
    for (int c = 0; c < 2; c++)
        in[c] = malloc(L * sizeof(float));
    for (int k = 0; k < NS; k++)
        for (int c = 0; c < 2; c++)
            y[k][c] = malloc(L * sizeof(float));
    float *const *yp[NS] = {y[0], y[1]};
    size_t pos = 0, chunks = 0;
    sl_demix_pos dp;
    long len;
    while ((len = sl_demix_cutter_next(&cut, rd, &s, in, &dp)) > 0) {
        CHECK(dp.start == chunks * (L / (size_t)no) && dp.first == (chunks == 0));
        chunks++;
        model((const float *const *)in, L, y);
        size_t e = sl_demix_joiner_push(&jn, yp, &dp);
        for (int k = 0; k < NS; k++)
            for (int c = 0; c < 2; c++)
                if (pos + e <= n)
                    memcpy(out[k][c] + pos, y[k][c], e * sizeof(float));
        pos += e;
        CHECK(dp.last || len == (long)L || (size_t)len > L / (size_t)no);
    }
    CHECK(len == 0);
    CHECK(cut.total == n);
    CHECK(sl_demix_cutter_next(&cut, rd, &s, in, &dp) == 0);
    for (int c = 0; c < 2; c++)
        free(in[c]);
    for (int k = 0; k < NS; k++)
        for (int c = 0; c < 2; c++)
            free(y[k][c]);
    sl_demix_cutter_free(&cut);
    sl_demix_joiner_free(&jn);
    return pos;
}

static void case_(size_t n, size_t L, int no, size_t block)
{
    float *x[2], *a[NS][2], *b[NS][2];
    for (int c = 0; c < 2; c++) {
        x[c] = malloc(n * sizeof(float));
        for (size_t i = 0; i < n; i++)
            x[c][i] = (float)(((i * 7919u + (size_t)c * 104729u) % 1000u) / 500.0 - 1.0);
    }
    for (int s = 0; s < NS; s++)
        for (int c = 0; c < 2; c++) {
            a[s][c] = calloc(n, sizeof(float));
            b[s][c] = calloc(n, sizeof(float));
        }
    reference((const float *const *)x, n, L, no, a);
    size_t got = streamed((const float *const *)x, n, L, no, block, b);
    CHECK_MSG(got == n, "n %zu L %zu num_overlap %d: %zu samples out", n, L, no, got);
    double err = 0, ref = 0;
    for (int s = 0; s < NS; s++)
        for (int c = 0; c < 2; c++)
            for (size_t i = 0; i < n; i++) {
                double d = fabs((double)a[s][c][i] - b[s][c][i]);
                err = d > err ? d : err;
                ref = fabs(a[s][c][i]) > ref ? fabs(a[s][c][i]) : ref;
            }
    CHECK_MSG(err <= 2e-6 * (ref > 1 ? ref : 1), "n %zu L %zu num_overlap %d block %zu: max error %g of %g", n, L,
              no, block, err, ref);
    for (int c = 0; c < 2; c++)
        free(x[c]);
    for (int s = 0; s < NS; s++)
        for (int c = 0; c < 2; c++) {
            free(a[s][c]);
            free(b[s][c]);
        }
}

int main(void)
{
    /* the window: torch.linspace values, first / last / both */
    CHECK(sl_demix_window(100, 10, 0, 0, 0) == 0.0f);
    CHECK(sl_demix_window(100, 10, 9, 0, 0) == 1.0f);
    CHECK_NEAR(sl_demix_window(100, 10, 3, 0, 0), 3.0 / 9.0, 1e-7);
    CHECK(sl_demix_window(100, 10, 99, 0, 0) == 0.0f);
    CHECK_NEAR(sl_demix_window(100, 10, 93, 0, 0), 6.0 / 9.0, 1e-7);
    CHECK(sl_demix_window(100, 10, 0, 1, 0) == 1.0f && sl_demix_window(100, 10, 99, 1, 0) == 0.0f);
    CHECK(sl_demix_window(100, 10, 99, 0, 1) == 1.0f && sl_demix_window(100, 10, 0, 0, 1) == 0.0f);
    CHECK(sl_demix_window(100, 10, 99, 1, 1) == 0.0f && sl_demix_window(100, 10, 0, 1, 1) == 1.0f);
    CHECK(sl_demix_window(100, 10, 50, 0, 0) == 1.0f);
    sl_demix_cutter d;
    CHECK(sl_demix_cutter_init(&d, 9, 2, 2) == SL_EINVAL);
    CHECK(sl_demix_cutter_init(&d, 40, 41, 2) == SL_EINVAL);
    const size_t L = 40;
    const int overlaps[] = {1, 2, 3, 4};
    for (int oi = 0; oi < 4; oi++) {
        const int no = overlaps[oi];
        const size_t H = L / (size_t)no, B = L - H;
        size_t lens[] = {1, 2, 3, 19, 20, 21, 39, 40, 41, H, H + 1, 2 * B, 2 * B + 1, 2 * B + 2, 79, 80, 81,
                         L + B, 3 * L + 7, 5 * L, 5 * L + H - 1, 517};
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            if (!lens[li])
                continue;
            case_(lens[li], L, no, 0);
            case_(lens[li], L, no, 7);
        }
    }
    case_(1000, 47, 4, 3); /* H does not divide L */
    case_(1000, 47, 3, 0);
    return sl_test_finish("demix");
}
