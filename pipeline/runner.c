/* The job runner. Decode threads take tracks in catalog order, skip those the
 * ledger already holds as done, decode them at the models' rates and hand them
 * to one model worker through a bounded queue (backpressure: a slow worker
 * stops the decoders instead of filling memory). The worker separates, writes
 * stems (temporary name + rename), embeds, and writes the ledger row last.
 * Shards are rebuilt from the ledger at the end, so they always hold exactly
 * the tracks that are done, in id order, whatever order they finished in. */
#include "runner.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
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
#include "shards.h"

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

/* ---- decoded work item ---- */

typedef struct item {
    size_t index;     /* in the catalog */
    int failed;       /* decode failed: error holds the reason */
    char error[600];
    float **sep_in;   /* [channels][n_sep] at the separation rate, NULL when no separation */
    size_t n_sep;
    float **emb_in;   /* [channels][n_emb] at the embedding rate */
    size_t n_emb;
    int source_rate;
    double duration;  /* seconds of audio */
    double t_decode;
    struct item *next;
} item;

static void free_planes(float **p, int ch)
{
    if (!p)
        return;
    for (int c = 0; c < ch; c++)
        free(p[c]);
    free(p);
}

typedef struct {
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

    /* decode -> worker queue */
    pthread_mutex_t mu;
    pthread_cond_t cv_put, cv_get;
    item *head, *tail;
    int queued, capacity;
    int decoders_left;
    atomic_size_t next_track;

    sl_report *report;
    sl_progress *progress;
    int fatal;
    char fatal_msg[1100];
} runner;

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

/* ---- decode threads ---- */

static void queue_push(runner *r, item *it)
{
    pthread_mutex_lock(&r->mu);
    while (r->queued >= r->capacity && stop_requests < 2)
        pthread_cond_wait(&r->cv_put, &r->mu);
    it->next = NULL;
    if (r->tail)
        r->tail->next = it;
    else
        r->head = it;
    r->tail = it;
    r->queued++;
    pthread_cond_signal(&r->cv_get);
    pthread_mutex_unlock(&r->mu);
}

static item *queue_pop(runner *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->head && r->decoders_left > 0)
        pthread_cond_wait(&r->cv_get, &r->mu);
    item *it = r->head;
    if (it) {
        r->head = it->next;
        if (!r->head)
            r->tail = NULL;
        r->queued--;
        pthread_cond_signal(&r->cv_put);
    }
    pthread_mutex_unlock(&r->mu);
    return it;
}

static void item_free(runner *r, item *it)
{
    if (!it)
        return;
    free_planes(it->sep_in, r->sep ? r->sep->channels : 0);
    free_planes(it->emb_in, r->emb ? r->emb->channels : 0);
    free(it);
}

static void decode_one(runner *r, item *it)
{
    const sl_track *t = &r->cat.tracks[it->index];
    double t0 = now_s();
    sl_audio_info info;
    int rc = 0;
    char msg[512];
    memset(&info, 0, sizeof info);
    if (r->sep) {
        rc = sl_decode_file(t->path, r->sep->sample_rate, r->sep->channels, &it->sep_in, &it->n_sep,
                            &info);
        if (!rc)
            it->duration = (double)it->n_sep / r->sep->sample_rate;
    }
    if (!rc && r->emb) {
        /* Decoded a second time at the embedding rate: cheaper than it sounds
         * (decode runs at hundreds of times realtime) and exactly what a user
         * would get decoding for that model alone. */
        rc = sl_decode_file(t->path, r->emb->sample_rate, r->emb->channels, &it->emb_in, &it->n_emb,
                            &info);
        if (!rc && !r->sep)
            it->duration = (double)it->n_emb / r->emb->sample_rate;
    }
    if (rc) {
        it->failed = 1;
        sl_errmsg(rc, msg, sizeof msg);
        snprintf(it->error, sizeof it->error, "decode: %s", msg);
    }
    it->source_rate = info.sample_rate;
    it->t_decode = now_s() - t0;
}

