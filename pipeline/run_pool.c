/* Job runner: the stop flag, the slot pool and the ready/write queues. */
#include "run_internal.h"

atomic_int stop_requests;

void sl_run_request_stop(void)
{
    int v = atomic_load(&stop_requests);
    while (v < 2 && !atomic_compare_exchange_weak(&stop_requests, &v, v + 1))
        ;
    /* decoders blocked in a read (a dead mount) give up now, not at a timeout */
    sl_io_interrupt();
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int should_stop(runner *r) { return atomic_load(&stop_requests) || atomic_load(&r->stop); }

void set_fatal(runner *r, const char *fmt, const char *detail)
{
    pthread_mutex_lock(&r->mu);
    if (!r->fatal) {
        r->fatal = 1;
        snprintf(r->fatal_msg, sizeof r->fatal_msg, fmt, detail);
    }
    pthread_mutex_unlock(&r->mu);
    atomic_store(&r->stop, 1);
}

void live_track_release(runner *r)
{
    pthread_mutex_lock(&r->mu);
    r->live_tracks--;
    pthread_cond_broadcast(&r->cv_stem);
    pthread_mutex_unlock(&r->mu);
}

int run_need_ffmpeg(runner *r)
{
    if (!r->ff_async)
        return 0; /* loaded (and checked) before the pipeline */
    int rc = sl_io_load(); /* waits for the loader: pthread_once */
    if (rc) {
        char m[1024];
        sl_errmsg(rc, m, sizeof m);
        pthread_mutex_lock(&r->mu);
        if (!r->fatal) { /* as set_fatal, and permanent */
            r->fatal = r->fatal_permanent = 1;
            snprintf(r->fatal_msg, sizeof r->fatal_msg, "%s", m);
        }
        pthread_mutex_unlock(&r->mu);
        atomic_store(&r->stop, 1);
    }
    return rc;
}

static __thread int held; /* tokens this thread took with tokens_take */

void tokens_take(runner *r, int n, long track)
{
    trace_mark m = trace_begin();
    sl_budget_acquire(r->budget, n);
    trace_end(m, "wait_token", track);
    held += n;
    trace_tokens(n);
}

void tokens_give(runner *r, int n)
{
    if (n <= 0)
        return;
    sl_budget_release(r->budget, n);
    held -= n;
    trace_tokens(-n);
}

int tokens_held(void) { return held; }

/* ---- slot pool ---- */

static void fifo_push(fifo *q, slot *s)
{
    s->next = NULL;
    if (q->tail)
        q->tail->next = s;
    else
        q->head = s;
    q->tail = s;
    q->n++;
}

void slot_layout(runner *r, slot *s, int kind)
{
    float *p = s->mem;
    if (kind == KIND_SEP) {
        int ch = r->sep->channels;
        for (int c = 0; c < ch; c++, p += r->sep_L)
            s->in[c] = p;
        for (int k = 0; k < r->sep->n_sources; k++)
            for (int c = 0; c < ch; c++, p += r->sep_L)
                s->out[k][c] = p;
    } else {
        for (int c = 0; c < r->emb->channels; c++, p += r->emb_L)
            s->in[c] = p;
        s->vec = p;
        s->scores = r->emb->n_scores > 0 ? p + r->emb->dim : NULL;
    }
    s->kind = kind;
}

/* Takes a free slot, allocating up to the bound; waits while every slot is in
 * use (that wait is the backpressure). NULL when the run is stopping. */
slot *pool_acquire(runner *r)
{
    slot *got = NULL;
    double t0 = 0;
    pthread_mutex_lock(&r->mu);
    while (!got) {
        if (should_stop(r))
            break;
        if (r->free_slots) {
            got = r->free_slots;
            r->free_slots = got->next;
            break;
        }
        if (r->n_slots < r->n_slots_max) {
            slot *s = calloc(1, sizeof *s);
            void *mem = NULL;
            /* pinned on CUDA, so uploads are asynchronous copies */
            if (s && sl_op_host_alloc(r->host_ctx, &mem, r->slot_floats * sizeof(float)) == 0) {
                s->mem = mem;
                r->n_slots++;
                got = s;
                break;
            }
            free(s);
            if (r->n_slots == 0)
                break;
            r->n_slots_max = r->n_slots; /* the allocator said no: live with what we have */
        }
        if (t0 == 0)
            t0 = now_s();
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200000000L; /* wake to notice a stop request */
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv_slot, &r->mu, &ts);
    }
    if (t0 > 0)
        r->wait_slot_s += now_s() - t0;
    if (got) {
        got->next = NULL;
        got->t = NULL;
        r->n_in_use++;
        if (r->n_in_use > r->peak_in_use)
            r->peak_in_use = r->n_in_use;
    }
    pthread_mutex_unlock(&r->mu);
    return got;
}

/* Frees a list of slots (traced as free_slots; nothing for an empty list). */
static void slots_free(runner *r, slot *s)
{
    if (!s)
        return;
    trace_mark tm = trace_begin();
    while (s) {
        slot *next = s->next;
        sl_op_host_free(r->host_ctx, s->mem);
        free(s);
        s = next;
    }
    trace_end(tm, "free_slots", -1);
}

/* Slots are freed as soon as no decoder is left to take them (CPU: host
 * memory any thread may free), by the thread that gives them back, so that
 * unmapping them overlaps the last tracks' model and writes instead of
 * following the pipeline's end on one thread. */
static int free_early(runner *r) { return r->decoders_left == 0 && !strcmp(sl_op_ctx_backend(r->host_ctx), "cpu"); }

