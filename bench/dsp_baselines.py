#!/usr/bin/env python3
"""Baselines for bench/bench_dsp.c: the same measurements with torch.stft /
torch.istft and with librosa (stft, istft, decompose.hpss), same signal sizes,
same geometry, same machine, same run (bench/run_dsp.sh runs both).

    bench/.venv/bin/python bench/dsp_baselines.py [--tracks 8] [--seconds 60]
        [--hpss-seconds 60] [--repeat 3] [--hpss-signal PATH] [--torch-device cuda]
        [--skip-torch] [--skip-librosa]

Measurements (one untimed warm-up, then the best of --repeat):
  stft : x[16][L] float32 -> |X| (torch.stft(..., center=True, pad_mode='reflect',
         window=hann_window(n_fft), return_complex=True).abs(); librosa.stft
         with the same arguments, then np.abs)
  istft: X (the STFT of x, complex64) -> y[16][L] (torch.istft / librosa.istft,
         length=L)
  hpss : stereo [2][L] -> harmonic, percussive, residual as stemline's hpss model
         computes it: librosa.stft(2048, 512, reflect) -> librosa.decompose.hpss
         (kernel 31, power 2, margin 2) -> two librosa.istft -> residual; and
         librosa.decompose.hpss alone on the precomputed spectrum.
torch runs with torch.set_num_threads(1), with its default thread count, and
with one thread per core (when that differs from the default), each reported
with its count. stemline's CPU backend uses one thread per context.
librosa (numpy/scipy) runs on one thread here: its FFTs (numpy.fft) and
median filters (scipy.ndimage) are single-threaded.

Output: one JSON object per line on stdout, a summary on stderr.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

SR = 44100


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def best_of(fn, repeat):
    fn()  # warm-up
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def emit(impl, version, threads, op, n_fft, hop, tracks, seconds, frames, best, repeat, **extra):
    audio = tracks * seconds
    row = {"bench": "dsp", "impl": impl, "version": version, "threads": threads, "op": op, "n_fft": n_fft,
           "hop": hop, "tracks": tracks, "channels": 2, "seconds": seconds, "frames": frames,
           "best_s": round(best, 6), "repeat": repeat, "frames_per_s": round(frames / best, 1),
           "x_realtime": round(audio / best, 2)}
    row.update(extra)
    print(json.dumps(row), flush=True)
    log(f"  {impl:7s} t={threads!s:7s} {op:10s} n_fft {n_fft!s:>5} hop {hop!s:>5}: best {best:8.4f} s "
        f"{frames / best:10.0f} frames/s {audio / best:8.1f}x realtime")


def skip(impl, op, why):
    print(json.dumps({"bench": "dsp", "impl": impl, "op": op, "skipped": why}), flush=True)
    log(f"  {impl:7s} {op}: SKIPPED: {why}")


def make_batch(n_ch, length, seed=1):
    """Music-like signals (two partials, decaying noise bursts, a noise floor), float32 [n_ch][length].
    FFT cost does not depend on content; the hpss input comes from bench_dsp itself (--hpss-signal)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length, dtype=np.float64) / SR
    x = np.empty((n_ch, length), dtype=np.float32)
    for c in range(n_ch):
        burst = np.exp(-40.0 * np.mod(t + 0.05 * c, 0.5))
        x[c] = (0.3 * np.sin(2 * np.pi * 220.0 * (1 + 0.01 * c) * t)
                + 0.2 * np.sin(2 * np.pi * 331.0 * (1 + 0.007 * c) * t)
                + 0.3 * rng.uniform(-1, 1, length) * burst + 0.01 * rng.uniform(-1, 1, length))
    return x


def n_frames(length, hop):
    return 1 + length // hop  # centre padding, even n_fft


GEOMS = [(4096, 1024), (2048, 512)]


