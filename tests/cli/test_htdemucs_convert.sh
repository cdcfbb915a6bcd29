#!/usr/bin/env bash
# tools/convert_htdemucs.py on checkpoints as demucs writes them
# (demucs.states.serialize_model: klass, args, kwargs, float16 state; made at
# test time from small random HTDemucs models): a single model and a bag with
# its YAML convert (the tensors are the checkpoint's state in float32, the
# metadata carries the architecture, segment and weights matrix), stemline
# loads them (models info) and separates a track with them into demucs's stem
# names; a checkpoint of another class, an unknown or unsupported constructor
# argument, and a bag whose YAML does not match its files are refused naming
# the file and the key (exit 2). `models fetch htdemucs --from` checks the
# sha256 prefix the released file name carries. Needs a python with torch,
# demucs and PyYAML (HTDEMUCS_PYTHON, default the shared bench venv); exits 77
# (skipped) without one.
set -u
source "$(dirname "$0")/lib.sh"
SRC=${SL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
PY="${HTDEMUCS_PYTHON:-$SRC/bench/.venv-torch/bin/python}"
if ! "$PY" -c "import torch, demucs.htdemucs, yaml" >/dev/null 2>&1; then
  echo "SKIPPED: no python with torch, demucs and PyYAML (set HTDEMUCS_PYTHON)"
  exit 77
fi
in_tmp_dir

SL_TOOLS="$SRC/tools" "$PY" - <<'PY' 2>py.err || fail "could not make the checkpoints: $(tail -3 py.err)"
import fractions, os, sys
import torch
sys.path.insert(0, os.environ["SL_TOOLS"])
from demucs.htdemucs import HTDemucs
from demucs.hdemucs import HDemucs
from demucs.states import serialize_model

kw = dict(sources=["drums", "bass", "other", "vocals"], audio_channels=2, channels=4, nfft=512, depth=3,
          dconv_comp=4, t_layers=2, t_heads=2, samplerate=8000, segment=fractions.Fraction(1, 8))
from omegaconf import OmegaConf
def ser(model):
    return serialize_model(model, OmegaConf.create({}), half=True)
def save(model, name, **extra):
    pkg = ser(model)
    pkg.update(extra)
    torch.save(pkg, name)
torch.manual_seed(0)
a = HTDemucs(**kw)
save(a, "aaaaaaaa-11111111.th")
torch.manual_seed(1)
save(HTDemucs(**kw), "bbbbbbbb-22222222.th")
open("bag.yaml", "w").write("models: ['aaaaaaaa', 'bbbbbbbb']\nweights: [[1., 0., 1., 0.], [0., 1., 1., 1.]]\n")
open("badbag.yaml", "w").write("models: ['aaaaaaaa', 'cccccccc']\n")
open("badw.yaml", "w").write("models: ['aaaaaaaa', 'bbbbbbbb']\nweights: [[1., 0.], [0., 1.]]\n")
pkg = ser(a)
pkg["kwargs"] = dict(pkg["kwargs"], t_emb="cape")
torch.save(pkg, "cape.th")
pkg = ser(a)
pkg["kwargs"] = dict(pkg["kwargs"], t_new_option=3)
torch.save(pkg, "unknown.th")
torch.manual_seed(2)
save(HDemucs(sources=kw["sources"], channels=4, depth=2), "hdemucs.th")
# the released htdemucs file name with other content: the sha256 prefix does not match
import shutil
os.makedirs("rel", exist_ok=True)
shutil.copy("aaaaaaaa-11111111.th", "rel/955717e8-8726e21a.th")
PY

conv() { "$PY" "$SRC/tools/convert_htdemucs.py" "$@" >conv.out 2>conv.err; echo $?; }
[ "$(conv --out one.safetensors aaaaaaaa-11111111.th)" = 0 ] && pass || fail "single model: $(cat conv.err)"
[ "$(conv --out bag.safetensors --bag bag.yaml bbbbbbbb-22222222.th aaaaaaaa-11111111.th)" = 0 ] && pass ||
  fail "bag: $(cat conv.err)"

SL_PYTHON="$PY" py_check "converted tensors and metadata" <<'PY'
import json, os, struct, sys
import numpy as np, torch
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__")
    t = {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], "<f4").reshape(v["shape"])
         for k, v in h.items()}
    return t, meta
