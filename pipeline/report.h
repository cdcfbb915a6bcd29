/* report.json: what a run did (tracks ok / failed / skipped with reasons, seconds
 * of audio, wall time, x realtime per stage) plus a one-paragraph summary. */
#ifndef SL_REPORT_H
#define SL_REPORT_H

#include <stdio.h>

#include "config.h"

typedef struct sl_report sl_report;

/* What decoding a track's input saw (the ledger keeps the same). */
typedef struct {
    double decoded_s;     /* seconds of audio decoded (corrupt packets' silence included) */
    double stated_s;      /* seconds the container states; -1 when unknown */
    long bad_packets;     /* corrupt packets skipped (replaced by silence) */
    long long nonfinite;  /* NaN/Inf samples replaced by 0 */
} sl_decode_stats;

/* Returns NULL on allocation failure (the run then goes on without a report
 * object and every call below accepts NULL). Owned by the caller: sl_report_free. */
sl_report *sl_report_new(const sl_config *cfg, const char *config_hash, const char *backend,
                         const char *device, int shard_index, int shard_count);
/* The three calls below are thread-safe. */
/* dec as one JSON object (the report entry's and the ledger's "decode") into
 * buf; returns buf. */
const char *sl_decode_stats_json(const sl_decode_stats *dec, char *buf, size_t size);

/* dec may be NULL (nothing decoded); it is written as the entry's "decode". */
void sl_report_ok(sl_report *r, const char *id, const char *path, double duration, double t_decode,
                  double t_sep, double t_emb, double t_write, const sl_decode_stats *dec);
void sl_report_fail(sl_report *r, const char *id, const char *path, const char *reason,
                    const sl_decode_stats *dec);
void sl_report_skip(sl_report *r, const char *id, const char *path, const char *reason);
void sl_report_stage_time(sl_report *r, const char *stage, double seconds);
/* Where the throughput bins (report.json "throughput": tracks, failed and audio
 * seconds finished per bin of bin_seconds, at most 128 bins, widened by two as
 * the run outlasts them) take the time from: clock(arg) in seconds since the
 * start; NULL restores the monotonic clock. For tests. */
void sl_report_set_clock(sl_report *r, double (*clock)(void *arg), void *arg);
void sl_report_add_output(sl_report *r, const char *path);
/* A track abandoned before it finished (signal, full disk): not in the ledger,
 * so the next run redoes it. Thread-safe. */
void sl_report_abandon(sl_report *r, const char *id, const char *path, const char *reason);
/* Adds "key": json (a complete JSON value, copied) at the top level. */
void sl_report_set_json(sl_report *r, const char *key, const char *json);
void sl_report_finish(sl_report *r, double wall_seconds, int interrupted, const char *fatal);
/* Writes the JSON atomically. Returns 0 or a negated errno. */
int sl_report_write(const sl_report *r, const char *path);
/* Prints a short human summary to f (nothing when f is NULL). */
void sl_report_summary(const sl_report *r, FILE *f);
long sl_report_failed_count(const sl_report *r);
void sl_report_free(sl_report *r);

#endif
