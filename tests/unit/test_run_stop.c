/* Stopping a run through the API (sl_run_request_stop), as the signal handler
 * of `stemline run` does:
 *  - a stop requested before sl_run starts is not lost: the run processes
 *    nothing and returns SL_EXIT_INTERRUPTED;
 *  - one or two stops while tracks are in flight (the second abandons them):
 *    every track the ledger then holds as done has exactly the vectors of an
 *    uninterrupted run (mix and stem), and the next run redoes the others and
 *    ends with every vector right;
 *  - a stop is consumed by the run it stopped: the next run is not stopped.
 * sl_run runs in a thread of its own; the stops come once the first track's
 * stems are in place, while later tracks still have segments queued. */
#include "common/sl_error.h"
#include "io/encode.h"
#include "pipeline/config.h"
#include "pipeline/ledger.h"
#include "pipeline/runner.h"
#include "sl_test.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NT 16    /* tracks */
#define DIM 256  /* upper bound on the melstats dimension */
#define RATE 44100

static const char *dir;

typedef struct {
    int have[NT];
    int dim;
    float v[NT][DIM];
} vecset;

/* Short tracks of different content, 1.5 .. 5 s: several are fully decoded
 * while their segments still wait for the model. */
static void make_inputs(void)
{
    char path[1200];
    for (int t = 0; t < NT; t++) {
        size_t n = (size_t)(RATE * (1.5 + 0.5 * (t % 8)));
        float *pl[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
        uint32_t s = 12345u + (uint32_t)t * 7919u;
        for (size_t i = 0; i < n; i++) {
            s = s * 1664525u + 1013904223u;
            double noise = ((double)(s >> 8) / 16777216.0 - 0.5) * (0.05 + 0.02 * t);
            double f = 110.0 * (1 + t % 5) + 17.0 * t;
            pl[0][i] = (float)(0.4 * sin(2 * M_PI * f * (double)i / RATE) + noise);
            pl[1][i] = (float)(0.3 * sin(2 * M_PI * 1.5 * f * (double)i / RATE) - noise);
            if (i % (RATE / (2 + t % 4)) < 300) /* clicks: something percussive */
                pl[0][i] += 0.5f, pl[1][i] -= 0.5f;
        }
        snprintf(path, sizeof path, "%s/in/t%02d.wav", dir, t);
        sl_encode_params p = {"wav", "s16", RATE, RATE, 2, 0};
        CHECK(sl_encode_file(path, &p, (const float *const *)pl, n) == 0);
        free(pl[0]);
        free(pl[1]);
    }
}

/* with_stem: the harmonic stem is embedded too (a second phase per track) */
static int load_job(sl_config *cfg, const char *out, int with_stem)
{
    char yaml[2048];
    snprintf(yaml, sizeof yaml,
             "input: {paths: [%s/in]}\n"
             "output: {dir: %s/%s, stems: {format: wav, sample_format: f32}}\n"
             "separation: {model: hpss, segment_seconds: 2, overlap_seconds: 0.5}\n"
             "embedding: {model: melstats, window_seconds: 1.5, sources: [mix%s]}\n"
             "runtime: {backend: cpu, decode_threads: 2, batch_size: 4, max_host_memory_mb: 64}\n",
             dir, dir, out, with_stem ? ", harmonic" : "");
    int rc = sl_cfg_load_string(cfg, yaml, "job.yaml", NULL, 0);
    CHECK_MSG(rc == 0, "job: %s", sl_lasterr());
    return rc;
}

typedef struct {
    const char *out;
    int with_stem;
    int status;
} run_arg;

static void *run_thread(void *arg)
{
    run_arg *a = arg;
    sl_config cfg;
    a->status = -1;
    if (load_job(&cfg, a->out, a->with_stem))
        return NULL;
    sl_run_opts o = {.shard_index = 0, .shard_count = 1, .quiet = 1, .progress = 0};
    a->status = sl_run(&cfg, &o);
    sl_cfg_free(&cfg);
    return NULL;
}

static int run_now(const char *out, int with_stem)
{
    run_arg a = {out, with_stem, -1};
    run_thread(&a);
    return a.status;
}

static int collect(void *arg, const sl_ledger_row *r)
{
    vecset *vs = arg;
    int t = -1;
    if (sscanf(r->id, "t%d.wav", &t) != 1 || t < 0 || t >= NT || r->dim <= 0 || r->dim > DIM || !r->vector)
        return 0;
    vs->dim = r->dim;
    memcpy(vs->v[t], r->vector, (size_t)r->dim * sizeof(float));
    vs->have[t] = 1;
    return 0;
}

/* The done vectors of one source in output folder out. */
static void read_vectors(const char *out, const char *source, vecset *vs)
{
    memset(vs, 0, sizeof *vs);
    char lp[1200];
    snprintf(lp, sizeof lp, "%s/%s/ledger.sqlite", dir, out);
    sl_ledger *l = NULL;
    if (sl_ledger_open(&l, lp) != 0) {
        CHECK_MSG(0, "cannot open %s: %s", lp, sl_lasterr());
        return;
    }
    CHECK(sl_ledger_each_source_vector(l, "melstats", source, 0, collect, vs) == 0);
    sl_ledger_close(l);
}

static int count_have(const vecset *vs)
{
    int n = 0;
    for (int t = 0; t < NT; t++)
        n += vs->have[t];
    return n;
}

/* Every vector in got equals the reference's (relative 1e-5). */
static void compare(const vecset *ref, const vecset *got, const char *what)
{
    for (int t = 0; t < NT; t++) {
        if (!got->have[t])
            continue;
        CHECK_MSG(ref->have[t], "%s: t%02d has a vector the reference lacks", what, t);
        double num = 0, den = 0;
        for (int j = 0; j < ref->dim; j++) {
            double d = (double)got->v[t][j] - ref->v[t][j];
            num += d * d;
            den += (double)ref->v[t][j] * ref->v[t][j];
        }
        CHECK_MSG(got->dim == ref->dim && num <= 1e-10 * (den > 0 ? den : 1),
                  "%s: t%02d is done with a wrong vector (relative error %.3g)", what, t,
                  den > 0 ? sqrt(num / den) : sqrt(num));
    }
}

/* How many tracks have their last stem in place under out/stems/. */
static int tracks_written(const char *out)
{
    char sd[1200];
    snprintf(sd, sizeof sd, "%s/%s/stems", dir, out);
    DIR *d = opendir(sd);
    if (!d)
        return 0;
    int found = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char p[2600];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s/residual.wav", sd, de->d_name);
        found += de->d_name[0] != '.' && stat(p, &st) == 0;
    }
    closedir(d);
    return found;
}

