#!/usr/bin/env bash
# A quiet console: with backend auto, the line about the CUDA device (none
# usable, or the GPU taken) is printed at most once per run, and by `search`
# only with -v (without it, search prints no info line at all); every option
# that `run --help` and `export --help` list is in the README.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
in_tmp_dir
gen_pitch in/a.wav 1.5 300
gen_pitch in/b.wav 1.2 700
cat > job.yaml <<EOF
input: {paths: [in]}
output: {dir: out}
separation: {model: hpss}
embedding: {model: melstats, sources: [mix, harmonic]}
runtime: {backend: auto, decode_threads: 2}
EOF
run_sl run job.yaml
expect_status 0 "the job"
n=$(grep -c 'backend auto:' "$ERR")
[ "$n" -le 1 ] && pass || fail "run printed the backend line $n times"
run_sl search out --id a.wav
expect_status 0 "search"
if grep -q 'info:' "$ERR"; then fail "search printed info lines without -v: $(cat "$ERR")"; else pass; fi
run_sl search out --id a.wav -v
expect_status 0 "search -v"
expect_grep "backend auto:" "$ERR" "search -v says which backend it took"

for cmd in run export; do
  "$STEMLINE" "$cmd" --help >"$OUT"
  for o in $(grep -oE '^  (-[a-z], )?--[a-z-]+' "$OUT" | grep -oE -- '--[a-z-]+' | grep -v -- '--help'); do
    grep -q -- "$o" "$SL_SRC/README.md" && pass || fail "stemline $cmd $o is not in README.md"
  done
done
finish
