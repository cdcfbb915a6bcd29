#!/usr/bin/env python3
"""Converts the official PANNs Cnn14 checkpoint into a stemline weights file.

    python3 tools/convert_cnn14.py --out cnn14.safetensors Cnn14_mAP=0.431.pth

The input is the checkpoint published on Zenodo (record 3987831): a dict whose
"model" entry is the state dict of panns' Cnn14 (a bare state dict is accepted
too). Tensors keep their state-dict names (bn0.weight, conv_block1.conv1.weight,
conv_block1.bn1.running_var, ..., fc1.weight, fc_audioset.bias) as float32, plus
logmel_extractor.melW (the checkpoint's own [n_fft/2+1, mel_bins] Slaney
filterbank, kept to check ours against). Dropped: num_batches_tracked and the
STFT's DFT kernels (spectrogram_extractor.stft.conv_real/conv_imag.weight: a
windowed DFT basis, recomputed exactly by the STFT op). __metadata__ holds the
hyper-parameters as strings: stemline.arch=cnn14, sample_rate, window_size,
hop, mel_bins, fmin, fmax, classes_num, embedding_dim, channels (of the six
conv blocks) and source (file name and sha256).

With --fold-bn, each conv's batch norm (eval mode, eps 1e-5) is folded into its
weights and a new bias conv_blockB.convJ.bias, in float64 exactly as the loader
folds (models/cnn14.c: s = gamma / sqrt(var + eps), w' = w s, b' = beta - mean s,
each rounded once to float32), the conv_blockB.bnJ tensors dropped and
stemline.bn_folded=1 set: stemline then maps the conv and fc weights from the
file without converting or copying them at load (the same results, bit for bit,
with a faster start and, with several CPU workers, one copy of the weights in
memory). An input that is already a stemline .safetensors file (from this
converter, or tools/gen_golden_cnn14.py) is folded without torch:

    python3 tools/convert_cnn14.py --fold-bn --out cnn14-folded.safetensors cnn14.safetensors

Needs torch (Debian: apt-get install python3-torch) and numpy; not the
`safetensors` package. Output is written atomically (temp file + rename).
"""

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stemline_st  # noqa: E402

DROP = re.compile(r"(^|\.)num_batches_tracked$|^spectrogram_extractor\.stft\.conv_(real|imag)\.weight$")
N_BLOCKS = 6


class ConvertError(Exception):
    pass


BN_EPS = 1e-5


def fold_bn(tensors, meta):
    """The tensors (list of (name, float32 array)) with every conv's batch norm folded in
    (conv_blockB.convJ.weight scaled, conv_blockB.convJ.bias added, the bnJ tensors
    dropped), and meta with stemline.bn_folded=1. bn0 stays (it cannot go into conv 1,
    which zero-pads after it)."""
    import numpy as np

    have = dict(tensors)
    if meta.get("stemline.bn_folded") == "1":
        raise ConvertError("the batch norms are folded already (stemline.bn_folded=1)")
    out = []
    for name, arr in tensors:
        m = re.match(r"^conv_block(\d+)\.bn(\d)\.", name)
        if m:
            continue
        m = re.match(r"^conv_block(\d+)\.conv(\d)\.weight$", name)
        if not m:
            out.append((name, arr))
            continue
        bn = "conv_block%s.bn%s." % m.groups()
        try:
            g, beta, mean, var = (have[bn + p].astype(np.float64) for p in ("weight", "bias", "running_mean", "running_var"))
        except KeyError as e:
            raise ConvertError("no tensor %s to fold into %s" % (e.args[0], name))
        s = g / np.sqrt(var + BN_EPS)
        out.append((name, (arr.astype(np.float64) * s[:, None, None, None]).astype(np.float32)))
        out.append((name[:-len("weight")] + "bias", (beta - mean * s).astype(np.float32)))
    meta = dict(meta)
    meta["stemline.bn_folded"] = "1"
    return out, meta


def fold_file(path, out):
    """--fold-bn on a stemline Cnn14 .safetensors file (numpy only)."""
    try:
        tensors, meta = stemline_st.load(path)
    except (OSError, ValueError) as e:
        raise ConvertError("%s: %s" % (path, e))
    if meta.get("stemline.arch") != "cnn14":
        raise ConvertError("%s: metadata stemline.arch is %r, expected 'cnn14'" % (path, meta.get("stemline.arch")))
    tensors, meta = fold_bn(tensors, meta)
    stemline_st.save(out, tensors, meta)
    return meta, len(tensors)


