#!/usr/bin/env bash
# End-to-end job tests through the CLI: a catalog with good and bad inputs,
# stems, shards, ledger/resume, config changes, exit statuses.
set -u
source "$(dirname "$0")/lib.sh"

in_tmp_dir

# ---- fixtures ----
mkdir -p in/good in/bad
gen_tone in/good/a.wav 3 44100 2 pcm_s16le
gen_tone in/good/a.flac 2.5 44100 2 flac           # same base name as a.wav: must not collide
gen_tone "in/good/sub dir/mono 22k.mp3" 2 22050 1 libmp3lame
gen_tone in/good/six.ogg 2 48000 6 libvorbis       # 5.1 -> down-mixed
head -c 20000 in/good/a.flac > in/bad/truncated.flac  # cut: decodes what it can or fails clearly
: > in/bad/empty.wav
echo "this is not audio" > in/bad/text.mp3
ffmpeg -nostdin -loglevel error -f lavfi -i testsrc=d=1:s=64x64:r=5 -c:v mpeg4 in/bad/video-only.mp4
mkdir -p in/bad/folder.mp3                           # a folder that looks like a track is not a track
if [ "$(id -u)" -ne 0 ]; then                        # root reads anything: only testable as a user
  cp in/good/a.wav in/bad/noperm.wav && chmod 000 in/bad/noperm.wav
fi
f32_job job.yaml hpss <<EOF
embedding:
  model: melstats
runtime:
  decode_threads: 2
EOF

# ---- dry run lists tracks and writes nothing ----
run_sl run job.yaml --dry-run
expect_status 0 "dry run"
expect_grep "todo	good/a.wav" "$OUT" "dry run lists a.wav"
expect_grep "todo	bad/text.mp3" "$OUT" "dry run lists text.mp3"
expect_grep "output:" "$OUT" "dry run prints resolved config"
[ ! -e out ] || fail "dry run created the output folder"

# ---- first run: bad inputs fail, good ones finish, exit 3 ----
run_sl run job.yaml --quiet
expect_status 3 "run with bad inputs"
py_check "first run outputs" <<'EOF'
import json, numpy as np, os, subprocess
rep = json.load(open("out/report.json"))
failed = {f["id"]: f["reason"] for f in rep["failed"]}
ok = {o["id"] for o in rep["ok"]}
assert {"good/a.wav", "good/a.flac", "good/sub dir/mono 22k.mp3", "good/six.ogg"} <= ok, ok
for bad in ["bad/empty.wav", "bad/text.mp3", "bad/video-only.mp4"]:
    assert bad in failed, (bad, failed)
    assert failed[bad].strip(), bad
assert "no audio" in failed["bad/video-only.mp4"].lower(), failed["bad/video-only.mp4"]
# the truncated flac either decoded what it could (ok) or failed with a reason
assert "bad/truncated.flac" in ok or failed.get("bad/truncated.flac"), rep
assert rep["tracks"]["failed"] == len(failed)
# every failed reason names the file
for k, v in failed.items():
    assert os.path.basename(k) in v, (k, v)
# stems exist for good tracks, distinct for a.wav and a.flac
for tid in ok:
    for stem in ("harmonic", "percussive", "residual"):
        p = f"out/stems/{tid}/{stem}.wav"
        assert os.path.exists(p), p
# shards: rows == jsonl lines == ok tracks, unit norm, ids sorted
X = np.load("out/embeddings/melstats/mix/shard-00000.npy", mmap_mode="r")
rows = [json.loads(l) for l in open("out/embeddings/melstats/mix/shard-00000.jsonl")]
assert X.shape[0] == len(rows) == len(ok), (X.shape, len(rows), len(ok))
assert X.dtype == np.float32
assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
assert [r["id"] for r in rows] == sorted(ok)
assert all(r["source"] == "mix" and r["model"] == "melstats" for r in rows)
assert all(np.isfinite(X).all(axis=1))
# no temporary files anywhere
for root, dirs, files in os.walk("out"):
    for f in files:
        assert ".tmp" not in f, os.path.join(root, f)
EOF

py_check "ledger rows" <<'EOF'
import json, os, sqlite3
db = sqlite3.connect("out/ledger.sqlite")
rows = {r[0]: r[1:] for r in db.execute("select id, status, error, outputs from tracks")}
rep = json.load(open("out/report.json"))
for f in rep["failed"]:
    st, err, _ = rows[f["id"]]
    assert st == "failed" and err, (f, rows[f["id"]])
for o in rep["ok"]:
    st, err, outputs = rows[o["id"]]
    assert st == "done" and not err, rows[o["id"]]
    outs = json.loads(outputs)
    assert len(outs) == 3 and all(os.path.exists("out/" + p) for p in outs), outs
if os.path.exists("in/bad/noperm.wav"):
    assert "bad/noperm.wav" in {f["id"] for f in rep["failed"]}
assert db.execute("pragma journal_mode").fetchone()[0] == "wal"
EOF

# ---- --quiet prints nothing on success; plain progress lines when not a terminal ----
run_sl run job.yaml --quiet --set 'input.paths=[in/good]' --set output.dir=outq
expect_status 0 "quiet run"
[ ! -s "$ERR" ] && pass || fail "--quiet printed: $(head -3 "$ERR")"
run_sl run job.yaml --set 'input.paths=[in/good]' --set output.dir=outq2 --set runtime.progress_interval=1
expect_status 0 "progress run"
expect_grep "progress: 4/4 tracks (100%)" "$ERR" "plain progress line"
expect_grep "4 ok, 0 failed" "$ERR" "summary line"
rm -rf outq outq2

