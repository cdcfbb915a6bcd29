/* Ledger (SQLite, WAL): resumability rules, ordering, threads, persistence
 * through close and kill -9, corrupt files, schema migration, the job record,
 * the run lock and the outputs check. The vector shards: test_shards.c. */
#include "common/sl_error.h"
#include "io/npy.h"
#include "pipeline/ledger.h"
#include "pipeline/outputs.h"
#include "pipeline/runlock.h"
#include "pipeline/shards.h"
#include "tests/unit/ledger_rows.h"
#include "tests/unit/sl_test.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *tmp;

/* ------------------------------------------------------------------ ledger */

typedef struct {
    char ids[64][64];
    int n;
    int with_vec;
} collect;

static int collect_fn(void *arg, const sl_ledger_row *r)
{
    collect *c = arg;
    if (c->n < 64)
        snprintf(c->ids[c->n], sizeof c->ids[0], "%s", r->id);
    c->n++;
    if (r->vector)
        c->with_vec++;
    return 0;
}

static int stop_fn(void *arg, const sl_ledger_row *r)
{
    (void)r;
    int *n = arg;
    return ++*n == 2 ? 42 : 0;
}

static void test_basic(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/out/ledger.db", tmp); /* folder created by open */
    sl_ledger *l = NULL;
    int rc = sl_ledger_open(&l, path);
    CHECK_MSG(rc == 0, "open: %s", sl_lasterr());
    if (!l)
        return;

    float v[16];
    vec_of(v, 16, 3);
    sl_ledger_row r = done_row("a/song.mp3", "/music/a/song.mp3", v, 16, "melstats");
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size, r.mtime_ns, r.config_hash) == 0);
    CHECK(sl_ledger_put(l, &r) == 0);
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size, r.mtime_ns, r.config_hash) == 1);
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size + 1, r.mtime_ns, r.config_hash) == 0);
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size, r.mtime_ns + 1, r.config_hash) == 0);
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size, r.mtime_ns, "fedcba9876543210") == 0);
    CHECK(sl_ledger_is_done(l, r.id, "/elsewhere/song.mp3", r.size, r.mtime_ns, r.config_hash) == 0);
    CHECK(sl_ledger_is_done(l, "other", r.path, r.size, r.mtime_ns, r.config_hash) == 0);

    /* A failed (or pending) row is never done, and replaces the done one. */
    sl_ledger_row f = r;
    f.status = SL_TRACK_FAILED;
    f.error = "decode: invalid data found";
    f.vector = NULL;
    f.dim = 0;
    CHECK(sl_ledger_put(l, &f) == 0);
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size, r.mtime_ns, r.config_hash) == 0);
    f.status = SL_TRACK_PENDING;
    f.error = NULL;
    CHECK(sl_ledger_put(l, &f) == 0);
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size, r.mtime_ns, r.config_hash) == 0);
    CHECK(sl_ledger_put(l, &r) == 0);
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size, r.mtime_ns, r.config_hash) == 1);

    /* bad arguments */
    sl_ledger_row bad = r;
    bad.id = NULL;
    CHECK(sl_ledger_put(l, &bad) == SL_EINVAL);
    bad = r;
    bad.dim = 0;
    CHECK(sl_ledger_put(l, &bad) == SL_EINVAL);

    /* Ordering is strcmp (byte) order, whatever the insertion order. */
    const char *ids[] = {"b", "B", "a.b", "a/b", "a", "\xc3\xa4", "Z", "a b", "A", "~x", "0"};
    size_t nid = sizeof ids / sizeof ids[0];
    for (size_t i = 0; i < nid; i++) {
        float w[16];
        vec_of(w, 16, (int)i);
        sl_ledger_row x = done_row(ids[i], ids[i], w, 16, (i % 3) ? "melstats" : "other");
        if (i == 4) { /* a failed row with a vector is not a vector row */
            x.status = SL_TRACK_FAILED;
            x.error = "boom";
        }
        CHECK(sl_ledger_put(l, &x) == 0);
    }
    collect c = {0};
    CHECK(sl_ledger_each(l, collect_fn, &c) == 0);
    CHECK(c.n == (int)nid + 1);
    int sorted = 1;
    for (int i = 1; i < c.n && i < 64; i++)
        if (strcmp(c.ids[i - 1], c.ids[i]) >= 0)
            sorted = 0;
    CHECK_MSG(sorted, "each is not in strcmp order");

    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_vector(l, "melstats", collect_fn, &c) == 0);
    int want = 0;
    for (size_t i = 0; i < nid; i++)
        if ((i % 3) && i != 4)
            want++;
    want++; /* "a/song.mp3" */
    CHECK_MSG(c.n == want && c.with_vec == want, "each_vector gave %d, want %d", c.n, want);
    for (int i = 1; i < c.n && i < 64; i++)
        CHECK(strcmp(c.ids[i - 1], c.ids[i]) < 0);
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_vector(l, NULL, collect_fn, &c) == 0);
    CHECK(c.n == (int)nid - 1 + 1);

    int stops = 0;
    CHECK(sl_ledger_each(l, stop_fn, &stops) == 42 && stops == 2);

    /* Values survive exactly. */
    sl_ledger_close(l);
    l = NULL;
    CHECK(sl_ledger_open(&l, path) == 0);
    if (!l)
        return;
    CHECK(sl_ledger_is_done(l, r.id, r.path, r.size, r.mtime_ns, r.config_hash) == 1);
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each(l, collect_fn, &c) == 0 && c.n == (int)nid + 1);
    sl_ledger_close(l);

    /* The file really is WAL, FULL-synced schema 1 with the columns we promised. */
    sqlite3 *db;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && !strcmp((const char *)sqlite3_column_text(st, 0), "wal"));
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 3);
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT status, error, outputs, timings, duration, vector, dim, vector_model, "
                             "updated_at, mtime_ns FROM tracks WHERE id = 'a/song.mp3'",
                             -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK(!strcmp((const char *)sqlite3_column_text(st, 0), "done"));
    CHECK(sqlite3_column_type(st, 1) == SQLITE_NULL);
    CHECK(!strcmp((const char *)sqlite3_column_text(st, 2), r.outputs_json));
    CHECK(!strcmp((const char *)sqlite3_column_text(st, 3), r.timings_json));
    CHECK(sqlite3_column_double(st, 4) == 12.5);
    const unsigned char *blob = sqlite3_column_blob(st, 5);
    CHECK(sqlite3_column_bytes(st, 5) == 64 && blob[4] == 0 && blob[7] == 0x40); /* 3 + 1/64 = 0x40410000 LE */
    CHECK(sqlite3_column_int(st, 6) == 16);
    CHECK(!strcmp((const char *)sqlite3_column_text(st, 7), "melstats"));
    const char *ts = (const char *)sqlite3_column_text(st, 8);
    CHECK(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
    CHECK(sqlite3_column_int64(st, 9) == r.mtime_ns);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static int check_vec_fn(void *arg, const sl_ledger_row *r)
{
    int *bad = arg;
    float w[16];
    vec_of(w, 16, 3);
    if (!strcmp(r->id, "a/song.mp3") && (r->dim != 16 || memcmp(w, r->vector, sizeof w) != 0))
        ++*bad;
    return 0;
}

typedef struct {
    sl_ledger *l;
    int t;
    int errors;
} thr_arg;

static void *put_thread(void *p)
{
    thr_arg *a = p;
    for (int i = 0; i < 150; i++) {
        char id[32], path[64];
        float v[8];
        snprintf(id, sizeof id, "t%d/%04d", a->t, i);
        snprintf(path, sizeof path, "/in/%s.flac", id);
        vec_of(v, 8, a->t * 1000 + i);
        sl_ledger_row r = done_row(id, path, v, 8, "conc");
        if (sl_ledger_put(a->l, &r) != 0)
            a->errors++;
        if (sl_ledger_is_done(a->l, id, path, r.size, r.mtime_ns, r.config_hash) != 1)
            a->errors++;
    }
    return NULL;
}

static void test_threads_and_crash(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/conc.db", tmp);
    sl_ledger *l = NULL;
    CHECK(sl_ledger_open(&l, path) == 0);
    if (!l)
        return;
    pthread_t th[4];
    thr_arg a[4];
    for (int t = 0; t < 4; t++) {
        a[t] = (thr_arg){l, t, 0};
        pthread_create(&th[t], NULL, put_thread, &a[t]);
    }
    int errors = 0;
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
        errors += a[t].errors;
    }
    CHECK_MSG(errors == 0, "%d errors in concurrent puts: %s", errors, sl_lasterr());
    collect c = {0};
    CHECK(sl_ledger_each_vector(l, "conc", collect_fn, &c) == 0 && c.n == 600 && c.with_vec == 600);
    sl_ledger_close(l);

    /* A row put by a process killed right after is there for the next one. */
    pid_t pid = fork();
    if (pid == 0) {
        sl_ledger *cl = NULL;
        if (sl_ledger_open(&cl, path) != 0)
            _exit(3);
        float v[8];
        vec_of(v, 8, 9);
        sl_ledger_row r = done_row("killed/after", "/in/k.wav", v, 8, "conc");
        if (sl_ledger_put(cl, &r) != 0)
            _exit(4);
        raise(SIGKILL);
        _exit(5);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %d", status);
    CHECK(sl_ledger_open(&l, path) == 0);
    if (!l)
        return;
    CHECK(sl_ledger_is_done(l, "killed/after", "/in/k.wav", 1000, 1700000000123456789LL, "0123456789abcdef") == 1);
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_vector(l, "conc", collect_fn, &c) == 0 && c.n == 601);
    sl_ledger_close(l);
}

