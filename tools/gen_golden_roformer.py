#!/usr/bin/env python3
"""Golden vectors for the RoFormer separators (models/roformer.c), from the
reference Python code: lucidrains' `bs-roformer` package from PyPI, version
0.3.10 (BSRoformer, MelBandRoformer; the version whose state dicts match the
published checkpoints of ZFTurbo's Music-Source-Separation-Training key for
key), with random weights at reduced sizes.

    python3 -m venv /tmp/rf && /tmp/rf/bin/pip install torch bs-roformer==0.3.10 librosa
    /tmp/rf/bin/python tools/gen_golden_roformer.py        # writes tests/golden/roformer/
    /tmp/rf/bin/python tools/gen_golden_roformer.py --full DIR   # full-size check files (not committed)
    /tmp/rf/bin/python tools/gen_golden_roformer.py --demix      # only tests/golden/roformer/demix/

Nothing of the model code is changed. Each configuration builds the
package's class with flash_attn=False (the einsum attention path, which runs
in float64), draws random weights in float32 (torch seed per case: linear
layers keep their default init, every RMSNorm gamma 1 + 0.2 N(0,1), every bias
0.1 N(0,1)), saves them with the converter's naming and metadata
(tools/convert_roformer.py's metadata_from_kwargs), then runs the model in
float64 (model.double(): the float32 weights converted exactly), so the
reference is exact to float64 and the C model's float32 error is what the test
measures. Stages are taken with forward hooks on the package's own modules.

Files (tests/golden/roformer/, small):
  CASE.safetensors  weights + metadata
  CASE.slg          (tests/unit/sl_golden.h format) params n, frames, bands, dim,
                    n_feat, stems, channels; arrays input [S][n] (float32, what both
                    sides run on), split [T][K][dim] (band split output),
                    layer{i} [T][K][dim] after transformer i (2 per depth: time,
                    frequency; MelBandRoformer's per-transformer norm included),
                    mask [N][T][2*n_feat] (mask estimator outputs, (re, im) per
                    feature), out [N][S][n'] (the model's output, n' = its length).
  demix/            whole-track references of the chunked inference users run
                    (--demix writes only these): ZFTurbo's Music-Source-Separation-
                    Training `demix` (utils/model_utils.py, generic mode, one chunk per
                    model call), written out here from its algorithm (the repository
                    is not on PyPI; nothing of it is imported or copied): reflect
                    border padding, chunks of chunk_size with step chunk_size //
                    num_overlap, each completed by reflection or zeros, the fade
                    window (fade chunk_size // 10; none at the track's first chunk's
                    start and, unless it is also the first, the last chunk's end),
                    weighted overlap-add divided by the summed window, cropping.
                    The model (weights from the committed CASE.safetensors) runs in
                    float64 on each chunk. SET/NAME.wav (16-bit PCM: the reference
                    runs on its exact values) and ref.npz (SET/NAME: [stems][ch][n]).
                    Sets: bs_o2 (bs_stereo_1stem, its chunk_size 768 and num_overlap 2:
                    tracks several chunks long, shorter than a chunk (reflect and zero
                    completion), padded and not), bs_o4 (chunk_size 640, num_overlap 4
                    as stemline options), mel (mel_stereo_1stem, 1280 / 2).
  mel_bands.slg     the band layout of the published Mel-Band RoFormers (n_fft 2048,
                    60 bands, 44.1 kHz, stereo): freq_indices (the package's buffer)
                    and per_band (bins per band).
"""

import argparse
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stemline_st  # noqa: E402
from convert_roformer import metadata_from_kwargs  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "golden", "roformer")

