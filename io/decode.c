/* Streaming decoder: libavformat demuxes, libavcodec decodes (one thread per
 * codec context, so a decode pool scales by tracks), libswresample converts to
 * planar float at the requested rate and channel count, and an AVAudioFifo
 * holds only what the current read call needs plus one decoded frame.
 * Policies (corrupt packets, down-mix, logging) are described in io/README.md. */
#include "io/decode.h"

#include "common/sl_error.h"
#include "common/sl_log.h"

#include "io/decode_log.h"
#include "io/ff_dl.h"
#include "io/wav_read.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

/* A run of this many undecodable packets means the rest of the file is junk. */
#define SL_DEC_MAX_CONSECUTIVE_BAD 100
/* One corrupt packet is replaced by at most this much silence, so a bogus
 * packet duration cannot inject hours of silence. */
#define SL_DEC_MAX_FILL_SECONDS 10
/* Audio missing at the end is a truncation only beyond this many seconds. */
#define SL_DEC_MISSING_SLACK_S 0.5

enum { ST_DEMUX, ST_DRAIN, ST_FLUSH, ST_DONE };

/* One output of a decoder: its own resampler (rate, channel count) and FIFO. */
typedef struct {
    int rate, ch;
    AVChannelLayout layout;
    SwrContext *swr;
    AVAudioFifo *fifo;
    float *scratch; /* ch planes of cap floats */
    float **planes;
    int cap;
    int64_t frames_out;
} dec_out;

struct sl_decoder {
    char *path;
    sl_wav_reader *wav;      /* a PCM WAV read without FFmpeg's demuxer (io/wav_read.h), or NULL */
    AVChannelLayout wav_layout; /* its layout, as FFmpeg's demuxer states it */
    int wav_fmt;             /* its sample format */
    int src_rate;            /* the source's rate (what add_output's 0 keeps) */
    const AVChannelLayout *src_layout; /* the source's channel layout */
    AVFormatContext *fmt;
    AVCodecContext *cc;
    AVStream *st;
    AVPacket *pkt;
    AVFrame *frame;
    sl_audio_info info;

    /* Outputs: the one opened with the decoder, and those added by
     * sl_decoder_add_output; every decoded frame goes to each. */
    dec_out out[SL_DEC_MAX_OUTPUTS];
    int n_out;
    /* What swr was configured for, as the frames announce it. */
    AVChannelLayout in_key_layout;
    int in_rate;
    int in_fmt;

    int state;
    int err;                 /* sticky error */
    long packets, bad, consecutive_bad;
    int last_bad_err;
    int64_t dec_frames;      /* frames the decoder produced (without fill) */
    int64_t fill_frames;     /* frames of silence inserted for corrupt packets */
    int64_t last_demux_err_pos;
    double timeout_s;     /* 0 = none: see sl_io_set_thread_timeout */
    double last_progress; /* monotonic seconds of the last packet read */
    int timed_out;
    int interrupted;      /* sl_io_interrupt was called while this decoder read */
    double max_missing;   /* sl_decoder_set_max_missing; < 0 = no check */
    int64_t nonfinite;    /* NaN/Inf output samples replaced by 0 */
    int fault_hang;       /* test-only: SL_FAULT_DECODE_HANG matched this file */
    int warned;
    int ffmpeg_msgs;
};

/* ---------------------------------------------------------------- logging */

/* FFmpeg's messages name the file this thread decodes (io/decode_log.c); the
 * count lives in the decoder, so it survives between read calls. */
static void set_log_file(sl_decoder *d) { sl_dec_log_file(d ? d->path : NULL, d ? &d->ffmpeg_msgs : NULL); }

int sl_io_load(void) { return sl_ff_load(NULL); }

void sl_io_init(void) { (void)sl_ff_load(NULL); }

/* ---------------------------------------------------------------- helpers */

static int ensure_scratch(sl_decoder *d, dec_out *o, int frames)
{
    if (frames <= o->cap)
        return 0;
    int cap = frames + frames / 2 + 1024;
    float *s = realloc(o->scratch, (size_t)cap * (size_t)o->ch * sizeof(float));
    if (!s)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", d->path);
    o->scratch = s;
    for (int c = 0; c < o->ch; c++)
        o->planes[c] = s + (size_t)c * (size_t)cap;
    o->cap = cap;
    return 0;
}

static int push_converted_to(sl_decoder *d, dec_out *o, const uint8_t **in, int n)
{
    int cap = sl_ff.swr_get_out_samples(o->swr, n);
    if (cap < 0)
        return sl_seterr(SL_EDECODE, "%s: resampler error", d->path);
    if (cap == 0)
        return 0;
    int r = ensure_scratch(d, o, cap);
    if (r < 0)
        return r;
    int got = sl_ff.swr_convert(o->swr, (uint8_t **)o->planes, cap, in, n);
    if (got < 0) {
        char eb[AV_ERROR_MAX_STRING_SIZE];
        return sl_seterr(SL_EDECODE, "%s: resampling failed (%s)", d->path, sl_ff_strerror(got, eb, sizeof eb));
    }
    if (got > 0 && sl_ff.av_audio_fifo_write(o->fifo, (void **)o->planes, got) < got)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", d->path);
    return 0;
}

