/* Catalog scan: files, recursive folders and a manifest become one list of
 * tracks sorted by id, so every run (and every shard of it) sees the same
 * order. Folder symlinks are followed, except into a folder that is already
 * one of the folders being walked (a loop). */
#include "catalog.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "../common/sl_error.h"
#include "../common/sl_log.h"

typedef struct {
    sl_catalog *cat;
    size_t cap;
    const char *const *exts;
    size_t n_exts;
} scan;

/* The chain of folders from a root down to the one being read. */
typedef struct ancestor {
    dev_t dev;
    ino_t ino;
    const struct ancestor *up;
} ancestor;

static char *join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int slash = la && a[la - 1] != '/' && lb;
    char *s = malloc(la + lb + (size_t)slash + 1);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    if (slash)
        s[la] = '/';
    memcpy(s + la + (size_t)slash, b, lb + 1);
    return s;
}

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + (int64_t)st->st_mtim.tv_nsec;
}

/* Takes ownership of id and path. */
static int add_track(scan *s, char *id, char *path, const struct stat *st)
{
    sl_catalog *c = s->cat;
    if (!id || !path) {
        free(id);
        free(path);
        return sl_seterr(SL_ENOMEM, "out of memory while scanning inputs");
    }
    if (c->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        sl_track *t = realloc(c->tracks, cap * sizeof *t);
        if (!t) {
            free(id);
            free(path);
            return sl_seterr(SL_ENOMEM, "out of memory while scanning inputs");
        }
        c->tracks = t;
        s->cap = cap;
    }
    sl_track *t = &c->tracks[c->n++];
    t->id = id;
    t->path = path;
    t->size = st ? (int64_t)st->st_size : -1;
    t->mtime_ns = st ? mtime_ns(st) : 0;
    return 0;
}

static int ext_ok(const scan *s, const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || !dot[1])
        return 0;
    for (size_t i = 0; i < s->n_exts; i++) {
        const char *e = s->exts[i];
        while (*e == '.')
            e++;
        if (!strcasecmp(dot + 1, e))
            return 1;
    }
    return 0;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Walks folder dir (path to open) whose tracks get ids "idpfx/relative".
 * Below the input folder itself (up->up != NULL), what cannot be read is a
 * warning naming it and the scan goes on: one unreadable subfolder must not
 * cost the rest of the catalog. */