# name, class, kwargs, samples, stems' names
CASES = [
    ("bs_stereo_1stem", "BSRoformer",
     dict(dim=16, depth=2, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
          freqs_per_bands=(2, 2, 4, 4, 8, 13, 32), dim_head=8, heads=2, stft_n_fft=128,
          stft_hop_length=32, stft_win_length=128, mask_estimator_depth=2),
     32 * 24, ["vocals"]),
    ("bs_mono_4stem", "BSRoformer",
     dict(dim=12, depth=1, stereo=False, num_stems=4, time_transformer_depth=2, freq_transformer_depth=1,
          freqs_per_bands=(3, 6, 8, 16), dim_head=4, heads=3, stft_n_fft=64, stft_hop_length=16,
          stft_win_length=50, stft_normalized=True, mask_estimator_depth=3),
     16 * 30, ["vocals", "bass", "drums", "other"]),
    ("mel_stereo_1stem", "MelBandRoformer",
     dict(dim=16, depth=2, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
          num_bands=12, dim_head=8, heads=2, stft_n_fft=256, stft_hop_length=64, stft_win_length=256,
          mask_estimator_depth=1, sample_rate=44100),
     64 * 20, ["vocals"]),
    ("mel_stereo_4stem", "MelBandRoformer",
     dict(dim=12, depth=1, stereo=True, num_stems=4, time_transformer_depth=1, freq_transformer_depth=2,
          num_bands=8, dim_head=4, heads=2, stft_n_fft=128, stft_hop_length=32, stft_win_length=128,
          mask_estimator_depth=1, sample_rate=22050),
     32 * 20, ["vocals", "bass", "drums", "other"]),
]


def build(cls_name, kwargs, seed):
    import bs_roformer

    torch.manual_seed(seed)
    cls = getattr(bs_roformer, cls_name)
    return randomize(cls(flash_attn=False, attn_dropout=0.0, ff_dropout=0.0, **kwargs).eval())


