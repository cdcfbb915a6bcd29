/* Merging the ledgers and reports of a sharded job.
 *
 * The ledgers are the truth (a track is done when its row says so); reports only
 * describe each shard's last run (timings, backend, settings).
 *
 * Without the catalog, merge knows only the tracks some shard attempted: a shard
 * that never started, or tracks a shard never reached, are seen only through the
 * missing-shard check. With the catalog (--job), every track is checked by id. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/sl_error.h"
#include "merge_impl.h"
#include "outputs.h"
#include "shardenv.h"

char *mg_strdup(sl_merge *m, const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        m->oom = 1;
    return d;
}

void mg_note(sl_merge *m, int problem, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char ***list = problem ? &m->problems : &m->warnings;
    size_t *n = problem ? &m->n_problems : &m->n_warnings;
    char **nl = realloc(*list, (*n + 1) * sizeof *nl);
    if (!nl || !(nl[*n] = strdup(buf))) {
        if (nl)
            *list = nl;
        m->oom = 1;
        return;
    }
    *list = nl;
    (*n)++;
}

item *mg_items_add(sl_merge *m, items *l, const char *id, const char *path, const char *reason)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 32;
        item *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) {
            m->oom = 1;
            return NULL;
        }
        l->v = nv;
        l->cap = nc;
    }
    item *it = &l->v[l->n++];
    memset(it, 0, sizeof *it);
    it->id = mg_strdup(m, id);
    it->path = mg_strdup(m, path);
    it->reason = mg_strdup(m, reason);
    it->shard = -1;
    it->pos = -1;
    return it;
}

static void items_free(items *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].id);
        free(l->v[i].path);
        free(l->v[i].reason);
        free(l->v[i].shards);
    }
    free(l->v);
}

void mg_hash_seen(sl_merge *m, const char *hash, const char *where)
{
    if (!hash)
        return;
    hashinfo *h = NULL;
    for (size_t i = 0; i < m->n_hashes; i++)
        if (!strcmp(m->hashes[i].hash, hash))
            h = &m->hashes[i];
    if (!h) {
        hashinfo *nh = realloc(m->hashes, (m->n_hashes + 1) * sizeof *nh);
        if (!nh) {
            m->oom = 1;
            return;
        }
        m->hashes = nh;
        h = &m->hashes[m->n_hashes++];
        memset(h, 0, sizeof *h);
        h->hash = mg_strdup(m, hash);
    }
    char **nw = realloc(h->where, (h->n_where + 1) * sizeof *nw);
    if (!nw) {
        m->oom = 1;
        return;
    }
    h->where = nw;
    h->where[h->n_where++] = mg_strdup(m, where);
}


static int cmp_shard(const void *a, const void *b)
{
    const shard *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int cmp_row(const void *a, const void *b)
{
    const row *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    if (c)
        return c;
    return x->shard < y->shard ? -1 : x->shard > y->shard;
}

/* Joins "shard: reason" of every failed row of one id. */
static char *failure_reason(sl_merge *m, const row *g, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        if (g[i].status == 2)
            len += strlen(m->sh[g[i].shard].ledger) + (g[i].error ? strlen(g[i].error) : 16) + 8;
    char *s = malloc(len);
    if (!s) {
        m->oom = 1;
        return NULL;
    }
    size_t o = 0;
    int multi = 0;
    for (size_t i = 0; i < n; i++)
        multi += g[i].status == 2;
    s[0] = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i].status != 2)
            continue;
        const char *e = g[i].error && *g[i].error ? g[i].error : "failed (no reason recorded)";
        if (multi > 1)
            o += (size_t)snprintf(s + o, len - o, "%s%s: %s", o ? "; " : "", m->sh[g[i].shard].ledger, e);
        else
            o += (size_t)snprintf(s + o, len - o, "%s", e);
    }
    return s;
}

typedef struct {
    char what[256];
    int n;
} missing_out;

static void first_missing(void *arg, const char *path, const char *why)
{
    missing_out *o = arg;
    if (!o->n++)
        snprintf(o->what, sizeof o->what, "%s (%s)", path, why);
}

