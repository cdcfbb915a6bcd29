#include "outputs.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"
#include "../io/filehash.h"
#include "../io/npy.h"

typedef struct {
    const char *path;
    int64_t size; /* -1: not recorded */
    const char *hash;
} entry;

/* Reads a files record (objects) or an outputs record (strings) into e (which
 * points into doc). Returns the count, or SL_EFORMAT / SL_ENOMEM. */
static long parse_record(const char *json, sl_json *doc, entry **e)
{
    *e = NULL;
    memset(doc, 0, sizeof *doc);
    if (!json || !*json)
        return 0;
    int rc = sl_json_parse(json, strlen(json), doc);
    if (rc)
        return rc;
    if (doc->type != SL_JSON_ARRAY)
        return sl_seterr(SL_EFORMAT, "recorded outputs: not a JSON array");
    if (!doc->n)
        return 0;
    if (!(*e = calloc(doc->n, sizeof **e)))
        return sl_seterr(SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < doc->n; i++) {
        const sl_json *it = &doc->items[i];
        entry *x = &(*e)[i];
        x->size = -1;
        if (it->type == SL_JSON_STRING) {
            x->path = it->s;
        } else if (it->type == SL_JSON_OBJECT) {
            x->path = sl_json_get_str(it, "path", NULL);
            double sz = sl_json_get_num(it, "size", -1);
            x->size = sz >= 0 && sz < 9e15 ? (int64_t)sz : -1;
            x->hash = sl_json_get_str(it, "hash", NULL);
        }
        if (!x->path || !*x->path) {
            free(*e);
            *e = NULL;
            return sl_seterr(SL_EFORMAT, "recorded outputs: item %zu has no path", i);
        }
    }
    return (long)doc->n;
}

/* The record to trust: files when present and readable, else outputs. */
static long parse_best(const char *outputs_json, const char *files_json, sl_json *doc, entry **e)
{
    if (files_json && *files_json) {
        long n = parse_record(files_json, doc, e);
        if (n >= 0)
            return n;
        sl_json_free(doc);
    }
    return parse_record(outputs_json, doc, e);
}

/* Relative, without "." or ".." components: stays inside out_dir. */
static int safe_rel(const char *p)
{
    if (!*p || *p == '/')
        return 0;
    for (const char *s = p; *s;) {
        size_t len = strcspn(s, "/");
        if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
            return 0;
        s += len;
        if (*s == '/')
            s++;
    }
    return 1;
}

static int full_path(const char *out_dir, const char *rel, char *buf, size_t size)
{
    return snprintf(buf, size, "%s/%s", out_dir, rel) < (int)size;
}

/* Calls fn for each problem of the entries; content adds the hash check.
 * Returns the number of problems. */
static int check_entries(const char *out_dir, const entry *e, long n, int content,
                         void (*fn)(void *, const char *, const char *), void *arg)
{
    int bad = 0;
    char full[PATH_MAX + 256], why[600];
    for (long i = 0; i < n; i++) {
        why[0] = 0;
        struct stat st;
        if (!safe_rel(e[i].path) || !full_path(out_dir, e[i].path, full, sizeof full)) {
            snprintf(why, sizeof why, "the recorded path is not inside the output folder");
        } else if (stat(full, &st) != 0) {
            snprintf(why, sizeof why, "%s", errno == ENOENT ? "missing" : strerror(errno));
        } else if (!S_ISREG(st.st_mode)) {
            snprintf(why, sizeof why, "not a regular file");
        } else if (e[i].size >= 0 && (int64_t)st.st_size != e[i].size) {
            snprintf(why, sizeof why, "%" PRId64 " bytes, %" PRId64 " recorded", (int64_t)st.st_size, e[i].size);
        } else if (content && e[i].hash) {
            char hex[SL_FILE_HASH_HEX], m[512];
            int64_t sz;
            int rc = sl_file_hash(full, hex, &sz);
            size_t pl = strlen(SL_FILE_HASH_NAME);
            if (rc)
                snprintf(why, sizeof why, "cannot be read: %s", sl_errmsg(rc, m, sizeof m));
            else if (strncmp(e[i].hash, SL_FILE_HASH_NAME ":", pl + 1) || strcmp(e[i].hash + pl + 1, hex))
                snprintf(why, sizeof why, "content changed (%s:%s, %s recorded)", SL_FILE_HASH_NAME, hex, e[i].hash);
        }
        if (why[0]) {
            bad++;
            if (fn)
                fn(arg, e[i].path, why);
        }
    }
    return bad;
}

char *sl_outputs_files_json(const char *out_dir, const char *outputs_json, int *rc)
{
    sl_json doc;
    entry *e;
    *rc = 0;
    long n = parse_record(outputs_json, &doc, &e);
    if (n < 0) {
        *rc = (int)n;
        sl_json_free(&doc);
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) {
        *rc = sl_seterr(SL_ENOMEM, "out of memory");
    } else {
        fputc('[', f);
        for (long i = 0; i < n && !*rc; i++) {
            char full[PATH_MAX + 256], hex[SL_FILE_HASH_HEX];
            int64_t size;
            if (!safe_rel(e[i].path) || !full_path(out_dir, e[i].path, full, sizeof full)) {
                *rc = sl_seterr(SL_EINVAL, "output %s: not inside the output folder", e[i].path);
                break;
            }
            if ((*rc = sl_file_hash(full, hex, &size)) != 0)
                break;
            fputs(i ? ", {\"path\": " : "{\"path\": ", f);
            sl_json_str(f, e[i].path);
            fprintf(f, ", \"size\": %" PRId64 ", \"hash\": \"%s:%s\"}", size, SL_FILE_HASH_NAME, hex);
        }
        fputc(']', f);
        if (fclose(f) != 0 && !*rc)
            *rc = sl_seterr(SL_ENOMEM, "out of memory");
    }
    free(e);
    sl_json_free(&doc);
    if (*rc) {
        free(buf);
        return NULL;
    }
    return buf;
}

