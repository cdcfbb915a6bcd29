#!/usr/bin/env bash
# `stemline export`: a catalog of 7 tracks run as two shards (--shard 0/2, 1/2)
# plus an unsharded run of 3 of them into the same folder (duplicates), with
# timelines and two sources, is exported to one table per (model, source):
# rows in track-id order with a global row id, each track once, float64 times,
# string ids, vectors equal to the shards' (float32 and float16), several row
# groups; read back with pandas.read_parquet, pyarrow.dataset, DuckDB and
# numpy.load(mmap_mode='r'). Tags of a cnn14 run become a tags table. Bad input
# (no shards, mixed dims, an incomplete shard set, unknown model) exits non-zero
# with a clear message and writes nothing; a full disk leaves no file under a
# final name.
set -u
source "$(dirname "$0")/lib.sh"
export OUT
# pq_check NAME < script: py_check, leaving the interpreter with os._exit once the
# checks passed: pyarrow 17's thread pool can abort the interpreter's teardown on
# a loaded machine ("terminate called without an active exception"), after the
# checks, which is not what is tested here
pq_check() {
  { cat; printf '\nimport os as _os, sys as _sys\n_sys.stdout.flush(); _sys.stderr.flush(); _os._exit(0)\n'; } |
    py_check "$1"
}

in_tmp_dir

if ! "$SL_PYTHON" -c 'import pandas, pyarrow.dataset, duckdb' 2>/dev/null; then
  fail "pandas, pyarrow and duckdb are needed to read the exports back (make test-deps)"
  finish
  exit 1
fi

n=0
for f in a.wav b.wav c.wav sub/d.wav sub/e.wav "f g.wav" "h\"é.wav"; do
  gen_pitch "in/$f" "$(echo "1.4 + 0.6 * $n" | bc)" $((200 + 170 * n))
  n=$((n + 1))
done

cat > job.yaml <<EOF
input:
  paths: [in]
output:
  dir: out
  stems:
    format: wav
  embeddings:
    shard_rows: 2
separation:
  model: hpss
embedding:
  model: melstats
  window_seconds: 1
  hop_seconds: 1
  timeline: true
  sources: [mix, percussive]
runtime:
  decode_threads: 1
EOF
run_sl run job.yaml --quiet --shard 0/2
expect_status 0 "shard 0/2"
run_sl run job.yaml --quiet --shard 1/2
expect_status 0 "shard 1/2"

run_sl export out --row-group-rows 3
expect_status 0 "export"
expect_grep "melstats-mix.parquet: 7 rows" "$OUT" "export summary"
pq_check "parquet tables read back with pandas, pyarrow.dataset and DuckDB" <<'PY'
import glob, json, numpy as np, pandas as pd, pyarrow.dataset as ds, pyarrow.parquet as pq, duckdb
for src in ("mix", "percussive"):
    d = f"out/embeddings/melstats/{src}"
    X = np.concatenate([np.load(f) for f in sorted(glob.glob(f"{d}/*.npy"))])
    meta = pd.concat([pd.read_json(f, lines=True, dtype={"id": str}) for f in sorted(glob.glob(f"{d}/*.jsonl"))])
    order = np.argsort(meta["id"].to_numpy(), kind="stable")
    f = f"out/export/melstats-{src}.parquet"
    df = pd.read_parquet(f)
    assert len(df) == 7 and list(df["row"]) == list(range(7)), df
    assert list(df["id"]) == sorted(meta["id"]), (list(df["id"]), sorted(meta["id"]))
    assert df["id"].is_unique
    for c in ("start", "end", "duration"):
        assert df[c].dtype == np.float64, (c, df[c].dtype)
    assert df["row"].dtype == np.int64 and df["id"].dtype == object
    assert (df["model"] == "melstats").all() and (df["source"] == src).all()
    V = np.stack(df["vector"].to_numpy())
    assert V.shape == X.shape and V.dtype == np.float32, (V.shape, V.dtype)
    assert np.array_equal(V, X[order]), "vectors differ from the shards"
    assert np.allclose(df["duration"].to_numpy(), meta["duration"].to_numpy()[order])
    assert (df["path"].to_numpy() == meta["path"].to_numpy()[order]).all()
    t = ds.dataset(f).to_table()
    assert t.num_rows == 7 and str(t.schema.field("vector").type).startswith("list<")
    assert pq.ParquetFile(f).metadata.num_row_groups == 3
    assert pq.ParquetFile(f).schema_arrow.metadata[b"stemline:dim"] == str(X.shape[1]).encode()
    con = duckdb.connect()
    n, dim, first = con.execute(f"select count(*), min(len(vector)), min(id) from '{f}'").fetchone()
    assert n == 7 and dim == X.shape[1] and first == "a.wav", (n, dim, first)
    s = con.execute(f"select sum(duration) from read_parquet('{f}')").fetchone()[0]
    assert abs(s - df["duration"].sum()) < 1e-9
