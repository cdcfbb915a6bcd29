/* Job runner: output paths (stem templates, collisions, JSON lists of paths). */
#include "run_internal.h"

/* ---- output paths ---- */

/* Expands the stem template. Path components ".." and "." coming from a track id
 * are neutralised so that no input can write outside output.dir. */
int expand_template(const char *tpl, const char *id, const char *stem, const char *ext,
                           char *out, size_t size)
{
    char base[4096];
    snprintf(base, sizeof base, "%s", id);
    char *slash = strrchr(base, '/');
    char *dot = strrchr(base, '.');
    if (dot && (!slash || dot > slash + 1))
        *dot = 0;
    size_t o = 0;
    for (const char *p = tpl; *p;) {
        const char *val = NULL;
        size_t skip = 0;
        if (!strncmp(p, "{track}", 7))
            val = id, skip = 7;
        else if (!strncmp(p, "{stem}", 6))
            val = stem, skip = 6;
        else if (!strncmp(p, "{ext}", 5))
            val = ext, skip = 5;
        else if (!strncmp(p, "{base}", 6))
            val = base, skip = 6;
        if (val) {
            size_t n = strlen(val);
            if (o + n >= size)
                return SL_EINVAL;
            memcpy(out + o, val, n);
            o += n;
            p += skip;
        } else {
            if (o + 1 >= size)
                return SL_EINVAL;
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    /* neutralise "." and ".." components and leading '/' */
    char tmp[4096];
    size_t t = 0;
    const char *s = out;
    while (*s == '/')
        s++;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 0) {
            /* collapse "//" */
        } else if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.')) {
            if (t + 3 >= sizeof tmp)
                return SL_EINVAL;
            memcpy(tmp + t, len == 1 ? "_/" : "__/", len + 1);
            t += len + 1;
        } else {
            if (t + len + 1 >= sizeof tmp)
                return SL_EINVAL;
            memcpy(tmp + t, s, len);
            t += len;
            tmp[t++] = '/';
        }
        s += len;
        if (*s == '/')
            s++;
    }
    if (t)
        t--; /* drop the trailing '/' */
    tmp[t] = 0;
    if (t + 1 > size)
        return SL_EINVAL;
    memcpy(out, tmp, t + 1);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Two tracks must never write the same file: checked before anything runs. */
int check_output_collisions(runner *r)
{
    if (!r->sep || !r->cfg->stems_enabled || r->cat.n < 2)
        return 0;
    size_t n = r->cat.n;
    char **paths = calloc(n, sizeof *paths);
    if (!paths)
        return SL_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        char buf[4096];
        rc = expand_template(r->cfg->stems_template, r->cat.tracks[i].id, r->sep->sources[0],
                             sl_encode_ext(r->cfg->stems_format), buf, sizeof buf);
        if (rc)
            rc = sl_seterr(SL_ECONFIG, "output.stems.template: path too long for track '%s'",
                           r->cat.tracks[i].id);
        else if (!(paths[i] = malloc(strlen(buf) + strlen(r->cat.tracks[i].id) + 2)))
            rc = SL_ENOMEM;
        else
            sprintf(paths[i], "%s%c%s", buf, 0x01, r->cat.tracks[i].id);
    }
    if (!rc) {
        qsort(paths, n, sizeof *paths, cmp_str);
        for (size_t i = 1; i < n; i++) {
            size_t la = strcspn(paths[i - 1], "\x01"), lb = strcspn(paths[i], "\x01");
            if (la == lb && !strncmp(paths[i - 1], paths[i], la)) {
                paths[i - 1][la] = 0;
                rc = sl_seterr(SL_ECONFIG,
                               "output.stems.template '%s' makes tracks '%s' and '%s' write the same file "
                               "%s; use {track} in the template",
                               r->cfg->stems_template, paths[i - 1] + la + 1, paths[i] + lb + 1,
                               paths[i - 1]);
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
    return rc;
}

int append_json_path(char **buf, size_t *len, size_t *cap, const char *s)
{
    size_t need = *len + strlen(s) * 6 + 8;
    if (need > *cap) {
        size_t nc = need * 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return SL_ENOMEM;
        *buf = nb;
        *cap = nc;
    }
    char *o = *buf + *len;
    if (*len > 1)
        *o++ = ',';
    *o++ = '"';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20) {
            o += sprintf(o, "\\u%04x", c);
        } else {
            *o++ = (char)c;
        }
    }
    *o++ = '"';
    *o = 0;
    *len = (size_t)(o - *buf);
    return 0;
}
