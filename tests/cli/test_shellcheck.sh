#!/usr/bin/env bash
# shellcheck (Debian's, installed by scripts/deps.sh test) passes on every shell
# script stemline ships: .ci/run, scripts/, configs/ (the Slurm array script and
# the demo), bench/ (the benchmark and GPU-check drivers), and any other file
# there whose first line names sh or bash.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
if ! command -v shellcheck >/dev/null; then
  fail "shellcheck not found: install it (make test-deps, Debian package shellcheck)"
  finish
  exit 1
fi
cd "$SL_SRC"
scripts=(.ci/run)
for f in scripts/* configs/* bench/*; do
  [ -f "$f" ] || continue
  case $f in *.sh) scripts+=("$f"); continue ;; esac
  head -1 "$f" | grep -qE '^#!.*[/ ](ba)?sh( |$)' && scripts+=("$f")
done
[ ${#scripts[@]} -ge 8 ] && pass || fail "expected the shipped scripts, found only: ${scripts[*]}"
for f in "${scripts[@]}"; do
  if shellcheck -x "$f" >"$OUT" 2>&1; then pass; else
    fail "shellcheck $f"; sed 's/^/    /' "$OUT" | head -40 >&2
  fi
done
finish
