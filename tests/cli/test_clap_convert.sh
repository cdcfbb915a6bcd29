#!/usr/bin/env bash
# tools/convert_clap.py on a checkpoint in laion_clap's format (a .pt with
# "state_dict" under "module." names, as the published checkpoints are), made
# at test time from the reduced text tower of tests/golden/clap_text: the
# converted file embeds text exactly as the golden file does; a fusion
# checkpoint and an unreadable vocabulary are refused (exit 2); an extra text
# tensor (another text encoder) is refused by stemline naming the tensor.
# Needs a python with torch and numpy (CLAP_PYTHON, default
# $SL_SRC/bench/.venv-torch/bin/python); exits 77 (skipped) without one.
set -u
source "$(dirname "$0")/lib.sh"
SRC=${SL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY="${CLAP_PYTHON:-$SRC/bench/.venv-torch/bin/python}"
if ! "$PY" -c "import torch, numpy" >/dev/null 2>&1; then
  echo "SKIPPED: no python with torch and numpy (set CLAP_PYTHON)"
  exit 77
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
G="$SRC/tests/golden/clap_text"

"$PY" - "$G/small.safetensors" <<'PY' || fail "could not make the checkpoints"
import json, sys
import numpy as np, torch
raw = open(sys.argv[1], "rb").read()
n = int.from_bytes(raw[:8], "little")
head = json.loads(raw[8:8 + n])
data = raw[8 + n:]
sd = {}
for k, v in head.items():
    if k == "__metadata__" or k.startswith("tokenizer."):
        continue
    a, b = v["data_offsets"]
    sd["module." + k] = torch.from_numpy(np.frombuffer(data[a:b], "<f4").reshape(v["shape"]).copy())
sd["module.text_branch.embeddings.position_ids"] = torch.arange(80).unsqueeze(0)
sd["module.audio_branch.spectrogram_extractor.stft.conv_real.weight"] = torch.zeros(3, 1, 4)
sd["module.audio_branch.bn0.num_batches_tracked"] = torch.tensor(7)
sd["module.audio_branch.layers.0.blocks.0.attn.relative_position_index"] = torch.arange(4).reshape(2, 2)
sd["module.logit_scale_a"] = torch.tensor(2.0)
# numpy scalars beside the state dict, as in the published training checkpoints
torch.save({"epoch": 15, "state_dict": sd, "best_metric": np.float64(90.14)}, "clap.pt")
fused = dict(sd)
fused["module.audio_branch.fusion_model.local_att.0.weight"] = torch.zeros(2, 2)
torch.save({"state_dict": fused}, "fusion.pt")
extra = dict(sd)
extra["module.text_branch.embeddings.extra.weight"] = torch.zeros(2, 2)
torch.save({"state_dict": extra}, "extra.pt")
PY

run_sl() { "$@" >"$OUT" 2>"$ERR"; STATUS=$?; }
conv=("$PY" "$SRC/tools/convert_clap.py" --vocab "$G/vocab.json" --merges "$G/merges.txt" --text-heads 4)
run_sl "${conv[@]}" --out conv.safetensors clap.pt
expect_status 0 "convert_clap.py"
run_sl "$STEMLINE" embed-text --model conv.safetensors "calm piano with rain sounds" "heavy metal"
expect_status 0 "embed-text with the converted file"
cp "$OUT" conv.jsonl
run_sl "$STEMLINE" embed-text --model "$G/small.safetensors" "calm piano with rain sounds" "heavy metal"
cmp -s "$OUT" conv.jsonl && pass || fail "the converted checkpoint embeds differently from the golden file"
"$PY" - <<'PY' || fail "the converted file keeps the names, buffers and metadata"
import json
raw = open("conv.safetensors", "rb").read()
head = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
meta = head.pop("__metadata__")
assert meta["stemline.arch"] == "clap" and meta["clap.text.layers"] == "2" and meta["clap.text.heads"] == "4", meta
assert meta["clap.amodel"] == "HTSAT-base" and meta["clap.audio.depths"] == "2,2,12,2", meta
assert "text_branch.embeddings.position_ids" not in head
assert meta["sample_rate"] == "48000" and meta["hop_size"] == "480" and meta["spec_size"] == "256", meta
assert "audio_branch.bn0.num_batches_tracked" not in head
assert "audio_branch.spectrogram_extractor.stft.conv_real.weight" not in head
assert head["audio_branch.layers.0.blocks.0.attn.relative_position_index"]["dtype"] == "I64"
assert head["logit_scale_a"]["dtype"] == "F32"
assert head["tokenizer.vocab_json"]["dtype"] == "U8"
PY

run_sl "${conv[@]}" --out fusion.safetensors fusion.pt
expect_status 2 "a fusion checkpoint"
expect_grep "fusion checkpoint" "$ERR" "the fusion checkpoint is named as such"
run_sl "$PY" "$SRC/tools/convert_clap.py" --vocab "$T/nope.json" --merges "$G/merges.txt" --out x.safetensors clap.pt
expect_status 2 "a missing vocabulary"
expect_grep "nope.json" "$ERR" "the missing vocabulary is named"
run_sl "${conv[@]}" --out extra.safetensors extra.pt
expect_status 0 "convert_clap.py with an extra tensor"
run_sl "$STEMLINE" embed-text --model extra.safetensors "piano"
expect_status 2 "embed-text refuses a text tower with an extra tensor"
expect_grep "text_branch.embeddings.extra.weight" "$ERR" "the extra tensor is named"
finish
