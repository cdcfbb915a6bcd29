#!/usr/bin/env bash
# The streaming runner: segments and joins, batch independence, bounded memory,
# device-error retries, decoder timeouts, full disks, signals (INT, HUP) and kill -9.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir

mkdir -p in long
gen_tone in/a.wav 23 44100 2 pcm_s16le
gen_tone in/b.flac 9 44100 2 flac
gen_tone in/c.mp3 14 44100 1 libmp3lame
gen_tone in/d.ogg 6 48000 2 libvorbis
gen_tone in/e.wav 0.2 44100 2 pcm_s16le
f32_job job.yaml hpss <<EOF
  segment_seconds: 5
  overlap_seconds: 1
embedding:
  model: melstats
  window_seconds: 4
runtime:
  decode_threads: 2
  batch_size: 4
  max_host_memory_mb: 128
EOF

# raw PCM of a file at 44.1 kHz stereo, through ffmpeg
cat > pcm.py <<'EOF'
import numpy as np, subprocess
import sl_check
def raw(path, ch=2, rate=44100):
    return sl_check.raw(path, ch, rate)
STEMS = ("harmonic", "percussive", "residual")
EOF
export PYTHONPATH=$T

# ---- segmented run: stems sum to the input across joins, right length ----
run_sl run job.yaml --quiet
expect_status 0 "segmented run"
py_check "segments sum back to the input" <<'EOF'
import json, numpy as np
from pcm import raw, STEMS
rep = json.load(open("out/report.json"))
p = rep["pipeline"]
assert p["segment_samples"] == 5 * 44100 and p["segment_hop"] == 4 * 44100, p
assert p["mean_batch"] > 1, p            # segments of several tracks shared batches
x = raw("in/a.wav")
parts = [raw(f"out/stems/a.wav/{s}.wav") for s in STEMS]
assert all(q.shape == x.shape for q in parts), [q.shape for q in parts]
err = np.abs(sum(parts) - x).max()
assert err <= 1e-4 * np.abs(x).max(), err
EOF

# ---- joins: segmented output close to whole-track output ----
run_sl run job.yaml --quiet --set output.dir=whole --set separation.segment_seconds=60 --set separation.overlap_seconds=0 \
  --set runtime.max_host_memory_mb=1024
expect_status 0 "whole-track run"
py_check "cross-faded joins stay close to whole-track separation" <<'EOF'
import numpy as np
from pcm import raw
a = raw("out/stems/a.wav/harmonic.wav"); b = raw("whole/stems/a.wav/harmonic.wav")
snr = 10 * np.log10((b ** 2).sum() / ((a - b) ** 2).sum())
print("segmented vs whole-track harmonic stem SNR %.1f dB" % snr)
# hpss sees the same audio except within its median-filter context of a join
assert snr > 25, snr
EOF

# ---- a track alone and among others: identical bytes; batch size 1 too ----
mkdir alone && cp in/a.wav alone/
run_sl run job.yaml --quiet --set 'input.paths=[alone]' --set output.dir=out-alone --set runtime.batch_size=1
expect_status 0 "track alone"
for s in harmonic percussive residual; do
  cmp -s "out/stems/a.wav/$s.wav" "out-alone/stems/a.wav/$s.wav" && pass || fail "a.wav $s differs alone vs batched"
done
py_check "embedding identical alone and batched" <<'EOF'
import json, numpy as np
def vec(d):
    X = np.load(f"{d}/embeddings/melstats/mix/shard-00000.npy")
    ids = [json.loads(l)["id"] for l in open(f"{d}/embeddings/melstats/mix/shard-00000.jsonl")]
    return X[ids.index("a.wav")]
assert np.array_equal(vec("out"), vec("out-alone"))
EOF

