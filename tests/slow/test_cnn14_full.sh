#!/usr/bin/env bash
# PANNs Cnn14 at full size (channels 64..2048, 527 classes, random weights and
# batch-norm statistics) against the official panns_inference Cnn14 on 5 s of
# audio: the 2048-d embedding and the 527 scores within 1e-3 of the
# reference's largest value (measured ~5e-7). Label `slow` (needs python3-torch,
# panns_inference and torchlibrosa; exits 77 = skipped without them).
set -u
: "${SL_SRC:?}" "${SL_BUILD:?}"
PY=/usr/bin/python3
# the packages are found, not imported: tools/gen_golden_cnn14.py imports them
# its own way (librosa here or through LIBROSA_PYTHON)
if ! "$PY" -c 'import torch, importlib.util as u; assert u.find_spec("torchlibrosa") and u.find_spec("panns_inference")' 2>/dev/null; then
  echo "skipped: python3-torch / panns_inference / torchlibrosa not installed (see tools/gen_golden_cnn14.py)"
  exit 77
fi
if ! "$PY" -c 'import librosa' 2>/dev/null &&
   ! "${LIBROSA_PYTHON:-$SL_SRC/bench/.venv-torch/bin/python}" -c 'import librosa' 2>/dev/null; then
  echo "skipped: no librosa for torchlibrosa (install it, or set LIBROSA_PYTHON to a python that has it)"
  exit 77
fi
exec "$PY" "$SL_SRC/bench/bench_cnn14.py" --seconds 5 --threads 2 --repeat 1 --check --bin "$SL_BUILD/bench_cnn14"
