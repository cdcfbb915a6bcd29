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
#include "common/sl_mem.h"
#include "common/sl_sha256.h"
#include <sys/resource.h>
#include "run_internal.h"
#include "report_html.h"
#include "center.h"
#include "zeroshot.h"

/* ---- setup ---- */

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
    /* embedding.center: catalog: the mean of every done row, written first */
    const int centred = cfg->emb_center && strcmp(cfg->emb_center, "none") != 0;
    float *mean = NULL;
    int mdim = 0;
    size_t mrows = 0;
    char mname[96] = "", mhash[SL_FILE_HASH_HEX] = "";
    int rc = 0;
    if (centred) {
        rc = sl_shards_mean(&spec, r->ledger, &mean, &mdim, &mrows);
        if (!rc && mean && !(rc = sl_mkdirs(dir)))
            rc = sl_center_write(dir, prefix, mean, mdim, mname, sizeof mname, mhash);
        spec.center = mean;
        spec.normalize = cfg->emb_normalize;
    } else {
        /* a mean left by a centred job this folder was --reset from */
        snprintf(mname, sizeof mname, "%smean.npy", prefix);
        char mp[4200];
        snprintf(mp, sizeof mp, "%s/%s", dir, mname);
        unlink(mp);
    }
    if (!rc)
        rc = sl_shards_write(&spec, r->ledger, &written, &n_written);
    /* once per run, for models whose checkpoint holds a text tower that
     * `search --text` must match (clap); other models are named by path:
     * hashing a 320 MB Cnn14 file cost a second of every run's end */
    if (!rc && cfg->emb_weights && *cfg->emb_weights && !r->weights_sha256[0] && cfg->emb_model &&
        !strcmp(cfg->emb_model, "clap"))
        rc = sl_sha256_file(cfg->emb_weights, r->weights_sha256);
    if (!rc) {
        /* how these vectors were made, for `stemline search --audio` / `--text` */
        sl_shards_meta meta = {
            .model = r->emb->name,
            .weights = cfg->emb_weights,
            .weights_sha256 = r->weights_sha256[0] ? r->weights_sha256 : NULL,
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
            .center = mean ? cfg->emb_center : NULL,
            .center_file = mname,
            .center_hash = mhash,
            .center_rows = mrows,
        };
        rc = sl_shards_write_meta(dir, prefix, &meta);
    }
    free(mean);
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
    const char *fill = getenv("SL_TEST_FILL_BATCHES");
    r->test_fill_s = fill ? atof(fill) : 0;
    const char *slow = getenv("SL_TEST_SLOW_WRITE");
    r->test_write_s = slow ? atof(slow) : 0;
    const char *share = getenv("SL_BATCH_SHARE"); /* 0: off, 2: end of run only (comparisons) */
    r->batch_share = share ? atoi(share) : 1;
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

int sl_exit_status_for(int rc)
{
    switch (rc) {
    case SL_ECONFIG:
    case SL_EINVAL:
    case SL_EUSAGE:
    case SL_EFORMAT:
    case SL_ENOTFOUND:
    case SL_ENODEVICE:
    case SL_EUNSUPPORTED:
    case -ENOENT:
    case -ENOTDIR:
    case -EISDIR:
    case -ELOOP:
    case -ENAMETOOLONG:
    case -EACCES:
    case -EPERM:
    case -EROFS:
        return SL_EXIT_USAGE;
    default:
        return SL_EXIT_FATAL;
    }
}

static int check_writable(const char *dir)
{
    int rc = sl_mkdirs(dir);
    if (rc)
        return rc;
    char probe[4096];
    snprintf(probe, sizeof probe, "%s/.stemline-write-test-%d", dir, (int)getpid());
    FILE *f = fopen(probe, "w");
    if (!f) {
        int e = errno;
        return sl_seterr(-e, "output folder %s is not writable: %s", dir,
                         e == EROFS ? "the file system is read-only (EROFS)"
                         : e == EACCES || e == EPERM ? "permission denied (EACCES)"
                                                     : strerror(e));
    }
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
            state = d == 1 && run_skip_done(r, t) ? "done" : "todo"; /* a missing output: todo */
        }
        printf("%s\t%s\t%s\n", state, t->id, t->path);
    }
}

