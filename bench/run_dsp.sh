#!/usr/bin/env bash
# DSP op benchmark (not a test): stemline's STFT / iSTFT / hpss (bench_dsp, every
# backend that opens) against torch.stft / torch.istft and librosa on this
# machine, in this run, same signal sizes; prints a Markdown table with ratios.
# Targets (issue 3): >= 1.5x torch on STFT/iSTFT, >= 20x librosa on hpss.
#
# Usage: bench/run_dsp.sh        (env: DSP_TRACKS=8 DSP_SECONDS=60 DSP_HPSS_SECONDS=60
#                                 DSP_REPEAT=3, DSP_BW_MB=256 (0: no bandwidth table),
#                                 DSP_BACKENDS=cpu,cuda, DSP_BASELINES=on|off,
#                                 DSP_TORCH_DEVICE=cuda (torch.stft/istft on the GPU too),
#                                 DSP_WORK=bench/work, BENCH_DSP=build/bench_dsp, BUILD=build)
# Python side: torch from Debian (apt-get install python3-torch), librosa from
# PyPI in bench/.venv (created here with --system-site-packages, versions pinned
# in bench/requirements-dsp.txt). A baseline that cannot be imported is reported
# as skipped, never silently dropped. Raw JSON lines go to bench/work/dsp-*.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
BIN=${BENCH_DSP:-$BUILD/bench_dsp}
tracks=${DSP_TRACKS:-8}
secs=${DSP_SECONDS:-60}
hsecs=${DSP_HPSS_SECONDS:-60}
repeat=${DSP_REPEAT:-3}
W=${DSP_WORK:-bench/work}
baselines=${DSP_BASELINES:-on}
backends=${DSP_BACKENDS:-cpu,cuda}
mkdir -p "$W"

if [ ! -x "$BIN" ]; then
  if [ -d "$BUILD" ]; then cmake --build "$BUILD" --target bench_dsp >/dev/null; fi
  [ -x "$BIN" ] || { echo "run_dsp.sh: $BIN not found (build first: make build, or set BENCH_DSP)" >&2; exit 1; }
fi

VENV=bench/.venv
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ "$baselines" = on ] && [ ! -x "$VENV/bin/python" ]; then
  echo "run_dsp.sh: creating $VENV (librosa from PyPI, torch from the system)" >&2
  if "$PY" -m venv --system-site-packages "$VENV" >&2 &&
     "$VENV/bin/pip" install -q -r bench/requirements-dsp.txt >&2; then :; else
    echo "run_dsp.sh: could not set up $VENV; librosa baselines will be reported as skipped" >&2
  fi
fi
[ -x "$VENV/bin/python" ] && PY=$VENV/bin/python

common=(--tracks "$tracks" --seconds "$secs" --hpss-seconds "$hsecs" --repeat "$repeat")
bw_mb=${DSP_BW_MB:-256}
# Other work on the machine skews one side of a ratio: the load average is
# recorded around each side and printed with the table.
load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }
l0=$(load)
"$BIN" "${common[@]}" --backends "$backends" --bw-mb "$bw_mb" --dump-hpss-signal "$W/hpss-input.f32" \
  > "$W/dsp-stemline.jsonl"
l1=$(load)
if [ "$baselines" = on ]; then
  dev_args=()
  [ -n "${DSP_TORCH_DEVICE:-}" ] && dev_args=(--torch-device "$DSP_TORCH_DEVICE")
  "$PY" bench/dsp_baselines.py "${common[@]}" "${dev_args[@]}" --hpss-signal "$W/hpss-input.f32" \
    > "$W/dsp-baselines.jsonl"
else
  echo '{"bench":"dsp","impl":"torch+librosa","op":"all","skipped":"DSP_BASELINES=off"}' > "$W/dsp-baselines.jsonl"
fi
l2=$(load)

/usr/bin/env python3 - "$W/dsp-stemline.jsonl" "$W/dsp-baselines.jsonl" "$l0" "$l1" "$l2" "$(nproc)" <<'PY'
import json, sys
loads, ncpu = sys.argv[3:6], sys.argv[6]
rows = [json.loads(l) for f in sys.argv[1:3] for l in open(f) if l.strip()]
sl = [r for r in rows if r["impl"] == "stemline" and "skipped" not in r and r.get("bench") != "bandwidth"]
bw = [r for r in rows if r.get("bench") == "bandwidth" and "skipped" not in r]
skipped = [r for r in rows if "skipped" in r]
torch = [r for r in rows if r["impl"] == "torch" and "skipped" not in r]
lib = {(r["op"], r["n_fft"]): r for r in rows if r["impl"] == "librosa" and "skipped" not in r}

def cell(r):
    return f"{r['frames_per_s']:,.0f} ({r['x_realtime']:,.1f}x)" if r else "n/a"

def ratio(a, b):
    return a["frames_per_s"] / b["frames_per_s"] if a and b else None

def fmt(x):
    return f"{x:.2f}x" if x is not None else "n/a"

if sl:
    r0 = next((r for r in sl if r["op"] == "stft"), sl[0])
    print(f"### STFT / iSTFT: {r0['tracks']} stereo tracks x {r0['seconds']:g} s at 44.1 kHz "
          f"({2 * r0['tracks']} channels), reflect padding, periodic Hann")
    print()
    print("frames/s over all channels (x realtime in stereo track-seconds); best of "
          f"{r0['repeat']} after a warm-up. STFT = frame + rfft + magnitude; iSTFT = irfft + overlap-add.")
    print()
