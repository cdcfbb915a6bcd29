/* The vector index: opening a folder of shards (their .npy headers and
 * index.json sidecars), describing hits from the shards' jsonl rows, and
 * finding a track's vector by id; see search.h for the contract. */
#include "pipeline/search.h"
#include "pipeline/search_impl.h"

#include "common/sl_error.h"
#include "common/sl_json.h"
#include "io/npy.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ================================================================ the index */

/* 1 when two sidecars describe vectors made the same way (dtype may differ). */
static int meta_same(const sl_index_meta *a, const sl_index_meta *b)
{
    if (strcmp(a->model, b->model) || (!a->weights != !b->weights) ||
        (a->weights && strcmp(a->weights, b->weights)) ||
        (a->weights_sha256 && b->weights_sha256 && strcmp(a->weights_sha256, b->weights_sha256)) ||
        a->dim != b->dim || a->sample_rate != b->sample_rate ||
        a->channels != b->channels || a->normalize != b->normalize || a->window_samples != b->window_samples ||
        a->hop_samples != b->hop_samples || a->options.n != b->options.n || !a->center != !b->center ||
        (a->center && (strcmp(a->center, b->center) || strcmp(a->center_hash, b->center_hash))))
        return 0;
    for (size_t i = 0; i < a->options.n; i++)
        if (strcmp(a->options.items[i].key, b->options.items[i].key) ||
            strcmp(a->options.items[i].value, b->options.items[i].value))
            return 0;
    return 1;
}

size_t sl_vindex_rows(const sl_vindex *ix) { return ix->rows; }
int sl_vindex_dim(const sl_vindex *ix) { return ix->dim; }
size_t sl_vindex_nshards(const sl_vindex *ix) { return ix->n; }
const char *sl_vindex_shard_path(const sl_vindex *ix, size_t s) { return s < ix->n ? ix->sh[s].npy : NULL; }
const sl_index_meta *sl_vindex_meta(const sl_vindex *ix) { return ix->have_meta ? &ix->metas[0] : NULL; }
int sl_vindex_rows_normalized(const sl_vindex *ix) { return ix->rows_normalized; }
void sl_vindex_set_rows_normalized(sl_vindex *ix, int normalized) { ix->rows_normalized = normalized != 0; }

int sl_vindex_may_hold_duplicates(const sl_vindex *ix)
{
    long first = -1;
    for (size_t i = 0; i < ix->n; i++) {
        long n = 0; /* "" = one unsharded set */
        const char *p = ix->sh[i].prefix;
        if (p && *p && sscanf(p, "s%*dof%ld-", &n) != 1)
            return 1;
        if (first < 0)
            first = n;
        else if (n != first)
            return 1;
    }
    return 0;
}

void sl_vindex_set_threads(sl_vindex *ix, int threads) { ix->threads = threads > 0 ? threads : 1; }

void sl_vindex_close(sl_vindex *ix)
{
    if (!ix)
        return;
    sl_vindex_prefetch_wait(ix);
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->sh[i].npy);
        free(ix->sh[i].jsonl);
        free(ix->sh[i].prefix);
        free(ix->sh[i].npy16);
        free(ix->sh[i].path8);
        if (ix->sh[i].keep)
            munmap(ix->sh[i].keep, ix->sh[i].keep_len);
    }
    for (size_t i = 0; i < ix->n_metas; i++)
        sl_index_meta_free(&ix->metas[i]);
    free(ix->metas);
    free(ix->sh);
    free(ix->dir);
    free(ix);
}

static long long mtime_ns(const struct stat *st)
{
    return (long long)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec;
}

/* The file the CPU scan reads for shard s (search_scan.c, scan_block): the int8
 * copy, else the float16 copy, else the shard; its size. */
static const char *scan_file(const sl_vindex *ix, const shard *s, int *use8, int *use16, size_t *size)
{
    *use8 = !ix->copy8.off && s->has8;
    *use16 = !*use8 && !ix->copy16.off && s->has16;
    *size = *use8 ? s->file_size8 : *use16 ? s->file_size16 : s->file_size;
    return *use8 ? s->path8 : *use16 ? s->npy16 : s->npy;
}

