#include "report.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../io/npy.h"

typedef struct {
    char *id, *path, *reason;
    double duration;
    double secs[4]; /* decode, separate, embed, write (ok entries) */
    int has_dec;
    sl_decode_stats dec;
} entry;

typedef struct {
    entry *v;
    size_t n, cap;
} list;

#define N_STAGES 5
static const char *const stage_names[N_STAGES] = {"decode", "separate", "embed", "write", "shards"};

/* Throughput over time in a fixed number of bins: when the run outlasts them,
 * neighbours are summed pairwise and the bin width doubles, so memory stays
 * the same however long the run. */
#define TP_BINS 128
typedef struct {
    double width;               /* seconds per bin */
    double audio[TP_BINS];      /* seconds of audio of the tracks finished in each bin */
    unsigned tracks[TP_BINS];   /* tracks finished (ok) in each bin */
    unsigned failed[TP_BINS];   /* tracks failed in each bin */
    int used;                   /* bins up to the last one touched */
} throughput;

struct sl_report {
    pthread_mutex_t mu;
    list ok, failed, skipped, abandoned;
    char *extra_key[8], *extra_json[8];
    int n_extra;
    char **outputs;
    size_t n_outputs;
    double stage[N_STAGES];
    double audio_seconds, wall;
    long long nonfinite; /* NaN/Inf input samples replaced by 0, all tracks */
    long bad_packets;    /* corrupt packets skipped, all tracks */
    int interrupted;
    char *fatal;
    char started[32], finished[32];
    char hash[17];
    char *backend, *device;
    char *sep_model, *emb_model, *output_dir, *source_file;
    int shard_index, shard_count;
    struct timespec t0;
    double (*clock)(void *); /* seconds since the start; NULL = the monotonic clock */
    void *clock_arg;
    throughput tp;
};

static double since_start(const sl_report *r)
{
    if (r->clock)
        return r->clock(r->clock_arg);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - r->t0.tv_sec) + 1e-9 * (double)(t.tv_nsec - r->t0.tv_nsec);
}

/* Widens the bins until t seconds fit. Caller holds r->mu. */
static void tp_fit(throughput *tp, double t)
{
    while (t >= tp->width * TP_BINS) {
        for (int i = 0; i < TP_BINS / 2; i++) {
            tp->audio[i] = tp->audio[2 * i] + tp->audio[2 * i + 1];
            tp->tracks[i] = tp->tracks[2 * i] + tp->tracks[2 * i + 1];
            tp->failed[i] = tp->failed[2 * i] + tp->failed[2 * i + 1];
        }
        memset(tp->audio + TP_BINS / 2, 0, sizeof tp->audio / 2);
        memset(tp->tracks + TP_BINS / 2, 0, sizeof tp->tracks / 2);
        memset(tp->failed + TP_BINS / 2, 0, sizeof tp->failed / 2);
        tp->used = (tp->used + 1) / 2;
        tp->width *= 2;
    }
}

/* Caller holds r->mu. */
static void tp_add(sl_report *r, double audio, int ok)
{
    throughput *tp = &r->tp;
    double t = since_start(r);
    tp_fit(tp, t);
    int b = (int)(t / tp->width);
    if (b >= TP_BINS)
        b = TP_BINS - 1;
    if (ok) {
        tp->audio[b] += audio;
        tp->tracks[b]++;
    } else {
        tp->failed[b]++;
    }
    if (b + 1 > tp->used)
        tp->used = b + 1;
}

static void iso_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

sl_report *sl_report_new(const sl_config *cfg, const char *config_hash, const char *backend,
                         const char *device, int shard_index, int shard_count)
{
    sl_report *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->mu, NULL);
    iso_now(r->started, sizeof r->started);
    clock_gettime(CLOCK_MONOTONIC, &r->t0);
    r->tp.width = 0.1;
    snprintf(r->hash, sizeof r->hash, "%s", config_hash);
    r->backend = dup_or_null(backend);
    r->device = dup_or_null(device);
    r->sep_model = dup_or_null(cfg->sep_model);
    r->emb_model = dup_or_null(cfg->emb_model);
    r->output_dir = dup_or_null(cfg->output_dir);
    r->source_file = dup_or_null(cfg->source_file);
    r->shard_index = shard_index;
    r->shard_count = shard_count;
    return r;
}

