#!/usr/bin/env bash
# The GPU check, in one device call (see bench/gpu_bundle.sh, which prepares
# .gpu/ on the build machine):
#
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#
# On the GPU machine it runs, each step under its own time limit and all within
# SL_GPU_CHECK_BUDGET seconds (default 510), logging to $OUT:
#   1. gpu_test_cuda_parity (every op on the real "cuda" backend against the CPU,
#      large shapes, cuDNN) and gpu_test_lstm_impl (the persistent LSTM kernel
#      against the step kernel);
#   2. the whole job: the bundle's `stemline run` (static FFmpeg inside) on a
#      generated catalog (16 tracks x 30 s, bench/gpu_models.py catalog): hpss +
#      melstats, Open-Unmix (umxhq size) and Cnn14 (full size) with random weights
#      expanded from the bundle's skeletons, at runtime.precision fp32 and bf16
#      (bf16 also against fp32: lowest stem SNR, lowest vector cosine); PyTorch's
#      reference umx and Cnn14 on the same GPU and audio (bench/gpu_torch_models.py,
#      packages from the bundle's py/); then the five stem formats written and
#      decoded back;
#   3. bench_gemm (sl_op_gemm at fp32, tf32, bf16), bench_dsp on the GPU and
#      torch.stft / torch.istft on the same GPU (bench/dsp_baselines.py);
#   4. compute-sanitizer memcheck, racecheck, synccheck and initcheck on
#      test_parity (its CUDA shapes), where the machine has compute-sanitizer;
#   5. test_parity (cpu, cuda-emu, cuda) and bench_dsp on the CPU.
# Without a GPU (nvidia-smi lists none, or SL_GPU_CHECK_NO_GPU=1) every GPU
# step prints "SKIPPED: no GPU" and the jobs run on the CPU at fp32: that is how
# the bundle is tested on the build machine (--quick: 2 tracks x 4 s; ctest
# slow.gpu_bundle). $OUT gets 8 files (a device call returns at most 8):
# gpu_check.log (everything printed), nvidia-smi.txt, parity.log (the parity,
# LSTM and sanitizer logs), jobs.jsonl, dsp-stemline.jsonl, dsp-torch.jsonl,
# gemm.jsonl, tables.md.
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
  [ -s "$d/jobs.jsonl" ] && python3 - "$d/jobs.jsonl" >> "$d/tables.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n#### stemline run on the generated catalog (bundle's binary; random-weight full-size models)\n")
