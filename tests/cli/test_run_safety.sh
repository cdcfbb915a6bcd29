#!/usr/bin/env bash
# Run safety: one writer per ledger (lock), one job per output folder (settings
# recorded, --reset), done tracks skipped only while their outputs are there
# (sizes; --verify: content hashes), stale outputs of a redone track removed,
# and `stemline merge` listing done tracks whose outputs are gone.
set -u
source "$(dirname "$0")/lib.sh"

T=$(mktemp -d)
trap 'for p in $(jobs -p); do kill -9 "$p" 2>/dev/null; done; rm -rf "$T"' EXIT
cd "$T"

for i in 1 2 3 4; do gen_tone "in/t$i.wav" 2 22050 1 pcm_s16le; done
cat > job.yaml <<EOF
input:
  paths: [in]
output:
  dir: out
  stems:
    format: flac
separation:
  model: hpss
embedding:
  model: melstats
runtime:
  decode_threads: 2
EOF


# wait_stopped PID: until the process is stopped (SL_FAULT_STOP_AFTER_LOCK) or gone
wait_stopped() {
  local i st
  for ((i = 0; i < 600; i++)); do
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case "$st" in T*) return 0 ;; esac
    sleep 0.1
  done
  return 1
}
# ---- merge lists a done track whose output is gone ----
run_sl run job.yaml --quiet
expect_status 0 "first run"
run_sl merge out --check-only
expect_status 0 "merge of a complete folder"
rm out/stems/t2.wav/percussive.flac
run_sl merge out --check-only
expect_status 3 "merge with an output removed"
expect_grep "t2.wav" "$OUT" "merge names the track whose output is gone"
expect_grep "stems/t2.wav/percussive.flac (missing)" "$OUT" "merge names the missing output"

# ---- a done track whose output is gone is redone, not skipped ----
run_sl run job.yaml
expect_status 0 "run after an output was removed"
expect_grep "t2.wav" "$ERR" "the redone track is named"
expect_grep "stems/t2.wav/percussive.flac: missing: redoing the track" "$ERR" "the missing file is named"
py_check "only the track with a missing output redone" <<'EOF'
import json, os
rep = json.load(open("out/report.json"))
assert [o["id"] for o in rep["ok"]] == ["t2.wav"], rep["ok"]
assert os.path.getsize("out/stems/t2.wav/percussive.flac") > 0
EOF
# a changed size is seen by the stat; the same size with other bytes only by --verify
"$SL_PYTHON" - <<'EOF'
f = "out/stems/t3.wav/harmonic.flac"
b = bytearray(open(f, "rb").read())
b[-10] ^= 0xFF
open(f, "wb").write(bytes(b))
EOF
run_sl run job.yaml --quiet
expect_status 0 "re-run with a rewritten output, no --verify"
py_check "same size: skipped without --verify" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 0 and rep["tracks"]["skipped"] == 4, rep["tracks"]
EOF
run_sl run job.yaml --verify
expect_status 0 "re-run with --verify"
expect_grep "stems/t3.wav/harmonic.flac: content changed" "$ERR" "--verify names the changed file"
py_check "--verify redoes the track whose output changed" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert [o["id"] for o in rep["ok"]] == ["t3.wav"], rep["ok"]
EOF
head -c 100 out/stems/t4.wav/residual.flac > x && mv x out/stems/t4.wav/residual.flac
run_sl run job.yaml
expect_status 0 "re-run with a truncated output"
expect_grep "stems/t4.wav/residual.flac: 100 bytes" "$ERR" "the truncated file is named with its size"
py_check "a truncated output redoes its track" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert [o["id"] for o in rep["ok"]] == ["t4.wav"], rep["ok"]
EOF
run_sl merge out --check-only
expect_status 0 "merge after the redone tracks"