/* sl_vindex_keep_mapped; with max_bytes > 0, maps nothing when the files add up to more. */
static int keep_mapped(sl_vindex *ix, size_t max_bytes)
{
    int rc = ix->copy16.off ? 0 : sl_scan_copy_prepare(ix, &sl_scan_copy_f16);
    if (!rc && !ix->copy8.off)
        rc = sl_scan_copy_prepare(ix, &sl_scan_copy_i8);
    if (rc)
        return rc;
    size_t total = 0, size;
    int use8, use16;
    for (size_t i = 0; i < ix->n; i++) {
        scan_file(ix, &ix->sh[i], &use8, &use16, &size);
        total += size;
    }
    if (max_bytes && total > max_bytes)
        return 0;
    for (size_t i = 0; i < ix->n; i++) {
        shard *s = &ix->sh[i];
        if (s->keep)
            continue;
        const char *path = scan_file(ix, s, &use8, &use16, &size);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return sl_seterr(-e, "%s: %s", path, strerror(e));
        }
        if ((size_t)st.st_size != size) {
            close(fd);
            return sl_seterr(SL_EFORMAT, "%s changed since the shards were opened (start again)", path);
        }
        void *b = sl_scan_mmap_read(fd, size, 0);
        int e = errno;
        close(fd);
        if (b == MAP_FAILED)
            return sl_seterr(-e, "%s: mmap: %s", path, strerror(e));
        s->keep = b;
        s->keep_len = size;
        s->keep16 = use16;
        s->keep8 = use8;
        s->keep_ino = (long long)st.st_ino;
        s->keep_mtime_ns = mtime_ns(&st);
    }
    return 0;
}

int sl_vindex_keep_mapped(sl_vindex *ix) { return keep_mapped(ix, 0); }

static void *prefetch_main(void *arg)
{
    sl_vindex *ix = arg;
    pthread_setname_np(pthread_self(), "sl-prefetch");
    const long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
    const size_t cap = pages > 0 && psz > 0 ? (size_t)pages * (size_t)psz / 4 : ((size_t)1 << 30);
    ix->pf_rc = keep_mapped(ix, cap ? cap : 1);
    if (ix->pf_rc)
        snprintf(ix->pf_err, sizeof ix->pf_err, "%s", sl_lasterr());
    return NULL;
}

void sl_vindex_prefetch_start(sl_vindex *ix)
{
    if (ix->pf_running)
        return;
    ix->pf_rc = 0;
    if (pthread_create(&ix->pf_thread, NULL, prefetch_main, ix) == 0) /* else the scan maps block by block */
        ix->pf_running = 1;
}

int sl_vindex_prefetch_wait(sl_vindex *ix)
{
    if (!ix->pf_running)
        return 0;
    pthread_join(ix->pf_thread, NULL);
    ix->pf_running = 0;
    return ix->pf_rc ? sl_seterr(ix->pf_rc, "%s", ix->pf_err) : 0;
}

int sl_vindex_keep_check(const sl_vindex *ix)
{
    for (size_t i = 0; i < ix->n; i++) {
        const shard *s = &ix->sh[i];
        if (!s->keep)
            continue;
        const char *path = s->keep8 ? s->path8 : s->keep16 ? s->npy16 : s->npy;
        struct stat st;
        if (stat(path, &st) != 0 || (size_t)st.st_size != s->keep_len || (long long)st.st_ino != s->keep_ino ||
            mtime_ns(&st) != s->keep_mtime_ns)
            return sl_seterr(SL_EFORMAT, "%s changed since the search session mapped it (start the session again)",
                             path);
    }
    return 0;
}

/* "[s<digits>of<digits>-]shard-<digits>.npy": 1 with the prefix length and index. */
static int parse_npy_name(const char *name, size_t *plen, long *index)
{
    const char *p = name;
    if (p[0] == 's' && p[1] >= '0' && p[1] <= '9') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++;
        if (strncmp(p, "of", 2) != 0 || p[2] < '0' || p[2] > '9')
            return 0;
        p += 2;
        while (*p >= '0' && *p <= '9')
            p++;
        if (*p != '-')
            return 0;
        p++;
    }
    *plen = (size_t)(p - name);
    if (strncmp(p, "shard-", 6) != 0 || p[6] < '0' || p[6] > '9')
        return 0;
    char *end;
    errno = 0;
    *index = strtol(p + 6, &end, 10);
    return errno == 0 && !strcmp(end, ".npy");
}

/* File-name order: what sorted(glob("*.npy")) gives in Python, so that row
 * numbers (and ties) agree with the README's numpy / faiss recipe. */
static int shard_cmp(const void *a, const void *b)
{
    const shard *x = a, *y = b;
    return strcmp(x->npy, y->npy);
}

