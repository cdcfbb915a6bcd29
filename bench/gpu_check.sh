#!/usr/bin/env bash
# The GPU check, in one device call (see bench/gpu_bundle.sh, which prepares
# .gpu/ on the build machine):
#
#   run(command="bash bench/gpu_check.sh", carry=[".gpu"], timeout_s=540)
#
# On the GPU machine it runs, each step under its own time limit and all within
# SL_GPU_CHECK_BUDGET seconds (default 510: a call of at most 540 s, within 15
# minutes of GPU machine time, its start included), logging to $OUT, in this order
# (what the budget does not reach is printed "SKIPPED: out of time"):
#   0. a generated catalog (bench/gpu_models.py catalog: 16 tracks x 30 s, music-like)
#      and full-size random-weight models expanded from the bundle's skeletons;
#   1. part "models", the new models first:
#      a. test_roformer, test_htdemucs, test_clap_audio, test_clap_text: the unit tests
#         against the reference packages' golden vectors (tests/golden, from the tree)
#         on cpu, cuda-emu and the real "cuda" backend;
#      b. `stemline run` (the bundle's, static FFmpeg inside) at bf16 for BS-RoFormer
#         (4 stems, dim 384, depth 8), HT-Demucs (released dimensions), CLAP (HTSAT-base
#         audio tower) and Mel-Band RoFormer (dim 384, depth 6): x realtime, peak device
#         memory (nvidia-smi memory.used every 100 ms), TFLOP/s for the RoFormers (FLOPs
#         of the chunked inference counted with torch.utils.flop_counter at bundle time);
#      c. HT-Demucs bf16 again on 2 tracks x 300 s: peak device memory at another track
#         length;
#      d. PyTorch on the same GPU and audio (bench/gpu_torch_models.py, the packages
#         from the bundle's py/): bs-roformer 0.3.10 through ZFTurbo's demix (with
#         TFLOP/s; fp32, bf16 and fp16, ZFTurbo's use_amp), demucs apply_model,
#         laion_clap's audio and text towers, then the Mel-Band RoFormer (bf16, fp16);
#      e. the same jobs at fp32, the separators on the first 4 tracks (SL_GPU_FP32_TRACKS,
#         CLAP on all): bf16 against
#         fp32 (lowest stem SNR, lowest vector cosine) and fp32's own speed;
#      f. the CLAP text tower alone (bench_clap_text: queries/s) and one BS-RoFormer
#         chunk alone (bench_umx: model-only x realtime and TFLOP/s);
#   2. part "ops", the op level and the earlier models:
#      a. gpu_test_cuda_parity (every op on the real "cuda" backend against the CPU,
#         large shapes, cuDNN), gpu_test_lstm_impl, gpu_test_graphs;
#      b. the jobs for hpss + melstats, Open-Unmix (umxhq size) and Cnn14 (full size)
#         at fp32 and bf16, PyTorch's umx and Cnn14 beside them, the five stem formats
#         written and decoded back;
#      c. bench_gemm (sl_op_gemm at fp32, tf32, bf16), bench_dsp on the GPU and
#         torch.stft / torch.istft on the same GPU (bench/dsp_baselines.py);
#      d. compute-sanitizer memcheck, racecheck, synccheck and initcheck on
#         test_parity (its CUDA shapes), where the machine has compute-sanitizer;
#      e. test_parity (cpu, cuda-emu, cuda) and bench_dsp on the CPU.
# SL_GPU_CHECK_PARTS="models ops" (default) picks the parts: where the first call
# ran out of budget, a second call on the still-warm machine can run the rest,
#   run(command="SL_GPU_CHECK_PARTS=ops SL_GPU_CHECK_BUDGET=200 bash bench/gpu_check.sh",
#       carry=[".gpu"], timeout_s=230)
# (its $OUT replaces the first call's files: keep those first). Other knobs:
# SL_GPU_JOB_TRACKS / SL_GPU_JOB_SECONDS (the catalog), SL_GPU_LONG_SECONDS (1c),
# SL_GPU_FP32_TRACKS (1e), SL_GPU_JOB_BATCH (runtime.batch_size of the jobs).
# Without a GPU (nvidia-smi lists none, or SL_GPU_CHECK_NO_GPU=1) every GPU step
# prints "SKIPPED: no GPU" and the jobs run on the CPU at fp32: that is how the
# bundle is tested on the build machine (--quick: 2 tracks x 4 s, the new models
# with their reduced golden weights from tests/golden, SL_GPU_MODEL_SIZE=full for
# the skeletons' full size; ctest slow.gpu_bundle). $OUT gets 8 files (a device
# call returns at most 8): gpu_check.log (everything printed), nvidia-smi.txt,
# parity.log (the unit, parity, LSTM and sanitizer logs), jobs.jsonl,
# dsp-stemline.jsonl, dsp-torch.jsonl, gemm.jsonl, tables.md.
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
def f(v, fmt="%.1f"):
    return "-" if v is None else (fmt % v if isinstance(v, (int, float)) else str(v))
