// cudamock: a host-only stand-in for the CUDA runtime, cuFFT and cuDNN, with
// the semantics their documentation gives, strict where a real GPU would be
// unforgiving. Linked (instead of libcudart / libcufft / libcudnn) into
// stemline-cudamock and the cudamock.* tests, so that CI executes the host code
// of the real "cuda" backend (kernels/cuda/*.cu compiled with -DSL_CUDA_MOCK):
// streams, stream-ordered allocation, pinned buffers, cuFFT plans and work
// area, cuDNN descriptors, error paths. Kernels run through the launch
// emulation (kernels/cuda/emu). It checks OUR use of those APIs against our
// reading of their documentation, not the libraries themselves.
//
// What it enforces:
//  * Device memory lives in one arena mapped PROT_NONE except while device work
//    runs: host code that dereferences a device pointer crashes, as on a GPU.
//    New allocations are filled with 0xFF bytes (NaN floats).
//  * Streams are queues: kernels, copies, memsets, FFTs, convolutions and
//    stream-ordered frees run only when the stream is drained (stream sync,
//    synchronous copy, cudaFree, cudaFreeHost, device sync, destroy). Host
//    code that reads a result before syncing, or refills a pinned buffer that a
//    queued upload still reads, sees wrong data. Copies from pageable host
//    memory are snapshotted at the call; copies to pageable memory drain the
//    stream first (both as the CUDA documentation specifies).
//  * Every pointer range handed to a copy, memset, FFT or convolution must lie
//    inside one live allocation of the right kind, otherwise the process aborts
//    with a message naming the call.
//  * The current device is per host thread (cudaSetDevice). A launch, a
//    cudaFreeAsync or cudaMallocAsync on a stream of another device fails with
//    cudaErrorInvalidResourceHandle, a cudaFree of another device's pointer with
//    cudaErrorInvalidDevicePointer, a cuFFT execution or cufftDestroy of a plan
//    made on another device with CUFFT_INVALID_DEVICE, a cuDNN call on a handle
//    of another device with CUDNN_STATUS_EXECUTION_FAILED_CUDART. The launch
//    rule is the driver's documented one; for the others the mock is stricter
//    than the documentation promises, so that a backend that makes its device
//    current at every entry point passes on any driver.
//  * The default memory pool keeps freed blocks reserved (counted against the
//    device) and reuses a cached block that is big enough; a synchronisation
//    releases cached blocks above the pool's release threshold (default 0) and
//    cudaMemPoolTrimTo releases them on request. So a plain cudaMalloc, or a
//    pool allocation bigger than every cached block, fails on a device whose
//    pool holds the memory, as it does on a GPU.
//  * Limits: SL_MOCK_DEVICES devices (default 1; 0 = cudaErrorNoDevice),
//    SL_MOCK_DEVICE_MB of memory each (default 4096): cudaMalloc* past it is
//    cudaErrorMemoryAllocation, as a full GPU would answer.
//  * SL_MOCK_STATS=PATH: at exit, the peak device bytes per device and the
//    numbers of device and pinned allocations, as JSON (memory-bound tests).
//  * Stream ordering: events (cudaEventRecord / cudaStreamWaitEvent /
//    cudaEventSynchronize) order streams as on a GPU: waiting runs the other
//    stream's queue up to the recorded point. Every copy and memset is checked
//    against a vector clock per stream: touching a device allocation that
//    another stream wrote (or, for a write, read) with no event wait or host
//    synchronisation ordering it after that access aborts, naming both
//    operations (a race on a GPU, here wrong data at best).
//  * Stream capture (cudaStreamBeginCapture ... EndCapture, cudaGraphInstantiate,
//    cudaGraphLaunch): work queued on a capturing stream is recorded, not run;
//    a launch of the graph queues the same operations again (ordering checked
//    again). While a capture is in progress the calls the driver refuses there
//    (synchronisations, cudaMalloc / cudaFree / cudaHostAlloc / cudaFreeHost,
//    copies from or to pageable memory, cuFFT plan creation) fail with
//    cudaErrorStreamCaptureUnsupported and invalidate the capture, so that
//    cudaStreamEndCapture returns cudaErrorStreamCaptureInvalidated; the mock is
//    stricter than the driver for cudaMallocAsync / cudaFreeAsync (refused too)
//    and records no event nodes.
//  * Host synchronisations (stream, event, device syncs, cudaMemcpy, cudaFree,
//    cudaFreeHost, copies to pageable memory) are counted (sl_mock_host_syncs).
#ifndef SL_CUDAMOCK_H
#define SL_CUDAMOCK_H

