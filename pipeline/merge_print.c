/* stemline merge: the merged report (JSON) and the human summary. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"
#include "../io/npy.h"
#include "merge_impl.h"
#include "shardenv.h"

#ifndef SL_VERSION
#define SL_VERSION "unknown"
#endif

static void kv_str(FILE *f, const char *k, const char *v)
{
    fprintf(f, "\"%s\": ", k);
    sl_json_str(f, v);
}

/* The shards a catalog position belongs to, one per shard count present. */
static void json_expected(FILE *f, const sl_merge *m, long pos)
{
    fputs("\"shards\": [", f);
    if (pos >= 0)
        for (size_t c = 0; c < m->n_counts; c++)
            fprintf(f, "%s{\"index\": %ld, \"count\": %d}", c ? ", " : "", pos % m->counts[c], m->counts[c]);
    fputc(']', f);
}

enum { ITEM_REASON = 1, ITEM_LEDGERS = 2, ITEM_SHARDS = 4 };

/* One list of items as JSON objects: id, path, and what `what` asks for. */
static void json_items(FILE *f, const sl_merge *m, const items *l, int what)
{
    for (size_t i = 0; i < l->n; i++) {
        const item *it = &l->v[i];
        fprintf(f, "%s\n    {", i ? "," : "");
        kv_str(f, "id", it->id);
        fputs(", ", f);
        kv_str(f, "path", it->path);
        if (what & ITEM_REASON) {
            fputs(", ", f);
            kv_str(f, "reason", it->reason);
        }
        if (what & ITEM_LEDGERS) {
            fputs(", \"ledgers\": [", f);
            for (size_t k = 0; k < it->n_shards; k++) {
                fputs(k ? ", " : "", f);
                sl_json_str(f, m->sh[it->shards[k]].ledger);
            }
            fputc(']', f);
        }
        if (what & ITEM_SHARDS) {
            fputs(", ", f);
            json_expected(f, m, it->pos);
        }
        fputc('}', f);
    }
}

static double wall_sum(const sl_merge *m, double *max, double *audio)
{
    double s = 0;
    *max = 0;
    *audio = 0;
    for (size_t i = 0; i < m->n_sh; i++) {
        if (!m->sh[i].have_run)
            continue;
        s += m->sh[i].r_wall;
        *audio += m->sh[i].r_audio;
        if (m->sh[i].r_wall > *max)
            *max = m->sh[i].r_wall;
    }
    return s;
}