/* A done row counts only while its outputs are there: why not, or "" when they are. */
static void outputs_why(sl_merge *m, const row *d, char *why, size_t size)
{
    missing_out o = {.n = 0};
    int n = sl_outputs_each_missing(m->out_dir, d->outputs, d->files, first_missing, &o);
    if (n == 0)
        return;
    if (n < 0)
        snprintf(why, size, "done in %s, but its recorded outputs cannot be read: the next run of its shard redoes it",
                 m->sh[d->shard].ledger);
    else
        snprintf(why, size, "done in %s, but %d of its outputs %s missing or changed, first %s: the next run of its "
                 "shard redoes it", m->sh[d->shard].ledger, n, n == 1 ? "is" : "are", o.what);
}

/* Classifies the rows of one track id (g[0..n), all the same id); t is its
 * catalog entry (NULL when not in the catalog or no catalog). */
static void classify(sl_merge *m, const row *g, size_t n, const sl_track *t, long pos)
{
    size_t done = 0, failed = 0;
    const row *d = NULL;
    for (size_t i = 0; i < n; i++) {
        done += g[i].status == 1;
        failed += g[i].status == 2;
        if (g[i].status == 1 && !d)
            d = &g[i];
    }
    const char *path = t ? t->path : g[0].path;
    if (done > 1) {
        item *it = mg_items_add(m, &m->dups, g[0].id, path, NULL);
        if (!it)
            return;
        it->shards = malloc(done * sizeof *it->shards);
        if (!it->shards) {
            m->oom = 1;
            return;
        }
        for (size_t i = 0; i < n; i++)
            if (g[i].status == 1)
                it->shards[it->n_shards++] = g[i].shard;
        return;
    }
    if (done == 1) {
        char why[512] = "";
        if (t && (t->size != d->size || t->mtime_ns != d->mtime))
            snprintf(why, sizeof why,
                     "done in %s, but the input file changed since (size %lld -> %lld bytes or a new mtime): the "
                     "next run of its shard redoes it",
                     m->sh[d->shard].ledger, (long long)d->size, (long long)t->size);
        else if (t && m->job_hash && d->hash && strcmp(m->job_hash, d->hash))
            snprintf(why, sizeof why,
                     "done in %s with other settings (config hash %s, the job's is %s): the next run of its "
                     "shard redoes it",
                     m->sh[d->shard].ledger, d->hash, m->job_hash);
        else
            outputs_why(m, d, why, sizeof why);
        if (why[0]) {
            item *it = mg_items_add(m, &m->missing, g[0].id, path, why);
            if (it)
                it->pos = pos;
            return;
        }
        m->n_ok++;
        m->audio_ok += d->duration;
        return;
    }
    if (failed) {
        char *reason = failure_reason(m, g, n);
        item *it = mg_items_add(m, &m->failed, g[0].id, path, reason);
        free(reason);
        if (it) {
            it->pos = pos;
            it->shards = malloc(failed * sizeof *it->shards);
            if (!it->shards) {
                m->oom = 1;
                return;
            }
            for (size_t i = 0; i < n; i++)
                if (g[i].status == 2)
                    it->shards[it->n_shards++] = g[i].shard;
            it->shard = it->shards[0];
        }
        return;
    }
    char why[512];
    snprintf(why, sizeof why, "pending in %s: its run stopped before finishing it; run that shard again",
             m->sh[g[0].shard].ledger);
    item *it = mg_items_add(m, &m->missing, g[0].id, path, why);
    if (it) {
        it->pos = pos;
        it->shard = g[0].shard;
    }
}

