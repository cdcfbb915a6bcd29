/* Job runner: per-track state, stem encoders, stitching, finalisation (outputs
 * renamed into place, then the ledger row) and the writer threads. */
#include "run_internal.h"
#include "zeroshot.h"

/* ---- tracks ---- */

void trk_output_error(runner *r, trk *t, int rc, const char *msg)
{
    /* A full disk, a file system gone read-only or a permission lost is the
     * output's fault, not the track's: the track is abandoned (no ledger row,
     * so the next run redoes it) and the run stops. */
    if (rc == SL_EINTERRUPTED) { /* the run is stopping (run_need_ffmpeg): not the track's fault */
        trk_abandon(t, msg);
        return;
    }
    int e = rc == -ENOSPC || rc == -EDQUOT ? ENOSPC : rc == -EROFS ? EROFS : rc == -EACCES || rc == -EPERM ? EACCES : 0;
    if (!e) {
        trk_fail(t, "%s", msg);
        return;
    }
    char why[sizeof t->err];
    snprintf(why, sizeof why, "%s: %s",
             e == ENOSPC ? "output disk full" : e == EROFS ? "output file system read-only" : "output permission lost",
             msg);
    trk_abandon(t, why);
    atomic_store(&r->disk_full, e);
    atomic_store(&r->stop, 1);
}

static void trk_vfail(trk *t, const char *fmt, va_list ap)
{
    if (t->failed || t->abandoned)
        return;
    vsnprintf(t->err, sizeof t->err, fmt, ap);
    t->failed = 1;
}

/* Caller holds t->mu. The first reason wins. */
void trk_fail(trk *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    trk_vfail(t, fmt, ap);
    va_end(ap);
}

void trk_abandon(trk *t, const char *why)
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
    if (t->have_st) {
        sl_stitcher_free(&t->st);
        sl_demix_joiner_free(&t->dj);
        sl_dmx_joiner_free(&t->xj);
    }
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
    live_track_release(r);
}

/* The stems' paths and parameters (run_internal.h); the encoders open at the
 * first write (stem_body: temporary names, renamed when the track is done). */
