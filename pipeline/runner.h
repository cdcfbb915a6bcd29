/* Runs a job: catalog -> decode pool -> model worker -> writers -> ledger,
 * then shards and report. */
#ifndef SL_RUNNER_H
#define SL_RUNNER_H

#include "config.h"

/* Exit statuses of `stemline run`, documented in the README. */
enum {
    SL_EXIT_OK = 0,          /* every track ok (or already done) */
    SL_EXIT_FATAL = 1,       /* the job could not run now; a retry may work (memory, I/O, full disk) */
    SL_EXIT_USAGE = 2,       /* a permanent error (usage, configuration, weights, device); nothing processed */
    SL_EXIT_FAILED = 3,      /* finished, some tracks failed (report.json lists them) */
    SL_EXIT_INTERRUPTED = 4  /* stopped by a signal; run again to resume */
};

typedef struct {
    int shard_index; /* 0-based */
    int shard_count; /* 1 = no sharding */
    int dry_run;
    int reset;       /* the folder's ledger holds other settings: remove their outputs, then run */
    int verify;      /* check the content hashes of done tracks' outputs before skipping them */
    int quiet;
    int progress;    /* -1 auto (tty or not), 0 off, 1 on */
} sl_run_opts;

/* Runs cfg to completion and returns one of the SL_EXIT_* statuses; problems are
 * logged with their reason. cfg is borrowed. */
int sl_run(const sl_config *cfg, const sl_run_opts *opts);

/* The exit status for an error that keeps a job from running: SL_EXIT_USAGE (2)
 * for what running again cannot fix (configuration, a missing or malformed
 * file such as weights, no CUDA device, no permission, a read-only output),
 * SL_EXIT_FATAL (1) for what a retry may fix (memory, I/O, a device error). */
int sl_exit_status_for(int rc);

/* Asks the running sl_run (or, when none runs, the next one to start) to stop
 * taking new tracks; decoders blocked in a read give up at once and their
 * tracks are abandoned (redone by the next run). A second call makes it abandon
 * every in-flight track: none is recorded done after it unless its outputs were
 * complete. Async-signal-safe. A request is cleared when sl_run returns. */
void sl_run_request_stop(void);

#endif
