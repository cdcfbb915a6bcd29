/* Internal to the job runner (pipeline/run_*.c and runner.c): the types the
 * stages share and the functions one stage calls in another. Nothing outside
 * the runner includes this. */
#ifndef SL_RUN_INTERNAL_H
#define SL_RUN_INTERNAL_H

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
#include "../common/sl_pool.h"
#include "../io/catalog.h"
#include "../io/decode.h"
#include "../io/encode.h"
#include "../io/npy.h"
#include "../models/model.h"
#include "demix.h"
#include "demucs_split.h"
#include "ledger.h"
#include "progress.h"
#include "report.h"
#include "run_trace.h"
#include "runlock.h"
#include "segment.h"
#include "search.h"
#include "shardenv.h"
#include "shards.h"
#include "tags.h"

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
    sl_demix_pos dpos; /* separation chunks when the runner demixes (r->demix) */
    sl_dmx_pos xpos;   /* separation segments of the demucs command's inference (r->dmx) */
    float *in[SL_SEG_MAX_CH];
    float *out[SL_MAX_SOURCES][SL_SEG_MAX_CH];
    float *vec;
    float *scores; /* clip scores (models with a classifier head) */
    float *mem;
    double model_s; /* model time spent on it, added to its track's t_sep / t_emb by the writer (which
                       takes the track's lock anyway; a worker would take it once more per batch) */
} slot;

struct trk {
    size_t index;
    const sl_track *tr;
    pthread_mutex_t mu;
    int failed, abandoned, finalized, decode_done;
    int writing;           /* a writer holds one of its slots (under the runner's mu): pop_write gives
                            * its other slots to no other writer meanwhile, so its pending list,
                            * sep_next, stitcher and encoders are that writer's, which encodes
                            * without mu (its decoder and the workers take mu meanwhile) */
    char err[900];
    int in_flight;         /* slots of this track not yet released */
    size_t sep_total;      /* segments decoded (final once decode_done) */
    size_t sep_next;       /* next segment to stitch */
    slot *pending;         /* segments that arrived early, sorted by k */
    sl_stitcher st;
    sl_demix_joiner dj;    /* instead of st when the runner demixes */
    sl_dmx_joiner xj;      /* instead of st for the demucs command's inference */
    double x_mean, x_std;  /* its whole-track statistics (first decode pass) */
    int have_st;
    sl_encoder *enc[SL_MAX_SOURCES]; /* opened at the stem's first write (stem_path, enc_params) */
    sl_encode_params enc_params;
    char *outputs;         /* JSON array of stem paths relative to output.dir */
    int phase;             /* 0: the input (separation, mix windows); 1: the stems' windows */
    struct trk *qnext;     /* in the runner's stem queue */
    char *stem_path[SL_MAX_SOURCES]; /* where each stem was written (full path) */
    unsigned long long placed;       /* bit k: stem k is under its final name */
    double *vsum;          /* per embedding source: length-weighted sum of window vectors */
    double *ssum;          /* per embedding source: length-weighted sum of window clip scores */
    double vweight[SL_MAX_SOURCES + 1];
    timeline tl[SL_MAX_SOURCES + 1]; /* per embedding source, when embedding.timeline */
    size_t n_samples;      /* at the separation (or embedding) rate */
    int rate;
    int source_rate;
    double t_decode, t_sep, t_emb, t_write;
    sl_decode_stats dec;
};

typedef struct {
    slot *head, *tail;
    size_t n;
} fifo;

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
    int device;            /* CUDA ordinal, -1 = use the runner's context (or, own_cpu, a CPU one) */
    int own_cpu;           /* opens a CPU context of its own (CPU workers after the first) */
    size_t batches;        /* batches this worker ran */
    double busy_s;         /* seconds it computed */
    int lost;              /* its device's context was lost (SL_EDEVLOST): never used again */
    pthread_t th;
    int started;
    pthread_t loader;      /* opening its context and models ahead of the pipeline (preload_workers) */
    int loading;           /* loader started and not joined yet */
    int load_rc;           /* what the loader returned */
    double load_s;         /* seconds its context and models took to open */
    char load_err[600];    /* the loader's reason when load_rc != 0 */
} worker;

struct runner {
    const sl_config *cfg;
    const sl_run_opts *opts;
    sl_catalog cat;
    sl_ledger *ledger;
    sl_runlock *lock;      /* held from before the folder is touched to the end */
    char hash[17];
    char weights_sha256[65]; /* of embedding.weights, for index.json; "" until computed */
    char *out_dir;
    char *ledger_path;

    const sl_sep_info *sep;
    const sl_emb_info *emb;
    sl_sep_model *sep_model;
    sl_emb_model *emb_model;

