/* Encoder tests: float -> WAV s16/s24/f32 and FLAC s16/s24 -> decode back
 * (same length and rate, error within half a quantisation step, explicit
 * clipping); resampled output length is exactly round(n * out / in) and in
 * phase; temporary files never survive finish or abort; bad parameters and
 * unwritable destinations fail with the file named and nothing under the
 * final name, and so does a failed fsync. */
#include "common/sl_error.h"
#include "io/decode.h"
#include "io/encode.h"
#include "io/npy.h"
#include "sl_test.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *dir;

#define RATE 44100
#define N 66161 /* 1.5 s and a few frames: not a multiple of any frame size */

static float *sig[2];

static void make_signal(void)
{
    for (int c = 0; c < 2; c++)
        sig[c] = malloc(N * sizeof(float));
    uint32_t s = 1;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        double noise = ((double)(s >> 8) / 16777216.0 - 0.5) * 0.01;
        sig[0][i] = (float)(0.8 * sin(2 * M_PI * 440 * i / RATE) + noise);
        sig[1][i] = (float)(0.5 * sin(2 * M_PI * 1000 * i / RATE) - noise);
    }
    /* Out of range samples: must saturate in integer formats, never wrap. */
    sig[0][1000] = 1.7f;
    sig[0][1001] = -3.0f;
    sig[1][2000] = 1.0f;
    sig[1][2001] = -1.0f;
}

/* Number of entries in folder d whose name contains ".tmp-". */
static int count_tmp(const char *d)
{
    const int n = sl_test_count_names(d, ".tmp-");
    return n < 0 ? 0 : n; /* a folder that cannot be read holds none */
}

static float expected(int c, int i, int q)
{
    float x = sig[c][i];
    if (q == 2) /* f32 keeps everything */
        return x;
    return x > 1.0f ? 1.0f : x < -1.0f ? -1.0f : x;
}

typedef struct {
    const char *fmt, *sf, *codec;
    int q;         /* 0 s16, 1 s24, 2 f32 */
    double tol;    /* max abs error on the way back */
} rt_case;

static void test_round_trip(void)
{
    static const rt_case cases[] = {
        {"wav", "s16", "pcm_s16le", 0, 0.5 / 32768 + 1e-7},
        {"wav", "s24", "pcm_s24le", 1, 0.5 / 8388608 + 1e-7},
        {"wav", "f32", "pcm_f32le", 2, 0},
        {"flac", "s16", "flac", 0, 0.5 / 32768 + 1e-7},
        {"flac", "s24", "flac", 1, 0.5 / 8388608 + 1e-7},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const rt_case *rc = &cases[k];
        char sub[1024], path[1200];
        snprintf(sub, sizeof sub, "%s/rt/%s-%s/deeper", dir, rc->fmt, rc->sf);
        snprintf(path, sizeof path, "%s/stem.%s", sub, rc->fmt);
        sl_encode_params p = {rc->fmt, rc->sf, RATE, RATE, 2, 0};
        int r = sl_encode_file(path, &p, (const float *const *)sig, N);
        CHECK_MSG(r == 0, "%s %s: %s", rc->fmt, rc->sf, sl_lasterr());
        if (r)
            continue;
        CHECK_MSG(count_tmp(sub) == 0, "%s: temporary file left", path);
        float **back = NULL;
        size_t n = 0;
        sl_audio_info info;
        r = sl_decode_file(path, 0, 0, &back, &n, &info);
        CHECK_MSG(r == 0, "decode %s: %s", path, sl_lasterr());
        if (r)
            continue;
        CHECK_MSG(n == N, "%s: %zu frames back, want %d", path, n, N);
        CHECK(info.sample_rate == RATE && info.channels == 2);
        CHECK_MSG(!strcmp(info.codec, rc->codec), "%s: codec %s, want %s", path, info.codec, rc->codec);
        double maxerr = 0;
        for (int c = 0; c < 2 && n == N; c++)
            for (int i = 0; i < N; i++) {
                double e = fabs(back[c][i] - expected(c, i, rc->q));
                /* +1.0 is one step above the largest code (32767/32768). */
                if (rc->q != 2 && expected(c, i, rc->q) >= 1.0f)
                    e -= rc->q == 0 ? 1.0 / 32768 : 1.0 / 8388608;
                if (e > maxerr)
                    maxerr = e;
            }
        CHECK_MSG(maxerr <= rc->tol, "%s: max error %g > %g", path, maxerr, rc->tol);
        if (n == N && rc->q != 2) {
            CHECK_MSG(back[0][1000] > 0.999f, "%s: +1.7 must saturate to full scale, got %g", path, back[0][1000]);
            CHECK_MSG(back[0][1001] == -1.0f, "%s: -3.0 must saturate to -1, got %g", path, back[0][1001]);
        }
        if (n == N && rc->q == 2)
            CHECK(back[0][1000] == 1.7f && back[0][1001] == -3.0f);
        for (int c = 0; c < 2; c++)
            free(back[c]);
        free(back);
        if (!strcmp(rc->fmt, "wav")) {
            /* The data chunk holds exactly N frames of the stated width. */
            struct stat sb;
            int bytes = rc->q == 0 ? 2 : rc->q == 1 ? 3 : 4;
            CHECK(stat(path, &sb) == 0 && sb.st_size >= (off_t)N * 2 * bytes &&
                  sb.st_size < (off_t)N * 2 * bytes + 128);
        }
    }
}

