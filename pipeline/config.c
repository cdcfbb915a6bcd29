/* Job configuration: libyaml document API, one table of keys, --set overrides.
 *
 * The document API (not the event stream) is used so that every node keeps
 * its start mark; every error can then point at a line and column.
 * Relative paths are kept exactly as written and are therefore resolved
 * against the current working directory of the process, not the folder of
 * the job file: a job is read the same way whether it is given as
 * "jobs/a.yaml" or "../jobs/a.yaml", and --set values behave like file
 * values. */
#include "config.h"

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

typedef enum { K_VERSION, K_STR, K_STRNULL, K_INT, K_NUM, K_BOOL, K_ENUM, K_LIST, K_OPTS } ktype;

enum {
    KF_EXT = 1,      /* list items are file extensions: lower-cased, leading dot dropped */
    KF_TEMPLATE = 2, /* stem path template: placeholders checked */
    KF_NONEMPTY = 4, /* a list that must not be empty */
    KF_NAMES = 8,    /* list items are names: no '/', no duplicates */
};

#define NOF ((size_t)-1)
#define F(m) offsetof(sl_config, m)

typedef struct {
    const char *name;
    ktype type;
    int flags;
    size_t off;     /* field in sl_config, NOF when not stored */
    size_t cnt_off; /* count field of a list */
    const char *def; /* default as text; lists: space-separated; NULL = null */
    long long min, max;
    const char *choices; /* enum: "a|b|c" */
    const char *doc;
} keydef;

#define SL_DEFAULT_EXTS                                                                        \
    "mp3 flac wav aiff aif aifc m4a aac alac ogg oga opus wma mp4 m4v mkv mka webm mov wv ape"

/* Every key of a job file, once. configs/README.md documents the same list
 * (a unit test checks that every name here appears there). */
