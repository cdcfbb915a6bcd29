// Op topk: a running top k per row over blocks of scores (semantics in
// kernels/ops.h, rank order in kernels/topk_key.h, shared with the CPU
// reference). The list of a row lives in the caller's arrays (top_score,
// top_index: device memory kept across calls, so a search downloads only the
// final k per query). One block of 256 threads per row (grid-stride over rows);
// the row's scores are taken in chunks of 1024:
//  1. filter: each thread keys its 4 scores and keeps those that beat the
//     list's last entry (all of them while the list is not full). Once the list
//     has settled almost nothing passes, and a chunk without a survivor costs
//     one coalesced read of its scores and the prefix sum below;
//  2. compaction of the survivors into shared memory by a block prefix sum
//     (deterministic, no atomics);
//  3. bitonic sort of the survivors, best first ((key, index) pairs are unique:
//     the order is total, so the result does not depend on arrival order);
//  4. merge-path merge into the list, in place: output positions from the end
//     of the list backwards, a tile of 256 at a time, only from the first
//     position the best survivor displaces. Output p reads list entries at or
//     before p only, which no earlier tile (all at higher positions) has
//     written; every thread reads before the barrier and writes after it.
// Every barrier is reached by all threads with block-uniform trip counts. No
// warp intrinsics (the launch emulation runs this kernel in CI).
#include "cu_ops.h"
#include "../topk_key.h"

#define TK_B 256               // threads per block
#define TK_PER 4               // scores per thread per chunk
#define TK_CHUNK (TK_B * TK_PER)

// Entry i of a row's list: empty slots (negative index) have key 0.
static __device__ __forceinline__ void tk_load(const float *ts, const int64_t *ti, size_t i, uint32_t *key,
                                               int64_t *index)
{
    const int64_t v = ti[i];
    *index = v < 0 ? -1 : v;
    *key = v < 0 ? SL_TOPK_KEY_EMPTY : sl_topk_key(ts[i]);
}

static __global__ void __launch_bounds__(TK_B)
    topk_kernel(size_t nq, size_t n, size_t k, const float *__restrict__ scores, size_t ld, int64_t base, int reset,
                float *__restrict__ top_score, int64_t *__restrict__ top_index)
{
    SL_SHARED(uint32_t, s_key, [TK_CHUNK]);
    SL_SHARED(int64_t, s_idx, [TK_CHUNK]);
    SL_SHARED(int, s_scan, [TK_B]);
    const int tid = (int)threadIdx.x;
    for (size_t q = blockIdx.x; q < nq; q += gridDim.x) {
        float *ts = top_score + q * k;
        int64_t *ti = top_index + q * k;
        if (reset)
            for (size_t i = (size_t)tid; i < k; i += TK_B) {
                ts[i] = -INFINITY;
                ti[i] = -1;
            }
        for (size_t c0 = 0; c0 < n; c0 += TK_CHUNK) {
            // the list as the previous chunk (or the reset) left it; shared buffers free
            __syncthreads();
            const float *row = scores + q * ld;
            uint32_t lk;
            int64_t li;
            tk_load(ts, ti, k - 1, &lk, &li);
            uint32_t ck[TK_PER];
            int64_t ci[TK_PER];
            int cnt = 0;
            for (int p = 0; p < TK_PER; p++) {
                const size_t j = c0 + (size_t)p * TK_B + (size_t)tid;
                if (j < n) {
                    const uint32_t key = sl_topk_key(row[j]);
                    const int64_t index = base + (int64_t)j;
                    if (sl_topk_better(key, index, lk, li)) {
                        ck[cnt] = key;
                        ci[cnt] = index;
                        cnt++;
                    }
                }
            }
            // inclusive prefix sum of the survivor counts (Hillis-Steele)
            s_scan[tid] = cnt;
            __syncthreads();
            for (int off = 1; off < TK_B; off *= 2) {
                const int v = tid >= off ? s_scan[tid - off] : 0;
                __syncthreads();
                s_scan[tid] += v;
                __syncthreads();
            }
            const int total = s_scan[TK_B - 1];
            const int at = s_scan[tid] - cnt;
            for (int p = 0; p < cnt; p++) {
                s_key[at + p] = ck[p];
                s_idx[at + p] = ci[p];
            }
            if (total == 0)
                continue; // uniform: the barrier at the top protects s_scan
            // bitonic sort of the survivors, padded with entries below everything
            int m = 1;
            while (m < total)
                m *= 2;
            for (int i = total + tid; i < m; i += TK_B) {
                s_key[i] = SL_TOPK_KEY_EMPTY;
                s_idx[i] = INT64_MAX;
            }
            __syncthreads();
            for (int size = 2; size <= m; size *= 2)
                for (int stride = size / 2; stride > 0; stride /= 2) {
                    for (int i = tid; i < m; i += TK_B) {
                        const int j = i ^ stride;
                        if (j > i) {
                            const bool best_first = (i & size) == 0;
                            const bool swap = best_first ? sl_topk_better(s_key[j], s_idx[j], s_key[i], s_idx[i])
                                                         : sl_topk_better(s_key[i], s_idx[i], s_key[j], s_idx[j]);
                            if (swap) {
                                const uint32_t tk = s_key[i];
                                const int64_t tx = s_idx[i];
                                s_key[i] = s_key[j];
                                s_idx[i] = s_idx[j];
                                s_key[j] = tk;
                                s_idx[j] = tx;
                            }
                        }
                    }
                    __syncthreads();
                }
            // merge: positions before `first` keep their entries
            const size_t c = (size_t)total;
            size_t lo = 0, hi = k;
            while (lo < hi) {
                const size_t mid = (lo + hi) / 2;
                tk_load(ts, ti, mid, &lk, &li);
                if (sl_topk_better(lk, li, s_key[0], s_idx[0]))
                    lo = mid + 1;
                else
                    hi = mid;
            }
            const size_t first = lo; // < k: the best survivor beats the last entry
            for (size_t end = k; end > first;) {
                const size_t t0 = end - first > TK_B ? end - TK_B : first;
                const size_t p = t0 + (size_t)tid;
                const bool mine = p < end;
                uint32_t ok = 0;
                int64_t oi = 0;
                if (mine) {
                    // co-rank: how many list entries are among the first p outputs
                    size_t a = p > c ? p - c : 0, b = p;
                    while (a < b) {
                        const size_t mid = (a + b) / 2;
                        tk_load(ts, ti, mid, &lk, &li);
                        const size_t j = p - mid - 1;
                        if (sl_topk_better(lk, li, s_key[j], s_idx[j]))
                            a = mid + 1;
                        else
                            b = mid;
                    }
                    const size_t j = p - a;
                    tk_load(ts, ti, a, &lk, &li); // a <= p < k
                    const bool from_list = j >= c || sl_topk_better(lk, li, s_key[j], s_idx[j]);
                    ok = from_list ? lk : s_key[j];
                    oi = from_list ? li : s_idx[j];
                }
                __syncthreads();
                if (mine) {
                    ts[p] = sl_topk_value(ok);
                    ti[p] = ok == SL_TOPK_KEY_EMPTY ? -1 : oi;
                }
                __syncthreads();
                end = t0;
            }
        }
    }
}

extern "C" int SL_FN(topk)(sl_op_ctx *ctx, const sl_topk_args *a)
{
    return SL_LAUNCH(topk_kernel, dim3(sl_blocks_for(a->nq, 1, 1u << 16)), dim3(TK_B), 0, SL_FN(stream)(ctx), a->nq,
                     a->n, a->k, a->scores, a->ld, a->base, a->reset, a->top_score, a->top_index);
}
