/* Job runner: model workers (batches of segments of many tracks through the
 * separation and embedding models, CPU fallback after a device error) and the
 * thread policy.
 *
 * Thread policy (runtime.threads = T, runtime.model_workers = W):
 *  - T is the compute budget: T tokens (common/sl_pool.h, sl_budget) that every
 *    stage holds while it computes and drops while it waits. A decoder holds one
 *    while it decodes a segment, a writer one while it encodes and writes a
 *    segment's outputs, a model worker its op threads' worth while it runs a
 *    batch. So at most T threads compute at once, whatever the number of threads
 *    that exist; T = 1 computes on one thread at a time. Default: the CPUs this
 *    process may use (sched_getaffinity, cgroup v2 quota).
 *  - CPU backend: W workers, each with its own op context and model instances,
 *    take batches of segments (of any tracks) from the ready queue in parallel;
 *    each context runs its ops on P = T / W threads (its sl_pool; OpenBLAS is
 *    pinned to one thread per call). Auto W = T (P = 1): segments of different
 *    tracks are independent, so workers scale best, and they need no
 *    synchronisation inside a batch. Each worker holds its own weights and work
 *    buffers, so auto W is also held to runtime.max_model_memory_mb (default
 *    3/4 of the memory available) / the estimate per worker (plan_workers),
 *    at least 1, the threads left going inside ops; set runtime.model_workers lower to trade
 *    workers for threads inside ops (less memory: one model instance and one set
 *    of work buffers per worker; lower latency per segment).
 *  - Other backends: one worker per device, one host thread each (P = 1).
 * Idle tokens are borrowed: a worker's op loops also run on tokens free at their
 * start, up to min(T, 4 P) threads (sl_pool_set_budget; SL_OP_BORROW=0: off).
 * report.json's pipeline object states T, W, P and the peaks measured (tokens
 * held at once, threads inside one op loop), so the split stated is checked
 * against the split that ran. */
#include "run_internal.h"

/* Work buffers a CPU worker keeps beside its weights (op scratch, activations,
 * a model's per-segment buffers, its pool's stacks), an allowance above the
 * peaks measured for the models at their default segments (configs/README.md). */
#define SL_WORKER_WORK_MB 256.0
/* Derived forms of the weights a backend keeps (the CPU's Winograd transforms
 * of fixed 3x3 conv weights, 16/9 their size or 36/9 for F(4x4), and the direct
 * 1-D convolutions' packed weights: 0.73 of HT-Demucs's file) and the copies
 * made at load, as a share of the weights files. */
#define SL_WORKER_WEIGHTS_X 2.0

/* Bytes of a weights file, 0 when unset or unreadable (the open says why). */
static double file_mb(const char *path)
{
    struct stat st;
    if (!path || !*path || stat(path, &st) || !S_ISREG(st.st_mode))
        return 0;
    return (double)st.st_size / 1048576.0;
}

/* A number (MB) in a cgroup v2 file of this process, -1 when absent or "max". */
static double cgroup_mb(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "/sys/fs/cgroup/%s", name);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char v[64] = "";
    int n = fscanf(f, "%63s", v);
    fclose(f);
    if (n != 1 || !strcmp(v, "max"))
        return -1;
    char *end;
    double x = strtod(v, &end);
    return end != v && x >= 0 ? x / 1048576.0 : -1;
}

/* Memory this process may still take (MB): MemAvailable of /proc/meminfo, or
 * less under a cgroup v2 memory.max; *from names the bound. SL_TEST_MEM_AVAILABLE_MB
 * (tests) stands in for both. -1 when nothing says. */
static double available_mb(const char **from)
{
    const char *e = getenv("SL_TEST_MEM_AVAILABLE_MB");
    if (e && *e) {
        *from = "SL_TEST_MEM_AVAILABLE_MB";
        return atof(e);
    }
    double avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "MemAvailable:", 13)) {
                avail = atof(line + 13) / 1024.0;
                break;
            }
        fclose(f);
    }
    *from = "MemAvailable";
    const double max = cgroup_mb("memory.max"), cur = cgroup_mb("memory.current");
    if (max >= 0) {
        const double left = cur >= 0 && cur < max ? max - cur : 0;
        if (avail < 0 || left < avail) {
            avail = left;
            *from = "cgroup memory.max";
        }
    }
    return avail;
}

