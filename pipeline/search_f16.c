/* The float16 scan copy of an index's float32 shards (search.h,
 * "the float16 scan copy"): building it, and checking at search time which
 * shards it still describes. The scan that uses it is in search_scan.c. */
#include "pipeline/search.h"
#include "pipeline/search_impl.h"

#include "common/sl_str.h"
#include "common/sl_error.h"
#include "common/sl_json.h"
#include "common/sl_log.h"
#include "io/npy.h"

#include <dirent.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define F16_DIR ".scan-f16"
#define F16_FORMAT "stemline-f16-scan-copy"

/* "size:inode:seconds.nanoseconds" of a file: what ties a copy to its shard. */
static int sl_scan_copy_stamp(const char *path, char *out, size_t cap)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", path, strerror(e));
    }
    snprintf(out, cap, "%lld:%llu:%lld.%09ld", (long long)st.st_size, (unsigned long long)st.st_ino,
             (long long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec);
    return 0;
}

static const char *sl_scan_copy_base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The manifest as parsed (NULL root type when there is none or it is unreadable). */
static int sl_scan_copy_manifest(const char *dir, const char *sub, const char *fmt, sl_json *root)
{
    memset(root, 0, sizeof *root);
    char *d = sl_strcat3(dir, "/", sub);
    char *path = d ? sl_strcat3(d, "/", "manifest.json") : NULL;
    free(d);
    if (!path)
        return SL_ENOMEM;
    FILE *f = fopen(path, "rb");
    free(path);
    if (!f)
        return SL_ENOTFOUND;
    char *buf = NULL;
    size_t len = 0, cap = 0, r;
    char tmp[65536];
    int rc = 0;
    while (!rc && (r = fread(tmp, 1, sizeof tmp, f)) > 0) {
        if (len + r > ((size_t)64 << 20)) {
            rc = SL_EFORMAT;
            break;
        }
        if (len + r > cap) {
            cap = 2 * (len + r);
            char *nb = realloc(buf, cap);
            if (!nb) {
                rc = SL_ENOMEM;
                break;
            }
            buf = nb;
        }
        memcpy(buf + len, tmp, r);
        len += r;
    }
    fclose(f);
    if (!rc && (sl_json_parse(buf ? buf : "", len, root) != 0 || root->type != SL_JSON_OBJECT ||
                strcmp(sl_json_get_str(root, "format", ""), fmt) != 0 ||
                sl_json_get_num(root, "format_version", 0) != 1)) {
        sl_json_free(root);
        memset(root, 0, sizeof *root);
        rc = SL_EFORMAT;
    }
    free(buf);
    return rc;
}

/* The manifest entry of shard file name, or NULL. */
static const sl_json *sl_scan_copy_entry(const sl_json *root, const char *name)
{
    const sl_json *sh = sl_json_get(root, "shards");
    for (size_t i = 0; i < sl_json_len(sh); i++) {
        const sl_json *e = sl_json_at(sh, i);
        if (!strcmp(sl_json_get_str(e, "name", ""), name))
            return e;
    }
    return NULL;
}

/* 1 when entry e still describes float32 shard s for rows of mode unit (stamp,
 * rows, dim) and k's copy of it is there, whole. */
static int entry_valid(const sl_scan_copy_kind *k, const sl_json *e, shard *s, int unit, const char *dir)
{
    char stamp[128];
    if (!e || s->f16 || sl_json_get_bool(e, "unit_rows", -1) != unit ||
        sl_json_get_num(e, "rows", -1) != (double)s->rows || sl_json_get_num(e, "dim", -1) != (double)s->dim ||
        sl_scan_copy_stamp(s->npy, stamp, sizeof stamp) != 0 || strcmp(sl_json_get_str(e, "stamp", ""), stamp) != 0)
        return 0;
    char *d = sl_strcat3(dir, "/", k->sub);
    char *path = d ? sl_strcat3(d, "/", sl_scan_copy_base(s->npy)) : NULL;
    free(d);
    if (path && k->attach(e, s, path))
        return 1;
    free(path);
    return 0;
}

static sl_scan_copy_state *copy_state(sl_vindex *ix, const sl_scan_copy_kind *k)
{
    return (sl_scan_copy_state *)(void *)((char *)ix + k->state_off);
}

static int *copy_has(shard *s, const sl_scan_copy_kind *k) { return (int *)(void *)((char *)s + k->has_off); }

