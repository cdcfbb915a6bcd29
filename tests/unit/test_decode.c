/* Decoder tests. Fixtures are generated at test time with the ffmpeg CLI into a
 * temporary folder: every container/codec the foundation issue names, mono,
 * 5.1, odd sample rates, and bad inputs. Content is checked, not only sizes:
 * the frequency of a known sine (zero crossings), its level, exact mono
 * duplication and the down-mix gains.
 *
 * Length tolerances: wav/flac/aiff/mkv+flac are exact. Lossy codecs are held
 * to +-2048 frames (encoder priming/padding: FFmpeg trims mp3 and opus
 * exactly, but keeps the last AAC frame of an mp4 whole, +888 here). */
#include "common/sl_error.h"
#include "io/decode.h"
#include "sl_test.h"

#include <libavutil/error.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static char path_buf[1024];

static const char *fx(const char *name)
{
    snprintf(path_buf, sizeof path_buf, "%s/%s", dir, name);
    return path_buf;
}

/* Runs ffmpeg ARGS DIR/OUT; returns 0 when the fixture was made. */
static int make(const char *out, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "ffmpeg -nostdin -hide_banner -loglevel error -y %s '%s/%s'", args, dir, out);
    int rc = system(cmd);
    CHECK_MSG(rc == 0, "could not make fixture %s: %s", out, cmd);
    return rc == 0 ? 0 : -1;
}

/* Frequency from zero crossings over the middle half of the signal (avoids
 * codec start-up and tails). */
static double freq(const float *x, size_t n, int rate)
{
    size_t a = n / 4, b = 3 * n / 4, cross = 0;
    for (size_t i = a + 1; i < b; i++)
        if ((x[i - 1] < 0) != (x[i] < 0))
            cross++;
    return cross / 2.0 / ((double)(b - a) / rate);
}

static double peak(const float *x, size_t n)
{
    double p = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(x[i]) > p)
            p = fabs(x[i]);
    return p;
}

static double rms_mid(const float *x, size_t n)
{
    double s = 0;
    size_t a = n / 4, b = 3 * n / 4;
    for (size_t i = a; i < b; i++)
        s += (double)x[i] * x[i];
    return sqrt(s / (double)(b - a));
}

static void free_planes(float **p, int ch)
{
    for (int c = 0; p && c < ch; c++)
        free(p[c]);
    free(p);
}

/* 2 s of 0.5-amplitude 440 Hz in both channels, 44.1 kHz. */
#define SRC_ST "-f lavfi -i aevalsrc='0.5*sin(2*PI*440*t)|0.5*sin(2*PI*440*t)':s=44100:d=2"

typedef struct {
    const char *file, *args;
    long tol;
} format_case;

