/* Job runner: decode threads (tracks in catalog order cut into segments and
 * embedding windows, stems decoded back for their embeddings). */
#include "run_internal.h"

/* ---- decode threads ---- */

typedef struct {
    sl_decoder *d;
    int out; /* the decoder output this stream reads */
} dec_arg;

/* Frames one read takes at most: the decoder then holds about this much
 * decoded audio (and a packet's) between reads, in cache, instead of growing
 * its buffer to the whole rest of a segment (30 s and more: memory touched
 * anew for every track, then copied once more) before the first sample is
 * copied out. The cutters read until they have what they need. */
#define DEC_READ_FRAMES 16384

static long dec_read(void *arg, float *const *dst, long max)
{
    dec_arg *a = arg;
    return sl_decoder_read_output(a->d, a->out, dst, max < DEC_READ_FRAMES ? max : DEC_READ_FRAMES);
}

/* One kind of segments cut from a decoder output. */
typedef struct {
    int kind, src, rate, ch;
    size_t L, H, k;
    sl_segmenter sg;
    sl_demix_cutter dc; /* instead of sg: separation chunks when the runner demixes */
    sl_dmx_cutter xc;   /* instead of sg: the demucs command's segments (dmx) */
    int demix, dmx;
    double mean, std;
    dec_arg da;
    int done, init;
} dstream;

/* samples of the track this stream has read */
static size_t dstream_total(const dstream *s) { return s->dmx ? s->xc.b1 : s->demix ? s->dc.total : s->sg.total; }

static void dstream_set(runner *r, dstream *s, int kind, int src)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->src = src;
    s->rate = kind == KIND_SEP ? r->sep->sample_rate : r->emb->sample_rate;
    s->ch = kind == KIND_SEP ? r->sep->channels : r->emb->channels;
    s->L = kind == KIND_SEP ? r->sep_L : r->emb_L;
    s->H = kind == KIND_SEP ? r->sep_H : r->emb_H;
    s->demix = kind == KIND_SEP ? r->demix : 0;
    s->dmx = kind == KIND_SEP ? r->dmx : 0;
}

/* Cuts the next segment of stream s into a slot and queues it; 1 when one was
 * queued, 0 at the end of the stream, or a negative code after marking the
 * track failed/abandoned. */
static int stream_next(runner *r, trk *t, dstream *s)
{
    char m[600];
    if (should_stop(r)) {
        pthread_mutex_lock(&t->mu);
        trk_abandon(t, atomic_load(&stop_requests) ? "interrupted" : "the run stopped");
        pthread_mutex_unlock(&t->mu);
        return SL_EINTERRUPTED;
    }
    pthread_mutex_lock(&t->mu);
    int dead = t->failed || t->abandoned;
    pthread_mutex_unlock(&t->mu);
    if (dead)
        return SL_EINTERRUPTED;
    slot *sl = pool_acquire(r);
    if (!sl) {
        pthread_mutex_lock(&t->mu);
        if (should_stop(r))
            trk_abandon(t, atomic_load(&stop_requests) ? "interrupted" : "the run stopped");
        else
            trk_fail(t, "out of memory for a segment buffer");
        pthread_mutex_unlock(&t->mu);
        return SL_ENOMEM;
    }
    slot_layout(r, sl, s->kind);
    sl->src = s->src;
    tokens_take(r, 1, (long)t->index); /* decoding computes: one token of runtime.threads */
    trace_mark tm = trace_begin();
    long len = s->dmx     ? sl_dmx_cutter_next(&s->xc, dec_read, &s->da, sl->in, &sl->xpos)
               : s->demix ? sl_demix_cutter_next(&s->dc, dec_read, &s->da, sl->in, &sl->dpos)
                          : sl_segmenter_next(&s->sg, dec_read, &s->da, sl->in);
    trace_end(tm, "decode", (long)t->index);
    tokens_give(r, 1);
    if (len <= 0) {
        pool_release(r, sl);
        if (len < 0) {
            int rc = (int)len;
            pthread_mutex_lock(&t->mu);
            if (rc == SL_EINTERRUPTED || should_stop(r))
                trk_abandon(t, stop_requests ? "interrupted" : "the run stopped");
            else
                trk_fail(t, "decode: %s", sl_errmsg(rc, m, sizeof m));
            pthread_mutex_unlock(&t->mu);
            return rc;
        }
        return 0;
    }
    sl->t = t;
    sl->k = s->k++;
    sl->len = (size_t)len;
    pthread_mutex_lock(&t->mu);
    t->in_flight++;
    pthread_mutex_unlock(&t->mu);
    push_ready(r, sl);
    return 1;
}

