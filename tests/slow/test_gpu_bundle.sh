#!/usr/bin/env bash
# The GPU bundle end to end on this machine: bench/gpu_bundle.sh (static FFmpeg
# from Debian's source package, cached; a Release build with the CUDA backend
# in $SL_GPU_BUNDLE_BUILD, default $SL_BUILD/gpu-bundle-build; random-weight model skeletons where the torch
# venv has the reference packages), then a copy of the bundle elsewhere, and bench/gpu_check.sh
# --quick on it in a bare environment (env -i: no LD_LIBRARY_PATH, PATH
# /usr/bin:/bin) with no GPU: every GPU step SKIPPED visibly (the new models'
# cuda tests, bf16 jobs and PyTorch references too), the jobs on the CPU (the
# new models with their reduced golden weights), the CLAP text tower and one
# BS-RoFormer chunk through the bundle's bench programs, the stem formats through
# the static FFmpeg; then the models part alone. Skipped (77) without nvcc.
# The first run builds FFmpeg (about 12 minutes on 2 busy cores) and the CUDA
# objects; later runs reuse both.
set -u
source "$(dirname "$0")/../cli/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
: "${SL_BUILD:?SL_BUILD must point at the build tree}"
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] || { echo "no nvcc: skipped"; exit 77; }
in_tmp_dir
# --no-models where no torch venv can make the skeletons (then umx and cnn14 are skipped too)
py=${BENCH_PYTHON:-$SL_SRC/bench/.venv-torch/bin/python}
models=(--no-models)
"$py" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("torch", "openunmix", "panns_inference", "torchlibrosa", "bs_roformer",
                                                "demucs", "laion_clap")))' 2>/dev/null && models=()
t0=$(date +%s)
BENCH_PYTHON=$py bash "$SL_SRC/bench/gpu_bundle.sh" "${SL_GPU_BUNDLE_BUILD:-$SL_BUILD/gpu-bundle-build}" --out "$T/bundle" \
  ${models[@]+"${models[@]}"} >"$T/bundle.log" 2>&1
STATUS=$?
echo "gpu_bundle.sh: exit $STATUS in $(( $(date +%s) - t0 )) s"; tail -4 "$T/bundle.log"
expect_status 0 "bench/gpu_bundle.sh"
expect_grep "MiB in all" "$T/bundle.log" "the bundle's size is reported"
if ldd "$T/bundle/bin/stemline" | grep -E "libav|libsw|libopus|libmp3lame|libvorbis"; then
  fail "the bundle's stemline loads FFmpeg or an encoder's shared library"
else pass; fi
expect_grep "libcufft.so" "$T/bundle/cuda-libs" "cuFFT is left to the GPU machine"
[ -f "$T/bundle/lib.tar.xz" ] && pass || fail "lib.tar.xz packed"

cp -r "$T/bundle" "$T/moved" && rm -rf "$T/bundle"
mkdir "$T/out"
(cd "$SL_SRC" && env -i PATH=/usr/bin:/bin HOME="$T" TMPDIR="$T" OUT="$T/out" SL_GPU_BUNDLE="$T/moved" \
  SL_GPU_CHECK_NO_GPU=1 bash bench/gpu_check.sh --quick) >"$T/check.log" 2>&1
STATUS=$?
tail -30 "$T/check.log"
expect_status 0 "bench/gpu_check.sh --quick without a GPU"
for s in gpu_parity lstm_impl "job dsp bf16" "bench_gemm fp32/tf32/bf16" "bench_dsp cuda" "torch on the GPU" \
  "torch umx + cnn14" "compute-sanitizer memcheck" test_roformer test_htdemucs test_clap_audio test_clap_text \
  "job bs_roformer bf16" "job htdemucs bf16" "job clap bf16" "job mel_band_roformer bf16" "torch new models"; do
  expect_grep "== $s: SKIPPED: no GPU" "$T/check.log" "$s is skipped visibly"
done
expect_grep "== stem formats written and read back by the bundle's stemline: 5 of 5" "$T/check.log" \
  "flac, opus, mp3, aac and ogg stems through the static FFmpeg"
expect_grep "== parity: exit 0 " "$T/check.log" "test_parity from the bundle"
n=$(find "$T/out" -maxdepth 1 -type f | wc -l)
[ "$n" -le 8 ] && pass || fail "at most 8 files in \$OUT (a device call returns no more), got $n"
PYTHONPATH= "$SL_PYTHON" - "$T/out/jobs.jsonl" "${#models[@]}" <<'PY' && pass || fail "jobs.jsonl: the CPU jobs ran and finished"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
# the new models run with their reduced golden weights in --quick (no skeleton needed)
jobs = ["dsp", "bs_roformer", "htdemucs", "clap", "mel_band_roformer", "htdemucs-long"]
if sys.argv[2] == "0":
    jobs += ["umx", "cnn14"]
for j in jobs:
    r = [x for x in rows if x["job"] == j and x["precision"] == "fp32"]
    assert r and r[0]["status"] == 0 and r[0]["backend"] == "cpu", (j, r)
    assert r[0]["ok"] == 2 and r[0]["failed"] == 0 and r[0]["x_realtime"] > 0, r[0]
    assert r[0].get("note") == ("small" if j not in ("dsp", "umx", "cnn14") else "full"), r[0]
long = [x for x in rows if x["job"] == "htdemucs-long"][0]
short = [x for x in rows if x["job"] == "htdemucs"][0]
assert long["audio_seconds"] > 2 * short["audio_seconds"], (long, short)
if sys.argv[2] == "0":  # the bench programs come with the models
    t = [x for x in rows if x["job"] == "clap_text"]
    assert t and t[0]["backend"] == "cpu" and t[0]["queries_per_s"] > 0 and t[0]["queries"] == 16, t
    m = [x for x in rows if x["job"].startswith("bs_roformer (1 chunk")]
    assert m and m[0]["x_realtime"] > 0 and m[0]["precision"] == "fp32", m
assert not [x for x in rows if x["precision"] == "bf16"], "bf16 ran without a GPU"
PY
expect_grep "stemline run on the generated catalog" "$T/out/tables.md" "tables.md has the jobs table"
expect_grep "| bs_roformer (small weights) | fp32 | cpu |" "$T/out/tables.md" "the BS-RoFormer job is in the table"
if [ ${#models[@]} = 0 ]; then # the models' bench programs came with the skeletons
  expect_grep "CLAP text tower" "$T/out/tables.md" "tables.md has the text tower's table"
  expect_grep "== bench_umx bs_roformer bf16: SKIPPED: no GPU" "$T/check.log" "bench_umx bf16 is skipped visibly"
fi
# the new models' part alone (SL_GPU_CHECK_PARTS=models): the earlier part is not run
mkdir "$T/out2"
(cd "$SL_SRC" && env -i PATH=/usr/bin:/bin HOME="$T" TMPDIR="$T" OUT="$T/out2" SL_GPU_BUNDLE="$T/moved" \
  SL_GPU_CHECK_NO_GPU=1 SL_GPU_CHECK_PARTS=models bash bench/gpu_check.sh --quick) >"$T/check2.log" 2>&1
STATUS=$?
expect_status 0 "bench/gpu_check.sh --quick, part models only"
expect_grep "== part ops: not asked for" "$T/check2.log" "the ops part is said to be left out"
if grep -q "== job dsp fp32" "$T/check2.log"; then fail "the ops part ran"; else pass; fi
expect_grep "== job bs_roformer fp32 (cpu): exit 0" "$T/check2.log" "the models part ran"
finish
