#!/usr/bin/env python3
"""Downloads official model weights, checks them, and converts them for stemline.

    python3 tools/fetch_models.py NAME [--dir DIR] [--from SRC_DIR] [--force] [--keep-sources]

`stemline models fetch NAME ...` runs this script. NAME is one of:

  umxhq   Open-Unmix UMX-HQ (MIT), Zenodo record 3370489: vocals-b62c91ce.pth,
          drums-9619578f.pth, bass-8d85a5bd.pth, other-b52fbbf7.pth, the files
          openunmix's `umxhq` loader (openunmix/__init__.py, umxhq_spec) downloads.
  cnn14   PANNs Cnn14 (MIT), Zenodo record 3987831: Cnn14_mAP=0.431.pth.
  clap-music  LAION-CLAP music checkpoint (CC0) music_audioset_epoch_15_esc_90.14.pt
          from huggingface.co/lukewys/laion_clap (where laion_clap's load_ckpt
          downloads from), and roberta-base's tokenizer files vocab.json and
          merges.txt from huggingface.co/FacebookAI/roberta-base (MIT), converted
          together by tools/convert_clap.py.
  bs_roformer_musdb, bs_roformer_viperx, mel_band_roformer_kj, mel_band_roformer_viperx
          RoFormer checkpoints with their YAML configs, from the places ZFTurbo's
          Music-Source-Separation-Training lists them (docs/pretrained_models.md),
          converted by tools/convert_roformer.py; licence and training data in
          MODELS below and in README.md. No digest of these files is published
          where they are hosted: a download is checked for completeness (the
          length the server states) and then tensor by tensor against its config
          by the converter (every key, every shape); the sha256 of each file is
          printed and recorded in the output's `source` metadata.
  htdemucs, htdemucs_6s, htdemucs_ft
          HT-Demucs v4 (MIT code and weights, facebookresearch/demucs), the files
          `demucs -n NAME` downloads from dl.fbaipublicfiles.com
          (demucs/remote/files.txt and NAME.yaml): htdemucs 955717e8-8726e21a.th,
          htdemucs_6s 5c90dfd2-34c22ccb.th, htdemucs_ft the bag of
          f7e0c4bc-ba3fe64a.th, d12395a8-e57c48e6.th, 92cfc3b6-ef3bcb9c.th,
          04573f0d-f3cf25b2.th, each weighted for its own source (the bag's
          weights matrix, written into a YAML for tools/convert_htdemucs.py --bag).

Steps: download each file into DIR/downloads/ (skipped when a verified copy is
already there), check it (below), convert it with tools/convert_umx.py or
tools/convert_cnn14.py into DIR/NAME.safetensors (temp file + rename, so the
final name only ever holds a complete file), then remove the downloads unless
--keep-sources. DIR defaults to $XDG_DATA_HOME/stemline/models, else
~/.local/share/stemline/models.

Checks: the md5 Zenodo publishes for each file; the full sha256 where one is
recorded below; and for Open-Unmix the sha256 prefix that the file name carries
(torch.hub's naming convention: NAME-<first 8 hex digits of the sha256>.pth;
demucs names its files SIG-<first 8 hex digits of the sha256>.th likewise).
The sha256 of every input is written into the output's `source` metadata.
clap-music: the checkpoint's sha256 is the one an independent pinned check
records (LAION publishes none); the tokenizer files have no published digest
and are checked by content instead (roberta-base's 50265 tokens with <s> 0,
<pad> 1, </s> 2, <unk> 3, <mask> 50264; 50000 merges).

Without internet it fails within the connect timeout (default 10 s,
--timeout / STEMLINE_FETCH_TIMEOUT) and says how to convert files obtained
elsewhere. STEMLINE_MODELS_URL_BASE=URL replaces the download location (a
mirror holding the official file names; the tests point it at an unreachable
address). Exit status: 0 ok, 1 failed, 2 usage.
"""

import argparse
import hashlib
import os
import shlex
import socket
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)