/* Converts n input frames into every output's FIFO. */
static int push_converted(sl_decoder *d, const uint8_t **in, int n)
{
    for (int i = 0; i < d->n_out; i++) {
        int r = push_converted_to(d, &d->out[i], in, n);
        if (r < 0)
            return r;
    }
    return 0;
}

/* Drains what the resamplers still hold (filter delay) into the FIFOs. */
static int flush_swr(sl_decoder *d)
{
    for (int i = 0; i < d->n_out; i++) {
        dec_out *o = &d->out[i];
        if (!o->swr)
            continue;
        for (;;) {
            int before = sl_ff.av_audio_fifo_size(o->fifo);
            int r = push_converted_to(d, o, NULL, 0);
            if (r < 0)
                return r;
            if (sl_ff.av_audio_fifo_size(o->fifo) == before)
                break;
        }
    }
    return 0;
}

/* (Re)configures the resampler for frames with these parameters; flushes the
 * previous one first so a mid-stream format change loses nothing. */
/* A resampler for output o from frames of this layout, format and rate;
 * 0 or a negative error (o->swr NULL). */
static int make_swr(sl_decoder *d, dec_out *o, AVChannelLayout *in_layout, int fmt, int rate)
{
    int r = sl_ff.swr_alloc_set_opts2(&o->swr, &o->layout, AV_SAMPLE_FMT_FLTP, o->rate, in_layout,
                                (enum AVSampleFormat)fmt, rate, 0, NULL);
    if (r >= 0) {
        int in_ch = in_layout->nb_channels;
        if (in_ch == 1) {
            /* Mono is duplicated at full level (swr's own matrix would put
             * it at -3 dB in each channel, or route a lone "FL" oddly). */
            double m[64];
            for (int c = 0; c < o->ch; c++)
                m[c] = 1.0;
            r = sl_ff.swr_set_matrix(o->swr, m, 1);
        } else if (in_ch > o->ch) {
            /* Down-mix: swr's standard matrix (centre and surrounds at -3 dB,
             * LFE dropped), normalised so a full-scale input cannot exceed
             * full scale (io/README.md). */
            r = sl_ff.av_opt_set_double(o->swr, "rematrix_maxval", 1.0, 0);
        }
    }
    if (r >= 0)
        r = sl_ff.swr_init(o->swr);
    if (r < 0)
        sl_ff.swr_free(&o->swr);
    return r;
}

/* (Re)configures the resamplers for frames with these parameters; flushes the
 * previous ones first so a mid-stream format change loses nothing. */
static int configure_swr(sl_decoder *d, const AVChannelLayout *layout, int fmt, int rate)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    if (d->out[0].swr) {
        if (d->in_fmt == fmt && d->in_rate == rate &&
            !sl_ff.av_channel_layout_compare(&d->in_key_layout, layout))
            return 0;
        int r = flush_swr(d);
        if (r < 0)
            return r;
        for (int i = 0; i < d->n_out; i++)
            sl_ff.swr_free(&d->out[i].swr);
        sl_ff.av_channel_layout_uninit(&d->in_key_layout);
    }
    if (layout->nb_channels <= 0 || rate <= 0 || fmt < 0)
        return sl_seterr(SL_EDECODE, "%s: decoder reported no channel count, rate or sample format",
                         d->path);

    /* Unspecified or custom orders (e.g. a 6-channel WAV without a mask) get
     * FFmpeg's default layout for the count, so the down-mix matrix exists. */
    AVChannelLayout in_layout = {0};
    if (layout->order == AV_CHANNEL_ORDER_NATIVE)
        sl_ff.av_channel_layout_copy(&in_layout, layout);
    else
        sl_ff.av_channel_layout_default(&in_layout, layout->nb_channels);

    int r = 0, i = 0;
    for (; i < d->n_out && r >= 0; i++)
        r = make_swr(d, &d->out[i], &in_layout, fmt, rate);
    sl_ff.av_channel_layout_uninit(&in_layout);
    if (r < 0) {
        dec_out *o = &d->out[i - 1];
        for (int j = 0; j < d->n_out; j++)
            sl_ff.swr_free(&d->out[j].swr);
        char desc[64] = "?";
        sl_ff.av_channel_layout_describe(layout, desc, sizeof desc);
        return sl_seterr(SL_EDECODE, "%s: cannot convert %s %d Hz %s to %d channels at %d Hz (%s)",
                         d->path, desc, rate, sl_ff.av_get_sample_fmt_name((enum AVSampleFormat)fmt),
                         o->ch, o->rate, sl_ff_strerror(r, eb, sizeof eb));
    }
    sl_ff.av_channel_layout_copy(&d->in_key_layout, layout);
    d->in_fmt = fmt;
    d->in_rate = rate;
    return 0;
}

static int push_frame(sl_decoder *d, AVFrame *f)
{
    int r = configure_swr(d, &f->ch_layout, f->format, f->sample_rate);
    if (r < 0)
        return r;
    d->dec_frames += f->nb_samples;
    return push_converted(d, (const uint8_t **)f->extended_data, f->nb_samples);
}

/* Keeps the timeline intact across a packet that failed to decode: its
 * duration is replaced with silence, so later audio (and stems) stay aligned
 * with the source. */
