/* CPU reference of the topk op (kernels/ops.h): per row, the list so far plus
 * every score of the block that beats the list's last entry, sorted by the rank
 * of kernels/topk_key.h, the first k kept. Plainly correct rather than fast:
 * the search's CPU path does its own selection (pipeline/search_scan.c). */
#include <stdlib.h>

#include "../../common/sl_error.h"
#include "../topk_key.h"
#include "cpu_ops.h"

typedef struct {
    uint32_t key;
    int64_t index;
} tk_entry;

static int tk_cmp(const void *a, const void *b)
{
    const tk_entry *x = a, *y = b;
    if (sl_topk_better(x->key, x->index, y->key, y->index))
        return -1;
    return sl_topk_better(y->key, y->index, x->key, x->index);
}

int sl_cpu_topk(sl_op_ctx *ctx, const sl_topk_args *a)
{
    (void)ctx;
    tk_entry *buf = malloc((a->k + a->n) * sizeof *buf);
    if (!buf)
        return sl_seterr(SL_ENOMEM, "cpu topk: cannot allocate %zu entries", a->k + a->n);
    for (size_t q = 0; q < a->nq; q++) {
        float *ts = a->top_score + q * a->k;
        int64_t *ti = a->top_index + q * a->k;
        size_t m = 0;
        for (size_t i = 0; i < a->k; i++, m++) {
            int empty = a->reset || ti[i] < 0;
            buf[m].key = empty ? SL_TOPK_KEY_EMPTY : sl_topk_key(ts[i]);
            buf[m].index = empty ? -1 : ti[i];
        }
        const tk_entry last = buf[a->k - 1];
        const float *row = a->n ? a->scores + q * a->ld : NULL;
        for (size_t j = 0; j < a->n; j++) {
            tk_entry e = {sl_topk_key(row[j]), a->base + (int64_t)j};
            if (sl_topk_better(e.key, e.index, last.key, last.index))
                buf[m++] = e;
        }
        qsort(buf, m, sizeof *buf, tk_cmp);
        for (size_t i = 0; i < a->k; i++) {
            ts[i] = sl_topk_value(buf[i].key);
            ti[i] = buf[i].key == SL_TOPK_KEY_EMPTY ? -1 : buf[i].index;
        }
    }
    free(buf);
    return 0;
}
