#!/usr/bin/env bash
# report.html (pipeline/report_html.c): written beside report.json by every
# run, by `stemline merge` (merged-report.html) and by `stemline report`; the
# data it draws comes from report.json (throughput, stages, batch sizes,
# per-track seconds, failures), tags.jsonl and the mix vector shards (a map
# of their first two principal components, checked against numpy). Every
# string is escaped. The page in a real browser: cli.report_browser.
set -u
source "$(dirname "$0")/lib.sh"
HERE=$(cd "$(dirname "$0")" && pwd)
in_tmp_dir
source "$HERE/report_fixture.sh"
[ -s out/report.html ] && pass || fail "no out/report.html"

py_check "report.json records what the page draws" <<'PY'
import json
r = json.load(open("out/report.json"))
tp = r["throughput"]
assert tp["bin_seconds"] > 0 and len(tp["tracks"]) == len(tp["audio_seconds"]) == len(tp["failed"]) <= 128, tp
assert sum(tp["tracks"]) == r["tracks"]["ok"] == 5, tp
assert sum(tp["failed"]) == r["tracks"]["failed"] == 1, tp
assert abs(sum(tp["audio_seconds"]) - r["audio_seconds"]) < 1e-2, tp
p = r["pipeline"]
assert sum(c for _, c in p["batch_sizes"]) == p["batches"] > 0, p
assert sum(s * c for s, c in p["batch_sizes"]) > 0
for e in r["ok"]:
    s = e["seconds"]
    assert set(s) == {"decode", "separate", "embed", "write"} and all(v >= 0 for v in s.values()), e
assert abs(sum(e["seconds"]["decode"] for e in r["ok"]) - r["stages"]["decode"]["seconds"]) < 0.01
PY

# shared by the checks below: the page parsed by Python's HTML parser
cat > page.py <<'PY'
import html.parser, re
class Page(html.parser.HTMLParser):
    def __init__(self, path):
        super().__init__()
        self.raw = open(path, encoding="utf-8").read()
        self.points, self.cells, self.text, self.tags, self.ids = [], [], [], [], set()
        self._cell = None
        self.feed(self.raw)
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "circle" and "data-id" in a:
            self.points.append((a["data-id"], float(a["cx"]), float(a["cy"])))
        if tag == "td":
            self._cell = ""
    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.cells.append(self._cell)
            self._cell = None
    def handle_data(self, d):
        self.text.append(d)
        if self._cell is not None:
            self._cell += d
PY

py_check "the page: sections, escaping, failures, tags, nothing fetched" <<'PY'
import json, sys
sys.path.insert(0, ".")
from page import Page
p = Page("out/report.html")
nasty = "a<b&\"c'é.wav"
assert nasty not in p.raw and "a<b" not in p.raw, "an id went into the page unescaped"
for sec in ("summary", "throughput", "stages", "batches", "tracks", "failures", "tags", "map"):
    assert sec in p.ids, sec
assert "Content-Security-Policy" in p.raw and "default-src 'none'" in p.raw
for bad in ("http:", "https:", "src=", "href=", "@import", "url("):
    assert bad not in p.raw, bad
assert {"svg", "script", "style", "table"} <= set(p.tags)
text = "".join(p.text)
assert nasty in text, "the id is not shown as text"
# failures table: id, path and reason of the failed track
r = json.load(open("out/report.json"))
f = r["failed"][0]
assert f["id"] == "broken.wav" and f["id"] in p.cells and f["reason"] in p.cells, p.cells
# the tags: every label of the tracks' top tags with its count
counts = {}
for l in open("out/tags/cnn14/tags.jsonl"):
    for t in json.loads(l)["tags"]:
        counts[t["label"]] = counts.get(t["label"], 0) + 1
top = sorted(counts.values(), reverse=True)[:25]
assert len(top) > 0
for lab, c in counts.items():
    if c > (top[-1] if len(top) == 25 else 0):
        assert f"{lab}: {c} tracks" in text, (lab, c)
PY

