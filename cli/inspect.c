/* stemline inspect: shows what the decoder sees in each file, and with
 * --decode decodes it whole (the same code path a job uses) and times it. */
#include "cli/commands.h"

#include "common/sl_error.h"
#include "io/decode.h"
#include "io/npy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define INSPECT_CHUNK 65536

static const char inspect_help[] =
    "Usage: stemline inspect [--decode] [--json] FILE...\n"
    "\n"
    "Shows what stemline's decoder (libavformat/libavcodec) sees in each FILE:\n"
    "container, codec, sample rate, channels and channel layout, duration (from\n"
    "the container; 'unknown' when it does not say), bit rate, and which reader\n"
    "reads it: FFmpeg, or stemline's own for plain PCM WAV files (the same\n"
    "samples; STEMLINE_NATIVE_WAV=0 sends every file to FFmpeg).\n"
    "\n"
    "Options:\n"
    "  --decode   also decode every file completely, at its own rate and channel\n"
    "             count, exactly as a job would read it, and print the decoded\n"
    "             frames and seconds, the corrupt packets that were skipped\n"
    "             (each replaced by silence of its duration, see io/README.md),\n"
    "             the wall time and the speed in x realtime\n"
    "  --json     print one JSON array with an object per file instead of text;\n"
    "             failed files have \"ok\": false and an \"error\" message\n"
    "  -h, --help this text\n"
    "  --         ends the options (for file names starting with '-')\n"
    "\n"
    "A file fails when it cannot be read (missing, unreadable, a directory), is\n"
    "empty, is not a media file, has no audio stream, or (with --decode) when\n"
    "decoding gives up: more than 100 corrupt packets in a row, more than half of\n"
    "all packets corrupt, or no sample at all. The reason is printed on stderr\n"
    "(text) or in the object (JSON), and the other files are still inspected.\n"
    "\n"
    "Exit status: 0 every file ok, 3 at least one file failed, 2 usage error.\n";

typedef struct {
    int done;
    int64_t frames;
    double seconds, wall;
    long bad, packets;
} decode_stats;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void json_num(double v)
{
    if (v != v || v > 1e300 || v < -1e300)
        fputs("null", stdout);
    else
        printf("%.6f", v);
}

static int decode_all(sl_decoder *d, decode_stats *ds)
{
    int ch = sl_decoder_out_channels(d);
    float *buf = malloc((size_t)ch * INSPECT_CHUNK * sizeof(float));
    float **planes = malloc((size_t)ch * sizeof *planes);
    if (!buf || !planes) {
        free(buf);
        free(planes);
        return sl_seterr(SL_ENOMEM, "out of memory");
    }
    for (int c = 0; c < ch; c++)
        planes[c] = buf + (size_t)c * INSPECT_CHUNK;
    double t0 = now_s();
    long r;
    while ((r = sl_decoder_read(d, planes, INSPECT_CHUNK)) > 0)
        ds->frames += r;
    ds->wall = now_s() - t0;
    ds->seconds = (double)ds->frames / sl_decoder_out_rate(d);
    ds->bad = sl_decoder_bad_packets(d);
    ds->packets = sl_decoder_packets(d);
    ds->done = 1;
    free(buf);
    free(planes);
    return r < 0 ? (int)r : 0;
}

/* The decoder's reader, as inspect names it. */
static const char *reader_name(const sl_decoder *d) { return sl_decoder_is_native(d) ? "wav" : "ffmpeg"; }

static void print_text(const char *path, const sl_audio_info *in, const char *reader, const decode_stats *ds)
{
    printf("%s\n", path);
    printf("  container    %s\n", in->container);
    printf("  codec        %s\n", in->codec);
    printf("  sample rate  %d Hz\n", in->sample_rate);
    printf("  channels     %d (%s)\n", in->channels, in->channel_layout);
    if (in->duration >= 0) {
        int m = (int)(in->duration / 60);
        printf("  duration     %.3f s (%d:%06.3f)\n", in->duration, m, in->duration - 60.0 * m);
    } else {
        printf("  duration     unknown\n");
    }
    if (in->bit_rate > 0)
        printf("  bit rate     %.1f kb/s\n", in->bit_rate / 1000.0);
    else
        printf("  bit rate     unknown\n");
    printf("  reader       %s\n", !strcmp(reader, "wav") ? "stemline's PCM WAV reader (io/wav_read.h)" : "FFmpeg");
    if (ds->done) {
        printf("  decoded      %lld frames, %.3f s, %ld bad packet%s skipped (of %ld), %.3f s wall, ",
               (long long)ds->frames, ds->seconds, ds->bad, ds->bad == 1 ? "" : "s", ds->packets, ds->wall);
        if (ds->wall > 0)
            printf("%.1fx realtime\n", ds->seconds / ds->wall);
        else
            printf("too fast to time\n");
    }
}