void pool_release(runner *r, slot *s)
{
    pthread_mutex_lock(&r->mu);
    s->t = NULL;
    r->n_in_use--;
    const int drop = free_early(r);
    if (!drop) {
        s->next = r->free_slots;
        r->free_slots = s;
        pthread_cond_signal(&r->cv_slot);
    }
    pthread_mutex_unlock(&r->mu);
    if (drop) {
        s->next = NULL;
        slots_free(r, s);
    }
}

void pool_decoders_done(runner *r)
{
    pthread_mutex_lock(&r->mu);
    slot *list = free_early(r) ? r->free_slots : NULL;
    if (list)
        r->free_slots = NULL;
    pthread_mutex_unlock(&r->mu);
    if (!list)
        return;
    tokens_take(r, 1, -1); /* unmapping computes: on a token, like the rest */
    slots_free(r, list);
    tokens_give(r, 1);
}

void pool_free_all(runner *r)
{
    slots_free(r, r->free_slots);
    r->free_slots = NULL;
}

void push_ready(runner *r, slot *s)
{
    pthread_mutex_lock(&r->mu);
    fifo_push(&r->ready, s);
    if (r->ready.n > r->max_ready)
        r->max_ready = r->ready.n;
    pthread_cond_signal(&r->cv_ready);
    pthread_mutex_unlock(&r->mu);
}

/* Takes up to max slots of one kind (the kind of the oldest), oldest first.
 * Waits for at least one; returns 0 when decoding is over and nothing is left. */
size_t pop_batch(runner *r, slot **out, size_t max)
{
    size_t n = 0;
    double t0 = now_s();
    pthread_mutex_lock(&r->mu);
    while (!r->ready.head && r->decoders_left > 0) {
        r->pop_waiting++;
        pthread_cond_wait(&r->cv_ready, &r->mu);
        r->pop_waiting--;
    }
    /* test hook: batches as full as the decoders can make them, whatever the
     * timing (a bounded wait: all slots may be queued already) */
    while (r->test_fill_s > 0 && r->ready.n < max && r->decoders_left > 0 && now_s() - t0 < r->test_fill_s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv_ready, &r->mu, &ts);
    }
    r->wait_ready_s += now_s() - t0;
    r->ready_len_sum += (double)r->ready.n;
    r->ready_len_samples++;
    if (r->ready.head) {
        int kind = r->ready.head->kind;
        /* Fair share: a worker takes no more than its part of what is queued
         * when other workers wait for slots, or when decoding is over (the
         * run's last batches), so one worker does not take the tail of a run
         * while the others sit idle. Batches only change which segments share
         * a call, never a track's output. */
        int fair = r->batch_share && r->test_fill_s <= 0; /* the test hook wants full batches */
        size_t share = fair && r->batch_share == 1 ? (size_t)(r->pop_waiting + 1) : 1;
        if (fair && r->decoders_left == 0 && r->workers_left > 1 && (size_t)r->workers_left > share)
            share = (size_t)r->workers_left;
        if (share > 1) {
            size_t k = 0;
            for (slot *s = r->ready.head; s; s = s->next)
                k += s->kind == kind;
            size_t cap = (k + share - 1) / share;
            if (cap < max)
                max = cap > 0 ? cap : 1;
        }
        slot **pp = &r->ready.head, *prev = NULL;
        while (*pp && n < max) {
            slot *s = *pp;
            if (s->kind == kind) {
                *pp = s->next;
                if (r->ready.tail == s)
                    r->ready.tail = prev;
                r->ready.n--;
                s->next = NULL;
                out[n++] = s;
            } else {
                prev = s;
                pp = &s->next;
            }
        }
        if (r->ready.head && r->pop_waiting > 0)
            pthread_cond_signal(&r->cv_ready); /* what is left is a waiting worker's share */
        r->batches++;
        r->batch_items += n;
        r->batch_hist[n < RUN_BATCH_HIST ? n : RUN_BATCH_HIST - 1]++;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

void push_write(runner *r, slot *s)
{
    pthread_mutex_lock(&r->mu);
    fifo_push(&r->write, s);
    pthread_cond_broadcast(&r->cv_write); /* (a woken writer may find only held tracks) */
    pthread_mutex_unlock(&r->mu);
}

/* The oldest slot of q whose track no writer holds, taken out of q; NULL if none. */
static slot *fifo_pop_free_track(fifo *q)
{
    slot *prev = NULL;
    for (slot *s = q->head; s; prev = s, s = s->next) {
        if (s->t->writing)
            continue;
        if (prev)
            prev->next = s->next;
        else
            q->head = s->next;
        if (q->tail == s)
            q->tail = prev;
        q->n--;
        s->next = NULL;
        return s;
    }
    return NULL;
}

slot *pop_write(runner *r)
{
    double t0 = now_s();
    pthread_mutex_lock(&r->mu);
    slot *s;
    /* a slot whose track another writer holds waits for it (that writer gives
     * the track back, write_done, and wakes the writers) */
    while (!(s = fifo_pop_free_track(&r->write)) && (r->write.head || r->workers_left > 0))
        pthread_cond_wait(&r->cv_write, &r->mu);
    if (s)
        s->t->writing = 1;
    r->wait_write_s += now_s() - t0;
    pthread_mutex_unlock(&r->mu);
    return s;
}

void write_done(runner *r, trk *t)
{
    pthread_mutex_lock(&r->mu);
    t->writing = 0;
    pthread_cond_broadcast(&r->cv_write);
    pthread_mutex_unlock(&r->mu);
}