def bench_torch(args, x):
    try:
        import torch
    except ImportError as e:
        skip("torch", "all", f"torch not importable ({e}); apt-get install python3-torch")
        return
    version = torch.__version__
    default_threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    counts = [1] + [t for t in (default_threads, cores) if t != 1]
    counts = list(dict.fromkeys(counts))
    log(f"torch {version}: default threads {default_threads}, cores {cores}; "
        f"{torch.__config__.parallel_info().splitlines()[-1].strip()}")
    xt = torch.from_numpy(x)
    L = x.shape[1]
    for n_fft, hop in GEOMS:
        w = torch.hann_window(n_fft)
        X = torch.stft(xt, n_fft, hop_length=hop, window=w, center=True, pad_mode="reflect", return_complex=True)
        y = torch.istft(X, n_fft, hop_length=hop, window=w, center=True, length=L)
        err = (y - xt).abs().max().item()
        assert err < 1e-4, f"torch round trip error {err}"
        frames = x.shape[0] * X.shape[-1]
        assert X.shape[-1] == n_frames(L, hop)
        for t in counts:
            torch.set_num_threads(t)
            label = f"{t}" + (" (default)" if t == default_threads else "")
            b = best_of(lambda: torch.stft(xt, n_fft, hop_length=hop, window=w, center=True, pad_mode="reflect",
                                           return_complex=True).abs(), args.repeat)
            emit("torch", version, t, "stft", n_fft, hop, args.tracks, args.seconds, frames, b, args.repeat,
                 threads_note=label)
            b = best_of(lambda: torch.istft(X, n_fft, hop_length=hop, window=w, center=True, length=L),
                        args.repeat)
            emit("torch", version, t, "istft", n_fft, hop, args.tracks, args.seconds, frames, b, args.repeat,
                 threads_note=label)
        del X, y
    torch.set_num_threads(default_threads)


def bench_torch_device(args, x):
    """torch.stft / torch.istft on a GPU (--torch-device cuda[:N]): inputs already on the device, the clock
    stopped after torch.cuda.synchronize(), like bench_dsp's sl_op_sync; impl "torch-cuda"."""
    try:
        import torch
    except ImportError as e:
        skip("torch-cuda", "all", f"torch not importable ({e})")
        return
    if not torch.cuda.is_available():
        skip("torch-cuda", "all", "torch.cuda.is_available() is False")
        return
    dev = torch.device(args.torch_device)
    name = torch.cuda.get_device_name(dev)
    version = f"{torch.__version__} (CUDA {torch.version.cuda}, {name})"
    log(f"torch {version}")
    xt = torch.from_numpy(x).to(dev)
    L = x.shape[1]

    def timed(fn):
        def run():
            fn()
            torch.cuda.synchronize(dev)
        return best_of(run, args.repeat)

    for n_fft, hop in GEOMS:
        w = torch.hann_window(n_fft, device=dev)
        X = torch.stft(xt, n_fft, hop_length=hop, window=w, center=True, pad_mode="reflect", return_complex=True)
        y = torch.istft(X, n_fft, hop_length=hop, window=w, center=True, length=L)
        err = (y - xt).abs().max().item()
        assert err < 1e-4, f"torch round trip error {err}"
        frames = x.shape[0] * X.shape[-1]
        b = timed(lambda: torch.stft(xt, n_fft, hop_length=hop, window=w, center=True, pad_mode="reflect",
                                     return_complex=True).abs())
        emit("torch-cuda", version, 0, "stft", n_fft, hop, args.tracks, args.seconds, frames, b, args.repeat,
             device=name)
        b = timed(lambda: torch.istft(X, n_fft, hop_length=hop, window=w, center=True, length=L))
        emit("torch-cuda", version, 0, "istft", n_fft, hop, args.tracks, args.seconds, frames, b, args.repeat,
             device=name)
        del X, y


