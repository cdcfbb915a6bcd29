#!/usr/bin/env bash
# The converters (tools/convert_umx.py, tools/convert_cnn14.py) on tiny fake
# state dicts made with torch at test time: stemline's C reader reads the result
# (`models info --json --tensors`) with the right names, shapes, metadata and
# values (per-tensor sums against torch's), dropped buffers are gone, and bad
# inputs fail with a message and write nothing. Needs a python3 that imports
# torch (Debian python3-torch); CI installs none, so there it exits 77 (skipped).
set -u
source "$(dirname "$0")/lib.sh"
SRC=${SL_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
TPY=
for cand in "${SL_TORCH_PYTHON:-}" "$SL_PYTHON" /usr/bin/python3; do
  [ -n "$cand" ] && "$cand" -c "import torch, numpy" >/dev/null 2>&1 && { TPY=$cand; break; }
done
if [ -z "$TPY" ]; then
  echo "SKIPPED: no python3 that imports torch (apt-get install python3-torch to run this test)"
  exit 77
fi
SL_PYTHON=$TPY  # the read-back checks compare against torch's sums
in_tmp_dir

# ---- Open-Unmix: 4 targets, hidden 8, 2 channels, nb_bins 9 (n_fft 16), max_bin 5 ----
"$TPY" - <<'EOF' || fail "could not make the fake Open-Unmix state dicts"
import torch, torch.nn as nn
torch.manual_seed(1)
H, C, BINS, MAXB = 8, 2, 9, 5
class Fake(nn.Module):  # the attribute names and shapes of openunmix.model.OpenUnmix
    def __init__(self, hidden=H):
        super().__init__()
        self.fc1 = nn.Linear(MAXB * C, hidden, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.lstm = nn.LSTM(hidden, hidden // 2, num_layers=3, bidirectional=True)
        self.fc2 = nn.Linear(2 * hidden, hidden, bias=False)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, BINS * C, bias=False)
        self.bn3 = nn.BatchNorm1d(BINS * C)
        self.input_mean = nn.Parameter(torch.randn(MAXB))
        self.input_scale = nn.Parameter(torch.rand(MAXB) + 0.5)
        self.output_scale = nn.Parameter(torch.rand(BINS) + 0.5)
        self.output_mean = nn.Parameter(torch.randn(BINS))
for t in ["drums", "vocals", "other", "bass"]:
    m = Fake()
    for bn in (m.bn1, m.bn2, m.bn3):
        bn.running_mean.uniform_(-1, 1); bn.running_var.uniform_(0.5, 2)
    sd = m.state_dict()
    if t == "vocals":  # what older official checkpoints carry besides the weights
        sd["sample_rate"] = torch.tensor(44100.0)
        sd["stft.window"] = torch.hann_window(16)
        sd["transform.0.window"] = torch.hann_window(16)
    torch.save(sd, "%s-0123abcd.pth" % t)
import os
os.makedirs("bad", exist_ok=True)
bad = Fake().state_dict()
del bad["fc2.weight"]
torch.save(bad, "bad/vocals.pth")
torch.save(Fake(hidden=12).state_dict(), "bad/bass-ffffffff.pth")
extra = Fake().state_dict(); extra["decoder.weight"] = torch.zeros(2); torch.save(extra, "bad/other.pth")
torch.save([1, 2, 3], "bad/drums.pth")
EOF

"$TPY" "$SRC/tools/convert_umx.py" --out umx.safetensors --name umx-tiny \
  drums-0123abcd.pth vocals-0123abcd.pth other-0123abcd.pth bass-0123abcd.pth >conv.log 2>&1
[ $? -eq 0 ] && pass || { fail "convert_umx.py failed"; cat conv.log >&2; }
run_sl models info --json --tensors umx.safetensors
expect_status 0 "models info reads the converted Open-Unmix file"
cp "$OUT" umx.json
run_sl models info umx.safetensors
expect_grep "arch:        umx" "$OUT" "info shows arch umx"
py_check "Open-Unmix conversion read back by the C reader" <<EOF
import json, hashlib, sys
sys.path.insert(0, "$SRC/tools")
j = json.load(open("$T/umx.json"))
m = j["metadata"]
want = {"stemline.arch": "umx", "targets": "vocals,drums,bass,other", "hidden_size": "8", "nb_bins": "9",
        "max_bin": "5", "nb_channels": "2", "nb_layers": "3", "unidirectional": "0", "sample_rate": "44100",
        "n_fft": "16", "hop": "4", "stemline.name": "umx-tiny", "stemline.converter": "tools/convert_umx.py"}
for k, v in want.items():
    assert m.get(k) == v, (k, m.get(k), v)
for t in ["vocals", "drums", "bass", "other"]:
    f = "%s-0123abcd.pth" % t
    sha = hashlib.sha256(open("$T/" + f, "rb").read()).hexdigest()
    assert "%s sha256=%s" % (f, sha) in m["source"], m["source"]
per_target = 3 + 4 + 12 + 3 * 2 * 4
assert j["tensors"] == 4 * per_target, j["tensors"]
assert list(j["dtypes"]) == ["F32"], j["dtypes"]
names = {t["name"]: t for t in j["tensor_list"]}
assert not [n for n in names if "num_batches_tracked" in n or "window" in n or n.endswith("sample_rate")], names
assert names["vocals.fc1.weight"]["shape"] == [8, 10]
assert names["vocals.fc3.weight"]["shape"] == [18, 8]
assert names["bass.lstm.weight_ih_l0_reverse"]["shape"] == [16, 8]
assert names["bass.lstm.weight_ih_l2"]["shape"] == [16, 8]
assert names["other.lstm.weight_hh_l1_reverse"]["shape"] == [16, 4]
assert names["drums.bn3.running_var"]["shape"] == [18]
assert names["vocals.output_mean"]["shape"] == [9]
# targets are written in the canonical order, each target's tensors together
order = [t["name"].split(".")[0] for t in j["tensor_list"]]
assert order == sorted(order, key=["vocals", "drums", "bass", "other"].index), order
import torch
params = 0
for t in ["vocals", "drums", "bass", "other"]:
    sd = torch.load("$T/%s-0123abcd.pth" % t)
    for k, v in sd.items():
        if "num_batches_tracked" in k or "window" in k or k == "sample_rate":
            continue
        e = names["%s.%s" % (t, k)]
        assert e["shape"] == list(v.shape), (k, e["shape"], v.shape)
        s = float(v.double().sum())
        assert abs(e["sum"] - s) <= 1e-5 * max(1.0, float(v.double().abs().sum())), (t, k, e["sum"], s)
        params += v.numel()
assert j["parameters"] == params, (j["parameters"], params)
EOF

# bad inputs: a message, exit 1, no output file
check_bad() { # label expected-message files...
  local label=$1 msg=$2; shift 2
  rm -f bad.safetensors
  "$TPY" "$SRC/tools/convert_umx.py" --out bad.safetensors "$@" >conv.log 2>&1
  local rc=$?
  [ $rc -eq 1 ] && pass || fail "$label: exit $rc"
  expect_grep "$msg" conv.log "$label"
  [ ! -e bad.safetensors ] && pass || fail "$label: output written anyway"
}
check_bad "missing key" "no tensor fc2.weight" bad/vocals.pth drums-0123abcd.pth
check_bad "different hidden sizes" "describe different architectures" vocals-0123abcd.pth bad/bass-ffffffff.pth
check_bad "unknown key" "unexpected keys decoder.weight" bad/other.pth
check_bad "not a state dict" "not a state dict" bad/drums.pth
check_bad "target twice" "target vocals given twice" vocals-0123abcd.pth bad/vocals.pth
check_bad "missing file" "cannot load with torch" nosuch-00000000.pth
check_bad "wrong n_fft" "n_fft 4096 gives 2049 bins but the model has nb_bins 9" --n-fft 4096 vocals-0123abcd.pth

# ---- Cnn14: channels 2,4,4,8,8,16, 8 mel bins, 5 classes ----
"$TPY" - <<'EOF' || fail "could not make the fake Cnn14 checkpoint"
import torch
from collections import OrderedDict
torch.manual_seed(2)
sd = OrderedDict()
sd["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024)
sd["spectrogram_extractor.stft.conv_imag.weight"] = torch.randn(513, 1, 1024)
sd["logmel_extractor.melW"] = torch.rand(513, 8)
def bn(prefix, n):
    sd[prefix + ".weight"] = torch.rand(n) + 0.5; sd[prefix + ".bias"] = torch.randn(n)
    sd[prefix + ".running_mean"] = torch.randn(n); sd[prefix + ".running_var"] = torch.rand(n) + 0.5
    sd[prefix + ".num_batches_tracked"] = torch.tensor(7)
bn("bn0", 8)
cin = 1
for b, c in enumerate([2, 4, 4, 8, 8, 16], 1):
    sd["conv_block%d.conv1.weight" % b] = torch.randn(c, cin, 3, 3)
    sd["conv_block%d.conv2.weight" % b] = torch.randn(c, c, 3, 3)
    bn("conv_block%d.bn1" % b, c); bn("conv_block%d.bn2" % b, c)
    cin = c
sd["fc1.weight"] = torch.randn(16, 16); sd["fc1.bias"] = torch.randn(16)
sd["fc_audioset.weight"] = torch.randn(5, 16); sd["fc_audioset.bias"] = torch.randn(5)
torch.save({"model": sd, "iteration": 660000}, "Cnn14_mAP=0.431.pth")
sd2 = OrderedDict(sd); del sd2["conv_block3.conv2.weight"]
torch.save({"model": sd2}, "cnn14_missing.pth")
EOF
"$TPY" "$SRC/tools/convert_cnn14.py" --out cnn14.safetensors "Cnn14_mAP=0.431.pth" >conv.log 2>&1
[ $? -eq 0 ] && pass || { fail "convert_cnn14.py failed"; cat conv.log >&2; }
run_sl models info --json --tensors cnn14.safetensors
expect_status 0 "models info reads the converted Cnn14 file"
cp "$OUT" cnn14.json
py_check "Cnn14 conversion read back by the C reader" <<EOF
import json, hashlib, torch
j = json.load(open("$T/cnn14.json"))
m = j["metadata"]
want = {"stemline.arch": "cnn14", "sample_rate": "32000", "window_size": "1024", "hop": "320", "mel_bins": "8",
        "fmin": "50", "fmax": "14000", "classes_num": "5", "embedding_dim": "16", "channels": "2,4,4,8,8,16"}
for k, v in want.items():
    assert m.get(k) == v, (k, m.get(k), v)
sha = hashlib.sha256(open("$T/Cnn14_mAP=0.431.pth", "rb").read()).hexdigest()
assert m["source"] == "Cnn14_mAP=0.431.pth sha256=" + sha, m["source"]
names = {t["name"]: t for t in j["tensor_list"]}
sd = torch.load("$T/Cnn14_mAP=0.431.pth")["model"]
kept = {k: v for k, v in sd.items() if "num_batches_tracked" not in k and "spectrogram_extractor" not in k}
assert set(names) == set(kept), set(names) ^ set(kept)
for k, v in kept.items():
    assert names[k]["shape"] == list(v.shape), k
    s = float(v.double().sum())
    assert abs(names[k]["sum"] - s) <= 1e-5 * max(1.0, float(v.double().abs().sum())), (k, names[k]["sum"], s)
assert names["logmel_extractor.melW"]["shape"] == [513, 8]
EOF
rm -f bad.safetensors
"$TPY" "$SRC/tools/convert_cnn14.py" --out bad.safetensors cnn14_missing.pth >conv.log 2>&1
[ $? -eq 1 ] && pass || fail "convert_cnn14 on a checkpoint missing a tensor"
expect_grep "no tensor conv_block3.conv2.weight" conv.log "missing Cnn14 tensor named"
[ ! -e bad.safetensors ] && pass || fail "convert_cnn14 wrote a file for a bad input"

# ---- fetch --from with files that pass no checksum is covered in test_models.sh;
# here the converter that fetch would run is reached through the same module ----
"$TPY" - "$SRC/tools" <<'EOF' && pass || fail "fetch_models imports its converters"
import sys
sys.path.insert(0, sys.argv[1])
import fetch_models, convert_umx, convert_cnn14
import os
rf = {"bs_roformer_musdb", "bs_roformer_viperx", "mel_band_roformer_viperx", "mel_band_roformer_kj"}
hd = {"htdemucs", "htdemucs_6s", "htdemucs_ft"}
assert set(fetch_models.MODELS) == {"umxhq", "cnn14", "clap-music"} | rf | hd, sorted(fetch_models.MODELS)
for name, m in fetch_models.MODELS.items():
    assert os.path.isfile(os.path.join(sys.argv[1], m["converter"])), (name, m["converter"])
    if name in rf:  # no published digests: a config and a checkpoint, licence and data stated
        assert m["converter"] == "convert_roformer.py" and m["licence"] and m["data"], name
        assert [f[0].endswith(".yaml") for f in m["files"]] == [True, False], name
        assert all(f[1] is None and f[2] is None for f in m["files"]), name
        continue
    if name in hd:  # torch.hub names: NAME-<sha256 prefix>.th, checked against the prefix
        assert m["converter"] == "convert_htdemucs.py", name
        assert all(f[0].endswith(".th") and fetch_models.expected_prefix(f[0]) for f in m["files"]), name
        assert ("bag" in m) == (len(m["files"]) > 1), name
        continue
    for f, md5, sha in m["files"]:
        assert md5 is None or len(md5) == 32, (f, md5)
        assert sha is None or len(sha) == 64, (f, sha)
        p = fetch_models.expected_prefix(f)
        assert sha is None or p is None or sha.startswith(p), (f, sha)
    assert m["files"][0][1] or m["files"][0][2], ("the weights file carries no digest", name)
EOF

finish