static entry *list_add(list *l, const char *id, const char *path, const char *reason, double duration)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        entry *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv)
            return NULL;
        l->v = nv;
        l->cap = nc;
    }
    entry *e = &l->v[l->n++];
    e->id = dup_or_null(id);
    e->path = dup_or_null(path);
    e->reason = dup_or_null(reason);
    e->duration = duration;
    e->has_dec = 0;
    return e;
}

/* Caller holds r->mu. */
static void add_decode(sl_report *r, entry *e, const sl_decode_stats *dec)
{
    if (!e || !dec)
        return;
    e->has_dec = 1;
    e->dec = *dec;
    r->nonfinite += dec->nonfinite;
    r->bad_packets += dec->bad_packets;
}

void sl_report_ok(sl_report *r, const char *id, const char *path, double duration, double t_decode,
                  double t_sep, double t_emb, double t_write, const sl_decode_stats *dec)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    entry *e = list_add(&r->ok, id, path, NULL, duration);
    if (e) {
        e->secs[0] = t_decode;
        e->secs[1] = t_sep;
        e->secs[2] = t_emb;
        e->secs[3] = t_write;
    }
    add_decode(r, e, dec);
    tp_add(r, duration, 1);
    r->audio_seconds += duration;
    r->stage[0] += t_decode;
    r->stage[1] += t_sep;
    r->stage[2] += t_emb;
    r->stage[3] += t_write;
    pthread_mutex_unlock(&r->mu);
}

void sl_report_fail(sl_report *r, const char *id, const char *path, const char *reason,
                    const sl_decode_stats *dec)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    add_decode(r, list_add(&r->failed, id, path, reason, 0), dec);
    tp_add(r, 0, 0);
    pthread_mutex_unlock(&r->mu);
}

void sl_report_skip(sl_report *r, const char *id, const char *path, const char *reason)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    list_add(&r->skipped, id, path, reason, 0);
    pthread_mutex_unlock(&r->mu);
}

void sl_report_abandon(sl_report *r, const char *id, const char *path, const char *reason)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    list_add(&r->abandoned, id, path, reason, 0);
    pthread_mutex_unlock(&r->mu);
}

void sl_report_set_json(sl_report *r, const char *key, const char *json)
{
    if (!r || r->n_extra >= 8)
        return;
    pthread_mutex_lock(&r->mu);
    r->extra_key[r->n_extra] = strdup(key);
    r->extra_json[r->n_extra] = strdup(json);
    if (r->extra_key[r->n_extra] && r->extra_json[r->n_extra])
        r->n_extra++;
    pthread_mutex_unlock(&r->mu);
}

void sl_report_set_clock(sl_report *r, double (*clock)(void *arg), void *arg)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->clock = clock;
    r->clock_arg = arg;
    pthread_mutex_unlock(&r->mu);
}

void sl_report_stage_time(sl_report *r, const char *stage, double seconds)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < N_STAGES; i++)
        if (!strcmp(stage, stage_names[i]))
            r->stage[i] += seconds;
    pthread_mutex_unlock(&r->mu);
}

void sl_report_add_output(sl_report *r, const char *path)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    char **no = realloc(r->outputs, (r->n_outputs + 1) * sizeof *no);
    if (no) {
        r->outputs = no;
        r->outputs[r->n_outputs++] = strdup(path);
    }
    pthread_mutex_unlock(&r->mu);
}

void sl_report_finish(sl_report *r, double wall_seconds, int interrupted, const char *fatal)
{
    if (!r)
        return;
    r->wall = wall_seconds;
    pthread_mutex_lock(&r->mu);
    tp_fit(&r->tp, wall_seconds);
    pthread_mutex_unlock(&r->mu);
    r->interrupted = interrupted;
    r->fatal = dup_or_null(fatal);
    iso_now(r->finished, sizeof r->finished);
}

long sl_report_failed_count(const sl_report *r) { return r ? (long)r->failed.n : 0; }

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const entry *)a)->id, ((const entry *)b)->id);
}

