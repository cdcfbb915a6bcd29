#!/usr/bin/env bash
# tools/convert_roformer.py on checkpoints in the format ZFTurbo's repository
# distributes (a .ckpt with the state dict, possibly under "state_dict" with
# "module." prefixes, and a YAML config with audio / model / training /
# inference sections), made at test time by the bs-roformer package: the
# converted file runs in stemline and separates; a config key that changes the
# computation is refused naming the key (exit 2); a checkpoint of another
# version (an extra tensor) is refused by stemline naming the tensor (exit 2).
# Needs a python with torch, bs-roformer and PyYAML (ROFORMER_PYTHON, default
# /work/venv-roformer/bin/python); exits 77 (skipped) without one.
set -u
source "$(dirname "$0")/lib.sh"
SRC=${SL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY="${ROFORMER_PYTHON:-/work/venv-roformer/bin/python}"
if ! "$PY" -c "import torch, bs_roformer, yaml, librosa" >/dev/null 2>&1; then
  echo "SKIPPED: no python with torch, bs-roformer, PyYAML and librosa (set ROFORMER_PYTHON)"
  exit 77
fi
in_tmp_dir

"$PY" - <<'PY' 2>/dev/null || fail "could not make the checkpoints"
import torch, yaml, bs_roformer
torch.manual_seed(0)
kw = dict(dim=16, depth=1, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
          freqs_per_bands=(2, 2, 4, 4, 8, 13, 32), dim_head=8, heads=2, stft_n_fft=128, stft_hop_length=32,
          stft_win_length=128, mask_estimator_depth=2)
m = bs_roformer.BSRoformer(**kw)
sd = m.state_dict()
torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, "bs.ckpt")
extra = dict(sd)
extra["layers.0.0.layers.0.0.to_value_residual_mix.0.weight"] = torch.zeros(2, 16)
torch.save(extra, "extra.ckpt")
model = dict(kw, freqs_per_bands=list(kw["freqs_per_bands"]), attn_dropout=0.1, ff_dropout=0.1, flash_attn=True,
             linear_transformer_depth=0, dim_freqs_in=65, multi_stft_resolution_loss_weight=1.0,
             multi_stft_resolutions_window_sizes=[4096, 2048], multi_stft_hop_size=147,
             multi_stft_normalized=False, mlp_expansion_factor=4, use_torch_checkpoint=False, skip_connection=False)
cfg = {"audio": {"chunk_size": 3200, "num_channels": 2, "sample_rate": 44100, "min_mean_abs": 0.0},
       "model": model, "training": {"instruments": ["vocals", "other"], "target_instrument": "vocals"},
       "inference": {"batch_size": 1, "dim_t": 101, "num_overlap": 4}}
yaml.safe_dump(cfg, open("bs.yaml", "w"))
cfg["model"]["linear_transformer_depth"] = 1
yaml.safe_dump(cfg, open("linear.yaml", "w"))
cfg["model"]["linear_transformer_depth"] = 0
cfg["model"]["use_shared_bias"] = True
yaml.safe_dump(cfg, open("unknown.yaml", "w"))
PY

run_py() { "$PY" "$SRC/tools/convert_roformer.py" "$@" >"$T/conv.out" 2>"$T/conv.err"; echo $?; }
[ "$(run_py --config bs.yaml --out bs.safetensors bs.ckpt)" = 0 ] && pass || fail "conversion: $(cat conv.err)"
run_sl models info bs.safetensors
expect_status 0 "models info on the converted file"
expect_grep "bs_roformer" "$OUT" "architecture in the metadata"
expect_grep "zero_dc" "$OUT" "zero_dc (ZFTurbo's default) in the metadata"

mkdir in
gen_tone in/a.wav 0.3 44100 2 pcm_s16le
cat > job.yaml <<JOB
input: {paths: [in]}
output: {dir: out, stems: {format: wav, sample_format: f32}}
separation: {model: bs_roformer, weights: bs.safetensors}
embedding: {model: none}
runtime: {backend: cpu}
JOB
run_sl run job.yaml --quiet
expect_status 0 "a job with the converted checkpoint"
[ -s out/stems/a.wav/vocals.wav ] && [ -s out/stems/a.wav/instrumental.wav ] && pass || fail "stems missing"

[ "$(run_py --config linear.yaml --out x.safetensors bs.ckpt)" = 2 ] && pass || fail "linear_transformer_depth accepted"
expect_grep "linear_transformer_depth" "$T/conv.err" "message names linear_transformer_depth"
[ "$(run_py --config unknown.yaml --out x.safetensors bs.ckpt)" = 2 ] && pass || fail "unknown key accepted"
expect_grep "use_shared_bias" "$T/conv.err" "message names the unknown key"
[ ! -e x.safetensors ] && pass || fail "a refused conversion wrote a file"

[ "$(run_py --config bs.yaml --out extra.safetensors extra.ckpt)" = 0 ] && pass || fail "extra conversion"
run_sl run job.yaml --quiet --set separation.weights=extra.safetensors --set output.dir=out2
expect_status 2 "a checkpoint of another version"
expect_grep "to_value_residual_mix" "$ERR" "message names the left-over tensor"
finish
