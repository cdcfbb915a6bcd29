#!/usr/bin/env bash
# Jobs on the real CUDA backend's host code, run by stemline-cudamock (the
# CUDA runtime / cuFFT / cuDNN replaced by the host-only stand-in in
# kernels/cuda/mock/, kernels by the launch emulation): device discovery,
# `--backend auto|cuda`, pinned segment buffers, stream-ordered allocation,
# cuFFT plans, real device-memory exhaustion (batches split, then the CPU),
# several devices, the search path. Each result is compared with the CPU
# backend of the ordinary stemline binary.
set -u
source "$(dirname "$0")/mock_lib.sh"
cat > job.yaml <<YAML
input: {paths: [in]}
output: {dir: out-cpu, stems: {format: wav, sample_format: f32}}
separation: {model: hpss}
embedding: {model: melstats, window_seconds: 1}
YAML


run_sl run job.yaml --quiet --backend cpu
expect_status 0 "job on the CPU backend (reference)"

run_mock run job.yaml --backend cuda --set output.dir=out-cuda
expect_status 0 "job on backend cuda (cudamock)"
run_mock run job.yaml --backend auto --set output.dir=out-auto
expect_status 0 "job on backend auto (cudamock)"
expect_grep "cudamock device 0" "$ERR" "--backend auto names the device it picked"

# Real device-memory exhaustion (cudaMallocAsync answers cudaErrorMemoryAllocation):
# 8 MB: some batch is split or falls back; 2 MB: every segment falls back to the CPU.
SL_MOCK_DEVICE_MB=8 run_mock run job.yaml --quiet --backend cuda --set output.dir=out-m8
expect_status 0 "job on a device with 8 MB"
SL_MOCK_DEVICE_MB=2 run_mock run job.yaml --quiet --backend cuda --set output.dir=out-m2
expect_status 0 "job on a device with 2 MB"
# Two devices, one worker each.
SL_MOCK_DEVICES=2 run_mock run job.yaml --quiet --backend cuda --set output.dir=out-2dev --set 'runtime.devices=[all]'
expect_status 0 "job on two devices"
# runtime.devices: [1] alone: the run's context and workers are on device 1;
# device 0 never gets a byte.
SL_MOCK_DEVICES=2 SL_MOCK_STATS="$T/stats-dev1.json" run_mock run job.yaml --quiet --backend cuda --set output.dir=out-dev1 --set 'runtime.devices=[1]'
expect_status 0 "job on device 1 alone"
# A sticky fault (cudaErrorIllegalAddress at the first kernel that runs) loses
# the device: not retried there, the work runs on the CPU; with two devices the
# other one takes what is left.
SL_MOCK_FAULT=0 run_mock run job.yaml --backend cuda --set output.dir=out-lost
expect_status 0 "job whose only device faults"
# (the call that meets the fault names it; a later call on the lost context names it too)
expect_grep "cudaErrorIllegalAddress" "$ERR" "the lost device's error is named"
if grep -Eq "device 0 is lost|CUDA device 0: its context was lost" "$ERR"; then pass; else fail "device 0 is named as lost"; fi
expect_grep "every later batch of the worker run on the CPU" "$ERR" "the work moves to the CPU"
SL_MOCK_DEVICES=2 SL_MOCK_FAULT=1 run_mock run job.yaml --backend cuda --set output.dir=out-lost2 --set 'runtime.devices=[all]'
expect_status 0 "job on two devices, device 1 faults"
if grep -Eq "worker 1: .*(device 1 is lost|CUDA device 1: its context was lost)" "$ERR"; then pass; else fail "device 1 is named as lost"; fi
expect_grep "later ones on the other devices" "$ERR" "the work moves to device 0"
# Devices without memory pools: cudaMalloc / cudaFree instead of the stream-ordered pool.
SL_MOCK_NO_POOLS=1 run_mock run job.yaml --quiet --backend cuda --set output.dir=out-nopool
expect_status 0 "job on a device without memory pools"