typedef struct {
    char *why;
    size_t size;
} first_problem;

static void keep_first(void *arg, const char *path, const char *why)
{
    first_problem *p = arg;
    if (!p->why[0])
        snprintf(p->why, p->size, "%s: %s", path, why);
}

int sl_outputs_verify(const char *out_dir, const char *outputs_json, const char *files_json, int content,
                      char *why, size_t why_size)
{
    sl_json doc;
    entry *e;
    why[0] = 0;
    long n = parse_best(outputs_json, files_json, &doc, &e);
    if (n < 0) {
        snprintf(why, why_size, "the recorded outputs cannot be read: %s", sl_lasterr());
        sl_json_free(&doc);
        return SL_EFORMAT;
    }
    first_problem p = {why, why_size};
    int bad = check_entries(out_dir, e, n, content, keep_first, &p);
    free(e);
    sl_json_free(&doc);
    return bad ? 1 : 0;
}

int sl_outputs_each_missing(const char *out_dir, const char *outputs_json, const char *files_json,
                            void (*fn)(void *arg, const char *path, const char *why), void *arg)
{
    sl_json doc;
    entry *e;
    long n = parse_best(outputs_json, files_json, &doc, &e);
    int bad = n < 0 ? SL_EFORMAT : check_entries(out_dir, e, n, 0, fn, arg);
    free(e);
    sl_json_free(&doc);
    return bad;
}

/* Removes the empty folders above rel, up to (not including) out_dir. */
static void remove_empty_parents(const char *out_dir, const char *rel)
{
    char buf[PATH_MAX + 256];
    if (!full_path(out_dir, rel, buf, sizeof buf))
        return;
    size_t base = strlen(out_dir);
    for (;;) {
        char *slash = strrchr(buf, '/');
        if (!slash || (size_t)(slash - buf) <= base)
            return;
        *slash = 0;
        if (rmdir(buf) != 0)
            return; /* not empty (or not ours to remove): stop here */
    }
}

int sl_outputs_remove(const char *out_dir, const char *old_json, const char *new_json)
{
    sl_json od, nd;
    entry *oe, *ne = NULL;
    long on = parse_record(old_json, &od, &oe);
    long nn = on >= 0 ? parse_record(new_json, &nd, &ne) : 0;
    if (on < 0 || nn < 0) {
        int rc = on < 0 ? (int)on : (int)nn;
        free(oe);
        sl_json_free(&od);
        if (on >= 0)
            sl_json_free(&nd);
        return rc;
    }
    int removed = 0, err = 0;
    for (long i = 0; i < on; i++) {
        int keep = !safe_rel(oe[i].path);
        for (long j = 0; j < nn && !keep; j++)
            keep = !strcmp(oe[i].path, ne[j].path);
        char full[PATH_MAX + 256];
        if (keep || !full_path(out_dir, oe[i].path, full, sizeof full))
            continue;
        if (unlink(full) == 0) {
            removed++;
            remove_empty_parents(out_dir, oe[i].path);
        } else if (errno != ENOENT && !err) {
            int e = errno;
            err = sl_seterr(-e, "cannot remove %s: %s", full, strerror(e));
        }
    }
    free(oe);
    free(ne);
    sl_json_free(&od);
    sl_json_free(&nd);
    return err ? err : removed;
}

/* Ours: <prefix>shard-<digits>.npy|.jsonl, <prefix>index.json, <prefix>tags.jsonl. */
static int is_shard_file(const char *name, const char *prefix)
{
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl))
        return 0;
    const char *r = name + pl;
    if (!strcmp(r, "index.json") || !strcmp(r, "tags.jsonl"))
        return 1;
    if (strncmp(r, "shard-", 6) || r[6] < '0' || r[6] > '9')
        return 0;
    r += 6;
    while (*r >= '0' && *r <= '9')
        r++;
    return !strcmp(r, ".npy") || !strcmp(r, ".jsonl");
}

static int remove_shards_in(const char *dir, const char *prefix, int depth, int *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int removed = 0;
    struct dirent *de;
    char sub[PATH_MAX];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (snprintf(sub, sizeof sub, "%s/%s", dir, de->d_name) >= (int)sizeof sub)
            continue;
        struct stat st;
        if (lstat(sub, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth > 0) {
            removed += remove_shards_in(sub, prefix, depth - 1, err);
            rmdir(sub); /* when empty */
        } else if (S_ISREG(st.st_mode) && is_shard_file(de->d_name, prefix)) {
            if (unlink(sub) == 0)
                removed++;
            else if (errno != ENOENT && !*err)
                *err = sl_seterr(-errno, "cannot remove %s: %s", sub, strerror(errno));
        }
    }
    closedir(d);
    return removed;
}

int sl_outputs_remove_shards(const char *out_dir, const char *prefix)
{
    /* embeddings/<model>/<source>/[timeline/]files, tags/<model>/file */
    static const char *const top[2] = {"embeddings", "tags"};
    int removed = 0, err = 0;
    char dir[PATH_MAX];
    for (int i = 0; i < 2; i++) {
        if (snprintf(dir, sizeof dir, "%s/%s", out_dir, top[i]) >= (int)sizeof dir)
            continue;
        removed += remove_shards_in(dir, prefix, 3, &err);
        rmdir(dir);
    }
    return err ? err : removed;
}
