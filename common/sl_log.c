#include "sl_log.h"

#include <pthread.h>
#include <stdarg.h>

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static sl_log_level log_level = SL_LOG_INFO;
static FILE *log_file;
static FILE *broken; /* the stream whose last write failed (under log_mu) */
static void (*hook_before)(void *), (*hook_after)(void *);
static void *hook_arg;

void sl_log_set_level(sl_log_level lvl) { log_level = lvl; }
sl_log_level sl_log_get_level(void) { return log_level; }
void sl_log_set_file(FILE *f)
{
    pthread_mutex_lock(&log_mu);
    log_file = f;
    broken = NULL;
    pthread_mutex_unlock(&log_mu);
}

void sl_log_set_hooks(void (*before)(void *), void (*after)(void *), void *arg)
{
    pthread_mutex_lock(&log_mu);
    hook_before = before;
    hook_after = after;
    hook_arg = arg;
    pthread_mutex_unlock(&log_mu);
}

void sl_log(sl_log_level lvl, const char *track, const char *stage, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warning", "error", "quiet"};
    if (lvl < log_level || lvl >= SL_LOG_QUIET || lvl < SL_LOG_DEBUG)
        return;
    FILE *f = log_file ? log_file : stderr;
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&log_mu);
    if (f == broken) {
        /* the reader is gone (a closed pipe, a full disk): nothing to tell it */
        pthread_mutex_unlock(&log_mu);
        va_end(ap);
        return;
    }
    if (hook_before)
        hook_before(hook_arg);
    fprintf(f, "stemline: %s: ", names[lvl]);
    if (track)
        fprintf(f, "[%s] ", track);
    if (stage)
        fprintf(f, "%s: ", stage);
    if (fmt)
        vfprintf(f, fmt, ap);
    fputc('\n', f);
    if (fflush(f) != 0 || ferror(f))
        broken = f; /* after the first failed write, the log is not written there again */
    if (hook_after)
        hook_after(hook_arg);
    pthread_mutex_unlock(&log_mu);
    va_end(ap);
}
