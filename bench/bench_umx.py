#!/usr/bin/env python3
"""Open-Unmix: stemline (build/bench_umx) against the official openunmix PyTorch
package, same machine, same run, same threads, same input, same weights.

    /usr/bin/python3 bench/bench_umx.py [--seconds 30] [--threads 1] [--repeat 3]
                                        [--weights W.safetensors] [--check]

Weights: umxhq dimensions (hidden 512, n_fft 4096, hop 1024, nb_bins 2049,
max_bin 1487, 3 BiLSTM layers, four targets) with random weights (seed 0,
random batch-norm statistics and scalings: tools/gen_golden_umx.py's
build_targets), unless --weights names a converted real checkpoint
(tools/convert_umx.py); then the PyTorch side loads the same tensors.
Input: --seconds of a music-like stereo signal (bench/bench_dsp.c's
expression: two partials, noise bursts every 0.5 s), or --input a float32
[2][n] file. Both sides separate the whole input as one segment with the
Separator defaults of the openunmix CLI: niter 1, no softmask, no residual,
Wiener windows of 300 frames.

Timing: PyTorch: Separator forward under torch.no_grad after one warm-up,
torch.set_num_threads(--threads); stemline: bench_umx (one warm-up, then
--repeat runs) with --threads threads in its op context (GEMMs, LSTM, FFT
batches and the Wiener filter's items split over them; OpenBLAS itself on one). Best of --repeat for both. Prints x realtime for both,
the speed-up, and max |stemline - torch| over all stems relative to the
largest stem sample. --check exits 1 when that exceeds 1e-3 (the slow test).
Needs: python3-torch (Debian), openunmix (pip --no-deps), numpy, a build.
"""

import atexit
import argparse
import json
import os
import subprocess
import sys
import shutil
import tempfile
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # openunmix imports it; unused here
import torch  # noqa: E402
from openunmix import model as umx_model  # noqa: E402

import gen_golden_umx as G  # noqa: E402
import stemline_st  # noqa: E402

SR = 44100


def signal(seconds, seed=3):
    n = int(seconds * SR)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = []
    for ch in range(2):
        f1, f2 = 220.0 * (1 + 0.01 * ch), 331.0 * (1 + 0.007 * ch)
        burst = np.exp(-40.0 * np.mod(t + 0.05 * ch, 0.5))
        x.append(0.3 * np.sin(2 * np.pi * f1 * t) + 0.2 * np.sin(2 * np.pi * f2 * t)
                 + 0.3 * rng.uniform(-1, 1, n) * burst + 0.01 * rng.uniform(-1, 1, n))
    return np.stack(x).astype(np.float32)


