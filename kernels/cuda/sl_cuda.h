// One header for every kernel source in kernels/cuda/, so each .cu file is
// compiled twice from the same text:
//
//  * by nvcc (__CUDACC__): the real CUDA backend "cuda". SL_LAUNCH is a real
//    kernel<<<grid, block, shmem, stream>>>(...) followed by cudaGetLastError.
//  * by g++ as host C++ with -DSL_CUDA_EMU: the backend "cuda-emu", which runs
//    the same kernels on the CPU. Blocks run one after the other; the threads of
//    a block run as coroutines (kernels/cuda/emu/sl_emu.cpp) that all meet at
//    __syncthreads(). threadIdx/blockIdx/blockDim/gridDim are per host thread
//    variables swapped on every coroutine switch, static shared memory
//    (SL_SHARED) is per host thread storage (one block at a time uses it) and,
//    like dynamic shared memory, poisoned with 0xFF (NaN) at every block start.
//
// Kernels use only what is emulated here: the index variables, SL_SHARED,
// SL_DYN_SHARED, SL_SHMEM_OPTIN, __syncthreads, atomicMin/atomicMax on int, __float_as_uint /
// __uint_as_float, __fadd_rn / __fmul_rn and the standard math functions. No warp intrinsics: block
// reductions go through shared memory, which the emulation checks for barrier
// discipline. Names exported from a kernel file go through SL_FN so the two
// builds (both linked into stemline) never collide.
#ifndef SL_CUDA_H
#define SL_CUDA_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// SL_CUDA_API: this build calls the CUDA runtime, cuFFT and cuDNN: the real
// backend (nvcc), or the same host code against cudamock (g++ -DSL_CUDA_MOCK,
// kernels/cuda/mock/: the library calls on the host, kernels through the launch
// emulation, so CI executes the real backend's plumbing). The emulated build
// "cuda-emu" (SL_CUDA_EMU) calls none of them.
#if defined(__CUDACC__) || defined(SL_CUDA_MOCK)
#define SL_CUDA_API 1
#else
#define SL_CUDA_API 0
#endif

extern "C" {
#include "../../common/sl_error.h"
#include "../backend.h"
}

#if defined(__CUDACC__)

#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <tuple>
#include <utility>

#define SL_FN(name) sl_cuda_##name
typedef cudaStream_t sl_stream_t;

