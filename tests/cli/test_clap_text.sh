#!/usr/bin/env bash
# `stemline embed-text` and `stemline search --text` with the reduced CLAP text
# tower of tests/golden/clap_text (tools/gen_golden_clap_text.py encoder):
# the printed vectors equal the laion-clap package's (1e-4), --out writes the
# same [queries, dim] float32 .npy; truncation and empty queries are warned
# about; bad weights, invalid UTF-8 and usage errors exit 2. search --text on
# shards recorded as made by that checkpoint (a fixture: the query vectors
# themselves as the shard rows, an index.json naming the weights file) finds
# each text first with score 1, several --text in one call, --json; shards of
# a model without a text tower are refused (exit 2).
set -u
source "$(dirname "$0")/lib.sh"
export OUT

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
G="$SL_SRC/tests/golden/clap_text"
W="$G/small.safetensors"
export G

mapfile -t Q < <("$SL_PYTHON" -c 'import json,os; [print(t) for t in json.load(open(os.environ["G"] + "/small.json"))["texts"]]')
[ "${#Q[@]}" -eq 6 ] && pass || fail "expected the 6 golden queries, got ${#Q[@]}"

# ---- embed-text: JSON lines equal to the package's vectors ----
run_sl embed-text --model "$W" --backend cpu -- "${Q[@]}"
expect_status 0 "embed-text"
expect_grep "query 2 is empty" "$ERR" "an empty query is warned about"
expect_grep "query 5 is longer than 77 tokens: only its first 75" "$ERR" "a truncated query is warned about"
cp "$OUT" lines.jsonl
py_check "embed-text vectors equal the golden ones" <<'PY'
import json, os
import numpy as np
g = os.environ["G"]
raw = open(g + "/small.slg", "rb").read()
head, data = raw.split(b"end\n", 1)
arrays, off = {}, 0
for line in head.decode().splitlines():
    if line.startswith("array "):
        name, *dims = line.split()[1:]
        dims = [int(d) for d in dims]
        n = int(np.prod(dims))
        arrays[name] = np.frombuffer(data, "<f4", n, off).reshape(dims)
        off += 4 * n
texts = json.load(open(g + "/small.json"))["texts"]
rows = [json.loads(l) for l in open("lines.jsonl")]
assert [r["text"] for r in rows] == texts
real = [int((i != 1).sum()) for i in arrays["ids"]]
assert [r["tokens"] for r in rows] == [n + ("<pad>" in t) for n, t in zip(real, texts)], rows
assert [r["truncated"] for r in rows] == [False, False, False, False, True, False]
v = np.array([r["vector"] for r in rows])
assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
err = np.abs(v - arrays["out"]).max() / np.abs(arrays["out"]).max()
assert err < 1e-4, err
PY

run_sl embed-text --model "$W" --out q.npy -- "${Q[@]}"
expect_status 0 "embed-text --out"
py_check "--out holds the printed vectors" <<'PY'
import json
import numpy as np
a = np.load("q.npy")
assert a.dtype == np.float32 and a.shape == (6, 24), (a.dtype, a.shape)
v = np.array([json.loads(l)["vector"] for l in open("lines.jsonl")], dtype=np.float32)
assert np.array_equal(a, v)
PY

# ---- errors ----
run_sl embed-text "piano"
expect_status 2 "embed-text without --model"
run_sl embed-text --model "$W"
expect_status 2 "embed-text without queries"
run_sl embed-text --model "$T/missing.safetensors" "piano"
expect_status 2 "embed-text with a missing weights file"
expect_grep "missing.safetensors" "$ERR" "the missing file is named"
run_sl embed-text --model "$SL_SRC/tests/golden/roformer/bs_mono_4stem.safetensors" "piano"
expect_status 2 "embed-text with another model's weights"
expect_grep "not a CLAP weights file" "$ERR" "another model's weights are named as such"
run_sl embed-text --model "$W" "ok" "$(printf 'bad \377 bytes')"
expect_status 2 "embed-text with invalid UTF-8"
expect_grep "query 2: text is not valid UTF-8 at byte 4" "$ERR" "invalid UTF-8 is located"
run_sl embed-text --model "$W" --bogus "piano"
expect_status 2 "embed-text with an unknown option"