jobs = [r for r in rows if "queries_per_s" not in r and r.get("backend") not in ("torch-cuda", "torch-cpu")]
print("\n#### stemline run on the generated catalog (bundle's binary; random-weight models, full size unless noted)\n")
print("| job | precision | backend | audio s | wall s | x realtime | ok / failed | min SNR vs fp32 (dB) | min cosine vs fp32 "
      "| peak device MiB (above idle) | TFLOP/s (wall / separate stage) |")
print("| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
for r in jobs:
    name = r["job"] + (" (%s weights)" % r["note"] if r.get("note") == "small" else "")
    if "error" in r:
        st = "" if r.get("status") is None else f"exit {r['status']}: "
        print(f"| {name} | {r['precision']} | - | - | - | - | {st}{r['error']} | - | - | - | - |")
        continue
    mem = "-" if r.get("peak_mib") is None else f"{r['peak_mib']} ({r.get('peak_mib_above_idle')})"
    tf = "-" if r.get("tflops") is None else f"{r['tflops']} / {f(r.get('tflops_separate'))}"
    print(f"| {name} | {r['precision']} | {r.get('backend')} | {r.get('audio_seconds') or 0:.1f} | "
          f"{r.get('wall_seconds') or 0:.2f} | {r.get('x_realtime') or 0:.1f} | {r.get('ok', '-')} / {r.get('failed', '-')} | "
          f"{r.get('min_snr_db_vs_fp32', '-')} | {r.get('min_cosine_vs_fp32', '-')} | {mem} | {tf} |")
sl = {(r["job"], r["precision"]): r for r in rows if r.get("backend") == "cuda" and r.get("x_realtime")}
tr = {(r["job"], r["precision"]): r for r in rows if r.get("backend") == "torch-cuda" and r.get("x_realtime")}
# where PyTorch has no bf16 figure (an error) but an fp16 one (ZFTurbo's use_amp), stemline's bf16 against it
for k in list(sl):
    if k[1] == "bf16" and k not in tr and (k[0], "fp16") in tr:
        tr[k] = dict(tr[(k[0], "fp16")], _note="torch fp16")
both = [k for k in sl if k in tr]
if both:
    print("\nstemline (whole job: decode, model, encode, write) against PyTorch (model calls on audio already on the GPU; "
          "bs_roformer: ZFTurbo's demix, htdemucs: apply_model, clap: get_audio_embedding):\n")
    print("| job | precision | stemline x realtime | torch x realtime | stemline / torch | stemline TFLOP/s | torch TFLOP/s "
          "| stemline peak MiB | torch peak MiB (allocated) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for k in both:
        a, b = sl[k], tr[k]
        print(f"| {k[0]} | {k[1]}{' (' + b['_note'] + ')' if b.get('_note') else ''} | {a['x_realtime']:.1f} | {b['x_realtime']:.1f} | {a['x_realtime'] / b['x_realtime']:.2f} | "
              f"{f(a.get('tflops'))} | {f(b.get('tflops'))} | {f(a.get('peak_mib'), '%d')} | {f(b.get('peak_mib'), '%d')} |")
tr_all = [r for r in rows if r.get("backend", "").startswith("torch") and r.get("x_realtime")]
if tr_all:
    print("\nPyTorch on the same GPU, every figure (model calls on audio already on the GPU):\n")
    print("| model | precision | x realtime | wall s | TFLOP/s | peak MiB (allocated) | torch |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for r in tr_all:
        print(f"| {r['job']} | {r['precision']} | {r['x_realtime']:.1f} | {f(r.get('wall_seconds'), '%.2f')} | "
              f"{f(r.get('tflops'))} | {f(r.get('peak_mib'), '%d')} | {r.get('torch', '')} |")
tr_err = [r for r in rows if r.get("backend", "").startswith("torch") and "error" in r]
for r in tr_err:
    print(f"\ntorch {r['job']} {r['precision']}: {r['error']}")
text = [r for r in rows if "queries_per_s" in r]
if text:
    print("\n#### CLAP text tower (tokenizer + RoBERTa-base + projection; 16 queries a batch)\n")
    print("| implementation | backend | precision | queries/s | note |")
    print("| --- | --- | --- | ---: | --- |")
    for r in text:
        impl = "PyTorch (laion_clap)" if r.get("backend", "").startswith("torch") else "stemline (bench_clap_text)"
        print(f"| {impl} | {r.get('backend')} | {r['precision']} | {r['queries_per_s']:.1f} | {r.get('note') or ''} |")
mem = [r for r in jobs if r["job"] in ("htdemucs", "htdemucs-long") and r.get("peak_mib") is not None]
if len(mem) >= 2:
    print("\nHT-Demucs device memory by track length (nvidia-smi memory.used during the run, CUDA context included):\n")
    print("| job | precision | audio s | peak MiB | above idle MiB |")
    print("| --- | --- | ---: | ---: | ---: |")
    for r in mem:
        print(f"| {r['job']} | {r['precision']} | {r.get('audio_seconds') or 0:.0f} | {r['peak_mib']} | {r.get('peak_mib_above_idle')} |")
# the issues' GPU targets where the rows hold them (issues 18 and 19)
checks = []
r = sl.get(("bs_roformer", "bf16"))
if r:
    checks.append(("BS-RoFormer 4-stem bf16 >= 100x realtime (aim 200x)", f"{r['x_realtime']:.1f}x",
                   "met" if r["x_realtime"] >= 100 else "not met"))
r = sl.get(("htdemucs", "bf16"))
if r:
    checks.append(("htdemucs bf16 >= 300x realtime end to end", f"{r['x_realtime']:.1f}x",
                   "met" if r["x_realtime"] >= 300 else "not met"))
    t = tr.get(("htdemucs", "fp32"))
    if t:
        q = r["x_realtime"] / t["x_realtime"]
        checks.append(("htdemucs bf16 >= 10x PyTorch demucs (fp32 apply_model)", f"{q:.1f}x", "met" if q >= 10 else "not met"))
if checks and any(r.get("note") == "full" or r.get("backend") == "cuda" for r in jobs):
    print("\n| target | measured | |")
    print("| --- | ---: | --- |")
    for c in checks:
        print("| %s | %s | %s |" % c)
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
: > "$O/jobs.jsonl"
PARTS=" ${SL_GPU_CHECK_PARTS:-models ops} "
part() { case $PARTS in *" $1 "*) return 0 ;; esac; echo "== part $1: not asked for (SL_GPU_CHECK_PARTS=$PARTS)"; return 1; }
MW_PID=
memwatch() { # FILE: nvidia-smi's memory.used (MiB) every 100 ms into FILE until memstop
  : > "$1"
  [ $GPU = 1 ] || return 0
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$1" 2>/dev/null &
  MW_PID=$!
  sleep 0.3 # the first sample: the memory in use before the run
}
memstop() { [ -n "$MW_PID" ] && { kill "$MW_PID" 2>/dev/null; wait "$MW_PID" 2>/dev/null; }; MW_PID=; }

# 0. The catalog and the weights (both parts): music-like tracks (bench/gpu_models.py
# catalog), full-size random-weight models expanded from the bundle's skeletons; with
# --quick, the new models' reduced golden weights from tests/golden instead (their
# full size takes minutes a track on a CPU).
if [ $QUICK = 1 ]; then NT=${SL_GPU_JOB_TRACKS:-2}; NS=${SL_GPU_JOB_SECONDS:-4}; NTL=2; NSL=12; else
  NT=${SL_GPU_JOB_TRACKS:-16}; NS=${SL_GPU_JOB_SECONDS:-30}; NTL=2; NSL=${SL_GPU_LONG_SECONDS:-300}; fi
W=$L/job
PY=
for c in ${SL_GPU_PYTHON:-} python3 /usr/bin/python3; do # the first with numpy
  "$c" -c 'import numpy' 2>/dev/null && { PY=$c; break; }
done
[ -n "$PY" ] || { echo "gpu_check.sh: no python3 with numpy: no catalog, no models"; PY=python3; }
t0=$(date +%s)
mkdir -p "$W"
"$PY" bench/gpu_models.py catalog "$W/in" --tracks "$NT" --seconds "$NS" || echo "gpu_check.sh: catalog failed"
NEW_JOBS="bs_roformer htdemucs clap mel_band_roformer"
declare -A SMALL=( # --quick: the new models at the size of their unit tests
  [bs_roformer]=tests/golden/roformer/bs_stereo_1stem.safetensors
  [mel_band_roformer]=tests/golden/roformer/mel_stereo_1stem.safetensors
  [htdemucs]=tests/golden/htdemucs/small.safetensors
  [clap]=tests/golden/clap/clap-small.safetensors
  [clap_text]=tests/golden/clap_text/small.safetensors
)
SIZE=full
[ $QUICK = 1 ] && SIZE=${SL_GPU_MODEL_SIZE:-small}
for m in umx cnn14 $NEW_JOBS clap_text; do
  case " $NEW_JOBS clap_text " in
    *" $m "*) part models >/dev/null || continue
      if [ "$SIZE" = small ]; then cp "${SMALL[$m]}" "$W/$m.safetensors"; continue; fi ;;
    *) part ops >/dev/null || continue ;;
  esac
  if [ -f "$B/models/$m.json" ]; then
    "$PY" bench/gpu_models.py expand "$B/models/$m.json" "$W/$m.safetensors" || echo "gpu_check.sh: $m weights failed"
  fi
