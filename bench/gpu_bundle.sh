#!/usr/bin/env bash
# Prepares the GPU check for a session that is lent a GPU machine (an H100/H200
# with CUDA 13, PyTorch and nothing of stemline's Debian dependencies, and no
# network). Run HERE, on the build machine:
#
#   bash bench/gpu_bundle.sh [BUILD_DIR]      (default build-gpu)
#
# It builds the op-level programs for sm_90 (+ sm_80): gpu_test_cuda_parity,
# test_parity, gpu_test_lstm_impl (the persistent LSTM kernel against the step
# kernel), bench_dsp and bench_gemm (sl_op_gemm at runtime.precision fp32, tf32
# and bf16). They link FFTW, OpenBLAS and the CUDA libraries,
# not FFmpeg, libyaml or SQLite (CMakeLists.txt links with --as-needed and
# common/sl_error.c reaches libavutil only weakly). It copies them, the shared
# libraries they need that such a machine lacks (everything but glibc, the C++
# runtime and CUDA's own libraries), into .gpu/ (git-ignored, ~10 MiB). Then,
# in ONE device call, carrying .gpu:
#
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#
# gpu_check.sh finds the CUDA libraries there, runs the GPU parity tests and the
# DSP benchmark (CPU and GPU backends, bandwidth, torch on the same GPU) and
# writes logs and JSON lines to $OUT; bench/run_dsp.sh's table code reads them
# (bench/gpu_check.sh --table DIR). The full job (`stemline run --backend cuda`,
# FFmpeg's closure is ~55 MiB compressed) is checked on the host-only CUDA
# stand-in (cudamock.job) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="80;90" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target gpu_test_cuda_parity gpu_test_lstm_impl test_parity bench_dsp bench_gemm
ldd "$BUILD/gpu_test_cuda_parity" | grep -q libcudart ||
  { echo "gpu_bundle.sh: $BUILD has no CUDA backend (nvcc not found at configure time)" >&2; exit 1; }
B=.gpu
rm -rf "$B" && mkdir -p "$B/bin" "$B/lib"
bins=("$BUILD/gpu_test_cuda_parity" "$BUILD/gpu_test_lstm_impl" "$BUILD/test_parity" "$BUILD/bench_dsp" "$BUILD/bench_gemm")
for b in "${bins[@]}"; do
  strip -o "$B/bin/$(basename "$b")" "$b"
done
# Shared libraries to carry: all but the loader, glibc, the C++/GCC runtime and CUDA's.
skip='^(linux-vdso|ld-linux|libc\.|libm\.|libdl\.|libpthread\.|librt\.|libstdc\+\+|libgcc_s|libcuda|libcudart|libcufft|libcudnn|libcublas|libnvrtc|libnvJitLink)'
for b in "${bins[@]}"; do
  ldd "$b" | awk '/=>/ {print $1, $3}'
done | sort -u | while read -r name path; do
  if [[ "$name" =~ $skip ]]; then continue; fi
  [ -f "$path" ] || { echo "gpu_bundle.sh: $name not found ($path)" >&2; exit 1; }
  cp -L "$path" "$B/lib/$name"
done
strip --strip-unneeded "$B"/lib/* 2>/dev/null || true
libs=$(cd "$B/lib" && printf '%s ' *)
tar cf - -C "$B" lib | xz -T0 -9 > "$B/lib.tar.xz" # OpenBLAS (every CPU's kernels) is 36 MB, 6 MB packed
rm -rf "${B:?}/lib"
git rev-parse HEAD > "$B/commit"
{ git status --porcelain | grep -q . && echo "(with uncommitted changes)"; } >> "$B/commit" || true
size=$(du -sm "$B" | cut -f1)
echo "gpu_bundle.sh: $B/ holds $(find "$B/bin" -mindepth 1 -maxdepth 1 | wc -l) programs and the libraries $libs(packed)," \
     "${size} MiB; commit $(head -1 "$B/commit")"
if [ "$size" -gt 32 ]; then
  echo "gpu_bundle.sh: $B is over 32 MiB: too large to carry beside the tree (64 MiB in all)" >&2
  exit 1
fi
echo "next: run(command=\"bash bench/gpu_check.sh\", carry=[\".gpu\"], timeout_s=540)"