static int fill_silence(sl_decoder *d, int64_t duration)
{
    if (duration <= 0)
        return 0;
    if (!d->out[0].swr) {
        if (d->cc->sample_fmt == AV_SAMPLE_FMT_NONE || d->cc->sample_rate <= 0 ||
            d->cc->ch_layout.nb_channels <= 0)
            return 0;
        int r = configure_swr(d, &d->cc->ch_layout, d->cc->sample_fmt, d->cc->sample_rate);
        if (r < 0)
            return r;
    }
    int64_t n = sl_ff.av_rescale_q(duration, d->st->time_base, (AVRational){1, d->in_rate});
    if (n > (int64_t)d->in_rate * SL_DEC_MAX_FILL_SECONDS)
        n = (int64_t)d->in_rate * SL_DEC_MAX_FILL_SECONDS;
    if (n <= 0)
        return 0;
    uint8_t **buf = NULL;
    int ch = d->in_key_layout.nb_channels;
    if (sl_ff.av_samples_alloc_array_and_samples(&buf, NULL, ch, (int)n, d->in_fmt, 0) < 0)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", d->path);
    sl_ff.av_samples_set_silence(buf, 0, (int)n, ch, d->in_fmt);
    int r = push_converted(d, (const uint8_t **)buf, (int)n);
    sl_ff.av_freep(&buf[0]);
    sl_ff.av_freep(&buf);
    if (r >= 0)
        d->fill_frames += n;
    return r;
}

/* Receives every frame the decoder has ready. Returns 1 when the decoder is
 * fully drained, 0 otherwise, < 0 on a fatal (non-decode) error. A decode
 * error is stored in *bad. */
static int receive_all(sl_decoder *d, int *bad)
{
    for (;;) {
        int r = sl_ff.avcodec_receive_frame(d->cc, d->frame);
        if (r == AVERROR(EAGAIN))
            return 0;
        if (r == AVERROR_EOF)
            return 1;
        if (r < 0) {
            *bad = r;
            return 0;
        }
        r = push_frame(d, d->frame);
        sl_ff.av_frame_unref(d->frame);
        if (r < 0)
            return r;
    }
}

static int note_bad(sl_decoder *d, int err)
{
    d->bad++;
    d->consecutive_bad++;
    d->last_bad_err = err;
    if (d->consecutive_bad >= SL_DEC_MAX_CONSECUTIVE_BAD) {
        char eb[AV_ERROR_MAX_STRING_SIZE];
        return sl_seterr(SL_EDECODE, "%s: %ld consecutive packets failed to decode (last error: %s); giving up",
                         d->path, d->consecutive_bad, sl_ff_strerror(err, eb, sizeof eb));
    }
    return 0;
}

static int finish_stream(sl_decoder *d)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    d->state = ST_DONE;
    if (d->bad && !d->warned) {
        d->warned = 1;
        sl_log(SL_LOG_WARN, d->path, "decode",
               "skipped %ld corrupt packet%s of %ld (%.3f s replaced by silence; last error: %s)", d->bad,
               d->bad == 1 ? "" : "s", d->packets, d->in_rate > 0 ? (double)d->fill_frames / d->in_rate : 0.0,
               sl_ff_strerror(d->last_bad_err, eb, sizeof eb));
    }
    double got = d->in_rate > 0 ? (double)(d->dec_frames + d->fill_frames) / d->in_rate : 0.0;
    double want = d->info.duration;
    /* the slack covers what codecs legitimately differ by (priming and
     * padding frames: up to ~0.3 s for an 8 kHz mp3) */
    if (d->dec_frames > 0 && want > 0 && !d->info.duration_estimated && d->max_missing >= 0 &&
        want - got > d->max_missing * want && want - got > SL_DEC_MISSING_SLACK_S)
        return sl_seterr(SL_EDECODE,
                         "%s: decoded %.1f s of %.1f s (truncated file?); input.max_missing_fraction is %g", d->path,
                         got, want, d->max_missing);
    if (d->dec_frames > 0 && want > 0 && got < want - 0.5 && got < want * 0.95)
        sl_log(SL_LOG_WARN, d->path, "decode",
               "audio ends at %.3f s but the container says %.3f s (truncated or damaged file); "
               "keeping what decoded", got, want);
    if (d->dec_frames == 0) {
        if (d->bad)
            return sl_seterr(SL_EDECODE, "%s: no packet could be decoded (%ld corrupt, last error: %s)",
                             d->path, d->bad, sl_ff_strerror(d->last_bad_err, eb, sizeof eb));
        return sl_seterr(SL_EEMPTY, "%s: zero-length audio (the audio stream holds no samples)", d->path);
    }
    if (d->bad * 2 > d->packets)
        return sl_seterr(SL_EDECODE, "%s: %ld of %ld packets were corrupt; the file is too damaged to use",
                         d->path, d->bad, d->packets);
    return 0;
}

static int send_packet(sl_decoder *d, const AVPacket *pkt, int *bad)
{
    for (int tries = 0; tries < 8; tries++) {
        int r = sl_ff.avcodec_send_packet(d->cc, pkt);
        if (r != AVERROR(EAGAIN)) {
            if (r < 0 && r != AVERROR_EOF)
                *bad = r;
            return 0;
        }
        r = receive_all(d, bad);
        if (r < 0)
            return r;
    }
    return sl_seterr(SL_EDECODE, "%s: decoder accepts no input and returns no output", d->path);
}