/* user + system CPU seconds of the process so far; *rss_mb: its peak resident memory */
static double process_cpu_s(double *rss_mb)
{
    struct rusage ru;
    *rss_mb = 0;
    if (getrusage(RUSAGE_SELF, &ru))
        return 0;
    *rss_mb = (double)ru.ru_maxrss / 1024.0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static void pipeline_json(runner *r, char *buf, size_t size)
{
    double avg_ready = r->ready_len_samples ? r->ready_len_sum / (double)r->ready_len_samples : 0;
    double avg_batch = r->batches ? (double)r->batch_items / (double)r->batches : 0;
    const char *bound = "balanced";
    char thr[2048], hist[RUN_BATCH_HIST * 24] = "";
    double rss_mb;
    const double cpu_s = process_cpu_s(&rss_mb);
    threads_json(r, thr, sizeof thr);
    size_t hl = 0;
    for (size_t i = 0; i < RUN_BATCH_HIST; i++)
        if (r->batch_hist[i])
            hl += (size_t)snprintf(hist + hl, sizeof hist - hl, "%s[%zu, %zu]", hl ? ", " : "", i, r->batch_hist[i]);
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
             "\"writers_waited_s\": %.3f, \"bound_by\": \"%s\", %s, \"decode_threads\": %d, "
             "\"tracks_in_flight_max\": %zu, \"tracks_in_flight_peak\": %zu, \"track_state_mb\": %.3f, \"threads_and_decoders_mb\": %.1f, "
             "\"decodes\": %d, \"batch_sizes\": [%s], \"setup_s\": %.3f, \"pipeline_s\": %.3f, "
             "\"tokens_held_s\": %.3f, \"tokens_idle_s\": %.3f, \"cpu_s\": %.3f, \"peak_rss_mb\": %.1f}",
             r->sep_L, r->sep_H, r->emb_L, r->emb_H, r->n_slots_max, r->n_slots, r->peak_in_use,
             (double)r->slot_floats * 4.0 / 1048576.0, r->cfg->batch_size, r->batches, avg_batch, r->splits,
             r->fallbacks, avg_ready, r->max_ready, r->wait_slot_s, r->wait_ready_s, r->wait_write_s, bound,
             thr, r->cfg->decode_threads, r->max_live, r->peak_live, r->track_mb, r->other_mb,
             atomic_load(&r->decodes), hist, r->setup_s, r->pipeline_s, r->tokens_held_s,
             fmax(0.0, r->threads * r->pipeline_s - r->tokens_held_s), cpu_s, rss_mb);
}

#define MB 1048576.0
/* Memory of one decoder (FFmpeg's demuxer, decoder and resampler, and the
 * decoder's own buffers), an allowance above what was measured for WAV, FLAC,
 * MP3, Ogg and AAC inputs. */
#define SL_DECODER_MB 2.0
/* Stack pages a pipeline thread touches (of the 8 MB reserved). */
#define SL_THREAD_STACK_MB 0.25

/* Segment geometry, the slot pool size and the cap on tracks in flight, from
 * the models and the config, within runtime.max_host_memory_mb. */