int sl_search_npy_header(shard *s)
{
    int fd = open(s->npy, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    struct stat st;
    unsigned char pre[12];
    char hdr[4097];
    const char *why = NULL;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    ssize_t r = pread(fd, pre, 12, 0);
    size_t hlen = 0, hstart = 0;
    if (r < 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
        why = "not a .npy file";
    else if (pre[6] == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
        hstart = 10;
    } else if ((pre[6] == 2 || pre[6] == 3) && r >= 12) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)pre[10] << 16) | ((size_t)pre[11] << 24);
        hstart = 12;
    } else {
        why = "unsupported .npy version";
    }
    if (!why && (hlen >= sizeof hdr || hstart + hlen > (size_t)st.st_size))
        why = "header too long";
    if (!why && pread(fd, hdr, hlen, (off_t)hstart) != (ssize_t)hlen)
        why = "short header";
    close(fd);
    if (!why) {
        hdr[hlen] = 0;
        const char *d = strstr(hdr, "'descr'");
        const char *fo = strstr(hdr, "'fortran_order'");
        const char *sp = strstr(hdr, "'shape'");
        unsigned long long r0, c0;
        if (!d || !fo || !sp)
            why = "header lacks descr, fortran_order or shape";
        else if (strstr(d, "'<f4'") == d + strspn(d + 7, " :") + 7)
            s->f16 = 0;
        else if (strstr(d, "'<f2'") == d + strspn(d + 7, " :") + 7)
            s->f16 = 1;
        else
            why = "dtype is not little-endian float32 or float16";
        if (!why && strncmp(fo + 15 + strspn(fo + 15, " :"), "False", 5) != 0)
            why = "fortran_order arrays are not supported";
        if (!why) {
            const char *q = sp + 7 + strspn(sp + 7, " :");
            if (sscanf(q, "(%llu, %llu)", &r0, &c0) != 2 && sscanf(q, "(%llu,%llu)", &r0, &c0) != 2)
                why = "shape is not 2-D";
            else if (c0 == 0 || c0 > INT_MAX || r0 > ((unsigned long long)1 << 40))
                why = "shape out of range";
            else {
                s->rows = (size_t)r0;
                s->dim = (size_t)c0;
            }
        }
    }
    if (!why) {
        s->data_off = hstart + hlen;
        s->file_size = (size_t)st.st_size;
        if (s->file_size - s->data_off != s->rows * s->dim * (s->f16 ? 2u : 4u))
            why = "file size does not match the shape";
    }
    if (why)
        rc = sl_seterr(SL_EFORMAT, "%s: %s", s->npy, why);
    return rc;
}

