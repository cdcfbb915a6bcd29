/* stemline merge, embedding.center: catalog: every shard set of a sharded job
 * centred on the mean of all of them (pipeline/center.h). Each shard's run
 * centred its vectors on its own tracks' mean; here the rows of every ledger
 * are read again, the catalog mean (weighted by rows) written as mean.npy, and
 * every shard file and sidecar of every prefix rewritten with it. Files whose
 * bytes do not change are left alone, so a second merge rewrites nothing. */
#include "pipeline/merge.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sl_error.h"
#include "io/npy.h"
#include "pipeline/center.h"
#include "pipeline/search.h"
#include "pipeline/shardenv.h"
#include "pipeline/shards.h"

typedef struct {
    char prefix[64];
    char *ledger;
    sl_index_meta meta;
    sl_shards_spec spec;
    int have_meta;
} set_t;

static char *cat2(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* Rows per shard of a prefix: the rows of its first shard (it is full when
 * there are more, and any count >= its rows keeps the layout when not). */
static int first_shard_rows(const char *dir, const char *prefix)
{
    char name[128];
    snprintf(name, sizeof name, "%sshard-00000.npy", prefix);
    char *p = cat2(dir, name);
    FILE *f = p ? fopen(p, "rb") : NULL;
    sl_npy_info info;
    int rows = f && !sl_npy_read_header(f, p, &info) ? (int)info.rows : 0;
    if (f)
        fclose(f);
    free(p);
    return rows;
}

/* Centres one folder (OUT/embeddings/MODEL/SOURCE[/timeline]) over the sets
 * that have a ledger. *done = 1 when it was a centred folder. */
static int center_folder(const char *dir, int timeline, set_t *sets, size_t n_sets, FILE *log, int *done)
{
    *done = 0;
    int rc = 0, dim = 0, normalize = -1;
    double *sum = NULL;
    size_t total = 0, n_centred = 0;
    for (size_t i = 0; i < n_sets && !rc; i++) {
        set_t *s = &sets[i];
        char name[128];
        snprintf(name, sizeof name, "%sindex.json", s->prefix);
        char *mp = cat2(dir, name);
        s->have_meta = mp && access(mp, F_OK) == 0 && !(rc = sl_index_meta_read(mp, &s->meta));
        free(mp);
        if (!s->have_meta || !s->meta.center)
            continue;
        int rows = first_shard_rows(dir, s->prefix);
        if (rows <= 0)
            continue;
        if (normalize >= 0 && normalize != s->meta.normalize) {
            rc = sl_seterr(SL_EFORMAT, "%s: shard sets with and without embedding.normalize", dir);
            break;
        }
        normalize = s->meta.normalize;
        sl_ledger *l = NULL;
        if ((rc = sl_ledger_open(&l, s->ledger)))
            break;
        s->spec = (sl_shards_spec){.dir = dir, .prefix = s->prefix, .vector_model = s->meta.model,
                                   .model_name = s->meta.model, .source = s->meta.source, .dtype = s->meta.dtype,
                                   .shard_rows = rows, .timeline = timeline, .normalize = s->meta.normalize};
        float *m = NULL;
        int d = 0;
        size_t r = 0;
        rc = sl_shards_mean(&s->spec, l, &m, &d, &r);
        sl_ledger_close(l);
        if (!rc && m) {
            if (!sum && !(sum = calloc((size_t)d, sizeof *sum)))
                rc = sl_seterr(SL_ENOMEM, "%s: out of memory", dir);
            else if (dim && d != dim)
                rc = sl_seterr(SL_EFORMAT, "%s: shard sets of dims %d and %d", dir, dim, d);
            for (int k = 0; !rc && k < d; k++)
                sum[k] += (double)m[k] * (double)r;
            dim = d;
            total += r;
            n_centred++;
        }
        free(m);
    }
    if (rc || !n_centred) {
        free(sum);
        return rc;
    }
    float *mean = malloc((size_t)dim * sizeof *mean);
    char mname[96], mhash[SL_FILE_HASH_HEX];
    if (!mean)
        rc = sl_seterr(SL_ENOMEM, "%s: out of memory", dir);
    for (int k = 0; !rc && k < dim; k++)
        mean[k] = (float)(sum[k] / (double)total);
    free(sum);
    if (!rc)
        rc = sl_center_write(dir, "", mean, dim, mname, sizeof mname, mhash);
    for (size_t i = 0; i < n_sets && !rc; i++) {
        set_t *s = &sets[i];
        if (!s->spec.dir)
            continue;
        sl_ledger *l = NULL;
        if ((rc = sl_ledger_open(&l, s->ledger)))
            break;
        s->spec.center = mean;
        rc = sl_shards_write(&s->spec, l, NULL, NULL);
        sl_ledger_close(l);
        const sl_index_meta *m = &s->meta;
        sl_shards_meta wm = {.model = m->model, .weights = m->weights, .weights_sha256 = m->weights_sha256,
                             .options = &m->options, .params = m->params,
                             .source = m->source, .dtype = m->dtype, .dim = m->dim, .sample_rate = m->sample_rate,
                             .channels = m->channels, .normalize = m->normalize, .window_samples = m->window_samples,
                             .hop_samples = m->hop_samples, .config_hash = m->config_hash, .center = m->center,
                             .center_file = mname, .center_hash = mhash, .center_rows = total};
        if (!rc)
            rc = sl_shards_write_meta(dir, s->prefix, &wm);
        /* the shard's own mean is no longer named by any sidecar */
        if (!rc && s->prefix[0]) {
            char own[128];
            snprintf(own, sizeof own, "%smean.npy", s->prefix);
            char *op = cat2(dir, own);
            if (op)
                unlink(op);
            free(op);
        }
    }
    free(mean);
    if (!rc) {
        *done = 1;
        if (log)
            fprintf(log, "centred %s on the mean of %zu rows of %zu shard%s\n", dir, total, n_centred,
                    n_centred == 1 ? "" : "s");
    }
    return rc;
}

/* The names of the entries of dir that are folders, sorted; NULL-terminated. */
static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char **subdirs(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    char **v = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = cat2(dir, e->d_name);
        DIR *sub = p ? opendir(p) : NULL;
        free(p);
        if (!sub)
            continue;
        closedir(sub);
        char **nv = realloc(v, (n + 2) * sizeof *nv);
        if (!nv)
            break;
        v = nv;
        if ((v[n] = strdup(e->d_name)))
            n++;
        v[n] = NULL;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof *v, by_name);
    return v;
}

