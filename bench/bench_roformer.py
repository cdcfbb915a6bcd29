#!/usr/bin/env python3
"""BS-RoFormer / Mel-Band RoFormer: stemline (build/bench_umx --model ...)
against the reference PyTorch package (bs-roformer 0.3.10 from PyPI), same
machine, same run, same threads, same input, same weights.

    PY bench/bench_roformer.py [--arch bs|mel] [--seconds 2 | --chunk] [--threads 1] [--repeat 2] [--check]
                               [--precision fp32|tf32|bf16|bf16x6]

PY: a python with torch 2.x, bs-roformer==0.3.10 and librosa (for example a venv:
python3 -m venv V && V/bin/pip install torch bs-roformer==0.3.10 librosa).

Models (random weights, tools/gen_golden_roformer.py's build(): default linear
init, random norm gains and biases): --arch bs: dim 384, depth 8, 4 stems,
heads 8 x 64, n_fft 2048, hop 441, the package's 62 bands (the size of
ZFTurbo's 4-stem MUSDB18 BS-RoFormer as we understand its config,
config_bs_roformer_384_8_2_485100.yaml; not checked against the file);
--arch mel: dim 384, depth 6, 1 stem, 60 mel bands, hop 441, mask depth 2 (the
size of the community Mel-Band vocal models). Input: --seconds of a stereo
signal (two partials + noise), separated as ONE segment by both sides (the
model's forward, no chunking). --chunk: one segment of the config's
chunk_size instead (CHUNK: 485100 samples = 11 s, 1101 frames, for bs;
352800 = 8 s, 801 frames, for mel), the length one forward has when users
run whole tracks (ZFTurbo's demix, `stemline run`): the model-only figure at
the length that counts, where attention over ~1100 frames is a larger share
than at 2 s.

Timing: PyTorch: model forward in float32 under torch.inference_mode after one
warm-up, torch.set_num_threads(--threads); stemline: bench_umx --model (one
warm-up, then --repeat runs) with --threads (its op threads) and
OPENBLAS_NUM_THREADS=--threads, runtime.precision --precision (stemline's
linear layers; the mode in effect is printed: fp32 on a CPU without AMX
tiles); torch always computes in its default float32. Best of --repeat, for
the wall time and for the CPU time of the process (user + system of all its
threads: the figure to compare on a loaded machine). Prints x realtime for
both, the speed-ups by wall and by CPU time, and max |stemline - torch|
over all stems relative to the largest stem sample (torch in float64 for that
comparison when --check). --check exits 1 when it exceeds 1e-4 (the slow test).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch  # noqa: E402

import gen_golden_roformer as G  # noqa: E402
import stemline_st  # noqa: E402
from convert_roformer import metadata_from_kwargs  # noqa: E402

SR = 44100
STEMS4 = ["vocals", "bass", "drums", "other"]
CHUNK = {"bs": 485100, "mel": 352800}  # chunk_size of the configs below (ZFTurbo's, the community Mel-Band)


def config(arch):
    if arch == "bs":
        from bs_roformer.bs_roformer import DEFAULT_FREQS_PER_BANDS
        return "BSRoformer", "bs_roformer", dict(
            dim=384, depth=8, stereo=True, num_stems=4, time_transformer_depth=1, freq_transformer_depth=1,
            freqs_per_bands=DEFAULT_FREQS_PER_BANDS, dim_head=64, heads=8, stft_n_fft=2048, stft_hop_length=441,
            stft_win_length=2048, mask_estimator_depth=2), STEMS4
    return "MelBandRoformer", "mel_band_roformer", dict(
        dim=384, depth=6, stereo=True, num_stems=1, time_transformer_depth=1, freq_transformer_depth=1,
        num_bands=60, dim_head=64, heads=8, stft_n_fft=2048, stft_hop_length=441, stft_win_length=2048,
        mask_estimator_depth=2, sample_rate=SR), ["vocals"]


def signal(n, seed=3):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = np.stack([0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * (660 + 5 * c) * t)
                  + 0.05 * rng.standard_normal(n) for c in range(2)])
    return x.astype(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=["bs", "mel"], default="bs")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--chunk", action="store_true", help="one segment of the config's chunk_size (overrides --seconds)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench_umx"))
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16", "bf16x6"], default="fp32")
    args = ap.parse_args()
    cls, arch, kw, stems = config(args.arch)
    hop = kw["stft_hop_length"]
    n = CHUNK[args.arch] if args.chunk else int(args.seconds * SR) // hop * hop  # a multiple of hop: the package's istft has no length
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    m = G.build(cls, kw, 0)
    x = signal(n)
    with tempfile.TemporaryDirectory() as tmp:
        w = os.path.join(tmp, "w.safetensors")
        meta = metadata_from_kwargs(arch, kw, stems, chunk_size=n, num_overlap=2)
        stemline_st.save(w, [(k, stemline_st.to_numpy_f32(v)) for k, v in m.state_dict().items()], meta)
        fin, fout = os.path.join(tmp, "in.f32"), os.path.join(tmp, "out.f32")
        x.tofile(fin)
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads))
        r = subprocess.run([args.bin, "--model", arch, "--weights", w, "--input", fin, "--output", fout,
                            "--repeat", str(args.repeat), "--threads", str(args.threads), "--precision", args.precision,
                            "--opt", "instrumental=false"],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            return 1
        sl = json.loads(r.stdout.strip().splitlines()[-1])
        got = np.fromfile(fout, dtype=np.float32).reshape(len(stems), 2, n)
    xt = torch.from_numpy(x)[None]
    best = cpu_best = 1e30
    with torch.inference_mode():
        m(xt)  # warm-up
        for _ in range(args.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            ref = m(xt)
            best = min(best, time.perf_counter() - t0)
            cpu_best = min(cpu_best, time.process_time() - c0)
        if args.check:
            ref = m.double()(xt.double())
    ref = ref[0].numpy()
    if ref.ndim == 2:
        ref = ref[None]
    err = float(np.abs(got - ref).max() / np.abs(ref).max())
    audio = n / SR
    res = {"bench": "roformer", "arch": arch, "seconds": audio, "threads": args.threads,
           "stemline_x_realtime": sl["x_realtime"], "torch_x_realtime": audio / best,
           "speedup": sl["x_realtime"] / (audio / best), "stemline_cpu_s": sl["cpu_best_s"], "torch_cpu_s": cpu_best,
           "speedup_cpu": cpu_best / sl["cpu_best_s"], "precision": sl.get("precision", "fp32"),
           "precision_asked": args.precision, "rel_err": err, "torch": torch.__version__,
           "params": sl["params"], "fixed_forms_mb": sl.get("fixed_forms_mb"), "load_avg_1min": os.getloadavg()[0],
           "load_avg_before": load0}
    print(json.dumps(res))
    print("%s %.1f s, %d thread(s), stemline %s against torch float32: stemline %.3fx realtime, torch %.3fx, "
          "speed-up %.2fx (wall), %.2fx (CPU time %.2f s against %.2f s); max error %.2g of the largest sample (%s)"
          % (arch, audio, args.threads, res["precision"], sl["x_realtime"], audio / best, res["speedup"],
             res["speedup_cpu"], sl["cpu_best_s"], cpu_best, err,
             "float64 reference" if args.check else "float32 torch"))
    if args.check and not err <= 1e-4:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
