/* Streaming audio decoder (libavformat + libavcodec + libswresample; plain
 * PCM WAV files read directly, io/wav_read.h): any input FFmpeg reads,
 * delivered in chunks as planar float32 at a requested rate and channel
 * count. Never holds the whole file. */
#ifndef SL_DECODE_H
#define SL_DECODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_decoder sl_decoder;

/* Loads FFmpeg (it is opened at its first use, not linked: io/ff_dl.h),
 * routes its own log messages through sl_log (warnings and worse; see
 * io/README.md) and sets its log level. Idempotent and thread-safe
 * (pthread_once); sl_decoder_open and sl_encoder_open call it themselves.
 * sl_io_load returns 0, or SL_EUNSUPPORTED naming the library that could not
 * be opened and why (sl_lasterr()); sl_io_init ignores that. */
int sl_io_load(void);
void sl_io_init(void);

typedef struct {
    char container[64];   /* e.g. "mp3", "mov,mp4,m4a,3gp,3g2,mj2" */
    char codec[64];       /* e.g. "mp3float", "flac" */
    int sample_rate;      /* of the source stream */
    int channels;         /* of the source stream */
    char channel_layout[64];
    double duration;      /* seconds, from the container; -1 when unknown */
    int duration_estimated; /* 1: duration guessed from file size and bit rate */
    int64_t bit_rate;     /* bits/s, 0 when unknown */
    int stream_index;
} sl_audio_info;

/* Opens path and picks its best audio stream. out_rate/out_channels = 0 keep the
 * source's. Mono is duplicated to every output channel; more channels are
 * down-mixed (libswresample's matrix). Fails with SL_ENOAUDIO (no audio stream),
 * SL_EDECODE (also "not a regular file" for a FIFO, socket or device, before
 * FFmpeg opens it), SL_EINTERRUPTED (sl_io_interrupt) or an AVERROR, with a
 * message naming the file in sl_lasterr().
 * *out is owned by the caller; close with sl_decoder_close. */
int sl_decoder_open(sl_decoder **out, const char *path, int out_rate, int out_channels);

const sl_audio_info *sl_decoder_info(const sl_decoder *d);

/* Most outputs one decoder feeds (sl_decoder_add_output). */
#define SL_DEC_MAX_OUTPUTS 4

/* Adds an output at another rate / channel count (0 = the source's), fed from
 * the same decoded frames through its own resampler, so one decode serves
 * models of different rates: what it delivers is exactly what a second
 * decoder opened with these settings would deliver. Only before the first
 * read. Returns the output's index (>= 1, for sl_decoder_read_output) or a
 * negative error. Every decoded frame is buffered for every output until it
 * is read: read the outputs in step (sl_decoder_buffered) to keep memory
 * bounded. */
int sl_decoder_add_output(sl_decoder *d, int out_rate, int out_channels);
/* sl_decoder_read for output index output (0 = the one opened with the decoder). */
long sl_decoder_read_output(sl_decoder *d, int output, float *const *dst, long max_frames);
/* Frames decoded for output and not read yet. */
long sl_decoder_buffered(const sl_decoder *d, int output);

/* Reads up to max_frames frames into planar buffers dst[ch][0..max_frames).
 * Returns the number of frames written (> 0), 0 at end of stream, or a negative
 * error. Corrupt packets inside an otherwise readable file are skipped and counted
 * (see sl_decoder_bad_packets); too many of them in a row is an error. A stream
 * that ends without a single decoded frame gives SL_EEMPTY (or SL_EDECODE when
 * every packet was corrupt) instead of 0. Errors are sticky. */
long sl_decoder_read(sl_decoder *d, float *const *dst, long max_frames);

/* From now on, the stream fails at its end (SL_EDECODE, "decoded X s of Y s
 * (truncated file?)") when the audio decoded (corrupt packets counted as
 * their silence) is short of the container's stated duration by more than
 * fraction of it and more than 0.5 s (codec priming and padding). Durations guessed from the bit rate are not checked.
 * fraction < 0 (the default) turns the check off. */
void sl_decoder_set_max_missing(sl_decoder *d, double fraction);
/* Seconds of audio decoded so far at the source rate, corrupt packets'
 * silence included. */
double sl_decoder_decoded_seconds(const sl_decoder *d);
/* Output samples that were NaN or infinite and were delivered as 0 (policy:
 * io/README.md); a warning is logged on the first. Counted on output 0 (every
 * output has them zeroed). */
int64_t sl_decoder_nonfinite(const sl_decoder *d);

/* Number of packets that failed to decode and were skipped so far. */
long sl_decoder_bad_packets(const sl_decoder *d);
/* Number of packets of the audio stream read so far (good and bad). */
long sl_decoder_packets(const sl_decoder *d);
/* Frames delivered by sl_decoder_read (output 0) so far. */
int64_t sl_decoder_frames(const sl_decoder *d);
/* Output 0's rate and channel count actually used (after 0 = "keep source"). */
int sl_decoder_out_rate(const sl_decoder *d);
int sl_decoder_out_channels(const sl_decoder *d);

/* 1 when the file is read by the PCM WAV reader (io/wav_read.h) rather than
 * FFmpeg's demuxer and decoder: the samples are the same either way. */
int sl_decoder_is_native(const sl_decoder *d);

void sl_decoder_close(sl_decoder *d);

/* Decoders opened afterwards by the calling thread give up (SL_EDECODE, "made no
 * progress") when reading stalls for more than seconds (0 = never). Test hook:
 * SL_FAULT_DECODE_HANG=SUBSTRING makes decoders of matching paths stall. */
void sl_io_set_thread_timeout(double seconds);

/* Makes every decoder, in every thread, give up at its next read or blocking
 * FFmpeg call (SL_EINTERRUPTED), until sl_io_interrupt_clear: a stopping run
 * does not wait for a slow or stalled input. Async-signal-safe. Test hook:
 * SL_FAULT_OPEN_HANG=SUBSTRING makes opening matching paths stall. */
void sl_io_interrupt(void);
void sl_io_interrupt_clear(void);

/* Convenience: decodes a whole file into newly allocated planar buffers
 * (*planes[ch], each *n_frames long; free each then the array with free()).
 * Fails with SL_EEMPTY when no sample decodes. */
int sl_decode_file(const char *path, int out_rate, int out_channels, float ***planes,
                   size_t *n_frames, sl_audio_info *info);

#endif
