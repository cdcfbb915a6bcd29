/* Job configuration: the one table of keys, lookups in it, defaults, and the
 * key descriptions (--help, configs/README.md check). Reading a job file is
 * config_load.c; writing the effective configuration back is config_dump.c. */
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

#include "../common/sl_error.h"
#include "../io/encode.h"

#define SL_DEFAULT_EXTS                                                                        \
    "mp3 flac wav aiff aif aifc m4a aac alac ogg oga opus wma mp4 m4v mkv mka webm mov wv ape"

/* Every key of a job file, once. configs/README.md documents the same list
 * (a unit test checks that every name here appears there). */
const keydef sl_cfg_keys[] = {
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
     "parallel model workers on the CPU backend, each with its own context and threads/model_workers threads inside its ops (0 = auto: one per thread of the budget, fewer when their models do not fit in memory)"},
    {"runtime.max_model_memory_mb", K_INT, 0, F(max_model_memory_mb), NOF, "0", 0, 1048576, NULL,
     "memory the CPU model workers may take (weights and work buffers of each), for the automatic worker count (0 = 3/4 of the memory available: MemAvailable, cgroup memory.max)"},
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
    {"runtime.precision", K_ENUM, 0, F(precision), NOF, "fp32", 0, 0, "fp32|tf32|bf16|bf16x6",
     "arithmetic of the linear layers: fp32 (exact, the reference), or tf32 / bf16 (faster, less exact) on a "
     "CUDA device's tensor cores through cuBLASLt or a CPU's AMX tiles (tf32 there: three bf16 products per "
     "product; a CPU without AMX-BF16 computes in fp32 and says so), or bf16x6 (fp32's accuracy on a CPU's AMX "
     "tiles: six bf16 products per product; exact fp32 elsewhere); cuda-emu computes in fp32 only"},
};
const size_t sl_cfg_nkeys = sizeof sl_cfg_keys / sizeof sl_cfg_keys[0];
_Static_assert(sizeof sl_cfg_keys / sizeof sl_cfg_keys[0] <= SL_CFG_MAX_KEYS,
               "raise SL_CFG_MAX_KEYS in config_impl.h");

/* ------------------------------------------------------------------ */
/* small helpers */

char *sl_cfg_strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}


void sl_cfg_free_list(char **l, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(l[i]);
    free(l);
}

void sl_cfg_free_opts(sl_cfg_opts *o)
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

const keydef *sl_cfg_find_key(const char *name)
{
    for (size_t i = 0; i < sl_cfg_nkeys; i++)
        if (!strcmp(sl_cfg_keys[i].name, name))
            return &sl_cfg_keys[i];
    return NULL;
}

/* A section is a proper prefix of some key at a dot boundary ("output", "output.stems"). */
int sl_cfg_is_section(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sl_cfg_nkeys; i++)
        if (!strncmp(sl_cfg_keys[i].name, name, n) && sl_cfg_keys[i].name[n] == '.')
            return 1;
    return 0;
}

/* Edit distance with adjacent transpositions (optimal string alignment), so
 * "cdua" is one edit from "cuda". */
size_t sl_cfg_levenshtein(const char *a, const char *b)
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
void sl_cfg_join_name(char *out, size_t size, const char *prefix, const char *name)
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

const char *sl_cfg_leaf(const char *name)
{
    const char *d = strrchr(name, '.');
    return d ? d + 1 : name;
}

/* Closest key or section name to an unknown one, or NULL when nothing is close. */
const char *sl_cfg_suggest(const char *name, char *buf, size_t size)
{
    size_t best = (size_t)-1;
    const char *pick = NULL;
    for (size_t i = 0; i < sl_cfg_nkeys; i++) {
        /* candidates: the key and each of its sections */
        const char *k = sl_cfg_keys[i].name;
        for (const char *p = k;; p++) {
            if (*p == '.' || *p == 0) {
                size_t len = (size_t)(p - k);
                if (len < size) {
                    char cand[128];
                    memcpy(cand, k, len);
                    cand[len] = 0;
                    size_t d = sl_cfg_levenshtein(name, cand);
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
    for (size_t i = 0; i < sl_cfg_nkeys; i++)
        if (!strcmp(sl_cfg_leaf(sl_cfg_keys[i].name), sl_cfg_leaf(name)) && strchr(name, '.')) {
            snprintf(buf, size, "%s", sl_cfg_keys[i].name);
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
    sl_cfg_free_list(l, cnt);
    return SL_ENOMEM;
}

void sl_cfg_free(sl_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < sl_cfg_nkeys; i++) {
        const keydef *k = &sl_cfg_keys[i];
        if (k->off == NOF)
            continue;
        switch (k->type) {
        case K_STR:
        case K_STRNULL:
        case K_ENUM:
            free(*fld_str(cfg, k));
            break;
        case K_LIST:
            sl_cfg_free_list(*fld_list(cfg, k), *fld_cnt(cfg, k));
            break;
        case K_OPTS:
            sl_cfg_free_opts(fld_opts(cfg, k));
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
    for (size_t i = 0; i < sl_cfg_nkeys; i++) {
        const keydef *k = &sl_cfg_keys[i];
        if (k->off == NOF)
            continue;
        switch (k->type) {
        case K_STR:
        case K_STRNULL:
        case K_ENUM:
            if (k->def && !(*fld_str(cfg, k) = sl_cfg_strdup(k->def)))
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
/* key table access */

int sl_cfg_key_info(size_t i, sl_cfg_keyinfo *info)
{
    if (i >= sl_cfg_nkeys)
        return SL_EINVAL;
    const keydef *k = &sl_cfg_keys[i];
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
