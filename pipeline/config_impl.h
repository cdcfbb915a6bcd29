/* Internals of the job configuration, shared by its files: config.c (the
 * table of keys, lookups in it, defaults, key descriptions), config_load.c
 * (reading the YAML document and --set overrides, checking values, pointing
 * errors at FILE:LINE:COL), config_dump.c (writing the effective
 * configuration back as YAML). Not a public interface. */
#ifndef SL_CONFIG_IMPL_H
#define SL_CONFIG_IMPL_H

#include <stddef.h>

#include "config.h"


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

/* The table of keys (config.c) and its length. */
extern const keydef sl_cfg_keys[];
extern const size_t sl_cfg_nkeys;
/* Room for per-key state while loading; config.c checks that the table fits. */
#define SL_CFG_MAX_KEYS 256

static inline char **fld_str(sl_config *cfg, const keydef *k) { return (char **)((char *)cfg + k->off); }
static inline const char *const *cfld_str(const sl_config *cfg, const keydef *k)
{
    return (const char *const *)((const char *)cfg + k->off);
}
static inline int *fld_int(sl_config *cfg, const keydef *k) { return (int *)((char *)cfg + k->off); }
static inline int cfld_int(const sl_config *cfg, const keydef *k) { return *(const int *)((const char *)cfg + k->off); }
static inline double *fld_num(sl_config *cfg, const keydef *k) { return (double *)((char *)cfg + k->off); }
static inline double cfld_num(const sl_config *cfg, const keydef *k)
{
    return *(const double *)((const char *)cfg + k->off);
}
static inline char ***fld_list(sl_config *cfg, const keydef *k) { return (char ***)((char *)cfg + k->off); }
static inline size_t *fld_cnt(sl_config *cfg, const keydef *k) { return (size_t *)((char *)cfg + k->cnt_off); }
static inline sl_cfg_opts *fld_opts(sl_config *cfg, const keydef *k) { return (sl_cfg_opts *)((char *)cfg + k->off); }

char *sl_cfg_strdup(const char *s);
void sl_cfg_free_list(char **l, size_t n);
void sl_cfg_free_opts(sl_cfg_opts *o);
const keydef *sl_cfg_find_key(const char *name);
/* A section is a proper prefix of some key at a dot boundary ("output", "output.stems"). */
int sl_cfg_is_section(const char *name);
/* Edit distance with adjacent transpositions (optimal string alignment). */
size_t sl_cfg_levenshtein(const char *a, const char *b);
/* "prefix.name" (or "name" when prefix is empty), truncated to size. */
void sl_cfg_join_name(char *out, size_t size, const char *prefix, const char *name);
/* The part of a key name after its last dot. */
const char *sl_cfg_leaf(const char *name);
/* Closest key or section name to an unknown one, or NULL when nothing is close. */
const char *sl_cfg_suggest(const char *name, char *buf, size_t size);

#endif