static void test_corrupt(void)
{
    char path[600];
    sl_ledger *l = (sl_ledger *)1;
    snprintf(path, sizeof path, "%s/corrupt.db", tmp);
    char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)("not a database, just text\n"[i % 26]);
    sl_test_spew(path, junk, sizeof junk);
    int rc = sl_ledger_open(&l, path);
    CHECK_MSG(rc == SL_EDB && l == NULL, "rc %d", rc);
    CHECK_MSG(strstr(sl_lasterr(), path) && strstr(sl_lasterr(), "ledger"), "%s", sl_lasterr());

    /* A real SQLite database that is someone else's. */
    snprintf(path, sizeof path, "%s/foreign.db", tmp);
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_exec(db, "CREATE TABLE people (name TEXT)", NULL, NULL, NULL);
    sqlite3_close(db);
    CHECK(sl_ledger_open(&l, path) == SL_EDB && l == NULL);
    CHECK(strstr(sl_lasterr(), "not a stemline ledger") != NULL);

    /* A newer schema is refused rather than misread. */
    snprintf(path, sizeof path, "%s/newer.db", tmp);
    sqlite3_open(path, &db);
    sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL);
    sqlite3_close(db);
    CHECK(sl_ledger_open(&l, path) == SL_EDB && strstr(sl_lasterr(), "newer"));

    /* A folder where the file should be, and a file where a folder should be. */
    snprintf(path, sizeof path, "%s/out", tmp);
    CHECK(sl_ledger_open(&l, path) == SL_EDB && l == NULL);
    snprintf(path, sizeof path, "%s/corrupt.db/ledger.db", tmp);
    CHECK(sl_ledger_open(&l, path) == SL_EDB && l == NULL);
}

