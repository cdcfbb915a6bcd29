/* The output-affecting part of a job's configuration: its hash (kept with every
 * ledger row) and the same settings as a flat JSON object (kept once per ledger,
 * so that a job that differs can be told which key differs).
 *
 * One list of fields feeds both, so they can never disagree. The hash's byte
 * stream must not change from version to version: every folder's done tracks
 * depend on it. */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/sl_error.h"
#include "../common/sl_json.h"
#include "../io/encode.h"

/* hkey: the name hashed (NULL: shown only); jkey: the name shown (NULL: hashed only). */
typedef void (*field_fn)(void *arg, const char *hkey, const char *jkey, const char *value);

static int opt_cmp(const void *a, const void *b)
{
    const sl_cfg_opt *const *x = a, *const *y = b;
    return strcmp((*x)->key, (*y)->key);
}

static void opts_fields(field_fn fn, void *arg, const char *name, const sl_cfg_opts *o)
{
    /* order-independent: sorted by option name */
    const sl_cfg_opt *stack[64];
    const sl_cfg_opt **v = o->n <= 64 ? stack : malloc(o->n * sizeof *v);
    char num[32], jk[512];
    snprintf(num, sizeof num, "%zu", o->n);
    fn(arg, name, NULL, num);
    for (size_t i = 0; i < o->n; i++)
        if (v)
            v[i] = &o->items[i];
    if (v && o->n > 1)
        qsort(v, o->n, sizeof *v, opt_cmp);
    for (size_t i = 0; i < o->n; i++) {
        const sl_cfg_opt *it = v ? v[i] : &o->items[i]; /* out of memory: the given order */
        snprintf(jk, sizeof jk, "%s.%s", name, it->key);
        fn(arg, it->key, jk, it->value);
    }
    if (v != stack)
        free(v);
}