static void test_formats(void)
{
    static const format_case cases[] = {
        {"s.wav", SRC_ST, 0},
        {"s.flac", SRC_ST, 0},
        {"s.aiff", SRC_ST, 0},
        {"s.mp3", SRC_ST " -c:a libmp3lame -b:a 128k", 2048},
        {"s.m4a", SRC_ST " -c:a aac -b:a 128k", 2048},
        {"s.ogg", SRC_ST " -c:a libvorbis", 2048},
        {"s.opus", SRC_ST " -c:a libopus", 2048},
        {"v.mp4", "-f lavfi -i testsrc=size=64x48:rate=10:d=2 " SRC_ST " -c:v mpeg4 -c:a aac -shortest", 2048},
        {"v.mkv", "-f lavfi -i testsrc=size=64x48:rate=10:d=2 " SRC_ST " -c:v mpeg4 -c:a flac -shortest", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const format_case *fc = &cases[k];
        if (make(fc->file, fc->args))
            continue;
        float **p = NULL;
        size_t n = 0;
        sl_audio_info info;
        int r = sl_decode_file(fx(fc->file), 44100, 2, &p, &n, &info);
        CHECK_MSG(r == 0, "%s: %s", fc->file, sl_lasterr());
        if (r)
            continue;
        CHECK_MSG(labs((long)n - 88200) <= fc->tol, "%s: %zu frames, want 88200 +- %ld", fc->file, n, fc->tol);
        CHECK_MSG(info.channels == 2, "%s: %d source channels", fc->file, info.channels);
        CHECK_MSG(info.sample_rate == (strstr(fc->file, "opus") ? 48000 : 44100), "%s: rate %d", fc->file,
                  info.sample_rate);
        CHECK_MSG(info.duration > 1.9 && info.duration < 2.1, "%s: duration %g", fc->file, info.duration);
        CHECK_MSG(info.container[0] && info.codec[0], "%s: container/codec missing", fc->file);
        for (int c = 0; c < 2; c++) {
            double f = freq(p[c], n, 44100), rms = rms_mid(p[c], n);
            CHECK_MSG(fabs(f - 440) < 4, "%s ch%d: frequency %.2f Hz, want 440", fc->file, c, f);
            CHECK_MSG(fabs(rms - 0.5 / sqrt(2)) < 0.03, "%s ch%d: rms %.4f, want 0.354", fc->file, c, rms);
        }
        if (fc->tol == 0) {
            /* Lossless: the samples are the source's within 16-bit rounding. */
            double maxerr = 0;
            for (size_t i = 0; i < n; i++) {
                double want = 0.5 * sin(2 * M_PI * 440 * (double)i / 44100);
                double e = fabs(p[0][i] - want);
                if (e > maxerr)
                    maxerr = e;
            }
            CHECK_MSG(maxerr < 2.0 / 32768, "%s: max error %g against the analytic sine", fc->file, maxerr);
        }
        free_planes(p, 2);
    }
}

/* Mono sources at odd rates, read as 44.1 kHz stereo: resampled length,
 * frequency kept, and mono duplicated at full level (L == R exactly). */
static void test_rates_and_mono(void)
{
    static const int rates[] = {11025, 22050, 44100, 48000, 96000};
    for (size_t k = 0; k < sizeof rates / sizeof rates[0]; k++) {
        char name[64], args[256];
        snprintf(name, sizeof name, "mono%d.wav", rates[k]);
        snprintf(args, sizeof args, "-f lavfi -i aevalsrc='0.5*sin(2*PI*440*t)':s=%d:d=2", rates[k]);
        if (make(name, args))
            continue;
        float **p = NULL;
        size_t n = 0;
        sl_audio_info info;
        int r = sl_decode_file(fx(name), 44100, 2, &p, &n, &info);
        CHECK_MSG(r == 0, "%s: %s", name, sl_lasterr());
        if (r)
            continue;
        CHECK(info.sample_rate == rates[k] && info.channels == 1);
        CHECK_MSG(labs((long)n - 88200) <= 2, "%s: %zu frames at 44100, want 88200 +- 2", name, n);
        CHECK_MSG(memcmp(p[0], p[1], n * sizeof(float)) == 0, "%s: mono not duplicated exactly", name);
        double f = freq(p[0], n, 44100), pk = peak(p[0], n);
        CHECK_MSG(fabs(f - 440) < 2, "%s: frequency %.2f", name, f);
        CHECK_MSG(pk > 0.49 && pk < 0.52, "%s: peak %.4f, want 0.5 (full-level duplication)", name, pk);
        free_planes(p, 2);
    }
    /* Native rate and channel count (0, 0) leave a mono file mono. */
    float **p = NULL;
    size_t n = 0;
    int r = sl_decode_file(fx("mono48000.wav"), 0, 0, &p, &n, NULL);
    CHECK_MSG(r == 0 && n == 96000, "native decode: r=%d n=%zu", r, n);
    if (r == 0)
        free_planes(p, 1);
}

static void test_downmix(void)
{
    /* FL 440 Hz, FR 880 Hz at 0.5, the rest silent. */
    if (make("m51.wav", "-f lavfi -i aevalsrc='0.5*sin(2*PI*440*t)|0.5*sin(2*PI*880*t)|0|0|0|0':s=44100:d=2:c=5.1"))
        return;
    float **p = NULL;
    size_t n = 0;
    sl_audio_info info;
    int r = sl_decode_file(fx("m51.wav"), 44100, 2, &p, &n, &info);
    CHECK_MSG(r == 0, "5.1 -> stereo: %s", sl_lasterr());
    if (r == 0) {
        CHECK(info.channels == 6 && n == 88200);
        CHECK_MSG(fabs(freq(p[0], n, 44100) - 440) < 2, "L should carry FL");
        CHECK_MSG(fabs(freq(p[1], n, 44100) - 880) < 2, "R should carry FR");
        double pl = peak(p[0], n);
        CHECK_MSG(pl > 0.15 && pl <= 0.5, "L peak %.4f", pl);
        free_planes(p, 2);
    }
    /* Full-scale, identical content everywhere: the down-mix must not clip. */
    if (make("m51full.flac", "-f lavfi -i aevalsrc='0.99*sin(2*PI*440*t)':s=48000:d=1:c=5.1"))
        return;
    for (int och = 1; och <= 2; och++) {
        r = sl_decode_file(fx("m51full.flac"), 44100, och, &p, &n, NULL);
        CHECK_MSG(r == 0, "5.1 -> %d: %s", och, sl_lasterr());
        if (r)
            continue;
        CHECK_MSG(labs((long)n - 44100) <= 2, "5.1 48k -> 44.1k: %zu frames", n);
        for (int c = 0; c < och; c++) {
            double pk = peak(p[c], n);
            CHECK_MSG(pk <= 1.0 + 1e-4 && pk > 0.3, "5.1 -> %d ch%d: peak %.4f must be in (0.3, 1]", och, c, pk);
        }
        free_planes(p, och);
    }
    /* Stereo with the same signal in both channels -> mono keeps its level (0.5 L + 0.5 R). */
    if (make("st.wav", "-f lavfi -i aevalsrc='0.9*sin(2*PI*440*t)|0.9*sin(2*PI*440*t)':s=44100:d=1"))
        return;
    r = sl_decode_file(fx("st.wav"), 44100, 1, &p, &n, NULL);
    CHECK_MSG(r == 0, "stereo -> mono: %s", sl_lasterr());
    if (r == 0) {
        double pk = peak(p[0], n);
        CHECK_MSG(fabs(pk - 0.9) < 0.01, "stereo -> mono peak %.4f, want 0.9", pk);
        free_planes(p, 1);
    }
}

/* Small reads give exactly what one big read gives: nothing is lost or
 * duplicated at chunk borders, including the resampler's tail. */
static void test_chunked(void)
{
    float **whole = NULL;
    size_t n = 0;
    int r = sl_decode_file(fx("s.mp3"), 22050, 1, &whole, &n, NULL);
    CHECK_MSG(r == 0, "%s", sl_lasterr());
    if (r)
        return;
    sl_decoder *d;
    r = sl_decoder_open(&d, fx("s.mp3"), 22050, 1);
    CHECK(r == 0);
    if (r == 0) {
        float *buf = malloc((n + 1000) * sizeof(float));
        size_t got = 0;
        long k;
        while (got + 333 <= n + 1000 && (k = sl_decoder_read(d, &(float *){buf + got}, 333)) > 0) {
            CHECK(k <= 333);
            got += (size_t)k;
        }
        CHECK_MSG(got == n, "chunked %zu vs whole %zu", got, n);
        CHECK(got == n && memcmp(buf, whole[0], n * sizeof(float)) == 0);
        CHECK(sl_decoder_read(d, &buf, 10) == 0);
        CHECK(sl_decoder_frames(d) == (int64_t)n);
        CHECK(sl_decoder_out_rate(d) == 22050 && sl_decoder_out_channels(d) == 1);
        sl_decoder_close(d);
        free(buf);
    }
    free_planes(whole, 1);
}

/* One decoder, several outputs (sl_decoder_add_output): each output, read in
 * step with the others in odd chunk sizes, is bit-identical to a decoder of
 * its own with the same settings: inputs with corrupt packets (silence
 * fill), a 5.1 down-mix, a rate change, the source's own format. */
static void test_outputs(void)
{
    static const struct {
        const char *name;
        int rate[3], ch[3];
    } cases[] = {
        {"s.mp3", {44100, 32000, 22050}, {2, 1, 1}},
        {"bad.mp3", {44100, 32000, 48000}, {2, 1, 2}},
        {"m51.wav", {32000, 44100, 0}, {1, 2, 0}},
        {"m51full.flac", {0, 44100, 16000}, {0, 2, 1}},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *name = cases[ci].name;
        sl_decoder *d = NULL;
        if (sl_decoder_open(&d, fx(name), cases[ci].rate[0], cases[ci].ch[0]) != 0) {
            CHECK_MSG(0, "%s: open: %s", name, sl_lasterr());
            continue;
        }
        float **ref[3] = {0};
        size_t nref[3] = {0};
        int chs[3], ok = 1;
        for (int o = 0; o < 3; o++) {
            chs[o] = cases[ci].ch[o] ? cases[ci].ch[o] : sl_decoder_info(d)->channels;
            int r = sl_decode_file(fx(name), cases[ci].rate[o], cases[ci].ch[o], &ref[o], &nref[o], NULL);
            CHECK_MSG(r == 0, "%s: %s", name, sl_lasterr());
            ok &= r == 0;
            if (o > 0) {
                int idx = sl_decoder_add_output(d, cases[ci].rate[o], cases[ci].ch[o]);
                CHECK_MSG(idx == o, "%s: add_output gave %d (%s)", name, idx, sl_lasterr());
                ok &= idx == o;
            }
        }
        if (!ok) {
            for (int o = 0; o < 3; o++)
                if (ref[o])
                    free_planes(ref[o], chs[o]);
            sl_decoder_close(d);
            continue;
        }
        float *buf[3][8];
        size_t got[3] = {0};
        for (int o = 0; o < 3; o++)
            for (int c = 0; c < chs[o]; c++)
                buf[o][c] = malloc((nref[o] + 4096) * sizeof(float));
        int live[3] = {1, 1, 1}, steps = 0;
        static const long chunk[3] = {333, 1000, 4097};
        while ((live[0] || live[1] || live[2]) && steps++ < 100000) {
            for (int o = 0; o < 3; o++) {
                if (!live[o])
                    continue;
                float *dst[8];
                for (int c = 0; c < chs[o]; c++)
                    dst[c] = buf[o][c] + got[o];
                long room = (long)(nref[o] + 4096 - got[o]);
                long k = sl_decoder_read_output(d, o, dst, room < chunk[o] ? room : chunk[o]);
                CHECK_MSG(k >= 0, "%s: output %d: %s", name, o, sl_lasterr());
                if (k <= 0)
                    live[o] = 0;
                else
                    got[o] += (size_t)k;
            }
        }
        if (ci == 0) {
            /* too late to add one, and no such output */
            CHECK(sl_decoder_add_output(d, 16000, 1) == SL_EINVAL);
            CHECK(sl_decoder_read_output(d, 3, buf[0], 10) == SL_EINVAL);
        }
        for (int o = 0; o < 3; o++) {
            int same = got[o] == nref[o];
            for (int c = 0; c < chs[o] && same; c++)
                same = memcmp(buf[o][c], ref[o][c], nref[o] * sizeof(float)) == 0;
            CHECK_MSG(same, "%s: output %d (%d Hz, %d ch): %zu frames vs %zu alone, or different samples", name, o,
                      cases[ci].rate[o], chs[o], got[o], nref[o]);
            for (int c = 0; c < chs[o]; c++)
                free(buf[o][c]);
            free_planes(ref[o], chs[o]);
        }
        sl_decoder_close(d);
    }
}

typedef struct {
    const char *path;
    float *data;
    size_t n;
    int rc;
} thread_job;

static void *decode_thread(void *arg)
{
    thread_job *j = arg;
    float **p = NULL;
    j->rc = sl_decode_file(j->path, 16000, 1, &p, &j->n, NULL);
    if (j->rc == 0) {
        j->data = p[0];
        free(p);
    }
    return NULL;
}

/* Several decoders in parallel threads give the same samples as one at a time. */
static void test_threads(void)
{
    static const char *names[] = {"s.mp3", "s.ogg", "s.flac", "s.m4a", "s.opus", "m51.wav"};
    enum { N = sizeof names / sizeof names[0] };
    char paths[N][1024];
    thread_job seq[N], par[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", dir, names[i]);
        seq[i] = (thread_job){paths[i], NULL, 0, 0};
        par[i] = seq[i];
        decode_thread(&seq[i]);
    }
    for (int i = 0; i < N; i++)
        CHECK(pthread_create(&th[i], NULL, decode_thread, &par[i]) == 0);
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(seq[i].rc == 0 && par[i].rc == 0, "%s", names[i]);
        CHECK_MSG(seq[i].n == par[i].n && seq[i].n > 0 &&
                      memcmp(seq[i].data, par[i].data, seq[i].n * sizeof(float)) == 0,
                  "%s: threaded decode differs", names[i]);
        free(seq[i].data);
        free(par[i].data);
    }
}