static int tags_fn(void *arg, const sl_ledger_row *r)
{
    char *out = arg;
    if (!strcmp(r->id, "new.mp3"))
        snprintf(out, 256, "%s", r->tags_json ? r->tags_json : "(null)");
    else if (r->tags_json)
        snprintf(out, 256, "old row has tags");
    return 0;
}

/* A ledger written by schema 1 (no tags column) is migrated in place. */
static void test_migration(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/v1.db", tmp);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "CREATE TABLE tracks (id TEXT PRIMARY KEY COLLATE BINARY, path TEXT NOT NULL, size INTEGER NOT "
                       "NULL, mtime_ns INTEGER NOT NULL, config_hash TEXT NOT NULL, status TEXT NOT NULL, error "
                       "TEXT, outputs TEXT, timings TEXT, duration REAL, vector BLOB, dim INTEGER, vector_model "
                       "TEXT, updated_at TEXT NOT NULL);"
                       "INSERT INTO tracks VALUES ('old.mp3', 'in/old.mp3', 1, 2, 'h', 'done', NULL, '[]', '{}', "
                       "1.5, NULL, NULL, NULL, 'x');"
                       "PRAGMA user_version = 1;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    sl_ledger *l = NULL;
    CHECK(sl_ledger_open(&l, path) == 0);
    if (!l)
        return;
    CHECK(sl_ledger_is_done(l, "old.mp3", "in/old.mp3", 1, 2, "h") == 1);
    sl_ledger_row r = {.id = "new.mp3", .path = "in/new.mp3", .size = 3, .mtime_ns = 4, .config_hash = "h",
                       .status = SL_TRACK_DONE, .tags_json = "[{\"index\": 1}]"};
    CHECK(sl_ledger_put(l, &r) == 0);
    char got[256] = "";
    CHECK(sl_ledger_each(l, tags_fn, got) == 0);
    CHECK(!strcmp(got, "[{\"index\": 1}]"));
    sl_ledger_close(l);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 3);
    sqlite3_finalize(st);
    /* the v3 table exists after the migration, and the migrated ledger takes stem vectors */
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM vectors", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

typedef struct {
    int n;
    char ids[16][32];
    char src[16][16];
    int win[16];
    double t0[16], t1[16];
    float v0[16];
    char tags[16][64];
} vcollect;

static int vcollect_fn(void *arg, const sl_ledger_row *r)
{
    vcollect *c = arg;
    if (c->n >= 16)
        return 1;
    snprintf(c->ids[c->n], 32, "%s", r->id);
    snprintf(c->src[c->n], 16, "%s", r->source ? r->source : "(null)");
    c->win[c->n] = r->window;
    c->t0[c->n] = r->start;
    c->t1[c->n] = r->end;
    c->v0[c->n] = r->vector && r->dim > 0 ? r->vector[0] : -999.0f;
    snprintf(c->tags[c->n], 64, "%s", r->tags_json ? r->tags_json : "(null)");
    c->n++;
    return 0;
}

/* Schema 3: stem vectors and timelines stored with their track in one
 * transaction, replaced with it, dropped when it fails, read back by source. */
static void test_source_vectors(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/v3.db", tmp);
    sl_ledger *l = NULL;
    CHECK(sl_ledger_open(&l, path) == 0);
    if (!l)
        return;
    float mix[2] = {1, 0}, drums[2] = {2, 0}, w0[2] = {3, 0}, w1[2] = {4, 0}, dw0[2] = {5, 0};
    sl_ledger_vec v[4] = {
        {.source = "drums", .window = -1, .start = 0, .end = 12.5, .vector = drums, .tags_json = "[\"d\"]"},
        {.source = "mix", .window = 1, .start = 10, .end = 12.5, .vector = w1},
        {.source = "mix", .window = 0, .start = 0, .end = 10, .vector = w0},
        {.source = "drums", .window = 0, .start = 0, .end = 10, .vector = dw0},
    };
    sl_ledger_row r = {.id = "b.flac", .path = "in/b.flac", .size = 1, .mtime_ns = 2, .config_hash = "h",
                       .status = SL_TRACK_DONE, .duration = 12.5, .vector = mix, .dim = 2,
                       .vector_model = "m", .tags_json = "[\"x\"]", .vecs = v, .n_vecs = 4};
    CHECK(sl_ledger_put(l, &r) == 0);
    sl_ledger_row a = r;
    a.id = "a.flac";
    a.path = "in/a.flac";
    a.n_vecs = 1; /* drums track vector only */
    CHECK(sl_ledger_put(l, &a) == 0);

    vcollect c;
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_source_vector(l, "m", "mix", 0, vcollect_fn, &c) == 0);
    CHECK(c.n == 2 && !strcmp(c.ids[0], "a.flac") && !strcmp(c.src[0], "mix") && c.win[0] == -1 &&
          c.v0[0] == 1.0f && c.t1[1] == 12.5 && !strcmp(c.tags[0], "[\"x\"]"));
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_source_vector(l, "m", "drums", 0, vcollect_fn, &c) == 0);
    CHECK(c.n == 2 && !strcmp(c.ids[0], "a.flac") && !strcmp(c.ids[1], "b.flac") && c.v0[1] == 2.0f &&
          !strcmp(c.src[1], "drums") && c.win[1] == -1 && !strcmp(c.tags[1], "[\"d\"]"));
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_source_vector(l, "m", "mix", 1, vcollect_fn, &c) == 0);
    /* windows in (id, window) order, whatever order they were given in */
    CHECK(c.n == 2 && c.win[0] == 0 && c.win[1] == 1 && c.v0[0] == 3.0f && c.v0[1] == 4.0f && c.t0[1] == 10 &&
          c.t1[1] == 12.5);
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_source_vector(l, "m", "drums", 1, vcollect_fn, &c) == 0);
    CHECK(c.n == 1 && c.v0[0] == 5.0f);
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_source_vector(l, "other-model", "drums", 0, vcollect_fn, &c) == 0 && c.n == 0);

    /* redone with fewer vectors: the old ones go */
    r.n_vecs = 1;
    CHECK(sl_ledger_put(l, &r) == 0);
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_source_vector(l, "m", "mix", 1, vcollect_fn, &c) == 0 && c.n == 0);
    /* failed: no vectors of any source */
    sl_ledger_row f = {.id = "b.flac", .path = "in/b.flac", .size = 1, .mtime_ns = 2, .config_hash = "h",
                       .status = SL_TRACK_FAILED, .error = "boom"};
    CHECK(sl_ledger_put(l, &f) == 0);
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_source_vector(l, "m", "drums", 0, vcollect_fn, &c) == 0);
    CHECK(c.n == 1 && !strcmp(c.ids[0], "a.flac"));

    /* refused: a second mix track vector, a vector without data */
    sl_ledger_vec bad = {.source = "mix", .window = -1, .vector = mix};
    sl_ledger_row b = a;
    b.vecs = &bad;
    b.n_vecs = 1;
    CHECK(sl_ledger_put(l, &b) == SL_EINVAL);
    bad.source = "drums";
    bad.vector = NULL;
    CHECK(sl_ledger_put(l, &b) == SL_EINVAL);
    /* the refused puts changed nothing */
    memset(&c, 0, sizeof c);
    CHECK(sl_ledger_each_source_vector(l, "m", "drums", 0, vcollect_fn, &c) == 0 && c.n == 1);
    sl_ledger_close(l);
}

