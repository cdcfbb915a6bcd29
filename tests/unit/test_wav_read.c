/* The PCM WAV reader (io/wav_read.h) against FFmpeg's WAV demuxer and PCM
 * decoder: WAV files written here (every sample format the reader takes,
 * mono to 6 channels, WAVE_FORMAT_EXTENSIBLE, chunks before and after the
 * data, a data size of whole packets) are decoded both ways
 * (STEMLINE_NATIVE_WAV=0 sends a file to FFmpeg) at the source's rate and
 * channels and through the resampler and down-mix (22050 mono, 48000 stereo,
 * 16000 mono, as one decoder's outputs): every output sample must be the same
 * bits, and the stream information, packet and corrupt-packet counts the same.
 * Files the reader must leave to FFmpeg (RF64, a truncated data chunk, IEC
 * 61937 or DTS words in 16-bit data, 8 kHz mono 16-bit, other channel masks,
 * extra format bytes, data ending inside a sample frame, 'fmt ' after
 * 'data') are checked to go there, with the same outcome. */
#include "common/sl_error.h"
#include "io/decode.h"
#include "sl_test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *dir;

typedef struct {
    const char *name;
    int tag;          /* 1 PCM, 3 float, 0xFFFE extensible */
    int sub;          /* extensible: subformat tag */
    uint32_t mask;    /* extensible: channel mask */
    int ch, rate, bits;
    long frames;
    int fmt_size;     /* 16, 18 or 40 */
    int cb;           /* cbSize written when fmt_size >= 18 */
    int chunks;       /* 1: LIST and odd-sized junk before the data, LIST after */
    long data_extra;  /* bytes of data beyond whole frames (0..block_align-1) */
    long size_delta;  /* added to the data size stated in the header */
    const char *riff; /* "RIFF" or "RF64" */
    int fmt_after_data;
    int poke_iec;     /* write an IEC 61937 preamble into the samples */
    int native;       /* expected: the reader takes it */
} wav_case;

static void put16(FILE *f, unsigned v) { fputc(v & 255, f), fputc(v >> 8 & 255, f); }
static void put32(FILE *f, uint32_t v) { put16(f, v & 0xFFFF), put16(f, v >> 16); }

/* A sample of channel c at frame i, in [-1, 1): a sine per channel plus noise. */
static double sig(long i, int c, uint32_t *rng)
{
    *rng = *rng * 1664525u + 1013904223u;
    double noise = ((double)(*rng >> 8) / 16777216.0 - 0.5) * 0.2;
    return 0.7 * sin(2 * M_PI * (220.0 + 110.0 * c) * (double)i / 44100.0) + noise;
}

static void put_sample(FILE *f, const wav_case *w, double x, long i)
{
    const int fl = w->tag == 3 || (w->tag == 0xFFFE && w->sub == 3);
    if (fl && w->bits == 32) {
        float v = (float)x;
        if (i == 1000)
            v = NAN; /* the decoder zeroes non-finite samples, both ways */
        fwrite(&v, 4, 1, f);
    } else if (fl) {
        double v = x;
        fwrite(&v, 8, 1, f);
    } else if (w->bits == 8) {
        fputc((int)lrint(x * 127.0) + 128, f);
    } else if (w->bits == 16) {
        put16(f, (unsigned)(int16_t)lrint(x * 32767.0) & 0xFFFF);
    } else if (w->bits == 24) {
        int32_t v = (int32_t)lrint(x * 8388607.0);
        fputc(v & 255, f), fputc(v >> 8 & 255, f), fputc(v >> 16 & 255, f);
    } else {
        put32(f, (uint32_t)(int32_t)lrint(x * 2147483000.0));
    }
}

static void put_list(FILE *f)
{
    fwrite("LIST", 1, 4, f);
    put32(f, 4 + 8 + 6);
    fwrite("INFOINAM", 1, 8, f);
    put32(f, 6);
    fwrite("title", 1, 6, f);
}

