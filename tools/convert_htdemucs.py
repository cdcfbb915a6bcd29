#!/usr/bin/env python3
"""Converts released HT-Demucs v4 checkpoints (demucs's serialized format) into
a stemline weights file:

    python3 tools/convert_htdemucs.py --out htdemucs.safetensors FILE.th
    python3 tools/convert_htdemucs.py --out htdemucs_ft.safetensors --bag htdemucs_ft.yaml F1.th F2.th F3.th F4.th

A checkpoint is what demucs.states.serialize_model writes with torch.save: a
dict with klass (the model class), args, kwargs (its constructor arguments),
state (the state dict, float16 in the releases) and training_args. It is read
without the demucs package: class references in the pickle are recorded by
name, nothing of them runs. Only klass HTDemucs is accepted; every constructor
argument is either written into the metadata that models/htdemucs.c reads,
accepted because it does not change inference, or must have the value that
stemline implements (anything else: exit 2 naming the file and the key).

A bag is the YAML of demucs's remote/*.yaml (models: list of signatures,
weights: one row of per-source weights per model, segment: optional override)
with one FILE.th per signature, in any order (a file is matched by the
signature its name starts with, SIG-xxxxxxxx.th). Every model of a bag must
have the same architecture and sources.

Output: tensors m{i}.NAME (model i's state dict, float32), and metadata
stemline.arch=htdemucs, the hyper-parameters (keys of HTDemucs.__init__),
sources, segment (a fraction "num/den" of seconds), models, bag_weights (rows
separated by ';'), source (the files' sha256). Exit status: 0 ok, 2 bad input.
"""

import argparse
import fractions
import os
import pickle
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# HTDemucs.__init__ defaults of demucs 4.x (what a checkpoint without the key means)
DEFAULTS = {
    "audio_channels": 2, "channels": 48, "channels_time": None, "growth": 2, "nfft": 4096,
    "wiener_iters": 0, "end_iters": 0, "wiener_residual": False, "cac": True, "depth": 4,
    "rewrite": True, "multi_freqs": None, "multi_freqs_depth": 3, "freq_emb": 0.2, "emb_scale": 10,
    "emb_smooth": True, "kernel_size": 8, "time_stride": 2, "stride": 4, "context": 1,
    "context_enc": 0, "norm_starts": 4, "norm_groups": 4, "dconv_mode": 1, "dconv_depth": 2,
    "dconv_comp": 8, "dconv_init": 1e-3, "bottom_channels": 0, "t_layers": 5, "t_emb": "sin",
    "t_hidden_scale": 4.0, "t_heads": 8, "t_dropout": 0.0, "t_max_positions": 10000,
    "t_norm_in": True, "t_norm_in_group": False, "t_group_norm": False, "t_norm_first": True,
    "t_norm_out": True, "t_max_period": 10000.0, "t_weight_decay": 0.0, "t_lr": None,
    "t_layer_scale": True, "t_gelu": True, "t_weight_pos_embed": 1.0, "t_sin_random_shift": 0,
    "t_cape_mean_normalize": True, "t_cape_augment": True, "t_cape_glob_loc_scale": None,
    "t_sparse_self_attn": False, "t_sparse_cross_attn": False, "t_mask_type": "diag",
    "t_mask_random_seed": 42, "t_sparse_attn_window": 500, "t_global_window": 100,
    "t_sparsity": 0.95, "t_auto_sparsity": False, "t_cross_first": False, "rescale": 0.1,
    "samplerate": 44100, "segment": 10, "use_train_segment": True,
}
# written into the metadata (integers / floats / booleans as 0 or 1)
INTS = ["audio_channels", "channels", "growth", "nfft", "depth", "kernel_size", "time_stride", "stride",
        "context", "context_enc", "norm_starts", "norm_groups", "dconv_mode", "dconv_depth",
        "bottom_channels", "t_layers", "t_heads", "samplerate"]
FLOATS = ["freq_emb", "emb_scale", "dconv_comp", "t_hidden_scale", "t_max_period", "t_weight_pos_embed"]
BOOLS = ["rewrite", "t_norm_in", "t_norm_out", "t_layer_scale", "t_gelu", "t_cross_first"]
# no effect on inference (training only, or already in the weights)
HARMLESS = {"end_iters", "emb_smooth", "dconv_init", "t_dropout", "t_max_positions",
            "t_weight_decay", "t_lr", "t_cape_mean_normalize", "t_cape_augment", "t_cape_glob_loc_scale",
            "t_mask_type", "t_mask_random_seed", "t_sparse_attn_window", "t_global_window", "t_sparsity",
            "t_auto_sparsity", "rescale", "multi_freqs_depth", "sources", "segment", "channels_time",
            "wiener_residual"}
