/* embedding.center: catalog. The ledger then keeps each vector as the model
 * gives it (not normalised); once every track is done, the mean of the rows of
 * a shard folder (one model, source, timeline or not, shard prefix) is written
 * as {prefix}mean.npy ([1, dim] float32) beside the shards, and every row is
 * written as (vector - mean), L2-normalised when embedding.normalize. The
 * sidecar index.json names the file and its content hash, so that queries
 * (`stemline search --audio`) are centred on exactly the same mean. A sharded
 * job's shards are each centred on their own mean until `stemline merge`
 * centres every shard set on the mean of all of them. */
#ifndef SL_CENTER_H
#define SL_CENTER_H

#include <stddef.h>

#include "io/filehash.h"

/* v[i] -= mean[i] (in double), then divided by its L2 norm when normalize (a
 * zero vector stays zero). */
void sl_center_apply(float *v, const float *mean, int dim, int normalize);

/* Writes dir/{prefix}mean.npy atomically; *name (size name_size) receives
 * "{prefix}mean.npy", hash its content hash. Returns 0 or a negative code. */
int sl_center_write(const char *dir, const char *prefix, const float *mean, int dim, char *name, size_t name_size,
                    char hash[SL_FILE_HASH_HEX]);

/* Reads dir/name into *mean (malloc'd, dim floats) after checking its content
 * hash and shape. SL_EFORMAT (another hash or shape: the file changed since the
 * sidecar was written) or a negative code, with the file named. */
int sl_center_load(const char *dir, const char *name, const char *hash, int dim, float **mean);

#endif
