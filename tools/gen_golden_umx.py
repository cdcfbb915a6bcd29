#!/usr/bin/env python3
"""Golden vectors for the Open-Unmix model (models/umx.c), from the official
`openunmix` package (sigsep/open-unmix-pytorch) at reduced size.

    /usr/bin/python3 tools/gen_golden_umx.py            # writes tests/golden/umx/

Needs torch (Debian: apt-get install python3-torch) and openunmix installed
without pulling a PyPI torch:
    /usr/bin/python3 -m pip install --break-system-packages --no-deps openunmix
openunmix imports torchaudio at module level but only uses it for file I/O;
an empty stand-in module is registered so the model, Separator and Wiener
code import without it (nothing of torchaudio is called).

What it builds: four OpenUnmix targets (vocals, drums, bass, other) with the
reference structure (fc1 + bn1 + tanh, 3-layer BiLSTM, skip concatenation,
fc2 + bn2 + relu, fc3 + bn3, output scale/mean, relu, x mixture magnitude)
but hidden_size 16, n_fft 512 / hop 128 (nb_bins 257) and max_bin 64, random
weights (seed 0) including random batch-norm statistics and input/output
scalings, then the reference Separator (torch STFT, Wiener EM, torch iSTFT)
on a short random stereo signal at 44.1 kHz with a digital-silence gap.

Files (small: < 1 MB together):
  umx-small.safetensors  the weights in the converter's naming and metadata
                         (tools/convert_umx.py: <target>.<state dict key>)
  <case>.slg             one separator configuration each (format of
                         tests/unit/sl_golden.h): params niter, softmask,
                         residual, wiener_win_len (0 = None), n; array `input`
                         [2][n] (a prefix of one shared signal); and per stage
                         a sample of 1500 elements (sorted flat indices as
                         float32 + values) of the C model's layouts:
                           mag   [2][T][nb]           mixture magnitude
                           est   [J][2][T][nb]        target estimates before Wiener
                           wien  [S][2][T][nb][2]     after Wiener (complex)
                           out   [S][2][n]            waveforms
Cases: a (niter 1, 300-frame windows: one window), b (niter 2, residual,
whole-signal Wiener: EM blocks of 200 frames + rest, the silence gap: the
reference's atan2 turns exact zero bins into 1 + 0i), c (softmask, niter 1,
windows of 40 frames).
"""

import os
import sys
import types

import numpy as np

sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))  # unused by what we call
import torch  # noqa: E402
from openunmix import model as umx_model  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stemline_st  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "golden", "umx")
TARGETS = ["vocals", "drums", "bass", "other"]
SR = 44100
N_FFT, HOP, HIDDEN, MAX_BIN, LAYERS = 512, 128, 16, 64, 3
NB_BINS = N_FFT // 2 + 1
N_SAMPLES = 28000
SAMPLE = 1500


def build_targets(seed=0, hidden=HIDDEN, nb_bins=NB_BINS, max_bin=MAX_BIN):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    targets = {}
    for t in TARGETS:
        m = umx_model.OpenUnmix(nb_bins=nb_bins, nb_channels=2, hidden_size=hidden, nb_layers=LAYERS,
                                max_bin=max_bin)
        with torch.no_grad():
            for bn in (m.bn1, m.bn2, m.bn3):
                n = bn.num_features
                bn.weight.copy_(0.5 + torch.rand(n, generator=g))
                bn.bias.copy_(0.2 * torch.randn(n, generator=g))
                bn.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                bn.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.input_mean.copy_(-0.5 * torch.rand(max_bin, generator=g))
            m.input_scale.copy_(0.5 + 1.5 * torch.rand(max_bin, generator=g))
            m.output_scale.copy_(0.5 + torch.rand(nb_bins, generator=g))
            m.output_mean.copy_(0.3 + 0.7 * torch.rand(nb_bins, generator=g))
        m.eval()
        targets[t] = m
    return targets


def save_weights(path, targets, n_fft, hop):
    tensors = []
    for t, m in targets.items():
        for k, v in m.state_dict().items():
            if k.endswith("num_batches_tracked"):
                continue
            tensors.append(("%s.%s" % (t, k), v.detach().cpu().numpy().astype(np.float32)))
    m0 = next(iter(targets.values()))
    meta = {
        "stemline.arch": "umx",
        "targets": ",".join(targets),
        "hidden_size": str(m0.hidden_size),
        "nb_bins": str(m0.nb_output_bins),
        "max_bin": str(m0.nb_bins),
        "nb_channels": "2",
        "nb_layers": str(LAYERS),
        "unidirectional": "0",
        "sample_rate": str(SR),
        "n_fft": str(n_fft),
        "hop": str(hop),
        "source": "random weights, tools/gen_golden_umx.py",
    }
    stemline_st.save(path, tensors, meta)


