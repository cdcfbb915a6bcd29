/* stemline error codes: one table for the whole program.
 * Functions return 0 on success or a negative code. Our own codes live in a
 * range no FFmpeg AVERROR or negated errno can reach, so AVERROR values pass
 * through unchanged and sl_strerror() can describe either. */
#ifndef SL_ERROR_H
#define SL_ERROR_H

#include <stdarg.h>
#include <stddef.h>

enum {
    SL_OK = 0,
    SL_EBASE = -0x5E0000,
    SL_EINVAL = SL_EBASE - 1,    /* invalid argument */
    SL_ENOMEM = SL_EBASE - 2,    /* out of memory */
    SL_EIO = SL_EBASE - 3,       /* input/output error */
    SL_ECONFIG = SL_EBASE - 4,   /* job configuration error */
    SL_EUSAGE = SL_EBASE - 5,    /* command-line usage error */
    SL_EDECODE = SL_EBASE - 6,   /* audio could not be decoded */
    SL_ENOAUDIO = SL_EBASE - 7,  /* no audio stream */
    SL_EEMPTY = SL_EBASE - 8,    /* zero-length audio */
    SL_ENCODE = SL_EBASE - 9,    /* audio could not be encoded */
    SL_EUNSUPPORTED = SL_EBASE - 10, /* not supported by this backend/model */
    SL_ENODEVICE = SL_EBASE - 11,    /* no usable GPU */
    SL_EDEVICE = SL_EBASE - 12,      /* GPU runtime error */
    SL_EDB = SL_EBASE - 13,          /* ledger database error */
    SL_ENOTFOUND = SL_EBASE - 14,    /* not found */
    SL_EFORMAT = SL_EBASE - 15,      /* malformed file */
    SL_ENUMERIC = SL_EBASE - 16,     /* numerical check failed (e.g. NOLA) */
    SL_EINTERRUPTED = SL_EBASE - 17, /* stopped by a signal */
    SL_EDEVLOST = SL_EBASE - 18,     /* GPU context lost to a sticky error: not retried on it */
    SL_ELAST = SL_EBASE - 19
};

/* Returns a static description of code (ours, an errno, or an AVERROR). Never NULL. */
const char *sl_strerror(int code);

/* How sl_strerror describes FFmpeg's AVERROR codes: io/ sets FFmpeg's
 * av_strerror here when it loads FFmpeg (io/ff_dl.h); until then such a code
 * is "error N". */
void sl_error_set_av_strerror(int (*fn)(int errnum, char *errbuf, size_t errbuf_size));

/* Records a detailed, thread-local message for the error about to be returned
 * and returns code unchanged, so callers write `return sl_seterr(SL_EIO, ...)`. */
int sl_seterr(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sl_vseterr(int code, const char *fmt, va_list ap);

/* The last detailed message of this thread ("" when none). Valid until the next
 * sl_seterr on this thread. Falls back to sl_strerror(code) when none is set. */
const char *sl_lasterr(void);
/* Formats "detail" if one was set for code, else sl_strerror(code), into buf. */
const char *sl_errmsg(int code, char *buf, unsigned size);
void sl_clearerr(void);

#endif
