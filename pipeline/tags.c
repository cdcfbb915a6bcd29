#include "tags.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/sl_error.h"
#include "../common/sl_log.h"
#include "../io/npy.h"

#define AUDIOSET_N 527

static char *audioset[AUDIOSET_N + 1];
static pthread_once_t audioset_once = PTHREAD_ONCE_INIT;

FILE *sl_data_open(const char *name)
{
    char p[PATH_MAX + 64];
    const char *env = getenv("STEMLINE_DATA_DIR");
    if (env && *env) {
        snprintf(p, sizeof p, "%s/%s", env, name);
        FILE *f = fopen(p, "r");
        if (f)
            return f;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            static const char *const rel[] = {"/../data", "/../../data", "/../share/stemline/data", "/data"};
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
                snprintf(p, sizeof p, "%s%s/%s", exe, rel[i], name);
                FILE *f = fopen(p, "r");
                if (f)
                    return f;
            }
        }
    }
#ifdef SL_SOURCE_DIR
    snprintf(p, sizeof p, "%s/data/%s", SL_SOURCE_DIR, name);
    return fopen(p, "r");
#else
    return NULL;
#endif
}

/* index,mid,"display name" (the name quoted, "" for a literal quote). */
static void load_audioset(void)
{
    FILE *f = sl_data_open("audioset_labels.csv");
    if (!f) {
        sl_log(SL_LOG_WARN, NULL, "tags", "data/audioset_labels.csv not found: tags carry class indices only "
                                          "(set STEMLINE_DATA_DIR)");
        return;
    }
    char line[1024];
    int got = 0;
    while (fgets(line, sizeof line, f)) {
        char *end;
        long idx = strtol(line, &end, 10);
        if (end == line || *end != ',' || idx < 0 || idx >= AUDIOSET_N)
            continue; /* the header */
        char *q = strchr(end + 1, ',');
        if (!q)
            continue;
        q++;
        char name[512];
        size_t o = 0;
        if (*q == '"') {
            for (q++; *q && o + 1 < sizeof name; q++) {
                if (*q == '"') {
                    if (q[1] == '"') {
                        name[o++] = '"';
                        q++;
                        continue;
                    }
                    break;
                }
                name[o++] = *q;
            }
        } else {
            for (; *q && *q != '\n' && *q != '\r' && o + 1 < sizeof name; q++)
                name[o++] = *q;
        }
        name[o] = 0;
        if (!audioset[idx] && (audioset[idx] = strdup(name)))
            got++;
    }
    fclose(f);
    if (got != AUDIOSET_N) {
        sl_log(SL_LOG_WARN, NULL, "tags", "audioset_labels.csv has %d of %d labels: using class indices only", got,
               AUDIOSET_N);
        for (int i = 0; i < AUDIOSET_N; i++) {
            free(audioset[i]);
            audioset[i] = NULL;
        }
    }
}

const char *const *sl_labels_for(int n)
{
    if (n != AUDIOSET_N)
        return NULL;
    pthread_once(&audioset_once, load_audioset);
    return audioset[0] ? (const char *const *)audioset : NULL;
}

char *sl_tags_json(const double *sum, int n, double weight, int k, const char *const *labels, const double *cosine)
{
    if (k > n)
        k = n;
    int *top = malloc((size_t)(k > 0 ? k : 1) * sizeof *top);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = top ? open_memstream(&buf, &len) : NULL;
    if (!f) {
        free(top);
        return NULL;
    }
    /* partial selection: k is small next to n */
    int m = 0;
    for (int i = 0; i < n; i++) {
        int j = m < k ? m++ : k;
        if (j == k && (k == 0 || sum[i] <= sum[top[k - 1]]))
            continue;
        if (j == k)
            j = k - 1;
        while (j > 0 && sum[top[j - 1]] < sum[i]) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = i;
    }
    fputc('[', f);
    for (int j = 0; j < m; j++) {
        fprintf(f, "%s{\"index\": %d, \"label\": ", j ? ", " : "", top[j]);
        if (labels && labels[top[j]])
            sl_json_str(f, labels[top[j]]);
        else
            fputs("null", f);
        fprintf(f, ", \"score\": %.6f", weight > 0 ? sum[top[j]] / weight : 0.0);
        if (cosine)
            fprintf(f, ", \"cosine\": %.6f", cosine[top[j]]);
        fputc('}', f);
    }
    fputc(']', f);
    free(top);
    if (fclose(f)) {
        free(buf);
        return NULL;
    }
    return buf;
}

typedef struct {
    FILE *f;
    const char *model, *source;
} tw;

static int write_row(void *arg, const sl_ledger_row *r)
{
    tw *w = arg;
    if (r->status != SL_TRACK_DONE || !r->tags_json || !r->vector_model || strcmp(r->vector_model, w->model))
        return 0;
    if (r->source && strcmp(r->source, w->source))
        return 0;
    fputs("{\"id\": ", w->f);
    sl_json_str(w->f, r->id);
    fputs(", \"path\": ", w->f);
    sl_json_str(w->f, r->path);
    fputs(", \"model\": ", w->f);
    sl_json_str(w->f, w->model);
    fputs(", \"source\": ", w->f);
    sl_json_str(w->f, w->source);
    fprintf(w->f, ", \"tags\": %s}\n", r->tags_json);
    return 0;
}

int sl_tags_write(const char *path, sl_ledger *l, const char *model, const char *const *sources, size_t n_sources)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return SL_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n_sources && !rc; i++) {
        tw w = {f, model, sources[i]};
        /* the mix's tags live on the track row, a stem's with its vector */
        if (!strcmp(sources[i], "mix"))
            rc = sl_ledger_each(l, write_row, &w);
        else
            rc = sl_ledger_each_source_vector(l, model, sources[i], 0, write_row, &w);
    }
    if (fclose(f) && !rc)
        rc = SL_ENOMEM;
    if (!rc)
        rc = sl_mkdirs_for(path);
    if (!rc)
        rc = sl_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}