/* Every code is the one the definition gives: the sample clipped to [-1, 1]
 * (NaN to 0), times 2^15 (2^23), rounded to the nearest integer with ties to
 * even (lrintf / lrint, computed here), at most 2^15 - 1 (2^23 - 1): ties of
 * both parities and signs, the ends of the range, infinities, NaN, -0, a
 * subnormal and random samples, in mono, stereo and 4 channels (the encoder
 * has a separate path for 1 and 2), through WAV (the codes themselves) and
 * FLAC (lossless: the same codes back; 1 and 2 channels). */
#define QN 437 /* not a multiple of any vector width */
static void test_exact_codes(void)
{
    static float v[4][QN];
    uint32_t st = 7;
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < QN; i++) {
            const int k = (i * 37 + c * 11) % 200 - 100; /* ties k + 1/2 of either parity and sign */
            float x;
            switch ((i + c) % 8) {
            case 0: x = ((float)k + 0.5f) / 32768.0f; break;
            case 1: x = ((float)k * 4096.0f + 0.5f) / 8388608.0f; break; /* ties at 24 bits, across the range */
            case 2: x = ((float)k * 327.0f + 0.5f) / 32768.0f; break;    /* ties at 16 bits, across the range */
            case 3: {
                static const float ends[] = {1.0f, -1.0f, 32767.5f / 32768.0f, -32767.5f / 32768.0f, 1.0000001f,
                                             -1.0000001f, 0.99999994f, -0.99999994f, 8388607.5f / 8388608.0f,
                                             -8388607.5f / 8388608.0f, 0.0f, -0.0f, 1e-40f, -1e-40f,
                                             0.5f / 32768.0f, -0.5f / 32768.0f};
                x = ends[(i / 8 + c) % (int)(sizeof ends / sizeof *ends)];
                break;
            }
            case 4: x = (i / 8) % 3 == 0 ? NAN : (i / 8) % 3 == 1 ? INFINITY : -INFINITY; break;
            default:
                st = st * 1664525u + 1013904223u;
                x = ((float)(st >> 8) / 16777216.0f - 0.5f) * 2.4f; /* some beyond +-1 */
            }
            v[c][i] = x;
        }
    static const struct {
        const char *fmt, *sf;
        int bits;
    } cases[] = {{"wav", "s16", 16}, {"wav", "s24", 24}, {"flac", "s16", 16}, {"flac", "s24", 24}};
    for (size_t q = 0; q < sizeof cases / sizeof *cases; q++)
        for (int ch = 1; ch <= 4; ch += ch == 2 ? 2 : 1) {
            if (ch == 4 && !strcmp(cases[q].fmt, "flac"))
                continue; /* (FLAC has no layout for FFmpeg's 4.0; the codes are WAV's) */
            char path[1200];
            snprintf(path, sizeof path, "%s/codes/%s-%d.%s", dir, cases[q].sf, ch, cases[q].fmt);
            sl_encode_params p = {cases[q].fmt, cases[q].sf, RATE, RATE, ch, 0};
            const float *pl[4] = {v[0], v[1], v[2], v[3]};
            int r = sl_encode_file(path, &p, pl, QN);
            CHECK_MSG(r == 0, "%s: %s", path, sl_lasterr());
            float **back = NULL;
            size_t n = 0;
            sl_audio_info info;
            if (r || (r = sl_decode_file(path, 0, 0, &back, &n, &info)) != 0) {
                CHECK_MSG(r == 0, "decode %s: %s", path, sl_lasterr());
                continue;
            }
            CHECK_MSG(n == QN && info.channels == ch, "%s: %zu frames of %d channels back", path, n, info.channels);
            const double scale = cases[q].bits == 16 ? 32768.0 : 8388608.0;
            int bad = 0;
            for (int c = 0; c < ch && n == QN; c++)
                for (int i = 0; i < QN; i++) {
                    float x = v[c][i];
                    x = x != x ? 0.0f : x > 1.0f ? 1.0f : x < -1.0f ? -1.0f : x;
                    long want = cases[q].bits == 16 ? lrintf(x * 32768.0f) : lrint((double)x * 8388608.0);
                    if (want > (long)scale - 1)
                        want = (long)scale - 1;
                    const double got = (double)back[c][i] * scale;
                    if (got != (double)want && bad++ < 5)
                        CHECK_MSG(0, "%s: channel %d sample %d (%.9g): code %.1f, want %ld", path, c, i,
                                  (double)v[c][i], got, want);
                }
            CHECK_MSG(bad == 0, "%s: %d codes differ from the definition", path, bad);
            for (int c = 0; c < info.channels; c++)
                free(back[c]);
            free(back);
        }
}

