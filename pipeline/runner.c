/* The job runner: a streaming pipeline with bounded memory.
 *
 *   decode threads --(slots)--> ready queue --> model worker(s) --> write queue --> writers
 *
 * Decode threads take tracks in catalog order, skip those the ledger holds as
 * done, and cut each track into fixed-length overlapping segments (and
 * embedding windows), each copied into a slot from one pool whose size is set
 * by runtime.max_host_memory_mb: when every slot is taken, decoding waits
 * (backpressure), so memory never depends on track length or catalog size.
 * A worker takes up to runtime.batch_size segments of any tracks, runs the
 * model on them and hands them to the writers, which stitch each track's
 * segments back in order (cross-fades, pipeline/segment.h) into its stem
 * encoders and average its window vectors. A track is finalised when its last
 * slot comes back: encoders renamed into place, then the ledger row, last.
 * Shards are rebuilt from the ledger at the end, so they always hold exactly
 * the tracks that are done, in id order, whatever order they finished in. */
#include "runner.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/sl_error.h"
#include "../common/sl_log.h"
#include "../io/catalog.h"
#include "../io/decode.h"
#include "../io/encode.h"
#include "../io/npy.h"
#include "../models/model.h"
#include "ledger.h"
#include "progress.h"
#include "report.h"
#include "segment.h"
#include "search.h"
#include "shardenv.h"
#include "shards.h"
#include "tags.h"

static volatile sig_atomic_t stop_requests;

void sl_run_request_stop(void)
{
    if (stop_requests < 2)
        stop_requests++;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum { KIND_SEP = 0, KIND_EMB = 1 };

/* Stems written only to be embedded (output.stems.enabled false), inside output.dir. */
#define SCRATCH_DIR ".stemline-scratch"

typedef struct trk trk;

/* The window vectors of one source of a track (embedding.timeline), by window index. */
typedef struct {
    float *v;        /* n x dim, raw (normalised at the end) */
    double *t0, *t1; /* seconds */
    unsigned char *have;
    size_t n, cap;
} timeline;

typedef struct slot {
    struct slot *next;
    trk *t;
    int kind;
    int src;    /* embedding windows: index into the runner's embedding sources */
    size_t k;   /* segment index within its track and kind (and source) */
    size_t len; /* valid samples */
    float *in[SL_SEG_MAX_CH];
    float *out[SL_MAX_SOURCES][SL_SEG_MAX_CH];
    float *vec;
    float *scores; /* clip scores (models with a classifier head) */
    float *mem;
} slot;

struct trk {
    size_t index;
    const sl_track *tr;
    pthread_mutex_t mu;
    int failed, abandoned, finalized, decode_done;
    char err[900];
    int in_flight;         /* slots of this track not yet released */
    size_t sep_total;      /* segments decoded (final once decode_done) */
    size_t sep_next;       /* next segment to stitch */
    slot *pending;         /* segments that arrived early, sorted by k */
    sl_stitcher st;
    int have_st;
    sl_encoder *enc[SL_MAX_SOURCES];
    char *outputs;         /* JSON array of stem paths relative to output.dir */
    int phase;             /* 0: the input (separation, mix windows); 1: the stems' windows */
    struct trk *qnext;     /* in the runner's stem queue */
    char *stem_path[SL_MAX_SOURCES]; /* where each stem was written (full path) */
    double *vsum;          /* per embedding source: length-weighted sum of window vectors */
    double *ssum;          /* per embedding source: length-weighted sum of window clip scores */
    double vweight[SL_MAX_SOURCES + 1];
    timeline tl[SL_MAX_SOURCES + 1]; /* per embedding source, when embedding.timeline */
    size_t n_samples;      /* at the separation (or embedding) rate */
    int rate;
    int source_rate;
    double t_decode, t_sep, t_emb, t_write;
};

typedef struct {
    slot *head, *tail;
    size_t n;
} fifo;

static void fifo_push(fifo *q, slot *s)
{
    s->next = NULL;
    if (q->tail)
        q->tail->next = s;
    else
        q->head = s;
    q->tail = s;
    q->n++;
}

static slot *fifo_pop(fifo *q)
{
    slot *s = q->head;
    if (s) {
        q->head = s->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        s->next = NULL;
    }
    return s;
}

typedef struct runner runner;

typedef struct {
    runner *r;
    int id;
    sl_op_ctx *ctx;        /* borrowed for worker 0 */
    sl_sep_model *sep;
    sl_emb_model *emb;
    int owns;              /* ctx and models are this worker's own */
    sl_op_ctx *cpu_ctx;    /* fallback after a device error, opened lazily */
    sl_sep_model *cpu_sep;
    sl_emb_model *cpu_emb;
    size_t max_batch;
    int device;            /* CUDA ordinal, -1 = use the runner's context */
    pthread_t th;
    int started;
} worker;

struct runner {
    const sl_config *cfg;
    const sl_run_opts *opts;
    sl_catalog cat;
    sl_ledger *ledger;
    char hash[17];
    char *out_dir;
    char *ledger_path;

    const sl_sep_info *sep;
    const sl_emb_info *emb;
    sl_sep_model *sep_model;
    sl_emb_model *emb_model;

    /* segment geometry, in samples */
    size_t sep_L, sep_H, emb_L, emb_H;

    /* one lock for the slot pool and both queues: operations are O(1) and
     * happen once per segment, so contention is negligible */
    pthread_mutex_t mu;
    pthread_cond_t cv_slot, cv_ready, cv_write;
    slot *free_slots;
    size_t n_slots_max, n_slots, n_in_use, peak_in_use;
    size_t slot_floats;
    fifo ready, write;
    int decoders_left, workers_left;
    atomic_size_t next_track;
    atomic_int stop;       /* internal stop: disk full, ledger failure */

    worker *workers;
    int n_workers;
    sl_op_ctx *host_ctx;   /* allocates the slots */
    const char *const *labels; /* class names of the embedding model's scores, or NULL */

    /* embedding.sources, resolved against the separation model */
    int n_esrc;
    const char *esrc[SL_MAX_SOURCES + 1];
    int esrc_stem[SL_MAX_SOURCES + 1]; /* stem index, -1 for the mix */
    int mix_src;                       /* index of "mix" in esrc, or -1 */
    int n_stem_esrc;                   /* stems among them: those tracks have a second phase */
    int write_stems;                   /* stems go to files (the user's, or scratch ones) */
    int scratch;                       /* stems are written only to be embedded (stems disabled) */
    char *scratch_dir;
    char prefix[64];
    trk *sq_head, *sq_tail;            /* tracks whose stems wait to be embedded (under mu) */
    size_t live_tracks;                /* trk objects alive (under mu) */
    pthread_cond_t cv_stem;
    int workers_ready, workers_failed;

    /* pipeline statistics (under mu) */
    double wait_slot_s, wait_ready_s, wait_write_s;
    double ready_len_sum;
    size_t ready_len_samples, max_ready, batches, batch_items, splits, fallbacks;

    sl_report *report;
    sl_progress *progress;
    int fatal;
    char fatal_msg[1100];
    int disk_full;
};

static int should_stop(runner *r) { return stop_requests || atomic_load(&r->stop); }

static void set_fatal(runner *r, const char *fmt, const char *detail)
{
    pthread_mutex_lock(&r->mu);
    if (!r->fatal) {
        r->fatal = 1;
        snprintf(r->fatal_msg, sizeof r->fatal_msg, fmt, detail);
    }
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->stop, 1);
}

/* ---- output paths ---- */

/* Expands the stem template. Path components ".." and "." coming from a track id
 * are neutralised so that no input can write outside output.dir. */
static int expand_template(const char *tpl, const char *id, const char *stem, const char *ext,
                           char *out, size_t size)
{
    char base[4096];
    snprintf(base, sizeof base, "%s", id);
    char *slash = strrchr(base, '/');
    char *dot = strrchr(base, '.');
    if (dot && (!slash || dot > slash + 1))
        *dot = 0;
    size_t o = 0;
    for (const char *p = tpl; *p;) {
        const char *val = NULL;
        size_t skip = 0;
        if (!strncmp(p, "{track}", 7))
            val = id, skip = 7;
        else if (!strncmp(p, "{stem}", 6))
            val = stem, skip = 6;
        else if (!strncmp(p, "{ext}", 5))
            val = ext, skip = 5;
        else if (!strncmp(p, "{base}", 6))
            val = base, skip = 6;
        if (val) {
            size_t n = strlen(val);
            if (o + n >= size)
                return SL_EINVAL;
            memcpy(out + o, val, n);
            o += n;
            p += skip;
        } else {
            if (o + 1 >= size)
                return SL_EINVAL;
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    /* neutralise "." and ".." components and leading '/' */
    char tmp[4096];
    size_t t = 0;
    const char *s = out;
    while (*s == '/')
        s++;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0) {
            /* collapse "//" */
        } else if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.')) {
            if (t + 3 >= sizeof tmp)
                return SL_EINVAL;
            memcpy(tmp + t, len == 1 ? "_/" : "__/", len + 1);
            t += len + 1;
        } else {
            if (t + len + 1 >= sizeof tmp)
                return SL_EINVAL;
            memcpy(tmp + t, s, len);
            t += len;
            tmp[t++] = '/';
        }
        s += len;
        if (*s == '/')
            s++;
    }
    if (t)
        t--; /* drop the trailing '/' */
    tmp[t] = 0;
    if (t + 1 > size)
        return SL_EINVAL;
    memcpy(out, tmp, t + 1);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Two tracks must never write the same file: checked before anything runs. */
