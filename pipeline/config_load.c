/* Reading a job file: libyaml document API, --set overrides, value checks.
 *
 * The document API (not the event stream) is used so that every node keeps
 * its start mark; every error can then point at a line and column.
 * Relative paths are kept exactly as written and are therefore resolved
 * against the current working directory of the process, not the folder of
 * the job file: a job is read the same way whether it is given as
 * "jobs/a.yaml" or "../jobs/a.yaml", and --set values behave like file
 * values. */
#include "config.h"
#include "config_impl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "../common/sl_error.h"
#include "../io/encode.h"

static const char *const placeholders[] = {"track", "stem", "ext", "base"};

/* ------------------------------------------------------------------ */
/* loading */

/* Where a value came from: a file position, or an override. */
typedef struct {
    const char *set; /* the override text when it came from --set, else NULL */
    size_t line, col;
} loc;

typedef struct {
    sl_config *cfg;
    const char *file;
    const char *set; /* override being applied, NULL while reading the file */
    yaml_document_t *doc;
    int in_file[SL_CFG_MAX_KEYS];  /* key given in the file already (duplicate detection) */
    int given[SL_CFG_MAX_KEYS];    /* sequence number of the last assignment, 0 = default */
    loc where[SL_CFG_MAX_KEYS];
    int seq;
} ctx;

static loc node_loc(const ctx *c, const yaml_node_t *n)
{
    loc l = {c->set, 0, 0};
    if (!c->set && n) {
        l.line = n->start_mark.line + 1;
        l.col = n->start_mark.column + 1;
    }
    return l;
}

static int loc_err(const ctx *c, loc l, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int loc_err(const ctx *c, loc l, const char *key, const char *fmt, ...)
{
    char reason[640];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (l.set)
        return sl_seterr(SL_ECONFIG, "--set '%s': key '%s': %s", l.set, key, reason);
    return sl_seterr(SL_ECONFIG, "%s:%zu:%zu: key '%s': %s", c->file, l.line, l.col, key, reason);
}

#define NERR(c, node, key, ...) loc_err((c), node_loc((c), (node)), (key), __VA_ARGS__)

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    default:
        return "a scalar";
    }
}