int sl_vindex_open(sl_vindex **out, const char *dir)
{
    *out = NULL;
    sl_vindex *ix = calloc(1, sizeof *ix);
    if (!ix || !(ix->dir = strdup(dir))) {
        free(ix);
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    }
    int rc = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        sl_vindex_close(ix);
        if (e == ENOENT || e == ENOTDIR)
            return sl_seterr(SL_ENOTFOUND, "%s: no such folder (no vector shards)", dir);
        return sl_seterr(-e, "%s: %s", dir, strerror(e));
    }
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        size_t plen;
        long index;
        if (!parse_npy_name(de->d_name, &plen, &index))
            continue;
        if (ix->n == ix->cap) {
            size_t nc = ix->cap ? 2 * ix->cap : 16;
            shard *ns = realloc(ix->sh, nc * sizeof *ns);
            if (!ns) {
                rc = sl_seterr(SL_ENOMEM, "search: out of memory");
                break;
            }
            ix->sh = ns;
            ix->cap = nc;
        }
        shard *s = &ix->sh[ix->n];
        memset(s, 0, sizeof *s);
        size_t dl = strlen(dir), nl = strlen(de->d_name);
        s->npy = malloc(dl + nl + 2);
        s->jsonl = malloc(dl + nl + 4);
        s->prefix = strndup(de->d_name, plen);
        s->index = index;
        ix->n++;
        if (!s->npy || !s->jsonl || !s->prefix) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
            break;
        }
        sprintf(s->npy, "%s/%s", dir, de->d_name);
        sprintf(s->jsonl, "%s/%.*s.jsonl", dir, (int)(nl - 4), de->d_name);
    }
    closedir(d);
    if (!rc && ix->n == 0)
        rc = sl_seterr(SL_ENOTFOUND, "%s: no vector shards (shard-NNNNN.npy)", dir);
    if (!rc)
        if (ix->n > 1)
            qsort(ix->sh, ix->n, sizeof *ix->sh, shard_cmp);
    for (size_t i = 0; !rc && i < ix->n; i++) {
        shard *s = &ix->sh[i];
        rc = sl_search_npy_header(s);
        if (rc)
            break;
        if (i == 0)
            ix->dim = (int)s->dim;
        else if ((int)s->dim != ix->dim)
            rc = sl_seterr(SL_EFORMAT, "%s has vectors of dim %zu, %s of dim %d", s->npy, s->dim, ix->sh[0].npy,
                           ix->dim);
        s->first = ix->rows;
        ix->rows += s->rows;
    }
    /* one sidecar per prefix */
    ix->have_meta = 1;
    if (!rc && !(ix->metas = calloc(ix->n, sizeof *ix->metas)))
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
    for (size_t i = 0; !rc && i < ix->n; i++) {
        if (i > 0 && !strcmp(ix->sh[i].prefix, ix->sh[i - 1].prefix))
            continue;
        char *mp = malloc(strlen(dir) + strlen(ix->sh[i].prefix) + 16);
        if (!mp) {
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
            break;
        }
        sprintf(mp, "%s/%sindex.json", dir, ix->sh[i].prefix);
        if (access(mp, F_OK) != 0) {
            ix->have_meta = 0;
        } else {
            sl_index_meta *m = &ix->metas[ix->n_metas];
            rc = sl_index_meta_read(mp, m);
            if (!rc) {
                ix->n_metas++;
                if (m->dim != ix->dim)
                    rc = sl_seterr(SL_EFORMAT, "%s says dim %d but the shards have dim %d", mp, m->dim, ix->dim);
                else if (ix->n_metas > 1 && !meta_same(&ix->metas[0], m) && m->center && ix->metas[0].center &&
                         strcmp(m->center_hash, ix->metas[0].center_hash))
                    rc = sl_seterr(SL_EFORMAT,
                                   "%s and %s: these shards are centred on different means (each shard of a "
                                   "sharded job on its own, with embedding.center: catalog): run `stemline merge` "
                                   "to centre them all on the catalog mean",
                                   ix->metas[0].path, mp);
                else if (ix->n_metas > 1 && !meta_same(&ix->metas[0], m))
                    rc = sl_seterr(SL_EFORMAT,
                                   "%s and %s: these shards were made with different embedding settings; "
                                   "search one output folder per job",
                                   ix->metas[0].path, mp);
            }
        }
        free(mp);
    }
    if (!rc) {
        int all_f32 = 1;
        for (size_t i = 0; i < ix->n; i++)
            all_f32 &= !ix->sh[i].f16;
        ix->rows_normalized = ix->have_meta && ix->n_metas > 0 && ix->metas[0].normalize && all_f32;
        if (ix->n_metas == 0)
            ix->have_meta = 0;
    }
    if (rc) {
        sl_vindex_close(ix);
        return rc;
    }
    *out = ix;
    return 0;
}

/* ---------------------------------------------------------------- jsonl */

void sl_search_hits_free(sl_search_hit *hits, size_t n)
{
    for (size_t i = 0; hits && i < n; i++) {
        free(hits[i].id);
        free(hits[i].path);
        hits[i].id = hits[i].path = NULL;
    }
}

static int hit_row_cmp(const void *a, const void *b)
{
    const sl_search_hit *const *x = a, *const *y = b;
    return ((*x)->row > (*y)->row) - ((*x)->row < (*y)->row);
}

/* Reads fd's lines in order, 256 KiB at a time: the lines before the one wanted are
 * only counted (memchr), not copied, so describing a hit near the end of a 10,000-row
 * shard reads its jsonl in ~4 calls (getline through stdio: 200 calls, every line copied). */
typedef struct {
    int fd;
    char *buf;
    size_t pos, end;
    int eof;
} line_reader;

static int lr_fill(line_reader *r)
{
    if (r->eof)
        return 0;
    ssize_t got;
    do
        got = read(r->fd, r->buf, (size_t)1 << 18);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return -errno;
    r->pos = 0;
    r->end = (size_t)got;
    r->eof = got == 0;
    return got > 0;
}

