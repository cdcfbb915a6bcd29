#!/usr/bin/env python3
"""Golden vectors for the Cnn14 embedding model (models/cnn14.c), from the
official PANNs code (the `panns_inference` package: panns_inference/models.py,
with torchlibrosa's Spectrogram / LogmelFilterBank front end) at reduced width.

    /usr/bin/python3 tools/gen_golden_cnn14.py          # writes tests/golden/cnn14/
    /usr/bin/python3 tools/gen_golden_cnn14.py --full DIR   # full-size check files (not committed)

Needs torch (Debian: apt-get install python3-torch) and, installed without
pulling a PyPI torch:
    /usr/bin/python3 -m pip install --break-system-packages --no-deps panns_inference torchlibrosa
Versions used for the committed files: panns_inference 0.1.1, torchlibrosa 0.1.0,
torch 1.13 (Debian), librosa 0.10.2.post1.

Import details (nothing of the model code is changed):
* panns_inference/__init__.py imports its config module, which downloads the
  AudioSet label CSV at import time; so an empty package object pointing at the
  installed folder is registered and only `panns_inference.models` (and its
  pytorch_utils) is imported from the installed files.
* models.py imports matplotlib.pyplot (unused by Cnn14): an empty stand-in module
  is registered when matplotlib is not installed.
* torchlibrosa needs librosa for the window (librosa.filters.get_window,
  librosa.util.pad_center) and the mel filterbank (librosa.filters.mel, called as
  mel(sr=, n_fft=, n_mels=, fmin=, fmax=): htk=False, norm='slaney' by default).
  When librosa is not importable by this interpreter (Debian's python3 with its
  torch has none), those three functions are served by the REAL librosa of
  another interpreter (env LIBROSA_PYTHON, default bench/.venv-torch/bin/python)
  through a subprocess: same values, nothing re-implemented here.

Reduced width: panns' Cnn14.__init__ hard-codes the channel counts
(ConvBlock 1->64->128->256->512->1024->2048, fc1 2048->2048). The script builds
the official Cnn14(sample_rate=32000, window_size=1024, hop_size=320,
mel_bins=64, fmin=50, fmax=14000, classes_num=527) and then replaces ONLY the
width-carrying submodules with the package's own classes at smaller sizes:
conv_block1..6 = models.ConvBlock(in, out) with CHANNELS below, fc1 =
nn.Linear(CHANNELS[-1], EMB), fc_audioset = nn.Linear(EMB, 527). The front end,
bn0 and Cnn14.forward are the official ones, untouched.

Weights: random (torch seed 0): ConvBlock's own init (xavier) for the convs,
random batch-norm affine parameters and running statistics for bn0 and every
bn1/bn2 (bn0's mean/var on the scale of dB values), random fc biases. The model
runs in eval mode in float64 (model.double(): the float32-initialised DFT
kernels, window and mel matrix converted exactly), so the reference is exact up
to float64 and the C model's float32 error is what the test measures.

Files (tests/golden/cnn14/, < 1 MB together):
  cnn14-small.safetensors  weights in tools/convert_cnn14.py's naming and metadata
  cnn14-small.slg          (tests/unit/sl_golden.h format) params n, frames;
                           arrays input [n] (float32, what both sides run on),
                           logmel [T][64] (torchlibrosa output, before bn0),
                           block1..block6 [C][H][W] (each ConvBlock's output,
                           pooling included, as the C layout NCHW without batch),
                           embedding [EMB] (fc1 + ReLU), scores [527] (sigmoid).
"""

import argparse
import importlib
import importlib.util
import io
import os
import subprocess
import sys
import types

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stemline_st  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "golden", "cnn14")
SR, WIN, HOP, MELS, FMIN, FMAX, CLASSES = 32000, 1024, 320, 64, 50, 14000, 527
CHANNELS = (4, 8, 12, 16, 20, 24)
EMB = 32
FULL_CHANNELS = (64, 128, 256, 512, 1024, 2048)
N_SAMPLES = 64123  # 2.004 s: 201 frames, odd, so every 2x2 pooling floors


# ---- librosa (real, possibly from another interpreter) ----

_DEFAULT_LIBROSA_PY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench", ".venv-torch", "bin", "python")