int sl_scan_copy_prepare(sl_vindex *ix, const sl_scan_copy_kind *k)
{
    const int unit = !ix->rows_normalized;
    sl_scan_copy_state *st = copy_state(ix, k);
    if (st->checked == 1 + unit)
        return 0;
    st->checked = 1 + unit;
    st->valid = st->stale = ix->f32_shards = 0;
    for (size_t i = 0; i < ix->n; i++) {
        *copy_has(&ix->sh[i], k) = 0;
        ix->f32_shards += !ix->sh[i].f16;
    }
    sl_json root;
    int rc = sl_scan_copy_manifest(ix->dir, k->sub, k->fmt, &root);
    if (rc == SL_ENOMEM)
        return sl_seterr(rc, "search: out of memory");
    if (rc == SL_ENOTFOUND) {
        if (ix->f32_shards)
            SL_INFO("search: %s has no %s scan copy (`stemline search OUT %s` makes one)", ix->dir, k->what,
                    k->flag);
        return 0;
    }
    for (size_t i = 0; i < ix->n; i++) { /* an unreadable manifest (rc SL_EFORMAT, root empty) describes none */
        shard *s = &ix->sh[i];
        if (s->f16)
            continue;
        const int ok = entry_valid(k, sl_scan_copy_entry(&root, sl_scan_copy_base(s->npy)), s, unit, ix->dir);
        *copy_has(s, k) = ok;
        st->valid += ok;
        st->stale += !ok;
    }
    sl_json_free(&root);
    if (st->stale)
        SL_WARN("search: the %s scan copy in %s/%s is stale or missing for %zu of %zu float32 "
                "shards (changed or new since it was built%s): those are scanned without it; `stemline search "
                "OUT %s` refreshes it",
                k->what, ix->dir, k->sub, st->stale, ix->f32_shards,
                rc == SL_EFORMAT ? ", or its manifest is unreadable" : "", k->flag);
    return 0;
}

void sl_scan_copy_status(const sl_vindex *ix, const sl_scan_copy_kind *k, size_t *valid, size_t *stale,
                         size_t *f32_shards)
{
    const sl_scan_copy_state *st = (const sl_scan_copy_state *)(const void *)((const char *)ix + k->state_off);
    *valid = st->off ? 0 : st->valid;
    *stale = st->off ? 0 : st->stale;
    *f32_shards = 0;
    for (size_t i = 0; i < ix->n; i++)
        *f32_shards += !ix->sh[i].f16;
}

void sl_vindex_set_f16(sl_vindex *ix, int use) { ix->copy16.off = !use; }

void sl_vindex_f16_status(const sl_vindex *ix, size_t *valid, size_t *stale, size_t *f32_shards)
{
    sl_scan_copy_status(ix, &sl_scan_copy_f16, valid, stale, f32_shards);
}

int sl_vindex_build_f16(sl_vindex *ix, size_t *written, size_t *kept)
{
    return sl_scan_copy_build(ix, &sl_scan_copy_f16, written, kept);
}

/* ---------------------------------------------------------------- the float16 copy */

static int f16_attach(const sl_json *e, shard *s, char *path)
{
    double err = sl_json_get_num(e, "max_err", NAN), nrm = sl_json_get_num(e, "max_norm", NAN);
    if (!(err >= 0 && err < 1e30) || !(nrm >= 0 && nrm < 1e30))
        return 0;
    shard c = {0};
    c.npy = path;
    if (sl_search_npy_header(&c) != 0 || !c.f16 || c.rows != s->rows || c.dim != s->dim)
        return 0;
    free(s->npy16);
    s->npy16 = path;
    s->data_off16 = c.data_off;
    s->file_size16 = c.file_size;
    s->err16 = err;
    s->norm16 = nrm;
    return 1;
}

static void f16_fields(FILE *mf, const shard *s)
{
    fprintf(mf, ", \"max_err\": %.17g, \"max_norm\": %.17g", s->err16, s->norm16);
}

/* Writes the copy of float32 shard s (rows divided by their double norm when unit)
 * to path; s->err16 / s->norm16 receive the largest |h - v| and |v| over its rows
 * (v: the row the exact score uses, h: its float16 copy). Rows that are not finite,
 * or whose copy would overflow float16, are written as NaN: the scan then always
 * rescores them from the float32 row. */
