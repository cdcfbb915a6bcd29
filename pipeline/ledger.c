/* Ledger on SQLite.
 *
 * Durability: journal_mode=WAL with synchronous=FULL. WAL+NORMAL already keeps a
 * committed row through kill -9 of the process (the WAL is in the OS page cache),
 * but not through a power cut or kernel panic, which could lose the last "done"
 * rows while their output files (fsync'd by the atomic writers) are on disk.
 * Redoing them is merely wasted work, yet FULL costs one fsync of the WAL per
 * track, which is nothing next to seconds of audio processing per track, so we
 * take the stronger guarantee.
 *
 * Threads: one connection, opened FULLMUTEX, plus our own recursive mutex around
 * every call, because cached statements and sqlite3_errmsg() are per connection
 * and must not be shared mid-use; recursive so that an each() callback may call
 * put() or is_done() on the same ledger.
 *
 * WAL needs shared memory between the processes using the file, so a ledger must
 * not be shared across machines; each shard of a job writes its own ledger. */
#include "pipeline/ledger.h"

#include "common/sl_error.h"
#include "io/npy.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SL_LEDGER_SCHEMA 3

struct sl_ledger {
    sqlite3 *db;
    char *path;
    pthread_mutex_t mu;
    sqlite3_stmt *st_put;
    sqlite3_stmt *st_done;
    sqlite3_stmt *st_vdel, *st_vput;
    sqlite3_stmt *st_files;
    sqlite3_stmt *st_decode;
};

static int db_err(sl_ledger *l, const char *what)
{
    return sl_seterr(SL_EDB, "ledger %s: %s: %s", l->path, what, sqlite3_errmsg(l->db));
}

static int exec(sl_ledger *l, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(l->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        int rc = sl_seterr(SL_EDB, "ledger %s: %s", l->path, msg ? msg : sqlite3_errmsg(l->db));
        sqlite3_free(msg);
        return rc;
    }
    return 0;
}

static int col_name_is(sqlite3_stmt *st, const char *name)
{
    const unsigned char *t = sqlite3_column_text(st, 1); /* table_info: cid, name, type, ... */
    return t && !strcmp((const char *)t, name);
}

/* The first column of a one-row query, as an integer into *v (when v) or as text
 * into out[cap] (when out; journal_mode answers with text, "" without a row). */
static int query_one(sl_ledger *l, const char *sql, long long *v, char *out, size_t cap)
{
    sqlite3_stmt *st;
    if (out)
        out[0] = 0;
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(l, sql);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        if (v)
            *v = sqlite3_column_int64(st, 0);
        if (out) {
            const unsigned char *t = sqlite3_column_text(st, 0);
            snprintf(out, cap, "%s", t ? (const char *)t : "");
        }
    } else if (r != SQLITE_DONE) {
        int rc = db_err(l, sql);
        sqlite3_finalize(st);
        return rc;
    }
    sqlite3_finalize(st);
    return 0;
}

static int query_int(sl_ledger *l, const char *sql, long long *v) { return query_one(l, sql, v, NULL, 0); }
static int query_text(sl_ledger *l, const char *sql, char *out, size_t cap) { return query_one(l, sql, NULL, out, cap); }

/* Schema 3: the vectors beyond the mix's track vector (stems, timelines). */
#define VECTORS_SCHEMA                                                                                          \
    "CREATE TABLE IF NOT EXISTS vectors ("                                                                      \
    " id TEXT NOT NULL COLLATE BINARY,"                                                                         \
    " source TEXT NOT NULL COLLATE BINARY,"                                                                     \
    " win INTEGER NOT NULL," /* -1 = the track vector of the source, k >= 0 = timeline window k */             \
    " t_start REAL NOT NULL,"                                                                                   \
    " t_end REAL NOT NULL,"                                                                                     \
    " vector BLOB NOT NULL,"                                                                                    \
    " dim INTEGER NOT NULL,"                                                                                    \
    " tags TEXT,"                                                                                               \
    " PRIMARY KEY (id, source, win)) WITHOUT ROWID;"

