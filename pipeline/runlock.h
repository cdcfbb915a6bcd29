/* One writer per ledger: a run holds an exclusive lock on "<ledger>.lock" (flock)
 * from before it touches anything in the output folder until it exits. The
 * kernel drops the lock when the process dies, kill -9 included, so a stale lock
 * never blocks a re-run. Each shard has its own ledger, hence its own lock: the
 * shards of one job still run side by side in one folder.
 *
 * The lock file is never removed: removing it would let a second run lock a new
 * file while a third still holds the old one. It holds the holder's PID, host
 * and start time, for the message that the next run prints. */
#ifndef SL_RUNLOCK_H
#define SL_RUNLOCK_H

typedef struct sl_runlock sl_runlock;

/* Takes the lock of the ledger at ledger_path without waiting; its folder must
 * exist. Returns 0 with *out set (release with sl_runlock_release), -EWOULDBLOCK
 * when another process (or another sl_run of this one) holds it, with sl_lasterr()
 * naming the folder, the holder's PID and host and how to wait for it or stop it,
 * or another negated errno when the lock file cannot be created or locked. */
int sl_runlock_acquire(sl_runlock **out, const char *ledger_path);

/* Releases the lock and frees l (NULL is fine). */
void sl_runlock_release(sl_runlock *l);

#endif
