#include "sl_error.h"

#include <libavutil/error.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* FFmpeg's av_strerror, set by io/ once it has loaded FFmpeg (io/ff_dl.h):
 * AVERROR codes only come from FFmpeg, so they meet a set pointer. Programs
 * that never load FFmpeg (the op layer's tools and tests) print such a code as
 * "error N". */
static int (*_Atomic av_strerror_fn)(int errnum, char *errbuf, size_t errbuf_size);

void sl_error_set_av_strerror(int (*fn)(int errnum, char *errbuf, size_t errbuf_size)) { av_strerror_fn = fn; }

static const char *const sl_err_table[] = {
    "invalid argument",
    "out of memory",
    "input/output error",
    "job configuration error",
    "usage error",
    "audio could not be decoded",
    "no audio stream",
    "zero-length audio",
    "audio could not be encoded",
    "not supported",
    "no usable GPU",
    "GPU runtime error",
    "ledger database error",
    "not found",
    "malformed file",
    "numerical check failed",
    "interrupted by a signal",
    "GPU context lost (sticky device error)",
};

static _Thread_local char tl_msg[1024];
static _Thread_local int tl_code;
static _Thread_local char tl_av[AV_ERROR_MAX_STRING_SIZE + 16];

const char *sl_strerror(int code)
{
    if (code == 0)
        return "success";
    if (code < SL_EBASE && code > SL_ELAST)
        return sl_err_table[SL_EBASE - code - 1];
    if (code < 0 && code > -4096)
        return strerror(-code);
    int (*fn)(int, char *, size_t) = av_strerror_fn;
    if (!fn || fn(code, tl_av, sizeof tl_av) < 0)
        snprintf(tl_av, sizeof tl_av, "error %d", code);
    return tl_av;
}

int sl_vseterr(int code, const char *fmt, va_list ap)
{
    vsnprintf(tl_msg, sizeof tl_msg, fmt, ap);
    tl_code = code;
    return code;
}

int sl_seterr(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_vseterr(code, fmt, ap);
    va_end(ap);
    return code;
}

const char *sl_lasterr(void) { return tl_msg; }

void sl_clearerr(void)
{
    tl_msg[0] = 0;
    tl_code = 0;
}

const char *sl_errmsg(int code, char *buf, unsigned size)
{
    if (tl_msg[0] && tl_code == code)
        snprintf(buf, size, "%s", tl_msg);
    else
        snprintf(buf, size, "%s", sl_strerror(code));
    return buf;
}
