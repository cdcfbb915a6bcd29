#!/usr/bin/env bash
# Inputs and surroundings that must not hang, stop or poison a run: FIFOs and
# devices as inputs (path, manifest line, search --audio), an unreadable
# subfolder, a symbolic link loop, NaN samples, a truncated file, a decoder
# stalled when the first SIGINT comes, a closed log pipe, an output
# that turns read-only or loses its permission; a failed track leaves no file
# under a final name; permanent errors exit 2.
set -u
source "$(dirname "$0")/lib.sh"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
chmod 755 "$T"
cd "$T"

# as_nobody CMD...: root reads every folder whatever its mode, so the
# permission cases run as nobody
as_nobody() {
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; else "$@"; fi
}

mkdir -p in
gen_tone in/a.wav 3 44100 2 pcm_s16le
gen_tone in/b.flac 2 44100 2 flac
cat > job.yaml <<EOF
input:
  paths: [in]
output:
  dir: out
separation:
  model: hpss
embedding:
  model: melstats
  window_seconds: 1
runtime:
  decode_threads: 2
EOF

# ---- a FIFO as an input path and on a manifest line: that track fails at once ----
mkfifo pipe.wav
printf 'in/a.wav\npipe.wav\n' > list.txt
timeout 60 "$STEMLINE" run job.yaml --quiet --set 'input.paths=[in, pipe.wav]' --set output.dir=out-fifo >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 3 "FIFO as an input path"
expect_grep "pipe.wav: not a regular file (a named pipe)" "$ERR" "FIFO reason"
timeout 60 "$STEMLINE" run job.yaml --quiet --set 'input.paths=[]' --set input.manifest=list.txt \
  --set output.dir=out-fifo-m >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 3 "FIFO on a manifest line"
py_check "the FIFO track failed with its reason, the others are done" <<'EOF'
import json
for d, ok in (("out-fifo", 2), ("out-fifo-m", 1)):
    rep = json.load(open(f"{d}/report.json"))
    failed = {f["id"]: f["reason"] for f in rep["failed"]}
    assert list(failed) == ["pipe.wav"] and "not a regular file" in failed["pipe.wav"], failed
    assert rep["tracks"]["ok"] == ok, rep["tracks"]
EOF
# a FIFO named like audio inside a folder: skipped with a warning
mkfifo in/zz-pipe.wav
timeout 60 "$STEMLINE" run job.yaml --set output.dir=out-fifo-d >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "FIFO inside a folder"
expect_grep "zz-pipe.wav': not a regular file" "$ERR" "FIFO in a folder is named"
rm in/zz-pipe.wav
# search --audio on a FIFO and on a device
timeout 60 "$STEMLINE" search out-fifo --audio pipe.wav >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 1 "search --audio FIFO"
expect_grep "not a regular file" "$ERR" "search --audio FIFO reason"
timeout 60 "$STEMLINE" search out-fifo --audio /dev/zero >"$OUT" 2>"$ERR"
STATUS=$?
expect_grep "/dev/zero: not a regular file (a character device)" "$ERR" "search --audio device reason"

# ---- an unreadable subfolder: a warning naming it, the rest goes on ----
mkdir -p perm/in/locked perm/in/open
cp in/a.wav perm/in/locked/x.wav
cp in/a.wav perm/in/open/y.wav
ln -s self.wav perm/in/self.wav
chmod 000 perm/in/locked
chmod 777 perm
sed -e 's#paths: \[in\]#paths: [perm/in]#' -e 's#dir: out#dir: perm/out#' job.yaml > perm/job.yaml
as_nobody timeout 120 "$STEMLINE" run perm/job.yaml >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 0 "unreadable subfolder"
expect_grep "skipping folder 'perm/in/locked': Permission denied" "$ERR" "the unreadable folder is named"
expect_grep "self.wav': symbolic link loop" "$ERR" "a link loop is a loop"
if grep -q "broken symbolic link" "$ERR"; then fail "a link loop reported as a broken link"; else pass; fi
py_check "the readable part of the catalog was done" <<'EOF'
import json
rep = json.load(open("perm/out/report.json"))
assert [o["id"] for o in rep["ok"]] == ["open/y.wav"], rep["ok"]
EOF
# the unreadable folder as the input itself stays an error
as_nobody timeout 60 "$STEMLINE" run perm/job.yaml --set 'input.paths=[perm/in/locked]' >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 2 "unreadable input folder"
expect_grep "perm/in/locked" "$ERR" "the unreadable input is named"
chmod 755 perm/in/locked

