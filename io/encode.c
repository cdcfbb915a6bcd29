/* Stem writer. Samples flow: planar float -> (swr, only when the rate
 * changes) -> planar float FIFO -> our own clip + quantise into the codec's
 * interleaved format -> libavcodec -> libavformat into "<path>.tmp-<pid>-<n>",
 * which is fsynced and renamed into place by sl_encoder_finish; a failed fsync
 * (of the file or of its folder) fails the finish and leaves nothing in place. */
#include "io/encode.h"

#include "common/sl_error.h"
#include "common/sl_log.h"
#include "io/decode.h"
#include "io/npy.h"

#include "io/ff_dl.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { Q_S16, Q_S24, Q_F32, Q_FLTP };

/* Lossy formats: muxer, encoder, file extension and bit rates (kbit/s). */
typedef struct {
    const char *name, *muxer, *encoder, *ext;
    int def_kbps, min_kbps, max_kbps;
} lossy_fmt;

static const lossy_fmt lossy_fmts[] = {
    {"opus", "opus", "libopus", "opus", 128, 6, 510},
    {"mp3", "mp3", "libmp3lame", "mp3", 192, 32, 320},
    {"aac", "ipod", "aac", "m4a", 192, 32, 512},
    {"ogg", "ogg", "libvorbis", "ogg", 160, 64, 500},
};

static const lossy_fmt *lossy_of(const char *format)
{
    for (size_t i = 0; format && i < sizeof lossy_fmts / sizeof *lossy_fmts; i++)
        if (!strcmp(format, lossy_fmts[i].name))
            return &lossy_fmts[i];
    return NULL;
}

int sl_encode_lossy(const char *format, int *def_kbps, int *min_kbps, int *max_kbps)
{
    const lossy_fmt *l = lossy_of(format);
    if (!l)
        return 0;
    if (def_kbps)
        *def_kbps = l->def_kbps;
    if (min_kbps)
        *min_kbps = l->min_kbps;
    if (max_kbps)
        *max_kbps = l->max_kbps;
    return 1;
}

const char *sl_encode_ext(const char *format)
{
    const lossy_fmt *l = lossy_of(format);
    if (l)
        return l->ext;
    if (format && (!strcmp(format, "wav") || !strcmp(format, "flac")))
        return format;
    return NULL;
}

/* The rate the codec takes closest to want: want itself, else the smallest
 * supported rate above it, else the largest. */
static int codec_rate(const AVCodec *codec, int want)
{
    const int *r = codec->supported_samplerates;
    if (!r)
        return want;
    int above = 0, top = 0;
    for (; *r; r++) {
        if (*r == want)
            return want;
        if (*r > want && (!above || *r < above))
            above = *r;
        if (*r > top)
            top = *r;
    }
    return above ? above : top;
}

static int codec_takes(const AVCodec *codec, enum AVSampleFormat f)
{
    for (const enum AVSampleFormat *p = codec->sample_fmts; p && *p != AV_SAMPLE_FMT_NONE; p++)
        if (*p == f)
            return 1;
    return 0;
}

/* Frames handed to the resampler / FIFO per step, so one huge write does not
 * double the caller's memory, and an encoder's buffers stay small (many are
 * open at once: one per stem of every track in flight). */
#define SL_ENC_CHUNK 4096
/* Largest frame of the encoders used (FLAC: 4608; PCM: 4096). */
#define SL_ENC_MAX_FRAME 8192

double sl_encoder_memory_mb(int channels)
{
    /* the FIFO and the scratch planes each hold at most one resampled chunk
     * (output rate up to 4x the input's) and two frames; the codec, muxer
     * and I/O contexts (a 32 KiB I/O buffer, FLAC's analysis buffers) fit in
     * 256 KiB */
    double frames = 4.0 * SL_ENC_CHUNK + 2.0 * SL_ENC_MAX_FRAME;
    return (2.0 * frames * channels * sizeof(float) + 256.0 * 1024.0) / 1048576.0;
}

struct sl_encoder {
    char *path, *tmp;
    AVFormatContext *oc;
    AVCodecContext *cc;
    AVStream *st;
    SwrContext *swr;
    AVAudioFifo *fifo;
    AVFrame *frame;
    AVPacket *pkt;
    int ch, in_rate, out_rate, q;
    int frame_size;
    int pad_last;   /* the codec takes no short last frame: pad it with silence */
    int closed;     /* sl_encoder_close done: the temporary file is complete */
    int64_t n_in;   /* frames given to write */
    int64_t n_sent; /* frames given to the encoder */
    int64_t pts;
    float *scratch;
    float **scratch_planes;
    int scratch_cap;
    int header_written;
    int err;
};

