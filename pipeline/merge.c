/* Merging the ledgers and reports of a sharded job.
 *
 * The ledgers are the truth (a track is done when its row says so); reports only
 * describe each shard's last run (timings, backend, settings). Ledgers are opened
 * read-only so that merging can never change a job's state; SQLite may still have
 * to create the -shm file of a WAL database, so when the folder is not writable
 * and a read-only open fails, it is retried read-write (no create), which a WAL
 * reader needs anyway.
 *
 * Without the catalog, merge knows only the tracks some shard attempted: a shard
 * that never started, or tracks a shard never reached, are seen only through the
 * missing-shard check. With the catalog (--job), every track is checked by id. */
#include "merge.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"
#include "../io/npy.h"
#include "outputs.h"
#include "shardenv.h"

#ifndef SL_VERSION
#define SL_VERSION "unknown"
#endif

/* ------------------------------------------------------------------ */
/* The merge.                                                           */

typedef struct {
    char *ledger;  /* file name inside out_dir */
    char *report;  /* file name of its report, NULL when there is none */
    int index, count;
    char *error;   /* the ledger could not be read: why */
    long n_done, n_failed, n_pending;
    double done_audio;
    /* from the report of the shard's last run */
    int have_run;
    char *r_hash, *r_backend, *r_device, *r_fatal, *r_started, *r_finished;
    double r_wall, r_audio;
    int r_interrupted;
    long r_ok, r_failed, r_skipped;
} shard;

typedef struct {
    char *id, *path, *hash, *error;
    char *outputs, *files; /* done rows: the recorded outputs (pipeline/outputs.h) */
    int64_t size, mtime;
    double duration;
    int status; /* 0 pending, 1 done, 2 failed */
    int shard;
} row;

typedef struct {
    char *id, *path, *reason;
    int shard;   /* failures: the ledger's shard; -1 otherwise */
    long pos;    /* missing with a catalog: position in the catalog, else -1 */
    int *shards; /* duplicates: the ledgers holding a done row */
    size_t n_shards;
} item;

typedef struct {
    item *v;
    size_t n, cap;
} items;

typedef struct {
    char *hash;
    char **where;
    size_t n_where;
} hashinfo;

struct sl_merge {
    char *out_dir, *job, *job_hash;
    int have_catalog;
    size_t catalog_n;
    shard *sh;
    size_t n_sh;
    int *counts;
    size_t n_counts;
    int (*miss_sh)[2]; /* index, count */
    size_t n_miss_sh;
    items failed, missing, dups;
    size_t n_ok, n_known, n_extra;
    double audio_ok;
    hashinfo *hashes;
    size_t n_hashes;
    char **problems, **warnings;
    size_t n_problems, n_warnings;
    int unreadable;
    int oom;
    char merged_at[32];
};

static char *xstrdup(sl_merge *m, const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        m->oom = 1;
    return d;
}

__attribute__((format(printf, 3, 4))) static void note(sl_merge *m, int problem, const char *fmt, ...)
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

static item *items_add(sl_merge *m, items *l, const char *id, const char *path, const char *reason)
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
    it->id = xstrdup(m, id);
    it->path = xstrdup(m, path);
    it->reason = xstrdup(m, reason);
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

/* Records that hash was seen in `where`. */
static void hash_seen(sl_merge *m, const char *hash, const char *where)
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
        h->hash = xstrdup(m, hash);
    }
    char **nw = realloc(h->where, (h->n_where + 1) * sizeof *nw);
    if (!nw) {
        m->oom = 1;
        return;
    }
    h->where = nw;
    h->where[h->n_where++] = xstrdup(m, where);
}

/* "s0003of0016-ledger.sqlite" -> 3, 16; "ledger.sqlite" -> 0, 1. Only the exact
 * names the runner writes are accepted. */
