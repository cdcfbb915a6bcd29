// Op log_db: out = 10*log10(max(amin, in)) computed in double and rounded to
// float exactly as the CPU reference; with top_db > 0 each batch item is
// clamped below at its own maximum minus top_db (librosa.power_to_db).
//
// The per-item maximum is a reduction: one block per item takes the maximum of
// max(amin, x) over its n values (strided loads, then a shared-memory tree; max
// is exact and order independent, so the result is deterministic) into the
// workspace, and the element-wise kernel reads it. log10 is monotonic, so
// log(max) is the max of the logs the CPU takes. NaN inputs stay NaN (and are
// never the maximum, as on the CPU). out may alias in: the reduction finishes
// (stream order) before the element-wise pass overwrites anything.
#include "cu_ops.h"

#define LOGDB_RED 256

static __device__ __forceinline__ float logdb_of(float x, float amin)
{
    const float v = x > amin ? x : amin;
    return x != x ? x : (float)(10.0 * log10((double)v));
}

static __global__ void __launch_bounds__(LOGDB_RED)
    logdb_max_kernel(size_t batch, size_t n, const float *__restrict__ in, float amin, float *__restrict__ item_max)
{
    SL_SHARED(float, s_max, [LOGDB_RED]);
    const int tx = (int)threadIdx.x;
    for (size_t b = blockIdx.x; b < batch; b += gridDim.x) {
        const float *x = in + b * n;
        float mx = amin;
        for (size_t i = tx; i < n; i += LOGDB_RED) {
            const float v = x[i];
            mx = v > mx ? v : mx; // NaN compares false: ignored
        }
        __syncthreads(); // the previous item's reduction has been read
        s_max[tx] = mx;
        __syncthreads();
        for (int w = LOGDB_RED / 2; w > 0; w /= 2) {
            if (tx < w)
                s_max[tx] = s_max[tx + w] > s_max[tx] ? s_max[tx + w] : s_max[tx];
            __syncthreads();
        }
        if (tx == 0)
            item_max[b] = s_max[0];
    }
}

static __global__ void logdb_apply_kernel(size_t batch, size_t n, const float *in, float amin, float top_db,
                                          const float *__restrict__ item_max, float *out)
{
    const size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    for (size_t b = blockIdx.y; b < batch; b += gridDim.y) {
        float y = logdb_of(in[b * n + i], amin);
        if (item_max) {
            const float floor_db = logdb_of(item_max[b], amin) - top_db;
            if (y < floor_db)
                y = floor_db;
        }
        out[b * n + i] = y;
    }
}

extern "C" size_t SL_FN(log_db_workspace)(size_t batch, size_t n, float top_db)
{
    (void)n;
    return top_db > 0 ? batch * sizeof(float) : 0;
}

static int log_db_launch(sl_stream_t s, float *ws, size_t batch, size_t n, const float *in, float amin, float top_db,
                         float *out)
{
    if (ws) {
        int rc = SL_LAUNCH(logdb_max_kernel, dim3(sl_blocks_for(batch, 1, 1u << 20)), dim3(LOGDB_RED), 0, s, batch, n,
                           in, amin, ws);
        if (rc < 0)
            return rc;
    }
    const dim3 grid(sl_blocks_for(n, SL_BLOCK, 1u << 30), sl_blocks_for(batch, 1, SL_GRID_YZ_MAX));
    return SL_LAUNCH(logdb_apply_kernel, grid, dim3(SL_BLOCK), 0, s, batch, n, in, amin, top_db,
                     (const float *)ws, out);
}

extern "C" int SL_FN(log_db)(sl_op_ctx *ctx, size_t batch, size_t n, const float *in, float amin, float top_db,
                             float *out)
{
    void *ws = NULL;
    const size_t bytes = SL_FN(log_db_workspace)(batch, n, top_db);
    if (bytes) {
        int rc = SL_FN(scratch)(ctx, bytes, &ws);
        if (rc < 0)
            return rc;
    }
    return log_db_launch(SL_FN(stream)(ctx), (float *)ws, batch, n, in, amin, top_db, out);
}
