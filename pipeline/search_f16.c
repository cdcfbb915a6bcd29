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
static int file_stamp(const char *path, char *out, size_t cap)
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

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The manifest as parsed (NULL root type when there is none or it is unreadable). */
static int manifest_load(const char *dir, sl_json *root)
{
    memset(root, 0, sizeof *root);
    char *path = sl_strcat3(dir, "/" F16_DIR "/", "manifest.json");
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
                strcmp(sl_json_get_str(root, "format", ""), F16_FORMAT) != 0 ||
                sl_json_get_num(root, "format_version", 0) != 1)) {
        sl_json_free(root);
        memset(root, 0, sizeof *root);
        rc = SL_EFORMAT;
    }
    free(buf);
    return rc;
}

/* The manifest entry of shard file name, or NULL. */
static const sl_json *manifest_entry(const sl_json *root, const char *name)
{
    const sl_json *sh = sl_json_get(root, "shards");
    for (size_t i = 0; i < sl_json_len(sh); i++) {
        const sl_json *e = sl_json_at(sh, i);
        if (!strcmp(sl_json_get_str(e, "name", ""), name))
            return e;
    }
    return NULL;
}

/* 1 when entry e still describes float32 shard s for rows of mode unit and its copy
 * is there with the expected size (its header read into s). */
static int entry_valid(const sl_json *e, shard *s, int unit, const char *dir)
{
    char stamp[128];
    if (!e || s->f16 || sl_json_get_bool(e, "unit_rows", -1) != unit ||
        sl_json_get_num(e, "rows", -1) != (double)s->rows || sl_json_get_num(e, "dim", -1) != (double)s->dim ||
        file_stamp(s->npy, stamp, sizeof stamp) != 0 || strcmp(sl_json_get_str(e, "stamp", ""), stamp) != 0)
        return 0;
    double err = sl_json_get_num(e, "max_err", NAN), nrm = sl_json_get_num(e, "max_norm", NAN);
    if (!(err >= 0 && err < 1e30) || !(nrm >= 0 && nrm < 1e30))
        return 0;
    shard c = {0};
    c.npy = sl_strcat3(dir, "/" F16_DIR "/", base_name(s->npy));
    int ok = c.npy && sl_search_npy_header(&c) == 0 && c.f16 && c.rows == s->rows && c.dim == s->dim;
    if (ok) {
        free(s->npy16);
        s->npy16 = c.npy;
        s->data_off16 = c.data_off;
        s->file_size16 = c.file_size;
        s->err16 = err;
        s->norm16 = nrm;
    } else {
        free(c.npy);
    }
    return ok;
}

int sl_vindex_f16_prepare(sl_vindex *ix)
{
    const int unit = !ix->rows_normalized;
    if (ix->f16_checked == 1 + unit)
        return 0;
    ix->f16_checked = 1 + unit;
    ix->f16_valid = ix->f16_stale = ix->f16_f32 = 0;
    for (size_t i = 0; i < ix->n; i++) {
        ix->sh[i].has16 = 0;
        ix->f16_f32 += !ix->sh[i].f16;
    }
    sl_json root;
    int rc = manifest_load(ix->dir, &root);
    if (rc == SL_ENOMEM)
        return sl_seterr(rc, "search: out of memory");
    if (rc == SL_ENOTFOUND) {
        if (ix->f16_f32)
            SL_INFO("search: %s has no float16 scan copy: scanning the float32 shards (`stemline search OUT "
                     "--build-f16` makes one)", ix->dir);
        return 0;
    }
    for (size_t i = 0; i < ix->n; i++) { /* an unreadable manifest (rc SL_EFORMAT, root empty) describes none */
        shard *s = &ix->sh[i];
        if (s->f16)
            continue;
        s->has16 = entry_valid(manifest_entry(&root, base_name(s->npy)), s, unit, ix->dir);
        ix->f16_valid += s->has16;
        ix->f16_stale += !s->has16;
    }
    sl_json_free(&root);
    if (ix->f16_stale)
        SL_WARN("search: the float16 scan copy in %s/" F16_DIR " is stale or missing for %zu of %zu float32 "
                "shards (changed or new since it was built%s): those are scanned in float32; `stemline search "
                "OUT --build-f16` refreshes it",
                ix->dir, ix->f16_stale, ix->f16_f32, rc == SL_EFORMAT ? ", or its manifest is unreadable" : "");
    return 0;
}

