#!/usr/bin/env bash
# BS-RoFormer and Mel-Band RoFormer at full size (dim 384; BS: depth 8, 4 stems,
# 62 bands; Mel: depth 6, 60 mel bands, 1 stem; n_fft 2048, hop 441; random
# weights) against the bs-roformer 0.3.10 package on 1 s of stereo audio, the
# reference in float64: every stem within 1e-4 of the reference's largest
# sample. Label `slow`. Needs a python with torch, bs-roformer==0.3.10 and
# librosa: ROFORMER_PYTHON (default $SL_SRC/bench/.venv-torch/bin/python); exits 77
# (skipped) without one.
set -u
: "${SL_SRC:?}" "${SL_BUILD:?}"
PY="${ROFORMER_PYTHON:-$SL_SRC/bench/.venv-torch/bin/python}"
if ! "$PY" -c 'import torch, bs_roformer, librosa' 2>/dev/null; then
  echo "skipped: no python with torch, bs-roformer and librosa (set ROFORMER_PYTHON; see bench/bench_roformer.py)"
  exit 77
fi
rc=0
for arch in bs mel; do
  "$PY" "$SL_SRC/bench/bench_roformer.py" --arch $arch --seconds 1 --threads 2 --repeat 1 --check \
    --bin "$SL_BUILD/bench_umx" || rc=1
done
exit $rc
