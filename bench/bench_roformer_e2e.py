#!/usr/bin/env python3
"""BS-RoFormer / Mel-Band RoFormer end to end: `stemline run` on a WAV file against the whole-track
inference users run in Python (ZFTurbo's demix, generic mode, one chunk per batch, the bs-roformer
0.3.10 model on PyTorch 2.x), same machine, same run, same threads, same weights, same input.

    PY bench/bench_roformer_e2e.py --bin build/stemline [--arch bs|mel] [--seconds 30] [--threads 1,2]
                                   [--precision fp32[,tf32,bf16]]

PY: a python with torch 2.x and bs-roformer==0.3.10 (e.g. bench/.venv-torch/bin/python).

Model: bench/bench_roformer.py's full-size configs with random weights, chunk_size 485100 (BS) or
352800 (Mel) and num_overlap 2 in the weights' metadata (bench/random_weights.py). Input: --seconds of
a stereo 44.1 kHz signal written as a float32 WAV; both sides read the same samples.
PyTorch side: tools/gen_golden_roformer.py's demix_reference (the reference the cli.roformer_demix test
holds stemline to) with the model's forward in float32 under torch.inference_mode, one chunk at a time
as ZFTurbo's demix runs with batch_size 1; the wall time covers the chunked inference and the
overlap-add, not reading the file. stemline side: the wall time of the whole `stemline run` process
(decode, weights load, separation, writing f32 WAV stems), `runtime.threads` = threads,
`runtime.precision` = each of --precision in turn (torch, always in its default float32, runs once per
thread count).
Prints x realtime for both, the ratio by wall time and by CPU time (user + system of all threads:
torch's process time over the same span, stemline's child-process rusage; the figure to compare on a
loaded machine), the load average, and max |stemline - torch| relative to the largest sample; then
one JSON object per thread count.
"""
import atexit
import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import shutil
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)
import torch  # noqa: E402

import bench_roformer as BR  # noqa: E402
import gen_golden_roformer as G  # noqa: E402
import stemline_st  # noqa: E402
from convert_roformer import metadata_from_kwargs  # noqa: E402

SR = 44100


def write_wav_f32(path, x):
    """x [ch][n] float32 -> a WAVE_FORMAT_IEEE_FLOAT file."""
    ch, n = x.shape
    data = np.ascontiguousarray(x.T, dtype="<f4").tobytes()
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " +
                struct.pack("<IHHIIHH", 16, 3, ch, SR, SR * ch * 4, ch * 4, 32) + b"data" +
                struct.pack("<I", len(data)) + data)


def read_wav_f32(path):
    r = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-f", "f32le", "-"],
                       check=True, capture_output=True)
    return np.frombuffer(r.stdout, dtype="<f4").reshape(-1, 2).T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "stemline"))
    ap.add_argument("--arch", choices=["bs", "mel"], default="bs")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--precision", default="fp32", help="comma-separated runtime.precision values to run")
    a = ap.parse_args()
    precs = a.precision.split(",")
    for p in precs:
        if p not in ("fp32", "tf32", "bf16"):
            ap.error("--precision: %s is not fp32, tf32 or bf16" % p)
    cls, arch, kw, stems = BR.config(a.arch)
    chunk = BR.CHUNK[a.arch]
    m = G.build(cls, kw, 0)
    tmp = tempfile.mkdtemp(prefix="bench_roformer_e2e_")
    atexit.register(shutil.rmtree, tmp, True)  # the weights and audio copies: 0.1-0.9 GB a run
    w = os.path.join(tmp, "model.safetensors")
    stemline_st.save(w, [(k, stemline_st.to_numpy_f32(v)) for k, v in m.state_dict().items()],
                     metadata_from_kwargs(arch, kw, stems, chunk_size=chunk, num_overlap=2))
    n = int(a.seconds * SR)
    x = BR.signal(n)
    os.makedirs(os.path.join(tmp, "in"))
    write_wav_f32(os.path.join(tmp, "in", "track.wav"), x)

    def run_chunk(part):
        with torch.inference_mode():
            y = m(torch.from_numpy(part.astype(np.float32))[None])[0]
        return (y[None] if y.ndim == 2 else y).numpy().astype(np.float64)

    print("%s end to end, %.0f s stereo at %d Hz, chunk %d, num_overlap 2, torch %s, load before %s"
          % (arch, a.seconds, SR, chunk, torch.__version__, " ".join(open("/proc/loadavg").read().split()[:3])))
    for th in [int(t) for t in a.threads.split(",")]:
        torch.set_num_threads(th)
        load0 = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        ref = G.demix_reference(run_chunk, x.astype(np.float64), chunk, 2)
        t_torch, c_torch = time.perf_counter() - t0, time.process_time() - c0
        for prec in precs:
            od = os.path.join(tmp, "out%d%s" % (th, prec))
            job = os.path.join(tmp, "job%d%s.yaml" % (th, prec))
            with open(job, "w") as f:
                f.write("input: {paths: [%s]}\noutput: {dir: %s, stems: {format: wav, sample_format: f32}}\n"
                        "separation: {model: %s, weights: %s, options: {instrumental: false}}\n"
                        "embedding: {model: none}\n"
                        "runtime: {backend: cpu, threads: %d, precision: %s}\n"
                        % (os.path.join(tmp, "in"), od, arch, w, th, prec))
            ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([a.bin, "run", job, "--quiet"], check=True)
            t_sl = time.perf_counter() - t0
            ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            c_sl = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
            err = 0.0
            for s, name in enumerate(stems):
                y = read_wav_f32(os.path.join(od, "stems", "track.wav", name + ".wav"))
                err = max(err, float(np.abs(y - ref[s]).max() / np.abs(ref[s]).max()))
            load1 = os.getloadavg()[0]
            print("threads %d: PyTorch demix %.1f s (%.2fx realtime, CPU %.1f s), stemline run (%s) %.1f s "
                  "(%.2fx realtime, CPU %.1f s), ratio %.2fx wall, %.2fx CPU time, max rel diff %.2g, load %.1f -> %.1f"
                  % (th, t_torch, a.seconds / t_torch, c_torch, prec, t_sl, a.seconds / t_sl, c_sl,
                     t_torch / t_sl, c_torch / c_sl, err, load0, load1), flush=True)
            print(json.dumps({"bench": "roformer_e2e", "arch": arch, "seconds": a.seconds, "threads": th,
                              "precision": prec, "torch_wall_s": t_torch, "torch_cpu_s": c_torch,
                              "stemline_wall_s": t_sl, "stemline_cpu_s": c_sl, "speedup": t_torch / t_sl,
                              "speedup_cpu": c_torch / c_sl, "rel_err": err, "load_avg_1min": [load0, load1],
                              "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