# ---- a log reader that goes away does not kill the run ----
"$STEMLINE" run job.yaml -v --set output.dir=out-pipe 2>&1 | head -c 50 >/dev/null
st=${PIPESTATUS[0]}
[ "$st" -eq 0 ] && pass || fail "run with its log piped into head: exit $st"
py_check "the run behind a closed pipe finished" <<'EOF'
import json
rep = json.load(open("out-pipe/report.json"))
assert rep["tracks"]["ok"] == 2, rep["tracks"]
EOF

# ---- NaN/Inf samples become silence, counted in the report ----
mkdir -p nan
"$SL_PYTHON" - <<'EOF'
import struct, math
n, rate = 44100 * 2, 44100
x = [0.4 * math.sin(2 * math.pi * 330 * i / rate) for i in range(n)]
for i in range(0, n, 500):
    x[i] = float("nan") if i % 1000 else float("inf")
data = struct.pack("<%df" % n, *x)
hdr = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 3, 1, rate, rate * 4, 4, 32)
open("nan/n.wav", "wb").write(hdr + b"data" + struct.pack("<I", len(data)) + data)
EOF
run_sl run job.yaml --set 'input.paths=[nan]' --set output.dir=out-nan
expect_status 0 "NaN samples"
expect_grep "non-finite samples" "$ERR" "NaN samples are warned about"
py_check "NaN samples counted, stems finite" <<'EOF'
import json, numpy as np
from sl_check import raw
rep = json.load(open("out-nan/report.json"))
d = rep["ok"][0]["decode"]
assert d["nonfinite_samples"] >= 176 and rep["decode"]["nonfinite_samples"] == d["nonfinite_samples"], d
for s in ("harmonic", "percussive", "residual"):
    y = raw(f"out-nan/stems/n.wav/{s}.wav", 2, 44100)
    assert np.isfinite(y).all() and np.abs(y).max() > 0.01, s
EOF

# ---- a failure after the stems are in place removes them (and their folder) ----
SL_FAULT_EMBED_NONFINITE=b.flac run_sl run job.yaml --quiet --set output.dir=out-late
expect_status 3 "late failure"
py_check "the failed track left no stems, the other kept its own" <<'EOF'
import json, os
rep = json.load(open("out-late/report.json"))
failed = {f["id"]: f["reason"] for f in rep["failed"]}
assert list(failed) == ["b.flac"] and "not finite" in failed["b.flac"], failed
assert not os.path.exists("out-late/stems/b.flac"), os.listdir("out-late/stems/b.flac")
assert sorted(os.listdir("out-late/stems/a.wav")) == ["harmonic.wav", "percussive.wav", "residual.wav"]
EOF

# ---- honest decode results: a truncated file fails, unless the bar is lowered ----
mkdir -p cut
gen_tone cut/long.flac 10 44100 2 flac
head -c $(( $(stat -c %s cut/long.flac) / 4 )) cut/long.flac > cut/cut.flac && rm cut/long.flac
cp in/a.wav cut/
run_sl run job.yaml --quiet --set 'input.paths=[cut]' --set output.dir=out-cut
expect_status 3 "truncated file"
py_check "truncated file fails with what decoded; the good one records its decode" <<'EOF'
import json, re
rep = json.load(open("out-cut/report.json"))
f = rep["failed"][0]
assert f["id"] == "cut.flac" and re.search(r"decoded \d\.\d s of 10\.0 s \(truncated file\?\)", f["reason"]), f
assert f["decode"]["stated_seconds"] == 10.0 and f["decode"]["decoded_seconds"] < 4, f
d = rep["ok"][0]["decode"]
assert abs(d["decoded_seconds"] - 3) < 0.01 and abs(d["stated_seconds"] - 3) < 0.01 and d["corrupt_packets"] == 0, d
import sqlite3
dec = {i: json.loads(v) for i, v in sqlite3.connect("out-cut/ledger.sqlite").execute("select id, decode from tracks")}
assert dec["cut.flac"]["stated_seconds"] == 10.0 and dec["cut.flac"]["decoded_seconds"] < 4, dec
assert dec["a.wav"] == d, dec
EOF
run_sl run job.yaml --quiet --set 'input.paths=[cut]' --set output.dir=out-cut --set input.max_missing_fraction=1
expect_status 0 "truncated file with the check off"
printf 'input:\n  paths: [cut]\n  max_missing_fraction: 1.5\n' > bad-frac.yaml
run_sl run bad-frac.yaml --quiet
expect_status 2 "max_missing_fraction out of range"
expect_grep "bad-frac.yaml:3:" "$ERR" "the bad key is pointed at"
expect_grep "input.max_missing_fraction" "$ERR" "the bad key is named"

