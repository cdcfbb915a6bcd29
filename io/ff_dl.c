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

static pthread_once_t ff_once = PTHREAD_ONCE_INIT;
static char ff_err[512]; /* why loading failed; empty when loaded */

#if SL_FFMPEG_STATIC

#define SL_FF_SET(f) sl_ff.f = &f;
static void ff_fill(void)
{
    SL_FF_AVUTIL(SL_FF_SET)
    SL_FF_SWRESAMPLE(SL_FF_SET)
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
static int ff_open(const char *soname, const ff_sym *syms, size_t n)
{
    const char *fault = getenv("SL_FAULT_FFMPEG_MISSING");
    char path[256];
    snprintf(path, sizeof path, "%s%s", fault && *fault && strstr(soname, fault) ? "/nonexistent/" : "", soname);
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(ff_err, sizeof ff_err, "%s", why ? why : path);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(*syms[i].slot = dlsym(h, syms[i].name))) {
            snprintf(ff_err, sizeof ff_err, "%s: no entry point %s (an FFmpeg build without it?)", soname,
                     syms[i].name);
            return -1;
        }
    }
    return 0;
}

#define SL_FF_SYM(f) {#f, (void **)&sl_ff.f},
#define SL_FF_OPEN(LIST, soname)                                                                    \
    do {                                                                                            \
        const ff_sym syms_[] = {LIST(SL_FF_SYM)};                                                   \
        if (ff_open(soname, syms_, sizeof syms_ / sizeof *syms_))                                   \
            return;                                                                                 \
    } while (0)

/* In dependency order, so each library's own dependencies are in place. */
static void ff_fill(void)
{
    SL_FF_OPEN(SL_FF_AVUTIL, "libavutil.so." SL_FF_STR(LIBAVUTIL_VERSION_MAJOR));
    SL_FF_OPEN(SL_FF_SWRESAMPLE, "libswresample.so." SL_FF_STR(LIBSWRESAMPLE_VERSION_MAJOR));
    SL_FF_OPEN(SL_FF_AVCODEC, "libavcodec.so." SL_FF_STR(LIBAVCODEC_VERSION_MAJOR));
    SL_FF_OPEN(SL_FF_AVFORMAT, "libavformat.so." SL_FF_STR(LIBAVFORMAT_VERSION_MAJOR));
}

#endif

static void ff_load_once(void)
{
    ff_fill();
    if (ff_err[0])
        return;
    sl_error_set_av_strerror(sl_ff.av_strerror);
    sl_io_route_log();
}

int sl_ff_load(const char *path)
{
    pthread_once(&ff_once, ff_load_once);
    if (ff_err[0])
        return sl_seterr(SL_EUNSUPPORTED, "%s%sFFmpeg, which decodes and encodes audio, could not be loaded: %s",
                         path ? path : "", path ? ": " : "", ff_err);
    return 0;
}

const char *sl_ff_strerror(int code, char *buf, size_t size)
{
    if (code < 0 && code > -4096) { /* AVERROR(errno): described without loading FFmpeg */
        snprintf(buf, size, "%s", strerror(-code));
        return buf;
    }
    pthread_once(&ff_once, ff_load_once); /* not sl_ff_load: keeps this thread's error message */
    if (ff_err[0] || sl_ff.av_strerror(code, buf, size) < 0)
        snprintf(buf, size, "error %d", code);
    return buf;
}