static void *decode_thread(void *arg)
{
    runner *r = arg;
    for (;;) {
        if (stop_requests)
            break;
        size_t i = atomic_fetch_add(&r->next_track, 1);
        if (i >= r->cat.n)
            break;
        const sl_track *t = &r->cat.tracks[i];
        int done = sl_ledger_is_done(r->ledger, t->id, t->path, t->size, t->mtime_ns, r->hash);
        if (done == 1) {
            sl_report_skip(r->report, t->id, t->path, "already done (same input and config)");
            sl_progress_track_done(r->progress, 0, 0, t->size);
            continue;
        }
        item *it = calloc(1, sizeof *it);
        if (!it) {
            sl_log(SL_LOG_ERROR, t->id, "decode", "out of memory");
            break;
        }
        it->index = i;
        decode_one(r, it);
        queue_push(r, it);
    }
    pthread_mutex_lock(&r->mu);
    r->decoders_left--;
    pthread_cond_broadcast(&r->cv_get);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

/* ---- the model worker ---- */

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

static int write_stems(runner *r, const sl_track *t, item *it, float ***stems, char **outputs,
                       size_t *olen, size_t *ocap, char *err, size_t errsize)
{
    const sl_config *c = r->cfg;
    sl_encode_params p = {
        .format = c->stems_format,
        .sample_format = c->stems_sample_format,
        .in_rate = r->sep->sample_rate,
        .out_rate = r->sep->sample_rate,
        .channels = r->sep->channels,
    };
    if (!strcmp(c->stems_sample_rate, "source") && it->source_rate > 0)
        p.out_rate = it->source_rate;
    for (int s = 0; s < r->sep->n_sources; s++) {
        char rel[4096], full[8192];
        int rc = expand_template(c->stems_template, t->id, r->sep->sources[s], c->stems_format, rel,
                                 sizeof rel);
        if (rc) {
            snprintf(err, errsize, "write: output path too long");
            return rc;
        }
        snprintf(full, sizeof full, "%s/%s", r->out_dir, rel);
        rc = sl_encode_file(full, &p, (const float *const *)stems[s], it->n_sep);
        if (rc) {
            char m[400];
            snprintf(err, errsize, "write %s: %s", rel, sl_errmsg(rc, m, sizeof m));
            return rc;
        }
        if (append_json_path(outputs, olen, ocap, rel))
            return SL_ENOMEM;
    }
    return 0;
}

static void process_item(runner *r, item *it)
{
    const sl_track *t = &r->cat.tracks[it->index];
    double t_sep = 0, t_emb = 0, t_write = 0;
    char err[768] = "";
    size_t ocap = 256, olen = 1;
    char *outputs = malloc(ocap);
    float *vec = NULL;
    int rc = 0;
    if (!outputs) {
        sl_log(SL_LOG_ERROR, t->id, "worker", "out of memory");
        return;
    }
    strcpy(outputs, "[");

    if (it->failed) {
        snprintf(err, sizeof err, "%s", it->error);
        rc = SL_EDECODE;
    }

    if (!rc && r->sep) {
        int ns = r->sep->n_sources, ch = r->sep->channels;
        float ***stems = calloc((size_t)ns, sizeof *stems);
        rc = stems ? 0 : SL_ENOMEM;
        for (int s = 0; s < ns && !rc; s++) {
            stems[s] = calloc((size_t)ch, sizeof **stems);
            if (!stems[s]) {
                rc = SL_ENOMEM;
                break;
            }
            for (int k = 0; k < ch && !rc; k++)
                if (!(stems[s][k] = malloc((it->n_sep ? it->n_sep : 1) * sizeof(float))))
                    rc = SL_ENOMEM;
        }
        double t0 = now_s();
        if (!rc) {
            rc = sl_sep_run(r->sep_model, (const float *const *)it->sep_in, it->n_sep,
                            (float *const *const *)stems);
            if (rc) {
                char m[512];
                snprintf(err, sizeof err, "separate: %s", sl_errmsg(rc, m, sizeof m));
            }
        } else {
            snprintf(err, sizeof err, "separate: out of memory for %zu frames", it->n_sep);
        }
        t_sep = now_s() - t0;
        if (!rc && r->cfg->stems_enabled) {
            t0 = now_s();
            rc = write_stems(r, t, it, stems, &outputs, &olen, &ocap, err, sizeof err);
            t_write += now_s() - t0;
        }
        for (int s = 0; stems && s < ns; s++)
            free_planes(stems[s], ch);
        free(stems);
    }

    if (!rc && r->emb) {
        double t0 = now_s();
        vec = calloc((size_t)r->emb->dim, sizeof *vec);
        rc = vec ? sl_emb_run(r->emb_model, (const float *const *)it->emb_in, it->n_emb, vec) : SL_ENOMEM;
        if (rc) {
            char m[512];
            snprintf(err, sizeof err, "embed: %s", sl_errmsg(rc, m, sizeof m));
        } else {
            int finite = 1;
            for (int k = 0; k < r->emb->dim; k++)
                finite &= isfinite(vec[k]) != 0;
            if (!finite) {
                rc = SL_ENUMERIC;
                snprintf(err, sizeof err, "embed: the vector is not finite");
            } else if (r->cfg->emb_normalize) {
                double ss = 0;
                for (int k = 0; k < r->emb->dim; k++)
                    ss += (double)vec[k] * vec[k];
                if (ss > 0) {
                    float inv = (float)(1.0 / sqrt(ss));
                    for (int k = 0; k < r->emb->dim; k++)
                        vec[k] *= inv;
                }
            }
        }
        t_emb = now_s() - t0;
    }

    char timings[256];
    snprintf(timings, sizeof timings, "{\"decode\":%.6f,\"separate\":%.6f,\"embed\":%.6f,\"write\":%.6f}",
             it->t_decode, t_sep, t_emb, t_write);
    strcat(outputs, "]");
    sl_ledger_row row = {
        .id = t->id,
        .path = t->path,
        .size = t->size,
        .mtime_ns = t->mtime_ns,
        .config_hash = r->hash,
        .status = rc ? SL_TRACK_FAILED : SL_TRACK_DONE,
        .error = rc ? err : NULL,
        .outputs_json = outputs,
        .timings_json = timings,
        .duration = it->duration,
        .vector = rc ? NULL : vec,
        .dim = (rc || !r->emb) ? 0 : r->emb->dim,
        .vector_model = r->emb ? r->emb->name : NULL,
    };
    int lrc = sl_ledger_put(r->ledger, &row);
    if (lrc) {
        char m[512];
        sl_log(SL_LOG_ERROR, t->id, "ledger", "%s", sl_errmsg(lrc, m, sizeof m));
        if (!r->fatal) {
            r->fatal = 1;
            snprintf(r->fatal_msg, sizeof r->fatal_msg, "the ledger could not be written: %s", m);
        }
        sl_run_request_stop();
    }
    if (rc) {
        sl_log(SL_LOG_ERROR, t->id, NULL, "failed: %s", err);
        sl_report_fail(r->report, t->id, t->path, err);
    } else {
        sl_report_ok(r->report, t->id, t->path, it->duration, it->t_decode, t_sep, t_emb, t_write);
    }
    sl_progress_track_done(r->progress, 1, rc ? 0 : it->duration, t->size);
    free(vec);
    free(outputs);
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

static void shard_prefix(const sl_run_opts *o, char *buf, size_t size)
{
    if (o->shard_count > 1)
        snprintf(buf, size, "s%04dof%04d-", o->shard_index, o->shard_count);
    else
        buf[0] = 0;
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
    if (r->emb)
        printf("# embedding: %s (%s)\n", r->emb->name, r->emb->params);
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

    /* Models are opened on the CPU context first for validation; the dry run
     * and option errors must not need a device. */
    const char *backend = opts->dry_run ? "cpu" : cfg->backend;
    rc = sl_op_ctx_open(&ctx, backend);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, "backend", "%s", sl_errmsg(rc, m, sizeof m));
        sl_catalog_free(&r->cat);
        return SL_EXIT_FATAL;
    }
    rc = open_models(r, ctx);
    if (!rc)
        rc = check_output_collisions(r);
    if (rc) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "%s", sl_errmsg(rc, m, sizeof m));
        status = rc == SL_ECONFIG || rc == SL_EINVAL ? SL_EXIT_USAGE : SL_EXIT_FATAL;
        goto out;
    }

    char prefix[64];
    shard_prefix(opts, prefix, sizeof prefix);
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

    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv_put, NULL);
    pthread_cond_init(&r->cv_get, NULL);
    r->capacity = 2;
    int nthreads = cfg->decode_threads > 0 ? cfg->decode_threads : 1;
    if ((size_t)nthreads > r->cat.n && r->cat.n > 0)
        nthreads = (int)r->cat.n;
    pthread_t *th = calloc((size_t)nthreads, sizeof *th);
    r->decoders_left = 0;
    for (int i = 0; th && i < nthreads; i++) {
        r->decoders_left++;
        if (pthread_create(&th[i], NULL, decode_thread, r)) {
            r->decoders_left--;
            th[i] = 0;
        }
    }
    if (!th || r->decoders_left == 0) {
        sl_log(SL_LOG_ERROR, NULL, NULL, "could not start decode threads");
        status = SL_EXIT_FATAL;
        free(th);
        goto out_threads;
    }

    item *it;
    while ((it = queue_pop(r))) {
        if (stop_requests >= 2) {
            item_free(r, it);
            continue;
        }
        process_item(r, it);
        item_free(r, it);
    }
    for (int i = 0; i < nthreads; i++)
        if (th[i])
            pthread_join(th[i], NULL);
    free(th);