/* The job record and the recorded outputs survive in a ledger migrated from an
 * older version (no files column, no job table), which keeps its rows. */
static void test_job_record(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/v3.db", tmp);
    sqlite3 *db;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "CREATE TABLE tracks (id TEXT PRIMARY KEY COLLATE BINARY, path TEXT NOT NULL, size INTEGER NOT "
                       "NULL, mtime_ns INTEGER NOT NULL, config_hash TEXT NOT NULL, status TEXT NOT NULL, error "
                       "TEXT, outputs TEXT, timings TEXT, duration REAL, vector BLOB, dim INTEGER, vector_model "
                       "TEXT, updated_at TEXT NOT NULL, tags TEXT);"
                       "CREATE TABLE vectors (id TEXT NOT NULL, source TEXT NOT NULL, win INTEGER NOT NULL, t_start "
                       "REAL NOT NULL, t_end REAL NOT NULL, vector BLOB NOT NULL, dim INTEGER NOT NULL, tags TEXT, "
                       "PRIMARY KEY (id, source, win)) WITHOUT ROWID;"
                       "INSERT INTO tracks VALUES ('a', 'in/a', 1, 2, 'h1', 'done', NULL, '[\"s/a.wav\"]', '{}', "
                       "1.5, NULL, NULL, NULL, 'x', NULL);"
                       "INSERT INTO tracks VALUES ('b', 'in/b', 1, 2, 'h2', 'done', NULL, '[]', '{}', "
                       "1.5, NULL, NULL, NULL, 'x', NULL);"
                       "INSERT INTO tracks VALUES ('c', 'in/c', 1, 2, 'h2', 'failed', 'bad', '[]', '{}', "
                       "1.5, NULL, NULL, NULL, 'x', NULL);"
                       "PRAGMA user_version = 3;",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    sl_ledger *l = NULL;
    CHECK_MSG(sl_ledger_open(&l, path) == 0, "%s", sl_lasterr());
    if (!l)
        return;
    CHECK(sl_ledger_is_done(l, "a", "in/a", 1, 2, "h1") == 1); /* resumes */
    char *h = (char *)"x", *js = (char *)"x";
    CHECK(sl_ledger_get_job(l, &h, &js) == 0 && !h && !js);
    char other[17];
    CHECK(sl_ledger_count_other(l, "h1", other) == 1 && !strcmp(other, "h2"));
    CHECK(sl_ledger_count_other(l, "h3", other) == 2);
    CHECK(sl_ledger_set_job(l, "h1", "{\"k\": \"v\"}") == 0);
    CHECK(sl_ledger_set_job(l, "h2", "{\"k\": \"w\"}") == 0); /* replaces */
    CHECK(sl_ledger_get_job(l, &h, &js) == 0 && h && js && !strcmp(h, "h2") && !strcmp(js, "{\"k\": \"w\"}"));
    free(h);
    free(js);
    char *outs = NULL, *files = NULL;
    CHECK(sl_ledger_get_outputs(l, "a", &outs, &files) == 0 && outs && !strcmp(outs, "[\"s/a.wav\"]") && !files);
    free(outs);
    CHECK(sl_ledger_get_outputs(l, "nope", &outs, &files) == 0 && !outs && !files);
    sl_ledger_row r = {.id = "d", .path = "in/d", .size = 1, .mtime_ns = 2, .config_hash = "h2",
                       .status = SL_TRACK_DONE, .outputs_json = "[\"s/d.wav\"]",
                       .files_json = "[{\"path\": \"s/d.wav\", \"size\": 3, \"hash\": \"murmur3:00\"}]"};
    CHECK(sl_ledger_put(l, &r) == 0);
    CHECK(sl_ledger_get_outputs(l, "d", &outs, &files) == 0 && files && strstr(files, "\"size\": 3"));
    free(outs);
    free(files);
    /* --reset: rows of other settings go, with their vectors */
    CHECK(sl_ledger_delete_other(l, "h2") == 0);
    CHECK(sl_ledger_count_other(l, "h2", other) == 0);
    CHECK(sl_ledger_is_done(l, "a", "in/a", 1, 2, "h1") == 0);
    CHECK(sl_ledger_is_done(l, "b", "in/b", 1, 2, "h2") == 1);
    sl_ledger_close(l);
    /* reopening (the migration is idempotent) keeps the record */
    CHECK(sl_ledger_open(&l, path) == 0);
    if (l) {
        CHECK(sl_ledger_get_job(l, &h, &js) == 0 && h && !strcmp(h, "h2"));
        free(h);
        free(js);
        sl_ledger_close(l);
    }
}