# timeline: every window of every track, ordered by id then window
tl = pd.read_parquet("out/export/melstats-mix-timeline.parquet")
ids = sorted(set(tl["id"]))
assert len(ids) == 7 and list(tl["row"]) == list(range(len(tl)))
assert list(tl["id"]) == sorted(tl["id"]) and tl["window"].dtype == np.int32
for i, g in tl.groupby("id"):
    assert list(g["window"]) == list(range(len(g))), g
d = "out/embeddings/melstats/mix/timeline"
X = np.concatenate([np.load(f) for f in sorted(glob.glob(f"{d}/*.npy"))])
assert np.stack(tl["vector"].to_numpy()).shape == X.shape
assert tl["start"].dtype == np.float64 and (tl["end"] > tl["start"]).all()
PY

# npy format: one contiguous matrix for mmap, beside a metadata table
run_sl export out --format npy --source mix --out npyout
expect_status 0 "export --format npy"
pq_check "npy export loads with numpy.load(mmap_mode='r'), rows match the metadata" <<'PY'
import numpy as np, pandas as pd, os
X = np.load("npyout/melstats-mix.npy", mmap_mode="r")
m = pd.read_parquet("npyout/melstats-mix-meta.parquet")
df = pd.read_parquet("out/export/melstats-mix.parquet")
assert isinstance(X, np.memmap) and X.shape[0] == len(m) == 7 and X.dtype == np.float32
assert "vector" not in m.columns and list(m["id"]) == list(df["id"])
assert np.array_equal(np.asarray(X), np.stack(df["vector"].to_numpy()))
assert sorted(os.listdir("npyout")) == ["melstats-mix-meta.parquet", "melstats-mix-timeline-meta.parquet",
                                        "melstats-mix-timeline.npy", "melstats-mix.npy"], os.listdir("npyout")
PY

# duplicates: an unsharded run of 3 tracks into the same folder; each kept once
mkdir -p in3 && cp in/a.wav in/c.wav "in/f g.wav" in3/
run_sl run job.yaml --quiet --set input.paths=[in3] --repartition
expect_status 0 "unsharded run of 3 tracks"
run_sl export out --model melstats --source mix --out dedup
expect_status 0 "export with duplicates"
expect_grep "3 tracks found in more than one shard set" "$OUT" "duplicates counted"
pq_check "duplicates kept once" <<'PY'
import pandas as pd
df = pd.read_parquet("dedup/melstats-mix.parquet")
assert len(df) == 7 and df["id"].is_unique and list(df["id"]) == sorted(df["id"]), df
PY

# float16 shards: exported as float32 Parquet and float16 npy, values exact
run_sl run job.yaml --quiet --set output.dir=out16 --set output.embeddings.dtype=float16 \
  --set embedding.timeline=false --set 'embedding.sources=[mix]' --set separation.model=none
