/* Rows for the ledger and shard tests (test_ledger.c, test_shards.c): a vector
 * of known values and a done row around it. */
#ifndef SL_TEST_LEDGER_ROWS_H
#define SL_TEST_LEDGER_ROWS_H

#include "pipeline/ledger.h"

static inline void vec_of(float *v, int dim, int seed)
{
    for (int i = 0; i < dim; i++)
        v[i] = (float)seed + (float)i / 64.0f;
}

static inline sl_ledger_row done_row(const char *id, const char *path, const float *v, int dim, const char *model)
{
    sl_ledger_row r = {0};
    r.id = id;
    r.path = path;
    r.size = 1000;
    r.mtime_ns = 1700000000123456789LL;
    r.config_hash = "0123456789abcdef";
    r.status = SL_TRACK_DONE;
    r.outputs_json = "[\"stems/x/vocals.wav\"]";
    r.timings_json = "{\"decode\": 0.5}";
    r.duration = 12.5;
    r.vector = v;
    r.dim = dim;
    r.vector_model = model;
    return r;
}

#endif
