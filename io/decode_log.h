/* The decoder's side of FFmpeg's log (io/decode_log.c): which file the
 * calling thread decodes, so FFmpeg's messages, which know only a context
 * pointer, can name it. sl_io_route_log (io/ff_dl.h) installs the callback. */
#ifndef SL_DECODE_LOG_H
#define SL_DECODE_LOG_H

/* From now on this thread's FFmpeg messages name path and count in *msgs
 * (NULL, NULL: none). */
void sl_dec_log_file(const char *path, int *msgs);
/* Forgets path if it is this thread's current file (its decoder is closing). */
void sl_dec_log_forget(const char *path);

#endif