static const keydef keys[] = {
    {"version", K_VERSION, 0, NOF, NOF, "1", 1, 1, NULL,
     "job file format version; only 1 exists"},
    {"input.paths", K_LIST, 0, F(input_paths), F(n_input_paths), "", 0, 0, NULL,
     "files and folders to process; folders are scanned recursively (a single string is a one-item list)"},
    {"input.manifest", K_STRNULL, 0, F(input_manifest), NOF, NULL, 0, 0, NULL,
     "text file with one path per line (relative lines are relative to the manifest's folder)"},
    {"input.extensions", K_LIST, KF_EXT | KF_NONEMPTY, F(input_extensions), F(n_input_extensions),
     SL_DEFAULT_EXTS, 0, 0, NULL,
     "extensions kept when scanning folders (case-insensitive; files named explicitly are always kept)"},
    {"input.max_missing_fraction", K_NUM, 0, F(input_max_missing), NOF, "0.02", 0, 1, NULL,
     "a track fails when its decoded audio is short of the duration its container states by more than this "
     "fraction (a truncated file); 1 turns the check off"},
    {"output.dir", K_STR, 0, F(output_dir), NOF, "out", 0, 0, NULL,
     "folder that receives stems, embeddings, the ledger and the report"},
    {"output.stems.enabled", K_BOOL, 0, F(stems_enabled), NOF, "true", 0, 0, NULL,
     "write stem audio files"},
    {"output.stems.format", K_ENUM, 0, F(stems_format), NOF, "wav", 0, 0, "wav|flac|opus|mp3|aac|ogg",
     "container/codec of the stem files: lossless wav or flac, or lossy opus, mp3, aac (.m4a) or ogg (Vorbis)"},
    {"output.stems.bitrate", K_INT, 0, F(stems_bitrate), NOF, "0", 0, 10000, NULL,
     "lossy stem formats: kbit/s per file (0 = the format's default: opus 128, mp3 192, aac 192, ogg 160)"},
    {"output.stems.sample_format", K_ENUM, 0, F(stems_sample_format), NOF, "s16", 0, 0, "s16|s24|f32",
     "sample format of the stem files (f32 only with wav)"},
    {"output.stems.template", K_STR, KF_TEMPLATE, F(stems_template), NOF, "stems/{track}/{stem}.{ext}", 0,
     0, NULL, "stem path inside output.dir; placeholders {track} {stem} {ext} {base}"},
    {"output.stems.sample_rate", K_ENUM, 0, F(stems_sample_rate), NOF, "model", 0, 0, "model|source",
     "write stems at the model's rate, or resampled back to each input's own rate"},
    {"output.embeddings.dtype", K_ENUM, 0, F(emb_dtype), NOF, "float32", 0, 0, "float32|float16",
     "element type of the .npy vector shards"},
    {"output.embeddings.shard_rows", K_INT, 0, F(emb_shard_rows), NOF, "10000", 1, 10000000, NULL,
     "rows per .npy/.jsonl shard before a new shard is started"},
    {"separation.model", K_ENUM, 0, F(sep_model), NOF, "hpss", 0, 0, "hpss|umx|bs_roformer|mel_band_roformer|htdemucs|none",
     "separation model (none = no stems)"},
    {"separation.weights", K_STRNULL, 0, F(sep_weights), NOF, NULL, 0, 0, NULL,
     "weights file (.safetensors) for models that need one"},
    {"separation.options", K_OPTS, 0, F(sep_options), NOF, NULL, 0, 0, NULL,
     "model-specific options (mapping of scalars), validated by the model"},
    {"separation.segment_seconds", K_NUM, 0, F(sep_segment_s), NOF, "0", 0, 3600, NULL,
     "length of the segments a track is cut into for separation (0 = the model's default)"},
    {"separation.overlap_seconds", K_NUM, 0, F(sep_overlap_s), NOF, "-1", -1, 600, NULL,
     "overlap between consecutive segments, cross-faded (-1 = the model's default)"},
    {"embedding.model", K_ENUM, 0, F(emb_model), NOF, "melstats", 0, 0, "melstats|cnn14|clap|none",
     "embedding model (none = no vectors)"},
    {"embedding.weights", K_STRNULL, 0, F(emb_weights), NOF, NULL, 0, 0, NULL,
     "weights file (.safetensors) for models that need one"},
    {"embedding.normalize", K_BOOL, 0, F(emb_normalize), NOF, "true", 0, 0, NULL,
     "L2-normalise every vector"},
    {"embedding.options", K_OPTS, 0, F(emb_options), NOF, NULL, 0, 0, NULL,
     "model-specific options (mapping of scalars), validated by the model"},
    {"embedding.tags_top_k", K_INT, 0, F(emb_tags_top_k), NOF, "10", 0, 1000, NULL,
     "for models with a classifier head (cnn14): the top-k labels per track written to tags/MODEL/tags.jsonl (0 = none)"},
    {"embedding.text_labels", K_STRNULL, 0, F(emb_text_labels), NOF, NULL, 0, 0, NULL,
     "clap only: zero-shot tags: a file of labels or prompts, one a line, or 'default' (the shipped music list); scored against each track vector into tags/clap/tags.jsonl"},
    {"embedding.text_template", K_STRNULL, 0, F(emb_text_template), NOF, NULL, 0, 0, NULL,
     "clap only: the prompt each label is put into, with one {} for the label, e.g. 'This is a sound of {}.' (unset = the label as written)"},
    {"embedding.window_seconds", K_NUM, 0, F(emb_window_s), NOF, "0", 0, 3600, NULL,
     "length of the windows a track is embedded in; the track vector is their mean (0 = the model's default)"},
    {"embedding.hop_seconds", K_NUM, 0, F(emb_hop_s), NOF, "0", 0, 3600, NULL,
     "hop between embedding windows (0 = the window length: no overlap)"},
    {"embedding.sources", K_LIST, KF_NONEMPTY | KF_NAMES, F(emb_sources), F(n_emb_sources), "mix", 0, 0, NULL,
     "what is embedded: mix (the input) and/or stem names of the separation model; each source gets its own shards"},
    {"embedding.timeline", K_BOOL, 0, F(emb_timeline), NOF, "false", 0, 0, NULL,
     "also write every window's vector with its start and end (embeddings/MODEL/SOURCE/timeline/)"},
    {"embedding.center", K_ENUM, 0, F(emb_center), NOF, "none", 0, 0, "none|catalog",
     "catalog: subtract the mean vector of the catalog (of each shard folder) before normalisation, computed once every track is done"},
    {"runtime.backend", K_ENUM, 0, F(backend), NOF, "auto", 0, 0, "auto|cpu|cuda|cuda-emu",
     "where the models run: auto = CUDA when a GPU answers, else CPU; cuda-emu = the CUDA kernels emulated on the CPU (slow, for checking the GPU path without a GPU)"},
    {"runtime.decode_threads", K_INT, 0, F(decode_threads), NOF, "2", 1, 256, NULL,
     "decoder threads"},
    {"runtime.threads", K_INT, 0, F(threads), NOF, "0", 0, 1024, NULL,
     "CPU threads that may compute at once across decode, model and write (0 = every CPU this process may use: affinity mask, cgroup quota)"},
    {"runtime.model_workers", K_INT, 0, F(model_workers), NOF, "0", 0, 1024, NULL,
     "parallel model workers on the CPU backend, each with its own context and threads/model_workers threads inside its ops (0 = auto: one per thread of the budget)"},
    {"runtime.progress_interval", K_INT, 0, F(progress_interval), NOF, "10", 1, 3600, NULL,
     "seconds between plain progress lines when stderr is not a terminal"},
    {"runtime.batch_size", K_INT, 0, F(batch_size), NOF, "8", 1, 4096, NULL,
     "segments (of any tracks) processed together in one model call"},
    {"runtime.max_host_memory_mb", K_INT, 0, F(max_host_memory_mb), NOF, "2048", 64, 1048576, NULL,
     "bound on the audio buffers in host memory (segments in flight), whatever the track lengths"},
    {"runtime.track_timeout_s", K_INT, 0, F(track_timeout_s), NOF, "0", 0, 604800, NULL,
     "fail a track whose decoding makes no progress for this many seconds (0 = never)"},
    {"runtime.devices", K_LIST, KF_NONEMPTY, F(devices), F(n_devices), "all", 0, 0, NULL,
     "CUDA devices to use, one worker each: [all] or ordinals like [0, 1]"},
    {"runtime.precision", K_ENUM, 0, F(precision), NOF, "fp32", 0, 0, "fp32|tf32|bf16",
     "arithmetic of the large matrix products on a CUDA device: fp32 (exact, the reference), or tf32 / bf16 on "
     "tensor cores through cuBLASLt (faster, less exact); the cpu and cuda-emu backends compute in fp32 only"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static const char *const placeholders[] = {"track", "stem", "ext", "base"};

/* ------------------------------------------------------------------ */
/* small helpers */

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char **fld_str(sl_config *cfg, const keydef *k) { return (char **)((char *)cfg + k->off); }
static const char *const *cfld_str(const sl_config *cfg, const keydef *k)
{
    return (const char *const *)((const char *)cfg + k->off);
}
static int *fld_int(sl_config *cfg, const keydef *k) { return (int *)((char *)cfg + k->off); }
static int cfld_int(const sl_config *cfg, const keydef *k) { return *(const int *)((const char *)cfg + k->off); }
static double *fld_num(sl_config *cfg, const keydef *k) { return (double *)((char *)cfg + k->off); }
static double cfld_num(const sl_config *cfg, const keydef *k)
{
    return *(const double *)((const char *)cfg + k->off);
}
static char ***fld_list(sl_config *cfg, const keydef *k) { return (char ***)((char *)cfg + k->off); }
static size_t *fld_cnt(sl_config *cfg, const keydef *k) { return (size_t *)((char *)cfg + k->cnt_off); }
static sl_cfg_opts *fld_opts(sl_config *cfg, const keydef *k) { return (sl_cfg_opts *)((char *)cfg + k->off); }

static void free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

static void free_opts(sl_cfg_opts *o)
{
    for (size_t i = 0; i < o->n; i++) {
        free(o->items[i].key);
        free(o->items[i].value);
        free(o->items[i].file);
    }
    free(o->items);
    o->items = NULL;
    o->n = 0;
}

static const keydef *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

/* A section is a proper prefix of some key at a dot boundary ("output", "output.stems"). */
static int is_section(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < NKEYS; i++)
        if (!strncmp(keys[i].name, name, n) && keys[i].name[n] == '.')
            return 1;
    return 0;
}

/* Edit distance with adjacent transpositions (optimal string alignment), so
 * "cdua" is one edit from "cuda". */
static size_t levenshtein(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return (size_t)-1;
    size_t pp[65], prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = pp[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            size_t v = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && pp[j - 2] + 1 < v)
                v = pp[j - 2] + 1;
            cur[j] = v;
        }
        memcpy(pp, prev, (lb + 1) * sizeof prev[0]);
        memcpy(prev, cur, (lb + 1) * sizeof prev[0]);
    }
    return prev[lb];
}

