#!/usr/bin/env python3
"""PANNs Cnn14: stemline (build/bench_cnn14, CPU backend) against the official
PyTorch Cnn14 (panns_inference/models.py), same machine, same run, same threads,
same input, same weights.

    /usr/bin/python3 bench/bench_cnn14.py [--seconds 10] [--threads 1] [--repeat 3] [--check]

Weights: full-size Cnn14 (channels 64..2048, fc1 2048, 527 classes) with random
weights and batch-norm statistics (tools/gen_golden_cnn14.py's build(), seed 0),
written through the converter's naming (tools/gen_golden_cnn14.save_weights).
Input: --seconds of tools/gen_golden_cnn14.make_input (tones + noise + a click)
at 32 kHz, one clip. PyTorch: Cnn14.forward in eval mode, float32, under
torch.no_grad, torch.set_num_threads(--threads), one warm-up then best of
--repeat (wall and CPU time of the process, reported apart: "speedup" is the wall-time
ratio, "cpu_speedup" the CPU-time one). stemline: bench_cnn14 (weights loaded and folded untimed, one warm-up,
best of --repeat) with --threads threads in its op context (the convolutions,
GEMMs and transforms split over them; OpenBLAS itself on one). Both times include the front end (STFT, mel, dB) and the head.
Prints x realtime for both, the speed-up, and the max relative differences of
the embedding and of the 527 scores (max|stemline - torch| / max|torch|).
--check exits 1 when either exceeds 1e-3. Needs what tools/gen_golden_cnn14.py
needs (python3-torch, panns_inference + torchlibrosa via pip --no-deps, librosa
here or via LIBROSA_PYTHON) and a build (env BENCH_CNN14, default
build/bench_cnn14).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch  # noqa: E402

import gen_golden_cnn14 as G  # noqa: E402


def cpu_s():
    """CPU time (user + system) of this process, every thread: what a loaded machine measures fairly."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--bin", default=os.environ.get("BENCH_CNN14", os.path.join(ROOT, "build", "bench_cnn14")))
    a = ap.parse_args()
    G.install_librosa_bridge()
    models = G.import_panns_models()
    torch.set_num_threads(a.threads)
    m = G.build(models, G.FULL_CHANNELS, 2048)
    x = G.make_input(int(a.seconds * G.SR))
    with tempfile.TemporaryDirectory() as tmp:
        wpath, ipath, opath = (os.path.join(tmp, f) for f in ("w.safetensors", "in.f32", "out.f32"))
        G.save_weights(wpath, m, G.FULL_CHANNELS, 2048)
        x.astype("<f4").tofile(ipath)
        xt = torch.from_numpy(x)[None, :]
        times, cpu_times = [], []
        with torch.no_grad():
            for r in range(a.repeat + 1):
                c0 = cpu_s()
                t0 = time.perf_counter()
                out = m(xt)
                dt = time.perf_counter() - t0
                dc = cpu_s() - c0
                if r:
                    times.append(dt)
                    cpu_times.append(dc)
        ref_e = out["embedding"].numpy()[0].astype(np.float64)
        ref_s = out["clipwise_output"].numpy()[0].astype(np.float64)
        env = dict(os.environ)
        res = subprocess.run([a.bin, "--weights", wpath, "--input", ipath, "--output", opath, "--repeat",
                              str(a.repeat), "--threads", str(a.threads)], env=env, check=True, stdout=subprocess.PIPE).stdout.decode()
        sl = json.loads(res.strip().splitlines()[-1])
        got = np.fromfile(opath, dtype="<f4").astype(np.float64)
    got_e, got_s = got[:2048], got[2048:]
    err_e = float(np.max(np.abs(got_e - ref_e)) / max(np.max(np.abs(ref_e)), 1e-30))
    err_s = float(np.max(np.abs(got_s - ref_s)) / max(np.max(np.abs(ref_s)), 1e-30))
    torch_best = min(times)
    result = {
        "bench": "cnn14", "seconds": a.seconds, "threads": a.threads, "repeat": a.repeat,
        "torch": {"version": torch.__version__, "best_s": round(torch_best, 4), "cpu_best_s": round(min(cpu_times), 4),
                  "x_realtime": round(a.seconds / torch_best, 2)},
        "stemline": sl, "speedup": round(torch_best / sl["best_s"], 3),
        "cpu_speedup": round(min(cpu_times) / sl["cpu_best_s"], 3),
        "err_embedding": err_e, "err_scores": err_s,
        "torch_max_score": float(ref_s.max()),
    }
    print(json.dumps(result))
    print("cnn14 %.0f s clip, %d thread(s): torch %.2fx realtime, stemline %.2fx realtime, speed-up %.2fx; "
          "CPU s torch %.3f, stemline %.3f: %.2fx; embedding rel err %.2e, scores rel err %.2e"
          % (a.seconds, a.threads, a.seconds / torch_best, sl["x_realtime"], torch_best / sl["best_s"],
             min(cpu_times), sl["cpu_best_s"], result["cpu_speedup"], err_e, err_s), file=sys.stderr)
    if a.check and (err_e > 1e-3 or err_s > 1e-3):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