# md5: as Zenodo lists them for the records. sha256: full digests where known
# (None: not published; the md5, and for Open-Unmix the name's sha256 prefix, decide).
MODELS = {
    "umxhq": {
        "desc": "Open-Unmix UMX-HQ (vocals, drums, bass, other)",
        "record": "https://zenodo.org/records/3370489",
        "base": "https://zenodo.org/records/3370489/files/",
        "converter": "convert_umx.py",
        "files": [
            ("vocals-b62c91ce.pth", "d918985fad0fedf6d9ce89e279aa7218",
             "b62c91cedbc7a066f1778ead5b5cecb377aa3a46a31af1cce7c5c8769339d083"),
            ("drums-9619578f.pth", "cebf76e196e73e85d247f462c31e36fc",
             "9619578f885c54737cb0234f9f9a4a679ee4f31438fd77fd1dbe02bb16c2da0a"),
            ("bass-8d85a5bd.pth", "8cc37d31903fe48306468ee968f4b1b6", None),
            ("other-b52fbbf7.pth", "8637606623ed7c74986789c3b1f94bc6", None),
        ],
    },
    # RoFormers: (file, md5, sha256) with both None: the hosts publish no digest (see the docstring)
    "bs_roformer_musdb": {
        "desc": "BS-RoFormer, 4 stems (bass, drums, other, vocals), ZFTurbo; MUSDB18 test SDR 9.65",
        "record": "https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/tag/v1.0.12",
        "base": "https://github.com/ZFTurbo/Music-Source-Separation-Training/releases/download/v1.0.12/",
        "converter": "convert_roformer.py",
        "arch": "bs_roformer",
        "licence": "code MIT; weights trained on MUSDB18-HQ only: research, non-commercial (MUSDB18 terms)",
        "data": "MUSDB18-HQ (100 training songs)",
        "files": [("config_bs_roformer_384_8_2_485100.yaml", None, None),
                  ("model_bs_roformer_ep_17_sdr_9.6568.ckpt", None, None)],
    },
    "bs_roformer_viperx": {
        "desc": "BS-RoFormer vocals (+ instrumental), viperx edition (model_bs_roformer_ep_317_sdr_12.9755)",
        "record": "https://github.com/TRvlvr/model_repo/releases/tag/all_public_uvr_models",
        "base": "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/",
        "urls": {"model_bs_roformer_ep_317_sdr_12.9755.yaml": "https://raw.githubusercontent.com/ZFTurbo/"
                 "Music-Source-Separation-Training/main/configs/viperx/model_bs_roformer_ep_317_sdr_12.9755.yaml"},
        "converter": "convert_roformer.py",
        "arch": "bs_roformer",
        "licence": "none stated by its author (distributed among UVR's public models); ask before commercial use",
        "data": "not disclosed (private dataset)",
        "files": [("model_bs_roformer_ep_317_sdr_12.9755.yaml", None, None),
                  ("model_bs_roformer_ep_317_sdr_12.9755.ckpt", None, None)],
    },
    "mel_band_roformer_viperx": {
        "desc": "Mel-Band RoFormer vocals (+ instrumental), viperx edition (ep_3005_sdr_11.4360)",
        "record": "https://github.com/TRvlvr/model_repo/releases/tag/all_public_uvr_models",
        "base": "https://github.com/TRvlvr/model_repo/releases/download/all_public_uvr_models/",
        "urls": {"model_mel_band_roformer_ep_3005_sdr_11.4360.yaml": "https://raw.githubusercontent.com/ZFTurbo/"
                 "Music-Source-Separation-Training/main/configs/viperx/"
                 "model_mel_band_roformer_ep_3005_sdr_11.4360.yaml"},
        "converter": "convert_roformer.py",
        "arch": "mel_band_roformer",
        "licence": "none stated by its author (distributed among UVR's public models); ask before commercial use",
        "data": "not disclosed (private dataset)",
        "files": [("model_mel_band_roformer_ep_3005_sdr_11.4360.yaml", None, None),
                  ("model_mel_band_roformer_ep_3005_sdr_11.4360.ckpt", None, None)],
    },
    "mel_band_roformer_kj": {
        "desc": "Mel-Band RoFormer vocals (+ instrumental), KimberleyJensen edition; Multisong vocals SDR 10.98",
        "record": "https://huggingface.co/KimberleyJSN/melbandroformer",
        "base": "https://huggingface.co/KimberleyJSN/melbandroformer/resolve/main/",
        "urls": {"config_vocals_mel_band_roformer_kj.yaml": "https://raw.githubusercontent.com/ZFTurbo/"
                 "Music-Source-Separation-Training/main/configs/KimberleyJensen/config_vocals_mel_band_roformer_kj.yaml"},
        "converter": "convert_roformer.py",
        "arch": "mel_band_roformer",
        "licence": "see the model page (not stated in the sources this list was made from)",
        "data": "not disclosed",
        "files": [("config_vocals_mel_band_roformer_kj.yaml", None, None), ("MelBandRoformer.ckpt", None, None)],
    },
    "cnn14": {
        "desc": "PANNs Cnn14 with the AudioSet head (527 classes)",
        "record": "https://zenodo.org/records/3987831",
        "base": "https://zenodo.org/records/3987831/files/",
        "converter": "convert_cnn14.py",
        "files": [
            ("Cnn14_mAP=0.431.pth", "541141fa2ee191a88f24a3219fff024e", None),
        ],
    },
    "clap-music": {
        "desc": "LAION-CLAP music (HTSAT-base audio + RoBERTa text towers, 512-d, with the tokenizer)",
        "record": "https://huggingface.co/lukewys/laion_clap and https://huggingface.co/FacebookAI/roberta-base",
        "base": "https://huggingface.co/lukewys/laion_clap/resolve/main/",
        "urls": {"vocab.json": "https://huggingface.co/FacebookAI/roberta-base/resolve/main/vocab.json",
                 "merges.txt": "https://huggingface.co/FacebookAI/roberta-base/resolve/main/merges.txt"},
        "converter": "convert_clap.py",
        "files": [
            ("music_audioset_epoch_15_esc_90.14.pt", None,
             "fae3e9c087f2909c28a09dc31c8dfcdacbc42ba44c70e972b58c1bd1caf6dedd"),
            ("vocab.json", None, None),
            ("merges.txt", None, None),
        ],
    },
}