/* Workers worth having for the catalog: T, but no more than its tracks (at
 * least 1) for a separation model that wants one worker per track
 * (sl_sep_one_worker_per_track: HT-Demucs, whose worker buffers are about
 * 0.4 GB, touched for the first time by each worker's first segment). */
static int useful_workers(const runner *r, int T)
{
    if (!sl_sep_one_worker_per_track(r->cfg->sep_model) || r->cat.n >= (size_t)T)
        return T;
    return r->cat.n ? (int)r->cat.n : 1;
}

/* W on the CPU backend: runtime.model_workers, else one per thread of the
 * budget (useful_workers) as long as that many workers' weights and work
 * buffers fit in runtime.max_model_memory_mb (or 3/4 of the memory
 * available). The reason goes to the report (r->workers_reason). */
static int plan_workers(runner *r, int T)
{
    const sl_config *c = r->cfg;
    /* weights copied into each worker, and weights every worker reads in place
     * from one mapping (page cache: counted once, their derived forms per worker) */
    double weights = 0, shared = 0;
    if (strcmp(c->sep_model, "none"))
        weights += file_mb(c->sep_weights);
    if (strcmp(c->emb_model, "none")) {
        shared = sl_emb_weights_shared_bytes(c->emb_model, c->emb_weights) / 1048576.0;
        if (shared <= 0)
            weights += file_mb(c->emb_weights);
    }
    r->shared_mb = shared;
    r->worker_mb = weights * SL_WORKER_WEIGHTS_X + SL_WORKER_WORK_MB;
    /* the forms derived from the shared weights are shared by the workers too
     * (sl_op_cpu_fixed_forms): counted once, with the mapping */
    const double once = shared * SL_WORKER_WEIGHTS_X;
    char what[200];
    snprintf(what, sizeof what, "weights %.0f MB x %.0f + %.0f MB work", weights, SL_WORKER_WEIGHTS_X,
             SL_WORKER_WORK_MB);
    if (shared > 0)
        snprintf(what + strlen(what), sizeof what - strlen(what),
                 "; once for all: %.0f MB of shared weights mapped and their derived forms", shared);
    const char *from = "runtime.max_model_memory_mb";
    double budget = c->max_model_memory_mb;
    if (budget <= 0) {
        const double avail = available_mb(&from);
        budget = avail >= 0 ? 0.75 * avail : -1;
    }
    r->model_memory_mb = budget;
    if (c->model_workers > 0) {
        int W = c->model_workers;
        if (W > T) {
            sl_log(SL_LOG_WARN, NULL, NULL,
                   "runtime.model_workers (%d) is more than runtime.threads (%d): %d workers of 1 thread", W, T, T);
            W = T;
        }
        snprintf(r->workers_reason, sizeof r->workers_reason, "runtime.model_workers: %d", c->model_workers);
        if (budget >= 0 && W * r->worker_mb + once > budget)
            sl_log(SL_LOG_WARN, NULL, NULL,
                   "runtime.model_workers: %d workers may need %.0f MB (%.0f MB each, estimated), more than the %.0f "
                   "MB for the models (%s)", W, W * r->worker_mb + once, r->worker_mb, budget, from);
        return W;
    }
    const double fit = budget >= 0 ? floor((budget - once) / r->worker_mb) : (double)T;
    const int U = useful_workers(r, T);
    char per[96] = "one per thread";
    if (U < T)
        snprintf(per, sizeof per, "one per track of %s", c->sep_model);
    if (fit >= U) {
        snprintf(r->workers_reason, sizeof r->workers_reason,
                 "auto: %s (%d x %.0f MB per worker%s fits in %.0f MB, %s)", per, U, r->worker_mb,
                 shared > 0 ? " and the shared weights" : "", budget, from);
        if (budget < 0)
            snprintf(r->workers_reason, sizeof r->workers_reason, "auto: %s (the memory available is not known)",
                     per);
        return U;
    }
    const int W = fit >= 1 ? (int)fit : 1;
    snprintf(r->workers_reason, sizeof r->workers_reason,
             "auto: %d of %d by memory (%.0f MB per worker: %s; %.0f MB for the models, %s)%s", W, T, r->worker_mb,
             what, budget, from,
             fit < 1 ? ": even one worker may not fit" : "");
    sl_log(fit < 1 ? SL_LOG_WARN : SL_LOG_INFO, NULL, NULL, "%d model worker%s instead of %d: %s", W,
           W == 1 ? "" : "s", T, r->workers_reason);
    return W;
}