done
echo "== catalog ($NT tracks x $NS s), weights ($SIZE size: $(cd "$W" && find . -maxdepth 1 -name '*.safetensors' -printf '%f ' 2>/dev/null)): $(( $(date +%s) - t0 )) s"
job_yaml() { # NAME [CATALOG]: W/NAME.yaml
  local sep="{model: none}" emb="{model: none}" fmt="{format: wav, sample_format: f32}" in=${2:-$W/in}
  case $1 in
    dsp) sep="{model: hpss}"; emb="{model: melstats}" ;;
    umx|bs_roformer|mel_band_roformer|htdemucs) sep="{model: $1, weights: \"$W/$1.safetensors\"}" ;;
    cnn14) emb="{model: cnn14, weights: \"$W/cnn14.safetensors\", tags_top_k: 5}" ;;
    clap) emb="{model: clap, weights: \"$W/clap.safetensors\"}" ;;
  esac
  printf 'input: {paths: ["%s"]}\noutput: {dir: "%s/out", stems: %s}\nseparation: %s\nembedding: %s\n' \
    "$in" "$W" "$fmt" "$sep" "$emb" > "$W/$1.yaml"
}
RAN=() # "JOB PREC ROWNAME RC TRACKS SECONDS" of each run, for jobline once the fp32 reference exists
run_job() { # JOB PREC LIMIT_S [ROWNAME CATALOG TRACKS SECONDS]: `stemline run` on the GPU (CPU at fp32 without one)
  local job=$1 prec=$2 lim=$3 row=${4:-$1} in=${5:-$W/in} ntr=${6:-$NT} nsec=${7:-$NS} be
  if [ "$job" != dsp ] && [ ! -s "$W/$job.safetensors" ]; then skip "job $row $prec" "no $job weights"; return 0; fi
  if [ $GPU = 1 ]; then be=cuda; elif [ "$prec" = fp32 ]; then be=cpu; else skip "job $row $prec" "no GPU"; return 0; fi
  job_yaml "$job" "$in"
  memwatch "$L/mem-$row-$prec.txt"
  step "job $row $prec ($be)" $((lim * SLOW)) "$L/job-$row-$prec.log" "$B/stemline" run "$W/$job.yaml" --backend "$be" \
    --set runtime.precision="$prec" --set output.dir="$W/out-$row-$prec" ${SL_GPU_JOB_BATCH:+--set runtime.batch_size=$SL_GPU_JOB_BATCH}
  memstop
  RAN+=("$job $prec $row $STEP_RC $ntr $nsec")
}
joblines() { # a JSON line in jobs.jsonl for each run in RAN (bf16 against fp32 where both ran)
  local r job prec row rc ref flops sk tracks secs size
  for r in ${RAN[@]+"${RAN[@]}"}; do
    read -r job prec row rc tracks secs <<< "$r"
    ref=(); flops=()
    [ "$prec" != fp32 ] && [ -f "$W/out-$row-fp32/report.json" ] && ref=(--ref "$W/out-$row-fp32")
    sk=$B/models/$job.json
    size=full
    case " $NEW_JOBS " in *" $job "*) size=$SIZE ;; esac
    if [ "$size" = full ] && [ -f "$sk" ] && grep -q '"flops_per_chunk"' "$sk"; then
      flops=(--flops "$("$PY" bench/gpu_models.py flops "$sk" --seconds "$secs" --tracks "$tracks")")
    fi
    "$PY" bench/gpu_models.py jobline --job "$row" --precision "$prec" --out "$W/out-$row-$prec" --status "$rc" \
      --mem "$L/mem-$row-$prec.txt" --log "$L/job-$row-$prec.log" --note "$size" ${ref[@]+"${ref[@]}"} ${flops[@]+"${flops[@]}"} >> "$O/jobs.jsonl"
    tail -1 "$O/jobs.jsonl"
  done
  RAN=()
}