tcounts = sorted({r["threads"] for r in torch})
tdefault = next((r["threads"] for r in torch if "default" in r.get("threads_note", "")), None)
hdr = ["op", "n_fft / hop", "stemline"] + [f"torch {t} thr" + (" (default)" if t == tdefault else "") for t in tcounts] \
      + ["librosa"] + [f"stemline / torch {t} thr" for t in tcounts] + ["target >= 1.5x torch"]
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
for r in sl:
    if r["op"] not in ("stft", "istft"):
        continue
    ts = {t: next((x for x in torch if x["op"] == r["op"] and x["n_fft"] == r["n_fft"] and x["threads"] == t), None)
          for t in tcounts}
    rat = {t: ratio(r, ts[t]) for t in tcounts}
    verdict = "; ".join(f"{'met' if rat[t] is not None and rat[t] >= 1.5 else 'NOT met'} vs {t} thr"
                        for t in tcounts) or "n/a (no torch)"
    name = f"{r['op']} ({r['backend']}, {r['threads'] or 'device'} thr)" if r["backend"] == "cpu" else \
           f"{r['op']} ({r['backend']})"
    cells = [name, f"{r['n_fft']} / {r['hop']}", cell(r)] + [cell(ts[t]) for t in tcounts] \
        + [cell(lib.get((r["op"], r["n_fft"])))] + [fmt(rat[t]) for t in tcounts] + [verdict]
    print("| " + " | ".join(cells) + " |")
print()
tgpu = {(r["op"], r["n_fft"]): r for r in rows if r["impl"] == "torch-cuda" and "skipped" not in r}
gpu_rows = [r for r in sl if r["backend"] == "cuda" and r["op"] in ("stft", "istft")]
if gpu_rows:
    print("On the GPU, against torch on the same GPU (inputs and outputs on the device, clocks stopped after a "
          "device synchronisation on both sides):")
    print()
    print("| op | n_fft / hop | stemline cuda | torch cuda | stemline / torch | target >= 1.5x torch |")
    print("|---|---|---|---|---|---|")
    for r in gpu_rows:
        t = tgpu.get((r["op"], r["n_fft"]))
        rat = ratio(r, t)
        print(f"| {r['op']} | {r['n_fft']} / {r['hop']} | {cell(r)} | {cell(t)} | {fmt(rat)} "
              f"| {'n/a' if rat is None else ('met' if rat >= 1.5 else 'NOT met')} |")
    print()
hp = [r for r in sl if r["op"] == "hpss"]
full, only = lib.get(("hpss", 2048)), lib.get(("hpss_only", 2048))
if hp:
    print(f"### hpss separation: {hp[0]['seconds']:g} s stereo, 44.1 kHz (same samples for both)")
    print()
    print(f"stemline model `hpss` ({hp[0]['params']}) against librosa doing the same work "
          "(stft -> decompose.hpss(kernel 31, power 2, margin 2) -> 2 x istft -> residual), "
          "and against decompose.hpss alone on a precomputed spectrum.")
    print()
    print("| backend | stemline | librosa full | librosa decompose.hpss only | stemline / librosa full "
          "| stemline / decompose.hpss only | target >= 20x librosa |")
    print("|---|---|---|---|---|---|---|")
    for r in hp:
        a, b = ratio(r, full), ratio(r, only)
        verdict = "n/a (no librosa)" if a is None else ("met" if a >= 20 else "NOT met")
        print(f"| {r['backend']} ({r['device']}) | {cell(r)} | {cell(full)} | {cell(only)} | {fmt(a)} | {fmt(b)} "
              f"| {verdict} |")
    print()
if bw:
    print(f"### Achieved bandwidth of the memory-bound ops ({bw[0]['buffer_mb']} MiB buffers)")
    print()
    print("Bytes each op must move (inputs read once, outputs written once) / best time, against a copy "
          "of the same size on the same backend (sl_op_copy: read + write; on a GPU cudaMemcpyAsync device to "
          "device, the device's copy bandwidth). Target on a GPU: >= 50% of copy for the memory-bound ops; "
          "the medians are compute-bound (radix select) and listed for scale.")
    print()
    print("| backend | op | GB/s | copy GB/s | fraction of copy | target >= 50% of copy (GPU) |")
    print("|---|---|---|---|---|---|")
    for r in bw:
        if r["op"] == "copy":
            verdict = "(reference)"
        elif not r["memory_bound"]:
            verdict = "compute-bound"
        elif r["backend"] != "cuda":
            verdict = "n/a (CPU)"
        else:
            verdict = "met" if r["fraction_of_copy"] >= 0.5 else "NOT met"
        print(f"| {r['backend']} | {r['op']} | {r['gb_per_s']:,.1f} | {r['copy_gb_per_s']:,.1f} "
              f"| {100 * r['fraction_of_copy']:.0f}% | {verdict} |")
    print()
for r in skipped:
    print(f"- {r['impl']} {r.get('backend', '')} {r['op']}: skipped ({r['skipped']})")
vers = sorted({f"{r['impl']} {r['version']}" for r in rows if "version" in r})
devs = sorted({f"{r['backend']}: {r['device']}" for r in sl})
print(f"- versions: {'; '.join(vers)}")
print(f"- stemline devices: {'; '.join(devs)}")
print(f"- load average (1/5/15 min) before stemline: {loads[0]}; after stemline: {loads[1]}; "
      f"after the baselines: {loads[2]} ({ncpu} CPUs; about 1 is this benchmark itself, more means other work ran)")
PY
