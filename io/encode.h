/* Stem writer: planar float32 -> WAV (s16/s24/f32) or FLAC (s16/s24) via
 * libavformat/libavcodec, resampled when the output rate differs from the input.
 * Writes to "<path>.tmp-<pid>-<counter>", fsyncs it and renames it into place
 * on finish, so a partial file is never visible under its final name.
 * Integer formats are clipped to [-1, 1] first; see io/README.md. */
#ifndef SL_ENCODE_H
#define SL_ENCODE_H

#include <stddef.h>

typedef struct sl_encoder sl_encoder;

typedef struct {
    const char *format;        /* "wav" | "flac" */
    const char *sample_format; /* "s16" | "s24" | "f32" (f32 only with wav) */
    int in_rate;               /* rate of the samples given to write */
    int out_rate;              /* rate written to the file (resampled if different) */
    int channels;
} sl_encode_params;

/* Creates parent folders as needed. Errors: SL_EINVAL (bad params, message says
 * which), negated errno / AVERROR on I/O, with the file named in sl_lasterr(). */
int sl_encoder_open(sl_encoder **out, const char *path, const sl_encode_params *p);
int sl_encoder_write(sl_encoder *e, const float *const *planes, size_t n_frames);
/* Flushes, closes and renames into place. Returns 0 or an error (the temporary
 * file is then removed). Frees e in every case. */
int sl_encoder_finish(sl_encoder *e);
/* Abandons: closes and removes the temporary file. Frees e. */
void sl_encoder_abort(sl_encoder *e);

/* An upper estimate of the memory an open encoder of this many channels holds
 * (MiB), whatever it is given to write: for memory planning. */
double sl_encoder_memory_mb(int channels);

/* One-shot helper: writes a whole planar buffer to path. */
int sl_encode_file(const char *path, const sl_encode_params *p, const float *const *planes,
                   size_t n_frames);

#endif
