/* FFmpeg (libavformat, libavcodec, libswresample, libavutil) is opened at its
 * first use, not linked: a process that decodes and encodes nothing
 * (`stemline --version`, search, the ledger commands) maps none of it, nor the
 * hundred-odd libraries Debian's FFmpeg depends on (about 20 ms of every
 * process start). io/decode.c and io/encode.c call FFmpeg only through the
 * table sl_ff, filled once per process by sl_ff_load:
 *  - shared FFmpeg (the default): dlopen of each library by the soname of the
 *    headers' major version ("libavformat.so." LIBAVFORMAT_VERSION_MAJOR) and
 *    dlsym of every entry point listed below;
 *  - static FFmpeg (SL_FFMPEG_STATIC, the GPU bundle): the addresses of the
 *    functions linked in.
 * FFmpeg's inline helpers and macros (av_q2d, AVERROR, ...) come from the
 * headers as usual; an inline helper that calls a library function (avio_tell
 * calls avio_seek) is written out at the call site with the table's entry. */
#ifndef SL_FF_DL_H
#define SL_FF_DL_H

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/mathematics.h>
#include <libavutil/opt.h>
#include <libavutil/samplefmt.h>
#include <libswresample/swresample.h>

#include <stddef.h>

/* The entry points io/ uses, per library: LIST(X) expands X(f) for each. */
#define SL_FF_AVUTIL(X)                                                                             \
    X(av_audio_fifo_alloc) X(av_audio_fifo_free) X(av_audio_fifo_size) X(av_audio_fifo_write)       \
    X(av_audio_fifo_read) X(av_audio_fifo_drain) X(av_channel_layout_copy)                          \
    X(av_channel_layout_default) X(av_channel_layout_uninit) X(av_channel_layout_describe)          \
    X(av_channel_layout_compare) X(av_dict_set) X(av_dict_free) X(av_frame_alloc) X(av_frame_free)  \
    X(av_frame_unref) X(av_frame_make_writable) X(av_frame_get_buffer) X(av_freep)                  \
    X(av_get_media_type_string) X(av_get_sample_fmt_name) X(av_log_get_level) X(av_log_set_level)   \
    X(av_log_set_callback) X(av_opt_set_double) X(av_rescale_q) X(av_rescale_rnd)                   \
    X(av_samples_alloc_array_and_samples) X(av_samples_set_silence) X(av_strerror)
#define SL_FF_SWRESAMPLE(X)                                                                         \
    X(swr_alloc_set_opts2) X(swr_convert) X(swr_free) X(swr_get_out_samples) X(swr_init)            \
    X(swr_set_matrix)
#define SL_FF_AVCODEC(X)                                                                            \
    X(av_packet_alloc) X(av_packet_free) X(av_packet_rescale_ts) X(av_packet_unref)                 \
    X(avcodec_alloc_context3) X(avcodec_find_encoder)                       \
    X(avcodec_find_encoder_by_name) X(avcodec_free_context) X(avcodec_get_name) X(avcodec_open2)    \
    X(avcodec_parameters_from_context) X(avcodec_parameters_to_context) X(avcodec_receive_frame)    \
    X(avcodec_receive_packet) X(avcodec_send_frame) X(avcodec_send_packet)
#define SL_FF_AVFORMAT(X)                                                                           \
    X(av_find_best_stream) X(av_interleaved_write_frame) X(av_read_frame) X(av_write_trailer)       \
    X(avformat_alloc_context) X(avformat_alloc_output_context2) X(avformat_close_input)             \
    X(avformat_find_stream_info) X(avformat_free_context) X(avformat_new_stream)                    \
    X(avformat_open_input) X(avformat_write_header) X(avio_closep) X(avio_feof) X(avio_open)        \
    X(avio_seek)

#define SL_FF_MEMBER(f) __typeof__(&f) f;
typedef struct {
    SL_FF_AVUTIL(SL_FF_MEMBER)
    SL_FF_SWRESAMPLE(SL_FF_MEMBER)
    SL_FF_AVCODEC(SL_FF_MEMBER)
    SL_FF_AVFORMAT(SL_FF_MEMBER)
} sl_ff_api;

/* Valid after sl_ff_load() returned 0 (in this thread or one it synchronised with);
 * the libavutil and libswresample entries after sl_ff_load_base() did. */
extern sl_ff_api sl_ff;

/* Loads FFmpeg once per process (pthread_once; thread-safe) and routes its
 * log (sl_io_route_log): 0, or SL_EUNSUPPORTED with sl_lasterr() naming the
 * library and why it could not be opened (the dynamic loader's message, or the
 * missing entry point), after "PATH: " when path is not NULL; the same answer
 * on every later call. Test hook: SL_FAULT_FFMPEG_MISSING=SUBSTRING makes
 * opening the libraries whose soname contains it fail as if absent. */
int sl_ff_load(const char *path);
/* The same for libavutil and libswresample only (what converts and resamples
 * samples: the PCM WAV reader's needs, io/wav_read.h): their entries of sl_ff
 * are valid after it returned 0. sl_ff_load includes it. */
int sl_ff_load_base(const char *path);

/* io/decode.c: sets FFmpeg's log level and sends its messages to sl_log. */
void sl_io_route_log(void);

/* FFmpeg's description of an AVERROR code into buf ("error N" when it has none). */
const char *sl_ff_strerror(int code, char *buf, size_t size);

#endif