t, meta = read("one.safetensors")
assert meta["stemline.arch"] == "htdemucs" and meta["models"] == "1" and meta["segment"] == "1/8", meta
assert meta["sources"] == "drums,bass,other,vocals" and meta["nfft"] == "512" and meta["depth"] == "3", meta
st = torch.load("aaaaaaaa-11111111.th", weights_only=False)["state"]
assert set(t) == {"m0." + k for k in st}, "tensor names"
for k, v in st.items():
    assert np.array_equal(t["m0." + k], v.float().numpy()), k
t, meta = read("bag.safetensors")
assert meta["models"] == "2" and meta["bag_weights"] == "1.0,0.0,1.0,0.0;0.0,1.0,1.0,1.0", meta
stb = torch.load("bbbbbbbb-22222222.th", weights_only=False)["state"]
# the YAML's order decides the model index, not the command line's
for k, v in stb.items():
    assert np.array_equal(t["m1." + k], v.float().numpy()), k
PY

run_sl models info one.safetensors
expect_status 0 "models info on the converted model"
expect_grep "htdemucs" "$OUT" "architecture in the metadata"

# errors: exit 2, the file and the key named
expect_conv_error() { # WHAT KEY ARGS...
  local what=$1 key=$2
  shift 2
  local st
  st=$(conv --out x.safetensors "$@")
  if [ "$st" = 2 ] && grep -q "$key" conv.err; then pass; else fail "$what: exit $st, $(cat conv.err)"; fi
  [ ! -e x.safetensors ] && pass || fail "$what: an output was written"
}
expect_conv_error "another class" "hdemucs.th: key 'klass' is HDemucs" hdemucs.th
expect_conv_error "unsupported t_emb" "cape.th: model key 't_emb'" cape.th
expect_conv_error "unknown argument" "unknown.th: model key 't_new_option' is unknown" unknown.th
expect_conv_error "bag without its file" "badbag.yaml: key 'models': no file given for signature cccccccc" \
  --bag badbag.yaml aaaaaaaa-11111111.th bbbbbbbb-22222222.th
expect_conv_error "bag weights of the wrong width" "badw.yaml: key 'weights' row 0" \
  --bag badw.yaml aaaaaaaa-11111111.th bbbbbbbb-22222222.th
expect_conv_error "two files without a bag" "several checkpoint files need --bag" aaaaaaaa-11111111.th bbbbbbbb-22222222.th

# a job with the converted bag: demucs's stem names
mkdir in
gen_tone in/a.wav 1 8000 2 pcm_s16le
printf '%s\n' "input: {paths: [in]}" "output: {dir: out, stems: {format: wav, sample_format: f32}}" \
  "separation: {model: htdemucs, weights: bag.safetensors}" "embedding: {model: none}" \
  "runtime: {backend: cpu}" > job.yaml
run_sl run job.yaml --quiet
expect_status 0 "a job with the converted bag"
for s in drums bass other vocals; do
  [ -n "$(find out -name "$s.wav" | head -1)" ] && pass || fail "stem $s.wav not written"
done

# the released file name's sha256 prefix is checked
STEMLINE_PYTHON="$PY" run_sl models fetch htdemucs --from rel --dir m
expect_status 1 "fetch --from with a file whose sha256 does not match its name"
expect_grep "does not start with 8726e21a" "$ERR" "the sha256 prefix named"
[ ! -e m/htdemucs.safetensors ] && pass || fail "fetch wrote a model from a bad file"
finish
