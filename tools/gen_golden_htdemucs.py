#!/usr/bin/env python3
"""Golden vectors for HT-Demucs v4 (models/htdemucs.c), from the official
`demucs` package (PyPI, 4.x: demucs.htdemucs.HTDemucs, demucs.apply.apply_model)
with random weights at reduced sizes.

    PY=/path/to/venv/bin/python   # torch + demucs
    $PY tools/gen_golden_htdemucs.py              # writes tests/golden/htdemucs/
    $PY tools/gen_golden_htdemucs.py --full DIR   # full-size check (released dimensions), not committed
    $PY tools/gen_golden_htdemucs.py --full DIR --shifts 2 --seconds 12   # the same with shifts

Nothing of the model code is changed. Each case builds HTDemucs with the
given arguments (torch seed per case), then randomises what the default
initialisation leaves near zero or one so every path counts: GroupNorm and
LayerNorm weights 1 + 0.2 N(0,1), their biases and every conv / linear bias
0.1 N(0,1), LayerScale scales 0.5 + 0.2 N(0,1). The weights are saved in
float32 through tools/convert_htdemucs.py's metadata (one model, tensors
m0.NAME), and the model then runs in float64 (model.double(): the float32
weights converted exactly), so the reference is exact to float64.

Files (tests/golden/htdemucs/, small):
  CASE.safetensors  weights + metadata
  CASE.slg          (tests/unit/sl_golden.h format) params L (segment samples),
                    F, T (spectrogram bins and frames), n (track samples);
                    arrays input [C][L] (float32, one segment, the model's input),
                    mag [2C][F][T] (complex-as-channels spectrogram, _magnitude(_spec)),
                    enc{i} [Ci][Fi][T] (frequency encoder i, before the
                    frequency embedding), tenc{i} [Ci][Li] (time encoder i),
                    xf [C][F'][T], xt [C][L'] (cross transformer outputs),
                    dec{i} [Ci][Fi][T] and tdec{i} [Ci][Li] (decoder outputs,
                    i from the innermost), out [S][C][L] (the model's output),
                    track [C][n] (float32, a whole track) and apply [S][C][n]:
                    what the `demucs` command computes before writing files
                    (the track normalised by the mean and std of its mono sum,
                    apply_model(model, mix, shifts=0, split=True, overlap=0.25),
                    the normalisation undone).

With --shifts N (full-size check only), apply_model runs with shifts=N and
its random offsets (random.randint(0, max_shift) per round) are replaced by
stemline's documented deterministic ones (pipeline/demucs_split.h,
sl_dmx_default_offsets: o_r = floor((2r + 1) max_shift / (2N))); the .slg
then has the parameter `shifts`.
"""

import argparse
import fractions
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stemline_st  # noqa: E402
from convert_htdemucs import metadata_from_kwargs  # noqa: E402

OUT = os.path.join(HERE, "..", "tests", "golden", "htdemucs")
SOURCES4 = ["drums", "bass", "other", "vocals"]

# name, kwargs, track samples. Reduced: nfft 512 (hop 128), depth 3 (256 -> 64 -> 16 -> 4 bins:
# no branch merge, as at the released nfft 4096 / depth 4), few channels, a short segment.
CASES = [
    ("small", dict(sources=SOURCES4, audio_channels=2, channels=8, growth=2, nfft=512, depth=3,
                   norm_starts=2, norm_groups=4, dconv_comp=4, t_layers=3, t_heads=2, t_hidden_scale=2.0,
                   samplerate=8000, segment=fractions.Fraction(1, 8)), 2900),
    ("bottom", dict(sources=SOURCES4[:2] + ["guitar"], audio_channels=2, channels=4, growth=2, nfft=512,
                    depth=3, dconv_mode=3, dconv_comp=4, bottom_channels=24, t_layers=2, t_heads=3, t_cross_first=True,
                    t_weight_pos_embed=0.5, samplerate=8000, segment=fractions.Fraction(3, 32)), 2100),
]


def build(kwargs, seed):
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    m = HTDemucs(**kwargs).eval()
    with torch.no_grad():
        for name, mod in m.named_modules():
            cls = type(mod).__name__
            if cls in ("GroupNorm", "LayerNorm", "MyGroupNorm"):
                mod.weight.copy_(1.0 + 0.2 * torch.randn_like(mod.weight))
                mod.bias.copy_(0.1 * torch.randn_like(mod.bias))
            elif cls == "LayerScale":
                mod.scale.copy_(0.5 + 0.2 * torch.randn_like(mod.scale))
            elif hasattr(mod, "bias") and isinstance(getattr(mod, "bias"), torch.Tensor) and cls != "MultiheadAttention":
                mod.bias.copy_(0.1 * torch.randn_like(mod.bias))
            if cls == "MultiheadAttention":
                mod.in_proj_bias.copy_(0.1 * torch.randn_like(mod.in_proj_bias))
                mod.out_proj.bias.copy_(0.1 * torch.randn_like(mod.out_proj.bias))
    # round every parameter to float32 (what the file holds)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.float())
    return m


