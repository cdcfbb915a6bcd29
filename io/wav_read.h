/* Plain PCM WAV files read without FFmpeg's demuxer and decoder.
 *
 * Why: for a PCM WAV, libavformat spends 7-14 ms per file before the first
 * sample (it runs every demuxer's probe over the first 32 packets, looking for
 * compressed audio stored as PCM), and libavformat and libavcodec bring about
 * 130 shared libraries whose loading (30-60 ms) would hold up a job's start.
 * The samples of a plain PCM WAV are the file's bytes: this reader hands them
 * to the decoder (io/decode.c) as FFmpeg's WAV demuxer and PCM decoder would,
 * in the same packets (4096 bytes, whole sample frames) and the same sample
 * formats (u8, s16, s24 as s32 << 8, s32, f32, f64, interleaved), so the
 * resampler receives exactly the same input and every output sample is the
 * same as through FFmpeg (tests/unit/test_wav_read.c compares both paths).
 *
 * Taken: RIFF/WAVE with a 'fmt ' chunk before the 'data' chunk, format 1 (PCM:
 * 8, 16, 24 or 32 bits) or 3 (IEEE float: 32 or 64 bits), or
 * WAVE_FORMAT_EXTENSIBLE with one of those subformats and the mono (FC) or
 * stereo (FL+FR) channel mask; block alignment = channels x bytes per sample;
 * a data chunk of whole sample frames that lies within the file (its stated
 * size neither 0 nor 0xFFFFFFFF); one data chunk. Everything else (RF64/BW64, RIFX, compressed
 * formats, other channel masks, truncated files, a 16-bit file whose first
 * 128 KB hold an IEC 61937 burst preamble or a DTS sync word, i.e. compressed
 * audio stored as PCM, 8 kHz mono 16-bit files that FFmpeg may take for ACT)
 * is left to FFmpeg. What FFmpeg would still detect and this reader does not:
 * AC-3 or MPEG audio stored in a format-1 16-bit WAV without an IEC 61937
 * wrapper (a mislabelled file; FFmpeg's probe may decode it as such).
 *
 * STEMLINE_NATIVE_WAV=0 in the environment sends every file to FFmpeg. */
#ifndef SL_WAV_READ_H
#define SL_WAV_READ_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int channels, rate, bits, block_align;
    int is_float;
    int extensible;         /* WAVE_FORMAT_EXTENSIBLE: the layout is the mask's (mono / stereo) */
    int64_t bit_rate;       /* the header's average bytes per second x 8 (0 if above INT_MAX) */
    int64_t data_off, data_size;
    int av_fmt;             /* enum AVSampleFormat (packed) the samples are delivered in */
    const char *codec;      /* FFmpeg's name of the PCM decoder: "pcm_s16le", ... */
} sl_wav_fmt;

/* Reads the header of the open file fd (from offset 0; leaves the offset
 * anywhere): 1 and *w filled when this reader takes the file, 0 when it is
 * left to FFmpeg (not a WAV this reader handles, or unreadable: FFmpeg then
 * says what is wrong). */
int sl_wav_probe(int fd, int64_t file_size, sl_wav_fmt *w);

typedef struct sl_wav_reader sl_wav_reader;

/* A reader of fd's samples (the reader owns fd from now on, also on failure;
 * NULL when out of memory). */
sl_wav_reader *sl_wav_reader_new(int fd, const sl_wav_fmt *w);
void sl_wav_reader_free(sl_wav_reader *r);

/* The next packet, as FFmpeg's WAV demuxer cuts them (4096 bytes rounded down
 * to whole frames; the last one shorter): *data (aligned, in w->av_fmt,
 * interleaved; valid until the next call) and *frames. Returns 1 (a packet),
 * 0 at the end (also where the file shrank since it was probed), or -errno on
 * a read error. */
int sl_wav_next(sl_wav_reader *r, const uint8_t **data, int *frames);

/* 1 unless STEMLINE_NATIVE_WAV=0. */
int sl_wav_native_enabled(void);

#endif
