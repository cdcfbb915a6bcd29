#!/usr/bin/env bash
# embedding.sources and embedding.timeline through the runner: stems embedded
# into their own shards (a stem's vector is exactly what the stem file gives
# when embedded as an input), timelines with window spans whose weighted mean
# is the track vector, search by source, resume, per-source tags, scratch stems
# when stem files are off, and the errors for names that are not stems.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir
mkdir in
gen_tone in/a.wav 5.3 44100 2 pcm_s16le
gen_tone in/b.flac 3.0 48000 1 flac
gen_tone "in/sub/c d.wav" 2.2 22050 2 pcm_s16le
cat > job.yaml <<'YAML'
input: {paths: [in]}
output:
  dir: out
  stems: {sample_format: f32}
separation: {model: hpss}
embedding:
  model: melstats
  window_seconds: 2
  hop_seconds: 1
  sources: [mix, percussive, harmonic]
  timeline: true
YAML
run_sl run job.yaml --quiet
expect_status 0 "job with three sources and timelines"
for s in mix percussive harmonic; do
  [ -f "out/embeddings/melstats/$s/shard-00000.npy" ] && [ -f "out/embeddings/melstats/$s/index.json" ] &&
    [ -f "out/embeddings/melstats/$s/timeline/shard-00000.npy" ] && pass ||
    fail "shards of source $s missing: $(find out/embeddings | sort | tr '\n' ' ')"
done
[ ! -e out/embeddings/melstats/residual ] && pass || fail "residual was embedded but not asked for"
[ ! -e out/.stemline-scratch ] && pass || fail "scratch folder created although stems are written"

py_check "rows, sources, timeline spans" <<'PY'
import json, numpy as np
ids = ["a.wav", "b.flac", "sub/c d.wav"]
dur = {}
V = {}
for s in ["mix", "percussive", "harmonic"]:
    d = "out/embeddings/melstats/" + s
    X = np.load(d + "/shard-00000.npy")
    rows = [json.loads(l) for l in open(d + "/shard-00000.jsonl")]
    assert [r["id"] for r in rows] == ids, rows
    assert all(r["source"] == s and r["start"] == 0.0 and r["end"] == r["duration"] for r in rows), rows
    assert X.shape == (3, 256) and np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
    assert json.load(open(d + "/index.json"))["source"] == s
    for r in rows:
        dur.setdefault(r["id"], r["duration"])
        assert abs(dur[r["id"]] - r["duration"]) < 1e-9
    V[s] = X
    Tl = np.load(d + "/timeline/shard-00000.npy")
    tr = [json.loads(l) for l in open(d + "/timeline/shard-00000.jsonl")]
    assert len(tr) == Tl.shape[0] and np.allclose(np.linalg.norm(Tl, axis=1), 1, atol=1e-5)
    for i in ids:
        w = [r for r in tr if r["id"] == i]
        # windows 2 s every 1 s: starts 0, 1, 2, ...; the last one reaches the end
        assert [r["window"] for r in w] == list(range(len(w))), w
        assert all(abs(r["start"] - k) < 1e-6 for k, r in enumerate(w)), w
        assert all(abs(r["end"] - min(r["start"] + 2, dur[i])) < 1e-4 for r in w), (w, dur[i])
        assert abs(w[-1]["end"] - dur[i]) < 1e-4 and all(r["source"] == s for r in w)
    assert [len([r for r in tr if r["id"] == i]) for i in ids] == [5, 2, 2], [r["id"] for r in tr]
# the stems differ from the mix and from each other
assert np.abs(V["mix"] - V["percussive"]).max() > 1e-3 and np.abs(V["harmonic"] - V["percussive"]).max() > 1e-3
PY

# Each input is decoded once (one decoder feeds the separation at 44.1 kHz
# and the mix's embedding at its own rate), each written stem once more; the
# mix vectors are exactly those of a job that only embeds.
cat > mix-only.yaml <<'YAML'
input: {paths: [in]}
output: {dir: out-mix}
separation: {model: none}
embedding: {model: melstats, window_seconds: 2, hop_seconds: 1, timeline: true}
YAML
run_sl run mix-only.yaml --quiet
expect_status 0 "the mix alone"
py_check "one decode per input and per embedded stem; mix vectors as if embedded alone" <<'PY'
import json, numpy as np
p = json.load(open("out/report.json"))["pipeline"]
assert p["decodes"] == 3 + 3 * 2, p["decodes"]
assert json.load(open("out-mix/report.json"))["pipeline"]["decodes"] == 3
for sub in ["", "/timeline"]:
    a = np.load("out/embeddings/melstats/mix" + sub + "/shard-00000.npy")
    b = np.load("out-mix/embeddings/melstats/mix" + sub + "/shard-00000.npy")
    assert a.shape == b.shape and np.array_equal(a, b), (sub, np.abs(a - b).max())
PY

# A stem's vector is the vector of its stem file embedded as an input.
cat > stems-as-input.yaml <<'YAML'
input: {paths: [out/stems]}
output: {dir: out-stems}
separation: {model: none}
embedding: {model: melstats, window_seconds: 2, hop_seconds: 1}
YAML
run_sl run stems-as-input.yaml --quiet
expect_status 0 "the stem files as inputs"
py_check "stem vectors equal the vectors of the stem files" <<'PY'
import json, numpy as np
def load(d):
    X = np.load(d + "/shard-00000.npy")
    return {json.loads(l)["id"]: X[k] for k, l in enumerate(open(d + "/shard-00000.jsonl"))}