def randomize(m):
    """Linear layers keep their default init; every RMSNorm gamma 1 + 0.2 N(0,1), every bias 0.1 N(0,1)."""
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("gamma"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return m


def chunk_runner(m):
    """[ch][chunk] float64 -> the model's output [stems][ch][chunk] (batch of one chunk)."""
    def run(part):
        with torch.no_grad():
            y = m(torch.from_numpy(part)[None])[0]
        return (y[None] if y.ndim == 2 else y).numpy()
    return run


def run_stages(m, cls_name, audio, kwargs):
    """Runs m (float64) on audio [S][n]; returns split, layers, mask, out."""
    rec = {"layers": [], "mask": []}
    S = 2 if kwargs["stereo"] else 1
    hooks = [m.band_split.register_forward_hook(lambda mod, i, o: rec.__setitem__("split", o.detach()))]

    for layer in m.layers:
        for ax, tr in enumerate(layer):
            def hook(mod, i, o, ax=ax):
                rec["layers"].append((ax, o.detach()))
            hooks.append(tr.register_forward_hook(hook))
    for est in m.mask_estimators:
        hooks.append(est.register_forward_hook(lambda mod, i, o: rec["mask"].append(o.detach())))
    x = torch.from_numpy(audio.astype(np.float64))[None]
    if S == 1:
        x = x[:, 0]
    with torch.no_grad():
        out = m(x)
    for h in hooks:
        h.remove()
    split = rec["split"][0]  # [T][K][dim]
    T, K, dim = split.shape
    layers = []
    for ax, o in rec["layers"]:
        if ax == 0:  # time transformer: [(b k), t, d]
            layers.append(o.reshape(K, T, dim).permute(1, 0, 2))
        else:        # frequency transformer: [(b t), k, d]
            layers.append(o.reshape(T, K, dim))
    mask = torch.stack([mk[0] for mk in rec["mask"]])  # [N][T][2*n_feat]
    out = out[0]
    if out.ndim == 2:  # one stem: [S][n]
        out = out[None]
    return split.numpy(), [l_.numpy() for l_ in layers], mask.numpy(), out.numpy()


def write_slg(path, params, arrays):
    import bs_roformer  # noqa: F401
    from importlib.metadata import version

    stemline_st.write_slg(path, "made by tools/gen_golden_roformer.py with bs-roformer %s, torch %s, numpy %s"
                          % (version("bs-roformer"), torch.__version__, np.__version__), params, arrays)


def make_case(outdir, name, cls_name, kwargs, n, stems, seed):
    m = build(cls_name, kwargs, seed)
    arch = "bs_roformer" if cls_name == "BSRoformer" else "mel_band_roformer"
    cfg = dict(kwargs)
    meta = metadata_from_kwargs(arch, cfg, stems, chunk_size=n, num_overlap=2)
    tensors = [(k, stemline_st.to_numpy_f32(v)) for k, v in m.state_dict().items()]
    stemline_st.save(os.path.join(outdir, name + ".safetensors"), tensors, meta)
    S = 2 if kwargs["stereo"] else 1
    rng = np.random.default_rng(seed + 100)
    t = np.arange(n) / 8000.0
    audio = np.stack([0.5 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.3 * rng.standard_normal(n)
                      for c in range(S)]).astype(np.float32)
    split, layers, mask, out = run_stages(m.double(), cls_name, audio, kwargs)
    arrays = [("input", audio), ("split", split)]
    arrays += [("layer%d" % i, a) for i, a in enumerate(layers)]
    arrays += [("mask", mask), ("out", out)]
    params = {"n": n, "frames": split.shape[0], "bands": split.shape[1], "dim": split.shape[2],
              "n_feat": mask.shape[2] // 2, "stems": mask.shape[0], "channels": S, "out_len": out.shape[-1]}
    write_slg(os.path.join(outdir, name + ".slg"), params, arrays)
    print("%s: %s, T=%d K=%d, out %s, max|out| %.3g" % (name, cls_name, split.shape[0], split.shape[1],
                                                        out.shape, np.abs(out).max()))


def mel_bands(outdir):
    """The published Mel-Band RoFormers' band layout (librosa mel filters, n_fft 2048, 60 bands,
    44.1 kHz, stereo) as the package computes it: freq_indices, the bins of every band."""
    import bs_roformer

    m = bs_roformer.MelBandRoformer(dim=8, depth=1, stereo=True, num_bands=60, stft_n_fft=2048,
                                    sample_rate=44100, flash_attn=False)
    idx = m.freq_indices.numpy().astype(np.float32)  # < 2^24: exact
    per_band = m.num_freqs_per_band.numpy().astype(np.float32)
    write_slg(os.path.join(outdir, "mel_bands.slg"), {"sample_rate": 44100, "n_fft": 2048, "num_bands": 60,
                                                      "stereo": 1}, [("freq_indices", idx), ("per_band", per_band)])
    print("mel_bands: %d features in 60 bands" % idx.size)


def load_safetensors(path):
    """(tensors {name: float32 array}, metadata) of a safetensors file."""
    import json
    import struct

    raw = open(path, "rb").read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + hlen])
    meta = head.pop("__metadata__", {})
    data = raw[8 + hlen:]
    out = {}
    for name, d in head.items():
        assert d["dtype"] == "F32", (name, d["dtype"])
        a, b = d["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(d["shape"])
    return out, meta


def window(chunk, fade, first, last):
    """The demix fade window of one chunk (float32 linspace values, as torch makes them)."""
    w = np.ones(chunk, dtype=np.float32)
    if fade > 0:
        ramp = torch.linspace(0, 1, fade).numpy()
        w[-fade:] = torch.linspace(1, 0, fade).numpy()
        w[:fade] = ramp
        if first:
            w[:fade] = 1
        elif last:
            w[-fade:] = 1
    return w.astype(np.float64)


def demix_reference(run_chunk, mix, chunk, num_overlap):
    """Whole-track chunked inference as ZFTurbo's demix (generic mode, batch of one chunk).
    run_chunk maps [ch][chunk] -> [stems][ch][chunk] (float64); mix [ch][n]."""
    fade = chunk // 10
    step = chunk // num_overlap
    border = chunk - step
    n = mix.shape[-1]
    padded = n > 2 * border and border > 0
    x = np.pad(mix, ((0, 0), (border, border)), mode="reflect") if padded else mix
    total = x.shape[-1]
    result = counter = None
    i = 0
    while i < total:
        part = x[:, i:i + chunk]
        cl = part.shape[-1]
        if cl < chunk:
            part = np.pad(part, ((0, 0), (0, chunk - cl)), mode="reflect" if cl > chunk // 2 else "constant")
        y = run_chunk(part)
        if result is None:
            result = np.zeros((y.shape[0],) + x.shape)
            counter = np.zeros(x.shape)
        w = window(chunk, fade, first=i == 0, last=i + step >= total)
        result[..., i:i + cl] += y[..., :cl] * w[:cl]
        counter[..., i:i + cl] += w[:cl]
        i += step
    with np.errstate(invalid="ignore", divide="ignore"):
        out = result / counter
    out = np.nan_to_num(out, nan=0.0)
    return out[..., border:total - border] if padded else out


def write_wav16(path, q):
    """q: int16 [ch][n] -> a 16-bit PCM WAV at 44.1 kHz."""
    import wave

    with wave.open(path, "wb") as f:
        f.setnchannels(q.shape[0])
        f.setsampwidth(2)
        f.setframerate(44100)
        f.writeframes(np.ascontiguousarray(q.T).astype("<i2").tobytes())


def demix_cases(outdir):
    import bs_roformer

    ddir = os.path.join(outdir, "demix")
    refs = {}
    # set, weights case, class, kwargs index, chunk, num_overlap, {track: samples}
    sets = [("bs_o2", "bs_stereo_1stem", 768, 2, {"long": 768 * 4 + 301, "mid": 900, "short": 500, "tiny": 200}),
            ("bs_o4", "bs_stereo_1stem", 640, 4, {"long": 640 * 5 + 77}),
            ("mel", "mel_stereo_1stem", 1280, 2, {"long": 1280 * 3 + 99})]
    for set_name, case, chunk, no, tracks in sets:
        _, cls_name, kw, _, _ = next(c for c in CASES if c[0] == case)
        sd, meta = load_safetensors(os.path.join(outdir, case + ".safetensors"))
        m = getattr(bs_roformer, cls_name)(flash_attn=False, attn_dropout=0.0, ff_dropout=0.0, **kw).eval()
        m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in sd.items()})
        run_chunk = chunk_runner(m.double())

        os.makedirs(os.path.join(ddir, set_name), exist_ok=True)
        for t, (name, n) in enumerate(sorted(tracks.items())):
            rng = np.random.default_rng(1000 + 17 * t + len(set_name))
            tt = np.arange(n) / 44100.0
            sig = np.stack([0.4 * np.sin(2 * np.pi * (330 + 70 * c + 40 * t) * tt) + 0.2 * rng.standard_normal(n)
                            for c in range(2)])
            q = np.clip(np.round(sig * 32767), -32768, 32767).astype(np.int16)
            write_wav16(os.path.join(ddir, set_name, name + ".wav"), q)
            mix = q.astype(np.float64) / 32768.0
            out = demix_reference(run_chunk, mix, chunk, no)
            refs["%s/%s" % (set_name, name)] = out.astype(np.float32)
            print("demix %s/%s: %d samples, chunk %d, num_overlap %d, max|out| %.3g"
                  % (set_name, name, n, chunk, no, np.abs(out).max()))
    np.savez_compressed(os.path.join(ddir, "ref.npz"), **refs)