static atomic_uint tmp_counter;

/* mkdir -p for the folder that will hold path. */
static int make_parents(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) {
        free(dir);
        return 0;
    }
    *slash = 0;
    for (char *p = dir + 1;; p++) {
        int last = *p == 0;
        if (*p == '/' || last) {
            char save = *p;
            *p = 0;
            if (mkdir(dir, 0777) != 0) {
                int e = errno;
                struct stat sb;
                if (e != EEXIST || stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
                    if (e == EEXIST)
                        e = ENOTDIR;
                    int r = sl_seterr(AVERROR(e), "%s: cannot create folder %s: %s", path, dir, strerror(e));
                    free(dir);
                    return r;
                }
            }
            *p = save;
            if (last)
                break;
        }
    }
    free(dir);
    return 0;
}

/* fsync of the finished temporary file: 0 or an error naming it. */
static int sync_tmp(sl_encoder *e)
{
    int fd = open(e->tmp, O_RDONLY | O_CLOEXEC);
    int rc = fd < 0 ? -errno : sl_io_fsync(fd, e->tmp, 0);
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        return sl_seterr(rc, "%s: fsync of %s failed (%s)", e->path, e->tmp, strerror(-rc));
    return 0;
}

static int ensure_scratch(sl_encoder *e, int frames)
{
    if (frames <= e->scratch_cap)
        return 0;
    int cap = frames + 1024;
    float *s = realloc(e->scratch, (size_t)cap * (size_t)e->ch * sizeof(float));
    if (!s)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", e->path);
    e->scratch = s;
    for (int c = 0; c < e->ch; c++)
        e->scratch_planes[c] = s + (size_t)c * (size_t)cap;
    e->scratch_cap = cap;
    return 0;
}

static int write_packets(sl_encoder *e)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    for (;;) {
        int r = sl_ff.avcodec_receive_packet(e->cc, e->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF)
            return 0;
        if (r < 0)
            return sl_seterr(SL_ENCODE, "%s: encoder error (%s)", e->path, sl_ff_strerror(r, eb, sizeof eb));
        sl_ff.av_packet_rescale_ts(e->pkt, e->cc->time_base, e->st->time_base);
        e->pkt->stream_index = e->st->index;
        /* test-only fault injection (SL_FAULT_ENOSPC_AFTER): a full disk */
        if (sl_io_fault_allow((size_t)e->pkt->size) < (size_t)e->pkt->size) {
            sl_ff.av_packet_unref(e->pkt);
            return sl_seterr(-sl_io_fault_errno(), "%s: write failed (%s)", e->tmp, strerror(sl_io_fault_errno()));
        }
        r = sl_ff.av_interleaved_write_frame(e->oc, e->pkt);
        sl_ff.av_packet_unref(e->pkt);
        if (r < 0)
            return sl_seterr(r, "%s: write failed (%s)", e->tmp, sl_ff_strerror(r, eb, sizeof eb));
    }
}

/* One sample to 16 bits: clipped to [-1, 1] (NaN to 0), times 32768, rounded to
 * the nearest integer, ties to even, at most 32767: lrintf's result in the
 * default rounding mode without the library call. y + 1.5 * 2^23 lies where
 * floats are the integers (|y| <= 2^15), so that sum is rounded as the
 * integer would be (1.5 * 2^23 is even: ties go to the even y); taking it
 * away again is exact. The same for 24 bits in double (1.5 * 2^52). */
static inline int16_t q16(float x)
{
    x = x == x ? x : 0.0f;
    x = x > 1.0f ? 1.0f : x < -1.0f ? -1.0f : x;
    const int v = (int)((x * 32768.0f + 12582912.0f) - 12582912.0f);
    return (int16_t)(v > 32767 ? 32767 : v);
}

static inline int32_t q24(float x)
{
    x = x == x ? x : 0.0f;
    x = x > 1.0f ? 1.0f : x < -1.0f ? -1.0f : x;
    const long v = (long)(((double)x * 8388608.0 + 6755399441055744.0) - 6755399441055744.0);
    /* 24 significant bits, left-justified in 32 as both the pcm_s24le and
     * the flac encoders expect */
    return (int32_t)((uint32_t)(v > 8388607 ? 8388607 : v) << 8);
}

