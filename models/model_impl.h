/* Private to models/: how a built-in model plugs into the registry, and the
 * option-parsing helpers that give every model the same error messages. */
#ifndef SL_MODEL_IMPL_H
#define SL_MODEL_IMPL_H

#include "model.h"

struct sl_sep_model {
    sl_sep_info info;
    sl_op_ctx *ctx;
    int (*run)(sl_sep_model *m, const float *const *in, size_t n, float *const *const *out);
    void (*close)(sl_sep_model *m); /* frees impl, not the struct */
    void *impl;
};

struct sl_emb_model {
    sl_emb_info info;
    sl_op_ctx *ctx;
    int (*run)(sl_emb_model *m, const float *const *in, size_t n, float *vec);
    void (*close)(sl_emb_model *m);
    void *impl;
};

/* Built-in constructors: fill *m (allocated and zeroed by the registry).
 * Return 0 or a negative code with sl_lasterr(). */
int sl_hpss_init(sl_sep_model *m, const sl_cfg_opts *opts);
int sl_melstats_init(sl_emb_model *m, const sl_cfg_opts *opts);

/* Option helpers. section is "separation" or "embedding". Each returns 0 or
 * SL_ECONFIG with "file:line:col: key 'section.options.KEY': reason". */
int sl_model_opt_error(const sl_cfg_opt *o, const char *section, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Integer in [lo, hi]; odd_only rejects even values. */
int sl_model_opt_int(const sl_cfg_opt *o, const char *section, long lo, long hi, int odd_only, int *out);
/* Finite number in [lo, hi]. */
int sl_model_opt_double(const sl_cfg_opt *o, const char *section, double lo, double hi, double *out);
/* One of the NULL-terminated choices; *out = its index. */
int sl_model_opt_choice(const sl_cfg_opt *o, const char *section, const char *const *choices, int *out);

#endif