static int plan_memory(runner *r)
{
    const sl_config *c = r->cfg;
    size_t sep_floats = 0, emb_floats = 0;
    if (r->sep && r->sep->demix_chunk > 0) {
        /* the reference chunked inference: geometry from the model (its options) */
        if (c->sep_segment_s > 0 || c->sep_overlap_s >= 0)
            return sl_seterr(SL_ECONFIG, "key 'separation.%s': model %s cuts tracks as its reference inference "
                                         "does; set separation.options.chunk_size / num_overlap instead",
                             c->sep_segment_s > 0 ? "segment_seconds" : "overlap_seconds", r->sep->name);
        if (r->sep->channels > SL_SEG_MAX_CH)
            return sl_seterr(SL_EUNSUPPORTED, "models with more than %d channels", SL_SEG_MAX_CH);
        r->demix = r->sep->demix_overlap;
        r->sep_L = r->sep->demix_chunk;
        r->sep_H = r->sep_L / (size_t)r->demix;
        sep_floats = r->sep_L * (size_t)r->sep->channels * (size_t)(1 + r->sep->n_sources);
    } else if (r->sep && r->sep->split_segment > 0) {
        /* the demucs command's inference: the model's segment and overlap */
        if (c->sep_segment_s > 0 || c->sep_overlap_s >= 0)
            return sl_seterr(SL_ECONFIG, "key 'separation.%s': model %s cuts tracks as the demucs command does; "
                                         "set separation.options.overlap instead",
                             c->sep_segment_s > 0 ? "segment_seconds" : "overlap_seconds", r->sep->name);
        if (r->sep->channels > SL_SEG_MAX_CH)
            return sl_seterr(SL_EUNSUPPORTED, "models with more than %d channels", SL_SEG_MAX_CH);
        r->dmx = 1;
        r->sep_L = r->sep->split_segment;
        r->sep_H = (size_t)((1.0 - r->sep->split_overlap) * (double)r->sep_L);
        sl_dmx_geom *g = &r->dmx_geom;
        g->L = r->sep_L, g->overlap = r->sep->split_overlap, g->shifts = r->sep->split_shifts;
        g->max_shift = (size_t)(r->sep->sample_rate / 2); /* int(0.5 * samplerate) */
        if (g->shifts > SL_DMX_MAX_SHIFTS)
            return sl_seterr(SL_EUNSUPPORTED, "more than %d shifts", SL_DMX_MAX_SHIFTS);
        if (r->sep->split_n_offsets == g->shifts)
            for (int k = 0; k < g->shifts; k++)
                g->offsets[k] = (size_t)r->sep->split_offsets[k];
        else
            sl_dmx_default_offsets(g->shifts, g->max_shift, g->offsets);
        sep_floats = r->sep_L * (size_t)r->sep->channels * (size_t)(1 + r->sep->n_sources);
    } else if (r->sep) {
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
    double slot_mb = (double)r->slot_floats * 4.0 / MB;
    /* What grows with the tracks in flight and the threads, beside the slots
     * (see configs/README.md): per track in flight, its stitcher, stem
     * encoders and sums; per decode thread, a decoder and its segmenter; per
     * writer, the buffer of a track's last samples; per thread, its stack. A
     * track in flight holds a slot or is being decoded, so with n slots at most
     * decode_threads + n tracks are in flight (the decoders are held to that). */
    double track_mb = 0.05, dec_mb = SL_DECODER_MB, wr_mb = 0;
    if (r->sep) {
        double O = (double)(r->sep_L - r->sep_H), ch = r->sep->channels, ns = r->sep->n_sources;
        /* demix: the joiner holds a whole chunk, the cutter reads 2B + 1 ahead and keeps B + 1 */
        track_mb += r->demix ? ((double)r->sep_L * (ch * ns + 1)) * 4.0 / MB : (O * ch * ns + O) * 4.0 / MB;
        if (r->dmx) /* the joiner: 2L doubles per channel and source, its tables 3L + stride; the cutter 2L floats
                     * per channel (whatever the shifts) */
            track_mb += (2.0 * (double)r->sep_L * (ch * ns + 1) + 3.0 * (double)r->sep_L + (double)r->sep_H) * 8.0 / MB,
                dec_mb += 2.0 * (double)r->sep_L * ch * 4.0 / MB;
        if (r->demix)
            dec_mb += 3.0 * O * ch * 4.0 / MB;
        if (r->write_stems)
            track_mb += ns * sl_encoder_memory_mb(r->sep->channels);
        dec_mb += O * ch * 4.0 / MB;
        wr_mb = O * ch * ns * 4.0 / MB;
    }
    if (r->emb) {
        track_mb += (double)(r->n_esrc * (r->emb->dim + r->emb->n_scores)) * 8.0 / MB;
        dec_mb += (double)(r->emb_L - r->emb_H) * r->emb->channels * 4.0 / MB;
    }
    if (r->sep && r->emb && r->mix_src >= 0) {
        /* one decoder feeds both (run_decode.c): each output's FIFO holds up to
         * about one segment of the other, doubled for the FIFO's growth */
        double sep_s = (double)r->sep_L / r->sep->sample_rate, emb_s = (double)r->emb_L / r->emb->sample_rate;
        dec_mb += 2.0 * (sep_s * r->emb->sample_rate * r->emb->channels + emb_s * r->sep->sample_rate * r->sep->channels) *
                  4.0 / MB;
    }
    double nd = c->decode_threads, nwr = nd < 2 ? 2 : nd;
    double fixed_mb = nd * (dec_mb + track_mb + SL_THREAD_STACK_MB) + nwr * (wr_mb + SL_THREAD_STACK_MB) +
                      (double)r->n_workers * r->op_threads_max * SL_THREAD_STACK_MB; /* the model workers and their ops' helpers */
    /* each decode thread must be able to hold one slot while the model holds a batch */
    size_t need = (size_t)c->decode_threads + 1;
    double room = (double)c->max_host_memory_mb - fixed_mb;
    size_t n = room > 0 ? (size_t)(room / (slot_mb + track_mb)) : 0;
    r->track_mb = track_mb;
    r->other_mb = fixed_mb;
    if (n < need)
        return sl_seterr(SL_ECONFIG,
                         "runtime.max_host_memory_mb (%d) is too small: with %d decode threads this job needs %.0f MB "
                         "for decoders, writers and their tracks in flight, and %zu segment buffers at least "
                         "(decode_threads + 1) of %.1f MB each, plus %.1f MB per track they hold: raise it to %.0f, "
                         "or lower runtime.decode_threads, or shorten the segments",
                         c->max_host_memory_mb, c->decode_threads, fixed_mb, need, slot_mb, track_mb,
                         ceil(fixed_mb + (slot_mb + track_mb) * (double)need));
    /* Decoding further ahead than one batch per worker (plus one segment per
     * decoder and a little slack) buys nothing: cap there, below the bound, so
     * a fast decoder does not fill memory for nothing. */
    size_t useful = (size_t)r->n_workers * (size_t)c->batch_size + (size_t)c->decode_threads + 2;
    r->n_slots_max = n < useful ? n : useful;
    r->max_live = (size_t)c->decode_threads + r->n_slots_max;
    return 0;
}

/* FFmpeg's libraries loaded beside the pipeline's start (r->ff_async), on a
 * CPU token of the run; what needs them asks sl_io_load (run_need_ffmpeg),
 * which waits for this and gives its outcome. */
static void *ffmpeg_preload(void *arg)
{
    runner *r = arg;
    pthread_setname_np(pthread_self(), "sl-load");
    tokens_take(r, 1, -1);
    trace_mark tm = trace_begin();
    (void)sl_io_load();
    trace_end(tm, "ffmpeg_load", -1);
    tokens_give(r, 1);
    return NULL;
}

static int run_pipeline(runner *r)
{
    const sl_config *cfg = r->cfg;
    int nd = cfg->decode_threads > 0 ? cfg->decode_threads : 1;
    if ((size_t)nd > r->cat.n && r->cat.n > 0)
        nd = (int)r->cat.n;
    int nwr = nd < 2 ? 2 : nd;
    const double t_pipe = now_s(), held0 = sl_budget_held_s(r->budget);
    r->setup_s = t_pipe - r->t_start;
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
    /* FFmpeg loads once the pipeline's threads exist: the dynamic loader's
     * lock, which dlopen holds throughout, would hold up their creation
     * (without this thread, the first that needs FFmpeg loads it) */
    pthread_t ff_thread;
    const int ff_started = ok && r->ff_async && pthread_create(&ff_thread, NULL, ffmpeg_preload, r) == 0;
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
    if (ff_started)
        pthread_join(ff_thread, NULL);
    free(dth);
    free(wth);
    r->pipeline_s = now_s() - t_pipe;
    r->tokens_held_s = sl_budget_held_s(r->budget) - held0;
    pool_free_all(r); /* what the pipeline left (none on the CPU: pool_decoders_done) */
    return ok ? 0 : SL_ENOMEM;
}

/* The backend the run's context opens: runtime.devices naming one device N > 0
 * with backend cuda or auto opens cuda:N (the workers then use that context;
 * 'all', device 0 and several devices keep the configured backend, and a
 * device that does not exist is refused by start_workers with the config's
 * wording). */
static const char *backend_for(const sl_config *cfg, char *buf, size_t size)
{
    if (cfg->n_devices != 1 || (strcmp(cfg->backend, "cuda") && strcmp(cfg->backend, "auto")))
        return cfg->backend;
    char *end;
    long d = strtol(cfg->devices[0], &end, 10);
    if (end == cfg->devices[0] || *end || d <= 0 || d >= sl_op_device_count())
        return cfg->backend;
    snprintf(buf, size, "cuda:%ld", d);
    return buf;
}

static int run_job(runner *r)
{
    const sl_config *cfg = r->cfg;
    const sl_run_opts *opts = r->opts;
    const char *prefix = r->prefix;
    int status = SL_EXIT_OK, rc;
    char m[1024];
    sl_op_ctx *ctx = NULL;
    trace_start();
    trace_mark t_setup = trace_begin(), t_end = t_setup;
    double t_start = now_s();
    r->t_start = t_start;

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
    char dev_name[32];
    const char *backend = opts->dry_run ? "cpu" : backend_for(cfg, dev_name, sizeof dev_name);
    rc = sl_op_ctx_open(&ctx, backend);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "backend", "%s", sl_errmsg(rc, m, sizeof m));
        sl_catalog_free(&r->cat);
        return sl_exit_status_for(rc);
    }
    rc = opts->dry_run ? 0 : apply_precision(r, ctx);
    if (!rc)
        rc = plan_threads(r, ctx);
    /* With a thread to spare, Debian's FFmpeg and its hundred-odd libraries
     * (30-60 ms of loading) load beside the pipeline's start (run_pipeline):
     * PCM WAV inputs are read without them (io/wav_read.h), and what needs
     * them waits for them (run_need_ffmpeg). With one thread, they load before
     * the pipeline (runtime.threads: 1 computes on one thread at a time). */
    r->ff_async = !rc && !opts->dry_run && r->threads > 1;
    /* the other CPU workers' models load while the run's own do */
    if (!rc && !opts->dry_run)
        rc = preload_workers(r, ctx);
    double t_models = now_s();
    if (!rc)
        rc = open_models(r, ctx);
    r->models_open_s = now_s() - t_models;
    if (!rc)
        rc = resolve_sources(r);
    if (!rc)
        rc = check_output_collisions(r);
    r->scratch = r->sep && r->n_stem_esrc > 0 && !cfg->stems_enabled;
    r->write_stems = r->sep && (cfg->stems_enabled || r->scratch);
    if (!rc)
        rc = plan_memory(r);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "%s", sl_errmsg(rc, m, sizeof m));
        /* a malformed weights file (SL_EFORMAT) is as permanent as a bad config */
        status = sl_exit_status_for(rc);
        goto out;
    }


    if (opts->dry_run) {
        struct stat st;
        if (stat(r->ledger_path, &st) == 0 && sl_ledger_open(&r->ledger, r->ledger_path))
            r->ledger = NULL;
        print_dry_run(r);
        goto out;
    }

    /* a job without FFmpeg stops here, naming the library and why it did not
     * load, instead of failing track by track (loading beside the pipeline:
     * at the first thing that needs it, run_need_ffmpeg) */
    if (!r->ff_async && (rc = sl_io_load()) != 0) {
        sl_log(SL_LOG_ERROR, NULL, "io", "%s", sl_errmsg(rc, m, sizeof m));
        status = sl_exit_status_for(rc);
        goto out;
    }
    /* nothing in the folder is touched before the lock is held */
    if (!r->lock && (status = run_lock(r)) != 0)
        goto out;
    rc = check_writable(cfg->output_dir);
    if (!rc && r->scratch)
        rc = scratch_prepare(r);
    if (!rc)
        rc = sl_ledger_open(&r->ledger, r->ledger_path);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "output", "%s", sl_errmsg(rc, m, sizeof m));
        status = sl_exit_status_for(rc);
        goto out;
    }
    if ((status = run_check_job(r)) != 0)
        goto out;
    char device[320];
    threads_device(r, ctx, device, sizeof device);
    sl_log(SL_LOG_INFO, NULL, NULL, "%zu tracks, backend %s (%s), separation %s, embedding %s, output %s",
           r->cat.n, sl_op_ctx_backend(ctx), device, r->sep ? r->sep->name : "none",
           r->emb ? r->emb->name : "none", cfg->output_dir);

    r->report = sl_report_new(cfg, r->hash, sl_op_ctx_backend(ctx), device, opts->shard_index, opts->shard_count);
    {
        char pj[16]; /* what the run's context computes in (fp32 where auto fell back to the CPU) */
        snprintf(pj, sizeof pj, "\"%s\"", sl_precision_name(sl_op_ctx_precision(ctx)));
        sl_report_set_json(r->report, "precision", pj);
    }
    int64_t total_bytes = 0;
    for (size_t i = 0; i < r->cat.n; i++)
        total_bytes += r->cat.tracks[i].size > 0 ? r->cat.tracks[i].size : 0;
    r->progress = sl_progress_start(r->cat.n, total_bytes, opts->quiet ? 0 : opts->progress,
                                    cfg->progress_interval);

    r->host_ctx = ctx;
    if (r->emb && r->emb->n_scores > 0)
        r->labels = sl_labels_for(r->emb->n_scores);
    rc = 0;
    if (r->emb && cfg->emb_text_labels && cfg->emb_tags_top_k > 0) {
        rc = sl_zeroshot_open(&r->zs, cfg->emb_text_labels, cfg->emb_text_template, cfg->emb_weights, r->emb->dim,
                              ctx);
        if (!rc)
            r->labels = sl_zeroshot_labels(r->zs);
    }
    if (!rc)
        rc = start_workers(r, ctx);
    if (rc == SL_ECONFIG) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "%s", sl_errmsg(rc, m, sizeof m));
        sl_progress_stop(r->progress);
        r->progress = NULL;
        status = SL_EXIT_USAGE;
        goto out;
    }
    trace_end(t_setup, "setup", -1);
    if (rc == 0) {
        run_pipeline(r);
    } else {
        sl_log(SL_LOG_ERROR, NULL, NULL, "%s", sl_errmsg(rc, m, sizeof m));
        set_fatal(r, "%s", m);
    }
    sl_progress_stop(r->progress);
    r->progress = NULL;
    if (r->disk_full)
        set_fatal(r, "%s",
                  r->disk_full == EROFS
                      ? "the output file system became read-only (EROFS): tracks in flight were abandoned (they are "
                        "not in the ledger); make it writable and run the same command again to resume"
                  : r->disk_full == EACCES
                      ? "permission to write the output was lost (EACCES): tracks in flight were abandoned (they "
                        "are not in the ledger); restore it and run the same command again to resume"
                      : "the output disk is full: tracks in flight were abandoned (they are not in the "
                        "ledger); free space and run the same command again to resume");

    /* Shards are rebuilt from the ledger: they hold every done track, whichever
     * run did it, so an interrupted or partial run never leaves them stale. */
    t_end = trace_begin();
    if (r->emb && !r->fatal) {
        double t0 = now_s();
        /* one folder of shards per embedded source, and one more per timeline */
        for (int i = 0; i < r->n_esrc && !r->fatal; i++)
            for (int tl = 0; tl <= (cfg->emb_timeline ? 1 : 0) && !r->fatal; tl++)
                write_source_shards(r, r->esrc[i], tl, prefix);
        sl_report_stage_time(r->report, "shards", now_s() - t0);
        if (!r->fatal && (r->emb->n_scores > 0 || r->zs) && cfg->emb_tags_top_k > 0) {
            char tp[4096];
            snprintf(tp, sizeof tp, "%s/tags/%s/%stags.jsonl", cfg->output_dir, r->emb->name, prefix);
            sl_atomic_sweep_for(tp); /* an earlier run's temporaries (killed while writing it) */
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

    trace_end(t_end, "shards", -1);
    {
        t_end = trace_begin();
        char pj[12288];
        pipeline_json(r, pj, sizeof pj);
        sl_report_set_json(r->report, "pipeline", pj);
        char rp[4096];
        snprintf(rp, sizeof rp, "%s/%sreport.json", cfg->output_dir, prefix);
        sl_report_finish(r->report, now_s() - t_start, atomic_load(&stop_requests) != 0, r->fatal ? r->fatal_msg : NULL);
        /* the temporaries an earlier run left when killed while writing these two (only
         * this prefix's names: partitions sharing the folder write their own) */
        sl_atomic_sweep_for(rp);
        rc = sl_report_write(r->report, rp);
        if (rc) {
            sl_log(SL_LOG_ERROR, NULL, "report", "%s", sl_errmsg(rc, m, sizeof m));
            r->fatal = 1;
        } else {
            /* the page is a view of report.json: a failure to write it is said, not fatal */
            char hp[4096];
            snprintf(hp, sizeof hp, "%s/%sreport.html", cfg->output_dir, prefix);
            sl_atomic_sweep_for(hp);
            sl_report_html_opts ho = {.out_dir = cfg->output_dir, .report = rp, .html = hp, .prefix = prefix};
            if ((rc = sl_report_html_write(&ho)) != 0)
                sl_log(SL_LOG_ERROR, NULL, "report", "report.html: %s", sl_errmsg(rc, m, sizeof m));
        }
        trace_end(t_end, "report", -1);
        sl_report_summary(r->report, opts->quiet ? NULL : stderr);
        if (r->fatal) {
            sl_log(SL_LOG_ERROR, NULL, NULL, "%s", r->fatal_msg);
            status = r->fatal_permanent ? SL_EXIT_USAGE : SL_EXIT_FATAL;
        } else if (atomic_load(&stop_requests)) {
            status = SL_EXIT_INTERRUPTED;
        } else if (sl_report_failed_count(r->report) > 0) {
            status = SL_EXIT_FAILED;
        }
    }

out:
    t_end = trace_begin();
    close_workers(r);
    sl_budget_free(r->budget);
    sl_zeroshot_close(r->zs);
    r->budget = NULL;
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
    trace_end(t_end, "close", -1);
    trace_finish();
    return status;
}

int sl_run(const sl_config *cfg, const sl_run_opts *opts)
{
    runner R;
    memset(&R, 0, sizeof R);
    runner *r = &R;
    sl_mem_keep_freed(); /* each track's buffers reuse the last one's pages */
    r->cfg = cfg;
    r->opts = opts;
    /* for the whole run: set_fatal takes mu on every path, threads or none */
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv_slot, NULL);
    pthread_cond_init(&r->cv_ready, NULL);
    pthread_cond_init(&r->cv_write, NULL);
    pthread_cond_init(&r->cv_stem, NULL);
    sl_shard_prefix(opts->shard_index, opts->shard_count, r->prefix, sizeof r->prefix);
    r->out_dir = strdup(cfg->output_dir);
    size_t lp = strlen(cfg->output_dir) + 96;
    r->ledger_path = malloc(lp);
    int status = SL_EXIT_FATAL;
    if (r->out_dir && r->ledger_path) {
        snprintf(r->ledger_path, lp, "%s/%sledger.sqlite", cfg->output_dir, r->prefix);
        /* A second run into a folder that exists is told at once, before it
         * scans the catalog or loads models; into a new folder (nothing to
         * lock yet) the lock is taken once the job is known to be valid. */
        struct stat st;
        status = 0;
        if (!opts->dry_run && stat(cfg->output_dir, &st) == 0 && S_ISDIR(st.st_mode))
            status = run_lock(r);
        if (!status)
            status = run_job(r);
    }
    sl_runlock_release(r->lock); /* last: after every file of the run is closed */
    free(r->out_dir);
    free(r->ledger_path);
    pthread_cond_destroy(&r->cv_write);
    pthread_cond_destroy(&r->cv_stem);
    pthread_cond_destroy(&r->cv_ready);
    pthread_cond_destroy(&r->cv_slot);
    pthread_mutex_destroy(&r->mu);
    /* A stop request is consumed by the run it stopped; one that came before
     * this run started (a signal during setup) stopped this run, not lost. */
    atomic_store(&stop_requests, 0);
    sl_io_interrupt_clear();
    return status;
}