static int f16_write(shard *s, const char *path, int unit)
{
    const size_t dim = s->dim, chunk = 1024;
    int fd = open(s->npy, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return sl_seterr(-e, "%s: %s", s->npy, strerror(e));
    }
    unsigned char *raw = malloc(chunk * dim * 4);
    float *out = malloc(chunk * dim * sizeof *out);
    double *v = malloc(dim * sizeof *v);
    sl_npy_stream *st = NULL;
    int rc = raw && out && v ? 0 : sl_seterr(SL_ENOMEM, "search: out of memory");
    if (!rc)
        rc = sl_npy_stream_open(&st, path, dim, "float16");
    double emax = 0, nmax = 0;
    for (size_t r0 = 0; !rc && r0 < s->rows; r0 += chunk) {
        const size_t m = s->rows - r0 < chunk ? s->rows - r0 : chunk;
        if (pread(fd, raw, m * dim * 4, (off_t)(s->data_off + r0 * dim * 4)) != (ssize_t)(m * dim * 4)) {
            rc = sl_seterr(SL_EFORMAT, "%s: short read at row %zu", s->npy, r0);
            break;
        }
        float *x = out; /* converted in place: row r of the chunk becomes its copy */
        sl_npy_unpack(raw, x, m * dim, 0);
        for (size_t r = 0; r < m; r++) {
            float *row = x + r * dim;
            double ss = 0;
            int bad = 0;
            for (size_t i = 0; i < dim; i++) {
                bad |= !isfinite(row[i]);
                ss += (double)row[i] * row[i];
            }
            const double scale = unit ? (ss > 0 ? 1.0 / sqrt(ss) : 0.0) : 1.0;
            bad |= !isfinite(ss);
            double e2 = 0, n2 = 0;
            for (size_t i = 0; i < dim && !bad; i++) {
                v[i] = (double)row[i] * scale;
                const float h = sl_f16_to_f32(sl_f32_to_f16((float)v[i]));
                bad |= !isfinite(h);
                e2 += (h - v[i]) * (h - v[i]);
                n2 += v[i] * v[i];
                row[i] = h;
            }
            if (bad) {
                for (size_t i = 0; i < dim; i++)
                    row[i] = NAN;
                continue;
            }
            emax = fmax(emax, sqrt(e2));
            nmax = fmax(nmax, sqrt(n2));
        }
        rc = sl_npy_stream_rows(st, x, m);
    }
    close(fd);
    if (st) {
        if (rc)
            sl_npy_stream_abort(st);
        else
            rc = sl_npy_stream_commit(st);
    }
    free(raw);
    free(out);
    free(v);
    s->err16 = emax;
    s->norm16 = nmax;
    return rc;
}

const sl_scan_copy_kind sl_scan_copy_f16 = {F16_DIR, F16_FORMAT, "float16", "--build-f16",
                                            offsetof(sl_vindex, copy16), offsetof(shard, has16),
                                            f16_attach, f16_write, f16_fields, NULL};

/* ---------------------------------------------------------------- either copy */

int sl_scan_copy_build(sl_vindex *ix, const sl_scan_copy_kind *k, size_t *written, size_t *kept)
{
    *written = *kept = 0;
    const int unit = !ix->rows_normalized;
    char *sub = sl_strcat3(ix->dir, "/", k->sub);
    if (!sub)
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    int rc = sl_mkdirs(sub);
    sl_json old;
    int have_old = rc == 0 && sl_scan_copy_manifest(ix->dir, k->sub, k->fmt, &old) == 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = rc ? NULL : open_memstream(&buf, &len);
    if (!rc && !mf)
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
    if (mf)
        fprintf(mf, "{\n  \"format\": \"%s\",\n  \"format_version\": 1,\n  \"shards\": [", k->fmt);
    size_t n_out = 0;
    for (size_t i = 0; !rc && i < ix->n; i++) {
        shard *s = &ix->sh[i];
        if (s->f16)
            continue;
        const sl_json *e = have_old ? sl_scan_copy_entry(&old, sl_scan_copy_base(s->npy)) : NULL;
        char stamp[128];
        if (entry_valid(k, e, s, unit, ix->dir) && (!k->current || k->current(e))) {
            snprintf(stamp, sizeof stamp, "%s", sl_json_get_str(e, "stamp", ""));
            ++*kept;
        } else { /* stamped before it is read: a shard that changes meanwhile leaves the copy stale */
            char *path = sl_strcat3(sub, "/", sl_scan_copy_base(s->npy));
            rc = path ? sl_scan_copy_stamp(s->npy, stamp, sizeof stamp) : sl_seterr(SL_ENOMEM, "search: out of memory");
            if (!rc)
                rc = k->write(s, path, unit);
            free(path);
            if (rc)
                break;
            ++*written;
        }
        fprintf(mf, "%s\n    {\"name\": ", n_out++ ? "," : "");
        sl_json_str(mf, sl_scan_copy_base(s->npy));
        fprintf(mf, ", \"rows\": %zu, \"dim\": %zu, \"unit_rows\": %s, \"stamp\": \"%s\"", s->rows, s->dim,
                unit ? "true" : "false", stamp);
        k->fields(mf, s);
        fputc('}', mf);
    }
    if (have_old)
        sl_json_free(&old);
    if (mf) {
        fputs("\n  ]\n}\n", mf);
        if (fclose(mf) != 0 && !rc)
            rc = sl_seterr(SL_ENOMEM, "search: out of memory");
    }
    if (!rc) {
        char *mp = sl_strcat3(sub, "/", "manifest.json");
        rc = mp ? sl_write_file_atomic(mp, buf, len) : sl_seterr(SL_ENOMEM, "search: out of memory");
        free(mp);
    }
    /* copies of shards that are gone */
    DIR *d = rc ? NULL : opendir(sub);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 5 || strcmp(de->d_name + nl - 4, ".npy") != 0)
            continue;
        int used = 0;
        for (size_t i = 0; !used && i < ix->n; i++)
            used = !ix->sh[i].f16 && !strcmp(sl_scan_copy_base(ix->sh[i].npy), de->d_name);
        char *p = used ? NULL : sl_strcat3(sub, "/", de->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    free(buf);
    free(sub);
    copy_state(ix, k)->checked = 0; /* checked again at the next search */
    return rc;
}