/* "prefix.name" (or "name" when prefix is empty), truncated to size. */
static void join_name(char *out, size_t size, const char *prefix, const char *name)
{
    size_t lp = prefix ? strlen(prefix) : 0, ln = strlen(name), o = 0;
    if (lp && lp + 1 < size) {
        memcpy(out, prefix, lp);
        out[lp] = '.';
        o = lp + 1;
    }
    if (ln > size - 1 - o)
        ln = size - 1 - o;
    memcpy(out + o, name, ln);
    out[o + ln] = 0;
}

static const char *leaf(const char *name)
{
    const char *d = strrchr(name, '.');
    return d ? d + 1 : name;
}

/* Closest key or section name to an unknown one, or NULL when nothing is close. */
static const char *suggest(const char *name, char *buf, size_t size)
{
    size_t best = (size_t)-1;
    const char *pick = NULL;
    for (size_t i = 0; i < NKEYS; i++) {
        /* candidates: the key and each of its sections */
        const char *k = keys[i].name;
        for (const char *p = k;; p++) {
            if (*p == '.' || *p == 0) {
                size_t len = (size_t)(p - k);
                if (len < size) {
                    char cand[128];
                    memcpy(cand, k, len);
                    cand[len] = 0;
                    size_t d = levenshtein(name, cand);
                    if (d < best) {
                        best = d;
                        snprintf(buf, size, "%s", cand);
                        pick = buf;
                    }
                }
            }
            if (*p == 0)
                break;
        }
    }
    size_t len = strlen(name);
    if (pick && (best <= 2 || best * 3 <= len))
        return pick;
    /* the right leaf in the wrong section, e.g. "input.dir" for "output.dir" */
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(leaf(keys[i].name), leaf(name)) && strchr(name, '.')) {
            snprintf(buf, size, "%s", keys[i].name);
            return buf;
        }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* defaults */