/* One holder at a time, in this process or another; death releases it. */
static void test_runlock(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/lock/ledger.sqlite", tmp);
    CHECK(sl_mkdirs_for(path) == 0);
    sl_runlock *a = NULL, *b = NULL;
    CHECK_MSG(sl_runlock_acquire(&a, path) == 0, "%s", sl_lasterr());
    CHECK(sl_runlock_acquire(&b, path) == -EWOULDBLOCK && !b);
    char want[64];
    snprintf(want, sizeof want, "PID %ld on host ", (long)getpid());
    CHECK_MSG(strstr(sl_lasterr(), want) && strstr(sl_lasterr(), "/lock is in use"), "%s", sl_lasterr());
    sl_runlock_release(a);
    CHECK(sl_runlock_acquire(&b, path) == 0);
    sl_runlock_release(b);
    /* a child takes it and dies by SIGKILL: the lock does not outlive it */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        sl_runlock *c = NULL;
        char x = sl_runlock_acquire(&c, path) == 0 ? 'y' : 'n';
        if (write(p[1], &x, 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    char x = 0;
    CHECK(read(p[0], &x, 1) == 1 && x == 'y');
    CHECK(sl_runlock_acquire(&a, path) == -EWOULDBLOCK);
    snprintf(want, sizeof want, "PID %ld on host ", (long)pid);
    CHECK_MSG(strstr(sl_lasterr(), want) != NULL, "%s", sl_lasterr());
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(p[0]);
    close(p[1]);
    CHECK(sl_runlock_acquire(&a, path) == 0);
    sl_runlock_release(a);
    /* another ledger in the same folder (another shard) has its own lock */
    snprintf(path, sizeof path, "%s/lock/s0000of0002-ledger.sqlite", tmp);
    char path2[600];
    snprintf(path2, sizeof path2, "%s/lock/s0001of0002-ledger.sqlite", tmp);
    CHECK(sl_runlock_acquire(&a, path) == 0 && sl_runlock_acquire(&b, path2) == 0);
    sl_runlock_release(a);
    sl_runlock_release(b);
}

/* The outputs record: sizes and hashes as written; missing, resized and
 * rewritten files are found; stale outputs removed, never outside the folder. */
static void test_outputs(void)
{
    char dir[600], p[700];
    snprintf(dir, sizeof dir, "%s/outs", tmp);
    snprintf(p, sizeof p, "%s/stems/t/a.flac", dir);
    CHECK(sl_mkdirs_for(p) == 0);
    sl_test_spew(p, "0123456789", 10);
    snprintf(p, sizeof p, "%s/stems/t/b.flac", dir);
    sl_test_spew(p, "abc", 3);
    const char *outs = "[\"stems/t/a.flac\", \"stems/t/b.flac\"]";
    int rc = 0;
    char *files = sl_outputs_files_json(dir, outs, &rc);
    CHECK_MSG(files && rc == 0, "%s", sl_lasterr());
    if (!files)
        return;
    CHECK(strstr(files, "\"path\": \"stems/t/a.flac\", \"size\": 10, \"hash\": \"murmur3:") != NULL);
    char why[800];
    CHECK(sl_outputs_verify(dir, outs, files, 1, why, sizeof why) == 0);
    CHECK(sl_outputs_verify(dir, outs, NULL, 1, why, sizeof why) == 0); /* old rows: existence */
    /* same size, other content: only --verify (content) sees it */
    sl_test_spew(p, "abd", 3);
    CHECK(sl_outputs_verify(dir, outs, files, 0, why, sizeof why) == 0);
    CHECK(sl_outputs_verify(dir, outs, files, 1, why, sizeof why) == 1);
    CHECK_MSG(strstr(why, "stems/t/b.flac: content changed") != NULL, "%s", why);
    sl_test_spew(p, "ab", 2);
    CHECK(sl_outputs_verify(dir, outs, files, 0, why, sizeof why) == 1);
    CHECK_MSG(strstr(why, "stems/t/b.flac: 2 bytes, 3 recorded") != NULL, "%s", why);
    unlink(p);
    CHECK(sl_outputs_verify(dir, outs, NULL, 0, why, sizeof why) == 1);
    CHECK_MSG(strstr(why, "stems/t/b.flac: missing") != NULL, "%s", why);
    CHECK(sl_outputs_each_missing(dir, outs, files, NULL, NULL) == 1);
    CHECK(sl_outputs_verify(dir, "[\"../x\"]", NULL, 0, why, sizeof why) == 1);
    CHECK(sl_outputs_verify(dir, "{", NULL, 0, why, sizeof why) == SL_EFORMAT);
    CHECK(sl_outputs_files_json(dir, "[\"/etc/passwd\"]", &rc) == NULL && rc == SL_EINVAL);
    /* stale: a.flac replaced by a.wav; b.flac is gone already; ../ is never touched */
    snprintf(p, sizeof p, "%s/stems/t/a.wav", dir);
    sl_test_spew(p, "w", 1);
    snprintf(p, sizeof p, "%s/keep", tmp);
    sl_test_spew(p, "k", 1);
    CHECK(sl_outputs_remove(dir, "[\"stems/t/a.flac\", \"stems/t/b.flac\", \"../keep\", \"stems/t/a.wav\"]",
                            "[\"stems/t/a.wav\"]") == 1);
    CHECK(sl_test_exists(p));
    snprintf(p, sizeof p, "%s/stems/t/a.flac", dir);
    CHECK(!sl_test_exists(p));
    snprintf(p, sizeof p, "%s/stems/t/a.wav", dir);
    CHECK(sl_test_exists(p));
    /* everything (reset): the emptied folders go too, not the output folder */
    CHECK(sl_outputs_remove(dir, files, NULL) == 0); /* a.flac, b.flac already gone */
    CHECK(sl_outputs_remove(dir, "[\"stems/t/a.wav\"]", NULL) == 1);
    snprintf(p, sizeof p, "%s/stems", dir);
    CHECK(!sl_test_exists(p) && sl_test_exists(dir));
    free(files);
    /* the vectors of one shard prefix, every model and source; not the others' */
    const char *mine[] = {"embeddings/m1/mix/shard-00000.npy", "embeddings/m1/mix/shard-00000.jsonl",
                          "embeddings/m1/mix/index.json", "embeddings/m2/drums/timeline/shard-00012.npy",
                          "tags/m1/tags.jsonl"};
    const char *theirs[] = {"embeddings/m1/mix/s0000of0002-shard-00000.npy", "embeddings/m1/mix/notes.txt",
                            "tags/m1/s0001of0002-tags.jsonl"};
    for (int i = 0; i < 5 + 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, i < 5 ? mine[i] : theirs[i - 5]);
        CHECK(sl_mkdirs_for(p) == 0);
        sl_test_spew(p, "x", 1);
    }
    CHECK(sl_outputs_remove_shards(dir, "") == 5);
    for (int i = 0; i < 5 + 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, i < 5 ? mine[i] : theirs[i - 5]);
        CHECK_MSG(sl_test_exists(p) == (i >= 5), "%s", p);
    }
    snprintf(p, sizeof p, "%s/embeddings/m2", dir);
    CHECK(!sl_test_exists(p)); /* emptied */
    CHECK(sl_outputs_remove_shards(dir, "s0000of0002-") == 1);
}

