#!/usr/bin/env bash
# Creates bench/.venv-torch (PyTorch 2.x from PyPI, bench/requirements-torch.txt) for the
# model-only baselines, plus the reference model packages without their dependencies
# (openunmix 1.3.0, panns_inference 0.1.1, torchlibrosa 0.1.0, librosa for torchlibrosa's
# filter banks), and the HT-Demucs / RoFormer / CLAP references (bench/requirements-refs.txt,
# --no-deps, with transformers and its own requirements). Prints the venv's python on success.
# Idempotent: an existing venv whose torch and references import is kept; one that lacks only
# the references gets them.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=bench/.venv-torch
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
refs() {
  "$VENV/bin/pip" install -q --no-deps -r bench/requirements-refs.txt >&2
  "$VENV/bin/pip" install -q "transformers>=4.30" >&2
}
have_refs() {
  "$VENV/bin/python" -c "import importlib.util as u; assert all(u.find_spec(m) for m in ('demucs', 'laion_clap', 'bs_roformer', 'transformers', 'h5py'))" 2>/dev/null
}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import importlib.util as u, torch, librosa; assert all(u.find_spec(m) for m in ('openunmix', 'panns_inference', 'torchlibrosa'))" 2>/dev/null; then
  have_refs || { echo "torch_venv.sh: adding the reference packages to $VENV" >&2; refs; }
  echo "$VENV/bin/python"
  exit 0
fi
echo "torch_venv.sh: creating $VENV (torch from PyPI: a large download)" >&2
"$PY" -m venv --system-site-packages "$VENV" >&2
"$VENV/bin/pip" install -q -r bench/requirements-torch.txt >&2
"$VENV/bin/pip" install -q --no-deps openunmix==1.3.0 panns-inference==0.1.1 torchlibrosa==0.1.0 >&2
"$VENV/bin/pip" install -q -r bench/requirements-dsp.txt >&2
refs
echo "$VENV/bin/python"
