"""Minimal safetensors writer shared by the stemline converters (tools/convert_*.py).

Written here with json + numpy so the converters need no `safetensors` package.
Format: 8-byte little-endian header length N, N bytes of JSON
{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
 "__metadata__": {"key": "string", ...}}, padded with spaces to a multiple of 8,
then the tensors' bytes (C order, little-endian), back to back in header order.
stemline's reader (io/safetensors.c) requires exactly that: no gaps, no overlap,
nothing after the last tensor. Every tensor's offset is a multiple of its element
size when all tensors are F32 (what the converters write), so the C side can read
them as float arrays in place.
"""

import hashlib
import json
import os
import tempfile

import numpy as np

DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("float64"): "F64",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


def encode(tensors, metadata=None):
    """tensors: list of (name, numpy array) in the order to write; metadata: dict str -> str.
    Returns the file's bytes."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("metadata keys and values must be strings: %r=%r" % (k, v))
        header["__metadata__"] = dict(metadata)
    chunks = []
    pos = 0
    seen = set()
    for name, arr in tensors:
        if name in seen or name == "__metadata__":
            raise ValueError("duplicate or reserved tensor name %r" % name)
        seen.add(name)
        arr = np.asarray(arr)
        dt = DTYPES.get(arr.dtype.newbyteorder("="))  # the kind, whatever the byte order
        if dt is None:
            raise TypeError("tensor %s: dtype %s not supported" % (name, arr.dtype))
        data = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"), copy=False)).tobytes()
        header[name] = {"dtype": dt, "shape": [int(d) for d in arr.shape], "data_offsets": [pos, pos + len(data)]}
        chunks.append(data)
        pos += len(data)
    h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    return len(h).to_bytes(8, "little") + h + b"".join(chunks)


def write_atomic(path, data):
    """Writes data to path through a temporary file in the same folder, fsync and rename:
    a file under its final name is always complete."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        try:
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(path, tensors, metadata=None):
    write_atomic(path, encode(tensors, metadata))


def load(path):
    """Reads a file written by save (or any safetensors file of the DTYPES kinds): returns
    (list of (name, numpy array) in file order, metadata dict)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: not a safetensors file (too short)" % path)
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("%s: not a safetensors file (header of %d bytes)" % (path, n))
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    kinds = {v: k for k, v in DTYPES.items()}
    body = memoryview(data)[8 + n:]
    out = []
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if e["dtype"] not in kinds:
            raise ValueError("%s: tensor %s: dtype %s not supported" % (path, name, e["dtype"]))
        b, end = e["data_offsets"]
        arr = np.frombuffer(body[b:end], dtype=kinds[e["dtype"]].newbyteorder("<")).reshape(e["shape"])
        out.append((name, arr.astype(kinds[e["dtype"]])))
    return out, meta


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def torch_load(path):
    """torch.load on the CPU without running arbitrary pickled code where torch allows it."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # torch older than 1.13: no weights_only
        return torch.load(path, map_location="cpu")


def checkpoint_state_dict(path):
    """The state dict of a torch checkpoint (under "state_dict" when the file holds a
    training checkpoint); ValueError with the reason when it cannot be read or holds none."""
    try:
        sd = torch_load(path)
    except Exception as e:  # torch raises many kinds
        raise ValueError("cannot read the checkpoint: %s" % e)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd or not all(hasattr(v, "dtype") for v in sd.values()):
        raise ValueError("no state dict of tensors in the checkpoint")
    return sd


def to_numpy_f32(t):
    """A torch tensor as a C-contiguous float32 numpy array."""
    return np.ascontiguousarray(t.detach().cpu().float().numpy(), dtype=np.float32)


def write_slg(path, comment, params, arrays):
    """Writes a golden-vector file (tests/unit/sl_golden.h format): header lines
    'SLGOLD 1', '# comment' (one line per item when comment is a list), 'param
    NAME VALUE', 'array NAME DIMS...', 'end', then the arrays as little-endian
    float32 in order. params: dict; arrays: list of (name, numpy array)."""
    with open(path, "wb") as f:
        f.write(b"SLGOLD 1\n")
        for c in [comment] if isinstance(comment, str) else comment:
            f.write(("# %s\n" % c).encode())
        for k, v in params.items():
            f.write(("param %s %s\n" % (k, v)).encode())
        for name, a in arrays:
            f.write(("array %s %s\n" % (name, " ".join(str(d) for d in np.shape(a)))).encode())
        f.write(b"end\n")
        for _, a in arrays:
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
