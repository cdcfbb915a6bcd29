/* Partitions of the catalog present in an output folder (see partition.h). */
#include "partition.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"
#include "../io/npy.h"
#include "shardenv.h"

/* The shard count a file name's prefix names, with *rest the name after it. */
static int name_count(const char *name, const char **rest)
{
    int i, n;
    *rest = name + sl_shard_parse_prefix(name, &i, &n);
    return n;
}

static int is_vector_shard(const char *rest)
{
    if (strncmp(rest, "shard-", 6) || rest[6] < '0' || rest[6] > '9')
        return 0;
    const char *p = rest + 6;
    while (*p >= '0' && *p <= '9')
        p++;
    return !strcmp(p, ".npy") || !strcmp(p, ".jsonl");
}

enum { AT_TOP, AT_EMBEDDINGS, AT_TAGS };

static int belongs(const char *rest, int where)
{
    static const char *const top[] = {"ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm",
                                      "ledger.sqlite-journal", "ledger.sqlite.lock", "report.json",
                                      "report.html"};
    switch (where) {
    case AT_TOP:
        for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
            if (!strcmp(rest, top[i]))
                return 1;
        return 0;
    case AT_EMBEDDINGS:
        return !strcmp(rest, "index.json") || !strcmp(rest, "mean.npy") || is_vector_shard(rest);
    default:
        return !strcmp(rest, "tags.jsonl");
    }
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

#define MARKER "partition.json"

/* The count OUT/partition.json records, or 0 (no file, or not one we wrote). */
static int marker_count(const char *out_dir)
{
    size_t pl = strlen(out_dir) + sizeof MARKER + 2;
    char *path = malloc(pl);
    if (!path)
        return 0;
    snprintf(path, pl, "%s/%s", out_dir, MARKER);
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f)
        return 0;
    char buf[512];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    sl_json root;
    if (sl_json_parse(buf, n, &root))
        return 0;
    double c = sl_json_get_num(&root, "shard_count", 0);
    sl_json_free(&root);
    return c >= 1 && c <= SL_SHARD_MAX_COUNT && c == (int)c ? (int)c : 0;
}

int sl_partition_mark(const char *out_dir, int count)
{
    size_t pl = strlen(out_dir) + sizeof MARKER + 2;
    char *path = malloc(pl);
    if (!path)
        return sl_seterr(SL_ENOMEM, "out of memory");
    snprintf(path, pl, "%s/%s", out_dir, MARKER);
    char text[160];
    int n = snprintf(text, sizeof text,
                     "{\"format\": \"stemline-partition\", \"shard_count\": %d}\n", count);
    int rc = sl_write_file_atomic(path, text, (size_t)n);
    free(path);
    return rc;
}

int sl_partitions_list(const char *out_dir, sl_partition **parts, size_t *n)
{
    *parts = NULL;
    *n = 0;
    DIR *d = opendir(out_dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        int e = errno;
        return sl_seterr(-e, "%s: cannot list: %s", out_dir, strerror(e));
    }
    sl_partition *v = NULL;
    size_t nv = 0;
    int rc = 0;
    struct dirent *de;
    size_t plen = strlen(out_dir) + 300;
    char *path = malloc(plen);
    if (!path)
        rc = sl_seterr(SL_ENOMEM, "%s: out of memory", out_dir);
    while (!rc && (de = readdir(d))) {
        const char *rest;
        int count = name_count(de->d_name, &rest);
        if (!belongs(rest, AT_TOP) || strlen(de->d_name) > 250)
            continue;
        snprintf(path, plen, "%s/%s", out_dir, de->d_name);
        struct stat st;
        if (stat(path, &st) || !S_ISREG(st.st_mode))
            continue;
        size_t k = 0;
        while (k < nv && v[k].count != count)
            k++;
        if (k == nv) {
            sl_partition *nw = realloc(v, (nv + 1) * sizeof *nw);
            if (!nw) {
                rc = sl_seterr(SL_ENOMEM, "%s: out of memory", out_dir);
                break;
            }
            v = nw;
            memset(&v[nv], 0, sizeof v[nv]);
            v[nv++].count = count;
        }
        int idx, cnt;
        if (!sl_shard_parse_ledger_name(de->d_name, &idx, &cnt)) {
            v[k].n_ledgers++;
            if (!v[k].ledger[0] || strcmp(de->d_name, v[k].ledger) < 0)
                snprintf(v[k].ledger, sizeof v[k].ledger, "%s", de->d_name);
        }
        if (mtime_ns(&st) > v[k].newest_ns)
            v[k].newest_ns = mtime_ns(&st);
    }
    closedir(d);
    free(path);
    /* a report or -wal without its ledger is not a partition */
    size_t o = 0;
    for (size_t i = 0; i < nv; i++)
        if (v[i].n_ledgers)
            v[o++] = v[i];
    nv = o;
    int mark = nv ? marker_count(out_dir) : 0;
    for (size_t i = 0; i < nv; i++)
        v[i].current = v[i].count == mark;
    for (size_t i = 1; i < nv; i++) /* few: insertion sort, current, then newest first */
        for (size_t j = i; j > 0; j--) {
            sl_partition *a = &v[j - 1], *b = &v[j];
            if (a->current > b->current ||
                (a->current == b->current &&
                 (a->newest_ns > b->newest_ns || (a->newest_ns == b->newest_ns && a->count <= b->count))))
                break;
            sl_partition t = *a;
            *a = *b;
            *b = t;
        }
    if (rc || !nv) {
        free(v);
        return rc;
    }
    *parts = v;
    *n = nv;
    return 0;
}

