#!/usr/bin/env bash
# embedding.center: catalog (pipeline/center.h): vectors centred on the
# catalog mean before normalisation. Unrelated synthetic tracks' melstats
# cosines drop from ~0.8 to around 0; the shards equal numpy's
# normalise(raw - mean) with mean.npy the mean of the raw vectors; index.json
# names mean.npy and its hash; search --audio / --id equal numpy brute force on
# the centred vectors; a resumed run recentres on every done track; --reset to
# center: none drops the mean; a sharded job is centred per shard until
# `stemline merge` centres every set on the catalog mean (search and export
# refuse before); export writes the centred vectors.
set -u
source "$(dirname "$0")/lib.sh"
in_tmp_dir

mkdir -p in in2
gen_pitch in/p1.wav 3 220
gen_pitch in/p2.wav 3 1500
gen_tone in/t1.wav 3 22050 1 pcm_s16le
ffmpeg -nostdin -loglevel error -f lavfi -i "anoisesrc=d=3:c=pink:r=22050:a=0.3" in2/n1.wav || fail "fixture n1"
ffmpeg -nostdin -loglevel error -f lavfi -i "anoisesrc=d=3:c=white:r=22050:a=0.1" in2/n2.wav || fail "fixture n2"
ffmpeg -nostdin -loglevel error -f lavfi -i "sine=f=60:d=3:r=22050" in2/s1.wav || fail "fixture s1"
quick_job job.yaml
sed -i 's/paths: \[in\]/paths: [in, in2]/' job.yaml
C="--set embedding.center=catalog"

run_sl run job.yaml --quiet --set output.dir=plain
expect_status 0 "uncentred run"
run_sl run job.yaml --quiet --set output.dir=raw --set embedding.normalize=false
expect_status 0 "uncentred, unnormalised run"
run_sl run job.yaml --quiet --set output.dir=cen $C
expect_status 0 "centred run"
run_sl search cen --audio in/p1.wav -k 6 --json
expect_status 0 "search --audio, centred"
cp "$OUT" audio.json
run_sl search cen --id p2.wav -k 6 --json
expect_status 0 "search --id, centred"
cp "$OUT" id.json

py_check "cosines, mean.npy, index.json, search against numpy" <<'PY'
import json, numpy as np
d = "embeddings/melstats/mix/"
P = np.load("plain/" + d + "shard-00000.npy").astype(np.float64)
R = np.load("raw/" + d + "shard-00000.npy").astype(np.float64)
X = np.load("cen/" + d + "shard-00000.npy").astype(np.float64)
ids = [json.loads(l)["id"] for l in open("cen/" + d + "shard-00000.jsonl")]
iu = np.triu_indices(len(ids), 1)
before, after = (P @ P.T)[iu], (X @ X.T)[iu]
print("cosines before", before.round(3), "after", after.round(3))
assert before.mean() > 0.7 and before.min() > 0.5, before
assert abs(after.mean()) < 0.3 and after.min() < -0.2 and np.median(np.abs(after)) < 0.5, after
m = np.load("cen/" + d + "mean.npy")
assert m.shape == (1, R.shape[1]) and m.dtype == np.float32
assert np.allclose(m[0], R.mean(0), rtol=1e-5, atol=1e-6 * np.abs(R).max())
C = R - m.astype(np.float64)
C /= np.linalg.norm(C, axis=1, keepdims=True)
assert np.abs(X - C).max() < 1e-5, np.abs(X - C).max()
assert np.allclose(np.linalg.norm(X, axis=1), 1, atol=1e-5)
ix = json.load(open("cen/" + d + "index.json"))
assert ix["center"] == "catalog" and ix["center_file"] == "mean.npy" and ix["center_rows"] == 6, ix
assert len(ix["center_hash"]) == 32 and int(ix["center_hash"], 16) >= 0
assert "center" not in json.load(open("plain/" + d + "index.json"))
def check(hits, q, what):
    s = X @ q
    order = np.argsort(-s, kind="stable")
    assert [h["id"] for h in hits] == [ids[i] for i in order], (what, hits, s)
    assert np.allclose([h["score"] for h in hits], s[order], atol=1e-5), (what, hits, s[order])
q = C[ids.index("p1.wav")]                # the query file's raw vector, centred like the rows
check(json.load(open("audio.json")), q, "--audio")
check(json.load(open("id.json")), X[ids.index("p2.wav")], "--id")
PY

# timelines: the window rows are centred on the mean of the window rows
run_sl run job.yaml --quiet --set output.dir=tlraw --set embedding.normalize=false --set embedding.timeline=true \
  --set embedding.window_seconds=1