static void write_fmt(FILE *f, const wav_case *w)
{
    const int ba = w->ch * w->bits / 8;
    fwrite("fmt ", 1, 4, f);
    put32(f, (uint32_t)w->fmt_size);
    put16(f, (unsigned)w->tag);
    put16(f, (unsigned)w->ch);
    put32(f, (uint32_t)w->rate);
    put32(f, (uint32_t)(w->rate * ba));
    put16(f, (unsigned)ba);
    put16(f, (unsigned)w->bits);
    if (w->fmt_size >= 18)
        put16(f, (unsigned)w->cb);
    if (w->fmt_size >= 40) {
        put16(f, (unsigned)w->bits);
        put32(f, w->mask);
        static const uint8_t base[12] = {0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
        put32(f, (uint32_t)w->sub);
        fwrite(base, 1, 12, f);
    } else {
        for (int i = 18; i < w->fmt_size; i++)
            fputc(0, f);
    }
}

static void write_wav(const char *path, const wav_case *w)
{
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f)
        return;
    const long ba = w->ch * w->bits / 8, data = w->frames * ba + w->data_extra;
    fwrite(w->riff ? w->riff : "RIFF", 1, 4, f);
    put32(f, 0); /* RIFF size: nobody checks it */
    fwrite("WAVE", 1, 4, f);
    if (w->chunks) {
        put_list(f);
        fwrite("junk", 1, 4, f);
        put32(f, 3);
        fwrite("abc\0", 1, 4, f); /* 3 bytes and the pad byte */
    }
    if (!w->fmt_after_data)
        write_fmt(f, w);
    fwrite("data", 1, 4, f);
    put32(f, (uint32_t)(data + w->size_delta));
    uint32_t rng = 12345;
    for (long i = 0; i < w->frames; i++)
        for (int c = 0; c < w->ch; c++) {
            if (w->poke_iec && i == 3000 && c == 0) {
                put16(f, 0xF872), put16(f, 0x4E1F); /* Pa Pb of an IEC 61937 burst */
                c++;
                continue;
            }
            put_sample(f, w, sig(i, c, &rng), i);
        }
    for (long i = 0; i < w->data_extra; i++)
        fputc(0x55, f);
    if (data & 1)
        fputc(0, f);
    if (w->fmt_after_data)
        write_fmt(f, w);
    if (w->chunks)
        put_list(f);
    fclose(f);
}

typedef struct {
    float *x[4][8]; /* output, channel */
    long n[4];
    sl_audio_info info;
    long packets, bad;
    int native, rc;
} decoded;

static const int out_rate[] = {0, 22050, 48000, 16000}, out_ch[] = {0, 1, 2, 1};

/* Decodes path to every output, reading them in step, with the reader on or off. */
static void decode_all(const char *path, int native, decoded *o)
{
    memset(o, 0, sizeof *o);
    setenv("STEMLINE_NATIVE_WAV", native ? "1" : "0", 1);
    sl_decoder *d = NULL;
    o->rc = sl_decoder_open(&d, path, out_rate[0], out_ch[0]);
    for (int k = 1; k < 4 && o->rc == 0; k++)
        o->rc = sl_decoder_add_output(d, out_rate[k], out_ch[k]) < 0 ? -1 : 0;
    if (o->rc) {
        sl_decoder_close(d);
        return;
    }
    o->info = *sl_decoder_info(d);
    o->native = sl_decoder_is_native(d);
    const int chs[4] = {o->info.channels, 1, 2, 1};
    long cap[4];
    for (int k = 0; k < 4; k++) {
        cap[k] = 1 << 16;
        for (int c = 0; c < chs[k]; c++)
            o->x[k][c] = malloc(sizeof(float) * (size_t)cap[k]);
    }
    int open_outs = 4;
    while (open_outs > 0 && o->rc == 0) {
        open_outs = 0;
        for (int k = 0; k < 4; k++) {
            if (cap[k] < 0)
                continue;
            if (cap[k] - o->n[k] < 1000) {
                cap[k] *= 2;
                for (int c = 0; c < chs[k]; c++)
                    o->x[k][c] = realloc(o->x[k][c], sizeof(float) * (size_t)cap[k]);
            }
            float *dst[8];
            for (int c = 0; c < chs[k]; c++)
                dst[c] = o->x[k][c] + o->n[k];
            long got = sl_decoder_read_output(d, k, dst, 997);
            if (got < 0) {
                o->rc = (int)got;
                break;
            }
            if (got == 0) {
                cap[k] = -cap[k] - 1; /* done */
                continue;
            }
            o->n[k] += got;
            open_outs++;
        }
    }
    o->packets = sl_decoder_packets(d);
    o->bad = sl_decoder_bad_packets(d);
    sl_decoder_close(d);
}