DEMUCS_BASE = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"
DEMUCS_RECORD = "https://github.com/facebookresearch/demucs (demucs/remote/files.txt)"
MODELS["htdemucs"] = {
    "desc": "HT-Demucs v4 (drums, bass, other, vocals)", "record": DEMUCS_RECORD, "base": DEMUCS_BASE,
    "converter": "convert_htdemucs.py", "files": [("955717e8-8726e21a.th", None, None)],
}
MODELS["htdemucs_6s"] = {
    "desc": "HT-Demucs v4, 6 sources (drums, bass, other, vocals, guitar, piano)", "record": DEMUCS_RECORD,
    "base": DEMUCS_BASE, "converter": "convert_htdemucs.py", "files": [("5c90dfd2-34c22ccb.th", None, None)],
}
MODELS["htdemucs_ft"] = {
    "desc": "HT-Demucs v4 fine-tuned bag (4 models, one per source)", "record": DEMUCS_RECORD, "base": DEMUCS_BASE,
    "converter": "convert_htdemucs.py",
    "files": [("f7e0c4bc-ba3fe64a.th", None, None), ("d12395a8-e57c48e6.th", None, None),
              ("92cfc3b6-ef3bcb9c.th", None, None), ("04573f0d-f3cf25b2.th", None, None)],
    # demucs/remote/htdemucs_ft.yaml: each model weighted for its own source
    "bag": {"models": ["f7e0c4bc", "d12395a8", "92cfc3b6", "04573f0d"],
            "weights": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]},
}


def check_roberta_tokenizer(path, fname):
    """Content checks of roberta-base's tokenizer files (no digest is published)."""
    import json

    try:
        if fname == "vocab.json":
            with open(path, encoding="utf-8") as f:
                v = json.load(f)
            want = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 50264}
            if not isinstance(v, dict) or len(v) != 50265 or any(v.get(k) != i for k, i in want.items()):
                raise FetchError("%s: not roberta-base's vocabulary (50265 tokens, <s> 0, <pad> 1, </s> 2, "
                                 "<unk> 3, <mask> 50264)" % path)
        elif fname == "merges.txt":
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            merges = [ln for ln in lines[1:] if ln]
            if not lines[0].startswith("#version") or len(merges) != 50000 or any(len(m.split(" ")) != 2 for m in merges):
                raise FetchError("%s: not roberta-base's merges (a #version line and 50000 pairs)" % path)
    except (OSError, ValueError) as e:
        raise FetchError("%s: %s" % (path, e))


class FetchError(Exception):
    pass


def log(msg):
    print("stemline models fetch: " + msg, file=sys.stderr, flush=True)


def default_dir():
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "stemline", "models")
    return os.path.join(os.path.expanduser("~"), ".local", "share", "stemline", "models")


def convert_hint(name):
    m = MODELS[name]
    py = "python3 " + shlex.quote(os.path.join(TOOLS, m["converter"]))
    files = " ".join(shlex.quote(f[0]) for f in m["files"])
    needs = "torch and numpy"
    if m["converter"] == "convert_roformer.py":  # files: config, checkpoint
        files = "%s --config %s" % (shlex.quote(m["files"][1][0]), shlex.quote(m["files"][0][0]))
        needs = "torch, numpy and PyYAML"
    if m.get("bag"):  # a bag: its YAML as demucs's remote/NAME.yaml, with the models and weights below
        files = "--bag %s.yaml %s" % (name, files)
        needs = "torch, numpy and PyYAML"
    if name == "clap-music":
        files = "--vocab vocab.json --merges merges.txt " + shlex.quote(m["files"][0][0])
    return ("If you already have the official files (from %s or a colleague), either\n"
            "  stemline models fetch %s --from FOLDER_WITH_THE_FILES\n"
            "or convert them yourself (needs python3 with %s):\n"
            "  %s --out %s.safetensors %s\n" % (m["record"], name, needs, py, name, files))