def run_stages(m, mix):
    """Runs m (float64) on mix [C][L]; returns a list of (name, array)."""
    rec = {"enc": [], "tenc": [], "dec": [], "tdec": []}
    hooks = []
    for key, mods in (("enc", m.encoder), ("tenc", m.tencoder), ("dec", m.decoder), ("tdec", m.tdecoder)):
        for mod in mods:
            def hook(_m, _i, o, key=key):
                rec[key].append((o[0] if isinstance(o, tuple) else o).detach()[0])
            hooks.append(mod.register_forward_hook(hook))
    hooks.append(m.crosstransformer.register_forward_hook(
        lambda _m, _i, o: rec.__setitem__("xf", (o[0].detach()[0], o[1].detach()[0]))))
    x = torch.from_numpy(mix.astype(np.float64))[None]
    with torch.no_grad():
        out = m(x)
        mag = m._magnitude(m._spec(x))[0]
    for h in hooks:
        h.remove()
    arrays = [("input", mix), ("mag", mag.numpy())]
    arrays += [("enc%d" % i, a.numpy()) for i, a in enumerate(rec["enc"])]
    arrays += [("tenc%d" % i, a.numpy()) for i, a in enumerate(rec["tenc"])]
    arrays += [("xf", rec["xf"][0].numpy()), ("xt", rec["xf"][1].numpy())]
    arrays += [("dec%d" % i, a.numpy()) for i, a in enumerate(rec["dec"])]
    arrays += [("tdec%d" % i, a.numpy()) for i, a in enumerate(rec["tdec"])]
    arrays += [("out", out[0].numpy())]
    return arrays


def default_offsets(shifts, max_shift):
    """stemline's offsets of `shifts` rounds (pipeline/demucs_split.h, sl_dmx_default_offsets)."""
    return [(2 * r + 1) * max_shift // (2 * shifts) for r in range(shifts)]


class FixedOffsets:
    """Stands in for the `random` module inside demucs.apply: randint gives the fixed offsets in turn."""

    def __init__(self, offsets):
        self.offsets = list(offsets)
        self.used = 0

    def randint(self, lo, hi):
        o = self.offsets[self.used]
        assert lo <= o <= hi, (lo, o, hi)
        self.used += 1
        return o


def demucs_command(m, track, overlap=0.25, shifts=0):
    """What `demucs` computes for a track [C][n] before writing files (separate.py); shifts > 0 with
    stemline's deterministic offsets in place of apply_model's random ones."""
    import demucs.apply
    from demucs.apply import apply_model

    wav = torch.from_numpy(track.astype(np.float64))
    ref = wav.mean(0)
    wav = (wav - ref.mean()) / ref.std()
    saved = demucs.apply.random
    fixed = FixedOffsets(default_offsets(shifts, int(0.5 * m.samplerate)) if shifts else [])
    demucs.apply.random = fixed
    try:
        with torch.no_grad():
            sources = apply_model(m, wav[None], shifts=shifts, split=True, overlap=overlap)[0]
    finally:
        demucs.apply.random = saved
    assert fixed.used == shifts, (fixed.used, shifts)
    sources = sources * ref.std() + ref.mean()
    return sources.numpy()


def write_slg(path, params, arrays):
    from importlib.metadata import version

    stemline_st.write_slg(path, "made by tools/gen_golden_htdemucs.py with demucs %s, torch %s, numpy %s"
                          % (version("demucs"), torch.__version__, np.__version__), params, arrays)


def audio(rng, channels, n, sr):
    t = np.arange(n) / float(sr)
    return np.stack([0.4 * np.sin(2 * np.pi * (180 + 90 * c) * t) * (1 + 0.5 * np.sin(2 * np.pi * 1.3 * t))
                     + 0.2 * rng.standard_normal(n) + 0.05 * c for c in range(channels)]).astype(np.float32)


def make_case(outdir, name, kwargs, n, seed, stages=True, shifts=0):
    m = build(kwargs, seed)
    meta = metadata_from_kwargs({k: v for k, v in kwargs.items() if k != "sources"}, kwargs["sources"])
    meta["models"] = "1"
    meta["bag_weights"] = ",".join("1.0" for _ in kwargs["sources"])
    meta["source"] = "random weights, tools/gen_golden_htdemucs.py case %s" % name
    tensors = [("m0." + k, stemline_st.to_numpy_f32(v)) for k, v in m.state_dict().items()]
    stemline_st.save(os.path.join(outdir, name + ".safetensors"), tensors, meta)
    m = m.double()
    rng = np.random.default_rng(seed + 100)
    C = kwargs.get("audio_channels", 2)
    L = int(m.segment * m.samplerate)
    arrays = run_stages(m, audio(rng, C, L, m.samplerate)) if stages else []
    track = audio(rng, C, n, m.samplerate)
    applied = demucs_command(m, track, shifts=shifts)
    arrays += [("track", track), ("apply", applied)]
    params = {"L": L, "n": n}
    if shifts:
        params["shifts"] = shifts
    if stages:
        params["F"] = arrays[1][1].shape[1]
        params["T"] = arrays[1][1].shape[2]
    write_slg(os.path.join(outdir, name + ".slg"), params, arrays)
    print("%s: L=%d n=%d, %d arrays, max|apply| %.3g" % (name, L, n, len(arrays), np.abs(applied).max()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", metavar="DIR", help="write a full-size check (released htdemucs dimensions, "
                    "random weights, 30 s track, apply only) to DIR")
    ap.add_argument("--shifts", type=int, default=0, help="with --full: apply_model's shifts, at stemline's "
                    "deterministic offsets")
    ap.add_argument("--seconds", type=float, default=30.0, help="with --full: the track's length")
    args = ap.parse_args()
    if args.shifts and not args.full:
        ap.error("--shifts goes with --full")
    if args.full:
        os.makedirs(args.full, exist_ok=True)
        torch.set_num_threads(max(1, os.cpu_count() or 1))
        make_case(args.full, "htdemucs_full", dict(sources=SOURCES4, segment=fractions.Fraction(39, 5)),
                  int(44100 * args.seconds), 7, stages=False, shifts=args.shifts)
        return
    os.makedirs(OUT, exist_ok=True)
    for i, (name, kw, n) in enumerate(CASES):
        make_case(OUT, name, kw, n, i)


if __name__ == "__main__":
    main()