static int parse_ledger_name(const char *name, int *index, int *count)
{
    if (!strcmp(name, "ledger.sqlite")) {
        *index = 0;
        *count = 1;
        return 0;
    }
    if (name[0] != 's')
        return -1;
    const char *p = name + 1;
    long long i = 0, n = 0;
    int d = 0;
    for (; *p >= '0' && *p <= '9' && d < 8; p++, d++)
        i = i * 10 + (*p - '0');
    if (!d || strncmp(p, "of", 2))
        return -1;
    p += 2;
    d = 0;
    for (; *p >= '0' && *p <= '9' && d < 8; p++, d++)
        n = n * 10 + (*p - '0');
    if (!d || strcmp(p, "-ledger.sqlite") || n < 2 || n > SL_SHARD_MAX_COUNT || i >= n)
        return -1;
    char canon[64];
    sl_shard_prefix((int)i, (int)n, canon, sizeof canon);
    if (strncmp(name, canon, strlen(canon)))
        return -1;
    *index = (int)i;
    *count = (int)n;
    return 0;
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

typedef struct {
    row *v;
    size_t n, cap;
} rows;

static void rows_truncate(rows *r, size_t n)
{
    for (size_t i = n; i < r->n; i++) {
        free(r->v[i].id);
        free(r->v[i].path);
        free(r->v[i].hash);
        free(r->v[i].error);
        free(r->v[i].outputs);
        free(r->v[i].files);
    }
    r->n = n;
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

/* Reads every row of one ledger. Returns 0, or -1 with why filled. */
static int read_ledger_once(const char *path, int flags, int si, rows *out, char *why, size_t why_size,
                            int *retry)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    *retry = 0;
    int r = sqlite3_open_v2(path, &db, flags, NULL);
    if (r != SQLITE_OK) {
        snprintf(why, why_size, "cannot open: %s", db ? sqlite3_errmsg(db) : sqlite3_errstr(r));
        *retry = 1;
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, 30000);
    /* "files" is missing from ledgers no run of this version has opened yet
     * (it is added when a run opens one; merge opens them read-only) */
    if (sqlite3_prepare_v2(db,
                           "SELECT id, path, size, mtime_ns, config_hash, status, error, duration, outputs, files"
                           " FROM tracks ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK &&
        sqlite3_prepare_v2(db,
                           "SELECT id, path, size, mtime_ns, config_hash, status, error, duration, outputs, NULL"
                           " FROM tracks ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        int ec = sqlite3_extended_errcode(db) & 0xff;
        snprintf(why, why_size, "not a readable stemline ledger: %s", sqlite3_errmsg(db));
        *retry = ec == SQLITE_CANTOPEN || ec == SQLITE_READONLY || ec == SQLITE_BUSY || ec == SQLITE_IOERR;
        goto out;
    }
    size_t first = out->n;
    for (;;) {
        r = sqlite3_step(st);
        if (r == SQLITE_DONE)
            break;
        if (r != SQLITE_ROW) {
            int ec = sqlite3_extended_errcode(db) & 0xff;
            snprintf(why, why_size, "read error: %s", sqlite3_errmsg(db));
            *retry = ec == SQLITE_CANTOPEN || ec == SQLITE_READONLY || ec == SQLITE_IOERR;
            rows_truncate(out, first);
            goto out;
        }
        if (out->n == out->cap) {
            size_t nc = out->cap ? out->cap * 2 : 1024;
            row *nv = realloc(out->v, nc * sizeof *nv);
            if (!nv) {
                snprintf(why, why_size, "out of memory");
                rows_truncate(out, first);
                goto out;
            }
            out->v = nv;
            out->cap = nc;
        }
        row *w = &out->v[out->n];
        memset(w, 0, sizeof *w);
        w->id = col_dup(st, 0);
        w->path = col_dup(st, 1);
        w->size = sqlite3_column_int64(st, 2);
        w->mtime = sqlite3_column_int64(st, 3);
        w->hash = col_dup(st, 4);
        const unsigned char *s = sqlite3_column_text(st, 5);
        w->status = s && !strcmp((const char *)s, "done") ? 1 : s && !strcmp((const char *)s, "failed") ? 2 : 0;
        w->error = col_dup(st, 6);
        w->duration = sqlite3_column_double(st, 7);
        if (w->status == 1) {
            w->outputs = col_dup(st, 8);
            w->files = col_dup(st, 9);
        }
        w->shard = si;
        out->n++;
        if (!w->id) {
            snprintf(why, why_size, "a row without a track id (or out of memory)");
            rows_truncate(out, first);
            goto out;
        }
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    if (db)
        sqlite3_close_v2(db);
    return rc;
}

/* "file:" URI of path with ?immutable=1, percent-encoding what a URI reserves. */
static char *immutable_uri(const char *path)
{
    size_t n = strlen(path);
    char *u = malloc(n * 3 + 32);
    if (!u)
        return NULL;
    size_t o = (size_t)sprintf(u, "file:");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("/-_.~", *p))
            u[o++] = (char)*p;
        else
            o += (size_t)sprintf(u + o, "%%%02X", *p);
    }
    sprintf(u + o, "?immutable=1");
    return u;
}

static int read_ledger(const char *path, int si, rows *out, char *why, size_t why_size)
{
    int retry;
    if (read_ledger_once(path, SQLITE_OPEN_READONLY, si, out, why, why_size, &retry) == 0)
        return 0;
    if (!retry)
        return -1;
    /* A WAL reader needs the -shm file and a read-only connection cannot create
     * it; a read-write one can where the folder is writable. */
    char first[512];
    snprintf(first, sizeof first, "%.500s", why);
    if (read_ledger_once(path, SQLITE_OPEN_READWRITE, si, out, why, why_size, &retry) == 0)
        return 0;
    /* In a read-only folder with no -shm: when there is no WAL content either,
     * the database file alone is the whole ledger and may be read as immutable
     * (the writer is gone: nobody can write into a read-only folder). */
    size_t wl = strlen(path) + 8;
    char *wal = malloc(wl);
    if (!wal) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    snprintf(wal, wl, "%s-wal", path);
    struct stat st;
    int wal_empty = stat(wal, &st) != 0 ? errno == ENOENT : st.st_size == 0;
    free(wal);
    if (!wal_empty) {
        snprintf(why, why_size, "%s (and its -wal file holds rows that need write access to the folder to read)",
                 first);
        return -1;
    }
    char *uri = immutable_uri(path);
    if (!uri) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    int rc = read_ledger_once(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, si, out, why, why_size, &retry);
    free(uri);
    if (rc)
        snprintf(why, why_size, "%s", first);
    return rc;
}

/* Reads a whole file into a NUL-terminated malloc'd buffer of *len bytes (a NUL
 * byte inside is the parser's to refuse); NULL with errno. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (n < cap) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            }
            break;
        }
        char *nb = realloc(buf, cap * 2 + 1);
        if (!nb) {
            free(buf);
            buf = NULL;
            errno = ENOMEM;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    *len = n;
    return buf;
}

/* The number key of a report in [lo, hi], truncated, else def: a corrupt report
 * must not make the conversion to an integer undefined. */
static long num_in(const sl_json *o, const char *key, double lo, double hi, long def)
{
    const sl_json *v = sl_json_get(o, key);
    return v && v->type == SL_JSON_NUMBER && v->num >= lo && v->num <= hi ? (long)v->num : def;
}

static void read_report(sl_merge *m, shard *s)
{
    char prefix[64];
    sl_shard_prefix(s->index, s->count, prefix, sizeof prefix);
    char name[96];
    snprintf(name, sizeof name, "%sreport.json", prefix);
    size_t plen = strlen(m->out_dir) + strlen(name) + 2;
    char *path = malloc(plen);
    if (!path) {
        m->oom = 1;
        return;
    }
    snprintf(path, plen, "%s/%s", m->out_dir, name);
    size_t len = 0;
    char *text = slurp(path, &len);
    if (!text) {
        if (errno == ENOENT)
            note(m, 0, "%s: no report (%s): the shard never finished a run; wall time unknown", s->ledger, name);
        else
            note(m, 0, "%s: cannot read: %s", name, strerror(errno));
        free(path);
        return;
    }
    s->report = xstrdup(m, name);
    sl_json root;
    int jr = sl_json_parse(text, len, &root);
    if (jr || root.type != SL_JSON_OBJECT) {
        if (jr == SL_ENOMEM)
            m->oom = 1;
        else
            note(m, 0, "%s: not valid JSON (%s); its run's timings are left out", name,
                 jr ? sl_lasterr() : "the top level is not an object");
        sl_json_free(&root);
        free(text);
        free(path);
        return;
    }
    s->have_run = 1;
    s->r_hash = sl_json_dup_str(&root, "config_hash");
    s->r_backend = sl_json_dup_str(&root, "backend");
    s->r_device = sl_json_dup_str(&root, "device");
    s->r_fatal = sl_json_dup_str(&root, "fatal");
    s->r_started = sl_json_dup_str(&root, "started_at");
    s->r_finished = sl_json_dup_str(&root, "finished_at");
    s->r_wall = sl_json_get_num(&root, "wall_seconds", 0);
    s->r_audio = sl_json_get_num(&root, "audio_seconds", 0);
    s->r_interrupted = sl_json_get_bool(&root, "interrupted", 0);
    const sl_json *tr = sl_json_get(&root, "tracks");
    s->r_ok = num_in(tr, "ok", 0, 1e15, 0);
    s->r_failed = num_in(tr, "failed", 0, 1e15, 0);
    s->r_skipped = num_in(tr, "skipped", 0, 1e15, 0);
    const sl_json *sh = sl_json_get(&root, "shard");
    int sh_index = (int)num_in(sh, "index", -1, 1e9, -1), sh_count = (int)num_in(sh, "count", -1, 1e9, -1);
    if (sh && (sh_index != s->index || sh_count != s->count))
        note(m, 0, "%s: says shard %d of %d, its name says %d of %d", name, sh_index, sh_count, s->index, s->count);
    if (s->r_hash) {
        char where[160];
        snprintf(where, sizeof where, "%s", name);
        hash_seen(m, s->r_hash, where);
    }
    if (s->r_interrupted)
        note(m, 0, "%s: the shard's last run was interrupted", name);
    if (s->r_fatal)
        note(m, 0, "%s: the shard's last run stopped: %s", name, s->r_fatal);
    sl_json_free(&root);
    free(text);
    free(path);
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
        item *it = items_add(m, &m->dups, g[0].id, path, NULL);
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
            item *it = items_add(m, &m->missing, g[0].id, path, why);
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
        item *it = items_add(m, &m->failed, g[0].id, path, reason);
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
    item *it = items_add(m, &m->missing, g[0].id, path, why);
    if (it)
        it->pos = pos;
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
    m->out_dir = xstrdup(m, o->out_dir);
    m->job = xstrdup(m, o->job);
    m->job_hash = xstrdup(m, o->config_hash);
    m->have_catalog = o->catalog != NULL;
    m->catalog_n = o->catalog ? o->catalog->n : 0;

    size_t cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(dir))) {
        int idx, cnt;
        if (parse_ledger_name(de->d_name, &idx, &cnt))
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
        s->ledger = xstrdup(m, de->d_name);
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
        note(m, 0,
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
        if (read_ledger(path, (int)i, &R, why, sizeof why)) {
            s->error = xstrdup(m, why);
            m->unreadable = 1;
            note(m, 1, "%s: %s", s->ledger, why);
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
                hash_seen(m, hs[k].h, where);
            }
            if (other)
                note(m, 1, "%s: %ld done tracks carry yet more config hashes", s->ledger, other);
        }
        free(path);
        read_report(m, s);
    }

    if (m->n_hashes > 1) {
        char buf[1800];
        size_t l = 0;
        for (size_t h = 0; h < m->n_hashes && l < sizeof buf - 64; h++) {
            l += (size_t)snprintf(buf + l, sizeof buf - l, "%s%s in", h ? "; " : "", m->hashes[h].hash);
            for (size_t w = 0; w < m->hashes[h].n_where && l < sizeof buf - 64; w++)
                l += (size_t)snprintf(buf + l, sizeof buf - l, "%s %s", w ? "," : "", m->hashes[h].where[w]);
        }
        note(m, 1,
             "the shards ran with different settings (config hashes differ: %s); run every shard with the same "
             "job so that its tracks are redone with one configuration",
             buf);
    }

    /* Tracks: rows sorted by id, then joined with the (sorted) catalog. */
    if (R.n > 1)
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
            item *it = items_add(m, &m->missing, t->id, t->path, "never attempted: no ledger has a row for it");
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
                note(m, 0, "%s: in %s but not in the job's catalog (removed from the inputs, or another job)",
                     R.v[ri].id, m->sh[R.v[ri].shard].ledger);
        } else {
            classify(m, &R.v[ri], gn, NULL, -1);
        }
        ri += gn;
    }
    if (m->n_extra > 20)
        note(m, 0, "... and %zu more tracks in ledgers but not in the catalog", m->n_extra - 20);
    if (cat && m->n_extra)
        m->n_known -= m->n_extra; /* known = tracks of the job */
    for (size_t i = 0; i < m->n_miss_sh; i++) {
        char prefix[64];
        sl_shard_prefix(m->miss_sh[i][0], m->miss_sh[i][1], prefix, sizeof prefix);
        note(m, 1, "shard %d of %d is missing: no %sledger.sqlite (run that shard)%s", m->miss_sh[i][0],
             m->miss_sh[i][1], prefix, cat ? "" : "; its tracks are unknown without --job");
    }
    rows_truncate(&R, 0);
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