print("| job | precision | backend | audio s | wall s | x realtime | ok / failed | min SNR vs fp32 (dB) | min cosine vs fp32 |")
print("| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
for r in rows:
    if "error" in r:
        print(f"| {r['job']} | {r['precision']} | - | - | - | - | exit {r.get('status')}: {r['error']} | - | - |")
        continue
    print(f"| {r['job']} | {r['precision']} | {r.get('backend')} | {r.get('audio_seconds') or 0:.1f} | "
          f"{r.get('wall_seconds') or 0:.2f} | {r.get('x_realtime') or 0:.1f} | {r.get('ok', '-')} / {r.get('failed', '-')} | "
          f"{r.get('min_snr_db_vs_fp32', '-')} | {r.get('min_cosine_vs_fp32', '-')} |")
sl = {(r["job"], r["precision"]): r for r in rows if r.get("backend") == "cuda" and r.get("x_realtime")}
tr = {(r["job"], r["precision"]): r for r in rows if r.get("backend") == "torch-cuda" and r.get("x_realtime")}
both = [k for k in sl if k in tr]
if both:
    print("\nstemline (whole job: decode, model, encode, write) against PyTorch (model calls on audio already on the GPU):\n")
    print("| job | precision | stemline x realtime | torch x realtime | stemline / torch |")
    print("| --- | --- | ---: | ---: | ---: |")
    for k in both:
        print(f"| {k[0]} | {k[1]} | {sl[k]['x_realtime']:.1f} | {tr[k]['x_realtime']:.1f} | {sl[k]['x_realtime'] / tr[k]['x_realtime']:.2f} |")
devs = sorted({r.get("device") for r in rows if r.get("device")})
if devs:
    print("\ndevice: " + "; ".join(devs))
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
QUICK=0
[ "${1:-}" = --quick ] && QUICK=1
O=${OUT:-/tmp/gpu-check}
mkdir -p "$O"
B=${SL_GPU_BUNDLE:-.gpu}
if [ ! -x "$B/bin/stemline" ] || [ ! -x "$B/run" ]; then
  echo "gpu_check.sh: $B/ missing or from an older bench/gpu_bundle.sh: run it first and carry $B" >&2
  exit 1
fi
exec > >(tee "$O/gpu_check.log") 2>&1
T0=$(date +%s)
BUDGET=${SL_GPU_CHECK_BUDGET:-510} # seconds for all steps (one device call: 540 s)
SLOW=1 # --quick runs on a build machine's CPU: longer limits per step
[ $QUICK = 1 ] && { BUDGET=${SL_GPU_CHECK_BUDGET:-1800}; SLOW=5; }
echo "bundle: $(tr '\n' ' ' < "$B/commit")"
# The bundle's libraries (unpacked once by its launcher) and CUDA's on this
# machine (the toolkit's, else PyTorch's pip packages nvidia-*), for the
# programs run directly below; stemline itself runs through $B/stemline.
LD_LIBRARY_PATH=$("$B/run" --libs) || { echo "gpu_check.sh: the bundle's launcher failed"; exit 1; }
export LD_LIBRARY_PATH
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
L=$(mktemp -d "${TMPDIR:-/tmp}/stemline-gpu-check.XXXXXX") # logs and job files; $O gets 8 files at most
GPU=0
if [ -z "${SL_GPU_CHECK_NO_GPU:-}" ] && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  GPU=1
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'; nvidia-smi; } \
    > "$O/nvidia-smi.txt" 2>&1
  head -16 "$O/nvidia-smi.txt"
else
  echo "gpu: none (nvidia-smi lists no GPU): every GPU step below is SKIPPED" | tee "$O/nvidia-smi.txt"
fi
for b in "$B"/bin/*; do
  ldd "$b" | grep -E "cud|fftw|blas|not found" | sed "s|^|$(basename "$b"): |"
done
if ldd "$B/bin/stemline" | grep -q "not found"; then
  echo "gpu_check.sh: stemline has unresolved libraries (above); stopping"
  exit 1
fi
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
skip() { echo "== $1: SKIPPED: $2"; }
step() { # NAME LIMIT_S LOG CMD...: runs CMD (output to LOG) under min(LIMIT, time left), reports it
  local name=$1 lim=$2 log=$3 t0 rc l
  shift 3
  l=$(( $(left) - 5 ))
  STEP_RC=124
  if [ "$l" -lt 10 ]; then skip "$name" "out of time (budget ${BUDGET} s)"; return 0; fi
  [ "$lim" -gt "$l" ] && lim=$l
  t0=$(date +%s)
  timeout "$lim" "$@" > "$log" 2>&1
  rc=$?
  STEP_RC=$rc
  echo "== $name: exit $rc in $(( $(date +%s) - t0 )) s$([ $rc = 124 ] && echo " (stopped at its limit, $lim s)")"
  grep -E "FAIL|CHECK failed|checks|skipped|SKIPPED|Error|error|ERROR" "$log" | head -20
  return 0
}
plog() { printf '\n==== %s\n' "$1" >> "$O/parity.log"; cat "$2" >> "$O/parity.log"; }
: > "$O/parity.log"
: > "$O/dsp-stemline.jsonl"

# 1. The op level on the GPU: every op against the CPU, the persistent LSTM.
if [ $GPU = 1 ]; then
  step gpu_parity 120 "$L/gpu_parity.log" "$B/bin/gpu_test_cuda_parity"; plog gpu_test_cuda_parity "$L/gpu_parity.log"
  step lstm_impl 30 "$L/lstm.log" "$B/bin/gpu_test_lstm_impl"; plog gpu_test_lstm_impl "$L/lstm.log"
else
  skip gpu_parity "no GPU"; skip lstm_impl "no GPU"
fi

# 2. The whole job: `stemline run` (the bundle's, FFmpeg inside) on a generated
# catalog: hpss + melstats, Open-Unmix (umxhq size) and Cnn14 (full size) with
# random weights expanded from the bundle's skeletons, at fp32 and bf16 on the
# GPU (the CPU, fp32 only, without one). One JSON line per run in jobs.jsonl.
if [ $QUICK = 1 ]; then NT=${SL_GPU_JOB_TRACKS:-2}; NS=${SL_GPU_JOB_SECONDS:-4}; else
  NT=${SL_GPU_JOB_TRACKS:-16}; NS=${SL_GPU_JOB_SECONDS:-30}; fi
W=$L/job
PY=
for c in ${SL_GPU_PYTHON:-} python3 /usr/bin/python3; do # the first with numpy
  "$c" -c 'import numpy' 2>/dev/null && { PY=$c; break; }
done
[ -n "$PY" ] || { echo "gpu_check.sh: no python3 with numpy: no catalog, no models"; PY=python3; }
t0=$(date +%s)
mkdir -p "$W"
"$PY" bench/gpu_models.py catalog "$W/in" --tracks "$NT" --seconds "$NS" || echo "gpu_check.sh: catalog failed"
for m in umx cnn14; do
  if [ -f "$B/models/$m.json" ]; then
    "$PY" bench/gpu_models.py expand "$B/models/$m.json" "$W/$m.safetensors" || echo "gpu_check.sh: $m weights failed"
  fi
done
echo "== catalog ($NT tracks x $NS s) and weights: $(( $(date +%s) - t0 )) s"
job_yaml() { # NAME: W/NAME.yaml
  local sep="{model: none}" emb="{model: none}" fmt="{format: wav, sample_format: f32}"
  case $1 in
    dsp) sep="{model: hpss}"; emb="{model: melstats}" ;;
    umx) sep="{model: umx, weights: \"$W/umx.safetensors\"}" ;;
    cnn14) emb="{model: cnn14, weights: \"$W/cnn14.safetensors\", tags_top_k: 5}" ;;
  esac
  printf 'input: {paths: ["%s/in"]}\noutput: {dir: "%s/out", stems: %s}\nseparation: %s\nembedding: %s\n' \
    "$W" "$W" "$fmt" "$sep" "$emb" > "$W/$1.yaml"
}
: > "$O/jobs.jsonl"
for job in dsp umx cnn14; do
  if [ "$job" != dsp ] && [ ! -s "$W/$job.safetensors" ]; then skip "job $job" "no $job weights"; continue; fi
  job_yaml "$job"
  for prec in fp32 bf16; do
    if [ $GPU = 1 ]; then be=cuda; elif [ $prec = fp32 ]; then be=cpu; else skip "job $job $prec" "no GPU"; continue; fi
    out=$W/out-$job-$prec
    step "job $job $prec ($be)" $((150 * SLOW)) "$L/job-$job-$prec.log" "$B/stemline" run "$W/$job.yaml" --backend "$be" \
      --set runtime.precision=$prec --set output.dir="$out"
    ref=()
    [ $prec != fp32 ] && [ -f "$W/out-$job-fp32/report.json" ] && ref=(--ref "$W/out-$job-fp32")
    "$PY" bench/gpu_models.py jobline --job "$job" --precision $prec --out "$out" --status "$STEP_RC" \
      ${ref[@]+"${ref[@]}"} >> "$O/jobs.jsonl"
    tail -1 "$O/jobs.jsonl"
  done
done
# PyTorch's reference models on the same GPU and catalog (bench/gpu_torch_models.py).
if [ $GPU = 1 ] && [ -d "$B/py" ]; then
  step "torch umx + cnn14" 150 "$L/torch-models.log" sh -c "PYTHONUNBUFFERED=1 \"$PY\" bench/gpu_torch_models.py \"$W/in\" --py \"$B/py\" >> \"$O/jobs.jsonl\""
  cat "$L/torch-models.log"
elif [ $GPU = 1 ]; then skip "torch umx + cnn14" "no py/ in the bundle"; else skip "torch umx + cnn14" "no GPU"; fi
# The stem formats through the bundle's static FFmpeg (encoders, muxers) and
# back (demuxers, decoders): one short track, CPU.
fmts_ok=0
for fmt in flac opus mp3 aac ogg; do
  printf 'input: {paths: ["%s/in/track-000.wav"]}\noutput: {dir: "%s/fmt-%s", stems: {format: %s}}\nseparation: {model: hpss}\nembedding: {model: none}\n' \
    "$W" "$W" "$fmt" "$fmt" > "$W/fmt-$fmt.yaml"
  if "$B/stemline" run "$W/fmt-$fmt.yaml" --backend cpu --quiet > "$L/fmt-$fmt.log" 2>&1 &&
     f=$(find "$W/fmt-$fmt/stems" -type f | head -1) && [ -n "$f" ] &&
     "$B/stemline" inspect --decode "$f" >> "$L/fmt-$fmt.log" 2>&1; then
    fmts_ok=$((fmts_ok + 1))
  else
    echo "== stem format $fmt: FAILED"; tail -5 "$L/fmt-$fmt.log"
  fi
done
echo "== stem formats written and read back by the bundle's stemline: $fmts_ok of 5"

# 3. GEMMs by precision, then the DSP benchmark on the GPU and torch beside it.
if [ $GPU = 1 ]; then
  step "bench_gemm fp32/tf32/bf16" 90 "$L/gemm.log" sh -c "\"$B/bin/bench_gemm\" --backends cuda --precisions fp32,tf32,bf16 --repeat 10 > \"$O/gemm.jsonl\""
  cat "$L/gemm.log"
  dsp=(--tracks 8 --seconds 60 --hpss-seconds 60)
  step "bench_dsp cuda" 100 "$L/dsp-cuda.log" sh -c "\"$B/bin/bench_dsp\" ${dsp[*]} --backends cuda --repeat 10 --bw-mb 1024 >> \"$O/dsp-stemline.jsonl\""
  cat "$L/dsp-cuda.log"
  step "torch on the GPU" 90 "$L/torch.log" sh -c "PYTHONUNBUFFERED=1 \"$PY\" bench/dsp_baselines.py ${dsp[*]} --repeat 5 --skip-librosa --skip-torch --torch-device cuda > \"$O/dsp-torch.jsonl\""
  cat "$L/torch.log"
else
  skip "bench_gemm fp32/tf32/bf16" "no GPU"; skip "bench_dsp cuda" "no GPU"; skip "torch on the GPU" "no GPU"
fi

# 4. compute-sanitizer (racecheck, synccheck, initcheck, memcheck) on the parity
# test's CUDA shapes, where the machine has it.
CS=$(command -v compute-sanitizer || find /usr/local/cuda*/bin -name compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck synccheck initcheck; do
  if [ $GPU = 0 ]; then skip "compute-sanitizer $tool" "no GPU"; continue; fi
  if [ -z "$CS" ]; then skip "compute-sanitizer $tool" "no compute-sanitizer on this machine"; continue; fi
  step "compute-sanitizer $tool" 60 "$L/cs-$tool.log" "$CS" --tool "$tool" --error-exitcode 9 "$B/bin/test_parity"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|========= (Error|Invalid|Race|Uninit)" "$L/cs-$tool.log" | head -5
  plog "compute-sanitizer --tool $tool test_parity" "$L/cs-$tool.log"
done

# 5. The CPU side: the parity test (cpu, cuda-emu, and cuda where there is a
# GPU) and the DSP benchmark on the CPU (64 MiB buffers; its bandwidth pass is slow).
step parity $((60 * SLOW)) "$L/parity.log" "$B/bin/test_parity"; plog test_parity "$L/parity.log"
if [ $QUICK = 1 ]; then dspc=(--tracks 2 --seconds 10 --hpss-seconds 10 --repeat 1 --bw-mb 16); else
  dspc=(--tracks 8 --seconds 60 --hpss-seconds 60 --repeat 3 --bw-mb 64); fi
step "bench_dsp cpu" 100 "$L/dsp-cpu.log" sh -c "\"$B/bin/bench_dsp\" ${dspc[*]} --backends cpu > \"$O/dsp-stemline.jsonl.cpu\""
cat "$O/dsp-stemline.jsonl.cpu" >> "$O/dsp-stemline.jsonl" 2>/dev/null; rm -f "$O/dsp-stemline.jsonl.cpu"
touch "$O/dsp-torch.jsonl" "$O/gemm.jsonl"
table "$O" && cat "$O/tables.md"
echo "gpu_check.sh: done in $(( $(date +%s) - T0 )) s; files in $O: $(find "$O" -maxdepth 1 -type f -printf '%f ')"
rm -rf "$L"