static void output_fields(const sl_config *cfg, field_fn fn, void *arg)
{
    char num[128];
    fn(arg, "stemline-output-v1", NULL, "");
    fn(arg, "output.stems.enabled", "output.stems.enabled", cfg->stems_enabled ? "true" : "false");
    fn(arg, "output.stems.format", "output.stems.format", cfg->stems_format);
    fn(arg, "output.stems.sample_format", "output.stems.sample_format", cfg->stems_sample_format);
    if (sl_encode_lossy(cfg->stems_format, NULL, NULL, NULL)) { /* absent before lossy formats: hashes unchanged */
        snprintf(num, sizeof num, "%d", cfg->stems_bitrate);
        fn(arg, "output.stems.bitrate", "output.stems.bitrate", num);
    }
    fn(arg, "output.stems.template", "output.stems.template", cfg->stems_template);
    fn(arg, "output.stems.sample_rate", "output.stems.sample_rate", cfg->stems_sample_rate);
    fn(arg, "output.embeddings.dtype", "output.embeddings.dtype", cfg->emb_dtype);
    fn(arg, "separation.model", "separation.model", cfg->sep_model);
    fn(arg, "separation.weights", "separation.weights", cfg->sep_weights);
    opts_fields(fn, arg, "separation.options", &cfg->sep_options);
    /* segmenting changes the stems (cross-fades at segment joins) and the
     * embedding windows change the vectors */
    snprintf(num, sizeof num, "%.17g/%.17g/%.17g/%.17g", cfg->sep_segment_s, cfg->sep_overlap_s, cfg->emb_window_s,
             cfg->emb_hop_s);
    fn(arg, "segments", NULL, num);
    /* the RoFormers chunk as their reference inference does (pipeline/demix.h) since this key
     * appeared; their stems from before (the runner's cross-fade) differ */
    if (!strcmp(cfg->sep_model, "bs_roformer") || !strcmp(cfg->sep_model, "mel_band_roformer"))
        fn(arg, "separation.chunking", "separation.chunking", "demix");
    static const char *const seg_keys[4] = {"separation.segment_seconds", "separation.overlap_seconds",
                                            "embedding.window_seconds", "embedding.hop_seconds"};
    const double seg[4] = {cfg->sep_segment_s, cfg->sep_overlap_s, cfg->emb_window_s, cfg->emb_hop_s};
    for (int i = 0; i < 4; i++) {
        snprintf(num, sizeof num, "%.17g", seg[i]);
        fn(arg, NULL, seg_keys[i], num);
    }
    fn(arg, "embedding.model", "embedding.model", cfg->emb_model);
    fn(arg, "embedding.weights", "embedding.weights", cfg->emb_weights);
    fn(arg, "embedding.normalize", "embedding.normalize", cfg->emb_normalize ? "true" : "false");
    snprintf(num, sizeof num, "%d", cfg->emb_tags_top_k);
    fn(arg, "embedding.tags_top_k", "embedding.tags_top_k", num);
    opts_fields(fn, arg, "embedding.options", &cfg->emb_options);
    /* added later: hashed only when not the default, so that jobs written
     * before these keys existed keep their hash (and their done tracks) */
    int def_sources = cfg->n_emb_sources == 1 && !strcmp(cfg->emb_sources[0], "mix");
    if (!def_sources) {
        snprintf(num, sizeof num, "%zu", cfg->n_emb_sources);
        fn(arg, "embedding.sources", NULL, num);
        for (size_t i = 0; i < cfg->n_emb_sources; i++)
            fn(arg, "embedding.sources[]", NULL, cfg->emb_sources[i]);
    }
    {
        char list[1024] = "";
        for (size_t i = 0; i < cfg->n_emb_sources; i++) {
            strncat(list, i ? ", " : "[", sizeof list - strlen(list) - 1);
            strncat(list, cfg->emb_sources[i], sizeof list - strlen(list) - 1);
        }
        strncat(list, "]", sizeof list - strlen(list) - 1);
        fn(arg, NULL, "embedding.sources", list);
    }
    if (cfg->emb_timeline)
        fn(arg, "embedding.timeline", NULL, "true");
    fn(arg, NULL, "embedding.timeline", cfg->emb_timeline ? "true" : "false");
    /* centred jobs keep un-normalised vectors in the ledger */
    if (cfg->emb_center && strcmp(cfg->emb_center, "none"))
        fn(arg, "embedding.center", NULL, cfg->emb_center);
    fn(arg, NULL, "embedding.center", cfg->emb_center ? cfg->emb_center : "none");
    /* zero-shot labels change the tags (the file is known by its path, not its content) */
    if (cfg->emb_text_labels) {
        fn(arg, "embedding.text_labels", "embedding.text_labels", cfg->emb_text_labels);
        fn(arg, "embedding.text_template", "embedding.text_template", cfg->emb_text_template);
    }
    /* tf32 / bf16 products change the outputs beyond fp32's rounding, bf16x6's their bits */
    if (strcmp(cfg->precision, "fp32"))
        fn(arg, "runtime.precision", NULL, cfg->precision);
    fn(arg, NULL, "runtime.precision", cfg->precision);
}

/* ---- the hash ---- */

typedef struct {
    uint64_t h;
} fnv;

static void fnv_bytes(fnv *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        s->h ^= b[i];
        s->h *= 1099511628211ULL;
    }
}

/* Each field as "name\0value\0" (or "name\1" for null) so that no two
 * configurations can produce the same byte stream. */
static void hash_field(void *arg, const char *hkey, const char *jkey, const char *value)
{
    (void)jkey;
    fnv *s = arg;
    if (!hkey)
        return;
    fnv_bytes(s, hkey, strlen(hkey) + 1);
    if (value)
        fnv_bytes(s, value, strlen(value) + 1);
    else
        fnv_bytes(s, "\1", 1);
}

