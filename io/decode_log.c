/* FFmpeg's own log, routed through sl_log (io/README.md: at most
 * SL_DEC_FFMPEG_MSGS_PER_FILE messages a file at warning level). */
#include "io/decode_log.h"

#include "common/sl_log.h"

#include "io/ff_dl.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* FFmpeg messages shown per file at warning level; the rest go to debug. */
#define SL_DEC_FFMPEG_MSGS_PER_FILE 3

/* The file the current thread is working on, so FFmpeg's messages (which only
 * know a context pointer) can name it, and so one noisy file cannot flood the
 * log (the count lives in the decoder, so it survives between read calls). */
static _Thread_local const char *tl_file;
static _Thread_local int *tl_file_msgs;

void sl_dec_log_file(const char *path, int *msgs)
{
    tl_file = path;
    tl_file_msgs = msgs;
}

void sl_dec_log_forget(const char *path)
{
    if (tl_file == path)
        sl_dec_log_file(NULL, NULL);
}

static void av_log_to_sl(void *avcl, int level, const char *fmt, va_list vl)
{
    if (level > sl_ff.av_log_get_level())
        return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, vl);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r' || msg[n - 1] == ' '))
        msg[--n] = 0;
    if (!n)
        return;
    const char *who = "ffmpeg";
    if (avcl) {
        const AVClass *cls = *(const AVClass **)avcl;
        if (cls && cls->item_name)
            who = cls->item_name(avcl);
    }
    sl_log_level lvl = level <= AV_LOG_FATAL ? SL_LOG_ERROR : SL_LOG_WARN;
    if (tl_file_msgs) {
        int cnt = ++*tl_file_msgs;
        if (cnt == SL_DEC_FFMPEG_MSGS_PER_FILE + 1 && lvl > SL_LOG_DEBUG)
            sl_log(SL_LOG_WARN, tl_file, "ffmpeg",
                   "further FFmpeg messages for this file are logged at debug level");
        if (cnt > SL_DEC_FFMPEG_MSGS_PER_FILE)
            lvl = SL_LOG_DEBUG;
    }
    sl_log(lvl, tl_file, "ffmpeg", "%s: %s", who, msg);
}

/* Called once by sl_ff_load, after FFmpeg is loaded and before it is used. */
void sl_io_route_log(void)
{
    sl_ff.av_log_set_level(AV_LOG_WARNING);
    sl_ff.av_log_set_callback(av_log_to_sl);
}