/* The job of the folder (added within schema 3, by idempotent migration): the
 * output-affecting configuration that every done row of this ledger was made
 * with ('config_hash', 'settings' as sl_cfg_output_json, 'recorded_at'). */
#define JOB_SCHEMA "CREATE TABLE IF NOT EXISTS job (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;"

static const char *const SCHEMA =
    "CREATE TABLE IF NOT EXISTS tracks ("
    " id TEXT PRIMARY KEY COLLATE BINARY," /* BINARY = memcmp = strcmp order */
    " path TEXT NOT NULL,"
    " size INTEGER NOT NULL,"
    " mtime_ns INTEGER NOT NULL,"
    " config_hash TEXT NOT NULL,"
    " status TEXT NOT NULL CHECK (status IN ('pending','done','failed')),"
    " error TEXT,"
    " outputs TEXT,"
    " timings TEXT,"
    " duration REAL,"
    " vector BLOB,"
    " dim INTEGER,"
    " vector_model TEXT,"
    " updated_at TEXT NOT NULL,"
    " tags TEXT,"
    " files TEXT);" VECTORS_SCHEMA JOB_SCHEMA
    "PRAGMA user_version = 3;";

/* 1 when table has the column, 0 when not, or SL_EDB. */
static int has_column(sl_ledger *l, const char *table, const char *column)
{
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA table_info(%s)", table);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(l, sql);
    int found = 0, r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW)
        if (!found && col_name_is(st, column))
            found = 1;
    int rc = r == SQLITE_DONE ? found : db_err(l, sql);
    sqlite3_finalize(st);
    return rc;
}