/* Writing in many odd-sized pieces gives the same bytes as one write, and the
 * same samples give the same bytes twice (no version strings, no timestamps). */
static void test_chunked_and_deterministic(void)
{
    for (int resample = 0; resample < 2; resample++) {
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/det/one-%d.flac", dir, resample);
        snprintf(b, sizeof b, "%s/det/many-%d.flac", dir, resample);
        sl_encode_params p = {"flac", "s24", RATE, resample ? 48000 : RATE, 2, 0};
        CHECK(sl_encode_file(a, &p, (const float *const *)sig, N) == 0);
        sl_encoder *e;
        int r = sl_encoder_open(&e, b, &p);
        CHECK(r == 0);
        if (r)
            continue;
        size_t done = 0, step = 1;
        while (done < N && r == 0) {
            size_t n = step < N - done ? step : N - done;
            const float *pl[2] = {sig[0] + done, sig[1] + done};
            r = sl_encoder_write(e, pl, n);
            done += n;
            step = step * 3 + 1;
            if (step > 20000)
                step = 777;
        }
        CHECK(r == 0);
        CHECK(sl_encoder_write(e, NULL, 0) == 0);
        CHECK(sl_encoder_finish(e) == 0);
        char cmd[2200];
        snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
        CHECK_MSG(system(cmd) == 0, "chunked write differs from one write (resample=%d)", resample);
        snprintf(b, sizeof b, "%s/det/again-%d.flac", dir, resample);
        CHECK(sl_encode_file(b, &p, (const float *const *)sig, N) == 0);
        snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", a, b);
        CHECK_MSG(system(cmd) == 0, "same input gave different bytes (resample=%d)", resample);
    }
}

/* Output length is round(n_in * out_rate / in_rate) and the sine stays a
 * sine at the same frequency and phase (no filter delay left in). */
