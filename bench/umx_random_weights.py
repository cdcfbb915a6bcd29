#!/usr/bin/env python3
"""Open-Unmix (umxhq geometry: hidden 512, 2049 bins, max_bin 1487, stereo) with RANDOM weights, as a
stemline weights file: for timing stemline's umx where the real weights cannot be downloaded. SDR figures
from these weights mean nothing (bench/run marks them so).

    bench/.venv/bin/python bench/umx_random_weights.py OUT.safetensors [--seed 0]

Needs torch and the openunmix package (bench/.venv); writes per-target state dicts to a temporary
folder and converts them with tools/convert_umx.py.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import types

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
import torch  # noqa: E402

# openunmix imports torchaudio (file I/O only, unused here); a stub avoids installing it
sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
from openunmix import model  # noqa: E402

torch.manual_seed(a.seed)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with tempfile.TemporaryDirectory() as tmp:
    paths = []
    for target in ("vocals", "drums", "bass", "other"):
        m = model.OpenUnmix(nb_bins=2049, nb_channels=2, hidden_size=512, max_bin=1487)
        paths.append(os.path.join(tmp, f"{target}-random.pth"))
        torch.save(m.state_dict(), paths[-1])
    sys.exit(subprocess.run([sys.executable, os.path.join(root, "tools", "convert_umx.py"), "--out", a.out] + paths)
             .returncode)