static void free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

int sl_merge_center(const char *out_dir, FILE *log, size_t *n_folders)
{
    *n_folders = 0;
    /* the shard sets: every ledger of the folder */
    DIR *d = opendir(out_dir);
    if (!d)
        return sl_seterr(-errno, "%s: %s", out_dir, strerror(errno));
    set_t *sets = NULL;
    size_t n_sets = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) && !rc) {
        int idx, cnt;
        if (sl_shard_parse_ledger_name(e->d_name, &idx, &cnt))
            continue;
        set_t *ns = realloc(sets, (n_sets + 1) * sizeof *ns);
        if (!ns) {
            rc = sl_seterr(SL_ENOMEM, "%s: out of memory", out_dir);
            break;
        }
        sets = ns;
        memset(&sets[n_sets], 0, sizeof *sets);
        sl_shard_prefix(idx, cnt, sets[n_sets].prefix, sizeof sets[n_sets].prefix);
        if (!(sets[n_sets].ledger = cat2(out_dir, e->d_name)))
            rc = sl_seterr(SL_ENOMEM, "%s: out of memory", out_dir);
        n_sets++;
    }
    closedir(d);
    char *emb = rc ? NULL : cat2(out_dir, "embeddings");
    char **models = emb ? subdirs(emb) : NULL;
    for (size_t i = 0; !rc && models && models[i]; i++) {
        char *md = cat2(emb, models[i]);
        char **sources = md ? subdirs(md) : NULL;
        for (size_t j = 0; !rc && sources && sources[j]; j++) {
            char *sd = cat2(md, sources[j]);
            for (int tl = 0; sd && !rc && tl < 2; tl++) {
                char *dir = tl ? cat2(sd, "timeline") : strdup(sd);
                int done = 0;
                if (dir)
                    rc = center_folder(dir, tl, sets, n_sets, log, &done);
                *n_folders += (size_t)done;
                for (size_t k = 0; k < n_sets; k++) {
                    if (sets[k].have_meta)
                        sl_index_meta_free(&sets[k].meta);
                    sets[k].have_meta = 0;
                    memset(&sets[k].spec, 0, sizeof sets[k].spec);
                }
                free(dir);
            }
            free(sd);
        }
        free_strv(sources);
        free(md);
    }
    free_strv(models);
    free(emb);
    for (size_t k = 0; k < n_sets; k++)
        free(sets[k].ledger);
    free(sets);
    return rc;
}
