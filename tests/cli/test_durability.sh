#!/usr/bin/env bash
# Durability of a run's outputs: a failed fsync of a stem (injected with
# SL_FAULT_FSYNC) fails that track, with the reason, and nothing of it is
# recorded done or left under a final name; the next run redoes it. A stop
# (SIGINT) ends a run whose decoder is blocked in a read that never returns
# (SL_FAULT_DECODE_HANG, no track timeout): that track is abandoned, not failed.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir

gen_tone in/a.wav 3 44100 2 pcm_s16le
gen_tone in/b.flac 4 44100 2 flac
gen_tone in/c.wav 2 44100 1 pcm_s16le
seg_job job.yaml "decode_threads: 2" "batch_size: 4" "max_host_memory_mb: 64"

# ---- fsync of a stem's temporary file fails: the track fails ----
SL_FAULT_FSYNC=b.flac/percussive.wav.tmp- run_sl run job.yaml --quiet
expect_status 3 "failed fsync of a stem"
py_check "the track whose stem could not be synced failed, the others are done" <<'EOF'
import json, os, sqlite3
rep = json.load(open("out/report.json"))
failed = {f["id"]: f["reason"] for f in rep["failed"]}
assert list(failed) == ["b.flac"], failed
assert "fsync" in failed["b.flac"] and "percussive.wav" in failed["b.flac"], failed
assert rep["tracks"]["ok"] == 2, rep["tracks"]
rows = dict(sqlite3.connect("out/ledger.sqlite").execute("select id, status from tracks"))
assert rows == {"a.wav": "done", "b.flac": "failed", "c.wav": "done"}, rows
assert not os.path.exists("out/stems/b.flac/percussive.wav")
for root, dirs, files in os.walk("out"):
    assert not [f for f in files if ".tmp-" in f], (root, files)
EOF

# ---- the first stem's fsync fails while the others are committed beside it: the
# stems put in place meanwhile are removed with the failed track ----
SL_FAULT_FSYNC=b.flac/harmonic.wav.tmp- run_sl run job.yaml --quiet --set output.dir=out-first
expect_status 3 "failed fsync of a track's first stem"
py_check "no stem of the track whose first stem could not be synced is left in place" <<'EOF'
import json, os
rep = json.load(open("out-first/report.json"))
failed = {f["id"]: f["reason"] for f in rep["failed"]}
assert list(failed) == ["b.flac"] and "harmonic.wav" in failed["b.flac"], failed
for s in ("harmonic", "percussive", "residual"):
    assert not os.path.exists(f"out-first/stems/b.flac/{s}.wav"), s
    assert os.path.exists(f"out-first/stems/a.wav/{s}.wav"), s
for root, dirs, files in os.walk("out-first"):
    assert not [f for f in files if ".tmp-" in f], (root, files)
EOF

# ---- fsync of the stems' folder fails after the rename: the track fails too ----
SL_FAULT_FSYNC=dir:stems/c.wav run_sl run job.yaml --quiet --set output.dir=out-dir
expect_status 3 "failed fsync of a stem's folder"
py_check "a stem whose folder could not be synced is not in place, its track failed" <<'EOF'
import json, os
rep = json.load(open("out-dir/report.json"))
failed = {f["id"]: f["reason"] for f in rep["failed"]}
assert list(failed) == ["c.wav"] and "fsync of its folder" in failed["c.wav"], failed
assert not os.path.exists("out-dir/stems/c.wav/harmonic.wav")
EOF

# ---- without the fault the next run redoes the failed track only ----
run_sl run job.yaml --quiet
expect_status 0 "rerun after a failed fsync"
py_check "rerun: every track done" <<'EOF'
import json, os
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 1 and rep["tracks"].get("skipped", 0) == 2, rep["tracks"]
for s in ("harmonic", "percussive", "residual"):
    assert os.path.exists(f"out/stems/b.flac/{s}.wav"), s
EOF

# ---- SIGINT while a decoder is stuck in a read: the run stops, exit 4 ----
SL_FAULT_DECODE_HANG=b.flac "$STEMLINE" run job.yaml --quiet --set output.dir=out-stuck \
  --set runtime.decode_threads=1 >/dev/null 2>stuck.err &
pid=$!
# a.wav comes first (catalog order, one decoder): once it is in place the decoder is stuck in b.flac
for _ in $(seq 600); do [ -f out-stuck/stems/a.wav/residual.wav ] && break; sleep 0.1; done
sleep 0.5
kill -INT $pid
for _ in $(seq 600); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then
  fail "a run whose decoder is stuck did not stop 60 s after SIGINT"
  kill -9 $pid
fi
wait $pid
STATUS=$?
ERR=stuck.err expect_status 4 "SIGINT with a stuck decoder"
py_check "the stuck track was abandoned (not in the ledger), the one before it is done" <<'EOF'
import sqlite3
rows = dict(sqlite3.connect("out-stuck/ledger.sqlite").execute("select id, status from tracks"))
assert rows.get("a.wav") == "done" and "b.flac" not in rows, rows
EOF
run_sl run job.yaml --quiet --set output.dir=out-stuck
expect_status 0 "resume after SIGINT with a stuck decoder"

finish
