#!/usr/bin/env bash
# separation.model htdemucs through `stemline run` equals what the `demucs`
# command computes before it writes files (tools/gen_golden_htdemucs.py: the
# package's apply_model with split=True, overlap 0.25, shifts 0, on the track
# normalised by the mean and std of its mono sum, in float64): the small and
# bottom random-weight models of tests/golden/htdemucs, their golden tracks
# written as 32-bit float WAV at the models' 8 kHz, 32-bit float stems, every
# stem within 1e-4 of the reference's largest sample; the small model's track
# again in a job with another track beside it (its output does not depend on
# its neighbour). The bag of tests/golden/htdemucs/bag (three models and a
# weights matrix, made by tools/gen_golden_htdemucs_bag.py with
# tools/convert_htdemucs.py --bag) against the package's BagOfModels through
# apply_model, with shifts 0, with options shifts 2 (the default offsets; the
# package's random offsets forced to them) and shift_offsets 0,4000,1234; a
# rerun with shifts gives the same bytes. Also: segment_seconds is refused for
# this model (it cuts tracks as demucs does), the overlap option changes the
# output, and an unknown option is a config error.
set -u
source "$(dirname "$0")/lib.sh"
SRC=${SL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
in_tmp_dir

for c in small bottom bag; do
  mkdir -p "in_$c"
  GOLD="$SRC/tests/golden/htdemucs/$c.slg" OUTWAV="in_$c/track.wav" py_check "golden track of $c as WAV" <<'PY'
import os, struct
import numpy as np
def slg(path):
    b = open(path, "rb").read()
    head, _, data = b.partition(b"end\n")
    arrays, off = {}, 0
    for line in head.decode().splitlines():
        if line.startswith("array "):
            name, *dims = line.split()[1:]
            dims = [int(d) for d in dims]
            n = int(np.prod(dims))
            arrays[name] = np.frombuffer(data[off:off + 4 * n], "<f4").reshape(dims)
            off += 4 * n
    return arrays
a = slg(os.environ["GOLD"])
x = np.ascontiguousarray(a["track"].T)  # frames x channels
with open(os.environ["OUTWAV"], "wb") as f:
    data = x.astype("<f4").tobytes()
    f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
            struct.pack("<IHHIIHH", 16, 3, x.shape[1], 8000, 8000 * 4 * x.shape[1], 4 * x.shape[1], 32) +
            b"data" + struct.pack("<I", len(data)) + data)
PY
done

check_stems() { # NAME, env GOLD OUTDIR [TRACK] [ARR]: every stem within 1e-4 of the golden's largest sample
  py_check "$1" <<'PY'
import glob, os
import numpy as np
from sl_check import raw
def slg(path):
    b = open(path, "rb").read()
    head, _, data = b.partition(b"end\n")
    arrays, off = {}, 0
    for line in head.decode().splitlines():
        if line.startswith("array "):
            name, *dims = line.split()[1:]
            dims = [int(d) for d in dims]
            n = int(np.prod(dims))
            arrays[name] = np.frombuffer(data[off:off + 4 * n], "<f4").reshape(dims)
            off += 4 * n
    return arrays
ref = slg(os.environ["GOLD"])[os.environ.get("ARR", "apply")]  # [S][C][n]
names = ["drums", "bass", "other", "vocals"] if ref.shape[0] == 4 else ["drums", "bass", "guitar"]
for s, name in enumerate(names):
    f = glob.glob(os.path.join(os.environ["OUTDIR"], "**", os.environ.get("TRACK", "track.wav"), name + ".wav"),
                  recursive=True)
    assert len(f) == 1, (name, f)
    y = raw(f[0], ch=2).T
    assert y.shape == ref[s].shape, (y.shape, ref[s].shape)
    e = np.abs(y - ref[s]).max() / np.abs(ref[s]).max()
    print(name, e)
    assert e < 1e-4, (name, e)
PY
}

job() { # NAME WEIGHTS EXTRA
  printf '%s\n' "input: {paths: [$4]}" "output: {dir: $1, stems: {format: wav, sample_format: f32}}" \
    "separation: {model: htdemucs, weights: $2$3}" "embedding: {model: none}" "runtime: {backend: cpu}" > "$1.yaml"
}
mkdir in_two
cp in_small/track.wav in_two/a.wav
cp in_bottom/track.wav in_two/b.wav
for c in small bottom two; do
  w=$c
  [ $c = two ] && w=small
  job "out_$c" "$SRC/tests/golden/htdemucs/$w.safetensors" "" "in_$c"
  run_sl run "out_$c.yaml" --quiet
  expect_status 0 "a job with the $w model ($c)"
  tr=track.wav
  [ $c = two ] && tr=a.wav
  GOLD="$SRC/tests/golden/htdemucs/$w.slg" OUTDIR="out_$c" TRACK=$tr check_stems "$c: stems equal the demucs command's"