/* ------------------------------------------------------------------ */
/* Output.                                                             */

static void kv_str(FILE *f, const char *k, const char *v)
{
    fprintf(f, "\"%s\": ", k);
    sl_json_str(f, v);
}

/* The shards a catalog position belongs to, one per shard count present. */
static void json_expected(FILE *f, const sl_merge *m, long pos)
{
    fputs("\"shards\": [", f);
    if (pos >= 0)
        for (size_t c = 0; c < m->n_counts; c++)
            fprintf(f, "%s{\"index\": %ld, \"count\": %d}", c ? ", " : "", pos % m->counts[c], m->counts[c]);
    fputc(']', f);
}

static double wall_sum(const sl_merge *m, double *max, double *audio)
{
    double s = 0;
    *max = 0;
    *audio = 0;
    for (size_t i = 0; i < m->n_sh; i++) {
        if (!m->sh[i].have_run)
            continue;
        s += m->sh[i].r_wall;
        *audio += m->sh[i].r_audio;
        if (m->sh[i].r_wall > *max)
            *max = m->sh[i].r_wall;
    }
    return s;
}

int sl_merge_write_json(const sl_merge *m, FILE *f)
{
    int st = sl_merge_status(m);
    fprintf(f, "{\n  \"stemline_version\": \"%s\",\n  \"merged_at\": \"%s\",\n  ", SL_VERSION, m->merged_at);
    kv_str(f, "output_dir", m->out_dir);
    fputs(",\n  ", f);
    kv_str(f, "job", m->job);
    fprintf(f, ",\n  \"catalog_checked\": %s,\n  \"complete\": %s,\n  \"status\": %d,\n  ",
            m->have_catalog ? "true" : "false", st == 0 ? "true" : "false", st);
    kv_str(f, "config_hash", m->n_hashes == 1 ? m->hashes[0].hash : NULL);
    fputs(",\n  ", f);
    kv_str(f, "job_config_hash", m->job_hash);
    fputs(",\n  \"config_hashes\": [", f);
    for (size_t h = 0; h < m->n_hashes; h++) {
        fprintf(f, "%s\n    {", h ? "," : "");
        kv_str(f, "hash", m->hashes[h].hash);
        fputs(", \"where\": [", f);
        for (size_t w = 0; w < m->hashes[h].n_where; w++) {
            fputs(w ? ", " : "", f);
            sl_json_str(f, m->hashes[h].where[w]);
        }
        fputs("]}", f);
    }
    fprintf(f, "%s],\n  \"shard_counts\": [", m->n_hashes ? "\n  " : "");
    for (size_t c = 0; c < m->n_counts; c++)
        fprintf(f, "%s%d", c ? ", " : "", m->counts[c]);
    fputs("],\n  \"missing_shards\": [", f);
    for (size_t i = 0; i < m->n_miss_sh; i++) {
        char prefix[64], name[96];
        sl_shard_prefix(m->miss_sh[i][0], m->miss_sh[i][1], prefix, sizeof prefix);
        snprintf(name, sizeof name, "%sledger.sqlite", prefix);
        fprintf(f, "%s\n    {\"index\": %d, \"count\": %d, \"ledger\": \"%s\"}", i ? "," : "", m->miss_sh[i][0],
                m->miss_sh[i][1], name);
    }
    fprintf(f, "%s],\n", m->n_miss_sh ? "\n  " : "");
    fputs("  \"tracks\": {", f);
    if (m->have_catalog)
        fprintf(f, "\"catalog\": %zu, ", m->catalog_n);
    else
        fputs("\"catalog\": null, ", f);
    fprintf(f, "\"known\": %zu, \"ok\": %zu, \"failed\": %zu, \"missing\": %zu, \"duplicated\": %zu, "
               "\"not_in_catalog\": %zu},\n",
            m->n_known, m->n_ok, m->failed.n, m->missing.n, m->dups.n, m->n_extra);
    double wmax, raudio, wsum = wall_sum(m, &wmax, &raudio);
    fprintf(f, "  \"audio_seconds\": %.3f,\n", m->audio_ok);
    fprintf(f,
            "  \"runs\": {\"audio_seconds\": %.3f, \"wall_seconds_sum\": %.3f, \"wall_seconds_max\": %.3f, "
            "\"x_realtime_per_shard\": %.3f, \"x_realtime_all_shards\": %.3f},\n",
            raudio, wsum, wmax, wsum > 0 ? raudio / wsum : 0.0, wmax > 0 ? raudio / wmax : 0.0);
    fputs("  \"shards\": [", f);
    for (size_t i = 0; i < m->n_sh; i++) {
        const shard *s = &m->sh[i];
        fprintf(f, "%s\n    {\"index\": %d, \"count\": %d, ", i ? "," : "", s->index, s->count);
        kv_str(f, "ledger", s->ledger);
        fputs(", ", f);
        kv_str(f, "report", s->report);
        fputs(", ", f);
        kv_str(f, "error", s->error);
        fprintf(f, ", \"tracks\": {\"done\": %ld, \"failed\": %ld, \"pending\": %ld}, \"audio_seconds\": %.3f,",
                s->n_done, s->n_failed, s->n_pending, s->done_audio);
        fputs("\n     \"last_run\": ", f);
        if (!s->have_run) {
            fputs("null}", f);
            continue;
        }
        fputc('{', f);
        kv_str(f, "config_hash", s->r_hash);
        fputs(", ", f);
        kv_str(f, "backend", s->r_backend);
        fputs(", ", f);
        kv_str(f, "device", s->r_device);
        fputs(", ", f);
        kv_str(f, "started_at", s->r_started);
        fputs(", ", f);
        kv_str(f, "finished_at", s->r_finished);
        fprintf(f,
                ", \"wall_seconds\": %.3f, \"audio_seconds\": %.3f, \"x_realtime\": %.3f, \"ok\": %ld, "
                "\"failed\": %ld, \"skipped\": %ld, \"interrupted\": %s, ",
                s->r_wall, s->r_audio, s->r_wall > 0 ? s->r_audio / s->r_wall : 0.0, s->r_ok, s->r_failed,
                s->r_skipped, s->r_interrupted ? "true" : "false");
        kv_str(f, "fatal", s->r_fatal);
        fputs("}}", f);
    }
    fprintf(f, "%s],\n  \"failures\": [", m->n_sh ? "\n  " : "");
    for (size_t i = 0; i < m->failed.n; i++) {
        const item *it = &m->failed.v[i];
        fprintf(f, "%s\n    {", i ? "," : "");
        kv_str(f, "id", it->id);
        fputs(", ", f);
        kv_str(f, "path", it->path);
        fputs(", ", f);
        kv_str(f, "reason", it->reason);
        fputs(", \"ledgers\": [", f);
        for (size_t k = 0; k < it->n_shards; k++) {
            fputs(k ? ", " : "", f);
            sl_json_str(f, m->sh[it->shards[k]].ledger);
        }
        fputs("], ", f);
        json_expected(f, m, it->pos);
        fputc('}', f);
    }
    fprintf(f, "%s],\n  \"missing\": [", m->failed.n ? "\n  " : "");
    for (size_t i = 0; i < m->missing.n; i++) {
        const item *it = &m->missing.v[i];
        fprintf(f, "%s\n    {", i ? "," : "");
        kv_str(f, "id", it->id);
        fputs(", ", f);
        kv_str(f, "path", it->path);
        fputs(", ", f);
        kv_str(f, "reason", it->reason);
        fputs(", ", f);
        json_expected(f, m, it->pos);
        fputc('}', f);
    }
    fprintf(f, "%s],\n  \"duplicated\": [", m->missing.n ? "\n  " : "");
    for (size_t i = 0; i < m->dups.n; i++) {
        const item *it = &m->dups.v[i];
        fprintf(f, "%s\n    {", i ? "," : "");
        kv_str(f, "id", it->id);
        fputs(", ", f);
        kv_str(f, "path", it->path);
        fputs(", \"ledgers\": [", f);
        for (size_t k = 0; k < it->n_shards; k++) {
            fputs(k ? ", " : "", f);
            sl_json_str(f, m->sh[it->shards[k]].ledger);
        }
        fputs("]}", f);
    }
    fprintf(f, "%s],\n  \"problems\": [", m->dups.n ? "\n  " : "");
    for (size_t i = 0; i < m->n_problems; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        sl_json_str(f, m->problems[i]);
    }
    fprintf(f, "%s],\n  \"warnings\": [", m->n_problems ? "\n  " : "");
    for (size_t i = 0; i < m->n_warnings; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        sl_json_str(f, m->warnings[i]);
    }
    fprintf(f, "%s]\n}\n", m->n_warnings ? "\n  " : "");
    return ferror(f) ? -EIO : 0;
}