static void test_resample(void)
{
    static const int pairs[][2] = {{48000, 44100}, {44100, 48000}, {22050, 44100}, {96000, 44100}, {44100, 11025}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        int in = pairs[k][0], out = pairs[k][1];
        long n_in = in + in / 2 + 7;
        float *x = malloc((size_t)n_in * sizeof(float));
        for (long i = 0; i < n_in; i++)
            x[i] = (float)(0.5 * sin(2 * M_PI * 440 * (double)i / in));
        char path[1024];
        snprintf(path, sizeof path, "%s/rs/%d-%d.wav", dir, in, out);
        sl_encode_params p = {"wav", "f32", in, out, 1, 0};
        int r = sl_encode_file(path, &p, (const float *const *)&x, (size_t)n_in);
        CHECK_MSG(r == 0, "%s: %s", path, sl_lasterr());
        free(x);
        if (r)
            continue;
        float **back = NULL;
        size_t n = 0;
        sl_audio_info info;
        r = sl_decode_file(path, 0, 0, &back, &n, &info);
        CHECK(r == 0);
        if (r)
            continue;
        long want = (long)floor((double)n_in * out / in + 0.5);
        CHECK_MSG((long)n == want, "%d -> %d: %zu frames, want %ld", in, out, n, want);
        CHECK(info.sample_rate == out);
        double maxerr = 0;
        for (size_t i = n / 10; i < n - n / 10; i++) {
            double e = fabs(back[0][i] - 0.5 * sin(2 * M_PI * 440 * (double)i / out));
            if (e > maxerr)
                maxerr = e;
        }
        CHECK_MSG(maxerr < 0.01, "%d -> %d: max error %g against the ideal sine (phase or level off)", in, out,
                  maxerr);
        free(back[0]);
        free(back);
    }
}

static void test_abort_and_tmp(void)
{
    char sub[1024], path[1200];
    snprintf(sub, sizeof sub, "%s/abort", dir);
    snprintf(path, sizeof path, "%s/x.wav", sub);
    sl_encode_params p = {"wav", "s16", RATE, RATE, 2, 0};
    sl_encoder *e;
    int r = sl_encoder_open(&e, path, &p);
    CHECK(r == 0);
    if (r)
        return;
    CHECK(sl_encoder_write(e, (const float *const *)sig, 10000) == 0);
    /* While writing, only the temporary name exists. */
    CHECK(!sl_test_exists(path));
    CHECK_MSG(count_tmp(sub) == 1, "expected one x.wav.tmp-PID-N while writing");
    sl_encoder_abort(e);
    CHECK(!sl_test_exists(path));
    CHECK_MSG(count_tmp(sub) == 0, "abort left a temporary file");
    sl_encoder_abort(NULL);

    /* Two encoders for the same final path at once get distinct temp names. */
    sl_encoder *e1, *e2;
    CHECK(sl_encoder_open(&e1, path, &p) == 0);
    CHECK(sl_encoder_open(&e2, path, &p) == 0);
    CHECK(count_tmp(sub) == 2);
    sl_encoder_abort(e1);
    CHECK(sl_encoder_finish(e2) == 0);
    CHECK(sl_test_exists(path) && count_tmp(sub) == 0);
}

/* sl_encoder_finish in two steps: after close the file is complete under its
 * temporary name only (nothing more may be written), commit puts it in place
 * with the same bytes as a one-step finish; a closed encoder may still be
 * abandoned, and a failed fsync fails the commit, leaving neither name. */
