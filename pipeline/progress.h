/* Progress: one updating line on a terminal, plain periodic lines otherwise,
 * nothing when disabled. Runs its own thread; all calls are thread-safe. */
#ifndef SL_PROGRESS_H
#define SL_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_progress sl_progress;

/* mode: -1 auto (a live line when stderr is a terminal, else a line every
 * interval_s seconds), 1 always, 0 never. Returns NULL when off or on failure;
 * every call accepts NULL. */
sl_progress *sl_progress_start(size_t total_tracks, int64_t total_bytes, int mode, int interval_s);
/* processed: 1 when the track went through the models (0 = skipped as done). */
void sl_progress_track_done(sl_progress *p, int processed, double audio_seconds, int64_t bytes);
/* A track left unfinished (stop requested): shown as "N abandoned" beside the
 * done count, never counted as done. */
void sl_progress_track_abandoned(sl_progress *p);
/* Stops the thread, prints the final line and frees p. */
void sl_progress_stop(sl_progress *p);

#endif
