#!/usr/bin/env python3
"""Full-size separation models with RANDOM weights, as stemline weights files: for timing stemline's
separators end to end (bench/run --weights MODEL=random) where the released weights cannot be downloaded.
Separation quality (SDR) measured with these weights means nothing; bench/run marks it so.

    PY bench/random_weights.py MODEL OUT.safetensors [--seed 0]

MODEL:
  umx                umxhq geometry (bench/umx_random_weights.py; needs the openunmix package)
  bs_roformer        dim 384, depth 8, 4 stems, 8 heads x 64, the package's 62 bands, chunk_size 485100,
                     num_overlap 2 (the dimensions bench/bench_roformer.py times; needs bs-roformer 0.3.10)
  mel_band_roformer  dim 384, depth 6, 1 stem (vocals; stemline adds the instrumental), 60 mel bands,
                     chunk_size 352800, num_overlap 2 (needs bs-roformer 0.3.10)
  htdemucs           the released htdemucs dimensions (demucs.htdemucs.HTDemucs defaults, 4 sources,
                     segment 7.8 s; needs demucs 4.x)

PY: a python with torch 2.x and the model's package, e.g. bench/.venv-torch/bin/python.
"""
import argparse
import fractions
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools"))
sys.path.insert(0, HERE)

MODELS = ("umx", "bs_roformer", "mel_band_roformer", "htdemucs")


def roformer(arch, out, seed):
    import bench_roformer as BR
    import gen_golden_roformer as G
    import stemline_st
    from convert_roformer import metadata_from_kwargs

    cls, name, kw, stems = BR.config("bs" if arch == "bs_roformer" else "mel")
    chunk = BR.CHUNK["bs" if arch == "bs_roformer" else "mel"]
    m = G.build(cls, kw, seed)
    meta = metadata_from_kwargs(name, kw, stems, chunk_size=chunk, num_overlap=2)
    meta["source"] = "random weights (bench/random_weights.py, seed %d)" % seed
    stemline_st.save(out, [(k, stemline_st.to_numpy_f32(v)) for k, v in m.state_dict().items()], meta)


def htdemucs(out, seed):
    import torch
    import stemline_st
    from convert_htdemucs import metadata_from_kwargs
    from demucs.htdemucs import HTDemucs

    torch.manual_seed(seed)
    kw = dict(sources=["drums", "bass", "other", "vocals"], segment=fractions.Fraction(39, 5))
    model = HTDemucs(**kw)
    meta = metadata_from_kwargs({k: v for k, v in kw.items() if k != "sources"}, kw["sources"])
    meta.update(models="1", bag_weights="1.0,1.0,1.0,1.0",
                source="random weights (bench/random_weights.py, seed %d)" % seed)
    stemline_st.save(out, [("m0." + k, stemline_st.to_numpy_f32(v)) for k, v in model.state_dict().items()], meta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if a.model == "umx":
        return subprocess.run([sys.executable, os.path.join(HERE, "umx_random_weights.py"), a.out,
                               "--seed", str(a.seed)]).returncode
    if a.model == "htdemucs":
        htdemucs(a.out, a.seed)
    else:
        roformer(a.model, a.out, a.seed)
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