int prepare_stems(runner *r, trk *t, char *err, size_t errsize)
{
    const sl_config *c = r->cfg;
    sl_encode_params p = {
        .format = c->stems_format,
        .sample_format = c->stems_sample_format,
        .bitrate_kbps = c->stems_bitrate,
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
    t->enc_params = p;
    size_t olen = 1, ocap = 256;
    t->outputs = malloc(ocap);
    if (!t->outputs)
        return SL_ENOMEM;
    strcpy(t->outputs, "[");
    for (int s = 0; s < r->sep->n_sources; s++) {
        char rel[4096], full[8192];
        int rc = 0;
        if (r->scratch) {
            snprintf(rel, sizeof rel, "t%zu-%d.wav", t->index, s);
            snprintf(full, sizeof full, "%s/%s", r->scratch_dir, rel);
        } else {
            rc = expand_template(c->stems_template, t->tr->id, r->sep->sources[s], sl_encode_ext(c->stems_format), rel,
                                 sizeof rel);
            snprintf(full, sizeof full, "%s/%s", r->out_dir, rel);
        }
        if (rc) {
            snprintf(err, errsize, "output path too long");
            return rc;
        }
        /* only this file's temporaries: other tracks may be writing into the
         * same folder (templates like {stem}/{track}.{ext}) */
        sl_atomic_sweep_for(full);
        if (!(t->stem_path[s] = strdup(full)))
            return SL_ENOMEM;
        if (!r->scratch && append_json_path(&t->outputs, &olen, &ocap, rel))
            return SL_ENOMEM;
    }
    strcat(t->outputs, "]");
    return 0;
}

/* The writer thread's pool (writer_thread): a track's stems are encoded side by
 * side on tokens of the run's budget that are free (sl_pool_set_budget, the
 * writer holding one), each stem by one thread with its own encoder, so the
 * bytes do not depend on it; serial where there is none (other threads). */
static __thread sl_pool *stem_pool;

typedef struct {
    trk *t;
    float *const *const *y; /* [stem]: the planes to write (n samples each, from sample off) */
    int channels;
    size_t off, n;
    int finish;             /* then close each stem (its file complete; commit_stems puts it in place) */
    int rc[SL_MAX_SOURCES];
    char msg[SL_MAX_SOURCES][512]; /* a failed stem's message, taken on the thread that failed */
} stems_job;

static void stem_body(void *v, size_t k, int tid)
{
    (void)tid;
    stems_job *j = v;
    trk *t = j->t;
    int rc = 0;
    if (!t->enc[k] && (j->n || j->finish)) /* its first write */
        rc = sl_encoder_open(&t->enc[k], t->stem_path[k], &t->enc_params);
    if (!rc && j->n) {
        const float *planes[SL_SEG_MAX_CH];
        for (int c = 0; c < j->channels; c++)
            planes[c] = j->y[k][c] + j->off;
        rc = sl_encoder_write(t->enc[k], planes, j->n);
    }
    if (!rc && j->finish && (rc = sl_encoder_close(t->enc[k])) != 0)
        t->enc[k] = NULL; /* freed by the failed close */
    j->rc[k] = rc;
    if (rc) /* the detail (path or write) is in this thread's last error */
        sl_errmsg(rc, j->msg[k], sizeof j->msg[k]);
}

/* Samples of each stem one loop of the stem pool encodes: a loop borrows the
 * tokens free when it starts, so a long write taken up while the model stage
 * still held its token (the last track's, after the last batch) goes side by
 * side from the next part on. About 0.7 s of audio, 1 ms of FLAC per stem. */
#define STEM_PART 32768

/* Writes n samples of planes y[k] into each of t's n_stems encoders and, with
 * finish, closes each (commit_stems then puts them in place). Returns 0, or
 * the code of the first stem in stem order that failed, with why (the caller
 * fails the track with it, trk_output_error, as when the stems were written
 * one after the other; the parts after a failed one are not written). An
 * encoder's bytes do not depend on how its samples are parted. */
static int write_stems(runner *r, trk *t, int n_stems, float *const *const *y, size_t n, int finish, char *why,
                       size_t why_size)
{
    stems_job j = {.t = t, .y = y, .channels = r->sep->channels};
    const size_t part = stem_pool ? STEM_PART : (n ? n : 1);
    int failed = 0;
    if (run_need_ffmpeg(r)) { /* the encoders are FFmpeg's */
        snprintf(why, why_size, "the run stopped");
        return SL_EINTERRUPTED;
    }
    do {
        j.n = n - j.off < part ? n - j.off : part;
        j.finish = finish && j.off + j.n == n;
        sl_pool_for(stem_pool, (size_t)n_stems, stem_body, &j);
        for (int k = 0; k < n_stems; k++)
            failed |= j.rc[k] != 0;
        j.off += j.n;
    } while (!failed && j.off < n);
    for (int k = 0; k < n_stems; k++)
        if (j.rc[k]) {
            snprintf(why, why_size, "write: %s", j.msg[k]);
            return j.rc[k];
        }
    return 0;
}

/* One stem's commit (its file synced, renamed into place, its folder synced), on
 * a thread of its own or the caller's; the message is taken on that thread. */
typedef struct {
    sl_encoder *enc;
    int rc, started;
    pthread_t th;
    char msg[512];
} stem_commit;

static void *stem_commit_main(void *v)
{
    stem_commit *c = v;
    if (c->started)
        pthread_setname_np(pthread_self(), "sl-commit");
    c->rc = sl_encoder_commit(c->enc);
    if (c->rc)
        sl_errmsg(c->rc, c->msg, sizeof c->msg);
    return NULL;
}

/* The closed stems of t synced and renamed into place (t->placed), side by
 * side: each stem after the first on a thread of its own, so their fsyncs wait
 * on the disk together (one journal commit may serve them all) instead of one
 * after the other at the end of every track. The first stem that failed, in
 * stem order, fails the track (the stems put in place are removed with it,
 * finalize). Waits on the disk: called without CPU tokens (finalize). */
static void commit_stems(runner *r, trk *t)
{
    stem_commit c[SL_MAX_SOURCES];
    int n = 0;
    for (int k = 0; k < r->sep->n_sources; k++) {
        memset(&c[k], 0, sizeof c[k]);
        if (!(c[k].enc = t->enc[k]))
            continue;
        t->enc[k] = NULL;
        if (n++ > 0) { /* else on this thread, below (started is written before the thread reads it) */
            c[k].started = 1;
            if (pthread_create(&c[k].th, NULL, stem_commit_main, &c[k]) != 0)
                c[k].started = 0;
        }
    }
    for (int k = 0; k < r->sep->n_sources; k++)
        if (c[k].enc && !c[k].started)
            stem_commit_main(&c[k]);
    for (int k = 0; k < r->sep->n_sources; k++)
        if (c[k].started)
            pthread_join(c[k].th, NULL);
    for (int k = 0; k < r->sep->n_sources; k++) {
        if (!c[k].enc)
            continue;
        if (c[k].rc) {
            char w[600];
            snprintf(w, sizeof w, "write: %s", c[k].msg);
            trk_output_error(r, t, c[k].rc, w); /* the first reason wins */
        } else {
            t->placed |= 1ULL << k; /* (removed again if the track fails) */
        }
    }
}

/* Stitches one segment (in order) and writes its final samples; 0, or a failed
 * stem's code and why (write_stems). Called by the writer holding the track
 * (t->writing), without t->mu: the stitcher, the encoders and the slot are
 * that writer's alone, and the track's decoder and the workers, which take
 * t->mu to queue its next segments, go on meanwhile. */
static int stitch_write(runner *r, trk *t, slot *s, char *why, size_t why_size)
{
    double t0 = now_s();
    float *const *y[SL_MAX_SOURCES];
    for (int k = 0; k < r->sep->n_sources; k++)
        y[k] = s->out[k];
    /* the demucs joiner reads all of y before it writes the final samples over it */
    size_t emit = r->dmx     ? sl_dmx_joiner_push(&t->xj, (const float *const *const *)y, &s->xpos, y)
                  : r->demix ? sl_demix_joiner_push(&t->dj, y, &s->dpos)
                             : sl_stitcher_push(&t->st, y, s->len);
    int rc = r->write_stems ? write_stems(r, t, r->sep->n_sources, y, emit, 0, why, why_size) : 0;
    if (r->test_write_s > 0) /* test hook: a slow encoder */
        nanosleep(&(struct timespec){.tv_sec = (time_t)r->test_write_s,
                                     .tv_nsec = (long)((r->test_write_s - (double)(time_t)r->test_write_s) * 1e9)},
                  NULL);
    t->t_write += now_s() - t0;
    return rc;
}

/* A track that did not finish leaves nothing under a final name: the stems
 * it already renamed into place are removed, and the folders that held only
 * them (up to output.dir). */
static void remove_placed(runner *r, trk *t)
{
    for (int k = 0; k < SL_MAX_SOURCES; k++) {
        if (!(t->placed & (1ULL << k)) || !t->stem_path[k])
            continue;
        if (unlink(t->stem_path[k]) != 0 && errno != ENOENT) {
            sl_log(SL_LOG_WARN, t->tr->id, "write", "could not remove %s: %s", t->stem_path[k], strerror(errno));
            continue;
        }
        char dir[8192];
        snprintf(dir, sizeof dir, "%s", t->stem_path[k]);
        size_t root = strlen(r->scratch ? r->scratch_dir : r->out_dir);
        for (char *slash; (slash = strrchr(dir, '/')) && (size_t)(slash - dir) > root;) {
            *slash = 0;
            if (rmdir(dir) != 0)
                break; /* not empty (other tracks' stems) or not ours to remove */
        }
    }
    t->placed = 0;
}

/* Test-only fault injection: SL_FAULT_EMBED_NONFINITE=SUBSTRING poisons the
 * mix vector of tracks whose id contains SUBSTRING, after their stems are in
 * place (a model that returns NaN). */
static int fault_nonfinite(const trk *t)
{
    const char *e = getenv("SL_FAULT_EMBED_NONFINITE");
    return e && *e && strstr(t->tr->id, e) != NULL;
}

/* Called once, when the track's last slot has come back. */
void finalize(runner *r, trk *t)
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
            /* (the reference chunking emits everything with its last chunk) */
            size_t n = t->have_st && !r->demix && !r->dmx ? sl_stitcher_flush(&t->st, pp) : 0;
            trace_mark tm = trace_begin();
            char why[600];
            int rc = r->write_stems && !t->failed && !t->abandoned
                         ? write_stems(r, t, r->sep->n_sources, pp, n, 1, why, sizeof why)
                         : 0;
            if (rc) /* (the track is finalize's alone now) */
                trk_output_error(r, t, rc, why);
            trace_end(tm, "fin.stems", (long)t->index);
            free(buf);
        }
    }
    /* what is left computes little and waits on the disk (the stems synced and
     * renamed, the ledger row committed): the tokens go back for it (the caller
     * gives back what tokens_held says) */
    tokens_give(r, tokens_held());
    if (t->phase == 0 && r->write_stems && !t->failed && !t->abandoned) {
        trace_mark tm = trace_begin();
        commit_stems(r, t);
        trace_end(tm, "fin.commit", (long)t->index);
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
        /* centred jobs normalise when the shards are written, after the catalog mean is subtracted */
        const int norm_now = r->cfg->emb_normalize && (!r->cfg->emb_center || !strcmp(r->cfg->emb_center, "none"));
        size_t n_win = 0;
        for (int i = 0; i < r->n_esrc; i++)
            n_win += r->cfg->emb_timeline ? t->tl[i].n : 0;
        vec = calloc((size_t)r->n_esrc * (size_t)dim, sizeof *vec);
        lv = calloc((size_t)r->n_esrc + n_win, sizeof *lv);
        if (!vec || !lv)
            trk_fail(t, "embed: out of memory");
        if (t->vsum && r->mix_src >= 0 && fault_nonfinite(t))
            t->vsum[(size_t)r->mix_src * (size_t)dim] = NAN;
        for (int i = 0; i < r->n_esrc && !t->failed; i++) {
            const char *src = r->esrc[i];
            float *v = vec + (size_t)i * (size_t)dim;
            int rc = sl_embed_mean(t->vsum + (size_t)i * (size_t)dim, t->vweight[i], dim, norm_now, v);
            if (rc) {
                if (i == r->mix_src)
                    trk_fail(t, "%s", sl_errmsg(rc, m, sizeof m));
                else
                    trk_fail(t, "stem '%s': %s", src, sl_errmsg(rc, m, sizeof m));
                break;
            }
            if (t->ssum && t->vweight[i] > 0) {
                stags[i] = sl_tags_json(t->ssum + (size_t)i * (size_t)ns, ns, t->vweight[i],
                                        r->cfg->emb_tags_top_k, r->labels, NULL);
                if (!stags[i]) {
                    trk_fail(t, "embed: out of memory");
                    break;
                }
            } else if (r->zs && t->vweight[i] > 0) {
                /* zero-shot tags from the track vector itself (before any centring) */
                int nl = sl_zeroshot_count(r->zs);
                double *sc = malloc(2 * (size_t)nl * sizeof *sc);
                rc = sc ? sl_zeroshot_score(r->zs, v, sc, sc + nl) : SL_ENOMEM;
                if (!rc && !(stags[i] = sl_tags_json(sc, nl, 1.0, r->cfg->emb_tags_top_k, r->labels, sc + nl)))
                    rc = SL_ENOMEM;
                free(sc);
                if (rc) {
                    trk_fail(t, "zero-shot tags of '%s': %s", src, sl_errmsg(rc, m, sizeof m));
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
                if (norm_now && ss > 0)
                    for (int j = 0; j < dim; j++)
                        w[j] = (float)(w[j] / sqrt(ss));
                lv[n_lv++] = (sl_ledger_vec){.source = src, .window = (int)k, .start = tl->t0[k],
                                             .end = tl->t1[k], .vector = w};
            }
        }
    }
    t->t_write += now_s() - t0;
    double duration = t->rate > 0 ? (double)t->n_samples / t->rate : 0;

    if (t->failed || t->abandoned)
        remove_placed(r, t);
    if (t->abandoned) {
        /* no ledger row: the next run does this track again */
        sl_report_abandon(r->report, tr->id, tr->path, t->err);
        sl_log(SL_LOG_WARN, tr->id, NULL, "abandoned: %s", t->err);
        sl_progress_track_abandoned(r->progress);
        free(vec);
        free(tags);
        free(lv);
        for (int i = 0; i <= SL_MAX_SOURCES; i++)
            free(stags[i]);
        trk_free(r, t);
        return;
    }
    char *files = NULL;
    if (!t->failed) {
        double t1 = now_s();
        trace_mark tm = trace_begin();
        run_record_outputs(r, t, &files);
        trace_end(tm, "fin.outputs", (long)t->index);
        t->t_write += now_s() - t1;
    }
    char timings[256], decode[256];
    const int decoded = t->dec.decoded_s > 0;
    if (decoded)
        sl_decode_stats_json(&t->dec, decode, sizeof decode);
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
        .files_json = t->failed ? NULL : files,
        .timings_json = timings,
        .decode_json = decoded ? decode : NULL,
        .duration = duration,
        .vector = t->failed || r->mix_src < 0 ? NULL : vec + (size_t)r->mix_src * (size_t)r->emb->dim,
        .dim = (t->failed || !r->emb) ? 0 : r->emb->dim,
        .vector_model = r->emb ? r->emb->name : NULL,
        .tags_json = t->failed ? NULL : tags,
        .vecs = t->failed ? NULL : lv,
        .n_vecs = t->failed ? 0 : n_lv,
    };
    trace_mark tm = trace_begin();
    int lrc = sl_ledger_put(r->ledger, &row);
    trace_end(tm, "fin.ledger", (long)t->index);
    if (lrc) {
        sl_log(SL_LOG_ERROR, tr->id, "ledger", "%s", sl_errmsg(lrc, m, sizeof m));
        set_fatal(r, "the ledger could not be written: %s", m);
    }
    if (t->failed) {
        sl_log(SL_LOG_ERROR, tr->id, NULL, "failed: %s", t->err);
        sl_report_fail(r->report, tr->id, tr->path, t->err, decoded ? &t->dec : NULL);
    } else {
        sl_report_ok(r->report, tr->id, tr->path, duration, t->t_decode, t->t_sep, t->t_emb, t->t_write, &t->dec);
    }
    sl_progress_track_done(r->progress, 1, t->failed ? 0 : duration, tr->size);
    free(files);
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

