#!/usr/bin/env python3
"""PyTorch beside stemline on the same GPU, for bench/gpu_check.sh: the
reference models at full size with random weights on the catalog's audio.

    python3 bench/gpu_torch_models.py CATALOG_DIR [--py DIR] [--precisions fp32,bf16]
                                      [--models umx,cnn14,bs_roformer,mel_band_roformer,htdemucs,clap,clap_text]
                                      [--batch 8] [--roformer-batch 4] [--device cuda]
                                      [--models-dir BUNDLE/models]

umx: the openunmix package's Separator (umxhq geometry, tools/gen_golden_umx.py's
build_targets at full size; niter 1, no softmask, no residual, Wiener windows of
300 frames, as stemline's umx), one call per track, whole track. cnn14: the
panns_inference Cnn14 (tools/gen_golden_cnn14.py's build at full width) on the
tracks cut into 10 s windows at 32 kHz mono, --batch windows per call.
bs_roformer: the bs-roformer 0.3.10 BSRoformer at bench/bench_roformer.py's
4-stem size (dim 384, depth 8; flash_attn, the fused attention
of torch's scaled_dot_product_attention), whole tracks through ZFTurbo's demix (chunks of
chunk_size 485100 every chunk_size / 2 samples, reflect padding at both ends,
the fade-in/fade-out window, overlap-add on the GPU) with --roformer-batch chunks
per forward (ZFTurbo's inference.batch_size), one track at a time; TFLOP/s from
the FLOPs per chunk of --models-dir's bs_roformer.json (the count stemline's
figure uses), else of torch.utils.flop_counter over one chunk here (both are
in the row). mel_band_roformer: the same for the MelBandRoformer at
bench/bench_roformer.py's size (dim 384, depth 6, 60 bands, 1 stem; chunk_size
352800). htdemucs: demucs 4.x HTDemucs at the released
dimensions through demucs.apply.apply_model(shifts=0, split=True, overlap=0.25)
on each track normalised by its mono mean and standard deviation, as the
`demucs` command does. clap: laion_clap's HTSAT-base audio tower
(tools/gen_golden_clap.py's build at full size) on the tracks cut into 10 s
windows at 48 kHz mono (the package's own get_audio_features per window,
untimed), CLAP.get_audio_embedding on --batch windows per call. clap_text:
laion_clap's RoBERTa-base text tower (tools/gen_golden_clap_text.py's
build_model, its test tokenizer) on bench/bench_clap_text.py's 16 queries in one
batch, tokenizer included: queries per second.

bf16 / fp16: under torch.autocast(dtype=torch.bfloat16 / float16; fp16 is what
ZFTurbo's inference uses with use_amp). Timed: the model calls on
audio already on the GPU, after one warm-up call, synchronised (no decoding,
writing or host copies, which stemline's figures include). Peak device memory:
torch.cuda.max_memory_allocated over the timed calls. One JSON line per model and
precision on stdout, as bench/gpu_models.py jobline writes them (backend
"torch-cuda"); a model that cannot be built or run gives a line with "error".

The packages come from --py (bench/gpu_bundle.sh copies openunmix,
panns_inference, torchlibrosa, bs_roformer, rotary_embedding_torch, demucs,
julius and laion_clap's model code there). Modules they import for what these
models do not use get stand-ins where missing: librosa (torchlibrosa's window
and mel filterbank, the Mel-Band RoFormer's bands: a Hann window, and triangular
filters on Slaney's mel scale of unit area as librosa.filters.mel's defaults
make them), beartype (type-checking decorators), dora and omegaconf (demucs's
checkpoint loading).
"""
import argparse
import glob
import importlib.machinery
import json
import os
import sys
import time
import types
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))
sys.path.insert(0, HERE)
ROFORMER_CHUNKS = {"bs_roformer": 485100, "mel_band_roformer": 352800}  # bench/bench_roformer.py's CHUNK
ROFORMER_OVERLAP = 2


