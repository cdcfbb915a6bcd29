#!/usr/bin/env bash
# The GPU check, in one device call (see bench/gpu_bundle.sh, which prepares
# .gpu/ on the build machine):
#
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#
# On the GPU machine it runs, each under its own time limit, logging to $OUT:
#   1. nvidia-smi, and which CUDA libraries the programs resolved;
#   2. gpu_test_cuda_parity: every op on the real "cuda" backend (cuFFT, cuDNN,
#      streams, pinned memory) against the CPU backend, large shapes included,
#      and conv2d through cuDNN next to the hand-written kernel;
#   3. test_parity: cuda-emu and cuda against the CPU (the CI shapes);
#   4. bench_dsp on cpu and cuda: STFT/iSTFT, hpss, bandwidth against the
#      backend's copy bandwidth (CPU 64 MiB buffers, GPU 1 GiB);
#   5. torch.stft / torch.istft on the same GPU (bench/dsp_baselines.py
#      --torch-device cuda --skip-librosa, the machine's own PyTorch).
# Then the tables (bench/run_dsp.sh's code) into $OUT/tables.md. $OUT gets 7
# files (a device call returns at most 8): gpu_check.log (everything printed),
# nvidia-smi.txt, gpu_parity.log, parity.log, dsp-stemline.jsonl,
# dsp-torch.jsonl, tables.md.
# Back on the build machine: copy the tables into bench/RESULTS.md with the
# device named (nvidia-smi.txt).
#
#   bash bench/gpu_check.sh --table DIR   re-makes DIR/tables.md from DIR's JSON lines
set -u
cd "$(dirname "$0")/.." || exit 1
table() { # DIR: tables.md from DIR/dsp-stemline.jsonl + DIR/dsp-torch.jsonl
  local d=$1 py
  py=$(sed -n '/^\/usr\/bin\/env python3 - /,/^PY$/p' bench/run_dsp.sh | sed '1d;$d')
  python3 -c "$py" "$d/dsp-stemline.jsonl" "$d/dsp-torch.jsonl" "?" "?" "?" "$(nproc)" > "$d/tables.md"
}
if [ "${1:-}" = --table ]; then
  table "$2"
  cat "$2/tables.md"
  exit 0
fi
O=${OUT:-/tmp/gpu-check}
mkdir -p "$O"
B=.gpu
[ -x "$B/bin/bench_dsp" ] || { echo "gpu_check.sh: $B/ missing: run bench/gpu_bundle.sh first and carry .gpu" >&2; exit 1; }
exec > >(tee "$O/gpu_check.log") 2>&1
echo "bundle: $(tr '\n' ' ' < "$B/commit")"
# The carried libraries (FFTW, OpenBLAS, ...), then CUDA's on this machine: the
# toolkit's, else PyTorch's pip packages (nvidia-*).
L=/tmp/stemline-gpu-lib
if ! { rm -rf "$L" && mkdir -p "$L" && tar xJf "$B/lib.tar.xz" -C "$L"; }; then
  echo "gpu_check.sh: cannot unpack $B/lib.tar.xz"
  exit 1
fi
libdirs=$L/lib
for lib in libcudart.so.13 libcufft.so.12 libcudnn.so.9; do
  p=$(find /usr/local/cuda*/ /usr/lib /opt -name "$lib" 2>/dev/null | head -1)
  [ -n "$p" ] && libdirs="$libdirs:$(dirname "$p")"
done
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
nvidia-smi > "$O/nvidia-smi.txt" 2>&1; head -15 "$O/nvidia-smi.txt"
ldd "$B/bin/gpu_test_cuda_parity" | grep -E "cud|fftw|blas|not found"
if ldd "$B/bin/bench_dsp" | grep -q "not found"; then
  echo "gpu_check.sh: unresolved libraries (above); stopping"
  exit 1
fi
step() { # NAME LIMIT_S CMD...: runs CMD, output to $O/NAME.log, reports the exit status
  local name=$1 lim=$2 t0 rc
  shift 2
  t0=$(date +%s)
  timeout "$lim" "$@" > "$O/$name.log" 2>&1
  rc=$?
  echo "== $name: exit $rc in $(( $(date +%s) - t0 )) s"
  grep -E "FAIL|CHECK failed|checks|skipped|Error|error" "$O/$name.log" | head -20
}
step gpu_parity 120 "$B/bin/gpu_test_cuda_parity"
step parity 60 "$B/bin/test_parity"
t0=$(date +%s) # the CPU on 64 MiB buffers (its bandwidth pass is slow), the GPU on 1 GiB (well past its L2)
dsp=(--tracks 8 --seconds 60 --hpss-seconds 60)
timeout 100 "$B/bin/bench_dsp" "${dsp[@]}" --backends cpu --repeat 3 --bw-mb 64 \
  > "$O/dsp-stemline.jsonl" 2> /tmp/bench_dsp.log
echo "== bench_dsp cpu: exit $? in $(( $(date +%s) - t0 )) s"
t0=$(date +%s)
timeout 100 "$B/bin/bench_dsp" "${dsp[@]}" --backends cuda --repeat 10 --bw-mb 1024 \
  >> "$O/dsp-stemline.jsonl" 2>> /tmp/bench_dsp.log
echo "== bench_dsp cuda: exit $? in $(( $(date +%s) - t0 )) s"; cat /tmp/bench_dsp.log
t0=$(date +%s)
PYTHONUNBUFFERED=1 timeout 90 python3 bench/dsp_baselines.py --tracks 8 --seconds 60 --hpss-seconds 60 \
  --repeat 5 --skip-librosa --skip-torch --torch-device cuda > "$O/dsp-torch.jsonl" 2> /tmp/torch.log
echo "== torch on the GPU: exit $? in $(( $(date +%s) - t0 )) s"; cat /tmp/torch.log
table "$O" && cat "$O/tables.md"