/* Expects failure with a message naming the file and containing what. */
static void expect_fail(const char *name, int want_code, const char *what)
{
    const char *path = fx(name);
    float **p = NULL;
    size_t n = 0;
    sl_clearerr();
    int r = sl_decode_file(path, 44100, 2, &p, &n, NULL);
    const char *msg = sl_lasterr();
    CHECK_MSG(r < 0, "%s should fail", name);
    if (want_code)
        CHECK_MSG(r == want_code, "%s: code %d (%s), want %d (%s)", name, r, sl_strerror(r), want_code,
                  sl_strerror(want_code));
    CHECK_MSG(strstr(msg, path) != NULL, "%s: message does not name the file: '%s'", name, msg);
    CHECK_MSG(strstr(msg, what) != NULL, "%s: message '%s' lacks '%s'", name, msg, what);
    CHECK(p == NULL && n == 0);
    if (r == 0)
        free_planes(p, 2);
}

static void test_bad_inputs(void)
{
    char cmd[2048];
    /* zero bytes */
    FILE *f = fopen(fx("zero.mp3"), "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    expect_fail("zero.mp3", SL_EEMPTY, "zero-length");
    /* text named .mp3 */
    f = fopen(fx("text.mp3"), "w");
    if (f) {
        fputs("this is not audio, just a line of text\n", f);
        fclose(f);
    }
    expect_fail("text.mp3", SL_EDECODE, "not a media file");
    /* video only */
    if (make("vonly.mkv", "-f lavfi -i testsrc=size=64x48:rate=10:d=1 -c:v mpeg4") == 0)
        expect_fail("vonly.mkv", SL_ENOAUDIO, "no audio stream");
    /* a directory named like a track, a dangling link */
    CHECK(mkdir(fx("dir.mp3"), 0755) == 0);
    expect_fail("dir.mp3", 0, "directory");
    CHECK(symlink("/nonexistent/stemline/x.flac", fx("dangling.flac")) == 0);
    expect_fail("dangling.flac", 0, "no such file");
    expect_fail("missing.wav", AVERROR(ENOENT), "no such file");
    /* no read permission (root ignores permission bits) */
    if (geteuid() != 0) {
        snprintf(cmd, sizeof cmd, "cp '%s/s.wav' '%s/noperm.wav' && chmod 000 '%s/noperm.wav'", dir, dir, dir);
        CHECK(system(cmd) == 0);
        expect_fail("noperm.wav", 0, "permission denied");
    } else {
        printf("running as root: permission case replaced by dir.mp3 / dangling link cases\n");
    }

    /* Truncated files decode what they can: no crash, a prefix of the audio. */
    const char *trunc[][2] = {{"s.flac", "trunc.flac"}, {"s.mp3", "trunc.mp3"}, {"s.m4a", "trunc.m4a"},
                              {"s.ogg", "trunc.ogg"}};
    for (int i = 0; i < 4; i++) {
        struct stat sb;
        snprintf(path_buf, sizeof path_buf, "%s/%s", dir, trunc[i][0]);
        if (stat(path_buf, &sb) != 0)
            continue;
        snprintf(cmd, sizeof cmd, "head -c %lld '%s/%s' > '%s/%s'", (long long)sb.st_size / 2, dir, trunc[i][0],
                 dir, trunc[i][1]);
        CHECK(system(cmd) == 0);
        float **p = NULL;
        size_t n = 0;
        sl_clearerr();
        int r = sl_decode_file(fx(trunc[i][1]), 44100, 2, &p, &n, NULL);
        if (r == 0) {
            CHECK_MSG(n > 0 && n < 88200, "%s: %zu frames from half a file", trunc[i][1], n);
            free_planes(p, 2);
        } else {
            /* A container whose index sits at the end (mp4 'moov') cannot
             * be read at all; that must be a clear error naming the file. */
            CHECK_MSG(strstr(sl_lasterr(), trunc[i][1]) != NULL, "%s: unclear error '%s'", trunc[i][1],
                      sl_lasterr());
        }
    }
    /* The flac and mp3 halves must decode (their frames are self-contained). */
    float **p = NULL;
    size_t n = 0;
    CHECK_MSG(sl_decode_file(fx("trunc.flac"), 0, 0, &p, &n, NULL) == 0 && n > 30000, "trunc.flac: %s",
              sl_lasterr());
    free_planes(p, 2);
    CHECK_MSG(sl_decode_file(fx("trunc.mp3"), 0, 0, &p, &n, NULL) == 0 && n > 30000, "trunc.mp3: %s",
              sl_lasterr());
    free_planes(p, 2);
}

/* Overwrites len bytes at each of the given fractions of the file with
 * deterministic junk. */
static int corrupt(const char *src, const char *dst, const double *at, int nat, long len)
{
    FILE *f = fopen(src, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)size);
    if (!b || fread(b, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        free(b);
        return -1;
    }
    fclose(f);
    uint32_t s = 12345;
    for (int k = 0; k < nat; k++)
        for (long i = (long)(at[k] * size); i < (long)(at[k] * size) + len && i < size; i++) {
            s = s * 1664525u + 1013904223u;
            b[i] = (unsigned char)(s >> 24);
        }
    f = fopen(dst, "wb");
    int ok = f && fwrite(b, 1, (size_t)size, f) == (size_t)size;
    if (f)
        fclose(f);
    free(b);
    return ok ? 0 : -1;
}

/* Corrupt packets inside a good file are skipped, counted, replaced by
 * silence; the file still decodes to (about) its full length. A file that is
 * junk after its header fails with SL_EDECODE. */
static void test_corrupt_packets(void)
{
    if (make("long.mp3", "-f lavfi -i aevalsrc='0.5*sin(2*PI*440*t)':s=44100:d=10 -c:a libmp3lame -b:a 128k") ||
        make("long.m4a", "-f lavfi -i aevalsrc='0.5*sin(2*PI*440*t)':s=44100:d=10 -c:a aac -b:a 128k"))
        return;
    static const double at[] = {0.3, 0.6};
    const char *names[][2] = {{"long.mp3", "bad.mp3"}, {"long.m4a", "bad.m4a"}};
    for (int i = 0; i < 2; i++) {
        char src[1024];
        snprintf(src, sizeof src, "%s/%s", dir, names[i][0]);
        CHECK(corrupt(src, fx(names[i][1]), at, 2, 3000) == 0);
        sl_decoder *d;
        int r = sl_decoder_open(&d, fx(names[i][1]), 44100, 1);
        CHECK_MSG(r == 0, "%s", sl_lasterr());
        if (r)
            continue;
        float *buf = malloc(8192 * sizeof(float));
        long k, total = 0;
        while ((k = sl_decoder_read(d, &buf, 8192)) > 0)
            total += k;
        CHECK_MSG(k == 0, "%s: read ended with %ld (%s)", names[i][1], k, sl_lasterr());
        CHECK_MSG(sl_decoder_bad_packets(d) > 0, "%s: corruption not counted", names[i][1]);
        CHECK_MSG(sl_decoder_bad_packets(d) * 2 < sl_decoder_packets(d), "%s: %ld bad of %ld", names[i][1],
                  sl_decoder_bad_packets(d), sl_decoder_packets(d));
        CHECK_MSG(total > 441000 * 9 / 10 && total < 441000 + 2048, "%s: %ld frames, want about 441000",
                  names[i][1], total);
        sl_decoder_close(d);
        free(buf);
    }
    /* Valid header, junk after it: every packet fails. */
    static const double all[] = {0.02};
    char src[1024];
    snprintf(src, sizeof src, "%s/s.flac", dir);
    struct stat sb;
    if (stat(src, &sb) == 0) {
        CHECK(corrupt(src, fx("junk.flac"), all, 1, (long)sb.st_size) == 0);
        float **p = NULL;
        size_t n = 0;
        int r = sl_decode_file(fx("junk.flac"), 44100, 2, &p, &n, NULL);
        CHECK_MSG(r < 0 && strstr(sl_lasterr(), "junk.flac"), "junk.flac: r=%d n=%zu '%s'", r, n, sl_lasterr());
        if (r == 0)
            free_planes(p, 2);
    }
}

/* A mono float WAV of n frames: a sine, with NaN at every 100th frame and
 * +-infinity at every 1000th (written by hand: ffmpeg cannot make NaN). */
static int write_nan_wav(const char *path, uint32_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    uint32_t data = n * 4, riff = 36 + data, fmt_len = 16, rate = 44100, brate = rate * 4;
    uint16_t fmt = 3 /* IEEE float */, ch = 1, align = 4, bits = 32;
    fwrite("RIFF", 1, 4, f);
    fwrite(&riff, 4, 1, f);
    fwrite("WAVEfmt ", 1, 8, f);
    fwrite(&fmt_len, 4, 1, f);
    fwrite(&fmt, 2, 1, f);
    fwrite(&ch, 2, 1, f);
    fwrite(&rate, 4, 1, f);
    fwrite(&brate, 4, 1, f);
    fwrite(&align, 2, 1, f);
    fwrite(&bits, 2, 1, f);
    fwrite("data", 1, 4, f);
    fwrite(&data, 4, 1, f);
    for (uint32_t i = 0; i < n; i++) {
        float x = (float)(0.5 * sin(2 * 3.141592653589793 * 440.0 * i / 44100.0));
        if (i % 1000 == 0)
            x = i % 2000 ? -INFINITY : INFINITY;
        else if (i % 100 == 0)
            x = NAN;
        fwrite(&x, 4, 1, f);
    }
    return fclose(f);
}

static void *interrupt_later(void *arg)
{
    (void)arg;
    struct timespec ts = {0, 200000000L};
    nanosleep(&ts, NULL);
    sl_io_interrupt();
    return NULL;
}

/* Inputs that could hang or poison a run: FIFOs and devices are refused
 * before FFmpeg opens them, a link loop is named, NaN/Inf samples become 0
 * and are counted, a truncated file fails when asked to, and a stalled
 * decoder or open gives up on a stop request or the timeout. */
static void test_hostile(void)
{
    alarm(60); /* a blocking open would hang here: let the test fail instead */
    CHECK(mkfifo(fx("pipe.wav"), 0644) == 0);
    expect_fail("pipe.wav", SL_EDECODE, "not a regular file");
    float **p = NULL;
    size_t n = 0;
    CHECK(sl_decode_file("/dev/zero", 44100, 2, &p, &n, NULL) == SL_EDECODE);
    CHECK_MSG(strstr(sl_lasterr(), "/dev/zero: not a regular file (a character device)"), "%s", sl_lasterr());
    CHECK(symlink("loop.wav", fx("loop.wav")) == 0);
    expect_fail("loop.wav", 0, "symbolic link loop");

    /* NaN and infinity: delivered as 0, counted */
    CHECK(write_nan_wav(fx("nan.wav"), 44100) == 0);
    sl_decoder *d = NULL;
    int r = sl_decoder_open(&d, fx("nan.wav"), 44100, 1);
    CHECK_MSG(r == 0, "%s", sl_lasterr());
    if (r == 0) {
        float *buf = malloc(50000 * sizeof(float));
        long k, total = 0;
        int finite = 1;
        while ((k = sl_decoder_read(d, &buf, 50000)) > 0) {
            for (long i = 0; i < k; i++)
                finite &= isfinite(buf[i]) != 0;
            total += k;
        }
        CHECK(k == 0 && total == 44100 && finite);
        CHECK_MSG(sl_decoder_nonfinite(d) == 441, "%lld non-finite samples, want 441",
                  (long long)sl_decoder_nonfinite(d));
        sl_decoder_close(d);
        free(buf);
    }

    /* truncated: flac states its length; half of it decoded fails the check */
    struct stat sb;
    char cmd[2048];
    if (stat(fx("s.flac"), &sb) == 0) {
        snprintf(cmd, sizeof cmd, "head -c %lld '%s/s.flac' > '%s/cut.flac'", (long long)sb.st_size / 3, dir, dir);
        CHECK(system(cmd) == 0);
        for (int check = 0; check < 2; check++) {
            r = sl_decoder_open(&d, fx("cut.flac"), 0, 0);
            CHECK_MSG(r == 0, "%s", sl_lasterr());
            if (r)
                continue;
            if (check)
                sl_decoder_set_max_missing(d, 0.02);
            float *b2[2] = {malloc(8192 * sizeof(float)), malloc(8192 * sizeof(float))};
            long k;
            while ((k = sl_decoder_read(d, b2, 8192)) > 0)
                ;
            double want = sl_decoder_info(d)->duration, got = sl_decoder_decoded_seconds(d);
            CHECK_MSG(want > 1.9 && got > 0.3 && got < want * 0.5, "decoded %.3f s of %.3f s", got, want);
            if (check) {
                CHECK_MSG(k == SL_EDECODE && strstr(sl_lasterr(), "decoded 0.") &&
                              strstr(sl_lasterr(), "s of 2.0 s (truncated file?)"),
                          "%ld: %s", k, sl_lasterr());
            } else {
                CHECK_MSG(k == 0, "without the check a cut file keeps what decoded: %ld %s", k, sl_lasterr());
            }
            free(b2[0]);
            free(b2[1]);
            sl_decoder_close(d);
        }
        /* the whole file passes the check */
        r = sl_decoder_open(&d, fx("s.flac"), 0, 0);
        if (r == 0) {
            sl_decoder_set_max_missing(d, 0);
            float *b2[2] = {malloc(8192 * sizeof(float)), malloc(8192 * sizeof(float))};
            long k;
            while ((k = sl_decoder_read(d, b2, 8192)) > 0)
                ;
            CHECK_MSG(k == 0, "whole file: %s", sl_lasterr());
            free(b2[0]);
            free(b2[1]);
            sl_decoder_close(d);
        }
    }

    /* a decoder stalled inside FFmpeg stops on sl_io_interrupt (no timeout set) */
    setenv("SL_FAULT_DECODE_HANG", "s.wav", 1);
    r = sl_decoder_open(&d, fx("s.wav"), 0, 0);
    CHECK(r == 0);
    if (r == 0) {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, interrupt_later, NULL) == 0);
        float *b2[2] = {malloc(8192 * sizeof(float)), malloc(8192 * sizeof(float))};
        long k = sl_decoder_read(d, b2, 8192);
        CHECK_MSG(k == SL_EINTERRUPTED && strstr(sl_lasterr(), "interrupted"), "%ld %s", k, sl_lasterr());
        pthread_join(th, NULL);
        free(b2[0]);
        free(b2[1]);
        sl_decoder_close(d);
    }
    unsetenv("SL_FAULT_DECODE_HANG");
    /* while interrupted, nothing opens; cleared, decoding works again */
    r = sl_decoder_open(&d, fx("s.wav"), 0, 0);
    CHECK_MSG(r == SL_EINTERRUPTED, "open while interrupted: %d %s", r, sl_lasterr());
    if (r == 0)
        sl_decoder_close(d);
    sl_io_interrupt_clear();
    /* opening that stalls is bounded by the thread's timeout too */
    setenv("SL_FAULT_OPEN_HANG", "s.wav", 1);
    sl_io_set_thread_timeout(0.3);
    r = sl_decoder_open(&d, fx("s.wav"), 0, 0);
    CHECK_MSG(r == SL_EDECODE && strstr(sl_lasterr(), "no progress"), "%d %s", r, sl_lasterr());
    if (r == 0)
        sl_decoder_close(d);
    sl_io_set_thread_timeout(0);
    unsetenv("SL_FAULT_OPEN_HANG");
    alarm(0);
}

