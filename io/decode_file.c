/* sl_decode_file: a whole file into memory, through the streaming decoder. */
#include "io/decode.h"

#include "common/sl_error.h"

#include <stdlib.h>

int sl_decode_file(const char *path, int out_rate, int out_channels, float ***planes, size_t *n_frames,
                   sl_audio_info *info)
{
    if (!planes || !n_frames)
        return sl_seterr(SL_EINVAL, "sl_decode_file: no output");
    *planes = NULL;
    *n_frames = 0;
    sl_decoder *d;
    int r = sl_decoder_open(&d, path, out_rate, out_channels);
    if (r < 0)
        return r;
    if (info)
        *info = *sl_decoder_info(d);
    int ch = sl_decoder_out_channels(d);
    size_t cap = 65536;
    const sl_audio_info *in = sl_decoder_info(d);
    if (in->duration > 0)
        cap = (size_t)(in->duration * sl_decoder_out_rate(d)) + 8192;
    float **p = calloc((size_t)ch, sizeof *p);
    float **dst = calloc((size_t)ch, sizeof *dst);
    size_t n = 0;
    r = p && dst ? 0 : SL_ENOMEM;
    for (int c = 0; c < ch && r == 0; c++)
        if (!(p[c] = malloc(cap * sizeof(float))))
            r = SL_ENOMEM;
    while (r == 0) {
        if (cap - n < 4096) {
            size_t ncap = cap * 2;
            for (int c = 0; c < ch && r == 0; c++) {
                float *q = realloc(p[c], ncap * sizeof(float));
                if (!q)
                    r = SL_ENOMEM;
                else
                    p[c] = q;
            }
            if (r)
                break;
            cap = ncap;
        }
        for (int c = 0; c < ch; c++)
            dst[c] = p[c] + n;
        size_t want = cap - n > (1u << 20) ? (1u << 20) : cap - n;
        long got = sl_decoder_read(d, dst, (long)want);
        if (got < 0) {
            r = (int)got;
            break;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (r == SL_ENOMEM)
        sl_seterr(r, "%s: out of memory", path);
    sl_decoder_close(d);
    free(dst);
    if (r < 0) {
        for (int c = 0; p && c < ch; c++)
            free(p[c]);
        free(p);
        return r;
    }
    *planes = p;
    *n_frames = n;
    return 0;
}