expect_status 0 "timeline run, raw"
run_sl run job.yaml --quiet --set output.dir=tlcen --set embedding.timeline=true --set embedding.window_seconds=1 $C
expect_status 0 "timeline run, centred"
py_check "timeline rows centred on their own mean" <<'PY'
import json, numpy as np
for sub in ("", "timeline/"):
    d = "embeddings/melstats/mix/" + sub
    R = np.load("tlraw/" + d + "shard-00000.npy").astype(np.float64)
    X = np.load("tlcen/" + d + "shard-00000.npy").astype(np.float64)
    m = np.load("tlcen/" + d + "mean.npy").astype(np.float64)
    assert np.allclose(m[0], R.mean(0), rtol=1e-5, atol=1e-6 * np.abs(R).max()), sub
    C = R - m
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    assert np.abs(X - C).max() < 1e-5, (sub, np.abs(X - C).max())
    assert json.load(open("tlcen/" + d + "index.json"))["center_rows"] == len(R)
assert len(np.load("tlcen/embeddings/melstats/mix/timeline/shard-00000.npy")) == 18   # 6 tracks x 3 windows
PY

# a changed mean file is refused by search --audio, naming it
cp cen/embeddings/melstats/mix/mean.npy keep.npy
printf 'x' >> cen/embeddings/melstats/mix/mean.npy
run_sl search cen --audio in/p1.wav -k 1
expect_status 1 "search with a changed mean.npy"
expect_grep "mean.npy: content hash" "$ERR" "the changed mean is named"
cp keep.npy cen/embeddings/melstats/mix/mean.npy

# resume: part of the catalog first, then all of it: the mean and the vectors
# are those of a run over everything at once
run_sl run job.yaml --quiet --set output.dir=res $C --set 'input.paths=[in]'
expect_status 0 "centred run over part of the catalog"
cmp -s res/embeddings/melstats/mix/mean.npy cen/embeddings/melstats/mix/mean.npy && \
  fail "the partial run's mean equals the whole catalog's" || pass
run_sl run job.yaml --quiet --set output.dir=res $C
expect_status 0 "centred run resumed over the whole catalog"
for f in mean.npy shard-00000.npy shard-00000.jsonl index.json; do
  cmp -s "res/embeddings/melstats/mix/$f" "cen/embeddings/melstats/mix/$f" && pass || fail "resumed run: $f differs"
done

# center is an output-affecting setting: changing it is refused, --reset drops the mean
run_sl run job.yaml --quiet --set output.dir=res
expect_status 2 "center: none into a centred folder"
expect_grep "embedding.center" "$ERR" "the differing key is named"
run_sl run job.yaml --quiet --set output.dir=res --reset
expect_status 0 "--reset to center: none"
[ ! -e res/embeddings/melstats/mix/mean.npy ] && pass || fail "--reset left mean.npy"
cmp -s res/embeddings/melstats/mix/shard-00000.npy plain/embeddings/melstats/mix/shard-00000.npy && pass || \
  fail "--reset to center: none: vectors differ from an uncentred run"

# export: the centred vectors
run_sl export cen --format npy --quiet
expect_status 0 "export, centred"
py_check "exported vectors are the centred ones" <<'PY'
import numpy as np
a = np.load("cen/export/melstats-mix.npy")
b = np.load("cen/embeddings/melstats/mix/shard-00000.npy")
assert a.shape == b.shape and np.array_equal(a, b)
PY

# sharded: each shard centred on its own mean until merge
for i in 0 1; do
  run_sl run job.yaml --quiet --set output.dir=sh $C --shard "$i/2"
  expect_status 0 "centred shard $i/2"
done
run_sl search sh --id p2.wav -k 2
expect_status 1 "search over shards centred apart"
expect_grep "stemline merge" "$ERR" "says to merge"
run_sl export sh --quiet
expect_status 2 "export over shards centred apart"
expect_grep "stemline merge" "$ERR" "says to merge"
run_sl merge sh
expect_status 0 "merge"
expect_grep "centred sh/embeddings/melstats/mix on the mean of 6 rows of 2 shards" "$OUT" "merge centres"
[ ! -e sh/embeddings/melstats/mix/s0000of0002-mean.npy ] && pass || fail "merge left a shard's own mean"
"$SL_PYTHON" -c 'import numpy as np, sys
a, b = np.load("sh/embeddings/melstats/mix/mean.npy"), np.load("cen/embeddings/melstats/mix/mean.npy")
sys.exit(0 if a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max()) else 1)' && pass || \
  fail "merged mean differs from the unsharded run's"
run_sl search sh --id p2.wav -k 6 --json
expect_status 0 "search over merged shards"
"$SL_PYTHON" - "$OUT" <<'PY' && pass || fail "merged shards score differently from the unsharded run"
import json, sys
a, b = json.load(open("id.json")), json.load(open(sys.argv[1]))
assert [h["id"] for h in a] == [h["id"] for h in b], (a, b)
assert all(abs(x["score"] - y["score"]) < 1e-5 for x, y in zip(a, b)), (a, b)
PY
snap=$(sha256sum sh/embeddings/melstats/mix/*)
run_sl merge sh
expect_status 0 "merge again"
[ "$snap" = "$(sha256sum sh/embeddings/melstats/mix/*)" ] && pass || fail "a second merge changed the vectors"
finish