int sl_merge_write_json(const sl_merge *m, FILE *f)
{
    int st = sl_merge_status(m);
    fprintf(f, "{\n  \"stemline_version\": \"%s\",\n  \"merged_at\": \"%s\",\n  ", SL_VERSION, m->merged_at);
    kv_str(f, "output_dir", m->out_dir);
    fputs(",\n  ", f);
    kv_str(f, "job", m->job);
    fprintf(f, ",\n  \"catalog_checked\": %s,\n  \"complete\": %s,\n  \"status\": %d,\n  ",
            m->have_catalog ? "true" : "false", st == 0 ? "true" : "false", st);
    kv_str(f, "config_hash", m->n_hashes == 1 ? m->hashes[0].hash : NULL);
    fputs(",\n  ", f);
    kv_str(f, "job_config_hash", m->job_hash);
    fputs(",\n  \"config_hashes\": [", f);
    for (size_t h = 0; h < m->n_hashes; h++) {
        fprintf(f, "%s\n    {", h ? "," : "");
        kv_str(f, "hash", m->hashes[h].hash);
        fputs(", \"where\": [", f);
        for (size_t w = 0; w < m->hashes[h].n_where; w++) {
            fputs(w ? ", " : "", f);
            sl_json_str(f, m->hashes[h].where[w]);
        }
        fputs("]}", f);
    }
    fprintf(f, "%s],\n  \"shard_counts\": [", m->n_hashes ? "\n  " : "");
    for (size_t c = 0; c < m->n_counts; c++)
        fprintf(f, "%s%d", c ? ", " : "", m->counts[c]);
    fputs("],\n  \"missing_shards\": [", f);
    for (size_t i = 0; i < m->n_miss_sh; i++) {
        char prefix[64], name[96];
        sl_shard_prefix(m->miss_sh[i][0], m->miss_sh[i][1], prefix, sizeof prefix);
        snprintf(name, sizeof name, "%sledger.sqlite", prefix);
        fprintf(f, "%s\n    {\"index\": %d, \"count\": %d, \"ledger\": \"%s\"}", i ? "," : "", m->miss_sh[i][0],
                m->miss_sh[i][1], name);
    }
    fprintf(f, "%s],\n  \"shards_to_run\": [", m->n_miss_sh ? "\n  " : "");
    for (size_t c = 0; c < m->n_counts; c++) {
        int *idx;
        long n = sl_merge_shards_to_run(m, m->counts[c], &idx);
        fprintf(f, "%s{\"count\": %d, \"indices\": [", c ? ", " : "", m->counts[c]);
        for (long i = 0; i < n; i++)
            fprintf(f, "%s%d", i ? ", " : "", idx[i]);
        fputs("]}", f);
        free(idx);
    }
    fputs("],\n  \"tracks\": {", f);
    if (m->have_catalog)
        fprintf(f, "\"catalog\": %zu, ", m->catalog_n);
    else
        fputs("\"catalog\": null, ", f);
    fprintf(f, "\"known\": %zu, \"ok\": %zu, \"failed\": %zu, \"missing\": %zu, \"duplicated\": %zu, "
               "\"not_in_catalog\": %zu},\n",
            m->n_known, m->n_ok, m->failed.n, m->missing.n, m->dups.n, m->n_extra);
    double wmax, raudio, wsum = wall_sum(m, &wmax, &raudio);
    fprintf(f, "  \"audio_seconds\": %.3f,\n", m->audio_ok);
    fprintf(f,
            "  \"runs\": {\"audio_seconds\": %.3f, \"wall_seconds_sum\": %.3f, \"wall_seconds_max\": %.3f, "
            "\"x_realtime_per_shard\": %.3f, \"x_realtime_all_shards\": %.3f},\n",
            raudio, wsum, wmax, wsum > 0 ? raudio / wsum : 0.0, wmax > 0 ? raudio / wmax : 0.0);
    fputs("  \"shards\": [", f);
    for (size_t i = 0; i < m->n_sh; i++) {
        const shard *s = &m->sh[i];
        fprintf(f, "%s\n    {\"index\": %d, \"count\": %d, ", i ? "," : "", s->index, s->count);
        kv_str(f, "ledger", s->ledger);
        fputs(", ", f);
        kv_str(f, "report", s->report);
        fputs(", ", f);
        kv_str(f, "error", s->error);
        fprintf(f, ", \"tracks\": {\"done\": %ld, \"failed\": %ld, \"pending\": %ld}, \"audio_seconds\": %.3f,",
                s->n_done, s->n_failed, s->n_pending, s->done_audio);
        fputs("\n     \"last_run\": ", f);
        if (!s->have_run) {
            fputs("null}", f);
            continue;
        }
        fputc('{', f);
        kv_str(f, "config_hash", s->r_hash);
        fputs(", ", f);
        kv_str(f, "backend", s->r_backend);
        fputs(", ", f);
        kv_str(f, "device", s->r_device);
        fputs(", ", f);
        kv_str(f, "started_at", s->r_started);
        fputs(", ", f);
        kv_str(f, "finished_at", s->r_finished);
        fprintf(f,
                ", \"wall_seconds\": %.3f, \"audio_seconds\": %.3f, \"x_realtime\": %.3f, \"ok\": %ld, "
                "\"failed\": %ld, \"skipped\": %ld, \"interrupted\": %s, ",
                s->r_wall, s->r_audio, s->r_wall > 0 ? s->r_audio / s->r_wall : 0.0, s->r_ok, s->r_failed,
                s->r_skipped, s->r_interrupted ? "true" : "false");
        kv_str(f, "fatal", s->r_fatal);
        fputs("}}", f);
    }
    fprintf(f, "%s],\n  \"failures\": [", m->n_sh ? "\n  " : "");
    json_items(f, m, &m->failed, ITEM_REASON | ITEM_LEDGERS | ITEM_SHARDS);
    fprintf(f, "%s],\n  \"missing\": [", m->failed.n ? "\n  " : "");
    json_items(f, m, &m->missing, ITEM_REASON | ITEM_SHARDS);
    fprintf(f, "%s],\n  \"duplicated\": [", m->missing.n ? "\n  " : "");
    json_items(f, m, &m->dups, ITEM_LEDGERS);
    fprintf(f, "%s],\n  \"problems\": [", m->dups.n ? "\n  " : "");
    for (size_t i = 0; i < m->n_problems; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        sl_json_str(f, m->problems[i]);
    }
    fprintf(f, "%s],\n  \"warnings\": [", m->n_problems ? "\n  " : "");
    for (size_t i = 0; i < m->n_warnings; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        sl_json_str(f, m->warnings[i]);
    }
    fprintf(f, "%s]\n}\n", m->n_warnings ? "\n  " : "");
    return ferror(f) ? -EIO : 0;
}

