/* Job configuration: parsed from YAML (libyaml) with --set overrides.
 * Every key, its type, range and default is listed once in config.c and
 * documented in configs/README.md. */
#ifndef SL_CONFIG_H
#define SL_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "../common/sl_opts.h"

typedef struct {
    /* input */
    char **input_paths;
    size_t n_input_paths;
    char *input_manifest; /* NULL when unset */
    char **input_extensions; /* lower-case, without dot */
    size_t n_input_extensions;
    double input_max_missing; /* input.max_missing_fraction: 0..1 */

    /* output */
    char *output_dir;
    int stems_enabled;          /* output.stems.enabled */
    char *stems_format;         /* "wav" | "flac" | "opus" | "mp3" | "aac" | "ogg" */
    int stems_bitrate;          /* output.stems.bitrate, kbit/s; 0 = the format's default */
    char *stems_sample_format;  /* "s16" | "s24" | "f32" */
    char *stems_template;       /* "stems/{track}/{stem}.{ext}" */
    char *stems_sample_rate;    /* "model" | "source" */
    char *emb_dtype;            /* output.embeddings.dtype: "float32" | "float16" */
    int emb_shard_rows;         /* output.embeddings.shard_rows */

    /* separation */
    char *sep_model;   /* "hpss" | "none" */
    char *sep_weights; /* NULL when unset */
    sl_cfg_opts sep_options;

    /* embedding */
    char *emb_model;   /* "melstats" | "none" */
    char *emb_weights; /* NULL when unset */
    int emb_normalize;
    int emb_tags_top_k;     /* embedding.tags_top_k: 0 = no tags */
    char **emb_sources;     /* embedding.sources: "mix" and/or stem names, in the given order */
    size_t n_emb_sources;
    int emb_timeline;       /* embedding.timeline: also keep every window's vector */
    char *emb_text_labels;   /* embedding.text_labels: FILE or "default" (clap zero-shot tags), NULL = none */
    char *emb_text_template; /* embedding.text_template: holds "{}" once; NULL = the label as written */
    char *emb_center;       /* embedding.center: "none" | "catalog" (vectors minus the catalog mean) */
    char *emb_sources_at;   /* where embedding.sources was set ("FILE:LINE:COL" or "--set '...'"),
                               NULL when it is the default; for errors found once the models are open */
    sl_cfg_opts emb_options;

    /* runtime */
    char *backend;      /* "auto" | "cpu" | "cuda" */
    int decode_threads; /* 1..256 */
    int threads;        /* runtime.threads: compute budget, 0 = every CPU the process may use */
    int model_workers;  /* runtime.model_workers: parallel CPU model contexts, 0 = auto (policy in run_model.c) */
    int max_model_memory_mb; /* runtime.max_model_memory_mb: memory for the CPU model workers, 0 = auto (run_model.c) */
    int progress_interval; /* seconds between plain progress lines when not a tty */
    int batch_size;         /* segments per model call */
    int max_host_memory_mb; /* bound on audio buffers in flight */
    int track_timeout_s;    /* 0 = none */
    char **devices;         /* "all" or CUDA ordinals as text */
    size_t n_devices;
    char *precision;        /* runtime.precision: "fp32" | "tf32" | "bf16" (matrix products on CUDA) */

    double sep_segment_s;   /* 0 = model default */
    double sep_overlap_s;   /* -1 = model default */
    double emb_window_s;    /* 0 = model default */
    double emb_hop_s;       /* 0 = window */

    char *source_file; /* the YAML file this came from */
} sl_config;

/* Fills cfg with every default. Returns 0 or SL_ENOMEM. */
int sl_cfg_defaults(sl_config *cfg);

/* Loads a YAML job file over the defaults, then applies the "a.b=c" overrides
 * in order (values read as YAML). On error returns SL_ECONFIG (or SL_EIO) with
 * sl_lasterr() = "FILE:LINE:COLUMN: key 'a.b': reason" and cfg freed.
 * cfg is owned by the caller; release it with sl_cfg_free. */
int sl_cfg_load(sl_config *cfg, const char *path, const char *const *overrides, size_t n_overrides);

/* Loads from a string (for tests); name is used in messages. Same contract as sl_cfg_load. */
int sl_cfg_load_string(sl_config *cfg, const char *yaml, const char *name,
                       const char *const *overrides, size_t n_overrides);

void sl_cfg_free(sl_config *cfg);

/* Writes the resolved configuration as YAML (used by --dry-run and in the report).
 * Returns 0 or a negative errno on write failure. */
int sl_cfg_dump(const sl_config *cfg, FILE *f);

/* A hash (hex, 16 chars + NUL) of the parts of the config that change a track's outputs
 * (models, weights, options, stem format/template/rate, embedding dtype/normalize);
 * not input lists, threads or backend. Used by the ledger to decide what to redo. */
void sl_cfg_output_hash(const sl_config *cfg, char out[17]);

/* The same settings as the hash, by key name, as a flat JSON object of strings
 * ({"output.stems.format": "flac", ...}), recorded in the ledger so that a job
 * that differs is told which key. Returns a malloc'd string (caller frees) or
 * NULL when out of memory. (pipeline/outcfg.c) */
char *sl_cfg_output_json(const sl_config *cfg);

/* Compares two sl_cfg_output_json texts: 1 with the first differing key (the new
 * job's keys in its order, then keys only the old one had) and both values as
 * text ("(not recorded)" for a missing key), 0 when they agree, or SL_EFORMAT /
 * SL_ENOMEM when a text is not a JSON object. */
int sl_cfg_output_diff(const char *old_json, const char *new_json, char *key, size_t key_size, char *old_val,
                       char *new_val, size_t val_size);

/* One entry of the key table, for --help and documentation checks.
 * All strings are static. */
typedef struct {
    const char *name;    /* dotted key, e.g. "runtime.decode_threads" */
    const char *type;    /* "string", "string or null", "int", "bool", "enum", "list of strings", "mapping" */
    const char *def;     /* default as text (lists: space-separated); NULL when null/empty */
    const char *choices; /* enum values separated by '|', else NULL */
    long long min, max;  /* int range */
    const char *doc;     /* one line */
} sl_cfg_keyinfo;

/* Describes key i of the table (0, 1, ...). Returns 0, or SL_EINVAL past the last key. */
int sl_cfg_key_info(size_t i, sl_cfg_keyinfo *info);

/* Prints every key with its type, default and one-line doc (for `stemline run --help`). */
void sl_cfg_print_keys(FILE *f);

#endif