static void print_json(int first, const char *path, const sl_audio_info *in, const char *reader,
                       const decode_stats *ds, int err, const char *msg)
{
    printf("%s\n  {\"path\": ", first ? "" : ",");
    sl_json_str(stdout, path);
    printf(", \"ok\": %s", err ? "false" : "true");
    if (in) {
        printf(", \"container\": ");
        sl_json_str(stdout, in->container);
        printf(", \"codec\": ");
        sl_json_str(stdout, in->codec);
        printf(", \"sample_rate\": %d, \"channels\": %d, \"channel_layout\": ", in->sample_rate, in->channels);
        sl_json_str(stdout, in->channel_layout);
        printf(", \"duration\": ");
        if (in->duration >= 0)
            json_num(in->duration);
        else
            fputs("null", stdout);
        printf(", \"bit_rate\": %lld, \"reader\": \"%s\"", (long long)in->bit_rate, reader);
    }
    if (ds && ds->done) {
        printf(", \"decoded_frames\": %lld, \"decoded_seconds\": ", (long long)ds->frames);
        json_num(ds->seconds);
        printf(", \"bad_packets\": %ld, \"packets\": %ld, \"wall_seconds\": ", ds->bad, ds->packets);
        json_num(ds->wall);
        printf(", \"realtime\": ");
        json_num(ds->wall > 0 ? ds->seconds / ds->wall : -1e301);
    }
    if (err) {
        printf(", \"error\": ");
        sl_json_str(stdout, msg);
        printf(", \"error_kind\": ");
        sl_json_str(stdout, sl_strerror(err));
    }
    putchar('}');
}

int sl_cmd_inspect(int argc, char **argv)
{
    int decode = 0, json = 0, i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(inspect_help, stdout);
            return 0;
        }
        if (!strcmp(a, "--decode"))
            decode = 1;
        else if (!strcmp(a, "--json"))
            json = 1;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "stemline inspect: unknown option '%s' (see stemline inspect --help)\n", a);
            return 2;
        } else
            break;
    }
    if (i >= argc) {
        fprintf(stderr, "stemline inspect: no file given\nUsage: stemline inspect [--decode] [--json] FILE...\n");
        return 2;
    }
    int failed = 0;
    if (json)
        putchar('[');
    for (int k = i; k < argc; k++) {
        const char *path = argv[k];
        sl_decoder *d = NULL;
        decode_stats ds = {0};
        char msg[1200];
        sl_clearerr();
        int err = sl_decoder_open(&d, path, 0, 0);
        if (err == 0 && decode)
            err = decode_all(d, &ds);
        if (err) {
            failed++;
            sl_errmsg(err, msg, sizeof msg);
            /* Make sure the file is named even when a lower layer did not. */
            if (strncmp(msg, path, strlen(path)) != 0) {
                size_t pl = strlen(path) + 2;
                if (pl < sizeof msg) {
                    memmove(msg + pl, msg, sizeof msg - pl);
                    msg[sizeof msg - 1] = 0;
                    memcpy(msg, path, pl - 2);
                    msg[pl - 2] = ':';
                    msg[pl - 1] = ' ';
                }
            }
        }
        const sl_audio_info *in = d ? sl_decoder_info(d) : NULL;
        if (json) {
            print_json(k == i, path, in, d ? reader_name(d) : "", &ds, err, err ? msg : "");
        } else {
            if (in)
                print_text(path, in, reader_name(d), &ds);
            if (err)
                fprintf(stderr, "stemline inspect: %s\n", msg);
        }
        fflush(stdout);
        sl_decoder_close(d);
    }
    if (json)
        printf("\n]\n");
    return failed ? 3 : 0;
}