/* Skips lines until *lineno == target (each newline counts one); 1 when there, 0 at end of file. */
static int lr_skip(line_reader *r, size_t *lineno, size_t target)
{
    while (*lineno < target) {
        if (r->pos == r->end) {
            int g = lr_fill(r);
            if (g <= 0)
                return g;
        }
        const char *nl = memchr(r->buf + r->pos, '\n', r->end - r->pos);
        if (!nl) {
            r->pos = r->end;
            continue;
        }
        r->pos = (size_t)(nl - r->buf) + 1;
        ++*lineno;
    }
    return 1;
}

/* The next line (without its newline) into *line / *cap, its length in *len; 1, 0 at end
 * of file (nothing left), negative on error. */
static int lr_line(line_reader *r, char **line, size_t *cap, size_t *len)
{
    *len = 0;
    int any = 0;
    for (;;) {
        if (r->pos == r->end) {
            int g = lr_fill(r);
            if (g < 0)
                return g;
            if (g == 0)
                return any;
        }
        any = 1;
        const char *s = r->buf + r->pos, *nl = memchr(s, '\n', r->end - r->pos);
        const size_t n = nl ? (size_t)(nl - s) : r->end - r->pos;
        if (*len + n + 1 > *cap) {
            size_t nc = 2 * (*len + n + 1);
            char *nb = realloc(*line, nc);
            if (!nb)
                return SL_ENOMEM;
            *line = nb;
            *cap = nc;
        }
        memcpy(*line + *len, s, n);
        *len += n;
        (*line)[*len] = 0;
        r->pos += n + (nl != NULL);
        if (nl)
            return 1;
    }
}

int sl_vindex_describe(sl_vindex *ix, sl_search_hit *hits, size_t n)
{
    int rc = 0;
    sl_search_hit **want = malloc((n ? n : 1) * sizeof *want);
    char *rbuf = n ? malloc((size_t)1 << 18) : NULL;
    if (!want || (n && !rbuf)) {
        free(want);
        free(rbuf);
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    }
    char *line = NULL;
    size_t lcap = 0;
    for (size_t si = 0; !rc && si < ix->n; si++) {
        size_t nw = 0;
        for (size_t i = 0; i < n; i++)
            if (hits[i].shard == si)
                want[nw++] = &hits[i];
        if (!nw)
            continue;
        if (nw > 1)
            qsort(want, nw, sizeof *want, hit_row_cmp);
        line_reader lr = {open(ix->sh[si].jsonl, O_RDONLY | O_CLOEXEC), rbuf, 0, 0, 0};
        if (lr.fd < 0) {
            int e = errno;
            rc = sl_seterr(e == ENOENT ? SL_EFORMAT : -e, "%s: %s (the rows of %s are not described)",
                           ix->sh[si].jsonl, strerror(e), ix->sh[si].npy);
            break;
        }
        size_t lineno = 0, w = 0, len;
        int got = 1;
        while (w < nw && (got = lr_skip(&lr, &lineno, want[w]->row)) > 0 &&
               (got = lr_line(&lr, &line, &lcap, &len)) > 0) {
            size_t this = lineno++;
            sl_json v;
            int jr = sl_json_parse(line, len, &v);
            if (jr == SL_ENOMEM) {
                rc = sl_seterr(SL_ENOMEM, "search: out of memory");
                break;
            }
            const char *id = sl_json_get_str(&v, "id", NULL);
            const sl_json *rowv = sl_json_get(&v, "row");
            if (jr || !id || (rowv && (rowv->type != SL_JSON_NUMBER || rowv->num != (double)this))) {
                char detail[512] = ""; /* sl_seterr writes where sl_lasterr points: copy it first */
                if (jr)
                    snprintf(detail, sizeof detail, " (not JSON: %s)", sl_lasterr());
                sl_json_free(&v);
                rc = sl_seterr(SL_EFORMAT, "%s:%zu: not a row object with \"id\" and \"row\": %zu%s",
                               ix->sh[si].jsonl, this + 1, this, detail);
                break;
            }
            char *sid = strdup(id);
            char *spath = sl_json_dup_str(&v, "path");
            double start = sl_json_get_num(&v, "start", 0), end = sl_json_get_num(&v, "end", NAN);
            sl_json_free(&v);
            if (!sid) {
                free(spath);
                rc = sl_seterr(SL_ENOMEM, "search: out of memory");
                break;
            }
            while (w < nw && want[w]->row == this) {
                sl_search_hit *h = want[w++];
                free(h->id);
                free(h->path);
                h->id = strdup(sid);
                h->path = spath ? strdup(spath) : NULL;
                h->start = start;
                h->end = end;
            }
            free(sid);
            free(spath);
        }
        close(lr.fd);
        if (!rc && got < 0)
            rc = got == SL_ENOMEM ? sl_seterr(SL_ENOMEM, "search: out of memory")
                                  : sl_seterr(got, "%s: read error: %s", ix->sh[si].jsonl, strerror(-got));
        if (!rc && w < nw)
            rc = sl_seterr(SL_EFORMAT, "%s has %zu rows, %s has %zu: re-run the job to rewrite them",
                           ix->sh[si].jsonl, lineno, ix->sh[si].npy, ix->sh[si].rows);
    }
    free(line);
    free(rbuf);
    free(want);
    return rc;
}