def bench_librosa(args, x, hpss_x):
    try:
        import librosa
        import scipy
    except ImportError as e:
        skip("librosa", "all", f"librosa not importable ({e}); see bench/requirements-dsp.txt")
        return
    version = f"{librosa.__version__} (numpy {np.__version__}, scipy {scipy.__version__})"
    L = x.shape[1]
    if not args.skip_librosa_stft:
        for n_fft, hop in GEOMS:
            X = librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True, pad_mode="reflect")
            frames = x.shape[0] * X.shape[-1]
            b = best_of(lambda: np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann", center=True,
                                                    pad_mode="reflect")), args.repeat)
            emit("librosa", version, 1, "stft", n_fft, hop, args.tracks, args.seconds, frames, b, args.repeat)
            b = best_of(lambda: librosa.istft(X, hop_length=hop, n_fft=n_fft, window="hann", center=True, length=L),
                        args.repeat)
            emit("librosa", version, 1, "istft", n_fft, hop, args.tracks, args.seconds, frames, b, args.repeat)
            del X

    # hpss, as stemline's model computes it (defaults of models/hpss.c)
    Lh = hpss_x.shape[1]
    kw = dict(kernel_size=31, power=2.0, margin=2.0)

    def full():
        D = librosa.stft(hpss_x, n_fft=2048, hop_length=512, window="hann", center=True, pad_mode="reflect")
        H, P = librosa.decompose.hpss(D, **kw)
        yh = librosa.istft(H, hop_length=512, n_fft=2048, window="hann", center=True, length=Lh)
        yp = librosa.istft(P, hop_length=512, n_fft=2048, window="hann", center=True, length=Lh)
        return yh, yp, hpss_x - yh - yp

    frames = 2 * n_frames(Lh, 512)
    b = best_of(full, args.hpss_repeat)
    emit("librosa", version, 1, "hpss", 2048, 512, 1, args.hpss_seconds, frames, b, args.hpss_repeat,
         what="stft + decompose.hpss(kernel 31, power 2, margin 2) + 2 istft + residual")
    D = librosa.stft(hpss_x, n_fft=2048, hop_length=512, window="hann", center=True, pad_mode="reflect")
    b = best_of(lambda: librosa.decompose.hpss(D, **kw), args.hpss_repeat)
    emit("librosa", version, 1, "hpss_only", 2048, 512, 1, args.hpss_seconds, frames, b, args.hpss_repeat,
         what="decompose.hpss alone on a precomputed complex spectrum")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--hpss-seconds", type=float, default=60)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--hpss-repeat", type=int, default=None, help="default: --repeat")
    ap.add_argument("--hpss-signal", help="float32 [2][L] written by bench_dsp --dump-hpss-signal")
    ap.add_argument("--skip-torch", action="store_true")
    ap.add_argument("--skip-librosa", action="store_true")
    ap.add_argument("--skip-librosa-stft", action="store_true")
    ap.add_argument("--torch-device", help="also time torch.stft/istft on this device (e.g. cuda): impl torch-cuda")
    args = ap.parse_args()
    if args.hpss_repeat is None:
        args.hpss_repeat = args.repeat
    L = int(round(args.seconds * SR))
    x = make_batch(2 * args.tracks, L)
    Lh = int(round(args.hpss_seconds * SR))
    if args.hpss_signal:
        hpss_x = np.fromfile(args.hpss_signal, dtype="<f4")
        if hpss_x.size != 2 * Lh:
            sys.exit(f"{args.hpss_signal}: {hpss_x.size} samples, expected {2 * Lh}")
        hpss_x = hpss_x.reshape(2, Lh)
    else:
        hpss_x = make_batch(2, Lh, seed=2)
    log(f"dsp_baselines: STFT/iSTFT on {args.tracks} stereo tracks x {args.seconds:g} s, hpss on "
        f"{args.hpss_seconds:g} s stereo; best of {args.repeat} after one warm-up")
    if not args.skip_torch:
        bench_torch(args, x)
    if args.torch_device:
        bench_torch_device(args, x)
    if not args.skip_librosa:
        bench_librosa(args, x, hpss_x)


if __name__ == "__main__":
    main()
