#!/usr/bin/env bash
# runtime.precision end to end on the real backend's host code (stemline-cudamock,
# cuBLASLt replaced by the stand-in that rounds the operands as the mode does):
# the Open-Unmix + Cnn14 job of cudamock.job (small random-weight models) at
# fp32, tf32 and bf16. fp32 written out is the default, byte for byte; tf32 and
# bf16 name the mode in the device line and report.json and stay within the
# stated tolerances of fp32 (kernels/README.md, "Precision modes"); the CPU
# backend refuses them with the YAML line.
set -u
: "${SL_SRC:?SL_SRC must point at the source tree}"
source "$(dirname "$0")/mock_lib.sh"
nn_yaml nn-default

run_mock run nn.yaml --quiet --backend cuda
expect_status 0 "umx + cnn14 on cuda (cudamock), no runtime.precision"
run_mock run nn.yaml --quiet --backend cuda --set output.dir=nn-fp32 --set runtime.precision=fp32
expect_status 0 "the same with runtime.precision fp32"
for p in tf32 bf16; do
  run_mock run nn.yaml --backend cuda --set output.dir=nn-$p --set runtime.precision=$p
  expect_status 0 "umx + cnn14 on cuda (cudamock) in $p"
  expect_grep "precision $p (gemm on cuBLASLt" "$ERR" "the device line names $p"
done

py_check "fp32 is the default byte for byte; tf32 and bf16 within their tolerances of fp32" <<'PY'
import glob, json
import numpy as np
from sl_check import raw
files = sorted(glob.glob("nn-default/stems/*/*.wav"))
assert len(files) == 8, files
for f in files + glob.glob("nn-default/embeddings/cnn14/mix/*.npy"):
    assert open(f, "rb").read() == open(f.replace("nn-default", "nn-fp32"), "rb").read(), f
assert json.load(open("nn-fp32/report.json"))["precision"] == "fp32"
X = np.load("nn-default/embeddings/cnn14/mix/shard-00000.npy")
# tolerances (kernels/README.md): stems max |d| / peak, vectors cosine
tol = {"tf32": (2e-3, 0.99999), "bf16": (2e-2, 0.9995)}
for p, (t_stem, t_cos) in tol.items():
    rep = json.load(open(f"nn-{p}/report.json"))
    assert rep["precision"] == p and f"precision {p}" in rep["device"], (p, rep["precision"], rep["device"])
    assert len(rep["ok"]) == 2 and not rep["failed"], rep["failed"]
    worst = 0.0
    for f in files:
        a, g = raw(f), raw(f.replace("nn-default", f"nn-{p}"))
        assert a.shape == g.shape, (p, f)
        worst = max(worst, np.abs(a - g).max() / max(np.abs(a).max(), 1e-9))
    Y = np.load(f"nn-{p}/embeddings/cnn14/mix/shard-00000.npy")
    cos = min(float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))) for x, y in zip(X, Y))
    with open("figures.txt", "a") as fig:
        fig.write(f"  {p}: stems max |d|/peak {worst:.3g} (tol {t_stem:g}), vectors min cosine to fp32 {cos:.7f} (tol {t_cos})\n")
    assert 0 < worst <= t_stem, (p, worst)
    assert cos >= t_cos, (p, cos)
PY
cat figures.txt 2>/dev/null

# The emulation computes in fp32 only: tf32 / bf16 with backend cuda-emu is a config error at the key's
# line (the CPU's modes: cli.precision_cpu).
cat > emu.yaml <<YAML
input: {paths: [in]}
output: {dir: out-emu}
runtime:
  backend: cuda-emu
  precision: bf16
YAML
run_sl run emu.yaml
expect_status 2 "backend cuda-emu with runtime.precision bf16"
expect_grep "emu.yaml:5:3: key 'runtime.precision'" "$ERR" "the error points at the precision line"
expect_grep "backend cuda-emu computes in fp32" "$ERR" "and says why"
# backend auto where no GPU answers (the ordinary binary here): the CPU runs the job, in bf16 on AMX tiles
# or else in fp32 with one warning, and report.json records what it computed in
cat > auto.yaml <<YAML
input: {paths: [in]}
output: {dir: out-auto}
separation: {model: none}
embedding: {model: melstats, window_seconds: 1}
runtime: {backend: auto, precision: bf16}
YAML
run_sl run auto.yaml
if grep -q '"backend": "cpu"' out-auto/report.json 2>/dev/null || [ "$STATUS" != 0 ]; then
  expect_status 0 "backend auto with runtime.precision bf16 on a machine without a GPU"
  if grep -q '"precision": "fp32"' out-auto/report.json; then
    expect_grep "runtime.precision bf16 does not apply on this CPU" "$ERR" "the fallback to fp32 is said"
  else
    expect_grep '"precision": "bf16"' out-auto/report.json "report.json records bf16 on AMX"
  fi
fi
finish