static int set_list_from_words(char ***list, size_t *n, const char *words)
{
    size_t cap = 0, cnt = 0;
    char **l = NULL;
    const char *p = words;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        const char *e = p;
        while (*e && *e != ' ')
            e++;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            char **nl = realloc(l, cap * sizeof *nl);
            if (!nl)
                goto oom;
            l = nl;
        }
        l[cnt] = malloc((size_t)(e - p) + 1);
        if (!l[cnt])
            goto oom;
        memcpy(l[cnt], p, (size_t)(e - p));
        l[cnt][e - p] = 0;
        cnt++;
        p = e;
    }
    *list = l;
    *n = cnt;
    return 0;
oom:
    free_list(l, cnt);
    return SL_ENOMEM;
}

void sl_cfg_free(sl_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        if (k->off == NOF)
            continue;
        switch (k->type) {
        case K_STR:
        case K_STRNULL:
        case K_ENUM:
            free(*fld_str(cfg, k));
            break;
        case K_LIST:
            free_list(*fld_list(cfg, k), *fld_cnt(cfg, k));
            break;
        case K_OPTS:
            free_opts(fld_opts(cfg, k));
            break;
        default:
            break;
        }
    }
    free(cfg->source_file);
    free(cfg->emb_sources_at);
    memset(cfg, 0, sizeof *cfg);
}

int sl_cfg_defaults(sl_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        if (k->off == NOF)
            continue;
        switch (k->type) {
        case K_STR:
        case K_STRNULL:
        case K_ENUM:
            if (k->def && !(*fld_str(cfg, k) = xstrdup(k->def)))
                goto oom;
            break;
        case K_INT:
            *fld_int(cfg, k) = atoi(k->def);
            break;
        case K_NUM:
            *fld_num(cfg, k) = strtod(k->def, NULL);
            break;
        case K_BOOL:
            *fld_int(cfg, k) = !strcmp(k->def, "true");
            break;
        case K_LIST:
            if (set_list_from_words(fld_list(cfg, k), fld_cnt(cfg, k), k->def))
                goto oom;
            break;
        default:
            break;
        }
    }
    return 0;
