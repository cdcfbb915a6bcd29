#!/usr/bin/env bash
# Usage and configuration errors through the CLI: exit 2, FILE:LINE:COLUMN and
# the key in the message, nothing processed; --help and --version answer.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir
mkdir in
gen_tone in/x.wav 1 44100 2 pcm_s16le

run_sl --version
expect_status 0 "--version"
expect_grep "stemline " "$OUT" "--version prints the name"
for sub in "" run inspect models; do
  run_sl $sub --help
  expect_status 0 "$sub --help"
done
run_sl run --help
expect_grep "--shard I/N" "$OUT" "run --help documents --shard"
expect_grep "exit status" "$OUT" "run --help documents exit statuses"

run_sl frobnicate
expect_status 2 "unknown command"
run_sl run
expect_status 2 "run without a job"
run_sl run nosuch.yaml
expect_status 2 "missing job file"
expect_grep "nosuch.yaml" "$ERR" "missing job file is named"

printf 'input:\n  paths: [in]\noutput:\n  dir: out\n  stemz:\n    format: wav\n' > unknown.yaml
run_sl run unknown.yaml
expect_status 2 "unknown key"
expect_grep "unknown.yaml:5:3" "$ERR" "unknown key location"
expect_grep "output.stemz" "$ERR" "unknown key named"
[ ! -e out ] || fail "config error still processed something"

printf 'input:\n  paths: [in]\nruntime:\n  decode_threads: lots\n' > type.yaml
run_sl run type.yaml
expect_status 2 "wrong type"
expect_grep "type.yaml:4:19" "$ERR" "wrong type location"
expect_grep "runtime.decode_threads" "$ERR" "wrong type key named"

printf 'input:\n  paths: [in]\nruntime:\n  decode_threads: 0\n' > range.yaml
run_sl run range.yaml
expect_status 2 "out of range"
expect_grep "range.yaml:4:19" "$ERR" "out of range location"

printf 'input:\n  paths: [in]\noutput:\n  stems:\n    format: flac\n    sample_format: f32\n' > f32flac.yaml
run_sl run f32flac.yaml
expect_status 2 "f32 with flac"
expect_grep "f32flac.yaml:6" "$ERR" "f32 with flac location"

printf 'input:\n  paths: [in\n' > syntax.yaml
run_sl run syntax.yaml
expect_status 2 "yaml syntax"
expect_grep "syntax.yaml:" "$ERR" "syntax error names the file"

printf 'input:\n  paths: [in]\nseparation:\n  model: hpss\n  options:\n    kernel_harmonic: 4\n' > opt.yaml
run_sl run opt.yaml
expect_status 2 "bad model option"
expect_grep "opt.yaml:6" "$ERR" "model option location"
expect_grep "kernel_harmonic" "$ERR" "model option named"

printf 'input:\n  paths: [in]\noutput:\n  dir: out\n' > ok.yaml
run_sl run ok.yaml --set runtime.decode_thread=3
expect_status 2 "--set unknown key"
expect_grep "runtime.decode_thread" "$ERR" "--set unknown key named"
run_sl run ok.yaml --set 'input.paths=[in, nowhere]'
expect_status 2 "missing input path"
expect_grep "nowhere" "$ERR" "missing input named"
run_sl run ok.yaml --shard 3/3
expect_status 2 "bad shard"
run_sl run ok.yaml --backend tpu
expect_status 2 "bad backend"
run_sl run ok.yaml --bogus
expect_status 2 "unknown option"

# --set reads YAML: a list override works end to end in a dry run
mkdir in2
gen_tone in2/y.flac 1 44100 2 flac
run_sl run ok.yaml --dry-run --set 'input.paths=[in, in2]'
expect_status 0 "list override"
expect_grep "x.wav" "$OUT" "list override keeps in"
expect_grep "y.flac" "$OUT" "list override adds in2"

# no GPU here: --backend cuda is a clear error, not a crash (skip where a GPU answers)
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  run_sl run ok.yaml --backend cuda --quiet
  expect_status 2 "cuda without a device (permanent)"
  [ -s "$ERR" ] && pass || fail "cuda without a device printed no reason"
fi
finish
