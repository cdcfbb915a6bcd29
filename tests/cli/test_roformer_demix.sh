#!/usr/bin/env bash
# Whole-track output of `stemline run` for the RoFormers equals the chunked
# inference users run (ZFTurbo's demix, as tools/gen_golden_roformer.py
# --demix transcribes it; references in tests/golden/roformer/demix/ from the
# bs-roformer package in float64) within 1e-4 of the reference's largest
# value (float32 here): tracks several chunks long (reflect border padding),
# 900 samples (padded, two chunks), shorter than one chunk (completed by
# reflection, and by zeros), num_overlap 4 with chunk_size set as options,
# Mel-Band RoFormer; four tracks batched together give the same stems, bit
# for bit, as one at a time (no track depends on its batch neighbours), and
# cuda-emu agrees with the reference too. Instrumental = mix - vocals.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?SL_SRC must point at the source tree}"
G="$SL_SRC/tests/golden/roformer"
in_tmp_dir

printf '%s\n' "input: {paths: [$G/demix/bs_o2]}" \
  "output: {dir: b4, stems: {format: wav, sample_format: f32}}" \
  "separation: {model: bs_roformer, weights: $G/bs_stereo_1stem.safetensors}" \
  "embedding: {model: none}" "runtime: {backend: cpu, batch_size: 4}" > job.yaml
export PYTHONPATH=$T
cat > cmp.py <<PY
import sys, numpy as np, sl_check
REF = np.load("$G/demix/ref.npz")
def check(out, set_name, track, tol=1e-4):
    ref = REF["%s/%s" % (set_name, track)]  # [stems][ch][n]
    x = sl_check.raw("$G/demix/%s/%s.wav" % (set_name, track), 2, 44100).T
    v = sl_check.raw("%s/stems/%s.wav/vocals.wav" % (out, track), 2, 44100).T
    assert v.shape == ref[0].shape, (track, v.shape, ref.shape)
    err = np.abs(v - ref[0]).max() / np.abs(ref[0]).max()
    print("%s %s/%s: vocals max error %.2e of the largest value" % (out, set_name, track, err))
    assert err <= tol, (out, track, err)
    import os
    ip = "%s/stems/%s.wav/instrumental.wav" % (out, track)
    if os.path.exists(ip):
        i = sl_check.raw(ip, 2, 44100).T
        ie = np.abs(i - (x - ref[0])).max() / np.abs(x - ref[0]).max()
        assert ie <= tol, (out, track, "instrumental", ie)
PY

run_sl run job.yaml --quiet
expect_status 0 "bs_roformer, batches of 4"
py_check "stems equal the reference demix (several chunks, padded, one chunk, zero-completed)" <<'PY'
import json
from cmp import check
rep = json.load(open("b4/report.json"))
assert rep["tracks"]["ok"] == 4, rep["tracks"]
p = rep["pipeline"]
assert p["segment_samples"] == 768 and p["segment_hop"] == 384, p
for t in ("long", "mid", "short", "tiny"):
    check("b4", "bs_o2", t)
PY

# the stems' settings recorded with the track: the reference chunking (a job of the runner's
# cross-fade, from before, does not count as done)
grep -q "separation.chunking" b4/ledger.sqlite && pass || fail "ledger does not record separation.chunking"

run_sl run job.yaml --quiet --set output.dir=b1 --set runtime.batch_size=1
expect_status 0 "bs_roformer, one chunk per batch"
py_check "a track's stems do not depend on its batch neighbours" <<'PY'
import filecmp
for t in ("long", "mid", "short", "tiny"):
    for s in ("vocals", "instrumental"):
        a, b = "b4/stems/%s.wav/%s.wav" % (t, s), "b1/stems/%s.wav/%s.wav" % (t, s)
        assert filecmp.cmp(a, b, shallow=False), (a, b)
PY

run_sl run job.yaml --quiet --set output.dir=o4 --set "input.paths=[$G/demix/bs_o4]" \
  --set separation.options.chunk_size=640 --set separation.options.num_overlap=4
expect_status 0 "chunk_size 640, num_overlap 4"
py_check "num_overlap 4 equals the reference" <<'PY'
import json
from cmp import check
p = json.load(open("o4/report.json"))["pipeline"]
assert p["segment_samples"] == 640 and p["segment_hop"] == 160, p
check("o4", "bs_o4", "long")
PY

run_sl run job.yaml --quiet --set output.dir=mel --set "input.paths=[$G/demix/mel]" \
  --set separation.model=mel_band_roformer --set "separation.weights=$G/mel_stereo_1stem.safetensors"
expect_status 0 "mel_band_roformer"
py_check "Mel-Band RoFormer equals the reference" <<'PY'
from cmp import check
check("mel", "mel", "long")
PY

run_sl run job.yaml --quiet --set output.dir=emu --set "input.paths=[$G/demix/bs_o4]" \
  --set separation.options.chunk_size=640 --set separation.options.num_overlap=4 --set runtime.backend=cuda-emu
expect_status 0 "cuda-emu"
py_check "cuda-emu equals the reference" <<'PY'
from cmp import check
check("emu", "bs_o4", "long")
PY

# the runner's own segment keys do not apply to these models
run_sl run job.yaml --quiet --set output.dir=bad --set separation.segment_seconds=2
expect_status 2 "segment_seconds with a RoFormer"
expect_grep "chunk_size" "$ERR" "message points at the chunk_size option"
run_sl run job.yaml --quiet --set output.dir=bad --set separation.options.num_overlap=0
expect_status 2 "num_overlap 0"
expect_grep "num_overlap" "$ERR" "message names num_overlap"
finish