static const char *sc(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int is_null(const yaml_node_t *n)
{
    if (!n)
        return 1;
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = sc(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* Short form of a scalar for messages. */
static const char *shown(const yaml_node_t *n, char *buf, size_t size)
{
    const char *s = sc(n);
    size_t len = strlen(s);
    if (len + 1 <= size)
        memcpy(buf, s, len + 1);
    else
        snprintf(buf, size, "%.*s...", (int)(size - 4), s);
    return buf;
}

static const char *type_desc(const keydef *k)
{
    switch (k->type) {
    case K_VERSION:
    case K_INT:
        return "an integer";
    case K_NUM:
        return "a number";
    case K_BOOL:
        return "a boolean (true/false, yes/no, on/off)";
    case K_LIST:
        return "a list of strings";
    case K_OPTS:
        return "a mapping of option names to scalar values";
    case K_STRNULL:
        return "a string or null";
    default:
        return "a string";
    }
}

/* A non-null scalar string without NUL bytes. */
static int want_string(ctx *c, const keydef *k, const char *name, const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE)
        return NERR(c, n, name, "expected %s, got %s", type_desc(k), node_kind(n));
    if (is_null(n))
        return NERR(c, n, name, "expected %s, got null", type_desc(k));
    if (strlen(sc(n)) != n->data.scalar.length)
        return NERR(c, n, name, "contains a NUL character");
    if (!*sc(n))
        return NERR(c, n, name, "must not be empty");
    return 0;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const t[] = {"true", "yes", "on"}, *const f[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, t[i])) {
            *out = 1;
            return 0;
        }
        if (!strcasecmp(s, f[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* 0 ok, -1 not an integer, -2 overflow */
/* A finite decimal number (YAML int or float syntax, no inf/nan). */
static int parse_num(const char *s, double *out)
{
    char *end;
    if (!*s || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || end == s || errno == ERANGE || v != v || v > 1e300 || v < -1e300)
        return -1;
    for (const char *q = s; *q; q++)
        if (isalpha((unsigned char)*q) && *q != 'e' && *q != 'E')
            return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, long long *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return -1;
    for (const char *q = p; *q; q++)
        if (!isdigit((unsigned char)*q))
            return -1;
    errno = 0;
    long long v = strtoll(s, NULL, 10);
    if (errno == ERANGE)
        return -2;
    *out = v;
    return 0;
}

static int check_template(ctx *c, const char *name, const yaml_node_t *n, const char *t)
{
    int has_stem = 0, has_track = 0;
    if (t[0] == '/')
        return NERR(c, n, name, "must be a relative path inside output.dir, not '%s'", t);
    for (const char *p = t; *p; p++) {
        if (*p == '}')
            return NERR(c, n, name, "'}' without a matching '{' (allowed placeholders: {track} {stem} {ext} {base})");
        if (*p != '{')
            continue;
        const char *e = strchr(p + 1, '}');
        const char *o = strchr(p + 1, '{');
        if (!e || (o && o < e))
            return NERR(c, n, name, "'{' without a matching '}' (allowed placeholders: {track} {stem} {ext} {base})");
        size_t len = (size_t)(e - p - 1);
        int known = -1;
        for (int i = 0; i < 4; i++)
            if (strlen(placeholders[i]) == len && !strncmp(p + 1, placeholders[i], len))
                known = i;
        if (known < 0)
            return NERR(c, n, name, "unknown placeholder '{%.*s}' (allowed: {track} {stem} {ext} {base})",
                        (int)len, p + 1);
        has_stem |= known == 1;
        has_track |= known == 0 || known == 3;
        p = e;
    }
    if (!has_stem)
        return NERR(c, n, name, "must contain {stem}, or every stem of a track would go to the same file");
    if (!has_track)
        return NERR(c, n, name, "must contain {track} or {base}, or every track would write the same files");
    /* no ".." component: outputs stay inside output.dir */
    for (const char *p = t; *p;) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return NERR(c, n, name, "must not contain '..': stems stay inside output.dir");
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

static int enum_check(ctx *c, const keydef *k, const char *name, const yaml_node_t *n)
{
    const char *v = sc(n);
    char buf[64], choices[128];
    size_t best = (size_t)-1;
    char pick[64] = "";
    const char *p = k->choices;
    choices[0] = 0;
    while (*p) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s", (int)len, p);
        if (!strcmp(buf, v))
            return 0;
        size_t d = sl_cfg_levenshtein(v, buf);
        if (d < best) {
            best = d;
            snprintf(pick, sizeof pick, "%s", buf);
        }
        size_t cl = strlen(choices);
        snprintf(choices + cl, sizeof choices - cl, "%s%s", cl ? ", " : "", buf);
        p = e ? e + 1 : p + len;
    }
    char vb[80];
    if (best <= 2 && best < strlen(v))
        return NERR(c, n, name, "must be one of %s, got '%s' (did you mean '%s'?)", choices,
                    shown(n, vb, sizeof vb), pick);
    return NERR(c, n, name, "must be one of %s, got '%s'", choices, shown(n, vb, sizeof vb));
}

static int add_opt(ctx *c, sl_cfg_opts *o, const char *okey, const char *name, const yaml_node_t *kn,
                   const yaml_node_t *vn)
{
    if (vn->type != YAML_SCALAR_NODE)
        return NERR(c, vn, name, "option values must be scalars (numbers, strings, booleans), got %s",
                    node_kind(vn));
    if (strlen(sc(vn)) != vn->data.scalar.length)
        return NERR(c, vn, name, "contains a NUL character");
    loc l = node_loc(c, vn);
    size_t i;
    for (i = 0; i < o->n; i++)
        if (!strcmp(o->items[i].key, okey))
            break;
    if (i < o->n && !c->set && o->items[i].line > 0)
        return NERR(c, kn, name, "duplicate key (first given at line %d, column %d)", o->items[i].line,
                    o->items[i].column);
    if (i == o->n) {
        sl_cfg_opt *ni = realloc(o->items, (o->n + 1) * sizeof *ni);
        if (!ni)
            return sl_seterr(SL_ENOMEM, "out of memory");
        o->items = ni;
        memset(&o->items[o->n], 0, sizeof o->items[0]);
        if (!(o->items[o->n].key = sl_cfg_strdup(okey)))
            return sl_seterr(SL_ENOMEM, "out of memory");
        o->n++;
    }
    sl_cfg_opt *it = &o->items[i];
    char *v = sl_cfg_strdup(sc(vn)), *f = sl_cfg_strdup(c->set ? "--set" : c->file);
    if (!v || !f) {
        free(v);
        free(f);
        return sl_seterr(SL_ENOMEM, "out of memory");
    }
    free(it->value);
    free(it->file);
    it->value = v;
    it->file = f;
    it->line = (int)l.line;
    it->column = (int)l.col;
    return 0;
}

static int check_mapping_dups(ctx *c, const yaml_node_t *map, const char *prefix);

static int set_opts(ctx *c, const keydef *k, const char *name, const yaml_node_t *n)
{
    sl_cfg_opts *o = fld_opts(c->cfg, k);
    if (!c->set)
        for (size_t i = 0; i < o->n; i++)
            if (o->items[i].line > 0)
                return NERR(c, n, name, "duplicate key (options given before at line %d, column %d)",
                            o->items[i].line, o->items[i].column);
    sl_cfg_free_opts(o);
    if (is_null(n))
        return 0;
    if (n->type != YAML_MAPPING_NODE)
        return NERR(c, n, name, "expected %s, got %s", type_desc(k), node_kind(n));
    int rc = check_mapping_dups(c, n, name);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
        char full[256];
        sl_cfg_join_name(full, sizeof full, name, sc(kn));
        if ((rc = add_opt(c, o, sc(kn), full, kn, vn)))
            return rc;
    }
    return 0;
}

static int set_list(ctx *c, const keydef *k, const char *name, const yaml_node_t *n)
{
    char **l = NULL;
    size_t cnt = 0;
    int rc = 0;
    const yaml_node_t *one[1] = {n};
    size_t n_items = 0;
    if (n->type == YAML_MAPPING_NODE)
        return NERR(c, n, name, "expected %s, got a mapping", type_desc(k));
    if (n->type == YAML_SCALAR_NODE)
        n_items = is_null(n) ? 0 : 1;
    else
        n_items = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (n_items && !(l = calloc(n_items, sizeof *l)))
        return sl_seterr(SL_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_items; i++) {
        const yaml_node_t *it = n->type == YAML_SCALAR_NODE
                                    ? one[0]
                                    : yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        if (it->type != YAML_SCALAR_NODE) {
            rc = NERR(c, it, name, "list items must be strings, got %s", node_kind(it));
            goto fail;
        }
        if ((rc = want_string(c, k, name, it)))
            goto fail;
        const char *s = sc(it);
        if ((k->flags & KF_NAMES) && strchr(s, '/')) {
            char vb[80];
            rc = NERR(c, it, name, "'%s' is not a name (contains '/')", shown(it, vb, sizeof vb));
            goto fail;
        }
        if (k->flags & KF_NAMES)
            for (size_t j = 0; j < cnt; j++)
                if (!strcmp(l[j], s)) {
                    char vb[80];
                    rc = NERR(c, it, name, "'%s' is listed twice", shown(it, vb, sizeof vb));
                    goto fail;
                }
        if (k->flags & KF_EXT) {
            while (*s == '.')
                s++;
            if (!*s || strchr(s, '/')) {
                char vb[80];
                rc = NERR(c, it, name, "'%s' is not a file extension", shown(it, vb, sizeof vb));
                goto fail;
            }
        }
        if (!(l[cnt] = sl_cfg_strdup(s))) {
            rc = sl_seterr(SL_ENOMEM, "out of memory");
            goto fail;
        }
        if (k->flags & KF_EXT)
            for (char *q = l[cnt]; *q; q++)
                *q = (char)tolower((unsigned char)*q);
        cnt++;
    }
    if ((k->flags & KF_NONEMPTY) && !cnt) {
        rc = NERR(c, n, name, "must list at least one entry");
        goto fail;
    }
    sl_cfg_free_list(*fld_list(c->cfg, k), *fld_cnt(c->cfg, k));
    *fld_list(c->cfg, k) = l;
    *fld_cnt(c->cfg, k) = cnt;
    return 0;
fail:
    sl_cfg_free_list(l, cnt);
    return rc;
}

static int set_value(ctx *c, const keydef *k, const char *name, const yaml_node_t *n)
{
    char vb[80];
    int rc;
    long long v;
    switch (k->type) {
    case K_LIST:
        return set_list(c, k, name, n);
    case K_OPTS:
        return set_opts(c, k, name, n);
    case K_STRNULL:
        if (n->type == YAML_SCALAR_NODE && is_null(n)) {
            free(*fld_str(c->cfg, k));
            *fld_str(c->cfg, k) = NULL;
            return 0;
        }
        /* fall through */
    case K_STR:
    case K_ENUM: {
        if ((rc = want_string(c, k, name, n)))
            return rc;
        if (k->type == K_ENUM && (rc = enum_check(c, k, name, n)))
            return rc;
        if ((k->flags & KF_TEMPLATE) && (rc = check_template(c, name, n, sc(n))))
            return rc;
        char *s = sl_cfg_strdup(sc(n));
        if (!s)
            return sl_seterr(SL_ENOMEM, "out of memory");
        free(*fld_str(c->cfg, k));
        *fld_str(c->cfg, k) = s;
        return 0;
    }
    case K_BOOL: {
        int b;
        if (n->type != YAML_SCALAR_NODE)
            return NERR(c, n, name, "expected %s, got %s", type_desc(k), node_kind(n));
        if (parse_bool(sc(n), &b))
            return NERR(c, n, name, "expected %s, got '%s'", type_desc(k), shown(n, vb, sizeof vb));
        *fld_int(c->cfg, k) = b;
        return 0;
    }
    case K_NUM: {
        double d;
        if (n->type != YAML_SCALAR_NODE)
            return NERR(c, n, name, "expected %s, got %s", type_desc(k), node_kind(n));
        if (parse_num(sc(n), &d))
            return NERR(c, n, name, "expected %s, got '%s'", type_desc(k), shown(n, vb, sizeof vb));
        if (d < (double)k->min || d > (double)k->max)
            return NERR(c, n, name, "must be between %lld and %lld, got '%s'", k->min, k->max,
                        shown(n, vb, sizeof vb));
        *fld_num(c->cfg, k) = d;
        return 0;
    }
    case K_INT:
    case K_VERSION:
        if (n->type != YAML_SCALAR_NODE)
            return NERR(c, n, name, "expected %s, got %s", type_desc(k), node_kind(n));
        rc = parse_int(sc(n), &v);
        if (rc == -1)
            return NERR(c, n, name, "expected %s, got '%s'", type_desc(k), shown(n, vb, sizeof vb));
        if (rc == -2 || v < k->min || v > k->max) {
            if (k->type == K_VERSION)
                return NERR(c, n, name, "must be 1 (the only job file version this stemline reads), got '%s'",
                            shown(n, vb, sizeof vb));
            return NERR(c, n, name, "must be between %lld and %lld, got '%s'", k->min, k->max,
                        shown(n, vb, sizeof vb));
        }
        if (k->off != NOF)
            *fld_int(c->cfg, k) = (int)v;
        return 0;
    }
    return 0;
}

static int apply_mapping(ctx *c, const yaml_node_t *map, const char *prefix);

static int options_key(const char *name, const keydef **k, const char **rest)
{
    for (size_t i = 0; i < sl_cfg_nkeys; i++) {
        if (sl_cfg_keys[i].type != K_OPTS)
            continue;
        size_t len = strlen(sl_cfg_keys[i].name);
        if (!strncmp(name, sl_cfg_keys[i].name, len) && name[len] == '.') {
            *k = &sl_cfg_keys[i];
            *rest = name + len + 1;
            return 1;
        }
    }
    return 0;
}

/* Assigns one dotted name: a key, a section (mapping), or one model option. */
static int apply_key(ctx *c, const char *name, const yaml_node_t *kn, const yaml_node_t *vn)
{
    const keydef *k = sl_cfg_find_key(name);
    char sb[128];
    if (k) {
        size_t i = (size_t)(k - sl_cfg_keys);
        if (!c->set && c->in_file[i])
            return NERR(c, kn, name, "duplicate key (first given at line %zu, column %zu)", c->where[i].line,
                        c->where[i].col);
        int rc = set_value(c, k, name, vn);
        if (rc)
            return rc;
        if (!c->set)
            c->in_file[i] = 1;
        c->given[i] = ++c->seq;
        c->where[i] = node_loc(c, c->set ? NULL : kn);
        return 0;
    }
    if (sl_cfg_is_section(name)) {
        if (is_null(vn))
            return 0;
        if (vn->type != YAML_MAPPING_NODE)
            return NERR(c, vn, name, "expected a mapping (a section of keys), got %s", node_kind(vn));
        return apply_mapping(c, vn, name);
    }
    const char *rest;
    if (options_key(name, &k, &rest)) {
        if (!*rest || strchr(rest, '.'))
            return NERR(c, kn, name, "model options are a flat mapping: use %s.NAME", k->name);
        return add_opt(c, fld_opts(c->cfg, k), rest, name, kn, vn);
    }
    const char *s = sl_cfg_suggest(name, sb, sizeof sb);
    if (s)
        return NERR(c, kn, name, "unknown key (did you mean '%s'?)", s);
    return NERR(c, kn, name, "unknown key (see configs/README.md for the list of keys)");
}

static int key_text(ctx *c, const yaml_node_t *kn, const char *prefix, char *out, size_t size)
{
    if (kn->type != YAML_SCALAR_NODE || is_null(kn))
        return NERR(c, kn, prefix && *prefix ? prefix : "(top level)", "keys must be plain names, got %s",
                    kn->type == YAML_SCALAR_NODE ? "null" : node_kind(kn));
    const char *s = sc(kn);
    if (strlen(s) != kn->data.scalar.length || strlen(s) + (prefix ? strlen(prefix) : 0) + 2 > size)
        return NERR(c, kn, prefix && *prefix ? prefix : "(top level)", "key too long or not text");
    sl_cfg_join_name(out, size, prefix, s);
    return 0;
}

static int check_mapping_dups(ctx *c, const yaml_node_t *map, const char *prefix)
{
    char name[256];
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
        int rc = key_text(c, kn, prefix, name, sizeof name);
        if (rc)
            return rc;
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *qn = yaml_document_get_node(c->doc, q->key);
            if (qn->type == YAML_SCALAR_NODE && !strcmp(sc(qn), sc(kn)))
                return NERR(c, kn, name, "duplicate key (first given at line %zu, column %zu)",
                            (size_t)qn->start_mark.line + 1, (size_t)qn->start_mark.column + 1);
        }
    }
    return 0;
}

static int apply_mapping(ctx *c, const yaml_node_t *map, const char *prefix)
{
    int rc = check_mapping_dups(c, map, prefix);
    if (rc)
        return rc;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
        char name[256];
        key_text(c, kn, prefix, name, sizeof name);
        if ((rc = apply_key(c, name, kn, vn)))
            return rc;
    }
    return 0;
}

static int syntax_err(const char *where, const yaml_parser_t *p, int is_set)
{
    const char *problem = p->problem ? p->problem : "malformed document";
    if (p->error == YAML_MEMORY_ERROR)
        return sl_seterr(SL_ENOMEM, "%s: out of memory while parsing YAML", where);
    if (p->error == YAML_READER_ERROR && !strcmp(problem, "input error"))
        return sl_seterr(SL_EIO, "%s: cannot read job file", where);
    if (is_set)
        return sl_seterr(SL_ECONFIG,
                         "--set '%s': YAML syntax error: %s (quote values that start with '{', '[', '*', '&' or "
                         "contain ': ', e.g. --set 'key=\"{track}/{stem}.wav\"')",
                         where, problem);
    yaml_mark_t m = p->problem_mark;
    /* libyaml reports some problems against the context mark only */
    if (m.line == 0 && m.column == 0 && p->context)
        m = p->context_mark;
    return sl_seterr(SL_ECONFIG, "%s:%zu:%zu: YAML syntax error: %s", where, m.line + 1, m.column + 1, problem);
}

/* Parses one YAML document; a second document is an error. */
static int load_doc(yaml_parser_t *p, yaml_document_t *doc, const char *where, int is_set)
{
    if (!yaml_parser_load(p, doc))
        return syntax_err(where, p, is_set);
    yaml_document_t extra;
    if (!yaml_parser_load(p, &extra)) {
        yaml_document_delete(doc);
        return syntax_err(where, p, is_set);
    }
    int more = yaml_document_get_root_node(&extra) != NULL;
    yaml_mark_t m = extra.start_mark;
    yaml_document_delete(&extra);
    if (more) {
        yaml_document_delete(doc);
        if (is_set)
            return sl_seterr(SL_ECONFIG, "--set '%s': YAML syntax error: more than one document", where);
        return sl_seterr(SL_ECONFIG, "%s:%zu:%zu: YAML syntax error: a job file holds one YAML document",
                         where, m.line + 1, m.column + 1);
    }
    return 0;
}

static int apply_override(ctx *c, const char *ov)
{
    const char *eq = strchr(ov, '=');
    if (!eq)
        return sl_seterr(SL_ECONFIG, "--set '%s': expected KEY=VALUE, e.g. --set runtime.decode_threads=4", ov);
    const char *ks = ov, *ke = eq;
    while (ks < ke && isspace((unsigned char)*ks))
        ks++;
    while (ke > ks && isspace((unsigned char)ke[-1]))
        ke--;
    if (ks == ke || (size_t)(ke - ks) >= 256)
        return sl_seterr(SL_ECONFIG, "--set '%s': expected KEY=VALUE with a key like runtime.decode_threads", ov);
    char name[256];
    memcpy(name, ks, (size_t)(ke - ks));
    name[ke - ks] = 0;

    yaml_parser_t p;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&p))
        return sl_seterr(SL_ENOMEM, "out of memory");
    const char *val = eq + 1;
    yaml_parser_set_input_string(&p, (const unsigned char *)val, strlen(val));
    int rc = load_doc(&p, &doc, ov, 1);
    yaml_parser_delete(&p);
    if (rc)
        return rc;
    c->doc = &doc;
    c->set = ov;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    yaml_node_t null_node;
    if (!root) {
        memset(&null_node, 0, sizeof null_node);
        null_node.type = YAML_SCALAR_NODE;
        null_node.data.scalar.value = (yaml_char_t *)"";
        null_node.data.scalar.style = YAML_PLAIN_SCALAR_STYLE;
        root = &null_node;
    }
    rc = apply_key(c, name, NULL, root);
    c->set = NULL;
    c->doc = NULL;
    yaml_document_delete(&doc);
    return rc;
}