static void test_close_commit(void)
{
    char sub[1024], path[1200], one[1200];
    snprintf(sub, sizeof sub, "%s/close", dir);
    snprintf(path, sizeof path, "%s/z.flac", sub);
    snprintf(one, sizeof one, "%s/one.flac", sub);
    sl_encode_params p = {"flac", "s16", RATE, RATE, 2, 0};
    CHECK(sl_encode_file(one, &p, (const float *const *)sig, 20000) == 0);
    sl_encoder *e;
    int r = sl_encoder_open(&e, path, &p);
    CHECK(r == 0);
    if (r)
        return;
    CHECK(sl_encoder_write(e, (const float *const *)sig, 20000) == 0);
    CHECK(sl_encoder_close(e) == 0);
    CHECK_MSG(!sl_test_exists(path) && count_tmp(sub) == 1, "after close: only the temporary file");
    CHECK_MSG(sl_encoder_write(e, (const float *const *)sig, 10) == SL_EINVAL, "a write after close is refused");
    CHECK(sl_encoder_close(e) == 0); /* again: nothing to do */
    CHECK(sl_encoder_commit(e) == 0);
    CHECK(sl_test_exists(path) && count_tmp(sub) == 0);
    size_t na = 0, nb = 0;
    char *a = sl_test_slurp(path, &na), *b = sl_test_slurp(one, &nb);
    CHECK_MSG(a && b && na == nb && na > 0 && !memcmp(a, b, na), "close + commit wrote other bytes than finish");
    free(a);
    free(b);
    /* closed, then abandoned: nothing left */
    snprintf(path, sizeof path, "%s/w.flac", sub);
    CHECK(sl_encoder_open(&e, path, &p) == 0);
    CHECK(sl_encoder_write(e, (const float *const *)sig, 5000) == 0);
    CHECK(sl_encoder_close(e) == 0);
    sl_encoder_abort(e);
    CHECK(!sl_test_exists(path) && count_tmp(sub) == 0);
    /* a commit whose fsync fails: an error naming the file, neither name left */
    CHECK(sl_encoder_open(&e, path, &p) == 0);
    CHECK(sl_encoder_write(e, (const float *const *)sig, 5000) == 0);
    CHECK(sl_encoder_close(e) == 0);
    sl_io_fault_fsync("w.flac.tmp-");
    r = sl_encoder_commit(e);
    sl_io_fault_fsync(NULL);
    CHECK_MSG(r == -EIO && strstr(sl_lasterr(), path), "commit with a failed fsync: %d (%s)", r, sl_lasterr());
    CHECK(!sl_test_exists(path) && count_tmp(sub) == 0);
    CHECK(sl_encoder_commit(NULL) == SL_EINVAL);
}

/* A failed fsync of the temporary file, or of the folder after the rename,
 * fails the finish with the file named, and leaves nothing under either name
 * (fault injection: sl_io_fault_fsync). */
static void test_fsync_failure(void)
{
    sl_encode_params p = {"wav", "s16", RATE, RATE, 2, 0};
    const char *faults[2] = {"y.wav.tmp-", "dir:/fsync-dir"};
    for (int k = 0; k < 2; k++) {
        char sub[1024], path[1200];
        snprintf(sub, sizeof sub, "%s/fsync-%s", dir, k ? "dir" : "file");
        snprintf(path, sizeof path, "%s/y.wav", sub);
        sl_io_fault_fsync(faults[k]);
        sl_clearerr();
        int r = sl_encode_file(path, &p, (const float *const *)sig, 5000);
        sl_io_fault_fsync(NULL);
        CHECK_MSG(r == -EIO, "fsync fault on %s: finish returned %d, want -EIO", faults[k], r);
        CHECK_MSG(strstr(sl_lasterr(), "fsync") && strstr(sl_lasterr(), path), "message '%s' lacks fsync or %s",
                  sl_lasterr(), path);
        CHECK_MSG(!sl_test_exists(path), "%s exists after a failed fsync", path);
        CHECK_MSG(count_tmp(sub) == 0, "a temporary file survived a failed fsync");
        /* without the fault the same write succeeds */
        CHECK(sl_encode_file(path, &p, (const float *const *)sig, 5000) == 0 && sl_test_exists(path));
    }
}

static void expect_einval(const char *fmt, const char *sf, int ch, int in, int out, const char *what)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/inval/x.%s", dir, fmt ? fmt : "wav");
    sl_encode_params p = {fmt, sf, in, out, ch, 0};
    sl_encoder *e = NULL;
    sl_clearerr();
    int r = sl_encoder_open(&e, path, &p);
    CHECK_MSG(r == SL_EINVAL, "%s/%s: got %d", fmt, sf, r);
    CHECK_MSG(strstr(sl_lasterr(), path) && strstr(sl_lasterr(), what), "message '%s' lacks path or '%s'",
              sl_lasterr(), what);
    CHECK(e == NULL && !sl_test_exists(path));
}

