#!/usr/bin/env bash
# The CLAP audio tower at full size (HTSAT-base: spec 256, widths 128..1024,
# depths 2,2,12,2, 64 mels, projection 1024 -> 512; random weights) against the
# laion_clap package on 10 s of audio and on a 0.83 s window (repeat padding):
# the mean token and the normalised embeddings within 1e-4 of the reference's
# largest value. Label `slow` (needs torch + laion-clap: the python of
# $SL_CLAP_PYTHON, default the bench venv; exits 77 = skipped without them).
set -u
: "${SL_SRC:?}" "${SL_BUILD:?}"
PY=${SL_CLAP_PYTHON:-$SL_SRC/bench/.venv-torch/bin/python}
if ! "$PY" -c 'import torch, torchlibrosa, importlib.util as u; assert u.find_spec("laion_clap")' 2>/dev/null; then
  echo "skipped: no python with torch, torchlibrosa and laion-clap (set SL_CLAP_PYTHON; see tools/gen_golden_clap.py)"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/tests/golden"
"$PY" "$SL_SRC/tools/gen_golden_clap.py" --full "$tmp/tests/golden/clap-full" || exit 1
SL_SRC=$tmp exec "$SL_BUILD/test_clap_audio" --full