# ---- a first SIGINT stops a run whose decoder is stalled (no timeout set) ----
SL_FAULT_DECODE_HANG=b.flac "$STEMLINE" run job.yaml --quiet --set output.dir=out-stall >"$OUT" 2>"$ERR" &
pid=$!
sleep 3
t0=$(date +%s)
kill -INT $pid
( sleep 30; kill -9 $pid 2>/dev/null ) &
guard=$!
wait $pid
st=$?
kill $guard 2>/dev/null
dt=$(( $(date +%s) - t0 ))
[ $st -eq 4 ] && [ $dt -le 5 ] && pass || fail "one SIGINT with a stalled decoder: status $st after $dt s"
py_check "the stalled track was abandoned, not failed" <<'EOF'
import json
rep = json.load(open("out-stall/report.json"))
assert [a["id"] for a in rep["abandoned"]] == ["b.flac"] and not rep["failed"], (rep["abandoned"], rep["failed"])
EOF
# opening that stalls is bounded by runtime.track_timeout_s too
SL_FAULT_OPEN_HANG=b.flac run_sl run job.yaml --quiet --set output.dir=out-openhang --set runtime.track_timeout_s=1
expect_status 3 "stalled open"
expect_grep "b.flac: decoding made no progress" "$ERR" "stalled open fails its track"

# ---- output gone read-only / permission lost mid-run: said so, tracks abandoned ----
for e in EROFS EACCES; do
  SL_FAULT_ENOSPC_AFTER=300000 SL_FAULT_WRITE_ERRNO=$e run_sl run job.yaml --quiet --set output.dir=out-$e
  expect_status 1 "$e mid-run"
  if grep -q "disk is full\|disk full" "$ERR"; then fail "$e reported as a full disk"; else pass; fi
  expect_grep "($e)" "$ERR" "$e is named"
  expect_grep "abandoned" "$ERR" "$e abandons the tracks in flight"
  py_check "$e: nothing marked failed, nothing left under a final name" <<EOF
import os, sqlite3
db = sqlite3.connect("out-$e/ledger.sqlite")
assert db.execute("select count(*) from tracks where status='failed'").fetchone()[0] == 0
for root, dirs, files in os.walk("out-$e/stems"):
    assert not files, (root, files)
EOF
  run_sl run job.yaml --quiet --set output.dir=out-$e
  expect_status 0 "resume after $e"
done
# not writable from the start: permanent
mkdir -p ro && chmod 555 ro
as_nobody timeout 60 "$STEMLINE" run job.yaml --quiet --set output.dir=ro/out >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 2 "output folder not writable"
expect_grep "ro/out: Permission denied" "$ERR" "not writable is said as such"

# ---- permanent errors exit 2 ----
echo "not weights" > junk.safetensors
run_sl run job.yaml --quiet --set separation.model=umx --set separation.weights=missing.safetensors
expect_status 2 "missing weights"
run_sl run job.yaml --quiet --set separation.model=umx --set separation.weights=junk.safetensors
expect_status 2 "malformed weights"
expect_grep "junk.safetensors" "$ERR" "malformed weights are named"

finish
