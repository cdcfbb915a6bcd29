/* Job runner: a timeline of the run's stages, for finding where time goes
 * (SL_TRACE=FILE). Every stage section (a segment decoded, a batch computed, a
 * segment written, a stem finished, a ledger row, the shards at the end, a wait
 * for CPU tokens ...) is recorded with its thread, its track, its wall span
 * and the CPU its thread spent in it; at the end of the run the sections are
 * written to FILE as JSON lines:
 *
 *   {"thread": 3, "what": "model", "track": 5, "t0": 0.1234, "t1": 0.1567, "cpu": 0.0331, "tokens": 1,
 *    "faults": 120, "sleeps": 2, "preempted": 0}
 *
 * t0 / t1 in seconds from the run's start; "tokens": CPU tokens of the run's
 * budget the thread held at the section's start (0: it ran outside them, e.g.
 * the main thread before and after the pipeline; a section named "wait_token"
 * is the wait for them). "faults": minor page faults of the thread in the
 * section (first touches of memory); "sleeps": times it blocked (a lock, a
 * condition, the disk: wall the section spent off the CPU by its own doing);
 * "preempted": times the scheduler took the CPU from it (getrusage of the
 * thread). A name with a dot (write.ledger) is a part of the
 * section named before the dot, on the same thread. Threads are numbered
 * in the order they first record. Unset, a mark costs one branch.
 * bench/trace_summary.py prints totals per stage and thread. */
#ifndef SL_RUN_TRACE_H
#define SL_RUN_TRACE_H

typedef struct {
    double wall, cpu; /* 0 when tracing is off */
    int tokens;       /* the thread's tokens at trace_begin */
    long faults, sleeps, preempted; /* the thread's counts at trace_begin */
} trace_mark;

/* Opens tracing when SL_TRACE is set (the run's start: t = 0). */
void trace_start(void);
/* Now, for a section that ends with trace_end. */
trace_mark trace_begin(void);
/* Records the section from m to now, with the tokens the thread held at its
 * start (trace_tokens). track < 0: none. */
void trace_end(trace_mark m, const char *what, long track);
/* The calling thread took (n > 0) or gave back (n < 0) n CPU tokens. */
void trace_tokens(int n);
/* Writes the sections to SL_TRACE's file and frees them; 0, or -1 (said on stderr). */
int trace_finish(void);

#endif
