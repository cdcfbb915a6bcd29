/* Stem writer: planar float32 -> WAV (s16/s24/f32), FLAC (s16/s24), or lossy
 * Opus (.opus, libopus), MP3 (libmp3lame), AAC (.m4a, FFmpeg's encoder) or Ogg
 * Vorbis (libvorbis) via libavformat/libavcodec, resampled when the output rate
 * differs from the input (lossy codecs: also to the nearest rate the codec
 * takes, e.g. 48 kHz for Opus). Lossy files carry the encoder delay and padding
 * (Opus pre-skip and end granule, the LAME tag, the mp4 edit list, Vorbis
 * granules) so that a decoder gives back exactly the samples written; io/README.md.
 * Writes to "<path>.tmp-<pid>-<counter>", fsyncs it and renames it into place
 * on finish, so a partial file is never visible under its final name.
 * Integer formats are clipped to [-1, 1] first; see io/README.md. */
#ifndef SL_ENCODE_H
#define SL_ENCODE_H

#include <stddef.h>

typedef struct sl_encoder sl_encoder;

typedef struct {
    const char *format;        /* "wav" | "flac" | lossy: "opus" | "mp3" | "aac" | "ogg" (Vorbis) */
    const char *sample_format; /* "s16" | "s24" | "f32" (f32 only with wav; ignored by lossy formats) */
    int in_rate;               /* rate of the samples given to write */
    int out_rate;              /* rate written to the file (resampled if different) */
    int channels;
    int bitrate_kbps;          /* lossy formats: kbit/s for the whole stream; 0 = the format's default */
} sl_encode_params;

/* Creates parent folders as needed. Errors: SL_EINVAL (bad params, message says
 * which), negated errno / AVERROR on I/O, with the file named in sl_lasterr(). */
int sl_encoder_open(sl_encoder **out, const char *path, const sl_encode_params *p);
int sl_encoder_write(sl_encoder *e, const float *const *planes, size_t n_frames);
/* Flushes, closes and renames into place. Returns 0 or an error (the temporary
 * file is then removed). Frees e in every case. sl_encoder_close then
 * sl_encoder_commit. */
int sl_encoder_finish(sl_encoder *e);
/* sl_encoder_finish in two steps: close computes (the last frames encoded,
 * the temporary file written and closed; on error it is removed and e freed,
 * else e stays for commit), commit waits on the disk (the file synced,
 * renamed into place, its folder synced; frees e in every case). A closed
 * encoder may also be abandoned (sl_encoder_abort). */
int sl_encoder_close(sl_encoder *e);
int sl_encoder_commit(sl_encoder *e);
/* Abandons: closes and removes the temporary file. Frees e. */
void sl_encoder_abort(sl_encoder *e);

/* File extension of a stem format ("wav", "flac", "opus", "mp3", "m4a" for aac,
 * "ogg"); NULL for an unknown format. */
const char *sl_encode_ext(const char *format);

/* 1 for a lossy format, with its default and accepted bit rates in kbit/s
 * (any pointer may be NULL); 0 for wav, flac and unknown formats. */
int sl_encode_lossy(const char *format, int *def_kbps, int *min_kbps, int *max_kbps);

/* An upper estimate of the memory an open encoder of this many channels holds
 * (MiB), whatever it is given to write: for memory planning. */
double sl_encoder_memory_mb(int channels);

/* One-shot helper: writes a whole planar buffer to path. */
int sl_encode_file(const char *path, const sl_encode_params *p, const float *const *planes,
                   size_t n_frames);

#endif