def _librosa_call(expr, **kw):
    py = os.environ.get("LIBROSA_PYTHON", _DEFAULT_LIBROSA_PY)
    code = ("import sys, io, numpy as np, librosa\n"
            "kw = %r\n"
            "a = np.asarray(%s)\n"
            "b = io.BytesIO(); np.save(b, a); sys.stdout.buffer.write(b.getvalue())\n" % (kw, expr))
    out = subprocess.run([py, "-c", code], check=True, stdout=subprocess.PIPE).stdout
    return np.load(io.BytesIO(out))


def install_librosa_bridge():
    try:
        import librosa  # noqa: F401
        return "librosa %s (in process)" % librosa.__version__
    except ImportError:
        pass
    lib = types.ModuleType("librosa")
    lib.filters = types.ModuleType("librosa.filters")
    lib.util = types.ModuleType("librosa.util")
    lib.filters.get_window = lambda window, Nx, fftbins=True: _librosa_call(
        "librosa.filters.get_window(kw['w'], kw['n'], fftbins=kw['f'])", w=window, n=int(Nx), f=bool(fftbins))
    lib.util.pad_center = lambda data, size, **k: _librosa_call(
        "librosa.util.pad_center(np.asarray(kw['d']), size=kw['s'])", d=np.asarray(data).tolist(), s=int(size))
    lib.filters.mel = lambda sr, n_fft, n_mels=128, fmin=0.0, fmax=None, **k: _librosa_call(
        "librosa.filters.mel(sr=kw['sr'], n_fft=kw['n'], n_mels=kw['m'], fmin=kw['lo'], fmax=kw['hi'])",
        sr=sr, n=int(n_fft), m=int(n_mels), lo=fmin, hi=fmax)
    sys.modules["librosa"] = lib
    sys.modules["librosa.filters"] = lib.filters
    sys.modules["librosa.util"] = lib.util
    ver = subprocess.run([os.environ.get("LIBROSA_PYTHON", _DEFAULT_LIBROSA_PY), "-c",
                          "import librosa; print(librosa.__version__)"], check=True,
                         stdout=subprocess.PIPE).stdout.decode().strip()
    return "librosa %s (via LIBROSA_PYTHON subprocess)" % ver


def import_panns_models():
    spec = importlib.util.find_spec("panns_inference")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("panns_inference is not installed (see the docstring)")
    pkg = types.ModuleType("panns_inference")
    pkg.__path__ = list(spec.submodule_search_locations)  # no __init__.py: no label download
    sys.modules["panns_inference"] = pkg
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:
        mpl = types.ModuleType("matplotlib")
        mpl.pyplot = types.ModuleType("matplotlib.pyplot")
        sys.modules["matplotlib"] = mpl
        sys.modules["matplotlib.pyplot"] = mpl.pyplot
    return importlib.import_module("panns_inference.models")


# ---- model ----

def build(models, channels, emb, seed=0):
    torch.manual_seed(seed)
    m = models.Cnn14(sample_rate=SR, window_size=WIN, hop_size=HOP, mel_bins=MELS, fmin=FMIN, fmax=FMAX,
                     classes_num=CLASSES)
    if tuple(channels) != FULL_CHANNELS or emb != 2048:
        cin = 1
        for i, c in enumerate(channels):
            setattr(m, "conv_block%d" % (i + 1), models.ConvBlock(in_channels=cin, out_channels=c))
            cin = c
        m.fc1 = nn.Linear(cin, emb, bias=True)
        m.fc_audioset = nn.Linear(emb, CLASSES, bias=True)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        n = m.bn0.num_features
        m.bn0.weight.copy_(0.5 + torch.rand(n, generator=g))
        m.bn0.bias.copy_(0.3 * torch.randn(n, generator=g))
        m.bn0.running_mean.copy_(-30.0 + 10.0 * torch.randn(n, generator=g))
        m.bn0.running_var.copy_(100.0 + 300.0 * torch.rand(n, generator=g))
        for i in range(6):
            blk = getattr(m, "conv_block%d" % (i + 1))
            for bn in (blk.bn1, blk.bn2):
                c = bn.num_features
                bn.weight.copy_(0.5 + torch.rand(c, generator=g))
                bn.bias.copy_(0.2 * torch.randn(c, generator=g))
                bn.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                bn.running_var.copy_(0.5 + torch.rand(c, generator=g))
        m.fc1.bias.copy_(0.1 * torch.randn(m.fc1.bias.shape, generator=g))
        m.fc_audioset.bias.copy_(0.5 * torch.randn(m.fc_audioset.bias.shape, generator=g))
    m.eval()
    return m