static void json_kv_str(FILE *f, const char *k, const char *v)
{
    fprintf(f, "\"%s\": ", k);
    if (v)
        sl_json_str(f, v);
    else
        fputs("null", f);
}

const char *sl_decode_stats_json(const sl_decode_stats *d, char *buf, size_t size)
{
    char stated[32] = "null";
    if (d->stated_s >= 0)
        snprintf(stated, sizeof stated, "%.3f", d->stated_s);
    snprintf(buf, size,
             "{\"decoded_seconds\": %.3f, \"stated_seconds\": %s, \"corrupt_packets\": %ld, "
             "\"nonfinite_samples\": %lld}",
             d->decoded_s, stated, d->bad_packets, d->nonfinite);
    return buf;
}

static void write_list(FILE *f, const char *name, list *l, int with_reason, int with_duration)
{
    if (l->n)
        qsort(l->v, l->n, sizeof *l->v, cmp_entry);
    fprintf(f, "  \"%s\": [", name);
    for (size_t i = 0; i < l->n; i++) {
        fprintf(f, "%s\n    {", i ? "," : "");
        json_kv_str(f, "id", l->v[i].id);
        fputs(", ", f);
        json_kv_str(f, "path", l->v[i].path);
        if (with_duration) {
            const double *t = l->v[i].secs;
            fprintf(f, ", \"duration\": %.3f, \"seconds\": {\"decode\": %.3f, \"separate\": %.3f, \"embed\": %.3f, "
                       "\"write\": %.3f}",
                    l->v[i].duration, t[0], t[1], t[2], t[3]);
        }
        if (with_reason) {
            fputs(", ", f);
            json_kv_str(f, "reason", l->v[i].reason);
        }
        if (l->v[i].has_dec) {
            char dj[256];
            fprintf(f, ", \"decode\": %s", sl_decode_stats_json(&l->v[i].dec, dj, sizeof dj));
        }
        fputc('}', f);
    }
    fprintf(f, "%s]", l->n ? "\n  " : "");
}

