/* One logging function for the whole program: level, context, message.
 * Thread-safe; writes to stderr unless redirected. */
#ifndef SL_LOG_H
#define SL_LOG_H

#include <stdio.h>

typedef enum { SL_LOG_DEBUG = 0, SL_LOG_INFO, SL_LOG_WARN, SL_LOG_ERROR, SL_LOG_QUIET } sl_log_level;

void sl_log_set_level(sl_log_level lvl);
sl_log_level sl_log_get_level(void);
/* Redirects log output (NULL restores stderr). The caller keeps ownership of f. */
void sl_log_set_file(FILE *f);

/* track and stage may be NULL. A message is one line; a trailing newline is added. */
void sl_log(sl_log_level lvl, const char *track, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Lets the progress line be cleared before a log line is printed and redrawn after. */
void sl_log_set_hooks(void (*before)(void *), void (*after)(void *), void *arg);

#define SL_DEBUG(...) sl_log(SL_LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define SL_INFO(...) sl_log(SL_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define SL_WARN(...) sl_log(SL_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define SL_ERROR(...) sl_log(SL_LOG_ERROR, NULL, NULL, __VA_ARGS__)

#endif