def make_input(n, seed=2):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = np.stack([
        0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1375 * t) + 0.1 * rng.standard_normal(n),
        0.25 * np.sin(2 * np.pi * 330 * t + 0.5) + 0.15 * rng.standard_normal(n),
    ]).astype(np.float32)
    # loud clicks (so the EM scaling max(1, max|X|/10) is active) and digital silence
    x[:, 5000:5003] = np.float32(4.0)
    x[:, 20000:21600] = 0.0
    return x


def run_separator(targets, audio, niter, softmask, residual, win, n_fft, hop):
    """Returns (mag [2][T][nb], est [J][2][T][nb], wien [S][2][T][nb][2], out [S][2][n]) in C layouts."""
    sep = umx_model.Separator(targets, niter=niter, softmask=softmask, residual=residual, sample_rate=SR,
                              n_fft=n_fft, n_hop=hop, nb_channels=2, wiener_win_len=win, filterbank="torch")
    sep.freeze()
    rec = {"est": []}

    def norm_hook(mod, inp, out):
        rec["mag"] = out.detach().clone()

    def est_hook(mod, inp, out):
        rec["est"].append(out.detach().clone())

    istft_forward = sep.istft.forward

    def istft_rec(X, length=None):
        rec["wien"] = X.detach().clone()
        return istft_forward(X, length=length)

    sep.complexnorm.register_forward_hook(norm_hook)
    for m in sep.target_models.values():
        m.register_forward_hook(est_hook)
    sep.istft.forward = istft_rec
    with torch.no_grad():
        out = sep(torch.from_numpy(audio)[None])
    mag = rec["mag"][0].permute(0, 2, 1).numpy()                      # (ch, nb, T) -> [ch][T][nb]
    est = torch.stack([e[0] for e in rec["est"]]).permute(0, 1, 3, 2).numpy()  # [J][ch][T][nb]
    wien = rec["wien"][0].permute(0, 1, 3, 2, 4).numpy()              # (S, ch, nb, T, 2) -> [S][ch][T][nb][2]
    return mag, est, wien, out[0].numpy()


def sample(rng, a):
    flat = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    k = min(SAMPLE, flat.size)
    idx = np.sort(rng.choice(flat.size, size=k, replace=False))
    assert flat.size < (1 << 24), "indices must be exact in float32"
    return idx.astype(np.float32), flat[idx]


def write_slg(path, params, arrays):
    stemline_st.write_slg(path, "made by tools/gen_golden_umx.py with openunmix, torch %s, numpy %s"
                          % (torch.__version__, np.__version__), params, arrays)


CASES = [
    # name, niter, softmask, residual, wiener_win_len (None = whole), samples
    ("case_a", 1, False, False, 300, 16384),
    ("case_b", 2, False, True, None, N_SAMPLES),
    ("case_c", 1, True, False, 40, 12000),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    targets = build_targets()
    save_weights(os.path.join(OUT, "umx-small.safetensors"), targets, N_FFT, HOP)
    signal = make_input(N_SAMPLES)
    rng = np.random.default_rng(7)
    for name, niter, soft, resid, win, n in CASES:
        audio = np.ascontiguousarray(signal[:, :n])
        mag, est, wien, out = run_separator(targets, audio, niter, soft, resid, win, N_FFT, HOP)
        arrays = [("input", audio)]
        for stage, a in (("mag", mag), ("est", est), ("wien", wien), ("out", out)):
            idx, val = sample(rng, a)
            arrays += [(stage + "_idx", idx), (stage + "_val", val)]
        params = {"niter": niter, "softmask": int(soft), "residual": int(resid), "wiener_win_len": win or 0,
                  "n": n, "frames": mag.shape[1], "max_abs_out": float(np.abs(out).max())}
        write_slg(os.path.join(OUT, name + ".slg"), params, arrays)
        print("%s: T=%d, out max %.3f" % (name, mag.shape[1], np.abs(out).max()))
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %s (%d bytes)" % (OUT, total))


if __name__ == "__main__":
    main()
