#!/usr/bin/env bash
# runtime.precision on the cpu backend (kernels/README.md, "Precision modes"),
# through the whole runner with the small random-weight BS-RoFormer of the
# golden tests: fp32 (the default) writes the same bytes with and without the
# AMX tiles (SL_CPU_AMX=0); tf32, bf16 and bf16x6 run on the AMX tiles where
# the CPU has them, name the mode in the device line and report.json, and stay
# within their bounds of fp32 (bf16x6: 1e-5, fp32's own accuracy); without AMX
# they compute in fp32 and say so. The config takes them with backend cpu and
# still refuses other values (and the modes on cuda-emu) at FILE:LINE:COL.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
G="$SL_SRC/tests/golden/roformer"
in_tmp_dir

mkdir -p in
gen_tone in/a.wav 0.5 44100 2 pcm_s16le
f32_job job.yaml bs_roformer <<JOB
  weights: $G/bs_stereo_1stem.safetensors
embedding:
  model: none
runtime:
  backend: cpu
JOB

run_sl run job.yaml --quiet --set output.dir=fp32
expect_status 0 "fp32 (default)"
SL_CPU_AMX=0 run_sl run job.yaml --quiet --set output.dir=fp32-noamx
expect_status 0 "fp32 with SL_CPU_AMX=0"
for p in tf32 bf16 bf16x6; do
  run_sl run job.yaml --set output.dir=$p --set runtime.precision=$p
  expect_status 0 "runtime.precision $p on cpu"
  cp "$ERR" $p.log
  SL_CPU_AMX=0 run_sl run job.yaml --set output.dir=$p-noamx --set runtime.precision=$p
  expect_status 0 "runtime.precision $p on cpu with SL_CPU_AMX=0"
  expect_grep "runtime.precision $p does not apply on this CPU" "$ERR" "the fp32 fallback is said"
  expect_grep "precision fp32 ($p asked for" "$ERR" "the device line names the mode in effect"
done
export PYTHONPATH=$T
py_check "fp32 is AMX-independent to the byte; tf32 / bf16 within bounds on AMX, fp32 (said) without" <<'PY'
import json, glob, numpy as np
from sl_check import raw
def say(line):
    with open("figures.txt", "a") as fig:
        fig.write(line + "\n")
files = sorted(glob.glob("fp32/stems/*/*.wav"))
assert len(files) == 2, files
for f in files:
    assert open(f, "rb").read() == open(f.replace("fp32/", "fp32-noamx/"), "rb").read(), f
assert json.load(open("fp32/report.json"))["precision"] == "fp32"
for p, tol in (("tf32", 1e-4), ("bf16", 1e-2), ("bf16x6", 1e-5)):
    rep = json.load(open(f"{p}-noamx/report.json"))
    assert rep["precision"] == "fp32" and f"fp32 ({p} asked for" in rep["device"], (p, rep["precision"], rep["device"])
    for f in files:  # exact fp32 when the tiles are off
        assert open(f, "rb").read() == open(f.replace("fp32/", f"{p}-noamx/"), "rb").read(), (p, f)
    rep = json.load(open(f"{p}/report.json"))
    if rep["precision"] == "fp32":
        assert f"fp32 ({p} asked for" in rep["device"], rep["device"]
        say(f"SKIPPED: {p} bounds (no AMX-BF16 tiles on this CPU: {rep['device']})")
        continue
    assert rep["precision"] == p and f"precision {p} (gemm as" in rep["device"], (p, rep["precision"], rep["device"])
    assert f"precision {p} (gemm as" in open(f"{p}.log").read(), p
    worst = 0.0
    for f in files:
        a, g = raw(f), raw(f.replace("fp32/", f"{p}/"))
        assert a.shape == g.shape, (p, f)
        worst = max(worst, np.abs(a - g).max() / np.abs(a).max())
    say(f"{p} on AMX: stems max |d| / peak to fp32 {worst:.3g} (tol {tol:g})")
    assert 0 < worst <= tol, (p, worst)
PY
cat figures.txt 2>/dev/null

# the config: tf32 / bf16 accepted with backend cpu (above); other values refused at the key's line
cat > bad.yaml <<YAML
input: {paths: [in]}
output: {dir: out-bad}
runtime:
  backend: cpu
  precision: fp16
YAML
run_sl run bad.yaml
expect_status 2 "runtime.precision fp16"
expect_grep "bad.yaml:5:14: key 'runtime.precision'" "$ERR" "the error points at the value"
sed -i 's/fp16/bf16/; s/backend: cpu/backend: cuda-emu/' bad.yaml
run_sl run bad.yaml
expect_status 2 "runtime.precision bf16 on cuda-emu"
expect_grep "bad.yaml:5:3: key 'runtime.precision'" "$ERR" "the error points at the precision line"
expect_grep "backend cuda-emu computes in fp32 only" "$ERR" "and says why"
sed -i 's/precision: bf16/precision: bf16x6/' bad.yaml
run_sl run bad.yaml
expect_status 2 "runtime.precision bf16x6 on cuda-emu"
expect_grep "bad.yaml:5:3: key 'runtime.precision'" "$ERR" "the error points at the precision line (bf16x6)"
finish
