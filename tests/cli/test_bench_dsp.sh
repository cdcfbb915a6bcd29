#!/usr/bin/env bash
# bench/run_dsp.sh end to end on tiny sizes, baselines off: bench_dsp's STFT /
# iSTFT / hpss rows and its bandwidth rows (every memory-bound op against
# sl_op_copy) on cpu and cuda-emu, an absent backend reported as skipped, and
# the Markdown tables built from them. Figures here mean nothing (emulation,
# 1 MiB buffers); the test is that the benchmark runs and reports honestly.
set -u
source "$(dirname "$0")/lib.sh"
: "${SL_SRC:?}" "${BENCH_DSP:?BENCH_DSP must point at bench_dsp}"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
DSP_TRACKS=1 DSP_SECONDS=1 DSP_HPSS_SECONDS=1 DSP_REPEAT=1 DSP_BW_MB=1 DSP_BASELINES=off \
  DSP_BACKENDS=cpu,cuda-emu,nosuch DSP_WORK="$T/work" bash "$SL_SRC/bench/run_dsp.sh" >"$T/out.md" 2>"$T/err"
expect_status_of() { if [ "$1" -eq 0 ]; then pass; else fail "$2 (exit $1)"; sed 's/^/    /' "$T/err" >&2; fi; }
expect_status_of $? "run_dsp.sh exits 0"
expect_grep "### Achieved bandwidth of the memory-bound ops (1 MiB buffers)" "$T/out.md" "bandwidth table"
expect_grep "stemline nosuch all: skipped" "$T/out.md" "an unknown backend is reported as skipped"
expect_grep "torch+librosa  all: skipped (DSP_BASELINES=off)" "$T/out.md" "baselines off are reported as skipped"
T="$T" py_check "bench_dsp rows: every op on both backends, bandwidth rows consistent" <<'PY'
import json, os
T = os.environ["T"]
rows = [json.loads(l) for l in open(f"{T}/work/dsp-stemline.jsonl") if l.strip()]
ops = ["copy", "magnitude", "power", "hpss_masks", "apply_mask", "frame", "overlap_add", "log_db",
       "median_time", "median_freq"]
for be in ("cpu", "cuda-emu"):
    dsp = {(r["op"], r.get("n_fft")) for r in rows if r["bench"] == "dsp" and r.get("backend") == be and "skipped" not in r}
    for want in (("stft", 4096), ("istft", 4096), ("stft", 2048), ("istft", 2048), ("hpss", None)):
        assert want in dsp, (be, want, dsp)
    bw = [r for r in rows if r["bench"] == "bandwidth" and r["backend"] == be]
    assert [r["op"] for r in bw] == ops, (be, [r["op"] for r in bw])
    copy = bw[0]["gb_per_s"]
    for r in bw:
        assert r["gb_per_s"] > 0 and r["best_s"] > 0 and r["buffer_mb"] == 1, r
        assert abs(r["copy_gb_per_s"] - copy) <= 0.01 * copy and abs(r["fraction_of_copy"] - r["gb_per_s"] / copy) < 2e-3, r
        assert r["memory_bound"] == (r["op"] not in ("median_time", "median_freq")), r
        assert abs(r["bytes"] / r["best_s"] / 1e9 - r["gb_per_s"]) <= 0.01 * r["gb_per_s"] + 0.01, r
    # bytes each op must move, from its definition (1 MiB: n = 131072 complex values)
    n = 131072
    b = {r["op"]: r["bytes"] for r in bw}
    assert b["copy"] == 16 * n and b["magnitude"] == 12 * n and b["hpss_masks"] == 16 * n and b["apply_mask"] == 20 * n, b
skip = [r for r in rows if r.get("backend") == "nosuch"]
assert len(skip) == 1 and "skipped" in skip[0], skip
md = open(f"{T}/out.md").read()
for be in ("cpu", "cuda-emu"):
    for op in ops:
        assert f"| {be} | {op} |" in md, (be, op)
PY
finish
