#!/usr/bin/env bash
# LAION-CLAP text tower at full size (RoBERTa-base: 12 layers x 768 x 12 heads,
# 3072, 50265 tokens, 514 positions; 512-d projection; random weights) against
# the laion-clap package (tools/gen_golden_clap_text.py encoder --full): every
# stage within 1e-4 relative on the CPU (tests/unit/test_clap_text.c with
# CLAP_TEXT_GOLDEN). Label `slow`. Needs a python with torch, transformers,
# tokenizers and laion-clap: CLAP_PYTHON (default $SL_SRC/bench/.venv-torch/bin/python);
# exits 77 (skipped) without one.
set -u
: "${SL_SRC:?}" "${SL_BUILD:?}"
PY="${CLAP_PYTHON:-$SL_SRC/bench/.venv-torch/bin/python}"
# find_spec, not import: importing laion_clap asks the model hub for tokenizers
if ! "$PY" -c 'import torch, transformers, tokenizers, importlib.util as u; assert u.find_spec("laion_clap")' \
    2>/dev/null; then
  echo "skipped: no python with torch, transformers, tokenizers and laion-clap (set CLAP_PYTHON)"
  exit 77
fi
dir=$(mktemp -d "${TMPDIR:-/tmp}/clap-text-full.XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$PY" "$SL_SRC/tools/gen_golden_clap_text.py" encoder --full "$dir" || exit 1
CLAP_TEXT_GOLDEN="$dir" "$SL_BUILD/test_clap_text"