int plan_threads(runner *r, sl_op_ctx *ctx)
{
    const int T = r->cfg->threads > 0 ? r->cfg->threads : sl_cpu_count();
    int W = 1, P = 1;
    if (!strcmp(sl_op_ctx_backend(ctx), "cpu")) {
        W = plan_workers(r, T);
        P = T / W;
    } else {
        snprintf(r->workers_reason, sizeof r->workers_reason, "backend %s: one worker per device",
                 sl_op_ctx_backend(ctx));
    }
    /* a worker's ops may run on more threads than its own P when tokens sit
     * unused (a worker waiting for input, the last batches of a run): up to
     * 4 P, within T (SL_OP_BORROW=0: never, for comparisons) */
    const char *borrow = getenv("SL_OP_BORROW");
    int Pmax = P;
    if (W > 1 && !(borrow && !strcmp(borrow, "0")))
        Pmax = 4 * P < T ? 4 * P : T;
    r->threads = T;
    r->n_workers = W;
    r->op_threads = P;
    r->op_threads_max = Pmax;
    int rc = sl_budget_create(&r->budget, T);
    /* with one token per CPU, each token is one CPU (sl_budget_pin says why;
     * SL_CPU_PIN=0: off, for comparisons) */
    const char *pin = getenv("SL_CPU_PIN");
    r->cpu_pinned = !rc && !(pin && !strcmp(pin, "0")) && sl_budget_pin(r->budget);
    if (!rc)
        rc = cpu_worker_threads(r, ctx);
    return rc;
}

int cpu_worker_threads(const runner *r, sl_op_ctx *ctx)
{
    int rc = sl_op_ctx_set_threads(ctx, r->op_threads_max);
    if (!rc && r->op_threads_max > r->op_threads)
        sl_op_ctx_share_budget(ctx, r->budget, r->op_threads);
    return rc;
}

void threads_device(const runner *r, const sl_op_ctx *ctx, char *buf, size_t size)
{
    char more[96] = "";
    if (r->op_threads_max > r->op_threads)
        snprintf(more, sizeof more, " (ops on %d thread%s, up to %d with idle ones)", r->op_threads,
                 r->op_threads == 1 ? "" : "s", r->op_threads_max);
    snprintf(buf, size, "%s x %d worker%s%s, %d compute thread%s%s", sl_op_ctx_device(ctx), r->n_workers,
             r->n_workers == 1 ? "" : "s", more, r->threads, r->threads == 1 ? "" : "s",
             r->cpu_pinned ? ", one per CPU" : "");
}

void threads_json(const runner *r, char *buf, size_t size)
{
    int peak_op = 0;
    size_t len = 0, olen = 0;
    char batches[512] = "", opened[512] = "";
    for (int i = 0; r->workers && i < r->n_workers; i++) {
        const worker *w = &r->workers[i];
        if (w->ctx) {
            const int p = sl_op_ctx_peak_threads(w->ctx);
            peak_op = p > peak_op ? p : peak_op;
        }
        if (len + 32 < sizeof batches)
            len += (size_t)snprintf(batches + len, sizeof batches - len, "%s%zu", i ? ", " : "", w->batches);
        /* worker 0 computes on the run's own models */
        if (olen + 32 < sizeof opened)
            olen += (size_t)snprintf(opened + olen, sizeof opened - olen, "%s%.3f", i ? ", " : "",
                                     w->owns || i > 0 ? w->load_s : r->models_open_s);
    }
    /* the workers' contexts are open until close_workers, after the report */
    size_t forms_bytes = 0, forms_n = 0, forms_uses = 0;
    sl_op_cpu_fixed_forms(&forms_bytes, &forms_n, &forms_uses);
    unsigned long woken, futile; /* waits for tokens that ended, and wake-ups that could not go */
    sl_budget_wakeups(r->budget, &woken, &futile);
    snprintf(buf, size,
             "\"threads\": %d, \"workers\": %d, \"op_threads\": %d, \"peak_compute_threads\": %d, "
             "\"peak_op_threads\": %d, \"op_threads_max\": %d, \"worker_batches\": [%s], \"worker_open_s\": [%s], "
             "\"workers_reason\": \"%s\", \"worker_memory_mb\": %.1f, \"shared_weights_mb\": %.1f, "
             "\"model_memory_mb\": %.1f, \"fixed_forms_mb\": %.1f, \"fixed_forms\": %zu, \"fixed_form_uses\": %zu, "
             "\"stem_threads\": %d, \"stem_threads_peak\": %d, \"token_wakeups\": %lu, \"token_wakeups_futile\": %lu, "
             "\"cpu_pinned\": %s",
             r->threads, r->n_workers, r->op_threads, sl_budget_peak(r->budget), peak_op, r->op_threads_max, batches,
             opened, r->workers_reason, r->worker_mb, r->shared_mb, r->model_memory_mb, forms_bytes / 1048576.0,
             forms_n, forms_uses, r->stem_threads, r->stem_peak, woken, futile, r->cpu_pinned ? "true" : "false");
}