# ---- a redone track's outputs that the new run did not write again are removed ----
# (as an earlier version, which redid tracks with other stem settings, left them)
mkdir -p out/stems/t1.wav && echo old > out/stems/t1.wav/old-harmonic.wav
"$SL_PYTHON" - <<'EOF'
import json, sqlite3
db = sqlite3.connect("out/ledger.sqlite")
o = json.loads(db.execute("SELECT outputs FROM tracks WHERE id = 't1.wav'").fetchone()[0])
db.execute("UPDATE tracks SET outputs = ?, files = NULL, size = size + 1 WHERE id = 't1.wav'",
           (json.dumps(o + ["stems/t1.wav/old-harmonic.wav"]),))
db.commit()
EOF
run_sl run job.yaml --quiet
expect_status 0 "redo with a stale output recorded"
[ ! -e out/stems/t1.wav/old-harmonic.wav ] && pass || fail "the stale output of the previous run is still there"
[ -s out/stems/t1.wav/harmonic.flac ] && pass || fail "the new output is missing"

# ---- one job per output folder ----
sum_ledger=$(sha256sum out/ledger.sqlite)
run_sl run job.yaml --set output.stems.format=wav
expect_status 2 "other stem format into the same folder"
expect_grep "output.stems.format is 'flac' there and 'wav' in this job" "$ERR" "the differing key and both values"
expect_grep "--reset" "$ERR" "the message says how to go on"
[ -z "$(find out/stems -name '*.wav' -type f)" ] && pass || fail "a refused run wrote stems"
[ "$(sha256sum out/ledger.sqlite)" = "$sum_ledger" ] && pass || fail "a refused run changed the ledger"
run_sl run job.yaml --set embedding.normalize=false
expect_status 2 "other embedding settings into the same folder"
expect_grep "embedding.normalize is 'true' there and 'false' in this job" "$ERR" "embedding key named"
# --reset: the old settings' outputs go (after a warning), the job runs from scratch
run_sl run job.yaml --set output.stems.format=wav --set embedding.model=none --reset
expect_status 0 "--reset"
expect_grep "reset: removing from out the outputs of the previous settings (output.stems.format was 'flac', now 'wav')" "$ERR" "--reset says what it removes"
expect_grep "4 done tracks" "$ERR" "--reset counts the tracks"
[ -z "$(find out/stems -name '*.flac')" ] && pass || fail "--reset left flac stems: $(find out/stems -name '*.flac' | head -3)"
[ ! -e out/embeddings ] && pass || fail "--reset left the old vector shards"
[ "$(find out/stems -name '*.wav' -type f | wc -l)" -eq 12 ] && pass || fail "--reset run wrote $(find out/stems -name '*.wav' -type f | wc -l) wav stems, not 12"
run_sl run job.yaml --set output.stems.format=wav --set embedding.model=none --quiet
expect_status 0 "the new settings resume"
py_check "the new settings resume" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 0 and rep["tracks"]["skipped"] == 4, rep["tracks"]
EOF

# ---- a ledger of an older version (no settings, no sizes) resumes, and is guarded by its hash ----
run_sl run job.yaml --set output.dir=old --quiet
expect_status 0 "run into old"
"$SL_PYTHON" - <<'EOF'
import sqlite3
db = sqlite3.connect("old/ledger.sqlite")
db.execute("DROP TABLE job")
db.execute("ALTER TABLE tracks DROP COLUMN files")
db.commit()
EOF
run_sl run job.yaml --set output.dir=old --quiet
expect_status 0 "an older ledger resumes"
py_check "older ledger: nothing redone, upgraded in place" <<'EOF'
import json, sqlite3
rep = json.load(open("old/report.json"))
assert rep["tracks"]["ok"] == 0 and rep["tracks"]["skipped"] == 4, rep["tracks"]
db = sqlite3.connect("old/ledger.sqlite")
assert dict(db.execute("SELECT key, value FROM job"))["config_hash"] == rep["config_hash"]
EOF
"$SL_PYTHON" -c "import sqlite3; db = sqlite3.connect('old/ledger.sqlite'); db.execute('DROP TABLE job'); db.commit()"
run_sl run job.yaml --set output.dir=old --set output.stems.sample_format=s24
expect_status 2 "an older ledger with other settings"
expect_grep "older stemline" "$ERR" "the message says the old ledger kept only the hash"