/* ---- writers ---- */

static void write_one(runner *r, slot *s)
{
    trk *t = s->t;
    int fin = 0;
    pthread_mutex_lock(&t->mu);
    if (s->kind == KIND_SEP)
        t->t_sep += s->model_s;
    else
        t->t_emb += s->model_s;
    s->model_s = 0;
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
            /* encoded outside the track's lock: this writer holds the track
             * (pop_write), so its pending list, stitcher and encoders are this
             * thread's; its decoder queues its next segments meanwhile */
            pthread_mutex_unlock(&t->mu);
            char why[600];
            int rc = stitch_write(r, t, p, why, sizeof why);
            pthread_mutex_lock(&t->mu);
            if (rc)
                trk_output_error(r, t, rc, why);
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
    /* (before t->mu goes: once it does, t may be finalized and freed by whoever released its last slot) */
    write_done(r, t);
    pthread_mutex_unlock(&t->mu);
    if (fin)
        finalize(r, t);
}

void *writer_thread(void *arg)
{
    runner *r = arg;
    slot *s;
    pthread_setname_np(pthread_self(), "sl-write");
    /* a track's stems side by side on tokens free at the time (none at 1 thread) */
    const int stems = r->sep && r->write_stems ? r->sep->n_sources : 1;
    if (stems > 1 && r->threads > 1 && sl_pool_create(&stem_pool, stems < r->threads ? stems : r->threads) == 0)
        sl_pool_set_budget(stem_pool, r->budget, 1);
    while ((s = pop_write(r))) {
        const long ti = (long)s->t->index;
        tokens_take(r, 1, ti); /* encoding and writing compute: one token */
        trace_mark tm = trace_begin();
        write_one(r, s);
        trace_end(tm, "write", ti);
        tokens_give(r, tokens_held()); /* (finalize gives it back before its disk waits) */
    }
    pthread_mutex_lock(&r->mu);
    const int n = sl_pool_threads(stem_pool), peak = sl_pool_peak(stem_pool);
    r->stem_threads = n > r->stem_threads ? n : r->stem_threads;
    r->stem_peak = peak > r->stem_peak ? peak : r->stem_peak;
    pthread_mutex_unlock(&r->mu);
    sl_pool_destroy(stem_pool);
    stem_pool = NULL;
    return NULL;
}
