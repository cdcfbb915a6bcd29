#!/usr/bin/env bash
# Zero-shot tags of a clap job (embedding.text_labels / text_template) with the
# small random-weight CLAP towers of tests/golden (the audio tower of
# tests/golden/clap and the text tower of tests/golden/clap_text joined into one
# file, as tools/convert_clap.py writes them, with a logit_scale_a): tags.jsonl
# holds, per track and source, the labels by the softmax over labels of
# exp(logit_scale_a) * cosine, and the cosines, equal to numpy computed from the
# written track vectors and the `stemline embed-text` vectors of the same
# prompts; tags_top_k limits them. The default list; blank and duplicate label
# lines, a label file with a non-clap model, a bad template and weights without
# logit_scale_a are config errors (exit 2).
set -u
source "$(dirname "$0")/lib.sh"
export OUT
in_tmp_dir
mkdir in
gen_tone in/a.wav 6.1 44100 2 pcm_s16le
gen_tone in/b.flac 1.3 48000 1 flac
# join.py AUDIO TEXT OUT LOGIT_SCALE_A|none
cat > join.py <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
ha, da = load(sys.argv[1]); ht, dt = load(sys.argv[2])
meta = dict(ha.pop("__metadata__"))
tm = ht.pop("__metadata__")
meta.update({k: v for k, v in tm.items() if k.startswith("clap.text.") or k in ("clap.tmodel", "clap.joint_dim", "clap.enable_fusion")})
ents = []
for hd, d, keep in ((ha, da, lambda k: True), (ht, dt, lambda k: not k.startswith("audio_branch."))):
    for k, v in hd.items():
        if keep(k):
            b, e = v["data_offsets"]
            ents.append((k, v["dtype"], v["shape"], d[b:e]))
if sys.argv[4] != "none":
    ents.append(("logit_scale_a", "F32", [], struct.pack("<f", float(sys.argv[4]))))