static void test_errors(void)
{
    expect_einval("flac", "f32", 2, RATE, RATE, "FLAC cannot store 32-bit float");
    expect_einval("wma", "s16", 2, RATE, RATE, "unknown stem format");
    expect_einval("wav", "s8", 2, RATE, RATE, "unknown sample format");
    expect_einval("wav", "s16", 0, RATE, RATE, "channels");
    expect_einval("flac", "s16", 9, RATE, RATE, "channels");
    expect_einval("wav", "s16", 2, 0, RATE, "rate");

    /* Unwritable destination: a parent "folder" that is a regular file. */
    char blocker[1024], path[1200];
    snprintf(blocker, sizeof blocker, "%s/blocker", dir);
    FILE *f = fopen(blocker, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    snprintf(path, sizeof path, "%s/sub/x.wav", blocker);
    sl_encode_params p = {"wav", "s16", RATE, RATE, 2, 0};
    sl_clearerr();
    int r = sl_encode_file(path, &p, (const float *const *)sig, 1000);
    CHECK_MSG(r < 0, "writing under a file must fail");
    CHECK_MSG(strstr(sl_lasterr(), path) != NULL, "message does not name the file: '%s'", sl_lasterr());
    CHECK(!sl_test_exists(path));
    /* The destination itself is a folder: the rename must fail and clean up. */
    char sub[1024];
    snprintf(sub, sizeof sub, "%s/isdir", dir);
    snprintf(path, sizeof path, "%s/x.flac", sub);
    CHECK(mkdir(sub, 0755) == 0 && mkdir(path, 0755) == 0);
    p.format = "flac";
    sl_clearerr();
    r = sl_encode_file(path, &p, (const float *const *)sig, 1000);
    CHECK_MSG(r < 0 && strstr(sl_lasterr(), path), "rename over a folder: r=%d '%s'", r, sl_lasterr());
    CHECK_MSG(count_tmp(sub) == 0, "failed finish left a temporary file");
    if (geteuid() != 0) {
        /* Permission bits only stop non-root users. */
        snprintf(sub, sizeof sub, "%s/ro", dir);
        CHECK(mkdir(sub, 0555) == 0);
        snprintf(path, sizeof path, "%s/x.wav", sub);
        r = sl_encode_file(path, &p, (const float *const *)sig, 1000);
        CHECK(r < 0 && strstr(sl_lasterr(), path) && !sl_test_exists(path));
        chmod(sub, 0755);
    }
    /* Zero frames is a valid (empty) file, and writes after an error are refused. */
    snprintf(path, sizeof path, "%s/empty/x.wav", dir);
    p.format = "wav";
    CHECK(sl_encode_file(path, &p, NULL, 0) == 0 && sl_test_exists(path));
}

static void test_mono_and_multichannel(void)
{
    float *pl[6];
    for (int c = 0; c < 6; c++)
        pl[c] = sig[c % 2];
    for (int ch = 1; ch <= 6; ch += 5) {
        char path[1024];
        snprintf(path, sizeof path, "%s/ch/%d.flac", dir, ch);
        sl_encode_params p = {"flac", "s16", RATE, RATE, ch, 0};
        int r = sl_encode_file(path, &p, (const float *const *)pl, N);
        CHECK_MSG(r == 0, "%d channels: %s", ch, sl_lasterr());
        sl_audio_info info;
        float **back = NULL;
        size_t n = 0;
        if (r == 0 && sl_decode_file(path, 0, 0, &back, &n, &info) == 0) {
            CHECK(info.channels == ch && n == N);
            for (int c = 0; c < ch; c++)
                free(back[c]);
            free(back);
        } else {
            CHECK_MSG(0, "decode %s failed", path);
        }
    }
}

int main(void)
{
    sl_io_init();
    dir = sl_test_tmpdir();
    make_signal();
    test_round_trip();
    test_exact_codes();
    test_chunked_and_deterministic();
    test_resample();
    test_abort_and_tmp();
    test_close_commit();
    test_fsync_failure();
    test_errors();
    test_mono_and_multichannel();
    free(sig[0]);
    free(sig[1]);
    sl_test_rmdir(dir);
    return sl_test_finish("encode");
}
