#!/usr/bin/env bash
# Open-Unmix (separation.model: umx) through the whole runner: many tracks per
# batch, four stems per track, ledger and resume, cpu vs cuda-emu, and how
# much segmenting changes the output against whole-track separation. Uses the
# small random-weight model of the golden tests (tests/golden/umx/).
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
W="$SL_SRC/tests/golden/umx/umx-small.safetensors"
in_tmp_dir

mkdir -p in
gen_tone in/a.wav 3 44100 2 pcm_s16le
gen_tone in/b.flac 2 44100 2 flac
gen_tone in/c.mp3 2.5 44100 1 libmp3lame
gen_tone in/d.wav 0.05 44100 2 pcm_s16le
f32_job job.yaml umx <<EOF
  weights: $W
  segment_seconds: 1
  overlap_seconds: 0.25
embedding:
  model: none
runtime:
  backend: cpu
  decode_threads: 2
  batch_size: 4
EOF
cat > pcm.py <<'EOF'
import numpy as np, subprocess
import sl_check
def raw(path, ch=2, rate=44100):
    return sl_check.raw(path, ch, rate)
STEMS = ("vocals", "drums", "bass", "other")
TRACKS = ("a.wav", "b.flac", "c.mp3", "d.wav")
EOF
export PYTHONPATH=$T

# ---- a job: every track, four stems each, input length, shared batches, ledger ----
run_sl run job.yaml --quiet
expect_status 0 "umx job"
py_check "umx stems, lengths, batches, ledger" <<'EOF'
import json, os, sqlite3, numpy as np
from pcm import raw, STEMS, TRACKS
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 4 and rep["tracks"]["failed"] == 0, rep["tracks"]
p = rep["pipeline"]
assert p["segment_samples"] == 44100 and p["segment_hop"] == 33075, p
assert p["mean_batch"] > 1, p
for t in TRACKS:
    x = raw("in/" + t)
    for s in STEMS:
        y = raw("out/stems/%s/%s.wav" % (t, s))
        assert y.shape == x.shape, (t, s, y.shape, x.shape)
        assert np.isfinite(y).all() and np.abs(y).max() > 0, (t, s)
db = sqlite3.connect("out/ledger.sqlite")
rows = {r[0]: r[1:] for r in db.execute("select id, status, outputs from tracks")}
for t in TRACKS:
    st, outs = rows[t]
    outs = json.loads(outs)
    assert st == "done" and len(outs) == 4 and all(os.path.exists("out/" + o) for o in outs), rows[t]
EOF

# ---- resume: nothing is redone, outputs untouched ----
snapshot out > snap1
run_sl run job.yaml --quiet
expect_status 0 "second run"
snapshot out > snap2
cmp -s snap1 snap2 && pass || fail "second run changed outputs"
py_check "second run skipped every track" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert rep["tracks"]["skipped"] == 4 and rep["tracks"]["ok"] == 0, rep["tracks"]
EOF
# ---- the CUDA kernels (emulated) give the CPU's stems ----
mkdir one && cp in/b.flac one/
run_sl run job.yaml --quiet --set 'input.paths=[one]' --set output.dir=emu --set runtime.backend=cuda-emu
expect_status 0 "cuda-emu run"
run_sl run job.yaml --quiet --set 'input.paths=[one]' --set output.dir=cpu1
expect_status 0 "cpu run"
py_check "cuda-emu stems equal the cpu stems" <<'EOF'
import numpy as np
from pcm import raw, STEMS
for s in STEMS:
    a = raw("emu/stems/b.flac/%s.wav" % s); b = raw("cpu1/stems/b.flac/%s.wav" % s)
    err = np.abs(a - b).max() / np.abs(b).max()
    assert err <= 1e-4, (s, err)
EOF

# ---- segmented (1 s, 0.25 s cross-fades) vs whole-track separation ----
run_sl run job.yaml --quiet --set 'input.paths=[in/a.wav]' --set output.dir=whole --set separation.segment_seconds=60 \
  --set separation.overlap_seconds=0
expect_status 0 "whole-track run"
py_check "segmenting changes umx output only moderately" <<'EOF'
import numpy as np
from pcm import raw, STEMS
worst = 99
for s in STEMS:
    a = raw("out/stems/a.wav/%s.wav" % s); b = raw("whole/stems/a.wav/%s.wav" % s)
    snr = 10 * np.log10((b ** 2).sum() / ((a - b) ** 2).sum())
    print("umx %s: 1 s segments (0.25 s cross-fades) vs whole track: SNR %.1f dB" % (s, snr), file=open("snr.txt", "a"))
    worst = min(worst, snr)
# the BiLSTM and the Wiener statistics see each segment on its own: the joins differ
assert worst > 20, worst
EOF
cat snr.txt 2>/dev/null

# an output-affecting option is another job: refused in the same folder, redone with --reset
run_sl run job.yaml --quiet --set separation.options.niter=0
expect_status 2 "option change into the same folder"
expect_grep "separation.options.niter" "$ERR" "the changed option is named"
run_sl run job.yaml --quiet --set separation.options.niter=0 --reset
expect_status 0 "option change with --reset"
py_check "option change redid the tracks" <<'EOF'
import json
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 4, rep["tracks"]
EOF

# ---- errors: no weights, wrong file ----
run_sl run job.yaml --quiet --set separation.weights=null
expect_status 2 "umx without weights"
expect_grep "separation.weights" "$ERR" "no-weights message"
finish