// Launch on stream; evaluates to 0 or SL_EDEVICE naming the kernel. Launches
// are asynchronous: errors inside the kernel surface at the next sync.
#define SL_LAUNCH(kernel, grid, block, shmem, stream, ...)                                  \
    (kernel<<<(grid), (block), (shmem), (stream)>>>(__VA_ARGS__), sl_cu_launched(#kernel))

// Dynamic shared memory of the launch, as an array of type.
#define SL_DYN_SHARED(type, name)                                                           \
    extern __shared__ __align__(16) unsigned char sl_dyn_smem_[];                           \
    type *name = reinterpret_cast<type *>(sl_dyn_smem_)

// Cooperative launch (cudaLaunchCooperativeKernel): every block resident at
// once, so that SL_GRID_SYNC() (a barrier of the whole grid) may be used; the
// caller checks that the grid fits (SL_COOP_MAX_BLOCKS). 0 or SL_EDEVICE.
#define SL_LAUNCH_COOP(kernel, grid, block, shmem, stream, ...)                             \
    sl_cu_launch_coop(#kernel, kernel, (grid), (block), (shmem), (stream), __VA_ARGS__)
#define SL_GRID_SYNC() cooperative_groups::this_grid().sync()

// Static shared memory: SL_SHARED(float, tile, [32][33]) declares
// __shared__ float tile[32][33] (kernels never write __shared__ themselves: the
// emulation poisons and counts what SL_SHARED declares).
#define SL_SHARED(type, name, ...) __shared__ type name __VA_ARGS__

// Opt-in to more than 48 KiB of dynamic shared memory for kernel (up to
// 227 KiB minus its static shared memory on sm_90), for the current device:
// 0 or SL_EDEVICE.
#define SL_SHMEM_OPTIN(kernel, bytes)                                                       \
    sl_cu_optin(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,   \
                                     (int)(bytes)), #kernel)


#elif defined(SL_CUDA_EMU) || defined(SL_CUDA_MOCK)

#if defined(SL_CUDA_MOCK)
#include <cuda_runtime.h> // as nvcc sees it, C++ overloads (cudaMalloc(T **, ...)) included

#include <tuple>
#include <type_traits>
#include <utility>

#include "mock/mock.h"
// host_defines.h gives these CUDA meanings g++ does not have.
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define SL_FN(name) sl_cuda_##name
typedef cudaStream_t sl_stream_t;
#else
#define SL_FN(name) sl_cudaemu_##name
typedef void *sl_stream_t;
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Static shared memory goes through SL_SHARED, which registers it with the
// emulation: a bare __shared__ does not compile here.
#define __shared__ sl_emu_declare_static_shared_memory_with_SL_SHARED
#define __syncthreads() sl_emu_syncthreads(__FILE__, __LINE__)

#if !defined(SL_CUDA_MOCK) // (cudamock: the toolkit's vector_types.h, same layout)
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
#endif

// The running coroutine's coordinates (set by the scheduler on every switch).
// __thread, not thread_local: plain TLS without C++ access wrappers (which
// UBSan mistakes for null references inside coroutines). blockDim / gridDim are
// read-only uint3 here (dim3 in CUDA); kernels only read .x/.y/.z.
extern __thread uint3 threadIdx, blockIdx, blockDim, gridDim;
extern __thread unsigned char *sl_emu_dyn_smem;

#define SL_DYN_SHARED(type, name) type *name = reinterpret_cast<type *>(sl_emu_dyn_smem)

// Static shared memory: per host thread storage (one block at a time uses it).
// The first thread of a block to reach the declaration fills it with 0xFF
// bytes (NaN floats, -1 integers), so a read before any write is caught, and
// the launch counts it against the per-block limit (sl_emu_shared).
#define SL_SHARED(type, name, ...)                                                          \
    static thread_local type name __VA_ARGS__;                                              \
    sl_emu_shared(&name, sizeof name, #name)
void sl_emu_shared(void *p, size_t bytes, const char *name);

// The opt-in of kernel (by name) to bytes of dynamic shared memory, as
// cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize) records it:
// 0, or SL_EDEVICE past the 227 KiB an sm_90 block can have.
int sl_emu_shmem_optin(const char *kernel, size_t bytes);
// The dynamic shared memory kernel may launch with: its opt-in, else 48 KiB.
size_t sl_emu_max_dyn_shared(const char *kernel);
#define SL_SHMEM_OPTIN(kernel, bytes) ((void)(kernel), sl_emu_shmem_optin(#kernel, (bytes)))

// Barrier of the block: the caller yields until every thread of its block has
// reached __syncthreads at the same place; aborts on divergence.
void sl_emu_syncthreads(const char *file, int line);

// SL_EMU_GRID_CAP (UINT_MAX when unset): sl_blocks_for caps below 2^30 (the
// grids of kernels that loop, grid-stride, over what one grid does not cover)
// are lowered to it, so those loops run more than once at test sizes.
unsigned sl_emu_grid_cap(void);

typedef void (*sl_emu_body)(void *closure);
// Runs body(closure) for every thread of every block; 0 or SL_EDEVICE for a
// launch configuration a real device would refuse (named after kernel).
int sl_emu_launch(const char *kernel, dim3 grid, dim3 block, size_t shmem, sl_emu_body body,
                  void *closure);

template <class F> static void sl_emu_trampoline(void *closure) { (*static_cast<F *>(closure))(); }
template <class F>
static inline int sl_emu_launch_fn(const char *kernel, dim3 grid, dim3 block, size_t shmem, F f)
{
    return sl_emu_launch(kernel, grid, block, shmem, &sl_emu_trampoline<F>, &f);
}

#if defined(SL_CUDA_MOCK)
// Queued on the stream, run when it is drained: the arguments are converted to
// the kernel's parameter types and copied now, as a real launch does.
template <class... P, class... A>
static inline void sl_mock_launch_args(sl_stream_t s, const char *name, dim3 grid, dim3 block, size_t shmem,
                                       void (*kernel)(P...), A &&...args)
{
    std::tuple<typename std::decay<P>::type...> t(std::forward<A>(args)...);
    sl_mock_launch(s, name, grid, block, shmem, [kernel, t]() { std::apply(kernel, t); });
}
#define SL_LAUNCH(kernel, grid, block, shmem, stream, ...)                                  \
    (sl_mock_launch_args((stream), #kernel, (grid), (block), (shmem), kernel, __VA_ARGS__),  \
     sl_cu_launched(#kernel))
#else
// The arguments are captured by value and evaluated by each emulated thread.
#define SL_LAUNCH(kernel, grid, block, shmem, stream, ...)                                  \
    ((void)(stream), sl_emu_launch_fn(#kernel, (grid), (block), (shmem),                    \
                                      [=]() { kernel(__VA_ARGS__); }))
#endif

// Cooperative launches (SL_LAUNCH_COOP): every thread of every block live at
// once (at most sl_emu_coop_max_blocks(threads) blocks), SL_GRID_SYNC() their
// barrier. Static shared memory (SL_SHARED) is refused there: use SL_DYN_SHARED.
void sl_emu_grid_sync(const char *file, int line);
int sl_emu_launch_coop(const char *kernel, dim3 grid, dim3 block, size_t shmem, sl_emu_body body, void *closure);
unsigned sl_emu_coop_max_blocks(unsigned threads);
#define SL_GRID_SYNC() sl_emu_grid_sync(__FILE__, __LINE__)
template <class F>
static inline int sl_emu_launch_coop_fn(const char *kernel, dim3 grid, dim3 block, size_t shmem, F f)
{
    return sl_emu_launch_coop(kernel, grid, block, shmem, &sl_emu_trampoline<F>, &f);
}
#if defined(SL_CUDA_MOCK)
template <class... P, class... A>
static inline void sl_mock_launch_coop_args(sl_stream_t s, const char *name, dim3 grid, dim3 block, size_t shmem,
                                            void (*kernel)(P...), A &&...args)
{
    std::tuple<typename std::decay<P>::type...> t(std::forward<A>(args)...);
    sl_mock_launch_coop(s, name, grid, block, shmem, [kernel, t]() { std::apply(kernel, t); });
}
#define SL_LAUNCH_COOP(kernel, grid, block, shmem, stream, ...)                             \
    (sl_mock_launch_coop_args((stream), #kernel, (grid), (block), (shmem), kernel, __VA_ARGS__), \
     sl_cu_launched(#kernel))
#else
#define SL_LAUNCH_COOP(kernel, grid, block, shmem, stream, ...)                             \
    ((void)(stream), sl_emu_launch_coop_fn(#kernel, (grid), (block), (shmem),               \
                                           [=]() { kernel(__VA_ARGS__); }))
#endif

// Threads of a block never run at the same time here, so plain read-modify-write is atomic.
static inline int atomicMin(int *p, int v)
{
    int old = *p;
    if (v < old)
        *p = v;
    return old;
}
static inline int atomicMax(int *p, int v)
{
    int old = *p;
    if (v > old)
        *p = v;
    return old;
}
// Explicitly rounded operations (nvcc never contracts these into an FMA; the
// emulated build is compiled with -ffp-contract=off anyway).
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline unsigned __float_as_uint(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
static inline float __uint_as_float(unsigned u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#else
#error "sl_cuda.h: compile with nvcc, or as C++ with -DSL_CUDA_EMU or -DSL_CUDA_MOCK"
#endif

#if SL_CUDA_API
// A sticky error (an illegal address, a kernel fault, an uncorrectable ECC
// error...) breaks the CUDA context of the current device for good: every later
// call on it fails. Records the device as lost (its contexts then refuse all
// work, backend.cu) and returns SL_EDEVLOST naming the call; other errors: 0.
int sl_cu_sticky(cudaError_t e, const char *call);

static inline int sl_cu_launched(const char *kernel)
{
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) {
        int rc = sl_cu_sticky(e, kernel);
        return rc ? rc : sl_seterr(SL_EDEVICE, "launch of %s: %s (%s)", kernel, cudaGetErrorString(e),
                                   cudaGetErrorName(e));
    }
    return 0;
}

// Turns a CUDA runtime error into a stemline error naming the call. The
// thread's last-error slot, which the failed call also set, is cleared, so the
// next launch check does not report this error again against its kernel.
static inline int sl_cu_err(cudaError_t e, const char *call)
{
    (void)cudaGetLastError();
    int rc = sl_cu_sticky(e, call);
    if (rc)
        return rc;
    if (e == cudaErrorMemoryAllocation)
        return sl_seterr(SL_ENOMEM, "%s: %s", call, cudaGetErrorString(e));
    return sl_seterr(SL_EDEVICE, "%s: %s (%s)", call, cudaGetErrorString(e), cudaGetErrorName(e));
}
static inline int sl_cu_optin(cudaError_t e, const char *kernel)
{
    return e == cudaSuccess ? 0 : sl_cu_err(e, kernel);
}

// Blocks of threads threads and shmem bytes of dynamic shared memory of kernel
// that a cooperative launch on the current device can hold (0 where the device
// has no cooperative launch); sets the kernel's shared memory opt-in first.
template <class K> static inline unsigned sl_cu_coop_max_blocks(K kernel, const char *name, unsigned threads, size_t shmem)
{
    int dev = 0, coop = 0, sms = 0, per = 0;
#if defined(__CUDACC__)
    const int optin = shmem > 48 * 1024 ? sl_cu_optin(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                                           (int)shmem), name) : 0;
#else // cudamock: the emulation keeps the opt-ins, by name
    const int optin = shmem > 48 * 1024 ? sl_emu_shmem_optin(name, shmem) : 0;
#endif
    if (optin < 0) {
        sl_clearerr();
        return 0;
    }
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev) != cudaSuccess ||
        !coop || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, kernel, (int)threads, shmem) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return (unsigned)per * (unsigned)sms;
}
#define SL_COOP_MAX_BLOCKS(kernel, threads, shmem) sl_cu_coop_max_blocks(kernel, #kernel, (threads), (shmem))
#if defined(__CUDACC__)
template <class... P, class... A>
static inline int sl_cu_launch_coop(const char *name, void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem,
                                    cudaStream_t s, A &&...a)
{
    std::tuple<typename std::decay<P>::type...> t(std::forward<A>(a)...);
    const cudaError_t e = std::apply(
        [&](auto &...x) {
            void *args[] = {static_cast<void *>(&x)...};
            return cudaLaunchCooperativeKernel(reinterpret_cast<const void *>(kernel), grid, block, args, shmem, s);
        },
        t);
    if (e != cudaSuccess)
        return sl_cu_err(e, name);
    return 0;
}
#endif
#define SL_CU_CHECK(call)                                                                   \
    do {                                                                                    \
        cudaError_t sl_e_ = (call);                                                         \
        if (sl_e_ != cudaSuccess)                                                           \
            return sl_cu_err(sl_e_, #call);                                                 \
    } while (0)
#endif

#if !SL_CUDA_API
#define SL_COOP_MAX_BLOCKS(kernel, threads, shmem)                                          \
    ((void)(kernel), (shmem) > 48 * 1024 ? (void)sl_emu_shmem_optin(#kernel, (shmem)) : (void)0,          \
     sl_emu_coop_max_blocks(threads))
#endif

// ---- shared by both builds ----

// Threads per block for the 1-D element-wise kernels.
#define SL_BLOCK 256
// Largest grid.y / grid.z a device accepts; kernels loop when there is more work.
#define SL_GRID_YZ_MAX 65535u

// Blocks for n items, per_block each, at most cap. A cap below 2^30 means the
// kernel loops (grid-stride) over what the capped grid does not cover; 2^30
// or more means it does not, and the caller bounds n (SL_EMU_GRID_CAP relies
// on this convention).
static inline unsigned sl_blocks_for(size_t n, unsigned per_block, unsigned cap)
{
#if !defined(__CUDACC__)
    if (cap < (1u << 30)) {
        const unsigned e = sl_emu_grid_cap();
        cap = e < cap ? e : cap;
    }
#endif
    size_t b = (n + per_block - 1) / per_block;
    if (b < 1)
        b = 1;
    return (unsigned)(b < cap ? b : cap);
}

// Frames per cuFFT execution: the largest power of two <= 2^23 / n_fft (at
// least 1). Longer batches run as a sum of power-of-two chunks, so at most
// ~log2 plans exist per size whatever the callers' batch sizes are.
static inline size_t sl_fft_max_batch(int n_fft)
{
    size_t cap = ((size_t)1 << 23) / (size_t)n_fft, b = 1;
    while (b * 2 <= cap)
        b *= 2;
    return b;
}
static inline size_t sl_fft_chunk(size_t remaining, int n_fft)
{
    size_t cap = sl_fft_max_batch(n_fft), b = 1;
    if (remaining > cap)
        remaining = cap;
    while (b * 2 <= remaining)
        b *= 2;
    return b;
}

// Backend state shared by the op files (kernels/cuda/backend.cu owns it).
struct sl_cu_state;
extern "C" {
// Stream of the context.
sl_stream_t SL_FN(stream)(sl_op_ctx *ctx);
// Context scratch of at least bytes (grown in stream order; valid until the next
// call on this context). 0 or SL_ENOMEM / SL_EDEVICE.
int SL_FN(scratch)(sl_op_ctx *ctx, size_t bytes, void **p);
// Device-visible status words: [0] = first kept sample failing NOLA (INT_MAX when none),
// [1] = n_fft of that overlap_add, [2] = hop. Checked at sync / download.
int *SL_FN(status)(sl_op_ctx *ctx);
}

#endif