/* Checks that need more than one key; blames the key given last. */
static int cross_checks(ctx *c)
{
    sl_config *cfg = c->cfg;
    if (strcmp(cfg->precision, "fp32") && !strcmp(cfg->backend, "cuda-emu")) {
        size_t pi = (size_t)(sl_cfg_find_key("runtime.precision") - sl_cfg_keys);
        size_t bi = (size_t)(sl_cfg_find_key("runtime.backend") - sl_cfg_keys);
        size_t b = c->given[bi] > c->given[pi] ? bi : pi;
        return loc_err(c, c->where[b], sl_cfg_keys[b].name,
                       "runtime.precision %s needs a CUDA device or the CPU (backend cuda, cpu or auto); backend %s "
                       "computes in fp32 only (set runtime.precision: fp32)",
                       cfg->precision, cfg->backend);
    }
    if (!strcmp(cfg->stems_format, "flac") && !strcmp(cfg->stems_sample_format, "f32")) {
        size_t fi = (size_t)(sl_cfg_find_key("output.stems.format") - sl_cfg_keys);
        size_t si = (size_t)(sl_cfg_find_key("output.stems.sample_format") - sl_cfg_keys);
        size_t b = c->given[fi] > c->given[si] ? fi : si;
        return loc_err(c, c->where[b], sl_cfg_keys[b].name,
                       "f32 samples cannot be stored in FLAC (use output.stems.sample_format s16 or s24, or "
                       "output.stems.format wav)");
    }
    {
        size_t fi = (size_t)(sl_cfg_find_key("output.stems.format") - sl_cfg_keys);
        size_t bi = (size_t)(sl_cfg_find_key("output.stems.bitrate") - sl_cfg_keys);
        size_t si = (size_t)(sl_cfg_find_key("output.stems.sample_format") - sl_cfg_keys);
        int def, lo, hi;
        int lossy = sl_encode_lossy(cfg->stems_format, &def, &lo, &hi);
        if (!lossy && cfg->stems_bitrate) {
            size_t b = c->given[fi] > c->given[bi] ? fi : bi;
            return loc_err(c, c->where[b], sl_cfg_keys[b].name,
                           "output.stems.bitrate applies to lossy formats (opus, mp3, aac, ogg), not %s",
                           cfg->stems_format);
        }
        if (lossy && c->given[si] && strcmp(cfg->stems_sample_format, "s16")) {
            size_t b = c->given[fi] > c->given[si] ? fi : si;
            return loc_err(c, c->where[b], sl_cfg_keys[b].name,
                           "output.stems.sample_format applies to wav and flac; %s stems are encoded from float "
                           "samples (set output.stems.bitrate instead)", cfg->stems_format);
        }
        if (lossy && cfg->stems_bitrate && (cfg->stems_bitrate < lo || cfg->stems_bitrate > hi)) {
            size_t b = c->given[fi] > c->given[bi] ? fi : bi;
            return loc_err(c, c->where[b], sl_cfg_keys[b].name, "%s stems take %d..%d kbit/s, not %d", cfg->stems_format,
                           lo, hi, cfg->stems_bitrate);
        }
    }
    {
        size_t li = (size_t)(sl_cfg_find_key("embedding.text_labels") - sl_cfg_keys);
        size_t ti = (size_t)(sl_cfg_find_key("embedding.text_template") - sl_cfg_keys);
        size_t mi = (size_t)(sl_cfg_find_key("embedding.model") - sl_cfg_keys);
        if ((cfg->emb_text_labels || cfg->emb_text_template) && strcmp(cfg->emb_model, "clap")) {
            size_t b = cfg->emb_text_labels ? li : ti;
            b = c->given[mi] > c->given[b] ? mi : b;
            return loc_err(c, c->where[b], sl_cfg_keys[b].name,
                           "zero-shot labels need a model with a text tower (embedding.model: clap), not %s",
                           cfg->emb_model);
        }
        if (cfg->emb_text_template && !cfg->emb_text_labels)
            return loc_err(c, c->where[ti], sl_cfg_keys[ti].name, "a template without embedding.text_labels");
        const char *h = cfg->emb_text_template ? strstr(cfg->emb_text_template, "{}") : NULL;
        if (cfg->emb_text_template && (!h || strstr(h + 2, "{}")))
            return loc_err(c, c->where[ti], sl_cfg_keys[ti].name, "the template must hold {} exactly once (where the label goes)");
    }
    size_t si = (size_t)(sl_cfg_find_key("embedding.sources") - sl_cfg_keys);
    for (size_t i = 0; i < cfg->n_emb_sources; i++)
        if (strcmp(cfg->emb_sources[i], "mix") && !strcmp(cfg->sep_model, "none")) {
            size_t mi = (size_t)(sl_cfg_find_key("separation.model") - sl_cfg_keys);
            size_t b = c->given[mi] > c->given[si] ? mi : si;
            return loc_err(c, c->where[b], sl_cfg_keys[b].name,
                           "embedding.sources lists the stem '%s' but separation.model is none (only 'mix' can "
                           "be embedded without separation)",
                           cfg->emb_sources[i]);
        }
    if (c->given[si]) {
        /* the stem names are known once the separation model is open: keep the
         * place, so that the runner can point at it */
        char at[600];
        const loc *l = &c->where[si];
        if (l->set)
            snprintf(at, sizeof at, "--set '%s'", l->set);
        else
            snprintf(at, sizeof at, "%s:%zu:%zu", c->file, l->line, l->col);
        free(cfg->emb_sources_at);
        if (!(cfg->emb_sources_at = sl_cfg_strdup(at)))
            return sl_seterr(SL_ENOMEM, "out of memory");
    }
    return 0;
}

