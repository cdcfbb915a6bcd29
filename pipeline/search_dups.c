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
    char *key;      /* id, NUL, window as text */
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
        size_t kl = strlen(k->v[i].key);
        kl += 1 + strlen(k->v[i].key + kl + 1);
        size_t j = fnv(k->v[i].key, kl) & (nc - 1);
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
        if (!memcmp(k->v[j].key, key, klen + 1))
            return &k->v[j];
        j = (j + 1) & (k->cap - 1);
    }
    char *c = malloc(klen + 1);
    if (!c)
        return NULL;
    memcpy(c, key, klen + 1);
    k->v[j].key = c;
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

/* One line of shard si: its key counted, the first duplicate kept as the
 * example. */
static int count_line(keyset *ks, const sl_vindex *ix, size_t si, const char *jpath, size_t lineno,
                      const char *line, size_t len, sl_vindex_dups *out)
{
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
    double w = sl_json_get_num(&v, "window", -1);
    size_t il = strlen(id);
    char *key = malloc(il + 48);
    int rc = 0;
    if (!key) {
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
    } else {
        memcpy(key, id, il + 1);
        int wl = snprintf(key + il + 1, 47, "%.17g", w);
        slot *s = lookup(ks, key, il + 1 + (size_t)wl, si);
        if (!s) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
        } else if (++s->count == 2) {
            out->duplicated++;
            if (!out->example[0]) {
                snprintf(out->example, sizeof out->example, "%s", id);
                snprintf(out->where[0], sizeof out->where[0], "%s", base_name(sl_vindex_shard_path(ix, s->shard)));
                snprintf(out->where[1], sizeof out->where[1], "%s", base_name(jpath));
            }
        }
        if (s && s->count >= 2)
            out->extra_rows++;
    }
    free(key);
    sl_json_free(&v);
    return rc;
}

int sl_vindex_duplicates(const sl_vindex *ix, sl_vindex_dups *out)
{
    memset(out, 0, sizeof *out);
    keyset ks = {0};
    char *line = NULL;
    size_t lcap = 0;
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
            rc = count_line(&ks, ix, si, jpath, lineno, line, (size_t)len, out);
        }
        if (f)
            fclose(f);
        free(jpath);
    }
    free(line);
    for (size_t i = 0; i < ks.cap; i++)
        free(ks.v[i].key);
    free(ks.v);
    return rc;
}
