#!/usr/bin/env bash
# `embedding.model: clap` through the runner with the small random-weight CLAP
# audio tower of tests/golden/clap (clip 2.5 s at 48 kHz): vectors of the mix
# and of a stem, per-window timelines, the track vector = the L2-normalised
# length-weighted mean of its window vectors (each window vector already
# normalised by the model), and index.json naming the checkpoint (path and the
# file's SHA-256), which `search --audio` uses. A fusion checkpoint is refused
# with a clear message.
set -u
source "$(dirname "$0")/lib.sh"
export OUT
in_tmp_dir
mkdir in
gen_tone in/a.wav 6.1 44100 2 pcm_s16le
gen_tone in/b.flac 1.3 48000 1 flac
W="$SL_SRC/tests/golden/clap/clap-small.safetensors"
cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out}
separation: {model: hpss}
embedding: {model: clap, weights: "$W", window_seconds: 2.5, hop_seconds: 2, timeline: true, sources: [mix, harmonic]}
YAML
run_sl run job.yaml --quiet
expect_status 0 "clap job"
W="$W" py_check "clap vectors, timelines and index.json" <<'PY'
import json, os, hashlib, numpy as np
for src in ("mix", "harmonic"):
    d = "out/embeddings/clap/" + src
    X = np.load(d + "/shard-00000.npy")
    meta = [json.loads(l) for l in open(d + "/shard-00000.jsonl")]
    assert X.shape == (2, 24) and X.dtype == np.float32, X.shape
    assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert [m["id"] for m in meta] == ["a.wav", "b.flac"] and all(m["model"] == "clap" for m in meta)
    TX = np.load(d + "/timeline/shard-00000.npy")
    tm = [json.loads(l) for l in open(d + "/timeline/shard-00000.jsonl")]
    assert np.allclose(np.linalg.norm(TX, axis=1), 1, atol=1e-5)  # the model's own normalisation
    for i, m in enumerate(meta):
        rows = [(j, t) for j, t in enumerate(tm) if t["id"] == m["id"]]
        assert [t["window"] for _, t in rows] == list(range(len(rows)))
        w = np.array([t["end"] - t["start"] for _, t in rows])
        mean = (TX[[j for j, _ in rows]] * w[:, None]).sum(0) / w.sum()
        mean /= np.linalg.norm(mean)
        assert np.abs(mean - X[i]).max() < 1e-5, (m["id"], np.abs(mean - X[i]).max())
    n = {m["id"]: sum(t["id"] == m["id"] for t in tm) for m in meta}
    assert n == {"a.wav": 3, "b.flac": 1}, n  # 6.1 s: windows at 0, 2, 4 s (the last 2.1 s); 1.3 s: one
    ix = json.load(open(d + "/index.json"))
    assert ix["model"] == "clap" and ix["dim"] == 24 and ix["sample_rate"] == 48000 and ix["channels"] == 1
    assert ix["weights"] == os.environ["W"], ix["weights"]
    assert ix["weights_sha256"] == hashlib.sha256(open(os.environ["W"], "rb").read()).hexdigest()
    assert ix["window_samples"] == 120000 and ix["hop_samples"] == 96000
# mix and stem vectors differ (the stem is only the harmonic part)
a = np.load("out/embeddings/clap/mix/shard-00000.npy"); b = np.load("out/embeddings/clap/harmonic/shard-00000.npy")
assert np.abs(a - b).max() > 1e-3
PY
# search --audio embeds the query with the model and checkpoint that index.json names
run_sl search out --audio in/a.wav --json -k 2
expect_status 0 "search --audio with clap shards"
py_check "--audio finds its own track with score 1" <<'PY'
import json, os
r = json.load(open(os.environ["OUT"]))
assert r[0]["id"] == "a.wav" and abs(r[0]["score"] - 1) <= 1e-5, r
PY
# a fusion checkpoint: refused before any track, naming the file and the reason
"$SL_PYTHON" - "$W" fusion.safetensors <<'PY'
import sys, json, struct
b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
end = max(v["data_offsets"][1] for k, v in h.items() if k != "__metadata__")
h["audio_branch.fusion_model.local_att.0.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [end, end + 4]}
s = json.dumps(h).encode(); s += b" " * (-len(s) % 8)
open(sys.argv[2], "wb").write(struct.pack("<Q", len(s)) + s + b[8 + n:] + b"\0\0\0\0")
PY
run_sl run job.yaml --quiet --set output.dir=out2 --set embedding.weights=fusion.safetensors
expect_status 2 "fusion checkpoint refused"
expect_grep "fusion checkpoint" "$ERR"
finish