int sl_merge_write_report(const sl_merge *m, const char *path)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return sl_seterr(-ENOMEM, "%s: out of memory", path);
    int rc = sl_merge_write_json(m, f);
    if (fclose(f) || rc) {
        free(buf);
        return sl_seterr(-ENOMEM, "%s: out of memory", path);
    }
    rc = sl_write_file_atomic(path, buf, len);
    free(buf);
    return rc;
}

static void expected_text(const sl_merge *m, long pos, char *buf, size_t size)
{
    buf[0] = 0;
    if (pos < 0 || !m->n_counts)
        return;
    size_t l = (size_t)snprintf(buf, size, " [shard");
    for (size_t c = 0; c < m->n_counts && l < size; c++)
        l += (size_t)snprintf(buf + l, size - l, "%s %ld/%d", c ? "," : "", pos % m->counts[c], m->counts[c]);
    if (l < size)
        snprintf(buf + l, size - l, "]");
}

void sl_merge_print_problems(const sl_merge *m, FILE *f, size_t max_list)
{
    size_t lim = max_list ? max_list : (size_t)-1;
    for (size_t i = 0; i < m->n_problems; i++)
        fprintf(f, "problem: %s\n", m->problems[i]);
    for (size_t i = 0; i < m->failed.n && i < lim; i++) {
        const item *it = &m->failed.v[i];
        /* with several failed rows the reason already names each ledger */
        if (it->n_shards == 1)
            fprintf(f, "failed: %s: %s (in %s)\n", it->id, it->reason ? it->reason : "", m->sh[it->shards[0]].ledger);
        else
            fprintf(f, "failed: %s: %s\n", it->id, it->reason ? it->reason : "");
    }
    if (m->failed.n > lim)
        fprintf(f, "failed: ... and %zu more (see merged-report.json)\n", m->failed.n - lim);
    for (size_t i = 0; i < m->missing.n && i < lim; i++) {
        char ex[160];
        expected_text(m, m->missing.v[i].pos, ex, sizeof ex);
        fprintf(f, "missing: %s: %s%s\n", m->missing.v[i].id, m->missing.v[i].reason ? m->missing.v[i].reason : "",
                ex);
    }
    if (m->missing.n > lim)
        fprintf(f, "missing: ... and %zu more (see merged-report.json)\n", m->missing.n - lim);
    for (size_t i = 0; i < m->dups.n && i < lim; i++) {
        const item *it = &m->dups.v[i];
        fprintf(f, "duplicated: %s: done in", it->id);
        for (size_t k = 0; k < it->n_shards; k++)
            fprintf(f, "%s %s", k ? " and" : "", m->sh[it->shards[k]].ledger);
        fputc('\n', f);
    }
    if (m->dups.n > lim)
        fprintf(f, "duplicated: ... and %zu more (see merged-report.json)\n", m->dups.n - lim);
}