static void test_info_and_args(void)
{
    sl_decoder *d = NULL;
    CHECK(sl_decoder_open(&d, fx("s.wav"), -1, 2) == SL_EINVAL && d == NULL);
    int r = sl_decoder_open(&d, fx("s.flac"), 0, 0);
    CHECK(r == 0);
    if (r == 0) {
        const sl_audio_info *in = sl_decoder_info(d);
        CHECK(!strcmp(in->container, "flac") && !strcmp(in->codec, "flac"));
        CHECK(in->sample_rate == 44100 && in->channels == 2 && !strcmp(in->channel_layout, "stereo"));
        CHECK(in->bit_rate > 0 && in->stream_index == 0);
        float *b[2] = {NULL, NULL};
        CHECK(sl_decoder_read(d, b, 0) == SL_EINVAL);
        sl_decoder_close(d);
    }
    r = sl_decoder_open(&d, fx("v.mp4"), 0, 0);
    CHECK(r == 0);
    if (r == 0) {
        CHECK_MSG(sl_decoder_info(d)->stream_index == 1, "audio is the second stream of v.mp4");
        sl_decoder_close(d);
    }
    sl_decoder_close(NULL);
}

int main(void)
{
    sl_io_init();
    dir = sl_test_tmpdir();
    if (system("ffmpeg -version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "the ffmpeg CLI is needed to make fixtures (scripts/deps.sh test installs it)\n");
        return 1;
    }
    test_formats();
    test_rates_and_mono();
    test_downmix();
    test_chunked();
    test_threads();
    test_bad_inputs();
    test_corrupt_packets();
    test_outputs();
    test_hostile();
    test_info_and_args();
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    if (sl_test_failures == 0 && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return sl_test_finish("decode");
}