oom:
    sl_cfg_free(cfg);
    return sl_seterr(SL_ENOMEM, "out of memory while setting configuration defaults");
}

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
    int in_file[NKEYS];  /* key given in the file already (duplicate detection) */
    int given[NKEYS];    /* sequence number of the last assignment, 0 = default */
    loc where[NKEYS];
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
        size_t d = levenshtein(v, buf);
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
        if (!(o->items[o->n].key = xstrdup(okey)))
            return sl_seterr(SL_ENOMEM, "out of memory");
        o->n++;
    }
    sl_cfg_opt *it = &o->items[i];
    char *v = xstrdup(sc(vn)), *f = xstrdup(c->set ? "--set" : c->file);
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
    free_opts(o);
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
        join_name(full, sizeof full, name, sc(kn));
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
        if (!(l[cnt] = xstrdup(s))) {
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
    free_list(*fld_list(c->cfg, k), *fld_cnt(c->cfg, k));
    *fld_list(c->cfg, k) = l;
    *fld_cnt(c->cfg, k) = cnt;
    return 0;
fail:
    free_list(l, cnt);
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
        char *s = xstrdup(sc(n));
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
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].type != K_OPTS)
            continue;
        size_t len = strlen(keys[i].name);
        if (!strncmp(name, keys[i].name, len) && name[len] == '.') {
            *k = &keys[i];
            *rest = name + len + 1;
            return 1;
        }
    }
    return 0;
}