#ifdef __SSE2__
/* q16 of 4 samples, as 32-bit integers (packing with saturation makes 32768 32767). */
static inline __m128i q16x4(const float *src)
{
    __m128 x = _mm_loadu_ps(src);
    x = _mm_and_ps(x, _mm_cmpord_ps(x, x)); /* NaN to 0 */
    x = _mm_min_ps(_mm_max_ps(x, _mm_set1_ps(-1.0f)), _mm_set1_ps(1.0f));
    const __m128 m = _mm_set1_ps(12582912.0f);
    return _mm_cvttps_epi32(_mm_sub_ps(_mm_add_ps(_mm_mul_ps(x, _mm_set1_ps(32768.0f)), m), m));
}
#endif

/* The FIFO's n planar float samples into the frame's interleaved s16, s24
 * (in 32) or f32, or planar float (FLTP) samples. Clips to [-1, 1] before
 * integer conversion, explicitly: a stem that overshoots must saturate, never
 * wrap. Scale is 2^(bits-1), the convention FFmpeg's decoders use on the way
 * back, so a round trip is exact to within half a step. NaN becomes 0. f32
 * keeps values beyond full scale (no clipping needed) but not NaN/Inf. */
static void quantise(const sl_encoder *e, int n, uint8_t **planes)
{
    const int ch = e->ch;
    float *const *src = e->scratch_planes;
    if (e->q == Q_FLTP || e->q == Q_F32) {
        for (int c = 0; c < ch; c++) {
            float *o = e->q == Q_FLTP ? (float *)planes[c] : (float *)planes[0] + c;
            const size_t step = e->q == Q_FLTP ? 1 : (size_t)ch;
            for (int i = 0; i < n; i++)
                o[(size_t)i * step] = isfinite(src[c][i]) ? src[c][i] : 0.0f;
        }
    } else if (e->q == Q_S16) {
        int16_t *o = (int16_t *)planes[0];
        int i = 0;
#ifdef __SSE2__
        if (ch == 2)
            for (; i + 8 <= n; i += 8) {
                const __m128i a = _mm_packs_epi32(q16x4(src[0] + i), q16x4(src[0] + i + 4));
                const __m128i b = _mm_packs_epi32(q16x4(src[1] + i), q16x4(src[1] + i + 4));
                _mm_storeu_si128((__m128i *)(o + (size_t)i * 2), _mm_unpacklo_epi16(a, b));
                _mm_storeu_si128((__m128i *)(o + (size_t)i * 2 + 8), _mm_unpackhi_epi16(a, b));
            }
        else if (ch == 1)
            for (; i + 8 <= n; i += 8)
                _mm_storeu_si128((__m128i *)(o + i), _mm_packs_epi32(q16x4(src[0] + i), q16x4(src[0] + i + 4)));
#endif
        for (; i < n; i++)
            for (int c = 0; c < ch; c++)
                o[(size_t)i * ch + c] = q16(src[c][i]);
    } else {
        int32_t *o = (int32_t *)planes[0];
        for (int i = 0; i < n; i++)
            for (int c = 0; c < ch; c++)
                o[(size_t)i * ch + c] = q24(src[c][i]);
    }
}

static int encode_frames(sl_encoder *e, int final)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    for (;;) {
        int avail = sl_ff.av_audio_fifo_size(e->fifo);
        int n = avail < e->frame_size ? avail : e->frame_size;
        if (n == 0 || (n < e->frame_size && !final))
            return 0;
        int r = ensure_scratch(e, e->frame_size > n ? e->frame_size : n);
        if (r < 0)
            return r;
        if (sl_ff.av_audio_fifo_read(e->fifo, (void **)e->scratch_planes, n) < n)
            return sl_seterr(SL_ENCODE, "%s: internal buffer error", e->path);
        r = sl_ff.av_frame_make_writable(e->frame);
        if (r < 0)
            return sl_seterr(SL_ENOMEM, "%s: out of memory", e->path);
        if (n < e->frame_size && e->pad_last) {
            for (int c = 0; c < e->ch; c++)
                memset(e->scratch_planes[c] + n, 0, (size_t)(e->frame_size - n) * sizeof(float));
            n = e->frame_size;
        }
        e->frame->nb_samples = n;
        quantise(e, n, e->frame->extended_data);
        e->frame->pts = e->pts;
        e->pts += n;
        e->n_sent += n;
        r = sl_ff.avcodec_send_frame(e->cc, e->frame);
        if (r < 0)
            return sl_seterr(SL_ENCODE, "%s: encoder rejected a frame (%s)", e->path, sl_ff_strerror(r, eb, sizeof eb));
        r = write_packets(e);
        if (r < 0)
            return r;
    }
}