def librosa_standin():
    try:
        import librosa  # noqa: F401
        return "librosa " + librosa.__version__
    except ImportError:
        pass
    lib = types.ModuleType("librosa")
    lib.filters = types.ModuleType("librosa.filters")
    lib.util = types.ModuleType("librosa.util")

    def get_window(window, n, fftbins=True):
        return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n if fftbins else n - 1))

    def pad_center(data, size, axis=-1, **kw):
        n = data.shape[axis]
        lpad = (size - n) // 2
        widths = [(0, 0)] * data.ndim
        widths[axis] = (lpad, size - n - lpad)
        return np.pad(data, widths)

    def hz_to_mel(f):  # Slaney's scale: linear to 1 kHz, logarithmic above
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27), lin)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27) * (m - 15.0)), m * (200.0 / 3))

    def mel(sr=None, n_fft=None, n_mels=128, fmin=0.0, fmax=None, dtype=np.float32, **kw):
        """Triangular filters on Slaney's mel scale, each of unit area (norm 'slaney', htk False)."""
        fmax = sr / 2.0 if fmax is None else fmax
        freqs = np.linspace(0, sr / 2.0, 1 + n_fft // 2)
        pts = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
        w = np.zeros((n_mels, len(freqs)))
        for i in range(n_mels):
            up = (freqs - pts[i]) / (pts[i + 1] - pts[i])
            down = (pts[i + 2] - freqs) / (pts[i + 2] - pts[i + 1])
            w[i] = np.maximum(0, np.minimum(up, down)) * 2.0 / (pts[i + 2] - pts[i])
        return w.astype(dtype)

    lib.filters.get_window, lib.filters.mel, lib.util.pad_center = get_window, mel, pad_center
    lib.__version__ = "stand-in"
    for m in (lib, lib.filters, lib.util):  # transformers asks importlib.util.find_spec("librosa")
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
    sys.modules.update({"librosa": lib, "librosa.filters": lib.filters, "librosa.util": lib.util})
    return "librosa stand-in (Hann window, Slaney mel filterbank)"


def standins():
    """Stand-ins for modules imported by the reference packages for what is not used here."""
    import importlib.util

    def missing(name):
        return name not in sys.modules and importlib.util.find_spec(name) is None

    def spec(*mods):  # as imported modules have (transformers asks find_spec of some)
        for m in mods:
            m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
    if missing("beartype"):
        import typing
        bt = types.ModuleType("beartype")
        bt.beartype = lambda f=None, **kw: f if f is not None else (lambda g: g)
        bt.typing = typing
        spec(bt)
        sys.modules.update({"beartype": bt, "beartype.typing": typing})
    if missing("dora"):
        dora, log = types.ModuleType("dora"), types.ModuleType("dora.log")
        log.fatal = lambda *a: sys.exit(" ".join(map(str, a)))
        dora.log = log
        spec(dora, log)
        sys.modules.update({"dora": dora, "dora.log": log})
    if missing("omegaconf"):
        oc = types.ModuleType("omegaconf")
        oc.OmegaConf = type("OmegaConf", (), {})
        spec(oc)
        sys.modules["omegaconf"] = oc


def read_wav(path):
    with wave.open(path, "rb") as w:
        ch, sr, n = w.getnchannels(), w.getframerate(), w.getnframes()
        x = np.frombuffer(w.readframes(n), dtype="<i2").astype(np.float32) / 32768
    return x.reshape(-1, ch).T.copy(), sr


def resample(x, sr, to):
    """Linear interpolation to rate `to` (the cost of the model is what is measured)."""
    if sr == to:
        return x
    n = int(x.shape[-1] * to / sr)
    return np.interp(np.arange(n) * (sr / to), np.arange(x.shape[-1]), x).astype(np.float32)


def windows(tracks, sr, secs):
    """The tracks as mono windows of secs seconds at sr (zero-padded last window)."""
    out = []
    for x, r in tracks:
        y = resample(x.mean(0), r, sr)
        w = int(secs * sr)
        for s in range(0, len(y), w):
            z = np.zeros(w, np.float32)
            z[:len(y[s:s + w])] = y[s:s + w]
            out.append(z)
    return out


def timed(torch, dev, fn, calls):
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda d: None)
    fn(calls[0])  # warm-up
    sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for c in calls:
        fn(c)
    sync(dev)
    return time.perf_counter() - t0


def roformer_window(torch, chunk, fade, dev):
    """ZFTurbo's demix window: linear fade-in and fade-out of `fade` samples."""
    w = torch.ones(chunk, device=dev)
    w[:fade] = torch.linspace(0, 1, fade, device=dev)
    w[-fade:] = torch.linspace(1, 0, fade, device=dev)
    return w


