#!/usr/bin/env bash
# Cnn14 weights with the batch norms folded at conversion (tools/convert_cnn14.py
# --fold-bn, stemline.bn_folded=1): the file holds folded conv weights and
# biases and no conv batch norms; the runner maps them from the file (no
# conversion at load) and computes the same vectors and tags, bit for bit, as
# from the unfolded file folded at load, on one worker and on two (each its own
# mapping); the cuda-emu backend (weights uploaded, not mapped) agrees; a bad
# flag is refused with the file named; two workers on the mapped file share one
# set of Winograd forms.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir
mkdir in
gen_tone in/a.wav 3.5 44100 2 pcm_s16le
gen_tone in/b.flac 1.2 32000 1 flac
gen_tone in/c.wav 2 44100 1 pcm_s16le
W="$SL_SRC/tests/golden/cnn14/cnn14-small.safetensors"

"$SL_PYTHON" "$SL_SRC/tools/convert_cnn14.py" --fold-bn --out folded.safetensors "$W" >conv.log 2>&1
[ $? -eq 0 ] && pass || { fail "convert_cnn14.py --fold-bn on a stemline file"; cat conv.log >&2; }
run_sl models info --json --tensors folded.safetensors
expect_status 0 "models info reads the folded file"
cp "$OUT" folded.json
py_check "folded file: conv biases, no conv batch norms, the flag" <<'PY'
import json
j = json.load(open("folded.json"))
assert j["metadata"]["stemline.bn_folded"] == "1", j["metadata"]
names = {t["name"] for t in j["tensor_list"]}
assert not any(".bn1." in n or ".bn2." in n for n in names), names
for b in range(1, 7):
    for c in (1, 2):
        assert "conv_block%d.conv%d.bias" % (b, c) in names, names
assert "bn0.weight" in names and "fc1.weight" in names, names
PY
# folding a folded file is refused
"$SL_PYTHON" "$SL_SRC/tools/convert_cnn14.py" --fold-bn --out twice.safetensors folded.safetensors >conv.log 2>&1
[ $? -eq 1 ] && pass || fail "folding twice must fail"
expect_grep "folded already" conv.log "folding twice is said"
[ ! -e twice.safetensors ] && pass || fail "no file written for a refused fold"

cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out}
separation: {model: none}
embedding: {model: cnn14, weights: "$W", window_seconds: 1, tags_top_k: 5}
runtime: {backend: cpu, threads: 1}
YAML
run_sl run job.yaml --quiet --set output.dir=out-load
expect_status 0 "unfolded weights (folded at load)"
run_sl run job.yaml --quiet --set output.dir=out-map --set embedding.weights=folded.safetensors
expect_status 0 "folded weights (mapped)"
run_sl run job.yaml --quiet --set output.dir=out-map2 --set embedding.weights=folded.safetensors \
  --set runtime.threads=2 --set runtime.model_workers=2
expect_status 0 "folded weights, two workers"
run_sl run job.yaml --quiet --set output.dir=out-emu --set embedding.weights=folded.safetensors \
  --set runtime.backend=cuda-emu
expect_status 0 "folded weights on cuda-emu (uploaded)"
py_check "the same vectors and tags from either file" <<'PY'
import json, glob
import numpy as np
def vecs(d):
    fs = sorted(glob.glob(d + "/embeddings/cnn14/mix/*.npy"))
    assert fs, d
    return np.concatenate([np.load(f) for f in fs])
def tags(d):
    return [json.loads(l) for l in open(d + "/tags/cnn14/tags.jsonl")]
a = vecs("out-load")
assert a.shape[0] == 3, a.shape
for d in ("out-map", "out-map2"):
    assert np.array_equal(a, vecs(d)), d
    assert tags("out-load") == tags(d), d
p = json.load(open("out-map2/report.json"))["pipeline"]
assert p["workers"] == 2 and all(n > 0 for n in p["worker_batches"]), p
e = vecs("out-emu")
assert np.abs(e - a).max() <= 1e-5, np.abs(e - a).max()
PY