# ---- stems: right rate and length, and they sum back to the input ----
py_check "stems sum to input, rate and length" <<'EOF'
import numpy as np, subprocess
import sl_check
def raw(path, ch=2, rate=44100):
    return sl_check.raw(path, ch, rate)
def info(path):
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-count_packets",
                          "-show_entries", "stream=sample_rate,channels,duration_ts", "-of", "csv=p=0", path],
                         check=True, capture_output=True, text=True).stdout.strip().split(",")
    return int(out[0]), int(out[1])
x = raw("in/good/a.wav")
parts = [raw(f"out/stems/good/a.wav/{s}.wav") for s in ("harmonic", "percussive", "residual")]
for p in parts:
    assert p.shape == x.shape, (p.shape, x.shape)
err = np.abs(sum(parts) - x).max()
peak = np.abs(x).max()
# tolerance: float32 STFT/iSTFT round trip, relative to the peak
assert err <= 1e-4 * peak, (err, peak)
# harmonic + percussive carry the signal (not everything dumped into residual)
eh = (parts[0] ** 2).sum() + (parts[1] ** 2).sum()
assert eh > 0.3 * (x ** 2).sum(), eh
for tid, n in [("good/a.wav", 3 * 44100), ("good/a.flac", int(2.5 * 44100))]:
    rate, ch = info(f"out/stems/{tid}/harmonic.wav")
    assert rate == 44100 and ch == 2, (tid, rate, ch)
    assert raw(f"out/stems/{tid}/harmonic.wav").shape[0] == n, tid
EOF

# ---- second run: failed tracks retried, done ones skipped, outputs identical ----
snapshot out > snap1
run_sl run job.yaml --quiet
expect_status 3 "second run (bad files still bad)"
snapshot out > snap2
diff snap1 snap2 >/dev/null || fail "second run changed outputs: $(diff snap1 snap2 | head -5)"
py_check "second run skipped done tracks" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 0, rep["tracks"]
assert rep["tracks"]["skipped"] >= 4, rep["tracks"]
assert all(s["reason"].startswith("already done") for s in rep["skipped"])
EOF

# ---- clean catalog: exit 0, then a re-run processes nothing ----
rm -rf in/bad
run_sl run job.yaml --quiet
expect_status 0 "clean catalog"
run_sl run job.yaml --quiet
expect_status 0 "clean catalog re-run"
py_check "re-run processed nothing" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 0 and rep["tracks"]["failed"] == 0, rep["tracks"]
EOF

# ---- a changed input file is redone; a changed config needs --reset ----
gen_tone in/good/a.wav 2 44100 2 pcm_s16le
touch -d '2001-01-01' in/good/a.wav
run_sl run job.yaml --quiet
expect_status 0 "changed input"
py_check "only the changed track redone" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert [o["id"] for o in rep["ok"]] == ["good/a.wav"], rep["ok"]
EOF
run_sl run job.yaml --quiet --set output.stems.sample_format=s16
expect_status 2 "changed config into the same folder"
expect_grep "output.stems.sample_format is 'f32' there and 's16' in this job" "$ERR" "changed config names the key"
run_sl run job.yaml --quiet --set output.stems.sample_format=s16 --reset
expect_status 0 "changed config with --reset"
py_check "changed config redoes everything" <<'EOF'
import json, subprocess
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 4 and rep["tracks"]["skipped"] == 0, rep["tracks"]
fmt = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
                      "out/stems/good/a.flac/harmonic.wav"], capture_output=True, text=True).stdout.strip()
assert fmt == "pcm_s16le", fmt
EOF

# ---- FLAC stems at the source rate ----
run_sl run job.yaml --quiet --set output.dir=out2 --set output.stems.format=flac \
  --set output.stems.sample_format=s24 --set output.stems.sample_rate=source --set embedding.model=none
expect_status 0 "flac at source rate"
py_check "flac stems at source rate" <<'EOF'
import subprocess
def probe(p):
    return subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels",
                           "-of", "csv=p=0", p], capture_output=True, text=True, check=True).stdout.strip()
assert probe("out2/stems/good/sub dir/mono 22k.mp3/percussive.flac") == "flac,22050,2", probe("out2/stems/good/sub dir/mono 22k.mp3/percussive.flac")
assert probe("out2/stems/good/six.ogg/harmonic.flac") == "flac,48000,2"
import os
assert not os.path.exists("out2/embeddings")
EOF

# ---- sharding: disjoint, complete ----
for i in 0 1 2; do
  run_sl run job.yaml --quiet --set output.dir=out3 --shard $i/3 --set separation.model=none
  expect_status 0 "shard $i/3"
done
py_check "shards disjoint and complete" <<'EOF'
import glob, json, numpy as np
ids = []
for f in sorted(glob.glob("out3/embeddings/melstats/mix/s*of0003-shard-00000.jsonl")):
    ids += [json.loads(l)["id"] for l in open(f)]
    assert np.load(f[:-6] + ".npy").shape[0] == sum(1 for _ in open(f))
assert sorted(ids) == sorted(set(ids)) and len(ids) == 4, ids
assert len(glob.glob("out3/s*of0003-report.json")) == 3
assert len(glob.glob("out3/s*of0003-ledger.sqlite")) == 3
EOF

# ---- permanent: output not writable (a file in the way): exit 2, not retried ----
echo "a file" > notadir
run_sl run job.yaml --quiet --set output.dir=notadir/out
expect_status 2 "unwritable output"
expect_grep "notadir" "$ERR" "unwritable output names the path"

finish