static void iso_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int sl_merge_run(sl_merge **out, const sl_merge_opts *o)
{
    *out = NULL;
    if (!o || !o->out_dir || !*o->out_dir)
        return sl_seterr(SL_EINVAL, "merge: no output folder");
    struct stat st;
    if (stat(o->out_dir, &st) != 0)
        return sl_seterr(errno == ENOENT ? SL_ENOTFOUND : SL_EIO, "%s: %s", o->out_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sl_seterr(SL_EIO, "%s: not a folder", o->out_dir);
    DIR *dir = opendir(o->out_dir);
    if (!dir)
        return sl_seterr(SL_EIO, "%s: cannot list: %s", o->out_dir, strerror(errno));

    sl_merge *m = calloc(1, sizeof *m);
    if (!m) {
        closedir(dir);
        return sl_seterr(SL_ENOMEM, "merge: out of memory");
    }
    iso_now(m->merged_at, sizeof m->merged_at);
    m->out_dir = mg_strdup(m, o->out_dir);
    m->job = mg_strdup(m, o->job);
    m->job_hash = mg_strdup(m, o->config_hash);
    m->have_catalog = o->catalog != NULL;
    m->catalog_n = o->catalog ? o->catalog->n : 0;

    size_t cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(dir))) {
        int idx, cnt;
        if (sl_shard_parse_ledger_name(de->d_name, &idx, &cnt))
            continue;
        if (m->n_sh == cap) {
            size_t nc = cap ? cap * 2 : 16;
            shard *ns = realloc(m->sh, nc * sizeof *ns);
            if (!ns) {
                m->oom = 1;
                break;
            }
            m->sh = ns;
            cap = nc;
        }
        shard *s = &m->sh[m->n_sh++];
        memset(s, 0, sizeof *s);
        s->ledger = mg_strdup(m, de->d_name);
        s->index = idx;
        s->count = cnt;
    }
    int dir_errno = errno;
    closedir(dir);
    if (m->oom) {
        sl_merge_free(m);
        return sl_seterr(SL_ENOMEM, "merge: out of memory");
    }
    if (dir_errno) {
        sl_merge_free(m);
        return sl_seterr(SL_EIO, "%s: cannot list: %s", o->out_dir, strerror(dir_errno));
    }
    if (m->n_sh == 0) {
        sl_merge_free(m);
        return sl_seterr(SL_ENOTFOUND,
                         "%s: no ledger here (ledger.sqlite or sIIIIofNNNN-ledger.sqlite): not the output folder "
                         "of a stemline run, or no shard has run yet",
                         o->out_dir);
    }
    if (m->n_sh > 1)
        qsort(m->sh, m->n_sh, sizeof *m->sh, cmp_shard);

    /* Shard counts present, and the shards missing from each. */
    for (size_t i = 0; i < m->n_sh; i++) {
        if (i && m->sh[i].count == m->sh[i - 1].count)
            continue;
        int *nc = realloc(m->counts, (m->n_counts + 1) * sizeof *nc);
        if (!nc) {
            m->oom = 1;
            break;
        }
        m->counts = nc;
        m->counts[m->n_counts++] = m->sh[i].count;
    }
    for (size_t c = 0; c < m->n_counts; c++) {
        int n = m->counts[c];
        size_t j = 0;
        while (j < m->n_sh && m->sh[j].count != n)
            j++;
        for (int want = 0; want < n; want++) {
            if (j < m->n_sh && m->sh[j].count == n && m->sh[j].index == want) {
                j++;
                continue;
            }
            int(*nm)[2] = realloc(m->miss_sh, (m->n_miss_sh + 1) * sizeof *nm);
            if (!nm) {
                m->oom = 1;
                break;
            }
            m->miss_sh = nm;
            m->miss_sh[m->n_miss_sh][0] = want;
            m->miss_sh[m->n_miss_sh][1] = n;
            m->n_miss_sh++;
        }
    }
    if (m->n_counts > 1) {
        char list[256] = "";
        size_t l = 0;
        for (size_t c = 0; c < m->n_counts && l < sizeof list - 16; c++)
            l += (size_t)snprintf(list + l, sizeof list - l, "%s%d", c ? ", " : "", m->counts[c]);
        mg_note(m, 0,
             "this folder holds ledgers of runs with different shard counts (%s): each set partitions the "
             "catalog on its own, so they overlap; keep one set",
             list);
    }

    /* Ledgers and reports. */
    rows R = {0};
    for (size_t i = 0; i < m->n_sh; i++) {
        shard *s = &m->sh[i];
        size_t plen = strlen(o->out_dir) + strlen(s->ledger) + 2;
        char *path = malloc(plen);
        if (!path) {
            m->oom = 1;
            break;
        }
        snprintf(path, plen, "%s/%s", o->out_dir, s->ledger);
        char why[1024];
        size_t before = R.n;
        if (mg_read_ledger(path, (int)i, &R, why, sizeof why)) {
            s->error = mg_strdup(m, why);
            m->unreadable = 1;
            mg_note(m, 1, "%s: %s", s->ledger, why);
        } else {
            /* Hashes of done rows, per ledger, counted. */
            for (size_t r = before; r < R.n; r++) {
                row *w = &R.v[r];
                s->n_done += w->status == 1;
                s->n_failed += w->status == 2;
                s->n_pending += w->status == 0;
                if (w->status == 1)
                    s->done_audio += w->duration;
            }
            /* Distinct done-row hashes of this ledger, counted (there are few). */
            struct {
                const char *h;
                long n;
            } hs[16];
            size_t nhs = 0;
            long other = 0;
            for (size_t r = before; r < R.n; r++) {
                if (R.v[r].status != 1 || !R.v[r].hash)
                    continue;
                size_t k = 0;
                while (k < nhs && strcmp(hs[k].h, R.v[r].hash))
                    k++;
                if (k == nhs && nhs < sizeof hs / sizeof hs[0]) {
                    hs[nhs].h = R.v[r].hash;
                    hs[nhs++].n = 0;
                }
                if (k < nhs)
                    hs[k].n++;
                else
                    other++;
            }
            for (size_t k = 0; k < nhs; k++) {
                char where[200];
                snprintf(where, sizeof where, "%s (%ld done)", s->ledger, hs[k].n);
                mg_hash_seen(m, hs[k].h, where);
            }
            if (other)
                mg_note(m, 1, "%s: %ld done tracks carry yet more config hashes", s->ledger, other);
        }
        free(path);
        mg_read_report(m, s);
    }

    if (m->n_hashes > 1) {
        char buf[1800];
        size_t l = 0;
        for (size_t h = 0; h < m->n_hashes && l < sizeof buf - 64; h++) {
            l += (size_t)snprintf(buf + l, sizeof buf - l, "%s%s in", h ? "; " : "", m->hashes[h].hash);
            for (size_t w = 0; w < m->hashes[h].n_where && l < sizeof buf - 64; w++)
                l += (size_t)snprintf(buf + l, sizeof buf - l, "%s %s", w ? "," : "", m->hashes[h].where[w]);
        }
        mg_note(m, 1,
             "the shards ran with different settings (config hashes differ: %s); run every shard with the same "
             "job so that its tracks are redone with one configuration",
             buf);
    }

    /* Tracks: rows sorted by id, then joined with the (sorted) catalog. */
    if (R.n > 1)
        qsort(R.v, R.n, sizeof *R.v, cmp_row);
    const sl_catalog *cat = o->catalog;
    size_t ci = 0, ri = 0;
    while (ri < R.n || (cat && ci < cat->n)) {
        if (m->oom)
            break;
        int c;
        if (ri >= R.n)
            c = 1; /* catalog only */
        else if (!cat || ci >= cat->n)
            c = -1; /* ledger only */
        else
            c = strcmp(R.v[ri].id, cat->tracks[ci].id) < 0 ? -1 : strcmp(R.v[ri].id, cat->tracks[ci].id) > 0 ? 1 : 0;
        if (c > 0) {
            const sl_track *t = &cat->tracks[ci];
            item *it = mg_items_add(m, &m->missing, t->id, t->path, "never attempted: no ledger has a row for it");
            if (it)
                it->pos = (long)ci;
            m->n_known++;
            ci++;
            continue;
        }
        size_t gn = 1;
        while (ri + gn < R.n && !strcmp(R.v[ri + gn].id, R.v[ri].id))
            gn++;
        m->n_known++;
        if (c == 0) {
            classify(m, &R.v[ri], gn, &cat->tracks[ci], (long)ci);
            ci++;
        } else if (cat) {
            m->n_extra++;
            if (m->n_extra <= 20)
                mg_note(m, 0, "%s: in %s but not in the job's catalog (removed from the inputs, or another job)",
                     R.v[ri].id, m->sh[R.v[ri].shard].ledger);
        } else {
            classify(m, &R.v[ri], gn, NULL, -1);
        }
        ri += gn;
    }
    if (m->n_extra > 20)
        mg_note(m, 0, "... and %zu more tracks in ledgers but not in the catalog", m->n_extra - 20);
    if (cat && m->n_extra)
        m->n_known -= m->n_extra; /* known = tracks of the job */
    for (size_t i = 0; i < m->n_miss_sh; i++) {
        char prefix[64];
        sl_shard_prefix(m->miss_sh[i][0], m->miss_sh[i][1], prefix, sizeof prefix);
        mg_note(m, 1, "shard %d of %d is missing: no %sledger.sqlite (run that shard)%s", m->miss_sh[i][0],
             m->miss_sh[i][1], prefix, cat ? "" : "; its tracks are unknown without --job");
    }
    mg_rows_truncate(&R, 0);
    free(R.v);
    if (m->oom) {
        sl_merge_free(m);
        return sl_seterr(SL_ENOMEM, "merge: out of memory");
    }
    *out = m;
    return 0;
}