def roformer_demix(torch, model, mix, chunk, num_overlap, batch):
    """Whole-track chunked inference as ZFTurbo's demix (generic mode) on mix [ch][n] on
    the GPU: batch chunks per forward, the first and last chunks without their outer
    fade. Returns the stems [stems][ch][n] and the number of chunks run."""
    import torch.nn.functional as F
    dev = mix.device
    fade, step = chunk // 10, chunk // num_overlap
    border = chunk - step
    n = mix.shape[-1]
    padded = n > 2 * border and border > 0
    x = F.pad(mix[None], (border, border), mode="reflect")[0] if padded else mix
    total = x.shape[-1]
    win = roformer_window(torch, chunk, fade, dev)
    result = counter = None
    starts = list(range(0, total, step))
    for b in range(0, len(starts), batch):
        parts, lens = [], []
        for i in starts[b:b + batch]:
            part = x[:, i:i + chunk]
            cl = part.shape[-1]
            if cl < chunk:
                mode = "reflect" if cl > chunk // 2 else "constant"
                part = F.pad(part[None], (0, chunk - cl), mode=mode)[0]
            parts.append(part)
            lens.append(cl)
        y = model(torch.stack(parts)).float()
        if y.dim() == 3:
            y = y[:, None]
        if result is None:
            result = torch.zeros((y.shape[1],) + tuple(x.shape), device=dev)
            counter = torch.zeros(tuple(x.shape), device=dev)
        for k, (i, cl) in enumerate(zip(starts[b:b + batch], lens)):
            w = win.clone()
            if i == 0:
                w[:fade] = 1
            if i + step >= total:
                w[-fade:] = 1
            result[..., i:i + cl] += y[k, ..., :cl] * w[:cl]
            counter[..., i:i + cl] += w[:cl]
    out = torch.nan_to_num(result / counter)
    return (out[..., border:total - border] if padded else out), len(starts)