expect_status 0 "float16 job"
run_sl export out16 --format npy --out out16/npy
expect_status 0 "float16 export npy"
run_sl export out16
expect_status 0 "float16 export parquet"
pq_check "float16 vectors" <<'PY'
import numpy as np, pandas as pd, glob
X = np.concatenate([np.load(f) for f in sorted(glob.glob("out16/embeddings/melstats/mix/*.npy"))])
N = np.load("out16/npy/melstats-mix.npy", mmap_mode="r")
assert N.dtype == np.float16 and np.array_equal(np.asarray(N), X)
V = np.stack(pd.read_parquet("out16/export/melstats-mix.parquet")["vector"].to_numpy())
assert np.array_equal(V, X.astype(np.float32))
PY

# tags (cnn14 with a classifier head)
W="$SL_SRC/tests/golden/cnn14/cnn14-small.safetensors"
run_sl run job.yaml --quiet --set output.dir=outt --set separation.model=none --set embedding.model=cnn14 \
  --set "embedding.weights=$W" --set embedding.tags_top_k=3 --set embedding.timeline=false --set 'embedding.sources=[mix]'
expect_status 0 "cnn14 job"
run_sl export outt
expect_status 0 "export with tags"
pq_check "tags table" <<'PY'
import json, pandas as pd
t = pd.read_parquet("outt/export/cnn14-tags.parquet")
rows = [json.loads(l) for l in open("outt/tags/cnn14/tags.jsonl")]
assert len(t) == 3 * len(rows) == 21, len(t)
assert list(t["rank"][:3]) == [0, 1, 2] and t["score"].dtype == "float64"
for r in rows:
    g = t[t["id"] == r["id"]]
    assert list(g["label"]) == [x["label"] for x in r["tags"]]
    assert list(g["index"]) == [x["index"] for x in r["tags"]]
    assert max(abs(g["score"].to_numpy() - [x["score"] for x in r["tags"]])) < 1e-12
PY

# ---- bad input: non-zero exit, clear message, nothing written ----
mkdir -p empty
run_sl export empty
expect_status 2 "no shards"
expect_grep "no vector shards" "$ERR" "no shards message"
[ ! -e empty/export ] && pass || fail "export of an empty folder created empty/export"

run_sl export out --model nosuch
expect_status 2 "unknown model"
expect_grep "no embedding model 'nosuch'" "$ERR" "unknown model message"

run_sl export out --format csv
expect_status 2 "bad format"

# mixed dimensions: a shard set of another n_mels beside the first
cp -r out16 outmix
for i in 0 1; do
  run_sl run job.yaml --quiet --set output.dir=outmix --shard $i/2 --repartition --set embedding.options.n_mels=32 \
    --set embedding.timeline=false --set 'embedding.sources=[mix]' --set separation.model=none
done
run_sl export outmix --out outmix/x
expect_status 2 "mixed dims"
expect_grep "dim" "$ERR" "mixed dims message"
[ ! -e outmix/x ] && pass || fail "export of mixed dims created its folder"

# incomplete shard set: shard 1 of 3 never ran
run_sl run job.yaml --quiet --set output.dir=outp --shard 0/3 --set embedding.timeline=false \
  --set 'embedding.sources=[mix]' --set separation.model=none
run_sl run job.yaml --quiet --set output.dir=outp --shard 2/3 --set embedding.timeline=false \
  --set 'embedding.sources=[mix]' --set separation.model=none
run_sl export outp
expect_status 3 "incomplete shard set"
expect_grep "shard 1 has no ledger or report" "$ERR" "incomplete set names the shard"
[ ! -e outp/export ] && pass || fail "export of an incomplete set wrote something"

# full disk while writing: no file under a final name, no temp file left
SL_FAULT_ENOSPC_AFTER=3000 "$STEMLINE" export out --out full >"$OUT" 2>"$ERR"
STATUS=$?
expect_status 1 "export on a full disk"
left=$(find full -type f 2>/dev/null | grep -v '^full/melstats-mix.parquet$' | grep -c . || true)
[ "$left" = 0 ] && pass || fail "full disk left files: $(find full -type f)"
[ ! -e full/melstats-mix.parquet ] || cmp -s full/melstats-mix.parquet out/export/melstats-mix.parquet \
  && pass || fail "a partial table is under its final name"

finish
