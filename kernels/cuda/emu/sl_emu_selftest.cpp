// Kernels that exercise the launch emulation itself (tests/unit/test_cuda_emu.c):
// barrier ordering, shared memory per block, dynamic shared memory, index
// variables, and the two divergence checks that must abort.
#include "../sl_cuda.h"
#include "sl_emu_selftest.h"

#include <math.h>
#include <stdlib.h>

static __global__ void reverse_kernel(const int *in, int *out)
{
    SL_SHARED(int, s, [64]);
    const int t = (int)(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
    const int n = (int)(blockDim.x * blockDim.y * blockDim.z);
    const int base = (int)blockIdx.x * n;
    s[t] = in[base + t];
    __syncthreads(); // without it, thread 0 would read s[n-1] before thread n-1 wrote it
    out[base + t] = s[n - 1 - t];
}

static __global__ void reduce_kernel(const int *in, int *out)
{
    SL_DYN_SHARED(int, s);
    const int t = (int)threadIdx.x;
    s[t] = in[blockIdx.x * blockDim.x + t];
    __syncthreads();
    for (int w = (int)blockDim.x / 2; w > 0; w /= 2) {
        if (t < w)
            s[t] += s[t + w];
        __syncthreads();
    }
    if (t == 0)
        out[blockIdx.x] = s[0];
}

static __global__ void divergent_kernel(int *out)
{
    if (threadIdx.x < 5)
        return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

static __global__ void two_barriers_kernel(int *out)
{
    if (threadIdx.x % 2) {
        out[threadIdx.x] = 1;
        __syncthreads();
    } else {
        out[threadIdx.x] = 2;
        __syncthreads();
    }
}

static __global__ void index_kernel(int *hits, int nx)
{
    const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const unsigned bid = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned nt = blockDim.x * blockDim.y * blockDim.z;
    hits[bid * nt + tid] += 1 + (int)(blockIdx.x == (unsigned)(bid % (unsigned)nx));
}

// A read-before-write bug: only block 0 fills the tile; block 1 must read the
// poison (NaN), not block 0's stale values as plain static storage would give.
static __global__ void stale_shared_kernel(float *out)
{
    SL_SHARED(float, tile, [32]);
    if (blockIdx.x == 0)
        tile[threadIdx.x] = 7.0f;
    __syncthreads();
    out[blockIdx.x * 32 + threadIdx.x] = tile[31 - threadIdx.x];
}

// More static shared memory than a block can have (48 KiB).
static __global__ void big_static_kernel(float *out)
{
    SL_SHARED(float, big, [12800]); // 50 KiB
    big[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = big[threadIdx.x];
}

// 8 KiB of static shared memory beside the launch's dynamic shared memory; two
// kernels, as an opt-in is per kernel: one without, one with.
static __device__ void mixed_shared_body(float *st, float *out, int n_dyn)
{
    SL_DYN_SHARED(float, dyn);
    for (int i = (int)threadIdx.x; i < 2048; i += (int)blockDim.x)
        st[i] = (float)i;
    for (int i = (int)threadIdx.x; i < n_dyn; i += (int)blockDim.x)
        dyn[i] = (float)-i;
    __syncthreads();
    out[threadIdx.x] = st[2047 - threadIdx.x] + dyn[n_dyn - 1 - (int)threadIdx.x];
}
static __global__ void mixed_shared_kernel(float *out, int n_dyn)
{
    SL_SHARED(float, st, [2048]);
    mixed_shared_body(st, out, n_dyn);
}
static __global__ void mixed_shared_optin_kernel(float *out, int n_dyn)
{
    SL_SHARED(float, st, [2048]);
    mixed_shared_body(st, out, n_dyn);
}

// a*b + c: contracted into one fused multiply-add where the build contracts
// (nvcc by default; the emulation only in its -ffp-contract=fast build).
static __global__ void fma_kernel(const float *a, const float *b, const float *c, float *out)
{
    out[threadIdx.x] = a[threadIdx.x] * b[threadIdx.x] + c[threadIdx.x];
}

// Each block leaves its values in global memory and its own dynamic shared
// memory, meets the grid, then reads the next block's global values: right
// only if every block finished the first phase before any read.
static __global__ void coop_kernel(int *buf, int *out)
{
    SL_DYN_SHARED(int, s);
    const int n = (int)blockDim.x, b = (int)blockIdx.x, nb = (int)gridDim.x, t = (int)threadIdx.x;
    buf[b * n + t] = b * 1000 + t;
    s[t] = b;
    SL_GRID_SYNC();
    const int next = (b + 1) % nb;
    out[b * n + t] = buf[next * n + (n - 1 - t)] + 1000000 * s[t];
}

static __global__ void coop_divergent_kernel(int *buf)
{
    if (blockIdx.x == 0)
        return;
    SL_GRID_SYNC();
    buf[blockIdx.x] = 1;
}

static __global__ void order_kernel(int *log, int *pos)
{
    const int me = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    log[pos[0]++] = me; // threads never run at once here: a plain increment is exact
    __syncthreads();
    log[32 + pos[1]++] = me;
}

extern "C" int sl_emu_selftest_order(int *log)
{
    int pos_[2] = {0, 0};
    int *pos = pos_;
    return SL_LAUNCH(order_kernel, dim3(4), dim3(8), 0, nullptr, log, pos);
}

extern "C" unsigned sl_emu_selftest_blocks(size_t n, unsigned per_block, unsigned cap)
{
    return sl_blocks_for(n, per_block, cap);
}

extern "C" int sl_emu_selftest(int which)
{
    int in_[256], out_[256], bad = 0, rc = 0;
    for (int i = 0; i < 256; i++) {
        in_[i] = i * 7 + 1;
        out_[i] = -1;
    }
    // Kernel arguments are pointers, as on a device (a captured array would be copied).
    int *in = in_, *out = out_;
    switch (which) {
    case SL_EMU_TEST_BARRIER:
        rc = SL_LAUNCH(reverse_kernel, dim3(2), dim3(4, 2, 3), 0, nullptr, in, out);
        for (int b = 0; b < 2; b++)
            for (int t = 0; t < 24; t++)
                bad += out[b * 24 + t] != in[b * 24 + 23 - t];
        return rc < 0 ? rc : bad;
    case SL_EMU_TEST_REDUCE:
        rc = SL_LAUNCH(reduce_kernel, dim3(4), dim3(64), 64 * sizeof(int), nullptr, in, out);
        for (int b = 0; b < 4; b++) {
            int want = 0;
            for (int t = 0; t < 64; t++)
                want += in[b * 64 + t];
            bad += out[b] != want;
        }
        return rc < 0 ? rc : bad;
    case SL_EMU_TEST_DIVERGENT:
        return SL_LAUNCH(divergent_kernel, dim3(1), dim3(32), 0, nullptr, out);
    case SL_EMU_TEST_TWO_BARRIERS:
        return SL_LAUNCH(two_barriers_kernel, dim3(1), dim3(32), 0, nullptr, out);
    case SL_EMU_TEST_BAD_LAUNCH:
        return SL_LAUNCH(index_kernel, dim3(1), dim3(2048), 0, nullptr, out, 1);
    case SL_EMU_TEST_INDEX: {
        // grid 3x2x2, block 2x3x2: 12 blocks x 12 threads = 144 cells, each hit once with value 2
        int *hits = static_cast<int *>(calloc(144, sizeof(int)));
        if (!hits)
            return SL_ENOMEM;
        rc = SL_LAUNCH(index_kernel, dim3(3, 2, 2), dim3(2, 3, 2), 0, nullptr, hits, 3);
        for (int i = 0; i < 144; i++)
            bad += hits[i] != 2;
        free(hits);
        return rc < 0 ? rc : bad;
    }
    case SL_EMU_TEST_SHARED_POISON: {
        float *f = reinterpret_cast<float *>(out);
        rc = SL_LAUNCH(stale_shared_kernel, dim3(2), dim3(32), 0, nullptr, f);
        for (int t = 0; t < 32; t++)
            bad += (f[t] != 7.0f) + !isnan(f[32 + t]);
        return rc < 0 ? rc : bad;
    }
    case SL_EMU_TEST_SHARED_STATIC:
        return SL_LAUNCH(big_static_kernel, dim3(1), dim3(64), 0, nullptr, reinterpret_cast<float *>(out));
    case SL_EMU_TEST_SHARED_TOTAL: // 8 KiB + 42 KiB > 48 KiB
        return SL_LAUNCH(mixed_shared_kernel, dim3(1), dim3(64), 10752 * sizeof(float), nullptr,
                         reinterpret_cast<float *>(out), 10752);
    case SL_EMU_TEST_SHARED_OPTIN: {
        const int n_dyn = 16384; // 8 KiB + 64 KiB <= the 96 KiB opt-in
        rc = SL_SHMEM_OPTIN(mixed_shared_optin_kernel, 96 * 1024);
        if (rc < 0)
            return rc;
        float *f = reinterpret_cast<float *>(out);
        rc = SL_LAUNCH(mixed_shared_optin_kernel, dim3(2), dim3(64), n_dyn * sizeof(float), nullptr, f, n_dyn);
        for (int t = 0; t < 64; t++)
            bad += f[t] != (float)(2047 - t) - (float)(n_dyn - 1 - t);
        return rc < 0 ? rc : bad;
    }
    case SL_EMU_TEST_OPTIN_LIMIT:
        return SL_SHMEM_OPTIN(mixed_shared_kernel, 228 * 1024);
    case SL_EMU_TEST_DYN_NO_OPTIN:
        return SL_LAUNCH(reduce_kernel, dim3(1), dim3(64), 64 * 1024, nullptr, in, out);
    case SL_EMU_TEST_FMA: {
        // (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24 rounds to 1 + 2^-11 in float: the
        // sum with -(1 + 2^-11) is 0 unfused and 2^-24 fused.
        float fa_[1] = {1.0f + 0x1p-12f}, fc_[1] = {-(1.0f + 0x1p-11f)}, fo_[1] = {-1.0f};
        float *fa = fa_, *fc = fc_, *fo = fo_;
        rc = SL_LAUNCH(fma_kernel, dim3(1), dim3(1), 0, nullptr, fa, fa, fc, fo);
        if (rc < 0)
            return rc;
        return fo[0] == 0x1p-24f ? 1 : fo[0] == 0.0f ? 0 : SL_ENUMERIC;
    }
    case SL_EMU_TEST_COOP: {
        int *buf = static_cast<int *>(malloc(6 * 32 * sizeof(int))), *o = static_cast<int *>(malloc(6 * 32 * sizeof(int)));
        if (!buf || !o) {
            free(buf);
            free(o);
            return SL_ENOMEM;
        }
        rc = SL_LAUNCH_COOP(coop_kernel, dim3(6), dim3(32), 32 * sizeof(int), nullptr, buf, o);
        for (int b = 0; b < 6; b++)
            for (int t = 0; t < 32; t++)
                bad += o[b * 32 + t] != ((b + 1) % 6) * 1000 + (31 - t) + 1000000 * b;
        free(buf);
        free(o);
        return rc < 0 ? rc : bad;
    }
    case SL_EMU_TEST_COOP_DIVERGENT:
        return SL_LAUNCH_COOP(coop_divergent_kernel, dim3(4), dim3(8), 0, nullptr, out);
    case SL_EMU_TEST_GRID_SYNC_PLAIN:
        return SL_LAUNCH(coop_divergent_kernel, dim3(4), dim3(8), 0, nullptr, out);
    case SL_EMU_TEST_COOP_TOO_BIG:
        return SL_LAUNCH_COOP(coop_divergent_kernel, dim3(9), dim3(1024), 0, nullptr, out);
    default:
        return SL_EINVAL;
    }
}