/* `stops` stop requests once `after` tracks have their stems in place, then a
 * resume; vectors checked against ref (nsrc sources) after each. */
static void stop_and_resume(const char *out, int with_stem, int after, int stops, const vecset *ref,
                            const char *const *src, int nsrc)
{
    vecset *got = calloc(1, sizeof *got);
    run_arg a = {out, with_stem, -1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, run_thread, &a) == 0);
    struct timespec nap = {0, 1000000};
    for (int i = 0; i < 120000 && tracks_written(out) < after; i++)
        nanosleep(&nap, NULL);
    for (int i = 0; i < stops; i++)
        sl_run_request_stop();
    pthread_join(th, NULL);
    CHECK_MSG(a.status == SL_EXIT_INTERRUPTED || a.status == SL_EXIT_OK, "%s: stopped run: status %d", out,
              a.status);
    for (int s = 0; s < nsrc; s++) {
        read_vectors(out, src[s], got);
        compare(&ref[s], got, src[s]);
        printf("%s: %d stop(s) after %d written: status %d, %d of %d tracks done (%s)\n", out, stops, after,
               a.status, count_have(got), NT, src[s]);
    }
    /* the next run redoes what was abandoned: all vectors right */
    CHECK(run_now(out, with_stem) == SL_EXIT_OK);
    for (int s = 0; s < nsrc; s++) {
        read_vectors(out, src[s], got);
        CHECK_MSG(count_have(got) == NT, "%s, resumed: %s: %d of %d vectors", out, src[s], count_have(got), NT);
        compare(&ref[s], got, src[s]);
    }
    free(got);
}

int main(void)
{
    dir = sl_test_tmpdir();
    make_inputs();
    const char *src[2] = {"mix", "harmonic"};
    vecset *ref = calloc(2, sizeof *ref);

    /* the reference: one uninterrupted run */
    CHECK(run_now("ref", 1) == SL_EXIT_OK);
    for (int s = 0; s < 2; s++) {
        read_vectors("ref", src[s], &ref[s]);
        CHECK_MSG(count_have(&ref[s]) == NT, "reference %s: %d of %d vectors", src[s], count_have(&ref[s]), NT);
    }

    /* a stop that comes before the run starts stops it */
    sl_run_request_stop();
    CHECK_MSG(run_now("early", 0) == SL_EXIT_INTERRUPTED, "a stop requested before sl_run was lost");
    /* ... and is consumed: this run is not stopped */
    CHECK(run_now("early", 0) == SL_EXIT_OK);

    /* two stops while tracks are in flight, at two points of the run */
    stop_and_resume("stop1", 0, 1, 2, ref, src, 1);
    stop_and_resume("stop2", 1, 3, 2, ref, src, 2);
    /* one stop: decoding ends (reads cut short abandon their track, they never
     * end it early), the tracks already decoded are finished */
    stop_and_resume("stop3", 0, 2, 1, ref, src, 1);
    free(ref);
    sl_test_rmdir(dir);
    return sl_test_finish("run_stop");
}