/* ---- model workers ---- */

static int fault_oom_limit(void)
{
    const char *e = getenv("SL_FAULT_DEVICE_OOM");
    return e && *e ? atoi(e) : -1;
}

static int is_device_error(int rc) { return rc == SL_ENOMEM || rc == SL_EDEVICE; }

/* Runs one batch of slots (all of one kind) on the given models. */
static int run_models(runner *r, sl_sep_model *sep, sl_emb_model *emb, slot **s, size_t n, int inject,
                      size_t *bad)
{
    int lim = inject ? fault_oom_limit() : -1;
    if (lim >= 0 && n > (size_t)lim)
        return sl_seterr(SL_ENOMEM, "simulated device out of memory for a batch of %zu (SL_FAULT_DEVICE_OOM=%d)",
                         n, lim);
    const float *const *in[256];
    size_t lens[256];
    if (n > 256)
        return SL_EINVAL;
    for (size_t b = 0; b < n; b++) {
        in[b] = (const float *const *)s[b]->in;
        /* demix: the model sees whole (padded) chunks */
        lens[b] = s[b]->kind == KIND_SEP && (r->demix || r->dmx) ? r->sep_L : s[b]->len;
    }
    if (s[0]->kind == KIND_SEP) {
        float *const *const *out[256];
        float *const *planes[256][SL_MAX_SOURCES];
        for (size_t b = 0; b < n; b++) {
            for (int k = 0; k < r->sep->n_sources; k++)
                planes[b][k] = s[b]->out[k];
            out[b] = planes[b];
        }
        return sl_sep_run_batch(sep, n, in, lens, out, bad);
    }
    float *vecs[256], *scores[256];
    for (size_t b = 0; b < n; b++) {
        vecs[b] = s[b]->vec;
        scores[b] = s[b]->scores;
    }
    if (r->emb->n_scores > 0 && r->cfg->emb_tags_top_k > 0)
        return sl_emb_run_batch_scores(emb, n, in, lens, vecs, scores, bad);
    return sl_emb_run_batch(emb, n, in, lens, vecs, bad);
}

static int open_cpu_fallback(worker *w)
{
    runner *r = w->r;
    if (w->cpu_ctx)
        return 0;
    int rc = sl_op_ctx_open(&w->cpu_ctx, "cpu");
    if (!rc && r->sep)
        rc = sl_sep_open(&w->cpu_sep, r->cfg->sep_model, r->cfg->sep_weights, &r->cfg->sep_options, w->cpu_ctx);
    if (!rc && r->emb)
        rc = sl_emb_open(&w->cpu_emb, r->cfg->emb_model, r->cfg->emb_weights, &r->cfg->emb_options, w->cpu_ctx);
    return rc;
}

/* The worker's device lost its context to a sticky error: it is never used
 * again (retrying there fails forever). */
static void worker_lost(worker *w, int rc)
{
    runner *r = w->r;
    char m[512];
    pthread_mutex_lock(&r->mu);
    w->lost = 1;
    r->devices_lost++;
    int others = r->n_workers - r->workers_failed - r->devices_lost;
    pthread_mutex_unlock(&r->mu);
    sl_log(SL_LOG_ERROR, NULL, "worker", "worker %d: %s: %s", w->id,
           sl_errmsg(rc, m, sizeof m),
           others > 0 ? "its batch runs on the CPU, later ones on the other devices"
                      : "this and every later batch of the worker run on the CPU");
}