static int push_resampled(sl_encoder *e, const uint8_t **in, int n)
{
    int cap = sl_ff.swr_get_out_samples(e->swr, n);
    if (cap < 0)
        return sl_seterr(SL_ENCODE, "%s: resampler error", e->path);
    if (cap == 0)
        return 0;
    int r = ensure_scratch(e, cap);
    if (r < 0)
        return r;
    int got = sl_ff.swr_convert(e->swr, (uint8_t **)e->scratch_planes, cap, in, n);
    if (got < 0) {
        char eb[AV_ERROR_MAX_STRING_SIZE];
        return sl_seterr(SL_ENCODE, "%s: resampling failed (%s)", e->path, sl_ff_strerror(got, eb, sizeof eb));
    }
    if (got > 0 && sl_ff.av_audio_fifo_write(e->fifo, (void **)e->scratch_planes, got) < got)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", e->path);
    return 0;
}

static void destroy(sl_encoder *e, int remove_tmp)
{
    if (!e)
        return;
    sl_ff.avcodec_free_context(&e->cc);
    if (e->oc) {
        if (e->oc->pb)
            sl_ff.avio_closep(&e->oc->pb);
        sl_ff.avformat_free_context(e->oc);
    }
    if (remove_tmp && e->tmp)
        unlink(e->tmp);
    sl_ff.swr_free(&e->swr);
    if (e->fifo)
        sl_ff.av_audio_fifo_free(e->fifo);
    sl_ff.av_frame_free(&e->frame);
    sl_ff.av_packet_free(&e->pkt);
    free(e->scratch);
    free(e->scratch_planes);
    free(e->path);
    free(e->tmp);
    free(e);
}

