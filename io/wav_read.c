/* The PCM WAV reader: see io/wav_read.h. */
#include "io/wav_read.h"

#include <errno.h>
#include <libavutil/samplefmt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* FFmpeg's WAV demuxer: bytes per packet before rounding to whole frames. */
#define WAV_PACKET_BYTES 4096
/* What FFmpeg's probe of 16-bit PCM data looks at: 32 packets. */
#define WAV_SCAN_BYTES (32 * WAV_PACKET_BYTES)

static uint32_t rl32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static unsigned rl16(const uint8_t *p) { return p[0] | (unsigned)p[1] << 8; }

static int read_at(int fd, int64_t off, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(off + (int64_t)got));
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return 0;
}

/* The 16-bit sync patterns of compressed audio carried as PCM that FFmpeg's
 * probe finds (IEC 61937 burst preamble Pa Pb in either byte order; DTS in
 * its 16-bit and 14-bit forms, either byte order), at 2-byte alignment. */
static int looks_compressed(const uint8_t *b, size_t n)
{
    static const uint8_t pat[][4] = {
        {0x72, 0xF8, 0x1F, 0x4E}, {0xF8, 0x72, 0x4E, 0x1F}, /* IEC 61937 */
        {0x7F, 0xFE, 0x80, 0x01}, {0xFE, 0x7F, 0x01, 0x80}, /* DTS, 16-bit words */
        {0x1F, 0xFF, 0xE8, 0x00}, {0xFF, 0x1F, 0x00, 0xE8}, /* DTS, 14-bit words */
    };
    for (size_t i = 0; i + 4 <= n; i += 2)
        for (size_t k = 0; k < sizeof pat / sizeof *pat; k++)
            if (b[i] == pat[k][0] && !memcmp(b + i, pat[k], 4))
                return 1;
    return 0;
}

/* The sample format and decoder name FFmpeg gives this format / width. */
static int pick_format(sl_wav_fmt *w)
{
    if (w->is_float) {
        if (w->bits == 32) {
            w->av_fmt = AV_SAMPLE_FMT_FLT;
            w->codec = "pcm_f32le";
        } else if (w->bits == 64) {
            w->av_fmt = AV_SAMPLE_FMT_DBL;
            w->codec = "pcm_f64le";
        } else {
            return 0;
        }
        return 1;
    }
    switch (w->bits) {
    case 8: w->av_fmt = AV_SAMPLE_FMT_U8; w->codec = "pcm_u8"; return 1;
    case 16: w->av_fmt = AV_SAMPLE_FMT_S16; w->codec = "pcm_s16le"; return 1;
    case 24: w->av_fmt = AV_SAMPLE_FMT_S32; w->codec = "pcm_s24le"; return 1;
    case 32: w->av_fmt = AV_SAMPLE_FMT_S32; w->codec = "pcm_s32le"; return 1;
    default: return 0;
    }
}

/* The 'fmt ' chunk's body (n bytes): 1 when it is one this reader takes. */
static int parse_fmt(const uint8_t *f, uint32_t n, sl_wav_fmt *w)
{
    if (n < 16)
        return 0;
    unsigned tag = rl16(f);
    w->channels = (int)rl16(f + 2);
    uint32_t rate = rl32(f + 4);
    uint64_t bitrate = (uint64_t)rl32(f + 8) * 8;
    w->block_align = (int)rl16(f + 12);
    w->bits = (int)rl16(f + 14);
    unsigned cb = n >= 18 ? rl16(f + 16) : 0;
    if (rate == 0 || rate > INT_MAX || w->channels <= 0 || w->channels > 64)
        return 0;
    w->rate = (int)rate;
    w->bit_rate = bitrate > INT_MAX ? 0 : (int64_t)bitrate;
    if (tag == 0xFFFE) {
        /* WAVE_FORMAT_EXTENSIBLE: 22 more bytes (valid bits, channel mask, subformat GUID) */
        /* KSDATAFORMAT_SUBTYPE_*: {tag}-0000-0010-8000-00AA00389B71, the tag's 4 bytes first */
        static const uint8_t base_guid[12] = {0x00, 0x00, 0x10, 0x00, 0x80, 0x00,
                                              0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};
        if (n < 40 || cb != 22)
            return 0;
        uint32_t mask = rl32(f + 20);
        const uint8_t *guid = f + 24;
        if (memcmp(guid + 4, base_guid, 12) != 0)
            return 0;
        tag = (unsigned)rl32(guid);
        if (!((w->channels == 1 && mask == 0x4) || (w->channels == 2 && mask == 0x3)))
            return 0;
        w->extensible = 1;
    } else if (cb != 0) {
        return 0; /* extra format bytes: FFmpeg reads them as codec data (and some change the codec) */
    }
    if (tag != 1 && tag != 3)
        return 0;
    w->is_float = tag == 3;
    if (w->bits % 8 || w->block_align != w->channels * (w->bits / 8))
        return 0;
    return pick_format(w);
}