    /* segment geometry, in samples */
    size_t sep_L, sep_H, emb_L, emb_H;
    int demix;             /* > 0: separation chunks as the reference inference (pipeline/demix.h), num_overlap */
    int dmx;               /* 1: the demucs command's whole-track inference (pipeline/demucs_split.h) */
    sl_dmx_geom dmx_geom;  /* its segments, overlap and shifts */

    /* one lock for the slot pool and both queues: operations are O(1) and
     * happen once per segment, so contention is negligible */
    pthread_mutex_t mu;
    pthread_cond_t cv_slot, cv_ready, cv_write;
    slot *free_slots;
    size_t n_slots_max, n_slots, n_in_use, peak_in_use;
    size_t slot_floats;
    fifo ready, write;
    int decoders_left, workers_left;
    int pop_waiting;       /* workers waiting in pop_batch for a ready slot */
    atomic_size_t next_track;
    atomic_int stop;       /* internal stop: disk full, ledger failure */

    worker *workers;
    int n_workers;
    int threads;           /* runtime.threads resolved: CPU tokens shared by decode, model and write */
    int op_threads;        /* threads inside each CPU worker's ops (its context's pool), its tokens */
    int op_threads_max;    /* its pool's threads: beyond op_threads, on tokens free at a loop's start */
    sl_budget *budget;     /* those tokens */
    int cpu_pinned;        /* each token tied to one CPU (sl_budget_pin) */
    char workers_reason[320]; /* why n_workers (plan_threads), for the report */
    double worker_mb;      /* a CPU worker's memory, estimated (weights and work buffers) */
    double shared_mb;      /* weights all CPU workers read from one mapping (counted once) */
    int stem_threads, stem_peak; /* writers: threads a track's stems may be encoded on, most that ran (under mu) */
    double model_memory_mb; /* what the workers may take (runtime.max_model_memory_mb or 3/4 available), -1 unknown */
    double models_open_s;  /* the run's own models (worker 0's) took to open */
    double t_start, setup_s, pipeline_s; /* the run's start; from it to the pipeline's; the pipeline's span */
    double tokens_held_s;  /* token-seconds held while the pipeline ran (T * pipeline_s at most) */
    sl_op_ctx *host_ctx;   /* allocates the slots */
    const char *const *labels; /* class names of the embedding model's scores, or NULL */
    struct sl_zeroshot *zs;    /* embedding.text_labels: zero-shot labels (clap), or NULL */

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
    size_t live_tracks;                /* trk objects alive, or places reserved for them (under mu) */
    size_t max_live, peak_live;        /* cap on live_tracks (plan_memory), its peak (under mu) */
    double track_mb, other_mb;         /* plan_memory's estimates: per track in flight; decoders and threads */
    pthread_cond_t cv_stem;
    int workers_ready, workers_failed;
    int devices_lost;                  /* workers whose device's context was lost (under mu) */

    /* pipeline statistics (under mu) */
#define RUN_BATCH_HIST 129
    double wait_slot_s, wait_ready_s, wait_write_s;
    double ready_len_sum;
    size_t ready_len_samples, max_ready, batches, batch_items, splits, fallbacks;
    size_t batch_hist[RUN_BATCH_HIST]; /* batches of n segments; the last bin: n >= RUN_BATCH_HIST - 1 */

    sl_report *report;
    sl_progress *progress;
    int fatal;             /* under mu while the pipeline threads run */
    int fatal_permanent;   /* the fatal error is permanent (exit 2): FFmpeg could not be loaded */
    int ff_async;          /* FFmpeg's codecs and containers load beside the pipeline's start (run_pipeline) */
    int batch_share;       /* pop_batch's fair share: 1 (default), 2 end of run only, 0 off (SL_BATCH_SHARE) */
    double test_fill_s;    /* test hook SL_TEST_FILL_BATCHES=SECONDS: a worker waits up to this long for a full batch */
    double test_write_s;   /* test hook SL_TEST_SLOW_WRITE=SECONDS: each separation segment's write takes this much longer */
    char fatal_msg[1100];
    atomic_int disk_full;  /* the output was lost: ENOSPC, EROFS or EACCES */
    atomic_int decodes;    /* decoders opened: one per track input, one per embedded stem */
};

/* Stop requests from signals or sl_run_request_stop(): 1 stops taking tracks,
 * 2 abandons in-flight ones. Atomic (lock-free, so a signal handler may add to
 * it); left pending for the next sl_run when none is running, and cleared when
 * a run ends. */
extern atomic_int stop_requests;

double now_s(void);
int should_stop(runner *r);
void set_fatal(runner *r, const char *fmt, const char *detail);
/* Gives back a place among the tracks in flight (a track freed, or a place
 * next_stem_track reserved for a track that was not started). */
void live_track_release(runner *r);
/* FFmpeg's codecs and containers (libavcodec, libavformat), for what needs
 * them in the pipeline (decoding anything but a PCM WAV, encoding stems):
 * waits while they load beside the pipeline's start (r->ff_async). 0 once
 * loaded; otherwise the run stops with that permanent error (exit 2) and the
 * caller abandons its track (should_stop holds). */