/* Advances the pipeline by one packet (or one drain step). */
static _Thread_local double tl_timeout_s;

void sl_io_set_thread_timeout(double seconds) { tl_timeout_s = seconds > 0 ? seconds : 0; }

/* Set from a signal handler: a lock-free atomic store is async-signal-safe. */
static atomic_int io_stop;

void sl_io_interrupt(void) { atomic_store(&io_stop, 1); }
void sl_io_interrupt_clear(void) { atomic_store(&io_stop, 0); }

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* FFmpeg calls this while it blocks in I/O: a read that makes no progress for
 * timeout_s seconds is abandoned (AVERROR_EXIT), so one stuck file (a dead
 * network mount, a stalled FUSE read) fails its track instead of the night. */
static int interrupt_cb(void *arg)
{
    sl_decoder *d = arg;
    if (atomic_load(&io_stop)) {
        d->interrupted = 1;
        return 1;
    }
    if (d->timeout_s > 0 && mono_s() - d->last_progress > d->timeout_s) {
        d->timed_out = 1;
        return 1;
    }
    return 0;
}

/* Why FFmpeg's interrupt callback stopped this decoder. */
static int stopped_error(sl_decoder *d)
{
    if (d->interrupted || atomic_load(&io_stop))
        return sl_seterr(SL_EINTERRUPTED, "%s: decoding interrupted (the run is stopping)", d->path);
    return sl_seterr(SL_EDECODE, "%s: decoding made no progress for %.0f s (runtime.track_timeout_s); abandoned",
                     d->path, d->timeout_s);
}

/* One packet of a PCM WAV (io/wav_read.h): what the demuxer and the PCM
 * decoder would deliver, straight into the resamplers. */
static int wav_step(sl_decoder *d)
{
    const uint8_t *data = NULL;
    int frames = 0;
    int r = sl_wav_next(d->wav, &data, &frames);
    if (r < 0)
        return sl_seterr(r, "%s: read error after %.3f s of audio: %s", d->path,
                         d->in_rate > 0 ? (double)d->dec_frames / d->in_rate : 0.0, strerror(-r));
    if (r == 0) {
        d->state = ST_FLUSH;
        return 0;
    }
    d->packets++;
    r = configure_swr(d, &d->wav_layout, d->wav_fmt, d->src_rate);
    if (r < 0)
        return r;
    d->dec_frames += frames;
    d->consecutive_bad = 0;
    return push_converted(d, &data, frames);
}

/* Test-only: a file that stops making progress (SL_FAULT_*_HANG), until
 * interrupted or timed out. */