static void free_decoded(decoded *o)
{
    for (int k = 0; k < 4; k++)
        for (int c = 0; c < 8; c++)
            free(o->x[k][c]);
}

static void check_case(const wav_case *w)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s.wav", dir, w->name);
    write_wav(path, w);
    decoded a, b;
    decode_all(path, 1, &a);
    decode_all(path, 0, &b);
    CHECK_MSG(a.native == w->native, "%s: read natively %d, expected %d", w->name, a.native, w->native);
    CHECK_MSG(!b.native, "%s: STEMLINE_NATIVE_WAV=0 still read natively", w->name);
    CHECK_MSG(a.rc == b.rc, "%s: open/read rc %d natively, %d through FFmpeg", w->name, a.rc, b.rc);
    if (a.rc == 0 && b.rc == 0) {
        CHECK_MSG(!strcmp(a.info.container, b.info.container) && !strcmp(a.info.codec, b.info.codec),
                  "%s: %s/%s vs FFmpeg's %s/%s", w->name, a.info.container, a.info.codec, b.info.container,
                  b.info.codec);
        CHECK_MSG(a.info.sample_rate == b.info.sample_rate && a.info.channels == b.info.channels,
                  "%s: %d Hz %d ch vs %d Hz %d ch", w->name, a.info.sample_rate, a.info.channels,
                  b.info.sample_rate, b.info.channels);
        CHECK_MSG(!strcmp(a.info.channel_layout, b.info.channel_layout), "%s: layout '%s' vs FFmpeg's '%s'",
                  w->name, a.info.channel_layout, b.info.channel_layout);
        CHECK_MSG(a.info.duration == b.info.duration && a.info.duration_estimated == b.info.duration_estimated,
                  "%s: duration %.9f (%d) vs %.9f (%d)", w->name, a.info.duration, a.info.duration_estimated,
                  b.info.duration, b.info.duration_estimated);
        CHECK_MSG(a.info.bit_rate == b.info.bit_rate, "%s: bit rate %lld vs %lld", w->name,
                  (long long)a.info.bit_rate, (long long)b.info.bit_rate);
        CHECK_MSG(a.packets == b.packets && a.bad == b.bad, "%s: %ld packets (%ld bad) vs %ld (%ld)", w->name,
                  a.packets, a.bad, b.packets, b.bad);
        const int chs[4] = {a.info.channels, 1, 2, 1};
        for (int k = 0; k < 4; k++) {
            CHECK_MSG(a.n[k] == b.n[k], "%s: output %d: %ld frames vs %ld", w->name, k, a.n[k], b.n[k]);
            CHECK_MSG(a.n[k] > 0, "%s: output %d empty", w->name, k);
            for (int c = 0; c < chs[k] && a.n[k] == b.n[k]; c++)
                CHECK_MSG(!memcmp(a.x[k][c], b.x[k][c], sizeof(float) * (size_t)a.n[k]),
                          "%s: output %d channel %d: samples differ", w->name, k, c);
        }
        if (w->native)
            CHECK_MSG(a.n[0] == w->frames, "%s: %ld frames, wrote %ld", w->name, a.n[0], w->frames);
    }
    free_decoded(&a);
    free_decoded(&b);
}

