#!/usr/bin/env bash
# HT-Demucs v4 at the released htdemucs dimensions (channels 48, depth 4, nfft
# 4096, 5 transformer layers of width 384, segment 39/5 s; random weights,
# tools/gen_golden_htdemucs.py --full) on a 30 s stereo track: the whole-track
# output of the `demucs` command (mono mean/std normalisation,
# apply_model(split=True, overlap=0.25, shifts=0), the reference in float64)
# against the model through pipeline/demucs_split.h on the CPU, every stem within 1e-4 of the
# reference's largest sample. Label `slow`. Needs a python with torch and
# demucs: HTDEMUCS_PYTHON (default the shared bench venv); exits 77 (skipped)
# without one. Arguments go to the golden script (test_htdemucs_shifts.sh passes
# --shifts and --seconds).
set -u
: "${SL_SRC:?}" "${SL_BUILD:?}"
PY="${HTDEMUCS_PYTHON:-$SL_SRC/bench/.venv-torch/bin/python}"
if ! "$PY" -c 'import torch, demucs.htdemucs' 2>/dev/null; then
  echo "skipped: no python with torch and demucs (set HTDEMUCS_PYTHON)"
  exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/tests/golden/full"
"$PY" "$SL_SRC/tools/gen_golden_htdemucs.py" --full "$T/tests/golden/full" "$@" || exit 1
SL_SRC="$T" SL_HTDEMUCS_FULL=full SL_HTDEMUCS_THREADS="${SL_HTDEMUCS_THREADS:-2}" "$SL_BUILD/test_htdemucs"