# the Winograd forms of the mapped (folded) weights are made once and shared by
# both workers (pipeline.fixed_form_uses = 2 x fixed_forms), with the same bits
# as one worker; weights folded at load are each worker's own copy: one form each.
# Tracks of exactly two 3 s windows: a shorter last window is too small for
# Winograd, and a worker that happened to get only such windows never used a form
mkdir in3
for i in 1 2 3 4; do gen_tone in3/t$i.wav 6 44100 1 pcm_s16le; done
for spec in "w1 1 folded.safetensors" "w2 2 folded.safetensors" "w2u 2 $W"; do
  set -- $spec
  run_sl run job.yaml --quiet --set "input.paths=[in3]" --set output.dir=out-$1 --set runtime.threads=$2 \
    --set runtime.model_workers=$2 --set runtime.batch_size=1 --set embedding.window_seconds=3 --set "embedding.weights=$3"
  expect_status 0 "3 s windows (Winograd at block 4), $2 worker(s), $3"
done
py_check "derived forms of mapped weights are shared by the workers" <<'PY'
import glob, json
import numpy as np
def rep(d):
    return json.load(open(d + "/report.json"))["pipeline"]
def vecs(d):
    return np.concatenate([np.load(f) for f in sorted(glob.glob(d + "/embeddings/cnn14/mix/*.npy"))])
one, two, own = rep("out-w1"), rep("out-w2"), rep("out-w2u")
assert one["fixed_forms"] >= 1 and one["fixed_form_uses"] == one["fixed_forms"], one
active = sum(n > 0 for n in two["worker_batches"])
assert two["workers"] == 2 and active == 2, two
assert two["fixed_forms"] == one["fixed_forms"] and two["fixed_form_uses"] == 2 * two["fixed_forms"], two
assert two["fixed_forms_mb"] == one["fixed_forms_mb"], (one, two)
assert sum(n > 0 for n in own["worker_batches"]) == 2, own
assert own["fixed_forms"] == 2 * one["fixed_forms"] and own["fixed_form_uses"] == own["fixed_forms"], own
assert np.array_equal(vecs("out-w1"), vecs("out-w2")) and np.array_equal(vecs("out-w1"), vecs("out-w2u"))
PY

# the automatic worker count counts mapped weights once: with 513 MB for the
# models, two workers fit with the folded file (each 256 MB of work, plus the
# 0.29 MB of shared weights and their derived forms once, shared by the workers)
# and one does not with the unfolded one (each 256 MB + its own 2 x 0.29 MB copy:
# 513.2 MB for two)
run_sl run job.yaml --quiet --set output.dir=out-mem-map --set embedding.weights=folded.safetensors \
  --set runtime.threads=2 --set runtime.max_model_memory_mb=513
expect_status 0 "folded weights, 513 MB for the models"
run_sl run job.yaml --quiet --set output.dir=out-mem-load --set runtime.threads=2 --set runtime.max_model_memory_mb=513
expect_status 0 "unfolded weights, 513 MB for the models"
py_check "shared weights are counted once" <<'PY'
import json, os
m = json.load(open("out-mem-map/report.json"))["pipeline"]
l = json.load(open("out-mem-load/report.json"))["pipeline"]
mb = os.path.getsize("folded.safetensors") / 1048576
assert m["workers"] == 2 and abs(m["shared_weights_mb"] - mb) < 0.05, m
assert "and the shared weights fits in 513 MB" in m["workers_reason"], m["workers_reason"]
assert l["workers"] == 1 and l["shared_weights_mb"] == 0, l
assert "auto: 1 of 2 by memory" in l["workers_reason"], l["workers_reason"]
assert l["worker_memory_mb"] > m["worker_memory_mb"], (l, m)
PY

# a flag that is neither 0 nor 1
"$SL_PYTHON" - "$SL_SRC/tools" <<'PY' || fail "writing bad-flag.safetensors"
import sys
sys.path.insert(0, sys.argv[1])
import stemline_st
t, m = stemline_st.load("folded.safetensors")
m["stemline.bn_folded"] = "yes"
stemline_st.save("bad-flag.safetensors", t, m)
PY
run_sl run job.yaml --set output.dir=out-bad --set embedding.weights=bad-flag.safetensors
expect_status 2 "bad stemline.bn_folded"
expect_grep "bad-flag.safetensors: metadata stemline.bn_folded is 'yes', expected 0 or 1" "$ERR" "the file and flag are named"
finish