static int check_output_collisions(runner *r)
{
    if (!r->sep || !r->cfg->stems_enabled || r->cat.n < 2)
        return 0;
    size_t n = r->cat.n;
    char **paths = calloc(n, sizeof *paths);
    if (!paths)
        return SL_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char buf[4096];
        rc = expand_template(r->cfg->stems_template, r->cat.tracks[i].id, r->sep->sources[0],
                             r->cfg->stems_format, buf, sizeof buf);
        if (rc)
            rc = sl_seterr(SL_ECONFIG, "output.stems.template: path too long for track '%s'",
                           r->cat.tracks[i].id);
        else if (!(paths[i] = malloc(strlen(buf) + strlen(r->cat.tracks[i].id) + 2)))
            rc = SL_ENOMEM;
        else
            sprintf(paths[i], "%s%c%s", buf, 0x01, r->cat.tracks[i].id);
    }
    if (!rc) {
        qsort(paths, n, sizeof *paths, cmp_str);
        for (size_t i = 1; i < n; i++) {
            size_t la = strcspn(paths[i - 1], "\x01"), lb = strcspn(paths[i], "\x01");
            if (la == lb && !strncmp(paths[i - 1], paths[i], la)) {
                paths[i - 1][la] = 0;
                rc = sl_seterr(SL_ECONFIG,
                               "output.stems.template '%s' makes tracks '%s' and '%s' write the same file "
                               "%s; use {track} in the template",
                               r->cfg->stems_template, paths[i - 1] + la + 1, paths[i] + lb + 1,
                               paths[i - 1]);
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return rc;
}

static int append_json_path(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + strlen(s) * 6 + 8;
    if (need > *cap) {
        size_t nc = need * 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return SL_ENOMEM;
        *buf = nb;
        *cap = nc;
    }
    char *o = *buf + *len;
    if (*len > 1)
        *o++ = ',';
    *o++ = '"';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            o += sprintf(o, "\\u%04x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    *o = 0;
    *len = (size_t)(o - *buf);
    return 0;
}


/* ---- slot pool ---- */

static void slot_layout(runner *r, slot *s, int kind)
{
    float *p = s->mem;
    if (kind == KIND_SEP) {
        int ch = r->sep->channels;
        for (int c = 0; c < ch; c++, p += r->sep_L)
            s->in[c] = p;
        for (int k = 0; k < r->sep->n_sources; k++)
            for (int c = 0; c < ch; c++, p += r->sep_L)
                s->out[k][c] = p;
    } else {
        for (int c = 0; c < r->emb->channels; c++, p += r->emb_L)
            s->in[c] = p;
        s->vec = p;
        s->scores = r->emb->n_scores > 0 ? p + r->emb->dim : NULL;
    }
    s->kind = kind;
}

/* Takes a free slot, allocating up to the bound; waits while every slot is in
 * use (that wait is the backpressure). NULL when the run is stopping. */
static slot *pool_acquire(runner *r)
{
    slot *got = NULL;
    double t0 = 0;
    pthread_mutex_lock(&r->mu);
    while (!got) {
        if (should_stop(r))
            break;
        if (r->free_slots) {
            got = r->free_slots;
            r->free_slots = got->next;
            break;
        }
        if (r->n_slots < r->n_slots_max) {
            slot *s = calloc(1, sizeof *s);
            void *mem = NULL;
            /* pinned on CUDA, so uploads are asynchronous copies */
            if (s && sl_op_host_alloc(r->host_ctx, &mem, r->slot_floats * sizeof(float)) == 0) {
                s->mem = mem;
                r->n_slots++;
                got = s;
                break;
            }
            free(s);
            if (r->n_slots == 0)
                break;
            r->n_slots_max = r->n_slots; /* the allocator said no: live with what we have */
        }
        if (t0 == 0)
            t0 = now_s();
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L; /* wake to notice a stop request */
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv_slot, &r->mu, &ts);
    }
    if (t0 > 0)
        r->wait_slot_s += now_s() - t0;
    if (got) {
        got->next = NULL;
        got->t = NULL;
        r->n_in_use++;
        if (r->n_in_use > r->peak_in_use)
            r->peak_in_use = r->n_in_use;
    }
    pthread_mutex_unlock(&r->mu);
    return got;
}

static void pool_release(runner *r, slot *s)
{
    pthread_mutex_lock(&r->mu);
    s->t = NULL;
    s->next = r->free_slots;
    r->free_slots = s;
    r->n_in_use--;
    pthread_cond_signal(&r->cv_slot);
    pthread_mutex_unlock(&r->mu);
}

static void pool_free_all(runner *r)
{
    while (r->free_slots) {
        slot *s = r->free_slots;
        r->free_slots = s->next;
        sl_op_host_free(r->host_ctx, s->mem);
        free(s);
    }
}

static void push_ready(runner *r, slot *s)
{
    pthread_mutex_lock(&r->mu);
    fifo_push(&r->ready, s);
    if (r->ready.n > r->max_ready)
        r->max_ready = r->ready.n;
    pthread_cond_signal(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
}

/* Takes up to max slots of one kind (the kind of the oldest), oldest first.
 * Waits for at least one; returns 0 when decoding is over and nothing is left. */
static size_t pop_batch(runner *r, slot **out, size_t max)
{
    size_t n = 0;
    double t0 = now_s();
    pthread_mutex_lock(&r->mu);
    while (!r->ready.head && r->decoders_left > 0)
        pthread_cond_wait(&r->cv_ready, &r->mu);
    r->wait_ready_s += now_s() - t0;
    r->ready_len_sum += (double)r->ready.n;
    r->ready_len_samples++;
    if (r->ready.head) {
        int kind = r->ready.head->kind;
        slot **pp = &r->ready.head, *prev = NULL;
        while (*pp && n < max) {
            slot *s = *pp;
            if (s->kind == kind) {
                *pp = s->next;
                if (r->ready.tail == s)
                    r->ready.tail = prev;
                r->ready.n--;
                s->next = NULL;
                out[n++] = s;
            } else {
                prev = s;
                pp = &s->next;
            }
        }
        r->batches++;
        r->batch_items += n;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void push_write(runner *r, slot *s)
{
    pthread_mutex_lock(&r->mu);
    fifo_push(&r->write, s);
    pthread_cond_signal(&r->cv_write);
    pthread_mutex_unlock(&r->mu);
}

static slot *pop_write(runner *r)
{
    double t0 = now_s();
    pthread_mutex_lock(&r->mu);
    while (!r->write.head && r->workers_left > 0)
        pthread_cond_wait(&r->cv_write, &r->mu);
    r->wait_write_s += now_s() - t0;
    slot *s = fifo_pop(&r->write);
    pthread_mutex_unlock(&r->mu);
    return s;
}

/* ---- tracks ---- */

static int is_disk_full(int rc) { return rc == -ENOSPC || rc == -EDQUOT || rc == -EROFS; }

/* Caller holds t->mu. The first reason wins. */
static void trk_fail(trk *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trk_fail(trk *t, const char *fmt, ...)
{
    if (t->failed || t->abandoned)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof t->err, fmt, ap);
    va_end(ap);
    t->failed = 1;
}

static void trk_abandon(trk *t, const char *why)
{
    if (t->abandoned || t->failed)
        return;
    snprintf(t->err, sizeof t->err, "%s", why);
    t->abandoned = 1;
}

static void trk_free(runner *r, trk *t)
{
    for (int s = 0; s < SL_MAX_SOURCES; s++)
        if (t->enc[s])
            sl_encoder_abort(t->enc[s]);
    if (t->have_st)
        sl_stitcher_free(&t->st);
    free(t->outputs);
    free(t->vsum);
    free(t->ssum);
    for (int s = 0; s < SL_MAX_SOURCES; s++) {
        if (t->stem_path[s] && r->scratch)
            unlink(t->stem_path[s]); /* written only to be embedded */
        free(t->stem_path[s]);
    }
    for (int i = 0; i <= SL_MAX_SOURCES; i++) {
        free(t->tl[i].v);
        free(t->tl[i].t0);
        free(t->tl[i].t1);
        free(t->tl[i].have);
    }
    pthread_mutex_destroy(&t->mu);
    free(t);
    pthread_mutex_lock(&r->mu);
    r->live_tracks--;
    pthread_cond_broadcast(&r->cv_stem);
    pthread_mutex_unlock(&r->mu);
}

/* Opens one encoder per stem (temporary names; renamed when the track is done),
 * after sweeping temporaries a killed run may have left in the same folders. */
static int open_encoders(runner *r, trk *t, char *err, size_t errsize)
{
    const sl_config *c = r->cfg;
    sl_encode_params p = {
        .format = c->stems_format,
        .sample_format = c->stems_sample_format,
        .in_rate = r->sep->sample_rate,
        .out_rate = r->sep->sample_rate,
        .channels = r->sep->channels,
    };
    if (!strcmp(c->stems_sample_rate, "source") && t->source_rate > 0)
        p.out_rate = t->source_rate;
    if (r->scratch) {
        /* stems only to be embedded: float WAV at the model's rate, exact */
        p.format = "wav";
        p.sample_format = "f32";
        p.out_rate = r->sep->sample_rate;
    }
    size_t olen = 1, ocap = 256;
    t->outputs = malloc(ocap);
    if (!t->outputs)
        return SL_ENOMEM;
    strcpy(t->outputs, "[");
    /* first sweep (every file, before any encoder of this track exists) */
    for (int pass = 0; pass < 2; pass++)
    for (int s = 0; s < r->sep->n_sources; s++) {
        char rel[4096], full[8192];
        int rc = 0;
        if (r->scratch) {
            snprintf(rel, sizeof rel, "t%zu-%d.wav", t->index, s);
            snprintf(full, sizeof full, "%s/%s", r->scratch_dir, rel);
        } else {
            rc = expand_template(c->stems_template, t->tr->id, r->sep->sources[s], c->stems_format, rel,
                                 sizeof rel);
            snprintf(full, sizeof full, "%s/%s", r->out_dir, rel);
        }
        if (rc) {
            snprintf(err, errsize, "output path too long");
            return rc;
        }
        if (pass == 0) {
            /* only this file's temporaries: other tracks may be writing into
             * the same folder (templates like {stem}/{track}.{ext}) */
            sl_atomic_sweep_for(full);
            continue;
        }
        rc = sl_encoder_open(&t->enc[s], full, &p);
        if (rc) {
            char m[512];
            snprintf(err, errsize, "write %s: %s", rel, sl_errmsg(rc, m, sizeof m));
            return rc;
        }
        if (!(t->stem_path[s] = strdup(full)))
            return SL_ENOMEM;
        if (!r->scratch && append_json_path(&t->outputs, &olen, &ocap, rel))
            return SL_ENOMEM;
    }
    strcat(t->outputs, "]");
    return 0;
}

/* Stitches one segment (in order) and writes its final samples. Caller holds t->mu. */
static void stitch_write(runner *r, trk *t, slot *s)
{
    double t0 = now_s();
    float *const *y[SL_MAX_SOURCES];
    for (int k = 0; k < r->sep->n_sources; k++)
        y[k] = s->out[k];
    size_t emit = sl_stitcher_push(&t->st, y, s->len);
    for (int k = 0; k < r->sep->n_sources && r->write_stems; k++) {
        int rc = sl_encoder_write(t->enc[k], (const float *const *)s->out[k], emit);
        if (rc) {
            char m[512];
            sl_errmsg(rc, m, sizeof m);
            if (is_disk_full(rc)) {
                trk_abandon(t, "output disk full");
                r->disk_full = 1;
                atomic_store(&r->stop, 1);
            } else {
                trk_fail(t, "write: %s", m);
            }
            break;
        }
    }
    t->t_write += now_s() - t0;
}

/* Called once, when the track's last slot has come back. */
static void finalize(runner *r, trk *t)
{
    const sl_track *tr = t->tr;
    float *vec = NULL;
    double t0 = now_s();
    char m[512];
    if (t->phase == 0 && !t->failed && !t->abandoned && r->sep) {
        /* the tail of the last segment, then every stem renamed into place */
        size_t O = r->sep_L - r->sep_H;
        float *buf = O ? malloc(O * (size_t)r->sep->channels * (size_t)r->sep->n_sources * sizeof(float)) : NULL;
        if (O && !buf) {
            trk_fail(t, "out of memory");
        } else {
            float *planes[SL_MAX_SOURCES][SL_SEG_MAX_CH];
            float *const *pp[SL_MAX_SOURCES];
            for (int k = 0; k < r->sep->n_sources; k++) {
                for (int c = 0; c < r->sep->channels; c++)
                    planes[k][c] = buf + ((size_t)k * r->sep->channels + (size_t)c) * O;
                pp[k] = planes[k];
            }
            size_t n = t->have_st ? sl_stitcher_flush(&t->st, pp) : 0;
            for (int k = 0; k < r->sep->n_sources && r->write_stems && !t->failed && !t->abandoned; k++) {
                int rc = n ? sl_encoder_write(t->enc[k], (const float *const *)planes[k], n) : 0;
                if (!rc) {
                    rc = sl_encoder_finish(t->enc[k]);
                    t->enc[k] = NULL;
                }
                if (rc) {
                    sl_errmsg(rc, m, sizeof m);
                    if (is_disk_full(rc)) {
                        trk_abandon(t, "output disk full");
                        r->disk_full = 1;
                        atomic_store(&r->stop, 1);
                    } else {
                        trk_fail(t, "write: %s", m);
                    }
                }
            }
            free(buf);
        }
    }
    if (t->phase == 0 && r->n_stem_esrc > 0 && r->emb && !t->failed && !t->abandoned) {
        /* the stems are in place: a decode thread embeds them next (phase 1),
         * and the ledger row is written once that is done */
        t->t_write += now_s() - t0;
        pthread_mutex_lock(&t->mu);
        t->phase = 1;
        t->decode_done = 0;
        t->finalized = 0;
        pthread_mutex_unlock(&t->mu);
        pthread_mutex_lock(&r->mu);
        t->qnext = NULL;
        if (r->sq_tail)
            r->sq_tail->qnext = t;
        else
            r->sq_head = t;
        r->sq_tail = t;
        pthread_cond_broadcast(&r->cv_stem);
        pthread_mutex_unlock(&r->mu);
        return;
    }
    char *tags = NULL, *stags[SL_MAX_SOURCES + 1] = {0};
    sl_ledger_vec *lv = NULL;
    size_t n_lv = 0;
    if (!t->failed && !t->abandoned && r->emb) {
        int dim = r->emb->dim, ns = r->emb->n_scores;
        size_t n_win = 0;
        for (int i = 0; i < r->n_esrc; i++)
            n_win += r->cfg->emb_timeline ? t->tl[i].n : 0;
        vec = calloc((size_t)r->n_esrc * (size_t)dim, sizeof *vec);
        lv = calloc((size_t)r->n_esrc + n_win, sizeof *lv);
        if (!vec || !lv)
            trk_fail(t, "embed: out of memory");
        for (int i = 0; i < r->n_esrc && !t->failed; i++) {
            const char *src = r->esrc[i];
            float *v = vec + (size_t)i * (size_t)dim;
            int rc = sl_embed_mean(t->vsum + (size_t)i * (size_t)dim, t->vweight[i], dim, r->cfg->emb_normalize, v);
            if (rc) {
                if (i == r->mix_src)
                    trk_fail(t, "%s", sl_errmsg(rc, m, sizeof m));
                else
                    trk_fail(t, "stem '%s': %s", src, sl_errmsg(rc, m, sizeof m));
                break;
            }
            if (t->ssum && t->vweight[i] > 0) {
                stags[i] = sl_tags_json(t->ssum + (size_t)i * (size_t)ns, ns, t->vweight[i],
                                        r->cfg->emb_tags_top_k, r->labels);
                if (!stags[i]) {
                    trk_fail(t, "embed: out of memory");
                    break;
                }
            }
            if (i == r->mix_src) {
                tags = stags[i];
                stags[i] = NULL;
            } else {
                lv[n_lv++] = (sl_ledger_vec){.source = src, .window = -1, .start = 0,
                                             .end = t->rate > 0 ? (double)t->n_samples / t->rate : 0,
                                             .vector = v, .tags_json = stags[i]};
            }
            if (!r->cfg->emb_timeline)
                continue;
            timeline *tl = &t->tl[i];
            for (size_t k = 0; k < tl->n; k++) {
                float *w = tl->v + k * (size_t)dim;
                double ss = 0;
                int finite = tl->have[k];
                for (int j = 0; j < dim; j++) {
                    finite &= isfinite(w[j]) != 0;
                    ss += (double)w[j] * w[j];
                }
                if (!finite) {
                    trk_fail(t, "embed %s: window %zu: %s", src, k,
                             tl->have[k] ? "the vector is not finite" : "missing");
                    break;
                }
                if (r->cfg->emb_normalize && ss > 0)
                    for (int j = 0; j < dim; j++)
                        w[j] = (float)(w[j] / sqrt(ss));
                lv[n_lv++] = (sl_ledger_vec){.source = src, .window = (int)k, .start = tl->t0[k],
                                             .end = tl->t1[k], .vector = w};
            }
        }
    }
    t->t_write += now_s() - t0;
    double duration = t->rate > 0 ? (double)t->n_samples / t->rate : 0;

    if (t->abandoned) {
        /* no ledger row: the next run does this track again */
        sl_report_abandon(r->report, tr->id, tr->path, t->err);
        sl_log(SL_LOG_WARN, tr->id, NULL, "abandoned: %s", t->err);
        sl_progress_track_done(r->progress, 0, 0, tr->size);
        free(vec);
        free(tags);
        free(lv);
        for (int i = 0; i <= SL_MAX_SOURCES; i++)
            free(stags[i]);
        trk_free(r, t);
        return;
    }
    char timings[256];
    snprintf(timings, sizeof timings, "{\"decode\":%.6f,\"separate\":%.6f,\"embed\":%.6f,\"write\":%.6f}",
             t->t_decode, t->t_sep, t->t_emb, t->t_write);
    sl_ledger_row row = {
        .id = tr->id,
        .path = tr->path,
        .size = tr->size,
        .mtime_ns = tr->mtime_ns,
        .config_hash = r->hash,
        .status = t->failed ? SL_TRACK_FAILED : SL_TRACK_DONE,
        .error = t->failed ? t->err : NULL,
        .outputs_json = t->outputs && !t->failed ? t->outputs : "[]",
        .timings_json = timings,
        .duration = duration,
        .vector = t->failed || r->mix_src < 0 ? NULL : vec + (size_t)r->mix_src * (size_t)r->emb->dim,
        .dim = (t->failed || !r->emb) ? 0 : r->emb->dim,
        .vector_model = r->emb ? r->emb->name : NULL,
        .tags_json = t->failed ? NULL : tags,
        .vecs = t->failed ? NULL : lv,
        .n_vecs = t->failed ? 0 : n_lv,
    };
    int lrc = sl_ledger_put(r->ledger, &row);
    if (lrc) {
        sl_log(SL_LOG_ERROR, tr->id, "ledger", "%s", sl_errmsg(lrc, m, sizeof m));
        set_fatal(r, "the ledger could not be written: %s", m);
    }
    if (t->failed) {
        sl_log(SL_LOG_ERROR, tr->id, NULL, "failed: %s", t->err);
        sl_report_fail(r->report, tr->id, tr->path, t->err);
    } else {
        sl_report_ok(r->report, tr->id, tr->path, duration, t->t_decode, t->t_sep, t->t_emb, t->t_write);
    }
    sl_progress_track_done(r->progress, 1, t->failed ? 0 : duration, tr->size);
    free(vec);
    free(tags);
    free(lv);
    for (int i = 0; i <= SL_MAX_SOURCES; i++)
        free(stags[i]);
    trk_free(r, t);
}

/* Keeps window k of source src (caller holds t->mu). 0 or SL_ENOMEM. */
static int timeline_put(trk *t, int src, size_t k, const float *vec, int dim, double t0, double t1)
{
    timeline *tl = &t->tl[src];
    if (k >= tl->cap) {
        size_t nc = tl->cap ? tl->cap : 16;
        while (nc <= k)
            nc *= 2;
        float *v = realloc(tl->v, nc * (size_t)dim * sizeof *v);
        if (v)
            tl->v = v;
        double *a = realloc(tl->t0, nc * sizeof *a);
        if (a)
            tl->t0 = a;
        double *b = realloc(tl->t1, nc * sizeof *b);
        if (b)
            tl->t1 = b;
        unsigned char *h = realloc(tl->have, nc);
        if (h)
            tl->have = h;
        if (!v || !a || !b || !h)
            return SL_ENOMEM;
        memset(tl->have + tl->cap, 0, nc - tl->cap);
        tl->cap = nc;
    }
    memcpy(tl->v + k * (size_t)dim, vec, (size_t)dim * sizeof *vec);
    tl->t0[k] = t0;
    tl->t1[k] = t1;
    tl->have[k] = 1;
    if (k + 1 > tl->n)
        tl->n = k + 1;
    return 0;
}

/* Caller holds t->mu; returns 1 when the caller must finalize (outside the lock). */
static int release_locked(runner *r, trk *t, slot *s)
{
    pool_release(r, s);
    t->in_flight--;
    if (t->decode_done && t->in_flight == 0 && !t->finalized) {
        t->finalized = 1;
        return 1;
    }
    return 0;
}

/* ---- decode threads ---- */

typedef struct {
    sl_decoder *d;
} dec_arg;

static long dec_read(void *arg, float *const *dst, long max)
{
    return sl_decoder_read(((dec_arg *)arg)->d, dst, max);
}

/* Streams one kind of segments of a track into the ready queue: from its input,
 * or (path given) from one of its stems, for embedding source src.
 * Returns 0, or a negative code after marking the track failed/abandoned. */
static int decode_stream(runner *r, trk *t, int kind, int src, const char *path)
{
    int rate = kind == KIND_SEP ? r->sep->sample_rate : r->emb->sample_rate;
    int ch = kind == KIND_SEP ? r->sep->channels : r->emb->channels;
    size_t L = kind == KIND_SEP ? r->sep_L : r->emb_L, H = kind == KIND_SEP ? r->sep_H : r->emb_H;
    sl_decoder *d = NULL;
    char m[600];
    int rc = sl_decoder_open(&d, path ? path : t->tr->path, rate, ch);
    if (rc) {
        pthread_mutex_lock(&t->mu);
        if (path)
            trk_fail(t, "embed stem '%s': decode: %s", r->esrc[src], sl_errmsg(rc, m, sizeof m));
        else
            trk_fail(t, "decode: %s", sl_errmsg(rc, m, sizeof m));
        pthread_mutex_unlock(&t->mu);
        return rc;
    }
    const sl_audio_info *info = sl_decoder_info(d);
    if (!path)
        t->source_rate = info->sample_rate;
    if (kind == KIND_SEP && r->write_stems) {
        pthread_mutex_lock(&t->mu);
        rc = open_encoders(r, t, m, sizeof m);
        if (rc) {
            if (is_disk_full(rc)) {
                trk_abandon(t, "output disk full");
                r->disk_full = 1;
                atomic_store(&r->stop, 1);
            } else {
                trk_fail(t, "%s", m);
            }
        }
        pthread_mutex_unlock(&t->mu);
        if (rc) {
            sl_decoder_close(d);
            return rc;
        }
    }
    sl_segmenter sg;
    rc = sl_segmenter_init(&sg, L, H, ch);
    dec_arg da = {d};
    size_t k = 0;
    while (!rc) {
        if (should_stop(r)) {
            pthread_mutex_lock(&t->mu);
            trk_abandon(t, stop_requests ? "interrupted" : "the run stopped");
            pthread_mutex_unlock(&t->mu);
            rc = SL_EINTERRUPTED;
            break;
        }
        pthread_mutex_lock(&t->mu);
        int dead = t->failed || t->abandoned;
        pthread_mutex_unlock(&t->mu);
        if (dead) {
            rc = SL_EINTERRUPTED;
            break;
        }
        slot *s = pool_acquire(r);
        if (!s) {
            pthread_mutex_lock(&t->mu);
            if (should_stop(r))
                trk_abandon(t, stop_requests ? "interrupted" : "the run stopped");
            else
                trk_fail(t, "out of memory for a segment buffer");
            pthread_mutex_unlock(&t->mu);
            rc = SL_ENOMEM;
            break;
        }
        slot_layout(r, s, kind);
        s->src = src;
        long len = sl_segmenter_next(&sg, dec_read, &da, s->in);
        if (len <= 0) {
            pool_release(r, s);
            if (len < 0) {
                rc = (int)len;
                pthread_mutex_lock(&t->mu);
                trk_fail(t, "decode: %s", sl_errmsg(rc, m, sizeof m));
                pthread_mutex_unlock(&t->mu);
            }
            break;
        }
        s->t = t;
        s->k = k++;
        s->len = (size_t)len;
        pthread_mutex_lock(&t->mu);
        t->in_flight++;
        pthread_mutex_unlock(&t->mu);
        push_ready(r, s);
    }
    if (!rc && sg.total == 0) {
        pthread_mutex_lock(&t->mu);
        trk_fail(t, "decode: %s: zero-length audio (no sample decoded)", t->tr->path);
        pthread_mutex_unlock(&t->mu);
        rc = SL_EEMPTY;
    }
    if (!path && (kind == KIND_SEP || !r->sep)) {
        t->n_samples = sg.total;
        t->rate = rate;
    }
    if (kind == KIND_SEP)
        t->sep_total = k;
    sl_segmenter_free(&sg);
    sl_decoder_close(d);
    return rc;
}

/* A phase's decoding is over: the track is finalized here when no slot of it
 * is in flight any more, else by the writer that releases its last one. */
static void decode_finished(runner *r, trk *t, double seconds)
{
    pthread_mutex_lock(&t->mu);
    t->t_decode += seconds;
    t->decode_done = 1;
    int fin = t->in_flight == 0 && !t->finalized;
    if (fin)
        t->finalized = 1;
    pthread_mutex_unlock(&t->mu);
    if (fin)
        finalize(r, t);
}

static void decode_track(runner *r, size_t i)
{
    const sl_track *tr = &r->cat.tracks[i];
    trk *t = calloc(1, sizeof *t);
    if (!t) {
        sl_log(SL_LOG_ERROR, tr->id, "decode", "out of memory");
        atomic_store(&r->stop, 1);
        return;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->index = i;
    t->tr = tr;
    pthread_mutex_lock(&r->mu);
    r->live_tracks++;
    pthread_mutex_unlock(&r->mu);
    double t0 = now_s();
    int rc = 0;
    if (r->emb) {
        size_t ns = (size_t)r->n_esrc;
        t->vsum = calloc(ns * (size_t)r->emb->dim, sizeof *t->vsum);
        if (r->emb->n_scores > 0 && r->cfg->emb_tags_top_k > 0 &&
            !(t->ssum = calloc(ns * (size_t)r->emb->n_scores, sizeof *t->ssum)))
            rc = SL_ENOMEM;
        if (!t->vsum)
            rc = SL_ENOMEM;
    }
    if (!rc && r->sep) {
        if (sl_stitcher_init(&t->st, r->sep_L, r->sep_H, r->sep->n_sources, r->sep->channels) == 0)
            t->have_st = 1;
        else
            rc = SL_ENOMEM;
        if (!rc)
            rc = decode_stream(r, t, KIND_SEP, 0, NULL);
    }
    if (!rc && r->emb && r->mix_src >= 0)
        rc = decode_stream(r, t, KIND_EMB, r->mix_src, NULL);
    if (rc == SL_ENOMEM && !t->failed && !t->abandoned)
        trk_fail(t, "out of memory");
    decode_finished(r, t, now_s() - t0); /* includes waiting for free slots: see report "pipeline" */
}

/* Phase 1 of a track whose stems are embedded: its stem files, written and in
 * place, are decoded like inputs into embedding windows of their source. */
static void decode_stems(runner *r, trk *t)
{
    double t0 = now_s();
    int rc = 0;
    for (int i = 0; i < r->n_esrc && !rc; i++) {
        int st = r->esrc_stem[i];
        if (st < 0)
            continue;
        if (should_stop(r)) {
            pthread_mutex_lock(&t->mu);
            trk_abandon(t, stop_requests ? "interrupted" : "the run stopped");
            pthread_mutex_unlock(&t->mu);
            break;
        }
        if (!t->stem_path[st]) {
            pthread_mutex_lock(&t->mu);
            trk_fail(t, "embed stem '%s': the stem was not written", r->esrc[i]);
            pthread_mutex_unlock(&t->mu);
            break;
        }
        rc = decode_stream(r, t, KIND_EMB, i, t->stem_path[st]);
    }
    decode_finished(r, t, now_s() - t0);
}

/* The next track whose stems wait to be embedded; NULL when the caller should
 * take a new track from the catalog instead, or stop (*done) because no track
 * can come back to the queue. Queued tracks go first: they hold finished work. */
static trk *next_stem_track(runner *r, int *done)
{
    trk *t = NULL;
    *done = 0;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        if (r->sq_head) {
            t = r->sq_head;
            r->sq_head = t->qnext;
            if (!r->sq_head)
                r->sq_tail = NULL;
            break;
        }
        int catalog_left = atomic_load(&r->next_track) < r->cat.n && !should_stop(r);
        if (catalog_left)
            break;
        if (r->n_stem_esrc == 0 || r->live_tracks == 0) {
            *done = 1;
            break;
        }
        /* tracks are still in flight: their stems may come back here */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv_stem, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return t;
}

static void *decode_thread(void *arg)
{
    runner *r = arg;
    sl_io_set_thread_timeout(r->cfg->track_timeout_s);
    for (;;) {
        int finished;
        trk *st = next_stem_track(r, &finished);
        if (st) {
            decode_stems(r, st);
            continue;
        }
        if (finished || should_stop(r))
            break;
        size_t i = atomic_fetch_add(&r->next_track, 1);
        if (i >= r->cat.n)
            continue; /* another thread took the last one: wait for stems, or stop */
        const sl_track *t = &r->cat.tracks[i];
        int done = sl_ledger_is_done(r->ledger, t->id, t->path, t->size, t->mtime_ns, r->hash);
        if (done == 1) {
            sl_report_skip(r->report, t->id, t->path, "already done (same input and config)");
            sl_progress_track_done(r->progress, 0, 0, t->size);
            continue;
        }
        decode_track(r, i);
    }
    pthread_mutex_lock(&r->mu);
    r->decoders_left--;
    pthread_cond_broadcast(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- model workers ---- */

static int fault_oom_limit(void)
{
    const char *e = getenv("SL_FAULT_DEVICE_OOM");
    return e && *e ? atoi(e) : -1;
}

static int is_device_error(int rc) { return rc == SL_ENOMEM || rc == SL_EDEVICE; }

/* Runs one batch of slots (all of one kind) on the given models. */
static int run_models(runner *r, sl_sep_model *sep, sl_emb_model *emb, slot **s, size_t n, int inject,
                      size_t *bad)
{
    int lim = inject ? fault_oom_limit() : -1;
    if (lim >= 0 && n > (size_t)lim)
        return sl_seterr(SL_ENOMEM, "simulated device out of memory for a batch of %zu (SL_FAULT_DEVICE_OOM=%d)",
                         n, lim);
    const float *const *in[256];
    size_t lens[256];
    if (n > 256)
        return SL_EINVAL;
    for (size_t b = 0; b < n; b++) {
        in[b] = (const float *const *)s[b]->in;
        lens[b] = s[b]->len;
    }
    if (s[0]->kind == KIND_SEP) {
        float *const *const *out[256];
        float *const *planes[256][SL_MAX_SOURCES];
        for (size_t b = 0; b < n; b++) {
            for (int k = 0; k < r->sep->n_sources; k++)
                planes[b][k] = s[b]->out[k];
            out[b] = planes[b];
        }
        return sl_sep_run_batch(sep, n, in, lens, out, bad);
    }
    float *vecs[256], *scores[256];
    for (size_t b = 0; b < n; b++) {
        vecs[b] = s[b]->vec;
        scores[b] = s[b]->scores;
    }
    if (r->emb->n_scores > 0 && r->cfg->emb_tags_top_k > 0)
        return sl_emb_run_batch_scores(emb, n, in, lens, vecs, scores, bad);
    return sl_emb_run_batch(emb, n, in, lens, vecs, bad);
}

static int open_cpu_fallback(worker *w)
{
    runner *r = w->r;
    if (w->cpu_ctx)
        return 0;
    int rc = sl_op_ctx_open(&w->cpu_ctx, "cpu");
    if (!rc && r->sep)
        rc = sl_sep_open(&w->cpu_sep, r->cfg->sep_model, r->cfg->sep_weights, &r->cfg->sep_options, w->cpu_ctx);
    if (!rc && r->emb)
        rc = sl_emb_open(&w->cpu_emb, r->cfg->emb_model, r->cfg->emb_weights, &r->cfg->emb_options, w->cpu_ctx);
    return rc;
}

/* A device error (out of memory) on a batch: halve the batch and retry, down to
 * one segment; a single segment that still fails runs on the CPU; a segment
 * that fails there too fails its track with the reason. */
static void run_batch(worker *w, slot **s, size_t n)
{
    runner *r = w->r;
    size_t bad = 0;
    double t0 = now_s();
    int rc = run_models(r, w->sep, w->emb, s, n, 1, &bad);
    double dt = now_s() - t0;
    if (rc && is_device_error(rc) && n > 1) {
        char m[512];
        sl_log(SL_LOG_WARN, NULL, "worker", "%s; retrying with batches of %zu", sl_errmsg(rc, m, sizeof m),
               n / 2);
        pthread_mutex_lock(&r->mu);
        r->splits++;
        pthread_mutex_unlock(&r->mu);
        w->max_batch = n / 2 > 0 ? n / 2 : 1;
        run_batch(w, s, n / 2);
        run_batch(w, s + n / 2, n - n / 2);
        return;
    }
    if (rc && n == 1 && is_device_error(rc)) {
        char m[512];
        sl_errmsg(rc, m, sizeof m);
        if (open_cpu_fallback(w) == 0) {
            sl_log(SL_LOG_WARN, s[0]->t->tr->id, "worker", "%s; this segment runs on the CPU", m);
            pthread_mutex_lock(&r->mu);
            r->fallbacks++;
            pthread_mutex_unlock(&r->mu);
            t0 = now_s();
            rc = run_models(r, w->cpu_sep, w->cpu_emb, s, 1, 0, &bad);
            dt = now_s() - t0;
        }
    }
    if (rc && n > 1) {
        /* isolate the segment that fails; the others go on */
        for (size_t b = 0; b < n; b++)
            run_batch(w, s + b, 1);
        return;
    }
    for (size_t b = 0; b < n; b++) {
        trk *t = s[b]->t;
        pthread_mutex_lock(&t->mu);
        if (s[b]->kind == KIND_SEP)
            t->t_sep += dt / (double)n;
        else
            t->t_emb += dt / (double)n;
        if (rc) {
            char m[512];
            trk_fail(t, "%s: %s", s[b]->kind == KIND_SEP ? "separate" : "embed", sl_errmsg(rc, m, sizeof m));
        }
        pthread_mutex_unlock(&t->mu);
    }
}

/* A worker on its own device opens its context in its own thread: CUDA's
 * current device is per thread, and the context's stream belongs to it. */
static int worker_init(worker *w)
{
    runner *r = w->r;
    if (w->device < 0)
        return 0;
    char name[32];
    snprintf(name, sizeof name, "cuda:%d", w->device);
    int rc = sl_op_ctx_open(&w->ctx, name);
    w->owns = 1;
    if (!rc && r->sep)
        rc = sl_sep_open(&w->sep, r->cfg->sep_model, r->cfg->sep_weights, &r->cfg->sep_options, w->ctx);
    if (!rc && r->emb)
        rc = sl_emb_open(&w->emb, r->cfg->emb_model, r->cfg->emb_weights, &r->cfg->emb_options, w->ctx);
    if (rc) {
        char m[512];
        sl_log(SL_LOG_ERROR, NULL, "worker", "%s: %s", name, sl_errmsg(rc, m, sizeof m));
    } else {
        sl_log(SL_LOG_INFO, NULL, "worker", "worker %d on %s", w->id, sl_op_ctx_device(w->ctx));
    }
    return rc;
}

static void *worker_thread(void *arg)
{
    worker *w = arg;
    runner *r = w->r;
    slot *batch[256];
    int rc = worker_init(w);
    pthread_mutex_lock(&r->mu);
    r->workers_ready++;
    if (rc)
        r->workers_failed++;
    pthread_cond_broadcast(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
    for (; !rc;) {
        size_t max = w->max_batch < 256 ? w->max_batch : 256;
        size_t n = pop_batch(r, batch, max);
        if (n == 0)
            break;
        /* segments of tracks that already failed are not worth computing */
        size_t live = 0;
        for (size_t b = 0; b < n; b++) {
            trk *t = batch[b]->t;
            pthread_mutex_lock(&t->mu);
            int dead = t->failed || t->abandoned || stop_requests >= 2;
            pthread_mutex_unlock(&t->mu);
            if (dead)
                push_write(r, batch[b]);
            else
                batch[live++] = batch[b];
        }
        if (live)
            run_batch(w, batch, live);
        for (size_t b = 0; b < live; b++)
            push_write(r, batch[b]);
    }
    pthread_mutex_lock(&r->mu);
    r->workers_left--;
    pthread_cond_broadcast(&r->cv_write);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- writers ---- */

static void write_one(runner *r, slot *s)
{
    trk *t = s->t;
    int fin = 0;
    pthread_mutex_lock(&t->mu);
    if (t->failed || t->abandoned) {
        while (t->pending) {
            slot *p = t->pending;
            t->pending = p->next;
            fin |= release_locked(r, t, p);
        }
        fin |= release_locked(r, t, s);
    } else if (s->kind == KIND_EMB) {
        double w = (double)s->len;
        int dim = r->emb->dim, ns = r->emb->n_scores;
        double *vs = t->vsum + (size_t)s->src * (size_t)dim;
        for (int i = 0; i < dim; i++)
            vs[i] += w * s->vec[i];
        if (t->ssum)
            for (int i = 0; i < ns; i++)
                t->ssum[(size_t)s->src * (size_t)ns + (size_t)i] += w * s->scores[i];
        t->vweight[s->src] += w;
        if (r->cfg->emb_timeline && timeline_put(t, s->src, s->k, s->vec, dim, (double)(s->k * r->emb_H) / r->emb->sample_rate,
                                                 (double)(s->k * r->emb_H + s->len) / r->emb->sample_rate))
            trk_fail(t, "embed: out of memory for the timeline");
        fin = release_locked(r, t, s);
    } else {
        /* segments may come back out of order (several workers): keep the early
         * ones until their turn */
        slot **pp = &t->pending;
        while (*pp && (*pp)->k < s->k)
            pp = &(*pp)->next;
        s->next = *pp;
        *pp = s;
        while (t->pending && t->pending->k == t->sep_next && !t->failed && !t->abandoned) {
            slot *p = t->pending;
            t->pending = p->next;
            stitch_write(r, t, p);
            t->sep_next++;
            fin |= release_locked(r, t, p);
        }
        if (t->failed || t->abandoned)
            while (t->pending) {
                slot *p = t->pending;
                t->pending = p->next;
                fin |= release_locked(r, t, p);
            }
    }
    pthread_mutex_unlock(&t->mu);
    if (fin)
        finalize(r, t);
}

static void *writer_thread(void *arg)
{
    runner *r = arg;
    slot *s;
    while ((s = pop_write(r)))
        write_one(r, s);
    return NULL;
}

/* ---- setup ---- */

static int open_models(runner *r, sl_op_ctx *ctx)
{
    const sl_config *c = r->cfg;
    int rc;
    if (strcmp(c->sep_model, "none")) {
        rc = sl_sep_open(&r->sep_model, c->sep_model, c->sep_weights, &c->sep_options, ctx);
        if (rc)
            return rc;
        r->sep = sl_sep_get_info(r->sep_model);
    }
    if (strcmp(c->emb_model, "none")) {
        rc = sl_emb_open(&r->emb_model, c->emb_model, c->emb_weights, &c->emb_options, ctx);
        if (rc)
            return rc;
        r->emb = sl_emb_get_info(r->emb_model);
    }
    return 0;
}
/* The folder of the stems written only to be embedded: created, and emptied of
 * what a killed run of this prefix left there. */
static int scratch_prepare(runner *r)
{
    /* one folder per shard prefix: machines sharing the output never touch
     * each other's files */
    size_t n = strlen(r->cfg->output_dir) + sizeof SCRATCH_DIR + sizeof r->prefix + 8;
    if (!(r->scratch_dir = malloc(n)))
        return SL_ENOMEM;
    snprintf(r->scratch_dir, n, "%s/%s/%srun", r->cfg->output_dir, SCRATCH_DIR, r->prefix);
    int rc = sl_mkdirs(r->scratch_dir);
    if (rc)
        return rc;
    sl_atomic_sweep(r->scratch_dir);
    DIR *d = opendir(r->scratch_dir);
    if (!d)
        return sl_seterr(-errno, "%s: %s", r->scratch_dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        /* ours: t<index>-<stem>.wav */
        if (nm[0] != 't' || nm[1] < '0' || nm[1] > '9')
            continue;
        size_t len = strlen(nm);
        if (len > 4 && !strcmp(nm + len - 4, ".wav"))
            unlinkat(dirfd(d), nm, 0);
    }
    closedir(d);
    return 0;
}

/* Rebuilds the shards of one source (or its timeline) from the ledger, with
 * their index.json; marks the run fatal on failure. */
static void write_source_shards(runner *r, const char *source, int windows, const char *prefix)
{
    const sl_config *cfg = r->cfg;
    char dir[4096], m[1024];
    snprintf(dir, sizeof dir, "%s/embeddings/%s/%s%s", cfg->output_dir, r->emb->name, source,
             windows ? "/timeline" : "");
    sl_shards_spec spec = {
        .dir = dir,
        .prefix = prefix,
        .vector_model = r->emb->name,
        .model_name = r->emb->name,
        .source = source,
        .dtype = cfg->emb_dtype,
        .shard_rows = cfg->emb_shard_rows,
        .timeline = windows,
    };
    char **written = NULL;
    size_t n_written = 0;
    int rc = sl_shards_write(&spec, r->ledger, &written, &n_written);
    if (!rc) {
        /* how these vectors were made, for `stemline search --audio` */
        sl_shards_meta meta = {
            .model = r->emb->name,
            .weights = cfg->emb_weights,
            .options = &cfg->emb_options,
            .params = r->emb->params,
            .source = source,
            .dtype = cfg->emb_dtype,
            .dim = r->emb->dim,
            .sample_rate = r->emb->sample_rate,
            .channels = r->emb->channels,
            .normalize = cfg->emb_normalize,
            .window_samples = r->emb_L,
            .hop_samples = r->emb_H,
            .config_hash = r->hash,
        };
        rc = sl_shards_write_meta(dir, prefix, &meta);
    }
    for (size_t i = 0; i < n_written; i++)
        sl_report_add_output(r->report, written[i]);
    sl_shards_free_list(written, n_written);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "shards", "%s", sl_errmsg(rc, m, sizeof m));
        r->fatal = 1;
        snprintf(r->fatal_msg, sizeof r->fatal_msg, "vector shards could not be written: %s", m);
    }
}

/* embedding.sources against the separation model's stems. */
static int resolve_sources(runner *r)
{
    const sl_config *c = r->cfg;
    r->mix_src = -1;
    r->n_esrc = 0;
    r->n_stem_esrc = 0;
    if (!r->emb)
        return 0;
    const char *at = c->emb_sources_at ? c->emb_sources_at : "embedding.sources (default)";
    if (c->n_emb_sources > SL_MAX_SOURCES + 1)
        return sl_seterr(SL_ECONFIG, "%s: key 'embedding.sources': at most %d sources", at, SL_MAX_SOURCES + 1);
    for (size_t i = 0; i < c->n_emb_sources; i++) {
        const char *name = c->emb_sources[i];
        int stem = -1;
        if (strcmp(name, "mix")) {
            for (int k = 0; r->sep && k < r->sep->n_sources; k++)
                if (!strcmp(r->sep->sources[k], name))
                    stem = k;
            if (stem < 0) {
                char list[512] = "";
                for (int k = 0; r->sep && k < r->sep->n_sources; k++) {
                    strncat(list, k ? ", " : "", sizeof list - strlen(list) - 1);
                    strncat(list, r->sep->sources[k], sizeof list - strlen(list) - 1);
                }
                return sl_seterr(SL_ECONFIG,
                                 "%s: key 'embedding.sources': '%s' is not 'mix' nor a stem of separation model %s "
                                 "(stems: %s)",
                                 at, name, r->sep ? r->sep->name : "none", r->sep ? list : "none");
            }
            r->n_stem_esrc++;
        } else {
            r->mix_src = (int)i;
        }
        r->esrc[r->n_esrc] = name;
        r->esrc_stem[r->n_esrc++] = stem;
    }
    return 0;
}

static int check_writable(const char *dir)
{
    int rc = sl_mkdirs(dir);
    if (rc)
        return rc;
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.stemline-write-test-%d", dir, (int)getpid());
    FILE *f = fopen(probe, "w");
    if (!f)
        return sl_seterr(-errno, "output folder %s is not writable: %s", dir, strerror(errno));
    fclose(f);
    unlink(probe);
    return 0;
}
static void print_dry_run(runner *r)
{
    printf("# resolved configuration\n");
    sl_cfg_dump(r->cfg, stdout);
    printf("# config hash: %s\n", r->hash);
    if (r->sep)
        printf("# separation: %s (%s)\n", r->sep->name, r->sep->params);
    if (r->emb) {
        printf("# embedding: %s (%s)\n", r->emb->name, r->emb->params);
        printf("# embedded sources:");
        for (int i = 0; i < r->n_esrc; i++)
            printf(" %s", r->esrc[i]);
        printf("%s\n", r->cfg->emb_timeline ? " (with timelines)" : "");
    }
    if (r->opts->shard_count > 1)
        printf("# shard %d of %d\n", r->opts->shard_index, r->opts->shard_count);
    printf("# %zu tracks\n", r->cat.n);
    for (size_t i = 0; i < r->cat.n; i++) {
        const sl_track *t = &r->cat.tracks[i];
        const char *state = "todo";
        if (r->ledger) {
            int d = sl_ledger_is_done(r->ledger, t->id, t->path, t->size, t->mtime_ns, r->hash);
            state = d == 1 ? "done" : "todo";
        }
        printf("%s\t%s\t%s\n", state, t->id, t->path);
    }
}

static void pipeline_json(runner *r, char *buf, size_t size)
{
    double avg_ready = r->ready_len_samples ? r->ready_len_sum / (double)r->ready_len_samples : 0;
    double avg_batch = r->batches ? (double)r->batch_items / (double)r->batches : 0;
    const char *bound = "balanced";
    /* the stage that others wait for bounds the run */
    if (r->wait_ready_s > 2 * r->wait_slot_s && r->wait_ready_s > 0.1)
        bound = "decode (the model waited for input)";
    else if (r->wait_slot_s > 2 * r->wait_ready_s && r->wait_slot_s > 0.1)
        bound = "model or write (decoding waited for free segment buffers)";
    snprintf(buf, size,
             "{\"segment_samples\": %zu, \"segment_hop\": %zu, \"window_samples\": %zu, \"window_hop\": %zu, "
             "\"slots_max\": %zu, \"slots_allocated\": %zu, \"slots_peak_in_use\": %zu, \"slot_mb\": %.3f, "
             "\"batch_size\": %d, \"batches\": %zu, \"mean_batch\": %.2f, \"batch_splits\": %zu, "
             "\"cpu_fallbacks\": %zu, \"ready_queue_mean\": %.2f, \"ready_queue_max\": %zu, "
             "\"decode_waited_for_slots_s\": %.3f, \"model_waited_for_input_s\": %.3f, "
             "\"writers_waited_s\": %.3f, \"bound_by\": \"%s\", \"workers\": %d, \"decode_threads\": %d}",
             r->sep_L, r->sep_H, r->emb_L, r->emb_H, r->n_slots_max, r->n_slots, r->peak_in_use,
             (double)r->slot_floats * 4.0 / 1048576.0, r->cfg->batch_size, r->batches, avg_batch, r->splits,
             r->fallbacks, avg_ready, r->max_ready, r->wait_slot_s, r->wait_ready_s, r->wait_write_s, bound,
             r->n_workers, r->cfg->decode_threads);
}

/* Segment geometry and the slot pool size, from the models and the config. */
static int plan_memory(runner *r)
{
    const sl_config *c = r->cfg;
    size_t sep_floats = 0, emb_floats = 0;
    if (r->sep) {
        double seg, ovl;
        sl_sep_default_segment(r->sep, &seg, &ovl);
        if (c->sep_segment_s > 0)
            seg = c->sep_segment_s;
        if (c->sep_overlap_s >= 0)
            ovl = c->sep_overlap_s;
        size_t L = (size_t)llround(seg * r->sep->sample_rate);
        size_t O = (size_t)llround(ovl * r->sep->sample_rate);
        if (L < 1)
            L = 1;
        if (2 * O > L)
            return sl_seterr(SL_ECONFIG,
                             "separation.overlap_seconds (%g) must be at most half of separation.segment_seconds (%g)",
                             ovl, seg);
        if (r->sep->channels > SL_SEG_MAX_CH)
            return sl_seterr(SL_EUNSUPPORTED, "models with more than %d channels", SL_SEG_MAX_CH);
        r->sep_L = L;
        r->sep_H = L - O;
        sep_floats = L * (size_t)r->sep->channels * (size_t)(1 + r->sep->n_sources);
    }
    if (r->emb) {
        double win = c->emb_window_s > 0 ? c->emb_window_s : sl_emb_default_window(r->emb);
        double hop = c->emb_hop_s > 0 ? c->emb_hop_s : win;
        if (hop > win)
            return sl_seterr(SL_ECONFIG, "embedding.hop_seconds (%g) must not exceed embedding.window_seconds (%g)",
                             hop, win);
        size_t L = (size_t)llround(win * r->emb->sample_rate);
        size_t H = (size_t)llround(hop * r->emb->sample_rate);
        r->emb_L = L ? L : 1;
        r->emb_H = H ? (H > r->emb_L ? r->emb_L : H) : 1;
        if (r->emb->channels > SL_SEG_MAX_CH)
            return sl_seterr(SL_EUNSUPPORTED, "models with more than %d channels", SL_SEG_MAX_CH);
        emb_floats = r->emb_L * (size_t)r->emb->channels + (size_t)r->emb->dim + (size_t)r->emb->n_scores;
    }
    r->slot_floats = sep_floats > emb_floats ? sep_floats : emb_floats;
    double slot_mb = (double)r->slot_floats * 4.0 / 1048576.0;
    /* each decode thread must be able to hold one slot while the model holds a batch */
    size_t need = (size_t)c->decode_threads + 1;
    size_t n = (size_t)((double)c->max_host_memory_mb / slot_mb);
    if (n < need)
        return sl_seterr(SL_ECONFIG,
                         "runtime.max_host_memory_mb (%d) is too small: segments of this job take %.1f MB each and "
                         "%zu are needed at least (decode_threads + 1): raise it to %.0f or shorten the segments",
                         c->max_host_memory_mb, slot_mb, need, ceil(slot_mb * (double)need));
    /* Decoding further ahead than one batch per worker (plus one segment per
     * decoder and a little slack) buys nothing: cap there, below the bound, so
     * a fast decoder does not fill memory for nothing. */
    size_t useful = (size_t)c->batch_size + (size_t)c->decode_threads + 2;
    r->n_slots_max = n < useful ? n : useful;
    return 0;
}

static int start_workers(runner *r, sl_op_ctx *ctx)
{
    /* One worker per device in runtime.devices. The CPU backend gets one
     * worker: its context is single-threaded, and the other cores decode and
     * encode. */
    const sl_config *c = r->cfg;
    int devs[64], nd = 0;
    if (!strcmp(sl_op_ctx_backend(ctx), "cuda")) {
        int count = sl_op_device_count();
        for (size_t i = 0; i < c->n_devices && nd < 64; i++) {
            if (!strcmp(c->devices[i], "all")) {
                for (int d = 0; d < count && nd < 64; d++)
                    devs[nd++] = d;
                continue;
            }
            char *end;
            long d = strtol(c->devices[i], &end, 10);
            if (end == c->devices[i] || *end || d < 0 || d >= count)
                return sl_seterr(SL_ECONFIG, "runtime.devices: '%s' is not a CUDA device here (%d device%s: 0..%d)",
                                 c->devices[i], count, count == 1 ? "" : "s", count - 1);
            devs[nd++] = (int)d;
        }
    }
    r->n_workers = nd > 1 ? nd : 1;
    r->workers = calloc((size_t)r->n_workers, sizeof *r->workers);
    if (!r->workers)
        return SL_ENOMEM;
    for (int i = 0; i < r->n_workers; i++) {
        worker *w = &r->workers[i];
        w->r = r;
        w->id = i;
        w->max_batch = (size_t)c->batch_size;
        w->device = nd > 1 ? devs[i] : -1;
        if (w->device < 0) {
            /* the context the models were opened on (device 0 or the CPU) */
            w->ctx = ctx;
            w->sep = r->sep_model;
            w->emb = r->emb_model;
        }
    }
    return 0;
}

static void close_workers(runner *r)
{
    for (int i = 0; r->workers && i < r->n_workers; i++) {
        worker *w = &r->workers[i];
        if (w->owns) {
            if (w->sep)
                sl_sep_close(w->sep);
            if (w->emb)
                sl_emb_close(w->emb);
            sl_op_ctx_close(w->ctx);
        }
        if (w->cpu_sep)
            sl_sep_close(w->cpu_sep);
        if (w->cpu_emb)
            sl_emb_close(w->cpu_emb);
        if (w->cpu_ctx)
            sl_op_ctx_close(w->cpu_ctx);
    }
    free(r->workers);
    r->workers = NULL;
}

static int run_pipeline(runner *r)
{
    const sl_config *cfg = r->cfg;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv_slot, NULL);
    pthread_cond_init(&r->cv_ready, NULL);
    pthread_cond_init(&r->cv_write, NULL);
    pthread_cond_init(&r->cv_stem, NULL);
    int nd = cfg->decode_threads > 0 ? cfg->decode_threads : 1;
    if ((size_t)nd > r->cat.n && r->cat.n > 0)
        nd = (int)r->cat.n;
    int nwr = nd < 2 ? 2 : nd;
    pthread_t *dth = calloc((size_t)nd, sizeof *dth), *wth = calloc((size_t)nwr, sizeof *wth);
    int ok = dth && wth;
    int started_d = 0, started_w = 0;
    r->decoders_left = nd;
    r->workers_left = r->n_workers;
    for (int i = 0; ok && i < r->n_workers; i++) {
        if (pthread_create(&r->workers[i].th, NULL, worker_thread, &r->workers[i]) == 0)
            r->workers[i].started = 1;
        else
            ok = 0;
    }
    /* decoders start once every worker has its device (or has failed to) */
    pthread_mutex_lock(&r->mu);
    while (ok && r->workers_ready < r->n_workers)
        pthread_cond_wait(&r->cv_ready, &r->mu);
    int live = r->n_workers - r->workers_failed;
    pthread_mutex_unlock(&r->mu);
    if (ok && live <= 0) {
        set_fatal(r, "%s", "no model worker could start (see the errors above)");
        ok = 0;
    }
    for (int i = 0; ok && i < nwr; i++) {
        if (pthread_create(&wth[i], NULL, writer_thread, r) == 0)
            started_w++;
        else
            ok = 0;
    }
    for (int i = 0; i < nd; i++) {
        if (ok && pthread_create(&dth[i], NULL, decode_thread, r) == 0) {
            started_d++;
        } else {
            pthread_mutex_lock(&r->mu);
            r->decoders_left--;
            pthread_cond_broadcast(&r->cv_ready);
            pthread_mutex_unlock(&r->mu);
            ok = 0;
        }
    }
    if (!ok) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "could not start the pipeline threads");
        set_fatal(r, "%s", "could not start the pipeline threads");
    }
    for (int i = 0; i < started_d; i++)
        pthread_join(dth[i], NULL);
    for (int i = 0; i < r->n_workers; i++) {
        if (r->workers[i].started) {
            pthread_join(r->workers[i].th, NULL);
        } else {
            pthread_mutex_lock(&r->mu);
            r->workers_left--;
            pthread_cond_broadcast(&r->cv_write);
            pthread_mutex_unlock(&r->mu);
        }
    }
    for (int i = 0; i < started_w; i++)
        pthread_join(wth[i], NULL);
    free(dth);
    free(wth);
    pool_free_all(r);
    pthread_cond_destroy(&r->cv_write);
    pthread_cond_destroy(&r->cv_stem);
    pthread_cond_destroy(&r->cv_ready);
    pthread_cond_destroy(&r->cv_slot);
    pthread_mutex_destroy(&r->mu);
    return ok ? 0 : SL_ENOMEM;
}

int sl_run(const sl_config *cfg, const sl_run_opts *opts)
{
    runner R;
    memset(&R, 0, sizeof R);
    runner *r = &R;
    r->cfg = cfg;
    r->opts = opts;
    int status = SL_EXIT_OK, rc;
    char m[1024];
    sl_op_ctx *ctx = NULL;
    double t_start = now_s();
    stop_requests = 0;

    if (!strcmp(cfg->sep_model, "none") && !strcmp(cfg->emb_model, "none")) {
        sl_log(SL_LOG_ERROR, NULL, NULL,
               "%s: separation.model and embedding.model are both none: nothing to do",
               cfg->source_file ? cfg->source_file : "job");
        return SL_EXIT_USAGE;
    }
    if (cfg->n_input_paths == 0 && !cfg->input_manifest) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "%s: no input: set input.paths or input.manifest",
               cfg->source_file ? cfg->source_file : "job");
        return SL_EXIT_USAGE;
    }
    rc = sl_catalog_scan(&r->cat, (const char *const *)cfg->input_paths, cfg->n_input_paths,
                         cfg->input_manifest, (const char *const *)cfg->input_extensions,
                         cfg->n_input_extensions);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "catalog", "%s", sl_errmsg(rc, m, sizeof m));
        return SL_EXIT_USAGE;
    }
    if (opts->shard_count > 1 && sl_catalog_shard(&r->cat, opts->shard_index, opts->shard_count)) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "invalid shard %d/%d", opts->shard_index, opts->shard_count);
        sl_catalog_free(&r->cat);
        return SL_EXIT_USAGE;
    }
    sl_cfg_output_hash(cfg, r->hash);

    /* The dry run and option errors must not need a device. */
    const char *backend = opts->dry_run ? "cpu" : cfg->backend;
    rc = sl_op_ctx_open(&ctx, backend);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "backend", "%s", sl_errmsg(rc, m, sizeof m));
        sl_catalog_free(&r->cat);
        return SL_EXIT_FATAL;
    }
    rc = open_models(r, ctx);
    if (!rc)
        rc = resolve_sources(r);
    if (!rc)
        rc = check_output_collisions(r);
    if (!rc)
        rc = plan_memory(r);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "%s", sl_errmsg(rc, m, sizeof m));
        /* a malformed weights file (SL_EFORMAT) is as permanent as a bad config */
        status = rc == SL_ECONFIG || rc == SL_EINVAL || rc == SL_EFORMAT ? SL_EXIT_USAGE : SL_EXIT_FATAL;
        goto out;
    }

    char prefix[64];
    sl_shard_prefix(opts->shard_index, opts->shard_count, prefix, sizeof prefix);
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    r->scratch = r->sep && r->n_stem_esrc > 0 && !cfg->stems_enabled;
    r->write_stems = r->sep && (cfg->stems_enabled || r->scratch);
    r->out_dir = strdup(cfg->output_dir);
    size_t lp = strlen(cfg->output_dir) + 96;
    r->ledger_path = malloc(lp);
    if (!r->out_dir || !r->ledger_path) {
        status = SL_EXIT_FATAL;
        goto out;
    }
    snprintf(r->ledger_path, lp, "%s/%sledger.sqlite", cfg->output_dir, prefix);

    if (opts->dry_run) {
        struct stat st;
        if (stat(r->ledger_path, &st) == 0 && sl_ledger_open(&r->ledger, r->ledger_path))
            r->ledger = NULL;
        print_dry_run(r);
        goto out;
    }

    rc = check_writable(cfg->output_dir);
    if (!rc && r->scratch)
        rc = scratch_prepare(r);
    if (!rc)
        rc = sl_ledger_open(&r->ledger, r->ledger_path);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "output", "%s", sl_errmsg(rc, m, sizeof m));
        status = SL_EXIT_FATAL;
        goto out;
    }
    sl_log(SL_LOG_INFO, NULL, NULL, "%zu tracks, backend %s (%s), separation %s, embedding %s, output %s",
           r->cat.n, sl_op_ctx_backend(ctx), sl_op_ctx_device(ctx), r->sep ? r->sep->name : "none",
           r->emb ? r->emb->name : "none", cfg->output_dir);

    r->report = sl_report_new(cfg, r->hash, sl_op_ctx_backend(ctx), sl_op_ctx_device(ctx),
                              opts->shard_index, opts->shard_count);
    int64_t total_bytes = 0;
    for (size_t i = 0; i < r->cat.n; i++)
        total_bytes += r->cat.tracks[i].size > 0 ? r->cat.tracks[i].size : 0;
    r->progress = sl_progress_start(r->cat.n, total_bytes, opts->quiet ? 0 : opts->progress,
                                    cfg->progress_interval);

    r->host_ctx = ctx;
    if (r->emb && r->emb->n_scores > 0)
        r->labels = sl_labels_for(r->emb->n_scores);
    rc = start_workers(r, ctx);
    if (rc == SL_ECONFIG) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "%s", sl_errmsg(rc, m, sizeof m));
        sl_progress_stop(r->progress);
        r->progress = NULL;
        status = SL_EXIT_USAGE;
        goto out;
    }
    if (rc == 0) {
        run_pipeline(r);
    } else {
        sl_log(SL_LOG_ERROR, NULL, NULL, "%s", sl_errmsg(rc, m, sizeof m));
        set_fatal(r, "%s", m);
    }
    sl_progress_stop(r->progress);
    r->progress = NULL;
    if (r->disk_full)
        set_fatal(r, "%s", "the output disk is full: tracks in flight were abandoned (they are not in the "
                           "ledger); free space and run the same command again to resume");

    /* Shards are rebuilt from the ledger: they hold every done track, whichever
     * run did it, so an interrupted or partial run never leaves them stale. */
    if (r->emb && !r->fatal) {
        double t0 = now_s();
        /* one folder of shards per embedded source, and one more per timeline */
        for (int i = 0; i < r->n_esrc && !r->fatal; i++)
            for (int tl = 0; tl <= (cfg->emb_timeline ? 1 : 0) && !r->fatal; tl++)
                write_source_shards(r, r->esrc[i], tl, prefix);
        sl_report_stage_time(r->report, "shards", now_s() - t0);
        if (!r->fatal && r->emb->n_scores > 0 && cfg->emb_tags_top_k > 0) {
            char tp[4096];
            snprintf(tp, sizeof tp, "%s/tags/%s/%stags.jsonl", cfg->output_dir, r->emb->name, prefix);
            rc = sl_tags_write(tp, r->ledger, r->emb->name, r->esrc, (size_t)r->n_esrc);
            if (rc) {
                sl_log(SL_LOG_ERROR, NULL, "tags", "%s", sl_errmsg(rc, m, sizeof m));
                r->fatal = 1;
                snprintf(r->fatal_msg, sizeof r->fatal_msg, "tags could not be written: %s", m);
            } else {
                sl_report_add_output(r->report, tp);
            }
        }
    }

    {
        char pj[2048];
        pipeline_json(r, pj, sizeof pj);
        sl_report_set_json(r->report, "pipeline", pj);
        char rp[4096];
        snprintf(rp, sizeof rp, "%s/%sreport.json", cfg->output_dir, prefix);
        sl_report_finish(r->report, now_s() - t_start, stop_requests != 0, r->fatal ? r->fatal_msg : NULL);
        rc = sl_report_write(r->report, rp);
        if (rc) {
            sl_log(SL_LOG_ERROR, NULL, "report", "%s", sl_errmsg(rc, m, sizeof m));
            r->fatal = 1;
        }
        sl_report_summary(r->report, opts->quiet ? NULL : stderr);
        if (r->fatal) {
            sl_log(SL_LOG_ERROR, NULL, NULL, "%s", r->fatal_msg);
            status = SL_EXIT_FATAL;
        } else if (stop_requests) {
            status = SL_EXIT_INTERRUPTED;
        } else if (sl_report_failed_count(r->report) > 0) {
            status = SL_EXIT_FAILED;
        }
    }

out:
    close_workers(r);
    sl_report_free(r->report);
    if (r->ledger)
        sl_ledger_close(r->ledger);
    if (r->sep_model)
        sl_sep_close(r->sep_model);
    if (r->emb_model)
        sl_emb_close(r->emb_model);
    if (ctx)
        sl_op_ctx_close(ctx);
    sl_catalog_free(&r->cat);
    if (r->scratch_dir) {
        /* when empty */
        if (rmdir(r->scratch_dir) == 0) {
            char *slash = strrchr(r->scratch_dir, '/');
            *slash = 0;
            rmdir(r->scratch_dir);
        }
    }
    free(r->scratch_dir);
    free(r->out_dir);
    free(r->ledger_path);
    return status;
}
