/* Duplicated rows in a folder of vector shards (see sl_vindex_duplicates). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sl_error.h"
#include "common/sl_json.h"
#include "pipeline/search.h"

typedef struct {
    char *key;      /* id, NUL, window as text, NUL */
    size_t len;     /* of key, without the last NUL */
    size_t shard;   /* where its first row is */
    uint32_t count;
} slot;

typedef struct {
    slot *v;
    size_t cap, n;
} keyset;

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static int grow(keyset *k)
{
    size_t nc = k->cap ? k->cap * 2 : 4096;
    slot *nv = calloc(nc, sizeof *nv);
    if (!nv)
        return -1;
    for (size_t i = 0; i < k->cap; i++) {
        if (!k->v[i].key)
            continue;
        size_t j = fnv(k->v[i].key, k->v[i].len) & (nc - 1);
        while (nv[j].key)
            j = (j + 1) & (nc - 1);
        nv[j] = k->v[i];
    }
    free(k->v);
    k->v = nv;
    k->cap = nc;
    return 0;
}

/* The slot of key (klen bytes, NUL inside), added with count 0 when new; NULL
 * when out of memory. */
static slot *lookup(keyset *k, const char *key, size_t klen, size_t shard)
{
    if ((k->n + 1) * 2 > k->cap && grow(k))
        return NULL;
    size_t j = fnv(key, klen) & (k->cap - 1);
    while (k->v[j].key) {
        if (k->v[j].len == klen && !memcmp(k->v[j].key, key, klen))
            return &k->v[j];
        j = (j + 1) & (k->cap - 1);
    }
    char *c = malloc(klen + 1);
    if (!c)
        return NULL;
    memcpy(c, key, klen + 1);
    k->v[j].key = c;
    k->v[j].len = klen;
    k->v[j].shard = shard;
    k->v[j].count = 0;
    k->n++;
    return &k->v[j];
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* The end of the JSON string that starts after the opening quote at p (the
 * closing quote), or NULL. */
static const char *string_end(const char *p, const char *end)
{
    for (; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p;
    }
    return NULL;
}

/* The key of a line as the runner writes it ({"row": N, "id": "...", "path":
 * "...", ["window": W, ]...}) without a full parse: the id as escaped in the
 * file (the writer escapes one way only), a NUL, the window's digits or -1.
 * Returns the key's length, or 0 when the line is not in that form. */
static size_t fast_key(const char *line, size_t len, char *key, size_t cap)
{
    const char *p = line, *end = line + len;
    if (len < 16 || strncmp(p, "{\"row\": ", 8))
        return 0;
    p += 8;
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    if (end - p < 10 || strncmp(p, ", \"id\": \"", 9))
        return 0;
    const char *id = p + 9, *ide = string_end(id, end);
    if (!ide || (size_t)(ide - id) + 24 > cap)
        return 0;
    p = ide + 1;
    if (end - p < 11 || strncmp(p, ", \"path\": ", 10))
        return 0;
    p += 10;
    if (*p == '"') {
        if (!(p = string_end(p + 1, end)))
            return 0;
        p++;
    } else if (!strncmp(p, "null", 4)) {
        p += 4;
    } else {
        return 0;
    }
    size_t il = (size_t)(ide - id);
    memcpy(key, id, il);
    key[il] = 0;
    const char *w = "-1";
    size_t wl = 2;
    if (end - p > 12 && !strncmp(p, ", \"window\": ", 12)) {
        w = p + 12;
        wl = 0;
        while (w + wl < end && w[wl] >= '0' && w[wl] <= '9')
            wl++;
        if (!wl || wl > 20)
            return 0;
    }
    memcpy(key + il + 1, w, wl);
    key[il + 1 + wl] = 0;
    return il + 1 + wl;
}

/* One line of shard si: its key counted, the first duplicate kept as the
 * example. */
static int count_key(keyset *ks, const sl_vindex *ix, size_t si, const char *key, size_t klen, sl_vindex_dups *out)
{
    slot *s = lookup(ks, key, klen, si);
    if (!s)
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    if (++s->count == 2) {
        out->duplicated++;
        if (!out->example[0]) {
            snprintf(out->example, sizeof out->example, "%s", key);
            snprintf(out->where[0], sizeof out->where[0], "%s", base_name(sl_vindex_shard_path(ix, s->shard)));
            snprintf(out->where[1], sizeof out->where[1], "%s", base_name(sl_vindex_shard_path(ix, si)));
        }
    }
    if (s->count >= 2)
        out->extra_rows++;
    return 0;
}

/* One line of shard si: its key counted. Lines the runner wrote take the fast
 * path; anything else is parsed as JSON (the id then unescaped, which can
 * only tell apart more rows, never fewer: the runner's lines escape one way). */
static int count_line(keyset *ks, const sl_vindex *ix, size_t si, const char *jpath, size_t lineno,
                      const char *line, size_t len, char **key, size_t *kcap, sl_vindex_dups *out)
{
    if (len + 32 > *kcap) {
        char *nk = realloc(*key, len + 64);
        if (!nk)
            return sl_seterr(SL_ENOMEM, "search: out of memory");
        *key = nk;
        *kcap = len + 64;
    }
    size_t kl = fast_key(line, len, *key, *kcap);
    if (kl)
        return count_key(ks, ix, si, *key, kl, out);
    sl_json v;
    int jr = sl_json_parse(line, len, &v);
    if (jr == SL_ENOMEM)
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    const char *id = jr ? NULL : sl_json_get_str(&v, "id", NULL);
    if (!id) {
        if (!jr)
            sl_json_free(&v);
        return sl_seterr(SL_EFORMAT, "%s:%zu: not a row of a vector shard (no \"id\")", jpath, lineno);
    }
    size_t il = strlen(id);
    int rc = 0;
    if (il + 32 > *kcap) {
        rc = sl_seterr(SL_EFORMAT, "%s:%zu: malformed row", jpath, lineno);
    } else {
        memcpy(*key, id, il + 1);
        int wl = snprintf(*key + il + 1, 24, "%.0f", sl_json_get_num(&v, "window", -1));
        rc = count_key(ks, ix, si, *key, il + 1 + (size_t)wl, out);
    }
    sl_json_free(&v);
    return rc;
}

int sl_vindex_duplicates(const sl_vindex *ix, sl_vindex_dups *out)
{
    memset(out, 0, sizeof *out);
    keyset ks = {0};
    char *line = NULL, *key = NULL;
    size_t lcap = 0, kcap = 0;
    int rc = 0;
    for (size_t si = 0; !rc && si < sl_vindex_nshards(ix); si++) {
        const char *npy = sl_vindex_shard_path(ix, si);
        size_t nl = strlen(npy);
        char *jpath = malloc(nl + 4);
        if (!jpath) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
            break;
        }
        memcpy(jpath, npy, nl - 4);
        memcpy(jpath + nl - 4, ".jsonl", 7);
        FILE *f = fopen(jpath, "r");
        if (!f) {
            int e = errno;
            rc = sl_seterr(e == ENOENT ? SL_EFORMAT : -e, "%s: %s", jpath, strerror(e));
        }
        ssize_t len;
        size_t lineno = 0;
        while (!rc && f && (len = getline(&line, &lcap, f)) >= 0) {
            lineno++;
            out->rows++;
            rc = count_line(&ks, ix, si, jpath, lineno, line, (size_t)len, &key, &kcap, out);
        }
        if (f)
            fclose(f);
        free(jpath);
    }
    free(line);
    free(key);
    for (size_t i = 0; i < ks.cap; i++)
        free(ks.v[i].key);
    free(ks.v);
    return rc;
}
