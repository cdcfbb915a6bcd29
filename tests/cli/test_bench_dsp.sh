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
  DSP_BACKENDS=cpu,cuda-emu,nosuch DSP_WORK="$T/work" bash "$SL_SRC/bench/run_dsp.sh" >"$T/out.md" 2>"$ERR"
STATUS=$?
expect_status 0 "run_dsp.sh"
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
# The tables a GPU run produces (bench/gpu_check.sh --table, run_dsp.sh's code), on
# made-up rows whose ratios are known: stemline cuda vs torch-cuda, bandwidth verdicts.
mkdir -p "$T/gpu"
cat > "$T/gpu/dsp-stemline.jsonl" <<'JL'
{"bench":"dsp","impl":"stemline","backend":"cuda","device":"GPU X","threads":0,"op":"stft","n_fft":2048,"hop":512,"tracks":8,"channels":2,"seconds":60,"frames":82704,"best_s":0.01,"repeat":3,"frames_per_s":8270400.0,"x_realtime":48000.0}
{"bench":"dsp","impl":"stemline","backend":"cuda","device":"GPU X","threads":0,"op":"istft","n_fft":2048,"hop":512,"tracks":8,"channels":2,"seconds":60,"frames":82704,"best_s":0.01,"repeat":3,"frames_per_s":8270400.0,"x_realtime":48000.0}
{"bench":"bandwidth","impl":"stemline","backend":"cuda","device":"GPU X","op":"copy","buffer_mb":1024,"bytes":2147483648,"best_s":0.0005,"repeat":3,"gb_per_s":4294.967,"copy_gb_per_s":4294.967,"fraction_of_copy":1.000,"memory_bound":true}
{"bench":"bandwidth","impl":"stemline","backend":"cuda","device":"GPU X","op":"magnitude","buffer_mb":1024,"bytes":1610612736,"best_s":0.0005,"repeat":3,"gb_per_s":3221.225,"copy_gb_per_s":4294.967,"fraction_of_copy":0.750,"memory_bound":true}
{"bench":"bandwidth","impl":"stemline","backend":"cuda","device":"GPU X","op":"log_db","buffer_mb":1024,"bytes":1073741824,"best_s":0.001,"repeat":3,"gb_per_s":1073.742,"copy_gb_per_s":4294.967,"fraction_of_copy":0.250,"memory_bound":true}
{"bench":"bandwidth","impl":"stemline","backend":"cuda","device":"GPU X","op":"median_time","buffer_mb":1024,"bytes":1073741824,"best_s":0.01,"repeat":3,"gb_per_s":107.374,"copy_gb_per_s":4294.967,"fraction_of_copy":0.025,"memory_bound":false}
JL
cat > "$T/gpu/dsp-torch.jsonl" <<'JL'
{"bench":"dsp","impl":"torch-cuda","version":"9.9 (CUDA 13.0, GPU X)","threads":0,"op":"stft","n_fft":2048,"hop":512,"tracks":8,"channels":2,"seconds":60,"frames":82704,"best_s":0.02,"repeat":3,"frames_per_s":4135200.0,"x_realtime":24000.0,"device":"GPU X"}
{"bench":"dsp","impl":"torch-cuda","version":"9.9 (CUDA 13.0, GPU X)","threads":0,"op":"istft","n_fft":2048,"hop":512,"tracks":8,"channels":2,"seconds":60,"frames":82704,"best_s":0.0125,"repeat":3,"frames_per_s":6616320.0,"x_realtime":38400.0,"device":"GPU X"}
JL
cat > "$T/gpu/gemm.jsonl" <<'JL'
{"bench":"gemm","backend":"cuda","device":"GPU X; conv2d: cuDNN","precision":"fp32","shape":"umx fc1 2974->512","m":692,"n":512,"k":2974,"batch":1,"ms":0.3,"tflops":7.04,"err":2.85e-07}
{"bench":"gemm","backend":"cuda","device":"GPU X; conv2d: cuDNN; precision bf16","precision":"bf16","shape":"umx fc1 2974->512","m":692,"n":512,"k":2974,"batch":1,"ms":0.05,"tflops":42.3,"err":2.1e-03}
{"bench":"gemm","backend":"cuda","precision":"tf32","skipped":"unsupported"}
JL
bash "$SL_SRC/bench/gpu_check.sh" --table "$T/gpu" >/dev/null 2>"$ERR"
STATUS=$?
expect_status 0 "gpu_check.sh --table"
expect_grep "| umx fc1 2974->512 (692 x 512 x 2974) | 7.0 | 2.9e-07 | 42.3 | 2.1e-03 |" "$T/gpu/tables.md" "GEMM row per precision: TFLOP/s and error"
expect_grep "cuda tf32: skipped (unsupported)" "$T/gpu/tables.md" "a skipped precision is said"
echo "gpu: GPU X, 81559 MiB, 580.65" > "$T/gpu/nvidia-smi.txt"
echo "bundle: 0123abc" > "$T/gpu/gpu_check.log"
echo "# results" > "$T/results.md"
bash "$SL_SRC/bench/gpu_check.sh" --record "$T/gpu" "$T/results.md" >/dev/null 2>"$ERR"
STATUS=$?
expect_status 0 "gpu_check.sh --record"
expect_grep "## GPU check on GPU X, 81559 MiB, 580.65 (bench/gpu_check.sh, bundle commit 0123abc" "$T/results.md" "--record names the GPU and the commit"
expect_grep "| umx fc1 2974->512" "$T/results.md" "--record appends the tables"
expect_grep "| stft | 2048 / 512 | 8,270,400 (48,000.0x) | 4,135,200 (24,000.0x) | 2.00x | met |" "$T/gpu/tables.md" "GPU stft row: 2x torch, met"
expect_grep "| istft | 2048 / 512 | 8,270,400 (48,000.0x) | 6,616,320 (38,400.0x) | 1.25x | NOT met |" "$T/gpu/tables.md" "GPU istft row: 1.25x torch, not met"
expect_grep "| cuda | magnitude | 3,221.2 | 4,295.0 | 75% | met |" "$T/gpu/tables.md" "GPU bandwidth >= 50%: met"
expect_grep "| cuda | log_db | 1,073.7 | 4,295.0 | 25% | NOT met |" "$T/gpu/tables.md" "GPU bandwidth < 50%: not met"
expect_grep "| cuda | median_time | 107.4 | 4,295.0 | 2% | compute-bound |" "$T/gpu/tables.md" "medians marked compute-bound"
# The new models' rows (bench/gpu_check.sh part "models"): stemline jobs with device memory and
# TFLOP/s, PyTorch beside them, the text tower's queries/s, HT-Demucs's memory by track length
# and the issues' GPU targets, on made-up rows whose ratios are known.
cat > "$T/gpu/jobs.jsonl" <<'JL'
{"job":"bs_roformer","precision":"bf16","status":0,"backend":"cuda","device":"GPU X","audio_seconds":480.0,"wall_seconds":3.2,"x_realtime":150.0,"ok":16,"failed":0,"note":"full","peak_mib":5000,"peak_mib_above_idle":4500,"flops":5.4e14,"tflops":170.0,"tflops_separate":190.5,"min_snr_db_vs_fp32":41.5}
{"job":"htdemucs","precision":"bf16","status":0,"backend":"cuda","device":"GPU X","audio_seconds":480.0,"wall_seconds":1.92,"x_realtime":250.0,"ok":16,"failed":0,"note":"full","peak_mib":3100,"peak_mib_above_idle":2600}
{"job":"htdemucs-long","precision":"bf16","status":0,"backend":"cuda","device":"GPU X","audio_seconds":600.0,"wall_seconds":2.4,"x_realtime":250.0,"ok":2,"failed":0,"note":"full","peak_mib":3050,"peak_mib_above_idle":2550}
{"job":"clap_text","precision":"fp32","note":"full","backend":"cuda","device":"GPU X","model_only":true,"queries_per_s":2000.0,"queries":16,"batch_queries":16}
{"backend":"torch-cuda","device":"GPU X","audio_seconds":480.0,"job":"bs_roformer","precision":"bf16","wall_seconds":9.6,"x_realtime":50.0,"tflops":57.0,"peak_mib":9000}
{"backend":"torch-cuda","device":"GPU X","audio_seconds":480.0,"job":"htdemucs","precision":"fp32","wall_seconds":24.0,"x_realtime":20.0,"peak_mib":2000}
{"backend":"torch-cuda","device":"GPU X","audio_seconds":480.0,"job":"htdemucs","precision":"bf16","error":"RuntimeError: bf16 istft"}
{"backend":"torch-cuda","device":"GPU X","audio_seconds":480.0,"job":"mel_band_roformer","precision":"fp16","wall_seconds":6.0,"x_realtime":80.0,"torch":"9.9"}
{"job":"mel_band_roformer","precision":"bf16","status":0,"backend":"cuda","device":"GPU X","audio_seconds":480.0,"wall_seconds":2.4,"x_realtime":200.0,"ok":16,"failed":0,"note":"full"}
{"backend":"torch-cuda","device":"GPU X","job":"clap_text","precision":"fp32","queries_per_s":500.0}
JL
bash "$SL_SRC/bench/gpu_check.sh" --table "$T/gpu" >/dev/null 2>"$ERR"
STATUS=$?
expect_status 0 "gpu_check.sh --table with the new models' rows"
expect_grep "| bs_roformer | bf16 | cuda | 480.0 | 3.20 | 150.0 | 16 / 0 | 41.5 | - | 5000 (4500) | 170.0 / 190.5 |" "$T/gpu/tables.md" "job row: memory and TFLOP/s"
expect_grep "| bs_roformer | bf16 | 150.0 | 50.0 | 3.00 | 170.0 | 57.0 | 5000 | 9000 |" "$T/gpu/tables.md" "stemline against torch with TFLOP/s and memory"
expect_grep "torch htdemucs bf16: RuntimeError: bf16 istft" "$T/gpu/tables.md" "a torch error is said"
expect_grep "| mel_band_roformer | bf16 (torch fp16) | 200.0 | 80.0 | 2.50 |" "$T/gpu/tables.md" "stemline bf16 against torch fp16 where torch has no bf16"
expect_grep "| mel_band_roformer | fp16 | 80.0 | 6.00 | - | - | 9.9 |" "$T/gpu/tables.md" "every torch figure listed"
expect_grep "| stemline (bench_clap_text) | cuda | fp32 | 2000.0 |" "$T/gpu/tables.md" "text tower: stemline queries/s"
expect_grep "| PyTorch (laion_clap) | torch-cuda | fp32 | 500.0 |" "$T/gpu/tables.md" "text tower: torch queries/s"
expect_grep "| htdemucs-long | bf16 | 600 | 3050 | 2550 |" "$T/gpu/tables.md" "HT-Demucs memory by track length"
expect_grep "| BS-RoFormer 4-stem bf16 >= 100x realtime (aim 200x) | 150.0x | met |" "$T/gpu/tables.md" "BS-RoFormer target met"
expect_grep "| htdemucs bf16 >= 300x realtime end to end | 250.0x | not met |" "$T/gpu/tables.md" "htdemucs target not met"
expect_grep "| htdemucs bf16 >= 10x PyTorch demucs (fp32 apply_model) | 12.5x | met |" "$T/gpu/tables.md" "htdemucs against torch: met"
finish