ZF_BS = dict(dim=16, depth=2, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
             linear_transformer_depth=0, freqs_per_bands=(2, 2, 4, 4, 8, 13, 32), dim_head=8, heads=2,
             attn_dropout=0.1, ff_dropout=0.1, flash_attn=True, dim_freqs_in=65, stft_n_fft=128,
             stft_hop_length=32, stft_win_length=128, stft_normalized=False, mask_estimator_depth=2,
             multi_stft_resolution_loss_weight=1.0, multi_stft_resolutions_window_sizes=(4096, 2048),
             multi_stft_hop_size=147, multi_stft_normalized=False, mlp_expansion_factor=2,
             use_torch_checkpoint=False, skip_connection=False, sage_attention=False)
ZF_MEL = dict(dim=12, depth=1, stereo=True, num_stems=4, time_transformer_depth=1, freq_transformer_depth=1,
              num_bands=8, dim_head=4, heads=3, attn_dropout=0.0, ff_dropout=0.0, flash_attn=True,
              dim_freqs_in=129, sample_rate=44100, stft_n_fft=256, stft_hop_length=64, stft_win_length=256,
              stft_normalized=False, mask_estimator_depth=2, multi_stft_resolution_loss_weight=1.0,
              multi_stft_resolutions_window_sizes=(4096, 2048), multi_stft_hop_size=147,
              multi_stft_normalized=False, mlp_expansion_factor=3, match_input_audio_length=False)