/* A device error (out of memory) on a batch: halve the batch and retry, down to
 * one segment; a single segment that still fails runs on the CPU; a segment
 * that fails there too fails its track with the reason. A lost device
 * (SL_EDEVLOST) is not retried: the batch runs on the CPU. */
static void run_batch(worker *w, slot **s, size_t n)
{
    runner *r = w->r;
    size_t bad = 0;
    double t0 = now_s();
    int rc;
    if (w->lost) {
        rc = open_cpu_fallback(w);
        if (!rc)
            rc = run_models(r, w->cpu_sep, w->cpu_emb, s, n, 0, &bad);
    } else {
        rc = run_models(r, w->sep, w->emb, s, n, 1, &bad);
        if (rc == SL_EDEVLOST) {
            worker_lost(w, rc);
            run_batch(w, s, n);
            return;
        }
    }
    double dt = now_s() - t0;
    if (rc && !w->lost && is_device_error(rc) && n > 1) {
        char m[512];
        sl_log(SL_LOG_WARN, NULL, "worker", "%s; retrying with batches of %zu", sl_errmsg(rc, m, sizeof m),
               n / 2);
        pthread_mutex_lock(&r->mu);
        r->splits++;
        pthread_mutex_unlock(&r->mu);
        w->max_batch = n / 2 > 0 ? n / 2 : 1;
        run_batch(w, s, n / 2);
        run_batch(w, s + n / 2, n - n / 2);
        return;
    }
    if (rc && !w->lost && n == 1 && is_device_error(rc)) {
        char m[512];
        sl_errmsg(rc, m, sizeof m);
        if (open_cpu_fallback(w) == 0) {
            sl_log(SL_LOG_WARN, s[0]->t->tr->id, "worker", "%s; this segment runs on the CPU", m);
            pthread_mutex_lock(&r->mu);
            r->fallbacks++;
            pthread_mutex_unlock(&r->mu);
            t0 = now_s();
            rc = run_models(r, w->cpu_sep, w->cpu_emb, s, 1, 0, &bad);
            dt = now_s() - t0;
        }
    }
    if (rc && n > 1) {
        /* isolate the segment that fails; the others go on */
        for (size_t b = 0; b < n; b++)
            run_batch(w, s + b, 1);
        return;
    }
    for (size_t b = 0; b < n; b++) {
        s[b]->model_s += dt / (double)n;
        if (rc) {
            trk *t = s[b]->t;
            char m[512];
            sl_errmsg(rc, m, sizeof m);
            pthread_mutex_lock(&t->mu);
            trk_fail(t, "%s: %s", s[b]->kind == KIND_SEP ? "separate" : "embed", m);
            pthread_mutex_unlock(&t->mu);
        }
    }
}

/* Opens a worker's own context and models (a worker on its own device, or a
 * CPU worker after the first); *msg receives the reason on failure. */
static int worker_open(worker *w, char *msg, size_t size)
{
    runner *r = w->r;
    char name[32];
    if (w->own_cpu)
        snprintf(name, sizeof name, "cpu");
    else
        snprintf(name, sizeof name, "cuda:%d", w->device);
    const double t0 = now_s();
    int rc = sl_op_ctx_open(&w->ctx, name);
    w->owns = 1;
    if (!rc && w->own_cpu)
        rc = cpu_worker_threads(r, w->ctx);
    if (!rc && !w->own_cpu)
        rc = apply_precision(r, w->ctx);
    /* by the config, not r->sep / r->emb: a loader runs while the run's own models open */
    if (!rc && strcmp(r->cfg->sep_model, "none"))
        rc = sl_sep_open(&w->sep, r->cfg->sep_model, r->cfg->sep_weights, &r->cfg->sep_options, w->ctx);
    if (!rc && strcmp(r->cfg->emb_model, "none"))
        rc = sl_emb_open(&w->emb, r->cfg->emb_model, r->cfg->emb_weights, &r->cfg->emb_options, w->ctx);
    w->load_s = now_s() - t0;
    if (rc) {
        char m[512];
        snprintf(msg, size, "%s: %s", name, sl_errmsg(rc, m, sizeof m));
    }
    return rc;
}

static void *loader_main(void *arg)
{
    worker *w = arg;
    char msg[600] = "";
    pthread_setname_np(pthread_self(), "sl-load");
    w->load_rc = worker_open(w, msg, sizeof msg);
    if (w->load_rc)
        snprintf(w->load_err, sizeof w->load_err, "%s", msg);
    return NULL;
}