static int load_common(sl_config *cfg, yaml_parser_t *p, const char *name, const char *const *overrides,
                       size_t n_overrides)
{
    int rc = sl_cfg_defaults(cfg);
    if (rc)
        return rc;
    ctx *c = calloc(1, sizeof *c);
    if (!c || !(cfg->source_file = sl_cfg_strdup(name))) {
        free(c);
        sl_cfg_free(cfg);
        return sl_seterr(SL_ENOMEM, "out of memory");
    }
    c->cfg = cfg;
    c->file = name;

    yaml_document_t doc;
    rc = load_doc(p, &doc, name, 0);
    if (!rc) {
        c->doc = &doc;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (root && !is_null(root)) {
            if (root->type != YAML_MAPPING_NODE)
                rc = sl_seterr(SL_ECONFIG,
                               "%s:%zu:%zu: the job file must be a mapping of sections (input, output, "
                               "separation, embedding, runtime), got %s",
                               name, root->start_mark.line + 1, root->start_mark.column + 1, node_kind(root));
            else
                rc = apply_mapping(c, root, "");
        }
        c->doc = NULL;
        yaml_document_delete(&doc);
    }
    for (size_t i = 0; !rc && i < n_overrides; i++)
        rc = apply_override(c, overrides[i]);
    if (!rc)
        rc = cross_checks(c);
    free(c);
    if (rc)
        sl_cfg_free(cfg);
    return rc;
}

