#!/usr/bin/env bash
# The same job on the CPU backend and on the CUDA code path (cuda-emu: the
# CUDA kernels run through the CPU launch emulation; FFTs use the CPU library)
# gives the same stems and vectors within the parity tolerances. On a machine
# with a GPU the real backend is compared too.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir
mkdir in
gen_tone in/x.wav 2.5 44100 2 pcm_s16le
gen_tone in/y.flac 1.5 48000 1 flac
cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out-cpu, stems: {format: wav, sample_format: f32}}
separation: {model: hpss}
embedding: {model: melstats, window_seconds: 1}
YAML
backends="cpu cuda-emu"
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then backends="$backends cuda"; fi
for b in $backends; do
  run_sl run job.yaml --quiet --backend "$b" --set output.dir="out-$b"
  expect_status 0 "job on backend $b"
done
for b in $backends; do
  [ "$b" = cpu ] && continue
  B=$b py_check "backend $b matches the CPU" <<'PY'
import glob, os, json, numpy as np
b = os.environ["B"]
from sl_check import raw
files = sorted(glob.glob("out-cpu/stems/*/*.wav"))
assert len(files) == 6, files
for f in files:
    a, g = raw(f), raw(f.replace("out-cpu", f"out-{b}"))
    assert a.shape == g.shape, f
    err = np.abs(a - g).max() / max(np.abs(a).max(), 1e-9)
    assert err <= 1e-5, (f, err)   # parity tolerance of the STFT/iSTFT chain
rep = json.load(open(f"out-{b}/report.json"))
assert rep["backend"] == b, rep["backend"]
X = np.load("out-cpu/embeddings/melstats/mix/shard-00000.npy")
Y = np.load(f"out-{b}/embeddings/melstats/mix/shard-00000.npy")
assert X.shape == Y.shape and np.abs(X - Y).max() <= 1e-5, np.abs(X - Y).max()
PY
done
finish