# ---- device out of memory: batches split, then CPU fallback; same bytes ----
# (SL_TEST_FILL_BATCHES: workers wait up to 3 s for full batches, so batches
# larger than 2 form however loaded the machine is)
SL_TEST_FILL_BATCHES=3 SL_FAULT_DEVICE_OOM=2 run_sl run job.yaml --quiet --set output.dir=out-oom
expect_status 0 "simulated OOM on batches > 2"
SL_FAULT_DEVICE_OOM=0 run_sl run job.yaml --quiet --set output.dir=out-oom0
expect_status 0 "simulated OOM on every batch"
py_check "OOM retries give the same outputs" <<'EOF'
import json, filecmp
r2 = json.load(open("out-oom/report.json"))["pipeline"]
r0 = json.load(open("out-oom0/report.json"))["pipeline"]
assert r2["batch_splits"] > 0 and r2["cpu_fallbacks"] == 0, r2
assert r0["cpu_fallbacks"] > 0, r0
for d in ("out-oom", "out-oom0"):
    for s in ("harmonic", "percussive", "residual"):
        for t in ("a.wav", "b.flac", "c.mp3"):
            assert filecmp.cmp(f"out/stems/{t}/{s}.wav", f"{d}/stems/{t}/{s}.wav", shallow=False), (d, t, s)
EOF

# ---- a decoder that hangs: the track fails after the timeout, the rest finish ----
SL_FAULT_DECODE_HANG=b.flac run_sl run job.yaml --quiet --set output.dir=out-hang --set runtime.track_timeout_s=1
expect_status 3 "hanging decoder"
py_check "timeout fails only that track" <<'EOF'
import json
rep = json.load(open("out-hang/report.json"))
failed = {f["id"]: f["reason"] for f in rep["failed"]}
assert list(failed) == ["b.flac"] and "no progress" in failed["b.flac"], failed
assert rep["tracks"]["ok"] == 4, rep["tracks"]
EOF

# ---- bounded memory: a long track under a small bound ----
gen_tone long/long.wav 300 44100 2 pcm_s16le
read -r rc rss < <(rss_of "$STEMLINE" run job.yaml --quiet --set 'input.paths=[long]' --set output.dir=out-long \
  --set runtime.max_host_memory_mb=64 --set embedding.model=none)
[ "$rc" = 0 ] && pass || fail "long track run exited $rc"
echo "peak RSS for a 5-minute stereo track under a 64 MB segment bound: ${rss} MB"
# whole-track processing would hold 5 min x 2 ch x (input + 3 stems) of float32 = 423 MB
if ldd "$STEMLINE" 2>/dev/null | grep -q 'libasan\|libtsan'; then
  echo "skipped: peak RSS bound (sanitizer build: shadow memory and quarantine inflate RSS)"
else
  [ "$rss" -lt 250 ] && pass || fail "peak RSS ${rss} MB for a 5-minute track under a 64 MB bound"
fi
py_check "long track complete" <<'EOF'
from pcm import raw
assert raw("out-long/stems/long.wav/residual.wav").shape[0] == 300 * 44100
EOF
rm -rf out-long long

# ---- a full disk: stops cleanly, no partial file under a final name, resumable ----
SL_FAULT_ENOSPC_AFTER=3000000 run_sl run job.yaml --quiet --set output.dir=out-full
expect_status 1 "disk full"
expect_grep "disk is full" "$ERR" "disk full is reported"
expect_grep "abandoned" "$ERR" "abandoned tracks are reported"
py_check "no partial stems after a full disk" <<'EOF'
import os
from pcm import raw
for root, dirs, files in os.walk("out-full"):
    for f in files:
        assert ".tmp" not in f, f
        if f.endswith(".wav"):
            raw(os.path.join(root, f))  # every visible stem decodes
EOF
run_sl run job.yaml --quiet --set output.dir=out-full
expect_status 0 "resume after a full disk"

# ---- SIGINT: stops, exits 4, resumable; done tracks are not redone ----
mkdir -p sig sig-many
for i in 1 2 3 4 5 6; do cp in/a.wav "sig/t$i.wav"; done
for i in $(seq 10 40); do cp in/a.wav "sig-many/t$i.wav"; done
# SIGHUP (a closed ssh session) is the same stop as SIGINT
for sig in INT HUP; do
  "$STEMLINE" run job.yaml --quiet --set 'input.paths=[sig-many]' --set output.dir=out-sig-$sig \
    --set runtime.decode_threads=1 &
  pid=$!
  # signal as soon as the first track is done, so some are done and many are not
  wait_first_done out-sig-$sig/ledger.sqlite
  kill -$sig $pid
  wait $pid
  st=$?
  [ $st -eq 4 ] && pass || fail "SIG$sig exit status $st (expected 4)"
  py_check "SIG$sig: the report says interrupted" <<EOF