static void stall(sl_decoder *d)
{
    while (!interrupt_cb(d)) {
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
}

static int step(sl_decoder *d)
{
    if (d->fault_hang == 1)
        stall(d); /* a decoder that stops making progress */
    if (d->interrupted || atomic_load(&io_stop))
        return stopped_error(d);
    if (d->timed_out)
        return stopped_error(d);
    if (d->timeout_s > 0 && d->state == ST_DEMUX)
        d->last_progress = mono_s();
    char eb[AV_ERROR_MAX_STRING_SIZE];
    int r;
    if (d->wav && d->state == ST_DEMUX)
        return wav_step(d);
    switch (d->state) {
    case ST_DEMUX:
        r = sl_ff.av_read_frame(d->fmt, d->pkt);
        if (r == AVERROR(EAGAIN))
            return 0;
        /* cut short by interrupt_cb: an error, never the end of the data */
        if (r < 0 && (d->interrupted || d->timed_out))
            return stopped_error(d);
        if (r < 0) {
            if (r != AVERROR_EOF) {
                if (r > -4096 && r != AVERROR(EINVAL))
                    return sl_seterr(r, "%s: read error after %.3f s of audio: %s", d->path,
                                     d->in_rate > 0 ? (double)d->dec_frames / d->in_rate : 0.0,
                                     sl_ff_strerror(r, eb, sizeof eb));
                /* Damaged container data: retry while the demuxer makes
                 * progress (it may resynchronise), otherwise end here. */
                int64_t pos = d->fmt->pb ? sl_ff.avio_seek(d->fmt->pb, 0, SEEK_CUR) : -1;
                int stuck = pos == d->last_demux_err_pos || pos < 0 || sl_ff.avio_feof(d->fmt->pb);
                d->last_demux_err_pos = pos;
                int rb = note_bad(d, r);
                if (!stuck && rb == 0)
                    return 0;
                sl_clearerr();
                sl_log(SL_LOG_WARN, d->path, "decode", "container data unreadable after %.3f s (%s); ending there",
                       d->in_rate > 0 ? (double)d->dec_frames / d->in_rate : 0.0, sl_ff_strerror(r, eb, sizeof eb));
            }
            r = send_packet(d, NULL, &(int){0});
            if (r < 0)
                return r;
            d->state = ST_DRAIN;
            return 0;
        }
        if (d->pkt->stream_index != d->st->index) {
            sl_ff.av_packet_unref(d->pkt);
            return 0;
        }
        d->packets++;
        {
            int64_t dur = d->pkt->duration;
            int bad = 0;
            r = send_packet(d, d->pkt, &bad);
            sl_ff.av_packet_unref(d->pkt);
            if (r < 0)
                return r;
            r = receive_all(d, &bad);
            if (r < 0)
                return r;
            if (bad) {
                r = note_bad(d, bad);
                if (r < 0)
                    return r;
                return fill_silence(d, dur);
            }
            d->consecutive_bad = 0;
        }
        return 0;
    case ST_DRAIN: {
        int bad = 0;
        r = receive_all(d, &bad);
        if (r < 0)
            return r;
        if (r == 1 || bad) {
            if (bad)
                (void)note_bad(d, bad);
            sl_clearerr();
            d->state = ST_FLUSH;
        }
        return 0;
    }
    case ST_FLUSH:
        r = flush_swr(d);
        if (r < 0)
            return r;
        return finish_stream(d);
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------- public */

static int fail_open(sl_decoder *d, int code)
{
    sl_decoder_close(d);
    return code;
}

static int open_error(const char *path, int r)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    switch (r) {
    case AVERROR(EACCES):
    case AVERROR(EPERM):
        return sl_seterr(r, "%s: permission denied", path);
    case AVERROR(ENOENT):
        return sl_seterr(r, "%s: no such file", path);
    case AVERROR(EISDIR):
        return sl_seterr(r, "%s: is a directory, not a media file", path);
    case AVERROR_INVALIDDATA:
        return sl_seterr(SL_EDECODE, "%s: not a media file (%s)", path, sl_ff_strerror(r, eb, sizeof eb));
    case AVERROR(EIO):
    case AVERROR(EMFILE):
    case AVERROR(ENFILE):
    case AVERROR(ENOMEM):
    case AVERROR(ELOOP):
    case AVERROR(ENAMETOOLONG):
    case AVERROR(ENOTDIR):
    case AVERROR(ENXIO):
    case AVERROR(ENODEV):
    case AVERROR(ESTALE):
        return sl_seterr(r, "%s: cannot open (%s)", path, sl_ff_strerror(r, eb, sizeof eb));
    default:
        /* Anything else (EINVAL, ENOSYS, AVERROR_* from a demuxer) means
         * the bytes are not a container FFmpeg can parse. */
        return sl_seterr(SL_EDECODE, "%s: not a media file (%s)", path, sl_ff_strerror(r, eb, sizeof eb));
    }
}

/* Appends an output at out_rate / out_channels (0: the source's); 0 or a
 * negative error. */
static int add_output(sl_decoder *d, int out_rate, int out_channels)
{
    dec_out *o = &d->out[d->n_out];
    o->rate = out_rate ? out_rate : d->src_rate;
    o->ch = out_channels ? out_channels : d->info.channels;
    if (o->ch > 64)
        return sl_seterr(SL_EUNSUPPORTED, "%s: %d channels are more than stemline handles (64)", d->path, o->ch);
    if (!out_channels && d->src_layout->order == AV_CHANNEL_ORDER_NATIVE)
        sl_ff.av_channel_layout_copy(&o->layout, d->src_layout);
    else
        sl_ff.av_channel_layout_default(&o->layout, o->ch);
    o->planes = calloc((size_t)o->ch, sizeof *o->planes);
    o->fifo = sl_ff.av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, o->ch, 4096);
    d->n_out++; /* counted now, so close frees what was allocated */
    if (!o->planes || !o->fifo)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", d->path);
    return 0;
}

/* The thread's timeout from now on, and the test hooks: SL_FAULT_DECODE_HANG
 * (reading stalls: fault_hang 1), SL_FAULT_OPEN_HANG (opening stalls: 2). */
static void arm_open(sl_decoder *d, const char *path)
{
    d->timeout_s = tl_timeout_s;
    d->last_progress = mono_s();
    const char *hang = getenv("SL_FAULT_DECODE_HANG");
    d->fault_hang = hang && *hang && strstr(path, hang) != NULL;
    hang = getenv("SL_FAULT_OPEN_HANG");
    if (hang && *hang && strstr(path, hang) != NULL)
        d->fault_hang = 2;
}

/* sl_decoder_open of a PCM WAV that io/wav_read.c reads (it owns fd from here):
 * only libavutil and libswresample are needed. */
static int open_wav(sl_decoder **out, const char *path, int fd, const sl_wav_fmt *w, int out_rate,
                    int out_channels)
{
    int r = sl_ff_load_base(path);
    sl_decoder *d = r ? NULL : calloc(1, sizeof *d);
    if (!d) {
        close(fd);
        return r ? r : sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    d->path = strdup(path);
    d->wav = sl_wav_reader_new(fd, w);
    d->max_missing = -1;
    d->in_fmt = -1;
    if (!d->path || !d->wav)
        return fail_open(d, sl_seterr(SL_ENOMEM, "%s: out of memory", path));
    arm_open(d, path);
    if (d->fault_hang == 2)
        stall(d);
    if (interrupt_cb(d) || d->interrupted || d->timed_out) /* as FFmpeg's open would, when the run is stopping */
        return fail_open(d, stopped_error(d));
    /* the layout FFmpeg's WAV demuxer states: the mask's for WAVE_FORMAT_EXTENSIBLE,
     * otherwise only the count */
    if (w->extensible)
        sl_ff.av_channel_layout_default(&d->wav_layout, w->channels);
    else
        d->wav_layout = (AVChannelLayout){.order = AV_CHANNEL_ORDER_UNSPEC, .nb_channels = w->channels};
    d->wav_fmt = w->av_fmt;
    d->src_rate = w->rate;
    d->src_layout = &d->wav_layout;
    sl_audio_info *in = &d->info;
    snprintf(in->container, sizeof in->container, "wav");
    snprintf(in->codec, sizeof in->codec, "%s", w->codec);
    in->sample_rate = w->rate;
    in->channels = w->channels;
    if (sl_ff.av_channel_layout_describe(&d->wav_layout, in->channel_layout, sizeof in->channel_layout) < 0)
        snprintf(in->channel_layout, sizeof in->channel_layout, "%d channels", w->channels);
    /* the demuxer's sample count (data bytes x 8 / (channels x bits)) in its time base, 1 / rate */
    in->duration = (double)((w->data_size * 8) / ((int64_t)w->channels * w->bits)) * (1.0 / w->rate);
    in->bit_rate = w->bit_rate;
    in->stream_index = 0;
    r = add_output(d, out_rate, out_channels);
    if (r < 0)
        return fail_open(d, r);
    d->state = ST_DEMUX;
    *out = d;
    return 0;
}

int sl_decoder_open(sl_decoder **out, const char *path, int out_rate, int out_channels)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    if (!out || !path)
        return sl_seterr(SL_EINVAL, "sl_decoder_open: no path");
    *out = NULL;
    if (out_rate < 0 || out_channels < 0 || out_channels > 64)
        return sl_seterr(SL_EINVAL, "%s: invalid output rate %d or channel count %d", path, out_rate,
                         out_channels);

    struct stat sb;
    if (stat(path, &sb) != 0) {
        int e = errno;
        struct stat lsb;
        if (e == ENOENT && lstat(path, &lsb) == 0 && S_ISLNK(lsb.st_mode))
            return sl_seterr(AVERROR(e), "%s: no such file (dangling symbolic link)", path);
        if (e == ELOOP)
            return sl_seterr(AVERROR(e), "%s: symbolic link loop (the link leads back to itself)", path);
        return open_error(path, AVERROR(e));
    }
    if (S_ISDIR(sb.st_mode))
        return open_error(path, AVERROR(EISDIR));
    /* A FIFO would block open() until a writer comes (no timeout can end a
     * blocked open), a device may never end, a socket cannot be opened: none
     * is given to FFmpeg. */
    if (!S_ISREG(sb.st_mode))
        return sl_seterr(SL_EDECODE, "%s: not a regular file (%s)", path,
                         S_ISFIFO(sb.st_mode)   ? "a named pipe"
                         : S_ISSOCK(sb.st_mode) ? "a socket"
                         : S_ISCHR(sb.st_mode)  ? "a character device"
                         : S_ISBLK(sb.st_mode)  ? "a block device"
                                                : "not a file");
    if (S_ISREG(sb.st_mode) && sb.st_size == 0)
        return sl_seterr(SL_EEMPTY, "%s: zero-length audio (the file is empty, 0 bytes)", path);
    if (sl_wav_native_enabled()) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        sl_wav_fmt w;
        if (fd >= 0 && sl_wav_probe(fd, (int64_t)sb.st_size, &w) == 1)
            return open_wav(out, path, fd, &w, out_rate, out_channels);
        if (fd >= 0)
            close(fd);
    }
    int lrc = sl_ff_load(path);
    if (lrc)
        return lrc;

    sl_decoder *d = calloc(1, sizeof *d);
    if (!d)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    d->path = strdup(path);
    d->pkt = sl_ff.av_packet_alloc();
    d->frame = sl_ff.av_frame_alloc();
    d->last_demux_err_pos = -1;
    d->max_missing = -1;
    d->info.duration = -1;
    d->info.stream_index = -1;
    if (!d->path || !d->pkt || !d->frame)
        return fail_open(d, sl_seterr(SL_ENOMEM, "%s: out of memory", path));
    set_log_file(d);

    /* "file:" keeps names such as "a:b.mp3" from being read as URLs, and the
     * whitelist stops playlists (hls, concat) from opening other files or
     * the network. */
    size_t ulen = strlen(path) + 6;
    char *url = malloc(ulen);
    if (!url)
        return fail_open(d, sl_seterr(SL_ENOMEM, "%s: out of memory", path));
    snprintf(url, ulen, "file:%s", path);
    AVDictionary *opts = NULL;
    sl_ff.av_dict_set(&opts, "protocol_whitelist", "file", 0);
    arm_open(d, path);
    d->fmt = sl_ff.avformat_alloc_context();
    if (!d->fmt) {
        sl_ff.av_dict_free(&opts);
        free(url);
        return fail_open(d, sl_seterr(SL_ENOMEM, "%s: out of memory", path));
    }
    d->fmt->interrupt_callback.callback = interrupt_cb;
    d->fmt->interrupt_callback.opaque = d;
    int r = sl_ff.avformat_open_input(&d->fmt, url, NULL, &opts);
    sl_ff.av_dict_free(&opts);
    free(url);
    if (r >= 0 && d->fault_hang == 2)
        stall(d);
    if (r < 0 || d->interrupted || d->timed_out) {
        set_log_file(NULL);
        return fail_open(d, d->interrupted || d->timed_out ? stopped_error(d) : open_error(path, r));
    }
    r = sl_ff.avformat_find_stream_info(d->fmt, NULL);
    if (d->interrupted || d->timed_out) {
        set_log_file(NULL);
        return fail_open(d, stopped_error(d));
    }
    if (r < 0 && d->fmt->nb_streams == 0) {
        set_log_file(NULL);
        return fail_open(d, sl_seterr(SL_EDECODE, "%s: not a media file (%s)", path, sl_ff_strerror(r, eb, sizeof eb)));
    }

    const AVCodec *codec = NULL;
    int si = sl_ff.av_find_best_stream(d->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (si < 0) {
        set_log_file(NULL);
        if (si == AVERROR_DECODER_NOT_FOUND) {
            int ai = sl_ff.av_find_best_stream(d->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
            const char *cn = ai >= 0 ? sl_ff.avcodec_get_name(d->fmt->streams[ai]->codecpar->codec_id) : "?";
            return fail_open(d, sl_seterr(SL_EDECODE, "%s: no decoder for audio codec '%s'", path, cn));
        }
        char kinds[128] = "";
        for (unsigned i = 0; i < d->fmt->nb_streams && strlen(kinds) < 100; i++) {
            const char *k = sl_ff.av_get_media_type_string(d->fmt->streams[i]->codecpar->codec_type);
            snprintf(kinds + strlen(kinds), sizeof kinds - strlen(kinds), "%s%s", i ? ", " : "", k ? k : "unknown");
        }
        if (d->fmt->nb_streams)
            return fail_open(d, sl_seterr(SL_ENOAUDIO, "%s: no audio stream (%s container with %u stream%s: %s)",
                                          path, d->fmt->iformat->name, d->fmt->nb_streams,
                                          d->fmt->nb_streams == 1 ? "" : "s", kinds));
        return fail_open(d, sl_seterr(SL_ENOAUDIO, "%s: no audio stream (%s container with no streams)", path,
                                      d->fmt->iformat->name));
    }
    d->st = d->fmt->streams[si];
    const AVCodecParameters *par = d->st->codecpar;
    if (par->sample_rate <= 0 || par->ch_layout.nb_channels <= 0) {
        set_log_file(NULL);
        return fail_open(d, sl_seterr(SL_EDECODE,
                                      "%s: not a media file (probed as %s, but no decodable %s audio was found)",
                                      path, d->fmt->iformat->name, sl_ff.avcodec_get_name(par->codec_id)));
    }
    /* Other streams (video, cover art, subtitles) are not even demuxed further. */
    for (unsigned i = 0; i < d->fmt->nb_streams; i++)
        if ((int)i != si)
            d->fmt->streams[i]->discard = AVDISCARD_ALL;

    d->cc = sl_ff.avcodec_alloc_context3(codec);
    if (!d->cc)
        return fail_open(d, sl_seterr(SL_ENOMEM, "%s: out of memory", path));
    r = sl_ff.avcodec_parameters_to_context(d->cc, par);
    if (r >= 0) {
        d->cc->pkt_timebase = d->st->time_base;
        d->cc->thread_count = 1;
        /* Detect and report damage, but never "explode": a bad packet is
         * skipped by our policy, not the end of the file. */
        d->cc->err_recognition = AV_EF_CRCCHECK;
        r = sl_ff.avcodec_open2(d->cc, codec, NULL);
    }
    if (r < 0) {
        set_log_file(NULL);
        return fail_open(d, sl_seterr(SL_EDECODE, "%s: cannot open the %s decoder (%s)", path, codec->name,
                                      sl_ff_strerror(r, eb, sizeof eb)));
    }

    sl_audio_info *in = &d->info;
    snprintf(in->container, sizeof in->container, "%s", d->fmt->iformat->name);
    snprintf(in->codec, sizeof in->codec, "%s", codec->name);
    in->sample_rate = par->sample_rate;
    in->channels = par->ch_layout.nb_channels;
    if (sl_ff.av_channel_layout_describe(&par->ch_layout, in->channel_layout, sizeof in->channel_layout) < 0)
        snprintf(in->channel_layout, sizeof in->channel_layout, "%d channels", in->channels);
    if (d->st->duration != AV_NOPTS_VALUE && d->st->duration > 0)
        in->duration = d->st->duration * av_q2d(d->st->time_base);
    else if (d->fmt->duration != AV_NOPTS_VALUE && d->fmt->duration > 0)
        in->duration = d->fmt->duration / (double)AV_TIME_BASE;
    /* A duration guessed from the file size and bit rate says nothing about
     * truncation: a cut file gets a shorter guess. */
    in->duration_estimated = d->fmt->duration_estimation_method == AVFMT_DURATION_FROM_BITRATE;
    in->bit_rate = par->bit_rate > 0 ? par->bit_rate : (d->fmt->bit_rate > 0 ? d->fmt->bit_rate : 0);
    in->stream_index = si;
    d->src_rate = par->sample_rate;
    d->src_layout = &par->ch_layout;

    r = add_output(d, out_rate, out_channels);
    if (r < 0)
        return fail_open(d, r);
    d->in_fmt = -1;
    d->state = ST_DEMUX;
    set_log_file(NULL);
    *out = d;
    return 0;
}

const sl_audio_info *sl_decoder_info(const sl_decoder *d) { return &d->info; }
void sl_decoder_set_max_missing(sl_decoder *d, double fraction) { d->max_missing = fraction; }
int64_t sl_decoder_nonfinite(const sl_decoder *d) { return d->nonfinite; }
double sl_decoder_decoded_seconds(const sl_decoder *d)
{
    return d->in_rate > 0 ? (double)(d->dec_frames + d->fill_frames) / d->in_rate : 0.0;
}
long sl_decoder_bad_packets(const sl_decoder *d) { return d->bad; }
long sl_decoder_packets(const sl_decoder *d) { return d->packets; }
int64_t sl_decoder_frames(const sl_decoder *d) { return d->out[0].frames_out; }
int sl_decoder_out_rate(const sl_decoder *d) { return d->out[0].rate; }
int sl_decoder_is_native(const sl_decoder *d) { return d && d->wav; }
int sl_decoder_out_channels(const sl_decoder *d) { return d->out[0].ch; }

int sl_decoder_add_output(sl_decoder *d, int out_rate, int out_channels)
{
    if (!d || out_rate < 0 || out_channels < 0 || out_channels > 64)
        return sl_seterr(SL_EINVAL, "sl_decoder_add_output: invalid output rate %d or channel count %d", out_rate,
                         out_channels);
    if (d->n_out >= SL_DEC_MAX_OUTPUTS)
        return sl_seterr(SL_EINVAL, "%s: more than %d decoder outputs", d->path, SL_DEC_MAX_OUTPUTS);
    if (d->packets || d->state != ST_DEMUX || d->out[0].swr)
        return sl_seterr(SL_EINVAL, "%s: decoder outputs must be added before the first read", d->path);
    int r = add_output(d, out_rate, out_channels);
    return r < 0 ? r : d->n_out - 1;
}

long sl_decoder_buffered(const sl_decoder *d, int output)
{
    return d && output >= 0 && output < d->n_out ? sl_ff.av_audio_fifo_size(d->out[output].fifo) : 0;
}

long sl_decoder_read(sl_decoder *d, float *const *dst, long max_frames)
{
    return sl_decoder_read_output(d, 0, dst, max_frames);
}

long sl_decoder_read_output(sl_decoder *d, int output, float *const *dst, long max_frames)
{
    if (!d || !dst || max_frames <= 0 || output < 0 || output >= d->n_out)
        return sl_seterr(SL_EINVAL, "sl_decoder_read: invalid arguments");
    if (d->err)
        return d->err;
    dec_out *o = &d->out[output];
    set_log_file(d);
    int want = max_frames > (1 << 28) ? (1 << 28) : (int)max_frames;
    while (sl_ff.av_audio_fifo_size(o->fifo) < want && d->state != ST_DONE) {
        int r = step(d);
        if (r < 0) {
            d->err = r;
            set_log_file(NULL);
            return r;
        }
    }
    set_log_file(NULL);
    int n = sl_ff.av_audio_fifo_size(o->fifo);
    if (n > want)
        n = want;
    if (n == 0)
        return 0;
    if (sl_ff.av_audio_fifo_read(o->fifo, (void **)dst, n) < n)
        return d->err = sl_seterr(SL_EDECODE, "%s: internal buffer error", d->path);
    /* NaN/Inf samples (float files can hold them) would poison every model
     * segment they fall in: they become silence, counted and warned about */
    int64_t bad = 0;
    for (int c = 0; c < o->ch; c++)
        for (int i = 0; i < n; i++)
            if (!isfinite(dst[c][i])) {
                dst[c][i] = 0.0f;
                bad++;
            }
    if (output == 0) { /* the outputs share their source: counted once, on the first */
        if (bad && !d->nonfinite)
            sl_log(SL_LOG_WARN, d->path, "decode",
                   "non-finite samples (NaN or infinity) in the audio, replaced by silence (counted in the report)");
        d->nonfinite += bad;
    }
    o->frames_out += n;
    return n;
}

void sl_decoder_close(sl_decoder *d)
{
    if (!d)
        return;
    if (d->bad && !d->warned)
        sl_log(SL_LOG_WARN, d->path, "decode", "skipped %ld corrupt packet%s of %ld", d->bad,
               d->bad == 1 ? "" : "s", d->packets);
    sl_dec_log_forget(d->path);
    /* a PCM WAV's decoder has no FFmpeg demuxer or codec (libavcodec may not be loaded) */
    sl_wav_reader_free(d->wav);
    sl_ff.av_channel_layout_uninit(&d->wav_layout);
    if (d->cc)
        sl_ff.avcodec_free_context(&d->cc);
    if (d->fmt)
        sl_ff.avformat_close_input(&d->fmt);
    for (int i = 0; i < d->n_out; i++) {
        dec_out *o = &d->out[i];
        sl_ff.swr_free(&o->swr);
        if (o->fifo)
            sl_ff.av_audio_fifo_free(o->fifo);
        sl_ff.av_channel_layout_uninit(&o->layout);
        free(o->scratch);
        free(o->planes);
    }
    if (d->pkt)
        sl_ff.av_packet_free(&d->pkt);
    sl_ff.av_frame_free(&d->frame);
    sl_ff.av_channel_layout_uninit(&d->in_key_layout);
    free(d->path);
    free(d);
}