S = load("out-stems/embeddings/melstats/mix")
for s in ["percussive", "harmonic"]:
    V = load("out/embeddings/melstats/" + s)
    for i, v in V.items():
        w = S[i + "/" + s + ".wav"]
        assert np.abs(v - w).max() <= 1e-6, (s, i, np.abs(v - w).max())
PY

# search by source: every track's percussive stem finds itself
run_sl search out --source percussive --id a.wav --json -k 3
expect_status 0 "search --source percussive"
OUT="$OUT" py_check "search in the percussive shards" <<'PY'
import json, os
r = json.load(open(os.environ["OUT"]))
assert r[0]["id"] == "a.wav" and abs(r[0]["score"] - 1) <= 1e-5 and len(r) == 3, r
PY

# with normalize off, the duration-weighted mean of the timeline is the track vector
run_sl run job.yaml --quiet --set output.dir=out-raw --set embedding.normalize=false
expect_status 0 "job without normalisation"
py_check "track vector = length-weighted mean of its windows" <<'PY'
import json, numpy as np
for s in ["mix", "percussive"]:
    d = "out-raw/embeddings/melstats/" + s
    X = np.load(d + "/shard-00000.npy").astype(np.float64)
    ids = [json.loads(l)["id"] for l in open(d + "/shard-00000.jsonl")]
    Tl = np.load(d + "/timeline/shard-00000.npy").astype(np.float64)
    tr = [json.loads(l) for l in open(d + "/timeline/shard-00000.jsonl")]
    for k, i in enumerate(ids):
        sel = [j for j, r in enumerate(tr) if r["id"] == i]
        w = np.array([tr[j]["end"] - tr[j]["start"] for j in sel])
        m = (Tl[sel] * w[:, None]).sum(0) / w.sum()
        err = np.abs(m - X[k]).max() / np.abs(X[k]).max()
        assert err < 1e-5, (s, i, err)
PY

# a second run does nothing and changes nothing
before=$(snapshot out)
run_sl run job.yaml --quiet
expect_status 0 "second run"
[ "$before" = "$(snapshot out)" ] && pass || fail "second run changed outputs"
grep -q '"skipped": 3' out/report.json && pass || fail "second run did not skip the 3 done tracks: $(grep -o '"skipped": [0-9]*' out/report.json)"

# stems off: the stems are written to a scratch folder, embedded, removed;
# vectors as with f32 stem files
run_sl run job.yaml --quiet --set output.dir=out-nostems --set output.stems.enabled=false
expect_status 0 "stem vectors without stem files"
[ ! -e out-nostems/stems ] && pass || fail "stems written although disabled"
[ ! -e out-nostems/.stemline-scratch ] && pass || fail "scratch stems left behind: $(find out-nostems/.stemline-scratch)"
py_check "scratch-stem vectors equal the f32 stem-file vectors" <<'PY'
import numpy as np
for s in ["mix", "percussive", "harmonic"]:
    a = np.load("out/embeddings/melstats/%s/shard-00000.npy" % s)
    b = np.load("out-nostems/embeddings/melstats/%s/shard-00000.npy" % s)
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-6, (s, np.abs(a - b).max())
PY

# stems only (no mix): no mix shards
run_sl run job.yaml --quiet --set output.dir=out-drums --set 'embedding.sources=[percussive]' --set embedding.timeline=false
expect_status 0 "stem only"
[ -f out-drums/embeddings/melstats/percussive/shard-00000.npy ] && [ ! -e out-drums/embeddings/melstats/mix ] &&
  pass || fail "stem-only job: $(find out-drums/embeddings | tr '\n' ' ')"

# errors: a name that is no stem points at the line; stems without separation
cat > bad.yaml <<'YAML'
input: {paths: [in]}
output: {dir: out-bad}
embedding:
  model: melstats
  sources: [mix, vocals]
YAML
run_sl run bad.yaml --quiet
expect_status 2 "unknown stem name"
expect_grep "bad.yaml:5:" "$ERR" "error points at the line of embedding.sources"
expect_grep "'vocals' is not 'mix' nor a stem of separation model hpss (stems: harmonic, percussive, residual)" "$ERR" "error names the stems"
[ ! -e out-bad/ledger.sqlite ] && pass || fail "a job with a bad source name started"
run_sl run bad.yaml --quiet --set separation.model=none --set 'embedding.sources=[mix, harmonic]'
expect_status 2 "stems without separation"
expect_grep "separation.model is none" "$ERR" "stems without separation: the reason"
run_sl run bad.yaml --quiet --set 'embedding.sources=[mix, mix]'
expect_status 2 "a source twice"
expect_grep "listed twice" "$ERR" "a source twice: the reason"

# tags per source (cnn14 with the small random-weight test model)
W="$SL_SRC/tests/golden/cnn14/cnn14-small.safetensors"
cat > tags.yaml <<YAML
input: {paths: [in]}
output: {dir: out-tags, stems: {enabled: false}}
separation: {model: hpss}
embedding: {model: cnn14, weights: "$W", window_seconds: 1, tags_top_k: 3, sources: [percussive, mix]}
YAML
run_sl run tags.yaml --quiet
expect_status 0 "cnn14 tags of a stem"
py_check "tags.jsonl has a row per track and source" <<'PY'
import json
rows = [json.loads(l) for l in open("out-tags/tags/cnn14/tags.jsonl")]
got = [(r["source"], r["id"]) for r in rows]
ids = ["a.wav", "b.flac", "sub/c d.wav"]
assert got == [("percussive", i) for i in ids] + [("mix", i) for i in ids], got
assert all(len(r["tags"]) == 3 for r in rows)
by = {(r["source"], r["id"]): r["tags"] for r in rows}
assert any(by[("mix", i)] != by[("percussive", i)] for i in ids), "stem tags equal the mix tags"
PY
finish