int sl_cfg_load_string(sl_config *cfg, const char *yaml, const char *name, const char *const *overrides,
                       size_t n_overrides)
{
    yaml_parser_t p;
    memset(cfg, 0, sizeof *cfg);
    if (!yaml_parser_initialize(&p))
        return sl_seterr(SL_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&p, (const unsigned char *)(yaml ? yaml : ""), yaml ? strlen(yaml) : 0);
    int rc = load_common(cfg, &p, name ? name : "<string>", overrides, n_overrides);
    yaml_parser_delete(&p);
    return rc;
}

int sl_cfg_load(sl_config *cfg, const char *path, const char *const *overrides, size_t n_overrides)
{
    memset(cfg, 0, sizeof *cfg);
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return sl_seterr(SL_EIO, "%s: cannot open job file: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return sl_seterr(SL_EIO, "%s: cannot read job file: it is a folder", path);
    }
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        return sl_seterr(SL_ENOMEM, "out of memory");
    }
    yaml_parser_set_input_file(&p, f);
    int rc = load_common(cfg, &p, path, overrides, n_overrides);
    yaml_parser_delete(&p);
    if (!rc && ferror(f)) {
        sl_cfg_free(cfg);
        rc = sl_seterr(SL_EIO, "%s: read error", path);
    }
    fclose(f);
    return rc;
}