out_threads:
    sl_progress_stop(r->progress);
    r->progress = NULL;

    /* Shards are rebuilt from the ledger: they hold every done track, whichever
     * run did it, so an interrupted or partial run never leaves them stale. */
    if (r->emb && !r->fatal) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/embeddings/%s/mix", cfg->output_dir, r->emb->name);
        double t0 = now_s();
        sl_shards_spec spec = {
            .dir = dir,
            .prefix = prefix,
            .vector_model = r->emb->name,
            .model_name = r->emb->name,
            .source = "mix",
            .dtype = cfg->emb_dtype,
            .shard_rows = cfg->emb_shard_rows,
        };
        char **written = NULL;
        size_t n_written = 0;
        rc = sl_shards_write(&spec, r->ledger, &written, &n_written);
        for (size_t i = 0; i < n_written; i++)
            sl_report_add_output(r->report, written[i]);
        sl_shards_free_list(written, n_written);
        if (rc) {
            sl_log(SL_LOG_ERROR, NULL, "shards", "%s", sl_errmsg(rc, m, sizeof m));
            r->fatal = 1;
            snprintf(r->fatal_msg, sizeof r->fatal_msg, "vector shards could not be written: %s", m);
        }
        sl_report_stage_time(r->report, "shards", now_s() - t0);
    }

    {
        char rp[4096];
        snprintf(rp, sizeof rp, "%s/%sreport.json", cfg->output_dir, prefix);
        sl_report_finish(r->report, now_s() - t_start, stop_requests != 0, r->fatal ? r->fatal_msg : NULL);
        rc = sl_report_write(r->report, rp);
        if (rc) {
            sl_log(SL_LOG_ERROR, NULL, "report", "%s", sl_errmsg(rc, m, sizeof m));
            r->fatal = 1;
        }
        sl_report_summary(r->report, opts->quiet ? NULL : stderr);
        if (r->fatal)
            status = SL_EXIT_FATAL;
        else if (stop_requests)
            status = SL_EXIT_INTERRUPTED;
        else if (sl_report_failed_count(r->report) > 0)
            status = SL_EXIT_FAILED;
    }
    pthread_cond_destroy(&r->cv_get);
    pthread_cond_destroy(&r->cv_put);
    pthread_mutex_destroy(&r->mu);

out:
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
    free(r->out_dir);
    free(r->ledger_path);
    return status;
}
