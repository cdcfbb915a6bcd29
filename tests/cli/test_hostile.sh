#!/usr/bin/env bash
# Inputs and surroundings that must not hang, stop or poison a run: FIFOs and
# devices as inputs (path, manifest line, search --audio), an unreadable
# subfolder, a symbolic link loop, SIGHUP, a closed log pipe.
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

# ---- SIGHUP is a stop like SIGTERM: exit 4, report written, resumable ----
mkdir -p many
for i in $(seq 10 25); do cp in/a.wav "many/t$i.wav"; done
"$STEMLINE" run job.yaml --quiet --set 'input.paths=[many]' --set output.dir=out-hup --set runtime.decode_threads=1 &
pid=$!
"$SL_PYTHON" - <<'EOF'
import sqlite3, time
t0 = time.time()
while time.time() - t0 < 120:
    try:
        if sqlite3.connect("out-hup/ledger.sqlite").execute("select count(*) from tracks where status='done'").fetchone()[0]:
            break
    except Exception:
        pass
    time.sleep(0.05)
EOF
kill -HUP $pid
wait $pid
st=$?
[ $st -eq 4 ] && pass || fail "SIGHUP exit status $st (expected 4)"
py_check "SIGHUP left a report" <<'EOF'
import json
rep = json.load(open("out-hup/report.json"))
assert rep["interrupted"] is True, rep.get("interrupted")
EOF
run_sl run job.yaml --quiet --set 'input.paths=[many]' --set output.dir=out-hup
expect_status 0 "resume after SIGHUP"

# ---- a log reader that goes away does not kill the run ----
"$STEMLINE" run job.yaml -v --set output.dir=out-pipe 2>&1 | head -c 50 >/dev/null
st=${PIPESTATUS[0]}
[ "$st" -eq 0 ] && pass || fail "run with its log piped into head: exit $st"
py_check "the run behind a closed pipe finished" <<'EOF'
import json
rep = json.load(open("out-pipe/report.json"))
assert rep["tracks"]["ok"] == 2, rep["tracks"]
EOF

finish
