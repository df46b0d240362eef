"""save/load of state dicts (and nested checkpoints) as .npz files, never pickling.

    minigrad.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": 100}, "ck.npz")
    ck = minigrad.load("ck.npz")

The file is an ordinary ``np.savez`` archive: one ``.npy`` member per array, named by its path in
the nested structure joined with "/" (``model/weight_ih_l0``, ``optim/state/0/exp_avg``), so
``np.load(path, allow_pickle=False)`` opens it too. One extra member, ``__minigrad_manifest__``
(UTF-8 JSON stored as a uint8 array), records the structure: dicts (str or int keys), lists,
tuples, None, bool, int, float, str, numpy scalars, ndarrays and Tensors. ``load`` rebuilds the
structure from it, with the same types, dtypes and key types.
"""
from __future__ import annotations

import json
import os
import itertools
import zipfile

import numpy as np

__all__ = ["save", "load"]

MANIFEST_KEY = "__minigrad_manifest__"
FORMAT = "minigrad.save"
VERSION = 1
SEP = "/"
_counter = itertools.count()
_RESERVED = {MANIFEST_KEY, "file", "allow_pickle"}  # np.savez's own keyword names


def _fspath(path, what):
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise TypeError(f"{what}() needs a path (str or os.PathLike), got "
                        f"{type(path).__name__}") from None


# ----- save ------------------------------------------------------------------------------
class _Encoder:
    def __init__(self):
        self.arrays = {}
        self.active = set()  # ids of the containers on the current path (cycle check)

    def name_for(self, path):
        base = SEP.join(str(k) for k in path) or "_root"
        name, n = base, 1
        while name in self.arrays or name in _RESERVED:
            name = f"{base}#{n}"
            n += 1
        return name

    def encode(self, obj, path):
        from .tensor import Tensor

        where = SEP.join(str(k) for k in path) or "<root>"
        if obj is None:
            return {"t": "none"}
        if isinstance(obj, np.generic):  # before float: np.float64 is a float subclass
            return {"t": "scalar", "key": self.add_array(np.asarray(obj), path, where)}
        if isinstance(obj, bool):
            return {"t": "bool", "v": obj}
        if isinstance(obj, int):
            return {"t": "int", "v": int(obj)}
        if isinstance(obj, float):
            return {"t": "float", "v": repr(float(obj))}  # repr round-trips, also nan/inf
        if isinstance(obj, str):
            return {"t": "str", "v": obj}
        if isinstance(obj, Tensor):
            name = self.add_array(obj.data, path, where)
            return {"t": "tensor", "key": name, "requires_grad": bool(obj.requires_grad)}
        if isinstance(obj, np.ndarray):
            return {"t": "array", "key": self.add_array(obj, path, where)}
        if isinstance(obj, (dict, list, tuple)):
            if id(obj) in self.active:
                raise ValueError(f"cannot save a circular structure (at {where!r})")
            self.active.add(id(obj))
            try:
                if isinstance(obj, dict):
                    items = []
                    for k, v in obj.items():
                        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (str, int,
                                                                                   np.integer)):
                            raise TypeError(f"dict keys must be str or int to be saved, got "
                                            f"{k!r} ({type(k).__name__}) at {where!r}")
                        k = k if isinstance(k, str) else int(k)
                        items.append([k, self.encode(v, path + [k])])
                    return {"t": "dict", "items": items}
                kind = "tuple" if isinstance(obj, tuple) else "list"
                return {"t": kind, "items": [self.encode(v, path + [i]) for i, v in enumerate(obj)]}
            finally:
                self.active.discard(id(obj))
        raise TypeError(f"cannot save an object of type {type(obj).__name__} at {where!r}; "
                        "supported: dict, list, tuple, ndarray, Tensor, numpy scalars, int, "
                        "float, bool, str, None")

    def add_array(self, arr, path, where):
        if arr.dtype.hasobject:
            raise TypeError(f"cannot save an object array (dtype {arr.dtype}) at {where!r} "
                            "without pickling")
        name = self.name_for(path)
        self.arrays[name] = arr
        return name


def save(obj, path):
    """Write ``obj`` (a state dict or nested dicts/lists of arrays and numbers) to ``path``.

    Exactly ``path`` is written (no ".npz" is appended); the file is written next to it under a
    temporary name and renamed, so an interrupted save leaves any previous file intact.
    """
    path = _fspath(path, "save")
    enc = _Encoder()
    tree = enc.encode(obj, [])
    manifest = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree},
                          ensure_ascii=False, allow_nan=False)
    arrays = dict(enc.arrays)
    arrays[MANIFEST_KEY] = np.frombuffer(manifest.encode("utf-8"), dtype=np.uint8)
    tmp = f"{path}.{os.getpid()}-{next(_counter)}.tmp"
    try:
        with open(tmp, "xb") as f:
            np.savez(f, allow_pickle=False, **arrays)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ----- load ------------------------------------------------------------------------------