int sl_report_write(const sl_report *cr, const char *path)
{
    sl_report *r = (sl_report *)cr;
    if (!r)
        return 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -12;
    pthread_mutex_lock(&r->mu);
    fprintf(f, "{\n  \"stemline_version\": \"%s\",\n", SL_VERSION);
    fputs("  ", f);
    json_kv_str(f, "job", r->source_file);
    fprintf(f, ",\n  \"started_at\": \"%s\",\n  \"finished_at\": \"%s\",\n", r->started, r->finished);
    fprintf(f, "  \"config_hash\": \"%s\",\n  ", r->hash);
    json_kv_str(f, "backend", r->backend);
    fputs(",\n  ", f);
    json_kv_str(f, "device", r->device);
    fputs(",\n  ", f);
    json_kv_str(f, "separation", r->sep_model);
    fputs(",\n  ", f);
    json_kv_str(f, "embedding", r->emb_model);
    fputs(",\n  ", f);
    json_kv_str(f, "output_dir", r->output_dir);
    fprintf(f, ",\n  \"shard\": {\"index\": %d, \"count\": %d},\n", r->shard_index, r->shard_count);
    fprintf(f, "  \"interrupted\": %s,\n  ", r->interrupted ? "true" : "false");
    json_kv_str(f, "fatal", r->fatal);
    fprintf(f,
            ",\n  \"tracks\": {\"total\": %zu, \"ok\": %zu, \"failed\": %zu, \"skipped\": %zu, "
            "\"abandoned\": %zu},\n",
            r->ok.n + r->failed.n + r->skipped.n + r->abandoned.n, r->ok.n, r->failed.n, r->skipped.n,
            r->abandoned.n);
    fprintf(f, "  \"audio_seconds\": %.3f,\n  \"wall_seconds\": %.3f,\n", r->audio_seconds, r->wall);
    fprintf(f, "  \"x_realtime\": %.3f,\n", r->wall > 0 ? r->audio_seconds / r->wall : 0.0);
    fprintf(f, "  \"decode\": {\"corrupt_packets\": %ld, \"nonfinite_samples\": %lld},\n", r->bad_packets,
            r->nonfinite);
    fputs("  \"stages\": {", f);
    for (int i = 0; i < N_STAGES; i++) {
        double s = r->stage[i];
        fprintf(f, "%s\n    \"%s\": {\"seconds\": %.3f, \"x_realtime\": %.3f}", i ? "," : "", stage_names[i],
                s, s > 0 ? r->audio_seconds / s : 0.0);
    }
    fputs("\n  },\n", f);
    /* bins up to the end of the run (at least the last one holding a track) */
    int nb = r->tp.used;
    if (r->wall > 0) {
        int wb = (int)(r->wall / r->tp.width) + 1;
        nb = wb > nb ? (wb < TP_BINS ? wb : TP_BINS) : nb;
    }
    fprintf(f, "  \"throughput\": {\"bin_seconds\": %.6g, \"tracks\": [", r->tp.width);
    for (int i = 0; i < nb; i++)
        fprintf(f, "%s%u", i ? ", " : "", r->tp.tracks[i]);
    fputs("], \"failed\": [", f);
    for (int i = 0; i < nb; i++)
        fprintf(f, "%s%u", i ? ", " : "", r->tp.failed[i]);
    fputs("], \"audio_seconds\": [", f);
    for (int i = 0; i < nb; i++)
        fprintf(f, "%s%.3f", i ? ", " : "", r->tp.audio[i]);
    fputs("]},\n", f);
    write_list(f, "ok", &r->ok, 0, 1);
    fputs(",\n", f);
    write_list(f, "failed", &r->failed, 1, 0);
    fputs(",\n", f);
    write_list(f, "skipped", &r->skipped, 1, 0);
    fputs(",\n", f);
    write_list(f, "abandoned", &r->abandoned, 1, 0);
    for (int i = 0; i < r->n_extra; i++)
        fprintf(f, ",\n  \"%s\": %s", r->extra_key[i], r->extra_json[i]);
    fputs(",\n  \"outputs\": [", f);
    for (size_t i = 0; i < r->n_outputs; i++) {
        fputs(i ? ", " : "", f);
        sl_json_str(f, r->outputs[i]);
    }
    fputs("]\n}\n", f);
    pthread_mutex_unlock(&r->mu);
    if (fclose(f)) {
        free(buf);
        return -12;
    }
    int rc = sl_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

void sl_report_summary(const sl_report *r, FILE *f)
{
    if (!r || !f)
        return;
    fprintf(f, "stemline: %zu ok, %zu failed, %zu skipped (already done); %.1f s of audio in %.1f s (%.1fx realtime)\n",
            r->ok.n, r->failed.n, r->skipped.n, r->audio_seconds, r->wall,
            r->wall > 0 ? r->audio_seconds / r->wall : 0.0);
    if (r->abandoned.n)
        fprintf(f, "stemline: %zu tracks abandoned unfinished (%s); run the same command again to resume\n",
                r->abandoned.n, r->abandoned.v[0].reason);
    for (size_t i = 0; i < r->failed.n && i < 20; i++)
        fprintf(f, "stemline: failed: %s: %s\n", r->failed.v[i].id, r->failed.v[i].reason);
    if (r->failed.n > 20)
        fprintf(f, "stemline: ... and %zu more failures, see report.json\n", r->failed.n - 20);
}

static void list_free(list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].id);
        free(l->v[i].path);
        free(l->v[i].reason);
    }
    free(l->v);
}

void sl_report_free(sl_report *r)
{
    if (!r)
        return;
    list_free(&r->ok);
    list_free(&r->failed);
    list_free(&r->skipped);
    list_free(&r->abandoned);
    for (int i = 0; i < r->n_extra; i++) {
        free(r->extra_key[i]);
        free(r->extra_json[i]);
    }
    for (size_t i = 0; i < r->n_outputs; i++)
        free(r->outputs[i]);
    free(r->outputs);
    free(r->fatal);
    free(r->backend);
    free(r->device);
    free(r->sep_model);
    free(r->emb_model);
    free(r->output_dir);
    free(r->source_file);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
