/* Ledger: one SQLite database (WAL mode) per output folder and shard, one row per
 * track. It is what makes a run resumable: a track is done only when its row says
 * so, and that row is written after every output of the track is in place. */
#ifndef SL_LEDGER_H
#define SL_LEDGER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sl_ledger sl_ledger;

typedef enum { SL_TRACK_PENDING = 0, SL_TRACK_DONE = 1, SL_TRACK_FAILED = 2 } sl_track_status;

/* A vector beyond the track vector of the mix (schema 3): the track vector of a
 * stem, or one window of a timeline (of the mix or of a stem). */
typedef struct {
    const char *source;    /* "mix" or a stem name */
    int window;            /* -1 = the track vector of this source; k >= 0 = window k of its timeline */
    double start, end;     /* seconds: the window's span (track vectors: 0 and the duration) */
    const float *vector;   /* dim floats (the row's dim), final form */
    const char *tags_json; /* top tags of a stem's track vector, or NULL */
} sl_ledger_vec;

typedef struct {
    const char *id;
    const char *path;
    int64_t size;
    int64_t mtime_ns;
    const char *config_hash;
    sl_track_status status;
    const char *error;        /* NULL unless failed */
    const char *outputs_json; /* JSON array of output paths relative to output.dir */
    const char *files_json;   /* the same outputs as they were written: JSON array of
                                 {"path", "size", "hash"} (pipeline/outputs.h); NULL when
                                 none or for rows written before it existed */
    const char *timings_json; /* JSON object, seconds per stage */
    double duration;          /* seconds of audio, 0 when unknown */
    const float *vector;      /* embedding of the mix (dim floats, final form), NULL if none */
    int dim;
    const char *vector_model; /* e.g. "melstats" */
    const char *tags_json;    /* JSON array of the top clip tags, NULL when none (schema 2) */
    /* put: what decoding the input saw, a JSON object ("decoded_seconds",
     * "stated_seconds", "corrupt_packets", "nonfinite_samples"), kept in the
     * column decode; NULL when nothing decoded */
    const char *decode_json;
    /* put: further vectors of a done track (same dim and model), stored with the row in one
     * transaction, replacing the ones stored before for this id. */
    const sl_ledger_vec *vecs;
    size_t n_vecs;
    /* each_source_vector: which vector this row carries (the mix track vector: "mix", -1,
     * 0, duration) */
    const char *source;
    int window;
    double start, end;
} sl_ledger_row;

/* Opens (creating if needed) the ledger at path, WAL mode, busy timeout set, schema
 * created or checked. Returns 0 or SL_EDB with sl_lasterr(). Owned by caller. */
int sl_ledger_open(sl_ledger **out, const char *path);
void sl_ledger_close(sl_ledger *l);

/* 1 when a row for id exists with status done and the same path, size, mtime and
 * config_hash; 0 when the track must be (re)done; negative on error. */
int sl_ledger_is_done(sl_ledger *l, const char *id, const char *path, int64_t size, int64_t mtime_ns,
                      const char *config_hash);

/* Inserts or replaces the row for r->id in one transaction. Thread-safe (the
 * ledger serialises writers). Returns 0 or SL_EDB. */
int sl_ledger_put(sl_ledger *l, const sl_ledger_row *r);

/* Calls fn for each done row with a vector, in id order (for shard writing);
 * the row's pointers are valid only during the call. Stops and returns fn's
 * value if non-zero. */
int sl_ledger_each_vector(sl_ledger *l, const char *vector_model,
                          int (*fn)(void *arg, const sl_ledger_row *r), void *arg);

/* Calls fn for each vector of one source of the done rows of a model: with
 * timeline 0 the track vectors (row.vector, row.tags_json of that source), with
 * timeline 1 every window (row.window, row.start, row.end), in (id, window)
 * order. Other row fields are the track's. Same contract as each_vector. */
int sl_ledger_each_source_vector(sl_ledger *l, const char *vector_model, const char *source, int timeline,
                                 int (*fn)(void *arg, const sl_ledger_row *r), void *arg);

/* Calls fn for every row in id order (for reports). Same contract. */
int sl_ledger_each(sl_ledger *l, int (*fn)(void *arg, const sl_ledger_row *r), void *arg);

/* The job record: the output-affecting configuration the ledger's done rows were
 * made with (sl_cfg_output_hash and sl_cfg_output_json). get: 0 with malloc'd
 * copies (caller frees), both NULL when none was recorded (a new ledger, or one
 * from a version that did not record it); SL_EDB or SL_ENOMEM. set: replaces it;
 * 0 or SL_EDB. */
int sl_ledger_get_job(sl_ledger *l, char **config_hash, char **settings_json);
int sl_ledger_set_job(sl_ledger *l, const char *config_hash, const char *settings_json);

/* How many done rows carry a config hash other than config_hash (one of them in
 * other, "" when none); negative on error. */
long sl_ledger_count_other(sl_ledger *l, const char *config_hash, char other[17]);

/* Deletes every row (and its vectors) whose config hash is not config_hash, in
 * one transaction. Returns 0 or SL_EDB. */
int sl_ledger_delete_other(sl_ledger *l, const char *config_hash);

/* The recorded outputs of id's row (its outputs and files columns), malloc'd
 * (caller frees); both NULL when there is no row or they are empty. 0, SL_EDB or
 * SL_ENOMEM. */
int sl_ledger_get_outputs(sl_ledger *l, const char *id, char **outputs_json, char **files_json);

#endif