# 1. The new models: BS-RoFormer (4 stems), HT-Demucs, CLAP and Mel-Band RoFormer.
if part models; then
  # 1a. Their unit tests (tests/unit: golden vectors of the reference packages) on the real
  # "cuda" backend beside cpu and cuda-emu; the goldens are the tree's (SL_SRC).
  for t in test_roformer test_htdemucs test_clap_audio test_clap_text; do
    if [ $GPU = 0 ]; then skip "$t" "no GPU"; continue; fi
    if [ ! -x "$B/bin/$t" ]; then skip "$t" "not in the bundle"; continue; fi
    step "$t" 60 "$L/$t.log" env SL_SRC="$PWD" "$B/bin/$t"; plog "$t" "$L/$t.log"
    echo "   cuda lines: $(grep -c '^ *cuda ' "$L/$t.log") ($(grep '^ *cuda ' "$L/$t.log" | grep -c 'FAIL') FAIL, $(grep '^ *cuda ' "$L/$t.log" | grep -c SKIPPED) SKIPPED)"
  done
  # 1b. Whole jobs on the catalog at bf16 (the target figures); peak device memory from
  # nvidia-smi during each run.
  for job in $NEW_JOBS; do run_job "$job" bf16 90; done
  # 1c. HT-Demucs's device memory at another track length (NTL x NSL s against NT x NS s).
  if [ $GPU = 1 ] || [ $QUICK = 1 ]; then
    "$PY" bench/gpu_models.py catalog "$W/long" --tracks "$NTL" --seconds "$NSL" || echo "gpu_check.sh: long catalog failed"
    prec=fp32; [ $GPU = 1 ] && prec=bf16
    run_job htdemucs $prec 90 htdemucs-long "$W/long" "$NTL" "$NSL"
  fi
  # 1d. PyTorch's reference models on the same GPU and catalog (bench/gpu_torch_models.py).
  if [ $GPU = 1 ] && [ -d "$B/py" ]; then
    step "torch bs_roformer" 150 "$L/torch-roformer.log" sh -c "PYTHONUNBUFFERED=1 \"$PY\" bench/gpu_torch_models.py \"$W/in\" --py \"$B/py\" --models-dir \"$B/models\" --models bs_roformer --precisions fp32,bf16,fp16 >> \"$O/jobs.jsonl\""
    cat "$L/torch-roformer.log"
    step "torch htdemucs + clap + clap_text" 150 "$L/torch-new.log" sh -c "PYTHONUNBUFFERED=1 \"$PY\" bench/gpu_torch_models.py \"$W/in\" --py \"$B/py\" --models htdemucs,clap,clap_text >> \"$O/jobs.jsonl\""
    cat "$L/torch-new.log"
    step "torch mel_band_roformer" 100 "$L/torch-mel.log" sh -c "PYTHONUNBUFFERED=1 \"$PY\" bench/gpu_torch_models.py \"$W/in\" --py \"$B/py\" --models-dir \"$B/models\" --models mel_band_roformer --precisions bf16,fp16 >> \"$O/jobs.jsonl\""
    cat "$L/torch-mel.log"
  elif [ $GPU = 1 ]; then skip "torch new models" "no py/ in the bundle"; else skip "torch new models" "no GPU"; fi
  # 1e. fp32 on the first NF tracks (SL_GPU_FP32_TRACKS, default 4): the reference bf16's
  # stems and vectors are compared with, and fp32's own speed.
  NF=${SL_GPU_FP32_TRACKS:-4}
  [ "$NF" -gt "$NT" ] && NF=$NT
  mkdir -p "$W/in-fp32"
  find "$W/in" -name '*.wav' | sort | head -n "$NF" | while read -r f; do cp "$f" "$W/in-fp32/"; done
  for job in $NEW_JOBS; do # CLAP (cheap) on every track: its shards are compared row for row
    if [ "$job" = clap ]; then run_job clap fp32 90; else run_job "$job" fp32 90 "$job" "$W/in-fp32" "$NF" "$NS"; fi
  done
  joblines
  # 1f. The CLAP text tower alone (bench_clap_text: tokenizer + encoder, bench/bench_clap_text.py's
  # 16 queries in one batch) and one BS-RoFormer chunk alone (bench_umx: the model's forward).
  "$PY" -c 'import sys; sys.path.insert(0, "bench"); from bench_clap_text import QUERIES; print("\n".join(QUERIES))' \
    > "$W/queries.txt" 2>/dev/null || echo "gpu_check.sh: no queries"
  be=cpu; [ $GPU = 1 ] && be=cuda
  if [ -x "$B/bin/bench_clap_text" ] && [ -s "$W/clap_text.safetensors" ]; then
    step "bench_clap_text $be" 60 "$L/text.log" sh -c "\"$B/bin/bench_clap_text\" --weights \"$W/clap_text.safetensors\" --queries \"$W/queries.txt\" --backend $be --batch 16 --repeat 5 > \"$L/text.json\""
    "$PY" bench/gpu_models.py benchline --job clap_text --precision fp32 --note "$SIZE" < "$L/text.json" >> "$O/jobs.jsonl" && tail -1 "$O/jobs.jsonl"
  else skip "bench_clap_text $be" "no program or weights"; fi
  if [ -x "$B/bin/bench_umx" ] && [ -s "$W/bs_roformer.safetensors" ]; then
    "$PY" bench/gpu_models.py chunk "$W/bs_roformer.safetensors" "$W/chunk.f32"
    for prec in bf16 fp32; do
      [ $GPU = 0 ] && [ $prec = bf16 ] && { skip "bench_umx bs_roformer bf16" "no GPU"; continue; }
      step "bench_umx bs_roformer $prec ($be)" 60 "$L/rofo-$prec.log" sh -c "\"$B/bin/bench_umx\" --model bs_roformer --weights \"$W/bs_roformer.safetensors\" --input \"$W/chunk.f32\" --backend $be --precision $prec --repeat 3 > \"$L/rofo-$prec.json\""
      flops=()
      [ "$SIZE" = full ] && flops=(--flops "$("$PY" bench/gpu_models.py flops "$B/models/bs_roformer.json" --chunks 1)")
      "$PY" bench/gpu_models.py benchline --job "bs_roformer (1 chunk, model only)" --precision $prec --note "$SIZE" \
        ${flops[@]+"${flops[@]}"} < "$L/rofo-$prec.json" >> "$O/jobs.jsonl" && tail -1 "$O/jobs.jsonl"
    done
  fi