static int migrate_outputs(sl_ledger *l)
{
    int have = has_column(l, "tracks", "files");
    if (have < 0)
        return have;
    long long njob = 0;
    int rc = query_int(l, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='job'", &njob);
    if (rc || (have && njob))
        return rc;
    rc = exec(l, "BEGIN IMMEDIATE");
    if (rc)
        return rc;
    if (!have)
        rc = exec(l, "ALTER TABLE tracks ADD COLUMN files TEXT;");
    if (!rc)
        rc = exec(l, JOB_SCHEMA);
    if (!rc)
        rc = exec(l, "COMMIT");
    if (rc)
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
#define DECODE_COLUMN_SQL "SELECT count(*) FROM pragma_table_info('tracks') WHERE name = 'decode'"

int sl_ledger_open(sl_ledger **out, const char *path)
{
    *out = NULL;
    if (!path || !*path)
        return sl_seterr(SL_EINVAL, "ledger: empty path");
    int rc = sl_mkdirs_for(path);
    if (rc < 0) {
        char why[512]; /* sl_lasterr() is the buffer sl_seterr writes to */
        snprintf(why, sizeof why, "%s", sl_lasterr());
        return sl_seterr(SL_EDB, "ledger: %s", why);
    }
    sl_ledger *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path))) {
        free(l);
        return sl_seterr(SL_ENOMEM, "ledger %s: out of memory", path);
    }
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&l->mu, &ma);
    pthread_mutexattr_destroy(&ma);

    int r = sqlite3_open_v2(path, &l->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (r != SQLITE_OK) {
        rc = sl_seterr(SL_EDB, "ledger %s: cannot open: %s", path,
                       l->db ? sqlite3_errmsg(l->db) : sqlite3_errstr(r));
        goto fail;
    }
    sqlite3_extended_result_codes(l->db, 1);
    sqlite3_busy_timeout(l->db, 30000);

    /* The first statement touches the file: a non-SQLite file fails here with
     * "file is not a database", which becomes a plain SL_EDB. */
    long long ver = 0;
    if ((rc = query_int(l, "PRAGMA user_version", &ver)) < 0)
        goto fail;
    if (ver > SL_LEDGER_SCHEMA) {
        rc = sl_seterr(SL_EDB, "ledger %s: schema version %lld is newer than this stemline understands (%d)",
                       path, ver, SL_LEDGER_SCHEMA);
        goto fail;
    }
    char mode[32];
    if ((rc = query_text(l, "PRAGMA journal_mode=WAL", mode, sizeof mode)) < 0)
        goto fail;
    if (strcmp(mode, "wal") != 0) {
        rc = sl_seterr(SL_EDB, "ledger %s: cannot switch to WAL mode (got '%s'); is it on a network filesystem?",
                       path, mode);
        goto fail;
    }
    if ((rc = exec(l, "PRAGMA synchronous=FULL")) < 0)
        goto fail;
    if (ver == 0) {
        long long n = 0;
        if ((rc = query_int(l, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name<>'tracks'", &n)) <
            0)
            goto fail;
        if (n > 0) {
            rc = sl_seterr(SL_EDB, "ledger %s: an SQLite database that is not a stemline ledger", path);
            goto fail;
        }
        if ((rc = exec(l, "BEGIN IMMEDIATE")) < 0)
            goto fail;
        if ((rc = exec(l, SCHEMA)) < 0) {
            sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
            goto fail;
        }
        if ((rc = exec(l, "COMMIT")) < 0)
            goto fail;
    } else {
        if (ver == 1) {
            /* schema 1 -> 2: the tags column */
            if ((rc = exec(l, "BEGIN IMMEDIATE")) < 0)
                goto fail;
            if ((rc = exec(l, "ALTER TABLE tracks ADD COLUMN tags TEXT; PRAGMA user_version = 2;")) < 0) {
                sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
                goto fail;
            }
            if ((rc = exec(l, "COMMIT")) < 0)
                goto fail;
            ver = 2;
        }
        if (ver == 2) {
            /* schema 2 -> 3: the vectors table (stems, timelines) */
            if ((rc = exec(l, "BEGIN IMMEDIATE")) < 0)
                goto fail;
            if ((rc = exec(l, VECTORS_SCHEMA "PRAGMA user_version = 3;")) < 0) {
                sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
                goto fail;
            }
            if ((rc = exec(l, "COMMIT")) < 0)
                goto fail;
        }
        /* Added without a version bump, so that every version that knows
         * schema 3 still opens the file: the recorded outputs with their sizes
         * and hashes, and the job's configuration. Idempotent. */
        if ((rc = migrate_outputs(l)) < 0)
            goto fail;
        /* Check the columns we rely on are there (a foreign table named tracks). */
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(l->db,
                               "SELECT id, path, size, mtime_ns, config_hash, status, error, outputs, timings,"
                               " duration, vector, dim, vector_model, updated_at, tags, files FROM tracks LIMIT 0",
                               -1, &st, NULL) != SQLITE_OK) {
            rc = db_err(l, "not a stemline ledger");
            goto fail;
        }
        sqlite3_finalize(st);
        if (sqlite3_prepare_v2(l->db, "SELECT id, source, win, t_start, t_end, vector, dim, tags FROM vectors LIMIT 0",
                               -1, &st, NULL) != SQLITE_OK) {
            rc = db_err(l, "not a stemline ledger");
            goto fail;
        }
        sqlite3_finalize(st);
    }
    /* What decoding saw (a JSON object): added within schema 3, by an
     * idempotent migration, so that every stemline that knows schema 3
     * still opens the file. Another process may add it at the same moment. */
    long long has_decode = 0;
    if ((rc = query_int(l, DECODE_COLUMN_SQL, &has_decode)) < 0)
        goto fail;
    if (!has_decode && exec(l, "ALTER TABLE tracks ADD COLUMN decode TEXT") < 0 &&
        ((rc = query_int(l, DECODE_COLUMN_SQL, &has_decode)) < 0 || !has_decode)) {
        rc = db_err(l, "adding the decode column");
        goto fail;
    }
    if (sqlite3_prepare_v3(l->db, "UPDATE tracks SET decode = ?2 WHERE id = ?1", -1, SQLITE_PREPARE_PERSISTENT,
                           &l->st_decode, NULL) != SQLITE_OK) {
        rc = db_err(l, "prepare");
        goto fail;
    }
    if (sqlite3_prepare_v3(l->db,
                           "INSERT OR REPLACE INTO tracks (id, path, size, mtime_ns, config_hash, status, error,"
                           " outputs, timings, duration, vector, dim, vector_model, updated_at, tags, files)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                           -1, SQLITE_PREPARE_PERSISTENT, &l->st_put, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(l->db,
                           "SELECT 1 FROM tracks WHERE id = ?1 AND path = ?2 AND size = ?3 AND mtime_ns = ?4"
                           " AND config_hash = ?5 AND status = 'done'",
                           -1, SQLITE_PREPARE_PERSISTENT, &l->st_done, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(l->db, "DELETE FROM vectors WHERE id = ?1", -1, SQLITE_PREPARE_PERSISTENT, &l->st_vdel,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(l->db,
                           "INSERT INTO vectors (id, source, win, t_start, t_end, vector, dim, tags)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                           -1, SQLITE_PREPARE_PERSISTENT, &l->st_vput, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(l->db, "SELECT status, outputs, files FROM tracks WHERE id = ?1", -1,
                           SQLITE_PREPARE_PERSISTENT, &l->st_files, NULL) != SQLITE_OK) {
        rc = db_err(l, "prepare");
        goto fail;
    }
    *out = l;
    return 0;
fail:
    sl_ledger_close(l);
    return rc;
}

void sl_ledger_close(sl_ledger *l)
{
    if (!l)
        return;
    sqlite3_finalize(l->st_put);
    sqlite3_finalize(l->st_done);
    sqlite3_finalize(l->st_vdel);
    sqlite3_finalize(l->st_vput);
    sqlite3_finalize(l->st_files);
    sqlite3_finalize(l->st_decode);
    if (l->db)
        sqlite3_close_v2(l->db);
    pthread_mutex_destroy(&l->mu);
    free(l->path);
    free(l);
}

int sl_ledger_is_done(sl_ledger *l, const char *id, const char *path, int64_t size, int64_t mtime_ns,
                      const char *config_hash)
{
    if (!l || !id || !path || !config_hash)
        return sl_seterr(SL_EINVAL, "ledger: is_done with NULL argument");
    pthread_mutex_lock(&l->mu);
    sqlite3_stmt *st = l->st_done;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, size);
    sqlite3_bind_int64(st, 4, mtime_ns);
    sqlite3_bind_text(st, 5, config_hash, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    int rc = r == SQLITE_ROW ? 1 : r == SQLITE_DONE ? 0 : db_err(l, "is_done");
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

static void iso_now(char out[40])
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 40 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

static const char *status_name(sl_track_status s)
{
    return s == SL_TRACK_DONE ? "done" : s == SL_TRACK_FAILED ? "failed" : "pending";
}

/* Vectors are stored little-endian whatever the host. */
static unsigned char *encode_vec(const float *v, int dim)
{
    unsigned char *blob = malloc((size_t)dim * 4);
    if (!blob)
        return NULL;
    for (int i = 0; i < dim; i++) {
        uint32_t x;
        memcpy(&x, &v[i], 4);
        blob[4 * i] = (unsigned char)x;
        blob[4 * i + 1] = (unsigned char)(x >> 8);
        blob[4 * i + 2] = (unsigned char)(x >> 16);
        blob[4 * i + 3] = (unsigned char)(x >> 24);
    }
    return blob;
}

static int step_done(sl_ledger *l, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(l, what);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int sl_ledger_put(sl_ledger *l, const sl_ledger_row *r)
{
    if (!l || !r || !r->id || !r->path || !r->config_hash)
        return sl_seterr(SL_EINVAL, "ledger: put with NULL id, path or config_hash");
    if (r->status != SL_TRACK_PENDING && r->status != SL_TRACK_DONE && r->status != SL_TRACK_FAILED)
        return sl_seterr(SL_EINVAL, "ledger: track %s: bad status %d", r->id, (int)r->status);
    if ((r->vector || r->n_vecs) && (r->dim <= 0 || r->dim > (1 << 24)))
        return sl_seterr(SL_EINVAL, "ledger: track %s: vector with dim %d", r->id, r->dim);
    if (r->n_vecs && !r->vecs)
        return sl_seterr(SL_EINVAL, "ledger: track %s: %zu vectors without data", r->id, r->n_vecs);
    for (size_t i = 0; i < r->n_vecs; i++)
        if (!r->vecs[i].source || !*r->vecs[i].source || !r->vecs[i].vector || r->vecs[i].window < -1 ||
            (r->vecs[i].window == -1 && !strcmp(r->vecs[i].source, "mix")))
            return sl_seterr(SL_EINVAL, "ledger: track %s: vector %zu without source or data, or a second mix "
                                        "track vector", r->id, i);

    unsigned char *blob = NULL;
    size_t blen = (size_t)r->dim * 4;
    if (r->vector && !(blob = encode_vec(r->vector, r->dim)))
        return sl_seterr(SL_ENOMEM, "ledger: out of memory");
    char now[40];
    iso_now(now);

    pthread_mutex_lock(&l->mu);
    /* the track row and its vectors in one transaction: a reader (or a crash)
     * never sees a row without its vectors */
    int rc = exec(l, "BEGIN IMMEDIATE");
    if (rc)
        goto out;
    sqlite3_stmt *st = l->st_put;
    sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, r->size);
    sqlite3_bind_int64(st, 4, r->mtime_ns);
    sqlite3_bind_text(st, 5, r->config_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, status_name(r->status), -1, SQLITE_STATIC);
    if (r->error)
        sqlite3_bind_text(st, 7, r->error, -1, SQLITE_STATIC);
    if (r->outputs_json)
        sqlite3_bind_text(st, 8, r->outputs_json, -1, SQLITE_STATIC);
    if (r->timings_json)
        sqlite3_bind_text(st, 9, r->timings_json, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 10, r->duration);
    if (blob) {
        sqlite3_bind_blob(st, 11, blob, (int)blen, SQLITE_STATIC);
        sqlite3_bind_int(st, 12, r->dim);
    }
    if (r->vector_model)
        sqlite3_bind_text(st, 13, r->vector_model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 14, now, -1, SQLITE_STATIC);
    if (r->tags_json)
        sqlite3_bind_text(st, 15, r->tags_json, -1, SQLITE_STATIC);
    if (r->files_json)
        sqlite3_bind_text(st, 16, r->files_json, -1, SQLITE_STATIC);
    rc = step_done(l, st, "put");
    if (!rc && r->decode_json) {
        sqlite3_bind_text(l->st_decode, 1, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(l->st_decode, 2, r->decode_json, -1, SQLITE_STATIC);
        rc = step_done(l, l->st_decode, "put decode");
    }
    if (!rc) {
        sqlite3_bind_text(l->st_vdel, 1, r->id, -1, SQLITE_STATIC);
        rc = step_done(l, l->st_vdel, "put vectors");
    }
    for (size_t i = 0; !rc && i < r->n_vecs; i++) {
        const sl_ledger_vec *v = &r->vecs[i];
        unsigned char *vb = encode_vec(v->vector, r->dim);
        if (!vb) {
            rc = sl_seterr(SL_ENOMEM, "ledger: out of memory");
            break;
        }
        st = l->st_vput;
        sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, v->source, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, v->window);
        sqlite3_bind_double(st, 4, v->start);
        sqlite3_bind_double(st, 5, v->end);
        sqlite3_bind_blob(st, 6, vb, (int)blen, SQLITE_STATIC);
        sqlite3_bind_int(st, 7, r->dim);
        if (v->tags_json)
            sqlite3_bind_text(st, 8, v->tags_json, -1, SQLITE_STATIC);
        rc = step_done(l, st, "put vectors");
        free(vb);
    }
    /* with synchronous=FULL the commit is on disk when it returns */
    if (!rc)
        rc = exec(l, "COMMIT");
    if (rc)
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
out:
    pthread_mutex_unlock(&l->mu);
    free(blob);
    return rc;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

/* Runs a SELECT of the 15 row columns and calls fn per row. Statements are
 * prepared per call (not cached) so that a callback may start another
 * iteration on the same ledger; iterations are rare, puts are not. */
static int iterate(sl_ledger *l, const char *sql, const char *model, const char *source,
                   int (*fn)(void *, const sl_ledger_row *), void *arg)
{
    pthread_mutex_lock(&l->mu);
    sqlite3_stmt *st;
    int rc = 0;
    if (sqlite3_prepare_v2(l->db, sql, -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(l, "iterate");
        pthread_mutex_unlock(&l->mu);
        return rc;
    }
    if (model)
        sqlite3_bind_text(st, 1, model, -1, SQLITE_STATIC);
    if (source)
        sqlite3_bind_text(st, 2, source, -1, SQLITE_STATIC);
    int ext = sqlite3_column_count(st) >= 19; /* + source, win, t_start, t_end */
    float *vbuf = NULL;
    size_t vcap = 0;
    for (;;) {
        int r = sqlite3_step(st);
        if (r == SQLITE_DONE)
            break;
        if (r != SQLITE_ROW) {
            rc = db_err(l, "iterate");
            break;
        }
        sl_ledger_row row = {0};
        row.id = col_text(st, 0);
        row.path = col_text(st, 1);
        row.size = sqlite3_column_int64(st, 2);
        row.mtime_ns = sqlite3_column_int64(st, 3);
        row.config_hash = col_text(st, 4);
        const char *s = col_text(st, 5);
        row.status = s && !strcmp(s, "done") ? SL_TRACK_DONE : s && !strcmp(s, "failed") ? SL_TRACK_FAILED
                                                                                          : SL_TRACK_PENDING;
        row.error = col_text(st, 6);
        row.outputs_json = col_text(st, 7);
        row.timings_json = col_text(st, 8);
        row.duration = sqlite3_column_double(st, 9);
        row.vector_model = col_text(st, 12);
        row.tags_json = col_text(st, 13);
        row.files_json = col_text(st, 14);
        if (ext) {
            row.source = col_text(st, 15);
            row.window = sqlite3_column_int(st, 16);
            row.start = sqlite3_column_double(st, 17);
            row.end = sqlite3_column_double(st, 18);
        } else {
            row.source = "mix";
            row.window = -1;
            row.start = 0;
            row.end = row.duration;
        }
        if (sqlite3_column_type(st, 10) == SQLITE_BLOB) {
            int dim = sqlite3_column_int(st, 11);
            const unsigned char *b = sqlite3_column_blob(st, 10);
            int blen = sqlite3_column_bytes(st, 10);
            if (dim <= 0 || blen != dim * 4) {
                rc = sl_seterr(SL_EDB, "ledger %s: track %s: vector of %d bytes for dim %d", l->path,
                               row.id ? row.id : "?", blen, dim);
                break;
            }
            if ((size_t)dim > vcap) {
                float *nb = realloc(vbuf, (size_t)dim * sizeof(float));
                if (!nb) {
                    rc = sl_seterr(SL_ENOMEM, "ledger: out of memory");
                    break;
                }
                vbuf = nb;
                vcap = (size_t)dim;
            }
            for (int i = 0; i < dim; i++) {
                uint32_t x = (uint32_t)b[4 * i] | ((uint32_t)b[4 * i + 1] << 8) | ((uint32_t)b[4 * i + 2] << 16) |
                             ((uint32_t)b[4 * i + 3] << 24);
                memcpy(&vbuf[i], &x, 4);
            }
            row.vector = vbuf;
            row.dim = dim;
        }
        rc = fn(arg, &row);
        if (rc)
            break;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&l->mu);
    free(vbuf);
    return rc;
}

#define ROW_COLS                                                                                                \
    "SELECT id, path, size, mtime_ns, config_hash, status, error, outputs, timings, duration, vector, dim,"     \
    " vector_model, tags, files FROM tracks"

int sl_ledger_each_vector(sl_ledger *l, const char *vector_model, int (*fn)(void *arg, const sl_ledger_row *r),
                          void *arg)
{
    if (!l || !fn)
        return sl_seterr(SL_EINVAL, "ledger: each_vector with NULL argument");
    if (vector_model)
        return iterate(l, ROW_COLS " WHERE status = 'done' AND vector IS NOT NULL AND vector_model = ?1 ORDER BY id",
                       vector_model, NULL, fn, arg);
    return iterate(l, ROW_COLS " WHERE status = 'done' AND vector IS NOT NULL ORDER BY id", NULL, NULL, fn, arg);
}

int sl_ledger_each(sl_ledger *l, int (*fn)(void *arg, const sl_ledger_row *r), void *arg)
{
    if (!l || !fn)
        return sl_seterr(SL_EINVAL, "ledger: each with NULL argument");
    return iterate(l, ROW_COLS " ORDER BY id", NULL, NULL, fn, arg);
}

int sl_ledger_each_source_vector(sl_ledger *l, const char *vector_model, const char *source, int timeline,
                                 int (*fn)(void *arg, const sl_ledger_row *r), void *arg)
{
    if (!l || !fn || !vector_model || !source)
        return sl_seterr(SL_EINVAL, "ledger: each_source_vector with NULL argument");
    if (!strcmp(source, "mix") && !timeline)
        return sl_ledger_each_vector(l, vector_model, fn, arg);
    static const char *const sql[2] = {
        "SELECT t.id, t.path, t.size, t.mtime_ns, t.config_hash, t.status, t.error, t.outputs, t.timings,"
        " t.duration, v.vector, v.dim, t.vector_model, v.tags, t.files, v.source, v.win, v.t_start,"
        " v.t_end"
        " FROM vectors v JOIN tracks t ON t.id = v.id"
        " WHERE t.status = 'done' AND t.vector_model = ?1 AND v.source = ?2 AND v.win = -1 ORDER BY v.id",
        "SELECT t.id, t.path, t.size, t.mtime_ns, t.config_hash, t.status, t.error, t.outputs, t.timings,"
        " t.duration, v.vector, v.dim, t.vector_model, v.tags, t.files, v.source, v.win, v.t_start,"
        " v.t_end"
        " FROM vectors v JOIN tracks t ON t.id = v.id"
        " WHERE t.status = 'done' AND t.vector_model = ?1 AND v.source = ?2 AND v.win >= 0 ORDER BY v.id, v.win",
    };
    return iterate(l, sql[timeline ? 1 : 0], vector_model, source, fn, arg);
}

/* ---- the job record and the recorded outputs ---- */

static char *dup_col(sqlite3_stmt *st, int i, int *oom)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    if (!t)
        return NULL;
    char *d = strdup((const char *)t);
    if (!d)
        *oom = 1;
    return d;
}

/* Ends a read of two malloc'd strings: on an error (or out of memory) both are
 * freed and NULL. */
static int pair_done(int rc, int oom, char **a, char **b)
{
    if (!rc && oom)
        rc = sl_seterr(SL_ENOMEM, "ledger: out of memory");
    if (rc) {
        free(*a);
        free(*b);
        *a = *b = NULL;
    }
    return rc;
}

int sl_ledger_get_job(sl_ledger *l, char **config_hash, char **settings_json)
{
    *config_hash = NULL;
    *settings_json = NULL;
    pthread_mutex_lock(&l->mu);
    sqlite3_stmt *st;
    int rc = 0, oom = 0;
    if (sqlite3_prepare_v2(l->db, "SELECT key, value FROM job WHERE key IN ('config_hash', 'settings')", -1, &st,
                           NULL) != SQLITE_OK) {
        rc = db_err(l, "job");
    } else {
        int r;
        while ((r = sqlite3_step(st)) == SQLITE_ROW) {
            const char *k = col_text(st, 0);
            char **dst = k && !strcmp(k, "config_hash") ? config_hash : settings_json;
            free(*dst);
            *dst = dup_col(st, 1, &oom);
        }
        if (r != SQLITE_DONE)
            rc = db_err(l, "job");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&l->mu);
    return pair_done(rc, oom, config_hash, settings_json);
}

/* Runs n statements in one transaction, statement i with the text parameters
 * args[i][0] and args[i][1] (NULL: not bound). Returns 0 or SL_EDB. */
static int tx_steps(sl_ledger *l, const char *const *sql, const char *const (*args)[2], int n, const char *what)
{
    pthread_mutex_lock(&l->mu);
    int rc = exec(l, "BEGIN IMMEDIATE");
    for (int i = 0; i < n && !rc; i++) {
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(l->db, sql[i], -1, &st, NULL) != SQLITE_OK) {
            rc = db_err(l, what);
            break;
        }
        for (int k = 0; k < 2; k++)
            if (args[i][k])
                sqlite3_bind_text(st, k + 1, args[i][k], -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_err(l, what);
        sqlite3_finalize(st);
    }
    if (!rc)
        rc = exec(l, "COMMIT");
    if (rc)
        sqlite3_exec(l->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int sl_ledger_set_job(sl_ledger *l, const char *config_hash, const char *settings_json)
{
    if (!l || !config_hash || !settings_json)
        return sl_seterr(SL_EINVAL, "ledger: set_job with NULL argument");
    char now[40];
    iso_now(now);
    static const char *const put = "INSERT OR REPLACE INTO job (key, value) VALUES (?1, ?2)";
    const char *const sql[3] = {put, put, put};
    const char *const kv[3][2] = {{"config_hash", config_hash}, {"settings", settings_json}, {"recorded_at", now}};
    return tx_steps(l, sql, kv, 3, "set job");
}

long sl_ledger_count_other(sl_ledger *l, const char *config_hash, char other[17])
{
    other[0] = 0;
    pthread_mutex_lock(&l->mu);
    sqlite3_stmt *st;
    long rc;
    if (sqlite3_prepare_v2(l->db,
                           "SELECT count(*), min(config_hash) FROM tracks WHERE status = 'done' AND config_hash <> ?1",
                           -1, &st, NULL) != SQLITE_OK) {
        rc = db_err(l, "count");
    } else {
        sqlite3_bind_text(st, 1, config_hash, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) {
            rc = (long)sqlite3_column_int64(st, 0);
            const char *h = col_text(st, 1);
            snprintf(other, 17, "%s", h ? h : "");
        } else {
            rc = db_err(l, "count");
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int sl_ledger_delete_other(sl_ledger *l, const char *config_hash)
{
    static const char *const sql[2] = {
        "DELETE FROM vectors WHERE id IN (SELECT id FROM tracks WHERE config_hash <> ?1)",
        "DELETE FROM tracks WHERE config_hash <> ?1",
    };
    const char *const args[2][2] = {{config_hash, NULL}, {config_hash, NULL}};
    return tx_steps(l, sql, args, 2, "delete");
}

int sl_ledger_get_outputs(sl_ledger *l, const char *id, char **outputs_json, char **files_json)
{
    *outputs_json = NULL;
    *files_json = NULL;
    if (!l || !id)
        return sl_seterr(SL_EINVAL, "ledger: get_outputs with NULL argument");
    pthread_mutex_lock(&l->mu);
    sqlite3_stmt *st = l->st_files;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int r = sqlite3_step(st), rc = 0, oom = 0;
    if (r == SQLITE_ROW) {
        *outputs_json = dup_col(st, 1, &oom);
        *files_json = dup_col(st, 2, &oom);
    } else if (r != SQLITE_DONE) {
        rc = db_err(l, "get_outputs");
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&l->mu);
    return pair_done(rc, oom, outputs_json, files_json);
}
