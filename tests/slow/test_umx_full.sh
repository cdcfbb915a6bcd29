#!/usr/bin/env bash
# Open-Unmix at full umxhq size (hidden 512, n_fft 4096, max_bin 1487, random
# weights) against the official openunmix package on 5 s of audio: every stem
# within 1e-3 of the reference's largest sample (measured ~4e-7). Label `slow`
# (needs python3-torch and openunmix; exits 77 = skipped without them).
set -u
: "${SL_SRC:?}" "${SL_BUILD:?}"
PY=/usr/bin/python3
if ! "$PY" -c 'import sys, types; sys.modules["torchaudio"] = types.ModuleType("torchaudio"); import torch, openunmix.model' 2>/dev/null; then
  echo "skipped: python3-torch / openunmix not installed (see tools/gen_golden_umx.py)"
  exit 77
fi
exec "$PY" "$SL_SRC/bench/bench_umx.py" --seconds 5 --threads 2 --repeat 1 --check --bench-bin "$SL_BUILD/bench_umx"
