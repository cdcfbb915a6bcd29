"""Helpers for the python checks of the shell tests (py_check in lib.sh puts this directory on sys.path)."""
import subprocess

import numpy as np


def raw(path, ch=None, rate=None):
    """The samples of an audio file as decoded by ffmpeg, float32: interleaved and flat by default;
    converted to ch channels (shape (frames, ch)) and/or resampled to rate when given."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", path, "-f", "f32le"]
    if ch is not None:
        cmd += ["-ac", str(ch)]
    if rate is not None:
        cmd += ["-ar", str(rate)]
    out = subprocess.run(cmd + ["-"], check=True, capture_output=True).stdout
    x = np.frombuffer(out, dtype="<f4")
    return x if ch is None else x.reshape(-1, ch)
