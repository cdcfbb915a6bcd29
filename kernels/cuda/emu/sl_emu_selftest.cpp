// Kernels that exercise the launch emulation itself (tests/unit/test_cuda_emu.c):
// barrier ordering, shared memory per block, dynamic shared memory, index
// variables, and the two divergence checks that must abort.
#include "../sl_cuda.h"
#include "sl_emu_selftest.h"

#include <stdlib.h>

static __global__ void reverse_kernel(const int *in, int *out)
{
    __shared__ int s[64];
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
    default:
        return SL_EINVAL;
    }
}