int sl_wav_probe(int fd, int64_t file_size, sl_wav_fmt *w)
{
    memset(w, 0, sizeof *w);
    uint8_t h[12];
    if (file_size < 44 || read_at(fd, 0, h, 12) || memcmp(h, "RIFF", 4) || memcmp(h + 8, "WAVE", 4))
        return 0;
    int got_fmt = 0, got_data = 0;
    int64_t off = 12;
    /* every chunk to the end of the file, as FFmpeg's header parser walks them
     * when it can seek: a second 'data' chunk (which FFmpeg would read on),
     * 'SMV0' video and the like are left to it */
    while (off + 8 <= file_size) {
        uint8_t c[8];
        if (read_at(fd, off, c, 8))
            return 0;
        uint32_t size = rl32(c + 4);
        int64_t body = off + 8;
        if (!memcmp(c, "fmt ", 4)) {
            if (got_fmt || got_data || size > 256)
                return 0;
            uint8_t f[256];
            if (body + size > file_size || read_at(fd, body, f, size) || !parse_fmt(f, size, w))
                return 0;
            got_fmt = 1;
        } else if (!memcmp(c, "data", 4)) {
            /* data ending inside a sample frame: FFmpeg's parser splits the last
             * packet and pads the piece it rejects with silence; left to it */
            if (!got_fmt || got_data || size == 0 || size == 0xFFFFFFFFu || body + (int64_t)size > file_size ||
                size % (uint32_t)w->block_align)
                return 0;
            w->data_off = body;
            w->data_size = size;
            got_data = 1;
        } else if (!memcmp(c, "SMV0", 4) || !memcmp(c, "XMA2", 4)) {
            return 0;
        }
        off = body + (int64_t)size + (size & 1); /* chunks start at even offsets */
    }
    if (!got_data)
        return 0;
    if (w->bits == 16 && !w->is_float) {
        if (w->channels == 1 && w->rate == 8000)
            return 0;
        size_t n = w->data_size < WAV_SCAN_BYTES ? (size_t)w->data_size : WAV_SCAN_BYTES;
        uint8_t *b = malloc(n);
        if (!b)
            return 0;
        int bad = read_at(fd, w->data_off, b, n) || looks_compressed(b, n);
        free(b);
        if (bad)
            return 0;
    }
    return 1;
}

struct sl_wav_reader {
    int fd;
    sl_wav_fmt f;
    int64_t pos, end; /* file offsets: the next byte, the end of the data */
    int packet;       /* bytes per full packet */
    uint8_t *raw, *out;
    size_t raw_len, raw_pos; /* buffered file bytes */
};

#define WAV_RAW_BYTES (16 * WAV_PACKET_BYTES)

sl_wav_reader *sl_wav_reader_new(int fd, const sl_wav_fmt *w)
{
    sl_wav_reader *r = calloc(1, sizeof *r);
    if (r) {
        r->fd = fd;
        r->f = *w;
        r->pos = w->data_off;
        r->end = w->data_off + w->data_size;
        int ba = w->block_align;
        r->packet = WAV_PACKET_BYTES < ba ? ba : WAV_PACKET_BYTES / ba * ba;
        r->raw = malloc(WAV_RAW_BYTES + (size_t)r->packet);
        /* one packet; 24-bit samples become 32-bit ones */
        r->out = aligned_alloc(64, ((size_t)r->packet * 4 / 3 + 64) / 64 * 64);
    }
    if (!r || !r->raw || !r->out) {
        sl_wav_reader_free(r);
        if (!r)
            close(fd);
        return NULL;
    }
    return r;
}

void sl_wav_reader_free(sl_wav_reader *r)
{
    if (!r)
        return;
    close(r->fd);
    free(r->raw);
    free(r->out);
    free(r);
}

/* At least want bytes buffered (fewer only at the end of the file): 0 or -errno. */
static int fill(sl_wav_reader *r, size_t want)
{
    if (r->raw_len - r->raw_pos >= want)
        return 0;
    memmove(r->raw, r->raw + r->raw_pos, r->raw_len - r->raw_pos);
    r->raw_len -= r->raw_pos;
    r->raw_pos = 0;
    while (r->raw_len < want) {
        int64_t left = r->end - r->pos;
        size_t room = WAV_RAW_BYTES + (size_t)r->packet - r->raw_len;
        size_t n = left < (int64_t)room ? (size_t)left : room;
        if (n == 0)
            return 0;
        ssize_t k = pread(r->fd, r->raw + r->raw_len, n, (off_t)r->pos);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return -errno;
        if (k == 0)
            return 0; /* the file shrank since it was opened */
        r->raw_len += (size_t)k;
        r->pos += k;
    }
    return 0;
}

int sl_wav_next(sl_wav_reader *r, const uint8_t **data, int *frames)
{
    int rc = fill(r, (size_t)r->packet);
    if (rc < 0)
        return rc;
    size_t n = r->raw_len - r->raw_pos;
    if (n > (size_t)r->packet)
        n = (size_t)r->packet;
    if (n == 0)
        return 0;
    const uint8_t *src = r->raw + r->raw_pos;
    r->raw_pos += n;
    *frames = (int)(n / (size_t)r->f.block_align); /* whole frames: sl_wav_probe checked the data size */
    const size_t samples = (size_t)*frames * (size_t)r->f.channels;
    if (r->f.bits == 24) {
        int32_t *o = (int32_t *)r->out;
        for (size_t i = 0; i < samples; i++, src += 3)
            o[i] = (int32_t)((uint32_t)src[0] << 8 | (uint32_t)src[1] << 16 | (uint32_t)src[2] << 24);
    } else {
        memcpy(r->out, src, samples * (size_t)(r->f.bits / 8));
    }
    *data = r->out;
    return 1;
}

int sl_wav_native_enabled(void)
{
    const char *e = getenv("STEMLINE_NATIVE_WAV");
    return !(e && !strcmp(e, "0"));
}