/* The demucs command's whole-track statistics: a first decode of the track at the separation rate and
 * channels, the mean and std of its mono sum (pipeline/demucs_split.h). A silent track (std 0) keeps
 * std 1, where demucs would divide by zero. Returns 0 or a negative code after marking the track failed. */
static int dmx_stats(runner *r, trk *t)
{
    sl_decoder *d = NULL;
    char m[600];
    const int ch = r->sep->channels;
    float *buf = malloc(sizeof(float) * 4096 * (size_t)ch);
    /* a whole decode of the track: one token */
    tokens_take(r, 1, (long)t->index);
    trace_mark tm = trace_begin();
    int rc = buf ? sl_decoder_open(&d, t->tr->path, r->sep->sample_rate, ch) : SL_ENOMEM;
    sl_dmx_stats st = {0, 0, 0};
    float *dst[SL_SEG_MAX_CH];
    for (int c = 0; c < ch && buf; c++)
        dst[c] = buf + (size_t)c * 4096;
    while (!rc && !should_stop(r)) {
        long got = sl_decoder_read_output(d, 0, dst, 4096);
        if (got <= 0) {
            rc = got < 0 ? (int)got : 0;
            break;
        }
        sl_dmx_stats_add(&st, (const float *const *)dst, ch, (size_t)got);
    }
    trace_end(tm, "decode_stats", (long)t->index);
    tokens_give(r, 1);
    sl_decoder_close(d);
    free(buf);
    if (rc) {
        sl_errmsg(rc, m, sizeof m);
        (void)run_need_ffmpeg(r); /* an FFmpeg that did not load stops the run: the track is abandoned */
        pthread_mutex_lock(&t->mu);
        if (rc == SL_EINTERRUPTED || should_stop(r))
            trk_abandon(t, stop_requests ? "interrupted" : "the run stopped");
        else
            trk_fail(t, "decode (statistics pass): %s", m);
        pthread_mutex_unlock(&t->mu);
        return rc;
    }
    sl_dmx_stats_get(&st, &t->x_mean, &t->x_std);
    if (!(t->x_std > 0))
        t->x_std = 1.0;
    return 0;
}

/* Streams segments of a track into the ready queue: from its input (path
 * NULL), or from one of its stems. One decoder serves every stream: the
 * separation segments and the mix's embedding windows are cut from outputs
 * of one decode (sl_decoder_add_output), read in step (the stream that is
 * furthest behind in time goes next) so neither output buffers more than
 * about one segment. Returns 0, or a negative code after marking the track
 * failed/abandoned. */
