#!/usr/bin/env python3
"""Golden vectors for the CLAP audio tower (models/clap_audio.c), from the
official `laion_clap` package (PyPI laion-clap 1.1.x: clap_module/htsat.py,
clap_module/model.py, training/data.py) with random weights.

    PY=bench/.venv-torch/bin/python              # torch, laion-clap, torchlibrosa, librosa
    $PY tools/gen_golden_clap.py                  # reduced HTSAT into tests/golden/clap/
    $PY tools/gen_golden_clap.py --full DIR       # HTSAT-base at full size (not committed)

What is computed is `CLAP_Module.get_audio_embedding_from_data` for a non-fusion
model, step for step with the package's own functions: the int16 round trip
(training.data.float32_to_int16 / int16_to_float32), get_audio_features(...,
max_len=clip_samples, data_truncating='rand_trunc', data_filling='repeatpad'),
CLAP.get_audio_embedding (HTSAT forward: torchlibrosa Spectrogram + LogmelFilterBank,
bn0, reshape_wav2img with its bicubic time resampling and frequency folding,
patch embedding, Swin stages, final norm, mean over the tokens = 'embedding';
then audio_projection and F.normalize). The hook module itself is not used
because it loads the RoBERTa tokenizer from the network at construction.

Import details (nothing of the model code is changed):
* laion_clap/__init__.py and clap_module/__init__.py import modules that fetch
  tokenizers from the network at import time, so empty package objects pointing
  at the installed folders are registered and only clap_module.model / .htsat are
  imported from the installed files.
* training/data.py downloads a BERT tokenizer at import time: its three audio
  functions (get_audio_features, int16_to_float32, float32_to_int16) are taken
  from the installed file's source (ast) and executed unchanged.
* clap_module/utils.py imports torchvision (FrozenBatchNorm2d, unused here); when
  torchvision / PIL are not installed, empty stand-in modules are registered
  (after transformers is imported, so that it does not see them).
* The text branch is the package's small built-in 'transformer' type (no
  download); it is not part of what is compared.

Reduced size (the committed files): HTSAT_Swin_Transformer(spec_size=64,
patch_size=4, patch_stride=(4,4), embed_dim=8, depths=[2,2,2], num_heads=[2,2,4],
window_size=4, num_classes=5) with audio_cfg sample_rate 48000, window_size 1024,
hop_size 480, mel_bins 16, fmin 50, fmax 14000, clip_samples 120000 (251 frames
resampled to 256 = spec_size * freq_ratio, freq_ratio = 64 // 16 = 4); the
projection to joint_embed_shape 24. Full size: HTSAT-base as create_htsat_model
builds it (spec 256, embed 128, depths 2,2,12,2, heads 4,8,16,32, window 8),
64 mels, clip 480000, projection 1024 -> 512.

Weights: random (torch seed 0), larger than the package's init so that every
part matters: Linear weights N(0, 1/fan_in), biases N(0, 0.1^2); LayerNorm
gamma 1 + N(0, 0.2^2), beta N(0, 0.1^2); relative position tables N(0, 1); bn0
statistics on the scale of dB values. The reference runs in float64
(model.double()) after the float32 int16 round trip, so the C model's float32
error is what the tests measure.

Files (tests/golden/clap/, < 0.7 MB together):
  clap-small.safetensors  the laion-clap state-dict names (audio_branch.*,
                          audio_projection.*; the torchlibrosa STFT kernels
                          audio_branch.spectrogram_extractor.stft.* left out: they
                          are the DFT, 4 MB) + metadata of the audio_cfg
  clap-small.slg          params n, frames, short_n; arrays input [n] float32 (before
                          the int16 round trip), logmel [T][M] (LogmelFilterBank
                          output, before bn0), image [S][S] (the patch embedding's
                          input after reshape_wav2img), patch [L][E] (after its
                          norm), block1_1 / block1_2 [L][E] (the first stage's two
                          blocks: plain and shifted windows), stage1..stage3 [L][C]
                          (each BasicLayer's output, patch merging included; tokens
                          in raster order), latent [C] (output_dict['embedding']),
                          embedding [J] (projected, L2-normalised), short_embedding
                          [J] (the first short_n samples of input: repeat padding)
"""

import argparse
import ast
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types
from contextlib import suppress

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stemline_st  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "golden", "clap")
SMALL = dict(spec_size=64, patch_size=4, embed_dim=8, depths=[2, 2, 2], num_heads=[2, 2, 4], window_size=4,
             num_classes=5, mel_bins=16, clip_samples=120000, joint=24)
FULL = dict(spec_size=256, patch_size=4, embed_dim=128, depths=[2, 2, 12, 2], num_heads=[4, 8, 16, 32],
            window_size=8, num_classes=527, mel_bins=64, clip_samples=480000, joint=512)