# the map from the vectors' Gram matrix (fewer rows than dimensions, the run's
# shards) and from their covariance (more rows than dimensions: the same
# page over a 5 x 3 shard written here)
cp -r out out-cov
"$SL_PYTHON" - <<'PY'
import numpy as np
np.save("out-cov/embeddings/cnn14/mix/shard-00000.npy", (np.random.default_rng(7).standard_normal((5, 3)) * [3, 1, 0.2]).astype(np.float32))
PY
run_sl report out-cov --html "$T/out-cov/report.html"
expect_status 0 "stemline report of a 5 x 3 shard"
for MAPDIR in out out-cov; do
MAPDIR=$MAPDIR py_check "the map of $MAPDIR: the first two principal components, as numpy finds them" <<'PY'
import json, os, re, sys, numpy as np
sys.path.insert(0, ".")
from page import Page
d = os.environ["MAPDIR"]
p = Page(f"{d}/report.html")
X = np.load(f"{d}/embeddings/cnn14/mix/shard-00000.npy").astype(np.float64)
ids = [json.loads(l)["id"] for l in open(f"{d}/embeddings/cnn14/mix/shard-00000.jsonl")]
assert (X.shape[0] < X.shape[1]) == (d == "out"), X.shape
# the map's points are the last scatter: one per vector, with the track id
pts = p.points[-len(ids):]
assert [q[0] for q in pts] == ids, (pts, ids)
C = np.cov(X, rowvar=False)
w, V = np.linalg.eigh(C)
w, V = w[::-1], V[:, ::-1]
P = (X - X.mean(0)) @ V[:, :2]
# pixel coordinates are an affine map of the projections (y flipped): up to the
# sign of each component, the pixels are a positive-scale image of P
for k, col in ((0, 1), (1, 2)):
    pix = np.array([q[col] for q in pts]) * (1 if k == 0 else -1)
    a, b = np.polyfit(P[:, k], pix, 1)
    resid = pix - (a * P[:, k] + b)
    assert np.abs(resid).max() < 0.6, (k, resid)   # pixels are written to 0.1
ev = 100 * w[:2] / w.sum()
m = re.search(r"PC1 \(([\d.]+)% of the variance\)", p.raw)
m2 = re.search(r"PC2 \(([\d.]+)%\)", p.raw)
assert m and abs(float(m.group(1)) - ev[0]) < 0.06 and abs(float(m2.group(1)) - ev[1]) < 0.06, (m.group(1), m2.group(1), ev)
PY
done

# `stemline report` rewrites the page elsewhere; the result is the same page
run_sl report out --html "$T/again.html"
expect_status 0 "stemline report OUT --html"
cmp -s out/report.html again.html && pass || fail "stemline report wrote another page than the run"
# at most N tracks drawn: every k-th row (k = ceil(rows / N)), the components still from every row
run_sl report out --html "$T/few.html" --points 2
expect_status 0 "stemline report --points 2"
py_check "--points: every k-th track drawn" <<'PY'
import json, sys
sys.path.insert(0, ".")
from page import Page
ids = [json.loads(l)["id"] for l in open("out/embeddings/cnn14/mix/shard-00000.jsonl")]
ok = [e["id"] for e in json.load(open("out/report.json"))["ok"]]
p, full = Page("few.html"), Page("out/report.html")
assert [q[0] for q in p.points] == ok[::3] + ids[::3], p.points
assert p.raw.count("every k-th") == 2
import re
pct = lambda raw: re.search(r"PC1 \(([\d.]+)%", raw).group(1)
assert pct(p.raw) == pct(full.raw)
PY
run_sl report out --points 0
expect_status 2 "--points 0"
run_sl report "$T/nothing-here"
expect_status 2 "stemline report of a folder without report.json"
expect_grep "report.json" "$ERR" "the missing file is named"

# a sharded run: each shard's page has its own tracks; merge's page all of them
sed 's/dir: out/dir: sh/' job.yaml > job2.yaml
for i in 0 1; do
  run_sl run job2.yaml --shard "$i/2" --quiet
  [ "$STATUS" -eq 0 ] || [ "$STATUS" -eq 3 ] && pass || fail "shard $i/2 exited $STATUS"
  [ -s "sh/s000${i}of0002-report.html" ] && pass || fail "shard $i/2 wrote no page"
done
run_sl merge sh
expect_status 3 "merge (one track failed)"
[ -s sh/merged-report.html ] && pass || fail "merge wrote no merged-report.html"
py_check "per-shard and merged pages" <<'PY'
import json, sys
sys.path.insert(0, ".")
from page import Page
allids = set()
for i in (0, 1):
    r = json.load(open(f"sh/s000{i}of0002-report.json"))
    p = Page(f"sh/s000{i}of0002-report.html")
    mine = {e["id"] for e in r["ok"]}
    drawn = {q[0] for q in p.points}
    assert drawn == mine, (i, drawn, mine)   # per-track chart and map: this shard's tracks only
    allids |= mine
