/* Progress line (pipeline/progress.c): abandoned tracks (after a stop request)
 * are counted apart from done ones and never as done: the final plain line
 * reads "2/5 tracks (40%) (1 abandoned)"; without abandoned tracks there is no
 * such part. stderr is redirected to a file to read the lines back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/progress.h"
#include "sl_test.h"

/* Runs fn with stderr captured; returns what was printed (malloc'd). */
static char *capture(void (*fn)(void))
{
    char path[1024];
    snprintf(path, sizeof path, "%s/stderr.txt", sl_test_tmpdir());
    fflush(stderr);
    int saved = dup(2);
    FILE *f = fopen(path, "w+");
    if (!f || saved < 0)
        return NULL;
    dup2(fileno(f), 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n)
        s[0] = 0;
    fclose(f);
    return s;
}

static void run_abandoned(void)
{
    sl_progress *p = sl_progress_start(5, 500, 1, 3600);
    sl_progress_track_done(p, 1, 2.0, 100);
    sl_progress_track_abandoned(p);
    sl_progress_track_done(p, 0, 0.0, 100);
    sl_progress_stop(p);
}

static void run_plain(void)
{
    sl_progress *p = sl_progress_start(2, 200, 1, 3600);
    sl_progress_track_done(p, 1, 1.5, 100);
    sl_progress_track_done(p, 1, 1.5, 100);
    sl_progress_stop(p);
}

int main(void)
{
    char *s = capture(run_abandoned);
    CHECK(s != NULL);
    const char *last = s ? strstr(s, "stemline: progress: 2/5 tracks (40%) (1 abandoned), 2.0 s of audio") : NULL;
    CHECK_MSG(last != NULL, "final line not found in:\n%s", s ? s : "");
    free(s);
    s = capture(run_plain);
    CHECK(s && strstr(s, "stemline: progress: 2/2 tracks (100%), 3.0 s of audio"));
    CHECK(s && !strstr(s, "abandoned"));
    free(s);
    return sl_test_finish("progress");
}