_SCALARS = {"none", "bool", "int", "float", "str"}
_ARRAYS = {"array", "scalar", "tensor"}


class CheckpointError(ValueError):
    """A file that is not a (readable) minigrad checkpoint."""


class _Decoder:
    def __init__(self, archive, path):
        self.z = archive
        self.path = path
        self.names = set(archive.files)

    def fail(self, msg):
        raise CheckpointError(f"{self.path!r}: {msg}")

    def read(self, key):
        if not isinstance(key, str) or key not in self.names or key == MANIFEST_KEY:
            self.fail(f"the manifest references array {key!r}, which is missing from the "
                      "archive (damaged or edited file)")
        try:
            return self.z[key]
        except Exception as e:  # zlib/zip/format errors from a damaged member
            raise CheckpointError(f"{self.path!r}: cannot read array {key!r} "
                             f"({type(e).__name__}: {e})") from e

    def decode(self, node, where="<root>"):
        if not isinstance(node, dict) or "t" not in node:
            self.fail(f"malformed manifest entry at {where!r}: {node!r:.80}")
        t = node["t"]
        try:
            if t == "none":
                return None
            if t == "bool":
                return _typed(node["v"], bool)
            if t == "int":
                return _typed(node["v"], int)
            if t == "float":
                return float(_typed(node["v"], str))
            if t == "str":
                return _typed(node["v"], str)
            if t == "array":
                return self.read(node["key"])
            if t == "scalar":
                arr = self.read(node["key"])
                if arr.shape != ():
                    self.fail(f"scalar at {where!r} is stored with shape {arr.shape}")
                return arr[()]
            if t == "tensor":
                from .tensor import Tensor
                return Tensor(self.read(node["key"]),
                              requires_grad=_typed(node.get("requires_grad", False), bool))
            if t in ("list", "tuple"):
                items = [self.decode(v, f"{where}{SEP}{i}")
                         for i, v in enumerate(_typed(node["items"], list))]
                return tuple(items) if t == "tuple" else items
            if t == "dict":
                out = {}
                for item in _typed(node["items"], list):
                    if not isinstance(item, list) or len(item) != 2 \
                            or isinstance(item[0], bool) or not isinstance(item[0], (str, int)):
                        self.fail(f"malformed dict item in the manifest at {where!r}")
                    out[item[0]] = self.decode(item[1], f"{where}{SEP}{item[0]}")
                return out
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            self.fail(f"malformed manifest entry at {where!r} ({type(e).__name__}: {e})")
        self.fail(f"unknown entry type {t!r} in the manifest at {where!r}")


def _typed(value, typ):
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise TypeError(f"expected {typ.__name__}, got {type(value).__name__}")
    return value


def load(path):
    """Read a file written by ``save`` and rebuild the structure (np.load, allow_pickle=False).

    A file that is not a zip archive (truncated, or another format), a zip/.npz without the
    minigrad manifest, or a manifest naming missing arrays raises ValueError naming the file.
    """
    path = _fspath(path, "load")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such checkpoint file: {path!r}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path!r} is not a minigrad checkpoint: not a zip (.npz) archive "
                         f"(the file is truncated or in another format; {os.path.getsize(path)} "
                         "bytes)")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path!r}: cannot open as an .npz archive "
                         f"({type(e).__name__}: {e})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} is not a minigrad checkpoint (np.load read it as "
                         f"{type(archive).__name__}, not an .npz archive)")
    with archive:
        if MANIFEST_KEY not in archive.files:
            shown = ", ".join(sorted(archive.files)[:5]) or "none"
            raise ValueError(f"{path!r} is an .npz archive but not a minigrad checkpoint: it has "
                             f"no {MANIFEST_KEY!r} entry (arrays: {shown}); open plain .npz "
                             "files with np.load")
        dec = _Decoder(archive, path)
        raw = _read_manifest(archive, path)
        return dec.decode(raw["tree"])


def _read_manifest(archive, path):
    try:
        raw = archive[MANIFEST_KEY]
    except Exception as e:
        raise ValueError(f"{path!r}: cannot read the manifest ({type(e).__name__}: {e})") from e
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{path!r}: the manifest must be a 1-d uint8 array, got dtype "
                         f"{raw.dtype} and shape {raw.shape}")
    try:
        manifest = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path!r}: the manifest is not valid UTF-8 JSON ({e})") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or "tree" not in manifest:
        raise ValueError(f"{path!r}: the manifest is not a {FORMAT!r} manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(f"{path!r}: manifest version {version!r} is newer than this minigrad "
                         f"reads (up to {VERSION})")
    return manifest