int sl_encoder_open(sl_encoder **out, const char *path, const sl_encode_params *p)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    if (!out || !path || !*path || !p)
        return sl_seterr(SL_EINVAL, "sl_encoder_open: no path or parameters");
    *out = NULL;
    const char *fmt = p->format ? p->format : "wav";
    const char *sf = p->sample_format ? p->sample_format : "s16";
    int flac = 0;
    const lossy_fmt *lossy = lossy_of(fmt);
    if (!strcmp(fmt, "flac"))
        flac = 1;
    else if (strcmp(fmt, "wav") && !lossy)
        return sl_seterr(SL_EINVAL, "%s: unknown stem format '%s' (use wav, flac, opus, mp3, aac or ogg)", path,
                         fmt);
    int q;
    if (!strcmp(sf, "s16"))
        q = Q_S16;
    else if (!strcmp(sf, "s24"))
        q = Q_S24;
    else if (!strcmp(sf, "f32"))
        q = Q_F32;
    else
        return sl_seterr(SL_EINVAL, "%s: unknown sample format '%s' (use s16, s24 or f32)", path, sf);
    if (lossy) {
        int kb = p->bitrate_kbps ? p->bitrate_kbps : lossy->def_kbps;
        if (kb < lossy->min_kbps || kb > lossy->max_kbps)
            return sl_seterr(SL_EINVAL, "%s: %d kbit/s is outside %s's %d..%d", path, kb, fmt, lossy->min_kbps,
                             lossy->max_kbps);
        q = Q_FLTP; /* refined below from what the encoder takes */
    }
    if (flac && q == Q_F32)
        return sl_seterr(SL_EINVAL, "%s: FLAC cannot store 32-bit float samples; use sample_format s16 or s24, "
                                    "or format wav for f32", path);
    if (p->channels < 1 || p->channels > (flac ? 8 : 64))
        return sl_seterr(SL_EINVAL, "%s: %d channels not supported by %s (1..%d)", path, p->channels, fmt,
                         flac ? 8 : 64);
    if (p->in_rate < 1 || p->out_rate < 1 || p->in_rate > 1000000 || p->out_rate > (flac ? 655350 : 1000000))
        return sl_seterr(SL_EINVAL, "%s: invalid sample rates (in %d Hz, out %d Hz)", path, p->in_rate,
                         p->out_rate);

    int r = sl_ff_load(path);
    if (r < 0)
        return r;
    r = make_parents(path);
    if (r < 0)
        return r;

    sl_encoder *e = calloc(1, sizeof *e);
    if (!e)
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    e->ch = p->channels;
    e->in_rate = p->in_rate;
    e->out_rate = p->out_rate;
    e->q = q;
    e->path = strdup(path);
    size_t tlen = strlen(path) + 48;
    e->tmp = malloc(tlen);
    e->frame = sl_ff.av_frame_alloc();
    e->pkt = sl_ff.av_packet_alloc();
    e->scratch_planes = calloc((size_t)e->ch, sizeof *e->scratch_planes);
    if (!e->path || !e->tmp || !e->frame || !e->pkt || !e->scratch_planes) {
        destroy(e, 0);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    snprintf(e->tmp, tlen, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1));

    r = sl_ff.avformat_alloc_output_context2(&e->oc, NULL, lossy ? lossy->muxer : fmt, e->tmp);
    if (r < 0 || !e->oc) {
        destroy(e, 0);
        return sl_seterr(SL_ENCODE, "%s: no %s muxer (%s)", path, fmt, sl_ff_strerror(r, eb, sizeof eb));
    }
    /* No encoder version strings: the same samples give the same bytes
     * whatever FFmpeg build wrote them. */
    e->oc->flags |= AVFMT_FLAG_BITEXACT;

    enum AVCodecID id = flac ? AV_CODEC_ID_FLAC
                        : q == Q_S16 ? AV_CODEC_ID_PCM_S16LE
                        : q == Q_S24 ? AV_CODEC_ID_PCM_S24LE
                                     : AV_CODEC_ID_PCM_F32LE;
    const AVCodec *codec = lossy ? sl_ff.avcodec_find_encoder_by_name(lossy->encoder) : sl_ff.avcodec_find_encoder(id);
    if (!codec) {
        destroy(e, 0);
        return sl_seterr(SL_ENCODE, "%s: this FFmpeg has no %s encoder", path,
                         lossy ? lossy->encoder : sl_ff.avcodec_get_name(id));
    }
    if (lossy) {
        if (codec_takes(codec, AV_SAMPLE_FMT_FLTP))
            e->q = q = Q_FLTP;
        else if (codec_takes(codec, AV_SAMPLE_FMT_FLT))
            e->q = q = Q_F32;
        else
            e->q = q = Q_S16;
        e->out_rate = codec_rate(codec, e->out_rate);
        e->pad_last = !(codec->capabilities & AV_CODEC_CAP_SMALL_LAST_FRAME);
    }
    e->st = sl_ff.avformat_new_stream(e->oc, NULL);
    e->cc = sl_ff.avcodec_alloc_context3(codec);
    if (!e->st || !e->cc) {
        destroy(e, 0);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    e->cc->sample_fmt = q == Q_S16    ? AV_SAMPLE_FMT_S16
                        : q == Q_S24  ? AV_SAMPLE_FMT_S32
                        : q == Q_FLTP ? AV_SAMPLE_FMT_FLTP
                                      : AV_SAMPLE_FMT_FLT;
    if (lossy)
        e->cc->bit_rate = 1000LL * (p->bitrate_kbps ? p->bitrate_kbps : lossy->def_kbps);
    if (q == Q_S24)
        e->cc->bits_per_raw_sample = 24;
    e->cc->sample_rate = e->out_rate;
    sl_ff.av_channel_layout_default(&e->cc->ch_layout, e->ch);
    e->cc->time_base = (AVRational){1, e->out_rate};
    e->cc->flags |= AV_CODEC_FLAG_BITEXACT;
    e->cc->thread_count = 1;
    if (e->oc->oformat->flags & AVFMT_GLOBALHEADER)
        e->cc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    r = sl_ff.avcodec_open2(e->cc, codec, NULL);
    if (r < 0) {
        destroy(e, 0);
        return sl_seterr(SL_ENCODE, "%s: cannot open the %s encoder (%s)", path, codec->name,
                         sl_ff_strerror(r, eb, sizeof eb));
    }
    e->st->time_base = e->cc->time_base;
    r = sl_ff.avcodec_parameters_from_context(e->st->codecpar, e->cc);
    if (r < 0) {
        destroy(e, 0);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    e->frame_size = e->cc->frame_size > 0 && !(codec->capabilities & AV_CODEC_CAP_VARIABLE_FRAME_SIZE)
                        ? e->cc->frame_size
                        : 4096;
    e->frame->format = e->cc->sample_fmt;
    e->frame->sample_rate = e->out_rate;
    e->frame->nb_samples = e->frame_size;
    if (sl_ff.av_channel_layout_copy(&e->frame->ch_layout, &e->cc->ch_layout) < 0 ||
        sl_ff.av_frame_get_buffer(e->frame, 0) < 0) {
        destroy(e, 0);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    e->fifo = sl_ff.av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, e->ch, e->frame_size * 2);
    if (!e->fifo) {
        destroy(e, 0);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    if (e->in_rate != e->out_rate) {
        r = sl_ff.swr_alloc_set_opts2(&e->swr, &e->cc->ch_layout, AV_SAMPLE_FMT_FLTP, e->out_rate, &e->cc->ch_layout,
                                AV_SAMPLE_FMT_FLTP, e->in_rate, 0, NULL);
        if (r >= 0)
            r = sl_ff.swr_init(e->swr);
        if (r < 0) {
            destroy(e, 0);
            return sl_seterr(SL_ENCODE, "%s: cannot resample %d -> %d Hz (%s)", path, e->in_rate, e->out_rate,
                             sl_ff_strerror(r, eb, sizeof eb));
        }
    }

    size_t ulen = strlen(e->tmp) + 6;
    char *url = malloc(ulen);
    if (!url) {
        destroy(e, 0);
        return sl_seterr(SL_ENOMEM, "%s: out of memory", path);
    }
    snprintf(url, ulen, "file:%s", e->tmp);
    r = sl_ff.avio_open(&e->oc->pb, url, AVIO_FLAG_WRITE);
    free(url);
    if (r < 0) {
        destroy(e, 0);
        return sl_seterr(r, "%s: cannot create %s (%s)", path, e->tmp, sl_ff_strerror(r, eb, sizeof eb));
    }
    r = sl_ff.avformat_write_header(e->oc, NULL);
    if (r < 0) {
        destroy(e, 1);
        return sl_seterr(r > -4096 ? r : SL_ENCODE, "%s: cannot write the %s header (%s)", path, fmt,
                         sl_ff_strerror(r, eb, sizeof eb));
    }
    e->header_written = 1;
    *out = e;
    return 0;
}

int sl_encoder_write(sl_encoder *e, const float *const *planes, size_t n_frames)
{
    if (!e || (!planes && n_frames))
        return sl_seterr(SL_EINVAL, "sl_encoder_write: invalid arguments");
    if (e->closed)
        return sl_seterr(SL_EINVAL, "%s: sl_encoder_write after sl_encoder_close", e->path);
    if (e->err)
        return e->err;
    const float *cur[64];
    size_t done = 0;
    while (done < n_frames) {
        int n = n_frames - done > SL_ENC_CHUNK ? SL_ENC_CHUNK : (int)(n_frames - done);
        for (int c = 0; c < e->ch; c++)
            cur[c] = planes[c] + done;
        int r;
        if (e->swr)
            r = push_resampled(e, (const uint8_t **)cur, n);
        else
            r = sl_ff.av_audio_fifo_write(e->fifo, (void **)cur, n) < n
                    ? sl_seterr(SL_ENOMEM, "%s: out of memory", e->path)
                    : 0;
        if (r == 0)
            r = encode_frames(e, 0);
        if (r < 0)
            return e->err = r;
        done += (size_t)n;
        e->n_in += n;
    }
    return 0;
}

static int finish(sl_encoder *e)
{
    char eb[AV_ERROR_MAX_STRING_SIZE];
    int r;
    if (e->swr) {
        /* Drain the filter delay, then trim or pad to exactly
         * round(n_in * out_rate / in_rate) frames. */
        for (;;) {
            int before = sl_ff.av_audio_fifo_size(e->fifo);
            r = push_resampled(e, NULL, 0);
            if (r < 0)
                return r;
            if (sl_ff.av_audio_fifo_size(e->fifo) == before)
                break;
        }
        int64_t target = sl_ff.av_rescale_rnd(e->n_in, e->out_rate, e->in_rate, AV_ROUND_NEAR_INF);
        int64_t have = e->n_sent + sl_ff.av_audio_fifo_size(e->fifo);
        if (have > target) {
            int keep = (int)(target - e->n_sent > 0 ? target - e->n_sent : 0);
            int drop = sl_ff.av_audio_fifo_size(e->fifo) - keep;
            /* The FIFO only drains from the front: move the kept part out and back. */
            r = ensure_scratch(e, keep > 0 ? keep : 1);
            if (r < 0)
                return r;
            if (keep > 0 && sl_ff.av_audio_fifo_read(e->fifo, (void **)e->scratch_planes, keep) < keep)
                return sl_seterr(SL_ENCODE, "%s: internal buffer error", e->path);
            sl_ff.av_audio_fifo_drain(e->fifo, drop);
            if (keep > 0 && sl_ff.av_audio_fifo_write(e->fifo, (void **)e->scratch_planes, keep) < keep)
                return sl_seterr(SL_ENOMEM, "%s: out of memory", e->path);
        } else if (have < target) {
            int pad = (int)(target - have);
            r = ensure_scratch(e, pad);
            if (r < 0)
                return r;
            for (int c = 0; c < e->ch; c++)
                memset(e->scratch_planes[c], 0, (size_t)pad * sizeof(float));
            if (sl_ff.av_audio_fifo_write(e->fifo, (void **)e->scratch_planes, pad) < pad)
                return sl_seterr(SL_ENOMEM, "%s: out of memory", e->path);
        }
    }
    r = encode_frames(e, 1);
    if (r < 0)
        return r;
    r = sl_ff.avcodec_send_frame(e->cc, NULL);
    if (r < 0 && r != AVERROR_EOF)
        return sl_seterr(SL_ENCODE, "%s: encoder flush failed (%s)", e->path, sl_ff_strerror(r, eb, sizeof eb));
    r = write_packets(e);
    if (r < 0)
        return r;
    r = sl_ff.av_write_trailer(e->oc);
    if (r < 0)
        return sl_seterr(r, "%s: cannot finish %s (%s)", e->path, e->tmp, sl_ff_strerror(r, eb, sizeof eb));
    r = sl_ff.avio_closep(&e->oc->pb);
    if (r < 0)
        return sl_seterr(r, "%s: cannot close %s (%s)", e->path, e->tmp, sl_ff_strerror(r, eb, sizeof eb));
    return 0;
}

/* The closed temporary file synced and renamed into place, its folder synced. */
static int commit(sl_encoder *e)
{
    int r;
    /* A file whose fsync failed may lose its data in a power cut: it is not
     * renamed into place, and the caller learns that it was not written. */
    r = sync_tmp(e);
    if (r < 0)
        return r;
    if (rename(e->tmp, e->path) != 0) {
        int en = errno;
        return sl_seterr(AVERROR(en), "%s: cannot rename %s into place (%s)", e->path, e->tmp, strerror(en));
    }
    /* The rename is durable only once the folder itself is synced. */
    r = sl_fsync_dir_of(e->path);
    if (r < 0) {
        unlink(e->path);
        return sl_seterr(r, "%s: fsync of its folder failed (%s)", e->path, strerror(-r));
    }
    return 0;
}

int sl_encoder_finish(sl_encoder *e)
{
    int r = sl_encoder_close(e);
    return r < 0 ? r : sl_encoder_commit(e);
}

int sl_encoder_close(sl_encoder *e)
{
    if (!e)
        return sl_seterr(SL_EINVAL, "sl_encoder_close: no encoder");
    if (e->closed)
        return 0;
    int r = e->err ? e->err : finish(e);
    if (r < 0) {
        destroy(e, 1);
        return r;
    }
    /* what the file no longer needs goes now (the FLAC encoder's context is
     * about 7 MB); commit needs the paths only */
    sl_ff.avcodec_free_context(&e->cc);
    e->closed = 1;
    return 0;
}

int sl_encoder_commit(sl_encoder *e)
{
    if (!e || !e->closed)
        return sl_seterr(SL_EINVAL, "sl_encoder_commit: no closed encoder");
    int r = commit(e);
    destroy(e, r < 0);
    return r;
}

void sl_encoder_abort(sl_encoder *e) { destroy(e, 1); }

int sl_encode_file(const char *path, const sl_encode_params *p, const float *const *planes, size_t n_frames)
{
    sl_encoder *e;
    int r = sl_encoder_open(&e, path, p);
    if (r < 0)
        return r;
    r = sl_encoder_write(e, planes, n_frames);
    if (r < 0) {
        sl_encoder_abort(e);
        return r;
    }
    return sl_encoder_finish(e);
}
