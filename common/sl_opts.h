/* Model-specific options (separation.options.*, embedding.options.*) as the
 * job configuration hands them to a model. Below both pipeline/ and models/,
 * so that models/ never includes pipeline/. */
#ifndef SL_OPTS_H
#define SL_OPTS_H

#include <stddef.h>

/* A model-specific option (separation.options.*, embedding.options.*):
 * kept as YAML scalar text with its source location so that the model can
 * validate it and point at the line. */
typedef struct {
    char *key;
    char *value;
    char *file; /* file name, or "--set" */
    int line, column;
} sl_cfg_opt;

typedef struct {
    sl_cfg_opt *items;
    size_t n;
} sl_cfg_opts;

#endif
