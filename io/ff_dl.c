/* Loading FFmpeg at its first use: see io/ff_dl.h. */
#include "io/ff_dl.h"

#include "common/sl_error.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if !SL_FFMPEG_STATIC
#include <dlfcn.h>
#endif

sl_ff_api sl_ff;

static pthread_once_t ff_base_once = PTHREAD_ONCE_INIT, ff_once = PTHREAD_ONCE_INIT;
/* why loading failed (empty when loaded): the base stage's, and the codecs'
 * and containers' (each written only inside its own once routine) */
static char ff_err_base[512], ff_err_full[512];

#if SL_FFMPEG_STATIC

#define SL_FF_SET(f) sl_ff.f = &f;
static void ff_fill_base(void)
{
    SL_FF_AVUTIL(SL_FF_SET)
    SL_FF_SWRESAMPLE(SL_FF_SET)
}
static void ff_fill(void)
{
    SL_FF_AVCODEC(SL_FF_SET)
    SL_FF_AVFORMAT(SL_FF_SET)
}

#else

#define SL_FF_STR_(x) #x
#define SL_FF_STR(x) SL_FF_STR_(x)

typedef struct {
    const char *name;
    void **slot;
} ff_sym;

/* Opens soname (RTLD_LOCAL: nothing else in the process binds to it) and
 * resolves syms: 0, or -1 with ff_err naming the library and the reason. */
static int ff_open(char *ff_err, const char *soname, const ff_sym *syms, size_t n)
{
    const char *fault = getenv("SL_FAULT_FFMPEG_MISSING");
    char path[256];
    snprintf(path, sizeof path, "%s%s", fault && *fault && strstr(soname, fault) ? "/nonexistent/" : "", soname);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(ff_err, 512, "%s", why ? why : path);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(*syms[i].slot = dlsym(h, syms[i].name))) {
            snprintf(ff_err, 512, "%s: no entry point %s (an FFmpeg build without it?)", soname,
                     syms[i].name);
            return -1;
        }
    }
    return 0;
}

#define SL_FF_SYM(f) {#f, (void **)&sl_ff.f},
#define SL_FF_OPEN(err, LIST, soname)                                                               \
    do {                                                                                            \
        const ff_sym syms_[] = {LIST(SL_FF_SYM)};                                                   \
        if (ff_open(err, soname, syms_, sizeof syms_ / sizeof *syms_))                              \
            return;                                                                                 \
    } while (0)

/* In dependency order, so each library's own dependencies are in place:
 * the sample conversion first (2 libraries and about 25 they need, a few
 * milliseconds), then the codecs and containers (about 130 more). */
static void ff_fill_base(void)
{
    SL_FF_OPEN(ff_err_base, SL_FF_AVUTIL, "libavutil.so." SL_FF_STR(LIBAVUTIL_VERSION_MAJOR));
    SL_FF_OPEN(ff_err_base, SL_FF_SWRESAMPLE, "libswresample.so." SL_FF_STR(LIBSWRESAMPLE_VERSION_MAJOR));
}
static void ff_fill(void)
{
    SL_FF_OPEN(ff_err_full, SL_FF_AVCODEC, "libavcodec.so." SL_FF_STR(LIBAVCODEC_VERSION_MAJOR));
    SL_FF_OPEN(ff_err_full, SL_FF_AVFORMAT, "libavformat.so." SL_FF_STR(LIBAVFORMAT_VERSION_MAJOR));
}

#endif

static void ff_base_once_fn(void)
{
    ff_fill_base();
    if (ff_err_base[0])
        return;
    sl_error_set_av_strerror(sl_ff.av_strerror);
    sl_io_route_log();
}

static void ff_load_once(void)
{
    pthread_once(&ff_base_once, ff_base_once_fn);
    if (!ff_err_base[0])
        ff_fill();
}

static int ff_result(const char *path, const char *err)
{
    if (err[0])
        return sl_seterr(SL_EUNSUPPORTED, "%s%sFFmpeg, which decodes and encodes audio, could not be loaded: %s",
                         path ? path : "", path ? ": " : "", err);
    return 0;
}

int sl_ff_load(const char *path)
{
    pthread_once(&ff_once, ff_load_once);
    return ff_result(path, ff_err_base[0] ? ff_err_base : ff_err_full);
}

int sl_ff_load_base(const char *path)
{
    pthread_once(&ff_base_once, ff_base_once_fn);
    return ff_result(path, ff_err_base);
}

const char *sl_ff_strerror(int code, char *buf, size_t size)
{
    if (code < 0 && code > -4096) { /* AVERROR(errno): described without loading FFmpeg */
        snprintf(buf, size, "%s", strerror(-code));
        return buf;
    }
    pthread_once(&ff_base_once, ff_base_once_fn); /* not sl_ff_load: keeps this thread's error message */
    if (ff_err_base[0] || sl_ff.av_strerror(code, buf, size) < 0)
        snprintf(buf, size, "error %d", code);
    return buf;
}