def save_weights(path, m, channels, emb):
    tensors = []
    for k, v in m.state_dict().items():
        if k.endswith("num_batches_tracked") or k.startswith("spectrogram_extractor.stft.conv_"):
            continue
        tensors.append((k, v.detach().cpu().numpy().astype(np.float32)))
    meta = {
        "stemline.arch": "cnn14", "sample_rate": str(SR), "window_size": str(WIN), "hop": str(HOP),
        "mel_bins": str(MELS), "fmin": str(FMIN), "fmax": str(FMAX), "classes_num": str(CLASSES),
        "embedding_dim": str(emb), "channels": ",".join(str(c) for c in channels),
        "source": "random weights, tools/gen_golden_cnn14.py",
    }
    stemline_st.save(path, tensors, meta)


def make_input(n, seed=2):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3150 * t * (1 + 0.1 * t))
         + 0.1 * rng.standard_normal(n))
    x[n // 3:n // 3 + 3] = 0.9  # a click
    return x.astype(np.float32)


def run(m, x):
    """Returns dict of float64 numpy arrays: logmel [T][M], block1..6 [C][H][W], embedding, scores."""
    rec = {}
    hooks = [m.logmel_extractor.register_forward_hook(lambda mod, i, o: rec.__setitem__("logmel", o))]
    for b in range(6):
        hooks.append(getattr(m, "conv_block%d" % (b + 1)).register_forward_hook(
            lambda mod, i, o, b=b: rec.__setitem__("block%d" % (b + 1), o)))
    m.double()
    with torch.no_grad():
        out = m(torch.from_numpy(x.astype(np.float64))[None, :])
    for h in hooks:
        h.remove()
    res = {k: v.detach().numpy()[0] for k, v in rec.items()}
    res["logmel"] = res["logmel"][0]  # (1, T, M) -> (T, M)
    res["embedding"] = out["embedding"].detach().numpy()[0]
    res["scores"] = out["clipwise_output"].detach().numpy()[0]
    return res


def write_slg(path, params, arrays, note):
    stemline_st.write_slg(path, "made by tools/gen_golden_cnn14.py with panns_inference, torch %s, numpy %s, %s"
                          % (torch.__version__, np.__version__, note), params, arrays)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", metavar="DIR", help="full-size Cnn14 (random weights, 10 s) into DIR instead")
    ap.add_argument("--seconds", type=float, default=10.0, help="input length for --full")
    a = ap.parse_args()
    note = install_librosa_bridge()
    models = import_panns_models()
    if a.full:
        channels, emb, n, out, stem = FULL_CHANNELS, 2048, int(a.seconds * SR), a.full, "cnn14-full"
    else:
        channels, emb, n, out, stem = CHANNELS, EMB, N_SAMPLES, OUT, "cnn14-small"
    os.makedirs(out, exist_ok=True)
    m = build(models, channels, emb)
    save_weights(os.path.join(out, stem + ".safetensors"), m, channels, emb)
    x = make_input(n)
    r = run(m, x)
    arrays = [("input", x), ("logmel", r["logmel"])]
    if not a.full:
        arrays += [("block%d" % b, r["block%d" % b]) for b in range(1, 7)]
    arrays += [("embedding", r["embedding"]), ("scores", r["scores"])]
    write_slg(os.path.join(out, stem + ".slg"), {"n": n, "frames": r["logmel"].shape[0]}, arrays, note)
    print("wrote %s/%s.{safetensors,slg}: frames %d, embedding %d, scores %d (max %.4f)" % (
        out, stem, r["logmel"].shape[0], r["embedding"].shape[0], r["scores"].shape[0], r["scores"].max()))


if __name__ == "__main__":
    main()
