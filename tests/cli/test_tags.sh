#!/usr/bin/env bash
# Cnn14 through the runner: vectors and AudioSet tags per track (small
# random-weight model from tests/golden/cnn14, so the labels themselves are
# not meaningful): tags.jsonl in id order, k entries sorted by score in
# [0, 1], the shipped label names, top-k consistent across k, off with k = 0.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir
mkdir in
gen_tone in/a.wav 3.5 44100 2 pcm_s16le
gen_tone in/b.flac 1.2 32000 1 flac
W="$SL_SRC/tests/golden/cnn14/cnn14-small.safetensors"
cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out}
separation: {model: none}
embedding: {model: cnn14, weights: "$W", window_seconds: 1, tags_top_k: 5}
YAML
run_sl run job.yaml --quiet
expect_status 0 "cnn14 job"
py_check "tags.jsonl and vectors" <<'PY'
import json, csv, os, numpy as np
rows = [json.loads(l) for l in open("out/tags/cnn14/tags.jsonl")]
assert [r["id"] for r in rows] == ["a.wav", "b.flac"], rows
labels = {int(r["index"]): r["display_name"] for r in csv.DictReader(open(os.environ["SL_SRC"] + "/data/audioset_labels.csv"))}
assert len(labels) == 527
for r in rows:
    t = r["tags"]
    assert len(t) == 5 and r["model"] == "cnn14" and r["source"] == "mix"
    s = [x["score"] for x in t]
    assert s == sorted(s, reverse=True) and all(0 <= x <= 1 for x in s), s
    assert all(x["label"] == labels[x["index"]] for x in t), t
X = np.load("out/embeddings/cnn14/mix/shard-00000.npy")
assert X.shape[0] == 2 and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
# the weights are named by path; only clap checkpoints are hashed (search --text)
ix = json.load(open("out/embeddings/cnn14/mix/index.json"))
assert ix["weights"].endswith("cnn14-small.safetensors") and ix.get("weights_sha256") is None, ix
PY
# top-k is a prefix of a larger top-k (same scores, same order)
run_sl run job.yaml --quiet --set output.dir=out2 --set embedding.tags_top_k=20
expect_status 0 "cnn14 job, top 20"
py_check "top 5 is the prefix of top 20" <<'PY'
import json
a = [json.loads(l) for l in open("out/tags/cnn14/tags.jsonl")]
b = [json.loads(l) for l in open("out2/tags/cnn14/tags.jsonl")]
for x, y in zip(a, b):
    assert x["tags"] == y["tags"][:5], (x, y)
PY
# no tags for a model without a classifier head, and none when tags_top_k is 0
run_sl run job.yaml --quiet --set output.dir=out3 --set embedding.tags_top_k=0
expect_status 0 "tags off"
[ ! -e out3/tags ] && pass || fail "tags written with tags_top_k 0"
finish