int run_need_ffmpeg(runner *r);
/* n CPU tokens of the run's budget for track's work (track < 0: none), the
 * wait traced (run_trace.h); tokens_give gives them back. */
void tokens_take(runner *r, int n, long track);
void tokens_give(runner *r, int n);
/* Tokens the calling thread holds (tokens_take minus tokens_give). */
int tokens_held(void);
void slot_layout(runner *r, slot *s, int kind);
slot *pool_acquire(runner *r);
void pool_release(runner *r, slot *s);
/* Called by each decode thread as it ends: once none is left, frees the
 * slots no one holds (on a CPU token), and pool_release frees the others as
 * they come back (CPU backend). */
void pool_decoders_done(runner *r);
/* Frees the slots left in the pool (after the pipeline). */
void pool_free_all(runner *r);
void push_ready(runner *r, slot *s);
size_t pop_batch(runner *r, slot **out, size_t max);
void push_write(runner *r, slot *s);
/* The oldest slot in the write queue whose track no other writer holds (then
 * held: t->writing), waiting for one; NULL when the workers are done and the
 * queue is empty. The writer gives the track back with write_done. */
slot *pop_write(runner *r);
/* Caller holds t->mu: t's slots may go to any writer again. */
void write_done(runner *r, trk *t);
int expand_template(const char *tpl, const char *id, const char *stem, const char *ext,
                    char *out, size_t size);
int check_output_collisions(runner *r);
int append_json_path(char **buf, size_t *len, size_t *cap, const char *s);
/* An output of track t could not be written (rc, message msg): a full disk,
 * a read-only file system or a lost permission abandons the track and stops
 * the run (r->disk_full = ENOSPC, EROFS or EACCES); anything else fails the
 * track. Caller holds t->mu. */
void trk_output_error(runner *r, trk *t, int rc, const char *msg);
/* Caller holds t->mu. The first reason wins. */
void trk_fail(trk *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void trk_abandon(trk *t, const char *why);
/* The stems' paths (t->stem_path, t->outputs) and encoder parameters, after
 * sweeping temporaries a killed run left under those names; the encoders open
 * at their first write, on a writer's token (FFmpeg's FLAC encoder zeroes a
 * context of about 7 MB: only the tracks being written hold one). */
int prepare_stems(runner *r, trk *t, char *err, size_t errsize);
void finalize(runner *r, trk *t);
void *writer_thread(void *arg);
void *decode_thread(void *arg);
void *worker_thread(void *arg);
int open_models(runner *r, sl_op_ctx *ctx);
/* runtime.precision on a context the models compute on. A backend that
 * computes in fp32 only (the CPU that auto fell back to) keeps fp32, with one
 * warning per process; explicit cpu / cuda-emu were refused by the config.
 * Returns 0 or the backend's error. */
int apply_precision(const runner *r, sl_op_ctx *ctx);
/* Resolves runtime.threads / runtime.model_workers into r->threads, r->n_workers (CPU
 * backend; 1 until start_workers for the others) and r->op_threads, sets ctx's
 * threads and creates the budget. Returns 0, SL_ECONFIG or SL_ENOMEM. */
int plan_threads(runner *r, sl_op_ctx *ctx);
/* A CPU worker's context: op_threads_max threads, bound to the budget beyond op_threads. */
int cpu_worker_threads(const runner *r, sl_op_ctx *ctx);
/* "CPU (...) x W workers, T compute threads" for the log and the report. */
void threads_device(const runner *r, const sl_op_ctx *ctx, char *buf, size_t size);
/* JSON members (no braces) of the split that ran: threads, workers, op_threads and the peaks measured. */
void threads_json(const runner *r, char *buf, size_t size);
/* CPU workers after the first open their contexts and models in threads of
 * their own now, while the caller opens the first worker's (the run's)
 * models: W models load in the time of one. Needs plan_threads. 0 or SL_ENOMEM. */
int preload_workers(runner *r, sl_op_ctx *ctx);
int start_workers(runner *r, sl_op_ctx *ctx);
/* Joins the loaders still running, then closes every worker's models and contexts. */
void close_workers(runner *r);
/* run_guard.c. lock, check_job: 0 or the SL_EXIT_* status to stop with (logged).
 * skip_done: 1 when a done track's outputs are still as recorded, else 0 (logged).
 * record_outputs: the files record of a written track (*files_json, caller
 * frees), with the outputs of its earlier run under other names removed; fails
 * the track and returns an error when its outputs cannot be read back. */
int run_lock(runner *r);
int run_check_job(runner *r);
int run_skip_done(runner *r, const sl_track *t);
int run_record_outputs(runner *r, trk *t, char **files_json);

#endif