int sl_merge_status(const sl_merge *m)
{
    if (!m || m->unreadable)
        return 1;
    if (m->n_miss_sh || m->failed.n || m->missing.n || m->dups.n || m->n_hashes > 1)
        return 3;
    return 0;
}

/* Marks the shard of count `count` that item it belongs to. */
static void mark_item(const sl_merge *m, const item *it, int count, unsigned char *need)
{
    if (it->pos >= 0) {
        need[it->pos % count] = 1;
        return;
    }
    for (size_t k = 0; k < it->n_shards; k++)
        if (m->sh[it->shards[k]].count == count)
            need[m->sh[it->shards[k]].index] = 1;
    if (it->shard >= 0 && m->sh[it->shard].count == count)
        need[m->sh[it->shard].index] = 1;
}

long sl_merge_shards_to_run(const sl_merge *m, int count, int **idx)
{
    *idx = NULL;
    if (count < 1)
        return 0;
    unsigned char *need = calloc((size_t)count, 1);
    if (!need)
        return -1;
    for (size_t i = 0; i < m->n_miss_sh; i++)
        if (m->miss_sh[i][1] == count)
            need[m->miss_sh[i][0]] = 1;
    for (size_t i = 0; i < m->failed.n; i++)
        mark_item(m, &m->failed.v[i], count, need);
    for (size_t i = 0; i < m->missing.n; i++)
        mark_item(m, &m->missing.v[i], count, need);
    long n = 0;
    for (int i = 0; i < count; i++)
        n += need[i];
    if (n && !(*idx = malloc((size_t)n * sizeof **idx))) {
        free(need);
        return -1;
    }
    n = 0;
    for (int i = 0; i < count; i++)
        if (need[i])
            (*idx)[n++] = i;
    free(need);
    return n;
}

void sl_merge_free(sl_merge *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_sh; i++) {
        shard *s = &m->sh[i];
        free(s->ledger);
        free(s->report);
        free(s->error);
        free(s->r_hash);
        free(s->r_backend);
        free(s->r_device);
        free(s->r_fatal);
        free(s->r_started);
        free(s->r_finished);
    }
    free(m->sh);
    free(m->counts);
    free(m->miss_sh);
    items_free(&m->failed);
    items_free(&m->missing);
    items_free(&m->dups);
    for (size_t h = 0; h < m->n_hashes; h++) {
        free(m->hashes[h].hash);
        for (size_t w = 0; w < m->hashes[h].n_where; w++)
            free(m->hashes[h].where[w]);
        free(m->hashes[h].where);
    }
    free(m->hashes);
    for (size_t i = 0; i < m->n_problems; i++)
        free(m->problems[i]);
    free(m->problems);
    for (size_t i = 0; i < m->n_warnings; i++)
        free(m->warnings[i]);
    free(m->warnings);
    free(m->out_dir);
    free(m->job);
    free(m->job_hash);
    free(m);
}