int sl_merge_write_report(const sl_merge *m, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return sl_seterr(-ENOMEM, "%s: out of memory", path);
    int rc = sl_merge_write_json(m, f);
    if (fclose(f) || rc) {
        free(buf);
        return sl_seterr(-ENOMEM, "%s: out of memory", path);
    }
    rc = sl_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

static void expected_text(const sl_merge *m, long pos, char *buf, size_t size)
{
    buf[0] = 0;
    if (pos < 0 || !m->n_counts)
        return;
    size_t l = (size_t)snprintf(buf, size, " [shard");
    for (size_t c = 0; c < m->n_counts && l < size; c++)
        l += (size_t)snprintf(buf + l, size - l, "%s %ld/%d", c ? "," : "", pos % m->counts[c], m->counts[c]);
    if (l < size)
        snprintf(buf + l, size - l, "]");
}

void sl_merge_print_problems(const sl_merge *m, FILE *f, size_t max_list)
{
    size_t lim = max_list ? max_list : (size_t)-1;
    for (size_t i = 0; i < m->n_problems; i++)
        fprintf(f, "problem: %s\n", m->problems[i]);
    for (size_t i = 0; i < m->failed.n && i < lim; i++) {
        const item *it = &m->failed.v[i];
        /* with several failed rows the reason already names each ledger */
        if (it->n_shards == 1)
            fprintf(f, "failed: %s: %s (in %s)\n", it->id, it->reason ? it->reason : "", m->sh[it->shards[0]].ledger);
        else
            fprintf(f, "failed: %s: %s\n", it->id, it->reason ? it->reason : "");
    }
    if (m->failed.n > lim)
        fprintf(f, "failed: ... and %zu more (see merged-report.json)\n", m->failed.n - lim);
    for (size_t i = 0; i < m->missing.n && i < lim; i++) {
        char ex[160];
        expected_text(m, m->missing.v[i].pos, ex, sizeof ex);
        fprintf(f, "missing: %s: %s%s\n", m->missing.v[i].id, m->missing.v[i].reason ? m->missing.v[i].reason : "",
                ex);
    }
    if (m->missing.n > lim)
        fprintf(f, "missing: ... and %zu more (see merged-report.json)\n", m->missing.n - lim);
    for (size_t i = 0; i < m->dups.n && i < lim; i++) {
        const item *it = &m->dups.v[i];
        fprintf(f, "duplicated: %s: done in", it->id);
        for (size_t k = 0; k < it->n_shards; k++)
            fprintf(f, "%s %s", k ? " and" : "", m->sh[it->shards[k]].ledger);
        fputc('\n', f);
    }
    if (m->dups.n > lim)
        fprintf(f, "duplicated: ... and %zu more (see merged-report.json)\n", m->dups.n - lim);
}

void sl_merge_print(const sl_merge *m, FILE *f, size_t max_list)
{
    fprintf(f, "stemline merge: %s\n", m->out_dir);
    for (size_t c = 0; c < m->n_counts; c++) {
        size_t have = 0;
        for (size_t i = 0; i < m->n_sh; i++)
            have += m->sh[i].count == m->counts[c];
        if (m->counts[c] == 1)
            fprintf(f, "ledgers: unsharded (ledger.sqlite)\n");
        else
            fprintf(f, "ledgers: %zu of %d shards\n", have, m->counts[c]);
    }
    for (size_t i = 0; i < m->n_sh; i++) {
        const shard *s = &m->sh[i];
        fprintf(f, "  %-28s ", s->ledger);
        if (s->error) {
            fprintf(f, "UNREADABLE: %s\n", s->error);
            continue;
        }
        fprintf(f, "%ld done, %ld failed, %ld pending", s->n_done, s->n_failed, s->n_pending);
        if (s->have_run)
            fprintf(f, "; last run %.1f s of audio in %.1f s (%.1fx realtime, %s)", s->r_audio, s->r_wall,
                    s->r_wall > 0 ? s->r_audio / s->r_wall : 0.0, s->r_backend ? s->r_backend : "?");
        else
            fputs("; no report", f);
        fputc('\n', f);
    }
    if (m->n_hashes == 1)
        fprintf(f, "config hash: %s%s\n", m->hashes[0].hash,
                m->job_hash ? (strcmp(m->job_hash, m->hashes[0].hash) ? " (the job's is different)" : " (= the job's)")
                            : "");
    else if (m->n_hashes > 1)
        fprintf(f, "config hashes: %zu different (see below)\n", m->n_hashes);
    if (m->have_catalog)
        fprintf(f, "tracks: %zu in the catalog: %zu ok, %zu failed, %zu missing, %zu duplicated", m->catalog_n,
                m->n_ok, m->failed.n, m->missing.n, m->dups.n);
    else
        fprintf(f, "tracks: %zu known to the ledgers: %zu ok, %zu failed, %zu missing, %zu duplicated", m->n_known,
                m->n_ok, m->failed.n, m->missing.n, m->dups.n);
    if (m->n_extra)
        fprintf(f, "; %zu in ledgers but not in the catalog", m->n_extra);
    fputc('\n', f);
    double wmax, raudio, wsum = wall_sum(m, &wmax, &raudio);
    fprintf(f, "audio: %.1f s done; last runs: %.1f s of audio in %.1f s of shard time (%.1fx realtime per shard), "
               "longest shard %.1f s\n",
            m->audio_ok, raudio, wsum, wsum > 0 ? raudio / wsum : 0.0, wmax);
    if (!m->have_catalog)
        fputs("note: without --job JOB.yaml only tracks some shard attempted are checked; pass the job for the "
              "full check against the catalog\n",
              f);
    for (size_t i = 0; i < m->n_warnings; i++)
        fprintf(f, "warning: %s\n", m->warnings[i]);
    sl_merge_print_problems(m, f, max_list);
}