# ---- one run at a time per ledger ----
# a holder of the lock (as another host would): refused at once, nothing deleted
echo "pid=424242 host=otherhost started=2026-01-01T00:00:00Z" > out/ledger.sqlite.lock
# the lock is held on fd 9 of the sleep (blocking: the probe below takes it for a moment);
# killing the sleep releases it
(exec 9<>out/ledger.sqlite.lock && flock 9 && exec sleep 600 >/dev/null 2>&1) &
holder=$!
for ((i = 0; i < 600; i++)); do
  flock -n out/ledger.sqlite.lock true 2>/dev/null || break
  sleep 0.05
done
touch out/stems/t1.wav/harmonic.wav.tmp-4242-0
sum_ledger=$(sha256sum out/ledger.sqlite)
snapshot out > snap1
run_sl run job.yaml --set output.stems.format=wav --set embedding.model=none
expect_status 1 "a second run while the lock is held"
expect_grep "output folder out is in use" "$ERR" "the folder is named"
expect_grep "PID 424242 on host otherhost" "$ERR" "the holder's PID and host are named"
expect_grep "kill 424242" "$ERR" "how to stop it"
[ -e out/stems/t1.wav/harmonic.wav.tmp-4242-0 ] && pass || fail "the refused run deleted a temporary file"
snapshot out > snap2
diff snap1 snap2 >/dev/null && pass || fail "the refused run changed the folder: $(diff snap1 snap2 | head -3)"
[ "$(sha256sum out/ledger.sqlite)" = "$sum_ledger" ] && pass || fail "the refused run changed the ledger"
kill "$holder"; wait "$holder" 2>/dev/null
run_sl run job.yaml --set output.stems.format=wav --set embedding.model=none --quiet
expect_status 0 "the run after the holder is gone"

# a real run holding the lock (stopped right after taking it), then the same job again
cat > jobc.yaml <<EOF
input:
  paths: [in]
output:
  dir: outc
separation:
  model: hpss
embedding:
  model: melstats
EOF
SL_FAULT_STOP_AFTER_LOCK=1 "$STEMLINE" run jobc.yaml --quiet 2>first.err &
first=$!
wait_stopped "$first" && pass || fail "the first run did not stop after taking its lock"
run_sl run jobc.yaml
expect_status 1 "the same job while it runs"
expect_grep "PID $first on host $(hostname)" "$ERR" "the running job's PID and host"
kill -CONT "$first"
wait "$first"
st=$?
[ "$st" -eq 0 ] && pass || { fail "the first run exited $st"; cat first.err >&2; }
ledger_rows outc/ledger.sqlite > rows
[ "$(grep -c ' done$' rows)" -eq 4 ] && pass || fail "the first run did not finish every track: $(cat rows)"

# kill -9 while holding the lock: the next run is not blocked, and finishes the job
SL_FAULT_STOP_AFTER_LOCK=1 "$STEMLINE" run jobc.yaml --quiet --set output.dir=outk 2>/dev/null &
victim=$!
wait_stopped "$victim" && pass || fail "the run to be killed did not stop after its lock"
kill -9 "$victim"; wait "$victim" 2>/dev/null
run_sl run jobc.yaml --quiet --set output.dir=outk
expect_status 0 "the run after kill -9"
ledger_rows outk/ledger.sqlite > rows
[ "$(grep -c ' done$' rows)" -eq 4 ] && pass || fail "after kill -9: $(cat rows)"

# two shards of one job in one folder run side by side
SL_FAULT_STOP_AFTER_LOCK=1 "$STEMLINE" run jobc.yaml --quiet --set output.dir=outs --shard 0/2 2>s0.err &
s0=$!
wait_stopped "$s0" && pass || fail "shard 0 did not stop after its lock"
run_sl run jobc.yaml --quiet --set output.dir=outs --shard 1/2
expect_status 0 "shard 1/2 while shard 0/2 holds its lock"
kill -CONT "$s0"
wait "$s0"
st=$?
[ "$st" -eq 0 ] && pass || { fail "shard 0/2 exited $st"; cat s0.err >&2; }
run_sl merge outs --check-only
expect_status 0 "merge of the two shards run side by side"

finish