static int walk(scan *s, const char *dir, const char *idpfx, const ancestor *up)
{
    int below = up && up->up;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        if (below) {
            sl_log(SL_LOG_WARN, NULL, "catalog", "skipping folder '%s': %s", dir, strerror(e));
            return 0;
        }
        return sl_seterr(e == ENOENT ? SL_ENOTFOUND : SL_EIO, "cannot read folder '%s': %s", dir, strerror(e));
    }
    /* read names first and sort them, so that the walk (and its warnings) is
     * the same on every file system */
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue; /* ".", ".." and hidden files/folders */
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                rc = sl_seterr(SL_ENOMEM, "out of memory while scanning '%s'", dir);
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) {
            rc = sl_seterr(SL_ENOMEM, "out of memory while scanning '%s'", dir);
            break;
        }
        n++;
        errno = 0;
    }
    if (!rc && errno) {
        int e = errno;
        if (below)
            sl_log(SL_LOG_WARN, NULL, "catalog", "folder '%s' could only be read in part: %s", dir, strerror(e));
        else
            rc = sl_seterr(SL_EIO, "cannot read folder '%s': %s", dir, strerror(e));
    }
    closedir(d);
    if (!rc)
        if (n > 1)
            qsort(names, n, sizeof *names, name_cmp);

    for (size_t i = 0; !rc && i < n; i++) {
        char *path = join(dir, names[i]);
        char *id = *idpfx ? join(idpfx, names[i]) : strdup(names[i]);
        if (!path || !id) {
            free(path);
            free(id);
            rc = sl_seterr(SL_ENOMEM, "out of memory while scanning '%s'", dir);
            break;
        }
        struct stat st;
        if (stat(path, &st) != 0) {
            int e = errno;
            struct stat lst;
            if (e == ELOOP) {
                sl_log(SL_LOG_WARN, NULL, "catalog", "skipping '%s': symbolic link loop", path);
            } else if (e == ENOENT && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) {
                sl_log(SL_LOG_WARN, NULL, "catalog", "skipping broken symbolic link '%s'", path);
            } else if (below || e == ENOENT) {
                /* gone since the folder was listed, or not readable */
                sl_log(SL_LOG_WARN, NULL, "catalog", "skipping '%s': %s", path, strerror(e));
            } else {
                rc = sl_seterr(SL_EIO, "cannot stat '%s': %s", path, strerror(e));
            }
            free(path);
            free(id);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            int loop = 0;
            for (const ancestor *a = up; a; a = a->up)
                if (a->dev == st.st_dev && a->ino == st.st_ino)
                    loop = 1;
            if (loop) {
                sl_log(SL_LOG_WARN, NULL, "catalog", "skipping '%s': it links back to a folder above it", path);
            } else {
                ancestor me = {st.st_dev, st.st_ino, up};
                rc = walk(s, path, id, &me);
            }
            free(path);
            free(id);
        } else if (S_ISREG(st.st_mode) && ext_ok(s, names[i])) {
            rc = add_track(s, id, path, &st);
        } else if (ext_ok(s, names[i])) {
            /* a FIFO or device named like audio: opening it could block */
            sl_log(SL_LOG_WARN, NULL, "catalog", "skipping '%s': not a regular file", path);
            free(path);
            free(id);
        } else {
            free(path);
            free(id);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}

/* id of a manifest line: the path as written, lexically cleaned: no leading
 * "/" , no "." or empty components, no trailing '/'. Returns NULL on OOM,
 * "" when nothing is left, and sets *dotdot when a ".." component is present
 * (an id with ".." would let a template write outside output.dir). */
static char *clean_id(const char *p, int *dotdot)
{
    char *id = malloc(strlen(p) + 1);
    if (!id)
        return NULL;
    size_t o = 0;
    *dotdot = 0;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            *dotdot = 1;
        if (len && !(len == 1 && p[0] == '.')) {
            if (o)
                id[o++] = '/';
            memcpy(id + o, p, len);
            o += len;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    id[o] = 0;
    return id;
}

static const char *base_name(const char *p, char *buf, size_t size)
{
    size_t n = strlen(p);
    while (n > 1 && p[n - 1] == '/')
        n--;
    size_t b = n;
    while (b > 0 && p[b - 1] != '/')
        b--;
    snprintf(buf, size, "%.*s", (int)(n - b), p + b);
    return buf;
}

/* One input path: a file (id = base name) or a folder (ids relative to it). */
static int add_input(scan *s, const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return sl_seterr(SL_ENOTFOUND, "input '%s' not found", path);
        if (e == ELOOP)
            return sl_seterr(SL_EIO, "input '%s': symbolic link loop", path);
        return sl_seterr(SL_EIO, "input '%s': %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        ancestor root = {st.st_dev, st.st_ino, NULL};
        return walk(s, path, "", &root);
    }
    char b[4096];
    base_name(path, b, sizeof b);
    return add_track(s, strdup(b), strdup(path), &st);
}

static int add_manifest(scan *s, const char *manifest)
{
    FILE *f = fopen(manifest, "r");
    if (!f) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return sl_seterr(SL_ENOTFOUND, "manifest '%s' not found", manifest);
        return sl_seterr(SL_EIO, "manifest '%s': %s", manifest, strerror(e));
    }
    /* folder of the manifest, for relative lines */
    char *mdir = strdup(manifest);
    if (!mdir) {
        fclose(f);
        return sl_seterr(SL_ENOMEM, "out of memory");
    }
    char *slash = strrchr(mdir, '/');
    if (slash)
        slash[1] = 0;
    else
        mdir[0] = 0;

    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    int rc = 0;
    size_t lineno = 0;
    while (!rc && (len = getline(&line, &lcap, f)) >= 0) {
        lineno++;
        char *p = line, *e = line + len;
        while (e > p && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
            *--e = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            continue;
        if ((size_t)(e - p) != strlen(p)) {
            rc = sl_seterr(SL_ECONFIG, "%s:%zu: line contains a NUL byte", manifest, lineno);
            break;
        }
        int dotdot = 0;
        char *path = p[0] == '/' ? strdup(p) : join(mdir, p);
        char *id = clean_id(p, &dotdot);
        if (!path || !id || !*id || dotdot) {
            int oom = !path || !id;
            int empty = !oom && !*id;
            free(path);
            free(id);
            if (oom)
                rc = sl_seterr(SL_ENOMEM, "out of memory");
            else if (empty)
                rc = sl_seterr(SL_ECONFIG, "%s:%zu: '%s' is not a file", manifest, lineno, p);
            else
                rc = sl_seterr(SL_ECONFIG,
                               "%s:%zu: '%s': '..' is not allowed in a manifest line (the track id would "
                               "lead outside the output folder); use an absolute path or move the manifest "
                               "above the files",
                               manifest, lineno, p);
            break;
        }
        struct stat st;
        int found = stat(path, &st) == 0;
        if (found && S_ISDIR(st.st_mode)) {
            /* a folder line is scanned like a folder input, ids prefixed by the line */
            ancestor root = {st.st_dev, st.st_ino, NULL};
            rc = walk(s, path, id, &root);
            free(path);
            free(id);
        } else if (found) {
            rc = add_track(s, id, path, &st);
        } else {
            /* kept: the track fails with the reason when it is opened, and the
             * rest of the catalog goes on */
            rc = add_track(s, id, path, NULL);
        }
    }
    if (!rc && ferror(f))
        rc = sl_seterr(SL_EIO, "manifest '%s': read error", manifest);
    free(line);
    free(mdir);
    fclose(f);
    return rc;
}

static int track_cmp(const void *a, const void *b)
{
    return strcmp(((const sl_track *)a)->id, ((const sl_track *)b)->id);
}

void sl_catalog_free(sl_catalog *cat)
{
    if (!cat)
        return;
    for (size_t i = 0; i < cat->n; i++) {
        free(cat->tracks[i].id);
        free(cat->tracks[i].path);
    }
    free(cat->tracks);
    cat->tracks = NULL;
    cat->n = 0;
}

int sl_catalog_scan(sl_catalog *cat, const char *const *paths, size_t n_paths, const char *manifest,
                    const char *const *exts, size_t n_exts)
{
    scan s = {cat, 0, exts, n_exts};
    int rc = 0;
    cat->tracks = NULL;
    cat->n = 0;
    for (size_t i = 0; !rc && i < n_paths; i++)
        rc = add_input(&s, paths[i]);
    if (!rc && manifest)
        rc = add_manifest(&s, manifest);
    if (!rc && cat->n) {
        if (cat->n > 1)
            qsort(cat->tracks, cat->n, sizeof *cat->tracks, track_cmp);
        for (size_t i = 1; i < cat->n; i++)
            if (!strcmp(cat->tracks[i - 1].id, cat->tracks[i].id)) {
                rc = sl_seterr(SL_ECONFIG,
                               "two inputs have the same track id '%s': '%s' and '%s' (their outputs would "
                               "collide; rename one or give the folder above it as input)",
                               cat->tracks[i].id, cat->tracks[i - 1].path, cat->tracks[i].path);
                break;
            }
    }
    if (rc)
        sl_catalog_free(cat);
    return rc;
}

int sl_catalog_shard(sl_catalog *cat, int index, int n)
{
    if (n < 1 || index < 0 || index >= n)
        return sl_seterr(SL_EINVAL, "shard %d/%d: need 0 <= I < N", index, n);
    size_t k = 0;
    for (size_t i = 0; i < cat->n; i++) {
        if (i % (size_t)n == (size_t)index) {
            cat->tracks[k++] = cat->tracks[i];
        } else {
            free(cat->tracks[i].id);
            free(cat->tracks[i].path);
        }
    }
    cat->n = k;
    return 0;
}