def read_safetensors(path):
    """(tensors {name: float32 array}, metadata) of a safetensors file (F32 only)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {}
    for k, v in header.items():
        if v["dtype"] != "F32":
            raise SystemExit("bench_umx: %s: tensor %s is %s, expected F32" % (path, k, v["dtype"]))
        b, e = v["data_offsets"]
        tensors[k] = np.frombuffer(data[b:e], dtype="<f4").reshape(v["shape"])
    return tensors, meta


def targets_from_file(path):
    """OpenUnmix modules holding the tensors of a stemline umx weights file."""
    tensors, meta = read_safetensors(path)
    hidden, nb, mb = int(meta["hidden_size"]), int(meta["nb_bins"]), int(meta["max_bin"])
    out = {}
    for t in meta["targets"].split(","):
        m = umx_model.OpenUnmix(nb_bins=nb, nb_channels=2, hidden_size=hidden, nb_layers=int(meta["nb_layers"]),
                                max_bin=mb)
        sd = {k[len(t) + 1:]: torch.from_numpy(np.array(v)) for k, v in tensors.items() if k.startswith(t + ".")}
        m.load_state_dict(sd, strict=False)
        m.eval()
        out[t] = m
    return out, int(meta["n_fft"]), int(meta["hop"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--input", default=None)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--bench-bin", default=os.environ.get("BENCH_UMX", os.path.join(ROOT, "build", "bench_umx")))
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--json", default=None, help="append the result object to this file")
    a = ap.parse_args()
    if not os.path.exists(a.bench_bin):
        raise SystemExit("bench_umx: %s not found (make, or --bench-bin / BENCH_UMX)" % a.bench_bin)

    work = tempfile.mkdtemp(prefix="bench-umx-")
    atexit.register(shutil.rmtree, work, True)  # the weights and audio copies: 0.1-0.9 GB a run
    if a.weights:
        targets, n_fft, hop = targets_from_file(a.weights)
        weights = a.weights
    else:
        t0 = time.time()
        targets = G.build_targets(seed=0, hidden=512, nb_bins=2049, max_bin=1487)
        n_fft, hop = 4096, 1024
        weights = os.path.join(work, "umxhq-random.safetensors")
        G.save_weights(weights, targets, n_fft, hop)
        print("random umxhq-size weights in %.1f s -> %s" % (time.time() - t0, weights), file=sys.stderr)
    if a.input:
        x = np.fromfile(a.input, dtype="<f4").reshape(2, -1)
    else:
        x = signal(a.seconds)
    inp = os.path.join(work, "input.f32")
    x.tofile(inp)
    audio_s = x.shape[1] / SR

    # PyTorch reference
    torch.set_num_threads(a.threads)
    sep = umx_model.Separator(targets, niter=1, softmask=False, residual=False, sample_rate=SR, n_fft=n_fft,
                              n_hop=hop, nb_channels=2, wiener_win_len=300, filterbank="torch")
    sep.freeze()
    xt = torch.from_numpy(x)[None]
    times = []
    with torch.no_grad():
        sep(xt[..., : min(x.shape[1], SR)])  # warm-up
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            ref = sep(xt)
            times.append(time.perf_counter() - t0)
    ref = ref[0].numpy()
    torch_best = min(times)

    # stemline
    outp = os.path.join(work, "out.f32")
    env = dict(os.environ)
    r = subprocess.run([a.bench_bin, "--weights", weights, "--input", inp, "--output", outp, "--backend", a.backend,
                        "--repeat", str(a.repeat), "--threads", str(a.threads)], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        raise SystemExit("bench_umx failed (%d)" % r.returncode)
    sl = json.loads(r.stdout.strip().splitlines()[-1])
    got = np.fromfile(outp, dtype="<f4").reshape(ref.shape)
    err = float(np.abs(got - ref).max() / np.abs(ref).max())
    res = {
        "bench": "umx", "date": time.strftime("%Y-%m-%d"), "seconds": round(audio_s, 3), "threads": a.threads,
        "backend": a.backend, "device": sl["device"], "weights": "file" if a.weights else "random umxhq-size",
        "torch": torch.__version__, "torch_best_s": round(torch_best, 3),
        "torch_x_realtime": round(audio_s / torch_best, 2), "stemline_best_s": sl["best_s"],
        "stemline_x_realtime": sl["x_realtime"], "speedup": round(torch_best / sl["best_s"], 2),
        "max_rel_diff": err, "stemline_load_s": sl["load_s"],
    }
    print(json.dumps(res))
    print("umx %.1f s stereo, %d thread(s): torch %.2f s (%.1fx realtime), stemline %s %.2f s (%.1fx realtime), "
          "%.2fx faster; max |diff| / max|ref| = %.2e" % (audio_s, a.threads, torch_best, audio_s / torch_best,
                                                          a.backend, sl["best_s"], sl["x_realtime"],
                                                          torch_best / sl["best_s"], err), file=sys.stderr)
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    for p in (inp, outp) + (() if a.weights else (weights,)):
        os.remove(p)
    os.rmdir(work)
    if a.check and not err <= 1e-3:
        print("bench_umx: difference %.3g above 1e-3" % err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