SR, NFFT, HOP, FMIN, FMAX = 48000, 1024, 480, 50, 14000
SHORT_N = 40000


class _StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Empty modules for torchvision / PIL (imported by laion_clap, unused by the audio tower)."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("torchvision", "PIL"):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        m = types.ModuleType(spec.name)
        m.__path__ = []

        def attr(a):
            if a.startswith("__"):
                raise AttributeError(a)
            return type(a, (), {})
        m.__getattr__ = attr
        return m

    def exec_module(self, m):
        pass


def import_clap():
    import transformers  # noqa: F401
    from transformers import BertModel, RobertaModel, BartModel  # noqa: F401
    for mod in ("torchvision", "PIL"):
        if importlib.util.find_spec(mod) is None:
            sys.meta_path.insert(0, _StandIn())
            break
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("laion_clap is not installed (pip install laion-clap)")
    root = list(spec.submodule_search_locations)[0]
    for name, path in (("laion_clap", root), ("laion_clap.clap_module", os.path.join(root, "clap_module"))):
        pkg = types.ModuleType(name)
        pkg.__path__ = [path]
        sys.modules[name] = pkg
    model = importlib.import_module("laion_clap.clap_module.model")
    htsat = importlib.import_module("laion_clap.clap_module.htsat")
    # the three audio functions of training/data.py, executed from the installed source
    src_path = os.path.join(root, "training", "data.py")
    tree = ast.parse(open(src_path).read(), src_path)
    want = {"get_audio_features", "int16_to_float32", "float32_to_int16"}
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in want]
    ns = {"np": np, "torch": torch, "F": F, "suppress": suppress}
    exec(compile(ast.Module(body=body, type_ignores=[]), src_path, "exec"), ns)
    version = "?"
    try:
        from importlib.metadata import version as v
        version = v("laion-clap")
    except Exception:
        pass
    return model, htsat, ns, version