py_check "the CUDA backend's jobs match the CPU backend" <<'PY'
import glob, json, os
import numpy as np
from sl_check import raw
files = sorted(glob.glob("out-cpu/stems/*/*.wav"))
assert len(files) == 6, files
X = np.load("out-cpu/embeddings/melstats/mix/shard-00000.npy")
for d in ("out-cuda", "out-auto", "out-m8", "out-m2", "out-2dev", "out-nopool", "out-dev1", "out-lost", "out-lost2"):
    rep = json.load(open(f"{d}/report.json"))
    assert rep["backend"] == "cuda", (d, rep["backend"])
    assert len(rep["ok"]) == 2 and not rep["failed"], (d, rep["ok"], rep["failed"])
    for f in files:
        a, g = raw(f), raw(f.replace("out-cpu", d))
        assert a.shape == g.shape, (d, f)
        err = np.abs(a - g).max() / max(np.abs(a).max(), 1e-9)
        assert err <= 1e-5, (d, f, err)  # parity tolerance of the STFT/iSTFT chain
    Y = np.load(f"{d}/embeddings/melstats/mix/shard-00000.npy")
    assert X.shape == Y.shape and np.abs(X - Y).max() <= 1e-5, (d, np.abs(X - Y).max())
p8 = json.load(open("out-m8/report.json"))["pipeline"]
p2 = json.load(open("out-m2/report.json"))["pipeline"]
assert p8["batch_splits"] + p8["cpu_fallbacks"] > 0, p8
assert p2["cpu_fallbacks"] > 0, p2
assert json.load(open("out-2dev/report.json"))["pipeline"]["workers"] == 2
peak = json.load(open("stats-dev1.json"))["peak_device_bytes"]
assert peak[0] == 0 and peak[1] > 0, peak  # runtime.devices: [1] uses device 1 only
assert json.load(open("out-cuda/report.json"))["pipeline"]["cpu_fallbacks"] == 0
# The same device code on one or two devices, pools or not: the same bytes.
for d in ("out-auto", "out-2dev", "out-nopool"):
    for f in glob.glob("out-cuda/stems/*/*.wav"):
        assert open(f, "rb").read() == open(f.replace("out-cuda", d), "rb").read(), (d, f)
PY

# No device / no driver: `cuda` is a clear error naming the call, `auto` falls back.
SL_MOCK_DEVICES=0 run_mock run job.yaml --quiet --backend cuda --set output.dir=out-none
expect_status 2 "--backend cuda without a device (permanent)"
expect_grep "cudaGetDeviceCount: no CUDA-capable device" "$ERR" "no-device error names the call"
SL_MOCK_NO_DRIVER=1 run_mock run job.yaml --quiet --backend cuda --set output.dir=out-none
expect_status 2 "--backend cuda without a driver (permanent)"
expect_grep "no CUDA driver is installed" "$ERR" "no-driver error"
SL_MOCK_DEVICES=0 run_mock run job.yaml --backend auto --set output.dir=out-fallback
expect_status 0 "--backend auto without a device"
expect_grep "no usable CUDA device" "$ERR" "auto says why it uses the CPU"
expect_grep "backend cpu" "$ERR" "auto falls back to the CPU"

# Device memory is sized by the batch configuration, never by the catalog or
# the track lengths (SL_MOCK_STATS: peak device bytes). One segment per model
# call, 1 s segments: a single 1 s track (one segment, P1) bounds the rest, as
# at most two segments are in flight (one computing, the next arriving; how
# often both overlap depends on timing): 8 tracks and one 8 s track peak at
# no more than 2 x P1. Buffers kept per track, or sized by the track, exceed it.
gen_tone t1.wav 1 44100 2 pcm_s16le
mkdir -p one many long
cp t1.wav one/
for i in 1 2 3 4 5 6 7 8; do cp t1.wav "many/t$i.wav"; done
gen_tone long/l.wav 8 44100 2 pcm_s16le
for d in one many long; do
  SL_MOCK_STATS=$PWD/stats-$d.json run_mock run job.yaml --quiet --backend cuda --set "input.paths=[$d]" \
    --set output.dir=out-mem-$d --set runtime.batch_size=1 --set separation.segment_seconds=1 \
    --set separation.overlap_seconds=0.25
  expect_status 0 "job on $d (memory bounds)"