static int decode_streams(runner *r, trk *t, dstream *st, int n, const char *path)
{
    sl_decoder *d = NULL;
    char m[600];
    /* opening probes the file and sets up the resamplers: it computes */
    tokens_take(r, 1, (long)t->index);
    trace_mark tm = trace_begin();
    int rc = sl_decoder_open(&d, path ? path : t->tr->path, st[0].rate, st[0].ch);
    for (int i = 1; i < n && !rc; i++) {
        int idx = sl_decoder_add_output(d, st[i].rate, st[i].ch);
        rc = idx < 0 ? idx : 0;
        st[i].da.out = idx;
    }
    trace_end(tm, "decoder_open", (long)t->index);
    tokens_give(r, 1);
    if (rc) {
        sl_decoder_close(d);
        (void)run_need_ffmpeg(r); /* an FFmpeg that did not load stops the run: the track is abandoned */
        pthread_mutex_lock(&t->mu);
        if (rc == SL_EINTERRUPTED || should_stop(r))
            trk_abandon(t, stop_requests ? "interrupted" : "the run stopped");
        else if (path)
            trk_fail(t, "embed stem '%s': decode: %s", r->esrc[st[0].src], sl_errmsg(rc, m, sizeof m));
        else
            trk_fail(t, "decode: %s", sl_errmsg(rc, m, sizeof m));
        pthread_mutex_unlock(&t->mu);
        return rc;
    }
    atomic_fetch_add(&r->decodes, 1);
    const sl_audio_info *info = sl_decoder_info(d);
    if (!path) {
        t->source_rate = info->sample_rate;
        /* our own stems state their length exactly; inputs may be cut short */
        if (r->cfg->input_max_missing < 1)
            sl_decoder_set_max_missing(d, r->cfg->input_max_missing);
    }
    dstream *sep = NULL;
    for (int i = 0; i < n; i++)
        if (st[i].kind == KIND_SEP)
            sep = &st[i];
    if (sep && r->write_stems) {
        tm = trace_begin();
        pthread_mutex_lock(&t->mu);
        rc = prepare_stems(r, t, m, sizeof m);
        if (rc)
            trk_output_error(r, t, rc, m);
        pthread_mutex_unlock(&t->mu);
        trace_end(tm, "stems_prepare", (long)t->index);
        if (rc) {
            sl_decoder_close(d);
            return rc;
        }
    }
    for (int i = 0; i < n && !rc; i++) {
        st[i].da.d = d;
        rc = st[i].dmx     ? sl_dmx_cutter_init(&st[i].xc, &r->dmx_geom, st[i].ch, t->x_mean, t->x_std)
             : st[i].demix ? sl_demix_cutter_init(&st[i].dc, st[i].L, st[i].demix, st[i].ch)
                           : sl_segmenter_init(&st[i].sg, st[i].L, st[i].H, st[i].ch);
        st[i].init = !rc;
    }
    for (int live = n; !rc && live > 0;) {
        /* the stream furthest behind in time goes next */
        dstream *s = NULL;
        for (int i = 0; i < n; i++)
            if (!st[i].done && (!s || (double)dstream_total(&st[i]) * s->rate < (double)dstream_total(s) * st[i].rate))
                s = &st[i];
        int got = stream_next(r, t, s);
        if (got < 0)
            rc = got;
        else if (got == 0) {
            s->done = 1;
            live--;
        }
    }
    if (!rc && dstream_total(&st[0]) == 0) {
        pthread_mutex_lock(&t->mu);
        trk_fail(t, "decode: %s: zero-length audio (no sample decoded)", t->tr->path);
        pthread_mutex_unlock(&t->mu);
        rc = SL_EEMPTY;
    }
    if (!path) {
        /* the track's length at the rate of its stems (or of its embedding
         * model), and what decoding saw, for the ledger and the report */
        const dstream *m0 = sep ? sep : &st[0];
        t->n_samples = dstream_total(m0);
        t->rate = m0->rate;
        t->dec.decoded_s = sl_decoder_decoded_seconds(d);
        t->dec.stated_s = info->duration;
        t->dec.bad_packets = sl_decoder_bad_packets(d);
        t->dec.nonfinite = sl_decoder_nonfinite(d);
    }
    if (sep)
        t->sep_total = sep->k;
    for (int i = 0; i < n; i++)
        if (st[i].init) {
            sl_segmenter_free(&st[i].sg);
            sl_demix_cutter_free(&st[i].dc);
            sl_dmx_cutter_free(&st[i].xc);
        }
    tm = trace_begin();
    sl_decoder_close(d);
    trace_end(tm, "decoder_close", (long)t->index);
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
    if (fin) {
        const long ti = (long)t->index;
        tokens_take(r, 1, ti); /* finalize computes (the last samples, the stems' last frames) */
        trace_mark tm = trace_begin();
        finalize(r, t);
        trace_end(tm, "finalize", ti);
        tokens_give(r, tokens_held()); /* (finalize gives it back before its disk waits) */
    }
}