def build(model_mod, htsat_mod, cfg, seed=0):
    torch.manual_seed(seed)
    audio_cfg = dict(audio_length=1024, clip_samples=cfg["clip_samples"], mel_bins=cfg["mel_bins"], sample_rate=SR,
                     window_size=NFFT, hop_size=HOP, fmin=FMIN, fmax=FMAX, class_num=cfg["num_classes"],
                     model_type="HTSAT", model_name="base")
    text_cfg = dict(context_length=8, vocab_size=16, width=8, heads=1, layers=1, model_type="transformer")
    num_features = cfg["embed_dim"] * 2 ** (len(cfg["depths"]) - 1)
    m = model_mod.CLAP(embed_dim=num_features, audio_cfg=audio_cfg, text_cfg=text_cfg,
                       joint_embed_shape=cfg["joint"])
    if cfg is not FULL:
        m.audio_branch = htsat_mod.HTSAT_Swin_Transformer(
            spec_size=cfg["spec_size"], patch_size=cfg["patch_size"], patch_stride=(cfg["patch_size"],) * 2,
            num_classes=cfg["num_classes"], embed_dim=cfg["embed_dim"], depths=cfg["depths"],
            num_heads=cfg["num_heads"], window_size=cfg["window_size"], config=m.audio_cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, mod in m.named_modules():
            if not (name.startswith("audio_branch") or name.startswith("audio_projection")):
                continue
            if isinstance(mod, nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / mod.weight.shape[1] ** 0.5)
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.copy_(1 + 0.2 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
            elif isinstance(mod, htsat_mod.WindowAttention):
                t = mod.relative_position_bias_table
                t.copy_(torch.randn(t.shape, generator=g))
        bn = m.audio_branch.bn0
        n = bn.num_features
        bn.weight.copy_(0.5 + torch.rand(n, generator=g))
        bn.bias.copy_(0.3 * torch.randn(n, generator=g))
        bn.running_mean.copy_(-30.0 + 10.0 * torch.randn(n, generator=g))
        bn.running_var.copy_(100.0 + 300.0 * torch.rand(n, generator=g))
        pe = m.audio_branch.patch_embed.proj
        pe.weight.copy_(0.3 * torch.randn(pe.weight.shape, generator=g))
        pe.bias.copy_(0.1 * torch.randn(pe.bias.shape, generator=g))
    m.eval()
    return m


def save_weights(path, m, cfg):
    tensors = []
    for k, v in m.state_dict().items():
        if not (k.startswith("audio_branch.") or k.startswith("audio_projection.")):
            continue
        if k.endswith("num_batches_tracked") or k.startswith("audio_branch.spectrogram_extractor.stft."):
            continue
        a = v.detach().cpu().numpy()
        tensors.append((k, a.astype(np.int64 if a.dtype.kind in "iu" else np.float32)))
    meta = {
        "stemline.arch": "clap", "sample_rate": str(SR), "window_size": str(NFFT), "hop_size": str(HOP),
        "mel_bins": str(cfg["mel_bins"]), "fmin": str(FMIN), "fmax": str(FMAX),
        "clip_samples": str(cfg["clip_samples"]), "spec_size": str(cfg["spec_size"]),
        "source": "random weights, tools/gen_golden_clap.py",
    }
    stemline_st.save(path, tensors, meta)


def make_input(n, seed=2):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3150 * t * (1 + 0.1 * t))
         + 0.1 * rng.standard_normal(n))
    x[n // 3:n // 3 + 50] = 1.5  # clipped by the int16 round trip
    x[n // 2:n // 2 + 50] = -1.25
    return x.astype(np.float32)


def embed(m, ns, x, clip, rec=None):
    """get_audio_embedding_from_data for one waveform (float32 numpy), float64 model."""
    w = ns["int16_to_float32"](ns["float32_to_int16"](x))
    w = torch.from_numpy(w).float().double()
    d = ns["get_audio_features"]({}, w, clip, data_truncating="rand_trunc", data_filling="repeatpad",
                                 audio_cfg=None, require_grad=False)
    with torch.no_grad():
        e = m.get_audio_embedding([d])
    return e.detach().numpy()[0]


def run(m, ns, x, cfg):
    br = m.audio_branch
    rec = {}
    hooks = [br.logmel_extractor.register_forward_hook(lambda mod, i, o: rec.__setitem__("logmel", o)),
             br.patch_embed.register_forward_pre_hook(lambda mod, i: rec.__setitem__("image", i[0])),
             br.patch_embed.register_forward_hook(lambda mod, i, o: rec.__setitem__("patch", o)),
             br.register_forward_hook(lambda mod, i, o: rec.__setitem__("latent", o["embedding"]))]
    for b, blk in enumerate(br.layers[0].blocks[:2]):
        hooks.append(blk.register_forward_hook(lambda mod, i, o, b=b: rec.__setitem__("block1_%d" % (b + 1), o[0])))
    for s, layer in enumerate(br.layers):
        hooks.append(layer.register_forward_hook(lambda mod, i, o, s=s: rec.__setitem__("stage%d" % (s + 1), o[0])))
    m.double()
    e = embed(m, ns, x, cfg["clip_samples"])
    for h in hooks:
        h.remove()
    res = {k: v.detach().numpy()[0] for k, v in rec.items()}
    res["logmel"] = res["logmel"][0]  # (1, T, M) -> (T, M)
    res["image"] = res["image"][0]    # (1, S, S) -> (S, S)
    res["embedding"] = e
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", metavar="DIR", help="HTSAT-base at full size (random weights) into DIR instead")
    ap.add_argument("--seconds", type=float, default=10.0, help="input length for --full")
    a = ap.parse_args()
    model_mod, htsat_mod, ns, version = import_clap()
    cfg, out, stem = (FULL, a.full, "clap-full") if a.full else (SMALL, OUT, "clap-small")
    n = int(a.seconds * SR) if a.full else cfg["clip_samples"]
    os.makedirs(out, exist_ok=True)
    m = build(model_mod, htsat_mod, cfg)
    save_weights(os.path.join(out, stem + ".safetensors"), m, cfg)
    x = make_input(n)
    r = run(m, ns, x, cfg)
    short = embed(m, ns, x[:SHORT_N], cfg["clip_samples"])
    note = "laion-clap %s" % version
    params = {"n": n, "frames": r["logmel"].shape[0], "short_n": SHORT_N}
    if a.full:
        arrays = [("input", x), ("latent", r["latent"]), ("embedding", r["embedding"]),
                  ("short_embedding", short)]
    else:
        arrays = [("input", x), ("logmel", r["logmel"]), ("image", r["image"]), ("patch", r["patch"]),
                  ("block1_1", r["block1_1"]), ("block1_2", r["block1_2"])]
        arrays += [("stage%d" % (s + 1), r["stage%d" % (s + 1)]) for s in range(len(cfg["depths"]))]
        arrays += [("latent", r["latent"]), ("embedding", r["embedding"]), ("short_embedding", short)]
    stemline_st.write_slg(os.path.join(out, stem + ".slg"), "made by tools/gen_golden_clap.py, torch %s, numpy %s, %s"
                          % (torch.__version__, np.__version__, note), params, arrays)
    print("wrote %s/%s.{safetensors,slg}: frames %d, latent %d, embedding %d" % (
        out, stem, r["logmel"].shape[0], r["latent"].shape[0], r["embedding"].shape[0]))


if __name__ == "__main__":
    main()