import json
assert json.load(open("out-sig-$sig/report.json"))["interrupted"] is True
EOF
  [ $sig = INT ] || continue # the resume is the same whatever stopped the run
  run_sl run job.yaml --quiet --set 'input.paths=[sig-many]' --set output.dir=out-sig-$sig
  expect_status 0 "resume after SIG$sig"
  py_check "interrupted run resumed (SIG$sig)" <<EOF
import json
rep = json.load(open("out-sig-$sig/report.json"))
assert rep["tracks"]["ok"] + rep["tracks"]["skipped"] == 31, rep["tracks"]
assert rep["tracks"]["ok"] >= 1, rep["tracks"]         # something was left for the resume
assert rep["tracks"]["skipped"] >= 1, rep["tracks"]   # something was done before the signal
EOF
done

# ---- a second signal stops at once ----
"$STEMLINE" run job.yaml --quiet --set 'input.paths=[sig-many]' --set output.dir=out-sig2 --set runtime.decode_threads=1 &
pid=$!
sleep 1
kill -INT $pid; sleep 0.1; kill -TERM $pid
t0=$(date +%s)
wait $pid
st=$?
[ $st -eq 4 ] && [ $(( $(date +%s) - t0 )) -le 2 ] && pass || fail "second signal: status $st after $(( $(date +%s) - t0 )) s"

# ---- kill -9 at random moments, then a run that finishes the job ----
rm -rf out-k
for i in 1 2 3 4 5; do
  "$STEMLINE" run job.yaml --quiet --set 'input.paths=[sig]' --set output.dir=out-k &
  pid=$!
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
done
"$SL_PYTHON" - <<'EOF' > done-before.txt
import sqlite3, os
if os.path.exists("out-k/ledger.sqlite"):
    for (i,) in sqlite3.connect("out-k/ledger.sqlite").execute("select id from tracks where status='done'"):
        print(i)
EOF
run_sl run job.yaml --quiet --set 'input.paths=[sig]' --set output.dir=out-k
expect_status 0 "finish after kill -9"
py_check "outputs complete after kill -9, nothing done twice" <<'EOF'
import json, os, numpy as np
from pcm import raw
rep = json.load(open("out-k/report.json"))
before = set(open("done-before.txt").read().split())
redone = before & {o["id"] for o in rep["ok"]}
assert not redone, redone
n = 23 * 44100
for i in range(1, 7):
    for s in ("harmonic", "percussive", "residual"):
        assert raw(f"out-k/stems/t{i}.wav/{s}.wav").shape[0] == n, (i, s)
X = np.load("out-k/embeddings/melstats/mix/shard-00000.npy")
ids = [json.loads(l)["id"] for l in open("out-k/embeddings/melstats/mix/shard-00000.jsonl")]
assert X.shape[0] == 6 and sorted(ids) == ids and len(set(ids)) == 6, ids
for root, dirs, files in os.walk("out-k"):
    for f in files:
        assert ".tmp" not in f, os.path.join(root, f)
print("tracks done before the last run:", len(before))
EOF

# A run killed while writing report.json / report.html leaves their temporaries
# (NAME.tmp-<pid>-<n>): the next run removes them (only those of these names).
for f in report.json.tmp-99999-0 report.html.tmp-99999-3 notes.tmp-99999-0; do echo stale > "out-k/$f"; done
run_sl run job.yaml --quiet --set 'input.paths=[sig]' --set output.dir=out-k
expect_status 0 "rerun over a killed run's report temporaries"
[ ! -e out-k/report.json.tmp-99999-0 ] && [ ! -e out-k/report.html.tmp-99999-3 ] && [ -s out-k/report.html ] && pass ||
  fail "report temporaries of a killed run left in place: $(ls out-k | grep tmp- | tr '\n' ' ')"
[ -e out-k/notes.tmp-99999-0 ] && pass || fail "a file of another name was swept"
rm -f out-k/notes.tmp-99999-0

finish
