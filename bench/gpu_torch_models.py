#!/usr/bin/env python3
"""PyTorch beside stemline on the same GPU, for bench/gpu_check.sh: the
reference models at full size with random weights on the catalog's audio.

    python3 bench/gpu_torch_models.py CATALOG_DIR [--py DIR] [--precisions fp32,bf16]
                                      [--models umx,cnn14] [--batch 8] [--device cuda]

umx: the openunmix package's Separator (umxhq geometry, tools/gen_golden_umx.py's
build_targets at full size; niter 1, no softmask, no residual, Wiener windows of
300 frames, as stemline's umx), one call per track, whole track. cnn14: the
panns_inference Cnn14 (tools/gen_golden_cnn14.py's build at full width) on the
tracks cut into 10 s windows at 32 kHz mono, --batch windows per call. bf16:
under torch.autocast(dtype=torch.bfloat16). Timed: the model calls on audio
already on the GPU, after one warm-up call, synchronised (no decoding, writing
or host copies, which stemline's figures include). One JSON line per model and
precision on stdout, as bench/gpu_models.py jobline writes them (backend
"torch-cuda").

The packages come from --py (bench/gpu_bundle.sh copies openunmix,
panns_inference and torchlibrosa there); librosa, which torchlibrosa imports for
its window and mel filterbank, is replaced where missing by a stand-in giving
arrays of the right shapes (a Hann window, a flat filterbank): the cost of the
model is the same, its values are not the reference's.
"""
import argparse
import glob
import json
import os
import sys
import time
import types
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))


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

    def mel(sr=None, n_fft=None, n_mels=128, **kw):
        return np.full((n_mels, 1 + n_fft // 2), 1.0 / n_mels, dtype=np.float32)

    lib.filters.get_window, lib.filters.mel, lib.util.pad_center = get_window, mel, pad_center
    lib.__version__ = "stand-in"
    sys.modules.update({"librosa": lib, "librosa.filters": lib.filters, "librosa.util": lib.util})
    return "librosa stand-in (shapes only)"


def read_wav(path):
    with wave.open(path, "rb") as w:
        ch, sr, n = w.getnchannels(), w.getframerate(), w.getnframes()
        x = np.frombuffer(w.readframes(n), dtype="<i2").astype(np.float32) / 32768
    return x.reshape(-1, ch).T.copy(), sr


def timed(torch, dev, fn, calls):
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda d: None)
    fn(calls[0])  # warm-up
    sync(dev)
    t0 = time.perf_counter()
    for c in calls:
        fn(c)
    sync(dev)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("catalog")
    ap.add_argument("--py")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--models", default="umx,cnn14")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    if a.py:
        sys.path.insert(0, a.py)
    try:
        import torchaudio  # noqa: F401
    except Exception:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")  # openunmix's transforms: unused here
    import torch
    dev = torch.device(a.device)
    tracks = [read_wav(p) for p in sorted(glob.glob(os.path.join(a.catalog, "*.wav")))]
    if not tracks:
        sys.exit("gpu_torch_models.py: no WAV files in %s" % a.catalog)
    audio_s = sum(x.shape[1] / sr for x, sr in tracks)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    base = {"backend": "torch-" + dev.type, "device": name, "torch": torch.__version__,
            "audio_seconds": round(audio_s, 3), "note": "model calls only, audio already on the GPU"}
    precs = a.precisions.split(",")
    for model in a.models.split(","):
        try:
            if model == "umx":
                import gen_golden_umx as U
                targets = U.build_targets(seed=0, hidden=512, nb_bins=2049, max_bin=1487)
                from openunmix import model as umx_model
                net = umx_model.Separator(targets, niter=1, softmask=False, residual=False, sample_rate=44100,
                                          n_fft=4096, n_hop=1024, nb_channels=2, wiener_win_len=300,
                                          filterbank="torch")
                net.freeze()
                calls = [torch.from_numpy(x)[None].to(dev) for x, _ in tracks]
            else:
                how = librosa_standin()
                import gen_golden_cnn14 as G
                net = G.build(G.import_panns_models(), G.FULL_CHANNELS, 2048)
                wins = []
                for x, sr in tracks:
                    mono = x.mean(0)
                    n32 = int(len(mono) * G.SR / sr)
                    y = np.interp(np.arange(n32) * (sr / G.SR), np.arange(len(mono)), mono).astype(np.float32)
                    for s in range(0, n32, 10 * G.SR):
                        w = np.zeros(10 * G.SR, np.float32)
                        w[:len(y[s:s + 10 * G.SR])] = y[s:s + 10 * G.SR]
                        wins.append(w)
                wins = torch.from_numpy(np.stack(wins)).to(dev)
                calls = [wins[i:i + a.batch] for i in range(0, len(wins), a.batch)]
            net = net.to(dev).eval()
        except Exception as e:  # a package missing: say so, go on with the next model
            for p in precs:
                print(json.dumps(dict(base, job=model, precision=p, error="%s: %s" % (type(e).__name__, e))))
            continue
        for p in precs:
            row = dict(base, job=model, precision=p)
            if model == "cnn14":
                row["librosa"] = how
            try:
                with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=(p == "bf16")):
                    dt = timed(torch, dev, net, calls)
                row.update(wall_seconds=round(dt, 4), x_realtime=round(audio_s / dt, 1), calls=len(calls))
            except Exception as e:
                row["error"] = "%s: %s" % (type(e).__name__, str(e)[:200])
            print(json.dumps(row), flush=True)
        del net, calls
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