def zfturbo_checkpoints(outdir):
    """Checkpoints as ZFTurbo's training writes them, with configs as his repository and
    python-audio-separator distribute them (for cli.roformer_convert; made at test time):
    a BS-RoFormer vocals model (DataParallel "module." names under "state_dict",
    mlp_expansion_factor 2, freqs_per_bands as a !!python/tuple, inference.num_overlap 4) and a
    four-stem Mel-Band RoFormer (a bare state dict, mask_estimator_depth 2 = three linear layers,
    mlp_expansion_factor 3), each with a track (16-bit WAV) and its whole-track demix reference
    (ref_NAME.npy [stems][ch][n], float64 model). The package's (0.3.10) classes do not take
    ZFTurbo's extra options: the training-only ones are left out, and the mask estimators are
    rebuilt with the package's own MaskEstimator at the config's mlp_expansion_factor, which is
    what ZFTurbo's classes do with it."""
    import inspect

    import bs_roformer
    import yaml

    for name, cls_name, kw, seed, chunk, no, n, training in (
            ("bs", "BSRoformer", ZF_BS, 21, 1024, 4, 1024 * 3 + 55,
             {"instruments": ["vocals", "other"], "target_instrument": "vocals", "use_amp": True}),
            ("mel", "MelBandRoformer", ZF_MEL, 22, 1280, 2, 1280 * 2 + 301,
             {"instruments": ["vocals", "bass", "drums", "other"], "target_instrument": None})):
        cls = getattr(bs_roformer, cls_name)
        accepted = set(inspect.signature(cls.__init__).parameters)
        ckw = {k: v for k, v in kw.items() if k in accepted and k not in ("flash_attn", "attn_dropout", "ff_dropout")}
        torch.manual_seed(seed)
        m = cls(flash_attn=False, attn_dropout=0.0, ff_dropout=0.0, **ckw).eval()
        if "mlp_expansion_factor" not in ckw:  # 0.3.10's classes do not pass it on: ZFTurbo's do
            est_cls = type(m.mask_estimators[0])
            m.mask_estimators = torch.nn.ModuleList([
                est_cls(dim=kw["dim"], dim_inputs=m.band_split.dim_inputs, depth=kw["mask_estimator_depth"],
                        mlp_expansion_factor=kw["mlp_expansion_factor"]) for _ in range(kw["num_stems"])])
        sd = randomize(m).state_dict()
        if name == "bs":
            torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 317}, os.path.join(outdir, "bs.ckpt"))
        else:
            torch.save(sd, os.path.join(outdir, "mel.ckpt"))
        cfg = {"audio": {"chunk_size": chunk, "dim_f": 1024, "dim_t": 801, "hop_length": kw["stft_hop_length"],
                         "n_fft": kw["stft_n_fft"], "num_channels": 2, "sample_rate": 44100, "min_mean_abs": 0.0},
               "model": dict(kw), "training": dict(training, batch_size=1, lr=1e-5, num_epochs=1000),
               "inference": {"batch_size": 1, "dim_t": 801, "num_overlap": no}}
        with open(os.path.join(outdir, name + ".yaml"), "w") as f:
            yaml.dump(cfg, f)  # tuples are written with ZFTurbo's !!python/tuple tags
        rng = np.random.default_rng(seed)
        q = np.clip(np.round(rng.standard_normal((2, n)) * 0.2 * 32767), -32768, 32767).astype(np.int16)
        write_wav16(os.path.join(outdir, name + ".wav"), q)
        np.save(os.path.join(outdir, "ref_%s.npy" % name),
                demix_reference(chunk_runner(m.double()), q / 32768.0, chunk, no))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", metavar="DIR", help="write a full-size BS-RoFormer check (not committed) to DIR")
    ap.add_argument("--demix", action="store_true", help="write only the whole-track references (demix/)")
    ap.add_argument("--zfturbo", metavar="DIR", help="write ZFTurbo-format checkpoints, configs and references "
                    "to DIR (cli.roformer_convert)")
    args = ap.parse_args()
    if args.zfturbo:
        zfturbo_checkpoints(args.zfturbo)
        return
    if args.demix:
        demix_cases(OUT)
        return
    if args.full:
        os.makedirs(args.full, exist_ok=True)
        # ZFTurbo's config_musdb18_bs_roformer.yaml dimensions (dim 384 at depth 6 there is the
        # common published size; freqs_per_bands the package default), 1 s of audio
        from bs_roformer.bs_roformer import DEFAULT_FREQS_PER_BANDS
        kw = dict(dim=384, depth=6, stereo=True, num_stems=4, time_transformer_depth=1, freq_transformer_depth=1,
                  freqs_per_bands=DEFAULT_FREQS_PER_BANDS, dim_head=64, heads=8, stft_n_fft=2048,
                  stft_hop_length=441, stft_win_length=2048, mask_estimator_depth=2)
        make_case(args.full, "bs_full", "BSRoformer", kw, 441 * 100, ["vocals", "bass", "drums", "other"], 9)
        return
    os.makedirs(OUT, exist_ok=True)
    for i, (name, cls_name, kw, n, stems) in enumerate(CASES):
        make_case(OUT, name, cls_name, kw, n, stems, i)
    mel_bands(OUT)
    demix_cases(OUT)


if __name__ == "__main__":
    main()