void sl_vindex_set_f16(sl_vindex *ix, int use) { ix->f16_off = !use; }

void sl_vindex_f16_status(const sl_vindex *ix, size_t *valid, size_t *stale, size_t *f32_shards)
{
    *valid = ix->f16_off ? 0 : ix->f16_valid;
    *stale = ix->f16_off ? 0 : ix->f16_stale;
    *f32_shards = 0;
    for (size_t i = 0; i < ix->n; i++)
        *f32_shards += !ix->sh[i].f16;
}

/* ---------------------------------------------------------------- building */

/* Writes the copy of float32 shard s (rows divided by their double norm when unit)
 * to path; *max_err / *max_norm receive the largest |h - v| and |v| over its rows
 * (v: the row the exact score uses, h: its float16 copy). Rows that are not finite,
 * or whose copy would overflow float16, are written as NaN: the scan then always
 * rescores them from the float32 row. */
static int write_copy(const shard *s, const char *path, int unit, double *max_err, double *max_norm)
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
    *max_err = emax;
    *max_norm = nmax;
    return rc;
}

int sl_vindex_build_f16(sl_vindex *ix, size_t *written, size_t *kept)
{
    *written = *kept = 0;
    const int unit = !ix->rows_normalized;
    char *sub = sl_strcat3(ix->dir, "/", F16_DIR);
    if (!sub)
        return sl_seterr(SL_ENOMEM, "search: out of memory");
    int rc = sl_mkdirs(sub);
    sl_json old;
    int have_old = rc == 0 && manifest_load(ix->dir, &old) == 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = rc ? NULL : open_memstream(&buf, &len);
    if (!rc && !mf)
        rc = sl_seterr(SL_ENOMEM, "search: out of memory");
    if (mf)
        fputs("{\n  \"format\": \"" F16_FORMAT "\",\n  \"format_version\": 1,\n  \"shards\": [", mf);
    size_t n_out = 0;
    for (size_t i = 0; !rc && i < ix->n; i++) {
        shard *s = &ix->sh[i];
        if (s->f16)
            continue;
        const sl_json *e = have_old ? manifest_entry(&old, base_name(s->npy)) : NULL;
        double err = 0, nrm = 0;
        char stamp[128];
        if (entry_valid(e, s, unit, ix->dir)) {
            err = s->err16;
            nrm = s->norm16;
            snprintf(stamp, sizeof stamp, "%s", sl_json_get_str(e, "stamp", ""));
            ++*kept;
        } else { /* stamped before it is read: a shard that changes meanwhile leaves the copy stale */
            char *path = sl_strcat3(sub, "/", base_name(s->npy));
            rc = path ? file_stamp(s->npy, stamp, sizeof stamp) : sl_seterr(SL_ENOMEM, "search: out of memory");
            if (!rc)
                rc = write_copy(s, path, unit, &err, &nrm);
            free(path);
            if (rc)
                break;
            ++*written;
        }
        fprintf(mf, "%s\n    {\"name\": ", n_out++ ? "," : "");
        sl_json_str(mf, base_name(s->npy));
        fprintf(mf, ", \"rows\": %zu, \"dim\": %zu, \"unit_rows\": %s, \"stamp\": \"%s\", \"max_err\": %.17g, "
                    "\"max_norm\": %.17g}",
                s->rows, s->dim, unit ? "true" : "false", stamp, err, nrm);
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
            used = !ix->sh[i].f16 && !strcmp(base_name(ix->sh[i].npy), de->d_name);
        char *p = used ? NULL : sl_strcat3(sub, "/", de->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    free(buf);
    free(sub);
    ix->f16_checked = 0; /* checked again at the next search */
    return rc;
}