fi

# 2. The op level and the earlier models.
if part ops; then
# 2a. The op level on the GPU: every op against the CPU, the persistent LSTM.
if [ $GPU = 1 ]; then
  step gpu_parity 120 "$L/gpu_parity.log" "$B/bin/gpu_test_cuda_parity"; plog gpu_test_cuda_parity "$L/gpu_parity.log"
  step lstm_impl 30 "$L/lstm.log" "$B/bin/gpu_test_lstm_impl"; plog gpu_test_lstm_impl "$L/lstm.log"
  # CUDA graphs + the copy-stream ring on the device (small umx / Cnn14 goldens from tests/golden);
  # a "capture ... failed at" line names a library call that cannot be captured
  if [ -x "$B/bin/gpu_test_graphs" ]; then
    step graphs 60 "$L/graphs.log" env SL_SRC="$PWD" "$B/bin/gpu_test_graphs"; plog gpu_test_graphs "$L/graphs.log"
    grep -h "capture .* failed at" "$L/graphs.log" | head -5
  fi
else
  skip gpu_parity "no GPU"; skip lstm_impl "no GPU"; skip graphs "no GPU"
fi

# 2b. The whole job for hpss + melstats, Open-Unmix (umxhq size) and Cnn14 (full size),
# fp32 then bf16 (bf16 against fp32).
for job in dsp umx cnn14; do
  for prec in fp32 bf16; do run_job "$job" "$prec" 150; done
