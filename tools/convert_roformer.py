#!/usr/bin/env python3
"""Converts a BS-RoFormer or Mel-Band RoFormer checkpoint and its YAML config
(the format of ZFTurbo's Music-Source-Separation-Training and of
python-audio-separator) into a stemline weights file:

    python3 tools/convert_roformer.py --config CONFIG.yaml --out MODEL.safetensors CHECKPOINT.ckpt

The state dict is written unchanged (names and shapes; float32), with the
hyper-parameters and the inference settings in the metadata that
models/roformer.c reads (stemline.arch, dim, depth, stereo, num_stems,
time/freq_transformer_depth, heads, dim_head, stft_*, mask_estimator_depth,
freqs_per_bands or num_bands + sample_rate, zero_dc, chunk_size, num_overlap,
instruments). Supported: the architecture of `bs-roformer` 0.3.10 on PyPI and
of ZFTurbo's models/bs_roformer/ (BSRoformer, MelBandRoformer; also the
copies python-audio-separator runs) with linear_transformer_depth 0 and no
skip connections: the MaskEstimator MLP has mask_estimator_depth linear layers
(BS) or one more (Mel), hidden width dim * mlp_expansion_factor, the feed-forward
4 * dim; BS has one RMSNorm after the stack (final_norm), Mel one after each
transformer; use_torch_checkpoint, sage_attention (an approximate attention
kernel in torch: stemline computes exact attention), flash_attn and the
dropouts do not change the weights and are accepted. The DC bin is kept
unless the config says zero_dc: true (neither ZFTurbo's code nor
python-audio-separator's zeroes it). Anything else in the config that changes
the computation is refused with the key named (exit 2); the checkpoint's
tensors are checked against the config (a key missing, misshapen or left over
is named, exit 2), and stemline checks them again when it loads the file.
Needs torch (to read the checkpoint) and PyYAML.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# model keys: read (into the metadata), or accepted because they do not change inference
USED = {"dim", "depth", "stereo", "num_stems", "time_transformer_depth", "freq_transformer_depth", "freqs_per_bands",
        "dim_head", "heads", "stft_n_fft", "stft_hop_length", "stft_win_length", "stft_normalized",
        "mask_estimator_depth", "num_bands", "sample_rate", "zero_dc", "mlp_expansion_factor"}
HARMLESS = {"attn_dropout", "ff_dropout", "flash_attn", "dim_freqs_in", "multi_stft_resolution_loss_weight",
            "multi_stft_resolutions_window_sizes", "multi_stft_hop_size", "multi_stft_normalized",
            "use_torch_checkpoint", "sage_attention", "match_input_audio_length"}
# value that keeps the supported computation
MUST = {"linear_transformer_depth": 0, "skip_connection": False, "stft_window_fn": None}


class ConvertError(Exception):
    pass


def metadata_from_kwargs(arch, kw, instruments, chunk_size, num_overlap, zero_dc=False):
    """The stemline metadata for model kwargs (the classes' argument names)."""
    def need(k):
        if k not in kw:
            raise ConvertError("model key '%s' is required" % k)
        return kw[k]

    n_fft = int(kw.get("stft_n_fft", 2048))
    meta = {
        "stemline.arch": arch,
        "dim": need("dim"),
        "depth": need("depth"),
        "stereo": int(bool(kw.get("stereo", False))),
        "num_stems": int(kw.get("num_stems", 1)),
        "time_transformer_depth": int(kw.get("time_transformer_depth", 2)),
        "freq_transformer_depth": int(kw.get("freq_transformer_depth", 2)),
        "dim_head": int(kw.get("dim_head", 64)),
        "heads": int(kw.get("heads", 8)),
        "stft_n_fft": n_fft,
        "stft_hop_length": int(kw.get("stft_hop_length", 512)),
        "stft_win_length": int(kw.get("stft_win_length", 2048)),
        "stft_normalized": int(bool(kw.get("stft_normalized", False))),
        "mask_estimator_depth": int(kw.get("mask_estimator_depth", 2 if arch == "bs_roformer" else 1)),
        "zero_dc": int(bool(zero_dc)),
        "chunk_size": int(chunk_size),
        "num_overlap": int(num_overlap),
        "instruments": ",".join(instruments),
    }
    if arch == "bs_roformer":
        fpb = kw.get("freqs_per_bands")
        if fpb is None:
            from_pkg = None
            try:
                from bs_roformer.bs_roformer import DEFAULT_FREQS_PER_BANDS as from_pkg
            except ImportError:
                pass
            if from_pkg is None:
                raise ConvertError("model key 'freqs_per_bands' is required")
            fpb = from_pkg
        if sum(int(x) for x in fpb) != n_fft // 2 + 1:
            raise ConvertError("model key 'freqs_per_bands' covers %d bins, stft_n_fft %d has %d"
                               % (sum(int(x) for x in fpb), n_fft, n_fft // 2 + 1))
        meta["freqs_per_bands"] = ",".join(str(int(x)) for x in fpb)
        meta["sample_rate"] = int(kw.get("sample_rate", 44100))
    else:
        meta["num_bands"] = int(kw.get("num_bands", 60))
        meta["sample_rate"] = int(kw.get("sample_rate", 44100))
    if len(instruments) != meta["num_stems"]:
        raise ConvertError("%d instrument name(s) %s for num_stems %d" % (len(instruments), instruments,
                                                                         meta["num_stems"]))
    return {k: str(v) for k, v in meta.items()}


def config_to_metadata(cfg, arch=None):
    model = cfg.get("model")
    if not isinstance(model, dict):
        raise ConvertError("no 'model' section")
    if arch is None:
        arch = "mel_band_roformer" if "num_bands" in model else "bs_roformer"
    for k, v in model.items():
        if k in MUST:
            if v != MUST[k] and not (k == "skip_connection" and not v):
                raise ConvertError("model key '%s' is %r; stemline supports only %r" % (k, v, MUST[k]))
        elif k not in USED and k not in HARMLESS:
            raise ConvertError("model key '%s' is not understood (supported: %s)"
                               % (k, ", ".join(sorted(USED | HARMLESS | set(MUST)))))
    if int(model.get("mlp_expansion_factor", 4)) < 1:
        raise ConvertError("model key 'mlp_expansion_factor' must be >= 1")
    training = cfg.get("training") or {}
    target = training.get("target_instrument")
    instruments = [target] if target else list(training.get("instruments") or [])
    if not instruments:
        raise ConvertError("training.instruments (or training.target_instrument) names no stem")
    audio = cfg.get("audio") or {}
    inference = cfg.get("inference") or {}
    # the chunk the reference inference uses: inference.chunk_size, else audio.chunk_size
    chunk = int(inference.get("chunk_size", audio.get("chunk_size", 0)))
    kw = dict(model)
    if "sample_rate" not in kw and "sample_rate" in audio:
        kw["sample_rate"] = audio["sample_rate"]
    # ZFTurbo's models (and python-audio-separator's copies, which store the flag but do
    # not act on it) keep the DC bin: zeroed only when a config asks for it
    return metadata_from_kwargs(arch, kw, instruments, chunk, int(inference.get("num_overlap", 2)),
                                zero_dc=bool(model.get("zero_dc", False)))


def check_layout(meta, shapes, mlp_expansion_factor=4):
    """The tensors a checkpoint of this config must have (names and shapes), against shapes
    {name: tuple}: raises ConvertError naming the first key missing, misshapen or left over.
    Mel-Band band widths come from the checkpoint's band-split norms (stemline checks them
    against the mel filters when it loads the file)."""
    arch = meta["stemline.arch"]
    dim, depth, heads, dh = (int(meta[k]) for k in ("dim", "depth", "heads", "dim_head"))
    S = 2 if meta["stereo"] == "1" else 1
    hd = heads * dh
    if arch == "bs_roformer":
        din = [2 * S * int(f) for f in meta["freqs_per_bands"].split(",")]
    else:
        din = []
        while "band_split.to_features.%d.0.gamma" % len(din) in shapes:
            din.append(int(shapes["band_split.to_features.%d.0.gamma" % len(din)][0]))
        if len(din) != int(meta["num_bands"]):
            raise ConvertError("the checkpoint has %d band-split norms, num_bands is %s" % (len(din), meta["num_bands"]))
    want = {}
    for k, d in enumerate(din):
        p = "band_split.to_features.%d." % k
        want.update({p + "0.gamma": (d,), p + "1.weight": (dim, d), p + "1.bias": (dim,)})
    for l in range(depth):
        for ax, nd in enumerate((int(meta["time_transformer_depth"]), int(meta["freq_transformer_depth"]))):
            for i in range(nd):
                p = "layers.%d.%d.layers.%d." % (l, ax, i)
                want.update({p + "0.norm.gamma": (dim,), p + "0.to_qkv.weight": (3 * hd, dim),
                             p + "0.to_out.0.weight": (dim, hd), p + "1.net.0.gamma": (dim,),
                             p + "1.net.1.weight": (4 * dim, dim), p + "1.net.1.bias": (4 * dim,),
                             p + "1.net.4.weight": (dim, 4 * dim), p + "1.net.4.bias": (dim,)})
                # optional in the code's versions: gates (present in ZFTurbo's and 0.3.10), stored rotary frequencies
                for opt, shp in (("0.to_gates.weight", (heads, dim)), ("0.to_gates.bias", (heads,)),
                                 ("0.rotary_embed.freqs", (dh // 2,))):
                    if p + opt in shapes:
                        want[p + opt] = shp
            if arch == "mel_band_roformer":
                want["layers.%d.%d.norm.gamma" % (l, ax)] = (dim,)
    if arch == "bs_roformer":
        want["final_norm.gamma"] = (dim,)
    # mask estimators: BSRoformer's MLP has mask_estimator_depth linear layers, MelBandRoformer's one more
    n_lin = int(meta["mask_estimator_depth"]) + (arch == "mel_band_roformer")
    hidden = dim * mlp_expansion_factor
    for n in range(int(meta["num_stems"])):
        for k, d in enumerate(din):
            for i in range(n_lin):
                p = "mask_estimators.%d.to_freqs.%d.0.%d." % (n, k, 2 * i)
                out = 2 * d if i == n_lin - 1 else hidden
                want.update({p + "weight": (out, dim if i == 0 else hidden), p + "bias": (out,)})
    for name, shp in want.items():
        if name not in shapes:
            raise ConvertError("tensor '%s' is missing (the config implies it)" % name)
        if tuple(shapes[name]) != shp:
            raise ConvertError("tensor '%s' has shape %s, the config implies %s (mask_estimator_depth, "
                               "mlp_expansion_factor, dims?)" % (name, tuple(shapes[name]), shp))
    for name in shapes:
        if name not in want:
            raise ConvertError("tensor '%s' is not part of this architecture (a checkpoint of another model "
                               "or version of the code)" % name)


def convert(checkpoint, config, out, arch=None, sources=None):
    """checkpoint + YAML config -> out (.safetensors, written atomically). sources: optional
    {path: sha256} recorded in the metadata ("source"). Returns the metadata; raises
    ConvertError naming the file and the reason."""
    import yaml

    import stemline_st

    try:
        with open(config) as f:
            cfg = yaml.load(f, Loader=yaml.FullLoader)  # ZFTurbo's configs use python tags (tuples)
        if not isinstance(cfg, dict):
            raise ConvertError("not a mapping")
        meta = config_to_metadata(cfg, arch)
    except (OSError, yaml.YAMLError, ConvertError, TypeError, ValueError) as e:
        raise ConvertError("%s: %s" % (config, e))
    try:
        sd = stemline_st.torch_load(checkpoint)
    except Exception as e:  # torch raises many kinds
        raise ConvertError("%s: cannot read the checkpoint: %s" % (checkpoint, e))
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise ConvertError("%s: no state dict in the checkpoint" % checkpoint)
    tensors = []
    for k, v in sd.items():
        name = k[len("module."):] if k.startswith("module.") else k
        if not hasattr(v, "dtype") or not v.dtype.is_floating_point:
            raise ConvertError("%s: tensor '%s' is not floating point" % (checkpoint, k))
        tensors.append((name, stemline_st.to_numpy_f32(v)))
    try:
        check_layout(meta, {n: a.shape for n, a in tensors}, int(cfg["model"].get("mlp_expansion_factor", 4)))
    except ConvertError as e:
        raise ConvertError("%s: %s" % (checkpoint, e))
    if sources:
        meta["source"] = ", ".join("%s sha256:%s" % (os.path.basename(p), h) for p, h in sorted(sources.items()))
    stemline_st.save(out, tensors, meta)
    return meta, len(tensors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--config", required=True, help="the checkpoint's YAML config")
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--arch", choices=["bs_roformer", "mel_band_roformer"],
                    help="default: mel_band_roformer when the config has num_bands, else bs_roformer")
    args = ap.parse_args()
    try:
        meta, n = convert(args.checkpoint, args.config, args.out, args.arch)
    except ConvertError as e:
        print("convert_roformer: %s" % e, file=sys.stderr)
        return 2
    print("%s: %d tensors, %s" % (args.out, n, ", ".join("%s=%s" % kv for kv in sorted(meta.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