def convert(path, out, sample_rate=32000, window_size=1024, hop=320, fmin=50, fmax=14000, name=None, digest=None,
            fold=False):
    import torch

    try:
        obj = stemline_st.torch_load(path)
    except Exception as e:
        raise ConvertError("%s: cannot load with torch: %s" % (path, e))
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise ConvertError("%s: not a Cnn14 checkpoint (no 'model' state dict)" % path)

    kept = []
    for k, v in sd.items():
        if DROP.search(k):
            continue
        if not isinstance(v, torch.Tensor) or not v.is_floating_point():
            raise ConvertError("%s: %s is not a floating-point tensor" % (path, k))
        kept.append((k, stemline_st.to_numpy_f32(v)))
    have = dict(kept)

    def need(key, ndim):
        if key not in have:
            raise ConvertError("%s: no tensor %s (not a Cnn14 checkpoint?)" % (path, key))
        if have[key].ndim != ndim:
            raise ConvertError("%s: %s has shape %s" % (path, key, list(have[key].shape)))
        return have[key]

    mel_bins = need("bn0.weight", 1).shape[0]
    expect = {}
    for p in ("weight", "bias", "running_mean", "running_var"):
        expect["bn0." + p] = (mel_bins,)
    channels = []
    cin = 1
    for b in range(1, N_BLOCKS + 1):
        w1 = need("conv_block%d.conv1.weight" % b, 4)
        cout = w1.shape[0]
        channels.append(cout)
        expect["conv_block%d.conv1.weight" % b] = (cout, cin, 3, 3)
        expect["conv_block%d.conv2.weight" % b] = (cout, cout, 3, 3)
        for bn in ("bn1", "bn2"):
            for p in ("weight", "bias", "running_mean", "running_var"):
                expect["conv_block%d.%s.%s" % (b, bn, p)] = (cout,)
        cin = cout
    emb = need("fc1.weight", 2).shape[0]
    classes = need("fc_audioset.weight", 2).shape[0]
    expect["fc1.weight"] = (emb, cin)
    expect["fc1.bias"] = (emb,)
    expect["fc_audioset.weight"] = (classes, emb)
    expect["fc_audioset.bias"] = (classes,)
    optional = {"logmel_extractor.melW": (window_size // 2 + 1, mel_bins)}
    for k, shape in list(expect.items()) + list(optional.items()):
        if k in optional and k not in have:
            continue
        if k not in have:
            raise ConvertError("%s: no tensor %s (not a Cnn14 checkpoint?)" % (path, k))
        if tuple(have[k].shape) != shape:
            raise ConvertError("%s: %s has shape %s, expected %s" % (path, k, list(have[k].shape), list(shape)))
    extra = sorted(set(have) - set(expect) - set(optional))
    if extra:
        raise ConvertError("%s: unexpected keys %s (not a plain Cnn14?)" % (path, ", ".join(extra[:8])))

    meta = {
        "stemline.arch": "cnn14",
        "sample_rate": str(sample_rate),
        "window_size": str(window_size),
        "hop": str(hop),
        "mel_bins": str(mel_bins),
        "fmin": str(fmin),
        "fmax": str(fmax),
        "classes_num": str(classes),
        "embedding_dim": str(emb),
        "channels": ",".join(str(c) for c in channels),
        "source": "%s sha256=%s" % (os.path.basename(path), digest or stemline_st.sha256_file(path)),
        "stemline.converter": "tools/convert_cnn14.py",
    }
    if name:
        meta["stemline.name"] = name
    if fold:
        kept, meta = fold_bn(kept, meta)
    stemline_st.save(out, kept, meta)
    return meta, len(kept)


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert the PANNs Cnn14 checkpoint into a stemline .safetensors file.",
        epilog="example: %(prog)s --out cnn14.safetensors Cnn14_mAP=0.431.pth",
    )
    ap.add_argument("input", metavar="Cnn14_mAP=0.431.pth")
    ap.add_argument("--out", required=True, help="output .safetensors file")
    ap.add_argument("--sample-rate", type=int, default=32000)
    ap.add_argument("--window-size", type=int, default=1024)
    ap.add_argument("--hop", type=int, default=320)
    ap.add_argument("--fmin", type=int, default=50)
    ap.add_argument("--fmax", type=int, default=14000)
    ap.add_argument("--name", default=None, help="model name stored as stemline.name (e.g. cnn14)")
    ap.add_argument("--fold-bn", action="store_true",
                    help="fold the batch norms into the conv weights (faster loading; input may be a stemline "
                         ".safetensors file)")
    a = ap.parse_args(argv)
    try:
        if a.input.endswith(".safetensors"):
            if not a.fold_bn:
                raise ConvertError("%s: a .safetensors input is only taken with --fold-bn" % a.input)
            meta, n = fold_file(a.input, a.out)
        else:
            meta, n = convert(a.input, a.out, a.sample_rate, a.window_size, a.hop, a.fmin, a.fmax, a.name,
                              fold=a.fold_bn)
    except ConvertError as e:
        print("convert_cnn14: error: %s" % e, file=sys.stderr)
        return 1
    except ImportError as e:
        print("convert_cnn14: error: %s (install torch: apt-get install python3-torch)" % e, file=sys.stderr)
        return 1
    print("wrote %s: %d tensors, %s mel bins, channels %s, %s classes" % (
        a.out, n, meta["mel_bins"], meta["channels"], meta["classes_num"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