done
joblines
# PyTorch's Open-Unmix and Cnn14 on the same GPU and catalog (bench/gpu_torch_models.py).
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

# 2c. GEMMs by precision, then the DSP benchmark on the GPU and torch beside it.
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

# 2d. compute-sanitizer (racecheck, synccheck, initcheck, memcheck) on the parity
# test's CUDA shapes, where the machine has it.
CS=$(command -v compute-sanitizer || find /usr/local/cuda*/bin -name compute-sanitizer 2>/dev/null | head -1)
for tool in memcheck racecheck synccheck initcheck; do
  if [ $GPU = 0 ]; then skip "compute-sanitizer $tool" "no GPU"; continue; fi
  if [ -z "$CS" ]; then skip "compute-sanitizer $tool" "no compute-sanitizer on this machine"; continue; fi
  step "compute-sanitizer $tool" 60 "$L/cs-$tool.log" "$CS" --tool "$tool" --error-exitcode 9 "$B/bin/test_parity"
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|========= (Error|Invalid|Race|Uninit)" "$L/cs-$tool.log" | head -5
  plog "compute-sanitizer --tool $tool test_parity" "$L/cs-$tool.log"
done

# 2e. The CPU side: the parity test (cpu, cuda-emu, and cuda where there is a
# GPU) and the DSP benchmark on the CPU (64 MiB buffers; its bandwidth pass is slow).
step parity $((60 * SLOW)) "$L/parity.log" "$B/bin/test_parity"; plog test_parity "$L/parity.log"
if [ $QUICK = 1 ]; then dspc=(--tracks 2 --seconds 10 --hpss-seconds 10 --repeat 1 --bw-mb 16); else
  dspc=(--tracks 8 --seconds 60 --hpss-seconds 60 --repeat 3 --bw-mb 64); fi
step "bench_dsp cpu" 100 "$L/dsp-cpu.log" sh -c "\"$B/bin/bench_dsp\" ${dspc[*]} --backends cpu > \"$O/dsp-stemline.jsonl.cpu\""
cat "$O/dsp-stemline.jsonl.cpu" >> "$O/dsp-stemline.jsonl" 2>/dev/null; rm -f "$O/dsp-stemline.jsonl.cpu"
fi
touch "$O/dsp-torch.jsonl" "$O/gemm.jsonl"
table "$O" && cat "$O/tables.md"
echo "gpu_check.sh: done in $(( $(date +%s) - T0 )) s; files in $O: $(find "$O" -maxdepth 1 -type f -printf '%f ')"
rm -rf "$L"