# ---- search --text over shards made by this checkpoint ----
D=out/embeddings/clap/mix
mkdir -p "$D"
cp q.npy "$D/shard-00000.npy"
"$SL_PYTHON" - "$W" "$D" <<'PY'
import json, sys
w, d = sys.argv[1], sys.argv[2]
with open(d + "/shard-00000.jsonl", "w") as f:
    for i in range(6):
        f.write(json.dumps({"row": i, "id": "t%d.wav" % i, "path": "/in/t%d.wav" % i, "start": 0.0,
                            "end": 10.0, "duration": 10.0, "model": "clap", "source": "mix"}) + "\n")
meta = {"format": "stemline-vector-index", "format_version": 1, "stemline_version": "0.1.0", "model": "clap",
        "weights": w, "options": {}, "params": "", "source": "mix", "dim": 24, "dtype": "float32",
        "normalize": True, "sample_rate": 48000, "channels": 1, "window_seconds": 10.0, "hop_seconds": 10.0,
        "window_samples": 480000, "hop_samples": 480000}
json.dump(meta, open(d + "/index.json", "w"))
PY
run_sl search out --text "${Q[0]}" -k 3
expect_status 0 "search --text"
expect_grep "t0.wav" "$OUT" "the text finds its own row"
run_sl search out --text "${Q[0]}" --text "${Q[2]}" --text "${Q[5]}" --text "${Q[4]}" -k 2 --json
expect_status 0 "search with several --text"
expect_grep "query 4 is longer than 77 tokens" "$ERR" "search warns about a truncated query"
cp "$OUT" hits.json
py_check "each --text query finds its own row first with score 1" <<'PY'
import json
r = json.load(open("hits.json"))
assert len(r) == 4, r
for q, want in zip(r, [0, 2, 5, 4]):
    assert len(q["hits"]) == 2
    assert q["hits"][0]["id"] == "t%d.wav" % want, q
    assert abs(q["hits"][0]["score"] - 1) < 1e-5, q
    assert q["hits"][0]["score"] >= q["hits"][1]["score"]
assert r[3]["truncated"] is True and r[0]["truncated"] is False and r[0]["tokens"] > 2
PY
run_sl search out --text "${Q[0]}" --text "${Q[2]}" -k 10 --json --threads 2
expect_status 0 "several --text, k above the rows"
cp "$OUT" hits6.json
py_check "k above the rows: every row once per query, described, own row first" <<'PY'
import json
r = json.load(open("hits6.json"))
for q, want in zip(r, [0, 2]):
    assert sorted(h["id"] for h in q["hits"]) == ["t%d.wav" % i for i in range(6)], q
    assert q["hits"][0]["id"] == "t%d.wav" % want, q
PY
run_sl search out --text "piano" --backend cuda-emu --json -k 1
expect_status 0 "search --text on cuda-emu"
run_sl search out --text "piano" --id t0.wav
expect_status 2 "--text with --id"
run_sl search out --text "$(printf '\377')"
expect_status 2 "search --text with invalid UTF-8"
# centred audio vectors (embedding.center: catalog): a text query is not centred, and search says so
"$SL_PYTHON" - "$D" <<'PY'
import json, sys
p = sys.argv[1] + "/index.json"
m = json.load(open(p))
m.update(center="catalog", center_file="mean.npy", center_hash="0" * 32, center_rows=6)
json.dump(m, open(p, "w"))
PY
run_sl search out --text "${Q[0]}" -k 1
expect_status 0 "search --text on centred shards"
expect_grep "a text query is not" "$ERR" "says that the text query is not centred"
expect_grep "t0.wav" "$OUT" "the text still finds its own row"
# shards of a model without a text tower
sed -i 's/"model": "clap"/"model": "melstats"/' "$D/index.json"
run_sl search out --text "piano"
expect_status 2 "search --text on shards of a model without a text tower"
expect_grep "has no text tower" "$ERR" "says why --text cannot work there"
finish