/* Assigns one dotted name: a key, a section (mapping), or one model option. */
static int apply_key(ctx *c, const char *name, const yaml_node_t *kn, const yaml_node_t *vn)
{
    const keydef *k = find_key(name);
    char sb[128];
    if (k) {
        size_t i = (size_t)(k - keys);
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
    if (is_section(name)) {
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
    const char *s = suggest(name, sb, sizeof sb);
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
    join_name(out, size, prefix, s);
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
    if (strcmp(cfg->precision, "fp32") && (!strcmp(cfg->backend, "cpu") || !strcmp(cfg->backend, "cuda-emu"))) {
        size_t pi = (size_t)(find_key("runtime.precision") - keys);
        size_t bi = (size_t)(find_key("runtime.backend") - keys);
        size_t b = c->given[bi] > c->given[pi] ? bi : pi;
        return loc_err(c, c->where[b], keys[b].name,
                       "runtime.precision %s needs a CUDA device (backend cuda or auto); backend %s computes in fp32 "
                       "only (set runtime.precision: fp32)",
                       cfg->precision, cfg->backend);
    }
    if (!strcmp(cfg->stems_format, "flac") && !strcmp(cfg->stems_sample_format, "f32")) {
        size_t fi = (size_t)(find_key("output.stems.format") - keys);
        size_t si = (size_t)(find_key("output.stems.sample_format") - keys);
        size_t b = c->given[fi] > c->given[si] ? fi : si;
        return loc_err(c, c->where[b], keys[b].name,
                       "f32 samples cannot be stored in FLAC (use output.stems.sample_format s16 or s24, or "
                       "output.stems.format wav)");
    }
    {
        size_t fi = (size_t)(find_key("output.stems.format") - keys);
        size_t bi = (size_t)(find_key("output.stems.bitrate") - keys);
        size_t si = (size_t)(find_key("output.stems.sample_format") - keys);
        int def, lo, hi;
        int lossy = sl_encode_lossy(cfg->stems_format, &def, &lo, &hi);
        if (!lossy && cfg->stems_bitrate) {
            size_t b = c->given[fi] > c->given[bi] ? fi : bi;
            return loc_err(c, c->where[b], keys[b].name,
                           "output.stems.bitrate applies to lossy formats (opus, mp3, aac, ogg), not %s",
                           cfg->stems_format);
        }
        if (lossy && c->given[si] && strcmp(cfg->stems_sample_format, "s16")) {
            size_t b = c->given[fi] > c->given[si] ? fi : si;
            return loc_err(c, c->where[b], keys[b].name,
                           "output.stems.sample_format applies to wav and flac; %s stems are encoded from float "
                           "samples (set output.stems.bitrate instead)", cfg->stems_format);
        }
        if (lossy && cfg->stems_bitrate && (cfg->stems_bitrate < lo || cfg->stems_bitrate > hi)) {
            size_t b = c->given[fi] > c->given[bi] ? fi : bi;
            return loc_err(c, c->where[b], keys[b].name, "%s stems take %d..%d kbit/s, not %d", cfg->stems_format,
                           lo, hi, cfg->stems_bitrate);
        }
    }
    {
        size_t li = (size_t)(find_key("embedding.text_labels") - keys);
        size_t ti = (size_t)(find_key("embedding.text_template") - keys);
        size_t mi = (size_t)(find_key("embedding.model") - keys);
        if ((cfg->emb_text_labels || cfg->emb_text_template) && strcmp(cfg->emb_model, "clap")) {
            size_t b = cfg->emb_text_labels ? li : ti;
            b = c->given[mi] > c->given[b] ? mi : b;
            return loc_err(c, c->where[b], keys[b].name,
                           "zero-shot labels need a model with a text tower (embedding.model: clap), not %s",
                           cfg->emb_model);
        }
        if (cfg->emb_text_template && !cfg->emb_text_labels)
            return loc_err(c, c->where[ti], keys[ti].name, "a template without embedding.text_labels");
        const char *h = cfg->emb_text_template ? strstr(cfg->emb_text_template, "{}") : NULL;
        if (cfg->emb_text_template && (!h || strstr(h + 2, "{}")))
            return loc_err(c, c->where[ti], keys[ti].name, "the template must hold {} exactly once (where the label goes)");
    }
    size_t si = (size_t)(find_key("embedding.sources") - keys);
    for (size_t i = 0; i < cfg->n_emb_sources; i++)
        if (strcmp(cfg->emb_sources[i], "mix") && !strcmp(cfg->sep_model, "none")) {
            size_t mi = (size_t)(find_key("separation.model") - keys);
            size_t b = c->given[mi] > c->given[si] ? mi : si;
            return loc_err(c, c->where[b], keys[b].name,
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
        if (!(cfg->emb_sources_at = xstrdup(at)))
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
    if (!c || !(cfg->source_file = xstrdup(name))) {
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

/* ------------------------------------------------------------------ */
/* dump */

static void put_quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(f, "\\x%02x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

/* Plain when it cannot be misread (the loader keeps option text whatever its style). */
static void put_scalar(FILE *f, const char *s)
{
    int plain = isalnum((unsigned char)s[0]) != 0;
    for (const char *p = s; plain && *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("_.+-", *p))
            plain = 0;
    if (plain && (!strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")))
        plain = 0;
    if (plain)
        fputs(s, f);
    else
        put_quoted(f, s);
}

int sl_cfg_dump(const sl_config *cfg, FILE *f)
{
    char section[128] = "";
    fputs("# stemline job, fully resolved (defaults filled in)\n", f);
    if (cfg->source_file) {
        fputs("# from: ", f);
        for (const char *p = cfg->source_file; *p; p++)
            fputc((unsigned char)*p < 0x20 ? '?' : *p, f);
        fputc('\n', f);
    }
    for (size_t i = 0; i < NKEYS; i++) {
        const keydef *k = &keys[i];
        /* open the sections that change between this key and the previous one */
        const char *lf = leaf(k->name);
        size_t plen = (size_t)(lf - k->name);
        char prefix[128];
        snprintf(prefix, sizeof prefix, "%.*s", (int)plen, k->name);
        if (strcmp(prefix, section)) {
            /* common prefix at a dot boundary */
            size_t common = 0;
            for (size_t j = 0; prefix[j] && section[j] == prefix[j]; j++)
                if (prefix[j] == '.')
                    common = j + 1;
            int depth = 0;
            for (size_t j = 0; j < common; j++)
                depth += prefix[j] == '.';
            for (size_t j = common; j < plen;) {
                const char *e = strchr(prefix + j, '.');
                fprintf(f, "%*s%.*s:\n", depth * 2, "", (int)(e - (prefix + j)), prefix + j);
                depth++;
                j = (size_t)(e - prefix) + 1;
            }
            snprintf(section, sizeof section, "%s", prefix);
        }
        int depth = 0;
        for (size_t j = 0; j < plen; j++)
            depth += prefix[j] == '.';
        fprintf(f, "%*s%s:%s", depth * 2, "", lf,
                k->type == K_OPTS && ((const sl_cfg_opts *)((const char *)cfg + k->off))->n ? "" : " ");
        switch (k->type) {
        case K_VERSION:
            fputs("1", f);
            break;
        case K_STR:
            put_quoted(f, *cfld_str(cfg, k));
            break;
        case K_ENUM:
            put_scalar(f, *cfld_str(cfg, k));
            break;
        case K_STRNULL: {
            const char *s = *cfld_str(cfg, k);
            if (s)
                put_quoted(f, s);
            else
                fputs("null", f);
            break;
        }
        case K_INT:
            fprintf(f, "%d", cfld_int(cfg, k));
            break;
        case K_NUM:
            fprintf(f, "%.17g", cfld_num(cfg, k));
            break;
        case K_BOOL:
            fputs(cfld_int(cfg, k) ? "true" : "false", f);
            break;
        case K_LIST: {
            char *const *l = *(char *const *const *)((const char *)cfg + k->off);
            size_t n = *(const size_t *)((const char *)cfg + k->cnt_off);
            fputc('[', f);
            for (size_t j = 0; j < n; j++) {
                if (j)
                    fputs(", ", f);
                put_quoted(f, l[j]);
            }
            fputc(']', f);
            break;
        }
        case K_OPTS: {
            const sl_cfg_opts *o = (const sl_cfg_opts *)((const char *)cfg + k->off);
            if (!o->n)
                fputs("{}", f);
            for (size_t j = 0; j < o->n; j++) {
                fprintf(f, "\n%*s", (depth + 1) * 2, "");
                put_quoted(f, o->items[j].key);
                fputs(": ", f);
                put_scalar(f, o->items[j].value);
            }
            break;
        }
        }
        fputc('\n', f);
    }
    if (fflush(f) || ferror(f))
        return -(errno ? errno : EIO);
    return 0;
}

/* ------------------------------------------------------------------ */
/* key table access */

int sl_cfg_key_info(size_t i, sl_cfg_keyinfo *info)
{
    if (i >= NKEYS)
        return SL_EINVAL;
    const keydef *k = &keys[i];
    info->name = k->name;
    info->doc = k->doc;
    info->choices = k->choices;
    info->min = k->min;
    info->max = k->max;
    info->def = k->def;
    switch (k->type) {
    case K_VERSION:
    case K_INT:
        info->type = "int";
        break;
    case K_NUM:
        info->type = "number";
        break;
    case K_BOOL:
        info->type = "bool";
        break;
    case K_LIST:
        info->type = "list of strings";
        break;
    case K_OPTS:
        info->type = "mapping";
        break;
    case K_STRNULL:
        info->type = "string or null";
        break;
    case K_ENUM:
        info->type = "enum";
        break;
    default:
        info->type = "string";
    }
    return 0;
}

void sl_cfg_print_keys(FILE *f)
{
    sl_cfg_keyinfo ki;
    for (size_t i = 0; sl_cfg_key_info(i, &ki) == 0; i++) {
        fprintf(f, "  %-30s %s", ki.name, ki.choices ? "one of " : ki.type);
        if (ki.choices) {
            for (const char *p = ki.choices; *p; p++)
                fputs(*p == '|' ? ", " : (char[]){*p, 0}, f);
        }
        if (!strcmp(ki.type, "int") && ki.min != ki.max)
            fprintf(f, " %lld..%lld", ki.min, ki.max);
        if (ki.def && *ki.def)
            fprintf(f, " (default %s)", ki.def);
        else if (!strcmp(ki.type, "string or null"))
            fputs(" (default null)", f);
        fprintf(f, "\n  %-30s   %s\n", "", ki.doc);
    }
}