/* Waits for a worker's loader, if one runs. */
static void loader_join(worker *w)
{
    if (w->loading) {
        pthread_join(w->loader, NULL);
        w->loading = 0;
    }
}

/* A worker on its own device opens its context in its own thread: CUDA's
 * current device is per thread, and the context's stream belongs to it. A CPU
 * worker whose models preload_workers opened takes them. */
static int worker_init(worker *w)
{
    runner *r = w->r;
    (void)r;
    if (w->device < 0 && !w->own_cpu)
        return 0;
    char msg[600] = "";
    int rc;
    if (w->loading) {
        loader_join(w);
        rc = w->load_rc;
        snprintf(msg, sizeof msg, "%s", w->load_err);
    } else {
        rc = worker_open(w, msg, sizeof msg);
    }
    if (rc)
        sl_log(SL_LOG_ERROR, NULL, "worker", "%s", msg);
    else
        sl_log(SL_LOG_INFO, NULL, "worker", "worker %d on %s", w->id, sl_op_ctx_device(w->ctx));
    return rc;
}

void *worker_thread(void *arg)
{
    worker *w = arg;
    runner *r = w->r;
    slot *batch[256];
    pthread_setname_np(pthread_self(), "sl-model");
    int rc = worker_init(w);
    pthread_mutex_lock(&r->mu);
    r->workers_ready++;
    if (rc)
        r->workers_failed++;
    pthread_cond_broadcast(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
    for (; !rc;) {
        size_t max = w->max_batch < 256 ? w->max_batch : 256;
        size_t n = pop_batch(r, batch, max);
        if (n == 0)
            break;
        /* segments of tracks that already failed are not worth computing; after
         * a second stop request none is: their tracks are abandoned here, so no
         * writer stitches or averages a segment the model never computed */
        size_t live = 0;
        for (size_t b = 0; b < n; b++) {
            trk *t = batch[b]->t;
            pthread_mutex_lock(&t->mu);
            if (atomic_load(&stop_requests) >= 2)
                trk_abandon(t, "interrupted");
            int dead = t->failed || t->abandoned;
            pthread_mutex_unlock(&t->mu);
            if (dead)
                push_write(r, batch[b]);
            else
                batch[live++] = batch[b];
        }
        if (live) {
            /* the batch's threads come out of the run's CPU budget */
            tokens_take(r, r->op_threads, (long)batch[0]->t->index);
            const double t0 = now_s();
            trace_mark tm = trace_begin();
            run_batch(w, batch, live);
            trace_end(tm, batch[0]->kind == KIND_SEP ? "model" : "model_emb", (long)batch[0]->t->index);
            w->busy_s += now_s() - t0;
            w->batches++;
            tokens_give(r, r->op_threads);
        }
        for (size_t b = 0; b < live; b++)
            push_write(r, batch[b]);
        if (w->lost) { /* the other device workers take the rest, if any are left */
            pthread_mutex_lock(&r->mu);
            int others = r->n_workers - r->workers_failed - r->devices_lost;
            pthread_mutex_unlock(&r->mu);
            if (others > 0)
                break;
        }
    }
    pthread_mutex_lock(&r->mu);
    r->workers_left--;
    pthread_cond_broadcast(&r->cv_write);
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int apply_precision(const runner *r, sl_op_ctx *ctx)
{
    const char *p = r->cfg->precision;
    const int named = sl_precision_from_name(p); /* the config allows the names only */
    const sl_precision want = named < 0 ? SL_PREC_FP32 : (sl_precision)named;
    int rc = sl_op_ctx_set_precision(ctx, want);
    static atomic_int said;
    if (rc == SL_EUNSUPPORTED) {
        if (!atomic_exchange(&said, 1))
            sl_log(SL_LOG_WARN, NULL, "backend",
                   "runtime.precision %s does not apply: backend %s computes in fp32 only (tf32 and bf16 run on a CUDA "
                   "device or the CPU); this run computes in fp32", p, sl_op_ctx_backend(ctx));
        sl_clearerr();
        return 0;
    }
    if (!rc && sl_op_ctx_precision(ctx) != want && !atomic_exchange(&said, 1))
        sl_log(SL_LOG_WARN, NULL, "backend",
               "runtime.precision %s does not apply on this CPU: no AMX-BF16 tiles in use (the CPU lacks them, "
               "or SL_CPU_AMX=0 / STEMLINE_CPU_AVX512=0); the linear layers compute in exact fp32",
               p);
    return rc;
}

int open_models(runner *r, sl_op_ctx *ctx)
{
    const sl_config *c = r->cfg;
    int rc;
    if (strcmp(c->sep_model, "none")) {
        rc = sl_sep_open(&r->sep_model, c->sep_model, c->sep_weights, &c->sep_options, ctx);
        if (rc)
            return rc;
        r->sep = sl_sep_get_info(r->sep_model);
    }
    if (strcmp(c->emb_model, "none")) {
        rc = sl_emb_open(&r->emb_model, c->emb_model, c->emb_weights, &c->emb_options, ctx);
        if (rc)
            return rc;
        r->emb = sl_emb_get_info(r->emb_model);
    }
    return 0;
}

int start_workers(runner *r, sl_op_ctx *ctx)
{
    /* One worker per device in runtime.devices; on the CPU, plan_threads' workers. */
    const sl_config *c = r->cfg;
    const int cpu = !strcmp(sl_op_ctx_backend(ctx), "cpu");
    int devs[64], nd = 0;
    if (!strcmp(sl_op_ctx_backend(ctx), "cuda")) {
        int count = sl_op_device_count();
        for (size_t i = 0; i < c->n_devices && nd < 64; i++) {
            if (!strcmp(c->devices[i], "all")) {
                for (int d = 0; d < count && nd < 64; d++)
                    devs[nd++] = d;
                continue;
            }
            char *end;
            long d = strtol(c->devices[i], &end, 10);
            if (end == c->devices[i] || *end || d < 0 || d >= count)
                return sl_seterr(SL_ECONFIG, "runtime.devices: '%s' is not a CUDA device here (%d device%s: 0..%d)",
                                 c->devices[i], count, count == 1 ? "" : "s", count - 1);
            devs[nd++] = (int)d;
        }
    }
    if (!cpu)
        r->n_workers = nd > 1 ? nd : 1;
    const int preloaded = r->workers != NULL; /* preload_workers made them (CPU) */
    if (!preloaded)
        r->workers = calloc((size_t)r->n_workers, sizeof *r->workers);
    if (!r->workers)
        return SL_ENOMEM;
    for (int i = 0; i < r->n_workers; i++) {
        worker *w = &r->workers[i];
        w->max_batch = (size_t)c->batch_size;
        if (preloaded && i > 0)
            continue; /* set by preload_workers, and read by its loader, which may still run */
        w->r = r;
        w->id = i;
        w->device = nd > 1 ? devs[i] : -1;
        w->own_cpu = cpu && i > 0;
        if (w->device < 0 && !w->own_cpu) {
            /* the context the models were opened on (device 0 or the CPU) */
            w->ctx = ctx;
            w->sep = r->sep_model;
            w->emb = r->emb_model;
        }
    }
    return 0;
}

int preload_workers(runner *r, sl_op_ctx *ctx)
{
    if (strcmp(sl_op_ctx_backend(ctx), "cpu") || r->n_workers < 2 || r->workers)
        return 0;
    r->workers = calloc((size_t)r->n_workers, sizeof *r->workers);
    if (!r->workers)
        return SL_ENOMEM;
    for (int i = 1; i < r->n_workers; i++) {
        worker *w = &r->workers[i];
        w->r = r;
        w->id = i;
        w->device = -1;
        w->own_cpu = 1;
        /* no loader (no thread to be had): the worker opens them itself */
        w->loading = pthread_create(&w->loader, NULL, loader_main, w) == 0;
    }
    return 0;
}

void close_workers(runner *r)
{
    for (int i = 0; r->workers && i < r->n_workers; i++)
        loader_join(&r->workers[i]);
    for (int i = 0; r->workers && i < r->n_workers; i++) {
        worker *w = &r->workers[i];
        if (w->owns) {
            if (w->sep)
                sl_sep_close(w->sep);
            if (w->emb)
                sl_emb_close(w->emb);
            sl_op_ctx_close(w->ctx);
        }
        if (w->cpu_sep)
            sl_sep_close(w->cpu_sep);
        if (w->cpu_emb)
            sl_emb_close(w->cpu_emb);
        if (w->cpu_ctx)
            sl_op_ctx_close(w->cpu_ctx);
    }
    free(r->workers);
    r->workers = NULL;
}
