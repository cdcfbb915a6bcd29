#!/usr/bin/env python3
"""Converts a LAION-CLAP checkpoint (the `laion-clap` package, 1.1.x; e.g. the
music checkpoint music_audioset_epoch_15_esc_90.14.pt: HTSAT-base audio
encoder, RoBERTa-base text encoder, 512-d joint space, no fusion) and the
roberta-base tokenizer files into one stemline weights file:

    python3 tools/convert_clap.py --out clap-music.safetensors \\
        --vocab vocab.json --merges merges.txt music_audioset_epoch_15_esc_90.14.pt

Contents of the safetensors file:
  - every tensor of the checkpoint's state_dict under its original name (a
    leading "module." stripped, as laion_clap's load_state_dict does), both
    towers: float tensors as F32, integer buffers (relative_position_index ...)
    as I64; left out: text_branch.embeddings.position_ids (laion_clap deletes it
    before loading), the BatchNorm counters *.num_batches_tracked (training
    only) and audio_branch.spectrogram_extractor.stft.* (the DFT matrices of
    torchlibrosa's STFT, 4 MB that stemline computes), as
    tools/gen_golden_clap.py leaves them out;
  - the tokenizer: tokenizer.vocab_json and tokenizer.merges_txt, the bytes of
    vocab.json and merges.txt as U8 vectors (last in the file);
  - metadata (all values strings):
      stemline.arch            "clap"
      clap.amodel, clap.tmodel "HTSAT-base", "roberta"
      clap.enable_fusion       "0" (fusion checkpoints are refused)
      clap.joint_dim           width of the joint space (512)
      clap.text.*              RoBERTa: vocab_size, width, layers, heads, intermediate,
                               max_positions, type_vocab, pad_id (1), layer_norm_eps
                               (1e-05), context_length (77: laion_clap's max_length),
                               act ("gelu")
      sample_rate, window_size, hop_size, mel_bins, fmin, fmax, clip_samples,
      spec_size                the audio front end as models/clap_audio*.c reads it
                               (the keys of tools/gen_golden_clap.py's files)
      clap.audio.*             audio_cfg of the amodel's laion_clap config (sample_rate,
                               window_size, hop_size, mel_bins, fmin, fmax, clip_samples,
                               class_num, model_type, model_name) and the HTSAT geometry
                               (spec_size, patch_size, patch_stride, embed_dim, depths,
                               num_heads, window_size_attn, mlp_ratio, out_dim); lists as
                               comma-separated integers
Text sizes are read from the tensor shapes (so reduced random-weight models
convert too), the head count from --text-heads (not in the shapes; 12 for
roberta-base). Needs torch to read the checkpoint; exit 2 on any bad input.
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TEXT = "text_branch."
# laion_clap's create_htsat_model geometry per model_name; audio_cfg of its model_configs/HTSAT-*.json
HTSAT = {
    "tiny": {"embed_dim": 96, "depths": [2, 2, 6, 2]},
    "base": {"embed_dim": 128, "depths": [2, 2, 12, 2]},
    "large": {"embed_dim": 256, "depths": [2, 2, 12, 2]},
}
AUDIO_CFG = {"audio_length": 1024, "clip_samples": 480000, "mel_bins": 64, "sample_rate": 48000,
             "window_size": 1024, "hop_size": 480, "fmin": 50, "fmax": 14000, "class_num": 527,
             "model_type": "HTSAT", "model_name": "base"}


class ConvertError(Exception):
    pass


def strip_module(sd):
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}


def text_metadata(shapes, heads):
    """clap.text.* from the tensor shapes {name: shape} of a RoBERTa text branch."""
    def shape(name):
        if name not in shapes:
            raise ConvertError("tensor '%s' missing: not a RoBERTa text branch" % name)
        return shapes[name]

    vocab, width = shape(TEXT + "embeddings.word_embeddings.weight")
    layers = 0
    while TEXT + "encoder.layer.%d.attention.self.query.weight" % layers in shapes:
        layers += 1
    if layers == 0:
        raise ConvertError("no text_branch.encoder.layer.0: not a RoBERTa text branch")
    if width % heads:
        raise ConvertError("text width %d is not a multiple of --text-heads %d" % (width, heads))
    joint = shape("text_projection.2.weight")[0]
    return {
        "clap.tmodel": "roberta",
        "clap.joint_dim": joint,
        "clap.text.vocab_size": vocab,
        "clap.text.width": width,
        "clap.text.layers": layers,
        "clap.text.heads": heads,
        "clap.text.intermediate": shape(TEXT + "encoder.layer.0.intermediate.dense.weight")[0],
        "clap.text.max_positions": shape(TEXT + "embeddings.position_embeddings.weight")[0],
        "clap.text.type_vocab": shape(TEXT + "embeddings.token_type_embeddings.weight")[0],
        "clap.text.pad_id": 1,
        "clap.text.layer_norm_eps": "1e-05",
        "clap.text.context_length": 77,
        "clap.text.act": "gelu",
    }


def audio_metadata(amodel, audio_cfg=None, geometry=None):
    """clap.audio.* for an HTSAT amodel ("HTSAT-base" ...); audio_cfg / geometry override the defaults."""
    m = re.fullmatch(r"HTSAT-(tiny|base|large)", amodel)
    if not m:
        raise ConvertError("audio model '%s' is not supported (HTSAT-tiny, HTSAT-base, HTSAT-large)" % amodel)
    cfg = dict(AUDIO_CFG, model_name=m.group(1))
    cfg.update(audio_cfg or {})
    geo = {"spec_size": 256, "patch_size": 4, "patch_stride": [4, 4], "num_heads": [4, 8, 16, 32],
           "window_size_attn": 8, "mlp_ratio": 4}
    geo.update(HTSAT[m.group(1)])
    geo.update(geometry or {})
    geo["out_dim"] = geo["embed_dim"] * 2 ** (len(geo["depths"]) - 1)
    meta = {"clap.amodel": amodel}
    for k in ("sample_rate", "window_size", "hop_size", "mel_bins", "fmin", "fmax", "clip_samples"):
        meta[k] = cfg[k]
    meta["spec_size"] = geo["spec_size"]
    for k, v in list(cfg.items()) + list(geo.items()):
        meta["clap.audio." + k] = ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else v
    return meta


def check_no_fusion(names):
    fused = [n for n in names if "fusion" in n or n.startswith("audio_branch.mel_conv")]
    if fused:
        raise ConvertError("this is a fusion checkpoint (tensor '%s'): only non-fusion CLAP models are supported"
                           % fused[0])


def build(sd, vocab_bytes, merges_bytes, text_heads=12, amodel="HTSAT-base", audio_cfg=None, geometry=None,
          require_audio=True):
    """(tensors, metadata) of the stemline file for a state dict of numpy arrays (names as in
    the checkpoint, "module." allowed) and the tokenizer files' bytes. require_audio=False
    (text-only test files of tools/gen_golden_clap_text.py) accepts a state dict without
    the audio branch."""
    import numpy as np

    sd = strip_module(sd)
    sd.pop(TEXT + "embeddings.position_ids", None)
    sd = {k: v for k, v in sd.items()
          if not k.endswith(".num_batches_tracked") and not k.startswith("audio_branch.spectrogram_extractor.stft.")}
    check_no_fusion(sd)
    if require_audio and not any(k.startswith("audio_branch.") for k in sd):
        raise ConvertError("no audio_branch.* tensor: not a LAION-CLAP checkpoint")
    try:
        vocab = json.loads(vocab_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConvertError("the vocabulary is not JSON: %s" % e)
    if not isinstance(vocab, dict) or vocab.get("<pad>") != 1 or vocab.get("<s>") != 0 or vocab.get("</s>") != 2:
        raise ConvertError("the vocabulary is not RoBERTa's (<s> 0, <pad> 1, </s> 2)")
    meta = text_metadata({k: tuple(v.shape) for k, v in sd.items()}, text_heads)
    if len(vocab) > meta["clap.text.vocab_size"]:
        raise ConvertError("the vocabulary has %d tokens, the text branch embeds %d" % (len(vocab), meta["clap.text.vocab_size"]))
    meta.update(audio_metadata(amodel, audio_cfg, geometry))
    meta.update({"stemline.arch": "clap", "clap.enable_fusion": 0})
    ints, floats = [], []
    for k, v in sd.items():
        v = np.asarray(v)
        if v.dtype.kind == "f":
            floats.append((k, np.ascontiguousarray(v, dtype=np.float32)))
        elif v.dtype.kind in "iub":
            ints.append((k, np.ascontiguousarray(v, dtype=np.int64)))
        else:
            raise ConvertError("tensor '%s' has dtype %s" % (k, v.dtype))
    # I64 first, then F32, then U8: every tensor starts at a multiple of its element size
    tensors = ints + floats + [("tokenizer.vocab_json", np.frombuffer(vocab_bytes, dtype=np.uint8)),
                               ("tokenizer.merges_txt", np.frombuffer(merges_bytes, dtype=np.uint8))]
    return tensors, {k: str(v) for k, v in meta.items()}


def load_checkpoint(path):
    """The state dict of a laion_clap checkpoint. The published training checkpoints hold
    numpy scalars beside the tensors, which torch's weights_only loader refuses unless
    they are allowed by name; nothing else is unpickled."""
    import stemline_st

    try:
        return stemline_st.checkpoint_state_dict(path)
    except ValueError as first:
        try:
            import numpy as np
            import torch

            allowed = [np.dtype] + [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
            core = getattr(np, "_core", None) or getattr(np, "core")
            # pickled by older numpy under numpy.core.multiarray, the module numpy 2 calls _core
            allowed += [core.multiarray.scalar, (core.multiarray.scalar, "numpy.core.multiarray.scalar")]
            dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25
            allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")] if dtypes else []
            with torch.serialization.safe_globals(allowed):
                return stemline_st.checkpoint_state_dict(path)
        except (ValueError, AttributeError, ImportError):
            raise first


def convert(checkpoint, vocab_path, merges_path, out, text_heads=12, amodel="HTSAT-base", sources=None):
    """Reads the three files, writes out; raises ConvertError (OSError / ValueError wrapped)."""
    import stemline_st

    try:
        with open(vocab_path, "rb") as f:
            vocab = f.read()
        with open(merges_path, "rb") as f:
            merges = f.read()
    except OSError as e:
        raise ConvertError(str(e))
    try:
        sd = load_checkpoint(checkpoint)
    except ValueError as e:
        raise ConvertError("%s: %s" % (checkpoint, e))
    sd = {k: (v.detach().cpu().float() if v.dtype.is_floating_point else v.detach().cpu()).numpy()
          for k, v in sd.items()}
    try:
        tensors, meta = build(sd, vocab, merges, text_heads, amodel)
    except ConvertError as e:
        raise ConvertError("%s: %s" % (checkpoint, e))
    if sources:
        meta["source"] = ", ".join("%s sha256 %s" % (os.path.basename(k), v) for k, v in sorted(sources.items()))
    stemline_st.save(out, tensors, meta)
    return tensors, meta


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--out", required=True, help="output .safetensors")
    ap.add_argument("--vocab", required=True, help="roberta-base vocab.json")
    ap.add_argument("--merges", required=True, help="roberta-base merges.txt")
    ap.add_argument("--amodel", default="HTSAT-base", help="audio encoder of the checkpoint (default HTSAT-base)")
    ap.add_argument("--text-heads", type=int, default=12, help="attention heads of the text encoder (default 12)")
    args = ap.parse_args()
    try:
        tensors, meta = convert(args.checkpoint, args.vocab, args.merges, args.out, args.text_heads, args.amodel)
    except ConvertError as e:
        print("convert_clap: %s" % e, file=sys.stderr)
        return 2
    print("%s: %d tensors, text %s x %s, %s" % (args.out, len(tensors), meta["clap.text.layers"],
                                                 meta["clap.text.width"], meta["clap.amodel"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