static void decode_track(runner *r, size_t i)
{
    const sl_track *tr = &r->cat.tracks[i];
    trk *t = calloc(1, sizeof *t);
    if (!t) {
        sl_log(SL_LOG_ERROR, tr->id, "decode", "out of memory");
        atomic_store(&r->stop, 1);
        live_track_release(r);
        return;
    }
    pthread_mutex_init(&t->mu, NULL);
    t->index = i;
    t->tr = tr;
    /* counted in live_tracks already: next_stem_track reserved its place */
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
    if (!rc && r->sep && r->dmx)
        rc = dmx_stats(r, t);
    if (!rc && r->sep) {
        if ((r->dmx     ? sl_dmx_joiner_init(&t->xj, &r->dmx_geom, r->sep->n_sources, r->sep->channels, 1.0,
                                             t->x_mean, t->x_std)
             : r->demix ? sl_demix_joiner_init(&t->dj, r->sep_L, r->demix, r->sep->n_sources, r->sep->channels)
                        : sl_stitcher_init(&t->st, r->sep_L, r->sep_H, r->sep->n_sources, r->sep->channels)) == 0)
            t->have_st = 1;
        else
            rc = SL_ENOMEM;
    }
    dstream st[2];
    int n = 0;
    if (r->sep)
        dstream_set(r, &st[n++], KIND_SEP, 0);
    if (r->emb && r->mix_src >= 0)
        dstream_set(r, &st[n++], KIND_EMB, r->mix_src);
    if (!rc && n > 0)
        rc = decode_streams(r, t, st, n, NULL);
    if (rc == SL_ENOMEM) {
        /* writers may fail or abandon the track meanwhile: under its lock */
        pthread_mutex_lock(&t->mu);
        trk_fail(t, "out of memory");
        pthread_mutex_unlock(&t->mu);
    }
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
            trk_abandon(t, atomic_load(&stop_requests) ? "interrupted" : "the run stopped");
            pthread_mutex_unlock(&t->mu);
            break;
        }
        if (!t->stem_path[st]) {
            pthread_mutex_lock(&t->mu);
            trk_fail(t, "embed stem '%s': the stem was not written", r->esrc[i]);
            pthread_mutex_unlock(&t->mu);
            break;
        }
        dstream one;
        dstream_set(r, &one, KIND_EMB, i);
        rc = decode_streams(r, t, &one, 1, t->stem_path[st]);
    }
    decode_finished(r, t, now_s() - t0);
}

/* The next track whose stems wait to be embedded; NULL when the caller should
 * take a new track from the catalog instead (a place among the r->max_live
 * tracks in flight is then reserved for it: live_track_release gives it back),
 * or stop (*done) because no track can come back to the queue. Queued tracks
 * go first: they hold finished work, and a decoder that waits for a place
 * keeps serving them, so the cap cannot deadlock. */
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
        if (catalog_left && r->live_tracks < r->max_live) {
            if (++r->live_tracks > r->peak_live)
                r->peak_live = r->live_tracks;
            break;
        }
        if (!catalog_left && (r->n_stem_esrc == 0 || r->live_tracks == 0)) {
            *done = 1;
            break;
        }
        /* tracks are still in flight: their stems may come back here, or
         * their places free up */
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

void *decode_thread(void *arg)
{
    runner *r = arg;
    pthread_setname_np(pthread_self(), "sl-decode");
    sl_io_set_thread_timeout(r->cfg->track_timeout_s);
    for (;;) {
        int finished;
        trk *st = next_stem_track(r, &finished);
        if (st) {
            decode_stems(r, st);
            continue;
        }
        if (finished)
            break;
        if (should_stop(r)) {
            live_track_release(r);
            break;
        }
        size_t i = atomic_fetch_add(&r->next_track, 1);
        if (i >= r->cat.n) {
            live_track_release(r);
            continue; /* another thread took the last one: wait for stems, or stop */
        }
        const sl_track *t = &r->cat.tracks[i];
        int done = sl_ledger_is_done(r->ledger, t->id, t->path, t->size, t->mtime_ns, r->hash);
        if (done == 1 && run_skip_done(r, t)) {
            live_track_release(r);
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
    pool_decoders_done(r);
    return NULL;
}