done

# the bag, without and with shifts
for c in apply:"" apply_s2:", options: {shifts: 2}" apply_s3:", options: {shift_offsets: '0, 4000, 1234'}"; do
  a=${c%%:*}
  job "out_$a" "$SRC/tests/golden/htdemucs/bag.safetensors" "${c#*:}" in_bag
  run_sl run "out_$a.yaml" --quiet
  expect_status 0 "the bag ($a)"
  GOLD="$SRC/tests/golden/htdemucs/bag.slg" ARR=$a OUTDIR="out_$a" check_stems "bag: stems equal BagOfModels' ($a)"
done
job out_again "$SRC/tests/golden/htdemucs/bag.safetensors" ", options: {shifts: 2}" in_bag
run_sl run out_again.yaml --quiet
expect_status 0 "the bag with shifts again"
for s in drums bass other vocals; do
  cmp -s "$(find out_again -name $s.wav)" "$(find out_apply_s2 -name $s.wav)" && pass || fail "shifts: $s differs on a rerun"
done
cmp -s "$(find out_apply -name drums.wav)" "$(find out_apply_s2 -name drums.wav)" && fail "shifts 2 gave the stems of shifts 0" || pass


# the thread split: HT-Demucs gets no more CPU workers than tracks (the threads
# of the others go inside the ops): one track at 2 threads is one worker of 2
# op threads, with the bytes of 1 thread; two tracks are two workers; an
# explicit runtime.model_workers is kept
split() { # OUTDIR WORKERS OP_THREADS
  OUTDIR=$1 W=$2 P=$3 py_check "$1: $2 worker(s) of $3 op thread(s)" <<'PY'
import json, os
p = json.load(open(os.path.join(os.environ["OUTDIR"], "report.json")))["pipeline"]
assert p["workers"] == int(os.environ["W"]) and p["op_threads"] == int(os.environ["P"]), p
assert (p["workers_reason"].startswith("auto: one per track of htdemucs")) == (os.environ["OUTDIR"] == "out_t2"), p
PY
}
for c in t1:small:1 t2:small:2 t2two:two:2 t2w2:small:2; do
  IFS=: read -r o in th <<<"$c"
  w=$SRC/tests/golden/htdemucs/small.safetensors
  job "out_$o" "$w" "" "in_$in"
  extra=
  [ "$o" = t2w2 ] && extra="--set runtime.model_workers=2"
  run_sl run "out_$o.yaml" --quiet --set runtime.threads="$th" $extra
  expect_status 0 "threads $th on in_$in ($o)"
done
split out_t1 1 1
split out_t2 1 2
split out_t2two 2 1
split out_t2w2 2 1
for s in drums bass other vocals; do
  for o in out_t2 out_t2w2; do
    cmp -s "$(find $o -name $s.wav)" "$(find out_t1 -name $s.wav)" && pass || fail "$o: $s differs from 1 thread's"
  done
done
GOLD="$SRC/tests/golden/htdemucs/small.slg" OUTDIR=out_t2 check_stems "threads 2, one worker: stems equal the demucs command's"

# the option and the refusals
job out_ov "$SRC/tests/golden/htdemucs/small.safetensors" ", options: {overlap: 0.5}" in_small
run_sl run out_ov.yaml --quiet
expect_status 0 "overlap 0.5"
cmp -s "$(find out_ov -name drums.wav)" "$(find out_small -name drums.wav)" && fail "overlap 0.5 gave the same stems" || pass
job out_bad "$SRC/tests/golden/htdemucs/small.safetensors" ", options: {shift: 2}" in_small
run_sl run out_bad.yaml --quiet
expect_status 2 "an unknown option"
expect_grep "shift" "$ERR" "the option named"
printf '%s\n' "input: {paths: [in_small]}" "output: {dir: out_seg}" \
  "separation: {model: htdemucs, weights: $SRC/tests/golden/htdemucs/small.safetensors, segment_seconds: 2}" \
  "embedding: {model: none}" > seg.yaml
run_sl run seg.yaml --quiet
expect_status 2 "segment_seconds with htdemucs"
expect_grep "segment_seconds" "$ERR" "the key named"
finish