# the value stemline implements
MUST = {"wiener_iters": 0, "cac": True, "multi_freqs": None, "t_emb": "sin", "t_norm_in_group": False,
        "t_group_norm": False, "t_norm_first": True, "t_sin_random_shift": 0, "t_sparse_self_attn": False,
        "t_sparse_cross_attn": False, "use_train_segment": True}


class ConvertError(Exception):
    pass


def _fraction(v):
    try:
        f = fractions.Fraction(v).limit_denominator(100000)
    except (TypeError, ValueError):
        raise ConvertError("model key 'segment' is not a number: %r" % (v,))
    if f <= 0:
        raise ConvertError("model key 'segment' must be > 0")
    return f


def metadata_from_kwargs(kw, sources):
    """The stemline metadata for HTDemucs constructor arguments kw (ConvertError when unsupported)."""
    for k in kw:
        if k not in DEFAULTS and k != "sources":
            raise ConvertError("model key '%s' is unknown (not an HTDemucs argument of demucs 4.x)" % k)
    full = dict(DEFAULTS)
    full.update(kw)
    for k, want in MUST.items():
        v = full[k]
        if k == "multi_freqs" and not v:
            continue
        if v != want:
            raise ConvertError("model key '%s' = %r is not supported (stemline implements %r)" % (k, v, want))
    ct = full["channels_time"]
    if ct is not None and ct != full["channels"]:
        raise ConvertError("model key 'channels_time' = %r is not supported (must equal channels)" % (ct,))
    meta = {"stemline.arch": "htdemucs"}
    for k in INTS:
        meta[k] = str(int(full[k]))
    for k in FLOATS:
        meta[k] = repr(float(full[k]))
    for k in BOOLS:
        meta[k] = str(int(bool(full[k])))
    if not sources or any("," in s or not s for s in sources):
        raise ConvertError("model key 'sources' must be a list of names")
    meta["sources"] = ",".join(sources)
    seg = _fraction(full["segment"])
    meta["segment"] = "%d/%d" % (seg.numerator, seg.denominator)
    return meta