done
py_check "peak device memory does not grow with the number of tracks or their length" <<'PY'
import json
st = {d: json.load(open(f"stats-{d}.json")) for d in ("one", "many", "long")}
peak = {d: st[d]["peak_device_bytes"][0] for d in st}
allocs = {d: st[d]["device_allocs"] for d in st}
print(peak, allocs)
assert peak["one"] > 0 and peak["many"] <= 2 * peak["one"] and peak["long"] <= 2 * peak["one"], peak
assert allocs["many"] > 4 * allocs["one"] and allocs["long"] > 4 * allocs["one"], allocs  # the work did run
PY

# Search on the device path (GEMM + running top-k on the device): the CPU's answer.
for id in x.wav y.flac; do
  run_sl search out-cuda --id "$id" --json -k 2 --backend cpu
  expect_status 0 "search --backend cpu --id $id"
  cp "$OUT" want.json
  run_mock search out-cuda --id "$id" --json -k 2 --backend cuda
  expect_status 0 "search --backend cuda --id $id (cudamock)"
  if cmp -s want.json "$OUT"; then pass; else fail "search --id $id: cuda and cpu answers differ"; diff want.json "$OUT" | head >&2; fi
done
# The neural models on the device path: Open-Unmix (GEMM, LSTM, Wiener) and
# Cnn14 (convolutions: cuDNN where the build has it, the direct kernel with
# SL_CONV_IMPL=direct), small random-weight models of the golden tests.
: "${SL_SRC:?SL_SRC must point at the source tree}"
nn_yaml nn-cpu
run_sl run nn.yaml --quiet --backend cpu
expect_status 0 "umx + cnn14 job on the CPU backend (reference)"
run_mock run nn.yaml --quiet --backend cuda --set output.dir=nn-cuda
expect_status 0 "umx + cnn14 job on backend cuda (cudamock)"
CONV=$(grep -o 'conv2d: [^"]*' nn-cuda/report.json | head -1)
echo "  $CONV"
if [ "${SL_MOCK_HAS_CUDNN:-0}" = 1 ]; then want="conv2d: cuDNN"; else want="conv2d: direct kernel (built without cuDNN)"; fi
case "$CONV" in "$want"*) pass ;; *) fail "nn-cuda report names '$CONV', expected '$want'" ;; esac
SL_CONV_IMPL=direct run_mock run nn.yaml --quiet --backend cuda --set output.dir=nn-direct
expect_status 0 "umx + cnn14 job on backend cuda, SL_CONV_IMPL=direct (cudamock)"
py_check "umx stems, cnn14 vectors and tags on the CUDA backend match the CPU backend" <<'PY'
import glob, json
import numpy as np
from sl_check import raw
files = sorted(glob.glob("nn-cpu/stems/*/*.wav"))
assert len(files) == 8, files
X = np.load("nn-cpu/embeddings/cnn14/mix/shard-00000.npy")
tags = [json.loads(l) for l in open("nn-cpu/tags/cnn14/tags.jsonl")]
for d in ("nn-cuda", "nn-direct"):
    rep = json.load(open(f"{d}/report.json"))
    assert rep["backend"] == "cuda" and len(rep["ok"]) == 2 and not rep["failed"], (d, rep["failed"])
    for f in files:
        a, g = raw(f), raw(f.replace("nn-cpu", d))
        assert a.shape == g.shape, (d, f)
        err = np.abs(a - g).max() / max(np.abs(a).max(), 1e-9)
        assert err <= 1e-4, (d, f, err)  # umx model tolerance (kernels/README.md: LSTM and Wiener chain)
    Y = np.load(f"{d}/embeddings/cnn14/mix/shard-00000.npy")
    assert X.shape == Y.shape and np.abs(X - Y).max() <= 1e-4, (d, np.abs(X - Y).max())
    t2 = [json.loads(l) for l in open(f"{d}/tags/cnn14/tags.jsonl")]
    for a, b in zip(tags, t2):
        assert a["id"] == b["id"]
        for x, y in zip(a["tags"], b["tags"]):
            assert abs(x["score"] - y["score"]) <= 1e-4, (d, x, y)
assert "direct kernel" in json.load(open("nn-direct/report.json"))["device"]
PY
finish
