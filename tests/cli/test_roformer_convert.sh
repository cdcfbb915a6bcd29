#!/usr/bin/env bash
# tools/convert_roformer.py on checkpoints as ZFTurbo's training writes them
# and configs as his repository and python-audio-separator distribute them
# (tools/gen_golden_roformer.py --zfturbo, at test time: a BS-RoFormer under
# "state_dict" with "module." names, mlp_expansion_factor 2, freqs_per_bands
# as !!python/tuple, num_overlap 4; a four-stem Mel-Band RoFormer with
# mask_estimator_depth 2 and mlp_expansion_factor 3): converted, they give the
# reference demix's whole-track stems within 1e-4; config keys that change the
# computation (linear_transformer_depth, skip_connection, unknown keys) and
# checkpoints that do not fit the config (a tensor missing, misshapen or left
# over) are refused naming the key (exit 2), and stemline refuses a weights
# file with a tensor it does not use. Needs a python with torch, bs-roformer,
# PyYAML and librosa (ROFORMER_PYTHON, default $SL_SRC/bench/.venv-torch/bin/python);
# exits 77 (skipped) without one.
set -u
source "$(dirname "$0")/lib.sh"
SRC=${SL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY="${ROFORMER_PYTHON:-$SRC/bench/.venv-torch/bin/python}"
if ! "$PY" -c "import torch, bs_roformer, yaml, librosa" >/dev/null 2>&1; then
  echo "SKIPPED: no python with torch, bs-roformer, PyYAML and librosa (set ROFORMER_PYTHON)"
  exit 77
fi
in_tmp_dir

"$PY" "$SRC/tools/gen_golden_roformer.py" --zfturbo "$T" >/dev/null 2>&1 || fail "could not make the checkpoints"
"$PY" - <<'PY' 2>/dev/null || fail "could not make the variants"
import torch, yaml
cfg = yaml.load(open("bs.yaml"), Loader=yaml.FullLoader)
def variant(name, **kw):
    c = dict(cfg, model=dict(cfg["model"], **kw))
    yaml.dump(c, open(name + ".yaml", "w"))
variant("linear", linear_transformer_depth=1)
variant("unknown", use_shared_bias=True)
variant("skip", skip_connection=True)
variant("factor", mlp_expansion_factor=4)
sd = torch.load("bs.ckpt", weights_only=False)["state_dict"]
extra = dict(sd)
extra["module.layers.0.0.layers.0.0.to_value_residual_mix.0.weight"] = torch.zeros(2, 16)
torch.save(extra, "extra.ckpt")
missing = dict(sd)
del missing["module.final_norm.gamma"]
torch.save(missing, "missing.ckpt")
PY

run_py() { "$PY" "$SRC/tools/convert_roformer.py" "$@" >"$T/conv.out" 2>"$T/conv.err"; echo $?; }
for n in bs mel; do
  [ "$(run_py --config $n.yaml --out $n.safetensors $n.ckpt)" = 0 ] && pass || fail "conversion of $n: $(cat conv.err)"
done
run_sl models info bs.safetensors
expect_status 0 "models info on the converted file"
expect_grep "bs_roformer" "$OUT" "architecture in the metadata"
grep -qE "num_overlap +4" "$OUT" && pass || fail "inference.num_overlap (4) not in the metadata"

mkdir inb inm
cp bs.wav inb/ && cp mel.wav inm/
printf '%s\n' "input: {paths: [inb]}" "output: {dir: out, stems: {format: wav, sample_format: f32}}" \
  "separation: {model: bs_roformer, weights: bs.safetensors}" "embedding: {model: none}" \
  "runtime: {backend: cpu}" > job.yaml
run_sl run job.yaml --quiet
expect_status 0 "a job with the converted BS-RoFormer"
run_sl run job.yaml --quiet --set output.dir=outm --set 'input.paths=[inm]' \
  --set separation.model=mel_band_roformer --set separation.weights=mel.safetensors
expect_status 0 "a job with the converted Mel-Band RoFormer"
py_check "converted checkpoints give the reference's whole-track stems" <<'PY'
import numpy as np, sl_check
for out, n, stems in (("out", "bs", ["vocals"]), ("outm", "mel", ["vocals", "bass", "drums", "other"])):
    ref = np.load("ref_%s.npy" % n)
    for i, s in enumerate(stems):
        v = sl_check.raw("%s/stems/%s.wav/%s.wav" % (out, n, s), 2, 44100).T
        err = np.abs(v - ref[i]).max() / np.abs(ref[i]).max()
        assert v.shape == ref[i].shape and err <= 1e-4, (n, s, v.shape, err)
PY

for v in linear:linear_transformer_depth unknown:use_shared_bias skip:skip_connection; do
  [ "$(run_py --config ${v%%:*}.yaml --out x.safetensors bs.ckpt)" = 2 ] && pass || fail "${v%%:*} accepted"
  expect_grep "${v##*:}" "$T/conv.err" "message names ${v##*:}"
done
[ "$(run_py --config factor.yaml --out x.safetensors bs.ckpt)" = 2 ] && pass || fail "wrong mlp_expansion_factor accepted"
expect_grep "mask_estimators.0.to_freqs.0.0.0.weight" "$T/conv.err" "message names the misshapen tensor"
[ "$(run_py --config bs.yaml --out x.safetensors missing.ckpt)" = 2 ] && pass || fail "missing tensor accepted"
expect_grep "final_norm.gamma" "$T/conv.err" "message names the missing tensor"
[ "$(run_py --config bs.yaml --out x.safetensors extra.ckpt)" = 2 ] && pass || fail "extra tensor accepted"
expect_grep "to_value_residual_mix" "$T/conv.err" "message names the left-over tensor"
[ ! -e x.safetensors ] && pass || fail "a refused conversion wrote a file"

# stemline models fetch: the official names (here our checkpoint under them) through --from,
# licence and training data shown, each file's sha256 recorded in the output
mkdir www
cp bs.yaml www/model_bs_roformer_ep_317_sdr_12.9755.yaml
cp bs.ckpt www/model_bs_roformer_ep_317_sdr_12.9755.ckpt
STEMLINE_PYTHON="$PY" run_sl models fetch bs_roformer_viperx --from www --dir mf
expect_status 0 "models fetch bs_roformer_viperx --from"
expect_grep "training data: not disclosed" "$ERR" "fetch shows the training data"
expect_grep "no published digest" "$ERR" "fetch says no digest was published"
run_sl models info mf/bs_roformer_viperx.safetensors
expect_status 0 "models info on the fetched file"
expect_grep "$(sha256sum bs.ckpt | cut -c1-64)" "$OUT" "the checkpoint's sha256 in the metadata"

# stemline's own check, on a file the converter did not write: a tensor left over
SRC="$SRC" "$PY" - <<'PY' 2>/dev/null || fail "could not write the extra-tensor file"
import os, sys
import numpy as np
sys.path.insert(0, os.path.join(os.environ["SRC"], "tools"))
import stemline_st
from gen_golden_roformer import load_safetensors
sd, meta = load_safetensors("bs.safetensors")
t = list(sd.items()) + [("layers.0.0.layers.0.0.to_value_residual_mix.0.weight", np.zeros((2, 16), np.float32))]
stemline_st.save("extra.safetensors", t, meta)
PY
run_sl run job.yaml --quiet --set separation.weights=extra.safetensors --set output.dir=out2
expect_status 2 "a weights file with a tensor of another version"
expect_grep "to_value_residual_mix" "$ERR" "message names the left-over tensor"
finish
