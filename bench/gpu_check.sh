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
#   3. test_parity: cuda-emu and cuda against the CPU (the CI shapes), and
#      gpu_test_lstm_impl: the persistent LSTM kernel (cooperative launch, grid
#      sync) against the step kernel bit for bit (its log is appended to
#      parity.log);
#   4. bench_dsp on cpu and cuda: STFT/iSTFT, hpss, bandwidth against the
#      backend's copy bandwidth (CPU 64 MiB buffers, GPU 1 GiB);
#   5. torch.stft / torch.istft on the same GPU (bench/dsp_baselines.py
#      --torch-device cuda --skip-librosa, the machine's own PyTorch);
#   6. bench_gemm: sl_op_gemm at runtime.precision fp32, tf32 and bf16 (the
#      hand-written kernel, then cuBLASLt on tensor cores) on the models' large
#      linear layers: TFLOP/s and the error against the exact product.
# Then the tables (bench/run_dsp.sh's code, and the GEMM table) into
# $OUT/tables.md. $OUT gets 8 files (a device call returns at most 8):
# gpu_check.log (everything printed), nvidia-smi.txt, gpu_parity.log,
# parity.log, dsp-stemline.jsonl, dsp-torch.jsonl, gemm.jsonl, tables.md.
# Back on the build machine, with the files in DIR:
#
#   bash bench/gpu_check.sh --record DIR [FILE]  appends DIR/tables.md to FILE
#                                         (bench/RESULTS.md) under a heading naming
#                                         the GPU (nvidia-smi.txt) and the bundle's commit
#   bash bench/gpu_check.sh --table DIR   re-makes DIR/tables.md from DIR's JSON lines
set -u
cd "$(dirname "$0")/.." || exit 1
table() { # DIR: tables.md from DIR/dsp-stemline.jsonl + DIR/dsp-torch.jsonl (+ DIR/gemm.jsonl)
  local d=$1 py
  py=$(sed -n '/^\/usr\/bin\/env python3 - /,/^PY$/p' bench/run_dsp.sh | sed '1d;$d')
  python3 -c "$py" "$d/dsp-stemline.jsonl" "$d/dsp-torch.jsonl" "?" "?" "?" "$(nproc)" > "$d/tables.md"
  [ -s "$d/gemm.jsonl" ] && python3 - "$d/gemm.jsonl" >> "$d/tables.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
done = [r for r in rows if "tflops" in r]
print("\n#### sl_op_gemm by runtime.precision (bench_gemm: best of 10, bias epilogue, error vs the exact product)\n")
if done:
    print("device: " + done[0]["device"].split(";")[0] + "\n")
shapes = list(dict.fromkeys(r["shape"] for r in done))
precs = list(dict.fromkeys(r["precision"] for r in done))
print("| shape (m x n x k) | " + " | ".join(f"{p} TFLOP/s | {p} err" for p in precs) + " |")
print("| --- |" + " ---: | ---: |" * len(precs))
for s in shapes:
    by = {r["precision"]: r for r in done if r["shape"] == s}
    r0 = next(iter(by.values()))
    cells = []
    for p in precs:
        r = by.get(p)
        cells += [f"{r['tflops']:.1f}", f"{r['err']:.1e}"] if r else ["-", "-"]
    print(f"| {s} ({r0['m']} x {r0['n']} x {r0['k']}) | " + " | ".join(cells) + " |")
for r in rows:
    if "skipped" in r:
        print(f"\n{r['backend']} {r.get('precision', '')}: skipped ({r['skipped']})")
PY
  return 0
}
if [ "${1:-}" = --table ]; then
  table "$2"
  cat "$2/tables.md"
  exit 0
fi
if [ "${1:-}" = --record ]; then # DIR [FILE]: its tables into FILE (bench/RESULTS.md), the device named
  d=$2
  res=${3:-bench/RESULTS.md}
  [ -s "$d/tables.md" ] || table "$d"
  gpu=$(sed -n 's/^gpu: //p' "$d/nvidia-smi.txt" 2>/dev/null | head -1)
  commit=$(grep -m1 -oE "^bundle: [0-9a-f]+" "$d/gpu_check.log" 2>/dev/null | cut -d' ' -f2)
  {
    printf '\n## GPU check on %s (bench/gpu_check.sh, bundle commit %s, %s)\n\n' \
      "${gpu:-an unnamed GPU (no nvidia-smi.txt)}" "${commit:-unknown}" "$(date -u +%Y-%m-%d)"
    cat "$d/tables.md"
  } >> "$res"
  echo "gpu_check.sh: appended $d/tables.md to $res (${gpu:-GPU not named})"
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
nvpy=$(python3 -c 'import nvidia, os; print(os.path.dirname(nvidia.__path__[0]))' 2>/dev/null || true)
for lib in libcudart.so.13 libcufft.so.12 libcudnn.so.9 libcublasLt.so.13; do
  p=$(find /usr/local/cuda*/ /usr/lib /opt -name "$lib" 2>/dev/null | head -1)
  [ -z "$p" ] && [ -n "$nvpy" ] && p=$(find "$nvpy" -name "$lib" 2>/dev/null | head -1)
  [ -n "$p" ] && libdirs="$libdirs:$(dirname "$p")"
done
export LD_LIBRARY_PATH="$libdirs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'; nvidia-smi; } \
  > "$O/nvidia-smi.txt" 2>&1; head -16 "$O/nvidia-smi.txt"
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
step lstm_impl 30 "$B/bin/gpu_test_lstm_impl"
cat "$O/lstm_impl.log" >> "$O/parity.log"; rm -f "$O/lstm_impl.log" # (8 files at most come back)
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
t0=$(date +%s)
timeout 90 "$B/bin/bench_gemm" --backends cuda --precisions fp32,tf32,bf16 --repeat 10 \
  > "$O/gemm.jsonl" 2> /tmp/bench_gemm.log
echo "== bench_gemm fp32/tf32/bf16: exit $? in $(( $(date +%s) - t0 )) s"; cat /tmp/bench_gemm.log
table "$O" && cat "$O/tables.md"