int main(void)
{
    sl_io_init();
    dir = sl_test_tmpdir();
    const long N = 2 * 44100 + 333;
    const wav_case cases[] = {
        {.name = "s16_stereo", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = N, .fmt_size = 16, .native = 1},
        {.name = "s16_mono_fmt18", .tag = 1, .ch = 1, .rate = 22050, .bits = 16, .frames = N, .fmt_size = 18, .native = 1},
        {.name = "u8_stereo", .tag = 1, .ch = 2, .rate = 11025, .bits = 8, .frames = N / 3, .fmt_size = 16, .native = 1},
        {.name = "s24_stereo", .tag = 1, .ch = 2, .rate = 48000, .bits = 24, .frames = N, .fmt_size = 16, .native = 1},
        {.name = "s32_stereo", .tag = 1, .ch = 2, .rate = 44100, .bits = 32, .frames = N, .fmt_size = 18, .native = 1},
        {.name = "f32_stereo_nan", .tag = 3, .ch = 2, .rate = 44100, .bits = 32, .frames = N, .fmt_size = 18, .native = 1},
        {.name = "f64_mono", .tag = 3, .ch = 1, .rate = 96000, .bits = 64, .frames = N, .fmt_size = 16, .native = 1},
        {.name = "ext_s24_stereo", .tag = 0xFFFE, .sub = 1, .mask = 3, .ch = 2, .rate = 44100, .bits = 24, .frames = N,
         .fmt_size = 40, .cb = 22, .native = 1},
        {.name = "ext_f32_mono", .tag = 0xFFFE, .sub = 3, .mask = 4, .ch = 1, .rate = 32000, .bits = 32, .frames = N,
         .fmt_size = 40, .cb = 22, .native = 1},
        {.name = "s16_6ch", .tag = 1, .ch = 6, .rate = 44100, .bits = 16, .frames = N, .fmt_size = 16, .native = 1},
        {.name = "s16_chunks", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = N, .fmt_size = 16, .chunks = 1,
         .native = 1},
        /* a data size that is whole packets: the last one full */
        {.name = "s16_whole_packets", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = 50 * 1024,
         .fmt_size = 16, .native = 1},
        /* left to FFmpeg; data that ends inside a sample frame (a 1-byte last packet, which
         * FFmpeg's decoder rejects; a last packet of frames and a piece, which its parser
         * splits, padding the piece with silence) */
        {.name = "s16_tail_byte", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = 50 * 1024, .fmt_size = 16,
         .data_extra = 1},
        {.name = "s16_tail_frac", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = 50 * 1024 + 3, .fmt_size = 16,
         .data_extra = 2},
        {.name = "s24_tail_frac", .tag = 1, .ch = 2, .rate = 44100, .bits = 24, .frames = 20000, .fmt_size = 16,
         .data_extra = 5},
        {.name = "rf64", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = N, .fmt_size = 16, .riff = "RF64"},
        {.name = "truncated", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = N, .fmt_size = 16,
         .size_delta = 40000},
        {.name = "iec61937", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = N, .fmt_size = 16, .poke_iec = 1},
        {.name = "s16_mono_8k", .tag = 1, .ch = 1, .rate = 8000, .bits = 16, .frames = N / 5, .fmt_size = 16},
        {.name = "ext_51", .tag = 0xFFFE, .sub = 1, .mask = 0x3F, .ch = 6, .rate = 44100, .bits = 16, .frames = N,
         .fmt_size = 40, .cb = 22},
        {.name = "fmt_extra", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = N, .fmt_size = 20, .cb = 2},
        {.name = "fmt_after_data", .tag = 1, .ch = 2, .rate = 44100, .bits = 16, .frames = N, .fmt_size = 16,
         .fmt_after_data = 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        check_case(&cases[i]);
    unsetenv("STEMLINE_NATIVE_WAV");
    if (sl_test_failures == 0)
        sl_test_rmdir(dir);
    return sl_test_finish("wav_read");
}