#include <cuda_runtime_api.h>
#include <stddef.h>

#include <functional>

// Misuse that would be undefined behaviour or a crash on a real GPU: prints
// "cudamock: ..." to stderr and aborts.
[[noreturn]] void sl_mock_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Queues work on stream s (0: the legacy default stream of the current device,
// which is drained only by cudaDeviceSynchronize / cudaFree / cudaFreeHost /
// synchronous copies, never by syncing another stream). The work runs with
// device memory accessible, under the process-wide device lock.
void sl_mock_enqueue(cudaStream_t s, std::function<void()> work);

// Aborts (sl_mock_fatal naming what) unless [p, p + bytes) lies inside one live
// device allocation. bytes 0 checks p only.
void sl_mock_check_device(const void *p, size_t bytes, const char *what);

// 1 when p points into the device arena (live or not), else 0.
int sl_mock_is_device(const void *p);

// Fills [p, p + bytes) of device memory with 0xFF (NaN floats); call from
// queued work only (device memory is accessible there).
void sl_mock_poison(void *p, size_t bytes);

// Validates a kernel launch configuration like a device of compute capability
// 9.0 (block <= 1024 threads, block.z <= 64, grid.y/z <= 65535, dynamic shared
// memory <= 48 KiB or the kernel's SL_SHMEM_OPTIN; static shared memory is
// checked by the emulation when the kernel runs); on failure records cudaErrorInvalidConfiguration for
// cudaGetLastError and queues nothing. Otherwise queues body, which runs the
// kernel through the launch emulation.
void sl_mock_launch(cudaStream_t s, const char *kernel, dim3 grid, dim3 block, size_t shmem,
                    std::function<void()> body);

// A cooperative launch (SL_LAUNCH_COOP): the same checks, and the grid must
// fit the device at once (cudaOccupancyMaxActiveBlocksPerMultiprocessor x its
// SMs, else cudaErrorCooperativeLaunchTooLarge); runs through the emulation's
// cooperative launch (every block live, grid syncs).
void sl_mock_launch_coop(cudaStream_t s, const char *kernel, dim3 grid, dim3 block, size_t shmem,
                         std::function<void()> body);

// Test hooks (C linkage, for tests/cudamock/*.c): bytes of device memory
// allocated and not freed (all devices), and live pinned host allocations.
extern "C" size_t sl_mock_live_device_bytes(void);
extern "C" size_t sl_mock_live_pinned(void);
// cuFFT plans created and not destroyed.
extern "C" size_t sl_mock_live_fft_plans(void);
// Fault injection: device allocations of at least bytes fail with
// cudaErrorMemoryAllocation from now on (0: never).
extern "C" void sl_mock_fail_allocs_from(size_t bytes);
// The next kernel that runs on device faults with error (a cudaError_t such as
// cudaErrorIllegalAddress): the device's context is broken for good, as a real
// one is after a sticky error: queued work is dropped and every later call on
// the device returns error (SL_MOCK_FAULT=D does this at start-up for device D).
extern "C" void sl_mock_inject_fault(int device, int error);
// The sticky error of device (0: none); cuFFT and cuDNN executions check it.
extern "C" int sl_mock_device_error(int device);
// The reason for the cuBLASLt stand-in's last refusal in this thread (cublaslt_mock.cpp).
extern "C" const char *sl_mock_lt_last_error(void);
// The release threshold last set on device's default pool.
extern "C" size_t sl_mock_pool_release_threshold(int device);
// Host synchronisations so far (all threads).
extern "C" unsigned long long sl_mock_host_syncs(void);
// Stream captures completed (cudaStreamEndCapture that gave a graph) and graph launches so far.
extern "C" void sl_mock_graph_counts(unsigned long long *captures, unsigned long long *launches);
// For the library stand-ins: call is one the driver refuses during a capture;
// 1 (and the capture invalidated) when one is in progress for this thread.
extern "C" int sl_mock_capture_forbidden(const char *call);
// 1 while stream is being captured.
extern "C" int sl_mock_stream_capturing(cudaStream_t stream);

#endif