static void describe(const sl_partition *p, char *buf, size_t size)
{
    char when[40] = "?";
    time_t t = (time_t)(p->newest_ns / 1000000000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%SZ", &tm);
    if (p->count == 1)
        snprintf(buf, size, "an unsharded run (ledger.sqlite, last written %s)", when);
    else
        snprintf(buf, size, "a run of %d shards (%d of %d ledgers such as %s, last written %s)", p->count,
                 p->n_ledgers, p->count, p->ledger, when);
}

/* "1, 3 and 16" */
static void count_list(const sl_partition *v, size_t n, char *buf, size_t size)
{
    size_t l = 0;
    buf[0] = 0;
    for (size_t i = 0; i < n && l < size; i++)
        l += (size_t)snprintf(buf + l, size - l, "%s%d", i ? (i + 1 == n ? " and " : ", ") : "", v[i].count);
}

int sl_partition_check(const char *out_dir, int count)
{
    sl_partition *v;
    size_t n;
    int rc = sl_partitions_list(out_dir, &v, &n);
    if (rc || !n || (v[0].count == count && (v[0].current || n == 1))) {
        free(v);
        return rc;
    }
    char have[256], other[96];
    if (v[0].current || n == 1) {
        describe(&v[0], have, sizeof have);
        if (v[0].count > 1)
            snprintf(other, sizeof other, "--num-shards %d (or --shard I/%d)", v[0].count, v[0].count);
        else
            snprintf(other, sizeof other, "--shard 0/1");
    } else {
        char list[128];
        count_list(v, n, list, sizeof list);
        snprintf(have, sizeof have, "several runs with different shard counts (%s) and no %s naming the current one",
                 list, MARKER);
        snprintf(other, sizeof other, "the count of the set to keep after `stemline merge --fix --keep N`");
    }
    rc = sl_seterr(SL_EUSAGE,
                   "%s holds the ledgers of %s; this run has %d shard%s: another partition of the catalog, which "
                   "would do its tracks a second time and mix two sets of vector shards in one folder. To continue "
                   "the folder's run, run with %s; or write into another output.dir; or start a new partition "
                   "on purpose with --repartition (`stemline merge --fix` then removes the older set)",
                   out_dir, have, count, count == 1 ? " (unsharded)" : "s", other);
    free(v);
    return rc;
}

typedef struct {
    char *buf;
    size_t len, cap;
} pathbuf;

/* Appends "/name" to p; returns the old length to restore, or (size_t)-1 when
 * out of memory. */
static size_t push(pathbuf *p, const char *name)
{
    size_t old = p->len, nl = strlen(name);
    if (p->len + nl + 2 > p->cap) {
        size_t nc = (p->len + nl + 2) * 2;
        char *nb = realloc(p->buf, nc);
        if (!nb)
            return (size_t)-1;
        p->buf = nb;
        p->cap = nc;
    }
    p->buf[p->len++] = '/';
    memcpy(p->buf + p->len, name, nl + 1);
    p->len += nl;
    return old;
}

static void pop(pathbuf *p, size_t old)
{
    p->len = old;
    p->buf[old] = 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

/* Lists the files of partition count in p (depth 0) or in the folders depth
 * levels below it. */
static int walk(pathbuf *p, int depth, int where, int count, int (*fn)(const char *, void *), void *arg)
{
    DIR *d = opendir(p->buf);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        int e = errno;
        return sl_seterr(-e, "%s: cannot list: %s", p->buf, strerror(e));
    }
    int rc = 0;
    struct dirent *de;
    /* names first, then the callback: fn may remove what it is given */
    char **names = NULL;
    size_t nn = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        if (!depth) {
            const char *rest;
            if (name_count(de->d_name, &rest) != count || !belongs(rest, where))
                continue;
        }
        char **nv = realloc(names, (nn + 1) * sizeof *nv);
        if (!nv || !(nv[nn] = strdup(de->d_name))) {
            if (nv)
                names = nv;
            rc = sl_seterr(SL_ENOMEM, "%s: out of memory", p->buf);
            break;
        }
        names = nv;
        nn++;
    }
    closedir(d);
    for (size_t i = 0; i < nn; i++) {
        if (!rc) {
            size_t old = push(p, names[i]);
            if (old == (size_t)-1) {
                rc = sl_seterr(SL_ENOMEM, "out of memory");
            } else {
                if (!depth)
                    rc = fn(p->buf, arg);
                else if (is_dir(p->buf))
                    rc = walk(p, depth - 1, where, count, fn, arg);
                pop(p, old);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int sl_partition_files(const char *out_dir, int count, int (*fn)(const char *path, void *arg), void *arg)
{
    pathbuf p = {0};
    p.cap = strlen(out_dir) + 256;
    p.buf = malloc(p.cap);
    if (!p.buf)
        return sl_seterr(SL_ENOMEM, "out of memory");
    p.len = (size_t)snprintf(p.buf, p.cap, "%s", out_dir);
    int rc = walk(&p, 0, AT_TOP, count, fn, arg);
    size_t old;
    if (!rc) {
        if ((old = push(&p, "embeddings")) == (size_t)-1)
            rc = sl_seterr(SL_ENOMEM, "out of memory");
        else
            rc = walk(&p, 2, AT_EMBEDDINGS, count, fn, arg), pop(&p, old);
    }
    if (!rc) {
        if ((old = push(&p, "tags")) == (size_t)-1)
            rc = sl_seterr(SL_ENOMEM, "out of memory");
        else
            rc = walk(&p, 1, AT_TAGS, count, fn, arg), pop(&p, old);
    }
    free(p.buf);
    return rc;
}

typedef struct {
    char **v;
    size_t n;
} filelist;

static int collect(const char *path, void *arg)
{
    filelist *l = arg;
    char **nv = realloc(l->v, (l->n + 1) * sizeof *nv);
    if (!nv)
        return sl_seterr(SL_ENOMEM, "out of memory");
    l->v = nv;
    if (!(l->v[l->n] = strdup(path)))
        return sl_seterr(SL_ENOMEM, "out of memory");
    l->n++;
    return 0;
}

/* Ledgers (and their -wal/-shm) after everything else. */
static int is_ledger_file(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int i, n;
    return !strncmp(base + sl_shard_parse_prefix(base, &i, &n), "ledger.sqlite", 13);
}

int sl_partition_fix(const char *out_dir, int keep_count, int dry_run, FILE *log, size_t *n_files)
{
    *n_files = 0;
    sl_partition *v;
    size_t n;
    int rc = sl_partitions_list(out_dir, &v, &n);
    if (rc)
        return rc;
    size_t keep = 0;
    if (keep_count) {
        while (keep < n && v[keep].count != keep_count)
            keep++;
        if (keep == n) {
            free(v);
            return sl_seterr(SL_EUSAGE, "%s holds no ledger of a run of %d shard%s: nothing to keep", out_dir,
                             keep_count, keep_count == 1 ? " (unsharded)" : "s");
        }
    } else if (n > 1 && !v[0].current) {
        char list[128];
        count_list(v, n, list, sizeof list);
        free(v);
        return sl_seterr(SL_EUSAGE,
                         "%s holds sets of %s shards and no %s says which is current: choose the set to keep "
                         "with --keep N",
                         out_dir, list, MARKER);
    }
    if (n > 1 && v[keep].n_ledgers < v[keep].count) {
        rc = sl_seterr(SL_EUSAGE,
                       "%s: the set to keep (%d shards) has %d of its %d ledgers: run its missing shards first "
                       "(the other set may hold the only results of their tracks), or choose the set with --keep N",
                       out_dir, v[keep].count, v[keep].n_ledgers, v[keep].count);
        free(v);
        return rc;
    }
    filelist l = {0};
    for (size_t i = 0; i < n && !rc; i++)
        if (i != keep)
            rc = sl_partition_files(out_dir, v[i].count, collect, &l);
    /* stable: everything else, then the ledgers */
    for (int pass = 0; pass < 2 && !rc; pass++)
        for (size_t i = 0; i < l.n; i++)
            if (is_ledger_file(l.v[i]) == pass)
                fprintf(log, "%s: %s\n", dry_run ? "would remove" : "remove", l.v[i]);
    fflush(log);
    for (int pass = 0; pass < 2 && !rc && !dry_run; pass++)
        for (size_t i = 0; i < l.n && !rc; i++)
            if (is_ledger_file(l.v[i]) == pass && unlink(l.v[i]) && errno != ENOENT) {
                int e = errno;
                rc = sl_seterr(-e, "%s: cannot remove: %s", l.v[i], strerror(e));
            }
    if (!rc && !dry_run && n > 1)
        rc = sl_partition_mark(out_dir, v[keep].count);
    if (!rc)
        *n_files = l.n;
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    free(v);
    return rc;
}