/* 1 when the id appears in a JSON text exactly as written (no escapes needed). */
static int plain_id(const char *id)
{
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        if (*p < 0x20 || *p >= 0x7f || *p == '"' || *p == '\\' || *p == '/')
            return 0;
    return 1;
}

static int read_row(const shard *s, size_t row, float *vec)
{
    int fd = open(s->npy, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    size_t isz = s->f16 ? 2 : 4, nb = s->dim * isz;
    unsigned char *b = malloc(nb);
    int rc = 0;
    if (!b)
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
    else if (pread(fd, b, nb, (off_t)(s->data_off + row * nb)) != (ssize_t)nb)
        rc = sl_seterr(SL_EFORMAT, "%s: short read at row %zu", s->npy, row);
    close(fd);
    for (size_t i = 0; !rc && i < s->dim; i++) {
        if (s->f16) {
            vec[i] = sl_f16_to_f32((unsigned short)(b[2 * i] | (b[2 * i + 1] << 8)));
        } else {
            uint32_t x = (uint32_t)b[4 * i] | ((uint32_t)b[4 * i + 1] << 8) | ((uint32_t)b[4 * i + 2] << 16) |
                         ((uint32_t)b[4 * i + 3] << 24);
            memcpy(&vec[i], &x, 4);
        }
    }
    free(b);
    return rc;
}

int sl_vindex_find_id(sl_vindex *ix, const char *id, float *vec, size_t *shard_out, size_t *row_out)
{
    int plain = plain_id(id);
    char *line = NULL;
    size_t lcap = 0;
    int rc = SL_ENOTFOUND;
    for (size_t si = 0; rc == SL_ENOTFOUND && si < ix->n; si++) {
        FILE *f = fopen(ix->sh[si].jsonl, "r");
        if (!f) {
            int e = errno;
            rc = sl_seterr(e == ENOENT ? SL_EFORMAT : -e, "%s: %s", ix->sh[si].jsonl, strerror(e));
            break;
        }
        size_t lineno = 0;
        ssize_t len;
        while (rc == SL_ENOTFOUND && (len = getline(&line, &lcap, f)) >= 0) {
            size_t this = lineno++;
            if (plain && !strstr(line, id))
                continue;
            sl_json v;
            int jr = sl_json_parse(line, (size_t)len, &v);
            if (jr == SL_ENOMEM) {
                rc = sl_seterr(SL_ENOMEM, "search: out of memory");
                break;
            }
            if (jr) {
                char detail[512]; /* sl_seterr writes where sl_lasterr points: copy it first */
                snprintf(detail, sizeof detail, "%s", sl_lasterr());
                rc = sl_seterr(SL_EFORMAT, "%s:%zu: not JSON: %s", ix->sh[si].jsonl, this + 1, detail);
                break;
            }
            const char *iv = sl_json_get_str(&v, "id", NULL);
            int match = iv && !strcmp(iv, id);
            sl_json_free(&v);
            if (!match)
                continue;
            if (this >= ix->sh[si].rows) {
                rc = sl_seterr(SL_EFORMAT, "%s has more rows than %s: re-run the job to rewrite them",
                               ix->sh[si].jsonl, ix->sh[si].npy);
                break;
            }
            rc = read_row(&ix->sh[si], this, vec);
            if (!rc) {
                if (shard_out)
                    *shard_out = si;
                if (row_out)
                    *row_out = this;
            }
        }
        fclose(f);
    }
    free(line);
    if (rc == SL_ENOTFOUND)
        return sl_seterr(SL_ENOTFOUND, "track '%s' is not in the shards of %s", id, ix->dir);
    return rc;
}