void sl_merge_print(const sl_merge *m, FILE *f, size_t max_list)
{
    fprintf(f, "stemline merge: %s\n", m->out_dir);
    for (size_t c = 0; c < m->n_counts; c++) {
        size_t have = 0;
        for (size_t i = 0; i < m->n_sh; i++)
            have += m->sh[i].count == m->counts[c];
        if (m->counts[c] == 1)
            fprintf(f, "ledgers: unsharded (ledger.sqlite)\n");
        else
            fprintf(f, "ledgers: %zu of %d shards\n", have, m->counts[c]);
    }
    for (size_t i = 0; i < m->n_sh; i++) {
        const shard *s = &m->sh[i];
        fprintf(f, "  %-28s ", s->ledger);
        if (s->error) {
            fprintf(f, "UNREADABLE: %s\n", s->error);
            continue;
        }
        fprintf(f, "%ld done, %ld failed, %ld pending", s->n_done, s->n_failed, s->n_pending);
        if (s->have_run)
            fprintf(f, "; last run %.1f s of audio in %.1f s (%.1fx realtime, %s)", s->r_audio, s->r_wall,
                    s->r_wall > 0 ? s->r_audio / s->r_wall : 0.0, s->r_backend ? s->r_backend : "?");
        else
            fputs("; no report", f);
        fputc('\n', f);
    }
    if (m->n_hashes == 1)
        fprintf(f, "config hash: %s%s\n", m->hashes[0].hash,
                m->job_hash ? (strcmp(m->job_hash, m->hashes[0].hash) ? " (the job's is different)" : " (= the job's)")
                            : "");
    else if (m->n_hashes > 1)
        fprintf(f, "config hashes: %zu different (see below)\n", m->n_hashes);
    if (m->have_catalog)
        fprintf(f, "tracks: %zu in the catalog: %zu ok, %zu failed, %zu missing, %zu duplicated", m->catalog_n,
                m->n_ok, m->failed.n, m->missing.n, m->dups.n);
    else
        fprintf(f, "tracks: %zu known to the ledgers: %zu ok, %zu failed, %zu missing, %zu duplicated", m->n_known,
                m->n_ok, m->failed.n, m->missing.n, m->dups.n);
    if (m->n_extra)
        fprintf(f, "; %zu in ledgers but not in the catalog", m->n_extra);
    fputc('\n', f);
    double wmax, raudio, wsum = wall_sum(m, &wmax, &raudio);
    fprintf(f, "audio: %.1f s done; last runs: %.1f s of audio in %.1f s of shard time (%.1fx realtime per shard), "
               "longest shard %.1f s\n",
            m->audio_ok, raudio, wsum, wsum > 0 ? raudio / wsum : 0.0, wmax);
    if (!m->have_catalog)
        fputs("note: without --job JOB.yaml only tracks some shard attempted are checked; pass the job for the "
              "full check against the catalog\n",
              f);
    for (size_t i = 0; i < m->n_warnings; i++)
        fprintf(f, "warning: %s\n", m->warnings[i]);
    sl_merge_print_problems(m, f, max_list);
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