def expected_prefix(fname):
    """torch.hub convention: NAME-<sha256 prefix>.ext; None when the name carries none."""
    stem = os.path.splitext(fname)[0]
    if "-" in stem:
        h = stem.rsplit("-", 1)[1]
        if len(h) >= 8 and all(c in "0123456789abcdef" for c in h):
            return h
    return None


def digests(path):
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return md5.hexdigest(), sha.hexdigest()


def verify(path, fname, md5_want, sha_want):
    """Returns the file's sha256; raises FetchError on any mismatch."""
    md5, sha = digests(path)
    problems = []
    if md5_want and md5 != md5_want:
        problems.append("md5 %s, expected %s" % (md5, md5_want))
    if sha_want and sha != sha_want:
        problems.append("sha256 %s, expected %s" % (sha, sha_want))
    prefix = expected_prefix(fname)
    if prefix and not sha.startswith(prefix):
        problems.append("sha256 %s does not start with %s as the file name says" % (sha, prefix))
    if problems:
        raise FetchError("%s: checksum mismatch: %s (corrupt or different file)" % (path, "; ".join(problems)))
    if fname in ("vocab.json", "merges.txt"):
        check_roberta_tokenizer(path, fname)
    return sha


def resolve(host, port, timeout):
    """getaddrinfo with a time limit (it has none of its own)."""
    out = {}

    def run():
        try:
            out["ok"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            out["err"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise FetchError("cannot resolve %s within %g s (no internet or no DNS?)" % (host, timeout))
    if "err" in out:
        raise FetchError("cannot resolve %s: %s (no internet?)" % (host, out["err"]))


def download(url, dest, timeout):
    """url -> dest (through dest + '.part'), printing progress on stderr."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise FetchError("unsupported URL %s" % url)
    if not (os.environ.get("https_proxy") or os.environ.get("HTTPS_PROXY") or os.environ.get("http_proxy")):
        resolve(u.hostname, u.port or (443 if u.scheme == "https" else 80), timeout)
    part = dest + ".part"
    req = urllib.request.Request(url, headers={"User-Agent": "stemline-fetch/1"})
    try:
        # timeout bounds the connect and every read that stalls
        with urllib.request.urlopen(req, timeout=timeout) as r, open(part, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0)
            done, shown = 0, 0
            while True:
                block = r.read(1 << 20)
                if not block:
                    break
                f.write(block)
                done += len(block)
                if sys.stderr.isatty() and done - shown >= 8 << 20:
                    shown = done
                    pct = " (%d%%)" % (100 * done // total) if total else ""
                    print("\r  %s: %d MB%s" % (os.path.basename(dest), done >> 20, pct), end="",
                          file=sys.stderr, flush=True)
            if sys.stderr.isatty() and shown:
                print(file=sys.stderr)
            if total and done != total:
                raise FetchError("%s: got %d of %d bytes (connection dropped; run again)" % (url, done, total))
            f.flush()
            os.fsync(f.fileno())
    except urllib.error.HTTPError as e:
        _unlink(part)
        raise FetchError("cannot download %s: HTTP %d %s" % (url, e.code, e.reason))
    except (urllib.error.URLError, OSError) as e:
        _unlink(part)
        reason = getattr(e, "reason", e)
        raise FetchError("cannot download %s: %s" % (url, reason))
    except BaseException:
        _unlink(part)
        raise
    os.replace(part, dest)


def _unlink(p):
    try:
        os.unlink(p)
    except OSError:
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(prog="stemline models fetch",
                                 description="Download, check and convert official model weights.")
    ap.add_argument("name", help=", ".join(sorted(MODELS)))
    ap.add_argument("--dir", default=None, help="output folder (default %s)" % default_dir())
    ap.add_argument("--from", dest="src", default=None, metavar="SRC_DIR",
                    help="use official files already in SRC_DIR instead of downloading")
    ap.add_argument("--force", action="store_true", help="replace an existing output file")
    ap.add_argument("--keep-sources", action="store_true", help="keep the downloaded .pth files")
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("STEMLINE_FETCH_TIMEOUT") or 10),
                    help="seconds to wait for a connection or a stalled read (default 10)")
    a = ap.parse_args(argv)
    if a.name not in MODELS:
        log("error: unknown model '%s' (known: %s)" % (a.name, ", ".join(sorted(MODELS))))
        return 2
    m = MODELS[a.name]
    outdir = os.path.abspath(a.dir or default_dir())
    out = os.path.join(outdir, a.name + ".safetensors")
    if os.path.exists(out) and not a.force:
        log("%s already exists (use --force to fetch and convert again)" % out)
        print(out)
        return 0

    # 1. the official files, checked
    paths, shas = [], {}
    try:
        if a.src:
            for fname, md5, sha in m["files"]:
                p = os.path.join(a.src, fname)
                if not os.path.isfile(p):
                    raise FetchError("%s: not found (expected the official file names: %s)" % (
                        p, ", ".join(f[0] for f in m["files"])))
                shas[p] = verify(p, fname, md5, sha)
                paths.append(p)
        else:
            base = os.environ.get("STEMLINE_MODELS_URL_BASE") or m["base"]
            if not base.endswith("/"):
                base += "/"
            dl = os.path.join(outdir, "downloads")
            try:
                os.makedirs(dl, exist_ok=True)
            except OSError as e:
                raise FetchError("cannot create %s: %s" % (dl, e.strerror))
            for fname, md5, sha in m["files"]:
                p = os.path.join(dl, fname)
                if os.path.isfile(p):
                    try:
                        shas[p] = verify(p, fname, md5, sha)
                        log("%s: already downloaded and verified" % fname)
                        paths.append(p)
                        continue
                    except FetchError:
                        _unlink(p)
                # a mirror (STEMLINE_MODELS_URL_BASE) holds every file under its name
                url = (m.get("urls", {}).get(fname) if not os.environ.get("STEMLINE_MODELS_URL_BASE") else None) \
                    or base + urllib.parse.quote(fname)
                log("downloading %s" % url)
                download(url, p, a.timeout)
                try:
                    shas[p] = verify(p, fname, md5, sha)
                except FetchError:
                    _unlink(p)
                    raise
                paths.append(p)
    except FetchError as e:
        log("error: %s" % e)
        try:
            os.rmdir(os.path.join(outdir, "downloads"))  # only when empty
        except OSError:
            pass
        if not a.src:
            sys.stderr.write("\n" + convert_hint(a.name))
        return 1

    if not any(f[1] or f[2] for f in m["files"]):
        for p in paths:
            log("%s: sha256 %s (no published digest to compare with; recorded in the output)"
                % (os.path.basename(p), shas[p]))

    # 2. convert
    try:
        import torch  # noqa: F401
    except ImportError:
        log("error: converting needs torch, which this python (%s) lacks: apt-get install python3-torch "
            "(or pip install torch), then run the same command again; the checked downloads are kept in %s"
            % (sys.executable, os.path.dirname(paths[0])))
        return 1
    try:
        if m["converter"] == "convert_roformer.py":
            import convert_roformer as conv
            conv.convert(paths[1], paths[0], out, arch=m["arch"], sources=shas)
        elif a.name.startswith("htdemucs"):
            import convert_htdemucs as conv
            import stemline_st
            tensors, meta = conv.convert(paths, bag_spec=m.get("bag"))
            stemline_st.save(out, tensors, meta)
        elif a.name == "umxhq":
            import convert_umx as conv
            conv.convert(paths, out, name=a.name, sources=shas)
        elif a.name == "clap-music":
            import convert_clap as conv
            conv.convert(paths[0], paths[1], paths[2], out, sources=shas)
        else:
            import convert_cnn14 as conv
            conv.convert(paths[0], out, name=a.name, digest=shas[paths[0]], fold=True)  # mapped at load
    except ImportError as e:
        log("error: converting needs %s, which this python (%s) lacks (pip install pyyaml); the checked "
            "downloads are kept in %s" % (e.name, sys.executable, os.path.dirname(paths[0])))
        return 1
    except conv.ConvertError as e:
        log("error: %s" % e)
        return 1
    if not a.src and not a.keep_sources:
        for p in paths:
            _unlink(p)
        try:
            os.rmdir(os.path.join(outdir, "downloads"))
        except OSError:
            pass
    log("wrote %s (%s)" % (out, m["desc"]))
    if "licence" in m:
        log("licence: %s; training data: %s" % (m["licence"], m["data"]))
    print(out)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted")
        sys.exit(1)