size = {"I64": 8, "F64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "U8": 1, "BOOL": 1}
ents.sort(key=lambda t: -size[t[1]])  # no gaps, every tensor aligned to its element size
h, data = {"__metadata__": meta}, bytearray()
for k, dt_, shape, raw in ents:
    h[k] = {"dtype": dt_, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
s = json.dumps(h).encode(); s += b" " * (-len(s) % 8)
open(sys.argv[3], "wb").write(struct.pack("<Q", len(s)) + s + bytes(data))
PY
"$SL_PYTHON" join.py "$SL_SRC/tests/golden/clap/clap-small.safetensors" "$SL_SRC/tests/golden/clap_text/small.safetensors" \
  both.safetensors 2.5
W=$PWD/both.safetensors
printf '# five labels\nhappy piano\nrock\n  a dog barking  \ndrums and bass\nsilence\n' > labels.txt
cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out}
separation: {model: hpss}
embedding:
  model: clap
  weights: "$W"
  window_seconds: 2.5
  hop_seconds: 2
  sources: [mix, harmonic]
  text_labels: labels.txt
  text_template: "This is a sound of {}."
YAML
run_sl run job.yaml --quiet
expect_status 0 "clap job with zero-shot labels"
run_sl embed-text --model "$W" --backend cpu --out q.npy -- "This is a sound of happy piano." "This is a sound of rock." \
  "This is a sound of a dog barking." "This is a sound of drums and bass." "This is a sound of silence."
expect_status 0 "embed-text of the prompts"
check_tags() { # DIR K
  D=$1 K=$2 py_check "tags.jsonl of $1 equal numpy's softmax and cosines (top $2)" <<'PY'
import json, math, os
import numpy as np
d, k = os.environ["D"], int(os.environ["K"])
labels = ["happy piano", "rock", "a dog barking", "drums and bass", "silence"]
T = np.load("q.npy").astype(np.float64)
rows = [json.loads(l) for l in open(d + "/tags/clap/tags.jsonl")]
assert [(r["id"], r["source"]) for r in rows] == [("a.wav", "mix"), ("b.flac", "mix"), ("a.wav", "harmonic"),
                                                  ("b.flac", "harmonic")], rows
for src in ("mix", "harmonic"):
    X = np.load(d + "/embeddings/clap/%s/shard-00000.npy" % src).astype(np.float64)
    ids = [json.loads(l)["id"] for l in open(d + "/embeddings/clap/%s/shard-00000.jsonl" % src)]
    for x, i in zip(X, ids):
        cos = T @ (x / np.linalg.norm(x))
        z = math.exp(2.5) * cos  # logit_scale_a = 2.5
        p = np.exp(z - z.max()); p /= p.sum()
        tags = next(r["tags"] for r in rows if r["id"] == i and r["source"] == src)
        order = list(np.argsort(-p, kind="stable"))[:k]
        assert [t["index"] for t in tags] == order, (tags, p)
        assert [t["label"] for t in tags] == [labels[j] for j in order]
        assert max(abs(t["score"] - p[t["index"]]) for t in tags) < 2e-6, (tags, p)
        assert max(abs(t["cosine"] - cos[t["index"]]) for t in tags) < 2e-6, (tags, cos)
        if k == len(labels):
            assert abs(sum(t["score"] for t in tags) - 1) < 1e-5
    assert p.max() - p.min() > 1e-4  # the scores tell the labels apart
PY
}
check_tags out 5
run_sl run job.yaml --quiet --set output.dir=out2 --set embedding.tags_top_k=2
expect_status 0 "tags_top_k 2"
check_tags out2 2

# the default list: every label of data/clap_music_labels.txt, comments left out
run_sl run job.yaml --quiet --set output.dir=out3 --set embedding.text_labels=default --set embedding.tags_top_k=1000
expect_status 0 "the default label list"
L="$SL_SRC/data/clap_music_labels.txt" py_check "default labels" <<'PY'
import json, os
want = [l.strip() for l in open(os.environ["L"]) if l.strip() and not l.startswith("#")]
assert len(want) >= 30 and len(set(want)) == len(want)
for r in map(json.loads, open("out3/tags/clap/tags.jsonl")):
    assert sorted(t["label"] for t in r["tags"]) == sorted(want), r
    assert abs(sum(t["score"] for t in r["tags"]) - 1) < 1e-4
PY

# errors: exit 2 naming the place
printf 'rock\n\njazz\n' > blank.txt
run_sl run job.yaml --quiet --set output.dir=e1 --set embedding.text_labels=blank.txt
expect_status 2 "blank label line"
expect_grep "blank.txt:2: blank line" "$ERR" "blank.txt:2: blank line"
printf 'rock\njazz\nrock\n' > dup.txt
run_sl run job.yaml --quiet --set output.dir=e2 --set embedding.text_labels=dup.txt
expect_status 2 "duplicate label"
expect_grep "dup.txt:3: duplicate label 'rock' (also on line 1)" "$ERR" "dup.txt:3: duplicate label 'rock' (also on line 1)"
run_sl run job.yaml --quiet --set output.dir=e3 --set embedding.text_labels=missing.txt
expect_status 2 "missing label file"
expect_grep "missing.txt" "$ERR" "missing.txt"
run_sl run job.yaml --quiet --set output.dir=e4 --set 'embedding.text_template=no hole'
expect_status 2 "template without {}"
expect_grep "embedding.text_template" "$ERR" "embedding.text_template"
cat > cnn.yaml <<YAML
input: {paths: [in]}
output: {dir: e5}
embedding:
  model: melstats
  text_labels: labels.txt
YAML
run_sl run cnn.yaml --quiet
expect_status 2 "labels with a model without a text tower"
expect_grep "cnn.yaml:5:3: key 'embedding.text_labels': zero-shot labels need a model with a text tower (embedding.model: clap)" "$ERR" "the error names the YAML line"
"$SL_PYTHON" join.py "$SL_SRC/tests/golden/clap/clap-small.safetensors" "$SL_SRC/tests/golden/clap_text/small.safetensors" \
  nolog.safetensors none
run_sl run job.yaml --quiet --set output.dir=e6 --set embedding.weights=nolog.safetensors
expect_status 2 "weights without logit_scale_a"
expect_grep "no logit_scale_a" "$ERR" "no logit_scale_a"
run_sl run job.yaml --quiet --set output.dir=e7 --set "embedding.weights=$SL_SRC/tests/golden/clap/clap-small.safetensors"
expect_status 2 "weights without a text tower"
expect_grep "embedding.text_labels: the text tower: " "$ERR" "the text tower is missing"
finish