def build(model, a, torch, dev, tracks):
    """(network, calls, fn, extra row fields) for one reference model; fn(call) runs one call."""
    extra = {}
    if model == "umx":
        import gen_golden_umx as U
        targets = U.build_targets(seed=0, hidden=512, nb_bins=2049, max_bin=1487)
        from openunmix import model as umx_model
        net = umx_model.Separator(targets, niter=1, softmask=False, residual=False, sample_rate=44100,
                                  n_fft=4096, n_hop=1024, nb_channels=2, wiener_win_len=300,
                                  filterbank="torch")
        net.freeze()
        calls = [torch.from_numpy(x)[None].to(dev) for x, _ in tracks]
        return net.to(dev).eval(), calls, None, extra
    if model == "cnn14":
        extra["librosa"] = librosa_standin()
        import gen_golden_cnn14 as G
        net = G.build(G.import_panns_models(), G.FULL_CHANNELS, 2048)
        wins = torch.from_numpy(np.stack(windows(tracks, G.SR, 10))).to(dev)
        return net.to(dev).eval(), [wins[i:i + a.batch] for i in range(0, len(wins), a.batch)], None, extra
    if model in ROFORMER_CHUNKS:
        librosa_standin()  # the Mel-Band RoFormer's bands come from librosa.filters.mel
        import bench_roformer as BR
        import gen_golden_roformer as G
        from torch.utils.flop_counter import FlopCounterMode
        import bs_roformer
        cls, _, kw, _ = BR.config("bs" if model == "bs_roformer" else "mel")
        chunk = ROFORMER_CHUNKS[model]
        torch.manual_seed(0)  # G.build's model with the package's fused attention (flash_attn, as users run it)
        net = G.randomize(getattr(bs_roformer, cls)(flash_attn=True, attn_dropout=0.0, ff_dropout=0.0, **kw))
        net = net.to(dev).eval()
        calls = [torch.from_numpy(resample(x, sr, 44100)).to(dev) for x, sr in tracks]
        with torch.no_grad(), FlopCounterMode(display=False) as fc:
            net(torch.zeros(1, 2, chunk, device=dev).normal_())
        flops_chunk = fc.get_total_flops()
        extra["flops_per_chunk_counted_here"] = int(flops_chunk)
        sk = os.path.join(a.models_dir or "", model + ".json")
        if a.models_dir and os.path.exists(sk):
            # the count stemline's TFLOP/s use (bench/gpu_models.py skeleton --flops): the same work
            with open(sk) as f:
                flops_chunk = (json.load(f).get("bench") or {}).get("flops_per_chunk") or flops_chunk
        chunks = []

        def fn(c):
            chunks.append(roformer_demix(torch, net, c, chunk, ROFORMER_OVERLAP, a.roformer_batch)[1])
        extra.update(flops_per_chunk=int(flops_chunk), chunk_size=chunk, num_overlap=ROFORMER_OVERLAP,
                     batch_chunks=a.roformer_batch, _chunks=chunks)
        return net, calls, fn, extra
    if model == "htdemucs":
        import fractions
        from demucs.apply import apply_model
        from demucs.htdemucs import HTDemucs
        torch.manual_seed(0)
        net = HTDemucs(sources=["drums", "bass", "other", "vocals"], segment=fractions.Fraction(39, 5)).to(dev).eval()
        calls = [torch.from_numpy(resample(x, sr, 44100)).to(dev) for x, sr in tracks]

        def fn(mix):
            ref = mix.mean(0)
            m, s = ref.mean(), ref.std()
            out = apply_model(net, ((mix - m) / s)[None], shifts=0, split=True, overlap=0.25, device=dev)
            return out * s + m
        return net, calls, fn, extra
    if model == "clap":
        import transformers  # noqa: F401 (before the librosa stand-in, as a machine without librosa has it)
        extra["librosa"] = librosa_standin()  # torchlibrosa imports librosa
        import gen_golden_clap as C
        model_mod, htsat_mod, ns, version = C.import_clap()
        extra["laion_clap"] = version
        net = C.build(model_mod, htsat_mod, C.FULL).to(dev).eval()
        feats = []
        for w in windows(tracks, C.SR, C.FULL["clip_samples"] / C.SR):
            w = ns["int16_to_float32"](ns["float32_to_int16"](w))
            d = ns["get_audio_features"]({}, torch.from_numpy(w).float(), C.FULL["clip_samples"],
                                         data_truncating="rand_trunc", data_filling="repeatpad", audio_cfg=None)
            feats.append({k: v.to(dev) for k, v in d.items() if torch.is_tensor(v)})
        calls = [feats[i:i + a.batch] for i in range(0, len(feats), a.batch)]
        return net, calls, net.get_audio_embedding, extra
    if model == "clap_text":
        import tempfile
        import bench_clap_text as BT
        import gen_golden_clap_text as T
        with tempfile.TemporaryDirectory() as tmp:
            net, tok, _, _ = T.build_model(True, os.path.join(tmp, "text.safetensors"))
        net = net.to(dev).eval()

        def fn(queries):
            d = tok(queries, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
            return net.get_text_embedding({k: v.to(dev) for k, v in d.items()})
        extra.update(queries=len(BT.QUERIES), batch_queries=len(BT.QUERIES))
        return net, [BT.QUERIES] * 5, fn, extra
    raise ValueError("unknown model " + model)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("catalog")
    ap.add_argument("--py")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--models", default="umx,cnn14")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--roformer-batch", type=int, default=4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models-dir", help="the bundle's models/: bs_roformer.json's FLOPs per chunk for TFLOP/s")
    a = ap.parse_args()
    if a.py:
        sys.path.insert(0, a.py)
    try:
        import torchaudio  # noqa: F401
    except Exception:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")  # openunmix's transforms: unused here
    standins()
    import torch
    dev = torch.device(a.device)
    tracks = [read_wav(p) for p in sorted(glob.glob(os.path.join(a.catalog, "*.wav")))]
    if not tracks:
        sys.exit("gpu_torch_models.py: no WAV files in %s" % a.catalog)
    audio_s = sum(x.shape[1] / sr for x, sr in tracks)
    base = {"backend": "torch-" + dev.type, "torch": torch.__version__,
            "audio_seconds": round(audio_s, 3), "note": "model calls only, audio already on the GPU"}
    precs = a.precisions.split(",")
    try:
        base["device"] = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    except Exception as e:  # no usable device: a row saying so for each model
        for model in a.models.split(","):
            for p in precs:
                print(json.dumps(dict(base, job=model, precision=p, error="%s: %s" % (type(e).__name__, str(e)[:200]))))
        return 1
    for model in a.models.split(","):
        t_build = time.perf_counter()
        try:
            net, calls, fn, extra = build(model, a, torch, dev, tracks)
        except Exception as e:  # a package missing: say so, go on with the next model
            for p in precs:
                print(json.dumps(dict(base, job=model, precision=p, error="%s: %s" % (type(e).__name__, str(e)[:300]))),
                      flush=True)
            continue
        chunks = extra.pop("_chunks", None)
        print("gpu_torch_models.py: %s built in %.1f s" % (model, time.perf_counter() - t_build), file=sys.stderr)
        for p in precs:
            row = dict(base, job=model, precision=p, **extra)
            if chunks is not None:
                chunks.clear()
            try:
                amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(p)
                with torch.no_grad(), torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                    dt = timed(torch, dev, fn or net, calls)
                row.update(wall_seconds=round(dt, 4), calls=len(calls))
                if model == "clap_text":
                    row.update(queries_per_s=round(len(calls) * len(calls[0]) / dt, 1))
                    del row["audio_seconds"]
                else:
                    row.update(x_realtime=round(audio_s / dt, 2))
                if chunks:
                    n = sum(chunks[1:])  # the timed calls (the first is the warm-up)
                    row.update(chunks=n, flops=extra["flops_per_chunk"] * n,
                               tflops=round(extra["flops_per_chunk"] * n / dt / 1e12, 1))
                if dev.type == "cuda":
                    row["peak_mib"] = round(torch.cuda.max_memory_allocated(dev) / 2 ** 20)
            except Exception as e:
                row["error"] = "%s: %s" % (type(e).__name__, str(e)[:200])
            print(json.dumps(row), flush=True)
        del net, calls
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
