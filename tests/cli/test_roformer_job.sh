#!/usr/bin/env bash
# The RoFormers (separation.model: bs_roformer / mel_band_roformer) through the
# whole runner with the small random-weight models of the golden tests
# (tests/golden/roformer/): segments of the checkpoint's chunk_size (768 samples
# there, so many segments and joins per track), the instrumental stem of a
# one-stem vocals model (= mix - vocals), a mono four-stem model fed stereo and
# mono files, cpu vs cuda-emu, and a weights file of the other architecture.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
G="$SL_SRC/tests/golden/roformer"
in_tmp_dir

mkdir -p in one
gen_tone in/a.wav 1 44100 2 pcm_s16le
gen_tone in/b.mp3 0.6 44100 1 libmp3lame
gen_tone in/c.wav 0.004 44100 2 pcm_s16le
gen_tone one/e.wav 0.1 44100 2 pcm_s16le
f32_job job.yaml bs_roformer <<JOB
  weights: $G/bs_stereo_1stem.safetensors
embedding:
  model: none
runtime:
  backend: cpu
  batch_size: 4
JOB
export PYTHONPATH=$T
cat > pcm.py <<'PY'
import sl_check
def raw(path, ch=2, rate=44100):
    return sl_check.raw(path, ch, rate)
PY

run_sl run job.yaml --quiet
expect_status 0 "bs_roformer job"
py_check "vocals + instrumental, lengths, segments of chunk_size" <<'PY'
import json, numpy as np
from pcm import raw
rep = json.load(open("out/report.json"))
assert rep["tracks"]["ok"] == 3 and rep["tracks"]["failed"] == 0, rep["tracks"]
p = rep["pipeline"]
assert p["segment_samples"] == 768 and p["segment_hop"] == 384, p
for t in ("a.wav", "b.mp3", "c.wav"):
    x = raw("in/" + t)
    v = raw("out/stems/%s/vocals.wav" % t)
    i = raw("out/stems/%s/instrumental.wav" % t)
    assert v.shape == x.shape == i.shape, (t, v.shape, x.shape)
    assert np.isfinite(v).all() and np.abs(v).max() > 0, t
    if t.endswith(".mp3"):  # ffmpeg's and stemline's mp3 decoders may align differently
        continue
    # both stems are joined with the same weights: their sum stays the mix
    err = np.abs(v + i - x).max()
    assert err <= 1e-5 * max(1.0, np.abs(x).max()), (t, err)
PY

run_sl run job.yaml --quiet --set 'input.paths=[one]' --set output.dir=emu --set runtime.backend=cuda-emu
expect_status 0 "cuda-emu run"
run_sl run job.yaml --quiet --set 'input.paths=[one]' --set output.dir=cpu1
expect_status 0 "cpu run"
py_check "cuda-emu stems equal the cpu stems" <<'PY'
import numpy as np
from pcm import raw
for s in ("vocals", "instrumental"):
    a = raw("emu/stems/e.wav/%s.wav" % s); b = raw("cpu1/stems/e.wav/%s.wav" % s)
    err = np.abs(a - b).max() / np.abs(b).max()
    assert err <= 1e-4, (s, err)
PY

# a mono four-stem model: the decoder down-mixes, four stems, no instrumental
run_sl run job.yaml --quiet --set output.dir=mono --set "separation.weights=$G/bs_mono_4stem.safetensors"
expect_status 0 "mono four-stem job"
py_check "four mono stems" <<'PY'
import os, numpy as np
from pcm import raw
for t in ("a.wav", "b.mp3"):
    names = sorted(os.listdir("mono/stems/" + t))
    assert names == ["bass.wav", "drums.wav", "other.wav", "vocals.wav"], names
    y = raw("mono/stems/%s/vocals.wav" % t, ch=1)
    assert np.isfinite(y).all() and np.abs(y).max() > 0
PY

# mel_band_roformer, instrumental off
run_sl run job.yaml --quiet --set output.dir=mel --set separation.model=mel_band_roformer \
  --set "separation.weights=$G/mel_stereo_1stem.safetensors" --set separation.options.instrumental=false
expect_status 0 "mel_band_roformer job"
py_check "mel: vocals only" <<'PY'
import os
assert sorted(os.listdir("mel/stems/a.wav")) == ["vocals.wav"], os.listdir("mel/stems/a.wav")
PY

# errors: the other architecture's file, no weights
run_sl run job.yaml --quiet --set output.dir=bad --set "separation.weights=$G/mel_stereo_1stem.safetensors"
expect_status 2 "mel weights as bs_roformer"
expect_grep "mel_stereo_1stem.safetensors" "$ERR" "wrong-architecture message names the file"
run_sl run job.yaml --quiet --set output.dir=bad2 --set separation.weights=null
expect_status 2 "bs_roformer without weights"
expect_grep "separation.weights" "$ERR" "no-weights message"

# stemline models: listed (needing weights), the licence note, info on a converted file
run_sl models
expect_status 0 "models list"
expect_grep "mel_band_roformer" "$OUT" "list names mel_band_roformer"
expect_grep "research-only" "$OUT" "list states the MUSDB18 terms"
run_sl models info "$G/bs_mono_4stem.safetensors"
expect_status 0 "models info"
expect_grep "bs_roformer" "$OUT" "info shows the architecture"
finish
