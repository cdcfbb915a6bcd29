#!/usr/bin/env python3
"""Golden vectors for a bag of HT-Demucs v4 models (demucs.apply.BagOfModels,
as htdemucs_ft) and for apply_model's shifts, from the official `demucs`
package with random weights at reduced sizes.

    PY=/path/to/venv/bin/python   # torch + demucs + PyYAML
    $PY tools/gen_golden_htdemucs_bag.py       # writes tests/golden/htdemucs/bag.{safetensors,slg}

Three reduced HTDemucs models (tools/gen_golden_htdemucs.py's randomisation,
seeds 10, 11, 12) are written as demucs's serialized checkpoints
(demucs.states.serialize_model, float32 state, SIG-xxxxxxxx.th) with a bag
YAML (remote/*.yaml format) whose weights matrix is not the identity, and
converted by tools/convert_htdemucs.py --bag into bag.safetensors. The
reference runs the same models in float64 (the float32 weights converted
exactly) as BagOfModels(models, weights) through what the `demucs` command
computes before it writes files: the track normalised by the mean and std of
its mono sum, apply_model(bag, mix, split=True, overlap=0.25, shifts=N), the
normalisation undone.

apply_model draws each shift's offset with random.randint(0, max_shift)
(max_shift = int(0.5 * samplerate) = 4000 here); stemline uses fixed offsets
instead (pipeline/demucs_split.h), so the reference patches random.randint to
return them, in order, for each model of the bag.

bag.slg (tests/unit/sl_golden.h format): params n (track samples), L
(segment samples), max_shift; arrays track [C][n] (float32) and
  apply      [S][C][n]  shifts 0
  apply_s2   [S][C][n]  shifts 2, stemline's default offsets (1000, 3000)
  apply_s3   [S][C][n]  shifts 3, offsets 0, 4000, 1234 (separation.options.shift_offsets)
"""

import fractions
import os
import subprocess
import sys
import tempfile
from unittest import mock

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gen_golden_htdemucs import OUT, SOURCES4, audio, build, write_slg  # noqa: E402

KW = dict(sources=SOURCES4, audio_channels=2, channels=4, growth=2, nfft=512, depth=3, dconv_comp=4,
          t_layers=1, t_heads=2, t_hidden_scale=2.0, samplerate=8000, segment=fractions.Fraction(1, 8))
SIGS = ["5a1b2c3d", "6e7f8091", "a2b3c4d5"]
WEIGHTS = [[1.0, 0.25, 0.5, 0.0], [0.5, 1.0, 0.0, 2.0], [0.0, 0.5, 1.5, 1.0]]
N = 3300
CASES = [("apply", 0, []), ("apply_s2", 2, [1000, 3000]), ("apply_s3", 3, [0, 4000, 1234])]


def demucs_command(bag, track, shifts, offsets):
    from demucs.apply import apply_model

    wav = torch.from_numpy(track.astype(np.float64))
    ref = wav.mean(0)
    wav = (wav - ref.mean()) / ref.std()
    max_shift = int(0.5 * bag.samplerate)
    calls = []

    def randint(lo, hi):
        assert (lo, hi) == (0, max_shift), (lo, hi)
        calls.append(offsets[len(calls) % len(offsets)])
        return calls[-1]

    with torch.no_grad(), mock.patch("random.randint", randint):
        sources = apply_model(bag, wav[None], shifts=shifts, split=True, overlap=0.25)[0]
    assert len(calls) == shifts * len(bag.models), calls
    return (sources * ref.std() + ref.mean()).numpy()


def main():
    from demucs.apply import BagOfModels
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    models, files = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, sig in enumerate(SIGS):
            m = build(KW, 10 + i)
            path = os.path.join(tmp, "%s-%08x.th" % (sig, 0x1000 + i))
            torch.save(serialize_model(m, OmegaConf.create({}), half=False), path)
            files.append(path)
            models.append(m.double())
        yml = os.path.join(tmp, "bag.yaml")
        with open(yml, "w") as f:
            f.write("models: [%s]\nweights: [\n%s]\n" % (", ".join("'%s'" % s for s in SIGS),
                                                        "".join("  %r,\n" % (w,) for w in WEIGHTS)))
        subprocess.run([sys.executable, os.path.join(HERE, "convert_htdemucs.py"), "--out",
                        os.path.join(OUT, "bag.safetensors"), "--bag", yml] + files[::-1], check=True)
    bag = BagOfModels(models, WEIGHTS)
    rng = np.random.default_rng(110)
    track = audio(rng, 2, N, KW["samplerate"])
    arrays = [("track", track)]
    for name, shifts, offsets in CASES:
        arrays.append((name, demucs_command(bag, track, shifts, offsets)))
    L = int(KW["segment"] * KW["samplerate"])
    write_slg(os.path.join(OUT, "bag.slg"), {"n": N, "L": L, "max_shift": KW["samplerate"] // 2}, arrays)
    for name, a in arrays[1:]:
        print("%s: max|.| %.3g, differs from apply by %.3g" % (name, np.abs(a).max(), np.abs(a - arrays[1][1]).max()))


if __name__ == "__main__":
    main()
