#!/usr/bin/env python3
"""LAION-CLAP text tower: stemline (build/bench_clap_text, CPU backend) against
the laion-clap package on PyTorch (CLAP.get_text_embedding on the output of
RobertaTokenizer as laion_clap calls it), same machine, same run, same threads,
same queries, same weights.

    bench/.venv-torch/bin/python bench/bench_clap_text.py [--threads 1] [--batch 1] [--repeat 3] [--check]

Weights: the full-size text tower (RoBERTa-base: 12 x 768 x 12 heads, 3072,
50265 tokens; 512-d projection) with random weights, built and written by
tools/gen_golden_clap_text.py's build_model (the tokenizer: the small test
vocabulary of tests/golden/clap_text, so queries are a few more tokens than
with roberta-base's). Queries: QUERIES below (music descriptions, 5-40 words).
Both sides time tokenisation + encoder + projection + normalisation for every
query in batches of --batch, one warm-up, best of --repeat (wall time, and
separately the least process CPU time of a run: speedup_cpu); PyTorch in float32
under torch.no_grad with torch.set_num_threads(--threads), stemline with
--threads threads in its op context. Prints queries/s for both, the speed-up
and the max relative difference of the vectors; --check exits 1 above 1e-4.
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
import gen_golden_clap_text as G  # noqa: E402

QUERIES = [
    "calm piano with rain sounds",
    "upbeat electronic dance music with a heavy bass line",
    "melancholic acoustic guitar ballad sung by a woman, slow tempo, intimate recording",
    "energetic rock song with distorted guitars, loud drums and a male singer shouting the chorus",
    "jazz trio",
    "lo-fi hip hop beat with vinyl crackle, mellow keys and a laid-back groove for studying late at night",
    "orchestral film score with brass fanfares, timpani rolls and a choir building to a huge climax",
    "traditional Irish folk tune on fiddle and tin whistle",
    "ambient drone with reverb-drenched textures and no percussion at all, slowly evolving over many minutes",
    "bossa nova with nylon guitar and soft voice",
    "heavy metal with blast beats, screamed vocals and down-tuned seven-string guitars",
    "a children's song with hand claps",
    "solo cello",
    "minimal techno, 128 bpm, hypnotic hi-hats, deep kick, long filter sweeps and a dark warehouse atmosphere",
    "gospel choir",
    "reggae with offbeat guitar skanks and a deep dub bass",
]


def torch_time(model, tok, queries, batch, repeat):
    import torch

    def run():
        out = []
        for i in range(0, len(queries), batch):
            data = tok(queries[i:i + batch], padding="max_length", truncation=True, max_length=77,
                       return_tensors="pt")
            out.append(model.get_text_embedding(dict(data)).numpy())
        return np.concatenate(out)

    with torch.no_grad():
        vec = run()
        best = cpu_best = 1e30
        for _ in range(repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            run()
            best = min(best, time.perf_counter() - t0)
            cpu_best = min(cpu_best, time.process_time() - c0)
    return best, cpu_best, vec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", default=os.environ.get("BENCH_CLAP_TEXT", os.path.join(ROOT, "build", "bench_clap_text")))
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        w = os.path.join(tmp, "clap-text-full.safetensors")
        model, tok, _, _ = G.build_model(True, w)
        qfile = os.path.join(tmp, "queries.txt")
        with open(qfile, "w", encoding="utf-8") as f:
            f.write("\n".join(QUERIES) + "\n")
        t_torch, c_torch, v_torch = torch_time(model, tok, QUERIES, a.batch, a.repeat)
        del model
        out = os.path.join(tmp, "out.f32")
        r = subprocess.run([a.bin, "--weights", w, "--queries", qfile, "--threads", str(a.threads), "--batch",
                            str(a.batch), "--repeat", str(a.repeat), "--output", out],
                           check=True, capture_output=True, text=True)
        sl = json.loads(r.stdout)
        v_sl = np.fromfile(out, dtype="<f4").reshape(v_torch.shape)
    err = float(np.abs(v_sl - v_torch).max() / np.abs(v_torch).max())
    n = len(QUERIES)
    res = {"bench": "clap_text", "threads": a.threads, "batch": a.batch, "queries": n,
           "torch_queries_per_s": round(n / t_torch, 2), "stemline_queries_per_s": sl["queries_per_s"],
           "speedup": round(sl["queries_per_s"] / (n / t_torch), 2),
           "torch_cpu_s": round(c_torch, 4), "stemline_cpu_s": sl["cpu_seconds"],
           "speedup_cpu": round(c_torch / sl["cpu_seconds"], 2), "max_rel_err": err,
           "torch": torch.__version__, "load": os.getloadavg()[0]}
    print(json.dumps(res))
    return 1 if a.check and err > 1e-4 else 0


if __name__ == "__main__":
    sys.exit(main())
