#!/usr/bin/env python3
"""Converts official Open-Unmix per-target state dicts into one stemline weights file.

    python3 tools/convert_umx.py --out umxhq.safetensors \\
        vocals-b62c91ce.pth drums-9619578f.pth bass-8d85a5bd.pth other-b52fbbf7.pth

Each input is the state dict of one target (torch.save of OpenUnmix.state_dict(),
as published on Zenodo for umxhq/umx, or a training checkpoint holding one under
"state_dict"); the target is the file name up to the first '-' or '.'
("vocals-b62c91ce.pth" -> vocals). Tensors are written as float32 under
"<target>.<state dict key>" (vocals.fc1.weight, vocals.lstm.weight_ih_l0_reverse,
vocals.bn1.running_mean ...). Dropped: num_batches_tracked, the STFT window
buffers (stft.window, transform.0.window) and the sample_rate buffer of older
checkpoints. Architecture hyper-parameters go to __metadata__ as strings
(stemline.arch=umx, targets, hidden_size, nb_bins, max_bin, nb_channels,
nb_layers, unidirectional, sample_rate, n_fft, hop, source = input names with
their sha256). Every key an Open-Unmix model has must be present with the shape
the architecture implies, and every target must agree, or nothing is written.

Needs torch (Debian: apt-get install python3-torch) and numpy; not the
`safetensors` package. Output is written atomically (temp file + rename).
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stemline_st  # noqa: E402

CANONICAL_ORDER = ["vocals", "drums", "bass", "other"]
DROP = re.compile(r"(^|\.)num_batches_tracked$|(^|\.)window$|^sample_rate$")


class ConvertError(Exception):
    pass


def target_of(path):
    base = os.path.basename(path)
    return re.split(r"[-.]", base, maxsplit=1)[0]


def load_state_dict(path):
    try:
        obj = stemline_st.torch_load(path)
    except Exception as e:  # pickle errors, zip errors, missing file ...
        raise ConvertError("%s: cannot load with torch: %s" % (path, e))
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConvertError("%s: not a state dict (a %s)" % (path, type(obj).__name__))
    return obj


def check_target(name, path, sd):
    """Returns (kept [(key, array)], hyper-parameters dict); raises ConvertError."""
    import torch

    kept = []
    for k, v in sd.items():
        if DROP.search(k):
            continue
        if not isinstance(v, torch.Tensor):
            raise ConvertError("%s: key %s is not a tensor" % (path, k))
        if not v.is_floating_point():
            raise ConvertError("%s: tensor %s has dtype %s, expected floating point" % (path, k, v.dtype))
        kept.append((k, stemline_st.to_numpy_f32(v)))
    have = dict(kept)

    def need(key):
        if key not in have:
            raise ConvertError("%s: no tensor %s (not an Open-Unmix state dict?)" % (path, key))
        return have[key]

    fc1 = need("fc1.weight")
    if fc1.ndim != 2:
        raise ConvertError("%s: fc1.weight has shape %s" % (path, list(fc1.shape)))
    hidden = fc1.shape[0]
    max_bin = need("input_mean").shape[0]
    if max_bin == 0 or fc1.shape[1] % max_bin:
        raise ConvertError("%s: fc1.weight %s does not match input_mean [%d]" % (path, list(fc1.shape), max_bin))
    nb_channels = fc1.shape[1] // max_bin
    fc3 = need("fc3.weight")
    if fc3.ndim != 2 or fc3.shape[0] % nb_channels:
        raise ConvertError("%s: fc3.weight has shape %s" % (path, list(fc3.shape)))
    nb_bins = fc3.shape[0] // nb_channels
    layers = 0
    while "lstm.weight_ih_l%d" % layers in have:
        layers += 1
    if layers == 0:
        raise ConvertError("%s: no LSTM weights (lstm.weight_ih_l0)" % path)
    bidirectional = "lstm.weight_ih_l0_reverse" in have
    lstm_h = hidden // 2 if bidirectional else hidden
    dirs = ["", "_reverse"] if bidirectional else [""]

    expect = {
        "fc1.weight": (hidden, max_bin * nb_channels),
        "fc2.weight": (hidden, 2 * hidden),
        "fc3.weight": (nb_bins * nb_channels, hidden),
        "input_mean": (max_bin,),
        "input_scale": (max_bin,),
        "output_mean": (nb_bins,),
        "output_scale": (nb_bins,),
    }
    for bn, n in (("bn1", hidden), ("bn2", hidden), ("bn3", nb_bins * nb_channels)):
        for p in ("weight", "bias", "running_mean", "running_var"):
            expect["%s.%s" % (bn, p)] = (n,)
    for layer in range(layers):
        for d in dirs:
            inp = hidden if layer == 0 else lstm_h * len(dirs)
            expect["lstm.weight_ih_l%d%s" % (layer, d)] = (4 * lstm_h, inp)
            expect["lstm.weight_hh_l%d%s" % (layer, d)] = (4 * lstm_h, lstm_h)
            expect["lstm.bias_ih_l%d%s" % (layer, d)] = (4 * lstm_h,)
            expect["lstm.bias_hh_l%d%s" % (layer, d)] = (4 * lstm_h,)
    for k, shape in expect.items():
        if tuple(need(k).shape) != shape:
            raise ConvertError("%s: %s has shape %s, expected %s" % (path, k, list(have[k].shape), list(shape)))
    extra = sorted(set(have) - set(expect))
    if extra:
        raise ConvertError("%s: unexpected keys %s (not an Open-Unmix state dict?)" % (path, ", ".join(extra[:8])))
    hp = {
        "hidden_size": hidden,
        "nb_bins": nb_bins,
        "max_bin": max_bin,
        "nb_channels": nb_channels,
        "nb_layers": layers,
        "unidirectional": 0 if bidirectional else 1,
    }
    return kept, hp


def convert(paths, out, sample_rate=44100, n_fft=None, hop=None, name=None, sources=None):
    """Writes out; returns the metadata written. sources: optional {path: sha256}."""
    if not paths:
        raise ConvertError("no input files")
    by_target = {}
    for p in paths:
        t = target_of(p)
        if not re.fullmatch(r"[A-Za-z0-9_]+", t):
            raise ConvertError("%s: cannot tell the target from the file name (want TARGET.pth or TARGET-HASH.pth)" % p)
        if t in by_target:
            raise ConvertError("target %s given twice (%s and %s)" % (t, by_target[t], p))
        by_target[t] = p
    targets = [t for t in CANONICAL_ORDER if t in by_target] + [t for t in by_target if t not in CANONICAL_ORDER]

    tensors = []
    hp0 = None
    for t in targets:
        path = by_target[t]
        kept, hp = check_target(t, path, load_state_dict(path))
        if hp0 is None:
            hp0, first = hp, path
        elif hp != hp0:
            raise ConvertError("%s and %s describe different architectures: %s vs %s" % (first, path, hp0, hp))
        tensors += [("%s.%s" % (t, k), v) for k, v in kept]

    nb_bins = hp0["nb_bins"]
    if n_fft is None:
        n_fft = 2 * (nb_bins - 1)
    if n_fft // 2 + 1 != nb_bins:
        raise ConvertError("n_fft %d gives %d bins but the model has nb_bins %d" % (n_fft, n_fft // 2 + 1, nb_bins))
    if hop is None:
        hop = n_fft // 4
    if hp0["max_bin"] > nb_bins:
        raise ConvertError("max_bin %d is larger than nb_bins %d" % (hp0["max_bin"], nb_bins))

    srcs = []
    for t in targets:
        p = by_target[t]
        digest = (sources or {}).get(p) or stemline_st.sha256_file(p)
        srcs.append("%s sha256=%s" % (os.path.basename(p), digest))
    meta = {
        "stemline.arch": "umx",
        "targets": ",".join(targets),
        "hidden_size": str(hp0["hidden_size"]),
        "nb_bins": str(nb_bins),
        "max_bin": str(hp0["max_bin"]),
        "nb_channels": str(hp0["nb_channels"]),
        "nb_layers": str(hp0["nb_layers"]),
        "unidirectional": str(hp0["unidirectional"]),
        "sample_rate": str(int(sample_rate)),
        "n_fft": str(n_fft),
        "hop": str(hop),
        "source": ", ".join(srcs),
        "stemline.converter": "tools/convert_umx.py",
    }
    if name:
        meta["stemline.name"] = name
    stemline_st.save(out, tensors, meta)
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert Open-Unmix per-target .pth state dicts into one stemline .safetensors file.",
        epilog="example: %(prog)s --out umxhq.safetensors vocals-b62c91ce.pth drums-9619578f.pth "
        "bass-8d85a5bd.pth other-b52fbbf7.pth",
    )
    ap.add_argument("inputs", nargs="+", metavar="TARGET[-HASH].pth")
    ap.add_argument("--out", required=True, help="output .safetensors file")
    ap.add_argument("--sample-rate", type=int, default=44100, help="model rate in Hz (default 44100)")
    ap.add_argument("--n-fft", type=int, default=None, help="STFT size (default 2*(nb_bins-1): 4096 for umxhq)")
    ap.add_argument("--hop", type=int, default=None, help="STFT hop (default n_fft/4: 1024 for umxhq)")
    ap.add_argument("--name", default=None, help="model name stored as stemline.name (e.g. umxhq)")
    a = ap.parse_args(argv)
    try:
        meta = convert(a.inputs, a.out, a.sample_rate, a.n_fft, a.hop, a.name)
    except ConvertError as e:
        print("convert_umx: error: %s" % e, file=sys.stderr)
        return 1
    except ImportError as e:
        print("convert_umx: error: %s (install torch: apt-get install python3-torch)" % e, file=sys.stderr)
        return 1
    print("wrote %s: targets %s, hidden %s, max_bin %s, %s channels" % (
        a.out, meta["targets"], meta["hidden_size"], meta["max_bin"], meta["nb_channels"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
