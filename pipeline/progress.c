#include "progress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../common/sl_log.h"

struct sl_progress {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int live;      /* a terminal: redraw one line in place */
    int interval;  /* seconds between plain lines */
    int stopping;
    _Atomic int drawn; /* a live line is on screen */
    size_t total, done, processed, abandoned;
    int64_t total_bytes, done_bytes;
    double audio, t0;
};

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_eta(double s, char *buf, size_t n)
{
    if (s < 0 || s > 1e7) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

/* Caller holds p->mu. */
static void draw(sl_progress *p, int final)
{
    double el = mono_now() - p->t0;
    double xrt = el > 0 ? p->audio / el : 0;
    double eta = -1;
    if (p->done_bytes > 0 && p->total_bytes > 0 && p->done < p->total)
        eta = el * (double)(p->total_bytes - p->done_bytes) / (double)p->done_bytes;
    else if (p->done >= p->total)
        eta = 0;
    char e[32];
    fmt_eta(eta, e, sizeof e);
    int pct = p->total ? (int)(100.0 * (double)p->done / (double)p->total) : 100;
    char ab[48] = "";
    if (p->abandoned) /* after a stop request: never counted as done */
        snprintf(ab, sizeof ab, p->live ? ", %zu abandoned" : " (%zu abandoned)", p->abandoned);
    if (p->live) {
        fprintf(stderr, "\r\033[K[%3d%%] %zu/%zu tracks%s  %.1f s audio  %.1fx realtime  ETA %s", pct, p->done,
                p->total, ab, p->audio, xrt, e);
        if (final)
            fputc('\n', stderr);
        p->drawn = !final;
    } else {
        fprintf(stderr, "stemline: progress: %zu/%zu tracks (%d%%)%s, %.1f s of audio, %.1fx realtime, ETA %s\n",
                p->done, p->total, pct, ab, p->audio, xrt, e);
    }
    fflush(stderr);
}

static void hide_line(void *arg)
{
    sl_progress *p = arg;
    if (p->drawn) {
        fputs("\r\033[K", stderr);
        p->drawn = 0;
    }
}

static void *run(void *arg)
{
    sl_progress *p = arg;
    pthread_setname_np(pthread_self(), "sl-progress");
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (p->live) {
            ts.tv_nsec += 500000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
        } else {
            ts.tv_sec += p->interval;
        }
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) != 0 && !p->stopping)
            draw(p, 0);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

sl_progress *sl_progress_start(size_t total_tracks, int64_t total_bytes, int mode, int interval_s)
{
    if (mode == 0)
        return NULL;
    sl_progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->live = isatty(STDERR_FILENO);
    p->interval = interval_s > 0 ? interval_s : 10;
    p->total = total_tracks;
    p->total_bytes = total_bytes;
    p->t0 = mono_now();
    if (pthread_create(&p->th, NULL, run, p)) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    /* Log lines must not be written over the live line. The hook runs with the
     * log mutex held; it only touches `drawn`, so it takes no other lock. */
    if (p->live)
        sl_log_set_hooks(hide_line, NULL, p);
    return p;
}

void sl_progress_track_done(sl_progress *p, int processed, double audio_seconds, int64_t bytes)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->done++;
    p->processed += processed != 0;
    p->audio += audio_seconds;
    p->done_bytes += bytes > 0 ? bytes : 0;
    pthread_mutex_unlock(&p->mu);
}

void sl_progress_track_abandoned(sl_progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->abandoned++;
    pthread_mutex_unlock(&p->mu);
}

void sl_progress_stop(sl_progress *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    if (p->live)
        sl_log_set_hooks(NULL, NULL, NULL);
    pthread_mutex_lock(&p->mu);
    draw(p, 1);
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