void sl_cfg_output_hash(const sl_config *cfg, char out[17])
{
    fnv s = {14695981039346656037ULL};
    output_fields(cfg, hash_field, &s);
    snprintf(out, 17, "%016llx", (unsigned long long)s.h);
}

/* ---- the settings as JSON ---- */

typedef struct {
    char *buf;
    size_t len, cap;
    int n, oom;
} jbuf;

static void jb_put(jbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t nc = (b->len + n + 1) * 2;
        char *nb = realloc(b->buf, nc);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = nc;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
}

static void jb_str(jbuf *b, const char *s)
{
    if (!s) {
        jb_put(b, "null", 4);
        return;
    }
    jb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            jb_put(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            jb_put(b, esc, 6);
        } else {
            jb_put(b, (const char *)p, 1);
        }
    }
    jb_put(b, "\"", 1);
}

static void json_field(void *arg, const char *hkey, const char *jkey, const char *value)
{
    (void)hkey;
    jbuf *b = arg;
    if (!jkey)
        return;
    if (b->n++)
        jb_put(b, ", ", 2);
    else
        jb_put(b, "{", 1);
    jb_str(b, jkey);
    jb_put(b, ": ", 2);
    jb_str(b, value);
}

char *sl_cfg_output_json(const sl_config *cfg)
{
    jbuf b = {0};
    output_fields(cfg, json_field, &b);
    jb_put(&b, b.n ? "}" : "{}", b.n ? 1 : 2);
    if (b.oom) {
        free(b.buf);
        return NULL;
    }
    return b.buf;
}

/* ---- what differs ---- */

static const char *member_text(const sl_json *v, char *buf, size_t size)
{
    if (!v)
        return "(not recorded)";
    if (v->type == SL_JSON_NULL)
        return "null";
    if (v->type == SL_JSON_STRING)
        return v->s;
    if (v->type == SL_JSON_BOOL)
        return v->b ? "true" : "false";
    if (v->type == SL_JSON_NUMBER) {
        snprintf(buf, size, "%.17g", v->num);
        return buf;
    }
    return "(a list or mapping)";
}

static int same_member(const sl_json *a, const sl_json *b)
{
    char x[64], y[64];
    if (!a || !b)
        return !a && !b;
    if (a->type != b->type && (a->type == SL_JSON_NULL || b->type == SL_JSON_NULL))
        return 0;
    return !strcmp(member_text(a, x, sizeof x), member_text(b, y, sizeof y));
}

int sl_cfg_output_diff(const char *old_json, const char *new_json, char *key, size_t key_size, char *old_val,
                       char *new_val, size_t val_size)
{
    sl_json a = {0}, b = {0};
    int rc = sl_json_parse(old_json, strlen(old_json), &a);
    if (!rc)
        rc = sl_json_parse(new_json, strlen(new_json), &b);
    if (!rc && (a.type != SL_JSON_OBJECT || b.type != SL_JSON_OBJECT))
        rc = sl_seterr(SL_EFORMAT, "output settings: not a JSON object");
    int found = 0;
    char tmp[64];
    /* the new job's keys in order first, then keys only the old one had */
    for (int pass = 0; !rc && pass < 2 && !found; pass++) {
        const sl_json *from = pass ? &a : &b, *other = pass ? &b : &a;
        for (size_t i = 0; i < from->n && !found; i++) {
            const sl_json *o = sl_json_get(other, from->keys[i]);
            if (pass == 1 && o)
                continue;
            const sl_json *ov = pass ? &from->items[i] : o, *nv = pass ? o : &from->items[i];
            if (same_member(ov, nv))
                continue;
            found = 1;
            snprintf(key, key_size, "%s", from->keys[i]);
            snprintf(old_val, val_size, "%s", member_text(ov, tmp, sizeof tmp));
            snprintf(new_val, val_size, "%s", member_text(nv, tmp, sizeof tmp));
        }
    }
    sl_json_free(&a);
    sl_json_free(&b);
    return rc ? rc : found;
}
