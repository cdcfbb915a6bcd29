/* stemline merge: reading the shards' ledgers and reports.
 *
 * Ledgers are opened read-only so that merging can never change a job's state;
 * SQLite may still have to create the -shm file of a WAL database, so when the
 * folder is not writable and a read-only open fails, it is retried read-write
 * (no create), which a WAL reader needs anyway. */
#include <errno.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"
#include "merge_impl.h"
#include "shardenv.h"

void mg_rows_truncate(rows *r, size_t n)
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
            mg_rows_truncate(out, first);
            goto out;
        }
        if (out->n == out->cap) {
            size_t nc = out->cap ? out->cap * 2 : 1024;
            row *nv = realloc(out->v, nc * sizeof *nv);
            if (!nv) {
                snprintf(why, why_size, "out of memory");
                mg_rows_truncate(out, first);
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
            mg_rows_truncate(out, first);
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

int mg_read_ledger(const char *path, int si, rows *out, char *why, size_t why_size)
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

void mg_read_report(sl_merge *m, shard *s)
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
            mg_note(m, 0, "%s: no report (%s): the shard never finished a run; wall time unknown", s->ledger, name);
        else
            mg_note(m, 0, "%s: cannot read: %s", name, strerror(errno));
        free(path);
        return;
    }
    s->report = mg_strdup(m, name);
    sl_json root;
    int jr = sl_json_parse(text, len, &root);
    if (jr || root.type != SL_JSON_OBJECT) {
        if (jr == SL_ENOMEM)
            m->oom = 1;
        else
            mg_note(m, 0, "%s: not valid JSON (%s); its run's timings are left out", name,
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
        mg_note(m, 0, "%s: says shard %d of %d, its name says %d of %d", name, sh_index, sh_count, s->index, s->count);
    if (s->r_hash) {
        char where[160];
        snprintf(where, sizeof where, "%s", name);
        mg_hash_seen(m, s->r_hash, where);
    }
    if (s->r_interrupted)
        mg_note(m, 0, "%s: the shard's last run was interrupted", name);
    if (s->r_fatal)
        mg_note(m, 0, "%s: the shard's last run stopped: %s", name, s->r_fatal);
    sl_json_free(&root);
    free(text);
    free(path);
}