/* The decode column: added to a ledger made before it (schema 3 without it),
 * once however often the ledger is opened, and written by put. */
static void test_decode_column(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/v1.db", tmp); /* migrated to 3 by test_migration */
    for (int pass = 0; pass < 2; pass++) {
        sl_ledger *l = NULL;
        CHECK_MSG(sl_ledger_open(&l, path) == 0, "%s", sl_lasterr());
        if (!l)
            return;
        sl_ledger_row r = {.id = "cut.flac", .path = "in/cut.flac", .size = 3, .mtime_ns = 4, .config_hash = "h",
                           .status = SL_TRACK_FAILED, .error = "decode: decoded 1.2 s of 74.0 s (truncated file?)",
                           .decode_json = pass ? "{\"decoded_seconds\": 1.2}" : NULL};
        CHECK(sl_ledger_put(l, &r) == 0);
        sl_ledger_close(l);
    }
    sqlite3 *db;
    sqlite3_stmt *st;
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM pragma_table_info('tracks') WHERE name = 'decode'", -1, &st,
                             NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1);
    sqlite3_finalize(st);
    CHECK(sqlite3_prepare_v2(db, "SELECT decode FROM tracks WHERE id = 'cut.flac'", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) &&
          !strcmp((const char *)sqlite3_column_text(st, 0), "{\"decoded_seconds\": 1.2}"));
    sqlite3_finalize(st);
    sqlite3_close(db);
}

int main(void)
{
    tmp = sl_test_tmpdir();
    test_job_record();
    test_runlock();
    test_outputs();
    test_migration();
    test_decode_column();
    test_source_vectors();
    test_basic();
    {
        char path[600];
        snprintf(path, sizeof path, "%s/out/ledger.db", tmp);
        sl_ledger *l = NULL;
        int bad = 0;
        CHECK(sl_ledger_open(&l, path) == 0);
        if (l) {
            CHECK(sl_ledger_each_vector(l, "melstats", check_vec_fn, &bad) == 0 && bad == 0);
            sl_ledger_close(l);
        }
    }
    test_threads_and_crash();
    test_corrupt();
    sl_test_rmdir(tmp);
    return sl_test_finish("ledger");
}