m = Page("sh/merged-report.html")
assert {q[0] for q in m.points} == allids and len(allids) == 5, ({q[0] for q in m.points}, allids)
assert "broken.wav" in m.cells, "merged failures table"
assert "Merged report" in "".join(m.text) or "merged report" in "".join(m.text)
PY

# bench/run's results as a page (same charts): x realtime and SDR, negative SDR drawn left of zero
cat > results.json <<'JSON'
{"mode": "quick", "command": "bench/run", "machine": {"cpu": "x<y", "cores": 2, "commit": "abc"},
 "jobs": [{"model": "hpss", "backend": "cpu", "tracks": 10, "x_realtime": 31.5,
           "stages": {"decode": {"x_realtime": 400}, "separate": {"x_realtime": 40}}}],
 "sdr": [{"model": "hpss", "tracks_scored": 10, "targets": [{"name": "drums"}, {"name": "bass"}],
          "mean": {"drums": 4.25, "bass": -1.5}, "mixture_as_estimate_mean": {"drums": -3.0, "bass": -7.0}}],
 "skipped": ["museval: not installed"]}
JSON
run_sl report --bench results.json
expect_status 0 "stemline report --bench"
py_check "bench page" <<'PY'
import sys
sys.path.insert(0, ".")
from page import Page
p = Page("results.html")
t = "".join(p.text)
for s in ("hpss, cpu (10 tracks): 31.5 x", "drums: stemline: 4.25 dB", "bass: stemline: -1.5 dB",
          "bass: mixture as estimate: -7 dB", "museval: not installed", "x<y"):
    assert s in t, s
assert "x<y" not in p.raw
PY
# bench/run writes results.html beside results.json (here: --rerender of a saved run)
mkdir benchrun
"$SL_PYTHON" - <<'PY'
import json
R = {"mode": "quick", "command": "bench/run", "stemline": "build/stemline", "wall_s": 1.0,
     "machine": {"cpu": "cpu", "cores": 2, "memory": "8 GiB", "commit": "abc", "dirty": False,
                 "date": "2026-12-06T00:00:00Z"},
     "catalog": {"tracks": 1, "audio_s": 10, "min_s": 10, "max_s": 10, "formats": ["wav"], "rates": [44100],
                 "mono": 0, "params": {"seed": 1, "mode": "quick", "synth": "builtin"}, "dir": "x"},
     "load_start": "1 1 1", "load_end": "1 1 1", "skipped": [], "baselines": {}, "memory_vs_length": [],
     "jobs": [{"model": "hpss", "backend": "cpu", "backend_asked": "cpu", "device": "CPU", "tracks_ok": 1,
               "tracks": 1, "wall_s": 0.5, "x_realtime": 20.0, "tracks_per_hour": 7200, "peak_rss_mb": 100,
               "peak_device_mb": None, "out": "x", "pipeline": {"bound_by": "balanced", "mean_batch": 2.0},
               "stages": {k: {"x_realtime": v} for k, v in
                          (("decode", 300), ("separate", 40), ("embed", 90), ("write", 70))}}],
     "sdr": [{"model": "hpss", "markdown": "| t |", "museval_seconds": None, "tracks_scored": 1,
              "targets": [{"name": "drums"}], "mean": {"drums": 3.5}, "median": {"drums": 3.5},
              "mixture_as_estimate_mean": {"drums": -2.0}}]}
json.dump(R, open("benchrun/results.json", "w"))
PY
(cd "$SL_SRC" && STEMLINE="$STEMLINE" "$SL_PYTHON" bench/run --rerender "$T/benchrun" --no-results-md >/dev/null 2>&1) && \
  pass || fail "bench/run --rerender"
py_check "bench/run's results.html" <<'PY'
import sys
sys.path.insert(0, ".")
from page import Page
t = "".join(Page("benchrun/results.html").text)
for s in ("hpss, cpu (1 tracks): 20 x", "drums: stemline: 3.5 dB", "drums: mixture as estimate: -2 dB", "separate: 40 x"):
    assert s in t, s
PY
finish