class _ClassRef:
    """A class named in a checkpoint's pickle, recorded by name only."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __repr__(self):
        return "%s.%s" % (self.module, self.name)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] in ("demucs", "omegaconf", "dora", "diffq"):
            return _ClassRef(module, name)
        return super().find_class(module, name)


_pickle = types.SimpleNamespace(Unpickler=_Unpickler, load=lambda f, **kw: _Unpickler(f, **kw).load(),
                                __name__="pickle")


def load_package(path):
    """The serialized dict of a demucs checkpoint file (ConvertError naming what is wrong)."""
    import torch

    try:
        pkg = torch.load(path, map_location="cpu", pickle_module=_pickle, weights_only=False)
    except TypeError:  # torch without weights_only
        pkg = torch.load(path, map_location="cpu", pickle_module=_pickle)
    except Exception as e:  # torch raises many kinds
        raise ConvertError("cannot read the checkpoint: %s" % e)
    if not isinstance(pkg, dict):
        raise ConvertError("not a demucs serialized model (no dict)")
    for k in ("klass", "args", "kwargs", "state"):
        if k not in pkg:
            raise ConvertError("key '%s' is missing: not a demucs serialized model" % k)
    klass = pkg["klass"]
    name = klass.name if isinstance(klass, _ClassRef) else getattr(klass, "__name__", repr(klass))
    if name != "HTDemucs":
        raise ConvertError("key 'klass' is %s: only HTDemucs (HT-Demucs v4) is supported" % name)
    if pkg["args"]:
        raise ConvertError("key 'args' is not empty: positional arguments are not supported")
    st = pkg["state"]
    if not isinstance(st, dict) or st.get("__quantized"):
        raise ConvertError("key 'state' is quantized (diffq) or not a state dict: not supported")
    return pkg


def read_bag(path, files, bag=None):
    """(ordered files, weights, segment or None) from a bag YAML (or its parsed dict) and its files."""
    if bag is None:
        import yaml

        with open(path) as f:
            bag = yaml.safe_load(f)
    if not isinstance(bag, dict) or not isinstance(bag.get("models"), list) or not bag["models"]:
        raise ConvertError("key 'models' is missing or not a list")
    sigs = [str(s) for s in bag["models"]]
    by_sig = {}
    for fp in files:
        base = os.path.basename(fp)
        sig = base.split("-")[0].split(".")[0]
        by_sig[sig] = fp
    ordered = []
    for s in sigs:
        if s not in by_sig:
            raise ConvertError("key 'models': no file given for signature %s (expected %s-*.th)" % (s, s))
        ordered.append(by_sig.pop(s))
    if by_sig:
        raise ConvertError("key 'models': file(s) %s are not in the bag" % ", ".join(sorted(by_sig.values())))
    weights = bag.get("weights")
    if weights is not None:
        if not isinstance(weights, list) or len(weights) != len(sigs):
            raise ConvertError("key 'weights' must have one row per model (%d)" % len(sigs))
        weights = [[float(x) for x in row] for row in weights]
    seg = bag.get("segment")
    return ordered, weights, (None if seg is None else _fraction(seg))


def convert(files, bag=None, bag_spec=None):
    """(tensors, metadata) for checkpoint files (and a bag YAML path, or its content as a dict);
    ConvertError carries 'FILE: reason'."""
    weights, seg = None, None
    if bag or bag_spec:
        bag = bag or "the bag"
        try:
            files, weights, seg = read_bag(bag, files, bag_spec)
        except (OSError, ValueError, TypeError, ConvertError) as e:
            raise ConvertError("%s: %s" % (bag, e))
    elif len(files) != 1:
        raise ConvertError("several checkpoint files need --bag BAG.yaml")
    import stemline_st

    tensors, meta = [], None
    for i, fp in enumerate(files):
        try:
            pkg = load_package(fp)
            kw = dict(pkg["kwargs"])
            m = metadata_from_kwargs(kw, list(kw.get("sources", [])))
        except ConvertError as e:
            raise ConvertError("%s: %s" % (fp, e))
        if meta is None:
            meta = m
        elif {k: v for k, v in m.items() if k != "segment"} != {k: v for k, v in meta.items() if k != "segment"}:
            diff = sorted(k for k in m if m.get(k) != meta.get(k) and k != "segment")
            raise ConvertError("%s: key '%s' differs from the bag's first model" % (fp, diff[0]))
        elif m["segment"] != meta["segment"] and seg is None:
            seg = min(fractions.Fraction(m["segment"]), fractions.Fraction(meta["segment"]))
        for k, v in pkg["state"].items():
            if not hasattr(v, "dtype") or not v.dtype.is_floating_point:
                raise ConvertError("%s: tensor '%s' is not floating point" % (fp, k))
            tensors.append(("m%d.%s" % (i, k), stemline_st.to_numpy_f32(v)))
    n_src = len(meta["sources"].split(","))
    if weights is None:
        weights = [[1.0] * n_src for _ in files]
    for r, row in enumerate(weights):
        if len(row) != n_src:
            raise ConvertError("%s: key 'weights' row %d has %d entries for %d sources" % (bag, r, len(row), n_src))
    for k in range(n_src):
        if sum(row[k] for row in weights) <= 0:
            raise ConvertError("%s: key 'weights': source %d has no positive total weight" % (bag, k))
    if seg is not None:
        meta["segment"] = "%d/%d" % (seg.numerator, seg.denominator)
    meta["models"] = str(len(files))
    meta["bag_weights"] = ";".join(",".join(repr(float(x)) for x in row) for row in weights)
    meta["source"] = ",".join("%s:%s" % (os.path.basename(fp), stemline_st.sha256_file(fp)) for fp in files)
    return tensors, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", metavar="FILE.th")
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--bag", metavar="BAG.yaml", help="a bag's YAML (demucs remote/*.yaml format)")
    args = ap.parse_args()
    try:
        tensors, meta = convert(args.files, args.bag)
    except ConvertError as e:
        print("convert_htdemucs: %s" % e, file=sys.stderr)
        return 2
    except ImportError as e:
        print("convert_htdemucs: needs torch (and PyYAML for --bag): %s" % e, file=sys.stderr)
        return 2
    import stemline_st

    stemline_st.save(args.out, tensors, meta)
    print("%s: %d tensors, %s models, sources %s" % (args.out, len(tensors), meta["models"], meta["sources"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
