/* Clip tags: the top-k classes of an embedding model's classifier head (Cnn14:
 * 527 AudioSet classes) per track, kept in the ledger and written as
 * tags/MODEL/{prefix}tags.jsonl in track id order. */
#ifndef SL_TAGS_H
#define SL_TAGS_H

#include <stdio.h>

#include "ledger.h"

/* Class names for a head of n classes: the AudioSet labels (data/audioset_labels.csv,
 * found through $STEMLINE_DATA_DIR, the source tree or ../share/stemline/data next
 * to the executable) when n == 527; NULL when unknown (tags then carry indices
 * only). Loaded once; owned by the library. */
const char *const *sl_labels_for(int n);

/* JSON array of the k highest mean scores (sum[i] / weight), best first, ties by
 * class index: [{"index": i, "label": "...", "score": s}, ...], each entry with
 * "cosine": cosine[i] too when cosine is not NULL (zero-shot tags). malloc'd (caller
 * frees); NULL on allocation failure. */
char *sl_tags_json(const double *sum, int n, double weight, int k, const char *const *labels, const double *cosine);

/* Opens the data file name (e.g. "audioset_labels.csv") from $STEMLINE_DATA_DIR, the
 * data folder next to or above the executable, ../share/stemline/data, or the source
 * tree; NULL when none is found. */
FILE *sl_data_open(const char *name);

/* Writes one line per done track and source that has tags: the sources in the
 * order given, each in track id order: {"id", "path", "model", "source", "tags": [...]}.
 * Atomic (temp + rename). Returns 0 or a negative code with sl_lasterr(). */
int sl_tags_write(const char *path, sl_ledger *l, const char *model, const char *const *sources, size_t n_sources);

#endif
